//! The Web API client: one HTTP request per call, paced per method tier (and per channel
//! for posts), `Retry-After` honoured on 429 within a bounded total wait, reads retried on
//! transient failures, `ok:false` mapped onto core error kinds.
//!
//! Tokens travel in the `Authorization` header only (never in a URL, a log line or an
//! error message).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde_json::Value;
use url::Url;

use crate::config::{RateLimits, RetryPolicy, SlackConfig, Tier, tier_of};
use crate::error::{Error, ErrorKind, Result, api_error};
use crate::pacer::Pacer;

/// The arguments of a call, and with them how it is sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Args {
    /// No arguments: `POST` with an empty form.
    None,
    /// `GET` with a query string (read methods).
    Query(Vec<(&'static str, String)>),
    /// `POST` `application/x-www-form-urlencoded`.
    Form(Vec<(&'static str, String)>),
    /// `POST` `application/json; charset=utf-8` with this object.
    Json(Value),
}

/// How a call authenticates.
#[derive(Clone, Copy)]
pub enum Auth<'a> {
    /// `Authorization: Bearer <token>` (bot `xoxb-` or app-level `xapp-` token).
    Bearer(&'a SecretString),
    /// HTTP Basic with the app's client id and secret (`oauth.v2.access`).
    Basic {
        /// The client id.
        client_id: &'a str,
        /// The client secret.
        client_secret: &'a SecretString,
    },
    /// No credentials.
    None,
}

impl std::fmt::Debug for Auth<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Auth::Bearer(_) => "Bearer(<redacted>)",
            Auth::Basic { .. } => "Basic(<redacted>)",
            Auth::None => "None",
        })
    }
}

/// Per-call options.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallOptions<'a> {
    /// The workspace the call acts in: rate limits are per method per workspace.
    pub workspace: Option<&'a str>,
    /// The channel, for the per-channel posting limit.
    pub channel: Option<&'a str>,
    /// Whether the call may be repeated after a failure whose outcome is unknown (5xx, a
    /// dropped connection, a malformed answer). Reads are; posts are not.
    pub idempotent: bool,
}

/// A successful (`ok:true`) answer.
#[derive(Debug, Clone)]
pub struct ApiResponse<T> {
    /// The parsed body.
    pub body: T,
    /// The token's scopes, from the `X-OAuth-Scopes` header, when Slack sent it.
    pub scopes: Option<Vec<String>>,
    /// Slack's `warning` field (e.g. `already_in_channel`), when present.
    pub warning: Option<String>,
}

/// Counters of what the client did, for benchmarks and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallStats {
    /// HTTP requests sent, per method (retries included).
    pub requests: BTreeMap<String, u64>,
    /// 429 answers received.
    pub rate_limited: u64,
    /// Time spent waiting on `Retry-After`, in milliseconds.
    pub retry_after_wait_ms: u64,
}

#[derive(Debug, Default)]
struct Counters {
    requests: Mutex<BTreeMap<String, u64>>,
    rate_limited: AtomicU64,
    retry_after_wait_ms: AtomicU64,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    api_base: Url,
    limits: RateLimits,
    retry: RetryPolicy,
    pacer: Pacer,
    counters: Counters,
}

/// The Slack Web API client. Cheap to clone; clones share pacing and counters.
#[derive(Debug, Clone)]
pub struct SlackClient {
    inner: Arc<Inner>,
}

/// Error codes worth retrying on reads.
const TRANSIENT_CODES: &[&str] = &[
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
];

