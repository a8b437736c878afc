//! Catch-up: what changed in a channel since a cursor or a time, bounded and in order.
//!
//! Used after downtime, after a subscription was removed or paused, and after a crash to
//! reconcile deliveries that were in flight (find our marker among the target's recent
//! messages before re-sending). Never the live path: Microsoft forbids polling for live
//! messages, and Slack's history methods are rate limited hard for non-internal apps.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::Result;
use crate::ids::*;
use crate::message::PlatformEvent;
use crate::platform::{MessageRef, PostingIdentity};

/// Where a catch-up starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum HistoryStart {
    /// A cursor a previous [`HistoryPage`] returned.
    Cursor {
        /// The opaque cursor (Graph deltaLink, Slack `ts`).
        cursor: HistoryCursor,
    },
    /// Everything changed after this time (the first catch-up of a channel: the time it was
    /// linked, or the last event seen). Adapters always bound the request by it.
    Time {
        /// The time.
        #[serde(with = "time::serde::rfc3339")]
        since: OffsetDateTime,
    },
}

/// An opaque, adapter-defined resume point. Stored as is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HistoryCursor(pub String);

/// One bounded batch of catch-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    /// The changes, oldest first: posts (replies after their root), edits, deletes, reactions
    /// where the platform reports them.
    pub events: Vec<PlatformEvent>,
    /// Where to resume next time (store it once the events are accepted).
    pub cursor: HistoryCursor,
    /// `true` when more changes exist beyond `limit`: the caller summarises the gap or asks
    /// again from `cursor`.
    pub more: bool,
}

/// A message found among a channel's recent messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentMessage {
    /// Where it is.
    pub reference: MessageRef,
    /// The marker we embedded when we posted it, when it carries one.
    pub marker: Option<String>,
    /// Who posted it, when it was one of our identities.
    pub posted_by: Option<PostingIdentity>,
    /// When it was posted.
    pub posted_at: OffsetDateTime,
}

/// Reading a channel's past, bounded.
#[async_trait]
pub trait History: Send + Sync + std::fmt::Debug {
    /// The changes in `channel` since `start`, oldest first, at most `limit` events.
    ///
    /// An expired cursor is not an error: the adapter restarts from the cursor's time (never
    /// from the beginning of the channel) and says so in the log.
    async fn changes_since(
        &self,
        channel: &ChannelRef,
        start: &HistoryStart,
        limit: usize,
    ) -> Result<HistoryPage>;

    /// The newest messages of `channel` posted at or after `since`, newest first, at most
    /// `limit` (replies included where the platform lists them), for finding our markers.
    async fn recent_messages(
        &self,
        channel: &ChannelRef,
        since: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<RecentMessage>>;
}
