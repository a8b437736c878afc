//! Fault injection: 5xx errors, 429 storms and stalls, per platform, for a while.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::json;

use crate::SharedWorld;

/// Which emulated platform a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum FaultPlatform {
    Slack,
    Msteams,
}

/// What goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FaultKind {
    /// Answer 500 (Slack) / 503 (Graph).
    #[serde(rename = "error_5xx")]
    Error5xx,
    /// Answer 429 with `Retry-After`.
    #[serde(rename = "throttle_429")]
    Throttle429,
    /// Hold the request for `stall_seconds` before serving it normally.
    Stall,
}

/// The longest a fault may stay active (a year); longer is refused with 400.
pub(crate) const MAX_FAULT_SECONDS: f64 = 365.0 * 24.0 * 3600.0;
/// The longest stall (10 minutes); longer is refused with 400.
pub(crate) const MAX_STALL_SECONDS: f64 = 600.0;

/// The body of `POST /_sandbox/faults`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct FaultSpec {
    pub platform: FaultPlatform,
    pub kind: FaultKind,
    /// Fraction of matching requests hit, 0..=1.
    pub rate: f64,
    /// How long the fault stays active; absent or 0: until `DELETE /_sandbox/faults`.
    #[serde(default)]
    pub seconds: Option<f64>,
    /// `Retry-After` for `throttle_429` (default 1).
    #[serde(default)]
    pub retry_after: Option<u64>,
    /// Stall length for `stall` (default 5 s).
    #[serde(default)]
    pub stall_seconds: Option<f64>,
}

#[derive(Debug)]
struct ActiveFault {
    spec: FaultSpec,
    until: Option<Instant>,
}

/// The active faults.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    active: Mutex<Vec<ActiveFault>>,
}

impl Faults {
    /// Adds a fault. Errors (and adds nothing) when the spec is out of range: `rate` outside
    /// 0..=1, `seconds` negative or over [`MAX_FAULT_SECONDS`], `stall_seconds` negative or
    /// over [`MAX_STALL_SECONDS`].
    pub fn add(&self, spec: FaultSpec) -> Result<(), String> {
        if !(0.0..=1.0).contains(&spec.rate) {
            return Err("rate must be a number between 0 and 1".into());
        }
        if let Some(s) = spec.seconds {
            if !(0.0..=MAX_FAULT_SECONDS).contains(&s) {
                return Err(format!(
                    "seconds must be between 0 and {MAX_FAULT_SECONDS} (0 or absent: until DELETE /_sandbox/faults)"
                ));
            }
        }
        if let Some(s) = spec.stall_seconds {
            if !(0.0..=MAX_STALL_SECONDS).contains(&s) {
                return Err(format!(
                    "stall_seconds must be between 0 and {MAX_STALL_SECONDS}"
                ));
            }
        }
        let until = match spec.seconds.filter(|s| *s > 0.0) {
            None => None,
            Some(s) => Some(
                Duration::try_from_secs_f64(s)
                    .ok()
                    .and_then(|d| Instant::now().checked_add(d))
                    .ok_or_else(|| format!("seconds {s} is out of range"))?,
            ),
        };
        self.active.lock().push(ActiveFault { spec, until });
        Ok(())
    }

    /// Removes every fault.
    pub fn clear(&self) {
        self.active.lock().clear();
    }

    /// Decides whether this request to `platform` is hit by a fault.
    fn pick(&self, platform: FaultPlatform) -> Option<FaultSpec> {
        let now = Instant::now();
        let mut active = self.active.lock();
        active.retain(|f| f.until.is_none_or(|u| u > now));
        for f in active.iter() {
            if f.spec.platform == platform && rand::random::<f64>() < f.spec.rate {
                return Some(f.spec.clone());
            }
        }
        None
    }
}

fn platform_of(path: &str) -> Option<FaultPlatform> {
    if path.starts_with("/slack/api/") {
        Some(FaultPlatform::Slack)
    } else if path.starts_with("/graph/") || path.starts_with("/microsoft/") {
        Some(FaultPlatform::Msteams)
    } else {
        None
    }
}

