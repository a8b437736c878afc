//! Named sealed secrets and resealing (`SecretStore`).

use super::*;

impl Backend {
    pub(crate) async fn sealed_key_usage(&self) -> Result<BTreeMap<KeyId, u64>> {
        let rows = sqlx::query(
            "SELECT key_id, COUNT(*) AS n FROM (\
               SELECT key_id FROM credentials UNION ALL SELECT key_id FROM secrets \
               UNION ALL SELECT key_id FROM subscriptions \
               UNION ALL SELECT key_id FROM user_accounts) k GROUP BY key_id",
        )
        .fetch_all(&self.read)
        .await
        .map_err(|e| db_err("counting sealed values", e))?;
        let mut out = BTreeMap::new();
        for row in rows {
            let id = KeyId::parse(&col_str(&row, "key_id")?)
                .map_err(|e| storage(format!("a stored key id is malformed: {}", e.message())))?;
            out.insert(id, count(&row, "n")?);
        }
        Ok(out)
    }
}

#[async_trait]
impl SecretStore for Backend {
    async fn put_secret(&self, org: &OrgId, name: &str, value: &SecretString) -> Result<()> {
        limits::key("secret name", name)?;
        limits::text(
            "secret value",
            value.expose_secret(),
            limits::MAX_SECRET_BYTES,
        )?;
        let sealed = seal::seal(
            &self.keyring,
            Purpose::Secret,
            org.as_str(),
            name,
            value.expose_secret().as_bytes(),
        )?;
        let mut tx = self.begin().await?;
        Self::require_org(&mut tx, org).await?;
        sqlx::query(
            "INSERT INTO secrets (org_id, name, key_id, sealed, updated_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (org_id, name) DO UPDATE SET key_id = excluded.key_id, \
             sealed = excluded.sealed, updated_at = excluded.updated_at",
        )
        .bind(org.as_str())
        .bind(name)
        .bind(&sealed.key_id)
        .bind(&sealed.bytes)
        .bind(now_ns())
        .execute(&mut *tx)
        .await
        .map_err(|e| db_err("storing the secret", e))?;
        Self::commit(tx).await
    }

    async fn get_secret(&self, org: &OrgId, name: &str) -> Result<Option<SecretString>> {
        let row = sqlx::query("SELECT key_id, sealed FROM secrets WHERE org_id = $1 AND name = $2")
            .bind(org.as_str())
            .bind(name)
            .fetch_optional(&self.read)
            .await
            .map_err(|e| db_err("reading the secret", e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let key_id = col_str(&row, "key_id")?;
        let sealed: Vec<u8> = col(&row, "sealed")?;
        let plain = seal::open(
            &self.keyring,
            Purpose::Secret,
            org.as_str(),
            name,
            &key_id,
            &sealed,
        )?;
        let text = std::str::from_utf8(&plain)
            .map_err(|_| storage(format!("the sealed secret {name:?} is not UTF-8")))?;
        Ok(Some(SecretString::from(text.to_owned())))
    }

    async fn reseal_all(&self) -> Result<u64> {
        let current = self.keyring.current().id().as_str().to_owned();
        let mut tx = self.begin().await?;
        let mut n = 0u64;
        // (table, purpose, row-key column, sealed column)
        let tables: [(&str, Purpose, &str, &str); 4] = [
            (
                "credentials",
                Purpose::Credentials,
                "connection_id",
                "sealed",
            ),
            ("secrets", Purpose::Secret, "name", "sealed"),
            (
                "user_accounts",
                Purpose::UserCredentials,
                "account_key",
                "sealed",
            ),
            (
                "subscriptions",
                Purpose::ClientState,
                "id",
                "sealed_client_state",
            ),
        ];
        for (table, purpose, key_col, sealed_col) in tables {
            let rows = sqlx::query(&format!(
                "SELECT org_id, {key_col} AS row_key, key_id, {sealed_col} AS sealed \
                 FROM {table} WHERE key_id <> $1"
            ))
            .bind(&current)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| db_err(&format!("reading {table} to reseal"), e))?;
            for row in rows {
                let org = col_str(&row, "org_id")?;
                let key = col_str(&row, "row_key")?;
                let key_id = col_str(&row, "key_id")?;
                let sealed: Vec<u8> = col(&row, "sealed")?;
                let plain = seal::open(&self.keyring, purpose, &org, &key, &key_id, &sealed)?;
                let fresh = seal::seal(&self.keyring, purpose, &org, &key, &plain)?;
                sqlx::query(&format!(
                    "UPDATE {table} SET key_id = $1, {sealed_col} = $2 \
                     WHERE org_id = $3 AND {key_col} = $4"
                ))
                .bind(&fresh.key_id)
                .bind(&fresh.bytes)
                .bind(&org)
                .bind(&key)
                .execute(&mut *tx)
                .await
                .map_err(|e| db_err(&format!("resealing {table}"), e))?;
                n += 1;
            }
        }
        Self::commit(tx).await?;
        Ok(n)
    }
}
