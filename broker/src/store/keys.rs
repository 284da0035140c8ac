//! Key layout of the embedded store. One keyspace, prefixed by record kind,
//! so one atomic batch can touch every kind.

use chrono::{DateTime, Utc};

use crate::domain::job::Job;
use crate::store::RecordKind;

pub const CONFIG: &str = "c/";
pub const RESOURCE: &str = "r/";
pub const USER: &str = "u/";
pub const TOKEN: &str = "t/";
pub const REQUEST: &str = "q/";
pub const GRANT: &str = "g/";
pub const LEASE: &str = "l/";
pub const JOB: &str = "j/";
pub const OUTBOX: &str = "o/";
/// Outbox index by command id, for idempotent queueing.
pub const OUTBOX_ID: &str = "oi/";
/// Outbox index by entitlement (lease key): at most one command per
/// entitlement is queued; a newer one supersedes it.
pub const OUTBOX_ENTITLEMENT: &str = "oe/";
/// Agents' answers, by command id.
pub const RESULT: &str = "cr/";
pub const AUDIT: &str = "a/";
pub const JOIN_TOKEN: &str = "jt/";
pub const AGENT: &str = "ag/";
pub const OUTBOX_SEQ: &str = "m/outbox_seq";
/// The newest signed anchor of the audit chain.
pub const AUDIT_ANCHOR: &str = "m/audit_anchor";
pub const SCIM_CONNECTION: &str = "sc/";
/// Sign-ins started, by the hash of their state.
pub const PENDING_LOGIN: &str = "pl/";
pub const SESSION: &str = "ss/";
/// SAML assertion ids already used.
pub const USED_ASSERTION: &str = "ua/";
/// SCIM resources, by connection, kind and id.
pub const SCIM_RESOURCE: &str = "sr/";
/// SCIM name index (`userName` of users, `displayName` of groups, without
/// regard to case), by connection and kind: name/id -> empty.
pub const SCIM_NAME: &str = "sn/";

/// Notifications, by id.
pub const NOTIFICATION: &str = "n/";
/// Notifications by when they fall due: `{due ms}/{id}` -> empty.
pub const NOTIFICATION_DUE: &str = "nd/";
/// Notifications by the request they are about: `{request}/{id}` -> empty.
pub const NOTIFICATION_REQUEST: &str = "nr/";
/// Grants by the user they are for: `{user}/{grant}` -> empty, written
/// with the grant (a grant's user never changes; user ids hold no `/`).
pub const GRANT_USER: &str = "gu/";
/// Requests by requester: `{requester}/{request}` -> empty, as
/// [`GRANT_USER`].
pub const REQUEST_REQUESTER: &str = "qu/";
/// Cursors (the notification router's over the audit log), by name.
pub const CURSOR: &str = "cu/";
/// When each configuration last had an agent connected, by configuration.
pub const LAST_CONTACT: &str = "lc/";

pub fn key(prefix: &str, id: impl std::fmt::Display) -> Vec<u8> {
    format!("{prefix}{id}").into_bytes()
}

fn due_ms(due: DateTime<Utc>) -> u64 {
    u64::try_from(due.timestamp_millis()).unwrap_or(0)
}

/// Jobs sort by due time, so "what is due" is a range scan.
pub fn job(job: &Job) -> Vec<u8> {
    let (kind, id) = (job.kind.name(), job.kind.subject());
    format!("{JOB}{:020}/{kind}/{id}", due_ms(job.due)).into_bytes()
}

/// A notification's entry in the index by due time.
pub fn notification_due(due: DateTime<Utc>, id: &str) -> Vec<u8> {
    format!("{NOTIFICATION_DUE}{:020}/{id}", due_ms(due)).into_bytes()
}

/// A notification's entry in the index by request.
pub fn notification_request(request: &str, id: &str) -> Vec<u8> {
    format!("{NOTIFICATION_REQUEST}{request}/{id}").into_bytes()
}

/// Where `user`'s entries in the index of grants by user are.
pub fn grants_of(user: &str) -> String {
    format!("{GRANT_USER}{user}/")
}

