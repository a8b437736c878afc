//! Catch-up after downtime or a gap in a channel's live feed, through the history seam.
//!
//! What was missed is read with [`History::changes_since`](switchboard_core::History) from
//! where the channel was last seen, bounded by [`CatchUp::limit`], and put in the inbox like
//! any live event, so it goes through the same translate → deliver pipeline in origin order.
//! Posts the map already knows (relayed before, or our own copies) are left out; a post that
//! was relayed but whose delivery had not finished is safe anyway: a `Post` delivery is a
//! no-op when its copy exists. When anything was replayed, the other endpoints get an outage
//! marker first ("… 37 messages follow"); beyond the cap the rest of the gap is summarised
//! and skipped rather than replayed forever.
//!
//! Where a channel was last seen is kept as a history cursor (`history:<channel>`), as the
//! JSON of a [`HistoryStart`]: the platform's cursor after a catch-up, or the time of the
//! newest live event seen ([`note_seen`]).

use std::collections::HashMap;
use std::sync::Arc;

use switchboard_core::{
    ChannelRef, ConnectionId, CursorKey, DeliveryJob, EventKind, HistoryStart, Inbound, InboxItem,
    NewDelivery, OrgId, PlatformEvent, Result, Store,
};
use time::OffsetDateTime;

use crate::engine::Connections;

/// The most events one catch-up of a channel replays.
pub const DEFAULT_LIMIT: usize = 1000;

/// Events asked of the history seam per call.
const PAGE: usize = 200;

/// What one catch-up of a channel did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatchUpReport {
    /// Events put in the inbox (posts, edits, deletes, reactions).
    pub replayed: usize,
    /// Of those, new posts.
    pub posts: usize,
    /// Events found that were already relayed (left out).
    pub known: usize,
    /// More changes existed beyond the limit: they were summarised, not replayed.
    pub truncated: bool,
}

/// Catches channels up through their connection's history.
pub struct CatchUp {
    store: Arc<dyn Store>,
    connections: Arc<dyn Connections>,
    /// The most events replayed per channel and catch-up.
    pub limit: usize,
}

impl std::fmt::Debug for CatchUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatchUp")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

fn key(channel: &ChannelRef) -> CursorKey {
    CursorKey::History {
        channel: channel.clone(),
    }
}

fn hhmm(t: OffsetDateTime) -> String {
    format!("{:02}:{:02}", t.hour(), t.minute())
}

impl CatchUp {
    /// Over `store`, reading history through `connections`, [`DEFAULT_LIMIT`] per channel.
    pub fn new(store: Arc<dyn Store>, connections: Arc<dyn Connections>) -> Self {
        CatchUp {
            store,
            connections,
            limit: DEFAULT_LIMIT,
        }
    }

    /// Where `channel` resumes: its stored cursor, if any.
    pub async fn resume_point(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
        channel: &ChannelRef,
    ) -> Result<Option<HistoryStart>> {
        Ok(self
            .store
            .get_cursor(org, connection, &key(channel))
            .await?
            .and_then(|v| serde_json::from_str::<HistoryStart>(&v).ok()))
    }

    /// Marks `channel` as seen up to now when it has no resume point yet (a channel just
    /// linked: nothing before the link is replayed).
    pub async fn start_if_new(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
        channel: &ChannelRef,
    ) -> Result<bool> {
        if self.resume_point(org, connection, channel).await?.is_some() {
            return Ok(false);
        }
        put(
            self.store.as_ref(),
            org,
            connection,
            channel,
            &HistoryStart::Time {
                since: OffsetDateTime::now_utc(),
            },
        )
        .await?;
        Ok(true)
    }

