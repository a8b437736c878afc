//! The portable message model every adapter converts to and from: rich text, mentions,
//! emoji, attachments, threads and sender attribution; and the events platforms report.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ids::*;

/// Formatted text: a sequence of blocks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RichText {
    /// The blocks, in order.
    pub blocks: Vec<Block>,
}

/// A block-level element.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
    /// A paragraph of inline content.
    Paragraph {
        /// Its content.
        inlines: Vec<Inline>,
    },
    /// Preformatted code.
    CodeBlock {
        /// Language hint, if any.
        language: Option<String>,
        /// The code, verbatim.
        code: String,
    },
    /// A quotation.
    Quote {
        /// Quoted blocks.
        blocks: Vec<Block>,
    },
    /// A bulleted or numbered list; each item is a list of blocks.
    List {
        /// Numbered when `true`.
        ordered: bool,
        /// The number of the first item of a numbered list, when it is not 1.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start: Option<u64>,
        /// The items.
        items: Vec<Vec<Block>>,
    },
}

/// An inline element.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Inline {
    /// Plain text (unescaped).
    Text {
        /// The text.
        text: String,
    },
    /// Bold.
    Bold {
        /// Content.
        inlines: Vec<Inline>,
    },
    /// Italic.
    Italic {
        /// Content.
        inlines: Vec<Inline>,
    },
    /// Strikethrough.
    Strike {
        /// Content.
        inlines: Vec<Inline>,
    },
    /// Inline code, verbatim.
    Code {
        /// The code.
        code: String,
    },
    /// A hyperlink.
    Link {
        /// Target URL.
        url: String,
        /// Link text (empty: show the URL).
        inlines: Vec<Inline>,
    },
    /// A mention.
    Mention {
        /// Who or what.
        mention: Mention,
    },
    /// An emoji.
    Emoji {
        /// Which.
        emoji: Emoji,
    },
    /// A hard line break inside a paragraph.
    LineBreak,
}

/// Who or what a mention points at. IDs are of the platform the message came from; the
/// relay rewrites them through the identity map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Mention {
    /// A user.
    User {
        /// Platform user id.
        id: UserId,
        /// The name shown (used when the user has no counterpart).
        display_name: String,
    },
    /// A channel.
    Channel {
        /// Platform channel id.
        id: ChannelId,
        /// The name shown.
        display_name: String,
    },
    /// Everyone in the channel (Slack `<!channel>` / `<!everyone>`, Teams channel or team
    /// mention).
    Everyone,
    /// The members of the channel who are active now (Slack `<!here>`). Platforms without
    /// the notion render it as plain text, never as a mass mention.
    Here,
}

/// An emoji: a Unicode character sequence or a custom (workspace) emoji by name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Emoji {
    /// A Unicode emoji, e.g. "👍".
    Unicode {
        /// The characters.
        value: String,
        /// Its shortcode without colons, when known (e.g. `thumbsup`).
        name: Option<String>,
    },
    /// A custom emoji known by name only (e.g. `partyparrot`).
    Custom {
        /// Name without colons.
        name: String,
    },
}

/// A file attached to a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// File name.
    pub name: String,
    /// Where the file can be fetched (with the origin platform's credentials).
    pub url: String,
    /// MIME type, when known.
    pub mime_type: Option<String>,
    /// Size in bytes, when known.
    pub size: Option<u64>,
}

/// Who sent a message, for attribution on the other side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sender {
    /// The origin platform.
    pub platform: PlatformKind,
    /// The user on the origin platform.
    pub user: UserId,
    /// The name to show.
    pub display_name: String,
    /// Avatar URL to show, when known.
    pub avatar_url: Option<String>,
    /// Verified email, for identity matching.
    pub email: Option<String>,
}

/// A message in portable form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortableMessage {
    /// Who wrote it.
    pub sender: Sender,
    /// The formatted body.
    pub text: RichText,
    /// Files.
    pub attachments: Vec<Attachment>,
    /// The thread root this is a reply to, on the same platform, if any.
    pub thread_root: Option<MessageId>,
}

/// The largest message body accepted, in bytes of plain text (Graph allows about 28 KB;
/// Slack truncates at 40,000 characters).
pub const MAX_TEXT_BYTES: usize = 28 * 1024;

