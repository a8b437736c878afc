//! Combining queued posts into one.
//!
//! Teams allows 4 requests a second on one channel (and 3,000 messages a day into it). When a
//! target channel's backlog grows past a threshold, queued top-level posts of several senders
//! are combined into one post that keeps each sender's name, so messages per second can
//! exceed requests per second. Replies, edits and deletes are never combined: they address a
//! specific message.

use switchboard_core::{Block, Inline, PortableMessage, RichText, Sender};

/// One combined post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Combined {
    /// The content: each message under its sender's name, in order.
    pub text: RichText,
    /// Who wrote what, in order (one per combined message).
    pub senders: Vec<Sender>,
}

/// Combines `messages` (in origin order) into one post: each message's first paragraph is
/// prefixed by its sender's name in bold; attachments are not combined (a message with files
/// is posted alone — the caller keeps those out).
pub fn combine(messages: &[PortableMessage]) -> Combined {
    let mut blocks = Vec::new();
    let mut senders = Vec::with_capacity(messages.len());
    for m in messages {
        senders.push(m.sender.clone());
        let name = Inline::Bold {
            inlines: vec![Inline::Text {
                text: m.sender.display_name.clone(),
            }],
        };
        let mut rest = m.text.blocks.iter();
        match rest.next() {
            Some(Block::Paragraph { inlines }) => {
                let mut first = vec![name, Inline::Text { text: ": ".into() }];
                first.extend(inlines.iter().cloned());
                blocks.push(Block::Paragraph { inlines: first });
            }
            Some(other) => {
                blocks.push(Block::Paragraph {
                    inlines: vec![name, Inline::Text { text: ":".into() }],
                });
                blocks.push(other.clone());
            }
            None => blocks.push(Block::Paragraph {
                inlines: vec![name],
            }),
        }
        blocks.extend(rest.cloned());
    }
    Combined {
        text: RichText { blocks },
        senders,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_core::{PlatformKind, UserId};

    fn msg(name: &str, text: RichText) -> PortableMessage {
        PortableMessage {
            sender: Sender {
                platform: PlatformKind::Slack,
                user: UserId::new(format!("U{name}")).unwrap(),
                display_name: name.into(),
                avatar_url: None,
                email: None,
            },
            text,
            attachments: vec![],
            thread_root: None,
        }
    }

    #[test]
    fn every_sender_keeps_their_name_and_order() {
        let code = RichText {
            blocks: vec![Block::CodeBlock {
                language: None,
                code: "ls".into(),
            }],
        };
        let c = combine(&[
            msg("Jane", RichText::plain("hi")),
            msg("Ravi", code),
            msg("Jane", RichText::plain("again")),
        ]);
        assert_eq!(
            c.text.to_plain_text(),
            "Jane: hi\n\nRavi:\n\nls\n\nJane: again"
        );
        let names: Vec<_> = c.senders.iter().map(|s| s.display_name.as_str()).collect();
        assert_eq!(names, ["Jane", "Ravi", "Jane"]);
    }
}
