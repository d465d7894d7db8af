//! The `auth` cases of `wasmq plugin test`: an MQTT 5 enhanced authentication
//! exchange, step by step, as the broker runs it.
//!
//! A case names the client's Authentication Method and lists `steps`, one per packet
//! of the client's: the CONNECT's Authentication Data first, then each AUTH answer.
//! The runner plays the broker: it asks the plugin's `methods` first (a method it does
//! not list is `ignore`, the broker's CONNACK 0x8C), calls `start` with the first
//! step's data and `step` with each later one, handing back the state of the last
//! `continue` answer, and puts every answer through the broker's own limits
//! (`auth_rounds_max`, `auth_data_max_bytes`, at their defaults), so a case passes
//! only where the broker would have gone the same way.
//!
//! A random challenge cannot be written in the cases file, so a step's `data` may quote
//! the last challenge: `{challenge}` stands for it, as text.

use std::fmt::Write as _;

use anyhow::bail;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::Deserialize;
use wasmq_codec::ReasonCode;
use wasmq_plugin_host::{ClientInfo, Plugin, PluginAuthStep as PluginStep};

use crate::config::Limits;
use crate::enhanced_auth::{self, Next};
use crate::hooks::{AuthExchange, AuthStep};
use crate::plugin_tools::test_cases::bytes;

/// Where a step's data quotes the last challenge.
const CHALLENGE: &str = "{challenge}";

/// One of `steps = [{ ... }]`: what the client sends and the answer expected.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StepToml {
    data: Option<String>,
    data_hex: Option<String>,
    data_base64: Option<String>,
    expect: StepExpectName,
    expect_data: Option<String>,
    expect_data_hex: Option<String>,
    expect_data_base64: Option<String>,
    superuser: Option<bool>,
    reason: Option<String>,
}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum StepExpectName {
    Continue,
    Success,
    Failure,
    Ignore,
}

/// The Authentication Data of one packet of the client's.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientData {
    /// The packet carries none.
    Absent,
    /// These bytes.
    Bytes(Vec<u8>),
    /// Text quoting the last challenge (`{challenge}`), filled in when it is known.
    QuotingChallenge(String),
}

/// The answer expected to one step.
#[derive(Debug, PartialEq, Eq)]
pub enum StepExpect {
    /// Another challenge; its data, when given, is checked.
    Continue {
        /// The challenge expected.
        data: Option<Vec<u8>>,
    },
    /// Authenticated; the final data and the superuser flag are checked when given.
    Success {
        /// The final Authentication Data expected.
        data: Option<Vec<u8>>,
        /// Whether the client is expected to be a superuser.
        superuser: Option<bool>,
    },
    /// Refused (by the plugin, or by the broker's limits); the reason is checked when
    /// given.
    Failure {
        /// The reason expected.
        reason: Option<String>,
    },
    /// Not the plugin's method.
    Ignore,
}

impl StepExpect {
    fn name(&self) -> &'static str {
        match self {
            StepExpect::Continue { .. } => "continue",
            StepExpect::Success { .. } => "success",
            StepExpect::Failure { .. } => "failure",
            StepExpect::Ignore => "ignore",
        }
    }
}

/// At most one of the three spellings of a field: text, hex or base64.
fn one_of(
    field: &str,
    text: Option<String>,
    hex: Option<String>,
    base64: Option<String>,
) -> anyhow::Result<Option<Vec<u8>>> {
    match (text, hex, base64) {
        (None, None, None) => Ok(None),
        (Some(text), None, None) => Ok(Some(text.into_bytes())),
        (None, Some(hex), None) => from_hex(&hex)
            .map(Some)
            .ok_or_else(|| anyhow::anyhow!("`{field}_hex` is not hex digits: {hex:?}")),
        (None, None, Some(b64)) => BASE64
            .decode(b64.trim())
            .map(Some)
            .map_err(|e| anyhow::anyhow!("`{field}_base64` is not base64: {e}")),
        _ => bail!("give one of `{field}`, `{field}_hex` and `{field}_base64`"),
    }
}

