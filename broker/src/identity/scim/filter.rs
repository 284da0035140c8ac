//! Evaluates a parsed SCIM filter (RFC 7644 §3.4.2.2) against a rendered
//! resource. Comparisons follow each attribute's `caseExact`; a
//! multi-valued attribute matches when any of its values does, and a
//! complex one without a sub-attribute compares its `value`.

use scim_v2::filter::{AttrExp, AttrPath, CompValue, CompareOp, Filter, ValFilter};
use serde_json::Value;

use super::document::{Document, EXTERNAL_ID};
use super::schema::{attribute, ScimKind};

pub fn matches(kind: ScimKind, filter: &Filter, doc: &Document) -> bool {
    match filter {
        Filter::Attr(exp) => attr_exp(kind, exp, doc),
        Filter::ValuePath(vp) => {
            let (value, top) = top_value(kind, &vp.attr, doc);
            elements(value).any(|el| {
                el.as_object()
                    .is_some_and(|el| val_filter(kind, top.as_deref(), &vp.filter, el))
            })
        }
        Filter::Not(inner) => !matches(kind, inner, doc),
        Filter::And(items) => items.as_slice().iter().all(|f| matches(kind, f, doc)),
        Filter::Or(items) => items.as_slice().iter().any(|f| matches(kind, f, doc)),
    }
}

/// `userName eq "x"` (or `displayName eq "x"` for groups): the one form the
/// store answers from its name index.
pub fn naming_eq(kind: ScimKind, filter: &Filter) -> Option<&str> {
    match filter {
        Filter::Attr(AttrExp::Comparison(path, CompareOp::Eq, CompValue::Str(s)))
            if path.sub_attr.is_none()
                && path
                    .uri
                    .as_deref()
                    .is_none_or(|u| u.eq_ignore_ascii_case(kind.core_schema()))
                && path.name.eq_ignore_ascii_case(kind.naming_attribute()) =>
        {
            Some(s)
        }
        _ => None,
    }
}

/// Evaluates a filter inside brackets against one element of a
/// multi-valued attribute named `parent`.
pub fn val_filter(kind: ScimKind, parent: Option<&str>, filter: &ValFilter, element: &Document) -> bool {
    match filter {
        ValFilter::Attr(exp) => {
            let (path, op) = match exp {
                AttrExp::Present(p) => (p, None),
                AttrExp::Comparison(p, op, v) => (p, Some((op, v))),
            };
            let value = get_ci(element, &path.name);
            let exact = parent
                .and_then(|p| attribute(kind, None, p))
                .and_then(|a| a.sub(&path.name))
                .and_then(|s| s.case_exact)
                .unwrap_or(false);
            match (value, op) {
                (None, _) => false,
                (Some(v), None) => present(v),
                (Some(v), Some((op, target))) => compare(v, op, target, exact),
            }
        }
        ValFilter::Not(inner) => !val_filter(kind, parent, inner, element),
        ValFilter::And(items) => items
            .as_slice()
            .iter()
            .all(|f| val_filter(kind, parent, f, element)),
        ValFilter::Or(items) => items
            .as_slice()
            .iter()
            .any(|f| val_filter(kind, parent, f, element)),
    }
}

fn attr_exp(kind: ScimKind, exp: &AttrExp, doc: &Document) -> bool {
    let (path, op) = match exp {
        AttrExp::Present(p) => (p, None),
        AttrExp::Comparison(p, op, v) => (p, Some((op, v))),
    };
    let exact = case_exact(kind, path);
    let (value, _) = top_value(kind, path, doc);
    let values: Vec<&Value> = match &path.sub_attr {
        Some(sub) => elements(value)
            .filter_map(|el| el.as_object().and_then(|o| get_ci(o, sub)))
            .collect(),
        None => elements(value)
            .map(|el| match el.as_object() {
                Some(o) => get_ci(o, "value").unwrap_or(el),
                None => el,
            })
            .collect(),
    };
    match op {
        None => values.iter().any(|v| present(v)),
        Some((op, target)) => values.iter().any(|v| compare(v, op, target, exact)),
    }
}

/// The top-level value a path names, and the attribute's canonical name.
fn top_value<'a>(kind: ScimKind, path: &AttrPath, doc: &'a Document) -> (Option<&'a Value>, Option<String>) {
    if let Some(urn) = path.uri.as_deref().and_then(|u| kind.extension(u)) {
        let ext = doc.get(urn).and_then(Value::as_object);
        return (ext.and_then(|e| get_ci(e, &path.name)), None);
    }
    let canonical = attribute(kind, None, &path.name).map(|a| a.def.name.clone());
    (get_ci(doc, &path.name), canonical)
}

