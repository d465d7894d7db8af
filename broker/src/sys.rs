//! `$SYS/broker/...`: the broker's own counters, published as retained messages at a
//! configurable interval (the topics Mosquitto uses, so existing dashboards work), the
//! enhanced authentication counters (`$SYS/broker/auth/enhanced/<phase>/<result>`), and
//! each policy plugin's state (`$SYS/broker/plugins/<name>/state`, `faults`, `disables`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use bytestring::ByteString;
use tracing::warn;
use wasmq_codec::{Publish, PublishProperties, QoS};

use crate::broker::Broker;
use crate::message::Message;
use crate::metrics::Metrics;
use crate::topic::TopicName;

/// The broker's version, as published in `$SYS/broker/version`.
pub const VERSION: &str = concat!("wasmq ", env!("CARGO_PKG_VERSION"));

/// Publishes the `$SYS` topics every `interval` until the task is dropped.
pub async fn run(broker: Arc<Broker>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        publish_once(&broker);
    }
}

/// Publishes every `$SYS` topic once.
pub fn publish_once(broker: &Broker) {
    let m = &broker.metrics;
    let coalesced = broker.hooks.as_ref().map_or(0, |h| h.authz_coalesced());
    let topics: [(&str, String); 19] = [
        ("$SYS/broker/version", VERSION.to_string()),
        (
            "$SYS/broker/uptime",
            format!("{} seconds", broker.started.elapsed().as_secs()),
        ),
        (
            "$SYS/broker/clients/connected",
            Metrics::get(&m.clients_connected).to_string(),
        ),
        (
            "$SYS/broker/clients/total",
            broker.session_count().to_string(),
        ),
        (
            "$SYS/broker/messages/received",
            Metrics::get(&m.messages_received).to_string(),
        ),
        (
            "$SYS/broker/messages/sent",
            Metrics::get(&m.messages_sent).to_string(),
        ),
        ("$SYS/broker/messages/dropped", dropped(m).to_string()),
        (
            "$SYS/broker/messages/dropped/no_share_member",
            Metrics::get(&m.messages_dropped_no_share_member).to_string(),
        ),
        (
            "$SYS/broker/messages/dropped/store_full",
            Metrics::get(&m.messages_dropped_store_full).to_string(),
        ),
        (
            "$SYS/broker/messages/dropped/not_authorized",
            Metrics::get(&m.messages_dropped_not_authorized).to_string(),
        ),
        (
            "$SYS/broker/messages/expired",
            Metrics::get(&m.messages_expired).to_string(),
        ),
        (
            "$SYS/broker/bytes/received",
            Metrics::get(&m.bytes_received).to_string(),
        ),
        (
            "$SYS/broker/bytes/sent",
            Metrics::get(&m.bytes_sent).to_string(),
        ),
        (
            "$SYS/broker/subscriptions/count",
            broker.subscription_count().to_string(),
        ),
        (
            "$SYS/broker/retained messages/count",
            broker.retained_count().to_string(),
        ),
        (
            "$SYS/broker/retained messages/refused",
            Metrics::get(&m.retained_refused_full).to_string(),
        ),
        // Not Mosquitto's: how often a request waited for the same one in flight.
        ("$SYS/broker/authorization/coalesced", coalesced.to_string()),
        // Overload (backpressure.rs): times a publisher was held back by a congested
        // queue, and times a subscriber was found too slow to wait for.
        (
            "$SYS/broker/publishers/held",
            Metrics::get(&m.publishers_held).to_string(),
        ),
        (
            "$SYS/broker/subscribers/slow",
            Metrics::get(&m.subscribers_slow).to_string(),
        ),
    ];
    for (topic, value) in topics {
        publish(broker, ByteString::from_static(topic), value);
    }
    // Not Mosquitto's: MQTT 5 enhanced authentication, per phase (at CONNECT, and
    // re-authentication), how many exchanges began and how they ended.
    for (phase, c) in [
        ("connect", &m.enhanced_auth_connect),
        ("reauth", &m.enhanced_auth_reauth),
    ] {
        for (what, counter) in [
            ("started", &c.started),
            ("succeeded", &c.succeeded),
            ("refused", &c.refused),
            ("timed_out", &c.timed_out),
        ] {
            publish(
                broker,
                format!("$SYS/broker/auth/enhanced/{phase}/{what}").into(),
                Metrics::get(counter).to_string(),
            );
        }
    }
    // Not Mosquitto's: each policy plugin's state (active, disabled until T, retrying)
    // and fault counts. A plugin whose name is not a valid topic level is left out.
    let statuses = broker
        .hooks
        .as_ref()
        .map_or_else(Vec::new, |h| h.plugin_statuses());
    for status in statuses {
        if status.name.contains(['+', '#', '/']) {
            continue;
        }
        let prefix = format!("$SYS/broker/plugins/{}", status.name);
        publish(
            broker,
            format!("{prefix}/faults").into(),
            status.faults.to_string(),
        );
        publish(
            broker,
            format!("{prefix}/disables").into(),
            status.disables.to_string(),
        );
        // Last: whoever sees the state has seen the counters of the same moment.
        publish(broker, format!("{prefix}/state").into(), status.state);
    }
}

fn publish(broker: &Broker, topic: ByteString, value: String) {
    // The broker's own names, at most six levels: not held to `max_topic_levels`, which
    // limits what clients send. A plugin name that is no valid level was left out above.
    let topic = match TopicName::new(topic, usize::MAX) {
        Ok(topic) => topic,
        Err(error) => {
            warn!(%error, "$SYS topic invalid: not published");
            return;
        }
    };
    let publish = Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: true,
        topic: topic.bytestring().clone(),
        packet_id: 0,
        payload: Bytes::from(value),
        properties: PublishProperties::default(),
    };
    broker.publish(Message::new(topic, publish, None));
}

fn dropped(m: &Metrics) -> u64 {
    Metrics::get(&m.messages_dropped_queue_full)
        + Metrics::get(&m.messages_dropped_offline_qos0)
        + Metrics::get(&m.messages_dropped_store_full)
        + Metrics::get(&m.messages_dropped_too_large)
        + Metrics::get(&m.messages_dropped_not_authorized)
        + Metrics::get(&m.messages_dropped_no_share_member)
}
