//! What the plugin host's test binaries share: one host per binary, with the
//! compiled-component cache in the system temp directory, the same for every binary,
//! so reruns (and the other binaries) skip compilation.

use std::sync::OnceLock;

use wasmq_plugin_host::{HostConfig, PluginHost};

/// One host for the whole test binary.
pub fn host() -> &'static PluginHost {
    static HOST: OnceLock<PluginHost> = OnceLock::new();
    HOST.get_or_init(|| {
        PluginHost::new(HostConfig {
            cache_dir: Some(std::env::temp_dir().join("wasmq-plugin-host-tests-cache")),
            ..HostConfig::default()
        })
        .expect("plugin host")
    })
}
