//! Delta polling per channel: for deployments without a public URL and for catch-up after
//! downtime. A round follows `@odata.nextLink` to an `@odata.deltaLink`; the caller stores
//! that link (e.g. with `SyncStateStore::put_cursor`) and resumes from it next time.

use switchboard_core::{ChannelRef, Error, ErrorKind, PlatformEvent, PlatformKind, Result};
use url::Url;

use crate::connection::MsTeamsConnection;
use crate::events::message_events;
use crate::wire::ChatMessage;

/// The page size of a delta round (Graph's maximum for channel messages).
pub const DELTA_PAGE_SIZE: &str = "50";

/// Where a delta page leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeltaNext {
    /// More pages in this round: fetch this link next.
    More(Url),
    /// The round is complete: store this link and resume from it next time.
    Done(String),
}

/// One page of a delta round.
#[derive(Debug, Clone)]
pub struct DeltaPage {
    /// The events of the page (messages, their expanded replies, deletions), in Graph's
    /// order; system messages are left out.
    pub events: Vec<PlatformEvent>,
    /// What to do next.
    pub next: DeltaNext,
    /// Items skipped because they could not be parsed.
    pub skipped: usize,
}

/// A complete delta round.
#[derive(Debug, Clone)]
pub struct DeltaBatch {
    /// Every event of the round.
    pub events: Vec<PlatformEvent>,
    /// The link to store and resume from.
    pub delta_link: String,
    /// Items skipped because they could not be parsed.
    pub skipped: usize,
    /// The stored link had expired and the round started over (events may repeat; the
    /// inbox deduplicates them by event id).
    pub restarted: bool,
}

impl MsTeamsConnection {
    /// The first URL of a fresh delta round for `channel`.
    pub fn delta_start(&self, channel: &ChannelRef) -> Result<Url> {
        if channel.platform != PlatformKind::Msteams {
            return Err(Error::invalid(format!(
                "{channel} is not a Microsoft Teams channel"
            )));
        }
        Ok(self.graph.url(
            &[
                "teams",
                channel.team.as_str(),
                "channels",
                channel.channel.as_str(),
                "messages",
                "delta",
            ],
            &[("$top", DELTA_PAGE_SIZE), ("$expand", "replies")],
        ))
    }

    /// Fetches one delta page from `link` (a start URL, a next link, or a stored delta
    /// link, which must be on the Graph base).
    pub async fn delta_page(&self, channel: &ChannelRef, link: &Url) -> Result<DeltaPage> {
        let link = self.graph.resolve_link(link.as_str())?;
        let page = self
            .graph
            .get_page::<ChatMessage>(link)
            .await
            .map_err(|e| self.team_error(channel.team.as_str(), e))?;
        let mut events = Vec::new();
        for m in &page.items {
            events.extend(message_events(channel, m));
        }
        let next = match (page.next_link, page.delta_link) {
            (Some(n), _) => DeltaNext::More(n),
            (None, Some(d)) => {
                self.graph.resolve_link(&d)?;
                DeltaNext::Done(d)
            }
            (None, None) => {
                return Err(Error::upstream(
                    "a delta page carried neither @odata.nextLink nor @odata.deltaLink",
                ));
            }
        };
        Ok(DeltaPage {
            events,
            next,
            skipped: page.skipped,
        })
    }

    /// Runs a whole delta round for `channel`: from `cursor` (a stored delta link) when
    /// given, else from the start (Graph covers about the last 8 months). An expired cursor
    /// (404/410 from Graph) restarts the round and says so.
    pub async fn channel_delta(
        &self,
        channel: &ChannelRef,
        cursor: Option<&str>,
    ) -> Result<DeltaBatch> {
        let start = match cursor {
            Some(c) => self.graph.resolve_link(c)?,
            None => self.delta_start(channel)?,
        };
        match self.delta_round(channel, start).await {
            Ok((events, delta_link, skipped)) => Ok(DeltaBatch {
                events,
                delta_link,
                skipped,
                restarted: false,
            }),
            Err(e) if cursor.is_some() && matches!(e.kind(), ErrorKind::NotFound) => {
                tracing::info!(%channel, "the stored delta link expired; starting a new round");
                let (events, delta_link, skipped) = self
                    .delta_round(channel, self.delta_start(channel)?)
                    .await?;
                Ok(DeltaBatch {
                    events,
                    delta_link,
                    skipped,
                    restarted: true,
                })
            }
            Err(e) => Err(e),
        }
    }

    async fn delta_round(
        &self,
        channel: &ChannelRef,
        start: Url,
    ) -> Result<(Vec<PlatformEvent>, String, usize)> {
        let mut events = Vec::new();
        let mut skipped = 0;
        let mut link = start;
        loop {
            let page = self.delta_page(channel, &link).await?;
            events.extend(page.events);
            skipped += page.skipped;
            match page.next {
                DeltaNext::More(n) => link = n,
                DeltaNext::Done(d) => return Ok((events, d, skipped)),
            }
        }
    }
}
