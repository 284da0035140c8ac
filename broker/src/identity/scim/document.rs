//! Resource documents: how an incoming resource is normalised to the shape
//! the server keeps, and how a kept one is rendered for a response.
//!
//! A kept document holds core attributes at the top level and extension
//! attributes under their schema URN, every name in the schema's own
//! spelling. `id`, `meta` and `schemas` are the server's and never kept from
//! input; read-only attributes and `password` (never returned; jitgate has
//! no use for it) are dropped. Unknown attributes are ignored (RFC 7644
//! §3.3 leaves them to the server), booleans sent as strings (Entra's
//! `"False"`) are read as booleans, and a wrong type is refused naming the
//! attribute.

use chrono::{DateTime, SecondsFormat, Utc};
use scim_v2::filter::{AttrExp, AttrPath, Filter};
use scim_v2::models::scim_schema::SubAttributes;
use serde_json::{Map, Value};

use super::error::ScimError;
use super::schema::{attribute, Attr, ScimKind};

pub type Document = Map<String, Value>;

/// The common attribute kept beside the schema's (RFC 7643 §3.1).
pub const EXTERNAL_ID: &str = "externalId";

/// Normalises a whole resource sent with POST or PUT.
pub fn normalize(kind: ScimKind, input: &Map<String, Value>) -> Result<Document, ScimError> {
    let mut doc = Document::new();
    for (key, value) in input {
        if let Some((name, value)) = normalize_top(kind, key, value)? {
            doc.insert(name, value);
        }
    }
    Ok(doc)
}

/// One top-level member of an incoming resource: its canonical key and
/// normalised value, or `None` when it is not kept (server-owned, read-only,
/// unknown, or empty).
pub fn normalize_top(kind: ScimKind, key: &str, value: &Value) -> Result<Option<(String, Value)>, ScimError> {
    if ["schemas", "id", "meta"]
        .iter()
        .any(|k| k.eq_ignore_ascii_case(key))
    {
        return Ok(None);
    }
    if key.eq_ignore_ascii_case(EXTERNAL_ID) {
        return match value {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some((EXTERNAL_ID.into(), Value::String(s.clone())))),
            _ => Err(ScimError::invalid_value("`externalId` must be a string")),
        };
    }
    if let Some(urn) = kind.extension(key) {
        let Value::Object(members) = value else {
            return match value {
                Value::Null => Ok(None),
                _ => Err(ScimError::invalid_syntax(format!("`{urn}` must be an object"))),
            };
        };
        let mut ext = Document::new();
        for (name, v) in members {
            if let Some(attr) = attribute(kind, Some(urn), name) {
                if let Some(v) = normalize_value(&attr, v)? {
                    ext.insert(attr.def.name.clone(), v);
                }
            }
        }
        return Ok((!ext.is_empty()).then(|| (urn.to_owned(), Value::Object(ext))));
    }
    // A fully qualified core attribute (`urn:…:User:userName`).
    let (uri, name) = match key.rsplit_once(':') {
        Some((uri, name)) => (Some(uri), name),
        None => (None, key),
    };
    let Some(attr) = attribute(kind, uri, name) else {
        tracing::debug!(
            attribute = key,
            "ignoring an attribute the schema does not define"
        );
        return Ok(None);
    };
    if attr.read_only() || attr.never_returned() {
        return Ok(None);
    }
    Ok(normalize_value(&attr, value)?.map(|v| (attr.def.name.clone(), v)))
}

/// A value for `attr`, normalised; `None` when it is null or empty.
pub fn normalize_value(attr: &Attr, value: &Value) -> Result<Option<Value>, ScimError> {
    let name = &attr.def.name;
    if value.is_null() {
        return Ok(None);
    }
    if attr.def.multi_valued {
        let items: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            single => vec![single],
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            if let Some(v) = normalize_single(attr, item)? {
                out.push(v);
            }
        }
        return Ok((!out.is_empty()).then_some(Value::Array(out)));
    }
    if value.is_array() {
        return Err(ScimError::invalid_value(format!(
            "`{name}` takes one value, not a list"
        )));
    }
    normalize_single(attr, value)
}

