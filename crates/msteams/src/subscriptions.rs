//! Change-notification subscriptions per channel: create, renew before expiry, delete,
//! reauthorize; the validation handshake; parsing of notifications and lifecycle events
//! with the `clientState` check in constant time.
//!
//! Parsing is lenient per item: an odd entry of a batch is skipped and counted, never fails
//! the batch.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use switchboard_core::{ChannelRef, ConnectionId, Error, Result, Subscription, SubscriptionId};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use url::Url;

use crate::connection::MsTeamsConnection;
use crate::graph::GraphRequest;
use crate::wire::GraphSubscription;

/// The longest lifetime requested without a lifecycle URL (Graph refuses more than 1 hour
/// for channel messages then).
pub const MAX_LIFETIME_WITHOUT_LIFECYCLE: Duration = Duration::from_secs(59 * 60);
/// Graph's longest lifetime for a channel-message subscription with a lifecycle URL: 4,320
/// minutes (3 days; "subscription lifetime" table, `chatMessage`).
pub const GRAPH_MAX_LIFETIME_MINUTES: u64 = 4_320;
/// The margin kept under Graph's maximum, so clock skew never makes a request over it.
pub const LIFETIME_MARGIN_MINUTES: u64 = 15;
/// The longest lifetime requested with a lifecycle URL: 4,320 minutes minus the margin.
pub const MAX_LIFETIME_WITH_LIFECYCLE: Duration =
    Duration::from_secs((GRAPH_MAX_LIFETIME_MINUTES - LIFETIME_MARGIN_MINUTES) * 60);

/// A fresh random `clientState` (32 random bytes, base64url: 43 characters, under Graph's
/// 128-character limit). One per subscription.
pub fn generate_client_state() -> SecretString {
    let mut buf = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut buf);
    SecretString::from(URL_SAFE_NO_PAD.encode(buf))
}

/// What to subscribe with.
#[derive(Debug, Clone)]
pub struct SubscriptionSpec {
    /// Where Graph POSTs change notifications (public HTTPS in production).
    pub notification_url: Url,
    /// Where Graph POSTs lifecycle events (needed for lifetimes over an hour).
    pub lifecycle_url: Option<Url>,
    /// The lifetime to ask for; capped by what Graph accepts (`None`: the cap).
    pub lifetime: Option<Duration>,
}

impl SubscriptionSpec {
    /// The lifetime that will be requested.
    pub fn effective_lifetime(&self) -> Duration {
        let cap = if self.lifecycle_url.is_some() {
            MAX_LIFETIME_WITH_LIFECYCLE
        } else {
            MAX_LIFETIME_WITHOUT_LIFECYCLE
        };
        self.lifetime
            .map_or(cap, |l| l.min(cap))
            .max(Duration::from_secs(60))
    }
}

/// How [`MsTeamsConnection::subscribe_channel`] got its subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeOutcome {
    /// None existed on the channel: a new one was created.
    Created,
    /// The app's existing subscription on the channel was renewed (PATCH) and kept.
    Renewed,
    /// The existing one could not be kept (other lifecycle URL, unknown `clientState`): it
    /// was deleted and a new one created.
    Replaced,
}

/// A subscription Graph created (or the existing one, renewed).
#[derive(Clone)]
pub struct CreatedSubscription {
    /// Graph's subscription id.
    pub id: String,
    /// The channel watched.
    pub channel: ChannelRef,
    /// The watched resource.
    pub resource: String,
    /// When it expires unless renewed.
    pub expires_at: OffsetDateTime,
    /// The secret Graph echoes in every notification.
    pub client_state: SecretString,
    /// Whether it is new, renewed or a replacement.
    pub outcome: SubscribeOutcome,
}

impl fmt::Debug for CreatedSubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatedSubscription")
            .field("id", &self.id)
            .field("channel", &self.channel)
            .field("resource", &self.resource)
            .field("expires_at", &self.expires_at)
            .field("client_state", &"[REDACTED]")
            .field("outcome", &self.outcome)
            .finish()
    }
}

impl CreatedSubscription {
    /// The core record to store (the client state is sealed at rest by the store).
    /// `Upstream` when Graph returned an id that is not a usable id.
    pub fn into_core(self, connection: ConnectionId) -> Result<Subscription> {
        let id = SubscriptionId::new(self.id).map_err(|e| {
            Error::upstream(format!("Graph returned an unusable subscription id: {e}"))
        })?;
        Ok(Subscription {
            id,
            connection,
            channel: self.channel,
            client_state: self.client_state,
            expires_at: self.expires_at,
        })
    }
}

