// The storage operations, written once and compiled for each database: this file is
// `include!`d by `sqlite.rs` (with `DB = sqlx::Sqlite`, `PG = false`) and `postgres.rs`
// (with `DB = sqlx::Postgres`, `PG = true`). SQL is shared (`$N` placeholders work on both);
// the few dialect differences branch on `PG`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use rand::RngCore as _;
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use sqlx::{QueryBuilder, Row as _, Transaction};
use subtle::ConstantTimeEq as _;
use switchboard_core::{
    AccountIdentity, Actor, AdminPrincipal, AuditEntry, AuditVerification, Channel, ChannelRef,
    Connection, ConnectionHealth, ConnectionId, Credentials, CursorKey, Delivery, DeliveryId,
    DeliveryJob, Endpoint, Error, ImportRun, InboxId, InboxItem, InboxOutcome, Inbound,
    MAX_INBOX_BATCH, MAX_PAGE_SIZE, Membership, MessageCopy, MessageId, MessageSnapshot,
    NewAuditEntry, NewDelivery, OrgId, Organization, PlatformKind, PostingIdentity, Result,
    StoredChannel, StoredUser, Subscription, SubscriptionId, Team, TeamId, UniversalChannel,
    UniversalChannelId, UniversalMessageId, User, UserId, WorkerId,
};
use time::OffsetDateTime;
use zeroize::{Zeroize as _, Zeroizing};

use crate::PruneReport;
use crate::audit;
use crate::convert::{
    add_ns, conflict, db_err, from_ts, now_ns, parse_json, parse_stored, storage, ts,
};
use crate::keys::{KeyId, Keyring};
use crate::limits;
use crate::seal::{self, Purpose};

type Tx = Transaction<'static, DB>;
type DbRow = <DB as sqlx::Database>::Row;

/// Rows per multi-row INSERT (13 columns at most: well under both databases' bind limits).
const CHUNK: usize = 500;
/// The advisory lock that serializes inbox leasing on PostgreSQL.
const INBOX_LEASE_LOCK: i64 = 0x5357_4254_494e_4258; // "SWBTINBX"

/// One database's pools and the keyring.
pub(crate) struct Backend {
    /// Writes (on SQLite a single connection: SQLite has one writer at a time anyway).
    pub(crate) write: sqlx::Pool<DB>,
    /// Reads (on PostgreSQL the same pool as `write`).
    pub(crate) read: sqlx::Pool<DB>,
    /// The keys that seal and open secrets.
    pub(crate) keyring: Arc<Keyring>,
}

fn col<'r, T>(row: &'r DbRow, name: &str) -> Result<T>
where
    T: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
{
    row.try_get::<T, _>(name)
        .map_err(|e| storage(format!("could not read column {name}: {e}")))
}

fn col_str(row: &DbRow, name: &str) -> Result<String> {
    col::<String>(row, name)
}

fn parse_col<T: std::str::FromStr<Err = Error>>(row: &DbRow, table: &str, name: &str) -> Result<T> {
    let v = col_str(row, name)?;
    parse_stored(&format!("{table}.{name}"), &v)
}

fn parse_opt_col<T: std::str::FromStr<Err = Error>>(
    row: &DbRow,
    table: &str,
    name: &str,
) -> Result<Option<T>> {
    col::<Option<String>>(row, name)?
        .map(|v| parse_stored(&format!("{table}.{name}"), &v))
        .transpose()
}

fn count(row: &DbRow, name: &str) -> Result<u64> {
    let n: i64 = col(row, name)?;
    u64::try_from(n).map_err(|_| storage(format!("negative count in {name}")))
}

/// Keeps the last occurrence of each key, in first-seen order (a batch may repeat a row; the
/// database refuses to upsert one row twice in one statement).
fn dedupe_last<T, K: std::hash::Hash + Eq>(items: &[T], key: impl Fn(&T) -> K) -> Vec<&T> {
    let mut index: HashMap<K, usize> = HashMap::with_capacity(items.len());
    let mut out: Vec<&T> = Vec::with_capacity(items.len());
    for it in items {
        match index.entry(key(it)) {
            std::collections::hash_map::Entry::Occupied(e) => out[*e.get()] = it,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(out.len());
                out.push(it);
            }
        }
    }
    out
}

fn token_hash(token: &str) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(b"switchboard admin token v1\0");
    h.update(token.as_bytes());
    h.finalize().to_vec()
}

/// Credentials as sealed: plain strings inside the ciphertext only, wiped on drop.
#[derive(Serialize, Deserialize)]
struct CredentialsPlain {
    access_token: String,
    refresh_token: Option<String>,
    expires_at: Option<i64>,
    scopes: Vec<String>,
}

impl Drop for CredentialsPlain {
    fn drop(&mut self) {
        self.access_token.zeroize();
        self.refresh_token.zeroize();
    }
}

fn validate_credentials(c: &Credentials) -> Result<Option<i64>> {
    limits::nonempty(
        "access token",
        c.access_token.expose_secret(),
        limits::MAX_SECRET_BYTES,
    )?;
    if let Some(r) = &c.refresh_token {
        limits::text("refresh token", r.expose_secret(), limits::MAX_SECRET_BYTES)?;
    }
    if c.scopes.len() > 512 {
        return Err(Error::invalid(format!(
            "{} scopes were given; at most 512 are allowed",
            c.scopes.len()
        )));
    }
    for s in &c.scopes {
        limits::text("scope", s, limits::MAX_KEY_BYTES)?;
    }
    c.expires_at.map(|t| ts("token expiry", t)).transpose()
}

fn validate_delivery(d: &NewDelivery) -> Result<String> {
    let payload = serde_json::to_string(&d.job)
        .map_err(|e| Error::invalid(format!("the delivery job cannot be serialized: {e}")))?;
    if payload.len() > limits::MAX_PAYLOAD_BYTES {
        return Err(Error::invalid(format!(
            "the delivery job for {} is {} bytes; at most {} are allowed",
            d.target,
            payload.len(),
            limits::MAX_PAYLOAD_BYTES
        )));
    }
    if let DeliveryJob::Notice { text } = &d.job {
        limits::nonempty("notice text", text, limits::MAX_PAYLOAD_BYTES)?;
    }
    Ok(payload)
}

/// Decodes a stored delivery job of `version`.
fn decode_job(id: i64, version: i64, payload: &str) -> Result<DeliveryJob> {
    let current = i64::from(DeliveryJob::FORMAT_VERSION);
    if version == 0 {
        return Err(storage(format!(
            "delivery {id} holds an untyped payload written before delivery jobs were typed; it cannot be run"
        )));
    }
    if version > current {
        return Err(storage(format!(
            "delivery {id} holds a job of format version {version}, written by a newer Switchboard (this one reads version {current})"
        )));
    }
    parse_json("outbox.payload", payload)
}

