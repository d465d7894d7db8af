//! Read access on delivery (the `deliver` hook, issue 12): a message on a concrete topic
//! that reaches a subscriber through a filter with wildcards is checked for that
//! subscriber, on its own connection, when it takes the message off its queue.
//!
//! The case that must hold: a `$all` allow on `sensors/#` with a deny on
//! `sensors/secret` keeps `sensors/secret` from a `#` or `sensors/+` subscriber while
//! `sensors/temp` reaches it; through the default `acl-sql` plugin on SQLite, and
//! through the `deliver-deny` fixture. A subscriber whose filter has no wildcard is
//! not asked. How a drop is observed without waiting: the publisher sends the denied
//! message first and an allowed one after it; a subscriber gets one publisher's
//! messages in order, so the allowed one arriving first proves the other was dropped.
//!
//! And the cache lifetimes authorization answers carry since 0.2.0 (`cache-lifetime`):
//! `none` is asked again, `connection` outlives the operator's TTL, the operator's TTL
//! still applies to 0.1.0 plugins and to 0.2.0 answers that do not say.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use sqlx::SqlitePool;
use wasmq::config::{AclNomatch, Config, DatabaseConfig, PluginsConfig};
use wasmq::plugins::{Plugins, open_database};
use wasmq_codec::{Packet, Protocol, PubAckBody, QoS, ReasonCode};
use wasmq_plugin_artifacts as artifacts;
use wasmq_plugin_host::Contract;
use wasmq_tests::{RawClient, TestBroker, both_versions, publish_packet};

const ACL_SQL_TOML: &str = include_str!("../../plugins/acl-sql/acl-sql.toml");

struct Setup {
    broker: TestBroker,
    plugins: Plugins,
    _dir: tempfile::TempDir,
}

/// A broker with the plugin folder holding `plugins` (name, wasm, NAME.toml), loaded
/// before the broker starts; `database` for acl-sql.
async fn start(
    dir: tempfile::TempDir,
    plugins: &[(&str, &str, &str)],
    database: Option<Arc<wasmq_plugin_host::Database>>,
    adjust: impl FnOnce(&mut Config),
) -> Setup {
    let folder = dir.path().join("plugins");
    std::fs::create_dir_all(&folder).unwrap();
    for (name, wasm, toml) in plugins {
        std::fs::copy(wasm, folder.join(format!("{name}.wasm"))).unwrap();
        std::fs::write(folder.join(format!("{name}.toml")), toml).unwrap();
    }
    let config = PluginsConfig {
        dir: folder,
        cache_dir: dir.path().join("cache"),
        watch: false,
        // What the 0.1 plugin ignores is allowed; acl-sql's default rules cover the rest.
        acl_nomatch: AclNomatch::Allow,
        builtin: Vec::new(),
        ..PluginsConfig::default()
    };
    let plugins = Plugins::start_with_database(&config, database)
        .await
        .expect("the plugin folder starts");
    assert_eq!(
        plugins.folder.stats.failures.load(Relaxed),
        0,
        "plugins load"
    );
    let broker = TestBroker::start_with_hooks(adjust, Some(plugins.hooks())).await;
    Setup {
        broker,
        plugins,
        _dir: dir,
    }
}

/// The `deliver-deny` fixture alone, denying deliveries of `deny` (comma-separated).
async fn start_fixture(deny: &str, adjust: impl FnOnce(&mut Config)) -> Setup {
    let toml = format!("[settings]\ndeny = \"{deny}\"\npanic_prefix = \"boom/\"\n");
    start(
        tempfile::tempdir().unwrap(),
        &[("deliver-deny", artifacts::DELIVER_DENY, &toml)],
        None,
        adjust,
    )
    .await
}

impl Setup {
    fn calls(&self, plugin: &str) -> u64 {
        let set = self.plugins.folder.live().chain.current();
        set.get(plugin).map_or(0, |p| p.stats().calls)
    }

    fn dropped_not_authorized(&self) -> u64 {
        self.broker
            .broker
            .metrics
            .messages_dropped_not_authorized
            .load(Relaxed)
    }
}