impl SlackClient {
    /// A client for the configured API base, limits and retry policy.
    pub fn new(config: &SlackConfig) -> Result<SlackClient> {
        config.validate()?;
        let http = reqwest::Client::builder()
            .timeout(config.http_timeout)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("switchboard-slack/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::upstream(format!("cannot build the HTTP client: {e}")))?;
        Ok(SlackClient {
            inner: Arc::new(Inner {
                http,
                api_base: config.api_base.clone(),
                limits: config.limits.clone(),
                retry: config.retry.clone(),
                pacer: Pacer::default(),
                counters: Counters::default(),
            }),
        })
    }

    /// The Web API base URL.
    pub fn api_base(&self) -> &Url {
        &self.inner.api_base
    }

    /// The limits this client paces itself under.
    pub fn limits(&self) -> &RateLimits {
        &self.inner.limits
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> CallStats {
        let c = &self.inner.counters;
        CallStats {
            requests: c.requests.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            rate_limited: c.rate_limited.load(Ordering::Relaxed),
            retry_after_wait_ms: c.retry_after_wait_ms.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    fn count(&self, method: &str) {
        let mut m = self
            .inner
            .counters
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *m.entry(method.to_owned()).or_default() += 1;
    }

    async fn pace(&self, method: &str, opts: &CallOptions<'_>) {
        let ws = opts.workspace.unwrap_or("-");
        let limits = &self.inner.limits;
        let pacer = &self.inner.pacer;
        match tier_of(method) {
            Tier::Post => {
                if let Some(channel) = opts.channel {
                    pacer
                        .acquire(
                            &format!("{ws}/post/{channel}"),
                            limits.post_per_channel,
                            limits.headroom,
                        )
                        .await;
                }
                pacer
                    .acquire(
                        &format!("{ws}/post"),
                        limits.post_workspace,
                        limits.headroom,
                    )
                    .await;
            }
            tier => {
                pacer
                    .acquire(
                        &format!("{ws}/{method}"),
                        limits.for_tier(tier),
                        limits.headroom,
                    )
                    .await;
            }
        }
    }

    fn block_key(method: &str, opts: &CallOptions<'_>) -> String {
        let ws = opts.workspace.unwrap_or("-");
        match (tier_of(method), opts.channel) {
            (Tier::Post, Some(channel)) => format!("{ws}/post/{channel}"),
            (Tier::Post, None) => format!("{ws}/post"),
            _ => format!("{ws}/{method}"),
        }
    }

    fn request(
        &self,
        method: &str,
        auth: Auth<'_>,
        args: &Args,
    ) -> Result<reqwest::RequestBuilder> {
        let url = self
            .inner
            .api_base
            .join(method)
            .map_err(|e| Error::invalid(format!("bad Slack method name {method:?}: {e}")))?;
        let http = &self.inner.http;
        let req = match args {
            Args::None => http
                .post(url)
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(""),
            Args::Query(q) => http.get(url).query(q),
            Args::Form(f) => {
                let body = serde_urlencoded::to_string(f)
                    .map_err(|e| Error::invalid(format!("cannot encode {method} form: {e}")))?;
                http.post(url)
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(body)
            }
            Args::Json(v) => http
                .post(url)
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/json; charset=utf-8",
                )
                .body(v.to_string()),
        };
        Ok(match auth {
            Auth::Bearer(token) => req.bearer_auth(token.expose_secret()),
            Auth::Basic {
                client_id,
                client_secret,
            } => req.basic_auth(client_id, Some(client_secret.expose_secret())),
            Auth::None => req,
        })
    }

    /// Calls a Web API method and parses an `ok:true` answer into `T`.
    ///
    /// Paces itself under the method's tier (per workspace, and per channel for
    /// `chat.postMessage`); on 429 waits `Retry-After` (blocking every caller of the method)
    /// and retries until [`RetryPolicy::max_rate_limit_wait`] would be exceeded, then fails
    /// with [`ErrorKind::RateLimited`]; retries idempotent calls after 5xx, network failures
    /// and malformed answers up to [`RetryPolicy::max_transient_retries`] times.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        auth: Auth<'_>,
        args: &Args,
        opts: CallOptions<'_>,
    ) -> Result<ApiResponse<T>> {
        let retry = &self.inner.retry;
        let mut rate_limit_waited = Duration::ZERO;
        let mut missing_retry_after = retry.default_retry_after;
        let mut transient_failures = 0u32;
        let mut backoff = retry.transient_backoff;
        loop {
            self.pace(method, &opts).await;
            self.count(method);
            let outcome = self.attempt::<T>(method, auth, args, &opts).await;
            match outcome {
                Attempt::Done(result) => return result,
                Attempt::RateLimited(retry_after) => {
                    self.inner
                        .counters
                        .rate_limited
                        .fetch_add(1, Ordering::Relaxed);
                    let wait = match retry_after {
                        Some(wait) => wait,
                        None => {
                            let wait = missing_retry_after;
                            missing_retry_after =
                                (missing_retry_after * 2).min(Duration::from_secs(60));
                            wait
                        }
                    };
                    if rate_limit_waited + wait > retry.max_rate_limit_wait {
                        return Err(Error::new(
                            ErrorKind::RateLimited {
                                retry_after: Some(wait),
                            },
                            format!(
                                "Slack kept rate limiting {method}: gave up after waiting {}s in total (next Retry-After {}s)",
                                rate_limit_waited.as_secs(),
                                wait.as_secs_f64().ceil()
                            ),
                        ));
                    }
                    tracing::debug!(
                        method,
                        wait_ms = wait.as_millis() as u64,
                        "Slack answered 429; waiting Retry-After"
                    );
                    rate_limit_waited += wait;
                    self.inner
                        .counters
                        .retry_after_wait_ms
                        .fetch_add(wait.as_millis() as u64, Ordering::Relaxed);
                    self.inner
                        .pacer
                        .block(&Self::block_key(method, &opts), wait);
                }
                Attempt::Transient { error, retryable } => {
                    if retryable && transient_failures < retry.max_transient_retries {
                        transient_failures += 1;
                        tracing::debug!(method, attempt = transient_failures, error = %error, "transient Slack failure; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    } else {
                        return Err(error);
                    }
                }
            }
        }
    }

    async fn attempt<T: DeserializeOwned>(
        &self,
        method: &str,
        auth: Auth<'_>,
        args: &Args,
        opts: &CallOptions<'_>,
    ) -> Attempt<T> {
        let req = match self.request(method, auth, args) {
            Ok(r) => r,
            Err(e) => return Attempt::Done(Err(e)),
        };
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                // A connection that was never made sent nothing: always safe to retry.
                let retryable = opts.idempotent || e.is_connect();
                return Attempt::Transient {
                    error: Error::upstream(format!(
                        "could not reach Slack for {method}: {}",
                        e.without_url()
                    )),
                    retryable,
                };
            }
        };
        let status = resp.status();
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Attempt::RateLimited(retry_after(resp.headers()));
        }
        let scopes = resp
            .headers()
            .get("x-oauth-scopes")
            .and_then(|v| v.to_str().ok())
            .map(|s| {
                s.split(',')
                    .map(|x| x.trim().to_owned())
                    .filter(|x| !x.is_empty())
                    .collect::<Vec<_>>()
            });
        let bytes = match read_body(resp, MAX_RESPONSE_BYTES).await {
            Ok(b) => b,
            Err(BodyError::TooLarge) => {
                return Attempt::Done(Err(Error::upstream(format!(
                    "Slack's answer to {method} is larger than {} MiB; refused without reading it",
                    MAX_RESPONSE_BYTES / (1024 * 1024)
                ))));
            }
            Err(BodyError::Read(e)) => {
                return Attempt::Transient {
                    error: Error::upstream(format!(
                        "reading Slack's answer to {method} failed: {}",
                        e.without_url()
                    )),
                    retryable: opts.idempotent,
                };
            }
        };
        if status.is_server_error() {
            return Attempt::Transient {
                error: Error::upstream(format!("Slack answered HTTP {status} to {method}")),
                retryable: opts.idempotent,
            };
        }
        let value: Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => {
                if !status.is_success() {
                    return Attempt::Done(Err(http_status_error(method, status)));
                }
                return Attempt::Transient {
                    error: Error::upstream(format!("Slack's answer to {method} is not JSON ({e})")),
                    retryable: opts.idempotent,
                };
            }
        };
        match value.get("ok").and_then(Value::as_bool) {
            Some(true) => {
                let warning = value
                    .get("warning")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                match serde_json::from_value::<T>(value) {
                    Ok(body) => Attempt::Done(Ok(ApiResponse {
                        body,
                        scopes,
                        warning,
                    })),
                    Err(e) => Attempt::Transient {
                        error: Error::upstream(format!(
                            "Slack's answer to {method} does not have the documented shape: {e}"
                        )),
                        retryable: opts.idempotent,
                    },
                }
            }
            Some(false) => {
                let code = value
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown_error");
                if opts.idempotent && TRANSIENT_CODES.contains(&code) {
                    return Attempt::Transient {
                        error: api_error(method, code, None, None, None),
                        retryable: true,
                    };
                }
                if matches!(code, "ratelimited" | "rate_limited") {
                    return Attempt::RateLimited(None);
                }
                let s = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_owned);
                Attempt::Done(Err(api_error(
                    method,
                    code,
                    s("needed"),
                    s("provided"),
                    None,
                )))
            }
            None => {
                if !status.is_success() {
                    Attempt::Done(Err(http_status_error(method, status)))
                } else {
                    Attempt::Transient {
                        error: Error::upstream(format!(
                            "Slack's answer to {method} has no `ok` field"
                        )),
                        retryable: opts.idempotent,
                    }
                }
            }
        }
    }
}

