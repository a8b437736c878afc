//! Slack emoji names (`thumbsup`, `+1`, `thumbsup::skin-tone-3`, custom `partyparrot`) ⇄ the
//! portable [`Emoji`]. Standard names resolve through the GitHub/gemoji shortcode table,
//! which Slack's standard set follows; names it does not know are custom emoji.

use emojis::SkinTone;
use switchboard_core::Emoji;

use crate::error::{Error, Result};

const TONES: [(u8, SkinTone); 5] = [
    (2, SkinTone::Light),
    (3, SkinTone::MediumLight),
    (4, SkinTone::Medium),
    (5, SkinTone::MediumDark),
    (6, SkinTone::Dark),
];

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

/// The portable emoji for a Slack emoji name (a reaction's `name`, or the inside of
/// `:name:`). Standard names become Unicode (with the name kept), others custom.
pub fn from_slack_name(name: &str) -> Emoji {
    let name = name.trim_matches(':');
    let (base, tone) = match name.split_once("::skin-tone-") {
        Some((base, tone)) => (base, tone.parse::<u8>().ok()),
        None => (name, None),
    };
    if let Some(e) = emojis::get_by_shortcode(base) {
        let toned = tone
            .and_then(|t| TONES.iter().find(|(n, _)| *n == t))
            .and_then(|(_, st)| e.with_skin_tone(*st))
            .unwrap_or(e);
        return Emoji::Unicode {
            value: toned.as_str().to_owned(),
            name: Some(name.to_owned()),
        };
    }
    Emoji::Custom {
        name: name.to_owned(),
    }
}

/// The shortcode for a Unicode emoji, with Slack's `::skin-tone-N` suffix when toned.
pub fn shortcode_for_unicode(value: &str) -> Option<String> {
    let e = emojis::get(value)?;
    if let Some(tone) = e.skin_tone().filter(|t| *t != SkinTone::Default) {
        let base = e.with_skin_tone(SkinTone::Default)?;
        let code = base.shortcode()?;
        let n = TONES.iter().find(|(_, st)| *st == tone)?.0;
        return Some(format!("{code}::skin-tone-{n}"));
    }
    e.shortcode().map(str::to_owned)
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
