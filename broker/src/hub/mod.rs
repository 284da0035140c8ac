//! The agent hub: a websocket endpoint over mutual TLS where gateway agents
//! keep one outbound session each.
//!
//! A connection is admitted in three steps, each of which can refuse it:
//! the TLS handshake (a client certificate from the broker CA, unexpired),
//! the agent record (enrolled, approved, not revoked, for the configuration
//! its certificate names), and the hello (protocol version and the same
//! configuration). The agent's identity comes from its certificate only.
//! What a session does after that is in `session.rs`: it sends what the
//! [outbox](crate::outbox) hands it and stores what comes back.

mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use jitgate_shared::v1::protocol::MAX_FRAME_BYTES;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::service::Broker;
use crate::tls::agent::AgentIdentity;

pub use jitgate_shared::v1::protocol::PATH;

/// Hub settings from the broker configuration.
#[derive(Debug, Clone)]
pub struct HubSettings {
    /// How often each side sends a heartbeat; two missed and the session is
    /// closed and the agent shown offline.
    pub heartbeat: Duration,
    /// How long a command may go unanswered before it is sent again.
    pub answer_timeout: Duration,
    /// Commands in flight per session.
    pub window: usize,
    /// How often a session asks its agent for the tenant's inventory and
    /// reconciles (besides once at connect).
    pub reconcile_every: Duration,
}

impl Default for HubSettings {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(5),
            answer_timeout: Duration::from_secs(30),
            window: 64,
            reconcile_every: Duration::from_secs(600),
        }
    }
}

/// How long a client has to finish the TLS and websocket handshakes and say
/// hello.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(jitgate_shared::v1::protocol::READ_BUFFER_BYTES)
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES))
}

/// Accepts agent connections until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ArcSwap<rustls::ServerConfig>>,
    broker: Broker,
    settings: HubSettings,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut sessions = JoinSet::new();
    loop {
        let (tcp, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "hub accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.load_full());
        let broker = broker.clone();
        let settings = settings.clone();
        let shutdown = shutdown.clone();
        sessions.spawn(async move {
            if let Err(reason) = connect(tcp, peer, acceptor, broker, settings, shutdown).await {
                tracing::info!(%peer, %reason, "agent connection refused");
            }
        });
        while sessions.try_join_next().is_some() {}
    }
    sessions.abort_all();
    while sessions.join_next().await.is_some() {}
}

/// Why a connection did not become a session.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    #[error("handshake timed out")]
    Timeout,
    #[error("{0}")]
    Identity(String),
    #[error("{0}")]
    NotAdmitted(String),
    #[error("websocket handshake failed: {0}")]
    Websocket(String),
    #[error("{0}")]
    Hello(String),
}

#[allow(clippy::result_large_err)] // the handshake callback type is tungstenite's
async fn connect(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
    broker: Broker,
    settings: HubSettings,
    shutdown: watch::Receiver<bool>,
) -> Result<(), Refused> {
    let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
        .await
        .map_err(|_| Refused::Timeout)?
        .map_err(Refused::Tls)?;
    // rustls verified the chain against the broker CA and the validity
    // dates; what is left is who it names and whether they may connect.
    let identity = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or_else(|| Refused::Identity("no client certificate".into()))
        .and_then(|c| AgentIdentity::from_cert(c).map_err(|e| Refused::Identity(e.to_string())))?;
    let admitted = broker.admit_agent(&identity).await;
    let refusal = admitted.as_ref().err().map(ToString::to_string);
    let callback = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        let status = if request.uri().path() != PATH {
            StatusCode::NOT_FOUND
        } else if refusal.is_some() {
            StatusCode::FORBIDDEN
        } else {
            return Ok(response);
        };
        let mut e = ErrorResponse::new(Some(
            refusal
                .clone()
                .unwrap_or_else(|| format!("agents connect to {PATH}")),
        ));
        *e.status_mut() = status;
        Err(e)
    };
    let ws = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        tokio_tungstenite::accept_hdr_async_with_config(tls, callback, Some(ws_config())),
    )
    .await
    .map_err(|_| Refused::Timeout)?
    .map_err(|e| Refused::Websocket(e.to_string()))?;
    let agent = admitted.map_err(|e| Refused::NotAdmitted(e.to_string()))?;
    tracing::debug!(%peer, agent = %agent.id, "agent admitted");
    session::run(ws, identity, broker, settings, shutdown).await
}
