//! Batch transforms (`transform-batch`, contract 0.2.0) in a running broker: the
//! PUBLISHes of one read go to the plugin in one call, and what comes out is what one
//! message at a time would give: the same order, every acknowledgement (a dropped QoS 1
//! message included), a changed topic checked as a replaced one is, user properties
//! appended for v5 subscribers, kept messages untouched. Plugins built against 0.1.0, or
//! exporting only `transform`, are still called once per message.
//!
//! Each burst is written in one `write` so the broker reads it in one go (loopback, a
//! few KiB: one read of its 8 KiB chunk).

use std::sync::atomic::Ordering::Relaxed;

use bytes::BytesMut;
use bytestring::ByteString;
use wasmq::config::{AclNomatch, PluginsConfig};
use wasmq::plugins::Plugins;
use wasmq_codec::{Packet, Protocol, QoS, ReasonCode};
use wasmq_plugin_artifacts as artifacts;
use wasmq_tests::{RawClient, TestBroker, publish_packet};

struct Setup {
    broker: TestBroker,
    plugins: Plugins,
    _dir: tempfile::TempDir,
}

/// A broker whose plugin folder holds `plugins` (name, file, `NAME.toml`) from the start.
async fn start(plugins: &[(&str, &str, &str)]) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("plugins");
    std::fs::create_dir_all(&folder).unwrap();
    for (name, wasm, toml) in plugins {
        std::fs::copy(wasm, folder.join(format!("{name}.wasm"))).unwrap();
        if !toml.is_empty() {
            std::fs::write(folder.join(format!("{name}.toml")), toml).unwrap();
        }
    }
    let config = PluginsConfig {
        dir: folder,
        cache_dir: dir.path().join("cache"),
        debounce_ms: 20,
        acl_nomatch: AclNomatch::Allow,
        builtin: Vec::new(),
        ..PluginsConfig::default()
    };
    let started = Plugins::start(&config).await.expect("plugin folder starts");
    assert_eq!(
        started.folder.stats.loads.load(Relaxed),
        plugins.len() as u64,
        "every plugin loads"
    );
    let broker = TestBroker::start_with_hooks(|_| {}, Some(started.hooks())).await;
    Setup {
        broker,
        plugins: started,
        _dir: dir,
    }
}

impl Setup {
    /// The calls made to plugin `name` so far.
    fn calls(&self, name: &str) -> u64 {
        let set = self.plugins.folder.live().chain.current();
        set.get(name).map_or(0, |p| p.stats().calls)
    }
}

/// QoS 1 PUBLISHes to `topics` (packet ids 1, 2, ...; user property `n` = the id),
/// written in one go.
async fn burst(client: &mut RawClient, topics: &[String]) {
    let mut out = BytesMut::new();
    for (i, topic) in topics.iter().enumerate() {
        let id = i as u16 + 1;
        let mut publish = publish_packet(
            topic,
            format!("p{id}").as_bytes(),
            QoS::AtLeastOnce,
            false,
            id,
        );
        publish.properties.user_properties =
            vec![(ByteString::from("n"), ByteString::from(id.to_string()))];
        Packet::Publish(publish).encode(client.protocol(), &mut out);
    }
    client.send_raw(&out).await.unwrap();
}

