//! Events API: `event_callback` envelopes, the delivery log, and the background delivery worker
//! (Socket Mode first, else a signed HTTP POST to the configured request URL, with retries).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use base64::Engine;
use hmac::{Hmac, Mac};
use parking_lot::{Mutex, RwLock};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::{Notify, mpsc};

use super::model::{AppInfo, random_id};
use crate::SharedWorld;
use crate::util::{now_unix, now_unix_ms};

/// How long one HTTP delivery may take before it counts as `http_timeout`.
pub(crate) const HTTP_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a Socket Mode envelope may stay unacknowledged before it is sent again.
pub(crate) const ACK_TIMEOUT: Duration = Duration::from_secs(3);
/// Retries after the first attempt.
pub(crate) const MAX_RETRIES: u32 = 3;
/// Entries kept in the delivery log.
const LOG_CAPACITY: usize = 10_000;

/// `v0=` + hex(HMAC-SHA256(signing_secret, "v0:{ts}:{body}")), Slack's request signature.
pub(crate) fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// Delay before retry number `n` (1-based) of an HTTP delivery, before time scaling.
fn retry_delay(n: u32) -> Duration {
    match n {
        0 | 1 => Duration::ZERO,
        2 => Duration::from_secs(60),
        _ => Duration::from_secs(300),
    }
}

/// Divides documented delays by the time scale when it is above 1.
pub(crate) fn scaled(d: Duration, time_scale: f64) -> Duration {
    if time_scale > 1.0 && time_scale.is_finite() {
        d.div_f64(time_scale)
    } else {
        d
    }
}

/// Delivery state of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Pending,
    Delivered,
    Failed,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Delivered => "delivered",
            Status::Failed => "failed",
        }
    }
}

#[derive(Debug)]
struct LogEntry {
    event_id: String,
    event_type: String,
    channel: String,
    created: u64,
    created_ms: u128,
    attempts: u32,
    status: Status,
    via: Option<&'static str>,
    last_error: Option<&'static str>,
    retry_reasons: Vec<&'static str>,
}

#[derive(Debug, Default)]
struct EventLog {
    /// Sequence number of `entries[0]`.
    base: u64,
    entries: VecDeque<LogEntry>,
}

impl EventLog {
    fn push(&mut self, e: LogEntry) -> u64 {
        if self.entries.len() >= LOG_CAPACITY {
            self.entries.pop_front();
            self.base += 1;
        }
        self.entries.push_back(e);
        self.base + self.entries.len() as u64 - 1
    }

    fn get_mut(&mut self, seq: u64) -> Option<&mut LogEntry> {
        let i = seq.checked_sub(self.base)?;
        self.entries.get_mut(usize::try_from(i).ok()?)
    }
}

/// One event waiting for delivery.
#[derive(Debug)]
pub(crate) struct Queued {
    seq: u64,
    channel: String,
    body: Arc<str>,
    envelope_id: String,
    created: Instant,
}

/// Event creation, the delivery log and the request URL.
pub(crate) struct EventBus {
    tx: mpsc::UnboundedSender<Queued>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<Queued>>>,
    log: Mutex<EventLog>,
    request_url: RwLock<Option<String>>,
    /// Woken when a Socket Mode connection opens or the request URL changes.
    pub(crate) endpoint_changed: Notify,
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus")
            .field("request_url", &*self.request_url.read())
            .field("logged", &self.log.lock().entries.len())
            .finish_non_exhaustive()
    }
}

impl EventBus {
    pub fn new() -> EventBus {
        let (tx, rx) = mpsc::unbounded_channel();
        EventBus {
            tx,
            rx: Mutex::new(Some(rx)),
            log: Mutex::new(EventLog::default()),
            request_url: RwLock::new(None),
            endpoint_changed: Notify::new(),
        }
    }