impl RichText {
    /// One paragraph of plain text.
    pub fn plain(text: impl Into<String>) -> Self {
        RichText {
            blocks: vec![Block::Paragraph {
                inlines: vec![Inline::Text { text: text.into() }],
            }],
        }
    }

    /// Whether there is no content at all.
    pub fn is_empty(&self) -> bool {
        self.to_plain_text().trim().is_empty()
    }

    /// A plain-text rendering: paragraphs separated by blank lines, mentions as `@Name`,
    /// links as `text (url)`, custom emoji as `:name:`.
    pub fn to_plain_text(&self) -> String {
        let mut out = String::new();
        for (i, b) in self.blocks.iter().enumerate() {
            if i > 0 {
                out.push_str("\n\n");
            }
            plain_block(b, &mut out);
        }
        out
    }

    /// Every user mentioned, in order of appearance.
    pub fn mentioned_users(&self) -> Vec<&UserId> {
        let mut out = Vec::new();
        for b in &self.blocks {
            collect_block(b, &mut out);
        }
        out
    }
}

fn plain_block(b: &Block, out: &mut String) {
    match b {
        Block::Paragraph { inlines } => plain_inlines(inlines, out),
        Block::CodeBlock { code, .. } => out.push_str(code),
        Block::Quote { blocks } => {
            let mut inner = String::new();
            for (i, b) in blocks.iter().enumerate() {
                if i > 0 {
                    inner.push_str("\n\n");
                }
                plain_block(b, &mut inner);
            }
            for (i, line) in inner.lines().enumerate() {
                if i > 0 {
                    out.push('\n');
                }
                out.push_str("> ");
                out.push_str(line);
            }
        }
        Block::List {
            ordered,
            start,
            items,
        } => {
            let first = start.unwrap_or(1);
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push('\n');
                }
                if *ordered {
                    out.push_str(&format!("{}. ", first.saturating_add(i as u64)));
                } else {
                    out.push_str("• ");
                }
                for (j, b) in item.iter().enumerate() {
                    if j > 0 {
                        out.push(' ');
                    }
                    plain_block(b, out);
                }
            }
        }
    }
}

fn plain_inlines(inlines: &[Inline], out: &mut String) {
    for i in inlines {
        match i {
            Inline::Text { text } => out.push_str(text),
            Inline::Bold { inlines } | Inline::Italic { inlines } | Inline::Strike { inlines } => {
                plain_inlines(inlines, out)
            }
            Inline::Code { code } => out.push_str(code),
            Inline::Link { url, inlines } => {
                if inlines.is_empty() {
                    out.push_str(url);
                } else {
                    let mut text = String::new();
                    plain_inlines(inlines, &mut text);
                    if text == *url {
                        out.push_str(url);
                    } else {
                        out.push_str(&format!("{text} ({url})"));
                    }
                }
            }
            Inline::Mention { mention } => match mention {
                Mention::User { display_name, .. } => {
                    out.push('@');
                    out.push_str(display_name);
                }
                Mention::Channel { display_name, .. } => {
                    out.push('#');
                    out.push_str(display_name);
                }
                Mention::Everyone => out.push_str("@everyone"),
                Mention::Here => out.push_str("@here"),
            },
            Inline::Emoji { emoji } => match emoji {
                Emoji::Unicode { value, .. } => out.push_str(value),
                Emoji::Custom { name } => {
                    out.push(':');
                    out.push_str(name);
                    out.push(':');
                }
            },
            Inline::LineBreak => out.push('\n'),
        }
    }
}

fn collect_block<'a>(b: &'a Block, out: &mut Vec<&'a UserId>) {
    match b {
        Block::Paragraph { inlines } => collect_inlines(inlines, out),
        Block::CodeBlock { .. } => {}
        Block::Quote { blocks } => blocks.iter().for_each(|b| collect_block(b, out)),
        Block::List { items, .. } => items.iter().flatten().for_each(|b| collect_block(b, out)),
    }
}

