//! The local administration socket: how `wasmq acl ...` and `wasmq user ...` tell a
//! running broker that the rules changed, so its authorization caches are purged at once
//! instead of after their TTL.
//!
//! A Unix socket (`[admin] socket`), so only users of this machine who may open the file
//! reach it: nothing is exposed on the network. The protocol is one line each way:
//!
//! - `purge-authz` -> `ok`: every connection's cached decisions are dropped.
//! - `ping` -> `ok`.
//! - anything else -> `error: unknown command ...`.
//!
//! Lines are bounded (256 bytes) and every exchange has a time limit, so a client that
//! sends nothing, or too much, costs a few bytes and is closed.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tracing::{info, warn};

use crate::Broker;

/// Longest command line accepted, bytes.
const MAX_LINE: u64 = 256;
/// Time one exchange may take, either side.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves the socket until dropped; removes the socket file then.
pub struct AdminSocket {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AdminSocket {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

impl AdminSocket {
    /// Listens on `path` (its folder is created). A socket file left by a broker that
    /// stopped without cleaning up is replaced; one a running broker answers on is not
    /// (that broker keeps it, and this one runs without an admin socket).
    pub async fn start(path: &Path, broker: Arc<Broker>) -> anyhow::Result<AdminSocket> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        if path.exists() {
            anyhow::ensure!(
                UnixStream::connect(path).await.is_err(),
                "another broker answers on the admin socket {}",
                path.display()
            );
            std::fs::remove_file(path)
                .with_context(|| format!("cannot remove the stale socket {}", path.display()))?;
        }
        let listener = UnixListener::bind(path)
            .with_context(|| format!("cannot listen on the admin socket {}", path.display()))?;
        info!(socket = %path.display(), "admin socket ready");
        let task = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    // One at a time: commands are tiny, and this bounds what the socket
                    // can cost.
                    Ok((stream, _)) => {
                        if tokio::time::timeout(EXCHANGE_TIMEOUT, serve(stream, &broker))
                            .await
                            .is_err()
                        {
                            warn!("admin socket: a client took too long; closed");
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, "admin socket: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        Ok(AdminSocket {
            path: path.to_path_buf(),
            task,
        })
    }
}

async fn serve(stream: UnixStream, broker: &Broker) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    if BufReader::new(read.take(MAX_LINE))
        .read_line(&mut line)
        .await
        .is_err()
    {
        return;
    }
    let reply = match line.trim() {
        "purge-authz" => {
            broker.purge_authz_cache();
            info!("admin socket: authorization caches purged");
            "ok".to_string()
        }
        "ping" => "ok".to_string(),
        other => format!("error: unknown command {other:?}"),
    };
    let _ = write.write_all(format!("{reply}\n").as_bytes()).await;
}

/// What a command line tool learns from asking the broker.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// The broker answered this line.
    Answered(String),
    /// No broker listens on the socket (none is running, or it has no admin socket).
    NoBroker,
}

/// Sends `command` to the broker at `path` and returns its answer.
pub async fn request(path: &Path, command: &str) -> anyhow::Result<Reply> {
    let exchange = async {
        let mut stream = match UnixStream::connect(path).await {
            Ok(stream) => stream,
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) => {
                return Ok(Reply::NoBroker);
            }
            Err(e) => return Err(e).with_context(|| format!("cannot reach {}", path.display())),
        };
        stream.write_all(format!("{command}\n").as_bytes()).await?;
        let mut answer = String::new();
        BufReader::new(stream.take(MAX_LINE))
            .read_line(&mut answer)
            .await?;
        Ok(Reply::Answered(answer.trim().to_string()))
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, exchange)
        .await
        .with_context(|| format!("the broker at {} did not answer", path.display()))?
}
