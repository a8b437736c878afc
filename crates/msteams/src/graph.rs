//! The Graph HTTP client: bearer tokens from a [`TokenProvider`], client-side pacing
//! ([`Pacer`]), bounded concurrency, `Retry-After` and exponential backoff with jitter, a
//! bounded total wait, Graph error mapping, and lenient paging that follows
//! `@odata.nextLink` verbatim (on the Graph origin only, so the bearer never leaks).

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use switchboard_core::{Error, ErrorKind, Result};
use tokio::sync::Semaphore;
use url::Url;

use crate::config::{MsTeamsConfig, RetryPolicy};
use crate::oauth::describe_reqwest;
use crate::pacer::{Bucket, BucketKey, Pacer, classify};
use crate::token::TokenProvider;

/// The longest `Retry-After` honoured as given (longer ones are capped).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// The largest response body read.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// Parses a `Retry-After` header: delay-seconds (`1*DIGIT`, a decimal fraction tolerated) or
/// an HTTP date. Digits are read without floating point and saturate, so any number of them
/// (`18446744073709551616`, a thousand nines) clamps to the cap instead of overflowing; signs,
/// exponents and other garbage give `None`. Dates in the past give zero.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Some(d) = delay_seconds(v) {
        return Some(d.min(MAX_RETRY_AFTER));
    }
    if v.is_empty() || v.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let date =
        time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc2822).ok()?;
    let delta = date - time::OffsetDateTime::now_utc();
    Some(
        Duration::try_from(delta)
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

/// `DIGITS[.DIGITS]` as a duration, saturating at [`MAX_RETRY_AFTER`] (the caller clamps
/// anyway): no float, no overflow.
fn delay_seconds(v: &str) -> Option<Duration> {
    let (int, frac) = match v.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (v, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || frac.is_some_and(|f| !digits(f)) {
        return None;
    }
    let cap = MAX_RETRY_AFTER.as_secs();
    let mut secs: u64 = 0;
    for b in int.bytes() {
        secs = secs * 10 + u64::from(b - b'0');
        if secs >= cap {
            return Some(MAX_RETRY_AFTER);
        }
    }
    let mut nanos: u32 = 0;
    let mut scale: u32 = 100_000_000;
    for b in frac.unwrap_or("").bytes().take(9) {
        nanos += u32::from(b - b'0') * scale;
        scale /= 10;
    }
    Some(Duration::new(secs, nanos))
}

/// One request to Graph.
#[derive(Debug, Clone)]
pub struct GraphRequest {
    /// The method.
    pub method: Method,
    /// The absolute URL (on the Graph origin).
    pub url: Url,
    /// A JSON body.
    pub body: Option<serde_json::Value>,
    /// A raw body with its content type (file uploads), used when `body` is `None`.
    pub raw_body: Option<(Vec<u8>, &'static str)>,
    /// Whether repeating the request is harmless (then 5xx and timeouts are retried; a
    /// non-idempotent request is only retried when it was certainly not processed: 429,
    /// 503 and connection failures).
    pub idempotent: bool,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
}

impl GraphRequest {
    /// A request without body.
    pub fn new(method: Method, url: Url) -> Self {
        let idempotent = matches!(
            method,
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::PATCH
        );
        GraphRequest {
            method,
            url,
            body: None,
            raw_body: None,
            idempotent,
            headers: Vec::new(),
        }
    }

    /// A GET.
    pub fn get(url: Url) -> Self {
        Self::new(Method::GET, url)
    }

    /// Adds a JSON body.
    pub fn json(mut self, body: serde_json::Value) -> Self {
        self.body = Some(body);
        self
    }

    /// Adds a raw body (file content) of `content_type`.
    pub fn bytes(mut self, body: Vec<u8>, content_type: &'static str) -> Self {
        self.raw_body = Some((body, content_type));
        self
    }

    /// Overrides whether the request may be repeated.
    pub fn idempotent(mut self, yes: bool) -> Self {
        self.idempotent = yes;
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn label(&self) -> String {
        format!("{} {}", self.method, self.url.path())
    }
}

/// A successful response.
#[derive(Debug, Clone)]
pub struct GraphResponse {
    /// The status (2xx).
    pub status: StatusCode,
    /// The body bytes (empty for 204).
    pub body: Vec<u8>,
}

impl GraphResponse {
    /// Parses the body as JSON of type `T`.
    pub fn json<T: DeserializeOwned>(&self, label: &str) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::upstream(format!(
                "{label}: Graph answered with a body that is not the expected JSON: {e}"
            ))
        })
    }
}

/// A failed request: the core error plus the HTTP status and Graph error code when there
/// was a response.
#[derive(Debug)]
pub struct GraphFailure {
    /// The HTTP status, when Graph answered.
    pub status: Option<u16>,
    /// Graph's `error.code`, when it sent one.
    pub code: Option<String>,
    /// The error to hand on.
    pub error: Error,
}

impl From<Error> for GraphFailure {
    fn from(error: Error) -> Self {
        GraphFailure {
            status: None,
            code: None,
            error,
        }
    }
}

impl From<GraphFailure> for Error {
    fn from(f: GraphFailure) -> Self {
        f.error
    }
}

#[derive(Deserialize, Default)]
struct ErrorEnvelope {
    #[serde(default)]
    error: Option<ErrorBody>,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default, alias = "innererror", rename = "innerError")]
    inner: Option<InnerError>,
}

