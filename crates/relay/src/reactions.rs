//! Reactions relayed through one identity.
//!
//! Teams allows one reaction of each type per identity (`setReaction` / `unsetReaction`), and
//! the relay reacts on behalf of everyone through the service account (on Slack, the bot). So
//! two Slack users reacting 👍 must produce one Teams reaction, and the first of them taking
//! it back must not remove it for the other. The store keeps the ledger (who reacts with
//! which emoji on which copy: [`RelayStateStore`](switchboard_core::RelayStateStore));
//! [`platform_call`] says, from the ledger after a change, whether the platform call is due,
//! and [`note`] writes the line that shows who reacted ("👍 Ann, Bob"), which the native
//! reaction of one identity cannot say.

use switchboard_core::{Block, Emoji, Inline, ReactionChange, ReactionTally, Reactor, RichText};

/// What to do on the target after a change in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReactionAction {
    /// Make the platform call (add with the first reactor, remove with the last).
    Call,
    /// Nothing on the platform, but who reacts changed: update the note.
    NoteOnly,
    /// Nothing at all: a duplicate event.
    Nothing,
}

/// The action after `change` left the ledger at `tally`. `retry` is a delivery attempted
/// before: it may have recorded the change and failed before the platform call, so the call
/// is made again when it would be due (adding twice or removing what is gone succeeds).
pub fn platform_call(change: ReactionChange, tally: &ReactionTally, retry: bool) -> ReactionAction {
    let due = match change {
        ReactionChange::Add => tally.reactors.len() == 1,
        ReactionChange::Remove => tally.reactors.is_empty(),
    };
    if due && (tally.changed || retry) {
        ReactionAction::Call
    } else if tally.changed || retry {
        ReactionAction::NoteOnly
    } else {
        ReactionAction::Nothing
    }
}

/// The note that says who reacted: "Reactions: 👍 Ann, Bob · :partyparrot: Cy", or that none
/// is left.
pub fn note(reactions: &[(Emoji, Vec<Reactor>)]) -> RichText {
    let mut inlines = vec![Inline::Italic {
        inlines: vec![Inline::Text {
            text: "Reactions:".into(),
        }],
    }];
    let live: Vec<_> = reactions.iter().filter(|(_, r)| !r.is_empty()).collect();
    if live.is_empty() {
        inlines.push(Inline::Text {
            text: " none any more".into(),
        });
    }
    for (i, (emoji, reactors)) in live.iter().enumerate() {
        inlines.push(Inline::Text {
            text: if i == 0 { " ".into() } else { " · ".into() },
        });
        inlines.push(Inline::Emoji {
            emoji: emoji.clone(),
        });
        let names: Vec<&str> = reactors.iter().map(|r| r.name.as_str()).collect();
        inlines.push(Inline::Text {
            text: format!(" {}", names.join(", ")),
        });
    }
    RichText {
        blocks: vec![Block::Paragraph { inlines }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_core::{PlatformKind, UserId};

    fn who(id: &str, name: &str) -> Reactor {
        Reactor {
            platform: PlatformKind::Slack,
            user: UserId::new(id).unwrap(),
            name: name.into(),
        }
    }

    fn tally(changed: bool, n: usize) -> ReactionTally {
        ReactionTally {
            changed,
            reactors: (0..n).map(|i| who(&format!("U{i}"), "x")).collect(),
        }
    }

    #[test]
    fn the_reaction_is_added_with_the_first_and_removed_with_the_last() {
        use ReactionAction::*;
        use ReactionChange::{Add, Remove};
        assert_eq!(platform_call(Add, &tally(true, 1), false), Call);
        assert_eq!(platform_call(Add, &tally(true, 2), false), NoteOnly);
        assert_eq!(platform_call(Add, &tally(false, 2), false), Nothing);
        assert_eq!(platform_call(Add, &tally(false, 1), false), Nothing);
        // a retry makes the call that may have been lost
        assert_eq!(platform_call(Add, &tally(false, 1), true), Call);
        assert_eq!(platform_call(Remove, &tally(true, 1), false), NoteOnly);
        assert_eq!(platform_call(Remove, &tally(true, 0), false), Call);
        assert_eq!(platform_call(Remove, &tally(false, 0), false), Nothing);
        assert_eq!(platform_call(Remove, &tally(false, 0), true), Call);
    }

    #[test]
    fn the_note_names_every_reactor_per_emoji() {
        let thumbs = Emoji::Unicode {
            value: "👍".into(),
            name: Some("+1".into()),
        };
        let party = Emoji::Custom {
            name: "partyparrot".into(),
        };
        let n = note(&[
            (thumbs, vec![who("U1", "Ann"), who("U2", "Bob")]),
            (party, vec![who("U3", "Cy")]),
        ]);
        assert_eq!(
            n.to_plain_text(),
            "Reactions: 👍 Ann, Bob · :partyparrot: Cy"
        );
        assert_eq!(note(&[]).to_plain_text(), "Reactions: none any more");
    }
}