async fn publish(client: &mut RawClient, topic: &str, qos: QoS, retain: bool, packet_id: u16) {
    let publish = publish_packet(topic, topic.as_bytes(), qos, retain, packet_id);
    client.send(Packet::Publish(publish)).await.unwrap();
    if qos == QoS::AtLeastOnce {
        match client.recv().await.unwrap() {
            Packet::PubAck(ack) => assert_eq!(ack.packet_id, packet_id),
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
}

async fn next_topic(client: &mut RawClient) -> String {
    client.recv_publish().await.topic.to_string()
}

/// `sensors/secret` then `sensors/temp` to every wildcard subscriber: only the second
/// arrives.
async fn the_secret_is_kept_from(
    broker: &TestBroker,
    protocol: Protocol,
) -> (RawClient, RawClient, RawClient) {
    let mut hash = RawClient::connected(broker.addr, protocol, "hash").await;
    assert!(
        !hash.subscribe_qos("#", QoS::AtMostOnce).await.reason_codes[0].is_error(),
        "the `#` subscription is granted"
    );
    let mut plus = RawClient::connected(broker.addr, protocol, "plus").await;
    assert!(
        !plus
            .subscribe_qos("sensors/+", QoS::AtMostOnce)
            .await
            .reason_codes[0]
            .is_error(),
        "the `sensors/+` subscription is granted"
    );
    let mut publisher = RawClient::connected(broker.addr, protocol, "pub").await;
    publish(&mut publisher, "sensors/secret", QoS::AtLeastOnce, false, 1).await;
    publish(&mut publisher, "sensors/temp", QoS::AtLeastOnce, false, 2).await;
    assert_eq!(
        next_topic(&mut hash).await,
        "sensors/temp",
        "`#` subscriber"
    );
    assert_eq!(
        next_topic(&mut plus).await,
        "sensors/temp",
        "`sensors/+` subscriber"
    );
    (hash, plus, publisher)
}

// ---------------------------------------------------------------------------------
// Through acl-sql on SQLite
// ---------------------------------------------------------------------------------

async fn acl_sql_keeps_a_denied_topic_from_wildcard_subscribers(protocol: Protocol) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acl.db");
    let url = format!("sqlite://{}?mode=rwc", file.display());
    let database = open_database(&DatabaseConfig {
        url: url.clone(),
        ..DatabaseConfig::default()
    })
    .await
    .unwrap()
    .expect("a database");
    // Over the default rules (`$all` pubsub `#` is id 1): the case of the issue.
    let admin = SqlitePool::connect(&url).await.unwrap();
    for (allow, access, topic) in [(1, 1, "sensors/#"), (0, 1, "sensors/secret")] {
        sqlx::query(
            "INSERT INTO mqtt_acl (allow, username, access, topic) VALUES (?, '$all', ?, ?)",
        )
        .bind(allow)
        .bind(access)
        .bind(topic)
        .execute(&admin)
        .await
        .unwrap();
    }
    let setup = start(
        dir,
        &[("acl-sql", artifacts::ACL_SQL, ACL_SQL_TOML)],
        Some(database),
        |_| {},
    )
    .await;
    let set = setup.plugins.folder.live().chain.current();
    assert!(set.hooks().deliver, "acl-sql checks deliveries");
    drop(set);
    let broker = &setup.broker;

    let (mut hash, _plus, mut publisher) = the_secret_is_kept_from(broker, protocol).await;
    // The exact filter was refused when subscribed: its subscribe check is the one.
    let mut exact = RawClient::connected(broker.addr, protocol, "exact").await;
    let code = exact
        .subscribe_qos("sensors/secret", QoS::AtMostOnce)
        .await
        .reason_codes[0];
    assert_eq!(
        code,
        if protocol == Protocol::V5 {
            ReasonCode::NOT_AUTHORIZED
        } else {
            ReasonCode(0x80)
        }
    );
    // A topic no sub row names is left to the subscription (no acl_nomatch deny).
    publish(&mut publisher, "other/x", QoS::AtLeastOnce, false, 3).await;
    assert_eq!(next_topic(&mut hash).await, "other/x");
    assert_eq!(setup.dropped_not_authorized(), 2, "the two denied, counted");

    // Retained messages go through the same check when a wildcard subscription takes them.
    let mut retainer = RawClient::connected(broker.addr, protocol, "retainer").await;
    publish(&mut retainer, "sensors/secret", QoS::AtLeastOnce, true, 1).await;
    publish(&mut retainer, "sensors/temp", QoS::AtLeastOnce, true, 2).await;
    let mut late = RawClient::connected(broker.addr, protocol, "late").await;
    late.subscribe_qos("sensors/#", QoS::AtMostOnce).await;
    let retained = late.recv_publish().await;
    assert_eq!(
        (&retained.topic[..], retained.retain),
        ("sensors/temp", true),
        "only the allowed retained message reaches a wildcard subscriber"
    );
}

// ---------------------------------------------------------------------------------
// Through the deliver-deny fixture
// ---------------------------------------------------------------------------------

async fn a_fixture_keeps_a_denied_topic_from_wildcard_subscribers(protocol: Protocol) {
    let setup = start_fixture("sensors/secret", |_| {}).await;
    let broker = &setup.broker;
    let mut exact = RawClient::connected(broker.addr, protocol, "exact").await;
    exact.subscribe_qos("sensors/secret", QoS::AtMostOnce).await;
    let (mut hash, mut plus, mut publisher) = the_secret_is_kept_from(broker, protocol).await;
    // The exact subscriber is not asked: its subscription (allowed: no authz plugin)
    // covers the topic.
    assert_eq!(next_topic(&mut exact).await, "sensors/secret");
    assert_eq!(setup.dropped_not_authorized(), 2);
    assert_eq!(
        setup.calls("deliver-deny"),
        4,
        "two wildcard subscribers asked about two topics; never the exact one"
    );
    // Cached per connection: the same topics again cost no call.
    publish(&mut publisher, "sensors/secret", QoS::AtLeastOnce, false, 3).await;
    publish(&mut publisher, "sensors/temp", QoS::AtLeastOnce, false, 4).await;
    assert_eq!(next_topic(&mut hash).await, "sensors/temp");
    assert_eq!(next_topic(&mut plus).await, "sensors/temp");
    assert_eq!(next_topic(&mut exact).await, "sensors/secret");
    assert_eq!(setup.calls("deliver-deny"), 4, "answered from the caches");
    assert_eq!(setup.dropped_not_authorized(), 4);
}

async fn a_denied_qos1_delivery_leaves_the_session_consistent(protocol: Protocol) {
    // A window of one message: what the denied messages must not take.
    let setup = start_fixture("sensors/secret", |c| c.limits.max_inflight = 1).await;
    let broker = &setup.broker;
    let mut sub = RawClient::connected(broker.addr, protocol, "sub").await;
    sub.subscribe_qos("sensors/#", QoS::ExactlyOnce).await;
    let mut publisher = RawClient::connected(broker.addr, protocol, "pub").await;
    for (i, topic) in ["sensors/secret", "sensors/a", "sensors/secret", "sensors/b"]
        .into_iter()
        .enumerate()
    {
        publish(&mut publisher, topic, QoS::AtLeastOnce, false, i as u16 + 1).await;
    }
    let first = sub.recv_publish().await;
    assert_eq!(
        (&first.topic[..], first.qos, first.packet_id),
        ("sensors/a", QoS::AtLeastOnce, 1),
        "the denied message took no packet id"
    );
    // The window is full until the PUBACK: the denied message behind it waits too.
    sub.send(Packet::PubAck(PubAckBody::new(first.packet_id)))
        .await
        .unwrap();
    let second = sub.recv_publish().await;
    assert_eq!(
        (&second.topic[..], second.packet_id),
        ("sensors/b", 2),
        "later messages still arrive, with the next packet id"
    );
    sub.send(Packet::PubAck(PubAckBody::new(second.packet_id)))
        .await
        .unwrap();
    // And QoS 2 the same way.
    publish(
        &mut publisher,
        "sensors/secret",
        QoS::ExactlyOnce,
        false,
        10,
    )
    .await;
    publish(&mut publisher, "sensors/c", QoS::ExactlyOnce, false, 11).await;
    let third = sub.recv_publish().await;
    assert_eq!((&third.topic[..], third.packet_id), ("sensors/c", 3));
    sub.send(Packet::PubRec(PubAckBody::new(3))).await.unwrap();
    match sub.recv().await.unwrap() {
        Packet::PubRel(rel) => assert_eq!(rel.packet_id, 3),
        other => panic!("expected PUBREL, got {other:?}"),
    }
    sub.send(Packet::PubComp(PubAckBody::new(3))).await.unwrap();
    // A round trip, so the broker has handled the PUBCOMP before the session is read.
    sub.send(Packet::PingReq).await.unwrap();
    assert!(matches!(sub.recv().await.unwrap(), Packet::PingResp));
    let summaries = broker.broker.session_summaries();
    let session = summaries.iter().find(|s| s.client_id == "sub").unwrap();
    assert_eq!(
        (session.queued, session.inflight),
        (0, 0),
        "nothing queued or in flight: no dangling packet id"
    );
    assert_eq!(setup.dropped_not_authorized(), 3);
}

async fn a_faulting_deliver_plugin_fails_closed_and_is_asked_again(protocol: Protocol) {
    let setup = start_fixture("", |_| {}).await;
    let broker = &setup.broker;
    let mut sub = RawClient::connected(broker.addr, protocol, "sub").await;
    sub.subscribe_qos("#", QoS::AtMostOnce).await;
    let mut publisher = RawClient::connected(broker.addr, protocol, "pub").await;
    publish(&mut publisher, "boom/x", QoS::AtLeastOnce, false, 1).await;
    publish(&mut publisher, "boom/x", QoS::AtLeastOnce, false, 2).await;
    publish(&mut publisher, "fine", QoS::AtLeastOnce, false, 3).await;
    assert_eq!(next_topic(&mut sub).await, "fine", "a fault denies");
    assert_eq!(
        setup.calls("deliver-deny"),
        3,
        "a blind deny is not cached: asked for each message"
    );
}

// ---------------------------------------------------------------------------------
// 0.1 plugins
// ---------------------------------------------------------------------------------

async fn a_0_1_plugin_loads_and_is_not_asked_about_deliveries(protocol: Protocol) {
    let setup = start(
        tempfile::tempdir().unwrap(),
        &[
            ("v01", artifacts::CONTRACT_V0_1, ""),
            (
                "deliver-deny",
                artifacts::DELIVER_DENY,
                "[settings]\ndeny = \"t/secret\"\n",
            ),
        ],
        None,
        |_| {},
    )
    .await;
    {
        let set = setup.plugins.folder.live().chain.current();
        let v01 = set.get("v01").expect("the 0.1 plugin loads");
        assert_eq!(v01.contract(), Contract::V0_1);
        assert!(v01.hooks().authz && !v01.hooks().deliver);
    }
    let broker = &setup.broker;
    let mut sub = RawClient::connected(broker.addr, protocol, "sub").await;
    sub.subscribe_qos("t/+", QoS::AtMostOnce).await;
    let mut publisher = RawClient::connected(broker.addr, protocol, "pub").await;
    publish(&mut publisher, "t/secret", QoS::AtLeastOnce, false, 1).await;
    publish(&mut publisher, "t/x", QoS::AtLeastOnce, false, 2).await;
    assert_eq!(next_topic(&mut sub).await, "t/x");
    // The 0.1 plugin: authn for the two clients, authz for the subscription and the two
    // topics, a transform for each message; nothing for the two deliveries the other
    // plugin was asked about.
    assert_eq!(setup.calls("v01"), 7);
    assert_eq!(setup.calls("deliver-deny"), 2);
}

// ---------------------------------------------------------------------------------
// Cache lifetimes
// ---------------------------------------------------------------------------------

/// The `scripted` fixture allowing everything, its answers kept as `authz_cache` says
/// (nothing: the operator's TTL), with the operator's TTL at `ttl_ms`.
async fn start_scripted(authz_cache: Option<&str>, ttl_ms: u64) -> Setup {
    let mut toml = "hooks = [\"authz\"]\n[settings]\nauthz = \"allow\"\n".to_string();
    if let Some(cache) = authz_cache {
        toml.push_str(&format!("authz_cache = \"{cache}\"\n"));
    }
    start(
        tempfile::tempdir().unwrap(),
        &[("scripted", artifacts::SCRIPTED, &toml)],
        None,
        |c| c.authz_cache.ttl_ms = ttl_ms,
    )
    .await
}

/// The plugin's calls for three QoS 1 PUBLISHes to one topic, `gap_ms` apart.
async fn calls_for_three_publishes(
    setup: &Setup,
    plugin: &str,
    protocol: Protocol,
    gap_ms: u64,
) -> u64 {
    let mut publisher = RawClient::connected(setup.broker.addr, protocol, "pub").await;
    let before = setup.calls(plugin);
    for packet_id in 1..=3 {
        publish(&mut publisher, "t/x", QoS::AtLeastOnce, false, packet_id).await;
        tokio::time::sleep(std::time::Duration::from_millis(gap_ms)).await;
    }
    setup.calls(plugin) - before
}

async fn a_lifetime_of_none_is_asked_again(protocol: Protocol) {
    // The operator's TTL is a minute: only the plugin's word makes it ask again.
    let setup = start_scripted(Some("none"), 60_000).await;
    assert_eq!(
        calls_for_three_publishes(&setup, "scripted", protocol, 0).await,
        3
    );
    // Without a word of its own the same answers are kept for the operator's TTL.
    let setup = start_scripted(None, 60_000).await;
    assert_eq!(
        calls_for_three_publishes(&setup, "scripted", protocol, 0).await,
        1
    );
}

async fn a_lifetime_of_the_connection_outlives_the_operators_ttl(protocol: Protocol) {
    let setup = start_scripted(Some("connection"), 20).await;
    assert_eq!(
        calls_for_three_publishes(&setup, "scripted", protocol, 60).await,
        1
    );
    // Seconds, longer than the TTL too.
    let setup = start_scripted(Some("60"), 20).await;
    assert_eq!(
        calls_for_three_publishes(&setup, "scripted", protocol, 60).await,
        1
    );
    // The operator's TTL, when the plugin does not say.
    let setup = start_scripted(None, 20).await;
    assert_eq!(
        calls_for_three_publishes(&setup, "scripted", protocol, 60).await,
        3
    );
}

async fn a_0_1_plugin_keeps_the_operators_ttl(protocol: Protocol) {
    for (ttl_ms, gap_ms, calls) in [(60_000, 0, 1), (20, 60, 3)] {
        let setup = start(
            tempfile::tempdir().unwrap(),
            &[("v01", artifacts::CONTRACT_V0_1, "hooks = [\"authz\"]\n")],
            None,
            |c| c.authz_cache.ttl_ms = ttl_ms,
        )
        .await;
        assert_eq!(
            calls_for_three_publishes(&setup, "v01", protocol, gap_ms).await,
            calls,
            "TTL {ttl_ms} ms"
        );
    }
}

async fn a_delivery_answer_of_lifetime_none_is_asked_again(protocol: Protocol) {
    let toml = "[settings]\ndeny = \"t/secret\"\ncache = \"none\"\n";
    let setup = start(
        tempfile::tempdir().unwrap(),
        &[("deliver-deny", artifacts::DELIVER_DENY, toml)],
        None,
        |_| {},
    )
    .await;
    let mut sub = RawClient::connected(setup.broker.addr, protocol, "sub").await;
    sub.subscribe_qos("t/+", QoS::AtMostOnce).await;
    let mut publisher = RawClient::connected(setup.broker.addr, protocol, "pub").await;
    for packet_id in 1..=3 {
        publish(
            &mut publisher,
            "t/secret",
            QoS::AtLeastOnce,
            false,
            packet_id,
        )
        .await;
    }
    publish(&mut publisher, "t/x", QoS::AtLeastOnce, false, 4).await;
    assert_eq!(next_topic(&mut sub).await, "t/x");
    assert_eq!(
        setup.calls("deliver-deny"),
        4,
        "each denied delivery asked again"
    );
    assert_eq!(setup.dropped_not_authorized(), 3);
}

both_versions!(
    acl_sql_keeps_a_denied_topic_from_wildcard_subscribers,
    a_fixture_keeps_a_denied_topic_from_wildcard_subscribers,
    a_denied_qos1_delivery_leaves_the_session_consistent,
    a_faulting_deliver_plugin_fails_closed_and_is_asked_again,
    a_0_1_plugin_loads_and_is_not_asked_about_deliveries,
    a_lifetime_of_none_is_asked_again,
    a_lifetime_of_the_connection_outlives_the_operators_ttl,
    a_0_1_plugin_keeps_the_operators_ttl,
    a_delivery_answer_of_lifetime_none_is_asked_again,
);
