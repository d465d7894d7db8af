//! `GET /metrics`: the broker's counters in the OpenMetrics text format (which
//! Prometheus scrapes), encoded by `prometheus-client`.
//!
//! Nothing is added to the MQTT path for this: a [`Collector`] reads, at scrape time,
//! the relaxed atomics the broker already keeps ([`crate::metrics::Metrics`]), walks
//! the sessions for the queue depths, and reads each plugin's counters and latency
//! histogram and the database's. Histograms exist only where a call is already
//! expensive (plugin calls, database queries, `wasmq_plugin_host::LatencyHistogram`).

use std::fmt;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use wasmq_plugin_host::HistogramSnapshot;

use super::Services;
use crate::metrics::Metrics;

/// The content type of the OpenMetrics text format.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `/metrics` route.
pub fn router(services: &Services) -> Router {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(BrokerCollector {
        services: services.clone(),
    }));
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(Arc::new(registry))
}

async fn scrape(State(registry): State<Arc<Registry>>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &registry) {
        Ok(()) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        Err(_) => (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the metrics",
        )
            .into_response(),
    }
}

/// Reads the broker's state at every scrape.
pub struct BrokerCollector {
    services: Services,
}

impl fmt::Debug for BrokerCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerCollector").finish_non_exhaustive()
    }
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(value).encode(m)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX)).encode(m)
}

/// A counter with one sample per `(label values, value)`.
fn counters<const N: usize>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    labels: [&str; N],
    samples: &[([&str; N], u64)],
) -> fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (values, value) in samples {
        let set: [(&str, &str); N] = std::array::from_fn(|i| (labels[i], values[i]));
        ConstCounter::new(*value).encode(m.encode_family(&set)?)?;
    }
    Ok(())
}

fn histograms(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    samples: &[(&str, HistogramSnapshot)],
) -> fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (value, h) in samples {
        let set = [(label, *value)];
        m.encode_family(&set)?
            .encode_histogram::<NoLabelSet>(h.sum_secs, h.count, &h.buckets, None)?;
    }
    Ok(())
}

