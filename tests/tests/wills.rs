//! Will Messages: published when a connection ends abnormally (dropped socket, keep-alive
//! timeout, takeover), not on a normal DISCONNECT (v5: unless reason 0x04); the v5 Will
//! Delay Interval and its interplay with the session's life; will QoS, retain and
//! properties. Each in v3.1.1 and v5 where it exists in both.

use std::time::{Duration, Instant};

use bytes::Bytes;
use bytestring::ByteString;
use wasmq_codec::{
    Connect, Disconnect, LastWill, Packet, Protocol, PubAckBody, Publish, QoS, ReasonCode,
    WillProperties,
};
use wasmq_tests::{RawClient, TestBroker, WAIT, connect_packet};

const BOTH: [Protocol; 2] = [Protocol::V311, Protocol::V5];

fn last_will(topic: &str, payload: &str, qos: QoS, retain: bool) -> LastWill {
    LastWill {
        topic: ByteString::from(topic),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        qos,
        retain,
        properties: WillProperties::default(),
    }
}

/// A CONNECT carrying `will`.
fn with_will(protocol: Protocol, client_id: &str, clean_start: bool, will: LastWill) -> Connect {
    let mut connect = connect_packet(protocol, client_id, clean_start);
    connect.will = Some(will);
    connect
}

/// A v5 CONNECT with `will` delayed by `delay` s and a session of `expiry` s.
fn delayed_will(client_id: &str, topic: &str, delay: u32, expiry: u32) -> Connect {
    let mut will = last_will(topic, "delayed", QoS::AtLeastOnce, false);
    will.properties.will_delay_interval = Some(delay);
    let mut connect = with_will(Protocol::V5, client_id, false, will);
    connect.properties.session_expiry_interval = Some(expiry);
    connect
}

/// A client of `protocol` subscribed to `topic` at QoS 1.
async fn watcher(broker: &TestBroker, protocol: Protocol, topic: &str) -> RawClient {
    let mut watcher =
        RawClient::connected(broker.addr, protocol, &format!("watcher-{topic}")).await;
    watcher.subscribe_qos(topic, QoS::AtLeastOnce).await;
    watcher
}

/// Receives the will on `watcher` and acknowledges it.
async fn receive_will(watcher: &mut RawClient, topic: &str, payload: &str) -> Publish {
    let publish = watcher.recv_publish().await;
    assert_eq!(&publish.topic[..], topic);
    assert_eq!(&publish.payload[..], payload.as_bytes());
    if publish.qos == QoS::AtLeastOnce {
        watcher
            .send(Packet::PubAck(PubAckBody::new(publish.packet_id)))
            .await
            .unwrap();
    }
    publish
}

async fn connect_ok(broker: &TestBroker, connect: Connect) -> RawClient {
    let (client, connack) = RawClient::connect(broker.addr, connect).await.unwrap();
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS, "{connack:?}");
    client
}

#[tokio::test]
async fn rumqttc_v4_will_is_published_on_abnormal_close() {
    let broker = TestBroker::start().await;
    let mut watcher = watcher(&broker, Protocol::V311, "will/rumqttc-v4").await;

    let mut options = broker.v4_options("rumqttc-v4-will");
    options.set_last_will(rumqttc::LastWill::new(
        "will/rumqttc-v4",
        "v4 gone",
        rumqttc::QoS::AtLeastOnce,
        false,
    ));
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 10);
    match tokio::time::timeout(WAIT, eventloop.poll()).await.unwrap() {
        Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(connack))) => {
            assert_eq!(connack.code, rumqttc::ConnectReturnCode::Success);
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
    watcher.expect_nothing().await;
    // Dropping the event loop closes the socket without DISCONNECT.
    drop(eventloop);
    drop(client);
    receive_will(&mut watcher, "will/rumqttc-v4", "v4 gone").await;
}

