//! Change-notification subscriptions on channel messages: the validation handshake,
//! notification delivery (batched, ordered per subscription, retried), lifecycle events,
//! expiry, and the delivery log.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::common::{
    Caller, GResult, GraphError, Limit, authenticate, iso_7, iso_ms, ok_json, parse_body,
    parse_iso, throttle,
};
use super::messages::{check_msg_access, resolve};
use super::model::Perm;
use crate::{SharedWorld, World};

/// Longest subscription without a lifecycle URL: 60 minutes.
pub(crate) const MAX_MINUTES_PLAIN: u64 = 60;
/// Longest subscription with a lifecycle URL: 4,320 minutes (3 days).
pub(crate) const MAX_MINUTES_LIFECYCLE: u64 = 4_320;
/// Grace allowed on the expiry limits (clock skew and request latency).
const EXPIRY_GRACE_MS: u64 = 60_000;
/// Delivery attempts per notification batch.
pub(crate) const MAX_ATTEMPTS: u32 = 5;
/// Retry delays (seconds, divided by `time_scale` when it is above 1).
const RETRY_DELAYS: [f64; 4] = [1.0, 2.0, 4.0, 8.0];
/// A receiver must answer a notification within this time.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(3);
/// A receiver must answer the validation request within this time.
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(10);
/// Most notifications in one POST.
const MAX_BATCH: usize = 50;
/// Delivery log capacity.
const LOG_CAP: usize = 10_000;

/// What happened to a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    Created,
    Updated,
    Deleted,
}

impl Change {
    fn bit(self) -> u8 {
        match self {
            Change::Created => 1,
            Change::Updated => 2,
            Change::Deleted => 4,
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            Change::Created => "created",
            Change::Updated => "updated",
            Change::Deleted => "deleted",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Notification,
    Lifecycle,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Notification => "notification",
            Kind::Lifecycle => "lifecycle",
        }
    }
}

/// One queued outbound item.
#[derive(Debug)]
struct Outbound {
    kind: Kind,
    url: String,
    item: Value,
}

/// A subscription.
#[derive(Debug)]
pub(crate) struct Sub {
    pub id: String,
    pub resource: String,
    pub team_id: String,
    pub channel_id: String,
    change_bits: u8,
    pub change_type: String,
    pub notification_url: String,
    pub lifecycle_url: Option<String>,
    pub client_state: Option<String>,
    pub expiration_ms: u64,
    /// When the current lifetime started (creation or last renewal), for the
    /// reauthorization warning.
    renewed_ms: u64,
    pub client_id: String,
    /// The creating user (delegated) or `None` (app-only).
    pub creator: Option<u32>,
    pub creator_id: String,
    pub latest_tls: String,
    /// The expiry-near warning was sent for the current lifetime.
    reauth_sent: bool,
    /// When the delegated token that created, renewed or last reauthorized the
    /// subscription expires (unix seconds); `0` for app-only subscriptions.
    token_expires_at: u64,
    /// The token expiry a `reauthorizationRequired` was last sent for.
    reauth_sent_for: u64,
    /// Delivery is paused (the token expired without a reauthorization): changes are
    /// dropped, not queued, as Graph does.
    pub paused: bool,
    created_order: u64,
    tx: mpsc::UnboundedSender<Outbound>,
}

/// Active subscriptions.
#[derive(Debug, Default)]
pub(crate) struct Subs {
    map: HashMap<String, Sub>,
    counter: u64,
}

/// One delivery (a POST of one or more notifications, with its retries) or validation.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    id: u64,
    subscription_id: Option<String>,
    kind: &'static str,
    url: String,
    value: Vec<Value>,
    attempts: u32,
    status: &'static str,
    last_status_code: Option<u16>,
    last_error: Option<String>,
    created_ms: u64,
    finished_ms: Option<u64>,
}

/// The delivery log (newest last), capped.
#[derive(Debug, Default)]
pub(crate) struct DeliveryLog {
    next_id: u64,
    entries: VecDeque<Delivery>,
}

