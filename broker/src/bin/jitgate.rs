//! `jitgate`: ask for, review and end just-in-time access. Speaks only the
//! broker's REST API.
#![allow(clippy::print_stdout)] // a command-line tool: stdout is its output

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use jitgate_broker::cli::client::{ApiClient, ClientError};
use jitgate_broker::cli::login::{self, LoginError};
use jitgate_broker::cli::output;
use jitgate_shared::v1::api::{
    CreateJoinTokenBody, CreateRequestBody, ExtendBody, ExtendOutcome, GrantState, RequestState,
    ScimConnectionBody,
};
use jitgate_shared::v1::{ConfigId, GrantId, RequestId, ResourceId, UserId};
use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Debug, Parser)]
#[command(
    name = "jitgate",
    version,
    about = "Just-in-time privileged access from the command line"
)]
struct Cli {
    /// Broker URL.
    #[arg(
        long,
        env = "JITGATE_SERVER",
        default_value = "https://127.0.0.1:8443",
        global = true
    )]
    server: String,
    /// API token.
    #[arg(long, env = "JITGATE_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// The broker CA certificate to trust (only it is trusted when given).
    #[arg(long, env = "JITGATE_CA_CERT", global = true)]
    ca_cert: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

fn duration(s: &str) -> Result<u64, String> {
    humantime::parse_duration(s)
        .map(|d| d.as_secs())
        .map_err(|e| format!("`{s}` is not a duration like 30m or 2h: {e}"))
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sign in through your identity provider in a browser; the session's
    /// tokens are kept in ~/.config/jitgate and renewed as needed.
    Login {
        /// Your email: picks the provider that serves its domain.
        #[arg(long)]
        email: Option<String>,
        /// Or name the provider.
        #[arg(long)]
        provider: Option<String>,
        /// Only print the URL to open (in a browser on this machine).
        #[arg(long)]
        no_browser: bool,
        /// No browser on this machine: open a URL on any device and enter
        /// a code (the provider's device flow).
        #[arg(long, conflicts_with = "no_browser")]
        device: bool,
    },
    /// End this session (at the broker too) and forget its tokens.
    Logout,
    /// Who the token belongs to.
    Whoami,
    /// Ask for access to a resource.
    Request {
        resource: ResourceId,
        /// How long, like 30m or 2h; the policy's default when absent.
        #[arg(long, value_parser = duration)]
        duration: Option<u64>,
        #[arg(long, short = 'j')]
        justification: Option<String>,
        #[arg(long)]
        ticket: Option<String>,
        /// Start later (RFC 3339, like 2026-11-24T18:00:00Z).
        #[arg(long)]
        starts_at: Option<DateTime<Utc>>,
        /// Take access without approval where a policy allows; audited loudly.
        #[arg(long)]
        break_glass: bool,
    },
    /// Approve a request.
    Approve {
        id: RequestId,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Deny a request.
    Deny {
        id: RequestId,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Cancel your pending or not yet started request.
    Cancel { id: RequestId },
    /// List requests (yours; approvers, admins and auditors see all).
    List {
        /// pending, approved, active, ended, denied, pending_expired or cancelled.
        #[arg(long, value_parser = api_name::<RequestState>)]
        state: Option<RequestState>,
        #[arg(long)]
        requester: Option<UserId>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// List grants.
    Grants {
        /// scheduled, active or ended.
        #[arg(long, value_parser = api_name::<GrantState>)]
        state: Option<GrantState>,
        #[arg(long)]
        user: Option<UserId>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show a request or a grant by id.
    Show { id: String },
    /// End a grant now.
    Revoke {
        id: GrantId,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Administration (needs the admin role; auditors may list).
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Extend an active grant where the policy allows.
    Extend {
        id: GrantId,
        #[arg(long, value_parser = duration)]
        duration: u64,
        #[arg(long, short = 'j')]
        justification: Option<String>,
        /// Where the resource's workflow asks for a ticket.
        #[arg(long)]
        ticket: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Make a one-time join token for enrolling a gateway agent.
    JoinToken {
        configuration: ConfigId,
        /// How long it can be used, like 1h [default: 1h].
        #[arg(long, value_parser = duration)]
        ttl: Option<u64>,
    },
    /// How a resource would be elevated for a user: the chain of
    /// configurations, the entitlement applied and which agent acts, and
    /// where it is confirmed. Nothing is done.
    Explain {
        #[arg(long)]
        resource: jitgate_shared::v1::ResourceId,
        #[arg(long)]
        user: jitgate_shared::v1::UserId,
    },
    /// Close a queued revoke that keeps failing, saying how the entitlement
    /// was removed by hand (audited). The grant's `revoke_failing` state
    /// names the command.
    ForceClose {
        /// Id of the queued revoke command.
        command: String,
        /// How the entitlement was removed, for the audit log.
        #[arg(long)]
        reason: String,
    },
    /// Accounts: list them, or disable one (its grants end with their
    /// revokes queued; its requests, sessions and tokens end).
    Users {
        #[command(subcommand)]
        action: Option<UserAction>,
    },
    /// API tokens: list the live ones (never the tokens themselves), or
    /// revoke one; it stops working at once.
    Tokens {
        #[command(subcommand)]
        action: Option<TokenAction>,
    },
    /// Enrolled gateway agents: status, approval, revocation.
    Agents {
        #[command(subcommand)]
        action: Option<AgentAction>,
    },
    /// Sign-in providers (OIDC, SAML) and what to register at each: the
    /// redirect URI, or the SAML entity id, ACS URL and metadata URL.
    Sso,
    /// Sign-in sessions: list them, or end one (its tokens stop at once).
    Sessions {
        #[command(subcommand)]
        action: Option<SessionAction>,
    },
    /// SCIM provisioning connections: one per directory that pushes users
    /// and groups into jitgate (Entra ID, Okta, ...).
    Scim {
        #[command(subcommand)]
        action: Option<ScimAction>,
    },
}

#[derive(Debug, Subcommand)]
enum UserAction {
    /// Every account with its person, verified email and state (the default).
    List,
    /// Disable an account.
    Disable { id: jitgate_shared::v1::UserId },
}

#[derive(Debug, Subcommand)]
enum TokenAction {
    /// Live tokens (the default).
    List {
        /// Only this user's.
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke a token by the id `list` shows.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
enum SessionAction {
    /// Live sessions (the default).
    List {
        /// Only this user's.
        #[arg(long)]
        user: Option<String>,
        /// Ended and expired ones too.
        #[arg(long)]
        all: bool,
    },
    /// End a session: its tokens stop working at once, and it cannot be refreshed.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
enum ScimAction {
    /// List connections with how many users and groups each provisioned (the default).
    List,
    /// Create a connection and print its base URL and bearer token (shown once).
    Create {
        /// Letters, digits, `-`, `_`, `.`; names the directory.
        name: String,
        /// Role the users it provisions start with; repeat for several [default: requester].
        #[arg(long = "role", value_parser = api_name::<jitgate_shared::v1::api::Role>)]
        roles: Vec<jitgate_shared::v1::api::Role>,
    },
    /// Delete a connection: its token stops working at once; its users stay.
    Delete { name: String },
}

#[derive(Debug, Subcommand)]
enum AgentAction {
    /// List agents with their connection status and last drift check (the default).
    List,
    /// Let a pending agent connect (when the broker asks for approval).
    Approve { id: jitgate_shared::v1::AgentId },
    /// Revoke an agent: its session ends at once and it can never connect again.
    Revoke { id: jitgate_shared::v1::AgentId },
}

/// Parses a value by its API name (`pending`, `pending_expired`, ...), so
/// the CLI accepts exactly what the API does.
fn api_name<T: DeserializeOwned>(s: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|e| format!("`{s}`: {e}"))
}

/// The API name of a value, for query strings.
fn name_of<T: Serialize>(v: T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            if let LoginError::Api(e) = &e {
                if e.status() == Some(reqwest::StatusCode::UNAUTHORIZED) {
                    eprintln!(
                        "hint: run `jitgate login`, or set JITGATE_TOKEN (or --token) to a valid API token"
                    );
                }
                if let ClientError::Transport { error, .. } = e {
                    if error.contains("certificate") || error.contains("UnknownIssuer") {
                        eprintln!("hint: set JITGATE_CA_CERT (or --ca-cert) to the broker's ca.pem");
                    }
                }
            }
            ExitCode::FAILURE
        }
    }
}

fn print<T: Serialize>(json: bool, value: &T, human: impl FnOnce(&T) -> String) {
    if json {
        println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
    } else {
        println!("{}", human(value));
    }
}

async fn run(cli: Cli) -> Result<(), LoginError> {
    let json = cli.json;
    let server = cli.server.trim_end_matches('/').to_owned();
    if let Command::Login {
        email,
        provider,
        no_browser,
        device,
    } = cli.command
    {
        let anonymous = ApiClient::new(&server, None, cli.ca_cert.as_deref())?;
        let tokens = if device {
            login::login_device(&anonymous, email, provider).await?
        } else {
            login::login(&anonymous, email, provider, !no_browser).await?
        };
        login::save(&login::Credentials {
            server: server.clone(),
            tokens: tokens.clone(),
        })?;
        print(json, &tokens.user, |u| {
            let roles: Vec<_> = u.roles.iter().map(|r| r.as_str()).collect();
            format!(
                "signed in as {} ({}) roles: {}",
                u.id,
                u.display_name,
                roles.join(", ")
            )
        });
        return Ok(());
    }
    let token = match cli.token.clone() {
        Some(t) => t,
        None => {
            login::access_token(
                &server,
                cli.ca_cert.as_deref(),
                jitgate_broker::clock::Clock::now(&jitgate_broker::clock::SystemClock),
            )
            .await?
        }
    };
    let api = ApiClient::new(&server, Some(token), cli.ca_cert.as_deref())?;
    match cli.command {
        Command::Login { .. } => {}
        Command::Logout => {
            api.logout().await?;
            login::forget()?;
            print(json, &serde_json::json!({"signed_out": true}), |_| {
                "signed out".into()
            });
        }
        Command::Admin {
            command: AdminCommand::Sso,
        } => {
            let providers = api.sso_providers().await?;
            print(json, &providers, |p| output::sso_providers(p));
        }
        Command::Admin {
            command: AdminCommand::Sessions { action },
        } => match action.unwrap_or(SessionAction::List {
            user: None,
            all: false,
        }) {
            SessionAction::List { user, all } => {
                let sessions = api.sessions(user.as_deref(), all).await?;
                print(json, &sessions, |s| output::sessions(s));
            }
            SessionAction::Revoke { id } => {
                let s = api.revoke_session(&id).await?;
                print(json, &s, |s| output::sessions(std::slice::from_ref(s)));
            }
        },
        Command::Whoami => {
            let me = api.whoami().await?;
            print(json, &me, |u| {
                let roles: Vec<_> = u.roles.iter().map(|r| r.as_str()).collect();
                format!("{} ({}) roles: {}", u.id, u.display_name, roles.join(", "))
            });
        }
        Command::Request {
            resource,
            duration,
            justification,
            ticket,
            starts_at,
            break_glass,
        } => {
            let body = CreateRequestBody {
                resource,
                duration_seconds: duration,
                justification,
                ticket,
                starts_at,
                break_glass,
            };
            let r = api.create_request(&body).await?;
            print(json, &r, output::request);
        }
        Command::Approve { id, comment } => print(json, &api.approve(id, comment).await?, output::request),
        Command::Deny { id, comment } => print(json, &api.deny(id, comment).await?, output::request),
        Command::Cancel { id } => print(json, &api.cancel(id).await?, output::request),
        Command::List {
            state,
            requester,
            limit,
        } => {
            let mut q = vec![("limit", limit.to_string())];
            if let Some(s) = state {
                q.push(("state", name_of(s)));
            }
            if let Some(u) = requester {
                q.push(("requester", u.to_string()));
            }
            let page = api.requests(&q).await?;
            print(json, &page, |p| output::requests(&p.items));
        }
        Command::Grants { state, user, limit } => {
            let mut q = vec![("limit", limit.to_string())];
            if let Some(s) = state {
                q.push(("state", name_of(s)));
            }
            if let Some(u) = user {
                q.push(("user", u.to_string()));
            }
            let page = api.grants(&q).await?;
            print(json, &page, |p| output::grants(&p.items));
        }
        Command::Show { id } => {
            let uuid: RequestId = id
                .parse()
                .map_err(|e: jitgate_shared::v1::IdError| ClientError::Api {
                    status: reqwest::StatusCode::BAD_REQUEST,
                    body: jitgate_shared::v1::ErrorBody {
                        code: jitgate_shared::v1::ErrorCode::InvalidInput,
                        message: e.to_string(),
                        field: Some("id".into()),
                    },
                })?;
            match api.request(uuid).await {
                Ok(r) => print(json, &r, output::request),
                Err(e) if e.status() == Some(reqwest::StatusCode::NOT_FOUND) => {
                    let g = api.grant(GrantId::from_uuid(uuid.as_uuid())).await?;
                    print(json, &g, |g| output::grants(std::slice::from_ref(g)));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Command::Revoke { id, reason } => {
            let g = api.revoke(id, reason).await?;
            print(json, &g, |g| output::grants(std::slice::from_ref(g)));
        }
        Command::Admin {
            command: AdminCommand::JoinToken { configuration, ttl },
        } => {
            let issued = api
                .create_join_token(&CreateJoinTokenBody {
                    configuration,
                    ttl_seconds: ttl,
                })
                .await?;
            print(json, &issued, output::join_token);
        }
        Command::Admin {
            command: AdminCommand::Explain { resource, user },
        } => {
            let plan = api.explain(&resource, &user).await?;
            print(json, &plan, output::explain);
        }
        Command::Admin {
            command: AdminCommand::Users { action },
        } => match action.unwrap_or(UserAction::List) {
            UserAction::List => {
                let users = api.users().await?;
                print(json, &users, |u| output::users(u));
            }
            UserAction::Disable { id } => {
                let user = api.disable_user(&id).await?;
                print(json, &user, |u| output::users(std::slice::from_ref(u)));
            }
        },
        Command::Admin {
            command: AdminCommand::Tokens { action },
        } => match action.unwrap_or(TokenAction::List { user: None }) {
            TokenAction::List { user } => {
                let tokens = api.tokens(user.as_deref()).await?;
                print(json, &tokens, |t| output::tokens(t));
            }
            TokenAction::Revoke { id } => {
                let token = api.revoke_token(&id).await?;
                print(json, &token, |t| output::tokens(std::slice::from_ref(t)));
            }
        },
        Command::Admin {
            command: AdminCommand::ForceClose { command, reason },
        } => {
            let grant = api.force_close_revoke(&command, &reason).await?;
            print(json, &grant, |g| match g {
                Some(g) => output::grants(std::slice::from_ref(g)),
                None => format!("revoke {command} closed\n"),
            });
        }
        Command::Admin {
            command: AdminCommand::Agents { action },
        } => match action.unwrap_or(AgentAction::List) {
            AgentAction::List => {
                let agents = api.agents().await?;
                print(json, &agents, |a| output::agents(a));
            }
            AgentAction::Approve { id } => {
                let agent = api.approve_agent(id).await?;
                print(json, &agent, |a| output::agents(std::slice::from_ref(a)));
            }
            AgentAction::Revoke { id } => {
                let agent = api.revoke_agent(id).await?;
                print(json, &agent, |a| output::agents(std::slice::from_ref(a)));
            }
        },
        Command::Admin {
            command: AdminCommand::Scim { action },
        } => match action.unwrap_or(ScimAction::List) {
            ScimAction::List => {
                let items = api.scim_connections().await?;
                print(json, &items, |c| output::scim_connections(c));
            }
            ScimAction::Create { name, roles } => {
                let body = ScimConnectionBody {
                    name,
                    default_roles: if roles.is_empty() {
                        [jitgate_shared::v1::api::Role::Requester].into()
                    } else {
                        roles.into_iter().collect()
                    },
                };
                let created = api.create_scim_connection(&body).await?;
                print(json, &created, output::scim_connection_created);
            }
            ScimAction::Delete { name } => {
                api.delete_scim_connection(&name).await?;
                print(json, &serde_json::json!({"deleted": name}), |_| {
                    format!("SCIM connection {name} deleted")
                });
            }
        },
        Command::Extend {
            id,
            duration,
            justification,
            ticket,
        } => {
            let outcome = api
                .extend(
                    id,
                    &ExtendBody {
                        duration_seconds: duration,
                        justification,
                        ticket,
                    },
                )
                .await?;
            print(json, &outcome, |o| match o {
                ExtendOutcome::Extended { grant } => output::grants(std::slice::from_ref(grant)),
                ExtendOutcome::PendingApproval { request } => {
                    format!("extension needs approval:\n{}", output::request(request))
                }
            });
        }
    }
    Ok(())
}
