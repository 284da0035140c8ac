//! Entra ID through Microsoft Graph.
//!
//! - `entra_group_membership`: a direct member of a security group
//!   (`POST /groups/{id}/members/$ref`, `DELETE .../members/{id}/$ref`);
//!   "already a member" and "not a member" are successes that say so;
//! - `entra_directory_role`: an active directory-role assignment made by a
//!   `roleAssignmentScheduleRequest` whose expiration is the grant window's
//!   end, so Entra also ends the elevation by itself should every revoke
//!   fail; a longer window (an extension) updates the expiration;
//! - `entra_pim_group`: the same for PIM for Groups
//!   (`privilegedAccess/group/assignmentScheduleRequests`, member or owner),
//!   for groups that Privileged Identity Management manages;
//! - list = members of the managed groups, active role and PIM group
//!   assignments, mapped back to the broker's principal names.
//!
//! Principals are users, named by object id, user principal name, or mail
//! (tried in that order: a GUID is an object id; otherwise the user
//! principal name, then the first user with that mail).
//!
//! Eventual consistency: an object created moments ago may not be visible
//! to every Graph replica yet. A lookup that finds nothing, or a write that
//! answers 404, is retried with backoff for up to `replication_wait`, then
//! fails naming what is missing.
//!
//! What a revoke ends: the membership or assignment, so no new token
//! carries it. Tokens already issued keep their claims until they expire
//! (about an hour). With the workflow's `end_sign_in_sessions`, the revoke
//! also calls `revokeSignInSessions` for the user, which invalidates their
//! refresh tokens and browser session cookies, so apps must send them back
//! to sign in; access tokens already issued still live until they expire.

pub mod certificate;
pub mod credential;
pub mod graph;
pub mod models;

use crate::clock::{Clock, SystemClock};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use jitgate_shared::v1::{ConfigId, Entitlement, Target};
use reqwest::StatusCode;
use tokio::time::Instant;

use self::credential::EntraCredentialSettings;
use self::graph::{Graph, GraphFailure, GraphSettings};
use jitgate_shared::v1::signing::ProvisionOnDemand;

use self::models::{
    ApplicationParameters, BooleanValue, DirectoryObject, Expiration, JobSubject, LinkedObjects, Page,
    ProvisionOnDemandBody, Reference, RequestSchedule, ScheduleAction, ScheduleInstance, ScheduleRequest,
    ScheduleRequestResult, ScheduleResource, StringKeyStringValuePair,
};
use super::budget::{Budget, BudgetSettings, Priority};
use super::cache::TtlCache;
use super::{check_configuration, Effect, Ending, Provider, ProviderError, Window};

#[derive(Debug, Clone)]
pub struct EntraSettings {
    pub credential: EntraCredentialSettings,
    pub graph: GraphSettings,
    pub budget: BudgetSettings,
    /// Longest wait for a just-created object to become visible.
    pub replication_wait: Duration,
}

/// How long a looked-up user id is trusted.
const CACHE_TTL: Duration = Duration::from_secs(300);

pub struct Entra {
    configuration: ConfigId,
    tenant: String,
    graph: Graph,
    replication_wait: Duration,
    /// Principal name → (object id, when looked up).
    principals: TtlCache<String>,
    /// Object id → the name the broker uses for it.
    names: Mutex<HashMap<String, String>>,
}

impl std::fmt::Debug for Entra {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entra")
            .field("configuration", &self.configuration)
            .field("tenant", &self.tenant)
            .field("graph", &self.graph)
            .finish()
    }
}

/// Which kind of schedule an entitlement is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Schedules {
    DirectoryRoles,
    PimGroups,
}

impl Schedules {
    fn requests(self) -> &'static [&'static str] {
        match self {
            Schedules::DirectoryRoles => &["roleManagement", "directory", "roleAssignmentScheduleRequests"],
            Schedules::PimGroups => &[
                "identityGovernance",
                "privilegedAccess",
                "group",
                "assignmentScheduleRequests",
            ],
        }
    }

    fn instances(self) -> &'static [&'static str] {
        match self {
            Schedules::DirectoryRoles => &["roleManagement", "directory", "roleAssignmentScheduleInstances"],
            Schedules::PimGroups => &[
                "identityGovernance",
                "privilegedAccess",
                "group",
                "assignmentScheduleInstances",
            ],
        }
    }
}

