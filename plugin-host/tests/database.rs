//! The database behind the `sql` capability, against real SQLite, MariaDB and
//! PostgreSQL servers (the ones `.ci/run` starts: 127.0.0.1:3306 as root without a
//! password, 127.0.0.1:5432 as postgres with trust auth; override with
//! `WASMQ_TEST_MYSQL_URL` / `WASMQ_TEST_POSTGRES_URL`, admin URLs without a database).
//!
//! Every test makes its own database (`wasmq_test_<pid>_<n>`, dropped at the end), so
//! runs and tests never see each other's rows.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

#[path = "common/capture.rs"]
mod capture;

use capture::Captured;
use sqlx::{Connection, Executor};
use wasmq_acl_rules::schema::{self, Dialect};
use wasmq_codec::Protocol;
use wasmq_plugin_artifacts as artifacts;
use wasmq_plugin_host::database::Value;
use wasmq_plugin_host::{
    Action, Backend, ClientInfo, Database, DatabaseConfig, Decision, HostConfig, PluginConfig,
    PluginHost, QueryError,
};

const ACL_QUERY: &str = "SELECT allow, ipaddr, username, clientid, access, topic FROM mqtt_acl \
     WHERE ipaddr = ? OR username = ? OR username = '$all' OR clientid = ?";

fn admin_url(backend: Backend) -> String {
    match backend {
        Backend::MySql => std::env::var("WASMQ_TEST_MYSQL_URL")
            .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into()),
        Backend::Postgres => std::env::var("WASMQ_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
        Backend::Sqlite => unreachable!("SQLite needs no server"),
    }
}

fn config(url: String) -> DatabaseConfig {
    DatabaseConfig {
        url,
        pool_max: 4,
        statement_timeout_ms: 5000,
        connect_timeout_ms: 5000,
    }
}

/// A database of its own for one test; dropped (server) or deleted (SQLite) at the end.
struct TestDb {
    backend: Backend,
    url: String,
    name: String,
    _dir: Option<tempfile::TempDir>,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl TestDb {
    async fn create(backend: Backend) -> TestDb {
        let name = format!(
            "wasmq_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}/{name}.db?mode=rwc", dir.path().display());
                TestDb {
                    backend,
                    url,
                    name,
                    _dir: Some(dir),
                }
            }
            Backend::MySql | Backend::Postgres => {
                let admin_url = admin_url(backend);
                let admin = Database::open(&config(admin_url.clone()))
                    .await
                    .unwrap_or_else(|e| panic!("{backend} server needed by this test: {e}"));
                admin
                    .execute(&format!("CREATE DATABASE {name}"), &[])
                    .await
                    .unwrap();
                admin.close().await;
                let base = match backend {
                    Backend::Postgres => admin_url.rsplit_once('/').unwrap().0.to_string(),
                    _ => admin_url.trim_end_matches('/').to_string(),
                };
                TestDb {
                    backend,
                    url: format!("{base}/{name}"),
                    name,
                    _dir: None,
                }
            }
        }
    }

    async fn open(&self) -> Database {
        self.open_with(|_| {}).await
    }

    async fn open_with(&self, change: impl FnOnce(&mut DatabaseConfig)) -> Database {
        let mut config = config(self.url.clone());
        change(&mut config);
        Database::open(&config).await.expect("database opens")
    }

    /// Opened, with the tables and the default rules.
    async fn ready(&self) -> Database {
        let db = self.open().await;
        ensure_schema(&db).await.expect("schema");
        db
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.backend == Backend::Sqlite {
            return;
        }
        let (backend, name) = (self.backend, self.name.clone());
        // Drop runs inside the test's runtime: do the async work on a thread of its own.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let admin = Database::open(&config(admin_url(backend)))
                    .await
                    .map_err(|e| e.to_string())?;
                let sql = match backend {
                    Backend::Postgres => format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                    _ => format!("DROP DATABASE IF EXISTS {name}"),
                };
                let r = admin.execute(&sql, &[]).await;
                admin.close().await;
                r.map(|_| ()).map_err(|e| format!("{name}: {e}"))
            })
        })
        .join();
        if let Ok(Err(e)) = done {
            eprintln!("cannot drop the test database: {e}");
        }
    }
}

