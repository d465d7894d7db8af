//! The broker's [`Hooks`] on top of the plugin chain: the chain takes the seam's types
//! as they are (`wasmq-policy`: the plugin host converts them once, at the WIT edge);
//! this adds the broker's own settings when every plugin ignores a question
//! (`allow_anonymous` for CONNECT, `acl_nomatch` for PUBLISH/SUBSCRIBE).
//!
//! An authorization question is asked of the chain once at a time ([`InFlight`]): the
//! same question from the same client while it is being answered waits for that answer.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use bytestring::ByteString;
use tracing::debug;
use wasmq_codec::{Protocol, Publish, QoS, ReasonCode};
use wasmq_plugin_host as host;

use super::LiveChain;
use super::in_flight::InFlight;
use crate::config::{AclNomatch, AllowAnonymous, PluginsConfig};
use crate::hooks::{
    Action, AuthDecision, AuthExchange, AuthStep, Authorization, BoxFuture, ClientInfo, Decision,
    Edit, Hooks, PluginStatus, PolicyGeneration, Transformed,
};

/// Policy from the plugin folder's current chain.
pub struct PluginPolicy {
    chain: Arc<LiveChain>,
    acl_nomatch: AclNomatch,
    allow_anonymous: AllowAnonymous,
    /// The database plugins reach, watched for failed queries during a decision.
    database: Option<Arc<host::Database>>,
    /// Authorization questions being asked of the chain.
    authorizing: InFlight<Question, Authorization>,
}

/// An authorization question: everything the plugins are told, and the policy's
/// generation (an answer from the set before a reload, or from before a purge, is not
/// one for after it).
#[derive(Clone, PartialEq, Eq, Hash)]
struct Question {
    generation: u64,
    client_id: ByteString,
    username: Option<ByteString>,
    peer_addr: SocketAddr,
    protocol: Protocol,
    listener: &'static str,
    action: Action,
    topic: Box<str>,
    qos: QoS,
    retain: bool,
}

impl PluginPolicy {
    /// A policy over `chain` with the broker's fallbacks from `config`; `database` is
    /// the one plugins granted `sql` use (decisions made while it fails are not cached).
    pub fn new(
        chain: Arc<LiveChain>,
        config: &PluginsConfig,
        database: Option<Arc<host::Database>>,
    ) -> PluginPolicy {
        PluginPolicy {
            chain,
            acl_nomatch: config.acl_nomatch,
            allow_anonymous: config.allow_anonymous,
            database,
            authorizing: InFlight::default(),
        }
    }

    fn database_failures(&self) -> u64 {
        self.database.as_ref().map_or(0, |db| db.failures())
    }

    /// Asks the plugin set `set` whether `client` may do `action` on `topic`, with the
    /// broker's fallback when no plugin decides.
    async fn ask_chain(
        &self,
        set: &host::PluginSet,
        client: &ClientInfo,
        action: Action,
        topic: &str,
        qos: QoS,
        retain: bool,
    ) -> Authorization {
        // A query that failed while this decision was made (this one's, or, more
        // rarely, another connection's at the same moment) makes it blind: the
        // plugin failed closed. Not cached, so the next request asks again.
        let failures_before = self.database_failures();
        let outcome = set
            .authorize_outcome(client, action, topic, qos as u8, retain)
            .await;
        let blind = outcome.faulted || self.database_failures() != failures_before;
        let allowed = match outcome.decision {
            Decision::Allow => true,
            Decision::Deny => false,
            Decision::Ignore => {
                let allowed = self.acl_nomatch == AclNomatch::Allow;
                if !allowed {
                    // The plugins' own debug lines say why none decided.
                    debug!(
                        ?action,
                        topic,
                        "no authz plugin decided: denied by [plugins] acl_nomatch = \"deny\""
                    );
                }
                allowed
            }
        };
        Authorization {
            allowed,
            cacheable: !blind,
            cache: outcome.cache,
        }
    }
}