#[tokio::test]
async fn rumqttc_v5_will_is_published_on_abnormal_close() {
    use rumqttc::v5::mqttbytes::v5::{LastWill, Packet as P};
    let broker = TestBroker::start().await;
    let mut watcher = watcher(&broker, Protocol::V5, "will/rumqttc-v5").await;

    let mut options = broker.v5_options("rumqttc-v5-will");
    options.set_last_will(LastWill::new(
        "will/rumqttc-v5",
        "v5 gone",
        rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        false,
        None,
    ));
    let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(options, 10);
    match tokio::time::timeout(WAIT, eventloop.poll()).await.unwrap() {
        Ok(rumqttc::v5::Event::Incoming(P::ConnAck(connack))) => {
            assert!(connack.code == rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success);
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
    watcher.expect_nothing().await;
    drop(eventloop);
    drop(client);
    receive_will(&mut watcher, "will/rumqttc-v5", "v5 gone").await;
}

#[tokio::test]
async fn the_will_is_published_when_the_socket_drops() {
    let broker = TestBroker::start().await;
    for protocol in BOTH {
        let topic = format!("will/dropped/{protocol:?}");
        let mut watcher = watcher(&broker, protocol, &topic).await;
        let client = connect_ok(
            &broker,
            with_will(
                protocol,
                "dropper",
                true,
                last_will(&topic, "dropped", QoS::AtLeastOnce, false),
            ),
        )
        .await;
        client.drop_connection();
        receive_will(&mut watcher, &topic, "dropped").await;
    }
}

/// A client with a will and Keep Alive 1 that never speaks: its will arrives.
async fn will_after_silence(broker: &TestBroker, protocol: Protocol) {
    let topic = format!("will/silent/{protocol:?}");
    let mut watcher = watcher(broker, protocol, &topic).await;
    let mut connect = with_will(
        protocol,
        &format!("silent-{protocol:?}"),
        true,
        last_will(&topic, "timed out", QoS::AtLeastOnce, false),
    );
    connect.keep_alive = 1;
    let mut client = connect_ok(broker, connect).await;
    client.expect_closed(ReasonCode::KEEP_ALIVE_TIMEOUT).await;
    receive_will(&mut watcher, &topic, "timed out").await;
}

#[tokio::test]
async fn the_will_is_published_on_keep_alive_timeout() {
    let broker = TestBroker::start().await;
    tokio::join!(
        will_after_silence(&broker, Protocol::V311),
        will_after_silence(&broker, Protocol::V5)
    );
}

#[tokio::test]
async fn the_will_is_published_on_takeover() {
    let broker = TestBroker::start().await;
    for protocol in BOTH {
        // Clean start 1 (session discarded) and 0 (session continued): both publish a
        // will without delay.
        for clean_start in [true, false] {
            let topic = format!("will/takeover/{protocol:?}/{clean_start}");
            let mut watcher = watcher(&broker, protocol, &topic).await;
            let mut first = connect_ok(
                &broker,
                with_will(
                    protocol,
                    "taken",
                    clean_start,
                    last_will(&topic, "taken over", QoS::AtLeastOnce, false),
                ),
            )
            .await;
            let mut connect = connect_packet(protocol, "taken", clean_start);
            connect.properties.session_expiry_interval =
                (protocol == Protocol::V5 && !clean_start).then_some(60);
            let second = connect_ok(&broker, connect).await;
            first.expect_closed(ReasonCode::SESSION_TAKEN_OVER).await;
            receive_will(&mut watcher, &topic, "taken over").await;
            // The new connection has no will: its normal end publishes nothing.
            second.disconnect().await;
            watcher.expect_nothing().await;
        }
    }
}

#[tokio::test]
async fn no_will_on_a_normal_disconnect() {
    let broker = TestBroker::start().await;
    for protocol in BOTH {
        let topic = format!("will/normal/{protocol:?}");
        let mut watcher = watcher(&broker, protocol, &topic).await;
        let client = connect_ok(
            &broker,
            with_will(
                protocol,
                "polite",
                true,
                last_will(&topic, "must not appear", QoS::AtLeastOnce, false),
            ),
        )
        .await;
        // [MQTT-3.1.2-10]: DISCONNECT discards the will.
        client.disconnect().await;
        watcher.expect_nothing().await;
    }
}

#[tokio::test]
async fn v5_disconnect_with_will_message_publishes_it() {
    let broker = TestBroker::start().await;
    let mut watcher = watcher(&broker, Protocol::V5, "will/0x04").await;
    let mut client = connect_ok(
        &broker,
        with_will(
            Protocol::V5,
            "leaving-with-will",
            true,
            last_will("will/0x04", "on purpose", QoS::AtLeastOnce, false),
        ),
    )
    .await;
    client
        .send(Packet::Disconnect(Disconnect {
            reason_code: ReasonCode::DISCONNECT_WITH_WILL,
            properties: Default::default(),
        }))
        .await
        .unwrap();
    assert!(client.until_closed().await.is_empty());
    receive_will(&mut watcher, "will/0x04", "on purpose").await;
}

#[tokio::test]
async fn v5_will_delay_interval_delays_the_will() {
    let broker = TestBroker::start().await;
    let mut watcher = watcher(&broker, Protocol::V5, "will/delayed").await;
    let client = connect_ok(&broker, delayed_will("delayer", "will/delayed", 1, 60)).await;
    let dropped = Instant::now();
    client.drop_connection();
    watcher.expect_nothing().await;
    receive_will(&mut watcher, "will/delayed", "delayed").await;
    assert!(
        dropped.elapsed() >= Duration::from_secs(1),
        "published after {:?}, before the delay",
        dropped.elapsed()
    );
}

#[tokio::test]
async fn v5_delayed_will_is_not_sent_when_the_session_resumes_in_time() {
    let broker = TestBroker::start().await;
    let mut watcher = watcher(&broker, Protocol::V5, "will/resumed").await;

    // The connection drops, the client comes back within the delay.
    let client = connect_ok(&broker, delayed_will("resumer", "will/resumed", 1, 60)).await;
    client.drop_connection();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut connect = connect_packet(Protocol::V5, "resumer", false);
    connect.properties.session_expiry_interval = Some(60);
    let (back, connack) = RawClient::connect(broker.addr, connect.clone())
        .await
        .unwrap();
    assert!(connack.session_present);

    // A takeover that continues the session, with the delay not over, sends none either.
    let mut first = connect_ok(
        &broker,
        delayed_will("taken-delayed", "will/resumed", 1, 60),
    )
    .await;
    let mut connect = connect_packet(Protocol::V5, "taken-delayed", false);
    connect.properties.session_expiry_interval = Some(60);
    let _second = connect_ok(&broker, connect).await;
    first.expect_closed(ReasonCode::SESSION_TAKEN_OVER).await;

    // Past both delays: nothing was published.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    watcher.expect_nothing().await;
    back.disconnect().await;
}

#[tokio::test]
async fn v5_delayed_will_is_sent_when_the_session_ends_first() {
    let broker = TestBroker::start().await;
    let mut watcher = watcher(&broker, Protocol::V5, "will/session-end").await;

    // Session Expiry 0: the session ends with the connection, so does the delay.
    let client = connect_ok(
        &broker,
        delayed_will("no-session", "will/session-end", 60, 0),
    )
    .await;
    client.drop_connection();
    receive_will(&mut watcher, "will/session-end", "delayed").await;

    // Session Expiry 1 s, delay 60 s: sent when the session expires.
    let client = connect_ok(
        &broker,
        delayed_will("short-session", "will/session-end", 60, 1),
    )
    .await;
    let dropped = Instant::now();
    client.drop_connection();
    watcher.expect_nothing().await;
    receive_will(&mut watcher, "will/session-end", "delayed").await;
    assert!(dropped.elapsed() >= Duration::from_secs(1));

    // A new connection with clean start 1 ends the old session: sent at once.
    let client = connect_ok(
        &broker,
        delayed_will("restarted", "will/session-end", 60, 60),
    )
    .await;
    client.drop_connection();
    watcher.expect_nothing().await;
    let _fresh = connect_ok(&broker, connect_packet(Protocol::V5, "restarted", true)).await;
    receive_will(&mut watcher, "will/session-end", "delayed").await;
}

#[tokio::test]
async fn the_will_keeps_its_qos_and_retain() {
    let broker = TestBroker::start().await;
    for protocol in BOTH {
        let topic = format!("will/retained/{protocol:?}");
        let mut watcher = RawClient::connected(broker.addr, protocol, "qos-watcher").await;
        watcher.subscribe_qos(&topic, QoS::ExactlyOnce).await;
        let client = connect_ok(
            &broker,
            with_will(
                protocol,
                "retainer",
                true,
                last_will(&topic, "last words", QoS::ExactlyOnce, true),
            ),
        )
        .await;
        client.drop_connection();

        let publish = watcher.recv_publish().await;
        assert_eq!(&publish.payload[..], b"last words");
        assert_eq!(publish.qos, QoS::ExactlyOnce, "{protocol:?}: will QoS");
        // Live delivery to an existing subscription: retain is cleared [MQTT-3.3.1-9].
        assert!(!publish.retain);
        watcher.disconnect().await;

        // The will was retained: a later subscriber gets it, with RETAIN set.
        let mut later = RawClient::connected(broker.addr, protocol, "later").await;
        later.subscribe_qos(&topic, QoS::AtLeastOnce).await;
        let retained = later.recv_publish().await;
        assert_eq!(&retained.payload[..], b"last words");
        assert!(retained.retain, "{protocol:?}: retained will");
        assert_eq!(retained.qos, QoS::AtLeastOnce);
        later.disconnect().await;
    }
}

#[tokio::test]
async fn v5_will_properties_are_passed_through() {
    let broker = TestBroker::start().await;
    let mut watcher = watcher(&broker, Protocol::V5, "will/props").await;
    let mut will = last_will("will/props", "{\"gone\":true}", QoS::AtLeastOnce, false);
    will.properties = WillProperties {
        will_delay_interval: None,
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(3600),
        content_type: Some(ByteString::from_static("application/json")),
        response_topic: Some(ByteString::from_static("will/reply")),
        correlation_data: Some(Bytes::from_static(b"\x01\x02")),
        user_properties: vec![
            (ByteString::from_static("a"), ByteString::from_static("1")),
            (ByteString::from_static("a"), ByteString::from_static("2")),
        ],
    };
    let client = connect_ok(&broker, with_will(Protocol::V5, "propertied", true, will)).await;
    client.drop_connection();

    let publish = receive_will(&mut watcher, "will/props", "{\"gone\":true}").await;
    let p = &publish.properties;
    assert_eq!(p.payload_format_indicator, Some(1));
    assert_eq!(p.content_type.as_deref(), Some("application/json"));
    assert_eq!(p.response_topic.as_deref(), Some("will/reply"));
    assert_eq!(p.correlation_data.as_deref(), Some(&b"\x01\x02"[..]));
    assert_eq!(
        p.user_properties,
        vec![
            (ByteString::from_static("a"), ByteString::from_static("1")),
            (ByteString::from_static("a"), ByteString::from_static("2")),
        ]
    );
    let expiry = p.message_expiry_interval.expect("message expiry kept");
    assert!((3590..=3600).contains(&expiry), "{expiry}");
}
