//! The HTTP admin API (`docs/admin-api.yaml` is its OpenAPI description; a test keeps
//! the two in step): clients and sessions, kicking a client, plugins and their reload,
//! the default plugin's users and ACL rules, health and readiness.
//!
//! Every `/api/` route needs `Authorization: Bearer TOKEN`; `/healthz` and `/readyz`
//! need nothing (probes carry no secrets). Users and rules are changed with the same
//! code as `wasmq user` and `wasmq acl` ([`crate::manage`]), and a change purges the
//! broker's cached decisions at once, as the admin socket does for the commands.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, Request, State};
use axum::handler::Handler;
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tracing::info;
use wasmq_codec::{Protocol, ReasonCode};
use wasmq_plugin_host::{Database, QueryError};

use super::Services;
use crate::broker::SessionSummary;
use crate::manage::{self, Access, Rule};
use crate::plugins::Synced;
use crate::session::Kick;

/// Entries a listing returns when the request does not say (`?limit=`), and at most.
const LIST_DEFAULT: usize = 1000;
const LIST_MAX: usize = 100_000;

#[derive(Clone)]
struct Api {
    services: Services,
    token: Arc<str>,
}

/// A route: method (as OpenAPI spells it), path (axum's syntax, which is OpenAPI's),
/// and the handler, registered for that method and no other.
type Route = (&'static str, &'static str, MethodRouter<Api>);

fn op<H, T>(method: &'static str, path: &'static str, handler: H) -> Route
where
    H: Handler<T, Api>,
    T: 'static,
{
    let filter = match method {
        "get" => MethodFilter::GET,
        "post" => MethodFilter::POST,
        "put" => MethodFilter::PUT,
        "delete" => MethodFilter::DELETE,
        other => unreachable!("no route uses {other}"),
    };
    (method, path, on(filter, handler))
}

/// Every route. The router is built from this list, and a test compares it with
/// `docs/admin-api.yaml`.
fn routes() -> Vec<Route> {
    vec![
        op("get", "/healthz", healthz),
        op("get", "/readyz", readyz),
        op("get", "/api/v1/clients", clients),
        op("post", "/api/v1/clients/{client_id}/kick", kick),
        op("get", "/api/v1/sessions", sessions),
        op("get", "/api/v1/plugins", plugins),
        op("post", "/api/v1/plugins/{name}/reload", reload_plugin),
        op("get", "/api/v1/users", users),
        op("post", "/api/v1/users", add_user),
        op("delete", "/api/v1/users/{username}", remove_user),
        op("put", "/api/v1/users/{username}/password", set_password),
        op("get", "/api/v1/acl", rules),
        op("post", "/api/v1/acl", add_rule),
        op("delete", "/api/v1/acl/{id}", remove_rule),
        op("post", "/api/v1/authz-cache/purge", purge),
    ]
}

/// The `(method, path)` of every admin API route.
pub fn route_list() -> Vec<(&'static str, &'static str)> {
    routes().into_iter().map(|(m, p, _)| (m, p)).collect()
}

/// The admin API's routes, with `token` required on `/api/`.
pub fn router(services: Services, token: String) -> Router {
    let api = Api {
        services,
        token: token.into(),
    };
    let (mut open, mut guarded) = (Router::new(), Router::new());
    for (_, path, handler) in routes() {
        if path.starts_with("/api/") {
            guarded = guarded.route(path, handler);
        } else {
            open = open.route(path, handler);
        }
    }
    let guarded = guarded.route_layer(middleware::from_fn_with_state(api.clone(), require_token));
    open.merge(guarded).with_state(api)
}

/// An error as the API returns it: a status and `{"error": "..."}`.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body {
            error: String,
        }
        (self.0, Json(Body { error: self.1 })).into_response()
    }
}

impl ApiError {
    fn not_found(what: String) -> ApiError {
        ApiError(StatusCode::NOT_FOUND, what)
    }

