//! Sign-in decisions, independent of the protocol (OIDC or SAML):
//! which provider an email belongs to, what the verified claims say, which
//! roles follow from them, and how a just-in-time user is created or
//! brought up to date.
//!
//! Roles at every sign-in: the role claim when present and naming known
//! roles, else the provider's default role, else no access.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use jitgate_shared::v1::api::Role;
use jitgate_shared::v1::UserId;
use serde_json::{Map, Value};

use crate::domain::user::User;

/// Why a sign-in was refused. Each names what was wrong; none carries a
/// token or a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignInError {
    #[error("no sign-in provider is configured")]
    NoProviders,
    #[error("no sign-in provider serves `{domain}`; ask an admin to add the domain to a provider's `email_domains`")]
    NoProviderForDomain { domain: String },
    #[error("`{email}` is not an email address")]
    NotAnEmail { email: String },
    #[error("several sign-in providers are configured; give your email or --provider ({known})")]
    AmbiguousProvider { known: String },
    #[error("no sign-in provider is named `{name}` (known: {known})")]
    UnknownProvider { name: String, known: String },
    #[error("the token from `{provider}` has no `{claim}` claim, which identifies people there")]
    MissingKeyClaim { provider: String, claim: String },
    #[error("`{provider}` may not sign in `{email}`: its email domains are {domains}")]
    DomainNotServed {
        provider: String,
        email: String,
        domains: String,
    },
    #[error("`{provider}` signs in people by their email domain, and the token carries no email")]
    NoEmail { provider: String },
    #[error("`{provider}` signs in people by their email domain, and did not say the token's email is verified (`email_verified` is not true); verify the email there, or set `trust_unverified_email` for this provider if it never sets the claim")]
    UnverifiedEmail { provider: String },
    #[error("no access: `{provider}` gave no known role in `{claim}` and has no default role")]
    NoRole { provider: String, claim: String },
    #[error("the account `{user}` is disabled")]
    Disabled { user: UserId },
}

/// Which claims mean what at one provider.
#[derive(Debug, Clone)]
pub struct ClaimRules {
    pub provider: String,
    pub key_claim: String,
    pub groups_claim: String,
    pub role_claim: String,
    pub default_role: Option<Role>,
    pub email_domains: Vec<String>,
    /// Take `email` without `email_verified: true` (SAML: always; OIDC:
    /// only where an admin said so).
    pub trust_unverified_email: bool,
}

/// What jitgate takes from a verified ID token (or assertion).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInClaims {
    /// The value of the key claim: who this is at the provider.
    pub key: String,
    /// The email, only when the provider vouches for it (`email_verified`
    /// or a provider trusted without it), lower case.
    pub email: Option<String>,
    /// The provider sent an email it did not say it verified (dropped).
    pub unverified_email: bool,
    pub name: Option<String>,
    /// `None` when the provider sent no groups claim (groups are then left
    /// as they are).
    pub groups: Option<BTreeSet<String>>,
    /// The role claim's values, as sent.
    pub roles: Option<Vec<String>>,
}

fn strings(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::String(s) => Some(s.split_whitespace().map(str::to_owned).collect()),
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
        ),
        _ => None,
    }
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

impl SignInClaims {
    /// Reads verified claims by `rules`.
    pub fn read(claims: &Map<String, Value>, rules: &ClaimRules) -> Result<Self, SignInError> {
        let key = match claims.get(&rules.key_claim) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => {
                return Err(SignInError::MissingKeyClaim {
                    provider: rules.provider.clone(),
                    claim: rules.key_claim.clone(),
                })
            }
        };
        let sent = text(claims.get("email")).map(|e| e.to_lowercase());
        let verified = rules.trust_unverified_email
            || matches!(claims.get("email_verified"), Some(Value::Bool(true)))
            || claims
                .get("email_verified")
                .and_then(Value::as_str)
                .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let unverified_email = sent.is_some() && !verified;
        let email = sent.filter(|_| verified);
        let name = text(claims.get("name")).or_else(|| {
            let parts: Vec<String> = ["given_name", "family_name"]
                .iter()
                .filter_map(|k| text(claims.get(*k)))
                .collect();
            (!parts.is_empty()).then(|| parts.join(" "))
        });
        Ok(SignInClaims {
            key,
            email,
            unverified_email,
            name,
            groups: claims
                .get(&rules.groups_claim)
                .and_then(strings)
                .map(|g| g.into_iter().collect()),
            roles: claims.get(&rules.role_claim).and_then(strings),
        })
    }
}