impl DeliveryLog {
    fn start(
        &mut self,
        subscription_id: Option<&str>,
        kind: &'static str,
        url: &str,
        value: Vec<Value>,
    ) -> u64 {
        self.next_id += 1;
        if self.entries.len() >= LOG_CAP {
            self.entries.pop_front();
        }
        self.entries.push_back(Delivery {
            id: self.next_id,
            subscription_id: subscription_id.map(str::to_owned),
            kind,
            url: url.to_owned(),
            value,
            attempts: 0,
            status: "pending",
            last_status_code: None,
            last_error: None,
            created_ms: crate::util::now_unix_ms() as u64,
            finished_ms: None,
        });
        self.next_id
    }

    fn update(&mut self, id: u64, f: impl FnOnce(&mut Delivery)) {
        let front = self.entries.front().map(|d| d.id).unwrap_or(0);
        if id < front {
            return;
        }
        if let Some(d) = self.entries.get_mut((id - front) as usize) {
            if d.id == id {
                f(d);
            }
        }
    }

    /// Forgets every entry (ids keep increasing).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// `{"value":[…]}` for the control API, optionally for one subscription.
    pub fn to_json(&self, subscription: Option<&str>) -> Value {
        let value: Vec<Value> = self
            .entries
            .iter()
            .filter(|d| subscription.is_none_or(|s| d.subscription_id.as_deref() == Some(s)))
            .map(|d| {
                json!({
                    "id": d.id,
                    "subscriptionId": d.subscription_id,
                    "kind": d.kind,
                    "url": d.url,
                    "value": d.value,
                    "attempts": d.attempts,
                    "status": d.status,
                    "lastStatusCode": d.last_status_code,
                    "lastError": d.last_error,
                    "createdDateTime": iso_ms(d.created_ms),
                    "finishedDateTime": d.finished_ms.map(iso_ms),
                })
            })
            .collect();
        json!({ "value": value })
    }
}

// ---------------------------------------------------------------------------------------
// Rendering and queueing
// ---------------------------------------------------------------------------------------

fn sub_json(s: &Sub) -> Value {
    json!({
        "id": s.id,
        "resource": s.resource,
        "applicationId": s.client_id,
        "changeType": s.change_type,
        "clientState": s.client_state,
        "notificationUrl": s.notification_url,
        "notificationQueryOptions": null,
        "lifecycleNotificationUrl": s.lifecycle_url,
        "expirationDateTime": iso_7(s.expiration_ms),
        "creatorId": s.creator_id,
        "includeResourceData": false,
        "latestSupportedTlsVersion": s.latest_tls,
        "encryptionCertificate": null,
        "encryptionCertificateId": null,
        "notificationUrlAppId": null,
    })
}

/// The control API's view of every subscription.
pub(crate) fn subs_json(world: &World) -> Value {
    let subs = world.msteams.subs.lock();
    let mut list: Vec<&Sub> = subs.map.values().collect();
    list.sort_by_key(|s| s.created_order);
    json!({ "value": list.iter().map(|s| {
        let mut v = sub_json(s);
        v["paused"] = Value::Bool(s.paused);
        v
    }).collect::<Vec<_>>() })
}

fn lifecycle_item(world: &World, s: &Sub, event: &str) -> Value {
    json!({
        "subscriptionId": s.id,
        "subscriptionExpirationDateTime": iso_7(s.expiration_ms),
        "tenantId": world.msteams.tenant_id(),
        "clientState": s.client_state,
        "lifecycleEvent": event,
    })
}

/// Queues a lifecycle event for `s` (no-op without a lifecycle URL). Returns whether queued.
fn queue_lifecycle(world: &World, s: &Sub, event: &str) -> bool {
    let Some(url) = &s.lifecycle_url else {
        return false;
    };
    s.tx.send(Outbound {
        kind: Kind::Lifecycle,
        url: url.clone(),
        item: lifecycle_item(world, s, event),
    })
    .is_ok()
}

