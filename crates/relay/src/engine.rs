//! The pipeline: inbox → translate → outbox → deliver, each step transactional.
//!
//! - **Translate** ([`Relay::translate_batch`]): leases inbox items, turns each into the
//!   deliveries it means for every other endpoint of its universal channel (mentions mapped
//!   through the identity map, replies addressed to the target's copy of the root), and
//!   completes the item and enqueues its deliveries in one transaction. Graph change hints are
//!   resolved here, off the acknowledgement path, against the last snapshot of the message.
//! - **Deliver** ([`Relay::deliver_batch`]): leases due deliveries (the store hands out at most
//!   one per target channel, oldest first, so origin order is kept per channel), runs each
//!   through the target connection's [`Platform`](switchboard_core::Platform), records every
//!   copy with the identity that posted it, and completes; transient failures are retried with
//!   the platform's `Retry-After` or an exponential backoff, permanent ones are dead-lettered.
//!
//! Loop prevention in layers: adapters drop events of our own identities; an event about a
//! message the map records as posted by us is dropped here; every copy carries our
//! [`Marker`](crate::marker::Marker).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use switchboard_core::{
    Actor, Attachment, Block, ChannelRef, Connected, ConnectionHealth, ConnectionId,
    ConnectionSignal, Delivery, DeliveryJob, Error, ErrorKind, EventKind, Inbound, InboxItem,
    Inline, MAX_UPLOAD_BYTES, MessageCopy, MessageId, MessageRef, NewAuditEntry, NewDelivery,
    OrgId, OutgoingFile, OutgoingMessage, PlatformEvent, PortableMessage, PostingIdentity,
    ReactionChange, Result, RichText, Store, UniversalChannel, UniversalMessageId, WorkerId,
};
use time::OffsetDateTime;

use crate::marker::Marker;
use crate::translate::MentionMap;

/// Gives the relay the live objects of a connection (the server opens them through the
/// platform's [`Connector`](switchboard_core::Connector) with the stored credentials, and
/// caches them).
#[async_trait]
pub trait Connections: Send + Sync {
    /// The live objects of `connection` of `org`.
    async fn get(&self, org: &OrgId, connection: &ConnectionId) -> Result<Connected>;
}

/// Told of every connection signal the pipeline processes (after it is audited): the server
/// keeps Graph subscriptions alive with it (reauthorize, recreate and catch up).
#[async_trait]
pub trait SignalObserver: Send + Sync {
    /// `signal` arrived for `connection` of `org`. An error leaves the inbox item leased, so
    /// the signal is processed again once the lease expires.
    async fn on_signal(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
        signal: &ConnectionSignal,
    ) -> Result<()>;
}

/// Tuning of the pipeline.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Items or deliveries leased per batch.
    pub batch: usize,
    /// How long a lease lasts (a crashed worker's rows come back after it).
    pub lease: Duration,
    /// Attempts of a delivery before it is dead-lettered (transient failures only).
    pub max_attempts: u32,
    /// The first retry delay of an exponential backoff (doubling, capped at 5 minutes).
    pub base_backoff: Duration,
    /// How long a delivery waits while its connection needs re-authorization.
    pub reauth_pause: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            batch: 64,
            lease: Duration::from_secs(60),
            max_attempts: 8,
            base_backoff: Duration::from_millis(500),
            reauth_pause: Duration::from_secs(60),
        }
    }
}

/// The relay of one worker.
pub struct Relay {
    store: Arc<dyn Store>,
    connections: Arc<dyn Connections>,
    worker: WorkerId,
    config: RelayConfig,
    observer: Option<Arc<dyn SignalObserver>>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("worker", &self.worker)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// Done.
    Delivered,
    /// Released for another attempt.
    Retried {
        /// Why.
        error: String,
    },
    /// Dead-lettered.
    Failed {
        /// Why.
        error: String,
    },
}

impl Relay {
    /// A relay working as `worker`.
    pub fn new(
        store: Arc<dyn Store>,
        connections: Arc<dyn Connections>,
        worker: WorkerId,
        config: RelayConfig,
    ) -> Self {
        Relay {
            store,
            connections,
            worker,
            config,
            observer: None,
        }
    }

