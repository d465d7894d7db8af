//! The broker's HTTP side, for operators and their tools: Prometheus metrics
//! (`[metrics]`, [`metrics`]) and the admin API (`[admin_api]`, [`admin_api`],
//! documented in `docs/admin-api.yaml`). Both are off by default; each has its own
//! listener, or one listener serves both when their `bind` is the same address.
//!
//! ```text
//! TcpListener (at most MAX_CONNECTIONS at once, each within CONNECTION_TIMEOUT)
//!   -> hyper HTTP/1.1 (headers within HEADER_TIMEOUT) -> axum router
//!        GET /metrics          -> metrics::BrokerCollector, read at scrape time
//!        GET /healthz, /readyz -> no token
//!        /api/v1/...           -> bearer token -> Broker, PluginFolder, manage.rs
//! ```
//!
//! Nothing here is on the MQTT path: the metrics read the broker's relaxed counters and
//! walk the sessions only when scraped.

pub mod admin_api;
pub mod metrics;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};
use wasmq_plugin_host::Database;

use crate::broker::Broker;
use crate::plugins::PluginFolder;

/// HTTP connections served at once per listener; more wait in the accept queue.
const MAX_CONNECTIONS: usize = 64;
/// Time a client has to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest one HTTP connection is kept (keep-alive included).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);
/// Shortest token accepted: a guessable token on a network port is no protection.
const TOKEN_MIN_LEN: usize = 16;

/// `[metrics]`: the Prometheus endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address of the listener serving `GET /metrics`; empty turns it off.
    pub bind: String,
}

/// `[admin_api]`: the HTTP admin API.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminApiConfig {
    /// Address of its listener; empty turns it off.
    pub bind: String,
    /// The bearer token requests must carry. Prefer `token_file`: configuration files
    /// are often readable by more people than the token should be.
    pub token: String,
    /// A file whose first line is the token (read at start).
    pub token_file: PathBuf,
}

fn parse_bind(key: &str, bind: &str) -> anyhow::Result<Option<SocketAddr>> {
    if bind.trim().is_empty() {
        return Ok(None);
    }
    bind.trim()
        .parse::<SocketAddr>()
        .map(Some)
        .with_context(|| format!("{key} must be an address such as 127.0.0.1:9183, not {bind:?}"))
}

impl MetricsConfig {
    /// The address to listen on, `None` when off.
    pub fn addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        parse_bind("metrics.bind", &self.bind)
    }

    /// Checks the section (called by [`crate::Config`]'s validation).
    pub fn validate(&self) -> anyhow::Result<()> {
        self.addr().map(|_| ())
    }
}

impl AdminApiConfig {
    /// The address to listen on, `None` when off.
    pub fn addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        parse_bind("admin_api.bind", &self.bind)
    }

    /// Checks the section: an API that is on has exactly one source for its token.
    /// The API is never served without one, on loopback either (any local user could
    /// reach it there, unlike the admin socket, which file permissions guard).
    pub fn validate(&self) -> anyhow::Result<()> {
        let Some(addr) = self.addr()? else {
            return Ok(());
        };
        let (inline, file) = (
            !self.token.is_empty(),
            !self.token_file.as_os_str().is_empty(),
        );
        anyhow::ensure!(
            !(inline && file),
            "admin_api: set token or token_file, not both"
        );
        anyhow::ensure!(
            inline || file,
            "admin_api.bind is {addr}{}: set admin_api.token_file (or token) so that \
             requests can be authenticated",
            if addr.ip().to_canonical().is_loopback() {
                ""
            } else {
                ", not a loopback address"
            }
        );
        if inline {
            check_token(&self.token).context("admin_api.token")?;
        }
        Ok(())
    }

    /// The token, read from `token_file` when that is set.
    pub fn load_token(&self) -> anyhow::Result<String> {
        if !self.token.is_empty() {
            return Ok(self.token.clone());
        }
        let text = std::fs::read_to_string(&self.token_file).with_context(|| {
            format!(
                "cannot read admin_api.token_file {}",
                self.token_file.display()
            )
        })?;
        let token = text.lines().next().unwrap_or("").trim().to_string();
        check_token(&token)
            .with_context(|| format!("admin_api.token_file {}", self.token_file.display()))?;
        Ok(token)
    }
}

fn check_token(token: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        token.len() >= TOKEN_MIN_LEN,
        "the token must be at least {TOKEN_MIN_LEN} characters long"
    );
    anyhow::ensure!(
        token.chars().all(|c| c.is_ascii_graphic()),
        "the token must be printable ASCII without spaces (it travels in a header)"
    );
    Ok(())
}

