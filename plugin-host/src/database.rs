//! [`Database`]: the broker's one database (SQLite, MySQL/MariaDB or PostgreSQL, chosen
//! by the URL's scheme), reached by plugins only through the `sql` capability.
//!
//! - A bounded pool (`pool_max`); a connection is pinged before it is handed out, so
//!   connections the server dropped (a restart, `pg_terminate_backend`, `KILL`) are
//!   replaced without anyone noticing, and a query that was running when its
//!   connection died fails with [`QueryError::Database`] while the next one works.
//! - A statement timeout: a tokio timeout around every query
//!   ([`QueryError::Timeout`]), backed by the server's own where that is cheap
//!   (PostgreSQL `statement_timeout`, MariaDB `max_statement_time`, SQLite's busy
//!   timeout) so the server stops working on a query nobody waits for.
//! - Statements are declared once ([`Database::prepare`]: `?` placeholders counted,
//!   rewritten to `$1..$n` for PostgreSQL) and run with bound parameters only.
//! - Result columns become [`Value`]s by their type: integers (booleans as 0/1),
//!   reals, text, bytes, NULL. Other types (dates, decimals, JSON) are refused with
//!   a message saying to cast them in the statement.
//! - SQLite: the file (and its folder) is created when missing unless the URL says
//!   `mode=ro` or `mode=rw`, and it is put in WAL mode, where readers never wait for a
//!   writer (a rule edit while the broker checks rules) nor a writer for readers.
//! - A second pool, read-only, for plugins granted `sql = "read"`
//!   ([`Database::query_read_only`]): its connections are read-only by the database's
//!   own means, set when they are made (SQLite: opened read-only, `PRAGMA query_only`;
//!   PostgreSQL: `default_transaction_read_only`; MySQL/MariaDB: `SET SESSION
//!   TRANSACTION READ ONLY`), and checked again each time one is handed out, so a
//!   statement that turns the setting off gets its connection closed instead of reused.
//!   A write on it fails with [`QueryError::ReadOnly`]. It connects on first use.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::mysql::{MySql, MySqlColumn, MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlRow};
use sqlx::postgres::{
    PgColumn, PgConnectOptions, PgPool, PgPoolOptions, PgRow, PgTypeInfo, Postgres,
};
use sqlx::sqlite::{
    SqliteColumn, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Column, Executor, Row, TypeInfo, ValueRef};

use crate::histogram::{HistogramSnapshot, LatencyHistogram};

/// How to reach the database.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` (created when missing), `mysql://USER:PASSWORD@HOST:PORT/DB` or
    /// `postgres://USER:PASSWORD@HOST:PORT/DB`.
    pub url: String,
    /// Connections kept open at most; queries beyond wait for one (up to
    /// `connect_timeout_ms`).
    pub pool_max: u32,
    /// The longest one query may run before it fails with `timeout`.
    pub statement_timeout_ms: u64,
    /// The longest to wait for a connection (a new one, or a free one from the pool).
    pub connect_timeout_ms: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "sqlite://./.wasmq/wasmq.db?mode=rwc".into(),
            pool_max: 8,
            statement_timeout_ms: 2000,
            connect_timeout_ms: 5000,
        }
    }
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redact(&self.url))
            .field("pool_max", &self.pool_max)
            .field("statement_timeout_ms", &self.statement_timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .finish()
    }
}

/// Which kind of database a URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `sqlite:` (the embedded default).
    Sqlite,
    /// `mysql:` or `mariadb:`.
    MySql,
    /// `postgres:` or `postgresql:`.
    Postgres,
}

impl Backend {
    /// The backend of `url`, by its scheme.
    pub fn of_url(url: &str) -> Option<Backend> {
        let scheme = url.split_once(':')?.0.to_ascii_lowercase();
        match scheme.as_str() {
            "sqlite" => Some(Backend::Sqlite),
            "mysql" | "mariadb" => Some(Backend::MySql),
            "postgres" | "postgresql" => Some(Backend::Postgres),
            _ => None,
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "sqlite",
            Backend::MySql => "mysql",
            Backend::Postgres => "postgres",
        })
    }
}

