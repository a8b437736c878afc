//! Field limits. Oversized or malformed text is refused with `InvalidInput` naming the
//! field and the limit, before anything is written.

use switchboard_core::{Error, Result};

/// Names: organizations, teams, channels, display names (bytes).
pub const MAX_NAME_BYTES: usize = 1024;
/// Descriptions and topics (bytes).
pub const MAX_DESCRIPTION_BYTES: usize = 4096;
/// Email addresses (bytes; RFC 5321 allows 320 characters).
pub const MAX_EMAIL_BYTES: usize = 320;
/// URLs such as avatars (bytes).
pub const MAX_URL_BYTES: usize = 2048;
/// Keys and labels: secret names, cursor keys, token names, worker names, subscription and
/// event ids (bytes).
pub const MAX_KEY_BYTES: usize = 256;
/// A cursor value such as a Graph deltaLink (bytes).
pub const MAX_CURSOR_BYTES: usize = 16 * 1024;
/// A sealed value: one secret, or one connection's credentials serialized (bytes).
pub const MAX_SECRET_BYTES: usize = 16 * 1024;
/// One inbox event, serialized as JSON (bytes).
pub const MAX_EVENT_BYTES: usize = 256 * 1024;
/// One outbox payload, serialized as JSON (bytes).
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;
/// An audit action such as `connection.migrated` (bytes).
pub const MAX_AUDIT_ACTION_BYTES: usize = 128;
/// An audit target (bytes).
pub const MAX_AUDIT_TARGET_BYTES: usize = 1024;
/// Audit details, serialized canonically (bytes).
pub const MAX_AUDIT_DETAILS_BYTES: usize = 64 * 1024;
/// Delivery error texts are truncated (not refused) to this many bytes.
pub const MAX_ERROR_BYTES: usize = 4096;

/// Refuses text longer than `max` bytes or containing NUL (which PostgreSQL cannot store).
pub(crate) fn text(what: &str, value: &str, max: usize) -> Result<()> {
    if value.len() > max {
        return Err(Error::invalid(format!(
            "{what} is {} bytes long; at most {max} are allowed",
            value.len()
        )));
    }
    if value.contains('\0') {
        return Err(Error::invalid(format!("{what} contains a NUL character")));
    }
    Ok(())
}

/// [`text`] for an optional value.
pub(crate) fn opt_text(what: &str, value: Option<&str>, max: usize) -> Result<()> {
    value.map_or(Ok(()), |v| text(what, v, max))
}

/// [`text`], and refuses an empty (or blank) value.
pub(crate) fn nonempty(what: &str, value: &str, max: usize) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::invalid(format!("{what} must not be empty")));
    }
    text(what, value, max)
}

/// A key or label: non-empty, at most [`MAX_KEY_BYTES`], no control characters.
pub(crate) fn key(what: &str, value: &str) -> Result<()> {
    nonempty(what, value, MAX_KEY_BYTES)?;
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "{what} must not contain control characters"
        )));
    }
    Ok(())
}

/// Cuts `value` to at most `max` bytes on a character boundary, dropping NUL characters.
pub(crate) fn truncate(value: &str, max: usize) -> String {
    let clean: String = value.chars().filter(|c| *c != '\0').collect();
    if clean.len() <= max {
        return clean;
    }
    let mut end = max;
    while !clean.is_char_boundary(end) {
        end -= 1;
    }
    clean[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_core::ErrorKind;

    #[test]
    fn oversized_and_nul_text_is_refused_with_the_field_and_limit() {
        let e = text("user display name", &"x".repeat(2000), MAX_NAME_BYTES).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.message().contains("user display name"), "{e}");
        assert!(e.message().contains("1024"), "{e}");
        assert!(text("n", "a\0b", 10).is_err());
        assert!(text("n", "héllo", 10).is_ok());
        assert!(nonempty("n", "  ", 10).is_err());
        assert!(key("k", "a\tb").is_err());
        assert!(key("k", "slack.signing_secret").is_ok());
        assert!(opt_text("n", None, 1).is_ok());
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate("ééé", 3), "é");
        assert_eq!(truncate("a\0b", 10), "ab");
        assert_eq!(truncate("short", 100), "short");
    }
}