    /// Also tells `observer` of every connection signal.
    pub fn with_observer(mut self, observer: Arc<dyn SignalObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Translates one batch of inbox items; returns how many were processed.
    pub async fn translate_batch(&self) -> Result<usize> {
        let items = self
            .store
            .inbox_lease(&self.worker, self.config.batch, self.config.lease)
            .await?;
        let n = items.len();
        for item in &items {
            match self.translate(item).await {
                Ok(deliveries) => {
                    self.store
                        .inbox_complete(&self.worker, item.id, &deliveries)
                        .await?;
                }
                Err(e) if e.kind().is_transient() || e.kind() == ErrorKind::Storage => {
                    // Leave it leased: it comes back when the lease expires.
                    tracing::warn!(item = %item.id, error = %e, "translation failed; will retry");
                }
                Err(e) => {
                    tracing::error!(item = %item.id, error = %e, "translation refused; item dropped");
                    self.store
                        .inbox_complete(&self.worker, item.id, &[])
                        .await?;
                }
            }
        }
        if let Err(e) = crate::catchup::note_seen(self.store.as_ref(), &items).await {
            tracing::warn!(error = %e, "could not move the channels' resume points");
        }
        Ok(n)
    }

    /// Runs one batch of due deliveries; returns their outcomes.
    pub async fn deliver_batch(&self) -> Result<Vec<DeliveryOutcome>> {
        let due = self
            .store
            .outbox_lease(&self.worker, self.config.batch, self.config.lease)
            .await?;
        let mut outcomes = Vec::with_capacity(due.len());
        for d in due {
            outcomes.push(self.deliver_one(&d).await?);
        }
        Ok(outcomes)
    }

    async fn translate(&self, item: &InboxItem) -> Result<Vec<NewDelivery>> {
        match &item.item {
            Inbound::Event(event) => self.deliveries_for(&item.org, event).await,
            Inbound::Changed(hint) => {
                let live = self.connections.get(&item.org, &item.connection).await?;
                let Some(resolver) = live.resolver else {
                    return Err(Error::new(
                        ErrorKind::Unsupported,
                        "a change hint arrived for a platform without a resolver",
                    ));
                };
                let last = self
                    .store
                    .get_message_snapshot(&item.org, &hint.channel, &hint.message)
                    .await?;
                let resolved = resolver.resolve(hint, last.as_ref()).await?;
                match &resolved.snapshot {
                    Some(s) => {
                        self.store
                            .put_message_snapshot(&item.org, &hint.channel, &hint.message, s)
                            .await?
                    }
                    None => {
                        self.store
                            .delete_message_snapshot(&item.org, &hint.channel, &hint.message)
                            .await?
                    }
                }
                let mut out = Vec::new();
                for event in &resolved.events {
                    out.extend(self.deliveries_for(&item.org, event).await?);
                }
                Ok(out)
            }
            Inbound::Signal(signal) => {
                self.on_signal(&item.org, &item.connection, signal).await?;
                Ok(Vec::new())
            }
        }
    }

    async fn on_signal(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
        signal: &ConnectionSignal,
    ) -> Result<()> {
        let (action, details) = match signal {
            ConnectionSignal::GrantRevoked { reason } => {
                self.store
                    .set_connection_health(org, connection, ConnectionHealth::NeedsReauth)
                    .await?;
                (
                    "connection.grant_revoked",
                    serde_json::json!({ "reason": reason }),
                )
            }
            ConnectionSignal::ReauthorizationRequired { subscription } => (
                "subscription.reauthorization_required",
                serde_json::json!({ "subscription": subscription.as_str() }),
            ),
            ConnectionSignal::SubscriptionRemoved { subscription } => (
                "subscription.removed",
                serde_json::json!({ "subscription": subscription.as_str() }),
            ),
            ConnectionSignal::EventsDropped { since } => (
                "events.dropped",
                serde_json::json!({ "since": since.unix_timestamp() }),
            ),
        };
        self.store
            .append_audit(
                org,
                NewAuditEntry {
                    actor: Actor::System,
                    action: action.into(),
                    target: connection.to_string(),
                    details,
                },
            )
            .await?;
        if let Some(o) = &self.observer {
            o.on_signal(org, connection, signal).await?;
        }
        Ok(())
    }

    /// The universal message of `message` in `channel`, when the map knows it, and whether the
    /// platform message is one of our copies.
    async fn known(
        &self,
        org: &OrgId,
        channel: &ChannelRef,
        message: &MessageId,
    ) -> Result<Option<MessageCopy>> {
        self.store.find_message_copy(org, channel, message).await
    }

    async fn mention_map(
        &self,
        org: &OrgId,
        content: &PortableMessage,
        target: &ChannelRef,
    ) -> Result<MentionMap> {
        let mut map = MentionMap::default();
        let origin = content.sender.platform;
        for user in content.text.mentioned_users() {
            if map.users.contains_key(user) {
                continue;
            }
            let counterpart = self
                .store
                .counterpart(org, origin, user, target.platform)
                .await?;
            let name = self
                .store
                .get_user(org, origin, user)
                .await?
                .map(|u| u.user.display_name);
            map.users.insert(user.clone(), (counterpart, name));
        }
        Ok(map)
    }

    async fn translated(
        &self,
        org: &OrgId,
        content: &PortableMessage,
        target: &ChannelRef,
    ) -> Result<PortableMessage> {
        let map = self.mention_map(org, content, target).await?;
        let mut out = content.clone();
        out.text = map.apply(&content.text);
        // The sender's name from the directory when the event carried only an id.
        if out.sender.display_name.trim().is_empty()
            || out.sender.display_name == out.sender.user.as_str()
        {
            if let Some(u) = self
                .store
                .get_user(org, content.sender.platform, &content.sender.user)
                .await?
            {
                out.sender.display_name = u.user.display_name;
                if out.sender.avatar_url.is_none() {
                    out.sender.avatar_url = u.user.avatar_url;
                }
            } else {
                out.sender.display_name = "someone".into();
            }
        }
        Ok(out)
    }

    async fn target_copy(
        &self,
        org: &OrgId,
        universal: &UniversalMessageId,
        target: &ChannelRef,
    ) -> Result<Option<MessageCopy>> {
        Ok(self
            .store
            .message_copies(org, universal)
            .await?
            .into_iter()
            .find(|c| &c.channel == target && c.part == 0))
    }

    async fn deliveries_for(&self, org: &OrgId, event: &PlatformEvent) -> Result<Vec<NewDelivery>> {
        let Some(universal_channel) = self
            .store
            .find_universal_channel(org, &event.channel)
            .await?
        else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        match &event.kind {
            EventKind::Posted { message, content } => {
                let existing = self.known(org, &event.channel, message).await?;
                let universal = match existing {
                    // One of our copies coming back: an echo.
                    Some(c) if c.posted_by.is_some() => return Ok(Vec::new()),
                    // Seen before (a redelivery after a crash): same universal message.
                    Some(c) => c.universal,
                    None => {
                        let universal = UniversalMessageId::generate();
                        self.store
                            .put_message_copy(
                                org,
                                &MessageCopy {
                                    universal: universal.clone(),
                                    channel: event.channel.clone(),
                                    message: message.clone(),
                                    thread_root: content.thread_root.clone(),
                                    posted_by: None,
                                    part: 0,
                                },
                            )
                            .await?;
                        universal
                    }
                };
                let root_universal = match &content.thread_root {
                    Some(root) => self
                        .known(org, &event.channel, root)
                        .await?
                        .map(|c| c.universal),
                    None => None,
                };
                for endpoint in universal_channel.targets_for(&event.channel) {
                    let mut translated = self.translated(org, content, &endpoint.channel).await?;
                    let reply_to = match &root_universal {
                        Some(u) => self
                            .target_copy(org, u, &endpoint.channel)
                            .await?
                            .map(|c| c.message),
                        None => None,
                    };
                    if content.thread_root.is_some() && reply_to.is_none() {
                        // The root predates the link (or was never relayed): post in the
                        // channel, saying it is a reply.
                        translated.text.blocks.insert(
                            0,
                            Block::Paragraph {
                                inlines: vec![Inline::Italic {
                                    inlines: vec![Inline::Text {
                                        text: "(reply in a thread that started before the channels were linked)".into(),
                                    }],
                                }],
                            },
                        );
                    }
                    out.push(NewDelivery {
                        org: org.clone(),
                        connection: endpoint.connection.clone(),
                        target: endpoint.channel.clone(),
                        job: DeliveryJob::Post {
                            universal: universal.clone(),
                            origin: MessageRef {
                                channel: event.channel.clone(),
                                message: message.clone(),
                                thread_root: content.thread_root.clone(),
                            },
                            files: translated.attachments.clone(),
                            content: translated,
                            reply_to,
                            broadcast: false,
                            post_as: PostingIdentity::ServiceAccount,
                        },
                    });
                }
            }
            EventKind::Edited { message, content } => {
                let Some(copy) = self.known(org, &event.channel, message).await? else {
                    return Ok(Vec::new());
                };
                if copy.posted_by.is_some() {
                    return Ok(Vec::new());
                }
                for endpoint in universal_channel.targets_for(&event.channel) {
                    out.push(NewDelivery {
                        org: org.clone(),
                        connection: endpoint.connection.clone(),
                        target: endpoint.channel.clone(),
                        job: DeliveryJob::Edit {
                            universal: copy.universal.clone(),
                            content: self.translated(org, content, &endpoint.channel).await?,
                        },
                    });
                }
            }
            EventKind::Deleted { message } => {
                let Some(copy) = self.known(org, &event.channel, message).await? else {
                    return Ok(Vec::new());
                };
                if copy.posted_by.is_some() {
                    return Ok(Vec::new());
                }
                for endpoint in universal_channel.targets_for(&event.channel) {
                    out.push(NewDelivery {
                        org: org.clone(),
                        connection: endpoint.connection.clone(),
                        target: endpoint.channel.clone(),
                        job: DeliveryJob::Delete {
                            universal: copy.universal.clone(),
                        },
                    });
                }
            }
            EventKind::ReactionAdded {
                message,
                user,
                emoji,
            }
            | EventKind::ReactionRemoved {
                message,
                user,
                emoji,
            } => {
                let change = if matches!(event.kind, EventKind::ReactionAdded { .. }) {
                    ReactionChange::Add
                } else {
                    ReactionChange::Remove
                };
                // A reaction on the origin or on one of our copies: it goes to every other
                // channel of the universal message.
                let Some(copy) = self.known(org, &event.channel, message).await? else {
                    return Ok(Vec::new());
                };
                for endpoint in universal_channel.targets_for(&event.channel) {
                    out.push(NewDelivery {
                        org: org.clone(),
                        connection: endpoint.connection.clone(),
                        target: endpoint.channel.clone(),
                        job: DeliveryJob::React {
                            universal: copy.universal.clone(),
                            emoji: emoji.clone(),
                            change,
                            reactor: user.clone(),
                        },
                    });
                }
            }
            EventKind::MemberJoined { user } | EventKind::MemberLeft { user } => {
                if !universal_channel.relay_membership_notices {
                    return Ok(Vec::new());
                }
                let name = self
                    .store
                    .get_user(org, event.channel.platform, user)
                    .await?
                    .map(|u| u.user.display_name)
                    .unwrap_or_else(|| "someone".into());
                let verb = if matches!(event.kind, EventKind::MemberJoined { .. }) {
                    "joined"
                } else {
                    "left"
                };
                for endpoint in universal_channel.targets_for(&event.channel) {
                    out.push(NewDelivery {
                        org: org.clone(),
                        connection: endpoint.connection.clone(),
                        target: endpoint.channel.clone(),
                        job: DeliveryJob::Notice {
                            text: format!(
                                "{name} {verb} the channel on {}",
                                event.channel.platform
                            ),
                        },
                    });
                }
            }
        }
        Ok(out)
    }

    fn backoff(&self, attempts: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(r) = retry_after {
            return r.min(Duration::from_secs(3600));
        }
        let factor = 1u32.checked_shl(attempts.min(16)).unwrap_or(u32::MAX);
        self.config
            .base_backoff
            .saturating_mul(factor)
            .min(Duration::from_secs(300))
    }

    async fn deliver_one(&self, d: &Delivery) -> Result<DeliveryOutcome> {
        match self.run_job(d).await {
            Ok(()) => {
                self.store.outbox_complete(&self.worker, d.id).await?;
                Ok(DeliveryOutcome::Delivered)
            }
            Err(e) => {
                let error = e.to_string();
                let kind = e.kind();
                let wait = match kind {
                    ErrorKind::RateLimited { retry_after } => {
                        Some(self.backoff(d.attempts, retry_after))
                    }
                    ErrorKind::NeedsReauth => Some(self.config.reauth_pause),
                    ErrorKind::Upstream | ErrorKind::Storage
                        if d.attempts + 1 < self.config.max_attempts =>
                    {
                        Some(self.backoff(d.attempts, None))
                    }
                    _ => None,
                };
                match wait {
                    Some(wait) => {
                        let at = OffsetDateTime::now_utc() + wait;
                        self.store
                            .outbox_retry(&self.worker, d.id, at, &error)
                            .await?;
                        Ok(DeliveryOutcome::Retried { error })
                    }
                    None => {
                        tracing::error!(delivery = %d.id, target = %d.target, error = %error, "delivery failed for good; dead-lettered");
                        self.store.outbox_fail(&self.worker, d.id, &error).await?;
                        Ok(DeliveryOutcome::Failed { error })
                    }
                }
            }
        }
    }

    async fn origin_files(
        &self,
        org: &OrgId,
        universal_channel: Option<&UniversalChannel>,
        origin: &ChannelRef,
        files: &[Attachment],
    ) -> Vec<OutgoingFile> {
        let mut out = Vec::with_capacity(files.len());
        let origin_connection = universal_channel.and_then(|u| {
            u.endpoints()
                .iter()
                .find(|e| &e.channel == origin)
                .map(|e| e.connection.clone())
        });
        for a in files {
            let mut content = None;
            if let Some(conn) = &origin_connection
                && let Ok(live) = self.connections.get(org, conn).await
            {
                match live.platform.fetch_attachment(a, MAX_UPLOAD_BYTES).await {
                    Ok(c) => content = Some(c),
                    Err(e) => {
                        tracing::info!(file = %a.name, error = %e, "file not fetched; it is linked instead")
                    }
                }
            }
            out.push(OutgoingFile {
                attachment: a.clone(),
                content,
            });
        }
        out
    }

    async fn run_job(&self, d: &Delivery) -> Result<()> {
        let live = self.connections.get(&d.org, &d.connection).await?;
        match &d.job {
            DeliveryJob::Post {
                universal,
                origin,
                content,
                reply_to,
                broadcast,
                post_as,
                files,
            } => {
                // A retry after a crash or a lost answer: the copy may exist already.
                if self
                    .target_copy(&d.org, universal, &d.target)
                    .await?
                    .is_some()
                {
                    return Ok(());
                }
                if d.attempts > 0 && self.reconcile(d, universal, &live).await? {
                    return Ok(());
                }
                let uc = self.store.find_universal_channel(&d.org, &d.target).await?;
                let files = self
                    .origin_files(&d.org, uc.as_ref(), &origin.channel, files)
                    .await;
                let message = OutgoingMessage {
                    content: content.clone(),
                    reply_to: reply_to.clone(),
                    broadcast: *broadcast,
                    marker: Some(Marker::new(universal.clone(), 0).to_string()),
                    post_as: post_as.clone(),
                    files,
                };
                let posted = live.platform.post(&d.target, &message).await?;
                let parts = std::iter::once(&posted.reference).chain(posted.extra_parts.iter());
                for (i, r) in parts.enumerate() {
                    self.store
                        .put_message_copy(
                            &d.org,
                            &MessageCopy {
                                universal: universal.clone(),
                                channel: d.target.clone(),
                                message: r.message.clone(),
                                thread_root: r.thread_root.clone(),
                                posted_by: Some(posted.posted_by.clone()),
                                part: i as u32,
                            },
                        )
                        .await?;
                }
                Ok(())
            }
            DeliveryJob::Edit { universal, content } => {
                let copies = self.copies_in(&d.org, universal, &d.target).await?;
                let Some(first) = copies.first() else {
                    // Not posted (yet, or ever): nothing to edit.
                    return Ok(());
                };
                let posted_by = first
                    .posted_by
                    .clone()
                    .unwrap_or(PostingIdentity::ServiceAccount);
                let message = OutgoingMessage::new(content.clone())
                    .with_marker(Marker::new(universal.clone(), 0).to_string())
                    .posted_as(posted_by.clone());
                live.platform
                    .edit(&reference(first), &message, &posted_by)
                    .await
            }
            DeliveryJob::Delete { universal } => {
                for c in self.copies_in(&d.org, universal, &d.target).await? {
                    let by = c
                        .posted_by
                        .clone()
                        .unwrap_or(PostingIdentity::ServiceAccount);
                    live.platform.delete(&reference(&c), &by).await?;
                }
                Ok(())
            }
            DeliveryJob::React {
                universal,
                emoji,
                change,
                reactor: _,
            } => {
                // The reaction goes on the target's message of the universal message: our
                // copy there, or the origin when the reaction was made on a copy.
                let Some(target) = self
                    .store
                    .message_copies(&d.org, universal)
                    .await?
                    .into_iter()
                    .find(|c| c.channel == d.target && c.part == 0)
                else {
                    return Ok(());
                };
                live.platform
                    .react(
                        &reference(&target),
                        emoji,
                        *change,
                        &PostingIdentity::ServiceAccount,
                    )
                    .await
            }
            DeliveryJob::Notice { text } => {
                let identity = live.platform.identity().await?;
                let content = PortableMessage {
                    sender: switchboard_core::Sender {
                        platform: d.target.platform,
                        user: identity.user_id,
                        display_name: "Switchboard".into(),
                        avatar_url: None,
                        email: None,
                    },
                    text: RichText::plain(text.clone()),
                    attachments: Vec::new(),
                    thread_root: None,
                };
                live.platform
                    .post(&d.target, &OutgoingMessage::new(content))
                    .await
                    .map(|_| ())
            }
            _ => Err(Error::new(
                ErrorKind::Unsupported,
                "this delivery job is newer than this relay",
            )),
        }
    }

    /// Copies Switchboard posted of `universal` in `target`, parts in order.
    async fn copies_in(
        &self,
        org: &OrgId,
        universal: &UniversalMessageId,
        target: &ChannelRef,
    ) -> Result<Vec<MessageCopy>> {
        Ok(self
            .store
            .message_copies(org, universal)
            .await?
            .into_iter()
            .filter(|c| &c.channel == target && c.posted_by.is_some())
            .collect())
    }

    /// After a failed attempt whose outcome is unknown (a timeout, a crash mid-post), looks for
    /// our marker among the target's recent messages; records what it finds. `true` when the
    /// post had in fact gone through.
    async fn reconcile(
        &self,
        d: &Delivery,
        universal: &UniversalMessageId,
        live: &Connected,
    ) -> Result<bool> {
        let since = OffsetDateTime::now_utc() - Duration::from_secs(24 * 3600);
        let recent = match live.history.recent_messages(&d.target, since, 50).await {
            Ok(r) => r,
            Err(e) => {
                tracing::info!(target = %d.target, error = %e, "reconciliation through history unavailable; posting again");
                return Ok(false);
            }
        };
        let mut found: HashMap<u32, MessageRef> = HashMap::new();
        let mut by = PostingIdentity::ServiceAccount;
        for m in recent {
            if let Some(marker) = m.marker.as_deref().and_then(|s| s.parse::<Marker>().ok())
                && &marker.universal == universal
            {
                if let Some(p) = m.posted_by {
                    by = p;
                }
                found.insert(marker.part, m.reference);
            }
        }
        if found.is_empty() {
            return Ok(false);
        }
        let mut parts: Vec<_> = found.into_iter().collect();
        parts.sort_by_key(|(p, _)| *p);
        for (part, r) in parts {
            self.store
                .put_message_copy(
                    &d.org,
                    &MessageCopy {
                        universal: universal.clone(),
                        channel: d.target.clone(),
                        message: r.message,
                        thread_root: r.thread_root,
                        posted_by: Some(by.clone()),
                        part,
                    },
                )
                .await?;
        }
        Ok(true)
    }
}

fn reference(c: &MessageCopy) -> MessageRef {
    MessageRef {
        channel: c.channel.clone(),
        message: c.message.clone(),
        thread_root: c.thread_root.clone(),
    }
}
