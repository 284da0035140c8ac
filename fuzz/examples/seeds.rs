//! Writes the seed inputs of every fuzz target into `fuzz/seeds/<target>/`
//! (replaced on each run). The inputs are those the tests use: frames,
//! signed commands, SCIM bodies and filters, ID tokens signed by the fuzz
//! IdP key, the quickstart's catalogue and policies, API bodies and
//! queries. SAML responses come from `fuzz/saml_seeds.py` (pysaml2).
//!
//! Run: `cargo run -p jitgate-fuzz --example seeds`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::{Path, PathBuf};

use jitgate_fuzz::sign_in::{CLIENT_ID, ISSUER, NONCE};
use jitgate_shared::v1::protocol::BrokerMessage;
use jitgate_shared::v1::signing::{CommandBody, CommandSigner};
use serde_json::{json, Value};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut written = 0;
    let mut seed = |target: &str, name: &str, data: &[u8]| {
        assert!(jitgate_fuzz::target(target).is_some(), "no target {target}");
        let dir: PathBuf = root.join("seeds").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), data).unwrap();
        written += 1;
    };
    let text = |v: Value| v.to_string().into_bytes();

    // The agent channel.
    let entitlement = json!({"configuration": "aws-main",
        "target": {"kind": "aws_account_assignment", "account_id": "111122223333", "permission_set": "Admin"},
        "principal": "alice@example.com"});
    let entra = json!({"configuration": "entra-main",
        "target": {"kind": "entra_group_membership", "group_id": "0f9d1c1e-6f4f-4b5e-9a55-3c5b1f7a2f10"},
        "principal": "alice@example.com"});
    for (name, frame) in [
        (
            "hello",
            json!({"type": "hello", "version": 1, "configuration": "aws-main",
            "capabilities": ["aws_account_assignment", "list"], "agent_version": "0.1.0"}),
        ),
        (
            "result-applied",
            json!({"type": "result", "command": "c-1", "outcome": {"outcome": "applied"}}),
        ),
        (
            "result-failed",
            json!({"type": "result", "command": "c-2", "outcome": {"outcome": "failed",
            "reason": "throttled", "retryable": true, "retry_after_seconds": 5, "kind": "throttled"}}),
        ),
        (
            "result-refused",
            json!({"type": "result", "command": "c-3", "outcome": {"outcome": "refused", "reason": "expired"}}),
        ),
        (
            "inventory",
            json!({"type": "inventory", "request": 7, "entitlements": [entitlement, entra], "more": true}),
        ),
        (
            "holdings",
            json!({"type": "holdings", "request": 8, "held": [entitlement], "absent": [entra]}),
        ),
        (
            "self-revoked",
            json!({"type": "self_revoked", "command": "c-4",
            "grant": "0191e3a2-7c4b-7000-8000-000000000001", "entitlement": entitlement,
            "deadline": "2027-01-15T08:00:00Z", "at": "2027-01-15T08:00:01Z", "outcome": {"outcome": "revoked"}}),
        ),
        (
            "renew",
            json!({"type": "renew_certificate", "csr_pem": "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"}),
        ),
        ("heartbeat", json!({"type": "heartbeat", "seq": 42})),
        ("error", json!({"type": "error", "message": "unknown frame"})),
    ] {
        seed("agent_frame", name, &text(frame));
    }

    let signer = CommandSigner::from_secret(&[7; 32]);
    let body = |op: &str, extra: Value| -> CommandBody {
        let mut b = json!({"id": format!("grant-{op}-1"), "op": op,
            "grant": "0191e3a2-7c4b-7000-8000-000000000001", "entitlement": entitlement,
            "not_before": "2027-01-15T07:00:00Z", "not_after": "2027-01-15T09:00:00Z",
            "issued_at": "2027-01-15T07:00:00Z"});
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(b).unwrap()
    };
    let commands = [
        ("grant", body("grant", json!({"cap_session_duration": true}))),
        ("revoke", body("revoke", json!({"end_sign_in_sessions": true}))),
        (
            "grant-provision",
            body(
                "grant",
                json!({"provision_on_demand": {
            "service_principal_id": "sp-1", "job_id": "aws.1", "rule_id": "rule-1"}}),
            ),
        ),
    ];
    for (name, b) in &commands {
        seed(
            "signed_command",
            name,
            serde_json::to_string(b).unwrap().as_bytes(),
        );
        let frame = BrokerMessage::Command {
            command: signer.sign(b),
        };
        seed(
            "broker_frame",
            &format!("command-{name}"),
            serde_json::to_string(&frame).unwrap().as_bytes(),
        );
    }
    for (name, frame) in [
        (
            "welcome",
            json!({"type": "welcome", "version": 1, "heartbeat_seconds": 15}),
        ),
        (
            "list",
            json!({"type": "list", "request": 3, "targets": [
            {"kind": "aws_account_assignment", "account_id": "111122223333", "permission_set": "Admin"},
            {"kind": "entra_group_membership", "group_id": "g-1"}]}),
        ),
        (
            "check",
            json!({"type": "check", "request": 4, "entitlements": [entitlement]}),
        ),
        ("acknowledged", json!({"type": "acknowledged", "command": "c-4"})),
        (
            "certificate",
            json!({"type": "certificate", "certificate_pem": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", "not_after": "2027-02-15T00:00:00Z"}),
        ),
        ("heartbeat", json!({"type": "heartbeat", "seq": 9})),
        (
            "error",
            json!({"type": "error", "code": "wrong_configuration", "message": "hello names another configuration"}),
        ),
    ] {
        seed("broker_frame", name, &text(frame));
    }

    // SCIM, as Okta and Entra send it.
    for (name, filter) in [
        ("eq", r#"userName eq "alice@example.com""#),
        ("complex", r#"emails[type eq "work" and value co "@example.com"]"#),
        ("members", r#"members[value eq "u-1"]"#),
        ("or-not", r#"(active eq true or displayName sw "Al") and not (title pr)"#),
        ("extension", r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "ops""#),
        ("meta", r#"meta.lastModified gt "2026-01-01T00:00:00Z""#),
        ("external", r#"externalId eq "00u1""#),
        ("query", "filter=userName%20eq%20%22alice%40example.com%22&startIndex=1&count=10&attributes=userName,emails.value"),
        ("excluded", "excludedAttributes=members&count=-1"),
    ] {
        seed("scim_filter", name, filter.as_bytes());
    }
    seed(
        "scim_filter",
        "search",
        &text(json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        "filter": "displayName eq \"ops-admins\"", "startIndex": 1, "count": 5,
        "attributes": ["displayName", "members"]})),
    );
    for (name, ops) in [
        (
            "okta-deactivate",
            json!([{"op": "replace", "value": {"active": false}}]),
        ),
        (
            "entra-replace",
            json!([{"op": "Replace", "path": "active", "value": "False"},
            {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "a@example.com"}]),
        ),
        (
            "add-members",
            json!([{"op": "add", "path": "members", "value": [{"value": "u-3"}]}]),
        ),
        (
            "remove-member",
            json!([{"op": "remove", "path": "members[value eq \"u-1\"]"}]),
        ),
        (
            "name",
            json!([{"op": "replace", "path": "name.givenName", "value": "Alicia"},
            {"op": "replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "sre"}]),
        ),
    ] {
        seed(
            "scim_patch",
            name,
            &text(json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops})),
        );
    }
    for (name, doc) in [
        (
            "user",
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "bob@example.com", "externalId": "00u2", "active": true,
            "name": {"givenName": "Bob", "familyName": "Example", "formatted": "Bob Example"},
            "emails": [{"value": "bob@example.com", "type": "work", "primary": true}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"manager": {"value": "u-1"}}}),
        ),
        (
            "group",
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "sre", "members": [{"value": "u-1", "$ref": "https://b/scim/v2/Users/u-1"}]}),
        ),
        (
            "meta",
            json!({"id": "x", "meta": {"resourceType": "User"}, "userName": "c", "active": "True"}),
        ),
    ] {
        seed("scim_document", name, &text(doc));
    }

    // Sign-in.
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(include_bytes!("../keys/idp.key")).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("fuzz".into());
    let claims = json!({"iss": ISSUER, "aud": CLIENT_ID, "sub": "00u1", "nonce": NONCE,
        "iat": 1_800_000_000 - 60, "exp": 1_800_000_000 + 3600,
        "email": "alice@example.com", "email_verified": true, "name": "Alice",
        "groups": ["sre", "people"], "role": "approver"});
    let token = jsonwebtoken::encode(&header, &claims, &key).unwrap();
    seed("oidc_id_token", "valid", token.as_bytes());
    let mut expired = claims.clone();
    expired["exp"] = json!(1_800_000_000 - 10);
    seed(
        "oidc_id_token",
        "expired",
        jsonwebtoken::encode(&header, &expired, &key).unwrap().as_bytes(),
    );
    let mut other_aud = claims.clone();
    other_aud["aud"] = json!(["jitgate", "someone-else"]);
    seed(
        "oidc_id_token",
        "audiences",
        jsonwebtoken::encode(&header, &other_aud, &key)
            .unwrap()
            .as_bytes(),
    );
    let payload = token.split('.').nth(1).unwrap();
    seed(
        "oidc_id_token",
        "alg-none",
        format!("eyJhbGciOiJub25lIn0.{payload}.").as_bytes(),
    );
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"fuzz-secret"),
    )
    .unwrap();
    seed("oidc_id_token", "hs256", hs.as_bytes());
    for (name, c) in [
        ("full", claims.clone()),
        (
            "unverified",
            json!({"sub": "00u2", "email": "bob@EXAMPLE.com", "email_verified": false}),
        ),
        (
            "number-key",
            json!({"sub": 12345, "email": "c@example.com", "groups": "one-group", "role": ["admin", "nope"]}),
        ),
        (
            "other-domain",
            json!({"sub": "x", "email": "mallory@example.com.evil", "email_verified": true}),
        ),
    ] {
        seed("sign_in_claims", name, &text(c));
    }
    for (name, path) in [
        ("console", "/console/requests?state=pending"),
        ("dot-segments", "/console/../api/v1/whoami"),
        ("double-slash", "//evil.example/"),
        ("backslash", "/\\evil.example"),
        ("tab", "/\t/evil.example"),
        ("absolute", "https://evil.example/"),
        ("encoded", "/%2F%2Fevil.example"),
        ("fragment", "/console#x"),
    ] {
        seed("return_to", name, path.as_bytes());
    }

    // What administrators load.
    seed(
        "catalogue",
        "quickstart",
        include_bytes!("../../deploy/quickstart/catalog.toml"),
    );
    seed(
        "catalogue",
        "chain-cycle",
        br#"
[[configurations]]
id = "a"
kind = "aws_identity_center"
identity_mode = { mode = "federated", directory = "b" }
[[configurations]]
id = "b"
kind = "entra_id"
identity_mode = { mode = "federated", directory = "a" }
[[resources]]
id = "r"
configuration = "a"
target = { kind = "aws_account_assignment", account_id = "111122223333", permission_set = "A" }
"#,
    );
    seed(
        "workflows",
        "policies",
        include_bytes!("../../policies/workflows.toml"),
    );
    seed(
        "workflows",
        "groups",
        br#"
[defaults]
max_duration = "1h"
pending_ttl = "10m"
extension = { allowed = true, requires_approval = false, max_total = "1h" }
[group.prod]
approvals_required = 2
[group.ticketed]
auto_approve = true
approvals_required = 0
ticket_pattern = "OPS-[0-9]+"
"#,
    );
    seed(
        "cedar_policies",
        "policies",
        include_bytes!("../../policies/access.cedar"),
    );
    seed("cedar_policies", "break-glass", br#"
@id("oncall-break-glass")
permit (principal in Jitgate::Group::"oncall", action == Jitgate::Action::"break_glass", resource == Jitgate::Resource::"aws-sandbox-admin")
when { context.duration_seconds <= 3600 };
forbid (principal, action == Jitgate::Action::"approve", resource) unless { principal in Jitgate::Group::"sre" };
"#);

    // The REST API: the first byte picks the type (see fuzz/src/api.rs).
    let bodies = [
        json!({"resource": "aws-sandbox-admin", "duration_seconds": 3600, "justification": "INC-1", "ticket": "OPS-1"}),
        json!({"comment": "looks right"}),
        json!({"reason": "done"}),
        json!({"duration_seconds": 1800, "justification": "more"}),
        json!({"reason": "incident over"}),
        json!({"id": "carol", "display_name": "Carol", "email": "carol@example.com", "roles": ["requester"], "groups": ["sre"]}),
        json!({"id": "aws-x", "kind": "aws_identity_center", "identity_mode": {"mode": "direct"}}),
        json!({"id": "r-x", "configuration": "aws-x", "target": {"kind": "aws_account_assignment", "account_id": "111122223333", "permission_set": "A"}}),
        json!({"name": "okta", "default_roles": ["requester"]}),
        json!({"configuration": "aws-sandbox", "ttl_seconds": 600}),
        json!({"token": "jt_abc", "csr_pem": "-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n"}),
        json!({"email": "alice@example.com", "redirect_uri": "http://127.0.0.1:9999/callback", "code_challenge": "abc"}),
        json!({"provider": "corp"}),
        json!({"handle": "h-1"}),
        json!({"state": "s-1", "code": "c-1", "code_verifier": "v"}),
    ];
    for (i, b) in bodies.iter().enumerate() {
        let mut data = vec![i as u8];
        data.extend(b.to_string().into_bytes());
        seed("api_body", &format!("{i:02}"), &data);
    }
    let queries = [
        "person=alice&resource=aws-sandbox-admin&kind=grant_ended&since=2026-11-01T00:00:00Z&until=2026-11-29T09:30&limit=50",
        "state=pending&requester=alice&limit=10",
        "state=active&user=alice&after=0191e3a2-7c4b-7000-8000-000000000001",
        "limit=5",
        "user=alice",
        "user=alice&all=true",
        "resource=aws-sandbox-admin&user=alice",
        "state=st-1&code=abc&iss=https%3A%2F%2Fidp.example",
        "email=alice%40example.com&provider=corp&return_to=%2Fconsole%2Frequests",
        "return_to=%2Fconsole%2F..%2F%2Fevil",
        "SAMLResponse=PHNhbWxwOlJlc3BvbnNlLz4%3D&RelayState=r-1",
    ];
    for (i, q) in queries.iter().enumerate() {
        let mut data = vec![i as u8];
        data.extend(q.as_bytes());
        seed("api_query", &format!("{i:02}"), &data);
    }
    // What `jitgate-broker restore` reads: a whole backup, and one cut
    // short.
    let entries = [
        jitgate_broker::store::dump::Entry::Known { id: "c-1".into() },
        jitgate_broker::store::dump::Entry::Known { id: "c-2".into() },
    ];
    let mut tally = jitgate_broker::store::dump::Tally::default();
    let mut backup = String::new();
    backup += &json!({"backup": {"backup_format": 1, "store_format": 1, "broker_version": "0.1.0",
        "taken_at": "2026-12-07T00:00:00Z"}})
    .to_string();
    backup.push('\n');
    for name in jitgate_broker::store::backup::KEY_FILES {
        backup += &json!({"key_file": {"name": name, "base64": "a2V5"}}).to_string();
        backup.push('\n');
    }
    for e in &entries {
        tally.add(e);
        backup += &json!({ "entry": e }).to_string();
        backup.push('\n');
    }
    let whole = format!(
        "{backup}{}\n",
        json!({"end": {"entries": tally.entries, "digest": tally.digest()}})
    );
    assert!(jitgate_broker::store::backup::check(&mut whole.as_bytes()).is_ok());
    seed("backup_file", "whole", whole.as_bytes());
    seed("backup_file", "cut-short", backup.as_bytes());
    println!("wrote {written} seeds under {}", root.join("seeds").display());
}
