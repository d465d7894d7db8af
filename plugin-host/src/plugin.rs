//! One loaded plugin: its compiled component and `InstancePre`, the hooks it
//! exports, a small pool of warm instances, its limits and its fault record.
//!
//! A call takes a warm instance (or creates one), sets the epoch deadline,
//! calls the hook, and gives the instance back, unless the call faulted
//! (the instance is dropped: its state may be broken) or the instance has
//! served `calls_per_instance_max` calls (recycled, so leaks in a plugin do
//! not pile up).
//!
//! Faults in a row past `faults_to_disable` disable the plugin ([`PluginState`]): its
//! calls are refused (authorization fails closed) until its backoff ([`Retry`]) has
//! passed, when a timer task makes it a fresh instance and lets calls through again
//! (retrying). A clean call makes it active; a fault while retrying disables it again at
//! once, with the backoff doubled (up to its cap) unless it had been back for
//! `reset_after_ms`. Each transition is one log line with the plugin and the fault.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime};

use wasmtime::component::{Component, InstancePre};
use wasmtime::{Store, Trap, UpdateDeadline};

use wasmq_codec::Publish;
use wasmq_policy::{Action, CacheLifetime, ClientInfo, Decision, Transformed};

use crate::bindings::{
    self, PreparedClient, converted, placeholder_message, prepared, v0_1, v0_2, wit,
};
use crate::check::{Contract, Inspection};
use crate::error::{Fault, LoadError};
use crate::histogram::{HistogramSnapshot, LatencyHistogram};
use crate::host::HostInner;
use crate::pool::Pool;
use crate::state::{HostState, PluginIdentity, SqlAccess};
use crate::types::{AuthOutcome, Capabilities, HookSet, PluginAuthStep};

/// What one plugin may use of the machine: time per call, memory, instances
/// (the broker's own MQTT limits are `wasmq::config::Limits`, another thing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceLimits {
    /// The most one hook call may take; past it the call is interrupted and
    /// counts as a fault.
    pub call_timeout_ms: u64,
    /// The most making a fresh instance may take (its start-up code, the memory image
    /// of an interpreter copied in); past it the start fails and counts as a fault.
    /// Apart from `call_timeout_ms`: a CPython or SpiderMonkey component starts in
    /// tens of ms on an idle machine and took over 100 ms on a loaded one (2 cores, 10
    /// compilers beside it), and a start happens once per `calls_per_instance_max`
    /// calls, not on every message.
    pub start_timeout_ms: u64,
    /// The most linear memory one instance may have (capped by
    /// `HostConfig::memory_bytes_max`).
    pub memory_bytes_max: usize,
    /// Calls one instance serves before it is replaced by a fresh one.
    pub calls_per_instance_max: u64,
    /// Idle instances kept warm; more are created under concurrency and
    /// dropped when they come back to a full pool.
    pub warm_instances_max: usize,
}

impl Default for ResourceLimits {
    fn default() -> Self {
        ResourceLimits {
            call_timeout_ms: 100,
            start_timeout_ms: 1000,
            memory_bytes_max: 16 << 20,
            calls_per_instance_max: 100_000,
            warm_instances_max: 4,
        }
    }
}

/// When a plugin disabled after repeated faults is tried again (`[retry]` of its
/// `NAME.toml`): Envoy's fail-and-reload, with an exponential backoff.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retry {
    /// The wait after the plugin is first disabled, before a fresh instance is tried.
    pub backoff_initial_ms: u64,
    /// The longest wait: a plugin disabled again soon after it came back waits twice as
    /// long as the time before, up to this.
    pub backoff_max_ms: u64,
    /// How long a plugin that came back must go without being disabled again for its
    /// next wait to start again from `backoff_initial_ms`.
    pub reset_after_ms: u64,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            backoff_initial_ms: 1000,
            backoff_max_ms: 60_000,
            reset_after_ms: 60_000,
        }
    }
}

/// Where a plugin is in its fault cycle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PluginState {
    /// Called as usual.
    #[default]
    Active,
    /// Disabled after repeated faults: its calls are refused (authorization denies)
    /// until `until`, when it is retried.
    Disabled {
        /// When the retry is due (wall clock, for the operator).
        until: SystemTime,
    },
    /// Back after its backoff, on a fresh instance: the next clean call makes it
    /// active, a fault disables it again.
    Retrying,
}

impl PluginState {
    /// `active`, `disabled` or `retrying`.
    pub fn name(&self) -> &'static str {
        match self {
            PluginState::Active => "active",
            PluginState::Disabled { .. } => "disabled",
            PluginState::Retrying => "retrying",
        }
    }
}

