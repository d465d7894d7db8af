//! MQTT 5 enhanced authentication (§4.12) end to end: the `scram-sha256` example plugin
//! (`plugins/examples/rust/scram-sha256`) loaded from a plugin folder, its users in
//! `mqtt_scram_user` of a SQLite database the broker opened (and made the table in),
//! and the tests' byte-exact client doing the client side of SCRAM-SHA-256 (RFC 5802)
//! itself: the whole exchange on CONNECT, re-authentication, an unknown method, the
//! limits (rounds, time: `connect_timeout_ms`, `reauth_timeout_ms`), the counters an
//! operator reads in `$SYS/broker/auth/enhanced/...`, and a v3.1.1 client next to it all.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use bytestring::ByteString;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use wasmq::config::{DatabaseConfig, PluginsConfig};
use wasmq::plugins::{Plugins, open_database};
use wasmq_codec::{ConnAck, Connect, Packet, Protocol, QoS, ReasonCode};
use wasmq_plugin_artifacts as artifacts;
use wasmq_plugin_host::Database;
use wasmq_plugin_host::database::Value;
use wasmq_tests::{RawClient, TestBroker, auth_packet, connect_packet, publish_packet};

const METHOD: &str = "SCRAM-SHA-256";
const TOML: &str = include_str!("../../plugins/examples/rust/scram-sha256/scram-sha256.toml");
const ITERATIONS: u32 = 4096;

fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// StoredKey and ServerKey of `password` (RFC 5802 §3).
fn keys(password: &str, salt: &[u8], iterations: u32) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut salted);
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha256::digest(&client_key).to_vec();
    let server_key = hmac(&salted, b"Server Key");
    (client_key, stored_key, server_key)
}

/// The client side of one SCRAM-SHA-256 exchange.
struct ScramClient {
    password: String,
    first_bare: String,
    nonce: String,
}

impl ScramClient {
    fn new(user: &str, password: &str) -> ScramClient {
        let nonce = B64.encode(Sha256::digest(format!(
            "{user}{:?}",
            std::time::Instant::now()
        )));
        ScramClient {
            password: password.into(),
            first_bare: format!("n={user},r={nonce}"),
            nonce,
        }
    }

    /// The client-first-message.
    fn first(&self) -> Bytes {
        Bytes::from(format!("n,,{}", self.first_bare))
    }

    /// The client-final-message answering `server_first`, and the server signature
    /// the broker's final message must carry.
    fn last(&self, server_first: &[u8]) -> (Bytes, Vec<u8>) {
        let server_first = std::str::from_utf8(server_first).unwrap();
        let mut nonce = "";
        let mut salt = Vec::new();
        let mut iterations = 0;
        for attribute in server_first.split(',') {
            match attribute.split_once('=').unwrap() {
                ("r", v) => nonce = v,
                ("s", v) => salt = B64.decode(v).unwrap(),
                ("i", v) => iterations = v.parse().unwrap(),
                _ => {}
            }
        }
        assert!(nonce.starts_with(&self.nonce), "server nonce extends ours");
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.first_bare);
        let (client_key, stored_key, server_key) = keys(&self.password, &salt, iterations);
        let signature = hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let last = format!("{without_proof},p={}", B64.encode(proof));
        (
            Bytes::from(last),
            hmac(&server_key, auth_message.as_bytes()),
        )
    }
}

/// A broker with the scram-sha256 plugin, and the user `alice` (password `secret`,
/// not a superuser) in its database.
struct Running {
    broker: TestBroker,
    _plugins: Plugins,
    database: Arc<Database>,
    _dir: tempfile::TempDir,
}

