//! A fault-injecting TCP proxy for the agent channel: it forwards bytes both
//! ways and can drop new connections, cut live ones and add delay. TLS runs
//! end to end through it, so it can break the transport but never read or
//! forge a frame.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does to traffic; change it while it runs.
#[derive(Debug, Default)]
pub struct Faults {
    /// Share (per mille) of new connections dropped at once.
    pub drop_new_permille: AtomicU64,
    /// Every `cut_every_ms`, each live connection is cut with this share
    /// (per mille). 0 disables.
    pub cut_permille: AtomicU64,
    pub cut_every_ms: AtomicU64,
    /// Delay added to every chunk forwarded, in ms.
    pub delay_ms: AtomicU64,
    /// Refuse everything: a network partition.
    pub partitioned: AtomicBool,
}

/// Counts of what the proxy did.
#[derive(Debug, Default)]
pub struct Stats {
    pub accepted: AtomicUsize,
    pub dropped: AtomicUsize,
    pub cut: AtomicUsize,
}

#[derive(Debug)]
pub struct FaultProxy {
    pub addr: SocketAddr,
    pub faults: Arc<Faults>,
    pub stats: Arc<Stats>,
    /// Bumped to cut every live connection at once.
    cut_all: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let faults = Arc::new(Faults::default());
        let stats = Arc::new(Stats::default());
        let (cut_all, cut_rx) = watch::channel(0u64);
        let task = tokio::spawn(accept(listener, upstream, faults.clone(), stats.clone(), cut_rx));
        Self {
            addr,
            faults,
            stats,
            cut_all,
            task,
        }
    }

    /// Cuts every live connection now.
    pub fn cut_all(&self) {
        self.cut_all.send_modify(|n| *n += 1);
    }

    pub fn partition(&self, on: bool) {
        self.faults.partitioned.store(on, Ordering::SeqCst);
        if on {
            self.cut_all();
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn roll(permille: u64) -> bool {
    permille > 0 && rand::random::<u64>() % 1000 < permille
}

async fn accept(
    listener: TcpListener,
    upstream: SocketAddr,
    faults: Arc<Faults>,
    stats: Arc<Stats>,
    cut_all: watch::Receiver<u64>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        if faults.partitioned.load(Ordering::SeqCst) || roll(faults.drop_new_permille.load(Ordering::Relaxed))
        {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            drop(client);
            continue;
        }
        let faults = faults.clone();
        let stats = stats.clone();
        let mut cut_all = cut_all.clone();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(upstream).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            let up = pipe(cr, sw, faults.clone());
            let down = pipe(sr, cw, faults.clone());
            let chaos = async {
                loop {
                    let every = faults.cut_every_ms.load(Ordering::Relaxed).max(10);
                    tokio::time::sleep(Duration::from_millis(every)).await;
                    if roll(faults.cut_permille.load(Ordering::Relaxed)) {
                        return;
                    }
                }
            };
            cut_all.borrow_and_update();
            tokio::select! {
                _ = up => {}
                _ = down => {}
                _ = chaos => { stats.cut.fetch_add(1, Ordering::Relaxed); }
                _ = cut_all.changed() => { stats.cut.fetch_add(1, Ordering::Relaxed); }
            }
        });
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    faults: Arc<Faults>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let delay = faults.delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
