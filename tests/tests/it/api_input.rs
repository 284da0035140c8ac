//! Bad input is refused with a 4xx naming the field, and changes nothing.

use jitgate_shared::v1::{ErrorBody, ErrorCode};
use jitgate_tests::broker::TestBroker;
use jitgate_tests::fixtures::{policies, CATALOG};
use reqwest::StatusCode;

async fn raw(b: &TestBroker) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(b.ca()).unwrap()).unwrap();
    reqwest::Client::builder().tls_certs_only([ca]).build().unwrap()
}

async fn post(
    b: &TestBroker,
    token: Option<&str>,
    path: &str,
    body: Vec<u8>,
) -> (StatusCode, Option<ErrorBody>) {
    let mut req = raw(b)
        .await
        .post(format!("{}{path}", b.url))
        .header("content-type", "application/json")
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.ok())
}

#[tokio::test]
async fn malformed_bodies_are_refused_and_change_nothing() {
    let b = TestBroker::start(CATALOG, &policies()).await;
    let alice = b.token("alice");
    let cases: Vec<(&str, Vec<u8>, StatusCode, Option<&str>)> = vec![
        (
            "unknown field",
            br#"{"resource":"dev-admin","duration_seconds":60,"justification":"x","durration":5}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            Some("durration"),
        ),
        (
            "wrong type",
            br#"{"resource":"dev-admin","duration_seconds":"sixty"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            Some("duration_seconds"),
        ),
        (
            "missing field",
            br#"{"duration_seconds":60}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            Some("resource"),
        ),
        (
            "not json",
            b"resource=dev-admin".to_vec(),
            StatusCode::BAD_REQUEST,
            None,
        ),
        (
            "bad id",
            br#"{"resource":"Dev Admin","duration_seconds":60}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            Some("resource"),
        ),
        (
            "unknown resource",
            br#"{"resource":"nope","duration_seconds":60}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            Some("resource"),
        ),
        (
            "too long",
            br#"{"resource":"dev-admin","duration_seconds":999999}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            Some("duration_seconds"),
        ),
        (
            "oversized",
            // Just over the 64 KiB limit: small enough to fit the socket
            // buffer, so the client reads the 413 instead of a broken pipe.
            format!(
                r#"{{"resource":"dev-admin","justification":"{}"}}"#,
                "x".repeat(70_000)
            )
            .into_bytes(),
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
        ),
    ];
    for (what, body, want, field) in cases {
        let (status, err) = post(&b, Some(alice), "/api/v1/requests", body).await;
        assert_eq!(status, want, "{what}");
        let err = err.unwrap_or_else(|| panic!("{what}: no JSON error body"));
        assert_eq!(err.field.as_deref(), field, "{what}: {}", err.message);
        assert!(!err.message.is_empty());
        if want == StatusCode::PAYLOAD_TOO_LARGE {
            assert_eq!(err.code, ErrorCode::PayloadTooLarge);
        } else {
            assert_eq!(err.code, ErrorCode::InvalidInput, "{what}");
        }
    }
    // A body that may be left out (a review's) is still JSON when it is there.
    let approve = format!(
        "{}/api/v1/requests/00000000-0000-4000-8000-000000000000/approve",
        b.url
    );
    let carol = b.token("carol");
    let form = raw(&b)
        .await
        .post(&approve)
        .bearer_auth(carol)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("reason=fine")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let left_out = raw(&b)
        .await
        .post(&approve)
        .bearer_auth(carol)
        .send()
        .await
        .unwrap();
    assert_eq!(
        left_out.status(),
        StatusCode::NOT_FOUND,
        "no body: nothing to refuse"
    );

    let listed = b.client("admin").requests(&[]).await.unwrap();
    assert!(listed.items.is_empty(), "refused requests left nothing behind");
    let audit = b.client("admin").outbox("aws-test", 10).await.unwrap();
    assert!(audit.is_empty());
}

