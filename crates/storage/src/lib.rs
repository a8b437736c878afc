//! # switchboard-storage
//!
//! The [`Store`](switchboard_core::Store) of Switchboard on sqlx, with two backends sharing
//! one implementation and one conformance suite:
//!
//! - **SQLite**, the embedded default: one file in the data directory ([`DB_FILE_NAME`]),
//!   WAL, created (mode 0600) and migrated on first run;
//! - **PostgreSQL**, for several server replicas sharing one database.
//!
//! ```no_run
//! # async fn demo() -> switchboard_core::Result<()> {
//! use switchboard_core::OrgStore;
//! use switchboard_storage::{Keyring, SqlStore};
//!
//! let dir = std::path::Path::new("./switchboard-data");
//! // The key from SWITCHBOARD_MASTER_KEY, else dir/master.key (created 0600 on first run).
//! let store = SqlStore::open_data_dir(dir).await?;
//! // Or: SqlStore::open("postgres://…", Keyring::load(dir)?).await?
//! let org = store.create_org("Contoso").await?;
//! # let _ = (org, Keyring::load(dir)?);
//! # Ok(()) }
//! ```
//!
//! What it keeps, all scoped by organization: organizations and hashed admin tokens,
//! connections and their **sealed** credentials, named sealed secrets, the imported directory
//! (teams, channels, users, memberships; imports are upserts and what disappeared upstream is
//! marked removed), the identity map (manual links, then verified email), universal
//! channels, the message map (every copy with the identity that posted it and its part),
//! sync cursors, subscriptions and message snapshots, the durable **inbox** of received
//! items (events, change hints, signals; deduplicated per platform key) and **outbox** of
//! typed delivery jobs (per-target order, attempts, leases), and the hash-chained **audit
//! log**.
//!
//! With the `testing` feature, the `testing` module exports the conformance suite every
//! [`Store`](switchboard_core::Store) backend runs (`store_conformance!`).
//!
//! Secrets are sealed with XChaCha20-Poly1305 under a [`MasterKey`]; each sealed value
//! records its key id so a [`Keyring`] can rotate keys (see [`keys`]). The database alone
//! reveals no secret. Errors are the core [`Error`](switchboard_core::Error): bad input is
//! `InvalidInput` (naming the field and the limit, see [`limits`]) and changes nothing;
//! values this version cannot read (an unknown enum from a newer version, invalid UTF-8) are
//! `Storage` errors naming the column, never panics.

#![warn(missing_docs)]

pub mod audit;
mod convert;
pub mod keys;
pub mod limits;
mod migrate;
mod seal;
mod sql;
#[cfg(feature = "testing")]
pub mod testing;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::SecretString;
use switchboard_core::{
    AccountIdentity, AdminPrincipal, AuditEntry, AuditStore, AuditVerification, Channel,
    ChannelRef, Connection, ConnectionHealth, ConnectionId, ConnectionStore, Credentials,
    CursorKey, Delivery, DeliveryId, DirectoryStore, Error, ImportRun, Inbound, InboxId, InboxItem,
    InboxOutcome, Membership, MessageCopy, MessageId, MessageMapStore, MessageSnapshot,
    NewAuditEntry, NewDelivery, OrgId, OrgStore, Organization, PlatformKind, QueueStore, Result,
    SecretStore, StoredChannel, StoredUser, Subscription, SubscriptionId, SyncStateStore, Team,
    TeamId, UniversalChannel, UniversalChannelId, UniversalChannelStore, UniversalMessageId, User,
    UserId, WorkerId,
};
use time::OffsetDateTime;

pub use audit::{export_audit_jsonl, verify_jsonl};
pub use keys::{KeyId, Keyring, MasterKey};

/// The SQLite file name inside a data directory.
pub const DB_FILE_NAME: &str = "switchboard.db";

/// Which database a [`SqlStore`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// An SQLite file.
    Sqlite,
    /// A PostgreSQL database.
    Postgres,
}

