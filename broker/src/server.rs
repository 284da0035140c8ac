//! Wiring for `jitgate-broker serve`: store, CA, policies, services,
//! scheduler and the API listener, and their orderly shutdown.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::api::{self, AppState};
use crate::audit::Actor;
use crate::clock::{Clock, SystemClock};
use crate::config::{BrokerConfig, StoreKind};
use crate::domain::policy::PolicyErrors;
use crate::metrics::Metrics;
use crate::scheduler::{self, periodic};
use crate::service::{catalog_of, Broker, BrokerKeys, PolicyHolder, ServiceError, Settings};
use crate::store::postgres::{describe, PgStore};
use crate::store::sled::SledStore;
use crate::store::{Store, StoreError};
use crate::tls::{BrokerCa, TlsError};

/// How long a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the API's server certificate is re-issued.
const CERT_RENEWAL: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("policies in {dir} are invalid:\n{errors}")]
    Policies { dir: String, errors: PolicyErrors },
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("cannot listen on {addr}: {error}")]
    Bind { addr: SocketAddr, error: std::io::Error },
    #[error("data directory {path}: {error}")]
    DataDir { path: String, error: std::io::Error },
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Sso(#[from] crate::service::sign_in::SsoConfigError),
    #[error(transparent)]
    Notify(#[from] crate::notify::channels::ChannelError),
    #[error("on_call {0}")]
    OnCall(#[from] crate::on_call::OnCallError),
}

/// Opens the store `config` names: the embedded one in its data directory,
/// or the PostgreSQL database (its schema checked, and migrated when
/// `database.migrate_at_start`).
pub async fn open_store(config: &BrokerConfig) -> Result<Arc<dyn Store>, ServeError> {
    match config.store {
        StoreKind::Sled => Ok(Arc::new(open_sled(&config.data_dir)?)),
        StoreKind::Postgres => {
            let settings = config.database.settings()?;
            let store = PgStore::open(&settings, config.database.migrate_at_start).await?;
            tracing::info!(
                database = %describe(&settings.url),
                instance = store.instance(),
                "store: PostgreSQL"
            );
            Ok(Arc::new(store))
        }
    }
}

/// Opens the embedded store in `<data_dir>/store`, creating the directory
/// (owner only).
pub fn open_sled(data_dir: &Path) -> Result<SledStore, ServeError> {
    let store_dir = data_dir.join(crate::store::sled::STORE_DIR);
    create_private_dir(data_dir)?;
    Ok(SledStore::open(&store_dir)?)
}

/// Creates `dir` if needed and makes it the owner's alone.
pub fn create_private_dir(dir: &Path) -> Result<(), ServeError> {
    let err = |error| ServeError::DataDir {
        path: dir.display().to_string(),
        error,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    Ok(())
}

/// Everything `serve` runs, started and ready.
#[derive(Debug)]
pub struct Server {
    pub broker: Broker,
    pub addr: SocketAddr,
    pub ca: Arc<BrokerCa>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Server {
    /// Opens the store, loads policies (refusing to start on invalid ones),
    /// binds the listener and starts the scheduler.
    pub async fn start(config: &BrokerConfig, store: Arc<dyn Store>) -> Result<Self, ServeError> {
        crate::tls::install_crypto_provider();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let now = clock.now();
        let ca = Arc::new(BrokerCa::load_or_create(&config.data_dir, now)?);
        let catalog = catalog_of(store.as_ref()).await?;
        let policies =
            PolicyHolder::load(&config.policy_dir, &catalog).map_err(|errors| ServeError::Policies {
                dir: config.policy_dir.display().to_string(),
                errors,
            })?;
        let holder = Arc::new(PolicyHolder::new(config.policy_dir.clone(), policies, now));
        let hub_listener = listen(config.hub_listen).map_err(|error| ServeError::Bind {
            addr: config.hub_listen,
            error,
        })?;
        let hub_addr = hub_listener.local_addr().map_err(|error| ServeError::Bind {
            addr: config.hub_listen,
            error,
        })?;
        let listener = listen(config.listen).map_err(|error| ServeError::Bind {
            addr: config.listen,
            error,
        })?;
        let addr = listener.local_addr().map_err(|error| ServeError::Bind {
            addr: config.listen,
            error,
        })?;
        let hub_url = config.hub_url_for(hub_addr);
        let settings = Settings {
            token_ttl: chrono::Duration::from_std(config.token_ttl).unwrap_or(chrono::Duration::days(30)),
            agent_cert_ttl: chrono::Duration::from_std(config.agent_cert_ttl)
                .unwrap_or(chrono::Duration::hours(24)),
            agent_approval: config.agent_approval,
            hub_url: hub_url.clone(),
            remove_unexpected: config.remove_unexpected,
            public_url: config.public_url_for(addr),
        };
        let keys = BrokerKeys {
            ca: ca.clone(),
            commands: Arc::new(crate::tls::load_or_create_command_key(&config.data_dir)?),
            audit: Arc::new(crate::tls::load_or_create_audit_key(&config.data_dir)?),
        };
        let sso = crate::service::sign_in::Sso::from_config(&config.sso, &settings.public_url).await?;
        if !sso.provider_names().is_empty() {
            tracing::info!(providers = ?sso.provider_names(), "sign-in providers configured");
        }
        let channels = crate::notify::channels::Channels::new(&config.notify, &settings.public_url)?;
        if channels.any() {
            tracing::info!(
                email = channels.has_email(),
                webhooks = config.notify.webhook.len(),
                "notification channels configured"
            );
        }
        let broker = Broker::new(store, holder, clock, Arc::new(Metrics::new()), settings)
            .with_keys(keys)
            .with_sso(sso)
            .with_channels(channels)
            .with_on_call(crate::on_call::OnCall::new(&config.on_call)?);
        broker.start_notifications().await?;
        // The next due job, not a count: counting reads every job, and
        // restart time must not grow with the number of active grants.
        let next_due = broker.store().next_due().await?;
        tracing::info!(?next_due, "store opened; scheduled jobs run from the store");

        let tls = if config.insecure_plain_http {
            tracing::warn!("serving plain HTTP: use only behind a TLS-terminating proxy on this host");
            None
        } else {
            Some(Arc::new(ArcSwap::from(
                ca.api_server_config(&config.server_names, now)?,
            )))
        };
        let (shutdown, shutdown_rx) = watch::channel(false);
        let ready = Arc::new(AtomicBool::new(false));
        let limits = Arc::new(api::limits::ClientLimits::new(config.client_limits()?));
        let router = api::router(
            AppState {
                broker: broker.clone(),
                ready: ready.clone(),
                limits: limits.clone(),
            },
            config.max_body_bytes,
        );
        let mut tasks = JoinSet::new();
        match broker.count_failing_revokes().await {
            Ok(0) => {}
            Ok(n) => tracing::error!(
                failing = n,
                "revokes are failing: see `jitgate grants` (revoke_failing) and the revokes_failing gauge"
            ),
            Err(e) => tracing::warn!(error = %e, "counting failing revokes failed; the gauge starts at 0"),
        }
        tasks.spawn(scheduler::run(broker.clone(), shutdown_rx.clone()));
        if let Some(heard) = broker.store().announcements() {
            // Other brokers share the store: their queued commands wake the
            // sessions held here, their changes refresh pages open here.
            let live = broker.live().clone();
            let mut stop = shutdown_rx.clone();
            tasks.spawn(async move {
                tokio::select! {
                    _ = async {
                        tokio::join!(live.follow(heard.outboxes), live.feed.follow(heard.changes))
                    } => {}
                    _ = stop.changed() => {}
                }
            });
        }
        tasks.spawn(periodic::sweep_sign_ins(
            broker.clone(),
            limits,
            shutdown_rx.clone(),
        ));
        tasks.spawn(periodic::anchor_audit(
            broker.clone(),
            config.audit_anchor_interval,
            shutdown_rx.clone(),
        ));
        tasks.spawn(periodic::verify_audit(
            broker.clone(),
            config.audit_verify_interval,
            shutdown_rx.clone(),
        ));
        tasks.spawn(crate::service::notify::run(
            broker.clone(),
            crate::service::notify::Warnings {
                ending_soon: config.notify.ending_soon,
                agent_offline_after: config.notify.agent_offline_after,
            },
            shutdown_rx.clone(),
        ));
        tasks.spawn(crate::service::contact::run(
            broker.clone(),
            config.notify.agent_offline_after / 4,
            shutdown_rx.clone(),
        ));
        let hub_tls = Arc::new(ArcSwap::from(ca.hub_server_config(&config.server_names, now)?));
        let mut renewed = vec![(hub_tls.clone(), ServerCert::Hub)];
        if let Some(tls) = &tls {
            renewed.push((tls.clone(), ServerCert::Api));
        }
        let metrics = broker.metrics().clone();
        metrics.broker_certificate("ca", ca.not_after()?);
        for (_, which) in &renewed {
            metrics.broker_certificate(which.label(), crate::tls::server_cert_not_after(now));
        }
        tasks.spawn(renew_server_certs(
            renewed,
            ca.clone(),
            config.server_names.clone(),
            broker.clock().clone(),
            metrics,
            shutdown_rx.clone(),
        ));
        let hub_settings = crate::hub::HubSettings {
            heartbeat: config.agent_heartbeat,
            reconcile_every: config.reconcile_interval,
            ..crate::hub::HubSettings::default()
        };
        tasks.spawn(crate::hub::serve(
            hub_listener,
            hub_tls,
            broker.clone(),
            hub_settings,
            shutdown_rx.clone(),
        ));
        match crate::control::bind(&config.data_dir) {
            Ok(control) => {
                tasks.spawn(crate::control::serve(
                    control,
                    broker.store().clone(),
                    config.data_dir.clone(),
                    broker.clock().clone(),
                    shutdown_rx.clone(),
                ));
            }
            Err(e) => tracing::warn!(
                error = %e,
                socket = %config.data_dir.join(crate::control::SOCKET_FILE).display(),
                "no control socket: `jitgate-broker backup` cannot reach this broker"
            ),
        }
        let header_read_timeout = config.header_read_timeout;
        tasks.spawn(accept_loop(
            listener,
            tls,
            router,
            header_read_timeout,
            shutdown_rx,
        ));
        ready.store(true, Ordering::Release);
        let scheme = if config.insecure_plain_http {
            "http"
        } else {
            "https"
        };
        tracing::info!(%hub_addr, "agent hub listening on {hub_url}");
        tracing::info!(%addr, ca = %config.data_dir.join(crate::tls::CA_CERT_FILE).display(), "broker listening on {scheme}://{addr}");
        Ok(Self {
            broker,
            addr,
            ca,
            shutdown,
            tasks,
        })
    }

    /// Runs until SIGINT or SIGTERM; SIGHUP reloads the policies.
    pub async fn run_until_signalled(mut self) -> Result<(), ServeError> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let (mut hup, mut term, mut int) = match (
                signal(SignalKind::hangup()),
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                (Ok(h), Ok(t), Ok(i)) => (h, t, i),
                _ => {
                    tracing::error!("cannot install signal handlers; stop with SIGKILL");
                    std::future::pending::<()>().await;
                    return Ok(());
                }
            };
            loop {
                tokio::select! {
                    _ = hup.recv() => {
                        tracing::info!("SIGHUP: reloading policies");
                        // Errors are logged and audited by the service.
                        let _ = self.broker.reload_policies(Actor::System).await;
                    }
                    _ = term.recv() => break,
                    _ = int.recv() => break,
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        self.stop().await;
        Ok(())
    }

    /// Stops accepting, stops the scheduler and the device sign-in polls,
    /// waits for them.
    pub async fn stop(&mut self) {
        tracing::info!("shutting down");
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
        self.broker.sso().device_logins().shutdown().await;
        // The last word: the head as it is now, signed.
        if let Err(e) = self.broker.anchor_audit().await {
            tracing::error!(error = %e, "signing the audit chain's head at shutdown failed");
        }
    }
}

/// Which server certificate a TLS configuration carries.
#[derive(Debug, Clone, Copy)]
enum ServerCert {
    Api,
    Hub,
}

impl ServerCert {
    /// As the `certificate_expiry_timestamp_seconds` metric names it.
    fn label(&self) -> &'static str {
        match self {
            ServerCert::Api => "api",
            ServerCert::Hub => "hub",
        }
    }
}

/// Re-issues the API's and the hub's server certificates (valid 90 days)
/// every day, so a long-running broker never serves an expired one. New
/// connections use the new certificate; open ones keep theirs.
/// Connections the kernel may hold for a listener before it is accepted
/// from (capped by `net.core.somaxconn`). tokio's default of 1,024 is too few
/// when thousands of agents reconnect at once after a broker restart: the
/// kernel drops the rest, and each dropped agent's TCP retries its SYN after
/// 1, 3, 7, 15 s.
const LISTEN_BACKLOG: u32 = 8192;

/// Binds `addr` with [`LISTEN_BACKLOG`].
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

async fn renew_server_certs(
    configs: Vec<(Arc<ArcSwap<rustls::ServerConfig>>, ServerCert)>,
    ca: Arc<BrokerCa>,
    names: Vec<String>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(CERT_RENEWAL) => {}
            _ = shutdown.changed() => return,
        }
        for (tls, which) in &configs {
            let now = clock.now();
            let renewed = match which {
                ServerCert::Api => ca.api_server_config(&names, now),
                ServerCert::Hub => ca.hub_server_config(&names, now),
            };
            match renewed {
                Ok(config) => {
                    tls.store(config);
                    metrics.broker_certificate(which.label(), crate::tls::server_cert_not_after(now));
                    tracing::info!(?which, "renewed a server certificate");
                }
                Err(e) => {
                    tracing::error!(?which, error = %e, "renewing a server certificate failed; retrying tomorrow")
                }
            }
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<Arc<ArcSwap<rustls::ServerConfig>>>,
    router: axum::Router,
    header_read_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        // Handlers see the peer as the listener saw it (per-client limits).
        let with_peer = tower::ServiceExt::map_request(
            router.clone(),
            move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                req
            },
        );
        let service = TowerToHyperService::new(with_peer);
        let tls = tls
            .as_ref()
            .map(|t| tokio_rustls::TlsAcceptor::from(t.load_full()));
        connections.spawn(async move {
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            // A client gets this long for each request's headers, and for
            // the next request on a kept-alive connection: slow or idle
            // clients do not hold connections (and tasks) open.
            builder
                .http1()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_read_timeout);
            let result = match tls {
                Some(acceptor) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        builder
                            .serve_connection_with_upgrades(TokioIo::new(stream), service)
                            .await
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                },
                None => {
                    builder
                        .serve_connection_with_upgrades(TokioIo::new(tcp), service)
                        .await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
        // Reap finished connections so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
    }
    connections.abort_all();
}
