//! Receiving from Graph: [`GraphReceiver`] (core's [`WebhookReceiver`] for the notification
//! and lifecycle endpoints) and [`TeamsResolver`] (core's [`Resolver`], turning a stored
//! [`ChangeHint`] into events by fetching the message and diffing it against what was last
//! seen).
//!
//! The receiver never calls Graph: it checks the `clientState` of every entry in constant
//! time through core's [`ClientStates`] lookup and hands back pointers, so the server can
//! acknowledge with 202 within Graph's deadline. The resolver runs later, off that path.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use switchboard_core::{
    ChangeHint, ChangeType, ChannelRef, ClientStates, ConnectionSignal, Emoji, Error, ErrorKind,
    EventKind, Inbound, MessageId, MessageSnapshot, PlatformEvent, Resolved, Resolver, Result,
    Route, RoutedItems, SubscriptionId, TeamId, UserId, WebhookEndpoint, WebhookOutcome,
    WebhookReceiver, WebhookRequest,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::connection::MsTeamsConnection;
use crate::events::{is_user_message, portable_message};
use crate::subscriptions::{
    LifecycleEvent, client_state_matches, parse_lifecycle, parse_notifications, validation_response,
};
use crate::wire::ChatMessage;

/// The status Graph expects once a notification batch is taken.
pub const ACCEPTED: u16 = 202;

/// Verifies and parses Graph change notifications and lifecycle events.
pub struct GraphReceiver {
    states: Arc<dyn ClientStates>,
}

impl std::fmt::Debug for GraphReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphReceiver").finish_non_exhaustive()
    }
}

impl GraphReceiver {
    /// A receiver checking `clientState`s through `states`.
    pub fn new(states: Arc<dyn ClientStates>) -> Self {
        GraphReceiver { states }
    }

    /// The stored secret of `subscription`, checked against what Graph echoed. `Ok(false)`
    /// when the subscription is not ours (the entry is skipped: nothing to verify it with);
    /// `Unauthorized` when the secret does not match.
    async fn verify(
        &self,
        subscription: &str,
        echoed: Option<&secrecy::SecretString>,
    ) -> Result<Option<SubscriptionId>> {
        let Ok(id) = SubscriptionId::new(subscription) else {
            return Ok(None);
        };
        match self.states.client_state(&id).await? {
            None => {
                tracing::warn!(
                    subscription,
                    "a notification for a subscription that is not ours; skipped"
                );
                Ok(None)
            }
            Some(expected) if client_state_matches(echoed, &expected) => Ok(Some(id)),
            Some(_) => Err(Error::new(
                ErrorKind::Unauthorized,
                format!(
                    "a Graph notification for subscription {subscription} carried a wrong clientState; nothing was stored"
                ),
            )),
        }
    }
}

fn group(items: Vec<(SubscriptionId, Inbound)>) -> Vec<RoutedItems> {
    let mut by: BTreeMap<String, (SubscriptionId, Vec<Inbound>)> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for (sub, item) in items {
        let key = sub.as_str().to_owned();
        if !by.contains_key(&key) {
            order.push(key.clone());
        }
        by.entry(key)
            .or_insert_with(|| (sub, Vec::new()))
            .1
            .push(item);
    }
    order
        .into_iter()
        .filter_map(|k| by.remove(&k))
        .map(|(subscription, items)| RoutedItems {
            route: Route::Subscription { subscription },
            items,
        })
        .collect()
}

