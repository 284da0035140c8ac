//! Broker configuration, layered: built-in defaults < file < environment <
//! flags. Unknown keys in the file are refused. Every key is documented in
//! `deploy/broker.example.toml`. Durations are read as durations ("30d",
//! "5s") wherever they come from, and checked against their bounds once, at
//! load. `[sso]` is in `sso.rs`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod database;
mod notify;
mod on_call;
mod sso;

pub use database::{DatabaseConfig, StoreKind, StoreOverrides};
pub use notify::{EmailConfig, NotifyConfig, SlackConfig, SmtpTls, TeamsConfig, WebhookConfig};
pub use on_call::{OnCallConfig, OnCallProvider};
pub use sso::{OidcProviderConfig, SamlProviderConfig, SsoConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// Address the REST API listens on.
    pub listen: SocketAddr,
    /// Where the embedded store, the broker CA and the signing keys live.
    pub data_dir: PathBuf,
    /// Where state is kept: `sled` (embedded, in `data_dir`) or `postgres`
    /// (`[database]`, shared by several brokers).
    pub store: StoreKind,
    /// Directory of `*.cedar` policies and `workflows.toml`.
    pub policy_dir: PathBuf,
    /// DNS names and IP addresses in the API's TLS certificate.
    pub server_names: Vec<String>,
    /// Serve plain HTTP. Only behind a TLS-terminating proxy on the same host.
    pub insecure_plain_http: bool,
    /// Lifetime of API tokens for local accounts, like "30d" or "12h".
    #[serde(with = "humantime_serde")]
    pub token_ttl: Duration,
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
    /// How long a client may take to send a request's headers, and how
    /// long a kept-alive connection may wait idle for the next request,
    /// like "10s".
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// How often the audit chain's head is signed (and at shutdown), like
    /// "1m": records after the last anchor are what a cut-off tail could
    /// lose unnoticed.
    #[serde(with = "humantime_serde")]
    pub audit_anchor_interval: Duration,
    /// How often the broker checks its whole audit log (every record's
    /// hash, and the chain against its signed head), like "1h"; also at
    /// start and when an admin asks on the console's audit page.
    #[serde(with = "humantime_serde")]
    pub audit_verify_interval: Duration,
    /// Sign-in requests (`/auth/*`) one client may make a minute.
    pub sign_ins_per_minute: u32,
    /// Refused bearer tokens one client may present a minute; past that its
    /// tokens are refused unread until the quota refills.
    pub failed_tokens_per_minute: u32,
    pub log_format: LogFormat,
    /// Address the agent hub (mutually authenticated websockets) listens on.
    pub hub_listen: SocketAddr,
    /// The hub's address as agents reach it, told to them at enrollment.
    /// With several brokers, each one's, comma-separated: agents fail over
    /// between them. Empty: `wss://{first server name}:{hub port}`.
    pub hub_url: String,
    /// Heartbeat interval on agent sessions; two missed and the agent is offline.
    #[serde(with = "humantime_serde")]
    pub agent_heartbeat: Duration,
    /// Lifetime of agent client certificates; agents renew at two thirds.
    #[serde(with = "humantime_serde")]
    pub agent_cert_ttl: Duration,
    /// New agents wait for an admin's approval before they may connect.
    pub agent_approval: bool,
    /// Reconciliation revokes entitlements found in a tenant that jitgate
    /// did not grant (otherwise it only reports them).
    pub remove_unexpected: bool,
    /// How often each agent session compares the tenant with the grants
    /// (besides at every connect), like "10m".
    #[serde(with = "humantime_serde")]
    pub reconcile_interval: Duration,
    /// The REST API's URL as people and directories reach it (SCIM base
    /// URL, SSO callbacks). Empty: `https://{first server name}:{port}`.
    pub public_url: String,
    /// Sign-in through identity providers.
    pub sso: SsoConfig,
    /// The PostgreSQL database, with `store = "postgres"`.
    pub database: DatabaseConfig,
    /// Channels notifications go out through.
    pub notify: NotifyConfig,
    /// On-call providers whose schedules workflows name.
    pub on_call: Vec<OnCallConfig>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            data_dir: PathBuf::from("/var/lib/jitgate"),
            policy_dir: PathBuf::from("/etc/jitgate/policies"),
            server_names: vec!["localhost".into(), "127.0.0.1".into()],
            insecure_plain_http: false,
            token_ttl: Duration::from_secs(30 * 86_400),
            max_body_bytes: crate::api::DEFAULT_MAX_BODY,
            header_read_timeout: Duration::from_secs(10),
            audit_anchor_interval: Duration::from_secs(60),
            audit_verify_interval: Duration::from_secs(3600),
            sign_ins_per_minute: 60,
            failed_tokens_per_minute: 30,
            log_format: LogFormat::Text,
            hub_listen: SocketAddr::from(([127, 0, 0, 1], 8444)),
            hub_url: String::new(),
            agent_heartbeat: Duration::from_secs(5),
            agent_cert_ttl: Duration::from_secs(24 * 3600),
            agent_approval: false,
            remove_unexpected: false,
            reconcile_interval: Duration::from_secs(10 * 60),
            public_url: String::new(),
            sso: SsoConfig::default(),
            store: StoreKind::default(),
            database: DatabaseConfig::default(),
            notify: NotifyConfig::default(),
            on_call: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("config file {path}: {error}")]
    Parse { path: String, error: String },
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
}

