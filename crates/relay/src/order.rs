//! Origin order per channel.
//!
//! Slack does not deliver events in order (neither over HTTP nor Socket Mode), and a catch-up
//! returns changes of several threads at once: the relay orders by the platform's own
//! timestamp. Slack's `ts` is `<seconds>.<microseconds>` and must be compared as numbers, not
//! as strings or floats (`"999.1"` < `"1000.0"`; a float loses the microseconds).

use std::cmp::Ordering;

/// A comparable key for a Slack `ts` (`"1700000000.000100"`), `None` when it is not one.
pub fn ts_key(ts: &str) -> Option<(u64, u32)> {
    let (secs, micros) = ts.split_once('.')?;
    if secs.is_empty() || secs.len() > 19 || micros.is_empty() || micros.len() > 9 {
        return None;
    }
    if !secs.bytes().all(|b| b.is_ascii_digit()) || !micros.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Pad the fraction so "1.1" and "1.100000" compare equal, as Slack's ts do.
    let mut frac: u32 = micros.parse().ok()?;
    for _ in micros.len()..9 {
        frac = frac.checked_mul(10)?;
    }
    Some((secs.parse().ok()?, frac))
}

/// Compares two Slack `ts` values numerically; values that are not a `ts` sort after every
/// valid one, by their text.
pub fn compare_ts(a: &str, b: &str) -> Ordering {
    match (ts_key(a), ts_key(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// Sorts `items` into origin order by the `ts` `key` returns (stable for equal keys).
pub fn sort_by_ts<T>(items: &mut [T], key: impl Fn(&T) -> &str) {
    items.sort_by(|a, b| compare_ts(key(a), key(b)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ts_compare_as_numbers() {
        assert_eq!(compare_ts("999.000001", "1000.000000"), Ordering::Less);
        assert_eq!(
            compare_ts("1700000000.000100", "1700000000.000099"),
            Ordering::Greater
        );
        assert_eq!(compare_ts("1.1", "1.100000"), Ordering::Equal);
        assert_eq!(compare_ts("1.5", "garbage"), Ordering::Less);
        assert_eq!(ts_key("1."), None);
        assert_eq!(ts_key(".1"), None);
        assert_eq!(ts_key("1.2.3"), None);
        assert_eq!(ts_key("99999999999999999999.1"), None);
        let mut v = vec![
            "1700000000.000300",
            "1700000000.000100",
            "999.9",
            "1700000000.000200",
        ];
        sort_by_ts(&mut v, |s| s);
        assert_eq!(
            v,
            [
                "999.9",
                "1700000000.000100",
                "1700000000.000200",
                "1700000000.000300"
            ]
        );
    }
}
