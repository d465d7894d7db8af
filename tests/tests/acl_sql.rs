//! The default auth/ACL plugin (`plugins/acl-sql`) end to end, on SQLite, MariaDB and
//! PostgreSQL, with real MQTT clients: the rules listed in `plugins/acl-sql/README.md`
//! ("Authorization") as one table of cases, run against each database, in MQTT
//! 3.1.1 and 5.0; the wire codes through rumqttc; and the database going away and
//! coming back (a TCP proxy cut between the broker's pool and the server).
//!
//! Each test makes a fresh database (`wasmq_acl_<pid>_<n>`, dropped at the end), opens
//! it through the broker's `open_database`, deploys the real `acl-sql.wasm` and
//! `acl-sql.toml` into a plugin folder, and writes rows with its own sqlx connection.
//! The servers are the ones CI starts (127.0.0.1:3306 root without a password,
//! 127.0.0.1:5432 postgres with trust; override with `WASMQ_TEST_MYSQL_URL` /
//! `WASMQ_TEST_POSTGRES_URL`, admin URLs without a database). A server that cannot be
//! reached fails the test: CI guarantees them, and a skipped matrix proves nothing.
//!
//! How a decision is observed: a publish is checked by its PUBACK (0x87 on v5) and by
//! whether a watcher receives it. The watcher then publishes a sentinel to itself; the
//! broker routes a message before it acknowledges it, so the sentinel arriving first
//! proves the denied message was dropped, with no waiting for "nothing to come".

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use bytestring::ByteString;
use sha2::{Digest, Sha256};
use sqlx::{AssertSqlSafe, MySqlPool, PgPool, SqlitePool};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;
use wasmq::config::{AclNomatch, DatabaseConfig, PluginsConfig};
use wasmq::hooks::{Action, Authorization, BoxFuture, CacheLifetime, ClientInfo, Hooks};
use wasmq::plugins::{PluginPolicy, Plugins, open_database};
use wasmq_codec::{Packet, Protocol, QoS, ReasonCode, SubscriptionOptions};
use wasmq_plugin_artifacts as artifacts;
use wasmq_plugin_host::Database;
use wasmq_tests::{RawClient, TestBroker, connect_packet, publish_packet};

/// The settings file operators start from; every setup is a small edit of it.
const ACL_SQL_TOML: &str = include_str!("../../plugins/acl-sql/acl-sql.toml");
/// The rules a new database gets (what `wasmq_acl_rules::schema::ensure` inserts).
const DEFAULT_ACL: &str = include_str!("../../acl-rules/schema/default-acl.sql");

// ---------------------------------------------------------------------------------
// Databases
// ---------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Sqlite,
    MariaDb,
    Postgres,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "SQLite",
            Backend::MariaDb => "MariaDB",
            Backend::Postgres => "PostgreSQL",
        })
    }
}

/// The server's admin URL (no database in it for MariaDB; `postgres` for PostgreSQL).
fn admin_url(backend: Backend) -> String {
    match backend {
        Backend::MariaDb => std::env::var("WASMQ_TEST_MYSQL_URL")
            .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into()),
        Backend::Postgres => std::env::var("WASMQ_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
        Backend::Sqlite => unreachable!("SQLite has no server"),
    }
}

/// The admin URL without its database path: `scheme://user@host:port`.
fn server_base(backend: Backend) -> String {
    let url = admin_url(backend);
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(slash) => url[..after_scheme + slash].to_string(),
        None => url,
    }
}

/// The `host:port` of a server URL.
fn server_addr(backend: Backend) -> String {
    let base = server_base(backend);
    let rest = &base[base.find("://").unwrap() + 3..];
    rest.rsplit_once('@').map_or(rest, |(_, hp)| hp).to_string()
}

/// A value bound to a statement of the test's own connection.
#[derive(Clone, Debug)]
enum P {
    Int(i32),
    Text(Option<String>),
    Bool(bool),
}

fn t(s: &str) -> P {
    P::Text(Some(s.to_string()))
}

fn opt(s: &Option<String>) -> P {
    P::Text(s.clone())
}

/// The test's own connection to its database: rows go in here, never through the
/// broker's pool (which the outage test cuts).
enum Admin {
    Sqlite(SqlitePool),
    MariaDb(MySqlPool),
    Postgres(PgPool),
}

macro_rules! bind_all {
    ($query:expr, $params:expr) => {{
        let mut query = $query;
        for p in $params {
            query = match p {
                P::Int(i) => query.bind(*i),
                P::Text(s) => query.bind(s.clone()),
                P::Bool(b) => query.bind(*b),
            };
        }
        query
    }};
}

impl Admin {
    /// Runs `sql` (with `?` placeholders) with `params` bound.
    async fn exec(&self, sql: &str, params: &[P]) {
        let result = match self {
            Admin::Sqlite(pool) => bind_all!(sqlx::query(AssertSqlSafe(sql.to_string())), params)
                .execute(pool)
                .await
                .map(|_| ()),
            Admin::MariaDb(pool) => bind_all!(sqlx::query(AssertSqlSafe(sql.to_string())), params)
                .execute(pool)
                .await
                .map(|_| ()),
            Admin::Postgres(pool) => {
                let mut n = 0;
                let sql: String = sql
                    .split('?')
                    .enumerate()
                    .map(|(i, part)| {
                        if i == 0 {
                            part.to_string()
                        } else {
                            n += 1;
                            format!("${n}{part}")
                        }
                    })
                    .collect();
                bind_all!(sqlx::query(AssertSqlSafe(sql)), params)
                    .execute(pool)
                    .await
                    .map(|_| ())
            }
        };
        result.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Runs SQL text as it is (several statements, comments).
    async fn raw(&self, sql: &str) {
        let sql = AssertSqlSafe(sql.to_string());
        let result = match self {
            Admin::Sqlite(pool) => sqlx::raw_sql(sql).execute(pool).await.map(|_| ()),
            Admin::MariaDb(pool) => sqlx::raw_sql(sql).execute(pool).await.map(|_| ()),
            Admin::Postgres(pool) => sqlx::raw_sql(sql).execute(pool).await.map(|_| ()),
        };
        result.unwrap_or_else(|e| panic!("raw SQL failed: {e}"));
    }

    async fn count(&self, table: &str) -> i64 {
        let sql = AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}"));
        match self {
            Admin::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
            Admin::MariaDb(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
            Admin::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
        }
    }

    async fn close(&self) {
        match self {
            Admin::Sqlite(pool) => pool.close().await,
            Admin::MariaDb(pool) => pool.close().await,
            Admin::Postgres(pool) => pool.close().await,
        }
    }
}

static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// A database of this test's own, dropped (server) or deleted (SQLite) at the end.
struct TestDb {
    backend: Backend,
    name: String,
    /// The URL the broker uses.
    url: String,
    admin: Admin,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    async fn create(backend: Backend) -> TestDb {
        let name = format!(
            "wasmq_acl_{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::Relaxed)
        );
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}/{name}.db?mode=rwc", dir.path().display());
                // `mode=rwc`: the test's pool creates the file; the broker creates the tables.
                let admin = Admin::Sqlite(SqlitePool::connect(&url).await.unwrap());
                TestDb {
                    backend,
                    name,
                    url,
                    admin,
                    _dir: Some(dir),
                }
            }
            Backend::MariaDb | Backend::Postgres => {
                let server = admin_url(backend);
                let unreachable = |e: sqlx::Error| {
                    format!(
                        "{backend} at {server} is needed by this test (CI starts it; set \
                         WASMQ_TEST_MYSQL_URL / WASMQ_TEST_POSTGRES_URL to use another): {e}"
                    )
                };
                let create = AssertSqlSafe(format!("CREATE DATABASE {name}"));
                let url = format!("{}/{name}", server_base(backend));
                let admin = if backend == Backend::MariaDb {
                    let root = MySqlPool::connect(&server)
                        .await
                        .unwrap_or_else(|e| panic!("{}", unreachable(e)));
                    sqlx::raw_sql(create).execute(&root).await.unwrap();
                    root.close().await;
                    Admin::MariaDb(MySqlPool::connect(&url).await.unwrap())
                } else {
                    let root = PgPool::connect(&server)
                        .await
                        .unwrap_or_else(|e| panic!("{}", unreachable(e)));
                    sqlx::raw_sql(create).execute(&root).await.unwrap();
                    root.close().await;
                    Admin::Postgres(PgPool::connect(&url).await.unwrap())
                };
                TestDb {
                    backend,
                    name,
                    url,
                    admin,
                    _dir: None,
                }
            }
        }
    }

    /// The broker's view of it: small pool, short timeouts, so a test that goes wrong
    /// fails in seconds.
    fn config(&self, url: String) -> DatabaseConfig {
        DatabaseConfig {
            url,
            pool_max: 4,
            statement_timeout_ms: 2000,
            connect_timeout_ms: 2000,
        }
    }

    async fn insert_acl(&self, rows: &[Acl]) {
        for r in rows {
            self.admin
                .exec(
                    "INSERT INTO mqtt_acl (allow, ipaddr, username, clientid, access, topic) \
                     VALUES (?, ?, ?, ?, ?, ?)",
                    &[
                        P::Int(r.allow),
                        opt(&r.ipaddr),
                        opt(&r.username),
                        opt(&r.clientid),
                        P::Int(r.access),
                        t(&r.topic),
                    ],
                )
                .await;
        }
    }

    async fn insert_users(&self, users: &[User]) {
        for u in users {
            self.admin
                .exec(
                    "INSERT INTO mqtt_user (username, password, salt, is_superuser) \
                     VALUES (?, ?, ?, ?)",
                    &[
                        t(&u.username),
                        opt(&u.password),
                        opt(&u.salt),
                        P::Bool(u.superuser),
                    ],
                )
                .await;
        }
    }

    async fn clear(&self) {
        self.admin.exec("DELETE FROM mqtt_acl", &[]).await;
        self.admin.exec("DELETE FROM mqtt_user", &[]).await;
    }

    /// Drops the database now (the test's end); `Drop` is the fallback on a panic.
    async fn drop_now(mut self) {
        self.admin.close().await;
        if self.backend != Backend::Sqlite {
            drop_database(self.backend, &self.name).await;
        }
        self.backend = Backend::Sqlite; // nothing left for Drop to do
    }
}

async fn drop_database(backend: Backend, name: &str) {
    let server = admin_url(backend);
    let result = match backend {
        Backend::MariaDb => match MySqlPool::connect(&server).await {
            Ok(root) => {
                let sql = AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name}"));
                let r = sqlx::raw_sql(sql).execute(&root).await.map(|_| ());
                root.close().await;
                r
            }
            Err(e) => Err(e),
        },
        Backend::Postgres => match PgPool::connect(&server).await {
            Ok(root) => {
                let sql = AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
                let r = sqlx::raw_sql(sql).execute(&root).await.map(|_| ());
                root.close().await;
                r
            }
            Err(e) => Err(e),
        },
        Backend::Sqlite => Ok(()),
    };
    if let Err(e) = result {
        eprintln!("cannot drop the test database {name}: {e}");
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.backend == Backend::Sqlite {
            return;
        }
        // A panicking test: drop the database on a thread with a runtime of its own
        // (this one may be shutting down).
        let (backend, name) = (self.backend, self.name.clone());
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(drop_database(backend, &name));
        })
        .join();
    }
}

