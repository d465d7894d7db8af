//! MQTT 5 enhanced authentication (§4.12): the AUTH exchange after a CONNECT that names
//! an Authentication Method, and the checks both it and a re-authentication (AUTH 0x19
//! on a live connection, driven by `connection`) make of every step.
//!
//! The plugin that knows the method answers each step ([`Hooks::enhanced_auth`]); the
//! state it keeps between two steps travels in the [`AuthExchange`] the connection holds,
//! and nothing is kept once the exchange ends. Every exchange is bounded: rounds
//! (`auth_rounds_max`), Authentication Data and plugin state (`auth_data_max_bytes`), and
//! time: at CONNECT the whole exchange must end by the connection's CONNACK deadline
//! (`connect_timeout_ms`, counted from the connection's arrival), and a re-authentication
//! within `reauth_timeout_ms` of its AUTH 0x19 (the serve loop's timer, `connection`).
//! A plugin call is bounded by the plugin's own time limit, not by these: it is not cut
//! short mid-call.
//!
//! A client that stops answering a challenge at CONNECT gets CONNACK 0x87 at the
//! deadline, then the connection is closed: the server "can reject the authentication at
//! any point", with a CONNACK of 0x80 or above [MQTT-4.12.0-4], and 0x87 tells the client
//! it was not authenticated (0x88 Server unavailable would invite it to retry as if the
//! broker were at fault). One that stops during a re-authentication gets DISCONNECT 0x87,
//! as a refused one does [MQTT-4.12.1-2].

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use wasmq_codec::{Auth, AuthProperties, Packet, Protocol, ReasonCode};

use crate::config::Limits;
use crate::hooks::{AuthExchange, AuthStep, ClientInfo, Hooks};
use crate::transport::{Reader, Writer};

/// A refusal: the reason code for the client and why, for the log.
pub(crate) type Refusal = (ReasonCode, String);

/// How an exchange at CONNECT ended, when the connection is still there to answer.
#[derive(Debug)]
pub(crate) enum Ended {
    /// Authenticated: CONNACK success with the Authentication Method and this data.
    Success {
        data: Option<Bytes>,
        superuser: bool,
    },
    /// CONNACK with this reason code.
    Refused(Refusal),
    /// The deadline passed before the client answered (or read) a challenge: CONNACK
    /// 0x87 [MQTT-4.12.0-4], counted apart from refusals.
    TimedOut(String),
}

/// What a step's answer means for the exchange, after the limits are checked.
pub(crate) enum Next {
    /// Send AUTH 0x18 with `data`; the client's answer goes on with `exchange`.
    Challenge { data: Bytes, exchange: AuthExchange },
    /// Done, successfully.
    Success {
        data: Option<Bytes>,
        superuser: bool,
    },
    /// Done, refused.
    Refused(Refusal),
}

/// Checks `step`, the answer to round `round` (1 for the first), against the limits.
pub(crate) fn next(step: AuthStep, round: u32, limits: &Limits) -> Next {
    let max = limits.auth_data_max_bytes;
    match step {
        AuthStep::Continue { data, exchange } => {
            if round > limits.auth_rounds_max {
                Next::Refused((
                    ReasonCode::NOT_AUTHORIZED,
                    format!(
                        "enhanced authentication needs more than {} rounds",
                        limits.auth_rounds_max
                    ),
                ))
            } else if data.len() > max || exchange.state.len() > max {
                Next::Refused((
                    ReasonCode::NOT_AUTHORIZED,
                    format!("the plugin's challenge or state is over {max} bytes"),
                ))
            } else {
                Next::Challenge { data, exchange }
            }
        }
        AuthStep::Success { data, superuser } => match data {
            Some(data) if data.len() > max => Next::Refused((
                ReasonCode::NOT_AUTHORIZED,
                format!("the plugin's final data is over {max} bytes"),
            )),
            data => Next::Success { data, superuser },
        },
        AuthStep::Refuse(code) => Next::Refused((code, "enhanced authentication refused".into())),
    }
}

/// The Authentication Data of a client's AUTH, checked against the exchange: the
/// method must be the CONNECT's [MQTT-4.12.0-5] and the data within the limit.
pub(crate) fn client_answer(
    auth: Auth,
    method: &str,
    expected: ReasonCode,
    limits: &Limits,
) -> Result<Option<Bytes>, Refusal> {
    if auth.reason_code != expected {
        return Err((
            ReasonCode::PROTOCOL_ERROR,
            format!(
                "AUTH with reason code 0x{:02X} where 0x{:02X} was due",
                auth.reason_code.0, expected.0
            ),
        ));
    }
    if auth.properties.authentication_method.as_deref() != Some(method) {
        return Err((
            ReasonCode::PROTOCOL_ERROR,
            "[MQTT-4.12.0-5] AUTH with another authentication method than CONNECT's".into(),
        ));
    }
    match auth.properties.authentication_data {
        Some(data) if data.len() > limits.auth_data_max_bytes => Err((
            ReasonCode::NOT_AUTHORIZED,
            format!(
                "authentication data over {} bytes",
                limits.auth_data_max_bytes
            ),
        )),
        // A copy: a slice would keep the whole read buffer alive.
        data => Ok(data.map(|d| Bytes::copy_from_slice(&d))),
    }
}