fn domain_of(email: &str) -> Option<&str> {
    email.rsplit_once('@').map(|(_, d)| d).filter(|d| !d.is_empty())
}

/// The provider to sign `email` in with (or the one named), among
/// `(name, email_domains)` pairs.
pub fn route<'a>(
    providers: &'a [(String, Vec<String>)],
    email: Option<&str>,
    named: Option<&str>,
) -> Result<&'a str, SignInError> {
    let known = || {
        providers
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if providers.is_empty() {
        return Err(SignInError::NoProviders);
    }
    if let Some(name) = named {
        return providers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(n, _)| n.as_str())
            .ok_or_else(|| SignInError::UnknownProvider {
                name: name.to_owned(),
                known: known(),
            });
    }
    let Some(email) = email else {
        return match providers {
            [(only, _)] => Ok(only),
            _ => Err(SignInError::AmbiguousProvider { known: known() }),
        };
    };
    let domain = domain_of(email).ok_or_else(|| SignInError::NotAnEmail {
        email: email.to_owned(),
    })?;
    if let Some((n, _)) = providers
        .iter()
        .find(|(_, domains)| domains.iter().any(|d| d.eq_ignore_ascii_case(domain)))
    {
        return Ok(n);
    }
    match providers {
        [(only, domains)] if domains.is_empty() => Ok(only),
        _ => Err(SignInError::NoProviderForDomain {
            domain: domain.to_lowercase(),
        }),
    }
}

/// Where a browser may be sent after signing in: a path on this broker,
/// returned as it will be sent. Parsed as a URL reference against this
/// broker and refused unless it stays here: no scheme or host, no `//`
/// (also after dot segments are resolved), no backslash, no whitespace or
/// control characters (browsers drop some of them, turning `/\t/evil`
/// into `//evil`).
pub fn local_return_path(return_to: &str) -> Option<String> {
    const BASE: &str = "https://jitgate.invalid/";
    let plain = return_to.starts_with('/')
        && !return_to.starts_with("//")
        && !return_to
            .chars()
            .any(|c| c == '\\' || c.is_whitespace() || c.is_control());
    if !plain {
        return None;
    }
    let base = reqwest::Url::parse(BASE).ok()?;
    let joined = base.join(return_to).ok()?;
    if joined.origin() != base.origin() {
        return None;
    }
    let path = &joined.as_str()[BASE.len() - 1..];
    (path.starts_with('/') && !path.starts_with("//")).then(|| path.to_owned())
}

/// A provider that reserves email domains signs in only people of them.
pub fn check_domain(claims: &SignInClaims, rules: &ClaimRules) -> Result<(), SignInError> {
    if rules.email_domains.is_empty() {
        return Ok(());
    }
    let email = claims.email.as_deref().ok_or_else(|| {
        if claims.unverified_email {
            SignInError::UnverifiedEmail {
                provider: rules.provider.clone(),
            }
        } else {
            SignInError::NoEmail {
                provider: rules.provider.clone(),
            }
        }
    })?;
    let served =
        domain_of(email).is_some_and(|d| rules.email_domains.iter().any(|x| x.eq_ignore_ascii_case(d)));
    if served {
        Ok(())
    } else {
        Err(SignInError::DomainNotServed {
            provider: rules.provider.clone(),
            email: email.to_owned(),
            domains: rules.email_domains.join(", "),
        })
    }
}

/// Roles from the role claim if it names known roles, else the default
/// role, else no access.
pub fn roles_for(claims: &SignInClaims, rules: &ClaimRules) -> Result<BTreeSet<Role>, SignInError> {
    let from_claim: BTreeSet<Role> = claims
        .roles
        .iter()
        .flatten()
        .filter_map(|r| Role::ALL.into_iter().find(|k| k.as_str().eq_ignore_ascii_case(r)))
        .collect();
    if !from_claim.is_empty() {
        return Ok(from_claim);
    }
    match rules.default_role {
        Some(role) => Ok(BTreeSet::from([role])),
        None => Err(SignInError::NoRole {
            provider: rules.provider.clone(),
            claim: rules.role_claim.clone(),
        }),
    }
}