/// A value bound to a parameter or read from a column (the `sql-value` of the contract).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// An integer (booleans read as 0 and 1).
    Integer(i64),
    /// A floating-point number.
    Real(f64),
    /// Text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

/// Why a query failed (the `sql-error` of the contract, minus `not-granted`, which
/// is the caller's business).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum QueryError {
    /// The statement is not declared, or the database refused it (syntax, unknown
    /// table or column, a column type that cannot be converted).
    #[error("invalid statement: {0}")]
    InvalidStatement(String),
    /// The parameters do not match the statement.
    #[error("invalid parameters: {0}")]
    InvalidParams(String),
    /// The database could not be reached, or failed while running the query.
    #[error("database: {0}")]
    Database(String),
    /// The query ran past the statement timeout.
    #[error("statement timeout")]
    Timeout,
    /// The query tried to write on a read-only connection ([`Database::query_read_only`]):
    /// the database's own refusal.
    #[error("refused a write on a read-only connection: {0}")]
    ReadOnly(String),
}

/// The database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The URL's scheme is none of `sqlite:`, `mysql:`, `postgres:`.
    #[error("database url {0}: the scheme must be sqlite:, mysql: or postgres:")]
    Scheme(String),
    /// The URL could not be parsed.
    #[error("database url {0}: {1}")]
    Url(String, String),
    /// The SQLite file's folder could not be created.
    #[error("cannot create the folder of {0}: {1}")]
    Folder(String, std::io::Error),
    /// The SQLite file could not be opened (or created, when that was asked).
    #[error("cannot open the SQLite file {path} ({access}; from {url}): {reason}")]
    SqliteFile {
        /// The URL, redacted.
        url: String,
        /// The file, as SQLite was given it.
        path: String,
        /// What was tried, as the URL asked it ([`SqliteAccess`]).
        access: SqliteAccess,
        /// SQLite's own message.
        reason: String,
    },
    /// The first connection failed.
    #[error("cannot connect to {0}: {1}")]
    Connect(String, String),
}

/// A statement declared by the operator, ready to run: its text in the backend's
/// placeholder syntax and how many parameters it takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    sql: Arc<str>,
    params: usize,
}

impl Statement {
    /// The text sent to the database.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// The number of parameters it takes.
    pub fn params(&self) -> usize {
        self.params
    }
}

/// Binds every parameter to a query of a backend whose NULL can be a typed one.
macro_rules! bind_all {
    ($query:expr, $params:expr) => {{
        let mut query = $query;
        for p in $params {
            query = match p {
                Value::Null => query.bind(None::<String>),
                Value::Integer(i) => query.bind(*i),
                Value::Real(r) => query.bind(*r),
                Value::Text(s) => query.bind(s.clone()),
                Value::Blob(b) => query.bind(b.clone()),
            };
        }
        query
    }};
}

/// How an `sqlite:` URL asks for its file: sqlx's `mode` parameter, with Wasmq's
/// default when there is none (create it: the file is the embedded default's, and a new
/// install has none yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SqliteAccess {
    /// No `mode`, or `mode=rwc`: read-write, created (with its folder) when missing.
    CreateIfMissing,
    /// `mode=rw`: read-write, the file must exist.
    MustExist,
    /// `mode=ro`: read-only, the file must exist.
    ReadOnly,
    /// `sqlite::memory:` or `mode=memory`: no file.
    Memory,
}

impl SqliteAccess {
    /// What `url` asks for (an unknown `mode` is left to sqlx to refuse).
    pub fn of_url(url: &str) -> SqliteAccess {
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        let mode = query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find_map(|(key, value)| (key == "mode").then_some(value));
        match mode {
            Some("memory") => SqliteAccess::Memory,
            _ if path.ends_with(":memory:") => SqliteAccess::Memory,
            Some("ro") => SqliteAccess::ReadOnly,
            Some("rw") => SqliteAccess::MustExist,
            _ => SqliteAccess::CreateIfMissing,
        }
    }

    /// Whether the broker writes to a file (WAL applies; journal modes are the file's).
    fn writes_file(self) -> bool {
        matches!(
            self,
            SqliteAccess::CreateIfMissing | SqliteAccess::MustExist
        )
    }
}

