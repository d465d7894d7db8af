//! The plugin folder: `NAME.wasm` files (each with an optional `NAME.toml`) loaded at
//! start and kept in step with the folder while the broker runs.
//!
//! Changes are debounced, each file's content (with its settings) is hashed so a touch
//! without a change does nothing, compilation runs on a blocking thread, and the plugin
//! set is swapped whole. A file that fails to load leaves the previous version serving,
//! and the log names the file and the reason. Files whose name starts with `.` are
//! ignored, so writing `.NAME.wasm.tmp` and renaming it is the atomic way to deploy.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::Context;
use notify::Watcher;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tracing::{error, info, warn};
use wasmq_plugin_host::{Database, HostConfig, PluginHost};

use super::LiveChain;
use super::builtin::{self, Builtin};
use super::plugin_toml::PluginToml;
use crate::config::PluginsConfig;

/// Load counters, for logs and tests.
#[derive(Debug, Default)]
pub struct FolderStats {
    /// Plugins loaded or reloaded successfully.
    pub loads: AtomicU64,
    /// Files that failed to load (the previous version, if any, kept serving).
    pub failures: AtomicU64,
    /// Plugins unloaded because their file was removed.
    pub unloads: AtomicU64,
}

/// What [`PluginFolder::sync`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Synced {
    /// Loaded for the first time.
    Loaded,
    /// Loaded again: the new version serves now.
    Reloaded,
    /// Its files did not change: nothing to do.
    Unchanged,
    /// Its file was removed: unloaded.
    Unloaded,
    /// No such plugin: no file, no built-in, nothing loaded.
    Missing,
    /// It could not be loaded (why, with the file); a previous version keeps serving.
    Failed(String),
}

/// The watched plugin folder.
pub struct PluginFolder {
    dir: PathBuf,
    host: PluginHost,
    live: Arc<LiveChain>,
    /// Content hash of what is loaded, by plugin name.
    loaded: Mutex<HashMap<String, u64>>,
    /// Built-in plugins to load when the folder has no file of their name.
    builtins: Vec<&'static Builtin>,
    debounce: Duration,
    /// One sync at a time: the watcher's and the admin API's reloads of one plugin
    /// would otherwise race to swap the set.
    syncing: tokio::sync::Mutex<()>,
    /// Counters.
    pub stats: FolderStats,
}

/// Stops watching the folder when dropped.
pub struct WatchGuard {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PluginFolder {
    /// Creates the folder if missing and starts the plugin host (no plugin loaded yet);
    /// plugins granted `sql` reach `database`, if there is one.
    pub fn open(
        config: &PluginsConfig,
        database: Option<Arc<Database>>,
    ) -> anyhow::Result<Arc<PluginFolder>> {
        let builtins = builtin::resolve(&config.builtin)?;
        std::fs::create_dir_all(&config.dir)
            .with_context(|| format!("cannot create the plugin folder {}", config.dir.display()))?;
        let host = PluginHost::new(HostConfig {
            cache_dir: (!config.cache_dir.as_os_str().is_empty()).then(|| config.cache_dir.clone()),
            database,
            ..HostConfig::default()
        })
        .context("cannot start the plugin host")?;
        Ok(Arc::new(PluginFolder {
            dir: config.dir.clone(),
            host,
            live: Arc::new(LiveChain::default()),
            loaded: Mutex::new(HashMap::new()),
            builtins,
            debounce: Duration::from_millis(config.debounce_ms),
            syncing: tokio::sync::Mutex::new(()),
            stats: FolderStats::default(),
        }))
    }

    /// The chain this folder keeps current.
    pub fn live(&self) -> Arc<LiveChain> {
        self.live.clone()
    }

    /// The folder's path.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Loads every plugin in the folder, and the built-in ones.
    pub async fn load_all(&self) -> anyhow::Result<()> {
        let mut names: HashSet<String> = self.builtins.iter().map(|b| b.name.to_string()).collect();
        for entry in std::fs::read_dir(&self.dir)
            .with_context(|| format!("cannot read the plugin folder {}", self.dir.display()))?
        {
            if let Some(name) = plugin_name(&entry?.path()) {
                names.insert(name);
            }
        }
        let mut names: Vec<String> = names.into_iter().collect();
        names.sort();
        for name in names {
            self.sync(&name).await;
        }
        Ok(())
    }

    /// Brings plugin `name` in step with its files: load, reload or unload. A built-in
    /// plugin stands in for a missing `NAME.wasm` (and its settings for a missing
    /// `NAME.toml`), so removing a folder file that replaced a built-in brings it back.
    pub async fn sync(&self, name: &str) -> Synced {
        self.sync_with(name, false).await
    }

    /// Loads plugin `name` again from its files even if they did not change (the
    /// admin API's reload: a plugin disabled after repeated faults serves again, with
    /// fresh instances and counters). A file that fails to load leaves the previous
    /// version serving, as in [`PluginFolder::sync`].
    pub async fn reload(&self, name: &str) -> Synced {
        self.sync_with(name, true).await
    }

    /// Names of the plugins loaded now, sorted.
    pub fn loaded(&self) -> Vec<String> {
        let mut names: Vec<String> = self.loaded.lock().keys().cloned().collect();
        names.sort();
        names
    }

