//! What a transform did to a message, in the codec's types: a replacement is a
//! [`Publish`] (the plugin host builds it from the plugin's record, keeping what a
//! plugin cannot see), not a copy of its fields.

use bytestring::ByteString;
use wasmq_codec::{Publish, UserProperties};

/// What a transform (or a chain of them) did with one message (WIT
/// `types.transformed`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transformed {
    /// Route the message as it is.
    Keep,
    /// Route this message instead.
    Replace(Box<Publish>),
    /// Do not route the message; the reason is for the log.
    Drop(String),
}

/// What a batch transform (or chain) did to one message of the batch (WIT
/// `types.edit`, since contract 0.2.0): as narrow as the change, so that a message
/// kept, or only retopiced and stamped, is not copied back whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Unchanged.
    Keep,
    /// Dropped, with the reason for the log.
    Drop(String),
    /// Routed under `topic` (when set), with `add_user_properties` appended after the
    /// message's own; nothing else changed.
    Change {
        /// The new topic, if it changed.
        topic: Option<ByteString>,
        /// User properties appended, in order.
        add_user_properties: UserProperties,
    },
    /// Rewritten: route this message instead.
    Replace(Box<Publish>),
}

impl From<Transformed> for Edit {
    /// A whole-message answer as an edit: a replacement stays one.
    fn from(result: Transformed) -> Edit {
        match result {
            Transformed::Keep => Edit::Keep,
            Transformed::Replace(replacement) => Edit::Replace(replacement),
            Transformed::Drop(reason) => Edit::Drop(reason),
        }
    }
}

impl Edit {
    /// What the edit makes of `publish`, the message it was made for: a `Keep` or a
    /// `Drop` makes nothing, a `Change` is done to a copy of it (reference counts, and
    /// the user properties' list).
    pub fn applied_to(self, publish: &Publish) -> Transformed {
        match self {
            Edit::Keep => Transformed::Keep,
            Edit::Drop(reason) => Transformed::Drop(reason),
            Edit::Change {
                topic,
                add_user_properties,
            } => {
                let mut changed = publish.clone();
                if let Some(topic) = topic {
                    changed.topic = topic;
                }
                changed
                    .properties
                    .user_properties
                    .extend(add_user_properties);
                Transformed::Replace(Box::new(changed))
            }
            Edit::Replace(replacement) => Transformed::Replace(replacement),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use bytestring::ByteString;
    use wasmq_codec::{Publish, QoS};

    use super::{Edit, Transformed};

    fn publish(topic: &'static str, props: &[(&'static str, &'static str)]) -> Publish {
        let mut publish = Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: ByteString::from_static(topic),
            packet_id: 7,
            payload: Bytes::from_static(b"x"),
            properties: Default::default(),
        };
        publish.properties.user_properties = props
            .iter()
            .map(|&(k, v)| (ByteString::from_static(k), ByteString::from_static(v)))
            .collect();
        publish
    }

    #[test]
    fn a_change_retopics_and_appends_keeping_the_rest() {
        let original = publish("legacy/t", &[("n", "1")]);
        let edit = Edit::Change {
            topic: Some(ByteString::from_static("v2/t")),
            add_user_properties: vec![("stamp".into(), "yes".into())],
        };
        assert_eq!(
            edit.applied_to(&original),
            Transformed::Replace(Box::new(publish("v2/t", &[("n", "1"), ("stamp", "yes")])))
        );
        let append_only = Edit::Change {
            topic: None,
            add_user_properties: vec![("stamp".into(), "yes".into())],
        };
        assert_eq!(
            append_only.applied_to(&original),
            Transformed::Replace(Box::new(publish(
                "legacy/t",
                &[("n", "1"), ("stamp", "yes")]
            )))
        );
    }

    #[test]
    fn keep_and_drop_make_nothing() {
        let original = publish("t", &[]);
        assert_eq!(Edit::Keep.applied_to(&original), Transformed::Keep);
        assert_eq!(
            Edit::Drop("why".into()).applied_to(&original),
            Transformed::Drop("why".into())
        );
    }
}
