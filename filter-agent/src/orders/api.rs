//! The order push API: how an authority's blocking order becomes
//! enforcement. HTTPS (rustls) with bearer tokens, roles, Ed25519-signed
//! orders from authorities, journaled (fsynced) before acknowledgement,
//! and enforced before the response says so.
//!
//! | method | path | who |
//! | --- | --- | --- |
//! | POST | /v1/orders | `authority:<name>` (its own, signed), `operator` (operator/attack orders) |
//! | DELETE | /v1/orders/{id} | the pushing authority, or `operator` for operator/attack orders |
//! | GET | /v1/orders, /v1/orders/{id} | every client |
//! | GET | /v1/health | anyone |
use std::sync::Arc;
use std::time::Instant;

use axum::{
    body::Bytes,
    extract::{DefaultBodyLimit, Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use chrono::Utc;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::store::{PushOutcome, RevokeOutcome};
use super::wire::{self, SignedOrder};
use crate::config::{Api, Authority, Client, Role};
use crate::run::Shared;

pub struct ApiState {
    pub agent: Shared,
    /// Pushes are journaled under this lock alone, while rule sets apply.
    pub journal: crate::run::SharedJournal,
    pub order_enforcement: prometheus::Histogram,
    pub api: Api,
    pub authorities: Vec<Authority>,
    /// Wakes the group-commit applier.
    pub wake: Arc<tokio::sync::Notify>,
    /// Journal position whose pushes are settled (enforced, or refused).
    pub applied: tokio::sync::watch::Receiver<u64>,
}

type Ctx = Arc<ApiState>;

pub fn router(state: Ctx) -> Router {
    let limit = state.api.max_body_bytes;
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/orders", get(list).post(push))
        .route("/v1/orders/{id}", get(show).delete(revoke))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// The client a bearer token belongs to (tokens are compared as SHA-256).
/// A refused request: status and message (turned into a JSON response).
type Refusal = (StatusCode, String);

fn refused((status, message): Refusal) -> Response {
    error(status, message)
}

fn authenticate<'a>(api: &'a Api, headers: &HeaderMap) -> Result<&'a Client, Refusal> {
    let unauthorized = |m: &str| (StatusCode::UNAUTHORIZED, m.to_string());
    let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Err(unauthorized("missing `Authorization: Bearer <token>`"));
    };
    let Some(token) = value.strip_prefix("Bearer ") else {
        return Err(unauthorized("authorization must be `Bearer <token>`"));
    };
    let hash = hex::encode(Sha256::digest(token.trim().as_bytes()));
    api.clients.iter().find(|c| c.token_sha256 == hash).ok_or_else(|| unauthorized("unknown token"))
}

fn actor(c: &Client) -> String {
    match &c.role {
        Role::Authority(a) => format!("api:{}(authority:{a})", c.name),
        Role::Operator => format!("api:{}(operator)", c.name),
        Role::Reader => format!("api:{}(reader)", c.name),
    }
}

/// Runs `f` with the agent locked, off the async threads (an apply can
/// take a while with large rule sets).
async fn with_agent<T: Send + 'static>(ctx: &Ctx, f: impl FnOnce(&mut crate::run::Agent) -> T + Send + 'static) -> T {
    let shared = ctx.agent.clone();
    tokio::task::spawn_blocking(move || f(&mut shared.lock().expect("agent lock"))).await.expect("agent task")
}

async fn health(State(ctx): State<Ctx>) -> Response {
    let (generation, orders) = with_agent(&ctx, |a| (a.metrics.sequence, a.api_orders.len())).await;
    Json(json!({ "status": "ok", "ruleset_generation": generation, "api_orders": orders })).into_response()
}

async fn push(State(ctx): State<Ctx>, headers: HeaderMap, body: Bytes) -> Response {
    let received = Instant::now();
    let now = Utc::now();
    let client = match authenticate(&ctx.api, &headers) {
        Ok(c) => c.clone(),
        Err(r) => return refused(r),
    };
    let who = actor(&client);
    let result = check_push(&ctx, &client, &body, now);
    let (signed, order) = match result {
        Ok(v) => v,
        Err((status, reason, fields)) => {
            let details = json!({ "reason": reason, "fields": fields, "bytes": body.len() });
            let who2 = who.clone();
            let _ = with_agent(&ctx, move |a| a.audit_event(&who2, "push-rejected", details)).await;
            let mut body = json!({ "error": reason });
            if !fields.is_empty() {
                body["fields"] = json!(fields);
            }
            return (status, Json(body)).into_response();
        }
    };
    let id = order.id.clone();
    let pending = order.effective > now;
    let journal = ctx.journal.clone();
    let who2 = who.clone();
    let outcome = tokio::task::spawn_blocking(move || journal.lock().expect("journal lock").push(&signed, order, &who2, now)).await.expect("journal task");
    match outcome {
        Ok((PushOutcome::Created, seq)) => {
            // Journaled and fsynced; now wait for the applier's next batch.
            ctx.wake.notify_one();
            let mut applied = ctx.applied.clone();
            if applied.wait_for(|&settled| settled >= seq).await.is_err() {
                return error(StatusCode::SERVICE_UNAVAILABLE, "the agent is stopping");
            }
            let seconds = received.elapsed().as_secs_f64();
            let journal = ctx.journal.clone();
            let lookup = id.clone();
            let refused = tokio::task::spawn_blocking(move || journal.lock().expect("journal lock").store.get(&lookup).and_then(|o| o.revoked.clone()))
                .await
                .expect("journal task");
            if let Some(r) = refused {
                return error(StatusCode::INSUFFICIENT_STORAGE, format!("order journaled but {}; it was revoked", r.reason));
            }
            ctx.order_enforcement.observe(seconds);
            let status = if pending { "pending" } else { "enforced" };
            (StatusCode::CREATED, Json(json!({ "id": id, "status": status, "enforcement_seconds": seconds }))).into_response()
        }
        Ok((outcome @ PushOutcome::Duplicate, _)) => {
            let details = json!({ "order": id, "outcome": format!("{outcome:?}") });
            let _ = with_agent(&ctx, move |a| a.audit_event(&who, "push-unchanged", details)).await;
            Json(json!({ "id": id, "status": "unchanged", "note": "same id and content: already accepted" })).into_response()
        }
        Ok((outcome, _)) => {
            let details = json!({ "order": id, "outcome": format!("{outcome:?}") });
            let _ = with_agent(&ctx, move |a| a.audit_event(&who, "push-unchanged", details)).await;
            match outcome {
                PushOutcome::Conflict => error(StatusCode::CONFLICT, format!("order {id} already exists with different content: refused as a replay")),
                _ => error(StatusCode::CONFLICT, format!("order {id} was revoked; order ids are not reused")),
            }
        }
        Err(e) => error(StatusCode::INSUFFICIENT_STORAGE, format!("{e:#}")),
    }
}