    /// Catches `channel` (an endpoint on `connection`) up from its resume point, or from
    /// `since` when it has none.
    pub async fn channel(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
        channel: &ChannelRef,
        since: Option<OffsetDateTime>,
    ) -> Result<CatchUpReport> {
        let start = match (self.resume_point(org, connection, channel).await?, since) {
            (Some(s), _) => s,
            (None, Some(since)) => HistoryStart::Time { since },
            (None, None) => {
                self.start_if_new(org, connection, channel).await?;
                return Ok(CatchUpReport::default());
            }
        };
        let live = self.connections.get(org, connection).await?;
        let mut report = CatchUpReport::default();
        let mut items = Vec::new();
        let mut first: Option<OffsetDateTime> = None;
        let mut last: Option<OffsetDateTime> = None;
        let mut start = start;
        let mut read = 0usize;
        let cursor = loop {
            let page = live
                .history
                .changes_since(channel, &start, (self.limit - read).min(PAGE))
                .await?;
            read += page.events.len();
            for event in page.events {
                if let EventKind::Posted { message, .. } = &event.kind {
                    if self
                        .store
                        .find_message_copy(org, channel, message)
                        .await?
                        .is_some()
                    {
                        report.known += 1;
                        continue;
                    }
                    report.posts += 1;
                    first = Some(first.map_or(event.occurred_at, |f| f.min(event.occurred_at)));
                    last = Some(last.map_or(event.occurred_at, |l| l.max(event.occurred_at)));
                }
                items.push(Inbound::Event(event));
            }
            if !page.more {
                break page.cursor;
            }
            if read >= self.limit {
                report.truncated = true;
                break page.cursor;
            }
            start = HistoryStart::Cursor {
                cursor: page.cursor,
            };
        };
        report.replayed = items.len();
        if report.posts > 0 || report.truncated {
            self.outage_marker(org, channel, &report, first, last)
                .await?;
        }
        for chunk in items.chunks(switchboard_core::MAX_INBOX_BATCH) {
            self.store
                .inbox_accept_batch(org, connection, chunk)
                .await?;
        }
        // Beyond the cap the gap is summarised, not replayed: resume from now.
        let next = if report.truncated {
            HistoryStart::Time {
                since: OffsetDateTime::now_utc(),
            }
        } else {
            HistoryStart::Cursor { cursor }
        };
        put(self.store.as_ref(), org, connection, channel, &next).await?;
        if report.replayed > 0 || report.truncated {
            tracing::info!(%channel, replayed = report.replayed, posts = report.posts, truncated = report.truncated, "caught up");
        }
        Ok(report)
    }

    async fn outage_marker(
        &self,
        org: &OrgId,
        channel: &ChannelRef,
        report: &CatchUpReport,
        first: Option<OffsetDateTime>,
        last: Option<OffsetDateTime>,
    ) -> Result<()> {
        let Some(uc) = self.store.find_universal_channel(org, channel).await? else {
            return Ok(());
        };
        let window = match (first, last) {
            (Some(f), Some(l)) => format!(" ({}–{} UTC)", hhmm(f), hhmm(l)),
            _ => String::new(),
        };
        let noun = if report.posts == 1 {
            "message"
        } else {
            "messages"
        };
        let mut text = format!(
            "Switchboard was interrupted and is catching up on {}{window}: {} {noun} posted there meanwhile follow.",
            channel.platform, report.posts
        );
        if report.truncated {
            text.push_str(&format!(
                " More was posted than the {} replayed at most; read the rest on {}.",
                self.limit, channel.platform
            ));
        }
        let deliveries: Vec<NewDelivery> = uc
            .targets_for(channel)
            .map(|e| NewDelivery {
                org: org.clone(),
                connection: e.connection.clone(),
                target: e.channel.clone(),
                job: DeliveryJob::Notice { text: text.clone() },
            })
            .collect();
        self.store.outbox_enqueue(&deliveries).await
    }
}

async fn put(
    store: &dyn Store,
    org: &OrgId,
    connection: &ConnectionId,
    channel: &ChannelRef,
    start: &HistoryStart,
) -> Result<()> {
    let value = serde_json::to_string(start)
        .map_err(|e| switchboard_core::Error::invalid(format!("history cursor: {e}")))?;
    store
        .put_cursor(org, connection, &key(channel), &value)
        .await
}

/// Moves each channel's resume point to the newest live event of `items` (called by the
/// pipeline after a batch is translated), so a restart replays only what came after. One
/// write per channel and batch; a resume point that is a platform cursor newer than the
/// events is kept.
pub async fn note_seen<'a>(
    store: &dyn Store,
    items: impl IntoIterator<Item = &'a InboxItem>,
) -> Result<()> {
    let mut newest: HashMap<(OrgId, ConnectionId, ChannelRef), OffsetDateTime> = HashMap::new();
    for item in items {
        let (channel, t) = match &item.item {
            Inbound::Event(PlatformEvent {
                channel,
                occurred_at,
                ..
            }) => (channel, *occurred_at),
            // Received by us, after the platform's change time: a minute of slack.
            Inbound::Changed(h) => (&h.channel, h.received_at - time::Duration::minutes(1)),
            Inbound::Signal(_) => continue,
        };
        let k = (item.org.clone(), item.connection.clone(), channel.clone());
        let newest_t = newest.entry(k).or_insert(t);
        if t > *newest_t {
            *newest_t = t;
        }
    }
    for ((org, connection, channel), t) in newest {
        let stored = store
            .get_cursor(&org, &connection, &key(&channel))
            .await?
            .and_then(|v| serde_json::from_str::<HistoryStart>(&v).ok());
        let newer = match &stored {
            Some(HistoryStart::Time { since }) => t > *since,
            // A platform cursor: replace it with the event time (a time start is always
            // bounded by it, so nothing after is missed).
            Some(HistoryStart::Cursor { .. }) | None => true,
        };
        if newer {
            put(
                store,
                &org,
                &connection,
                &channel,
                &HistoryStart::Time { since: t },
            )
            .await?;
        }
    }
    Ok(())
}
