//! The control socket, `DATA_DIR/control.sock`: commands an operator runs
//! on the broker's host against the running broker (`jitgate-broker
//! backup`). Only the data directory's owner can reach it (the directory
//! is owner-only and the socket too), and whoever can reach it could read
//! the data directory anyway: it asks for no other credential.
//!
//! The protocol is one request line (`backup`), answered by `ok` and the
//! backup file's bytes, or by `error: ` and why.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::store::{backup, Store};

pub const SOCKET_FILE: &str = "control.sock";
const BACKUP: &str = "backup";
/// The longest request line read.
const MAX_REQUEST: u64 = 64;
/// How long a client may take to say what it wants.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds the control socket in `data_dir`, replacing one a broker that
/// died left behind (the store's lock keeps a second broker from running
/// on the same directory).
pub fn bind(data_dir: &Path) -> std::io::Result<UnixListener> {
    let path = data_dir.join(SOCKET_FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(&path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(listener)
}

/// Answers control requests until shutdown.
pub async fn serve(
    listener: UnixListener,
    store: Arc<dyn Store>,
    data_dir: PathBuf,
    clock: Arc<dyn Clock>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, say: as the API's accept
                    // loop does, pause rather than spin.
                    tracing::warn!(error = %e, "control socket: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let (store, data_dir, clock) = (store.clone(), data_dir.clone(), clock.clone());
        tokio::spawn(async move {
            if let Err(e) = answer(stream, store, &data_dir, clock).await {
                tracing::warn!(error = %e, "control socket: request failed");
            }
        });
    }
    let _ = std::fs::remove_file(data_dir.join(SOCKET_FILE));
}

async fn answer(
    stream: UnixStream,
    store: Arc<dyn Store>,
    data_dir: &Path,
    clock: Arc<dyn Clock>,
) -> std::io::Result<()> {
    let mut stream = BufReader::new(stream);
    let mut request = String::new();
    let read = tokio::time::timeout(
        REQUEST_TIMEOUT,
        (&mut stream).take(MAX_REQUEST).read_line(&mut request),
    )
    .await;
    let mut stream = stream.into_inner();
    match read {
        Ok(Ok(_)) if request.trim_end() == BACKUP => {}
        Ok(Ok(_)) => {
            let shown: String = request.trim_end().chars().take(32).collect();
            return refuse(
                &mut stream,
                &format!("unknown request `{shown}`; this broker answers `{BACKUP}`"),
            )
            .await;
        }
        Ok(Err(e)) => return Err(e),
        Err(_) => return refuse(&mut stream, "no request within 5 s").await,
    }
    let Some(_) = store.embedded() else {
        return refuse(
            &mut stream,
            "the store is PostgreSQL: back it up with pg_dump, and copy the data directory's key files (docs/operating.md)",
        )
        .await;
    };
    // Written to a file beside the store first: writers wait while the
    // snapshot is read, not while a client reads the socket.
    let partial = data_dir.join(format!("backup-{}.partial", uuid::Uuid::now_v7()));
    let taken = {
        let (partial, data_dir) = (partial.clone(), data_dir.to_owned());
        let now = clock.now();
        tokio::task::spawn_blocking(move || -> Result<backup::Summary, String> {
            let Some(sled) = store.embedded() else {
                return Err("the store is not the embedded one".into());
            };
            let file = private_file(&partial).map_err(|e| format!("{}: {e}", partial.display()))?;
            let mut out = std::io::BufWriter::new(file);
            backup::take(sled, &data_dir, now, &mut out).map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Err(format!("the backup task failed: {e}")))
    };
    let sent = match taken {
        Ok(summary) => {
            tracing::info!(
                entries = summary.entries,
                audit_records = summary.audit_records,
                "backup taken through the control socket"
            );
            send_file(&mut stream, &partial).await
        }
        Err(e) => {
            tracing::error!(error = %e, "backup failed");
            refuse(&mut stream, &e).await
        }
    };
    let _ = tokio::fs::remove_file(&partial).await;
    sent
}

async fn send_file(stream: &mut UnixStream, path: &Path) -> std::io::Result<()> {
    let mut file = tokio::fs::File::open(path).await?;
    stream.write_all(b"ok\n").await?;
    tokio::io::copy(&mut file, stream).await?;
    stream.shutdown().await
}

async fn refuse(stream: &mut UnixStream, why: &str) -> std::io::Result<()> {
    stream.write_all(format!("error: {why}\n").as_bytes()).await?;
    stream.shutdown().await
}

/// Creates `path`, which must not exist, readable by its owner only.
pub fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Why asking a running broker for a backup did not give one.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    /// No broker answers on the data directory's socket.
    #[error("no broker is running on {0}")]
    NotRunning(String),
    #[error("the broker refused: {0}")]
    Refused(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Asks the broker running on `data_dir` for a backup, writing it to
/// `out` (a new file, owner-only); returns the bytes written.
pub async fn ask_backup(data_dir: &Path, out: &Path) -> Result<u64, AskError> {
    let path = data_dir.join(SOCKET_FILE);
    let stream = match UnixStream::connect(&path).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(AskError::NotRunning(data_dir.display().to_string()))
        }
        Err(e) => return Err(e.into()),
    };
    let mut stream = BufReader::new(stream);
    stream
        .get_mut()
        .write_all(format!("{BACKUP}\n").as_bytes())
        .await?;
    let mut status = String::new();
    stream.read_line(&mut status).await?;
    if let Some(why) = status.strip_prefix("error: ") {
        return Err(AskError::Refused(why.trim_end().to_owned()));
    }
    if status != "ok\n" {
        return Err(AskError::Refused(format!(
            "unexpected answer `{}`",
            status.trim_end()
        )));
    }
    let mut file = tokio::fs::File::from_std(private_file(out)?);
    let written = tokio::io::copy(&mut stream, &mut file).await?;
    file.sync_all().await?;
    Ok(written)
}
