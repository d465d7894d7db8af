//! `wasmq plugin test FILE.wasm CASES.toml`: loads a component in the real plugin host
//! (no broker, no network), calls its hooks once per `[[case]]` of the cases file, and
//! prints each case's pass or fail with what was expected and what it got.
//!
//! The cases file ([`Cases::parse`]):
//!
//! - `[plugin]`: the plugin's `NAME.toml` as the broker reads it
//!   ([`PluginToml`]: limits, capabilities, `[plugin.settings]`, `[plugin.sql.statements]`).
//! - `[database]` (optional): `url` (SQLite: `sqlite::memory:` or `sqlite://FILE`; any
//!   URL the broker takes), `schema = true` to create the broker's `mqtt_user` /
//!   `mqtt_acl` tables as it does at start, and `setup = ["SQL", ...]` run first. The
//!   `sql` capability then reaches it, with the grant of `[plugin.capabilities] sql`.
//! - `[[case]]`: the call (`client`, then `password` for authn; `action`, `topic`,
//!   `qos`, `retain` for authz; the message's fields for transform) and the answer
//!   expected (`expect`, with `superuser`, `reason` or `expect_message`). An auth case
//!   (MQTT 5 enhanced authentication) is an exchange instead: `method` and `steps`,
//!   each step what the client sends and the answer expected ([`auth_cases`]), with
//!   the state carried from step to step as the broker carries it.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use bytes::Bytes;
use bytestring::ByteString;
use serde::Deserialize;
use toml::Spanned;
use wasmq_codec::{Protocol, Publish, QoS};
use wasmq_plugin_host::{
    Action, AuthOutcome, CertificateIdentity, ClientInfo, Database, DatabaseConfig, Decision,
    HostConfig, ListenerKind, Plugin, PluginHost, Transformed,
};

use crate::plugin_tools::auth_cases::{self, ClientData, StepExpect, StepToml};
use crate::plugins::plugin_toml::PluginToml;

/// The file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CasesToml {
    #[serde(default)]
    plugin: PluginToml,
    database: Option<DatabaseToml>,
    #[serde(default, rename = "case")]
    cases: Vec<Spanned<CaseToml>>,
}

