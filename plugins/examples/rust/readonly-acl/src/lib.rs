//! Authorization example: nobody publishes under `readonly/#` except clients
//! whose id starts with `admin-`. Every other question is left to the next
//! plugin (`Ignore`).

use wasmq_plugin_sdk::{
    Action, AuthzResult, CacheLifetime, Client, Decision, Plugin, export_plugin, log,
};

struct ReadOnly;

/// `readonly/#` matches `readonly` itself and everything below it.
fn is_readonly(topic: &str) -> bool {
    topic == "readonly" || topic.starts_with("readonly/")
}

impl Plugin for ReadOnly {
    fn authorize(
        client: Client,
        action: Action,
        topic: String,
        _qos: u8,
        _retain: bool,
    ) -> AuthzResult {
        if action == Action::Publish && is_readonly(&topic) {
            if client.client_id.starts_with("admin-") {
                return Decision::Allow.into();
            }
            log::info(&format!("{} may not publish to {topic}", client.client_id));
            // The rule depends on nothing but the client id and the topic: the answer
            // holds for the whole connection.
            return AuthzResult::deny().cached(CacheLifetime::Connection);
        }
        Decision::Ignore.into() // kept for the operator's TTL
    }
}

export_plugin!(ReadOnly: authz);
