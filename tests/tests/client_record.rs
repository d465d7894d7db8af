//! What contract 0.2.0 added to the client record, end to end: a real broker with a
//! plain TCP listener and a TLS listener that verifies client certificates, the
//! `client-record` fixture (0.2.0) in its plugin folder beside the `contract-0.1`
//! fixture (built against the frozen 0.1.0), and real clients over TCP and TLS.
//!
//! The 0.2.0 plugin lets a TLS client in only with the expected certificate CN,
//! lets it publish under `devices/<its CN>/` only, refuses plain TCP clients unless
//! their MQTT 5 CONNECT carries the expected `ticket` user property, and writes the
//! client record it was handed into each message, which a subscriber reads back.

use std::path::Path;

use bytestring::ByteString;
use rcgen::SanType;
use wasmq::config::{AclNomatch, PluginsConfig};
use wasmq::listener::{ListenerConfig, ListenerKind};
use wasmq::plugins::Plugins;
use wasmq_codec::{Connect, Packet, Protocol, Publish, QoS, ReasonCode};
use wasmq_plugin_artifacts as artifacts;
use wasmq_tests::transport::{StreamClient, TestPki, tls_client_config, tls_connect};
use wasmq_tests::{RawClient, TestBroker, connect_packet, publish_packet};

struct Setup {
    broker: TestBroker,
    pki: TestPki,
    _plugins: Plugins,
    _dir: tempfile::TempDir,
}

/// The broker with listeners `tcp` and `devices` (TLS, client certificates required),
/// and both fixtures loaded: `contract-0.1` first, then `client-record`.
async fn start() -> Setup {
    wasmq_tests::init_logs();
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new("device CA");
    let files = pki.write_server_files(dir.path());
    let folder = dir.path().join("plugins");
    std::fs::create_dir_all(&folder).unwrap();
    deploy(&folder, "v01", artifacts::CONTRACT_V0_1, "priority = 0\n");
    deploy(
        &folder,
        "record",
        artifacts::CLIENT_RECORD,
        "priority = 1\n[settings]\ncn = \"sensor-1\"\nticket = \"t-1\"\n",
    );
    let plugins = Plugins::start(&PluginsConfig {
        dir: folder,
        cache_dir: dir.path().join("cache"),
        acl_nomatch: AclNomatch::Allow,
        builtin: Vec::new(),
        ..PluginsConfig::default()
    })
    .await
    .expect("plugin folder starts");
    let loopback = "127.0.0.1:0".parse().unwrap();
    let devices = ListenerConfig {
        cert_file: Some(files.cert.clone()),
        key_file: Some(files.key.clone()),
        ca_file: Some(files.ca.clone()),
        require_client_cert: true,
        ..ListenerConfig::new("devices", ListenerKind::Tls, loopback)
    };
    let broker = TestBroker::start_with_hooks(
        |c| {
            c.listeners = vec![
                ListenerConfig::new("tcp", ListenerKind::Tcp, loopback),
                devices,
            ]
        },
        Some(plugins.hooks()),
    )
    .await;
    Setup {
        broker,
        pki,
        _plugins: plugins,
        _dir: dir,
    }
}

fn deploy(folder: &Path, name: &str, wasm: &str, toml: &str) {
    std::fs::write(folder.join(format!("{name}.toml")), toml).unwrap();
    std::fs::copy(wasm, folder.join(format!("{name}.wasm"))).unwrap();
}

/// A v5 CONNECT with `properties` as its user properties.
fn connect_with(client_id: &str, properties: &[(&str, &str)]) -> Connect {
    let mut connect = connect_packet(Protocol::V5, client_id, true);
    connect.properties.user_properties = properties
        .iter()
        .map(|(k, v)| (ByteString::from(*k), ByteString::from(*v)))
        .collect();
    connect
}

/// Connects over TLS with the certificate of `cn` naming `names`, and returns the
/// client and its CONNACK's reason code.
async fn tls_client(
    setup: &Setup,
    cn: &str,
    names: Vec<SanType>,
    connect: Connect,
) -> (StreamClient, ReasonCode) {
    let cert = setup.pki.client_with_names(cn, names);
    let tls = tls_connect(
        setup.broker.listener("devices"),
        tls_client_config(&setup.pki.ca_pem, Some(&cert)),
    )
    .await
    .expect("the handshake succeeds: the certificate is the CA's");
    let mut client = StreamClient::over_bytes(tls, Protocol::V5);
    let connack = client.connect(connect).await.expect("CONNACK");
    (client, connack.reason_code)
}

