//! The plugin folder end to end: WebAssembly components dropped into a running broker's
//! folder take effect, reload and unload without a restart or a dropped connection, and
//! hostile plugins fail closed while the broker keeps serving. The plugins are the real
//! Rust examples and fixtures, compiled for wasm32-wasip2 by `wasmq-plugin-artifacts`.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bytes::Bytes;
use bytestring::ByteString;
use wasmq::config::{AclNomatch, Config, DenyAction, PluginsConfig};
use wasmq::plugins::Plugins;
use wasmq_codec::{Packet, Protocol, QoS, ReasonCode};
use wasmq_plugin_artifacts as artifacts;
use wasmq_tests::{RawClient, TestBroker, auth_packet, connect_packet, publish_packet};

struct Setup {
    broker: TestBroker,
    plugins: Plugins,
    dir: tempfile::TempDir,
}

async fn start(acl_nomatch: AclNomatch) -> Setup {
    start_with(acl_nomatch, DenyAction::Ignore).await
}

async fn start_with(acl_nomatch: AclNomatch, deny_action: DenyAction) -> Setup {
    start_configured(acl_nomatch, |c| c.plugins.deny_action = deny_action).await
}

async fn start_configured(acl_nomatch: AclNomatch, adjust: impl FnOnce(&mut Config)) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let config = PluginsConfig {
        dir: dir.path().join("plugins"),
        cache_dir: dir.path().join("cache"),
        debounce_ms: 20,
        acl_nomatch,
        builtin: Vec::new(),
        ..PluginsConfig::default()
    };
    let plugins = Plugins::start(&config).await.expect("plugin folder starts");
    let broker = TestBroker::start_with_hooks(adjust, Some(plugins.hooks())).await;
    Setup {
        broker,
        plugins,
        dir,
    }
}

impl Setup {
    fn folder(&self) -> PathBuf {
        self.dir.path().join("plugins")
    }

    /// Copies `wasm` into the folder as `NAME.wasm` the atomic way (hidden temporary file,
    /// then rename), settings first when there are some.
    async fn deploy(&self, name: &str, wasm: &str, settings: Option<&str>) {
        let folder = self.folder();
        if let Some(settings) = settings {
            write_atomically(&folder, &format!("{name}.toml"), settings.as_bytes());
        }
        write_atomically(
            &folder,
            &format!("{name}.wasm"),
            &std::fs::read(wasm).unwrap(),
        );
    }

    fn loads(&self) -> u64 {
        self.plugins.folder.stats.loads.load(Relaxed)
    }

    fn failures(&self) -> u64 {
        self.plugins.folder.stats.failures.load(Relaxed)
    }

    fn unloads(&self) -> u64 {
        self.plugins.folder.stats.unloads.load(Relaxed)
    }
}

fn write_atomically(folder: &Path, name: &str, bytes: &[u8]) {
    let tmp = folder.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, folder.join(name)).unwrap();
}

async fn wait_for(what: &str, done: impl FnMut() -> bool) {
    wait_for_up_to(Duration::from_secs(20), what, done).await
}

