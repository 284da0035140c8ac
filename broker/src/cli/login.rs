//! `jitgate login`: sign in through the broker's identity provider in a
//! browser, with a loopback redirect back to the CLI (RFC 8252), and keep
//! the session's tokens in the user's config directory, renewed when they
//! expire.
//!
//! The browser brings a one-time code to `http://127.0.0.1:PORT/callback`;
//! the CLI exchanges it with the PKCE verifier only it knows, so a code
//! seen by anyone else is worthless. Without a browser on this machine,
//! `--device` uses the provider's device flow (RFC 8628) instead.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::Router;
use base64::Engine;
use chrono::{DateTime, Utc};
use jitgate_shared::v1::api::{DeviceLoginBody, DevicePoll, LoginBody, TokenSet};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::client::{ApiClient, ClientError};

/// How long `jitgate login` waits for the browser.
const BROWSER_WAIT: Duration = Duration::from_secs(300);
/// Tokens this close to expiry are renewed before use.
const RENEW_MARGIN: chrono::Duration = chrono::Duration::seconds(30);

/// What `jitgate login` keeps: one broker's session tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credentials {
    pub server: String,
    pub tokens: TokenSet,
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error(transparent)]
    Api(#[from] ClientError),
    #[error("the loopback listener for the browser: {0}")]
    Listener(std::io::Error),
    #[error("no answer from the browser within {} s; run `jitgate login` again", BROWSER_WAIT.as_secs())]
    Timeout,
    #[error("the browser came back without a sign-in code: {0}")]
    Browser(String),
    #[error("credentials file {path}: {error}")]
    File { path: String, error: String },
    #[error("not signed in to {server}: run `jitgate login` (or set JITGATE_TOKEN)")]
    NotSignedIn { server: String },
    #[error("the session with {server} ended ({reason}); run `jitgate login`")]
    SessionEnded { server: String, reason: String },
}

/// Where credentials live: `$JITGATE_CONFIG_DIR`, else
/// `$XDG_CONFIG_HOME/jitgate`, else `~/.config/jitgate`.
pub fn config_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("JITGATE_CONFIG_DIR") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CONFIG_HOME") {
        return Some(PathBuf::from(d).join("jitgate"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/jitgate"))
}

fn credentials_path() -> Result<PathBuf, LoginError> {
    config_dir()
        .map(|d| d.join("credentials.json"))
        .ok_or_else(|| LoginError::File {
            path: "~/.config/jitgate".into(),
            error: "no HOME, XDG_CONFIG_HOME or JITGATE_CONFIG_DIR".into(),
        })
}

pub fn load() -> Result<Option<Credentials>, LoginError> {
    let path = credentials_path()?;
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| LoginError::File {
                path: path.display().to_string(),
                error: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LoginError::File {
            path: path.display().to_string(),
            error: e.to_string(),
        }),
    }
}

