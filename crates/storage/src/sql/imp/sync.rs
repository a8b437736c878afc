//! Cursors, subscriptions and message snapshots (`SyncStateStore`).

use super::*;

impl Backend {
    pub(super) fn subscription_from_row(&self, row: &DbRow) -> Result<(OrgId, Subscription)> {
        const T: &str = "subscriptions";
        let org: OrgId = parse_col(row, T, "org_id")?;
        let id: SubscriptionId = parse_col(row, T, "id")?;
        let key_id = col_str(row, "key_id")?;
        let sealed: Vec<u8> = col(row, "sealed_client_state")?;
        let plain = seal::open(
            &self.keyring,
            Purpose::ClientState,
            org.as_str(),
            id.as_str(),
            &key_id,
            &sealed,
        )?;
        let state = std::str::from_utf8(&plain)
            .map_err(|_| storage(format!("the sealed clientState of {id:?} is not UTF-8")))?;
        Ok((
            org,
            Subscription {
                connection: parse_col(row, T, "connection_id")?,
                channel: parse_col(row, T, "channel")?,
                client_state: SecretString::from(state.to_owned()),
                expires_at: from_ts("subscriptions.expires_at", col(row, "expires_at")?)?,
                id,
            },
        ))
    }
}

#[async_trait]
impl SyncStateStore for Backend {
    async fn put_cursor(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
        key: &CursorKey,
        value: &str,
    ) -> Result<()> {
        let encoded = key.encode();
        limits::key("cursor key", &encoded)?;
        limits::text("cursor value", value, limits::MAX_CURSOR_BYTES)?;
        let mut tx = self.begin().await?;
        let platform = Self::require_connection(&mut tx, org, connection).await?;
        if key.channel().platform != platform {
            return Err(Error::invalid(format!(
                "cursor {key} is for a {} channel; connection {connection} is {platform}",
                key.channel().platform
            )));
        }
        sqlx::query(
            "INSERT INTO cursors (org_id, connection_id, key, value, updated_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (org_id, connection_id, key) \
             DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(org.as_str())
        .bind(connection.as_str())
        .bind(&encoded)
        .bind(value)
        .bind(now_ns())
        .execute(&mut *tx)
        .await
        .map_err(|e| db_err("storing the cursor", e))?;
        Self::commit(tx).await
    }

    async fn get_cursor(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
        key: &CursorKey,
    ) -> Result<Option<String>> {
        let row = sqlx::query(
            "SELECT value FROM cursors WHERE org_id = $1 AND connection_id = $2 AND key = $3",
        )
        .bind(org.as_str())
        .bind(connection.as_str())
        .bind(key.encode())
        .fetch_optional(&self.read)
        .await
        .map_err(|e| db_err("reading the cursor", e))?;
        row.map(|r| col_str(&r, "value")).transpose()
    }

    async fn put_subscription(&self, org: &OrgId, s: &Subscription) -> Result<()> {
        limits::key("subscription id", s.id.as_str())?;
        limits::nonempty(
            "subscription clientState",
            s.client_state.expose_secret(),
            limits::MAX_SECRET_BYTES,
        )?;
        let expires = ts("subscription expiry", s.expires_at)?;
        let sealed = seal::seal(
            &self.keyring,
            Purpose::ClientState,
            org.as_str(),
            s.id.as_str(),
            s.client_state.expose_secret().as_bytes(),
        )?;
        let mut tx = self.begin().await?;
        let platform = Self::require_connection(&mut tx, org, &s.connection).await?;
        if platform != s.channel.platform {
            return Err(Error::invalid(format!(
                "subscription {} watches a {} channel through a {platform} connection",
                s.id, s.channel.platform
            )));
        }
        let owner = sqlx::query("SELECT org_id FROM subscriptions WHERE id = $1")
            .bind(s.id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| db_err("reading the subscription", e))?;
        if let Some(row) = owner {
            if col_str(&row, "org_id")? != org.as_str() {
                return Err(conflict(format!(
                    "subscription {} belongs to another organization",
                    s.id
                )));
            }
        }
        sqlx::query(
            "INSERT INTO subscriptions (id, org_id, connection_id, channel, key_id, \
             sealed_client_state, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (id) DO UPDATE SET connection_id = excluded.connection_id, \
             channel = excluded.channel, key_id = excluded.key_id, \
             sealed_client_state = excluded.sealed_client_state, expires_at = excluded.expires_at",
        )
        .bind(s.id.as_str())
        .bind(org.as_str())
        .bind(s.connection.as_str())
        .bind(s.channel.to_string())
        .bind(&sealed.key_id)
        .bind(&sealed.bytes)
        .bind(expires)
        .execute(&mut *tx)
        .await
        .map_err(|e| db_err("storing the subscription", e))?;
        Self::commit(tx).await
    }

    async fn get_subscription(&self, id: &SubscriptionId) -> Result<Option<(OrgId, Subscription)>> {
        let row = sqlx::query(
            "SELECT id, org_id, connection_id, channel, key_id, sealed_client_state, expires_at \
             FROM subscriptions WHERE id = $1",
        )
        .bind(id.as_str())
        .fetch_optional(&self.read)
        .await
        .map_err(|e| db_err("reading the subscription", e))?;
        row.map(|r| self.subscription_from_row(&r)).transpose()
    }

    async fn list_subscriptions(&self, org: &OrgId) -> Result<Vec<Subscription>> {
        let rows = sqlx::query(
            "SELECT id, org_id, connection_id, channel, key_id, sealed_client_state, expires_at \
             FROM subscriptions WHERE org_id = $1 ORDER BY expires_at, id",
        )
        .bind(org.as_str())
        .fetch_all(&self.read)
        .await
        .map_err(|e| db_err("listing subscriptions", e))?;
        rows.iter()
            .map(|r| self.subscription_from_row(r).map(|(_, s)| s))
            .collect()
    }

    async fn delete_subscription(&self, org: &OrgId, id: &SubscriptionId) -> Result<()> {
        sqlx::query("DELETE FROM subscriptions WHERE org_id = $1 AND id = $2")
            .bind(org.as_str())
            .bind(id.as_str())
            .execute(&self.write)
            .await
            .map_err(|e| db_err("deleting the subscription", e))?;
        Ok(())
    }

    async fn put_message_snapshot(
        &self,
        org: &OrgId,
        channel: &ChannelRef,
        message: &MessageId,
        snapshot: &MessageSnapshot,
    ) -> Result<()> {
        let json = serde_json::to_string(snapshot)
            .map_err(|e| Error::invalid(format!("the snapshot cannot be serialized: {e}")))?;
        if json.len() > limits::MAX_EVENT_BYTES {
            return Err(Error::invalid(format!(
                "the snapshot of message {message} is {} bytes; at most {} are allowed",
                json.len(),
                limits::MAX_EVENT_BYTES
            )));
        }
        let mut tx = self.begin().await?;
        Self::require_org(&mut tx, org).await?;
        sqlx::query(
            "INSERT INTO message_snapshots (org_id, platform, team_id, channel_id, message_id, \
             snapshot, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (org_id, platform, team_id, channel_id, message_id) DO UPDATE SET \
             snapshot = excluded.snapshot, updated_at = excluded.updated_at",
        )
        .bind(org.as_str())
        .bind_channel(channel)
        .bind(message.as_str())
        .bind(&json)
        .bind(now_ns())
        .execute(&mut *tx)
        .await
        .map_err(|e| db_err("storing the message snapshot", e))?;
        Self::commit(tx).await
    }

    async fn get_message_snapshot(
        &self,
        org: &OrgId,
        channel: &ChannelRef,
        message: &MessageId,
    ) -> Result<Option<MessageSnapshot>> {
        let row = sqlx::query(
            "SELECT snapshot FROM message_snapshots WHERE org_id = $1 AND platform = $2 \
             AND team_id = $3 AND channel_id = $4 AND message_id = $5",
        )
        .bind(org.as_str())
        .bind_channel(channel)
        .bind(message.as_str())
        .fetch_optional(&self.read)
        .await
        .map_err(|e| db_err("reading the message snapshot", e))?;
        row.map(|r| parse_json("message_snapshots.snapshot", &col_str(&r, "snapshot")?))
            .transpose()
    }

    async fn delete_message_snapshot(
        &self,
        org: &OrgId,
        channel: &ChannelRef,
        message: &MessageId,
    ) -> Result<()> {
        sqlx::query(
            "DELETE FROM message_snapshots WHERE org_id = $1 AND platform = $2 \
             AND team_id = $3 AND channel_id = $4 AND message_id = $5",
        )
        .bind(org.as_str())
        .bind_channel(channel)
        .bind(message.as_str())
        .execute(&self.write)
        .await
        .map_err(|e| db_err("deleting the message snapshot", e))?;
        Ok(())
    }
}