/// Whether a subscription expiring at `expires_at` should be renewed now: less than a
/// quarter of `lifetime` (and at least 5 minutes) is left.
pub fn needs_renewal(expires_at: OffsetDateTime, now: OffsetDateTime, lifetime: Duration) -> bool {
    let margin = (lifetime / 4).max(Duration::from_secs(300));
    let margin = time::Duration::try_from(margin).unwrap_or(time::Duration::MAX);
    expires_at - now <= margin
}

fn parse_expiry(s: Option<&str>, fallback: OffsetDateTime) -> OffsetDateTime {
    s.and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
        .unwrap_or(fallback)
}

fn format_time(t: OffsetDateTime) -> Result<String> {
    t.format(&Rfc3339)
        .map_err(|e| Error::invalid(format!("cannot format the expiration time: {e}")))
}

/// The longest validation token echoed back.
const MAX_VALIDATION_TOKEN: usize = 8 * 1024;

/// The validation handshake: when the query of a notification-URL request carries
/// `validationToken`, the decoded token to answer with (200, `text/plain`, within 10 s).
/// `None` when it is not a validation request (or the token is absurdly long).
pub fn validation_response(query: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).ok()?;
    let (_, token) = pairs.into_iter().find(|(k, _)| k == "validationToken")?;
    (token.len() <= MAX_VALIDATION_TOKEN).then_some(token)
}

/// A change notification.
#[derive(Clone)]
pub struct ChangeNotification {
    /// The subscription it belongs to.
    pub subscription_id: String,
    /// The `clientState` Graph echoed (compare with [`ChangeNotification::client_state_matches`]).
    pub client_state: Option<SecretString>,
    /// `created`, `updated` or `deleted`.
    pub change_type: String,
    /// The changed resource (`teams('…')/channels('…')/messages('…')`).
    pub resource: String,
    /// The tenant.
    pub tenant_id: Option<String>,
    /// `resourceData.id`: the message id.
    pub resource_id: Option<String>,
}

impl fmt::Debug for ChangeNotification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChangeNotification")
            .field("subscription_id", &self.subscription_id)
            .field(
                "client_state",
                &self.client_state.as_ref().map(|_| "[REDACTED]"),
            )
            .field("change_type", &self.change_type)
            .field("resource", &self.resource)
            .field("tenant_id", &self.tenant_id)
            .field("resource_id", &self.resource_id)
            .finish()
    }
}

/// Constant-time comparison of a received `clientState` with the stored one.
pub fn client_state_matches(received: Option<&SecretString>, expected: &SecretString) -> bool {
    match received {
        Some(r) => bool::from(
            r.expose_secret()
                .as_bytes()
                .ct_eq(expected.expose_secret().as_bytes()),
        ),
        None => false,
    }
}

impl ChangeNotification {
    /// Whether the echoed `clientState` is the subscription's (constant time).
    pub fn client_state_matches(&self, expected: &SecretString) -> bool {
        client_state_matches(self.client_state.as_ref(), expected)
    }

    /// The message the notification is about.
    pub fn message_path(&self) -> Option<ResourcePath> {
        let mut p = parse_resource(&self.resource)?;
        if p.message.is_none() {
            p.message = self.resource_id.clone();
        }
        Some(p)
    }
}

/// A lifecycle event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LifecycleEvent {
    /// The subscription needs reauthorizing (renew it, or POST `…/reauthorize`).
    ReauthorizationRequired,
    /// Graph removed the subscription: create a new one and catch up with delta.
    SubscriptionRemoved,
    /// Notifications were missed: catch up with delta.
    Missed,
    /// A value this version does not know.
    Other(String),
}

/// A lifecycle notification.
#[derive(Clone)]
pub struct LifecycleNotification {
    /// The subscription.
    pub subscription_id: String,
    /// The echoed `clientState`.
    pub client_state: Option<SecretString>,
    /// What happened.
    pub event: LifecycleEvent,
    /// When the subscription expires, when sent.
    pub subscription_expiration: Option<OffsetDateTime>,
    /// The tenant.
    pub tenant_id: Option<String>,
}

