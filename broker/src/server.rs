//! The listener: accepts connections within `max_connections`, runs each in its own task,
//! publishes `$SYS`, and shuts down cleanly when told to.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::broker::Broker;
use crate::config::Config;
use crate::hooks::Hooks;
use crate::{connection, sys};

/// `accept`'s error when the process has no file descriptor left (Linux's EMFILE).
const EMFILE: i32 = 24;

/// A bound, not yet running, broker.
pub struct Server {
    broker: Arc<Broker>,
    listener: TcpListener,
}

/// Aborts a background task when dropped, so no task outlives the server.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Server {
    /// Binds the configured listener (port 0 picks a free port).
    pub async fn bind(config: Config, hooks: Option<Arc<dyn Hooks>>) -> anyhow::Result<Server> {
        Server::bind_with(Broker::new(config, hooks)).await
    }

    /// Binds the listener of an existing broker state.
    pub async fn bind_with(broker: Arc<Broker>) -> anyhow::Result<Server> {
        let address = broker.config.listen;
        let listener = TcpListener::bind(address)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {address}: {e}"))?;
        Ok(Server { broker, listener })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The shared state, for tests and the embedding program.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Serves until `shutdown` completes; then stops accepting, closes every connection
    /// (v5 clients get DISCONNECT 0x8B), and waits up to `shutdown_timeout_ms` for them.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Server { broker, listener } = self;
        let limits = broker.config.limits.clone();
        info!(address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "listening");
        let (stop_tx, stop_rx) = watch::channel(false);
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let mut connections = JoinSet::new();
        // Failed accepts since the process ran out of file descriptors, while it is out.
        let mut out_of_descriptors: Option<u64> = None;
        let _sys = (broker.config.sys.interval_secs > 0).then(|| {
            let interval = Duration::from_secs(broker.config.sys.interval_secs);
            AbortOnDrop(tokio::spawn(sys::run(broker.clone(), interval)))
        });
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                Some(done) = connections.join_next(), if !connections.is_empty() => {
                    if let Err(e) = done && e.is_panic() {
                        error!(error = %e, "connection task panicked");
                    }
                }
                accepted = listener.accept(), if slots.available_permits() > 0 => match accepted {
                    Ok((stream, peer)) => {
                        if let Some(refused) = out_of_descriptors.take() {
                            info!(retries = refused, "accepting connections again: file descriptors are free");
                        }
                        let permit = slots.clone().try_acquire_owned().expect("a permit was available");
                        connections.spawn(connection::serve(broker.clone(), stream, peer, stop_rx.clone(), permit));
                    }
                    Err(e) => {
                        if e.raw_os_error() == Some(EMFILE) {
                            // Said once per episode (the retries below would say it 20 times
                            // a second); the waiting clients stay in the listen backlog.
                            let retries = out_of_descriptors.get_or_insert(0);
                            if *retries == 0 {
                                error!(
                                    connections = connections.len(),
                                    limit = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(0, |(soft, _)| soft),
                                    "cannot accept: out of file descriptors; new clients wait until some \
                                     close (raise the hard limit: ulimit -Hn, LimitNOFILE= in systemd)"
                                );
                            }
                            *retries += 1;
                        } else {
                            warn!(error = %e, "accept failed");
                        }
                        // Accept errors are usually resource exhaustion: back off a little.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        drop(listener);
        info!(connections = connections.len(), "shutting down");
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(limits.shutdown_timeout(), async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            warn!(
                left = connections.len(),
                "connections still open at the shutdown timeout; aborting them"
            );
            connections.abort_all();
        }
        // Every connection has detached; keep the persistent sessions for the next start.
        broker.save_sessions();
        info!("stopped");
    }
}
