//! Request counters: requests served and 429s sent, per route.

use std::collections::BTreeMap;

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use parking_lot::Mutex;
use serde::Serialize;

use crate::SharedWorld;

/// Per-route counters.
#[derive(Debug, Default, Clone, Serialize)]
pub(crate) struct RouteStats {
    pub requests: u64,
    pub throttled_429: u64,
    pub errors_5xx: u64,
}

/// All counters.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    routes: Mutex<BTreeMap<String, RouteStats>>,
}

impl Stats {
    fn record(&self, route: String, status: StatusCode) {
        let mut routes = self.routes.lock();
        let s = routes.entry(route).or_default();
        s.requests += 1;
        if status == StatusCode::TOO_MANY_REQUESTS {
            s.throttled_429 += 1;
        }
        if status.is_server_error() {
            s.errors_5xx += 1;
        }
    }

    /// `{requests, throttled_429, errors_5xx, routes: {route: {...}}}`.
    pub fn snapshot(&self) -> serde_json::Value {
        let routes = self.routes.lock().clone();
        let total = routes.values().fold(RouteStats::default(), |mut acc, r| {
            acc.requests += r.requests;
            acc.throttled_429 += r.throttled_429;
            acc.errors_5xx += r.errors_5xx;
            acc
        });
        serde_json::json!({
            "requests": total.requests,
            "throttled_429": total.throttled_429,
            "errors_5xx": total.errors_5xx,
            "routes": routes,
        })
    }

    /// Zeroes every counter.
    pub fn reset(&self) {
        self.routes.lock().clear();
    }
}

/// Counts every platform request (not the control API) by route pattern; Slack methods by name.
pub(crate) async fn middleware(
    State(world): State<SharedWorld>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path().to_owned();
    if path.starts_with("/_sandbox") {
        return next.run(req).await;
    }
    let route = if path.starts_with("/slack/api/") {
        format!("{} {}", req.method(), path)
    } else {
        let pattern = req
            .extensions()
            .get::<MatchedPath>()
            .map(|m| m.as_str().to_owned())
            .unwrap_or_else(|| path.clone());
        format!("{} {}", req.method(), pattern)
    };
    let resp = next.run(req).await;
    world.stats.record(route, resp.status());
    resp
}