/// A grant's entry in the index by user.
pub fn grant_user(user: &str, grant: &str) -> Vec<u8> {
    key(&grants_of(user), grant)
}

/// Where `requester`'s entries in the index of requests by requester are.
pub fn requests_of(requester: &str) -> String {
    format!("{REQUEST_REQUESTER}{requester}/")
}

/// A request's entry in the index by requester.
pub fn request_requester(requester: &str, request: &str) -> Vec<u8> {
    key(&requests_of(requester), request)
}

/// The record id an entry of a by-user index names (what follows its
/// last `/`).
pub fn indexed_id(k: &[u8]) -> Option<&str> {
    std::str::from_utf8(k).ok()?.rsplit_once('/').map(|(_, id)| id)
}

/// The first key after every notification due at or before `now`.
pub fn notifications_due_until(now: DateTime<Utc>) -> Vec<u8> {
    format!("{NOTIFICATION_DUE}{:020}0", due_ms(now)).into_bytes()
}

/// The notification id an index entry names.
pub fn notification_of_due(k: &[u8]) -> Option<&str> {
    std::str::from_utf8(k)
        .ok()?
        .strip_prefix(NOTIFICATION_DUE)?
        .get(21..)
}

/// The first key after every job due at or before `now`.
pub fn jobs_due_until(now: DateTime<Utc>) -> Vec<u8> {
    format!("{JOB}{:020}0", due_ms(now)).into_bytes()
}

pub fn outbox(configuration: &str, priority: u8, seq: u64) -> Vec<u8> {
    format!("{OUTBOX}{configuration}/{priority}/{seq:020}").into_bytes()
}

pub fn outbox_prefix(configuration: &str) -> Vec<u8> {
    format!("{OUTBOX}{configuration}/").into_bytes()
}

pub fn outbox_entitlement(configuration: &str, lease_key: &str) -> Vec<u8> {
    format!("{OUTBOX_ENTITLEMENT}{configuration}/{lease_key}").into_bytes()
}

/// Where a SCIM resource's records live: `{connection}/{kind}/`.
/// Where records of `kind` live: every versioned record is at its kind's
/// prefix followed by its id.
pub fn record_prefix(kind: RecordKind) -> &'static str {
    match kind {
        RecordKind::Configuration => CONFIG,
        RecordKind::Resource => RESOURCE,
        RecordKind::User => USER,
        RecordKind::Request => REQUEST,
        RecordKind::Grant => GRANT,
        RecordKind::Lease => LEASE,
        RecordKind::JoinToken => JOIN_TOKEN,
        RecordKind::Agent => AGENT,
        RecordKind::PendingLogin => PENDING_LOGIN,
        RecordKind::Session => SESSION,
        RecordKind::UsedAssertion => USED_ASSERTION,
        RecordKind::ScimConnection => SCIM_CONNECTION,
        RecordKind::ScimResource => SCIM_RESOURCE,
        RecordKind::Notification => NOTIFICATION,
        RecordKind::Cursor => CURSOR,
        RecordKind::LastContact => LAST_CONTACT,
    }
}

pub fn scim_scope(connection: &str, kind: crate::identity::scim::ScimKind) -> String {
    format!("{connection}/{}/", kind.name())
}

pub fn scim_name(connection: &str, kind: crate::identity::scim::ScimKind, name: &str, id: &str) -> Vec<u8> {
    format!("{SCIM_NAME}{}{name}\u{0}{id}", scim_scope(connection, kind)).into_bytes()
}

pub fn scim_name_prefix(connection: &str, kind: crate::identity::scim::ScimKind, name: &str) -> Vec<u8> {
    format!("{SCIM_NAME}{}{name}\u{0}", scim_scope(connection, kind)).into_bytes()
}

pub fn audit(seq: u64) -> Vec<u8> {
    format!("{AUDIT}{seq:020}").into_bytes()
}

/// The smallest key greater than every key starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    vec![u8::MAX]
}
