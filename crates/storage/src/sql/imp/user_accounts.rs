//! End users' linked accounts and their sealed delegated credentials (`UserAccountStore`).

use super::*;
use switchboard_core::{LinkedAccount, UserAccountStore};

/// The row key the credentials are sealed under: `<platform>/<user id>`.
fn account_key(platform: PlatformKind, user: &UserId) -> String {
    format!("{}/{}", platform.as_str(), user.as_str())
}

const COLUMNS: &str = "platform, user_id, display_name, linked_at";

fn account_from_row(row: &DbRow) -> Result<LinkedAccount> {
    Ok(LinkedAccount {
        platform: parse_col(row, "user_accounts", "platform")?,
        user: UserId::new(col_str(row, "user_id")?)
            .map_err(|e| storage(format!("user_accounts.user_id is malformed: {e}")))?,
        display_name: col_str(row, "display_name")?,
        linked_at: from_ts("user_accounts.linked_at", col(row, "linked_at")?)?,
    })
}

impl Backend {
    fn seal_user_credentials(
        &self,
        org: &OrgId,
        key: &str,
        c: &Credentials,
        expires_at: Option<i64>,
    ) -> Result<seal::Sealed> {
        self.seal_credentials_as(Purpose::UserCredentials, org, key, c, expires_at)
    }

    fn audit_details(account: &LinkedAccount) -> serde_json::Value {
        serde_json::json!({
            "platform": account.platform.as_str(),
            "user": account.user.as_str(),
            "display_name": account.display_name,
        })
    }
}

#[async_trait]
impl UserAccountStore for Backend {
    async fn put_linked_account(
        &self,
        org: &OrgId,
        account: &LinkedAccount,
        credentials: &Credentials,
        actor: Actor,
    ) -> Result<()> {
        limits::nonempty(
            "linked account display name",
            &account.display_name,
            limits::MAX_NAME_BYTES,
        )?;
        let linked_at = ts("linked_at", account.linked_at)?;
        let expires = validate_credentials(credentials)?;
        let key = account_key(account.platform, &account.user);
        let entry = NewAuditEntry {
            actor,
            action: "user_account.linked".into(),
            target: key.clone(),
            details: Self::audit_details(account),
        };
        let details = validate_audit(&entry)?;
        let sealed = self.seal_user_credentials(org, &key, credentials, expires)?;
        let mut tx = self.begin().await?;
        Self::require_org(&mut tx, org).await?;
        sqlx::query(
            "INSERT INTO user_accounts (org_id, account_key, platform, user_id, display_name, \
             linked_at, key_id, sealed, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (org_id, account_key) DO UPDATE SET display_name = excluded.display_name, \
             linked_at = excluded.linked_at, key_id = excluded.key_id, sealed = excluded.sealed, \
             updated_at = excluded.updated_at",
        )
        .bind(org.as_str())
        .bind(&key)
        .bind(account.platform.as_str())
        .bind(account.user.as_str())
        .bind(&account.display_name)
        .bind(linked_at)
        .bind(&sealed.key_id)
        .bind(&sealed.bytes)
        .bind(now_ns())
        .execute(&mut *tx)
        .await
        .map_err(|e| db_err("storing the linked account", e))?;
        Self::append_audit_tx(&mut tx, org, entry, details).await?;
        Self::commit(tx).await
    }

