//! SAML 2.0 sign-in against a real identity provider (pysaml2): SP- and
//! IdP-initiated, just-in-time users with roles from the Role attribute, the
//! SP metadata; and the negative suite.

use jitgate_shared::v1::api::{LoginBody, Role};
use jitgate_tests::broker::TestBroker;
use jitgate_tests::fixtures::{policies, CATALOG};
use jitgate_tests::oidc::{pkce, query, Browser};
use jitgate_tests::port::ReservedPort;
use jitgate_tests::saml::TestSamlIdp;
use reqwest::StatusCode;
use serde_json::json;
use tempfile::TempDir;

struct Setup {
    b: TestBroker,
    idp: TestSamlIdp,
    _config: TempDir,
}

async fn setup() -> Setup {
    let socket = ReservedPort::new();
    let port = socket.port();
    let config = tempfile::tempdir().unwrap();
    let path = config.path().join("broker.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[[sso.saml]]
name = "corp"
idp_metadata_url = "http://127.0.0.1:{port}/metadata"
email_domains = ["example.com"]
default_role = "requester"
"#
        ),
    )
    .unwrap();
    let b = TestBroker::start_with(CATALOG, &policies(), &["--config", path.to_str().unwrap()]).await;
    let idp = TestSamlIdp::start(
        socket,
        &b.url,
        "corp",
        json!({
            "ann": {"email": "ann@example.com", "name": "Ann Lee", "role": "approver", "groups": ["sre"]},
            "bob": {"email": "bob@example.com", "name": "Bob Ray"}
        }),
    )
    .await;
    Setup {
        b,
        idp,
        _config: config,
    }
}

/// An SP-initiated sign-in in `browser`: the broker sends it to the IdP,
/// where `idp_params` (`who=ann&trick=...`) say who signs in and how.
async fn sp_initiated(s: &Setup, browser: &mut Browser, idp_params: &str) -> jitgate_tests::oidc::Stop {
    let at_idp = browser
        .follow(&format!("{}/auth/login?email=ann@example.com", s.b.url), |u| {
            u.contains("/sso?")
        })
        .await;
    assert!(at_idp.url.starts_with(&s.idp.url), "{at_idp:?}");
    browser
        .follow_forms(&format!("{}&{idp_params}", at_idp.url))
        .await
}

fn signed_in(body: &str) -> bool {
    body.contains("Signed in to jitgate as")
}

