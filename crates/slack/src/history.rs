//! Catch-up for Slack: core's [`History`] over `conversations.history` and
//! `conversations.replies`, spending few calls (Slack limits both hard for commercially
//! distributed non-Marketplace apps since 2025-05-29: 1 request a minute, 15 messages a page).
//!
//! - [`History::changes_since`] reads **one** history page per call (`oldest` = the cursor,
//!   `inclusive=false`, `include_all_metadata=true`), then `conversations.replies` only for
//!   the threads in that page whose `latest_reply` is newer than the cursor. Slack pages
//!   newest first: when the window holds more than one page, the page returned is the
//!   newest part and `more` is `true` (the caller summarises the gap). Events come oldest
//!   first (by `ts`, replies after their root), bounded by `limit`; our own posts are left
//!   out. The cursor is the newest `ts` seen.
//! - [`History::recent_messages`] reads one history page from `since` and reports each
//!   message's marker (our `metadata.event_payload.marker`, returned because of
//!   `include_all_metadata=true`).
//!
//! Limitation: a thread whose root is older than the cursor and that got new replies is not
//! listed by `conversations.history`; those replies are not caught up here.

use async_trait::async_trait;
use serde_json::Value;
use switchboard_core::{
    ChannelRef, EventKind, History, HistoryCursor, HistoryPage, HistoryStart, MessageId,
    MessageRef, PlatformEvent, PostingIdentity, RecentMessage,
};
use time::OffsetDateTime;

use crate::client::Args;
use crate::connection::{SlackConnection, ts_order};
use crate::error::{Error, Result};
use crate::events::{OwnIdentity, SlackMessage, portable_message};
use crate::types::MessagesPage;

