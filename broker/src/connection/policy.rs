//! The connection's side of its [`PolicyGate`](gate::PolicyGate): a PUBLISH's payload
//! check before the gate, the gate's verdict turned into routing and an ack, and what a
//! refusal does to the connection (`deny_action`).

use wasmq_codec::{Publish, QoS, ReasonCode};

use crate::config::DenyAction;
use crate::topic::TopicName;

use super::gate::PublishVerdict;
use super::{Close, Connection};

impl Connection {
    /// Authorizes, transforms and routes a PUBLISH whose topic is `topic` validated;
    /// returns the reason code for its ack, and whether routing it wrote to the durable
    /// store.
    pub(super) async fn route_publish(
        &mut self,
        publish: Publish,
        topic: TopicName,
    ) -> Result<(ReasonCode, bool), Close> {
        if let Some(code) = self.check_payload_format(&publish)? {
            return Ok((code, false));
        }
        match self.gate.check_publish(&self.client, publish, topic).await {
            PublishVerdict::Deny { code, topic } => {
                self.on_denied("publish", &topic)?;
                Ok((code, false))
            }
            PublishVerdict::Drop => Ok((ReasonCode::SUCCESS, false)),
            PublishVerdict::Route(publish, topic) => Ok(self.deliver_publish(publish, topic)),
        }
    }

    /// The checks of a PUBLISH of a batch before it is transformed: its payload
    /// ([`Connection::check_payload_format`]), and the client may publish to the topic.
    /// `Some`: refused, with the reason code of its ack.
    pub(super) async fn admit_publish(
        &mut self,
        publish: &Publish,
    ) -> Result<Option<ReasonCode>, Close> {
        if let Some(code) = self.check_payload_format(publish)? {
            return Ok(Some(code));
        }
        if !self.gate.admit_publish(&self.client, publish).await {
            self.on_denied("publish", &publish.topic)?;
            return Ok(Some(ReasonCode::NOT_AUTHORIZED));
        }
        Ok(None)
    }

    /// A v5 payload that says it is UTF-8 is [MQTT-3.3.2-4]: a protocol rule, checked
    /// before any policy. `Some`: refused, with the reason code of its ack; a QoS 0
    /// PUBLISH, which has no ack, closes the connection.
    fn check_payload_format(&self, publish: &Publish) -> Result<Option<ReasonCode>, Close> {
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
}
