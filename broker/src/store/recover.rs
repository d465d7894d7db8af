//! Reading the store back at start-up: every key, grouped by session, into the snapshots
//! and retained messages the broker starts from. A value that cannot be read is dropped
//! and counted, never a reason not to start; a store of a newer format is refused.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use anyhow::bail;
use bytestring::ByteString;
use tracing::{info, warn};
use wasmq_codec::LastWill;

use super::FORMAT;
use super::backend::Backend;
use super::journal::Op;
use super::record::{self, Key, RecordError, SessionMeta, StoredDelivery};
use crate::message::Message;
use crate::router::SubscriptionData;
use crate::storage::SessionSnapshot;
use crate::topic::TopicFilter;

/// What the store held.
pub struct Recovered {
    /// Persistent sessions, offline.
    pub sessions: Vec<SessionSnapshot>,
    /// Retained messages.
    pub retained: Vec<Arc<Message>>,
    /// Changes to write first: the format on a new store, damaged values to drop.
    pub cleanup: Vec<Op>,
    /// Past the number of every delivery in the store.
    pub next_delivery: u64,
}

#[derive(Default)]
struct Partial {
    meta: Option<SessionMeta>,
    subscriptions: Vec<(TopicFilter, SubscriptionData)>,
    deliveries: BTreeMap<u64, StoredDelivery>,
    incoming: Vec<u16>,
    will: Option<LastWill>,
}

/// Reads every key of `backend`.
pub fn recover(backend: &dyn Backend, max_levels: usize, dir: &Path) -> anyhow::Result<Recovered> {
    let started = Instant::now();
    let (now, wall_now) = (Instant::now(), SystemTime::now());
    let mut sessions: HashMap<String, Partial> = HashMap::new();
    let mut retained = Vec::new();
    let mut format = None;
    let mut alive = None;
    let mut damaged: Vec<(Vec<u8>, String)> = Vec::new();
    backend.scan(&mut |key, value| {
        let Some(parsed) = Key::parse(key) else {
            damaged.push((key.to_vec(), "unknown key".into()));
            return;
        };
        let mut read = || -> Result<(), RecordError> {
            match parsed {
                Key::Meta("format") => {
                    format = Some(u32::from_be_bytes(
                        value
                            .try_into()
                            .map_err(|_| RecordError::Damaged("format"))?,
                    ));
                }
                Key::Meta("alive") => {
                    alive = Some(record::from_unix_millis(u64::from_be_bytes(
                        value
                            .try_into()
                            .map_err(|_| RecordError::Damaged("alive"))?,
                    )));
                }
                Key::Meta(_) => {}
                Key::Retained(_) => {
                    retained.push(record::decode_retained(value, now, wall_now)?);
                }
                Key::Session(id) => {
                    sessions.entry(id.into()).or_default().meta = Some(SessionMeta::decode(value)?);
                }
                Key::Subscription(id, _) => {
                    let subscription = record::decode_subscription(value, max_levels)?;
                    sessions
                        .entry(id.into())
                        .or_default()
                        .subscriptions
                        .push(subscription);
                }
                Key::Delivery(id, seq) => {
                    let delivery = record::decode_delivery(value, now, wall_now, max_levels)?;
                    sessions
                        .entry(id.into())
                        .or_default()
                        .deliveries
                        .insert(seq, delivery);
                }
                Key::Incoming(id, packet_id) => {
                    sessions
                        .entry(id.into())
                        .or_default()
                        .incoming
                        .push(packet_id);
                }
                Key::Will(id) => {
                    sessions.entry(id.into()).or_default().will = Some(record::decode_will(value)?);
                }
            }
            Ok(())
        };
        if let Err(error) = read() {
            damaged.push((key.to_vec(), error.to_string()));
        }
    })?;
    if let Some(format) = format
        && format > FORMAT
    {
        bail!(
            "the store in {} has format {format}, newer than this broker's {FORMAT}: run a \
             newer wasmq, or move the folder aside to start with an empty store",
            dir.display()
        );
    }
    let mut cleanup = Vec::new();
    if format.is_none() {
        cleanup.push(Op::Put {
            key: record::meta_key("format"),
            value: FORMAT.to_be_bytes().to_vec(),
            fresh: false,
        });
    }
    for (key, why) in &damaged {
        warn!(key = %String::from_utf8_lossy(key), why, "store: dropping a value that cannot be read");
        cleanup.push(Op::Delete(key.clone()));
    }
    // A session connected when the broker stopped without saying so (a crash) went
    // offline at the store's last sign of life.
    let crashed_at = alive.unwrap_or(wall_now);
    let mut snapshots = Vec::with_capacity(sessions.len());
    let mut orphans = 0;
    let mut next_delivery = 1;
    for (client_id, partial) in sessions {
        let Some(meta) = partial.meta else {
            // Parts of a session whose record is gone (it ended as the batch that
            // removed it was cut short): nothing to resume.
            orphans += 1;
            cleanup.push(Op::DeletePrefix(record::session_prefix(&client_id)));
            continue;
        };
        let mut queue = Vec::new();
        let mut inflight = Vec::new();
        for (seq, delivery) in partial.deliveries {
            next_delivery = next_delivery.max(seq + 1);
            match delivery {
                StoredDelivery::Queued(mut d) => {
                    d.stored = seq;
                    queue.push(d);
                }
                StoredDelivery::InFlight(mut o) => {
                    o.delivery.stored = seq;
                    inflight.push(o);
                }
            }
        }
        snapshots.push(SessionSnapshot {
            client_id: ByteString::from(client_id),
            expiry_interval: meta.expiry_interval,
            disconnected_at: meta.disconnected_at.unwrap_or(crashed_at),
            subscriptions: partial.subscriptions,
            queue,
            // In key order, which is the order they were queued and so sent.
            inflight,
            incoming_qos2: partial.incoming,
            will: partial.will,
        });
    }
    let messages: usize = snapshots
        .iter()
        .map(|s| s.queue.len() + s.inflight.len())
        .sum();
    info!(
        dir = %dir.display(),
        sessions = snapshots.len(),
        messages,
        retained = retained.len(),
        dropped = damaged.len() + orphans,
        ms = started.elapsed().as_millis() as u64,
        "store read back"
    );
    Ok(Recovered {
        sessions: snapshots,
        retained,
        cleanup,
        next_delivery,
    })
}
