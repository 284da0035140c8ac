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
//!
//! `directory` finds principals in the identity store,
//! `permission_sets` finds permission sets and caps their sessions,
//! `operation` follows long-running operations to the end; this module
//! is the provider over them.

mod directory;
mod operation;
mod permission_sets;

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_ssoadmin::types::{PrincipalType, TargetType};
use jitgate_shared::v1::protocol::FailureKind;
use jitgate_shared::v1::{ConfigId, Entitlement, Target};

pub use directory::{PrincipalAttribute, GROUP_PREFIX};
pub use permission_sets::{parse_iso_duration, session_cap};

use super::{call, check_account_id};
use crate::provider::budget::{Budget, Priority};
use crate::provider::{Effect, Provider, ProviderError, Window};
use directory::{Directory, PrincipalRef};
use operation::until_final;
use permission_sets::PermissionSets;

#[derive(Debug, Clone)]
pub struct IdentityCenterSettings {
    /// The instance; `None` uses the only one the account has.
    pub instance_arn: Option<String>,
    pub principal_attribute: PrincipalAttribute,
    /// Longest wait for an assignment operation to finish.
    pub operation_timeout: Duration,
}

/// Identity Center's code for "no such thing".
const NOT_FOUND: &str = "ResourceNotFoundException";

/// How long a looked-up principal or permission set id is trusted.
const CACHE_TTL: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub struct IdentityCenter {
    configuration: ConfigId,
    settings: IdentityCenterSettings,
    admin: aws_sdk_ssoadmin::Client,
    instance_arn: String,
    budget: std::sync::Arc<Budget>,
    directory: Directory,
    permission_sets: PermissionSets,
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
        .map_err(|e| e.error.context("Identity Center is not reachable"))?;
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
                    return Err(ProviderError::not_found(format!(
                        "Identity Center instance {want} not found in this account"
                    )))
                }
                ([], None) => {
                    return Err(ProviderError::not_found(
                        "this account has no Identity Center instance",
                    ))
                }
                (_, _) => return Err(ProviderError::rejected(
                    "this account has several Identity Center instances: choose one with --aws-instance-arn",
                )),
            };
        let (Some(instance_arn), Some(identity_store_id)) =
            (instance.instance_arn(), instance.identity_store_id())
        else {
            return Err(ProviderError::rejected(
                "Identity Center returned an instance without ARN or identity store",
            ));
        };
        let instance_arn = instance_arn.to_owned();
        let directory = Directory::open(
            store,
            identity_store_id.to_owned(),
            settings.principal_attribute.clone(),
            budget.clone(),
        )
        .await?;
        tracing::info!(%instance_arn, identity_store_id = directory.id(), "Identity Center reachable");
        let permission_sets = PermissionSets::new(
            admin.clone(),
            instance_arn.clone(),
            budget.clone(),
            settings.operation_timeout,
        );
        Ok(Self {
            configuration,
            settings,
            admin,
            instance_arn,
            budget,
            directory,
            permission_sets,
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
            other => Err(ProviderError::rejected(format!(
                "Identity Center cannot realise {}",
                other.describe()
            ))),
        }
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
}

#[async_trait]
impl Provider for IdentityCenter {
    fn capabilities(&self) -> BTreeSet<String> {
        ["aws_account_assignment".to_owned(), "list".to_owned()].into()
    }

    async fn apply(&self, e: &Entitlement) -> Result<Effect, ProviderError> {
        let p = Priority::Grant;
        let (account, permission_set) = self.target_of(e)?;
        let arn = self.permission_sets.arn(permission_set, p).await?;
        let who = self.directory.existing(&e.principal, p).await?;
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
        until_final(
            "Identity Center creation of the assignment",
            first,
            self.settings.operation_timeout,
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
            let arn = self.permission_sets.arn(permission_set, Priority::Grant).await?;
            self.permission_sets.cap_session(&arn, window.until).await?;
        }
        self.apply(e).await
    }

    async fn remove(&self, e: &Entitlement) -> Result<Effect, ProviderError> {
        let p = Priority::Revoke;
        let (account, permission_set) = self.target_of(e)?;
        let arn = self.permission_sets.arn(permission_set, p).await?;
        // A principal deleted from the directory holds nothing.
        let Some(who) = self.directory.principal(&e.principal, p).await? else {
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
        until_final(
            "Identity Center deletion of the assignment",
            first,
            self.settings.operation_timeout,
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
            let arn = match self.permission_sets.arn(permission_set, Priority::Grant).await {
                Ok(arn) => arn,
                Err(e) if e.kind() == FailureKind::NotFound => {
                    tracing::warn!(error = %e, "a managed permission set is missing; nothing to list for it");
                    continue;
                }
                Err(e) => return Err(e),
            };
            for who in self.assignments(account_id, &arn, Priority::Grant).await? {
                if let Some(principal) = self.directory.name_of(&who).await? {
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
                return Err(ProviderError::rejected(format!(
                    "Identity Center does not hold {}",
                    other.describe()
                )))
            }
        };
        check_account_id(account_id)?;
        let Some(principal) = self
            .directory
            .principal(&entitlement.principal, Priority::Grant)
            .await?
        else {
            return Ok(false);
        };
        let arn = self.permission_sets.arn(permission_set, Priority::Grant).await?;
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
        self.directory.member_of_any(&principal.id, &groups).await
    }
}
