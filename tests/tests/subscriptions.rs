//! Subscriptions: wildcards, `$`-topics, overlapping subscriptions, the v5 subscription
//! options (No Local, Retain As Published, Retain Handling), subscription identifiers,
//! shared subscriptions, unsubscribe and invalid filters. Each in MQTT 3.1.1 and 5.0 where
//! the behaviour exists in both.

use std::collections::{BTreeSet, HashSet};

use bytestring::ByteString;
use tokio::sync::mpsc;
use wasmq::metrics::Metrics;
use wasmq_tests::codec::{
    Packet, Protocol, PubAckBody, Publish, QoS, ReasonCode, RetainHandling, Subscribe,
    SubscribeProperties, SubscriptionOptions, Unsubscribe,
};
use wasmq_tests::{RawClient, TestBroker, WAIT, connect_packet, publish_packet};

wasmq_tests::both_versions!(
    single_and_multi_level_wildcards,
    dollar_topics_are_not_matched_by_leading_wildcards,
    overlapping_subscriptions_deliver_one_copy_at_the_highest_qos,
    shared_subscription_member_leaving_loses_nothing,
    shared_subscription_member_unsubscribing_hands_over_its_queue,
    the_last_shared_member_leaving_drops_its_share_and_counts_it,
    unsubscribe,
    invalid_filters_are_refused_per_filter,
    live_messages_are_forwarded_with_retain_0_by_default,
);

async fn publish(client: &mut RawClient, topic: &str, payload: &[u8]) {
    client
        .send(Packet::Publish(publish_packet(
            topic,
            payload,
            QoS::AtMostOnce,
            false,
            0,
        )))
        .await
        .unwrap();
}

