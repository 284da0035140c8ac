//! `jitgate-agent`: the gateway agent that runs inside one cloud tenant.
//!
//! ```text
//! jitgate-agent enroll --broker https://broker:8443 --token jgj_... --ca-fingerprint HEX
//! jitgate-agent run --provider sandbox
//! jitgate-agent status
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use jitgate_agent::agent::Agent;
use jitgate_agent::channel::ChannelSettings;
use jitgate_agent::journal::Journal;
use jitgate_agent::provider::aws::identity_center::{
    IdentityCenter, IdentityCenterSettings, PrincipalAttribute,
};
use jitgate_agent::provider::aws::{iam::Iam, sdk_config, AwsSettings};
use jitgate_agent::provider::budget::{Budget, BudgetSettings};
use jitgate_agent::provider::entra::credential::{EntraAuth, EntraCredentialSettings};
use jitgate_agent::provider::entra::graph::GraphSettings;
use jitgate_agent::provider::entra::{Entra, EntraSettings};
use jitgate_agent::provider::sandbox::{Sandbox, SandboxSettings};
use jitgate_agent::provider::Provider;
use jitgate_agent::state::StateDir;

#[derive(Debug, Parser)]
#[command(
    name = "jitgate-agent",
    version,
    about = "jitgate gateway agent: applies signed grant and revoke commands in one tenant"
)]
struct Cli {
    /// Where the agent keeps its identity, credentials and journal.
    #[arg(
        long,
        env = "JITGATE_AGENT_STATE_DIR",
        default_value = "/var/lib/jitgate-agent",
        global = true
    )]
    state_dir: PathBuf,
    /// "text" or "json" logs.
    #[arg(long, env = "JITGATE_LOG_FORMAT", default_value = "text", global = true)]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Enroll with a one-time join token (from `jitgate admin join-token`).
    Enroll {
        /// The broker's API, like https://broker.example.com:8443.
        #[arg(long, env = "JITGATE_BROKER")]
        broker: String,
        /// The one-time join token.
        #[arg(long, env = "JITGATE_JOIN_TOKEN", hide_env_values = true)]
        token: String,
        /// SHA-256 of the broker CA, shown with the join token. Nothing is
        /// sent to a broker whose CA does not match.
        #[arg(long, env = "JITGATE_CA_FINGERPRINT")]
        ca_fingerprint: String,
        /// Override the hub URL the broker announces; several brokers'
        /// hubs comma-separated (the agent fails over between them).
        #[arg(long, env = "JITGATE_HUB_URL")]
        hub_url: Option<String>,
    },
    /// Connect to the broker and carry out commands until stopped.
    Run {
        /// Which tenant to act on. `sandbox` is a simulated tenant for trying
        /// jitgate out and for tests; it changes nothing in any cloud.
        #[arg(long, env = "JITGATE_AGENT_PROVIDER")]
        provider: ProviderKind,
        /// Sandbox: file that keeps the simulated tenant across restarts
        /// [default: <state-dir>/sandbox-tenant.json].
        #[arg(long, env = "JITGATE_SANDBOX_STATE")]
        sandbox_state: Option<PathBuf>,
        /// Sandbox: delay added to every call, like 50ms.
        #[arg(long, env = "JITGATE_SANDBOX_LATENCY", value_parser = duration, default_value = "0s")]
        sandbox_latency: Duration,
        /// Sandbox: delay between a change landing in the simulated tenant
        /// and the call returning, like 2s (a slow or lost cloud response).
        #[arg(long, env = "JITGATE_SANDBOX_ANSWER_LATENCY", value_parser = duration, default_value = "0s")]
        sandbox_answer_latency: Duration,
        /// Sandbox: share of calls answered "throttled" (0.0 to 1.0).
        #[arg(long, env = "JITGATE_SANDBOX_THROTTLE_RATE", value_parser = rate, default_value = "0")]
        sandbox_throttle_rate: f64,
        /// Sandbox: share of calls failing transiently (0.0 to 1.0).
        #[arg(long, env = "JITGATE_SANDBOX_FAILURE_RATE", value_parser = rate, default_value = "0")]
        sandbox_failure_rate: f64,
        #[command(flatten)]
        aws: Box<AwsArgs>,
        #[command(flatten)]
        entra: Box<EntraArgs>,
        /// Longest pause between reconnection attempts.
        #[arg(long, env = "JITGATE_AGENT_RECONNECT_MAX", value_parser = duration, default_value = "5s")]
        reconnect_max: Duration,
        /// While connected, how long past a deadline to wait for the broker's
        /// revoke before removing the entitlement here. Offline: no wait.
        #[arg(long, env = "JITGATE_AGENT_SELF_REVOKE_GRACE", value_parser = duration, default_value = "2s")]
        self_revoke_grace: Duration,
    },
    /// Show identity, certificate and what the journal holds.
    Status,
    /// Exit 0 when the running agent heard from a broker within WITHIN
    /// (its heartbeats, every few seconds): the container image's health
    /// check. Exit 1, saying when it last did, otherwise.
    Health {
        #[arg(long, default_value = "2m", value_parser = duration)]
        within: Duration,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ProviderKind {
    Sandbox,
    /// AWS IAM Identity Center: permission sets assigned on accounts.
    AwsIdentityCenter,
    /// AWS IAM: group memberships and managed policy attachments.
    AwsIam,
    /// Entra ID through Microsoft Graph: group memberships, directory
    /// roles and PIM for Groups assignments.
    Entra,
}

/// Settings of the AWS providers. Credentials come from the standard AWS
/// chain: environment, shared profile (AWS_PROFILE), web identity,
/// container and instance metadata.
#[derive(Debug, clap::Args)]
struct AwsArgs {
    /// AWS region [default: from AWS_REGION or the profile].
    #[arg(long, env = "JITGATE_AWS_REGION")]
    aws_region: Option<String>,
    /// Endpoint override, for a VPC interface endpoint
    /// (https://vpce-...amazonaws.com) or a local test peer.
    #[arg(long, env = "JITGATE_AWS_ENDPOINT_URL")]
    aws_endpoint_url: Option<String>,
    /// Role to assume after the default chain.
    #[arg(long, env = "JITGATE_AWS_ROLE_ARN")]
    aws_role_arn: Option<String>,
    /// Attempts per call by the SDK's own retry (backoff with jitter);
    /// 1 turns SDK retries off.
    #[arg(long, env = "JITGATE_AWS_SDK_MAX_ATTEMPTS", default_value_t = 3)]
    aws_sdk_max_attempts: u32,
    /// Calls per second to this tenant. Identity Center allows about 20;
    /// keep below it.
    #[arg(long, env = "JITGATE_AWS_RATE", default_value = "15")]
    aws_rate: std::num::NonZeroU32,
    /// Assignment operations outstanding at once.
    #[arg(long, env = "JITGATE_AWS_MAX_OPERATIONS", default_value_t = 5)]
    aws_max_operations: usize,
    /// Identity Center instance ARN [default: the account's only instance].
    #[arg(long, env = "JITGATE_AWS_INSTANCE_ARN")]
    aws_instance_arn: Option<String>,
    /// How principals are found in the identity store: `email`,
    /// `user-name`, or `external-id:ISSUER`. `group:NAME` principals are
    /// groups by display name.
    #[arg(long, env = "JITGATE_AWS_PRINCIPAL_ATTRIBUTE", value_parser = principal_attribute, default_value = "email")]
    aws_principal_attribute: PrincipalAttribute,
    /// Longest wait for an Identity Center assignment operation.
    #[arg(long, env = "JITGATE_AWS_OPERATION_TIMEOUT", value_parser = duration, default_value = "2m")]
    aws_operation_timeout: Duration,
}

fn principal_attribute(s: &str) -> Result<PrincipalAttribute, String> {
    match s {
        "email" => Ok(PrincipalAttribute::Email),
        "user-name" => Ok(PrincipalAttribute::UserName),
        _ => match s.strip_prefix("external-id:") {
            Some(issuer) if !issuer.is_empty() => Ok(PrincipalAttribute::ExternalId {
                issuer: issuer.to_owned(),
            }),
            _ => Err(format!("`{s}` is not email, user-name or external-id:ISSUER")),
        },
    }
}

impl AwsArgs {
    fn budget(&self) -> Arc<Budget> {
        Arc::new(Budget::new(BudgetSettings {
            rate: self.aws_rate,
            operations: self.aws_max_operations,
            throttle_pause: Duration::from_millis(500),
            throttle_pause_max: Duration::from_secs(20),
        }))
    }

    fn settings(&self) -> AwsSettings {
        AwsSettings {
            region: self.aws_region.clone(),
            endpoint_url: self.aws_endpoint_url.clone(),
            role_arn: self.aws_role_arn.clone(),
            sdk_max_attempts: self.aws_sdk_max_attempts,
        }
    }
}

/// How the Entra provider signs in.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum EntraAuthKind {
    /// `--entra-client-secret` (or its file).
    ClientSecret,
    /// `--entra-client-certificate`: PEM with certificate and RSA key.
    ClientCertificate,
    /// A federated token file (Kubernetes workload identity).
    WorkloadIdentity,
    /// The managed identity of the Azure resource the agent runs on.
    ManagedIdentity,
}

