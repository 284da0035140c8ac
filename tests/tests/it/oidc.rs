//! Sign-in with OIDC against a real provider (npm `oidc-provider`):
//! just-in-time users, role reconciliation, profile updates, key rotation,
//! refresh, revocation, the CLI's loopback login and the browser's cookie
//! session; and the negative suite against a provider that misbehaves.

use std::path::PathBuf;

use jitgate_broker::cli::client::ApiClient;
use jitgate_shared::v1::api::{LoginBody, Role, TokenSet, UserView};
use jitgate_tests::broker::TestBroker;
use jitgate_tests::fixtures::{policies, CATALOG};
use jitgate_tests::oidc::{pkce, provider_toml, query, Browser, HostileIdp, TestIdp, Trick, CLIENT_SECRET};
use jitgate_tests::port::ReservedPort;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::support::status;

/// A broker whose sign-in providers are `providers` (name, email domains,
/// default role) on ports chosen now; the providers start afterwards.
struct Setup {
    b: TestBroker,
    _config: TempDir,
}

async fn broker_with(providers: &[(&str, u16, &[&str], &str)]) -> Setup {
    let config = tempfile::tempdir().unwrap();
    let secret = config.path().join("client-secret");
    std::fs::write(&secret, CLIENT_SECRET).unwrap();
    let mut toml = String::from("[sso]\naccess_ttl = \"10m\"\nsession_ttl = \"1h\"\n");
    for (name, port, domains, role) in providers {
        toml.push_str(&provider_toml(
            name,
            &format!("http://127.0.0.1:{port}"),
            domains,
            role,
            &format!("client_secret_file = \"{}\"", secret.display()),
        ));
    }
    let path: PathBuf = config.path().join("broker.toml");
    std::fs::write(&path, toml).unwrap();
    let b = TestBroker::start_with(CATALOG, &policies(), &["--config", path.to_str().unwrap()]).await;
    Setup { b, _config: config }
}

fn callback(b: &TestBroker) -> String {
    format!("{}/auth/oidc/callback", b.url)
}

/// Where the CLI would listen; the browser stops there.
const LOOPBACK: &str = "http://127.0.0.1:9/callback";

/// Signs `email` in as the CLI does, with `browser` playing the person.
async fn sign_in(
    b: &TestBroker,
    browser: &mut Browser,
    email: &str,
) -> Result<TokenSet, (StatusCode, String)> {
    let (verifier, challenge) = pkce();
    let started = b
        .anonymous()
        .login(&LoginBody {
            email: Some(email.into()),
            provider: None,
            redirect_uri: LOOPBACK.into(),
            code_challenge: challenge,
        })
        .await
        .map_err(|e| (e.status().unwrap(), e.to_string()))?;
    let stop = browser
        .follow(&started.authorization_url, |u| {
            u.starts_with("http://127.0.0.1:9/")
        })
        .await;
    if !stop.url.starts_with(LOOPBACK) {
        return Err((stop.status, stop.body));
    }
    let q = query(&stop.url);
    b.anonymous()
        .exchange_code(&q["state"], &q["code"], &verifier)
        .await
        .map_err(|e| (e.status().unwrap(), e.to_string()))
}

/// Starts `jitgate login ARGS` against the broker with its own config
/// directory, and reads the URL it prints for the person to open.
async fn cli_login(s: &Setup, home: &std::path::Path, args: &[&str]) -> (tokio::process::Child, String) {
    let mut login = cli(s, home, &[&["login"], args].concat()).spawn().unwrap();
    let mut stderr = tokio::io::BufReader::new(login.stderr.take().unwrap());
    let url = loop {
        let mut line = String::new();
        let n = tokio::io::AsyncBufReadExt::read_line(&mut stderr, &mut line)
            .await
            .unwrap();
        assert!(n > 0, "jitgate login printed no URL");
        if let Some(u) = line.trim().strip_prefix("http") {
            break format!("http{u}");
        }
    };
    // Keep reading what else it prints: a closed pipe would fail its writes.
    tokio::spawn(async move {
        let mut rest = String::new();
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut rest).await;
    });
    (login, url)
}

