//! The listeners: accept connections within `max_connections` (overall and per
//! listener), run each in its own task, publish `$SYS`, and shut down cleanly when told
//! to.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::broker::Broker;
use crate::config::Config;
use crate::hooks::Hooks;
use crate::listener::{self, Endpoint};
use crate::session::Kick;
use crate::transport::tls::{TlsState, TlsWatch};
use crate::{connection, sys};

/// `accept`'s error when the process has no file descriptor left (Linux's EMFILE).
const EMFILE: i32 = 24;

/// A bound, not yet running, broker.
pub struct Server {
    broker: Arc<Broker>,
    listeners: Vec<Bound>,
}

/// One bound listener.
struct Bound {
    tcp: TcpListener,
    endpoint: Arc<Endpoint>,
    /// Reloads its TLS certificate while it lives.
    _watch: Option<TlsWatch>,
}

/// Aborts a background task when dropped, so no task outlives the server.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Server {
    /// Binds the configured listeners (port 0 picks a free port).
    pub async fn bind(config: Config, hooks: Option<Arc<dyn Hooks>>) -> anyhow::Result<Server> {
        Server::bind_with(Broker::new(config, hooks)).await
    }

    /// Binds the listeners of an existing broker state. TLS listeners load their
    /// certificate here (the error names the file) and watch it while the server lives.
    pub async fn bind_with(broker: Arc<Broker>) -> anyhow::Result<Server> {
        let mut listeners = Vec::new();
        for config in listener::listeners_of(&broker.config) {
            let name = listener::intern(&config.name);
            let (tls, watch) = if config.kind.is_tls() {
                let tls = TlsState::load(name, &config)
                    .with_context(|| format!("listener {name:?}: TLS"))?;
                let watch = tls
                    .watch()
                    .with_context(|| format!("listener {name:?}: watching its TLS files"))?;
                (Some(tls), Some(watch))
            } else {
                (None, None)
            };
            let address = config.bind;
            let tcp = TcpListener::bind(address).await.map_err(|e| {
                anyhow::anyhow!("listener {name:?}: cannot listen on {address}: {e}")
            })?;
            let endpoint = Endpoint {
                name,
                kind: config.kind,
                tls,
                ws_path: config.path.clone(),
                use_identity_as_username: config.use_identity_as_username,
                slots: (config.max_connections > 0)
                    .then(|| Arc::new(Semaphore::new(config.max_connections))),
            };
            listeners.push(Bound {
                tcp,
                endpoint: Arc::new(endpoint),
                _watch: watch,
            });
        }
        Ok(Server { broker, listeners })
    }

    /// The address the first listener bound (the only one, unless there are
    /// `[[listener]]` tables).
    pub fn local_addr(&self) -> SocketAddr {
        self.listeners[0]
            .tcp
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Each listener's name and the address it bound, in the configuration's order.
    pub fn listener_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.listeners
            .iter()
            .map(|l| {
                let addr = l.tcp.local_addr().expect("a bound listener has an address");
                (l.endpoint.name.to_string(), addr)
            })
            .collect()
    }

    /// The shared state, for tests and the embedding program.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Serves until `shutdown` completes; then stops accepting, closes every connection
    /// (v5 clients get DISCONNECT 0x8B), and waits up to `shutdown_timeout_ms` for them.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Server { broker, listeners } = self;
        let limits = broker.config.limits.clone();
        for l in &listeners {
            // `listening address=...` is what scripts and tests look for.
            info!(
                address = %l.tcp.local_addr().map(|a| a.to_string()).unwrap_or_default(),
                listener = %l.endpoint.name,
                kind = %l.endpoint.kind.as_str(),
                "listening"
            );
        }
        // Which listener is asked first, in turn, so one that always has clients waiting
        // does not starve the others.
        let mut first = 0;
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
                (index, accepted) = accept_any(&listeners, &mut first), if slots.available_permits() > 0 => match accepted {
                    Ok((stream, peer)) => {
                        if let Some(refused) = out_of_descriptors.take() {
                            info!(retries = refused, "accepting connections again: file descriptors are free");
                        }
                        let endpoint = listeners[index].endpoint.clone();
                        let permit = slots.clone().try_acquire_owned().expect("a permit was available");
                        let own = endpoint
                            .slots
                            .clone()
                            .map(|s| s.try_acquire_owned().expect("a permit was available"));
                        connections.spawn(connection::serve(
                            broker.clone(),
                            stream,
                            peer,
                            endpoint,
                            stop_rx.clone(),
                            (permit, own),
                        ));
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
        drop(listeners);
        info!(connections = connections.len(), "shutting down");
        // The handshakes under way watch `stop`; the connections past theirs are told
        // through their sessions (no wait on `stop` in every idle connection's task).
        // One that attaches after this finds `stop` set as its serve loop starts.
        let _ = stop_tx.send(true);
        broker.kick_all(Kick::SHUTDOWN);
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

/// The next connection any listener with a free slot of its own has: the listener's
/// index and what `accept` gave. Listeners are asked from `first` on, which moves on
/// after each accept.
async fn accept_any(
    listeners: &[Bound],
    first: &mut usize,
) -> (usize, std::io::Result<(TcpStream, SocketAddr)>) {
    std::future::poll_fn(|cx| {
        for step in 0..listeners.len() {
            let index = (*first + step) % listeners.len();
            let listener = &listeners[index];
            // A listener at its own limit waits: a connection ending wakes the loop.
            if listener
                .endpoint
                .slots
                .as_ref()
                .is_some_and(|slots| slots.available_permits() == 0)
            {
                continue;
            }
            if let Poll::Ready(accepted) = listener.tcp.poll_accept(cx) {
                *first = (index + 1) % listeners.len();
                return Poll::Ready((index, accepted));
            }
        }
        Poll::Pending
    })
    .await
}
