//! The storage operations, written once and compiled for each database: this module is
//! loaded by `sqlite.rs` (with `DB = sqlx::Sqlite`, `PG = false`) and by `postgres.rs` (with
//! `DB = sqlx::Postgres`, `PG = true`), one file per store. SQL is shared (`$N` placeholders
//! work on both); the few dialect differences branch on `PG`.

mod audit_log;
mod connections;
mod directory;
mod messages;
mod orgs;
mod queue;
mod relay_state;
mod secrets;
mod sync;
mod universal;
mod user_accounts;

use super::{DB, DbPool, PG, Tx};

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use rand::RngCore as _;
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use sqlx::{QueryBuilder, Row as _};
use subtle::ConstantTimeEq as _;
use switchboard_core::{
    AccountIdentity, Actor, AdminPrincipal, AdminTokenInfo, AuditEntry, AuditStore,
    AuditVerification, Channel, ChannelRef, CompletedItem, Connection, ConnectionHealth,
    ConnectionId, ConnectionStore, Credentials, CursorKey, DeadLetter, Delivery, DeliveryId,
    DeliveryJob, DirectoryStore, Endpoint, Error, IdentityLink, ImportRun, Inbound, InboxId,
    InboxItem, InboxOutcome, MAX_INBOX_BATCH, MAX_PAGE_SIZE, Membership, MessageCopy, MessageId,
    MessageMapStore, MessageSnapshot, NewAuditEntry, NewDelivery, OrgId, OrgStore, Organization,
    PlatformKind, PostingIdentity, QueueStore, Result, SecretStore, StoredChannel, StoredUser,
    Subscription, SubscriptionId, SyncStateStore, Team, TeamId, UniversalChannel,
    UniversalChannelId, UniversalChannelStore, UniversalMessageId, User, UserId, WorkerId,
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

type DbRow = <DB as sqlx::Database>::Row;

/// Binds a channel's three key columns (`platform, team_id, channel_id`), in that order.
trait BindChannel<'q> {
    fn bind_channel(self, channel: &'q ChannelRef) -> Self;
}

impl<'q> BindChannel<'q> for sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>> {
    fn bind_channel(self, channel: &'q ChannelRef) -> Self {
        self.bind(channel.platform.as_str())
            .bind(channel.team.as_str())
            .bind(channel.channel.as_str())
    }
}

/// Appends ` AND platform = … AND team_id = … AND channel_id = …` for `channel` to a query
/// being built (the [`BindChannel`] of built queries).
fn push_channel<'q>(qb: &mut QueryBuilder<'q, DB>, channel: &'q ChannelRef) {
    qb.push(" AND platform = ")
        .push_bind(channel.platform.as_str())
        .push(" AND team_id = ")
        .push_bind(channel.team.as_str())
        .push(" AND channel_id = ")
        .push_bind(channel.channel.as_str());
}

/// Appends the rest of an `IN (` list to a query being built: each value bound, then `)`.
fn push_list<'q, T>(qb: &mut QueryBuilder<'q, DB>, values: impl IntoIterator<Item = T>)
where
    T: 'q + sqlx::Encode<'q, DB> + sqlx::Type<DB> + Send,
{
    {
        let mut sep = qb.separated(", ");
        for v in values {
            sep.push_bind(v);
        }
    }
    qb.push(")");
}

/// Rows per multi-row INSERT (13 columns at most: well under both databases' bind limits).
const CHUNK: usize = 500;
/// The advisory lock that serializes inbox leasing on PostgreSQL.
const INBOX_LEASE_LOCK: i64 = 0x5357_4254_494e_4258; // "SWBTINBX"

/// One database's pools and the keyring. Implements every store trait (one file each).
pub(crate) struct Backend {
    /// Writes (on SQLite a single connection: SQLite has one writer at a time anyway).
    pub(crate) write: DbPool,
    /// Reads (on PostgreSQL the same pool as `write`).
    pub(crate) read: DbPool,
    /// The keys that seal and open secrets.
    pub(crate) keyring: Arc<Keyring>,
    /// Each connection's platform, once read (it never changes; a deleted connection is
    /// caught by the foreign keys of whatever is written for it, and forgotten here).
    pub(crate) platforms: Arc<PlatformCache>,
}

/// Connection → platform, read once per connection: the webhook and relay hot paths store
/// rows for a connection without reading it back every time.
#[derive(Debug, Default)]
pub(crate) struct PlatformCache(std::sync::RwLock<HashMap<(String, String), PlatformKind>>);

impl PlatformCache {
    fn get(&self, org: &OrgId, connection: &ConnectionId) -> Option<PlatformKind> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(org.as_str().to_owned(), connection.as_str().to_owned()))
            .copied()
    }

    fn put(&self, org: &OrgId, connection: &ConnectionId, platform: PlatformKind) {
        self.0.write().unwrap_or_else(|p| p.into_inner()).insert(
            (org.as_str().to_owned(), connection.as_str().to_owned()),
            platform,
        );
    }

    fn clear(&self) {
        self.0.write().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn forget(&self, org: &OrgId, connection: &ConnectionId) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(org.as_str().to_owned(), connection.as_str().to_owned()));
    }
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlBackend")
            .field("database", &if PG { "postgres" } else { "sqlite" })
            .field("key", self.keyring.current().id())
            .finish()
    }
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
        posted_by_account: parse_opt_col(row, T, "posted_by_account")?,
        part: u32::try_from(col::<i64>(row, "part")?)
            .map_err(|_| storage("message_copies.part is out of range"))?,
    })
}

const COPY_COLUMNS: &str = "universal_id, platform, team_id, channel_id, message_id, \
     thread_root, posted_as, posted_as_user, part, posted_by_account";

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
    pub(super) async fn begin(&self) -> Result<Tx> {
        let r = if PG {
            self.write.begin().await
        } else {
            self.write.begin_with("BEGIN IMMEDIATE").await
        };
        r.map_err(|e| db_err("starting a transaction", e))
    }

    pub(super) async fn commit(tx: Tx) -> Result<()> {
        tx.commit()
            .await
            .map_err(|e| db_err("committing the transaction", e))
    }

    pub(super) async fn require_org(tx: &mut Tx, org: &OrgId) -> Result<()> {
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

    /// The platform of `connection`, from the cache or read in `tx` (`NotFound` when it does
    /// not exist). Callers write rows with a foreign key to the connection, so a connection
    /// deleted since it was cached fails that write ([`Self::connection_gone`]).
    pub(super) async fn connection_platform(
        &self,
        tx: &mut Tx,
        org: &OrgId,
        connection: &ConnectionId,
    ) -> Result<PlatformKind> {
        if let Some(p) = self.platforms.get(org, connection) {
            return Ok(p);
        }
        let p = Self::require_connection(tx, org, connection).await?;
        self.platforms.put(org, connection, p);
        Ok(p)
    }

    /// Maps a foreign-key failure of a write for `connection` to `NotFound` (and forgets
    /// the cached platform); other errors as `db_err(what, …)`.
    pub(super) fn connection_gone(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
        what: &str,
        e: sqlx::Error,
    ) -> Error {
        if let sqlx::Error::Database(d) = &e
            && d.is_foreign_key_violation()
        {
            self.platforms.forget(org, connection);
            return Error::not_found(format!(
                "connection {connection} does not exist in organization {org}"
            ));
        }
        db_err(what, e)
    }

    pub(super) async fn require_connection(
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
}