/// Queues change notifications for every subscription on the message's channel.
pub(crate) fn notify(
    world: &World,
    team_id: &str,
    channel_id: &str,
    msg_id: u64,
    reply_to: Option<u64>,
    change: Change,
) {
    let now = crate::util::now_unix_ms() as u64;
    let tenant = world.msteams.tenant_id();
    let resource = match reply_to {
        None => format!("teams('{team_id}')/channels('{channel_id}')/messages('{msg_id}')"),
        Some(root) => format!(
            "teams('{team_id}')/channels('{channel_id}')/messages('{root}')/replies('{msg_id}')"
        ),
    };
    let subs = world.msteams.subs.lock();
    let mut matching: Vec<&Sub> = subs
        .map
        .values()
        .filter(|s| {
            s.team_id == team_id
                && s.channel_id == channel_id
                && s.change_bits & change.bit() != 0
                && s.expiration_ms > now
                && !s.paused
        })
        .collect();
    matching.sort_by_key(|s| s.created_order);
    for s in matching {
        let item = json!({
            "subscriptionId": s.id,
            "subscriptionExpirationDateTime": iso_7(s.expiration_ms),
            "changeType": change.as_str(),
            "clientState": s.client_state,
            "resource": resource,
            "resourceData": {
                "id": msg_id.to_string(),
                "@odata.type": "#Microsoft.Graph.chatMessage",
                "@odata.id": resource,
            },
            "tenantId": tenant,
        });
        let _ = s.tx.send(Outbound {
            kind: Kind::Notification,
            url: s.notification_url.clone(),
            item,
        });
    }
}

/// Removes the subscriptions `user` created on channels of `team_id` (the user lost access),
/// sending `subscriptionRemoved` where a lifecycle URL exists.
pub(crate) fn on_member_removed(world: &World, team_id: &str, user: u32) {
    let mut subs = world.msteams.subs.lock();
    let gone: Vec<String> = subs
        .map
        .values()
        .filter(|s| s.team_id == team_id && s.creator == Some(user))
        .map(|s| s.id.clone())
        .collect();
    for id in gone {
        if let Some(s) = subs.map.remove(&id) {
            queue_lifecycle(world, &s, "subscriptionRemoved");
        }
    }
}

/// Sends `reauthorizationRequired` for every subscription `user` created (their sessions
/// were revoked).
pub(crate) fn on_user_revoked(world: &World, user: u32) {
    let subs = world.msteams.subs.lock();
    for s in subs.map.values().filter(|s| s.creator == Some(user)) {
        queue_lifecycle(world, s, "reauthorizationRequired");
    }
}

/// Control API: fires a lifecycle event. `subscriptionRemoved` also removes the
/// subscription.
pub(crate) fn fire_lifecycle(
    world: &World,
    id: &str,
    event: &str,
) -> Result<(), (StatusCode, String)> {
    if !matches!(
        event,
        "reauthorizationRequired" | "subscriptionRemoved" | "missed"
    ) {
        return Err((
            StatusCode::BAD_REQUEST,
            format!(
                "unknown lifecycle event {event:?}: use reauthorizationRequired, subscriptionRemoved or missed"
            ),
        ));
    }
    let mut subs = world.msteams.subs.lock();
    let Some(s) = subs.map.get(id) else {
        return Err((StatusCode::NOT_FOUND, format!("no subscription {id:?}")));
    };
    if s.lifecycle_url.is_none() {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("subscription {id:?} has no lifecycleNotificationUrl"),
        ));
    }
    if event == "subscriptionRemoved" {
        if let Some(s) = subs.map.remove(id) {
            queue_lifecycle(world, &s, event);
        }
    } else {
        queue_lifecycle(world, s, event);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Delivery
// ---------------------------------------------------------------------------------------

fn retry_delay(world: &World, attempt: usize) -> Duration {
    let base = RETRY_DELAYS[attempt.min(RETRY_DELAYS.len() - 1)];
    let scale = world.config.time_scale;
    let secs = if scale > 1.0 { base / scale } else { base };
    Duration::from_secs_f64(secs.max(0.01))
}

async fn deliver(world: &SharedWorld, sub_id: &str, kind: Kind, url: &str, items: Vec<Value>) {
    let body = json!({ "value": items });
    let log_id = world
        .msteams
        .log
        .lock()
        .start(Some(sub_id), kind.as_str(), url, items);
    for attempt in 0..MAX_ATTEMPTS as usize {
        if attempt > 0 {
            tokio::time::sleep(retry_delay(world, attempt - 1)).await;
        }
        let result = world
            .http
            .post(url)
            .timeout(DELIVERY_TIMEOUT)
            .json(&body)
            .send()
            .await;
        let (ok, code, err) = match result {
            Ok(r) => (r.status().is_success(), Some(r.status().as_u16()), None),
            Err(e) => (false, None, Some(e.to_string())),
        };
        let last = attempt + 1 == MAX_ATTEMPTS as usize;
        world.msteams.log.lock().update(log_id, |d| {
            d.attempts = attempt as u32 + 1;
            d.last_status_code = code;
            d.last_error = err.clone();
            if ok || last {
                d.status = if ok { "delivered" } else { "failed" };
                d.finished_ms = Some(crate::util::now_unix_ms() as u64);
            }
        });
        if ok {
            return;
        }
        tracing::debug!(
            subscription = sub_id,
            attempt,
            ?code,
            "graph notification delivery failed"
        );
    }
}

/// Delivers a subscription's queue in order, batching what is pending. Holds the world
/// weakly while idle, so a dropped sandbox ends its workers.
async fn worker(
    world: std::sync::Weak<World>,
    sub_id: String,
    mut rx: mpsc::UnboundedReceiver<Outbound>,
) {
    let mut pending: Option<Outbound> = None;
    loop {
        let first = match pending.take() {
            Some(x) => x,
            None => match rx.recv().await {
                Some(x) => x,
                None => break,
            },
        };
        let kind = first.kind;
        let url = first.url;
        let mut items = vec![first.item];
        while items.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(x) if x.kind == kind && x.url == url => items.push(x.item),
                Ok(x) => {
                    pending = Some(x);
                    break;
                }
                Err(_) => break,
            }
        }
        let Some(world) = world.upgrade() else {
            break;
        };
        deliver(&world, &sub_id, kind, &url, items).await;
    }
}

