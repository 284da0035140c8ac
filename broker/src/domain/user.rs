//! People and the facts about them that decisions need.

use std::collections::{BTreeMap, BTreeSet};

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
    /// Who this user is at each identity provider they signed in with:
    /// provider name -> value of its key claim.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub identities: BTreeMap<String, String>,
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
            identities: self.identities.clone(),
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
    /// The sign-in session it belongs to (none for tokens an admin issued).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    #[serde(default)]
    pub kind: TokenKind,
}

/// What a token is good for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// A bearer token for the API (and the web session cookie).
    #[default]
    Access,
    /// Only for `POST /api/v1/auth/refresh`.
    Refresh,
}

impl ApiToken {
    pub fn is_valid_at(&self, now: DateTime<Utc>) -> bool {
        now < self.expires_at
    }
}