/// Tuning for [`SqlStore::open_with`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StoreOptions {
    /// PostgreSQL: the pool size. SQLite: the number of reader connections (there is one
    /// writer). Default 8.
    pub max_connections: u32,
    /// PostgreSQL: the schema to use (created when missing), e.g. one per deployment or per
    /// test. Default: the server's `search_path`.
    pub schema: Option<String>,
    /// SQLite: how long a writer waits for another process's lock. Default 10 s.
    pub busy_timeout: Duration,
    /// How long to wait for a free connection. Default 30 s.
    pub acquire_timeout: Duration,
    /// SQLite: `synchronous = FULL` (survives power loss) instead of `NORMAL` (survives
    /// process crashes, faster). Default `false`.
    pub sqlite_synchronous_full: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 8,
            schema: None,
            busy_timeout: Duration::from_secs(10),
            acquire_timeout: Duration::from_secs(30),
            sqlite_synchronous_full: false,
        }
    }
}

impl StoreOptions {
    /// Sets [`StoreOptions::max_connections`].
    pub fn with_max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }

    /// Sets [`StoreOptions::schema`]: lowercase letters, digits and `_`, starting with a
    /// letter, at most 63 bytes.
    pub fn with_schema(mut self, schema: impl Into<String>) -> Result<Self> {
        let s = schema.into();
        let ok = !s.is_empty()
            && s.len() <= 63
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok {
            return Err(Error::invalid(format!(
                "schema name {s:?} must be lowercase letters, digits and _, starting with a letter, at most 63 bytes"
            )));
        }
        self.schema = Some(s);
        Ok(self)
    }

    /// Sets [`StoreOptions::busy_timeout`].
    pub fn with_busy_timeout(mut self, d: Duration) -> Self {
        self.busy_timeout = d;
        self
    }

    /// Sets [`StoreOptions::acquire_timeout`].
    pub fn with_acquire_timeout(mut self, d: Duration) -> Self {
        self.acquire_timeout = d;
        self
    }

    /// Sets [`StoreOptions::sqlite_synchronous_full`].
    pub fn with_sqlite_synchronous_full(mut self, full: bool) -> Self {
        self.sqlite_synchronous_full = full;
        self
    }
}

/// What [`SqlStore::prune_queues`] deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PruneReport {
    /// Processed inbox events deleted (their event ids no longer deduplicate).
    pub inbox: u64,
    /// Finished (done or failed) deliveries deleted.
    pub outbox: u64,
}

enum Db {
    Sqlite(sql::sqlite::Backend),
    Postgres(sql::postgres::Backend),
}

struct Inner {
    db: Db,
    keyring: Arc<Keyring>,
}

/// The Switchboard store on SQLite or PostgreSQL. Cheap to clone (shares its pools);
/// implements every core storage trait, hence [`Store`](switchboard_core::Store).
#[derive(Clone)]
pub struct SqlStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlStore")
            .field("backend", &self.backend())
            .field("key", self.inner.keyring.current().id())
            .finish()
    }
}

fn is_postgres_url(target: &str) -> bool {
    target.starts_with("postgres://") || target.starts_with("postgresql://")
}

fn sqlite_path(target: &str) -> Result<PathBuf> {
    let path = match target.strip_prefix("sqlite:") {
        Some(rest) => {
            let rest = rest.strip_prefix("//").unwrap_or(rest);
            rest.split('?').next().unwrap_or(rest)
        }
        None => target,
    };
    if path.is_empty() || path.contains(":memory:") || path.starts_with("file::memory") {
        return Err(Error::invalid(
            "an in-memory SQLite database is not supported: give a file path (a temporary directory in tests)",
        ));
    }
    Ok(PathBuf::from(path))
}

impl SqlStore {
    /// Opens a store: `postgres://…`/`postgresql://…` selects PostgreSQL; `sqlite://PATH`,
    /// `sqlite:PATH` or a plain path selects SQLite (the file is created on first run).
    /// Migrations are applied.
    pub async fn open(target: &str, keyring: impl Into<Keyring>) -> Result<SqlStore> {
        SqlStore::open_with(target, keyring, StoreOptions::default()).await
    }

    /// [`SqlStore::open`] with options.
    pub async fn open_with(
        target: &str,
        keyring: impl Into<Keyring>,
        options: StoreOptions,
    ) -> Result<SqlStore> {
        let keyring = Arc::new(keyring.into());
        let db = if is_postgres_url(target) {
            Db::Postgres(sql::postgres::connect(target, keyring.clone(), &options).await?)
        } else {
            let path = sqlite_path(target)?;
            Db::Sqlite(sql::sqlite::connect(&path, keyring.clone(), &options).await?)
        };
        Ok(SqlStore {
            inner: Arc::new(Inner { db, keyring }),
        })
    }