async fn start(adjust: impl FnOnce(&mut wasmq::Config)) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let config = DatabaseConfig {
        url: format!("sqlite://{}/wasmq.db?mode=rwc", dir.path().display()),
        ..DatabaseConfig::default()
    };
    // Opening it makes the broker's tables, `mqtt_scram_user` among them.
    let database = open_database(&config).await.unwrap().expect("a database");
    let salt = b"0123456789abcdef";
    let (_, stored_key, server_key) = keys("secret", salt, ITERATIONS);
    database
        .execute(
            "INSERT INTO mqtt_scram_user (username, salt, iterations, stored_key, server_key) \
             VALUES (?, ?, ?, ?, ?)",
            &[
                Value::Text("alice".into()),
                Value::Text(B64.encode(salt)),
                Value::Integer(ITERATIONS.into()),
                Value::Text(B64.encode(stored_key)),
                Value::Text(B64.encode(server_key)),
            ],
        )
        .await
        .expect("alice inserted");
    let folder = dir.path().join("plugins");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::copy(artifacts::SCRAM_SHA256, folder.join("scram-sha256.wasm")).unwrap();
    std::fs::write(folder.join("scram-sha256.toml"), TOML).unwrap();
    let fallbacks = wasmq::Config::parse("[plugins]\nallow_anonymous = true\n").unwrap();
    let plugins_config = PluginsConfig {
        dir: folder,
        cache_dir: dir.path().join("cache"),
        watch: false,
        ..fallbacks.plugins
    };
    let plugins = Plugins::start_with_database(&plugins_config, Some(database.clone()))
        .await
        .expect("the plugin folder starts");
    let broker = TestBroker::start_with_hooks(adjust, Some(plugins.hooks())).await;
    Running {
        broker,
        _plugins: plugins,
        database,
        _dir: dir,
    }
}

fn scram_connect(client_id: &str, data: Bytes) -> Connect {
    let mut connect = connect_packet(Protocol::V5, client_id, true);
    connect.properties.authentication_method = Some(ByteString::from(METHOD));
    connect.properties.authentication_data = Some(data);
    connect
}

/// The broker's AUTH 0x18 with the SCRAM method: its data.
async fn challenge(client: &mut RawClient) -> Bytes {
    match client.recv().await.expect("AUTH from the broker") {
        Packet::Auth(a) => {
            assert_eq!(a.reason_code, ReasonCode::CONTINUE_AUTHENTICATION, "{a:?}");
            assert_eq!(a.properties.authentication_method.as_deref(), Some(METHOD));
            a.properties.authentication_data.expect("a challenge")
        }
        other => panic!("expected AUTH 0x18, got {other:?}"),
    }
}

/// Opens a connection and sends `connect` (naming the SCRAM method): the client and
/// the broker's challenge, its AUTH 0x18.
async fn challenged(running: &Running, connect: Connect) -> (RawClient, Bytes) {
    let mut client = RawClient::open(running.broker.addr, Protocol::V5)
        .await
        .unwrap();
    client
        .send(Packet::Connect(Box::new(connect)))
        .await
        .unwrap();
    let server_first = challenge(&mut client).await;
    (client, server_first)
}

