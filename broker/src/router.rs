//! The subscription table: a trie over topic levels, with `+` and `#` branches and shared
//! subscription groups at the nodes where their filters end.
//!
//! The router is generic over the subscriber handle `S` so the broker stores sessions in it
//! and the model test stores plain numbers. It holds no lock itself: the broker keeps it
//! behind a `RwLock`, matched under the read lock on every PUBLISH.

use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::collections::HashMap;

/// foldhash: several times faster than SipHash on short keys (SipHash was 5% of routing
/// time, BENCHMARKS.md), and seeded per process, so clients cannot choose filters that
/// collide (subscribed levels are client input).
type LevelMap<V> = HashMap<Box<str>, V, foldhash::fast::RandomState>;

use wasmq_codec::SubscriptionOptions;

use crate::topic::{TopicFilter, TopicName};

/// What a subscription asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionData {
    /// The options of the SUBSCRIBE.
    pub options: SubscriptionOptions,
    /// The Subscription Identifier, if the SUBSCRIBE carried one.
    pub id: Option<u32>,
}

/// The members of one share group on one filter. Each message goes to one member.
#[derive(Debug)]
pub struct SharedGroup<S> {
    /// The shared filter (`$share/<group>/<filter>`), the same for every member.
    pub filter: TopicFilter,
    /// Members with their subscription, in joining order.
    pub members: Vec<(S, SubscriptionData)>,
    /// Round-robin cursor; atomic because matching runs under a shared (read) lock.
    cursor: AtomicUsize,
}

impl<S> SharedGroup<S> {
    /// The group name.
    pub fn name(&self) -> &str {
        self.filter.share_group().unwrap_or_default()
    }

    /// Picks the next member in round-robin order for which `eligible` holds, or, if none
    /// is eligible, the next member at all. `None` only for an empty group.
    pub fn pick(&self, eligible: impl Fn(&S) -> bool) -> Option<&(S, SubscriptionData)> {
        let n = self.members.len();
        if n == 0 {
            return None;
        }
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| &self.members[(start + i) % n])
            .find(|(s, _)| eligible(s))
            .or_else(|| self.members.get(start % n))
    }
}

/// One match of a topic: a plain subscriber, or a share group to pick one member from.
pub enum Match<'a, S> {
    /// A non-shared subscription, and whether its filter has wildcards (it matched
    /// through a `+` or `#` level): the topic was not covered by its subscribe check.
    Direct(&'a S, &'a SubscriptionData, bool),
    /// A share group whose filter matches.
    Shared(&'a SharedGroup<S>),
}

#[derive(Debug)]
struct Subscribers<S> {
    direct: Vec<(S, SubscriptionData)>,
    shared: Vec<SharedGroup<S>>,
}

impl<S> Default for Subscribers<S> {
    fn default() -> Self {
        Subscribers {
            direct: Vec::new(),
            shared: Vec::new(),
        }
    }
}

impl<S: PartialEq> Subscribers<S> {
    fn is_empty(&self) -> bool {
        self.direct.is_empty() && self.shared.is_empty()
    }

    /// Inserts or replaces; returns true when the subscription already existed.
    fn insert(&mut self, filter: &TopicFilter, who: S, data: SubscriptionData) -> bool {
        let list = match filter.share_group() {
            None => &mut self.direct,
            Some(name) => {
                let index = match self.shared.iter().position(|g| g.name() == name) {
                    Some(index) => index,
                    None => {
                        self.shared.push(SharedGroup {
                            filter: filter.clone(),
                            members: Vec::new(),
                            cursor: AtomicUsize::new(0),
                        });
                        self.shared.len() - 1
                    }
                };
                &mut self.shared[index].members
            }
        };
        match list.iter_mut().find(|(s, _)| *s == who) {
            Some(existing) => {
                existing.1 = data;
                true
            }
            None => {
                list.push((who, data));
                false
            }
        }
    }

    fn remove(&mut self, group: Option<&str>, who: &S) -> bool {
        match group {
            None => remove_from(&mut self.direct, who),
            Some(name) => {
                let Some(index) = self.shared.iter().position(|g| g.name() == name) else {
                    return false;
                };
                let removed = remove_from(&mut self.shared[index].members, who);
                if self.shared[index].members.is_empty() {
                    self.shared.swap_remove(index);
                }
                removed
            }
        }
    }

    fn visit<'a>(&'a self, wildcard: bool, visit: &mut impl FnMut(Match<'a, S>)) {
        for (s, data) in &self.direct {
            visit(Match::Direct(s, data, wildcard));
        }
        for group in &self.shared {
            visit(Match::Shared(group));
        }
    }
}

fn remove_from<S: PartialEq>(list: &mut Vec<(S, SubscriptionData)>, who: &S) -> bool {
    match list.iter().position(|(s, _)| s == who) {
        Some(index) => {
            // Order of plain subscribers carries no meaning, so swap_remove is fine.
            list.swap_remove(index);
            true
        }
        None => false,
    }
}

