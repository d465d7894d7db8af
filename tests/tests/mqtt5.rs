//! MQTT 5 only: topic aliases both ways, Message Expiry Interval through an offline
//! queue, properties passed through unchanged, Maximum Packet Size per client, Request
//! Problem Information, Payload Format Indicator checks, PUBACK/PUBREC reason codes and the
//! CONNACK properties. Where a v3.1.1 counterpart exists (the plain acknowledgement), it is
//! checked too.

use std::time::Duration;

use bytes::Bytes;
use bytestring::ByteString;
use wasmq_tests::codec::{
    Connect, Packet, Protocol, PubAckBody, Publish, QoS, ReasonCode, SubscriptionOptions,
};
use wasmq_tests::{RawClient, TestBroker, connect_packet, publish_packet};

fn v5_connect(client_id: &str) -> Connect {
    connect_packet(Protocol::V5, client_id, true)
}

async fn connect_with(broker: &TestBroker, connect: Connect) -> RawClient {
    let (client, connack) = RawClient::connect(broker.addr, connect).await.unwrap();
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS, "{connack:?}");
    client
}

async fn send_publish(client: &mut RawClient, publish: Publish) {
    client.send(Packet::Publish(publish)).await.unwrap();
}

/// Sends a QoS 1 PUBLISH and returns its PUBACK.
async fn publish_qos1(client: &mut RawClient, publish: Publish) -> PubAckBody {
    assert_eq!(publish.qos, QoS::AtLeastOnce);
    let packet_id = publish.packet_id;
    send_publish(client, publish).await;
    match client.recv().await.unwrap() {
        Packet::PubAck(ack) => {
            assert_eq!(ack.packet_id, packet_id);
            ack
        }
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

fn with_alias(topic: &str, payload: &[u8], alias: u16) -> Publish {
    let mut publish = publish_packet(topic, payload, QoS::AtMostOnce, false, 0);
    publish.properties.topic_alias = Some(alias);
    publish
}

async fn expect_disconnect(client: &mut RawClient, reason: ReasonCode) {
    match client.until_closed().await.as_slice() {
        [Packet::Disconnect(d)] => assert_eq!(d.reason_code, reason, "{d:?}"),
        other => panic!("expected DISCONNECT {reason:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn inbound_topic_alias_is_resolved() {
    let broker = TestBroker::start().await;
    let mut sub = RawClient::connected(broker.addr, Protocol::V5, "sub").await;
    sub.subscribe_qos("alias/#", QoS::AtMostOnce).await;
    let mut publisher = RawClient::connected(broker.addr, Protocol::V5, "pub").await;
    send_publish(&mut publisher, with_alias("alias/one", b"1", 1)).await;
    send_publish(&mut publisher, with_alias("", b"2", 1)).await;
    // Setting an alias again maps it to the new topic.
    send_publish(&mut publisher, with_alias("alias/two", b"3", 1)).await;
    send_publish(&mut publisher, with_alias("", b"4", 1)).await;

    for (topic, payload) in [
        ("alias/one", "1"),
        ("alias/one", "2"),
        ("alias/two", "3"),
        ("alias/two", "4"),
    ] {
        let got = sub.recv_publish().await;
        assert_eq!((&*got.topic, &*got.payload), (topic, payload.as_bytes()));
        // The subscriber did not allow aliases: it gets none.
        assert_eq!(got.properties.topic_alias, None);
    }
}

#[tokio::test]
async fn topic_alias_0_is_refused_with_0x94() {
    let broker = TestBroker::start().await;
    let mut publisher = RawClient::connected(broker.addr, Protocol::V5, "pub").await;
    send_publish(&mut publisher, with_alias("a", b"x", 0)).await;
    expect_disconnect(&mut publisher, ReasonCode::TOPIC_ALIAS_INVALID).await;
}

#[tokio::test]
async fn topic_alias_above_the_maximum_is_refused_with_0x94() {
    let broker = TestBroker::start_with(|c| c.limits.topic_alias_maximum = 2).await;
    let (mut publisher, connack) = RawClient::connect(broker.addr, v5_connect("pub"))
        .await
        .unwrap();
    assert_eq!(connack.properties.topic_alias_maximum, Some(2));
    send_publish(&mut publisher, with_alias("a", b"x", 2)).await;
    publisher.send(Packet::PingReq).await.unwrap();
    assert_eq!(publisher.recv().await.unwrap(), Packet::PingResp);
    send_publish(&mut publisher, with_alias("a", b"x", 3)).await;
    expect_disconnect(&mut publisher, ReasonCode::TOPIC_ALIAS_INVALID).await;
}

#[tokio::test]
async fn unknown_topic_alias_with_an_empty_topic_is_a_protocol_error() {
    let broker = TestBroker::start().await;
    let mut publisher = RawClient::connected(broker.addr, Protocol::V5, "pub").await;
    send_publish(&mut publisher, with_alias("", b"x", 1)).await;
    expect_disconnect(&mut publisher, ReasonCode::PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn outbound_topic_aliases_when_the_client_allows_them() {
    let broker = TestBroker::start().await;
    let mut connect = v5_connect("aliased");
    connect.properties.topic_alias_maximum = Some(5);
    let mut aliased = connect_with(&broker, connect).await;
    aliased.subscribe_qos("out/#", QoS::AtMostOnce).await;
    let mut plain = RawClient::connected(broker.addr, Protocol::V5, "plain").await;
    plain.subscribe_qos("out/#", QoS::AtMostOnce).await;

    let mut publisher = RawClient::connected(broker.addr, Protocol::V5, "pub").await;
    for topic in ["out/x", "out/x", "out/y", "out/x", "out/y"] {
        send_publish(
            &mut publisher,
            publish_packet(topic, topic.as_bytes(), QoS::AtMostOnce, false, 0),
        )
        .await;
    }

    let first_x = aliased.recv_publish().await;
    assert_eq!(first_x.topic, "out/x");
    let x = first_x.properties.topic_alias.expect("an alias for out/x");
    assert!((1..=5).contains(&x));
    let second_x = aliased.recv_publish().await;
    assert_eq!(
        (&*second_x.topic, second_x.properties.topic_alias),
        ("", Some(x))
    );
    assert_eq!(second_x.payload, &b"out/x"[..]);
    let first_y = aliased.recv_publish().await;
    assert_eq!(first_y.topic, "out/y");
    let y = first_y.properties.topic_alias.expect("an alias for out/y");
    assert!((1..=5).contains(&y) && y != x);
    for alias in [x, y] {
        let got = aliased.recv_publish().await;
        assert_eq!((&*got.topic, got.properties.topic_alias), ("", Some(alias)));
    }

    // A client that announced no Topic Alias Maximum always gets the topic.
    for _ in 0..5 {
        let got = plain.recv_publish().await;
        assert!(got.topic.starts_with("out/"));
        assert_eq!(got.properties.topic_alias, None);
    }
}

#[tokio::test]
async fn outbound_topic_aliases_stop_at_the_client_maximum() {
    aliases_stop_at_one(1, 64).await;
}

/// The broker's own `topic_alias_maximum` bounds the aliases it keeps for a client (each
/// holds its topic), whatever the client allows.
#[tokio::test]
async fn outbound_topic_aliases_stop_at_the_broker_maximum() {
    aliases_stop_at_one(u16::MAX, 1).await;
}

/// With a client allowing `client_max` aliases and a broker `broker_max`, the lower being
/// 1: the first topic gets alias 1, the second none.
async fn aliases_stop_at_one(client_max: u16, broker_max: u16) {
    let broker = TestBroker::start_with(|c| c.limits.topic_alias_maximum = broker_max).await;
    let mut connect = v5_connect("aliased");
    connect.properties.topic_alias_maximum = Some(client_max);
    let mut aliased = connect_with(&broker, connect).await;
    aliased.subscribe_qos("lim/#", QoS::AtMostOnce).await;
    let mut publisher = RawClient::connected(broker.addr, Protocol::V5, "pub").await;
    for topic in ["lim/a", "lim/b", "lim/b", "lim/a"] {
        send_publish(
            &mut publisher,
            publish_packet(topic, b"", QoS::AtMostOnce, false, 0),
        )
        .await;
    }
    let a = aliased.recv_publish().await;
    assert_eq!((&*a.topic, a.properties.topic_alias), ("lim/a", Some(1)));
    for _ in 0..2 {
        let b = aliased.recv_publish().await;
        assert_eq!((&*b.topic, b.properties.topic_alias), ("lim/b", None));
    }
    let a = aliased.recv_publish().await;
    assert_eq!((&*a.topic, a.properties.topic_alias), ("", Some(1)));
}

#[tokio::test]
async fn message_expiry_is_decremented_from_the_offline_queue() {
    let broker = TestBroker::start().await;
    let persistent = || {
        let mut connect = connect_packet(Protocol::V5, "offline", false);
        connect.properties.session_expiry_interval = Some(60);
        connect
    };
    let mut sub = connect_with(&broker, persistent()).await;
    sub.subscribe_qos("exp/#", QoS::AtLeastOnce).await;
    sub.disconnect().await;

    let mut publisher = RawClient::connected(broker.addr, Protocol::V5, "pub").await;
    for (i, (topic, expiry)) in [("exp/short", 1), ("exp/long", 3), ("exp/none", 0)]
        .into_iter()
        .enumerate()
    {
        let mut publish = publish_packet(topic, b"e", QoS::AtLeastOnce, false, i as u16 + 1);
        publish.properties.message_expiry_interval = (expiry > 0).then_some(expiry);
        publish_qos1(&mut publisher, publish).await;
    }

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (mut sub, connack) = RawClient::connect(broker.addr, persistent()).await.unwrap();
    assert!(connack.session_present);
    // The 1 s message expired while queued; the 3 s one has at most 2 s left.
    let long = sub.recv_publish().await;
    assert_eq!(long.topic, "exp/long");
    let left = long.properties.message_expiry_interval.unwrap();
    assert!((1..=2).contains(&left), "forwarded with {left} s left");
    let none = sub.recv_publish().await;
    assert_eq!(none.topic, "exp/none");
    assert_eq!(none.properties.message_expiry_interval, None);
    sub.expect_nothing().await;
}

#[tokio::test]
async fn application_properties_pass_through_unchanged() {
    let broker = TestBroker::start().await;
    let mut sub = RawClient::connected(broker.addr, Protocol::V5, "sub").await;
    sub.subscribe_qos("props", QoS::AtLeastOnce).await;
    let mut publisher = RawClient::connected(broker.addr, Protocol::V5, "pub").await;

    let mut publish = publish_packet("props", "héllo".as_bytes(), QoS::AtLeastOnce, false, 1);
    let p = &mut publish.properties;
    p.payload_format_indicator = Some(1);
    p.content_type = Some(ByteString::from("text/plain; charset=utf-8"));
    p.response_topic = Some(ByteString::from("reply/here"));
    p.correlation_data = Some(Bytes::from_static(&[0, 1, 2, 0xff]));
    p.user_properties = vec![
        (ByteString::from("k"), ByteString::from("v1")),
        (ByteString::from("a"), ByteString::from("")),
        (ByteString::from("k"), ByteString::from("v2")),
    ];
    let sent = publish.properties.clone();
    publish_qos1(&mut publisher, publish).await;

    let got = sub.recv_publish().await;
    assert_eq!(got.payload, "héllo".as_bytes());
    assert_eq!(got.properties, sent);
}

#[tokio::test]
async fn a_message_too_large_for_a_client_is_not_sent_to_it() {
    let broker = TestBroker::start().await;
    let mut connect = v5_connect("small");
    connect.properties.maximum_packet_size = Some(128);
    let mut small = connect_with(&broker, connect).await;
    small.subscribe_qos("size/#", QoS::AtLeastOnce).await;
    let mut large = RawClient::connected(broker.addr, Protocol::V5, "large").await;
    large.subscribe_qos("size/#", QoS::AtLeastOnce).await;

    let mut publisher = RawClient::connected(broker.addr, Protocol::V5, "pub").await;
    publish_qos1(
        &mut publisher,
        publish_packet("size/big", &[b'x'; 200], QoS::AtLeastOnce, false, 1),
    )
    .await;
    publish_qos1(
        &mut publisher,
        publish_packet("size/small", b"fits", QoS::AtLeastOnce, false, 2),
    )
    .await;

    let got = small.recv_publish().await;
    assert_eq!(got.topic, "size/small");
    small
        .send(Packet::PubAck(PubAckBody::new(got.packet_id)))
        .await
        .unwrap();
    small.expect_nothing().await;
    for topic in ["size/big", "size/small"] {
        assert_eq!(large.recv_publish().await.topic, topic);
    }
}

#[tokio::test]
async fn request_problem_information_0_suppresses_reason_strings() {
    let broker = TestBroker::start().await;
    let refused = [
        ("ok", SubscriptionOptions::qos(QoS::AtMostOnce)),
        ("bad/#/x", SubscriptionOptions::qos(QoS::AtMostOnce)),
    ];
    let invalid_utf8 = || {
        let mut publish = publish_packet("utf8", &[0xff, 0xfe], QoS::AtLeastOnce, false, 1);
        publish.properties.payload_format_indicator = Some(1);
        publish
    };
    for wants_problem_information in [true, false] {
        let mut connect = v5_connect("c");
        connect.properties.request_problem_information = Some(wants_problem_information);
        let mut client = connect_with(&broker, connect).await;

        let suback = client.subscribe(1, &refused).await;
        assert_eq!(suback.reason_codes[1], ReasonCode::TOPIC_FILTER_INVALID);
        assert_eq!(
            suback.properties.reason_string.is_some(),
            wants_problem_information,
            "{suback:?}"
        );
        let puback = publish_qos1(&mut client, invalid_utf8()).await;
        assert_eq!(puback.reason_code, ReasonCode::PAYLOAD_FORMAT_INVALID);
        assert_eq!(
            puback.properties.reason_string.is_some(),
            wants_problem_information,
            "{puback:?}"
        );
        client.disconnect().await;
    }
}

#[tokio::test]
async fn invalid_utf8_with_payload_format_indicator_1_is_refused_with_0x99() {
    let broker = TestBroker::start().await;
    let mut sub = RawClient::connected(broker.addr, Protocol::V5, "sub").await;
    sub.subscribe_qos("utf8", QoS::ExactlyOnce).await;
    let mut publisher = RawClient::connected(broker.addr, Protocol::V5, "pub").await;

    let mut bad = publish_packet("utf8", &[b'a', 0xc3, 0x28], QoS::AtLeastOnce, false, 1);
    bad.properties.payload_format_indicator = Some(1);
    let puback = publish_qos1(&mut publisher, bad.clone()).await;
    assert_eq!(puback.reason_code, ReasonCode::PAYLOAD_FORMAT_INVALID);

    bad.qos = QoS::ExactlyOnce;
    bad.packet_id = 2;
    send_publish(&mut publisher, bad.clone()).await;
    match publisher.recv().await.unwrap() {
        Packet::PubRec(rec) => assert_eq!(rec.reason_code, ReasonCode::PAYLOAD_FORMAT_INVALID),
        other => panic!("expected PUBREC 0x99, got {other:?}"),
    }
    sub.expect_nothing().await;

    // The same bytes without the indicator are just bytes.
    bad.properties.payload_format_indicator = None;
    bad.qos = QoS::AtLeastOnce;
    bad.packet_id = 3;
    let puback = publish_qos1(&mut publisher, bad).await;
    assert_eq!(puback.reason_code, ReasonCode::SUCCESS);
    assert_eq!(sub.recv_publish().await.payload, &[b'a', 0xc3, 0x28][..]);
}

#[tokio::test]
async fn no_matching_subscribers_is_reported_with_0x10() {
    let broker = TestBroker::start().await;
    let mut publisher = RawClient::connected(broker.addr, Protocol::V5, "pub").await;
    let puback = publish_qos1(
        &mut publisher,
        publish_packet("nobody", b"x", QoS::AtLeastOnce, false, 1),
    )
    .await;
    assert_eq!(puback.reason_code, ReasonCode::NO_MATCHING_SUBSCRIBERS);
    send_publish(
        &mut publisher,
        publish_packet("nobody", b"x", QoS::ExactlyOnce, false, 2),
    )
    .await;
    match publisher.recv().await.unwrap() {
        Packet::PubRec(rec) => assert_eq!(rec.reason_code, ReasonCode::NO_MATCHING_SUBSCRIBERS),
        other => panic!("expected PUBREC 0x10, got {other:?}"),
    }
    // 0x10 is a success: the flow goes on to PUBCOMP.
    publisher
        .send(Packet::PubRel(PubAckBody::new(2)))
        .await
        .unwrap();
    match publisher.recv().await.unwrap() {
        Packet::PubComp(comp) => assert_eq!(comp.reason_code, ReasonCode::SUCCESS),
        other => panic!("expected PUBCOMP, got {other:?}"),
    }

    // With a subscriber: Success.
    let mut sub = RawClient::connected(broker.addr, Protocol::V5, "sub").await;
    sub.subscribe_qos("nobody", QoS::AtMostOnce).await;
    let puback = publish_qos1(
        &mut publisher,
        publish_packet("nobody", b"x", QoS::AtLeastOnce, false, 3),
    )
    .await;
    assert_eq!(puback.reason_code, ReasonCode::SUCCESS);
}

#[tokio::test]
async fn v3_puback_without_subscribers_is_a_plain_puback() {
    let broker = TestBroker::start().await;
    let mut publisher = RawClient::connected(broker.addr, Protocol::V311, "pub").await;
    let puback = publish_qos1(
        &mut publisher,
        publish_packet("nobody", b"x", QoS::AtLeastOnce, false, 1),
    )
    .await;
    assert_eq!(puback.reason_code, ReasonCode::SUCCESS);
}

#[tokio::test]
async fn connack_announces_the_broker_limits() {
    let broker = TestBroker::start_with(|c| {
        c.limits.receive_maximum = 10;
        c.limits.max_packet_size = 4096;
        c.limits.topic_alias_maximum = 7;
    })
    .await;
    let (_client, connack) = RawClient::connect(broker.addr, v5_connect("c"))
        .await
        .unwrap();
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS);
    let p = &connack.properties;
    assert_eq!(p.receive_maximum, Some(10));
    assert_eq!(p.maximum_packet_size, Some(4096));
    assert_eq!(p.topic_alias_maximum, Some(7));

    // With topic aliases off, none is announced (absent means 0).
    let broker = TestBroker::start_with(|c| c.limits.topic_alias_maximum = 0).await;
    let (_client, connack) = RawClient::connect(broker.addr, v5_connect("c"))
        .await
        .unwrap();
    assert_eq!(connack.properties.topic_alias_maximum, None);
}

#[tokio::test]
async fn a_packet_above_the_broker_maximum_packet_size_is_refused_with_0x95() {
    let broker = TestBroker::start_with(|c| c.limits.max_packet_size = 256).await;
    let mut publisher = RawClient::connected(broker.addr, Protocol::V5, "pub").await;
    send_publish(
        &mut publisher,
        publish_packet("big", &[0; 300], QoS::AtMostOnce, false, 0),
    )
    .await;
    expect_disconnect(&mut publisher, ReasonCode::PACKET_TOO_LARGE).await;
}

#[tokio::test]
async fn invalid_utf8_at_qos_0_closes_the_connection_with_0x99() {
    let broker = TestBroker::start().await;
    let mut publisher = RawClient::connected(broker.addr, Protocol::V5, "pub").await;
    // QoS 0 has no acknowledgement to carry the reason code: the connection closes.
    let mut bad = publish_packet("utf8", &[0xff], QoS::AtMostOnce, false, 0);
    bad.properties.payload_format_indicator = Some(1);
    send_publish(&mut publisher, bad).await;
    expect_disconnect(&mut publisher, ReasonCode::PAYLOAD_FORMAT_INVALID).await;
}
