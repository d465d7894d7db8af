//! [`PluginHost`]: the one wasmtime `Engine` (pooling allocator, epoch
//! interruption, async), the `Linker` with WASI and the Wasmq capabilities,
//! the epoch ticker thread, and the compiled-component cache. Loading a
//! plugin (compile, inspect, link) happens here; calling it happens in
//! [`crate::plugin`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::bindings::{v0_1, v0_2};
use crate::cache::{Cache, CacheStats};
use crate::check::{Inspection, Report, inspect};
use crate::database::Database;
use crate::error::{HostError, LoadError};
use crate::plugin::{Plugin, PluginConfig};
use crate::state::HostState;

/// Settings of the whole host (every plugin shares them).
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// How often the epoch advances. Call deadlines are counted in ticks, so
    /// this is their granularity: a call may overrun its limit by up to one tick.
    pub epoch_tick_ms: u64,
    /// The ceiling on any one plugin's linear memory; a plugin's own
    /// `ResourceLimits::memory_bytes_max` is capped by it. It sizes the pooling
    /// allocator's memory slots.
    pub memory_bytes_max: usize,
    /// How many plugin instances may be alive at once, over all plugins (the
    /// pooling allocator's capacity). Warm instances count.
    pub instances_max: u32,
    /// Where compiled components are cached (`None`: no cache). Created if missing.
    pub cache_dir: Option<PathBuf>,
    /// The database behind the `sql` capability (`None`: a plugin granted `sql`
    /// gets `not-granted` from every query, and the log says why).
    pub database: Option<Arc<Database>>,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            epoch_tick_ms: 5,
            memory_bytes_max: 256 << 20,
            instances_max: 128,
            cache_dir: None,
            database: None,
        }
    }
}

/// Loads plugins. Cheap to clone; plugins keep it alive (they need its engine
/// and its epoch ticker).
#[derive(Clone)]
pub struct PluginHost {
    pub(crate) inner: Arc<HostInner>,
}

pub(crate) struct HostInner {
    pub engine: Engine,
    pub linker: Linker<HostState>,
    pub cache: Option<Cache>,
    pub config: HostConfig,
    _ticker: EpochTicker,
}