/// Settings of the Entra provider. The app (or managed identity) needs the
/// Graph application permissions `User.Read.All`, `GroupMember.ReadWrite.All`,
/// `RoleManagement.ReadWrite.Directory`, and for PIM for Groups
/// `PrivilegedAssignmentSchedule.ReadWrite.AzureADGroup`; ending sign-in
/// sessions needs `User.RevokeSessions.All`.
#[derive(Debug, clap::Args)]
struct EntraArgs {
    /// The directory (tenant) id.
    #[arg(long, env = "JITGATE_ENTRA_TENANT_ID")]
    entra_tenant_id: Option<String>,
    /// The app registration's client id (or the user-assigned managed
    /// identity's).
    #[arg(long, env = "JITGATE_ENTRA_CLIENT_ID")]
    entra_client_id: Option<String>,
    /// How to sign in.
    #[arg(long, env = "JITGATE_ENTRA_AUTH", value_enum, default_value = "client-secret")]
    entra_auth: EntraAuthKind,
    /// Client secret value. Prefer --entra-client-secret-file.
    #[arg(long, env = "JITGATE_ENTRA_CLIENT_SECRET", hide_env_values = true)]
    entra_client_secret: Option<String>,
    /// File holding the client secret value.
    #[arg(long, env = "JITGATE_ENTRA_CLIENT_SECRET_FILE")]
    entra_client_secret_file: Option<PathBuf>,
    /// PEM file with the app's certificate and its RSA private key.
    #[arg(long, env = "JITGATE_ENTRA_CLIENT_CERTIFICATE")]
    entra_client_certificate: Option<PathBuf>,
    /// Workload identity: the projected token file [default: AZURE_FEDERATED_TOKEN_FILE].
    #[arg(long, env = "AZURE_FEDERATED_TOKEN_FILE")]
    entra_federated_token_file: Option<PathBuf>,
    /// Authority host, for sovereign clouds: https://login.microsoftonline.us,
    /// https://login.chinacloudapi.cn [default: https://login.microsoftonline.com].
    #[arg(long, env = "JITGATE_ENTRA_AUTHORITY_HOST")]
    entra_authority_host: Option<String>,
    /// Microsoft Graph, for sovereign clouds: https://graph.microsoft.us,
    /// https://microsoftgraph.chinacloudapi.cn.
    #[arg(
        long,
        env = "JITGATE_ENTRA_GRAPH_URL",
        default_value = "https://graph.microsoft.com"
    )]
    entra_graph_url: String,
    /// PEM file of CAs to trust besides the system's (a TLS-inspecting proxy).
    #[arg(long, env = "JITGATE_ENTRA_EXTRA_CA")]
    entra_extra_ca: Option<PathBuf>,
    /// Graph writes per second to this tenant. Graph throttles writes per
    /// app and tenant; keep well below.
    #[arg(long, env = "JITGATE_ENTRA_RATE", default_value = "10")]
    entra_rate: std::num::NonZeroU32,
    /// Grants and revokes in progress at once.
    #[arg(long, env = "JITGATE_ENTRA_MAX_OPERATIONS", default_value_t = 8)]
    entra_max_operations: usize,
    /// Attempts per Graph call on 429, 5xx or a failed connection
    /// (Retry-After honoured).
    #[arg(long, env = "JITGATE_ENTRA_MAX_ATTEMPTS", default_value_t = 4)]
    entra_max_attempts: u32,
    /// Longest wait for a just-created user or group to replicate.
    #[arg(long, env = "JITGATE_ENTRA_REPLICATION_WAIT", value_parser = duration, default_value = "30s")]
    entra_replication_wait: Duration,
    /// Timeout of one Graph request.
    #[arg(long, env = "JITGATE_ENTRA_TIMEOUT", value_parser = duration, default_value = "30s")]
    entra_timeout: Duration,
}

