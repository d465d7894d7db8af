//! Chain semantics over an ordered set of plugins ([`PluginSet`]) and the
//! atomically swappable current set ([`Chain`]).
//!
//! - authn/authz: plugins in priority order; the first allow or deny decides;
//!   ignore passes on; when every plugin ignores the answer is `Ignore` and
//!   the broker's own setting decides (`allow_anonymous`, `acl_nomatch`). A
//!   faulting plugin (trap, timeout, memory, disabled) decides **deny**.
//! - transform: each plugin sees the previous one's output; `drop` stops; a
//!   faulting plugin keeps the message as it was (or drops it, per its
//!   `on_transform_fault`).
//!
//! A swap replaces the whole set at once; a call that already took its
//! snapshot finishes on the old set.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;

use wasmq_codec::Publish;
use wasmq_policy::{Action, CacheLifetime, ClientInfo, Decision, Edit, Transformed};

use crate::bindings::{
    Changes, PreparedClient, apply_change, converted, placeholder_message, prepared, publish_from,
    wit,
};
use crate::plugin::{OnTransformFault, Plugin};
use crate::types::{AuthOutcome, HookSet, PluginAuthStep};

/// An immutable, ordered set of plugins: one generation of the plugin folder.
#[derive(Clone, Debug, Default)]
pub struct PluginSet {
    plugins: Vec<Plugin>,
    /// The hooks at least one plugin has enabled: the broker asks this on every
    /// PUBLISH ("is there a transform at all?"), so it is computed once per set.
    hooks: HookSet,
    /// Whether every transform of the set is declared per topic (and there is one).
    transform_per_topic: bool,
    /// Whether a transform of the set takes batches (exports `transform-batch`).
    transform_batch: bool,
}

impl PluginSet {
    /// Orders `plugins` by priority (lower first), then by name.
    pub fn new(mut plugins: Vec<Plugin>) -> Self {
        plugins
            .sort_by(|a, b| (a.config().priority, a.name()).cmp(&(b.config().priority, b.name())));
        PluginSet::ordered(plugins)
    }

    fn ordered(plugins: Vec<Plugin>) -> Self {
        let hooks = plugins.iter().fold(HookSet::default(), |all, p| {
            let h = p.hooks();
            HookSet {
                authn: all.authn || h.authn,
                authz: all.authz || h.authz,
                deliver: all.deliver || h.deliver,
                transform: all.transform || h.transform,
                auth: all.auth || h.auth,
            }
        });
        let transforms = || plugins.iter().filter(|p| p.hooks().transform);
        let transform_per_topic =
            transforms().next().is_some() && transforms().all(|p| p.config().transform_per_topic);
        let transform_batch = transforms().any(Plugin::transforms_in_batches);
        PluginSet {
            plugins,
            hooks,
            transform_per_topic,
            transform_batch,
        }
    }

    /// The hooks at least one plugin of the set has enabled.
    pub fn hooks(&self) -> HookSet {
        self.hooks
    }

    /// The plugins, in chain order.
    pub fn plugins(&self) -> &[Plugin] {
        &self.plugins
    }

    /// The plugin named `name`.
    pub fn get(&self, name: &str) -> Option<&Plugin> {
        self.plugins.iter().find(|p| p.name() == name)
    }

    /// This set with `plugin` added, or replacing the one with the same name
    /// (a reload).
    pub fn with(&self, plugin: Plugin) -> PluginSet {
        let mut plugins: Vec<Plugin> = self
            .plugins
            .iter()
            .filter(|p| p.name() != plugin.name())
            .cloned()
            .collect();
        plugins.push(plugin);
        PluginSet::new(plugins)
    }

    /// This set without the plugin named `name` (an unload).
    pub fn without(&self, name: &str) -> PluginSet {
        PluginSet::ordered(
            self.plugins
                .iter()
                .filter(|p| p.name() != name)
                .cloned()
                .collect(),
        )
    }

    /// Runs the authentication chain. `Ignore` when no plugin decided.
    pub async fn authenticate(&self, client: &ClientInfo, password: Option<&[u8]>) -> AuthOutcome {
        self.authenticate_counted(&converted(client), password, None)
            .await
    }

