//! Catch-up through delta queries per channel, and core's [`History`] for Teams.
//!
//! Delta is **never the live path**: Microsoft allows polling a resource for changes once a
//! day and requires change notifications for anything more frequent ("Polling
//! requirements", Teams API overview). It is for catch-up after downtime, after
//! `subscriptionRemoved`, and after a paused subscription. Every first request of a round
//! carries `$filter=lastModifiedDateTime gt {time}` (Graph otherwise returns up to 8 months
//! of history); a round follows `@odata.nextLink` to an `@odata.deltaLink`, which is the
//! cursor to resume from. An expired delta link (410, or a 400 about the token / sync
//! state) restarts the round from the cursor's time, never from zero.

use std::collections::HashSet;

use async_trait::async_trait;
use switchboard_core::{
    ChannelRef, Error, History, HistoryCursor, HistoryPage, HistoryStart, MessageId, MessageRef,
    PlatformEvent, PlatformKind, PostingIdentity, RecentMessage, Result, UserId,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use url::Url;

use crate::connection::MsTeamsConnection;
use crate::events::{is_user_message, marker_of, message_events};
use crate::graph::GraphRequest;
use crate::wire::ChatMessage;

/// The page size of a delta round (Graph's maximum for channel messages).
pub const DELTA_PAGE_SIZE: usize = 50;
/// The page size of `recent_messages` (Graph's maximum for listing channel messages).
pub const LIST_PAGE_SIZE: usize = 50;
/// How far back a restarted round reaches before the cursor's time (clock skew, changes in
/// flight when the cursor was taken).
pub const RESTART_OVERLAP: time::Duration = time::Duration::minutes(5);

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
    /// The events of the page (messages, their replies — all of them, following
    /// `replies@odata.nextLink` — and deletions), oldest first, replies after their root;
    /// system messages are left out.
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
    /// The stored link had expired and the round started over from the date filter
    /// (events may repeat; the inbox deduplicates them by event id).
    pub restarted: bool,
}

/// Formats the `lastModifiedDateTime gt` filter of a first delta request.
pub fn delta_filter(since: OffsetDateTime) -> Result<String> {
    let t = since
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .map_err(|e| Error::invalid(format!("cannot use {since} as a delta start: {e}")))?
        .format(&Rfc3339)
        .map_err(|e| Error::invalid(format!("cannot use {since} as a delta start: {e}")))?;
    Ok(format!("lastModifiedDateTime gt {t}"))
}

/// Whether a failure on a stored delta link means the link expired (restart the round).
fn is_expired_link(status: Option<u16>, code: Option<&str>) -> bool {
    let code = code.unwrap_or("").to_ascii_lowercase();
    match status {
        Some(404 | 410) => true,
        Some(400) => {
            code.contains("resync") || code.contains("syncstate") || code.contains("token")
        }
        _ => false,
    }
}

/// The opaque history cursor: when it was taken, and the delta link.
fn encode_cursor(taken: OffsetDateTime, link: &str) -> HistoryCursor {
    HistoryCursor(format!("{}|{link}", taken.unix_timestamp()))
}

fn decode_cursor(cursor: &HistoryCursor) -> Result<(OffsetDateTime, String)> {
    let (t, link) = cursor
        .0
        .split_once('|')
        .ok_or_else(|| Error::invalid("the history cursor is not a Teams delta cursor"))?;
    let t = t
        .parse::<i64>()
        .ok()
        .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
        .ok_or_else(|| Error::invalid("the history cursor's time is unreadable"))?;
    Ok((t, link.to_owned()))
}

fn check_channel(channel: &ChannelRef) -> Result<()> {
    if channel.platform != PlatformKind::Msteams {
        return Err(Error::invalid(format!(
            "{channel} is not a Microsoft Teams channel"
        )));
    }
    Ok(())
}