/// Middleware applying the active faults to platform routes (never to `/_sandbox`).
pub(crate) async fn middleware(
    State(world): State<SharedWorld>,
    req: Request,
    next: Next,
) -> Response {
    let Some(platform) = platform_of(req.uri().path()) else {
        return next.run(req).await;
    };
    match world.faults.pick(platform) {
        None => next.run(req).await,
        Some(spec) => match spec.kind {
            FaultKind::Stall => {
                // validated in `add`; the clamp and the fallible conversion keep this panic-free anyway
                let secs = spec
                    .stall_seconds
                    .unwrap_or(5.0)
                    .clamp(0.0, MAX_STALL_SECONDS);
                tokio::time::sleep(Duration::try_from_secs_f64(secs).unwrap_or_default()).await;
                next.run(req).await
            }
            FaultKind::Error5xx => match platform {
                FaultPlatform::Slack => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Body::from("internal server error (sandbox fault)"),
                )
                    .into_response(),
                FaultPlatform::Msteams => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    axum::Json(json!({"error": {"code": "ServiceNotAvailable",
                        "message": "The service is temporarily unavailable (sandbox fault).",
                        "innerError": {"request-id": uuid::Uuid::new_v4().to_string()}}})),
                )
                    .into_response(),
            },
            FaultKind::Throttle429 => {
                let retry = spec.retry_after.unwrap_or(1);
                let mut resp = match platform {
                    FaultPlatform::Slack => (
                        StatusCode::TOO_MANY_REQUESTS,
                        axum::Json(json!({"ok": false, "error": "ratelimited"})),
                    )
                        .into_response(),
                    FaultPlatform::Msteams => (
                        StatusCode::TOO_MANY_REQUESTS,
                        axum::Json(json!({"error": {"code": "TooManyRequests",
                            "message": "Too many requests (sandbox fault).",
                            "innerError": {"request-id": uuid::Uuid::new_v4().to_string()}}})),
                    )
                        .into_response(),
                };
                resp.headers_mut()
                    .insert("retry-after", HeaderValue::from(retry));
                resp
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_kinds_use_the_documented_names() {
        for (name, kind) in [
            ("error_5xx", FaultKind::Error5xx),
            ("throttle_429", FaultKind::Throttle429),
            ("stall", FaultKind::Stall),
        ] {
            let spec: FaultSpec = serde_json::from_value(
                json!({"platform": "slack", "kind": name, "rate": 0.5, "seconds": 10}),
            )
            .unwrap();
            assert_eq!(spec.kind, kind);
        }
        let faults = Faults::default();
        let bad: FaultSpec =
            serde_json::from_value(json!({"platform": "msteams", "kind": "stall", "rate": 1.5}))
                .unwrap();
        assert!(faults.add(bad).is_err());
    }

    #[test]
    fn out_of_range_specs_are_refused_without_panicking() {
        let faults = Faults::default();
        let spec = |seconds: f64, stall: f64, rate: f64| FaultSpec {
            platform: FaultPlatform::Msteams,
            kind: FaultKind::Stall,
            rate,
            seconds: Some(seconds),
            retry_after: None,
            stall_seconds: Some(stall),
        };
        for (seconds, stall, rate) in [
            (1e300, 1.0, 0.5),
            (1e19, 1.0, 0.5),
            (f64::INFINITY, 1.0, 0.5),
            (f64::NAN, 1.0, 0.5),
            (-1.0, 1.0, 0.5),
            (MAX_FAULT_SECONDS * 2.0, 1.0, 0.5),
            (10.0, f64::NAN, 0.5),
            (10.0, 1e300, 0.5),
            (10.0, -1.0, 0.5),
            (10.0, 1.0, f64::NAN),
            (10.0, 1.0, -0.1),
            (10.0, 1.0, 1e300),
        ] {
            assert!(
                faults.add(spec(seconds, stall, rate)).is_err(),
                "{seconds} {stall} {rate}"
            );
        }
        assert!(
            faults.active.lock().is_empty(),
            "a refused spec adds nothing"
        );
        faults.add(spec(MAX_FAULT_SECONDS, 600.0, 1.0)).unwrap();
        faults.add(spec(0.0, 0.0, 0.0)).unwrap();
        assert_eq!(faults.active.lock().len(), 2);
    }
}
