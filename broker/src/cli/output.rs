//! Tables for people; `--json` bypasses these.

use chrono::{DateTime, Utc};
use comfy_table::presets::UTF8_BORDERS_ONLY;
use comfy_table::Table;
use jitgate_shared::v1::api::{
    AgentView, ExplainView, GrantView, JoinTokenIssued, PlanStep, RequestKind, RequestView,
    ScimConnectionCreated, ScimConnectionView, SessionView, SsoProviderView, TokenView, UserView,
};

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY)
        .set_header(header.iter().copied());
    t
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

fn lower<T: std::fmt::Debug>(v: T) -> String {
    // Enum names in snake_case as the API writes them.
    let s = format!("{v:?}");
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.extend(c.to_lowercase());
    }
    out
}

pub fn requests(items: &[RequestView]) -> String {
    let mut t = table(&[
        "id",
        "requester",
        "resource",
        "for",
        "state",
        "approvals",
        "created",
    ]);
    for r in items {
        let resource = match &r.kind {
            RequestKind::Access => r.resource.to_string(),
            RequestKind::Extension { grant } => format!("{} (extend {grant})", r.resource),
        };
        t.add_row(vec![
            r.id.to_string(),
            r.requester.to_string(),
            resource,
            humantime::format_duration(std::time::Duration::from_secs(r.duration_seconds)).to_string(),
            lower(r.state),
            format!(
                "{}/{}",
                r.reviews
                    .iter()
                    .filter(|v| v.decision == jitgate_shared::v1::api::Decision::Approve)
                    .count(),
                r.approvals_required
            ),
            when(r.created_at),
        ]);
    }
    t.to_string()
}

/// Who someone is: id, display name and roles.
pub fn person(u: &UserView) -> String {
    let roles: Vec<&str> = u.roles.iter().map(|r| r.as_str()).collect();
    format!("{} ({}) roles: {}", u.id, u.display_name, roles.join(", "))
}

pub fn request(r: &RequestView) -> String {
    let mut out = requests(std::slice::from_ref(r));
    if !r.principal.is_empty() {
        out.push_str(&format!("\ngrants to: {} (in the cloud)", r.principal));
    }
    if let Some(j) = &r.justification {
        out.push_str(&format!("\njustification: {j}"));
    }
    if let Some(t) = &r.ticket {
        out.push_str(&format!("\nticket: {t}"));
    }
    for v in &r.reviews {
        out.push_str(&format!(
            "\n{} by {}{} at {}{}",
            lower(v.decision),
            v.reviewer,
            if v.person.is_empty() || v.person == v.reviewer.as_str() {
                String::new()
            } else {
                format!(" (person {})", v.person)
            },
            when(v.at),
            v.comment.as_ref().map(|c| format!(": {c}")).unwrap_or_default()
        ));
    }
    if let Some(g) = r.grant {
        out.push_str(&format!("\ngrant: {g}"));
    }
    if r.break_glass {
        out.push_str("\nBREAK-GLASS: taken without approval; flagged for review");
    }
    out
}

/// What is known of a grant's effect, never more: applied in a directory
/// is not in effect downstream until an agent there confirms it.
fn effect(g: &GrantView) -> String {
    let federated = !g.chain.is_empty();
    if g.removed_at.is_some() && federated && g.removal_confirmed_at.is_none() {
        format!(
            "removed in {}, awaiting directory sync",
            g.entitlement.configuration
        )
    } else if g.removed_at.is_some() {
        "removed".to_owned()
    } else if g.effective_at.is_some() {
        "in effect".to_owned()
    } else if g.applied_at.is_some() {
        format!(
            "applied in {}, awaiting directory sync",
            g.entitlement.configuration
        )
    } else {
        "-".to_owned()
    }
}

pub fn grants(items: &[GrantView]) -> String {
    let mut t = table(&[
        "id",
        "user",
        "resource",
        "entitlement",
        "state",
        "effect",
        "starts",
        "ends",
    ]);
    for g in items {
        let state = match (&g.revoke_failing, g.end_reason) {
            (Some(f), _) => format!(
                "revoke_failing since {} ({} tries: {}; command {})",
                when(f.since),
                f.attempts,
                f.reason,
                f.command
            ),
            (None, Some(reason)) => format!("{} ({})", lower(g.state), lower(reason)),
            (None, None) => lower(g.state),
        };
        t.add_row(vec![
            g.id.to_string(),
            g.user.to_string(),
            g.resource.to_string(),
            format!(
                "{} in {}",
                g.entitlement.target.describe(),
                g.entitlement.configuration
            ),
            state,
            effect(g),
            when(g.starts_at),
            when(g.ends_at),
        ]);
    }
    t.to_string()
}