/// The default plugin's tables and rules, as the broker creates them at start
/// (`broker/src/plugins/acl_tables.rs`), on this database.
async fn ensure_schema(db: &Database) -> Result<schema::Report, QueryError> {
    let dialect = match db.backend() {
        Backend::Sqlite => Dialect::Sqlite,
        Backend::MySql => Dialect::MySql,
        Backend::Postgres => Dialect::Postgres,
    };
    schema::ensure(dialect, |sql| async move {
        let rows = db.execute(&sql, &[]).await?;
        Ok(match rows.first().and_then(|row| row.first()) {
            Some(Value::Integer(n)) => Some(*n),
            _ => None,
        })
    })
    .await
}

fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

fn int(i: i64) -> Value {
    Value::Integer(i)
}

/// The default rules, as `SELECT allow, ipaddr, username, clientid, access, topic`
/// returns them in id order.
fn default_rules() -> Vec<Vec<Value>> {
    vec![
        vec![
            int(1),
            Value::Null,
            text("$all"),
            Value::Null,
            int(3),
            text("#"),
        ],
        vec![
            int(1),
            text("127.0.0.1"),
            Value::Null,
            Value::Null,
            int(1),
            text("$SYS/#"),
        ],
        vec![
            int(1),
            text("::1"),
            Value::Null,
            Value::Null,
            int(1),
            text("$SYS/#"),
        ],
    ]
}

async fn acl_rows(db: &Database) -> Vec<Vec<Value>> {
    db.execute(
        "SELECT allow, ipaddr, username, clientid, access, topic FROM mqtt_acl ORDER BY id",
        &[],
    )
    .await
    .unwrap()
}

/// One `#[tokio::test]` per backend for each scenario.
macro_rules! on_every_backend {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            use super::*;
            #[tokio::test]
            async fn sqlite() {
                super::$scenario(Backend::Sqlite).await
            }
            #[tokio::test]
            async fn mariadb() {
                super::$scenario(Backend::MySql).await
            }
            #[tokio::test]
            async fn postgres() {
                super::$scenario(Backend::Postgres).await
            }
        }
    )*};
}

macro_rules! on_server_backends {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            use super::*;
            #[tokio::test]
            async fn mariadb() {
                super::$scenario(Backend::MySql).await
            }
            #[tokio::test]
            async fn postgres() {
                super::$scenario(Backend::Postgres).await
            }
        }
    )*};
}

on_every_backend!(
    schema_is_created_once_with_the_default_rules,
    an_existing_table_is_left_as_it_is,
    hostile_parameters_widen_nothing,
    columns_convert_by_type,
    bad_statements_and_parameters_are_named,
    the_plugin_reaches_only_declared_statements,
    read_only_connections_refuse_every_write,
    a_read_granted_plugin_cannot_write,
);
on_server_backends!(
    a_slow_statement_times_out,
    killed_connections_fail_one_query_then_recover,
    time_in_the_database_is_not_the_plugins,
);