/// Publishes at QoS 1 and waits for the PUBACK, so later checks see it routed.
async fn publish_acked(client: &mut RawClient, publish: Publish) {
    let packet_id = publish.packet_id;
    client.send(Packet::Publish(publish)).await.unwrap();
    match client.recv().await.unwrap() {
        Packet::PubAck(ack) => assert_eq!(ack.packet_id, packet_id),
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

async fn subscribe_with_id(
    client: &mut RawClient,
    packet_id: u16,
    filter: &str,
    options: SubscriptionOptions,
    id: Option<u32>,
) -> Vec<ReasonCode> {
    client
        .send(Packet::Subscribe(Subscribe {
            packet_id,
            filters: vec![(ByteString::from(filter), options)],
            properties: SubscribeProperties {
                subscription_identifier: id,
                ..Default::default()
            },
        }))
        .await
        .unwrap();
    match client.recv().await.unwrap() {
        Packet::SubAck(suback) => {
            assert_eq!(suback.packet_id, packet_id);
            suback.reason_codes
        }
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

async fn single_and_multi_level_wildcards(protocol: Protocol) {
    let broker = TestBroker::start().await;
    let mut sub = RawClient::connected(broker.addr, protocol, "sub").await;
    let suback = sub
        .subscribe(
            1,
            &[
                ("a/+/c", SubscriptionOptions::qos(QoS::AtMostOnce)),
                ("x/#", SubscriptionOptions::qos(QoS::AtMostOnce)),
                ("+", SubscriptionOptions::qos(QoS::AtMostOnce)),
            ],
        )
        .await;
    assert_eq!(suback.reason_codes, [ReasonCode::SUCCESS; 3]);
    let mut publisher = RawClient::connected(broker.addr, protocol, "pub").await;
    let cases = [
        ("a/b/c", true),
        ("a//c", true),
        ("a/b/d", false),
        ("a/b/c/d", false),
        ("a/c", false),
        ("x", true), // `x/#` also matches the parent level [MQTT-4.7.1-2]
        ("x/y", true),
        ("x/y/z/w", true),
        ("xy", true), // through `+`
        ("y/x", false),
        ("/x", false), // two levels: `+` matches one only
    ];
    for (topic, _) in cases {
        publish(&mut publisher, topic, b"w").await;
    }
    let expected: Vec<&str> = cases.iter().filter(|c| c.1).map(|c| c.0).collect();
    for topic in expected {
        assert_eq!(sub.recv_publish().await.topic, topic);
    }
    sub.expect_nothing().await;
}

async fn dollar_topics_are_not_matched_by_leading_wildcards(protocol: Protocol) {
    let broker = TestBroker::start().await;
    let mut wild = RawClient::connected(broker.addr, protocol, "wild").await;
    wild.subscribe(
        1,
        &[
            ("#", SubscriptionOptions::qos(QoS::AtMostOnce)),
            ("+/x", SubscriptionOptions::qos(QoS::AtMostOnce)),
            ("+/+", SubscriptionOptions::qos(QoS::AtMostOnce)),
        ],
    )
    .await;
    let mut sys = RawClient::connected(broker.addr, protocol, "sys").await;
    sys.subscribe(
        1,
        &[
            ("$SYS/#", SubscriptionOptions::qos(QoS::AtMostOnce)),
            ("$test/+", SubscriptionOptions::qos(QoS::AtMostOnce)),
        ],
    )
    .await;
    let mut publisher = RawClient::connected(broker.addr, protocol, "pub").await;
    publish(&mut publisher, "$SYS/x", b"1").await;
    publish(&mut publisher, "$test/x", b"2").await;
    publish(&mut publisher, "plain/x", b"3").await;

    assert_eq!(sys.recv_publish().await.topic, "$SYS/x");
    assert_eq!(sys.recv_publish().await.topic, "$test/x");
    sys.expect_nothing().await;
    // The wildcard subscriber gets only the ordinary topic (once, overlapping filters).
    assert_eq!(wild.recv_publish().await.topic, "plain/x");
    wild.expect_nothing().await;
}

async fn overlapping_subscriptions_deliver_one_copy_at_the_highest_qos(protocol: Protocol) {
    let broker = TestBroker::start().await;
    let mut sub = RawClient::connected(broker.addr, protocol, "sub").await;
    let v5 = protocol == Protocol::V5;
    let filters = [
        ("over/#", QoS::AtMostOnce, 1),
        ("over/+", QoS::ExactlyOnce, 2),
        ("over/a", QoS::AtLeastOnce, 3),
    ];
    for (i, (filter, qos, id)) in filters.into_iter().enumerate() {
        let codes = subscribe_with_id(
            &mut sub,
            i as u16 + 1,
            filter,
            SubscriptionOptions::qos(qos),
            v5.then_some(id),
        )
        .await;
        assert_eq!(codes, [ReasonCode(qos as u8)]);
    }
    let mut publisher = RawClient::connected(broker.addr, protocol, "pub").await;
    publisher
        .send(Packet::Publish(publish_packet(
            "over/a",
            b"o",
            QoS::ExactlyOnce,
            false,
            1,
        )))
        .await
        .unwrap();

    let got = sub.recv_publish().await;
    assert_eq!(got.topic, "over/a");
    assert_eq!(got.qos, QoS::ExactlyOnce);
    if v5 {
        let ids: BTreeSet<u32> = got
            .properties
            .subscription_identifiers
            .iter()
            .copied()
            .collect();
        assert_eq!(ids, BTreeSet::from([1, 2, 3]), "{got:?}");
    }
    sub.expect_nothing().await;
}

async fn live_messages_are_forwarded_with_retain_0_by_default(protocol: Protocol) {
    let broker = TestBroker::start().await;
    let mut sub = RawClient::connected(broker.addr, protocol, "sub").await;
    sub.subscribe_qos("live", QoS::AtMostOnce).await;
    let mut publisher = RawClient::connected(broker.addr, protocol, "pub").await;
    publisher
        .send(Packet::Publish(publish_packet(
            "live",
            b"r",
            QoS::AtMostOnce,
            true,
            0,
        )))
        .await
        .unwrap();
    // A message forwarded to an existing subscription goes out with RETAIN 0
    // [MQTT-3.3.1-9] (v5: unless Retain As Published).
    let got = sub.recv_publish().await;
    assert_eq!(got.payload, &b"r"[..]);
    assert!(!got.retain);
}

#[tokio::test]
async fn v5_no_local() {
    let broker = TestBroker::start().await;
    let mut me = RawClient::connected(broker.addr, Protocol::V5, "me").await;
    let options = SubscriptionOptions {
        no_local: true,
        ..SubscriptionOptions::qos(QoS::AtMostOnce)
    };
    me.subscribe(1, &[("nl/+", options)]).await;
    me.subscribe_qos("control/+", QoS::AtMostOnce).await;
    let mut other = RawClient::connected(broker.addr, Protocol::V5, "other").await;

    publish(&mut me, "nl/mine", b"1").await;
    publish(&mut me, "control/mine", b"2").await;
    publish(&mut other, "nl/theirs", b"3").await;
    assert_eq!(me.recv_publish().await.topic, "control/mine");
    assert_eq!(me.recv_publish().await.topic, "nl/theirs");
    me.expect_nothing().await;
}

#[tokio::test]
async fn v5_retain_as_published() {
    let broker = TestBroker::start().await;
    let mut sub = RawClient::connected(broker.addr, Protocol::V5, "sub").await;
    let rap = SubscriptionOptions {
        retain_as_published: true,
        ..SubscriptionOptions::qos(QoS::AtMostOnce)
    };
    sub.subscribe(1, &[("rap/keep", rap)]).await;
    sub.subscribe_qos("rap/clear", QoS::AtMostOnce).await;
    let mut publisher = RawClient::connected(broker.addr, Protocol::V5, "pub").await;
    for topic in ["rap/keep", "rap/clear"] {
        publisher
            .send(Packet::Publish(publish_packet(
                topic,
                b"r",
                QoS::AtMostOnce,
                true,
                0,
            )))
            .await
            .unwrap();
    }
    let keep = sub.recv_publish().await;
    assert_eq!((&*keep.topic, keep.retain), ("rap/keep", true));
    let clear = sub.recv_publish().await;
    assert_eq!((&*clear.topic, clear.retain), ("rap/clear", false));
    // Not retained when published: RETAIN stays 0 even with Retain As Published.
    publish(&mut publisher, "rap/keep", b"n").await;
    let plain = sub.recv_publish().await;
    assert_eq!((&*plain.payload, plain.retain), (&b"n"[..], false));
}

#[tokio::test]
async fn v5_retain_handling() {
    let broker = TestBroker::start().await;
    let mut publisher = RawClient::connected(broker.addr, Protocol::V5, "pub").await;
    publisher
        .send(Packet::Publish(publish_packet(
            "rh/t",
            b"kept",
            QoS::AtMostOnce,
            true,
            0,
        )))
        .await
        .unwrap();
    let with = |retain_handling| SubscriptionOptions {
        retain_handling,
        ..SubscriptionOptions::qos(QoS::AtMostOnce)
    };
    let mut sub = RawClient::connected(broker.addr, Protocol::V5, "sub").await;
    // Wait until the retained message is stored: a first subscriber sees it.
    sub.subscribe(1, &[("rh/#", with(RetainHandling::SendAtSubscribe))])
        .await;
    assert_eq!(sub.recv_publish().await.payload, &b"kept"[..]);

    // 0: sent at every subscribe, new or not.
    sub.subscribe(2, &[("rh/#", with(RetainHandling::SendAtSubscribe))])
        .await;
    let again = sub.recv_publish().await;
    assert!(again.retain);
    // 1: sent only when the subscription is new.
    sub.subscribe(3, &[("rh/+", with(RetainHandling::SendIfNew))])
        .await;
    assert_eq!(sub.recv_publish().await.topic, "rh/t");
    sub.subscribe(4, &[("rh/+", with(RetainHandling::SendIfNew))])
        .await;
    sub.expect_nothing().await;
    // 2: never sent.
    sub.subscribe(5, &[("rh/t", with(RetainHandling::DoNotSend))])
        .await;
    sub.expect_nothing().await;
}

#[tokio::test]
async fn v5_subscription_identifiers() {
    let broker = TestBroker::start().await;
    let mut sub = RawClient::connected(broker.addr, Protocol::V5, "sub").await;
    let qos0 = SubscriptionOptions::qos(QoS::AtMostOnce);
    subscribe_with_id(&mut sub, 1, "sid/a", qos0, Some(42)).await;
    subscribe_with_id(&mut sub, 2, "sid/b", qos0, None).await;
    subscribe_with_id(&mut sub, 3, "sid/c", qos0, Some(268_435_455)).await;
    let mut publisher = RawClient::connected(broker.addr, Protocol::V5, "pub").await;
    for topic in ["sid/a", "sid/b", "sid/c"] {
        publish(&mut publisher, topic, b"s").await;
    }
    let a = sub.recv_publish().await;
    assert_eq!(a.properties.subscription_identifiers, [42]);
    let b = sub.recv_publish().await;
    assert!(b.properties.subscription_identifiers.is_empty(), "{b:?}");
    let c = sub.recv_publish().await;
    assert_eq!(c.properties.subscription_identifiers, [268_435_455]);

    // Subscribing again replaces the identifier.
    subscribe_with_id(&mut sub, 4, "sid/a", qos0, Some(7)).await;
    publish(&mut publisher, "sid/a", b"s").await;
    assert_eq!(
        sub.recv_publish().await.properties.subscription_identifiers,
        [7]
    );
}

#[tokio::test]
async fn v5_no_local_on_a_shared_subscription_is_a_protocol_error() {
    let broker = TestBroker::start().await;
    let mut sub = RawClient::connected(broker.addr, Protocol::V5, "sub").await;
    let options = SubscriptionOptions {
        no_local: true,
        ..SubscriptionOptions::qos(QoS::AtMostOnce)
    };
    sub.send(Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: vec![(ByteString::from("$share/g/t"), options)],
        properties: Default::default(),
    }))
    .await
    .unwrap();
    match sub.until_closed().await.as_slice() {
        [Packet::Disconnect(d)] => assert_eq!(d.reason_code, ReasonCode::PROTOCOL_ERROR),
        other => panic!("expected DISCONNECT 0x82, got {other:?}"),
    }
}

async fn unsubscribe(protocol: Protocol) {
    let broker = TestBroker::start().await;
    let mut sub = RawClient::connected(broker.addr, protocol, "sub").await;
    sub.subscribe_qos("un/a", QoS::AtMostOnce).await;
    sub.subscribe_qos("un/keep", QoS::AtMostOnce).await;
    sub.send(Packet::Unsubscribe(Unsubscribe {
        packet_id: 9,
        filters: vec![ByteString::from("un/a"), ByteString::from("un/never")],
        user_properties: Default::default(),
    }))
    .await
    .unwrap();
    match sub.recv().await.unwrap() {
        Packet::UnsubAck(unsuback) => {
            assert_eq!(unsuback.packet_id, 9);
            match protocol {
                Protocol::V5 => assert_eq!(
                    unsuback.reason_codes,
                    [ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED]
                ),
                // v3.1.1 UNSUBACK carries no reason codes.
                Protocol::V311 => assert!(unsuback.reason_codes.is_empty()),
            }
        }
        other => panic!("expected UNSUBACK, got {other:?}"),
    }
    let mut publisher = RawClient::connected(broker.addr, protocol, "pub").await;
    publish(&mut publisher, "un/a", b"gone").await;
    publish(&mut publisher, "un/keep", b"kept").await;
    assert_eq!(sub.recv_publish().await.payload, &b"kept"[..]);
    sub.expect_nothing().await;
}

async fn invalid_filters_are_refused_per_filter(protocol: Protocol) {
    let broker = TestBroker::start().await;
    let mut sub = RawClient::connected(broker.addr, protocol, "sub").await;
    let filters = [
        ("ok/+", QoS::AtLeastOnce),
        ("bad/#/more", QoS::AtMostOnce),
        ("ok2", QoS::AtMostOnce),
        ("bad+", QoS::AtMostOnce),
        ("$share/g+/x", QoS::AtMostOnce),
        ("", QoS::AtMostOnce),
    ];
    let options: Vec<_> = filters
        .iter()
        .map(|(f, q)| (*f, SubscriptionOptions::qos(*q)))
        .collect();
    let suback = sub.subscribe(3, &options).await;
    let refused = match protocol {
        Protocol::V5 => ReasonCode::TOPIC_FILTER_INVALID,
        Protocol::V311 => ReasonCode::UNSPECIFIED_ERROR, // 0x80, the only v3.1.1 failure
    };
    assert_eq!(
        suback.reason_codes,
        [
            ReasonCode::GRANTED_QOS_1,
            refused,
            ReasonCode::GRANTED_QOS_0,
            refused,
            refused,
            refused
        ]
    );
    // The valid filters of the same SUBSCRIBE work.
    let mut publisher = RawClient::connected(broker.addr, protocol, "pub").await;
    publish(&mut publisher, "ok/1", b"a").await;
    publish(&mut publisher, "ok2", b"b").await;
    assert_eq!(sub.recv_publish().await.topic, "ok/1");
    assert_eq!(sub.recv_publish().await.topic, "ok2");
}

async fn shared_subscription_member_leaving_loses_nothing(protocol: Protocol) {
    // One message in flight per member, so the rest of a member's share waits in its queue.
    let broker = TestBroker::start_with(|c| c.limits.max_inflight = 1).await;
    let mut leaving = RawClient::connected(broker.addr, protocol, "leaving").await;
    let mut staying = RawClient::connected(broker.addr, protocol, "staying").await;
    for member in [&mut leaving, &mut staying] {
        let suback = member
            .subscribe_qos("$share/g/work/+", QoS::AtLeastOnce)
            .await;
        assert_eq!(suback.reason_codes, [ReasonCode::GRANTED_QOS_1]);
    }
    let mut publisher = RawClient::connected(broker.addr, protocol, "pub").await;
    let all: BTreeSet<String> = (0..6).map(|i| format!("work/{i}")).collect();
    for (i, topic) in all.iter().enumerate() {
        publish_acked(
            &mut publisher,
            publish_packet(topic, b"job", QoS::AtLeastOnce, false, i as u16 + 1),
        )
        .await;
    }
    // The leaving member receives its first message and never acknowledges it.
    let unacked = leaving.recv_publish().await;
    assert!(all.contains(&*unacked.topic));
    leaving.drop_connection();

    let mut done = BTreeSet::new();
    while done.len() < all.len() {
        let got = staying.recv_publish().await;
        staying
            .send(Packet::PubAck(PubAckBody::new(got.packet_id)))
            .await
            .unwrap();
        assert!(done.insert(got.topic.to_string()), "twice: {got:?}");
    }
    assert_eq!(done, all);
    staying.expect_nothing().await;
}

async fn the_last_shared_member_leaving_drops_its_share_and_counts_it(protocol: Protocol) {
    let broker = TestBroker::start_with(|c| c.limits.max_inflight = 1).await;
    let mut member = RawClient::connected(broker.addr, protocol, "member").await;
    member
        .subscribe_qos("$share/g/work/+", QoS::AtLeastOnce)
        .await;
    let mut publisher = RawClient::connected(broker.addr, protocol, "pub").await;
    for i in 0..3u16 {
        let topic = format!("work/{i}");
        publish_acked(
            &mut publisher,
            publish_packet(&topic, b"job", QoS::AtLeastOnce, false, i + 1),
        )
        .await;
    }
    // One in flight, two queued; the member goes (a clean session) with no one to take
    // them over.
    member.recv_publish().await;
    member.drop_connection();
    let metrics = &broker.broker.metrics;
    let deadline = tokio::time::Instant::now() + WAIT;
    while Metrics::get(&metrics.messages_dropped_no_share_member) < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "dropped for want of a member: {}",
            Metrics::get(&metrics.messages_dropped_no_share_member)
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(Metrics::get(&metrics.messages_dropped_no_share_member), 3);
    assert_eq!(
        Metrics::get(&metrics.messages_dropped_queue_full),
        0,
        "no queue was full"
    );
}

async fn shared_subscription_member_unsubscribing_hands_over_its_queue(protocol: Protocol) {
    let broker = TestBroker::start_with(|c| c.limits.max_inflight = 1).await;
    let mut leaving = RawClient::connected(broker.addr, protocol, "leaving").await;
    let mut staying = RawClient::connected(broker.addr, protocol, "staying").await;
    for member in [&mut leaving, &mut staying] {
        member
            .subscribe_qos("$share/g/work/+", QoS::AtLeastOnce)
            .await;
    }
    let mut publisher = RawClient::connected(broker.addr, protocol, "pub").await;
    let all: BTreeSet<String> = (0..6).map(|i| format!("work/{i}")).collect();
    for (i, topic) in all.iter().enumerate() {
        publish_acked(
            &mut publisher,
            publish_packet(topic, b"job", QoS::AtLeastOnce, false, i as u16 + 1),
        )
        .await;
    }
    // One message in flight to the leaving member, two more queued behind it.
    let in_flight = leaving.recv_publish().await;
    leaving
        .send(Packet::Unsubscribe(Unsubscribe {
            packet_id: 2,
            filters: vec![ByteString::from("$share/g/work/+")],
            user_properties: Default::default(),
        }))
        .await
        .unwrap();
    assert!(matches!(leaving.recv().await.unwrap(), Packet::UnsubAck(_)));
    // The member still acknowledges what it was sent; the queued rest went to the group.
    leaving
        .send(Packet::PubAck(PubAckBody::new(in_flight.packet_id)))
        .await
        .unwrap();
    leaving.expect_nothing().await;

    let mut done = BTreeSet::from([in_flight.topic.to_string()]);
    while done.len() < all.len() {
        let got = staying.recv_publish().await;
        staying
            .send(Packet::PubAck(PubAckBody::new(got.packet_id)))
            .await
            .unwrap();
        assert!(done.insert(got.topic.to_string()), "twice: {got:?}");
    }
    assert_eq!(done, all);
    staying.expect_nothing().await;
}

#[tokio::test]
async fn v5_shared_subscription_member_with_receive_maximum_leaving_loses_nothing() {
    let broker = TestBroker::start().await;
    let mut connect = connect_packet(Protocol::V5, "leaving", true);
    connect.properties.receive_maximum = Some(1);
    connect.properties.session_expiry_interval = Some(60);
    let (mut leaving, _) = RawClient::connect(broker.addr, connect).await.unwrap();
    let mut staying = RawClient::connected(broker.addr, Protocol::V5, "staying").await;
    for member in [&mut leaving, &mut staying] {
        member
            .subscribe_qos("$share/g/job/+", QoS::ExactlyOnce)
            .await;
    }
    let mut publisher = RawClient::connected(broker.addr, Protocol::V5, "pub").await;
    for i in 0..6u16 {
        publisher
            .send(Packet::Publish(publish_packet(
                &format!("job/{i}"),
                b"j",
                QoS::AtLeastOnce,
                false,
                i + 1,
            )))
            .await
            .unwrap();
    }
    for _ in 0..6 {
        assert!(matches!(publisher.recv().await.unwrap(), Packet::PubAck(_)));
    }
    let first = leaving.recv_publish().await;
    assert_eq!(first.qos, QoS::AtLeastOnce);
    // A persistent session that goes away still hands its share back to the group.
    leaving.drop_connection();
    let mut done = HashSet::new();
    while done.len() < 6 {
        let got = staying.recv_publish().await;
        staying
            .send(Packet::PubAck(PubAckBody::new(got.packet_id)))
            .await
            .unwrap();
        assert!(done.insert(got.topic.to_string()), "twice: {got:?}");
    }
    staying.expect_nothing().await;
}

// rumqttc: shared subscriptions with real clients. Each message goes to exactly one member
// of a group, spread across the members; a second group gets its own copy of each.

#[tokio::test]
async fn rumqttc_v4_shared_subscriptions() {
    use rumqttc::{AsyncClient, Event, Incoming, QoS as Q};
    let broker = TestBroker::start().await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let members = [
        ("a1", "$share/a/jobs/#"),
        ("a2", "$share/a/jobs/#"),
        ("b1", "$share/b/jobs/#"),
    ];
    let mut clients = Vec::new();
    for (i, (id, filter)) in members.into_iter().enumerate() {
        let (client, mut eventloop) = AsyncClient::new(broker.v4_options(id), 16);
        client.subscribe(filter, Q::AtLeastOnce).await.unwrap();
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Ok(event) = eventloop.poll().await {
                if let Event::Incoming(packet) = event {
                    let _ = tx.send((i, packet));
                }
            }
        });
        clients.push(client);
    }
    let mut subacked = 0;
    while subacked < members.len() {
        if let (_, Incoming::SubAck(_)) = recv(&mut rx).await {
            subacked += 1;
        }
    }
    let (publisher, mut eventloop) = AsyncClient::new(broker.v4_options("pub"), 16);
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    for i in 0..10 {
        publisher
            .publish(format!("jobs/{i}"), Q::AtLeastOnce, false, vec![i])
            .await
            .unwrap();
    }
    let mut got: Vec<Vec<String>> = vec![Vec::new(); members.len()];
    while got.iter().map(Vec::len).sum::<usize>() < 20 {
        if let (member, Incoming::Publish(p)) = recv(&mut rx).await {
            got[member].push(p.topic);
        }
    }
    check_shared_distribution(got, &mut rx).await;
    drop(clients);
}

