//! SCIM 2.0 (RFC 7643, RFC 7644) as a service provider.
//!
//! Resources are kept as JSON documents in the shape of the published
//! schemas (core User with the enterprise extension, core Group), so what a
//! directory writes is what it reads back. jitgate's own [`User`] is derived
//! from a SCIM user ([`ScimResource::profile`]): display name, email,
//! groups and `active`.
//!
//! Wire types, the filter grammar and the published schemas come from the
//! `scim_v2` crate; evaluation against documents is here.
//!
//! [`User`]: crate::domain::user::User

pub mod document;
pub mod error;
pub mod filter;
pub mod patch;
pub mod record;
pub mod schema;

pub use error::ScimError;
pub use record::{ScimConnection, ScimResource};
pub use schema::ScimKind;

/// Untrusted input from directories never panics the server: arbitrary
/// JSON through normalisation and PATCH, arbitrary filter text through
/// parsing and evaluation.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;
    use scim_v2::models::others::PatchOp;
    use serde_json::{json, Map, Value};

    use super::document::{normalize, project, render, Envelope};
    use super::filter::matches;
    use super::{patch, ScimKind};

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("userName".to_owned()),
            Just("active".to_owned()),
            Just("emails".to_owned()),
            Just("name".to_owned()),
            Just("members".to_owned()),
            Just("displayName".to_owned()),
            Just("value".to_owned()),
            Just("type".to_owned()),
            Just("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User".to_owned()),
            "[a-zA-Z$.:\\[\\] \"]{0,12}",
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            "[a-zA-Z0-9@. \"]{0,10}".prop_map(Value::String),
            Just(json!("False")),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((name(), inner), 0..5)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<String, Value>>())),
            ]
        })
    }

    proptest! {
        #[test]
        fn resources_and_patches_never_panic(
            body in prop::collection::vec((name(), json_value()), 0..6),
            ops in prop::collection::vec((prop_oneof![Just("add"), Just("Replace"), Just("remove")],
                                          prop::option::of(name()), json_value()), 0..4),
            group in any::<bool>(),
        ) {
            let kind = if group { ScimKind::Group } else { ScimKind::User };
            let body: Map<String, Value> = body.into_iter().collect();
            if let Ok(doc) = normalize(kind, &body) {
                let ops: Vec<Value> = ops.into_iter().map(|(op, path, value)| match path {
                    Some(p) => json!({"op": op, "path": p, "value": value}),
                    None => json!({"op": op, "value": value}),
                }).collect();
                let parsed: Result<PatchOp, _> = serde_json::from_value(json!({"schemas": [], "Operations": ops}));
                if let Ok(p) = parsed {
                    let _ = patch::apply(kind, &doc, &p.operations);
                }
                let at = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
                let env = Envelope { id: "1", created: at, modified: at, version: 1, base: "https://b/scim/v2" };
                let _ = project(kind, render(kind, &doc, &env), &[], &[]);
            }
        }

        #[test]
        fn filters_never_panic(
            terms in prop::collection::vec((
                prop_oneof![Just("userName"), Just("emails.value"), Just("emails"), Just("active"), Just("members"),
                            Just("name.givenName"), Just("meta.created"), Just("x"), Just("value"),
                            Just("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department")],
                prop_oneof![Just("eq"), Just("ne"), Just("co"), Just("sw"), Just("ew"), Just("gt"), Just("lt"),
                            Just("ge"), Just("le"), Just("pr")],
                prop_oneof![Just("\"a\""), Just("true"), Just("false"), Just("1"), Just("null")],
                any::<bool>(),
            ), 1..4),
            or in any::<bool>(),
            text in "[a-zA-Z.:\\[\\]()\" ]{0,40}",
            doc in json_value(),
        ) {
            let parts: Vec<String> = terms.iter().map(|(a, op, v, negate)| {
                let t = if *op == "pr" { format!("{a} pr") } else { format!("{a} {op} {v}") };
                if *negate { format!("not ({t})") } else { t }
            }).collect();
            let joined = parts.join(if or { " or " } else { " and " });
            let valued = format!("emails[{}]", parts[0]);
            let Value::Object(doc) = doc else { return Ok(()) };
            for candidate in [joined.as_str(), valued.as_str(), text.as_str()] {
                if let Ok(f) = candidate.parse::<scim_v2::filter::Filter>() {
                    let _ = matches(ScimKind::User, &f, &doc);
                    let _ = matches(ScimKind::Group, &f, &doc);
                }
            }
        }
    }
}
