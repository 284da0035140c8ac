//! The agent's end of the channel: one outbound websocket over mutual TLS
//! to the broker's hub, reconnecting with backoff and jitter for as long as
//! the agent runs. Commands are carried out concurrently (one at a time per
//! entitlement) and answered as they finish.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use jitgate_shared::v1::protocol::{self, AgentMessage, BrokerMessage};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use crate::executor::Executor;
use crate::journal::SelfRevokeReport;
use crate::state::{new_key_and_csr, StateDir};

type Ws = WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;

pub use jitgate_shared::v1::protocol::PATH;

/// A self-revoke report sent and not acknowledged is sent again on the same
/// session after this long: the broker may have failed to store it.
pub const REPORT_RESEND: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct ChannelSettings {
    /// Longest pause between reconnection attempts.
    pub reconnect_max: Duration,
    pub connect_timeout: Duration,
}

impl Default for ChannelSettings {
    fn default() -> Self {
        Self {
            reconnect_max: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("{0}")]
    State(#[from] crate::state::StateError),
    #[error("hub URL `{0}` is not wss://host:port")]
    BadUrl(String),
    #[error("connecting to {url}: {error}")]
    Connect { url: String, error: String },
    #[error("the broker refused this agent ({status}): {reason}")]
    NotAdmitted { status: u16, reason: String },
    #[error("the broker said: {0}")]
    Broker(String),
    #[error("transport: {0}")]
    Transport(#[from] tungstenite::Error),
    #[error("the broker went silent")]
    Silent,
}

fn host_port(url: &str) -> Result<(String, u16), ChannelError> {
    let bad = || ChannelError::BadUrl(url.to_owned());
    let rest = url.strip_prefix("wss://").ok_or_else(bad)?;
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = authority.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((host.to_owned(), port.parse().map_err(|_| bad())?))
}

/// Runs the channel until `shutdown` turns true.
pub async fn run(
    state: StateDir,
    executor: Arc<Executor>,
    settings: ChannelSettings,
    connected: watch::Sender<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut attempt: u32 = 0;
    // Which of the hub URLs to connect to; a failure moves to the next.
    let mut hub = 0usize;
    // Failures in a row: every hub is tried once before pausing.
    let mut failures = 0usize;
    loop {
        let started = Instant::now();
        let urls = match state.identity() {
            Ok(identity) => identity.hub_urls().into_iter().map(str::to_owned).collect(),
            Err(_) => Vec::new(),
        };
        let url = urls.get(hub % urls.len().max(1)).cloned().unwrap_or_default();
        let result = tokio::select! {
            r = session(&state, &executor, &settings, &connected, &url) => r,
            _ = shutdown.changed() => {
                connected.send_replace(false);
                return;
            }
        };
        connected.send_replace(false);
        match result {
            Ok(()) => {
                tracing::info!(hub = %url, "session ended; reconnecting");
                failures = 0;
            }
            Err(e) => {
                tracing::warn!(hub = %url, error = %e, "no session with the broker; retrying");
                failures += 1;
                hub = hub.wrapping_add(1);
            }
        }
        if started.elapsed() > Duration::from_secs(30) {
            attempt = 0;
        }
        if urls.len() > 1 && !failures.is_multiple_of(urls.len()) {
            // Another broker is yet to be tried in this round: at once.
            continue;
        }
        let pause = backoff(attempt, settings.reconnect_max, rand::random());
        attempt = attempt.saturating_add(1);
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Exponential from 100 ms to `max`, with equal jitter.
fn backoff(attempt: u32, max: Duration, jitter: f64) -> Duration {
    let exp = Duration::from_millis(100)
        .saturating_mul(1u32 << attempt.min(16))
        .min(max);
    exp / 2 + (exp / 2).mul_f64(jitter.clamp(0.0, 1.0))
}

async fn connect(state: &StateDir, settings: &ChannelSettings, url: &str) -> Result<Ws, ChannelError> {
    let (tls, _) = state.hub_tls()?;
    let (host, port) = host_port(url)?;
    let url = url.to_owned();
    let err = |error: String| ChannelError::Connect {
        url: url.clone(),
        error,
    };
    let server_name = ServerName::try_from(host.clone()).map_err(|e| err(e.to_string()))?;
    let tcp = tokio::time::timeout(
        settings.connect_timeout,
        TcpStream::connect((host.as_str(), port)),
    )
    .await
    .map_err(|_| err("timed out".into()))?
    .map_err(|e| err(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let tls = tokio::time::timeout(
        settings.connect_timeout,
        tokio_rustls::TlsConnector::from(tls).connect(server_name, tcp),
    )
    .await
    .map_err(|_| err("TLS handshake timed out".into()))?
    .map_err(|e| err(format!("TLS: {e}")))?;
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(protocol::READ_BUFFER_BYTES)
        .max_message_size(Some(protocol::MAX_FRAME_BYTES))
        .max_frame_size(Some(protocol::MAX_FRAME_BYTES));
    let request = format!("wss://{host}:{port}{PATH}");
    match tokio_tungstenite::client_async_with_config(request, tls, Some(ws_config)).await {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(response)) => Err(ChannelError::NotAdmitted {
            status: response.status().as_u16(),
            reason: response
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default(),
        }),
        Err(e) => Err(err(e.to_string())),
    }
}

async fn send(ws: &mut Ws, message: &AgentMessage) -> Result<(), tungstenite::Error> {
    ws.send(Message::text(protocol::encode(message))).await
}

/// One session: hello, then serve until the connection ends.
async fn session(
    state: &StateDir,
    executor: &Arc<Executor>,
    settings: &ChannelSettings,
    connected: &watch::Sender<bool>,
    url: &str,
) -> Result<(), ChannelError> {
    let identity = state.identity()?;
    let mut ws = connect(state, settings, url).await?;
    send(
        &mut ws,
        &AgentMessage::Hello {
            version: protocol::VERSION,
            configuration: identity.configuration.clone(),
            capabilities: executor.provider().capabilities(),
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        },
    )
    .await?;
    let heartbeat = loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => match protocol::decode::<BrokerMessage>(t.as_bytes()) {
                Ok(BrokerMessage::Welcome {
                    version,
                    heartbeat_seconds,
                }) => {
                    protocol::check_version(version).map_err(|e| ChannelError::Broker(e.to_string()))?;
                    break Duration::from_secs(u64::from(heartbeat_seconds.max(1)));
                }
                Ok(BrokerMessage::Error { message, .. }) => return Err(ChannelError::Broker(message)),
                Ok(_) | Err(_) => return Err(ChannelError::Broker("expected a welcome".into())),
            },
            Some(Ok(Message::Close(_))) | None => {
                return Err(ChannelError::Broker("closed before welcome".into()))
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
        }
    };
    connected.send_replace(true);
    record_contact(state, executor.clock().now());
    tracing::info!(hub = %url, agent = %identity.agent, configuration = %identity.configuration, "connected to the broker");
    let mut live = Session {
        state,
        executor,
        answers: mpsc::unbounded_channel(),
        pending_key: None,
        reported: HashMap::new(),
        renew_asked: false,
        renew_at: state.credentials()?.renew_at(),
    };
    live.serve(&mut ws, heartbeat).await
}

/// Records a contact for `jitgate-agent health`; failing to is logged,
/// never a reason to drop the session.
fn record_contact(state: &StateDir, at: chrono::DateTime<chrono::Utc>) {
    if let Err(e) = state.record_contact(at) {
        tracing::warn!(error = %e, "could not record the broker's contact for the health check");
    }
}

struct Session<'a> {
    state: &'a StateDir,
    executor: &'a Arc<Executor>,
    /// Finished commands and inventories, to send.
    answers: (
        mpsc::UnboundedSender<AgentMessage>,
        mpsc::UnboundedReceiver<AgentMessage>,
    ),
    /// The key for a certificate asked for and not yet received.
    pending_key: Option<String>,
    /// Self-revoke reports sent on this session and not acknowledged, by
    /// command, with when they were last sent.
    reported: HashMap<String, Instant>,
    renew_asked: bool,
    /// Two thirds into the current certificate's life.
    renew_at: chrono::DateTime<chrono::Utc>,
}

impl Session<'_> {
    async fn serve(&mut self, ws: &mut Ws, heartbeat: Duration) -> Result<(), ChannelError> {
        let mut last_heard = Instant::now();
        let mut tick = tokio::time::interval(heartbeat);
        let mut seq = 0u64;
        self.send_reports(ws).await?;
        loop {
            let renew_in = self.renew_in();
            tokio::select! {
                frame = ws.next() => {
                    last_heard = Instant::now();
                    match frame {
                        Some(Ok(Message::Text(t))) => self.on_frame(ws, t.as_bytes()).await?,
                        Some(Ok(Message::Close(_))) | None => return Ok(()),
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return Err(e.into()),
                    }
                }
                Some(answer) = self.answers.1.recv() => {
                    ws.feed(Message::text(protocol::encode(&answer))).await?;
                    while let Ok(more) = self.answers.1.try_recv() {
                        ws.feed(Message::text(protocol::encode(&more))).await?;
                    }
                    ws.flush().await?;
                }
                _ = self.executor.reports.notified() => self.send_reports(ws).await?,
                _ = tick.tick() => {
                    if last_heard.elapsed() > heartbeat * 2 + heartbeat / 2 {
                        return Err(ChannelError::Silent);
                    }
                    record_contact(self.state, self.executor.clock().now());
                    seq += 1;
                    send(ws, &AgentMessage::Heartbeat { seq }).await?;
                    self.send_reports(ws).await?;
                }
                _ = tokio::time::sleep(renew_in), if !self.renew_asked => self.ask_renewal(ws).await?,
            }
        }
    }

    fn renew_in(&self) -> Duration {
        self.executor.clock().until(self.renew_at)
    }

    async fn ask_renewal(&mut self, ws: &mut Ws) -> Result<(), ChannelError> {
        self.renew_asked = true;
        match new_key_and_csr() {
            Ok((key, csr_pem)) => {
                self.pending_key = Some(key);
                tracing::info!("asking the broker for a new certificate");
                send(ws, &AgentMessage::RenewCertificate { csr_pem }).await?;
            }
            Err(e) => tracing::error!(error = %e, "making a key for renewal failed"),
        }
        Ok(())
    }

    /// Sends the self-revoke reports due (at the session's start, when one
    /// is written, and at each heartbeat for those unacknowledged).
    async fn send_reports(&mut self, ws: &mut Ws) -> Result<(), ChannelError> {
        let reports = match self.executor.journal().reports() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "reading self-revoke reports failed");
                return Ok(());
            }
        };
        for r in reports_due(&reports, &mut self.reported, Instant::now()) {
            send(
                ws,
                &AgentMessage::SelfRevoked {
                    command: r.command.clone(),
                    grant: r.grant,
                    entitlement: r.entitlement.clone(),
                    deadline: r.deadline,
                    at: r.at,
                    outcome: r.outcome.clone(),
                },
            )
            .await?;
        }
        Ok(())
    }

