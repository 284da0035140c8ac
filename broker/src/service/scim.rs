//! SCIM provisioning: connections (admin side) and the resources a
//! directory writes through one, with jitgate's users kept in step.
//!
//! - A SCIM user makes a jitgate user (`provisioned_by` the connection) with
//!   the connection's default roles; its display name and email follow the
//!   directory. `active: false` or DELETE deprovisions it at once
//!   ([`super::deprovision`]); `active: true` again lets it sign in again.
//! - A SCIM group's `displayName` becomes a group of each member, usable in
//!   policies (`Jitgate::Group`) and approver sets.
//! - Users nobody provisioned through SCIM are never seen or touched here.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use jitgate_shared::v1::api::{Role, ScimConnectionBody, ScimConnectionCreated, ScimConnectionView};
use jitgate_shared::v1::UserId;
use scim_v2::filter::Filter;
use scim_v2::models::others::PatchOperation;
use serde_json::{Map, Value};

use super::auth::{hash_token, random_token};
use super::deprovision::Deprovisioning;
use super::{require_role, Broker, ServiceError, CONFLICT_RETRIES};
use crate::audit::{Actor, AuditEntry, AuditEvent};
use crate::domain::user::User;
use crate::identity::scim::document::{check_required, normalize};
use crate::identity::scim::filter::{matches, naming_eq};
use crate::identity::scim::{patch, ScimConnection, ScimError, ScimKind, ScimResource};
use crate::store::{Change, ScimFilter};

/// Prefix of SCIM connection tokens (recognisable by secret scanners).
pub const SCIM_TOKEN_PREFIX: &str = "jgscim_";

/// A page of resources and how many matched in all.
#[derive(Debug)]
pub struct ScimPage {
    pub total: usize,
    pub start_index: usize,
    pub resources: Vec<ScimResource>,
}

impl From<ServiceError> for ScimError {
    fn from(e: ServiceError) -> Self {
        match &e {
            ServiceError::Unauthenticated(m) => ScimError::unauthorized(m.clone()),
            ServiceError::Forbidden(m) => ScimError::new(403, None, m.clone()),
            ServiceError::NotFound { .. } => ScimError::not_found(e.to_string()),
            ServiceError::Invalid { message, .. } => ScimError::invalid_value(message.clone()),
            ServiceError::Conflict(m) => ScimError::conflict(m.clone()),
            ServiceError::Unavailable(m) => ScimError::new(503, None, m.clone()),
            ServiceError::Store(s) if s.is_conflict() => ScimError::conflict(s.to_string()),
            ServiceError::Store(_) => {
                tracing::error!(error = %e, "store failure behind a SCIM request");
                ScimError::internal("the broker could not read or write its store")
            }
        }
    }
}

impl From<crate::store::StoreError> for ScimError {
    fn from(e: crate::store::StoreError) -> Self {
        ServiceError::from(e).into()
    }
}

fn check_connection_name(name: &str) -> Result<(), ServiceError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ServiceError::invalid(
            "name",
            format!("`{name}` is not a connection name: 1 to 64 letters, digits, `-`, `_` or `.`"),
        ))
    }
}

impl Broker {
    /// The SCIM base URL directories are given.
    pub fn scim_base(&self) -> String {
        format!("{}/scim/v2", self.settings.public_url)
    }

    #[tracing::instrument(skip(self, actor, body), fields(user = %actor.id, connection = %body.name))]
    pub async fn create_scim_connection(
        &self,
        actor: &User,
        body: ScimConnectionBody,
    ) -> Result<ScimConnectionCreated, ServiceError> {
        require_role(actor, Role::Admin)?;
        check_connection_name(&body.name)?;
        if self.store.scim_connection(&body.name).await?.is_some() {
            return Err(ServiceError::Conflict(format!(
                "SCIM connection `{}` exists; delete it first to issue a new token",
                body.name
            )));
        }
        let now = self.clock.now();
        let token = random_token(SCIM_TOKEN_PREFIX);
        let connection = ScimConnection {
            name: body.name.clone(),
            version: 0,
            token_hash: hash_token(&token),
            default_roles: body.default_roles,
            created_at: now,
        };
        let mut change = Change::default();
        change.audit.push(AuditEntry {
            at: now,
            actor: Actor::User(actor.id.clone()),
            event: AuditEvent::ScimConnectionCreated {
                connection: body.name,
            },
        });
        let view = connection.view(0, 0);
        change.scim_connections.push(connection);
        self.commit(change).await?;
        Ok(ScimConnectionCreated {
            connection: view,
            token,
            base_url: self.scim_base(),
        })
    }

