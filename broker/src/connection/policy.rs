//! The policy checks of this connection: whether a PUBLISH is admitted, its transform
//! and routing, authorization through the connection's decision cache, and read access
//! for deliveries through wildcard filters.

use super::*;

impl Connection {
    /// Authorizes, transforms and routes a PUBLISH; returns the reason code for its ack,
    /// and whether routing it wrote to the durable store.
    pub(super) async fn route_publish(
        &mut self,
        mut publish: Publish,
    ) -> Result<(ReasonCode, bool), Close> {
        let max_levels = self.broker.config.limits.max_topic_levels;
        if let Some(code) = self.admit_publish(&publish).await? {
            return Ok((code, false));
        }
        // Borrowed, not cloned: an `Arc` clone per PUBLISH is a shared counter that
        // every connection task bumps.
        if let Some(hooks) = self.broker.hooks.as_deref().filter(|h| h.transforms()) {
            // A per-topic chain is asked once per topic, QoS and retain flag; what it did
            // is repeated for the next such message (`TransformEdit`).
            let per_topic = hooks.transform_per_topic();
            let generation = self.broker.authz_generation();
            let (topic, qos, retain) = (&publish.topic, publish.qos, publish.retain);
            let cached = per_topic
                .then(|| {
                    self.transform_cache
                        .get(generation, Action::Publish, topic, qos, retain)
                })
                .flatten();
            match cached {
                Some(edit) => {
                    publish = match edit.apply(publish) {
                        Some(publish) => publish,
                        None => return Ok((ReasonCode::SUCCESS, false)),
                    }
                }
                None => {
                    let result = match hooks.transform(&self.client, &publish).await {
                        Transformed::Replace(replacement)
                            if TopicName::new(replacement.topic.clone(), max_levels).is_err() =>
                        {
                            warn!(topic = %replacement.topic, "transform produced an invalid topic; original kept");
                            Transformed::Keep
                        }
                        result => result,
                    };
                    if per_topic && let Some(edit) = TransformEdit::between(&publish, &result) {
                        let topic = publish.topic.clone();
                        self.transform_cache.insert(
                            generation,
                            Action::Publish,
                            topic,
                            qos,
                            retain,
                            Arc::new(edit),
                        );
                    }
                    match result {
                        Transformed::Keep => {}
                        Transformed::Replace(replacement) => publish = *replacement,
                        Transformed::Drop => return Ok((ReasonCode::SUCCESS, false)),
                    }
                }
            }
        }
        Ok(self.deliver_publish(publish))
    }

    /// The checks of a PUBLISH before it is transformed: a v5 payload that says it is
    /// UTF-8 is, and the client may publish to the topic. `Some`: refused, with the
    /// reason code of its ack.
    pub(super) async fn admit_publish(
        &mut self,
        publish: &Publish,
    ) -> Result<Option<ReasonCode>, Close> {
        if self.v5()
            && publish.properties.payload_format_indicator == Some(1)
            && std::str::from_utf8(&publish.payload).is_err()
        {
            if publish.qos == QoS::AtMostOnce {
                return Err(Close::protocol(
                    ReasonCode::PAYLOAD_FORMAT_INVALID,
                    "payload is not UTF-8",
                ));
            }
            return Ok(Some(ReasonCode::PAYLOAD_FORMAT_INVALID));
        }
        if !self
            .authorize(Action::Publish, &publish.topic, publish.qos, publish.retain)
            .await
        {
            debug!(topic = %publish.topic, "publish not authorized");
            self.on_denied("publish", &publish.topic)?;
            return Ok(Some(ReasonCode::NOT_AUTHORIZED));
        }
        Ok(None)
    }

    /// `[plugins] deny_action = "disconnect"`: a denied request closes the connection.
    pub(super) fn on_denied(&self, what: &str, topic: &str) -> Result<(), Close> {
        match self.broker.config.plugins.deny_action {
            DenyAction::Ignore => Ok(()),
            DenyAction::Disconnect => Err(Close::protocol(
                ReasonCode::NOT_AUTHORIZED,
                format!("{what} to {topic:?} not authorized (deny_action = \"disconnect\")"),
            )),
        }
    }

    /// Asks the hooks (through this connection's decision cache) whether the client may
    /// publish to or subscribe to `topic`. Superusers and a broker without hooks skip it.
    pub(super) async fn authorize(
        &mut self,
        action: Action,
        topic: &ByteString,
        qos: QoS,
        retain: bool,
    ) -> bool {
        let Some(hooks) = self.broker.hooks.clone().filter(|_| !self.superuser) else {
            return true;
        };
        let generation = self.broker.authz_generation();
        if let Some(allowed) = self.authz_cache.get(generation, action, topic, qos, retain) {
            return allowed;
        }
        let answer = hooks
            .authorization(&self.client, action, topic, qos, retain)
            .await;
        if answer.cacheable {
            let lifetime = answer.cache.duration(self.authz_cache.ttl());
            self.authz_cache.insert_for(
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

    /// Asks the hooks whether this client may read `question`'s topic (a delivery that
    /// matched only through wildcards), and remembers the answer for `pull`: in the
    /// read cache when it may be cached, else as the verdict for the next pull.
    pub(super) async fn decide_read(&mut self, question: ReadQuestion) {
        let Some(hooks) = self.broker.hooks.clone() else {
            return;
        };
        let generation = self.broker.authz_generation();
        let answer = hooks
            .authorize_delivery(&self.client, &question.topic, question.qos, question.retain)
            .await;
        let lifetime = answer.cache.duration(self.read_cache.ttl());
        let cached = answer.cacheable
            && self.read_cache.insert_for(
                generation,
                Action::Subscribe,
                question.topic.clone(),
                question.qos,
                question.retain,
                answer.allowed,
                lifetime,
            );
        if cached {
            self.read_asked = Some(question);
        } else {
            self.read_verdict = Some((question, answer.allowed));
        }
    }
}

/// A read decision the front delivery of the queue waits for: the topic it goes out on,
/// with its QoS and retain flag (the key of the read cache).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ReadQuestion {
    topic: ByteString,
    qos: QoS,
    retain: bool,
}

impl ReadQuestion {
    pub(super) fn of(delivery: &Delivery) -> ReadQuestion {
        ReadQuestion {
            topic: delivery.message.publish.topic.clone(),
            qos: delivery.qos,
            retain: delivery.retain,
        }
    }

    pub(super) fn is_about(&self, delivery: &Delivery) -> bool {
        self.topic == delivery.message.publish.topic
            && self.qos == delivery.qos
            && self.retain == delivery.retain
    }
}
