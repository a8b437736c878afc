//! The audit chain: canonical serialization, hashing, verification, secret redaction and
//! JSON-lines export.
//!
//! Each entry's hash is SHA-256 over `switchboard-audit-v1\n` followed by the canonical JSON
//! (object keys sorted, no whitespace) of `{org, seq, actor, action, target, at, details,
//! prev_hash}`, where `at` is Unix time in nanoseconds. `prev_hash` is the previous entry's
//! hash (empty for the first), so editing, removing or reordering an entry breaks the chain
//! at that entry. The store also keeps the chain's head (last seq and hash) per organization,
//! which catches entries cut off the end.

use std::io::{BufRead, Write};

use serde_json::Value;
use sha2::{Digest, Sha256};
use switchboard_core::{
    Actor, AuditEntry, AuditStore, AuditVerification, Error, ErrorKind, OrgId, Result,
};
use time::OffsetDateTime;

/// The value that replaces redacted details.
pub const REDACTED: &str = "[redacted]";

/// Writes `value` as canonical JSON: object keys sorted by their UTF-8 bytes, no whitespace,
/// strings escaped as `serde_json` does. Independent of `serde_json`'s `preserve_order`.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&map[k.as_str()], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The hash of an entry, from its fields (everything but `hash` itself).
#[allow(clippy::too_many_arguments)]
pub fn entry_hash(
    org: &OrgId,
    seq: u64,
    actor: &Actor,
    action: &str,
    target: &str,
    at: OffsetDateTime,
    details: &Value,
    prev_hash: &str,
) -> String {
    let at_ns = i64::try_from(at.unix_timestamp_nanos()).unwrap_or(i64::MAX);
    let body = serde_json::json!({
        "org": org.as_str(),
        "seq": seq,
        "actor": serde_json::to_value(actor).unwrap_or(Value::Null),
        "action": action,
        "target": target,
        "at": at_ns,
        "details": details,
        "prev_hash": prev_hash,
    });
    let mut h = Sha256::new();
    h.update(b"switchboard-audit-v1\n");
    h.update(canonical_json(&body).as_bytes());
    hex::encode(h.finalize())
}

/// The hash an entry should have.
pub fn expected_hash(e: &AuditEntry) -> String {
    entry_hash(
        &e.org,
        e.seq,
        &e.actor,
        &e.action,
        &e.target,
        e.at,
        &e.details,
        &e.prev_hash,
    )
}

/// Checks a chain entry by entry, in `seq` order, and remembers the first bad one.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    org: Option<OrgId>,
    next_seq: u64,
    prev_hash: String,
    checked: u64,
    bad: Option<(u64, String)>,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        ChainVerifier::new()
    }
}

impl ChainVerifier {
    /// A verifier expecting seq 1 with an empty previous hash.
    pub fn new() -> ChainVerifier {
        ChainVerifier {
            org: None,
            next_seq: 1,
            prev_hash: String::new(),
            checked: 0,
            bad: None,
        }
    }

    /// Whether a bad entry was found already (later entries are not looked at).
    pub fn failed(&self) -> bool {
        self.bad.is_some()
    }

    /// Records that the entry expected next could not even be read.
    pub fn unreadable(&mut self, seq: u64, why: &str) {
        if self.bad.is_none() {
            self.checked += 1;
            self.bad = Some((seq, format!("entry {seq} cannot be read: {why}")));
        }
    }

    /// Checks the next entry.
    pub fn push(&mut self, e: &AuditEntry) {
        if self.bad.is_some() {
            return;
        }
        self.checked += 1;
        let org = self.org.get_or_insert_with(|| e.org.clone());
        if e.org != *org {
            self.bad = Some((
                e.seq,
                format!("entry {} belongs to another organization", e.seq),
            ));
            return;
        }
        if e.seq != self.next_seq {
            let reason = if e.seq > self.next_seq {
                format!(
                    "entry {} is missing (the next entry present is {})",
                    self.next_seq, e.seq
                )
            } else {
                format!(
                    "entry {} appears out of order after entry {}",
                    e.seq,
                    self.next_seq - 1
                )
            };
            self.bad = Some((self.next_seq.min(e.seq), reason));
            return;
        }
        if e.prev_hash != self.prev_hash {
            self.bad = Some((
                e.seq,
                format!(
                    "entry {} does not follow entry {}: its previous-hash does not match (an entry was removed, inserted or reordered)",
                    e.seq,
                    e.seq - 1
                ),
            ));
            return;
        }
        if expected_hash(e) != e.hash {
            self.bad = Some((
                e.seq,
                format!(
                    "entry {} was altered: its content does not match its hash",
                    e.seq
                ),
            ));
            return;
        }
        self.prev_hash = e.hash.clone();
        self.next_seq += 1;
    }