impl fmt::Display for SqliteAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SqliteAccess::CreateIfMissing => "read-write, created with its folder when missing",
            SqliteAccess::MustExist => "mode=rw: read-write, the file must exist",
            SqliteAccess::ReadOnly => "mode=ro: read-only, the file must exist",
            SqliteAccess::Memory => "in memory",
        })
    }
}

enum Pool {
    Sqlite(SqlitePool),
    MySql(MySqlPool),
    Postgres(PgPool),
}

/// The broker's database: a pool, a statement timeout, bound parameters only.
pub struct Database {
    pool: Pool,
    /// The same database through read-only connections, for plugins granted only reads:
    /// the database refuses their writes, whatever the statement says.
    read_pool: Pool,
    backend: Backend,
    statement_timeout: Duration,
    /// The URL without its password, for logs.
    name: String,
    /// Queries that failed since the pool opened: a decision
    /// made while this moved was made blind, and the broker does not cache it.
    failures: AtomicU64,
    /// How long queries took, failed ones included.
    latency: LatencyHistogram,
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Database")
            .field("url", &self.name)
            .field("statement_timeout", &self.statement_timeout)
            .finish()
    }
}

impl Database {
    /// Opens a pool on `config.url` and makes the first connection (so a wrong URL or
    /// password is reported at start). For SQLite, creates the file and its folder
    /// unless the URL says `mode=ro` or `mode=rw` ([`SqliteAccess`]), and uses WAL.
    pub async fn open(config: &DatabaseConfig) -> Result<Database, OpenError> {
        let name = redact(&config.url);
        let backend =
            Backend::of_url(&config.url).ok_or_else(|| OpenError::Scheme(name.clone()))?;
        let statement_timeout = Duration::from_millis(config.statement_timeout_ms.max(1));
        let acquire_timeout = Duration::from_millis(config.connect_timeout_ms.max(1));
        let pool_max = config.pool_max.max(1);
        let url_err = |e: sqlx::Error| OpenError::Url(name.clone(), e.to_string());
        let connect_err = |e: sqlx::Error| OpenError::Connect(name.clone(), e.to_string());
        // The server's own timeout is a backstop, a little later than ours: ours
        // fires first and says `timeout`, the server's stops the work.
        let server_timeout_ms = config.statement_timeout_ms.saturating_add(500);
        let (pool, read_pool) = match backend {
            Backend::Sqlite => {
                let access = SqliteAccess::of_url(&config.url);
                let base = SqliteConnectOptions::from_str(&config.url)
                    .map_err(url_err)?
                    .busy_timeout(Duration::from_millis(server_timeout_ms));
                // Cloned before the journal mode is set (a read-only connection cannot
                // set one); an in-memory database keeps its shared name in the clone.
                // Opened read-only, a connection cannot write whatever it runs (not even
                // `PRAGMA query_only = OFF` helps); query_only also covers temp tables.
                let read_options = base.clone().read_only(true).pragma("query_only", "ON");
                let mut options = base.create_if_missing(access == SqliteAccess::CreateIfMissing);
                if access.writes_file() {
                    // WAL: readers and the one writer never block each other, so a rule
                    // edit never stalls authorization queries. NORMAL is durable in WAL
                    // (a power cut may lose the last commits, never corrupt the file).
                    options = options
                        .journal_mode(SqliteJournalMode::Wal)
                        .synchronous(SqliteSynchronous::Normal);
                    if let Some(folder) = options.get_filename().parent()
                        && !folder.as_os_str().is_empty()
                        && access == SqliteAccess::CreateIfMissing
                    {
                        std::fs::create_dir_all(folder)
                            .map_err(|e| OpenError::Folder(name.clone(), e))?;
                    }
                }
                let path = options.get_filename().display().to_string();
                let pool = SqlitePoolOptions::new()
                    .max_connections(pool_max)
                    .acquire_timeout(acquire_timeout)
                    .connect_with(options)
                    .await
                    .map_err(|e| OpenError::SqliteFile {
                        url: name.clone(),
                        path,
                        access,
                        reason: e.to_string(),
                    })?;
                let read_pool = SqlitePoolOptions::new()
                    .max_connections(pool_max)
                    .acquire_timeout(acquire_timeout)
                    .connect_lazy_with(read_options);
                (Pool::Sqlite(pool), Pool::Sqlite(read_pool))
            }
            Backend::MySql => {
                let options = MySqlConnectOptions::from_str(&config.url).map_err(url_err)?;
                let seconds = format!("{:.3}", server_timeout_ms as f64 / 1000.0);
                let set_timeout = move || format!("SET SESSION max_statement_time = {seconds}");
                let read_set_timeout = set_timeout.clone();
                let pool = MySqlPoolOptions::new()
                    .max_connections(pool_max)
                    .acquire_timeout(acquire_timeout)
                    .after_connect(move |conn, _| {
                        let set = set_timeout();
                        Box::pin(async move {
                            // MariaDB only; MySQL has no such variable (and no cheap
                            // equivalent for every statement), so a refusal is fine.
                            let _ = conn.execute(AssertSqlSafe(set)).await;
                            Ok(())
                        })
                    })
                    .connect_with(options.clone())
                    .await
                    .map_err(connect_err)?;
                let read_pool = MySqlPoolOptions::new()
                    .max_connections(pool_max)
                    .acquire_timeout(acquire_timeout)
                    .after_connect(move |conn, _| {
                        let set = read_set_timeout();
                        Box::pin(async move {
                            let _ = conn.execute(AssertSqlSafe(set)).await;
                            // Not optional: a connection that cannot be made read-only
                            // is not handed out.
                            conn.execute("SET SESSION TRANSACTION READ ONLY").await?;
                            Ok(())
                        })
                    })
                    // The check replaces the ping (one round trip either way).
                    .test_before_acquire(false)
                    .before_acquire(|conn, _| {
                        Box::pin(async move {
                            // `tx_read_only`: MariaDB and MySQL 5.7; MySQL 8 renamed it.
                            let row =
                                match sqlx::query_scalar::<_, i64>("SELECT @@session.tx_read_only")
                                    .fetch_one(&mut *conn)
                                    .await
                                {
                                    Ok(row) => row,
                                    Err(_) => {
                                        sqlx::query_scalar("SELECT @@session.transaction_read_only")
                                            .fetch_one(&mut *conn)
                                            .await?
                                    }
                                };
                            Ok(row == 1)
                        })
                    })
                    .connect_lazy_with(options);
                (Pool::MySql(pool), Pool::MySql(read_pool))
            }
            Backend::Postgres => {
                let options = PgConnectOptions::from_str(&config.url)
                    .map_err(url_err)?
                    .options([("statement_timeout", format!("{server_timeout_ms}ms"))]);
                let pool = PgPoolOptions::new()
                    .max_connections(pool_max)
                    .acquire_timeout(acquire_timeout)
                    .connect_with(options.clone())
                    .await
                    .map_err(connect_err)?;
                let read_options = options.options([("default_transaction_read_only", "on")]);
                let read_pool = PgPoolOptions::new()
                    .max_connections(pool_max)
                    .acquire_timeout(acquire_timeout)
                    // The check replaces the ping (one round trip either way): a
                    // statement that ran `SET default_transaction_read_only = off` (or
                    // `SET SESSION CHARACTERISTICS ...`) leaves a connection that is closed.
                    .test_before_acquire(false)
                    .before_acquire(|conn, _| {
                        Box::pin(async move {
                            let setting: String = sqlx::query_scalar(
                                "SELECT current_setting('default_transaction_read_only')",
                            )
                            .fetch_one(&mut *conn)
                            .await?;
                            Ok(setting == "on")
                        })
                    })
                    .connect_lazy_with(read_options);
                (Pool::Postgres(pool), Pool::Postgres(read_pool))
            }
        };
        tracing::info!(database = name, %backend, pool_max, "database opened");
        Ok(Database {
            pool,
            read_pool,
            backend,
            statement_timeout,
            name,
            failures: AtomicU64::new(0),
            latency: LatencyHistogram::default(),
        })
    }

