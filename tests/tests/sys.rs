//! `$SYS/broker/...`: published every `sys.interval_secs` with plausible values, reaching
//! a `$SYS/broker/#` subscriber and never a `#` subscriber. In MQTT 3.1.1 and 5.0.

use std::collections::HashMap;
use std::time::Duration;

use wasmq_tests::codec::{Packet, Protocol, QoS};
use wasmq_tests::{RawClient, TestBroker, publish_packet};

wasmq_tests::both_versions!(sys_topics_are_published_with_plausible_values);

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
    // The first values may be the retained ones of a publication made before these
    // clients connected: only their form is checked here.
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
    // Each check waits for a publication made after the traffic (values of one read may
    // straddle two publications, so every condition is checked on every read).
    let grew = |values: &HashMap<String, String>| {
        let n = |topic| number(values, topic);
        n("$SYS/broker/messages/received") >= number(&first, "$SYS/broker/messages/received") + 5
            && n("$SYS/broker/bytes/received") >= number(&first, "$SYS/broker/bytes/received") + 500
            && n("$SYS/broker/messages/sent") >= number(&first, "$SYS/broker/messages/sent") + 5
            && n("$SYS/broker/bytes/sent") > number(&first, "$SYS/broker/bytes/sent")
            && n("$SYS/broker/clients/connected") == 3
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let values = read_until_seen(&mut sys, &COUNTERS).await;
        if grew(&values) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "$SYS counters did not count the traffic: before {first:?}, now {values:?}"
        );
    }

    // Several publications went by: none reached the `#` subscriber [MQTT-4.7.2-1].
    everything.expect_nothing().await;
}