async fn tls_publish(client: &mut StreamClient, topic: &str, packet_id: u16) -> ReasonCode {
    let publish = publish_packet(topic, b"x", QoS::AtLeastOnce, false, packet_id);
    client.send(Packet::Publish(publish)).await.unwrap();
    match client.recv().await.unwrap() {
        Packet::PubAck(ack) => ack.reason_code,
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

fn props(publish: &Publish) -> Vec<(String, String)> {
    publish
        .properties
        .user_properties
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn plugins_key_on_listener_kind_certificate_and_connect_properties() {
    let setup = start().await;
    let tcp = setup.broker.listener("tcp");

    // Plain TCP: 3.1.1 has no user properties, so no ticket: refused (return code 5,
    // read back as 0x87). MQTT 5 without the ticket, or with a wrong one: refused.
    let refused = |connect: Connect| async move {
        let (_, connack) = RawClient::connect(tcp, connect).await.unwrap();
        connack.reason_code
    };
    assert_eq!(
        refused(connect_packet(Protocol::V311, "plain-v3", true)).await,
        ReasonCode::NOT_AUTHORIZED
    );
    assert_eq!(
        refused(connect_with("plain-v5", &[])).await,
        ReasonCode::NOT_AUTHORIZED
    );
    assert_eq!(
        refused(connect_with("plain-bad", &[("ticket", "t-2")])).await,
        ReasonCode::NOT_AUTHORIZED
    );
    // With the ticket: in, and it subscribes to what the others publish.
    let (mut watcher, connack) = RawClient::connect(
        tcp,
        connect_with("watcher", &[("site", "lyon"), ("ticket", "t-1")]),
    )
    .await
    .unwrap();
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS, "{connack:?}");
    watcher.subscribe_qos("record/#", QoS::AtMostOnce).await;

    // TLS with another CN: the CA signed it, the handshake passes, the plugin refuses.
    let (_, code) = tls_client(&setup, "sensor-2", Vec::new(), connect_with("s2", &[])).await;
    assert_eq!(code, ReasonCode::NOT_AUTHORIZED);

    // TLS with the expected CN and alternative names of every kind.
    let names = vec![
        SanType::DnsName("sensor-1.devices.example".try_into().unwrap()),
        SanType::IpAddress("10.0.0.1".parse().unwrap()),
        SanType::Rfc822Name("ops@example.com".try_into().unwrap()),
        SanType::URI("spiffe://example.com/sensor-1".try_into().unwrap()),
    ];
    let (mut sensor, code) = tls_client(
        &setup,
        "sensor-1",
        names,
        connect_with("s1", &[("fw", "2.1")]),
    )
    .await;
    assert_eq!(code, ReasonCode::SUCCESS);
    // authz keyed on the CN: its own devices/ branch only.
    assert_eq!(
        tls_publish(&mut sensor, "devices/sensor-1/t", 1).await,
        ReasonCode::NO_MATCHING_SUBSCRIBERS
    );
    assert_eq!(
        tls_publish(&mut sensor, "devices/sensor-2/t", 2).await,
        ReasonCode::NOT_AUTHORIZED
    );
    // The 0.1.0 plugin still decides its rule beside it (readonly/ for admin- ids).
    assert_eq!(
        tls_publish(&mut sensor, "readonly/t", 3).await,
        ReasonCode::NOT_AUTHORIZED
    );

    // What each plugin was handed, as written into the messages: the 0.1.0 plugin's
    // properties first (it knows the listener's name only), then the 0.2.0 record.
    assert_eq!(
        tls_publish(&mut sensor, "record/tls", 4).await,
        ReasonCode::SUCCESS
    );
    let got = watcher.recv_publish().await;
    assert_eq!(&got.topic[..], "record/tls");
    assert_eq!(
        props(&got),
        pairs(&[
            ("contract", "0.1.0"),
            ("listener", "devices"),
            ("listener-kind", "tls"),
            ("cert-cn", "sensor-1"),
            ("cert-dns", "sensor-1.devices.example"),
            ("cert-email", "ops@example.com"),
            ("cert-uri", "spiffe://example.com/sensor-1"),
            ("connect-fw", "2.1"),
        ])
    );
    let publish = publish_packet("record/tcp", b"x", QoS::AtMostOnce, false, 0);
    watcher.send(Packet::Publish(publish)).await.unwrap();
    let got = watcher.recv_publish().await;
    assert_eq!(&got.topic[..], "record/tcp");
    assert_eq!(
        props(&got),
        pairs(&[
            ("contract", "0.1.0"),
            ("listener", "tcp"),
            ("listener-kind", "tcp"),
            ("connect-site", "lyon"),
            ("connect-ticket", "t-1"),
        ])
    );
}
