//! The sandbox: a simulated tenant, not a cloud. It holds entitlements in a
//! set, optionally kept in a JSON file so it outlives the agent process (as
//! a real tenant would) and tests can look inside. Latency, throttling and
//! failures can be dialled in to exercise retries.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use jitgate_shared::v1::{ConfigId, Entitlement, Target};
use tokio::sync::Mutex;

use super::{Effect, Provider, ProviderError};

/// How the sandbox behaves.
#[derive(Debug, Clone, Default)]
pub struct SandboxSettings {
    /// Where the simulated tenant is kept; `None` keeps it in memory only.
    pub state_file: Option<PathBuf>,
    /// Added to every call.
    pub latency: Duration,
    /// Added after a change is made, before the call returns: a tenant that
    /// applied (or removed) the entitlement but answers late, as a cloud
    /// whose response is slow or lost does.
    pub answer_latency: Duration,
    /// Share of calls answered "throttled, retry after 1 s" (0.0 to 1.0).
    pub throttle_rate: f64,
    /// Share of calls failing with a transient error (0.0 to 1.0).
    pub failure_rate: f64,
}

/// One line of the tenant's change log.
#[derive(Debug, serde::Deserialize)]
struct LoggedChange {
    op: String,
    principal: String,
    target: Target,
}

#[derive(Debug)]
pub struct Sandbox {
    configuration: ConfigId,
    settings: SandboxSettings,
    held: Mutex<BTreeSet<Entitlement>>,
}

impl Sandbox {
    pub fn open(configuration: ConfigId, settings: SandboxSettings) -> Result<Self, ProviderError> {
        let unreadable = |path: &std::path::Path, e: &dyn std::fmt::Display| {
            ProviderError::rejected(format!("sandbox {}: {e}", path.display()))
        };
        let mut held: BTreeSet<Entitlement> = match &settings.state_file {
            Some(path) if path.exists() => {
                let text = std::fs::read_to_string(path).map_err(|e| unreadable(path, &e))?;
                serde_json::from_str(&text).map_err(|e| unreadable(path, &e))?
            }
            _ => BTreeSet::new(),
        };
        // A change is logged, then the tenant file written: an agent killed
        // between the two left the last logged change out of the file. A
        // tenant does not forget a change it made, so it is made again here
        // (and not logged twice when the agent replays it).
        if let Some(path) = &settings.state_file {
            let log = path.with_extension("log");
            if let Ok(text) = std::fs::read_to_string(&log) {
                if let Some(last) = text.lines().last() {
                    let change: LoggedChange =
                        serde_json::from_str(last).map_err(|e| unreadable(&log, &e))?;
                    let e = Entitlement {
                        configuration: configuration.clone(),
                        target: change.target,
                        principal: change.principal,
                    };
                    let torn = match change.op.as_str() {
                        "apply" => held.insert(e),
                        "remove" => held.remove(&e),
                        _ => false,
                    };
                    if torn {
                        let text = serde_json::to_vec_pretty(&held).map_err(|e| unreadable(path, &e))?;
                        crate::state::write_atomic(path, &text).map_err(|e| unreadable(path, &e))?;
                    }
                }
            }
        }
        Ok(Self {
            configuration,
            settings,
            held: Mutex::new(held),
        })
    }

    /// What the simulated tenant holds now.
    pub async fn held(&self) -> BTreeSet<Entitlement> {
        self.held.lock().await.clone()
    }

    async fn weather(&self) -> Result<(), ProviderError> {
        if !self.settings.latency.is_zero() {
            tokio::time::sleep(self.settings.latency).await;
        }
        let roll: f64 = rand::random();
        if roll < self.settings.throttle_rate {
            return Err(ProviderError::throttled(
                "sandbox: throttled (simulated)",
                Some(Duration::from_secs(1)),
            ));
        }
        if roll < self.settings.throttle_rate + self.settings.failure_rate {
            return Err(ProviderError::transport(
                "sandbox: service unavailable (simulated)",
            ));
        }
        Ok(())
    }

    async fn answer_late(&self) {
        if !self.settings.answer_latency.is_zero() {
            tokio::time::sleep(self.settings.answer_latency).await;
        }
    }

    fn check(&self, entitlement: &Entitlement) -> Result<(), ProviderError> {
        super::check_configuration(&self.configuration, entitlement)
    }

    /// Keeps the tenant in its file and appends the change to
    /// `<file>.log` (one JSON line per change), so tests can see every
    /// change the tenant went through, not only where it ended.
    fn persist(&self, held: &BTreeSet<Entitlement>, op: &str, e: &Entitlement) -> Result<(), ProviderError> {
        let Some(path) = &self.settings.state_file else {
            return Ok(());
        };
        // When the simulated tenant changed, as a real one would keep it.
        #[allow(clippy::disallowed_methods)]
        let at = chrono::Utc::now();
        let line =
            serde_json::json!({"op": op, "principal": e.principal, "target": e.target, "at": at}).to_string();
        let log = path.with_extension("log");
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|mut f| std::io::Write::write_all(&mut f, format!("{line}\n").as_bytes()));
        if let Err(e) = appended {
            return Err(ProviderError::transport(format!(
                "sandbox log {}: {e}",
                log.display()
            )));
        }
        let text = serde_json::to_vec_pretty(held).map_err(|e| ProviderError::rejected(e.to_string()))?;
        crate::state::write_atomic(path, &text).map_err(|e| ProviderError::transport(e.to_string()))
    }
}

