//! The policy seam: what the broker asks on CONNECT, PUBLISH and SUBSCRIBE, and on a
//! delivery through a wildcard subscription. Who is asking and what about are the
//! types of `wasmq-policy`, which the plugin host takes as they are (it converts them
//! once, at the WIT edge); the answers after the broker's own fallbacks
//! ([`AuthDecision`], [`AuthStep`], [`Authorization`]) are the broker's. The plugin
//! policy (`crate::plugins::PluginPolicy`) implements [`Hooks`]; with no hooks
//! installed the broker lets every client connect, publish, subscribe and receive, as
//! Mosquitto does with no plugin or ACL file.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use bytestring::ByteString;
use wasmq_codec::{Publish, QoS, ReasonCode};
/// The seam's shared types (who is asking, what about, what a transform did): one
/// definition, in `wasmq-policy`, for the broker and the plugin host alike.
pub use wasmq_policy::{
    Action, CacheLifetime, CertificateIdentity, ClientInfo, Decision, Edit, Prepared, Transformed,
};

/// A boxed future, so [`Hooks`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The answer to CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthDecision {
    /// Accepted; superusers skip authorization.
    Allow {
        /// Whether authorization checks are skipped for this client.
        superuser: bool,
    },
    /// Refused with this CONNACK reason code (e.g. 0x86, 0x87).
    Deny(ReasonCode),
}

/// Where an MQTT 5 enhanced authentication exchange stands between two AUTH packets:
/// the plugin that answered the last step and what it asked to be handed back. The
/// connection keeps it until the client answers, then gives it to
/// [`Hooks::enhanced_auth`]; nothing else keeps it (no cache).
#[derive(Clone)]
pub struct AuthExchange {
    /// The plugin that continues the exchange.
    pub plugin: String,
    /// Opaque bytes from that plugin (nonces, stored keys): never sent, never logged.
    pub state: Vec<u8>,
}

impl std::fmt::Debug for AuthExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "AuthExchange {{ plugin: {:?}, state: {} bytes }}",
            self.plugin,
            self.state.len()
        )
    }
}

/// The answer to one step of enhanced authentication (CONNECT or AUTH with an
/// Authentication Method).
#[derive(Debug, Clone)]
pub enum AuthStep {
    /// Send the client an AUTH 0x18 with this Authentication Data, and ask again with
    /// `exchange` when it answers.
    Continue {
        /// The challenge for the client.
        data: Bytes,
        /// What to hand back with the client's answer.
        exchange: AuthExchange,
    },
    /// Authenticated: CONNACK (or AUTH 0x00) carrying `data` when there is any.
    Success {
        /// The final Authentication Data.
        data: Option<Bytes>,
        /// Whether authorization checks are skipped for this client.
        superuser: bool,
    },
    /// Refused with this reason code: 0x8C Bad authentication method when no plugin
    /// knows the method, 0x87 Not authorized when the plugin refused or faulted.
    Refuse(ReasonCode),
}

/// What a per-topic transform chain did to one message, kept to be done again to the
/// next message of the connection with the same topic, QoS and retain flag without asking
/// the chain: nothing, a drop, or a topic rewrite and user properties appended. Other
/// changes (payload, QoS, other properties) are not repeatable this way and are not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransformEdit {
    /// Route the message as it is.
    Keep,
    /// Do not route the message.
    Drop,
    /// Route it under `topic` (when set), with `append` added to its user properties.
    Change {
        topic: Option<ByteString>,
        append: Vec<(ByteString, ByteString)>,
    },
}

impl TransformEdit {
    /// What `result` did to `original`, if it is one of the changes an edit can repeat.
    pub fn between(original: &Publish, result: &Transformed) -> Option<TransformEdit> {
        let changed = match result {
            Transformed::Keep => return Some(TransformEdit::Keep),
            Transformed::Drop(_) => return Some(TransformEdit::Drop),
            Transformed::Replace(changed) => changed,
        };
        let (before, after) = (&original.properties, &changed.properties);
        let append = after
            .user_properties
            .strip_prefix(&before.user_properties[..])?;
        let same_otherwise = changed.payload == original.payload
            && changed.qos == original.qos
            && changed.retain == original.retain
            && wasmq_codec::PublishProperties {
                user_properties: before.user_properties.clone(),
                ..after.clone()
            } == *before;
        same_otherwise.then(|| TransformEdit::Change {
            topic: (changed.topic != original.topic).then(|| changed.topic.clone()),
            append: append.to_vec(),
        })
    }

    /// The topic the edit routes a message under instead of its own, if it changes it.
    pub fn new_topic(&self) -> Option<&ByteString> {
        match self {
            TransformEdit::Change { topic, .. } => topic.as_ref(),
            TransformEdit::Keep | TransformEdit::Drop => None,
        }
    }

    /// `publish` with the edit done to it; `None` when it is dropped.
    pub fn apply(&self, mut publish: Publish) -> Option<Publish> {
        match self {
            TransformEdit::Keep => {}
            TransformEdit::Drop => return None,
            TransformEdit::Change { topic, append } => {
                if let Some(topic) = topic {
                    publish.topic = topic.clone();
                }
                publish
                    .properties
                    .user_properties
                    .extend(append.iter().cloned());
            }
        }
        Some(publish)
    }
}