pub fn explain(e: &ExplainView) -> String {
    let step = |s: &PlanStep| {
        let agents = if s.agents.is_empty() {
            "no active agent: commands wait in the outbox".to_owned()
        } else {
            let ids: Vec<String> = s.agents.iter().map(ToString::to_string).collect();
            format!("agent {}", ids.join(", "))
        };
        format!(
            "{} for {} in {} ({agents})",
            s.entitlement.target.describe(),
            s.entitlement.principal,
            s.entitlement.configuration
        )
    };
    let chain: Vec<String> = e.chain.iter().map(ToString::to_string).collect();
    let mut out = format!(
        "resource {} for {}\nchain    {}\napply    {}",
        e.resource,
        e.user,
        chain.join(" → "),
        step(&e.apply)
    );
    for c in &e.confirm {
        out.push_str(&format!("\nin use   {}, once the directory syncs", step(c)));
    }
    out
}

pub fn join_token(t: &JoinTokenIssued) -> String {
    format!(
        "join token for {} (one use, expires {}):\n{}\nbroker CA fingerprint (sha256): {}",
        t.configuration,
        when(t.expires_at),
        t.token,
        t.ca_fingerprint
    )
}

pub fn scim_connection_created(c: &ScimConnectionCreated) -> String {
    format!(
        "SCIM connection {} created; users it provisions start as {}.\n\
         Give the directory:\n  tenant URL   {}\n  secret token {}\n\
         The token is shown once; delete the connection and create it again to replace it.",
        c.connection.name,
        roles(&c.connection.default_roles),
        c.base_url,
        c.token
    )
}

fn roles(r: &std::collections::BTreeSet<jitgate_shared::v1::api::Role>) -> String {
    r.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
}

pub fn sso_providers(items: &[SsoProviderView]) -> String {
    let mut t = table(&["name", "kind", "email domains", "register at the provider"]);
    for p in items {
        let register = match p.kind.as_str() {
            "saml" => format!(
                "entity id {}\nACS {}\nmetadata {}",
                p.entity_id.as_deref().unwrap_or_default(),
                p.acs_url.as_deref().unwrap_or_default(),
                p.metadata_url.as_deref().unwrap_or_default()
            ),
            _ => format!("redirect URI {}", p.callback_url.as_deref().unwrap_or_default()),
        };
        t.add_row(vec![
            p.name.clone(),
            p.kind.clone(),
            p.email_domains.join(", "),
            register,
        ]);
    }
    t.to_string()
}

pub fn sessions(items: &[SessionView]) -> String {
    let mut t = table(&[
        "id",
        "user",
        "provider",
        "signed in",
        "until",
        "refreshed",
        "ended",
    ]);
    for s in items {
        t.add_row(vec![
            s.id.clone(),
            s.user.to_string(),
            s.provider.clone(),
            when(s.created_at),
            when(s.expires_at),
            s.refreshed_at.map(when).unwrap_or_default(),
            s.ended_at.map(when).unwrap_or_default(),
        ]);
    }
    t.to_string()
}

pub fn tokens(items: &[TokenView]) -> String {
    let mut t = table(&["id", "user", "kind", "created", "expires", "session"]);
    for k in items {
        t.add_row(vec![
            k.id.clone(),
            k.user.to_string(),
            k.kind.clone(),
            when(k.created_at),
            when(k.expires_at),
            k.session.clone().unwrap_or_default(),
        ]);
    }
    t.to_string()
}

pub fn users(items: &[UserView]) -> String {
    let mut t = table(&["id", "name", "email", "person", "roles", "state"]);
    for u in items {
        let email = match (&u.email, u.email_verified) {
            (Some(e), true) => e.clone(),
            (Some(e), false) => format!("{e} (unverified)"),
            (None, _) => String::new(),
        };
        t.add_row(vec![
            u.id.to_string(),
            u.display_name.clone(),
            email,
            u.person.clone(),
            roles(&u.roles),
            if u.disabled { "disabled" } else { "active" }.to_owned(),
        ]);
    }
    t.to_string()
}

pub fn scim_connections(items: &[ScimConnectionView]) -> String {
    let mut t = table(&["name", "default roles", "users", "groups", "created"]);
    for c in items {
        t.add_row(vec![
            c.name.clone(),
            roles(&c.default_roles),
            c.users.to_string(),
            c.groups.to_string(),
            when(c.created_at),
        ]);
    }
    t.to_string()
}

pub fn agents(items: &[AgentView]) -> String {
    let mut t = table(&[
        "id",
        "configuration",
        "state",
        "status",
        "last seen",
        "drift",
        "certificate until",
    ]);
    for a in items {
        let drift = a.drift.as_ref().map_or_else(
            || "-".to_owned(),
            |d| {
                if d.unexpected.is_empty() && d.missing.is_empty() {
                    "none".to_owned()
                } else {
                    format!(
                        "{} unexpected{}, {} missing",
                        d.unexpected.len(),
                        if d.removing_unexpected { " (revoking)" } else { "" },
                        d.missing.len()
                    )
                }
            },
        );
        t.add_row(vec![
            a.id.to_string(),
            a.configuration.to_string(),
            lower(a.state),
            if a.online { "online" } else { "offline" }.to_owned(),
            a.last_seen_at.map_or_else(|| "-".to_owned(), when),
            drift,
            when(a.certificate_not_after),
        ]);
    }
    t.to_string()
}
