//! The quickstart's catalogue: sandboxed configurations, resources and demo
//! people, loaded into a data directory with a fresh token for each person
//! (`jitgate-broker catalog load` loads one too).

use std::collections::BTreeMap;

use jitgate_shared::v1::api::{Configuration, IdentityMode, IssuedToken, Resource, UserBody};
use serde::Deserialize;

use crate::audit::Actor;
use crate::domain::policy::{Catalog, CatalogEntry};
use crate::service::admin::UserOutcome;
use crate::service::{Broker, ServiceError};

/// A catalogue file such as `deploy/quickstart/catalog.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    #[serde(default)]
    pub configurations: Vec<Configuration>,
    #[serde(default)]
    pub resources: Vec<Resource>,
    #[serde(default)]
    pub users: Vec<UserBody>,
}

impl Seed {
    pub fn parse(text: &str, path: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| format!("{path}: {e}"))
    }

    /// What the policies may name once the seed is loaded.
    pub fn catalog(&self) -> Catalog {
        let resources: BTreeMap<String, CatalogEntry> = self
            .resources
            .iter()
            .map(|r| {
                (
                    r.id.to_string(),
                    CatalogEntry {
                        group: r.group.clone(),
                        configuration: r.configuration.to_string(),
                    },
                )
            })
            .collect();
        Catalog {
            resources,
            check_names: true,
        }
    }

    /// Saves everything (directories before the configurations federated to
    /// them) and issues a fresh token for each user.
    pub async fn apply(&self, broker: &Broker) -> Result<Vec<IssuedToken>, ServiceError> {
        for c in directories_first(&self.configurations) {
            broker.save_configuration(Actor::System, c.clone()).await?;
        }
        for r in &self.resources {
            broker.save_resource(Actor::System, r.clone()).await?;
        }
        let mut tokens = Vec::new();
        for u in &self.users {
            let issued = match broker.save_user(Actor::System, u.clone()).await? {
                UserOutcome::Created(issued) => issued,
                UserOutcome::Updated(_) => broker.issue_token_as(Actor::System, &u.id).await?,
            };
            tokens.push(issued);
        }
        Ok(tokens)
    }
}

/// Configurations ordered so that each comes after the directory it is
/// federated to, when that is in the same file. What cannot be ordered (a
/// cycle, a directory not in the file) comes last, in file order, and is
/// refused when saved with the reason.
fn directories_first(configurations: &[Configuration]) -> Vec<&Configuration> {
    let mut ordered: Vec<&Configuration> = Vec::with_capacity(configurations.len());
    let mut left: Vec<&Configuration> = configurations.iter().collect();
    loop {
        let (ready, rest): (Vec<_>, Vec<_>) = left.into_iter().partition(|c| match &c.identity_mode {
            IdentityMode::Direct => true,
            IdentityMode::Federated { directory } => ordered.iter().any(|o| &o.id == directory),
        });
        if ready.is_empty() {
            ordered.extend(rest);
            return ordered;
        }
        ordered.extend(ready);
        left = rest;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::policy::{Policies, PolicySource};

    fn repo(path: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(path)
    }

    #[test]
    fn the_shipped_policies_load_against_the_quickstart_catalog() {
        let path = repo("deploy/quickstart/catalog.toml");
        let seed = Seed::parse(&std::fs::read_to_string(&path).unwrap(), "catalog.toml").unwrap();
        assert!(seed.resources.len() >= 3);
        let sources = crate::service::policies::read_policy_dir(&repo("policies")).unwrap();
        let names: Vec<_> = sources.iter().map(|s: &PolicySource| s.path.clone()).collect();
        assert!(names.iter().any(|n| n.ends_with("workflows.toml")), "{names:?}");
        let p = Policies::load(&sources, &seed.catalog()).unwrap();
        assert!(p.policy_count() >= 4);
    }
}