/// `jitgate ARGS` against the broker, with its own config directory.
fn cli(s: &Setup, home: &std::path::Path, args: &[&str]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(jitgate_tests::bin("jitgate"));
    c.args(["--server", &s.b.url, "--ca-cert", s.b.ca().to_str().unwrap()])
        .args(args)
        .env("JITGATE_CONFIG_DIR", home)
        .env_remove("JITGATE_TOKEN")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    c
}

fn as_user(b: &TestBroker, tokens: &TokenSet) -> ApiClient {
    b.anonymous().with_token(&tokens.access_token)
}

async fn user(b: &TestBroker, id: &str) -> Option<UserView> {
    b.client("admin")
        .users()
        .await
        .unwrap()
        .into_iter()
        .find(|u| u.id.as_str() == id)
}

fn accounts() -> Value {
    json!({
        "ann": {"email": "ann@example.com", "email_verified": true, "name": "Ann Lee"},
        "bob": {"email": "bob@example.com", "email_verified": true, "name": "Bob Ray",
                "groups": ["sre"], "jitgate_role": "approver"}
    })
}

#[tokio::test]
async fn first_sign_in_creates_the_user_and_every_sign_in_reconciles_it() {
    let socket = ReservedPort::new();
    let port = socket.port();
    let s = broker_with(&[("corp", port, &["example.com"], "requester")]).await;
    let idp = TestIdp::start(socket, &callback(&s.b), accounts()).await;
    let mut browser = Browser::new(&s.b.ca());

    // Just in time, with the default role (no role claim).
    assert!(user(&s.b, "ann@example.com").await.is_none());
    let ann = sign_in(&s.b, &mut browser, "ann@example.com").await.unwrap();
    assert_eq!(ann.user.id.as_str(), "ann@example.com");
    assert_eq!(ann.user.roles, [Role::Requester].into());
    let me = as_user(&s.b, &ann).whoami().await.unwrap();
    assert_eq!(me.display_name, "Ann Lee");
    assert_eq!(me.identities.get("corp").map(String::as_str), Some("ann"));

    // The role claim, when known, decides; groups come from the groups claim.
    let mut bob_browser = Browser::new(&s.b.ca());
    let bob = sign_in(&s.b, &mut bob_browser, "bob@example.com").await.unwrap();
    assert_eq!(bob.user.roles, [Role::Approver].into());
    assert!(bob.user.groups.contains("sre"));

    // The provider changes Ann's name and gives her a role: both follow at
    // her next sign-in, to the same user.
    idp.set_accounts(json!({
        "ann": {"email": "ann@example.com", "email_verified": true, "name": "Ann Smith", "jitgate_role": ["admin", "auditor"]},
        "bob": {"email": "bob.ray@example.com", "email_verified": true, "name": "Bob Ray", "jitgate_role": "superuser"}
    }));
    let again = sign_in(&s.b, &mut browser, "ann@example.com").await.unwrap();
    assert_eq!(again.user.id.as_str(), "ann@example.com");
    assert_eq!(again.user.roles, [Role::Admin, Role::Auditor].into());
    assert_eq!(again.user.display_name, "Ann Smith");
    // An unknown role falls back to the default role; a new email follows,
    // the user stays the same.
    let bob = sign_in(&s.b, &mut bob_browser, "bob@example.com").await.unwrap();
    assert_eq!(bob.user.roles, [Role::Requester].into());
    assert_eq!(bob.user.id.as_str(), "bob@example.com");
    assert_eq!(bob.user.email.as_deref(), Some("bob.ray@example.com"));
    // One user each, however many sign-ins.
    let users = s.b.client("admin").users().await.unwrap();
    assert_eq!(
        users.iter().filter(|u| u.identities.contains_key("corp")).count(),
        2
    );
}

