//! Reactions relayed through one identity.
//!
//! Teams allows one reaction of each type per identity (`setReaction` / `unsetReaction`), and
//! the relay reacts on behalf of everyone through the service account. So two Slack users
//! reacting 👍 must produce one Teams reaction, and the first of them taking it back must not
//! remove it for the other. The [`ReactionLedger`] of one copy counts reactors per emoji and
//! says when the platform call is due; [`ReactionLedger::reactors`] gives the names to show
//! ("👍 Jane, Ravi") where a platform can show only one reaction per identity.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use switchboard_core::{Emoji, PlatformKind, UserId};

/// Someone who reacted on the origin platform.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Reactor {
    /// Their platform.
    pub platform: PlatformKind,
    /// Their id there.
    pub user: UserId,
}

/// What to do on the target after a change in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReactionAction {
    /// Add the reaction on the target (the first reactor of this emoji).
    Add,
    /// Remove it (the last reactor left).
    Remove,
    /// Nothing on the platform: others still react, or this reactor was already counted
    /// (a duplicate event). The list of reactors to show may have changed.
    Unchanged,
}

/// The relayed reactions of one message copy: emoji → who reacted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReactionLedger {
    by_emoji: BTreeMap<String, (Emoji, BTreeSet<Reactor>)>,
}

fn emoji_key(emoji: &Emoji) -> String {
    match emoji {
        Emoji::Unicode { value, .. } => format!("u:{value}"),
        Emoji::Custom { name } => format!("c:{name}"),
    }
}

impl ReactionLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// `reactor` reacted with `emoji`.
    pub fn add(&mut self, emoji: &Emoji, reactor: Reactor) -> ReactionAction {
        let entry = self
            .by_emoji
            .entry(emoji_key(emoji))
            .or_insert_with(|| (emoji.clone(), BTreeSet::new()));
        let first = entry.1.is_empty();
        if !entry.1.insert(reactor) {
            return ReactionAction::Unchanged;
        }
        if first {
            ReactionAction::Add
        } else {
            ReactionAction::Unchanged
        }
    }

    /// `reactor` took `emoji` back.
    pub fn remove(&mut self, emoji: &Emoji, reactor: &Reactor) -> ReactionAction {
        let key = emoji_key(emoji);
        let Some(entry) = self.by_emoji.get_mut(&key) else {
            return ReactionAction::Unchanged;
        };
        if !entry.1.remove(reactor) {
            return ReactionAction::Unchanged;
        }
        if entry.1.is_empty() {
            self.by_emoji.remove(&key);
            ReactionAction::Remove
        } else {
            ReactionAction::Unchanged
        }
    }

    /// Who reacts with `emoji` now.
    pub fn reactors(&self, emoji: &Emoji) -> Vec<&Reactor> {
        self.by_emoji
            .get(&emoji_key(emoji))
            .map(|(_, set)| set.iter().collect())
            .unwrap_or_default()
    }

    /// Every emoji with its number of reactors.
    pub fn counts(&self) -> Vec<(&Emoji, usize)> {
        self.by_emoji.values().map(|(e, s)| (e, s.len())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(id: &str) -> Reactor {
        Reactor {
            platform: PlatformKind::Slack,
            user: UserId::new(id).unwrap(),
        }
    }

    fn thumbs() -> Emoji {
        Emoji::Unicode {
            value: "👍".into(),
            name: Some("+1".into()),
        }
    }

    #[test]
    fn the_reaction_stays_until_the_last_reactor_leaves() {
        let mut l = ReactionLedger::new();
        assert_eq!(l.add(&thumbs(), who("U1")), ReactionAction::Add);
        assert_eq!(l.add(&thumbs(), who("U2")), ReactionAction::Unchanged);
        // a redelivered event changes nothing
        assert_eq!(l.add(&thumbs(), who("U2")), ReactionAction::Unchanged);
        assert_eq!(l.reactors(&thumbs()).len(), 2);
        assert_eq!(l.remove(&thumbs(), &who("U1")), ReactionAction::Unchanged);
        assert_eq!(l.remove(&thumbs(), &who("U1")), ReactionAction::Unchanged);
        assert_eq!(l.remove(&thumbs(), &who("U2")), ReactionAction::Remove);
        assert!(l.counts().is_empty());
        // removing what was never there is not a platform call
        assert_eq!(l.remove(&thumbs(), &who("U3")), ReactionAction::Unchanged);
    }

    #[test]
    fn emoji_are_counted_apart_and_the_ledger_persists() {
        let mut l = ReactionLedger::new();
        let party = Emoji::Custom {
            name: "partyparrot".into(),
        };
        assert_eq!(l.add(&thumbs(), who("U1")), ReactionAction::Add);
        assert_eq!(l.add(&party, who("U1")), ReactionAction::Add);
        let json = serde_json::to_string(&l).unwrap();
        let mut back: ReactionLedger = serde_json::from_str(&json).unwrap();
        assert_eq!(back, l);
        assert_eq!(back.remove(&party, &who("U1")), ReactionAction::Remove);
        assert_eq!(back.counts(), vec![(&thumbs(), 1)]);
    }
}
