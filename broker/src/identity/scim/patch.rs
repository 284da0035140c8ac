//! PATCH (RFC 7644 §3.5.2) applied to a kept document, as directories send
//! it: operations with or without a path, value paths with filters
//! (`emails[type eq "work"].value`), extension attributes by URN, and the
//! leniencies real directories need:
//!
//! - `op` in any of the spellings `scim_v2` accepts (`Add`, `replace`, ...);
//! - booleans as strings (`"active": "False"`);
//! - `remove` of `members` with a `value` list removes just those members;
//! - `add` or `replace` on a value path that matches nothing creates the
//!   element the filter describes (Entra adds a work email this way), and a
//!   `remove` that matches nothing is a success (it is already gone).

use scim_v2::filter::{AttrExp, AttrPath, CompValue, CompareOp, PatchPath, PatchValuePath, ValFilter};
use scim_v2::models::others::{OperationTarget, PatchOperation};
use serde_json::{Map, Value};

use super::document::{check_required, normalize_sub, normalize_top, normalize_value, Document, EXTERNAL_ID};
use super::error::ScimError;
use super::filter::val_filter;
use super::schema::{attribute, Attr, ScimKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Replace,
    Remove,
}

/// Applies `operations` in order; nothing is applied when one fails.
pub fn apply(kind: ScimKind, doc: &Document, operations: &[PatchOperation]) -> Result<Document, ScimError> {
    let mut next = doc.clone();
    for operation in operations {
        match operation {
            PatchOperation::Add(OperationTarget::WithoutPath { value }) => {
                without_path(kind, &mut next, Op::Add, value)?
            }
            PatchOperation::Replace(OperationTarget::WithoutPath { value }) => {
                without_path(kind, &mut next, Op::Replace, value)?
            }
            PatchOperation::Add(OperationTarget::WithPath { path, value }) => {
                with_path(kind, &mut next, Op::Add, path, value.as_ref())?
            }
            PatchOperation::Replace(OperationTarget::WithPath { path, value }) => {
                with_path(kind, &mut next, Op::Replace, path, value.as_ref())?
            }
            PatchOperation::Remove { path, value } => {
                with_path(kind, &mut next, Op::Remove, path, value.as_ref())?
            }
        }
    }
    prune(&mut next);
    check_required(kind, &next)?;
    Ok(next)
}

fn without_path(
    kind: ScimKind,
    doc: &mut Document,
    op: Op,
    value: &Map<String, Value>,
) -> Result<(), ScimError> {
    for (key, v) in value {
        match normalize_top(kind, key, v)? {
            Some((name, v)) => put(doc, &name, v, op),
            None if op == Op::Replace && v.is_null() => {
                doc.retain(|k, _| !k.eq_ignore_ascii_case(key));
            }
            None => {}
        }
    }
    Ok(())
}

/// Puts a normalised value: `add` appends to a list and merges into an
/// object; `replace` overwrites, merging sub-attributes of a single complex
/// value (RFC 7644 §3.5.2.3: those not given are left unchanged).
fn put(target: &mut Document, name: &str, value: Value, op: Op) {
    match (target.get_mut(name), value) {
        (Some(Value::Array(have)), Value::Array(add)) if op == Op::Add => {
            for item in add {
                if !have.contains(&item) {
                    have.push(item);
                }
            }
        }
        (Some(Value::Object(have)), Value::Object(add)) => {
            for (k, v) in add {
                match (have.get_mut(&k), v) {
                    (Some(Value::Array(h)), Value::Array(a)) if op == Op::Add => {
                        h.extend(a);
                    }
                    (_, v) => {
                        have.insert(k, v);
                    }
                }
            }
        }
        (_, value) => {
            target.insert(name.to_owned(), value);
        }
    }
}

fn with_path(
    kind: ScimKind,
    doc: &mut Document,
    op: Op,
    path: &PatchPath,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    if op != Op::Remove && value.is_none() {
        return Err(ScimError::invalid_syntax(format!(
            "a `{op:?}` operation needs a `value`"
        )));
    }
    match path {
        PatchPath::Attr(p) => attr_path(kind, doc, op, p, value),
        PatchPath::Value(vp) => value_path(kind, doc, op, vp, value),
    }
}

