//! Receiving: one shape for everything a platform sends us, whatever the transport.
//!
//! A transport (an HTTP webhook, a Slack Socket Mode connection) hands a raw delivery to the
//! adapter's [`WebhookReceiver`] (or its Socket Mode client), which verifies it and parses it
//! into [`Inbound`] items; those go to an [`EventSink`] whose contract is **stored durably
//! before it returns**: the transport acknowledges the delivery only after `accept` returned
//! `Ok`, so nothing acknowledged is ever lost, and a failed `accept` makes the platform
//! deliver again.
//!
//! Some platforms send only a pointer to what changed (Graph change notifications carry a
//! resource id, not the message): those become [`Inbound::Changed`] hints, stored as they
//! are, and resolved later, off the acknowledgement path, by the adapter's [`Resolver`].

use async_trait::async_trait;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::Result;
use crate::ids::*;
use crate::message::{Emoji, PlatformEvent};

/// What kind of change a [`ChangeHint`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeType {
    /// The resource was created.
    Created,
    /// The resource changed (an edit, a reaction, …: fetch it to know which).
    Updated,
    /// The resource was deleted.
    Deleted,
}

/// A pointer to a changed message, to be fetched and turned into events later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeHint {
    /// A key unique to this notification (the inbox deduplicates on it).
    pub event_id: String,
    /// The channel the message is in.
    pub channel: ChannelRef,
    /// The message (a reply's own id).
    pub message: MessageId,
    /// The thread root, when the message is a reply.
    pub thread_root: Option<MessageId>,
    /// What happened.
    pub change: ChangeType,
    /// When the notification was received.
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
}

/// A connection-level signal: not a message event, but something the server must act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "signal", rename_all = "snake_case")]
pub enum ConnectionSignal {
    /// The grant is gone (Slack `app_uninstalled`, `tokens_revoked`): mark the connection
    /// `needs_reauth`; deliveries wait.
    GrantRevoked {
        /// What the platform said, for the audit log.
        reason: String,
    },
    /// A change-notification subscription must be reauthorized now (Graph
    /// `reauthorizationRequired`, sent repeatedly as the delegated token nears expiry);
    /// delivery pauses until it is.
    ReauthorizationRequired {
        /// The subscription.
        subscription: SubscriptionId,
    },
    /// The platform removed a subscription (Graph `subscriptionRemoved`): recreate it, then
    /// catch up through [`History`](crate::History).
    SubscriptionRemoved {
        /// The subscription.
        subscription: SubscriptionId,
    },
    /// The platform is dropping events because we were too slow or too many (Slack
    /// `app_rate_limited`): catch up through history once it passes.
    EventsDropped {
        /// Since when, per the platform.
        #[serde(with = "time::serde::rfc3339")]
        since: OffsetDateTime,
    },
}

/// One item a receiver produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "inbound", rename_all = "snake_case")]
pub enum Inbound {
    /// A complete event (Slack delivers the content itself).
    Event(PlatformEvent),
    /// A pointer to fetch later (Graph).
    Changed(ChangeHint),
    /// Something about the connection itself.
    Signal(ConnectionSignal),
}

impl Inbound {
    /// The key the inbox deduplicates on, when the item has one (signals have none).
    pub fn dedupe_key(&self) -> Option<&str> {
        match self {
            Inbound::Event(e) => Some(&e.event_id),
            Inbound::Changed(h) => Some(&h.event_id),
            Inbound::Signal(_) => None,
        }
    }

    /// The channel the item concerns, when it concerns one.
    pub fn channel(&self) -> Option<&ChannelRef> {
        match self {
            Inbound::Event(e) => Some(&e.channel),
            Inbound::Changed(h) => Some(&h.channel),
            Inbound::Signal(_) => None,
        }
    }
}

/// Takes what receivers produced.
///
/// Contract: `accept` returns only after every item is stored durably (or recognised as a
/// duplicate of a stored one). The caller acknowledges the platform's delivery only after it
/// returned `Ok`; on `Err` the caller makes the platform retry (HTTP 5xx, no Socket Mode ack).
#[async_trait]
pub trait EventSink: Send + Sync {
    /// Stores `items` received on `connection`.
    async fn accept(&self, connection: &ConnectionId, items: Vec<Inbound>) -> Result<()>;
}