/// The validation handshake: POST `url?validationToken=…`; the endpoint must answer 200,
/// `text/plain`, with the decoded token, within 10 s.
async fn validate_endpoint(world: &World, url: &str) -> Result<(), String> {
    let token = format!(
        "Validation: Testing client application reachability for subscription Request-Id: {}",
        uuid::Uuid::new_v4()
    );
    let mut target = url::Url::parse(url).map_err(|e| format!("invalid URL: {e}"))?;
    target
        .query_pairs_mut()
        .append_pair("validationToken", &token);
    let log_id = world
        .msteams
        .log
        .lock()
        .start(None, "validation", url, Vec::new());
    let result = world
        .http
        .post(target.as_str())
        .timeout(VALIDATION_TIMEOUT)
        .header("content-type", "text/plain; charset=utf-8")
        .body("")
        .send()
        .await;
    let outcome: Result<(), String> = async {
        let resp = result.map_err(|e| format!("the endpoint could not be reached: {e}"))?;
        let status = resp.status();
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let body = resp.text().await.map_err(|e| e.to_string())?;
        if status != reqwest::StatusCode::OK {
            return Err(format!(
                "Notification endpoint must respond with 200 OK to validation request (got {status})."
            ));
        }
        if !ctype.starts_with("text/plain") {
            return Err(format!(
                "Validation response must have Content-Type text/plain (got {ctype:?})."
            ));
        }
        if body.trim() != token {
            return Err(
                "Response must exactly match validationToken query parameter.".to_owned(),
            );
        }
        Ok(())
    }
    .await;
    world.msteams.log.lock().update(log_id, |d| {
        d.attempts = 1;
        d.status = if outcome.is_ok() {
            "delivered"
        } else {
            "failed"
        };
        d.last_error = outcome.as_ref().err().cloned();
        d.finished_ms = Some(crate::util::now_unix_ms() as u64);
    });
    outcome
}

/// Background: expiry and reauthorization warnings.
pub(crate) fn tick(world: &World) {
    let now = crate::util::now_unix_ms() as u64;
    let mut subs = world.msteams.subs.lock();
    let expired: Vec<String> = subs
        .map
        .values()
        .filter(|s| s.expiration_ms <= now)
        .map(|s| s.id.clone())
        .collect();
    for id in expired {
        subs.map.remove(&id);
    }
    let lead_ms = reauth_lead_ms(world);
    for s in subs.map.values_mut() {
        if s.lifecycle_url.is_none() {
            continue;
        }
        // the delegated token behind the subscription nears expiry: warn (once per token),
        // and pause delivery once it has expired without a reauthorization
        if s.token_expires_at > 0 {
            let expires_ms = s.token_expires_at * 1000;
            if s.reauth_sent_for != s.token_expires_at && now + lead_ms >= expires_ms {
                s.reauth_sent_for = s.token_expires_at;
                queue_lifecycle(world, s, "reauthorizationRequired");
            }
            if now >= expires_ms {
                s.paused = true;
            }
        }
        if s.reauth_sent {
            continue;
        }
        let lifetime = s.expiration_ms.saturating_sub(s.renewed_ms);
        let window = (lifetime / 4).min(10 * 60_000);
        if s.expiration_ms.saturating_sub(now) <= window {
            s.reauth_sent = true;
            queue_lifecycle(world, s, "reauthorizationRequired");
        }
    }
}

