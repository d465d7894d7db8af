//! SUBSCRIBE and UNSUBSCRIBE: authorization per filter, the subscription table, retained
//! delivery, SUBACK and UNSUBACK.

use bytestring::ByteString;
use tracing::debug;
use wasmq_codec::{
    AckProperties, Packet, ReasonCode, RetainHandling, SubAck, Subscribe, UnsubAck, Unsubscribe,
};

use crate::message::{Delivery, own_str};
use crate::router::SubscriptionData;
use crate::topic::TopicFilter;

use super::{Close, Connection};

impl Connection {
    pub(super) async fn on_subscribe(&mut self, subscribe: Subscribe) -> Result<(), Close> {
        let max_levels = self.broker.config.limits.max_topic_levels;
        let id = subscribe.properties.subscription_identifier;
        let mut codes = Vec::with_capacity(subscribe.filters.len());
        let mut retained = Vec::new();
        for (raw, options) in subscribe.filters {
            // A copy: the session and the router keep the filter for as long as the
            // subscription lives, and a slice would keep the SUBSCRIBE's whole read buffer
            // (8 KiB) alive with it.
            let filter = match TopicFilter::new(own_str(&raw), max_levels) {
                Ok(filter) => filter,
                Err(error) => {
                    debug!(%error, "subscription refused");
                    codes.push(ReasonCode::TOPIC_FILTER_INVALID);
                    continue;
                }
            };
            if filter.share_group().is_some() && options.no_local {
                return Err(Close::protocol(
                    ReasonCode::PROTOCOL_ERROR,
                    "[MQTT-3.8.3-4] No Local on a shared subscription",
                ));
            }
            if !self
                .gate
                .check_subscribe(&self.client, &filter.filter_bytes(), options.qos)
                .await
            {
                self.on_denied("subscription", &filter.filter_bytes())?;
                codes.push(ReasonCode::NOT_AUTHORIZED);
                continue;
            }
            let quota_reached = {
                let state = self.session.lock();
                !state.subscriptions.contains_key(filter.full())
                    && state.subscriptions.len()
                        >= self.broker.config.limits.max_subscriptions_per_client
            };
            if quota_reached {
                debug!(filter = filter.full(), "subscription quota reached");
                codes.push(ReasonCode::QUOTA_EXCEEDED);
                continue;
            }
            let data = SubscriptionData { options, id };
            let existed = self.broker.subscribe(&self.session, filter.clone(), data);
            codes.push(ReasonCode(options.qos as u8));
            let send_retained = filter.share_group().is_none()
                && match options.retain_handling {
                    RetainHandling::SendAtSubscribe => true,
                    RetainHandling::SendIfNew => !existed,
                    RetainHandling::DoNotSend => false,
                };
            if send_retained {
                for message in self.broker.retained_matching(&filter) {
                    retained.push(Delivery {
                        qos: message.publish.qos.min(options.qos),
                        message,
                        retain: true,
                        subscription_ids: id.into_iter().collect(),
                        share: None,
                        stored: 0,
                        // A retained `sensors/secret` must not reach a `sensors/#`
                        // subscriber either.
                        check_read: filter.has_wildcard(),
                    });
                }
            }
        }
        let any_refused = codes.iter().any(|c| c.is_error());
        let reason_string = (any_refused && self.negotiated.problem_information && self.v5())
            .then(|| ByteString::from_static("one or more filters refused"));
        let kept = self.kept_session;
        self.reply(
            Packet::SubAck(SubAck {
                packet_id: subscribe.packet_id,
                reason_codes: codes,
                properties: AckProperties {
                    reason_string,
                    ..Default::default()
                },
            }),
            kept,
        );
        for delivery in retained {
            self.broker.offer(&self.session, delivery);
        }
        Ok(())
    }

    pub(super) fn on_unsubscribe(&mut self, unsubscribe: Unsubscribe) {
        let max_levels = self.broker.config.limits.max_topic_levels;
        let codes = unsubscribe
            .filters
            .into_iter()
            .map(|raw| match TopicFilter::new(raw, max_levels) {
                Err(_) => ReasonCode::TOPIC_FILTER_INVALID,
                Ok(filter) if self.broker.unsubscribe(&self.session, &filter) => {
                    ReasonCode::SUCCESS
                }
                Ok(_) => ReasonCode::NO_SUBSCRIPTION_EXISTED,
            })
            .collect();
        let kept = self.kept_session;
        self.reply(
            Packet::UnsubAck(UnsubAck {
                packet_id: unsubscribe.packet_id,
                reason_codes: codes,
                properties: AckProperties::default(),
            }),
            kept,
        );
    }
}