/// Values from the environment and flags; `None` leaves the layer below.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Overrides {
    /// Address the REST API listens on [default: 127.0.0.1:8443].
    #[arg(long, env = "JITGATE_LISTEN")]
    pub listen: Option<SocketAddr>,
    #[command(flatten)]
    pub store: StoreOverrides,
    /// Policy directory [default: /etc/jitgate/policies].
    #[arg(long, env = "JITGATE_POLICY_DIR")]
    pub policy_dir: Option<PathBuf>,
    /// A name for the TLS certificate; repeat for several [default: localhost, 127.0.0.1].
    #[arg(long = "server-name", env = "JITGATE_SERVER_NAMES", value_delimiter = ',')]
    pub server_names: Option<Vec<String>>,
    /// Serve plain HTTP (only behind a TLS-terminating proxy).
    #[arg(long, env = "JITGATE_INSECURE_PLAIN_HTTP", num_args = 0..=1, default_missing_value = "true")]
    pub insecure_plain_http: Option<bool>,
    /// API token lifetime for local accounts, like 30d [default: 30d].
    #[arg(long, env = "JITGATE_TOKEN_TTL", value_parser = humantime::parse_duration)]
    pub token_ttl: Option<Duration>,
    /// Largest accepted request body in bytes [default: 65536].
    #[arg(long, env = "JITGATE_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Log format [default: text].
    #[arg(long, env = "JITGATE_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Address the agent hub listens on [default: 127.0.0.1:8444].
    #[arg(long, env = "JITGATE_HUB_LISTEN")]
    pub hub_listen: Option<SocketAddr>,
    /// The hub's URL as agents reach it [default: wss://{first server name}:{hub port}].
    #[arg(long, env = "JITGATE_HUB_URL")]
    pub hub_url: Option<String>,
    /// Heartbeat interval on agent sessions, like 5s [default: 5s].
    #[arg(long, env = "JITGATE_AGENT_HEARTBEAT", value_parser = humantime::parse_duration)]
    pub agent_heartbeat: Option<Duration>,
    /// Lifetime of agent client certificates, like 24h [default: 24h].
    #[arg(long, env = "JITGATE_AGENT_CERT_TTL", value_parser = humantime::parse_duration)]
    pub agent_cert_ttl: Option<Duration>,
    /// New agents wait for an admin's approval [default: false].
    #[arg(long, env = "JITGATE_AGENT_APPROVAL", num_args = 0..=1, default_missing_value = "true")]
    pub agent_approval: Option<bool>,
    /// Revoke entitlements found in a tenant that jitgate did not grant [default: false].
    #[arg(long, env = "JITGATE_REMOVE_UNEXPECTED", num_args = 0..=1, default_missing_value = "true")]
    pub remove_unexpected: Option<bool>,
    /// How long a client may take to send request headers (and stay idle between requests), like 10s [default: 10s].
    #[arg(long, env = "JITGATE_HEADER_READ_TIMEOUT", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Option<Duration>,
    /// How often the audit chain's head is signed, like 1m [default: 1m].
    #[arg(long, env = "JITGATE_AUDIT_ANCHOR_INTERVAL", value_parser = humantime::parse_duration)]
    pub audit_anchor_interval: Option<Duration>,
    /// How often the broker checks its whole audit log, like 1h [default: 1h].
    #[arg(long, env = "JITGATE_AUDIT_VERIFY_INTERVAL", value_parser = humantime::parse_duration)]
    pub audit_verify_interval: Option<Duration>,
    /// Sign-in requests one client may make a minute [default: 60].
    #[arg(long, env = "JITGATE_SIGN_INS_PER_MINUTE")]
    pub sign_ins_per_minute: Option<u32>,
    /// Refused bearer tokens one client may present a minute [default: 30].
    #[arg(long, env = "JITGATE_FAILED_TOKENS_PER_MINUTE")]
    pub failed_tokens_per_minute: Option<u32>,
    /// How often agent sessions reconcile the tenant with the grants, like 10m [default: 10m].
    #[arg(long, env = "JITGATE_RECONCILE_INTERVAL", value_parser = humantime::parse_duration)]
    pub reconcile_interval: Option<Duration>,
    /// The API's URL as people and directories reach it [default: https://{first server name}:{port}].
    #[arg(long, env = "JITGATE_PUBLIC_URL")]
    pub public_url: Option<String>,
}

