//! Per-instance host state (`HostState`: WASI context, resource table,
//! memory limiter, the plugin's identity and settings), the host side of the
//! capabilities `log`, `config` and `sql`, and the capture of a plugin's
//! stdout/stderr into `tracing`.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::{v0_1, v0_2};
use crate::database::{Database, QueryError, Statement, Value};

/// The longest log line or stdout line a plugin can write; the rest is cut.
/// A plugin must not be able to flood the broker's log with one call.
const LOG_LINE_BYTES_MAX: usize = 4096;

/// Log lines (the `log` import and stdout/stderr together) one instance may write per
/// second; more are dropped, and the number dropped is logged once the next second
/// starts. A plugin that logs on every message must not be able to flood the log, or
/// slow the broker down with it.
const LOG_LINES_PER_SEC: u32 = 100;

/// One instance's log rate limit, shared by its `log` import and its stdout/stderr.
pub(crate) struct LogBudget {
    plugin: Arc<str>,
    window: parking_lot::Mutex<LogWindow>,
}

struct LogWindow {
    start: Instant,
    lines: u32,
    dropped: u64,
}

impl LogBudget {
    fn new(plugin: Arc<str>) -> Self {
        LogBudget {
            plugin,
            window: parking_lot::Mutex::new(LogWindow {
                start: Instant::now(),
                lines: 0,
                dropped: 0,
            }),
        }
    }