/// `[database]`: what the `sql` capability reaches during the cases.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseToml {
    /// Any URL the broker's `[database] url` takes; `sqlite::memory:` for a database
    /// that lives as long as the run.
    pub url: String,
    /// Create the broker's `mqtt_user` and `mqtt_acl` tables (with the default rules),
    /// as the broker does at start.
    #[serde(default)]
    pub schema: bool,
    /// Statements run once before the cases (tables, rows).
    #[serde(default)]
    pub setup: Vec<String>,
}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum HookName {
    Authn,
    Authz,
    Transform,
    Auth,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum ActionName {
    Publish,
    Subscribe,
}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ExpectName {
    Allow,
    Deny,
    Ignore,
    Keep,
    Drop,
    Replace,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseToml {
    name: Option<String>,
    hook: Option<HookName>,
    #[serde(default)]
    client: ClientToml,
    password: Option<String>,
    action: Option<ActionName>,
    topic: Option<String>,
    qos: Option<u8>,
    retain: Option<bool>,
    payload: Option<String>,
    user_properties: Option<Vec<(String, String)>>,
    content_type: Option<String>,
    payload_is_utf8: Option<bool>,
    response_topic: Option<String>,
    correlation_data: Option<String>,
    message_expiry_interval: Option<u32>,
    method: Option<String>,
    steps: Option<Vec<StepToml>>,
    expect: Option<ExpectName>,
    superuser: Option<bool>,
    reason: Option<String>,
    expect_message: Option<MessageToml>,
}

/// The message fields of a transform case besides topic, QoS and retain (serde's
/// `flatten` would lose `deny_unknown_fields`, so the tables list them and convert).
#[derive(Default)]
struct MessageExtraToml {
    payload: Option<String>,
    user_properties: Option<Vec<(String, String)>>,
    content_type: Option<String>,
    payload_is_utf8: Option<bool>,
    response_topic: Option<String>,
    correlation_data: Option<String>,
    message_expiry_interval: Option<u32>,
}

impl MessageExtraToml {
    fn given(&self) -> Option<&'static str> {
        [
            (self.payload.is_some(), "payload"),
            (self.user_properties.is_some(), "user_properties"),
            (self.content_type.is_some(), "content_type"),
            (self.payload_is_utf8.is_some(), "payload_is_utf8"),
            (self.response_topic.is_some(), "response_topic"),
            (self.correlation_data.is_some(), "correlation_data"),
            (
                self.message_expiry_interval.is_some(),
                "message_expiry_interval",
            ),
        ]
        .into_iter()
        .find_map(|(given, name)| given.then_some(name))
    }
}

/// `expect_message`: the fields of the message a transform should put out; the ones
/// left out are expected as they went in.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageToml {
    topic: Option<String>,
    qos: Option<u8>,
    retain: Option<bool>,
    payload: Option<String>,
    user_properties: Option<Vec<(String, String)>>,
    content_type: Option<String>,
    payload_is_utf8: Option<bool>,
    response_topic: Option<String>,
    correlation_data: Option<String>,
    message_expiry_interval: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ClientToml {
    client_id: String,
    username: Option<String>,
    peer_addr: SocketAddr,
    protocol_version: u8,
    listener: String,
    listener_kind: ListenerKind,
    certificate: Option<CertificateToml>,
    user_properties: Vec<(String, String)>,
}

impl Default for ClientToml {
    fn default() -> Self {
        ClientToml {
            client_id: "test-client".into(),
            username: None,
            peer_addr: SocketAddr::from(([127, 0, 0, 1], 50000)),
            protocol_version: 5,
            listener: "tcp".into(),
            listener_kind: ListenerKind::Tcp,
            certificate: None,
            user_properties: Vec::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
#[derive(Default)]
struct CertificateToml {
    common_name: Option<String>,
    dns_names: Vec<String>,
    emails: Vec<String>,
    uris: Vec<String>,
}

/// A cases file, checked.
pub struct Cases {
    /// `[plugin]`.
    pub plugin: PluginToml,
    /// `[database]`.
    pub database: Option<DatabaseToml>,
    /// `[[case]]`, in order.
    pub cases: Vec<Case>,
}

/// One case: a call and the answer expected.
#[derive(Debug)]
pub struct Case {
    /// Its `name`, or `case N`.
    pub name: String,
    /// Where it starts in the file (1-based).
    pub line: usize,
    /// The client the hook is asked about.
    pub client: ClientInfo,
    /// The call.
    pub call: Call,
    /// The answer expected.
    pub expect: Expect,
}

/// The hook a case calls, with its arguments.
#[derive(Debug)]
pub enum Call {
    /// `authn`.
    Authn {
        /// The CONNECT password.
        password: Option<Vec<u8>>,
    },
    /// `authz`.
    Authz {
        /// Publish or subscribe.
        action: Action,
        /// Topic name or filter.
        topic: String,
        /// QoS.
        qos: u8,
        /// Retain flag.
        retain: bool,
    },
    /// `transform`.
    Transform {
        /// The message published (boxed: a `Publish` is large beside the other calls).
        message: Box<Publish>,
    },
    /// `auth`: an exchange, `start` then `step` for each packet after the first.
    Auth {
        /// The Authentication Method the client names.
        method: String,
        /// What the client sends at each step: the CONNECT's Authentication Data, then
        /// each AUTH's.
        data: Vec<ClientData>,
    },
}

impl Call {
    fn hook(&self) -> &'static str {
        match self {
            Call::Authn { .. } => "authn",
            Call::Authz { .. } => "authz",
            Call::Transform { .. } => "transform",
            Call::Auth { .. } => "auth",
        }
    }
}

/// The answer a case expects.
#[derive(Debug)]
pub enum Expect {
    /// An authn or authz decision; for authn, optionally the superuser flag and the
    /// reason.
    Decision {
        /// Allow, deny or ignore.
        decision: Decision,
        /// authn only: whether the client is let in as a superuser.
        superuser: Option<bool>,
        /// authn only: the reason given.
        reason: Option<String>,
    },
    /// The transform keeps the message.
    Keep,
    /// The transform drops it (optionally with this reason).
    Drop(Option<String>),
    /// The transform replaces it with this message (boxed, as [`Call::Transform`]'s).
    Replace(Box<Publish>),
    /// The auth hook's answer to each step of the exchange, in order.
    Exchange(Vec<StepExpect>),
}

/// 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

impl Cases {
    /// Parses and checks a cases file: syntax and unknown fields are reported by line
    /// and column (the TOML parser's message), a case that makes no sense by its line
    /// and field.
    pub fn parse(text: &str) -> anyhow::Result<Cases> {
        let file: CasesToml = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        if file.cases.is_empty() {
            bail!("no cases: add a [[case]] table (docs/plugins.md, \"Developer tools\")");
        }
        let mut cases = Vec::new();
        for (index, spanned) in file.cases.into_iter().enumerate() {
            let line = line_of(text, spanned.span().start);
            let name = spanned
                .get_ref()
                .name
                .clone()
                .unwrap_or_else(|| format!("case {}", index + 1));
            let case = check_case(spanned.into_inner(), name.clone(), line)
                .map_err(|e| anyhow::anyhow!("case {} {name:?} (line {line}): {e}", index + 1))?;
            cases.push(case);
        }
        Ok(Cases {
            plugin: file.plugin,
            database: file.database,
            cases,
        })
    }
}

fn check_qos(qos: Option<u8>, field: &str) -> anyhow::Result<QoS> {
    match qos {
        None => Ok(QoS::AtMostOnce),
        Some(q) => QoS::from_u8(q).with_context(|| format!("`{field}` is {q}: a QoS is 0, 1 or 2")),
    }
}

fn check_case(mut case: CaseToml, name: String, line: usize) -> anyhow::Result<Case> {
    let extra = MessageExtraToml {
        payload: case.payload.take(),
        user_properties: case.user_properties.take(),
        content_type: case.content_type.take(),
        payload_is_utf8: case.payload_is_utf8.take(),
        response_topic: case.response_topic.take(),
        correlation_data: case.correlation_data.take(),
        message_expiry_interval: case.message_expiry_interval.take(),
    };
    let transform_answer = matches!(
        case.expect,
        Some(ExpectName::Keep | ExpectName::Drop | ExpectName::Replace)
    );
    // The hook: as named, else what the case asks: an exchange (auth), a transform's
    // answer, an action (authz), or neither (authn, which needs only the client).
    let hook = match case.hook {
        Some(hook) => hook,
        None if case.method.is_some() || case.steps.is_some() => HookName::Auth,
        None if transform_answer => HookName::Transform,
        None if case.action.is_some() => HookName::Authz,
        None => HookName::Authn,
    };
    let hook_name = match hook {
        HookName::Authn => "authn",
        HookName::Authz => "authz",
        HookName::Transform => "transform",
        HookName::Auth => "auth",
    };
    let not_for = |field: &str, for_: &str| -> anyhow::Error {
        anyhow::anyhow!("`{field}` is for {for_} cases, and this is an {hook_name} case")
    };
    if matches!(hook, HookName::Auth) {
        return check_auth_case(case, extra, name, line);
    }
    let client = client_info(case.client)?;
    if case.method.is_some() {
        return Err(not_for("method", "auth"));
    }
    if case.steps.is_some() {
        return Err(not_for("steps", "auth"));
    }
    let Some(expect) = case.expect else {
        bail!(
            "`expect` is missing: allow, deny or ignore (authn, authz), keep, drop or \
             replace (transform)"
        );
    };
    if !matches!(hook, HookName::Authn) {
        if case.password.is_some() {
            return Err(not_for("password", "authn"));
        }
        if case.superuser.is_some() {
            return Err(not_for("superuser", "authn"));
        }
    }
    if !matches!(hook, HookName::Authz) && case.action.is_some() {
        return Err(not_for("action", "authz"));
    }
    if !matches!(hook, HookName::Transform) {
        if let Some(field) = extra.given() {
            return Err(not_for(field, "transform"));
        }
        if case.expect_message.is_some() {
            return Err(not_for("expect_message", "transform"));
        }
        if transform_answer {
            bail!(
                "`expect` keep, drop or replace is a transform's answer: an {hook_name} hook answers allow, deny or ignore"
            );
        }
    }
    if matches!(hook, HookName::Authn)
        && (case.topic.is_some() || case.qos.is_some() || case.retain.is_some())
    {
        bail!(
            "`topic`, `qos` and `retain` are for authz and transform cases, and this is an authn case"
        );
    }
    let decision = match expect {
        ExpectName::Allow => Some(Decision::Allow),
        ExpectName::Deny => Some(Decision::Deny),
        ExpectName::Ignore => Some(Decision::Ignore),
        _ => None,
    };
    let (call, expect) = match hook {
        HookName::Authn => (
            Call::Authn {
                password: case.password.map(String::into_bytes),
            },
            Expect::Decision {
                decision: decision.expect("checked above"),
                superuser: case.superuser,
                reason: case.reason,
            },
        ),
        HookName::Authz => {
            let action = match case.action {
                Some(ActionName::Publish) => Action::Publish,
                Some(ActionName::Subscribe) => Action::Subscribe,
                None => bail!("`action` is missing: publish or subscribe"),
            };
            let topic = case
                .topic
                .context("`topic` is missing: the topic name (publish) or filter (subscribe)")?;
            if case.reason.is_some() {
                bail!("`reason` is for authn and drop answers: an authz hook gives none");
            }
            (
                Call::Authz {
                    action,
                    topic,
                    qos: check_qos(case.qos, "qos")? as u8,
                    retain: case.retain.unwrap_or(false),
                },
                Expect::Decision {
                    decision: decision.expect("checked above"),
                    superuser: None,
                    reason: None,
                },
            )
        }
        HookName::Transform => {
            if decision.is_some() {
                bail!(
                    "`expect` allow, deny or ignore is an authn or authz answer: a \
                     transform answers keep, drop or replace"
                );
            }
            let topic = case
                .topic
                .context("`topic` is missing: the message's topic name")?;
            let mut message = message(topic, check_qos(case.qos, "qos")?);
            message.retain = case.retain.unwrap_or(false);
            apply_extra(&mut message, extra);
            if case.expect_message.is_some() && !matches!(expect, ExpectName::Replace) {
                bail!("`expect_message` goes with expect = \"replace\"");
            }
            if case.reason.is_some() && !matches!(expect, ExpectName::Drop) {
                bail!("`reason` goes with expect = \"drop\" (or an authn answer)");
            }
            let expect = match expect {
                ExpectName::Keep => Expect::Keep,
                ExpectName::Drop => Expect::Drop(case.reason),
                _ => {
                    let mut expected = message.clone();
                    if let Some(out) = case.expect_message {
                        if let Some(topic) = out.topic {
                            expected.topic = topic.into();
                        }
                        if out.qos.is_some() {
                            expected.qos = check_qos(out.qos, "expect_message.qos")?;
                        }
                        if let Some(retain) = out.retain {
                            expected.retain = retain;
                        }
                        apply_extra(
                            &mut expected,
                            MessageExtraToml {
                                payload: out.payload,
                                user_properties: out.user_properties,
                                content_type: out.content_type,
                                payload_is_utf8: out.payload_is_utf8,
                                response_topic: out.response_topic,
                                correlation_data: out.correlation_data,
                                message_expiry_interval: out.message_expiry_interval,
                            },
                        );
                    }
                    Expect::Replace(Box::new(expected))
                }
            };
            (
                Call::Transform {
                    message: Box::new(message),
                },
                expect,
            )
        }
        HookName::Auth => unreachable!("auth cases are checked by check_auth_case"),
    };
    Ok(Case {
        name,
        line,
        client,
        call,
        expect,
    })
}

/// A PUBLISH on `topic` with nothing else set, as a client would send it (a packet id
/// for QoS 1 and 2; the plugin does not see it).
fn message(topic: String, qos: QoS) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.into(),
        packet_id: u16::from(qos != QoS::AtMostOnce),
        payload: Bytes::new(),
        properties: Default::default(),
    }
}

/// An auth case: `method` and `steps` ([`auth_cases::check`]), and none of the other
/// hooks' fields.
fn check_auth_case(
    case: CaseToml,
    extra: MessageExtraToml,
    name: String,
    line: usize,
) -> anyhow::Result<Case> {
    let stray = [
        (case.password.is_some(), "password"),
        (case.action.is_some(), "action"),
        (case.topic.is_some(), "topic"),
        (case.qos.is_some(), "qos"),
        (case.retain.is_some(), "retain"),
        (extra.given().is_some(), extra.given().unwrap_or_default()),
        (case.expect_message.is_some(), "expect_message"),
        (case.expect.is_some(), "expect"),
        (case.superuser.is_some(), "superuser"),
        (case.reason.is_some(), "reason"),
    ]
    .into_iter()
    .find_map(|(given, field)| given.then_some(field));
    if let Some(field) = stray {
        bail!(
            "`{field}` is not for auth cases: an auth case is `method` and `steps`, and \
             each step has its own `expect` (with `superuser`, `reason`, `expect_data`)"
        );
    }
    let (method, data, expects) = auth_cases::check(case.method, case.steps)?;
    Ok(Case {
        name,
        line,
        client: client_info(case.client)?,
        call: Call::Auth { method, data },
        expect: Expect::Exchange(expects),
    })
}

fn apply_extra(message: &mut Publish, extra: MessageExtraToml) {
    let p = &mut message.properties;
    if let Some(payload) = extra.payload {
        message.payload = Bytes::from(payload);
    }
    if let Some(properties) = extra.user_properties {
        p.user_properties = properties
            .into_iter()
            .map(|(k, v)| (ByteString::from(k), ByteString::from(v)))
            .collect();
    }
    if let Some(content_type) = extra.content_type {
        p.content_type = Some(content_type.into());
    }
    if let Some(utf8) = extra.payload_is_utf8 {
        p.payload_format_indicator = utf8.then_some(1);
    }
    if let Some(topic) = extra.response_topic {
        p.response_topic = Some(topic.into());
    }
    if let Some(data) = extra.correlation_data {
        p.correlation_data = Some(Bytes::from(data));
    }
    if let Some(expiry) = extra.message_expiry_interval {
        p.message_expiry_interval = Some(expiry);
    }
}

fn client_info(client: ClientToml) -> anyhow::Result<ClientInfo> {
    let protocol = match client.protocol_version {
        4 => Protocol::V311,
        5 => Protocol::V5,
        v => bail!("`client.protocol_version` is {v}: 4 (MQTT 3.1.1) or 5"),
    };
    // A listener's name lives as long as the broker (`&'static str`); this tool runs
    // the cases once and exits, so the few names of a cases file are leaked.
    let listener: &'static str = Box::leak(client.listener.into_boxed_str());
    let mut info = ClientInfo::new(client.client_id, client.peer_addr, protocol, listener);
    info.username = client.username.map(ByteString::from);
    info.listener_kind = client.listener_kind;
    info.certificate = client.certificate.map(|c| {
        Box::new(CertificateIdentity {
            common_name: c.common_name,
            dns_names: c.dns_names,
            emails: c.emails,
            uris: c.uris,
        })
    });
    info.connect_user_properties = client
        .user_properties
        .into_iter()
        .map(|(k, v)| (ByteString::from(k), ByteString::from(v)))
        .collect();
    Ok(info)
}

/// How a run ended.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Cases that passed.
    pub passed: usize,
    /// Cases that failed.
    pub failed: usize,
}

