//! The per-connection cache of authorization decisions, so a client publishing to the same
//! topics does not call the plugin chain (and its database) for every message; and, with
//! the same rules, of what a per-topic transform chain did to a message
//! ([`TransformCache`]).
//!
//! Each connection owns its cache, so it is purged when the client disconnects, with no
//! lock on the hot path. Entries live `ttl` and the cache holds at most `capacity` of
//! them. A broker-wide generation number, bumped on plugin reload and by the operator's
//! "purge" command, invalidates every connection's cache at once: an entry made under an
//! older generation is never used.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytestring::ByteString;
use wasmq_codec::QoS;

use crate::hooks::{Action, TransformEdit};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    action: Action,
    qos: QoS,
    retain: bool,
    topic: ByteString,
}

/// Cached answers of one connection: `V` is `bool` for authorization decisions.
#[derive(Debug)]
pub struct DecisionCache<V> {
    entries: HashMap<Key, (V, Instant)>,
    ttl: Duration,
    capacity: usize,
    generation: u64,
}

/// Authorization decisions: allowed or not.
pub type AuthzCache = DecisionCache<bool>;

/// What the transform chain did to a PUBLISH (kept under [`Action::Publish`]), when the
/// chain is per topic ([`crate::hooks::Hooks::transform_per_topic`]). Shared, so that a
/// hit on every PUBLISH does not copy the edit's properties.
pub type TransformCache = DecisionCache<Arc<TransformEdit>>;

impl<V: Clone> DecisionCache<V> {
    /// A cache holding at most `capacity` decisions for `ttl` each; `capacity` 0 turns
    /// caching off.
    pub fn new(ttl: Duration, capacity: usize) -> DecisionCache<V> {
        DecisionCache {
            entries: HashMap::new(),
            ttl,
            capacity,
            generation: 0,
        }
    }

    /// The cached decision, if there is a fresh one from the current `generation`.
    pub fn get(
        &mut self,
        generation: u64,
        action: Action,
        topic: &ByteString,
        qos: QoS,
        retain: bool,
    ) -> Option<V> {
        if generation != self.generation {
            self.entries.clear();
            self.generation = generation;
            return None;
        }
        let key = Key {
            action,
            qos,
            retain,
            topic: topic.clone(),
        };
        let (value, at) = self.entries.get(&key)?;
        if at.elapsed() < self.ttl {
            return Some(value.clone());
        }
        self.entries.remove(&key);
        None
    }

    /// Remembers a decision made under `generation`.
    pub fn insert(
        &mut self,
        generation: u64,
        action: Action,
        topic: ByteString,
        qos: QoS,
        retain: bool,
        value: V,
    ) {
        if self.capacity == 0 || generation != self.generation {
            return;
        }
        if self.entries.len() >= self.capacity {
            // Drop the expired entries first; if none, the whole cache: refilling costs
            // one plugin call per topic, and a client cycling over more topics than the
            // capacity gains nothing from finer eviction.
            let ttl = self.ttl;
            self.entries.retain(|_, (_, at)| at.elapsed() < ttl);
            if self.entries.len() >= self.capacity {
                self.entries.clear();
            }
        }
        self.entries.insert(
            Key {
                action,
                qos,
                retain,
                topic,
            },
            (value, Instant::now()),
        );
    }

    /// Number of cached decisions.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(s: &'static str) -> ByteString {
        ByteString::from_static(s)
    }

    #[test]
    fn hits_until_the_ttl_then_misses() {
        let mut cache = AuthzCache::new(Duration::from_millis(50), 10);
        assert_eq!(
            cache.get(0, Action::Publish, &topic("a"), QoS::AtMostOnce, false),
            None
        );
        cache.insert(0, Action::Publish, topic("a"), QoS::AtMostOnce, false, true);
        assert_eq!(
            cache.get(0, Action::Publish, &topic("a"), QoS::AtMostOnce, false),
            Some(true)
        );
        assert_eq!(
            cache.get(0, Action::Subscribe, &topic("a"), QoS::AtMostOnce, false),
            None
        );
        assert_eq!(
            cache.get(0, Action::Publish, &topic("a"), QoS::AtLeastOnce, false),
            None
        );
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(
            cache.get(0, Action::Publish, &topic("a"), QoS::AtMostOnce, false),
            None
        );
    }

    #[test]
    fn a_new_generation_purges_everything() {
        let mut cache = AuthzCache::new(Duration::from_secs(60), 10);
        cache.insert(
            0,
            Action::Publish,
            topic("a"),
            QoS::AtMostOnce,
            false,
            false,
        );
        assert_eq!(
            cache.get(1, Action::Publish, &topic("a"), QoS::AtMostOnce, false),
            None
        );
        assert!(cache.is_empty());
        // A decision made under the old generation (a call in flight during the purge)
        // is not stored.
        cache.insert(0, Action::Publish, topic("b"), QoS::AtMostOnce, false, true);
        assert!(cache.is_empty());
    }

    #[test]
    fn never_holds_more_than_its_capacity() {
        let mut cache = AuthzCache::new(Duration::from_secs(60), 3);
        for i in 0..10 {
            cache.insert(
                0,
                Action::Publish,
                ByteString::from(format!("t/{i}")),
                QoS::AtMostOnce,
                false,
                true,
            );
            assert!(cache.len() <= 3);
        }
        let mut off = AuthzCache::new(Duration::from_secs(60), 0);
        off.insert(0, Action::Publish, topic("a"), QoS::AtMostOnce, false, true);
        assert!(off.is_empty());
    }
}