    /// Which kind of database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL without its password.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Declares `sql` (with `?` placeholders): counts its parameters and rewrites the
    /// placeholders for PostgreSQL. `?` inside quotes or comments is not a placeholder.
    pub fn prepare(&self, sql: &str) -> Statement {
        let (sql, params) = placeholders(sql, self.backend == Backend::Postgres);
        Statement {
            sql: Arc::from(sql),
            params,
        }
    }

    /// Runs `statement` with `params` bound, in order, and returns its rows.
    pub async fn query(
        &self,
        statement: &Statement,
        params: &[Value],
    ) -> Result<Vec<Vec<Value>>, QueryError> {
        self.run(&self.pool, statement, params).await
    }

    /// [`Database::query`] on a read-only connection: a statement that writes (INSERT,
    /// UPDATE, DELETE, DDL) is refused by the database, with [`QueryError::ReadOnly`].
    pub async fn query_read_only(
        &self,
        statement: &Statement,
        params: &[Value],
    ) -> Result<Vec<Vec<Value>>, QueryError> {
        self.run(&self.read_pool, statement, params).await
    }

    async fn run(
        &self,
        pool: &Pool,
        statement: &Statement,
        params: &[Value],
    ) -> Result<Vec<Vec<Value>>, QueryError> {
        if params.len() != statement.params {
            return Err(QueryError::InvalidParams(format!(
                "the statement takes {} parameter(s), {} given",
                statement.params,
                params.len()
            )));
        }
        let sql = AssertSqlSafe(statement.sql.clone());
        let run = async {
            match pool {
                Pool::Sqlite(pool) => {
                    let rows = bind_all!(sqlx::query::<sqlx::Sqlite>(sql), params)
                        .fetch_all(pool)
                        .await
                        .map_err(|e| query_error(e, self.backend))?;
                    rows.iter().map(sqlite_row).collect()
                }
                Pool::MySql(pool) => {
                    let rows = bind_all!(sqlx::query::<MySql>(sql), params)
                        .fetch_all(pool)
                        .await
                        .map_err(|e| query_error(e, self.backend))?;
                    rows.iter().map(mysql_row).collect()
                }
                Pool::Postgres(pool) => {
                    let mut query = sqlx::query::<Postgres>(sql);
                    for p in params {
                        query = match p {
                            // An untyped NULL: the server infers its type from the
                            // statement, so `intcol = ?` with NULL is not a type error.
                            Value::Null => query.bind(PgUntypedNull),
                            Value::Integer(i) => query.bind(*i),
                            Value::Real(r) => query.bind(*r),
                            Value::Text(s) => query.bind(s.clone()),
                            Value::Blob(b) => query.bind(b.clone()),
                        };
                    }
                    let rows = query
                        .fetch_all(pool)
                        .await
                        .map_err(|e| query_error(e, self.backend))?;
                    rows.iter().map(pg_row).collect()
                }
            }
        };
        let started = Instant::now();
        let result = match tokio::time::timeout(self.statement_timeout, run).await {
            Ok(result) => result,
            Err(_) => Err(QueryError::Timeout),
        };
        self.latency.observe(started.elapsed());
        if result.is_err() {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Queries that failed so far (any error: unreachable, timeout, refused statement).
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// How long queries took since the pool opened (failed ones included).
    pub fn latency(&self) -> HistogramSnapshot {
        self.latency.snapshot()
    }

    /// Runs `sql` (with `?` placeholders) once with `params`; for the broker's own
    /// statements (the default plugin's tables, `wasmq user|acl`), not for plugins.
    pub async fn execute(
        &self,
        sql: &str,
        params: &[Value],
    ) -> Result<Vec<Vec<Value>>, QueryError> {
        self.query(&self.prepare(sql), params).await
    }

    /// Closes every connection; queries after this fail.
    pub async fn close(&self) {
        for pool in [&self.pool, &self.read_pool] {
            match pool {
                Pool::Sqlite(pool) => pool.close().await,
                Pool::MySql(pool) => pool.close().await,
                Pool::Postgres(pool) => pool.close().await,
            }
        }
    }
}

/// A NULL parameter of no declared type (OID 0: the server infers it).
struct PgUntypedNull;

impl sqlx::Type<Postgres> for PgUntypedNull {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(sqlx::postgres::types::Oid(0))
    }
}

impl sqlx::Encode<'_, Postgres> for PgUntypedNull {
    fn encode_by_ref(
        &self,
        _buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        Ok(sqlx::encode::IsNull::Yes)
    }
}