    /// Runs the authorization chain. `Ignore` when no plugin decided.
    pub async fn authorize(
        &self,
        client: &ClientInfo,
        action: Action,
        topic: &str,
        qos: u8,
        retain: bool,
    ) -> Decision {
        self.authorize_outcome(client, action, topic, qos, retain)
            .await
            .decision
    }

    /// [`PluginSet::authorize`], saying whether a plugin faulted (then the decision
    /// is the fail-closed deny, and not worth remembering) and for how long the
    /// answer may be kept.
    pub async fn authorize_outcome(
        &self,
        client: &ClientInfo,
        action: Action,
        topic: &str,
        qos: u8,
        retain: bool,
    ) -> AuthzOutcome {
        self.authorize_counted(prepared(client), action, topic, qos, retain, None)
            .await
    }

    /// Runs the delivery chain: may `client` receive a message on `topic` (it reaches
    /// the client through a wildcard subscription)? The plugins that export `deliver`,
    /// in order; the first allow or deny decides, a fault denies (`faulted`). `Ignore`
    /// when none decided: the caller lets the delivery go (the subscription's grant
    /// stands).
    pub async fn authorize_delivery(
        &self,
        client: &ClientInfo,
        topic: &str,
        qos: u8,
        retain: bool,
    ) -> AuthzOutcome {
        let mut cache = CacheLifetime::CONNECTION;
        if !self.hooks.deliver {
            return AuthzOutcome::decided(Decision::Ignore, CacheLifetime::OPERATOR_TTL);
        }
        let client = prepared(client);
        // A plain loop with `continue`, as in `authorize_counted` (a `Send` future).
        for plugin in &self.plugins {
            if !plugin.hooks().deliver {
                continue;
            }
            match plugin
                .authorize_delivery_wit(client, topic, qos, retain)
                .await
            {
                Ok((Decision::Ignore, lifetime)) => cache = cache.shortest(lifetime),
                Ok((decision, lifetime)) => {
                    return AuthzOutcome::decided(decision, cache.shortest(lifetime));
                }
                // Already logged and counted by the plugin; fail closed.
                Err(_) => return AuthzOutcome::FAULTED,
            }
        }
        AuthzOutcome::decided(Decision::Ignore, cache)
    }

    /// Starts an enhanced authentication exchange: the plugins whose `auth` hook lists
    /// `method`, in order, until one answers something other than `Ignore`. Returns
    /// that plugin's name (the one to continue the exchange with, [`PluginSet::auth_step`])
    /// and its answer; `None` when no plugin takes the method. A plugin that faults
    /// answers [`PluginAuthStep::Failure`] (fail closed).
    pub async fn auth_start(
        &self,
        client: &ClientInfo,
        method: &str,
        data: Option<&[u8]>,
    ) -> Option<(&str, PluginAuthStep)> {
        if !self.hooks.auth {
            return None;
        }
        for plugin in &self.plugins {
            if !plugin.hooks().auth {
                continue;
            }
            let lists = match plugin.auth_methods().await {
                Ok(methods) => methods.iter().any(|m| m == method),
                Err(fault) => {
                    return Some((plugin.name(), PluginAuthStep::Failure(fault.to_string())));
                }
            };
            if !lists {
                continue;
            }
            match plugin.auth_step(client, method, data, None).await {
                Ok(PluginAuthStep::Ignore) => continue,
                Ok(step) => return Some((plugin.name(), step)),
                Err(fault) => {
                    return Some((plugin.name(), PluginAuthStep::Failure(fault.to_string())));
                }
            }
        }
        None
    }

    /// The next step of an exchange that plugin `plugin` started, with the `state` its
    /// last answer gave. A plugin no longer in the set (unloaded meanwhile), an `Ignore`
    /// at this point and a fault all answer [`PluginAuthStep::Failure`].
    pub async fn auth_step(
        &self,
        plugin: &str,
        client: &ClientInfo,
        method: &str,
        data: Option<&[u8]>,
        state: &[u8],
    ) -> PluginAuthStep {
        let Some(plugin) = self.get(plugin) else {
            return PluginAuthStep::Failure(format!("plugin {plugin} is gone"));
        };
        match plugin.auth_step(client, method, data, Some(state)).await {
            Ok(PluginAuthStep::Ignore) => {
                PluginAuthStep::Failure("ignored a step of its own exchange".into())
            }
            Ok(step) => step,
            Err(fault) => PluginAuthStep::Failure(fault.to_string()),
        }
    }

