//! Slack emoji names (`thumbsup`, `+1`, `thumbsup::skin-tone-3`, custom `partyparrot`) ⇄ the
//! portable [`Emoji`]. Standard names resolve through Slack's own table: the short names of
//! iamcal's emoji-data (🤔 `thinking_face`, 🤣 `rolling_on_the_floor_laughing`), generated
//! into `emoji/table.rs` by `emoji/gen_table.py`. Names it does not know are custom emoji.

use std::cmp::Ordering;

use switchboard_core::Emoji;

use crate::error::{Error, Result};

#[rustfmt::skip]
mod table;

use table::{BY_CHARS, EMOJI, Entry, NAMES};

/// Whether `name` is a syntactically valid Slack emoji name (without colons).
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name.chars().all(|c| {
            c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || matches!(c, '_' | '-' | '+' | '\'' | ':')
                || (!c.is_ascii() && c.is_alphanumeric())
        })
        && !name.starts_with(':')
        && !name.ends_with(':')
}

/// Whether `name` can be written as a `:name:` shortcode in mrkdwn and read back as one:
/// Slack's emoji name alphabet (lowercase ASCII letters, digits, `_`, `-`, `+`, `'`), at
/// most 100 bytes, optionally with a `::skin-tone-N` (or `-N-M`) suffix.
pub fn is_shortcode_name(name: &str) -> bool {
    let (base, tone) = match name.split_once("::skin-tone-") {
        Some((b, t)) => (b, Some(t)),
        None => (name, None),
    };
    let name_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "_+-'".contains(c);
    !base.is_empty()
        && name.len() <= 100
        && base.chars().all(name_char)
        && tone.is_none_or(|t| {
            let mut parts = t.split('-');
            let ok = |p: Option<&str>| {
                p.is_some_and(|p| p.len() == 1 && p.as_bytes()[0].is_ascii_digit())
            };
            let first = parts.next();
            let second = parts.next();
            ok(first) && (second.is_none() || ok(second)) && parts.next().is_none()
        })
}

fn entry_by_name(name: &str) -> Option<&'static Entry> {
    NAMES
        .binary_search_by(|(n, _)| n.as_bytes().cmp(name.as_bytes()))
        .ok()
        .and_then(|i| EMOJI.get(usize::from(NAMES[i].1)))
}

/// `s` without U+FE0F, as the table's lookup keys are.
fn normal_bytes(s: &str) -> impl Iterator<Item = u8> + '_ {
    s.chars().filter(|c| *c != '\u{FE0F}').flat_map(|c| {
        let mut buf = [0u8; 4];
        let len = c.encode_utf8(&mut buf).len();
        buf.into_iter().take(len)
    })
}

fn chars_of(idx: u16, tone: u8) -> Option<&'static str> {
    let e = EMOJI.get(usize::from(idx))?;
    match tone {
        0 => Some(e.chars),
        t => e.tones.get(usize::from(t) - 1).map(|(_, c)| *c),
    }
}

/// The table entry and tone (0: none) of a Unicode emoji, fully or non-qualified.
fn lookup_chars(value: &str) -> Option<(&'static Entry, u8)> {
    if value.is_empty() || value.len() > 64 {
        return None;
    }
    let i = BY_CHARS
        .binary_search_by(|(idx, tone)| {
            let Some(c) = chars_of(*idx, *tone) else {
                return Ordering::Less;
            };
            normal_bytes(c).cmp(normal_bytes(value))
        })
        .ok()?;
    let (idx, tone) = BY_CHARS[i];
    Some((EMOJI.get(usize::from(idx))?, tone))
}

/// Whether `value` is a standard Unicode emoji Slack knows (with or without U+FE0F, with
/// or without a skin tone).
pub fn is_known_unicode(value: &str) -> bool {
    lookup_chars(value).is_some()
}

/// The portable emoji for a Slack emoji name (a reaction's `name`, or the inside of
/// `:name:`). Standard names become Unicode (with the name kept), others custom. An unknown
/// skin tone falls back to the untoned emoji.
pub fn from_slack_name(name: &str) -> Emoji {
    let name = name.trim_matches(':');
    let (base, tone) = match name.split_once("::skin-tone-") {
        Some((base, tone)) => (base, Some(tone)),
        None => (name, None),
    };
    if let Some(e) = entry_by_name(base) {
        let toned = tone
            .and_then(|t| e.tones.iter().find(|(suffix, _)| *suffix == t))
            .map_or(e.chars, |(_, c)| *c);
        return Emoji::Unicode {
            value: toned.to_owned(),
            name: Some(name.to_owned()),
        };
    }
    Emoji::Custom {
        name: name.to_owned(),
    }
}

/// The Unicode emoji a standard Slack name stands for (`None` for custom or unknown names).
pub fn unicode_for_name(name: &str) -> Option<String> {
    match from_slack_name(name) {
        Emoji::Unicode { value, .. } => Some(value),
        Emoji::Custom { .. } => None,
    }
}

/// Slack's canonical short name for a Unicode emoji, with the `::skin-tone-N` suffix when
/// toned (👍🏽 → `+1::skin-tone-4`).
pub fn shortcode_for_unicode(value: &str) -> Option<String> {
    let (e, tone) = lookup_chars(value)?;
    match tone {
        0 => Some(e.name.to_owned()),
        t => {
            let (suffix, _) = e.tones.get(usize::from(t) - 1)?;
            Some(format!("{}::skin-tone-{suffix}", e.name))
        }
    }
}