/// Sorts a driver error into the contract's kinds. Errors the statement itself
/// causes (syntax, unknown table or column) are `invalid-statement`; a timeout the
/// server enforced is `timeout`; everything else (connection lost, server shutting
/// down, pool exhausted) is `database`.
fn query_error(e: sqlx::Error, backend: Backend) -> QueryError {
    if let sqlx::Error::Database(db) = &e {
        let code = db.code().unwrap_or(Cow::Borrowed(""));
        let message = db.message().to_string();
        // 25006 read_only_sql_transaction (PostgreSQL; MariaDB's 1792 has the same
        // SQLSTATE); SQLITE_READONLY (8) and its extended codes (8 + n * 256).
        let read_only = match backend {
            Backend::Postgres | Backend::MySql => code == "25006",
            Backend::Sqlite => code.parse::<u32>().is_ok_and(|c| c & 0xff == 8),
        };
        if read_only {
            return QueryError::ReadOnly(message);
        }
        match backend {
            // 57014 query_canceled (statement_timeout); class 42: syntax error or
            // access rule violation (undefined table/column, wrong types).
            Backend::Postgres if code == "57014" => return QueryError::Timeout,
            Backend::Postgres if code.starts_with("42") => {
                return QueryError::InvalidStatement(message);
            }
            // 1969 ER_STATEMENT_TIMEOUT (MariaDB), 3024 (MySQL); 1064 parse error,
            // 1054 unknown column, 1146 no such table, 1149 syntax.
            Backend::MySql if code == "70100" || message.contains("max_statement_time") => {
                return QueryError::Timeout;
            }
            Backend::MySql if matches!(&*code, "42000" | "42S02" | "42S22") => {
                return QueryError::InvalidStatement(message);
            }
            Backend::Sqlite
                if message.contains("syntax error")
                    || message.starts_with("no such table")
                    || message.starts_with("no such column") =>
            {
                return QueryError::InvalidStatement(message);
            }
            _ => {}
        }
        return QueryError::Database(message);
    }
    QueryError::Database(e.to_string())
}