/// Checks a page size.
fn page_limit(limit: usize) -> Result<i64> {
    if limit > MAX_PAGE_SIZE {
        return Err(Error::invalid(format!(
            "a page of {limit} was asked for; at most {MAX_PAGE_SIZE} are allowed"
        )));
    }
    Ok(i64::try_from(limit).unwrap_or(i64::MAX))
}

/// A posting identity as stored: (`posted_as`, `posted_as_user`).
fn posted_as_columns(p: Option<&PostingIdentity>) -> (Option<&'static str>, Option<&str>) {
    match p {
        None => (None, None),
        Some(PostingIdentity::ServiceAccount) => (Some("service_account"), None),
        Some(PostingIdentity::LinkedUser { user }) => (Some("linked_user"), Some(user.as_str())),
    }
}

/// Reads a posting identity back.
fn posted_as_from_row(row: &DbRow) -> Result<Option<PostingIdentity>> {
    let kind: Option<String> = col(row, "posted_as")?;
    let user: Option<String> = col(row, "posted_as_user")?;
    match (kind.as_deref(), user) {
        (None, _) => Ok(None),
        (Some("service_account"), _) => Ok(Some(PostingIdentity::ServiceAccount)),
        (Some("linked_user"), Some(u)) => Ok(Some(PostingIdentity::LinkedUser {
            user: parse_stored("message_copies.posted_as_user", &u)?,
        })),
        (Some("linked_user"), None) => Err(storage(
            "the database holds a linked-user copy without its user in message_copies.posted_as_user",
        )),
        (Some(other), _) => Err(storage(format!(
            "the database holds a value this version does not understand in message_copies.posted_as: {other:?} (written by a newer Switchboard, or edited by hand?)"
        ))),
    }
}

/// An inbox item as stored: its dedupe key, its channel and its JSON.
struct StoredInbound<'a> {
    key: Option<&'a str>,
    channel: Option<String>,
    json: String,
}

fn validate_inbound<'a>(
    item: &'a Inbound,
    platform: PlatformKind,
    connection: &ConnectionId,
) -> Result<StoredInbound<'a>> {
    let key = item.dedupe_key();
    if let Some(k) = key {
        limits::nonempty("event id", k, 1024)?;
    }
    if let Some(channel) = item.channel() {
        if channel.platform != platform {
            return Err(Error::invalid(format!(
                "an item from {channel} arrived on {platform} connection {connection}"
            )));
        }
    }
    let json = serde_json::to_string(item)
        .map_err(|e| Error::invalid(format!("the item cannot be serialized: {e}")))?;
    if json.len() > limits::MAX_EVENT_BYTES {
        return Err(Error::invalid(format!(
            "item {} is {} bytes; at most {} are accepted",
            key.unwrap_or("(a signal)"),
            json.len(),
            limits::MAX_EVENT_BYTES
        )));
    }
    Ok(StoredInbound {
        key,
        channel: item.channel().map(ToString::to_string),
        json,
    })
}

fn validate_audit(entry: &NewAuditEntry) -> Result<String> {
    limits::key("audit action", &entry.action)?;
    if entry.action.len() > limits::MAX_AUDIT_ACTION_BYTES {
        return Err(Error::invalid(format!(
            "audit action is {} bytes long; at most {} are allowed",
            entry.action.len(),
            limits::MAX_AUDIT_ACTION_BYTES
        )));
    }
    limits::text(
        "audit target",
        &entry.target,
        limits::MAX_AUDIT_TARGET_BYTES,
    )?;
    if let Actor::Admin { name } = &entry.actor {
        limits::nonempty("audit actor name", name, limits::MAX_NAME_BYTES)?;
    }
    let details = audit::canonical_json(&audit::redact_details(&entry.details));
    if details.len() > limits::MAX_AUDIT_DETAILS_BYTES {
        return Err(Error::invalid(format!(
            "audit details are {} bytes; at most {} are allowed",
            details.len(),
            limits::MAX_AUDIT_DETAILS_BYTES
        )));
    }
    Ok(details)
}

fn connection_from_row(row: &DbRow) -> Result<Connection> {
    const T: &str = "connections";
    Ok(Connection {
        id: parse_col(row, T, "id")?,
        org: parse_col(row, T, "org_id")?,
        platform: parse_col(row, T, "platform")?,
        tenant: parse_col(row, T, "tenant")?,
        enterprise: parse_opt_col(row, T, "enterprise")?,
        display_name: col_str(row, "display_name")?,
        account: AccountIdentity {
            user_id: parse_col(row, T, "account_user_id")?,
            display_name: col_str(row, "account_display_name")?,
            is_service_account: col(row, "account_is_service_account")?,
        },
        health: parse_col(row, T, "health")?,
        created_at: from_ts("connections.created_at", col(row, "created_at")?)?,
    })
}

const CONNECTION_COLUMNS: &str = "org_id, id, platform, tenant, enterprise, display_name, \
     account_user_id, account_display_name, account_is_service_account, health, created_at";

fn channel_from_row(row: &DbRow) -> Result<StoredChannel> {
    const T: &str = "channels";
    let platform: PlatformKind = parse_col(row, T, "platform")?;
    let team: TeamId = parse_col(row, T, "team_id")?;
    let id = parse_col(row, T, "id")?;
    Ok(StoredChannel {
        connection: parse_col(row, T, "connection_id")?,
        reference: ChannelRef::new(platform, team.clone(), parse_col(row, T, "id")?),
        channel: Channel {
            id,
            team,
            name: col_str(row, "name")?,
            kind: parse_col(row, T, "kind")?,
            description: col(row, "description")?,
        },
        removed: col(row, "removed")?,
    })
}

const CHANNEL_COLUMNS: &str =
    "platform, team_id, id, connection_id, name, kind, description, removed";

fn user_from_row(row: &DbRow) -> Result<StoredUser> {
    const T: &str = "users";
    Ok(StoredUser {
        connection: parse_col(row, T, "connection_id")?,
        platform: parse_col(row, T, "platform")?,
        user: User {
            id: parse_col(row, T, "id")?,
            display_name: col_str(row, "display_name")?,
            email: col(row, "email")?,
            avatar_url: col(row, "avatar_url")?,
            is_guest: col(row, "is_guest")?,
            is_bot: col(row, "is_bot")?,
            is_deleted: col(row, "is_deleted")?,
        },
        removed: col(row, "removed")?,
    })
}

const USER_COLUMNS: &str = "platform, id, connection_id, display_name, email, avatar_url, is_guest, is_bot, is_deleted, removed";

