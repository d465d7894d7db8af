//! `{{name}}`: a Wasmq enhanced authentication plugin (the `auth` hook: MQTT 5 AUTH
//! packets, asked at each step of the exchange after a CONNECT that names its method).
//!
//! The method it starts with, `demo-challenge`, to replace with yours: the broker sends
//! the client a fresh random nonce (AUTH 0x18); the client answers `NONCE:SECRET`,
//! where SECRET is the setting `secret_USER` for its CONNECT's User Name. The nonce
//! travels to the second step in the exchange's state (instances remember nothing
//! between calls), so an answer to another exchange's challenge is refused. Other
//! methods are left to the next plugin.
//!
//! The secret is sent as it is, as a CONNECT password would be (use TLS): a real method
//! answers a keyed hash of the nonce instead (HMAC, SCRAM: see the Wasmq repository's
//! `plugins/examples/rust/scram-sha256`). The template uses no hash because it is the
//! same in Python and JavaScript, and JavaScript's runtime offers none that a hook,
//! which answers at once, can wait for.

use wasmq_plugin_sdk::{AuthChallenge, AuthStep, AuthSuccess, Client, Plugin, config, export_plugin};

/// The Authentication Method this plugin answers for.
const METHOD: &str = "demo-challenge";

struct Challenge;

impl Plugin for Challenge {
    fn auth_methods() -> Vec<String> {
        vec![METHOD.into()]
    }

    fn auth_start(client: Client, method: String, _data: Option<Vec<u8>>) -> AuthStep {
        if method != METHOD {
            return AuthStep::Ignore;
        }
        // Authorization keys on the User Name: it is the identity this exchange proves.
        if client.username.is_none() {
            return AuthStep::Failure("no user name".into());
        }
        let mut random = [0u8; 16];
        if let Err(e) = getrandom::fill(&mut random) {
            return AuthStep::Failure(format!("no randomness: {e}"));
        }
        let nonce: String = random.iter().map(|b| format!("{b:02x}")).collect();
        AuthStep::Continue(AuthChallenge {
            data: nonce.clone().into_bytes(),
            state: nonce.into_bytes(),
        })
    }

    fn auth_continue(
        client: Client,
        _method: String,
        data: Option<Vec<u8>>,
        state: Vec<u8>,
    ) -> AuthStep {
        let username = client.username.unwrap_or_default();
        // Bytes that are not UTF-8 are replaced, as Python's and JavaScript's decoders do.
        let answer = String::from_utf8_lossy(data.as_deref().unwrap_or_default()).into_owned();
        let Some((nonce, secret)) = answer.split_once(':') else {
            return AuthStep::Failure("the answer is not NONCE:SECRET".into());
        };
        if nonce.as_bytes() != state.as_slice() {
            return AuthStep::Failure("the answer is to another challenge".into());
        }
        match config::get(&format!("secret_{username}")) {
            Some(expected) if expected == secret => AuthStep::Success(AuthSuccess {
                data: None,
                superuser: false,
            }),
            Some(_) => AuthStep::Failure(format!("wrong secret for {username}")),
            None => AuthStep::Failure(format!("no secret_{username} setting")),
        }
    }
}

export_plugin!(Challenge: auth);