async fn wait_for_up_to(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Publishes QoS 1 and returns the PUBACK reason code.
async fn publish_qos1(client: &mut RawClient, topic: &str, packet_id: u16) -> ReasonCode {
    let publish = publish_packet(topic, b"x", QoS::AtLeastOnce, false, packet_id);
    client.send(Packet::Publish(publish)).await.unwrap();
    match client.recv().await.unwrap() {
        Packet::PubAck(ack) => {
            assert_eq!(ack.packet_id, packet_id);
            ack.reason_code
        }
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

#[tokio::test]
async fn an_authz_plugin_loads_reloads_and_unloads_while_clients_stay_connected() {
    let setup = start(AclNomatch::Allow).await;
    let addr = setup.broker.addr;
    let mut user = RawClient::connected(addr, Protocol::V5, "user-1").await;
    let mut admin = RawClient::connected(addr, Protocol::V5, "admin-1").await;
    let mut watcher = RawClient::connected(addr, Protocol::V311, "watcher").await;
    watcher.subscribe_qos("readonly/#", QoS::AtMostOnce).await;

    // No plugin: everything is allowed.
    assert_eq!(
        publish_qos1(&mut user, "readonly/a", 1).await,
        ReasonCode::SUCCESS
    );
    assert_eq!(&watcher.recv_publish().await.topic[..], "readonly/a");

    setup.deploy("acl", artifacts::READONLY_ACL, None).await;
    wait_for("the ACL plugin to load", || setup.loads() == 1).await;
    assert_eq!(
        publish_qos1(&mut user, "readonly/a", 2).await,
        ReasonCode::NOT_AUTHORIZED
    );
    watcher.expect_nothing().await;
    assert_eq!(
        publish_qos1(&mut admin, "readonly/a", 3).await,
        ReasonCode::SUCCESS
    );
    assert_eq!(&watcher.recv_publish().await.topic[..], "readonly/a");
    // The plugin ignores other topics, and acl_nomatch = allow lets them through.
    assert_eq!(
        publish_qos1(&mut user, "free/a", 4).await,
        ReasonCode::NO_MATCHING_SUBSCRIBERS
    );

    // A v3.1.1 client denied at QoS 1 gets a plain PUBACK, and nothing is delivered.
    let mut old = RawClient::connected(addr, Protocol::V311, "old-user").await;
    publish_qos1(&mut old, "readonly/b", 5).await;
    watcher.expect_nothing().await;

    // Settings changed: the plugin reloads (same behaviour).
    std::fs::write(setup.folder().join("acl.toml"), "priority = 5\n").unwrap();
    wait_for("the ACL plugin to reload", || setup.loads() == 2).await;
    assert_eq!(
        publish_qos1(&mut user, "readonly/a", 6).await,
        ReasonCode::NOT_AUTHORIZED
    );

    // Removed: unloaded, and cached denials are gone at once.
    std::fs::remove_file(setup.folder().join("acl.wasm")).unwrap();
    wait_for("the ACL plugin to unload", || setup.unloads() == 1).await;
    assert_eq!(
        publish_qos1(&mut user, "readonly/a", 7).await,
        ReasonCode::SUCCESS
    );
    assert_eq!(&watcher.recv_publish().await.topic[..], "readonly/a");
    assert_eq!(setup.failures(), 0);
}

#[tokio::test]
async fn acl_nomatch_deny_refuses_what_no_plugin_allows() {
    let setup = start(AclNomatch::Deny).await;
    setup.deploy("acl", artifacts::READONLY_ACL, None).await;
    wait_for("the ACL plugin to load", || setup.loads() == 1).await;
    let mut admin = RawClient::connected(setup.broker.addr, Protocol::V5, "admin-1").await;
    assert_eq!(
        publish_qos1(&mut admin, "readonly/a", 1).await,
        ReasonCode::NO_MATCHING_SUBSCRIBERS
    );
    assert_eq!(
        publish_qos1(&mut admin, "elsewhere", 2).await,
        ReasonCode::NOT_AUTHORIZED
    );
    let suback = admin.subscribe_qos("elsewhere", QoS::AtMostOnce).await;
    assert_eq!(suback.reason_codes, vec![ReasonCode::NOT_AUTHORIZED]);
}

#[tokio::test]
async fn deny_action_disconnect_closes_the_connection_of_a_denied_client() {
    let setup = start_with(AclNomatch::Deny, DenyAction::Disconnect).await;
    setup.deploy("acl", artifacts::READONLY_ACL, None).await;
    wait_for("the ACL plugin to load", || setup.loads() == 1).await;
    let addr = setup.broker.addr;
    for protocol in [Protocol::V5, Protocol::V311] {
        // Allowed requests keep the connection.
        let mut admin = RawClient::connected(addr, protocol, "admin-1").await;
        let code = publish_qos1(&mut admin, "readonly/a", 1).await;
        assert!(code.0 < 0x80, "{protocol:?}: {code:?}");
        // A denied publish closes it (v5: DISCONNECT 0x87 first).
        let mut user = RawClient::connected(addr, protocol, "user-1").await;
        let publish = publish_packet("readonly/a", b"x", QoS::AtLeastOnce, false, 1);
        user.send(Packet::Publish(publish)).await.unwrap();
        user.expect_closed(ReasonCode::NOT_AUTHORIZED).await;
        // So does a denied subscription.
        let mut user = RawClient::connected(addr, protocol, "user-2").await;
        let subscribe = wasmq_codec::Subscribe {
            packet_id: 1,
            filters: vec![(
                "elsewhere".into(),
                wasmq_codec::SubscriptionOptions::qos(QoS::AtMostOnce),
            )],
            properties: Default::default(),
        };
        user.send(Packet::Subscribe(subscribe)).await.unwrap();
        user.expect_closed(ReasonCode::NOT_AUTHORIZED).await;
    }
}

#[tokio::test]
async fn a_transform_plugin_stamps_and_rewrites_messages() {
    let setup = start(AclNomatch::Allow).await;
    setup
        .deploy(
            "stamp",
            artifacts::STAMP,
            Some("[settings]\nrewrite_from = \"legacy/\"\nrewrite_to = \"v2/\"\n"),
        )
        .await;
    wait_for("the transform plugin to load", || setup.loads() == 1).await;
    let mut subscriber = RawClient::connected(setup.broker.addr, Protocol::V5, "sub").await;
    subscriber.subscribe_qos("#", QoS::AtLeastOnce).await;
    let mut publisher = RawClient::connected(setup.broker.addr, Protocol::V5, "pub").await;
    publish_qos1(&mut publisher, "legacy/temp", 1).await;
    let publish = subscriber.recv_publish().await;
    assert_eq!(&publish.topic[..], "v2/temp");
    let stamps: Vec<_> = publish
        .properties
        .user_properties
        .iter()
        .map(|(k, v)| (&k[..], &v[..]))
        .collect();
    assert_eq!(stamps, vec![("wasmq-plugin", "stamp")]);
    publish_qos1(&mut publisher, "legacy/temp", 2).await;
    subscriber.recv_publish().await;
    assert_eq!(
        stamp_calls(&setup),
        2,
        "without transform_per_topic the plugin is asked for every message"
    );
}

/// The `stamp` plugin's calls so far.
fn stamp_calls(setup: &Setup) -> u64 {
    let chain = setup.plugins.folder.live().chain.current();
    chain.get("stamp").map_or(0, |p| p.stats().calls)
}

/// Publishes QoS 1 to `topic` with one user property of the client's and `payload`, and
/// returns what the subscriber gets: topic, payload and user properties.
async fn stamped(
    publisher: &mut RawClient,
    subscriber: &mut RawClient,
    topic: &str,
    payload: &[u8],
    packet_id: u16,
) -> (String, Vec<u8>, Vec<(String, String)>) {
    let mut publish = publish_packet(topic, payload, QoS::AtLeastOnce, false, packet_id);
    publish.properties.user_properties = vec![("n".into(), packet_id.to_string().into())];
    publisher.send(Packet::Publish(publish)).await.unwrap();
    let got = subscriber.recv_publish().await;
    assert!(matches!(publisher.recv().await.unwrap(), Packet::PubAck(_)));
    let properties = got
        .properties
        .user_properties
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    (got.topic.to_string(), got.payload.to_vec(), properties)
}

#[tokio::test]
async fn a_per_topic_transform_is_asked_once_per_topic_and_repeated_exactly() {
    let setup = start(AclNomatch::Allow).await;
    let settings = |to: &str| {
        format!(
            "transform_per_topic = true\n[settings]\nrewrite_from = \"legacy/\"\nrewrite_to = \"{to}\"\n"
        )
    };
    setup
        .deploy("stamp", artifacts::STAMP, Some(&settings("v2/")))
        .await;
    wait_for("the transform plugin to load", || setup.loads() == 1).await;
    let mut subscriber = RawClient::connected(setup.broker.addr, Protocol::V5, "sub").await;
    subscriber.subscribe_qos("#", QoS::AtLeastOnce).await;
    let mut publisher = RawClient::connected(setup.broker.addr, Protocol::V5, "pub").await;

    // Each message keeps its own payload and properties and gets the first one's change.
    for i in 1..=5u16 {
        let payload = format!("reading {i}");
        let (topic, got, properties) = stamped(
            &mut publisher,
            &mut subscriber,
            "legacy/temp",
            payload.as_bytes(),
            i,
        )
        .await;
        assert_eq!(topic, "v2/temp");
        assert_eq!(got, payload.as_bytes());
        assert_eq!(
            properties,
            vec![
                ("n".to_string(), i.to_string()),
                ("wasmq-plugin".to_string(), "stamp".to_string())
            ]
        );
    }
    for i in 6..=8u16 {
        let (topic, _, _) = stamped(&mut publisher, &mut subscriber, "other/x", b"y", i).await;
        assert_eq!(topic, "other/x");
    }
    assert_eq!(
        stamp_calls(&setup),
        2,
        "asked once for legacy/temp and once for other/x, not per message"
    );

    // A reload (new settings) purges what was kept: the next message is asked again.
    setup
        .deploy("stamp", artifacts::STAMP, Some(&settings("v3/")))
        .await;
    wait_for("the plugin to reload", || setup.loads() == 2).await;
    let (topic, _, _) = stamped(&mut publisher, &mut subscriber, "legacy/temp", b"z", 9).await;
    assert_eq!(topic, "v3/temp");
    assert_eq!(stamp_calls(&setup), 1, "the new version asked once");
}

/// A transform's new topic is checked like a client's: one with a wildcard is not
/// routed, and the message goes out under the topic it was sent to, each time, through
/// the per-message chain and through the per-topic cache alike.
#[tokio::test]
async fn a_transform_that_rewrites_to_an_invalid_topic_keeps_the_original() {
    for per_topic in [false, true] {
        let setup = start(AclNomatch::Allow).await;
        let settings = format!(
            "transform_per_topic = {per_topic}\n[settings]\nrewrite_from = \"legacy/\"\nrewrite_to = \"bad/+/\"\n"
        );
        setup
            .deploy("stamp", artifacts::STAMP, Some(&settings))
            .await;
        wait_for("the transform plugin to load", || setup.loads() == 1).await;
        let mut subscriber = RawClient::connected(setup.broker.addr, Protocol::V5, "sub").await;
        subscriber.subscribe_qos("#", QoS::AtLeastOnce).await;
        let mut publisher = RawClient::connected(setup.broker.addr, Protocol::V5, "pub").await;
        for i in 1..=3u16 {
            let (topic, got, _) =
                stamped(&mut publisher, &mut subscriber, "legacy/temp", b"r", i).await;
            assert_eq!(topic, "legacy/temp", "per topic: {per_topic}, message {i}");
            assert_eq!(got, b"r");
        }
    }
}

#[tokio::test]
async fn a_broken_file_leaves_the_previous_version_serving() {
    let setup = start(AclNomatch::Allow).await;
    setup.deploy("acl", artifacts::READONLY_ACL, None).await;
    wait_for("the ACL plugin to load", || setup.loads() == 1).await;
    write_atomically(&setup.folder(), "acl.wasm", b"\0asm not really a component");
    wait_for("the broken file to be refused", || setup.failures() == 1).await;
    write_atomically(&setup.folder(), "acl.toml", b"priorty = 1\n");
    wait_for("the broken settings to be refused", || {
        setup.failures() == 2
    })
    .await;
    let mut user = RawClient::connected(setup.broker.addr, Protocol::V5, "user-1").await;
    assert_eq!(
        publish_qos1(&mut user, "readonly/a", 1).await,
        ReasonCode::NOT_AUTHORIZED
    );
    assert_eq!(setup.loads(), 1);
}

#[tokio::test]
async fn hostile_plugins_fail_closed_and_the_broker_keeps_serving() {
    for (name, wasm) in [
        ("loop", artifacts::LOOP_FOREVER),
        ("alloc", artifacts::ALLOC_UNBOUNDED),
        ("panic", artifacts::PANIC),
    ] {
        let setup = start(AclNomatch::Allow).await;
        // No retry within the test (backoff_initial_ms): disabled stays disabled.
        let settings = "hooks = [\"authz\"]\nfaults_to_disable = 2\n\
                        [retry]\nbackoff_initial_ms = 600000\n\
                        [limits]\ncall_timeout_ms = 50\nmemory_bytes_max = 4194304\n";
        setup.deploy(name, wasm, Some(settings)).await;
        wait_for("the hostile plugin to load", || setup.loads() == 1).await;
        let addr = setup.broker.addr;
        let mut victim = RawClient::connected(addr, Protocol::V5, "victim").await;
        for packet_id in 1..=3 {
            // Fails closed: deny, both while faulting and once disabled.
            assert_eq!(
                publish_qos1(&mut victim, &format!("t/{packet_id}"), packet_id).await,
                ReasonCode::NOT_AUTHORIZED,
                "{name}"
            );
        }
        // The broker still serves: a new connection, a ping.
        let mut other = RawClient::connected(addr, Protocol::V311, "other").await;
        other.send(Packet::PingReq).await.unwrap();
        assert_eq!(other.recv().await.unwrap(), Packet::PingResp, "{name}");
        let plugin = setup
            .plugins
            .folder
            .live()
            .chain
            .current()
            .get(name)
            .cloned()
            .expect("still loaded");
        assert!(
            plugin.is_disabled(),
            "{name} is disabled after repeated faults"
        );
        assert!(plugin.stats().faults >= 2, "{name}: {:?}", plugin.stats());
    }
}

/// Reads `$SYS/broker/plugins/NAME/...` publications until `topic`'s value satisfies
/// `want` (at most 20 s); returns the latest value of every topic seen.
async fn sys_until(
    sys: &mut RawClient,
    topic: &str,
    want: impl Fn(&str) -> bool,
) -> std::collections::HashMap<String, String> {
    let mut values = std::collections::HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let publish = tokio::time::timeout_at(deadline.into(), sys.recv_publish())
            .await
            .unwrap_or_else(|_| panic!("{topic}: not as wanted within 20 s: {values:?}"));
        let value = String::from_utf8(publish.payload.to_vec()).unwrap();
        let done = publish.topic == topic && want(&value);
        values.insert(publish.topic.to_string(), value);
        if done {
            return values;
        }
    }
}

#[tokio::test]
async fn a_plugin_disabled_by_faults_denies_while_down_and_comes_back_after_its_backoff() {
    let setup = start_configured(AclNomatch::Allow, |c| c.sys.interval_secs = 1).await;
    // Answers allow, and faults (a panic) on topics under fault/.
    let settings = "hooks = [\"authz\"]\nfaults_to_disable = 2\n\
                    [retry]\nbackoff_initial_ms = 3000\n\
                    [settings]\nauthz = \"allow\"\nauthz_panic_prefix = \"fault/\"\n";
    setup
        .deploy("flaky", artifacts::SCRIPTED, Some(settings))
        .await;
    wait_for("the plugin to load", || setup.loads() == 1).await;
    let addr = setup.broker.addr;
    let mut sys = RawClient::connected(addr, Protocol::V5, "operator").await;
    sys.subscribe_qos("$SYS/broker/plugins/#", QoS::AtMostOnce)
        .await;
    let state = "$SYS/broker/plugins/flaky/state";
    sys_until(&mut sys, state, |v| v == "active").await;

    let mut client = RawClient::connected(addr, Protocol::V5, "client").await;
    // A subscriber, so that an allowed PUBLISH is acknowledged with SUCCESS.
    let mut subscriber = RawClient::connected(addr, Protocol::V5, "subscriber").await;
    subscriber.subscribe_qos("ok/#", QoS::AtMostOnce).await;
    assert_eq!(
        publish_qos1(&mut client, "ok/1", 1).await,
        ReasonCode::SUCCESS
    );
    for packet_id in [2, 3] {
        assert_eq!(
            publish_qos1(&mut client, &format!("fault/{packet_id}"), packet_id).await,
            ReasonCode::NOT_AUTHORIZED
        );
    }
    let plugin = setup
        .plugins
        .folder
        .live()
        .chain
        .current()
        .get("flaky")
        .cloned()
        .unwrap();
    assert!(plugin.is_disabled(), "{}", plugin.state());
    // Down: fail closed, although the plugin (and acl_nomatch) would allow.
    assert_eq!(
        publish_qos1(&mut client, "ok/2", 4).await,
        ReasonCode::NOT_AUTHORIZED,
        "denied while down (state now: {}; the backoff is 3 s)",
        plugin.state()
    );
    let down = sys_until(&mut sys, state, |v| v.starts_with("disabled until ")).await;
    assert_eq!(down["$SYS/broker/plugins/flaky/disables"], "1", "{down:?}");

    // Back after the backoff, on a fresh instance: allowed again, then active.
    sys_until(&mut sys, state, |v| v == "retrying").await;
    assert_eq!(
        publish_qos1(&mut client, "ok/3", 5).await,
        ReasonCode::SUCCESS
    );
    let up = sys_until(&mut sys, state, |v| v == "active").await;
    assert_eq!(up["$SYS/broker/plugins/flaky/faults"], "2", "{up:?}");
    assert_eq!(up["$SYS/broker/plugins/flaky/disables"], "1", "{up:?}");
}

#[tokio::test]
async fn hot_reload_under_load_loses_nothing() {
    let setup = start(AclNomatch::Allow).await;
    setup.deploy("acl", artifacts::READONLY_ACL, None).await;
    wait_for("the ACL plugin to load", || setup.loads() == 1).await;
    let addr = setup.broker.addr;
    let mut subscriber = RawClient::connected(addr, Protocol::V5, "sub").await;
    subscriber.subscribe_qos("load/#", QoS::AtLeastOnce).await;
    let received = tokio::spawn(async move {
        let mut next = 0u32;
        while next < 2000 {
            let publish = subscriber.recv_publish().await;
            let n = u32::from_be_bytes(publish.payload[..4].try_into().unwrap());
            assert_eq!(n, next, "every message once, in order");
            subscriber
                .send(Packet::PubAck(wasmq_codec::PubAckBody::new(
                    publish.packet_id,
                )))
                .await
                .unwrap();
            next += 1;
        }
        next
    });

    // A real client publishing QoS 1 continuously while the plugin is replaced 20 times.
    let mut options = setup.broker.v4_options("publisher");
    options.set_inflight(16);
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 64);
    let acks = tokio::spawn(async move {
        let mut acks = 0u32;
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => acks += 1,
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Disconnect)) => panic!("disconnected"),
                Ok(_) => {}
                Err(e) => return (acks, Some(e.to_string())),
            }
            if acks == 2000 {
                return (acks, None);
            }
        }
    });
    let publisher = tokio::spawn(async move {
        for i in 0..2000u32 {
            client
                .publish(
                    "load/x",
                    rumqttc::QoS::AtLeastOnce,
                    false,
                    i.to_be_bytes().to_vec(),
                )
                .await
                .unwrap();
            if i % 100 == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        client
    });
    for reload in 0..20 {
        // Alternating settings make each write a real change.
        let settings = format!("priority = {}\n", reload % 2 + 1);
        setup
            .deploy("acl", artifacts::READONLY_ACL, Some(&settings))
            .await;
        let expected = 2 + reload as u64;
        wait_for("a reload", || setup.loads() >= expected).await;
    }
    assert_eq!(received.await.unwrap(), 2000);
    let (acks, error) = acks.await.unwrap();
    assert_eq!(
        (acks, error),
        (2000, None),
        "the publisher was never disconnected"
    );
    let _client = publisher.await.unwrap();
    assert_eq!(setup.loads(), 21);
    assert_eq!(setup.failures(), 0);
}

