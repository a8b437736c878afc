//! The durable inbox and outbox (`QueueStore`).

use super::*;

impl Backend {
    pub(super) async fn enqueue_tx(
        &self,
        tx: &mut Tx,
        deliveries: &[(&NewDelivery, &str)],
        now: i64,
    ) -> Result<()> {
        let mut platforms: HashMap<(&str, &str), PlatformKind> = HashMap::new();
        for (d, _) in deliveries {
            let key = (d.org.as_str(), d.connection.as_str());
            let platform = match platforms.get(&key) {
                Some(p) => *p,
                None => {
                    let p = self.connection_platform(tx, &d.org, &d.connection).await?;
                    platforms.insert(key, p);
                    p
                }
            };
            if platform != d.target.platform {
                return Err(Error::invalid(format!(
                    "a delivery to {} cannot go through {platform} connection {}",
                    d.target, d.connection
                )));
            }
        }
        let rows: Vec<(&NewDelivery, &str, String)> = deliveries
            .iter()
            .map(|(d, p)| (*d, *p, d.target.to_string()))
            .collect();
        for chunk in rows.chunks(CHUNK) {
            let mut qb = QueryBuilder::<DB>::new(
                "INSERT INTO outbox (org_id, connection_id, target, payload, job_version, state, \
                 attempts, next_attempt_at, created_at) ",
            );
            qb.push_values(chunk, |mut b, (d, payload, target)| {
                b.push_bind(d.org.as_str())
                    .push_bind(d.connection.as_str())
                    .push_bind(target.as_str())
                    .push_bind(*payload)
                    .push_bind(i64::from(DeliveryJob::FORMAT_VERSION))
                    .push_bind("pending")
                    .push_bind(0i64)
                    .push_bind(now)
                    .push_bind(now);
            });
            qb.build().execute(&mut **tx).await.map_err(|e| match &e {
                sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
                    self.platforms.clear();
                    Error::not_found("a connection of these deliveries no longer exists")
                }
                _ => db_err("enqueueing deliveries", e),
            })?;
        }
        Ok(())
    }

    /// Unleases `ids` (those `worker` holds) until `delay` from now; the lease's attempt
    /// counts only when `counted`. A waiting item holds its channel's later items back
    /// (the lease skips items behind one whose `lease_until` is still ahead).
    async fn give_back(
        &self,
        worker: &WorkerId,
        ids: &[InboxId],
        delay: Duration,
        counted: bool,
    ) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let until = add_ns(now_ns(), delay);
        let mut tx = self.begin().await?;
        for chunk in ids.chunks(CHUNK) {
            let mut qb =
                QueryBuilder::<DB>::new("UPDATE inbox SET lease_owner = NULL, lease_until = ");
            qb.push_bind(until);
            if !counted {
                qb.push(", attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END");
            }
            qb.push(" WHERE processed_at IS NULL AND lease_owner = ");
            qb.push_bind(worker.as_str()).push(" AND id IN (");
            push_list(&mut qb, chunk.iter().map(|id| id.0));
            qb.build()
                .execute(&mut *tx)
                .await
                .map_err(|e| db_err("giving back inbox events", e))?;
        }
        Self::commit(tx).await
    }

    /// Explains why a leased-delivery update matched nothing.
    pub(super) async fn outbox_lost(&self, worker: &str, id: i64) -> Error {
        let row = sqlx::query("SELECT state, lease_owner FROM outbox WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.write)
            .await;
        match row {
            Err(e) => db_err("reading the delivery", e),
            Ok(None) => Error::not_found(format!("delivery {id} does not exist")),
            Ok(Some(r)) => match col_str(&r, "state").as_deref() {
                Ok("done") => conflict(format!("delivery {id} is already done")),
                Ok("failed") => conflict(format!("delivery {id} has already failed")),
                _ => conflict(format!(
                    "worker {worker:?} no longer holds the lease on delivery {id}"
                )),
            },
        }
    }

    pub(crate) async fn prune_queues(&self, before: OffsetDateTime) -> Result<PruneReport> {
        let before = ts("prune time", before)?;
        let mut tx = self.begin().await?;
        let inbox =
            sqlx::query("DELETE FROM inbox WHERE processed_at IS NOT NULL AND processed_at < $1")
                .bind(before)
                .execute(&mut *tx)
                .await
                .map_err(|e| db_err("pruning the inbox", e))?
                .rows_affected();
        let outbox =
            sqlx::query("DELETE FROM outbox WHERE state <> 'pending' AND finished_at < $1")
                .bind(before)
                .execute(&mut *tx)
                .await
                .map_err(|e| db_err("pruning the outbox", e))?
                .rows_affected();
        Self::commit(tx).await?;
        Ok(PruneReport { inbox, outbox })
    }
}

