//! The policy as one connection sees it: the [`PolicyGate`] every PUBLISH, SUBSCRIBE and
//! wildcard delivery of the connection goes through. It owns the connection's three
//! caches (authorization, read access, per-topic transforms) and the read question a
//! pull waits for, all invalidated by the one broker-wide [`PolicyGeneration`].
//!
//! A child of `connection`, not a crate module: a gate is a connection's own (no lock,
//! purged when the client disconnects), it answers in the connection's terms (a
//! delivery at the front of its queue, the reason code of an ack), and nothing else
//! uses it. What a refusal does to the connection (`deny_action`), the packet's own
//! checks (the v5 UTF-8 payload included: a protocol rule, not policy) and routing stay
//! in the connection.

use std::sync::Arc;
use std::time::Instant;

use bytestring::ByteString;
use tracing::{debug, warn};
use wasmq_codec::{Publish, QoS, ReasonCode};

use crate::authz_cache::{AuthzCache, TransformCache, count_deliveries};
use crate::broker::Broker;
use crate::config::CacheConfig;
use crate::hooks::{Action, ClientInfo, Edit, Hooks, PolicyGeneration, TransformEdit, Transformed};
use crate::message::Delivery;
use crate::topic::TopicName;

/// What becomes of a PUBLISH the client sent.
// Returned once per PUBLISH and taken apart at once by the caller: boxing `Route`, the
// common case, would be an allocation per message to spare a move.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(super) enum PublishVerdict {
    /// Not authorized: acknowledged with `code`; `topic` is what it was sent to, for
    /// `deny_action = "disconnect"` to say.
    Deny { code: ReasonCode, topic: ByteString },
    /// The transform dropped it: acknowledged as a success, routed nowhere.
    Drop,
    /// To be routed, as transformed, under its topic's validated name (the one the
    /// connection checked, or a transform's replacement checked here): routing does not
    /// validate it again.
    Route(Publish, TopicName),
}

/// The policy checks of one connection, with what they remember.
pub(super) struct PolicyGate {
    /// `None`: a broker without hooks, which allows everything. The broker's own, held
    /// so that a check borrows it (a clone per PUBLISH is a shared counter that every
    /// connection task bumps).
    hooks: Option<Arc<dyn Hooks>>,
    /// Shared with the broker and its hooks: a plugin swap and a purge both bump it.
    generation: PolicyGeneration,
    /// Superusers skip authorization and read checks (transforms still apply). Set at
    /// CONNECT, and again by a re-authentication.
    superuser: bool,
    /// A transform's replacement topic must be valid under the broker's limit.
    max_topic_levels: usize,
    /// `[authz_cache]` and `[transform_cache]`, for when the caches are made.
    settings: (CacheConfig, CacheConfig),
    /// What the connection remembers of the policy's answers, made by the first check
    /// that asks the hooks. Inline, the three caches and the read question
    /// were 400 bytes of every connection, and most connections of a large fleet, idle,
    /// never ask (issue 14: bytes per idle connection).
    caches: Option<Box<Caches>>,
}

/// The caches of a [`PolicyGate`] and the read question a pull waits for.
struct Caches {
    /// PUBLISH and SUBSCRIBE decisions (`[authz_cache]`).
    authz: AuthzCache,
    /// Read access on topics received through wildcard filters (the `deliver` hook),
    /// keyed by topic, QoS and retain flag under [`Action::Subscribe`]. An authorization
    /// cache, so `[authz_cache]`'s settings; apart from `authz`, so that a delivery
    /// never reads a SUBSCRIBE decision on a filter spelled like the topic.
    reads: AuthzCache,
    /// What a per-topic transform chain did (`[transform_cache]`).
    transforms: TransformCache,
    /// The delivery at the front of the queue needs a read decision that is not cached:
    /// the pull stopped before it, and the serve loop asks the hooks (`decide_read`).
    read_question: Option<ReadQuestion>,
    /// The answer to the last `read_question` when it was not cached (made blind, or
    /// the cache is off): used by the next pull for that front delivery, then dropped.
    read_verdict: Option<(ReadQuestion, bool)>,
    /// The last `read_question`, when its answer went into the read cache: the next
    /// pull finds it there without counting that as a cache hit (it was a miss).
    read_asked: Option<ReadQuestion>,
    /// Read-cache lookups of the pull under way, counted once at its end.
    read_hits: u64,
    read_misses: u64,
}