/// The next `n` PUBACKs, as (packet id, reason code).
async fn pubacks(client: &mut RawClient, n: usize) -> Vec<(u16, ReasonCode)> {
    let mut acks = Vec::new();
    while acks.len() < n {
        match client.recv().await.unwrap() {
            Packet::PubAck(ack) => acks.push((ack.packet_id, ack.reason_code)),
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
    acks
}

fn properties(publish: &wasmq_codec::Publish) -> Vec<(String, String)> {
    publish
        .properties
        .user_properties
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn pair(k: &str, v: impl ToString) -> (String, String) {
    (k.to_string(), v.to_string())
}

#[tokio::test]
async fn a_burst_goes_to_the_plugin_in_one_call_and_comes_out_in_order_with_every_ack() {
    let setup = start(&[("script", artifacts::BATCH_SCRIPT, "")]).await;
    let mut subscriber = RawClient::connected(setup.broker.addr, Protocol::V5, "sub").await;
    subscriber.subscribe_qos("#", QoS::AtLeastOnce).await;
    let mut publisher = RawClient::connected(setup.broker.addr, Protocol::V5, "pub").await;
    let kinds = ["t", "drop", "keep", "move"];
    let topics: Vec<String> = (0..40)
        .map(|i| format!("{}/{}", kinds[i % kinds.len()], i + 1))
        .collect();
    burst(&mut publisher, &topics).await;

    // Every PUBLISH is acknowledged, in order, the dropped ones too (as a per-message
    // drop is: success, the message taken).
    let acks = pubacks(&mut publisher, topics.len()).await;
    let expected: Vec<(u16, ReasonCode)> = (1..=topics.len() as u16)
        .map(|id| (id, ReasonCode::SUCCESS))
        .collect();
    assert_eq!(acks, expected);

    // What is not dropped arrives in the order it was sent, changed as the plugin said.
    let mut batch_sizes = Vec::new();
    for (i, topic) in topics.iter().enumerate() {
        let n = i + 1;
        let kind = kinds[i % kinds.len()];
        if kind == "drop" {
            continue;
        }
        let got = subscriber.recv_publish().await;
        assert_eq!(
            &got.payload[..],
            format!("p{n}").as_bytes(),
            "message {n} in order"
        );
        let props = properties(&got);
        match kind {
            "t" => {
                assert_eq!(&got.topic[..], topic);
                assert_eq!(props.len(), 3, "{props:?}");
                assert_eq!(props[0], pair("n", n));
                assert_eq!(props[1].0, "batch");
                assert_eq!(props[2].0, "index");
                batch_sizes.push(props[1].1.parse::<usize>().unwrap());
            }
            // Kept: exactly as sent.
            "keep" => {
                assert_eq!(&got.topic[..], topic);
                assert_eq!(props, vec![pair("n", n)]);
            }
            "move" => {
                assert_eq!(&got.topic[..], format!("moved/{n}"));
                assert_eq!(props, vec![pair("n", n)], "a topic change adds nothing");
            }
            _ => unreachable!(),
        }
    }
    subscriber.expect_nothing().await;
    assert!(
        batch_sizes.iter().any(|&size| size > 1),
        "the burst came to the plugin in batches: {batch_sizes:?}"
    );
    assert!(
        setup.calls("script") < topics.len() as u64,
        "fewer calls than messages: {}",
        setup.calls("script")
    );
}

#[tokio::test]
async fn a_topic_set_by_a_batch_is_checked_as_a_replaced_one_is() {
    let setup = start(&[("script", artifacts::BATCH_SCRIPT, "")]).await;
    let mut moved = RawClient::connected(setup.broker.addr, Protocol::V5, "moved").await;
    moved.subscribe_qos("moved/#", QoS::AtLeastOnce).await;
    let mut bad = RawClient::connected(setup.broker.addr, Protocol::V5, "bad").await;
    bad.subscribe_qos("bad/#", QoS::AtLeastOnce).await;
    let mut publisher = RawClient::connected(setup.broker.addr, Protocol::V5, "pub").await;
    burst(&mut publisher, &["bad/x".into(), "move/y".into()]).await;
    let acks = pubacks(&mut publisher, 2).await;
    assert_eq!(
        acks,
        vec![(1, ReasonCode::SUCCESS), (2, ReasonCode::SUCCESS)]
    );
    // `bad/+` is no topic name: the original goes, unchanged.
    let got = bad.recv_publish().await;
    assert_eq!(&got.topic[..], "bad/x");
    let got = moved.recv_publish().await;
    assert_eq!(&got.topic[..], "moved/y");
    bad.expect_nothing().await;
    moved.expect_nothing().await;
}

#[tokio::test]
async fn user_properties_a_batch_adds_reach_v5_subscribers_and_v3_ones_get_the_message() {
    let setup = start(&[("script", artifacts::BATCH_SCRIPT, "")]).await;
    let mut v5 = RawClient::connected(setup.broker.addr, Protocol::V5, "v5").await;
    v5.subscribe_qos("t/#", QoS::AtMostOnce).await;
    let mut v3 = RawClient::connected(setup.broker.addr, Protocol::V311, "v3").await;
    v3.subscribe_qos("t/#", QoS::AtMostOnce).await;
    let mut publisher = RawClient::connected(setup.broker.addr, Protocol::V5, "pub").await;
    burst(&mut publisher, &["t/1".into(), "t/2".into(), "t/3".into()]).await;
    pubacks(&mut publisher, 3).await;
    for n in 1..=3 {
        let got = v5.recv_publish().await;
        let props = properties(&got);
        assert_eq!(props[0], pair("n", n));
        assert_eq!(props[1].0, "batch");
        assert_eq!(props[2].0, "index");
        let got = v3.recv_publish().await;
        assert_eq!(&got.topic[..], format!("t/{n}"));
        assert_eq!(&got.payload[..], format!("p{n}").as_bytes());
    }
}

#[tokio::test]
async fn plugins_without_the_batch_hook_are_still_called_once_per_message() {
    // A 0.1.0 plugin alone: the per-message path, as before.
    let setup = start(&[("v01", artifacts::CONTRACT_V0_1, "hooks = [\"transform\"]\n")]).await;
    let mut subscriber = RawClient::connected(setup.broker.addr, Protocol::V5, "sub").await;
    subscriber.subscribe_qos("t/#", QoS::AtMostOnce).await;
    let mut publisher = RawClient::connected(setup.broker.addr, Protocol::V5, "pub").await;
    let topics: Vec<String> = (1..=10).map(|n| format!("t/{n}")).collect();
    burst(&mut publisher, &topics).await;
    pubacks(&mut publisher, 10).await;
    for n in 1..=10 {
        let got = subscriber.recv_publish().await;
        assert_eq!(
            properties(&got),
            vec![
                pair("n", n),
                pair("contract", "0.1.0"),
                pair("listener", "tcp")
            ]
        );
    }
    assert_eq!(setup.calls("v01"), 10);
    drop(setup);

    // Beside a batch plugin: the 0.1.0 one first (priority), once per message; the
    // batch one after it sees its output.
    let setup = start(&[
        (
            "v01",
            artifacts::CONTRACT_V0_1,
            "priority = 0\nhooks = [\"transform\"]\n",
        ),
        ("script", artifacts::BATCH_SCRIPT, "priority = 1\n"),
    ])
    .await;
    let mut subscriber = RawClient::connected(setup.broker.addr, Protocol::V5, "sub").await;
    subscriber.subscribe_qos("#", QoS::AtMostOnce).await;
    let mut publisher = RawClient::connected(setup.broker.addr, Protocol::V5, "pub").await;
    let topics: Vec<String> = (1..=10)
        .map(|n| format!("{}/{n}", if n % 2 == 0 { "drop" } else { "t" }))
        .collect();
    burst(&mut publisher, &topics).await;
    assert_eq!(
        pubacks(&mut publisher, 10).await,
        (1..=10)
            .map(|id| (id, ReasonCode::SUCCESS))
            .collect::<Vec<_>>()
    );
    for n in (1..=10).step_by(2) {
        let got = subscriber.recv_publish().await;
        let props = properties(&got);
        assert_eq!(
            props[..3],
            [
                pair("n", n),
                pair("contract", "0.1.0"),
                pair("listener", "tcp")
            ]
        );
        assert_eq!(props[3].0, "batch");
    }
    subscriber.expect_nothing().await;
    assert_eq!(setup.calls("v01"), 10, "one call per message");
    assert!(setup.calls("script") < 10, "{}", setup.calls("script"));
}