#[async_trait]
impl QueueStore for Backend {
    async fn inbox_accept(
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

    async fn inbox_accept_batch(
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
        let platform = match self.platforms.get(org, connection) {
            Some(p) => p,
            None => {
                let mut tx = self.begin().await?;
                let p = self.connection_platform(&mut tx, org, connection).await?;
                Self::commit(tx).await?;
                p
            }
        };
        let stored = items
            .iter()
            .map(|i| validate_inbound(i, platform, connection))
            .collect::<Result<Vec<_>>>()?;
        let now = now_ns();
        // One multi-row statement per chunk (a single statement is atomic by itself: the
        // webhook's acknowledgement waits on one round trip to the writer, not four);
        // more than one chunk goes in a transaction.
        let mut inserted: HashMap<String, usize> = HashMap::new();
        let mut tx = if stored.len() > CHUNK {
            Some(self.begin().await?)
        } else {
            None
        };
        for chunk in stored.chunks(CHUNK) {
            let mut qb = QueryBuilder::<DB>::new(
                "INSERT INTO inbox (org_id, connection_id, platform, event_id, channel, item, \
                 received_at) ",
            );
            qb.push_values(chunk, |mut b, item| {
                b.push_bind(org.as_str())
                    .push_bind(connection.as_str())
                    .push_bind(platform.as_str())
                    .push_bind(item.key)
                    .push_bind(item.channel.as_deref())
                    .push_bind(item.json.as_str())
                    .push_bind(now);
            });
            qb.push(" ON CONFLICT (org_id, platform, event_id) DO NOTHING RETURNING event_id");
            let q = qb.build();
            let rows = match tx.as_mut() {
                Some(tx) => q.fetch_all(&mut **tx).await,
                None => q.fetch_all(&self.write).await,
            }
            .map_err(|e| self.connection_gone(org, connection, "storing the inbox items", e))?;
            for row in &rows {
                if let Some(key) = row
                    .try_get::<Option<String>, _>("event_id")
                    .map_err(|e| db_err("reading a stored inbox item", e))?
                {
                    *inserted.entry(key).or_default() += 1;
                }
            }
        }
        if let Some(tx) = tx {
            Self::commit(tx).await?;
        }
        // Keyed items are accepted when their key was inserted (a key given twice in one
        // batch is inserted once: the first is accepted, the rest are duplicates); items
        // without a key are always inserted.
        Ok(stored
            .iter()
            .map(|item| match item.key {
                None => InboxOutcome::Accepted,
                Some(k) => match inserted.get_mut(k) {
                    Some(n) if *n > 0 => {
                        *n -= 1;
                        InboxOutcome::Accepted
                    }
                    _ => InboxOutcome::Duplicate,
                },
            })
            .collect())
    }

    async fn inbox_lease(
        &self,
        worker: &WorkerId,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<InboxItem>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let now = now_ns();
        // On SQLite the one statement below is atomic (one writer): no transaction, so a
        // lease is one round trip to the writer.
        let mut tx = if PG {
            let mut tx = self.begin().await?;
            // Per-channel exclusivity looks at other rows' leases: serialize lease calls so
            // each sees the previous one's result.
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(INBOX_LEASE_LOCK)
                .execute(&mut *tx)
                .await
                .map_err(|e| db_err("locking the inbox", e))?;
            Some(tx)
        } else {
            None
        };
        let q = sqlx::query(
            "UPDATE inbox SET lease_owner = $1, lease_until = $2, attempts = attempts + 1 \
             WHERE id IN (SELECT i.id FROM inbox i WHERE i.processed_at IS NULL \
               AND (i.lease_until IS NULL OR i.lease_until <= $3) \
               AND NOT EXISTS (SELECT 1 FROM inbox e WHERE e.org_id = i.org_id \
                 AND e.channel = i.channel AND e.processed_at IS NULL AND e.id < i.id \
                 AND e.lease_until > $3) \
               ORDER BY i.id LIMIT $4) \
             RETURNING id, org_id, connection_id, item, received_at, attempts",
        )
        .bind(worker.as_str())
        .bind(add_ns(now, lease))
        .bind(now)
        .bind(i64::try_from(max).unwrap_or(i64::MAX));
        let rows = match tx.as_mut() {
            Some(tx) => q.fetch_all(&mut **tx).await,
            None => q.fetch_all(&self.write).await,
        }
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
                    received_at: from_ts("inbox.received_at", col(row, "received_at")?)?,
                    // Counted by this lease already.
                    attempts: u32::try_from(col::<i64>(row, "attempts")?.saturating_sub(1).max(0))
                        .unwrap_or(u32::MAX),
                })
            })();
            match decoded {
                Ok(item) => items.push(item),
                Err(e) => poisoned.push((id, e.message().to_owned())),
            }
        }
        for (id, why) in &poisoned {
            tracing::warn!(inbox_id = id, error = %why, "inbox event cannot be decoded; set aside");
            let q = sqlx::query(
                "UPDATE inbox SET processed_at = $1, error = $2, lease_owner = NULL, \
                 lease_until = NULL WHERE id = $3",
            )
            .bind(now)
            .bind(limits::truncate(why, limits::MAX_ERROR_BYTES))
            .bind(id);
            match tx.as_mut() {
                Some(tx) => q.execute(&mut **tx).await,
                None => q.execute(&self.write).await,
            }
            .map_err(|e| db_err("setting aside an undecodable event", e))?;
        }
        if let Some(tx) = tx {
            Self::commit(tx).await?;
        }
        items.sort_by_key(|i| i.id);
        Ok(items)
    }

    async fn inbox_defer(&self, worker: &WorkerId, ids: &[InboxId], delay: Duration) -> Result<()> {
        self.give_back(worker, ids, delay, false).await
    }

    async fn inbox_retry(&self, worker: &WorkerId, ids: &[InboxId], delay: Duration) -> Result<()> {
        self.give_back(worker, ids, delay, true).await
    }

    async fn inbox_complete(
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
        self.enqueue_tx(&mut tx, &with_payloads(deliveries, &payloads), now)
            .await?;
        Self::commit(tx).await
    }

    async fn inbox_complete_batch(&self, worker: &WorkerId, items: &[CompletedItem]) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let payloads = items
            .iter()
            .map(|i| {
                i.deliveries
                    .iter()
                    .map(validate_delivery)
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        let now = now_ns();
        // A handful of statements for the whole batch, whatever its size: the transaction
        // holds SQLite's one writer (which the webhooks wait on) for as short as it can.
        let mut tx = self.begin().await?;
        let mut orgs: HashMap<i64, OrgId> = HashMap::with_capacity(items.len());
        for chunk in items.chunks(CHUNK) {
            let mut qb = QueryBuilder::<DB>::new("UPDATE inbox SET processed_at = ");
            qb.push_bind(now)
                .push(", lease_owner = NULL, lease_until = NULL WHERE processed_at IS NULL AND lease_owner = ")
                .push_bind(worker.as_str())
                .push(" AND id IN (");
            push_list(&mut qb, chunk.iter().map(|item| item.id.0));
            qb.push(" RETURNING id, org_id");
            let rows = qb
                .build()
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| db_err("completing inbox events", e))?;
            for row in &rows {
                orgs.insert(col(row, "id")?, parse_col(row, "inbox", "org_id")?);
            }
        }
        // Each item once: a repeated id completes nothing the second time, as one after the
        // other would.
        let mut seen = std::collections::HashSet::with_capacity(items.len());
        let mut copies: Vec<(&OrgId, &MessageCopy)> = Vec::new();
        let mut deliveries: Vec<(&NewDelivery, &str)> = Vec::new();
        for (item, payloads) in items.iter().zip(&payloads) {
            let id = item.id.0;
            let org = match orgs.get(&id) {
                Some(org) if seen.insert(id) => org,
                _ => {
                    return Err(conflict(format!(
                        "inbox event {id} is not leased by worker {:?} (processed, lost or absent)",
                        worker.as_str()
                    )));
                }
            };
            if let Some(d) = item.deliveries.iter().find(|d| &d.org != org) {
                return Err(Error::invalid(format!(
                    "inbox event {id} belongs to organization {org}; a delivery for organization {} cannot come from it",
                    d.org
                )));
            }
            copies.extend(item.copies.iter().map(|c| (org, c)));
            deliveries.extend(
                item.deliveries
                    .iter()
                    .zip(payloads.iter().map(String::as_str)),
            );
        }
        Self::put_copies_tx(&mut tx, &copies).await?;
        self.enqueue_tx(&mut tx, &deliveries, now).await?;
        Self::commit(tx).await
    }

    async fn outbox_enqueue(&self, deliveries: &[NewDelivery]) -> Result<()> {
        if deliveries.is_empty() {
            return Ok(());
        }
        let payloads = deliveries
            .iter()
            .map(validate_delivery)
            .collect::<Result<Vec<_>>>()?;
        let mut tx = self.begin().await?;
        self.enqueue_tx(&mut tx, &with_payloads(deliveries, &payloads), now_ns())
            .await?;
        Self::commit(tx).await
    }

    async fn outbox_lease(
        &self,
        worker: &WorkerId,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<Delivery>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let now = now_ns();
        // Only the oldest pending delivery of each target is a candidate (per-target order);
        // it is leasable when due and not under a live lease. PostgreSQL skips rows another
        // worker is leasing right now.
        let sql = format!(
            "UPDATE outbox SET lease_owner = $1, lease_until = $2, attempts = attempts + 1 \
             WHERE id IN (SELECT o.id FROM outbox o WHERE o.state = 'pending' \
               AND o.next_attempt_at <= $3 \
               AND (o.lease_until IS NULL OR o.lease_until <= $3) \
               AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.org_id = o.org_id \
                 AND p.target = o.target AND p.state = 'pending' AND p.id < o.id) \
               ORDER BY o.id LIMIT $4{}) \
             RETURNING id, org_id, connection_id, target, payload, job_version, attempts",
            if PG { " FOR UPDATE SKIP LOCKED" } else { "" }
        );
        // One statement, atomic by itself: a lease is one round trip to the writer.
        let rows = sqlx::query(&sql)
            .bind(worker.as_str())
            .bind(add_ns(now, lease))
            .bind(now)
            .bind(i64::try_from(max).unwrap_or(i64::MAX))
            .fetch_all(&self.write)
            .await
            .map_err(|e| db_err("leasing deliveries", e))?;
        let mut out = Vec::with_capacity(rows.len());
        let mut poisoned: Vec<(i64, String)> = Vec::new();
        for row in &rows {
            let id: i64 = col(row, "id")?;
            let decoded = (|| -> Result<Delivery> {
                let attempts: i64 = col(row, "attempts")?;
                Ok(Delivery {
                    id: DeliveryId(id),
                    org: parse_col(row, "outbox", "org_id")?,
                    connection: parse_col(row, "outbox", "connection_id")?,
                    target: parse_col(row, "outbox", "target")?,
                    job: decode_job(id, col(row, "job_version")?, &col_str(row, "payload")?)?,
                    attempts: u32::try_from(attempts.saturating_sub(1).max(0)).unwrap_or(u32::MAX),
                })
            })();
            match decoded {
                Ok(d) => out.push(d),
                Err(e) => poisoned.push((id, e.message().to_owned())),
            }
        }
        for (id, why) in &poisoned {
            tracing::warn!(outbox_id = id, error = %why, "delivery cannot be decoded; marked failed");
            sqlx::query(
                "UPDATE outbox SET state = 'failed', finished_at = $1, last_error = $2, \
                 lease_owner = NULL, lease_until = NULL WHERE id = $3",
            )
            .bind(now)
            .bind(limits::truncate(why, limits::MAX_ERROR_BYTES))
            .bind(id)
            .execute(&self.write)
            .await
            .map_err(|e| db_err("failing an undecodable delivery", e))?;
        }
        out.sort_by_key(|d| d.id);
        Ok(out)
    }

    async fn outbox_complete(&self, worker: &WorkerId, id: DeliveryId) -> Result<()> {
        let (worker, id) = (worker.as_str(), id.0);
        let r = sqlx::query(
            "UPDATE outbox SET state = 'done', finished_at = $1, lease_owner = NULL, \
             lease_until = NULL WHERE id = $2 AND state = 'pending' AND lease_owner = $3",
        )
        .bind(now_ns())
        .bind(id)
        .bind(worker)
        .execute(&self.write)
        .await
        .map_err(|e| db_err("completing the delivery", e))?;
        if r.rows_affected() == 0 {
            return Err(self.outbox_lost(worker, id).await);
        }
        Ok(())
    }

    async fn outbox_retry(
        &self,
        worker: &WorkerId,
        id: DeliveryId,
        next_attempt_at: OffsetDateTime,
        error: &str,
    ) -> Result<()> {
        let (worker, id) = (worker.as_str(), id.0);
        let next = ts("next attempt time", next_attempt_at)?;
        let r = sqlx::query(
            "UPDATE outbox SET next_attempt_at = $1, last_error = $2, lease_owner = NULL, \
             lease_until = NULL WHERE id = $3 AND state = 'pending' AND lease_owner = $4",
        )
        .bind(next)
        .bind(limits::truncate(error, limits::MAX_ERROR_BYTES))
        .bind(id)
        .bind(worker)
        .execute(&self.write)
        .await
        .map_err(|e| db_err("rescheduling the delivery", e))?;
        if r.rows_affected() == 0 {
            return Err(self.outbox_lost(worker, id).await);
        }
        Ok(())
    }

    async fn outbox_fail(&self, worker: &WorkerId, id: DeliveryId, error: &str) -> Result<()> {
        let (worker, id) = (worker.as_str(), id.0);
        let r = sqlx::query(
            "UPDATE outbox SET state = 'failed', finished_at = $1, last_error = $2, \
             lease_owner = NULL, lease_until = NULL \
             WHERE id = $3 AND state = 'pending' AND lease_owner = $4",
        )
        .bind(now_ns())
        .bind(limits::truncate(error, limits::MAX_ERROR_BYTES))
        .bind(id)
        .bind(worker)
        .execute(&self.write)
        .await
        .map_err(|e| db_err("failing the delivery", e))?;
        if r.rows_affected() == 0 {
            return Err(self.outbox_lost(worker, id).await);
        }
        Ok(())
    }

    async fn outbox_backlog(&self, org: &OrgId, target: &ChannelRef) -> Result<u64> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM outbox WHERE org_id = $1 AND target = $2 \
             AND state = 'pending'",
        )
        .bind(org.as_str())
        .bind(target.to_string())
        .fetch_one(&self.read)
        .await
        .map_err(|e| db_err("counting a target's backlog", e))?;
        count(&row, "n")
    }

    async fn outbox_lease_following(
        &self,
        worker: &WorkerId,
        first: DeliveryId,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<Delivery>> {
        let now = now_ns();
        let mut tx = self.begin().await?;
        let head = sqlx::query(
            "SELECT org_id, target FROM outbox WHERE id = $1 AND state = 'pending' \
             AND lease_owner = $2 AND lease_until > $3",
        )
        .bind(first.0)
        .bind(worker.as_str())
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| db_err("reading the leased delivery", e))?;
        let Some(head) = head else {
            drop(tx);
            return Err(self.outbox_lost(worker.as_str(), first.0).await);
        };
        if max == 0 {
            return Ok(Vec::new());
        }
        let candidates = sqlx::query(
            "SELECT id, next_attempt_at, lease_until FROM outbox WHERE org_id = $1 \
             AND target = $2 AND state = 'pending' AND id > $3 ORDER BY id LIMIT $4",
        )
        .bind(col_str(&head, "org_id")?)
        .bind(col_str(&head, "target")?)
        .bind(first.0)
        .bind(i64::try_from(max).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| db_err("reading the backlog", e))?;
        let mut ids = Vec::with_capacity(candidates.len());
        for row in &candidates {
            let due: i64 = col(row, "next_attempt_at")?;
            let leased: Option<i64> = col(row, "lease_until")?;
            if due > now || leased.is_some_and(|l| l > now) {
                break;
            }
            ids.push(col::<i64>(row, "id")?);
        }
        let mut out = Vec::with_capacity(ids.len());
        if ids.is_empty() {
            Self::commit(tx).await?;
            return Ok(out);
        }
        let mut qb = QueryBuilder::<DB>::new("UPDATE outbox SET lease_owner = ");
        qb.push_bind(worker.as_str())
            .push(", lease_until = ")
            .push_bind(add_ns(now, lease))
            .push(", attempts = attempts + 1 WHERE id IN (");
        push_list(&mut qb, ids.iter().copied());
        qb.push(" RETURNING id, org_id, connection_id, target, payload, job_version, attempts");
        let mut rows = qb
            .build()
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| db_err("leasing the backlog", e))?;
        rows.sort_by_key(|r| col::<i64>(r, "id").unwrap_or(i64::MAX));
        let mut release: Vec<i64> = Vec::new();
        for row in &rows {
            let id: i64 = col(row, "id")?;
            if !release.is_empty() {
                release.push(id);
                continue;
            }
            let decoded = (|| -> Result<Delivery> {
                let attempts: i64 = col(row, "attempts")?;
                Ok(Delivery {
                    id: DeliveryId(id),
                    org: parse_col(row, "outbox", "org_id")?,
                    connection: parse_col(row, "outbox", "connection_id")?,
                    target: parse_col(row, "outbox", "target")?,
                    job: decode_job(id, col(row, "job_version")?, &col_str(row, "payload")?)?,
                    attempts: u32::try_from(attempts.saturating_sub(1).max(0)).unwrap_or(u32::MAX),
                })
            })();
            match decoded {
                Ok(d) => out.push(d),
                Err(e) => {
                    // Not taken, nor anything after it: the ordinary lease sets it aside as
                    // outbox_lease does, and order is kept.
                    tracing::warn!(outbox_id = id, error = %e.message(), "delivery cannot be decoded; left for the ordinary lease");
                    release.push(id);
                }
            }
        }
        for id in release {
            sqlx::query(
                "UPDATE outbox SET lease_owner = NULL, lease_until = NULL, \
                 attempts = attempts - 1 WHERE id = $1",
            )
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| db_err("releasing an undecodable delivery", e))?;
        }
        Self::commit(tx).await?;
        Ok(out)
    }

    async fn outbox_release(&self, worker: &WorkerId, ids: &[DeliveryId]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        for chunk in ids.chunks(CHUNK) {
            let mut qb = QueryBuilder::<DB>::new(
                "UPDATE outbox SET lease_owner = NULL, lease_until = NULL, \
                 attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END \
                 WHERE state = 'pending' AND lease_owner = ",
            );
            qb.push_bind(worker.as_str()).push(" AND id IN (");
            push_list(&mut qb, chunk.iter().map(|id| id.0));
            qb.build()
                .execute(&mut *tx)
                .await
                .map_err(|e| db_err("releasing deliveries", e))?;
        }
        Self::commit(tx).await
    }

    async fn outbox_complete_many(&self, worker: &WorkerId, ids: &[DeliveryId]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let now = now_ns();
        let mut tx = self.begin().await?;
        let mut done = std::collections::HashSet::with_capacity(ids.len());
        for chunk in ids.chunks(CHUNK) {
            let mut qb =
                QueryBuilder::<DB>::new("UPDATE outbox SET state = 'done', finished_at = ");
            qb.push_bind(now)
                .push(", lease_owner = NULL, lease_until = NULL WHERE state = 'pending' AND lease_owner = ")
                .push_bind(worker.as_str())
                .push(" AND id IN (");
            push_list(&mut qb, chunk.iter().map(|id| id.0));
            qb.push(" RETURNING id");
            let rows = qb
                .build()
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| db_err("completing deliveries", e))?;
            for row in &rows {
                done.insert(col::<i64>(row, "id")?);
            }
        }
        // The first delivery (in the order given) this could not complete, a repeated one
        // included, fails the whole call and completes none.
        let mut seen = std::collections::HashSet::with_capacity(ids.len());
        if let Some(id) = ids
            .iter()
            .find(|id| !done.contains(&id.0) || !seen.insert(id.0))
        {
            drop(tx);
            return Err(self.outbox_lost(worker.as_str(), id.0).await);
        }
        Self::commit(tx).await
    }

    async fn outbox_dead_letters(
        &self,
        org: &OrgId,
        before: Option<DeliveryId>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>> {
        let limit = page_limit(limit)?;
        let rows = sqlx::query(
            "SELECT id, connection_id, target, payload, job_version, attempts, last_error, \
             finished_at FROM outbox WHERE org_id = $1 AND state = 'failed' AND id < $2 \
             ORDER BY id DESC LIMIT $3",
        )
        .bind(org.as_str())
        .bind(before.map_or(i64::MAX, |b| b.0))
        .bind(limit)
        .fetch_all(&self.read)
        .await
        .map_err(|e| db_err("listing dead letters", e))?;
        rows.iter()
            .map(|row| {
                let id: i64 = col(row, "id")?;
                let attempts: i64 = col(row, "attempts")?;
                let finished: Option<i64> = col(row, "finished_at")?;
                Ok(DeadLetter {
                    id: DeliveryId(id),
                    connection: parse_col(row, "outbox", "connection_id")?,
                    target: parse_col(row, "outbox", "target")?,
                    job: decode_job(id, col(row, "job_version")?, &col_str(row, "payload")?).ok(),
                    attempts: u32::try_from(attempts.max(0)).unwrap_or(u32::MAX),
                    error: col(row, "last_error")?,
                    failed_at: from_ts("outbox.finished_at", finished.unwrap_or(0))?,
                })
            })
            .collect()
    }

    async fn outbox_dead_letter_count(&self, org: &OrgId) -> Result<u64> {
        let row =
            sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE org_id = $1 AND state = 'failed'")
                .bind(org.as_str())
                .fetch_one(&self.read)
                .await
                .map_err(|e| db_err("counting dead letters", e))?;
        count(&row, "n")
    }

    async fn outbox_retry_dead(&self, org: &OrgId, id: DeliveryId) -> Result<()> {
        let r = sqlx::query(
            "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = $1, \
             finished_at = NULL, lease_owner = NULL, lease_until = NULL \
             WHERE org_id = $2 AND id = $3 AND state = 'failed'",
        )
        .bind(now_ns())
        .bind(org.as_str())
        .bind(id.0)
        .execute(&self.write)
        .await
        .map_err(|e| db_err("queueing a dead letter again", e))?;
        if r.rows_affected() == 0 {
            return Err(Error::not_found(format!(
                "organization {org} has no dead letter {id}"
            )));
        }
        Ok(())
    }

    async fn inbox_pending(&self, org: &OrgId) -> Result<u64> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM inbox WHERE org_id = $1 AND processed_at IS NULL",
        )
        .bind(org.as_str())
        .fetch_one(&self.read)
        .await
        .map_err(|e| db_err("counting pending inbox items", e))?;
        count(&row, "n")
    }

    async fn outbox_pending(&self, org: &OrgId) -> Result<u64> {
        let row =
            sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE org_id = $1 AND state = 'pending'")
                .bind(org.as_str())
                .fetch_one(&self.read)
                .await
                .map_err(|e| db_err("counting pending deliveries", e))?;
        count(&row, "n")
    }
}

/// Each delivery with its validated payload, as `enqueue_tx` takes them.
fn with_payloads<'a>(
    deliveries: &'a [NewDelivery],
    payloads: &'a [String],
) -> Vec<(&'a NewDelivery, &'a str)> {
    deliveries
        .iter()
        .zip(payloads.iter().map(String::as_str))
        .collect()
}
