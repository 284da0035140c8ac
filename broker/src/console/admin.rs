//! The admin's pages. So far: agents (online, last seen, drift,
//! certificate expiry; approve and revoke) and join tokens, shown with the
//! exact command that enrolls an agent; users (roles, linked accounts,
//! providers; disable), live sessions and API tokens (end, revoke).

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use jitgate_shared::v1::api::{AgentState, AgentView, CreateJoinTokenBody, JoinTokenIssued, Role};
use jitgate_shared::v1::{AgentId, ConfigId};
use serde::Deserialize;

use super::csrf::Submitted;
use super::page::{self, see_other, Chrome, Here};
use super::text::{Lang, Texts};
use super::view::at_text;
use super::viewer::Viewer;
use crate::api::AppState;
use crate::service::ServiceError;

/// An agent as the agents page shows it.
#[derive(Debug)]
pub struct AgentRow {
    pub id: String,
    pub configuration: String,
    pub state: &'static str,
    pub pending: bool,
    pub active: bool,
    pub online: bool,
    pub last_seen: String,
    pub version: String,
    pub certificate_expires: String,
    pub drift: String,
}

fn agent_row(lang: Lang, a: &AgentView) -> AgentRow {
    let t = lang.texts();
    let drift = match &a.drift {
        None => t.drift_unknown.to_owned(),
        Some(d) if d.unexpected.is_empty() && d.missing.is_empty() => {
            format!("{} ({})", t.drift_none, at_text(d.checked_at))
        }
        Some(d) => format!(
            "{} {}, {} {} ({})",
            d.unexpected.len(),
            t.drift_unexpected,
            d.missing.len(),
            t.drift_missing,
            at_text(d.checked_at)
        ),
    };
    AgentRow {
        id: a.id.to_string(),
        configuration: a.configuration.to_string(),
        state: match a.state {
            AgentState::Pending => t.agent_pending,
            AgentState::Active => t.agent_active,
            AgentState::Revoked => t.agent_revoked,
        },
        pending: a.state == AgentState::Pending,
        active: a.state == AgentState::Active,
        online: a.online,
        last_seen: a.last_seen_at.map(at_text).unwrap_or_default(),
        version: a.agent_version.clone().unwrap_or_default(),
        certificate_expires: at_text(a.certificate_not_after),
        drift,
    }
}

/// The command that enrolls an agent with a join token, as an operator
/// runs it on the agent's host.
pub fn enroll_command(public_url: &str, issued: &JoinTokenIssued) -> String {
    format!(
        "jitgate-agent --state-dir /var/lib/jitgate-agent enroll --broker {} --token {} --ca-fingerprint {}",
        public_url.trim_end_matches('/'),
        issued.token,
        issued.ca_fingerprint
    )
}

/// One configuration's outbox.
#[derive(Debug)]
pub struct OutboxRow {
    pub configuration: String,
    pub queued: usize,
    pub revokes: usize,
    pub oldest: String,
}

/// A revoke that keeps failing.
#[derive(Debug)]
pub struct FailingRow {
    pub command: String,
    pub request: String,
    pub resource: String,
    pub user: String,
    pub since: String,
    pub attempts: u32,
    pub reason: String,
}

/// One address notifications go to, as the agents page shows it.
#[derive(Debug)]
pub struct NotificationRow {
    pub address: String,
    pub queued: u64,
    pub failing: u64,
    pub delivered: u64,
    pub given_up: u64,
    pub last_delivered: String,
    pub oldest_queued: String,
    pub last_error: String,
}

#[derive(Debug, Template)]
#[template(path = "console/admin_agents.html")]
pub struct AgentsPage {
    pub chrome: Chrome,
    pub t: &'static Texts,
    pub agents: Vec<AgentRow>,
    pub outboxes: Vec<OutboxRow>,
    pub failing: Vec<FailingRow>,
    /// Notification delivery per address.
    pub notifications: Vec<NotificationRow>,
    pub configurations: Vec<String>,
    pub may_act: bool,
    /// A join token just made: its configuration, expiry and command.
    pub enroll: Option<(String, String, String)>,
}

