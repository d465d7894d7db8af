//! Authorization example: nobody publishes under `readonly/#` except clients
//! whose id starts with `admin-`, and nobody else reads `secret/#`: a
//! subscription to `secret/...` is denied, and so is each delivery of a
//! `secret/...` message through a wildcard (a `#` subscriber may subscribe, but
//! does not get them). Every other question is left to the next plugin
//! (`Ignore`).

use wasmq_plugin_sdk::{
    Action, AuthzResult, CacheLifetime, Client, Decision, Plugin, export_plugin, log,
};

struct ReadOnly;

/// `root/#` matches `root` itself and everything below it.
fn is_under(root: &str, topic: &str) -> bool {
    topic
        .strip_prefix(root)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

fn is_admin(client: &Client) -> bool {
    client.client_id.starts_with("admin-")
}

impl Plugin for ReadOnly {
    fn authorize(
        client: Client,
        action: Action,
        topic: String,
        _qos: u8,
        _retain: bool,
    ) -> AuthzResult {
        if action == Action::Publish && is_under("readonly", &topic) {
            if is_admin(&client) {
                return Decision::Allow.into();
            }
            log::info(&format!("{} may not publish to {topic}", client.client_id));
            // The rule depends on nothing but the client id and the topic: the answer
            // holds for the whole connection.
            return AuthzResult::deny().cached(CacheLifetime::Connection);
        }
        if action == Action::Subscribe && is_under("secret", &topic) && !is_admin(&client) {
            return AuthzResult::deny().cached(CacheLifetime::Connection);
        }
        Decision::Ignore.into() // kept for the operator's TTL
    }

    /// Asked for each topic a subscriber gets through a filter with `+` or `#`.
    fn authorize_delivery(client: Client, topic: String, _qos: u8, _retain: bool) -> AuthzResult {
        if is_under("secret", &topic) && !is_admin(&client) {
            return AuthzResult::deny().cached(CacheLifetime::Connection);
        }
        Decision::Ignore.into()
    }
}

export_plugin!(ReadOnly: authz, deliver);
