//! The platform-neutral part of the control API: ready, seed, faults, stats.
//! Platform-specific control routes live in `slack::control_routes` / `msteams::control_routes`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::SharedWorld;
use crate::faults::FaultSpec;

pub(crate) fn routes() -> Router<SharedWorld> {
    Router::new()
        .route("/ready", get(ready))
        .route("/seed", get(seed))
        .route("/faults", post(add_fault).delete(clear_faults))
        .route("/stats", get(stats).delete(reset_stats))
        .nest("/slack", crate::slack::control_routes())
        .nest("/msteams", crate::msteams::control_routes())
}

/// `GET /_sandbox/ready`: the ready object, the same JSON as the ready line (credentials
/// included; the sandbox listens on loopback only).
async fn ready(State(world): State<SharedWorld>) -> Json<crate::ReadyInfo> {
    Json(crate::ready_info(&world))
}

async fn seed(State(world): State<SharedWorld>) -> Json<serde_json::Value> {
    Json(json!({
        "slack": world.slack.seed_json(),
        "msteams": world.msteams.seed_json(),
    }))
}

async fn add_fault(
    State(world): State<SharedWorld>,
    body: Result<Json<FaultSpec>, axum::extract::rejection::JsonRejection>,
) -> Response {
    match body {
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": e.body_text()})),
        )
            .into_response(),
        Ok(Json(spec)) => match world.faults.add(spec) {
            Ok(()) => (StatusCode::CREATED, Json(json!({"ok": true}))).into_response(),
            Err(e) => (StatusCode::BAD_REQUEST, Json(json!({"error": e}))).into_response(),
        },
    }
}

async fn clear_faults(State(world): State<SharedWorld>) -> StatusCode {
    world.faults.clear();
    StatusCode::NO_CONTENT
}

async fn stats(State(world): State<SharedWorld>) -> Json<serde_json::Value> {
    Json(world.stats.snapshot())
}

async fn reset_stats(State(world): State<SharedWorld>) -> StatusCode {
    world.stats.reset();
    StatusCode::NO_CONTENT
}
