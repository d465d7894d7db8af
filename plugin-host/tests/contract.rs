//! Contract versions side by side in one host: a plugin built against the frozen
//! `wasmq:plugin@0.1.0` (`plugins/fixtures/contract-0.1`, generated from
//! `wit/deps/plugin-0.1.0/`) loads and decides beside 0.2.0 ones (the examples and
//! `plugins/fixtures/client-record`, built with the SDK), in one chain; a 0.2.0
//! plugin sees the client fields 0.2.0 added, a 0.1.0 one the fields it knows.

mod common;

use bytes::Bytes;
use bytestring::ByteString;
use common::host;
use wasmq_codec::{Publish, QoS};
use wasmq_plugin_artifacts as artifacts;
use wasmq_plugin_host::{
    Action, AuthOutcome, CertificateIdentity, Chain, ClientInfo, Contract, Decision, ListenerKind,
    Plugin, PluginConfig, PluginSet, Transformed,
};

fn load(path: &str, config: PluginConfig) -> Plugin {
    host().load(config, &std::fs::read(path).unwrap()).unwrap()
}

/// The common client on a TLS listener named `devices`, with everything 0.2.0 added to
/// the client record: a certificate and CONNECT user properties.
fn client(id: &str) -> ClientInfo {
    let mut client = common::client(id);
    client.listener = "devices";
    client.listener_kind = ListenerKind::Tls;
    client.certificate = Some(Box::new(CertificateIdentity {
        common_name: Some("sensor-1".into()),
        dns_names: vec!["sensor-1.devices.example".into()],
        emails: vec!["ops@example.com".into()],
        uris: vec!["spiffe://example.com/sensor-1".into()],
    }));
    client.connect_user_properties = vec![pair("ticket", "t-1"), pair("site", "lyon")];
    client
}

fn message(topic: &str) -> Publish {
    Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: ByteString::from(topic),
        packet_id: 1,
        payload: Bytes::from_static(b"x"),
        properties: Default::default(),
    }
}

fn properties(t: &Transformed) -> Vec<(ByteString, ByteString)> {
    match t {
        Transformed::Replace(m) => m.properties.user_properties.clone(),
        other => panic!("expected a replaced message, got {other:?}"),
    }
}

fn pair(k: &str, v: &str) -> (ByteString, ByteString) {
    (ByteString::from(k), ByteString::from(v))
}

#[test]
fn check_names_the_contract_each_component_was_built_against() {
    let old = host().check(&std::fs::read(artifacts::CONTRACT_V0_1).unwrap());
    assert!(old.is_ok(), "{old}");
    assert_eq!(old.contract, Some(Contract::V0_1), "{old}");
    assert!(
        old.hooks.authn && old.hooks.authz && old.hooks.transform,
        "{old}"
    );
    assert!(
        old.to_string().contains("contract: wasmq:plugin@0.1.0"),
        "{old}"
    );
    let new = host().check(&std::fs::read(artifacts::READONLY_ACL).unwrap());
    assert_eq!(new.contract, Some(Contract::V0_2), "{new}");
    assert!(
        new.to_string().contains("contract: wasmq:plugin@0.2.0"),
        "{new}"
    );
}

#[test]
fn a_component_of_an_unknown_or_mixed_version_is_refused_with_the_reason() {
    let future = wat::parse_str(
        r#"(component (instance $i) (export "wasmq:plugin/authz@0.9.0" (instance $i)))"#,
    )
    .unwrap();
    let report = host().check(&future);
    assert!(!report.is_ok());
    assert!(
        report
            .to_string()
            .contains("this host speaks wasmq:plugin@0.2.0 or 0.1.0"),
        "{report}"
    );
    let mixed = wat::parse_str(
        r#"(component
             (import "wasmq:plugin/log@0.1.0" (instance))
             (instance $i)
             (export "wasmq:plugin/authz@0.2.0" (instance $i)))"#,
    )
    .unwrap();
    let report = host().check(&mixed);
    assert!(!report.is_ok());
    assert!(
        report
            .to_string()
            .contains("built against one contract version"),
        "{report}"
    );
}

