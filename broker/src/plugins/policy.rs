//! The broker's [`Hooks`] on top of the plugin chain: converts the broker's types to the
//! host's, and applies the broker's own settings when every plugin ignores a question
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
    Action, AuthDecision, AuthExchange, AuthStep, Authorization, BoxFuture, CacheLifetime,
    CertificateIdentity, ClientInfo, Hooks, PluginStatus, PolicyGeneration, TransformEdit,
    Transformed,
};
use crate::listener::ListenerKind;

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
        let action = match action {
            Action::Publish => host::Action::Publish,
            Action::Subscribe => host::Action::Subscribe,
        };
        // A query that failed while this decision was made (this one's, or, more
        // rarely, another connection's at the same moment) makes it blind: the
        // plugin failed closed. Not cached, so the next request asks again.
        let failures_before = self.database_failures();
        let outcome = set
            .authorize_outcome(prepared(client), action, topic, qos as u8, retain)
            .await;
        let blind = outcome.faulted || self.database_failures() != failures_before;
        let allowed = match outcome.decision {
            host::Decision::Allow => true,
            host::Decision::Deny => false,
            host::Decision::Ignore => {
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
            cache: cache_lifetime(outcome.cache),
        }
    }
}

/// The client as the plugins see it, converted on the connection's first hook call.
fn prepared(client: &ClientInfo) -> &host::PreparedClient {
    client
        .prepared
        .get_or_init(|| host::PreparedClient::from(client_info(client)))
}

/// How long the chain said its answer may be kept, in the broker's type.
fn cache_lifetime(cache: host::CacheLifetime) -> CacheLifetime {
    CacheLifetime {
        max_secs: cache.max_secs,
        operator_ttl: cache.operator_ttl,
    }
}

fn certificate(id: &CertificateIdentity) -> host::CertificateIdentity {
    host::CertificateIdentity {
        common_name: id.common_name.clone(),
        dns_names: id.dns_names.clone(),
        emails: id.emails.clone(),
        uris: id.uris.clone(),
    }
}