async fn agents_page(
    s: &AppState,
    viewer: &Viewer,
    enroll: Option<(String, String, String)>,
) -> Result<AgentsPage, ServiceError> {
    let (agents, configurations) = tokio::try_join!(
        s.broker.list_agents(&viewer.user),
        s.broker.list_configurations(&viewer.user)
    )?;
    let (outboxes, failing, notifications) = tokio::try_join!(
        outboxes(s, viewer, &configurations),
        s.broker.failing_revokes(&viewer.user),
        s.broker.notification_status(&viewer.user)
    )?;
    let t = viewer.lang.texts();
    let mut agents: Vec<&AgentView> = agents.iter().collect();
    agents.sort_by(|a, b| (&a.configuration, a.enrolled_at).cmp(&(&b.configuration, b.enrolled_at)));
    Ok(AgentsPage {
        chrome: Chrome::of(viewer, Here::Admin, t.nav_agents, "/console/admin/agents").live("agents"),
        t,
        agents: agents.iter().map(|a| agent_row(viewer.lang, a)).collect(),
        outboxes,
        failing: failing
            .iter()
            .filter_map(|g| {
                let f = g.revoke_failing.as_ref()?;
                Some(FailingRow {
                    command: f.command.clone(),
                    request: g.request.to_string(),
                    resource: g.resource.to_string(),
                    user: g.user.to_string(),
                    since: at_text(f.since),
                    attempts: f.attempts,
                    reason: f.reason.clone(),
                })
            })
            .collect(),
        notifications: notifications
            .into_iter()
            .map(|n| NotificationRow {
                address: n.address,
                queued: n.queued,
                failing: n.failing,
                delivered: n.delivered,
                given_up: n.given_up,
                last_delivered: n.last_delivered_at.map(at_text).unwrap_or_default(),
                oldest_queued: n.oldest_queued_at.map(at_text).unwrap_or_default(),
                last_error: n.last_error.unwrap_or_default(),
            })
            .collect(),
        configurations: configurations.iter().map(|c| c.id.to_string()).collect(),
        may_act: viewer.user.has_role(Role::Admin),
        enroll,
    })
}

/// Each configuration's queued commands (configurations are few: one read
/// each).
async fn outboxes(
    s: &AppState,
    viewer: &Viewer,
    configurations: &[jitgate_shared::v1::api::Configuration],
) -> Result<Vec<OutboxRow>, ServiceError> {
    let mut rows = Vec::new();
    for c in configurations {
        let queued = s
            .broker
            .outbox(&viewer.user, &c.id, crate::store::MAX_PAGE * 20)
            .await?;
        rows.push(OutboxRow {
            configuration: c.id.to_string(),
            queued: queued.len(),
            revokes: queued
                .iter()
                .filter(|q| q.op == jitgate_shared::v1::api::CommandOp::Revoke)
                .count(),
            oldest: queued
                .iter()
                .map(|q| q.issued_at)
                .min()
                .map(at_text)
                .unwrap_or_default(),
        });
    }
    Ok(rows)
}

#[derive(Debug, Deserialize)]
pub struct ForceCloseFields {
    pub reason: String,
}

/// `POST /console/admin/revokes/{command}/force-close`: an admin removed
/// the entitlement by hand; the reason goes to the audit log.
pub async fn force_close(
    State(s): State<AppState>,
    Path(command): Path<String>,
    form: Submitted<ForceCloseFields>,
) -> Response {
    let Submitted { viewer, form } = form;
    let body = jitgate_shared::v1::api::ForceCloseBody { reason: form.reason };
    match s.broker.force_close_revoke(&viewer.user, &command, body).await {
        Ok(_) => see_other("/console/admin/agents"),
        Err(e) => page::service_error(&viewer, e, "/console/admin/agents"),
    }
}

