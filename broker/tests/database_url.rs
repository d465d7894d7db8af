//! `[database] url` for SQLite as operators write it, on the real binary: a URL without
//! `?mode=rwc` (what sqlx and EMQX users write) creates the file and its folders, as the
//! default does; `mode=rw` asks for an existing file, and the error says which file and
//! why.

use std::process::Command;

use wasmq_codec::{Packet, Protocol, QoS, ReasonCode};
use wasmq_tests::{BrokerProcess, RawClient, publish_packet};

const WASMQ: &str = env!("CARGO_BIN_EXE_wasmq");

fn config(url: &str) -> String {
    format!("[database]\nurl = \"{url}\"\n")
}

#[tokio::test]
async fn an_sqlite_url_without_a_mode_creates_the_file_and_its_folders() {
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("srv/wasmq/acl.db");
    let url = format!("sqlite://{}", file.display());
    assert!(url.starts_with("sqlite:///"), "an absolute path: {url}");
    let broker = BrokerProcess::start(WASMQ, &config(&url))
        .await
        .expect("wasmq starts on a database file that does not exist yet");
    assert!(file.is_file(), "{} was created", file.display());
    // The default rules are in it: a local client may publish.
    let mut client = RawClient::connected(broker.addr, Protocol::V5, "c").await;
    let publish = publish_packet("t", b"x", QoS::AtLeastOnce, false, 1);
    client.send(Packet::Publish(publish)).await.unwrap();
    match client.recv().await.unwrap() {
        Packet::PubAck(ack) => assert_eq!(ack.reason_code, ReasonCode::NO_MATCHING_SUBSCRIBERS),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    // The management commands open the same file while the broker uses it.
    let list = Command::new(WASMQ)
        .current_dir(broker.dir.path())
        .args(["--config", "wasmq.toml", "acl", "list"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success() && stdout.contains("$all"), "{stdout}");
    client.disconnect().await;
}

#[test]
fn an_sqlite_url_with_mode_rw_needs_the_file_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("missing/acl.db");
    std::fs::write(
        dir.path().join("wasmq.toml"),
        config(&format!("sqlite://{}?mode=rw", file.display())),
    )
    .unwrap();
    let out = Command::new(WASMQ)
        .current_dir(dir.path())
        .args(["--config", "wasmq.toml", "--listen"])
        .arg(wasmq_tests::free_loopback_addr().to_string())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "wasmq started: {stderr}");
    assert!(
        stderr.contains(&file.display().to_string())
            && stderr.contains("mode=rw")
            && stderr.contains("must exist"),
        "{stderr}"
    );
    assert!(!file.parent().unwrap().exists(), "nothing was created");
}
