//! MQTT 5 re-authentication: an AUTH from the client after CONNACK, driven by the same
//! `enhanced_auth` exchange as at CONNECT.

use tracing::debug;
use wasmq_codec::{Auth, ReasonCode};

use crate::enhanced_auth;

use super::{Close, Connection};

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
        let (expected, exchange, round) = match self.reauth.take() {
            None => (ReasonCode::REAUTHENTICATE, None, 1),
            Some((exchange, round)) => (
                ReasonCode::CONTINUE_AUTHENTICATION,
                Some(exchange),
                round + 1,
            ),
        };
        let data = enhanced_auth::client_answer(auth, &method, expected, limits)
            .map_err(|(code, why)| Close::protocol(code, why))?;
        let step = hooks
            .enhanced_auth(&self.client, &method, data.as_ref(), exchange)
            .await;
        match enhanced_auth::next(step, round, limits) {
            enhanced_auth::Next::Challenge { data, exchange } => {
                self.reauth = Some((exchange, round));
                self.send(enhanced_auth::auth_packet(
                    ReasonCode::CONTINUE_AUTHENTICATION,
                    &method,
                    Some(data),
                ));
                Ok(())
            }
            enhanced_auth::Next::Success { data, superuser } => {
                debug!("re-authenticated");
                self.gate.set_superuser(superuser);
                self.send(enhanced_auth::auth_packet(
                    ReasonCode::SUCCESS,
                    &method,
                    data,
                ));
                Ok(())
            }
            // 0x8C (the method's plugin is gone) too: the client is no longer authenticated.
            enhanced_auth::Next::Refused((_, why)) => Err(Close::protocol(
                ReasonCode::NOT_AUTHORIZED,
                format!("re-authentication refused: {why}"),
            )),
        }
    }
}