/// The answer to PUBLISH or SUBSCRIBE (or a delivery), with whether and for how long the
/// broker may remember it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authorization {
    /// Whether the request is allowed.
    pub allowed: bool,
    /// Whether the answer may be cached. False when it was made blind (the database
    /// failed, or a plugin faulted, so the answer is the fail-closed deny): remembering
    /// it would keep denying after the failure is over.
    pub cacheable: bool,
    /// For how long, when it may be: what the plugins that were asked said (the
    /// operator's TTL for 0.1.0 plugins and for answers no plugin made).
    pub cache: CacheLifetime,
}

impl Authorization {
    /// `allowed`, cached for the operator's TTL.
    pub fn new(allowed: bool) -> Authorization {
        Authorization {
            allowed,
            cacheable: true,
            cache: CacheLifetime::OPERATOR_TTL,
        }
    }
}

/// The state of one policy plugin, for `$SYS/broker/plugins/<name>/...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginStatus {
    /// The plugin's name.
    pub name: String,
    /// `active`, `retrying` or `disabled until <RFC 3339 time>`.
    pub state: String,
    /// Calls that faulted since it was loaded.
    pub faults: u64,
    /// Times it was disabled after repeated faults.
    pub disables: u64,
}

/// The generation of the policy's answers, shared by the broker and its [`Hooks`]: a
/// plugin swap and an operator's purge (admin API, `wasmq acl ...`) both bump it, and a
/// cached decision, read access or transform made under an older one is never used
/// (`authz_cache.rs`). One shared counter rather than one per side added together, so
/// that what a number means is one thing.
#[derive(Debug, Clone, Default)]
pub struct PolicyGeneration(Arc<AtomicU64>);