impl Collector for BrokerCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let broker = &self.services.broker;
        let m = &broker.metrics;
        let get = Metrics::get;
        e.encode_descriptor(
            "wasmq_build",
            "The broker's version.",
            None,
            MetricType::Info,
        )?
        .encode_info(&[("version", env!("CARGO_PKG_VERSION"))])?;
        gauge(
            &mut e,
            "wasmq_uptime_seconds",
            "Seconds since the broker started.",
            broker.started.elapsed().as_secs(),
        )?;
        gauge(
            &mut e,
            "wasmq_clients_connected",
            "Clients connected now.",
            get(&m.clients_connected),
        )?;
        gauge(
            &mut e,
            "wasmq_sessions",
            "Sessions, connected or not.",
            broker.session_count() as u64,
        )?;
        gauge(
            &mut e,
            "wasmq_subscriptions",
            "Subscriptions of every session.",
            broker.subscription_count() as u64,
        )?;
        gauge(
            &mut e,
            "wasmq_retained_messages",
            "Retained messages stored.",
            broker.retained_count() as u64,
        )?;
        counter(
            &mut e,
            "wasmq_retained_refused",
            "Retained messages on a new topic not retained because the retained store was \
             at max_retained_messages (the messages themselves were routed).",
            Metrics::get(&m.retained_refused_full),
        )?;
        let depths = broker.queue_depths();
        gauge(
            &mut e,
            "wasmq_queued_messages",
            "Messages waiting in the sessions' queues, all sessions together.",
            depths.queued,
        )?;
        gauge(
            &mut e,
            "wasmq_inflight_messages",
            "QoS 1/2 messages sent to clients and not yet acknowledged.",
            depths.inflight,
        )?;
        gauge(
            &mut e,
            "wasmq_longest_queue_messages",
            "Messages in the longest session queue.",
            depths.longest_queue,
        )?;
        counter(
            &mut e,
            "wasmq_messages_received",
            "PUBLISH packets received from clients.",
            get(&m.messages_received),
        )?;
        counter(
            &mut e,
            "wasmq_messages_sent",
            "PUBLISH packets sent to clients.",
            get(&m.messages_sent),
        )?;
        counters(
            &mut e,
            "wasmq_messages_dropped",
            "Messages not delivered, by reason: a full session queue, a share group with \
             no member to take it, QoS 0 for an offline session, the durable store full, \
             larger than the client's Maximum Packet Size, expired before it could be \
             sent, not authorized for the subscriber (the deliver hook).",
            ["reason"],
            &[
                (["queue_full"], get(&m.messages_dropped_queue_full)),
                (
                    ["no_share_member"],
                    get(&m.messages_dropped_no_share_member),
                ),
                (["offline_qos0"], get(&m.messages_dropped_offline_qos0)),
                (["store_full"], get(&m.messages_dropped_store_full)),
                (["too_large"], get(&m.messages_dropped_too_large)),
                (["expired"], get(&m.messages_expired)),
                (["not_authorized"], get(&m.messages_dropped_not_authorized)),
            ],
        )?;
        counter(
            &mut e,
            "wasmq_bytes_received",
            "Bytes read from client sockets.",
            get(&m.bytes_received),
        )?;
        counter(
            &mut e,
            "wasmq_bytes_sent",
            "Bytes written to client sockets.",
            get(&m.bytes_sent),
        )?;
        counter(
            &mut e,
            "wasmq_protocol_errors",
            "Connections closed for a protocol violation or a malformed packet.",
            get(&m.protocol_errors),
        )?;
        let (c, r) = (&m.enhanced_auth_connect, &m.enhanced_auth_reauth);
        counters(
            &mut e,
            "wasmq_enhanced_auth_started",
            "MQTT 5 enhanced authentication exchanges begun, by phase: at CONNECT (a \
             CONNECT with an Authentication Method) or a re-authentication (AUTH 0x19).",
            ["phase"],
            &[
                (["connect"], get(&c.started)),
                (["reauth"], get(&r.started)),
            ],
        )?;
        counters(
            &mut e,
            "wasmq_enhanced_auth_ended",
            "MQTT 5 enhanced authentication exchanges ended, by phase and result: \
             succeeded, refused (by the plugin, a limit or a broken step), timed out (the \
             client did not finish within connect_timeout_ms or reauth_timeout_ms). Those \
             started and not ended are under way or were abandoned by the client.",
            ["phase", "result"],
            &[
                (["connect", "succeeded"], get(&c.succeeded)),
                (["connect", "refused"], get(&c.refused)),
                (["connect", "timed_out"], get(&c.timed_out)),
                (["reauth", "succeeded"], get(&r.succeeded)),
                (["reauth", "refused"], get(&r.refused)),
                (["reauth", "timed_out"], get(&r.timed_out)),
            ],
        )?;
        counter(
            &mut e,
            "wasmq_publishers_held",
            "Times a publisher was held back (its socket not read) by a congested queue.",
            get(&m.publishers_held),
        )?;
        counter(
            &mut e,
            "wasmq_subscribers_slow",
            "Times a subscriber did not drain in time while a publisher waited for it.",
            get(&m.subscribers_slow),
        )?;
        let coalesced = broker.hooks.as_ref().map_or(0, |h| h.authz_coalesced());
        counter(
            &mut e,
            "wasmq_authz_coalesced",
            "Authorization requests that waited for the same one in flight instead of \
             asking the plugins again.",
            coalesced,
        )?;
        let lookups = crate::authz_cache::lookups();
        counters(
            &mut e,
            "wasmq_cache_lookups",
            "Lookups in the per-connection caches of authorization decisions (authz), \
             delivery checks on wildcard subscriptions (deliver) and per-topic transforms \
             (transform); a miss asks the plugins.",
            ["cache", "result"],
            &[
                (["authz", "hit"], lookups.authz_hits),
                (["authz", "miss"], lookups.authz_misses),
                (["deliver", "hit"], lookups.deliver_hits),
                (["deliver", "miss"], lookups.deliver_misses),
                (["transform", "hit"], lookups.transform_hits),
                (["transform", "miss"], lookups.transform_misses),
            ],
        )?;
        if let Some(folder) = &self.services.plugins {
            self.encode_plugins(&mut e, folder)?;
        }
        if let Some(db) = &self.services.database {
            counter(
                &mut e,
                "wasmq_database_query_failures",
                "Database queries that failed (unreachable, timed out, refused).",
                db.failures(),
            )?;
            let backend = db.backend().to_string();
            histograms(
                &mut e,
                "wasmq_database_query_duration_seconds",
                "Time database queries took, failed ones included.",
                "backend",
                &[(backend.as_str(), db.latency())],
            )?;
        }
        Ok(())
    }
}