impl BrokerConfig {
    /// Defaults, then `file` if given, then `overrides`; then checked.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
                    path: path.display().to_string(),
                    error,
                })?;
                Self::parse(&text, &path.display().to_string())?
            }
            None => Self::default(),
        };
        let o = overrides.clone();
        if let Some(v) = o.listen {
            config.listen = v;
        }
        if let Some(v) = o.store.data_dir {
            config.data_dir = v;
        }
        if let Some(v) = o.store.store {
            config.store = v;
        }
        if let Some(v) = o.store.database_url {
            config.database.url = v;
        }
        if let Some(v) = o.store.database_password_file {
            config.database.password_file = Some(v);
        }
        if let Some(v) = o.policy_dir {
            config.policy_dir = v;
        }
        if let Some(v) = o.server_names {
            config.server_names = v;
        }
        if let Some(v) = o.insecure_plain_http {
            config.insecure_plain_http = v;
        }
        if let Some(v) = o.token_ttl {
            config.token_ttl = v;
        }
        if let Some(v) = o.max_body_bytes {
            config.max_body_bytes = v;
        }
        if let Some(v) = o.log_format {
            config.log_format = v;
        }
        if let Some(v) = o.hub_listen {
            config.hub_listen = v;
        }
        if let Some(v) = o.hub_url {
            config.hub_url = v;
        }
        if let Some(v) = o.agent_heartbeat {
            config.agent_heartbeat = v;
        }
        if let Some(v) = o.agent_cert_ttl {
            config.agent_cert_ttl = v;
        }
        if let Some(v) = o.agent_approval {
            config.agent_approval = v;
        }
        if let Some(v) = o.remove_unexpected {
            config.remove_unexpected = v;
        }
        if let Some(v) = o.audit_anchor_interval {
            config.audit_anchor_interval = v;
        }
        if let Some(v) = o.audit_verify_interval {
            config.audit_verify_interval = v;
        }
        if let Some(v) = o.sign_ins_per_minute {
            config.sign_ins_per_minute = v;
        }
        if let Some(v) = o.failed_tokens_per_minute {
            config.failed_tokens_per_minute = v;
        }
        if let Some(v) = o.header_read_timeout {
            config.header_read_timeout = v;
        }
        if let Some(v) = o.reconcile_interval {
            config.reconcile_interval = v;
        }
        if let Some(v) = &o.public_url {
            config.public_url = v.clone();
        }
        config.check()?;
        Ok(config)
    }

    pub fn parse(text: &str, path: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            error: e.to_string(),
        })
    }

    fn check(&self) -> Result<(), ConfigError> {
        let (ms, s) = (Duration::from_millis, Duration::from_secs);
        within("token_ttl", self.token_ttl, s(1), s(366 * 86_400))?;
        within("agent_heartbeat", self.agent_heartbeat, ms(100), s(300))?;
        within(
            "reconcile_interval",
            self.reconcile_interval,
            ms(100),
            s(24 * 3600),
        )?;
        within("header_read_timeout", self.header_read_timeout, ms(100), s(300))?;
        within(
            "audit_anchor_interval",
            self.audit_anchor_interval,
            ms(100),
            s(24 * 3600),
        )?;
        within(
            "audit_verify_interval",
            self.audit_verify_interval,
            s(1),
            s(7 * 86_400),
        )?;
        within("agent_cert_ttl", self.agent_cert_ttl, s(60), s(90 * 86_400))?;
        self.sso.check()?;
        self.database.check(self.store)?;
        self.notify.check()?;
        OnCallConfig::check_all(&self.on_call)?;
        self.client_limits()?;
        if let Some(bad) = self
            .hub_url
            .split(',')
            .map(str::trim)
            .find(|u| !self.hub_url.is_empty() && !u.starts_with("wss://"))
        {
            return Err(ConfigError::Invalid {
                key: "hub_url",
                message: format!("`{bad}` must start with wss://"),
            });
        }
        let url = &self.public_url;
        if !(url.is_empty() || url.starts_with("https://") || url.starts_with("http://")) {
            return Err(ConfigError::Invalid {
                key: "public_url",
                message: format!(
                    "`{}` must start with https:// (or http:// behind a proxy)",
                    self.public_url
                ),
            });
        }
        if self.server_names.is_empty() && !self.insecure_plain_http {
            return Err(ConfigError::Invalid {
                key: "server_names",
                message: "at least one name is needed for the TLS certificate".into(),
            });
        }
        if self.max_body_bytes < 1024 {
            return Err(ConfigError::Invalid {
                key: "max_body_bytes",
                message: format!("{} is too small; at least 1024", self.max_body_bytes),
            });
        }
        Ok(())
    }

    /// The per-client quotas; each must be at least 1.
    pub fn client_limits(&self) -> Result<crate::api::limits::LimitSettings, ConfigError> {
        let at_least_one = |key: &'static str, v: u32| {
            std::num::NonZeroU32::new(v).ok_or_else(|| ConfigError::Invalid {
                key,
                message: "must be at least 1".into(),
            })
        };
        Ok(crate::api::limits::LimitSettings {
            sign_ins_per_minute: at_least_one("sign_ins_per_minute", self.sign_ins_per_minute)?,
            failed_tokens_per_minute: at_least_one(
                "failed_tokens_per_minute",
                self.failed_tokens_per_minute,
            )?,
        })
    }

    /// The API's URL as people reach it, for an API bound to `bound`.
    pub fn public_url_for(&self, bound: SocketAddr) -> String {
        if !self.public_url.is_empty() {
            return self.public_url.trim_end_matches('/').to_owned();
        }
        let host = self
            .server_names
            .first()
            .map_or_else(|| bound.ip().to_string(), Clone::clone);
        let scheme = if self.insecure_plain_http { "http" } else { "https" };
        format!("{scheme}://{host}:{}", bound.port())
    }

    /// The hub URL agents are told, for a hub bound to `bound`.
    pub fn hub_url_for(&self, bound: SocketAddr) -> String {
        if !self.hub_url.is_empty() {
            return self.hub_url.clone();
        }
        let host = self
            .server_names
            .first()
            .map_or_else(|| bound.ip().to_string(), Clone::clone);
        format!("wss://{host}:{}", bound.port())
    }
}