impl Caches {
    fn new((authz, transform): &(CacheConfig, CacheConfig)) -> Caches {
        Caches {
            authz: AuthzCache::new(authz.ttl(), authz.max_entries),
            reads: AuthzCache::new(authz.ttl(), authz.max_entries),
            transforms: TransformCache::new(transform.ttl(), transform.max_entries),
            read_question: None,
            read_verdict: None,
            read_asked: None,
            read_hits: 0,
            read_misses: 0,
        }
    }

    /// The gate's caches, made on first use (a function of the two fields, not a
    /// method: a check holds the gate's hooks borrowed meanwhile).
    fn of<'a>(
        caches: &'a mut Option<Box<Caches>>,
        settings: &(CacheConfig, CacheConfig),
    ) -> &'a mut Caches {
        caches.get_or_insert_with(|| Box::new(Caches::new(settings)))
    }
}

/// The read checks of one pull: taken once per pull ([`PolicyGate::read_check`]), so a
/// reload in the middle of a pull takes effect on the next.
#[derive(Debug, Clone, Copy)]
pub(super) struct ReadCheck {
    /// The generation the pull's read-cache lookups are made under.
    generation: u64,
}

impl PolicyGate {
    /// A gate on `broker`'s hooks for a client authenticated as `superuser` or not, its
    /// caches empty.
    pub(super) fn new(broker: &Broker, superuser: bool) -> PolicyGate {
        let config = &broker.config;
        PolicyGate {
            hooks: broker.hooks.clone(),
            generation: broker.policy_generation().clone(),
            superuser,
            max_topic_levels: config.limits.max_topic_levels,
            settings: (config.authz_cache.clone(), config.transform_cache.clone()),
            caches: None,
        }
    }

    /// A re-authentication's word on whether the client is a superuser.
    pub(super) fn set_superuser(&mut self, superuser: bool) {
        self.superuser = superuser;
    }

    /// Authorizes `publish`, whose topic is `topic` validated, then transforms it
    /// (through the transform cache when the chain is per topic).
    pub(super) async fn check_publish(
        &mut self,
        client: &ClientInfo,
        publish: Publish,
        topic: TopicName,
    ) -> PublishVerdict {
        if !self.admit_publish(client, &publish).await {
            return PublishVerdict::Deny {
                code: ReasonCode::NOT_AUTHORIZED,
                topic: publish.topic,
            };
        }
        self.transform(client, publish, topic).await
    }

    /// Whether the client may publish `publish` (the authorization half of
    /// [`PolicyGate::check_publish`], for a batch transformed together).
    pub(super) async fn admit_publish(&mut self, client: &ClientInfo, publish: &Publish) -> bool {
        let allowed = self
            .authorize(
                client,
                Action::Publish,
                &publish.topic,
                publish.qos,
                publish.retain,
            )
            .await;
        if !allowed {
            debug!(topic = %publish.topic, "publish not authorized");
        }
        allowed
    }

    /// Whether the client may subscribe to `filter` (without a `$share/<group>/`
    /// prefix) with `qos`.
    pub(super) async fn check_subscribe(
        &mut self,
        client: &ClientInfo,
        filter: &ByteString,
        qos: QoS,
    ) -> bool {
        self.authorize(client, Action::Subscribe, filter, qos, false)
            .await
    }