/// Runs the cases of `cases_path` against the component `wasm_path`, printing to
/// stdout. An error is a run that could not start (a bad cases file, a component that
/// does not load); a case that fails is counted in the summary.
pub async fn run(wasm_path: &Path, cases_path: &Path) -> anyhow::Result<Summary> {
    let text = std::fs::read_to_string(cases_path)
        .with_context(|| format!("cannot read {}", cases_path.display()))?;
    let cases =
        Cases::parse(&text).with_context(|| format!("{}: bad cases file", cases_path.display()))?;
    let wasm =
        std::fs::read(wasm_path).with_context(|| format!("cannot read {}", wasm_path.display()))?;
    let name = wasm_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".into());
    let database = match &cases.database {
        Some(db) => Some(open_database(db).await?),
        None => None,
    };
    let config = cases.plugin.into_config(&name);
    let granted = config.grant_sql;
    let host = PluginHost::new(HostConfig {
        instances_max: 8,
        // Compiled components are kept between runs (a Python or JavaScript one takes
        // seconds to compile), beside the plugin host's own test cache.
        cache_dir: Some(std::env::temp_dir().join("wasmq-plugin-test-cache")),
        database: database.clone(),
        ..HostConfig::default()
    })
    .context("cannot start the plugin host")?;
    let plugin = host.load_async(config, wasm).await.map_err(|e| {
        let hint = if e.to_string().contains("`sql`") {
            " (grant it in the cases file: [plugin.capabilities] sql = \"read\" or \
             \"read-write\", with a [database] url such as \"sqlite::memory:\")"
        } else {
            ""
        };
        anyhow::anyhow!("{}: does not load: {e}{hint}", wasm_path.display())
    })?;
    println!(
        "{}: {} (hooks: {}; capabilities: {})",
        wasm_path.display(),
        plugin.contract(),
        plugin.exported_hooks(),
        plugin.capabilities()
    );
    if granted.is_granted() && database.is_none() {
        println!(
            "note: granted sql ({granted}) but the cases file has no [database]: every \
             query answers not-granted"
        );
    }
    let mut summary = Summary::default();
    for case in &cases.cases {
        match run_case(&plugin, case).await {
            None => {
                summary.passed += 1;
                println!("PASS  {}", case.name);
            }
            Some(why) => {
                summary.failed += 1;
                println!(
                    "FAIL  {}  ({} line {})",
                    case.name,
                    cases_path.display(),
                    case.line
                );
                for line in why.lines() {
                    println!("      {line}");
                }
            }
        }
    }
    let total = cases.cases.len();
    println!(
        "{total} case{}: {} passed, {} failed",
        if total == 1 { "" } else { "s" },
        summary.passed,
        summary.failed
    );
    if let Some(database) = database {
        database.close().await;
    }
    Ok(summary)
}

