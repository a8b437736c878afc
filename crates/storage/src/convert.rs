//! Conversions shared by both backends: timestamps, stored enums and ids, and the mapping of
//! database errors onto the core [`Error`].

use std::str::FromStr;

use switchboard_core::{Error, ErrorKind, Result};
use time::OffsetDateTime;

/// A timestamp as stored: Unix time in nanoseconds (an `i64` column on both backends, so
/// comparisons in SQL are numeric and the value round-trips exactly).
pub(crate) fn ts(what: &str, at: OffsetDateTime) -> Result<i64> {
    i64::try_from(at.unix_timestamp_nanos()).map_err(|_| {
        Error::invalid(format!(
            "{what} {at} is out of the storable range (years 1678 to 2261)"
        ))
    })
}

/// Reads a stored timestamp back.
pub(crate) fn from_ts(column: &str, nanos: i64) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos)).map_err(|e| {
        Error::new(
            ErrorKind::Storage,
            format!("stored timestamp in {column} is out of range"),
        )
        .with_source(e)
    })
}

/// The current time, as stored.
pub(crate) fn now_ns() -> i64 {
    // `now_utc` is always within the storable range.
    ts("the current time", OffsetDateTime::now_utc()).unwrap_or(i64::MAX)
}

/// Adds a duration to a stored timestamp, saturating.
pub(crate) fn add_ns(at: i64, d: std::time::Duration) -> i64 {
    at.saturating_add(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Parses a value read from a column (an enum name, an id, a reference). A value this
/// version does not understand, e.g. one written by a newer Switchboard, is a clear
/// `Storage` error naming the column, never a panic.
pub(crate) fn parse_stored<T: FromStr<Err = Error>>(column: &str, value: &str) -> Result<T> {
    value.parse::<T>().map_err(|e| {
        Error::new(
            ErrorKind::Storage,
            format!(
                "the database holds a value this version does not understand in {column}: {} \
                 (written by a newer Switchboard, or edited by hand?)",
                e.message()
            ),
        )
    })
}

/// Parses JSON read from a column.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(column: &str, value: &str) -> Result<T> {
    serde_json::from_str(value).map_err(|e| {
        Error::new(
            ErrorKind::Storage,
            format!("the database holds JSON this version cannot read in {column}: {e}"),
        )
    })
}

/// Maps a database error, with what we were doing, onto the core error.
pub(crate) fn db_err(doing: &str, e: sqlx::Error) -> Error {
    let kind = match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => ErrorKind::Conflict,
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => ErrorKind::NotFound,
        sqlx::Error::Database(d) if d.is_check_violation() => ErrorKind::InvalidInput,
        sqlx::Error::RowNotFound => ErrorKind::NotFound,
        _ => ErrorKind::Storage,
    };
    let detail = match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => "it already exists".to_owned(),
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
            "it refers to something that does not exist".to_owned()
        }
        sqlx::Error::ColumnDecode { index, source } => {
            format!("could not read column {index}: {source}")
        }
        other => other.to_string(),
    };
    Error::new(kind, format!("{doing}: {detail}")).with_source(e)
}

/// A `Storage` error.
pub(crate) fn storage(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Storage, message)
}

/// A `Conflict` error.
pub(crate) fn conflict(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Conflict, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_core::{ConnectionHealth, PlatformKind};

    #[test]
    fn timestamps_round_trip_exactly() {
        let t = OffsetDateTime::now_utc();
        let n = ts("t", t).unwrap();
        assert_eq!(from_ts("c", n).unwrap(), t);
        let far = time::macros::datetime!(2300-01-01 0:00 UTC);
        let err = ts("expiry", far).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.message().contains("expiry"), "{err}");
    }

    #[test]
    fn unknown_stored_values_are_clear_storage_errors() {
        let e = parse_stored::<ConnectionHealth>("connections.health", "exploded").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Storage);
        assert!(e.message().contains("connections.health"), "{e}");
        assert!(e.message().contains("exploded"), "{e}");
        assert!(parse_stored::<PlatformKind>("p", "slack").is_ok());
        let j = parse_json::<serde_json::Value>("outbox.payload", "{nope").unwrap_err();
        assert_eq!(j.kind(), ErrorKind::Storage);
        assert!(j.message().contains("outbox.payload"));
    }

    #[test]
    fn adding_durations_saturates() {
        assert_eq!(
            add_ns(i64::MAX - 1, std::time::Duration::from_secs(5)),
            i64::MAX
        );
        assert_eq!(add_ns(10, std::time::Duration::from_nanos(5)), 15);
    }
}
