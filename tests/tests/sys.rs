//! `$SYS/broker/...`: published every `sys.interval_secs` with plausible values, reaching
//! a `$SYS/broker/#` subscriber and never a `#` subscriber. In MQTT 3.1.1 and 5.0.

use std::collections::HashMap;
use std::time::Duration;

use wasmq_tests::codec::{Packet, Protocol, QoS};
use wasmq_tests::{RawClient, TestBroker, publish_packet};

/// Generates a `v3::<name>` and a `v5::<name>` test calling `<name>(protocol)`.
macro_rules! both_versions {
    ($($name:ident),* $(,)?) => {
        mod v3 {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Protocol::V311).await
            })*
        }
        mod v5 {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Protocol::V5).await
            })*
        }
    };
}

both_versions!(sys_topics_are_published_with_plausible_values);

const COUNTERS: [&str; 5] = [
    "$SYS/broker/clients/connected",
    "$SYS/broker/messages/received",
    "$SYS/broker/messages/sent",
    "$SYS/broker/bytes/received",
    "$SYS/broker/bytes/sent",
];

/// Reads `$SYS` publications until every topic in `wanted` has been seen at least once
/// since the call; returns the latest value of each topic.
async fn read_until_seen(sub: &mut RawClient, wanted: &[&str]) -> HashMap<String, String> {
    let mut values = HashMap::new();
    while !wanted.iter().all(|t| values.contains_key(*t)) {
        let publish = sub.recv_publish().await;
        assert!(publish.topic.starts_with("$SYS/broker/"), "{publish:?}");
        values.insert(
            publish.topic.to_string(),
            String::from_utf8(publish.payload.to_vec()).expect("$SYS values are text"),
        );
    }
    values
}

fn number(values: &HashMap<String, String>, topic: &str) -> u64 {
    values[topic]
        .parse()
        .unwrap_or_else(|_| panic!("{topic} is not a number: {:?}", values[topic]))
}

async fn sys_topics_are_published_with_plausible_values(protocol: Protocol) {
    let broker = TestBroker::start_with(|c| c.sys.interval_secs = 1).await;
    let mut everything = RawClient::connected(broker.addr, protocol, "everything").await;
    everything.subscribe_qos("#", QoS::AtMostOnce).await;
    let mut sys = RawClient::connected(broker.addr, protocol, "sys").await;
    sys.subscribe_qos("$SYS/broker/#", QoS::AtMostOnce).await;

    let mut wanted = vec!["$SYS/broker/version", "$SYS/broker/uptime"];
    wanted.extend(COUNTERS);
    let first = read_until_seen(&mut sys, &wanted).await;
    assert!(
        first["$SYS/broker/version"].starts_with("wasmq "),
        "{first:?}"
    );
    let uptime = first["$SYS/broker/uptime"]
        .strip_suffix(" seconds")
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("uptime: {:?}", first["$SYS/broker/uptime"]));
    assert!(uptime < 60, "uptime {uptime}");
    assert!(
        number(&first, "$SYS/broker/clients/connected") >= 2,
        "{first:?}"
    );
    for counter in COUNTERS {
        number(&first, counter);
    }

    // Publish some traffic; the next publications count it.
    let mut publisher = RawClient::connected(broker.addr, protocol, "pub").await;
    for i in 0..5 {
        publisher
            .send(Packet::Publish(publish_packet(
                &format!("traffic/{i}"),
                &[0; 100],
                QoS::AtMostOnce,
                false,
                0,
            )))
            .await
            .unwrap();
    }
    for _ in 0..5 {
        assert!(
            everything
                .recv_publish()
                .await
                .topic
                .starts_with("traffic/")
        );
    }
    let received_before = number(&first, "$SYS/broker/messages/received");
    let bytes_before = number(&first, "$SYS/broker/bytes/received");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let later = loop {
        let values = read_until_seen(&mut sys, &COUNTERS).await;
        if number(&values, "$SYS/broker/messages/received") >= received_before + 5 {
            break values;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "messages/received never grew by 5: {values:?}"
        );
    };
    assert!(number(&later, "$SYS/broker/bytes/received") >= bytes_before + 500);
    assert!(
        number(&later, "$SYS/broker/messages/sent")
            >= number(&first, "$SYS/broker/messages/sent") + 5
    );
    assert!(number(&later, "$SYS/broker/bytes/sent") > number(&first, "$SYS/broker/bytes/sent"));
    assert!(number(&later, "$SYS/broker/clients/connected") >= 3);

    // Several publications went by: none reached the `#` subscriber [MQTT-4.7.2-1].
    everything.expect_nothing().await;
}
