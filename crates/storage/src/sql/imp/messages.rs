//! The message map (`MessageMapStore`).

use super::*;

impl Backend {
    /// Records a copy inside `tx` (the rules of `put_message_copy`).
    /// The insert that records a new copy and does nothing when (channel, message) or the
    /// part is taken: one statement on the hot path; the checks run only when it did nothing.
    fn insert_copy(
        org: &OrgId,
        copy: &MessageCopy,
    ) -> sqlx::query::Query<'static, DB, <DB as sqlx::Database>::Arguments<'static>> {
        let (posted_as, posted_as_user) = posted_as_columns(copy.posted_by.as_ref());
        sqlx::query(
            "INSERT INTO message_copies (org_id, platform, team_id, channel_id, message_id, \
             universal_id, thread_root, posted_as, posted_as_user, part, created_at, \
             posted_by_account) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING",
        )
        .bind(org.as_str().to_owned())
        .bind(copy.channel.platform.as_str())
        .bind(copy.channel.team.as_str().to_owned())
        .bind(copy.channel.channel.as_str().to_owned())
        .bind(copy.message.as_str().to_owned())
        .bind(copy.universal.as_str().to_owned())
        .bind(copy.thread_root.as_ref().map(|t| t.as_str().to_owned()))
        .bind(posted_as)
        .bind(posted_as_user.map(str::to_owned))
        .bind(i64::from(copy.part))
        .bind(now_ns())
        .bind(copy.posted_by_account.as_ref().map(|a| a.as_str().to_owned()))
    }

    /// Records a copy through the write pool in one statement; `false` when it must go the
    /// slow way (taken, or the insert failed, e.g. an unknown organization).
    pub(super) async fn put_copy_fast(&self, org: &OrgId, copy: &MessageCopy) -> bool {
        matches!(
            Self::insert_copy(org, copy).execute(&self.write).await,
            Ok(r) if r.rows_affected() == 1
        )
    }

    /// Records several copies inside `tx` (the rules of `put_message_copy` for each, in
    /// order): one multi-row insert, then the checks only for the copies it did not insert.
    pub(super) async fn put_copies_tx(
        tx: &mut Tx,
        copies: &[(&OrgId, &MessageCopy)],
    ) -> Result<()> {
        let now = now_ns();
        for chunk in copies.chunks(CHUNK) {
            let mut qb = QueryBuilder::<DB>::new(
                "INSERT INTO message_copies (org_id, platform, team_id, channel_id, message_id, \
                 universal_id, thread_root, posted_as, posted_as_user, part, created_at, \
                 posted_by_account) ",
            );
            qb.push_values(chunk, |mut b, (org, copy)| {
                let (posted_as, posted_as_user) = posted_as_columns(copy.posted_by.as_ref());
                b.push_bind(org.as_str())
                    .push_bind(copy.channel.platform.as_str())
                    .push_bind(copy.channel.team.as_str())
                    .push_bind(copy.channel.channel.as_str())
                    .push_bind(copy.message.as_str())
                    .push_bind(copy.universal.as_str())
                    .push_bind(copy.thread_root.as_ref().map(|t| t.as_str()))
                    .push_bind(posted_as)
                    .push_bind(posted_as_user)
                    .push_bind(i64::from(copy.part))
                    .push_bind(now)
                    .push_bind(copy.posted_by_account.as_ref().map(|a| a.as_str()));
            });
            qb.push(" ON CONFLICT DO NOTHING RETURNING org_id, platform, team_id, channel_id, message_id");
            let rows = qb
                .build()
                .fetch_all(&mut **tx)
                .await
                .map_err(|e| db_err("recording the message copies", e))?;
            let mut inserted = std::collections::HashSet::with_capacity(rows.len());
            for row in &rows {
                inserted.insert((
                    col_str(row, "org_id")?,
                    col_str(row, "platform")?,
                    col_str(row, "team_id")?,
                    col_str(row, "channel_id")?,
                    col_str(row, "message_id")?,
                ));
            }
            for (org, copy) in chunk {
                // Taken before, or twice in this batch: the one-by-one rules decide.
                let key = (
                    org.as_str().to_owned(),
                    copy.channel.platform.as_str().to_owned(),
                    copy.channel.team.as_str().to_owned(),
                    copy.channel.channel.as_str().to_owned(),
                    copy.message.as_str().to_owned(),
                );
                if !inserted.remove(&key) {
                    Self::put_copy_tx(tx, org, copy).await?;
                }
            }
        }
        Ok(())
    }

