//! What the broker shows the outside, checked from outside: the security
//! headers on every response (no MIME sniffing, no referrer, HSTS, and on
//! HTML a Content Security Policy, no framing and no caching), and TLS
//! that old or weak clients cannot speak.

use jitgate_tests::broker::TestBroker;
use jitgate_tests::fixtures::{policies, CATALOG};
use jitgate_tests::{test_tool, workspace};

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let b = TestBroker::start(CATALOG, &policies()).await;
    assert!(b.url.starts_with("https://"), "{}", b.url);
    let ca = reqwest::Certificate::from_pem(&std::fs::read(b.ca()).unwrap()).unwrap();
    let http = reqwest::Client::builder()
        .tls_certs_only([ca])
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let alice = b.token("alice");
    // (path, token, what answers it)
    let cases = [
        ("/healthz", None, "operations"),
        ("/readyz", None, "operations"),
        ("/metrics", None, "operations"),
        ("/api/v1/openapi.json", None, "the API document"),
        ("/api/v1/whoami", Some(alice), "the API"),
        ("/api/v1/whoami", None, "the API refusing"),
        (
            "/api/v1/requests/not-a-uuid",
            Some(alice),
            "the API refusing input",
        ),
        ("/scim/v2/Users", None, "SCIM refusing"),
        ("/auth/signed-in", None, "a sign-in page"),
        ("/auth/oidc/callback", None, "a sign-in page refusing"),
        ("/console", None, "a console redirect"),
        ("/console/sign-in", None, "a console page"),
        ("/console/assets/nothing-here.js", None, "a console asset missing"),
        ("/no/such/path", None, "the fallback"),
    ];
    let mut html_seen = 0;
    for (path, token, what) in cases {
        let mut req = http.get(format!("{}{path}", b.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let h = resp.headers();
        let get = |name: &str| h.get(name).map(|v| v.to_str().unwrap().to_owned());
        let about = format!("{what} ({path}, {status})");
        assert_eq!(
            get("x-content-type-options").as_deref(),
            Some("nosniff"),
            "{about}"
        );
        assert_eq!(get("referrer-policy").as_deref(), Some("no-referrer"), "{about}");
        let hsts = get("strict-transport-security").unwrap_or_else(|| panic!("no HSTS: {about}"));
        assert!(
            hsts.starts_with("max-age=") && hsts != "max-age=0",
            "{about}: {hsts}"
        );
        let html = get("content-type").is_some_and(|t| t.starts_with("text/html"));
        if html {
            html_seen += 1;
            let csp = get("content-security-policy").unwrap_or_else(|| panic!("HTML without CSP: {about}"));
            assert!(
                csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
                "{about}: {csp}"
            );
            assert_eq!(get("x-frame-options").as_deref(), Some("DENY"), "{about}");
            assert!(
                get("cache-control").is_some(),
                "HTML without Cache-Control: {about}"
            );
        }
    }
    assert!(html_seen >= 1, "no HTML response was checked");
}

/// The broker's TLS, probed from outside by OpenSSL (Python's `ssl`) as
/// old and weak clients would: TLS 1.3 and TLS 1.2 with ECDHE and AEAD
/// ciphers only. A refusal must be the server's (an alert it sent), not
/// the probing client declining to offer what it was asked to.
#[tokio::test]
async fn the_broker_speaks_only_modern_tls() {
    let b = TestBroker::start(CATALOG, &policies()).await;
    let url = reqwest::Url::parse(&b.url).unwrap();
    let out = tokio::process::Command::new(test_tool("python"))
        .arg(workspace().join("tests/tools/tls/probe.py"))
        .arg(url.host_str().unwrap())
        .arg(url.port().unwrap().to_string())
        .arg(b.ca())
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let answers: std::collections::BTreeMap<String, String> = serde_json::from_slice(&out.stdout).unwrap();
    println!("{answers:#?}");
    for accepted in ["tls1.3", "tls1.2-ecdhe-gcm", "tls1.2-ecdhe-chacha20"] {
        assert!(
            answers[accepted].starts_with("ok "),
            "{accepted}: {}",
            answers[accepted]
        );
    }
    for refused in [
        "tls1.0",
        "tls1.1",
        "tls1.2-rsa-key-exchange",
        "tls1.2-cbc",
        "tls1.2-dhe",
    ] {
        let answer = &answers[refused];
        assert!(
            answer.starts_with("refused: ") && answer.contains("ALERT"),
            "{refused} was not refused by the broker: {answer}"
        );
    }
}