/// `ts` → time.
fn ts_time(ts: &str) -> OffsetDateTime {
    crate::events::ts_time(ts).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Time → the `ts` form Slack's `oldest` takes.
fn time_ts(t: OffsetDateTime) -> String {
    format!("{}.{:06}", t.unix_timestamp(), t.microsecond())
}

fn parse(raw: Value) -> Option<SlackMessage> {
    serde_json::from_value(raw).ok()
}

impl SlackConnection {
    /// The `limit` of one history page: the configured size, capped by the app's
    /// distribution (999, or 15 for non-Marketplace apps) and by `wanted`.
    pub fn history_page_limit(&self, wanted: usize) -> u32 {
        let wanted = u32::try_from(wanted.max(1)).unwrap_or(u32::MAX);
        self.options()
            .history_page_size
            .min(self.history_page_max())
            .min(wanted)
            .max(1)
    }

    #[allow(clippy::too_many_arguments)] // the method's query parameters, one each
    async fn history_page(
        &self,
        method: &str,
        channel: &ChannelRef,
        root: Option<&str>,
        oldest: &str,
        inclusive: bool,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<MessagesPage> {
        let mut q = vec![
            ("channel", channel.channel.to_string()),
            ("oldest", oldest.to_owned()),
            ("inclusive", inclusive.to_string()),
            ("limit", limit.to_string()),
            ("include_all_metadata", "true".to_owned()),
        ];
        if let Some(ts) = root {
            q.push(("ts", ts.to_owned()));
        }
        if let Some(c) = cursor {
            q.push(("cursor", c.to_owned()));
        }
        Ok(self
            .call::<MessagesPage>(method, Args::Query(q), None, true)
            .await?
            .body)
    }

    fn marker_of(&self, m: &SlackMessage) -> Option<String> {
        let md = m.metadata.as_ref()?;
        (md.event_type == self.options().marker_event_type)
            .then(|| md.event_payload.get("marker")?.as_str().map(str::to_owned))
            .flatten()
    }

    fn posted_event(
        &self,
        channel: &ChannelRef,
        m: &SlackMessage,
        own: &OwnIdentity,
    ) -> Option<PlatformEvent> {
        if own.is_own(m) {
            return None;
        }
        if m.subtype.as_deref().is_some_and(|s| {
            !matches!(
                s,
                "bot_message" | "file_share" | "thread_broadcast" | "me_message"
            )
        }) {
            return None;
        }
        let ts = m.ts.as_deref()?;
        let content = portable_message(m).ok()?;
        Some(PlatformEvent {
            event_id: format!("history:{}:{ts}", channel.channel),
            channel: channel.clone(),
            occurred_at: ts_time(ts),
            kind: EventKind::Posted {
                message: MessageId::new(ts).ok()?,
                content,
            },
        })
    }
}

/// How far past the limit a catch-up reads back (in messages) before it gives up on the
/// oldest part of the gap.
const HISTORY_READ_FACTOR: usize = 8;
/// The most `conversations.history` pages one catch-up call reads.
const MAX_READBACK_PAGES: usize = 20;

fn event_ts(e: &PlatformEvent) -> &str {
    match &e.kind {
        EventKind::Posted { message, .. } => message.as_str(),
        _ => "",
    }
}

#[async_trait]
impl History for SlackConnection {
    async fn changes_since(
        &self,
        channel: &ChannelRef,
        start: &HistoryStart,
        limit: usize,
    ) -> Result<HistoryPage> {
        let oldest = match start {
            HistoryStart::Cursor { cursor } => {
                if cursor.0.split_once('.').is_none_or(|(s, f)| {
                    s.is_empty() || !s.bytes().chain(f.bytes()).all(|b| b.is_ascii_digit())
                }) {
                    return Err(Error::invalid(format!(
                        "{:?} is not a Slack history cursor (a message ts)",
                        cursor.0
                    )));
                }
                cursor.0.clone()
            }
            HistoryStart::Time { since } => time_ts(*since),
        };
        if limit == 0 {
            return Ok(HistoryPage {
                events: Vec::new(),
                cursor: HistoryCursor(oldest),
                more: false,
            });
        }
        let own = self.own_identity().await?;
        let page_limit = self.history_page_limit(limit);
        // `conversations.history` pages from the newest message back towards `oldest`: to
        // replay the oldest changes first, read back to `oldest` (bounded), then keep the
        // oldest `limit`. Under the 2025 limits of non-Marketplace apps (one call a minute,
        // 15 messages) only the newest page is read; the caller summarises the rest.
        let max_pages = if self.history_page_max() < 100 {
            1
        } else {
            MAX_READBACK_PAGES
        };
        let mut raws: Vec<Value> = Vec::new();
        let mut cursor: Option<String> = None;
        let mut unread = false;
        let mut pages = 0usize;
        loop {
            pages += 1;
            let page = self
                .history_page(
                    "conversations.history",
                    channel,
                    None,
                    &oldest,
                    false,
                    page_limit,
                    cursor.as_deref(),
                )
                .await?;
            raws.extend(page.messages);
            let next = page
                .response_metadata
                .and_then(|m| m.next_cursor)
                .filter(|c| !c.is_empty());
            match next {
                Some(c) if page.has_more => {
                    if pages >= max_pages || raws.len() >= limit.saturating_mul(HISTORY_READ_FACTOR)
                    {
                        // A gap far past the limit: what lies before is summarised.
                        unread = true;
                        break;
                    }
                    cursor = Some(c);
                }
                _ => break,
            }
        }
        let page = MessagesPage {
            messages: raws,
            has_more: unread,
            response_metadata: None,
        };
        let mut more = page.has_more;
        let mut newest = oldest.clone();
        let mut events = Vec::new();
        let mut threads = Vec::new();
        for raw in page.messages {
            let Some(m) = parse(raw.clone()) else {
                continue;
            };
            let Some(ts) = m.ts.clone() else { continue };
            if ts_order(&ts, &newest).is_gt() {
                newest = ts.clone();
            }
            let latest_reply = raw.get("latest_reply").and_then(Value::as_str);
            if raw.get("reply_count").and_then(Value::as_u64).unwrap_or(0) > 0
                && latest_reply.is_some_and(|r| ts_order(r, &oldest).is_gt())
            {
                threads.push(ts.clone());
            }
            events.extend(self.posted_event(channel, &m, &own));
        }
        // Replies only for the threads with new replies, one page each.
        for root in threads {
            let replies = self
                .history_page(
                    "conversations.replies",
                    channel,
                    Some(&root),
                    &oldest,
                    false,
                    page_limit,
                    None,
                )
                .await?;
            more |= replies.has_more;
            for raw in replies.messages {
                let Some(m) = parse(raw) else { continue };
                let Some(ts) = m.ts.clone() else { continue };
                // The root comes first in replies; it is in the history page already.
                if ts == root || m.subtype.as_deref() == Some("thread_broadcast") {
                    continue;
                }
                if ts_order(&ts, &newest).is_gt() {
                    newest = ts.clone();
                }
                events.extend(self.posted_event(channel, &m, &own));
            }
        }
        events.sort_by(|a, b| ts_order(event_ts(a), event_ts(b)));
        events.dedup_by(|a, b| event_ts(a) == event_ts(b));
        if events.len() > limit {
            events.truncate(limit);
            more = true;
            newest = events
                .last()
                .map(|e| event_ts(e).to_owned())
                .unwrap_or(newest);
        }
        Ok(HistoryPage {
            events,
            cursor: HistoryCursor(newest),
            more,
        })
    }

    async fn recent_messages(
        &self,
        channel: &ChannelRef,
        since: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<RecentMessage>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let own = self.own_identity().await?;
        let page = self
            .history_page(
                "conversations.history",
                channel,
                None,
                &time_ts(since),
                true,
                self.history_page_limit(limit),
                None,
            )
            .await?;
        let mut out: Vec<RecentMessage> = page
            .messages
            .into_iter()
            .filter_map(parse)
            .filter_map(|m| {
                let ts = m.ts.clone()?;
                let thread_root = m
                    .thread_ts
                    .as_deref()
                    .filter(|t| *t != ts)
                    .and_then(|t| MessageId::new(t).ok());
                Some(RecentMessage {
                    reference: MessageRef {
                        channel: channel.clone(),
                        message: MessageId::new(&ts).ok()?,
                        thread_root,
                    },
                    marker: self.marker_of(&m),
                    posted_by: own.is_own(&m).then_some(PostingIdentity::ServiceAccount),
                    posted_at: ts_time(&ts),
                })
            })
            .collect();
        out.sort_by(|a, b| ts_order(b.reference.message.as_str(), a.reference.message.as_str()));
        out.truncate(limit);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ts_and_time_convert_both_ways() {
        let t = ts_time("1700000000.000100");
        assert_eq!(t.unix_timestamp(), 1_700_000_000);
        assert_eq!(t.microsecond(), 100);
        assert_eq!(time_ts(t), "1700000000.000100");
        assert!(ts_order("1700000000.000100", "999999999.999999").is_gt());
        assert!(ts_order("1700000000.000099", "1700000000.000100").is_lt());
    }
}
