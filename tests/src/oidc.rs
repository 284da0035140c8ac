//! Identity providers for the sign-in tests, and a scripted browser.
//!
//! - [`TestIdp`]: a real OpenID Connect provider (npm `oidc-provider`, run
//!   by `tests/tools/oidc/idp.mjs`, installed by `scripts/test-tools`).
//! - [`HostileIdp`]: a provider that misbehaves on purpose (wrong audience,
//!   wrong issuer, `alg: none`, expired, unknown key, replayed nonce, another
//!   provider's token), for the negative suite; no real provider does that
//!   on command.
//! - [`Browser`]: follows redirects and keeps cookies, like a person's
//!   browser between the broker and a provider.

// The hostile provider stamps tokens with the wall clock, as a real one does.
#![allow(clippy::disallowed_methods)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::port::ReservedPort;
use crate::workspace;

/// The broker configuration for one OIDC provider.
pub fn provider_toml(name: &str, issuer: &str, domains: &[&str], default_role: &str, extra: &str) -> String {
    let domains: Vec<String> = domains.iter().map(|d| format!("\"{d}\"")).collect();
    format!(
        r#"
[[sso.oidc]]
name = "{name}"
issuer = "{issuer}"
client_id = "jitgate"
email_domains = [{}]
default_role = "{default_role}"
scopes = ["openid", "email", "profile", "groups", "jitgate", "offline_access"]
{extra}
"#,
        domains.join(", ")
    )
}

/// The env var that gives a provider's client secret to the broker.
pub fn secret_env(name: &str) -> String {
    format!(
        "JITGATE_OIDC_{}_CLIENT_SECRET",
        name.to_uppercase().replace('-', "_")
    )
}

pub const CLIENT_SECRET: &str = "test-client-secret-with-enough-entropy";

/// A real OIDC provider on `127.0.0.1:port`.
#[derive(Debug)]
pub struct TestIdp {
    dir: TempDir,
    child: Option<Child>,
    /// Held while the provider may run; dropped by [`TestIdp::stop`].
    socket: Option<ReservedPort>,
    pub port: u16,
    pub issuer: String,
}

impl TestIdp {
    /// Starts the provider on the reserved `socket`, with one client
    /// (`jitgate`) whose redirect URI is `callback`, and `accounts` (id ->
    /// claims).
    pub async fn start(socket: ReservedPort, callback: &str, accounts: Value) -> Self {
        let port = socket.port();
        let dir = tempfile::tempdir().unwrap();
        let clients = json!([{
            "client_id": "jitgate",
            "client_secret": CLIENT_SECRET,
            "redirect_uris": [callback],
            "grant_types": ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"],
            "response_types": ["code"],
        }]);
        std::fs::write(dir.path().join("clients.json"), clients.to_string()).unwrap();
        std::fs::write(dir.path().join("accounts.json"), accounts.to_string()).unwrap();
        let mut idp = TestIdp {
            dir,
            child: None,
            socket: Some(socket),
            port,
            issuer: format!("http://127.0.0.1:{port}"),
        };
        idp.spawn().await;
        idp
    }

    fn script() -> PathBuf {
        let path = workspace().join("target/test-tools/oidc/idp.mjs");
        assert!(
            path.exists() && workspace().join("target/test-tools/oidc/node_modules/oidc-provider").exists(),
            "the test OIDC provider is missing: install the test peers with ./scripts/test-tools (scripts/test does)"
        );
        path
    }

    async fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("idp.log")).unwrap();
        let mut command = Command::new("node");
        command
            .arg(Self::script())
            .env("IDP_PORT", self.port.to_string())
            .env("IDP_DIR", self.dir.path())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true);
        self.socket
            .as_ref()
            .expect("a stopped provider is not started again")
            .pass_to(&mut command);
        let child = command
            .spawn()
            .expect("node (Node.js 20+) runs the test OIDC provider");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !self.log().contains("idp listening on") {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the OIDC provider did not start:\n{}",
                self.log()
            );
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("the OIDC provider exited with {status}:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("idp.log")).unwrap_or_default()
    }

    /// Replaces the accounts (read again at every sign-in).
    pub fn set_accounts(&self, accounts: Value) {
        std::fs::write(self.dir.path().join("accounts.json"), accounts.to_string()).unwrap();
    }

    /// Stops the provider and gives up its port: from now on connections
    /// to its issuer are refused.
    pub async fn stop(&mut self) {
        self.kill().await;
        self.socket = None;
    }

    async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().await.unwrap();
        }
    }

    /// Restarts the provider, on the same port, with a new signing key (a
    /// new `kid`).
    pub async fn rotate_key(&mut self) {
        self.kill().await;
        std::fs::remove_file(self.dir.path().join("keys.json")).unwrap();
        self.spawn().await;
    }

    pub fn kid(&self) -> String {
        let keys: Value =
            serde_json::from_slice(&std::fs::read(self.dir.path().join("keys.json")).unwrap()).unwrap();
        keys[0]["kid"].as_str().unwrap().to_owned()
    }
}

