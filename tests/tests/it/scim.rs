//! The SCIM 2.0 server: the `scim2` compliance checks (PyPI `scim2-cli`),
//! provisioning as Entra ID sends it, and deprovisioning that takes access
//! away at once.

use std::time::Instant;

use jitgate_broker::cli::client::ApiClient;
use jitgate_shared::v1::api::{CommandOp, EndReason, GrantState, RequestState, Role, UserView};
use jitgate_shared::v1::UserId;
use jitgate_tests::broker::TestBroker;
use jitgate_tests::fixtures::{policies, CATALOG};
use jitgate_tests::scim::Directory;
use jitgate_tests::test_tool;
use reqwest::StatusCode;
use serde_json::json;

use crate::support::{outbox, request, status};

async fn user(admin: &ApiClient, id: &str) -> UserView {
    admin
        .users()
        .await
        .unwrap()
        .into_iter()
        .find(|u| u.id.as_str() == id)
        .unwrap_or_else(|| panic!("no user {id}"))
}

#[tokio::test]
async fn the_scim2_compliance_checks_pass() {
    let b = TestBroker::start(CATALOG, &policies()).await;
    let dir = Directory::connect(&b, "compliance").await;
    let out = tokio::process::Command::new(test_tool("scim2"))
        .arg("--url")
        .arg(&dir.base)
        .arg("-h")
        .arg(format!("Authorization: Bearer {}", dir.token))
        .arg("test")
        // The broker's certificate is issued by its own CA.
        .env("SSL_CERT_FILE", b.ca())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "scim2 test failed:\n{report}");
    let passed = stdout.lines().filter(|l| l.starts_with("SUCCESS")).count();
    let other: Vec<&str> = stdout
        .lines()
        .filter(|l| !l.starts_with("SUCCESS") && !l.starts_with(' ') && !l.starts_with("Performing"))
        .collect();
    assert!(other.is_empty(), "not all checks succeeded: {other:?}\n{report}");
    // Discovery, CRUD, filtering, PATCH add/replace/remove on every attribute.
    assert!(passed > 100, "only {passed} checks ran:\n{report}");
    println!("scim2 test: {passed} checks passed");
}

