//! Keeping the live feeds of linked channels alive, and catching channels up.
//!
//! Microsoft Graph delivers a channel's messages only while a subscription on that channel
//! exists (one per app per channel, three days at most), and polling for live messages is
//! forbidden. The [`FeedKeeper`] makes sure every Teams endpoint of a universal channel has
//! one: created when the channel is linked (the API and console wake the keeper), renewed a
//! quarter of its lifetime before it expires, reauthorized on every
//! `reauthorizationRequired`, created again after `subscriptionRemoved` (or a renewal that
//! finds it gone) with a catch-up of what was missed, and deleted when the channel is
//! unlinked. At start-up every linked channel, on every platform, is caught up from where it
//! was last seen ([`CatchUp`]). After a connection is migrated to another account, its
//! subscriptions are made again under the new account ([`FeedKeeper::resubscribe`]), so
//! renewals and reauthorizations no longer depend on the previous account's token.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use switchboard_core::{
    Actor, ChannelFeeds, ChannelRef, ConnectionId, ConnectionSignal, Error, ErrorKind,
    FeedEndpoints, NewAuditEntry, OrgId, Result, Store, Subscription, SubscriptionId,
};
use switchboard_relay::catchup::CatchUp;
use switchboard_relay::engine::{Connections, SignalObserver};
use time::OffsetDateTime;
use tokio::sync::Notify;

/// What one pass of the keeper did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeeperPass {
    /// Subscriptions created (or taken over).
    pub created: usize,
    /// Subscriptions renewed.
    pub renewed: usize,
    /// Subscriptions deleted (their channel is no longer linked).
    pub removed: usize,
    /// Channels that could not be served this pass (retried next pass).
    pub failed: usize,
}

/// What [`FeedKeeper::resubscribe`] did for one connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resubscribed {
    /// Subscriptions made again under the connection's current account.
    pub created: usize,
    /// Previous subscriptions deleted on the platform.
    pub deleted: usize,
    /// Previous subscriptions that could not be deleted on the platform (they lapse when
    /// their token or lifetime ends; the keeper's passes keep trying to subscribe).
    pub not_deleted: usize,
    /// Channels that could not be subscribed again now (retried by the next pass, with a
    /// catch-up).
    pub failed: usize,
    /// Messages replayed by the catch-ups of the gap.
    pub replayed: usize,
}

/// Keeps per-channel subscriptions of linked channels alive (see the module docs).
pub struct FeedKeeper {
    store: Arc<dyn Store>,
    connections: Arc<dyn Connections>,
    endpoints: FeedEndpoints,
    catch_up: CatchUp,
}

impl std::fmt::Debug for FeedKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedKeeper")
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

/// The webhook URLs under `public_url` that Graph is told to call.
pub fn graph_endpoints(public_url: &str) -> Result<FeedEndpoints> {
    let base = public_url.trim_end_matches('/');
    let parse = |path: &str| {
        url::Url::parse(&format!("{base}{path}"))
            .map_err(|e| Error::invalid(format!("public URL {public_url:?}: {e}")))
    };
    Ok(FeedEndpoints {
        notification_url: parse("/webhooks/msteams/notifications")?,
        lifecycle_url: Some(parse("/webhooks/msteams/lifecycle")?),
    })
}

impl FeedKeeper {
    /// A keeper over `store`, opening connections through `connections`, subscribing with
    /// the webhooks under `public_url`.
    pub fn new(
        store: Arc<dyn Store>,
        connections: Arc<dyn Connections>,
        public_url: &str,
    ) -> Result<Self> {
        Ok(FeedKeeper {
            catch_up: CatchUp::new(store.clone(), connections.clone()),
            store,
            connections,
            endpoints: graph_endpoints(public_url)?,
        })
    }