#[derive(Deserialize, Default)]
struct InnerError {
    #[serde(default, rename = "request-id")]
    request_id: Option<String>,
}

fn clip(s: &str, n: usize) -> String {
    let mut out: String = s.chars().take(n).collect();
    if s.chars().count() > n {
        out.push('…');
    }
    out
}

fn failure(
    status: StatusCode,
    body: &[u8],
    label: &str,
    retry_after: Option<Duration>,
) -> GraphFailure {
    let env: ErrorEnvelope = serde_json::from_slice(body).unwrap_or_default();
    let err = env.error.unwrap_or_default();
    let code = err.code.filter(|c| !c.is_empty());
    let mut msg = format!("{label}: HTTP {}", status.as_u16());
    if let Some(c) = &code {
        msg.push(' ');
        msg.push_str(&clip(c, 100));
    }
    if let Some(m) = err.message.as_deref().filter(|m| !m.is_empty()) {
        msg.push_str(": ");
        msg.push_str(&clip(m.lines().next().unwrap_or(""), 300));
    }
    if let Some(id) = err.inner.and_then(|i| i.request_id) {
        msg.push_str(&format!(" (request-id {})", clip(&id, 64)));
    }
    let kind = match status.as_u16() {
        400 | 413 | 422 => ErrorKind::InvalidInput,
        401 => ErrorKind::Unauthorized,
        403 => ErrorKind::Forbidden,
        404 | 410 => ErrorKind::NotFound,
        409 | 412 => ErrorKind::Conflict,
        429 => ErrorKind::RateLimited { retry_after },
        _ => ErrorKind::Upstream,
    };
    GraphFailure {
        status: Some(status.as_u16()),
        code,
        error: Error::new(kind, msg),
    }
}

/// One page of a Graph collection. Items that do not parse are skipped (and counted), so an
/// odd item never fails the page.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The items that parsed.
    pub items: Vec<T>,
    /// The next page, verbatim (checked to be on the Graph origin).
    pub next_link: Option<Url>,
    /// The delta link, when this is the last page of a delta round.
    pub delta_link: Option<String>,
    /// `@odata.count`, when Graph sent one.
    pub count: Option<u64>,
    /// Items that could not be parsed and were skipped.
    pub skipped: usize,
}

#[derive(Deserialize)]
struct RawCollection {
    value: Vec<serde_json::Value>,
    #[serde(default, rename = "@odata.nextLink")]
    next_link: Option<String>,
    #[serde(default, rename = "@odata.deltaLink")]
    delta_link: Option<String>,
    #[serde(default, rename = "@odata.count")]
    count: Option<u64>,
}

/// The Graph client of one connection.
#[derive(Debug, Clone)]
pub struct GraphClient {
    http: reqwest::Client,
    base: Url,
    base_segments: usize,
    tokens: Arc<TokenProvider>,
    pacer: Arc<Pacer>,
    permits: Arc<Semaphore>,
    retry: RetryPolicy,
}