async fn open_database(db: &DatabaseToml) -> anyhow::Result<Arc<Database>> {
    let database = Database::open(&DatabaseConfig {
        url: db.url.clone(),
        ..DatabaseConfig::default()
    })
    .await
    .context("cannot open the cases file's [database] url")?;
    if db.schema {
        crate::plugins::acl_tables::ensure(&database)
            .await
            .with_context(|| format!("cannot create the tables in {}", database.name()))
            .context("cannot create the broker's tables ([database] schema = true)")?;
    }
    for (i, statement) in db.setup.iter().enumerate() {
        database
            .execute(statement, &[])
            .await
            .with_context(|| format!("[database] setup statement {}: {statement}", i + 1))?;
    }
    Ok(Arc::new(database))
}

/// Calls the case's hook; `None` when it answered as expected, else why not.
async fn run_case(plugin: &Plugin, case: &Case) -> Option<String> {
    let exported = plugin.exported_hooks();
    let has = match case.call {
        Call::Authn { .. } => exported.authn,
        Call::Authz { .. } => exported.authz,
        Call::Transform { .. } => exported.transform,
        Call::Auth { .. } => exported.auth,
    };
    if !has {
        return Some(format!(
            "the plugin does not export {} (it exports: {exported}); set `hook` if the \
             case meant another",
            case.call.hook()
        ));
    }
    match (&case.call, &case.expect) {
        (
            Call::Authn { password },
            Expect::Decision {
                decision,
                superuser,
                reason,
            },
        ) => {
            let got = match plugin.authenticate(&case.client, password.as_deref()).await {
                Ok(got) => got,
                Err(fault) => return Some(fault_line(decision_name(*decision), &fault)),
            };
            authn_diff(&got, *decision, *superuser, reason.as_deref())
        }
        (
            Call::Authz {
                action,
                topic,
                qos,
                retain,
            },
            Expect::Decision { decision, .. },
        ) => {
            match plugin
                .authorize(&case.client, *action, topic, *qos, *retain)
                .await
            {
                Ok(got) if got == *decision => None,
                Ok(got) => Some(format!(
                    "expected: {}\ngot:      {}",
                    decision_name(*decision),
                    decision_name(got)
                )),
                Err(fault) => Some(fault_line(decision_name(*decision), &fault)),
            }
        }
        (Call::Auth { method, data }, Expect::Exchange(expects)) => {
            auth_cases::run(plugin, &case.client, method, data, expects).await
        }
        (Call::Transform { message }, expect) => {
            match plugin.on_publish(&case.client, message).await {
                Ok(got) => transform_diff(expect, &got),
                Err(fault) => Some(fault_line(&expect_name(expect), &fault)),
            }
        }
        _ => unreachable!("Cases::parse pairs each call with its kind of answer"),
    }
}

