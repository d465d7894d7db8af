//! A fresh install, as an operator meets it: the real `wasmq` binary started in an empty
//! folder with the built-in defaults creates its SQLite database and loads the built-in
//! auth/ACL plugin; `wasmq user ...` and `wasmq acl ...` change a running broker's
//! decisions at once (through the admin socket), with real MQTT clients watching.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use bytestring::ByteString;
use wasmq_codec::{Packet, Protocol, QoS, ReasonCode, SubscriptionOptions};
use wasmq_tests::{RawClient, connect_packet, publish_packet};

const WASMQ: &str = env!("CARGO_BIN_EXE_wasmq");
const WAIT: Duration = Duration::from_secs(30);

/// The broker binary running in its own scratch folder (built-in defaults, but the
/// listener on a free port and no `$SYS`), killed when dropped.
struct Broker {
    addr: SocketAddr,
    dir: tempfile::TempDir,
    _child: tokio::process::Child,
}

impl Broker {
    async fn start() -> Broker {
        Broker::start_logging("warn").await
    }

    /// Starts it with `RUST_LOG=rust_log`, its log (stderr) in `broker.log` in its folder.
    async fn start_logging(rust_log: &str) -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let addr = wasmq_tests::free_loopback_addr();
        let log = std::fs::File::create(dir.path().join("broker.log")).unwrap();
        let child = tokio::process::Command::new(WASMQ)
            .current_dir(dir.path())
            .args(["--listen", &addr.to_string()])
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        // Listening comes after the database and the plugins are ready.
        tokio::time::timeout(WAIT, async {
            while tokio::net::TcpStream::connect(addr).await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("wasmq listens");
        Broker {
            addr,
            dir,
            _child: child,
        }
    }

    /// Waits until the broker's log has a line containing every one of `needles`, and
    /// returns that line.
    async fn log_line(&self, needles: &[&str]) -> String {
        let path = self.dir.path().join("broker.log");
        let found = tokio::time::timeout(WAIT, async {
            loop {
                let log = std::fs::read_to_string(&path).unwrap();
                if let Some(line) = log.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
                    return line.to_string();
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        found.unwrap_or_else(|_| {
            panic!(
                "no log line with {needles:?}:\n{}",
                std::fs::read_to_string(&path).unwrap()
            )
        })
    }

    /// Runs `wasmq ARGS` in the broker's folder (same database, same admin socket).
    fn wasmq(&self, args: &[&str]) -> Output {
        Command::new(WASMQ)
            .current_dir(self.dir.path())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `wasmq ARGS`, expected to succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.wasmq(args);
        assert!(output.status.success(), "wasmq {args:?}: {output:?}");
        String::from_utf8(output.stdout).unwrap()
    }

    async fn connect(
        &self,
        protocol: Protocol,
        client_id: &str,
        login: Option<(&str, &str)>,
    ) -> (Option<RawClient>, ReasonCode) {
        let mut connect = connect_packet(protocol, client_id, true);
        if let Some((user, password)) = login {
            connect.username = Some(ByteString::from(user));
            connect.password = Some(bytes::Bytes::copy_from_slice(password.as_bytes()));
        }
        let (client, connack) = RawClient::connect(self.addr, connect).await.unwrap();
        let ok = connack.reason_code == ReasonCode::SUCCESS;
        (ok.then_some(client), connack.reason_code)
    }

    async fn client(&self, client_id: &str, login: Option<(&str, &str)>) -> RawClient {
        let (client, code) = self.connect(Protocol::V5, client_id, login).await;
        client.unwrap_or_else(|| panic!("{client_id} refused: {code:?}"))
    }
}

/// Publishes QoS 1 and returns the PUBACK's reason code, with "no matching subscribers"
/// (0x10, an accepted message nobody wanted) read as success.
async fn publish_qos1(client: &mut RawClient, topic: &str, packet_id: u16) -> ReasonCode {
    let publish = publish_packet(topic, b"x", QoS::AtLeastOnce, false, packet_id);
    client.send(Packet::Publish(publish)).await.unwrap();
    match client.recv().await.unwrap() {
        Packet::PubAck(ack) if ack.reason_code == ReasonCode::NO_MATCHING_SUBSCRIBERS => {
            ReasonCode::SUCCESS
        }
        Packet::PubAck(ack) => ack.reason_code,
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

#[tokio::test]
async fn a_fresh_install_has_its_default_policy_and_the_cli_changes_it_at_once() {
    let broker = Broker::start().await;
    let state = broker.dir.path().join(".wasmq");
    assert!(
        state.join("wasmq.db").exists(),
        "SQLite created on first start"
    );
    assert!(state.join("admin.sock").exists(), "admin socket");
    assert!(Path::new(&broker.dir.path().join("plugins")).is_dir());

    // The default rules: loopback clients connect anonymously, publish and subscribe
    // to every topic not starting with `$`, and may read $SYS (other `$`-topics: below).
    let mut anon = broker.client("anon", None).await;
    assert_eq!(
        publish_qos1(&mut anon, "sensors/t", 1).await,
        ReasonCode::SUCCESS
    );
    assert_eq!(
        publish_qos1(&mut anon, "$SYS/broker/fake", 2).await,
        ReasonCode::NOT_AUTHORIZED
    );
    // (Subscribers of their own: retained $SYS messages and later publishes arrive there.)
    let mut sys_reader = broker.client("sys-reader", None).await;
    let suback = sys_reader.subscribe_qos("$SYS/#", QoS::AtMostOnce).await;
    assert_eq!(suback.reason_codes, vec![ReasonCode::SUCCESS]);
    let mut everything = broker.client("everything", None).await;
    let suback = everything.subscribe_qos("#", QoS::AtLeastOnce).await;
    assert_eq!(suback.reason_codes, vec![ReasonCode::GRANTED_QOS_1]);

    // A user, then a rule against her: her open connection is denied at once although
    // it had an allow cached (the TTL is a minute by default).
    assert!(
        broker
            .ok(&["user", "add", "alice", "--password", "s3cret"])
            .contains("added")
    );
    let (none, code) = broker
        .connect(Protocol::V5, "alice-bad", Some(("alice", "wrong")))
        .await;
    assert!(none.is_none());
    assert_eq!(code, ReasonCode::BAD_USERNAME_OR_PASSWORD);
    let (none, code) = broker
        .connect(Protocol::V311, "alice-bad3", Some(("alice", "wrong")))
        .await;
    assert!(none.is_none());
    // The codec reads v3.1.1's return code 4 as its v5 equivalent.
    assert_eq!(code, ReasonCode::BAD_USERNAME_OR_PASSWORD, "v3.1.1");
    let mut alice = broker.client("alice-1", Some(("alice", "s3cret"))).await;
    assert_eq!(
        publish_qos1(&mut alice, "factory/line1", 1).await,
        ReasonCode::SUCCESS
    );

    let added = broker.ok(&[
        "acl",
        "add",
        "--deny",
        "--username",
        "alice",
        "--access",
        "pub",
        "--topic",
        "factory/#",
    ]);
    assert!(
        added.contains("purged"),
        "the running broker was told: {added}"
    );
    assert_eq!(
        publish_qos1(&mut alice, "factory/line1", 2).await,
        ReasonCode::NOT_AUTHORIZED
    );
    assert_eq!(
        publish_qos1(&mut alice, "office/a", 3).await,
        ReasonCode::SUCCESS
    );
    // Others are not touched by alice's rule.
    assert_eq!(
        publish_qos1(&mut anon, "factory/line1", 3).await,
        ReasonCode::SUCCESS
    );

    let list = broker.ok(&["acl", "list"]);
    let rule_line = list
        .lines()
        .find(|l| l.contains("username=alice"))
        .unwrap_or_else(|| panic!("alice's rule listed: {list}"));
    assert!(
        rule_line.contains("deny") && rule_line.contains("factory/#"),
        "{rule_line}"
    );
    let id = rule_line.split_whitespace().next().unwrap();
    broker.ok(&["acl", "rm", id]);
    assert_eq!(
        publish_qos1(&mut alice, "factory/line1", 4).await,
        ReasonCode::SUCCESS
    );

    // Users: listed, password changed (the old one stops working), removed.
    assert_eq!(broker.ok(&["user", "list"]).trim(), "alice");
    broker.ok(&["user", "passwd", "alice", "--password", "n3w"]);
    let (_, code) = broker
        .connect(Protocol::V5, "alice-2", Some(("alice", "s3cret")))
        .await;
    assert_eq!(code, ReasonCode::BAD_USERNAME_OR_PASSWORD);
    broker.client("alice-3", Some(("alice", "n3w"))).await;
    broker.ok(&["user", "rm", "alice"]);
    assert_eq!(broker.ok(&["user", "list"]).trim(), "");

    // Bad input: a clear error and a non-zero exit, nothing written.
    for args in [
        &["user", "add", "$admin", "--password", "x"][..],
        &["user", "rm", "nobody"],
        &["acl", "rm", "999999"],
        &["acl", "add", "--allow", "--access", "pub", "--topic", "a"],
        &[
            "acl",
            "add",
            "--allow",
            "--ipaddr",
            "10.0.0.0/99",
            "--access",
            "pub",
            "--topic",
            "a",
        ],
        &[
            "acl",
            "add",
            "--allow",
            "--all",
            "--access",
            "everything",
            "--topic",
            "a",
        ],
    ] {
        let output = broker.wasmq(args);
        assert!(
            !output.status.success(),
            "wasmq {args:?} must fail: {output:?}"
        );
        assert!(!output.stderr.is_empty(), "wasmq {args:?} says why");
    }
    assert!(broker.ok(&["acl", "reload"]).contains("purged"));
}

/// The README's promise read exactly: a fresh install's rules cover every topic that does
/// not start with `$` (and reading `$SYS`), not other `$`-topics, which MQTT keeps for the
/// broker. A v3.1.1 client is told nothing when its QoS 0 publish is refused, so the log
/// says it at debug, naming the row that decided or that none did; and the remedy
/// docs/acl.md gives (a rule naming the `$`-prefix) works.
#[tokio::test]
async fn dollar_topics_need_a_rule_and_a_refused_publish_is_logged_with_its_reason() {
    let broker = Broker::start_logging("info,wasmq::plugin=debug").await;
    broker.ok(&["user", "add", "ops", "--password", "x", "--superuser"]);
    // A superuser (who skips the ACL) watches `$app/#` and a sentinel topic: the sentinel
    // arriving first proves the message before it was dropped.
    let mut ops = broker.client("ops", Some(("ops", "x"))).await;
    let suback = ops
        .subscribe(
            1,
            &[
                ("$app/#", SubscriptionOptions::qos(QoS::AtMostOnce)),
                ("sentinel", SubscriptionOptions::qos(QoS::AtMostOnce)),
            ],
        )
        .await;
    assert_eq!(
        suback.reason_codes,
        [ReasonCode::SUCCESS, ReasonCode::SUCCESS]
    );

    let (app, code) = broker.connect(Protocol::V311, "app", None).await;
    let mut app = app.unwrap_or_else(|| panic!("anonymous loopback v3.1.1 refused: {code:?}"));
    let publish =
        |topic: &str| Packet::Publish(publish_packet(topic, b"21.5", QoS::AtMostOnce, false, 0));
    app.send(publish("$app/x")).await.unwrap();
    app.send(publish("sentinel")).await.unwrap();
    let first = ops.recv_publish().await;
    assert_eq!(
        first.topic, "sentinel",
        "$app/x is not covered by the `#` rule"
    );
    // Nothing told the client; the connection goes on.
    app.send(Packet::PingReq).await.unwrap();
    assert_eq!(app.recv().await.unwrap(), Packet::PingResp);

    // The log: the plugin's line (no row matches, and why for a `$`-topic), then the
    // broker's (acl_nomatch denied it), in the connection's span.
    let plugin = broker
        .log_line(&["no mqtt_acl row matches publish to \"$app/x\"", "acl-sql"])
        .await;
    assert!(
        plugin.contains("DEBUG")
            && plugin.contains("client_id=\"app\"")
            && plugin.contains("do not match a topic starting with `$`"),
        "{plugin}"
    );
    let nomatch = broker
        .log_line(&["acl_nomatch = \"deny\"", "topic=\"$app/x\""])
        .await;
    assert!(nomatch.contains("DEBUG"), "{nomatch}");

    // docs/acl.md's remedy: a rule naming the prefix.
    let added = broker.ok(&[
        "acl", "add", "--allow", "--all", "--access", "pubsub", "--topic", "$app/#",
    ]);
    assert!(added.contains("purged"), "{added}");
    app.send(publish("$app/x")).await.unwrap();
    let delivered = ops.recv_publish().await;
    assert_eq!(
        (&*delivered.topic, &delivered.payload[..]),
        ("$app/x", &b"21.5"[..])
    );

    // A row that denies is named in the log line, with its id.
    let added = broker.ok(&[
        "acl",
        "add",
        "--deny",
        "--clientid",
        "app",
        "--access",
        "pub",
        "--topic",
        "factory/#",
    ]);
    let id = added
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("rule N added: {added}"));
    app.send(publish("factory/line1")).await.unwrap();
    let denied = broker
        .log_line(&["denied publish to \"factory/line1\" for client \"app\""])
        .await;
    assert!(
        denied.contains(&format!("mqtt_acl row id={id} allow=0 "))
            && denied.contains("clientid=\"app\" access=2 topic=\"factory/#\""),
        "{denied}"
    );
}

#[test]
fn the_cli_works_without_a_running_broker() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let output = Command::new(WASMQ)
            .current_dir(dir.path())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(output.status.success(), "wasmq {args:?}: {output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    let out = run(&[
        "acl", "add", "--allow", "--all", "--access", "sub", "--topic", "a/+",
    ]);
    assert!(out.contains("no broker answers"), "{out}");
    let list = run(&["acl", "list"]);
    // The database was created with the default rules, and the new one is first.
    let rules: Vec<&str> = list.lines().skip(1).collect();
    assert_eq!(rules.len(), 4, "{list}");
    assert!(
        rules[0].contains("a/+") && rules[0].contains("allow"),
        "{list}"
    );
}
