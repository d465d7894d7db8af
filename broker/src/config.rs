//! The broker's configuration: a serde struct with named defaults, refused when it holds
//! an unknown key. The commented default file is embedded and printed by
//! `wasmq print-config`; a test keeps it and [`Config::default`] in step.
//!
//! Plain data: [`Config::parse`] checks what the configuration alone can tell (ranges,
//! listeners). What only the plugin system knows, the built-in plugins' names and the
//! database schemes it speaks, is checked where plugins start ([`crate::plugins::validate`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

/// The default configuration file, with a comment on every key.
pub const DEFAULT_CONFIG: &str = include_str!("default-config.toml");

/// The highest `limits.max_topic_levels` accepted. Matching and unsubscribing walk the
/// subscription trie one stack frame per level; 1024 keeps that far inside a worker
/// thread's stack (`tests/tests/limits.rs` runs the maximum in a debug build).
pub const MAX_TOPIC_LEVELS: usize = 1024;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address of the MQTT listener when there is no `[[listener]]` table.
    pub listen: SocketAddr,
    /// The `[[listener]]` tables (tcp, tls, ws, wss); none: `listen` is the one listener.
    #[serde(rename = "listener")]
    pub listeners: Vec<crate::listener::ListenerConfig>,
    /// Sizes, counts and times.
    pub limits: Limits,
    /// `$SYS` topics.
    pub sys: SysConfig,
    /// The per-connection cache of authorization decisions (PUBLISH, SUBSCRIBE, and read
    /// access on deliveries through wildcards).
    pub authz_cache: CacheConfig,
    /// The per-connection cache of what a per-topic transform chain did to a PUBLISH.
    pub transform_cache: CacheConfig,
    /// The plugin folder and the policy fallbacks.
    pub plugins: PluginsConfig,
    /// The database behind the plugins' `sql` capability.
    pub database: DatabaseConfig,
    /// The local administration socket.
    pub admin: AdminConfig,
    /// The Prometheus endpoint (`crate::http`).
    pub metrics: crate::http::MetricsConfig,
    /// The HTTP admin API (`crate::http`).
    pub admin_api: crate::http::AdminApiConfig,
    /// The durable store of sessions and retained messages (`crate::store`).
    pub storage: StorageConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            listeners: Vec::new(),
            limits: Limits::default(),
            sys: SysConfig::default(),
            authz_cache: CacheConfig::default(),
            transform_cache: CacheConfig::default(),
            plugins: PluginsConfig::default(),
            database: DatabaseConfig::default(),
            admin: AdminConfig::default(),
            metrics: crate::http::MetricsConfig::default(),
            admin_api: crate::http::AdminApiConfig::default(),
            storage: StorageConfig::default(),
        }
    }
}

/// Every limit of the broker; see the default configuration file for what each means.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[allow(missing_docs)]
pub struct Limits {
    pub max_connections: usize,
    pub connect_timeout_ms: u64,
    pub auth_rounds_max: u32,
    pub auth_data_max_bytes: usize,
    pub reauth_timeout_ms: u64,
    pub max_packet_size: u32,
    pub receive_maximum: u16,
    pub max_inflight: u16,
    pub max_queued_messages: usize,
    pub backpressure_max_ms: u64,
    pub topic_alias_maximum: u16,
    pub keep_alive_max_secs: u16,
    pub session_expiry_max_secs: u32,
    pub client_id_max_len: usize,
    pub max_topic_levels: usize,
    pub max_subscriptions_per_client: usize,
    pub max_retained_messages: usize,
    pub write_buffer_high_water: usize,
    pub shutdown_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            connect_timeout_ms: 10_000,
            auth_rounds_max: 8,
            auth_data_max_bytes: 4096,
            reauth_timeout_ms: 10_000,
            max_packet_size: 1024 * 1024,
            receive_maximum: 128,
            max_inflight: 128,
            max_queued_messages: 1000,
            backpressure_max_ms: 1000,
            topic_alias_maximum: 64,
            keep_alive_max_secs: u16::MAX,
            session_expiry_max_secs: 7 * 24 * 3600,
            client_id_max_len: 256,
            max_topic_levels: 128,
            max_subscriptions_per_client: 1000,
            max_retained_messages: 100_000,
            write_buffer_high_water: 64 * 1024,
            shutdown_timeout_ms: 5000,
        }
    }
}

