//! Organizations and admin tokens (`OrgStore`).

use super::*;

#[async_trait]
impl OrgStore for Backend {
    async fn create_org(&self, name: &str) -> Result<Organization> {
        limits::nonempty("organization name", name, limits::MAX_NAME_BYTES)?;
        let org = Organization {
            id: OrgId::generate(),
            name: name.trim().to_owned(),
        };
        sqlx::query("INSERT INTO orgs (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(org.id.as_str())
            .bind(&org.name)
            .bind(now_ns())
            .execute(&self.write)
            .await
            .map_err(|e| db_err("creating the organization", e))?;
        Ok(org)
    }

    async fn get_org(&self, org: &OrgId) -> Result<Option<Organization>> {
        let row = sqlx::query("SELECT id, name FROM orgs WHERE id = $1")
            .bind(org.as_str())
            .fetch_optional(&self.read)
            .await
            .map_err(|e| db_err("reading the organization", e))?;
        row.map(|r| {
            Ok(Organization {
                id: parse_col(&r, "orgs", "id")?,
                name: col_str(&r, "name")?,
            })
        })
        .transpose()
    }

    async fn list_orgs(&self) -> Result<Vec<Organization>> {
        let rows = sqlx::query("SELECT id, name FROM orgs ORDER BY created_at, id")
            .fetch_all(&self.read)
            .await
            .map_err(|e| db_err("listing organizations", e))?;
        rows.iter()
            .map(|r| {
                Ok(Organization {
                    id: parse_col(r, "orgs", "id")?,
                    name: col_str(r, "name")?,
                })
            })
            .collect()
    }

    async fn create_admin_token(&self, org: &OrgId, name: &str) -> Result<SecretString> {
        limits::key("admin token name", name)?;
        let mut lookup = [0u8; 8];
        rand::rngs::OsRng.fill_bytes(&mut lookup);
        let mut secret = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(secret.as_mut());
        let token = Zeroizing::new(format!(
            "sbat_{}_{}",
            hex::encode(lookup),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret.as_ref())
        ));
        let mut tx = self.begin().await?;
        Self::require_org(&mut tx, org).await?;
        sqlx::query(
            "INSERT INTO admin_tokens (lookup, org_id, name, token_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(hex::encode(lookup))
        .bind(org.as_str())
        .bind(name)
        .bind(token_hash(&token))
        .bind(now_ns())
        .execute(&mut *tx)
        .await
        .map_err(|e| db_err("storing the admin token", e))?;
        Self::commit(tx).await?;
        Ok(SecretString::from(token.as_str().to_owned()))
    }

    async fn authenticate_admin_token(
        &self,
        token: &SecretString,
    ) -> Result<Option<AdminPrincipal>> {
        let t = token.expose_secret();
        let Some((lookup, secret)) = t
            .strip_prefix("sbat_")
            .and_then(|rest| rest.split_once('_'))
        else {
            return Ok(None);
        };
        if lookup.len() != 16
            || !lookup.bytes().all(|b| b.is_ascii_hexdigit())
            || secret.is_empty()
            || t.len() > 128
        {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT org_id, name, token_hash, revoked_at FROM admin_tokens WHERE lookup = $1",
        )
        .bind(lookup)
        .fetch_optional(&self.read)
        .await
        .map_err(|e| db_err("reading admin tokens", e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let stored: Vec<u8> = col(&row, "token_hash")?;
        let matches: bool = token_hash(t).as_slice().ct_eq(stored.as_slice()).into();
        let revoked: Option<i64> = col(&row, "revoked_at")?;
        if !matches || revoked.is_some() {
            return Ok(None);
        }
        Ok(Some(AdminPrincipal {
            org: parse_col(&row, "admin_tokens", "org_id")?,
            name: col_str(&row, "name")?,
        }))
    }

    async fn revoke_admin_token(&self, org: &OrgId, name: &str) -> Result<()> {
        let r = sqlx::query(
            "UPDATE admin_tokens SET revoked_at = $3 \
             WHERE org_id = $1 AND name = $2 AND revoked_at IS NULL",
        )
        .bind(org.as_str())
        .bind(name)
        .bind(now_ns())
        .execute(&self.write)
        .await
        .map_err(|e| db_err("revoking the admin token", e))?;
        if r.rows_affected() == 0 {
            return Err(Error::not_found(format!(
                "organization {org} has no live admin token named {name:?}"
            )));
        }
        Ok(())
    }

    async fn list_admin_tokens(&self, org: &OrgId) -> Result<Vec<AdminTokenInfo>> {
        let rows = sqlx::query(
            "SELECT name, created_at, revoked_at FROM admin_tokens WHERE org_id = $1 \
             ORDER BY created_at, lookup",
        )
        .bind(org.as_str())
        .fetch_all(&self.read)
        .await
        .map_err(|e| db_err("listing admin tokens", e))?;
        rows.iter()
            .map(|r| {
                let revoked: Option<i64> = col(r, "revoked_at")?;
                Ok(AdminTokenInfo {
                    name: col_str(r, "name")?,
                    created_at: from_ts("admin_tokens.created_at", col(r, "created_at")?)?,
                    revoked_at: revoked
                        .map(|t| from_ts("admin_tokens.revoked_at", t))
                        .transpose()?,
                })
            })
            .collect()
    }
}
