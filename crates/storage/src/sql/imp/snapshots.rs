//! Message snapshots (`SyncStateStore`).

use super::*;

impl Backend {
    pub(crate) async fn put_message_snapshot(
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
        .bind(channel.platform.as_str())
        .bind(channel.team.as_str())
        .bind(channel.channel.as_str())
        .bind(message.as_str())
        .bind(&json)
        .bind(now_ns())
        .execute(&mut *tx)
        .await
        .map_err(|e| db_err("storing the message snapshot", e))?;
        Self::commit(tx).await
    }

    pub(crate) async fn get_message_snapshot(
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
        .bind(channel.platform.as_str())
        .bind(channel.team.as_str())
        .bind(channel.channel.as_str())
        .bind(message.as_str())
        .fetch_optional(&self.read)
        .await
        .map_err(|e| db_err("reading the message snapshot", e))?;
        row.map(|r| parse_json("message_snapshots.snapshot", &col_str(&r, "snapshot")?))
            .transpose()
    }

    pub(crate) async fn delete_message_snapshot(
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
        .bind(channel.platform.as_str())
        .bind(channel.team.as_str())
        .bind(channel.channel.as_str())
        .bind(message.as_str())
        .execute(&self.write)
        .await
        .map_err(|e| db_err("deleting the message snapshot", e))?;
        Ok(())
    }
}