    async fn on_frame(&mut self, ws: &mut Ws, frame: &[u8]) -> Result<(), ChannelError> {
        let message = match protocol::decode::<BrokerMessage>(frame) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "broker frame refused");
                send(
                    ws,
                    &AgentMessage::Error {
                        message: e.to_string(),
                    },
                )
                .await?;
                return Ok(());
            }
        };
        match message {
            BrokerMessage::Command { command } => {
                // Its place in line is taken here, in arrival order.
                let carried_out = self.executor.admit(&command);
                let answers = self.answers.0.clone();
                tokio::spawn(async move {
                    let (id, outcome) = carried_out.await;
                    let _ = answers.send(AgentMessage::Result { command: id, outcome });
                });
            }
            BrokerMessage::List { request, targets } => {
                let executor = self.executor.clone();
                let answers = self.answers.0.clone();
                tokio::spawn(async move {
                    match executor.inventory(&targets).await {
                        Ok(entitlements) => {
                            for page in inventory_pages(request, entitlements) {
                                let _ = answers.send(page);
                            }
                        }
                        Err(e) => {
                            let _ = answers.send(AgentMessage::Error {
                                message: format!("listing the tenant failed: {e}"),
                            });
                        }
                    }
                });
            }
            BrokerMessage::Check {
                request,
                entitlements,
            } => {
                let executor = self.executor.clone();
                let answers = self.answers.0.clone();
                tokio::spawn(async move {
                    let (held, absent) = executor.check(entitlements).await;
                    let _ = answers.send(AgentMessage::Holdings {
                        request,
                        held,
                        absent,
                    });
                });
            }
            BrokerMessage::Acknowledged { command } => {
                self.reported.remove(&command);
                let journal = self.executor.journal();
                let forgotten = match journal.remove_report(&command) {
                    Ok(()) => journal.flush().await,
                    Err(e) => Err(e),
                };
                if let Err(e) = forgotten {
                    tracing::error!(error = %e, "forgetting an acknowledged report failed; it will be sent again");
                }
            }
            BrokerMessage::Certificate {
                certificate_pem,
                not_after,
            } => {
                if let Some(key) = self.pending_key.take() {
                    self.state.save_credentials(&certificate_pem, &key)?;
                    self.renew_at = self.state.credentials()?.renew_at();
                    self.renew_asked = false;
                    tracing::info!(%not_after, "certificate renewed; later connections use it");
                }
            }
            BrokerMessage::Heartbeat { .. } | BrokerMessage::Welcome { .. } => {}
            BrokerMessage::Error { code, message } => {
                tracing::warn!(?code, %message, "the broker reported an error");
            }
        }
        Ok(())
    }
}