fn client_info(client: &ClientInfo) -> host::ClientInfo {
    host::ClientInfo {
        client_id: client.client_id.to_string(),
        username: client.username.as_ref().map(|u| u.to_string()),
        peer_addr: client.peer_addr.to_string(),
        protocol_version: match client.protocol {
            Protocol::V311 => 4,
            Protocol::V5 => 5,
        },
        listener: client.listener.to_string(),
        listener_kind: match client.listener_kind {
            ListenerKind::Tcp => host::ListenerKind::Tcp,
            ListenerKind::Tls => host::ListenerKind::Tls,
            ListenerKind::Ws => host::ListenerKind::Ws,
            ListenerKind::Wss => host::ListenerKind::Wss,
        },
        certificate: client.certificate.as_deref().map(certificate),
        user_properties: client
            .connect_user_properties
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn message(publish: &Publish) -> host::Message {
    let p = &publish.properties;
    host::Message {
        topic: publish.topic.to_string(),
        payload: publish.payload.to_vec(),
        qos: publish.qos as u8,
        retain: publish.retain,
        user_properties: p
            .user_properties
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        content_type: p.content_type.as_ref().map(|c| c.to_string()),
        payload_is_utf8: p.payload_format_indicator == Some(1),
        response_topic: p.response_topic.as_ref().map(|t| t.to_string()),
        correlation_data: p.correlation_data.as_ref().map(|c| c.to_vec()),
        message_expiry_interval: p.message_expiry_interval,
    }
}

/// A batch transform's `change` in the broker's types.
fn transform_edit(change: &host::Edit) -> TransformEdit {
    let host::Edit::Change {
        topic,
        add_user_properties,
    } = change
    else {
        return TransformEdit::Keep;
    };
    TransformEdit::Change {
        topic: topic.as_deref().map(ByteString::from),
        append: add_user_properties
            .iter()
            .map(|(k, v)| (ByteString::from(k.as_str()), ByteString::from(v.as_str())))
            .collect(),
    }
}

/// The publish a transform produced, keeping what a plugin cannot see (packet id, DUP).
fn publish_from(original: &Publish, m: host::Message) -> Publish {
    let mut publish = original.clone();
    publish.topic = ByteString::from(m.topic);
    publish.payload = Bytes::from(m.payload);
    publish.qos = QoS::from_u8(m.qos)
        .unwrap_or(original.qos)
        .min(original.qos);
    publish.retain = m.retain;
    let p = &mut publish.properties;
    p.user_properties = m
        .user_properties
        .into_iter()
        .map(|(k, v)| (ByteString::from(k), ByteString::from(v)))
        .collect();
    p.content_type = m.content_type.map(ByteString::from);
    p.payload_format_indicator = m.payload_is_utf8.then_some(1);
    p.response_topic = m.response_topic.map(ByteString::from);
    p.correlation_data = m.correlation_data.map(Bytes::from);
    p.message_expiry_interval = m.message_expiry_interval;
    publish
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
                .authenticate_prepared(prepared(client), password.map(|p| &p[..]))
                .await;
            match outcome.decision {
                host::Decision::Allow => AuthDecision::Allow {
                    superuser: outcome.superuser,
                },
                host::Decision::Deny => {
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
                host::Decision::Ignore if self.allow_anonymous.admits(client.peer_addr.ip()) => {
                    AuthDecision::Allow { superuser: false }
                }
                host::Decision::Ignore => AuthDecision::Deny(ReasonCode::NOT_AUTHORIZED),
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
                None => match set.auth_start(prepared(client), method, data).await {
                    Some((plugin, step)) => (plugin.to_string(), step),
                    None => return AuthStep::Refuse(ReasonCode::BAD_AUTHENTICATION_METHOD),
                },
                Some(exchange) => (
                    exchange.plugin.clone(),
                    set.auth_step(
                        &exchange.plugin,
                        prepared(client),
                        method,
                        data,
                        &exchange.state,
                    )
                    .await,
                ),
            };
            match step {
                host::AuthStep::Continue { data, state } => AuthStep::Continue {
                    data: Bytes::from(data),
                    exchange: AuthExchange { plugin, state },
                },
                host::AuthStep::Success { data, superuser } => AuthStep::Success {
                    data: data.map(Bytes::from),
                    superuser,
                },
                host::AuthStep::Failure(reason) => {
                    debug!(plugin, method, reason, "enhanced authentication refused");
                    AuthStep::Refuse(ReasonCode::NOT_AUTHORIZED)
                }
                // `auth_start` moves past plugins that ignore, `auth_step` makes it a failure.
                host::AuthStep::Ignore => AuthStep::Refuse(ReasonCode::BAD_AUTHENTICATION_METHOD),
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
                .authorize_delivery(prepared(client), topic, qos as u8, retain)
                .await;
            let blind = outcome.faulted || self.database_failures() != failures_before;
            let allowed = match outcome.decision {
                host::Decision::Deny => {
                    debug!(topic, "delivery denied");
                    false
                }
                // No plugin decided: the subscription's own grant stands (this is a
                // re-check of read access, not a new request: `acl_nomatch` is not
                // asked).
                host::Decision::Allow | host::Decision::Ignore => true,
            };
            Authorization {
                allowed,
                cacheable: !blind,
                cache: cache_lifetime(outcome.cache),
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
            match self
                .chain
                .chain
                .transform_prepared(prepared(client), message(publish))
                .await
            {
                host::Transformed::Keep => Transformed::Keep,
                host::Transformed::Replace(m) => {
                    Transformed::Replace(Box::new(publish_from(publish, m)))
                }
                host::Transformed::Drop(why) => {
                    debug!(why, topic = %publish.topic, "message dropped by a transform");
                    Transformed::Drop
                }
            }
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
    ) -> BoxFuture<'a, Vec<Transformed>> {
        Box::pin(async move {
            let edits = self
                .chain
                .chain
                .transform_batch(prepared(client), messages.iter().map(message).collect())
                .await;
            // A transform that adds the same properties to every message (a stamp) gives
            // the same `change` each time: converted once, then shared (reference counts).
            let mut last: Option<(host::Edit, Arc<TransformEdit>)> = None;
            messages
                .iter()
                .zip(edits)
                .map(|(publish, edit)| match edit {
                    // Nothing was copied back, and nothing is made.
                    host::Edit::Keep => Transformed::Keep,
                    host::Edit::Drop(why) => {
                        debug!(why, topic = %publish.topic, "message dropped by a transform");
                        Transformed::Drop
                    }
                    change @ host::Edit::Change { .. } => {
                        let converted = match &last {
                            Some((previous, converted)) if *previous == change => converted.clone(),
                            _ => {
                                let converted = Arc::new(transform_edit(&change));
                                last = Some((change, converted.clone()));
                                converted
                            }
                        };
                        match converted.apply(publish.clone()) {
                            Some(changed) => Transformed::Replace(Box::new(changed)),
                            None => Transformed::Drop,
                        }
                    }
                    host::Edit::Replace(m) => {
                        Transformed::Replace(Box::new(publish_from(publish, m)))
                    }
                })
                .collect()
        })
    }

    fn transform_per_topic(&self) -> bool {
        self.chain.chain.transform_per_topic()
    }

    fn generation(&self) -> PolicyGeneration {
        self.chain.generation().clone()
    }
}