#[tokio::test]
async fn a_0_1_plugin_decides_beside_0_2_plugins_in_one_chain() {
    let old = load(artifacts::CONTRACT_V0_1, PluginConfig::new("v0-1"));
    let new = load(artifacts::READONLY_ACL, PluginConfig::new("readonly-acl"));
    assert_eq!(old.contract(), Contract::V0_1);
    assert_eq!(new.contract(), Contract::V0_2);

    // Alone, each decides its rule: the same one, through two contract versions.
    for plugin in [&old, &new] {
        for (id, topic, want) in [
            ("user-1", "readonly/a", Decision::Deny),
            ("admin-1", "readonly/a", Decision::Allow),
            ("user-1", "open/a", Decision::Ignore),
        ] {
            let got = plugin
                .authorize(&client(id), Action::Publish, topic, 1, false)
                .await
                .unwrap();
            assert_eq!(got, want, "{} for {id} on {topic}", plugin.name());
        }
    }

    // In one chain, 0.1.0 first: its authn denies `deny-` ids, the others fall through
    // to the 0.2.0 record fixture, which allows this TLS client by its CN.
    let mut first = PluginConfig::new("v0-1");
    first.priority = 0;
    let mut second = PluginConfig::new("client-record").setting("cn", "sensor-1");
    second.priority = 1;
    let chain = Chain::new(PluginSet::new(vec![
        load(artifacts::CONTRACT_V0_1, first),
        load(artifacts::CLIENT_RECORD, second),
    ]));
    let denied = chain.authenticate(&client("deny-1"), None).await;
    assert_eq!(denied.decision, Decision::Deny, "{denied:?}");
    assert_eq!(
        chain.authenticate(&client("sensor"), None).await,
        AuthOutcome {
            decision: Decision::Allow,
            superuser: false,
            reason: None
        }
    );
    let mut other_cn = client("sensor");
    other_cn.certificate.as_mut().unwrap().common_name = Some("sensor-2".into());
    other_cn.certificate.as_mut().unwrap().dns_names.clear();
    assert_eq!(
        chain.authenticate(&other_cn, None).await.decision,
        Decision::Deny
    );
    // authz: readonly/ is the 0.1.0 plugin's, devices/ the 0.2.0 one's.
    for (id, topic, want) in [
        ("user-1", "readonly/x", Decision::Deny),
        ("admin-1", "readonly/x", Decision::Allow),
        ("user-1", "devices/sensor-1/t", Decision::Allow),
        ("user-1", "devices/sensor-2/t", Decision::Deny),
        ("user-1", "open/x", Decision::Ignore),
    ] {
        let got = chain
            .authorize(&client(id), Action::Publish, topic, 1, false)
            .await;
        assert_eq!(got, want, "{id} on {topic}");
    }

    // transform: each sees its own version of the client, and the message passes
    // from one to the next through both (moved into 0.1.0's type and back).
    let props = properties(&chain.transform(&client("user-1"), &message("a/b")).await);
    assert_eq!(
        props,
        [
            pair("contract", "0.1.0"),
            pair("listener", "devices"),
            pair("listener-kind", "tls"),
            pair("cert-cn", "sensor-1"),
            pair("cert-dns", "sensor-1.devices.example"),
            pair("cert-email", "ops@example.com"),
            pair("cert-uri", "spiffe://example.com/sensor-1"),
            pair("connect-ticket", "t-1"),
            pair("connect-site", "lyon"),
        ]
    );
}

#[tokio::test]
async fn a_0_2_plugin_keys_on_listener_kind_and_connect_user_properties() {
    let record = load(
        artifacts::CLIENT_RECORD,
        PluginConfig::new("client-record")
            .setting("ticket", "t-1")
            .setting("dns", "sensor-1.devices.example"),
    );
    let plain = |props: Vec<(ByteString, ByteString)>| ClientInfo {
        listener_kind: ListenerKind::Tcp,
        certificate: None,
        connect_user_properties: props,
        ..client("plain")
    };
    let allowed = |c: ClientInfo| {
        let record = record.clone();
        async move { record.authenticate(&c, None).await.unwrap().decision }
    };
    assert_eq!(
        allowed(plain(vec![])).await,
        Decision::Deny,
        "tcp, no ticket"
    );
    assert_eq!(
        allowed(plain(vec![pair("ticket", "wrong")])).await,
        Decision::Deny
    );
    assert_eq!(
        allowed(plain(vec![pair("ticket", "t-1")])).await,
        Decision::Allow
    );
    // By DNS name (the setting `cn` is not set here).
    assert_eq!(allowed(client("tls")).await, Decision::Allow);
    let no_certificate = ClientInfo {
        certificate: None,
        ..client("tls")
    };
    assert_eq!(allowed(no_certificate).await, Decision::Deny);
    let ws = ClientInfo {
        listener_kind: ListenerKind::Ws,
        ..plain(vec![])
    };
    assert_eq!(allowed(ws).await, Decision::Ignore);
}
