//! AWS IAM, for the direct model where the agent changes IAM itself:
//! membership of an IAM group for an IAM user, and a managed policy
//! attached to an IAM user or role.
//!
//! Principals: an IAM user name, or `role:NAME` for a role (policy
//! attachments only). What is already there (grant) or already gone
//! (revoke) is a success that says so, checked before acting.
//!
//! What a revoke ends: the membership or attachment, which IAM applies to
//! every later request, including requests signed with credentials the user
//! or role already holds (IAM evaluates policies per request). Credentials
//! themselves are not revoked.

use std::collections::BTreeSet;

use async_trait::async_trait;
use aws_config::SdkConfig;
use jitgate_shared::v1::{ConfigId, Entitlement, Target};

use super::{call, unless};
use crate::provider::budget::{Budget, Priority};
use crate::provider::{Effect, Provider, ProviderError};

/// Prefix of role principals.
pub const ROLE_PREFIX: &str = "role:";

#[derive(Debug)]
pub struct Iam {
    configuration: ConfigId,
    client: aws_sdk_iam::Client,
    budget: std::sync::Arc<Budget>,
}

/// An IAM principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who<'a> {
    User(&'a str),
    Role(&'a str),
}

fn who(principal: &str) -> Who<'_> {
    match principal.strip_prefix(ROLE_PREFIX) {
        Some(role) => Who::Role(role),
        None => Who::User(principal),
    }
}

const NO_SUCH_ENTITY: &str = "NoSuchEntity";

impl Iam {
    /// Connects and checks that IAM answers with these credentials.
    pub async fn connect(
        configuration: ConfigId,
        sdk: &SdkConfig,
        budget: std::sync::Arc<Budget>,
    ) -> Result<Self, ProviderError> {
        let client = aws_sdk_iam::Client::new(sdk);
        call(&budget, Priority::Grant, "IAM ListGroups", || {
            client.list_groups().max_items(1).send()
        })
        .await
        .map_err(|e| e.error.context("IAM is not reachable"))?;
        Ok(Self {
            configuration,
            client,
            budget,
        })
    }

    fn check(&self, e: &Entitlement) -> Result<(), ProviderError> {
        crate::provider::check_configuration(&self.configuration, e)
    }

    /// Whether `user` is in `group`; `None` if the user does not exist.
    async fn is_member(&self, user: &str, group: &str, p: Priority) -> Result<Option<bool>, ProviderError> {
        let groups = all_pages(|marker| async move {
            let out = call(&self.budget, p, "IAM ListGroupsForUser", || {
                self.client
                    .list_groups_for_user()
                    .user_name(user)
                    .set_marker(marker)
                    .send()
            })
            .await;
            Ok(unless(out, NO_SUCH_ENTITY)?.map(|o| Page {
                items: o.groups().iter().map(|g| g.group_name().to_owned()).collect(),
                next: next_marker(o.is_truncated(), o.marker()),
            }))
        })
        .await?;
        Ok(groups.map(|g| g.iter().any(|name| name == group)))
    }

    /// Whether `policy_arn` is attached to the principal; `None` if the
    /// principal does not exist.
    async fn is_attached(
        &self,
        w: Who<'_>,
        policy_arn: &str,
        p: Priority,
    ) -> Result<Option<bool>, ProviderError> {
        let attached = all_pages(|marker| async move {
            let page = match w {
                Who::User(u) => {
                    let out = call(&self.budget, p, "IAM ListAttachedUserPolicies", || {
                        self.client
                            .list_attached_user_policies()
                            .user_name(u)
                            .set_marker(marker)
                            .send()
                    })
                    .await;
                    unless(out, NO_SUCH_ENTITY)?.map(|o| Page {
                        items: arns(o.attached_policies()),
                        next: next_marker(o.is_truncated(), o.marker()),
                    })
                }
                Who::Role(r) => {
                    let out = call(&self.budget, p, "IAM ListAttachedRolePolicies", || {
                        self.client
                            .list_attached_role_policies()
                            .role_name(r)
                            .set_marker(marker)
                            .send()
                    })
                    .await;
                    unless(out, NO_SUCH_ENTITY)?.map(|o| Page {
                        items: arns(o.attached_policies()),
                        next: next_marker(o.is_truncated(), o.marker()),
                    })
                }
            };
            Ok(page)
        })
        .await?;
        Ok(attached.map(|a| a.iter().any(|arn| arn == policy_arn)))
    }

