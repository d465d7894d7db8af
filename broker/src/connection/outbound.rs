//! Deliveries to the client: pulling them from the session queue within the inflight
//! window, encoding them into the outbox, resending the inflight ones after a resume, and
//! the client's acknowledgements (PUBACK, PUBREC, PUBCOMP) that free the window.

use std::time::Instant;

use bytestring::ByteString;
use tracing::debug;
use wasmq_codec::{Packet, PubAckBody, QoS};

use crate::message::{Delivery, own_str};
use crate::metrics::Metrics;
use crate::outbox::SHARED_PAYLOAD_MIN;
use crate::session::{Outgoing, Stage};

use super::{Connection, PULL_BATCH};

impl Connection {
    /// Redelivers unacknowledged messages after a session is resumed: PUBLISH with DUP,
    /// or PUBREL for those already received [MQTT-4.4.0-1].
    pub(super) fn resend_inflight(&mut self) {
        let inflight: Vec<Outgoing> = self.session.lock().inflight.iter().cloned().collect();
        for outgoing in inflight {
            match outgoing.stage {
                Stage::AwaitPubComp => {
                    self.send(Packet::PubRel(PubAckBody::new(outgoing.packet_id)))
                }
                Stage::AwaitPubAck | Stage::AwaitPubRec => {
                    self.write_publish(outgoing.packet_id, &outgoing.delivery, true);
                }
            }
        }
    }

    pub(super) fn acknowledged(&mut self, packet_id: u16, stage: Stage) {
        if self.session.lock().complete(packet_id, stage) {
            self.pending = true;
        } else {
            debug!(
                packet_id,
                ?stage,
                "acknowledgement for no message in flight"
            );
        }
    }

    /// Moves deliveries from the session queue into the write buffer, within the
    /// inflight window, until the buffer reaches its high-water mark.
    ///
    /// A delivery that matched only through wildcard filters is checked first when a
    /// plugin checks deliveries (`Hooks::checks_deliveries`): allowed from the read
    /// cache, it goes as any other; denied, it leaves the queue (and the durable store)
    /// before it has a packet id, and is counted; not known, the pull stops before it
    /// and the gate keeps the question for the serve loop to ask (`decide_read`).
    pub(super) fn pull(&mut self) {
        let high_water = self.broker.config.limits.write_buffer_high_water;
        let low = self.broker.queue_marks().low;
        let reads = self.gate.read_check();
        let mut scratch = std::mem::take(&mut self.scratch);
        loop {
            let mut expired = 0;
            let mut denied = 0;
            let more = {
                let mut state = self.session.lock();
                if state.owner.as_ref().map(|o| o.connection_id) != Some(self.connection_id) {
                    // Taken over: the new connection owns the queue now; this one is
                    // about to close and must not take messages with it.
                    self.pending = false;
                    break;
                }
                let now = Instant::now();
                while scratch.len() < PULL_BATCH {
                    let Some(front) = state.queue.front() else {
                        break;
                    };
                    if front.message.expired(now) {
                        if let Some(gone) = state.queue.pop_front() {
                            state.forget(&gone);
                        }
                        expired += 1;
                        continue;
                    }
                    if front.qos != QoS::AtMostOnce
                        && state.inflight.len() >= self.negotiated.send_window
                    {
                        break;
                    }
                    if let Some(check) = reads
                        && front.check_read
                    {
                        match self.gate.may_read(check, now, front) {
                            Some(true) => {}
                            Some(false) => {
                                debug!(topic = %front.message.publish.topic, "delivery not authorized for this subscriber: dropped");
                                if let Some(gone) = state.queue.pop_front() {
                                    state.forget(&gone);
                                }
                                denied += 1;
                                continue;
                            }
                            None => break,
                        }
                    }
                    let Some(delivery) = state.queue.pop_front() else {
                        break;
                    };
                    let packet_id = match delivery.qos {
                        QoS::AtMostOnce => 0,
                        qos => {
                            let packet_id = state.next_packet_id();
                            let stage = if qos == QoS::AtLeastOnce {
                                Stage::AwaitPubAck
                            } else {
                                Stage::AwaitPubRec
                            };
                            let outgoing = Outgoing {
                                packet_id,
                                delivery: delivery.clone(),
                                stage,
                            };
                            state.keep_sent(&outgoing);
                            state.inflight.push_back(outgoing);
                            packet_id
                        }
                    };
                    scratch.push((packet_id, delivery));
                }
                if !scratch.is_empty() || expired > 0 || denied > 0 {
                    self.session.drained(state.queue.len(), low);
                }
                // More can be taken now only if the window is not what stopped us.
                state.queue.front().is_some_and(|front| {
                    front.qos == QoS::AtMostOnce
                        || state.inflight.len() < self.negotiated.send_window
                })
            };
            if expired > 0 {
                Metrics::add(&self.broker.metrics.messages_expired, expired);
            }
            if denied > 0 {
                Metrics::add(&self.broker.metrics.messages_dropped_not_authorized, denied);
            }
            let mut too_large = Vec::new();
            for (packet_id, delivery) in scratch.drain(..) {
                if !self.write_publish(packet_id, &delivery, false) && packet_id != 0 {
                    too_large.push(packet_id);
                }
            }
            if !too_large.is_empty() {
                let mut state = self.session.lock();
                let (refused, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut state.inflight)
                    .into_iter()
                    .partition(|o| too_large.contains(&o.packet_id));
                state.inflight = kept.into();
                for outgoing in refused {
                    state.forget(&outgoing.delivery);
                }
                drop(state);
                if !more {
                    continue;
                }
            }
            if self.gate.awaits_read() {
                // Pulled again once it is answered.
                self.pending = true;
                break;
            }
            if !more || self.outbox.len() >= high_water {
                self.pending = more;
                break;
            }
        }
        self.scratch = scratch;
        self.gate.end_pull();
    }

