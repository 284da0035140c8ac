//! The policy set in force, swappable without restart. A reload that fails
//! validation keeps the previous set and records why.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use jitgate_shared::v1::api::PolicyStatus;

use crate::domain::policy::{Catalog, Policies, PolicyError, PolicyErrors, PolicySource, WORKFLOWS_FILE};

/// Reads `*.cedar` and `workflows.toml` from `dir`, sorted by name.
pub fn read_policy_dir(dir: &Path) -> Result<Vec<PolicySource>, PolicyErrors> {
    let fail = |message: String| {
        PolicyErrors(vec![PolicyError {
            path: dir.display().to_string(),
            line: None,
            message,
        }])
    };
    let entries =
        std::fs::read_dir(dir).map_err(|e| fail(format!("cannot read the policy directory: {e}")))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|e| e == "cedar") || p.file_name().is_some_and(|n| n == WORKFLOWS_FILE)
        })
        .collect();
    paths.sort();
    if !paths.iter().any(|p| p.extension().is_some_and(|e| e == "cedar")) {
        return Err(fail(
            "no *.cedar policy files found; nothing would be permitted".into(),
        ));
    }
    paths
        .into_iter()
        .map(|p| {
            let text =
                std::fs::read_to_string(&p).map_err(|e| fail(format!("cannot read {}: {e}", p.display())))?;
            Ok(PolicySource {
                path: p.display().to_string(),
                text,
            })
        })
        .collect()
}

#[derive(Debug)]
struct Meta {
    loaded_at: DateTime<Utc>,
    last_error: Option<String>,
}

#[derive(Debug)]
pub struct PolicyHolder {
    dir: PathBuf,
    current: ArcSwap<Policies>,
    meta: Mutex<Meta>,
}

impl PolicyHolder {
    pub fn new(dir: PathBuf, policies: Policies, now: DateTime<Utc>) -> Self {
        Self {
            dir,
            current: ArcSwap::from_pointee(policies),
            meta: Mutex::new(Meta {
                loaded_at: now,
                last_error: None,
            }),
        }
    }

    pub fn load(dir: &Path, catalog: &Catalog) -> Result<Policies, PolicyErrors> {
        Policies::load(&read_policy_dir(dir)?, catalog)
    }

    pub fn current(&self) -> Arc<Policies> {
        self.current.load_full()
    }

    /// Re-reads the directory. On error the old set stays in force.
    pub fn reload(&self, catalog: &Catalog, now: DateTime<Utc>) -> Result<Arc<Policies>, PolicyErrors> {
        let result = Self::load(&self.dir, catalog);
        let mut meta = match self.meta.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        match result {
            Ok(p) => {
                let p = Arc::new(p);
                self.current.store(p.clone());
                meta.loaded_at = now;
                meta.last_error = None;
                Ok(p)
            }
            Err(e) => {
                meta.last_error = Some(e.to_string());
                Err(e)
            }
        }
    }

    pub fn status(&self) -> PolicyStatus {
        let p = self.current();
        let meta = match self.meta.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        PolicyStatus {
            directory: self.dir.display().to_string(),
            files: p.files().to_vec(),
            policies: p.policy_count(),
            loaded_at: meta.loaded_at,
            last_error: meta.last_error.clone(),
        }
    }
}
