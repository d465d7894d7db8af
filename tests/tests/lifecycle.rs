//! The broker's life: a graceful shutdown tells v5 clients why (DISCONNECT 0x8B), closes
//! every connection, stops accepting and ends the server task. The `wasmq` binary itself
//! (print-config, --config, --listen, SIGTERM) is tested in `broker/tests/cli.rs`, where
//! Cargo gives the path of the built binary.

use tokio::net::TcpStream;
use wasmq_codec::{Packet, Protocol, ReasonCode};
use wasmq_tests::{RawClient, TestBroker, WAIT};

#[tokio::test]
async fn graceful_shutdown_disconnects_every_client_and_ends_the_server() {
    let broker = TestBroker::start().await;
    let addr = broker.addr;
    let mut v5 = RawClient::connected(addr, Protocol::V5, "v5-client").await;
    let mut v311 = RawClient::connected(addr, Protocol::V311, "v311-client").await;
    // A socket still in its handshake is closed too.
    let mut handshaking = RawClient::open(addr, Protocol::V5).await.unwrap();
    // Both are served before the shutdown.
    for client in [&mut v5, &mut v311] {
        client.send(Packet::PingReq).await.unwrap();
        assert_eq!(client.recv().await.unwrap(), Packet::PingResp);
    }

    // `shutdown` returns only once the server task has ended.
    tokio::time::timeout(WAIT, async {
        tokio::join!(
            broker.shutdown(),
            v5.expect_closed(ReasonCode::SERVER_SHUTTING_DOWN),
            v311.expect_closed(ReasonCode::SERVER_SHUTTING_DOWN),
            async { assert!(handshaking.until_closed().await.is_empty()) },
        )
    })
    .await
    .expect("shutdown completes while the clients close");

    // No longer accepting.
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listener is closed after shutdown"
    );
}

#[tokio::test]
async fn rumqttc_v5_sees_server_shutting_down() {
    use rumqttc::v5::mqttbytes::v5::{DisconnectReasonCode, Packet as P};
    use rumqttc::v5::{AsyncClient, ConnectionError, Event, StateError};
    let broker = TestBroker::start().await;
    let (_client, mut eventloop) = AsyncClient::new(broker.v5_options("rumqttc-shutdown"), 10);
    match tokio::time::timeout(WAIT, eventloop.poll()).await.unwrap() {
        Ok(Event::Incoming(P::ConnAck(_))) => {}
        other => panic!("expected CONNACK, got {other:?}"),
    }
    let shutdown = tokio::spawn(broker.shutdown());
    // rumqttc reports a server DISCONNECT as the error that ends its event loop.
    let reason = loop {
        match tokio::time::timeout(WAIT, eventloop.poll()).await.unwrap() {
            Err(ConnectionError::MqttState(StateError::ServerDisconnect {
                reason_code, ..
            })) => break reason_code,
            Ok(_) => {}
            Err(e) => panic!("connection ended without DISCONNECT: {e}"),
        }
    };
    assert_eq!(reason, DisconnectReasonCode::ServerShuttingDown);
    shutdown.await.unwrap();
}