impl Limits {
    /// `connect_timeout_ms` as a duration.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// `reauth_timeout_ms` as a duration.
    pub fn reauth_timeout(&self) -> Duration {
        Duration::from_millis(self.reauth_timeout_ms)
    }

    /// `backpressure_max_ms` as a duration.
    pub fn backpressure_max(&self) -> Duration {
        Duration::from_millis(self.backpressure_max_ms)
    }

    /// `shutdown_timeout_ms` as a duration.
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }
}

/// `$SYS` publication.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SysConfig {
    /// Seconds between publications; 0 turns them off.
    pub interval_secs: u64,
}

impl Default for SysConfig {
    fn default() -> Self {
        SysConfig { interval_secs: 10 }
    }
}

/// The durable store: what survives a restart and a crash (see `docs/durability.md`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Keep persistent sessions and retained messages on disk; false: in memory only.
    pub enabled: bool,
    /// The store's folder.
    pub dir: PathBuf,
    /// When writes are synced to the disk.
    pub fsync: Fsync,
    /// With `fsync = "interval"`: the longest a write waits for its sync, milliseconds.
    pub fsync_interval_ms: u64,
    /// The store's size on disk at which new messages are no longer kept.
    pub max_bytes: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            enabled: true,
            dir: PathBuf::from("./.wasmq/store"),
            fsync: Fsync::Interval,
            fsync_interval_ms: 1000,
            max_bytes: 1 << 30,
        }
    }
}

/// When the store syncs what it wrote to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    /// Before a kept message is acknowledged: one sync for every message of one batch.
    /// Survives power loss.
    Always,
    /// Every `fsync_interval_ms`: survives the broker's crash, may lose the last
    /// interval's messages to a power loss.
    Interval,
    /// Left to the operating system: survives the broker's crash only.
    Never,
}

/// A per-connection cache of the policy's answers: `[authz_cache]` and
/// `[transform_cache]`, with the same defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// How long an answer is reused, milliseconds.
    pub ttl_ms: u64,
    /// Answers kept per connection; 0 turns the cache off.
    pub max_entries: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            ttl_ms: 60_000,
            max_entries: 256,
        }
    }
}

impl CacheConfig {
    /// `ttl_ms` as a duration.
    pub fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms)
    }
}

/// What decides when every authorization plugin ignores a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AclNomatch {
    /// Allow it.
    Allow,
    /// Deny it.
    Deny,
}

/// The plugin folder and the broker's own policy fallbacks.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    /// Folder of `NAME.wasm` plugins (each with an optional `NAME.toml`).
    pub dir: PathBuf,
    /// Compiled-component cache; empty turns it off.
    pub cache_dir: PathBuf,
    /// Whether changes in the folder are applied while the broker runs.
    pub watch: bool,
    /// Quiet time after a change before the folder is read, milliseconds.
    pub debounce_ms: u64,
    /// The answer when authorization plugins exist and none decides.
    pub acl_nomatch: AclNomatch,
    /// Whether a client no authentication plugin decides about may connect.
    pub allow_anonymous: AllowAnonymous,
    /// What happens to a client whose PUBLISH or SUBSCRIBE is denied.
    pub deny_action: DenyAction,
    /// Built-in plugins loaded beside the folder's (a `NAME.wasm` in the folder replaces
    /// the built-in of that name; a `NAME.toml` alone configures it).
    pub builtin: Vec<String>,
}

/// What the broker does, beyond the deny itself, to a client whose PUBLISH or SUBSCRIBE
/// is denied (EMQX's `acl_deny_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DenyAction {
    /// Nothing: a QoS 0 publish is dropped, QoS 1/2 get 0x87 (v5) or a plain ack (v3.1.1),
    /// a subscription gets 0x87 (v5) / 0x80 (v3.1.1).
    Ignore,
    /// Close the connection (v5: DISCONNECT 0x87 first); the will is published.
    Disconnect,
}

/// Who may connect without an authentication plugin saying yes: `true`, `false`, or
/// `"loopback"` (clients connecting from this machine only, so a fresh install exposed on
/// a public address does not let strangers in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllowAnonymous {
    /// Every client.
    Always,
    /// Clients whose address is a loopback address (127.0.0.0/8, ::1).
    Loopback,
    /// Nobody.
    Never,
}

