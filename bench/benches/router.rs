//! The subscription trie: matching a topic against 10k and 100k subscriptions, and the
//! fan-out walk when many subscribers share one filter.
//!
//! The table mixes exact filters (`site/<s>/dev/<d>/temp`), single-level wildcards
//! (`site/<s>/+/<d>/temp`) and multi-level ones (`site/<s>/dev/#`) the way a fleet of
//! devices and dashboards would. A broker-level fan-out (routing one PUBLISH to N live
//! sessions) needs sessions and connections; the end-to-end `fan-out` scenarios of
//! `scripts/bench` measure that.

use std::hint::black_box;
use std::time::Duration;

use bytestring::ByteString;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use wasmq::router::{Match, Router, SubscriptionData};
use wasmq::topic::{TopicFilter, TopicName};
use wasmq_codec::{QoS, SubscriptionOptions};

fn data() -> SubscriptionData {
    SubscriptionData {
        options: SubscriptionOptions::qos(QoS::AtLeastOnce),
        id: None,
    }
}

fn filter(text: String) -> TopicFilter {
    TopicFilter::new(ByteString::from(text), usize::MAX).expect("valid filter")
}

/// `n` subscriptions: 90% exact, 8% with `+`, 2% with `#`, one subscriber each.
fn table(n: u32) -> Router<u32> {
    let mut router = Router::default();
    for i in 0..n {
        let (site, dev) = (i / 100, i % 100);
        let text = match i % 50 {
            0 => format!("site/{site}/dev/#"),
            1..=4 => format!("site/{site}/+/{dev}/temp"),
            _ => format!("site/{site}/dev/{dev}/temp"),
        };
        router.subscribe(&filter(text), i, data());
    }
    router
}

fn name(text: impl Into<ByteString>) -> TopicName {
    TopicName::new(text.into(), usize::MAX).expect("valid topic name")
}

fn count(router: &Router<u32>, topic: &TopicName) -> usize {
    let mut n = 0;
    router.matches(topic, |m| {
        // `black_box`: a callback that only counts lets the compiler replace the walk
        // over a filter's subscribers by the list's length (10,000 subscribers in 43 ns).
        n += match black_box(m) {
            Match::Direct(..) => 1,
            Match::Shared(group) => usize::from(group.pick(|_| true).is_some()),
        }
    });
    n
}

fn matching(c: &mut Criterion) {
    let mut group = c.benchmark_group("match");
    for n in [10_000u32, 100_000] {
        let router = table(n);
        let sites = n / 100;
        // A topic with subscribers (exact + `+` + `#` may all match) and one with none.
        let hit = name(format!("site/{}/dev/55/temp", sites / 2));
        let miss = name(format!("site/{}/dev/55/humidity", sites + 7));
        assert!(count(&router, &hit) >= 1);
        group.bench_with_input(BenchmarkId::new("hit", n), &hit, |b, topic| {
            b.iter(|| count(&router, black_box(topic)))
        });
        group.bench_with_input(BenchmarkId::new("miss", n), &miss, |b, topic| {
            b.iter(|| count(&router, black_box(topic)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("subscribe");
    group.bench_function("build 10k", |b| b.iter(|| table(black_box(10_000)).len()));
    group.finish();
}

fn fan_out(c: &mut Criterion) {
    let mut group = c.benchmark_group("fan-out");
    let football = name("news/sport/football");
    for n in [1u32, 100, 1_000, 10_000] {
        let mut router = Router::default();
        let f = filter("news/sport/#".into());
        for who in 0..n {
            router.subscribe(&f, who, data());
        }
        let shared = filter("$share/workers/news/sport/#".into());
        let mut shared_router = Router::default();
        for who in 0..n {
            shared_router.subscribe(&shared, who, data());
        }
        group.bench_with_input(BenchmarkId::new("direct", n), &n, |b, &n| {
            b.iter(|| assert_eq!(count(&router, black_box(&football)), n as usize))
        });
        group.bench_with_input(BenchmarkId::new("shared group", n), &n, |b, _| {
            b.iter(|| count(&shared_router, black_box(&football)))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = matching, fan_out
}
criterion_main!(benches);