fn copy_from_row(row: &DbRow) -> Result<MessageCopy> {
    const T: &str = "message_copies";
    Ok(MessageCopy {
        universal: parse_col(row, T, "universal_id")?,
        channel: ChannelRef::new(
            parse_col(row, T, "platform")?,
            parse_col(row, T, "team_id")?,
            parse_col(row, T, "channel_id")?,
        ),
        message: parse_col(row, T, "message_id")?,
        thread_root: parse_opt_col(row, T, "thread_root")?,
        posted_by: posted_as_from_row(row)?,
        part: u32::try_from(col::<i64>(row, "part")?)
            .map_err(|_| storage("message_copies.part is out of range"))?,
    })
}

const COPY_COLUMNS: &str = "universal_id, platform, team_id, channel_id, message_id, \
     thread_root, posted_as, posted_as_user, part";

fn audit_from_row(org: &OrgId, row: &DbRow) -> Result<AuditEntry> {
    let seq: i64 = col(row, "seq")?;
    Ok(AuditEntry {
        seq: u64::try_from(seq).map_err(|_| storage(format!("negative audit seq {seq}")))?,
        org: org.clone(),
        actor: parse_json::<Actor>("audit_log.actor", &col_str(row, "actor")?)?,
        action: col_str(row, "action")?,
        target: col_str(row, "target")?,
        at: from_ts("audit_log.at", col(row, "at")?)?,
        details: parse_json("audit_log.details", &col_str(row, "details")?)?,
        prev_hash: col_str(row, "prev_hash")?,
        hash: col_str(row, "hash")?,
    })
}

const AUDIT_COLUMNS: &str = "seq, actor, action, target, at, details, prev_hash, hash";

fn build_universal(
    org: &OrgId,
    id: &str,
    name: String,
    relay_notices: bool,
    endpoints: Vec<Endpoint>,
) -> Result<UniversalChannel> {
    let uid: UniversalChannelId = parse_stored("universal_channels.id", id)?;
    let mut uc = UniversalChannel::new(uid, org.clone(), name, endpoints).map_err(|e| {
        storage(format!(
            "universal channel {id} as stored is invalid: {}",
            e.message()
        ))
    })?;
    uc.relay_membership_notices = relay_notices;
    Ok(uc)
}

fn endpoint_from_row(row: &DbRow) -> Result<(String, Endpoint)> {
    const T: &str = "universal_endpoints";
    Ok((
        col_str(row, "universal_id")?,
        Endpoint {
            connection: parse_col(row, T, "connection_id")?,
            channel: ChannelRef::new(
                parse_col(row, T, "platform")?,
                parse_col(row, T, "team_id")?,
                parse_col(row, T, "channel_id")?,
            ),
        },
    ))
}

impl Backend {
    /// Starts a write transaction. On SQLite `BEGIN IMMEDIATE` takes the write lock at once,
    /// so a read-then-write transaction never fails half-way on a lock upgrade.
    async fn begin(&self) -> Result<Tx> {
        let r = if PG {
            self.write.begin().await
        } else {
            self.write.begin_with("BEGIN IMMEDIATE").await
        };
        r.map_err(|e| db_err("starting a transaction", e))
    }

    async fn commit(tx: Tx) -> Result<()> {
        tx.commit()
            .await
            .map_err(|e| db_err("committing the transaction", e))
    }

    async fn require_org(tx: &mut Tx, org: &OrgId) -> Result<()> {
        let found = sqlx::query("SELECT 1 FROM orgs WHERE id = $1")
            .bind(org.as_str())
            .fetch_optional(&mut **tx)
            .await
            .map_err(|e| db_err("reading the organization", e))?;
        match found {
            Some(_) => Ok(()),
            None => Err(Error::not_found(format!(
                "organization {org} does not exist"
            ))),
        }
    }

    async fn require_connection(
        tx: &mut Tx,
        org: &OrgId,
        connection: &ConnectionId,
    ) -> Result<PlatformKind> {
        let row = sqlx::query("SELECT platform FROM connections WHERE org_id = $1 AND id = $2")
            .bind(org.as_str())
            .bind(connection.as_str())
            .fetch_optional(&mut **tx)
            .await
            .map_err(|e| db_err("reading the connection", e))?;
        match row {
            Some(r) => parse_col(&r, "connections", "platform"),
            None => Err(Error::not_found(format!(
                "connection {connection} does not exist in organization {org}"
            ))),
        }
    }

    // ----- organizations and admin tokens -------------------------------------------------

