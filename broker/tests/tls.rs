//! TLS as an operator sets it up: certificates from `scripts/make-certs` (the README's
//! TLS quick start), the real `wasmq` binary with `[[listener]]` tables, and Mosquitto's
//! own clients (`mosquitto_pub` / `mosquitto_sub`, Debian's mosquitto-clients, which
//! `scripts/test` installs) over TLS with `--cafile`, and with `--cert/--key` on an mTLS
//! listener where the certificate's CN is the username the acl-sql rules apply to.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use wasmq_codec::Protocol;
use wasmq_tests::RawClient;

const WASMQ: &str = env!("CARGO_BIN_EXE_wasmq");
const WAIT: Duration = Duration::from_secs(30);

/// The binary in a scratch folder with `certs/` made by scripts/make-certs for
/// `clients`, `config` as its configuration (`{TLS}` and `{MTLS}` replaced by free
/// ports), plain TCP on a free port too; its log in `broker.log`.
struct Broker {
    tcp: SocketAddr,
    tls: SocketAddr,
    mtls: SocketAddr,
    dir: tempfile::TempDir,
    _child: tokio::process::Child,
}

impl Broker {
    async fn start(config: &str, clients: &[&str]) -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/make-certs");
        let made = Command::new(script)
            .arg(dir.path().join("certs"))
            .args(clients)
            .output()
            .expect("scripts/make-certs runs (it needs openssl)");
        assert!(made.status.success(), "scripts/make-certs: {made:?}");
        let (tcp, tls, mtls) = (
            wasmq_tests::free_loopback_addr(),
            wasmq_tests::free_loopback_addr(),
            wasmq_tests::free_loopback_addr(),
        );
        let config = config
            .replace("{TLS}", &tls.to_string())
            .replace("{MTLS}", &mtls.to_string());
        std::fs::write(dir.path().join("wasmq.toml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("broker.log")).unwrap();
        let child = tokio::process::Command::new(WASMQ)
            .current_dir(dir.path())
            .args(["--config", "wasmq.toml", "--listen", &tcp.to_string()])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let broker = Broker {
            tcp,
            tls,
            mtls,
            dir,
            _child: child,
        };
        tokio::time::timeout(WAIT, async {
            while tokio::net::TcpStream::connect(tcp).await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("wasmq listens:\n{}", broker.log()));
        broker
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default()
    }

    /// Waits for a log line containing every one of `needles`.
    async fn log_line(&self, needles: &[&str]) -> String {
        let found = tokio::time::timeout(WAIT, async {
            loop {
                if let Some(line) = self
                    .log()
                    .lines()
                    .find(|l| needles.iter().all(|n| l.contains(n)))
                {
                    return line.to_string();
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("no log line with {needles:?}:\n{}", self.log()))
    }

    fn cert(&self, name: &str) -> PathBuf {
        self.dir.path().join("certs").join(name)
    }

    /// `wasmq ARGS` in the broker's folder, expected to succeed.
    fn wasmq(&self, args: &[&str]) -> String {
        let output = Command::new(WASMQ)
            .current_dir(self.dir.path())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(output.status.success(), "wasmq {args:?}: {output:?}");
        String::from_utf8(output.stdout).unwrap()
    }

    /// Mosquitto's TLS options for `addr`: its CA, and `client`'s certificate if given.
    fn tls_args(&self, addr: SocketAddr, client: Option<&str>) -> Vec<String> {
        let mut args = vec![
            "-h".to_string(),
            addr.ip().to_string(),
            "-p".to_string(),
            addr.port().to_string(),
            "--cafile".to_string(),
            self.cert("ca.pem").display().to_string(),
        ];
        if let Some(client) = client {
            args.extend([
                "--cert".to_string(),
                self.cert(&format!("{client}.pem")).display().to_string(),
                "--key".to_string(),
                self.cert(&format!("{client}.key")).display().to_string(),
            ]);
        }
        args
    }
}

fn run(program: &str, args: &[String]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program} runs (mosquitto-clients): {e}"))
}

/// `mosquitto_sub` for one message on `topic` (at most 15 s), started in the background.
fn subscriber(args: Vec<String>, topic: &str) -> std::thread::JoinHandle<Output> {
    let mut args = args;
    args.extend(
        ["-V", "5", "-q", "1", "-C", "1", "-W", "15", "-t", topic]
            .iter()
            .map(|s| s.to_string()),
    );
    std::thread::spawn(move || run("mosquitto_sub", &args))
}

fn publish(args: Vec<String>, topic: &str, message: &str) -> Output {
    let mut args = args;
    args.extend(
        ["-V", "5", "-q", "1", "-t", topic, "-m", message]
            .iter()
            .map(|s| s.to_string()),
    );
    run("mosquitto_pub", &args)
}

/// Gives a `mosquitto_sub` started in the background time to connect and subscribe
/// (nothing is retained: a message published before would not reach it).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(700)).await;
}

#[tokio::test]
async fn mosquitto_clients_publish_and_subscribe_over_tls_with_the_scripts_certificates() {
    let broker = Broker::start(
        r#"
[[listener]]
name = "secure"
bind = "{TLS}"
kind = "tls"
cert_file = "certs/server.pem"
key_file = "certs/server.key"
"#,
        &[],
    )
    .await;
    broker
        .log_line(&[
            "listening",
            &broker.tls.to_string(),
            "listener=secure",
            "kind=tls",
        ])
        .await;
    let sub = subscriber(broker.tls_args(broker.tls, None), "tls/hello");
    settle().await;
    let published = publish(broker.tls_args(broker.tls, None), "tls/hello", "over TLS");
    assert!(published.status.success(), "mosquitto_pub: {published:?}");
    let received = sub.join().unwrap();
    assert!(received.status.success(), "mosquitto_sub: {received:?}");
    assert_eq!(String::from_utf8_lossy(&received.stdout).trim(), "over TLS");

    // mosquitto_pub without TLS on the TLS port: refused, and the log says why.
    let plain = run(
        "mosquitto_pub",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &broker.tls.port().to_string(),
            "-t",
            "x",
            "-m",
            "x",
        ]
        .map(String::from),
    );
    assert!(
        !plain.status.success(),
        "a plain client on the TLS port fails: {plain:?}"
    );
    broker
        .log_line(&[
            "connection refused",
            "a plain MQTT client on a tls listener",
            "listener=secure",
        ])
        .await;
    // The plain listener of --listen is there too.
    RawClient::connected(broker.tcp, Protocol::V5, "plain").await;
}

#[tokio::test]
async fn mtls_certificate_cns_are_usernames_for_the_acl_rules() {
    let broker = Broker::start(
        r#"
[[listener]]
name = "devices"
bind = "{MTLS}"
kind = "tls"
cert_file = "certs/server.pem"
key_file = "certs/server.key"
ca_file = "certs/ca.pem"
require_client_cert = true
use_identity_as_username = true
"#,
        &["sensor-1", "sensor-2", "reader"],
    )
    .await;
    // Nobody publishes to plant/#, but sensor-1 may (checked first: a newer rule).
    broker.wasmq(&[
        "acl", "add", "--deny", "--all", "--access", "pub", "--topic", "plant/#",
    ]);
    broker.wasmq(&[
        "acl",
        "add",
        "--allow",
        "--username",
        "sensor-1",
        "--access",
        "pub",
        "--topic",
        "plant/#",
    ]);

    let sub = subscriber(broker.tls_args(broker.mtls, Some("reader")), "plant/#");
    settle().await;
    // sensor-2 first: denied (PUBACK 0x87), so the subscriber's one message must be
    // sensor-1's.
    let denied = publish(
        broker.tls_args(broker.mtls, Some("sensor-2")),
        "plant/line1",
        "from sensor-2",
    );
    let allowed = publish(
        broker.tls_args(broker.mtls, Some("sensor-1")),
        "plant/line1",
        "from sensor-1",
    );
    assert!(allowed.status.success(), "sensor-1 publishes: {allowed:?}");
    let received = sub.join().unwrap();
    assert!(
        received.status.success(),
        "mosquitto_sub: {received:?}; sensor-2: {denied:?}"
    );
    assert_eq!(
        String::from_utf8_lossy(&received.stdout).trim(),
        "from sensor-1"
    );

    // Without a certificate: the handshake fails, and the log says so.
    let anonymous = publish(
        broker.tls_args(broker.mtls, None),
        "plant/line1",
        "anonymous",
    );
    assert!(
        !anonymous.status.success(),
        "no certificate, no connection: {anonymous:?}"
    );
    broker
        .log_line(&[
            "connection refused",
            "TLS handshake failed",
            "listener=devices",
        ])
        .await;
}