/// A browser: follows redirects, keeps cookies per host.
#[derive(Debug)]
pub struct Browser {
    http: reqwest::Client,
    cookies: HashMap<String, HashMap<String, String>>,
}

/// Where a browser stopped.
#[derive(Debug)]
pub struct Stop {
    pub status: reqwest::StatusCode,
    pub url: String,
    pub body: String,
}

impl Browser {
    /// A browser trusting the broker CA at `ca`.
    pub fn new(ca: &std::path::Path) -> Self {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
        let http = reqwest::Client::builder()
            .add_root_certificate(ca)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Browser {
            http,
            cookies: HashMap::new(),
        }
    }

    fn host(url: &str) -> String {
        let u = reqwest::Url::parse(url).unwrap();
        format!("{}:{}", u.host_str().unwrap(), u.port_or_known_default().unwrap())
    }

    /// Sends `request` to `url` with the cookies kept for its host, and
    /// keeps the cookies the answer sets (an empty value deletes one).
    async fn send(&mut self, request: reqwest::RequestBuilder, url: &str) -> reqwest::Response {
        let jar = self.cookies.entry(Self::host(url)).or_default();
        let cookie: Vec<String> = jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let request = if cookie.is_empty() {
            request
        } else {
            request.header("cookie", cookie.join("; "))
        };
        let resp = request.send().await.unwrap();
        for c in resp.headers().get_all("set-cookie") {
            let pair = c.to_str().unwrap().split(';').next().unwrap();
            if let Some((k, v)) = pair.split_once('=') {
                if v.is_empty() {
                    jar.remove(k.trim());
                } else {
                    jar.insert(k.trim().to_owned(), v.to_owned());
                }
            }
        }
        resp
    }

    /// Where a redirect answer to a request for `url` leads.
    fn location(resp: &reqwest::Response, url: &str) -> Option<String> {
        resp.status().is_redirection().then(|| {
            let location = resp.headers()["location"].to_str().unwrap();
            reqwest::Url::parse(url)
                .unwrap()
                .join(location)
                .unwrap()
                .to_string()
        })
    }

    /// GETs `url` and follows redirects until one leads to a URL for which
    /// `stop_at` holds (not fetched), or a page that is not a redirect.
    pub async fn follow(&mut self, url: &str, stop_at: impl Fn(&str) -> bool) -> Stop {
        let mut url = url.to_owned();
        for _ in 0..20 {
            if stop_at(&url) {
                return Stop {
                    status: reqwest::StatusCode::OK,
                    url,
                    body: String::new(),
                };
            }
            let resp = self.send(self.http.get(&url), &url).await;
            if let Some(next) = Self::location(&resp, &url) {
                url = next;
                continue;
            }
            return Stop {
                status: resp.status(),
                url,
                body: resp.text().await.unwrap(),
            };
        }
        panic!("too many redirects from {url}");
    }

    /// As [`follow`](Self::follow), and submits the forms pages show (a
    /// person pressing "Continue", or a page's script posting a SAML
    /// response), with their hidden fields.
    pub async fn follow_forms(&mut self, url: &str) -> Stop {
        self.follow_forms_until(url, |_| false).await
    }

    /// As [`follow_forms`](Self::follow_forms), stopping before a URL for
    /// which `stop_at` holds (the CLI's loopback listener, say).
    pub async fn follow_forms_until(&mut self, url: &str, stop_at: impl Fn(&str) -> bool + Copy) -> Stop {
        let form = regex::Regex::new(r#"(?s)<form[^>]*method="post"[^>]*action="([^"]+)"[^>]*>(.*?)</form>"#)
            .unwrap();
        let input = regex::Regex::new(r#"<input type="hidden" name="([^"]+)" value="([^"]*)"/?>"#).unwrap();
        let mut stop = self.follow(url, stop_at).await;
        for _ in 0..10 {
            let Some(f) = form.captures(&stop.body) else {
                return stop;
            };
            let action = f[1].to_owned();
            let fields: Vec<(String, String)> = input
                .captures_iter(&f[2])
                .map(|c| (c[1].to_owned(), c[2].to_owned()))
                .collect();
            let resp = self.send(self.http.post(&action).form(&fields), &action).await;
            stop = match Self::location(&resp, &action) {
                Some(next) => self.follow(&next, stop_at).await,
                None => Stop {
                    status: resp.status(),
                    url: action,
                    body: resp.text().await.unwrap(),
                },
            };
        }
        stop
    }

    /// The cookies kept for `url`'s host.
    pub fn cookie(&self, url: &str, name: &str) -> Option<String> {
        self.cookies.get(&Self::host(url))?.get(name).cloned()
    }
}

/// The query parameters of a URL.
pub fn query(url: &str) -> HashMap<String, String> {
    reqwest::Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// A PKCE verifier and its S256 challenge.
pub fn pkce() -> (String, String) {
    use sha2::Digest;
    let verifier = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let challenge =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// How the hostile provider's next ID token is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trick {
    Honest,
    WrongAudience,
    WrongIssuer,
    AlgNone,
    Expired,
    UnknownKey,
    /// The nonce of the first sign-in it saw (a replayed token).
    ReplayedNonce,
    /// Issued and signed by another provider.
    OtherProvider,
    /// Honest, but the email is not said to be verified.
    UnverifiedEmail,
}

#[derive(Debug)]
struct HostileState {
    issuer: String,
    trick: Trick,
    nonces: Vec<String>,
    key: rcgen::KeyPair,
    other_key: rcgen::KeyPair,
}

/// An OIDC provider that issues the ID token a test asks for.
#[derive(Debug, Clone)]
pub struct HostileIdp {
    state: Arc<Mutex<HostileState>>,
    pub issuer: String,
}

fn rsa_jwk(key: &rcgen::KeyPair, kid: &str) -> Value {
    use x509_parser::prelude::FromDer;
    let der = rcgen::PublicKeyData::subject_public_key_info(key);
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&der).unwrap();
    let Ok(x509_parser::public_key::PublicKey::RSA(rsa)) = spki.parsed() else {
        panic!("not an RSA key")
    };
    let b64 = |b: &[u8]| {
        let trimmed: &[u8] = match b.iter().position(|x| *x != 0) {
            Some(i) => &b[i..],
            None => b,
        };
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(trimmed)
    };
    json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64(rsa.modulus), "e": b64(rsa.exponent)})
}