/// The `auth-challenge` example's method.
const DEMO_METHOD: &str = "demo-challenge";

/// One `demo-challenge` exchange (MQTT 5 enhanced authentication) on a new connection
/// as `user`: CONNECT naming the method, the broker's AUTH 0x18 with the plugin's nonce,
/// the answer `NONCE:SECRET` (or `answer` itself when given, for a nonce of another
/// exchange) in AUTH 0x18. Returns the CONNACK's reason code and the nonce.
async fn demo_challenge(
    addr: std::net::SocketAddr,
    user: &str,
    secret: &str,
    answer: Option<&str>,
) -> (ReasonCode, String) {
    let mut connect = connect_packet(Protocol::V5, user, true);
    connect.username = Some(ByteString::from(user));
    connect.properties.authentication_method = Some(ByteString::from(DEMO_METHOD));
    let mut client = RawClient::open(addr, Protocol::V5).await.unwrap();
    client
        .send(Packet::Connect(Box::new(connect)))
        .await
        .unwrap();
    let nonce = match client.recv().await.expect("AUTH from the broker") {
        Packet::Auth(a) => {
            assert_eq!(a.reason_code, ReasonCode::CONTINUE_AUTHENTICATION, "{a:?}");
            assert_eq!(
                a.properties.authentication_method.as_deref(),
                Some(DEMO_METHOD)
            );
            let data = a.properties.authentication_data.expect("a nonce");
            String::from_utf8(data.to_vec()).expect("a hex nonce")
        }
        other => panic!("expected AUTH 0x18, got {other:?}"),
    };
    let answer = answer.map_or_else(|| format!("{nonce}:{secret}"), str::to_string);
    client
        .send(auth_packet(
            ReasonCode::CONTINUE_AUTHENTICATION,
            DEMO_METHOD,
            Bytes::from(answer),
        ))
        .await
        .unwrap();
    match client.recv().await.expect("CONNACK") {
        Packet::ConnAck(connack) => (connack.reason_code, nonce),
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

/// The same examples in every language, checked through a running broker's plugin
/// folder with real clients: the Rust ones from `wasmq-plugin-artifacts`, the Python and
/// JavaScript ones built by `scripts/build-plugins`.
#[tokio::test]
async fn every_language_behaves_alike_in_a_running_broker() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = std::process::Command::new(root.join("scripts/build-plugins"))
        .current_dir(&root)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run scripts/build-plugins");
    assert!(
        output.status.success(),
        "scripts/build-plugins failed: the Python and JavaScript examples cannot be tested:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let built = root.join("target/plugins");
    let languages = [
        (
            "rust",
            PathBuf::from(artifacts::READONLY_ACL),
            PathBuf::from(artifacts::STAMP),
            PathBuf::from(artifacts::AUTH_CHALLENGE),
        ),
        (
            "python",
            built.join("python/authz-readonly.wasm"),
            built.join("python/transform-stamp.wasm"),
            built.join("python/auth-challenge.wasm"),
        ),
        (
            "js",
            built.join("js/authz-readonly.wasm"),
            built.join("js/transform-stamp.wasm"),
            built.join("js/auth-challenge.wasm"),
        ),
    ];
    // Interpreter-based components need more memory than the 16 MiB default.
    let settings = "[limits]\nmemory_bytes_max = 134217728\ncall_timeout_ms = 2000\n";
    for (language, authz, transform, auth) in languages {
        let dir = tempfile::tempdir().unwrap();
        let config = PluginsConfig {
            dir: dir.path().join("plugins"),
            // Shared with plugin-host's tests: each component is compiled once.
            cache_dir: std::env::temp_dir().join("wasmq-plugin-host-tests-cache"),
            debounce_ms: 20,
            acl_nomatch: AclNomatch::Allow,
            builtin: Vec::new(),
            ..PluginsConfig::default()
        };
        let plugins = Plugins::start(&config).await.unwrap();
        let broker = TestBroker::start_with_hooks(|_| {}, Some(plugins.hooks())).await;
        let setup = Setup {
            broker,
            plugins,
            dir,
        };
        setup
            .deploy("acl", authz.to_str().unwrap(), Some(settings))
            .await;
        setup
            .deploy("stamp", transform.to_str().unwrap(), Some(settings))
            .await;
        let auth_settings = format!("{settings}[settings]\nsecret_alice = \"open sesame\"\n");
        setup
            .deploy("challenge", auth.to_str().unwrap(), Some(&auth_settings))
            .await;
        // A Python or JavaScript component holds an interpreter (12-18 MB): compiling
        // it in a debug build on a busy 2-core machine takes tens of seconds the first
        // time (then the shared cache serves it).
        let loading = Instant::now();
        wait_for_up_to(
            Duration::from_secs(300),
            &format!("{language}: both plugins to load"),
            || setup.loads() + setup.failures() >= 3,
        )
        .await;
        println!("{language}: loaded in {:?}", loading.elapsed());
        assert_eq!(setup.failures(), 0, "{language}");

        let addr = setup.broker.addr;
        // Enhanced authentication through the broker: the right secret connects; a
        // wrong one, a user with no secret and the nonce of another exchange do not.
        let (code, first_nonce) = demo_challenge(addr, "alice", "open sesame", None).await;
        assert_eq!(code, ReasonCode::SUCCESS, "{language}");
        let (code, _) = demo_challenge(addr, "alice", "wrong", None).await;
        assert_eq!(code, ReasonCode::NOT_AUTHORIZED, "{language}: wrong secret");
        let (code, _) = demo_challenge(addr, "bob", "open sesame", None).await;
        assert_eq!(
            code,
            ReasonCode::NOT_AUTHORIZED,
            "{language}: no secret_bob"
        );
        let stale = format!("{first_nonce}:open sesame");
        let (code, nonce) = demo_challenge(addr, "alice", "", Some(&stale)).await;
        assert_ne!(
            nonce, first_nonce,
            "{language}: each exchange has its own nonce"
        );
        assert_eq!(
            code,
            ReasonCode::NOT_AUTHORIZED,
            "{language}: another exchange's nonce"
        );

        let mut subscriber = RawClient::connected(addr, Protocol::V5, "sub").await;
        subscriber
            .subscribe_qos("readonly/#", QoS::AtLeastOnce)
            .await;
        // A `#` subscriber: let subscribe (nobody decides; `acl_nomatch` allows), kept
        // from `secret/...` on delivery by the example's `deliver` hook.
        let mut watcher = RawClient::connected(addr, Protocol::V5, "watcher").await;
        watcher.subscribe_qos("#", QoS::AtMostOnce).await;
        let mut user = RawClient::connected(addr, Protocol::V5, "user-1").await;
        let mut admin = RawClient::connected(addr, Protocol::V5, "admin-1").await;
        assert_eq!(
            publish_qos1(&mut user, "readonly/a", 1).await,
            ReasonCode::NOT_AUTHORIZED,
            "{language}"
        );
        assert_eq!(
            publish_qos1(&mut admin, "readonly/a", 1).await,
            ReasonCode::SUCCESS,
            "{language}"
        );
        let publish = subscriber.recv_publish().await;
        let properties: Vec<_> = publish
            .properties
            .user_properties
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(
            properties,
            vec![("wasmq-plugin".to_string(), "stamp".to_string())],
            "{language}"
        );
        subscriber
            .send(Packet::PubAck(wasmq_codec::PubAckBody::new(
                publish.packet_id,
            )))
            .await
            .unwrap();
        subscriber.expect_nothing().await;

        assert_eq!(
            watcher.recv_publish().await.topic,
            "readonly/a",
            "{language}"
        );
        for (packet_id, topic) in [(2, "secret/plans"), (3, "news/1")] {
            assert_eq!(
                publish_qos1(&mut admin, topic, packet_id).await,
                ReasonCode::SUCCESS,
                "{language}: {topic}"
            );
        }
        assert_eq!(
            watcher.recv_publish().await.topic,
            "news/1",
            "{language}: secret/plans is not delivered through `#`"
        );
        watcher.expect_nothing().await;
    }
}