/// How long before the delegated token's expiry `reauthorizationRequired` is sent: 10
/// minutes divided by `time_scale`.
fn reauth_lead_ms(world: &World) -> u64 {
    let scale = world.config.time_scale;
    let scale = if scale.is_finite() && scale > 0.0 {
        scale
    } else {
        1.0
    };
    (600_000.0 / scale) as u64
}

// ---------------------------------------------------------------------------------------
// Graph routes
// ---------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateSub {
    #[serde(default)]
    change_type: Option<String>,
    #[serde(default)]
    notification_url: Option<String>,
    #[serde(default)]
    lifecycle_notification_url: Option<String>,
    #[serde(default)]
    resource: Option<String>,
    #[serde(default)]
    expiration_date_time: Option<String>,
    #[serde(default)]
    client_state: Option<String>,
    #[serde(default)]
    include_resource_data: Option<bool>,
    #[serde(default)]
    latest_supported_tls_version: Option<String>,
}

fn invalid(msg: impl Into<String>) -> GraphError {
    GraphError::new(StatusCode::BAD_REQUEST, "InvalidRequest", msg)
}

fn parse_change_type(s: &str) -> Result<(u8, String), GraphError> {
    let mut bits = 0u8;
    let mut parts = Vec::new();
    for p in s.split(',').map(str::trim) {
        let c = match p {
            "created" => Change::Created,
            "updated" => Change::Updated,
            "deleted" => Change::Deleted,
            other => {
                return Err(invalid(format!(
                    "Invalid changeType '{other}': use a comma-separated list of created, updated, deleted."
                )));
            }
        };
        if bits & c.bit() == 0 {
            parts.push(p);
        }
        bits |= c.bit();
    }
    Ok((bits, parts.join(",")))
}

fn check_url(u: &str, what: &str) -> Result<(), GraphError> {
    match url::Url::parse(u) {
        Ok(p) if p.scheme() == "https" || p.scheme() == "http" => Ok(()),
        _ => Err(invalid(format!(
            "Invalid {what} '{u}': an absolute http(s) URL is required."
        ))),
    }
}