impl GraphClient {
    /// A client for `config`'s Graph base, acting with `tokens`.
    pub fn new(config: &MsTeamsConfig, tokens: Arc<TokenProvider>) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(config.max_concurrency.max(1))
            .build()
            .map_err(|e| Error::upstream("could not build the HTTP client").with_source(e))?;
        let base = crate::config::with_trailing_slash(config.graph_base.clone());
        let base_segments = base
            .path_segments()
            .map(|s| s.filter(|x| !x.is_empty()).count())
            .unwrap_or(0);
        Ok(GraphClient {
            http,
            base,
            base_segments,
            tokens,
            pacer: Arc::new(Pacer::new(config.limits.clone())),
            permits: Arc::new(Semaphore::new(config.max_concurrency.max(1))),
            retry: config.retry,
        })
    }

    /// Shares a pacer with other clients of the same app and tenant.
    pub fn with_pacer(mut self, pacer: Arc<Pacer>) -> Self {
        self.pacer = pacer;
        self
    }

    /// The plain HTTP client (no bearer): for pre-authenticated download URLs Graph hands
    /// out, which must never receive the token.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The pacer.
    pub fn pacer(&self) -> &Arc<Pacer> {
        &self.pacer
    }

    /// The default token provider (the connection's account).
    pub fn tokens(&self) -> &Arc<TokenProvider> {
        &self.tokens
    }

    /// The Graph base URL (with the version and a trailing slash).
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// `{base}/seg1/seg2…` with each segment percent-encoded as needed, plus a query.
    pub fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut s) = url.path_segments_mut() {
            s.pop_if_empty();
            s.extend(segments);
        }
        if !query.is_empty() {
            let q = query
                .iter()
                .map(|(k, v)| format!("{k}={}", encode_query_value(v)))
                .collect::<Vec<_>>()
                .join("&");
            url.set_query(Some(&q));
        }
        url
    }

    /// Accepts a link Graph returned (`@odata.nextLink`, `@odata.deltaLink`, a stored delta
    /// link) verbatim, refusing one that points outside the Graph base (the bearer token
    /// must never be sent elsewhere).
    pub fn resolve_link(&self, link: &str) -> Result<Url> {
        let url = Url::parse(link).map_err(|e| {
            Error::upstream(format!("Graph returned a link that is not a URL: {e}"))
        })?;
        let same_origin = url.scheme() == self.base.scheme()
            && url.host_str() == self.base.host_str()
            && url.port_or_known_default() == self.base.port_or_known_default();
        let base_path = self.base.path();
        let under_base =
            url.path().starts_with(base_path) || url.path() == base_path.trim_end_matches('/');
        if !same_origin || !under_base {
            return Err(Error::upstream(format!(
                "Graph returned a link to {}://{} outside the configured Graph base; not following it",
                url.scheme(),
                url.host_str().unwrap_or("?")
            )));
        }
        Ok(url)
    }

    /// The path segments of `url` below the Graph base, percent-decoded.
    fn relative_segments(&self, url: &Url) -> Vec<String> {
        url.path_segments()
            .map(|s| {
                s.filter(|x| !x.is_empty())
                    .skip(self.base_segments)
                    .map(percent_decode)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The buckets a request counts against.
    pub fn buckets(&self, method: &Method, url: &Url) -> Vec<BucketKey> {
        let segs = self.relative_segments(url);
        let refs: Vec<&str> = segs.iter().map(String::as_str).collect();
        classify(method, &refs)
    }

    /// Sends a request as the connection's account.
    pub async fn send(&self, req: &GraphRequest) -> Result<GraphResponse, GraphFailure> {
        self.send_as(req, &self.tokens).await
    }

    /// Sends a request with `tokens` (e.g. a user's own delegated token), paced, bounded,
    /// retried on 429/503 (honouring `Retry-After`), on 5xx and transport failures when safe,
    /// and once after a 401 with a refreshed token.
    pub async fn send_as(
        &self,
        req: &GraphRequest,
        tokens: &TokenProvider,
    ) -> Result<GraphResponse, GraphFailure> {
        let started = Instant::now();
        let label = req.label();
        let keys = self.buckets(&req.method, &req.url);
        let policy = self.retry;
        let mut attempt: u32 = 0;
        let mut auth_retried = false;
        let mut last_problem: String;
        loop {
            attempt += 1;
            let budget = policy.max_total_wait.saturating_sub(started.elapsed());
            if let Err(wait) = self.pacer.acquire(&keys, budget).await {
                if let Some(channel) = keys
                    .iter()
                    .filter(|k| k.bucket == Bucket::ChannelDaily)
                    .filter_map(|k| k.scope.as_deref())
                    .find(|c| self.pacer.daily_remaining(c) == 0)
                {
                    return Err(GraphFailure::from(Error::new(
                        ErrorKind::RateLimited {
                            retry_after: Some(wait),
                        },
                        format!(
                            "{label}: Graph accepts 3,000 messages per app per day into one channel and today's budget of channel {channel} is spent; it starts over in {:.0}s",
                            wait.as_secs_f64()
                        ),
                    )));
                }
                return Err(GraphFailure::from(Error::new(
                    ErrorKind::RateLimited {
                        retry_after: Some(wait),
                    },
                    format!(
                        "{label}: staying under Graph's limits would take {:.1}s, more than the {:.1}s this call may wait",
                        wait.as_secs_f64(),
                        budget.as_secs_f64()
                    ),
                )));
            }
            let token = tokens.access_token().await?;
            let permit = self
                .permits
                .acquire()
                .await
                .map_err(|_| Error::upstream("the Graph client is shutting down"))?;
            let mut rb = self
                .http
                .request(req.method.clone(), req.url.clone())
                .bearer_auth(token.expose_secret())
                .header(reqwest::header::ACCEPT, "application/json");
            for (k, v) in &req.headers {
                rb = rb.header(*k, v.as_str());
            }
            if let Some(body) = &req.body {
                rb = rb.json(body);
            } else if let Some((bytes, content_type)) = &req.raw_body {
                rb = rb
                    .header(reqwest::header::CONTENT_TYPE, *content_type)
                    .body(bytes.clone());
            } else if req.method == Method::POST {
                rb = rb.header(reqwest::header::CONTENT_LENGTH, "0");
            }
            let sent = rb.send().await;
            let (status, headers, body) = match sent {
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    match read_body(resp).await {
                        Ok(b) => (status, headers, b),
                        Err(e) => {
                            drop(permit);
                            last_problem = format!("reading the response failed: {e}");
                            if req.idempotent {
                                if let Some(d) = self.next_backoff(attempt, started) {
                                    tokio::time::sleep(d).await;
                                    continue;
                                }
                            }
                            return Err(give_up(&label, attempt, started, &last_problem, None));
                        }
                    }
                }
                Err(e) => {
                    drop(permit);
                    last_problem = describe_reqwest(&e);
                    let safe = e.is_connect() || req.idempotent;
                    if safe {
                        if let Some(d) = self.next_backoff(attempt, started) {
                            tokio::time::sleep(d).await;
                            continue;
                        }
                    }
                    return Err(give_up(&label, attempt, started, &last_problem, None));
                }
            };
            drop(permit);
            if status.is_success() {
                return Ok(GraphResponse { status, body });
            }
            let ra = retry_after(&headers);
            match status.as_u16() {
                401 if !auth_retried => {
                    auth_retried = true;
                    tokens.token_after_rejection(&token).await?;
                    attempt -= 1;
                    continue;
                }
                429 | 503 => {
                    let wait = ra.unwrap_or_else(|| policy.backoff(attempt));
                    self.pacer.penalize(&keys, wait);
                    let f = failure(status, &body, &label, ra);
                    last_problem = f.error.message().to_owned();
                    let elapsed = started.elapsed();
                    if attempt >= policy.max_attempts || elapsed + wait > policy.max_total_wait {
                        let kind = if status.as_u16() == 429 || ra.is_some() {
                            ErrorKind::RateLimited {
                                retry_after: Some(wait),
                            }
                        } else {
                            ErrorKind::Upstream
                        };
                        return Err(GraphFailure {
                            status: f.status,
                            code: f.code,
                            error: Error::new(
                                kind,
                                format!(
                                    "gave up after {attempt} attempt(s) over {:.1}s: {last_problem}",
                                    elapsed.as_secs_f64()
                                ),
                            ),
                        });
                    }
                    tracing::debug!(request = %label, status = status.as_u16(), wait_ms = wait.as_millis() as u64, "Graph throttled; retrying");
                    tokio::time::sleep(wait).await;
                    continue;
                }
                500 | 502 | 504 if req.idempotent => {
                    let f = failure(status, &body, &label, ra);
                    last_problem = f.error.message().to_owned();
                    if let Some(d) = self.next_backoff(attempt, started) {
                        tokio::time::sleep(d).await;
                        continue;
                    }
                    return Err(GraphFailure {
                        error: give_up(&label, attempt, started, &last_problem, None).error,
                        ..f
                    });
                }
                _ => return Err(failure(status, &body, &label, ra)),
            }
        }
    }

    fn next_backoff(&self, attempt: u32, started: Instant) -> Option<Duration> {
        if attempt >= self.retry.max_attempts {
            return None;
        }
        let d = self.retry.backoff(attempt);
        (started.elapsed() + d <= self.retry.max_total_wait).then_some(d)
    }

    /// GETs `url` and parses the JSON body.
    pub async fn get_json<T: DeserializeOwned>(&self, url: Url) -> Result<T> {
        let req = GraphRequest::get(url);
        let resp = self.send(&req).await?;
        resp.json(&req.label())
    }

    /// GETs one page of a collection.
    pub async fn get_page<T: DeserializeOwned>(&self, url: Url) -> Result<Page<T>> {
        let req = GraphRequest::get(url);
        let resp = self.send(&req).await?;
        self.parse_page(&resp.body, &req.label())
    }

    /// Parses a collection page leniently.
    pub fn parse_page<T: DeserializeOwned>(&self, body: &[u8], label: &str) -> Result<Page<T>> {
        let raw: RawCollection = serde_json::from_slice(body).map_err(|e| {
            Error::upstream(format!(
                "{label}: Graph answered with a body that is not a collection: {e}"
            ))
        })?;
        let mut items = Vec::with_capacity(raw.value.len());
        let mut skipped = 0;
        for v in raw.value {
            match serde_json::from_value::<T>(v) {
                Ok(t) => items.push(t),
                Err(e) => {
                    skipped += 1;
                    tracing::warn!(request = %label, error = %e, "skipping an item Graph returned that could not be parsed");
                }
            }
        }
        let next_link = match raw.next_link.filter(|l| !l.is_empty()) {
            Some(l) => Some(self.resolve_link(&l)?),
            None => None,
        };
        Ok(Page {
            items,
            next_link,
            delta_link: raw.delta_link.filter(|l| !l.is_empty()),
            count: raw.count,
            skipped,
        })
    }

    /// GETs every page from `first`, following `@odata.nextLink`, handing each page to
    /// `on_page` (which may stop early by returning `false`). Returns the number of pages.
    pub async fn for_each_page<T, F>(&self, first: Url, mut on_page: F) -> Result<u64>
    where
        T: DeserializeOwned,
        F: FnMut(Page<T>) -> Result<bool>,
    {
        let mut next = Some(first);
        let mut pages = 0u64;
        while let Some(url) = next.take() {
            let page: Page<T> = self.get_page(url).await?;
            pages += 1;
            next = page.next_link.clone();
            if !on_page(page)? {
                break;
            }
        }
        Ok(pages)
    }
}

async fn read_body(mut resp: reqwest::Response) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if out.len() + chunk.len() > MAX_BODY {
                    return Err(format!("the response is larger than {MAX_BODY} bytes"));
                }
                out.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(out),
            Err(e) => return Err(describe_reqwest(&e)),
        }
    }
}