#[async_trait]
impl WebhookReceiver for GraphReceiver {
    async fn receive(&self, request: &WebhookRequest<'_>) -> Result<WebhookOutcome> {
        if let Some(token) = validation_response(request.query) {
            return Ok(WebhookOutcome::Handshake {
                content_type: "text/plain",
                body: token,
            });
        }
        let mut out: Vec<(SubscriptionId, Inbound)> = Vec::new();
        match request.endpoint {
            WebhookEndpoint::GraphNotifications => {
                let batch = parse_notifications(request.body)?;
                // verify every entry before producing anything: one bad secret refuses all
                let mut verified = Vec::with_capacity(batch.items.len());
                for n in &batch.items {
                    if let Some(id) = self
                        .verify(&n.subscription_id, n.client_state.as_ref())
                        .await?
                    {
                        verified.push((id, n));
                    }
                }
                for (id, n) in verified {
                    let Some(path) = n.message_path() else {
                        continue;
                    };
                    let (Ok(team), Ok(chan)) = (
                        TeamId::new(path.team.clone()),
                        switchboard_core::ChannelId::new(path.channel.clone()),
                    ) else {
                        continue;
                    };
                    let channel = ChannelRef {
                        platform: switchboard_core::PlatformKind::Msteams,
                        team,
                        channel: chan,
                    };
                    let Some(root) = path.message.as_deref().and_then(|m| MessageId::new(m).ok())
                    else {
                        continue;
                    };
                    let reply = path.reply.as_deref().and_then(|r| MessageId::new(r).ok());
                    let (message, thread_root) = match reply {
                        Some(r) => (r, Some(root)),
                        None => (root, None),
                    };
                    let change = match n.change_type.to_ascii_lowercase().as_str() {
                        "created" => ChangeType::Created,
                        "deleted" => ChangeType::Deleted,
                        _ => ChangeType::Updated,
                    };
                    // created/deleted happen once per message; updates can repeat, so each
                    // one is kept apart
                    let event_id = match change {
                        ChangeType::Created => {
                            format!("msteams:{id}:created:{message}", id = id.as_str())
                        }
                        ChangeType::Deleted => {
                            format!("msteams:{id}:deleted:{message}", id = id.as_str())
                        }
                        ChangeType::Updated => format!(
                            "msteams:{id}:updated:{message}:{}",
                            request.received_at.unix_timestamp_nanos(),
                            id = id.as_str()
                        ),
                    };
                    out.push((
                        id,
                        Inbound::Changed(ChangeHint {
                            event_id,
                            channel,
                            message,
                            thread_root,
                            change,
                            received_at: request.received_at,
                        }),
                    ));
                }
            }
            WebhookEndpoint::GraphLifecycle => {
                let batch = parse_lifecycle(request.body)?;
                let mut verified = Vec::with_capacity(batch.items.len());
                for l in &batch.items {
                    if let Some(id) = self
                        .verify(&l.subscription_id, l.client_state.as_ref())
                        .await?
                    {
                        verified.push((id, l));
                    }
                }
                for (id, l) in verified {
                    let signal = match &l.event {
                        LifecycleEvent::ReauthorizationRequired => {
                            ConnectionSignal::ReauthorizationRequired {
                                subscription: id.clone(),
                            }
                        }
                        LifecycleEvent::SubscriptionRemoved => {
                            ConnectionSignal::SubscriptionRemoved {
                                subscription: id.clone(),
                            }
                        }
                        // Graph does not send `missed` for Teams messages; nothing relies on it
                        LifecycleEvent::Missed | LifecycleEvent::Other(_) => {
                            tracing::info!(subscription = %id.as_str(), event = ?l.event, "lifecycle event ignored");
                            continue;
                        }
                    };
                    out.push((id, Inbound::Signal(signal)));
                }
            }
            WebhookEndpoint::SlackEvents => {
                return Err(Error::invalid(
                    "a Slack delivery was handed to the Graph receiver",
                ));
            }
        }
        Ok(WebhookOutcome::Accept {
            routed: group(out),
            status: ACCEPTED,
        })
    }
}

/// Resolves Graph change hints for one connection.
#[derive(Debug, Clone)]
pub struct TeamsResolver {
    conn: Arc<MsTeamsConnection>,
}

impl TeamsResolver {
    /// A resolver fetching through `conn`.
    pub fn new(conn: Arc<MsTeamsConnection>) -> Self {
        TeamsResolver { conn }
    }
}

/// A Graph `reactionType` as an emoji: Unicode as is, the legacy names as their emoji.
pub fn reaction_emoji(reaction_type: &str) -> Emoji {
    let t = reaction_type.trim();
    let (value, name) = match t.to_ascii_lowercase().as_str() {
        "like" => ("👍", Some("thumbsup")),
        "heart" => ("❤️", Some("heart")),
        "laugh" => ("😆", Some("laughing")),
        "surprised" => ("😮", Some("open_mouth")),
        "sad" => ("😢", Some("cry")),
        "angry" => ("😠", Some("angry")),
        _ => (t, None),
    };
    Emoji::Unicode {
        value: value.to_owned(),
        name: name.map(str::to_owned),
    }
}

fn emoji_key(e: &Emoji) -> String {
    match e {
        Emoji::Unicode { value, .. } => format!("u:{value}"),
        Emoji::Custom { name } => format!("c:{name}"),
    }
}

