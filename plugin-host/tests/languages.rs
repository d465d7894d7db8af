//! The example plugins in every language, held to one set of expectations:
//! the authz example (`readonly/#` is for `admin-` clients only, and `secret/#`
//! neither subscribed to nor delivered through a wildcard to anyone else: its
//! `authz` and `deliver` hooks) and the transform example (stamp a user
//! property, rewrite a topic prefix, drop under a prefix: its `transform-batch`
//! hook, called with batches and with one message) and the auth example (the
//! `demo-challenge` enhanced authentication method: a random nonce, answered
//! `NONCE:SECRET`: its `auth` hook), written in Rust (`plugins/examples/rust`, built by `wasmq-plugin-artifacts`), in
//! Python (componentize-py) and in JavaScript (componentize-js), built by
//! `scripts/build-plugins` into `target/plugins/{python,js}/`.
//!
//! The test runs `scripts/build-plugins` first (it installs the toolchains
//! into `.cache/` when they are missing, and skips builds that are up to
//! date). When that fails the tests fail: a language that cannot be built is
//! a failure, never a skip.
//!
//! `warm_call_time_per_language` prints (asserts nothing about) the time of
//! a warm hook call in each language; run with `--nocapture` to see it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

mod common;

use bytes::Bytes;
use bytestring::ByteString;
use common::{client, host};
use wasmq_codec::{Publish, PublishProperties, QoS};
use wasmq_plugin_artifacts as artifacts;
use wasmq_plugin_host::{
    Action, Chain, Decision, Edit, Plugin, PluginAuthStep, PluginConfig, PluginSet, ResourceLimits,
    Transformed,
};

/// One language's build of the three examples.
struct Language {
    name: &'static str,
    authz: PathBuf,
    transform: PathBuf,
    auth: PathBuf,
}

impl Language {
    /// The interpreters (CPython, SpiderMonkey) start with tens of MB of
    /// linear memory: above the default cap of 16 MiB that suits Rust.
    fn limits(&self) -> ResourceLimits {
        match self.name {
            "rust" => ResourceLimits::default(),
            _ => ResourceLimits {
                memory_bytes_max: 128 << 20,
                ..ResourceLimits::default()
            },
        }
    }

    fn load(&self, path: &Path, config: PluginConfig) -> Plugin {
        let config = PluginConfig {
            limits: self.limits(),
            ..config
        };
        let wasm = std::fs::read(path)
            .unwrap_or_else(|e| panic!("{}: reading {}: {e}", self.name, path.display()));
        host()
            .load(config, &wasm)
            .unwrap_or_else(|e| panic!("{}: loading {}: {e}", self.name, path.display()))
    }

    fn authz(&self) -> Plugin {
        self.load(
            &self.authz,
            PluginConfig::new(format!("{}-authz-readonly", self.name)),
        )
    }

    fn transform(&self, settings: &[(&str, &str)]) -> Plugin {
        let mut config = PluginConfig::new(format!("{}-transform-stamp", self.name));
        for (key, value) in settings {
            config = config.setting(*key, *value);
        }
        self.load(&self.transform, config)
    }