fn collect_inlines<'a>(inlines: &'a [Inline], out: &mut Vec<&'a UserId>) {
    for i in inlines {
        match i {
            Inline::Bold { inlines }
            | Inline::Italic { inlines }
            | Inline::Strike { inlines }
            | Inline::Link { inlines, .. } => collect_inlines(inlines, out),
            Inline::Mention {
                mention: Mention::User { id, .. },
            } => out.push(id),
            _ => {}
        }
    }
}

/// What happened, as reported by a platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A new message (or reply: see [`PortableMessage::thread_root`]).
    Posted {
        /// Its platform id.
        message: MessageId,
        /// The content.
        content: PortableMessage,
    },
    /// A message was edited; `content` is the new version.
    Edited {
        /// Its platform id.
        message: MessageId,
        /// The new content.
        content: PortableMessage,
    },
    /// A message was deleted.
    Deleted {
        /// Its platform id.
        message: MessageId,
    },
    /// Someone reacted.
    ReactionAdded {
        /// The message reacted to.
        message: MessageId,
        /// Who.
        user: UserId,
        /// With what.
        emoji: Emoji,
    },
    /// Someone took a reaction back.
    ReactionRemoved {
        /// The message.
        message: MessageId,
        /// Who.
        user: UserId,
        /// Which.
        emoji: Emoji,
    },
    /// Someone joined the channel.
    MemberJoined {
        /// Who.
        user: UserId,
    },
    /// Someone left the channel.
    MemberLeft {
        /// Who.
        user: UserId,
    },
}

/// An event from one platform channel, as the relay consumes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformEvent {
    /// The platform's own event id (Slack `event_id`, Graph notification key): the inbox
    /// deduplicates on it.
    pub event_id: String,
    /// Where it happened.
    pub channel: ChannelRef,
    /// When the platform says it happened.
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    /// What happened.
    pub kind: EventKind,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, name: &str) -> Inline {
        Inline::Mention {
            mention: Mention::User {
                id: UserId::new(id).unwrap(),
                display_name: name.into(),
            },
        }
    }

    #[test]
    fn plain_text_rendering_covers_every_element() {
        let rt = RichText {
            blocks: vec![
                Block::Paragraph {
                    inlines: vec![
                        Inline::Text { text: "Hi ".into() },
                        user("U1", "Jane"),
                        Inline::Text {
                            text: ", see ".into(),
                        },
                        Inline::Link {
                            url: "https://x.test".into(),
                            inlines: vec![Inline::Bold {
                                inlines: vec![Inline::Text {
                                    text: "docs".into(),
                                }],
                            }],
                        },
                        Inline::Emoji {
                            emoji: Emoji::Custom {
                                name: "partyparrot".into(),
                            },
                        },
                    ],
                },
                Block::Quote {
                    blocks: vec![Block::Paragraph {
                        inlines: vec![Inline::Text {
                            text: "a\nb".into(),
                        }],
                    }],
                },
                Block::List {
                    ordered: true,
                    start: None,
                    items: vec![
                        vec![Block::Paragraph {
                            inlines: vec![Inline::Code { code: "x".into() }],
                        }],
                        vec![Block::Paragraph {
                            inlines: vec![Inline::Mention {
                                mention: Mention::Everyone,
                            }],
                        }],
                    ],
                },
            ],
        };
        assert_eq!(
            rt.to_plain_text(),
            "Hi @Jane, see docs (https://x.test):partyparrot:\n\n> a\n> b\n\n1. x\n2. @everyone"
        );
        assert_eq!(rt.mentioned_users(), vec![&UserId::new("U1").unwrap()]);
        assert!(!rt.is_empty());
        assert!(RichText::default().is_empty());
        assert!(RichText::plain("  ").is_empty());
    }

    #[test]
    fn events_round_trip_through_json() {
        let ev = PlatformEvent {
            event_id: "Ev1".into(),
            channel: "slack:T1/C1".parse().unwrap(),
            occurred_at: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
            kind: EventKind::ReactionAdded {
                message: MessageId::new("1700000000.000100").unwrap(),
                user: UserId::new("U1").unwrap(),
                emoji: Emoji::Unicode {
                    value: "👍".into(),
                    name: Some("thumbsup".into()),
                },
            },
        };
        let j = serde_json::to_string(&ev).unwrap();
        assert_eq!(serde_json::from_str::<PlatformEvent>(&j).unwrap(), ev);
    }
}
