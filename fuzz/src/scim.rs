//! SCIM 2.0 from a directory: list queries, filters, PATCH and resources.

use std::collections::HashMap;
use std::sync::LazyLock;

use jitgate_broker::api::scim::{object_body, patch_operations, ListParams};
use jitgate_broker::identity::scim::document::{
    check_required, normalize, parse_attribute_path, project, render, Document, Envelope,
};
use jitgate_broker::identity::scim::filter::{matches, naming_eq};
use jitgate_broker::identity::scim::{patch, ScimKind};
use serde_json::json;

/// A user and a group as a directory provisions them, normalised.
static RESOURCES: LazyLock<[(ScimKind, Document); 2]> = LazyLock::new(|| {
    let user = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "userName": "alice@example.com",
        "externalId": "00u1",
        "active": true,
        "displayName": "Alice Example",
        "name": {"givenName": "Alice", "familyName": "Example"},
        "emails": [{"value": "alice@example.com", "type": "work", "primary": true},
                   {"value": "alice@home.example", "type": "home"}],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "ops"}
    });
    let group = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": "ops-admins",
        "members": [{"value": "u-1", "display": "Alice"}, {"value": "u-2"}]
    });
    let doc = |kind, v: serde_json::Value| {
        let map = v.as_object().cloned().expect("an object");
        (kind, normalize(kind, &map).expect("a valid resource"))
    };
    [doc(ScimKind::User, user), doc(ScimKind::Group, group)]
});

/// A list's query string or a SearchRequest body, as the SCIM endpoints
/// read them; a filter that parses is evaluated against both resources.
pub fn scim_filter(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let query: HashMap<String, String> = [("filter".to_owned(), text.to_owned())].into();
        if let Ok(params) = ListParams::from_query(&query) {
            evaluate(&params);
        }
        if let Ok(query) = serde_urlencoded::from_str::<HashMap<String, String>>(text) {
            if let Ok(params) = ListParams::from_query(&query) {
                evaluate(&params);
            }
        }
        for path in text.split(',') {
            let _ = parse_attribute_path(path);
        }
    }
    if let Ok(params) = ListParams::from_search(data) {
        evaluate(&params);
    }
}

fn evaluate(params: &ListParams) {
    assert!(params.start_index >= 1, "startIndex below 1: {params:?}");
    for (kind, doc) in RESOURCES.iter() {
        if let Some(filter) = &params.filter {
            let _ = matches(*kind, filter, doc);
            let _ = naming_eq(*kind, filter);
        }
        let _ = project(*kind, doc.clone(), &params.attributes, &params.excluded);
    }
}

/// A PATCH body applied to each resource; what comes out is a resource a
/// directory could have sent (it normalises to itself).
pub fn scim_patch(data: &[u8]) {
    let Ok(operations) = patch_operations(data) else {
        return;
    };
    for (kind, doc) in RESOURCES.iter() {
        if let Ok(patched) = patch::apply(*kind, doc, &operations) {
            let _ = check_required(*kind, &patched);
            let again = normalize(*kind, &patched)
                .unwrap_or_else(|e| panic!("a patched {kind:?} does not normalise: {e:?}\n{patched:?}"));
            assert_eq!(again, patched, "a patched {kind:?} changed when normalised again");
        }
    }
}

/// A resource sent with POST or PUT: normalising is idempotent.
pub fn scim_document(data: &[u8]) {
    let Ok(body) = object_body(data) else {
        return;
    };
    for kind in [ScimKind::User, ScimKind::Group] {
        if let Ok(doc) = normalize(kind, &body) {
            let _ = check_required(kind, &doc);
            let again = normalize(kind, &doc)
                .unwrap_or_else(|e| panic!("a normalised {kind:?} does not normalise: {e:?}\n{doc:?}"));
            assert_eq!(again, doc, "normalising a {kind:?} twice changed it");
            let at = crate::now();
            let envelope = Envelope {
                id: "1",
                created: at,
                modified: at,
                version: 1,
                base: "https://broker.example/scim/v2",
            };
            let _ = project(kind, render(kind, &doc, &envelope), &[], &[]);
        }
    }
}
