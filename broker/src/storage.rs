//! Where retained messages (and, later, sessions) live. The broker talks to a trait so a
//! persistent store can replace the in-memory one without reshaping the core.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::RwLock;

use crate::message::Message;
use crate::topic::{self, TopicFilter};

/// The retained-message store: one message per topic name.
pub trait RetainStore: Send + Sync {
    /// Stores `message` as the retained message of its topic, replacing any other.
    fn set(&self, message: Arc<Message>);
    /// Removes the retained message of `topic`.
    fn remove(&self, topic: &str);
    /// Appends the unexpired retained messages matching `filter` to `out`.
    fn matching(&self, filter: &TopicFilter, now: Instant, out: &mut Vec<Arc<Message>>);
    /// Number of retained messages held.
    fn len(&self) -> usize;
    /// Whether none is held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Retained messages in memory, lost on restart (as Mosquitto with `persistence false`).
#[derive(Debug, Default)]
pub struct MemoryRetainStore {
    messages: RwLock<HashMap<Box<str>, Arc<Message>>>,
}

impl RetainStore for MemoryRetainStore {
    fn set(&self, message: Arc<Message>) {
        self.messages
            .write()
            .insert(message.topic().into(), message);
    }

    fn remove(&self, topic: &str) {
        self.messages.write().remove(topic);
    }

    fn matching(&self, filter: &TopicFilter, now: Instant, out: &mut Vec<Arc<Message>>) {
        let messages = self.messages.read();
        if !filter.has_wildcard() {
            out.extend(
                messages
                    .get(filter.filter())
                    .filter(|m| !m.expired(now))
                    .cloned(),
            );
            return;
        }
        out.extend(
            messages
                .values()
                .filter(|m| !m.expired(now) && topic::matches(filter.filter(), m.topic()))
                .cloned(),
        );
    }

    fn len(&self) -> usize {
        self.messages.read().len()
    }
}