fn unconvertible(index: usize, name: &str, ty: &str) -> QueryError {
    QueryError::InvalidStatement(format!(
        "column {index} ({name}) has type {ty}, which the sql capability does not convert; \
         cast it to text or a number in the statement"
    ))
}

fn decode_err(index: usize, e: sqlx::Error) -> QueryError {
    QueryError::Database(format!("column {index}: {e}"))
}

/// How one backend turns a non-NULL column of a row into a [`Value`].
type ColumnValue<R> =
    fn(&R, usize, &<<R as Row>::Database as sqlx::Database>::Column) -> Result<Value, QueryError>;

/// One row's values: NULL for a NULL column, else what `value` makes of the column
/// (each backend maps its own column types; see [`sqlite_value`] and its siblings).
fn row_values<R: Row>(row: &R, value: ColumnValue<R>) -> Result<Vec<Value>, QueryError>
where
    usize: sqlx::ColumnIndex<R>,
{
    let mut values = Vec::with_capacity(row.columns().len());
    for (i, column) in row.columns().iter().enumerate() {
        let raw = row.try_get_raw(i).map_err(|e| decode_err(i, e))?;
        values.push(if raw.is_null() {
            Value::Null
        } else {
            value(row, i, column)?
        });
    }
    Ok(values)
}

fn sqlite_row(row: &SqliteRow) -> Result<Vec<Value>, QueryError> {
    row_values(row, sqlite_value)
}

fn sqlite_value(row: &SqliteRow, i: usize, column: &SqliteColumn) -> Result<Value, QueryError> {
    let raw = row.try_get_raw(i).map_err(|e| decode_err(i, e))?;
    // SQLite is dynamically typed: the value's storage class decides, not the
    // column's declared type.
    let class = raw.type_info().name().to_string();
    let get_err = |e| decode_err(i, e);
    Ok(match class.as_str() {
        "INTEGER" | "BOOLEAN" => Value::Integer(row.try_get_unchecked(i).map_err(get_err)?),
        "REAL" => Value::Real(row.try_get_unchecked(i).map_err(get_err)?),
        "TEXT" => Value::Text(row.try_get_unchecked(i).map_err(get_err)?),
        "BLOB" => Value::Blob(row.try_get_unchecked(i).map_err(get_err)?),
        other => return Err(unconvertible(i, column.name(), other)),
    })
}