#[async_trait]
impl Provider for Sandbox {
    fn capabilities(&self) -> BTreeSet<String> {
        [
            "aws_account_assignment",
            "aws_iam_group_membership",
            "aws_iam_policy_attachment",
            "entra_group_membership",
            "entra_directory_role",
            "list",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect()
    }

    async fn apply(&self, entitlement: &Entitlement) -> Result<Effect, ProviderError> {
        self.check(entitlement)?;
        self.weather().await?;
        let mut held = self.held.lock().await;
        if held.contains(entitlement) {
            return Ok(Effect::Unchanged);
        }
        held.insert(entitlement.clone());
        if let Err(e) = self.persist(&held, "apply", entitlement) {
            held.remove(entitlement);
            return Err(e);
        }
        drop(held);
        self.answer_late().await;
        Ok(Effect::Changed)
    }

    async fn remove(&self, entitlement: &Entitlement) -> Result<Effect, ProviderError> {
        self.check(entitlement)?;
        self.weather().await?;
        let mut held = self.held.lock().await;
        if !held.remove(entitlement) {
            return Ok(Effect::Unchanged);
        }
        if let Err(e) = self.persist(&held, "remove", entitlement) {
            held.insert(entitlement.clone());
            return Err(e);
        }
        drop(held);
        self.answer_late().await;
        Ok(Effect::Changed)
    }

    async fn list(&self, targets: &[Target]) -> Result<Vec<Entitlement>, ProviderError> {
        self.weather().await?;
        let held = self.held.lock().await;
        Ok(held
            .iter()
            .filter(|e| targets.contains(&e.target))
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jitgate_shared::v1::protocol::FailureKind;

    fn ent(who: &str) -> Entitlement {
        Entitlement {
            configuration: ConfigId::new("entra").unwrap(),
            target: Target::EntraGroupMembership { group_id: "g".into() },
            principal: who.into(),
        }
    }

    #[tokio::test]
    async fn operations_are_idempotent_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let settings = SandboxSettings {
            state_file: Some(dir.path().join("tenant.json")),
            ..SandboxSettings::default()
        };
        let config = ConfigId::new("entra").unwrap();
        let s = Sandbox::open(config.clone(), settings.clone()).unwrap();
        assert_eq!(s.apply(&ent("alice")).await.unwrap(), Effect::Changed);
        assert_eq!(s.apply(&ent("alice")).await.unwrap(), Effect::Unchanged);
        let again = Sandbox::open(config, settings).unwrap();
        assert_eq!(again.held().await.len(), 1);
        let targets = [Target::EntraGroupMembership { group_id: "g".into() }];
        assert_eq!(again.list(&targets).await.unwrap(), vec![ent("alice")]);
        assert!(again.list(&[]).await.unwrap().is_empty());
        assert_eq!(again.remove(&ent("alice")).await.unwrap(), Effect::Changed);
        assert_eq!(again.remove(&ent("alice")).await.unwrap(), Effect::Unchanged);
    }

    /// An agent killed after the tenant logged a change but before it wrote
    /// its file: the tenant still made the change, and the replayed command
    /// finds it made (one line in the log, not two).
    #[tokio::test]
    async fn a_change_logged_but_not_yet_written_is_kept_across_a_kill() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tenant.json");
        let settings = SandboxSettings {
            state_file: Some(file.clone()),
            ..SandboxSettings::default()
        };
        let config = ConfigId::new("entra").unwrap();
        let s = Sandbox::open(config.clone(), settings.clone()).unwrap();
        s.apply(&ent("alice")).await.unwrap();
        s.apply(&ent("bob")).await.unwrap();
        let logged = |who: &str, op: &str| {
            let line = serde_json::json!({"op": op, "principal": who, "target": ent(who).target, "at": "2026-12-07T00:00:00Z"});
            let log = file.with_extension("log");
            let mut text = std::fs::read_to_string(&log).unwrap();
            text.push_str(&format!("{line}\n"));
            std::fs::write(&log, text).unwrap();
        };
        let lines = || {
            std::fs::read_to_string(file.with_extension("log"))
                .unwrap()
                .lines()
                .count()
        };

        logged("carol", "apply");
        let again = Sandbox::open(config.clone(), settings.clone()).unwrap();
        assert!(again.held().await.contains(&ent("carol")));
        assert_eq!(again.apply(&ent("carol")).await.unwrap(), Effect::Unchanged);
        assert_eq!(lines(), 3);

        logged("alice", "remove");
        let again = Sandbox::open(config.clone(), settings.clone()).unwrap();
        assert!(!again.held().await.contains(&ent("alice")));
        assert_eq!(again.remove(&ent("alice")).await.unwrap(), Effect::Unchanged);
        assert_eq!(lines(), 4);
        // Reopened with nothing torn, nothing changes.
        let again = Sandbox::open(config, settings).unwrap();
        assert_eq!(
            again.held().await,
            [ent("bob"), ent("carol")].into_iter().collect()
        );
    }

    #[tokio::test]
    async fn another_configuration_and_simulated_trouble_are_errors() {
        let s = Sandbox::open(ConfigId::new("aws").unwrap(), SandboxSettings::default()).unwrap();
        assert_eq!(
            s.apply(&ent("alice")).await.unwrap_err().kind(),
            FailureKind::Rejected
        );
        let stormy = Sandbox::open(
            ConfigId::new("entra").unwrap(),
            SandboxSettings {
                throttle_rate: 1.0,
                ..SandboxSettings::default()
            },
        )
        .unwrap();
        let e = stormy.apply(&ent("alice")).await.unwrap_err();
        assert_eq!(e.kind(), FailureKind::Throttled);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(1)));
    }
}
