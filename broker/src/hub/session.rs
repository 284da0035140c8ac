//! One agent session: hello, reconciliation, then a loop that sends queued
//! commands (revokes first, one per entitlement in flight, a window per
//! session), stores the answers, and keeps heartbeats going.
//!
//! Answers are stored in batches, one at a time: those that arrive while a
//! batch is being stored make the next one, in one durable change, so a
//! busy session's answers share commits instead of waiting for one
//! another; a command stays claimed until its answer is stored.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::future::{BoxFuture, OptionFuture};
use futures_util::{SinkExt, StreamExt};
use jitgate_shared::v1::api::IdentityMode;
use jitgate_shared::v1::protocol::{self, AgentMessage, BrokerMessage, ErrorKind, FrameError};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_rustls::server::TlsStream;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use super::{HubSettings, Refused, HANDSHAKE_TIMEOUT};
use crate::metrics::of_configuration;
use crate::outbox::answer::Answered;
use crate::outbox::{self, Command, OutboxSignal};
use crate::service::delivery::SelfRevoke;
use crate::service::live::SessionEntry;
use crate::service::{Broker, ServiceError};
use crate::tls::agent::AgentIdentity;

type Ws = WebSocketStream<TlsStream<TcpStream>>;

/// The reconciliation request a session sends first.
const LIST_REQUEST: u64 = 1;
/// Request id of downstream checks (one outstanding at a time).
const CHECK_REQUEST: u64 = 2;

/// Why a session ended, for the log.
#[derive(Debug, thiserror::Error)]
enum End {
    #[error("the agent closed the session")]
    Closed,
    #[error("revoked, or replaced by a newer session of the same agent")]
    Kicked,
    #[error("missed two heartbeats")]
    Silent,
    #[error("the broker is shutting down")]
    Shutdown,
    #[error("transport: {0}")]
    Transport(String),
}

pub(super) async fn run(
    mut ws: Ws,
    identity: AgentIdentity,
    broker: Broker,
    settings: HubSettings,
    shutdown: watch::Receiver<bool>,
) -> Result<(), Refused> {
    let agent_version = match tokio::time::timeout(HANDSHAKE_TIMEOUT, hello(&mut ws, &identity)).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            let _ = ws.close(None).await;
            return Err(e);
        }
        Err(_) => return Err(Refused::Timeout),
    };
    // Admitted at the handshake; checked again now: an agent revoked in
    // between gets no session.
    if let Err(e) = broker.admit_agent(&identity).await {
        let message = e.to_string();
        let refusal = BrokerMessage::Error {
            code: ErrorKind::Refused,
            message: message.clone(),
        };
        let _ = send(&mut ws, &refusal).await;
        let _ = ws.close(None).await;
        return Err(Refused::NotAdmitted(message));
    }
    let live = broker.live().clone();
    let entry = live.open_session(
        identity.agent,
        identity.configuration.clone(),
        agent_version,
        broker.clock().now(),
    );
    let online = of_configuration(identity.configuration.as_str());
    broker.metrics().agents_online.get_or_create(&online).inc();
    tracing::info!(agent = %identity.agent, configuration = %identity.configuration, "agent connected");
    let outbox = live.outbox(&identity.configuration);
    let mut session = Session {
        changed: outbox.changed.subscribe(),
        outbox,
        identity,
        broker: broker.clone(),
        settings,
        entry,
        in_flight: HashMap::new(),
        last_heard: Instant::now(),
        check_sent: None,
        last_check: Instant::now(),
        inventory: Vec::new(),
        answers: Vec::new(),
        storing: None,
    };
    let end = session.serve(&mut ws, shutdown).await;
    session.finish_storing().await;
    live.close_session(session.identity.agent, session.entry.id);
    session.outbox.release_session(session.entry.id);
    broker.metrics().agents_online.get_or_create(&online).dec();
    let _ = ws.close(None).await;
    tracing::info!(agent = %session.identity.agent, reason = %end, "agent disconnected");
    Ok(())
}

