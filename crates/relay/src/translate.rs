//! Mentions through the identity map.
//!
//! A mention carries the origin platform's id. On the target it becomes a real mention of the
//! matched user (users matched across platforms by verified email, or linked by an admin), or
//! — when the user has no counterpart — their display name as text. A raw platform id is
//! never shown to people: when even the name is unknown, the mention reads "@unknown user".

use std::collections::HashMap;

use switchboard_core::{Block, ChannelId, Inline, Mention, RichText, UserId};

/// What the relay knows of the users and channels mentioned in one message.
#[derive(Debug, Clone, Default)]
pub struct MentionMap {
    /// Origin user id → (counterpart on the target, the name the directory knows).
    pub users: HashMap<UserId, (Option<UserId>, Option<String>)>,
    /// Origin channel id → the linked channel on the target, when the mentioned channel is
    /// part of a universal channel reaching the target.
    pub channels: HashMap<ChannelId, ChannelId>,
}

fn usable_name<'a>(candidate: Option<&'a str>, raw_id: &str) -> Option<&'a str> {
    candidate
        .map(str::trim)
        .filter(|n| !n.is_empty() && *n != raw_id)
}

impl MentionMap {
    /// Rewrites every mention of `text` for the target.
    pub fn apply(&self, text: &RichText) -> RichText {
        RichText {
            blocks: text.blocks.iter().map(|b| self.block(b)).collect(),
        }
    }

    fn block(&self, b: &Block) -> Block {
        match b {
            Block::Paragraph { inlines } => Block::Paragraph {
                inlines: self.inlines(inlines),
            },
            Block::CodeBlock { .. } => b.clone(),
            Block::Quote { blocks } => Block::Quote {
                blocks: blocks.iter().map(|b| self.block(b)).collect(),
            },
            Block::List {
                ordered,
                start,
                items,
            } => Block::List {
                ordered: *ordered,
                start: *start,
                items: items
                    .iter()
                    .map(|item| item.iter().map(|b| self.block(b)).collect())
                    .collect(),
            },
        }
    }

    fn inlines(&self, inlines: &[Inline]) -> Vec<Inline> {
        inlines.iter().map(|i| self.inline(i)).collect()
    }

    fn inline(&self, i: &Inline) -> Inline {
        match i {
            Inline::Bold { inlines } => Inline::Bold {
                inlines: self.inlines(inlines),
            },
            Inline::Italic { inlines } => Inline::Italic {
                inlines: self.inlines(inlines),
            },
            Inline::Strike { inlines } => Inline::Strike {
                inlines: self.inlines(inlines),
            },
            Inline::Link { url, inlines } => Inline::Link {
                url: url.clone(),
                inlines: self.inlines(inlines),
            },
            Inline::Mention { mention } => self.mention(mention),
            other => other.clone(),
        }
    }

    fn mention(&self, m: &Mention) -> Inline {
        match m {
            Mention::User { id, display_name } => {
                let known = self.users.get(id);
                let name = usable_name(known.and_then(|(_, n)| n.as_deref()), id.as_str())
                    .or_else(|| usable_name(Some(display_name), id.as_str()));
                match known.and_then(|(c, _)| c.clone()) {
                    Some(target) => Inline::Mention {
                        mention: Mention::User {
                            id: target,
                            display_name: name.unwrap_or("unknown user").to_owned(),
                        },
                    },
                    None => Inline::Text {
                        text: format!("@{}", name.unwrap_or("unknown user")),
                    },
                }
            }
            Mention::Channel { id, display_name } => match self.channels.get(id) {
                Some(target) => Inline::Mention {
                    mention: Mention::Channel {
                        id: target.clone(),
                        display_name: display_name.clone(),
                    },
                },
                None => Inline::Text {
                    text: format!(
                        "#{}",
                        usable_name(Some(display_name), id.as_str()).unwrap_or("a channel")
                    ),
                },
            },
            Mention::Everyone | Mention::Here => Inline::Mention { mention: m.clone() },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn para(inlines: Vec<Inline>) -> RichText {
        RichText {
            blocks: vec![Block::Paragraph { inlines }],
        }
    }

    fn user(id: &str, name: &str) -> Inline {
        Inline::Mention {
            mention: Mention::User {
                id: UserId::new(id).unwrap(),
                display_name: name.into(),
            },
        }
    }

    #[test]
    fn matched_users_become_mentions_and_the_rest_names_never_ids() {
        let mut map = MentionMap::default();
        map.users.insert(
            UserId::new("U1").unwrap(),
            (Some(UserId::new("aad-1").unwrap()), Some("Jane Doe".into())),
        );
        map.users
            .insert(UserId::new("U2").unwrap(), (None, Some("Ravi".into())));
        let text = para(vec![
            user("U1", "U1"),
            Inline::Bold {
                inlines: vec![user("U2", "U2")],
            },
            user("U3", "U3"),
            user("U4", "Old Name"),
        ]);
        let out = map.apply(&text);
        assert_eq!(out.to_plain_text(), "@Jane Doe@Ravi@unknown user@Old Name");
        assert_eq!(
            out.mentioned_users(),
            vec![&UserId::new("aad-1").unwrap()],
            "only the matched user stays a mention"
        );
    }

    #[test]
    fn channels_map_to_linked_channels_or_their_name() {
        let mut map = MentionMap::default();
        map.channels.insert(
            ChannelId::new("C1").unwrap(),
            ChannelId::new("19:x@thread.tacv2").unwrap(),
        );
        let ch = |id: &str, name: &str| Inline::Mention {
            mention: Mention::Channel {
                id: ChannelId::new(id).unwrap(),
                display_name: name.into(),
            },
        };
        let out = map.apply(&para(vec![
            ch("C1", "general"),
            ch("C2", "random"),
            ch("C3", "C3"),
            Inline::Mention {
                mention: Mention::Here,
            },
        ]));
        assert_eq!(out.to_plain_text(), "#general#random#a channel@here");
        match &out.blocks[0] {
            Block::Paragraph { inlines } => assert!(matches!(
                &inlines[0],
                Inline::Mention { mention: Mention::Channel { id, .. } } if id.as_str() == "19:x@thread.tacv2"
            )),
            other => panic!("{other:?}"),
        }
    }
}
