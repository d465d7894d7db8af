//! The per-connection cache of authorization decisions, so a client publishing to the same
//! topics does not call the plugin chain (and its database) for every message; and, with
//! the same rules and settings of its own (`[transform_cache]`), of what a per-topic
//! transform chain did to a message ([`TransformCache`]).
//!
//! Each connection owns its caches (in its `PolicyGate`), so they are purged when the
//! client disconnects, with no lock on the hot path. Entries live `ttl` and a cache holds
//! at most `capacity` of them. The broker-wide [`crate::hooks::PolicyGeneration`], bumped
//! on plugin reload and by the operator's "purge" command, invalidates every connection's
//! caches at once: an entry made under an older generation is never used.
//!
//! Lookups are counted ([`lookups`]) for the metrics: per process, in relaxed atomics
//! on cache lines of their own, as the broker's other per-message counters are.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytestring::ByteString;
use wasmq_codec::QoS;

use crate::hooks::{Action, TransformEdit};

/// What else an answer is about, beside its topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Question {
    action: Action,
    qos: QoS,
    retain: bool,
}

/// Lookups of one kind of cache that found a fresh answer, and that did not (read
/// through [`lookups`]).
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Lookups {
    hits: AtomicU64,
    misses: AtomicU64,
}

static AUTHZ_LOOKUPS: Lookups = Lookups {
    hits: AtomicU64::new(0),
    misses: AtomicU64::new(0),
};
/// The read caches' (delivery checks), counted apart: a `#` subscriber asks once per
/// delivery, so mixed with the PUBLISH/SUBSCRIBE questions they would drown them.
static DELIVER_LOOKUPS: Lookups = Lookups {
    hits: AtomicU64::new(0),
    misses: AtomicU64::new(0),
};
static TRANSFORM_LOOKUPS: Lookups = Lookups {
    hits: AtomicU64::new(0),
    misses: AtomicU64::new(0),
};

/// What a cache holds, and where its lookups are counted.
pub trait Cached: Clone {
    /// The counters of this kind of cache.
    #[doc(hidden)]
    fn lookups() -> &'static Lookups;
}

impl Cached for bool {
    fn lookups() -> &'static Lookups {
        &AUTHZ_LOOKUPS
    }
}

impl Cached for Arc<TransformEdit> {
    fn lookups() -> &'static Lookups {
        &TRANSFORM_LOOKUPS
    }
}

/// Counts lookups of a subscriber's read cache (delivery checks).
pub fn count_deliveries(hits: u64, misses: u64) {
    add(&DELIVER_LOOKUPS, hits, misses);
}

fn add(lookups: &Lookups, hits: u64, misses: u64) {
    if hits > 0 {
        lookups.hits.fetch_add(hits, Relaxed);
    }
    if misses > 0 {
        lookups.misses.fetch_add(misses, Relaxed);
    }
}

/// Hits and misses of every connection's caches since the process started (a process
/// runs one broker; tests that start several in one process see their sum). A miss is
/// a lookup that found nothing fresh (none cached, expired, purged, or the cache off).
pub fn lookups() -> CacheLookups {
    let read = |l: &Lookups| (l.hits.load(Relaxed), l.misses.load(Relaxed));
    let (authz_hits, authz_misses) = read(&AUTHZ_LOOKUPS);
    let (deliver_hits, deliver_misses) = read(&DELIVER_LOOKUPS);
    let (transform_hits, transform_misses) = read(&TRANSFORM_LOOKUPS);
    CacheLookups {
        authz_hits,
        authz_misses,
        deliver_hits,
        deliver_misses,
        transform_hits,
        transform_misses,
    }
}

/// Lookups of the per-connection caches, counted since the process started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheLookups {
    /// Authorization questions answered from a cache.
    pub authz_hits: u64,
    /// Authorization questions that went to the plugins.
    pub authz_misses: u64,
    /// Delivery checks answered from a subscriber's read cache.
    pub deliver_hits: u64,
    /// Delivery checks that went to the plugins.
    pub deliver_misses: u64,
    /// PUBLISHes whose per-topic transform was repeated from a cache.
    pub transform_hits: u64,
    /// PUBLISHes of a per-topic transform chain that went to the plugins.
    pub transform_misses: u64,
}