/// An entitlement as Graph sees it.
enum Kind {
    Member { group_id: String },
    Schedule(Schedules, ScheduleResource),
}

fn kind(target: &Target) -> Result<Kind, ProviderError> {
    Ok(match target {
        Target::EntraGroupMembership { group_id } => Kind::Member {
            group_id: group_id.clone(),
        },
        Target::EntraDirectoryRole {
            role_definition_id,
            directory_scope_id,
        } => Kind::Schedule(
            Schedules::DirectoryRoles,
            ScheduleResource::DirectoryRole {
                role_definition_id: role_definition_id.clone(),
                directory_scope_id: directory_scope_id.clone(),
            },
        ),
        Target::EntraPimGroup { group_id, access } => Kind::Schedule(
            Schedules::PimGroups,
            ScheduleResource::Group {
                group_id: group_id.clone(),
                access_id: access.access_id(),
            },
        ),
        other => {
            return Err(ProviderError::rejected(format!(
                "the entra provider does not handle {}",
                other.describe()
            )))
        }
    })
}

/// Backoff while an object replicates: 100 ms doubling to 2 s, for up to
/// the configured wait in all.
struct ReplicationWait {
    started: Instant,
    pause: Duration,
    limit: Duration,
}

impl ReplicationWait {
    fn new(limit: Duration) -> Self {
        Self {
            started: Instant::now(),
            pause: Duration::from_millis(100),
            limit,
        }
    }

    /// Sleeps the next pause and returns true, or returns false when that
    /// would go past the limit.
    async fn pause(&mut self) -> bool {
        if self.started.elapsed() + self.pause > self.limit {
            return false;
        }
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(Duration::from_secs(2));
        true
    }
}

/// A GUID: 8-4-4-4-12 hex digits.
fn is_object_id(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts.iter().zip([8, 4, 4, 4, 12]).all(|(p, n)| p.len() == n)
        && s.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit())
}

/// The window's end in whole seconds, rounded up: Graph takes at most
/// seven fractional digits, and Entra must not end the elevation early.
fn whole_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    let secs = t.timestamp() + i64::from(t.timestamp_subsec_nanos() > 0);
    DateTime::from_timestamp(secs, 0).unwrap_or(t)
}

/// An OData string literal: single quotes doubled.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

impl Entra {
    /// Builds the credential and checks, before any command arrives, that
    /// it gets a Graph token; the error names the credential and tenant.
    pub async fn connect(configuration: ConfigId, settings: EntraSettings) -> Result<Self, ProviderError> {
        let credential = credential::credential(&settings.credential)?;
        let http = credential::http_client(&settings.credential, settings.graph.timeout)?;
        let budget = Arc::new(Budget::new(settings.budget));
        let graph = Graph::new(&settings.graph, http, credential.clone(), budget)?;
        credential::check(credential.as_ref(), graph.scope(), &settings.credential).await?;
        Ok(Self::with_graph(
            configuration,
            settings.credential.tenant_id,
            graph,
            settings.replication_wait,
        ))
    }

    pub fn with_graph(
        configuration: ConfigId,
        tenant: String,
        graph: Graph,
        replication_wait: Duration,
    ) -> Self {
        Self {
            configuration,
            tenant,
            graph,
            replication_wait,
            principals: TtlCache::new(CACHE_TTL),
            names: Mutex::new(HashMap::new()),
        }
    }

    pub fn budget(&self) -> &Budget {
        self.graph.budget()
    }

