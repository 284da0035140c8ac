//! What the server publishes: the schemas it keeps (core User with the
//! enterprise extension, core Group, as RFC 7643 §8.7 defines them and the
//! `scim_v2` crate ships them), the resource types, and the service
//! provider configuration. Attribute names resolve case-insensitively
//! (RFC 7643 §2.1) to the schema's own spelling.

use std::sync::LazyLock;

use scim_v2::models::scim_schema::{get_schemas, Attributes, Schema, SubAttributes};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const ENTERPRISE_USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const LIST_RESPONSE_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const PATCH_OP_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const SERVICE_PROVIDER_CONFIG_SCHEMA: &str =
    "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
pub const RESOURCE_TYPE_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";

/// The largest page a list returns (`count` is capped to it).
pub const MAX_RESULTS: usize = 200;

/// A kind of resource the server keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ScimKind {
    User,
    Group,
}

impl ScimKind {
    pub const ALL: [ScimKind; 2] = [ScimKind::User, ScimKind::Group];

    pub fn name(self) -> &'static str {
        match self {
            ScimKind::User => "User",
            ScimKind::Group => "Group",
        }
    }

    /// The path segment under `/scim/v2`.
    pub fn endpoint(self) -> &'static str {
        match self {
            ScimKind::User => "Users",
            ScimKind::Group => "Groups",
        }
    }

    pub fn core_schema(self) -> &'static str {
        match self {
            ScimKind::User => USER_SCHEMA,
            ScimKind::Group => GROUP_SCHEMA,
        }
    }

    pub fn extensions(self) -> &'static [&'static str] {
        match self {
            ScimKind::User => &[ENTERPRISE_USER_SCHEMA],
            ScimKind::Group => &[],
        }
    }

    /// The attribute that names a resource: `userName` (unique) or
    /// `displayName` (of a group; not unique).
    pub fn naming_attribute(self) -> &'static str {
        match self {
            ScimKind::User => "userName",
            ScimKind::Group => "displayName",
        }
    }

    /// The extension URN `uri` spells, in its canonical form.
    pub fn extension(self, uri: &str) -> Option<&'static str> {
        self.extensions()
            .iter()
            .copied()
            .find(|e| e.eq_ignore_ascii_case(uri))
    }
}

static SCHEMAS: LazyLock<Vec<Schema>> =
    LazyLock::new(|| get_schemas(vec!["user", "enterprise_user", "group"]).unwrap_or_default());

/// The published schemas.
pub fn schemas() -> &'static [Schema] {
    &SCHEMAS
}

pub fn schema(id: &str) -> Option<&'static Schema> {
    schemas().iter().find(|s| s.id.eq_ignore_ascii_case(id))
}

/// A top-level attribute of `kind`: in the core schema when `uri` is none,
/// else in the schema `uri` names (core or one of the kind's extensions).
pub fn attribute(kind: ScimKind, uri: Option<&str>, name: &str) -> Option<Attr> {
    let schema_id = match uri {
        None => kind.core_schema(),
        Some(u) if u.eq_ignore_ascii_case(kind.core_schema()) => kind.core_schema(),
        Some(u) => kind.extension(u)?,
    };
    let def = schema(schema_id)?
        .attributes
        .iter()
        .find(|a| a.name.eq_ignore_ascii_case(name))?;
    Some(Attr {
        schema: schema_id,
        def,
    })
}

/// A top-level attribute and the schema it belongs to.
#[derive(Debug, Clone, Copy)]
pub struct Attr {
    pub schema: &'static str,
    pub def: &'static Attributes,
}

impl Attr {
    pub fn is_core(&self) -> bool {
        !self.schema.contains(":extension:")
    }

    pub fn sub(&self, name: &str) -> Option<&'static SubAttributes> {
        self.def
            .sub_attributes
            .as_slice()
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(name))
    }

    pub fn is_complex(&self) -> bool {
        self.def.r#type == "complex"
    }

    /// Attributes a client may not write (RFC 7643 §7 `readOnly`).
    pub fn read_only(&self) -> bool {
        self.def.mutability.as_deref() == Some("readOnly")
    }

    /// Attributes never returned (`password`); the server does not keep them.
    pub fn never_returned(&self) -> bool {
        self.def.returned.as_deref() == Some("never")
    }

    pub fn case_exact(&self) -> bool {
        self.def.case_exact.unwrap_or(false)
    }
}

/// `/ServiceProviderConfig`: PATCH and filtering supported; bulk, sort,
/// ETags and password changes not; bearer tokens.
pub fn service_provider_config(base: &str) -> Value {
    json!({
        "schemas": [SERVICE_PROVIDER_CONFIG_SCHEMA],
        "documentationUri": "https://github.com/jitgate/jitgate#scim-20-provisioning",
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": false},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "The token of a provisioning connection, created with `jitgate admin scim create`",
            "primary": true
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{base}/ServiceProviderConfig")
        }
    })
}

pub fn resource_type(kind: ScimKind, base: &str) -> Value {
    let extensions: Vec<Value> = kind
        .extensions()
        .iter()
        .map(|e| json!({"schema": e, "required": false}))
        .collect();
    json!({
        "schemas": [RESOURCE_TYPE_SCHEMA],
        "id": kind.name(),
        "name": kind.name(),
        "endpoint": format!("/{}", kind.endpoint()),
        "description": kind.name(),
        "schema": kind.core_schema(),
        "schemaExtensions": extensions,
        "meta": {
            "resourceType": "ResourceType",
            "location": format!("{base}/ResourceTypes/{}", kind.name())
        }
    })
}

/// A published schema with its location under `base`.
pub fn schema_document(schema: &Schema, base: &str) -> Value {
    let mut doc = serde_json::to_value(schema).unwrap_or(Value::Null);
    if let Some(map) = doc.as_object_mut() {
        map.insert(
            "schemas".into(),
            json!(["urn:ietf:params:scim:schemas:core:2.0:Schema"]),
        );
        map.insert(
            "meta".into(),
            json!({"resourceType": "Schema", "location": format!("{base}/Schemas/{}", schema.id)}),
        );
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_schemas_are_published() {
        let ids: Vec<&str> = schemas().iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, [USER_SCHEMA, ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA]);
    }

    #[test]
    fn attributes_resolve_without_regard_to_case() {
        let a = attribute(ScimKind::User, None, "USERNAME").unwrap();
        assert_eq!(a.def.name, "userName");
        assert!(a.is_core());
        let e = attribute(
            ScimKind::User,
            Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:user"),
            "department",
        )
        .unwrap();
        assert_eq!(e.schema, ENTERPRISE_USER_SCHEMA);
        assert!(attribute(ScimKind::Group, Some(ENTERPRISE_USER_SCHEMA), "department").is_none());
        assert_eq!(
            attribute(ScimKind::Group, None, "members")
                .unwrap()
                .sub("VALUE")
                .unwrap()
                .name,
            "value"
        );
        assert!(attribute(ScimKind::User, None, "password")
            .unwrap()
            .never_returned());
        assert!(attribute(ScimKind::User, None, "groups").unwrap().read_only());
    }
}