#[tokio::test]
async fn a_directory_provisions_users_and_groups_as_entra_sends_them() {
    let b = TestBroker::start(CATALOG, &policies()).await;
    let admin = b.client("admin");
    let dir = Directory::connect(&b, "entra").await;

    // No token, a wrong one: refused with SCIM errors.
    let anon = dir.http.get(format!("{}/Users", dir.base)).send().await.unwrap();
    assert_eq!(anon.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        anon.headers()["content-type"],
        "application/scim+json",
        "errors are SCIM documents"
    );
    let wrong = Directory {
        token: "jgscim_not-a-token".into(),
        http: dir.http.clone(),
        base: dir.base.clone(),
    };
    let (code, body) = wrong.get("/Users").await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert_eq!(body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error");
    // An API token is not a SCIM token.
    let api = Directory {
        token: b.token("admin").into(),
        http: dir.http.clone(),
        base: dir.base.clone(),
    };
    assert_eq!(api.get("/Users").await.0, StatusCode::UNAUTHORIZED);

    // Entra's "test connection": a filter that matches nobody.
    assert!(dir
        .find("Users", r#"userName eq "nobody@example.com""#)
        .await
        .is_empty());

    let ann = dir.create_user("Ann.Lee@Example.com", "Ann", "Lee").await;
    let (code, body) = dir
        .post("/Users", json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "ann.lee@example.com"}))
        .await;
    assert_eq!(code, StatusCode::CONFLICT);
    assert_eq!(body["scimType"], "uniqueness");
    assert_eq!(
        dir.find("Users", r#"userName eq "ann.lee@example.com""#).await,
        std::slice::from_ref(&ann)
    );
    assert_eq!(
        dir.find("Users", r#"externalId eq "ext-Ann""#).await,
        std::slice::from_ref(&ann)
    );
    assert!(
        dir.find("Users", r#"externalId eq "EXT-ANN""#).await.is_empty(),
        "externalId is case exact"
    );
    assert_eq!(
        dir.find("Users", r#"displayName eq "ann lee""#).await,
        std::slice::from_ref(&ann)
    );

    // The jitgate user: default role, name and email from the directory.
    let u = user(&admin, "ann.lee@example.com").await;
    assert_eq!(u.roles, [Role::Requester].into());
    assert_eq!(u.display_name, "Ann Lee");
    assert_eq!(u.email.as_deref(), Some("ann.lee@example.com"));
    assert_eq!(u.provisioned_by.as_deref(), Some("entra"));
    assert!(!u.disabled);

    // A group makes a jitgate group of its members.
    let (code, group) = dir
        .post(
            "/Groups",
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "developers",
                   "externalId": "g-1", "members": []}),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{group}");
    let group_id = group["id"].as_str().unwrap().to_owned();
    let (code, body) = dir
        .patch(
            &format!("/Groups/{group_id}"),
            json!([{"op": "Add", "path": "members", "value": [{"value": ann}]}]),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(
        dir.find("Groups", r#"displayName eq "Developers""#).await,
        std::slice::from_ref(&group_id)
    );
    assert!(user(&admin, "ann.lee@example.com")
        .await
        .groups
        .contains("developers"));
    let (code, body) = dir
        .patch(
            &format!("/Groups/{group_id}"),
            json!([{"op": "Add", "path": "members", "value": [{"value": "not-a-user"}]}]),
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(body["detail"].as_str().unwrap().contains("not-a-user"), "{body}");

    // Entra's updates: a new name and work email.
    let (code, body) = dir
        .patch(
            &format!("/Users/{ann}"),
            json!([
                {"op": "Replace", "path": "displayName", "value": "Ann Lee-Smith"},
                {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "ann.smith@example.com"},
                {"op": "Replace", "path": "name.familyName", "value": "Lee-Smith"}
            ]),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["emails"][0]["value"], "ann.smith@example.com");
    let u = user(&admin, "ann.lee@example.com").await;
    assert_eq!(u.display_name, "Ann Lee-Smith");
    assert_eq!(u.email.as_deref(), Some("ann.smith@example.com"));

    // Users it never provisioned are not seen, and not touched.
    assert!(dir.find("Users", r#"userName eq "alice""#).await.is_empty());
    let (code, _) = dir.get("/Users/alice").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let alice = user(&admin, "alice").await;
    assert_eq!(alice.provisioned_by, None);

    // Pagination: 1-based startIndex and count, with the total.
    for n in 0..5 {
        dir.create_user(&format!("user{n}@example.com"), &format!("U{n}"), "Test")
            .await;
    }
    let (code, page) = dir.get("/Users?startIndex=2&count=2").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(page["totalResults"], 6);
    assert_eq!(page["startIndex"], 2);
    assert_eq!(page["itemsPerPage"], 2);
    let (_, all) = dir.get("/Users?count=100").await;
    assert_eq!(page["Resources"][0]["id"], all["Resources"][1]["id"]);
    let (code, body) = dir.get("/Users?filter=userName%20eq").await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(body["scimType"], "invalidFilter");

    // Entra removes a member with a value list.
    let (code, body) = dir
        .patch(
            &format!("/Groups/{group_id}"),
            json!([{"op": "Remove", "path": "members", "value": [{"value": ann}]}]),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert!(!user(&admin, "ann.lee@example.com")
        .await
        .groups
        .contains("developers"));

    // Another connection sees none of this one's resources.
    let other = Directory::connect(&b, "okta").await;
    assert!(other
        .find("Users", r#"userName eq "ann.lee@example.com""#)
        .await
        .is_empty());
    assert_eq!(other.get(&format!("/Users/{ann}")).await.0, StatusCode::NOT_FOUND);

    // Deleting the connection ends its token at once; its users stay.
    admin.delete_scim_connection("entra").await.unwrap();
    assert_eq!(dir.get("/Users").await.0, StatusCode::UNAUTHORIZED);
    assert!(!user(&admin, "ann.lee@example.com").await.disabled);
    let (code, _) = status(admin.delete_scim_connection("entra").await);
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, _) = status(b.client("alice").scim_connections().await);
    assert_eq!(code, StatusCode::FORBIDDEN);
}

/// The lifecycle catalogue with a second auto-approved resource.
fn catalog_with_two_auto_resources() -> String {
    format!(
        r#"{CATALOG}
[[resources]]
id = "auto-audit"
configuration = "aws-test"
group = "auto"
target = {{ kind = "aws_account_assignment", account_id = "777788889999", permission_set = "Audit" }}
"#
    )
}

#[tokio::test]
async fn deprovisioning_ends_grants_requests_and_tokens_at_once() {
    let b = TestBroker::start(&catalog_with_two_auto_resources(), &policies()).await;
    let admin = b.client("admin");
    let dir = Directory::connect(&b, "entra").await;
    let ann = dir.create_user("ann@example.com", "Ann", "Lee").await;
    let (code, body) = dir
        .post(
            "/Groups",
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "developers",
                   "members": [{"value": ann}]}),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    // The directory group is what the policy names (`developers` may request).
    let ann_id = UserId::new("ann@example.com").unwrap();
    let token = admin.issue_token(&ann_id).await.unwrap().token;
    let as_ann = admin.with_token(&token);
    let first = request(&as_ann, "auto-admin", 3600).await;
    let second = request(&as_ann, "auto-audit", 3600).await;
    assert_eq!(
        (first.state, second.state),
        (RequestState::Active, RequestState::Active)
    );
    // A second grant overlapping the first on one entitlement (one lease,
    // two holders): deprovisioning must still queue its revoke.
    let overlapping = request(&as_ann, "auto-admin", 1800).await;
    assert_eq!(overlapping.state, RequestState::Active);
    let pending = request(&as_ann, "dev-admin", 600).await;
    assert_eq!(pending.state, RequestState::Pending);

    // Entra deactivates with the string "False".
    let started = Instant::now();
    let (code, body) = dir
        .patch(
            &format!("/Users/{ann}"),
            json!([{"op": "Replace", "path": "active", "value": "False"}]),
        )
        .await;
    let took = started.elapsed();
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["active"], false);

    // By the time the directory hears back, it is all done.
    let (code, _) = status(as_ann.whoami().await);
    assert_eq!(code, StatusCode::UNAUTHORIZED, "the token stops working at once");
    for r in [&first, &second, &overlapping] {
        let g = admin.grant(r.grant.unwrap()).await.unwrap();
        assert_eq!(g.state, GrantState::Ended);
        assert_eq!(g.end_reason, Some(EndReason::Deprovisioned));
    }
    let queued = outbox(&admin).await;
    let revokes: Vec<_> = queued
        .iter()
        .filter(|c| c.op == CommandOp::Revoke)
        .map(|c| c.entitlement.target.clone())
        .collect();
    assert_eq!(
        revokes.len(),
        2,
        "one revoke per entitlement is queued: {revokes:?}"
    );
    assert!(
        queued.iter().all(|c| c.op == CommandOp::Revoke),
        "no grant command is left queued: {queued:?}"
    );
    assert_eq!(
        admin.request(pending.id).await.unwrap().state,
        RequestState::Cancelled
    );
    let u = user(&admin, "ann@example.com").await;
    assert!(u.disabled);
    println!(
        "deprovisioning with 3 active grants (two overlapping) and 1 pending request: SCIM PATCH answered in {} ms, revokes queued before the answer",
        took.as_millis()
    );

    // Active again: the user may sign in again, but nothing comes back.
    let (code, _) = dir
        .patch(
            &format!("/Users/{ann}"),
            json!([{"op": "Replace", "path": "active", "value": "True"}]),
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    assert!(!user(&admin, "ann@example.com").await.disabled);
    assert_eq!(status(as_ann.whoami().await).0, StatusCode::UNAUTHORIZED);
    let g = admin.grant(first.grant.unwrap()).await.unwrap();
    assert_eq!(g.state, GrantState::Ended);

    // DELETE deprovisions too.
    let new_token = admin.issue_token(&ann_id).await.unwrap().token;
    let as_ann = admin.with_token(&new_token);
    let third = request(&as_ann, "auto-admin", 600).await;
    let (code, _) = dir.delete(&format!("/Users/{ann}")).await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    assert_eq!(status(as_ann.whoami().await).0, StatusCode::UNAUTHORIZED);
    let g = admin.grant(third.grant.unwrap()).await.unwrap();
    assert_eq!(g.end_reason, Some(EndReason::Deprovisioned));
    assert_eq!(dir.get(&format!("/Users/{ann}")).await.0, StatusCode::NOT_FOUND);
    let (_, groups) = dir.get("/Groups").await;
    assert!(
        groups["Resources"][0].get("members").is_none(),
        "a deleted user leaves its groups: {groups}"
    );
    assert!(user(&admin, "ann@example.com").await.disabled);
}