    /// Asks the hooks (through the authorization cache) whether the client may publish
    /// to or subscribe to `topic`. Superusers and a broker without hooks skip it.
    async fn authorize(
        &mut self,
        client: &ClientInfo,
        action: Action,
        topic: &ByteString,
        qos: QoS,
        retain: bool,
    ) -> bool {
        let Some(hooks) = self.hooks.as_deref().filter(|_| !self.superuser) else {
            return true;
        };
        let generation = self.generation.get();
        // The lookup is made even on caches made just now: it is what brings a cache to
        // the current generation, under which alone it takes answers.
        let authz = &mut Caches::of(&mut self.caches, &self.settings).authz;
        if let Some(allowed) = authz.get(generation, action, topic, qos, retain) {
            return allowed;
        }
        let answer = hooks
            .authorization(client, action, topic, qos, retain)
            .await;
        if answer.cacheable {
            let authz = &mut Caches::of(&mut self.caches, &self.settings).authz;
            let lifetime = answer.cache.duration(authz.ttl());
            authz.insert_for(
                generation,
                action,
                topic.clone(),
                qos,
                retain,
                answer.allowed,
                lifetime,
            );
        }
        answer.allowed
    }

    /// Runs the transform chain on an authorized PUBLISH. A per-topic chain is asked
    /// once per topic, QoS and retain flag; what it did is repeated for the next such
    /// message ([`TransformEdit`]).
    async fn transform(
        &mut self,
        client: &ClientInfo,
        publish: Publish,
        topic: TopicName,
    ) -> PublishVerdict {
        let Some(hooks) = self.hooks.as_deref().filter(|h| h.transforms()) else {
            return PublishVerdict::Route(publish, topic);
        };
        let per_topic = hooks.transform_per_topic();
        let generation = self.generation.get();
        let (qos, retain) = (publish.qos, publish.retain);
        let cached = per_topic
            .then(|| {
                let transforms = &mut Caches::of(&mut self.caches, &self.settings).transforms;
                transforms.get(generation, Action::Publish, &publish.topic, qos, retain)
            })
            .flatten();
        let to_route = match cached {
            Some(edit) => {
                let name = match edit.new_topic() {
                    // Checked when the chain first answered (`checked`), so this cannot
                    // fail; a new name of this message, validated once.
                    Some(new) => match TopicName::new(new.clone(), self.max_topic_levels) {
                        Ok(name) => name,
                        Err(_) => topic,
                    },
                    None => topic,
                };
                edit.apply(publish).map(|publish| (publish, name))
            }
            None => {
                let (result, name) = checked(
                    hooks.transform(client, &publish).await,
                    topic,
                    self.max_topic_levels,
                );
                if per_topic && let Some(edit) = TransformEdit::between(&publish, &result) {
                    let topic = publish.topic.clone();
                    Caches::of(&mut self.caches, &self.settings)
                        .transforms
                        .insert(
                            generation,
                            Action::Publish,
                            topic,
                            qos,
                            retain,
                            Arc::new(edit),
                        );
                }
                routed(publish, result).map(|publish| (publish, name))
            }
        };
        to_route.map_or(PublishVerdict::Drop, |(publish, name)| {
            PublishVerdict::Route(publish, name)
        })
    }

    /// Transforms the authorized PUBLISHes of one read in one call of a chain that
    /// takes batches (never per topic, so nothing is cached); `names` are their topics
    /// validated, in the same order. Each to route, in order, under its name, or `None`
    /// when the chain dropped it.
    pub(super) async fn transform_batch(
        &mut self,
        client: &ClientInfo,
        allowed: Vec<Publish>,
        names: Vec<TopicName>,
    ) -> Vec<Option<(Publish, TopicName)>> {
        let edits = match self.hooks.as_deref() {
            Some(hooks) if !allowed.is_empty() => hooks.transform_batch(client, &allowed).await,
            _ => Vec::new(),
        };
        // A chain that answered for fewer keeps the rest.
        let edits = edits.into_iter().chain(std::iter::repeat(Edit::Keep));
        allowed
            .into_iter()
            .zip(names)
            .zip(edits)
            .map(|((publish, topic), edit)| edited(publish, topic, edit, self.max_topic_levels))
            .collect()
    }

