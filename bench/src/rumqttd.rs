//! rumqttd (bytebeamio/rumqtt), the broker a Rust user would pick instead of Wasmq: the
//! suite runs it beside Mosquitto when it is given its binary (`scripts/bench` builds
//! rumqttd 0.20.0 once into `.cache/rumqttd`).
//!
//! Its config is written for the run: one MQTT 3.1.1 listener on a free loopback port
//! (the suite's clients speak 3.1.1), no TLS or WebSocket listener (the tls and ws rows
//! are not run against it), the suite's limits where it has them, and no wait between
//! two accepts (its sample config waits 1 ms, which would cap the storm at 1,000/s).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use anyhow::Context;

use crate::suite::{
    BrokerProcess, MAX_CONNECTIONS, MAX_INFLIGHT, child_ready, free_port, log_file,
};

/// The version `scripts/bench` installs, quoted in the report.
pub const VERSION: &str = "0.20.0";

/// Starts rumqttd with a config of its own in `dir`.
pub async fn start(bin: &Path, dir: &Path) -> anyhow::Result<BrokerProcess> {
    let port = free_port()?;
    let config = dir.join("rumqttd.toml");
    std::fs::write(
        &config,
        format!(
            "# Written by wasmq-bench: settings equivalent to the Wasmq it is compared with.\n\
             id = 0\n\
             [router]\n\
             id = 0\n\
             max_connections = {MAX_CONNECTIONS}\n\
             max_outgoing_packet_count = 200\n\
             max_segment_size = 104857600\n\
             max_segment_count = 10\n\
             [v4.1]\n\
             name = \"v4-1\"\n\
             listen = \"127.0.0.1:{port}\"\n\
             next_connection_delay_ms = 0\n\
             [v4.1.connections]\n\
             connection_timeout_ms = 60000\n\
             max_payload_size = 1048576\n\
             max_inflight_count = {MAX_INFLIGHT}\n\
             dynamic_filters = true\n"
        ),
    )?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let child = Command::new(bin)
        .arg("--quiet")
        .arg("--config")
        .arg(&config)
        .stdout(log_file(dir, "rumqttd.log")?)
        .stderr(log_file(dir, "rumqttd.err.log")?)
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    Ok(BrokerProcess::new(
        "rumqttd",
        addr,
        child_ready(addr, child).await?,
    ))
}
