//! The quickstart's sandbox agents: one per configuration, enrolled with a
//! join token over mTLS on loopback exactly as an operator would, and run
//! until the quickstart stops.

use std::path::{Path, PathBuf};

use jitgate_shared::v1::api::CreateJoinTokenBody;
use jitgate_shared::v1::ConfigId;

use crate::cli::client::{ApiClient, ClientError};
use crate::server::Server;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AgentStartError {
    #[error("sandbox agents: {0}")]
    Client(#[from] ClientError),
    #[error("sandbox agents: {0}")]
    Store(#[from] StoreError),
    #[error("sandbox agent for {configuration}: {what}: {source}")]
    Io {
        configuration: ConfigId,
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("enrolling the sandbox agent for {configuration} failed: {stderr}")]
    Enroll { configuration: ConfigId, stderr: String },
}

/// Enrolls and starts one sandbox agent per configuration of `server`,
/// each under `{data_dir}/agents/{configuration}` (state, `agent.log`, the
/// simulated tenant in `tenant.json`). The agents stop when the returned
/// children are dropped.
pub async fn start_sandbox_agents(
    server: &Server,
    data_dir: &Path,
    ca: &Path,
    agent_bin: &Path,
    admin_token: String,
) -> Result<Vec<tokio::process::Child>, AgentStartError> {
    let url = format!("https://{}", server.addr);
    let api = ApiClient::new(&url, Some(admin_token), Some(ca))?;
    let mut children = Vec::new();
    for configuration in server.broker.store().configurations().await? {
        let id = configuration.config.id.clone();
        let io = |what: String| {
            let configuration = id.clone();
            move |source| AgentStartError::Io {
                configuration,
                what,
                source,
            }
        };
        let dir = data_dir.join("agents").join(id.as_str());
        // The quickstart's broker is new each time; so are its agents.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let issued = api
            .create_join_token(&CreateJoinTokenBody {
                configuration: id.clone(),
                ttl_seconds: Some(300),
            })
            .await?;
        let state: PathBuf = dir.join("state");
        let enrolled = tokio::process::Command::new(agent_bin)
            .arg("--state-dir")
            .arg(&state)
            .args(["enroll", "--broker", &url])
            .args([
                "--token",
                &issued.token,
                "--ca-fingerprint",
                &issued.ca_fingerprint,
            ])
            .output()
            .await
            .map_err(io(format!("running {}", agent_bin.display())))?;
        if !enrolled.status.success() {
            return Err(AgentStartError::Enroll {
                configuration: id,
                stderr: String::from_utf8_lossy(&enrolled.stderr).into_owned(),
            });
        }
        let log_path = dir.join("agent.log");
        let log = std::fs::File::create(&log_path).map_err(io(format!("creating {}", log_path.display())))?;
        let child = tokio::process::Command::new(agent_bin)
            .arg("--state-dir")
            .arg(&state)
            .args(["run", "--provider", "sandbox", "--sandbox-state"])
            .arg(dir.join("tenant.json"))
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(io(format!("starting {}", agent_bin.display())))?;
        tracing::info!(configuration = %id, "sandbox agent enrolled and started");
        children.push(child);
    }
    Ok(children)
}