impl fmt::Debug for LifecycleNotification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LifecycleNotification")
            .field("subscription_id", &self.subscription_id)
            .field(
                "client_state",
                &self.client_state.as_ref().map(|_| "[REDACTED]"),
            )
            .field("event", &self.event)
            .field("subscription_expiration", &self.subscription_expiration)
            .field("tenant_id", &self.tenant_id)
            .finish()
    }
}

impl LifecycleNotification {
    /// Whether the echoed `clientState` is the subscription's (constant time).
    pub fn client_state_matches(&self, expected: &SecretString) -> bool {
        client_state_matches(self.client_state.as_ref(), expected)
    }
}

/// A parsed batch: what parsed, and how many entries were skipped as unusable.
#[derive(Debug, Clone)]
pub struct Batch<T> {
    /// The usable entries.
    pub items: Vec<T>,
    /// Entries skipped (no subscription id, wrong shape).
    pub skipped: usize,
}

#[derive(Deserialize)]
struct Envelope {
    value: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawNotification {
    subscription_id: String,
    #[serde(default)]
    client_state: Option<String>,
    #[serde(default)]
    change_type: Option<String>,
    #[serde(default)]
    resource: Option<String>,
    #[serde(default)]
    tenant_id: Option<String>,
    #[serde(default)]
    resource_data: Option<RawResourceData>,
    #[serde(default)]
    lifecycle_event: Option<String>,
    #[serde(default)]
    subscription_expiration_date_time: Option<String>,
}

#[derive(Deserialize)]
struct RawResourceData {
    #[serde(default)]
    id: Option<String>,
}

/// The longest notification body parsed.
const MAX_NOTIFICATION_BODY: usize = 4 * 1024 * 1024;

fn parse_envelope(body: &[u8]) -> Result<Vec<serde_json::Value>> {
    if body.len() > MAX_NOTIFICATION_BODY {
        return Err(Error::invalid(format!(
            "the notification body is {} bytes; at most {MAX_NOTIFICATION_BODY} are accepted",
            body.len()
        )));
    }
    let env: Envelope = serde_json::from_slice(body).map_err(|e| {
        Error::invalid(format!(
            "the notification body is not a Graph notification collection: {e}"
        ))
    })?;
    Ok(env.value)
}

/// Parses a change-notification POST body. Lifecycle entries and unusable entries are
/// skipped (and counted); the batch only fails when the body is not a notification
/// collection at all.
pub fn parse_notifications(body: &[u8]) -> Result<Batch<ChangeNotification>> {
    let mut items = Vec::new();
    let mut skipped = 0;
    for v in parse_envelope(body)? {
        match serde_json::from_value::<RawNotification>(v) {
            Ok(r) if r.lifecycle_event.is_none() && !r.subscription_id.is_empty() => {
                items.push(ChangeNotification {
                    subscription_id: r.subscription_id,
                    client_state: r.client_state.map(SecretString::from),
                    change_type: r.change_type.unwrap_or_default(),
                    resource: r.resource.unwrap_or_default(),
                    tenant_id: r.tenant_id,
                    resource_id: r.resource_data.and_then(|d| d.id),
                })
            }
            _ => skipped += 1,
        }
    }
    Ok(Batch { items, skipped })
}

/// Parses a lifecycle-notification POST body (lenient per entry).
pub fn parse_lifecycle(body: &[u8]) -> Result<Batch<LifecycleNotification>> {
    let mut items = Vec::new();
    let mut skipped = 0;
    for v in parse_envelope(body)? {
        match serde_json::from_value::<RawNotification>(v) {
            Ok(r) if !r.subscription_id.is_empty() && r.lifecycle_event.is_some() => {
                let ev = r.lifecycle_event.unwrap_or_default();
                let event = match ev.as_str() {
                    "reauthorizationRequired" => LifecycleEvent::ReauthorizationRequired,
                    "subscriptionRemoved" => LifecycleEvent::SubscriptionRemoved,
                    "missed" => LifecycleEvent::Missed,
                    _ => LifecycleEvent::Other(ev),
                };
                items.push(LifecycleNotification {
                    subscription_id: r.subscription_id,
                    client_state: r.client_state.map(SecretString::from),
                    event,
                    subscription_expiration: r
                        .subscription_expiration_date_time
                        .as_deref()
                        .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok()),
                    tenant_id: r.tenant_id,
                })
            }
            _ => skipped += 1,
        }
    }
    Ok(Batch { items, skipped })
}

