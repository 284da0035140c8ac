//! AWS IAM Identity Center: a permission set assigned on an account to a
//! user or group of the instance's identity store.
//!
//! - grant = `CreateAccountAssignment`, then `DescribeAccountAssignmentCreationStatus`
//!   until it succeeds or fails (the failure reason goes to the broker);
//! - revoke = `DeleteAccountAssignment`, then its deletion status;
//! - an assignment already there (grant) or already gone (revoke) is a
//!   success that says so, checked with `ListAccountAssignments` first;
//! - list = the assignments of the permission sets and accounts jitgate
//!   manages, mapped back to principal names.
//!
//! Principals: `group:NAME` is the group with that display name; anything
//! else is a user found by the configured attribute (email by default, or
//! user name, or external id).
//!
//! What a revoke ends: the assignment, so no new sign-in to that account
//! with that permission set. It does not end role sessions already issued
//! from it: those last until their own expiry (the permission set's session
//! duration, 1 h by default). When the workflow sets
//! `cap_session_duration`, a grant first lowers the permission set's
//! session duration to the window rounded up to whole hours (AWS allows
//! 1 h to 12 h) and provisions it; it never raises it. The permission set
//! is shared: the cap applies to everyone assigned it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_identitystore::types::{AlternateIdentifier, ExternalId, MemberId, UniqueAttribute};
use aws_sdk_ssoadmin::types::{
    AccountAssignmentOperationStatus, PermissionSetProvisioningStatus, PrincipalType, ProvisionTargetType,
    StatusValues, TargetType,
};
use aws_smithy_types::Document;
use jitgate_shared::v1::{ConfigId, Entitlement, Target};
use tokio::time::Instant;

use super::{call, check_account_id, poll_pause, unless};
use crate::provider::budget::{Budget, Priority};
use crate::provider::cache::TtlCache;
use crate::provider::{Effect, Provider, ProviderError, Window};

/// How a user principal is found in the identity store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalAttribute {
    UserName,
    Email,
    /// An external id from this issuer (as SCIM provisioning sets it).
    ExternalId {
        issuer: String,
    },
}

#[derive(Debug, Clone)]
pub struct IdentityCenterSettings {
    /// The instance; `None` uses the only one the account has.
    pub instance_arn: Option<String>,
    pub principal_attribute: PrincipalAttribute,
    /// Longest wait for an assignment operation to finish.
    pub operation_timeout: Duration,
}

/// Prefix of group principals.
pub const GROUP_PREFIX: &str = "group:";

const NOT_FOUND: &str = "ResourceNotFoundException";

/// How long a looked-up principal or permission set id is trusted.
const CACHE_TTL: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PrincipalRef {
    kind: PrincipalType,
    id: String,
}

#[derive(Debug)]
pub struct IdentityCenter {
    configuration: ConfigId,
    settings: IdentityCenterSettings,
    admin: aws_sdk_ssoadmin::Client,
    store: aws_sdk_identitystore::Client,
    instance_arn: String,
    identity_store_id: String,
    budget: std::sync::Arc<Budget>,
    principals: TtlCache<PrincipalRef>,
    names: Mutex<HashMap<PrincipalRef, String>>,
    permission_sets: TtlCache<String>,
}