/// `value` between `min` and `max`, or an error naming `key`.
/// The name of a channel or provider (`webhook:NAME`, `teams:NAME`,
/// `on_call = "NAME:…"`): lowercase letters, digits and `-`, each once
/// among its kind (`seen`).
fn check_name<'a>(
    key: &'static str,
    name: &'a str,
    seen: &mut std::collections::BTreeSet<&'a str>,
) -> Result<(), ConfigError> {
    let well_formed = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let message = if !well_formed {
        "a name is lowercase letters, digits and `-`"
    } else if !seen.insert(name) {
        "named twice"
    } else {
        return Ok(());
    };
    Err(ConfigError::Invalid {
        key,
        message: format!("`{name}`: {message}"),
    })
}

/// A URL jitgate calls out to: https:// (http:// only to a loopback
/// address, for a peer on the same host).
fn check_https(key: &'static str, url: &str) -> Result<(), ConfigError> {
    let invalid = |message: String| ConfigError::Invalid { key, message };
    let parsed = reqwest::Url::parse(url).map_err(|e| invalid(format!("`{url}`: {e}")))?;
    let loopback = crate::identity::oidc::is_loopback(&parsed);
    if parsed.scheme() == "https" || (parsed.scheme() == "http" && loopback) {
        Ok(())
    } else {
        Err(invalid(format!(
            "`{url}` must be https:// (http:// only to a loopback address)"
        )))
    }
}