    pub async fn list_scim_connections(&self, actor: &User) -> Result<Vec<ScimConnectionView>, ServiceError> {
        require_role(actor, Role::Admin)?;
        let mut out = Vec::new();
        for c in self.store.scim_connections().await? {
            let users = self
                .store
                .scim_resources(&c.name, ScimKind::User, &ScimFilter::default())
                .await?;
            let groups = self
                .store
                .scim_resources(&c.name, ScimKind::Group, &ScimFilter::default())
                .await?;
            out.push(c.view(users.len(), groups.len()));
        }
        Ok(out)
    }

    /// Deletes a connection: its token stops working at once. The users it
    /// provisioned stay as they are (an admin can still disable them).
    #[tracing::instrument(skip(self, actor), fields(user = %actor.id))]
    pub async fn delete_scim_connection(&self, actor: &User, name: &str) -> Result<(), ServiceError> {
        require_role(actor, Role::Admin)?;
        if self.store.scim_connection(name).await?.is_none() {
            return Err(ServiceError::not_found("SCIM connection", name));
        }
        let mut change = Change::default();
        change.delete_scim_connections.push(name.to_owned());
        change.audit.push(AuditEntry {
            at: self.clock.now(),
            actor: Actor::User(actor.id.clone()),
            event: AuditEvent::ScimConnectionDeleted {
                connection: name.to_owned(),
            },
        });
        self.commit(change).await?;
        Ok(())
    }

    /// The connection a bearer token belongs to. One message for every
    /// failure.
    pub async fn scim_authenticate(&self, token: &str) -> Result<ScimConnection, ScimError> {
        let refuse = || ScimError::unauthorized("invalid SCIM token");
        if !token.starts_with(SCIM_TOKEN_PREFIX) {
            return Err(refuse());
        }
        let hash = hash_token(token);
        self.store
            .scim_connections()
            .await?
            .into_iter()
            .find(|c| c.token_hash == hash)
            .ok_or_else(refuse)
    }

    pub async fn scim_get(
        &self,
        conn: &ScimConnection,
        kind: ScimKind,
        id: &str,
    ) -> Result<ScimResource, ScimError> {
        self.store
            .scim_resource(&conn.name, kind, id)
            .await?
            .ok_or_else(|| ScimError::not_found(format!("{} `{id}` not found", kind.name())))
    }

    /// A page of the resources `filter` matches (`start_index` from 1).
    pub async fn scim_list(
        &self,
        conn: &ScimConnection,
        kind: ScimKind,
        filter: Option<&Filter>,
        start_index: usize,
        count: usize,
    ) -> Result<ScimPage, ScimError> {
        let base = self.scim_base();
        let matching: Vec<ScimResource> = match filter {
            Some(f) => match naming_eq(kind, f) {
                Some(name) => self.store.scim_named(&conn.name, kind, name).await?,
                None => self
                    .store
                    .scim_resources(&conn.name, kind, &ScimFilter::default())
                    .await?
                    .into_iter()
                    .filter(|r| matches(kind, f, &r.render(&base)))
                    .collect(),
            },
            None => {
                self.store
                    .scim_resources(&conn.name, kind, &ScimFilter::default())
                    .await?
            }
        };
        let start_index = start_index.max(1);
        let total = matching.len();
        let resources = matching.into_iter().skip(start_index - 1).take(count).collect();
        Ok(ScimPage {
            total,
            start_index,
            resources,
        })
    }

    #[tracing::instrument(skip(self, conn, body), fields(connection = %conn.name, kind = kind.name()))]
    pub async fn scim_create(
        &self,
        conn: &ScimConnection,
        kind: ScimKind,
        body: &Map<String, Value>,
    ) -> Result<ScimResource, ScimError> {
        let doc = normalize(kind, body)?;
        check_required(kind, &doc)?;
        let now = self.clock.now();
        let resource = ScimResource {
            id: uuid::Uuid::now_v7().to_string(),
            version: 0,
            connection: conn.name.clone(),
            kind,
            doc: Map::new(),
            user: None,
            created_at: now,
            modified_at: now,
        };
        self.scim_write(conn, None, resource, doc).await
    }

    #[tracing::instrument(skip(self, conn, body), fields(connection = %conn.name, kind = kind.name()))]
    pub async fn scim_replace(
        &self,
        conn: &ScimConnection,
        kind: ScimKind,
        id: &str,
        body: &Map<String, Value>,
    ) -> Result<ScimResource, ScimError> {
        let doc = normalize(kind, body)?;
        check_required(kind, &doc)?;
        self.scim_update(conn, kind, id, |_| Ok(doc.clone())).await
    }