fn elements(value: Option<&Value>) -> Box<dyn Iterator<Item = &Value> + '_> {
    match value {
        None => Box::new(std::iter::empty()),
        Some(Value::Array(items)) => Box::new(items.iter()),
        Some(v) => Box::new(std::iter::once(v)),
    }
}

fn case_exact(kind: ScimKind, path: &AttrPath) -> bool {
    if path.name.eq_ignore_ascii_case("id") || path.name.eq_ignore_ascii_case(EXTERNAL_ID) {
        return true;
    }
    let ext = path.uri.as_deref().and_then(|u| kind.extension(u));
    let Some(attr) = attribute(kind, ext, &path.name) else {
        return false;
    };
    match &path.sub_attr {
        Some(sub) => attr.sub(sub).and_then(|s| s.case_exact).unwrap_or(false),
        None => attr.case_exact(),
    }
}

fn get_ci<'a>(map: &'a Document, key: &str) -> Option<&'a Value> {
    map.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

fn present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

fn compare(v: &Value, op: &CompareOp, target: &CompValue, exact: bool) -> bool {
    use std::cmp::Ordering;
    let ordering: Option<Ordering> = match (v, target) {
        (Value::String(have), CompValue::Str(want)) => {
            let (have, want) = if exact {
                (have.clone(), want.clone())
            } else {
                (have.to_lowercase(), want.to_lowercase())
            };
            match op {
                CompareOp::Co => return have.contains(&want),
                CompareOp::Sw => return have.starts_with(&want),
                CompareOp::Ew => return have.ends_with(&want),
                _ => Some(have.cmp(&want)),
            }
        }
        (Value::Bool(have), CompValue::True) => Some(have.cmp(&true)),
        (Value::Bool(have), CompValue::False) => Some(have.cmp(&false)),
        (Value::Number(have), CompValue::Number(want)) => have
            .as_f64()
            .zip(want.as_f64())
            .and_then(|(h, w)| h.partial_cmp(&w)),
        (Value::Null, CompValue::Null) => Some(Ordering::Equal),
        _ => None,
    };
    let Some(ord) = ordering else {
        return matches!(op, CompareOp::Ne);
    };
    match op {
        CompareOp::Eq => ord == Ordering::Equal,
        CompareOp::Ne => ord != Ordering::Equal,
        CompareOp::Gt => ord == Ordering::Greater,
        CompareOp::Ge => ord != Ordering::Less,
        CompareOp::Lt => ord == Ordering::Less,
        CompareOp::Le => ord != Ordering::Greater,
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn doc() -> Document {
        json!({
            "id": "9f1", "externalId": "Ext-1", "userName": "Ann@Example.com", "active": false,
            "displayName": "Ann Lee",
            "emails": [{"value": "ann@example.com", "type": "work"}, {"value": "a@home.example", "type": "home"}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Ops"}
        })
        .as_object()
        .unwrap()
        .clone()
    }

    fn check(f: &str) -> bool {
        matches(ScimKind::User, &f.parse().unwrap(), &doc())
    }

    #[test]
    fn the_forms_directories_send() {
        assert!(
            check(r#"userName eq "ann@example.com""#),
            "userName is not case exact"
        );
        assert!(check(r#"externalId eq "Ext-1""#));
        assert!(!check(r#"externalId eq "ext-1""#), "externalId is case exact");
        assert!(check(r#"displayName eq "ann lee""#));
        assert!(!check(r#"userName eq "bob@example.com""#));
        assert!(check(r#"active eq false"#));
        assert!(check(r#"emails[type eq "work" and value co "example.com"]"#));
        assert!(!check(r#"emails[type eq "other"]"#));
        assert!(check(r#"emails co "home.example""#));
        assert!(check(r#"emails.value ew "@home.example""#));
        assert!(check(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "ops""#
        ));
        assert!(check(r#"title pr or userName sw "ann""#));
        assert!(!check(r#"title pr"#));
        assert!(check(r#"not (userName eq "bob")"#));
        assert!(check(r#"id eq "9f1" and active ne true"#));
    }

    #[test]
    fn the_name_index_answers_only_plain_equality_on_the_naming_attribute() {
        let f = |s: &str| s.parse::<Filter>().unwrap();
        assert_eq!(naming_eq(ScimKind::User, &f(r#"UserName eq "a""#)), Some("a"));
        assert_eq!(
            naming_eq(ScimKind::Group, &f(r#"displayName eq "Ops""#)),
            Some("Ops")
        );
        assert_eq!(naming_eq(ScimKind::User, &f(r#"displayName eq "a""#)), None);
        assert_eq!(naming_eq(ScimKind::User, &f(r#"userName co "a""#)), None);
        assert_eq!(
            naming_eq(ScimKind::User, &f(r#"userName eq "a" or userName eq "b""#)),
            None
        );
    }
}