/// Which of Switchboard's webhook endpoints a request arrived at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookEndpoint {
    /// `POST /webhooks/slack/events`.
    SlackEvents,
    /// `POST /webhooks/msteams/notifications`.
    GraphNotifications,
    /// `POST /webhooks/msteams/lifecycle`.
    GraphLifecycle,
}

/// One HTTP delivery, as the server received it.
#[derive(Debug, Clone, Copy)]
pub struct WebhookRequest<'a> {
    /// Where it arrived.
    pub endpoint: WebhookEndpoint,
    /// The raw query string (without `?`), empty when none.
    pub query: &'a str,
    /// The headers, names in any case.
    pub headers: &'a [(String, String)],
    /// The raw body, exactly as received (signatures cover the bytes).
    pub body: &'a [u8],
    /// When it was received (signature windows are checked against it).
    pub received_at: OffsetDateTime,
}

impl WebhookRequest<'_> {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Who a verified delivery belongs to; the server maps it to a connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "route", rename_all = "snake_case")]
pub enum Route {
    /// A Slack workspace (the envelope's `team_id`).
    Workspace {
        /// The workspace.
        team: TeamId,
    },
    /// A Graph subscription (the notification's `subscriptionId`).
    Subscription {
        /// The subscription.
        subscription: SubscriptionId,
    },
}

/// Items for one route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedItems {
    /// Whose they are.
    pub route: Route,
    /// What arrived.
    pub items: Vec<Inbound>,
}

/// What to answer a verified delivery with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// A handshake (Slack `url_verification`, Graph `validationToken`): answer 200 with this
    /// body and content type; nothing is stored.
    Handshake {
        /// The `Content-Type` of the answer.
        content_type: &'static str,
        /// The body.
        body: String,
    },
    /// Verified items: give each group to the [`EventSink`] of its route's connection, then
    /// acknowledge with `status` (Slack 200, Graph 202).
    Accept {
        /// Groups of items by route (possibly empty: acknowledge, nothing to store).
        routed: Vec<RoutedItems>,
        /// The status to acknowledge with once stored.
        status: u16,
    },
}

/// Looks up the `clientState` secret of a change-notification subscription.
#[async_trait]
pub trait ClientStates: Send + Sync {
    /// The secret of `subscription`, `None` when it is not ours.
    async fn client_state(&self, subscription: &SubscriptionId) -> Result<Option<SecretString>>;
}

/// Verifies and parses HTTP deliveries of one platform.
///
/// Errors: `Unauthorized` for a bad signature, stale timestamp or wrong `clientState`;
/// `InvalidInput` for a malformed body. Either way nothing is stored and the server answers
/// 4xx. Receivers never perform platform API calls: they answer within the platforms'
/// deadlines (Slack 3 s, Graph 3 s) whatever the platform's own latency.
#[async_trait]
pub trait WebhookReceiver: Send + Sync + std::fmt::Debug {
    /// Verifies and parses `request`.
    async fn receive(&self, request: &WebhookRequest<'_>) -> Result<WebhookOutcome>;
}

/// What was last seen of a message, so a later notification can be turned into the right
/// events (Graph reports edits and reactions alike as "updated").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageSnapshot {
    /// The platform's edit stamp (Graph `lastEditedDateTime`), when it was edited.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub edited_at: Option<OffsetDateTime>,
    /// Every (user, emoji) reaction on it.
    pub reactions: Vec<(UserId, Emoji)>,
    /// Whether it is deleted.
    pub deleted: bool,
}

/// The result of [`Resolver::resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The events the change amounts to, in order (possibly none: nothing we relay changed).
    pub events: Vec<PlatformEvent>,
    /// The snapshot to remember for the next change of this message (`None`: nothing to keep,
    /// e.g. it was deleted or is not a user message).
    pub snapshot: Option<MessageSnapshot>,
}