/// `text` as a user id: lowercase, other characters as `-`, starting with
/// a letter or digit, at most 100 characters (`Ann.Lee@Example.com` ->
/// `ann.lee@example.com`).
pub fn user_id_slug(text: &str) -> String {
    text.to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.' | '@') {
                c
            } else {
                '-'
            }
        })
        .skip_while(|c| !c.is_ascii_alphanumeric())
        .take(100)
        .collect()
}

/// A candidate user id for a new person: the email, else
/// `{provider}-{key}`, as an id slug.
pub fn user_id_candidates(claims: &SignInClaims, provider: &str) -> Vec<UserId> {
    let slug = user_id_slug;
    let base = claims
        .email
        .as_deref()
        .map(slug)
        .unwrap_or_else(|| slug(&format!("{provider}-{}", claims.key)));
    let short: String = slug(&claims.key).chars().take(8).collect();
    [
        base.clone(),
        format!("{base}-{short}"),
        format!("{provider}-{}", slug(&claims.key)),
    ]
    .into_iter()
    .filter_map(|c| UserId::new(c).ok())
    .collect()
}

/// A person signing in for the first time.
pub fn new_user(
    id: UserId,
    person: String,
    claims: &SignInClaims,
    roles: BTreeSet<Role>,
    provider: &str,
    now: DateTime<Utc>,
) -> User {
    User {
        person,
        display_name: claims.name.clone().unwrap_or_else(|| id.to_string()),
        email: claims.email.clone(),
        email_verified: claims.email.is_some(),
        roles,
        groups: claims.groups.clone().unwrap_or_default(),
        disabled: false,
        created_at: now,
        provisioned_by: None,
        identities: [(provider.to_owned(), claims.key.clone())].into(),
        language: None,
        id,
        version: 0,
    }
}