impl MsTeamsConnection {
    /// The first URL of a fresh delta round for `channel`, bounded by `since` (the required
    /// date range: `$filter=lastModifiedDateTime gt {since}`).
    pub fn delta_start(&self, channel: &ChannelRef, since: OffsetDateTime) -> Result<Url> {
        self.delta_start_paged(channel, since, DELTA_PAGE_SIZE)
    }

    /// [`MsTeamsConnection::delta_start`] with pages of `top` root messages (1..=50).
    fn delta_start_paged(
        &self,
        channel: &ChannelRef,
        since: OffsetDateTime,
        top: usize,
    ) -> Result<Url> {
        check_channel(channel)?;
        let filter = delta_filter(since)?;
        let top = top.clamp(1, DELTA_PAGE_SIZE).to_string();
        Ok(self.graph.url(
            &[
                "teams",
                channel.team.as_str(),
                "channels",
                channel.channel.as_str(),
                "messages",
                "delta",
            ],
            &[
                ("$top", top.as_str()),
                ("$expand", "replies"),
                ("$filter", filter.as_str()),
            ],
        ))
    }

    /// Every reply of `msg`: the expanded ones plus the pages behind
    /// `replies@odata.nextLink`, oldest first.
    async fn all_replies(&self, channel: &ChannelRef, msg: &mut ChatMessage) -> Result<()> {
        let mut next = match msg.replies_next_link.take() {
            Some(l) if !l.is_empty() => Some(self.graph.resolve_link(&l)?),
            _ => None,
        };
        while let Some(u) = next.take() {
            let page = self
                .graph
                .get_page::<ChatMessage>(u)
                .await
                .map_err(|e| self.team_error(channel.team.as_str(), e))?;
            next = page.next_link;
            msg.replies.extend(page.items);
        }
        let mut seen = HashSet::new();
        msg.replies.retain(|r| seen.insert(r.id.clone()));
        msg.replies
            .sort_by(|a, b| a.created_date_time.cmp(&b.created_date_time));
        Ok(())
    }

    /// Fetches one delta page from `link` (a start URL, a next link, or a stored delta
    /// link, which must be on the Graph base).
    pub async fn delta_page(&self, channel: &ChannelRef, link: &Url) -> Result<DeltaPage> {
        self.delta_page_raw(channel, link)
            .await
            .map_err(|(_, _, e)| e)
    }

