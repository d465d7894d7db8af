//! PUBLISH from the client: the checks of the packet, one at a time or in batches for a
//! batch transform, the QoS 1 and 2 acknowledgements, and the replies held until the
//! durable store has written what they confirm.

use bytestring::ByteString;
use wasmq_codec::{AckProperties, Packet, PubAckBody, Publish, QoS, ReasonCode};

use crate::message::{Message, own_str};
use crate::metrics::Metrics;
use crate::topic::TopicName;

use super::{Close, Connection};

impl Connection {
    pub(super) async fn on_publish(&mut self, publish: Publish) -> Result<(), Close> {
        let (publish, topic) = self.check_publish(publish)?;
        let limits = &self.broker.config.limits;
        let packet_id = publish.packet_id;
        let qos = publish.qos;
        if qos == QoS::ExactlyOnce {
            let state = self.session.lock();
            if state.incoming_qos2.contains(&packet_id) {
                // A re-sent PUBLISH before PUBREL: acknowledge, do not deliver again.
                drop(state);
                self.reply(Packet::PubRec(PubAckBody::new(packet_id)), false);
                return Ok(());
            }
            if state.incoming_qos2.len() >= usize::from(limits.receive_maximum) {
                return Err(Close::protocol(
                    ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
                    "[MQTT-3.3.4-7] receive maximum exceeded",
                ));
            }
        }
        let (code, kept) = self.route_publish(publish, topic).await?;
        self.ack_publish(packet_id, qos, code, kept);
        Ok(())
    }

    /// The QoS 0 and 1 PUBLISHes of one read, for a transform chain that takes batches:
    /// each checked and authorized in order, the chain called once for those allowed,
    /// then each routed and acknowledged in order. What a PUBLISH that closes the
    /// connection would close it for is returned after the ones before it are done.
    pub(super) async fn publish_batch(&mut self, batch: Vec<Publish>) -> Result<(), Close> {
        // Each PUBLISH's packet id and QoS, and its ack's reason code when it is
        // answered without the transform (refused).
        let mut acks: Vec<(u16, QoS, Option<ReasonCode>)> = Vec::with_capacity(batch.len());
        let mut allowed: Vec<Publish> = Vec::with_capacity(batch.len());
        let mut names: Vec<TopicName> = Vec::with_capacity(batch.len());
        let mut closing = None;
        for publish in batch {
            let (publish, topic) = match self.check_publish(publish) {
                Ok(checked) => checked,
                Err(close) => {
                    closing = Some(close);
                    break;
                }
            };
            let (packet_id, qos) = (publish.packet_id, publish.qos);
            match self.admit_publish(&publish).await {
                Ok(Some(code)) => acks.push((packet_id, qos, Some(code))),
                Ok(None) => {
                    acks.push((packet_id, qos, None));
                    allowed.push(publish);
                    names.push(topic);
                }
                Err(close) => {
                    closing = Some(close);
                    break;
                }
            }
        }
        let mut transformed = self
            .gate
            .transform_batch(&self.client, allowed, names)
            .await
            .into_iter();
        for (packet_id, qos, refused) in acks {
            let (code, kept) = match refused {
                Some(code) => (code, false),
                None => match transformed.next().expect("one result per allowed PUBLISH") {
                    Some((publish, topic)) => self.deliver_publish(publish, topic),
                    None => (ReasonCode::SUCCESS, false),
                },
            };
            self.ack_publish(packet_id, qos, code, kept);
        }
        closing.map_or(Ok(()), Err)
    }