// ---------------------------------------------------------------------------------
// Broker setups: the plugin's settings and the broker's fallbacks a case runs under
// ---------------------------------------------------------------------------------

/// `OR ipaddr LIKE '%/%'`: what the plugin's README tells operators to add so rows
/// whose only who-column is a CIDR block are selected (the default query compares
/// `ipaddr = ?`, the exact address, as EMQX does).
const CIDR_QUERY_TAIL: &str = " OR ipaddr LIKE '%/%'";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Setup {
    /// `acl-sql.toml` as shipped; `acl_nomatch = deny`, `allow_anonymous = true`.
    Default,
    /// `acl_nomatch = allow`.
    NomatchAllow,
    /// `allow_anonymous = false`.
    NoAnonymous,
    /// `acl_order = "id-asc"`.
    IdAsc,
    /// The ACL query also selects CIDR-only rows.
    CidrQuery,
    /// The broker listens on `[::1]`, with the CIDR query.
    Ipv6,
    /// `password_hash = "salt,sha256"`.
    SaltPrefix,
    /// `password_hash = "sha256,salt"`.
    SaltSuffix,
    /// `password_hash = "bcrypt"`.
    Bcrypt,
    /// `password_hash = "pbkdf2"` (sha256, 1000 iterations, 20 bytes: the defaults).
    Pbkdf2,
}

fn edit(toml: &str, from: &str, to: &str) -> String {
    assert!(
        toml.contains(from),
        "plugins/acl-sql/acl-sql.toml no longer holds {from:?}: update this test"
    );
    toml.replacen(from, to, 1)
}

impl Setup {
    fn toml(self) -> String {
        let hash = |v: &str| {
            edit(
                ACL_SQL_TOML,
                "password_hash = \"sha256\"",
                &format!("password_hash = \"{v}\""),
            )
        };
        let cidr = || {
            edit(
                ACL_SQL_TOML,
                "username = '$all' OR clientid = ?\"",
                &format!("username = '$all' OR clientid = ?{CIDR_QUERY_TAIL}\""),
            )
        };
        match self {
            Setup::Default | Setup::NomatchAllow | Setup::NoAnonymous => ACL_SQL_TOML.into(),
            Setup::IdAsc => edit(
                ACL_SQL_TOML,
                "acl_order = \"id-desc\"",
                "acl_order = \"id-asc\"",
            ),
            Setup::CidrQuery | Setup::Ipv6 => cidr(),
            Setup::SaltPrefix => hash("salt,sha256"),
            Setup::SaltSuffix => hash("sha256,salt"),
            Setup::Bcrypt => hash("bcrypt"),
            Setup::Pbkdf2 => hash("pbkdf2"),
        }
    }

    fn acl_nomatch(self) -> AclNomatch {
        if self == Setup::NomatchAllow {
            AclNomatch::Allow
        } else {
            AclNomatch::Deny
        }
    }
}

/// A broker with the acl-sql plugin loaded from a folder of its own.
struct Running {
    broker: TestBroker,
    _plugins: Plugins,
    _dir: tempfile::TempDir,
}

/// Deploys acl-sql with `toml` and starts a broker on `database`.
async fn start_broker(
    database: Option<Arc<Database>>,
    toml: &str,
    acl_nomatch: AclNomatch,
    allow_anonymous: bool,
    adjust: impl FnOnce(&mut wasmq::Config),
) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("plugins");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::copy(artifacts::ACL_SQL, folder.join("acl-sql.wasm")).unwrap();
    std::fs::write(folder.join("acl-sql.toml"), toml).unwrap();
    // `allow_anonymous` from its TOML form, which stays `true`/`false` whatever type
    // the field has. A built-in `acl-sql`, if the defaults load one, is replaced by the
    // folder's file of the same name, so exactly this plugin runs.
    let fallbacks =
        wasmq::Config::parse(&format!("[plugins]\nallow_anonymous = {allow_anonymous}\n"))
            .expect("allow_anonymous parses");
    let config = PluginsConfig {
        dir: folder,
        cache_dir: dir.path().join("cache"),
        watch: false,
        acl_nomatch,
        ..fallbacks.plugins
    };
    let plugins = Plugins::start_with_database(&config, database)
        .await
        .expect("the plugin folder starts");
    let stats = &plugins.folder.stats;
    assert_eq!(
        (
            stats.loads.load(Ordering::Relaxed),
            stats.failures.load(Ordering::Relaxed)
        ),
        (1, 0),
        "acl-sql loads"
    );
    let broker = TestBroker::start_with_hooks(adjust, Some(plugins.hooks())).await;
    Running {
        broker,
        _plugins: plugins,
        _dir: dir,
    }
}

// ---------------------------------------------------------------------------------
// The case table
// ---------------------------------------------------------------------------------

/// One `mqtt_acl` row (inserted in order, so later rows get higher ids).
#[derive(Clone, Debug)]
struct Acl {
    allow: i32,
    ipaddr: Option<String>,
    username: Option<String>,
    clientid: Option<String>,
    access: i32,
    topic: String,
}

const SUB: i32 = 1;
const PUB: i32 = 2;
const BOTH: i32 = 3;
const ALLOW: i32 = 1;
const DENY: i32 = 0;

fn row(
    allow: i32,
    ipaddr: Option<&str>,
    username: Option<&str>,
    clientid: Option<&str>,
    access: i32,
    topic: &str,
) -> Acl {
    Acl {
        allow,
        ipaddr: ipaddr.map(String::from),
        username: username.map(String::from),
        clientid: clientid.map(String::from),
        access,
        topic: topic.into(),
    }
}

fn all(allow: i32, access: i32, topic: &str) -> Acl {
    row(allow, None, Some("$all"), None, access, topic)
}

fn user(allow: i32, username: &str, access: i32, topic: &str) -> Acl {
    row(allow, None, Some(username), None, access, topic)
}

fn cid(allow: i32, clientid: &str, access: i32, topic: &str) -> Acl {
    row(allow, None, None, Some(clientid), access, topic)
}

fn ip(allow: i32, ipaddr: &str, access: i32, topic: &str) -> Acl {
    row(allow, Some(ipaddr), None, None, access, topic)
}

/// One `mqtt_user` row.
#[derive(Clone, Debug)]
struct User {
    username: String,
    password: Option<String>,
    salt: Option<String>,
    superuser: bool,
}

fn account(username: &str, password: &str, salt: Option<&str>, superuser: bool) -> User {
    User {
        username: username.into(),
        password: Some(password.into()),
        salt: salt.map(String::from),
        superuser,
    }
}