/// An AUTH to the client: `code` (0x18 or 0x00) with the method and `data`.
pub(crate) fn auth_packet(code: ReasonCode, method: &ByteString, data: Option<Bytes>) -> Packet {
    Packet::Auth(Auth {
        reason_code: code,
        properties: AuthProperties {
            authentication_method: Some(method.clone()),
            authentication_data: data,
            ..Default::default()
        },
    })
}

/// A connection before its CONNACK: what the CONNECT handshake reads and writes with.
pub(crate) struct Handshake<'a> {
    pub reader: &'a mut Reader,
    pub writer: &'a mut Writer,
    /// What was read after the CONNECT (and, here, the AUTH packets): the rest is the
    /// connection's once it is accepted.
    pub rbuf: &'a mut BytesMut,
    /// When CONNACK must have gone (`connect_timeout_ms` after the connection came).
    pub deadline: tokio::time::Instant,
}

/// Runs the exchange of a CONNECT with Authentication Method `method` and data `data`,
/// reading the client's AUTH packets until the handshake's deadline. `Err` when the
/// connection is to be closed without CONNACK (the socket failed or the client sent
/// something undecodable).
pub(crate) async fn at_connect(
    hooks: &dyn Hooks,
    limits: &Limits,
    client: &ClientInfo,
    method: &ByteString,
    data: Option<Bytes>,
    hs: &mut Handshake<'_>,
) -> anyhow::Result<Ended> {
    let deadline = hs.deadline;
    if data
        .as_ref()
        .is_some_and(|d| d.len() > limits.auth_data_max_bytes)
    {
        return Ok(Ended::Refused((
            ReasonCode::NOT_AUTHORIZED,
            format!(
                "authentication data over {} bytes",
                limits.auth_data_max_bytes
            ),
        )));
    }
    let mut step = hooks
        .enhanced_auth(client, method, data.as_ref(), None)
        .await;
    let mut round = 1;
    loop {
        let (challenge, exchange) = match next(step, round, limits) {
            Next::Success { data, superuser } => return Ok(Ended::Success { data, superuser }),
            Next::Refused(refusal) => return Ok(Ended::Refused(refusal)),
            Next::Challenge { data, exchange } => (data, exchange),
        };
        let mut out = BytesMut::new();
        auth_packet(ReasonCode::CONTINUE_AUTHENTICATION, method, Some(challenge))
            .encode(Protocol::V5, &mut out);
        match tokio::time::timeout_at(deadline, hs.writer.write_all(&out)).await {
            Ok(written) => written?,
            Err(_) => {
                return Ok(Ended::TimedOut(format!(
                    "the client did not read its challenge within connect_timeout_ms ({} ms)",
                    limits.connect_timeout_ms
                )));
            }
        }
        let auth = loop {
            match Packet::decode(hs.rbuf, Protocol::V5, limits.max_packet_size) {
                Ok(Some(Packet::Auth(auth))) => break auth,
                Ok(Some(other)) => {
                    return Ok(Ended::Refused((
                        ReasonCode::PROTOCOL_ERROR,
                        format!(
                            "[MQTT-4.12.0-3] {} during enhanced authentication",
                            other.kind()
                        ),
                    )));
                }
                Ok(None) => {}
                Err(error) => anyhow::bail!(error),
            }
            match tokio::time::timeout_at(deadline, hs.reader.read_buf(hs.rbuf)).await {
                Err(_) => {
                    return Ok(Ended::TimedOut(format!(
                        "enhanced authentication not finished within connect_timeout_ms ({} ms)",
                        limits.connect_timeout_ms
                    )));
                }
                Ok(Ok(0)) => anyhow::bail!("closed during enhanced authentication"),
                Ok(Ok(_)) => {}
                Ok(Err(error)) => return Err(error.into()),
            }
        };
        let data = match client_answer(auth, method, ReasonCode::CONTINUE_AUTHENTICATION, limits) {
            Ok(data) => data,
            Err(refusal) => return Ok(Ended::Refused(refusal)),
        };
        round += 1;
        step = hooks
            .enhanced_auth(client, method, data.as_ref(), Some(exchange))
            .await;
    }
}
