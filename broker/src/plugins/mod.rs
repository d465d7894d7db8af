//! The plugin folder and the policy it provides.
//!
//! - [`acl_tables`]: the default plugin's tables, created in the database before
//!   plugins start.
//! - [`builtin`]: the plugins compiled into the binary (the default auth/ACL plugin),
//!   loaded beside the folder's unless a folder file of the same name replaces them.
//! - [`folder`]: scans `plugins.dir` for `NAME.wasm` (+ optional `NAME.toml`, parsed by
//!   [`plugin_toml`]), loads them at start, and watches the folder: a new file loads, a
//!   changed file reloads, a deleted file unloads, with no restart. Each change swaps
//!   the whole plugin set at once ([`LiveChain`]); calls in flight finish on the old set.
//! - [`policy`]: the broker's [`crate::hooks::Hooks`] over the live chain, with the
//!   broker's fallbacks (`allow_anonymous`, `acl_nomatch`); an authorization question
//!   already being asked is not asked again ([`in_flight`]): its askers share the answer.
//!   It is the one place where the broker's types and the plugin host's meet.
//!
//! The configuration is plain data (`crate::config`); what only the plugin system can
//! check in it ([`validate`]) is checked here, when plugins start and the database
//! opens, and by the binary right after it loads a configuration file.

pub mod acl_tables;
pub mod builtin;
pub mod folder;
pub mod in_flight;
pub mod plugin_toml;
pub mod policy;

use std::sync::Arc;

use anyhow::Context;
use wasmq_plugin_host::{self as host, Backend, Chain, Database, PluginSet};

use crate::config::{Config, DatabaseConfig, PluginsConfig};
use crate::hooks::PolicyGeneration;

pub use folder::{PluginFolder, Synced, WatchGuard};
pub use policy::PluginPolicy;

/// The chain the broker calls, and the policy's generation, bumped at every swap so the
/// broker's caches drop what an older set of plugins decided (the broker shares the
/// counter: `Hooks::generation`).
#[derive(Default)]
pub struct LiveChain {
    /// The current plugin set.
    pub chain: Chain,
    generation: PolicyGeneration,
}

impl LiveChain {
    /// Replaces the plugin set and invalidates cached decisions.
    pub fn swap(&self, set: PluginSet) {
        self.chain.swap(set);
        self.generation.bump();
    }

    /// The generation the broker shares; also bumped by its purges.
    pub fn generation(&self) -> &PolicyGeneration {
        &self.generation
    }
}

/// The running plugin system: the folder, the policy the broker calls, and the watcher.
pub struct Plugins {
    /// The plugin folder.
    pub folder: Arc<PluginFolder>,
    /// The broker's hooks.
    pub policy: Arc<PluginPolicy>,
    _watch: Option<WatchGuard>,
}

impl Plugins {
    /// Opens the folder, loads every plugin in it and, if configured, watches it.
    /// No database: plugins granted `sql` get `not-granted`.
    pub async fn start(config: &PluginsConfig) -> anyhow::Result<Plugins> {
        Plugins::start_with_database(config, None).await
    }

    /// [`Plugins::start`] with the database plugins granted `sql` reach (see
    /// [`open_database`]). A name in `builtin` that is no built-in plugin stops it.
    pub async fn start_with_database(
        config: &PluginsConfig,
        database: Option<Arc<Database>>,
    ) -> anyhow::Result<Plugins> {
        let folder = PluginFolder::open(config, database.clone())?;
        folder.load_all().await?;
        let watch = if config.watch {
            Some(folder.watch()?)
        } else {
            None
        };
        let policy = Arc::new(PluginPolicy::new(folder.live(), config, database));
        Ok(Plugins {
            folder,
            policy,
            _watch: watch,
        })
    }

    /// The policy as the broker's hooks.
    pub fn hooks(&self) -> Arc<dyn crate::hooks::Hooks> {
        self.policy.clone()
    }
}

/// What the plugin system refuses in `config` that the configuration alone cannot tell:
/// a name in `[plugins] builtin` that is no built-in plugin, a `[database] url` of no
/// backend the host speaks. [`Plugins::start`] and [`open_database`] refuse them too;
/// this says so before anything starts (the binary asks it as it loads a file).
pub fn validate(config: &Config) -> anyhow::Result<()> {
    builtin::resolve(&config.plugins.builtin)?;
    validate_database_url(&config.database)
}

fn validate_database_url(config: &DatabaseConfig) -> anyhow::Result<()> {
    anyhow::ensure!(
        config.url.trim().is_empty() || Backend::of_url(&config.url).is_some(),
        "database.url must start with sqlite:, mysql: or postgres: (or be empty)"
    );
    Ok(())
}

/// The host's form of `config`, or `None` when no database is configured.
fn host_database_config(config: &DatabaseConfig) -> Option<host::DatabaseConfig> {
    (!config.url.trim().is_empty()).then(|| host::DatabaseConfig {
        url: config.url.clone(),
        pool_max: config.pool_max,
        statement_timeout_ms: config.statement_timeout_ms,
        connect_timeout_ms: config.connect_timeout_ms,
    })
}

/// Opens the configured database (`None` when `url` is empty) and creates the
/// `mqtt_acl` / `mqtt_user` tables if they are missing (a new `mqtt_acl` gets the
/// default rules). A database that cannot be reached stops the start, with the reason.
pub async fn open_database(config: &DatabaseConfig) -> anyhow::Result<Option<Arc<Database>>> {
    validate_database_url(config)?;
    let Some(host_config) = host_database_config(config) else {
        return Ok(None);
    };
    let database = Database::open(&host_config)
        .await
        .context("cannot open the database ([database] url)")?;
    acl_tables::ensure(&database)
        .await
        .with_context(|| format!("cannot create the tables in {}", database.name()))
        .context("cannot create the database tables")?;
    Ok(Some(Arc::new(database)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_defaults_are_the_hosts() {
        let host = host::DatabaseConfig::default();
        assert_eq!(host_database_config(&DatabaseConfig::default()), Some(host));
    }

    #[test]
    fn what_only_the_plugin_system_knows_is_refused() {
        let refused = |text: &str| {
            let config = Config::parse(text).expect("the configuration alone is fine");
            format!("{:#}", validate(&config).unwrap_err())
        };
        let err = refused("[plugins]\nbuiltin = [\"nope\"]\n");
        assert!(
            err.contains("plugins.builtin: no built-in plugin \"nope\" (there are: acl-sql)"),
            "{err}"
        );
        let err = refused("[database]\nurl = \"redis://x\"\n");
        assert!(
            err.contains("database.url must start with sqlite:"),
            "{err}"
        );
        assert!(validate(&Config::default()).is_ok());
        assert!(validate(&Config::parse("[database]\nurl = \"\"\n").unwrap()).is_ok());
    }
}
