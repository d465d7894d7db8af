//! The host's own types of the hook calls, independent of the generated
//! bindings: a chain's raw answers (before the broker's fallbacks decide what
//! `Ignore` means) and what a plugin exports and imports. What a hook is asked
//! and what a transform answers are the policy seam's types (`wasmq_policy`),
//! shared with the broker.

use std::fmt;

use wasmq_policy::Decision;

/// The answer of an authentication hook or chain (WIT `types.auth-result`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthOutcome {
    /// Allow, deny, or ignore (no plugin decided: `allow_anonymous` decides).
    pub decision: Decision,
    /// Whether the client is a superuser (skips authorization). Only set with `Allow`.
    pub superuser: bool,
    /// Why the client was denied, for the log.
    pub reason: Option<String>,
}

impl AuthOutcome {
    /// No plugin decided.
    pub fn ignore() -> Self {
        Self {
            decision: Decision::Ignore,
            superuser: false,
            reason: None,
        }
    }

    /// Denied, with a reason for the log.
    pub fn deny(reason: impl Into<String>) -> Self {
        Self {
            decision: Decision::Deny,
            superuser: false,
            reason: Some(reason.into()),
        }
    }
}

/// One step of an enhanced authentication exchange, as a plugin answered it (the
/// `auth` hook's `auth-step`).
#[derive(Clone, PartialEq, Eq)]
pub enum PluginAuthStep {
    /// Send the client `data` in an AUTH 0x18 and hand `state` to the next step.
    Continue {
        /// The challenge.
        data: Vec<u8>,
        /// Opaque to the host, kept by the caller until the client answers.
        state: Vec<u8>,
    },
    /// Authenticated, with the final data for the client, if any.
    Success {
        /// The Authentication Data of the CONNACK (or AUTH 0x00).
        data: Option<Vec<u8>>,
        /// Whether authorization is skipped for the client.
        superuser: bool,
    },
    /// Refused; the string is for the log.
    Failure(String),
    /// Not this plugin's method.
    Ignore,
}

/// Lengths only: the data and state of an exchange are secrets (nonces, keys).
impl fmt::Debug for PluginAuthStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginAuthStep::Continue { data, state } => write!(
                f,
                "Continue {{ data: {} bytes, state: {} bytes }}",
                data.len(),
                state.len()
            ),
            PluginAuthStep::Success { data, superuser } => write!(
                f,
                "Success {{ data: {:?} bytes, superuser: {superuser} }}",
                data.as_ref().map(Vec::len)
            ),
            PluginAuthStep::Failure(reason) => write!(f, "Failure({reason:?})"),
            PluginAuthStep::Ignore => f.write_str("Ignore"),
        }
    }
}

/// The hook interfaces a plugin exports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HookSet {
    /// Exports `wasmq:plugin/authn`.
    pub authn: bool,
    /// Exports `wasmq:plugin/authz`.
    pub authz: bool,
    /// Exports `wasmq:plugin/deliver` (since contract 0.2.0): read access on each
    /// delivery through a wildcard subscription.
    pub deliver: bool,
    /// Exports `wasmq:plugin/transform`.
    pub transform: bool,
    /// Exports `wasmq:plugin/auth` (since contract 0.2.0): MQTT 5 enhanced
    /// authentication (AUTH packets).
    pub auth: bool,
}

impl HookSet {
    /// Every hook.
    pub const ALL: HookSet = HookSet {
        authn: true,
        authz: true,
        deliver: true,
        transform: true,
        auth: true,
    };

    /// The hooks in both sets.
    pub fn intersect(self, other: HookSet) -> HookSet {
        HookSet {
            authn: self.authn && other.authn,
            authz: self.authz && other.authz,
            deliver: self.deliver && other.deliver,
            transform: self.transform && other.transform,
            auth: self.auth && other.auth,
        }
    }

    /// Whether no hook is set.
    pub fn is_empty(self) -> bool {
        !(self.authn || self.authz || self.deliver || self.transform || self.auth)
    }
}

impl fmt::Display for HookSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = [
            (self.authn, "authn"),
            (self.authz, "authz"),
            (self.deliver, "deliver"),
            (self.transform, "transform"),
            (self.auth, "auth"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join(", "))
        }
    }
}

/// The host capabilities a plugin imports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Imports `wasmq:plugin/log`.
    pub log: bool,
    /// Imports `wasmq:plugin/config`.
    pub config: bool,
    /// Imports `wasmq:plugin/sql`.
    pub sql: bool,
}

impl fmt::Display for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = [
            (self.log, "log"),
            (self.config, "config"),
            (self.sql, "sql"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join(", "))
        }
    }
}