    #[tracing::instrument(skip(self, conn, operations), fields(connection = %conn.name, kind = kind.name()))]
    pub async fn scim_patch(
        &self,
        conn: &ScimConnection,
        kind: ScimKind,
        id: &str,
        operations: &[PatchOperation],
    ) -> Result<ScimResource, ScimError> {
        self.scim_update(conn, kind, id, |doc| patch::apply(kind, doc, operations))
            .await
    }

    async fn scim_update(
        &self,
        conn: &ScimConnection,
        kind: ScimKind,
        id: &str,
        next_doc: impl Fn(
            &crate::identity::scim::document::Document,
        ) -> Result<crate::identity::scim::document::Document, ScimError>,
    ) -> Result<ScimResource, ScimError> {
        scim_retry(|| async {
            let existing = self.scim_get(conn, kind, id).await?;
            let doc = next_doc(&existing.doc)?;
            self.scim_write(conn, Some(&existing), existing.clone(), doc)
                .await
        })
        .await
    }

    /// Writes `resource` with `doc`, and jitgate's users with it.
    async fn scim_write(
        &self,
        conn: &ScimConnection,
        before: Option<&ScimResource>,
        mut resource: ScimResource,
        doc: crate::identity::scim::document::Document,
    ) -> Result<ScimResource, ScimError> {
        let now = self.clock.now();
        resource.doc = doc;
        resource.modified_at = now;
        let kind = resource.kind;
        let mut change = Change::default();
        match kind {
            ScimKind::User => {
                let name = resource.name().unwrap_or_default().to_owned();
                let taken = self.store.scim_named(&conn.name, kind, &name).await?;
                if taken.iter().any(|r| r.id != resource.id) {
                    return Err(ScimError::uniqueness(format!("userName `{name}` is taken")));
                }
                let user = self.sync_user(conn, &resource, &mut change, now).await?;
                resource.user = Some(user);
            }
            ScimKind::Group => {
                self.check_members(conn, &resource).await?;
                self.sync_group_members(conn, before, Some(&resource), &mut change)
                    .await?;
            }
        }
        change.scim_resources.push(resource.clone());
        Ok(self.commit(change).await?.stored(resource))
    }

    #[tracing::instrument(skip(self, conn), fields(connection = %conn.name, kind = kind.name()))]
    pub async fn scim_delete(
        &self,
        conn: &ScimConnection,
        kind: ScimKind,
        id: &str,
    ) -> Result<(), ScimError> {
        scim_retry(|| async {
            let resource = self.scim_get(conn, kind, id).await?;
            let now = self.clock.now();
            let mut change = Change::default();
            match kind {
                ScimKind::User => {
                    if let Some(user) = match &resource.user {
                        Some(u) => self.store.user(u).await?,
                        None => None,
                    } {
                        let actor = Actor::Directory(conn.name.clone());
                        let user = if user.disabled {
                            user
                        } else {
                            self.end_access(&user, Deprovisioning::Deleted, actor, &mut change, now)
                                .await?
                        };
                        change.users.push(user);
                    }
                    // Take the user out of the connection's groups.
                    let groups = self
                        .store
                        .scim_resources(
                            &conn.name,
                            ScimKind::Group,
                            &ScimFilter {
                                member: Some(id.to_owned()),
                            },
                        )
                        .await?;
                    for mut group in groups {
                        if let Some(Value::Array(members)) = group.doc.get_mut("members") {
                            members.retain(|m| m.get("value").and_then(Value::as_str) != Some(id));
                            if members.is_empty() {
                                group.doc.remove("members");
                            }
                        }
                        group.modified_at = now;
                        change.scim_resources.push(group);
                    }
                }
                ScimKind::Group => {
                    self.sync_group_members(conn, Some(&resource), None, &mut change)
                        .await?;
                }
            }
            change.delete_scim_resources.push(resource);
            self.commit(change).await?;
            Ok(())
        })
        .await
    }