    /// Ends the check. `head` is the (last seq, last hash) the store recorded, when it keeps
    /// one: entries missing at the end, or present beyond it, are reported too.
    pub fn finish(mut self, head: Option<(u64, &str)>) -> AuditVerification {
        if self.bad.is_none() {
            if let Some((last_seq, last_hash)) = head {
                let seen = self.next_seq - 1;
                if last_seq > seen {
                    self.bad = Some((
                        seen + 1,
                        format!(
                            "entries {} to {last_seq} are missing from the end of the log",
                            seen + 1
                        ),
                    ));
                } else if last_seq < seen {
                    self.bad = Some((
                        last_seq + 1,
                        format!(
                            "entry {} was added outside the store: the chain head ends at {last_seq}",
                            last_seq + 1
                        ),
                    ));
                } else if last_hash != self.prev_hash {
                    self.bad = Some((
                        seen,
                        format!("entry {seen} does not match the recorded chain head"),
                    ));
                }
            }
        }
        let (first_bad_seq, reason) = match self.bad {
            Some((s, r)) => (Some(s), Some(r)),
            None => (None, None),
        };
        AuditVerification {
            checked: self.checked,
            first_bad_seq,
            reason,
        }
    }
}

/// Verifies a whole sequence of entries (e.g. an export) in order.
pub fn verify_entries<'a>(entries: impl IntoIterator<Item = &'a AuditEntry>) -> AuditVerification {
    let mut v = ChainVerifier::new();
    for e in entries {
        v.push(e);
        if v.failed() {
            break;
        }
    }
    v.finish(None)
}

/// Verifies a JSON-lines export (as written by [`export_audit_jsonl`]). A line that is not
/// an entry is reported as the first bad entry. An export cannot tell whether entries were
/// cut off its end; compare its last hash with the live chain for that.
pub fn verify_jsonl(reader: impl BufRead) -> Result<AuditVerification> {
    let mut v = ChainVerifier::new();
    let mut expected = 1u64;
    for line in reader.lines() {
        let line = line.map_err(|e| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("could not read the export: {e}"),
            )
        })?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<AuditEntry>(&line) {
            Ok(e) => {
                expected = e.seq + 1;
                v.push(&e);
            }
            Err(err) => v.unreadable(expected, &err.to_string()),
        }
        if v.failed() {
            break;
        }
    }
    Ok(v.finish(None))
}

/// Writes an organization's audit log as JSON lines (one [`AuditEntry`] per line, in order)
/// and returns how many entries were written.
pub async fn export_audit_jsonl(
    store: &(impl AuditStore + ?Sized),
    org: &OrgId,
    writer: &mut (dyn Write + Send),
) -> Result<u64> {
    const PAGE: usize = 500;
    let mut after = 0u64;
    let mut n = 0u64;
    loop {
        let page = store.list_audit(org, after, PAGE).await?;
        for e in &page {
            let line = serde_json::to_string(e).map_err(|err| {
                Error::new(
                    ErrorKind::Storage,
                    format!("serializing entry {}: {err}", e.seq),
                )
            })?;
            writer
                .write_all(line.as_bytes())
                .and_then(|()| writer.write_all(b"\n"))
                .map_err(|err| {
                    Error::new(ErrorKind::Storage, format!("writing the export: {err}"))
                })?;
            after = e.seq;
            n += 1;
        }
        if page.len() < PAGE {
            break;
        }
    }
    writer
        .flush()
        .map_err(|err| Error::new(ErrorKind::Storage, format!("writing the export: {err}")))?;
    Ok(n)
}

fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    const SUFFIXES: [&str; 9] = [
        "token",
        "secret",
        "password",
        "passwd",
        "client_state",
        "clientstate",
        "authorization",
        "api_key",
        "private_key",
    ];
    SUFFIXES.iter().any(|s| k.ends_with(s)) || k == "cookie" || k == "code_verifier"
}

fn looks_like_secret(s: &str) -> bool {
    const PREFIXES: [&str; 7] = [
        "xoxb-", "xoxp-", "xoxa-", "xoxr-", "xoxe", "xapp-", "Bearer ",
    ];
    PREFIXES.iter().any(|p| s.starts_with(p)) || s.starts_with("sbat_")
}

