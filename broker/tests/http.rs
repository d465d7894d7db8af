//! The HTTP side on the real binary: `/metrics` scraped after real MQTT traffic and
//! parsed by a Prometheus text-format parser, and the admin API (token refused when
//! missing or wrong, a real v5 client kicked with 0x98, the default plugin reloaded,
//! users and rules changed with their effect on live clients).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytestring::ByteString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wasmq_codec::{Packet, Protocol, QoS, ReasonCode};
use wasmq_tests::{BrokerProcess, RawClient, connect_packet, publish_packet};

const WASMQ: &str = env!("CARGO_BIN_EXE_wasmq");
const WAIT: Duration = Duration::from_secs(10);
const TOKEN: &str = "test-token-0123456789abcdef";

/// A response: status, headers (names lower case), body.
struct Response {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

/// One HTTP/1.1 request on a connection of its own (`Connection: close`), waiting for
/// the listener (it binds just after the MQTT one, which `BrokerProcess` waited for).
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Response {
    let mut stream = tokio::time::timeout(WAIT, async {
        loop {
            match tokio::net::TcpStream::connect(addr).await {
                Ok(stream) => return stream,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await
    .expect("the HTTP listener accepts");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(token) = token {
        head += &format!("Authorization: Bearer {token}\r\n");
    }
    let body = body.unwrap_or("");
    if !body.is_empty() {
        head += "Content-Type: application/json\r\n";
    }
    head += &format!("Content-Length: {}\r\n\r\n{body}", body.len());
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut raw))
        .await
        .expect("a whole response")
        .unwrap();
    let text = String::from_utf8(raw).expect("UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("headers and body");
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = if headers.get("transfer-encoding").map(String::as_str) == Some("chunked") {
        dechunk(body)
    } else {
        body.to_string()
    };
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).expect("a chunk size");
        if size == 0 {
            break;
        }
        out += &rest[..size];
        body = &rest[size + 2..];
    }
    out
}

/// The samples of a scrape, parsed by `prometheus-parse`.
struct Scrape(prometheus_parse::Scrape);

impl Scrape {
    async fn of(addr: SocketAddr) -> Scrape {
        let response = request(addr, "GET", "/metrics", None, None).await;
        assert_eq!(response.status, 200, "{}", response.body);
        assert!(
            response.headers["content-type"].starts_with("application/openmetrics-text"),
            "{:?}",
            response.headers
        );
        let lines = response.body.lines().map(|l| Ok(l.to_string()));
        Scrape(prometheus_parse::Scrape::parse(lines).expect("a Prometheus text scrape"))
    }

    /// The value of sample `name` whose labels include `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let sample = self
            .0
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .unwrap_or_else(|| panic!("no sample {name} {labels:?}"));
        match &sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            other => panic!("{name} is not a number: {other:?}"),
        }
    }
}

