//! Connections and their sealed credentials (`ConnectionStore`).

use super::*;

impl Backend {
    pub(super) fn seal_credentials(
        &self,
        org: &OrgId,
        id: &ConnectionId,
        c: &Credentials,
        expires_at: Option<i64>,
    ) -> Result<seal::Sealed> {
        self.seal_credentials_as(Purpose::Credentials, org, id.as_str(), c, expires_at)
    }

    /// Seals a credentials set for `purpose`, bound to `org` and the row `key` (a
    /// connection's id, or a linked user's platform and id).
    pub(super) fn seal_credentials_as(
        &self,
        purpose: Purpose,
        org: &OrgId,
        key: &str,
        c: &Credentials,
        expires_at: Option<i64>,
    ) -> Result<seal::Sealed> {
        let plain = CredentialsPlain {
            access_token: c.access_token.expose_secret().to_owned(),
            refresh_token: c
                .refresh_token
                .as_ref()
                .map(|r| r.expose_secret().to_owned()),
            expires_at,
            scopes: c.scopes.clone(),
        };
        let bytes = Zeroizing::new(
            serde_json::to_vec(&plain)
                .map_err(|e| storage(format!("serializing credentials: {e}")))?,
        );
        seal::seal(&self.keyring, purpose, org.as_str(), key, &bytes)
    }

    pub(super) async fn store_credentials(
        tx: &mut Tx,
        org: &OrgId,
        id: &ConnectionId,
        sealed: &seal::Sealed,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO credentials (org_id, connection_id, key_id, sealed, updated_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (org_id, connection_id) DO UPDATE SET \
             key_id = excluded.key_id, sealed = excluded.sealed, updated_at = excluded.updated_at",
        )
        .bind(org.as_str())
        .bind(id.as_str())
        .bind(&sealed.key_id)
        .bind(&sealed.bytes)
        .bind(now_ns())
        .execute(&mut **tx)
        .await
        .map_err(|e| db_err("storing credentials", e))?;
        Ok(())
    }
}

#[async_trait]
impl ConnectionStore for Backend {
    async fn put_connection(&self, c: &Connection) -> Result<()> {
        limits::text(
            "connection display name",
            &c.display_name,
            limits::MAX_NAME_BYTES,
        )?;
        limits::text(
            "account display name",
            &c.account.display_name,
            limits::MAX_NAME_BYTES,
        )?;
        let created = ts("connection creation time", c.created_at)?;
        let mut tx = self.begin().await?;
        Self::require_org(&mut tx, &c.org).await?;
        let existing =
            sqlx::query("SELECT platform FROM connections WHERE org_id = $1 AND id = $2")
                .bind(c.org.as_str())
                .bind(c.id.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| db_err("reading the connection", e))?;
        if let Some(row) = existing {
            let platform = col_str(&row, "platform")?;
            if platform != c.platform.as_str() {
                return Err(conflict(format!(
                    "connection {} is a {platform} connection; its platform cannot change to {}",
                    c.id, c.platform
                )));
            }
        }
        sqlx::query(&format!(
            "INSERT INTO connections ({CONNECTION_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (org_id, id) DO UPDATE SET tenant = excluded.tenant, \
             enterprise = excluded.enterprise, display_name = excluded.display_name, \
             account_user_id = excluded.account_user_id, \
             account_display_name = excluded.account_display_name, \
             account_is_service_account = excluded.account_is_service_account, \
             health = excluded.health, created_at = excluded.created_at"
        ))
        .bind(c.org.as_str())
        .bind(c.id.as_str())
        .bind(c.platform.as_str())
        .bind(c.tenant.as_str())
        .bind(c.enterprise.as_ref().map(|e| e.as_str()))
        .bind(&c.display_name)
        .bind(c.account.user_id.as_str())
        .bind(&c.account.display_name)
        .bind(c.account.is_service_account)
        .bind(c.health.as_str())
        .bind(created)
        .execute(&mut *tx)
        .await
        .map_err(|e| db_err("storing the connection", e))?;
        Self::commit(tx).await
    }

    async fn get_connection(&self, org: &OrgId, id: &ConnectionId) -> Result<Option<Connection>> {
        let row = sqlx::query(&format!(
            "SELECT {CONNECTION_COLUMNS} FROM connections WHERE org_id = $1 AND id = $2"
        ))
        .bind(org.as_str())
        .bind(id.as_str())
        .fetch_optional(&self.read)
        .await
        .map_err(|e| db_err("reading the connection", e))?;
        row.as_ref().map(connection_from_row).transpose()
    }

    async fn list_connections(&self, org: &OrgId) -> Result<Vec<Connection>> {
        let rows = sqlx::query(&format!(
            "SELECT {CONNECTION_COLUMNS} FROM connections WHERE org_id = $1 ORDER BY created_at, id"
        ))
        .bind(org.as_str())
        .fetch_all(&self.read)
        .await
        .map_err(|e| db_err("listing connections", e))?;
        rows.iter().map(connection_from_row).collect()
    }