/// Turns [`ChangeHint`]s into events by fetching the message (off the acknowledgement path).
#[async_trait]
pub trait Resolver: Send + Sync + std::fmt::Debug {
    /// Fetches the message `hint` points at and compares it with `last_seen`.
    async fn resolve(
        &self,
        hint: &ChangeHint,
        last_seen: Option<&MessageSnapshot>,
    ) -> Result<Resolved>;
}

/// Where a per-channel subscription sends what it watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEndpoints {
    /// Change notifications (`POST /webhooks/msteams/notifications` on the server).
    pub notification_url: url::Url,
    /// Lifecycle events (`POST /webhooks/msteams/lifecycle`).
    pub lifecycle_url: Option<url::Url>,
}

/// Live delivery of a channel's changes, for platforms that subscribe per channel (Microsoft
/// Graph: one subscription per app per channel, expiring after three days, to renew, and to
/// reauthorize on every `reauthorizationRequired`). Platforms whose events cover the whole
/// workspace (Slack) have none.
#[async_trait]
pub trait ChannelFeeds: Send + Sync + std::fmt::Debug {
    /// Makes sure the changes of `channel` are sent to `endpoints`: the channel's existing
    /// subscription (`known`, as stored) is kept and renewed when it can be, else one is
    /// created. Returns the subscription to store (its secret sealed by the store).
    async fn ensure(
        &self,
        channel: &ChannelRef,
        endpoints: &FeedEndpoints,
        known: Option<&crate::store::Subscription>,
    ) -> Result<crate::store::Subscription>;
    /// Extends `subscription`; returns the new expiry. `NotFound` when the platform removed
    /// it (ensure the channel again and catch up).
    async fn renew(
        &self,
        subscription: &crate::store::Subscription,
        endpoints: &FeedEndpoints,
    ) -> Result<OffsetDateTime>;
    /// Reauthorizes `subscription` (after `reauthorizationRequired`).
    async fn reauthorize(&self, subscription: &SubscriptionId) -> Result<()>;
    /// Deletes `subscription`; one already gone counts as deleted.
    async fn remove(&self, subscription: &SubscriptionId) -> Result<()>;
    /// When `subscription` should be renewed.
    fn renew_at(&self, subscription: &crate::store::Subscription) -> OffsetDateTime;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::EventKind;

    #[allow(dead_code)]
    fn object_safe(_: &dyn EventSink, _: &dyn WebhookReceiver, _: &dyn Resolver) {}

    #[test]
    fn inbound_items_round_trip_and_expose_their_keys() {
        let hint = Inbound::Changed(ChangeHint {
            event_id: "sub1:created:m1".into(),
            channel: "msteams:t1/19:c1@thread.tacv2".parse().unwrap(),
            message: MessageId::new("m1").unwrap(),
            thread_root: None,
            change: ChangeType::Created,
            received_at: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
        });
        let ev = Inbound::Event(PlatformEvent {
            event_id: "Ev1".into(),
            channel: "slack:T1/C1".parse().unwrap(),
            occurred_at: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
            kind: EventKind::Deleted {
                message: MessageId::new("1.000100").unwrap(),
            },
        });
        let sig = Inbound::Signal(ConnectionSignal::ReauthorizationRequired {
            subscription: SubscriptionId::new("s1").unwrap(),
        });
        for item in [&hint, &ev, &sig] {
            let json = serde_json::to_string(item).unwrap();
            assert_eq!(&serde_json::from_str::<Inbound>(&json).unwrap(), item);
        }
        assert_eq!(hint.dedupe_key(), Some("sub1:created:m1"));
        assert_eq!(ev.channel().unwrap().to_string(), "slack:T1/C1");
        assert_eq!(sig.dedupe_key(), None);
        assert!(sig.channel().is_none());
    }

    #[test]
    fn headers_are_found_case_insensitively() {
        let headers = vec![("X-Slack-Signature".to_owned(), "v0=ab".to_owned())];
        let req = WebhookRequest {
            endpoint: WebhookEndpoint::SlackEvents,
            query: "",
            headers: &headers,
            body: b"{}",
            received_at: OffsetDateTime::UNIX_EPOCH,
        };
        assert_eq!(req.header("x-slack-signature"), Some("v0=ab"));
        assert_eq!(req.header("x-slack-request-timestamp"), None);
    }
}