    /// Runs the transform chain on `message`.
    pub async fn transform(&self, client: &ClientInfo, message: &Publish) -> Transformed {
        self.transform_counted(prepared(client), message, None)
            .await
    }

    async fn authenticate_counted(
        &self,
        client: &PreparedClient,
        password: Option<&[u8]>,
        counters: Option<&ChainCounters>,
    ) -> AuthOutcome {
        // A plain loop with `continue` rather than a `filter` iterator held
        // across `.await`: that keeps the future `Send`.
        if !self.hooks.authn {
            return AuthOutcome::ignore();
        }
        for plugin in &self.plugins {
            if !plugin.hooks().authn {
                continue;
            }
            match plugin.authenticate_wit(client, password).await {
                Ok(outcome) if outcome.decision == Decision::Ignore => continue,
                Ok(outcome) => {
                    tracing::debug!(plugin = plugin.name(), client_id = client.v0_2().client_id, decision = ?outcome.decision, "authn decided");
                    return outcome;
                }
                Err(fault) => {
                    if let Some(c) = counters {
                        c.failed_closed.fetch_add(1, Ordering::Relaxed);
                    }
                    return AuthOutcome::deny(format!("plugin {} failed: {fault}", plugin.name()));
                }
            }
        }
        AuthOutcome::ignore()
    }

    async fn authorize_counted(
        &self,
        client: &PreparedClient,
        action: Action,
        topic: &str,
        qos: u8,
        retain: bool,
        counters: Option<&ChainCounters>,
    ) -> AuthzOutcome {
        // A plain loop with `continue` rather than a `filter` iterator held
        // across `.await`: that keeps the future `Send`.
        if !self.hooks.authz {
            return AuthzOutcome::decided(Decision::Ignore, CacheLifetime::OPERATOR_TTL);
        }
        // Every plugin asked bounds how long the answer may be kept, those that
        // ignore included.
        let mut cache = CacheLifetime::CONNECTION;
        for plugin in &self.plugins {
            if !plugin.hooks().authz {
                continue;
            }
            match plugin
                .authorize_wit(client, action, topic, qos, retain)
                .await
            {
                Ok((Decision::Ignore, lifetime)) => cache = cache.shortest(lifetime),
                Ok((decision, lifetime)) => {
                    return AuthzOutcome::decided(decision, cache.shortest(lifetime));
                }
                Err(_) => {
                    // Already logged and counted by the plugin; fail closed.
                    if let Some(c) = counters {
                        c.failed_closed.fetch_add(1, Ordering::Relaxed);
                    }
                    return AuthzOutcome::FAULTED;
                }
            }
        }
        AuthzOutcome::decided(Decision::Ignore, cache)
    }

    /// `message` is copied once into the record the plugins are called with, and
    /// a replacement is made from it (what a plugin cannot see is kept).
    async fn transform_counted(
        &self,
        client: &PreparedClient,
        message: &Publish,
        counters: Option<&ChainCounters>,
    ) -> Transformed {
        // A plain loop with `continue` rather than a `filter` iterator held
        // across `.await`: that keeps the future `Send`.
        if !self.hooks.transform {
            return Transformed::Keep;
        }
        let mut current = wit::Message::from(message);
        let mut replaced = false;
        for plugin in &self.plugins {
            if !plugin.hooks().transform {
                continue;
            }
            match plugin.on_publish_wit(client, &mut current).await {
                Ok(wit::Transformed::Keep) => {}
                Ok(wit::Transformed::Replace(next)) => {
                    current = next;
                    replaced = true;
                }
                Ok(wit::Transformed::Drop(reason)) => {
                    return Transformed::Drop(format!("{}: {reason}", plugin.name()));
                }
                Err(fault) => {
                    if let Some(c) = counters {
                        c.transform_faults.fetch_add(1, Ordering::Relaxed);
                    }
                    if plugin.config().on_transform_fault == OnTransformFault::Drop {
                        return Transformed::Drop(format!("{} failed: {fault}", plugin.name()));
                    }
                }
            }
        }
        if replaced {
            Transformed::Replace(Box::new(publish_from(message, current)))
        } else {
            Transformed::Keep
        }
    }
}