#[tokio::test]
async fn unauthenticated_and_unauthorised_callers_are_refused() {
    let b = TestBroker::start(CATALOG, &policies()).await;
    let body = br#"{"resource":"dev-admin","duration_seconds":60,"justification":"x"}"#.to_vec();
    let (status, err) = post(&b, None, "/api/v1/requests", body.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(err.unwrap().code, ErrorCode::Unauthenticated);
    for token in ["jg_forged", "not-a-token", ""] {
        let (status, _) = post(&b, Some(token), "/api/v1/requests", body.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
    }
    // Requesters are not admins.
    let (status, err) = post(
        &b,
        Some(b.token("alice")),
        "/api/v1/admin/policies/reload",
        vec![],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(err.unwrap().message.contains("`admin` role"));
    let admin_only = b.client("alice").outbox("aws-test", 10).await;
    assert_eq!(admin_only.unwrap_err().status(), Some(StatusCode::FORBIDDEN));
    // Approvers without the requester role cannot ask.
    let (status, _) = post(&b, Some(b.token("carol")), "/api/v1/requests", body).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn bad_path_and_query_values_name_the_parameter() {
    let b = TestBroker::start(CATALOG, &policies()).await;
    let http = raw(&b).await;
    let get = |path: &str| {
        http.get(format!("{}{path}", b.url))
            .bearer_auth(b.token("bob"))
            .send()
    };
    let resp = get("/api/v1/requests/not-a-uuid").await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        resp.json::<ErrorBody>().await.unwrap().field.as_deref(),
        Some("id")
    );
    let resp = get("/api/v1/requests?state=sideways").await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        resp.json::<ErrorBody>().await.unwrap().field.as_deref(),
        Some("state")
    );
    let resp = get("/api/v1/requests?colour=red").await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = get("/api/v1/nowhere").await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(resp.json::<ErrorBody>().await.unwrap().code, ErrorCode::NotFound);
}

#[tokio::test]
async fn admin_changes_are_checked() {
    let b = TestBroker::start(CATALOG, &policies()).await;
    let http = raw(&b).await;
    let put = |path: &str, body: &'static str| {
        http.put(format!("{}{path}", b.url))
            .bearer_auth(b.token("admin"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    // Target kind that does not fit the configuration kind.
    let resp = put(
        "/api/v1/admin/resources/x",
        r#"{"id":"x","configuration":"aws-test","target":{"kind":"entra_group_membership","group_id":"g"}}"#,
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let err: ErrorBody = resp.json().await.unwrap();
    assert_eq!(err.field.as_deref(), Some("target"));
    assert!(err.message.contains("aws_account_assignment"), "{}", err.message);
    // Federation to a configuration that does not exist.
    let resp = put(
        "/api/v1/admin/configurations/aws-2",
        r#"{"id":"aws-2","kind":"aws_identity_center","identity_mode":{"mode":"federated","directory":"entra-x"}}"#,
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp
        .json::<ErrorBody>()
        .await
        .unwrap()
        .message
        .contains("entra-x"));
    // Path and body disagree.
    let resp = put(
        "/api/v1/admin/configurations/aws-3",
        r#"{"id":"aws-4","kind":"aws_iam","identity_mode":{"mode":"direct"}}"#,
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let configs = b.client("admin").requests(&[]).await.unwrap();
    assert!(configs.items.is_empty());
}

#[tokio::test]
async fn ops_endpoints_and_openapi() {
    let b = TestBroker::start(CATALOG, &policies()).await;
    let http = raw(&b).await;
    for path in ["/healthz", "/readyz"] {
        let resp = http.get(format!("{}{path}", b.url)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
    }
    crate::support::request(&b.client("alice"), "auto-admin", 60).await;
    let metrics = http
        .get(format!("{}/metrics", b.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("jitgate_requests_created_total 1"), "{metrics}");
    assert!(metrics.contains("jitgate_grants_activated_total 1"));
    let doc: serde_json::Value = http
        .get(format!("{}/api/v1/openapi.json", b.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for path in [
        "/api/v1/requests",
        "/api/v1/requests/{id}/approve",
        "/api/v1/grants/{id}/extend",
        "/api/v1/admin/users/{id}",
        "/api/v1/admin/explain",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
    for schema in ["CreateRequestBody", "ExplainView", "PlanStep", "GrantView"] {
        assert!(
            doc["components"]["schemas"].get(schema).is_some(),
            "{schema} missing from the OpenAPI document"
        );
    }
    // TLS is on: plain HTTP to the port is not answered as HTTP.
    let plain = b.url.replace("https://", "http://");
    let r = reqwest::Client::new()
        .get(format!("{plain}/healthz"))
        .send()
        .await;
    assert!(r.is_err() || !r.unwrap().status().is_success());
    // And a client that does not trust the broker CA refuses the server.
    let other = reqwest::Client::builder().build().unwrap();
    assert!(other.get(format!("{}/healthz", b.url)).send().await.is_err());
}

/// Opens a TLS connection to the API as a raw client would.
async fn raw_tls(
    b: &jitgate_tests::broker::TestBroker,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls_pki_types::pem::PemObject;
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from_pem_file(b.ca()).unwrap())
        .unwrap();
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let addr = b.url.trim_start_matches("https://").to_owned();
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls))
        .connect(rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap()
}

/// Reads until the server closes the connection; the guard only keeps a
/// broken server from hanging the suite.
async fn closed_by_server(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server kept the connection open");
    seen
}

#[tokio::test]
async fn slow_and_idle_clients_are_disconnected() {
    use tokio::io::AsyncWriteExt;
    let b = TestBroker::start_with(CATALOG, &policies(), &["--header-read-timeout", "300ms"]).await;
    // Headers that never finish.
    let mut slow = raw_tls(&b).await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .unwrap();
    slow.flush().await.unwrap();
    let seen = closed_by_server(&mut slow).await;
    assert!(
        !String::from_utf8_lossy(&seen).contains("200 OK"),
        "no answer to half a request"
    );
    // A kept-alive connection that goes quiet after one request.
    let mut idle = raw_tls(&b).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    idle.flush().await.unwrap();
    let seen = closed_by_server(&mut idle).await;
    assert!(
        String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
}

#[tokio::test]
async fn sign_ins_and_token_guesses_are_limited_per_client() {
    let b = TestBroker::start_with(
        CATALOG,
        &policies(),
        &["--sign-ins-per-minute", "5", "--failed-tokens-per-minute", "3"],
    )
    .await;
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(b.ca()).unwrap()).unwrap())
        .build()
        .unwrap();
    let login = || {
        http.post(format!("{}/api/v1/auth/login", b.url))
            .json(&serde_json::json!({"email": "a@example.com", "redirect_uri": "http://127.0.0.1:1/", "code_challenge": "x"}))
            .send()
    };
    for _ in 0..5 {
        let r = login().await.unwrap();
        assert_ne!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    }
    let r = login().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    let body: ErrorBody = r.json().await.unwrap();
    assert_eq!(body.code, ErrorCode::TooManyRequests);

    // Guessed tokens, bearer or an agent's join token, share one quota:
    // refused, then refused unread, even a good one.
    let enroll = |token: String| {
        http.post(format!("{}/api/v1/agents/enroll", b.url))
            .json(&serde_json::json!({"token": token, "csr_pem": "not looked at"}))
            .send()
    };
    for i in 0..2 {
        let r = enroll(format!("jgj_guess{i}")).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    for i in 0..2 {
        let guess = b.client("alice").with_token(&format!("jgt_guess{i}"));
        let (code, _) = crate::support::status(guess.whoami().await);
        assert_eq!(code, StatusCode::UNAUTHORIZED);
    }
    let (code, msg) = crate::support::status(b.client("alice").whoami().await);
    assert_eq!(code, StatusCode::TOO_MANY_REQUESTS, "{msg}");
    assert!(msg.contains("refused tokens"), "{msg}");
    let r = enroll("jgj_guess3".into()).await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
}

/// The request smuggling forms (RFC 9112 §6.3 and §5.2): a body length
/// stated twice or not as a number, folded or malformed header lines, a
/// transfer coding that is not chunked: each is refused with a 400 and the
/// connection closed. A length stated both ways is framed by the transfer
/// coding alone and the connection closed after the answer (the RFC's
/// other choice; hyper drops the Content-Length before any handler sees
/// it). Either way, the request hidden behind is never answered.
#[tokio::test]
async fn request_smuggling_forms_are_refused_and_the_connection_closed() {
    use tokio::io::AsyncWriteExt;
    let b = TestBroker::start(CATALOG, &policies()).await;
    // Alice's request carries the malformed framing: were it taken, she
    // would get her account back (200). Bob's is hidden behind it: were it
    // answered, his account would show.
    let whoami = |user: &str, version: &str| {
        format!(
            "GET /api/v1/whoami HTTP/{version}\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n",
            b.token(user)
        )
    };
    let hidden = whoami("bob", "1.1") + "\r\n";
    let start = whoami("alice", "1.1");
    let forms = [
        (
            "Content-Length and Transfer-Encoding both",
            format!("{start}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ),
        (
            "Transfer-Encoding and Content-Length both, in that order",
            format!("{start}Transfer-Encoding: chunked\r\nContent-Length: 60\r\n\r\n0\r\n\r\n"),
        ),
        (
            "two different Content-Lengths",
            format!("{start}Content-Length: 0\r\nContent-Length: 2\r\n\r\n{{}}"),
        ),
        (
            "a Content-Length list that disagrees",
            format!("{start}Content-Length: 0, 2\r\n\r\n{{}}"),
        ),
        (
            "a signed Content-Length",
            format!("{start}Content-Length: +2\r\n\r\n{{}}"),
        ),
        (
            "white space before the colon",
            format!("{start}Content-Length : 2\r\n\r\n{{}}"),
        ),
        (
            "an obs-fold continuation line",
            format!("{start}X-Note: one\r\n two\r\nContent-Length: 2\r\n\r\n{{}}"),
        ),
        (
            "a transfer coding that is not chunked last",
            format!("{start}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"),
        ),
        (
            "an unknown transfer coding",
            format!("{start}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"),
        ),
        (
            "Transfer-Encoding in HTTP/1.0",
            format!("{}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", whoami("alice", "1.0")),
        ),
        (
            // (To a handler that reads the body: whoami answers before
            // the body is read, and the connection is closed after.)
            "a chunk size that is not hexadecimal",
            format!(
                "POST /api/v1/requests HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\
                 Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\n{{}}\r\n0\r\n\r\n",
                b.token("alice")
            ),
        ),
    ];
    let mut outcomes = Vec::new();
    let mut wrong = Vec::new();
    for (form, request) in forms {
        let mut tls = raw_tls(&b).await;
        tls.write_all(format!("{request}{hidden}").as_bytes())
            .await
            .unwrap();
        tls.flush().await.unwrap();
        let seen = String::from_utf8_lossy(&closed_by_server(&mut tls).await).into_owned();
        let answers = seen.matches("HTTP/1.").count();
        let status = seen.split_whitespace().nth(1).unwrap_or("nothing");
        outcomes.push(format!("{form}: {status}, {answers} answer(s)"));
        let framed_by_the_coding = form.contains("Transfer-Encoding and Content-Length")
            || form.contains("Content-Length and Transfer-Encoding");
        let expected = if framed_by_the_coding {
            status == "200" && seen.contains("\r\nconnection: close\r\n")
        } else {
            status == "400"
        };
        if seen.contains("\"id\":\"bob\"") || answers > 1 || !expected {
            wrong.push(format!("{form}:\n{seen}"));
        }
    }
    println!("smuggling forms:\n  {}", outcomes.join("\n  "));
    assert!(wrong.is_empty(), "not refused:\n{}", wrong.join("\n\n"));
}