fn sha256_hex(input: &str) -> String {
    Sha256::digest(input.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// bcrypt's classic test vector (OpenBSD's, also in the plugin's unit tests).
const BCRYPT_UU: &str = "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW";
/// PBKDF2-HMAC-SHA256("secret", "NaCl", 1000, 20), the plugin's default parameters:
/// `python3 -c "import hashlib; print(hashlib.pbkdf2_hmac('sha256', b'secret', b'NaCl', 1000, 20).hex())"`.
const PBKDF2_SECRET_NACL: &str = "e786e0cbe6eee4cd03073a2c1075a80b84c518d0";

/// Who connects.
#[derive(Clone, Debug)]
struct Who {
    client_id: String,
    username: Option<String>,
    password: Option<Vec<u8>>,
}

fn anon(client_id: &str) -> Who {
    Who {
        client_id: client_id.into(),
        username: None,
        password: None,
    }
}

fn named(client_id: &str, username: &str) -> Who {
    Who {
        client_id: client_id.into(),
        username: Some(username.into()),
        password: None,
    }
}

fn login(client_id: &str, username: &str, password: &str) -> Who {
    Who {
        client_id: client_id.into(),
        username: Some(username.into()),
        password: Some(password.as_bytes().to_vec()),
    }
}

#[derive(Clone, Debug)]
enum Act {
    Publish(String),
    Subscribe(String),
    Connect,
}

fn publish(topic: &str) -> Act {
    Act::Publish(topic.into())
}

fn subscribe(filter: &str) -> Act {
    Act::Subscribe(filter.into())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Allow,
    Deny,
    /// CONNECT refused with this reason code (RawClient reads a v3.1.1 return code as
    /// the v5 code it stands for: 4 -> 0x86, 5 -> 0x87; rumqttc checks the bytes).
    Refused(ReasonCode),
    /// The broker refuses the CONNECT itself, whatever the code (malformed input).
    NoSession,
}

/// Which rows `mqtt_acl` holds for a case.
#[derive(Clone, Debug)]
enum Rows {
    /// Exactly these, in id order.
    These(Vec<Acl>),
    /// The default rules of a new database (`acl-rules/schema/default-acl.sql`).
    Defaults,
}

#[derive(Clone, Debug)]
struct Case {
    /// Which rule of the README's list it checks, and how.
    name: String,
    setup: Setup,
    rows: Rows,
    users: Vec<User>,
    who: Who,
    act: Act,
    expect: Expect,
}

fn case(name: &str, rows: Vec<Acl>, who: Who, act: Act, expect: Expect) -> Case {
    Case {
        name: name.into(),
        setup: Setup::Default,
        rows: Rows::These(rows),
        users: Vec::new(),
        who,
        act,
        expect,
    }
}

impl Case {
    fn on(mut self, setup: Setup) -> Case {
        self.setup = setup;
        self
    }

    fn users(mut self, users: Vec<User>) -> Case {
        self.users = users;
        self
    }

    fn defaults(mut self) -> Case {
        self.rows = Rows::Defaults;
        self
    }
}

use Expect::{Allow, Deny, NoSession, Refused};

/// The README's rules, one by one.
fn cases() -> Vec<Case> {
    let bad_pw = ReasonCode::BAD_USERNAME_OR_PASSWORD;
    let not_authorized = ReasonCode::NOT_AUTHORIZED;
    let secret = sha256_hex("secret");
    let alice = || vec![account("alice", &secret, None, false)];
    let long_user = "u".repeat(60_000);
    let long_cid = "c".repeat(256); // limits.client_id_max_len
    let mut c = vec![
        // --- the rules a new database starts with ---
        case(
            "defaults: anyone publishes to a/b",
            vec![],
            anon("c1"),
            publish("a/b"),
            Allow,
        )
        .defaults(),
        case(
            "defaults: anyone subscribes to #",
            vec![],
            anon("c1"),
            subscribe("#"),
            Allow,
        )
        .defaults(),
        case(
            "defaults: loopback subscribes to $SYS/#",
            vec![],
            anon("c1"),
            subscribe("$SYS/#"),
            Allow,
        )
        .defaults(),
        case(
            "defaults: nobody publishes to $SYS",
            vec![],
            anon("c1"),
            publish("$SYS/x"),
            Deny,
        )
        .defaults(),
        // --- who: $all ---
        case(
            "$all matches an anonymous client",
            vec![all(ALLOW, PUB, "t/1")],
            anon("c1"),
            publish("t/1"),
            Allow,
        ),
        case(
            "$all matches a named client",
            vec![all(ALLOW, PUB, "t/1")],
            named("c1", "bob"),
            publish("t/1"),
            Allow,
        ),
        case(
            "$all ignores the row's other who-columns (EMQX)",
            vec![row(
                ALLOW,
                Some("10.9.9.9"),
                Some("$all"),
                Some("other"),
                PUB,
                "t/1",
            )],
            anon("c1"),
            publish("t/1"),
            Allow,
        ),
        // --- who: username ---
        case(
            "username row matches that user",
            vec![user(ALLOW, "alice", PUB, "t/1")],
            named("c1", "alice"),
            publish("t/1"),
            Allow,
        ),
        case(
            "username row: other user no match",
            vec![user(ALLOW, "alice", PUB, "t/1")],
            named("c1", "bob"),
            publish("t/1"),
            Deny,
        ),
        case(
            "username row: anonymous no match",
            vec![user(ALLOW, "alice", PUB, "t/1")],
            anon("c1"),
            publish("t/1"),
            Deny,
        ),
        case(
            "username compares exact bytes (MariaDB's collation folds case)",
            vec![user(ALLOW, "Alice", PUB, "t/1")],
            named("c1", "alice"),
            publish("t/1"),
            Deny,
        ),
        case(
            "username compares exact bytes (MariaDB ignores trailing spaces)",
            vec![user(ALLOW, "alice ", PUB, "t/1")],
            named("c1", "alice"),
            publish("t/1"),
            Deny,
        ),
        case(
            "authenticated user matched by username",
            vec![user(ALLOW, "alice", PUB, "t/1")],
            login("c1", "alice", "secret"),
            publish("t/1"),
            Allow,
        )
        .users(alice()),
        // --- who: clientid ---
        case(
            "clientid row matches that client",
            vec![cid(ALLOW, "dev-1", PUB, "t/1")],
            anon("dev-1"),
            publish("t/1"),
            Allow,
        ),
        case(
            "clientid row: other client no match",
            vec![cid(ALLOW, "dev-1", PUB, "t/1")],
            anon("dev-2"),
            publish("t/1"),
            Deny,
        ),
        case(
            "clientid compares exact bytes",
            vec![cid(ALLOW, "DEV-1", PUB, "t/1")],
            anon("dev-1"),
            publish("t/1"),
            Deny,
        ),
        // --- who: ipaddr ---
        case(
            "ipaddr exact matches the peer",
            vec![ip(ALLOW, "127.0.0.1", PUB, "t/1")],
            anon("c1"),
            publish("t/1"),
            Allow,
        ),
        case(
            "ipaddr exact: other address no match",
            vec![ip(ALLOW, "127.0.0.2", PUB, "t/1")],
            anon("c1"),
            publish("t/1"),
            Deny,
        ),
        case(
            "ipaddr CIDR (with a username) contains the peer",
            vec![row(
                ALLOW,
                Some("127.0.0.0/8"),
                Some("alice"),
                None,
                PUB,
                "t/1",
            )],
            named("c1", "alice"),
            publish("t/1"),
            Allow,
        ),
        case(
            "ipaddr CIDR (with a username) not containing the peer",
            vec![row(
                ALLOW,
                Some("10.0.0.0/8"),
                Some("alice"),
                None,
                PUB,
                "t/1",
            )],
            named("c1", "alice"),
            publish("t/1"),
            Deny,
        ),
        case(
            "ipaddr CIDR /32 is the address",
            vec![row(
                ALLOW,
                Some("127.0.0.1/32"),
                Some("alice"),
                None,
                PUB,
                "t/1",
            )],
            named("c1", "alice"),
            publish("t/1"),
            Allow,
        ),
        case(
            "CIDR-only row is not selected by the default query (ipaddr = ?, as EMQX)",
            vec![ip(ALLOW, "127.0.0.0/8", PUB, "t/1")],
            anon("c1"),
            publish("t/1"),
            Deny,
        ),
        case(
            "CIDR-only row with the CIDR query",
            vec![ip(ALLOW, "127.0.0.0/8", PUB, "t/1")],
            anon("c1"),
            publish("t/1"),
            Allow,
        )
        .on(Setup::CidrQuery),
        case(
            "CIDR-only row not containing the peer",
            vec![ip(ALLOW, "10.0.0.0/8", PUB, "t/1")],
            anon("c1"),
            publish("t/1"),
            Deny,
        )
        .on(Setup::CidrQuery),
        case(
            "an IPv4 peer is also its IPv4-mapped IPv6 address",
            vec![ip(ALLOW, "::ffff:127.0.0.0/104", PUB, "t/1")],
            anon("c1"),
            publish("t/1"),
            Allow,
        )
        .on(Setup::CidrQuery),
        case(
            "an IPv6 block does not contain an IPv4 peer",
            vec![ip(ALLOW, "2001:db8::/32", PUB, "t/1")],
            anon("c1"),
            publish("t/1"),
            Deny,
        )
        .on(Setup::CidrQuery),
        // --- who: IPv6 peers (the broker listens on [::1]) ---
        case(
            "IPv6 exact address",
            vec![ip(ALLOW, "::1", PUB, "t/1")],
            anon("c1"),
            publish("t/1"),
            Allow,
        )
        .on(Setup::Ipv6),
        case(
            "IPv6 /128",
            vec![ip(ALLOW, "::1/128", PUB, "t/1")],
            anon("c1"),
            publish("t/1"),
            Allow,
        )
        .on(Setup::Ipv6),
        case(
            "IPv6 ::/0 contains ::1",
            vec![ip(ALLOW, "::/0", PUB, "t/1")],
            anon("c1"),
            publish("t/1"),
            Allow,
        )
        .on(Setup::Ipv6),
        case(
            "IPv6 block not containing ::1",
            vec![ip(ALLOW, "fe80::/10", PUB, "t/1")],
            anon("c1"),
            publish("t/1"),
            Deny,
        )
        .on(Setup::Ipv6),
        case(
            "an IPv4 row does not match an IPv6 peer",
            vec![ip(ALLOW, "127.0.0.1", PUB, "t/1")],
            anon("c1"),
            publish("t/1"),
            Deny,
        )
        .on(Setup::Ipv6),
        case(
            "the IPv4-mapped form of 127.0.0.1 is not ::1",
            vec![ip(ALLOW, "::ffff:127.0.0.1", PUB, "t/1")],
            anon("c1"),
            publish("t/1"),
            Deny,
        )
        .on(Setup::Ipv6),
        // --- who: AND of the non-empty columns ---
        case(
            "username AND clientid both match",
            vec![row(ALLOW, None, Some("alice"), Some("dev-1"), PUB, "t/1")],
            named("dev-1", "alice"),
            publish("t/1"),
            Allow,
        ),
        case(
            "username matches, clientid does not",
            vec![row(ALLOW, None, Some("alice"), Some("dev-1"), PUB, "t/1")],
            named("dev-2", "alice"),
            publish("t/1"),
            Deny,
        ),
        case(
            "clientid matches, username does not",
            vec![row(ALLOW, None, Some("alice"), Some("dev-1"), PUB, "t/1")],
            named("dev-1", "bob"),
            publish("t/1"),
            Deny,
        ),
        case(
            "ipaddr AND username",
            vec![row(
                ALLOW,
                Some("127.0.0.1"),
                Some("alice"),
                None,
                PUB,
                "t/1",
            )],
            named("c1", "alice"),
            publish("t/1"),
            Allow,
        ),
        case(
            "ipaddr fails the AND",
            vec![row(
                ALLOW,
                Some("127.0.0.2"),
                Some("alice"),
                None,
                PUB,
                "t/1",
            )],
            named("c1", "alice"),
            publish("t/1"),
            Deny,
        ),
        case(
            "empty who-columns are absent, not empty strings to match",
            vec![row(ALLOW, Some(""), Some("alice"), Some(""), PUB, "t/1")],
            named("c1", "alice"),
            publish("t/1"),
            Allow,
        ),
        // --- access ---
        case(
            "access 1 allows subscribe",
            vec![all(ALLOW, SUB, "t/1")],
            anon("c1"),
            subscribe("t/1"),
            Allow,
        ),
        case(
            "access 1 does not allow publish",
            vec![all(ALLOW, SUB, "t/1")],
            anon("c1"),
            publish("t/1"),
            Deny,
        ),
        case(
            "access 2 allows publish",
            vec![all(ALLOW, PUB, "t/1")],
            anon("c1"),
            publish("t/1"),
            Allow,
        ),
        case(
            "access 2 does not allow subscribe",
            vec![all(ALLOW, PUB, "t/1")],
            anon("c1"),
            subscribe("t/1"),
            Deny,
        ),
        case(
            "access 3 allows publish",
            vec![all(ALLOW, BOTH, "t/1")],
            anon("c1"),
            publish("t/1"),
            Allow,
        ),
        case(
            "access 3 allows subscribe",
            vec![all(ALLOW, BOTH, "t/1")],
            anon("c1"),
            subscribe("t/1"),
            Allow,
        ),
        // --- allow / deny ---
        case(
            "allow 0 denies publish",
            vec![all(DENY, BOTH, "t/#")],
            anon("c1"),
            publish("t/1"),
            Deny,
        ),
        case(
            "allow 0 denies subscribe",
            vec![all(DENY, BOTH, "t/#")],
            anon("c1"),
            subscribe("t/1"),
            Deny,
        ),
        case(
            "a deny row wins over acl_nomatch = allow",
            vec![all(DENY, PUB, "t/#")],
            anon("c1"),
            publish("t/1"),
            Deny,
        )
        .on(Setup::NomatchAllow),
        // --- order: first match wins, highest id first ---
        case(
            "later (higher id) deny wins over earlier allow",
            vec![all(ALLOW, PUB, "t/1"), all(DENY, PUB, "t/1")],
            anon("c1"),
            publish("t/1"),
            Deny,
        ),
        case(
            "later (higher id) allow wins over earlier deny",
            vec![all(DENY, PUB, "t/1"), all(ALLOW, PUB, "t/1")],
            anon("c1"),
            publish("t/1"),
            Allow,
        ),
        case(
            "a specific allow above a general deny",
            vec![all(DENY, PUB, "#"), user(ALLOW, "alice", PUB, "t/1")],
            named("c1", "alice"),
            publish("t/1"),
            Allow,
        ),
        case(
            "the general deny for everyone else",
            vec![all(DENY, PUB, "#"), user(ALLOW, "alice", PUB, "t/1")],
            named("c1", "bob"),
            publish("t/1"),
            Deny,
        ),
        case(
            "a non-matching higher row is stepped over",
            vec![all(ALLOW, PUB, "t/1"), all(DENY, PUB, "other")],
            anon("c1"),
            publish("t/1"),
            Allow,
        ),
        case(
            "acl_order = id-asc: the lowest id wins",
            vec![all(ALLOW, PUB, "t/1"), all(DENY, PUB, "t/1")],
            anon("c1"),
            publish("t/1"),
            Allow,
        )
        .on(Setup::IdAsc),
        // --- topics: + and # ---
        case(
            "+ matches one level",
            vec![all(ALLOW, PUB, "a/+")],
            anon("c1"),
            publish("a/b"),
            Allow,
        ),
        case(
            "+ does not match two levels",
            vec![all(ALLOW, PUB, "a/+")],
            anon("c1"),
            publish("a/b/c"),
            Deny,
        ),
        case(
            "+ matches an empty level",
            vec![all(ALLOW, PUB, "a/+")],
            anon("c1"),
            publish("a/"),
            Allow,
        ),
        case(
            "# matches the rest",
            vec![all(ALLOW, PUB, "a/#")],
            anon("c1"),
            publish("a/b/c"),
            Allow,
        ),
        case(
            "# matches no level at all",
            vec![all(ALLOW, PUB, "a/#")],
            anon("c1"),
            publish("a"),
            Allow,
        ),
        case(
            "literal level must be equal",
            vec![all(ALLOW, PUB, "a/b")],
            anon("c1"),
            publish("a/c"),
            Deny,
        ),
        case(
            "topics are case-sensitive",
            vec![all(ALLOW, PUB, "a/b")],
            anon("c1"),
            publish("A/b"),
            Deny,
        ),
        case(
            "rule + grants the filter +",
            vec![all(ALLOW, SUB, "a/+")],
            anon("c1"),
            subscribe("a/+"),
            Allow,
        ),
        case(
            "rule + grants a literal filter",
            vec![all(ALLOW, SUB, "a/+")],
            anon("c1"),
            subscribe("a/b"),
            Allow,
        ),
        case(
            "rule a/+ does not grant a/#",
            vec![all(ALLOW, SUB, "a/+")],
            anon("c1"),
            subscribe("a/#"),
            Deny,
        ),
        case(
            "rule + does not grant #",
            vec![all(ALLOW, SUB, "+")],
            anon("c1"),
            subscribe("#"),
            Deny,
        ),
        case(
            "rule a/b does not grant a/+",
            vec![all(ALLOW, SUB, "a/b")],
            anon("c1"),
            subscribe("a/+"),
            Deny,
        ),
        case(
            "rule # grants #",
            vec![all(ALLOW, SUB, "#")],
            anon("c1"),
            subscribe("#"),
            Allow,
        ),
        case(
            "rule # does not cover a $SYS publish",
            vec![all(ALLOW, PUB, "#")],
            anon("c1"),
            publish("$SYS/x"),
            Deny,
        ),
        case(
            "rule # does not grant $SYS/#",
            vec![all(ALLOW, SUB, "#")],
            anon("c1"),
            subscribe("$SYS/#"),
            Deny,
        ),
        case(
            "rule +/x does not cover $SYS/x",
            vec![all(ALLOW, PUB, "+/x")],
            anon("c1"),
            publish("$SYS/x"),
            Deny,
        ),
        case(
            "rule $SYS/# covers $SYS/x",
            vec![all(ALLOW, PUB, "$SYS/#")],
            anon("c1"),
            publish("$SYS/x"),
            Allow,
        ),
        case(
            "rule $SYS/# grants $SYS/#",
            vec![all(ALLOW, SUB, "$SYS/#")],
            anon("c1"),
            subscribe("$SYS/#"),
            Allow,
        ),
        case(
            "a deeper + does cover a $ level",
            vec![all(ALLOW, PUB, "a/+")],
            anon("c1"),
            publish("a/$x"),
            Allow,
        ),
        case(
            "a deny # does not reach $SYS either",
            vec![all(ALLOW, SUB, "$SYS/#"), all(DENY, SUB, "#")],
            anon("c1"),
            subscribe("$SYS/#"),
            Allow,
        ),
        // --- eq ---
        case(
            "eq a/# matches the filter a/# literally",
            vec![all(ALLOW, SUB, "eq a/#")],
            anon("c1"),
            subscribe("a/#"),
            Allow,
        ),
        case(
            "eq a/# does not match a/b",
            vec![all(ALLOW, SUB, "eq a/#")],
            anon("c1"),
            subscribe("a/b"),
            Deny,
        ),
        case(
            "eq a/+ does not publish a/b",
            vec![all(ALLOW, PUB, "eq a/+")],
            anon("c1"),
            publish("a/b"),
            Deny,
        ),
        case(
            "eq t/1 matches the topic t/1",
            vec![all(ALLOW, PUB, "eq t/1")],
            anon("c1"),
            publish("t/1"),
            Allow,
        ),
        case(
            "EMQX's sample: deny eq # above allow #",
            vec![all(ALLOW, SUB, "#"), all(DENY, SUB, "eq #")],
            anon("c1"),
            subscribe("#"),
            Deny,
        ),
        case(
            "EMQX's sample: other filters still allowed",
            vec![all(ALLOW, SUB, "#"), all(DENY, SUB, "eq #")],
            anon("c1"),
            subscribe("a/#"),
            Allow,
        ),
        case(
            "eq does not substitute %c",
            vec![all(ALLOW, PUB, "eq d/%c")],
            anon("d1"),
            publish("d/d1"),
            Deny,
        ),
        // --- placeholders ---
        case(
            "%c is the client id",
            vec![all(ALLOW, PUB, "d/%c/#")],
            anon("d1"),
            publish("d/d1/x"),
            Allow,
        ),
        case(
            "%c is not another client id",
            vec![all(ALLOW, PUB, "d/%c/#")],
            anon("d1"),
            publish("d/d2/x"),
            Deny,
        ),
        case(
            "%u is the user name",
            vec![all(ALLOW, PUB, "u/%u")],
            named("c1", "alice"),
            publish("u/alice"),
            Allow,
        ),
        case(
            "%u is not another user name",
            vec![all(ALLOW, PUB, "u/%u")],
            named("c1", "alice"),
            publish("u/bob"),
            Deny,
        ),
        case(
            "%u without a user name matches nothing",
            vec![all(ALLOW, PUB, "u/%u")],
            anon("c1"),
            publish("u/"),
            Deny,
        ),
        case(
            "%u with an empty user name matches nothing",
            vec![all(ALLOW, PUB, "u/%u")],
            named("c1", ""),
            publish("u/"),
            Deny,
        ),
        case(
            "%c only as a whole level: x%c is literal",
            vec![all(ALLOW, PUB, "x%c/a")],
            anon("d1"),
            publish("xd1/a"),
            Deny,
        ),
        case(
            "x%c is the literal text x%c",
            vec![all(ALLOW, PUB, "x%c/a")],
            anon("d1"),
            publish("x%c/a"),
            Allow,
        ),
        case(
            "client id + gains nothing from %c",
            vec![all(ALLOW, SUB, "d/%c")],
            anon("+"),
            subscribe("d/+"),
            Deny,
        ),
        case(
            "client id # gains nothing from %c",
            vec![all(ALLOW, SUB, "d/%c")],
            anon("#"),
            subscribe("d/#"),
            Deny,
        ),
        case(
            "client id a/# gains nothing from %c",
            vec![all(ALLOW, SUB, "d/%c")],
            anon("a/#"),
            subscribe("d/a/#"),
            Deny,
        ),
        case(
            "client id a/b does not span levels",
            vec![all(ALLOW, PUB, "d/%c")],
            anon("a/b"),
            publish("d/a/b"),
            Deny,
        ),
        case(
            "user name + gains nothing from %u",
            vec![all(ALLOW, SUB, "u/%u")],
            named("c1", "+"),
            subscribe("u/+"),
            Deny,
        ),
        case(
            "user name a/# gains nothing from %u",
            vec![all(ALLOW, SUB, "u/%u/#")],
            named("c1", "a/#"),
            subscribe("u/a/#"),
            Deny,
        ),
        // --- shared subscriptions ---
        case(
            "$share/g/ is stripped before the check",
            vec![all(ALLOW, SUB, "a/+")],
            anon("c1"),
            subscribe("$share/g/a/b"),
            Allow,
        ),
        case(
            "$share/g/ stripped: the rest must match",
            vec![all(ALLOW, SUB, "a/+")],
            anon("c1"),
            subscribe("$share/g/x/y"),
            Deny,
        ),
        case(
            "a rule naming $share does not match the stripped filter",
            vec![all(ALLOW, SUB, "$share/g/a/b")],
            anon("c1"),
            subscribe("$share/g/a/b"),
            Deny,
        ),
        // --- $-user names ---
        case(
            "a $-user name is not matched by a username row",
            vec![user(ALLOW, "$admin", PUB, "t/1")],
            named("c1", "$admin"),
            publish("t/1"),
            Deny,
        ),
        case(
            "$all still applies to a $-user name",
            vec![all(ALLOW, PUB, "t/1")],
            named("c1", "$admin"),
            publish("t/1"),
            Allow,
        ),
        case(
            "a clientid row still applies to a $-user",
            vec![cid(ALLOW, "dev-1", PUB, "t/1")],
            named("dev-1", "$admin"),
            publish("t/1"),
            Allow,
        ),
        case(
            "%u is not a $-user name",
            vec![all(ALLOW, PUB, "u/%u")],
            named("c1", "$admin"),
            publish("u/$admin"),
            Deny,
        ),
        case(
            "a $-user is never looked up in mqtt_user (anonymous then)",
            vec![],
            login("c1", "$admin", "secret"),
            Act::Connect,
            Allow,
        )
        .users(vec![account("$admin", &secret, None, true)]),
        case(
            "a $-user with its right password is still refused without allow_anonymous",
            vec![],
            login("c1", "$admin", "secret"),
            Act::Connect,
            Refused(not_authorized),
        )
        .users(vec![account("$admin", &secret, None, true)])
        .on(Setup::NoAnonymous),
        // --- no row matches ---
        case(
            "no rows: acl_nomatch = deny (publish)",
            vec![],
            anon("c1"),
            publish("t/1"),
            Deny,
        ),
        case(
            "no rows: acl_nomatch = deny (subscribe)",
            vec![],
            anon("c1"),
            subscribe("t/1"),
            Deny,
        ),
        case(
            "no matching row: acl_nomatch = deny",
            vec![all(ALLOW, PUB, "other")],
            anon("c1"),
            publish("t/1"),
            Deny,
        ),
        case(
            "no rows: acl_nomatch = allow (publish)",
            vec![],
            anon("c1"),
            publish("t/1"),
            Allow,
        )
        .on(Setup::NomatchAllow),
        case(
            "no rows: acl_nomatch = allow (subscribe)",
            vec![],
            anon("c1"),
            subscribe("t/1"),
            Allow,
        )
        .on(Setup::NomatchAllow),
        // --- invalid rows fail the check closed ---
        case(
            "allow 5 among the selected rows: deny",
            vec![all(ALLOW, PUB, "t/1"), all(5, PUB, "other")],
            anon("c1"),
            publish("t/1"),
            Deny,
        ),
        case(
            "access 4 among the selected rows: deny",
            vec![all(ALLOW, PUB, "t/1"), all(ALLOW, 4, "other")],
            anon("c1"),
            publish("t/1"),
            Deny,
        ),
        case(
            "a topic a/#/b among the selected rows: deny",
            vec![all(ALLOW, PUB, "t/1"), all(ALLOW, PUB, "a/#/b")],
            anon("c1"),
            publish("t/1"),
            Deny,
        ),
        case(
            "a bad CIDR among the selected rows: deny",
            vec![
                all(ALLOW, PUB, "t/1"),
                row(DENY, Some("127.0.0.1/33"), Some("alice"), None, PUB, "x"),
            ],
            named("c1", "alice"),
            publish("t/1"),
            Deny,
        ),
        case(
            "an invalid row even with acl_nomatch = allow: deny",
            vec![all(5, PUB, "t/1")],
            anon("c1"),
            publish("t/1"),
            Deny,
        )
        .on(Setup::NomatchAllow),
        // --- superusers ---
        case(
            "a superuser skips the ACL (publish)",
            vec![all(DENY, BOTH, "#")],
            login("c1", "root", "secret"),
            publish("t/1"),
            Allow,
        )
        .users(vec![account("root", &secret, None, true)]),
        case(
            "a superuser skips the ACL (subscribe $SYS/#)",
            vec![all(DENY, BOTH, "#")],
            login("c1", "root", "secret"),
            subscribe("$SYS/#"),
            Allow,
        )
        .users(vec![account("root", &secret, None, true)]),
        case(
            "is_superuser = 0 does not skip the ACL",
            vec![all(DENY, BOTH, "#")],
            login("c1", "root", "secret"),
            publish("t/1"),
            Deny,
        )
        .users(vec![account("root", &secret, None, false)]),
        case(
            "a superuser name without the password gets nothing",
            vec![],
            login("c1", "root", "guess"),
            Act::Connect,
            Refused(bad_pw),
        )
        .users(vec![account("root", &secret, None, true)]),
        // --- authentication ---
        case(
            "sha256: the right password",
            vec![],
            login("c1", "alice", "secret"),
            Act::Connect,
            Allow,
        )
        .users(alice()),
        case(
            "sha256: a wrong password",
            vec![],
            login("c1", "alice", "Secret"),
            Act::Connect,
            Refused(bad_pw),
        )
        .users(alice()),
        case(
            "sha256: no password",
            vec![],
            named("c1", "alice"),
            Act::Connect,
            Refused(bad_pw),
        )
        .users(alice()),
        case(
            "sha256: an empty password",
            vec![],
            login("c1", "alice", ""),
            Act::Connect,
            Refused(bad_pw),
        )
        .users(alice()),
        case(
            "sha256: stored in upper-case hex",
            vec![],
            login("c1", "alice", "secret"),
            Act::Connect,
            Allow,
        )
        .users(vec![account("alice", &secret.to_uppercase(), None, false)]),
        case(
            "sha256 (no salt setting) ignores the salt column",
            vec![],
            login("c1", "alice", "secret"),
            Act::Connect,
            Allow,
        )
        .users(vec![account("alice", &secret, Some("NaCl"), false)]),
        case(
            "sha256 (no salt setting) does not prepend the salt",
            vec![],
            login("c1", "alice", "secret"),
            Act::Connect,
            Refused(bad_pw),
        )
        .users(vec![account(
            "alice",
            &sha256_hex("NaClsecret"),
            Some("NaCl"),
            false,
        )]),
        case(
            "a NULL password never matches",
            vec![],
            login("c1", "alice", ""),
            Act::Connect,
            Refused(bad_pw),
        )
        .users(vec![User {
            username: "alice".into(),
            password: None,
            salt: None,
            superuser: false,
        }]),
        case(
            "salt,sha256: salt + password",
            vec![],
            login("c1", "alice", "secret"),
            Act::Connect,
            Allow,
        )
        .users(vec![account(
            "alice",
            &sha256_hex("NaClsecret"),
            Some("NaCl"),
            false,
        )])
        .on(Setup::SaltPrefix),
        case(
            "salt,sha256: not password + salt",
            vec![],
            login("c1", "alice", "secret"),
            Act::Connect,
            Refused(bad_pw),
        )
        .users(vec![account(
            "alice",
            &sha256_hex("secretNaCl"),
            Some("NaCl"),
            false,
        )])
        .on(Setup::SaltPrefix),
        case(
            "sha256,salt: password + salt",
            vec![],
            login("c1", "alice", "secret"),
            Act::Connect,
            Allow,
        )
        .users(vec![account(
            "alice",
            &sha256_hex("secretNaCl"),
            Some("NaCl"),
            false,
        )])
        .on(Setup::SaltSuffix),
        case(
            "bcrypt: the right password",
            vec![],
            login("c1", "alice", "U*U"),
            Act::Connect,
            Allow,
        )
        .users(vec![account(
            "alice",
            BCRYPT_UU,
            Some("$2a$05$CCCCCCCCCCCCCCCCCCCCC."),
            false,
        )])
        .on(Setup::Bcrypt),
        case(
            "bcrypt: a wrong password",
            vec![],
            login("c1", "alice", "U*V"),
            Act::Connect,
            Refused(bad_pw),
        )
        .users(vec![account("alice", BCRYPT_UU, None, false)])
        .on(Setup::Bcrypt),
        case(
            "pbkdf2: the right password",
            vec![],
            login("c1", "alice", "secret"),
            Act::Connect,
            Allow,
        )
        .users(vec![account(
            "alice",
            PBKDF2_SECRET_NACL,
            Some("NaCl"),
            false,
        )])
        .on(Setup::Pbkdf2),
        case(
            "pbkdf2: the salt counts",
            vec![],
            login("c1", "alice", "secret"),
            Act::Connect,
            Refused(bad_pw),
        )
        .users(vec![account(
            "alice",
            PBKDF2_SECRET_NACL,
            Some("NaCL"),
            false,
        )])
        .on(Setup::Pbkdf2),
        case(
            "pbkdf2: a wrong password",
            vec![],
            login("c1", "alice", "secreT"),
            Act::Connect,
            Refused(bad_pw),
        )
        .users(vec![account(
            "alice",
            PBKDF2_SECRET_NACL,
            Some("NaCl"),
            false,
        )])
        .on(Setup::Pbkdf2),
        case(
            "an unknown user falls to allow_anonymous = true",
            vec![],
            login("c1", "nobody", "x"),
            Act::Connect,
            Allow,
        )
        .users(alice()),
        case(
            "an unknown user falls to allow_anonymous = false",
            vec![],
            login("c1", "nobody", "x"),
            Act::Connect,
            Refused(not_authorized),
        )
        .users(alice())
        .on(Setup::NoAnonymous),
        case(
            "no user name, allow_anonymous = false",
            vec![],
            anon("c1"),
            Act::Connect,
            Refused(not_authorized),
        )
        .on(Setup::NoAnonymous),
        case(
            "a known user logs in with allow_anonymous = false",
            vec![],
            login("c1", "alice", "secret"),
            Act::Connect,
            Allow,
        )
        .users(alice())
        .on(Setup::NoAnonymous),
        // --- hostile input: injection through user name, client id, password ---
        case(
            "user name ' OR '1'='1 does not widen a username row",
            vec![user(ALLOW, "alice", PUB, "t/1")],
            named("c1", "' OR '1'='1"),
            publish("t/1"),
            Deny,
        ),
        case(
            "user name ' OR '1'='1 is bound, not parsed: $all still applies",
            vec![all(ALLOW, PUB, "t/1")],
            named("c1", "' OR '1'='1"),
            publish("t/1"),
            Allow,
        ),
        case(
            "a row for the literal user name ' OR '1'='1 matches it",
            vec![user(ALLOW, "' OR '1'='1", PUB, "t/1")],
            named("c1", "' OR '1'='1"),
            publish("t/1"),
            Allow,
        ),
        case(
            "client id ' OR clientid LIKE '% does not widen",
            vec![cid(ALLOW, "dev-1", PUB, "t/1")],
            anon("' OR clientid LIKE '%"),
            publish("t/1"),
            Deny,
        ),
        case(
            "client id with backslash and comment does not widen",
            vec![cid(ALLOW, "dev-1", PUB, "t/1")],
            anon("dev-1\\' OR 1=1 -- #"),
            publish("t/1"),
            Deny,
        ),
        case(
            "a row for a client id with quotes and backslashes matches it",
            vec![cid(ALLOW, "o'brien\\\"x", PUB, "t/1")],
            anon("o'brien\\\"x"),
            publish("t/1"),
            Allow,
        ),
        case(
            "user name alice' -- does not log in as alice",
            vec![],
            login("c1", "alice' -- ", "x"),
            Act::Connect,
            Refused(not_authorized),
        )
        .users(alice())
        .on(Setup::NoAnonymous),
        case(
            "password ' OR '1'='1 is just wrong",
            vec![],
            login("c1", "alice", "' OR '1'='1"),
            Act::Connect,
            Refused(bad_pw),
        )
        .users(alice()),
        case(
            "a user name with quotes and a backslash logs in",
            vec![],
            login("c1", "o'brien\\", "secret"),
            Act::Connect,
            Allow,
        )
        .users(vec![account("o'brien\\", &secret, None, false)])
        .on(Setup::NoAnonymous),
        case(
            "a NUL in the user name: refused before any lookup",
            vec![],
            login("c1", "alice\0", "secret"),
            Act::Connect,
            NoSession,
        )
        .users(alice()),
        case(
            "a NUL in the client id: refused before any lookup",
            vec![],
            anon("dev\0-1"),
            Act::Connect,
            NoSession,
        ),
        // --- hostile input: size and emptiness ---
        case(
            "a 60000-byte user name: unknown, anonymous",
            vec![],
            named("c1", &long_user),
            Act::Connect,
            Allow,
        )
        .users(alice()),
        case(
            "a 60000-byte user name gains no row",
            vec![user(ALLOW, "uuuu", PUB, "t/1")],
            named("c1", &long_user),
            publish("t/1"),
            Deny,
        ),
        case(
            "a 60000-byte user name through %u",
            vec![all(ALLOW, PUB, "u/%u")],
            named("c1", &long_user),
            publish(&format!("u/{long_user}")),
            Allow,
        ),
        case(
            "a 256-byte client id through %c",
            vec![all(ALLOW, PUB, "d/%c")],
            anon(&long_cid),
            publish(&format!("d/{long_cid}")),
            Allow,
        ),
        case(
            "a 256-byte client id gains no row",
            vec![cid(ALLOW, &long_cid[..100], PUB, "t/1")],
            anon(&long_cid),
            publish("t/1"),
            Deny,
        ),
        case(
            "an empty user name is anonymous",
            vec![],
            named("c1", ""),
            Act::Connect,
            Allow,
        ),
        case(
            "an empty user name is refused without allow_anonymous",
            vec![],
            named("c1", ""),
            Act::Connect,
            Refused(not_authorized),
        )
        .on(Setup::NoAnonymous),
        case(
            "an empty user name does not match an empty username column",
            vec![row(ALLOW, None, Some(""), Some("dev-9"), PUB, "t/1")],
            named("c1", ""),
            publish("t/1"),
            Deny,
        ),
    ];
    // Every case is also a check that the setups load; keep the names unique so a
    // failure points at one line.
    let mut seen = std::collections::HashSet::new();
    for x in &c {
        assert!(
            seen.insert(x.name.clone()),
            "duplicate case name {:?}",
            x.name
        );
    }
    c.shrink_to_fit();
    c
}

// ---------------------------------------------------------------------------------
// Running a case with real clients
// ---------------------------------------------------------------------------------

/// The watcher of publish cases: a superuser (so no ACL row of the case touches it).
const WATCHER: &str = "wasmq-watcher";
/// The topic the watcher publishes to itself after a case's publishes.
const SENTINEL: &str = "wasmq/sentinel";

/// The watcher's `mqtt_user` row and password under `setup`'s password scheme.
fn watcher_account(setup: Setup) -> (User, &'static str) {
    let (stored, salt, password) = match setup {
        Setup::SaltPrefix => (sha256_hex("NaClsecret"), Some("NaCl"), "secret"),
        Setup::SaltSuffix => (sha256_hex("secretNaCl"), Some("NaCl"), "secret"),
        Setup::Bcrypt => (BCRYPT_UU.to_string(), None, "U*U"),
        Setup::Pbkdf2 => (PBKDF2_SECRET_NACL.to_string(), Some("NaCl"), "secret"),
        _ => (sha256_hex("secret"), None, "secret"),
    };
    (account(WATCHER, &stored, salt, true), password)
}

fn connect_of(who: &Who, protocol: Protocol) -> wasmq_codec::Connect {
    let mut connect = connect_packet(protocol, &who.client_id, true);
    connect.username = who.username.as_deref().map(ByteString::from);
    connect.password = who.password.clone().map(Bytes::from);
    connect
}

async fn connected(addr: SocketAddr, who: &Who, protocol: Protocol) -> Result<RawClient, String> {
    match RawClient::connect(addr, connect_of(who, protocol)).await {
        Ok((client, ack)) if ack.reason_code == ReasonCode::SUCCESS => Ok(client),
        Ok((_, ack)) => Err(format!("{} could not connect: {ack:?}", who.client_id)),
        Err(e) => Err(format!("{} could not connect: {e:#}", who.client_id)),
    }
}

/// Publishes at QoS 1 and returns the PUBACK's reason code.
async fn publish_qos1(
    client: &mut RawClient,
    topic: &str,
    packet_id: u16,
) -> Result<ReasonCode, String> {
    let publish = publish_packet(topic, b"x", QoS::AtLeastOnce, false, packet_id);
    client
        .send(Packet::Publish(publish))
        .await
        .map_err(|e| e.to_string())?;
    match client.recv().await.map_err(|e| format!("{e:#}"))? {
        Packet::PubAck(ack) if ack.packet_id == packet_id => Ok(ack.reason_code),
        other => Err(format!("expected PUBACK {packet_id}, got {other:?}")),
    }
}

fn allowed_code(code: ReasonCode) -> bool {
    code == ReasonCode::SUCCESS || code == ReasonCode::NO_MATCHING_SUBSCRIBERS
}

/// Runs `case` once on `protocol` against the broker at `addr`.
async fn run_once(
    addr: SocketAddr,
    case: Case,
    watcher_password: &str,
    protocol: Protocol,
) -> Result<(), String> {
    let v5 = protocol == Protocol::V5;
    match &case.act {
        Act::Connect => {
            let result = RawClient::connect(addr, connect_of(&case.who, protocol)).await;
            let got = match &result {
                Ok((_, ack)) => format!("CONNACK {:?}", ack.reason_code),
                Err(e) => format!("no CONNACK ({e:#})"),
            };
            let ok = match (case.expect, &result) {
                (Allow, Ok((_, ack))) => ack.reason_code == ReasonCode::SUCCESS,
                (Refused(code), Ok((_, ack))) => ack.reason_code == code,
                (NoSession, Ok((_, ack))) => ack.reason_code.is_error(),
                (NoSession, Err(_)) => true,
                _ => false,
            };
            if let Ok((client, _)) = result {
                client.disconnect().await;
            }
            if ok {
                Ok(())
            } else {
                Err(format!("expected {:?}, got {got}", case.expect))
            }
        }
        Act::Subscribe(filter) => {
            let mut client = connected(addr, &case.who, protocol).await?;
            let ack = client
                .subscribe(
                    1,
                    &[(filter.as_str(), SubscriptionOptions::qos(QoS::AtLeastOnce))],
                )
                .await;
            client.disconnect().await;
            let expected = match (case.expect, v5) {
                (Allow, _) => ReasonCode::GRANTED_QOS_1,
                (Deny, true) => ReasonCode::NOT_AUTHORIZED,
                // The v3.1.1 failure return code, as sent on the wire.
                (Deny, false) => ReasonCode(0x80),
                (other, _) => return Err(format!("{other:?} is not a subscribe expectation")),
            };
            if ack.reason_codes == [expected] {
                Ok(())
            } else {
                Err(format!(
                    "SUBACK {:?}, expected [{expected:?}]",
                    ack.reason_codes
                ))
            }
        }
        Act::Publish(topic) => {
            let allow = match case.expect {
                Allow => true,
                Deny => false,
                other => return Err(format!("{other:?} is not a publish expectation")),
            };
            let watcher_who = login(WATCHER, WATCHER, watcher_password);
            let mut watcher = connected(addr, &watcher_who, Protocol::V5).await?;
            let qos1 = SubscriptionOptions::qos(QoS::AtLeastOnce);
            let ack = watcher
                .subscribe(1, &[(topic.as_str(), qos1), (SENTINEL, qos1)])
                .await;
            if ack.reason_codes != [ReasonCode::GRANTED_QOS_1; 2] {
                return Err(format!("the watcher could not subscribe: {ack:?}"));
            }
            let mut client = connected(addr, &case.who, protocol).await?;
            // QoS 1: v5 says 0x87 on a denial; v3.1.1 has no code and gets a plain PUBACK.
            let code = publish_qos1(&mut client, topic, 7).await?;
            let expected_code = match (allow, v5) {
                (false, true) => ReasonCode::NOT_AUTHORIZED,
                _ => ReasonCode::SUCCESS,
            };
            if code != expected_code {
                return Err(format!("PUBACK {code:?}, expected {expected_code:?}"));
            }
            // QoS 0: no ack either way; a PINGRESP says the PUBLISH before it was handled.
            let qos0 = publish_packet(topic, b"y", QoS::AtMostOnce, false, 0);
            client
                .send(Packet::Publish(qos0))
                .await
                .map_err(|e| e.to_string())?;
            client
                .send(Packet::PingReq)
                .await
                .map_err(|e| e.to_string())?;
            match client.recv().await {
                Ok(Packet::PingResp) => {}
                other => return Err(format!("expected PINGRESP, got {other:?}")),
            }
            client.disconnect().await;
            // Whatever the broker routed was queued to the watcher before it acked; the
            // sentinel comes after it.
            let sentinel = publish_packet(SENTINEL, b"s", QoS::AtMostOnce, false, 0);
            watcher
                .send(Packet::Publish(sentinel))
                .await
                .map_err(|e| e.to_string())?;
            let mut delivered = Vec::new();
            loop {
                match watcher
                    .recv()
                    .await
                    .map_err(|e| format!("watcher: {e:#}"))?
                {
                    Packet::Publish(p) if &p.topic[..] == SENTINEL => break,
                    Packet::Publish(p) => delivered.push((p.qos, p.payload)),
                    other => return Err(format!("watcher got {other:?}")),
                }
            }
            watcher.disconnect().await;
            let expected: usize = if allow { 2 } else { 0 };
            if delivered.len() == expected {
                Ok(())
            } else {
                Err(format!(
                    "the watcher received {delivered:?}, expected {expected} message(s)"
                ))
            }
        }
    }
}

/// Puts the case's rows and users in place.
async fn set_rows(db: &TestDb, case: &Case) {
    db.clear().await;
    match &case.rows {
        Rows::Defaults => db.admin.raw(DEFAULT_ACL).await,
        Rows::These(rows) => db.insert_acl(rows).await,
    }
    db.insert_users(&case.users).await;
    if matches!(case.act, Act::Publish(_)) {
        db.insert_users(&[watcher_account(case.setup).0]).await;
    }
}

async fn rule_table(backend: Backend) {
    let db = TestDb::create(backend).await;
    let database = open_database(&db.config(db.url.clone()))
        .await
        .unwrap_or_else(|e| panic!("{backend}: open_database: {e:#}"))
        .expect("a database is configured");
    assert_eq!(
        db.admin.count("mqtt_acl").await,
        3,
        "a new database gets the default rules"
    );
    assert_eq!(db.admin.count("mqtt_user").await, 0);

    let cases = cases();
    let started = Instant::now();
    let mut brokers: HashMap<Setup, Running> = HashMap::new();
    let mut failures = Vec::new();
    for case in &cases {
        set_rows(&db, case).await;
        if !brokers.contains_key(&case.setup) {
            let setup = case.setup;
            let running = start_broker(
                Some(database.clone()),
                &setup.toml(),
                setup.acl_nomatch(),
                setup != Setup::NoAnonymous,
                |c| {
                    if setup == Setup::Ipv6 {
                        c.listen = "[::1]:0".parse().unwrap();
                    }
                },
            )
            .await;
            brokers.insert(setup, running);
        }
        let addr = brokers[&case.setup].broker.addr;
        let watcher_password = watcher_account(case.setup).1;
        for protocol in [Protocol::V311, Protocol::V5] {
            // A panic inside a client helper fails this run, not the whole table.
            let run = tokio::spawn(run_once(addr, case.clone(), watcher_password, protocol));
            let outcome = match run.await {
                Ok(result) => result,
                Err(e) => Err(format!("panicked: {e}")),
            };
            if let Err(why) = outcome {
                failures.push(format!(
                    "  [{protocol:?}] {} ({:?}): {why}",
                    case.name, case.setup
                ));
            }
        }
    }
    let elapsed = started.elapsed();
    for (_, running) in brokers.drain() {
        running.broker.shutdown().await;
    }
    database.close().await;
    db.drop_now().await;
    eprintln!(
        "{backend}: {} cases x 2 protocols ({} setups) in {elapsed:.1?}",
        cases.len(),
        cases
            .iter()
            .map(|c| c.setup)
            .collect::<std::collections::HashSet<_>>()
            .len()
    );
    assert!(
        failures.is_empty(),
        "{backend}: {} of {} runs disagree with the rule table:\n{}",
        failures.len(),
        cases.len() * 2,
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------
// The bytes on the wire, through a third-party client (rumqttc)
// ---------------------------------------------------------------------------------

async fn v4_next(
    eventloop: &mut rumqttc::EventLoop,
) -> Result<rumqttc::Packet, rumqttc::ConnectionError> {
    loop {
        let event = tokio::time::timeout(wasmq_tests::WAIT, eventloop.poll())
            .await
            .expect("rumqttc v3.1.1: an event in time")?;
        if let rumqttc::Event::Incoming(packet) = event {
            return Ok(packet);
        }
    }
}

async fn v5_next(
    eventloop: &mut rumqttc::v5::EventLoop,
) -> Result<rumqttc::v5::Incoming, rumqttc::v5::ConnectionError> {
    loop {
        let event = tokio::time::timeout(wasmq_tests::WAIT, eventloop.poll())
            .await
            .expect("rumqttc v5: an event in time")?;
        if let rumqttc::v5::Event::Incoming(packet) = event {
            return Ok(packet);
        }
    }
}

/// What a stock client library reads: v3.1.1 CONNACK 0x04 and SUBACK 0x80, v5 CONNACK
/// 0x86, SUBACK 0x87 and PUBACK 0x87.
async fn wire_codes(backend: Backend) {
    use rumqttc::v5::mqttbytes::v5::{
        ConnectReturnCode as V5Connect, PubAckReason, SubscribeReasonCode as V5Sub,
    };
    use rumqttc::{ConnectReturnCode, SubscribeReasonCode};

    let db = TestDb::create(backend).await;
    let database = open_database(&db.config(db.url.clone()))
        .await
        .unwrap()
        .unwrap();
    db.clear().await;
    db.insert_acl(&[all(ALLOW, BOTH, "ok/#")]).await;
    db.insert_users(&[account("alice", &sha256_hex("secret"), None, false)])
        .await;
    let running = start_broker(
        Some(database.clone()),
        ACL_SQL_TOML,
        AclNomatch::Deny,
        true,
        |_| {},
    )
    .await;
    let broker = &running.broker;

    // v3.1.1, wrong password: return code 4.
    let mut options = broker.v4_options("r4-bad");
    options.set_credentials("alice", "wrong");
    let (_client, mut eventloop) = rumqttc::AsyncClient::new(options, 8);
    match v4_next(&mut eventloop).await {
        Err(rumqttc::ConnectionError::ConnectionRefused(code)) => {
            assert_eq!(code, ConnectReturnCode::BadUserNamePassword, "{backend}")
        }
        other => panic!("{backend}: v3.1.1 wrong password: {other:?}"),
    }
    // v5, wrong password: 0x86.
    let mut options = broker.v5_options("r5-bad");
    options.set_credentials("alice", "wrong");
    let (_client, mut eventloop) = rumqttc::v5::AsyncClient::new(options, 8);
    match v5_next(&mut eventloop).await {
        Err(rumqttc::v5::ConnectionError::ConnectionRefused(code)) => {
            assert_eq!(code, V5Connect::BadUserNamePassword, "{backend}")
        }
        other => panic!("{backend}: v5 wrong password: {other:?}"),
    }

    // v3.1.1, right password: a denied subscription is 0x80, an allowed one granted.
    let mut options = broker.v4_options("r4");
    options.set_credentials("alice", "secret");
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 8);
    assert!(matches!(
        v4_next(&mut eventloop).await,
        Ok(rumqttc::Packet::ConnAck(_))
    ));
    client
        .subscribe("no/1", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    client
        .subscribe("ok/1", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    let mut subacks = Vec::new();
    while subacks.len() < 2 {
        if let rumqttc::Packet::SubAck(ack) = v4_next(&mut eventloop).await.unwrap() {
            subacks.push(ack.return_codes);
        }
    }
    assert_eq!(
        subacks,
        vec![
            vec![SubscribeReasonCode::Failure],
            vec![SubscribeReasonCode::Success(rumqttc::QoS::AtLeastOnce)]
        ],
        "{backend}"
    );
    // A denied QoS 1 publish is acknowledged (v3.1.1 has no way to say no).
    client
        .publish("no/1", rumqttc::QoS::AtLeastOnce, false, "x")
        .await
        .unwrap();
    loop {
        if let rumqttc::Packet::PubAck(_) = v4_next(&mut eventloop).await.unwrap() {
            break;
        }
    }

    // v5: SUBACK 0x87 and PUBACK 0x87.
    let mut options = broker.v5_options("r5");
    options.set_credentials("alice", "secret");
    let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(options, 8);
    assert!(matches!(
        v5_next(&mut eventloop).await,
        Ok(rumqttc::v5::Incoming::ConnAck(_))
    ));
    client
        .subscribe("no/1", rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
        .await
        .unwrap();
    loop {
        if let rumqttc::v5::Incoming::SubAck(ack) = v5_next(&mut eventloop).await.unwrap() {
            assert_eq!(ack.return_codes, vec![V5Sub::NotAuthorized], "{backend}");
            break;
        }
    }
    client
        .publish("no/1", rumqttc::v5::mqttbytes::QoS::AtLeastOnce, false, "x")
        .await
        .unwrap();
    loop {
        if let rumqttc::v5::Incoming::PubAck(ack) = v5_next(&mut eventloop).await.unwrap() {
            assert_eq!(ack.reason, PubAckReason::NotAuthorized, "{backend}");
            break;
        }
    }

    running.broker.shutdown().await;
    database.close().await;
    db.drop_now().await;
}

// ---------------------------------------------------------------------------------
// The database going away: a TCP proxy between the broker's pool and the server
// ---------------------------------------------------------------------------------

/// A TCP proxy that can be cut (every connection closed, new ones closed as soon as
/// they are accepted), stalled (every connection closed, new ones accepted and never
/// answered: a server that hangs) and restored, standing in for a database server that
/// goes away without touching the shared server.
struct Proxy {
    addr: SocketAddr,
    state: Arc<ProxyState>,
    accept: AbortHandle,
}

#[derive(Default)]
struct ProxyState {
    cut: AtomicBool,
    stalled: AtomicBool,
    /// Connections accepted while stalled, kept open and silent.
    held: Mutex<Vec<TcpStream>>,
    /// The relays of open connections; taken under the same lock that `cut` is read
    /// under, so no connection accepted before a cut survives it.
    relays: Mutex<Vec<AbortHandle>>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ProxyState::default());
        let shared = state.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                let mut relays = shared.relays.lock().unwrap();
                if shared.cut.load(Ordering::SeqCst) {
                    drop(inbound); // refused: closed before a byte is exchanged
                    continue;
                }
                if shared.stalled.load(Ordering::SeqCst) {
                    shared.held.lock().unwrap().push(inbound);
                    continue;
                }
                let upstream = upstream.clone();
                let relay = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                relays.retain(|r| !r.is_finished());
                relays.push(relay.abort_handle());
            }
        })
        .abort_handle();
        Proxy {
            addr,
            state,
            accept,
        }
    }

    /// Closes every connection and refuses new ones.
    fn cut(&self) {
        let mut relays = self.state.relays.lock().unwrap();
        self.state.cut.store(true, Ordering::SeqCst);
        for relay in relays.drain(..) {
            relay.abort();
        }
    }

    /// Closes every connection and answers none of the new ones.
    fn stall(&self) {
        let mut relays = self.state.relays.lock().unwrap();
        self.state.stalled.store(true, Ordering::SeqCst);
        for relay in relays.drain(..) {
            relay.abort();
        }
    }

    fn restore(&self) {
        self.state.cut.store(false, Ordering::SeqCst);
        self.state.stalled.store(false, Ordering::SeqCst);
        self.state.held.lock().unwrap().clear();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// How long the broker reuses a decision in the outage test.
const OUTAGE_TTL: Duration = Duration::from_millis(3000);

/// While the database is unreachable, new decisions and logins fail closed and
/// cached allows keep serving until their TTL; once it is back, everything works
/// again with no restart; and, as the README says, the failure is not cached: a
/// decision denied during the outage is allowed at once afterwards.
async fn database_outage(backend: Backend) {
    let db = TestDb::create(backend).await;
    let proxy = Proxy::start(server_addr(backend)).await;
    let url = format!(
        "{}/{}",
        server_base(backend).replace(&server_addr(backend), &proxy.addr.to_string()),
        db.name
    );
    // Short timeouts: every check during the outage fails within about a second.
    let config = DatabaseConfig {
        url,
        pool_max: 2,
        statement_timeout_ms: 1000,
        connect_timeout_ms: 1000,
    };
    let database = open_database(&config).await.unwrap().expect("a database");
    db.clear().await;
    db.insert_acl(&[all(ALLOW, BOTH, "ok/#")]).await;
    db.insert_users(&[account("alice", &sha256_hex("secret"), None, false)])
        .await;
    let running = start_broker(
        Some(database.clone()),
        ACL_SQL_TOML,
        AclNomatch::Deny,
        true,
        |c| {
            c.authz_cache.ttl_ms = OUTAGE_TTL.as_millis() as u64;
        },
    )
    .await;
    let addr = running.broker.addr;
    let alice = login("alice-1", "alice", "secret");
    let mut ids = 1..;
    let mut holder = RawClient::connected(addr, Protocol::V5, "holder").await;

    let cached_at = Instant::now();
    let code = publish_qos1(&mut holder, "ok/cached", ids.next().unwrap())
        .await
        .unwrap();
    assert!(allowed_code(code), "{backend}: before the outage: {code:?}");

    proxy.cut();
    // A cached allow keeps serving until its TTL...
    let code = publish_qos1(&mut holder, "ok/cached", ids.next().unwrap())
        .await
        .unwrap();
    assert!(
        cached_at.elapsed() < OUTAGE_TTL,
        "{backend}: the machine stalled past the cache TTL; this check proves nothing"
    );
    assert!(
        allowed_code(code),
        "{backend}: cached allow during the outage: {code:?}"
    );
    // ...while every new decision fails closed.
    let code = publish_qos1(&mut holder, "ok/fresh", ids.next().unwrap())
        .await
        .unwrap();
    assert_eq!(
        code,
        ReasonCode::NOT_AUTHORIZED,
        "{backend}: new publish during the outage"
    );
    let ack = holder.subscribe_qos("ok/fresh", QoS::AtLeastOnce).await;
    assert_eq!(
        ack.reason_codes,
        vec![ReasonCode::NOT_AUTHORIZED],
        "{backend}: subscribe"
    );
    // A login that needs the database is refused, in both versions.
    for protocol in [Protocol::V5, Protocol::V311] {
        let (_, ack) = RawClient::connect(addr, connect_of(&alice, protocol))
            .await
            .unwrap();
        assert_eq!(
            ack.reason_code,
            ReasonCode::BAD_USERNAME_OR_PASSWORD,
            "{backend} {protocol:?}: login"
        );
    }
    // An anonymous client needs no lookup to connect, but gets no permission.
    let mut late = RawClient::connected(addr, Protocol::V5, "late").await;
    let code = publish_qos1(&mut late, "ok/late", 1).await.unwrap();
    assert_eq!(
        code,
        ReasonCode::NOT_AUTHORIZED,
        "{backend}: a newcomer during the outage"
    );
    // Past the TTL the cached allow is gone too.
    tokio::time::sleep(
        (cached_at + OUTAGE_TTL + Duration::from_millis(100))
            .saturating_duration_since(Instant::now()),
    )
    .await;
    let code = publish_qos1(&mut holder, "ok/cached", ids.next().unwrap())
        .await
        .unwrap();
    assert_eq!(
        code,
        ReasonCode::NOT_AUTHORIZED,
        "{backend}: cached allow past its TTL"
    );

    proxy.restore();
    let restored_at = Instant::now();
    // A new connection, a login, a topic the holder never asked about: at once.
    let mut after = RawClient::connected(addr, Protocol::V5, "after").await;
    let code = publish_qos1(&mut after, "ok/fresh", 1).await.unwrap();
    assert!(
        allowed_code(code),
        "{backend}: a new client after the restore: {code:?}"
    );
    let (client, ack) = RawClient::connect(addr, connect_of(&alice, Protocol::V5))
        .await
        .unwrap();
    assert_eq!(
        ack.reason_code,
        ReasonCode::SUCCESS,
        "{backend}: login after the restore"
    );
    client.disconnect().await;
    let code = publish_qos1(&mut holder, "ok/other", ids.next().unwrap())
        .await
        .unwrap();
    assert!(
        allowed_code(code),
        "{backend}: a new topic after the restore: {code:?}"
    );
    // What the holder was denied during the outage: those denials were made blind
    // (the database failed), so they were not cached, and are allowed at once.
    for topic in ["ok/fresh", "ok/cached"] {
        let code = publish_qos1(&mut holder, topic, ids.next().unwrap())
            .await
            .unwrap();
        assert!(
            allowed_code(code),
            "{backend}: {topic} denied during the outage is still denied: {code:?}"
        );
    }
    let ack = holder
        .subscribe(
            9,
            &[("ok/fresh", SubscriptionOptions::qos(QoS::AtLeastOnce))],
        )
        .await;
    assert_eq!(
        ack.reason_codes,
        vec![ReasonCode::GRANTED_QOS_1],
        "{backend}: subscribe after the restore"
    );
    eprintln!(
        "{backend}: recovered everything {:.1?} after the restore",
        restored_at.elapsed()
    );

    running.broker.shutdown().await;
    database.close().await;
    drop(proxy);
    db.drop_now().await;
}

// ---------------------------------------------------------------------------------
// One test per database for each scenario, so a failure names its database
// ---------------------------------------------------------------------------------

macro_rules! on_databases {
    ($scenario:ident: $($db:ident => $backend:expr),* $(,)?) => {
        mod $scenario {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $db() {
                    super::$scenario($backend).await
                }
            )*
        }
    };
}

on_databases!(rule_table: sqlite => Backend::Sqlite, mariadb => Backend::MariaDb, postgres => Backend::Postgres);
on_databases!(wire_codes: sqlite => Backend::Sqlite, mariadb => Backend::MariaDb, postgres => Backend::Postgres);

async fn outage(backend: Backend) {
    database_outage(backend).await
}

// SQLite has no server to lose: the outage scenarios run on the two servers.
on_databases!(outage: mariadb => Backend::MariaDb, postgres => Backend::Postgres);

// ---------------------------------------------------------------------------------
// Bursts: many clients at once, and one question asked by many at once
// ---------------------------------------------------------------------------------

/// Clients in the burst test.
const BURST: usize = 50;

/// The built-in plugin's hook calls so far (authentication and authorization).
fn acl_sql_calls(running: &Running) -> u64 {
    let chain = running._plugins.folder.live().chain.current();
    chain.get("acl-sql").map_or(0, |p| p.stats().calls)
}

/// 50 clients connect at once to a broker on a fresh SQLite database: the first start
/// of an install (no file, no folder, a URL without `mode`, the shipped pool and
/// timeouts). Each subscribes to a topic of its own and to one they all share, and
/// publishes to its own. Every question is answered within the statement timeout (a
/// query that ran out of time, or waited past it for the pool, fails closed: a refused
/// SUBSCRIBE or PUBLISH, and a failure the database counts), and the plugin is asked
/// each question once: once per client and topic, the shared topic included (the
/// answers of different clients are never shared).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_new_clients_on_a_fresh_sqlite_database() {
    let dir = tempfile::tempdir().unwrap();
    let config = DatabaseConfig {
        url: format!("sqlite://{}/fresh/wasmq.db", dir.path().display()),
        ..DatabaseConfig::default()
    };
    let database = open_database(&config).await.unwrap().expect("a database");
    let running = start_broker(
        Some(database.clone()),
        ACL_SQL_TOML,
        AclNomatch::Deny,
        true,
        |_| {},
    )
    .await;
    let addr = running.broker.addr;
    let calls_before = acl_sql_calls(&running);
    let start = Arc::new(tokio::sync::Barrier::new(BURST));
    let clients: Vec<_> = (0..BURST)
        .map(|i| {
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                let id = format!("burst-{i}");
                let mut client = RawClient::connected(addr, Protocol::V5, &id).await;
                let own = format!("burst/{i}");
                let ack = client
                    .subscribe(
                        1,
                        &[
                            (&own, SubscriptionOptions::qos(QoS::AtLeastOnce)),
                            ("burst/all", SubscriptionOptions::qos(QoS::AtLeastOnce)),
                        ],
                    )
                    .await;
                assert_eq!(
                    ack.reason_codes,
                    vec![ReasonCode::GRANTED_QOS_1; 2],
                    "{id}: SUBSCRIBE"
                );
                let publish = publish_packet(&own, b"x", QoS::AtLeastOnce, false, 2);
                client.send(Packet::Publish(publish)).await.unwrap();
                // Its own message and the PUBACK, in either order.
                let (mut delivered, mut acked) = (false, false);
                while !(delivered && acked) {
                    match client.recv().await.unwrap() {
                        Packet::Publish(p) if p.topic == own => delivered = true,
                        Packet::PubAck(ack) if ack.packet_id == 2 => {
                            assert_eq!(ack.reason_code, ReasonCode::SUCCESS, "{id}: PUBLISH");
                            acked = true;
                        }
                        other => panic!("{id}: unexpected {other:?}"),
                    }
                }
                client
            })
        })
        .collect();
    let mut connected = Vec::new();
    for client in clients {
        connected.push(client.await.expect("a client of the burst"));
    }
    assert_eq!(database.failures(), 0, "no query failed or timed out");
    // One authentication (anonymous: the plugin ignores it) and three authorizations
    // per client, none asked twice.
    assert_eq!(acl_sql_calls(&running) - calls_before, BURST as u64 * 4);
    assert_eq!(running._plugins.policy.authz_coalesced(), 0);
    for client in connected {
        client.disconnect().await;
    }
    running.broker.shutdown().await;
    database.close().await;
}