impl BrokerCollector {
    fn encode_plugins(
        &self,
        e: &mut DescriptorEncoder,
        folder: &crate::plugins::PluginFolder,
    ) -> fmt::Result {
        let stats = &folder.stats;
        let read = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        counter(
            e,
            "wasmq_plugin_loads",
            "Plugins loaded or reloaded.",
            read(&stats.loads),
        )?;
        counter(
            e,
            "wasmq_plugin_load_failures",
            "Plugin files that failed to load (a previous version kept serving).",
            read(&stats.failures),
        )?;
        let set = folder.live().chain.current();
        let plugins = set.plugins();
        let all: Vec<(&str, wasmq_plugin_host::PluginStats)> =
            plugins.iter().map(|p| (p.name(), p.stats())).collect();
        let calls: Vec<([&str; 1], u64)> = all.iter().map(|(n, s)| ([*n], s.calls)).collect();
        counters(
            e,
            "wasmq_plugin_calls",
            "Hook calls of each loaded plugin since it was loaded.",
            ["plugin"],
            &calls,
        )?;
        let faults: Vec<([&str; 2], u64)> = all
            .iter()
            .flat_map(|(n, s)| {
                [
                    ([*n, "timeout"], s.timeouts),
                    ([*n, "trap"], s.traps),
                    ([*n, "memory"], s.memory_limits),
                    ([*n, "refused"], s.refused),
                ]
            })
            .collect();
        counters(
            e,
            "wasmq_plugin_faults",
            "Failed hook calls of each plugin, by kind: past its deadline, trapped, past \
             its memory cap, refused (disabled, or no instance could be made).",
            ["plugin", "kind"],
            &faults,
        )?;
        {
            let mut disabled = e.encode_descriptor(
                "wasmq_plugin_disabled",
                "1 while the plugin is disabled after repeated faults (until its retry, or a reload).",
                None,
                MetricType::Gauge,
            )?;
            for (name, s) in &all {
                let set = [("plugin", *name)];
                ConstGauge::new(i64::from(s.disabled)).encode(disabled.encode_family(&set)?)?;
            }
        }
        let latencies: Vec<(&str, HistogramSnapshot)> =
            plugins.iter().map(|p| (p.name(), p.latency())).collect();
        histograms(
            e,
            "wasmq_plugin_call_duration_seconds",
            "Time hook calls took, per plugin, faulted ones included.",
            "plugin",
            &latencies,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Broker, Config};

    async fn scrape(services: &Services) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(BrokerCollector {
            services: services.clone(),
        }));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

    fn sample<'a>(text: &'a str, prefix: &str) -> &'a str {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix}... in\n{text}"))
            .trim()
    }

    #[tokio::test]
    async fn counters_gauges_and_histograms_in_the_openmetrics_text_format() {
        let broker = Broker::new(Config::default(), None);
        Metrics::add(&broker.metrics.messages_received, 3);
        Metrics::add(&broker.metrics.messages_dropped_too_large, 2);
        Metrics::add(&broker.metrics.enhanced_auth_reauth.timed_out, 4);
        let database = wasmq_plugin_host::Database::open(&wasmq_plugin_host::DatabaseConfig {
            url: "sqlite::memory:".into(),
            ..Default::default()
        })
        .await
        .unwrap();
        for _ in 0..3 {
            database.execute("SELECT 1", &[]).await.unwrap();
        }
        let services = Services {
            broker,
            plugins: None,
            database: Some(Arc::new(database)),
            plugins_dir: "./plugins".into(),
            ready: Default::default(),
        };
        let text = scrape(&services).await;
        assert!(
            text.contains("# TYPE wasmq_messages_received counter\n"),
            "{text}"
        );
        assert_eq!(sample(&text, "wasmq_messages_received_total "), "3");
        assert_eq!(
            sample(
                &text,
                r#"wasmq_messages_dropped_total{reason="too_large"} "#
            ),
            "2"
        );
        assert_eq!(
            sample(
                &text,
                r#"wasmq_enhanced_auth_ended_total{phase="reauth",result="timed_out"} "#
            ),
            "4"
        );
        assert_eq!(sample(&text, "wasmq_clients_connected "), "0");
        assert!(text.contains("# TYPE wasmq_clients_connected gauge\n"));
        assert_eq!(
            sample(&text, r#"wasmq_build_info{version=""#)
                .split_once(' ')
                .unwrap()
                .1,
            "1"
        );
        // The histogram: cumulative buckets, +Inf equal to the count.
        let h = "wasmq_database_query_duration_seconds";
        assert!(text.contains(&format!("# TYPE {h} histogram\n")), "{text}");
        assert_eq!(
            sample(&text, &format!(r#"{h}_count{{backend="sqlite"}} "#)),
            "3"
        );
        assert_eq!(
            sample(
                &text,
                &format!(r#"{h}_bucket{{le="+Inf",backend="sqlite"}} "#)
            ),
            "3"
        );
        let buckets: Vec<u64> = text
            .lines()
            .filter(|l| l.starts_with(&format!("{h}_bucket")))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(buckets.len(), 15);
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
        assert!(text.ends_with("# EOF\n"));
        // No plugin system: no plugin metrics.
        assert!(!text.contains("wasmq_plugin_"));
    }
}