fn mysql_row(row: &MySqlRow) -> Result<Vec<Value>, QueryError> {
    row_values(row, mysql_value)
}

fn mysql_value(row: &MySqlRow, i: usize, column: &MySqlColumn) -> Result<Value, QueryError> {
    let get_err = |e| decode_err(i, e);
    Ok(match column.type_info().name() {
        "BOOLEAN" | "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" | "YEAR" => {
            Value::Integer(row.try_get_unchecked(i).map_err(get_err)?)
        }
        "TINYINT UNSIGNED" | "SMALLINT UNSIGNED" | "MEDIUMINT UNSIGNED" | "INT UNSIGNED"
        | "BIGINT UNSIGNED" => {
            let n: u64 = row.try_get_unchecked(i).map_err(get_err)?;
            Value::Integer(i64::try_from(n).map_err(|_| {
                QueryError::Database(format!(
                    "column {i}: {n} does not fit a signed 64-bit integer"
                ))
            })?)
        }
        "FLOAT" | "DOUBLE" => Value::Real(row.try_get_unchecked(i).map_err(get_err)?),
        "VARCHAR" | "CHAR" | "TEXT" | "TINYTEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM" | "SET" => {
            Value::Text(row.try_get_unchecked(i).map_err(get_err)?)
        }
        "VARBINARY" | "BINARY" | "BLOB" | "TINYBLOB" | "MEDIUMBLOB" | "LONGBLOB" => {
            Value::Blob(row.try_get_unchecked(i).map_err(get_err)?)
        }
        other => return Err(unconvertible(i, column.name(), other)),
    })
}

fn pg_row(row: &PgRow) -> Result<Vec<Value>, QueryError> {
    row_values(row, pg_value)
}

fn pg_value(row: &PgRow, i: usize, column: &PgColumn) -> Result<Value, QueryError> {
    let get_err = |e| decode_err(i, e);
    Ok(match column.type_info().name() {
        "BOOL" => Value::Integer(row.try_get::<bool, _>(i).map_err(get_err)?.into()),
        "INT2" => Value::Integer(row.try_get::<i16, _>(i).map_err(get_err)?.into()),
        "INT4" => Value::Integer(row.try_get::<i32, _>(i).map_err(get_err)?.into()),
        "INT8" => Value::Integer(row.try_get::<i64, _>(i).map_err(get_err)?),
        "FLOAT4" => Value::Real(row.try_get::<f32, _>(i).map_err(get_err)?.into()),
        "FLOAT8" => Value::Real(row.try_get::<f64, _>(i).map_err(get_err)?),
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CHAR" | "CITEXT" | "UNKNOWN" => {
            Value::Text(row.try_get_unchecked::<String, _>(i).map_err(get_err)?)
        }
        "BYTEA" => Value::Blob(row.try_get::<Vec<u8>, _>(i).map_err(get_err)?),
        other => return Err(unconvertible(i, column.name(), other)),
    })
}

/// The lexical states of [`scan`]: where a `?` means nothing.
#[derive(Clone, Copy, PartialEq)]
enum Lex {
    Code,
    SingleQuoted,
    DoubleQuoted,
    Backticked,
    LineComment,
    BlockComment,
}

/// Walks `sql`, calling `on_code` for each character outside quotes and comments
/// (with its byte index) and copying the rest. Backslash escapes inside quotes are
/// honoured (MySQL's default); a doubled quote is two quoted strings back to back,
/// which comes to the same.
fn scan(sql: &str, mut on_code: impl FnMut(usize, char)) {
    let mut state = Lex::Code;
    let mut chars = sql.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match state {
            Lex::Code => match c {
                '\'' => state = Lex::SingleQuoted,
                '"' => state = Lex::DoubleQuoted,
                '`' => state = Lex::Backticked,
                '-' if chars.peek().map(|&(_, n)| n) == Some('-') => state = Lex::LineComment,
                '/' if chars.peek().map(|&(_, n)| n) == Some('*') => state = Lex::BlockComment,
                _ => on_code(i, c),
            },
            Lex::SingleQuoted | Lex::DoubleQuoted | Lex::Backticked => {
                let close = match state {
                    Lex::SingleQuoted => '\'',
                    Lex::DoubleQuoted => '"',
                    _ => '`',
                };
                if c == '\\' && state != Lex::Backticked {
                    chars.next();
                } else if c == close {
                    state = Lex::Code;
                }
            }
            Lex::LineComment => {
                if c == '\n' {
                    state = Lex::Code;
                }
            }
            Lex::BlockComment => {
                if c == '*' && chars.peek().map(|&(_, n)| n) == Some('/') {
                    chars.next();
                    state = Lex::Code;
                }
            }
        }
    }
}

