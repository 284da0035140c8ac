//! Federated-directory chains: from a resource's configuration, follow
//! `directory` links to the configuration that owns the identities (the
//! root), and plan where the elevation is applied and where it can be
//! confirmed. Pure: the configurations and which of them have an enrolled
//! agent are passed in.
//!
//! - A `direct` configuration is its own root: the plan applies the
//!   resource's target there.
//! - A `federated` configuration trusts its directory: the plan applies, in
//!   the root, the entitlement the resource declares for it
//!   (`realized_by`), and lists the downstream configurations whose agents
//!   can confirm the elevation took effect once the directory has synced.
//!
//! Errors name the path walked: a cycle, a missing or disabled
//! configuration, no enrolled agent in the root of a federated chain, more than
//! [`MAX_DEPTH`] directory links, and a resource with no mapping in the
//! root directory (or one of the wrong kind).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use jitgate_shared::v1::api::{Configuration, IdentityMode, Resource};
use jitgate_shared::v1::signing::ProvisionOnDemand;
use jitgate_shared::v1::{ConfigId, Entitlement, ResourceId, Target};
use serde::Serialize;

use super::catalog::{target_kind, targets_for};

/// Directory links followed at most.
pub const MAX_DEPTH: usize = 8;

/// The configurations walked, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(value_type = Vec<String>)]
pub struct ChainPath(pub Vec<ConfigId>);

impl fmt::Display for ChainPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(nothing walked)");
        }
        let names: Vec<String> = self.0.iter().map(|c| format!("`{c}`")).collect();
        f.write_str(&names.join(" → "))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("chain {path}: `{again}` comes round again (a cycle of directory links)")]
    Cycle { path: ChainPath, again: ConfigId },
    #[error("chain {path}: configuration `{missing}` does not exist")]
    Missing { path: ChainPath, missing: ConfigId },
    #[error("chain {path}: configuration `{config}` is disabled")]
    Disabled { path: ChainPath, config: ConfigId },
    #[error("chain {path}: no enrolled agent for `{config}`, where the elevation is applied")]
    NoAgent { path: ChainPath, config: ConfigId },
    #[error("chain {path}: more than {MAX_DEPTH} directory links")]
    TooDeep { path: ChainPath },
    #[error(
        "chain {path}: resource `{resource}` has no mapping in directory `{directory}` (set realized_by.{directory})"
    )]
    NoMapping {
        path: ChainPath,
        resource: ResourceId,
        directory: ConfigId,
    },
    #[error(
        "chain {path}: resource `{resource}` maps to a `{target}` in directory `{directory}`, a `{kind}` configuration; use one of: {}",
        allowed.join(", ")
    )]
    WrongKind {
        path: ChainPath,
        resource: ResourceId,
        directory: ConfigId,
        target: &'static str,
        kind: &'static str,
        allowed: &'static [&'static str],
    },
}

impl ChainError {
    /// The configurations walked before the error, in order.
    pub fn path(&self) -> &ChainPath {
        match self {
            ChainError::Cycle { path, .. }
            | ChainError::Missing { path, .. }
            | ChainError::Disabled { path, .. }
            | ChainError::NoAgent { path, .. }
            | ChainError::TooDeep { path }
            | ChainError::NoMapping { path, .. }
            | ChainError::WrongKind { path, .. } => path,
        }
    }
}

/// What resolution knows of the catalogue: configurations and which have
/// an enrolled agent.
#[derive(Debug, Clone, Default)]
pub struct ConfigGraph {
    pub configurations: BTreeMap<ConfigId, Configuration>,
    pub with_agents: BTreeSet<ConfigId>,
}

impl ConfigGraph {
    pub fn new(
        configurations: impl IntoIterator<Item = Configuration>,
        with_agents: BTreeSet<ConfigId>,
    ) -> Self {
        Self {
            configurations: configurations.into_iter().map(|c| (c.id.clone(), c)).collect(),
            with_agents,
        }
    }

    /// Follows directory links from `start` to the root. The path ends with
    /// the root.
    pub fn walk(&self, start: &ConfigId) -> Result<ChainPath, ChainError> {
        let mut path: Vec<ConfigId> = Vec::new();
        let mut at = start.clone();
        loop {
            if path.contains(&at) {
                return Err(ChainError::Cycle {
                    path: ChainPath(path),
                    again: at,
                });
            }
            let Some(config) = self.configurations.get(&at) else {
                return Err(ChainError::Missing {
                    path: ChainPath(path),
                    missing: at,
                });
            };
            path.push(at.clone());
            if !config.enabled {
                return Err(ChainError::Disabled {
                    path: ChainPath(path),
                    config: at,
                });
            }
            match &config.identity_mode {
                IdentityMode::Direct => return Ok(ChainPath(path)),
                IdentityMode::Federated { directory } => {
                    if path.len() > MAX_DEPTH {
                        return Err(ChainError::TooDeep {
                            path: ChainPath(path),
                        });
                    }
                    at = directory.clone();
                }
            }
        }
    }
}

