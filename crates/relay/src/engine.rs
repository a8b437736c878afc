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
//! [`Marker`].

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use switchboard_core::StoredUser;
use switchboard_core::{
    Actor, Attachment, Block, ChannelRef, CombinedEntry, CombinedPost, CompletedItem, Connected,
    ConnectionHealth, ConnectionId, ConnectionSignal, Delivery, DeliveryId, DeliveryJob, Emoji,
    Error, ErrorKind, EventKind, Inbound, InboxId, InboxItem, Inline, MAX_COMBINED_ENTRIES,
    MAX_UPLOAD_BYTES, MessageCopy, MessageId, MessageRef, NewAuditEntry, NewDelivery, OrgId,
    OutgoingFile, OutgoingMessage, PlatformEvent, PlatformKind, PortableMessage, PostedMessage,
    PostingIdentity, ReactionChange, ReactionKey, Reactor, Result, RichText, Sender, Store,
    UniversalChannel, UniversalMessageId, UserId, WorkerId,
};
use time::OffsetDateTime;

use crate::limits::{DAILY_CAP_WARN_PERCENT, TargetLimits, rendered_size};
use crate::marker::Marker;
use crate::order::Reorder;
use crate::reactions::ReactionAction;
use crate::split;
use crate::translate::MentionMap;

/// Parts of a copy from this number on are the adapter's extra messages (Slack file shares,
/// links of files that could not be uploaded); text parts of a split message are below it.
pub const FILE_PART_BASE: u32 = 1_000;
/// The part number of the note that says who reacted, a reply to the copy.
pub const NOTE_PART: u32 = 1_000_000;
/// The part number of the reply that shows, under an origin message Switchboard may not edit,
/// the edit a linked user made to one of its copies.
pub const EDIT_NOTE_PART: u32 = 1_000_001;
/// Reactions placed as linked users themselves (not through the service account) are
/// recorded in the ledger under this part number plus the copy's part, apart from the count
/// the service account reacts with and from the note, so their echo is known.
pub const LINKED_REACTION_PART: u32 = 2_000_000;
/// Universal ids of Switchboard's own notices start with this (a notice that fails is never
/// reported in turn).
pub const NOTICE_PREFIX: &str = "notice-";
/// How the dead-letter reason of an edit or delete starts when a copy it would change was
/// posted by the connection's previous account (before a migration).
pub const OLD_ACCOUNT_REASON: &str = "the copy was posted by the connection's previous account";

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

/// Failed platform calls of deliveries, by target platform and kind (`rate_limited`,
/// `upstream`, `forbidden`, …), for the server's `/metrics`.
#[derive(Debug, Default)]
pub struct PlatformErrors {
    counts: std::sync::Mutex<HashMap<(PlatformKind, &'static str), u64>>,
}

impl PlatformErrors {
    fn count(&self, platform: PlatformKind, kind: &ErrorKind) {
        let label = match kind {
            ErrorKind::RateLimited { .. } => "rate_limited",
            ErrorKind::Upstream => "upstream",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::NotFound => "not_found",
            ErrorKind::NeedsReauth => "needs_reauth",
            ErrorKind::Unauthorized => "unauthorized",
            _ => "other",
        };
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        *counts.entry((platform, label)).or_default() += 1;
    }

