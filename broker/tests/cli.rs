//! The `wasmq` binary as an operator runs it: `print-config`, `--config` with a bad key,
//! and `--listen` serving MQTT until SIGTERM or SIGINT (v5 clients told 0x8B, exit status 0,
//! the connection's log span naming the client).
//! These live in the broker crate because Cargo only gives integration tests of the
//! crate that owns a binary its path (`CARGO_BIN_EXE_wasmq`).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::BytesMut;
use bytestring::ByteString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wasmq::Config;
use wasmq_codec::{Connect, ConnectProperties, Packet, Protocol, ReasonCode};

const WASMQ: &str = env!("CARGO_BIN_EXE_wasmq");
const WAIT: Duration = Duration::from_secs(10);

/// A config file in the temp directory, removed when dropped.
struct TempConfig(PathBuf);

impl TempConfig {
    fn new(name: &str, text: &str) -> TempConfig {
        let path =
            std::env::temp_dir().join(format!("wasmq-cli-{}-{name}.toml", std::process::id()));
        std::fs::write(&path, text).expect("write temp config");
        TempConfig(path)
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn print_config_prints_the_default_config_which_parses_back() {
    let output = Command::new(WASMQ).arg("print-config").output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.contains("[limits]") && text.contains('#'),
        "a commented file"
    );
    assert_eq!(Config::parse(&text).unwrap(), Config::default());
}

/// Runs `wasmq ARGS` with `RUST_BACKTRACE=1`, as many Rust users have it in their
/// environment (it makes `anyhow` capture a backtrace with every error).
fn wasmq_with_backtraces(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(WASMQ)
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .env_remove("RUST_LIB_BACKTRACE")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// An operator's mistake is told as its chain of causes, never with a backtrace (those
/// are for bugs), whatever `RUST_BACKTRACE` says.
fn assert_error_without_backtrace(output: &std::process::Output) -> String {
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(
        !stderr.to_lowercase().contains("backtrace") && !stderr.contains("src/main.rs"),
        "a backtrace for an operator's mistake:\n{stderr}"
    );
    stderr
}

#[test]
fn a_config_with_an_unknown_key_is_refused() {
    let config = TempConfig::new("unknown", "[limits]\nmax_conections = 3\n");
    let output = wasmq_with_backtraces(&["--config".as_ref(), config.0.as_os_str()]);
    let stderr = assert_error_without_backtrace(&output);
    // The error names the file and the offending key, the file first, the cause below.
    let first = stderr.lines().next().unwrap();
    assert!(first.contains(&*config.0.to_string_lossy()), "{stderr}");
    assert!(stderr.contains("\n  caused by: "), "{stderr}");
    assert!(stderr.contains("max_conections"), "{stderr}");
    assert!(stderr.contains("unknown field"), "{stderr}");

    let output = wasmq_with_backtraces(&["--config".as_ref(), "/nonexistent/wasmq.toml".as_ref()]);
    let stderr = assert_error_without_backtrace(&output);
    assert!(stderr.contains("/nonexistent/wasmq.toml"), "{stderr}");

    // The same for an error found after the config was read: a database that cannot be
    // opened (a folder where the SQLite file should be).
    let dir = tempfile::tempdir().unwrap();
    let config = TempConfig::new(
        "bad-database",
        &format!(
            "listen = \"127.0.0.1:0\"\n[database]\nurl = \"sqlite://{}?mode=rwc\"\n",
            dir.path().display()
        ),
    );
    let output = Command::new(WASMQ)
        .current_dir(dir.path())
        .arg("--config")
        .arg(&config.0)
        .env("RUST_BACKTRACE", "1")
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_error_without_backtrace(&output);
}

/// Reads packets until the peer closes; fails after [`WAIT`].
async fn read_until_closed(stream: &mut TcpStream, rbuf: &mut BytesMut) -> Vec<Packet> {
    let mut packets = Vec::new();
    tokio::time::timeout(WAIT, async {
        loop {
            while let Some(packet) = Packet::decode(rbuf, Protocol::V5, u32::MAX).unwrap() {
                packets.push(packet);
            }
            match stream.read_buf(rbuf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the broker closes the connection");
    packets
}

#[tokio::test]
async fn listen_serves_mqtt_and_sigterm_stops_it_cleanly() {
    serve_until_signalled("TERM").await;
}

#[tokio::test]
async fn listen_serves_mqtt_and_sigint_stops_it_cleanly() {
    serve_until_signalled("INT").await;
}

/// Runs the binary with `--listen`, serves one v5 client, sends it SIG`signal`, and checks
/// the clean stop (DISCONNECT 0x8B, exit status 0) and the connection's log span, which
/// carries the client id once CONNECT was read.
async fn serve_until_signalled(signal: &str) {
    let port = wasmq_tests::free_loopback_addr().port();
    // --listen overrides the file's listener.
    let config = TempConfig::new(
        "listen",
        "listen = \"127.0.0.1:1\"\n[sys]\ninterval_secs = 0\n",
    );
    // The default plugin folder and cache are relative paths: run in a scratch folder.
    let workdir =
        std::env::temp_dir().join(format!("wasmq-cli-{}-run-{signal}", std::process::id()));
    std::fs::create_dir_all(&workdir).unwrap();
    let child = tokio::process::Command::new(WASMQ)
        .current_dir(&workdir)
        .arg("--config")
        .arg(&config.0)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "warn,wasmq::connection=debug")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let mut stream = tokio::time::timeout(WAIT, async {
        loop {
            match TcpStream::connect(("127.0.0.1", port)).await {
                Ok(stream) => return stream,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await
    .expect("wasmq listens on the --listen address");

    let mut out = BytesMut::new();
    Packet::Connect(Box::new(Connect {
        protocol: Protocol::V5,
        clean_start: true,
        keep_alive: 60,
        client_id: ByteString::from_static("cli-test"),
        will: None,
        username: None,
        password: None,
        properties: ConnectProperties::default(),
    }))
    .encode(Protocol::V5, &mut out);
    Packet::PingReq.encode(Protocol::V5, &mut out);
    stream.write_all(&out).await.unwrap();
    let mut rbuf = BytesMut::new();
    let mut received = Vec::new();
    tokio::time::timeout(WAIT, async {
        while received.len() < 2 {
            while let Some(packet) = Packet::decode(&mut rbuf, Protocol::V5, u32::MAX).unwrap() {
                received.push(packet);
            }
            if received.len() < 2 {
                assert!(
                    stream.read_buf(&mut rbuf).await.unwrap() > 0,
                    "closed early"
                );
            }
        }
    })
    .await
    .expect("CONNACK and PINGRESP");
    match &received[0] {
        Packet::ConnAck(connack) => assert_eq!(connack.reason_code, ReasonCode::SUCCESS),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    assert_eq!(received[1], Packet::PingResp);

    let pid = child.id().expect("running").to_string();
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .unwrap();
    assert!(status.success());

    match read_until_closed(&mut stream, &mut rbuf).await.as_slice() {
        [Packet::Disconnect(disconnect)] => {
            assert_eq!(disconnect.reason_code, ReasonCode::SERVER_SHUTTING_DOWN)
        }
        other => panic!("expected DISCONNECT 0x8B, got {other:?}"),
    }
    let output = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("wasmq exits after the signal")
        .unwrap();
    let logs = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{:?}\n{logs}", output.status);
    // The connection's span names its peer and, after CONNECT, its client id (quoted and
    // escaped: a client id cannot forge a log line).
    let closed = logs
        .lines()
        .find(|line| line.contains("connection closed"))
        .unwrap_or_else(|| panic!("no 'connection closed' line:\n{logs}"));
    assert!(
        closed.contains("connection{peer=127.0.0.1:") && closed.contains("client_id=\"cli-test\""),
        "{closed}"
    );
    let _ = std::fs::remove_dir_all(&workdir);
}

#[test]
fn plugin_check_reports_hooks_and_capabilities_or_what_is_wrong() {
    let good = Command::new(WASMQ)
        .args(["plugin", "check", wasmq_plugin_artifacts::READONLY_ACL])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&good.stdout);
    assert!(
        good.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(stdout.contains("hooks: authz"), "{stdout}");
    assert!(stdout.contains("capabilities: log"), "{stdout}");

    // A file that does not compile (text, a core module that is not a component): the
    // problem first and alone, no empty inventory of hooks and imports before it, and no
    // backtrace.
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in [
        ("text.wasm", &b"this is not wasm"[..]),
        ("core-module.wasm", b"\0asm\x01\0\0\0"),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let out = wasmq_with_backtraces(&["plugin".as_ref(), "check".as_ref(), path.as_os_str()]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{name}: {out:?}");
        let lines: Vec<&str> = stdout.lines().collect();
        assert!(
            lines[0].starts_with(&format!(
                "{}: problem: not a valid component: ",
                path.display()
            )),
            "{name}: {stdout}"
        );
        assert_eq!(lines[1..], ["not loadable"], "{name}: {stdout}");
        assert!(
            !stdout.to_lowercase().contains("backtrace"),
            "{name}: {stdout}"
        );
    }

    // A file that cannot be read is an error of the command (exit 1, the error chain).
    let missing = dir.path().join("missing.wasm");
    let out = wasmq_with_backtraces(&["plugin".as_ref(), "check".as_ref(), missing.as_os_str()]);
    let stderr = assert_error_without_backtrace(&out);
    assert!(stderr.contains("missing.wasm"), "{stderr}");
    assert!(out.stdout.is_empty(), "{out:?}");
}
