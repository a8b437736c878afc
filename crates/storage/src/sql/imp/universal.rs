//! Universal channels (`UniversalChannelStore`).

use super::*;

#[async_trait]
impl UniversalChannelStore for Backend {
    async fn create_universal_channel(&self, uc: &UniversalChannel) -> Result<()> {
        let org = uc.org();
        let mut tx = self.begin().await?;
        Self::require_org(&mut tx, org).await?;
        let exists = sqlx::query("SELECT 1 FROM universal_channels WHERE org_id = $1 AND id = $2")
            .bind(org.as_str())
            .bind(uc.id().as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| db_err("reading universal channels", e))?;
        if exists.is_some() {
            return Err(conflict(format!(
                "universal channel {} already exists",
                uc.id()
            )));
        }
        for e in uc.endpoints() {
            let platform = Self::require_connection(&mut tx, org, &e.connection).await?;
            if platform != e.channel.platform {
                return Err(Error::invalid(format!(
                    "endpoint {} is on {} but connection {} is a {platform} connection",
                    e.channel, e.channel.platform, e.connection
                )));
            }
            let linked = sqlx::query(
                "SELECT universal_id FROM universal_endpoints WHERE org_id = $1 AND platform = $2 \
                 AND team_id = $3 AND channel_id = $4",
            )
            .bind(org.as_str())
            .bind(e.channel.platform.as_str())
            .bind(e.channel.team.as_str())
            .bind(e.channel.channel.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| db_err("reading universal channel endpoints", e))?;
            if let Some(row) = linked {
                return Err(conflict(format!(
                    "channel {} is already linked in universal channel {}",
                    e.channel,
                    col_str(&row, "universal_id")?
                )));
            }
        }
        sqlx::query(
            "INSERT INTO universal_channels (org_id, id, name, relay_membership_notices, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(org.as_str())
        .bind(uc.id().as_str())
        .bind(uc.name())
        .bind(uc.relay_membership_notices)
        .bind(now_ns())
        .execute(&mut *tx)
        .await
        .map_err(|e| db_err("storing the universal channel", e))?;
        for (i, e) in uc.endpoints().iter().enumerate() {
            sqlx::query(
                "INSERT INTO universal_endpoints (org_id, universal_id, position, connection_id, \
                 platform, team_id, channel_id) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(org.as_str())
            .bind(uc.id().as_str())
            .bind(i as i64)
            .bind(e.connection.as_str())
            .bind(e.channel.platform.as_str())
            .bind(e.channel.team.as_str())
            .bind(e.channel.channel.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| db_err("storing a universal channel endpoint", e))?;
        }
        Self::commit(tx).await
    }

    async fn get_universal_channel(
        &self,
        org: &OrgId,
        id: &UniversalChannelId,
    ) -> Result<Option<UniversalChannel>> {
        let row = sqlx::query(
            "SELECT name, relay_membership_notices FROM universal_channels WHERE org_id = $1 AND id = $2",
        )
        .bind(org.as_str())
        .bind(id.as_str())
        .fetch_optional(&self.read)
        .await
        .map_err(|e| db_err("reading the universal channel", e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let eps = sqlx::query(
            "SELECT universal_id, connection_id, platform, team_id, channel_id FROM universal_endpoints \
             WHERE org_id = $1 AND universal_id = $2 ORDER BY position",
        )
        .bind(org.as_str())
        .bind(id.as_str())
        .fetch_all(&self.read)
        .await
        .map_err(|e| db_err("reading universal channel endpoints", e))?;
        let endpoints = eps
            .iter()
            .map(|r| endpoint_from_row(r).map(|(_, e)| e))
            .collect::<Result<Vec<_>>>()?;
        build_universal(
            org,
            id.as_str(),
            col_str(&row, "name")?,
            col(&row, "relay_membership_notices")?,
            endpoints,
        )
        .map(Some)
    }

    async fn list_universal_channels(&self, org: &OrgId) -> Result<Vec<UniversalChannel>> {
        let rows = sqlx::query(
            "SELECT id, name, relay_membership_notices FROM universal_channels WHERE org_id = $1 \
             ORDER BY created_at, id",
        )
        .bind(org.as_str())
        .fetch_all(&self.read)
        .await
        .map_err(|e| db_err("listing universal channels", e))?;
        let eps = sqlx::query(
            "SELECT universal_id, connection_id, platform, team_id, channel_id FROM universal_endpoints \
             WHERE org_id = $1 ORDER BY universal_id, position",
        )
        .bind(org.as_str())
        .fetch_all(&self.read)
        .await
        .map_err(|e| db_err("listing universal channel endpoints", e))?;
        let mut by_channel: HashMap<String, Vec<Endpoint>> = HashMap::new();
        for r in &eps {
            let (uid, e) = endpoint_from_row(r)?;
            by_channel.entry(uid).or_default().push(e);
        }
        rows.iter()
            .map(|r| {
                let id = col_str(r, "id")?;
                let endpoints = by_channel.remove(&id).unwrap_or_default();
                build_universal(
                    org,
                    &id,
                    col_str(r, "name")?,
                    col(r, "relay_membership_notices")?,
                    endpoints,
                )
            })
            .collect()
    }

    async fn find_universal_channel(
        &self,
        org: &OrgId,
        channel: &ChannelRef,
    ) -> Result<Option<UniversalChannel>> {
        let row = sqlx::query(
            "SELECT universal_id FROM universal_endpoints WHERE org_id = $1 AND platform = $2 \
             AND team_id = $3 AND channel_id = $4",
        )
        .bind(org.as_str())
        .bind_channel(channel)
        .fetch_optional(&self.read)
        .await
        .map_err(|e| db_err("finding the universal channel", e))?;
        match row {
            Some(r) => {
                let id: UniversalChannelId = parse_col(&r, "universal_endpoints", "universal_id")?;
                self.get_universal_channel(org, &id).await
            }
            None => Ok(None),
        }
    }

    async fn delete_universal_channel(&self, org: &OrgId, id: &UniversalChannelId) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM universal_endpoints WHERE org_id = $1 AND universal_id = $2")
            .bind(org.as_str())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| db_err("unlinking the universal channel", e))?;
        let r = sqlx::query("DELETE FROM universal_channels WHERE org_id = $1 AND id = $2")
            .bind(org.as_str())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| db_err("unlinking the universal channel", e))?;
        if r.rows_affected() == 0 {
            return Err(Error::not_found(format!(
                "universal channel {id} does not exist in organization {org}"
            )));
        }
        Self::commit(tx).await
    }
}
