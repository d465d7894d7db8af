//! `{{name}}`: a Wasmq transform plugin (the `transform` hook, called on every
//! authorized PUBLISH before it is routed).
//!
//! What it starts with, to replace with yours: a message published under the setting
//! `drop_prefix` (default `private/`) is dropped; every other message gets the MQTT 5
//! user property `via={{name}}`, appended after the client's own.

use std::sync::OnceLock;

use wasmq_plugin_sdk::{Client, Message, Plugin, Transformed, config, export_plugin};

/// Read once per instance: settings only change with a reload, which makes new
/// instances (a host call per message would cost more than the transform).
fn drop_prefix() -> &'static str {
    static PREFIX: OnceLock<String> = OnceLock::new();
    PREFIX.get_or_init(|| config::get("drop_prefix").unwrap_or_else(|| "private/".to_string()))
}

struct Stamp;

impl Plugin for Stamp {
    fn on_publish(_client: Client, mut message: Message) -> Transformed {
        if message.topic.starts_with(drop_prefix()) {
            return Transformed::Drop(format!("{} is private", message.topic));
        }
        message
            .user_properties
            .push(("via".to_string(), "{{name}}".to_string()));
        Transformed::Replace(message)
    }
}

export_plugin!(Stamp: transform);
