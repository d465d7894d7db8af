//! The storage seam: a broker stopped and a new one started on the same `Storage` keeps
//! persistent sessions (subscriptions and queued messages) and retained messages. With
//! the in-memory store this only holds within one process; a durable store plugs into
//! the same traits.

use wasmq::config::SysConfig;
use wasmq::storage::Storage;
use wasmq::{Broker, Config, Server};
use wasmq_codec::{ConnectProperties, Packet, Protocol, PubAckBody, QoS};
use wasmq_tests::{RawClient, TestBroker, connect_packet, publish_packet};

async fn start_on(storage: Storage) -> TestBroker {
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        sys: SysConfig { interval_secs: 0 },
        ..Config::default()
    };
    let server = Server::bind_with(Broker::with_storage(config, None, storage))
        .await
        .unwrap();
    TestBroker::run(server)
}

fn persistent(protocol: Protocol, client_id: &str) -> wasmq_codec::Connect {
    let mut connect = connect_packet(protocol, client_id, false);
    if protocol == Protocol::V5 {
        connect.properties = ConnectProperties {
            session_expiry_interval: Some(300),
            ..Default::default()
        };
    }
    connect
}

async fn sessions_and_retained_survive_a_restart(protocol: Protocol) {
    let storage = Storage::memory();
    let first = start_on(storage.clone()).await;

    let (mut subscriber, _) = RawClient::connect(first.addr, persistent(protocol, "keeper"))
        .await
        .unwrap();
    subscriber.subscribe_qos("r/#", QoS::AtLeastOnce).await;
    subscriber.disconnect().await;

    let mut publisher = RawClient::connected(first.addr, protocol, "pub").await;
    for (i, payload) in [b"one", b"two"].iter().enumerate() {
        let id = i as u16 + 1;
        publisher
            .send(Packet::Publish(publish_packet(
                "r/q",
                *payload,
                QoS::AtLeastOnce,
                false,
                id,
            )))
            .await
            .unwrap();
        assert!(matches!(publisher.recv().await.unwrap(), Packet::PubAck(_)));
    }
    publisher
        .send(Packet::Publish(publish_packet(
            "kept",
            b"retained",
            QoS::AtMostOnce,
            true,
            0,
        )))
        .await
        .unwrap();
    publisher.disconnect().await;
    // The retained store is written synchronously while routing; give the QoS 0 PUBLISH
    // time to be read before stopping the broker.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    first.shutdown().await;

    let second = start_on(storage).await;
    let (mut subscriber, connack) = RawClient::connect(second.addr, persistent(protocol, "keeper"))
        .await
        .unwrap();
    assert!(
        connack.session_present,
        "the session was restored: {connack:?}"
    );
    for expected in [&b"one"[..], b"two"] {
        let publish = subscriber.recv_publish().await;
        assert_eq!(&publish.payload[..], expected);
        assert_eq!(publish.qos, QoS::AtLeastOnce);
        subscriber
            .send(Packet::PubAck(PubAckBody::new(publish.packet_id)))
            .await
            .unwrap();
    }
    // The restored subscription still routes new messages.
    let mut publisher = RawClient::connected(second.addr, protocol, "pub2").await;
    publisher
        .send(Packet::Publish(publish_packet(
            "r/new",
            b"three",
            QoS::AtMostOnce,
            false,
            0,
        )))
        .await
        .unwrap();
    assert_eq!(&subscriber.recv_publish().await.payload[..], b"three");

    let mut late = RawClient::connected(second.addr, protocol, "late").await;
    late.subscribe_qos("kept", QoS::AtMostOnce).await;
    let retained = late.recv_publish().await;
    assert!(retained.retain);
    assert_eq!(&retained.payload[..], b"retained");
    second.shutdown().await;
}

#[tokio::test]
async fn v311_sessions_and_retained_survive_a_restart() {
    sessions_and_retained_survive_a_restart(Protocol::V311).await;
}

#[tokio::test]
async fn v5_sessions_and_retained_survive_a_restart() {
    sessions_and_retained_survive_a_restart(Protocol::V5).await;
}

#[tokio::test]
async fn clean_sessions_are_not_kept() {
    let storage = Storage::memory();
    let first = start_on(storage.clone()).await;
    let mut client = RawClient::connected(first.addr, Protocol::V5, "transient").await;
    client.subscribe_qos("t", QoS::AtLeastOnce).await;
    client.disconnect().await;
    first.shutdown().await;
    assert!(storage.sessions.load_all().is_empty());
    let second = start_on(storage).await;
    let (_client, connack) = RawClient::connect(second.addr, persistent(Protocol::V5, "transient"))
        .await
        .unwrap();
    assert!(!connack.session_present);
}
