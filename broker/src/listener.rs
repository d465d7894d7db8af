//! Listeners: the `[[listener]]` tables of the configuration (or the one plain TCP
//! listener of `listen`), checked at load and bound by [`crate::server`].
//!
//! Each listener has a name, which plugins see as the client's `listener` and logs
//! show, an address, a kind (`tcp`, `tls`, `ws`, `wss`, see [`crate::transport`]) and
//! an optional connection limit of its own under the overall `limits.max_connections`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::transport::tls::TlsState;
/// What a listener speaks below MQTT: a type of the policy seam, since plugins see it.
pub use wasmq_policy::ListenerKind;

/// The name of the listener that `listen` (and `--listen`) describes.
pub const LISTEN_NAME: &str = "tcp";

/// The WebSocket path when a `ws`/`wss` listener names none (Mosquitto and EMQX's).
pub const DEFAULT_WS_PATH: &str = "/mqtt";

/// One `[[listener]]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// What plugins see as the client's `listener`, and logs show.
    pub name: String,
    /// Address to listen on (port 0 picks a free port).
    pub bind: SocketAddr,
    /// `tcp`, `tls`, `ws` or `wss`.
    #[serde(default)]
    pub kind: ListenerKind,
    /// Connections this listener serves at once, within `limits.max_connections`; 0: no
    /// limit of its own.
    #[serde(default)]
    pub max_connections: usize,
    /// PEM certificate chain (tls, wss), the server's certificate first. Reloaded when
    /// it changes.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file` (PKCS#8, PKCS#1 or SEC1). Reloaded when it changes.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// PEM bundle of the CAs whose client certificates are accepted (tls, wss). Without
    /// `require_client_cert`, a client may also connect with no certificate.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Refuse clients without a certificate signed by `ca_file` (mTLS).
    #[serde(default)]
    pub require_client_cert: bool,
    /// The verified client certificate's subject CN becomes the client's username (the
    /// CONNECT's username and password are not used), as Mosquitto's option of that name.
    #[serde(default)]
    pub use_identity_as_username: bool,
    /// The HTTP path WebSocket clients connect to (ws, wss).
    #[serde(default = "default_ws_path")]
    pub path: String,
}

fn default_ws_path() -> String {
    DEFAULT_WS_PATH.to_string()
}

impl ListenerConfig {
    /// A listener of `kind` on `bind`, every option at its default (tls and wss ones
    /// still need `cert_file` and `key_file`).
    pub fn new(name: &str, kind: ListenerKind, bind: SocketAddr) -> ListenerConfig {
        ListenerConfig {
            name: name.to_string(),
            bind,
            kind,
            max_connections: 0,
            cert_file: None,
            key_file: None,
            ca_file: None,
            require_client_cert: false,
            use_identity_as_username: false,
            path: default_ws_path(),
        }
    }

    /// Whether anything TLS is set: only tls and wss listeners take it.
    fn has_tls_options(&self) -> bool {
        self.cert_file.is_some()
            || self.key_file.is_some()
            || self.ca_file.is_some()
            || self.require_client_cert
            || self.use_identity_as_username
    }
}

/// The listeners `config` describes: its `[[listener]]` tables, or when there is none,
/// one tcp listener named `tcp` on `listen`.
pub fn listeners_of(config: &Config) -> Vec<ListenerConfig> {
    if config.listeners.is_empty() {
        vec![ListenerConfig::new(
            LISTEN_NAME,
            ListenerKind::Tcp,
            config.listen,
        )]
    } else {
        config.listeners.clone()
    }
}

/// `wasmq --listen ADDR`: the plain TCP listener's address. It sets `listen`; with
/// `[[listener]]` tables, it moves the first tcp one to `addr`, or adds one named `tcp`.
pub fn set_tcp_address(config: &mut Config, addr: SocketAddr) {
    config.listen = addr;
    if config.listeners.is_empty() {
        return;
    }
    match config
        .listeners
        .iter_mut()
        .find(|l| l.kind == ListenerKind::Tcp)
    {
        Some(tcp) => tcp.bind = addr,
        None => {
            let taken = config.listeners.iter().any(|l| l.name == LISTEN_NAME);
            let name = if taken { "tcp-listen" } else { LISTEN_NAME };
            config
                .listeners
                .push(ListenerConfig::new(name, ListenerKind::Tcp, addr));
        }
    }
}