    async fn list_linked_accounts(
        &self,
        org: &OrgId,
        platform: Option<PlatformKind>,
    ) -> Result<Vec<LinkedAccount>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM user_accounts WHERE org_id = $1 ORDER BY platform, user_id"
        ))
        .bind(org.as_str())
        .fetch_all(&self.read)
        .await
        .map_err(|e| db_err("listing linked accounts", e))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let account = account_from_row(row)?;
            if platform.is_none_or(|p| p == account.platform) {
                out.push(account);
            }
        }
        Ok(out)
    }

    async fn has_linked_account(
        &self,
        org: &OrgId,
        platform: PlatformKind,
        user: &UserId,
    ) -> Result<bool> {
        let row = sqlx::query("SELECT 1 FROM user_accounts WHERE org_id = $1 AND account_key = $2")
            .bind(org.as_str())
            .bind(account_key(platform, user))
            .fetch_optional(&self.read)
            .await
            .map_err(|e| db_err("reading the linked account", e))?;
        Ok(row.is_some())
    }

    async fn get_linked_account(
        &self,
        org: &OrgId,
        platform: PlatformKind,
        user: &UserId,
    ) -> Result<Option<(LinkedAccount, Credentials)>> {
        let key = account_key(platform, user);
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS}, key_id, sealed FROM user_accounts \
             WHERE org_id = $1 AND account_key = $2"
        ))
        .bind(org.as_str())
        .bind(&key)
        .fetch_optional(&self.read)
        .await
        .map_err(|e| db_err("reading the linked account", e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let account = account_from_row(&row)?;
        let key_id = col_str(&row, "key_id")?;
        let sealed: Vec<u8> = col(&row, "sealed")?;
        let plain = seal::open(
            &self.keyring,
            Purpose::UserCredentials,
            org.as_str(),
            &key,
            &key_id,
            &sealed,
        )?;
        let p: CredentialsPlain = serde_json::from_slice(&plain).map_err(|_| {
            storage(format!(
                "the sealed credentials of the linked account {key} are malformed"
            ))
        })?;
        let credentials = Credentials {
            access_token: SecretString::from(p.access_token.clone()),
            refresh_token: p.refresh_token.clone().map(SecretString::from),
            expires_at: p
                .expires_at
                .map(|t| from_ts("credentials.expires_at", t))
                .transpose()?,
            scopes: p.scopes.clone(),
        };
        Ok(Some((account, credentials)))
    }

    async fn update_linked_credentials(
        &self,
        org: &OrgId,
        platform: PlatformKind,
        user: &UserId,
        credentials: &Credentials,
    ) -> Result<()> {
        let expires = validate_credentials(credentials)?;
        let key = account_key(platform, user);
        let sealed = self.seal_user_credentials(org, &key, credentials, expires)?;
        let r = sqlx::query(
            "UPDATE user_accounts SET key_id = $3, sealed = $4, updated_at = $5 \
             WHERE org_id = $1 AND account_key = $2",
        )
        .bind(org.as_str())
        .bind(&key)
        .bind(&sealed.key_id)
        .bind(&sealed.bytes)
        .bind(now_ns())
        .execute(&self.write)
        .await
        .map_err(|e| db_err("storing refreshed linked-account credentials", e))?;
        if r.rows_affected() == 0 {
            return Err(Error::not_found(format!(
                "{platform} user {user} has no linked account in organization {org}"
            )));
        }
        Ok(())
    }

    async fn delete_linked_account(
        &self,
        org: &OrgId,
        platform: PlatformKind,
        user: &UserId,
        actor: Actor,
    ) -> Result<()> {
        let key = account_key(platform, user);
        let mut tx = self.begin().await?;
        let row = sqlx::query(&format!(
            "DELETE FROM user_accounts WHERE org_id = $1 AND account_key = $2 RETURNING {COLUMNS}"
        ))
        .bind(org.as_str())
        .bind(&key)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| db_err("deleting the linked account", e))?;
        let Some(row) = row else {
            return Err(Error::not_found(format!(
                "{platform} user {user} has no linked account in organization {org}"
            )));
        };
        let account = account_from_row(&row)?;
        let entry = NewAuditEntry {
            actor,
            action: "user_account.unlinked".into(),
            target: key,
            details: Self::audit_details(&account),
        };
        let details = validate_audit(&entry)?;
        Self::append_audit_tx(&mut tx, org, entry, details).await?;
        Self::commit(tx).await
    }
}
