//! Nanoseconds per warm hook call: the cost the broker pays per PUBLISH for
//! one plugin, on an instance that is already warm.
//!
//!     cargo bench -p wasmq-plugin-host --bench warm_call
//!
//! Prints, for each case, the median over batches of the time per call. Not
//! a test: nothing is asserted.

use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmq_codec::{Protocol, Publish, QoS};
use wasmq_plugin_artifacts as artifacts;
use wasmq_plugin_host::{
    Action, Chain, ClientInfo, HostConfig, PluginConfig, PluginHost, PluginSet,
};

const BATCHES: usize = 15;

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let host = PluginHost::new(HostConfig::default()).unwrap();
    let acl = host
        .load(
            PluginConfig::new("readonly-acl"),
            &std::fs::read(artifacts::READONLY_ACL).unwrap(),
        )
        .unwrap();
    let stamp = host
        .load(
            PluginConfig::new("stamp"),
            &std::fs::read(artifacts::STAMP).unwrap(),
        )
        .unwrap();
    let keep = host
        .load(
            PluginConfig::new("keep").setting("transform", "keep"),
            &std::fs::read(artifacts::SCRIPTED).unwrap(),
        )
        .unwrap();
    let chain = Chain::new(PluginSet::new(vec![acl.clone()]));
    let mut client = ClientInfo::new(
        "sensor-42",
        "127.0.0.1:50000".parse().unwrap(),
        Protocol::V5,
        "tcp",
    );
    client.username = Some("sensor".into());
    let message = Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: "sensors/42/temp".into(),
        packet_id: 1,
        payload: Bytes::from(vec![b'x'; 64]),
        properties: Default::default(),
    };

    runtime.block_on(async {
        report(
            "authz, Plugin::authorize (readonly-acl, ignore)",
            20_000,
            async || {
                acl.authorize(&client, Action::Publish, "sensors/42/temp", 1, false)
                    .await
                    .unwrap();
            },
        )
        .await;
        report("authz, Chain::authorize (one plugin)", 20_000, async || {
            chain
                .authorize(&client, Action::Publish, "sensors/42/temp", 1, false)
                .await;
        })
        .await;
        report(
            "transform, Plugin::on_publish (scripted, keep)",
            20_000,
            async || {
                keep.on_publish(&client, &message).await.unwrap();
            },
        )
        .await;
        report(
            "transform, Plugin::on_publish (stamp, replace)",
            20_000,
            async || {
                stamp.on_publish(&client, &message).await.unwrap();
            },
        )
        .await;
    });
}

async fn report(name: &str, calls: u32, mut call: impl AsyncFnMut()) {
    for _ in 0..calls / 10 {
        call().await; // warm up: instance, caches, branch predictors
    }
    let mut per_call: Vec<Duration> = Vec::with_capacity(BATCHES);
    for _ in 0..BATCHES {
        let started = Instant::now();
        for _ in 0..calls {
            call().await;
        }
        per_call.push(started.elapsed() / calls);
    }
    per_call.sort();
    let median = per_call[BATCHES / 2];
    println!(
        "{name:<52} {:>7} ns/call (median of {BATCHES} batches of {calls}; min {} ns, max {} ns)",
        median.as_nanos(),
        per_call[0].as_nanos(),
        per_call[BATCHES - 1].as_nanos()
    );
}
