//! Identifiers. Names chosen by admins (configurations, resources, users) are
//! slugs so they are safe in URLs, Cedar entity ids and store keys; generated
//! ids (requests, grants) are UUIDv7 so they sort by creation time.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a name is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} `{value}` is empty")]
    Empty { kind: &'static str, value: String },
    #[error("{kind} `{value}` is longer than {max} characters")]
    TooLong {
        kind: &'static str,
        value: String,
        max: usize,
    },
    #[error(
        "{kind} `{value}` has the character {bad:?}; use lowercase letters, digits, `-`, `_`, `.` and `@`, starting with a letter or digit"
    )]
    BadCharacter {
        kind: &'static str,
        value: String,
        bad: char,
    },
    #[error("{kind} `{value}` is not a UUID")]
    NotUuid { kind: &'static str, value: String },
}

const MAX_SLUG: usize = 128;

fn check_slug(kind: &'static str, value: &str) -> Result<(), IdError> {
    let first = value.chars().next().ok_or_else(|| IdError::Empty {
        kind,
        value: value.to_owned(),
    })?;
    if value.len() > MAX_SLUG {
        return Err(IdError::TooLong {
            kind,
            value: value.to_owned(),
            max: MAX_SLUG,
        });
    }
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !allowed(first) {
        return Err(IdError::BadCharacter {
            kind,
            value: value.to_owned(),
            bad: first,
        });
    }
    if let Some(bad) = value
        .chars()
        .find(|&c| !(allowed(c) || matches!(c, '-' | '_' | '.' | '@')))
    {
        return Err(IdError::BadCharacter {
            kind,
            value: value.to_owned(),
            bad,
        });
    }
    Ok(())
}

macro_rules! slug_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, utoipa::ToSchema)]
        #[serde(transparent)]
        #[schema(value_type = String, pattern = "^[a-z0-9][a-z0-9._@-]{0,127}$")]
        pub struct $name(String);

        impl $name {
            /// Checks that `value` is a valid identifier.
            pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                check_slug($kind, &value)?;
                Ok(Self(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(transparent)]
        #[schema(value_type = String, format = Uuid)]
        pub struct $name(uuid::Uuid);

        impl $name {
            /// A new id; ids made later sort after ids made earlier.
            pub fn generate() -> Self {
                Self(uuid::Uuid::now_v7())
            }

            pub fn from_uuid(id: uuid::Uuid) -> Self {
                Self(id)
            }

            pub fn as_uuid(&self) -> uuid::Uuid {
                self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                uuid::Uuid::parse_str(s).map(Self).map_err(|_| IdError::NotUuid {
                    kind: $kind,
                    value: s.to_owned(),
                })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

slug_id!(
    /// A PAM configuration: one cloud tenant jitgate can act on.
    ConfigId,
    "configuration id"
);
slug_id!(
    /// Something one can be elevated to.
    ResourceId,
    "resource id"
);
slug_id!(
    /// A person's account in jitgate.
    UserId,
    "user id"
);
uuid_id!(
    /// One person's ask for elevation.
    RequestId,
    "request id"
);
uuid_id!(
    /// An approved request turned into entitlements for a time window.
    GrantId,
    "grant id"
);
uuid_id!(
    /// A gateway agent, named in its client certificate.
    AgentId,
    "agent id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_accept_product_names() {
        for ok in ["aws-prod", "alice@example.com", "entra_main", "r.1"] {
            assert!(ConfigId::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn slugs_name_the_bad_input() {
        let err = ResourceId::new("Prod Admin").unwrap_err();
        assert_eq!(
            err,
            IdError::BadCharacter {
                kind: "resource id",
                value: "Prod Admin".into(),
                bad: 'P'
            }
        );
        assert!(err.to_string().contains("`Prod Admin`"));
        assert!(matches!(UserId::new(""), Err(IdError::Empty { .. })));
        assert!(matches!(
            UserId::new("a\"b"),
            Err(IdError::BadCharacter { bad: '"', .. })
        ));
        assert!(matches!(
            UserId::new("a".repeat(129)),
            Err(IdError::TooLong { .. })
        ));
    }

    #[test]
    fn slugs_are_checked_when_deserialized() {
        let r: Result<ConfigId, _> = serde_json::from_str("\"../etc\"");
        assert!(r.is_err());
    }

    #[test]
    fn generated_ids_sort_by_creation() {
        let a = GrantId::generate();
        let b = GrantId::generate();
        assert!(a < b);
        assert_eq!(a.to_string().parse::<GrantId>().unwrap(), a);
        assert!("nope".parse::<RequestId>().is_err());
    }
}
