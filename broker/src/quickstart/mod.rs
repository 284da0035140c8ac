//! `jitgate-broker quickstart`: a broker on embedded defaults with a
//! catalogue of sandboxed tenants ([`seed`]), one sandbox agent per
//! configuration enrolled the way an operator would ([`agents`]), and
//! fresh tokens for the demo people in an environment file the CLI reads.

pub mod agents;
pub mod seed;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jitgate_shared::v1::api::{IssuedToken, Role, SignInLinkIssued};

pub use seed::Seed;

use crate::clock::SystemClock;
use crate::config::BrokerConfig;
use crate::server::{open_sled, ServeError, Server};
use crate::service::{Broker, ServiceError};
use crate::store::Store;

/// Where the quickstart keeps its state and what it loads.
#[derive(Debug, Clone)]
pub struct QuickstartSettings {
    pub data_dir: PathBuf,
    pub policy_dir: PathBuf,
    /// The catalogue file (`deploy/quickstart/catalog.toml`).
    pub catalog: PathBuf,
    pub listen: SocketAddr,
    pub hub_listen: SocketAddr,
    /// Where `jitgate` and `jitgate-agent` are (beside this binary).
    pub bin_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum QuickstartError {
    #[error("catalogue {path}: {message}")]
    Catalog { path: String, message: String },
    #[error("loading the catalogue: {0}")]
    Load(#[from] ServiceError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the quickstart catalogue has no admin to enroll agents with")]
    NoAdmin,
    #[error(transparent)]
    Agents(#[from] agents::AgentStartError),
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: crate::tls::TlsError,
    },
}

/// A broker over the store for offline commands; it never decides access.
pub fn offline_broker(store: Arc<dyn Store>) -> Broker {
    Broker::without_policies(store, Arc::new(SystemClock))
}

/// Reads and parses a catalogue file.
pub fn read_seed(path: &Path) -> Result<Seed, QuickstartError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| QuickstartError::Catalog {
        path: shown.clone(),
        message: e.to_string(),
    })?;
    Seed::parse(&text, &shown).map_err(|message| QuickstartError::Catalog { path: shown, message })
}

/// Loads the catalogue, starts the broker and the sandbox agents, prints
/// how to use them, and runs until SIGINT or SIGTERM.
pub async fn run(settings: QuickstartSettings) -> Result<(), QuickstartError> {
    let seed = read_seed(&settings.catalog)?;
    let store: Arc<dyn Store> = Arc::new(open_sled(&settings.data_dir)?);
    let tokens = seed.apply(&offline_broker(store.clone())).await?;
    let config = BrokerConfig {
        listen: settings.listen,
        hub_listen: settings.hub_listen,
        data_dir: settings.data_dir.clone(),
        policy_dir: settings.policy_dir.clone(),
        ..BrokerConfig::default()
    };
    let server = Server::start(&config, store).await?;
    let data_dir = std::fs::canonicalize(&settings.data_dir).unwrap_or(settings.data_dir);
    let ca = data_dir.join(crate::tls::CA_CERT_FILE);
    let env_file = data_dir.join("env.sh");
    let env = env_script(&settings.bin_dir, server.addr, &ca, &tokens);
    crate::tls::write_private(&env_file, &env).map_err(|source| QuickstartError::Write {
        path: env_file.display().to_string(),
        source,
    })?;
    let admin_token = tokens
        .iter()
        .find(|t| t.user.roles.contains(&Role::Admin))
        .map(|t| t.token.clone())
        .ok_or(QuickstartError::NoAdmin)?;
    let _agents = agents::start_sandbox_agents(
        &server,
        &data_dir,
        &ca,
        &settings.bin_dir.join("jitgate-agent"),
        admin_token,
    )
    .await?;
    let mut links = Vec::new();
    for t in &tokens {
        links.push(
            server
                .broker
                .issue_sign_in_link_as(crate::audit::Actor::System, &t.user.id)
                .await?,
        );
    }
    std::io::stdout()
        .lock()
        .write_all(greeting(server.addr, &tokens, &links, &env_file, &data_dir).as_bytes())
        .map_err(|source| QuickstartError::Io {
            what: "writing to stdout".into(),
            source,
        })?;
    server.run_until_signalled().await?;
    Ok(())
}

