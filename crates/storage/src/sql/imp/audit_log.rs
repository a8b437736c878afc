//! The hash-chained audit log (`AuditStore`).

use super::*;

impl Backend {
    pub(super) async fn append_audit_tx(
        tx: &mut Tx,
        org: &OrgId,
        entry: NewAuditEntry,
        details_canonical: String,
    ) -> Result<AuditEntry> {
        Self::require_org(tx, org).await?;
        sqlx::query(
            "INSERT INTO audit_heads (org_id, last_seq, last_hash) VALUES ($1, 0, '') \
             ON CONFLICT (org_id) DO NOTHING",
        )
        .bind(org.as_str())
        .execute(&mut **tx)
        .await
        .map_err(|e| db_err("reading the audit head", e))?;
        // On PostgreSQL the row lock serializes appends per organization.
        let head = sqlx::query(&format!(
            "SELECT last_seq, last_hash FROM audit_heads WHERE org_id = $1{}",
            if PG { " FOR UPDATE" } else { "" }
        ))
        .bind(org.as_str())
        .fetch_one(&mut **tx)
        .await
        .map_err(|e| db_err("reading the audit head", e))?;
        let last_seq: i64 = col(&head, "last_seq")?;
        let prev_hash = col_str(&head, "last_hash")?;
        let seq = last_seq + 1;
        let at_ns = now_ns();
        let at = from_ts("now", at_ns)?;
        let details: serde_json::Value = serde_json::from_str(&details_canonical)
            .map_err(|e| storage(format!("canonical audit details do not parse: {e}")))?;
        let actor_json = audit::canonical_json(
            &serde_json::to_value(&entry.actor)
                .map_err(|e| storage(format!("serializing the audit actor: {e}")))?,
        );
        let hash = audit::entry_hash(
            org,
            seq as u64,
            &entry.actor,
            &entry.action,
            &entry.target,
            at,
            &details,
            &prev_hash,
        );
        sqlx::query(
            "INSERT INTO audit_log (org_id, seq, actor, action, target, at, details, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(org.as_str())
        .bind(seq)
        .bind(&actor_json)
        .bind(&entry.action)
        .bind(&entry.target)
        .bind(at_ns)
        .bind(&details_canonical)
        .bind(&prev_hash)
        .bind(&hash)
        .execute(&mut **tx)
        .await
        .map_err(|e| db_err("appending to the audit log", e))?;
        sqlx::query("UPDATE audit_heads SET last_seq = $2, last_hash = $3 WHERE org_id = $1")
            .bind(org.as_str())
            .bind(seq)
            .bind(&hash)
            .execute(&mut **tx)
            .await
            .map_err(|e| db_err("advancing the audit head", e))?;
        Ok(AuditEntry {
            seq: seq as u64,
            org: org.clone(),
            actor: entry.actor,
            action: entry.action,
            target: entry.target,
            at,
            details,
            prev_hash,
            hash,
        })
    }
}

#[async_trait]
impl AuditStore for Backend {
    async fn append_audit(&self, org: &OrgId, entry: NewAuditEntry) -> Result<AuditEntry> {
        let details = validate_audit(&entry)?;
        let mut tx = self.begin().await?;
        let e = Self::append_audit_tx(&mut tx, org, entry, details).await?;
        Self::commit(tx).await?;
        Ok(e)
    }

    async fn list_audit(&self, org: &OrgId, after: u64, limit: usize) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE org_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
        ))
        .bind(org.as_str())
        .bind(i64::try_from(after).unwrap_or(i64::MAX))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.read)
        .await
        .map_err(|e| db_err("reading the audit log", e))?;
        rows.iter().map(|r| audit_from_row(org, r)).collect()
    }

    async fn verify_audit(&self, org: &OrgId) -> Result<AuditVerification> {
        const PAGE: i64 = 1000;
        // One snapshot for the chain and its head, so concurrent appends do not look like
        // tampering.
        let mut tx = self
            .read
            .begin_with(if PG {
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
            } else {
                "BEGIN"
            })
            .await
            .map_err(|e| db_err("starting a read transaction", e))?;
        let head = sqlx::query("SELECT last_seq, last_hash FROM audit_heads WHERE org_id = $1")
            .bind(org.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| db_err("reading the audit head", e))?;
        let head = match head {
            Some(r) => Some((count(&r, "last_seq")?, col_str(&r, "last_hash")?)),
            None => None,
        };
        let mut v = audit::ChainVerifier::new();
        let mut after = i64::MIN;
        'pages: loop {
            let rows = sqlx::query(&format!(
                "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE org_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
            ))
            .bind(org.as_str())
            .bind(after)
            .bind(PAGE)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| db_err("reading the audit log", e))?;
            for row in &rows {
                let seq: i64 = col(row, "seq")?;
                after = seq;
                match audit_from_row(org, row) {
                    Ok(e) => v.push(&e),
                    Err(e) => v.unreadable(u64::try_from(seq).unwrap_or(0), e.message()),
                }
                if v.failed() {
                    break 'pages;
                }
            }
            if (rows.len() as i64) < PAGE {
                break;
            }
        }
        tx.rollback()
            .await
            .map_err(|e| db_err("ending the read transaction", e))?;
        let mut result = v.finish(
            head.as_ref()
                .map(|(s, h)| (*s, h.as_str()))
                .or(Some((0, ""))),
        );
        if head.is_none() && result.checked > 0 && result.first_bad_seq == Some(1) {
            result.reason = Some("the chain head of this organization is missing".to_owned());
        }
        Ok(result)
    }
}