    /// A body that is not the JSON asked for: 400 (415 without the JSON content type),
    /// with the parser's reason, in the API's error form.
    fn from_rejection(rejection: JsonRejection) -> ApiError {
        let status = match rejection.status() {
            StatusCode::UNSUPPORTED_MEDIA_TYPE => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError(status, rejection.body_text())
    }

    /// A `manage` error: the database's (503), a missing user or rule (404), or a
    /// refused request (400).
    fn from_manage(e: anyhow::Error) -> ApiError {
        let text = format!("{e:#}");
        if e.downcast_ref::<QueryError>().is_some() {
            ApiError(StatusCode::SERVICE_UNAVAILABLE, text)
        } else if text.starts_with("no user ") || text.starts_with("no rule ") {
            ApiError(StatusCode::NOT_FOUND, text)
        } else {
            ApiError(StatusCode::BAD_REQUEST, text)
        }
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Compares without stopping at the first difference, so the time a wrong token takes
/// says nothing about how much of it was right.
fn same_token(given: &[u8], token: &[u8]) -> bool {
    given.len() == token.len() && given.iter().zip(token).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0
}

async fn require_token(State(api): State<Api>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(token) if same_token(token.as_bytes(), api.token.as_bytes()) => {
            next.run(request).await
        }
        _ => {
            let why = if given.is_some() {
                "wrong token"
            } else {
                "missing Authorization: Bearer TOKEN"
            };
            let mut response = ApiError(StatusCode::UNAUTHORIZED, why.to_string()).into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            response
        }
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(api): State<Api>) -> (StatusCode, &'static str) {
    if api.services.ready.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

#[derive(Deserialize)]
struct Listing {
    limit: Option<usize>,
}

#[derive(Serialize)]
struct SessionJson {
    client_id: String,
    connected: bool,
    expiry_interval_secs: u32,
    subscriptions: usize,
    queued: usize,
    inflight: usize,
    /// The rest is about the connection that owns the session: absent when offline.
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer: Option<String>,
    /// "3.1.1" or "5.0".
    #[serde(skip_serializing_if = "Option::is_none")]
    protocol: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    listener: Option<&'static str>,
}

impl From<SessionSummary> for SessionJson {
    fn from(s: SessionSummary) -> SessionJson {
        let peer = s.peer.as_ref();
        SessionJson {
            client_id: s.client_id,
            connected: s.connected,
            expiry_interval_secs: s.expiry_interval_secs,
            subscriptions: s.subscriptions,
            queued: s.queued,
            inflight: s.inflight,
            username: peer
                .and_then(|p| p.username.as_ref())
                .map(|u| u.to_string()),
            peer: peer.map(|p| p.addr.to_string()),
            protocol: peer.map(|p| match p.protocol {
                Protocol::V311 => "3.1.1",
                Protocol::V5 => "5.0",
            }),
            listener: peer.map(|p| p.listener),
        }
    }
}

#[derive(Serialize)]
struct SessionList {
    /// How many there are; `sessions` holds at most `limit` of them.
    total: usize,
    sessions: Vec<SessionJson>,
}

fn list_sessions(api: &Api, listing: &Listing, connected_only: bool) -> Json<SessionList> {
    let limit = listing.limit.unwrap_or(LIST_DEFAULT).min(LIST_MAX);
    let all: Vec<SessionSummary> = api
        .services
        .broker
        .session_summaries()
        .into_iter()
        .filter(|s| s.connected || !connected_only)
        .collect();
    Json(SessionList {
        total: all.len(),
        sessions: all.into_iter().take(limit).map(SessionJson::from).collect(),
    })
}

async fn clients(State(api): State<Api>, Query(listing): Query<Listing>) -> Json<SessionList> {
    list_sessions(&api, &listing, true)
}

async fn sessions(State(api): State<Api>, Query(listing): Query<Listing>) -> Json<SessionList> {
    list_sessions(&api, &listing, false)
}

/// A client disconnected through the API: 0x98 Administrative action, logged as such.
const KICKED: Kick = Kick {
    reason: ReasonCode::ADMINISTRATIVE_ACTION,
    why: "disconnected through the admin API",
};

async fn kick(State(api): State<Api>, Path(client_id): Path<String>) -> ApiResult<StatusCode> {
    if api.services.broker.kick(&client_id, KICKED) {
        info!(%client_id, "admin API: client disconnected");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "no connected client {client_id:?}"
        )))
    }
}

#[derive(Serialize)]
struct PluginJson {
    name: String,
    priority: i32,
    hooks: String,
    capabilities: String,
    /// `none`, `read` or `read-write`.
    sql: String,
    disabled: bool,
    /// `active`, `retrying` or `disabled until <RFC 3339 time>`.
    state: String,
    disables: u64,
    retries: u64,
    calls: u64,
    faults: u64,
    timeouts: u64,
    traps: u64,
    memory_limits: u64,
    refused: u64,
    consecutive_faults: u32,
}

fn folder(api: &Api) -> ApiResult<&Arc<crate::plugins::PluginFolder>> {
    api.services.plugins.as_ref().ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "this broker runs without plugins".into(),
        )
    })
}

