//! People and the facts about them that decisions need.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use jitgate_shared::v1::api::{Role, TokenView, UserView};
use jitgate_shared::v1::UserId;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub version: u64,
    pub display_name: String,
    pub email: Option<String>,
    /// Whoever set `email` vouches for it: an admin, a directory (SCIM), a
    /// SAML IdP, or an OIDC provider that said `email_verified` (or is
    /// trusted without it). Only a verified email links accounts, routes
    /// or names a cloud principal. Records stored before this field count
    /// as verified, as every email did then; the next sign-in corrects it.
    #[serde(default = "verified_by_default")]
    pub email_verified: bool,
    pub roles: BTreeSet<Role>,
    pub groups: BTreeSet<String>,
    /// Accounts sharing a person id are one person (no approving each other).
    /// Set by an admin, or at creation to the person of an account with the
    /// same verified email.
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
    /// The console's language this person chose (a BCP 47 tag the console
    /// speaks); absent: the browser's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

fn verified_by_default() -> bool {
    true
}

/// An email as accounts are compared by: trimmed, lower case.
pub fn normalise_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// The account a chat member speaks for, given the address their chat
/// vouches for: an enabled account whose verified email is `email`,
/// preferring one that `fits` (an approver, for a review). Accounts with
/// one verified email are one person, so which of them answers does not
/// change whose vote it is.
pub fn account_for_email<'a>(
    users: &'a [User],
    email: &str,
    fits: impl Fn(&User) -> bool,
) -> Option<&'a User> {
    let email = normalise_email(email);
    let mut found: Vec<&User> = users
        .iter()
        .filter(|u| !u.disabled && u.verified_email().as_deref() == Some(email.as_str()))
        .collect();
    found.sort_by_key(|u| (!fits(u), u.id.clone()));
    found.into_iter().next()
}

/// The person a new account `id` with the (vouched-for) `email` belongs to:
/// that of an account among `users` with the same verified email, else a
/// person of its own named by its id.
pub fn person_for_new_account(users: &[User], id: &UserId, email: Option<&str>) -> String {
    let email = email.map(normalise_email);
    email
        .and_then(|e| users.iter().find(|u| u.verified_email().as_ref() == Some(&e)))
        .map_or_else(|| id.to_string(), |u| u.person.clone())
}

/// What makes two accounts one person: the same person id (linked by an
/// admin or at creation), or the same verified email.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonKeys {
    pub person: String,
    /// Normalised; only a verified email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

impl PersonKeys {
    pub fn same_person(&self, other: &PersonKeys) -> bool {
        (!self.person.is_empty() && self.person == other.person)
            || self
                .email
                .as_ref()
                .is_some_and(|e| other.email.as_ref() == Some(e))
    }
}

impl User {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// The email, normalised, when it is verified.
    pub fn verified_email(&self) -> Option<String> {
        self.email
            .as_deref()
            .filter(|_| self.email_verified)
            .map(normalise_email)
    }

    pub fn person_keys(&self) -> PersonKeys {
        PersonKeys {
            person: self.person.clone(),
            email: self.verified_email(),
        }
    }

    /// The name the tenants know this user by: the verified email, else
    /// the account id (never an email nobody vouched for). Every
    /// configuration along a chain knows the user by it (each agent maps it
    /// to its tenant's object: Entra user object id, Identity Center user
    /// id).
    pub fn principal(&self) -> String {
        self.verified_email().unwrap_or_else(|| self.id.to_string())
    }

    pub fn view(&self) -> UserView {
        UserView {
            id: self.id.clone(),
            display_name: self.display_name.clone(),
            email: self.email.clone(),
            email_verified: self.email_verified,
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

/// How many hex digits of a token's hash name it to admins.
pub const TOKEN_ID_LEN: usize = 16;

impl ApiToken {
    pub fn is_valid_at(&self, now: DateTime<Utc>) -> bool {
        now < self.expires_at
    }

    /// The name admins list and revoke it by.
    pub fn id(&self) -> &str {
        self.hash.get(..TOKEN_ID_LEN).unwrap_or(&self.hash)
    }

    pub fn view(&self) -> TokenView {
        TokenView {
            id: self.id().to_owned(),
            user: self.user.clone(),
            created_at: self.created_at,
            expires_at: self.expires_at,
            kind: match self.kind {
                TokenKind::Access => "access".into(),
                TokenKind::Refresh => "refresh".into(),
            },
            session: self.session.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(person: &str, email: Option<&str>) -> PersonKeys {
        PersonKeys {
            person: person.into(),
            email: email.map(normalise_email),
        }
    }

    #[test]
    fn one_person_by_person_id_or_verified_email() {
        assert!(keys("p1", None).same_person(&keys("p1", None)));
        assert!(keys("p1", Some("A@x.org ")).same_person(&keys("p2", Some("a@X.org"))));
        assert!(!keys("p1", Some("a@x.org")).same_person(&keys("p2", Some("b@x.org"))));
        assert!(!keys("p1", None).same_person(&keys("p2", None)));
        assert!(
            !keys("", None).same_person(&keys("", None)),
            "an unknown person matches nobody"
        );
    }

    #[test]
    fn a_chat_member_speaks_for_an_enabled_account_with_that_verified_email() {
        let account = |id: &str, email: &str, verified: bool, disabled: bool, approver: bool| User {
            email: Some(email.into()),
            email_verified: verified,
            disabled,
            roles: if approver {
                [Role::Approver].into()
            } else {
                [Role::Requester].into()
            },
            ..crate::store::conformance::user(id)
        };
        let users = [
            account("ann", "ann@x.org", true, false, false),
            account("ann-ops", "Ann@X.org", true, false, true),
            account("bob", "bob@x.org", false, false, true),
            account("cat", "cat@x.org", true, true, true),
        ];
        let approver = |u: &User| u.has_role(Role::Approver);
        let id = |u: Option<&User>| u.map(|u| u.id.to_string());
        assert_eq!(
            id(account_for_email(&users, " ANN@x.org", approver)).as_deref(),
            Some("ann-ops")
        );
        assert_eq!(
            id(account_for_email(&users, "ann@x.org", |_| false)).as_deref(),
            Some("ann")
        );
        assert_eq!(
            id(account_for_email(&users, "bob@x.org", approver)),
            None,
            "unverified"
        );
        assert_eq!(
            id(account_for_email(&users, "cat@x.org", approver)),
            None,
            "disabled"
        );
        assert_eq!(id(account_for_email(&users, "dan@x.org", approver)), None);
    }
}