/// Whether the broker takes new clients: set once its MQTT listener serves, cleared
/// when it starts shutting down (`GET /readyz`).
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks the broker ready or not.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    /// Whether it is ready.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// What the HTTP side reads and acts on.
#[derive(Clone)]
pub struct Services {
    /// The broker.
    pub broker: Arc<Broker>,
    /// The plugin folder, when the broker runs the plugin system.
    pub plugins: Option<Arc<PluginFolder>>,
    /// The database behind the default plugin's tables, if any.
    pub database: Option<Arc<Database>>,
    /// The plugin folder's path (its `acl-sql.toml` says how passwords are hashed).
    pub plugins_dir: PathBuf,
    /// Whether the broker takes clients.
    pub ready: Readiness,
}

/// The running HTTP listeners; dropping it stops them and their connections.
pub struct HttpServer {
    tasks: JoinSet<()>,
    /// Where the metrics are served, if they are.
    pub metrics_addr: Option<SocketAddr>,
    /// Where the admin API is served, if it is.
    pub admin_api_addr: Option<SocketAddr>,
}

impl HttpServer {
    /// Binds the configured listeners (none when both are off) and serves them.
    pub async fn start(
        metrics: &MetricsConfig,
        admin_api: &AdminApiConfig,
        services: Services,
    ) -> anyhow::Result<HttpServer> {
        let metrics_at = metrics.addr()?;
        let api_at = admin_api.addr()?;
        let mut server = HttpServer {
            tasks: JoinSet::new(),
            metrics_addr: None,
            admin_api_addr: None,
        };
        let metrics_router = metrics_at.map(|_| metrics::router(&services));
        let api_router = match api_at {
            Some(_) => Some(admin_api::router(services, admin_api.load_token()?)),
            None => None,
        };
        // (address, router, serves the metrics, serves the API)
        let mut listeners: Vec<(SocketAddr, Router, bool, bool)> = Vec::new();
        match (metrics_at, metrics_router, api_at, api_router) {
            (Some(m), Some(metrics), Some(a), Some(api)) if m == a => {
                listeners.push((a, api.merge(metrics), true, true));
            }
            (m, metrics, a, api) => {
                if let (Some(m), Some(metrics)) = (m, metrics) {
                    listeners.push((m, metrics, true, false));
                }
                if let (Some(a), Some(api)) = (a, api) {
                    listeners.push((a, api, false, true));
                }
            }
        }
        for (addr, router, serves_metrics, serves_api) in listeners {
            let what = match (serves_metrics, serves_api) {
                (true, true) => "metrics and admin API",
                (true, false) => "metrics",
                _ => "admin API",
            };
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} ({what})"))?;
            let bound = listener.local_addr()?;
            if serves_metrics {
                server.metrics_addr = Some(bound);
            }
            if serves_api {
                server.admin_api_addr = Some(bound);
            }
            info!(address = %bound, "{what} listening (HTTP)");
            server.tasks.spawn(serve(listener, router));
        }
        Ok(server)
    }
}

/// Accepts and serves HTTP/1.1 connections, bounded in number and time, until
/// dropped (its connections with it).
async fn serve(listener: TcpListener, router: Router) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            permit = slots.clone().acquire_owned() => {
                let permit = permit.expect("the semaphore is never closed");
                let (stream, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        warn!(error = %e, "HTTP accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let service = TowerToHyperService::new(router.clone());
                connections.spawn(async move {
                    let _permit = permit;
                    let connection = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_TIMEOUT)
                        .serve_connection(TokioIo::new(stream), service);
                    match tokio::time::timeout(CONNECTION_TIMEOUT, connection).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => debug!(%peer, error = %e, "HTTP connection failed"),
                        Err(_) => debug!(%peer, "HTTP connection closed at its time limit"),
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(bind: &str, token: &str, file: &str) -> AdminApiConfig {
        AdminApiConfig {
            bind: bind.into(),
            token: token.into(),
            token_file: file.into(),
        }
    }

    #[test]
    fn the_api_never_runs_without_a_token() {
        assert!(api("", "", "").validate().is_ok(), "off needs nothing");
        let err = api("0.0.0.0:9184", "", "").validate().unwrap_err();
        assert!(
            format!("{err:#}").contains("not a loopback address"),
            "{err:#}"
        );
        assert!(api("127.0.0.1:9184", "", "").validate().is_err());
        assert!(api("127.0.0.1:9184", "short", "").validate().is_err());
        let token = "0123456789abcdef0123";
        assert!(api("0.0.0.0:9184", token, "").validate().is_ok());
        assert!(api("127.0.0.1:9184", "", "/etc/token").validate().is_ok());
        assert!(
            api("127.0.0.1:9184", token, "/etc/token")
                .validate()
                .is_err()
        );
        assert!(
            api("localhost", token, "").validate().is_err(),
            "an address"
        );
    }

    #[test]
    fn a_token_file_gives_its_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "0123456789abcdef0123\nignored\n").unwrap();
        let config = api("127.0.0.1:0", "", file.to_str().unwrap());
        assert_eq!(config.load_token().unwrap(), "0123456789abcdef0123");
        std::fs::write(&file, "short\n").unwrap();
        assert!(config.load_token().is_err());
    }
}