/// The Slack name to react with. Unicode emoji are looked up by character (so a name from
/// another platform does not leak through), falling back to the given name; custom emoji
/// keep their name.
pub fn to_slack_name(emoji: &Emoji) -> Result<String> {
    let name = match emoji {
        Emoji::Unicode { value, name } => {
            if let Some(code) = shortcode_for_unicode(value) {
                code
            } else if let Some(n) = name.as_deref().map(|n| n.trim_matches(':')) {
                n.to_owned()
            } else {
                return Err(Error::invalid(format!(
                    "no Slack emoji name is known for {value:?}"
                )));
            }
        }
        Emoji::Custom { name } => name.trim_matches(':').to_owned(),
    };
    if !is_valid_name(&name) {
        return Err(Error::invalid(format!(
            "{name:?} is not a valid Slack emoji name"
        )));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_names_become_unicode_and_back() {
        let e = from_slack_name("thumbsup");
        assert_eq!(
            e,
            Emoji::Unicode {
                value: "👍".into(),
                name: Some("thumbsup".into())
            }
        );
        let back = to_slack_name(&e).unwrap();
        assert!(back == "+1" || back == "thumbsup", "{back}");
        assert_eq!(from_slack_name(&back), from_slack_name(&back));
        assert!(matches!(from_slack_name("+1"), Emoji::Unicode { ref value, .. } if value == "👍"));
        assert!(
            matches!(from_slack_name(":tada:"), Emoji::Unicode { ref value, .. } if value == "🎉")
        );
    }

    #[test]
    fn skin_tones_survive_the_round_trip() {
        let e = from_slack_name("wave::skin-tone-3");
        let Emoji::Unicode { value, .. } = &e else {
            panic!("{e:?}")
        };
        assert_ne!(value, "👋");
        assert!(value.starts_with('👋'));
        assert_eq!(to_slack_name(&e).unwrap(), "wave::skin-tone-3");
    }

    #[test]
    fn slacks_own_names_are_used_both_ways() {
        for (name, value) in [
            ("thinking_face", "🤔"),
            ("rolling_on_the_floor_laughing", "🤣"),
            ("hugging_face", "🤗"),
            ("face_with_rolling_eyes", "🙄"),
        ] {
            assert_eq!(unicode_for_name(name).as_deref(), Some(value), "{name}");
            assert_eq!(shortcode_for_unicode(value).as_deref(), Some(name));
            let e = from_slack_name(name);
            assert_eq!(to_slack_name(&e).unwrap(), name);
            // A name from GitHub's table does not leak through to Slack.
            assert_eq!(
                to_slack_name(&Emoji::Unicode {
                    value: value.into(),
                    name: Some("thinking".into())
                })
                .unwrap(),
                name
            );
        }
        // GitHub-only names are not Slack's.
        assert!(matches!(from_slack_name("rofl"), Emoji::Custom { .. }));
        // Aliases resolve; the canonical name is Slack's `short_name`.
        assert_eq!(unicode_for_name("thumbsup"), unicode_for_name("+1"));
        assert_eq!(shortcode_for_unicode("👍").as_deref(), Some("+1"));
        // With or without variation selector 16.
        assert_eq!(shortcode_for_unicode("❤️").as_deref(), Some("heart"));
        assert_eq!(shortcode_for_unicode("❤").as_deref(), Some("heart"));
        assert!(is_known_unicode("🎉"));
        assert!(!is_known_unicode("<!channel>"));
        assert!(!is_known_unicode("a"));
        assert!(!is_known_unicode(""));
    }

    #[test]
    fn two_tone_names_follow_slack() {
        let value = unicode_for_name("people_holding_hands::skin-tone-2-3").unwrap();
        assert_ne!(value, unicode_for_name("people_holding_hands").unwrap());
        assert_eq!(
            shortcode_for_unicode(&value).as_deref(),
            Some("people_holding_hands::skin-tone-2-3")
        );
        let same = unicode_for_name("people_holding_hands::skin-tone-4").unwrap();
        assert_eq!(
            shortcode_for_unicode(&same).as_deref(),
            Some("people_holding_hands::skin-tone-4")
        );
        // An unknown tone falls back to the untoned emoji.
        assert_eq!(
            unicode_for_name("wave::skin-tone-9"),
            unicode_for_name("wave")
        );
    }

    #[test]
    fn shortcode_names_are_slacks_alphabet() {
        for ok in [
            "tada",
            "+1",
            "wave::skin-tone-3",
            "a::skin-tone-2-3",
            "x_y-z'",
        ] {
            assert!(is_shortcode_name(ok), "{ok}");
        }
        for bad in [
            "",
            "Tada",
            "a b",
            "<!channel>",
            "a:b",
            "a::skin-tone-",
            "a::skin-tone-22",
            "é",
            "a*b",
        ] {
            assert!(!is_shortcode_name(bad), "{bad}");
        }
    }

    #[test]
    fn custom_names_stay_custom() {
        assert_eq!(
            from_slack_name("partyparrot"),
            Emoji::Custom {
                name: "partyparrot".into()
            }
        );
        assert_eq!(
            to_slack_name(&Emoji::Custom {
                name: ":partyparrot:".into()
            })
            .unwrap(),
            "partyparrot"
        );
        assert!(
            to_slack_name(&Emoji::Custom {
                name: "bad name".into()
            })
            .is_err()
        );
        assert!(
            to_slack_name(&Emoji::Unicode {
                value: "x".into(),
                name: None
            })
            .is_err()
        );
    }
}