fn sign(key: &rcgen::KeyPair, kid: &str, claims: &Value) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    let pem = key.serialize_pem();
    jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

impl HostileIdp {
    /// Serves on the reserved `socket` until the test ends.
    pub async fn start(socket: ReservedPort) -> Self {
        let port = socket.port();
        let issuer = format!("http://127.0.0.1:{port}");
        let state = Arc::new(Mutex::new(HostileState {
            issuer: issuer.clone(),
            trick: Trick::Honest,
            nonces: Vec::new(),
            key: rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap(),
            other_key: rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap(),
        }));
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .with_state(state.clone());
        let listener = socket.into_listener();
        tokio::spawn(async move { axum::serve(listener, app).await });
        HostileIdp { state, issuer }
    }

    pub fn trick(&self, trick: Trick) {
        self.state.lock().unwrap().trick = trick;
    }
}

async fn discovery(State(s): State<Arc<Mutex<HostileState>>>) -> Json<Value> {
    let issuer = s.lock().unwrap().issuer.clone();
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }))
}

async fn jwks(State(s): State<Arc<Mutex<HostileState>>>) -> Json<Value> {
    let s = s.lock().unwrap();
    Json(json!({"keys": [rsa_jwk(&s.key, "good")]}))
}

async fn authorize(
    State(s): State<Arc<Mutex<HostileState>>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    s.lock().unwrap().nonces.push(q["nonce"].clone());
    Redirect::to(&format!(
        "{}?code=hostile-code&state={}",
        q["redirect_uri"], q["state"]
    ))
    .into_response()
}

async fn token(State(s): State<Arc<Mutex<HostileState>>>) -> Json<Value> {
    let s = s.lock().unwrap();
    let now = chrono::Utc::now().timestamp();
    let nonce = match s.trick {
        Trick::ReplayedNonce => s.nonces.first().cloned().unwrap_or_default(),
        _ => s.nonces.last().cloned().unwrap_or_default(),
    };
    let mut claims = json!({
        "iss": s.issuer, "sub": "mallory", "aud": "jitgate", "iat": now, "exp": now + 300,
        "nonce": nonce, "email": "mallory@hostile.example", "email_verified": true, "name": "Mallory"
    });
    let id_token = match s.trick {
        Trick::Honest | Trick::ReplayedNonce => sign(&s.key, "good", &claims),
        Trick::WrongAudience => {
            claims["aud"] = json!("someone-else");
            sign(&s.key, "good", &claims)
        }
        Trick::WrongIssuer => {
            claims["iss"] = json!("http://127.0.0.1:1");
            sign(&s.key, "good", &claims)
        }
        Trick::Expired => {
            claims["iat"] = json!(now - 7200);
            claims["exp"] = json!(now - 3600);
            sign(&s.key, "good", &claims)
        }
        Trick::UnknownKey => sign(&s.other_key, "never-published", &claims),
        Trick::UnverifiedEmail => {
            claims["email_verified"] = json!(false);
            sign(&s.key, "good", &claims)
        }
        Trick::OtherProvider => {
            claims["iss"] = json!("https://login.other.example");
            sign(&s.other_key, "good", &claims)
        }
        Trick::AlgNone => {
            let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
            format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), b64(&claims))
        }
    };
    Json(
        json!({"access_token": "hostile-access", "token_type": "Bearer", "expires_in": 300, "id_token": id_token}),
    )
}
