//! The instance's identity store: a principal's id from the name the
//! broker uses (users by the configured attribute, `group:NAME` by display
//! name), the name back from an id found in an assignment, and group
//! membership. Lookups are cached for [`CACHE_TTL`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_sdk_identitystore::types::{AlternateIdentifier, ExternalId, MemberId, UniqueAttribute};
use aws_sdk_ssoadmin::types::PrincipalType;
use aws_smithy_types::Document;

use super::{CACHE_TTL, NOT_FOUND};
use crate::provider::aws::{call, unless};
use crate::provider::budget::{Budget, Priority};
use crate::provider::cache::TtlCache;
use crate::provider::ProviderError;

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

/// Prefix of group principals.
pub const GROUP_PREFIX: &str = "group:";

/// A principal as assignments name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct PrincipalRef {
    pub kind: PrincipalType,
    pub id: String,
}

#[derive(Debug)]
pub(super) struct Directory {
    store: aws_sdk_identitystore::Client,
    /// The identity store id.
    id: String,
    attribute: PrincipalAttribute,
    budget: Arc<Budget>,
    principals: TtlCache<PrincipalRef>,
    names: Mutex<HashMap<PrincipalRef, String>>,
}

impl Directory {
    /// The identity store `id`, checked to be readable.
    pub(super) async fn open(
        store: aws_sdk_identitystore::Client,
        id: String,
        attribute: PrincipalAttribute,
        budget: Arc<Budget>,
    ) -> Result<Self, ProviderError> {
        call(&budget, Priority::Grant, "identity store ListUsers", || {
            store.list_users().identity_store_id(&id).max_results(1).send()
        })
        .await
        .map_err(|e| e.error.context(format!("identity store {id} is not readable")))?;
        Ok(Self {
            store,
            id,
            attribute,
            budget,
            principals: TtlCache::new(CACHE_TTL),
            names: Mutex::new(HashMap::new()),
        })
    }

    pub(super) fn id(&self) -> &str {
        &self.id
    }

    /// The principal's id and kind in the identity store; `None` if the
    /// store has no such principal.
    pub(super) async fn principal(
        &self,
        name: &str,
        priority: Priority,
    ) -> Result<Option<PrincipalRef>, ProviderError> {
        if let Some(p) = self.principals.get(name) {
            return Ok(Some(p));
        }
        let found = match name.strip_prefix(GROUP_PREFIX) {
            Some(group) => {
                let id = AlternateIdentifier::UniqueAttribute(unique("displayName", group)?);
                let out = call(&self.budget, priority, "identity store GetGroupId", || {
                    self.store
                        .get_group_id()
                        .identity_store_id(&self.id)
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
                let id = match &self.attribute {
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
                            .map_err(|e| ProviderError::rejected(e.to_string()))?,
                    ),
                };
                let out = call(&self.budget, priority, "identity store GetUserId", || {
                    self.store
                        .get_user_id()
                        .identity_store_id(&self.id)
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
    pub(super) async fn existing(
        &self,
        name: &str,
        priority: Priority,
    ) -> Result<PrincipalRef, ProviderError> {
        self.principal(name, priority).await?.ok_or_else(|| {
            let how = match &self.attribute {
                _ if name.starts_with(GROUP_PREFIX) => "group display name".to_owned(),
                PrincipalAttribute::UserName => "user name".to_owned(),
                PrincipalAttribute::Email => "email".to_owned(),
                PrincipalAttribute::ExternalId { issuer } => format!("external id from {issuer}"),
            };
            ProviderError::not_found(format!(
                "no principal `{name}` (by {how}) in identity store {}",
                self.id
            ))
        })
    }

    /// The name the broker uses for a principal id found in an assignment.
    pub(super) async fn name_of(&self, p: &PrincipalRef) -> Result<Option<String>, ProviderError> {
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
                            .identity_store_id(&self.id)
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
                            .identity_store_id(&self.id)
                            .user_id(&p.id)
                            .send()
                    },
                )
                .await?;
                match &self.attribute {
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

    /// Whether `user` is a member of any of `groups`.
    pub(super) async fn member_of_any(&self, user: &str, groups: &[String]) -> Result<bool, ProviderError> {
        // IsMemberInGroups takes at most 100 groups a call.
        for chunk in groups.chunks(100) {
            let out = call(
                &self.budget,
                Priority::Grant,
                "identity store IsMemberInGroups",
                || {
                    self.store
                        .is_member_in_groups()
                        .identity_store_id(&self.id)
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
}

fn unique(path: &str, value: &str) -> Result<UniqueAttribute, ProviderError> {
    UniqueAttribute::builder()
        .attribute_path(path)
        .attribute_value(Document::String(value.to_owned()))
        .build()
        .map_err(|e| ProviderError::rejected(e.to_string()))
}