async fn schema_is_created_once_with_the_default_rules(backend: Backend) {
    let t = TestDb::create(backend).await;
    let db = t.open().await;
    let report = ensure_schema(&db).await.unwrap();
    assert!(report.acl_created && report.user_created, "{report:?}");
    assert_eq!(acl_rows(&db).await, default_rules());

    // Again, on the same pool and on a new one (a broker restart): nothing changes.
    let report = ensure_schema(&db).await.unwrap();
    assert!(!report.acl_created && !report.user_created, "{report:?}");
    db.close().await;
    let db = t.open().await;
    let report = ensure_schema(&db).await.unwrap();
    assert!(!report.acl_created && !report.user_created, "{report:?}");
    assert_eq!(acl_rows(&db).await, default_rules());

    // mqtt_user has EMQX's columns, and username is unique. PostgreSQL's
    // is_superuser is a boolean, as in EMQX's schema; it reads as 1 like the others.
    let superuser = match backend {
        Backend::Postgres => "TRUE",
        _ => "1",
    };
    db.execute(
        &format!(
            "INSERT INTO mqtt_user (username, password, salt, is_superuser, created) \
             VALUES (?, ?, ?, {superuser}, CURRENT_TIMESTAMP)"
        ),
        &[text("alice"), text("5e88"), text("salt")],
    )
    .await
    .unwrap();
    let rows = db
        .execute(
            "SELECT id, username, password, salt, is_superuser, created FROM mqtt_user WHERE username = ?",
            &[text("alice")],
        )
        .await;
    // `created` is a date: not converted, and said so (SQLite keeps dates as text).
    match backend {
        Backend::Sqlite => assert!(matches!(&rows, Ok(r) if matches!(r[0][5], Value::Text(_)))),
        _ => assert!(
            matches!(&rows, Err(QueryError::InvalidStatement(m)) if m.contains("created")),
            "{rows:?}"
        ),
    }
    let rows = db
        .execute(
            "SELECT id, username, password, salt, is_superuser FROM mqtt_user WHERE username = ?",
            &[text("alice")],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert!(
        matches!(rows[0][0], Value::Integer(id) if id > 0),
        "{rows:?}"
    );
    assert_eq!(
        rows[0][1..],
        [text("alice"), text("5e88"), text("salt"), int(1)]
    );
    let again = db
        .execute(
            "INSERT INTO mqtt_user (username, password) VALUES (?, ?)",
            &[text("alice"), text("x")],
        )
        .await;
    assert!(matches!(again, Err(QueryError::Database(_))), "{again:?}");
}

async fn an_existing_table_is_left_as_it_is(backend: Backend) {
    let t = TestDb::create(backend).await;
    let db = t.ready().await;
    // The operator removes every rule: a restart must not put the defaults back.
    db.execute("DELETE FROM mqtt_acl", &[]).await.unwrap();
    db.close().await;
    let db = t.open().await;
    let report = ensure_schema(&db).await.unwrap();
    assert!(!report.acl_created, "{report:?}");
    assert!(acl_rows(&db).await.is_empty());
}

async fn hostile_parameters_widen_nothing(backend: Backend) {
    let t = TestDb::create(backend).await;
    let db = t.ready().await;
    let hostile = [
        "' OR '1'='1",
        "x' OR clientid = 'c1",
        "\" OR \"1\"=\"1",
        "\\' OR 1=1 -- ",
        "\\",
        "'; DROP TABLE mqtt_acl; --",
        "a\0b",
        "%",
        "$all' OR '1'='1",
    ];
    // A rule that a widened query would reveal, and one whose name is itself hostile.
    db.execute(
        "INSERT INTO mqtt_acl (allow, ipaddr, username, clientid, access, topic) VALUES (?, ?, ?, ?, ?, ?)",
        &[int(1), Value::Null, Value::Null, text("c1"), int(3), text("secret/#")],
    )
    .await
    .unwrap();
    db.execute(
        "INSERT INTO mqtt_acl (allow, username, access, topic) VALUES (?, ?, ?, ?)",
        &[int(0), text("' OR '1'='1"), int(2), text("literal")],
    )
    .await
    .unwrap();
    let statement = db.prepare(ACL_QUERY);
    let everyone = vec![
        int(1),
        Value::Null,
        text("$all"),
        Value::Null,
        int(3),
        text("#"),
    ];
    for value in hostile {
        for position in 0..3 {
            let mut params = vec![text("192.0.2.1"), text("nobody"), text("nobody")];
            params[position] = text(value);
            match db.query(&statement, &params).await {
                Ok(rows) => {
                    let mut expected = vec![everyone.clone()];
                    if value == "' OR '1'='1" && position == 1 {
                        // Compared as a value: it finds the row named exactly so.
                        expected.push(vec![
                            int(0),
                            Value::Null,
                            text(value),
                            Value::Null,
                            int(2),
                            text("literal"),
                        ]);
                    }
                    assert_eq!(rows, expected, "{value:?} as parameter {position}");
                }
                // PostgreSQL refuses NUL in text; refusing is not widening.
                Err(QueryError::Database(e)) if value.contains('\0') => {
                    assert_eq!(backend, Backend::Postgres, "{e}");
                }
                Err(e) => panic!("{value:?} as parameter {position}: {e}"),
            }
        }
    }
    let count = db
        .execute("SELECT COUNT(*) FROM mqtt_acl", &[])
        .await
        .unwrap();
    assert_eq!(count, vec![vec![int(5)]], "the table is intact");
}

async fn columns_convert_by_type(backend: Backend) {
    let t = TestDb::create(backend).await;
    let db = t.open().await;
    let create = match backend {
        Backend::Sqlite => {
            "CREATE TABLE t (i INTEGER, small SMALLINT, big BIGINT, r REAL, s TEXT, v VARCHAR(10), b BLOB, f BOOLEAN)"
        }
        Backend::MySql => {
            "CREATE TABLE t (i INT, small SMALLINT UNSIGNED, big BIGINT, r DOUBLE, s TEXT, v VARCHAR(10), b BLOB, f TINYINT(1))"
        }
        Backend::Postgres => {
            "CREATE TABLE t (i INTEGER, small SMALLINT, big BIGINT, r DOUBLE PRECISION, s TEXT, v VARCHAR(10), b BYTEA, f BOOLEAN)"
        }
    };
    db.execute(create, &[]).await.unwrap();
    let bool_true = match backend {
        Backend::Postgres => "TRUE",
        _ => "1",
    };
    db.execute(
        &format!("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?, {bool_true})"),
        &[
            int(-7),
            int(32000),
            int(i64::MAX),
            Value::Real(2.5),
            text("héllo 'quoted' \\ back"),
            text("short"),
            Value::Blob(vec![0, 1, 2, 255]),
        ],
    )
    .await
    .unwrap();
    db.execute(
        "INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
        &[
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
        ],
    )
    .await
    .unwrap();
    let rows = db
        .execute(
            "SELECT i, small, big, r, s, v, b, f FROM t ORDER BY i IS NULL, i",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        rows,
        vec![
            vec![
                int(-7),
                int(32000),
                int(i64::MAX),
                Value::Real(2.5),
                text("héllo 'quoted' \\ back"),
                text("short"),
                Value::Blob(vec![0, 1, 2, 255]),
                int(1),
            ],
            vec![Value::Null; 8],
        ]
    );
    // A NULL parameter compared with an integer column is no type error.
    let rows = db
        .execute(
            "SELECT COUNT(*) FROM t WHERE i = ? OR big = ?",
            &[Value::Null, int(i64::MAX)],
        )
        .await
        .unwrap();
    assert_eq!(rows, vec![vec![int(1)]]);
}

async fn bad_statements_and_parameters_are_named(backend: Backend) {
    let t = TestDb::create(backend).await;
    let db = t.ready().await;
    let statement = db.prepare(ACL_QUERY);
    assert_eq!(statement.params(), 3);
    let r = db.query(&statement, &[text("a")]).await;
    assert!(matches!(r, Err(QueryError::InvalidParams(_))), "{r:?}");
    let r = db.execute("SELEC allow FROM mqtt_acl", &[]).await;
    assert!(matches!(r, Err(QueryError::InvalidStatement(_))), "{r:?}");
    let r = db.execute("SELECT allow FROM no_such_table", &[]).await;
    assert!(matches!(r, Err(QueryError::InvalidStatement(_))), "{r:?}");
    let r = db.execute("SELECT no_such_column FROM mqtt_acl", &[]).await;
    assert!(matches!(r, Err(QueryError::InvalidStatement(_))), "{r:?}");
    // The pool is fine after all that.
    assert_eq!(
        db.execute("SELECT 1", &[]).await.unwrap(),
        vec![vec![int(1)]]
    );
}

async fn a_slow_statement_times_out(backend: Backend) {
    let t = TestDb::create(backend).await;
    let db = t.open_with(|c| c.statement_timeout_ms = 300).await;
    let sleep = match backend {
        Backend::MySql => "SELECT SLEEP(5)",
        _ => "SELECT pg_sleep(5)",
    };
    let started = Instant::now();
    let r = db.execute(sleep, &[]).await;
    assert_eq!(r, Err(QueryError::Timeout));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the timeout did not cut the wait"
    );
    assert_eq!(
        db.execute("SELECT 1", &[]).await.unwrap(),
        vec![vec![int(1)]]
    );
}