/// The shell script the CLI's settings come from: `PATH`, the server, its
/// CA, and `{USER}_TOKEN` for each demo person.
pub fn env_script(bin_dir: &Path, addr: SocketAddr, ca: &Path, tokens: &[IssuedToken]) -> String {
    let mut env = format!(
        "export PATH=\"{}:$PATH\"\nexport JITGATE_SERVER=https://{addr}\nexport JITGATE_CA_CERT={}\n",
        bin_dir.display(),
        ca.display()
    );
    for t in tokens {
        env.push_str(&format!(
            "export {}={}\n",
            token_variable(t.user.id.as_str()),
            t.token
        ));
    }
    env
}

/// `alice` → `ALICE_TOKEN`; characters a shell variable cannot hold
/// become `_`.
fn token_variable(user: &str) -> String {
    let name: String = user
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("{name}_TOKEN")
}

/// What the quickstart prints once everything runs.
pub fn greeting(
    addr: SocketAddr,
    tokens: &[IssuedToken],
    links: &[SignInLinkIssued],
    env_file: &Path,
    data_dir: &Path,
) -> String {
    let people: Vec<String> = tokens
        .iter()
        .map(|t| {
            let roles: Vec<&str> = t.user.roles.iter().map(|r| r.as_str()).collect();
            format!("{} ({})", t.user.id, roles.join("+"))
        })
        .collect();
    let env = env_file.display();
    let sign_in: String = links
        .iter()
        .map(|l| format!("  {:<8} {}\n", l.user.id.as_str(), l.url))
        .collect();
    format!(
        "\njitgate quickstart: broker on https://{addr} (sandboxed example tenants; nothing leaves this machine)\n\
         Web console: {console}/console/ (the broker's own CA: {data_dir}/ca.pem; accept it in the browser)\n\
         One-time sign-in links, 15 minutes each (more: jitgate-broker user link USER --data-dir {data_dir}):\n\
         {sign_in}\
         Demo users: {people}\n\
         Tokens and settings for the CLI are in {env} (owner-readable only). In another terminal:\n\
         \x20 source {env}\n\
         \x20 JITGATE_TOKEN=$ALICE_TOKEN jitgate request aws-dev-admin --duration 2m --justification 'try jitgate'\n\
         \x20 JITGATE_TOKEN=$BOB_TOKEN jitgate list --state pending\n\
         \x20 JITGATE_TOKEN=$BOB_TOKEN jitgate approve <request id>\n\
         \x20 JITGATE_TOKEN=$ALICE_TOKEN jitgate grants        # applied_at: the agent put it in place\n\
         \x20 JITGATE_TOKEN=$ADMIN_TOKEN jitgate admin agents  # one sandbox agent per configuration, online\n\
         Sandbox agents log to {}/agents/<configuration>/agent.log; their simulated tenants are in tenant.json there.\n\
         Stop with Ctrl-C.\n\n",
        data_dir.display(),
        people = people.join(", "),
        data_dir = data_dir.display(),
        console = links
            .first()
            .and_then(|l| l.url.split("/console/").next())
            .map_or_else(|| format!("https://{addr}"), str::to_owned),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_variables_are_shell_names() {
        assert_eq!(token_variable("alice"), "ALICE_TOKEN");
        assert_eq!(
            token_variable("ops.admin@example-org"),
            "OPS_ADMIN_EXAMPLE_ORG_TOKEN"
        );
        assert_eq!(token_variable("x;rm -rf"), "X_RM__RF_TOKEN");
    }
}