impl IdentityCenter {
    /// Connects and checks, before any command arrives, that the instance
    /// is reachable and its identity store readable; the error names what
    /// is wrong.
    pub async fn connect(
        configuration: ConfigId,
        sdk: &SdkConfig,
        settings: IdentityCenterSettings,
        budget: std::sync::Arc<Budget>,
    ) -> Result<Self, ProviderError> {
        let admin = aws_sdk_ssoadmin::Client::new(sdk);
        let store = aws_sdk_identitystore::Client::new(sdk);
        let instances = call(&budget, Priority::Grant, "Identity Center ListInstances", || {
            admin.list_instances().send()
        })
        .await
        .map_err(|e| ProviderError::permanent(format!("Identity Center is not reachable: {}", e.error)))?;
        let found: Vec<_> = instances
            .instances()
            .iter()
            .filter(|i| {
                settings
                    .instance_arn
                    .as_deref()
                    .is_none_or(|want| i.instance_arn() == Some(want))
            })
            .collect();
        let instance =
            match (found.as_slice(), &settings.instance_arn) {
                ([one], _) => *one,
                ([], Some(want)) => {
                    return Err(ProviderError::permanent(format!(
                        "Identity Center instance {want} not found in this account"
                    )))
                }
                ([], None) => {
                    return Err(ProviderError::permanent(
                        "this account has no Identity Center instance",
                    ))
                }
                (_, _) => return Err(ProviderError::permanent(
                    "this account has several Identity Center instances: choose one with --aws-instance-arn",
                )),
            };
        let (Some(instance_arn), Some(identity_store_id)) =
            (instance.instance_arn(), instance.identity_store_id())
        else {
            return Err(ProviderError::permanent(
                "Identity Center returned an instance without ARN or identity store",
            ));
        };
        let (instance_arn, identity_store_id) = (instance_arn.to_owned(), identity_store_id.to_owned());
        call(&budget, Priority::Grant, "identity store ListUsers", || {
            store
                .list_users()
                .identity_store_id(&identity_store_id)
                .max_results(1)
                .send()
        })
        .await
        .map_err(|e| {
            ProviderError::permanent(format!(
                "identity store {identity_store_id} is not readable: {}",
                e.error
            ))
        })?;
        tracing::info!(%instance_arn, %identity_store_id, "Identity Center reachable");
        Ok(Self {
            configuration,
            settings,
            admin,
            store,
            instance_arn,
            identity_store_id,
            budget,
            principals: TtlCache::new(CACHE_TTL),
            names: Mutex::new(HashMap::new()),
            permission_sets: TtlCache::new(CACHE_TTL),
        })
    }