/// Kills every connection to database `name` (from an admin connection); how many.
async fn kill_connections(backend: Backend, name: &str) -> usize {
    let admin = Database::open(&config(admin_url(backend))).await.unwrap();
    let ids = match backend {
        Backend::MySql => admin
            .execute(
                "SELECT id FROM information_schema.processlist WHERE db = ? AND id <> CONNECTION_ID()",
                &[text(name)],
            )
            .await
            .unwrap(),
        _ => admin
            .execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = ? AND pid <> pg_backend_pid()",
                &[text(name)],
            )
            .await
            .unwrap(),
    };
    for id in &ids {
        let Value::Integer(id) = id[0] else {
            panic!("{ids:?}")
        };
        match backend {
            Backend::MySql => {
                admin.execute(&format!("KILL {id}"), &[]).await.unwrap();
            }
            _ => {
                admin
                    .execute(
                        "SELECT pg_terminate_backend(CAST(? AS INTEGER))",
                        &[int(id)],
                    )
                    .await
                    .unwrap();
            }
        }
    }
    admin.close().await;
    ids.len()
}

async fn killed_connections_fail_one_query_then_recover(backend: Backend) {
    let t = TestDb::create(backend).await;
    let db = Arc::new(t.ready().await);
    let statement = db.prepare(ACL_QUERY);
    let params = [text("127.0.0.1"), text("u"), text("c")];
    for _ in 0..3 {
        db.query(&statement, &params).await.unwrap();
    }
    // Idle connections killed: the pool notices before handing them out.
    assert!(kill_connections(backend, &t.name).await > 0);
    for _ in 0..3 {
        assert_eq!(db.query(&statement, &params).await.unwrap().len(), 2);
    }
    // A connection killed in the middle of a query: that query fails, the next works.
    let sleep = match backend {
        Backend::MySql => "SELECT SLEEP(3)",
        _ => "SELECT 1 FROM pg_sleep(3)",
    };
    let running = tokio::spawn({
        let db = db.clone();
        async move { db.execute(sleep, &[]).await }
    });
    // Wait until the server runs it (bounded), then kill every connection.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let probe = Database::open(&config(admin_url(backend))).await.unwrap();
        let busy = match backend {
            Backend::MySql => probe
                .execute(
                    "SELECT COUNT(*) FROM information_schema.processlist WHERE db = ? AND info LIKE 'SELECT SLEEP%'",
                    &[text(&t.name)],
                )
                .await
                .unwrap(),
            _ => probe
                .execute(
                    "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = ? AND query LIKE 'SELECT 1 FROM pg_sleep%'",
                    &[text(&t.name)],
                )
                .await
                .unwrap(),
        };
        probe.close().await;
        if busy == vec![vec![int(1)]] {
            break;
        }
        assert!(Instant::now() < deadline, "the slow query never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    kill_connections(backend, &t.name).await;
    let r = running.await.unwrap();
    assert!(matches!(r, Err(QueryError::Database(_))), "{r:?}");
    for _ in 0..3 {
        assert_eq!(db.query(&statement, &params).await.unwrap().len(), 2);
    }
}

fn client(client_id: &str) -> ClientInfo {
    ClientInfo::new(
        client_id.to_string(),
        "127.0.0.1:5000".parse().unwrap(),
        Protocol::V5,
        "tcp",
    )
}

async fn load_probe(host: &PluginHost, config: PluginConfig) -> wasmq_plugin_host::Plugin {
    let wasm = std::fs::read(artifacts::SQL_PROBE).unwrap();
    host.load_async(config, wasm)
        .await
        .expect("sql-probe loads")
}

async fn decide(plugin: &wasmq_plugin_host::Plugin, client_id: &str) -> Decision {
    plugin
        .authorize(&client(client_id), Action::Publish, "t", 0, false)
        .await
        .expect("no fault")
}

/// The WIT path end to end: the `sql-probe` fixture asks `acl_by_client` for rows
/// about the client (rows: allow; none or an error: ignore).
async fn the_plugin_reaches_only_declared_statements(backend: Backend) {
    let t = TestDb::create(backend).await;
    let db = Arc::new(t.ready().await);
    db.execute(
        "INSERT INTO mqtt_acl (allow, clientid, access, topic) VALUES (1, ?, 3, 't')",
        &[text("c1")],
    )
    .await
    .unwrap();
    let host = PluginHost::new(HostConfig {
        database: Some(db.clone()),
        instances_max: 8,
        ..HostConfig::default()
    })
    .unwrap();
    let declared = || {
        PluginConfig::new("probe").sql_statement(
            "acl_by_client",
            "SELECT id, allow, topic FROM mqtt_acl WHERE clientid = ?",
        )
    };
    let probe = load_probe(&host, declared()).await;
    assert_eq!(decide(&probe, "c1").await, Decision::Allow);
    assert_eq!(decide(&probe, "c2").await, Decision::Ignore);
    for hostile in ["' OR '1'='1", "c2' OR clientid = 'c1", "c1' -- ", "c1\\"] {
        assert_eq!(
            decide(&probe, hostile).await,
            Decision::Ignore,
            "{hostile:?}"
        );
    }
    assert_eq!(probe.stats().faults, 0);
    // Declared under another name: the plugin's name finds nothing.
    let other = PluginConfig::new("probe").sql_statement(
        "something_else",
        "SELECT id FROM mqtt_acl WHERE clientid = ?",
    );
    assert_eq!(
        decide(&load_probe(&host, other).await, "c1").await,
        Decision::Ignore
    );
    // Granted, but the host has no database: refused at call time, no fault.
    let no_db = PluginHost::new(HostConfig {
        instances_max: 4,
        ..HostConfig::default()
    })
    .unwrap();
    assert_eq!(
        decide(&load_probe(&no_db, declared()).await, "c1").await,
        Decision::Ignore
    );
}

/// The read-only pool: reads work, every kind of write is refused by the database with
/// `ReadOnly`, and the table is as it was; a statement that turns the connection's
/// read-only setting off does not open the way for the next statement.
async fn read_only_connections_refuse_every_write(backend: Backend) {
    let t = TestDb::create(backend).await;
    // One connection each: the statement after the one that turns the setting off
    // would get that same connection, if it were kept.
    let db = t.open_with(|c| c.pool_max = 1).await;
    ensure_schema(&db).await.unwrap();
    let read = |sql: &str| db.prepare(sql);
    let rows = db
        .query_read_only(&read("SELECT COUNT(*) FROM mqtt_acl"), &[])
        .await
        .unwrap();
    assert_eq!(rows, vec![vec![int(3)]], "reads work");
    let writes = [
        "INSERT INTO mqtt_acl (allow, clientid, access, topic) VALUES (1, 'x', 3, 'x')",
        "UPDATE mqtt_acl SET topic = 'x'",
        "DELETE FROM mqtt_acl",
        "DROP TABLE mqtt_acl",
        "CREATE TABLE stolen (id INTEGER)",
    ];
    for write in writes {
        let r = db.query_read_only(&read(write), &[]).await;
        assert!(matches!(r, Err(QueryError::ReadOnly(_))), "{write}: {r:?}");
    }
    let unlock = match backend {
        Backend::Sqlite => "PRAGMA query_only = OFF",
        Backend::MySql => "SET SESSION TRANSACTION READ WRITE",
        Backend::Postgres => "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
    };
    let r = db.query_read_only(&read(unlock), &[]).await;
    assert!(r.is_ok(), "{unlock}: {r:?}");
    for write in writes {
        let r = db.query_read_only(&read(write), &[]).await;
        assert!(
            matches!(r, Err(QueryError::ReadOnly(_))),
            "after {unlock:?}, {write}: {r:?}"
        );
    }
    assert_eq!(
        acl_rows(&db).await,
        default_rules(),
        "the table is unchanged"
    );
    // The broker's own connections still write.
    db.execute(writes[0], &[]).await.unwrap();
    assert_eq!(acl_rows(&db).await.len(), 4);
}

/// The WIT path: `sql-probe` runs a declared INSERT ... RETURNING (rows: allow). With
/// `sql = "read"` the database refuses it (the plugin gets an error, ignores) and the
/// table is unchanged; read-write, the same plugin and statement insert.
async fn a_read_granted_plugin_cannot_write(backend: Backend) {
    let t = TestDb::create(backend).await;
    let db = Arc::new(t.ready().await);
    let host = PluginHost::new(HostConfig {
        database: Some(db.clone()),
        instances_max: 8,
        ..HostConfig::default()
    })
    .unwrap();
    let insert = "INSERT INTO mqtt_acl (allow, clientid, access, topic) VALUES (1, ?, 3, 'w') \
                  RETURNING id";
    let read_only = PluginConfig::new("probe")
        .sql_read_only()
        .sql_statement("acl_by_client", insert);
    assert_eq!(read_only.grant_sql, wasmq_plugin_host::SqlGrant::Read);
    let probe = load_probe(&host, read_only).await;
    let (captured, guard) = Captured::install();
    assert_eq!(decide(&probe, "c1").await, Decision::Ignore, "refused");
    drop(guard);
    // The plugin was told `not-granted` (sql-probe logs it as such), the log says why.
    let log = captured.text();
    assert!(log.contains("sql refused: not granted"), "{log}");
    assert!(
        log.contains("sql write refused: the plugin's grant is read-only"),
        "{log}"
    );
    assert_eq!(
        probe.stats().faults,
        0,
        "an error for the plugin, not a fault"
    );
    assert_eq!(
        acl_rows(&db).await,
        default_rules(),
        "the table is unchanged"
    );

    let read_write = PluginConfig::new("probe").sql_statement("acl_by_client", insert);
    let probe = load_probe(&host, read_write).await;
    assert_eq!(decide(&probe, "c1").await, Decision::Allow, "inserted");
    assert_eq!(acl_rows(&db).await.len(), 4);
}

/// A query slower than the plugin's own call limit: the time spent in the database
/// (bounded by the statement timeout) is not counted against the plugin.
async fn time_in_the_database_is_not_the_plugins(backend: Backend) {
    let t = TestDb::create(backend).await;
    let db = Arc::new(t.ready().await);
    db.execute(
        "INSERT INTO mqtt_acl (allow, clientid, access, topic) VALUES (1, ?, 3, 't')",
        &[text("c1")],
    )
    .await
    .unwrap();
    let host = PluginHost::new(HostConfig {
        database: Some(db.clone()),
        instances_max: 4,
        ..HostConfig::default()
    })
    .unwrap();
    let slow = match backend {
        Backend::MySql => "SELECT id FROM mqtt_acl WHERE clientid = ? AND SLEEP(0.4) = 0",
        _ => "SELECT id FROM mqtt_acl, pg_sleep(0.4) WHERE clientid = ?",
    };
    let mut config = PluginConfig::new("probe").sql_statement("acl_by_client", slow);
    config.limits.call_timeout_ms = 100;
    let plugin = load_probe(&host, config).await;
    let decision = plugin
        .authorize(&client("c1"), Action::Publish, "t", 0, false)
        .await;
    assert_eq!(decision, Ok(Decision::Allow));
    assert_eq!(plugin.stats().timeouts, 0);
}

/// An in-memory SQLite database: the read-only pool reaches the same database.
#[tokio::test]
async fn an_in_memory_sqlite_database_is_read_through_the_read_only_pool_too() {
    let db = Database::open(&config("sqlite::memory:".into()))
        .await
        .unwrap();
    ensure_schema(&db).await.unwrap();
    let count = db.prepare("SELECT COUNT(*) FROM mqtt_acl");
    assert_eq!(
        db.query_read_only(&count, &[]).await.unwrap(),
        vec![vec![int(3)]]
    );
    let delete = db.prepare("DELETE FROM mqtt_acl");
    let r = db.query_read_only(&delete, &[]).await;
    assert!(matches!(r, Err(QueryError::ReadOnly(_))), "{r:?}");
}

/// `sqlite:///PATH` with no `mode` (what sqlx and EMQX users write): the file and its
/// folders are created, as for the default's `mode=rwc`, and the file is in WAL mode.
#[tokio::test]
async fn an_sqlite_url_without_a_mode_creates_the_file_and_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("srv/wasmq/acl.db");
    let url = format!("sqlite://{}", file.display());
    assert!(url.starts_with("sqlite:///"), "{url}");
    let db = Database::open(&config(url.clone()))
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    assert!(file.is_file(), "{} was not created", file.display());
    ensure_schema(&db).await.unwrap();
    assert_eq!(
        db.execute("PRAGMA journal_mode", &[]).await.unwrap(),
        vec![vec![text("wal")]]
    );
    db.close().await;
    // Opened again, it is the same file, rules kept.
    let again = Database::open(&config(url)).await.unwrap();
    assert!(!ensure_schema(&again).await.unwrap().acl_created);
    assert_eq!(acl_rows(&again).await, default_rules());
}