    pub(super) async fn put_copy_tx(tx: &mut Tx, org: &OrgId, copy: &MessageCopy) -> Result<()> {
        let inserted = Self::insert_copy(org, copy)
            .execute(&mut **tx)
            .await
            .map_err(|e| db_err("recording the message copy", e))?;
        if inserted.rows_affected() == 1 {
            return Ok(());
        }
        let (posted_as, posted_as_user) = posted_as_columns(copy.posted_by.as_ref());
        let existing = sqlx::query(
            "SELECT universal_id, part FROM message_copies WHERE org_id = $1 AND platform = $2 \
             AND team_id = $3 AND channel_id = $4 AND message_id = $5",
        )
        .bind(org.as_str())
        .bind(copy.channel.platform.as_str())
        .bind(copy.channel.team.as_str())
        .bind(copy.channel.channel.as_str())
        .bind(copy.message.as_str())
        .fetch_optional(&mut **tx)
        .await
        .map_err(|e| db_err("reading the message copy", e))?;
        if let Some(row) = existing {
            if col_str(&row, "universal_id")? != copy.universal.as_str() {
                return Err(conflict(format!(
                    "message {} in {} is already mapped to another universal message",
                    copy.message, copy.channel
                )));
            }
            let part: i64 = col(&row, "part")?;
            if part != i64::from(copy.part) {
                return Err(conflict(format!(
                    "message {} in {} is already recorded as part {part}, not {}",
                    copy.message, copy.channel, copy.part
                )));
            }
            return Ok(());
        }
        let taken = sqlx::query(
            "SELECT message_id FROM message_copies WHERE org_id = $1 AND universal_id = $2 \
             AND platform = $3 AND team_id = $4 AND channel_id = $5 AND part = $6",
        )
        .bind(org.as_str())
        .bind(copy.universal.as_str())
        .bind(copy.channel.platform.as_str())
        .bind(copy.channel.team.as_str())
        .bind(copy.channel.channel.as_str())
        .bind(i64::from(copy.part))
        .fetch_optional(&mut **tx)
        .await
        .map_err(|e| db_err("reading the message copy", e))?;
        if let Some(row) = taken {
            return Err(conflict(format!(
                "part {} of universal message {} in {} is already message {}",
                copy.part,
                copy.universal,
                copy.channel,
                col_str(&row, "message_id")?
            )));
        }
        sqlx::query(
            "INSERT INTO message_copies (org_id, platform, team_id, channel_id, message_id, \
             universal_id, thread_root, posted_as, posted_as_user, part, created_at, \
             posted_by_account) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(org.as_str())
        .bind(copy.channel.platform.as_str())
        .bind(copy.channel.team.as_str())
        .bind(copy.channel.channel.as_str())
        .bind(copy.message.as_str())
        .bind(copy.universal.as_str())
        .bind(copy.thread_root.as_ref().map(|t| t.as_str()))
        .bind(posted_as)
        .bind(posted_as_user)
        .bind(i64::from(copy.part))
        .bind(now_ns())
        .bind(copy.posted_by_account.as_ref().map(|a| a.as_str()))
        .execute(&mut **tx)
        .await
        .map_err(|e| db_err("recording the message copy", e))?;
        Ok(())
    }
}

#[async_trait]
impl MessageMapStore for Backend {
    async fn put_message_copy(&self, org: &OrgId, copy: &MessageCopy) -> Result<()> {
        if self.put_copy_fast(org, copy).await {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        Self::require_org(&mut tx, org).await?;
        Self::put_copy_tx(&mut tx, org, copy).await?;
        Self::commit(tx).await
    }

    async fn replace_message_copy(&self, org: &OrgId, copy: &MessageCopy) -> Result<()> {
        let mut tx = self.begin().await?;
        Self::require_org(&mut tx, org).await?;
        sqlx::query(
            "DELETE FROM message_copies WHERE org_id = $1 AND universal_id = $2 \
             AND platform = $3 AND team_id = $4 AND channel_id = $5 AND part = $6 \
             AND message_id <> $7",
        )
        .bind(org.as_str())
        .bind(copy.universal.as_str())
        .bind(copy.channel.platform.as_str())
        .bind(copy.channel.team.as_str())
        .bind(copy.channel.channel.as_str())
        .bind(i64::from(copy.part))
        .bind(copy.message.as_str())
        .execute(&mut *tx)
        .await
        .map_err(|e| db_err("replacing the message copy", e))?;
        Self::put_copy_tx(&mut tx, org, copy).await?;
        Self::commit(tx).await
    }

    async fn find_message_copy(
        &self,
        org: &OrgId,
        channel: &ChannelRef,
        message: &MessageId,
    ) -> Result<Option<MessageCopy>> {
        let row = sqlx::query(&format!(
            "SELECT {COPY_COLUMNS} FROM message_copies WHERE org_id = $1 AND platform = $2 \
             AND team_id = $3 AND channel_id = $4 AND message_id = $5"
        ))
        .bind(org.as_str())
        .bind_channel(channel)
        .bind(message.as_str())
        .fetch_optional(&self.read)
        .await
        .map_err(|e| db_err("reading the message copy", e))?;
        row.as_ref().map(copy_from_row).transpose()
    }

    async fn find_message_copies(
        &self,
        org: &OrgId,
        channel: &ChannelRef,
        messages: &[MessageId],
    ) -> Result<Vec<MessageCopy>> {
        let mut out = Vec::new();
        for chunk in messages.chunks(CHUNK) {
            let mut qb = QueryBuilder::<DB>::new(format!(
                "SELECT {COPY_COLUMNS} FROM message_copies WHERE org_id = "
            ));
            qb.push_bind(org.as_str());
            push_channel(&mut qb, channel);
            qb.push(" AND message_id IN (");
            push_list(&mut qb, chunk.iter().map(|m| m.as_str()));
            let rows = qb
                .build()
                .fetch_all(&self.read)
                .await
                .map_err(|e| db_err("reading message copies", e))?;
            for row in &rows {
                out.push(copy_from_row(row)?);
            }
        }
        Ok(out)
    }

    async fn message_copies(
        &self,
        org: &OrgId,
        universal: &UniversalMessageId,
    ) -> Result<Vec<MessageCopy>> {
        let rows = sqlx::query(&format!(
            "SELECT {COPY_COLUMNS} FROM message_copies WHERE org_id = $1 AND universal_id = $2 \
             ORDER BY CASE WHEN posted_as IS NULL THEN 0 ELSE 1 END, platform, team_id, \
             channel_id, part"
        ))
        .bind(org.as_str())
        .bind(universal.as_str())
        .fetch_all(&self.read)
        .await
        .map_err(|e| db_err("reading message copies", e))?;
        rows.iter().map(copy_from_row).collect()
    }

    async fn count_copies_by_account(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
        account: &UserId,
    ) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM message_copies m JOIN universal_endpoints e \
             ON e.org_id = m.org_id AND e.platform = m.platform AND e.team_id = m.team_id \
             AND e.channel_id = m.channel_id \
             WHERE m.org_id = $1 AND e.connection_id = $2 AND m.posted_as = 'service_account' \
             AND m.posted_by_account = $3",
        )
        .bind(org.as_str())
        .bind(connection.as_str())
        .bind(account.as_str())
        .fetch_one(&self.read)
        .await
        .map_err(|e| db_err("counting message copies", e))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn record_message_edit(
        &self,
        org: &OrgId,
        channel: &ChannelRef,
        message: &MessageId,
        edited_at: OffsetDateTime,
    ) -> Result<bool> {
        let at = ts("edit time", edited_at)?;
        let mut tx = self.begin().await?;
        let r = sqlx::query(
            "UPDATE message_copies SET last_edit_at = $6 WHERE org_id = $1 AND platform = $2 \
             AND team_id = $3 AND channel_id = $4 AND message_id = $5 \
             AND (last_edit_at IS NULL OR last_edit_at < $6)",
        )
        .bind(org.as_str())
        .bind_channel(channel)
        .bind(message.as_str())
        .bind(at)
        .execute(&mut *tx)
        .await
        .map_err(|e| db_err("recording the edit", e))?;
        if r.rows_affected() == 1 {
            Self::commit(tx).await?;
            return Ok(true);
        }
        let exists = sqlx::query(
            "SELECT 1 FROM message_copies WHERE org_id = $1 AND platform = $2 \
             AND team_id = $3 AND channel_id = $4 AND message_id = $5",
        )
        .bind(org.as_str())
        .bind_channel(channel)
        .bind(message.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| db_err("reading the message copy", e))?;
        match exists {
            Some(_) => Ok(false),
            None => Err(Error::not_found(format!(
                "no copy of message {message} in {channel} is recorded"
            ))),
        }
    }