/// How far the chain has taken one message of a batch.
struct InBatch {
    /// Dropped, with the reason (the later plugins do not see it).
    dropped: Option<String>,
    /// Replaced whole by a plugin: the chain answers the message as it is now.
    replaced: bool,
    /// The topic was changed by a `change`.
    topic_changed: bool,
    /// User properties appended by `change`s, in order.
    added: Vec<(String, String)>,
    /// How many of `added` the message (`current`) has: the rest are put into it only
    /// when a later plugin is to see it, so a chain of one copies nothing.
    applied: usize,
}

impl InBatch {
    fn new() -> InBatch {
        InBatch {
            dropped: None,
            replaced: false,
            topic_changed: false,
            added: Vec::new(),
            applied: 0,
        }
    }

    /// Puts what `change`s appended into `current`, before a plugin sees it.
    fn catch_up(&mut self, current: &mut wit::Message) {
        if self.applied < self.added.len() {
            current
                .user_properties
                .extend(self.added[self.applied..].iter().cloned());
            self.applied = self.added.len();
        }
    }

    /// Takes one plugin's edit of `current`.
    fn take(&mut self, plugin: &Plugin, edit: wit::Edit, current: &mut wit::Message) {
        match edit {
            wit::Edit::Keep => {}
            wit::Edit::Drop(reason) => {
                self.dropped = Some(format!("{}: {reason}", plugin.name()));
            }
            wit::Edit::Change(change) if self.replaced => apply_change(current, change),
            // Moved, not copied: put into `current` only if a later plugin is to see it.
            wit::Edit::Change(change) => {
                if let Some(topic) = change.topic {
                    current.topic = topic;
                    self.topic_changed = true;
                }
                self.added.extend(change.add_user_properties);
            }
            wit::Edit::Replace(next) => {
                *current = next;
                self.replaced = true;
                // The replacement is the whole message: nothing is owed to it.
                self.added.clear();
                self.applied = 0;
            }
        }
    }

    /// Takes a plugin's fault: the message as it was, or dropped.
    fn fault(&mut self, plugin: &Plugin, fault: &crate::Fault) {
        if plugin.config().on_transform_fault == OnTransformFault::Drop {
            self.dropped = Some(format!("{} failed: {fault}", plugin.name()));
        }
    }

    /// What the chain did to `original`, now `current`.
    fn edit(self, current: wit::Message, original: &Publish, changes: &mut Changes) -> Edit {
        if let Some(reason) = self.dropped {
            Edit::Drop(reason)
        } else if self.replaced {
            Edit::Replace(Box::new(publish_from(original, current)))
        } else if self.topic_changed || !self.added.is_empty() {
            changes.edit(self.topic_changed.then_some(current.topic), self.added)
        } else {
            Edit::Keep
        }
    }
}

impl PluginSet {
    /// Runs the transform chain on a batch of messages of one client, in order: one
    /// [`Edit`] per message. A plugin that exports `transform-batch` is called once
    /// with the messages no plugin before it dropped; one that does not is called once
    /// per message. A batch call that faults is the fault of each of its messages (kept
    /// as they were before that plugin, or dropped, per its `on_transform_fault`).
    pub async fn transform_batch(&self, client: &ClientInfo, messages: &[Publish]) -> Vec<Edit> {
        self.transform_batch_counted(prepared(client), messages, None)
            .await
    }

