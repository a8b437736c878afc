//! The marker Switchboard embeds in every copy it posts.
//!
//! It names the universal message and the part, so a copy that comes back as an event is
//! recognised as ours (one of the three layers of loop prevention, beside our own identities
//! and the persisted map of sent ids), and so that after a crash a delivery that was in
//! flight can be found among the target's recent messages instead of being sent twice.
//!
//! Format: `sb1.<universal message id>.<part>`: ASCII, no spaces, short enough for Slack's
//! `metadata.event_payload` and for an attribute value in Teams HTML.

use std::fmt;
use std::str::FromStr;

use switchboard_core::{Error, UniversalMessageId};

const PREFIX: &str = "sb1.";

/// Our marker: which universal message, which part.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Marker {
    /// The universal message the copy belongs to.
    pub universal: UniversalMessageId,
    /// The part (0 for the first; long messages are split into several).
    pub part: u32,
}

impl Marker {
    /// The marker of part `part` of `universal`.
    pub fn new(universal: UniversalMessageId, part: u32) -> Self {
        Marker { universal, part }
    }

    /// Whether `text` is one of our markers (cheap check, no allocation).
    pub fn is_marker(text: &str) -> bool {
        text.parse::<Marker>().is_ok()
    }
}

impl fmt::Display for Marker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}.{}", self.universal, self.part)
    }
}

impl FromStr for Marker {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::invalid("not a Switchboard marker");
        let rest = s.strip_prefix(PREFIX).ok_or_else(bad)?;
        let (id, part) = rest.rsplit_once('.').ok_or_else(bad)?;
        // Universal ids are UUIDs: 36 characters of hex and dashes.
        if id.len() != 36 || !id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            return Err(bad());
        }
        if part.is_empty() || part.len() > 9 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let part = part.parse().map_err(|_| bad())?;
        Ok(Marker {
            universal: UniversalMessageId::new(id).map_err(|_| bad())?,
            part,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip_and_strangers_are_refused() {
        let m = Marker::new(UniversalMessageId::generate(), 3);
        let s = m.to_string();
        assert!(s.starts_with("sb1.") && s.ends_with(".3"));
        assert_eq!(s.parse::<Marker>().unwrap(), m);
        assert!(Marker::is_marker(&s));
        for bad in [
            "",
            "sb1.",
            "sb1.x.0",
            "sb2.00000000-0000-0000-0000-000000000000.0",
            "sb1.00000000-0000-0000-0000-000000000000.",
            "sb1.00000000-0000-0000-0000-000000000000.-1",
            "sb1.00000000-0000-0000-0000-000000000000.99999999999",
            "sb1.00000000-0000-0000-0000-00000000000g.0",
            "hello",
        ] {
            assert!(bad.parse::<Marker>().is_err(), "{bad:?} accepted");
        }
    }
}