/// Runs `futures` together on this task, polling each in turn: the first runs up to
/// its first wait before the second starts, and so on.
async fn together<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(Option::unwrap).collect()
}

/// The client a question is about, as a connection describes it to the hooks.
fn client_info(client_id: &str, port: u16) -> ClientInfo {
    ClientInfo {
        client_id: ByteString::from(client_id),
        username: None,
        peer_addr: SocketAddr::from(([127, 0, 0, 1], port)),
        protocol: Protocol::V5,
        listener: "default",
        listener_kind: wasmq::listener::ListenerKind::Tcp,
        certificate: None,
        connect_user_properties: Vec::new(),
        prepared: Default::default(),
    }
}

/// Whether `client` may publish to `ok/x`, asked of the policy as a connection asks it.
fn may_publish<'a>(
    policy: &'a PluginPolicy,
    client: &'a ClientInfo,
) -> BoxFuture<'a, Authorization> {
    policy.authorization(client, Action::Publish, "ok/x", QoS::AtMostOnce, false)
}

/// The same question asked by many at once (a flood of one client's messages while
/// the database hangs, when answers are blind and not cached) is asked of the plugin,
/// and the database, once; the others get its answer. Healthy, the same. Other clients'
/// questions, and another connection's, are their own. The count is in `$SYS`.
async fn questions_in_flight_are_asked_once(backend: Backend) {
    let db = TestDb::create(backend).await;
    let proxy = Proxy::start(server_addr(backend)).await;
    let url = format!(
        "{}/{}",
        server_base(backend).replace(&server_addr(backend), &proxy.addr.to_string()),
        db.name
    );
    let config = DatabaseConfig {
        url,
        pool_max: 2,
        statement_timeout_ms: 1000,
        connect_timeout_ms: 1000,
    };
    let database = open_database(&config).await.unwrap().expect("a database");
    db.clear().await;
    db.insert_acl(&[
        all(ALLOW, BOTH, "ok/#"),
        ip(ALLOW, "127.0.0.1", SUB, "$SYS/#"),
    ])
    .await;
    let running = start_broker(
        Some(database.clone()),
        ACL_SQL_TOML,
        AclNomatch::Deny,
        true,
        |_| {},
    )
    .await;
    let policy = &*running._plugins.policy;
    let client = client_info("flood", 40000);
    let ask = |client| may_publish(policy, client);
    const ASKERS: usize = 20;

    // A database that does not answer: the question waits for the statement timeout.
    proxy.stall();
    let calls = acl_sql_calls(&running);
    let failures = database.failures();
    let answers = together((0..ASKERS).map(|_| ask(&client)).collect()).await;
    let blind = Authorization {
        allowed: false,
        cacheable: false,
        // acl-sql's own word on an answer made while its query failed.
        cache: CacheLifetime::NONE,
    };
    assert_eq!(answers, vec![blind; ASKERS], "{backend}: during the outage");
    assert_eq!(acl_sql_calls(&running) - calls, 1, "{backend}: asked once");
    assert_eq!(
        database.failures() - failures,
        1,
        "{backend}: one failed query"
    );
    assert_eq!(policy.authz_coalesced(), ASKERS as u64 - 1);

    proxy.restore();
    let calls = acl_sql_calls(&running);
    let other = client_info("other", 40001);
    let reconnected = client_info("flood", 40002);
    let mut questions: Vec<_> = (0..ASKERS).map(|_| ask(&client)).collect();
    questions.push(ask(&other));
    questions.push(ask(&reconnected));
    let answers = together(questions).await;
    let allowed = Authorization::new(true);
    assert_eq!(
        answers,
        vec![allowed; ASKERS + 2],
        "{backend}: after the outage"
    );
    assert_eq!(
        acl_sql_calls(&running) - calls,
        3,
        "{backend}: once per client and connection"
    );
    let coalesced = 2 * (ASKERS as u64 - 1);
    assert_eq!(policy.authz_coalesced(), coalesced);

    // Where the broker's other counters are: `$SYS`.
    let mut watcher = RawClient::connected(running.broker.addr, Protocol::V5, "sys").await;
    let topic = "$SYS/broker/authorization/coalesced";
    let ack = watcher.subscribe_qos(topic, QoS::AtMostOnce).await;
    assert_eq!(ack.reason_codes, vec![ReasonCode::GRANTED_QOS_0]);
    wasmq::sys::publish_once(&running.broker.broker);
    let publish = watcher.recv_publish().await;
    assert_eq!(
        (&*publish.topic, &publish.payload[..]),
        (topic, coalesced.to_string().as_bytes())
    );

    watcher.disconnect().await;
    running.broker.shutdown().await;
    database.close().await;
    drop(proxy);
    db.drop_now().await;
}

on_databases!(questions_in_flight_are_asked_once: mariadb => Backend::MariaDb, postgres => Backend::Postgres);