fn fault_line(expected: &str, fault: &wasmq_plugin_host::Fault) -> String {
    format!("expected: {expected}\ngot:      a fault: {fault}")
}

fn decision_name(decision: Decision) -> &'static str {
    match decision {
        Decision::Allow => "allow",
        Decision::Deny => "deny",
        Decision::Ignore => "ignore",
    }
}

fn expect_name(expect: &Expect) -> String {
    match expect {
        Expect::Decision { decision, .. } => decision_name(*decision).to_string(),
        Expect::Keep => "keep".into(),
        Expect::Drop(None) => "drop".into(),
        Expect::Drop(Some(reason)) => format!("drop ({reason:?})"),
        Expect::Replace(_) => "replace".into(),
        Expect::Exchange(_) => "an exchange".into(),
    }
}

fn authn_diff(
    got: &AuthOutcome,
    decision: Decision,
    superuser: Option<bool>,
    reason: Option<&str>,
) -> Option<String> {
    let mut diff = String::new();
    if got.decision != decision {
        let _ = write!(
            diff,
            "expected: {}\ngot:      {}",
            decision_name(decision),
            decision_name(got.decision)
        );
        if let Some(reason) = &got.reason {
            let _ = write!(diff, " (reason {reason:?})");
        }
        return Some(diff);
    }
    if let Some(superuser) = superuser
        && got.superuser != superuser
    {
        let _ = writeln!(diff, "{}, but", decision_name(decision));
        let _ = write!(
            diff,
            "  superuser\n    - expected {superuser}\n    + got      {}",
            got.superuser
        );
    }
    if let Some(reason) = reason
        && got.reason.as_deref() != Some(reason)
    {
        if diff.is_empty() {
            let _ = writeln!(diff, "{}, but", decision_name(decision));
        } else {
            diff.push('\n');
        }
        let _ = write!(
            diff,
            "  reason\n    - expected {reason:?}\n    + got      {:?}",
            got.reason
        );
    }
    (!diff.is_empty()).then_some(diff)
}