/// Where an elevation is applied and where it can be confirmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Plan {
    /// From the resource's configuration to the root.
    pub path: ChainPath,
    /// The change jitgate makes, in the root.
    pub apply: Entitlement,
    /// Downstream entitlements an agent can check once the directory has
    /// synced (nearest the resource first); empty for a direct resource.
    pub confirm: Vec<Entitlement>,
}

/// Resolves `resource` for `principal` (the name the tenants know the user
/// by: email or user principal name, looked up by each agent).
pub fn resolve(graph: &ConfigGraph, resource: &Resource, principal: &str) -> Result<Plan, ChainError> {
    let path = graph.walk(&resource.configuration)?;
    // `walk` returns a path holding at least the start.
    let root = path
        .0
        .last()
        .cloned()
        .unwrap_or_else(|| resource.configuration.clone());
    let downstream: Vec<ConfigId> = path.0[..path.0.len().saturating_sub(1)].to_vec();
    let target = if downstream.is_empty() {
        resource.target.clone()
    } else {
        let Some(target) = resource.realized_by.get(&root) else {
            return Err(ChainError::NoMapping {
                path,
                resource: resource.id.clone(),
                directory: root,
            });
        };
        let kind = graph.configurations.get(&root).map(|c| c.kind);
        if let Some(kind) = kind {
            let allowed = targets_for(kind);
            if !allowed.contains(&target_kind(target)) {
                return Err(ChainError::WrongKind {
                    path,
                    resource: resource.id.clone(),
                    directory: root,
                    target: target_kind(target),
                    kind: kind.as_str(),
                    allowed,
                });
            }
        }
        target.clone()
    };
    // A federated chain must end at a directory an agent acts in. A direct
    // resource's commands wait in the outbox until its agent enrols (so a
    // tenant can be described before its agent is deployed).
    if !downstream.is_empty() && !graph.with_agents.contains(&root) {
        return Err(ChainError::NoAgent { path, config: root });
    }
    let entitlement = |configuration: &ConfigId, target: &Target| Entitlement {
        configuration: configuration.clone(),
        target: target.clone(),
        principal: principal.to_owned(),
    };
    let confirm = downstream
        .iter()
        .filter(|c| graph.with_agents.contains(*c))
        .filter_map(|c| {
            let target = if *c == resource.configuration {
                Some(&resource.target)
            } else {
                resource.realized_by.get(c)
            };
            target.map(|t| entitlement(c, t))
        })
        .collect();
    Ok(Plan {
        apply: entitlement(&root, &target),
        path,
        confirm,
    })
}

/// Tenant keys of a federated configuration naming the directory's
/// provisioning job into it (all three, or none).
pub const PROVISIONING_KEYS: [&str; 3] = [
    "provisioning_service_principal_id",
    "provisioning_job_id",
    "provisioning_rule_id",
];

/// The on-demand provisioning a plan's grant asks of its directory: the
/// job the configuration federated directly to the root names in its
/// tenant keys ([`PROVISIONING_KEYS`]), if it names one.
pub fn provisioning(graph: &ConfigGraph, plan: &Plan) -> Option<ProvisionOnDemand> {
    let path = &plan.path.0;
    let next_to_root = path.len().checked_sub(2).and_then(|i| path.get(i))?;
    let tenant = &graph.configurations.get(next_to_root)?.tenant;
    let [sp, job, rule] = PROVISIONING_KEYS.map(|k| tenant.get(k).cloned());
    Some(ProvisionOnDemand {
        service_principal_id: sp?,
        job_id: job?,
        rule_id: rule?,
    })
}

/// Every configuration's chain, for checking a catalogue change: the first
/// cycle, missing directory or over-deep chain, naming its path. Disabled
/// configurations are allowed here (they fail resolution, not the change).
pub fn check_links(graph: &ConfigGraph) -> Result<(), ChainError> {
    let mut enabled = graph.clone();
    for c in enabled.configurations.values_mut() {
        c.enabled = true;
    }
    for id in graph.configurations.keys() {
        enabled.walk(id)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