fn within(key: &'static str, value: Duration, min: Duration, max: Duration) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::Invalid {
            key,
            message: format!(
                "{} must be between {} and {}",
                humantime::format_duration(value),
                humantime::format_duration(min),
                humantime::format_duration(max)
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn sign_in_providers_are_checked_at_load() {
        let bad = |toml: &str| {
            BrokerConfig::parse(toml, "t")
                .unwrap()
                .check()
                .unwrap_err()
                .to_string()
        };
        let oidc = "[[sso.oidc]]\nname = \"corp\"\nissuer = \"https://idp\"\nclient_id = \"c\"\nemail_domains = [\"a.example\"]\n";
        assert!(bad(&format!("{oidc}[[sso.saml]]\nname = \"corp\"\nidp_metadata_url = \"https://x\"\nemail_domains = [\"b.example\"]\n"))
            .contains("configured twice"));
        assert!(bad("[[sso.saml]]\nname = \"okta\"\n").contains("idp_metadata_file"));
        assert!(bad(&format!(
            "{oidc}[[sso.saml]]\nname = \"okta\"\nidp_metadata_url = \"https://x\"\n"
        ))
        .contains("email_domains"));
        assert!(bad("[[sso.oidc]]\nname = \"corp\"\nissuer = \"https://idp\"\nclient_id = \"c\"\nsigning_algorithms = [\"none\"]\n")
            .contains("`none` is not allowed"));
        assert!(bad("[[sso.oidc]]\nname = \"corp\"\nissuer = \"https://idp\"\nclient_id = \"c\"\ndefault_role = \"root\"\n")
            .contains("default_role `root`"));
    }

    use super::*;

    #[test]
    fn the_example_file_documents_every_key_and_parses() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/broker.example.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let parsed = BrokerConfig::parse(&text, path).unwrap();
        let defaults = toml::to_string(&BrokerConfig::default()).unwrap();
        for line in defaults.lines().filter(|l| l.contains(" = ")) {
            let key = line.split(" = ").next().unwrap();
            assert!(text.contains(&format!("{key} = ")), "`{key}` is not in {path}");
        }
        assert_eq!(parsed.token_ttl, Duration::from_secs(30 * 86400));
        assert_eq!(parsed.sso.session_ttl, Duration::from_secs(12 * 3600));
    }

    #[test]
    fn the_database_is_checked_at_load_and_its_password_never_shown() {
        let bad = |toml: &str| {
            BrokerConfig::parse(toml, "t")
                .unwrap()
                .check()
                .unwrap_err()
                .to_string()
        };
        assert!(bad("store = \"postgres\"\n").starts_with("database.url: "));
        assert!(
            bad("store = \"postgres\"\n[database]\nurl = \"postgres://h/db?sslmode=sometimes\"\n")
                .starts_with("database.url: ")
        );
        assert!(bad("[database]\npool_size = 0\n").starts_with("database.pool_size: 0 must be"));
        assert_eq!(
            bad("hub_url = \"wss://a:8444,https://b:8444\"\n"),
            "hub_url: `https://b:8444` must start with wss://"
        );
        BrokerConfig::parse("hub_url = \"wss://a:8444, wss://b:8444\"\n", "t")
            .unwrap()
            .check()
            .unwrap();
        let err = BrokerConfig::parse("store = \"mysql\"\n", "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("mysql"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("pw");
        std::fs::write(&secret, "s3cret-from-file\n").unwrap();
        let o = Overrides {
            store: StoreOverrides {
                store: Some(StoreKind::Postgres),
                database_url: Some("postgres://jitgate:s3cret-in-url@db.internal:5433/jg".into()),
                database_password_file: Some(secret),
                ..StoreOverrides::default()
            },
            ..Overrides::default()
        };
        let c = BrokerConfig::load(None, &o).unwrap();
        let settings = c.database.settings().unwrap();
        assert_eq!(settings.password.as_deref(), Some("s3cret-from-file"));
        for shown in [format!("{c:?}"), format!("{settings:?}")] {
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(shown.contains("jitgate@db.internal:5433/jg"), "{shown}");
        }
    }

    #[test]
    fn layers_apply_in_order_and_unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("broker.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:9000\"\ntoken_ttl = \"1h\"\n").unwrap();
        let o = Overrides {
            token_ttl: Some(Duration::from_secs(7200)),
            ..Overrides::default()
        };
        let c = BrokerConfig::load(Some(&file), &o).unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.token_ttl, Duration::from_secs(7200));
        assert_eq!(c.server_names, BrokerConfig::default().server_names);

        std::fs::write(&file, "listn = \"127.0.0.1:9000\"\n").unwrap();
        let err = BrokerConfig::load(Some(&file), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("unknown field `listn`"), "{err}");

        // A duration that is not one names its key and line.
        std::fs::write(&file, "token_ttl = \"forever\"\n").unwrap();
        let err = BrokerConfig::load(Some(&file), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("token_ttl") && err.contains("forever") && err.contains("line 1"),
            "{err}"
        );
        let huge = Overrides {
            token_ttl: Some(humantime::parse_duration("100000years").unwrap()),
            ..Overrides::default()
        };
        let err = BrokerConfig::load(None, &huge).unwrap_err().to_string();
        assert!(
            err.starts_with("token_ttl: ") && err.contains("must be between 1s and"),
            "{err}"
        );
        std::fs::write(&file, "[sso]\naccess_ttl = \"1s\"\n").unwrap();
        let err = BrokerConfig::load(Some(&file), &Overrides::default()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("sso.access_ttl: 1s must be between 10s"),
            "{err}"
        );
    }
}