    /// Every (platform, kind, count) so far.
    pub fn snapshot(&self) -> Vec<(PlatformKind, &'static str, u64)> {
        let mut v: Vec<_> = self
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|((p, k), n)| (*p, *k, *n))
            .collect();
        v.sort_by_key(|(p, k, _)| (p.as_str(), *k));
        v
    }
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
    /// What each target platform accepts (message size, daily cap).
    pub limits: HashMap<PlatformKind, TargetLimits>,
    /// Combine queued top-level posts into one post when a target channel's backlog (pending
    /// deliveries) is above this; `None` never combines.
    pub batch_threshold: Option<u64>,
    /// The most messages one combined post holds.
    pub batch_max: usize,
    /// Tell the sender in the origin thread when a delivery is dead-lettered.
    pub notify_dead_letters: bool,
    /// How long one target's run of deliveries may go on before the rest is given back (so
    /// a channel with a long backlog does not hold up the others of the batch).
    pub run_budget: Duration,
    /// Keep a note under each copy saying who reacted (reactions are relayed through one
    /// identity, which alone cannot say who).
    pub reaction_notes: bool,
    /// The longest a connection's events are held back once they were seen arriving out of
    /// order (see [`crate::order`]); zero never holds back.
    pub reorder_max: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            batch: 64,
            lease: Duration::from_secs(60),
            max_attempts: 8,
            base_backoff: Duration::from_millis(500),
            reauth_pause: Duration::from_secs(60),
            limits: TargetLimits::documented(),
            batch_threshold: Some(8),
            batch_max: 20,
            notify_dead_letters: true,
            run_budget: Duration::from_millis(250),
            reaction_notes: true,
            reorder_max: Duration::from_secs(1),
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
    errors: Arc<PlatformErrors>,
    reorder: Reorder,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("worker", &self.worker)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What one translated batch came to ([`Relay::translate_batch_counted`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Translated {
    /// Inbox items processed (held-back ones not counted).
    pub items: usize,
    /// Deliveries they queued.
    pub deliveries: usize,
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
            reorder: Reorder::new(config.reorder_max),
            config,
            observer: None,
            errors: Arc::default(),
        }
    }

    /// Counts failed platform calls into `errors` (shared with the server's metrics).
    pub fn with_error_counts(mut self, errors: Arc<PlatformErrors>) -> Self {
        self.errors = errors;
        self
    }

    /// Also tells `observer` of every connection signal.
    pub fn with_observer(mut self, observer: Arc<dyn SignalObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Translates one batch of inbox items; returns how many were processed. Each channel's
    /// events go oldest first by the platform's time, and on a connection seen delivering
    /// out of order new events are given back to wait for late ones ([`crate::order`]; not
    /// counted). The batch is completed in one transaction (origin copies, processed marks,
    /// deliveries); if that fails, item by item.
    pub async fn translate_batch(&self) -> Result<usize> {
        Ok(self.translate_batch_counted().await?.items)
    }

    /// [`Relay::translate_batch`], also saying how many deliveries the batch queued (a batch
    /// of nothing but our own copies' notifications queues none).
    pub async fn translate_batch_counted(&self) -> Result<Translated> {
        let leased = self
            .store
            .inbox_lease(&self.worker, self.config.batch, self.config.lease)
            .await?;
        let plan = self.reorder.plan(&leased);
        for (delay, ids) in &plan.defer {
            self.store.inbox_defer(&self.worker, ids, *delay).await?;
            self.reorder
                .deferred_until(std::time::Instant::now() + *delay);
        }
        let items: Vec<&InboxItem> = plan.translate.iter().map(|&i| &leased[i]).collect();
        let n = items.len();
        let b = Batch::default();
        if let Err(e) = b.prefetch(self.store.as_ref(), &items).await {
            // Each item then looks its messages up itself.
            tracing::warn!(error = %e, "could not look up the batch's messages at once");
        }
        let mut done: Vec<CompletedItem> = Vec::with_capacity(n);
        let mut orgs: Vec<&OrgId> = Vec::with_capacity(n);
        // Channels where an item failed for now: it is given back to be retried after a
        // while, and their later items with it (unprocessed, for the same while), so they
        // come back together and in order.
        let mut stopped: Vec<((&OrgId, &ChannelRef), Duration)> = Vec::new();
        let mut retry: Vec<(InboxId, Duration)> = Vec::new();
        let mut behind: Vec<(InboxId, Duration)> = Vec::new();
        for &item in &items {
            let channel = item.item.channel().map(|c| (&item.org, c));
            if let Some(&(_, delay)) = channel.and_then(|c| stopped.iter().find(|s| s.0 == c)) {
                behind.push((item.id, delay));
                continue;
            }
            match self.translate(item, &b).await {
                Ok(deliveries) => {
                    self.reorder.translated(item, !deliveries.is_empty());
                    orgs.push(&item.org);
                    done.push(CompletedItem {
                        id: item.id,
                        copies: b.take_new(),
                        deliveries,
                    })
                }
                Err(e) if e.kind().is_transient() || e.kind() == ErrorKind::Storage => {
                    b.forget_new();
                    let delay = retry_delay(item.attempts, e.retry_after(), self.config.lease);
                    tracing::warn!(item = %item.id, error = %e, retry_in = ?delay, "translation failed; will retry");
                    retry.push((item.id, delay));
                    stopped.extend(channel.map(|c| (c, delay)));
                }
                Err(e) => {
                    b.forget_new();
                    tracing::error!(item = %item.id, error = %e, "translation refused; item dropped");
                    self.reorder.translated(item, false);
                    orgs.push(&item.org);
                    done.push(CompletedItem {
                        id: item.id,
                        copies: Vec::new(),
                        deliveries: Vec::new(),
                    });
                }
            }
        }
        let queued = done.iter().map(|c| c.deliveries.len()).sum();
        if let Err(e) = self.store.inbox_complete_batch(&self.worker, &done).await {
            tracing::warn!(error = %e, "completing the batch at once failed; completing item by item");
            for (c, org) in done.iter().zip(&orgs) {
                let one = async {
                    for copy in &c.copies {
                        self.store.put_message_copy(org, copy).await?;
                    }
                    self.store
                        .inbox_complete(&self.worker, c.id, &c.deliveries)
                        .await
                }
                .await;
                if let Err(e) = one {
                    tracing::warn!(item = %c.id, error = %e, "completing the item failed; it comes back after its lease");
                }
            }
        }
        // Given back after the batch's completion (a failed give-back leaves them leased:
        // they come back when the lease runs out, as after a crash).
        for (ids, delay) in by_delay(&retry) {
            if let Err(e) = self.store.inbox_retry(&self.worker, &ids, delay).await {
                tracing::warn!(error = %e, "could not give back failed items; they come back after their lease");
            }
        }
        for (ids, delay) in by_delay(&behind) {
            if let Err(e) = self.store.inbox_defer(&self.worker, &ids, delay).await {
                tracing::warn!(error = %e, "could not give back held items; they come back after their lease");
            }
        }
        if let Err(e) = crate::catchup::note_seen(self.store.as_ref(), items.iter().copied()).await
        {
            tracing::warn!(error = %e, "could not move the channels' resume points");
        }
        Ok(Translated {
            items: n,
            deliveries: queued,
        })
    }

    /// When an event this worker held back becomes due (its translating loop should wake
    /// then rather than sleep longer).
    pub fn next_held(&self) -> Option<std::time::Instant> {
        self.reorder.next_due()
    }

    /// Runs one batch of due deliveries; returns their outcomes.
    pub async fn deliver_batch(&self) -> Result<Vec<DeliveryOutcome>> {
        let due = self
            .store
            .outbox_lease(&self.worker, self.config.batch, self.config.lease)
            .await?;
        // One delivery per target channel: they run concurrently, so a channel waiting on its
        // platform's pacer does not hold up the others (fair across channels).
        let results = futures::future::join_all(due.iter().map(|d| self.deliver_target(d))).await;
        let mut outcomes = Vec::with_capacity(due.len());
        for r in results {
            outcomes.extend(r?);
        }
        Ok(outcomes)
    }

    async fn translate(&self, item: &InboxItem, b: &Batch) -> Result<Vec<NewDelivery>> {
        match &item.item {
            Inbound::Event(event) => self.deliveries_for(&item.org, event, b).await,
            Inbound::Changed(hint) => {
                // The creation of one of our own copies: nothing to relay, and fetching it
                // would spend a request of the channel's 4 per second (Teams counts every
                // call on a channel). Later changes of a copy (a reaction, a linked user's
                // own edit) are fetched as usual.
                if hint.change == switchboard_core::ChangeType::Created
                    && let Some(copy) = self
                        .known(&item.org, &hint.channel, &hint.message, b)
                        .await?
                    && copy.posted_by.is_some()
                {
                    return Ok(Vec::new());
                }
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
                    out.extend(self.deliveries_for(&item.org, event, b).await?);
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
        b: &Batch,
    ) -> Result<Option<MessageCopy>> {
        if let Some(c) = b.copy(channel, message) {
            return Ok(Some(c));
        }
        if let Some(known) = b.prefetched(org, channel, message) {
            return Ok(known);
        }
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
        b: &Batch,
    ) -> Result<PortableMessage> {
        let map = self.mention_map(org, content, target).await?;
        let mut out = content.clone();
        out.text = map.apply(&content.text);
        // The sender's name from the directory when the event carried only an id.
        if out.sender.display_name.trim().is_empty()
            || out.sender.display_name == out.sender.user.as_str()
        {
            if let Some(u) = b
                .user(
                    self.store.as_ref(),
                    org,
                    content.sender.platform,
                    &content.sender.user,
                )
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

    /// Who a copy of `sender`'s message is posted as on a `target` platform channel: the
    /// sender's matched user there (the identity map; the same user on the same platform)
    /// when that user linked their own account on the target platform, so it appears as
    /// them; else the service account (with the sender's name; such posts may be combined
    /// under backlog). Should the live connection lack the token after all (an unlink
    /// racing the post), the adapter falls back to the service account and says so in
    /// `posted_by`.
    async fn posting_identity(
        &self,
        org: &OrgId,
        platform: PlatformKind,
        user: &UserId,
        target: PlatformKind,
    ) -> Result<PostingIdentity> {
        let user = if platform == target {
            Some(user.clone())
        } else {
            self.store.counterpart(org, platform, user, target).await?
        };
        Ok(match user {
            Some(user) if self.store.has_linked_account(org, target, &user).await? => {
                PostingIdentity::LinkedUser { user }
            }
            _ => PostingIdentity::ServiceAccount,
        })
    }

    /// Whether an edit notification of our copy `message` (posted as `by`) is the linked
    /// user's own edit: the copy was posted as that user, the edit is theirs, and it says
    /// something other than what Switchboard last wrote to it (our own writes come back as
    /// notifications too).
    async fn is_linked_users_edit(
        &self,
        org: &OrgId,
        channel: &ChannelRef,
        message: &MessageId,
        by: &PostingIdentity,
        content: &PortableMessage,
    ) -> Result<bool> {
        let PostingIdentity::LinkedUser { user } = by else {
            return Ok(false);
        };
        if content.sender.platform != channel.platform || &content.sender.user != user {
            return Ok(false);
        }
        let written = self
            .store
            .written_fingerprint(org, channel, message)
            .await?;
        Ok(written.as_deref() != Some(content_fingerprint(&content.text).as_str()))
    }

    /// A linked user's edit, made on one of our copies, reaching the channel of the origin
    /// message (a person's own message on its platform). It is edited as its author when
    /// they linked their own account there (Teams lets the sender edit), else tried as the
    /// service account. When the platform refuses (`Forbidden`: Slack lets only a message's
    /// author edit it, `cant_update_message`; Teams only the sender), the origin keeps its
    /// text and the edit is shown as a reply under it ("Edited in Microsoft Teams: …"),
    /// rewritten by later edits (`EDIT_NOTE_PART`). Nothing here when the message has no
    /// origin in this channel.
    async fn edit_origin(
        &self,
        d: &Delivery,
        live: &Connected,
        universal: &UniversalMessageId,
        content: &PortableMessage,
    ) -> Result<()> {
        let all = self.store.message_copies(&d.org, universal).await?;
        let Some(origin) = all
            .iter()
            .find(|c| c.channel == d.target && c.posted_by.is_none())
        else {
            return Ok(());
        };
        let by = self
            .posting_identity(
                &d.org,
                content.sender.platform,
                &content.sender.user,
                d.target.platform,
            )
            .await?;
        let edit = OutgoingMessage::new(content.clone()).posted_as(by.clone());
        match live.platform.edit(&reference(origin), &edit, &by).await {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Forbidden => {
                tracing::info!(
                    target = %d.target,
                    message = %origin.message,
                    error = %e,
                    "the origin cannot be edited by Switchboard; the edit is shown as a reply under it"
                );
            }
            Err(e) => return Err(e),
        }
        let mut note = content.clone();
        note.thread_root = None;
        note.text.blocks.insert(
            0,
            Block::Paragraph {
                inlines: vec![Inline::Italic {
                    inlines: vec![Inline::Text {
                        text: format!("Edited in {}:", content.sender.platform.display_name()),
                    }],
                }],
            },
        );
        let marker = Marker::new(universal.clone(), EDIT_NOTE_PART).to_string();
        match all
            .iter()
            .find(|c| c.channel == d.target && c.part == EDIT_NOTE_PART)
        {
            Some(existing) => {
                let by = existing
                    .posted_by
                    .clone()
                    .unwrap_or(PostingIdentity::ServiceAccount);
                let message = OutgoingMessage::new(note)
                    .with_marker(marker)
                    .posted_as(by.clone());
                live.platform
                    .edit(&reference(existing), &message, &by)
                    .await
            }
            None => {
                let root = origin.thread_root.clone().unwrap_or(origin.message.clone());
                let message = OutgoingMessage::new(note)
                    .with_marker(marker)
                    .in_thread(root);
                let posted = live.platform.post(&d.target, &message).await?;
                self.record_parts(live, &d.org, &d.target, universal, EDIT_NOTE_PART, &posted)
                    .await?;
                self.count_daily(&d.org, &d.target, 1).await
            }
        }
    }

    /// Remembers what we write to a copy posted as a linked user (see
    /// [`content_fingerprint`]), before the write, so its echo is known.
    async fn remember_written(
        &self,
        org: &OrgId,
        copy: &MessageRef,
        by: &PostingIdentity,
        text: &RichText,
    ) -> Result<()> {
        if !matches!(by, PostingIdentity::LinkedUser { .. }) {
            return Ok(());
        }
        self.store
            .set_written_fingerprint(
                org,
                &copy.channel,
                &copy.message,
                &content_fingerprint(text),
            )
            .await
    }

    async fn target_copy(
        &self,
        org: &OrgId,
        universal: &UniversalMessageId,
        target: &ChannelRef,
    ) -> Result<Option<MessageCopy>> {
        self.reaction_target(org, universal, target).await
    }

    async fn deliveries_for(
        &self,
        org: &OrgId,
        event: &PlatformEvent,
        b: &Batch,
    ) -> Result<Vec<NewDelivery>> {
        let Some(universal_channel) = b
            .universal_channel(self.store.as_ref(), org, &event.channel)
            .await?
        else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        match &event.kind {
            EventKind::Posted { message, content } => {
                let existing = self.known(org, &event.channel, message, b).await?;
                let universal = match existing {
                    // One of our copies coming back: an echo.
                    Some(c) if c.posted_by.is_some() => return Ok(Vec::new()),
                    // Seen before (a redelivery after a crash): same universal message.
                    Some(c) => c.universal,
                    None => {
                        // Recorded with the batch's completion, in the same transaction.
                        let universal = UniversalMessageId::generate();
                        b.record(MessageCopy {
                            universal: universal.clone(),
                            channel: event.channel.clone(),
                            message: message.clone(),
                            thread_root: content.thread_root.clone(),
                            posted_by: None,
                            posted_by_account: None,
                            part: 0,
                        });
                        universal
                    }
                };
                let root_universal = match &content.thread_root {
                    Some(root) => self
                        .known(org, &event.channel, root, b)
                        .await?
                        .map(|c| c.universal),
                    None => None,
                };
                for endpoint in universal_channel.targets_for(&event.channel) {
                    let key = (
                        org.clone(),
                        content.sender.platform,
                        content.sender.user.clone(),
                        endpoint.channel.platform,
                    );
                    let memo = b
                        .identities
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get(&key)
                        .cloned();
                    let post_as = match memo {
                        Some(p) => p,
                        None => {
                            let p = self
                                .posting_identity(
                                    org,
                                    content.sender.platform,
                                    &content.sender.user,
                                    endpoint.channel.platform,
                                )
                                .await?;
                            b.identities
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .insert(key, p.clone());
                            p
                        }
                    };
                    let mut translated =
                        self.translated(org, content, &endpoint.channel, b).await?;
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
                            post_as,
                        },
                    });
                }
            }
            EventKind::Edited { message, content } => {
                let Some(copy) = self.known(org, &event.channel, message, b).await? else {
                    return Ok(Vec::new());
                };
                if let Some(by) = &copy.posted_by {
                    // One of our copies changed: the echo of our own write, unless the linked
                    // user it was posted as edited it (with other content than we last wrote):
                    // an edit of the universal message, relayed everywhere else, the origin
                    // included (see `edit_origin`).
                    if !self
                        .is_linked_users_edit(org, &event.channel, message, by, content)
                        .await?
                    {
                        return Ok(Vec::new());
                    }
                }
                for endpoint in universal_channel.targets_for(&event.channel) {
                    out.push(NewDelivery {
                        org: org.clone(),
                        connection: endpoint.connection.clone(),
                        target: endpoint.channel.clone(),
                        job: DeliveryJob::Edit {
                            universal: copy.universal.clone(),
                            content: self.translated(org, content, &endpoint.channel, b).await?,
                        },
                    });
                }
            }
            EventKind::Deleted { message } => {
                let Some(copy) = self.known(org, &event.channel, message, b).await? else {
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
                // What we posted next to the origin itself (the "Edited in …" reply under
                // it, when its platform refused a linked user's edit) goes with it.
                if !self
                    .copies_in(org, &copy.universal, &event.channel)
                    .await?
                    .is_empty()
                    && let Some(origin) = universal_channel
                        .endpoints()
                        .iter()
                        .find(|e| e.channel == event.channel)
                {
                    out.push(NewDelivery {
                        org: org.clone(),
                        connection: origin.connection.clone(),
                        target: origin.channel.clone(),
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
                let Some(copy) = self.known(org, &event.channel, message, b).await? else {
                    return Ok(Vec::new());
                };
                // A reaction we placed on our copy as the linked user themselves, coming back.
                if change == ReactionChange::Add
                    && copy.posted_by.is_some()
                    && self
                        .store
                        .reactions_on(
                            org,
                            &copy.universal,
                            &event.channel,
                            LINKED_REACTION_PART + copy.part,
                        )
                        .await?
                        .iter()
                        .any(|(e, who)| {
                            e == emoji
                                && who.iter().any(|r| {
                                    r.platform == event.channel.platform && &r.user == user
                                })
                        })
                {
                    return Ok(Vec::new());
                }
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

    fn limits_for(&self, target: &ChannelRef) -> TargetLimits {
        self.config
            .limits
            .get(&target.platform)
            .copied()
            .unwrap_or_default()
    }

    /// The leased delivery of one target and the run queued behind it: delivered in order
    /// (one lease for the run, fewer round trips), the run's top-level posts combined into one
    /// post when the backlog is past the threshold. A run is cut after
    /// [`RelayConfig::run_budget`], so one busy channel does not hold up the others.
    async fn deliver_target(&self, d: &Delivery) -> Result<Vec<DeliveryOutcome>> {
        if self.config.batch <= 1 {
            return Ok(vec![self.deliver_one(d).await?]);
        }
        let max = self.config.batch.min(MAX_COMBINED_ENTRIES) - 1;
        let run = self
            .store
            .outbox_lease_following(&self.worker, d.id, max, self.config.lease)
            .await?;
        self.deliver_run(d, run).await
    }

    /// `head` and the run leased behind it, in order: while more than the threshold is
    /// waiting, each stretch of combinable top-level posts goes as one post; the rest one by
    /// one. What is left is given back at the first delivery that does not go through (so
    /// order is kept) or when the run's time is up.
    async fn deliver_run(
        &self,
        head: &Delivery,
        run: Vec<Delivery>,
    ) -> Result<Vec<DeliveryOutcome>> {
        let started = std::time::Instant::now();
        let budget = self.limits_for(&head.target).part_budget();
        let all: Vec<&Delivery> = std::iter::once(head).chain(run.iter()).collect();
        let mut outcomes = Vec::with_capacity(all.len());
        let mut i = 0;
        while i < all.len() {
            if i > 0 && started.elapsed() > self.config.run_budget {
                let ids: Vec<DeliveryId> = all[i..].iter().map(|r| r.id).collect();
                self.store.outbox_release(&self.worker, &ids).await?;
                break;
            }
            let waiting = (all.len() - i) as u64;
            let combine = self.config.batch_max > 1
                && self.config.batch_threshold.is_some_and(|t| waiting > t);
            let mut group: Vec<&Delivery> = vec![all[i]];
            if combine && let Some(c) = combinable(all[i]) {
                let mut size = rendered_size(&c.text) + 64;
                for r in all[i + 1..].iter().take(self.config.batch_max - 1) {
                    let Some(c) = combinable(r) else { break };
                    let more = rendered_size(&c.text) + 64;
                    if r.connection != all[i].connection || size + more > budget {
                        break;
                    }
                    size += more;
                    group.push(r);
                }
            }
            let done = if group.len() == 1 {
                vec![self.deliver_one(all[i]).await?]
            } else {
                self.deliver_combined(&group).await?
            };
            i += group.len();
            let blocked = done.iter().any(|o| *o != DeliveryOutcome::Delivered);
            outcomes.extend(done);
            if blocked {
                let ids: Vec<DeliveryId> = all[i..].iter().map(|r| r.id).collect();
                self.store.outbox_release(&self.worker, &ids).await?;
                break;
            }
        }
        Ok(outcomes)
    }

    /// Posts `group` (first attempts of top-level posts without files, in order) as one
    /// message that keeps every sender's name, and maps every origin to it.
    async fn deliver_combined(&self, group: &[&Delivery]) -> Result<Vec<DeliveryOutcome>> {
        // A message already posted here (a platform's redelivery of an event the catch-up
        // replayed first, say) is not posted again, alone or combined. One lookup for the
        // whole group (one organization and target, as leased).
        let head = group[0];
        let universals: Vec<UniversalMessageId> = group
            .iter()
            .filter_map(|d| match &d.job {
                DeliveryJob::Post { universal, .. } => Some(universal.clone()),
                _ => None,
            })
            .collect();
        let already = self
            .store
            .posted_in(&head.org, &head.target, &universals)
            .await?;
        // The same message can also be queued twice: a catch-up replays posts whose live
        // events were still queued (it leaves out only those the map knows), and both
        // become deliveries. The first one posts it; the others have nothing left to do.
        let mut fresh: Vec<&Delivery> = Vec::with_capacity(group.len());
        let mut done: Vec<DeliveryId> = Vec::new();
        let mut seen: HashSet<&UniversalMessageId> = HashSet::with_capacity(group.len());
        for d in group {
            let posted = match &d.job {
                DeliveryJob::Post { universal, .. } => {
                    already.contains(universal) || !seen.insert(universal)
                }
                _ => false,
            };
            if posted {
                done.push(d.id);
            } else {
                fresh.push(d);
            }
        }
        if !done.is_empty() {
            self.store.outbox_complete_many(&self.worker, &done).await?;
        }
        let mut outcomes = vec![DeliveryOutcome::Delivered; done.len()];
        match fresh.len() {
            0 => return Ok(outcomes),
            1 => {
                outcomes.push(self.deliver_one(fresh[0]).await?);
                return Ok(outcomes);
            }
            _ => {}
        }
        outcomes.extend(self.post_combined(&fresh).await?);
        Ok(outcomes)
    }

    async fn post_combined(&self, group: &[&Delivery]) -> Result<Vec<DeliveryOutcome>> {
        let head = group[0];
        let mut entries = Vec::with_capacity(group.len());
        let mut contents = Vec::with_capacity(group.len());
        for d in group {
            if let DeliveryJob::Post {
                universal, content, ..
            } = &d.job
            {
                entries.push(CombinedEntry {
                    universal: universal.clone(),
                    content: Some(content.clone()),
                });
                contents.push(content.clone());
            }
        }
        let first = entries[0].universal.clone();
        let result = async {
            let live = self.connections.get(&head.org, &head.connection).await?;
            let message = OutgoingMessage::new(combined_content(&contents))
                .with_marker(combined_marker(group));
            let posted = live.platform.post(&head.target, &message).await?;
            self.record_parts(&live, &head.org, &head.target, &first, 0, &posted)
                .await?;
            self.store
                .put_combined_post(
                    &head.org,
                    &CombinedPost {
                        channel: head.target.clone(),
                        message: posted.reference.message.clone(),
                        entries,
                    },
                )
                .await?;
            self.count_daily(&head.org, &head.target, 1 + posted.extra_parts.len() as u64)
                .await
        }
        .await;
        match result {
            Ok(()) => {
                let ids: Vec<DeliveryId> = group.iter().map(|d| d.id).collect();
                self.store.outbox_complete_many(&self.worker, &ids).await?;
                tracing::debug!(target = %head.target, messages = group.len(), "backlog combined into one post");
                Ok(vec![DeliveryOutcome::Delivered; group.len()])
            }
            Err(e) => {
                let (kind, error) = (e.kind(), e.to_string());
                let mut out = Vec::with_capacity(group.len());
                for d in group {
                    out.push(self.failed(d, kind, error.clone()).await?);
                }
                Ok(out)
            }
        }
    }

    async fn deliver_one(&self, d: &Delivery) -> Result<DeliveryOutcome> {
        let result = match self.posted_by_another_account(d).await {
            // Only the account that posted a copy may change it: reported, never attempted.
            Ok(Some(reason)) => return self.dead_letter(d, reason).await,
            Ok(None) => self.run_job(d).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                self.store.outbox_complete(&self.worker, d.id).await?;
                Ok(DeliveryOutcome::Delivered)
            }
            Err(e) => self.failed(d, e.kind(), e.to_string()).await,
        }
    }

    /// For an edit or a delete: why it cannot be applied when a copy it would change was
    /// posted by an account other than the target connection's current one (the connection
    /// was migrated since). Teams lets only a message's sender edit or delete it, and Slack a
    /// bot only its own messages, so such a copy stays as it was and the job is reported.
    async fn posted_by_another_account(&self, d: &Delivery) -> Result<Option<String>> {
        let (universal, verb) = match &d.job {
            DeliveryJob::Edit { universal, .. } => (universal, "edit"),
            DeliveryJob::Delete { universal } => (universal, "delete"),
            _ => return Ok(None),
        };
        let mut copies = self.copies_in(&d.org, universal, &d.target).await?;
        if let Some(post) = self
            .store
            .find_combined_post(&d.org, universal, &d.target)
            .await?
            && let Some(c) = self
                .store
                .find_message_copy(&d.org, &post.channel, &post.message)
                .await?
        {
            copies.push(c);
        }
        let accounts: BTreeSet<&UserId> = copies
            .iter()
            .filter(|c| c.posted_by == Some(PostingIdentity::ServiceAccount))
            .filter_map(|c| c.posted_by_account.as_ref())
            .collect();
        if accounts.is_empty() {
            return Ok(None);
        }
        let live = self.connections.get(&d.org, &d.connection).await?;
        let current = live.platform.identity().await?;
        let Some(old) = accounts.into_iter().find(|a| **a != current.user_id) else {
            return Ok(None);
        };
        let old_name = match self.store.get_user(&d.org, d.target.platform, old).await? {
            Some(u) => format!("{}, {old}", u.user.display_name),
            None => old.to_string(),
        };
        let rule = match d.target.platform {
            PlatformKind::Slack => "Slack lets a bot edit or delete only its own messages",
            _ => "Microsoft Teams lets only the sender edit or delete a message",
        };
        Ok(Some(format!(
            "{OLD_ACCOUNT_REASON} ({old_name}) before the connection was migrated to {}: {rule}, \
             so Switchboard cannot {verb} that copy and it stays as it was",
            current.display_name
        )))
    }

    /// Dead-letters `d` for good with `error`, and tells the sender.
    async fn dead_letter(&self, d: &Delivery, error: String) -> Result<DeliveryOutcome> {
        tracing::error!(delivery = %d.id, target = %d.target, error = %error, "delivery failed for good; dead-lettered");
        self.store.outbox_fail(&self.worker, d.id, &error).await?;
        if self.config.notify_dead_letters
            && let Err(e) = self.notify_sender(d, &error).await
        {
            tracing::warn!(delivery = %d.id, error = %e, "could not tell the sender of a dead letter");
        }
        Ok(DeliveryOutcome::Failed { error })
    }

    /// A failed attempt: retried when transient, else dead-lettered (and the sender told).
    async fn failed(
        &self,
        d: &Delivery,
        kind: ErrorKind,
        error: String,
    ) -> Result<DeliveryOutcome> {
        self.errors.count(d.target.platform, &kind);
        // Refused because the service account is no longer in the team or channel (someone
        // removed it): add it back, audit that, and try again at once.
        if matches!(kind, ErrorKind::Forbidden | ErrorKind::NotFound)
            && d.attempts < 2
            && self.rejoined(d).await
        {
            self.store
                .outbox_retry(&self.worker, d.id, OffsetDateTime::now_utc(), &error)
                .await?;
            return Ok(DeliveryOutcome::Retried { error });
        }
        let wait = match kind {
            ErrorKind::RateLimited { retry_after } => Some(self.backoff(d.attempts, retry_after)),
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
            None => self.dead_letter(d, error).await,
        }
    }

    /// Whether the target connection's account was missing from the target's team or
    /// channel and has just been added back (audited).
    async fn rejoined(&self, d: &Delivery) -> bool {
        let Ok(live) = self.connections.get(&d.org, &d.connection).await else {
            return false;
        };
        match live.account.ensure_membership(&d.target).await {
            Ok(switchboard_core::MembershipOutcome::Added) => {
                tracing::warn!(target = %d.target, "the service account had been removed; added it back");
                let entry = NewAuditEntry {
                    actor: Actor::System,
                    action: "service_account.readded".into(),
                    target: d.target.to_string(),
                    details: serde_json::json!({ "connection": d.connection.as_str() }),
                };
                if let Err(e) = self.store.append_audit(&d.org, entry).await {
                    tracing::warn!(error = %e, "could not audit the re-added service account");
                }
                true
            }
            Ok(_) => false,
            Err(e) => {
                tracing::info!(target = %d.target, error = %e, "could not check the service account's membership");
                false
            }
        }
    }

    /// Tells the sender, in the origin thread, that `d` was dead-lettered: a notice posted
    /// back to the origin channel as a reply to the origin message. Notices themselves are
    /// never reported (no loop).
    async fn notify_sender(&self, d: &Delivery, error: &str) -> Result<()> {
        let (universal, what) = match &d.job {
            DeliveryJob::Post { universal, .. } => (universal, "this message"),
            DeliveryJob::Edit { universal, .. } => (universal, "an edit of this message"),
            DeliveryJob::Delete { universal } => (universal, "the deletion of this message"),
            _ => return Ok(()),
        };
        if universal.as_str().starts_with(NOTICE_PREFIX) {
            return Ok(());
        }
        let origin = match &d.job {
            DeliveryJob::Post { origin, .. } => Some(origin.clone()),
            _ => self
                .store
                .message_copies(&d.org, universal)
                .await?
                .into_iter()
                .find(|c| c.posted_by.is_none())
                .map(|c| reference(&c)),
        };
        let Some(origin) = origin else {
            return Ok(());
        };
        let Some(uc) = self
            .store
            .find_universal_channel(&d.org, &origin.channel)
            .await?
        else {
            return Ok(());
        };
        let Some(endpoint) = uc.endpoints().iter().find(|e| e.channel == origin.channel) else {
            return Ok(());
        };
        let Some(connection) = self
            .store
            .get_connection(&d.org, &endpoint.connection)
            .await?
        else {
            return Ok(());
        };
        let target_name = match self.store.get_channel(&d.org, &d.target).await? {
            Some(c) => format!("#{} on {}", c.channel.name, d.target.platform),
            None => d.target.to_string(),
        };
        let mut reason: String = error.chars().take(300).collect();
        if reason.len() < error.len() {
            reason.push('…');
        }
        let text = format!(
            "Switchboard could not deliver {what} to {target_name}: {reason}. An administrator can retry it on the Deliveries page."
        );
        let notice = NewDelivery {
            org: d.org.clone(),
            connection: endpoint.connection.clone(),
            target: origin.channel.clone(),
            job: DeliveryJob::Post {
                universal: UniversalMessageId::new(format!("{NOTICE_PREFIX}dl-{}", d.id))?,
                content: PortableMessage {
                    sender: Sender {
                        platform: origin.channel.platform,
                        user: connection.account.user_id,
                        display_name: "Switchboard".into(),
                        avatar_url: None,
                        email: None,
                    },
                    text: RichText::plain(text),
                    attachments: Vec::new(),
                    thread_root: None,
                },
                reply_to: Some(origin.thread_root.clone().unwrap_or(origin.message.clone())),
                origin,
                broadcast: false,
                post_as: PostingIdentity::ServiceAccount,
                files: Vec::new(),
            },
        };
        self.store.outbox_enqueue(&[notice]).await
    }

    /// Counts `messages` posted into `target` today; at 90 % of the platform's daily cap the
    /// admin is told through the audit log (once a day per channel).
    async fn count_daily(&self, org: &OrgId, target: &ChannelRef, messages: u64) -> Result<()> {
        let Some(cap) = self.limits_for(target).daily_cap else {
            return Ok(());
        };
        let today = OffsetDateTime::now_utc().date();
        let total = self
            .store
            .count_posted(org, target, today, messages)
            .await?;
        let warn_at = cap * DAILY_CAP_WARN_PERCENT / 100;
        if total >= warn_at && total.saturating_sub(messages) < warn_at {
            tracing::warn!(channel = %target, posted = total, cap, "a channel is near its daily message cap");
            self.store
                .append_audit(
                    org,
                    NewAuditEntry {
                        actor: Actor::System,
                        action: "channel.daily_cap_near".into(),
                        target: target.to_string(),
                        details: serde_json::json!({
                            "posted": total,
                            "cap": cap,
                            "day": today.to_string(),
                        }),
                    },
                )
                .await?;
        }
        Ok(())
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

    /// Records what one post made: `posted.reference` as part `part`, the adapter's extra
    /// parts (file shares) after [`FILE_PART_BASE`].
    async fn record_parts(
        &self,
        live: &Connected,
        org: &OrgId,
        target: &ChannelRef,
        universal: &UniversalMessageId,
        part: u32,
        posted: &PostedMessage,
    ) -> Result<()> {
        let extra_base = FILE_PART_BASE;
        let account = posting_account(live, &posted.posted_by).await;
        let parts = std::iter::once((part, &posted.reference)).chain(
            posted
                .extra_parts
                .iter()
                .enumerate()
                .map(|(j, r)| (extra_base + j as u32, r)),
        );
        for (p, r) in parts {
            self.store
                .put_message_copy(
                    org,
                    &MessageCopy {
                        universal: universal.clone(),
                        channel: target.clone(),
                        message: r.message.clone(),
                        thread_root: r.thread_root.clone(),
                        posted_by: Some(posted.posted_by.clone()),
                        posted_by_account: account.clone(),
                        part: p,
                    },
                )
                .await?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_post(
        &self,
        d: &Delivery,
        live: &Connected,
        universal: &UniversalMessageId,
        origin: &MessageRef,
        content: &PortableMessage,
        reply_to: &Option<MessageId>,
        broadcast: bool,
        post_as: &PostingIdentity,
        files: &[Attachment],
    ) -> Result<()> {
        // Posted already inside a combined post (a platform's redelivery of an event the
        // catch-up replayed first, say): nothing to do.
        if self
            .store
            .find_combined_post(&d.org, universal, &d.target)
            .await?
            .is_some()
        {
            return Ok(());
        }
        let limits = self.limits_for(&d.target);
        let texts = split_text(&content.text, limits);
        let n = texts.len() as u32;
        let mut have: BTreeSet<u32> = self
            .copies_in(&d.org, universal, &d.target)
            .await?
            .iter()
            .map(|c| c.part)
            .collect();
        // A retry after a crash or a lost answer: the copy may exist already.
        if have.is_empty() && d.attempts > 0 && self.reconcile(d, universal, live).await? {
            have = self
                .copies_in(&d.org, universal, &d.target)
                .await?
                .iter()
                .map(|c| c.part)
                .collect();
        }
        if (0..n).all(|k| have.contains(&k)) {
            return Ok(());
        }
        let mut files = if have.contains(&(n - 1)) || files.is_empty() {
            Vec::new()
        } else {
            let uc = self.store.find_universal_channel(&d.org, &d.target).await?;
            self.origin_files(&d.org, uc.as_ref(), &origin.channel, files)
                .await
        };
        let mut posted_count = 0u64;
        for (k, text) in texts.iter().enumerate() {
            let k = k as u32;
            if have.contains(&k) {
                continue;
            }
            let message = OutgoingMessage {
                content: part_content(content, text, k, n),
                reply_to: reply_to.clone(),
                broadcast: broadcast && k == 0,
                marker: Some(Marker::new(universal.clone(), k).to_string()),
                post_as: post_as.clone(),
                files: if k + 1 == n {
                    std::mem::take(&mut files)
                } else {
                    Vec::new()
                },
            };
            let posted = live.platform.post(&d.target, &message).await;
            let posted = match posted {
                Ok(p) => p,
                Err(e) => {
                    if posted_count > 0 {
                        self.count_daily(&d.org, &d.target, posted_count).await?;
                    }
                    return Err(e);
                }
            };
            self.record_parts(live, &d.org, &d.target, universal, k, &posted)
                .await?;
            self.remember_written(
                &d.org,
                &posted.reference,
                &posted.posted_by,
                &message.content.text,
            )
            .await?;
            posted_count += 1 + posted.extra_parts.len() as u64;
        }
        self.count_daily(&d.org, &d.target, posted_count).await
    }

    async fn run_edit(
        &self,
        d: &Delivery,
        live: &Connected,
        universal: &UniversalMessageId,
        content: &PortableMessage,
    ) -> Result<()> {
        if self
            .store
            .find_combined_post(&d.org, universal, &d.target)
            .await?
            .is_some()
        {
            let post = self
                .store
                .set_combined_entry(&d.org, universal, &d.target, Some(content))
                .await?;
            return self.rewrite_combined(d, live, &post).await;
        }
        let copies: Vec<MessageCopy> = self
            .copies_in(&d.org, universal, &d.target)
            .await?
            .into_iter()
            .filter(|c| c.part < FILE_PART_BASE)
            .collect();
        let Some(first) = copies.first().cloned() else {
            // No copy of ours here: the origin's channel (a linked user's edit made on one
            // of our copies), or not posted (yet, or ever): nothing to edit.
            return self.edit_origin(d, live, universal, content).await;
        };
        let texts = split_text(&content.text, self.limits_for(&d.target));
        let n = texts.len() as u32;
        let mut posted_count = 0u64;
        for (k, text) in texts.iter().enumerate() {
            let k = k as u32;
            let part = part_content(content, text, k, n);
            match copies.iter().find(|c| c.part == k) {
                Some(c) => {
                    let by = c
                        .posted_by
                        .clone()
                        .unwrap_or(PostingIdentity::ServiceAccount);
                    let message = OutgoingMessage::new(part)
                        .with_marker(Marker::new(universal.clone(), k).to_string())
                        .posted_as(by.clone());
                    self.remember_written(&d.org, &reference(c), &by, &message.content.text)
                        .await?;
                    live.platform.edit(&reference(c), &message, &by).await?;
                }
                None => {
                    // The edit made the message longer: its new parts are posted after the
                    // others, where the first part is.
                    let by = first
                        .posted_by
                        .clone()
                        .unwrap_or(PostingIdentity::ServiceAccount);
                    let mut message = OutgoingMessage::new(part)
                        .with_marker(Marker::new(universal.clone(), k).to_string())
                        .posted_as(by);
                    message.reply_to = first.thread_root.clone();
                    let posted = live.platform.post(&d.target, &message).await?;
                    self.record_parts(live, &d.org, &d.target, universal, k, &posted)
                        .await?;
                    self.remember_written(
                        &d.org,
                        &posted.reference,
                        &posted.posted_by,
                        &message.content.text,
                    )
                    .await?;
                    posted_count += 1;
                }
            }
        }
        // The edit made it shorter: parts beyond the new end say so (their ids stay mapped,
        // so a later edit or delete still reaches them).
        for c in copies.iter().filter(|c| c.part >= n) {
            let by = c
                .posted_by
                .clone()
                .unwrap_or(PostingIdentity::ServiceAccount);
            let mut gone = content.clone();
            gone.text = RichText {
                blocks: vec![Block::Paragraph {
                    inlines: vec![Inline::Italic {
                        inlines: vec![Inline::Text {
                            text: "(this part of the message was removed by an edit)".into(),
                        }],
                    }],
                }],
            };
            let message = OutgoingMessage::new(gone)
                .with_marker(Marker::new(universal.clone(), c.part).to_string())
                .posted_as(by.clone());
            live.platform.edit(&reference(c), &message, &by).await?;
        }
        if posted_count > 0 {
            self.count_daily(&d.org, &d.target, posted_count).await?;
        }
        Ok(())
    }

    /// Shows a combined post as its entries are now: edited to the remaining messages, or
    /// deleted when none remains.
    async fn rewrite_combined(
        &self,
        d: &Delivery,
        live: &Connected,
        post: &CombinedPost,
    ) -> Result<()> {
        let Some(copy) = self
            .store
            .find_message_copy(&d.org, &post.channel, &post.message)
            .await?
        else {
            return Ok(());
        };
        let by = copy
            .posted_by
            .clone()
            .unwrap_or(PostingIdentity::ServiceAccount);
        let remaining: Vec<PortableMessage> = post
            .entries
            .iter()
            .filter_map(|e| e.content.clone())
            .collect();
        if remaining.is_empty() {
            return live.platform.delete(&reference(&copy), &by).await;
        }
        let message = OutgoingMessage::new(combined_content(&remaining))
            .with_marker(Marker::new(copy.universal.clone(), 0).to_string())
            .posted_as(by.clone());
        live.platform.edit(&reference(&copy), &message, &by).await
    }

    /// The target's message of `universal` that reactions go on: our copy there (its first
    /// part), the origin when the reaction was made on a copy, or the combined post holding
    /// it.
    async fn reaction_target(
        &self,
        org: &OrgId,
        universal: &UniversalMessageId,
        target: &ChannelRef,
    ) -> Result<Option<MessageCopy>> {
        if let Some(c) = self
            .store
            .message_copies(org, universal)
            .await?
            .into_iter()
            .find(|c| &c.channel == target && c.part == 0)
        {
            return Ok(Some(c));
        }
        match self
            .store
            .find_combined_post(org, universal, target)
            .await?
        {
            Some(post) => {
                self.store
                    .find_message_copy(org, target, &post.message)
                    .await
            }
            None => Ok(None),
        }
    }

    /// Who `user` is (platform and name), looked up on the platforms of the universal
    /// channel other than the target's first (a reaction comes from another endpoint).
    async fn reactor(&self, org: &OrgId, target: &ChannelRef, user: &UserId) -> Result<Reactor> {
        let mut platforms: Vec<PlatformKind> = Vec::new();
        if let Some(uc) = self.store.find_universal_channel(org, target).await? {
            for e in uc.endpoints() {
                if e.channel.platform != target.platform && !platforms.contains(&e.channel.platform)
                {
                    platforms.push(e.channel.platform);
                }
            }
        }
        platforms.push(target.platform);
        for p in &platforms {
            if let Some(u) = self.store.get_user(org, *p, user).await? {
                return Ok(Reactor {
                    platform: *p,
                    user: user.clone(),
                    name: u.user.display_name,
                });
            }
        }
        Ok(Reactor {
            platform: platforms[0],
            user: user.clone(),
            name: "someone".into(),
        })
    }

    async fn run_react(
        &self,
        d: &Delivery,
        live: &Connected,
        universal: &UniversalMessageId,
        emoji: &Emoji,
        change: ReactionChange,
        reactor: &UserId,
    ) -> Result<()> {
        let Some(target) = self.reaction_target(&d.org, universal, &d.target).await? else {
            return Ok(());
        };
        // Everyone's reactions go through one identity on the target: the ledger counts
        // them per emoji, so the reaction is added with the first and removed with the last.
        let key = ReactionKey {
            universal: target.universal.clone(),
            channel: d.target.clone(),
            part: target.part,
            emoji: emoji.clone(),
        };
        let who = self.reactor(&d.org, &d.target, reactor).await?;
        // A reactor who linked their own account on the target reacts as themselves (Teams
        // keeps one reaction per identity, so theirs needs no count), recorded apart so the
        // platform's notification of it is known as our echo.
        if let PostingIdentity::LinkedUser { user } = self
            .posting_identity(&d.org, who.platform, &who.user, d.target.platform)
            .await?
        {
            let linked_key = ReactionKey {
                part: LINKED_REACTION_PART + target.part,
                ..key.clone()
            };
            let me = Reactor {
                platform: d.target.platform,
                user: user.clone(),
                name: who.name.clone(),
            };
            match change {
                ReactionChange::Add => {
                    self.store.reaction_add(&d.org, &linked_key, &me).await?;
                }
                ReactionChange::Remove => {
                    self.store
                        .reaction_remove(&d.org, &linked_key, (me.platform, &me.user))
                        .await?;
                }
            }
            match live
                .platform
                .react(
                    &reference(&target),
                    emoji,
                    change,
                    &PostingIdentity::LinkedUser { user },
                )
                .await
            {
                // The live connection has no token for them after all (an unlink racing
                // this delivery): the reaction goes through the service account instead.
                Err(e) if e.kind() == ErrorKind::Forbidden => {
                    tracing::info!(target = %d.target, error = %e, "reacting as the linked user failed; reacting through the service account");
                    self.store
                        .reaction_remove(&d.org, &linked_key, (me.platform, &me.user))
                        .await?;
                }
                other => return other,
            }
        }
        let tally = match change {
            ReactionChange::Add => self.store.reaction_add(&d.org, &key, &who).await?,
            ReactionChange::Remove => {
                self.store
                    .reaction_remove(&d.org, &key, (who.platform, &who.user))
                    .await?
            }
        };
        match crate::reactions::platform_call(change, &tally, d.attempts > 0) {
            ReactionAction::Nothing => return Ok(()),
            ReactionAction::NoteOnly => {}
            ReactionAction::Call => {
                live.platform
                    .react(
                        &reference(&target),
                        emoji,
                        change,
                        &PostingIdentity::ServiceAccount,
                    )
                    .await?
            }
        }
        if self.config.reaction_notes {
            self.update_reactions_note(d, live, &target).await?;
        }
        Ok(())
    }

    /// Keeps the note that says who reacted ("Reactions: 👍 Ann, Bob") as a reply to the
    /// target's message: posted with the first relayed reaction, edited after every change.
    async fn update_reactions_note(
        &self,
        d: &Delivery,
        live: &Connected,
        target: &MessageCopy,
    ) -> Result<()> {
        let reactions = self
            .store
            .reactions_on(&d.org, &target.universal, &d.target, target.part)
            .await?;
        let text = crate::reactions::note(&reactions);
        let identity = live.platform.identity().await?;
        // The note this account may edit. One posted by the connection's previous account
        // (before a migration) cannot be changed any more: a new note follows it and takes
        // its place in the map.
        let existing = self
            .store
            .message_copies(&d.org, &target.universal)
            .await?
            .into_iter()
            .filter(|c| c.channel == d.target && c.part == NOTE_PART)
            .find(|c| {
                c.posted_by != Some(PostingIdentity::ServiceAccount)
                    || c.posted_by_account
                        .as_ref()
                        .is_none_or(|a| *a == identity.user_id)
            });
        let content = PortableMessage {
            sender: Sender {
                platform: d.target.platform,
                user: identity.user_id,
                display_name: "Switchboard".into(),
                avatar_url: None,
                email: None,
            },
            text,
            attachments: Vec::new(),
            thread_root: None,
        };
        let marker = Marker::new(target.universal.clone(), NOTE_PART).to_string();
        match existing {
            Some(note) => {
                let by = note
                    .posted_by
                    .clone()
                    .unwrap_or(PostingIdentity::ServiceAccount);
                let message = OutgoingMessage::new(content)
                    .with_marker(marker)
                    .posted_as(by.clone());
                live.platform.edit(&reference(&note), &message, &by).await
            }
            None if reactions.is_empty() => Ok(()),
            // (`None` also when the only note is the previous account's.)
            None => {
                let root = target.thread_root.clone().unwrap_or(target.message.clone());
                let message = OutgoingMessage::new(content)
                    .with_marker(marker)
                    .in_thread(root);
                let posted = live.platform.post(&d.target, &message).await?;
                // Replaces the record of a note the previous account left (forgotten by the
                // map: it is never changed again); the first note simply is recorded.
                self.store
                    .replace_message_copy(
                        &d.org,
                        &MessageCopy {
                            universal: target.universal.clone(),
                            channel: d.target.clone(),
                            message: posted.reference.message.clone(),
                            thread_root: posted.reference.thread_root.clone(),
                            posted_by_account: posting_account(live, &posted.posted_by).await,
                            posted_by: Some(posted.posted_by),
                            part: NOTE_PART,
                        },
                    )
                    .await?;
                self.count_daily(&d.org, &d.target, 1).await
            }
        }
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
                self.run_post(
                    d, &live, universal, origin, content, reply_to, *broadcast, post_as, files,
                )
                .await
            }
            DeliveryJob::Edit { universal, content } => {
                self.run_edit(d, &live, universal, content).await
            }
            DeliveryJob::Delete { universal } => {
                if self
                    .store
                    .find_combined_post(&d.org, universal, &d.target)
                    .await?
                    .is_some()
                {
                    let post = self
                        .store
                        .set_combined_entry(&d.org, universal, &d.target, None)
                        .await?;
                    return self.rewrite_combined(d, &live, &post).await;
                }
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
                reactor,
            } => {
                self.run_react(d, &live, universal, emoji, *change, reactor)
                    .await
            }
            DeliveryJob::Notice { text } => {
                let identity = live.platform.identity().await?;
                let content = PortableMessage {
                    sender: Sender {
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
                    .await?;
                self.count_daily(&d.org, &d.target, 1).await
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
            // A combined post's marker names every message it holds (`combined_marker`).
            let marker = m.marker.as_deref().and_then(|s| {
                s.split(':')
                    .filter_map(|one| one.parse::<Marker>().ok())
                    .find(|mk| &mk.universal == universal)
            });
            if let Some(marker) = marker {
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
        let account = posting_account(live, &by).await;
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
                        posted_by_account: account.clone(),
                        part,
                    },
                )
                .await?;
        }
        Ok(true)
    }
}

/// A fingerprint of what a message says: its letters, digits and emoji, lowercased, without
/// formatting, punctuation, symbols or spacing (FNV-1a 64, stable across versions and
/// processes). What Switchboard wrote to a copy and what a later edit notification of it
/// carries are compared through it, so a platform's reformatting of our own write is not taken
/// for the user's edit (an edit that changes only formatting or punctuation is, in turn, not
/// relayed).
pub fn content_fingerprint(text: &RichText) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut buf = [0u8; 4];
    for c in text
        .to_plain_text()
        .chars()
        .filter(|&c| {
            c.is_alphanumeric()
                || ('\u{1F000}'..='\u{1FAFF}').contains(&c)
                || ('\u{2600}'..='\u{27BF}').contains(&c)
                || ('\u{2B00}'..='\u{2BFF}').contains(&c)
        })
        .flat_map(char::to_lowercase)
    {
        for b in c.encode_utf8(&mut buf).bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("fnv1a64:{h:016x}")
}

/// The marker of a combined post: every message's marker, joined by `:`, so a retry after a
/// crash finds any of them among the target's recent messages and does not post it again.
fn combined_marker(group: &[&Delivery]) -> String {
    group
        .iter()
        .filter_map(|d| match &d.job {
            DeliveryJob::Post { universal, .. } => {
                Some(Marker::new(universal.clone(), 0).to_string())
            }
            _ => None,
        })
        .collect::<Vec<_>>()
        .join(":")
}

/// The platform account that posts as `by` through `live`: the connection's own account for
/// [`PostingIdentity::ServiceAccount`], the linked user for theirs; `None` when the platform
/// cannot say (recorded as unknown).
async fn posting_account(live: &Connected, by: &PostingIdentity) -> Option<UserId> {
    match by {
        PostingIdentity::ServiceAccount => match live.platform.identity().await {
            Ok(a) => Some(a.user_id),
            Err(e) => {
                tracing::info!(error = %e, "the posting account is unknown; recorded without it");
                None
            }
        },
        PostingIdentity::LinkedUser { user } => Some(user.clone()),
    }
}

fn reference(c: &MessageCopy) -> MessageRef {
    MessageRef {
        channel: c.channel.clone(),
        message: c.message.clone(),
        thread_root: c.thread_root.clone(),
    }
}

/// The content of a top-level post that may be combined with others under backlog: a first
/// attempt, not a reply, no files, not a notice, posted by the service account.
fn combinable(d: &Delivery) -> Option<&PortableMessage> {
    match &d.job {
        DeliveryJob::Post {
            universal,
            content,
            reply_to: None,
            broadcast: false,
            post_as: PostingIdentity::ServiceAccount,
            files,
            ..
        } if d.attempts == 0
            && files.is_empty()
            && content.thread_root.is_none()
            && content.attachments.is_empty()
            && !universal.as_str().starts_with(NOTICE_PREFIX) =>
        {
            Some(content)
        }
        _ => None,
    }
}

/// The post that combines `messages`: each under its sender's name, in order; the post's
/// own sender names them all.
fn combined_content(messages: &[PortableMessage]) -> PortableMessage {
    let combined = crate::batch::combine(messages);
    let mut names: Vec<&str> = Vec::new();
    for s in &combined.senders {
        if !names.contains(&s.display_name.as_str()) {
            names.push(&s.display_name);
        }
    }
    let shown = if names.len() > 3 {
        format!("{} and {} more", names[..3].join(", "), names.len() - 3)
    } else {
        names.join(", ")
    };
    let first = &messages[0].sender;
    PortableMessage {
        sender: Sender {
            platform: first.platform,
            user: first.user.clone(),
            display_name: shown,
            avatar_url: None,
            email: None,
        },
        text: combined.text,
        attachments: Vec::new(),
        thread_root: None,
    }
}

/// `text` cut into parts that fit the target (at most [`FILE_PART_BASE`]; the last one
/// takes whatever is left).
fn split_text(text: &RichText, limits: TargetLimits) -> Vec<RichText> {
    let mut parts = split::split(text, limits.part_budget(), 2, &rendered_size);
    if parts.len() > FILE_PART_BASE as usize {
        let rest: Vec<Block> = parts
            .drain(FILE_PART_BASE as usize - 1..)
            .flat_map(|p| p.blocks)
            .collect();
        parts.push(RichText { blocks: rest });
    }
    parts
}

/// Part `k` of `n` of `content`: its text, with "(part k+1 of n)" after the first.
fn part_content(content: &PortableMessage, text: &RichText, k: u32, n: u32) -> PortableMessage {
    let mut part = content.clone();
    part.text = text.clone();
    if n > 1 && k > 0 {
        part.text.blocks.insert(
            0,
            Block::Paragraph {
                inlines: vec![Inline::Italic {
                    inlines: vec![Inline::Text {
                        text: format!("(part {} of {n})", k + 1),
                    }],
                }],
            },
        );
    }
    part
}

/// How long a translation that failed for now waits before it is tried again: what the
/// platform asked for, else 1 s doubling with each earlier attempt; never beyond a lease
/// (which is what a crashed worker's items wait).
fn retry_delay(attempts: u32, asked: Option<Duration>, lease: Duration) -> Duration {
    let backoff = Duration::from_secs(1).saturating_mul(1u32 << attempts.min(16));
    asked.unwrap_or(backoff).min(lease)
}

/// `items` grouped by their delay (one store call each).
fn by_delay(items: &[(InboxId, Duration)]) -> Vec<(Vec<InboxId>, Duration)> {
    let mut out: Vec<(Vec<InboxId>, Duration)> = Vec::new();
    for &(id, delay) in items {
        match out.iter_mut().find(|(_, d)| *d == delay) {
            Some((ids, _)) => ids.push(id),
            None => out.push((vec![id], delay)),
        }
    }
    out
}

/// What one translation batch has seen: origin copies not yet committed (a reply later in the
/// batch finds its root), and the universal channels and users it looked up.
#[derive(Default)]
struct Batch {
    copies: std::sync::Mutex<HashMap<(ChannelRef, MessageId), MessageCopy>>,
    /// What the map held, when the batch began, for the posts it carries (and their thread
    /// roots): `None` for a message it did not know.
    known: std::sync::Mutex<KnownCopies>,
    new: std::sync::Mutex<Vec<MessageCopy>>,
    channels: std::sync::Mutex<HashMap<ChannelRef, Option<UniversalChannel>>>,
    users: std::sync::Mutex<HashMap<(PlatformKind, UserId), Option<StoredUser>>>,
    /// Who a sender's copies are posted as, per (org, sender platform, sender, target
    /// platform).
    identities: std::sync::Mutex<IdentityMemo>,
}

type IdentityMemo = HashMap<(OrgId, PlatformKind, UserId, PlatformKind), PostingIdentity>;
type KnownCopies = HashMap<(OrgId, ChannelRef, MessageId), Option<MessageCopy>>;

impl Batch {
    /// Looks up at once, per channel, the copies of the messages `items` post and reply to
    /// (one statement per channel instead of one or two per post).
    async fn prefetch(&self, store: &dyn Store, items: &[&InboxItem]) -> Result<()> {
        let mut wanted: HashMap<(&OrgId, &ChannelRef), Vec<MessageId>> = HashMap::new();
        for item in items {
            if let Inbound::Event(PlatformEvent {
                channel,
                kind: EventKind::Posted { message, content },
                ..
            }) = &item.item
            {
                let w = wanted.entry((&item.org, channel)).or_default();
                w.push(message.clone());
                w.extend(content.thread_root.clone());
            }
        }
        for ((org, channel), messages) in wanted {
            let found = store.find_message_copies(org, channel, &messages).await?;
            let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
            for m in messages {
                known.insert((org.clone(), channel.clone(), m), None);
            }
            for c in found {
                let key = (org.clone(), c.channel.clone(), c.message.clone());
                known.insert(key, Some(c));
            }
        }
        Ok(())
    }

    /// The prefetched answer for `message`, when it was prefetched.
    fn prefetched(
        &self,
        org: &OrgId,
        channel: &ChannelRef,
        message: &MessageId,
    ) -> Option<Option<MessageCopy>> {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(org.clone(), channel.clone(), message.clone()))
            .cloned()
    }

    fn copy(&self, channel: &ChannelRef, message: &MessageId) -> Option<MessageCopy> {
        self.copies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(channel.clone(), message.clone()))
            .cloned()
    }

    fn record(&self, copy: MessageCopy) {
        self.copies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((copy.channel.clone(), copy.message.clone()), copy.clone());
        self.new
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(copy);
    }

    /// The copies the item just translated introduced.
    fn take_new(&self) -> Vec<MessageCopy> {
        std::mem::take(&mut *self.new.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Drops what an item that will not be completed introduced.
    fn forget_new(&self) {
        let gone = self.take_new();
        let mut copies = self.copies.lock().unwrap_or_else(|p| p.into_inner());
        for c in gone {
            copies.remove(&(c.channel, c.message));
        }
    }

    async fn universal_channel(
        &self,
        store: &dyn Store,
        org: &OrgId,
        channel: &ChannelRef,
    ) -> Result<Option<UniversalChannel>> {
        if let Some(u) = self
            .channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(channel)
        {
            return Ok(u.clone());
        }
        let u = store.find_universal_channel(org, channel).await?;
        self.channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(channel.clone(), u.clone());
        Ok(u)
    }

    async fn user(
        &self,
        store: &dyn Store,
        org: &OrgId,
        platform: PlatformKind,
        user: &UserId,
    ) -> Result<Option<StoredUser>> {
        let key = (platform, user.clone());
        if let Some(u) = self
            .users
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(u.clone());
        }
        let u = store.get_user(org, platform, user).await?;
        self.users
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, u.clone());
        Ok(u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_translation_backs_off_and_takes_what_the_platform_asks() {
        let lease = Duration::from_secs(60);
        let s = Duration::from_secs;
        let waits: Vec<Duration> = (0..8).map(|a| retry_delay(a, None, lease)).collect();
        assert_eq!(waits, [s(1), s(2), s(4), s(8), s(16), s(32), s(60), s(60)]);
        assert_eq!(retry_delay(u32::MAX, None, lease), lease, "no overflow");
        assert_eq!(
            retry_delay(5, Some(Duration::from_millis(100)), lease),
            Duration::from_millis(100)
        );
        assert_eq!(
            retry_delay(0, Some(s(600)), lease),
            lease,
            "never beyond a lease"
        );
    }

    #[test]
    fn fingerprints_see_words_and_emoji_not_formatting() {
        let fp = |s: &str| content_fingerprint(&RichText::plain(s));
        assert_eq!(fp("Hello, world"), fp("hello world!"));
        assert_eq!(fp("edited — ok"), fp("edited ok"));
        assert_ne!(fp("hello world"), fp("hello there"));
        assert_ne!(fp("ship it 👍"), fp("ship it 👎"));
        assert_ne!(fp("1.5"), fp("15.0"));
        assert!(fp("").starts_with("fnv1a64:"));
        // stable across versions and processes (FNV-1a 64 of "ab")
        assert_eq!(fp("A b"), "fnv1a64:089c4407b545986a");
    }
}
