//! Transform example: stamps every message with the user property
//! `wasmq-plugin=stamp`, and, when the settings `rewrite_from` and
//! `rewrite_to` are set, rewrites that topic prefix
//! (`rewrite_from = "legacy/"`, `rewrite_to = "v2/"` turns `legacy/a` into `v2/a`);
//! when `drop_prefix` is set, drops the messages whose topic starts with it.
//!
//! It exports `transform-batch`: the broker hands it the PUBLISHes of one read
//! in one call, and it answers each with a narrow edit (a property appended, a
//! topic), so the message itself is never copied back.

use std::sync::OnceLock;

use wasmq_plugin_sdk::{Change, Client, Edit, Message, Plugin, config, export_plugin};

/// The prefix rewrite, read once per instance: settings only change with a
/// reload, which makes new instances. (Reading them on every message was two
/// host calls per PUBLISH, a measurable part of the transform's cost.)
fn rewrite() -> Option<&'static (String, String)> {
    static REWRITE: OnceLock<Option<(String, String)>> = OnceLock::new();
    REWRITE
        .get_or_init(|| Some((config::get("rewrite_from")?, config::get("rewrite_to")?)))
        .as_ref()
}

/// The `drop_prefix` setting, read once per instance like the rewrite.
fn drop_prefix() -> Option<&'static str> {
    static DROP_PREFIX: OnceLock<Option<String>> = OnceLock::new();
    DROP_PREFIX
        .get_or_init(|| config::get("drop_prefix"))
        .as_deref()
}

struct Stamp;

impl Plugin for Stamp {
    fn on_publish_edit(_client: &Client, message: &Message) -> Edit {
        if let Some(prefix) = drop_prefix()
            && message.topic.starts_with(prefix)
        {
            return Edit::Drop(format!("under {prefix}"));
        }
        let topic = rewrite().and_then(|(from, to)| {
            let rest = message.topic.strip_prefix(from.as_str())?;
            Some(format!("{to}{rest}"))
        });
        Edit::Change(Change {
            topic,
            add_user_properties: vec![("wasmq-plugin".to_string(), "stamp".to_string())],
        })
    }
}

export_plugin!(Stamp: transform_batch);