/// A returning person: roles reconciled, name, email and groups taken from
/// the provider when it sent them.
pub fn reconcile(
    user: &User,
    claims: &SignInClaims,
    roles: BTreeSet<Role>,
    provider: &str,
) -> Result<User, SignInError> {
    if user.disabled {
        return Err(SignInError::Disabled {
            user: user.id.clone(),
        });
    }
    let mut next = user.clone();
    next.roles = roles;
    if let Some(name) = &claims.name {
        next.display_name = name.clone();
    }
    if let Some(email) = &claims.email {
        next.email = Some(email.clone());
        next.email_verified = true;
    } else if claims.unverified_email && next.provisioned_by.is_none() {
        // The provider no longer vouches for it: it links and names
        // nothing any more. (A directory's email stays the directory's.)
        next.email_verified = false;
    }
    if let Some(groups) = &claims.groups {
        next.groups = groups.clone();
    }
    next.identities.insert(provider.to_owned(), claims.key.clone());
    Ok(next)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rules(default_role: Option<Role>, domains: &[&str]) -> ClaimRules {
        ClaimRules {
            provider: "corp".into(),
            key_claim: "sub".into(),
            groups_claim: "groups".into(),
            role_claim: "jitgate_role".into(),
            default_role,
            email_domains: domains.iter().map(|d| (*d).to_owned()).collect(),
            trust_unverified_email: false,
        }
    }

    fn claims(v: Value) -> SignInClaims {
        SignInClaims::read(v.as_object().unwrap(), &rules(None, &[])).unwrap()
    }

    #[test]
    fn roles_come_from_a_known_claim_else_the_default_else_nothing() {
        let with = |role: Value| claims(json!({"sub": "1", "jitgate_role": role}));
        let r = rules(Some(Role::Requester), &[]);
        assert_eq!(
            roles_for(&with(json!("approver")), &r).unwrap(),
            [Role::Approver].into()
        );
        assert_eq!(
            roles_for(&with(json!(["Admin", "auditor"])), &r).unwrap(),
            [Role::Admin, Role::Auditor].into()
        );
        assert_eq!(
            roles_for(&with(json!("superuser")), &r).unwrap(),
            [Role::Requester].into()
        );
        let none = claims(json!({"sub": "1"}));
        assert_eq!(roles_for(&none, &r).unwrap(), [Role::Requester].into());
        let err = roles_for(&none, &rules(None, &[])).unwrap_err();
        assert!(err.to_string().contains("no access"), "{err}");
    }

    #[test]
    fn people_are_routed_by_their_email_domain() {
        let providers = vec![
            ("corp".to_owned(), vec!["example.com".to_owned()]),
            ("partner".to_owned(), vec!["partner.example".to_owned()]),
        ];
        assert_eq!(route(&providers, Some("ann@Example.com"), None).unwrap(), "corp");
        assert_eq!(
            route(&providers, Some("bo@partner.example"), None).unwrap(),
            "partner"
        );
        assert_eq!(route(&providers, None, Some("partner")).unwrap(), "partner");
        assert!(matches!(
            route(&providers, Some("eve@elsewhere.example"), None),
            Err(SignInError::NoProviderForDomain { .. })
        ));
        assert!(matches!(
            route(&providers, None, None),
            Err(SignInError::AmbiguousProvider { .. })
        ));
        assert!(matches!(
            route(&providers, None, Some("nope")),
            Err(SignInError::UnknownProvider { .. })
        ));
        assert!(matches!(
            route(&providers, Some("not-an-email"), None),
            Err(SignInError::NotAnEmail { .. })
        ));
        let one = vec![("only".to_owned(), vec![])];
        assert_eq!(route(&one, Some("x@any.example"), None).unwrap(), "only");
    }

    #[test]
    fn return_to_stays_on_this_broker() {
        for ok in [
            "/auth/signed-in",
            "/grants?state=active#top",
            "/a/../b",
            "/%2F%2Fevil.example",
        ] {
            let path = local_return_path(ok).unwrap_or_else(|| panic!("{ok} refused"));
            assert!(path.starts_with('/') && !path.starts_with("//"), "{ok} -> {path}");
        }
        for bad in [
            "//evil.example",
            "///evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            " /x",
            "/x\r\nSet-Cookie: a=b",
            "https://evil.example/",
            "javascript:alert(1)",
            "evil.example",
            "/.//evil.example",
            "/a/..//evil.example",
            "",
        ] {
            assert_eq!(local_return_path(bad), None, "{bad:?} accepted");
        }
    }

    #[test]
    fn a_provider_signs_in_only_its_own_domains() {
        let r = rules(Some(Role::Requester), &["example.com"]);
        let ok = claims(json!({"sub": "1", "email": "Ann@EXAMPLE.com", "email_verified": true}));
        check_domain(&ok, &r).unwrap();
        let other = claims(json!({"sub": "1", "email": "eve@evil.example", "email_verified": "true"}));
        assert!(matches!(
            check_domain(&other, &r),
            Err(SignInError::DomainNotServed { .. })
        ));
        let none = claims(json!({"sub": "1"}));
        assert!(matches!(
            check_domain(&none, &r),
            Err(SignInError::NoEmail { .. })
        ));
    }

    #[test]
    fn an_unverified_email_routes_links_and_names_nobody() {
        let r = rules(Some(Role::Requester), &["example.com"]);
        for verified in [json!(false), json!("false"), Value::Null] {
            let c = claims(json!({"sub": "1", "email": "ann@example.com", "email_verified": verified}));
            assert_eq!(c.email, None, "{verified}");
            assert!(c.unverified_email);
            assert!(matches!(
                check_domain(&c, &r),
                Err(SignInError::UnverifiedEmail { .. })
            ));
        }
        let trusting = ClaimRules {
            trust_unverified_email: true,
            ..r.clone()
        };
        let c = SignInClaims::read(
            json!({"sub": "1", "email": "ann@example.com"})
                .as_object()
                .unwrap(),
            &trusting,
        )
        .unwrap();
        assert_eq!(c.email.as_deref(), Some("ann@example.com"), "trusted by setting");
        let user = new_user(
            UserId::new("ann").unwrap(),
            "ann".into(),
            &c,
            Default::default(),
            "corp",
            DateTime::<Utc>::UNIX_EPOCH,
        );
        assert!(user.email_verified);
        let unverified = claims(json!({"sub": "1", "email": "mallory@example.com"}));
        let next = reconcile(&user, &unverified, Default::default(), "corp").unwrap();
        assert!(!next.email_verified, "no longer vouched for");
        assert_eq!(next.principal(), "ann", "so it names nobody in a cloud");
    }

    #[test]
    fn claims_and_reconciliation() {
        let c = claims(
            json!({"sub": 42, "email": "Ann@Example.com", "email_verified": true, "given_name": "Ann", "family_name": "Lee",
                              "groups": ["developers", "sre"]}),
        );
        assert_eq!(c.key, "42");
        assert_eq!(c.email.as_deref(), Some("ann@example.com"));
        assert_eq!(c.name.as_deref(), Some("Ann Lee"));
        let missing = SignInClaims::read(json!({"email": "a@b"}).as_object().unwrap(), &rules(None, &[]));
        assert!(matches!(missing, Err(SignInError::MissingKeyClaim { .. })));
        let now = DateTime::<Utc>::UNIX_EPOCH;
        let ids = user_id_candidates(&c, "corp");
        assert_eq!(ids[0].as_str(), "ann@example.com");
        let user = new_user(
            ids[0].clone(),
            "ann".into(),
            &c,
            [Role::Requester].into(),
            "corp",
            now,
        );
        assert_eq!(user.groups, ["developers".to_owned(), "sre".to_owned()].into());
        let renamed = claims(
            json!({"sub": "42", "name": "Ann Smith", "email": "ann.smith@example.com", "email_verified": true}),
        );
        let next = reconcile(&user, &renamed, [Role::Approver].into(), "corp").unwrap();
        assert_eq!(next.display_name, "Ann Smith");
        assert_eq!(next.email.as_deref(), Some("ann.smith@example.com"));
        assert_eq!(next.roles, [Role::Approver].into());
        assert_eq!(next.groups, user.groups, "no groups claim: groups kept");
        let mut disabled = user.clone();
        disabled.disabled = true;
        assert!(matches!(
            reconcile(&disabled, &renamed, [Role::Approver].into(), "corp"),
            Err(SignInError::Disabled { .. })
        ));
    }
}