    /// A PUBLISH's own checks, before any policy: topic alias, no subscription
    /// identifier, a valid topic name, which is returned with it and carried to routing
    /// (the one validation of the name). Counts it as received.
    fn check_publish(&mut self, mut publish: Publish) -> Result<(Publish, TopicName), Close> {
        Metrics::add(&self.broker.metrics.messages_received, 1);
        let limits = &self.broker.config.limits;
        if self.v5() {
            if let Some(alias) = publish.properties.topic_alias {
                if alias == 0 || alias > limits.topic_alias_maximum {
                    return Err(Close::protocol(
                        ReasonCode::TOPIC_ALIAS_INVALID,
                        "[MQTT-3.3.2-9] topic alias out of range",
                    ));
                }
                if publish.topic.is_empty() {
                    match self.aliases.as_ref().and_then(|a| a.inbound.get(&alias)) {
                        Some(topic) => publish.topic = topic.clone(),
                        None => {
                            return Err(Close::protocol(
                                ReasonCode::PROTOCOL_ERROR,
                                "[MQTT-3.3.4] unknown topic alias",
                            ));
                        }
                    }
                } else {
                    // A copy, not a slice of the read buffer (see `TopicAliases::outbound`).
                    let aliases = self.aliases.get_or_insert_default();
                    aliases.inbound.insert(alias, own_str(&publish.topic));
                }
            }
            if !publish.properties.subscription_identifiers.is_empty() {
                return Err(Close::protocol(
                    ReasonCode::PROTOCOL_ERROR,
                    "[MQTT-3.3.4-6] PUBLISH from a client carries a subscription identifier",
                ));
            }
        }
        match TopicName::new(publish.topic.clone(), limits.max_topic_levels) {
            Ok(topic) => Ok((publish, topic)),
            Err(error) => Err(Close::protocol(ReasonCode::TOPIC_NAME_INVALID, error)),
        }
    }

    /// Acknowledges a PUBLISH routed (or refused) with `code`; `kept`: what it confirms
    /// was written to the durable store.
    fn ack_publish(&mut self, packet_id: u16, qos: QoS, code: ReasonCode, kept: bool) {
        // Every refusal says why, unless the client asked for no problem information
        // (Request Problem Information = 0) [MQTT-3.1.2-29].
        let reason_string = match code {
            ReasonCode::NOT_AUTHORIZED => Some("not authorized"),
            ReasonCode::PAYLOAD_FORMAT_INVALID => {
                Some("[MQTT-3.3.2-4] payload format indicator 1 but the payload is not UTF-8")
            }
            _ => None,
        }
        .filter(|_| self.negotiated.problem_information)
        .map(ByteString::from_static);
        let body = PubAckBody {
            packet_id,
            reason_code: code,
            properties: AckProperties {
                reason_string,
                ..Default::default()
            },
        };
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.reply(Packet::PubAck(body), kept),
            QoS::ExactlyOnce => {
                let mut kept = kept;
                if !code.is_error() {
                    self.session.lock().receive_qos2(packet_id);
                    kept |= self.kept_session;
                }
                self.reply(Packet::PubRec(body), kept);
            }
        }
    }

    /// Sends a reply, or holds it until what it confirms is kept (`kept`), or until the
    /// replies held before it go: replies leave in the order of their requests.
    pub(super) fn reply(&mut self, packet: Packet, kept: bool) {
        if kept && let Some(journal) = self.broker.journal() {
            self.keep_upto = journal.submitted();
        } else if self.unkept.is_empty() {
            self.send(packet);
            return;
        }
        self.unkept.push(packet);
    }

    /// Waits until the journal has written what the held replies confirm, then sends
    /// them. Called once per read, so one wait covers every PUBLISH of that read.
    pub(super) async fn release_replies(&mut self) {
        if self.unkept.is_empty() {
            return;
        }
        if let Some(journal) = self.broker.journal() {
            journal.written(self.keep_upto).await;
        }
        for packet in std::mem::take(&mut self.unkept) {
            self.send(packet);
        }
    }

    /// Routes a PUBLISH that passed its checks and the policy under `topic`, its name
    /// as `check_publish` (or the gate, for a transform's replacement) validated it; the
    /// reason code for its ack, and whether routing it wrote to the durable store.
    pub(super) fn deliver_publish(
        &mut self,
        publish: Publish,
        topic: TopicName,
    ) -> (ReasonCode, bool) {
        let origin = Some(self.client.client_id.clone());
        let routed = self.broker.publish(Message::new(topic, publish, origin));
        let matched = routed.matched;
        self.hold_for(routed.congested);
        let code = if matched == 0 {
            ReasonCode::NO_MATCHING_SUBSCRIBERS
        } else {
            ReasonCode::SUCCESS
        };
        (code, routed.kept)
    }
}

pub(super) fn ack(packet_id: u16, reason_code: ReasonCode) -> PubAckBody {
    PubAckBody {
        packet_id,
        reason_code,
        properties: AckProperties::default(),
    }
}