    async fn delta_page_raw(
        &self,
        channel: &ChannelRef,
        link: &Url,
    ) -> std::result::Result<DeltaPage, (Option<u16>, Option<String>, Error)> {
        let link = self
            .graph
            .resolve_link(link.as_str())
            .map_err(|e| (None, None, e))?;
        let req = GraphRequest::get(link);
        let resp = self.graph.send(&req).await.map_err(|f| {
            (
                f.status,
                f.code.clone(),
                self.team_error(channel.team.as_str(), f.error),
            )
        })?;
        let page = self
            .graph
            .parse_page::<ChatMessage>(&resp.body, "GET channel message delta")
            .map_err(|e| (None, None, e))?;
        let mut items = page.items;
        // oldest first (Graph's order is by change; keep it stable, by last change)
        items.sort_by(|a, b| a.last_modified_date_time.cmp(&b.last_modified_date_time));
        let mut events = Vec::new();
        for m in &mut items {
            self.all_replies(channel, m)
                .await
                .map_err(|e| (None, None, e))?;
            events.extend(message_events(channel, m));
        }
        let next = match (page.next_link, page.delta_link) {
            (Some(n), _) => DeltaNext::More(n),
            (None, Some(d)) => {
                self.graph.resolve_link(&d).map_err(|e| (None, None, e))?;
                DeltaNext::Done(d)
            }
            (None, None) => {
                return Err((
                    None,
                    None,
                    Error::upstream(
                        "a delta page carried neither @odata.nextLink nor @odata.deltaLink",
                    ),
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
    /// given, else from `since` (the date filter Graph requires). An expired cursor restarts
    /// the round from `since`, never from zero, and says so.
    pub async fn channel_delta(
        &self,
        channel: &ChannelRef,
        cursor: Option<&str>,
        since: OffsetDateTime,
    ) -> Result<DeltaBatch> {
        let start = match cursor {
            Some(c) => self.graph.resolve_link(c)?,
            None => self.delta_start(channel, since)?,
        };
        match self.delta_round(channel, start).await {
            Ok((events, delta_link, skipped)) => Ok(DeltaBatch {
                events,
                delta_link,
                skipped,
                restarted: false,
            }),
            Err((status, code, _))
                if cursor.is_some() && is_expired_link(status, code.as_deref()) =>
            {
                tracing::info!(%channel, %since, "the stored delta link expired; starting a new round from the date filter");
                let (events, delta_link, skipped) = self
                    .delta_round(channel, self.delta_start(channel, since)?)
                    .await
                    .map_err(|(_, _, e)| e)?;
                Ok(DeltaBatch {
                    events,
                    delta_link,
                    skipped,
                    restarted: true,
                })
            }
            Err((_, _, e)) => Err(e),
        }
    }

    async fn delta_round(
        &self,
        channel: &ChannelRef,
        start: Url,
    ) -> std::result::Result<
        (Vec<PlatformEvent>, String, usize),
        (Option<u16>, Option<String>, Error),
    > {
        let mut events = Vec::new();
        let mut skipped = 0;
        let mut link = start;
        loop {
            let page = self.delta_page_raw(channel, &link).await?;
            events.extend(page.events);
            skipped += page.skipped;
            match page.next {
                DeltaNext::More(n) => link = n,
                DeltaNext::Done(d) => return Ok((events, d, skipped)),
            }
        }
    }

    /// Who of ours posted `msg`, when it was one of our identities.
    fn our_poster(&self, msg: &ChatMessage, me: &str) -> Option<PostingIdentity> {
        let from = msg.from.as_ref()?.user.as_ref()?.id.as_deref()?;
        if from == me {
            return Some(PostingIdentity::ServiceAccount);
        }
        let user = UserId::new(from).ok()?;
        self.is_linked(&user)
            .then_some(PostingIdentity::LinkedUser { user })
    }
}

fn posted_at(m: &ChatMessage) -> Option<OffsetDateTime> {
    m.created_date_time
        .as_deref()
        .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
}

#[async_trait]
impl History for MsTeamsConnection {
    /// Delta from the cursor (a delta link) or from the time (the date filter), page by
    /// page, stopping once `limit` events are collected: the cursor is then the next page's
    /// link (`more`), otherwise the round's delta link. Replies come after their root. An
    /// expired cursor restarts from its time minus [`RESTART_OVERLAP`].
    async fn changes_since(
        &self,
        channel: &ChannelRef,
        start: &HistoryStart,
        limit: usize,
    ) -> Result<HistoryPage> {
        check_channel(channel)?;
        let limit = limit.max(1);
        let (since, mut link, from_cursor) = match start {
            // pages no larger than the limit, so a page boundary falls where the limit does
            HistoryStart::Time { since } => (
                *since,
                self.delta_start_paged(channel, *since, limit)?,
                false,
            ),
            HistoryStart::Cursor { cursor } => {
                let (taken, link) = decode_cursor(cursor)?;
                (
                    taken - RESTART_OVERLAP,
                    self.graph.resolve_link(&link)?,
                    true,
                )
            }
        };
        let taken = OffsetDateTime::now_utc();
        let mut events = Vec::new();
        let mut first = true;
        loop {
            let page = match self.delta_page_raw(channel, &link).await {
                Ok(p) => p,
                Err((status, code, _))
                    if first && from_cursor && is_expired_link(status, code.as_deref()) =>
                {
                    tracing::info!(%channel, %since, "the history cursor expired; restarting from its time");
                    link = self.delta_start_paged(channel, since, limit)?;
                    first = false;
                    continue;
                }
                Err((_, _, e)) => return Err(e),
            };
            first = false;
            let room = limit - events.len();
            let overflow = page.events.len() > room;
            events.extend(page.events.into_iter().take(room));
            match page.next {
                DeltaNext::More(n) => {
                    if overflow || events.len() >= limit {
                        return Ok(HistoryPage {
                            events,
                            cursor: encode_cursor(taken, n.as_str()),
                            more: true,
                        });
                    }
                    link = n;
                }
                DeltaNext::Done(d) => {
                    return Ok(HistoryPage {
                        events,
                        cursor: encode_cursor(taken, &d),
                        more: overflow,
                    });
                }
            }
        }
    }

    /// `GET …/messages?$top=50&$expand=replies` (newest first), following next links while
    /// messages are at or after `since`, until `limit`: roots and replies posted at or after
    /// `since`, newest first, each with the marker its body carries and which of our
    /// identities posted it.
    async fn recent_messages(
        &self,
        channel: &ChannelRef,
        since: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<RecentMessage>> {
        check_channel(channel)?;
        let me = self.me().await?.id;
        let top = LIST_PAGE_SIZE.to_string();
        let mut next = Some(self.graph.url(
            &[
                "teams",
                channel.team.as_str(),
                "channels",
                channel.channel.as_str(),
                "messages",
            ],
            &[("$top", top.as_str()), ("$expand", "replies")],
        ));
        let mut out: Vec<RecentMessage> = Vec::new();
        while let Some(u) = next.take() {
            let page = self
                .graph
                .get_page::<ChatMessage>(u)
                .await
                .map_err(|e| self.team_error(channel.team.as_str(), e))?;
            let mut older_seen = false;
            for mut m in page.items {
                if m.replies_next_link.is_some() {
                    self.all_replies(channel, &mut m).await?;
                }
                let root_id = MessageId::new(m.id.clone()).ok();
                let mut push = |msg: &ChatMessage, root: Option<&MessageId>| {
                    if !is_user_message(msg) || msg.deleted_date_time.is_some() {
                        return;
                    }
                    let (Some(at), Ok(id)) = (posted_at(msg), MessageId::new(msg.id.clone()))
                    else {
                        return;
                    };
                    if at < since {
                        return;
                    }
                    out.push(RecentMessage {
                        reference: MessageRef {
                            channel: channel.clone(),
                            message: id,
                            thread_root: root.cloned(),
                        },
                        marker: msg.body.as_ref().and_then(|b| marker_of(&b.content)),
                        posted_by: self.our_poster(msg, &me),
                        posted_at: at,
                    });
                };
                for r in &m.replies {
                    push(r, root_id.as_ref());
                }
                push(&m, None);
                // a thread with recent replies may have an old root: keep listing while
                // any root or reply of the page is recent
                let newest = std::iter::once(&m)
                    .chain(m.replies.iter())
                    .filter_map(posted_at)
                    .max();
                if newest.is_some_and(|t| t < since) {
                    older_seen = true;
                }
            }
            if !older_seen && out.len() < limit {
                next = page.next_link;
            }
        }
        out.sort_by_key(|m| std::cmp::Reverse(m.posted_at));
        out.truncate(limit);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_cursors_and_expiry() {
        let t = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap()
            + time::Duration::milliseconds(250);
        assert_eq!(
            delta_filter(t).unwrap(),
            "lastModifiedDateTime gt 2023-11-14T22:13:20Z"
        );
        let c = encode_cursor(t, "https://graph/v1.0/x?$deltatoken=a|b");
        let (back, link) = decode_cursor(&c).unwrap();
        assert_eq!(back.unix_timestamp(), 1_700_000_000);
        assert_eq!(link, "https://graph/v1.0/x?$deltatoken=a|b");
        assert!(decode_cursor(&HistoryCursor("nope".into())).is_err());
        assert!(is_expired_link(Some(410), None));
        assert!(is_expired_link(Some(400), Some("syncStateNotFound")));
        assert!(is_expired_link(Some(400), Some("resyncRequired")));
        assert!(!is_expired_link(Some(400), Some("BadRequest")));
        assert!(!is_expired_link(Some(403), Some("resyncRequired")));
        assert!(!is_expired_link(None, None));
    }
}