/// Whether a subscription's `resource` is the messages of `channel` (either path form,
/// ids compared case-insensitively).
pub fn same_channel_resource(resource: &str, channel: &ChannelRef) -> bool {
    let is_messages = resource
        .trim()
        .trim_end_matches('/')
        .to_ascii_lowercase()
        .ends_with("messages");
    is_messages
        && parse_resource(resource).is_some_and(|p| {
            p.message.is_none()
                && p.team.eq_ignore_ascii_case(channel.team.as_str())
                && p.channel.eq_ignore_ascii_case(channel.channel.as_str())
        })
}

/// The parts of a channel-message resource path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath {
    /// The team.
    pub team: String,
    /// The channel.
    pub channel: String,
    /// The message (the thread root when `reply` is set).
    pub message: Option<String>,
    /// The reply.
    pub reply: Option<String>,
}

/// Parses `teams('T')/channels('C')/messages('M')[/replies('R')]` or the slash form
/// `/teams/T/channels/C/messages/M[/replies/R]`.
pub fn parse_resource(resource: &str) -> Option<ResourcePath> {
    // split on '/' outside quotes, then read `name('value')` or `name` + next segment
    let mut segs: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in resource.trim().trim_start_matches('/').chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                cur.push(c);
            }
            '/' if !quoted => segs.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    segs.push(cur);
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut i = 0;
    while i < segs.len() {
        let s = &segs[i];
        if let Some(open) = s.find("('") {
            let name = &s[..open];
            let value = s[open + 2..].strip_suffix("')")?;
            pairs.push((name.to_owned(), value.replace("''", "'")));
            i += 1;
        } else {
            match segs.get(i + 1) {
                Some(value) => pairs.push((s.clone(), value.clone())),
                // a trailing collection name (`…/messages`) names no item
                None => pairs.push((s.clone(), String::new())),
            }
            i += 2;
        }
    }
    let get = |n: &str| {
        pairs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    Some(ResourcePath {
        team: get("teams")?,
        channel: get("channels")?,
        message: get("messages"),
        reply: get("replies"),
    })
}

impl MsTeamsConnection {
    /// The app's subscriptions (`GET /subscriptions`, every page).
    pub async fn list_subscriptions(&self) -> Result<Vec<GraphSubscription>> {
        let url = self.graph.url(&["subscriptions"], &[]);
        let mut all = Vec::new();
        self.graph
            .for_each_page::<GraphSubscription, _>(url, |p| {
                all.extend(p.items);
                Ok(true)
            })
            .await?;
        Ok(all)
    }

    /// Subscribes to the messages of `channel` (`created,updated,deleted`).
    ///
    /// Graph allows **one subscription per app per channel** (a second one is refused with
    /// 403), so the app's subscriptions are listed first: an existing one on the channel is
    /// renewed (PATCH) and kept when its notification and lifecycle URLs are `spec`'s and
    /// its `clientState` is known (`known_client_state`, the secret stored with it);
    /// otherwise it is deleted and replaced by a new one with a fresh random `clientState`.
    pub async fn subscribe_channel(
        &self,
        channel: &ChannelRef,
        spec: &SubscriptionSpec,
    ) -> Result<CreatedSubscription> {
        self.subscribe_channel_with(channel, spec, None).await
    }

