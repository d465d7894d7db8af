//! Enhanced authentication example: SCRAM-SHA-256 (RFC 5802, RFC 7677) over MQTT 5
//! AUTH packets, with the credentials in `mqtt_scram_user` (read through the `sql`
//! capability). Two steps: the client's first message gets the server's first (nonce,
//! salt, iterations); the client's final message (the proof) gets the server's
//! signature or a refusal. Between the two, everything the second step needs travels in
//! the exchange state the broker keeps, so no instance remembers anything.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use wasmq_plugin_sdk::sql::{self, SqlValue};
use wasmq_plugin_sdk::{AuthChallenge, AuthStep, AuthSuccess, Client, Plugin, export_plugin, log};

/// The one method this plugin implements.
const METHOD: &str = "SCRAM-SHA-256";
/// The statement of `scram-sha256.toml` that reads a user's credentials.
const QUERY: &str = "scram_query";
/// Bytes of randomness in the server's nonce.
const NONCE_BYTES: usize = 18;
/// Iterations of the made-up credentials of an unknown user (what `wasmq user add
/// --scram` uses by default), so that it looks like any other.
const UNKNOWN_ITERATIONS: i64 = 4096;

struct Scram;

/// A user's stored credentials (RFC 5802 §3), or made-up ones for an unknown user.
struct Credentials {
    salt: Vec<u8>,
    iterations: i64,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
    superuser: bool,
    /// No such user: the proof is refused whatever it is.
    unknown: bool,
}

/// What the final step needs, carried by the broker between the two steps.
struct State {
    client_first_bare: String,
    server_first: String,
    credentials: Credentials,
}

impl Plugin for Scram {
    fn auth_methods() -> Vec<String> {
        vec![METHOD.into()]
    }

    fn auth_start(client: Client, method: String, data: Option<Vec<u8>>) -> AuthStep {
        if method != METHOD {
            return AuthStep::Ignore;
        }
        let Some(data) = data else {
            return AuthStep::Failure("no client-first-message".into());
        };
        match first(&data, client.username.as_deref()) {
            Ok(step) => step,
            Err(why) => AuthStep::Failure(why),
        }
    }

    fn auth_continue(
        _client: Client,
        _method: String,
        data: Option<Vec<u8>>,
        state: Vec<u8>,
    ) -> AuthStep {
        let Some(state) = State::decode(&state) else {
            return AuthStep::Failure("unreadable exchange state".into());
        };
        let Some(data) = data else {
            return AuthStep::Failure("no client-final-message".into());
        };
        match last(&data, &state) {
            Ok(step) => step,
            Err(why) => AuthStep::Failure(why),
        }
    }
}

/// The client-first-message (`gs2-header client-first-message-bare`) answered with
/// the server-first-message. `connect_username` is the CONNECT's User Name: the
/// authorization plugins key on it, so when there is one it must be the SCRAM user (or
/// a client could prove it is bob and be authorized as alice).
fn first(data: &[u8], connect_username: Option<&str>) -> Result<AuthStep, String> {
    let message = std::str::from_utf8(data).map_err(|_| "client-first-message is not UTF-8")?;
    // gs2-header: no channel binding ("n") or not used though supported ("y"); no authzid.
    let bare = message
        .strip_prefix("n,,")
        .or_else(|| message.strip_prefix("y,,"))
        .ok_or("channel binding and authzid are not supported")?;
    let mut username = None;
    let mut client_nonce = None;
    for attribute in bare.split(',') {
        match attribute.split_once('=') {
            Some(("n", v)) => username = Some(sasl_name(v)?),
            Some(("r", v)) if !v.is_empty() => client_nonce = Some(v),
            Some(("m", _)) => return Err("mandatory extensions are not supported".into()),
            _ => {}
        }
    }
    let username = username.ok_or("no user name")?;
    if connect_username.is_some_and(|u| u != username) {
        return Err(format!(
            "SCRAM user {username:?} is not the CONNECT's User Name {connect_username:?}"
        ));
    }
    let client_nonce = client_nonce.ok_or("no client nonce")?;
    let credentials = lookup(&username)?;
    let mut random = [0u8; NONCE_BYTES];
    getrandom::fill(&mut random).map_err(|e| format!("no randomness: {e}"))?;
    let server_first = format!(
        "r={client_nonce}{},s={},i={}",
        B64.encode(random),
        B64.encode(&credentials.salt),
        credentials.iterations
    );
    let state = State {
        client_first_bare: bare.to_string(),
        server_first: server_first.clone(),
        credentials,
    };
    Ok(AuthStep::Continue(AuthChallenge {
        data: server_first.into_bytes(),
        state: state.encode(),
    }))
}