    async fn sync_with(&self, name: &str, force: bool) -> Synced {
        let _one_at_a_time = self.syncing.lock().await;
        let wasm_path = self.dir.join(format!("{name}.wasm"));
        let toml_path = self.dir.join(format!("{name}.toml"));
        let builtin = self.builtins.iter().find(|b| b.name == name);
        let (wasm, source) = match (std::fs::read(&wasm_path), builtin) {
            (Ok(wasm), _) => (wasm, wasm_path.display().to_string()),
            (Err(e), Some(b)) if e.kind() == ErrorKind::NotFound => {
                (b.wasm.to_vec(), "built-in".to_string())
            }
            (Err(e), None) if e.kind() == ErrorKind::NotFound => {
                if self.loaded.lock().remove(name).is_some() {
                    self.live.swap(self.live.chain.current().without(name));
                    self.stats.unloads.fetch_add(1, Relaxed);
                    info!(
                        plugin = name,
                        "plugin unloaded: {} was removed",
                        wasm_path.display()
                    );
                    return Synced::Unloaded;
                }
                return Synced::Missing;
            }
            (Err(e), _) => {
                return self.failed(&wasm_path, &format!("cannot read it: {e}"));
            }
        };
        let settings = match std::fs::read_to_string(&toml_path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == ErrorKind::NotFound => builtin.map(|b| b.settings.to_string()),
            Err(e) => {
                return self.failed(&toml_path, &format!("cannot read it: {e}"));
            }
        };
        let hash = content_hash(&wasm, settings.as_deref());
        let previous = self.loaded.lock().get(name).copied();
        if previous == Some(hash) && !force {
            return Synced::Unchanged;
        }
        let config = match settings.as_deref().map(PluginToml::parse).transpose() {
            Ok(toml) => toml.unwrap_or_default().into_config(name),
            Err(e) => {
                return self.failed(&toml_path, &e.to_string());
            }
        };
        let started = Instant::now();
        match self.host.load_async(config, wasm).await {
            Ok(plugin) => {
                let (hooks, capabilities) = (plugin.hooks(), plugin.capabilities());
                self.live.swap(self.live.chain.current().with(plugin));
                self.loaded.lock().insert(name.to_string(), hash);
                self.stats.loads.fetch_add(1, Relaxed);
                info!(
                    plugin = name,
                    %hooks,
                    %capabilities,
                    load_ms = started.elapsed().as_millis() as u64,
                    %source,
                    "plugin {}",
                    if previous.is_some() { "reloaded" } else { "loaded" }
                );
                if previous.is_some() {
                    Synced::Reloaded
                } else {
                    Synced::Loaded
                }
            }
            Err(e) => {
                let keeping = if previous.is_some() {
                    "; the previous version keeps serving"
                } else {
                    ""
                };
                self.failed(&wasm_path, &format!("{e}{keeping}"))
            }
        }
    }

    fn failed(&self, path: &Path, why: &str) -> Synced {
        self.stats.failures.fetch_add(1, Relaxed);
        error!(file = %path.display(), "plugin not loaded: {why}");
        Synced::Failed(format!("{}: {why}", path.display()))
    }

    /// Watches the folder until the guard is dropped.
    pub fn watch(self: &Arc<Self>) -> anyhow::Result<WatchGuard> {
        let pending: Arc<Mutex<HashSet<String>>> = Arc::default();
        let wake = Arc::new(Notify::new());
        let mut watcher = {
            let (pending, wake) = (pending.clone(), wake.clone());
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
                // Reads are not changes. Without this, `sync`'s own read of a plugin
                // file (an open/close-nowrite event) woke the watcher, which read the file
                // again: every plugin once reloaded was re-read and hashed every
                // `debounce_ms`, forever (found by the plugin reload benchmark).
                Ok(event) if event.kind.is_access() => {}
                Ok(event) => {
                    let names: Vec<String> =
                        event.paths.iter().filter_map(|p| plugin_name(p)).collect();
                    if !names.is_empty() {
                        pending.lock().extend(names);
                        wake.notify_one();
                    }
                }
                Err(e) => warn!(error = %e, "plugin folder watch error"),
            })?
        };
        watcher
            .watch(&self.dir, notify::RecursiveMode::NonRecursive)
            .with_context(|| format!("cannot watch the plugin folder {}", self.dir.display()))?;
        let folder = self.clone();
        let task = tokio::spawn(async move {
            loop {
                wake.notified().await;
                // Let a burst of events (a copy in several writes, a wasm and its toml)
                // settle before reading the files.
                tokio::time::sleep(folder.debounce).await;
                let mut names: Vec<String> = pending.lock().drain().collect();
                names.sort();
                for name in names {
                    folder.sync(&name).await;
                }
            }
        });
        info!(dir = %self.dir.display(), "watching the plugin folder");
        Ok(WatchGuard {
            _watcher: watcher,
            task,
        })
    }
}

/// `NAME` for `NAME.wasm` or `NAME.toml`; `None` for other and hidden files.
fn plugin_name(path: &Path) -> Option<String> {
    let extension = path.extension()?.to_str()?;
    if extension != "wasm" && extension != "toml" {
        return None;
    }
    let stem = path.file_stem()?.to_str()?;
    (!stem.is_empty() && !stem.starts_with('.')).then(|| stem.to_string())
}

fn content_hash(wasm: &[u8], settings: Option<&str>) -> u64 {
    let mut hasher = DefaultHasher::new();
    wasm.hash(&mut hasher);
    settings.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_names_come_from_wasm_and_toml_files_only() {
        assert_eq!(
            plugin_name(Path::new("/p/acl.wasm")).as_deref(),
            Some("acl")
        );
        assert_eq!(
            plugin_name(Path::new("/p/acl.toml")).as_deref(),
            Some("acl")
        );
        assert_eq!(plugin_name(Path::new("/p/.acl.wasm")), None);
        assert_eq!(plugin_name(Path::new("/p/acl.wasm.tmp")), None);
        assert_eq!(plugin_name(Path::new("/p/readme.md")), None);
        assert_eq!(plugin_name(Path::new("/p/Cargo")), None);
    }
}
