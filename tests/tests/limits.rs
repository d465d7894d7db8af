//! Limits that protect the broker from one client: subscriptions per session and the
//! number of retained messages.

use std::collections::BTreeSet;

use wasmq_codec::{Packet, Protocol, QoS, ReasonCode, SubscriptionOptions};
use wasmq_tests::{RawClient, TestBroker, publish_packet};

async fn subscriptions_beyond_the_quota_are_refused_per_filter(protocol: Protocol) {
    let broker = TestBroker::start_with(|c| c.limits.max_subscriptions_per_client = 2).await;
    let mut client = RawClient::connected(broker.addr, protocol, "greedy").await;
    let qos0 = SubscriptionOptions::qos(QoS::AtMostOnce);
    let suback = client
        .subscribe(1, &[("a", qos0), ("b", qos0), ("c", qos0)])
        .await;
    let refused = if protocol == Protocol::V5 {
        ReasonCode::QUOTA_EXCEEDED
    } else {
        ReasonCode(0x80)
    };
    assert_eq!(
        suback.reason_codes,
        vec![ReasonCode::SUCCESS, ReasonCode::SUCCESS, refused]
    );
    // Replacing an existing subscription is not a new one.
    let suback = client
        .subscribe(2, &[("a", SubscriptionOptions::qos(QoS::AtLeastOnce))])
        .await;
    assert_eq!(suback.reason_codes, vec![ReasonCode::GRANTED_QOS_1]);
    // The refused filter really was not subscribed.
    let mut publisher = RawClient::connected(broker.addr, protocol, "pub").await;
    publisher
        .send(Packet::Publish(publish_packet(
            "c",
            b"no",
            QoS::AtMostOnce,
            false,
            0,
        )))
        .await
        .unwrap();
    publisher
        .send(Packet::Publish(publish_packet(
            "b",
            b"yes",
            QoS::AtMostOnce,
            false,
            0,
        )))
        .await
        .unwrap();
    assert_eq!(&client.recv_publish().await.payload[..], b"yes");
    client.expect_nothing().await;
}

async fn the_retained_store_is_bounded(protocol: Protocol) {
    let broker = TestBroker::start_with(|c| c.limits.max_retained_messages = 2).await;
    let mut live = RawClient::connected(broker.addr, protocol, "live").await;
    live.subscribe_qos("r/#", QoS::AtMostOnce).await;
    let mut publisher = RawClient::connected(broker.addr, protocol, "pub").await;
    for (topic, payload) in [
        ("r/1", "one"),
        ("r/2", "two"),
        ("r/3", "three"),
        ("r/1", "uno"),
    ] {
        let publish = publish_packet(topic, payload.as_bytes(), QoS::AtMostOnce, true, 0);
        publisher.send(Packet::Publish(publish)).await.unwrap();
        // Not stored is not lost: live subscribers still get it.
        assert_eq!(&live.recv_publish().await.payload[..], payload.as_bytes());
    }
    let mut late = RawClient::connected(broker.addr, protocol, "late").await;
    late.subscribe_qos("r/#", QoS::AtMostOnce).await;
    let mut retained = BTreeSet::new();
    for _ in 0..2 {
        let publish = late.recv_publish().await;
        retained.insert((
            publish.topic.to_string(),
            String::from_utf8(publish.payload.to_vec()).unwrap(),
        ));
    }
    late.expect_nothing().await;
    let expected: BTreeSet<_> = [("r/1", "uno"), ("r/2", "two")]
        .map(|(t, p)| (t.to_string(), p.to_string()))
        .into();
    assert_eq!(retained, expected, "r/3 did not fit; replacing r/1 did");
}

wasmq_tests::both_versions!(
    subscriptions_beyond_the_quota_are_refused_per_filter,
    the_retained_store_is_bounded
);