#[derive(Debug)]
struct Node<S> {
    children: LevelMap<Node<S>>,
    plus: Option<Box<Node<S>>>,
    /// Subscriptions whose filter ends at this node.
    exact: Subscribers<S>,
    /// Subscriptions whose filter is this node's path followed by `/#` (or `#` at the root).
    multi: Subscribers<S>,
}

impl<S> Default for Node<S> {
    fn default() -> Self {
        Node {
            children: LevelMap::default(),
            plus: None,
            exact: Subscribers::default(),
            multi: Subscribers::default(),
        }
    }
}

impl<S: PartialEq> Node<S> {
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.plus.is_none()
            && self.exact.is_empty()
            && self.multi.is_empty()
    }
}

/// The subscription trie.
#[derive(Debug)]
pub struct Router<S> {
    root: Node<S>,
    len: usize,
}

impl<S> Default for Router<S> {
    fn default() -> Self {
        Router {
            root: Node::default(),
            len: 0,
        }
    }
}

impl<S: Clone + PartialEq + Eq + Hash> Router<S> {
    /// Number of subscriptions (each share-group member counts once).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is no subscription at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds or replaces `who`'s subscription to `filter`; true when it already existed.
    pub fn subscribe(&mut self, filter: &TopicFilter, who: S, data: SubscriptionData) -> bool {
        let mut node = &mut self.root;
        let mut levels = filter.filter().split('/').peekable();
        let mut multi = false;
        while let Some(level) = levels.next() {
            if level == "#" && levels.peek().is_none() {
                multi = true;
                break;
            }
            node = if level == "+" {
                node.plus.get_or_insert_with(Box::default)
            } else {
                node.children.entry(level.into()).or_default()
            };
        }
        let subs = if multi {
            &mut node.multi
        } else {
            &mut node.exact
        };
        let existed = subs.insert(filter, who, data);
        if !existed {
            self.len += 1;
        }
        existed
    }

    /// Removes `who`'s subscription to `filter`; true when there was one.
    pub fn unsubscribe(&mut self, filter: &TopicFilter, who: &S) -> bool {
        let levels: Vec<&str> = filter.filter().split('/').collect();
        let removed = remove(&mut self.root, &levels, filter.share_group(), who);
        if removed {
            self.len -= 1;
        }
        removed
    }

    /// The share group of a `$share/...` filter, if it has members.
    pub fn shared_group(&self, filter: &TopicFilter) -> Option<&SharedGroup<S>> {
        let name = filter.share_group()?;
        let mut node = &self.root;
        let mut levels = filter.filter().split('/').peekable();
        let mut multi = false;
        while let Some(level) = levels.next() {
            if level == "#" && levels.peek().is_none() {
                multi = true;
                break;
            }
            node = if level == "+" {
                node.plus.as_deref()?
            } else {
                node.children.get(level)?
            };
        }
        let subs = if multi { &node.multi } else { &node.exact };
        subs.shared.iter().find(|g| g.name() == name)
    }

    /// Calls `visit` for every subscription matching `topic`.
    pub fn matches<'a>(&'a self, topic: &TopicName, mut visit: impl FnMut(Match<'a, S>)) {
        let topic = topic.as_str();
        let dollar = topic.starts_with('$');
        walk(&self.root, Some(topic), true, dollar, false, &mut visit);
    }
}

/// `via_plus`: the path to `node` went through a `+` level.
fn walk<'a, S: PartialEq>(
    node: &'a Node<S>,
    rest: Option<&str>,
    at_root: bool,
    dollar: bool,
    via_plus: bool,
    visit: &mut impl FnMut(Match<'a, S>),
) {
    // A wildcard in the first level never matches a topic starting with '$' [MQTT-4.7.2-1].
    let wildcards = !(at_root && dollar);
    if wildcards {
        node.multi.visit(true, visit);
    }
    let Some(rest) = rest else {
        node.exact.visit(via_plus, visit);
        return;
    };
    let (level, tail) = match rest.split_once('/') {
        Some((level, tail)) => (level, Some(tail)),
        None => (rest, None),
    };
    if let Some(child) = node.children.get(level) {
        walk(child, tail, false, dollar, via_plus, visit);
    }
    if wildcards && let Some(plus) = &node.plus {
        walk(plus, tail, false, dollar, true, visit);
    }
}