    /// Wraps `event` in an `event_callback` envelope and queues it for delivery.
    /// Called with the workspace lock held, so the queue order is the order of the changes.
    pub fn emit(&self, app: &AppInfo, channel_id: &str, event: Value) {
        let event_id = random_id("Ev");
        let et = event["type"].as_str().unwrap_or("").to_owned();
        let label = match event["subtype"].as_str() {
            Some(st) => format!("{et}/{st}"),
            None => et.clone(),
        };
        let context = json!({"et": et, "tid": app.team_id, "aid": app.app_id, "cid": channel_id});
        let event_context = format!(
            "4-{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(context.to_string())
        );
        let envelope = json!({
            "token": app.verification_token,
            "team_id": app.team_id,
            "context_team_id": app.team_id,
            "context_enterprise_id": null,
            "api_app_id": app.app_id,
            "event": event,
            "type": "event_callback",
            "event_id": event_id,
            "event_time": now_unix(),
            "authorizations": [{
                "enterprise_id": null,
                "team_id": app.team_id,
                "user_id": app.bot_user_id,
                "is_bot": true,
                "is_enterprise_install": false,
            }],
            "is_ext_shared_channel": false,
            "event_context": event_context,
            "authed_users": [app.bot_user_id],
        });
        let body: Arc<str> = Arc::from(envelope.to_string());
        let seq = self.log.lock().push(LogEntry {
            event_id,
            event_type: label,
            channel: channel_id.to_owned(),
            created: now_unix(),
            created_ms: now_unix_ms(),
            attempts: 0,
            status: Status::Pending,
            via: None,
            last_error: None,
            retry_reasons: Vec::new(),
        });
        let _ = self.tx.send(Queued {
            seq,
            channel: channel_id.to_owned(),
            body,
            envelope_id: uuid::Uuid::new_v4().to_string(),
            created: Instant::now(),
        });
    }

    pub fn request_url(&self) -> Option<String> {
        self.request_url.read().clone()
    }

    pub fn set_request_url(&self, url: Option<String>) {
        *self.request_url.write() = url;
        self.endpoint_changed.notify_waiters();
    }

    fn update(&self, seq: u64, f: impl FnOnce(&mut LogEntry)) {
        if let Some(e) = self.log.lock().get_mut(seq) {
            f(e);
        }
    }

    /// The delivery log, oldest first.
    pub fn log_json(&self) -> Value {
        let log = self.log.lock();
        let events: Vec<Value> = log
            .entries
            .iter()
            .map(|e| {
                json!({
                    "event_id": e.event_id,
                    "type": e.event_type,
                    "channel": e.channel,
                    "created": e.created,
                    "created_ms": e.created_ms,
                    "attempts": e.attempts,
                    "status": e.status.as_str(),
                    "via": e.via,
                    "last_error": e.last_error,
                    "retry_reasons": e.retry_reasons,
                })
            })
            .collect();
        json!({ "events": events })
    }

    /// Counts of the log by status.
    pub fn log_summary(&self) -> Value {
        let log = self.log.lock();
        let mut counts: HashMap<&str, u64> = HashMap::new();
        for e in &log.entries {
            *counts.entry(e.status.as_str()).or_default() += 1;
        }
        json!(counts)
    }

    /// Forgets the log (pending events keep being delivered).
    pub fn clear_log(&self) {
        let mut log = self.log.lock();
        let n = log.entries.len() as u64;
        log.entries.clear();
        log.base += n;
    }
}

/// Starts the dispatcher: one in-order worker per channel with events pending.
pub(crate) fn spawn_dispatcher(world: &SharedWorld) {
    let Some(mut rx) = world.slack.events.rx.lock().take() else {
        return;
    };
    let weak: Weak<crate::World> = Arc::downgrade(world);
    tokio::spawn(async move {
        let queues: Arc<Mutex<HashMap<String, VecDeque<Queued>>>> = Arc::default();
        while let Some(q) = rx.recv().await {
            let Some(world) = weak.upgrade() else { break };
            if world.slack.ws.read().modes.shuffle {
                // As Slack: every event on its own, concurrently, after a random delay,
                // retried independently, so order is not kept.
                let delay = {
                    use rand::Rng;
                    Duration::from_millis(rand::thread_rng().gen_range(0..200))
                };
                tokio::spawn(async move {
                    tokio::time::sleep(scaled(delay, world.config.time_scale)).await;
                    deliver(&world, q).await;
                });
                continue;
            }
            let channel = q.channel.clone();
            let start = {
                let mut map = queues.lock();
                match map.get_mut(&channel) {
                    Some(dq) => {
                        dq.push_back(q);
                        false
                    }
                    None => {
                        map.insert(channel.clone(), VecDeque::from([q]));
                        true
                    }
                }
            };
            if start {
                tokio::spawn(channel_worker(world, queues.clone(), channel));
            }
        }
    });
}