    /// Encodes one delivery for this client; false when it exceeds the client's Maximum
    /// Packet Size and was not sent [MQTT-3.1.2-25].
    fn write_publish(&mut self, packet_id: u16, delivery: &Delivery, dup: bool) -> bool {
        let message = &delivery.message;
        let mut publish = message.publish.clone();
        publish.dup = dup;
        publish.qos = delivery.qos;
        publish.retain = delivery.retain;
        publish.packet_id = packet_id;
        let mut new_alias = None;
        if self.v5() {
            publish
                .properties
                .subscription_identifiers
                .clone_from(&delivery.subscription_ids);
            publish.properties.message_expiry_interval = message.remaining_expiry(Instant::now());
            if self.negotiated.client_topic_alias_max > 0 {
                let outbound = self.aliases.as_ref().map(|a| &a.outbound);
                let used = outbound.map_or(0, |o| o.len());
                match outbound.and_then(|o| o.get(&publish.topic)) {
                    Some(&alias) => {
                        publish.properties.topic_alias = Some(alias);
                        publish.topic = ByteString::new();
                    }
                    None if used < usize::from(self.negotiated.client_topic_alias_max) => {
                        let alias = used as u16 + 1;
                        publish.properties.topic_alias = Some(alias);
                        new_alias = Some((publish.topic.clone(), alias));
                    }
                    None => {}
                }
            }
        }
        // The head (all but the payload) is encoded once; with the payload it is the
        // packet's size, which is checked before anything is committed to the outbox.
        let buf = self.outbox.buf();
        let start = buf.len();
        publish.write_head(self.client.protocol, buf);
        if buf.len() - start + publish.payload.len() > self.negotiated.client_max_packet_size {
            buf.truncate(start);
            Metrics::add(&self.broker.metrics.messages_dropped_too_large, 1);
            debug!(topic = %message.publish.topic, "message larger than the client's maximum packet size");
            return false;
        }
        if publish.payload.len() >= SHARED_PAYLOAD_MIN {
            self.outbox.push_shared(publish.payload);
        } else {
            buf.extend_from_slice(&publish.payload);
        }
        if let Some((topic, alias)) = new_alias {
            // A copy: the message's topic is a slice of its publisher's read buffer, which
            // the map would keep alive (a whole large payload) for the connection's life.
            let aliases = self.aliases.get_or_insert_default();
            aliases.outbound.insert(own_str(&topic), alias);
        }
        Metrics::add(&self.broker.metrics.messages_sent, 1);
        true
    }
}