impl PolicyGeneration {
    /// The current generation.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// Starts a new generation: every answer cached so far is dropped when next looked at.
    pub fn bump(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

/// Policy hooks. Implementations must be cheap to call concurrently; the broker calls
/// them from every connection task.
pub trait Hooks: Send + Sync {
    /// Decides a CONNECT.
    fn authenticate<'a>(
        &'a self,
        client: &'a ClientInfo,
        password: Option<&'a Bytes>,
    ) -> BoxFuture<'a, AuthDecision>;

    /// One step of MQTT 5 enhanced authentication (§4.12) with Authentication Method
    /// `method`: a new exchange (`exchange` is `None`: the CONNECT, or an AUTH 0x19
    /// re-authentication) or the client's answer to the last [`AuthStep::Continue`].
    /// By default no method is known (0x8C).
    fn enhanced_auth<'a>(
        &'a self,
        client: &'a ClientInfo,
        method: &'a str,
        data: Option<&'a Bytes>,
        exchange: Option<AuthExchange>,
    ) -> BoxFuture<'a, AuthStep> {
        let _ = (client, method, data, exchange);
        Box::pin(std::future::ready(AuthStep::Refuse(
            ReasonCode::BAD_AUTHENTICATION_METHOD,
        )))
    }

    /// Decides a PUBLISH (topic name) or a SUBSCRIBE (one topic filter, with any
    /// `$share/<group>/` prefix already stripped); true allows.
    fn authorize<'a>(
        &'a self,
        client: &'a ClientInfo,
        action: Action,
        topic: &'a str,
        qos: QoS,
        retain: bool,
    ) -> BoxFuture<'a, bool>;

    /// [`Hooks::authorize`], saying whether the answer may be cached (what the broker
    /// calls). By default every answer may be.
    fn authorization<'a>(
        &'a self,
        client: &'a ClientInfo,
        action: Action,
        topic: &'a str,
        qos: QoS,
        retain: bool,
    ) -> BoxFuture<'a, Authorization> {
        Box::pin(async move {
            Authorization::new(self.authorize(client, action, topic, qos, retain).await)
        })
    }

    /// Whether [`Hooks::authorize_delivery`] can deny anything (a plugin exports the
    /// `deliver` hook); when false the broker never asks it, and a delivery costs
    /// nothing more than without hooks.
    fn checks_deliveries(&self) -> bool {
        false
    }

    /// Decides whether `client` may receive a message on `topic` (a topic name) that
    /// reaches it through a subscription whose filter has wildcards, delivered with
    /// `qos` and `retain`. Asked by the subscriber's connection when it takes the
    /// message off its queue, through its own cache. By default every delivery may go.
    fn authorize_delivery<'a>(
        &'a self,
        client: &'a ClientInfo,
        topic: &'a str,
        qos: QoS,
        retain: bool,
    ) -> BoxFuture<'a, Authorization> {
        let _ = (client, topic, qos, retain);
        Box::pin(std::future::ready(Authorization::new(true)))
    }

    /// Transforms a PUBLISH before it is routed.
    fn transform<'a>(
        &'a self,
        client: &'a ClientInfo,
        message: &'a Publish,
    ) -> BoxFuture<'a, Transformed>;

    /// Whether [`Hooks::transform`] can change anything; when false the broker skips it.
    fn transforms(&self) -> bool {
        true
    }

    /// Whether the transform is cheaper asked about several messages at once
    /// ([`Hooks::transform_batch`]): the broker then hands it the QoS 0 and 1 PUBLISHes
    /// of one read together (unless [`Hooks::transform_per_topic`]).
    fn transforms_in_batches(&self) -> bool {
        false
    }

    /// Transforms PUBLISHes of one client, in the order it sent them, before they are
    /// routed: one answer per message, in order, as narrow as the change (the broker
    /// does a [`Edit::Change`] to the message it owns, without a copy). By default,
    /// [`Hooks::transform`] on each in turn.
    fn transform_batch<'a>(
        &'a self,
        client: &'a ClientInfo,
        messages: &'a [Publish],
    ) -> BoxFuture<'a, Vec<Edit>> {
        Box::pin(async move {
            let mut results = Vec::with_capacity(messages.len());
            for message in messages {
                results.push(self.transform(client, message).await.into());
            }
            results
        })
    }

    /// Whether [`Hooks::transform`] depends only on the client, the topic, the QoS and
    /// the retain flag: the broker then asks once per connection and such message and
    /// repeats the [`TransformEdit`] for the next ones (within `[transform_cache]`'s
    /// TTL and size, purged with the authorization caches on a new [`PolicyGeneration`]).
    fn transform_per_topic(&self) -> bool {
        false
    }

    /// The counter this policy bumps whenever it may answer differently (plugins
    /// reloaded). The broker asks for it once, when it is built, and bumps the same
    /// counter on a purge: one number then invalidates every connection's caches. By
    /// default a counter of its own, which only purges bump.
    fn generation(&self) -> PolicyGeneration {
        PolicyGeneration::default()
    }

    /// Authorization requests answered by an identical request already in flight
    /// (same client, connection and question), instead of asking the policy again;
    /// published as `$SYS/broker/authorization/coalesced`.
    fn authz_coalesced(&self) -> u64 {
        0
    }

    /// The policy's plugins and their states, for `$SYS` (none by default).
    fn plugin_statuses(&self) -> Vec<PluginStatus> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(topic: &'static str, payload: &'static [u8], props: &[(&str, &str)]) -> Publish {
        let mut publish = Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: ByteString::from_static(topic),
            packet_id: 1,
            payload: Bytes::from_static(payload),
            properties: Default::default(),
        };
        publish.properties.user_properties = props
            .iter()
            .map(|(k, v)| (ByteString::from(*k), ByteString::from(*v)))
            .collect();
        publish
    }

    fn replaced(p: Publish) -> Transformed {
        Transformed::Replace(Box::new(p))
    }

    #[test]
    fn a_rewrite_and_appended_properties_are_repeated_on_the_next_message() {
        let first = publish("legacy/t", b"1", &[("n", "1")]);
        let result = replaced(publish("v2/t", b"1", &[("n", "1"), ("stamp", "yes")]));
        let edit = TransformEdit::between(&first, &result).expect("repeatable");
        assert_eq!(
            edit,
            TransformEdit::Change {
                topic: Some(ByteString::from_static("v2/t")),
                append: vec![(ByteString::from("stamp"), ByteString::from("yes"))],
            }
        );
        // The next message keeps its own payload and properties.
        let next = edit
            .apply(publish("legacy/t", b"2", &[("n", "2")]))
            .unwrap();
        assert_eq!(next, publish("v2/t", b"2", &[("n", "2"), ("stamp", "yes")]));
    }

    #[test]
    fn keep_and_drop_are_repeated() {
        let p = publish("a", b"x", &[]);
        assert_eq!(
            TransformEdit::between(&p, &Transformed::Keep),
            Some(TransformEdit::Keep)
        );
        assert_eq!(TransformEdit::Keep.apply(p.clone()), Some(p.clone()));
        assert_eq!(
            TransformEdit::between(&p, &Transformed::Drop("a reason".into())),
            Some(TransformEdit::Drop)
        );
        assert_eq!(TransformEdit::Drop.apply(p), None);
    }

    #[test]
    fn other_changes_are_not_repeatable() {
        let p = publish("a", b"x", &[("k", "v")]);
        let payload = replaced(publish("a", b"changed", &[("k", "v")]));
        assert_eq!(TransformEdit::between(&p, &payload), None);
        let removed = replaced(publish("a", b"x", &[]));
        assert_eq!(TransformEdit::between(&p, &removed), None);
        let mut qos = publish("a", b"x", &[("k", "v")]);
        qos.qos = QoS::AtMostOnce;
        assert_eq!(TransformEdit::between(&p, &replaced(qos)), None);
        let mut content_type = publish("a", b"x", &[("k", "v")]);
        content_type.properties.content_type = Some(ByteString::from_static("text/plain"));
        assert_eq!(TransformEdit::between(&p, &replaced(content_type)), None);
    }
}
