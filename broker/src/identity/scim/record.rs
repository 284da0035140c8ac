//! What the store keeps for SCIM: provisioning connections (one bearer
//! token each) and the resources a connection provisioned, each SCIM user
//! linked to the jitgate user it made.

use std::collections::{BTreeSet, HashSet};

use chrono::{DateTime, Utc};
use jitgate_shared::v1::api::{Role, ScimConnectionView};
use jitgate_shared::v1::UserId;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::document::{render, Document, Envelope};
use super::schema::ScimKind;

/// A provisioning connection: a directory (an Entra enterprise app, say)
/// with its own bearer token. Only the token's SHA-256 is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScimConnection {
    pub name: String,
    pub version: u64,
    pub token_hash: String,
    /// Roles a user this connection provisions starts with.
    pub default_roles: BTreeSet<Role>,
    pub created_at: DateTime<Utc>,
}

impl ScimConnection {
    pub fn view(&self, users: usize, groups: usize) -> ScimConnectionView {
        ScimConnectionView {
            name: self.name.clone(),
            default_roles: self.default_roles.clone(),
            created_at: self.created_at,
            users,
            groups,
        }
    }
}

/// A user or group a connection provisioned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScimResource {
    /// Server-assigned (a UUID).
    pub id: String,
    pub version: u64,
    pub connection: String,
    pub kind: ScimKind,
    /// The kept attributes (see [`super::document`]).
    pub doc: Document,
    /// The jitgate user a SCIM user made.
    pub user: Option<UserId>,
    pub created_at: DateTime<Utc>,
    pub modified_at: DateTime<Utc>,
}

impl ScimResource {
    /// `userName` of a user, `displayName` of a group.
    pub fn name(&self) -> Option<&str> {
        self.doc.get(self.kind.naming_attribute()).and_then(Value::as_str)
    }

    /// The key of the name index: the name without regard to case.
    pub fn index_name(&self) -> Option<String> {
        self.name().map(str::to_lowercase)
    }

    pub fn render(&self, base: &str) -> Document {
        render(
            self.kind,
            &self.doc,
            &Envelope {
                id: &self.id,
                created: self.created_at,
                modified: self.modified_at,
                version: self.version,
                base,
            },
        )
    }

    /// A user is active unless it says `active: false`.
    pub fn active(&self) -> bool {
        self.doc.get("active").and_then(Value::as_bool) != Some(false)
    }

    /// The ids a group's `members` name.
    pub fn member_ids(&self) -> HashSet<String> {
        self.doc
            .get("members")
            .and_then(Value::as_array)
            .map(|members| {
                members
                    .iter()
                    .filter_map(|m| m.get("value").and_then(Value::as_str))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// What jitgate keeps of a SCIM user.
    pub fn profile(&self) -> Profile {
        let doc = &self.doc;
        let text = |v: Option<&Value>| {
            v.and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let name = doc.get("name");
        let joined = || {
            let parts: Vec<String> = ["givenName", "familyName"]
                .iter()
                .filter_map(|k| text(name.and_then(|n| n.get(k))))
                .collect();
            (!parts.is_empty()).then(|| parts.join(" "))
        };
        let user_name = text(doc.get("userName")).unwrap_or_default();
        let display_name = text(doc.get("displayName"))
            .or_else(|| text(name.and_then(|n| n.get("formatted"))))
            .or_else(joined)
            .unwrap_or_else(|| user_name.clone());
        let emails = doc.get("emails").and_then(Value::as_array);
        let email = emails
            .and_then(|e| {
                e.iter()
                    .find(|m| m.get("primary").and_then(Value::as_bool) == Some(true))
                    .or_else(|| e.first())
            })
            .and_then(|m| text(m.get("value")))
            .or_else(|| user_name.contains('@').then(|| user_name.clone()));
        Profile {
            user_name,
            display_name,
            email,
            active: self.active(),
        }
    }
}

/// A SCIM user as jitgate sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub user_name: String,
    pub display_name: String,
    pub email: Option<String>,
    pub active: bool,
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    fn resource(doc: Value) -> ScimResource {
        let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        ScimResource {
            id: "1".into(),
            version: 1,
            connection: "entra".into(),
            kind: ScimKind::User,
            doc: doc.as_object().unwrap().clone(),
            user: None,
            created_at: at,
            modified_at: at,
        }
    }

    #[test]
    fn the_profile_takes_the_best_name_and_the_primary_email() {
        let p = resource(json!({
            "userName": "ann@example.com", "name": {"givenName": "Ann", "familyName": "Lee"},
            "emails": [{"value": "a@other.example"}, {"value": "ann@example.com", "primary": true}]
        }))
        .profile();
        assert_eq!(p.display_name, "Ann Lee");
        assert_eq!(p.email.as_deref(), Some("ann@example.com"));
        assert!(p.active);
        let p = resource(json!({"userName": "ann", "active": false})).profile();
        assert_eq!((p.display_name.as_str(), p.email, p.active), ("ann", None, false));
        let p = resource(json!({"userName": "bo@example.com", "displayName": "Bo"})).profile();
        assert_eq!(
            (p.display_name.as_str(), p.email.as_deref()),
            ("Bo", Some("bo@example.com"))
        );
    }
}