    /// The auth example, with the users of [`AUTH_SECRETS`].
    fn auth(&self) -> Plugin {
        let mut config = PluginConfig::new(format!("{}-auth-challenge", self.name));
        for (user, secret) in AUTH_SECRETS {
            config = config.setting(format!("secret_{user}"), *secret);
        }
        self.load(&self.auth, config)
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// Every language, once per test binary: runs `scripts/build-plugins`, and
/// compiles each component once (into the host's disk cache) so the tests,
/// which run in parallel, each load it from the cache.
fn languages() -> &'static [Language] {
    static LANGUAGES: OnceLock<Vec<Language>> = OnceLock::new();
    LANGUAGES.get_or_init(|| {
        let root = repo_root();
        let script = root.join("scripts/build-plugins");
        let started = Instant::now();
        let output = Command::new(&script)
            .current_dir(&root)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            output.status.success(),
            "scripts/build-plugins failed ({}): the Python and JavaScript examples \
             cannot be built, so they cannot be tested. Its output:\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
        println!(
            "scripts/build-plugins: {:.1} s\n{}",
            started.elapsed().as_secs_f64(),
            String::from_utf8_lossy(&output.stderr).trim_end()
        );
        let built = root.join("target/plugins");
        let languages = vec![
            Language {
                name: "rust",
                authz: artifacts::READONLY_ACL.into(),
                transform: artifacts::STAMP.into(),
                auth: artifacts::AUTH_CHALLENGE.into(),
            },
            Language {
                name: "python",
                authz: built.join("python/authz-readonly.wasm"),
                transform: built.join("python/transform-stamp.wasm"),
                auth: built.join("python/auth-challenge.wasm"),
            },
            Language {
                name: "js",
                authz: built.join("js/authz-readonly.wasm"),
                transform: built.join("js/transform-stamp.wasm"),
                auth: built.join("js/auth-challenge.wasm"),
            },
        ];
        for language in &languages {
            for path in [&language.authz, &language.transform, &language.auth] {
                let started = Instant::now();
                let size = std::fs::metadata(path)
                    .unwrap_or_else(|e| panic!("{}: {}: {e}", language.name, path.display()))
                    .len();
                drop(language.load(path, PluginConfig::new("warm-the-cache")));
                println!(
                    "{:>6} {:<22} {:>9} bytes, compiled or taken from the cache in {:.2} s",
                    language.name,
                    path.file_name().unwrap().to_string_lossy(),
                    size,
                    started.elapsed().as_secs_f64()
                );
            }
        }
        languages
    })
}

/// The authz example's expectations: (client id, action, topic) -> decision.
const AUTHZ_CASES: &[(&str, Action, &str, Decision)] = &[
    ("admin-1", Action::Publish, "readonly/x", Decision::Allow),
    ("admin-1", Action::Publish, "readonly", Decision::Allow),
    (
        "admin-ü",
        Action::Publish,
        "readonly/a/b/c",
        Decision::Allow,
    ),
    ("bob", Action::Publish, "readonly/x", Decision::Deny),
    ("bob", Action::Publish, "readonly", Decision::Deny),
    ("bob", Action::Publish, "readonly/", Decision::Deny),
    ("bob", Action::Publish, "readonly/ü/✓", Decision::Deny),
    ("", Action::Publish, "readonly/x", Decision::Deny),
    ("admin", Action::Publish, "readonly/x", Decision::Deny),
    ("Admin-1", Action::Publish, "readonly/x", Decision::Deny),
    ("x-admin-1", Action::Publish, "readonly/x", Decision::Deny),
    ("bob", Action::Publish, "readonlyish", Decision::Ignore),
    ("bob", Action::Publish, "Readonly/x", Decision::Ignore),
    ("bob", Action::Publish, "a/readonly/x", Decision::Ignore),
    ("bob", Action::Publish, "sensors/1", Decision::Ignore),
    ("admin-1", Action::Publish, "sensors/1", Decision::Ignore),
    ("bob", Action::Subscribe, "readonly/#", Decision::Ignore),
    ("bob", Action::Subscribe, "readonly", Decision::Ignore),
    ("admin-1", Action::Subscribe, "readonly/x", Decision::Ignore),
    // `secret/#`: subscribing to it is for admins; `#` is left to `acl_nomatch` (the
    // `deliver` hook keeps `secret/...` from it).
    ("bob", Action::Subscribe, "secret/#", Decision::Deny),
    ("bob", Action::Subscribe, "secret", Decision::Deny),
    ("bob", Action::Subscribe, "secret/+/x", Decision::Deny),
    ("admin-1", Action::Subscribe, "secret/#", Decision::Ignore),
    ("bob", Action::Subscribe, "#", Decision::Ignore),
    ("bob", Action::Subscribe, "+/x", Decision::Ignore),
    ("bob", Action::Subscribe, "secretive/#", Decision::Ignore),
    ("bob", Action::Publish, "secret/x", Decision::Ignore),
];

/// The deliver example's expectations (the authz example's `deliver` hook, asked
/// for each topic a wildcard subscription reaches): (client id, topic) -> decision.
const DELIVER_CASES: &[(&str, &str, Decision)] = &[
    ("bob", "secret/a", Decision::Deny),
    ("bob", "secret", Decision::Deny),
    ("bob", "secret/", Decision::Deny),
    ("bob", "secret/ü/✓", Decision::Deny),
    ("", "secret/a", Decision::Deny),
    ("admin", "secret/a", Decision::Deny),
    ("admin-1", "secret/a", Decision::Ignore),
    ("admin-1", "secret", Decision::Ignore),
    ("bob", "secretive", Decision::Ignore),
    ("bob", "Secret/a", Decision::Ignore),
    ("bob", "a/secret/b", Decision::Ignore),
    ("bob", "readonly/x", Decision::Ignore),
    ("bob", "sensors/1", Decision::Ignore),
];

#[tokio::test]
async fn authz_examples_decide_alike_in_every_language() {
    for language in languages() {
        let acl = language.authz();
        let mut wrong = Vec::new();
        for &(id, action, topic, expected) in AUTHZ_CASES {
            for (qos, retain) in [(0, false), (2, true)] {
                let got = acl
                    .authorize(&client(id), action, topic, qos, retain)
                    .await
                    .unwrap_or_else(|e| panic!("{}: fault on {id} {topic}: {e}", language.name));
                if got != expected {
                    wrong.push(format!(
                        "{id:?} {action:?} {topic:?} qos {qos} retain {retain}: \
                         {got:?}, expected {expected:?}"
                    ));
                }
            }
        }
        assert!(
            wrong.is_empty(),
            "{}: authz example decides differently:\n{}",
            language.name,
            wrong.join("\n")
        );
        // Its other hooks are not exported: the host answers for them.
        let hooks = acl.exported_hooks();
        assert!(
            hooks.authz && hooks.deliver && !hooks.authn && !hooks.transform && !hooks.auth,
            "{}: exports {hooks}",
            language.name
        );
        // It imports only what it uses: `sql` would need a grant to load.
        let caps = acl.capabilities();
        assert!(
            caps.log && !caps.config && !caps.sql,
            "{}: imports {caps}",
            language.name
        );
        let stats = acl.stats();
        assert_eq!(stats.faults, 0, "{}: {stats:?}", language.name);
        assert_eq!(
            stats.instances_created, 1,
            "{}: every call on one warm instance",
            language.name
        );
    }
}

#[tokio::test]
async fn deliver_examples_decide_alike_in_every_language() {
    for language in languages() {
        let acl = language.authz();
        let mut wrong = Vec::new();
        for &(id, topic, expected) in DELIVER_CASES {
            for (qos, retain) in [(0, false), (1, true), (2, false)] {
                let got = acl
                    .authorize_delivery(&client(id), topic, qos, retain)
                    .await
                    .unwrap_or_else(|e| panic!("{}: fault on {id} {topic}: {e}", language.name));
                if got != expected {
                    wrong.push(format!(
                        "{id:?} receives {topic:?} qos {qos} retain {retain}: \
                         {got:?}, expected {expected:?}"
                    ));
                }
            }
        }
        assert!(
            wrong.is_empty(),
            "{}: deliver example decides differently:\n{}",
            language.name,
            wrong.join("\n")
        );
        let stats = acl.stats();
        assert_eq!(stats.faults, 0, "{}: {stats:?}", language.name);
    }
}

/// A message with every field set, so that a field a plugin loses shows.
fn full_message(topic: &str, user_properties: &[(&str, &str)]) -> Publish {
    Publish {
        dup: false,
        qos: QoS::ExactlyOnce,
        retain: true,
        topic: ByteString::from(topic),
        packet_id: 1,
        payload: Bytes::from_static(&[0, 159, 146, 150, 255, b'x']),
        properties: PublishProperties {
            user_properties: user_properties
                .iter()
                .map(|&(k, v)| (ByteString::from(k), ByteString::from(v)))
                .collect(),
            content_type: Some(ByteString::from_static("application/octet-stream")),
            payload_format_indicator: None,
            response_topic: Some(ByteString::from_static("replies/ü")),
            correlation_data: Some(Bytes::from_static(&[1, 2, 3])),
            message_expiry_interval: Some(3600),
            ..PublishProperties::default()
        },
    }
}

fn minimal_message(topic: &str) -> Publish {
    Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: ByteString::from(topic),
        packet_id: 0,
        payload: Bytes::new(),
        properties: PublishProperties::default(),
    }
}