impl AllowAnonymous {
    /// Whether an anonymous client connecting from `peer` may connect.
    pub fn admits(self, peer: std::net::IpAddr) -> bool {
        match self {
            AllowAnonymous::Always => true,
            AllowAnonymous::Never => false,
            // to_canonical: a v4 client on a dual-stack socket shows as ::ffff:127.0.0.1.
            AllowAnonymous::Loopback => peer.to_canonical().is_loopback(),
        }
    }
}

impl<'de> Deserialize<'de> for AllowAnonymous {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bool(true) => Ok(AllowAnonymous::Always),
            Raw::Bool(false) => Ok(AllowAnonymous::Never),
            Raw::Text(t) if t == "loopback" => Ok(AllowAnonymous::Loopback),
            Raw::Text(t) => Err(serde::de::Error::custom(format!(
                "allow_anonymous must be true, false or \"loopback\", not {t:?}"
            ))),
        }
    }
}

/// The local administration socket (`wasmq acl reload` and the `user`/`acl` commands
/// reach the running broker through it).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Path of the Unix socket; empty turns it off.
    pub socket: PathBuf,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            socket: PathBuf::from("./.wasmq/admin.sock"),
        }
    }
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            dir: PathBuf::from("./plugins"),
            cache_dir: PathBuf::from("./.wasmq/cache"),
            watch: true,
            debounce_ms: 50,
            acl_nomatch: AclNomatch::Deny,
            allow_anonymous: AllowAnonymous::Loopback,
            deny_action: DenyAction::Ignore,
            builtin: vec!["acl-sql".to_string()],
        }
    }
}

/// The database behind the plugins' `sql` capability (the default auth/ACL plugin's
/// `mqtt_user` and `mqtt_acl` tables live there).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH?mode=rwc`, `mysql://...` or `postgres://...`; empty: no database.
    pub url: String,
    /// Connections kept open at most.
    pub pool_max: u32,
    /// The longest one query may run, milliseconds.
    pub statement_timeout_ms: u64,
    /// The longest to wait for a connection, milliseconds.
    pub connect_timeout_ms: u64,
}

/// `[database] url` by default: a SQLite file in `./.wasmq`, created on first use.
pub const DATABASE_URL: &str = "sqlite://./.wasmq/wasmq.db?mode=rwc";
/// `[database] pool_max` by default.
pub const DATABASE_POOL_MAX: u32 = 8;
/// `[database] statement_timeout_ms` by default.
pub const DATABASE_STATEMENT_TIMEOUT_MS: u64 = 2000;
/// `[database] connect_timeout_ms` by default.
pub const DATABASE_CONNECT_TIMEOUT_MS: u64 = 5000;

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: DATABASE_URL.to_string(),
            pool_max: DATABASE_POOL_MAX,
            statement_timeout_ms: DATABASE_STATEMENT_TIMEOUT_MS,
            connect_timeout_ms: DATABASE_CONNECT_TIMEOUT_MS,
        }
    }
}

impl Config {
    /// Parses a configuration from TOML text.
    pub fn parse(text: &str) -> anyhow::Result<Config> {
        let config: Config = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and parses a configuration file.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let config = Config::parse(&text)
            .with_context(|| format!("invalid config file {}", path.display()))?;
        if let Some(unused) = config.unused_listen(&text) {
            tracing::warn!(file = %path.display(), "{unused}");
        }
        Ok(config)
    }