    /// The users in `group` (none if the group is gone).
    async fn members(&self, group: &str) -> Result<Vec<String>, ProviderError> {
        let users = all_pages(|marker| async move {
            let out = call(&self.budget, Priority::Grant, "IAM GetGroup", || {
                self.client
                    .get_group()
                    .group_name(group)
                    .set_marker(marker)
                    .send()
            })
            .await;
            Ok(unless(out, NO_SUCH_ENTITY)?.map(|o| Page {
                items: o.users().iter().map(|u| u.user_name().to_owned()).collect(),
                next: next_marker(o.is_truncated(), o.marker()),
            }))
        })
        .await?;
        Ok(users.unwrap_or_else(|| {
            tracing::warn!(group, "a managed IAM group is missing; nothing to list for it");
            Vec::new()
        }))
    }

    /// The users and `role:` roles `policy_arn` is attached to (none if the
    /// policy is gone).
    async fn attached_to(&self, policy_arn: &str) -> Result<Vec<String>, ProviderError> {
        let holders = all_pages(|marker| async move {
            let out = call(&self.budget, Priority::Grant, "IAM ListEntitiesForPolicy", || {
                self.client
                    .list_entities_for_policy()
                    .policy_arn(policy_arn)
                    .set_marker(marker)
                    .send()
            })
            .await;
            Ok(unless(out, NO_SUCH_ENTITY)?.map(|o| {
                let users = o
                    .policy_users()
                    .iter()
                    .filter_map(|u| u.user_name())
                    .map(str::to_owned);
                let roles = o
                    .policy_roles()
                    .iter()
                    .filter_map(|r| r.role_name())
                    .map(|r| format!("{ROLE_PREFIX}{r}"));
                Page {
                    items: users.chain(roles).collect(),
                    next: next_marker(o.is_truncated(), o.marker()),
                }
            }))
        })
        .await?;
        Ok(holders.unwrap_or_else(|| {
            tracing::warn!(
                policy_arn,
                "a managed IAM policy is missing; nothing to list for it"
            );
            Vec::new()
        }))
    }
}

/// One page of an IAM listing.
struct Page {
    items: Vec<String>,
    next: Option<String>,
}

/// IAM's marker for the next page, if the listing is truncated.
fn next_marker(truncated: bool, marker: Option<&str>) -> Option<String> {
    marker.filter(|_| truncated).map(str::to_owned)
}

/// Every item of a paginated IAM listing, fetching pages with `page`
/// (given the marker); `None` if the thing listed does not exist.
async fn all_pages<F, Fut>(mut page: F) -> Result<Option<Vec<String>>, ProviderError>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<Option<Page>, ProviderError>>,
{
    let mut items = Vec::new();
    let mut marker = None;
    loop {
        let Some(p) = page(marker).await? else {
            return Ok(None);
        };
        items.extend(p.items);
        marker = p.next;
        if marker.is_none() {
            return Ok(Some(items));
        }
    }
}

fn arns(policies: &[aws_sdk_iam::types::AttachedPolicy]) -> Vec<String> {
    policies
        .iter()
        .filter_map(|p| p.policy_arn())
        .map(str::to_owned)
        .collect()
}

fn missing(what: &str) -> ProviderError {
    ProviderError::not_found(format!("{what} does not exist in IAM"))
}

#[async_trait]
impl Provider for Iam {
    fn capabilities(&self) -> BTreeSet<String> {
        [
            "aws_iam_group_membership".to_owned(),
            "aws_iam_policy_attachment".to_owned(),
            "list".to_owned(),
        ]
        .into()
    }

