//! Every response carries the security headers, whatever answers it: no
//! MIME sniffing, no referrer, HSTS (the broker is reached over https),
//! and on HTML a Content Security Policy, no framing and no caching.

use jitgate_tests::broker::TestBroker;
use jitgate_tests::fixtures::{policies, CATALOG};

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