/// The container a path's attribute lives in (the document, or an
/// extension object) and the attribute.
enum Target {
    /// An attribute the server does not keep (`password`): accepted, dropped.
    Dropped,
    ExternalId,
    /// The whole extension object.
    Extension(&'static str),
    Attr(Attr),
}

fn resolve(kind: ScimKind, p: &AttrPath) -> Result<Target, ScimError> {
    if p.uri.is_none() && p.name.eq_ignore_ascii_case(EXTERNAL_ID) {
        return Ok(Target::ExternalId);
    }
    if let Some(uri) = &p.uri {
        if let Some(urn) = kind.extension(&format!("{uri}:{}", p.name)) {
            return Ok(Target::Extension(urn));
        }
        if kind.extension(uri).is_none() && !uri.eq_ignore_ascii_case(kind.core_schema()) {
            return Err(ScimError::invalid_path(format!(
                "`{uri}` is not a schema of a {}",
                kind.name()
            )));
        }
    }
    let attr = attribute(kind, p.uri.as_deref(), &p.name)
        .ok_or_else(|| ScimError::invalid_path(format!("a {} has no attribute `{}`", kind.name(), p.name)))?;
    if attr.read_only() {
        return Err(ScimError::mutability(format!("`{}` is read-only", attr.def.name)));
    }
    if attr.never_returned() {
        return Ok(Target::Dropped);
    }
    Ok(Target::Attr(attr))
}

fn container<'a>(doc: &'a mut Document, attr: &Attr, create: bool) -> Option<&'a mut Document> {
    if attr.is_core() {
        return Some(doc);
    }
    if create && !doc.contains_key(attr.schema) {
        doc.insert(attr.schema.to_owned(), Value::Object(Document::new()));
    }
    doc.get_mut(attr.schema).and_then(Value::as_object_mut)
}

fn attr_path(
    kind: ScimKind,
    doc: &mut Document,
    op: Op,
    p: &AttrPath,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let attr = match resolve(kind, p)? {
        Target::Dropped => return Ok(()),
        Target::ExternalId => {
            match (op, value) {
                (Op::Remove, _) | (_, Some(Value::Null)) => {
                    doc.remove(EXTERNAL_ID);
                }
                (_, v) => {
                    if let Some((k, v)) = v
                        .map(|v| normalize_top(kind, EXTERNAL_ID, v))
                        .transpose()?
                        .flatten()
                    {
                        doc.insert(k, v);
                    }
                }
            }
            return Ok(());
        }
        Target::Extension(urn) => {
            if op == Op::Remove {
                doc.remove(urn);
            } else if let Some((k, v)) = value.map(|v| normalize_top(kind, urn, v)).transpose()?.flatten() {
                put(doc, &k, v, op);
            }
            return Ok(());
        }
        Target::Attr(attr) => attr,
    };
    let name = attr.def.name.as_str();
    let Some(target) = container(doc, &attr, op != Op::Remove) else {
        return Ok(());
    };
    if let Some(sub_name) = &p.sub_attr {
        let sub = attr
            .sub(sub_name)
            .ok_or_else(|| ScimError::invalid_path(format!("`{name}` has no sub-attribute `{sub_name}`")))?;
        let sub_value = match (op, value) {
            (Op::Remove, _) => None,
            (_, Some(v)) => normalize_sub(name, sub, v)?,
            (_, None) => None,
        };
        let set = |el: &mut Document| match &sub_value {
            Some(v) => {
                el.insert(sub.name.clone(), v.clone());
            }
            None => {
                el.remove(&sub.name);
            }
        };
        match target.get_mut(name) {
            Some(Value::Array(items)) => items.iter_mut().filter_map(Value::as_object_mut).for_each(set),
            Some(Value::Object(el)) => set(el),
            _ if sub_value.is_some() => {
                let mut el = Document::new();
                set(&mut el);
                let v = if attr.def.multi_valued {
                    Value::Array(vec![Value::Object(el)])
                } else {
                    Value::Object(el)
                };
                target.insert(name.to_owned(), v);
            }
            _ => {}
        }
        return Ok(());
    }
    match op {
        Op::Remove => match (value, target.get_mut(name)) {
            // Entra: `{"op":"Remove","path":"members","value":[{"value":"id"}]}`.
            (Some(v), Some(Value::Array(items))) if attr.def.multi_valued && !v.is_null() => {
                let gone = normalize_value(&attr, v)?.unwrap_or(Value::Array(Vec::new()));
                let gone = gone.as_array().map(Vec::as_slice).unwrap_or_default();
                items.retain(|item| !gone.iter().any(|g| same_value(g, item)));
            }
            _ => {
                target.remove(name);
            }
        },
        Op::Add | Op::Replace => match value.map(|v| normalize_value(&attr, v)).transpose()?.flatten() {
            Some(v) => put(target, name, v, op),
            None if op == Op::Replace => {
                target.remove(name);
            }
            None => {}
        },
    }
    Ok(())
}