impl Hooks for PluginPolicy {
    fn authenticate<'a>(
        &'a self,
        client: &'a ClientInfo,
        password: Option<&'a Bytes>,
    ) -> BoxFuture<'a, AuthDecision> {
        Box::pin(async move {
            let outcome = self
                .chain
                .chain
                .authenticate(client, password.map(|p| &p[..]))
                .await;
            match outcome.decision {
                Decision::Allow => AuthDecision::Allow {
                    superuser: outcome.superuser,
                },
                Decision::Deny => {
                    debug!(
                        reason = outcome.reason.as_deref().unwrap_or(""),
                        "authentication denied"
                    );
                    let code = if client.username.is_some() || password.is_some() {
                        ReasonCode::BAD_USERNAME_OR_PASSWORD
                    } else {
                        ReasonCode::NOT_AUTHORIZED
                    };
                    AuthDecision::Deny(code)
                }
                Decision::Ignore if self.allow_anonymous.admits(client.peer_addr.ip()) => {
                    AuthDecision::Allow { superuser: false }
                }
                Decision::Ignore => AuthDecision::Deny(ReasonCode::NOT_AUTHORIZED),
            }
        })
    }

    fn authorize<'a>(
        &'a self,
        client: &'a ClientInfo,
        action: Action,
        topic: &'a str,
        qos: QoS,
        retain: bool,
    ) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            self.authorization(client, action, topic, qos, retain)
                .await
                .allowed
        })
    }

    fn authorization<'a>(
        &'a self,
        client: &'a ClientInfo,
        action: Action,
        topic: &'a str,
        qos: QoS,
        retain: bool,
    ) -> BoxFuture<'a, Authorization> {
        Box::pin(async move {
            // The generation before the set: a reload in between keys the new set's
            // answer under the old generation (harmless), never the reverse.
            let generation = self.chain.generation().get();
            let set = self.chain.chain.current();
            // With no authorization plugin there is no policy to apply: allow, as a
            // broker with no plugin does. `acl_nomatch` is for when plugins exist and
            // none of them decides.
            if !set.hooks().authz {
                return Authorization::new(true);
            }
            let question = Question {
                generation,
                client_id: client.client_id.clone(),
                username: client.username.clone(),
                peer_addr: client.peer_addr,
                protocol: client.protocol,
                listener: client.listener,
                action,
                topic: topic.into(),
                qos,
                retain,
            };
            self.authorizing
                .answer(question, || {
                    self.ask_chain(&set, client, action, topic, qos, retain)
                })
                .await
        })
    }

    fn enhanced_auth<'a>(
        &'a self,
        client: &'a ClientInfo,
        method: &'a str,
        data: Option<&'a Bytes>,
        exchange: Option<AuthExchange>,
    ) -> BoxFuture<'a, AuthStep> {
        Box::pin(async move {
            let set = self.chain.chain.current();
            let data = data.map(|d| &d[..]);
            let (plugin, step) = match &exchange {
                None => match set.auth_start(client, method, data).await {
                    Some((plugin, step)) => (plugin.to_string(), step),
                    None => return AuthStep::Refuse(ReasonCode::BAD_AUTHENTICATION_METHOD),
                },
                Some(exchange) => (
                    exchange.plugin.clone(),
                    set.auth_step(&exchange.plugin, client, method, data, &exchange.state)
                        .await,
                ),
            };
            match step {
                host::PluginAuthStep::Continue { data, state } => AuthStep::Continue {
                    data: Bytes::from(data),
                    exchange: AuthExchange { plugin, state },
                },
                host::PluginAuthStep::Success { data, superuser } => AuthStep::Success {
                    data: data.map(Bytes::from),
                    superuser,
                },
                host::PluginAuthStep::Failure(reason) => {
                    debug!(plugin, method, reason, "enhanced authentication refused");
                    AuthStep::Refuse(ReasonCode::NOT_AUTHORIZED)
                }
                // `auth_start` moves past plugins that ignore, `auth_step` makes it a failure.
                host::PluginAuthStep::Ignore => {
                    AuthStep::Refuse(ReasonCode::BAD_AUTHENTICATION_METHOD)
                }
            }
        })
    }

    fn checks_deliveries(&self) -> bool {
        self.chain.chain.hooks().deliver
    }

    fn authorize_delivery<'a>(
        &'a self,
        client: &'a ClientInfo,
        topic: &'a str,
        qos: QoS,
        retain: bool,
    ) -> BoxFuture<'a, Authorization> {
        Box::pin(async move {
            let set = self.chain.chain.current();
            // As in `ask_chain`: a query that failed meanwhile makes the answer blind.
            let failures_before = self.database_failures();
            let outcome = set
                .authorize_delivery(client, topic, qos as u8, retain)
                .await;
            let blind = outcome.faulted || self.database_failures() != failures_before;
            let allowed = match outcome.decision {
                Decision::Deny => {
                    debug!(topic, "delivery denied");
                    false
                }
                // No plugin decided: the subscription's own grant stands (this is a
                // re-check of read access, not a new request: `acl_nomatch` is not
                // asked).
                Decision::Allow | Decision::Ignore => true,
            };
            Authorization {
                allowed,
                cacheable: !blind,
                cache: outcome.cache,
            }
        })
    }

    fn authz_coalesced(&self) -> u64 {
        self.authorizing.joined()
    }

    fn plugin_statuses(&self) -> Vec<PluginStatus> {
        self.chain
            .chain
            .current()
            .plugins()
            .iter()
            .map(|p| {
                let stats = p.stats();
                PluginStatus {
                    name: p.name().to_string(),
                    state: stats.state.to_string(),
                    faults: stats.faults,
                    disables: stats.disables,
                }
            })
            .collect()
    }

    fn transform<'a>(
        &'a self,
        client: &'a ClientInfo,
        publish: &'a Publish,
    ) -> BoxFuture<'a, Transformed> {
        Box::pin(async move {
            let result = self.chain.chain.transform(client, publish).await;
            if let Transformed::Drop(why) = &result {
                debug!(why, topic = %publish.topic, "message dropped by a transform");
            }
            result
        })
    }

    fn transforms(&self) -> bool {
        self.chain.chain.hooks().transform
    }

    fn transforms_in_batches(&self) -> bool {
        self.chain.chain.transforms_in_batches()
    }

    fn transform_batch<'a>(
        &'a self,
        client: &'a ClientInfo,
        messages: &'a [Publish],
    ) -> BoxFuture<'a, Vec<Edit>> {
        Box::pin(async move {
            let edits = self.chain.chain.transform_batch(client, messages).await;
            for (publish, edit) in messages.iter().zip(&edits) {
                if let Edit::Drop(why) = edit {
                    debug!(why, topic = %publish.topic, "message dropped by a transform");
                }
            }
            // The broker does the changes to the messages it owns (`PolicyGate`).
            edits
        })
    }

    fn transform_per_topic(&self) -> bool {
        self.chain.chain.transform_per_topic()
    }

    fn generation(&self) -> PolicyGeneration {
        self.chain.generation().clone()
    }
}