    /// The read checks of one pull, when there are any: the policy checks deliveries
    /// (`Hooks::checks_deliveries`) and the client is not a superuser.
    pub(super) fn read_check(&self) -> Option<ReadCheck> {
        let checks =
            !self.superuser && self.hooks.as_deref().is_some_and(|h| h.checks_deliveries());
        checks.then(|| ReadCheck {
            generation: self.generation.get(),
        })
    }

    /// Whether `front`, the front delivery of the queue (one that matched only through
    /// wildcards), may go to this client: from the read cache, or from the answer just
    /// asked for it. `None`: not known; it becomes the read question
    /// ([`PolicyGate::awaits_read`]) and the pull stops before it.
    pub(super) fn may_read(
        &mut self,
        check: ReadCheck,
        now: Instant,
        front: &Delivery,
    ) -> Option<bool> {
        let caches = Caches::of(&mut self.caches, &self.settings);
        let cached = caches.reads.peek_at(
            now,
            check.generation,
            Action::Subscribe,
            &front.message.publish.topic,
            front.qos,
            front.retain,
        );
        let just_asked = caches.read_asked.take_if(|q| q.is_about(front));
        if cached.is_some() && just_asked.is_none() {
            caches.read_hits += 1;
        }
        let allowed = cached.or_else(|| {
            (caches.read_verdict)
                .take_if(|(q, _)| q.is_about(front))
                .map(|(_, allowed)| allowed)
        });
        if allowed.is_none() {
            caches.read_misses += 1;
            caches.read_question = Some(ReadQuestion::of(front));
        }
        allowed
    }

    /// Whether the last pull stopped at a delivery whose read access is to be asked.
    pub(super) fn awaits_read(&self) -> bool {
        (self.caches.as_ref()).is_some_and(|caches| caches.read_question.is_some())
    }

    /// Ends a pull: counts its read-cache lookups, and drops the verdict it was given
    /// (a verdict is for the front delivery it was asked for, on the next pull only).
    pub(super) fn end_pull(&mut self) {
        let Some(caches) = self.caches.as_deref_mut() else {
            return;
        };
        count_deliveries(
            std::mem::take(&mut caches.read_hits),
            std::mem::take(&mut caches.read_misses),
        );
        caches.read_verdict = None;
        caches.read_asked = None;
    }

    /// Asks the hooks the read question the last pull stopped at, if any (false: there
    /// was none), and remembers the answer for the next pull: in the read cache when it
    /// may be cached, else as the verdict for that delivery.
    pub(super) async fn decide_read(&mut self, client: &ClientInfo) -> bool {
        let Some(question) = (self.caches.as_deref_mut()).and_then(|c| c.read_question.take())
        else {
            return false;
        };
        let Some(hooks) = self.hooks.as_deref() else {
            return true;
        };
        let generation = self.generation.get();
        let answer = hooks
            .authorize_delivery(client, &question.topic, question.qos, question.retain)
            .await;
        let caches = Caches::of(&mut self.caches, &self.settings);
        let lifetime = answer.cache.duration(caches.reads.ttl());
        let cached = answer.cacheable
            && caches.reads.insert_for(
                generation,
                Action::Subscribe,
                question.topic.clone(),
                question.qos,
                question.retain,
                answer.allowed,
                lifetime,
            );
        if cached {
            caches.read_asked = Some(question);
        } else {
            caches.read_verdict = Some((question, answer.allowed));
        }
        true
    }
}

/// `result`, with the name its message is routed under: a replacement's topic,
/// validated here, or `topic` (the original's) when the chain kept or dropped it. A
/// replacement on an invalid topic is turned into keeping the original.
fn checked(
    result: Transformed,
    topic: TopicName,
    max_topic_levels: usize,
) -> (Transformed, TopicName) {
    match result {
        Transformed::Replace(replacement) => {
            match transformed_topic(&replacement.topic, max_topic_levels) {
                Some(name) => (Transformed::Replace(replacement), name),
                None => (Transformed::Keep, topic),
            }
        }
        result => (result, topic),
    }
}