/// What a fetched message looks like as a snapshot: its edit stamp and every (user, emoji).
pub fn snapshot_of(msg: &ChatMessage) -> MessageSnapshot {
    let mut seen = BTreeSet::new();
    let mut reactions = Vec::new();
    for r in &msg.reactions {
        let (Some(t), Some(user)) = (
            r.reaction_type.as_deref().filter(|t| !t.trim().is_empty()),
            r.user
                .as_ref()
                .and_then(|u| u.user.as_ref())
                .and_then(|u| u.id.clone())
                .and_then(|id| UserId::new(id).ok()),
        ) else {
            continue;
        };
        let emoji = reaction_emoji(t);
        if seen.insert((user.as_str().to_owned(), emoji_key(&emoji))) {
            reactions.push((user, emoji));
        }
    }
    MessageSnapshot {
        edited_at: msg
            .last_edited_date_time
            .as_deref()
            .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok()),
        reactions,
        deleted: msg.deleted_date_time.is_some(),
    }
}

/// The events between `last` and `now` for the message `msg` (already fetched, not deleted).
pub fn diff(
    hint: &ChangeHint,
    msg: &ChatMessage,
    last: Option<&MessageSnapshot>,
    now: &MessageSnapshot,
) -> Vec<PlatformEvent> {
    let mut events = Vec::new();
    let id = hint.message.clone();
    let stamp = |s: Option<&str>| {
        s.and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
            .unwrap_or(hint.received_at)
    };
    let ev = |event_id: String, occurred_at: OffsetDateTime, kind: EventKind| PlatformEvent {
        event_id,
        channel: hint.channel.clone(),
        occurred_at,
        kind,
    };
    let mut content = portable_message(msg);
    if let Some(c) = &mut content {
        if c.thread_root.is_none() {
            c.thread_root = hint.thread_root.clone();
        }
    }
    let empty = MessageSnapshot::default();
    match last {
        None if hint.change == ChangeType::Created => {
            if let Some(content) = content.clone() {
                events.push(ev(
                    format!("msteams:{id}:posted"),
                    stamp(msg.created_date_time.as_deref()),
                    EventKind::Posted {
                        message: id.clone(),
                        content,
                    },
                ));
            }
            return events;
        }
        _ => {}
    }
    let last = last.unwrap_or(&empty);
    if now.edited_at.is_some() && now.edited_at != last.edited_at {
        if let Some(content) = content {
            let edited = msg.last_edited_date_time.clone().unwrap_or_default();
            events.push(ev(
                format!("msteams:{id}:edited:{edited}"),
                stamp(msg.last_edited_date_time.as_deref()),
                EventKind::Edited {
                    message: id.clone(),
                    content,
                },
            ));
        }
    }
    let key = |(u, e): &(UserId, Emoji)| (u.as_str().to_owned(), emoji_key(e));
    let before: BTreeSet<_> = last.reactions.iter().map(key).collect();
    let after: BTreeSet<_> = now.reactions.iter().map(key).collect();
    let at = stamp(msg.last_modified_date_time.as_deref());
    let modified = msg.last_modified_date_time.clone().unwrap_or_default();
    for r in &now.reactions {
        if !before.contains(&key(r)) {
            events.push(ev(
                format!(
                    "msteams:{id}:reaction+:{}:{}:{modified}",
                    r.0,
                    emoji_key(&r.1)
                ),
                at,
                EventKind::ReactionAdded {
                    message: id.clone(),
                    user: r.0.clone(),
                    emoji: r.1.clone(),
                },
            ));
        }
    }
    for r in &last.reactions {
        if !after.contains(&key(r)) {
            events.push(ev(
                format!(
                    "msteams:{id}:reaction-:{}:{}:{modified}",
                    r.0,
                    emoji_key(&r.1)
                ),
                at,
                EventKind::ReactionRemoved {
                    message: id.clone(),
                    user: r.0.clone(),
                    emoji: r.1.clone(),
                },
            ));
        }
    }
    events
}

fn deleted_event(hint: &ChangeHint) -> PlatformEvent {
    PlatformEvent {
        event_id: format!("msteams:{}:deleted", hint.message),
        channel: hint.channel.clone(),
        occurred_at: hint.received_at,
        kind: EventKind::Deleted {
            message: hint.message.clone(),
        },
    }
}

