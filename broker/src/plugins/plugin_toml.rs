//! `NAME.toml`, the optional settings file beside `NAME.wasm`: chain priority, hooks
//! enabled, limits, capabilities granted and the plugin's own settings.

use std::collections::BTreeMap;

use serde::Deserialize;
use wasmq_plugin_host::{HookSet, OnTransformFault, PluginConfig, ResourceLimits, Retry, SqlGrant};

/// The file's contents; every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginToml {
    /// Chain position: lower runs first (ties in name order). Default 0.
    priority: i32,
    /// The hooks to call, among `authn`, `authz`, `deliver`, `transform`, `auth`. Default: all
    /// exported.
    hooks: Option<Vec<HookName>>,
    /// `keep` (default) or `drop` the message when this plugin's transform fails.
    on_transform_fault: Option<FaultAction>,
    /// Faults in a row after which the plugin is disabled, until its retry. Default 5.
    faults_to_disable: Option<u32>,
    /// When a disabled plugin is tried again.
    retry: RetryToml,
    /// The transform depends only on the client, the topic, the QoS and the retain flag
    /// (not on the payload or the properties): the broker calls it once per connection
    /// and such message and repeats its change for the next ones. Default false.
    transform_per_topic: bool,
    limits: LimitsToml,
    capabilities: CapabilitiesToml,
    /// The SQL statements the plugin may run, by name (needs `capabilities.sql`).
    sql: SqlToml,
    /// The plugin's own settings, read through the `config` capability.
    settings: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum HookName {
    Authn,
    Authz,
    Deliver,
    Transform,
    Auth,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum FaultAction {
    Keep,
    Drop,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct LimitsToml {
    call_timeout_ms: Option<u64>,
    start_timeout_ms: Option<u64>,
    memory_bytes_max: Option<usize>,
    calls_per_instance_max: Option<u64>,
    warm_instances_max: Option<usize>,
}

/// `[retry]`: the backoff of a disabled plugin (defaults: [`Retry::default`]).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RetryToml {
    backoff_initial_ms: Option<u64>,
    backoff_max_ms: Option<u64>,
    reset_after_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct CapabilitiesToml {
    /// Whether the plugin may query the database (`sql` import): `false` (default),
    /// `"read"` (its statements run on read-only connections), `"read-write"` or `true`.
    sql: SqlGrantToml,
}

/// `[capabilities] sql`: a boolean (as before the read grant) or the grant by name.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(untagged)]
enum SqlGrantToml {
    /// `true` is read-write, `false` none.
    Flag(bool),
    Named(SqlGrantName),
}

impl Default for SqlGrantToml {
    fn default() -> Self {
        SqlGrantToml::Flag(false)
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum SqlGrantName {
    None,
    Read,
    ReadWrite,
}

impl SqlGrantToml {
    fn grant(self) -> SqlGrant {
        match self {
            SqlGrantToml::Flag(true) | SqlGrantToml::Named(SqlGrantName::ReadWrite) => {
                SqlGrant::ReadWrite
            }
            SqlGrantToml::Named(SqlGrantName::Read) => SqlGrant::Read,
            SqlGrantToml::Flag(false) | SqlGrantToml::Named(SqlGrantName::None) => SqlGrant::None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SqlToml {
    /// name = "SQL with ? placeholders"; the plugin runs them by name.
    statements: BTreeMap<String, String>,
}

impl PluginToml {
    /// Parses the text of a `NAME.toml`.
    pub fn parse(text: &str) -> Result<PluginToml, toml::de::Error> {
        toml::from_str(text)
    }

    /// The host's configuration of plugin `name`.
    pub fn into_config(self, name: &str) -> PluginConfig {
        let mut config = PluginConfig::new(name);
        let defaults = ResourceLimits::default();
        config.priority = self.priority;
        config.transform_per_topic = self.transform_per_topic;
        if let Some(hooks) = self.hooks {
            config.hooks = HookSet {
                authn: hooks.iter().any(|h| matches!(h, HookName::Authn)),
                authz: hooks.iter().any(|h| matches!(h, HookName::Authz)),
                deliver: hooks.iter().any(|h| matches!(h, HookName::Deliver)),
                transform: hooks.iter().any(|h| matches!(h, HookName::Transform)),
                auth: hooks.iter().any(|h| matches!(h, HookName::Auth)),
            };
        }
        config.on_transform_fault = match self.on_transform_fault {
            Some(FaultAction::Drop) => OnTransformFault::Drop,
            _ => OnTransformFault::Keep,
        };
        if let Some(n) = self.faults_to_disable {
            config.faults_to_disable = n;
        }
        let retry = Retry::default();
        config.retry = Retry {
            backoff_initial_ms: self
                .retry
                .backoff_initial_ms
                .unwrap_or(retry.backoff_initial_ms),
            backoff_max_ms: self.retry.backoff_max_ms.unwrap_or(retry.backoff_max_ms),
            reset_after_ms: self.retry.reset_after_ms.unwrap_or(retry.reset_after_ms),
        };
        config.limits = ResourceLimits {
            call_timeout_ms: self
                .limits
                .call_timeout_ms
                .unwrap_or(defaults.call_timeout_ms),
            start_timeout_ms: self
                .limits
                .start_timeout_ms
                .unwrap_or(defaults.start_timeout_ms),
            memory_bytes_max: self
                .limits
                .memory_bytes_max
                .unwrap_or(defaults.memory_bytes_max),
            calls_per_instance_max: self
                .limits
                .calls_per_instance_max
                .unwrap_or(defaults.calls_per_instance_max),
            warm_instances_max: self
                .limits
                .warm_instances_max
                .unwrap_or(defaults.warm_instances_max),
        };
        config.grant_sql = self.capabilities.sql.grant();
        config.sql_statements = self.sql.statements;
        config.settings = self
            .settings
            .into_iter()
            .map(|(k, v)| {
                // Strings are passed as they are; other values in their TOML form.
                let v = match v {
                    toml::Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, v)
            })
            .collect();
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_maps_to_the_host_config() {
        let toml = PluginToml::parse(
            r#"
            priority = -3
            hooks = ["authz"]
            on_transform_fault = "drop"
            faults_to_disable = 2
            [retry]
            backoff_initial_ms = 250
            backoff_max_ms = 4000
            [limits]
            call_timeout_ms = 7
            start_timeout_ms = 2500
            memory_bytes_max = 1048576
            [capabilities]
            sql = true
            [sql.statements]
            acl = "SELECT allow FROM mqtt_acl WHERE username = ?"
            [settings]
            prefix = "readonly/"
            count = 3
            "#,
        )
        .unwrap();
        let config = toml.into_config("p");
        assert_eq!(config.priority, -3);
        assert_eq!(
            config.hooks,
            HookSet {
                authn: false,
                authz: true,
                deliver: false,
                transform: false,
                auth: false,
            }
        );
        assert_eq!(config.on_transform_fault, OnTransformFault::Drop);
        assert_eq!(config.faults_to_disable, 2);
        assert_eq!(
            config.retry,
            Retry {
                backoff_initial_ms: 250,
                backoff_max_ms: 4000,
                reset_after_ms: Retry::default().reset_after_ms,
            }
        );
        assert_eq!(config.limits.call_timeout_ms, 7);
        assert_eq!(config.limits.start_timeout_ms, 2500);
        assert_eq!(config.limits.memory_bytes_max, 1 << 20);
        assert_eq!(
            config.limits.warm_instances_max,
            ResourceLimits::default().warm_instances_max
        );
        assert_eq!(config.grant_sql, SqlGrant::ReadWrite);
        assert_eq!(
            config.sql_statements["acl"],
            "SELECT allow FROM mqtt_acl WHERE username = ?"
        );
        assert_eq!(config.settings["prefix"], "readonly/");
        assert_eq!(config.settings["count"], "3");
    }

    #[test]
    fn the_sql_grant_is_a_flag_or_a_name() {
        for (text, grant) in [
            ("", SqlGrant::None),
            ("[capabilities]\nsql = false", SqlGrant::None),
            ("[capabilities]\nsql = true", SqlGrant::ReadWrite),
            ("[capabilities]\nsql = \"read\"", SqlGrant::Read),
            ("[capabilities]\nsql = \"read-write\"", SqlGrant::ReadWrite),
            ("[capabilities]\nsql = \"none\"", SqlGrant::None),
        ] {
            let config = PluginToml::parse(text).unwrap().into_config("p");
            assert_eq!(config.grant_sql, grant, "{text}");
        }
        assert!(PluginToml::parse("[capabilities]\nsql = \"write-only\"").is_err());
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(PluginToml::parse("priorty = 1").is_err());
        assert!(PluginToml::parse("[limits]\ntimeout = 1").is_err());
        assert!(PluginToml::parse("hooks = [\"authenticate\"]").is_err());
        assert!(PluginToml::parse("[sql]\nstatement = {}").is_err());
        assert!(PluginToml::parse("[retry]\nbackoff_ms = 1").is_err());
    }
}