    /// Opens (creating on first run) the SQLite database at `path`.
    pub async fn sqlite(path: impl AsRef<Path>, keyring: impl Into<Keyring>) -> Result<SqlStore> {
        let path = path.as_ref();
        let target = path
            .to_str()
            .ok_or_else(|| Error::invalid("the database path is not valid UTF-8"))?;
        SqlStore::open(target, keyring).await
    }

    /// Connects to PostgreSQL at `url`.
    pub async fn postgres(url: &str, keyring: impl Into<Keyring>) -> Result<SqlStore> {
        if !is_postgres_url(url) {
            return Err(Error::invalid(
                "a PostgreSQL URL starts with postgres:// or postgresql://",
            ));
        }
        SqlStore::open(url, keyring).await
    }

    /// The default deployment: the SQLite file [`DB_FILE_NAME`] in `data_dir` with the
    /// keyring of [`Keyring::load`] (the environment, else the data directory's key file).
    pub async fn open_data_dir(data_dir: &Path) -> Result<SqlStore> {
        let keyring = Keyring::load(data_dir)?;
        SqlStore::sqlite(data_dir.join(DB_FILE_NAME), keyring).await
    }

    /// Which database this is.
    pub fn backend(&self) -> BackendKind {
        match self.inner.db {
            Db::Sqlite(_) => BackendKind::Sqlite,
            Db::Postgres(_) => BackendKind::Postgres,
        }
    }

    /// The keyring sealing and opening secrets.
    pub fn keyring(&self) -> &Keyring {
        &self.inner.keyring
    }

    /// How many sealed values each master key holds (credentials, secrets and subscription
    /// states). After [`SecretStore::reseal_all`] only the current key should appear; a
    /// retired key absent here can be deleted.
    pub async fn sealed_key_usage(&self) -> Result<BTreeMap<KeyId, u64>> {
        match &self.inner.db {
            Db::Sqlite(b) => b.sealed_key_usage().await,
            Db::Postgres(b) => b.sealed_key_usage().await,
        }
    }

    /// Deletes processed inbox events and finished deliveries older than `before`. Keep at
    /// least as long as platforms redeliver events (a day is ample): pruned event ids no
    /// longer deduplicate.
    pub async fn prune_queues(&self, before: OffsetDateTime) -> Result<PruneReport> {
        match &self.inner.db {
            Db::Sqlite(b) => b.prune_queues(before).await,
            Db::Postgres(b) => b.prune_queues(before).await,
        }
    }

    /// Closes the pools (waits for connections in use to be returned).
    pub async fn close(&self) {
        match &self.inner.db {
            Db::Sqlite(b) => {
                b.read.close().await;
                b.write.close().await;
            }
            Db::Postgres(b) => b.write.close().await,
        }
    }
}

/// Implements a core trait for `SqlStore` by forwarding each method to the backend.
macro_rules! delegate {
    ($trait:ident { $( fn $name:ident(&self $(, $arg:ident : $ty:ty)* ) -> $ret:ty; )* }) => {
        #[async_trait]
        impl $trait for SqlStore {
            $(
                async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    match &self.inner.db {
                        Db::Sqlite(b) => b.$name($($arg),*).await,
                        Db::Postgres(b) => b.$name($($arg),*).await,
                    }
                }
            )*
        }
    };
}

delegate!(OrgStore {
    fn create_org(&self, name: &str) -> Result<Organization>;
    fn get_org(&self, org: &OrgId) -> Result<Option<Organization>>;
    fn list_orgs(&self) -> Result<Vec<Organization>>;
    fn create_admin_token(&self, org: &OrgId, name: &str) -> Result<SecretString>;
    fn authenticate_admin_token(&self, token: &SecretString) -> Result<Option<AdminPrincipal>>;
    fn revoke_admin_token(&self, org: &OrgId, name: &str) -> Result<()>;
});