impl PluginHost {
    /// Builds the engine, the linker and the cache, and starts the epoch ticker.
    pub fn new(config: HostConfig) -> Result<Self, HostError> {
        let engine =
            Engine::new(&engine_config(&config)).map_err(|e| HostError::Engine(e.to_string()))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| HostError::Engine(e.to_string()))?;
        // Every contract version the host loads: their interfaces have names of their
        // own (`wasmq:plugin/log@0.1.0`, `...@0.2.0`), and a component links to the
        // version it was built against.
        v0_2::FullPlugin::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| HostError::Engine(e.to_string()))?;
        v0_1::FullPlugin::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| HostError::Engine(e.to_string()))?;
        let cache = match &config.cache_dir {
            Some(dir) => {
                Some(Cache::open(dir, &engine).map_err(|e| HostError::Cache(dir.clone(), e))?)
            }
            None => None,
        };
        let ticker = EpochTicker::start(
            engine.clone(),
            Duration::from_millis(config.epoch_tick_ms.max(1)),
        );
        Ok(PluginHost {
            inner: Arc::new(HostInner {
                engine,
                linker,
                cache,
                config,
                _ticker: ticker,
            }),
        })
    }

    /// Compiles (or takes from the cache), inspects and links `wasm`, without
    /// running it. CPU-heavy: call it off the async runtime
    /// (`spawn_blocking`), or use [`PluginHost::load_async`].
    pub fn load(&self, config: PluginConfig, wasm: &[u8]) -> Result<Plugin, LoadError> {
        let component = self.component(wasm)?;
        let inspection = inspect(&self.inner.engine, &component);
        if !inspection.problems.is_empty() {
            return Err(LoadError::Invalid(inspection.problems.join("; ")));
        }
        Plugin::new(self.inner.clone(), config, component, inspection)
    }

    /// [`PluginHost::load`] on a blocking thread, then one instance created
    /// to prove the plugin starts (a trap at start is a load error) and kept warm.
    pub async fn load_async(
        &self,
        config: PluginConfig,
        wasm: Vec<u8>,
    ) -> Result<Plugin, LoadError> {
        let host = self.clone();
        let plugin = tokio::task::spawn_blocking(move || host.load(config, &wasm))
            .await
            .map_err(|e| LoadError::Invalid(format!("loader task failed: {e}")))??;
        plugin.warm_up().await?;
        // Asked once, at load: a CONNECT picks its plugin by method.
        plugin.auth_methods().await?;
        Ok(plugin)
    }

    /// Reads the file at `path` and [`PluginHost::load`]s it.
    pub fn load_file(&self, config: PluginConfig, path: &Path) -> Result<Plugin, LoadError> {
        let wasm = std::fs::read(path).map_err(|e| LoadError::Read(path.to_path_buf(), e))?;
        self.load(config, &wasm)
    }

    /// What `wasm` exports and imports, or what is wrong with it.
    pub fn check(&self, wasm: &[u8]) -> Report {
        match self.component(wasm) {
            Ok(component) => {
                inspect(&self.inner.engine, &component).into_report(&self.inner.linker, &component)
            }
            Err(e) => Report::broken(e.to_string()),
        }
    }

    /// Cache hits, misses and writes since the host started.
    pub fn cache_stats(&self) -> CacheStats {
        self.inner
            .cache
            .as_ref()
            .map(Cache::stats)
            .unwrap_or_default()
    }

    fn component(&self, wasm: &[u8]) -> Result<Component, LoadError> {
        match &self.inner.cache {
            Some(cache) => cache.get_or_compile(&self.inner.engine, wasm),
            None => Component::new(&self.inner.engine, wasm).map_err(|e| LoadError::compile(&e)),
        }
    }
}

/// Checks the component at `path` with a default host: which hooks it
/// exports and which capabilities it imports, or what is wrong with it.
/// This is what `wasmq plugin check FILE` prints.
pub fn check(path: &Path) -> Result<Report, LoadError> {
    let wasm = std::fs::read(path).map_err(|e| LoadError::Read(path.to_path_buf(), e))?;
    let host = PluginHost::new(HostConfig {
        instances_max: 4,
        ..HostConfig::default()
    })
    .map_err(|e| LoadError::Invalid(e.to_string()))?;
    Ok(host.check(&wasm))
}

impl Inspection {
    fn into_report(self, linker: &Linker<HostState>, component: &Component) -> Report {
        let mut report = Report {
            contract: self.contract,
            hooks: self.hooks,
            capabilities: self.capabilities,
            wasi_imports: self.wasi_imports,
            problems: self.problems,
            compiled: true,
        };
        if report.problems.is_empty()
            && let Err(e) = linker.instantiate_pre(component)
        {
            report.problems.push(format!("cannot link: {e}"));
        }
        report
    }
}

fn engine_config(host: &HostConfig) -> Config {
    let instances = host.instances_max.max(1);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(instances)
        // A Rust component has a handful of core instances (the module and
        // the shims wit-component adds); other toolchains add adapters.
        .max_core_instances_per_component(32)
        .total_core_instances(instances * 8)
        .max_memories_per_component(4)
        .total_memories(instances * 2)
        .max_tables_per_component(16)
        .total_tables(instances * 4)
        .total_stacks(instances)
        // Every async call runs on a fiber stack from the pool; keeping the
        // top of it resident spares a page fault per call on reuse.
        .async_stack_keep_resident(128 << 10)
        .max_memory_size(host.memory_bytes_max);
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

/// Advances the engine's epoch every tick on a thread of its own; dropping
/// the ticker stops the thread (the channel's sender goes away).
struct EpochTicker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine, tick: Duration) -> Self {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("wasmq-epoch".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(tick) {
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch ticker thread");
        EpochTicker {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
