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
use jitgate_broker::clock::{Clock, SystemClock};
use jitgate_shared::v1::api::{
    AgentView, CreateJoinTokenBody, CreateRequestBody, Decision, ExtendBody, ExtendOutcome, GrantState,
    Identified, RequestState, Role, ScimConnectionBody,
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
    Show { id: uuid::Uuid },
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

/// How results are printed: JSON, or the human form.
#[derive(Debug, Clone, Copy)]
struct Out {
    json: bool,
}

impl Out {
    fn print<T: Serialize>(self, value: &T, human: impl FnOnce(&T) -> String) {
        if self.json {
            println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
        } else {
            println!("{}", human(value));
        }
    }
}

type Outcome = Result<(), LoginError>;

async fn run(cli: Cli) -> Outcome {
    let out = Out { json: cli.json };
    let server = cli.server.trim_end_matches('/').to_owned();
    if let Command::Login {
        email,
        provider,
        no_browser,
        device,
    } = cli.command
    {
        let anonymous = ApiClient::new(&server, None, cli.ca_cert.as_deref())?;
        return sign_in(&anonymous, out, server, email, provider, !no_browser, device).await;
    }
    let token = match cli.token.clone() {
        Some(t) => t,
        None => login::access_token(&server, cli.ca_cert.as_deref(), SystemClock.now()).await?,
    };
    let api = ApiClient::new(&server, Some(token), cli.ca_cert.as_deref())?;
    match cli.command {
        Command::Login { .. } => Ok(()),
        Command::Logout => logout(&api, out).await,
        Command::Whoami => whoami(&api, out).await,
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
            request(&api, out, &body).await
        }
        Command::Approve { id, comment } => review(&api, out, id, Decision::Approve, comment).await,
        Command::Deny { id, comment } => review(&api, out, id, Decision::Deny, comment).await,
        Command::Cancel { id } => cancel(&api, out, id).await,
        Command::List {
            state,
            requester,
            limit,
        } => list_requests(&api, out, state, requester, limit).await,
        Command::Grants { state, user, limit } => list_grants(&api, out, state, user, limit).await,
        Command::Show { id } => show(&api, out, id).await,
        Command::Revoke { id, reason } => revoke(&api, out, id, reason).await,
        Command::Extend {
            id,
            duration,
            justification,
            ticket,
        } => {
            let body = ExtendBody {
                duration_seconds: duration,
                justification,
                ticket,
            };
            extend(&api, out, id, &body).await
        }
        Command::Admin { command } => admin(&api, out, command).await,
    }
}

async fn admin(api: &ApiClient, out: Out, command: AdminCommand) -> Outcome {
    match command {
        AdminCommand::JoinToken { configuration, ttl } => join_token(api, out, configuration, ttl).await,
        AdminCommand::Explain { resource, user } => explain(api, out, &resource, &user).await,
        AdminCommand::ForceClose { command, reason } => force_close(api, out, &command, &reason).await,
        AdminCommand::Users { action } => users(api, out, action.unwrap_or(UserAction::List)).await,
        AdminCommand::Tokens { action } => {
            tokens(api, out, action.unwrap_or(TokenAction::List { user: None })).await
        }
        AdminCommand::Agents { action } => agents(api, out, action.unwrap_or(AgentAction::List)).await,
        AdminCommand::Sso => sso(api, out).await,
        AdminCommand::Sessions { action } => {
            let action = action.unwrap_or(SessionAction::List {
                user: None,
                all: false,
            });
            sessions(api, out, action).await
        }
        AdminCommand::Scim { action } => scim(api, out, action.unwrap_or(ScimAction::List)).await,
    }
}

/// `jitgate login`: a browser or device sign-in; the session's tokens are
/// saved for the next commands.
async fn sign_in(
    anonymous: &ApiClient,
    out: Out,
    server: String,
    email: Option<String>,
    provider: Option<String>,
    open_browser: bool,
    device: bool,
) -> Outcome {
    let tokens = if device {
        login::login_device(anonymous, email, provider).await?
    } else {
        login::login(anonymous, email, provider, open_browser).await?
    };
    login::save(&login::Credentials {
        server,
        tokens: tokens.clone(),
    })?;
    out.print(&tokens.user, |u| format!("signed in as {}", output::person(u)));
    Ok(())
}

async fn logout(api: &ApiClient, out: Out) -> Outcome {
    api.logout().await?;
    login::forget()?;
    out.print(&serde_json::json!({"signed_out": true}), |_| "signed out".into());
    Ok(())
}

async fn whoami(api: &ApiClient, out: Out) -> Outcome {
    out.print(&api.whoami().await?, output::person);
    Ok(())
}

async fn request(api: &ApiClient, out: Out, body: &CreateRequestBody) -> Outcome {
    out.print(&api.create_request(body).await?, output::request);
    Ok(())
}

async fn review(
    api: &ApiClient,
    out: Out,
    id: RequestId,
    decision: Decision,
    comment: Option<String>,
) -> Outcome {
    let reviewed = match decision {
        Decision::Approve => api.approve(id, comment).await?,
        Decision::Deny => api.deny(id, comment).await?,
    };
    out.print(&reviewed, output::request);
    Ok(())
}

async fn cancel(api: &ApiClient, out: Out, id: RequestId) -> Outcome {
    out.print(&api.cancel(id).await?, output::request);
    Ok(())
}