    /// Creates or updates the jitgate user of a SCIM user; deprovisions it
    /// when the directory deactivated it. Returns its id.
    async fn sync_user(
        &self,
        conn: &ScimConnection,
        resource: &ScimResource,
        change: &mut Change,
        now: DateTime<Utc>,
    ) -> Result<UserId, ScimError> {
        let profile = resource.profile();
        let actor = Actor::Directory(conn.name.clone());
        let existing = match &resource.user {
            Some(id) => self.store.user(id).await?,
            None => None,
        };
        let Some(user) = existing else {
            let id = self.free_user_id(&profile.user_name, &resource.id).await?;
            // The directory vouches for the emails it provisions.
            let person = self.person_for_new_account(&id, profile.email.as_deref()).await?;
            let user = User {
                id: id.clone(),
                version: 0,
                display_name: profile.display_name,
                email: profile.email,
                email_verified: true,
                roles: conn.default_roles.clone(),
                groups: Default::default(),
                person,
                disabled: !profile.active,
                created_at: now,
                provisioned_by: Some(conn.name.clone()),
                identities: Default::default(),
                language: None,
            };
            change.audit.push(AuditEntry {
                at: now,
                actor,
                event: AuditEvent::UserProvisioned {
                    user: id.clone(),
                    connection: conn.name.clone(),
                    scim_id: resource.id.clone(),
                },
            });
            change.users.push(user);
            return Ok(id);
        };
        let mut next = user.clone();
        next.display_name = profile.display_name;
        next.email = profile.email;
        if !profile.active && !user.disabled {
            next = self
                .end_access(&next, Deprovisioning::Deactivated, actor, change, now)
                .await?;
        } else if profile.active && user.disabled {
            next.disabled = false;
            change.audit.push(AuditEntry {
                at: now,
                actor,
                event: AuditEvent::UserReactivated {
                    user: user.id.clone(),
                },
            });
        } else if next != user {
            change.audit.push(AuditEntry {
                at: now,
                actor,
                event: AuditEvent::UserSaved {
                    user: user.id.clone(),
                },
            });
        }
        let id = next.id.clone();
        if next != user {
            change.users.push(next);
        }
        Ok(id)
    }

    /// A user id from a `userName` (`Ann@Example.com` -> `ann@example.com`),
    /// made unique with the SCIM id when taken.
    async fn free_user_id(&self, user_name: &str, scim_id: &str) -> Result<UserId, ScimError> {
        let slug = crate::identity::sso::user_id_slug(user_name);
        let short = scim_id.get(..8).unwrap_or(scim_id);
        for candidate in [slug.clone(), format!("{slug}-{short}"), format!("scim-{scim_id}")] {
            if let Ok(id) = UserId::new(candidate) {
                if self.store.user(&id).await?.is_none() {
                    return Ok(id);
                }
            }
        }
        Err(ScimError::uniqueness(format!(
            "no free user id for userName `{user_name}`"
        )))
    }

    /// A group's members must be users or groups of the same connection.
    async fn check_members(&self, conn: &ScimConnection, group: &ScimResource) -> Result<(), ScimError> {
        for id in group.member_ids() {
            let user = self.store.scim_resource(&conn.name, ScimKind::User, &id).await?;
            let found = match user {
                Some(_) => true,
                None => self
                    .store
                    .scim_resource(&conn.name, ScimKind::Group, &id)
                    .await?
                    .is_some(),
            };
            if !found {
                return Err(ScimError::invalid_value(format!(
                    "member `{id}` is not a user or group of this connection"
                )));
            }
        }
        Ok(())
    }

    /// Keeps members' jitgate groups in step with a group written (`after`)
    /// or deleted (`after` = `None`).
    async fn sync_group_members(
        &self,
        conn: &ScimConnection,
        before: Option<&ScimResource>,
        after: Option<&ScimResource>,
        change: &mut Change,
    ) -> Result<(), ServiceError> {
        let old_name = before.and_then(ScimResource::name).map(str::to_owned);
        let new_name = after.and_then(ScimResource::name).map(str::to_owned);
        let old: HashSet<String> = before.map(ScimResource::member_ids).unwrap_or_default();
        let new: HashSet<String> = after.map(ScimResource::member_ids).unwrap_or_default();
        for id in old.union(&new) {
            let (was, is) = (old.contains(id), new.contains(id));
            if was && is && old_name == new_name {
                continue;
            }
            let Some(member) = self.store.scim_resource(&conn.name, ScimKind::User, id).await? else {
                continue;
            };
            let Some(user_id) = member.user else { continue };
            let Some(mut user) = self.store.user(&user_id).await? else {
                continue;
            };
            if let (true, Some(name)) = (was, &old_name) {
                user.groups.remove(name);
            }
            if let (true, Some(name)) = (is, &new_name) {
                user.groups.insert(name.clone());
            }
            change.users.push(user);
        }
        Ok(())
    }
}

/// Runs `attempt` again (with fresh reads) when the store reports that a
/// record changed meanwhile.
async fn scim_retry<T, F, Fut>(mut attempt: F) -> Result<T, ScimError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ScimError>>,
{
    let mut last = None;
    for _ in 0..CONFLICT_RETRIES {
        match attempt().await {
            Err(e) if e.status == 409 && e.scim_type.is_none() => {
                tracing::debug!(error = %e, "SCIM write conflict; retrying");
                last = Some(e);
                tokio::task::yield_now().await;
            }
            other => return other,
        }
    }
    Err(last.unwrap_or_else(|| ScimError::conflict("the resource kept changing; try again")))
}