impl std::fmt::Display for PluginState {
    /// `active`, `retrying`, or `disabled until 2026-12-02T20:41:07Z`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PluginState::Disabled { until } => {
                write!(f, "disabled until {}", rfc3339_utc(*until))
            }
            other => f.write_str(other.name()),
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` (civil from days: Howard Hinnant's algorithm).
fn rfc3339_utc(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// What to do with a message when a transform plugin faults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnTransformFault {
    /// Pass the message on as it was before this plugin (default).
    #[default]
    Keep,
    /// Drop the message.
    Drop,
}

/// What a plugin may do with the database (`[capabilities] sql` of its `NAME.toml`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SqlGrant {
    /// No `sql`: a component that imports it does not load.
    #[default]
    None,
    /// Its declared statements run on read-only connections ([`crate::Database::query_read_only`]):
    /// the database refuses a write, and the plugin gets `not-granted`.
    Read,
    /// Its declared statements run as they are, on the broker's own connections.
    ReadWrite,
}

impl SqlGrant {
    /// Whether the plugin may use `sql` at all.
    pub fn is_granted(self) -> bool {
        self != SqlGrant::None
    }
}

impl std::fmt::Display for SqlGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SqlGrant::None => "none",
            SqlGrant::Read => "read",
            SqlGrant::ReadWrite => "read-write",
        })
    }
}

/// How one plugin is configured (what `NAME.toml` will hold).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginConfig {
    /// The plugin's name, for logs and counters (by convention the file stem).
    pub name: String,
    /// Chain position: lower runs first; ties run in name order.
    pub priority: i32,
    /// The hooks enabled; a hook the component does not export is ignored.
    pub hooks: HookSet,
    /// Time and memory limits.
    pub limits: ResourceLimits,
    /// Whether the plugin may use the `sql` capability, and how.
    pub grant_sql: SqlGrant,
    /// The statements the plugin may run through `sql`, by name (`NAME.toml`'s
    /// `[sql.statements]`): the plugin calls `query("acl", params)` and the
    /// operator decides what `acl` is. SQL text with `?` placeholders.
    pub sql_statements: BTreeMap<String, String>,
    /// The plugin's own settings, read through the `config` capability.
    pub settings: BTreeMap<String, String>,
    /// What a faulting transform does to the message.
    pub on_transform_fault: OnTransformFault,
    /// Faults in a row after which the plugin is disabled, until its retry.
    pub faults_to_disable: u32,
    /// When a disabled plugin is tried again.
    pub retry: Retry,
    /// The operator's word that the plugin's transform depends only on the client, the
    /// topic, the QoS and the retain flag: the broker may then reuse what it did to one
    /// message for the next ones alike, without a call (see [`crate::Chain::transform_per_topic`]).
    pub transform_per_topic: bool,
}

impl PluginConfig {
    /// Defaults for a plugin named `name`: priority 0, every exported hook,
    /// default limits, no `sql`, no settings.
    pub fn new(name: impl Into<String>) -> Self {
        PluginConfig {
            name: name.into(),
            priority: 0,
            hooks: HookSet::ALL,
            limits: ResourceLimits::default(),
            grant_sql: SqlGrant::None,
            sql_statements: BTreeMap::new(),
            settings: BTreeMap::new(),
            on_transform_fault: OnTransformFault::Keep,
            faults_to_disable: 5,
            retry: Retry::default(),
            transform_per_topic: false,
        }
    }

    /// Declares statement `name`, granting `sql` read-write unless it is granted
    /// already (builder style).
    pub fn sql_statement(mut self, name: impl Into<String>, sql: impl Into<String>) -> Self {
        if self.grant_sql == SqlGrant::None {
            self.grant_sql = SqlGrant::ReadWrite;
        }
        self.sql_statements.insert(name.into(), sql.into());
        self
    }

    /// Grants `sql` for reads only (builder style).
    pub fn sql_read_only(mut self) -> Self {
        self.grant_sql = SqlGrant::Read;
        self
    }

    /// Adds a setting (builder style).
    pub fn setting(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.insert(key.into(), value.into());
        self
    }
}

/// Counters of one plugin, since it was loaded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PluginStats {
    /// Hook calls attempted (including those that faulted).
    pub calls: u64,
    /// Calls that faulted, all kinds.
    pub faults: u64,
    /// Calls interrupted at their deadline.
    pub timeouts: u64,
    /// Calls that trapped.
    pub traps: u64,
    /// Calls stopped by the memory cap.
    pub memory_limits: u64,
    /// Calls refused because the plugin is disabled or no instance could be made.
    pub refused: u64,
    /// Instances created.
    pub instances_created: u64,
    /// Instances retired after `calls_per_instance_max` calls.
    pub instances_recycled: u64,
    /// Faults in a row, right now.
    pub consecutive_faults: u32,
    /// Whether the plugin is disabled.
    pub disabled: bool,
    /// Times it was disabled after repeated faults.
    pub disables: u64,
    /// Times it was retried after its backoff.
    pub retries: u64,
    /// Where it is in its fault cycle.
    pub state: PluginState,
}

/// On a cache line of its own: every call writes `calls`, and the fields
/// beside it in `PluginInner` are read by every call on every thread.
#[derive(Default)]
#[repr(align(128))]
struct Counters {
    calls: AtomicU64,
    faults: AtomicU64,
    timeouts: AtomicU64,
    traps: AtomicU64,
    memory_limits: AtomicU64,
    refused: AtomicU64,
    instances_created: AtomicU64,
    instances_recycled: AtomicU64,
    disables: AtomicU64,
    retries: AtomicU64,
}

/// [`PluginInner::state`]: the one word every call reads.
const ACTIVE: u8 = 0;
const DISABLED: u8 = 1;
const RETRYING: u8 = 2;

/// The disabled plugin's retry, under a lock only transitions take.
struct FaultCycle {
    /// Bumped at every disable, so a timer of an earlier one does nothing.
    epoch: u64,
    /// When the retry is due (wall clock, for [`PluginState::Disabled`]).
    retry_at: SystemTime,
    /// The last wait.
    backoff: Duration,
    /// When it was last retried.
    back_since: Option<Instant>,
    /// The fault that disabled it, for the retry's log line.
    fault: String,
    /// The timer of the retry due; aborted when the plugin is dropped (unloaded).
    timer: Option<tokio::task::AbortHandle>,
}

/// A loaded plugin. Cheap to clone (shared); calls may run concurrently, each
/// on its own instance.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<PluginInner>,
}

struct PluginInner {
    host: Arc<HostInner>,
    identity: Arc<PluginIdentity>,
    config: PluginConfig,
    exported: HookSet,
    enabled: HookSet,
    capabilities: Capabilities,
    pre: InstancePre<HostState>,
    indices: Indices,
    memory_bytes_max: usize,
    deadline_ticks: u64,
    /// The same for making an instance (`Limits::start_timeout_ms`).
    start_ticks: u64,
    warm: Pool<Warm>,
    counters: Counters,
    /// How long calls take, faulted ones included.
    latency: LatencyHistogram,
    consecutive_faults: AtomicU32,
    /// [`ACTIVE`], [`DISABLED`] or [`RETRYING`].
    state: AtomicU8,
    cycle: parking_lot::Mutex<FaultCycle>,
    /// What the `auth` hook's `methods` answered, asked once (at load by
    /// `PluginHost::load_async`, else on first need) and kept for the plugin's life.
    auth_methods: OnceLock<Vec<String>>,
}

/// The hooks only 0.2.0 has, located (`GuestIndices`) or loaded (`Guest`).
struct Since0_2<D, A, B> {
    deliver: Option<D>,
    auth: Option<A>,
    /// `transform-batch`.
    batch: Option<B>,
}

/// The enabled hooks of one contract version: where they are in the component
/// (`GuestIndices`, found once) or in one instance (`Guest`).
struct GuestHooks<N, Z, T> {
    authn: Option<N>,
    authz: Option<Z>,
    transform: Option<T>,
}

/// A plugin's hooks, located once in its `InstancePre`, in the bindings of the
/// contract version it was built against.
enum Indices {
    V0_1(
        GuestHooks<
            v0_1::authn::GuestIndices,
            v0_1::authz::GuestIndices,
            v0_1::transform::GuestIndices,
        >,
    ),
    /// With the `deliver`, `auth` and `transform-batch` hooks, which only 0.2.0 has.
    V0_2(
        GuestHooks<
            v0_2::authn::GuestIndices,
            v0_2::authz::GuestIndices,
            v0_2::transform::GuestIndices,
        >,
        Since0_2<
            v0_2::deliver::GuestIndices,
            v0_2::auth::GuestIndices,
            v0_2::transform_batch::GuestIndices,
        >,
    ),
}

/// One instance's hooks.
enum Guests {
    V0_1(GuestHooks<v0_1::authn::Guest, v0_1::authz::Guest, v0_1::transform::Guest>),
    V0_2(
        GuestHooks<v0_2::authn::Guest, v0_2::authz::Guest, v0_2::transform::Guest>,
        Since0_2<v0_2::deliver::Guest, v0_2::auth::Guest, v0_2::transform_batch::Guest>,
    ),
}

/// Locates the enabled hooks with `$v`'s bindings (the same code for every version).
macro_rules! locate {
    ($v:ident, $enabled:expr, $per_message:expr, $pre:expr) => {{
        let index_err = |e: wasmtime::Error| LoadError::Invalid(format!("{e}"));
        GuestHooks {
            authn: $enabled
                .authn
                .then(|| $v::authn::GuestIndices::new($pre))
                .transpose()
                .map_err(index_err)?,
            authz: $enabled
                .authz
                .then(|| $v::authz::GuestIndices::new($pre))
                .transpose()
                .map_err(index_err)?,
            transform: ($enabled.transform && $per_message)
                .then(|| $v::transform::GuestIndices::new($pre))
                .transpose()
                .map_err(index_err)?,
        }
    }};
}

/// Loads the located hooks from a new instance.
macro_rules! load_hooks {
    ($set:expr, $store:expr, $instance:expr) => {{
        let load_err = |e: wasmtime::Error| Fault::Unavailable(format!("{e}"));
        GuestHooks {
            authn: match &$set.authn {
                Some(ix) => Some(ix.load(&mut *$store, $instance).map_err(load_err)?),
                None => None,
            },
            authz: match &$set.authz {
                Some(ix) => Some(ix.load(&mut *$store, $instance).map_err(load_err)?),
                None => None,
            },
            transform: match &$set.transform {
                Some(ix) => Some(ix.load(&mut *$store, $instance).map_err(load_err)?),
                None => None,
            },
        }
    }};
}

/// The one edit of a batch of one.
fn one_edit(edits: Vec<wit::Edit>, expected: usize) -> wasmtime::Result<wit::Edit> {
    let answered = edits.len();
    match edits.into_iter().next() {
        Some(edit) if answered == expected => Ok(edit),
        _ => Err(wasmtime::Error::msg(format!(
            "on-publish-batch answered {answered} edits for {expected} message"
        ))),
    }
}

/// An edit as a per-message answer: a change becomes the changed message.
fn edit_to_transformed(edit: wit::Edit, message: &wit::Message) -> wit::Transformed {
    match edit {
        wit::Edit::Keep => wit::Transformed::Keep,
        wit::Edit::Drop(reason) => wit::Transformed::Drop(reason),
        wit::Edit::Replace(m) => wit::Transformed::Replace(m),
        wit::Edit::Change(change) => {
            let mut changed = message.clone();
            crate::bindings::apply_change(&mut changed, change);
            wit::Transformed::Replace(changed)
        }
    }
}

/// One live instance and its store.
struct Warm {
    store: Store<HostState>,
    guests: Guests,
    calls: u64,
}

impl Plugin {
    pub(crate) fn new(
        host: Arc<HostInner>,
        config: PluginConfig,
        component: Component,
        inspection: Inspection,
    ) -> Result<Plugin, LoadError> {
        if inspection.capabilities.sql && !config.grant_sql.is_granted() {
            return Err(LoadError::NotGranted("sql"));
        }
        let pre = host
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link(format!("{e}")))?;
        let exported = inspection.hooks;
        let enabled = exported.intersect(config.hooks);
        if enabled.is_empty() {
            return Err(LoadError::Invalid(format!(
                "none of the hooks it exports ({exported}) is enabled in its configuration"
            )));
        }
        let per_message = inspection.transform_exports.per_message;
        let indices = match inspection.contract.unwrap_or_default() {
            Contract::V0_1 => Indices::V0_1(locate!(v0_1, enabled, per_message, &pre)),
            Contract::V0_2 => Indices::V0_2(
                locate!(v0_2, enabled, per_message, &pre),
                Since0_2 {
                    deliver: enabled
                        .deliver
                        .then(|| v0_2::deliver::GuestIndices::new(&pre))
                        .transpose()
                        .map_err(|e| LoadError::Invalid(format!("{e}")))?,
                    auth: enabled
                        .auth
                        .then(|| v0_2::auth::GuestIndices::new(&pre))
                        .transpose()
                        .map_err(|e| LoadError::Invalid(format!("{e}")))?,
                    batch: (enabled.transform && inspection.transform_exports.batch)
                        .then(|| v0_2::transform_batch::GuestIndices::new(&pre))
                        .transpose()
                        .map_err(|e| LoadError::Invalid(format!("{e}")))?,
                },
            ),
        };
        let tick_ms = host.config.epoch_tick_ms.max(1);
        let deadline_ticks = config.limits.call_timeout_ms.div_ceil(tick_ms) + 1;
        let start_ticks = config.limits.start_timeout_ms.div_ceil(tick_ms) + 1;
        let memory_bytes_max = config
            .limits
            .memory_bytes_max
            .min(host.config.memory_bytes_max);
        let granted = config.grant_sql.is_granted();
        let sql = match (&host.config.database, granted) {
            (Some(database), true) => Some(SqlAccess {
                read_only: config.grant_sql == SqlGrant::Read,
                statements: config
                    .sql_statements
                    .iter()
                    .map(|(name, sql)| (name.clone(), database.prepare(sql)))
                    .collect(),
                database: database.clone(),
            }),
            (None, true) if inspection.capabilities.sql => {
                tracing::warn!(
                    plugin = config.name,
                    "plugin is granted sql but no database is configured: its queries will be refused"
                );
                None
            }
            _ => None,
        };
        let identity = Arc::new(PluginIdentity {
            name: Arc::from(config.name.as_str()),
            settings: config.settings.clone(),
            sql_granted: granted,
            sql,
        });
        tracing::info!(
            plugin = config.name,
            contract = %inspection.contract.unwrap_or_default(),
            hooks = %enabled,
            capabilities = %inspection.capabilities,
            sql = %config.grant_sql,
            "plugin loaded"
        );
        Ok(Plugin {
            inner: Arc::new(PluginInner {
                host,
                identity,
                exported,
                enabled,
                capabilities: inspection.capabilities,
                pre,
                indices,
                memory_bytes_max,
                deadline_ticks,
                start_ticks,
                warm: Pool::new(config.limits.warm_instances_max),
                counters: Counters::default(),
                latency: LatencyHistogram::default(),
                consecutive_faults: AtomicU32::new(0),
                state: AtomicU8::new(ACTIVE),
                cycle: parking_lot::Mutex::new(FaultCycle {
                    epoch: 0,
                    retry_at: SystemTime::UNIX_EPOCH,
                    backoff: Duration::ZERO,
                    back_since: None,
                    fault: String::new(),
                    timer: None,
                }),
                auth_methods: OnceLock::new(),
                config,
            }),
        })
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    /// The configuration it was loaded with.
    pub fn config(&self) -> &PluginConfig {
        &self.inner.config
    }

    /// The hooks the component exports.
    pub fn exported_hooks(&self) -> HookSet {
        self.inner.exported
    }

    /// The hooks that are called: exported and enabled.
    pub fn hooks(&self) -> HookSet {
        self.inner.enabled
    }

    /// The Wasmq capabilities the component imports.
    pub fn capabilities(&self) -> Capabilities {
        self.inner.capabilities
    }

    /// Whether the plugin is disabled after repeated faults (until its retry).
    pub fn is_disabled(&self) -> bool {
        self.inner.state.load(Ordering::Relaxed) == DISABLED
    }

    /// Where it is in its fault cycle.
    pub fn state(&self) -> PluginState {
        match self.inner.state.load(Ordering::Relaxed) {
            DISABLED => PluginState::Disabled {
                until: self.inner.cycle.lock().retry_at,
            },
            RETRYING => PluginState::Retrying,
            _ => PluginState::Active,
        }
    }

    /// Its counters.
    pub fn stats(&self) -> PluginStats {
        let c = &self.inner.counters;
        PluginStats {
            calls: c.calls.load(Ordering::Relaxed),
            faults: c.faults.load(Ordering::Relaxed),
            timeouts: c.timeouts.load(Ordering::Relaxed),
            traps: c.traps.load(Ordering::Relaxed),
            memory_limits: c.memory_limits.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            instances_created: c.instances_created.load(Ordering::Relaxed),
            instances_recycled: c.instances_recycled.load(Ordering::Relaxed),
            consecutive_faults: self.inner.consecutive_faults.load(Ordering::Relaxed),
            disabled: self.is_disabled(),
            disables: c.disables.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            state: self.state(),
        }
    }

    /// How long its calls took (since it was loaded), faulted ones included and
    /// refused ones (disabled) not.
    pub fn latency(&self) -> HistogramSnapshot {
        self.inner.latency.snapshot()
    }

    /// Creates one instance and keeps it warm: proves the plugin starts.
    pub async fn warm_up(&self) -> Result<(), Fault> {
        let warm = self.instantiate().await?;
        self.inner.warm.give(warm);
        Ok(())
    }

    /// Calls the `authn` hook. `Ok(Ignore)` when the hook is not enabled.
    pub async fn authenticate(
        &self,
        client: &ClientInfo,
        password: Option<&[u8]>,
    ) -> Result<AuthOutcome, Fault> {
        self.authenticate_wit(&converted(client), password).await
    }

    /// The contract version the plugin was built against.
    pub fn contract(&self) -> Contract {
        match self.inner.indices {
            Indices::V0_1(_) => Contract::V0_1,
            Indices::V0_2(..) => Contract::V0_2,
        }
    }

    /// Calls the `authz` hook. `Ok(Ignore)` when the hook is not enabled.
    pub async fn authorize(
        &self,
        client: &ClientInfo,
        action: Action,
        topic: &str,
        qos: u8,
        retain: bool,
    ) -> Result<Decision, Fault> {
        self.authorize_wit(prepared(client), action, topic, qos, retain)
            .await
            .map(|(decision, _)| decision)
    }

    /// [`Plugin::authorize`], with how long the plugin says its answer may be kept
    /// (always the operator's TTL for a 0.1.0 plugin).
    pub async fn authorize_cached(
        &self,
        client: &ClientInfo,
        action: Action,
        topic: &str,
        qos: u8,
        retain: bool,
    ) -> Result<(Decision, CacheLifetime), Fault> {
        self.authorize_wit(prepared(client), action, topic, qos, retain)
            .await
    }

    /// Calls the `deliver` hook: may `client` receive a message on `topic` (through a
    /// wildcard subscription)? `Ok(Ignore)` when the hook is not enabled, and always for
    /// a 0.1.0 plugin (0.1.0 has no such hook).
    pub async fn authorize_delivery(
        &self,
        client: &ClientInfo,
        topic: &str,
        qos: u8,
        retain: bool,
    ) -> Result<Decision, Fault> {
        self.authorize_delivery_wit(prepared(client), topic, qos, retain)
            .await
            .map(|(decision, _)| decision)
    }

    /// Calls the `transform` hook. `Ok(Keep)` when the hook is not enabled.
    pub async fn on_publish(
        &self,
        client: &ClientInfo,
        message: &Publish,
    ) -> Result<Transformed, Fault> {
        let mut handed = wit::Message::from(message);
        self.on_publish_wit(prepared(client), &mut handed)
            .await
            .map(|t| bindings::transformed(message, t))
    }

    pub(crate) async fn authenticate_wit(
        &self,
        client: &PreparedClient,
        password: Option<&[u8]>,
    ) -> Result<AuthOutcome, Fault> {
        if !self.inner.enabled.authn {
            return Ok(AuthOutcome::ignore());
        }
        self.call("authn", |mut w| async move {
            let r = match &w.guests {
                Guests::V0_1(g) => {
                    let guest = g.authn.clone().expect("authn loaded when enabled");
                    guest
                        .call_authenticate(&mut w.store, client.v0_1(), password)
                        .await
                        .map(AuthOutcome::from)
                }
                Guests::V0_2(g, ..) => {
                    let guest = g.authn.clone().expect("authn loaded when enabled");
                    guest
                        .call_authenticate(&mut w.store, client.v0_2(), password)
                        .await
                        .map(AuthOutcome::from)
                }
            };
            (w, r)
        })
        .await
    }

    pub(crate) async fn authorize_wit(
        &self,
        client: &PreparedClient,
        action: Action,
        topic: &str,
        qos: u8,
        retain: bool,
    ) -> Result<(Decision, CacheLifetime), Fault> {
        if !self.inner.enabled.authz {
            return Ok((Decision::Ignore, CacheLifetime::OPERATOR_TTL));
        }
        self.call("authz", |mut w| async move {
            let r = match &w.guests {
                Guests::V0_1(g) => {
                    let guest = g.authz.clone().expect("authz loaded when enabled");
                    guest
                        .call_authorize(
                            &mut w.store,
                            client.v0_1(),
                            action.into(),
                            topic,
                            qos,
                            retain,
                        )
                        .await
                        .map(|d| (Decision::from(d), CacheLifetime::OPERATOR_TTL))
                }
                Guests::V0_2(g, ..) => {
                    let guest = g.authz.clone().expect("authz loaded when enabled");
                    guest
                        .call_authorize(
                            &mut w.store,
                            client.v0_2(),
                            action.into(),
                            topic,
                            qos,
                            retain,
                        )
                        .await
                        .map(<(Decision, CacheLifetime)>::from)
                }
            };
            (w, r)
        })
        .await
    }

    pub(crate) async fn authorize_delivery_wit(
        &self,
        client: &PreparedClient,
        topic: &str,
        qos: u8,
        retain: bool,
    ) -> Result<(Decision, CacheLifetime), Fault> {
        if !self.inner.enabled.deliver || !matches!(self.inner.indices, Indices::V0_2(..)) {
            return Ok((Decision::Ignore, CacheLifetime::OPERATOR_TTL));
        }
        self.call("deliver", |mut w| async move {
            let r = match &w.guests {
                Guests::V0_2(
                    _,
                    Since0_2 {
                        deliver: Some(guest),
                        ..
                    },
                ) => guest
                    .clone()
                    .call_authorize_delivery(&mut w.store, client.v0_2(), topic, qos, retain)
                    .await
                    .map(<(Decision, CacheLifetime)>::from),
                // Not located (not enabled) or a 0.1.0 instance: checked above.
                _ => Ok((Decision::Ignore, CacheLifetime::OPERATOR_TTL)),
            };
            (w, r)
        })
        .await
    }

    /// The Authentication Methods the `auth` hook implements (its `methods`), asked
    /// once and kept. Empty when the hook is not enabled (and for a 0.1.0 plugin);
    /// a fault is returned and asked again next time.
    pub async fn auth_methods(&self) -> Result<&[String], Fault> {
        if !self.inner.enabled.auth {
            return Ok(&[]);
        }
        if let Some(methods) = self.inner.auth_methods.get() {
            return Ok(methods);
        }
        let methods = self
            .call("auth", |mut w| async move {
                let r = match &w.guests {
                    Guests::V0_2(
                        _,
                        Since0_2 {
                            auth: Some(guest), ..
                        },
                    ) => guest.clone().call_methods(&mut w.store).await,
                    _ => Ok(Vec::new()),
                };
                (w, r)
            })
            .await?;
        Ok(self.inner.auth_methods.get_or_init(|| methods))
    }

    /// Calls the `auth` hook: `start` when `state` is `None` (the CONNECT or AUTH 0x19
    /// of a new exchange), `step` with it otherwise. `Ok(Ignore)` when the hook is not
    /// enabled.
    pub async fn auth_step(
        &self,
        client: &ClientInfo,
        method: &str,
        data: Option<&[u8]>,
        state: Option<&[u8]>,
    ) -> Result<PluginAuthStep, Fault> {
        if !self.inner.enabled.auth {
            return Ok(PluginAuthStep::Ignore);
        }
        let client = prepared(client);
        self.call("auth", |mut w| async move {
            let r = match &w.guests {
                Guests::V0_2(
                    _,
                    Since0_2 {
                        auth: Some(guest), ..
                    },
                ) => {
                    let guest = guest.clone();
                    match state {
                        None => {
                            guest
                                .call_start(&mut w.store, client.v0_2(), method, data)
                                .await
                        }
                        Some(state) => {
                            guest
                                .call_step(&mut w.store, client.v0_2(), method, data, state)
                                .await
                        }
                    }
                    .map(PluginAuthStep::from)
                }
                _ => Ok(PluginAuthStep::Ignore),
            };
            (w, r)
        })
        .await
    }

    /// Calls the transform hook on `message`, which the chain carries in the
    /// current contract's type. A 0.1.0 plugin gets it moved into its own type
    /// and back (no copy); `message` is left as it was whatever the answer.
    pub(crate) async fn on_publish_wit(
        &self,
        client: &PreparedClient,
        message: &mut wit::Message,
    ) -> Result<wit::Transformed, Fault> {
        if !self.inner.enabled.transform {
            return Ok(wit::Transformed::Keep);
        }
        self.call("transform", |mut w| async move {
            let r = match &w.guests {
                Guests::V0_1(g) => {
                    let guest = g.transform.clone().expect("transform loaded when enabled");
                    let old =
                        v0_1::wit::Message::from(std::mem::replace(message, placeholder_message()));
                    let r = guest
                        .call_on_publish(&mut w.store, client.v0_1(), &old)
                        .await
                        .map(wit::Transformed::from);
                    *message = old.into();
                    r
                }
                Guests::V0_2(g, since) => match (&g.transform, &since.batch) {
                    (Some(guest), _) => {
                        guest
                            .clone()
                            .call_on_publish(&mut w.store, client.v0_2(), message)
                            .await
                    }
                    // Only `transform-batch`: a batch of one.
                    (None, Some(guest)) => guest
                        .clone()
                        .call_on_publish_batch(
                            &mut w.store,
                            client.v0_2(),
                            std::slice::from_ref(message),
                        )
                        .await
                        .and_then(|edits| one_edit(edits, 1))
                        .map(|edit| edit_to_transformed(edit, message)),
                    (None, None) => unreachable!("transform loaded when enabled"),
                },
            };
            (w, r)
        })
        .await
    }

    /// Whether the plugin's transform takes batches (it exports `transform-batch`).
    pub fn transforms_in_batches(&self) -> bool {
        matches!(
            self.inner.indices,
            Indices::V0_2(_, Since0_2 { batch: Some(_), .. })
        )
    }

    /// Calls the batch transform hook on `messages` (a plugin that exports
    /// `transform-batch`; see [`Plugin::transforms_in_batches`]): one edit per message,
    /// in order, in one call. Another number of edits is a fault.
    pub(crate) async fn on_publish_batch_wit(
        &self,
        client: &PreparedClient,
        messages: &[wit::Message],
    ) -> Result<Vec<wit::Edit>, Fault> {
        if !self.inner.enabled.transform {
            return Ok(vec![wit::Edit::Keep; messages.len()]);
        }
        self.call("transform", |mut w| async move {
            let r = match &w.guests {
                Guests::V0_2(
                    _,
                    Since0_2 {
                        batch: Some(guest), ..
                    },
                ) => guest
                    .clone()
                    .call_on_publish_batch(&mut w.store, client.v0_2(), messages)
                    .await
                    .and_then(|edits| {
                        if edits.len() == messages.len() {
                            Ok(edits)
                        } else {
                            Err(wasmtime::Error::msg(format!(
                                "on-publish-batch answered {} edits for {} messages",
                                edits.len(),
                                messages.len()
                            )))
                        }
                    }),
                _ => Ok(vec![wit::Edit::Keep; messages.len()]),
            };
            (w, r)
        })
        .await
    }

    /// Runs `f` on a warm instance with a fresh deadline, and sorts out what
    /// happens to the instance and the counters afterwards.
    async fn call<R, Fut>(
        &self,
        hook: &'static str,
        f: impl FnOnce(Warm) -> Fut,
    ) -> Result<R, Fault>
    where
        Fut: Future<Output = (Warm, wasmtime::Result<R>)>,
    {
        let inner = &*self.inner;
        inner.counters.calls.fetch_add(1, Ordering::Relaxed);
        if inner.state.load(Ordering::Relaxed) == DISABLED {
            inner.counters.refused.fetch_add(1, Ordering::Relaxed);
            return Err(Fault::Disabled);
        }
        let started = Instant::now();
        let result = self.call_timed(hook, f).await;
        inner.latency.observe(started.elapsed());
        result
    }

    /// The part of [`Plugin::call`] whose time is recorded: from taking an instance
    /// (or making one) to sorting out what the call left.
    async fn call_timed<R, Fut>(
        &self,
        hook: &'static str,
        f: impl FnOnce(Warm) -> Fut,
    ) -> Result<R, Fault>
    where
        Fut: Future<Output = (Warm, wasmtime::Result<R>)>,
    {
        let inner = &*self.inner;
        let mut warm = match inner.warm.take() {
            Some(warm) => warm,
            None => match self.instantiate().await {
                Ok(warm) => warm,
                Err(fault) => {
                    self.record_fault(hook, &fault);
                    return Err(fault);
                }
            },
        };
        warm.store.set_epoch_deadline(inner.deadline_ticks);
        warm.store.data_mut().sql_waited = Duration::ZERO;
        let (mut warm, result) = f(warm).await;
        match result {
            Ok(r) => {
                // Read before writing: an unconditional store would make every
                // call, from every thread, take the cache line for itself.
                if inner.consecutive_faults.load(Ordering::Relaxed) != 0 {
                    inner.consecutive_faults.store(0, Ordering::Relaxed);
                }
                let state = inner.state.load(Ordering::Relaxed);
                if state == RETRYING {
                    self.back_to_active();
                }
                warm.calls += 1;
                if state == DISABLED {
                    // Disabled while this call ran: the retry starts from fresh
                    // instances only, so this one is not kept.
                } else if warm.calls >= inner.config.limits.calls_per_instance_max {
                    inner
                        .counters
                        .instances_recycled
                        .fetch_add(1, Ordering::Relaxed);
                } else {
                    inner.warm.give(warm);
                }
                Ok(r)
            }
            Err(e) => {
                let fault = self.classify(&e, &warm.store);
                tracing::debug!(plugin = self.name(), hook, error = ?e, "plugin call failed");
                // The instance may be in any state after a fault: never reuse it.
                drop(warm);
                self.record_fault(hook, &fault);
                Err(fault)
            }
        }
    }

    async fn instantiate(&self) -> Result<Warm, Fault> {
        let inner = &*self.inner;
        let state = HostState::new(inner.identity.clone(), inner.memory_bytes_max);
        let mut store = Store::new(&inner.host.engine, state);
        store.limiter(|s| &mut s.memory);
        // Time spent waiting for the database (bounded by its own statement
        // timeout) is not the plugin's: it is given back when the deadline hits.
        // Only whole ticks of real waiting are given back (the rest stays owed),
        // so a loop of quick queries cannot stretch the deadline.
        let tick = Duration::from_millis(inner.host.config.epoch_tick_ms.max(1));
        store.epoch_deadline_callback(move |mut store| {
            let waited = &mut store.data_mut().sql_waited;
            let ticks = (waited.as_nanos() / tick.as_nanos()) as u64;
            if ticks == 0 {
                return Ok(UpdateDeadline::Interrupt);
            }
            *waited = waited.saturating_sub(tick * ticks as u32);
            Ok(UpdateDeadline::Continue(ticks))
        });
        store.set_epoch_deadline(inner.start_ticks);
        let instance = match inner.pre.instantiate_async(&mut store).await {
            Ok(instance) => instance,
            Err(e) => {
                if e.is::<wasmtime::PoolConcurrencyLimitError>() {
                    return Err(Fault::Unavailable(format!("{e}")));
                }
                return Err(match self.classify(&e, &store) {
                    Fault::Timeout(_) => Fault::Timeout(inner.config.limits.start_timeout_ms),
                    fault => fault,
                });
            }
        };
        let guests = match &inner.indices {
            Indices::V0_1(set) => Guests::V0_1(load_hooks!(set, &mut store, &instance)),
            Indices::V0_2(set, since) => {
                let load_err = |e: wasmtime::Error| Fault::Unavailable(format!("{e}"));
                Guests::V0_2(
                    load_hooks!(set, &mut store, &instance),
                    Since0_2 {
                        deliver: match &since.deliver {
                            Some(ix) => Some(ix.load(&mut store, &instance).map_err(load_err)?),
                            None => None,
                        },
                        auth: match &since.auth {
                            Some(ix) => Some(ix.load(&mut store, &instance).map_err(load_err)?),
                            None => None,
                        },
                        batch: match &since.batch {
                            Some(ix) => Some(ix.load(&mut store, &instance).map_err(load_err)?),
                            None => None,
                        },
                    },
                )
            }
        };
        inner
            .counters
            .instances_created
            .fetch_add(1, Ordering::Relaxed);
        Ok(Warm {
            store,
            guests,
            calls: 0,
        })
    }

    fn classify(&self, e: &wasmtime::Error, store: &Store<HostState>) -> Fault {
        if store.data().memory.exceeded {
            return Fault::MemoryLimit(self.inner.memory_bytes_max);
        }
        if let Some(Trap::Interrupt) = e.downcast_ref::<Trap>() {
            return Fault::Timeout(self.inner.config.limits.call_timeout_ms);
        }
        match e.downcast_ref::<Trap>() {
            Some(trap) => Fault::Trap(trap.to_string()),
            None => Fault::Trap(e.to_string()),
        }
    }

    fn record_fault(&self, hook: &'static str, fault: &Fault) {
        let inner = &*self.inner;
        let c = &inner.counters;
        c.faults.fetch_add(1, Ordering::Relaxed);
        match fault {
            Fault::Timeout(_) => c.timeouts.fetch_add(1, Ordering::Relaxed),
            Fault::MemoryLimit(_) => c.memory_limits.fetch_add(1, Ordering::Relaxed),
            Fault::Trap(_) => c.traps.fetch_add(1, Ordering::Relaxed),
            Fault::Unavailable(_) | Fault::Disabled => c.refused.fetch_add(1, Ordering::Relaxed),
        };
        tracing::warn!(plugin = self.name(), hook, %fault, "plugin call failed");
        if !fault.is_plugins_fault() {
            return;
        }
        let in_a_row = inner.consecutive_faults.fetch_add(1, Ordering::Relaxed) + 1;
        let state = inner.state.load(Ordering::Relaxed);
        if state == RETRYING || (state == ACTIVE && in_a_row >= inner.config.faults_to_disable) {
            self.disable(hook, fault, in_a_row, state == RETRYING);
        }
    }

    /// Disables the plugin until its backoff has passed, and starts the timer that
    /// retries it then.
    fn disable(&self, hook: &'static str, fault: &Fault, in_a_row: u32, on_retry: bool) {
        let inner = &*self.inner;
        let retry = &inner.config.retry;
        let (epoch, backoff) = {
            let mut cycle = inner.cycle.lock();
            if inner.state.swap(DISABLED, Ordering::Relaxed) == DISABLED {
                return;
            }
            // At least 1 ms, so that doubling grows it (a plugin that cannot even start
            // must not be retried in a tight loop).
            let initial_ms = retry.backoff_initial_ms.max(1);
            let initial = Duration::from_millis(initial_ms);
            let max = Duration::from_millis(retry.backoff_max_ms.max(initial_ms));
            let reset = Duration::from_millis(retry.reset_after_ms);
            let back_recently = cycle
                .back_since
                .is_some_and(|since| since.elapsed() < reset);
            cycle.backoff = if back_recently {
                (cycle.backoff * 2).clamp(initial, max)
            } else {
                initial
            };
            cycle.epoch += 1;
            cycle.retry_at = SystemTime::now() + cycle.backoff;
            cycle.fault = fault.to_string();
            (cycle.epoch, cycle.backoff)
        };
        inner.warm.clear();
        inner.counters.disables.fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            plugin = self.name(),
            hook,
            %fault,
            faults_in_a_row = in_a_row,
            retry_in_ms = backoff.as_millis() as u64,
            "plugin disabled after {}; retried with a fresh instance in {} ms",
            if on_retry {
                "a fault on its retry"
            } else {
                "repeated faults"
            },
            backoff.as_millis()
        );
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!(
                plugin = self.name(),
                "no tokio runtime to retry the plugin on: it stays disabled until reloaded"
            );
            return;
        };
        // Weak: an unloaded or reloaded plugin is not kept alive, nor retried.
        let weak: Weak<PluginInner> = Arc::downgrade(&self.inner);
        let timer = runtime.spawn(async move {
            tokio::time::sleep(backoff).await;
            if let Some(inner) = weak.upgrade() {
                Plugin { inner }.retry(epoch).await;
            }
        });
        inner.cycle.lock().timer = Some(timer.abort_handle());
    }

    /// After the backoff of disable number `epoch`: lets calls through again and makes
    /// a fresh instance (a plugin that cannot even start is disabled again).
    async fn retry(&self, epoch: u64) {
        let inner = &*self.inner;
        let (fault, backoff) = {
            let mut cycle = inner.cycle.lock();
            if cycle.epoch != epoch || inner.state.load(Ordering::Relaxed) != DISABLED {
                return;
            }
            cycle.back_since = Some(Instant::now());
            cycle.timer = None;
            inner.state.store(RETRYING, Ordering::Relaxed);
            (std::mem::take(&mut cycle.fault), cycle.backoff)
        };
        inner.counters.retries.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            plugin = self.name(),
            disabled_by = fault,
            backoff_ms = backoff.as_millis() as u64,
            "plugin retrying after its backoff, on a fresh instance"
        );
        match self.instantiate().await {
            Ok(warm) => inner.warm.give(warm),
            Err(fault) => self.record_fault("instantiate", &fault),
        }
    }

    /// A clean call on a retried plugin: it is active again.
    fn back_to_active(&self) {
        if self
            .inner
            .state
            .compare_exchange(RETRYING, ACTIVE, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            tracing::info!(plugin = self.name(), "plugin active again after its retry");
        }
    }
}

impl Drop for PluginInner {
    fn drop(&mut self) {
        // The timer holds only a `Weak`; stopping it just frees its task sooner.
        if let Some(timer) = self.cycle.get_mut().timer.take() {
            timer.abort();
        }
    }
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name())
            .field("priority", &self.inner.config.priority)
            .field("hooks", &self.inner.enabled)
            .field("state", &self.state())
            .finish()
    }
}