    /// Why `listen` in `text` is not used, when it is there beside `[[listener]]` tables:
    /// the tables replace it, and an operator who added them to the default config (which
    /// sets `listen`) would otherwise look for a listener that was never opened.
    pub fn unused_listen(&self, text: &str) -> Option<String> {
        let table: toml::Table = toml::from_str(text).ok()?;
        (table.contains_key("listen") && !self.listeners.is_empty()).then(|| {
            format!(
                "listen = \"{}\" is not used: the [[listener]] tables are the listeners \
                 (add one with kind = \"tcp\" for this address)",
                self.listen
            )
        })
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.storage.enabled || !self.storage.dir.as_os_str().is_empty(),
            "storage.dir must name a folder (or set storage.enabled = false)"
        );
        anyhow::ensure!(
            self.storage.fsync_interval_ms > 0,
            "storage.fsync_interval_ms must be at least 1"
        );
        let l = &self.limits;
        anyhow::ensure!(
            l.max_connections > 0,
            "limits.max_connections must be at least 1"
        );
        anyhow::ensure!(
            l.receive_maximum > 0,
            "limits.receive_maximum must be at least 1"
        );
        anyhow::ensure!(l.max_inflight > 0, "limits.max_inflight must be at least 1");
        anyhow::ensure!(
            l.max_queued_messages > 0,
            "limits.max_queued_messages must be at least 1"
        );
        anyhow::ensure!(
            (64..=268_435_460).contains(&l.max_packet_size),
            "limits.max_packet_size must be between 64 bytes and 268435460 (the MQTT maximum)"
        );
        anyhow::ensure!(
            (1..=MAX_TOPIC_LEVELS).contains(&l.max_topic_levels),
            "limits.max_topic_levels must be between 1 and {MAX_TOPIC_LEVELS}"
        );
        anyhow::ensure!(
            l.reauth_timeout_ms > 0,
            "limits.reauth_timeout_ms must be at least 1"
        );
        anyhow::ensure!(
            l.keep_alive_max_secs > 0,
            "limits.keep_alive_max_secs must be at least 1"
        );
        crate::listener::validate(&self.listeners)?;
        let d = &self.database;
        anyhow::ensure!(d.pool_max > 0, "database.pool_max must be at least 1");
        anyhow::ensure!(
            d.statement_timeout_ms > 0,
            "database.statement_timeout_ms must be at least 1"
        );
        self.metrics.validate()?;
        self.admin_api.validate()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_default_file_is_the_default() {
        assert_eq!(Config::parse(DEFAULT_CONFIG).unwrap(), Config::default());
    }

    #[test]
    fn the_readme_shows_the_default_file_verbatim() {
        // The README's configuration reference is this file; keep them in step.
        let readme = include_str!("../../README.md");
        assert!(
            readme.contains(DEFAULT_CONFIG.trim_end()),
            "update the README's config reference"
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = Config::parse("[limits]\nmax_conections = 3\n").unwrap_err();
        assert!(format!("{err:#}").contains("unknown field"), "{err:#}");
        assert!(Config::parse("lissen = \"127.0.0.1:1\"").is_err());
    }

    #[test]
    fn listen_beside_listener_tables_is_reported_as_unused() {
        let tables = "[[listener]]\nname = \"t\"\nkind = \"tcp\"\nbind = \"127.0.0.1:0\"\n";
        let both = format!("listen = \"127.0.0.1:1884\"\n{tables}");
        let config = Config::parse(&both).unwrap();
        let unused = config.unused_listen(&both).expect("reported");
        assert!(unused.contains("127.0.0.1:1884"), "{unused}");
        // Alone, each is what the config means.
        assert_eq!(Config::parse(tables).unwrap().unused_listen(tables), None);
        let listen = "listen = \"127.0.0.1:1884\"\n";
        assert_eq!(Config::parse(listen).unwrap().unused_listen(listen), None);
    }

    #[test]
    fn missing_keys_take_defaults() {
        let config = Config::parse("[limits]\nmax_inflight = 5\n").unwrap();
        assert_eq!(config.limits.max_inflight, 5);
        assert_eq!(
            config.limits.max_queued_messages,
            Limits::default().max_queued_messages
        );
    }

    #[test]
    fn impossible_values_are_refused() {
        assert!(Config::parse("[database]\npool_max = 0\n").is_err());
        assert!(Config::parse("[limits]\nreceive_maximum = 0\n").is_err());
        assert!(Config::parse("[limits]\nmax_packet_size = 10\n").is_err());
        assert!(Config::parse("[plugins]\nallow_anonymous = \"yes\"\n").is_err());
    }

    #[test]
    fn allow_anonymous_takes_a_bool_or_loopback() {
        let parse = |v: &str| {
            Config::parse(&format!("[plugins]\nallow_anonymous = {v}\n"))
                .unwrap()
                .plugins
                .allow_anonymous
        };
        assert_eq!(parse("true"), AllowAnonymous::Always);
        assert_eq!(parse("false"), AllowAnonymous::Never);
        assert_eq!(parse("\"loopback\""), AllowAnonymous::Loopback);
        let loopback = AllowAnonymous::Loopback;
        assert!(loopback.admits("127.0.0.1".parse().unwrap()));
        assert!(loopback.admits("127.9.0.1".parse().unwrap()));
        assert!(loopback.admits("::1".parse().unwrap()));
        assert!(loopback.admits("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!loopback.admits("10.0.0.1".parse().unwrap()));
        assert!(!loopback.admits("::ffff:192.168.1.2".parse().unwrap()));
        assert!(!loopback.admits("2001:db8::1".parse().unwrap()));
    }
}