/// Counts the `?` placeholders of `sql` and, for PostgreSQL, rewrites them to `$1..$n`.
fn placeholders(sql: &str, numbered: bool) -> (String, usize) {
    let mut at = Vec::new();
    scan(sql, |i, c| {
        if c == '?' {
            at.push(i);
        }
    });
    if !numbered {
        return (sql.to_string(), at.len());
    }
    let mut out = String::with_capacity(sql.len() + at.len() * 2);
    let mut last = 0;
    for (n, &i) in at.iter().enumerate() {
        out.push_str(&sql[last..i]);
        out.push('$');
        out.push_str(&(n + 1).to_string());
        last = i + 1;
    }
    out.push_str(&sql[last..]);
    (out, at.len())
}

/// `url` with its password replaced by `***`, for logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_outside_quotes_and_comments_are_numbered() {
        let sql = "SELECT '?', \"a?\", `b?` FROM t -- what?\n WHERE a = ? /* ? */ AND b = 'it''s ?' AND c = ?";
        let (pg, n) = placeholders(sql, true);
        assert_eq!(n, 2);
        assert!(pg.contains("WHERE a = $1 /* ? */"), "{pg}");
        assert!(pg.ends_with("AND c = $2"), "{pg}");
        assert!(pg.contains("'?'") && pg.contains("-- what?"), "{pg}");
        let (same, n) = placeholders(sql, false);
        assert_eq!((same.as_str(), n), (sql, 2));
        let (s, n) = placeholders(r"SELECT 'a\'?' , ?", true);
        assert_eq!((s.as_str(), n), (r"SELECT 'a\'?' , $1", 1));
    }

    #[test]
    fn the_default_acl_query_takes_three_parameters() {
        let (pg, n) = placeholders(
            "SELECT allow, ipaddr, username, clientid, access, topic FROM mqtt_acl \
             WHERE ipaddr = ? OR username = ? OR username = '$all' OR clientid = ?",
            true,
        );
        assert_eq!(n, 3);
        assert!(pg.ends_with("ipaddr = $1 OR username = $2 OR username = '$all' OR clientid = $3"));
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("mysql://root:secret@db:3306/mqtt"),
            "mysql://root:***@db:3306/mqtt"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact("sqlite://./x.db?mode=rwc"),
            "sqlite://./x.db?mode=rwc"
        );
    }

    #[test]
    fn sqlite_files_are_created_unless_the_url_says_otherwise() {
        use SqliteAccess::*;
        for (url, access) in [
            ("sqlite:///srv/wasmq/acl.db", CreateIfMissing),
            ("sqlite://./.wasmq/wasmq.db?mode=rwc", CreateIfMissing),
            ("sqlite:acl.db?cache=private", CreateIfMissing),
            ("sqlite://acl.db?mode=rw", MustExist),
            ("sqlite://acl.db?cache=shared&mode=ro", ReadOnly),
            ("sqlite::memory:", Memory),
            ("sqlite://x?mode=memory", Memory),
        ] {
            assert_eq!(SqliteAccess::of_url(url), access, "{url}");
        }
    }

    #[test]
    fn backends_by_scheme() {
        assert_eq!(Backend::of_url("sqlite::memory:"), Some(Backend::Sqlite));
        assert_eq!(Backend::of_url("mariadb://x"), Some(Backend::MySql));
        assert_eq!(Backend::of_url("postgresql://x"), Some(Backend::Postgres));
        assert_eq!(Backend::of_url("redis://x"), None);
    }
}