/// A topic a transform gave a message, validated; `None` (said in the log) when it is
/// invalid, and the caller keeps the original message.
fn transformed_topic(topic: &ByteString, max_topic_levels: usize) -> Option<TopicName> {
    let name = TopicName::new(topic.clone(), max_topic_levels).ok();
    if name.is_none() {
        warn!(%topic, "transform produced an invalid topic; original kept");
    }
    name
}

/// What to route once a batch transform answered `edit` for `publish`, named `topic`;
/// `None`: dropped. A change is done to `publish` itself, which the connection owns: no
/// copy, and the name is validated again only when the topic changed. A change to an
/// invalid topic keeps the message as it was, as a replacement with one does.
fn edited(
    mut publish: Publish,
    topic: TopicName,
    edit: Edit,
    max_topic_levels: usize,
) -> Option<(Publish, TopicName)> {
    match edit {
        Edit::Keep => Some((publish, topic)),
        Edit::Drop(_) => None,
        Edit::Replace(replacement) => match transformed_topic(&replacement.topic, max_topic_levels)
        {
            Some(name) => Some((*replacement, name)),
            None => Some((publish, topic)),
        },
        Edit::Change {
            topic: new_topic,
            add_user_properties,
        } => {
            let name = match new_topic {
                None => topic,
                Some(new_topic) => match transformed_topic(&new_topic, max_topic_levels) {
                    Some(name) => {
                        publish.topic = new_topic;
                        name
                    }
                    None => return Some((publish, topic)),
                },
            };
            publish
                .properties
                .user_properties
                .extend(add_user_properties);
            Some((publish, name))
        }
    }
}

/// What to route once the chain answered `result` for `publish`; `None`: dropped.
fn routed(publish: Publish, result: Transformed) -> Option<Publish> {
    match result {
        Transformed::Keep => Some(publish),
        Transformed::Replace(replacement) => Some(*replacement),
        Transformed::Drop(_) => None,
    }
}

/// A read decision the front delivery of the queue waits for: the topic it goes out on,
/// with its QoS and retain flag (the key of the read cache).
#[derive(Debug, Clone, PartialEq, Eq)]
struct ReadQuestion {
    topic: ByteString,
    qos: QoS,
    retain: bool,
}

impl ReadQuestion {
    fn of(delivery: &Delivery) -> ReadQuestion {
        ReadQuestion {
            topic: delivery.message.publish.topic.clone(),
            qos: delivery.qos,
            retain: delivery.retain,
        }
    }

    fn is_about(&self, delivery: &Delivery) -> bool {
        self.topic == delivery.message.publish.topic
            && self.qos == delivery.qos
            && self.retain == delivery.retain
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

    use bytes::Bytes;
    use wasmq_codec::Protocol;

    use super::*;
    use crate::config::Config;
    use crate::hooks::{AuthDecision, BoxFuture};
    use crate::listener::ListenerKind;

    /// Allows everything and keeps every message, counting the questions it is asked;
    /// its transform is per topic, so both of the gate's PUBLISH caches are in play.
    #[derive(Default)]
    struct Counting {
        authorized: AtomicU64,
        transformed: AtomicU64,
        generation: PolicyGeneration,
    }

    impl Hooks for Counting {
        fn authenticate<'a>(
            &'a self,
            _: &'a ClientInfo,
            _: Option<&'a Bytes>,
        ) -> BoxFuture<'a, AuthDecision> {
            Box::pin(std::future::ready(AuthDecision::Allow { superuser: false }))
        }