    pub(crate) async fn create_org(&self, name: &str) -> Result<Organization> {
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

    pub(crate) async fn get_org(&self, org: &OrgId) -> Result<Option<Organization>> {
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

    pub(crate) async fn list_orgs(&self) -> Result<Vec<Organization>> {
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

    pub(crate) async fn create_admin_token(&self, org: &OrgId, name: &str) -> Result<SecretString> {
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

    pub(crate) async fn authenticate_admin_token(
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

    pub(crate) async fn revoke_admin_token(&self, org: &OrgId, name: &str) -> Result<()> {
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

    // ----- connections and credentials ----------------------------------------------------

    pub(crate) async fn put_connection(&self, c: &Connection) -> Result<()> {
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

    pub(crate) async fn get_connection(
        &self,
        org: &OrgId,
        id: &ConnectionId,
    ) -> Result<Option<Connection>> {
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

    pub(crate) async fn list_connections(&self, org: &OrgId) -> Result<Vec<Connection>> {
        let rows = sqlx::query(&format!(
            "SELECT {CONNECTION_COLUMNS} FROM connections WHERE org_id = $1 ORDER BY created_at, id"
        ))
        .bind(org.as_str())
        .fetch_all(&self.read)
        .await
        .map_err(|e| db_err("listing connections", e))?;
        rows.iter().map(connection_from_row).collect()
    }

    pub(crate) async fn set_connection_health(
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

    fn seal_credentials(
        &self,
        org: &OrgId,
        id: &ConnectionId,
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
        seal::seal(
            &self.keyring,
            Purpose::Credentials,
            org.as_str(),
            id.as_str(),
            &bytes,
        )
    }

    async fn store_credentials(
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

    pub(crate) async fn put_credentials(
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

    pub(crate) async fn get_credentials(
        &self,
        org: &OrgId,
        id: &ConnectionId,
    ) -> Result<Option<Credentials>> {
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

    pub(crate) async fn migrate_connection(
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

    pub(crate) async fn delete_connection(&self, org: &OrgId, id: &ConnectionId) -> Result<()> {
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
        Self::commit(tx).await
    }

    // ----- named secrets and resealing ----------------------------------------------------

    pub(crate) async fn put_secret(
        &self,
        org: &OrgId,
        name: &str,
        value: &SecretString,
    ) -> Result<()> {
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

    pub(crate) async fn get_secret(&self, org: &OrgId, name: &str) -> Result<Option<SecretString>> {
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

    pub(crate) async fn reseal_all(&self) -> Result<u64> {
        let current = self.keyring.current().id().as_str().to_owned();
        let mut tx = self.begin().await?;
        let mut n = 0u64;
        // (table, purpose, row-key column, sealed column)
        let tables: [(&str, Purpose, &str, &str); 3] = [
            (
                "credentials",
                Purpose::Credentials,
                "connection_id",
                "sealed",
            ),
            ("secrets", Purpose::Secret, "name", "sealed"),
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

    pub(crate) async fn sealed_key_usage(&self) -> Result<BTreeMap<KeyId, u64>> {
        let rows = sqlx::query(
            "SELECT key_id, COUNT(*) AS n FROM (\
               SELECT key_id FROM credentials UNION ALL SELECT key_id FROM secrets \
               UNION ALL SELECT key_id FROM subscriptions) k GROUP BY key_id",
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

    // ----- directory ----------------------------------------------------------------------

    pub(crate) async fn begin_import(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
    ) -> Result<ImportRun> {
        let mut tx = self.begin().await?;
        Self::require_connection(&mut tx, org, connection).await?;
        let row = sqlx::query(
            "INSERT INTO import_runs (org_id, connection_id, started_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(org.as_str())
        .bind(connection.as_str())
        .bind(now_ns())
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| db_err("starting the import", e))?;
        let id: i64 = col(&row, "id")?;
        Self::commit(tx).await?;
        Ok(ImportRun(id))
    }

    async fn require_run(
        tx: &mut Tx,
        org: &OrgId,
        connection: &ConnectionId,
        run: ImportRun,
    ) -> Result<PlatformKind> {
        let row = sqlx::query(
            "SELECT c.platform FROM import_runs r JOIN connections c \
             ON c.org_id = r.org_id AND c.id = r.connection_id \
             WHERE r.id = $1 AND r.org_id = $2 AND r.connection_id = $3",
        )
        .bind(run.0)
        .bind(org.as_str())
        .bind(connection.as_str())
        .fetch_optional(&mut **tx)
        .await
        .map_err(|e| db_err("reading the import run", e))?;
        match row {
            Some(r) => parse_col(&r, "connections", "platform"),
            None => Err(Error::invalid(format!(
                "import run {} was not started for connection {connection} of organization {org}",
                run.0
            ))),
        }
    }

    pub(crate) async fn upsert_teams(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
        run: ImportRun,
        teams: &[Team],
    ) -> Result<()> {
        for t in teams {
            limits::text("team name", &t.name, limits::MAX_NAME_BYTES)?;
            limits::opt_text(
                "team description",
                t.description.as_deref(),
                limits::MAX_DESCRIPTION_BYTES,
            )?;
        }
        let teams = dedupe_last(teams, |t| t.id.clone());
        let mut tx = self.begin().await?;
        Self::require_run(&mut tx, org, connection, run).await?;
        for chunk in teams.chunks(CHUNK) {
            let mut qb = QueryBuilder::<DB>::new(
                "INSERT INTO teams (org_id, connection_id, id, name, description, seen_run) ",
            );
            qb.push_values(chunk, |mut b, t| {
                b.push_bind(org.as_str())
                    .push_bind(connection.as_str())
                    .push_bind(t.id.as_str())
                    .push_bind(t.name.as_str())
                    .push_bind(t.description.as_deref())
                    .push_bind(run.0);
            });
            qb.push(
                " ON CONFLICT (org_id, connection_id, id) DO UPDATE SET name = excluded.name, \
                 description = excluded.description, seen_run = CASE WHEN excluded.seen_run > \
                 teams.seen_run THEN excluded.seen_run ELSE teams.seen_run END",
            );
            qb.build()
                .execute(&mut *tx)
                .await
                .map_err(|e| db_err("storing teams", e))?;
        }
        Self::commit(tx).await
    }

    pub(crate) async fn upsert_channels(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
        run: ImportRun,
        channels: &[Channel],
    ) -> Result<()> {
        for c in channels {
            limits::text("channel name", &c.name, limits::MAX_NAME_BYTES)?;
            limits::opt_text(
                "channel description",
                c.description.as_deref(),
                limits::MAX_DESCRIPTION_BYTES,
            )?;
        }
        let channels = dedupe_last(channels, |c| (c.team.clone(), c.id.clone()));
        let mut tx = self.begin().await?;
        let platform = Self::require_run(&mut tx, org, connection, run).await?;
        for chunk in channels.chunks(CHUNK) {
            let mut qb = QueryBuilder::<DB>::new(
                "INSERT INTO channels (org_id, platform, team_id, id, connection_id, name, kind, \
                 description, removed, seen_run) ",
            );
            qb.push_values(chunk, |mut b, c| {
                b.push_bind(org.as_str())
                    .push_bind(platform.as_str())
                    .push_bind(c.team.as_str())
                    .push_bind(c.id.as_str())
                    .push_bind(connection.as_str())
                    .push_bind(c.name.as_str())
                    .push_bind(c.kind.as_str())
                    .push_bind(c.description.as_deref())
                    .push_bind(false)
                    .push_bind(run.0);
            });
            qb.push(
                " ON CONFLICT (org_id, platform, team_id, id) DO UPDATE SET \
                 connection_id = excluded.connection_id, name = excluded.name, kind = excluded.kind, \
                 description = excluded.description, removed = excluded.removed, \
                 seen_run = CASE WHEN excluded.seen_run > channels.seen_run \
                 THEN excluded.seen_run ELSE channels.seen_run END",
            );
            qb.build()
                .execute(&mut *tx)
                .await
                .map_err(|e| db_err("storing channels", e))?;
        }
        Self::commit(tx).await
    }

    pub(crate) async fn upsert_users(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
        run: ImportRun,
        users: &[User],
    ) -> Result<()> {
        for u in users {
            limits::text("user display name", &u.display_name, limits::MAX_NAME_BYTES)?;
            limits::opt_text("user email", u.email.as_deref(), limits::MAX_EMAIL_BYTES)?;
            limits::opt_text(
                "user avatar URL",
                u.avatar_url.as_deref(),
                limits::MAX_URL_BYTES,
            )?;
        }
        let users = dedupe_last(users, |u| u.id.clone());
        let norms: Vec<Option<String>> = users
            .iter()
            .map(|u| {
                u.email
                    .as_deref()
                    .map(|e| e.trim().to_lowercase())
                    .filter(|e| !e.is_empty())
            })
            .collect();
        let rows: Vec<(&User, Option<&str>)> = users
            .iter()
            .zip(&norms)
            .map(|(u, n)| (*u, n.as_deref()))
            .collect();
        let mut tx = self.begin().await?;
        let platform = Self::require_run(&mut tx, org, connection, run).await?;
        for chunk in rows.chunks(CHUNK) {
            let mut qb = QueryBuilder::<DB>::new(
                "INSERT INTO users (org_id, platform, id, connection_id, display_name, email, \
                 email_norm, avatar_url, is_guest, is_bot, is_deleted, removed, seen_run) ",
            );
            qb.push_values(chunk, |mut b, (u, norm)| {
                b.push_bind(org.as_str())
                    .push_bind(platform.as_str())
                    .push_bind(u.id.as_str())
                    .push_bind(connection.as_str())
                    .push_bind(u.display_name.as_str())
                    .push_bind(u.email.as_deref())
                    .push_bind(*norm)
                    .push_bind(u.avatar_url.as_deref())
                    .push_bind(u.is_guest)
                    .push_bind(u.is_bot)
                    .push_bind(u.is_deleted)
                    .push_bind(false)
                    .push_bind(run.0);
            });
            qb.push(
                " ON CONFLICT (org_id, platform, id) DO UPDATE SET \
                 connection_id = excluded.connection_id, display_name = excluded.display_name, \
                 email = excluded.email, email_norm = excluded.email_norm, \
                 avatar_url = excluded.avatar_url, is_guest = excluded.is_guest, \
                 is_bot = excluded.is_bot, is_deleted = excluded.is_deleted, \
                 removed = excluded.removed, seen_run = CASE WHEN excluded.seen_run > \
                 users.seen_run THEN excluded.seen_run ELSE users.seen_run END",
            );
            qb.build()
                .execute(&mut *tx)
                .await
                .map_err(|e| db_err("storing users", e))?;
        }
        Self::commit(tx).await
    }

    pub(crate) async fn upsert_memberships(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
        run: ImportRun,
        members: &[Membership],
    ) -> Result<()> {
        let members = dedupe_last(members, |m| (m.team.clone(), m.user.clone()));
        let mut tx = self.begin().await?;
        Self::require_run(&mut tx, org, connection, run).await?;
        for chunk in members.chunks(CHUNK) {
            let mut qb = QueryBuilder::<DB>::new(
                "INSERT INTO memberships (org_id, connection_id, team_id, user_id, is_owner, \
                 removed, seen_run) ",
            );
            qb.push_values(chunk, |mut b, m| {
                b.push_bind(org.as_str())
                    .push_bind(connection.as_str())
                    .push_bind(m.team.as_str())
                    .push_bind(m.user.as_str())
                    .push_bind(m.is_owner)
                    .push_bind(false)
                    .push_bind(run.0);
            });
            qb.push(
                " ON CONFLICT (org_id, connection_id, team_id, user_id) DO UPDATE SET \
                 is_owner = excluded.is_owner, removed = excluded.removed, \
                 seen_run = CASE WHEN excluded.seen_run > memberships.seen_run \
                 THEN excluded.seen_run ELSE memberships.seen_run END",
            );
            qb.build()
                .execute(&mut *tx)
                .await
                .map_err(|e| db_err("storing memberships", e))?;
        }
        Self::commit(tx).await
    }

    pub(crate) async fn finish_team_import(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
        run: ImportRun,
        team: &TeamId,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        Self::require_run(&mut tx, org, connection, run).await?;
        for table in ["channels", "memberships"] {
            sqlx::query(&format!(
                "UPDATE {table} SET removed = TRUE WHERE org_id = $1 AND connection_id = $2 \
                 AND team_id = $3 AND seen_run < $4 AND removed = FALSE"
            ))
            .bind(org.as_str())
            .bind(connection.as_str())
            .bind(team.as_str())
            .bind(run.0)
            .execute(&mut *tx)
            .await
            .map_err(|e| db_err(&format!("marking removed {table}"), e))?;
        }
        Self::commit(tx).await
    }

    pub(crate) async fn finish_user_import(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
        run: ImportRun,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        Self::require_run(&mut tx, org, connection, run).await?;
        sqlx::query(
            "UPDATE users SET removed = TRUE WHERE org_id = $1 AND connection_id = $2 \
             AND seen_run < $3 AND removed = FALSE",
        )
        .bind(org.as_str())
        .bind(connection.as_str())
        .bind(run.0)
        .execute(&mut *tx)
        .await
        .map_err(|e| db_err("marking removed users", e))?;
        Self::commit(tx).await
    }

    pub(crate) async fn list_teams(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
    ) -> Result<Vec<Team>> {
        let rows = sqlx::query(
            "SELECT id, name, description FROM teams WHERE org_id = $1 AND connection_id = $2 ORDER BY id",
        )
        .bind(org.as_str())
        .bind(connection.as_str())
        .fetch_all(&self.read)
        .await
        .map_err(|e| db_err("listing teams", e))?;
        rows.iter()
            .map(|r| {
                Ok(Team {
                    id: parse_col(r, "teams", "id")?,
                    name: col_str(r, "name")?,
                    description: col(r, "description")?,
                })
            })
            .collect()
    }

    pub(crate) async fn list_channels(
        &self,
        org: &OrgId,
        connection: Option<&ConnectionId>,
        after: Option<&ChannelRef>,
        limit: usize,
    ) -> Result<Vec<StoredChannel>> {
        let limit = page_limit(limit)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(&format!(
            "SELECT {CHANNEL_COLUMNS} FROM channels WHERE org_id = $1 \
             AND ($2 IS NULL OR connection_id = $2) \
             AND ($3 IS NULL OR (platform, team_id, id) > ($3, $4, $5)) \
             ORDER BY platform, team_id, id LIMIT $6"
        ))
        .bind(org.as_str())
        .bind(connection.map(|c| c.as_str()))
        .bind(after.map(|c| c.platform.as_str()))
        .bind(after.map(|c| c.team.as_str()))
        .bind(after.map(|c| c.channel.as_str()))
        .bind(limit)
        .fetch_all(&self.read)
        .await
        .map_err(|e| db_err("listing channels", e))?;
        rows.iter().map(channel_from_row).collect()
    }

    pub(crate) async fn get_channel(
        &self,
        org: &OrgId,
        reference: &ChannelRef,
    ) -> Result<Option<StoredChannel>> {
        let row = sqlx::query(&format!(
            "SELECT {CHANNEL_COLUMNS} FROM channels WHERE org_id = $1 AND platform = $2 \
             AND team_id = $3 AND id = $4"
        ))
        .bind(org.as_str())
        .bind(reference.platform.as_str())
        .bind(reference.team.as_str())
        .bind(reference.channel.as_str())
        .fetch_optional(&self.read)
        .await
        .map_err(|e| db_err("reading the channel", e))?;
        row.as_ref().map(channel_from_row).transpose()
    }

    pub(crate) async fn list_users(
        &self,
        org: &OrgId,
        connection: Option<&ConnectionId>,
        after: Option<(PlatformKind, &UserId)>,
        limit: usize,
    ) -> Result<Vec<StoredUser>> {
        let limit = page_limit(limit)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE org_id = $1 \
             AND ($2 IS NULL OR connection_id = $2) \
             AND ($3 IS NULL OR (platform, id) > ($3, $4)) \
             ORDER BY platform, id LIMIT $5"
        ))
        .bind(org.as_str())
        .bind(connection.map(|c| c.as_str()))
        .bind(after.map(|(p, _)| p.as_str()))
        .bind(after.map(|(_, u)| u.as_str()))
        .bind(limit)
        .fetch_all(&self.read)
        .await
        .map_err(|e| db_err("listing users", e))?;
        rows.iter().map(user_from_row).collect()
    }

    pub(crate) async fn get_user(
        &self,
        org: &OrgId,
        platform: PlatformKind,
        user: &UserId,
    ) -> Result<Option<StoredUser>> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE org_id = $1 AND platform = $2 AND id = $3"
        ))
        .bind(org.as_str())
        .bind(platform.as_str())
        .bind(user.as_str())
        .fetch_optional(&self.read)
        .await
        .map_err(|e| db_err("reading the user", e))?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub(crate) async fn list_memberships(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
        team: &TeamId,
    ) -> Result<Vec<Membership>> {
        let rows = sqlx::query(
            "SELECT team_id, user_id, is_owner FROM memberships WHERE org_id = $1 \
             AND connection_id = $2 AND team_id = $3 AND removed = FALSE ORDER BY user_id",
        )
        .bind(org.as_str())
        .bind(connection.as_str())
        .bind(team.as_str())
        .fetch_all(&self.read)
        .await
        .map_err(|e| db_err("listing memberships", e))?;
        rows.iter()
            .map(|r| {
                Ok(Membership {
                    team: parse_col(r, "memberships", "team_id")?,
                    user: parse_col(r, "memberships", "user_id")?,
                    is_owner: col(r, "is_owner")?,
                })
            })
            .collect()
    }

    pub(crate) async fn counterpart(
        &self,
        org: &OrgId,
        platform: PlatformKind,
        user: &UserId,
        target: PlatformKind,
    ) -> Result<Option<UserId>> {
        if platform == target {
            return Ok(Some(user.clone()));
        }
        let link = sqlx::query(
            "SELECT target_user_id FROM identity_links WHERE org_id = $1 AND platform = $2 \
             AND user_id = $3 AND target_platform = $4",
        )
        .bind(org.as_str())
        .bind(platform.as_str())
        .bind(user.as_str())
        .bind(target.as_str())
        .fetch_optional(&self.read)
        .await
        .map_err(|e| db_err("reading identity links", e))?;
        if let Some(row) = link {
            return parse_col(&row, "identity_links", "target_user_id").map(Some);
        }
        // Email match: a live user on the target platform with the same email, unless that
        // user is manually linked to someone on our platform.
        let row = sqlx::query(
            "SELECT t.id FROM users s JOIN users t ON t.org_id = s.org_id \
             AND t.platform = $4 AND t.email_norm = s.email_norm \
             WHERE s.org_id = $1 AND s.platform = $2 AND s.id = $3 AND s.email_norm IS NOT NULL \
             AND t.removed = FALSE AND t.is_deleted = FALSE \
             AND NOT EXISTS (SELECT 1 FROM identity_links l WHERE l.org_id = t.org_id \
                 AND l.platform = t.platform AND l.user_id = t.id AND l.target_platform = $2) \
             ORDER BY t.is_bot, t.id LIMIT 1",
        )
        .bind(org.as_str())
        .bind(platform.as_str())
        .bind(user.as_str())
        .bind(target.as_str())
        .fetch_optional(&self.read)
        .await
        .map_err(|e| db_err("matching identities", e))?;
        row.map(|r| parse_col(&r, "users", "id")).transpose()
    }

    async fn require_user(
        tx: &mut Tx,
        org: &OrgId,
        platform: PlatformKind,
        user: &UserId,
    ) -> Result<()> {
        let found =
            sqlx::query("SELECT 1 FROM users WHERE org_id = $1 AND platform = $2 AND id = $3")
                .bind(org.as_str())
                .bind(platform.as_str())
                .bind(user.as_str())
                .fetch_optional(&mut **tx)
                .await
                .map_err(|e| db_err("reading the user", e))?;
        match found {
            Some(_) => Ok(()),
            None => Err(Error::not_found(format!(
                "{platform} user {user} is not in the directory of organization {org}; import it first"
            ))),
        }
    }

    async fn delete_links_of(
        tx: &mut Tx,
        org: &OrgId,
        platform: PlatformKind,
        user: &UserId,
    ) -> Result<u64> {
        let r = sqlx::query(
            "DELETE FROM identity_links WHERE org_id = $1 AND ((platform = $2 AND user_id = $3) \
             OR (target_platform = $2 AND target_user_id = $3))",
        )
        .bind(org.as_str())
        .bind(platform.as_str())
        .bind(user.as_str())
        .execute(&mut **tx)
        .await
        .map_err(|e| db_err("removing identity links", e))?;
        Ok(r.rows_affected())
    }

    pub(crate) async fn link_identities(
        &self,
        org: &OrgId,
        a: (PlatformKind, &UserId),
        b: (PlatformKind, &UserId),
    ) -> Result<()> {
        if a.0 == b.0 {
            return Err(Error::invalid(
                "a manual identity link joins users of two different platforms",
            ));
        }
        let mut tx = self.begin().await?;
        Self::require_user(&mut tx, org, a.0, a.1).await?;
        Self::require_user(&mut tx, org, b.0, b.1).await?;
        // Drop the links of both users towards each other's platform (and stale reverse
        // links pointing at them), then link them both ways.
        sqlx::query(
            "DELETE FROM identity_links WHERE org_id = $1 AND (\
               (platform = $2 AND user_id = $3 AND target_platform = $4) \
               OR (platform = $4 AND user_id = $5 AND target_platform = $2) \
               OR (platform = $4 AND target_platform = $2 AND target_user_id = $3) \
               OR (platform = $2 AND target_platform = $4 AND target_user_id = $5))",
        )
        .bind(org.as_str())
        .bind(a.0.as_str())
        .bind(a.1.as_str())
        .bind(b.0.as_str())
        .bind(b.1.as_str())
        .execute(&mut *tx)
        .await
        .map_err(|e| db_err("replacing identity links", e))?;
        let now = now_ns();
        for (from, to) in [(a, b), (b, a)] {
            sqlx::query(
                "INSERT INTO identity_links (org_id, platform, user_id, target_platform, \
                 target_user_id, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(org.as_str())
            .bind(from.0.as_str())
            .bind(from.1.as_str())
            .bind(to.0.as_str())
            .bind(to.1.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| db_err("storing the identity link", e))?;
        }
        Self::commit(tx).await
    }

    pub(crate) async fn unlink_identity(
        &self,
        org: &OrgId,
        user: (PlatformKind, &UserId),
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let n = Self::delete_links_of(&mut tx, org, user.0, user.1).await?;
        if n == 0 {
            return Err(Error::not_found(format!(
                "{} user {} has no manual identity link",
                user.0, user.1
            )));
        }
        Self::commit(tx).await
    }

    // ----- universal channels -------------------------------------------------------------

    pub(crate) async fn create_universal_channel(&self, uc: &UniversalChannel) -> Result<()> {
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

    pub(crate) async fn get_universal_channel(
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

    pub(crate) async fn list_universal_channels(
        &self,
        org: &OrgId,
    ) -> Result<Vec<UniversalChannel>> {
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

    pub(crate) async fn find_universal_channel(
        &self,
        org: &OrgId,
        channel: &ChannelRef,
    ) -> Result<Option<UniversalChannel>> {
        let row = sqlx::query(
            "SELECT universal_id FROM universal_endpoints WHERE org_id = $1 AND platform = $2 \
             AND team_id = $3 AND channel_id = $4",
        )
        .bind(org.as_str())
        .bind(channel.platform.as_str())
        .bind(channel.team.as_str())
        .bind(channel.channel.as_str())
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

    pub(crate) async fn delete_universal_channel(
        &self,
        org: &OrgId,
        id: &UniversalChannelId,
    ) -> Result<()> {
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

    // ----- message map --------------------------------------------------------------------

    pub(crate) async fn put_message_copy(&self, org: &OrgId, copy: &MessageCopy) -> Result<()> {
        let (posted_as, posted_as_user) = posted_as_columns(copy.posted_by.as_ref());
        let mut tx = self.begin().await?;
        Self::require_org(&mut tx, org).await?;
        let existing = sqlx::query(
            "SELECT universal_id, part FROM message_copies WHERE org_id = $1 AND platform = $2 \
             AND team_id = $3 AND channel_id = $4 AND message_id = $5",
        )
        .bind(org.as_str())
        .bind(copy.channel.platform.as_str())
        .bind(copy.channel.team.as_str())
        .bind(copy.channel.channel.as_str())
        .bind(copy.message.as_str())
        .fetch_optional(&mut *tx)
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
        .fetch_optional(&mut *tx)
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
             universal_id, thread_root, posted_as, posted_as_user, part, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
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
        .execute(&mut *tx)
        .await
        .map_err(|e| db_err("recording the message copy", e))?;
        Self::commit(tx).await
    }

    pub(crate) async fn find_message_copy(
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
        .bind(channel.platform.as_str())
        .bind(channel.team.as_str())
        .bind(channel.channel.as_str())
        .bind(message.as_str())
        .fetch_optional(&self.read)
        .await
        .map_err(|e| db_err("reading the message copy", e))?;
        row.as_ref().map(copy_from_row).transpose()
    }

    pub(crate) async fn message_copies(
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

    pub(crate) async fn record_message_edit(
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
        .bind(channel.platform.as_str())
        .bind(channel.team.as_str())
        .bind(channel.channel.as_str())
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
        .bind(channel.platform.as_str())
        .bind(channel.team.as_str())
        .bind(channel.channel.as_str())
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

    // ----- sync state ---------------------------------------------------------------------

    pub(crate) async fn put_cursor(
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

    pub(crate) async fn get_cursor(
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

    fn subscription_from_row(&self, row: &DbRow) -> Result<(OrgId, Subscription)> {
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

    pub(crate) async fn put_subscription(&self, org: &OrgId, s: &Subscription) -> Result<()> {
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

    pub(crate) async fn get_subscription(
        &self,
        id: &SubscriptionId,
    ) -> Result<Option<(OrgId, Subscription)>> {
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

    pub(crate) async fn list_subscriptions(&self, org: &OrgId) -> Result<Vec<Subscription>> {
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

    pub(crate) async fn delete_subscription(&self, org: &OrgId, id: &SubscriptionId) -> Result<()> {
        sqlx::query("DELETE FROM subscriptions WHERE org_id = $1 AND id = $2")
            .bind(org.as_str())
            .bind(id.as_str())
            .execute(&self.write)
            .await
            .map_err(|e| db_err("deleting the subscription", e))?;
        Ok(())
    }

    // ----- message snapshots --------------------------------------------------------------

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

    // ----- inbox --------------------------------------------------------------------------

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

    // ----- outbox -------------------------------------------------------------------------

    async fn enqueue_tx(
        tx: &mut Tx,
        deliveries: &[NewDelivery],
        payloads: &[String],
        now: i64,
    ) -> Result<()> {
        let mut platforms: HashMap<(&str, &str), PlatformKind> = HashMap::new();
        for d in deliveries {
            let key = (d.org.as_str(), d.connection.as_str());
            let platform = match platforms.get(&key) {
                Some(p) => *p,
                None => {
                    let p = Self::require_connection(tx, &d.org, &d.connection).await?;
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
        let rows: Vec<(&NewDelivery, &String, String)> = deliveries
            .iter()
            .zip(payloads)
            .map(|(d, p)| (d, p, d.target.to_string()))
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
                    .push_bind(payload.as_str())
                    .push_bind(i64::from(DeliveryJob::FORMAT_VERSION))
                    .push_bind("pending")
                    .push_bind(0i64)
                    .push_bind(now)
                    .push_bind(now);
            });
            qb.build()
                .execute(&mut **tx)
                .await
                .map_err(|e| db_err("enqueueing deliveries", e))?;
        }
        Ok(())
    }

    pub(crate) async fn outbox_enqueue(&self, deliveries: &[NewDelivery]) -> Result<()> {
        if deliveries.is_empty() {
            return Ok(());
        }
        let payloads = deliveries
            .iter()
            .map(validate_delivery)
            .collect::<Result<Vec<_>>>()?;
        let mut tx = self.begin().await?;
        Self::enqueue_tx(&mut tx, deliveries, &payloads, now_ns()).await?;
        Self::commit(tx).await
    }

    pub(crate) async fn outbox_lease(
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
        let mut tx = self.begin().await?;
        let rows = sqlx::query(&sql)
            .bind(worker.as_str())
            .bind(add_ns(now, lease))
            .bind(now)
            .bind(i64::try_from(max).unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
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
            .execute(&mut *tx)
            .await
            .map_err(|e| db_err("failing an undecodable delivery", e))?;
        }
        Self::commit(tx).await?;
        out.sort_by_key(|d| d.id);
        Ok(out)
    }

    /// Explains why a leased-delivery update matched nothing.
    async fn outbox_lost(&self, worker: &str, id: i64) -> Error {
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

    pub(crate) async fn outbox_complete(&self, worker: &WorkerId, id: DeliveryId) -> Result<()> {
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

    pub(crate) async fn outbox_retry(
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

    pub(crate) async fn outbox_fail(
        &self,
        worker: &WorkerId,
        id: DeliveryId,
        error: &str,
    ) -> Result<()> {
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

    pub(crate) async fn outbox_pending(&self, org: &OrgId) -> Result<u64> {
        let row =
            sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE org_id = $1 AND state = 'pending'")
                .bind(org.as_str())
                .fetch_one(&self.read)
                .await
                .map_err(|e| db_err("counting pending deliveries", e))?;
        count(&row, "n")
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

    // ----- audit --------------------------------------------------------------------------

    async fn append_audit_tx(
        tx: &mut Tx,
        org: &OrgId,
        entry: NewAuditEntry,
        details_canonical: String,
    ) -> Result<AuditEntry> {
        Self::require_org(tx, org).await?;
        sqlx::query(
            "INSERT INTO audit_heads (org_id, last_seq, last_hash) VALUES ($1, 0, '') \
             ON CONFLICT (org_id) DO NOTHING",
        )
        .bind(org.as_str())
        .execute(&mut **tx)
        .await
        .map_err(|e| db_err("reading the audit head", e))?;
        // On PostgreSQL the row lock serializes appends per organization.
        let head = sqlx::query(&format!(
            "SELECT last_seq, last_hash FROM audit_heads WHERE org_id = $1{}",
            if PG { " FOR UPDATE" } else { "" }
        ))
        .bind(org.as_str())
        .fetch_one(&mut **tx)
        .await
        .map_err(|e| db_err("reading the audit head", e))?;
        let last_seq: i64 = col(&head, "last_seq")?;
        let prev_hash = col_str(&head, "last_hash")?;
        let seq = last_seq + 1;
        let at_ns = now_ns();
        let at = from_ts("now", at_ns)?;
        let details: serde_json::Value = serde_json::from_str(&details_canonical)
            .map_err(|e| storage(format!("canonical audit details do not parse: {e}")))?;
        let actor_json = audit::canonical_json(
            &serde_json::to_value(&entry.actor)
                .map_err(|e| storage(format!("serializing the audit actor: {e}")))?,
        );
        let hash = audit::entry_hash(
            org,
            seq as u64,
            &entry.actor,
            &entry.action,
            &entry.target,
            at,
            &details,
            &prev_hash,
        );
        sqlx::query(
            "INSERT INTO audit_log (org_id, seq, actor, action, target, at, details, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(org.as_str())
        .bind(seq)
        .bind(&actor_json)
        .bind(&entry.action)
        .bind(&entry.target)
        .bind(at_ns)
        .bind(&details_canonical)
        .bind(&prev_hash)
        .bind(&hash)
        .execute(&mut **tx)
        .await
        .map_err(|e| db_err("appending to the audit log", e))?;
        sqlx::query("UPDATE audit_heads SET last_seq = $2, last_hash = $3 WHERE org_id = $1")
            .bind(org.as_str())
            .bind(seq)
            .bind(&hash)
            .execute(&mut **tx)
            .await
            .map_err(|e| db_err("advancing the audit head", e))?;
        Ok(AuditEntry {
            seq: seq as u64,
            org: org.clone(),
            actor: entry.actor,
            action: entry.action,
            target: entry.target,
            at,
            details,
            prev_hash,
            hash,
        })
    }

    pub(crate) async fn append_audit(
        &self,
        org: &OrgId,
        entry: NewAuditEntry,
    ) -> Result<AuditEntry> {
        let details = validate_audit(&entry)?;
        let mut tx = self.begin().await?;
        let e = Self::append_audit_tx(&mut tx, org, entry, details).await?;
        Self::commit(tx).await?;
        Ok(e)
    }

    pub(crate) async fn list_audit(
        &self,
        org: &OrgId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE org_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
        ))
        .bind(org.as_str())
        .bind(i64::try_from(after).unwrap_or(i64::MAX))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.read)
        .await
        .map_err(|e| db_err("reading the audit log", e))?;
        rows.iter().map(|r| audit_from_row(org, r)).collect()
    }

    pub(crate) async fn verify_audit(&self, org: &OrgId) -> Result<AuditVerification> {
        const PAGE: i64 = 1000;
        // One snapshot for the chain and its head, so concurrent appends do not look like
        // tampering.
        let mut tx = self
            .read
            .begin_with(if PG {
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
            } else {
                "BEGIN"
            })
            .await
            .map_err(|e| db_err("starting a read transaction", e))?;
        let head = sqlx::query("SELECT last_seq, last_hash FROM audit_heads WHERE org_id = $1")
            .bind(org.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| db_err("reading the audit head", e))?;
        let head = match head {
            Some(r) => Some((count(&r, "last_seq")?, col_str(&r, "last_hash")?)),
            None => None,
        };
        let mut v = audit::ChainVerifier::new();
        let mut after = i64::MIN;
        'pages: loop {
            let rows = sqlx::query(&format!(
                "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE org_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
            ))
            .bind(org.as_str())
            .bind(after)
            .bind(PAGE)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| db_err("reading the audit log", e))?;
            for row in &rows {
                let seq: i64 = col(row, "seq")?;
                after = seq;
                match audit_from_row(org, row) {
                    Ok(e) => v.push(&e),
                    Err(e) => v.unreadable(u64::try_from(seq).unwrap_or(0), e.message()),
                }
                if v.failed() {
                    break 'pages;
                }
            }
            if (rows.len() as i64) < PAGE {
                break;
            }
        }
        tx.rollback()
            .await
            .map_err(|e| db_err("ending the read transaction", e))?;
        let mut result = v.finish(
            head.as_ref()
                .map(|(s, h)| (*s, h.as_str()))
                .or(Some((0, ""))),
        );
        if head.is_none() && result.checked > 0 && result.first_bad_seq == Some(1) {
            result.reason = Some("the chain head of this organization is missing".to_owned());
        }
        Ok(result)
    }
}
