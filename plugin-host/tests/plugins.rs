//! The plugin host against real components: the examples and fixtures under
//! `plugins/`, compiled for wasm32-wasip2 by `wasmq-plugin-artifacts`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

#[path = "common/capture.rs"]
mod capture;
mod common;

use bytes::Bytes;
use bytestring::ByteString;
use capture::Captured;
use common::{client, host};
use wasmq_codec::{Publish, QoS};
use wasmq_plugin_artifacts as artifacts;
use wasmq_plugin_host::{
    Action, AuthOutcome, Chain, Decision, Edit, Fault, HostConfig, LoadError, OnTransformFault,
    Plugin, PluginAuthStep, PluginConfig, PluginHost, PluginSet, PluginState, Retry, Transformed,
    check,
};

fn load(path: &str, config: PluginConfig) -> Plugin {
    host().load(config, &std::fs::read(path).unwrap()).unwrap()
}

fn scripted(name: &str, priority: i32, settings: &[(&str, &str)]) -> Plugin {
    let mut config = PluginConfig::new(name);
    config.priority = priority;
    for (k, v) in settings {
        config = config.setting(*k, *v);
    }
    load(artifacts::SCRIPTED, config)
}

fn message(topic: &str, payload: &[u8]) -> Publish {
    Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: ByteString::from(topic),
        packet_id: 1,
        payload: Bytes::copy_from_slice(payload),
        properties: Default::default(),
    }
}

fn hostile(path: &str, name: &str, faults_to_disable: u32) -> Plugin {
    let mut config = PluginConfig::new(name);
    config.limits.call_timeout_ms = 50;
    config.limits.memory_bytes_max = 8 << 20;
    config.faults_to_disable = faults_to_disable;
    // Disabled means disabled for the rest of the test: no retry within it.
    config.retry.backoff_initial_ms = 600_000;
    load(path, config)
}

#[test]
fn check_reports_exported_hooks_and_imported_capabilities() {
    let readonly = check(artifacts::READONLY_ACL.as_ref()).unwrap();
    assert!(readonly.is_ok(), "{readonly}");
    assert!(readonly.hooks.authz && !readonly.hooks.authn && !readonly.hooks.transform);
    assert!(readonly.capabilities.log && !readonly.capabilities.sql);

    let stamp = host().check(&std::fs::read(artifacts::STAMP).unwrap());
    assert!(stamp.is_ok(), "{stamp}");
    assert!(stamp.hooks.transform && !stamp.hooks.authz && !stamp.hooks.authn);
    assert!(stamp.capabilities.config);

    let all = host().check(&std::fs::read(artifacts::SCRIPTED).unwrap());
    assert!(
        all.hooks.authn && all.hooks.authz && all.hooks.transform,
        "{all}"
    );

    let sql = host().check(&std::fs::read(artifacts::SQL_PROBE).unwrap());
    assert!(sql.is_ok() && sql.capabilities.sql, "{sql}");
    assert!(format!("{sql}").contains("hooks: authz"), "{sql}");
}