impl EntraArgs {
    fn settings(&self) -> anyhow::Result<EntraSettings> {
        let tenant_id = self
            .entra_tenant_id
            .clone()
            .ok_or_else(|| anyhow::anyhow!("--entra-tenant-id is required for --provider entra"))?;
        let client_id = || {
            self.entra_client_id.clone().ok_or_else(|| {
                anyhow::anyhow!(
                    "--entra-client-id is required for --entra-auth {:?}",
                    self.entra_auth
                )
            })
        };
        let auth = match self.entra_auth {
            EntraAuthKind::ClientSecret => {
                let secret = match (&self.entra_client_secret, &self.entra_client_secret_file) {
                    (Some(s), None) => s.clone(),
                    (None, Some(f)) => std::fs::read_to_string(f)
                        .map_err(|e| anyhow::anyhow!("--entra-client-secret-file {}: {e}", f.display()))?
                        .trim()
                        .to_owned(),
                    _ => anyhow::bail!(
                        "--entra-auth client-secret needs exactly one of --entra-client-secret and --entra-client-secret-file"
                    ),
                };
                EntraAuth::ClientSecret {
                    client_id: client_id()?,
                    secret,
                }
            }
            EntraAuthKind::ClientCertificate => EntraAuth::ClientCertificate {
                client_id: client_id()?,
                pem_file: self.entra_client_certificate.clone().ok_or_else(|| {
                    anyhow::anyhow!("--entra-auth client-certificate needs --entra-client-certificate")
                })?,
            },
            EntraAuthKind::WorkloadIdentity => EntraAuth::WorkloadIdentity {
                client_id: client_id()?,
                token_file: self.entra_federated_token_file.clone().ok_or_else(|| {
                    anyhow::anyhow!("--entra-auth workload-identity needs --entra-federated-token-file")
                })?,
            },
            EntraAuthKind::ManagedIdentity => EntraAuth::ManagedIdentity {
                client_id: self.entra_client_id.clone(),
            },
        };
        let extra_ca_pem = match &self.entra_extra_ca {
            Some(f) => {
                Some(std::fs::read(f).map_err(|e| anyhow::anyhow!("--entra-extra-ca {}: {e}", f.display()))?)
            }
            None => None,
        };
        Ok(EntraSettings {
            credential: EntraCredentialSettings {
                tenant_id,
                auth,
                authority_host: self.entra_authority_host.clone(),
                extra_ca_pem,
                retries: true,
            },
            graph: GraphSettings {
                graph_url: self.entra_graph_url.clone(),
                max_attempts: self.entra_max_attempts,
                timeout: self.entra_timeout,
            },
            budget: BudgetSettings {
                rate: self.entra_rate,
                operations: self.entra_max_operations,
                throttle_pause: Duration::from_millis(500),
                throttle_pause_max: Duration::from_secs(30),
            },
            replication_wait: self.entra_replication_wait,
        })
    }
}

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("`{s}` is not a duration like 5s or 200ms: {e}"))
}