fn transform_name(got: &Transformed) -> String {
    match got {
        Transformed::Keep => "keep".into(),
        Transformed::Drop(reason) => format!("drop ({reason:?})"),
        Transformed::Replace(_) => "replace".into(),
    }
}

fn transform_diff(expect: &Expect, got: &Transformed) -> Option<String> {
    match (expect, got) {
        (Expect::Keep, Transformed::Keep) => None,
        (Expect::Drop(None), Transformed::Drop(_)) => None,
        (Expect::Drop(Some(reason)), Transformed::Drop(got)) if reason == got => None,
        (Expect::Replace(expected), Transformed::Replace(got)) => {
            let fields = message_diff(expected, got);
            (!fields.is_empty()).then(|| format!("replace, but the message differs:\n{fields}"))
        }
        (expect, got) => {
            let mut why = format!(
                "expected: {}\ngot:      {}",
                expect_name(expect),
                transform_name(got)
            );
            if let Transformed::Replace(out) = got {
                let _ = write!(why, ", with\n{}", describe(out));
            }
            Some(why)
        }
    }
}

/// A payload as text when it is UTF-8, else as bytes.
pub(crate) fn bytes(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(text) => format!("{text:?}"),
        Err(_) => format!("{b:?}"),
    }
}

/// The fields of a message a plugin sees, one per line, as the diff names them (the
/// cases file's names).
fn fields(m: &Publish) -> Vec<(&'static str, String)> {
    let p = &m.properties;
    vec![
        ("topic", format!("{:?}", m.topic)),
        ("payload", bytes(&m.payload)),
        ("qos", (m.qos as u8).to_string()),
        ("retain", m.retain.to_string()),
        ("user_properties", format!("{:?}", p.user_properties)),
        ("content_type", format!("{:?}", p.content_type)),
        (
            "payload_is_utf8",
            (p.payload_format_indicator == Some(1)).to_string(),
        ),
        ("response_topic", format!("{:?}", p.response_topic)),
        (
            "correlation_data",
            p.correlation_data.as_deref().map_or("None".into(), bytes),
        ),
        (
            "message_expiry_interval",
            format!("{:?}", p.message_expiry_interval),
        ),
    ]
}