async fn channel_worker(
    world: SharedWorld,
    queues: Arc<Mutex<HashMap<String, VecDeque<Queued>>>>,
    channel: String,
) {
    loop {
        let next = {
            let mut map = queues.lock();
            match map.get_mut(&channel).and_then(VecDeque::pop_front) {
                Some(q) => q,
                None => {
                    map.remove(&channel);
                    return;
                }
            }
        };
        deliver(&world, next).await;
    }
}

enum Endpoint {
    Socket,
    Http(String),
}

/// Waits until a Socket Mode connection or a request URL exists, or `deadline` passes.
async fn wait_endpoint(world: &crate::World, deadline: Instant) -> Option<Endpoint> {
    let slack = &world.slack;
    loop {
        let notified = slack.events.endpoint_changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if slack.sockets.has_open() {
            return Some(Endpoint::Socket);
        }
        if let Some(url) = slack.events.request_url() {
            return Some(Endpoint::Http(url));
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep(deadline - now) => {}
        }
    }
}

enum SendError {
    /// The attempt failed; retry with this reason.
    Failed(&'static str),
    /// No connection was available after all; nothing was sent.
    NoConnection,
}

async fn deliver(world: &crate::World, q: Queued) {
    let slack = &world.slack;
    let scale = world.config.time_scale;
    let hold = scaled(Duration::from_secs(360), scale);
    let deadline = q.created + hold;
    let mut retry: u32 = 0;
    let mut reason: &'static str = "";
    loop {
        let Some(endpoint) = wait_endpoint(world, deadline).await else {
            slack.events.update(q.seq, |e| {
                e.status = Status::Failed;
                e.last_error = Some(if e.attempts == 0 {
                    "no_endpoint"
                } else {
                    e.last_error.unwrap_or("no_endpoint")
                });
            });
            return;
        };
        let result = match &endpoint {
            Endpoint::Socket => {
                slack
                    .sockets
                    .deliver(&q.envelope_id, &q.body, retry, reason)
                    .await
            }
            Endpoint::Http(url) => http_send(world, url, &q.body, retry, reason).await,
        };
        match result {
            Ok(via) => {
                slack.events.update(q.seq, |e| {
                    e.attempts += 1;
                    e.status = Status::Delivered;
                    e.via = Some(via);
                });
                return;
            }
            Err(SendError::NoConnection) => continue,
            Err(SendError::Failed(r)) => {
                reason = r;
                slack.events.update(q.seq, |e| {
                    e.attempts += 1;
                    e.last_error = Some(r);
                    e.retry_reasons.push(r);
                });
            }
        }
        retry += 1;
        if retry > MAX_RETRIES {
            slack.events.update(q.seq, |e| e.status = Status::Failed);
            return;
        }
        if let Endpoint::Http(_) = endpoint {
            let d = scaled(retry_delay(retry), scale);
            if !d.is_zero() {
                tokio::time::sleep(d).await;
            }
        }
    }
}

async fn http_send(
    world: &crate::World,
    url: &str,
    body: &str,
    retry: u32,
    reason: &str,
) -> Result<&'static str, SendError> {
    let ts = now_unix().to_string();
    let sig = sign(&world.slack.app.signing_secret, &ts, body.as_bytes());
    let mut req = world
        .http
        .post(url)
        .timeout(HTTP_TIMEOUT)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(
            reqwest::header::USER_AGENT,
            "Slackbot 1.0 (+https://api.slack.com/robots)",
        )
        .header("X-Slack-Request-Timestamp", &ts)
        .header("X-Slack-Signature", sig)
        .body(body.to_owned());
    if retry > 0 {
        req = req
            .header("X-Slack-Retry-Num", retry.to_string())
            .header("X-Slack-Retry-Reason", reason);
    }
    match req.send().await {
        Ok(resp) if resp.status().is_success() => Ok("http"),
        Ok(resp) if resp.status().is_redirection() => Err(SendError::Failed("too_many_redirects")),
        Ok(_) => Err(SendError::Failed("http_error")),
        Err(e) if e.is_timeout() => Err(SendError::Failed("http_timeout")),
        Err(e) if e.is_connect() => Err(SendError::Failed("connection_failed")),
        Err(e) if e.is_redirect() => Err(SendError::Failed("too_many_redirects")),
        Err(_) => Err(SendError::Failed("unknown_error")),
    }
}

