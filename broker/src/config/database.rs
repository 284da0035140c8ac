//! Where the broker keeps its state: the embedded store in the data
//! directory, or a PostgreSQL database several brokers share.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{within, ConfigError};
use crate::store::postgres::PgSettings;

/// The store backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// Embedded (sled), in `{data_dir}/store`: one broker.
    #[default]
    Sled,
    /// A PostgreSQL database (`[database]`): one broker or several.
    Postgres,
}

/// `[database]`: the PostgreSQL database, when `store = "postgres"`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `postgres://user@host:5432/jitgate?sslmode=require`, or libpq
    /// key=value form. Keep the password out of it: `password_file`.
    pub url: String,
    /// A file holding the database password (its first line).
    pub password_file: Option<PathBuf>,
    /// Connections this broker opens at most.
    pub pool_size: usize,
    /// CA certificates (PEM) the database server's certificate must chain
    /// to, with `sslmode=require` (or `verify-full`); without it, the
    /// system's roots.
    pub ca_file: Option<PathBuf>,
    /// How long connecting, or waiting for a free connection, may take.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Apply the broker's schema migrations at start when the database
    /// lacks them (under a lock: brokers starting together migrate once).
    /// Off: run `jitgate-broker migrate` first; the broker refuses to start
    /// on an older schema. A newer schema is always refused.
    pub migrate_at_start: bool,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            password_file: None,
            pool_size: 16,
            ca_file: None,
            connect_timeout: Duration::from_secs(10),
            migrate_at_start: true,
        }
    }
}

impl std::fmt::Debug for DatabaseConfig {
    // The URL may carry a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &crate::store::postgres::describe(&self.url))
            .field("password_file", &self.password_file)
            .field("pool_size", &self.pool_size)
            .field("ca_file", &self.ca_file)
            .field("connect_timeout", &self.connect_timeout)
            .field("migrate_at_start", &self.migrate_at_start)
            .finish()
    }
}

impl DatabaseConfig {
    pub(super) fn check(&self, store: StoreKind) -> Result<(), ConfigError> {
        within(
            "database.connect_timeout",
            self.connect_timeout,
            Duration::from_millis(100),
            Duration::from_secs(300),
        )?;
        if !(1..=1024).contains(&self.pool_size) {
            return Err(ConfigError::Invalid {
                key: "database.pool_size",
                message: format!("{} must be between 1 and 1024", self.pool_size),
            });
        }
        if store != StoreKind::Postgres {
            return Ok(());
        }
        if self.url.is_empty() {
            return Err(ConfigError::Invalid {
                key: "database.url",
                message: "store = \"postgres\" needs the database's URL (or JITGATE_DATABASE_URL)".into(),
            });
        }
        crate::store::postgres::check_url(&self.url).map_err(|message| ConfigError::Invalid {
            key: "database.url",
            message,
        })
    }

    /// The settings to connect with, the password read from its file.
    pub fn settings(&self) -> Result<PgSettings, ConfigError> {
        let password = match &self.password_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Invalid {
                    key: "database.password_file",
                    message: format!("{}: {error}", path.display()),
                })?;
                Some(text.lines().next().unwrap_or_default().to_owned())
            }
            None => None,
        };
        Ok(PgSettings {
            url: self.url.clone(),
            password,
            pool_size: self.pool_size,
            ca_file: self.ca_file.clone(),
            connect_timeout: self.connect_timeout,
        })
    }
}

/// The store's settings among the overrides (flags and environment), for
/// every command that opens the store.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StoreOverrides {
    /// Data directory (embedded store, CA, keys) [default: /var/lib/jitgate].
    #[arg(long, env = "JITGATE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Store backend: sled (embedded) or postgres [default: sled].
    #[arg(long, env = "JITGATE_STORE")]
    pub store: Option<StoreKind>,
    /// PostgreSQL URL, with store = postgres.
    #[arg(long, env = "JITGATE_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// File holding the database password.
    #[arg(long, env = "JITGATE_DATABASE_PASSWORD_FILE")]
    pub database_password_file: Option<PathBuf>,
}