/// The client-final-message checked: the proof against StoredKey; success carries the
/// server-final-message (`v=ServerSignature`).
fn last(data: &[u8], state: &State) -> Result<AuthStep, String> {
    let message = std::str::from_utf8(data).map_err(|_| "client-final-message is not UTF-8")?;
    let (without_proof, proof) = message
        .rsplit_once(",p=")
        .ok_or("client-final-message has no proof")?;
    let mut binding = None;
    let mut nonce = None;
    for attribute in without_proof.split(',') {
        match attribute.split_once('=') {
            Some(("c", v)) => binding = Some(v),
            Some(("r", v)) => nonce = Some(v),
            _ => {}
        }
    }
    // base64("n,,") and base64("y,,"): the gs2-header of the first message, sent back.
    if !matches!(binding, Some("biws" | "eSws")) {
        return Err("unexpected channel binding".into());
    }
    let expected_nonce = state
        .server_first
        .strip_prefix("r=")
        .and_then(|rest| rest.split(',').next());
    if nonce.is_none() || nonce != expected_nonce {
        return Err("nonce mismatch".into());
    }
    let proof = B64.decode(proof).map_err(|_| "proof is not base64")?;
    let creds = &state.credentials;
    let auth_message = format!(
        "{},{},{without_proof}",
        state.client_first_bare, state.server_first
    );
    let client_signature = hmac(&creds.stored_key, auth_message.as_bytes());
    if proof.len() != client_signature.len() {
        return Err("proof has the wrong length".into());
    }
    let client_key: Vec<u8> = proof
        .iter()
        .zip(&client_signature)
        .map(|(p, s)| p ^ s)
        .collect();
    let stored_key = Sha256::digest(&client_key);
    let matches: bool = stored_key.as_slice().ct_eq(&creds.stored_key).into();
    if !matches || creds.unknown {
        return Err("wrong password or unknown user".into());
    }
    let server_signature = hmac(&creds.server_key, auth_message.as_bytes());
    Ok(AuthStep::Success(AuthSuccess {
        data: Some(format!("v={}", B64.encode(server_signature)).into_bytes()),
        superuser: creds.superuser,
    }))
}

/// The user's credentials from the database, or made-up ones when there is no such
/// user (refused at the proof). A failed query refuses at once.
fn lookup(username: &str) -> Result<Credentials, String> {
    let rows = sql::query(QUERY, &[SqlValue::Text(username.to_string())])
        .map_err(|e| format!("{QUERY} failed: {e:?}"))?;
    let Some(row) = rows.into_iter().next() else {
        log::debug(&format!("SCRAM: no user {username}"));
        // Deterministic, so asking twice does not tell an unknown user apart either.
        let salt = Sha256::digest(format!("wasmq-scram-unknown:{username}"))[..16].to_vec();
        return Ok(Credentials {
            salt,
            iterations: UNKNOWN_ITERATIONS,
            stored_key: vec![0; 32],
            server_key: vec![0; 32],
            superuser: false,
            unknown: true,
        });
    };
    let text = |i: usize| match row.columns.get(i) {
        Some(SqlValue::Text(s)) => B64.decode(s.trim()).ok(),
        Some(SqlValue::Blob(b)) => Some(b.clone()),
        _ => None,
    };
    let integer = |i: usize| match row.columns.get(i) {
        Some(SqlValue::Integer(n)) => Some(*n),
        Some(SqlValue::Text(s)) => s.trim().parse().ok(),
        _ => None,
    };
    let bad = |what: &str| format!("mqtt_scram_user row of {username}: bad {what}");
    Ok(Credentials {
        salt: text(0).ok_or_else(|| bad("salt"))?,
        iterations: integer(1)
            .filter(|i| *i > 0)
            .ok_or_else(|| bad("iterations"))?,
        stored_key: text(2)
            .filter(|k| k.len() == 32)
            .ok_or_else(|| bad("stored_key"))?,
        server_key: text(3)
            .filter(|k| k.len() == 32)
            .ok_or_else(|| bad("server_key"))?,
        superuser: integer(4).unwrap_or(0) != 0,
        unknown: false,
    })
}

/// A `saslname` decoded: `=2C` is `,` and `=3D` is `=` (RFC 5802 §5.1).
fn sasl_name(v: &str) -> Result<String, String> {
    let mut out = String::with_capacity(v.len());
    let mut rest = v;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err("bad escape in the user name".into()),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

impl State {
    /// Length-prefixed fields (u32 big-endian lengths) and two flag bytes.
    fn encode(&self) -> Vec<u8> {
        let c = &self.credentials;
        let mut out = Vec::new();
        for field in [
            self.client_first_bare.as_bytes(),
            self.server_first.as_bytes(),
            &c.stored_key,
            &c.server_key,
        ] {
            out.extend_from_slice(&(field.len() as u32).to_be_bytes());
            out.extend_from_slice(field);
        }
        out.push(u8::from(c.superuser));
        out.push(u8::from(c.unknown));
        out
    }

    fn decode(mut bytes: &[u8]) -> Option<State> {
        let mut field = || -> Option<Vec<u8>> {
            let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
            let value = bytes.get(4..4 + len)?.to_vec();
            bytes = &bytes[4 + len..];
            Some(value)
        };
        let client_first_bare = String::from_utf8(field()?).ok()?;
        let server_first = String::from_utf8(field()?).ok()?;
        let stored_key = field()?;
        let server_key = field()?;
        let [superuser, unknown] = bytes else {
            return None;
        };
        Some(State {
            client_first_bare,
            server_first,
            credentials: Credentials {
                salt: Vec::new(),
                iterations: 0,
                stored_key,
                server_key,
                superuser: *superuser != 0,
                unknown: *unknown != 0,
            },
        })
    }
}

export_plugin!(Scram: auth);