delegate!(ConnectionStore {
    fn put_connection(&self, connection: &Connection) -> Result<()>;
    fn get_connection(&self, org: &OrgId, id: &ConnectionId) -> Result<Option<Connection>>;
    fn list_connections(&self, org: &OrgId) -> Result<Vec<Connection>>;
    fn set_connection_health(&self, org: &OrgId, id: &ConnectionId, health: ConnectionHealth) -> Result<()>;
    fn put_credentials(&self, org: &OrgId, id: &ConnectionId, credentials: &Credentials) -> Result<()>;
    fn get_credentials(&self, org: &OrgId, id: &ConnectionId) -> Result<Option<Credentials>>;
    fn migrate_connection(
        &self,
        org: &OrgId,
        id: &ConnectionId,
        account: &AccountIdentity,
        credentials: &Credentials,
        audit: NewAuditEntry
    ) -> Result<Connection>;
    fn delete_connection(&self, org: &OrgId, id: &ConnectionId) -> Result<()>;
});

delegate!(SecretStore {
    fn put_secret(&self, org: &OrgId, name: &str, value: &SecretString) -> Result<()>;
    fn get_secret(&self, org: &OrgId, name: &str) -> Result<Option<SecretString>>;
    fn reseal_all(&self) -> Result<u64>;
});

delegate!(DirectoryStore {
    fn begin_import(&self, org: &OrgId, connection: &ConnectionId) -> Result<ImportRun>;
    fn upsert_teams(&self, org: &OrgId, connection: &ConnectionId, run: ImportRun, teams: &[Team]) -> Result<()>;
    fn upsert_channels(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
        run: ImportRun,
        channels: &[Channel]
    ) -> Result<()>;
    fn upsert_users(&self, org: &OrgId, connection: &ConnectionId, run: ImportRun, users: &[User]) -> Result<()>;
    fn upsert_memberships(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
        run: ImportRun,
        members: &[Membership]
    ) -> Result<()>;
    fn finish_team_import(&self, org: &OrgId, connection: &ConnectionId, run: ImportRun, team: &TeamId) -> Result<()>;
    fn finish_user_import(&self, org: &OrgId, connection: &ConnectionId, run: ImportRun) -> Result<()>;
    fn list_teams(&self, org: &OrgId, connection: &ConnectionId) -> Result<Vec<Team>>;
    fn list_channels(
        &self,
        org: &OrgId,
        connection: Option<&ConnectionId>,
        after: Option<&ChannelRef>,
        limit: usize
    ) -> Result<Vec<StoredChannel>>;
    fn get_channel(&self, org: &OrgId, reference: &ChannelRef) -> Result<Option<StoredChannel>>;
    fn list_users(
        &self,
        org: &OrgId,
        connection: Option<&ConnectionId>,
        after: Option<(PlatformKind, &UserId)>,
        limit: usize
    ) -> Result<Vec<StoredUser>>;
    fn get_user(&self, org: &OrgId, platform: PlatformKind, user: &UserId) -> Result<Option<StoredUser>>;
    fn list_memberships(&self, org: &OrgId, connection: &ConnectionId, team: &TeamId) -> Result<Vec<Membership>>;
    fn counterpart(
        &self,
        org: &OrgId,
        platform: PlatformKind,
        user: &UserId,
        target: PlatformKind
    ) -> Result<Option<UserId>>;
    fn link_identities(&self, org: &OrgId, a: (PlatformKind, &UserId), b: (PlatformKind, &UserId)) -> Result<()>;
    fn unlink_identity(&self, org: &OrgId, user: (PlatformKind, &UserId)) -> Result<()>;
});

delegate!(UniversalChannelStore {
    fn create_universal_channel(&self, channel: &UniversalChannel) -> Result<()>;
    fn get_universal_channel(&self, org: &OrgId, id: &UniversalChannelId) -> Result<Option<UniversalChannel>>;
    fn list_universal_channels(&self, org: &OrgId) -> Result<Vec<UniversalChannel>>;
    fn find_universal_channel(&self, org: &OrgId, channel: &ChannelRef) -> Result<Option<UniversalChannel>>;
    fn delete_universal_channel(&self, org: &OrgId, id: &UniversalChannelId) -> Result<()>;
});

delegate!(MessageMapStore {
    fn put_message_copy(&self, org: &OrgId, copy: &MessageCopy) -> Result<()>;
    fn find_message_copy(&self, org: &OrgId, channel: &ChannelRef, message: &MessageId) -> Result<Option<MessageCopy>>;
    fn message_copies(&self, org: &OrgId, universal: &UniversalMessageId) -> Result<Vec<MessageCopy>>;
    fn record_message_edit(
        &self,
        org: &OrgId,
        channel: &ChannelRef,
        message: &MessageId,
        edited_at: OffsetDateTime
    ) -> Result<bool>;
});