#[tokio::test]
async fn tokens_are_refreshed_through_the_provider_and_revocable() {
    let socket = ReservedPort::new();
    let port = socket.port();
    let s = broker_with(&[("corp", port, &["example.com"], "requester")]).await;
    let idp = TestIdp::start(socket, &callback(&s.b), accounts()).await;
    let mut browser = Browser::new(&s.b.ca());
    let first = sign_in(&s.b, &mut browser, "ann@example.com").await.unwrap();
    assert!(first.expires_at <= first.session_expires_at);

    // Refresh: new tokens; the old refresh token is spent.
    let anon = s.b.anonymous();
    let second = anon.refresh(&first.refresh_token).await.unwrap();
    assert_ne!(second.access_token, first.access_token);
    assert_eq!(
        as_user(&s.b, &second).whoami().await.unwrap().id.as_str(),
        "ann@example.com"
    );
    assert_eq!(
        status(anon.refresh(&first.refresh_token).await).0,
        StatusCode::UNAUTHORIZED
    );
    // A refresh through the provider picks up what changed there.
    idp.set_accounts(
        json!({"ann": {"email": "ann@example.com", "email_verified": true, "name": "Ann Lee", "jitgate_role": "approver"}}),
    );
    let third = anon.refresh(&second.refresh_token).await.unwrap();
    assert_eq!(third.user.roles, [Role::Approver].into());
    // An access token is not a refresh token, nor the other way round.
    assert_eq!(
        status(anon.refresh(&third.access_token).await).0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(anon.with_token(&third.refresh_token).whoami().await).0,
        StatusCode::UNAUTHORIZED
    );

    // An admin ends the session: its tokens stop at once.
    let admin = s.b.client("admin");
    let live = admin.sessions(Some("ann@example.com"), false).await.unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].id, third.session);
    let ended = admin.revoke_session(&third.session).await.unwrap();
    assert!(ended.ended_at.is_some());
    assert_eq!(
        status(as_user(&s.b, &third).whoami().await).0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(anon.refresh(&third.refresh_token).await).0,
        StatusCode::UNAUTHORIZED
    );
    assert!(admin
        .sessions(Some("ann@example.com"), false)
        .await
        .unwrap()
        .is_empty());
    // Only admins see or end sessions.
    let fresh = sign_in(&s.b, &mut browser, "ann@example.com").await.unwrap();
    assert_eq!(
        status(s.b.client("alice").sessions(None, false).await).0,
        StatusCode::FORBIDDEN
    );
    // Signing out ends the session too.
    as_user(&s.b, &fresh).logout().await.unwrap();
    assert_eq!(
        status(as_user(&s.b, &fresh).whoami().await).0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(anon.refresh(&fresh.refresh_token).await).0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_provider_out_of_reach_refuses_no_session_and_says_when_to_try_again() {
    let socket = ReservedPort::new();
    let port = socket.port();
    let s = broker_with(&[("corp", port, &["example.com"], "requester")]).await;
    let mut idp = TestIdp::start(socket, &callback(&s.b), accounts()).await;
    let mut browser = Browser::new(&s.b.ca());
    let tokens = sign_in(&s.b, &mut browser, "ann@example.com").await.unwrap();

    // Nothing answers at the provider: a refresh cannot be done now, which
    // is not the provider refusing it.
    idp.stop().await;
    let anon = s.b.anonymous();
    let (code, message) = status(anon.refresh(&tokens.refresh_token).await);
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{message}");
    assert!(message.contains("could not be reached"), "{message}");
    assert_eq!(
        as_user(&s.b, &tokens).whoami().await.unwrap().id.as_str(),
        "ann@example.com",
        "the session goes on"
    );
    let live =
        s.b.client("admin")
            .sessions(Some("ann@example.com"), false)
            .await
            .unwrap();
    assert_eq!(live.len(), 1);
    // The refresh token was not spent: trying again is again "not now"
    // (the test provider keeps its grants in memory, so one restarted
    // would refuse them: that refusal ends a session, as it must).
    let (code, message) = status(anon.refresh(&tokens.refresh_token).await);
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{message}");
}

#[tokio::test]
async fn a_rotated_signing_key_is_fetched_from_the_provider() {
    let socket = ReservedPort::new();
    let port = socket.port();
    let s = broker_with(&[("corp", port, &["example.com"], "requester")]).await;
    let mut idp = TestIdp::start(socket, &callback(&s.b), accounts()).await;
    let mut browser = Browser::new(&s.b.ca());
    sign_in(&s.b, &mut browser, "ann@example.com").await.unwrap();
    let old_kid = idp.kid();
    idp.rotate_key().await;
    assert_ne!(idp.kid(), old_kid);
    let mut browser = Browser::new(&s.b.ca());
    let after = sign_in(&s.b, &mut browser, "ann@example.com").await.unwrap();
    assert_eq!(after.user.id.as_str(), "ann@example.com");
    assert!(
        s.b.log().contains("fetching the provider's keys"),
        "the broker fetched the new key:\n{}",
        s.b.log()
    );
}

#[tokio::test]
async fn people_are_routed_by_email_domain_and_a_provider_without_default_role_gives_no_access() {
    let (corp, partner) = (ReservedPort::new(), ReservedPort::new());
    let (corp_port, partner_port) = (corp.port(), partner.port());
    let s = broker_with(&[
        ("corp", corp_port, &["example.com"], "requester"),
        ("partner", partner_port, &["partner.example"], ""),
    ])
    .await;
    let _corp = TestIdp::start(corp, &callback(&s.b), accounts()).await;
    let _partner = TestIdp::start(
        partner,
        &callback(&s.b),
        json!({
            "pat": {"email": "pat@partner.example", "email_verified": true, "name": "Pat", "jitgate_role": "approver"},
            "quinn": {"email": "quinn@partner.example", "email_verified": true, "name": "Quinn"},
            "eve": {"email": "eve@example.com", "email_verified": true, "name": "Eve"}
        }),
    )
    .await;
    let mut browser = Browser::new(&s.b.ca());
    let pat = sign_in(&s.b, &mut browser, "pat@partner.example").await.unwrap();
    assert_eq!(pat.user.identities.keys().collect::<Vec<_>>(), ["partner"]);
    assert_eq!(pat.user.roles, [Role::Approver].into());

    // No role claim and no default role: no access, and no user made.
    let mut browser = Browser::new(&s.b.ca());
    let (code, body) = sign_in(&s.b, &mut browser, "quinn@partner.example")
        .await
        .unwrap_err();
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert!(body.contains("no access"), "{body}");
    assert!(user(&s.b, "quinn@partner.example").await.is_none());

    // A domain nobody serves is named.
    let (code, body) = status(
        s.b.anonymous()
            .login(&LoginBody {
                email: Some("x@elsewhere.example".into()),
                provider: None,
                redirect_uri: LOOPBACK.into(),
                code_challenge: pkce().1,
            })
            .await,
    );
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(body.contains("elsewhere.example"), "{body}");
    // The loopback redirect must be loopback.
    let (code, body) = status(
        s.b.anonymous()
            .login(&LoginBody {
                email: Some("ann@example.com".into()),
                provider: None,
                redirect_uri: "https://attacker.example/cb".into(),
                code_challenge: pkce().1,
            })
            .await,
    );
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(body.contains("redirect_uri"), "{body}");

    // The partner provider may not sign in someone of the corp's domain.
    let (verifier, challenge) = pkce();
    let started =
        s.b.anonymous()
            .login(&LoginBody {
                email: Some("eve@example.com".into()),
                provider: Some("partner".into()),
                redirect_uri: LOOPBACK.into(),
                code_challenge: challenge,
            })
            .await
            .unwrap();
    let mut browser = Browser::new(&s.b.ca());
    let stop = browser
        .follow(&started.authorization_url, |u| {
            u.starts_with("http://127.0.0.1:9/")
        })
        .await;
    assert_eq!(stop.status, StatusCode::UNAUTHORIZED, "{stop:?}");
    assert!(
        stop.body.contains("may not sign in `eve@example.com`"),
        "{}",
        stop.body
    );
    let _ = verifier;
    assert!(user(&s.b, "eve@example.com").await.is_none());
}

#[tokio::test]
async fn a_browser_gets_a_cookie_session_that_writes_only_from_the_broker_origin() {
    let socket = ReservedPort::new();
    let port = socket.port();
    let s = broker_with(&[("corp", port, &["example.com"], "requester")]).await;
    let _idp = TestIdp::start(socket, &callback(&s.b), accounts()).await;
    let mut browser = Browser::new(&s.b.ca());
    let stop = browser
        .follow(&format!("{}/auth/login?email=ann@example.com", s.b.url), |_| {
            false
        })
        .await;
    assert_eq!(stop.status, StatusCode::OK, "{stop:?}");
    assert!(stop.url.ends_with("/auth/signed-in"), "{}", stop.url);
    assert!(
        stop.body.contains("Signed in to jitgate as Ann Lee"),
        "{}",
        stop.body
    );
    let session = browser.cookie(&s.b.url, "jitgate_session").unwrap();
    // Open redirects are refused, in every form a browser would follow
    // off the broker (query-encoded: //, /\, /<tab>/, a scheme, /.//).
    for return_to in [
        "//evil.example",
        "%2F%2Fevil.example",
        "%2F%5Cevil.example",
        "%2F%09%2Fevil.example",
        "https%3A%2F%2Fevil.example",
        "%2F.%2F%2Fevil.example",
    ] {
        let stop = browser
            .follow(
                &format!(
                    "{}/auth/login?email=ann@example.com&return_to={return_to}",
                    s.b.url
                ),
                |_| false,
            )
            .await;
        assert_eq!(stop.status, StatusCode::BAD_REQUEST, "{return_to}");
        assert!(stop.body.contains("return_to"), "{return_to}: {}", stop.body);
    }

    let ca = reqwest::Certificate::from_pem(&std::fs::read(s.b.ca()).unwrap()).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let cookie = format!("jitgate_session={session}");
    let whoami = http
        .get(format!("{}/api/v1/whoami", s.b.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(whoami.status(), StatusCode::OK);
    // A write with the cookie from another origin (or none) is refused.
    for origin in [None, Some("https://evil.example")] {
        let mut req = http
            .post(format!("{}/api/v1/auth/logout", s.b.url))
            .header("cookie", &cookie);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        assert_eq!(
            req.send().await.unwrap().status(),
            StatusCode::FORBIDDEN,
            "origin {origin:?}"
        );
    }
    let out = http
        .post(format!("{}/api/v1/auth/logout", s.b.url))
        .header("cookie", &cookie)
        .header("origin", &s.b.url)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    let after = http
        .get(format!("{}/api/v1/whoami", s.b.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn jitgate_login_signs_in_through_the_browser_and_keeps_the_session() {
    let socket = ReservedPort::new();
    let port = socket.port();
    let s = broker_with(&[("corp", port, &["example.com"], "requester")]).await;
    let _idp = TestIdp::start(socket, &callback(&s.b), accounts()).await;
    let home = tempfile::tempdir().unwrap();
    let (login, url) = cli_login(&s, home.path(), &["--email", "ann@example.com", "--no-browser"]).await;
    let mut browser = Browser::new(&s.b.ca());
    // Following through the CLI's loopback listener ends the login.
    let stop = browser.follow(&url, |_| false).await;
    assert!(stop.body.contains("Signed in to jitgate"), "{stop:?}");
    let out = login.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("signed in as ann@example.com"));
    let saved = home.path().join("credentials.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&saved).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    // Later commands use the saved session.
    let whoami = cli(&s, home.path(), &["whoami"]).output().await.unwrap();
    assert!(
        whoami.status.success(),
        "{}",
        String::from_utf8_lossy(&whoami.stderr)
    );
    assert!(String::from_utf8_lossy(&whoami.stdout).contains("ann@example.com"));
    let logout = cli(&s, home.path(), &["logout"]).output().await.unwrap();
    assert!(
        logout.status.success(),
        "{}",
        String::from_utf8_lossy(&logout.stderr)
    );
    assert!(!saved.exists());
    let after = cli(&s, home.path(), &["whoami"]).output().await.unwrap();
    assert!(!after.status.success());
    assert!(String::from_utf8_lossy(&after.stderr).contains("jitgate login"));
}

#[tokio::test]
async fn sign_ins_that_are_not_what_they_claim_are_refused_and_leave_nothing() {
    let socket = ReservedPort::new();
    let port = socket.port();
    let s = broker_with(&[("hostile", port, &["hostile.example"], "requester")]).await;
    let idp = HostileIdp::start(socket).await;
    let admin = s.b.client("admin");
    let sessions = || async { admin.sessions(None, true).await.unwrap().len() };
    let mallory = || async { user(&s.b, "mallory@hostile.example").await };

    // The same provider, honest, to show the suite is not vacuous: the first
    // sign-in also gives the nonce that is replayed below.
    let honest = |trick| {
        idp.trick(trick);
        async {
            let mut browser = Browser::new(&s.b.ca());
            sign_in(&s.b, &mut browser, "mallory@hostile.example").await
        }
    };
    for (trick, reason) in [
        (Trick::WrongAudience, "wrong audience"),
        (Trick::WrongIssuer, "wrong issuer"),
        (Trick::AlgNone, "alg none"),
        (Trick::Expired, "expired"),
        (Trick::UnknownKey, "a key the provider does not publish"),
        (Trick::ReplayedNonce, "nonce"),
        (Trick::OtherProvider, "wrong issuer"),
        (
            Trick::UnverifiedEmail,
            "did not say the token's email is verified",
        ),
    ] {
        let (code, body) = honest(trick).await.unwrap_err();
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{trick:?}: {body}");
        assert!(
            body.contains("sign-in refused") && body.contains(reason),
            "{trick:?}: {body}"
        );
        assert_eq!(sessions().await, 0, "{trick:?} made a session");
        assert!(mallory().await.is_none(), "{trick:?} made a user");
    }

    // A callback with a state the broker never issued, and one used twice.
    let mut browser = Browser::new(&s.b.ca());
    let stop = browser
        .follow(
            &format!("{}/auth/oidc/callback?code=x&state=forged", s.b.url),
            |_| false,
        )
        .await;
    assert_eq!(stop.status, StatusCode::UNAUTHORIZED);
    assert!(
        stop.body
            .contains("unknown, expired or already used sign-in state"),
        "{}",
        stop.body
    );
    idp.trick(Trick::Honest);
    let (verifier, challenge) = pkce();
    let started =
        s.b.anonymous()
            .login(&LoginBody {
                email: Some("mallory@hostile.example".into()),
                provider: None,
                redirect_uri: LOOPBACK.into(),
                code_challenge: challenge,
            })
            .await
            .unwrap();
    let at_callback = browser
        .follow(&started.authorization_url, |u| u.contains("/auth/oidc/callback"))
        .await;
    let first = browser
        .follow(&at_callback.url, |u| u.starts_with("http://127.0.0.1:9/"))
        .await;
    assert!(first.url.starts_with(LOOPBACK), "{first:?}");
    let replay = browser
        .follow(&at_callback.url, |u| u.starts_with("http://127.0.0.1:9/"))
        .await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED);
    assert!(replay.body.contains("already used"), "{}", replay.body);
    // The CLI's code is worthless without its verifier, and used once.
    let q = query(&first.url);
    let anon = s.b.anonymous();
    let (code, body) = status(anon.exchange_code(&q["state"], &q["code"], &pkce().0).await);
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert!(body.contains("verifier"), "{body}");
    let tokens = anon
        .exchange_code(&q["state"], &q["code"], &verifier)
        .await
        .unwrap();
    assert_eq!(tokens.user.id.as_str(), "mallory@hostile.example");
    assert_eq!(
        status(anon.exchange_code(&q["state"], &q["code"], &verifier).await).0,
        StatusCode::UNAUTHORIZED
    );
    // Only the honest sign-in made a session.
    assert_eq!(sessions().await, 1);
}

#[tokio::test]
async fn jitgate_login_device_signs_in_without_a_browser_on_the_machine() {
    let socket = ReservedPort::new();
    let port = socket.port();
    let s = broker_with(&[("corp", port, &["example.com"], "requester")]).await;
    let _idp = TestIdp::start(socket, &callback(&s.b), accounts()).await;
    let home = tempfile::tempdir().unwrap();
    let (login, url) = cli_login(&s, home.path(), &["--device", "--email", "bob@example.com"]).await;
    assert!(url.contains("user_code="), "{url}");
    // The person, on another device: confirms the code, signs in, consents.
    let mut phone = Browser::new(&s.b.ca());
    let done = phone.follow_forms(&url).await;
    assert_eq!(done.status, StatusCode::OK, "{done:?}");
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), login.wait_with_output())
        .await
        .expect("jitgate login --device finished")
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("signed in as bob@example.com") && stdout.contains("approver"),
        "{stdout}"
    );
    // An unknown handle is refused.
    let (code, _) = status(s.b.anonymous().poll_device_login("not-a-handle").await);
    assert_eq!(code, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_directory_provisioned_user_signs_in_as_itself_and_directory_groups_approve() {
    let socket = ReservedPort::new();
    let port = socket.port();
    let s = broker_with(&[("corp", port, &["example.com"], "requester")]).await;
    let idp = TestIdp::start(socket, &callback(&s.b), accounts()).await;
    let admin = s.b.client("admin");
    // Entra provisions Ann over SCIM first.
    let conn = admin
        .create_scim_connection(&jitgate_shared::v1::api::ScimConnectionBody {
            name: "entra".into(),
            default_roles: [Role::Requester].into(),
        })
        .await
        .unwrap();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(s.b.ca()).unwrap()).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let created: Value = http
        .post(format!("{}/Users", conn.base_url))
        .bearer_auth(&conn.token)
        .header("content-type", "application/scim+json")
        .body(
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "ann@example.com",
                   "emails": [{"value": "ann@example.com", "primary": true}]})
            .to_string(),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Her first sign-in finds that user instead of making another.
    let mut browser = Browser::new(&s.b.ca());
    let ann = sign_in(&s.b, &mut browser, "ann@example.com").await.unwrap();
    assert_eq!(ann.user.id.as_str(), "ann@example.com");
    assert_eq!(ann.user.provisioned_by.as_deref(), Some("entra"));
    assert_eq!(ann.user.identities.get("corp").map(String::as_str), Some("ann"));

    // Bob's groups claim (sre) puts him in the approver set the policy names.
    let mut bob_browser = Browser::new(&s.b.ca());
    let bob = sign_in(&s.b, &mut bob_browser, "bob@example.com").await.unwrap();
    let alices = crate::support::request(&s.b.client("alice"), "dev-admin", 600).await;
    let approved = as_user(&s.b, &bob).approve(alices.id, None).await.unwrap();
    assert_eq!(approved.state, jitgate_shared::v1::api::RequestState::Active);

    // The directory deactivates Ann: her session ends, refresh is refused,
    // and she cannot sign in again.
    let id = created["id"].as_str().unwrap();
    let deactivated = http
        .patch(format!("{}/Users/{id}", conn.base_url))
        .bearer_auth(&conn.token)
        .header("content-type", "application/scim+json")
        .body(
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                   "Operations": [{"op": "Replace", "path": "active", "value": "False"}]})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(deactivated.status(), StatusCode::OK);
    assert_eq!(
        status(as_user(&s.b, &ann).whoami().await).0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(s.b.anonymous().refresh(&ann.refresh_token).await).0,
        StatusCode::UNAUTHORIZED
    );
    let (code, body) = sign_in(&s.b, &mut browser, "ann@example.com").await.unwrap_err();
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert!(body.contains("disabled"), "{body}");
    let _ = idp;
}
