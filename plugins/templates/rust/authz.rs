//! `{{name}}`: a Wasmq authorization plugin (the `authz` hook, asked on PUBLISH and
//! SUBSCRIBE).
//!
//! The rule it starts with, to replace with yours: nobody publishes under `readonly/#`
//! except clients whose id starts with `admin-`. Every other question is answered
//! `Ignore`, so the next plugin, or the broker's `acl_nomatch`, decides.

use wasmq_plugin_sdk::{Action, AuthzResult, Client, Decision, Plugin, export_plugin, log};

struct Policy;

/// `readonly/#` matches `readonly` itself and everything below it.
fn is_readonly(topic: &str) -> bool {
    topic == "readonly" || topic.starts_with("readonly/")
}

impl Plugin for Policy {
    fn authorize(
        client: Client,
        action: Action,
        topic: String,
        _qos: u8,
        _retain: bool,
    ) -> AuthzResult {
        // A bare decision is kept for the operator's TTL (`[authz_cache]`);
        // `AuthzResult::deny().cached(CacheLifetime::Connection)` and the like say otherwise.
        if action == Action::Publish && is_readonly(&topic) {
            if client.client_id.starts_with("admin-") {
                return Decision::Allow.into();
            }
            log::info(&format!("{} may not publish to {topic}", client.client_id));
            return Decision::Deny.into();
        }
        Decision::Ignore.into()
    }
}

export_plugin!(Policy: authz);