/// Answers `server_first` as `scram`'s client (AUTH 0x18 with the client-final-message)
/// and reads the CONNACK; returns it and the server signature it should carry.
async fn answer_connect(
    client: &mut RawClient,
    scram: &ScramClient,
    server_first: &[u8],
) -> (ConnAck, Vec<u8>) {
    let (last, signature) = scram.last(server_first);
    client
        .send(auth_packet(
            ReasonCode::CONTINUE_AUTHENTICATION,
            METHOD,
            last,
        ))
        .await
        .unwrap();
    match client.recv().await.expect("CONNACK") {
        Packet::ConnAck(connack) => (connack, signature),
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

/// Runs the exchange on a new connection; returns the client, the CONNACK and the
/// server signature the CONNACK should carry.
async fn exchange(running: &Running, user: &str, password: &str) -> (RawClient, ConnAck, Vec<u8>) {
    let scram = ScramClient::new(user, password);
    let (mut client, server_first) = challenged(running, scram_connect(user, scram.first())).await;
    let (connack, signature) = answer_connect(&mut client, &scram, &server_first).await;
    (client, connack, signature)
}

/// Starts a re-authentication as `scram`'s client (AUTH 0x19 with the
/// client-first-message): the broker's challenge.
async fn reauth_challenged(client: &mut RawClient, scram: &ScramClient) -> Bytes {
    client
        .send(auth_packet(
            ReasonCode::REAUTHENTICATE,
            METHOD,
            scram.first(),
        ))
        .await
        .unwrap();
    challenge(client).await
}

/// A whole re-authentication as `scram`'s client, up to its answer to the challenge;
/// returns the server signature the broker's AUTH 0x00 should carry. The caller reads
/// the broker's last word.
async fn reauthenticate(client: &mut RawClient, scram: &ScramClient) -> Vec<u8> {
    let server_first = reauth_challenged(client, scram).await;
    let (last, signature) = scram.last(&server_first);
    client
        .send(auth_packet(
            ReasonCode::CONTINUE_AUTHENTICATION,
            METHOD,
            last,
        ))
        .await
        .unwrap();
    signature
}

async fn ping(client: &mut RawClient) {
    client.send(Packet::PingReq).await.unwrap();
    assert!(matches!(client.recv().await.unwrap(), Packet::PingResp));
}

#[tokio::test]
async fn scram_with_the_right_password_connects_and_proves_the_server() {
    let running = start(|_| {}).await;
    let (mut client, connack, signature) = exchange(&running, "alice", "secret").await;
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS, "{connack:?}");
    assert_eq!(
        connack.properties.authentication_method.as_deref(),
        Some(METHOD)
    );
    let expected = format!("v={}", B64.encode(signature));
    assert_eq!(
        connack.properties.authentication_data.as_deref(),
        Some(expected.as_bytes()),
        "server-final-message"
    );
    ping(&mut client).await;
}

#[tokio::test]
async fn scram_with_a_wrong_password_or_an_unknown_user_is_not_authorized() {
    let running = start(|_| {}).await;
    for (user, password) in [("alice", "wrong"), ("mallory", "secret")] {
        let (mut client, connack, _) = exchange(&running, user, password).await;
        assert_eq!(
            connack.reason_code,
            ReasonCode::NOT_AUTHORIZED,
            "{user}/{password}: {connack:?}"
        );
        assert!(client.until_closed().await.is_empty());
    }
}

#[tokio::test]
async fn a_method_no_plugin_knows_is_a_bad_authentication_method() {
    let running = start(|_| {}).await;
    let mut connect = scram_connect("c", Bytes::from_static(b"x"));
    connect.properties.authentication_method = Some(ByteString::from("SCRAM-SHA-1"));
    RawClient::expect_refused(
        running.broker.addr,
        connect,
        ReasonCode::BAD_AUTHENTICATION_METHOD,
    )
    .await;
    // And with no plugins at all.
    let bare = TestBroker::start().await;
    RawClient::expect_refused(
        bare.addr,
        scram_connect("c", Bytes::from_static(b"n,,n=alice,r=x")),
        ReasonCode::BAD_AUTHENTICATION_METHOD,
    )
    .await;
}

#[tokio::test]
async fn re_authentication_succeeds_then_a_wrong_password_disconnects() {
    let running = start(|_| {}).await;
    let (mut client, connack, _) = exchange(&running, "alice", "secret").await;
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS);

    let signature = reauthenticate(&mut client, &ScramClient::new("alice", "secret")).await;
    match client.recv().await.unwrap() {
        Packet::Auth(a) => {
            assert_eq!(a.reason_code, ReasonCode::SUCCESS, "{a:?}");
            let expected = format!("v={}", B64.encode(signature));
            assert_eq!(
                a.properties.authentication_data.as_deref(),
                Some(expected.as_bytes())
            );
        }
        other => panic!("expected AUTH 0x00, got {other:?}"),
    }
    ping(&mut client).await;

    reauthenticate(&mut client, &ScramClient::new("alice", "wrong")).await;
    client.expect_closed(ReasonCode::NOT_AUTHORIZED).await;
}