    fn target_of<'a>(&self, e: &'a Entitlement) -> Result<(&'a str, &'a str), ProviderError> {
        crate::provider::check_configuration(&self.configuration, e)?;
        match &e.target {
            Target::AwsAccountAssignment {
                account_id,
                permission_set,
            } => {
                check_account_id(account_id)?;
                Ok((account_id, permission_set))
            }
            other => Err(ProviderError::permanent(format!(
                "Identity Center cannot realise {}",
                other.describe()
            ))),
        }
    }

    /// The principal's id and kind in the identity store; `None` if the
    /// store has no such principal.
    async fn principal(&self, name: &str, priority: Priority) -> Result<Option<PrincipalRef>, ProviderError> {
        if let Some(p) = self.principals.get(name) {
            return Ok(Some(p));
        }
        let found = match name.strip_prefix(GROUP_PREFIX) {
            Some(group) => {
                let id = AlternateIdentifier::UniqueAttribute(unique("displayName", group)?);
                let out = call(&self.budget, priority, "identity store GetGroupId", || {
                    self.store
                        .get_group_id()
                        .identity_store_id(&self.identity_store_id)
                        .alternate_identifier(id)
                        .send()
                })
                .await;
                let Some(o) = unless(out, NOT_FOUND)? else {
                    return Ok(None);
                };
                PrincipalRef {
                    kind: PrincipalType::Group,
                    id: o.group_id().to_owned(),
                }
            }
            None => {
                let id = match &self.settings.principal_attribute {
                    PrincipalAttribute::UserName => {
                        AlternateIdentifier::UniqueAttribute(unique("userName", name)?)
                    }
                    PrincipalAttribute::Email => {
                        AlternateIdentifier::UniqueAttribute(unique("emails.value", name)?)
                    }
                    PrincipalAttribute::ExternalId { issuer } => AlternateIdentifier::ExternalId(
                        ExternalId::builder()
                            .issuer(issuer)
                            .id(name)
                            .build()
                            .map_err(|e| ProviderError::permanent(e.to_string()))?,
                    ),
                };
                let out = call(&self.budget, priority, "identity store GetUserId", || {
                    self.store
                        .get_user_id()
                        .identity_store_id(&self.identity_store_id)
                        .alternate_identifier(id)
                        .send()
                })
                .await;
                let Some(o) = unless(out, NOT_FOUND)? else {
                    return Ok(None);
                };
                PrincipalRef {
                    kind: PrincipalType::User,
                    id: o.user_id().to_owned(),
                }
            }
        };
        self.principals.insert(name, found.clone());
        if let Ok(mut m) = self.names.lock() {
            m.insert(found.clone(), name.to_owned());
        }
        Ok(Some(found))
    }

    /// As [`principal`](Self::principal), a missing one being an error
    /// that names it.
    async fn existing_principal(
        &self,
        name: &str,
        priority: Priority,
    ) -> Result<PrincipalRef, ProviderError> {
        self.principal(name, priority).await?.ok_or_else(|| {
            let how = match &self.settings.principal_attribute {
                _ if name.starts_with(GROUP_PREFIX) => "group display name".to_owned(),
                PrincipalAttribute::UserName => "user name".to_owned(),
                PrincipalAttribute::Email => "email".to_owned(),
                PrincipalAttribute::ExternalId { issuer } => format!("external id from {issuer}"),
            };
            ProviderError::permanent(format!(
                "no principal `{name}` (by {how}) in identity store {}",
                self.identity_store_id
            ))
        })
    }

    /// The name the broker uses for a principal id found in an assignment.
    async fn name_of(&self, p: &PrincipalRef) -> Result<Option<String>, ProviderError> {
        if let Some(name) = self.names.lock().ok().and_then(|m| m.get(p).cloned()) {
            return Ok(Some(name));
        }
        let name = match p.kind {
            PrincipalType::Group => {
                let out = call(
                    &self.budget,
                    Priority::Grant,
                    "identity store DescribeGroup",
                    || {
                        self.store
                            .describe_group()
                            .identity_store_id(&self.identity_store_id)
                            .group_id(&p.id)
                            .send()
                    },
                )
                .await?;
                out.display_name().map(|n| format!("{GROUP_PREFIX}{n}"))
            }
            _ => {
                let out = call(
                    &self.budget,
                    Priority::Grant,
                    "identity store DescribeUser",
                    || {
                        self.store
                            .describe_user()
                            .identity_store_id(&self.identity_store_id)
                            .user_id(&p.id)
                            .send()
                    },
                )
                .await?;
                match &self.settings.principal_attribute {
                    PrincipalAttribute::UserName => out.user_name().map(str::to_owned),
                    PrincipalAttribute::Email => {
                        let emails = out.emails();
                        emails
                            .iter()
                            .find(|e| e.primary())
                            .or(emails.first())
                            .and_then(|e| e.value())
                            .map(str::to_owned)
                    }
                    PrincipalAttribute::ExternalId { issuer } => out
                        .external_ids()
                        .iter()
                        .find(|x| x.issuer() == issuer)
                        .map(|x| x.id().to_owned()),
                }
            }
        };
        if let (Some(n), Ok(mut m)) = (&name, self.names.lock()) {
            m.insert(p.clone(), n.clone());
        }
        Ok(name)
    }

    /// A permission set's ARN from its name or ARN, checked to exist.
    async fn permission_set(&self, name_or_arn: &str, priority: Priority) -> Result<String, ProviderError> {
        if let Some(arn) = self.permission_sets.get(name_or_arn) {
            return Ok(arn);
        }
        let mut found = HashMap::new();
        if name_or_arn.starts_with("arn:") {
            let out = call(
                &self.budget,
                priority,
                "Identity Center DescribePermissionSet",
                || {
                    self.admin
                        .describe_permission_set()
                        .instance_arn(&self.instance_arn)
                        .permission_set_arn(name_or_arn)
                        .send()
                },
            )
            .await;
            match out {
                Ok(_) => {
                    found.insert(name_or_arn.to_owned(), name_or_arn.to_owned());
                }
                Err(e) if e.is(NOT_FOUND) => {}
                Err(e) => return Err(e.error),
            }
        } else {
            // Names are not an API key: list the instance's permission sets
            // and learn every name at once.
            let mut next: Option<String> = None;
            loop {
                let out = call(
                    &self.budget,
                    priority,
                    "Identity Center ListPermissionSets",
                    || {
                        self.admin
                            .list_permission_sets()
                            .instance_arn(&self.instance_arn)
                            .set_next_token(next.clone())
                            .send()
                    },
                )
                .await?;
                for arn in out.permission_sets() {
                    let described = call(
                        &self.budget,
                        priority,
                        "Identity Center DescribePermissionSet",
                        || {
                            self.admin
                                .describe_permission_set()
                                .instance_arn(&self.instance_arn)
                                .permission_set_arn(arn)
                                .send()
                        },
                    )
                    .await?;
                    if let Some(name) = described.permission_set().and_then(|p| p.name()) {
                        found.insert(name.to_owned(), arn.clone());
                    }
                }
                next = out.next_token().map(str::to_owned);
                if next.is_none() {
                    break;
                }
            }
        }
        let arn = found.get(name_or_arn).cloned();
        for (k, v) in found {
            self.permission_sets.insert(k, v);
        }
        arn.ok_or_else(|| {
            ProviderError::permanent(format!(
                "no permission set `{name_or_arn}` in Identity Center instance {}",
                self.instance_arn
            ))
        })
    }

    /// Whether `user` is a member of any of `groups`.
    async fn member_of_any(&self, user: &str, groups: &[String]) -> Result<bool, ProviderError> {
        // IsMemberInGroups takes at most 100 groups a call.
        for chunk in groups.chunks(100) {
            let out = call(
                &self.budget,
                Priority::Grant,
                "identity store IsMemberInGroups",
                || {
                    self.store
                        .is_member_in_groups()
                        .identity_store_id(&self.identity_store_id)
                        .member_id(MemberId::UserId(user.to_owned()))
                        .set_group_ids(Some(chunk.to_vec()))
                        .send()
                },
            )
            .await?;
            if out.results().iter().any(|r| r.membership_exists()) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Who holds `permission_set_arn` on `account` now.
    async fn assignments(
        &self,
        account: &str,
        permission_set_arn: &str,
        priority: Priority,
    ) -> Result<HashSet<PrincipalRef>, ProviderError> {
        let mut held = HashSet::new();
        let mut next: Option<String> = None;
        loop {
            let out = call(
                &self.budget,
                priority,
                "Identity Center ListAccountAssignments",
                || {
                    self.admin
                        .list_account_assignments()
                        .instance_arn(&self.instance_arn)
                        .account_id(account)
                        .permission_set_arn(permission_set_arn)
                        .set_next_token(next.clone())
                        .send()
                },
            )
            .await?;
            for a in out.account_assignments() {
                if let (Some(kind), Some(id)) = (a.principal_type(), a.principal_id()) {
                    held.insert(PrincipalRef {
                        kind: kind.clone(),
                        id: id.to_owned(),
                    });
                }
            }
            next = out.next_token().map(str::to_owned);
            if next.is_none() {
                return Ok(held);
            }
        }
    }

    /// Follows a long-running operation from the status its call returned
    /// until it is final, polling with `describe` (by request id) while it
    /// is in progress. `what` names the operation in errors.
    async fn until_final<F, Fut>(
        &self,
        what: &str,
        first: Option<OpStatus>,
        describe: F,
    ) -> Result<(), ProviderError>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<Option<OpStatus>, ProviderError>>,
    {
        let started = Instant::now();
        let mut attempt_no = 0;
        let mut status = first;
        loop {
            let current = status.unwrap_or_default();
            match current.status {
                Some(StatusValues::Succeeded) => return Ok(()),
                Some(StatusValues::Failed) => {
                    let reason = current.failure_reason.as_deref().unwrap_or("no reason given");
                    return Err(ProviderError::permanent(format!("{what} failed: {reason}")));
                }
                _ => {}
            }
            let Some(request) = current.request_id else {
                return Err(ProviderError::transient(
                    format!("{what}: AWS returned no request id"),
                    None,
                ));
            };
            if started.elapsed() > self.settings.operation_timeout {
                return Err(ProviderError::transient(
                    format!(
                        "{what} ({request}) still in progress after {:?}",
                        self.settings.operation_timeout
                    ),
                    None,
                ));
            }
            tokio::time::sleep(poll_pause(attempt_no)).await;
            attempt_no += 1;
            status = describe(request).await?;
        }
    }
}

/// Where a long-running Identity Center operation stands.
#[derive(Debug, Default)]
struct OpStatus {
    status: Option<StatusValues>,
    failure_reason: Option<String>,
    request_id: Option<String>,
}

impl From<AccountAssignmentOperationStatus> for OpStatus {
    fn from(s: AccountAssignmentOperationStatus) -> Self {
        Self {
            status: s.status,
            failure_reason: s.failure_reason,
            request_id: s.request_id,
        }
    }
}

impl From<PermissionSetProvisioningStatus> for OpStatus {
    fn from(s: PermissionSetProvisioningStatus) -> Self {
        Self {
            status: s.status,
            failure_reason: s.failure_reason,
            request_id: s.request_id,
        }
    }
}

impl IdentityCenter {
    /// Lowers the permission set's session duration to what is left of
    /// the window (whole hours, at least one), then provisions it.
    async fn cap_session(
        &self,
        arn: &str,
        until: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), ProviderError> {
        let p = Priority::Grant;
        let described = call(&self.budget, p, "Identity Center DescribePermissionSet", || {
            self.admin
                .describe_permission_set()
                .instance_arn(&self.instance_arn)
                .permission_set_arn(arn)
                .send()
        })
        .await?;
        let current = described
            .permission_set()
            .and_then(|s| s.session_duration())
            .and_then(parse_iso_duration)
            .unwrap_or(Duration::from_secs(3600));
        let left = (until - crate::clock::now()).to_std().unwrap_or_default();
        let want = session_cap(left);
        if current <= want {
            return Ok(());
        }
        let hours = want.as_secs() / 3600;
        call(&self.budget, p, "Identity Center UpdatePermissionSet", || {
            self.admin
                .update_permission_set()
                .instance_arn(&self.instance_arn)
                .permission_set_arn(arn)
                .session_duration(format!("PT{hours}H"))
                .send()
        })
        .await?;
        let out = call(&self.budget, p, "Identity Center ProvisionPermissionSet", || {
            self.admin
                .provision_permission_set()
                .instance_arn(&self.instance_arn)
                .permission_set_arn(arn)
                .target_type(ProvisionTargetType::AllProvisionedAccounts)
                .send()
        })
        .await?;
        let what = format!("provisioning permission set {arn} with a {hours} h session");
        self.until_final(
            &what,
            out.permission_set_provisioning_status.map(Into::into),
            |request| async move {
                let out = call(
                    &self.budget,
                    p,
                    "Identity Center DescribePermissionSetProvisioningStatus",
                    || {
                        self.admin
                            .describe_permission_set_provisioning_status()
                            .instance_arn(&self.instance_arn)
                            .provision_permission_set_request_id(request)
                            .send()
                    },
                )
                .await?;
                Ok(out.permission_set_provisioning_status.map(Into::into))
            },
        )
        .await?;
        tracing::info!(permission_set = arn, from = ?current, to_hours = hours, "session duration capped to the grant window");
        Ok(())
    }
}

/// The session duration for a window with `left` to run: whole hours,
/// rounded up, within the 1 h to 12 h AWS allows.
pub fn session_cap(left: Duration) -> Duration {
    let hours = left.as_secs().div_ceil(3600).clamp(1, 12);
    Duration::from_secs(hours * 3600)
}

/// An ISO 8601 duration of hours, minutes and seconds (`PT1H`, `PT2H30M`),
/// as Identity Center writes session durations.
pub fn parse_iso_duration(s: &str) -> Option<Duration> {
    let mut rest = s.strip_prefix("PT")?;
    let mut total = 0u64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let n: u64 = rest[..digits].parse().ok()?;
        let unit = match rest[digits..].chars().next()? {
            'H' => 3600,
            'M' => 60,
            'S' => 1,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
        rest = &rest[digits + 1..];
    }
    Some(Duration::from_secs(total))
}

fn unique(path: &str, value: &str) -> Result<UniqueAttribute, ProviderError> {
    UniqueAttribute::builder()
        .attribute_path(path)
        .attribute_value(Document::String(value.to_owned()))
        .build()
        .map_err(|e| ProviderError::permanent(e.to_string()))
}

#[async_trait]
impl Provider for IdentityCenter {
    fn capabilities(&self) -> BTreeSet<String> {
        ["aws_account_assignment".to_owned(), "list".to_owned()].into()
    }

    async fn apply(&self, e: &Entitlement) -> Result<Effect, ProviderError> {
        let p = Priority::Grant;
        let (account, permission_set) = self.target_of(e)?;
        let arn = self.permission_set(permission_set, p).await?;
        let who = self.existing_principal(&e.principal, p).await?;
        let held = self.assignments(account, &arn, p).await?;
        if held.contains(&who) {
            return Ok(Effect::Unchanged);
        }
        let _slot = self.budget.operation(p).await;
        let out = call(&self.budget, p, "Identity Center CreateAccountAssignment", || {
            self.admin
                .create_account_assignment()
                .instance_arn(&self.instance_arn)
                .target_id(account)
                .target_type(TargetType::AwsAccount)
                .permission_set_arn(&arn)
                .principal_type(who.kind.clone())
                .principal_id(&who.id)
                .send()
        })
        .await?;
        let first = out.account_assignment_creation_status.map(Into::into);
        self.until_final(
            "Identity Center creation of the assignment",
            first,
            |request| async move {
                let out = call(
                    &self.budget,
                    p,
                    "Identity Center DescribeAccountAssignmentCreationStatus",
                    || {
                        self.admin
                            .describe_account_assignment_creation_status()
                            .instance_arn(&self.instance_arn)
                            .account_assignment_creation_request_id(request)
                            .send()
                    },
                )
                .await?;
                Ok(out.account_assignment_creation_status.map(Into::into))
            },
        )
        .await?;
        Ok(Effect::Changed)
    }

    async fn apply_for(&self, e: &Entitlement, window: &Window) -> Result<Effect, ProviderError> {
        if window.cap_session_duration {
            let (_, permission_set) = self.target_of(e)?;
            let arn = self.permission_set(permission_set, Priority::Grant).await?;
            self.cap_session(&arn, window.until).await?;
        }
        self.apply(e).await
    }

    async fn remove(&self, e: &Entitlement) -> Result<Effect, ProviderError> {
        let p = Priority::Revoke;
        let (account, permission_set) = self.target_of(e)?;
        let arn = self.permission_set(permission_set, p).await?;
        // A principal deleted from the directory holds nothing.
        let Some(who) = self.principal(&e.principal, p).await? else {
            return Ok(Effect::Unchanged);
        };
        let held = self.assignments(account, &arn, p).await?;
        if !held.contains(&who) {
            return Ok(Effect::Unchanged);
        }
        let _slot = self.budget.operation(p).await;
        let out = call(&self.budget, p, "Identity Center DeleteAccountAssignment", || {
            self.admin
                .delete_account_assignment()
                .instance_arn(&self.instance_arn)
                .target_id(account)
                .target_type(TargetType::AwsAccount)
                .permission_set_arn(&arn)
                .principal_type(who.kind.clone())
                .principal_id(&who.id)
                .send()
        })
        .await;
        let out = match out {
            Ok(out) => out,
            // Gone between the check and the call.
            Err(err) if err.is(NOT_FOUND) => return Ok(Effect::Unchanged),
            Err(err) => return Err(err.error),
        };
        let first = out.account_assignment_deletion_status.map(Into::into);
        self.until_final(
            "Identity Center deletion of the assignment",
            first,
            |request| async move {
                let out = call(
                    &self.budget,
                    p,
                    "Identity Center DescribeAccountAssignmentDeletionStatus",
                    || {
                        self.admin
                            .describe_account_assignment_deletion_status()
                            .instance_arn(&self.instance_arn)
                            .account_assignment_deletion_request_id(request)
                            .send()
                    },
                )
                .await?;
                Ok(out.account_assignment_deletion_status.map(Into::into))
            },
        )
        .await?;
        Ok(Effect::Changed)
    }

    async fn list(&self, targets: &[Target]) -> Result<Vec<Entitlement>, ProviderError> {
        let mut found = Vec::new();
        for target in targets {
            let Target::AwsAccountAssignment {
                account_id,
                permission_set,
            } = target
            else {
                continue;
            };
            let arn = match self.permission_set(permission_set, Priority::Grant).await {
                Ok(arn) => arn,
                Err(e) if !e.retryable => {
                    tracing::warn!(error = %e, "a managed permission set is missing; nothing to list for it");
                    continue;
                }
                Err(e) => return Err(e),
            };
            for who in self.assignments(account_id, &arn, Priority::Grant).await? {
                if let Some(principal) = self.name_of(&who).await? {
                    found.push(Entitlement {
                        configuration: self.configuration.clone(),
                        target: target.clone(),
                        principal,
                    });
                }
            }
        }
        Ok(found)
    }

    /// Assigned to the user directly, or to a group the user belongs to
    /// (a group a directory provisions, for federated elevations).
    async fn holds(&self, entitlement: &Entitlement) -> Result<bool, ProviderError> {
        crate::provider::check_configuration(&self.configuration, entitlement)?;
        let (account_id, permission_set) = match &entitlement.target {
            Target::AwsAccountAssignment {
                account_id,
                permission_set,
            } => (account_id, permission_set),
            other => {
                return Err(ProviderError::permanent(format!(
                    "Identity Center does not hold {}",
                    other.describe()
                )))
            }
        };
        check_account_id(account_id)?;
        let Some(principal) = self.principal(&entitlement.principal, Priority::Grant).await? else {
            return Ok(false);
        };
        let arn = self.permission_set(permission_set, Priority::Grant).await?;
        let held = self.assignments(account_id, &arn, Priority::Grant).await?;
        if held.contains(&principal) {
            return Ok(true);
        }
        if principal.kind != PrincipalType::User {
            return Ok(false);
        }
        let groups: Vec<String> = held
            .into_iter()
            .filter(|p| p.kind == PrincipalType::Group)
            .map(|p| p.id)
            .collect();
        self.member_of_any(&principal.id, &groups).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_durations_as_identity_center_writes_them() {
        assert_eq!(parse_iso_duration("PT1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_iso_duration("PT2H30M"), Some(Duration::from_secs(9000)));
        assert_eq!(parse_iso_duration("PT45M10S"), Some(Duration::from_secs(2710)));
        for bad in ["", "PT", "P1D", "1H", "PTH", "PT1X", "PT99999999999999999999H"] {
            assert_eq!(parse_iso_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn session_caps_round_up_to_hours_within_what_aws_allows() {
        let h = |n: u64| Duration::from_secs(n * 3600);
        assert_eq!(session_cap(Duration::from_secs(60)), h(1));
        assert_eq!(session_cap(Duration::ZERO), h(1));
        assert_eq!(session_cap(h(2)), h(2));
        assert_eq!(session_cap(h(2) + Duration::from_secs(1)), h(3));
        assert_eq!(session_cap(h(100)), h(12));
    }
}
