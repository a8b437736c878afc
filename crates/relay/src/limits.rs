//! What a target channel accepts: the longest message and the daily cap.
//!
//! Teams refuses message bodies over about 28 KB of HTML and allows 3,000 messages a day into
//! one channel; Slack truncates text over 40,000 characters. The relay sees only the portable
//! model, so [`rendered_size`] estimates the size of the rendering from above (every
//! character as its UTF-8 bytes, escapes and tags counted), which keeps each part under both
//! an HTML byte limit and a character limit.

use std::collections::HashMap;

use switchboard_core::{Block, Inline, Mention, PlatformKind, RichText};

/// Teams' limit on a channel message's HTML body, in bytes (about 28 KB).
pub const TEAMS_MAX_MESSAGE_BYTES: usize = 28_000;
/// Slack's limit on a message's text, in characters.
pub const SLACK_MAX_MESSAGE_CHARS: usize = 40_000;
/// Messages Teams accepts into one channel per day.
pub const TEAMS_DAILY_CAP: u64 = 3_000;
/// Room kept in every part for what the adapter adds (the sender's name, the marker, a
/// "part 2 of 3" line).
pub const PART_MARGIN: usize = 1_024;

/// The limits of one target platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetLimits {
    /// The largest message, as [`rendered_size`] measures it.
    pub max_message: usize,
    /// Messages the platform accepts into one channel per UTC day, when it has a cap.
    pub daily_cap: Option<u64>,
}

impl TargetLimits {
    /// The documented limits: Teams ≈ 28 KB and 3,000 a day, Slack 40,000 characters.
    /// A platform not listed gets Slack's message size and no cap.
    pub fn documented() -> HashMap<PlatformKind, TargetLimits> {
        let mut m = HashMap::new();
        m.insert(
            PlatformKind::Msteams,
            TargetLimits {
                max_message: TEAMS_MAX_MESSAGE_BYTES,
                daily_cap: Some(TEAMS_DAILY_CAP),
            },
        );
        m.insert(
            PlatformKind::Slack,
            TargetLimits {
                max_message: SLACK_MAX_MESSAGE_CHARS,
                daily_cap: None,
            },
        );
        m
    }

    /// The budget of one part's content: the limit less [`PART_MARGIN`].
    pub fn part_budget(&self) -> usize {
        self.max_message.saturating_sub(PART_MARGIN).max(256)
    }
}

impl Default for TargetLimits {
    fn default() -> Self {
        TargetLimits {
            max_message: SLACK_MAX_MESSAGE_CHARS,
            daily_cap: None,
        }
    }
}

/// The percentage of a daily cap at which the admin is warned (an audit entry).
pub const DAILY_CAP_WARN_PERCENT: u64 = 90;

/// An upper estimate of the size of `text` rendered as HTML (and so of its mrkdwn, which is
/// never longer): text bytes with HTML escapes, plus the tags of every element.
pub fn rendered_size(text: &RichText) -> usize {
    let mut n = 0;
    for (i, b) in text.blocks.iter().enumerate() {
        if i > 0 {
            n += 2;
        }
        n += block_size(b);
    }
    n
}

fn escaped(s: &str) -> usize {
    s.bytes()
        .map(|b| match b {
            b'&' => 5,
            b'<' | b'>' => 4,
            b'"' | b'\'' => 6,
            b'\n' => 5,
            _ => 1,
        })
        .sum()
}

fn block_size(b: &Block) -> usize {
    match b {
        Block::Paragraph { inlines } => 7 + inlines_size(inlines),
        Block::CodeBlock { language, code } => {
            24 + language.as_deref().map_or(0, escaped) + escaped(code)
        }
        Block::Quote { blocks } => 25 + blocks.iter().map(block_size).sum::<usize>(),
        Block::List { items, .. } => {
            20 + items
                .iter()
                .map(|item| 9 + item.iter().map(block_size).sum::<usize>())
                .sum::<usize>()
        }
    }
}

fn inlines_size(inlines: &[Inline]) -> usize {
    inlines.iter().map(inline_size).sum()
}

fn inline_size(i: &Inline) -> usize {
    match i {
        Inline::Text { text } => escaped(text),
        Inline::Bold { inlines } | Inline::Italic { inlines } | Inline::Strike { inlines } => {
            9 + inlines_size(inlines)
        }
        Inline::Code { code } => 13 + escaped(code),
        Inline::Link { url, inlines } => 30 + escaped(url) + inlines_size(inlines),
        Inline::Mention { mention } => match mention {
            Mention::User { id, display_name } => 40 + id.as_str().len() + escaped(display_name),
            Mention::Channel { id, display_name } => 40 + id.as_str().len() + escaped(display_name),
            Mention::Everyone | Mention::Here => 40,
        },
        Inline::Emoji { .. } => 128,
        Inline::LineBreak => 5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_is_never_below_the_text_length() {
        let t = RichText::plain("a < b & \"c\" é");
        assert!(rendered_size(&t) >= t.to_plain_text().len());
        assert!(rendered_size(&t) >= t.to_plain_text().chars().count());
        // escapes are counted
        assert!(rendered_size(&RichText::plain("<".repeat(100))) >= 400);
    }

    #[test]
    fn documented_limits() {
        let m = TargetLimits::documented();
        assert_eq!(m[&PlatformKind::Msteams].daily_cap, Some(3_000));
        assert_eq!(m[&PlatformKind::Slack].max_message, 40_000);
        assert!(m[&PlatformKind::Msteams].part_budget() < 28_000);
    }
}
