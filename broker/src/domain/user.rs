//! People and the facts about them that decisions need.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use jitgate_shared::v1::api::{Role, UserView};
use jitgate_shared::v1::UserId;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub version: u64,
    pub display_name: String,
    pub email: Option<String>,
    pub roles: BTreeSet<Role>,
    pub groups: BTreeSet<String>,
    /// Accounts sharing a person id are one person (no approving each other).
    pub person: String,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    /// The SCIM connection that provisioned this user; SCIM never touches
    /// users it did not provision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioned_by: Option<String>,
}

impl User {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Same person: the same account, or accounts linked to one person.
    pub fn same_person(&self, other_id: &UserId, other_person: &str) -> bool {
        &self.id == other_id || self.person == other_person
    }

    pub fn email_or_id(&self) -> &str {
        self.email.as_deref().unwrap_or(self.id.as_str())
    }

    pub fn view(&self) -> UserView {
        UserView {
            id: self.id.clone(),
            display_name: self.display_name.clone(),
            email: self.email.clone(),
            roles: self.roles.clone(),
            groups: self.groups.clone(),
            person: self.person.clone(),
            disabled: self.disabled,
            created_at: self.created_at,
            provisioned_by: self.provisioned_by.clone(),
        }
    }
}

/// An API token as stored: only its SHA-256 is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    /// Hex SHA-256 of the token.
    pub hash: String,
    pub user: UserId,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl ApiToken {
    pub fn is_valid_at(&self, now: DateTime<Utc>) -> bool {
        now < self.expires_at
    }
}