fn remove<S: PartialEq>(node: &mut Node<S>, levels: &[&str], group: Option<&str>, who: &S) -> bool {
    match levels {
        [] => node.exact.remove(group, who),
        ["#"] => node.multi.remove(group, who),
        [level, rest @ ..] => {
            let removed;
            if *level == "+" {
                let Some(plus) = node.plus.as_mut() else {
                    return false;
                };
                removed = remove(plus, rest, group, who);
                if plus.is_empty() {
                    node.plus = None;
                }
            } else {
                let Some(child) = node.children.get_mut(*level) else {
                    return false;
                };
                removed = remove(child, rest, group, who);
                if child.is_empty() {
                    node.children.remove(*level);
                }
            }
            removed
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use wasmq_codec::QoS;

    use super::*;
    use crate::topic;

    fn data() -> SubscriptionData {
        SubscriptionData {
            options: SubscriptionOptions::qos(QoS::AtMostOnce),
            id: None,
        }
    }

    fn filter(s: &str) -> TopicFilter {
        TopicFilter::new(s.into(), usize::MAX).unwrap()
    }

    fn name(s: &str) -> TopicName {
        TopicName::new(s.into(), usize::MAX).unwrap()
    }

    fn matched(router: &Router<u32>, topic: &str) -> Vec<u32> {
        let mut out = Vec::new();
        router.matches(&name(topic), |m| match m {
            Match::Direct(s, _, _) => out.push(*s),
            Match::Shared(g) => out.extend(g.members.iter().map(|(s, _)| *s)),
        });
        out.sort();
        out
    }

    #[test]
    fn subscribe_replace_and_unsubscribe_prune() {
        let mut router = Router::default();
        assert!(!router.subscribe(&filter("a/+/c"), 1, data()));
        assert!(router.subscribe(&filter("a/+/c"), 1, data()));
        assert!(!router.subscribe(&filter("a/#"), 2, data()));
        assert_eq!(router.len(), 2);
        assert_eq!(matched(&router, "a/b/c"), vec![1, 2]);
        assert!(router.unsubscribe(&filter("a/+/c"), &1));
        assert!(!router.unsubscribe(&filter("a/+/c"), &1));
        assert!(router.unsubscribe(&filter("a/#"), &2));
        assert!(router.root.is_empty(), "empty branches are pruned");
    }

    #[test]
    fn a_direct_match_says_whether_its_filter_has_wildcards() {
        let mut router = Router::default();
        for (who, f) in [(1, "a/b"), (2, "a/+"), (3, "#"), (4, "+/b"), (5, "a/b/#")] {
            router.subscribe(&filter(f), who, data());
        }
        let mut seen = Vec::new();
        router.matches(&name("a/b"), |m| {
            if let Match::Direct(s, _, wildcard) = m {
                seen.push((*s, wildcard));
            }
        });
        seen.sort();
        assert_eq!(
            seen,
            [(1, false), (2, true), (3, true), (4, true), (5, true)]
        );
    }

    #[test]
    fn shared_groups_pick_round_robin_and_prefer_eligible() {
        let mut router = Router::default();
        for who in [1, 2, 3] {
            router.subscribe(&filter("$share/g/t"), who, data());
        }
        let mut picks = Vec::new();
        for _ in 0..6 {
            router.matches(&name("t"), |m| {
                if let Match::Shared(g) = m {
                    picks.push(g.pick(|s| *s != 2).unwrap().0);
                }
            });
        }
        assert!(!picks.contains(&2));
        assert!(picks.contains(&1) && picks.contains(&3));
    }

    const LEVELS: &[&str] = &["a", "b", "", "$SYS", "c"];

    fn arb_topic() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(LEVELS), 1..4)
            .prop_map(|v| v.join("/"))
            .prop_filter("valid name", |t| {
                TopicName::new(t.as_str().into(), usize::MAX).is_ok()
            })
    }

    fn arb_filter() -> impl Strategy<Value = String> {
        let level = prop::sample::select(&["a", "b", "", "$SYS", "+", "#"][..]);
        prop::collection::vec(level, 1..4)
            .prop_map(|v| v.join("/"))
            .prop_filter("valid filter", |f| {
                TopicFilter::new(f.as_str().into(), usize::MAX).is_ok()
            })
    }

    proptest! {
        /// The trie agrees with the naive rule (`topic::matches` over a list of filters)
        /// after any sequence of subscribes and unsubscribes.
        #[test]
        fn trie_matches_the_naive_model(
            ops in prop::collection::vec((any::<bool>(), 0u32..4, arb_filter()), 1..40),
            topics in prop::collection::vec(arb_topic(), 1..10),
        ) {
            let mut router = Router::default();
            let mut model: Vec<(u32, String)> = Vec::new();
            for (add, who, f) in &ops {
                if *add {
                    router.subscribe(&filter(f), *who, data());
                    if !model.iter().any(|(w, mf)| w == who && mf == f) {
                        model.push((*who, f.clone()));
                    }
                } else {
                    router.unsubscribe(&filter(f), who);
                    model.retain(|(w, mf)| !(w == who && mf == f));
                }
            }
            prop_assert_eq!(router.len(), model.len());
            for t in &topics {
                let mut expected: Vec<u32> = model
                    .iter()
                    .filter(|(_, f)| topic::matches(f, t))
                    .map(|(w, _)| *w)
                    .collect();
                expected.sort();
                prop_assert_eq!(matched(&router, t), expected, "topic {}", t);
            }
        }
    }
}