    async fn set_connection_health(
        &self,
        org: &OrgId,
        id: &ConnectionId,
        health: ConnectionHealth,
    ) -> Result<()> {
        let r = sqlx::query("UPDATE connections SET health = $3 WHERE org_id = $1 AND id = $2")
            .bind(org.as_str())
            .bind(id.as_str())
            .bind(health.as_str())
            .execute(&self.write)
            .await
            .map_err(|e| db_err("setting the connection health", e))?;
        if r.rows_affected() == 0 {
            return Err(Error::not_found(format!(
                "connection {id} does not exist in organization {org}"
            )));
        }
        Ok(())
    }

    async fn put_credentials(
        &self,
        org: &OrgId,
        id: &ConnectionId,
        credentials: &Credentials,
    ) -> Result<()> {
        let expires = validate_credentials(credentials)?;
        let sealed = self.seal_credentials(org, id, credentials, expires)?;
        let mut tx = self.begin().await?;
        Self::require_connection(&mut tx, org, id).await?;
        Self::store_credentials(&mut tx, org, id, &sealed).await?;
        Self::commit(tx).await
    }

    async fn get_credentials(&self, org: &OrgId, id: &ConnectionId) -> Result<Option<Credentials>> {
        let row = sqlx::query(
            "SELECT key_id, sealed FROM credentials WHERE org_id = $1 AND connection_id = $2",
        )
        .bind(org.as_str())
        .bind(id.as_str())
        .fetch_optional(&self.read)
        .await
        .map_err(|e| db_err("reading credentials", e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let key_id = col_str(&row, "key_id")?;
        let sealed: Vec<u8> = col(&row, "sealed")?;
        let plain = seal::open(
            &self.keyring,
            Purpose::Credentials,
            org.as_str(),
            id.as_str(),
            &key_id,
            &sealed,
        )?;
        let p: CredentialsPlain = serde_json::from_slice(&plain)
            .map_err(|_| storage(format!("the sealed credentials of {id} are malformed")))?;
        Ok(Some(Credentials {
            access_token: SecretString::from(p.access_token.clone()),
            refresh_token: p.refresh_token.clone().map(SecretString::from),
            expires_at: p
                .expires_at
                .map(|t| from_ts("credentials.expires_at", t))
                .transpose()?,
            scopes: p.scopes.clone(),
        }))
    }

    async fn migrate_connection(
        &self,
        org: &OrgId,
        id: &ConnectionId,
        account: &AccountIdentity,
        credentials: &Credentials,
        audit_entry: NewAuditEntry,
    ) -> Result<Connection> {
        limits::text(
            "account display name",
            &account.display_name,
            limits::MAX_NAME_BYTES,
        )?;
        let expires = validate_credentials(credentials)?;
        let details = validate_audit(&audit_entry)?;
        let sealed = self.seal_credentials(org, id, credentials, expires)?;
        let mut tx = self.begin().await?;
        let row = sqlx::query(&format!(
            "UPDATE connections SET account_user_id = $3, account_display_name = $4, \
             account_is_service_account = $5, health = $6 WHERE org_id = $1 AND id = $2 \
             RETURNING {CONNECTION_COLUMNS}"
        ))
        .bind(org.as_str())
        .bind(id.as_str())
        .bind(account.user_id.as_str())
        .bind(&account.display_name)
        .bind(account.is_service_account)
        .bind(ConnectionHealth::Ok.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| db_err("migrating the connection", e))?;
        let Some(row) = row else {
            return Err(Error::not_found(format!(
                "connection {id} does not exist in organization {org}"
            )));
        };
        let connection = connection_from_row(&row)?;
        Self::store_credentials(&mut tx, org, id, &sealed).await?;
        Self::append_audit_tx(&mut tx, org, audit_entry, details).await?;
        Self::commit(tx).await?;
        Ok(connection)
    }

    async fn delete_connection(&self, org: &OrgId, id: &ConnectionId) -> Result<()> {
        let mut tx = self.begin().await?;
        Self::require_connection(&mut tx, org, id).await?;
        let used = sqlx::query(
            "SELECT universal_id FROM universal_endpoints \
             WHERE org_id = $1 AND connection_id = $2 ORDER BY universal_id LIMIT 1",
        )
        .bind(org.as_str())
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| db_err("checking universal channels", e))?;
        if let Some(row) = used {
            return Err(conflict(format!(
                "connection {id} is used by universal channel {}; unlink it first",
                col_str(&row, "universal_id")?
            )));
        }
        sqlx::query("DELETE FROM connections WHERE org_id = $1 AND id = $2")
            .bind(org.as_str())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| db_err("deleting the connection", e))?;
        Self::commit(tx).await?;
        self.platforms.forget(org, id);
        Ok(())
    }
}