fn rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("`{s}` must be a number from 0.0 to 1.0")),
    }
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_format);
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jitgate-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[allow(clippy::print_stdout)]
async fn run(cli: Cli) -> anyhow::Result<()> {
    let state = StateDir::new(cli.state_dir);
    match cli.command {
        Command::Enroll {
            broker,
            token,
            ca_fingerprint,
            hub_url,
        } => {
            let identity =
                jitgate_agent::enroll::enroll(&state, &broker, &token, &ca_fingerprint, hub_url).await?;
            println!(
                "enrolled agent {} for configuration {}; hub {}; state in {}",
                identity.agent,
                identity.configuration,
                identity.hub_url,
                state.dir.display()
            );
        }
        Command::Run {
            provider,
            sandbox_state,
            sandbox_latency,
            sandbox_answer_latency,
            sandbox_throttle_rate,
            sandbox_failure_rate,
            aws,
            entra,
            reconnect_max,
            self_revoke_grace,
        } => {
            let identity = state.identity()?;
            let provider: Arc<dyn Provider> = match provider {
                ProviderKind::Sandbox => {
                    let settings = SandboxSettings {
                        state_file: Some(
                            sandbox_state.unwrap_or_else(|| state.dir.join("sandbox-tenant.json")),
                        ),
                        latency: sandbox_latency,
                        answer_latency: sandbox_answer_latency,
                        throttle_rate: sandbox_throttle_rate,
                        failure_rate: sandbox_failure_rate,
                    };
                    tracing::warn!(
                        configuration = %identity.configuration,
                        tenant = ?settings.state_file,
                        "SANDBOX provider: a simulated tenant; nothing in any cloud changes"
                    );
                    Arc::new(Sandbox::open(identity.configuration.clone(), settings)?)
                }
                ProviderKind::AwsIdentityCenter => {
                    let sdk = sdk_config(&aws.settings()).await;
                    let settings = IdentityCenterSettings {
                        instance_arn: aws.aws_instance_arn.clone(),
                        principal_attribute: aws.aws_principal_attribute.clone(),
                        operation_timeout: aws.aws_operation_timeout,
                    };
                    let provider =
                        IdentityCenter::connect(identity.configuration.clone(), &sdk, settings, aws.budget())
                            .await
                            .map_err(|e| anyhow::anyhow!("configuration {}: {e}", identity.configuration))?;
                    Arc::new(provider)
                }
                ProviderKind::AwsIam => {
                    let sdk = sdk_config(&aws.settings()).await;
                    let provider = Iam::connect(identity.configuration.clone(), &sdk, aws.budget())
                        .await
                        .map_err(|e| anyhow::anyhow!("configuration {}: {e}", identity.configuration))?;
                    Arc::new(provider)
                }
                ProviderKind::Entra => {
                    let provider = Entra::connect(identity.configuration.clone(), entra.settings()?)
                        .await
                        .map_err(|e| anyhow::anyhow!("configuration {}: {e}", identity.configuration))?;
                    Arc::new(provider)
                }
            };
            let settings = ChannelSettings {
                reconnect_max,
                ..ChannelSettings::default()
            };
            let clock = Arc::new(jitgate_agent::clock::SystemClock);
            let agent = Agent::start(state, provider, settings, self_revoke_grace, clock)?;
            wait_for_signal().await;
            tracing::info!("stopping");
            agent.stop().await;
        }
        Command::Health { within } => {
            let identity = state.identity()?;
            let now = jitgate_agent::clock::Clock::now(&jitgate_agent::clock::SystemClock);
            match state.last_contact()? {
                Some(at) if (now - at).to_std().unwrap_or_default() <= within => {
                    println!("healthy: agent {} heard from its broker at {at}", identity.agent);
                }
                Some(at) => anyhow::bail!(
                    "agent {} last heard from a broker at {at}, more than {} ago",
                    identity.agent,
                    humantime::format_duration(within)
                ),
                None => anyhow::bail!("agent {} has not reached a broker yet", identity.agent),
            }
        }
        Command::Status => {
            let identity = state.identity()?;
            let creds = state.credentials()?;
            println!("agent          {}", identity.agent);
            println!("configuration  {}", identity.configuration);
            println!("hub            {}", identity.hub_url);
            println!(
                "certificate    valid until {} (renews from {})",
                creds.not_after,
                creds.renew_at()
            );
            let journal = Journal::open(&state.journal_path())?;
            let holdings = journal.holdings()?;
            println!("holdings       {}", holdings.len());
            for h in holdings {
                println!(
                    "  {} for {} until {} (grant {})",
                    h.entitlement.target.describe(),
                    h.entitlement.principal,
                    h.deadline,
                    h.grant
                );
            }
            let reports = journal.reports()?;
            println!("unacknowledged self-revokes  {}", reports.len());
        }
    }
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