/// Pairs of hex digits (either case; spaces between bytes are allowed).
fn from_hex(text: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

/// Checks an auth case's `method` and `steps`: the method, what the client sends at
/// each step, and the answers expected.
pub(crate) fn check(
    method: Option<String>,
    steps: Option<Vec<StepToml>>,
) -> anyhow::Result<(String, Vec<ClientData>, Vec<StepExpect>)> {
    let method = method.ok_or_else(|| {
        anyhow::anyhow!(
            "`method` is missing: the Authentication Method the client names (one the \
             plugin's `methods` lists)"
        )
    })?;
    let steps = steps.unwrap_or_default();
    if steps.is_empty() {
        bail!(
            "`steps` is missing: one table per packet of the client's, the CONNECT first \
             (steps = [{{ expect = \"continue\" }}, {{ data = \"{CHALLENGE}:secret\", \
             expect = \"success\" }}])"
        );
    }
    let count = steps.len();
    let mut data = Vec::with_capacity(count);
    let mut expects = Vec::with_capacity(count);
    for (index, step) in steps.into_iter().enumerate() {
        let number = index + 1;
        let (sent, expect) =
            check_step(step, number, count).map_err(|e| anyhow::anyhow!("step {number}: {e}"))?;
        data.push(sent);
        expects.push(expect);
    }
    Ok((method, data, expects))
}

fn check_step(
    step: StepToml,
    number: usize,
    count: usize,
) -> anyhow::Result<(ClientData, StepExpect)> {
    let quotes = step.data.as_deref().is_some_and(|d| d.contains(CHALLENGE));
    if quotes && number == 1 {
        bail!("`{CHALLENGE}` in `data`: the first step is the CONNECT's, before any challenge");
    }
    let sent = match one_of("data", step.data, step.data_hex, step.data_base64)? {
        None => ClientData::Absent,
        Some(text) if quotes => {
            ClientData::QuotingChallenge(String::from_utf8(text).expect("given as text"))
        }
        Some(bytes) => ClientData::Bytes(bytes),
    };
    let data = one_of(
        "expect_data",
        step.expect_data,
        step.expect_data_hex,
        step.expect_data_base64,
    )?;
    let expect = step.expect;
    if data.is_some() && !matches!(expect, StepExpectName::Continue | StepExpectName::Success) {
        bail!("`expect_data` goes with expect = \"continue\" or \"success\"");
    }
    if step.superuser.is_some() && !matches!(expect, StepExpectName::Success) {
        bail!("`superuser` goes with expect = \"success\"");
    }
    if step.reason.is_some() && !matches!(expect, StepExpectName::Failure) {
        bail!("`reason` goes with expect = \"failure\"");
    }
    let expect = match expect {
        StepExpectName::Continue => StepExpect::Continue { data },
        StepExpectName::Success => StepExpect::Success {
            data,
            superuser: step.superuser,
        },
        StepExpectName::Failure => StepExpect::Failure {
            reason: step.reason,
        },
        StepExpectName::Ignore if number > 1 => bail!(
            "only the first step can be ignored: the broker makes an ignore from a later \
             step a failure"
        ),
        StepExpectName::Ignore => StepExpect::Ignore,
    };
    if number < count && !matches!(expect, StepExpect::Continue { .. }) {
        bail!(
            "expect = \"{}\" ends the exchange, and {} more step{} follow{}",
            expect.name(),
            count - number,
            if count - number == 1 { "" } else { "s" },
            if count - number == 1 { "s" } else { "" }
        );
    }
    Ok((sent, expect))
}

/// What came of a step, once the broker had put the plugin's answer through its limits.
enum Got {
    /// The broker's own answer, as `enhanced_auth::next` gives it: a challenge, a
    /// success, or a refusal by the broker's rules and limits.
    Answered(Next),
    /// Refused by the plugin, for this reason (the broker logs it and answers 0x87).
    Failure { reason: String },
    /// Not the plugin's: `start` said so, or `methods` does not list the method.
    Ignore { methods: Option<Vec<String>> },
}

impl Got {
    fn describe(&self) -> String {
        match self {
            Got::Answered(Next::Challenge { data, .. }) => {
                format!("continue, with {}", bytes(data))
            }
            Got::Answered(Next::Success { data, superuser }) => {
                let data = data.as_deref().map_or("no data".into(), bytes);
                format!("success, with {data} (superuser {superuser})")
            }
            Got::Answered(Next::Refused((_, reason))) => {
                format!("failure, by the broker ({reason:?})")
            }
            Got::Failure { reason } => format!("failure ({reason:?})"),
            Got::Ignore { methods: None } => "ignore".into(),
            Got::Ignore {
                methods: Some(methods),
            } => format!(
                "ignore: `methods` lists {methods:?} (the broker answers CONNACK 0x8C Bad \
                 authentication method)"
            ),
        }
    }
}

/// Runs the exchange; `None` when every step was answered as expected, else why not,
/// naming the step.
pub(crate) async fn run(
    plugin: &Plugin,
    client: &ClientInfo,
    method: &str,
    sent: &[ClientData],
    expects: &[StepExpect],
) -> Option<String> {
    let limits = Limits::default();
    let count = expects.len();
    let methods = match plugin.auth_methods().await {
        Ok(methods) => methods,
        Err(fault) => {
            return Some(format!(
                "step 1 of {count}:\nexpected: {}\ngot:      a fault in `methods`: {fault}",
                expects[0].name()
            ));
        }
    };
    let mut exchange: Option<AuthExchange> = None;
    let mut challenge: Option<Bytes> = None;
    for (index, (sent, expect)) in sent.iter().zip(expects).enumerate() {
        let round = index as u32 + 1;
        let data = match sent {
            ClientData::Absent => None,
            ClientData::Bytes(data) => Some(data.clone()),
            ClientData::QuotingChallenge(text) => {
                let last = challenge.as_deref().unwrap_or_default();
                match std::str::from_utf8(last) {
                    Ok(last) => Some(text.replace(CHALLENGE, last).into_bytes()),
                    Err(_) => {
                        return Some(format!(
                            "step {round} of {count}: `data` quotes {CHALLENGE}, but the \
                             challenge is not text: {}",
                            bytes(last)
                        ));
                    }
                }
            }
        };
        let header = match &data {
            None => format!("step {round} of {count} (no data):"),
            Some(data) => format!("step {round} of {count} (data {}):", bytes(data)),
        };
        let got = if round == 1 && !methods.iter().any(|m| m == method) {
            Got::Ignore {
                methods: Some(methods.to_vec()),
            }
        } else if data
            .as_ref()
            .is_some_and(|d| d.len() > limits.auth_data_max_bytes)
        {
            // As the broker refuses it: the CONNECT's data in `enhanced_auth`, an AUTH's
            // in `client_answer`.
            Got::Answered(Next::Refused((
                ReasonCode::NOT_AUTHORIZED,
                format!(
                    "authentication data over {} bytes",
                    limits.auth_data_max_bytes
                ),
            )))
        } else {
            let state = exchange.as_ref().map(|e| e.state.as_slice());
            match plugin
                .auth_step(client, method, data.as_deref(), state)
                .await
            {
                Ok(answer) => as_the_broker_takes(answer, round, plugin.name(), &limits),
                Err(fault) => {
                    return Some(format!(
                        "{header}\nexpected: {}\ngot:      a fault: {fault}",
                        expect.name()
                    ));
                }
            }
        };
        if let Some(why) = step_diff(expect, &got) {
            return Some(format!("{header}\n{why}"));
        }
        match got {
            Got::Answered(Next::Challenge {
                data,
                exchange: next,
            }) => {
                challenge = Some(data);
                exchange = Some(next);
            }
            // A final answer, expected: checked to be the last step.
            _ => return None,
        }
    }
    // The case ends on a challenge: the client would answer it, the case does not.
    None
}

/// The plugin's answer to round `round` as the broker takes it: an `ignore` after the
/// first step is a failure, and a challenge, state or final data over the limits
/// refuses the client.
fn as_the_broker_takes(answer: PluginStep, round: u32, plugin: &str, limits: &Limits) -> Got {
    let step = match answer {
        PluginStep::Ignore if round == 1 => return Got::Ignore { methods: None },
        // The broker's `Hooks::enhanced_auth` refuses it as 0x8C.
        PluginStep::Ignore => {
            return Got::Answered(Next::Refused((
                ReasonCode::BAD_AUTHENTICATION_METHOD,
                "ignored a step of its own exchange".into(),
            )));
        }
        PluginStep::Failure(reason) => return Got::Failure { reason },
        PluginStep::Continue { data, state } => AuthStep::Continue {
            data: Bytes::from(data),
            exchange: AuthExchange {
                plugin: plugin.to_string(),
                state,
            },
        },
        PluginStep::Success { data, superuser } => AuthStep::Success {
            data: data.map(Bytes::from),
            superuser,
        },
    };
    Got::Answered(enhanced_auth::next(step, round, limits))
}

/// `None` when `got` is what `expect` says, else the diff: the answer, or the fields
/// that differ (`- expected`, `+ got`).
fn step_diff(expect: &StepExpect, got: &Got) -> Option<String> {
    let mut fields = Vec::new();
    let mut field = |name: &str, expected: String, got: String| {
        fields.push(format!(
            "  {name}\n    - expected {expected}\n    + got      {got}"
        ));
    };
    match (expect, got) {
        (StepExpect::Continue { data: expected }, Got::Answered(Next::Challenge { data, .. })) => {
            if let Some(expected) = expected
                && expected[..] != data[..]
            {
                field("data", bytes(expected), bytes(data));
            }
        }
        (
            StepExpect::Success {
                data: expected_data,
                superuser: expected_superuser,
            },
            Got::Answered(Next::Success { data, superuser }),
        ) => {
            if let Some(expected) = expected_data
                && data.as_deref() != Some(&expected[..])
            {
                let got = data.as_deref().map_or("no data".into(), bytes);
                field("data", bytes(expected), got);
            }
            if let Some(expected) = expected_superuser
                && expected != superuser
            {
                field("superuser", expected.to_string(), superuser.to_string());
            }
        }
        (
            StepExpect::Failure { reason: expected },
            Got::Failure { reason } | Got::Answered(Next::Refused((_, reason))),
        ) => {
            if let Some(expected) = expected
                && expected != reason
            {
                field("reason", format!("{expected:?}"), format!("{reason:?}"));
            }
        }
        (StepExpect::Ignore, Got::Ignore { .. }) => {}
        (expect, got) => {
            return Some(format!(
                "expected: {}\ngot:      {}",
                expect.name(),
                got.describe()
            ));
        }
    }
    if fields.is_empty() {
        return None;
    }
    let mut why = format!("{}, but", expect.name());
    for f in fields {
        let _ = write!(why, "\n{f}");
    }
    Some(why)
}

#[cfg(test)]
mod tests {
    use wasmq_plugin_host::PluginAuthStep as PluginStep;

    use super::{
        ClientData, Got, StepExpect, StepToml, as_the_broker_takes, check, from_hex, step_diff,
    };
    use crate::config::Limits;
    use crate::enhanced_auth::Next;

    fn steps(text: &str) -> anyhow::Result<(String, Vec<ClientData>, Vec<StepExpect>)> {
        #[derive(serde::Deserialize)]
        struct Case {
            method: Option<String>,
            steps: Option<Vec<StepToml>>,
        }
        let case: Case = toml::from_str(text)?;
        check(case.method, case.steps)
    }

    fn error(text: &str) -> String {
        format!("{:#}", steps(text).expect_err("a bad case"))
    }

    #[test]
    fn data_is_text_hex_or_base64_and_may_quote_the_challenge() {
        let (method, sent, expects) = steps(
            r#"
            method = "m"
            steps = [
              { expect = "continue", expect_data_hex = "00 ff" },
              { data_hex = "0aFF", expect = "continue", expect_data = "go on" },
              { data_base64 = "aGk=", expect = "continue" },
              { data = "{challenge}:s", expect = "success", superuser = true },
            ]
            "#,
        )
        .unwrap();
        assert_eq!(method, "m");
        assert_eq!(
            sent,
            [
                ClientData::Absent,
                ClientData::Bytes(vec![0x0a, 0xff]),
                ClientData::Bytes(b"hi".to_vec()),
                ClientData::QuotingChallenge("{challenge}:s".into()),
            ]
        );
        assert_eq!(
            expects[0],
            StepExpect::Continue {
                data: Some(vec![0, 0xff])
            }
        );
        assert_eq!(
            expects[3],
            StepExpect::Success {
                data: None,
                superuser: Some(true)
            }
        );
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zz"), None);
    }

    #[test]
    fn a_bad_exchange_is_named_by_its_step() {
        assert!(error("steps = [{ expect = \"ignore\" }]").contains("`method` is missing"));
        assert!(error("method = \"m\"\nsteps = []").contains("`steps` is missing"));
        let early =
            error("method = \"m\"\nsteps = [{ expect = \"failure\" }, { expect = \"success\" }]");
        assert!(
            early.contains(
                "step 1: expect = \"failure\" ends the exchange, and 1 more step follows"
            ),
            "{early}"
        );
        let quoted =
            error("method = \"m\"\nsteps = [{ data = \"{challenge}\", expect = \"continue\" }]");
        assert!(
            quoted.contains("step 1: `{challenge}` in `data`"),
            "{quoted}"
        );
        let late_ignore =
            error("method = \"m\"\nsteps = [{ expect = \"continue\" }, { expect = \"ignore\" }]");
        assert!(
            late_ignore.contains("step 2: only the first step can be ignored"),
            "{late_ignore}"
        );
        let two = error(
            "method = \"m\"\nsteps = [{ data = \"a\", data_hex = \"61\", expect = \"continue\" }]",
        );
        assert!(
            two.contains("give one of `data`, `data_hex` and `data_base64`"),
            "{two}"
        );
        let hex = error("method = \"m\"\nsteps = [{ data_hex = \"6\", expect = \"continue\" }]");
        assert!(hex.contains("`data_hex` is not hex digits"), "{hex}");
        let superuser =
            error("method = \"m\"\nsteps = [{ expect = \"failure\", superuser = true }]");
        assert!(
            superuser.contains("`superuser` goes with expect = \"success\""),
            "{superuser}"
        );
        let reason = error("method = \"m\"\nsteps = [{ expect = \"success\", reason = \"r\" }]");
        assert!(
            reason.contains("`reason` goes with expect = \"failure\""),
            "{reason}"
        );
        let data = error("method = \"m\"\nsteps = [{ expect = \"ignore\", expect_data = \"x\" }]");
        assert!(data.contains("`expect_data` goes with"), "{data}");
        let unknown = error("method = \"m\"\nsteps = [{ expect = \"continue\", dta = \"x\" }]");
        assert!(unknown.contains("unknown field `dta`"), "{unknown}");
    }

    fn challenge(data: &[u8], state: &[u8]) -> PluginStep {
        PluginStep::Continue {
            data: data.to_vec(),
            state: state.to_vec(),
        }
    }

    /// The broker's rules, not the plugin's answer alone: what the client would get.
    #[test]
    fn answers_go_through_the_brokers_limits() {
        let limits = Limits::default();
        let refused = |got: Got| match got {
            Got::Answered(Next::Refused((_, reason))) => reason,
            other => panic!("not refused by the broker: {}", other.describe()),
        };
        let ok = as_the_broker_takes(challenge(b"n", b"s"), 1, "p", &limits);
        assert!(
            matches!(&ok, Got::Answered(Next::Challenge { data, exchange }) if &data[..] == b"n" && exchange.state == b"s")
        );
        let big = vec![0; limits.auth_data_max_bytes + 1];
        let over = refused(as_the_broker_takes(challenge(b"n", &big), 1, "p", &limits));
        assert!(over.contains("over 4096 bytes"), "{over}");
        let rounds = refused(as_the_broker_takes(
            challenge(b"n", b"s"),
            limits.auth_rounds_max + 1,
            "p",
            &limits,
        ));
        assert!(rounds.contains("more than 8 rounds"), "{rounds}");
        assert!(matches!(
            as_the_broker_takes(PluginStep::Ignore, 1, "p", &limits),
            Got::Ignore { methods: None }
        ));
        let late = refused(as_the_broker_takes(PluginStep::Ignore, 2, "p", &limits));
        assert_eq!(late, "ignored a step of its own exchange");
    }

    #[test]
    fn diffs_name_the_answer_or_the_fields_that_differ() {
        let success = Got::Answered(Next::Success {
            data: None,
            superuser: false,
        });
        assert_eq!(
            step_diff(
                &StepExpect::Success {
                    data: Some(b"v=1".to_vec()),
                    superuser: Some(true)
                },
                &success
            )
            .unwrap(),
            "success, but\n  data\n    - expected \"v=1\"\n    + got      no data\n  \
             superuser\n    - expected true\n    + got      false"
        );
        assert_eq!(
            step_diff(
                &StepExpect::Success {
                    data: None,
                    superuser: Some(false)
                },
                &success
            ),
            None
        );
        let refused = Got::Failure {
            reason: "wrong secret".into(),
        };
        assert_eq!(
            step_diff(
                &StepExpect::Success {
                    data: None,
                    superuser: None
                },
                &refused
            )
            .unwrap(),
            "expected: success\ngot:      failure (\"wrong secret\")"
        );
        assert_eq!(
            step_diff(
                &StepExpect::Failure {
                    reason: Some("no user".into())
                },
                &refused
            )
            .unwrap(),
            "failure, but\n  reason\n    - expected \"no user\"\n    + got      \"wrong secret\""
        );
        let unlisted = Got::Ignore {
            methods: Some(vec!["m".into()]),
        };
        assert!(
            step_diff(&StepExpect::Continue { data: None }, &unlisted)
                .unwrap()
                .ends_with("got:      ignore: `methods` lists [\"m\"] (the broker answers CONNACK 0x8C Bad authentication method)")
        );
        assert_eq!(step_diff(&StepExpect::Ignore, &unlisted), None);
    }
}