/// The same element of a multi-valued attribute: equal `value`s when both
/// have one (without regard to case), else equal as a whole.
fn same_value(a: &Value, b: &Value) -> bool {
    let value = |v: &Value| v.get("value").and_then(Value::as_str).map(str::to_lowercase);
    match (value(a), value(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn value_path(
    kind: ScimKind,
    doc: &mut Document,
    op: Op,
    vp: &PatchValuePath,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let Target::Attr(attr) = resolve(kind, &vp.attr)? else {
        return Err(ScimError::invalid_path(format!(
            "`{}` is not a multi-valued attribute",
            vp.attr.name
        )));
    };
    let name = attr.def.name.clone();
    if !attr.def.multi_valued || !attr.is_complex() {
        return Err(ScimError::invalid_path(format!(
            "`{name}` is not a multi-valued complex attribute"
        )));
    }
    let sub = match &vp.sub_attr {
        Some(s) => Some(
            attr.sub(s)
                .ok_or_else(|| ScimError::invalid_path(format!("`{name}` has no sub-attribute `{s}`")))?,
        ),
        None => None,
    };
    let new_value = match (op, value, sub) {
        (Op::Remove, _, _) => None,
        (_, Some(v), Some(sub)) => normalize_sub(&name, sub, v)?,
        (_, Some(v), None) => {
            let v = normalize_value(&attr, v)?;
            v.and_then(|v| v.as_array().and_then(|a| a.first().cloned()))
        }
        (_, None, _) => None,
    };
    let Some(target) = container(doc, &attr, op != Op::Remove) else {
        return Ok(());
    };
    let mut items: Vec<Value> = target
        .get(&name)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let hit = |el: &Value| {
        el.as_object()
            .is_some_and(|o| val_filter(kind, Some(&name), &vp.filter, o))
    };
    let matched = items.iter().filter(|el| hit(el)).count();
    match op {
        Op::Remove => match sub {
            Some(sub) => items
                .iter_mut()
                .filter(|el| hit(el))
                .filter_map(Value::as_object_mut)
                .for_each(|o| {
                    o.remove(&sub.name);
                }),
            None => items.retain(|el| !hit(el)),
        },
        Op::Add | Op::Replace if matched > 0 => {
            for el in items.iter_mut().filter(|el| hit(el)) {
                let Some(o) = el.as_object_mut() else { continue };
                match (sub, &new_value) {
                    (Some(sub), Some(v)) => {
                        o.insert(sub.name.clone(), v.clone());
                    }
                    (Some(sub), None) => {
                        o.remove(&sub.name);
                    }
                    (None, Some(Value::Object(v))) => o.extend(v.clone()),
                    (None, _) => {}
                }
            }
        }
        Op::Add | Op::Replace => {
            let Some(mut el) = element_from(&attr, &vp.filter) else {
                return Err(ScimError::no_target(format!(
                    "no value of `{name}` matches the filter, and it does not describe one to create"
                )));
            };
            match (sub, new_value) {
                (Some(sub), Some(v)) => {
                    el.insert(sub.name.clone(), v);
                }
                (None, Some(Value::Object(v))) => el.extend(v),
                _ => return Ok(()),
            }
            items.push(Value::Object(el));
        }
    }
    target.insert(name, Value::Array(items));
    Ok(())
}

/// The element a filter of `eq` comparisons joined by `and` describes
/// (`type eq "work"`), to create when none matches.
fn element_from(attr: &Attr, filter: &ValFilter) -> Option<Document> {
    let mut el = Document::new();
    fn collect(attr: &Attr, f: &ValFilter, el: &mut Document) -> Option<()> {
        match f {
            ValFilter::Attr(AttrExp::Comparison(p, CompareOp::Eq, v)) => {
                let sub = attr.sub(&p.name)?;
                let v = match v {
                    CompValue::Str(s) => Value::String(s.clone()),
                    CompValue::True => Value::Bool(true),
                    CompValue::False => Value::Bool(false),
                    CompValue::Number(n) => Value::Number(n.clone()),
                    CompValue::Null => return None,
                };
                el.insert(sub.name.clone(), v);
                Some(())
            }
            ValFilter::And(items) => items.as_slice().iter().try_for_each(|f| collect(attr, f, el)),
            _ => None,
        }
    }
    collect(attr, filter, &mut el)?;
    Some(el)
}

/// Drops what a patch left empty: empty lists, objects and extension
/// objects.
fn prune(doc: &mut Document) {
    fn empty(v: &Value) -> bool {
        match v {
            Value::Null => true,
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
            _ => false,
        }
    }
    for v in doc.values_mut() {
        match v {
            Value::Object(o) => o.retain(|_, x| !empty(x)),
            Value::Array(a) => a.retain(|x| !empty(x)),
            _ => {}
        }
    }
    doc.retain(|_, v| !empty(v));
}

#[cfg(test)]
mod tests {
    use scim_v2::models::others::PatchOp;
    use serde_json::json;

    use super::*;

    fn user() -> Document {
        json!({
            "userName": "ann@example.com", "active": true, "displayName": "Ann",
            "emails": [{"value": "ann@example.com", "type": "work", "primary": true}],
            "name": {"givenName": "Ann", "familyName": "Lee"}
        })
        .as_object()
        .unwrap()
        .clone()
    }

    fn patch(kind: ScimKind, doc: &Document, ops: Value) -> Result<Document, ScimError> {
        let op: PatchOp = serde_json::from_value(json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops
        }))
        .unwrap();
        apply(kind, doc, &op.operations)
    }

    #[test]
    fn entra_deactivates_with_a_string() {
        let out = patch(
            ScimKind::User,
            &user(),
            json!([{"op": "Replace", "path": "active", "value": "False"}]),
        )
        .unwrap();
        assert_eq!(out["active"], false);
        let out = patch(
            ScimKind::User,
            &user(),
            json!([{"op": "replace", "value": {"active": "False"}}]),
        )
        .unwrap();
        assert_eq!(out["active"], false);
    }

    #[test]
    fn value_paths_update_or_create_the_element() {
        let out = patch(
            ScimKind::User,
            &user(),
            json!([
                {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "ann@new.example"},
                {"op": "Add", "path": "emails[type eq \"home\"].value", "value": "ann@home.example"},
                {"op": "Replace", "path": "name.givenName", "value": "Anne"},
                {"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "Ops"}
            ]),
        )
        .unwrap();
        assert_eq!(
            out["emails"],
            json!([
                {"value": "ann@new.example", "type": "work", "primary": true},
                {"type": "home", "value": "ann@home.example"}
            ])
        );
        assert_eq!(out["name"], json!({"givenName": "Anne", "familyName": "Lee"}));
        assert_eq!(
            out["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
            json!({"department": "Ops"})
        );
        let removed = patch(
            ScimKind::User,
            &out,
            json!([{"op": "remove", "path": "emails[type eq \"home\"]"}]),
        )
        .unwrap();
        assert_eq!(removed["emails"].as_array().unwrap().len(), 1);
        let again = patch(
            ScimKind::User,
            &removed,
            json!([{"op": "remove", "path": "emails[type eq \"home\"]"}]),
        )
        .unwrap();
        assert_eq!(again, removed, "removing what is gone is a success");
    }

    #[test]
    fn group_members_are_added_and_removed_as_entra_sends_them() {
        let group = json!({"displayName": "Ops", "members": [{"value": "u1"}]})
            .as_object()
            .unwrap()
            .clone();
        let out = patch(
            ScimKind::Group,
            &group,
            json!([{"op": "Add", "path": "members", "value": [{"value": "u2"}, {"value": "u1"}]}]),
        )
        .unwrap();
        assert_eq!(out["members"], json!([{"value": "u1"}, {"value": "u2"}]));
        let out = patch(
            ScimKind::Group,
            &out,
            json!([{"op": "Remove", "path": "members", "value": [{"value": "U1"}]}]),
        )
        .unwrap();
        assert_eq!(out["members"], json!([{"value": "u2"}]));
        let out = patch(
            ScimKind::Group,
            &out,
            json!([{"op": "remove", "path": "members[value eq \"u2\"]"}]),
        )
        .unwrap();
        assert!(!out.contains_key("members"));
        let out = patch(
            ScimKind::Group,
            &out,
            json!([{"op": "replace", "value": {"displayName": "Ops 2"}}]),
        )
        .unwrap();
        assert_eq!(out["displayName"], "Ops 2");
    }

    #[test]
    fn bad_patches_are_refused_naming_the_problem() {
        for (ops, scim_type, named) in [
            (
                json!([{"op": "replace", "path": "nickname2", "value": "x"}]),
                "invalidPath",
                "nickname2",
            ),
            (
                json!([{"op": "replace", "path": "groups", "value": []}]),
                "mutability",
                "groups",
            ),
            (
                json!([{"op": "replace", "path": "name.nope", "value": "x"}]),
                "invalidPath",
                "nope",
            ),
            (
                json!([{"op": "add", "path": "userName"}]),
                "invalidSyntax",
                "value",
            ),
            (
                json!([{"op": "remove", "path": "userName"}]),
                "invalidValue",
                "userName",
            ),
            (
                json!([{"op": "replace", "path": "active", "value": "sometimes"}]),
                "invalidValue",
                "active",
            ),
        ] {
            let err = match patch(ScimKind::User, &user(), ops.clone()) {
                Err(e) => e,
                Ok(d) => panic!("{ops} was applied: {d:?}"),
            };
            assert_eq!(
                err.scim_type.as_ref().unwrap().as_str(),
                scim_type,
                "{ops}: {err}"
            );
            assert!(err.detail.contains(named), "{ops}: {err}");
        }
        let err = patch(
            ScimKind::User,
            &user(),
            json!([{"op": "replace", "path": "emails[type eq \"other\" or type eq \"x\"].value", "value": "x"}]),
        )
        .unwrap_err();
        assert_eq!(err.scim_type.as_ref().unwrap().as_str(), "noTarget");
    }
}