/// `GET /console/admin/agents` (admins and auditors; auditors only read).
pub async fn agents(State(s): State<AppState>, viewer: Viewer) -> Response {
    match agents_page(&s, &viewer, None).await {
        Ok(p) => page::render(StatusCode::OK, &p),
        Err(e) => page::service_error(&viewer, e, "/console/"),
    }
}

#[derive(Debug, Deserialize)]
pub struct JoinTokenFields {
    pub configuration: String,
}

/// `POST /console/admin/join-tokens`: a join token, shown once with the
/// enroll command (the page is the answer: nothing to reload).
pub async fn create_join_token(State(s): State<AppState>, form: Submitted<JoinTokenFields>) -> Response {
    let Submitted { viewer, form } = form;
    let made = async {
        let configuration = ConfigId::new(form.configuration.clone())
            .map_err(|e| ServiceError::invalid("configuration", e.to_string()))?;
        let issued = s
            .broker
            .create_join_token(
                &viewer.user,
                CreateJoinTokenBody {
                    configuration,
                    ttl_seconds: None,
                },
            )
            .await?;
        let command = enroll_command(&s.broker.settings().public_url, &issued);
        agents_page(
            &s,
            &viewer,
            Some((
                issued.configuration.to_string(),
                at_text(issued.expires_at),
                command,
            )),
        )
        .await
    }
    .await;
    match made {
        Ok(p) => page::render(StatusCode::OK, &p),
        Err(e) => page::service_error(&viewer, e, "/console/admin/agents"),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentAction {
    Approve,
    Revoke,
}

#[derive(Debug, Deserialize)]
pub struct AgentFields {
    pub action: AgentAction,
}

/// `POST /console/admin/agents/{id}`: approve or revoke an agent.
pub async fn act_on_agent(
    State(s): State<AppState>,
    Path(id): Path<String>,
    form: Submitted<AgentFields>,
) -> Response {
    let Submitted { viewer, form } = form;
    let done = match id.parse::<AgentId>() {
        Ok(agent) => match form.action {
            AgentAction::Approve => s.broker.approve_agent(&viewer.user, agent).await,
            AgentAction::Revoke => s.broker.revoke_agent(&viewer.user, agent).await,
        },
        Err(_) => Err(ServiceError::not_found("agent", &id)),
    };
    match done {
        Ok(_) => see_other("/console/admin/agents"),
        Err(e) => page::service_error(&viewer, e, "/console/admin/agents"),
    }
}

/// A user as the users page shows it.
#[derive(Debug)]
pub struct UserRow {
    pub id: String,
    pub name: String,
    pub email: String,
    pub roles: String,
    pub groups: String,
    /// Other accounts of the same person.
    pub linked: String,
    pub identities: String,
    pub disabled: bool,
}

/// A live session or an API token, as the users page shows it.
#[derive(Debug)]
pub struct CredentialRow {
    pub id: String,
    pub user: String,
    pub what: String,
    pub created: String,
    pub expires: String,
}

#[derive(Debug, Template)]
#[template(path = "console/admin_users.html")]
pub struct UsersPage {
    pub chrome: Chrome,
    pub t: &'static Texts,
    pub users: Vec<UserRow>,
    pub sessions: Vec<CredentialRow>,
    pub tokens: Vec<CredentialRow>,
    pub may_act: bool,
}

fn user_rows(users: &[jitgate_shared::v1::api::UserView]) -> Vec<UserRow> {
    users
        .iter()
        .map(|u| UserRow {
            id: u.id.to_string(),
            name: u.display_name.clone(),
            email: u.email.clone().unwrap_or_default(),
            roles: u.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", "),
            groups: u.groups.iter().cloned().collect::<Vec<_>>().join(", "),
            linked: users
                .iter()
                .filter(|o| o.id != u.id && !u.person.is_empty() && o.person == u.person)
                .map(|o| o.id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            identities: u
                .identities
                .keys()
                .cloned()
                .chain(u.provisioned_by.iter().map(|c| format!("SCIM {c}")))
                .collect::<Vec<_>>()
                .join(", "),
            disabled: u.disabled,
        })
        .collect()
}

async fn users_page(s: &AppState, viewer: &Viewer) -> Result<UsersPage, ServiceError> {
    let b = &s.broker;
    let users = b.list_users(&viewer.user).await?;
    let may_act = viewer.user.has_role(Role::Admin);
    let (sessions, tokens) = if may_act {
        tokio::try_join!(
            b.list_sessions(&viewer.user, None, false),
            b.list_tokens(&viewer.user, None)
        )?
    } else {
        (Vec::new(), Vec::new())
    };
    let t = viewer.lang.texts();
    Ok(UsersPage {
        chrome: Chrome::of(viewer, Here::Admin, t.users_title, "/console/admin/users"),
        t,
        users: user_rows(&users),
        sessions: sessions
            .iter()
            .map(|x| CredentialRow {
                id: x.id.clone(),
                user: x.user.to_string(),
                what: x.provider.clone(),
                created: at_text(x.created_at),
                expires: at_text(x.expires_at),
            })
            .collect(),
        // Tokens of sessions go with their session; these are API tokens.
        tokens: tokens
            .iter()
            .filter(|x| x.session.is_none())
            .map(|x| CredentialRow {
                id: x.id.clone(),
                user: x.user.to_string(),
                what: x.kind.clone(),
                created: at_text(x.created_at),
                expires: at_text(x.expires_at),
            })
            .collect(),
        may_act,
    })
}

/// `GET /console/admin/users` (admins and auditors; auditors only read
/// the accounts).
pub async fn users(State(s): State<AppState>, viewer: Viewer) -> Response {
    match users_page(&s, &viewer).await {
        Ok(p) => page::render(StatusCode::OK, &p),
        Err(e) => page::service_error(&viewer, e, "/console/"),
    }
}

#[derive(Debug, Deserialize)]
pub struct UserActionFields {
    pub action: String,
    pub id: String,
}

/// `POST /console/admin/users`: disable an account, end a session, revoke
/// an API token (admins; each audited by its service).
pub async fn act_on_user(State(s): State<AppState>, form: Submitted<UserActionFields>) -> Response {
    let Submitted { viewer, form } = form;
    let b = &s.broker;
    let done = match form.action.as_str() {
        "disable" => match form.id.parse::<jitgate_shared::v1::UserId>() {
            Ok(id) => b.disable_user(&viewer.user, &id).await.map(|_| ()),
            Err(_) => Err(ServiceError::not_found("user", &form.id)),
        },
        "end_session" => b.revoke_session(&viewer.user, &form.id).await.map(|_| ()),
        "revoke_token" => b.revoke_token(&viewer.user, &form.id).await.map(|_| ()),
        other => Err(ServiceError::invalid(
            "action",
            format!("`{other}` is not disable, end_session or revoke_token"),
        )),
    };
    match done {
        Ok(()) => see_other("/console/admin/users"),
        Err(e) => page::service_error(&viewer, e, "/console/admin/users"),
    }
}

/// A configuration and its resources, as the configurations page shows them.
#[derive(Debug)]
pub struct ConfigurationRow {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub identities: String,
    pub enabled: bool,
    /// (id, name, group, what it grants)
    pub resources: Vec<(String, String, String, String)>,
}

/// One step of an explained plan.
#[derive(Debug)]
pub struct PlanRow {
    pub configuration: String,
    pub target: String,
    pub principal: String,
    pub agents: String,
}

/// How a resource would be elevated for a user.
#[derive(Debug)]
pub struct Explained {
    pub resource: String,
    pub user: String,
    pub chain: String,
    pub apply: PlanRow,
    pub confirm: Vec<PlanRow>,
}

#[derive(Debug, Template)]
#[template(path = "console/admin_configurations.html")]
pub struct ConfigurationsPage {
    pub chrome: Chrome,
    pub t: &'static Texts,
    pub configurations: Vec<ConfigurationRow>,
    pub users: Vec<String>,
    pub asked_resource: String,
    pub asked_user: String,
    pub explained: Option<Explained>,
    pub error: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ExplainQuery {
    #[serde(default)]
    pub resource: String,
    #[serde(default)]
    pub user: String,
}

fn plan_row(step: &jitgate_shared::v1::api::PlanStep, t: &Texts) -> PlanRow {
    PlanRow {
        configuration: step.entitlement.configuration.to_string(),
        target: step.entitlement.target.describe(),
        principal: step.entitlement.principal.clone(),
        agents: if step.agents.is_empty() {
            t.no_agent_yet.to_owned()
        } else {
            step.agents
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        },
    }
}

/// `GET /console/admin/configurations?resource=&user=`: configurations and
/// their resources; with a resource and a user, how it would be elevated
/// for them (the chain explain view; nothing is done).
pub async fn configurations(
    State(s): State<AppState>,
    viewer: Viewer,
    axum::extract::Query(q): axum::extract::Query<ExplainQuery>,
) -> Response {
    let b = &s.broker;
    let read = async {
        tokio::try_join!(
            b.list_configurations(&viewer.user),
            b.list_resources(&viewer.user),
            b.list_users(&viewer.user)
        )
    };
    let (configurations, resources, users) = match read.await {
        Ok(v) => v,
        Err(e) => return page::service_error(&viewer, e, "/console/"),
    };
    let t = viewer.lang.texts();
    let (explained, error) = if q.resource.is_empty() || q.user.is_empty() {
        (None, None)
    } else {
        let asked = async {
            let resource = jitgate_shared::v1::ResourceId::new(q.resource.clone())
                .map_err(|e| ServiceError::invalid("resource", e.to_string()))?;
            let user = jitgate_shared::v1::UserId::new(q.user.clone())
                .map_err(|e| ServiceError::invalid("user", e.to_string()))?;
            b.explain(&viewer.user, &resource, &user).await
        };
        match asked.await {
            Ok(x) => (
                Some(Explained {
                    resource: x.resource.to_string(),
                    user: x.user.to_string(),
                    chain: super::view::chain_text(&x.chain),
                    apply: plan_row(&x.apply, t),
                    confirm: x.confirm.iter().map(|c| plan_row(c, t)).collect(),
                }),
                None,
            ),
            Err(e) => (None, Some(e.to_string())),
        }
    };
    let rows = configurations
        .iter()
        .map(|c| ConfigurationRow {
            id: c.id.to_string(),
            name: c.display_name.clone(),
            kind: c.kind.as_str().to_owned(),
            identities: match serde_json::to_value(&c.identity_mode) {
                Ok(serde_json::Value::Object(m)) => m
                    .iter()
                    .map(|(k, v)| format!("{k}: {}", v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
                    .collect::<Vec<_>>()
                    .join(", "),
                _ => String::new(),
            },
            enabled: c.enabled,
            resources: resources
                .iter()
                .filter(|r| r.configuration == c.id)
                .map(|r| {
                    (
                        r.id.to_string(),
                        r.display_name.clone(),
                        r.group.clone().unwrap_or_default(),
                        r.target.describe(),
                    )
                })
                .collect(),
        })
        .collect();
    page::render(
        StatusCode::OK,
        &ConfigurationsPage {
            chrome: Chrome::of(
                &viewer,
                Here::Admin,
                t.configurations_title,
                "/console/admin/configurations",
            ),
            t,
            configurations: rows,
            users: users.iter().map(|u| u.id.to_string()).collect(),
            asked_resource: q.resource,
            asked_user: q.user,
            explained,
            error,
        },
    )
}