#[tokio::test]
async fn sp_and_idp_initiated_sign_ins_end_in_a_session_with_the_right_role() {
    let s = setup().await;
    // SP-initiated, in a browser: AuthnRequest (redirect binding), response
    // posted to the ACS, cookies.
    let mut browser = Browser::new(&s.b.ca());
    let done = sp_initiated(&s, &mut browser, "who=ann").await;
    assert!(signed_in(&done.body), "{done:?}\n{}", s.idp.log());
    assert!(done.body.contains("Ann Lee"), "{}", done.body);
    let ann =
        s.b.client("admin")
            .users()
            .await
            .unwrap()
            .into_iter()
            .find(|u| u.id.as_str() == "ann@example.com")
            .unwrap();
    assert_eq!(ann.roles, [Role::Approver].into());
    assert!(ann.groups.contains("sre"));
    assert_eq!(
        ann.identities.get("corp").map(String::as_str),
        Some("ann@example.com")
    );

    // IdP-initiated: no AuthnRequest, a session all the same; no Role
    // attribute -> the default role.
    let mut browser = Browser::new(&s.b.ca());
    let done = browser
        .follow_forms(&format!("{}/idp-initiated?who=bob", s.idp.url))
        .await;
    assert!(signed_in(&done.body), "{done:?}\n{}", s.idp.log());
    let bob =
        s.b.client("admin")
            .users()
            .await
            .unwrap()
            .into_iter()
            .find(|u| u.id.as_str() == "bob@example.com")
            .unwrap();
    assert_eq!(bob.roles, [Role::Requester].into());

    // The CLI: the ACS sends the browser to the loopback listener with a code.
    let (verifier, challenge) = pkce();
    let started =
        s.b.anonymous()
            .login(&LoginBody {
                email: Some("ann@example.com".into()),
                provider: None,
                redirect_uri: "http://127.0.0.1:9/callback".into(),
                code_challenge: challenge,
            })
            .await
            .unwrap();
    assert_eq!(started.provider, "corp");
    let mut browser = Browser::new(&s.b.ca());
    let stop = browser
        .follow_forms_until(&format!("{}&who=ann", started.authorization_url), |u| {
            u.starts_with("http://127.0.0.1:9/")
        })
        .await;
    let q = query(&stop.url);
    let tokens =
        s.b.anonymous()
            .exchange_code(&q["state"], &q["code"], &verifier)
            .await
            .unwrap();
    assert_eq!(tokens.user.id.as_str(), "ann@example.com");

    // The SP metadata admins give the IdP.
    let ca = reqwest::Certificate::from_pem(&std::fs::read(s.b.ca()).unwrap()).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let metadata = http
        .get(format!("{}/auth/saml/corp/metadata", s.b.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metadata.contains(&format!(r#"entityID="{}/auth/saml/corp/metadata""#, s.b.url)),
        "{metadata}"
    );
    assert!(
        metadata.contains(&format!(r#"Location="{}/auth/saml/corp/acs""#, s.b.url)),
        "{metadata}"
    );
}

#[tokio::test]
async fn saml_responses_that_are_not_what_they_claim_are_refused() {
    let s = setup().await;
    for (trick, reason) in [
        ("unsigned", "no valid signature by the IdP's certificate"),
        ("other_key", "no valid signature by the IdP's certificate"),
        ("wrapping", "2 assertions"),
        ("wrong_audience", "udience"),
        ("expired", "xpired"),
        ("other_sp", "estination"),
        ("missing_email", "Email"),
    ] {
        for sp_init in [true, false] {
            let mut browser = Browser::new(&s.b.ca());
            let done = if sp_init {
                sp_initiated(&s, &mut browser, &format!("who=ann&trick={trick}")).await
            } else {
                browser
                    .follow_forms(&format!("{}/idp-initiated?who=ann&trick={trick}", s.idp.url))
                    .await
            };
            assert_eq!(
                done.status,
                StatusCode::UNAUTHORIZED,
                "{trick}: {done:?}\n{}",
                s.idp.log()
            );
            assert!(
                done.body.contains("sign-in refused") && done.body.contains(reason),
                "{trick}: {}",
                done.body
            );
        }
    }
    let admin = s.b.client("admin");
    assert!(
        admin.sessions(None, true).await.unwrap().is_empty(),
        "no session was made"
    );
    // Each refusal is counted for operators (7 tricks, 2 ways each).
    assert_eq!(
        s.b.metric("jitgate_sign_ins_total{method=\"saml\",result=\"failed\"}")
            .await,
        Some(14.0)
    );
    assert_eq!(
        s.b.metric("jitgate_sign_ins_total{method=\"saml\",result=\"ok\"}")
            .await,
        None
    );
    assert!(!admin
        .users()
        .await
        .unwrap()
        .iter()
        .any(|u| u.identities.contains_key("corp")));

    // A replayed response: the same assertion posted twice.
    let mut browser = Browser::new(&s.b.ca());
    let page = browser
        .follow(&format!("{}/idp-initiated?who=ann", s.idp.url), |_| false)
        .await;
    let saml_response = regex::Regex::new(r#"name="SAMLResponse" value="([^"]+)""#)
        .unwrap()
        .captures(&page.body)
        .unwrap()[1]
        .to_owned();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(s.b.ca()).unwrap()).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(ca)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let post = || {
        http.post(format!("{}/auth/saml/corp/acs", s.b.url))
            .form(&[("SAMLResponse", saml_response.as_str())])
            .send()
    };
    assert_eq!(post().await.unwrap().status(), StatusCode::SEE_OTHER);
    let replay = post().await.unwrap();
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);
    assert!(replay.text().await.unwrap().contains("already used"));

    // A response to another request (InResponseTo) for an SP-initiated login.
    let first = browser
        .follow(&format!("{}/auth/login?email=ann@example.com", s.b.url), |u| {
            u.contains("/sso?")
        })
        .await;
    let second = browser
        .follow(&format!("{}/auth/login?email=ann@example.com", s.b.url), |u| {
            u.contains("/sso?")
        })
        .await;
    // The IdP answers the first request; the browser posts it with the
    // second login's RelayState.
    let answer = browser.follow(&first.url, |_| false).await;
    let relay = query(&second.url)["RelayState"].clone();
    let response = regex::Regex::new(r#"name="SAMLResponse" value="([^"]+)""#)
        .unwrap()
        .captures(&answer.body)
        .unwrap()[1]
        .to_owned();
    let crossed = http
        .post(format!("{}/auth/saml/corp/acs", s.b.url))
        .form(&[
            ("SAMLResponse", response.as_str()),
            ("RelayState", relay.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(crossed.status(), StatusCode::UNAUTHORIZED);
}