async fn list_requests(
    api: &ApiClient,
    out: Out,
    state: Option<RequestState>,
    requester: Option<UserId>,
    limit: usize,
) -> Outcome {
    let mut q = vec![("limit", limit.to_string())];
    if let Some(s) = state {
        q.push(("state", name_of(s)));
    }
    if let Some(u) = requester {
        q.push(("requester", u.to_string()));
    }
    out.print(&api.requests(&q).await?, |p| output::requests(&p.items));
    Ok(())
}

async fn list_grants(
    api: &ApiClient,
    out: Out,
    state: Option<GrantState>,
    user: Option<UserId>,
    limit: usize,
) -> Outcome {
    let mut q = vec![("limit", limit.to_string())];
    if let Some(s) = state {
        q.push(("state", name_of(s)));
    }
    if let Some(u) = user {
        q.push(("user", u.to_string()));
    }
    out.print(&api.grants(&q).await?, |p| output::grants(&p.items));
    Ok(())
}

/// A request or a grant: the broker says which the id names.
async fn show(api: &ApiClient, out: Out, id: uuid::Uuid) -> Outcome {
    out.print(&api.identify(id).await?, |found| match found {
        Identified::Request(r) => output::request(r),
        Identified::Grant(g) => output::grants(std::slice::from_ref(g)),
    });
    Ok(())
}

async fn revoke(api: &ApiClient, out: Out, id: GrantId, reason: Option<String>) -> Outcome {
    out.print(&api.revoke(id, reason).await?, |g| {
        output::grants(std::slice::from_ref(g))
    });
    Ok(())
}

async fn extend(api: &ApiClient, out: Out, id: GrantId, body: &ExtendBody) -> Outcome {
    out.print(&api.extend(id, body).await?, |o| match o {
        ExtendOutcome::Extended { grant } => output::grants(std::slice::from_ref(grant)),
        ExtendOutcome::PendingApproval { request } => {
            format!("extension needs approval:\n{}", output::request(request))
        }
    });
    Ok(())
}

async fn join_token(api: &ApiClient, out: Out, configuration: ConfigId, ttl: Option<u64>) -> Outcome {
    let body = CreateJoinTokenBody {
        configuration,
        ttl_seconds: ttl,
    };
    out.print(&api.create_join_token(&body).await?, output::join_token);
    Ok(())
}

async fn explain(api: &ApiClient, out: Out, resource: &ResourceId, user: &UserId) -> Outcome {
    out.print(&api.explain(resource, user).await?, output::explain);
    Ok(())
}

async fn force_close(api: &ApiClient, out: Out, command: &str, reason: &str) -> Outcome {
    out.print(&api.force_close_revoke(command, reason).await?, |g| match g {
        Some(g) => output::grants(std::slice::from_ref(g)),
        None => format!("revoke {command} closed"),
    });
    Ok(())
}

async fn users(api: &ApiClient, out: Out, action: UserAction) -> Outcome {
    match action {
        UserAction::List => out.print(&api.users().await?, |u| output::users(u)),
        UserAction::Disable { id } => out.print(&api.disable_user(&id).await?, |u| {
            output::users(std::slice::from_ref(u))
        }),
    }
    Ok(())
}

async fn tokens(api: &ApiClient, out: Out, action: TokenAction) -> Outcome {
    match action {
        TokenAction::List { user } => out.print(&api.tokens(user.as_deref()).await?, |t| output::tokens(t)),
        TokenAction::Revoke { id } => out.print(&api.revoke_token(&id).await?, |t| {
            output::tokens(std::slice::from_ref(t))
        }),
    }
    Ok(())
}

async fn agents(api: &ApiClient, out: Out, action: AgentAction) -> Outcome {
    let one = |a: &AgentView| output::agents(std::slice::from_ref(a));
    match action {
        AgentAction::List => out.print(&api.agents().await?, |a| output::agents(a)),
        AgentAction::Approve { id } => out.print(&api.approve_agent(id).await?, one),
        AgentAction::Revoke { id } => out.print(&api.revoke_agent(id).await?, one),
    }
    Ok(())
}

async fn sso(api: &ApiClient, out: Out) -> Outcome {
    out.print(&api.sso_providers().await?, |p| output::sso_providers(p));
    Ok(())
}

async fn sessions(api: &ApiClient, out: Out, action: SessionAction) -> Outcome {
    match action {
        SessionAction::List { user, all } => out.print(&api.sessions(user.as_deref(), all).await?, |s| {
            output::sessions(s)
        }),
        SessionAction::Revoke { id } => out.print(&api.revoke_session(&id).await?, |s| {
            output::sessions(std::slice::from_ref(s))
        }),
    }
    Ok(())
}

async fn scim(api: &ApiClient, out: Out, action: ScimAction) -> Outcome {
    match action {
        ScimAction::List => out.print(&api.scim_connections().await?, |c| output::scim_connections(c)),
        ScimAction::Create { name, roles } => {
            let default_roles = if roles.is_empty() {
                [Role::Requester].into()
            } else {
                roles.into_iter().collect()
            };
            let body = ScimConnectionBody { name, default_roles };
            out.print(
                &api.create_scim_connection(&body).await?,
                output::scim_connection_created,
            );
        }
        ScimAction::Delete { name } => {
            api.delete_scim_connection(&name).await?;
            out.print(&serde_json::json!({"deleted": name}), |_| {
                format!("SCIM connection {name} deleted")
            });
        }
    }
    Ok(())
}