    async fn transform_batch_counted(
        &self,
        client: &PreparedClient,
        messages: &[Publish],
        counters: Option<&ChainCounters>,
    ) -> Vec<Edit> {
        if !self.hooks.transform {
            return vec![Edit::Keep; messages.len()];
        }
        let mut current: Vec<wit::Message> = messages.iter().map(wit::Message::from).collect();
        let mut states: Vec<InBatch> = current.iter().map(|_| InBatch::new()).collect();
        // A plain loop with `continue` (a `Send` future), as in `transform_counted`.
        for plugin in &self.plugins {
            if !plugin.hooks().transform {
                continue;
            }
            let live: Vec<usize> = (0..current.len())
                .filter(|&i| states[i].dropped.is_none())
                .collect();
            if live.is_empty() {
                break;
            }
            for &i in &live {
                states[i].catch_up(&mut current[i]);
            }
            if plugin.transforms_in_batches() {
                let all = live.len() == current.len();
                // The messages still going, moved out (no copy) when some were dropped.
                let gathered: Vec<wit::Message> = if all {
                    Vec::new()
                } else {
                    live.iter()
                        .map(|&i| std::mem::replace(&mut current[i], placeholder_message()))
                        .collect()
                };
                let batch: &[wit::Message] = if all { &current } else { &gathered };
                let result = plugin.on_publish_batch_wit(client, batch).await;
                if !all {
                    for (&i, m) in live.iter().zip(gathered) {
                        current[i] = m;
                    }
                }
                match result {
                    Ok(edits) => {
                        for (&i, edit) in live.iter().zip(edits) {
                            states[i].take(plugin, edit, &mut current[i]);
                        }
                    }
                    Err(fault) => {
                        if let Some(c) = counters {
                            c.transform_faults.fetch_add(1, Ordering::Relaxed);
                        }
                        for &i in &live {
                            states[i].fault(plugin, &fault);
                        }
                    }
                }
            } else {
                for &i in &live {
                    let edit = match plugin.on_publish_wit(client, &mut current[i]).await {
                        Ok(wit::Transformed::Keep) => wit::Edit::Keep,
                        Ok(wit::Transformed::Replace(next)) => wit::Edit::Replace(next),
                        Ok(wit::Transformed::Drop(reason)) => wit::Edit::Drop(reason),
                        Err(fault) => {
                            if let Some(c) = counters {
                                c.transform_faults.fetch_add(1, Ordering::Relaxed);
                            }
                            states[i].fault(plugin, &fault);
                            continue;
                        }
                    };
                    states[i].take(plugin, edit, &mut current[i]);
                }
            }
        }
        let mut changes = Changes::default();
        states
            .into_iter()
            .zip(current)
            .zip(messages)
            .map(|((state, message), original)| state.edit(message, original, &mut changes))
            .collect()
    }
}

/// Counters of a [`Chain`], over every generation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChainStats {
    /// Authentication chains run.
    pub authn_calls: u64,
    /// Authorization chains run.
    pub authz_calls: u64,
    /// Transform chains run.
    pub transform_calls: u64,
    /// Authn/authz answers that are a deny because a plugin faulted.
    pub failed_closed: u64,
    /// Transform plugin faults (the message was kept or dropped per config).
    pub transform_faults: u64,
    /// Plugin-set swaps.
    pub swaps: u64,
}

/// An authorization chain's answer, and whether it is the fail-closed deny of a
/// plugin that faulted (a trap, a timeout, a memory limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthzOutcome {
    /// The decision.
    pub decision: Decision,
    /// Whether a plugin faulted (then `decision` is `Deny`).
    pub faulted: bool,
    /// How long the answer may be kept: the shortest lifetime among the plugins
    /// asked (the deciding one and those that ignored before it). A faulted answer
    /// is not kept ([`CacheLifetime::NONE`]).
    pub cache: CacheLifetime,
}

impl AuthzOutcome {
    /// The fail-closed deny of a plugin that faulted: not kept.
    pub const FAULTED: AuthzOutcome = AuthzOutcome {
        decision: Decision::Deny,
        faulted: true,
        cache: CacheLifetime::NONE,
    };

    fn decided(decision: Decision, cache: CacheLifetime) -> AuthzOutcome {
        AuthzOutcome {
            decision,
            faulted: false,
            cache,
        }
    }
}

/// On a cache line of its own: every chain run writes one, and `Chain::current`
/// beside it is read by every call on every thread.
#[derive(Default)]
#[repr(align(128))]
struct ChainCounters {
    authn_calls: AtomicU64,
    authz_calls: AtomicU64,
    transform_calls: AtomicU64,
    failed_closed: AtomicU64,
    transform_faults: AtomicU64,
    swaps: AtomicU64,
}

/// The current [`PluginSet`], swapped atomically on reload, with counters.
/// Share it (`Arc<Chain>`) between connections.
#[derive(Default)]
pub struct Chain {
    current: ArcSwap<PluginSet>,
    counters: ChainCounters,
}