impl super::socket::SocketHub {
    /// Sends an `events_api` envelope on an open connection and waits for its ack.
    async fn deliver(
        &self,
        envelope_id: &str,
        body: &str,
        retry: u32,
        reason: &str,
    ) -> Result<&'static str, SendError> {
        // The payload is already serialized JSON; splice it in without re-parsing.
        let frame = format!(
            "{{\"envelope_id\":{},\"payload\":{},\"type\":\"events_api\",\"accepts_response_payload\":false,\"retry_attempt\":{},\"retry_reason\":{}}}",
            Value::from(envelope_id),
            body,
            retry,
            Value::from(reason)
        );
        let Some(ack) = self.send_envelope(envelope_id, frame) else {
            return Err(SendError::NoConnection);
        };
        match tokio::time::timeout(ACK_TIMEOUT, ack).await {
            Ok(Ok(())) => Ok("socket_mode"),
            Ok(Err(_)) => Err(SendError::Failed("connection_closed")),
            Err(_) => {
                self.forget_envelope(envelope_id);
                Err(SendError::Failed("timeout"))
            }
        }
    }
}

/// Sends a signed `url_verification` request and checks the challenge comes back.
pub(crate) async fn verify_url(world: &crate::World, url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("request_url is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("request_url must be http or https".into());
    }
    let challenge = crate::util::random_token(48);
    let body = json!({
        "token": world.slack.app.verification_token,
        "challenge": challenge,
        "type": "url_verification",
    })
    .to_string();
    let ts = now_unix().to_string();
    let sig = sign(&world.slack.app.signing_secret, &ts, body.as_bytes());
    let resp = world
        .http
        .post(url)
        .timeout(HTTP_TIMEOUT)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("X-Slack-Request-Timestamp", &ts)
        .header("X-Slack-Signature", sig)
        .body(body)
        .send()
        .await
        .map_err(|e| format!("url_verification request failed: {e}"))?;
    let status = resp.status();
    let text = resp
        .text()
        .await
        .map_err(|e| format!("url_verification response unreadable: {e}"))?;
    if !status.is_success() {
        return Err(format!("url_verification answered HTTP {status}"));
    }
    let echoed = text.trim() == challenge
        || serde_json::from_str::<Value>(&text)
            .ok()
            .is_some_and(|v| v["challenge"].as_str() == Some(challenge.as_str()));
    if echoed {
        Ok(())
    } else {
        Err("url_verification: the challenge was not echoed".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_slack_test_vector() {
        let body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        assert_eq!(
            sign(
                "8f742231b10e8888abcd99yyyzzz85a5",
                "1531420618",
                body.as_bytes()
            ),
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
        );
    }

    #[test]
    fn delays_scale_down_only() {
        assert_eq!(
            scaled(Duration::from_secs(60), 60.0),
            Duration::from_secs(1)
        );
        assert_eq!(
            scaled(Duration::from_secs(60), 0.5),
            Duration::from_secs(60)
        );
        assert_eq!(
            scaled(Duration::from_secs(60), 0.0),
            Duration::from_secs(60)
        );
        assert_eq!(retry_delay(1), Duration::ZERO);
        assert_eq!(retry_delay(2), Duration::from_secs(60));
        assert_eq!(retry_delay(3), Duration::from_secs(300));
    }

    #[test]
    fn log_evicts_oldest() {
        let mut log = EventLog::default();
        for i in 0..(LOG_CAPACITY + 5) {
            let seq = log.push(LogEntry {
                event_id: format!("Ev{i}"),
                event_type: "message".into(),
                channel: "C1".into(),
                created: 0,
                created_ms: 0,
                attempts: 0,
                status: Status::Pending,
                via: None,
                last_error: None,
                retry_reasons: vec![],
            });
            assert_eq!(seq, i as u64);
        }
        assert!(log.get_mut(0).is_none());
        assert_eq!(log.get_mut(5).unwrap().event_id, "Ev5");
    }
}