    /// Retries `f` while Graph answers 404, for up to the replication wait.
    async fn through_replication<T, F, Fut>(&self, mut f: F) -> Result<T, GraphFailure>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, GraphFailure>>,
    {
        let mut wait = ReplicationWait::new(self.replication_wait);
        loop {
            match f().await {
                Err(e) if e.not_found() => {
                    tracing::debug!(error = %e.error, "not visible yet; waiting for replication");
                    if !wait.pause().await {
                        return Err(e);
                    }
                }
                other => return other,
            }
        }
    }

    /// The user's object id, or `None` when no user has that name.
    async fn find_user(&self, principal: &str, priority: Priority) -> Result<Option<String>, GraphFailure> {
        if let Some(id) = self.principals.get(principal) {
            return Ok(Some(id));
        }
        let what = format!("Entra user {principal}");
        let mut url = self.graph.url(&["users", principal]);
        url.query_pairs_mut()
            .append_pair("$select", "id,userPrincipalName,mail");
        let found = match self.graph.get::<DirectoryObject>(priority, &what, url).await {
            Ok(user) => Some(user.id),
            Err(e) if e.not_found() && !is_object_id(principal) && principal.contains('@') => {
                let mut url = self.graph.url(&["users"]);
                url.query_pairs_mut()
                    .append_pair("$filter", &format!("mail eq {}", literal(principal)))
                    .append_pair("$select", "id,userPrincipalName,mail");
                let page: Page<DirectoryObject> = self.graph.get(priority, &what, url).await?;
                page.value.into_iter().next().map(|u| u.id)
            }
            Err(e) if e.not_found() || e.status == Some(StatusCode::BAD_REQUEST) => None,
            Err(e) => return Err(e),
        };
        if let Some(id) = &found {
            self.principals.insert(principal, id.clone());
            if let Ok(mut n) = self.names.lock() {
                n.insert(id.clone(), principal.to_owned());
            }
        }
        Ok(found)
    }

    /// The user's object id for a grant, waiting out replication.
    async fn user_for_grant(&self, principal: &str) -> Result<String, ProviderError> {
        let mut wait = ReplicationWait::new(self.replication_wait);
        loop {
            if let Some(id) = self.find_user(principal, Priority::Grant).await? {
                return Ok(id);
            }
            if !wait.pause().await {
                return Err(ProviderError::not_found(format!(
                    "no Entra user `{principal}` (by object id, user principal name or mail) in tenant {} \
                     (still missing after {:?}: a wrong name, or replication slower than --entra-replication-wait)",
                    self.tenant, self.replication_wait
                )));
            }
        }
    }

    fn name_of(&self, object: &DirectoryObject) -> String {
        self.names
            .lock()
            .ok()
            .and_then(|n| n.get(&object.id).cloned())
            .or_else(|| object.user_principal_name.clone())
            .unwrap_or_else(|| object.id.clone())
    }

    async fn add_member(&self, group_id: &str, user: &str) -> Result<Effect, ProviderError> {
        let url = self.graph.url(&["groups", group_id, "members", "$ref"]);
        let body = Reference {
            odata_id: self.graph.directory_object(user),
        };
        let what = format!("adding {user} to Entra group {group_id}");
        let result = self
            .through_replication(|| {
                self.graph
                    .post_no_content(Priority::Grant, &what, url.clone(), &body)
            })
            .await;
        match result {
            Ok(()) => Ok(Effect::Changed),
            Err(e) if e.member_already_present() => Ok(Effect::Unchanged),
            Err(e) if e.not_found() => Err(ProviderError::not_found(format!(
                "Entra group {group_id} not found in tenant {} (still missing after {:?}): {}",
                self.tenant, self.replication_wait, e.error
            ))),
            Err(e) => Err(e.into()),
        }
    }

    async fn remove_member(&self, group_id: &str, user: &str) -> Result<Effect, ProviderError> {
        let url = self.graph.url(&["groups", group_id, "members", user, "$ref"]);
        let what = format!("removing {user} from Entra group {group_id}");
        match self.graph.delete(Priority::Revoke, &what, url).await {
            Ok(()) => Ok(Effect::Changed),
            // Not a member, or the group is gone: nothing to remove.
            Err(e) if e.not_found() => Ok(Effect::Unchanged),
            Err(e) => Err(e.into()),
        }
    }