#[tokio::test]
async fn re_authentication_with_another_method_is_a_protocol_error() {
    let running = start(|_| {}).await;
    let (mut client, connack, _) = exchange(&running, "alice", "secret").await;
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS);
    client
        .send(auth_packet(
            ReasonCode::REAUTHENTICATE,
            "SCRAM-SHA-1",
            Bytes::from_static(b"n,,n=alice,r=x"),
        ))
        .await
        .unwrap();
    client.expect_closed(ReasonCode::PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn a_v311_client_is_unaffected() {
    let running = start(|_| {}).await;
    let mut client = RawClient::connected(running.broker.addr, Protocol::V311, "old").await;
    ping(&mut client).await;
}

#[tokio::test]
async fn more_rounds_than_allowed_are_not_authorized() {
    // SCRAM needs one challenge: with none allowed, its first one refuses.
    let running = start(|config| config.limits.auth_rounds_max = 0).await;
    let scram = ScramClient::new("alice", "secret");
    RawClient::expect_refused(
        running.broker.addr,
        scram_connect("c", scram.first()),
        ReasonCode::NOT_AUTHORIZED,
    )
    .await;
}

/// A `$SYS/broker/auth/enhanced/#` subscriber on `running`'s broker (which must publish
/// `$SYS` every second: `sys.interval_secs = 1`).
async fn sys_subscriber(running: &Running) -> RawClient {
    let mut sys = RawClient::connected(running.broker.addr, Protocol::V5, "sys").await;
    sys.subscribe_qos("$SYS/broker/auth/enhanced/#", QoS::AtMostOnce)
        .await;
    sys
}

/// Reads `$SYS` publications until each `(phase/result, value)` of `wanted` is the latest
/// value of `$SYS/broker/auth/enhanced/<phase>/<result>` (at most 20 s).
async fn sys_expect(sys: &mut RawClient, wanted: &[(&str, u64)]) {
    let mut values = std::collections::HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let done = wanted.iter().all(|(counter, value)| {
            values.get(&format!("$SYS/broker/auth/enhanced/{counter}")) == Some(&value.to_string())
        });
        if done {
            return;
        }
        let publish = tokio::time::timeout_at(deadline, sys.recv_publish())
            .await
            .unwrap_or_else(|_| panic!("wanted {wanted:?} within 20 s, last seen {values:?}"));
        values.insert(
            publish.topic.to_string(),
            String::from_utf8(publish.payload.to_vec()).unwrap(),
        );
    }
}