async fn plugins(State(api): State<Api>) -> ApiResult<Json<Vec<PluginJson>>> {
    let set = folder(&api)?.live().chain.current();
    Ok(Json(
        set.plugins()
            .iter()
            .map(|p| {
                let s = p.stats();
                PluginJson {
                    name: p.name().to_string(),
                    priority: p.config().priority,
                    hooks: p.hooks().to_string(),
                    capabilities: p.capabilities().to_string(),
                    sql: p.config().grant_sql.to_string(),
                    disabled: s.disabled,
                    state: s.state.to_string(),
                    disables: s.disables,
                    retries: s.retries,
                    calls: s.calls,
                    faults: s.faults,
                    timeouts: s.timeouts,
                    traps: s.traps,
                    memory_limits: s.memory_limits,
                    refused: s.refused,
                    consecutive_faults: s.consecutive_faults,
                }
            })
            .collect(),
    ))
}

#[derive(Serialize)]
struct Reloaded {
    /// `reloaded`, or `unloaded` when its file was gone.
    result: &'static str,
}

async fn reload_plugin(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> ApiResult<Json<Reloaded>> {
    let folder = folder(&api)?;
    // Only a loaded plugin: the name becomes a file name, and must not leave the folder.
    if !folder.loaded().contains(&name) {
        return Err(ApiError::not_found(format!("no plugin {name:?} is loaded")));
    }
    let result = match folder.reload(&name).await {
        Synced::Loaded | Synced::Reloaded | Synced::Unchanged => "reloaded",
        Synced::Unloaded | Synced::Missing => "unloaded",
        Synced::Failed(why) => {
            return Err(ApiError(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("{why} (the previous version keeps serving)"),
            ));
        }
    };
    info!(plugin = %name, result, "admin API: plugin reload");
    Ok(Json(Reloaded { result }))
}

fn database(api: &Api) -> ApiResult<&Arc<Database>> {
    api.services.database.as_ref().ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "no database is configured ([database] url is empty)".into(),
        )
    })
}

/// After a change to users or rules: cached decisions go, as `wasmq user|acl` does
/// through the admin socket.
fn changed(api: &Api, what: &str) {
    api.services.broker.purge_authz_cache();
    info!("admin API: {what}; authorization caches purged");
}

#[derive(Serialize)]
struct UserJson {
    username: String,
    superuser: bool,
}