fn normalize_single(attr: &Attr, value: &Value) -> Result<Option<Value>, ScimError> {
    let name = &attr.def.name;
    if !attr.is_complex() {
        return coerce(name, &attr.def.r#type, value);
    }
    let Value::Object(members) = value else {
        return match value {
            Value::Null => Ok(None),
            _ => Err(ScimError::invalid_value(format!("`{name}` must be an object"))),
        };
    };
    let mut out = Document::new();
    for (sub_name, v) in members {
        let Some(sub) = attr.sub(sub_name) else {
            continue;
        };
        if sub.mutability.as_deref() == Some("readOnly") && sub.name != "$ref" {
            continue;
        }
        if let Some(v) = normalize_sub(name, sub, v)? {
            out.insert(sub.name.clone(), v);
        }
    }
    Ok((!out.is_empty()).then_some(Value::Object(out)))
}

pub fn normalize_sub(parent: &str, sub: &SubAttributes, value: &Value) -> Result<Option<Value>, ScimError> {
    coerce(&format!("{parent}.{}", sub.name), &sub.r#type, value)
}

/// A simple value of SCIM type `ty`; strings for booleans are accepted
/// without regard to case (Entra sends `"True"` and `"False"`).
fn coerce(name: &str, ty: &str, value: &Value) -> Result<Option<Value>, ScimError> {
    let wrong = || ScimError::invalid_value(format!("`{name}` must be a {ty}, not {value}"));
    match (ty, value) {
        (_, Value::Null) => Ok(None),
        ("boolean", Value::Bool(_)) => Ok(Some(value.clone())),
        ("boolean", Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(Value::Bool(true))),
        ("boolean", Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(Value::Bool(false))),
        ("integer", Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(Some(value.clone())),
        ("decimal", Value::Number(_)) => Ok(Some(value.clone())),
        ("string" | "reference" | "binary" | "dateTime", Value::String(_)) => Ok(Some(value.clone())),
        _ => Err(wrong()),
    }
}

/// Checks what a kept document must have: `userName` for a user. (A
/// group's `displayName` is "REQUIRED" in RFC 7643's prose but not in its
/// schema, which is what clients read; a group without one names no group
/// in jitgate.)
pub fn check_required(kind: ScimKind, doc: &Document) -> Result<(), ScimError> {
    if kind != ScimKind::User {
        return Ok(());
    }
    match doc.get("userName").and_then(Value::as_str) {
        Some(s) if !s.trim().is_empty() => Ok(()),
        _ => Err(ScimError::invalid_value("`userName` is required for a User")),
    }
}

/// What the server adds to a kept document in a response.
#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    pub id: &'a str,
    pub created: DateTime<Utc>,
    pub modified: DateTime<Utc>,
    pub version: u64,
    /// `https://broker/scim/v2`
    pub base: &'a str,
}

/// The representation of a kept resource.
pub fn render(kind: ScimKind, doc: &Document, env: &Envelope<'_>) -> Document {
    let mut schemas = vec![Value::String(kind.core_schema().into())];
    schemas.extend(
        kind.extensions()
            .iter()
            .filter(|e| doc.contains_key(**e))
            .map(|e| Value::String((*e).into())),
    );
    let mut out = Document::new();
    out.insert("schemas".into(), Value::Array(schemas));
    out.insert("id".into(), Value::String(env.id.into()));
    for (k, v) in doc {
        out.insert(k.clone(), v.clone());
    }
    let stamp = |t: DateTime<Utc>| Value::String(t.to_rfc3339_opts(SecondsFormat::Millis, true));
    let mut meta = Document::new();
    meta.insert("resourceType".into(), Value::String(kind.name().into()));
    meta.insert("created".into(), stamp(env.created));
    meta.insert("lastModified".into(), stamp(env.modified));
    meta.insert(
        "location".into(),
        Value::String(format!("{}/{}/{}", env.base, kind.endpoint(), env.id)),
    );
    meta.insert("version".into(), Value::String(format!("W/\"{}\"", env.version)));
    out.insert("meta".into(), Value::Object(meta));
    out
}

/// An attribute name in standard attribute notation (RFC 7644 §3.10), as
/// the `attributes` and `excludedAttributes` parameters carry them.
pub fn parse_attribute_path(raw: &str) -> Result<AttrPath, ScimError> {
    match format!("{} pr", raw.trim()).parse::<Filter>() {
        Ok(Filter::Attr(AttrExp::Present(path))) => Ok(path),
        _ => Err(ScimError::invalid_path(format!(
            "`{raw}` is not an attribute name (RFC 7644 §3.10)"
        ))),
    }
}

/// Where an attribute path points in a rendered document: the key of its
/// top-level member (or extension object) and the member inside it.
fn locate(kind: ScimKind, path: &AttrPath) -> (Option<String>, String, Option<String>) {
    // `urn:…:enterprise:2.0:User:department` or the core URN.
    let ext = path
        .uri
        .as_deref()
        .and_then(|u| kind.extension(u))
        .map(str::to_owned);
    let canonical = attribute(kind, ext.as_deref(), &path.name)
        .map(|a| a.def.name.clone())
        .unwrap_or_else(|| {
            ["id", "meta", "schemas", EXTERNAL_ID]
                .into_iter()
                .find(|k| k.eq_ignore_ascii_case(&path.name))
                .map_or_else(|| path.name.clone(), str::to_owned)
        });
    (ext, canonical, path.sub_attr.clone())
}

fn get_ci<'a>(map: &'a Document, key: &str) -> Option<(&'a String, &'a Value)> {
    map.iter().find(|(k, _)| k.eq_ignore_ascii_case(key))
}

/// Applies `attributes` (keep only these, plus `id` and `schemas`) or
/// `excludedAttributes` (drop these; `id` and `schemas` always stay) to a
/// rendered resource (RFC 7644 §3.4.2.5).
pub fn project(
    kind: ScimKind,
    rendered: Document,
    attributes: &[AttrPath],
    excluded: &[AttrPath],
) -> Document {
    if !attributes.is_empty() {
        let mut out = Document::new();
        for key in ["schemas", "id"] {
            if let Some(v) = rendered.get(key) {
                out.insert(key.into(), v.clone());
            }
        }
        for path in attributes {
            let (ext, name, sub) = locate(kind, path);
            let source = match &ext {
                Some(urn) => rendered.get(urn).and_then(Value::as_object),
                None => Some(&rendered),
            };
            let Some((key, value)) = source.and_then(|s| get_ci(s, &name)) else {
                continue;
            };
            let picked = match &sub {
                None => value.clone(),
                Some(sub) => keep_sub(value, sub),
            };
            let target = match &ext {
                Some(urn) => match out
                    .entry(urn.clone())
                    .or_insert_with(|| Value::Object(Document::new()))
                    .as_object_mut()
                {
                    Some(t) => t,
                    None => continue,
                },
                None => &mut out,
            };
            merge_into(target, key, picked);
        }
        return out;
    }
    let mut out = rendered;
    for path in excluded {
        let (ext, name, sub) = locate(kind, path);
        if ext.is_none() && ["id", "schemas"].iter().any(|k| k.eq_ignore_ascii_case(&name)) {
            continue;
        }
        let target = match &ext {
            Some(urn) => match out.get_mut(urn).and_then(Value::as_object_mut) {
                Some(t) => t,
                None => continue,
            },
            None => &mut out,
        };
        let Some(key) = get_ci(target, &name).map(|(k, _)| k.clone()) else {
            continue;
        };
        match &sub {
            None => {
                target.remove(&key);
            }
            Some(sub) => {
                if let Some(v) = target.get_mut(&key) {
                    drop_sub(v, sub);
                }
            }
        }
    }
    out
}

fn keep_sub(value: &Value, sub: &str) -> Value {
    let pick = |v: &Value| {
        let mut m = Document::new();
        if let Some((k, x)) = v.as_object().and_then(|o| get_ci(o, sub)) {
            m.insert(k.clone(), x.clone());
        }
        Value::Object(m)
    };
    match value {
        Value::Array(items) => Value::Array(items.iter().map(pick).collect()),
        other => pick(other),
    }
}

fn drop_sub(value: &mut Value, sub: &str) {
    let drop = |v: &mut Value| {
        if let Some(o) = v.as_object_mut() {
            o.retain(|k, _| !k.eq_ignore_ascii_case(sub));
        }
    };
    match value {
        Value::Array(items) => items.iter_mut().for_each(drop),
        other => drop(other),
    }
}

/// Puts `value` at `key`, merging sub-attributes picked separately
/// (`name.givenName` and `name.familyName`).
fn merge_into(target: &mut Document, key: &str, value: Value) {
    match (target.get_mut(key), value) {
        (Some(Value::Object(have)), Value::Object(add)) => have.extend(add),
        (Some(Value::Array(have)), Value::Array(add)) if have.len() == add.len() => {
            for (h, a) in have.iter_mut().zip(add) {
                if let (Some(h), Value::Object(a)) = (h.as_object_mut(), a) {
                    h.extend(a);
                }
            }
        }
        (_, value) => {
            target.insert(key.to_owned(), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;
    use crate::identity::scim::schema::ENTERPRISE_USER_SCHEMA;

    fn obj(v: Value) -> Document {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn normalising_keeps_the_schema_spelling_and_drops_what_the_server_owns() {
        let doc = normalize(
            ScimKind::User,
            &obj(json!({
                "schemas": ["x"], "id": "client-chosen", "meta": {"created": "x"},
                "USERNAME": "ann@example.com",
                "Active": "False",
                "password": "hunter2",
                "groups": [{"value": "g"}],
                "emails": [{"Value": "ann@example.com", "primary": "True", "bogus": 1}],
                "name": {"givenName": "Ann", "familyName": null},
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"Department": "Ops"},
                "urn:ietf:params:scim:schemas:core:2.0:User:displayName": "Ann",
                "favouriteColour": "blue",
                "externalId": "e-1"
            })),
        )
        .unwrap();
        assert_eq!(
            Value::Object(doc),
            json!({
                "userName": "ann@example.com",
                "active": false,
                "emails": [{"value": "ann@example.com", "primary": true}],
                "name": {"givenName": "Ann"},
                ENTERPRISE_USER_SCHEMA: {"department": "Ops"},
                "displayName": "Ann",
                "externalId": "e-1"
            })
        );
    }

    #[test]
    fn wrong_types_are_refused_naming_the_attribute() {
        for (body, named) in [
            (json!({"userName": "a", "active": "maybe"}), "`active`"),
            (json!({"userName": "a", "displayName": 3}), "`displayName`"),
            (json!({"userName": "a", "name": "Ann"}), "`name`"),
            (
                json!({"userName": "a", "emails": [{"primary": "yes"}]}),
                "`emails.primary`",
            ),
            (json!({"userName": ["a", "b"]}), "`userName`"),
        ] {
            let err = normalize(ScimKind::User, &obj(body)).unwrap_err();
            assert_eq!(err.status, 400);
            assert!(err.detail.contains(named), "{err}");
        }
        let err = check_required(ScimKind::User, &obj(json!({"displayName": "Ann"}))).unwrap_err();
        assert!(err.detail.contains("`userName` is required"), "{err}");
        check_required(ScimKind::Group, &obj(json!({"members": []}))).unwrap();
    }

    #[test]
    fn projection_keeps_or_drops_what_was_asked() {
        let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let doc = obj(json!({
            "userName": "ann", "displayName": "Ann", "name": {"givenName": "Ann", "familyName": "Lee"},
            ENTERPRISE_USER_SCHEMA: {"department": "Ops", "division": "X"}
        }));
        let env = Envelope {
            id: "1",
            created: at,
            modified: at,
            version: 2,
            base: "https://b/scim/v2",
        };
        let rendered = render(ScimKind::User, &doc, &env);
        assert_eq!(rendered["meta"]["location"], "https://b/scim/v2/Users/1");
        assert_eq!(rendered["schemas"][1], ENTERPRISE_USER_SCHEMA);
        let only = project(
            ScimKind::User,
            rendered.clone(),
            &[
                parse_attribute_path("displayname").unwrap(),
                parse_attribute_path("name.familyName").unwrap(),
                parse_attribute_path(&format!("{ENTERPRISE_USER_SCHEMA}:department")).unwrap(),
            ],
            &[],
        );
        assert_eq!(
            Value::Object(only),
            json!({
                "schemas": rendered["schemas"], "id": "1", "displayName": "Ann",
                "name": {"familyName": "Lee"}, ENTERPRISE_USER_SCHEMA: {"department": "Ops"}
            })
        );
        let without = project(
            ScimKind::User,
            rendered,
            &[],
            &[
                parse_attribute_path("name").unwrap(),
                parse_attribute_path("id").unwrap(),
            ],
        );
        assert!(!without.contains_key("name"));
        assert!(without.contains_key("id"));
        assert!(parse_attribute_path("emails[type eq \"work\"]").is_err());
    }
}