/// Reads the hello; answers with a welcome or an error frame.
async fn hello(ws: &mut Ws, identity: &AgentIdentity) -> Result<String, Refused> {
    let frame = loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => break t,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(_)) | None => return Err(Refused::Hello("closed before hello".into())),
            Some(Err(e)) => return Err(Refused::Hello(e.to_string())),
        }
    };
    let refuse = |code: ErrorKind, message: String| async move {
        let _ = send(
            ws,
            &BrokerMessage::Error {
                code,
                message: message.clone(),
            },
        )
        .await;
        Err(Refused::Hello(message))
    };
    match protocol::decode::<AgentMessage>(frame.as_bytes()) {
        Ok(AgentMessage::Hello {
            version,
            configuration,
            agent_version,
            ..
        }) => {
            if let Err(e) = protocol::check_version(version) {
                return refuse(e.kind(), e.to_string()).await;
            }
            if configuration != identity.configuration {
                return refuse(
                    ErrorKind::WrongConfiguration,
                    format!(
                        "hello names configuration `{configuration}`, the certificate is for `{}`",
                        identity.configuration
                    ),
                )
                .await;
            }
            Ok(agent_version)
        }
        Ok(_) => refuse(ErrorKind::HelloExpected, "the first frame must be a hello".into()).await,
        Err(e) => refuse(e.kind(), e.to_string()).await,
    }
}

async fn send(ws: &mut Ws, message: &BrokerMessage) -> Result<(), tungstenite::Error> {
    ws.send(Message::text(protocol::encode(message))).await
}

struct Session {
    identity: AgentIdentity,
    broker: Broker,
    settings: HubSettings,
    entry: SessionEntry,
    outbox: std::sync::Arc<OutboxSignal>,
    changed: watch::Receiver<u64>,
    /// Command id → (command, when sent).
    in_flight: HashMap<String, (Command, Instant)>,
    last_heard: Instant,
    /// When the outstanding downstream `Check` was sent.
    check_sent: Option<Instant>,
    last_check: Instant,
    /// Pages of the inventory being received (`more` set on all but the
    /// last).
    inventory: Vec<jitgate_shared::v1::Entitlement>,
    /// Answers received while a batch is being stored: the next batch.
    answers: Vec<(Command, jitgate_shared::v1::protocol::Outcome)>,
    /// The batch of answers being stored; its commands stay claimed until
    /// it is.
    storing: Option<BoxFuture<'static, StoredAnswers>>,
}

/// Each command of a batch with what became of its answer.
type StoredAnswers = Vec<(Command, Result<Answered, ServiceError>)>;