    async fn set_written_fingerprint(
        &self,
        org: &OrgId,
        channel: &ChannelRef,
        message: &MessageId,
        fingerprint: &str,
    ) -> Result<()> {
        limits::nonempty("content fingerprint", fingerprint, limits::MAX_KEY_BYTES)?;
        let r = sqlx::query(
            "UPDATE message_copies SET written_fingerprint = $6 WHERE org_id = $1 \
             AND platform = $2 AND team_id = $3 AND channel_id = $4 AND message_id = $5",
        )
        .bind(org.as_str())
        .bind_channel(channel)
        .bind(message.as_str())
        .bind(fingerprint)
        .execute(&self.write)
        .await
        .map_err(|e| db_err("recording the written fingerprint", e))?;
        if r.rows_affected() == 0 {
            return Err(Error::not_found(format!(
                "no copy of message {message} in {channel} is recorded"
            )));
        }
        Ok(())
    }

    async fn written_fingerprint(
        &self,
        org: &OrgId,
        channel: &ChannelRef,
        message: &MessageId,
    ) -> Result<Option<String>> {
        let row = sqlx::query(
            "SELECT written_fingerprint FROM message_copies WHERE org_id = $1 AND platform = $2 \
             AND team_id = $3 AND channel_id = $4 AND message_id = $5",
        )
        .bind(org.as_str())
        .bind_channel(channel)
        .bind(message.as_str())
        .fetch_optional(&self.read)
        .await
        .map_err(|e| db_err("reading the written fingerprint", e))?;
        match row {
            Some(row) => col::<Option<String>>(&row, "written_fingerprint"),
            None => Ok(None),
        }
    }
}