#[test]
fn check_explains_what_is_wrong() {
    let garbage = host().check(b"not wasm at all");
    assert!(!garbage.is_ok());
    assert!(
        garbage.problems[0].contains("not a valid component"),
        "{garbage}"
    );

    let evil = wat::parse_str(r#"(component (import "acme:evil/net@1.0.0" (instance)))"#).unwrap();
    let report = host().check(&evil);
    assert!(!report.is_ok());
    let text = report.to_string();
    assert!(
        text.contains("imports `acme:evil/net@1.0.0`, which this host does not provide"),
        "{text}"
    );
    assert!(text.contains("exports no hook"), "{text}");

    let err = host().load(PluginConfig::new("evil"), &evil).unwrap_err();
    assert!(matches!(err, LoadError::Invalid(_)), "{err}");
}

#[tokio::test]
async fn readonly_acl_example_decides_as_documented() {
    let acl = load(artifacts::READONLY_ACL, PluginConfig::new("readonly-acl"));
    let pubd = |c: &'static str, t: &'static str| {
        let acl = acl.clone();
        async move {
            acl.authorize(&client(c), Action::Publish, t, 0, false)
                .await
                .unwrap()
        }
    };
    assert_eq!(pubd("admin-1", "readonly/x").await, Decision::Allow);
    assert_eq!(pubd("bob", "readonly/x").await, Decision::Deny);
    assert_eq!(pubd("bob", "readonly").await, Decision::Deny);
    assert_eq!(pubd("bob", "readonlyish").await, Decision::Ignore);
    assert_eq!(pubd("bob", "sensors/1").await, Decision::Ignore);
    let sub = acl
        .authorize(&client("bob"), Action::Subscribe, "readonly/#", 0, false)
        .await
        .unwrap();
    assert_eq!(sub, Decision::Ignore);
    // Hooks it does not export are not called: ignore / keep.
    assert_eq!(
        acl.authenticate(&client("bob"), None).await.unwrap(),
        AuthOutcome::ignore()
    );
    assert_eq!(
        acl.on_publish(&client("bob"), &message("a", b"x"))
            .await
            .unwrap(),
        Transformed::Keep
    );
    // All of it on one warm instance.
    assert_eq!(acl.stats().instances_created, 1);
    assert_eq!(acl.stats().faults, 0);
}

#[tokio::test]
async fn stamp_example_stamps_and_rewrites() {
    let stamp = load(
        artifacts::STAMP,
        PluginConfig::new("stamp")
            .setting("rewrite_from", "legacy/")
            .setting("rewrite_to", "v2/"),
    );
    let Transformed::Replace(out) = stamp
        .on_publish(&client("c"), &message("legacy/a", b"p"))
        .await
        .unwrap()
    else {
        panic!("stamp replaces")
    };
    assert_eq!(out.topic, "v2/a");
    assert_eq!(out.payload, &b"p"[..]);
    assert_eq!(
        out.properties.user_properties,
        vec![(ByteString::from("wasmq-plugin"), ByteString::from("stamp"))]
    );
}

#[tokio::test]
async fn a_batch_transform_answers_one_narrow_edit_per_message_in_one_call() {
    let script = load(artifacts::BATCH_SCRIPT, PluginConfig::new("script"));
    let set = PluginSet::new(vec![script.clone()]);
    let topics = ["keep/a", "t/b", "drop/c", "move/d", "replace/e"];
    let messages: Vec<Publish> = topics.iter().map(|t| message(t, b"p")).collect();
    let edits = set.transform_batch(&client("c"), &messages).await;
    let pair = |k: &str, v: &str| (ByteString::from(k), ByteString::from(v));
    assert_eq!(
        edits,
        vec![
            Edit::Keep,
            Edit::Change {
                topic: None,
                add_user_properties: vec![pair("batch", "5"), pair("index", "1")],
            },
            Edit::Drop("script: scripted drop".to_string()),
            Edit::Change {
                topic: Some(ByteString::from("moved/d")),
                add_user_properties: Vec::new(),
            },
            Edit::Replace(Box::new(message("replace/e", b"replaced"))),
        ]
    );
    assert_eq!(script.stats().calls, 1, "one call for the batch");

    // After a per-message plugin (scripted: `append` replaces the message), the batch
    // plugin sees its output, and the chain answers a replace.
    let first = scripted("first", 0, &[("transform", "append"), ("suffix", "!")]);
    let set = PluginSet::new(vec![
        first,
        load(artifacts::BATCH_SCRIPT, PluginConfig::new("script")),
    ]);
    let edits = set
        .transform_batch(
            &client("c"),
            &[message("keep/a", b"p"), message("drop/b", b"p")],
        )
        .await;
    assert!(
        matches!(&edits[0], Edit::Replace(m) if m.topic == "keep/a"),
        "{edits:?}"
    );
    assert_eq!(edits[1], Edit::Drop("script: scripted drop".to_string()));
}

#[tokio::test]
async fn authz_chain_first_allow_or_deny_wins_in_priority_order() {
    let ignore = scripted("a-ignore", 0, &[("authz", "ignore")]);
    let deny = scripted("b-deny", 1, &[("authz", "deny")]);
    let allow = scripted("c-allow", 2, &[("authz", "allow")]);
    let c = client("c1");

    let set = PluginSet::new(vec![allow.clone(), deny.clone(), ignore.clone()]);
    let names: Vec<&str> = set.plugins().iter().map(Plugin::name).collect();
    assert_eq!(names, ["a-ignore", "b-deny", "c-allow"]);
    assert_eq!(
        set.authorize(&c, Action::Publish, "t", 0, false).await,
        Decision::Deny
    );
    assert_eq!(
        allow.stats().calls,
        0,
        "the chain stops at the first decision"
    );

    let allow_first = scripted("c-allow", -1, &[("authz", "allow")]);
    let set = set.with(allow_first);
    assert_eq!(set.plugins()[0].name(), "c-allow");
    assert_eq!(
        set.authorize(&c, Action::Subscribe, "t/#", 1, false).await,
        Decision::Allow
    );

    let only_ignore = PluginSet::new(vec![ignore.clone()]);
    assert_eq!(
        only_ignore
            .authorize(&c, Action::Publish, "t", 0, false)
            .await,
        Decision::Ignore
    );
    assert_eq!(
        PluginSet::default()
            .authorize(&c, Action::Publish, "t", 0, false)
            .await,
        Decision::Ignore
    );
}

#[tokio::test]
async fn authn_chain_carries_the_superuser_flag() {
    let c = client("c1");
    let set = PluginSet::new(vec![
        scripted("a", 0, &[("authn", "ignore")]),
        scripted("b", 1, &[("authn", "superuser")]),
        scripted("c", 2, &[("authn", "deny")]),
    ]);
    let outcome = set.authenticate(&c, Some(b"secret")).await;
    assert_eq!(outcome.decision, Decision::Allow);
    assert!(outcome.superuser);

    let set = PluginSet::new(vec![scripted("c", 0, &[("authn", "deny")])]);
    let outcome = set.authenticate(&c, None).await;
    assert_eq!(outcome.decision, Decision::Deny);
    assert!(!outcome.superuser);
    assert_eq!(outcome.reason.as_deref(), Some("scripted to deny"));
}

#[tokio::test]
async fn transforms_chain_each_seeing_the_previous_output_and_drop_stops() {
    let c = client("c1");
    let one = scripted("t1", 0, &[("transform", "append"), ("suffix", "1")]);
    let two = scripted("t2", 1, &[("transform", "append"), ("suffix", "2")]);
    let stamp = {
        let mut config = PluginConfig::new("t3-stamp");
        config.priority = 2;
        load(artifacts::STAMP, config)
    };
    let set = PluginSet::new(vec![stamp.clone(), two.clone(), one.clone()]);
    let Transformed::Replace(out) = set.transform(&c, &message("t", b"x")).await else {
        panic!("replaced")
    };
    assert_eq!(out.payload, &b"x12"[..]);
    let props: Vec<(&str, &str)> = out
        .properties
        .user_properties
        .iter()
        .map(|(k, v)| (&**k, &**v))
        .collect();
    assert_eq!(
        props,
        [
            ("seen-by", "1"),
            ("seen-by", "2"),
            ("wasmq-plugin", "stamp")
        ]
    );

    let keep = scripted("k", 0, &[("transform", "keep")]);
    assert_eq!(
        PluginSet::new(vec![keep])
            .transform(&c, &message("t", b"x"))
            .await,
        Transformed::Keep
    );

    let dropper = scripted("t1-drop", 0, &[("transform", "drop")]);
    let after = scripted("t9", 9, &[("transform", "append"), ("suffix", "9")]);
    let set = PluginSet::new(vec![one, dropper, after.clone()]);
    let Transformed::Drop(reason) = set.transform(&c, &message("t", b"x")).await else {
        panic!("dropped")
    };
    assert!(
        reason.contains("t1-drop") && reason.contains("scripted to drop"),
        "{reason}"
    );
    assert_eq!(after.stats().calls, 0, "drop stops the chain");
}

#[tokio::test]
async fn infinite_loop_times_out_fails_closed_and_gets_disabled() {
    let looping = hostile(artifacts::LOOP_FOREVER, "loop", 3);
    let acl = load(artifacts::READONLY_ACL, PluginConfig::new("acl"));
    let c = client("bob");

    let fault = looping
        .authorize(&c, Action::Publish, "t", 0, false)
        .await
        .unwrap_err();
    assert_eq!(fault, Fault::Timeout(50));

    // The host keeps serving other plugins.
    assert_eq!(
        acl.authorize(&c, Action::Publish, "readonly/a", 0, false)
            .await
            .unwrap(),
        Decision::Deny
    );

    // Fail closed in a chain, even when a later plugin would allow.
    let chain = Chain::new(PluginSet::new(vec![
        looping.clone(),
        scripted("z-allow", 9, &[("authz", "allow")]),
    ]));
    assert_eq!(
        chain.authorize(&c, Action::Publish, "t", 0, false).await,
        Decision::Deny
    );
    assert_eq!(chain.stats().failed_closed, 1);

    // Third fault in a row: disabled; further calls are refused at once.
    let outcome = chain.authenticate(&c, None).await;
    assert_eq!(outcome.decision, Decision::Deny);
    assert!(looping.is_disabled());
    assert_eq!(
        chain.authorize(&c, Action::Publish, "t", 0, false).await,
        Decision::Deny
    );
    // The fourth call was refused without running: no new instance, no new timeout.
    let stats = looping.stats();
    assert_eq!(
        (stats.timeouts, stats.refused, stats.disabled),
        (3, 1, true)
    );
    assert_eq!(stats.instances_created, 3);
    assert_eq!(chain.stats().failed_closed, 3);
}

/// Polls `plugin`'s state until `want` says yes, for at most 10 s.
async fn wait_for_state(plugin: &Plugin, what: &str, want: impl Fn(PluginState) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !want(plugin.state()) {
        assert!(
            Instant::now() < deadline,
            "{what}: still {} after 10 s",
            plugin.state()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The retry time of a plugin just disabled lies `backoff` after the fault, give or take
/// the time the faulting call took (`before` and `after` bracket it): no timing of speed.
fn assert_backoff(plugin: &Plugin, before: SystemTime, after: SystemTime, backoff_ms: u64) {
    let PluginState::Disabled { until } = plugin.state() else {
        panic!("disabled: {}", plugin.state())
    };
    let backoff = Duration::from_millis(backoff_ms);
    assert!(
        before + backoff <= until && until <= after + backoff,
        "retry due {backoff_ms} ms after the fault: {until:?} not in [{:?}, {:?}]",
        before + backoff,
        after + backoff
    );
}

#[tokio::test]
async fn a_disabled_plugin_is_retried_after_its_backoff_and_the_backoff_doubles() {
    let (captured, _guard) = Captured::install();
    let mut config = PluginConfig::new("flaky")
        .setting("authz", "allow")
        .setting("authz_panic_prefix", "fault/");
    config.faults_to_disable = 2;
    config.retry = Retry {
        backoff_initial_ms: 200,
        backoff_max_ms: 500,
        reset_after_ms: 60_000,
    };
    let flaky = load(artifacts::SCRIPTED, config);
    let c = client("c1");
    let authorize = |topic: &'static str| {
        let (flaky, c) = (flaky.clone(), c.clone());
        async move { flaky.authorize(&c, Action::Publish, topic, 0, false).await }
    };
    assert_eq!(authorize("ok/1").await, Ok(Decision::Allow));
    assert_eq!(flaky.state(), PluginState::Active);

    // Two faults in a row: disabled for the initial backoff; calls refused meanwhile.
    let r = authorize("fault/1").await;
    assert!(matches!(r, Err(Fault::Trap(_))), "{r:?}");
    let before = SystemTime::now();
    assert!(matches!(authorize("fault/2").await, Err(Fault::Trap(_))));
    assert_backoff(&flaky, before, SystemTime::now(), 200);
    assert_eq!(authorize("ok/2").await, Err(Fault::Disabled));
    let created = flaky.stats().instances_created;

    // Retried on a fresh instance, then active again after a clean call.
    wait_for_state(&flaky, "retried", |s| s == PluginState::Retrying).await;
    assert_eq!(authorize("ok/3").await, Ok(Decision::Allow));
    assert_eq!(flaky.state(), PluginState::Active);
    let stats = flaky.stats();
    assert_eq!((stats.disables, stats.retries), (1, 1));
    assert_eq!(stats.instances_created, created + 1, "a fresh instance");

    // Disabled again soon after it came back: the backoff doubles.
    assert!(authorize("fault/3").await.is_err());
    let before = SystemTime::now();
    assert!(authorize("fault/4").await.is_err());
    assert_backoff(&flaky, before, SystemTime::now(), 400);

    // A fault while retrying disables it at once (one fault, not two), the backoff
    // doubled to its cap.
    wait_for_state(&flaky, "retried again", |s| s == PluginState::Retrying).await;
    let before = SystemTime::now();
    assert!(matches!(authorize("fault/5").await, Err(Fault::Trap(_))));
    assert_backoff(&flaky, before, SystemTime::now(), 500);
    let stats = flaky.stats();
    assert_eq!((stats.disables, stats.retries), (3, 2));
    wait_for_state(&flaky, "retried a third time", |s| {
        s == PluginState::Retrying
    })
    .await;
    assert_eq!(authorize("ok/4").await, Ok(Decision::Allow));
    assert_eq!(flaky.state(), PluginState::Active);

    // One line per transition, with the plugin's name, and the fault where there is one.
    let log = captured.text();
    let transitions: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains("plugin disabled")
                || l.contains("plugin retrying")
                || l.contains("plugin active again")
        })
        .collect();
    // The second retry faulted at once: no return from it.
    assert_eq!(
        transitions.len(),
        8,
        "3 disables, 3 retries, 2 returns:\n{log}"
    );
    for line in &transitions {
        assert!(line.contains("plugin=\"flaky\""), "{line}");
    }
    let disables: Vec<&&str> = transitions
        .iter()
        .filter(|l| l.contains("ERROR") && l.contains("plugin disabled"))
        .collect();
    assert_eq!(disables.len(), 3, "{log}");
    for line in &disables {
        assert!(line.contains("fault=trapped: "), "{line}");
    }
    assert!(
        disables[1].contains("after repeated faults"),
        "{}",
        disables[1]
    );
    assert!(
        disables[2].contains("after a fault on its retry"),
        "{}",
        disables[2]
    );
    assert!(
        transitions
            .iter()
            .any(|l| l.contains("plugin retrying") && l.contains("disabled_by=\"trapped: ")),
        "{log}"
    );
}

#[tokio::test]
async fn failing_transform_keeps_the_message_or_drops_it_if_configured() {
    let c = client("c1");
    let looping = hostile(artifacts::LOOP_FOREVER, "loop-t", 10);
    let append = scripted("z-append", 9, &[("transform", "append"), ("suffix", "!")]);
    let chain = Chain::new(PluginSet::new(vec![looping, append]));
    let Transformed::Replace(out) = chain.transform(&c, &message("t", b"x")).await else {
        panic!("replaced")
    };
    assert_eq!(
        out.payload,
        &b"x!"[..],
        "the faulting plugin is skipped, the message kept"
    );
    assert_eq!(chain.stats().transform_faults, 1);

    let mut config = PluginConfig::new("panic-t");
    config.on_transform_fault = OnTransformFault::Drop;
    let panicking = load(artifacts::PANIC, config);
    let set = PluginSet::new(vec![panicking]);
    let Transformed::Drop(reason) = set.transform(&c, &message("t", b"x")).await else {
        panic!("dropped")
    };
    assert!(reason.contains("panic-t failed: trapped"), "{reason}");
}

#[tokio::test]
async fn unbounded_allocation_hits_the_memory_cap() {
    let hog = hostile(artifacts::ALLOC_UNBOUNDED, "hog", 2);
    let c = client("c1");
    let fault = hog
        .authorize(&c, Action::Publish, "t", 0, false)
        .await
        .unwrap_err();
    assert_eq!(fault, Fault::MemoryLimit(8 << 20));
    assert_eq!(
        hog.authenticate(&c, None).await.unwrap_err(),
        Fault::MemoryLimit(8 << 20)
    );
    assert!(hog.is_disabled());
    assert_eq!(hog.stats().memory_limits, 2);
    // Memory came back: others still instantiate and answer.
    let ok = scripted("after-hog", 0, &[("authz", "allow")]);
    assert_eq!(
        ok.authorize(&c, Action::Publish, "t", 0, false)
            .await
            .unwrap(),
        Decision::Allow
    );
}

#[tokio::test]
async fn panic_is_a_trap_and_the_next_call_gets_a_fresh_instance() {
    let panicking = hostile(artifacts::PANIC, "panic", 100);
    let c = client("c1");
    for _ in 0..3 {
        let fault = panicking
            .authorize(&c, Action::Publish, "t", 0, false)
            .await
            .unwrap_err();
        assert!(matches!(fault, Fault::Trap(_)), "{fault:?}");
    }
    let stats = panicking.stats();
    assert_eq!(
        (
            stats.traps,
            stats.instances_created,
            stats.consecutive_faults
        ),
        (3, 3, 3)
    );
    assert!(!stats.disabled);
}

#[tokio::test]
async fn slow_plugin_times_out_under_a_short_deadline_and_answers_under_a_long_one() {
    let c = client("c1");
    let mut config = PluginConfig::new("slow-short").setting("busy_ms", "300");
    config.limits.call_timeout_ms = 50;
    let short = load(artifacts::SLOW, config);
    assert_eq!(
        short
            .authorize(&c, Action::Publish, "t", 0, false)
            .await
            .unwrap_err(),
        Fault::Timeout(50)
    );

    let mut config = PluginConfig::new("slow-long").setting("busy_ms", "30");
    config.limits.call_timeout_ms = 2000;
    let long = load(artifacts::SLOW, config);
    assert_eq!(
        long.authorize(&c, Action::Publish, "t", 0, false)
            .await
            .unwrap(),
        Decision::Allow
    );
}

#[tokio::test]
async fn instances_are_recycled_after_n_calls() {
    let mut config = PluginConfig::new("recycled").setting("authz", "allow");
    config.limits.calls_per_instance_max = 3;
    let plugin = load(artifacts::SCRIPTED, config);
    for _ in 0..7 {
        assert_eq!(
            plugin
                .authorize(&client("c"), Action::Publish, "t", 0, false)
                .await
                .unwrap(),
            Decision::Allow
        );
    }
    let stats = plugin.stats();
    assert_eq!(
        (
            stats.calls,
            stats.instances_created,
            stats.instances_recycled
        ),
        (7, 3, 2)
    );
}

#[tokio::test]
async fn sql_needs_a_grant_and_is_refused_until_a_database_exists() {
    let wasm = std::fs::read(artifacts::SQL_PROBE).unwrap();
    let err = host().load(PluginConfig::new("sql"), &wasm).unwrap_err();
    assert!(matches!(err, LoadError::NotGranted("sql")), "{err}");
    assert_eq!(
        err.to_string(),
        "imports the `sql` capability, which is not granted to it"
    );

    let mut config = PluginConfig::new("sql");
    config.grant_sql = wasmq_plugin_host::SqlGrant::Read;
    let plugin = host().load_async(config, wasm).await.unwrap();
    assert_eq!(
        plugin
            .authorize(&client("c"), Action::Publish, "t", 0, false)
            .await
            .unwrap(),
        Decision::Ignore
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swap_is_atomic_and_calls_in_flight_finish_on_the_old_set() {
    let c = client("c1");
    let mut config = PluginConfig::new("old-slow-allow").setting("busy_ms", "300");
    config.limits.call_timeout_ms = 5000;
    let old_plugin = load(artifacts::SLOW, config);
    let chain = Arc::new(Chain::new(PluginSet::new(vec![old_plugin.clone()])));

    let in_flight = {
        let chain = chain.clone();
        let c = c.clone();
        tokio::spawn(async move { chain.authorize(&c, Action::Publish, "t", 0, false).await })
    };
    // Swap only once the call is running on the old set (its plugin counted it).
    while old_plugin.stats().calls == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let previous = chain.swap(PluginSet::new(vec![scripted(
        "new-deny",
        0,
        &[("authz", "deny")],
    )]));
    assert_eq!(previous.plugins()[0].name(), "old-slow-allow");
    assert_eq!(
        chain.authorize(&c, Action::Publish, "t", 0, false).await,
        Decision::Deny,
        "new calls see the new set"
    );
    assert_eq!(
        in_flight.await.unwrap(),
        Decision::Allow,
        "the call in flight finished on the old set"
    );
    assert_eq!(chain.current().plugins()[0].name(), "new-deny");
    assert_eq!(chain.stats().swaps, 1);

    let emptied = chain.current().without("new-deny");
    chain.swap(emptied);
    assert_eq!(
        chain.authorize(&c, Action::Publish, "t", 0, false).await,
        Decision::Ignore
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_use_separate_instances() {
    let plugin = scripted("concurrent", 0, &[("authz", "allow")]);
    let mut tasks = Vec::new();
    for i in 0..16 {
        let plugin = plugin.clone();
        tasks.push(tokio::spawn(async move {
            plugin
                .authorize(&client(&format!("c{i}")), Action::Publish, "t", 0, false)
                .await
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), Decision::Allow);
    }
    let stats = plugin.stats();
    assert_eq!(stats.calls, 16);
    assert!(stats.instances_created <= 16);
}

#[test]
fn compiled_components_are_cached_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let config = || HostConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        instances_max: 4,
        ..HostConfig::default()
    };
    let wasm = std::fs::read(artifacts::READONLY_ACL).unwrap();

    let first = PluginHost::new(config()).unwrap();
    first.load(PluginConfig::new("acl"), &wasm).unwrap();
    assert_eq!(
        (first.cache_stats().hits, first.cache_stats().misses),
        (0, 1)
    );

    // A restart: a new host with the same directory does not recompile.
    let second = PluginHost::new(config()).unwrap();
    let started = Instant::now();
    second.load(PluginConfig::new("acl"), &wasm).unwrap();
    let warm_load = started.elapsed();
    assert_eq!(
        (second.cache_stats().hits, second.cache_stats().misses),
        (1, 0)
    );
    eprintln!("load from the cache took {warm_load:?}");

    // A corrupt cache file is discarded and the component recompiled.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
    }
    let third = PluginHost::new(config()).unwrap();
    third.load(PluginConfig::new("acl"), &wasm).unwrap();
    let stats = third.cache_stats();
    assert_eq!((stats.hits, stats.misses, stats.rejected), (0, 1, 1));
}

#[tokio::test]
async fn plugin_output_and_log_calls_land_in_the_log_tagged_with_the_plugin_name() {
    use tracing_subscriber::util::SubscriberInitExt;
    let captured = Captured::default();
    let _guard = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .with_max_level(tracing_subscriber::filter::LevelFilter::TRACE)
        .finish()
        .set_default();

    let echo = scripted(
        "echo",
        0,
        &[("echo", "hello from the sandbox"), ("authz", "allow")],
    );
    assert_eq!(
        echo.authorize(&client("c1"), Action::Publish, "t", 0, false)
            .await
            .unwrap(),
        Decision::Allow
    );
    let panicking = hostile(artifacts::PANIC, "panicky", 100);
    panicking
        .authorize(&client("c1"), Action::Publish, "t", 0, false)
        .await
        .unwrap_err();

    let log = captured.text();
    let lines: Vec<&str> = log.lines().collect();
    let stdout = lines
        .iter()
        .find(|l| l.contains("stream=\"stdout\""))
        .expect(&log);
    assert!(
        stdout.contains("plugin=\"echo\"") && stdout.contains("hello from the sandbox"),
        "{stdout}"
    );
    let logged = lines
        .iter()
        .find(|l| {
            l.contains("INFO") && l.contains("hello from the sandbox") && !l.contains("stream=")
        })
        .expect(&log);
    assert!(logged.contains("plugin=\"echo\""), "{logged}");
    let stderr = lines
        .iter()
        .find(|l| l.contains("stream=\"stderr\""))
        .expect(&log);
    assert!(
        stderr.contains("plugin=\"panicky\"") && stderr.contains("WARN"),
        "{stderr}"
    );
    assert!(
        log.contains("authorize c1 on t refused to cooperate"),
        "{log}"
    );
}

/// The `auth` hook (enhanced authentication, 0.2.0): found in the exports, its methods
/// asked once, a CONNECT's method routed to the plugin that lists it, and a plugin that
/// cannot read its credentials refusing (the query is not granted here: no database).
#[tokio::test]
async fn the_auth_hook_is_found_and_asked_by_method() {
    let mut config = PluginConfig::new("scram");
    config.grant_sql = wasmq_plugin_host::SqlGrant::Read;
    let scram = load(artifacts::SCRAM_SHA256, config);
    assert!(scram.hooks().auth, "{}", scram.hooks());
    assert!(!scram.hooks().authn && !scram.hooks().authz);
    assert_eq!(scram.auth_methods().await.unwrap(), ["SCRAM-SHA-256"]);
    let stamp = load(artifacts::STAMP, PluginConfig::new("stamp"));
    assert!(!stamp.hooks().auth);
    assert!(stamp.auth_methods().await.unwrap().is_empty());
    let old = load(artifacts::CONTRACT_V0_1, PluginConfig::new("old"));
    assert!(!old.hooks().auth, "0.1.0 has no auth hook");

    let set = PluginSet::new(vec![stamp, old, scram]);
    assert!(set.hooks().auth);
    let c = client("c");
    assert!(set.auth_start(&c, "SCRAM-SHA-1", None).await.is_none());
    match set
        .auth_start(&c, "SCRAM-SHA-256", Some(b"n,,n=alice,r=abc"))
        .await
    {
        Some(("scram", PluginAuthStep::Failure(_))) => {}
        other => panic!("expected scram's failure, got {other:?}"),
    }
    // A step of an exchange whose plugin is not in the set fails.
    assert!(matches!(
        set.auth_step("gone", &c, "SCRAM-SHA-256", None, b"").await,
        PluginAuthStep::Failure(_)
    ));
}