/// Replaces what looks secret in audit details with [`REDACTED`]: values under keys such as
/// `access_token`, `client_secret`, `password`, `client_state` or `authorization`, and
/// strings shaped like Slack tokens, bearer headers or admin tokens. Audit details never
/// carry secrets, even when a caller passes one by mistake.
pub fn redact_details(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if is_secret_key(k) && !v.is_null() {
                        Value::String(REDACTED.to_owned())
                    } else {
                        redact_details(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact_details).collect()),
        Value::String(s) if looks_like_secret(s) => Value::String(REDACTED.to_owned()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chain(n: u64) -> Vec<AuditEntry> {
        let org = OrgId::generate();
        let mut prev = String::new();
        let mut out = Vec::new();
        for seq in 1..=n {
            let at = OffsetDateTime::from_unix_timestamp(1_700_000_000 + seq as i64).unwrap();
            let actor = Actor::System;
            let details = json!({"n": seq});
            let hash = entry_hash(&org, seq, &actor, "test.did", "t", at, &details, &prev);
            out.push(AuditEntry {
                seq,
                org: org.clone(),
                actor,
                action: "test.did".into(),
                target: "t".into(),
                at,
                details,
                prev_hash: prev.clone(),
                hash: hash.clone(),
            });
            prev = hash;
        }
        out
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let v: Value =
            serde_json::from_str(r#"{"b":1,"a":{"d":[{"z":1,"y":2}],"c":"x\"y"}}"#).unwrap();
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"c":"x\"y","d":[{"y":2,"z":1}]},"b":1}"#
        );
    }

    #[test]
    fn intact_chain_verifies() {
        let c = chain(5);
        let v = verify_entries(&c);
        assert!(v.is_ok(), "{v:?}");
        assert_eq!(v.checked, 5);
    }

    #[test]
    fn edits_removals_and_reorders_are_found_at_the_right_entry() {
        let mut edited = chain(5);
        edited[2].details = json!({"n": 999});
        assert_eq!(verify_entries(&edited).first_bad_seq, Some(3));

        let mut removed = chain(5);
        removed.remove(1);
        let v = verify_entries(&removed);
        assert_eq!(v.first_bad_seq, Some(2));
        assert!(v.reason.unwrap().contains("missing"));

        let mut reordered = chain(5);
        reordered.swap(1, 2);
        assert_eq!(verify_entries(&reordered).first_bad_seq, Some(2));

        // Renumbered after a removal: the previous-hash link breaks.
        let mut renumbered = chain(5);
        renumbered.remove(1);
        for e in renumbered.iter_mut().skip(1) {
            e.seq -= 1;
        }
        assert_eq!(verify_entries(&renumbered).first_bad_seq, Some(2));

        // A truncated tail is caught with the head.
        let full = chain(5);
        let mut v = ChainVerifier::new();
        for e in &full[..3] {
            v.push(e);
        }
        let r = v.finish(Some((5, &full[4].hash)));
        assert_eq!(r.first_bad_seq, Some(4));
    }

    #[test]
    fn jsonl_round_trip_verifies_and_catches_garbage() {
        let c = chain(3);
        let mut buf = Vec::new();
        for e in &c {
            buf.extend_from_slice(serde_json::to_string(e).unwrap().as_bytes());
            buf.push(b'\n');
        }
        assert!(verify_jsonl(&buf[..]).unwrap().is_ok());
        let text = String::from_utf8(buf).unwrap();
        let broken = text.replacen("test.did", "test.hid", 1);
        assert_eq!(
            verify_jsonl(broken.as_bytes()).unwrap().first_bad_seq,
            Some(1)
        );
        let garbage = format!(
            "{}not json\n",
            text.lines().next().unwrap().to_owned() + "\n"
        );
        assert_eq!(
            verify_jsonl(garbage.as_bytes()).unwrap().first_bad_seq,
            Some(2)
        );
    }

    #[test]
    fn secrets_are_redacted_from_details() {
        let d = json!({
            "access_token": "abc",
            "client_secret": "s3",
            "nested": [{"password": "p", "token_name": "ci"}],
            "note": "xoxb-1234-abcd",
            "name": "alice",
            "refresh_token": null,
        });
        let r = redact_details(&d);
        assert_eq!(r["access_token"], REDACTED);
        assert_eq!(r["client_secret"], REDACTED);
        assert_eq!(r["nested"][0]["password"], REDACTED);
        assert_eq!(r["nested"][0]["token_name"], "ci");
        assert_eq!(r["note"], REDACTED);
        assert_eq!(r["name"], "alice");
        assert_eq!(r["refresh_token"], Value::Null);
    }
}