#[tokio::test]
async fn a_client_that_does_not_answer_the_challenge_is_refused_at_the_connect_timeout() {
    let running = start(|config| {
        config.limits.connect_timeout_ms = 300;
        config.sys.interval_secs = 1;
    })
    .await;
    let mut sys = sys_subscriber(&running).await;
    let scram = ScramClient::new("alice", "secret");
    let (mut client, _) = challenged(&running, scram_connect("c", scram.first())).await;
    let started = std::time::Instant::now();
    // CONNACK 0x87 [MQTT-4.12.0-4], then the close, well before the test's own wait.
    match client.until_closed().await.as_slice() {
        [Packet::ConnAck(connack)] => {
            assert_eq!(
                connack.reason_code,
                ReasonCode::NOT_AUTHORIZED,
                "{connack:?}"
            );
            let why = connack.properties.reason_string.as_deref().unwrap_or("");
            assert!(why.contains("connect_timeout_ms"), "{why:?}");
        }
        other => panic!("expected one CONNACK 0x87, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    sys_expect(
        &mut sys,
        &[
            ("connect/started", 1),
            ("connect/timed_out", 1),
            ("connect/refused", 0),
            ("connect/succeeded", 0),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_re_authentication_the_client_does_not_finish_disconnects_at_its_timeout() {
    let running = start(|config| {
        config.limits.reauth_timeout_ms = 500;
        config.sys.interval_secs = 1;
    })
    .await;
    let mut sys = sys_subscriber(&running).await;
    let (mut client, connack, _) = exchange(&running, "alice", "secret").await;
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS);
    reauth_challenged(&mut client, &ScramClient::new("alice", "secret")).await;
    let started = std::time::Instant::now();
    // The client goes on publishing during the re-authentication (§4.12.1).
    client
        .send(Packet::Publish(publish_packet(
            "during/reauth",
            b"x",
            QoS::AtLeastOnce,
            false,
            1,
        )))
        .await
        .unwrap();
    match client.recv().await.unwrap() {
        Packet::PubAck(ack) => {
            assert_eq!(ack.packet_id, 1);
            assert!(!ack.reason_code.is_error(), "{ack:?}");
        }
        other => panic!("expected PUBACK, got {other:?}"),
    }
    ping(&mut client).await;
    // It never answers the challenge: DISCONNECT 0x87 at reauth_timeout_ms.
    client.expect_closed(ReasonCode::NOT_AUTHORIZED).await;
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
    sys_expect(
        &mut sys,
        &[
            ("connect/started", 1),
            ("connect/succeeded", 1),
            ("reauth/started", 1),
            ("reauth/timed_out", 1),
            ("reauth/succeeded", 0),
            ("reauth/refused", 0),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_finished_re_authentication_is_not_cut_short_by_the_timeout() {
    // The timer belongs to one exchange: a success clears it, and the connection outlives it.
    let running = start(|config| config.limits.reauth_timeout_ms = 300).await;
    let (mut client, _, _) = exchange(&running, "alice", "secret").await;
    reauthenticate(&mut client, &ScramClient::new("alice", "secret")).await;
    match client.recv().await.unwrap() {
        Packet::Auth(a) => assert_eq!(a.reason_code, ReasonCode::SUCCESS, "{a:?}"),
        other => panic!("expected AUTH 0x00, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    ping(&mut client).await;
}

#[tokio::test]
async fn the_counters_tell_successes_from_refusals_per_phase() {
    let running = start(|config| config.sys.interval_secs = 1).await;
    let mut sys = sys_subscriber(&running).await;
    // At CONNECT: one success, two refusals (a wrong password, a method no plugin knows).
    let (mut client, connack, _) = exchange(&running, "alice", "secret").await;
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS);
    let (_refused, connack, _) = exchange(&running, "alice", "wrong").await;
    assert_eq!(connack.reason_code, ReasonCode::NOT_AUTHORIZED);
    let mut unknown = scram_connect("u", Bytes::from_static(b"x"));
    unknown.properties.authentication_method = Some(ByteString::from("SCRAM-SHA-1"));
    RawClient::expect_refused(
        running.broker.addr,
        unknown,
        ReasonCode::BAD_AUTHENTICATION_METHOD,
    )
    .await;
    // A plain CONNECT is no enhanced authentication: not counted.
    let _plain = RawClient::connected(running.broker.addr, Protocol::V5, "plain").await;
    // Re-authentication: one success, then one refusal (which disconnects).
    for (password, ok) in [("secret", true), ("wrong", false)] {
        reauthenticate(&mut client, &ScramClient::new("alice", password)).await;
        if ok {
            assert!(matches!(client.recv().await.unwrap(), Packet::Auth(_)));
        } else {
            client.expect_closed(ReasonCode::NOT_AUTHORIZED).await;
        }
    }
    sys_expect(
        &mut sys,
        &[
            ("connect/started", 3),
            ("connect/succeeded", 1),
            ("connect/refused", 2),
            ("connect/timed_out", 0),
            ("reauth/started", 2),
            ("reauth/succeeded", 1),
            ("reauth/refused", 1),
            ("reauth/timed_out", 0),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_user_made_by_wasmq_user_add_scram_connects() {
    let running = start(|_| {}).await;
    wasmq::manage::scram_user_add(&running.database, "bob", "hunter2", false, 4096)
        .await
        .expect("bob added");
    let (_client, connack, signature) = exchange(&running, "bob", "hunter2").await;
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS, "{connack:?}");
    // The ServerKey it stored proves the broker to the client.
    let expected = format!("v={}", B64.encode(signature));
    assert_eq!(
        connack.properties.authentication_data.as_deref(),
        Some(expected.as_bytes())
    );
    let (_client, connack, _) = exchange(&running, "bob", "hunter3").await;
    assert_eq!(
        connack.reason_code,
        ReasonCode::NOT_AUTHORIZED,
        "{connack:?}"
    );
    assert!(
        wasmq::manage::scram_user_add(&running.database, "bob", "again", false, 4096)
            .await
            .is_err(),
        "a second bob is refused"
    );
}

#[tokio::test]
async fn auth_without_an_authentication_method_in_connect_is_a_protocol_error() {
    let running = start(|_| {}).await;
    let mut client = RawClient::connected(running.broker.addr, Protocol::V5, "plain").await;
    client
        .send(auth_packet(
            ReasonCode::REAUTHENTICATE,
            METHOD,
            Bytes::from_static(b"n,,n=alice,r=x"),
        ))
        .await
        .unwrap();
    client.expect_closed(ReasonCode::PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn authentication_data_over_the_limit_is_not_authorized() {
    // The client's first message (14 bytes) fits, the plugin's challenge (about 90) not.
    let running = start(|config| config.limits.auth_data_max_bytes = 40).await;
    RawClient::expect_refused(
        running.broker.addr,
        scram_connect("c", Bytes::from_static(b"n,,n=alice,r=x")),
        ReasonCode::NOT_AUTHORIZED,
    )
    .await;
    // And a client's data over it.
    RawClient::expect_refused(
        running.broker.addr,
        scram_connect("c", Bytes::from(vec![b'x'; 41])),
        ReasonCode::NOT_AUTHORIZED,
    )
    .await;
}

#[tokio::test]
async fn a_connect_user_name_other_than_the_scram_user_is_not_authorized() {
    // Authorization keys on the CONNECT's User Name: proving bob must not make one alice.
    let running = start(|_| {}).await;
    running
        .database
        .execute(
            "INSERT INTO mqtt_scram_user (username, salt, iterations, stored_key, server_key) \
             SELECT 'bob', salt, iterations, stored_key, server_key FROM mqtt_scram_user \
             WHERE username = 'alice'",
            &[],
        )
        .await
        .unwrap();
    // bob's row is a copy of alice's (the same password): only bob's own name may pass.
    for (connect_user, expected) in [
        (Some("bob"), ReasonCode::SUCCESS),
        (Some("alice"), ReasonCode::NOT_AUTHORIZED),
        (None, ReasonCode::SUCCESS),
    ] {
        let scram = ScramClient::new("bob", "secret");
        let mut connect = scram_connect("c", scram.first());
        connect.username = connect_user.map(ByteString::from);
        if expected != ReasonCode::SUCCESS {
            // The plugin compares the names at the client-first-message: no challenge.
            RawClient::expect_refused(running.broker.addr, connect, expected).await;
            continue;
        }
        let (mut client, server_first) = challenged(&running, connect).await;
        let (connack, _) = answer_connect(&mut client, &scram, &server_first).await;
        assert_eq!(connack.reason_code, expected, "{connect_user:?}");
    }
}

#[tokio::test]
async fn a_faulting_auth_plugin_refuses_the_client() {
    // Beside scram-sha256: the fixture that lists `PANIC` and traps.
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("plugins");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::copy(artifacts::AUTH_PANIC, folder.join("auth-panic.wasm")).unwrap();
    let fallbacks = wasmq::Config::parse("[plugins]\nallow_anonymous = true\n").unwrap();
    let config = PluginsConfig {
        dir: folder,
        cache_dir: dir.path().join("cache"),
        watch: false,
        ..fallbacks.plugins
    };
    let plugins = Plugins::start_with_database(&config, None).await.unwrap();
    let broker = TestBroker::start_with_hooks(|_| {}, Some(plugins.hooks())).await;
    let mut connect = scram_connect("c", Bytes::from_static(b"x"));
    connect.properties.authentication_method = Some(ByteString::from("PANIC"));
    RawClient::expect_refused(broker.addr, connect, ReasonCode::NOT_AUTHORIZED).await;
}