/// Checks the `[[listener]]` tables: what cannot work is refused at load, naming the
/// listener.
pub fn validate(listeners: &[ListenerConfig]) -> anyhow::Result<()> {
    for (i, l) in listeners.iter().enumerate() {
        let name = &l.name;
        anyhow::ensure!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_graphic()),
            "listener {}: name must be non-empty printable ASCII without spaces, not {name:?}",
            i + 1
        );
        anyhow::ensure!(
            !listeners[..i].iter().any(|other| other.name == *name),
            "listener {name:?}: two listeners have this name"
        );
        if let Some(other) = listeners[..i]
            .iter()
            .find(|other| other.bind == l.bind && l.bind.port() != 0)
        {
            anyhow::bail!(
                "listeners {:?} and {name:?} both bind {}",
                other.name,
                l.bind
            );
        }
        let kind = l.kind.as_str();
        if l.kind.is_tls() {
            anyhow::ensure!(
                l.cert_file.is_some() && l.key_file.is_some(),
                "listener {name:?}: kind = \"{kind}\" needs cert_file and key_file"
            );
            anyhow::ensure!(
                !l.require_client_cert || l.ca_file.is_some(),
                "listener {name:?}: require_client_cert needs ca_file (the CAs client \
                 certificates are checked against)"
            );
            anyhow::ensure!(
                !l.use_identity_as_username || l.require_client_cert,
                "listener {name:?}: use_identity_as_username needs require_client_cert = true"
            );
        } else {
            anyhow::ensure!(
                !l.has_tls_options(),
                "listener {name:?}: certificate options on a kind = \"{kind}\" listener \
                 (kind = \"tls\" or \"wss\" takes them)"
            );
        }
        anyhow::ensure!(
            l.path.starts_with('/'),
            "listener {name:?}: path must start with '/', not {:?}",
            l.path
        );
    }
    Ok(())
}

/// A listener's name as a `&'static str` (what [`crate::hooks::ClientInfo`] holds, so
/// every hook call and cached question carries a pointer, not a string): each distinct
/// name is leaked once per process.
pub(crate) fn intern(name: &str) -> &'static str {
    static NAMES: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    if name == LISTEN_NAME {
        return LISTEN_NAME;
    }
    let mut names = NAMES.lock();
    if let Some(known) = names.iter().find(|n| **n == name) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.to_string().into_boxed_str());
    names.push(leaked);
    leaked
}

/// What a connection task needs to know of the listener that accepted it.
pub(crate) struct Endpoint {
    /// The listener's name (plugins' `client.listener`).
    pub name: &'static str,
    pub kind: ListenerKind,
    /// The current TLS configuration (tls, wss).
    pub tls: Option<Arc<TlsState>>,
    /// The WebSocket path (ws, wss).
    pub ws_path: String,
    /// The client certificate's CN is the username.
    pub use_identity_as_username: bool,
    /// This listener's own connection limit, if it has one.
    pub slots: Option<Arc<Semaphore>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<Config> {
        Config::parse(text)
    }

    #[test]
    fn listen_alone_is_one_tcp_listener() {
        let config = parse("listen = \"127.0.0.1:1884\"\n").unwrap();
        let listeners = listeners_of(&config);
        assert_eq!(listeners.len(), 1);
        assert_eq!(listeners[0].name, "tcp");
        assert_eq!(listeners[0].kind, ListenerKind::Tcp);
        assert_eq!(listeners[0].bind, "127.0.0.1:1884".parse().unwrap());
    }