    /// Every linked endpoint of `org`: (connection, channel).
    async fn linked(&self, org: &OrgId) -> Result<Vec<(ConnectionId, ChannelRef)>> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for uc in self.store.list_universal_channels(org).await? {
            for e in uc.endpoints() {
                if seen.insert(e.channel.clone()) {
                    out.push((e.connection.clone(), e.channel.clone()));
                }
            }
        }
        Ok(out)
    }

    async fn audit(&self, org: &OrgId, action: &str, target: String, details: serde_json::Value) {
        let entry = NewAuditEntry {
            actor: Actor::System,
            action: action.into(),
            target,
            details,
        };
        if let Err(e) = self.store.append_audit(org, entry).await {
            tracing::warn!(error = %e, action, "could not audit");
        }
    }

    /// Creates (or takes over) the subscription of `channel` and stores it.
    async fn subscribe(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
        channel: &ChannelRef,
        known: Option<&Subscription>,
    ) -> Result<Option<Subscription>> {
        let live = self.connections.get(org, connection).await?;
        let Some(feeds) = live.feeds else {
            return Ok(None);
        };
        let sub = feeds.ensure(channel, &self.endpoints, known).await?;
        if let Some(old) = known
            && old.id != sub.id
        {
            self.store.delete_subscription(org, &old.id).await?;
        }
        self.store.put_subscription(org, &sub).await?;
        self.audit(
            org,
            "subscription.created",
            channel.to_string(),
            serde_json::json!({ "subscription": sub.id.as_str() }),
        )
        .await;
        Ok(Some(sub))
    }

    /// One pass over every organization: subscribe linked channels that have no
    /// subscription, renew those due, drop those of unlinked channels.
    pub async fn pass(&self) -> Result<KeeperPass> {
        let mut out = KeeperPass::default();
        let now = OffsetDateTime::now_utc();
        for org in self.store.list_orgs().await? {
            let org = org.id;
            let linked = self.linked(&org).await?;
            let subs = self.store.list_subscriptions(&org).await?;
            for (connection, channel) in &linked {
                let existing = subs
                    .iter()
                    .find(|s| &s.channel == channel && &s.connection == connection);
                let result = match existing {
                    None => match self.subscribe(&org, connection, channel, None).await {
                        Ok(Some(_)) => {
                            out.created += 1;
                            // A channel seen before went without a feed for a while (a
                            // subscription that failed or was moved): catch up the gap.
                            if !self
                                .catch_up
                                .start_if_new(&org, connection, channel)
                                .await?
                            {
                                self.catch_up
                                    .channel(&org, connection, channel, None)
                                    .await?;
                            }
                            Ok(())
                        }
                        Ok(None) => {
                            // A platform without per-channel feeds (Slack): its events
                            // cover the workspace. Start its resume point at the link.
                            self.catch_up
                                .start_if_new(&org, connection, channel)
                                .await?;
                            Ok(())
                        }
                        Err(e) => Err(e),
                    },
                    Some(sub) => self.keep(&org, sub, now, &mut out).await,
                };
                if let Err(e) = result {
                    out.failed += 1;
                    tracing::warn!(%channel, error = %e, "could not keep the channel's live feed; retrying on the next pass");
                }
            }
            for sub in &subs {
                if linked
                    .iter()
                    .any(|(c, ch)| c == &sub.connection && ch == &sub.channel)
                {
                    continue;
                }
                match self.drop_subscription(&org, sub).await {
                    Ok(()) => out.removed += 1,
                    Err(e) => {
                        out.failed += 1;
                        tracing::warn!(subscription = %sub.id, error = %e, "could not delete the subscription of an unlinked channel");
                    }
                }
            }
        }
        Ok(out)
    }

    async fn keep(
        &self,
        org: &OrgId,
        sub: &Subscription,
        now: OffsetDateTime,
        out: &mut KeeperPass,
    ) -> Result<()> {
        let live = self.connections.get(org, &sub.connection).await?;
        let Some(feeds) = live.feeds else {
            return Ok(());
        };
        if now < feeds.renew_at(sub) {
            return Ok(());
        }
        match feeds.renew(sub, &self.endpoints).await {
            Ok(expires_at) => {
                let mut renewed = sub.clone();
                renewed.expires_at = expires_at;
                self.store.put_subscription(org, &renewed).await?;
                out.renewed += 1;
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                // Graph removed it: subscribe again and catch up on the gap.
                self.store.delete_subscription(org, &sub.id).await?;
                self.subscribe(org, &sub.connection, &sub.channel, None)
                    .await?;
                out.created += 1;
                self.catch_up
                    .channel(org, &sub.connection, &sub.channel, None)
                    .await?;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// After `connection` of `org` was migrated to another account: deletes its subscriptions
    /// on the platform (best effort, with `previous`, the previous account's feeds, whose
    /// token made them, else with the current account's) and in the store, subscribes each of
    /// its linked channels again under the current account, and catches each up on the gap
    /// through the usual catch-up. A channel that cannot be subscribed now is left without a
    /// stored subscription, so the next pass subscribes it (and catches it up).
    pub async fn resubscribe(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
        previous: Option<&dyn ChannelFeeds>,
    ) -> Result<Resubscribed> {
        let mut out = Resubscribed::default();
        let current = self.connections.get(org, connection).await?.feeds;
        let old: Vec<Subscription> = self
            .store
            .list_subscriptions(org)
            .await?
            .into_iter()
            .filter(|s| &s.connection == connection)
            .collect();
        for sub in &old {
            let mut deleted = false;
            for feeds in [previous, current.as_deref()].into_iter().flatten() {
                match feeds.remove(&sub.id).await {
                    Ok(()) => {
                        deleted = true;
                        break;
                    }
                    Err(e) => {
                        tracing::info!(subscription = %sub.id, error = %e, "could not delete a subscription of the previous account")
                    }
                }
            }
            if deleted {
                out.deleted += 1;
            } else {
                out.not_deleted += 1;
            }
            self.store.delete_subscription(org, &sub.id).await?;
        }
        if current.is_none() {
            return Ok(out);
        }
        for (c, channel) in self.linked(org).await? {
            if &c != connection {
                continue;
            }
            match self.subscribe(org, connection, &channel, None).await {
                Ok(Some(_)) => out.created += 1,
                Ok(None) => continue,
                Err(e) => {
                    out.failed += 1;
                    tracing::warn!(%channel, error = %e, "could not subscribe under the new account; retrying on the next pass");
                    continue;
                }
            }
            match self.catch_up.channel(org, connection, &channel, None).await {
                Ok(r) => out.replayed += r.replayed,
                Err(e) => {
                    tracing::warn!(%channel, error = %e, "catch-up after the move failed; it is tried again at the next start or gap")
                }
            }
        }
        self.audit(
            org,
            "subscriptions.moved",
            connection.to_string(),
            serde_json::json!({
                "created": out.created,
                "deleted": out.deleted,
                "not_deleted": out.not_deleted,
                "failed": out.failed,
                "replayed": out.replayed,
            }),
        )
        .await;
        Ok(out)
    }

    async fn drop_subscription(&self, org: &OrgId, sub: &Subscription) -> Result<()> {
        if let Ok(live) = self.connections.get(org, &sub.connection).await
            && let Some(feeds) = live.feeds
        {
            feeds.remove(&sub.id).await?;
        }
        self.store.delete_subscription(org, &sub.id).await?;
        self.audit(
            org,
            "subscription.deleted",
            sub.channel.to_string(),
            serde_json::json!({ "subscription": sub.id.as_str() }),
        )
        .await;
        Ok(())
    }

    /// Catches every linked channel of every organization up from where it was last seen
    /// (at start-up: what was posted while the server was down).
    pub async fn catch_up_all(&self) -> Result<usize> {
        let mut replayed = 0;
        for org in self.store.list_orgs().await? {
            for (connection, channel) in self.linked(&org.id).await? {
                match self
                    .catch_up
                    .channel(&org.id, &connection, &channel, None)
                    .await
                {
                    Ok(r) => replayed += r.replayed,
                    Err(e) => {
                        tracing::warn!(%channel, error = %e, "catch-up failed; it is tried again at the next start or gap")
                    }
                }
            }
        }
        Ok(replayed)
    }

    /// Runs until dropped: a pass at once, then every `every` or when `wake` is notified (a
    /// channel was linked or unlinked); `catch_up_after` the start (the relay's lease: what
    /// a crashed worker held is leased again by then, so it is relayed before what the
    /// catch-up replays, keeping origin order) a catch-up of every linked channel.
    pub async fn run(
        self: Arc<Self>,
        wake: Arc<Notify>,
        every: Duration,
        catch_up_after: Duration,
    ) {
        // Subscriptions first, so nothing posted during the catch-up is missed.
        if let Err(e) = self.pass().await {
            tracing::warn!(error = %e, "feed keeper pass failed");
        }
        let catch_up = tokio::time::sleep(catch_up_after);
        tokio::pin!(catch_up);
        let mut caught_up = false;
        loop {
            if !caught_up {
                tokio::select! {
                    _ = &mut catch_up => {
                        caught_up = true;
                        // In its own task: reading history can wait long on rate limits.
                        let keeper = self.clone();
                        tokio::spawn(async move {
                            if let Err(e) = keeper.catch_up_all().await {
                                tracing::warn!(error = %e, "start-up catch-up failed");
                            }
                        });
                        continue;
                    }
                    _ = tokio::time::sleep(every) => {}
                    _ = wake.notified() => {}
                }
                if let Err(e) = self.pass().await {
                    tracing::warn!(error = %e, "feed keeper pass failed");
                }
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = wake.notified() => {}
            }
            if let Err(e) = self.pass().await {
                tracing::warn!(error = %e, "feed keeper pass failed");
            }
        }
    }

    async fn stored(&self, id: &SubscriptionId) -> Result<Option<(OrgId, Subscription)>> {
        self.store.get_subscription(id).await
    }
}

#[async_trait]
impl SignalObserver for FeedKeeper {
    async fn on_signal(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
        signal: &ConnectionSignal,
    ) -> Result<()> {
        match signal {
            ConnectionSignal::ReauthorizationRequired { subscription } => {
                let Some((_, sub)) = self.stored(subscription).await? else {
                    return Ok(());
                };
                let live = self.connections.get(org, connection).await?;
                let Some(feeds) = live.feeds else {
                    return Ok(());
                };
                match feeds.reauthorize(subscription).await {
                    Ok(()) => {
                        tracing::info!(%subscription, "subscription reauthorized");
                        Ok(())
                    }
                    Err(e) if e.kind() == ErrorKind::NotFound => {
                        self.store.delete_subscription(org, subscription).await?;
                        self.subscribe(org, connection, &sub.channel, None).await?;
                        self.catch_up
                            .channel(org, connection, &sub.channel, None)
                            .await?;
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
            ConnectionSignal::SubscriptionRemoved { subscription } => {
                let Some((_, sub)) = self.stored(subscription).await? else {
                    return Ok(());
                };
                self.store.delete_subscription(org, subscription).await?;
                let still_linked = self
                    .linked(org)
                    .await?
                    .iter()
                    .any(|(c, ch)| c == connection && ch == &sub.channel);
                if still_linked {
                    self.subscribe(org, connection, &sub.channel, None).await?;
                    self.catch_up
                        .channel(org, connection, &sub.channel, None)
                        .await?;
                }
                Ok(())
            }
            ConnectionSignal::EventsDropped { since } => {
                for (c, channel) in self.linked(org).await? {
                    if &c == connection {
                        self.catch_up
                            .channel(org, &c, &channel, Some(*since))
                            .await?;
                    }
                }
                Ok(())
            }
            ConnectionSignal::GrantRevoked { .. } => Ok(()),
        }
    }
}
