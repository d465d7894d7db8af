//! What the plugin host's test binaries share: one host per binary, with the
//! compiled-component cache in the system temp directory, the same for every binary,
//! so reruns (and the other binaries) skip compilation.

use std::sync::OnceLock;

use bytestring::ByteString;
use wasmq_codec::Protocol;
use wasmq_plugin_host::{ClientInfo, HostConfig, PluginHost};

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

/// The client the hooks are asked about: `id`, user name `user`, MQTT 5 from
/// 127.0.0.1:50000 on the plain tcp listener. A test that needs more (a certificate, a
/// listener name, no user name) changes the fields it is about.
pub fn client(id: &str) -> ClientInfo {
    let mut client = ClientInfo::new(
        id.to_string(),
        "127.0.0.1:50000".parse().unwrap(),
        Protocol::V5,
        "tcp",
    );
    client.username = Some(ByteString::from_static("user"));
    client
}