        fn authorize<'a>(
            &'a self,
            _: &'a ClientInfo,
            _: Action,
            _: &'a str,
            _: QoS,
            _: bool,
        ) -> BoxFuture<'a, bool> {
            self.authorized.fetch_add(1, Relaxed);
            Box::pin(std::future::ready(true))
        }

        fn transform<'a>(
            &'a self,
            _: &'a ClientInfo,
            _: &'a Publish,
        ) -> BoxFuture<'a, Transformed> {
            self.transformed.fetch_add(1, Relaxed);
            Box::pin(std::future::ready(Transformed::Keep))
        }

        fn transform_per_topic(&self) -> bool {
            true
        }

        fn generation(&self) -> PolicyGeneration {
            self.generation.clone()
        }
    }

    impl Counting {
        /// (authorization questions, transforms) asked so far.
        fn asked(&self) -> (u64, u64) {
            (
                self.authorized.load(Relaxed),
                self.transformed.load(Relaxed),
            )
        }
    }

    fn start(config: Config) -> (Arc<Broker>, Arc<Counting>, PolicyGate) {
        let hooks = Arc::new(Counting::default());
        let broker = Broker::new(config, Some(hooks.clone() as Arc<dyn Hooks>));
        let gate = PolicyGate::new(&broker, false);
        (broker, hooks, gate)
    }

    fn client() -> ClientInfo {
        ClientInfo {
            client_id: ByteString::from_static("gate-test"),
            username: None,
            peer_addr: "127.0.0.1:1".parse().unwrap(),
            protocol: Protocol::V5,
            listener: "test",
            listener_kind: ListenerKind::Tcp,
            certificate: None,
            connect_user_properties: Vec::new(),
            prepared: Default::default(),
        }
    }

    async fn publish(gate: &mut PolicyGate) {
        let publish = Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: ByteString::from_static("a/b"),
            packet_id: 0,
            payload: Bytes::from_static(b"x"),
            properties: Default::default(),
        };
        let topic = TopicName::new(publish.topic.clone(), 8).unwrap();
        let verdict = gate.check_publish(&client(), publish, topic).await;
        assert!(matches!(verdict, PublishVerdict::Route(..)), "{verdict:?}");
    }

    #[tokio::test]
    async fn a_purge_and_a_plugin_swap_invalidate_both_caches() {
        let (broker, hooks, mut gate) = start(Config::default());
        publish(&mut gate).await;
        publish(&mut gate).await;
        assert_eq!(hooks.asked(), (1, 1), "the second from the caches");
        broker.purge_authz_cache();
        publish(&mut gate).await;
        assert_eq!(hooks.asked(), (2, 2), "a purge");
        // What `LiveChain::swap` does: the broker reads the same counter.
        hooks.generation.bump();
        publish(&mut gate).await;
        assert_eq!(hooks.asked(), (3, 3), "a swap");
        publish(&mut gate).await;
        assert_eq!(hooks.asked(), (3, 3));
    }

    #[tokio::test]
    async fn the_transform_cache_has_its_own_settings() {
        let mut config = Config::default();
        config.authz_cache.max_entries = 0;
        let (_broker, hooks, mut gate) = start(config);
        publish(&mut gate).await;
        publish(&mut gate).await;
        assert_eq!(
            hooks.asked(),
            (2, 1),
            "authorization cache off, transforms kept"
        );

        let mut config = Config::default();
        config.transform_cache.max_entries = 0;
        let (_broker, hooks, mut gate) = start(config);
        publish(&mut gate).await;
        publish(&mut gate).await;
        assert_eq!(hooks.asked(), (1, 2), "transform cache off, decisions kept");
    }

    #[tokio::test]
    async fn a_superuser_is_not_authorized_but_transformed() {
        let (_broker, hooks, mut gate) = start(Config::default());
        gate.set_superuser(true);
        publish(&mut gate).await;
        assert!(
            gate.check_subscribe(&client(), &ByteString::from_static("#"), QoS::AtMostOnce)
                .await
        );
        assert_eq!(hooks.asked(), (0, 1));
    }
}