fn give_up(
    label: &str,
    attempt: u32,
    started: Instant,
    problem: &str,
    retry_after: Option<Duration>,
) -> GraphFailure {
    let kind = match retry_after {
        Some(_) => ErrorKind::RateLimited { retry_after },
        None => ErrorKind::Upstream,
    };
    let problem = problem
        .strip_prefix(label)
        .map(|p| p.trim_start_matches(": "))
        .unwrap_or(problem);
    GraphFailure::from(Error::new(
        kind,
        format!(
            "{label}: gave up after {attempt} attempt(s) over {:.1}s: {problem}",
            started.elapsed().as_secs_f64()
        ),
    ))
}

/// Percent-decodes a path segment (lossy for invalid UTF-8).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Encodes an OData query value: everything but unreserved characters and the OData
/// punctuation Graph expects literally (`$`, `,`, `(`, `)`, `'`, `/`, `:`) is escaped; spaces
/// become `%20`.
fn encode_query_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'_' | b'~' | b'$' | b',' | b'(' | b')' | b'\'' | b'/' | b':' | b'@'
            );
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(RETRY_AFTER, "0.5".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(500)));
        h.insert(RETRY_AFTER, "99999999".parse().unwrap());
        assert_eq!(retry_after(&h), Some(MAX_RETRY_AFTER));
        h.insert(RETRY_AFTER, "-1".parse().unwrap());
        assert_eq!(retry_after(&h), None);
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn retry_after_never_panics_on_huge_or_odd_numbers() {
        let mut h = HeaderMap::new();
        for huge in [
            "18446744073709551616",
            "18446744073709551615",
            "340282366920938463463374607431768211456",
            "3600",
            "3600.000000001",
            &"9".repeat(1000),
        ] {
            h.insert(RETRY_AFTER, huge.parse().unwrap());
            assert_eq!(retry_after(&h), Some(MAX_RETRY_AFTER), "{huge}");
        }
        h.insert(
            RETRY_AFTER,
            format!("1.{}", "9".repeat(1000)).parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::new(1, 999_999_999)));
        h.insert(RETRY_AFTER, "1.25".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(1250)));
        h.insert(RETRY_AFTER, "0".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        for odd in [
            "1e300", "1e19", "inf", "NaN", "-0", "+5", ".5", "5.", "1.2.3", "", "0x10", "١٢",
        ] {
            h.insert(RETRY_AFTER, odd.parse().unwrap());
            assert_eq!(retry_after(&h), None, "{odd:?}");
        }
        // a date far in the future is capped, one in year 9999 does not overflow
        h.insert(
            RETRY_AFTER,
            "Fri, 31 Dec 9999 23:59:59 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn graph_errors_map_to_kinds_with_code_and_request_id() {
        let body = br#"{"error":{"code":"Forbidden","message":"Missing role permissions\nmore","innerError":{"request-id":"r-1","date":"x"}}}"#;
        let f = failure(StatusCode::FORBIDDEN, body, "GET /v1.0/teams", None);
        assert_eq!(f.error.kind(), ErrorKind::Forbidden);
        assert_eq!(f.code.as_deref(), Some("Forbidden"));
        assert_eq!(
            f.error.message(),
            "GET /v1.0/teams: HTTP 403 Forbidden: Missing role permissions (request-id r-1)"
        );
        let f = failure(StatusCode::BAD_GATEWAY, b"<html>", "GET /x", None);
        assert_eq!(f.error.kind(), ErrorKind::Upstream);
        assert_eq!(f.error.message(), "GET /x: HTTP 502");
        for (s, k) in [
            (400, ErrorKind::InvalidInput),
            (401, ErrorKind::Unauthorized),
            (404, ErrorKind::NotFound),
            (409, ErrorKind::Conflict),
            (
                429,
                ErrorKind::RateLimited {
                    retry_after: Some(Duration::from_secs(2)),
                },
            ),
        ] {
            let f = failure(
                StatusCode::from_u16(s).unwrap(),
                b"{}",
                "X",
                Some(Duration::from_secs(2)),
            );
            assert_eq!(f.error.kind(), k);
        }
    }

    #[test]
    fn helpers_encode_and_decode() {
        assert_eq!(
            percent_decode("19%3Aabc%40thread.tacv2"),
            "19:abc@thread.tacv2"
        );
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(
            encode_query_value("id,displayName eq 'a&b'"),
            "id,displayName%20eq%20'a%26b'"
        );
    }
}