/// `mode=rw` and `mode=ro` mean "the file must exist": nothing is created, and the
/// error names the file and what the URL asked.
#[tokio::test]
async fn an_sqlite_url_with_mode_rw_or_ro_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for (mode, said) in [("rw", "mode=rw"), ("ro", "mode=ro")] {
        let file = dir.path().join(format!("missing/{mode}.db"));
        let url = format!("sqlite://{}?mode={mode}", file.display());
        let e = Database::open(&config(url))
            .await
            .expect_err("a missing file is not created")
            .to_string();
        assert!(
            e.contains(&file.display().to_string()) && e.contains(said) && e.contains("must exist"),
            "{e}"
        );
        assert!(!file.exists() && !file.parent().unwrap().exists());
    }
}

/// WAL: a writer holding the file (another process's `wasmq acl add`, a migration) does
/// not make authorization queries wait. In the rollback journal the broker used before,
/// this query waited for the busy timeout and failed.
#[tokio::test]
async fn an_sqlite_writer_does_not_block_readers() {
    let t = TestDb::create(Backend::Sqlite).await;
    let db = t.ready().await;
    let mut writer = sqlx::SqliteConnection::connect(&t.url).await.unwrap();
    writer.execute("BEGIN EXCLUSIVE").await.unwrap();
    writer
        .execute("INSERT INTO mqtt_acl (allow, clientid, access, topic) VALUES (0, 'w', 3, '#')")
        .await
        .unwrap();
    // What was committed, at once (not `database is locked` after the busy timeout).
    assert_eq!(acl_rows(&db).await, default_rules());
    writer.execute("COMMIT").await.unwrap();
    assert_eq!(acl_rows(&db).await.len(), 4);
}