/// Publishes QoS 1 and returns the PUBACK's reason, "no matching subscribers" as success.
async fn publish_qos1(client: &mut RawClient, topic: &str, packet_id: u16) -> ReasonCode {
    let publish = publish_packet(topic, b"payload", QoS::AtLeastOnce, false, packet_id);
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
async fn metrics_move_with_real_traffic() {
    let metrics = wasmq_tests::free_loopback_addr();
    let config = format!("[sys]\ninterval_secs = 0\n\n[metrics]\nbind = \"{metrics}\"\n");
    let broker = BrokerProcess::start(WASMQ, &config).await.unwrap();
    let before = Scrape::of(metrics).await;
    assert_eq!(before.value("wasmq_clients_connected", &[]), 0.0);
    assert_eq!(before.value("wasmq_messages_received_total", &[]), 0.0);
    assert_eq!(
        before.value("wasmq_plugin_disabled", &[("plugin", "acl-sql")]),
        0.0
    );

    // A session that goes away keeps its subscription: QoS 0 for it is dropped.
    let mut away = connect_packet(Protocol::V5, "away", false);
    away.properties.session_expiry_interval = Some(60);
    let (mut away, _) = RawClient::connect(broker.addr, away).await.unwrap();
    away.subscribe_qos("m/#", QoS::AtLeastOnce).await;
    away.disconnect().await;

    let mut subscriber = RawClient::connected(broker.addr, Protocol::V5, "subscriber").await;
    let suback = subscriber.subscribe_qos("m/#", QoS::AtLeastOnce).await;
    assert_eq!(suback.reason_codes, vec![ReasonCode::GRANTED_QOS_1]);
    let mut publisher = RawClient::connected(broker.addr, Protocol::V311, "publisher").await;
    for id in 1..=5 {
        assert_eq!(
            publish_qos1(&mut publisher, "m/x", id).await,
            ReasonCode::SUCCESS
        );
    }
    for _ in 0..5 {
        subscriber.recv_publish().await;
    }
    let qos0 = publish_packet("m/retained", b"kept", QoS::AtMostOnce, true, 0);
    publisher.send(Packet::Publish(qos0)).await.unwrap();
    subscriber.recv_publish().await;

    let after = Scrape::of(metrics).await;
    assert_eq!(after.value("wasmq_clients_connected", &[]), 2.0);
    assert_eq!(after.value("wasmq_sessions", &[]), 3.0, "away is kept");
    assert_eq!(after.value("wasmq_subscriptions", &[]), 2.0);
    assert_eq!(after.value("wasmq_retained_messages", &[]), 1.0);
    assert_eq!(after.value("wasmq_messages_received_total", &[]), 6.0);
    // 6 to the subscriber; the 5 QoS 1 ones are also queued for `away`.
    assert_eq!(after.value("wasmq_messages_sent_total", &[]), 6.0);
    assert_eq!(after.value("wasmq_queued_messages", &[]), 5.0, "away's");
    assert_eq!(after.value("wasmq_longest_queue_messages", &[]), 5.0);
    assert_eq!(
        after.value("wasmq_inflight_messages", &[]),
        5.0,
        "the subscriber did not acknowledge"
    );
    assert_eq!(
        after.value(
            "wasmq_messages_dropped_total",
            &[("reason", "offline_qos0")]
        ),
        1.0
    );
    assert_eq!(
        after.value("wasmq_messages_dropped_total", &[("reason", "queue_full")]),
        0.0
    );
    assert!(after.value("wasmq_bytes_received_total", &[]) > 6.0 * 7.0);
    assert!(after.value("wasmq_bytes_sent_total", &[]) > 6.0 * 7.0);
    // The publisher asked once for m/x (then its cache answered) and once for the
    // retained QoS 0 publish; each of the two subscriptions was asked once.
    let lookup = |result| {
        after.value(
            "wasmq_cache_lookups_total",
            &[("cache", "authz"), ("result", result)],
        )
    };
    assert_eq!(lookup("hit"), 4.0);
    assert_eq!(lookup("miss"), 4.0);
    // The default plugin checks deliveries on `m/#`: the subscriber's read cache asked
    // it once per topic (m/x, m/retained) and answered the other four itself.
    let delivery = |result| {
        after.value(
            "wasmq_cache_lookups_total",
            &[("cache", "deliver"), ("result", result)],
        )
    };
    assert_eq!(delivery("miss"), 2.0);
    assert_eq!(delivery("hit"), 4.0);
    let acl = [("plugin", "acl-sql")];
    let calls = after.value("wasmq_plugin_calls_total", &acl);
    assert!(
        calls >= 5.0,
        "connects, subscriptions and publishes: {calls}"
    );
    assert_eq!(
        after.value("wasmq_plugin_call_duration_seconds_count", &acl),
        calls
    );
    assert_eq!(
        after.value(
            "wasmq_plugin_faults_total",
            &[("plugin", "acl-sql"), ("kind", "trap")]
        ),
        0.0
    );
    let queries = after.value(
        "wasmq_database_query_duration_seconds_count",
        &[("backend", "sqlite")],
    );
    assert!(queries >= 5.0, "the plugin's queries: {queries}");
    assert!(
        after.value(
            "wasmq_database_query_duration_seconds_sum",
            &[("backend", "sqlite")]
        ) > 0.0
    );
    assert_eq!(after.value("wasmq_database_query_failures_total", &[]), 0.0);
    assert_eq!(after.value("wasmq_plugin_loads_total", &[]), 1.0);
    assert_eq!(
        after.value(
            "wasmq_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
}

/// An admin API on a network address without a token: the broker does not start, and
/// says why.
#[test]
fn an_admin_api_without_a_token_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wasmq.toml");
    std::fs::write(&config, "[admin_api]\nbind = \"0.0.0.0:0\"\n").unwrap();
    let output = std::process::Command::new(WASMQ)
        .current_dir(dir.path())
        .args(["--config", "wasmq.toml"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not a loopback address"), "{stderr}");
    assert!(stderr.contains("admin_api.token_file"), "{stderr}");
}

/// A real v5 client (rumqttc) connected to the broker, and its event loop.
async fn rumqttc_v5(addr: SocketAddr, client_id: &str) -> rumqttc::v5::EventLoop {
    use rumqttc::v5::mqttbytes::v5::Packet as P;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};
    let options = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    std::mem::forget(client); // the loop ends when its client is dropped
    match tokio::time::timeout(WAIT, eventloop.poll()).await.unwrap() {
        Ok(Event::Incoming(P::ConnAck(_))) => {}
        other => panic!("expected CONNACK, got {other:?}"),
    }
    eventloop
}

#[tokio::test]
async fn the_admin_api_kicks_reloads_and_edits_users_and_rules() {
    use rumqttc::v5::mqttbytes::v5::DisconnectReasonCode;
    use rumqttc::v5::{ConnectionError, StateError};

    let secrets = tempfile::tempdir().unwrap();
    let token_file = secrets.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    // One listener for both: /metrics beside the API.
    let http = wasmq_tests::free_loopback_addr();
    let config = format!(
        "[sys]\ninterval_secs = 0\n\n[metrics]\nbind = \"{http}\"\n\n\
         [admin_api]\nbind = \"{http}\"\ntoken_file = {:?}\n",
        token_file.display().to_string()
    );
    let broker = BrokerProcess::start(WASMQ, &config).await.unwrap();
    let api = |method: &'static str, path: String, body: Option<String>| async move {
        request(http, method, &path, Some(TOKEN), body.as_deref()).await
    };

    // No token, or a wrong one: 401, and nothing happens. Probes need none.
    let missing = request(http, "GET", "/api/v1/clients", None, None).await;
    assert_eq!(missing.status, 401, "{}", missing.body);
    assert_eq!(missing.headers["www-authenticate"], "Bearer");
    let wrong = request(
        http,
        "GET",
        "/api/v1/clients",
        Some("test-token-0123456789abcdeX"),
        None,
    )
    .await;
    assert_eq!(wrong.status, 401);
    let wrong = request(
        http,
        "POST",
        "/api/v1/plugins/acl-sql/reload",
        Some("nope"),
        None,
    )
    .await;
    assert_eq!(wrong.status, 401);
    assert_eq!(
        request(http, "GET", "/healthz", None, None).await.status,
        200
    );
    assert_eq!(
        request(http, "GET", "/readyz", None, None).await.status,
        200
    );
    assert_eq!(
        Scrape::of(http)
            .await
            .value("wasmq_plugin_loads_total", &[]),
        1.0
    );

    // Kick a real client: it is told 0x98 Administrative action.
    let mut victim = rumqttc_v5(broker.addr, "victim").await;
    let listed = api("GET", "/api/v1/clients".into(), None).await;
    assert_eq!(listed.status, 200);
    assert!(
        listed.body.contains(r#""client_id":"victim""#),
        "{}",
        listed.body
    );
    assert!(listed.body.contains(r#""total":1"#), "{}", listed.body);
    // Who it is: what an operator looking for a client wants to see.
    for field in [
        r#""protocol":"5.0""#.to_string(),
        r#""listener":"tcp""#.to_string(),
        r#""peer":"127.0.0.1:"#.to_string(),
    ] {
        assert!(listed.body.contains(&field), "{field} in {}", listed.body);
    }
    let kicked = api("POST", "/api/v1/clients/victim/kick".into(), None).await;
    assert_eq!(kicked.status, 204, "{}", kicked.body);
    let reason = loop {
        match tokio::time::timeout(WAIT, victim.poll()).await.unwrap() {
            Err(ConnectionError::MqttState(StateError::ServerDisconnect {
                reason_code, ..
            })) => {
                break reason_code;
            }
            Ok(_) => {}
            Err(e) => panic!("closed without DISCONNECT: {e}"),
        }
    };
    assert_eq!(reason, DisconnectReasonCode::AdministrativeAction);
    let again = api("POST", "/api/v1/clients/victim/kick".into(), None).await;
    assert_eq!(again.status, 404, "no longer connected: {}", again.body);

    // Plugins: listed with their state, reloaded (a new load, the same plugin serving).
    let plugins = api("GET", "/api/v1/plugins".into(), None).await;
    assert_eq!(plugins.status, 200);
    assert!(
        plugins.body.contains(r#""name":"acl-sql""#),
        "{}",
        plugins.body
    );
    assert!(
        plugins
            .body
            .contains(r#""disabled":false,"state":"active""#),
        "{}",
        plugins.body
    );
    assert!(
        plugins.body.contains(r#""sql":"read""#),
        "acl-sql's grant is read-only: {}",
        plugins.body
    );
    let reloaded = api("POST", "/api/v1/plugins/acl-sql/reload".into(), None).await;
    assert_eq!(reloaded.status, 200, "{}", reloaded.body);
    assert_eq!(reloaded.body, r#"{"result":"reloaded"}"#);
    assert_eq!(
        Scrape::of(http)
            .await
            .value("wasmq_plugin_loads_total", &[]),
        2.0
    );
    for name in ["nope", "..%2Fetc%2Fpasswd"] {
        let missing = api("POST", format!("/api/v1/plugins/{name}/reload"), None).await;
        assert_eq!(missing.status, 404, "{name}: {}", missing.body);
    }

    // Users: added through the API, a client logs in with it; removed, it cannot.
    let user = r#"{"username":"bob","password":"pw-of-bob"}"#;
    let added = api("POST", "/api/v1/users".into(), Some(user.into())).await;
    assert_eq!(added.status, 201, "{}", added.body);
    let twice = api("POST", "/api/v1/users".into(), Some(user.into())).await;
    assert_eq!(twice.status, 400, "{}", twice.body);
    let users = api("GET", "/api/v1/users".into(), None).await;
    assert!(
        users
            .body
            .contains(r#"{"username":"bob","superuser":false}"#),
        "{}",
        users.body
    );
    let login = |password: &'static str| {
        let mut connect = connect_packet(Protocol::V5, "bob-1", true);
        connect.username = Some(ByteString::from_static("bob"));
        connect.password = Some(bytes::Bytes::from_static(password.as_bytes()));
        connect
    };
    let (_bob, connack) = RawClient::connect(broker.addr, login("pw-of-bob"))
        .await
        .unwrap();
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS);
    let (_, connack) = RawClient::connect(broker.addr, login("wrong"))
        .await
        .unwrap();
    assert_eq!(connack.reason_code, ReasonCode::BAD_USERNAME_OR_PASSWORD);
    let password = r#"{"password":"new-pw-of-bob"}"#;
    let changed = api(
        "PUT",
        "/api/v1/users/bob/password".into(),
        Some(password.into()),
    )
    .await;
    assert_eq!(changed.status, 204, "{}", changed.body);
    let (_, connack) = RawClient::connect(broker.addr, login("pw-of-bob"))
        .await
        .unwrap();
    assert_eq!(
        connack.reason_code,
        ReasonCode::BAD_USERNAME_OR_PASSWORD,
        "the old one"
    );
    let (_bob, connack) = RawClient::connect(broker.addr, login("new-pw-of-bob"))
        .await
        .unwrap();
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS);
    let removed = api("DELETE", "/api/v1/users/bob".into(), None).await;
    assert_eq!(removed.status, 204, "{}", removed.body);
    let removed = api("DELETE", "/api/v1/users/bob".into(), None).await;
    assert_eq!(removed.status, 404, "{}", removed.body);

    // Rules: a deny applies to a connected client at once (its cached allow purged),
    // and removing it allows again.
    let mut client = RawClient::connected(broker.addr, Protocol::V5, "ruled").await;
    assert_eq!(
        publish_qos1(&mut client, "locked/x", 1).await,
        ReasonCode::SUCCESS
    );
    let rule = r#"{"allow":false,"username":"$all","access":"pub","topic":"locked/#"}"#;
    let added = api("POST", "/api/v1/acl".into(), Some(rule.into())).await;
    assert_eq!(added.status, 201, "{}", added.body);
    let id: i64 = added
        .body
        .trim_start_matches(r#"{"id":"#)
        .trim_end_matches('}')
        .parse()
        .unwrap_or_else(|_| panic!("an id: {}", added.body));
    assert_eq!(
        publish_qos1(&mut client, "locked/x", 2).await,
        ReasonCode::NOT_AUTHORIZED
    );
    let rules = api("GET", "/api/v1/acl".into(), None).await;
    assert!(
        rules
            .body
            .starts_with(&format!(r#"[{{"id":{id},"allow":false"#)),
        "{}",
        rules.body
    );
    let bad = r#"{"allow":true,"access":"pub","topic":"x"}"#;
    let refused = api("POST", "/api/v1/acl".into(), Some(bad.into())).await;
    assert_eq!(refused.status, 400, "nobody named: {}", refused.body);
    let garbled = api("POST", "/api/v1/acl".into(), Some("{\"allow\":".into())).await;
    assert_eq!(garbled.status, 400, "{}", garbled.body);
    assert!(garbled.body.starts_with(r#"{"error":"#), "{}", garbled.body);
    let removed = api("DELETE", format!("/api/v1/acl/{id}"), None).await;
    assert_eq!(removed.status, 204, "{}", removed.body);
    assert_eq!(
        publish_qos1(&mut client, "locked/x", 3).await,
        ReasonCode::SUCCESS
    );
    let sessions = api("GET", "/api/v1/sessions?limit=1".into(), None).await;
    assert!(
        sessions.body.contains(r#""sessions":[{"#),
        "{}",
        sessions.body
    );
    let purged = api("POST", "/api/v1/authz-cache/purge".into(), None).await;
    assert_eq!(purged.status, 204);
}

/// A plugin that faults is shown faulting, then disabled, in the metrics and the API; a
/// reload through the API makes it serve again, with fresh counters.
#[tokio::test]
async fn a_disabled_plugin_shows_in_the_metrics_and_a_reload_brings_it_back() {
    let http = wasmq_tests::free_loopback_addr();
    let config = format!(
        "[sys]\ninterval_secs = 0\n\n[metrics]\nbind = \"{http}\"\n\n\
         [admin_api]\nbind = \"{http}\"\ntoken = \"{TOKEN}\"\n"
    );
    let broker = BrokerProcess::start(WASMQ, &config).await.unwrap();
    // Asked before acl-sql (priority -1), traps on every call, disabled after 2 faults
    // and not retried within the test.
    let folder = broker.dir.path().join("plugins");
    let settings = "priority = -1\nhooks = [\"authz\"]\nfaults_to_disable = 2\n\
                    [retry]\nbackoff_initial_ms = 600000\n";
    for (name, bytes) in [
        ("panic.toml", settings.as_bytes().to_vec()),
        (
            "panic.wasm",
            std::fs::read(wasmq_plugin_artifacts::PANIC).unwrap(),
        ),
    ] {
        let tmp = folder.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, folder.join(name)).unwrap();
    }
    let plugins = || async {
        request(http, "GET", "/api/v1/plugins", Some(TOKEN), None)
            .await
            .body
    };
    tokio::time::timeout(WAIT, async {
        while !plugins().await.contains(r#""name":"panic""#) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the plugin loads from the folder");
    let panic = [("plugin", "panic")];
    let trap = [("plugin", "panic"), ("kind", "trap")];
    let scrape = Scrape::of(http).await;
    assert_eq!(scrape.value("wasmq_plugin_disabled", &panic), 0.0);
    assert_eq!(scrape.value("wasmq_plugin_faults_total", &trap), 0.0);

    let mut client = RawClient::connected(broker.addr, Protocol::V5, "c").await;
    for id in 1..=3 {
        // Fails closed: denied while it traps, and once it is disabled.
        let topic = format!("t/{id}");
        assert_eq!(
            publish_qos1(&mut client, &topic, id).await,
            ReasonCode::NOT_AUTHORIZED
        );
    }
    let scrape = Scrape::of(http).await;
    assert_eq!(scrape.value("wasmq_plugin_disabled", &panic), 1.0);
    assert_eq!(scrape.value("wasmq_plugin_faults_total", &trap), 2.0);
    assert_eq!(
        scrape.value(
            "wasmq_plugin_faults_total",
            &[("plugin", "panic"), ("kind", "refused")]
        ),
        1.0,
        "the third call, refused while disabled"
    );
    assert_eq!(scrape.value("wasmq_plugin_calls_total", &panic), 3.0);
    assert_eq!(
        scrape.value("wasmq_plugin_call_duration_seconds_count", &panic),
        2.0,
        "a refused call is not timed"
    );
    let listed = plugins().await;
    assert!(
        listed.contains(r#""name":"panic","priority":-1,"hooks":"authz","#)
            && listed.contains(r#""disabled":true,"state":"disabled until "#)
            && listed.contains(r#""disables":1,"retries":0,"#),
        "{listed}"
    );

    let reloaded = request(
        http,
        "POST",
        "/api/v1/plugins/panic/reload",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(reloaded.status, 200, "{}", reloaded.body);
    let scrape = Scrape::of(http).await;
    assert_eq!(scrape.value("wasmq_plugin_disabled", &panic), 0.0);
    assert_eq!(scrape.value("wasmq_plugin_faults_total", &trap), 0.0);
    assert_eq!(scrape.value("wasmq_plugin_calls_total", &panic), 0.0);
    assert_eq!(scrape.value("wasmq_plugin_loads_total", &[]), 3.0);
}