fn describe(m: &Publish) -> String {
    fields(m)
        .into_iter()
        .map(|(name, value)| format!("  {name}: {value}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The fields that differ: `- expected` and `+ got` under each field's name.
fn message_diff(expected: &Publish, got: &Publish) -> String {
    fields(expected)
        .into_iter()
        .zip(fields(got))
        .filter(|((_, e), (_, g))| e != g)
        .map(|((name, e), (_, g))| format!("  {name}\n    - expected {e}\n    + got      {g}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        format!("{:#}", Cases::parse(text).err().expect("a bad file"))
    }

    #[test]
    fn the_hook_is_named_or_follows_from_the_case() {
        let cases = Cases::parse(
            r#"
            [[case]]
            action = "publish"
            topic = "a"
            expect = "allow"
            [[case]]
            topic = "a"
            expect = "keep"
            [[case]]
            client = { client_id = "c", username = "u" }
            password = "p"
            expect = "deny"
            [[case]]
            hook = "authn"
            expect = "ignore"
            "#,
        )
        .unwrap();
        let hooks: Vec<_> = cases.cases.iter().map(|c| c.call.hook()).collect();
        assert_eq!(hooks, ["authz", "transform", "authn", "authn"]);
        assert_eq!(cases.cases[0].name, "case 1");
        assert_eq!(cases.cases[0].line, 2);
        assert_eq!(cases.cases[2].client.username.as_deref(), Some("u"));
    }

    #[test]
    fn an_auth_case_is_an_exchange_and_nothing_else() {
        let cases = Cases::parse(
            r#"
            [[case]]
            client = { client_id = "c", username = "alice" }
            method = "demo-challenge"
            steps = [{ expect = "continue" }, { data = "{challenge}:s", expect = "success" }]
            [[case]]
            hook = "auth"
            method = "m"
            steps = [{ expect = "ignore" }]
            "#,
        )
        .unwrap();
        let hooks: Vec<_> = cases.cases.iter().map(|c| c.call.hook()).collect();
        assert_eq!(hooks, ["auth", "auth"]);
        let Call::Auth { method, data } = &cases.cases[0].call else {
            panic!("{:?}", cases.cases[0].call)
        };
        assert_eq!(method, "demo-challenge");
        assert_eq!(data.len(), 2);
        let Expect::Exchange(expects) = &cases.cases[0].expect else {
            panic!("{:?}", cases.cases[0].expect)
        };
        assert_eq!(expects.len(), 2);

        let stray = error(
            "[[case]]\nmethod = \"m\"\nsteps = [{ expect = \"ignore\" }]\nexpect = \"allow\"\n",
        );
        assert!(
            stray.contains("line 1") && stray.contains("`expect` is not for auth cases"),
            "{stray}"
        );
        let password = error(
            "[[case]]\nmethod = \"m\"\npassword = \"p\"\nsteps = [{ expect = \"ignore\" }]\n",
        );
        assert!(
            password.contains("`password` is not for auth cases"),
            "{password}"
        );
        let step = error(
            "[[case]]\nmethod = \"m\"\nsteps = [{ expect = \"continue\" }, { expect = \"ignore\" }]\n",
        );
        assert!(step.contains("step 2: only the first step"), "{step}");
        let elsewhere = error("[[case]]\nhook = \"authz\"\nmethod = \"m\"\nexpect = \"allow\"\n");
        assert!(
            elsewhere.contains("`method` is for auth cases"),
            "{elsewhere}"
        );
        let no_expect = error("[[case]]\naction = \"publish\"\ntopic = \"a\"\n");
        assert!(no_expect.contains("`expect` is missing"), "{no_expect}");
    }

    #[test]
    fn expect_message_overrides_the_input() {
        let cases = Cases::parse(
            r#"
            [[case]]
            topic = "legacy/a"
            payload = "x"
            qos = 2
            expect = "replace"
            expect_message = { topic = "v2/a", user_properties = [["k", "v"]] }
            "#,
        )
        .unwrap();
        let Expect::Replace(out) = &cases.cases[0].expect else {
            panic!("{:?}", cases.cases[0].expect)
        };
        assert_eq!(out.topic, "v2/a");
        assert_eq!(out.payload, &b"x"[..]);
        assert_eq!(out.qos, QoS::ExactlyOnce);
        assert_eq!(
            out.properties.user_properties,
            [(ByteString::from("k"), ByteString::from("v"))]
        );
    }

    #[test]
    fn a_bad_file_is_reported_by_line_and_field() {
        let unknown = error("[[case]]\nexpect = \"allow\"\ntopc = \"a\"\n");
        assert!(
            unknown.contains("line 3") && unknown.contains("unknown field `topc`"),
            "{unknown}"
        );
        let bad_value = error("[[case]]\naction = \"publsh\"\ntopic = \"a\"\nexpect = \"allow\"\n");
        assert!(
            bad_value.contains("line 2") && bad_value.contains("publsh"),
            "{bad_value}"
        );
        let missing_topic = error(
            "[[case]]\nname = \"n\"\nexpect = \"deny\"\n\n[[case]]\naction = \"publish\"\nexpect = \"deny\"\n",
        );
        assert!(
            missing_topic.contains("case 2 \"case 2\" (line 5)")
                && missing_topic.contains("`topic` is missing"),
            "{missing_topic}"
        );
        let qos =
            error("[[case]]\naction = \"publish\"\ntopic = \"a\"\nqos = 3\nexpect = \"allow\"\n");
        assert!(qos.contains("`qos` is 3"), "{qos}");
        let mixed = error("[[case]]\naction = \"publish\"\ntopic = \"a\"\nexpect = \"keep\"\n");
        assert!(mixed.contains("`action` is for authz cases"), "{mixed}");
        let plugin = error("[plugin]\npriorty = 1\n[[case]]\nexpect = \"allow\"\n");
        assert!(
            plugin.contains("line 2") && plugin.contains("priorty"),
            "{plugin}"
        );
        assert!(error("").contains("no cases"));
    }

    #[test]
    fn diffs_name_the_fields_that_differ() {
        let mut expected = message("v2/a".into(), QoS::AtMostOnce);
        expected.properties.user_properties = vec![("via".into(), "p".into())];
        let got = Publish {
            topic: "legacy/a".into(),
            ..expected.clone()
        };
        let diff = transform_diff(
            &Expect::Replace(Box::new(expected.clone())),
            &Transformed::Replace(Box::new(got)),
        )
        .unwrap();
        assert_eq!(
            diff,
            "replace, but the message differs:\n  topic\n    - expected \"v2/a\"\n    + got      \"legacy/a\""
        );
        assert_eq!(
            transform_diff(
                &Expect::Replace(Box::new(expected.clone())),
                &Transformed::Replace(Box::new(expected.clone()))
            ),
            None
        );
        let keep = transform_diff(&Expect::Drop(None), &Transformed::Keep).unwrap();
        assert_eq!(keep, "expected: drop\ngot:      keep");
    }
}