#[tokio::test]
async fn rumqttc_v5_shared_subscriptions() {
    use rumqttc::v5::mqttbytes::QoS as Q;
    use rumqttc::v5::mqttbytes::v5::Packet as P;
    use rumqttc::v5::{AsyncClient, Event};
    let broker = TestBroker::start().await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let members = [
        ("a1", "$share/a/jobs/#"),
        ("a2", "$share/a/jobs/#"),
        ("b1", "$share/b/jobs/#"),
    ];
    let mut clients = Vec::new();
    for (i, (id, filter)) in members.into_iter().enumerate() {
        let (client, mut eventloop) = AsyncClient::new(broker.v5_options(id), 16);
        client.subscribe(filter, Q::AtLeastOnce).await.unwrap();
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Ok(event) = eventloop.poll().await {
                if let Event::Incoming(packet) = event {
                    let _ = tx.send((i, packet));
                }
            }
        });
        clients.push(client);
    }
    let mut subacked = 0;
    while subacked < members.len() {
        if let (_, P::SubAck(_)) = recv(&mut rx).await {
            subacked += 1;
        }
    }
    let (publisher, mut eventloop) = AsyncClient::new(broker.v5_options("pub"), 16);
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    for i in 0..10 {
        publisher
            .publish(format!("jobs/{i}"), Q::AtLeastOnce, false, vec![i])
            .await
            .unwrap();
    }
    let mut got: Vec<Vec<String>> = vec![Vec::new(); members.len()];
    while got.iter().map(Vec::len).sum::<usize>() < 20 {
        if let (member, P::Publish(p)) = recv(&mut rx).await {
            got[member].push(String::from_utf8(p.topic.to_vec()).unwrap());
        }
    }
    check_shared_distribution(got, &mut rx).await;
    drop(clients);
}

/// Members 0 and 1 form group `a`, member 2 is group `b`; ten messages were published.
async fn check_shared_distribution<T: std::fmt::Debug>(
    got: Vec<Vec<String>>,
    rx: &mut mpsc::UnboundedReceiver<(usize, T)>,
) {
    let all: BTreeSet<String> = (0..10).map(|i| format!("jobs/{i}")).collect();
    let group_a: Vec<&String> = got[0].iter().chain(&got[1]).collect();
    assert_eq!(group_a.len(), 10, "{got:?}");
    assert_eq!(
        group_a.into_iter().cloned().collect::<BTreeSet<_>>(),
        all,
        "group a got each message exactly once: {got:?}"
    );
    // Round robin: both members of group a get a fair part.
    assert!(got[0].len() >= 3 && got[1].len() >= 3, "{got:?}");
    assert_eq!(got[2].iter().cloned().collect::<BTreeSet<_>>(), all);
    // And nothing more arrives.
    if let Ok(Some(extra)) = tokio::time::timeout(wasmq_tests::QUIET, rx.recv()).await {
        panic!("unexpected extra event {extra:?}");
    }
}

async fn recv<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("an event within WAIT")
        .expect("event loops running")
}
