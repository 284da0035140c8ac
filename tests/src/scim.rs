//! A directory's side of SCIM 2.0 (as Entra ID's provisioning sends it):
//! a connection made as admin, then users and groups over HTTPS with its
//! bearer token.

use jitgate_shared::v1::api::{Role, ScimConnectionBody};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::broker::TestBroker;

/// A directory's view of the broker: SCIM over HTTPS with a bearer token.
pub struct Directory {
    pub http: reqwest::Client,
    /// The SCIM base URL (the broker's `/scim/v2`).
    pub base: String,
    /// The connection's bearer token.
    pub token: String,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Directory {
    /// Makes a SCIM connection `name` as admin (new users get the
    /// requester role) and a client with its token.
    pub async fn connect(b: &TestBroker, name: &str) -> Self {
        let created = b
            .client("admin")
            .create_scim_connection(&ScimConnectionBody {
                name: name.into(),
                default_roles: [Role::Requester].into(),
            })
            .await
            .unwrap();
        assert_eq!(created.base_url, format!("{}/scim/v2", b.url));
        let ca = reqwest::Certificate::from_pem(&std::fs::read(b.ca()).unwrap()).unwrap();
        let http = reqwest::Client::builder()
            .add_root_certificate(ca)
            .build()
            .unwrap();
        Directory {
            http,
            base: created.base_url,
            token: created.token,
        }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req
                .header("content-type", "application/scim+json")
                .body(body.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
        };
        (status, body)
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn patch(&self, path: &str, operations: Value) -> (StatusCode, Value) {
        let body =
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": operations});
        self.call(reqwest::Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    /// The ids a filtered list returns.
    pub async fn find(&self, endpoint: &str, filter: &str) -> Vec<String> {
        let (code, body) = self
            .get(&format!("/{endpoint}?filter={}", urlencode(filter)))
            .await;
        assert_eq!(code, StatusCode::OK, "{filter}: {body}");
        body["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Creates a user as Entra does (userName = UPN, work email, name).
    pub async fn create_user(&self, user_name: &str, given: &str, family: &str) -> String {
        let (code, body) = self
            .post(
                "/Users",
                json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
                    "externalId": format!("ext-{given}"),
                    "userName": user_name,
                    "active": true,
                    "displayName": format!("{given} {family}"),
                    "emails": [{"primary": true, "type": "work", "value": user_name.to_lowercase()}],
                    "name": {"formatted": format!("{given} {family}"), "familyName": family, "givenName": given},
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Ops"}
                }),
            )
            .await;
        assert_eq!(code, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
