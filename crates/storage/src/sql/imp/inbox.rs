//! The durable inbox (`QueueStore`).

use super::*;

impl Backend {
    pub(crate) async fn inbox_accept(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
        item: &Inbound,
    ) -> Result<InboxOutcome> {
        let mut out = self
            .inbox_accept_batch(org, connection, std::slice::from_ref(item))
            .await?;
        out.pop()
            .ok_or_else(|| storage("accepting one item returned no outcome"))
    }

    pub(crate) async fn inbox_accept_batch(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
        items: &[Inbound],
    ) -> Result<Vec<InboxOutcome>> {
        if items.len() > MAX_INBOX_BATCH {
            return Err(Error::invalid(format!(
                "a batch of {} items was given; at most {MAX_INBOX_BATCH} are accepted at once",
                items.len()
            )));
        }
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin().await?;
        let platform = Self::require_connection(&mut tx, org, connection).await?;
        let stored = items
            .iter()
            .map(|i| validate_inbound(i, platform, connection))
            .collect::<Result<Vec<_>>>()?;
        let now = now_ns();
        let mut out = Vec::with_capacity(stored.len());
        for item in &stored {
            let r = sqlx::query(
                "INSERT INTO inbox (org_id, connection_id, platform, event_id, channel, item, \
                 received_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (org_id, platform, event_id) DO NOTHING",
            )
            .bind(org.as_str())
            .bind(connection.as_str())
            .bind(platform.as_str())
            .bind(item.key)
            .bind(item.channel.as_deref())
            .bind(&item.json)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| db_err("storing the inbox item", e))?;
            out.push(if r.rows_affected() == 1 {
                InboxOutcome::Accepted
            } else {
                InboxOutcome::Duplicate
            });
        }
        Self::commit(tx).await?;
        Ok(out)
    }

    pub(crate) async fn inbox_lease(
        &self,
        worker: &WorkerId,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<InboxItem>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let now = now_ns();
        let mut tx = self.begin().await?;
        if PG {
            // Per-channel exclusivity looks at other rows' leases: serialize lease calls so
            // each sees the previous one's result.
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(INBOX_LEASE_LOCK)
                .execute(&mut *tx)
                .await
                .map_err(|e| db_err("locking the inbox", e))?;
        }
        let rows = sqlx::query(
            "UPDATE inbox SET lease_owner = $1, lease_until = $2, attempts = attempts + 1 \
             WHERE id IN (SELECT i.id FROM inbox i WHERE i.processed_at IS NULL \
               AND (i.lease_until IS NULL OR i.lease_until <= $3) \
               AND NOT EXISTS (SELECT 1 FROM inbox e WHERE e.org_id = i.org_id \
                 AND e.channel = i.channel AND e.processed_at IS NULL AND e.id < i.id \
                 AND e.lease_until > $3) \
               ORDER BY i.id LIMIT $4) \
             RETURNING id, org_id, connection_id, item",
        )
        .bind(worker.as_str())
        .bind(add_ns(now, lease))
        .bind(now)
        .bind(i64::try_from(max).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| db_err("leasing inbox events", e))?;
        let mut items = Vec::with_capacity(rows.len());
        let mut poisoned: Vec<(i64, String)> = Vec::new();
        for row in &rows {
            let id: i64 = col(row, "id")?;
            let decoded = (|| -> Result<InboxItem> {
                Ok(InboxItem {
                    id: InboxId(id),
                    org: parse_col(row, "inbox", "org_id")?,
                    connection: parse_col(row, "inbox", "connection_id")?,
                    item: parse_json::<Inbound>("inbox.item", &col_str(row, "item")?)?,
                })
            })();
            match decoded {
                Ok(item) => items.push(item),
                Err(e) => poisoned.push((id, e.message().to_owned())),
            }
        }
        for (id, why) in &poisoned {
            tracing::warn!(inbox_id = id, error = %why, "inbox event cannot be decoded; set aside");
            sqlx::query(
                "UPDATE inbox SET processed_at = $1, error = $2, lease_owner = NULL, \
                 lease_until = NULL WHERE id = $3",
            )
            .bind(now)
            .bind(limits::truncate(why, limits::MAX_ERROR_BYTES))
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| db_err("setting aside an undecodable event", e))?;
        }
        Self::commit(tx).await?;
        items.sort_by_key(|i| i.id);
        Ok(items)
    }

    pub(crate) async fn inbox_complete(
        &self,
        worker: &WorkerId,
        id: InboxId,
        deliveries: &[NewDelivery],
    ) -> Result<()> {
        let (worker, id) = (worker.as_str(), id.0);
        let payloads = deliveries
            .iter()
            .map(validate_delivery)
            .collect::<Result<Vec<_>>>()?;
        let now = now_ns();
        let mut tx = self.begin().await?;
        let row = sqlx::query(
            "UPDATE inbox SET processed_at = $1, lease_owner = NULL, lease_until = NULL \
             WHERE id = $2 AND processed_at IS NULL AND lease_owner = $3 RETURNING org_id",
        )
        .bind(now)
        .bind(id)
        .bind(worker)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| db_err("completing the inbox event", e))?;
        let Some(row) = row else {
            let state = sqlx::query("SELECT processed_at, lease_owner FROM inbox WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| db_err("reading the inbox event", e))?;
            return Err(match state {
                None => Error::not_found(format!("inbox event {id} does not exist")),
                Some(r) if col::<Option<i64>>(&r, "processed_at")?.is_some() => {
                    conflict(format!("inbox event {id} was already processed"))
                }
                Some(_) => conflict(format!(
                    "worker {worker:?} no longer holds the lease on inbox event {id}"
                )),
            });
        };
        let org = col_str(&row, "org_id")?;
        if let Some(d) = deliveries.iter().find(|d| d.org.as_str() != org) {
            return Err(Error::invalid(format!(
                "inbox event {id} belongs to organization {org}; a delivery for organization {} cannot come from it",
                d.org
            )));
        }
        Self::enqueue_tx(&mut tx, deliveries, &payloads, now).await?;
        Self::commit(tx).await
    }
}