/// Of the reports `waiting` in the journal, those to send now: never sent
/// on this session, or sent [`REPORT_RESEND`] ago or more without an
/// acknowledgement. Records them as sent at `now`, and forgets reports no
/// longer waiting.
fn reports_due<'a>(
    waiting: &'a [SelfRevokeReport],
    sent: &mut HashMap<String, Instant>,
    now: Instant,
) -> Vec<&'a SelfRevokeReport> {
    sent.retain(|command, _| waiting.iter().any(|r| &r.command == command));
    let mut due = Vec::new();
    for report in waiting {
        let last = sent.get(&report.command);
        if last.is_none_or(|at| now.saturating_duration_since(*at) >= REPORT_RESEND) {
            sent.insert(report.command.clone(), now);
            due.push(report);
        }
    }
    due
}

/// An inventory as `Inventory` frames of at most
/// [`protocol::INVENTORY_PAGE`] entitlements; all but the last say `more`.
/// An empty inventory is one empty page.
pub fn inventory_pages(
    request: u64,
    entitlements: Vec<jitgate_shared::v1::Entitlement>,
) -> Vec<AgentMessage> {
    if entitlements.is_empty() {
        return vec![AgentMessage::Inventory {
            request,
            entitlements,
            more: false,
        }];
    }
    let pages: Vec<Vec<jitgate_shared::v1::Entitlement>> = entitlements
        .chunks(protocol::INVENTORY_PAGE)
        .map(<[jitgate_shared::v1::Entitlement]>::to_vec)
        .collect();
    let last = pages.len() - 1;
    pages
        .into_iter()
        .enumerate()
        .map(|(i, entitlements)| AgentMessage::Inventory {
            request,
            entitlements,
            more: i < last,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(command: &str) -> SelfRevokeReport {
        let at = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        SelfRevokeReport {
            command: command.into(),
            grant: jitgate_shared::v1::GrantId::generate(),
            entitlement: jitgate_shared::v1::Entitlement {
                configuration: jitgate_shared::v1::ConfigId::new("entra").unwrap(),
                target: jitgate_shared::v1::Target::EntraGroupMembership { group_id: "g".into() },
                principal: "alice".into(),
            },
            deadline: at,
            at,
            outcome: jitgate_shared::v1::protocol::Outcome::Revoked,
        }
    }

    fn commands(due: &[&SelfRevokeReport]) -> Vec<String> {
        due.iter().map(|r| r.command.clone()).collect()
    }

    #[test]
    fn unacknowledged_reports_are_sent_again_after_a_while_and_acknowledged_ones_forgotten() {
        let (a, b) = (report("a"), report("b"));
        let mut sent = HashMap::new();
        let start = Instant::now();
        assert_eq!(
            commands(&reports_due(std::slice::from_ref(&a), &mut sent, start)),
            ["a"]
        );
        let later = start + REPORT_RESEND / 2;
        assert_eq!(
            commands(&reports_due(&[a.clone(), b.clone()], &mut sent, later)),
            ["b"],
            "a new report goes at once, one just sent waits"
        );
        let resend = start + REPORT_RESEND;
        assert_eq!(
            commands(&reports_due(&[a.clone(), b.clone()], &mut sent, resend)),
            ["a"],
            "the broker may not have stored it: again"
        );
        // Acknowledged: gone from the journal, forgotten here.
        assert!(reports_due(&[b], &mut sent, resend).is_empty());
        assert_eq!(sent.len(), 1);
        assert_eq!(commands(&reports_due(&[a], &mut sent, resend)), ["a"]);
    }

    #[test]
    fn hub_urls_parse_or_are_named() {
        assert_eq!(
            host_port("wss://localhost:8444").unwrap(),
            ("localhost".into(), 8444)
        );
        assert_eq!(host_port("wss://[::1]:8444/").unwrap(), ("::1".into(), 8444));
        assert!(matches!(host_port("https://x:1"), Err(ChannelError::BadUrl(_))));
        assert!(host_port("wss://nohost").is_err());
    }

    #[test]
    fn reconnect_pauses_grow_to_the_cap() {
        let max = Duration::from_secs(5);
        assert!(backoff(0, max, 0.0) >= Duration::from_millis(50));
        assert!(backoff(30, max, 1.0) <= max);
        assert!(backoff(3, max, 0.5) <= backoff(4, max, 0.5));
    }
}