/// Claims come from providers; odd ones never panic the reading.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;
    use serde_json::{json, Map, Value};

    use super::*;

    proptest! {
        #[test]
        fn an_accepted_return_to_never_leaves_the_broker(path in "[/\\\\.a-z%:\t@?#]{0,12}") {
            if let Some(p) = local_return_path(&path) {
                let base = reqwest::Url::parse("https://jitgate.invalid/").unwrap();
                let resolved = base.join(&p).unwrap();
                prop_assert_eq!(resolved.host_str(), Some("jitgate.invalid"), "{:?} -> {:?}", path, p);
                prop_assert!(!p.starts_with("//") && !p.contains('\\'));
            }
        }

        #[test]
        fn any_claims_are_read_or_refused(
            sub in prop_oneof![Just(Value::Null), any::<i64>().prop_map(|n| json!(n)), ".{0,8}".prop_map(Value::String)],
            email in prop_oneof![Just(Value::Null), ".{0,12}".prop_map(Value::String), Just(json!(["a@b"]))],
            roles in prop_oneof![Just(Value::Null), ".{0,12}".prop_map(Value::String),
                                 prop::collection::vec(".{0,8}", 0..3).prop_map(|v| json!(v)), Just(json!({"a": 1}))],
        ) {
            let claims: Map<String, Value> = [("sub".to_owned(), sub), ("email".to_owned(), email.clone()),
                                              ("jitgate_role".to_owned(), roles), ("groups".to_owned(), email)]
                .into_iter().collect();
            let rules = ClaimRules {
                provider: "p".into(), key_claim: "sub".into(), groups_claim: "groups".into(),
                role_claim: "jitgate_role".into(), default_role: None, email_domains: vec!["example.com".into()],
                trust_unverified_email: false,
            };
            if let Ok(c) = SignInClaims::read(&claims, &rules) {
                let _ = check_domain(&c, &rules);
                let _ = roles_for(&c, &rules);
                let _ = user_id_candidates(&c, "p");
            }
        }
    }
}