async fn users(State(api): State<Api>) -> ApiResult<Json<Vec<UserJson>>> {
    let users = manage::user_list(database(&api)?)
        .await
        .map_err(ApiError::from_manage)?;
    Ok(Json(
        users
            .into_iter()
            .map(|u| UserJson {
                username: u.username,
                superuser: u.superuser,
            })
            .collect(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    username: String,
    password: String,
    #[serde(default)]
    superuser: bool,
}

async fn add_user(
    State(api): State<Api>,
    user: Result<Json<NewUser>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<UserJson>)> {
    let Json(user) = user.map_err(ApiError::from_rejection)?;
    let db = database(&api)?;
    let scheme = manage::password_scheme(&api.services.plugins_dir)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
    manage::user_add(db, scheme, &user.username, &user.password, user.superuser)
        .await
        .map_err(ApiError::from_manage)?;
    changed(&api, "user added");
    Ok((
        StatusCode::CREATED,
        Json(UserJson {
            username: user.username,
            superuser: user.superuser,
        }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPassword {
    password: String,
}

async fn set_password(
    State(api): State<Api>,
    Path(username): Path<String>,
    body: Result<Json<NewPassword>, JsonRejection>,
) -> ApiResult<StatusCode> {
    let Json(body) = body.map_err(ApiError::from_rejection)?;
    let db = database(&api)?;
    let scheme = manage::password_scheme(&api.services.plugins_dir)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
    manage::user_passwd(db, scheme, &username, &body.password)
        .await
        .map_err(ApiError::from_manage)?;
    changed(&api, "password changed");
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_user(
    State(api): State<Api>,
    Path(username): Path<String>,
) -> ApiResult<StatusCode> {
    manage::user_rm(database(&api)?, &username)
        .await
        .map_err(ApiError::from_manage)?;
    changed(&api, "user removed");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleJson {
    /// Set by the broker; ignored when adding.
    #[serde(default)]
    id: i64,
    allow: bool,
    #[serde(default)]
    ipaddr: Option<String>,
    /// A user name, or `$all` for every client.
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    clientid: Option<String>,
    /// `sub`, `pub` or `pubsub`.
    access: String,
    topic: String,
}

fn access_name(access: i64) -> &'static str {
    match access {
        1 => "sub",
        2 => "pub",
        3 => "pubsub",
        _ => "invalid",
    }
}

async fn rules(State(api): State<Api>) -> ApiResult<Json<Vec<RuleJson>>> {
    let rules = manage::acl_list(database(&api)?)
        .await
        .map_err(ApiError::from_manage)?;
    Ok(Json(
        rules
            .into_iter()
            .map(|r| RuleJson {
                id: r.id,
                allow: r.allow,
                ipaddr: r.ipaddr,
                username: r.username,
                clientid: r.clientid,
                access: access_name(r.access).to_string(),
                topic: r.topic,
            })
            .collect(),
    ))
}

#[derive(Serialize)]
struct RuleId {
    id: i64,
}

async fn add_rule(
    State(api): State<Api>,
    rule: Result<Json<RuleJson>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<RuleId>)> {
    let Json(rule) = rule.map_err(ApiError::from_rejection)?;
    let access: Access = rule
        .access
        .parse()
        .map_err(|e: String| ApiError(StatusCode::BAD_REQUEST, e))?;
    let rule = Rule {
        id: 0,
        allow: rule.allow,
        ipaddr: rule.ipaddr,
        username: rule.username,
        clientid: rule.clientid,
        access: access as i64,
        topic: rule.topic,
    };
    let id = manage::acl_add(database(&api)?, &rule)
        .await
        .map_err(ApiError::from_manage)?;
    changed(&api, "rule added");
    Ok((StatusCode::CREATED, Json(RuleId { id })))
}

async fn remove_rule(State(api): State<Api>, Path(id): Path<i64>) -> ApiResult<StatusCode> {
    manage::acl_rm(database(&api)?, id)
        .await
        .map_err(ApiError::from_manage)?;
    changed(&api, "rule removed");
    Ok(StatusCode::NO_CONTENT)
}

async fn purge(State(api): State<Api>) -> StatusCode {
    changed(&api, "purge requested");
    StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(method, path)` of every operation in the OpenAPI file: a path is a line of two
    /// spaces, `/...:`; an operation a line of four spaces and a method.
    fn documented() -> Vec<(String, String)> {
        let yaml = include_str!("../../../docs/admin-api.yaml");
        let mut found = Vec::new();
        let mut path: Option<String> = None;
        let mut in_paths = false;
        for line in yaml.lines() {
            if !line.starts_with(' ') && !line.is_empty() {
                in_paths = line == "paths:";
                continue;
            }
            if !in_paths {
                continue;
            }
            if let Some(p) = line.strip_prefix("  /") {
                path = Some(format!("/{}", p.trim_end_matches(':')));
            } else if let Some(m) = line.strip_prefix("    ")
                && let Some(m) = m.strip_suffix(':')
                && ["get", "post", "put", "delete", "patch"].contains(&m)
            {
                found.push((m.to_string(), path.clone().expect("a method under a path")));
            }
        }
        found.sort();
        found
    }

    #[test]
    fn the_openapi_file_documents_every_route_and_no_other() {
        let mut routes: Vec<(String, String)> = route_list()
            .into_iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        // Served by the metrics listener (or beside the API when they share one).
        routes.push(("get".into(), "/metrics".into()));
        routes.sort();
        assert_eq!(documented(), routes, "update docs/admin-api.yaml");
    }

    #[test]
    fn tokens_are_compared_whole() {
        assert!(same_token(b"0123456789abcdef", b"0123456789abcdef"));
        assert!(!same_token(b"0123456789abcdeF", b"0123456789abcdef"));
        assert!(!same_token(b"0123456789abcde", b"0123456789abcdef"));
        assert!(!same_token(b"", b"0123456789abcdef"));
    }
}