/// Parses `/teams/{t}/channels/{c}/messages` (or the `teams('t')/channels('c')` form).
fn parse_resource(r: &str) -> Result<(String, String), GraphError> {
    let unsupported = || {
        invalid(format!(
            "Resource '{r}' is not supported by the sandbox: subscribe to /teams/{{team-id}}/channels/{{channel-id}}/messages."
        ))
    };
    let trimmed = r.trim().trim_start_matches('/');
    let decoded: String =
        url::form_urlencoded::parse(format!("x={}", trimmed.replace('+', "%2B")).as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
    let parts: Vec<&str> = decoded.split('/').collect();
    let strip = |p: &str, name: &str| -> Option<String> {
        if let Some(rest) = p.strip_prefix(&format!("{name}('")) {
            return rest.strip_suffix("')").map(str::to_owned);
        }
        None
    };
    match parts.as_slice() {
        ["teams", t, "channels", c, "messages"] => Ok(((*t).to_owned(), (*c).to_owned())),
        [t, c, "messages"] => match (strip(t, "teams"), strip(c, "channels")) {
            (Some(t), Some(c)) => Ok((t, c)),
            _ => Err(unsupported()),
        },
        _ => Err(unsupported()),
    }
}

fn check_expiry(exp_ms: u64, has_lifecycle: bool) -> Result<(), GraphError> {
    let now = crate::util::now_unix_ms() as u64;
    if exp_ms <= now {
        return Err(invalid("Subscription expiration must be in the future."));
    }
    let minutes = if has_lifecycle {
        MAX_MINUTES_LIFECYCLE
    } else {
        MAX_MINUTES_PLAIN
    };
    if exp_ms > now + minutes * 60_000 + EXPIRY_GRACE_MS {
        if !has_lifecycle && exp_ms <= now + MAX_MINUTES_LIFECYCLE * 60_000 + EXPIRY_GRACE_MS {
            return Err(invalid(
                "lifecycleNotificationUrl is a required property for subscription creation on this resource when the expirationDateTime value is set to greater than 1 hour.",
            ));
        }
        return Err(invalid(format!(
            "Subscription expiration can only be 0-{minutes} minutes in the future."
        )));
    }
    Ok(())
}

fn visible(caller: &Caller, s: &Sub) -> bool {
    s.client_id == caller.client_id && (caller.user.is_none() || s.creator == caller.user)
}

const SUB_PERMS: &[Perm] = &[
    Perm::CHANNELMESSAGE_READ_ALL,
    Perm::GROUP_READ_ALL,
    Perm::GROUP_READWRITE_ALL,
];

/// `POST /subscriptions`.
pub(crate) async fn create(
    State(world): State<SharedWorld>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> GResult {
    let caller = authenticate(&world, &headers)?;
    throttle(&world, &caller, &[Limit::Subscriptions])?;
    let req: CreateSub = parse_body(&body)?;
    let change_type = req
        .change_type
        .as_deref()
        .ok_or_else(|| invalid("changeType is required."))?;
    let (change_bits, change_type) = parse_change_type(change_type)?;
    let notification_url = req
        .notification_url
        .clone()
        .ok_or_else(|| invalid("notificationUrl is required."))?;
    check_url(&notification_url, "notificationUrl")?;
    if let Some(l) = &req.lifecycle_notification_url {
        check_url(l, "lifecycleNotificationUrl")?;
    }
    let resource = req
        .resource
        .clone()
        .ok_or_else(|| invalid("resource is required."))?;
    let exp_raw = req
        .expiration_date_time
        .as_deref()
        .ok_or_else(|| invalid("expirationDateTime is required."))?;
    let exp_ms = parse_iso(exp_raw)
        .ok_or_else(|| invalid(format!("Invalid expirationDateTime '{exp_raw}'.")))?;
    check_expiry(exp_ms, req.lifecycle_notification_url.is_some())?;
    if let Some(cs) = &req.client_state {
        if cs.chars().count() > 128 {
            return Err(invalid("clientState is limited to 128 characters."));
        }
    }
    if req.include_resource_data == Some(true) {
        return Err(invalid(
            "includeResourceData (encrypted resource data) is not supported by the sandbox: subscribe without it and fetch the message by id.",
        ));
    }
    let tls = match req.latest_supported_tls_version.as_deref() {
        None => "v1_2".to_owned(),
        Some(v @ ("v1_0" | "v1_1" | "v1_2" | "v1_3")) => v.to_owned(),
        Some(v) => return Err(invalid(format!("Invalid latestSupportedTlsVersion '{v}'."))),
    };
    caller.require_teams(SUB_PERMS)?;
    let (team, channel) = parse_resource(&resource)?;
    let (team_id, channel_id, creator_id) = {
        let dir = world.msteams.dir.read();
        let (ti, ci) = resolve(&dir, &team, &channel)?;
        check_msg_access(&dir, &caller, ti, ci)?;
        let creator_id = match caller.user {
            Some(u) => dir.users[u as usize].id.clone(),
            None => dir.app.client_id.clone(),
        };
        (
            dir.teams[ti as usize].id.clone(),
            dir.channel(ti, ci).id.clone(),
            creator_id,
        )
    };
    {
        let now = crate::util::now_unix_ms() as u64;
        let subs = world.msteams.subs.lock();
        if let Some(existing) = subs.map.values().find(|s| {
            s.client_id == caller.client_id
                && s.team_id == team_id
                && s.channel_id == channel_id
                && s.expiration_ms > now
        }) {
            return Err(duplicate(&existing.resource));
        }
    }
    validate_endpoint(&world, &notification_url)
        .await
        .map_err(|e| {
            GraphError::new(
                StatusCode::BAD_REQUEST,
                "ValidationError",
                format!("Subscription validation request failed. {e}"),
            )
        })?;
    if let Some(l) = &req.lifecycle_notification_url {
        validate_endpoint(&world, l).await.map_err(|e| {
            GraphError::new(
                StatusCode::BAD_REQUEST,
                "ValidationError",
                format!("Subscription validation request failed for lifecycleNotificationUrl. {e}"),
            )
        })?;
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let id = uuid::Uuid::new_v4().to_string();
    let now = crate::util::now_unix_ms() as u64;
    let json_out = {
        let mut subs = world.msteams.subs.lock();
        // quota: one subscription per app per channel (checked again under the lock, after
        // the validation round trips)
        if let Some(existing) = subs.map.values().find(|s| {
            s.client_id == caller.client_id
                && s.team_id == team_id
                && s.channel_id == channel_id
                && s.expiration_ms > now
        }) {
            return Err(duplicate(&existing.resource));
        }
        subs.counter += 1;
        let sub = Sub {
            id: id.clone(),
            resource: format!("/teams/{team_id}/channels/{channel_id}/messages"),
            team_id,
            channel_id,
            change_bits,
            change_type,
            notification_url,
            lifecycle_url: req.lifecycle_notification_url.clone(),
            client_state: req.client_state.clone(),
            expiration_ms: exp_ms,
            renewed_ms: now,
            client_id: caller.client_id.clone(),
            creator: caller.user,
            creator_id,
            latest_tls: tls,
            reauth_sent: false,
            token_expires_at: if caller.user.is_some() {
                caller.token_expires_at
            } else {
                0
            },
            reauth_sent_for: 0,
            paused: false,
            created_order: subs.counter,
            tx,
        };
        let mut v = sub_json(&sub);
        subs.map.insert(id.clone(), sub);
        v["@odata.context"] = Value::String(
            "https://graph.microsoft.com/v1.0/$metadata#subscriptions/$entity".into(),
        );
        v
    };
    tokio::spawn(worker(std::sync::Arc::downgrade(&world), id, rx));
    Ok((StatusCode::CREATED, axum::Json(json_out)).into_response())
}

/// `GET /subscriptions`.
pub(crate) async fn list(State(world): State<SharedWorld>, headers: HeaderMap) -> GResult {
    let caller = authenticate(&world, &headers)?;
    throttle(&world, &caller, &[Limit::Subscriptions])?;
    let subs = world.msteams.subs.lock();
    let mut mine: Vec<&Sub> = subs.map.values().filter(|s| visible(&caller, s)).collect();
    mine.sort_by_key(|s| s.created_order);
    Ok(ok_json(super::common::collection(
        "subscriptions",
        mine.iter().map(|s| sub_json(s)).collect(),
        None,
    )))
}

/// 403 for a second subscription of one app on one channel (Graph's quota for chatMessage:
/// one subscription per app per channel or chat).
fn duplicate(resource: &str) -> GraphError {
    GraphError::new(
        StatusCode::FORBIDDEN,
        "ExtensionError",
        format!(
            "Operation: Create; Exception: [Status Code: Forbidden; Reason: The app already has a subscription on resource '{resource}'; the quota is one subscription per app per channel. Renew (PATCH) or delete the existing subscription.]"
        ),
    )
}

fn not_found(id: &str) -> GraphError {
    GraphError::not_found(
        "ResourceNotFound",
        format!("The object was not found: subscription '{id}' does not exist."),
    )
}

/// `GET /subscriptions/{id}`.
pub(crate) async fn get(
    State(world): State<SharedWorld>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> GResult {
    let caller = authenticate(&world, &headers)?;
    throttle(&world, &caller, &[Limit::Subscriptions])?;
    let subs = world.msteams.subs.lock();
    match subs.map.get(&id).filter(|s| visible(&caller, s)) {
        Some(s) => Ok(ok_json(sub_json(s))),
        None => Err(not_found(&id)),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PatchSub {
    #[serde(default)]
    expiration_date_time: Option<String>,
    #[serde(default)]
    notification_url: Option<String>,
}

/// `PATCH /subscriptions/{id}`: renew (and/or move the notification URL).
pub(crate) async fn update(
    State(world): State<SharedWorld>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> GResult {
    let caller = authenticate(&world, &headers)?;
    throttle(&world, &caller, &[Limit::Subscriptions])?;
    let req: PatchSub = parse_body(&body)?;
    let has_lifecycle = {
        let subs = world.msteams.subs.lock();
        let s = subs
            .map
            .get(&id)
            .filter(|s| visible(&caller, s))
            .ok_or_else(|| not_found(&id))?;
        s.lifecycle_url.is_some()
    };
    let exp_ms = match &req.expiration_date_time {
        None => None,
        Some(raw) => {
            let ms = parse_iso(raw)
                .ok_or_else(|| invalid(format!("Invalid expirationDateTime '{raw}'.")))?;
            check_expiry(ms, has_lifecycle)?;
            Some(ms)
        }
    };
    if exp_ms.is_none() && req.notification_url.is_none() {
        return Err(invalid("Send expirationDateTime and/or notificationUrl."));
    }
    if let Some(u) = &req.notification_url {
        check_url(u, "notificationUrl")?;
        validate_endpoint(&world, u).await.map_err(|e| {
            GraphError::new(
                StatusCode::BAD_REQUEST,
                "ValidationError",
                format!("Subscription validation request failed. {e}"),
            )
        })?;
    }
    let mut subs = world.msteams.subs.lock();
    let s = subs
        .map
        .get_mut(&id)
        .filter(|s| visible(&caller, s))
        .ok_or_else(|| not_found(&id))?;
    if let Some(ms) = exp_ms {
        s.expiration_ms = ms;
        s.renewed_ms = crate::util::now_unix_ms() as u64;
        s.reauth_sent = false;
    }
    // a renewal with a valid delegated token reauthorizes the subscription
    if caller.user.is_some() {
        s.token_expires_at = caller.token_expires_at;
        s.paused = false;
    }
    if let Some(u) = &req.notification_url {
        s.notification_url = u.clone();
    }
    let mut v = sub_json(s);
    v["@odata.context"] =
        Value::String("https://graph.microsoft.com/v1.0/$metadata#subscriptions/$entity".into());
    Ok(ok_json(v))
}

/// `DELETE /subscriptions/{id}`.
pub(crate) async fn delete(
    State(world): State<SharedWorld>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> GResult {
    let caller = authenticate(&world, &headers)?;
    throttle(&world, &caller, &[Limit::Subscriptions])?;
    let mut subs = world.msteams.subs.lock();
    if !subs.map.get(&id).is_some_and(|s| visible(&caller, s)) {
        return Err(not_found(&id));
    }
    subs.map.remove(&id);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /subscriptions/{id}/reauthorize`.
pub(crate) async fn reauthorize(
    State(world): State<SharedWorld>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> GResult {
    let caller = authenticate(&world, &headers)?;
    throttle(&world, &caller, &[Limit::Subscriptions])?;
    let mut subs = world.msteams.subs.lock();
    let s = subs
        .map
        .get_mut(&id)
        .filter(|s| visible(&caller, s))
        .ok_or_else(|| not_found(&id))?;
    s.reauth_sent = false;
    s.renewed_ms = crate::util::now_unix_ms() as u64;
    if caller.user.is_some() {
        s.token_expires_at = caller.token_expires_at;
    }
    s.paused = false;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_parse() {
        assert_eq!(
            parse_resource("/teams/t1/channels/19:abc@thread.tacv2/messages").unwrap(),
            ("t1".to_owned(), "19:abc@thread.tacv2".to_owned())
        );
        assert_eq!(
            parse_resource("teams('t1')/channels('19%3Aabc%40thread.tacv2')/messages").unwrap(),
            ("t1".to_owned(), "19:abc@thread.tacv2".to_owned())
        );
        assert!(parse_resource("/me/messages").is_err());
    }

    #[test]
    fn change_types_parse() {
        assert_eq!(parse_change_type("created,updated").unwrap().0, 3);
        assert_eq!(
            parse_change_type("created, deleted,created").unwrap().1,
            "created,deleted"
        );
        assert!(parse_change_type("created,moved").is_err());
    }

    #[test]
    fn expiry_limits() {
        let now = crate::util::now_unix_ms() as u64;
        assert!(check_expiry(now + 30 * 60_000, false).is_ok());
        let e = check_expiry(now + 120 * 60_000, false).unwrap_err();
        assert!(e.message.contains("lifecycleNotificationUrl"));
        assert!(check_expiry(now + 120 * 60_000, true).is_ok());
        assert!(check_expiry(now + 5_000 * 60_000, true).is_err());
        assert!(check_expiry(now.saturating_sub(1000), true).is_err());
    }
}
