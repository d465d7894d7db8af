//! MQTT 5 re-authentication: an AUTH from the client after CONNACK, driven by the same
//! `enhanced_auth` exchange as at CONNECT.
//!
//! The client goes on publishing and subscribing while it runs (§4.12.1): the exchange is
//! a state of the connection ([`Reauth`]), not a loop of its own. Its deadline
//! (`reauth_timeout_ms` from the AUTH 0x19) is watched by the serve loop's timer, which
//! closes the connection with DISCONNECT 0x87 [MQTT-4.12.1-2] when the client never
//! answers a challenge.

use tokio::time::Instant;
use tracing::debug;
use wasmq_codec::{Auth, ReasonCode};

use crate::enhanced_auth;
use crate::hooks::AuthExchange;
use crate::metrics::Metrics;

use super::{Close, Connection};

/// A re-authentication waiting for the client's answer to a challenge. Boxed in the
/// connection: most connections never re-authenticate, and an idle one should not
/// carry the room for it.
pub(super) struct Reauth {
    /// Where the plugin's exchange stands.
    pub exchange: AuthExchange,
    /// The challenges sent so far.
    pub round: u32,
    /// When the exchange must have ended: `reauth_timeout_ms` after its AUTH 0x19.
    pub deadline: Instant,
}

impl Connection {
    /// The re-authentication's deadline passed with the client's answer still due.
    pub(super) fn reauth_timed_out(&mut self) -> Close {
        self.reauth = None;
        Metrics::add(&self.broker.metrics.enhanced_auth_reauth.timed_out, 1);
        Close::protocol(
            ReasonCode::NOT_AUTHORIZED,
            format!(
                "re-authentication not finished within reauth_timeout_ms ({} ms)",
                self.broker.config.limits.reauth_timeout_ms
            ),
        )
    }
}

impl Connection {
    /// An AUTH from the client after CONNACK: the start (0x19) or a step (0x18) of a
    /// re-authentication with the CONNECT's method [MQTT-4.12.1-1]. Success answers
    /// AUTH 0x00; a refusal closes the connection with DISCONNECT 0x87.
    pub(super) async fn on_auth(&mut self, auth: Auth) -> Result<(), Close> {
        let Some(method) = self.auth_method.clone() else {
            return Err(Close::protocol(
                ReasonCode::PROTOCOL_ERROR,
                "[MQTT-4.12.0-7] AUTH without an authentication method in CONNECT",
            ));
        };
        let Some(hooks) = self.broker.hooks.clone() else {
            return Err(Close::protocol(
                ReasonCode::NOT_AUTHORIZED,
                "re-authentication with no plugins",
            ));
        };
        let limits = &self.broker.config.limits;
        let counted = &self.broker.metrics.enhanced_auth_reauth;
        let (expected, exchange, round, deadline) = match self.reauth.take() {
            None => (
                ReasonCode::REAUTHENTICATE,
                None,
                1,
                Instant::now() + limits.reauth_timeout(),
            ),
            Some(reauth) => (
                ReasonCode::CONTINUE_AUTHENTICATION,
                Some(reauth.exchange),
                reauth.round + 1,
                reauth.deadline,
            ),
        };
        let data = match enhanced_auth::client_answer(auth, &method, expected, limits) {
            Ok(data) => data,
            Err((code, why)) => {
                // A broken step of an exchange under way fails it; a broken start
                // (another method, a 0x18 with none under way) began none.
                if exchange.is_some() {
                    Metrics::add(&counted.refused, 1);
                }
                return Err(Close::protocol(code, why));
            }
        };
        if exchange.is_none() {
            Metrics::add(&counted.started, 1);
        }
        let step = hooks
            .enhanced_auth(&self.client, &method, data.as_ref(), exchange)
            .await;
        match enhanced_auth::next(step, round, limits) {
            enhanced_auth::Next::Challenge { data, exchange } => {
                self.reauth = Some(Box::new(Reauth {
                    exchange,
                    round,
                    deadline,
                }));
                self.send(enhanced_auth::auth_packet(
                    ReasonCode::CONTINUE_AUTHENTICATION,
                    &method,
                    Some(data),
                ));
                Ok(())
            }
            enhanced_auth::Next::Success { data, superuser } => {
                debug!("re-authenticated");
                Metrics::add(&counted.succeeded, 1);
                self.gate.set_superuser(superuser);
                self.send(enhanced_auth::auth_packet(
                    ReasonCode::SUCCESS,
                    &method,
                    data,
                ));
                Ok(())
            }
            // 0x8C (the method's plugin is gone) too: the client is no longer authenticated.
            enhanced_auth::Next::Refused((_, why)) => {
                Metrics::add(&counted.refused, 1);
                Err(Close::protocol(
                    ReasonCode::NOT_AUTHORIZED,
                    format!("re-authentication refused: {why}"),
                ))
            }
        }
    }
}