    /// [`MsTeamsConnection::subscribe_channel`], with the `clientState` stored for the
    /// channel's existing subscription (so it can be kept rather than replaced).
    pub async fn subscribe_channel_with(
        &self,
        channel: &ChannelRef,
        spec: &SubscriptionSpec,
        known_client_state: Option<&SecretString>,
    ) -> Result<CreatedSubscription> {
        if channel.platform != switchboard_core::PlatformKind::Msteams {
            return Err(Error::invalid(format!(
                "{channel} is not a Microsoft Teams channel"
            )));
        }
        let lifetime = spec.effective_lifetime();
        let resource = format!(
            "/teams/{}/channels/{}/messages",
            channel.team, channel.channel
        );
        let existing: Vec<GraphSubscription> = self
            .list_subscriptions()
            .await?
            .into_iter()
            .filter(|s| {
                s.resource
                    .as_deref()
                    .is_some_and(|r| same_channel_resource(r, channel))
            })
            .collect();
        let mut replaced = false;
        for old in existing {
            let same_urls = old.notification_url.as_deref() == Some(spec.notification_url.as_str())
                && old.lifecycle_notification_url.as_deref()
                    == spec.lifecycle_url.as_ref().map(Url::as_str);
            // the secret: the one Graph shows, else the one stored with it
            let state = old
                .client_state
                .clone()
                .filter(|c| !c.is_empty())
                .map(SecretString::from)
                .or_else(|| known_client_state.cloned());
            if let (true, Some(client_state)) = (same_urls && !replaced, state) {
                match self
                    .renew_subscription(&old.id, lifetime, spec.lifecycle_url.is_some())
                    .await
                {
                    Ok(expires_at) => {
                        tracing::info!(%channel, subscription = %old.id, "renewed the existing subscription instead of creating a second one");
                        return Ok(CreatedSubscription {
                            id: old.id,
                            channel: channel.clone(),
                            resource: old.resource.unwrap_or(resource),
                            expires_at,
                            client_state,
                            outcome: SubscribeOutcome::Renewed,
                        });
                    }
                    Err(e) if e.kind() == switchboard_core::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            tracing::info!(%channel, subscription = %old.id, "replacing the existing subscription on the channel");
            self.delete_subscription(&old.id).await?;
            replaced = true;
        }
        let now = OffsetDateTime::now_utc();
        let expires = now + lifetime;
        let client_state = generate_client_state();
        let mut body = serde_json::json!({
            "changeType": "created,updated,deleted",
            "notificationUrl": spec.notification_url.as_str(),
            "resource": resource,
            "expirationDateTime": format_time(expires)?,
            "clientState": client_state.expose_secret(),
        });
        if let Some(l) = &spec.lifecycle_url {
            body["lifecycleNotificationUrl"] = serde_json::Value::String(l.as_str().to_owned());
        }
        let url = self.graph.url(&["subscriptions"], &[]);
        let req = GraphRequest::new(Method::POST, url).json(body);
        let resp = self.graph.send(&req).await.map_err(|f| {
            if f.status == Some(403) {
                Error::new(
                    switchboard_core::ErrorKind::Forbidden,
                    format!(
                        "{} — Graph allows one subscription per app per channel and refused this one; another installation of the app may hold the channel's subscription",
                        f.error.message()
                    ),
                )
            } else {
                f.into()
            }
        })?;
        let created: GraphSubscription = resp.json("POST /subscriptions")?;
        Ok(CreatedSubscription {
            expires_at: parse_expiry(created.expiration_date_time.as_deref(), expires),
            resource: created.resource.unwrap_or(resource),
            id: created.id,
            channel: channel.clone(),
            client_state,
            outcome: if replaced {
                SubscribeOutcome::Replaced
            } else {
                SubscribeOutcome::Created
            },
        })
    }

    /// Extends a subscription by `lifetime` from now (capped as at creation); returns the
    /// new expiry. `NotFound` when Graph removed it (create a new one and catch up).
    pub async fn renew_subscription(
        &self,
        id: &str,
        lifetime: Duration,
        has_lifecycle_url: bool,
    ) -> Result<OffsetDateTime> {
        let cap = if has_lifecycle_url {
            MAX_LIFETIME_WITH_LIFECYCLE
        } else {
            MAX_LIFETIME_WITHOUT_LIFECYCLE
        };
        let expires = OffsetDateTime::now_utc() + lifetime.min(cap);
        let url = self.graph.url(&["subscriptions", id], &[]);
        let req = GraphRequest::new(Method::PATCH, url)
            .json(serde_json::json!({ "expirationDateTime": format_time(expires)? }));
        let resp = self.graph.send(&req).await?;
        if resp.body.is_empty() {
            return Ok(expires);
        }
        let s: GraphSubscription = resp.json("PATCH /subscriptions")?;
        Ok(parse_expiry(s.expiration_date_time.as_deref(), expires))
    }

    /// Reauthorizes a subscription after a `reauthorizationRequired` lifecycle event.
    pub async fn reauthorize_subscription(&self, id: &str) -> Result<()> {
        let url = self.graph.url(&["subscriptions", id, "reauthorize"], &[]);
        let req = GraphRequest::new(Method::POST, url).idempotent(true);
        self.graph.send(&req).await?;
        Ok(())
    }

    /// Deletes a subscription; one already gone counts as deleted.
    pub async fn delete_subscription(&self, id: &str) -> Result<()> {
        let url = self.graph.url(&["subscriptions", id], &[]);
        match self
            .graph
            .send(&GraphRequest::new(Method::DELETE, url))
            .await
        {
            Ok(_) => Ok(()),
            Err(f) if f.status == Some(404) => Ok(()),
            Err(f) => Err(f.into()),
        }
    }
}

/// Core's [`ChannelFeeds`](switchboard_core::ChannelFeeds) for one Teams connection: one
/// subscription per channel through [`MsTeamsConnection::subscribe_channel_with`] (the
/// existing one kept and renewed), renewed a quarter of its lifetime before it expires.
#[derive(Debug, Clone)]
pub struct GraphFeeds {
    conn: std::sync::Arc<MsTeamsConnection>,
    connection: ConnectionId,
}

impl GraphFeeds {
    /// The feeds of `conn`, stored under `connection`.
    pub fn new(conn: std::sync::Arc<MsTeamsConnection>, connection: ConnectionId) -> Self {
        GraphFeeds { conn, connection }
    }

    fn spec(endpoints: &switchboard_core::FeedEndpoints) -> SubscriptionSpec {
        SubscriptionSpec {
            notification_url: endpoints.notification_url.clone(),
            lifecycle_url: endpoints.lifecycle_url.clone(),
            lifetime: None,
        }
    }
}

#[async_trait::async_trait]
impl switchboard_core::ChannelFeeds for GraphFeeds {
    async fn ensure(
        &self,
        channel: &ChannelRef,
        endpoints: &switchboard_core::FeedEndpoints,
        known: Option<&Subscription>,
    ) -> Result<Subscription> {
        let created = self
            .conn
            .subscribe_channel_with(
                channel,
                &Self::spec(endpoints),
                known.map(|k| &k.client_state),
            )
            .await?;
        created.into_core(self.connection.clone())
    }

    async fn renew(
        &self,
        subscription: &Subscription,
        endpoints: &switchboard_core::FeedEndpoints,
    ) -> Result<OffsetDateTime> {
        let spec = Self::spec(endpoints);
        self.conn
            .renew_subscription(
                subscription.id.as_str(),
                spec.effective_lifetime(),
                spec.lifecycle_url.is_some(),
            )
            .await
    }

    async fn reauthorize(&self, subscription: &SubscriptionId) -> Result<()> {
        self.conn
            .reauthorize_subscription(subscription.as_str())
            .await
    }

    async fn remove(&self, subscription: &SubscriptionId) -> Result<()> {
        self.conn.delete_subscription(subscription.as_str()).await
    }

    fn renew_at(&self, subscription: &Subscription) -> OffsetDateTime {
        let margin = (MAX_LIFETIME_WITH_LIFECYCLE / 4).max(Duration::from_secs(300));
        subscription.expires_at - time::Duration::try_from(margin).unwrap_or(time::Duration::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_token_is_decoded() {
        assert_eq!(
            validation_response("validationToken=Validation%3A+Testing+client+application+reachability+for+subscription+Request-Id%3A+7dd8d2e5").as_deref(),
            Some("Validation: Testing client application reachability for subscription Request-Id: 7dd8d2e5")
        );
        assert_eq!(validation_response(""), None);
        assert_eq!(validation_response("other=1"), None);
        let long = format!("validationToken={}", "a".repeat(MAX_VALIDATION_TOKEN + 1));
        assert_eq!(validation_response(&long), None);
    }

    #[test]
    fn client_states_are_random_and_compared_exactly() {
        let a = generate_client_state();
        let b = generate_client_state();
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert_eq!(a.expose_secret().len(), 43);
        assert!(client_state_matches(Some(&a.clone()), &a));
        assert!(!client_state_matches(Some(&b), &a));
        assert!(!client_state_matches(None, &a));
        let prefix = SecretString::from(a.expose_secret()[..42].to_owned());
        assert!(!client_state_matches(Some(&prefix), &a));
    }

    #[test]
    fn notifications_parse_leniently() {
        let body = br##"{"value":[
            {"subscriptionId":"s1","clientState":"cs","changeType":"created","tenantId":"t",
             "resource":"teams('T1')/channels('19:c@thread.tacv2')/messages('100')",
             "resourceData":{"id":"100","@odata.type":"#Microsoft.Graph.chatMessage"},"newField":{"x":1}},
            {"subscriptionId":"s1","changeType":"updated",
             "resource":"teams('T1')/channels('19:c@thread.tacv2')/messages('100')/replies('101')"},
            {"no":"subscription"},
            42,
            {"subscriptionId":"s1","lifecycleEvent":"missed"}
        ]}"##;
        let b = parse_notifications(body).unwrap();
        assert_eq!(b.items.len(), 2);
        assert_eq!(b.skipped, 3);
        let n = &b.items[0];
        assert!(n.client_state_matches(&SecretString::from("cs")));
        assert!(!format!("{n:?}").contains("\"cs\""));
        assert_eq!(
            n.message_path().unwrap(),
            ResourcePath {
                team: "T1".into(),
                channel: "19:c@thread.tacv2".into(),
                message: Some("100".into()),
                reply: None
            }
        );
        assert_eq!(
            b.items[1].message_path().unwrap().reply.as_deref(),
            Some("101")
        );
        assert!(!b.items[1].client_state_matches(&SecretString::from("cs")));
        assert!(parse_notifications(b"not json").is_err());
        assert!(parse_notifications(br#"{"value":{}}"#).is_err());
    }

    #[test]
    fn lifecycle_events_parse() {
        let body = br#"{"value":[
            {"subscriptionId":"s1","clientState":"cs","lifecycleEvent":"reauthorizationRequired","subscriptionExpirationDateTime":"2024-03-01T10:00:00.0000000Z","tenantId":"t"},
            {"subscriptionId":"s2","lifecycleEvent":"subscriptionRemoved"},
            {"subscriptionId":"s3","lifecycleEvent":"missed"},
            {"subscriptionId":"s4","lifecycleEvent":"somethingNew"},
            {"subscriptionId":"s5","changeType":"created"}
        ]}"#;
        let b = parse_lifecycle(body).unwrap();
        assert_eq!(b.skipped, 1);
        let events: Vec<_> = b.items.iter().map(|i| i.event.clone()).collect();
        assert_eq!(
            events,
            vec![
                LifecycleEvent::ReauthorizationRequired,
                LifecycleEvent::SubscriptionRemoved,
                LifecycleEvent::Missed,
                LifecycleEvent::Other("somethingNew".into())
            ]
        );
        assert_eq!(
            b.items[0].subscription_expiration.unwrap().unix_timestamp(),
            1_709_287_200
        );
    }

    #[test]
    fn resources_parse_in_both_forms() {
        assert_eq!(
            parse_resource("/teams/T1/channels/19:c@thread.tacv2/messages/5/replies/6").unwrap(),
            ResourcePath {
                team: "T1".into(),
                channel: "19:c@thread.tacv2".into(),
                message: Some("5".into()),
                reply: Some("6".into())
            }
        );
        assert_eq!(
            parse_resource("teams('T1')/channels('19:c@thread.tacv2')/messages")
                .unwrap()
                .message,
            None
        );
        assert!(parse_resource("users('u')/messages('1')").is_none());
        assert!(parse_resource("teams('T1").is_none());
        assert!(parse_resource("").is_none());
    }

    #[test]
    fn lifetimes_are_capped_and_renewal_is_due_early() {
        let url = Url::parse("https://hooks.test/n").unwrap();
        let spec = SubscriptionSpec {
            notification_url: url.clone(),
            lifecycle_url: None,
            lifetime: Some(Duration::from_secs(7200)),
        };
        assert_eq!(spec.effective_lifetime(), MAX_LIFETIME_WITHOUT_LIFECYCLE);
        let spec = SubscriptionSpec {
            lifecycle_url: Some(url),
            lifetime: None,
            ..spec
        };
        assert_eq!(spec.effective_lifetime(), MAX_LIFETIME_WITH_LIFECYCLE);
        let now = OffsetDateTime::now_utc();
        let hour = Duration::from_secs(3600);
        assert!(!needs_renewal(now + time::Duration::minutes(50), now, hour));
        assert!(needs_renewal(now + time::Duration::minutes(10), now, hour));
        assert!(needs_renewal(now - time::Duration::minutes(1), now, hour));
    }
}