    /// Whether one more line may be logged now.
    fn admit(&self) -> bool {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> bool {
        let mut w = self.window.lock();
        if now.saturating_duration_since(w.start) >= Duration::from_secs(1) {
            if w.dropped > 0 {
                tracing::warn!(
                    target: "wasmq::plugin",
                    plugin = &*self.plugin,
                    dropped = w.dropped,
                    "plugin log lines dropped: more than {LOG_LINES_PER_SEC} a second"
                );
            }
            *w = LogWindow {
                start: now,
                lines: 0,
                dropped: 0,
            };
        }
        if w.lines < LOG_LINES_PER_SEC {
            w.lines += 1;
            true
        } else {
            w.dropped += 1;
            false
        }
    }
}

/// What every instance of one plugin shares: who it is and what it may do.
#[derive(Debug)]
pub(crate) struct PluginIdentity {
    pub name: Arc<str>,
    pub settings: BTreeMap<String, String>,
    pub sql_granted: bool,
    /// The database and the declared statements, when `sql` is granted and a
    /// database is configured.
    pub sql: Option<SqlAccess>,
}

/// A plugin's way to the database: only the statements the operator declared.
#[derive(Debug)]
pub(crate) struct SqlAccess {
    /// Granted `sql = "read"`: the statements run on the read-only connections.
    pub read_only: bool,
    pub database: Arc<Database>,
    pub statements: HashMap<String, Statement>,
}

/// The `Store` data of one plugin instance.
pub(crate) struct HostState {
    pub identity: Arc<PluginIdentity>,
    wasi: WasiCtx,
    table: ResourceTable,
    pub memory: MemoryCap,
    /// Time spent waiting for the database during the current call and not yet
    /// given back: the deadline callback turns it into ticks, so a slow database
    /// is not a plugin timeout (the database has its own statement timeout).
    pub sql_waited: Duration,
    log_budget: Arc<LogBudget>,
}

impl HostState {
    pub fn new(identity: Arc<PluginIdentity>, memory_bytes_max: usize) -> Self {
        // Nothing granted: no preopened directory, no environment, no
        // arguments, no network, stdin closed. stdout/stderr go to the log.
        let log_budget = Arc::new(LogBudget::new(identity.name.clone()));
        let wasi = WasiCtx::builder()
            .stdout(LogStream {
                plugin: identity.name.clone(),
                stream: "stdout",
                budget: log_budget.clone(),
            })
            .stderr(LogStream {
                plugin: identity.name.clone(),
                stream: "stderr",
                budget: log_budget.clone(),
            })
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        HostState {
            identity,
            wasi,
            table: ResourceTable::new(),
            memory: MemoryCap {
                bytes_max: memory_bytes_max,
                exceeded: false,
            },
            sql_waited: Duration::ZERO,
            log_budget,
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The memory cap of one instance: refuses growth past `bytes_max` and
/// remembers that it did, so a trap that follows is reported as "memory
/// limit" rather than as a plain trap.
pub(crate) struct MemoryCap {
    bytes_max: usize,
    pub exceeded: bool,
}

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.bytes_max {
            self.exceeded = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; a million is far beyond any real plugin.
        Ok(desired <= 1_000_000)
    }
}

fn truncate(s: &str) -> &str {
    if s.len() <= LOG_LINE_BYTES_MAX {
        return s;
    }
    let mut end = LOG_LINE_BYTES_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The host side of the capabilities, for each contract version: `log`,
/// `config` and `sql` are the same in 0.1.0 and 0.2.0 (only their names carry
/// the version), so one definition is stamped per version.
macro_rules! capabilities {
    ($v:ident) => {
        // A block of its own per version, so each has its own `use`.
        const _: () = {
            use $v::wasmq::plugin::{config, log, sql, types};

            impl types::Host for HostState {}

            impl log::Host for HostState {
                fn log(&mut self, level: log::Level, message: String) {
                    if !self.log_budget.admit() {
                        return;
                    }
                    let plugin = &*self.identity.name;
                    let message = truncate(&message);
                    match level {
                        log::Level::Trace => tracing::trace!(target: "wasmq::plugin", plugin, "{message}"),
                        log::Level::Debug => tracing::debug!(target: "wasmq::plugin", plugin, "{message}"),
                        log::Level::Info => tracing::info!(target: "wasmq::plugin", plugin, "{message}"),
                        log::Level::Warn => tracing::warn!(target: "wasmq::plugin", plugin, "{message}"),
                        log::Level::Error => tracing::error!(target: "wasmq::plugin", plugin, "{message}"),
                    }
                }
            }

            impl config::Host for HostState {
                fn get(&mut self, key: String) -> Option<String> {
                    self.identity.settings.get(&key).cloned()
                }
            }

            impl sql::Host for HostState {
                async fn query(
                    &mut self,
                    statement: String,
                    params: Vec<sql::SqlValue>,
                ) -> Result<Vec<sql::Row>, sql::SqlError> {
                    // Loading refuses a plugin that imports `sql` without the grant, so
                    // only granted plugins get here.
                    let plugin = &*self.identity.name;
                    if !self.identity.sql_granted {
                        return Err(sql::SqlError::NotGranted);
                    }
                    let Some(access) = &self.identity.sql else {
                        tracing::warn!(
                            plugin,
                            statement,
                            "sql query refused: no database is configured ([database] url)"
                        );
                        return Err(sql::SqlError::NotGranted);
                    };
                    let Some(prepared) = access.statements.get(&statement) else {
                        tracing::warn!(
                            plugin,
                            statement,
                            "sql query refused: statement not declared"
                        );
                        return Err(sql::SqlError::InvalidStatement(format!(
                            "no statement named {statement:?} is declared in the plugin's [sql.statements]"
                        )));
                    };
                    let params: Vec<Value> = params.into_iter().map(Value::from).collect();
                    let started = Instant::now();
                    let result = if access.read_only {
                        access.database.query_read_only(prepared, &params).await
                    } else {
                        access.database.query(prepared, &params).await
                    };
                    self.sql_waited += started.elapsed();
                    match result {
                        Ok(rows) => Ok(rows
                            .into_iter()
                            .map(|columns| sql::Row {
                                columns: columns.into_iter().map(sql::SqlValue::from).collect(),
                            })
                            .collect()),
                        Err(QueryError::ReadOnly(e)) if access.read_only => {
                            tracing::warn!(
                                plugin,
                                statement,
                                error = e,
                                "sql write refused: the plugin's grant is read-only (sql = \"read\")"
                            );
                            Err(sql::SqlError::NotGranted)
                        }
                        Err(e) => {
                            tracing::warn!(plugin, statement, error = %e, "sql query failed");
                            Err(match e {
                                QueryError::ReadOnly(s) => sql::SqlError::Database(s),
                                QueryError::InvalidStatement(s) => sql::SqlError::InvalidStatement(s),
                                QueryError::InvalidParams(s) => sql::SqlError::InvalidParams(s),
                                QueryError::Database(s) => sql::SqlError::Database(s),
                                QueryError::Timeout => sql::SqlError::Timeout,
                            })
                        }
                    }
                }
            }

            impl From<sql::SqlValue> for Value {
                fn from(v: sql::SqlValue) -> Self {
                    match v {
                        sql::SqlValue::Null => Value::Null,
                        sql::SqlValue::Integer(i) => Value::Integer(i),
                        sql::SqlValue::Real(r) => Value::Real(r),
                        sql::SqlValue::Text(s) => Value::Text(s),
                        sql::SqlValue::Blob(b) => Value::Blob(b),
                    }
                }
            }

            impl From<Value> for sql::SqlValue {
                fn from(v: Value) -> Self {
                    match v {
                        Value::Null => sql::SqlValue::Null,
                        Value::Integer(i) => sql::SqlValue::Integer(i),
                        Value::Real(r) => sql::SqlValue::Real(r),
                        Value::Text(s) => sql::SqlValue::Text(s),
                        Value::Blob(b) => sql::SqlValue::Blob(b),
                    }
                }
            }
        };
    };
}

capabilities!(v0_2);
capabilities!(v0_1);

/// A plugin's stdout or stderr: each line becomes a `tracing` event at info
/// (stdout) or warn (stderr) level, tagged with the plugin's name.
struct LogStream {
    plugin: Arc<str>,
    stream: &'static str,
    budget: Arc<LogBudget>,
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(LineLogger::new(
            self.plugin.clone(),
            self.stream,
            self.budget.clone(),
        ))
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(LineLogger::new(
            self.plugin.clone(),
            self.stream,
            self.budget.clone(),
        ))
    }
}

/// Buffers bytes until a newline (or [`LOG_LINE_BYTES_MAX`]) and logs each line.
struct LineLogger {
    plugin: Arc<str>,
    stream: &'static str,
    line: Vec<u8>,
    budget: Arc<LogBudget>,
}

impl LineLogger {
    fn new(plugin: Arc<str>, stream: &'static str, budget: Arc<LogBudget>) -> Self {
        LineLogger {
            plugin,
            stream,
            line: Vec::new(),
            budget,
        }
    }

    fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.append(&bytes[..i]);
                    self.emit();
                    bytes = &bytes[i + 1..];
                }
                None => {
                    self.append(bytes);
                    bytes = &[];
                }
            }
        }
    }

    fn append(&mut self, bytes: &[u8]) {
        let room = LOG_LINE_BYTES_MAX.saturating_sub(self.line.len());
        self.line.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn emit(&mut self) {
        if !self.budget.admit() {
            self.line.clear();
            return;
        }
        let text = String::from_utf8_lossy(&self.line);
        let plugin = &*self.plugin;
        if self.stream == "stderr" {
            tracing::warn!(target: "wasmq::plugin", plugin, stream = self.stream, "{text}");
        } else {
            tracing::info!(target: "wasmq::plugin", plugin, stream = self.stream, "{text}");
        }
        self.line.clear();
    }
}

impl Drop for LineLogger {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            self.emit();
        }
    }
}

impl OutputStream for LineLogger {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LineLogger {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for LineLogger {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_budget_admits_a_second_s_worth_then_drops_until_the_next_second() {
        let budget = LogBudget::new(Arc::from("p"));
        let start = budget.window.lock().start;
        let admitted = (0..LOG_LINES_PER_SEC * 3)
            .filter(|_| budget.admit_at(start))
            .count();
        assert_eq!(admitted, LOG_LINES_PER_SEC as usize);
        assert_eq!(budget.window.lock().dropped, 2 * LOG_LINES_PER_SEC as u64);
        let later = start + Duration::from_millis(1001);
        assert!(budget.admit_at(later), "a new second, a new budget");
        assert_eq!(budget.window.lock().dropped, 0);
    }
}