    #[test]
    fn listener_tables_parse_with_defaults() {
        let config = parse(
            r#"
            [[listener]]
            name = "plain"
            bind = "127.0.0.1:1884"

            [[listener]]
            name = "secure"
            bind = "127.0.0.1:8883"
            kind = "tls"
            cert_file = "server.pem"
            key_file = "server.key"
            ca_file = "ca.pem"
            require_client_cert = true
            use_identity_as_username = true
            max_connections = 10

            [[listener]]
            name = "web"
            bind = "127.0.0.1:8080"
            kind = "ws"
            "#,
        )
        .unwrap();
        let l = listeners_of(&config);
        assert_eq!(l.len(), 3);
        assert_eq!(l[0].kind, ListenerKind::Tcp);
        assert_eq!(l[1].kind, ListenerKind::Tls);
        assert_eq!(l[1].max_connections, 10);
        assert!(l[1].use_identity_as_username);
        assert_eq!(l[2].path, "/mqtt");
    }

    #[test]
    fn impossible_listeners_are_refused_with_their_name() {
        let refused = |text: &str, needle: &str| {
            let error = format!("{:#}", parse(text).unwrap_err());
            assert!(error.contains(needle), "{needle:?} not in {error}");
        };
        let l = "[[listener]]\nbind = \"127.0.0.1:1\"\n";
        refused(
            &format!("{l}name = \"a\"\nkind = \"tls\"\n"),
            "needs cert_file",
        );
        refused(
            &format!(
                "{l}name = \"a\"\nkind = \"tls\"\ncert_file = \"c\"\nkey_file = \"k\"\nrequire_client_cert = true\n"
            ),
            "needs ca_file",
        );
        refused(
            &format!(
                "{l}name = \"a\"\nkind = \"wss\"\ncert_file = \"c\"\nkey_file = \"k\"\nuse_identity_as_username = true\n"
            ),
            "needs require_client_cert",
        );
        refused(
            &format!("{l}name = \"a\"\ncert_file = \"c\"\n"),
            "certificate options",
        );
        refused(
            &format!("{l}name = \"a\"\nkind = \"ws\"\npath = \"mqtt\"\n"),
            "path",
        );
        refused(&format!("{l}name = \"\"\n"), "name");
        refused(
            "[[listener]]\nname = \"a\"\nbind = \"127.0.0.1:1\"\n[[listener]]\nname = \"a\"\nbind = \"127.0.0.1:2\"\n",
            "two listeners",
        );
        refused(
            "[[listener]]\nname = \"a\"\nbind = \"127.0.0.1:1\"\n[[listener]]\nname = \"b\"\nbind = \"127.0.0.1:1\"\n",
            "both bind",
        );
        refused(
            &format!("{l}name = \"a\"\nkind = \"quic\"\n"),
            "unknown variant",
        );
        refused(
            &format!("{l}name = \"a\"\ncertfile = \"c\"\n"),
            "unknown field",
        );
    }

    #[test]
    fn the_listen_flag_moves_the_tcp_listener_or_adds_one() {
        let mut config = Config::default();
        let addr: SocketAddr = "127.0.0.1:2000".parse().unwrap();
        set_tcp_address(&mut config, addr);
        assert_eq!(listeners_of(&config)[0].bind, addr);

        let tls = ListenerConfig {
            cert_file: Some("c".into()),
            key_file: Some("k".into()),
            ..ListenerConfig::new(
                "secure",
                ListenerKind::Tls,
                "127.0.0.1:8883".parse().unwrap(),
            )
        };
        config.listeners = vec![tls.clone()];
        set_tcp_address(&mut config, addr);
        let listeners = listeners_of(&config);
        assert_eq!(listeners.len(), 2);
        assert_eq!(
            (listeners[1].name.as_str(), listeners[1].bind),
            ("tcp", addr)
        );

        let other: SocketAddr = "127.0.0.1:2001".parse().unwrap();
        set_tcp_address(&mut config, other);
        assert_eq!(listeners_of(&config).len(), 2, "the tcp listener moved");
        assert_eq!(listeners_of(&config)[1].bind, other);
    }

    #[test]
    fn names_are_interned_once() {
        let a = intern("listener-under-test");
        let b = intern(&String::from("listener-under-test"));
        assert!(std::ptr::eq(a, b));
        assert_eq!(intern("tcp"), LISTEN_NAME);
    }
}