    /// The active assignment of `resource` to `principal_id`, if any.
    async fn active(
        &self,
        schedules: Schedules,
        resource: &ScheduleResource,
        principal_id: Option<&str>,
        priority: Priority,
    ) -> Result<Vec<ScheduleInstance>, GraphFailure> {
        let mut clauses = match resource {
            ScheduleResource::DirectoryRole {
                role_definition_id,
                directory_scope_id,
            } => vec![
                format!("roleDefinitionId eq {}", literal(role_definition_id)),
                format!("directoryScopeId eq {}", literal(directory_scope_id)),
            ],
            ScheduleResource::Group { group_id, access_id } => vec![
                format!("groupId eq {}", literal(group_id)),
                format!("accessId eq {}", literal(access_id)),
            ],
        };
        if let Some(p) = principal_id {
            clauses.push(format!("principalId eq {}", literal(p)));
        }
        let mut url = self.graph.url(schedules.instances());
        url.query_pairs_mut()
            .append_pair("$filter", &clauses.join(" and "));
        self.graph
            .all_pages(priority, &format!("listing {}", describe(resource)), url)
            .await
    }

    async fn request(
        &self,
        schedules: Schedules,
        action: ScheduleAction,
        resource: &ScheduleResource,
        principal_id: &str,
        until: Option<DateTime<Utc>>,
    ) -> Result<ScheduleRequestResult, GraphFailure> {
        let now = SystemClock.now();
        let schedule_info = (action != ScheduleAction::AdminRemove).then(|| RequestSchedule {
            start_date_time: DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now),
            expiration: match until {
                Some(end) => Expiration::AfterDateTime {
                    end_date_time: whole_seconds(end),
                },
                None => Expiration::NoExpiration,
            },
        });
        let justification = match until {
            Some(end) => format!(
                "jitgate: just-in-time access until {}",
                whole_seconds(end).to_rfc3339()
            ),
            None => "jitgate: just-in-time access".to_owned(),
        };
        let body = ScheduleRequest {
            action,
            principal_id: principal_id.to_owned(),
            resource: resource.clone(),
            justification,
            schedule_info,
        };
        let priority = if action == ScheduleAction::AdminRemove {
            Priority::Revoke
        } else {
            Priority::Grant
        };
        let what = format!("{action:?} of {} for {principal_id}", describe(resource));
        let url = self.graph.url(schedules.requests());
        let result: ScheduleRequestResult = self
            .through_replication(|| self.graph.post(priority, &what, url.clone(), &body))
            .await?;
        if !result.took_effect() {
            let reason = format!("{what}: request {} ended {}", result.id, result.status);
            return Err(GraphFailure {
                status: None,
                code: None,
                message: reason.clone(),
                error: ProviderError::rejected(reason),
            });
        }
        Ok(result)
    }

    async fn assign(
        &self,
        schedules: Schedules,
        resource: &ScheduleResource,
        principal_id: &str,
        until: Option<DateTime<Utc>>,
    ) -> Result<Effect, ProviderError> {
        let active = self
            .through_replication(|| self.active(schedules, resource, Some(principal_id), Priority::Grant))
            .await?;
        let action = match active.first() {
            None => ScheduleAction::AdminAssign,
            Some(a) => match (a.end_date_time, until) {
                (None, _) => return Ok(Effect::Unchanged),
                (Some(end), Some(until)) if end >= until => return Ok(Effect::Unchanged),
                // Ends before the window does (an extension): move its end.
                _ => ScheduleAction::AdminUpdate,
            },
        };
        match self
            .request(schedules, action, resource, principal_id, until)
            .await
        {
            Ok(_) => Ok(Effect::Changed),
            // Assigned meanwhile by someone else.
            Err(e) if e.is(StatusCode::BAD_REQUEST, "RoleAssignmentExists") => Ok(Effect::Unchanged),
            Err(e) if e.not_found() => Err(ProviderError::not_found(format!(
                "{} not found in tenant {}: {}",
                describe(resource),
                self.tenant,
                e.error
            ))),
            Err(e) => Err(e.into()),
        }
    }

    async fn unassign(
        &self,
        schedules: Schedules,
        resource: &ScheduleResource,
        principal_id: &str,
    ) -> Result<Effect, ProviderError> {
        match self
            .request(
                schedules,
                ScheduleAction::AdminRemove,
                resource,
                principal_id,
                None,
            )
            .await
        {
            Ok(_) => Ok(Effect::Changed),
            Err(e) if e.is(StatusCode::BAD_REQUEST, "RoleAssignmentDoesNotExist") || e.not_found() => {
                Ok(Effect::Unchanged)
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn end_sign_in_sessions(&self, principal: &str, user: &str) -> Result<(), ProviderError> {
        let url = self.graph.url(&["users", user, "revokeSignInSessions"]);
        let what = format!("revoking the sign-in sessions of {principal}");
        let answer: BooleanValue = self
            .graph
            .post(Priority::Revoke, &what, url, &serde_json::json!({}))
            .await?;
        if !answer.value {
            return Err(ProviderError::transport(format!("{what}: Graph answered false")));
        }
        tracing::info!(%principal, "sign-in sessions revoked");
        Ok(())
    }

    /// Asks the directory's provisioning job to provision `user`'s
    /// membership of `group_id` now. A failure is logged, not returned: the
    /// membership is in place and the next sync cycle provisions it anyway.
    async fn provision_on_demand(&self, p: &ProvisionOnDemand, group_id: &str, user: &str) {
        let url = self.graph.url(&[
            "servicePrincipals",
            &p.service_principal_id,
            "synchronization",
            "jobs",
            &p.job_id,
            "provisionOnDemand",
        ]);
        let body = ProvisionOnDemandBody {
            parameters: vec![ApplicationParameters {
                rule_id: p.rule_id.clone(),
                subjects: vec![JobSubject {
                    object_id: group_id.to_owned(),
                    object_type_name: "Group",
                    links: Some(LinkedObjects {
                        members: vec![JobSubject {
                            object_id: user.to_owned(),
                            object_type_name: "User",
                            links: None,
                        }],
                    }),
                }],
            }],
        };
        let what = format!(
            "provisioning {user} in group {group_id} on demand (job {})",
            p.job_id
        );
        match self
            .graph
            .post::<_, StringKeyStringValuePair>(Priority::Grant, &what, url, &body)
            .await
        {
            Ok(answer) => tracing::info!(%group_id, %user, key = ?answer.key, "provisioned on demand"),
            Err(e) => {
                tracing::warn!(error = %e.error, "provisioning on demand failed; the next sync cycle will provision it")
            }
        }
    }

    async fn apply_until(
        &self,
        entitlement: &Entitlement,
        until: Option<DateTime<Utc>>,
        provision: Option<&ProvisionOnDemand>,
    ) -> Result<Effect, ProviderError> {
        check_configuration(&self.configuration, entitlement)?;
        let kind = kind(&entitlement.target)?;
        let _slot = self.graph.budget().operation(Priority::Grant).await;
        let user = self.user_for_grant(&entitlement.principal).await?;
        match kind {
            Kind::Member { group_id } => {
                let effect = self.add_member(&group_id, &user).await?;
                if let Some(p) = provision {
                    self.provision_on_demand(p, &group_id, &user).await;
                }
                Ok(effect)
            }
            Kind::Schedule(schedules, resource) => self.assign(schedules, &resource, &user, until).await,
        }
    }
}

fn describe(resource: &ScheduleResource) -> String {
    match resource {
        ScheduleResource::DirectoryRole {
            role_definition_id,
            directory_scope_id,
        } => format!("Entra role {role_definition_id} at {directory_scope_id}"),
        ScheduleResource::Group { group_id, access_id } => format!("PIM group {group_id} ({access_id})"),
    }
}

#[async_trait]
impl Provider for Entra {
    fn capabilities(&self) -> BTreeSet<String> {
        [
            "entra_group_membership",
            "entra_pim_group",
            "entra_directory_role",
            "end_sign_in_sessions",
            "list",
        ]
        .into_iter()
        .map(String::from)
        .collect()
    }

    /// Without a window: a role or PIM assignment with no expiration.
    async fn apply(&self, entitlement: &Entitlement) -> Result<Effect, ProviderError> {
        self.apply_until(entitlement, None, None).await
    }

    async fn apply_for(&self, entitlement: &Entitlement, window: &Window) -> Result<Effect, ProviderError> {
        self.apply_until(
            entitlement,
            Some(window.until),
            window.provision_on_demand.as_ref(),
        )
        .await
    }

    async fn remove(&self, entitlement: &Entitlement) -> Result<Effect, ProviderError> {
        self.remove_for(entitlement, &Ending::default()).await
    }

    async fn remove_for(&self, entitlement: &Entitlement, ending: &Ending) -> Result<Effect, ProviderError> {
        check_configuration(&self.configuration, entitlement)?;
        let kind = kind(&entitlement.target)?;
        let _slot = self.graph.budget().operation(Priority::Revoke).await;
        let Some(user) = self.find_user(&entitlement.principal, Priority::Revoke).await? else {
            // No such user (deleted): nothing of theirs to remove.
            tracing::info!(principal = %entitlement.principal, "no such Entra user; nothing to remove");
            return Ok(Effect::Unchanged);
        };
        let effect = match kind {
            Kind::Member { group_id } => self.remove_member(&group_id, &user).await?,
            Kind::Schedule(schedules, resource) => self.unassign(schedules, &resource, &user).await?,
        };
        if ending.end_sign_in_sessions {
            self.end_sign_in_sessions(&entitlement.principal, &user).await?;
        }
        Ok(effect)
    }

    async fn list(&self, targets: &[Target]) -> Result<Vec<Entitlement>, ProviderError> {
        let mut found = Vec::new();
        for target in targets {
            let Ok(kind) = kind(target) else { continue };
            let principals: Vec<String> = match kind {
                Kind::Member { group_id } => {
                    let mut url = self.graph.url(&["groups", &group_id, "members"]);
                    url.query_pairs_mut()
                        .append_pair("$select", "id,userPrincipalName,mail")
                        .append_pair("$top", "999");
                    let members: Vec<DirectoryObject> = self
                        .graph
                        .all_pages(
                            Priority::Grant,
                            &format!("listing members of Entra group {group_id}"),
                            url,
                        )
                        .await?;
                    members.iter().map(|m| self.name_of(m)).collect()
                }
                Kind::Schedule(schedules, resource) => self
                    .active(schedules, &resource, None, Priority::Grant)
                    .await?
                    .into_iter()
                    .map(|a| {
                        self.name_of(&DirectoryObject {
                            id: a.principal_id,
                            user_principal_name: None,
                            mail: None,
                        })
                    })
                    .collect(),
            };
            found.extend(principals.into_iter().map(|principal| Entitlement {
                configuration: self.configuration.clone(),
                target: target.clone(),
                principal,
            }));
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_ids_are_guids() {
        assert!(is_object_id("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"));
        assert!(!is_object_id("alice@contoso.com"));
        assert!(!is_object_id("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeeg"));
        assert!(!is_object_id("aaaaaaaa-bbbb-cccc-dddd"));
    }

    #[test]
    fn window_ends_round_up_to_whole_seconds() {
        let t: DateTime<Utc> = "2026-01-01T10:00:00.25Z".parse().unwrap();
        assert_eq!(whole_seconds(t).to_rfc3339(), "2026-01-01T10:00:01+00:00");
        let t: DateTime<Utc> = "2026-01-01T10:00:00Z".parse().unwrap();
        assert_eq!(whole_seconds(t), t);
    }

    #[test]
    fn odata_literals_double_quotes() {
        assert_eq!(literal("o'brien@x"), "'o''brien@x'");
    }
}