impl Chain {
    /// A chain serving `set`.
    pub fn new(set: PluginSet) -> Self {
        Chain {
            current: ArcSwap::from_pointee(set),
            counters: ChainCounters::default(),
        }
    }

    /// The set serving now. Holding it keeps that generation alive.
    pub fn current(&self) -> Arc<PluginSet> {
        self.current.load_full()
    }

    /// The hooks at least one plugin of the current set has enabled. Cheaper
    /// than `current().hooks()`: no reference count is touched (a counter
    /// every connection task would bump on every PUBLISH).
    pub fn hooks(&self) -> HookSet {
        self.current.load().hooks
    }

    /// Whether the current set's transforms may be called once per client, topic, QoS
    /// and retain flag: every transform plugin in it is declared `transform_per_topic`.
    /// The caller then keeps what the chain did to a message (a topic rewrite, user
    /// properties appended, a drop) and applies it to the next such message itself.
    pub fn transform_per_topic(&self) -> bool {
        self.current.load().transform_per_topic
    }

    /// Whether a transform of the current set takes batches (exports
    /// `transform-batch`): the caller then hands it the PUBLISHes of one read together
    /// ([`Chain::transform_batch`]).
    pub fn transforms_in_batches(&self) -> bool {
        self.current.load().transform_batch
    }

    /// Runs the transform chain on the current set over a batch of one client's
    /// messages ([`PluginSet::transform_batch`]).
    pub async fn transform_batch(&self, client: &ClientInfo, messages: &[Publish]) -> Vec<Edit> {
        self.counters
            .transform_calls
            .fetch_add(messages.len() as u64, Ordering::Relaxed);
        let set = self.current.load_full();
        set.transform_batch_counted(prepared(client), messages, Some(&self.counters))
            .await
    }

    /// Replaces the whole set; returns the previous one. Calls that already
    /// started finish on the previous set.
    pub fn swap(&self, set: PluginSet) -> Arc<PluginSet> {
        self.counters.swaps.fetch_add(1, Ordering::Relaxed);
        let names: Vec<&str> = set.plugins().iter().map(Plugin::name).collect();
        tracing::info!(plugins = ?names, "plugin set swapped");
        self.current.swap(Arc::new(set))
    }

    /// Runs the authentication chain on the current set. `Ignore`: no plugin
    /// decided (`allow_anonymous` decides).
    pub async fn authenticate(&self, client: &ClientInfo, password: Option<&[u8]>) -> AuthOutcome {
        self.counters.authn_calls.fetch_add(1, Ordering::Relaxed);
        let set = self.current.load_full();
        set.authenticate_counted(&converted(client), password, Some(&self.counters))
            .await
    }

    /// Runs the authorization chain on the current set. `Ignore`: no plugin
    /// decided (`acl_nomatch` decides).
    pub async fn authorize(
        &self,
        client: &ClientInfo,
        action: Action,
        topic: &str,
        qos: u8,
        retain: bool,
    ) -> Decision {
        self.counters.authz_calls.fetch_add(1, Ordering::Relaxed);
        let set = self.current.load_full();
        set.authorize_counted(
            prepared(client),
            action,
            topic,
            qos,
            retain,
            Some(&self.counters),
        )
        .await
        .decision
    }

    /// Runs the transform chain on the current set.
    pub async fn transform(&self, client: &ClientInfo, message: &Publish) -> Transformed {
        self.counters
            .transform_calls
            .fetch_add(1, Ordering::Relaxed);
        let set = self.current.load_full();
        set.transform_counted(prepared(client), message, Some(&self.counters))
            .await
    }

    /// The chain's counters.
    pub fn stats(&self) -> ChainStats {
        let c = &self.counters;
        ChainStats {
            authn_calls: c.authn_calls.load(Ordering::Relaxed),
            authz_calls: c.authz_calls.load(Ordering::Relaxed),
            transform_calls: c.transform_calls.load(Ordering::Relaxed),
            failed_closed: c.failed_closed.load(Ordering::Relaxed),
            transform_faults: c.transform_faults.load(Ordering::Relaxed),
            swaps: c.swaps.load(Ordering::Relaxed),
        }
    }
}