/// A transform example's settings (its `[settings]` table).
type Settings = &'static [(&'static str, &'static str)];

struct TransformCase {
    settings: Settings,
    input: Publish,
    /// The topic out; the output is the input with this topic and the stamp
    /// appended to its user properties. `None`: dropped.
    topic: Option<&'static str>,
}

impl TransformCase {
    /// Why the plugin drops a message, as the chain reports it: after `by`, the
    /// plugin's name (the plugin's own answer when empty).
    fn drop_reason(&self, by: &str) -> String {
        let reason = format!("under {}", setting(self.settings, "drop_prefix"));
        if by.is_empty() {
            reason
        } else {
            format!("{by}: {reason}")
        }
    }

    /// What the transform makes of the input (a drop as `drop_reason(by)`).
    fn expected(&self, by: &str) -> Transformed {
        let Some(topic) = self.topic else {
            return Transformed::Drop(self.drop_reason(by));
        };
        let mut out = self.input.clone();
        out.topic = ByteString::from(topic);
        out.properties.user_properties.push((
            ByteString::from_static("wasmq-plugin"),
            ByteString::from_static("stamp"),
        ));
        Transformed::Replace(Box::new(out))
    }

    /// The narrow edit a batch call answers: a change (a topic only when it is a
    /// new one, the stamp), or a drop; never the whole message back.
    fn expected_edit(&self, by: &str) -> Edit {
        let Some(topic) = self.topic else {
            return Edit::Drop(self.drop_reason(by));
        };
        Edit::Change {
            topic: (self.input.topic != topic).then(|| ByteString::from(topic)),
            add_user_properties: vec![(
                ByteString::from_static("wasmq-plugin"),
                ByteString::from_static("stamp"),
            )],
        }
    }
}

