//! Transform example: stamps every message with the user property
//! `wasmq-plugin=stamp`, and, when the settings `rewrite_from` and
//! `rewrite_to` are set, rewrites that topic prefix
//! (`rewrite_from = "legacy/"`, `rewrite_to = "v2/"` turns `legacy/a` into `v2/a`).

use std::sync::OnceLock;

use wasmq_plugin_sdk::{Client, Message, Plugin, Transformed, config, export_plugin};

/// The prefix rewrite, read once per instance: settings only change with a
/// reload, which makes new instances. (Reading them on every message was two
/// host calls per PUBLISH, a measurable part of the transform's cost.)
fn rewrite() -> Option<&'static (String, String)> {
    static REWRITE: OnceLock<Option<(String, String)>> = OnceLock::new();
    REWRITE
        .get_or_init(|| Some((config::get("rewrite_from")?, config::get("rewrite_to")?)))
        .as_ref()
}

struct Stamp;

impl Plugin for Stamp {
    fn on_publish(_client: Client, mut message: Message) -> Transformed {
        if let Some((from, to)) = rewrite()
            && let Some(rest) = message.topic.strip_prefix(from.as_str())
        {
            message.topic = format!("{to}{rest}");
        }
        message
            .user_properties
            .push(("wasmq-plugin".to_string(), "stamp".to_string()));
        Transformed::Replace(message)
    }
}

export_plugin!(Stamp: transform);