/// Cached answers of one connection: `V` is `bool` for authorization decisions.
///
/// Kept by topic, then by what else the question was (action, QoS, retain: nearly always
/// one per topic): a lookup borrows the topic (`&str`) instead of cloning it into a key,
/// which for a delivery is a reference count shared by every subscriber of the message.
#[derive(Debug)]
pub struct DecisionCache<V> {
    /// Each value with when it expires (`None`: for the connection).
    entries: HashMap<ByteString, Vec<(Question, V, Option<Instant>)>>,
    /// Values in `entries`.
    len: usize,
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

impl<V: Cached> DecisionCache<V> {
    /// A cache holding at most `capacity` decisions for `ttl` each; `capacity` 0 turns
    /// caching off.
    pub fn new(ttl: Duration, capacity: usize) -> DecisionCache<V> {
        DecisionCache {
            entries: HashMap::new(),
            len: 0,
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
        topic: &str,
        qos: QoS,
        retain: bool,
    ) -> Option<V> {
        let found = self.peek(generation, action, topic, qos, retain);
        match found {
            Some(_) => Self::count(1, 0),
            None => Self::count(0, 1),
        }
        found
    }

    /// [`DecisionCache::get`] without counting the lookup: for a caller that counts
    /// many at once ([`DecisionCache::count`]), as a connection pulling a batch of
    /// deliveries does (one shared counter per delivery was a cost of its own).
    pub fn peek(
        &mut self,
        generation: u64,
        action: Action,
        topic: &str,
        qos: QoS,
        retain: bool,
    ) -> Option<V> {
        self.peek_at(Instant::now(), generation, action, topic, qos, retain)
    }

    /// [`DecisionCache::peek`] at `now`, for a caller that read the clock already.
    pub fn peek_at(
        &mut self,
        now: Instant,
        generation: u64,
        action: Action,
        topic: &str,
        qos: QoS,
        retain: bool,
    ) -> Option<V> {
        if generation != self.generation {
            self.entries.clear();
            self.len = 0;
            self.generation = generation;
            return None;
        }
        let question = Question {
            action,
            qos,
            retain,
        };
        let answers = self.entries.get_mut(topic)?;
        let index = answers.iter().position(|(q, _, _)| *q == question)?;
        let (_, value, expires) = &answers[index];
        if expires.is_none_or(|at| now < at) {
            return Some(value.clone());
        }
        answers.swap_remove(index);
        self.len -= 1;
        if answers.is_empty() {
            self.entries.remove(topic);
        }
        None
    }

    /// Counts lookups made with [`DecisionCache::peek`].
    pub fn count(hits: u64, misses: u64) {
        add(V::lookups(), hits, misses);
    }

    /// Remembers a decision made under `generation` for the cache's TTL; false when it
    /// was not kept (the cache is off, or the generation changed meanwhile).
    pub fn insert(
        &mut self,
        generation: u64,
        action: Action,
        topic: ByteString,
        qos: QoS,
        retain: bool,
        value: V,
    ) -> bool {
        let ttl = Some(self.ttl);
        self.insert_for(generation, action, topic, qos, retain, value, ttl)
    }

    /// [`DecisionCache::insert`] for `lifetime` instead of the TTL (`None`: for the
    /// connection), as the plugin that answered says. A zero lifetime keeps nothing.
    #[expect(
        clippy::too_many_arguments,
        reason = "the question's four parts, as in `insert`"
    )]
    pub fn insert_for(
        &mut self,
        generation: u64,
        action: Action,
        topic: ByteString,
        qos: QoS,
        retain: bool,
        value: V,
        lifetime: Option<Duration>,
    ) -> bool {
        if self.capacity == 0 || generation != self.generation || lifetime == Some(Duration::ZERO) {
            return false;
        }
        let now = Instant::now();
        if self.len >= self.capacity {
            // Drop the expired entries first; if none, the whole cache: refilling costs
            // one plugin call per topic, and a client cycling over more topics than the
            // capacity gains nothing from finer eviction.
            let mut len = 0;
            self.entries.retain(|_, answers| {
                answers.retain(|(_, _, expires)| expires.is_none_or(|at| now < at));
                len += answers.len();
                !answers.is_empty()
            });
            self.len = len;
            if self.len >= self.capacity {
                self.entries.clear();
                self.len = 0;
            }
        }
        let question = Question {
            action,
            qos,
            retain,
        };
        let expires = lifetime.map(|d| now + d);
        let answers = self.entries.entry(topic).or_default();
        match answers.iter_mut().find(|(q, _, _)| *q == question) {
            Some(entry) => *entry = (question, value, expires),
            None => {
                answers.push((question, value, expires));
                self.len += 1;
            }
        }
        true
    }

    /// The TTL the operator configured (`ttl_ms` of `[authz_cache]` or `[transform_cache]`).
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Number of cached decisions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
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
    fn a_lifetime_of_its_own_replaces_the_ttl() {
        let mut cache = AuthzCache::new(Duration::from_millis(30), 10);
        let key = |t| (Action::Publish, topic(t), QoS::AtMostOnce, false);
        cache.get(0, Action::Publish, &topic("x"), QoS::AtMostOnce, false);
        for (t, lifetime) in [
            ("none", Some(Duration::ZERO)),
            ("long", Some(Duration::from_secs(60))),
            ("connection", None),
            ("ttl", Some(Duration::from_millis(30))),
        ] {
            let (a, tp, q, r) = key(t);
            let kept = cache.insert_for(0, a, tp, q, r, true, lifetime);
            assert_eq!(kept, t != "none", "{t}");
        }
        std::thread::sleep(Duration::from_millis(40));
        let mut fresh = |t| cache.get(0, Action::Publish, &topic(t), QoS::AtMostOnce, false);
        assert_eq!(fresh("none"), None, "none is never kept");
        assert_eq!(fresh("ttl"), None, "the TTL's entry expired");
        assert_eq!(
            fresh("long"),
            Some(true),
            "longer than the TTL, as the plugin said"
        );
        assert_eq!(fresh("connection"), Some(true));
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