impl Session {
    async fn serve(&mut self, ws: &mut Ws, mut shutdown: watch::Receiver<bool>) -> End {
        let heartbeat = self.settings.heartbeat;
        let welcome = BrokerMessage::Welcome {
            version: protocol::VERSION,
            heartbeat_seconds: u32::try_from(heartbeat.as_secs().max(1)).unwrap_or(u32::MAX),
        };
        if let Err(e) = send(ws, &welcome).await {
            return End::Transport(e.to_string());
        }
        if let Err(e) = self.ask_inventory(ws).await {
            return End::Transport(e.to_string());
        }
        let mut last_inventory = Instant::now();
        let mut tick = tokio::time::interval(heartbeat.min(Duration::from_secs(1)));
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_beat = Instant::now();
        let mut seq = 0u64;
        let mut dirty = true;
        let kick = self.entry.kick.clone();
        loop {
            if dirty {
                dirty = false;
                if let Err(e) = self.send_commands(ws).await {
                    return End::Transport(e.to_string());
                }
            }
            let retry_at = self
                .outbox
                .next_retry()
                .map(Instant::from_std)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                frame = ws.next() => {
                    self.last_heard = Instant::now();
                    self.broker.live().seen(self.identity.agent, self.entry.id, self.broker.clock().now());
                    match frame {
                        Some(Ok(Message::Text(text))) => {
                            match self.on_frame(ws, text.as_bytes()).await {
                                Ok(settled) => dirty |= settled,
                                Err(e) => return End::Transport(e.to_string()),
                            }
                            // Handling a frame can take a while (the last
                            // page of an inventory is reconciled before
                            // this returns); frames the agent sent
                            // meanwhile wait unread, so that time is the
                            // broker's, not the agent's silence.
                            self.last_heard = Instant::now();
                        }
                        Some(Ok(Message::Binary(_))) => {
                            let e = BrokerMessage::Error { code: ErrorKind::Malformed, message: "binary frames are not part of protocol v1".into() };
                            if let Err(e) = send(ws, &e).await { return End::Transport(e.to_string()); }
                        }
                        Some(Ok(Message::Close(_))) | None => return End::Closed,
                        Some(Ok(_)) => {}
                        Some(Err(tungstenite::Error::Capacity(e))) => {
                            // The frame was too large; tell the agent, then
                            // end: the stream cannot be trusted past it.
                            let e = BrokerMessage::Error { code: ErrorKind::TooLarge, message: e.to_string() };
                            let _ = send(ws, &e).await;
                            return End::Transport("oversized frame".into());
                        }
                        Some(Err(e)) => return End::Transport(e.to_string()),
                    }
                }
                Some(stored) = OptionFuture::from(self.storing.as_mut()), if self.storing.is_some() => {
                    self.storing = None;
                    for (command, stored) in stored {
                        self.stored(&command, stored);
                    }
                    self.store_answers();
                    dirty = true;
                }
                _ = self.changed.changed() => dirty = true,
                _ = tokio::time::sleep_until(retry_at) => dirty = true,
                _ = tick.tick() => {
                    if self.last_heard.elapsed() > heartbeat * 2 + heartbeat / 2 {
                        return End::Silent;
                    }
                    if last_beat.elapsed() >= heartbeat {
                        // Admission again at every heartbeat: an agent
                        // revoked (or its configuration's enrollment
                        // withdrawn) after its handshake is cut off.
                        if let Err(e) = self.broker.admit_agent(&self.identity).await {
                            tracing::warn!(agent = %self.identity.agent, error = %e, "agent no longer admitted; ending its session");
                            return End::Kicked;
                        }
                        seq += 1;
                        last_beat = Instant::now();
                        if let Err(e) = send(ws, &BrokerMessage::Heartbeat { seq }).await {
                            return End::Transport(e.to_string());
                        }
                    }
                    if last_inventory.elapsed() >= self.settings.reconcile_every {
                        last_inventory = Instant::now();
                        if let Err(e) = self.ask_inventory(ws).await {
                            return End::Transport(e.to_string());
                        }
                    }
                    dirty |= self.expire_unanswered();
                    if let Err(e) = self.check_downstream(ws, heartbeat).await {
                        return End::Transport(e.to_string());
                    }
                }
                _ = kick.notified() => return End::Kicked,
                _ = shutdown.changed() => return End::Shutdown,
            }
        }
    }

    /// Asks the agent what the tenant holds of the targets jitgate
    /// manages; the answer is reconciled with the grants.
    async fn ask_inventory(&mut self, ws: &mut Ws) -> Result<(), tungstenite::Error> {
        match self.broker.targets_of(&self.identity.configuration).await {
            Ok(targets) => {
                let list = BrokerMessage::List {
                    request: LIST_REQUEST,
                    targets,
                };
                send(ws, &list).await
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read the catalogue; skipping reconciliation");
                Ok(())
            }
        }
    }

    /// Every heartbeat, for a configuration federated to a directory: asks
    /// the agent whether the federated grants awaiting confirmation here
    /// are in effect (or gone). One check outstanding at a time; one
    /// unanswered for two heartbeats is given up.
    async fn check_downstream(&mut self, ws: &mut Ws, heartbeat: Duration) -> Result<(), tungstenite::Error> {
        if self.last_check.elapsed() < heartbeat {
            return Ok(());
        }
        if self.check_sent.is_some_and(|at| at.elapsed() < heartbeat * 2) {
            return Ok(());
        }
        self.last_check = Instant::now();
        let federated = match self
            .broker
            .store()
            .configuration(&self.identity.configuration)
            .await
        {
            Ok(Some(c)) => matches!(c.config.identity_mode, IdentityMode::Federated { .. }),
            Ok(None) => false,
            Err(e) => {
                tracing::error!(error = %e, "reading the configuration failed");
                false
            }
        };
        if !federated {
            return Ok(());
        }
        let entitlements = match self
            .broker
            .awaiting_confirmation(&self.identity.configuration)
            .await
        {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "finding grants awaiting confirmation failed");
                return Ok(());
            }
        };
        if entitlements.is_empty() {
            return Ok(());
        }
        self.check_sent = Some(Instant::now());
        send(
            ws,
            &BrokerMessage::Check {
                request: CHECK_REQUEST,
                entitlements,
            },
        )
        .await
    }

    /// Sends what this session may send now from the outbox.
    async fn send_commands(&mut self, ws: &mut Ws) -> Result<(), tungstenite::Error> {
        let claimed = match outbox::ready(
            self.broker.store().as_ref(),
            &self.outbox,
            &self.identity.configuration,
            self.entry.id,
            self.settings.window,
            &self.in_flight,
        )
        .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "reading the outbox failed");
                return Ok(());
            }
        };
        if claimed.is_empty() {
            return Ok(());
        }
        let Some(signer) = self.broker.command_signer() else {
            tracing::error!("this broker has no command key; nothing can be sent");
            return Ok(());
        };
        let now = Instant::now();
        for command in claimed {
            let signed = signer.sign(&command);
            tracing::debug!(command = %command.id, op = ?command.op, "sending command");
            ws.feed(Message::text(protocol::encode(&BrokerMessage::Command {
                command: signed,
            })))
            .await?;
            self.broker.metrics().commands_sent.inc();
            self.in_flight.insert(command.id.clone(), (command, now));
        }
        ws.flush().await
    }

    /// Commands unanswered for too long go back to the queue, held back a
    /// little. Returns whether any did.
    fn expire_unanswered(&mut self) -> bool {
        let timeout = self.settings.answer_timeout;
        let expired: Vec<String> = self
            .in_flight
            .iter()
            .filter(|(_, (_, sent))| sent.elapsed() > timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            if let Some((command, _)) = self.in_flight.remove(id) {
                tracing::warn!(command = %id, "no answer in time; sending again later");
                self.outbox.retry_later(&command, None, std::time::Instant::now());
                self.broker.metrics().commands_retried.inc();
            }
        }
        !expired.is_empty()
    }

    /// Handles one text frame. Returns whether the outbox may have more to
    /// send (a reconciliation may queue revokes).
    async fn on_frame(&mut self, ws: &mut Ws, frame: &[u8]) -> Result<bool, tungstenite::Error> {
        let message = match protocol::decode::<AgentMessage>(frame) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(agent = %self.identity.agent, error = %e, "frame refused");
                send(ws, &error_frame(&e)).await?;
                return Ok(false);
            }
        };
        match message {
            AgentMessage::Result { command, outcome } => {
                self.on_result(command, outcome).await;
                Ok(false)
            }
            AgentMessage::Holdings {
                request,
                held,
                absent,
            } => {
                if request == CHECK_REQUEST {
                    self.check_sent = None;
                    if let Err(e) = self
                        .broker
                        .record_holdings(self.identity.agent, &self.identity.configuration, &held, &absent)
                        .await
                    {
                        tracing::error!(error = %e, "recording downstream confirmations failed");
                    }
                }
                Ok(false)
            }
            AgentMessage::Inventory {
                request,
                entitlements,
                more,
            } => {
                if request != LIST_REQUEST {
                    return Ok(false);
                }
                if self.inventory.len() + entitlements.len() > protocol::MAX_INVENTORY {
                    tracing::error!(
                        agent = %self.identity.agent,
                        max = protocol::MAX_INVENTORY,
                        "inventory larger than the broker reconciles; skipping this reconciliation"
                    );
                    self.inventory = Vec::new();
                    return Ok(false);
                }
                self.inventory.extend(entitlements);
                if more {
                    return Ok(false);
                }
                let found = std::mem::take(&mut self.inventory);
                if let Err(e) = self
                    .broker
                    .reconcile(self.identity.agent, &self.identity.configuration, found)
                    .await
                {
                    tracing::error!(error = %e, "reconciliation failed");
                }
                Ok(true)
            }
            AgentMessage::SelfRevoked {
                command,
                grant,
                entitlement,
                deadline,
                at,
                outcome,
            } => {
                if entitlement.configuration != self.identity.configuration {
                    let e = BrokerMessage::Error {
                        code: ErrorKind::WrongConfiguration,
                        message: format!("report for configuration `{}`", entitlement.configuration),
                    };
                    send(ws, &e).await?;
                    return Ok(false);
                }
                let report = SelfRevoke {
                    command: command.clone(),
                    grant,
                    entitlement,
                    deadline,
                    at,
                    outcome,
                };
                match self.broker.record_self_revoke(&self.identity, report).await {
                    Ok(()) => send(ws, &BrokerMessage::Acknowledged { command }).await?,
                    Err(crate::service::ServiceError::Forbidden(message)) => {
                        tracing::warn!(agent = %self.identity.agent, %message, "self-revoke report refused");
                        send(
                            ws,
                            &BrokerMessage::Error {
                                code: ErrorKind::Refused,
                                message,
                            },
                        )
                        .await?;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "storing a self-revoke report failed; the agent will send it again")
                    }
                }
                Ok(false)
            }
            AgentMessage::RenewCertificate { csr_pem } => {
                let reply = match self.broker.renew_agent_cert(&self.identity, &csr_pem).await {
                    Ok((certificate_pem, not_after)) => BrokerMessage::Certificate {
                        certificate_pem,
                        not_after,
                    },
                    Err(e) => BrokerMessage::Error {
                        code: ErrorKind::Refused,
                        message: e.to_string(),
                    },
                };
                send(ws, &reply).await?;
                Ok(false)
            }
            AgentMessage::Heartbeat { .. } => Ok(false),
            AgentMessage::Hello { .. } => {
                let e = BrokerMessage::Error {
                    code: ErrorKind::Malformed,
                    message: "hello was already received".into(),
                };
                send(ws, &e).await?;
                Ok(false)
            }
            AgentMessage::Error { message } => {
                tracing::warn!(agent = %self.identity.agent, %message, "agent reported an error");
                Ok(false)
            }
        }
    }

    /// Takes an answer to store: at once when no batch is being stored,
    /// else with the next batch. [`Session::stored`] follows.
    async fn on_result(&mut self, id: String, outcome: jitgate_shared::v1::protocol::Outcome) {
        let command = match self.in_flight.remove(&id) {
            Some((c, sent)) => {
                // Dispatch to answer: the agent's part and the wire, not
                // the store write that follows.
                self.broker
                    .metrics()
                    .command_round_trip
                    .observe(sent.elapsed().as_secs_f64());
                c
            }
            // A late answer to a command this session gave up waiting for,
            // or sent by an earlier session: still authoritative.
            None => match self.broker.store().queued_command(&id).await {
                Ok(Some(c)) if c.entitlement.configuration == self.identity.configuration => c,
                Ok(_) => {
                    tracing::debug!(command = %id, "answer for a command no longer queued");
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "reading the outbox failed");
                    return;
                }
            },
        };
        self.answers.push((command, outcome));
        self.store_answers();
    }

    /// Starts storing the answers waiting, unless a batch is being stored.
    fn store_answers(&mut self) {
        if self.storing.is_some() || self.answers.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.answers);
        let (broker, agent) = (self.broker.clone(), self.identity.agent);
        self.storing = Some(Box::pin(
            async move { broker.answer_commands(agent, batch).await },
        ));
    }

    /// At the session's end: every answer received is stored before its
    /// claims go.
    async fn finish_storing(&mut self) {
        while let Some(batch) = self.storing.take() {
            for (command, stored) in batch.await {
                self.stored(&command, stored);
            }
            self.store_answers();
        }
    }

    /// An answer is stored (or storing it failed): the command's claim is
    /// freed or held back as the answer calls for.
    fn stored(&mut self, command: &Command, stored: Result<Answered, ServiceError>) {
        match stored {
            Ok(answered) => {
                let now = std::time::Instant::now();
                if let Some(pause) = self.outbox.answered(command, answered, now) {
                    self.broker.metrics().commands_retried.inc();
                    tracing::info!(command = %command.id, ?pause, ?answered, "not settled; sending again later");
                }
            }
            Err(e) => {
                tracing::error!(command = %command.id, error = %e, "storing the answer failed; the command is sent again");
                self.outbox.release(command, false);
            }
        }
    }
}

fn error_frame(e: &FrameError) -> BrokerMessage {
    BrokerMessage::Error {
        code: e.kind(),
        message: e.to_string(),
    }
}