    async fn apply(&self, e: &Entitlement) -> Result<Effect, ProviderError> {
        self.check(e)?;
        let p = Priority::Grant;
        match (&e.target, who(&e.principal)) {
            (Target::AwsIamGroupMembership { group_name }, Who::User(user)) => {
                match self.is_member(user, group_name, p).await? {
                    Some(true) => return Ok(Effect::Unchanged),
                    Some(false) => {}
                    None => return Err(missing(&format!("user `{user}`"))),
                }
                let out = call(&self.budget, p, "IAM AddUserToGroup", || {
                    self.client
                        .add_user_to_group()
                        .group_name(group_name)
                        .user_name(user)
                        .send()
                })
                .await;
                match out {
                    Ok(_) => Ok(Effect::Changed),
                    Err(err) if err.is(NO_SUCH_ENTITY) => Err(missing(&format!("group `{group_name}`"))),
                    Err(err) => Err(err.error),
                }
            }
            (Target::AwsIamGroupMembership { .. }, Who::Role(role)) => Err(ProviderError::rejected(format!(
                "role `{role}` cannot join an IAM group; only users can"
            ))),
            (Target::AwsIamPolicyAttachment { policy_arn }, w) => {
                match self.is_attached(w, policy_arn, p).await? {
                    Some(true) => return Ok(Effect::Unchanged),
                    Some(false) => {}
                    None => return Err(missing(&format!("principal `{}`", e.principal))),
                }
                let out = match w {
                    Who::User(u) => call(&self.budget, p, "IAM AttachUserPolicy", || {
                        self.client
                            .attach_user_policy()
                            .user_name(u)
                            .policy_arn(policy_arn)
                            .send()
                    })
                    .await
                    .map(drop),
                    Who::Role(r) => call(&self.budget, p, "IAM AttachRolePolicy", || {
                        self.client
                            .attach_role_policy()
                            .role_name(r)
                            .policy_arn(policy_arn)
                            .send()
                    })
                    .await
                    .map(drop),
                };
                match out {
                    Ok(()) => Ok(Effect::Changed),
                    Err(err) if err.is(NO_SUCH_ENTITY) => Err(missing(&format!("policy `{policy_arn}`"))),
                    Err(err) => Err(err.error),
                }
            }
            (other, _) => Err(ProviderError::rejected(format!(
                "IAM cannot realise {}",
                other.describe()
            ))),
        }
    }

    async fn remove(&self, e: &Entitlement) -> Result<Effect, ProviderError> {
        self.check(e)?;
        let p = Priority::Revoke;
        let out = match (&e.target, who(&e.principal)) {
            (Target::AwsIamGroupMembership { group_name }, Who::User(user)) => {
                if self.is_member(user, group_name, p).await? != Some(true) {
                    return Ok(Effect::Unchanged);
                }
                call(&self.budget, p, "IAM RemoveUserFromGroup", || {
                    self.client
                        .remove_user_from_group()
                        .group_name(group_name)
                        .user_name(user)
                        .send()
                })
                .await
                .map(drop)
            }
            (Target::AwsIamPolicyAttachment { policy_arn }, w) => {
                if self.is_attached(w, policy_arn, p).await? != Some(true) {
                    return Ok(Effect::Unchanged);
                }
                match w {
                    Who::User(u) => call(&self.budget, p, "IAM DetachUserPolicy", || {
                        self.client
                            .detach_user_policy()
                            .user_name(u)
                            .policy_arn(policy_arn)
                            .send()
                    })
                    .await
                    .map(drop),
                    Who::Role(r) => call(&self.budget, p, "IAM DetachRolePolicy", || {
                        self.client
                            .detach_role_policy()
                            .role_name(r)
                            .policy_arn(policy_arn)
                            .send()
                    })
                    .await
                    .map(drop),
                }
            }
            (Target::AwsIamGroupMembership { .. }, Who::Role(_)) => return Ok(Effect::Unchanged),
            (other, _) => {
                return Err(ProviderError::rejected(format!(
                    "IAM cannot realise {}",
                    other.describe()
                )))
            }
        };
        match out {
            Ok(()) => Ok(Effect::Changed),
            // Gone between the check and the call.
            Err(err) if err.is(NO_SUCH_ENTITY) => Ok(Effect::Unchanged),
            Err(err) => Err(err.error),
        }
    }

    async fn list(&self, targets: &[Target]) -> Result<Vec<Entitlement>, ProviderError> {
        let mut found = Vec::new();
        for target in targets {
            let holders = match target {
                Target::AwsIamGroupMembership { group_name } => self.members(group_name).await?,
                Target::AwsIamPolicyAttachment { policy_arn } => self.attached_to(policy_arn).await?,
                _ => continue,
            };
            found.extend(holders.into_iter().map(|principal| Entitlement {
                configuration: self.configuration.clone(),
                target: target.clone(),
                principal,
            }));
        }
        Ok(found)
    }
}