#[async_trait]
impl Resolver for TeamsResolver {
    /// Deleted (by the hint, a 404, or `deletedDateTime`) → `Deleted`; a message first seen
    /// by a `created` hint → `Posted`; a changed `lastEditedDateTime` → `Edited`; changes of
    /// `reactions[]` → `ReactionAdded`/`ReactionRemoved` per (user, emoji). A reaction alone
    /// only bumps `lastModifiedDateTime` and is never an edit.
    async fn resolve(
        &self,
        hint: &ChangeHint,
        last_seen: Option<&MessageSnapshot>,
    ) -> Result<Resolved> {
        let already_deleted = last_seen.is_some_and(|s| s.deleted);
        let gone = |events: Vec<PlatformEvent>| Resolved {
            events,
            snapshot: None,
        };
        if hint.change == ChangeType::Deleted {
            return Ok(gone(if already_deleted {
                vec![]
            } else {
                vec![deleted_event(hint)]
            }));
        }
        let msg = match self
            .conn
            .fetch_message(&hint.channel, &hint.message, hint.thread_root.as_ref())
            .await
        {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Ok(gone(vec![deleted_event(hint)]));
            }
            Err(e) => return Err(e),
        };
        if msg.deleted_date_time.is_some() {
            return Ok(gone(if already_deleted {
                vec![]
            } else {
                vec![deleted_event(hint)]
            }));
        }
        if !is_user_message(&msg) {
            return Ok(gone(vec![]));
        }
        let now = snapshot_of(&msg);
        let mut events = diff(hint, &msg, last_seen, &now);
        // Reactions of our own account are the relay's copies of reactions made elsewhere:
        // relaying them back would echo (the snapshot keeps them, so later diffs stay right).
        if let Ok(me) = self.conn.me().await {
            events.retain(|e| match &e.kind {
                EventKind::ReactionAdded { user, .. } | EventKind::ReactionRemoved { user, .. } => {
                    user.as_str() != me.id
                }
                _ => true,
            });
        }
        Ok(Resolved {
            events,
            snapshot: Some(now),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hint(change: ChangeType) -> ChangeHint {
        ChangeHint {
            event_id: "x".into(),
            channel: "msteams:T1/19:c@thread.tacv2".parse().unwrap(),
            message: MessageId::new("100").unwrap(),
            thread_root: None,
            change,
            received_at: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
        }
    }

    fn msg(v: serde_json::Value) -> ChatMessage {
        serde_json::from_value(v).unwrap()
    }

    fn base() -> serde_json::Value {
        serde_json::json!({
            "id": "100", "messageType": "message",
            "createdDateTime": "2024-01-02T03:04:05Z",
            "lastModifiedDateTime": "2024-01-02T03:04:05Z",
            "from": {"user": {"id": "u1", "displayName": "Jane"}},
            "body": {"contentType": "html", "content": "<p>hi</p>"}
        })
    }

    #[test]
    fn a_reaction_alone_is_not_an_edit() {
        let m0 = msg(base());
        let s0 = snapshot_of(&m0);
        let posted = diff(&hint(ChangeType::Created), &m0, None, &s0);
        assert!(matches!(
            posted[..],
            [PlatformEvent {
                kind: EventKind::Posted { .. },
                ..
            }]
        ));
        let mut v = base();
        v["lastModifiedDateTime"] = "2024-01-02T03:05:00Z".into();
        v["reactions"] = serde_json::json!([
            {"reactionType": "👍", "user": {"user": {"id": "u2"}}},
            {"reactionType": "like", "user": {"user": {"id": "u3"}}}
        ]);
        let m1 = msg(v.clone());
        let s1 = snapshot_of(&m1);
        let evs = diff(&hint(ChangeType::Updated), &m1, Some(&s0), &s1);
        assert_eq!(evs.len(), 2, "{evs:?}");
        assert!(
            evs.iter()
                .all(|e| matches!(e.kind, EventKind::ReactionAdded { .. }))
        );
        // u2 takes 👍 back, the message is edited
        v["reactions"] =
            serde_json::json!([{"reactionType": "like", "user": {"user": {"id": "u3"}}}]);
        v["lastEditedDateTime"] = "2024-01-02T03:06:00Z".into();
        let m2 = msg(v);
        let s2 = snapshot_of(&m2);
        let evs = diff(&hint(ChangeType::Updated), &m2, Some(&s1), &s2);
        assert!(matches!(evs[0].kind, EventKind::Edited { .. }));
        let EventKind::ReactionRemoved { user, emoji, .. } = &evs[1].kind else {
            panic!("{evs:?}")
        };
        assert_eq!(user.as_str(), "u2");
        assert_eq!(emoji, &reaction_emoji("👍"));
        assert_eq!(evs.len(), 2);
        // the same state again: nothing
        assert!(diff(&hint(ChangeType::Updated), &m2, Some(&s2), &s2).is_empty());
    }
}