delegate!(SyncStateStore {
    fn put_cursor(&self, org: &OrgId, connection: &ConnectionId, key: &CursorKey, value: &str) -> Result<()>;
    fn get_cursor(&self, org: &OrgId, connection: &ConnectionId, key: &CursorKey) -> Result<Option<String>>;
    fn put_subscription(&self, org: &OrgId, subscription: &Subscription) -> Result<()>;
    fn get_subscription(&self, id: &SubscriptionId) -> Result<Option<(OrgId, Subscription)>>;
    fn list_subscriptions(&self, org: &OrgId) -> Result<Vec<Subscription>>;
    fn delete_subscription(&self, org: &OrgId, id: &SubscriptionId) -> Result<()>;
    fn put_message_snapshot(
        &self,
        org: &OrgId,
        channel: &ChannelRef,
        message: &MessageId,
        snapshot: &MessageSnapshot
    ) -> Result<()>;
    fn get_message_snapshot(
        &self,
        org: &OrgId,
        channel: &ChannelRef,
        message: &MessageId
    ) -> Result<Option<MessageSnapshot>>;
    fn delete_message_snapshot(&self, org: &OrgId, channel: &ChannelRef, message: &MessageId) -> Result<()>;
});

delegate!(QueueStore {
    fn inbox_accept(&self, org: &OrgId, connection: &ConnectionId, item: &Inbound) -> Result<InboxOutcome>;
    fn inbox_accept_batch(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
        items: &[Inbound]
    ) -> Result<Vec<InboxOutcome>>;
    fn inbox_lease(&self, worker: &WorkerId, max: usize, lease: Duration) -> Result<Vec<InboxItem>>;
    fn inbox_complete(&self, worker: &WorkerId, id: InboxId, deliveries: &[NewDelivery]) -> Result<()>;
    fn outbox_enqueue(&self, deliveries: &[NewDelivery]) -> Result<()>;
    fn outbox_lease(&self, worker: &WorkerId, max: usize, lease: Duration) -> Result<Vec<Delivery>>;
    fn outbox_complete(&self, worker: &WorkerId, id: DeliveryId) -> Result<()>;
    fn outbox_retry(
        &self,
        worker: &WorkerId,
        id: DeliveryId,
        next_attempt_at: OffsetDateTime,
        error: &str
    ) -> Result<()>;
    fn outbox_fail(&self, worker: &WorkerId, id: DeliveryId, error: &str) -> Result<()>;
    fn outbox_pending(&self, org: &OrgId) -> Result<u64>;
});

delegate!(AuditStore {
    fn append_audit(&self, org: &OrgId, entry: NewAuditEntry) -> Result<AuditEntry>;
    fn list_audit(&self, org: &OrgId, after: u64, limit: usize) -> Result<Vec<AuditEntry>>;
    fn verify_audit(&self, org: &OrgId) -> Result<AuditVerification>;
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_select_the_backend() {
        assert!(is_postgres_url("postgres://u@h/db"));
        assert!(is_postgres_url("postgresql://u@h/db"));
        assert!(!is_postgres_url("sqlite://x.db"));
        assert_eq!(
            sqlite_path("sqlite://data/x.db").unwrap(),
            PathBuf::from("data/x.db")
        );
        assert_eq!(
            sqlite_path("sqlite:x.db?mode=rwc").unwrap(),
            PathBuf::from("x.db")
        );
        assert_eq!(
            sqlite_path("/tmp/x.db").unwrap(),
            PathBuf::from("/tmp/x.db")
        );
        assert!(sqlite_path("sqlite::memory:").is_err());
        assert!(sqlite_path("").is_err());
    }

    #[test]
    fn schema_names_are_validated() {
        assert!(StoreOptions::default().with_schema("sb_test_1").is_ok());
        for bad in ["", "1abc", "Abc", "a-b", "a\"b", &"a".repeat(64)] {
            assert!(StoreOptions::default().with_schema(bad).is_err(), "{bad:?}");
        }
    }
}