/// Writes the credentials, readable by the owner only.
pub fn save(credentials: &Credentials) -> Result<(), LoginError> {
    let path = credentials_path()?;
    let fail = |e: std::io::Error| LoginError::File {
        path: path.display().to_string(),
        error: e.to_string(),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let tmp = path.with_extension("json.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(fail)?;
    std::io::Write::write_all(
        &mut file,
        &serde_json::to_vec_pretty(credentials).unwrap_or_default(),
    )
    .map_err(fail)?;
    file.sync_all().map_err(fail)?;
    std::fs::rename(&tmp, &path).map_err(fail)
}

pub fn forget() -> Result<(), LoginError> {
    let path = credentials_path()?;
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(LoginError::File {
            path: path.display().to_string(),
            error: e.to_string(),
        }),
        _ => Ok(()),
    }
}

fn pkce_pair() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let verifier = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let challenge =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

#[derive(Debug, Deserialize)]
struct Redirect {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

async fn callback(State(tx): State<mpsc::Sender<Redirect>>, Query(r): Query<Redirect>) -> &'static str {
    let ok = r.code.is_some();
    let _ = tx.send(r).await;
    if ok {
        "Signed in to jitgate; you can close this window and go back to the terminal.\n"
    } else {
        "Sign-in failed; see the terminal.\n"
    }
}

/// Signs in: prints (and opens, unless `open_browser` is false) the
/// provider's URL, waits for the browser, exchanges the code.
pub async fn login(
    api: &ApiClient,
    email: Option<String>,
    provider: Option<String>,
    open_browser: bool,
) -> Result<TokenSet, LoginError> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(LoginError::Listener)?;
    let port = listener.local_addr().map_err(LoginError::Listener)?.port();
    let (verifier, challenge) = pkce_pair();
    let started = api
        .login(&LoginBody {
            email,
            provider,
            redirect_uri: format!("http://127.0.0.1:{port}/callback"),
            code_challenge: challenge,
        })
        .await?;
    let (tx, mut rx) = mpsc::channel(1);
    let app = Router::new().route("/callback", get(callback)).with_state(tx);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    eprintln!(
        "Sign in with {} in your browser:\n\n  {}\n",
        started.provider, started.authorization_url
    );
    if open_browser {
        open(&started.authorization_url);
    }
    let redirect = tokio::time::timeout(BROWSER_WAIT, rx.recv()).await;
    server.abort();
    let redirect = redirect
        .map_err(|_| LoginError::Timeout)?
        .ok_or(LoginError::Timeout)?;
    let (Some(code), Some(state)) = (redirect.code, redirect.state) else {
        return Err(LoginError::Browser(
            redirect.error.unwrap_or_else(|| "no code".into()),
        ));
    };
    Ok(api.exchange_code(&state, &code, &verifier).await?)
}

/// Signs in with the device flow: the person opens a URL on any device and
/// enters a code; the CLI polls the broker until they did.
pub async fn login_device(
    api: &ApiClient,
    email: Option<String>,
    provider: Option<String>,
) -> Result<TokenSet, LoginError> {
    let started = api
        .start_device_login(&DeviceLoginBody { email, provider })
        .await?;
    match &started.verification_uri_complete {
        Some(complete) => eprintln!(
            "Sign in with {}: open\n\n  {complete}\n\non any device (or {} and enter the code {}).",
            started.provider, started.verification_uri, started.user_code
        ),
        None => eprintln!(
            "Sign in with {}: open {} on any device and enter the code {}.",
            started.provider, started.verification_uri, started.user_code
        ),
    }
    let mut interval = Duration::from_secs(started.interval_seconds.max(1));
    loop {
        tokio::time::sleep(interval).await;
        match api.poll_device_login(&started.handle).await? {
            DevicePoll::Pending { interval_seconds } => {
                interval = Duration::from_secs(interval_seconds.max(1))
            }
            DevicePoll::SignedIn { tokens } => return Ok(*tokens),
        }
    }
}

/// Opens `url` in the desktop's browser, if there is one.
fn open(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let spawned = std::process::Command::new(opener)
        .arg(url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if spawned.is_err() {
        eprintln!("(could not start a browser; open the URL above yourself)");
    }
}

/// The access token to use for `server`: the saved one, renewed through
/// the broker when it is about to expire.
pub async fn access_token(
    server: &str,
    ca_cert: Option<&Path>,
    now: DateTime<Utc>,
) -> Result<String, LoginError> {
    let not_signed_in = || LoginError::NotSignedIn {
        server: server.to_owned(),
    };
    let saved = load()?.filter(|c| c.server == server).ok_or_else(not_signed_in)?;
    if saved.tokens.expires_at - RENEW_MARGIN > now {
        return Ok(saved.tokens.access_token);
    }
    let api = ApiClient::new(server, None, ca_cert)?;
    match api.refresh(&saved.tokens.refresh_token).await {
        Ok(tokens) => {
            let token = tokens.access_token.clone();
            save(&Credentials {
                server: server.to_owned(),
                tokens,
            })?;
            Ok(token)
        }
        Err(e) if e.status() == Some(reqwest::StatusCode::UNAUTHORIZED) => Err(LoginError::SessionEnded {
            server: server.to_owned(),
            reason: e.to_string(),
        }),
        Err(e) => Err(e.into()),
    }
}