type Rejection = (StatusCode, String, Vec<wire::FieldError>);

/// Everything decidable before touching the journal: body, role,
/// signature, content.
fn check_push(ctx: &Ctx, client: &Client, body: &[u8], now: chrono::DateTime<Utc>) -> Result<(SignedOrder, filter_common::rules::Order), Rejection> {
    let bad = |status, reason: String| (status, reason, Vec::new());
    let signed: SignedOrder = serde_json::from_slice(body).map_err(|e| bad(StatusCode::BAD_REQUEST, format!("malformed request body: {e}")))?;
    let limits = wire::Limits { max_entries: ctx.api.max_entries };
    let order = wire::parse_order(&signed.order, &limits, now).map_err(|fields| {
        (StatusCode::UNPROCESSABLE_ENTITY, format!("invalid order: {} problem(s)", fields.len()), fields)
    })?;
    match &client.role {
        Role::Reader => return Err(bad(StatusCode::FORBIDDEN, "role reader may not push orders".into())),
        Role::Operator => {
            use filter_common::rules::Category;
            if !matches!(order.category, Category::Operator | Category::Attack) {
                return Err(bad(StatusCode::FORBIDDEN, format!("role operator may push operator and attack orders, not {}", order.category.name())));
            }
        }
        Role::Authority(name) => {
            if &order.authority != name {
                return Err(bad(StatusCode::FORBIDDEN, format!("authority {name} may not push orders of authority {}", order.authority)));
            }
            let key = ctx.authorities.iter().find(|a| &a.name == name).expect("config checks authority keys");
            wire::verify(&signed.order, &signed.signature, &key.public_key).map_err(|e| bad(StatusCode::UNAUTHORIZED, e))?;
        }
    }
    Ok((signed, order))
}

async fn revoke(State(ctx): State<Ctx>, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    let client = match authenticate(&ctx.api, &headers) {
        Ok(c) => c.clone(),
        Err(r) => return refused(r),
    };
    let reason = serde_json::from_slice::<Value>(&body).ok().and_then(|v| v["reason"].as_str().map(str::to_string)).unwrap_or_else(|| "revoked".into());
    let who = actor(&client);
    with_agent(&ctx, move |a| {
        let Some(stored) = a.journal.as_ref().and_then(|j| j.lock().expect("journal lock").store.get(&id).cloned()) else {
            return error(StatusCode::NOT_FOUND, format!("no pushed order {id}"));
        };
        let authority = stored.signed.order["authority"].as_str().unwrap_or_default().to_string();
        let category = stored.signed.order["category"].as_str().unwrap_or_default().to_string();
        let allowed = match &client.role {
            Role::Authority(name) => *name == authority,
            Role::Operator => category == "operator" || category == "attack",
            Role::Reader => false,
        };
        if !allowed {
            let _ = a.audit_event(&who, "revoke-rejected", json!({ "order": id, "reason": "not permitted" }));
            return error(StatusCode::FORBIDDEN, format!("{who} may not revoke order {id} ({authority}, {category})"));
        }
        match a.revoke_order(&id, &who, &reason) {
            Ok(RevokeOutcome::Revoked) => Json(json!({ "id": id, "status": "revoked" })).into_response(),
            Ok(RevokeOutcome::AlreadyRevoked) => Json(json!({ "id": id, "status": "revoked", "note": "already revoked" })).into_response(),
            Ok(RevokeOutcome::NotFound) => error(StatusCode::NOT_FOUND, format!("no pushed order {id}")),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
        }
    })
    .await
}

async fn list(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    if let Err(r) = authenticate(&ctx.api, &headers) {
        return refused(r);
    }
    with_agent(&ctx, |a| Json(a.order_views(None)).into_response()).await
}

async fn show(State(ctx): State<Ctx>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = authenticate(&ctx.api, &headers) {
        return refused(r);
    }
    with_agent(&ctx, move |a| match a.order_views(Some(&id)).into_iter().next() {
        Some(v) => Json(v).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no order {id}")),
    })
    .await
}