fn setting(settings: &[(&str, &'static str)], key: &str) -> &'static str {
    settings
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no {key} setting in {settings:?}"))
}

const REWRITE: &[(&str, &str)] = &[("rewrite_from", "legacy/"), ("rewrite_to", "v2/")];
const REWRITE_AND_DROP: &[(&str, &str)] = &[
    ("rewrite_from", "legacy/"),
    ("rewrite_to", "v2/"),
    ("drop_prefix", "debug/"),
];

fn transform_cases() -> Vec<TransformCase> {
    let case = |settings, input, topic| TransformCase {
        settings,
        input,
        topic: Some(topic),
    };
    let dropped = |settings, input| TransformCase {
        settings,
        input,
        topic: None,
    };
    vec![
        case(REWRITE, minimal_message("legacy/a"), "v2/a"),
        case(REWRITE, full_message("legacy/a/b", &[]), "v2/a/b"),
        case(REWRITE, full_message("legacy/", &[("k", "v")]), "v2/"),
        case(
            REWRITE,
            full_message("legacy/ü", &[("k", "v"), ("k", "w"), ("wasmq-plugin", "x")]),
            "v2/ü",
        ),
        case(REWRITE, minimal_message("legacy"), "legacy"),
        case(REWRITE, minimal_message("x/legacy/a"), "x/legacy/a"),
        case(REWRITE, full_message("sensors/1", &[]), "sensors/1"),
        case(&[], minimal_message("legacy/a"), "legacy/a"),
        case(&[], full_message("sensors/1", &[("k", "v")]), "sensors/1"),
        case(
            &[("rewrite_from", "legacy/")],
            minimal_message("legacy/a"),
            "legacy/a",
        ),
        case(
            &[("rewrite_to", "v2/")],
            minimal_message("legacy/a"),
            "legacy/a",
        ),
        case(
            &[("rewrite_from", ""), ("rewrite_to", "pre/")],
            minimal_message("a"),
            "pre/a",
        ),
        dropped(REWRITE_AND_DROP, minimal_message("debug/a")),
        dropped(REWRITE_AND_DROP, full_message("debug/", &[("k", "v")])),
        case(REWRITE_AND_DROP, minimal_message("legacy/a"), "v2/a"),
        case(REWRITE_AND_DROP, full_message("debug", &[]), "debug"),
        case(REWRITE_AND_DROP, minimal_message("x/debug/a"), "x/debug/a"),
        dropped(&[("drop_prefix", "")], minimal_message("anything")),
    ]
}

/// The cases grouped by their settings, in order: one plugin and one batch each.
fn transform_cases_by_settings() -> Vec<(Settings, Vec<TransformCase>)> {
    let mut groups: Vec<(Settings, Vec<TransformCase>)> = Vec::new();
    for case in transform_cases() {
        match groups.iter_mut().find(|(s, _)| *s == case.settings) {
            Some((_, cases)) => cases.push(case),
            None => groups.push((case.settings, vec![case])),
        }
    }
    groups
}

#[tokio::test]
async fn transform_examples_transform_alike_in_every_language() {
    let cases = transform_cases();
    for language in languages() {
        let mut plugins: Vec<(&[(&str, &str)], Plugin)> = Vec::new();
        let mut wrong = Vec::new();
        for case in &cases {
            let stamp = match plugins.iter().find(|(s, _)| *s == case.settings) {
                Some((_, plugin)) => plugin.clone(),
                None => {
                    let plugin = language.transform(case.settings);
                    plugins.push((case.settings, plugin.clone()));
                    plugin
                }
            };
            let expected = case.expected("");
            let got = stamp
                .on_publish(&client("c"), &case.input)
                .await
                .unwrap_or_else(|e| panic!("{}: fault on {:?}: {e}", language.name, case.input));
            if got != expected {
                wrong.push(format!(
                    "settings {:?}, {:?}:\n  got      {got:?}\n  expected {expected:?}",
                    case.settings, case.input
                ));
            }
        }
        assert!(
            wrong.is_empty(),
            "{}: transform example transforms differently:\n{}",
            language.name,
            wrong.join("\n")
        );
        for (_, plugin) in &plugins {
            let hooks = plugin.exported_hooks();
            assert!(
                hooks.transform && !hooks.authn && !hooks.authz,
                "{}: exports {hooks}",
                language.name
            );
            let caps = plugin.capabilities();
            assert!(
                caps.config && !caps.sql,
                "{}: imports {caps}",
                language.name
            );
            assert_eq!(plugin.stats().faults, 0, "{}", language.name);
        }
    }
}

/// The batch call: each settings' cases in one `on-publish-batch`, answered with
/// one narrow edit per message, in order.
#[tokio::test]
async fn transform_examples_edit_batches_alike_in_every_language() {
    let groups = transform_cases_by_settings();
    for language in languages() {
        let mut wrong = Vec::new();
        for (settings, cases) in &groups {
            let stamp = language.transform(settings);
            assert!(
                stamp.transforms_in_batches(),
                "{}: the stamp example exports transform-batch",
                language.name
            );
            let set = PluginSet::new(vec![stamp.clone()]);
            let inputs: Vec<Publish> = cases.iter().map(|c| c.input.clone()).collect();
            let calls = stamp.stats().calls;
            let edits = set.transform_batch(&client("c"), &inputs).await;
            assert_eq!(
                stamp.stats().calls - calls,
                1,
                "{}: {} messages in one call",
                language.name,
                inputs.len()
            );
            assert_eq!(
                edits.len(),
                cases.len(),
                "{}: one edit per message",
                language.name
            );
            for (case, got) in cases.iter().zip(edits) {
                let expected = case.expected_edit(stamp.name());
                if got != expected {
                    wrong.push(format!(
                        "settings {settings:?}, {:?}:\n  got      {got:?}\n  expected {expected:?}",
                        case.input
                    ));
                } else if got.applied_to(&case.input) != case.expected(stamp.name()) {
                    wrong.push(format!(
                        "settings {settings:?}, {:?}: applied wrong",
                        case.input
                    ));
                }
            }
            assert_eq!(stamp.stats().faults, 0, "{}", language.name);
        }
        assert!(
            wrong.is_empty(),
            "{}: transform example edits batches differently:\n{}",
            language.name,
            wrong.join("\n")
        );
    }
}

/// Both examples of one language in a chain, as the broker runs them: the
/// chain's answers are the same in every language.
#[tokio::test]
async fn chains_of_the_examples_agree_across_languages() {
    for language in languages() {
        let chain = Chain::new(PluginSet::new(vec![
            language.authz(),
            language.transform(REWRITE),
        ]));
        assert_eq!(
            chain
                .authorize(&client("bob"), Action::Publish, "readonly/x", 1, false)
                .await,
            Decision::Deny,
            "{}",
            language.name
        );
        assert_eq!(
            chain
                .authorize(&client("admin-7"), Action::Publish, "readonly/x", 1, false)
                .await,
            Decision::Allow,
            "{}",
            language.name
        );
        let Transformed::Replace(out) = chain
            .transform(&client("bob"), &minimal_message("legacy/t"))
            .await
        else {
            panic!("{}: the chain's transform replaces", language.name)
        };
        assert_eq!(out.topic, "v2/t", "{}", language.name);
        // The case: `#` may be subscribed to (nobody decides: `acl_nomatch`),
        // and `secret/...` is kept from it on delivery.
        assert_eq!(
            chain
                .authorize(&client("bob"), Action::Subscribe, "#", 1, false)
                .await,
            Decision::Ignore,
            "{}",
            language.name
        );
        let set = PluginSet::new(vec![language.authz(), language.transform(REWRITE)]);
        for (topic, expected) in [
            ("secret/plans", Decision::Deny),
            ("news/1", Decision::Ignore),
        ] {
            let outcome = set
                .authorize_delivery(&client("bob"), topic, 1, false)
                .await;
            assert_eq!(
                (outcome.decision, outcome.faulted),
                (expected, false),
                "{}: delivering {topic} to a `#` subscriber",
                language.name
            );
        }
    }
}

/// The auth example's users: `secret_USER` settings. Bob's secret has a colon (the
/// answer is split at the first one: the nonce has none) and a character beyond ASCII.
const AUTH_SECRETS: &[(&str, &str)] = &[("alice", "open sesame"), ("bob", "b:ü")];

/// The auth example's one method.
const METHOD: &str = "demo-challenge";

/// What a client answers the challenge with.
#[derive(Clone, Copy, Debug)]
enum Answer {
    /// `NONCE:SECRET` with this exchange's nonce.
    Secret(&'static str),
    /// `NONCE:SECRET` with the nonce of another exchange (started on the same client).
    OtherNonce(&'static str),
    /// This exchange's nonce, then these bytes (not UTF-8, say).
    NonceThen(&'static [u8]),
    /// These bytes as they are.
    Raw(&'static [u8]),
    /// No Authentication Data at all.
    Nothing,
}

struct AuthCase {
    what: &'static str,
    username: Option<&'static str>,
    method: &'static str,
    /// The answer to the challenge; `None`: `start` answers at once, without one.
    answer: Option<Answer>,
    /// The last answer of the exchange; `Ignore` at `start` is the chain's `None` (no
    /// plugin takes the method: the broker's CONNACK 0x8C).
    expected: PluginAuthStep,
}

fn failure(reason: &str) -> PluginAuthStep {
    PluginAuthStep::Failure(reason.into())
}

const SUCCESS: PluginAuthStep = PluginAuthStep::Success {
    data: None,
    superuser: false,
};

/// The auth example's expectations. The reasons are the same words in every
/// language (they go to the broker's log, never to the client).
fn auth_cases() -> Vec<AuthCase> {
    let case = |what, username, answer, expected| AuthCase {
        what,
        username,
        method: METHOD,
        answer,
        expected,
    };
    use Answer::*;
    vec![
        case(
            "right secret",
            Some("alice"),
            Some(Secret("open sesame")),
            SUCCESS,
        ),
        case(
            "secret with a colon",
            Some("bob"),
            Some(Secret("b:ü")),
            SUCCESS,
        ),
        case(
            "wrong secret",
            Some("alice"),
            Some(Secret("open sesame!")),
            failure("wrong secret for alice"),
        ),
        case(
            "another user's secret",
            Some("alice"),
            Some(Secret("b:ü")),
            failure("wrong secret for alice"),
        ),
        case(
            "empty secret",
            Some("alice"),
            Some(Secret("")),
            failure("wrong secret for alice"),
        ),
        case(
            "secret not UTF-8 (replaced, so wrong)",
            Some("alice"),
            Some(NonceThen(b":open \xffsesame")),
            failure("wrong secret for alice"),
        ),
        case(
            "another exchange's nonce",
            Some("alice"),
            Some(OtherNonce("open sesame")),
            failure("the answer is to another challenge"),
        ),
        case(
            "no colon",
            Some("alice"),
            Some(Raw(b"open sesame")),
            failure("the answer is not NONCE:SECRET"),
        ),
        case(
            "no data",
            Some("alice"),
            Some(Nothing),
            failure("the answer is not NONCE:SECRET"),
        ),
        case(
            "unknown user",
            Some("mallory"),
            Some(Secret("open sesame")),
            failure("no secret_mallory setting"),
        ),
        case(
            "empty user name",
            Some(""),
            Some(Secret("open sesame")),
            failure("no secret_ setting"),
        ),
        case("no user name", None, None, failure("no user name")),
        AuthCase {
            method: "SCRAM-SHA-256",
            ..case(
                "unknown method",
                Some("alice"),
                None,
                PluginAuthStep::Ignore,
            )
        },
        AuthCase {
            method: "Demo-Challenge",
            ..case(
                "method in other case",
                Some("alice"),
                None,
                PluginAuthStep::Ignore,
            )
        },
    ]
}

/// A nonce as the example makes it: 16 random bytes in lowercase hex.
fn assert_nonce(language: &str, what: &str, data: &[u8], state: &[u8]) {
    assert!(
        data.len() == 32 && data.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
        "{language}: {what}: the challenge is 32 hex digits, got {:?}",
        String::from_utf8_lossy(data)
    );
    assert_eq!(data, state, "{language}: {what}: the state is the nonce");
}

/// Starts an exchange through the chain, as the broker does; a `continue` gives the
/// nonce and the plugin's name to continue with.
async fn auth_start(
    set: &PluginSet,
    client: &wasmq_plugin_host::ClientInfo,
    method: &str,
) -> Option<(String, PluginAuthStep)> {
    set.auth_start(client, method, None)
        .await
        .map(|(plugin, step)| (plugin.to_string(), step))
}

/// The auth example in every language, driven through the chain as
/// `broker/src/plugins/policy.rs` drives it (`PluginSet::auth_start`, then
/// `PluginSet::auth_step` with the state of the last `continue`): every case ends in the
/// same answer, with the same reason, in every language.
#[tokio::test]
async fn auth_examples_answer_alike_in_every_language() {
    for language in languages() {
        let plugin = language.auth();
        let name = language.name;
        assert_eq!(
            plugin.auth_methods().await.unwrap(),
            [METHOD.to_string()],
            "{name}: its methods"
        );
        let hooks = plugin.exported_hooks();
        assert!(
            hooks.auth && !hooks.authn && !hooks.authz && !hooks.transform && !hooks.deliver,
            "{name}: exports {hooks}"
        );
        let caps = plugin.capabilities();
        assert!(
            caps.config && !caps.sql && !caps.log,
            "{name}: imports {caps}"
        );
        // A method it does not list is its own `ignore` too, not only the host's filter.
        assert_eq!(
            plugin
                .auth_step(&client("c"), "SCRAM-SHA-256", None, None)
                .await
                .unwrap(),
            PluginAuthStep::Ignore,
            "{name}"
        );

        let set = PluginSet::new(vec![plugin.clone()]);
        let mut wrong = Vec::new();
        for case in auth_cases() {
            let mut client = client("c");
            client.username = case.username.map(ByteString::from_static);
            let got = match auth_start(&set, &client, case.method).await {
                None => PluginAuthStep::Ignore,
                Some((by, PluginAuthStep::Continue { data, state })) => {
                    assert_eq!(by, plugin.name(), "{name}");
                    assert_nonce(name, case.what, &data, &state);
                    let nonce = String::from_utf8(data).unwrap();
                    let answer: Option<Vec<u8>> = match case.answer {
                        Some(Answer::Secret(secret)) => Some(format!("{nonce}:{secret}").into()),
                        Some(Answer::OtherNonce(secret)) => {
                            // A second exchange of the same client: its nonce differs, and
                            // answering it in the first exchange is refused.
                            let Some((_, PluginAuthStep::Continue { data: other, .. })) =
                                auth_start(&set, &client, case.method).await
                            else {
                                panic!("{name}: a second start continues")
                            };
                            assert_ne!(other, nonce.as_bytes(), "{name}: two starts, one nonce");
                            let other = String::from_utf8(other).unwrap();
                            Some(format!("{other}:{secret}").into())
                        }
                        Some(Answer::NonceThen(bytes)) => Some([nonce.as_bytes(), bytes].concat()),
                        Some(Answer::Raw(bytes)) => Some(bytes.to_vec()),
                        Some(Answer::Nothing) => None,
                        None => panic!("{name}: {}: continued without an answer", case.what),
                    };
                    set.auth_step(&by, &client, case.method, answer.as_deref(), &state)
                        .await
                }
                Some((_, step)) => step,
            };
            if got != case.expected {
                wrong.push(format!(
                    "{}: got {got:?}, expected {:?}",
                    case.what, case.expected
                ));
            }
        }
        assert!(
            wrong.is_empty(),
            "{name}: auth example answers differently:\n{}",
            wrong.join("\n")
        );

        // Re-authentication: more exchanges on the same client, each its own nonce,
        // each succeeding with its own.
        let alice = {
            let mut c = client("c");
            c.username = Some(ByteString::from_static("alice"));
            c
        };
        let mut nonces = Vec::new();
        for round in 0..3 {
            let Some((by, PluginAuthStep::Continue { data, state })) =
                auth_start(&set, &alice, METHOD).await
            else {
                panic!("{name}: exchange {round} continues")
            };
            assert_nonce(name, "re-authentication", &data, &state);
            let answer = [&data[..], b":open sesame"].concat();
            assert_eq!(
                set.auth_step(&by, &alice, METHOD, Some(&answer), &state)
                    .await,
                SUCCESS,
                "{name}: exchange {round}"
            );
            assert!(!nonces.contains(&data), "{name}: a nonce repeated");
            nonces.push(data);
        }
        let stats = plugin.stats();
        assert_eq!(stats.faults, 0, "{name}: {stats:?}");
    }
}

/// Prints the time of one warm call per hook and language (no assertion:
/// the figures depend on the machine and on the build profile).
#[tokio::test]
async fn warm_call_time_per_language() {
    const CALLS: u32 = 2_000;
    let profile = if cfg!(debug_assertions) {
        "debug build of the host: run with --release for representative figures"
    } else {
        "release build of the host"
    };
    println!("warm call time, median of 5 batches of {CALLS} calls ({profile}):");
    let bob = client("bob");
    let message = Publish {
        payload: Bytes::from(vec![b'x'; 64]),
        qos: QoS::AtLeastOnce,
        packet_id: 1,
        ..minimal_message("legacy/sensors/42")
    };
    for language in languages() {
        let acl = language.authz();
        let stamp = language.transform(REWRITE);
        // The first call creates the instance.
        acl.authorize(&bob, Action::Publish, "sensors/1", 1, false)
            .await
            .unwrap();
        stamp.on_publish(&bob, &message).await.unwrap();

        let authz = median_per_call(CALLS, async || {
            acl.authorize(&bob, Action::Publish, "sensors/1", 1, false)
                .await
                .unwrap();
        })
        .await;
        let transform = median_per_call(CALLS, async || {
            stamp.on_publish(&bob, &message).await.unwrap();
        })
        .await;
        println!(
            "{:>6}: authz {:>8} ns/call, transform {:>8} ns/call",
            language.name,
            authz.as_nanos(),
            transform.as_nanos()
        );
        assert_eq!(acl.stats().faults + stamp.stats().faults, 0);
    }
}

async fn median_per_call(calls: u32, mut call: impl AsyncFnMut()) -> Duration {
    let mut batches = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        for _ in 0..calls {
            call().await;
        }
        batches.push(started.elapsed() / calls);
    }
    batches.sort();
    batches[batches.len() / 2]
}

/// Making an instance is bounded by `start_timeout_ms`, apart from the per-call limit:
/// an interpreter's start (CPython's, SpiderMonkey's: its memory image laid out, its
/// runtime set up) takes far longer than one of its calls, and counted against
/// `call_timeout_ms` (100 ms) it failed whenever the machine was busy (a CI run with
/// three compilers beside it, load 10 on 2 cores).
#[tokio::test]
async fn an_instance_start_has_a_time_limit_of_its_own() {
    // CPython's: 13 ms on an idle machine here, past the two epoch ticks (5 ms each) a
    // 1 ms call limit gives; SpiderMonkey's (4 ms) is too quick to show it.
    let language = &languages()[1];
    assert_eq!(language.name, "python");
    let load = |start_timeout_ms, call_timeout_ms| {
        let config = PluginConfig {
            limits: ResourceLimits {
                start_timeout_ms,
                call_timeout_ms,
                ..language.limits()
            },
            ..PluginConfig::new(format!("{}-start", language.name))
        };
        host()
            .load(config, &std::fs::read(&language.authz).unwrap())
            .unwrap()
    };
    // A call limit far below the start's time does not bound the start.
    let plugin = load(1000, 1);
    let started = Instant::now();
    plugin
        .warm_up()
        .await
        .unwrap_or_else(|f| panic!("{}: {f}", language.name));
    let took = started.elapsed();
    println!("{}: an instance started in {took:?}", language.name);
    // No budget at all (one epoch tick, at most 5 ms): the start is cut off, and
    // the fault names the start's limit.
    let fault = load(0, 1000).warm_up().await.unwrap_err();
    assert_eq!(
        fault.to_string(),
        "timed out after 0 ms",
        "{}",
        language.name
    );
}