/// The largest Web API answer read: 16 MiB, far above any page the adapter asks for. A
/// larger answer is refused as [`ErrorKind::Upstream`] as soon as its `Content-Length`, or
/// the bytes received so far (after decompression), pass this bound, so no more than this
/// is ever buffered.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

enum BodyError {
    TooLarge,
    Read(reqwest::Error),
}

/// Reads a response body of at most `limit` bytes (after any content decoding), chunk by
/// chunk, stopping as soon as it would pass the bound.
async fn read_body(
    mut resp: reqwest::Response,
    limit: usize,
) -> std::result::Result<Vec<u8>, BodyError> {
    let declared = resp.content_length();
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    let initial = declared.map_or(8 * 1024, |len| len.min(1024 * 1024) as usize);
    let mut body = Vec::with_capacity(initial);
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Read)? {
        if chunk.len() > limit - body.len() {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

enum Attempt<T> {
    Done(Result<ApiResponse<T>>),
    RateLimited(Option<Duration>),
    Transient { error: Error, retryable: bool },
}

fn http_status_error(method: &str, status: reqwest::StatusCode) -> Error {
    let kind = match status.as_u16() {
        401 => ErrorKind::Unauthorized,
        403 => ErrorKind::Forbidden,
        404 | 410 => ErrorKind::NotFound,
        400 | 413 | 422 => ErrorKind::InvalidInput,
        _ => ErrorKind::Upstream,
    };
    Error::new(kind, format!("Slack answered HTTP {status} to {method}"))
}

/// `Retry-After` in seconds (integer or decimal); absent or unreadable gives `None`.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    let secs: f64 = v.trim().parse().ok()?;
    if secs.is_finite() && secs >= 0.0 {
        Some(Duration::from_secs_f64(secs.min(3600.0)))
    } else {
        None
    }
}
