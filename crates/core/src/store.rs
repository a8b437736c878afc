//! The storage traits. `switchboard-storage` implements them on SQLite and PostgreSQL, and
//! every backend passes one shared conformance suite.
//!
//! Invariants every implementation keeps:
//! - Everything is scoped by [`OrgId`]: a call for org A never reads or changes org B's rows.
//!   The exceptions read across organizations by design and say so: [`OrgStore::list_orgs`],
//!   [`OrgStore::authenticate_admin_token`], [`SyncStateStore::get_subscription`], the
//!   queue leases ([`QueueStore::inbox_lease`], [`QueueStore::outbox_lease`]) and
//!   [`SecretStore::reseal_all`].
//! - Writes are transactional: bad input is refused with `InvalidInput` and changes nothing.
//! - Secrets ([`Credentials`], [`SecretStore`] values) are sealed with an AEAD before they
//!   touch the database; the database alone reveals none.
//! - The audit log is append-only and hash-chained.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::SecretString;
use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::ids::*;
use crate::inbound::{Inbound, MessageSnapshot};
use crate::message::{Attachment, Emoji, PortableMessage};
use crate::model::*;
use crate::platform::{MessageRef, PostingIdentity, ReactionChange};

/// The longest page a paged listing hands out ([`DirectoryStore::list_users`],
/// [`DirectoryStore::list_channels`]); a larger `limit` is refused with `InvalidInput`.
pub const MAX_PAGE_SIZE: usize = 1000;

/// The most items one [`QueueStore::inbox_accept_batch`] call takes.
pub const MAX_INBOX_BATCH: usize = 1000;

/// The id of an inbox row (increasing in acceptance order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InboxId(pub i64);

/// The id of an outbox row (increasing in enqueue order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeliveryId(pub i64);

impl fmt::Display for InboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The longest [`WorkerId`], in bytes.
pub const MAX_WORKER_ID_LEN: usize = 256;

/// The name a worker leases queue rows under (e.g. `host-1/relay-3`): non-empty, at most
/// [`MAX_WORKER_ID_LEN`] bytes, no control characters. Only the holder of a lease may
/// complete, retry or fail the row.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct WorkerId(String);

impl WorkerId {
    /// Validates and wraps `name`.
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        if name.trim().is_empty() {
            return Err(Error::invalid("worker id must not be empty"));
        }
        if name.len() > MAX_WORKER_ID_LEN {
            return Err(Error::invalid(format!(
                "worker id is {} bytes long; at most {MAX_WORKER_ID_LEN} are allowed",
                name.len()
            )));
        }
        if name.chars().any(char::is_control) {
            return Err(Error::invalid(
                "worker id must not contain control characters",
            ));
        }
        Ok(WorkerId(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WorkerId({:?})", self.0)
    }
}

impl FromStr for WorkerId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        WorkerId::new(s)
    }
}

impl<'de> Deserialize<'de> for WorkerId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        WorkerId::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// What a sync cursor is for. Stored under a stable string ([`CursorKey::encode`]:
/// `delta:<channel ref>`, `history:<channel ref>`), so keys written now are found later.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CursorKey {
    /// The change-tracking link of a channel's messages (Graph `deltaLink`).
    Delta {
        /// The channel.
        channel: ChannelRef,
    },
    /// Where catch-up through [`History`](crate::History) resumes for a channel (a
    /// [`HistoryCursor`](crate::HistoryCursor), e.g. a Slack `ts`).
    History {
        /// The channel.
        channel: ChannelRef,
    },
}

impl CursorKey {
    /// The channel the cursor belongs to.
    pub fn channel(&self) -> &ChannelRef {
        match self {
            CursorKey::Delta { channel } | CursorKey::History { channel } => channel,
        }
    }

    /// The stable string the key is stored under.
    pub fn encode(&self) -> String {
        match self {
            CursorKey::Delta { channel } => format!("delta:{channel}"),
            CursorKey::History { channel } => format!("history:{channel}"),
        }
    }
}

impl fmt::Display for CursorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

impl FromStr for CursorKey {
    type Err = Error;
    /// Parses [`CursorKey::encode`]'s form; anything else is `InvalidInput`.
    fn from_str(s: &str) -> Result<Self> {
        let (kind, channel) = s
            .split_once(':')
            .ok_or_else(|| Error::invalid(format!("cursor key {s:?} has no kind prefix")))?;
        let channel: ChannelRef = channel.parse()?;
        match kind {
            "delta" => Ok(CursorKey::Delta { channel }),
            "history" => Ok(CursorKey::History { channel }),
            other => Err(Error::invalid(format!(
                "cursor key kind {other:?} is unknown (expected delta or history)"
            ))),
        }
    }
}

/// An organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organization {
    /// Its id.
    pub id: OrgId,
    /// Its name.
    pub name: String,
}

/// Who an admin API token belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminPrincipal {
    /// The organization the token is scoped to.
    pub org: OrgId,
    /// The token's name (shown in the audit log).
    pub name: String,
}

/// An admin token as listed: its name and lifetime, never the token or its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminTokenInfo {
    /// The token's name (several tokens may share one; revoking a name revokes them all).
    pub name: String,
    /// When it was issued.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it was revoked; `None` while it is live.
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

/// Organizations and their admin API tokens (stored hashed).
#[async_trait]
pub trait OrgStore: Send + Sync {
    /// Creates an organization.
    async fn create_org(&self, name: &str) -> Result<Organization>;
    /// Reads one.
    async fn get_org(&self, org: &OrgId) -> Result<Option<Organization>>;
    /// Every organization, oldest first (a server or CLI finds the organization it runs for).
    async fn list_orgs(&self) -> Result<Vec<Organization>>;
    /// Issues a new admin token for `org`; the plaintext is returned once, only a hash is kept.
    async fn create_admin_token(&self, org: &OrgId, name: &str) -> Result<SecretString>;
    /// Resolves a presented token (constant-time hash comparison); `None` when unknown or revoked.
    async fn authenticate_admin_token(
        &self,
        token: &SecretString,
    ) -> Result<Option<AdminPrincipal>>;
    /// Revokes every token of `org` named `name`. `NotFound` when `org` has no live token of
    /// that name.
    async fn revoke_admin_token(&self, org: &OrgId, name: &str) -> Result<()>;
    /// The admin tokens of `org` (live and revoked), oldest first. Never the tokens
    /// themselves: only a hash is kept.
    async fn list_admin_tokens(&self, org: &OrgId) -> Result<Vec<AdminTokenInfo>>;
}

/// Connected platforms and their sealed credentials.
#[async_trait]
pub trait ConnectionStore: Send + Sync {
    /// Inserts or replaces a connection (same id).
    async fn put_connection(&self, connection: &Connection) -> Result<()>;
    /// Reads one.
    async fn get_connection(&self, org: &OrgId, id: &ConnectionId) -> Result<Option<Connection>>;
    /// Lists an organization's connections.
    async fn list_connections(&self, org: &OrgId) -> Result<Vec<Connection>>;
    /// Sets the health.
    async fn set_connection_health(
        &self,
        org: &OrgId,
        id: &ConnectionId,
        health: ConnectionHealth,
    ) -> Result<()>;
    /// Seals and stores the credentials (replacing the previous ones).
    async fn put_credentials(
        &self,
        org: &OrgId,
        id: &ConnectionId,
        credentials: &Credentials,
    ) -> Result<()>;
    /// Unseals the credentials.
    async fn get_credentials(&self, org: &OrgId, id: &ConnectionId) -> Result<Option<Credentials>>;
    /// Moves a connection onto another account in place, atomically: new identity, new
    /// credentials, health reset, an audit entry appended. Universal channels, queued
    /// deliveries and maps keep pointing at the same connection id.
    async fn migrate_connection(
        &self,
        org: &OrgId,
        id: &ConnectionId,
        account: &AccountIdentity,
        credentials: &Credentials,
        audit: NewAuditEntry,
    ) -> Result<Connection>;
    /// Deletes a connection and its credentials, with what was imported or queued through it.
    /// `NotFound` when absent; `Conflict` while a universal channel has an endpoint on it.
    async fn delete_connection(&self, org: &OrgId, id: &ConnectionId) -> Result<()>;
}

/// Other sealed secrets (OAuth client secrets, Slack signing secrets), by name.
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// Seals and stores a secret under `name`.
    async fn put_secret(&self, org: &OrgId, name: &str, value: &SecretString) -> Result<()>;
    /// Unseals it.
    async fn get_secret(&self, org: &OrgId, name: &str) -> Result<Option<SecretString>>;
    /// Re-seals every secret under the current master key; returns how many.
    async fn reseal_all(&self) -> Result<u64>;
}

/// A stored channel with where it came from and whether it still exists upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredChannel {
    /// The connection it was imported through.
    pub connection: ConnectionId,
    /// Its reference (`slack:T/C`).
    pub reference: ChannelRef,
    /// The channel.
    pub channel: Channel,
    /// Gone upstream since the last import of its team.
    pub removed: bool,
}

/// A stored user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredUser {
    /// The connection it was imported through.
    pub connection: ConnectionId,
    /// Its platform.
    pub platform: PlatformKind,
    /// The user.
    pub user: User,
    /// Gone upstream since the last user import.
    pub removed: bool,
}

/// A manual identity link: two users of different platforms an admin declared to be one
/// person (overriding email matching for both).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityLink {
    /// One side: the user whose platform sorts first ([`PlatformKind::as_str`]).
    pub a: (PlatformKind, UserId),
    /// The other side.
    pub b: (PlatformKind, UserId),
    /// When the link was made.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// An identifier for one import run: rows not touched by a finished run are marked removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportRun(pub i64);

/// Imported teams, channels, users, memberships and the cross-platform identity map.
/// Imports are upserts: importing the same data twice changes nothing.
#[async_trait]
pub trait DirectoryStore: Send + Sync {
    /// Starts an import run for a connection.
    async fn begin_import(&self, org: &OrgId, connection: &ConnectionId) -> Result<ImportRun>;
    /// Upserts teams.
    async fn upsert_teams(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
        run: ImportRun,
        teams: &[Team],
    ) -> Result<()>;
    /// Upserts channels.
    async fn upsert_channels(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
        run: ImportRun,
        channels: &[Channel],
    ) -> Result<()>;
    /// Upserts users.
    async fn upsert_users(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
        run: ImportRun,
        users: &[User],
    ) -> Result<()>;
    /// Upserts memberships.
    async fn upsert_memberships(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
        run: ImportRun,
        members: &[Membership],
    ) -> Result<()>;
    /// Marks channels and memberships of `team` that `run` did not see as removed.
    async fn finish_team_import(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
        run: ImportRun,
        team: &TeamId,
    ) -> Result<()>;
    /// Marks users of the connection that `run` did not see as removed.
    async fn finish_user_import(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
        run: ImportRun,
    ) -> Result<()>;
    /// Teams of a connection.
    async fn list_teams(&self, org: &OrgId, connection: &ConnectionId) -> Result<Vec<Team>>;
    /// One page of the organization's channels (optionally one connection's), removed ones
    /// included, ordered by reference (platform, team, channel): at most `limit` (at most
    /// [`MAX_PAGE_SIZE`], else `InvalidInput`), starting after `after` (the last reference of
    /// the previous page). A page shorter than `limit` is the last.
    async fn list_channels(
        &self,
        org: &OrgId,
        connection: Option<&ConnectionId>,
        after: Option<&ChannelRef>,
        limit: usize,
    ) -> Result<Vec<StoredChannel>>;
    /// One channel by reference.
    async fn get_channel(
        &self,
        org: &OrgId,
        reference: &ChannelRef,
    ) -> Result<Option<StoredChannel>>;
    /// One page of the organization's users (optionally one connection's), removed ones
    /// included, ordered by (platform, user id): at most `limit` (at most [`MAX_PAGE_SIZE`],
    /// else `InvalidInput`), starting after `after` (the last user of the previous page). A
    /// page shorter than `limit` is the last.
    async fn list_users(
        &self,
        org: &OrgId,
        connection: Option<&ConnectionId>,
        after: Option<(PlatformKind, &UserId)>,
        limit: usize,
    ) -> Result<Vec<StoredUser>>;
    /// One user.
    async fn get_user(
        &self,
        org: &OrgId,
        platform: PlatformKind,
        user: &UserId,
    ) -> Result<Option<StoredUser>>;
    /// Members of a team.
    async fn list_memberships(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
        team: &TeamId,
    ) -> Result<Vec<Membership>>;
    /// The counterpart of `user` on `target`: a manual link first, else the live user with
    /// the same verified email (case-insensitive) that an admin has not separated from `user`
    /// ([`DirectoryStore::separate_identities`]).
    async fn counterpart(
        &self,
        org: &OrgId,
        platform: PlatformKind,
        user: &UserId,
        target: PlatformKind,
    ) -> Result<Option<UserId>>;
    /// Manually links two users (overrides email matching for both; a separation between
    /// the two is dropped).
    async fn link_identities(
        &self,
        org: &OrgId,
        a: (PlatformKind, &UserId),
        b: (PlatformKind, &UserId),
    ) -> Result<()>;
    /// Removes the manual links and separations of `user` (both directions), so email
    /// matching applies to it again. `NotFound` when it had none.
    async fn unlink_identity(&self, org: &OrgId, user: (PlatformKind, &UserId)) -> Result<()>;
    /// Records that two users of different platforms are not the same person: email matching
    /// never pairs them, and a manual link between the two is removed. Idempotent.
    /// `InvalidInput` for two users of one platform; `NotFound` when either is not in the
    /// directory of `org`.
    async fn separate_identities(
        &self,
        org: &OrgId,
        a: (PlatformKind, &UserId),
        b: (PlatformKind, &UserId),
    ) -> Result<()>;
    /// Every separation of the organization, each pair once (`a` on the platform whose name
    /// sorts first), ordered by `a`.
    async fn list_identity_separations(&self, org: &OrgId) -> Result<Vec<IdentityLink>>;
    /// Every manual link of the organization, each pair once (`a` on the platform whose
    /// name sorts first), ordered by `a`. Links are stored both ways by
    /// [`DirectoryStore::link_identities`]; a one-way row left by an older version is listed
    /// too, with its two sides in platform order.
    async fn list_identity_links(&self, org: &OrgId) -> Result<Vec<IdentityLink>>;
}

/// Universal channels.
#[async_trait]
pub trait UniversalChannelStore: Send + Sync {
    /// Stores a new universal channel. `Conflict` when one of its channels is already linked.
    async fn create_universal_channel(&self, channel: &UniversalChannel) -> Result<()>;
    /// Reads one.
    async fn get_universal_channel(
        &self,
        org: &OrgId,
        id: &UniversalChannelId,
    ) -> Result<Option<UniversalChannel>>;
    /// Lists an organization's universal channels.
    async fn list_universal_channels(&self, org: &OrgId) -> Result<Vec<UniversalChannel>>;
    /// The universal channel a platform channel belongs to.
    async fn find_universal_channel(
        &self,
        org: &OrgId,
        channel: &ChannelRef,
    ) -> Result<Option<UniversalChannel>>;
    /// Unlinks. `NotFound` when absent.
    async fn delete_universal_channel(&self, org: &OrgId, id: &UniversalChannelId) -> Result<()>;
}

/// One platform message belonging to a universal message: the origin itself, or one part of
/// a copy Switchboard posted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageCopy {
    /// The universal message it belongs to.
    pub universal: UniversalMessageId,
    /// Where.
    pub channel: ChannelRef,
    /// Its platform id.
    pub message: MessageId,
    /// Its thread root on that platform, when a reply.
    pub thread_root: Option<MessageId>,
    /// Which identity Switchboard posted it as; `None` for the origin message (a user's).
    /// Edits, deletes and reactions of the copy go out as this identity.
    pub posted_by: Option<PostingIdentity>,
    /// The platform account whose token posted it: for a copy posted as
    /// [`PostingIdentity::ServiceAccount`], the connection's account at the time (its
    /// [`AccountIdentity::user_id`](crate::AccountIdentity)), which stops being the
    /// connection's account when the connection is migrated; for a linked user's copy, that
    /// user. `None` for the origin message and when it is not known (a copy recorded before
    /// this was kept, in a channel no longer linked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub posted_by_account: Option<UserId>,
    /// Which part of the universal message it is in its channel: 0 for the first, 1, 2, …
    /// for further parts (a split message, Slack file shares), in posting order.
    pub part: u32,
}

/// The message map: universal message ↔ per-platform ids, with who posted each copy. Also the
/// persisted layer of loop prevention (`posted_by`).
#[async_trait]
pub trait MessageMapStore: Send + Sync {
    /// Records a copy. Idempotent for the same (channel, message) with the same universal
    /// message and part; `Conflict` when (channel, message) is recorded differently, or when
    /// another message is already that part of the universal message in that channel.
    async fn put_message_copy(&self, org: &OrgId, copy: &MessageCopy) -> Result<()>;

    /// Records `copy` as its part of the universal message in its channel, replacing the
    /// message that held that part before, which the map then forgets (a note the previous
    /// account of a migrated connection posted, and can no longer edit, followed by a new one).
    /// `Conflict` when `copy`'s (channel, message) is already recorded as something else.
    async fn replace_message_copy(&self, org: &OrgId, copy: &MessageCopy) -> Result<()>;
    /// The copy of a platform message.
    async fn find_message_copy(
        &self,
        org: &OrgId,
        channel: &ChannelRef,
        message: &MessageId,
    ) -> Result<Option<MessageCopy>>;
    /// The copies among `messages` of `channel` that the map knows (any order; one lookup
    /// for a batch of events).
    async fn find_message_copies(
        &self,
        org: &OrgId,
        channel: &ChannelRef,
        messages: &[MessageId],
    ) -> Result<Vec<MessageCopy>>;
    /// Every message of a universal message: the origin first, then the copies by channel
    /// (platform, team, channel), each channel's parts in order.
    async fn message_copies(
        &self,
        org: &OrgId,
        universal: &UniversalMessageId,
    ) -> Result<Vec<MessageCopy>>;
    /// How many copies Switchboard posted as the connection's own account
    /// ([`PostingIdentity::ServiceAccount`]) while that account was `account`, in the channels
    /// linked through `connection` (every part counts: each is a platform message). After a
    /// migration, the copies the previous account posted (which only it may edit or delete).
    async fn count_copies_by_account(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
        account: &UserId,
    ) -> Result<u64>;
    /// Records the last edit of a platform message (the platform's edit time). Returns `true`
    /// when `edited_at` is later than the last edit recorded for it (a new edit to relay),
    /// `false` when an edit at or after `edited_at` was already recorded (a duplicate or
    /// out-of-order notification). `NotFound` when no copy of (channel, message) is recorded.
    async fn record_message_edit(
        &self,
        org: &OrgId,
        channel: &ChannelRef,
        message: &MessageId,
        edited_at: OffsetDateTime,
    ) -> Result<bool>;
    /// Records a fingerprint of the content Switchboard last wrote to one of its copies (a
    /// copy posted as a linked user, whose own later edits are relayed), so an edit
    /// notification carrying that same content is known as the echo of our write.
    /// `InvalidInput` for an empty or overlong fingerprint; `NotFound` when no copy of
    /// (channel, message) is recorded.
    async fn set_written_fingerprint(
        &self,
        org: &OrgId,
        channel: &ChannelRef,
        message: &MessageId,
        fingerprint: &str,
    ) -> Result<()>;
    /// The fingerprint last recorded by [`MessageMapStore::set_written_fingerprint`].
    async fn written_fingerprint(
        &self,
        org: &OrgId,
        channel: &ChannelRef,
        message: &MessageId,
    ) -> Result<Option<String>>;
}

/// Per-connection sync state: delta links, cursors, subscriptions, and the last-seen
/// snapshot of messages (to tell what a Graph "updated" notification changed).
#[async_trait]
pub trait SyncStateStore: Send + Sync {
    /// Stores a cursor (Graph deltaLink, Slack history `ts`) under `key`. `InvalidInput` when
    /// the key's channel is not on the connection's platform.
    async fn put_cursor(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
        key: &CursorKey,
        value: &str,
    ) -> Result<()>;
    /// Reads it.
    async fn get_cursor(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
        key: &CursorKey,
    ) -> Result<Option<String>>;
    /// Stores or replaces a change-notification subscription.
    async fn put_subscription(&self, org: &OrgId, subscription: &Subscription) -> Result<()>;
    /// Finds a subscription by its platform id (for checking `clientState`). Reads across
    /// organizations by design: a notification names only the subscription.
    async fn get_subscription(&self, id: &SubscriptionId) -> Result<Option<(OrgId, Subscription)>>;
    /// Subscriptions of an organization.
    async fn list_subscriptions(&self, org: &OrgId) -> Result<Vec<Subscription>>;
    /// Removes one (nothing happens when it is absent).
    async fn delete_subscription(&self, org: &OrgId, id: &SubscriptionId) -> Result<()>;
    /// Remembers what was last seen of `message` in `channel` (replacing the previous
    /// snapshot).
    async fn put_message_snapshot(
        &self,
        org: &OrgId,
        channel: &ChannelRef,
        message: &MessageId,
        snapshot: &MessageSnapshot,
    ) -> Result<()>;
    /// What was last seen of `message`, `None` when nothing was recorded.
    async fn get_message_snapshot(
        &self,
        org: &OrgId,
        channel: &ChannelRef,
        message: &MessageId,
    ) -> Result<Option<MessageSnapshot>>;
    /// Forgets the snapshot of `message` (nothing happens when there is none), e.g. when the
    /// resolver has nothing to keep for it.
    async fn delete_message_snapshot(
        &self,
        org: &OrgId,
        channel: &ChannelRef,
        message: &MessageId,
    ) -> Result<()>;
}

/// A Graph change-notification subscription. `client_state` is sealed at rest.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// The platform's subscription id.
    pub id: SubscriptionId,
    /// The connection that owns it.
    pub connection: ConnectionId,
    /// The channel watched.
    pub channel: ChannelRef,
    /// The random secret the platform echoes in every notification.
    pub client_state: SecretString,
    /// When it expires unless renewed.
    pub expires_at: OffsetDateTime,
}

/// Whether [`QueueStore::inbox_accept`] stored an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InboxOutcome {
    /// Stored now.
    Accepted,
    /// Seen before (same platform and [`Inbound::dedupe_key`]), earlier or in the same batch:
    /// not stored again.
    Duplicate,
}

/// An accepted item waiting to be processed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxItem {
    /// Queue id.
    pub id: InboxId,
    /// The organization.
    pub org: OrgId,
    /// The connection that received it.
    pub connection: ConnectionId,
    /// What was received.
    pub item: Inbound,
    /// When the inbox stored it (the receiving server's clock).
    pub received_at: OffsetDateTime,
    /// Earlier leases of it that did not complete it: failed translations given back with
    /// [`QueueStore::inbox_retry`], or leases that ran out (0 the first time).
    #[serde(default)]
    pub attempts: u32,
}

/// What a delivery does on its target channel. Stored as JSON tagged by `job` under
/// [`DeliveryJob::FORMAT_VERSION`]; a row this version cannot decode (a newer version's job,
/// a corrupted row) is a clear `Storage` error and is set aside, never a panic.
///
/// Jobs name the universal message, not a platform message: the worker finds the target's
/// copies (every part, with who posted it) in the [`MessageMapStore`] when it runs, so an
/// edit queued before the post completed still reaches the copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "job", rename_all = "snake_case")]
#[non_exhaustive]
pub enum DeliveryJob {
    /// Post a copy of a message (recording every part posted as a [`MessageCopy`]).
    Post {
        /// The universal message it is a copy of.
        universal: UniversalMessageId,
        /// The origin message.
        origin: MessageRef,
        /// The content, mentions already mapped to the target platform.
        content: PortableMessage,
        /// The thread root on the target to reply under, when a reply there.
        reply_to: Option<MessageId>,
        /// Slack "also send to channel".
        broadcast: bool,
        /// Who to post as.
        post_as: PostingIdentity,
        /// Files of the origin to carry (fetched from the origin when the job runs).
        files: Vec<Attachment>,
    },
    /// Replace the content of every part of the target's copy.
    Edit {
        /// The universal message.
        universal: UniversalMessageId,
        /// The new content.
        content: PortableMessage,
    },
    /// Delete every part of the target's copy.
    Delete {
        /// The universal message.
        universal: UniversalMessageId,
    },
    /// Add or remove a reaction on the target's copy (its first part).
    React {
        /// The universal message.
        universal: UniversalMessageId,
        /// The emoji.
        emoji: Emoji,
        /// Add or remove.
        change: ReactionChange,
        /// Who reacted, on the origin platform (mapped to a posting identity when run).
        reactor: UserId,
    },
    /// Post a notice from Switchboard itself (membership changes, gaps in catch-up).
    Notice {
        /// The text.
        text: String,
    },
}

impl DeliveryJob {
    /// The format version stores write jobs under. Raised when a change to the job's JSON
    /// would not decode in an older version; stores refuse rows of a newer version with a
    /// clear error.
    pub const FORMAT_VERSION: u32 = 1;

    /// The universal message the job is about (`None` for a notice).
    pub fn universal(&self) -> Option<&UniversalMessageId> {
        match self {
            DeliveryJob::Post { universal, .. }
            | DeliveryJob::Edit { universal, .. }
            | DeliveryJob::Delete { universal }
            | DeliveryJob::React { universal, .. } => Some(universal),
            DeliveryJob::Notice { .. } => None,
        }
    }
}

/// A delivery to enqueue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewDelivery {
    /// The organization.
    pub org: OrgId,
    /// The connection to post through.
    pub connection: ConnectionId,
    /// The target channel: deliveries to one target are handed out in enqueue order, one at
    /// a time.
    pub target: ChannelRef,
    /// What to do.
    pub job: DeliveryJob,
}

/// A leased delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Queue id (increasing in enqueue order).
    pub id: DeliveryId,
    /// The organization.
    pub org: OrgId,
    /// The connection to post through.
    pub connection: ConnectionId,
    /// The target channel.
    pub target: ChannelRef,
    /// The job.
    pub job: DeliveryJob,
    /// Attempts made before this lease.
    pub attempts: u32,
}

/// The durable inbox (accepted items, deduplicated) and outbox (per-target deliveries with
/// attempts, next-attempt time and leases).
///
/// Leasing contract: a leased row is held by exactly one worker until completed, retried or
/// the lease expires (a crashed worker's rows come back). For the outbox, only the oldest
/// unfinished delivery of each target channel can be leased, so origin order is kept per
/// channel. Leasing reads across organizations by design (workers serve every org).
#[async_trait]
pub trait QueueStore: Send + Sync {
    /// Durably stores an item before it is acknowledged to the platform, deduplicating on
    /// [`Inbound::dedupe_key`] per platform (signals are never duplicates). `InvalidInput`
    /// when the item's channel is not on the connection's platform.
    async fn inbox_accept(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
        item: &Inbound,
    ) -> Result<InboxOutcome>;
    /// [`QueueStore::inbox_accept`] for a whole delivery (at most [`MAX_INBOX_BATCH`] items)
    /// in one transaction: one outcome per item, in order; a later item with the key of an
    /// earlier one is a `Duplicate`. Any invalid item refuses the batch and stores nothing.
    async fn inbox_accept_batch(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
        items: &[Inbound],
    ) -> Result<Vec<InboxOutcome>>;
    /// Leases up to `max` unprocessed items, oldest first. Items of one channel
    /// ([`Inbound::channel`]) are never split across workers: while an earlier unprocessed
    /// item of a channel is leased, later ones of that channel are not handed out (one lease
    /// may hold several, in order). Items without a channel (signals) are leased on their own.
    async fn inbox_lease(
        &self,
        worker: &WorkerId,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<InboxItem>>;
    /// Gives back items `worker` holds, not to be leased again for `delay` and without
    /// counting an attempt (the relay holds an event back so that an earlier one the platform
    /// delivers late can still go first). While a deferred item waits, later items of its
    /// channel are not handed out either, as if it were leased. Items `worker` no longer
    /// holds are left alone.
    async fn inbox_defer(&self, worker: &WorkerId, ids: &[InboxId], delay: Duration) -> Result<()>;
    /// Gives back items `worker` holds whose translation failed for now (a platform that
    /// did not answer), to be leased again after `delay`; the attempt counts
    /// ([`InboxItem::attempts`]). While they wait, later items of their channels are not
    /// handed out, so they still go first. Items `worker` no longer holds are left alone.
    async fn inbox_retry(&self, worker: &WorkerId, ids: &[InboxId], delay: Duration) -> Result<()>;
    /// Marks an item processed and enqueues its deliveries in one transaction.
    async fn inbox_complete(
        &self,
        worker: &WorkerId,
        id: InboxId,
        deliveries: &[NewDelivery],
    ) -> Result<()>;
    /// Completes several leased items in one transaction, in order: each item's origin
    /// copies are recorded (as [`MessageMapStore::put_message_copy`] would), the item is marked
    /// processed and its deliveries are enqueued. Any error (a lost lease, a conflicting copy,
    /// an invalid delivery) changes nothing.
    async fn inbox_complete_batch(&self, worker: &WorkerId, items: &[CompletedItem]) -> Result<()>;
    /// Enqueues deliveries directly.
    async fn outbox_enqueue(&self, deliveries: &[NewDelivery]) -> Result<()>;
    /// Leases up to `max` due deliveries (at most one per target channel).
    async fn outbox_lease(
        &self,
        worker: &WorkerId,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<Delivery>>;
    /// Marks a delivery done. `Conflict` when the lease was lost.
    async fn outbox_complete(&self, worker: &WorkerId, id: DeliveryId) -> Result<()>;
    /// Releases a delivery for another attempt at `next_attempt_at`, recording the error.
    async fn outbox_retry(
        &self,
        worker: &WorkerId,
        id: DeliveryId,
        next_attempt_at: OffsetDateTime,
        error: &str,
    ) -> Result<()>;
    /// Gives up on a delivery (kept as failed for inspection); later ones of the target proceed.
    async fn outbox_fail(&self, worker: &WorkerId, id: DeliveryId, error: &str) -> Result<()>;
    /// Inbox items not yet processed (leased ones included), for one org.
    async fn inbox_pending(&self, org: &OrgId) -> Result<u64>;
    /// Deliveries not yet done, for one org.
    async fn outbox_pending(&self, org: &OrgId) -> Result<u64>;
    /// Pending deliveries of one target channel (its backlog), the leased one included.
    async fn outbox_backlog(&self, org: &OrgId, target: &ChannelRef) -> Result<u64>;
    /// Extends a lease `worker` holds on `first` to the pending deliveries queued right after
    /// it for the same target (in enqueue order, due now, not under another live lease), at
    /// most `max`: the run a worker may combine into one post. Stops at the first row that
    /// cannot be taken, so the run is contiguous. `Conflict` when `worker` does not hold
    /// `first`.
    async fn outbox_lease_following(
        &self,
        worker: &WorkerId,
        first: DeliveryId,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<Delivery>>;
    /// Gives back leases `worker` holds without counting an attempt (a run it leased but did
    /// not get to); rows it no longer holds are left alone.
    async fn outbox_release(&self, worker: &WorkerId, ids: &[DeliveryId]) -> Result<()>;
    /// Marks several deliveries `worker` holds done in one transaction; `Conflict` (and
    /// nothing changed) when a lease was lost.
    async fn outbox_complete_many(&self, worker: &WorkerId, ids: &[DeliveryId]) -> Result<()>;
    /// Dead letters of `org` (deliveries given up on), newest first: at most `limit` (at most
    /// [`MAX_PAGE_SIZE`], else `InvalidInput`), older than `before` when given.
    async fn outbox_dead_letters(
        &self,
        org: &OrgId,
        before: Option<DeliveryId>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>>;
    /// How many dead letters `org` has.
    async fn outbox_dead_letter_count(&self, org: &OrgId) -> Result<u64>;
    /// Queues a dead letter of `org` again (pending, due now, attempts reset, the last error
    /// kept until the next attempt). `NotFound` when `org` has no dead letter `id`.
    async fn outbox_retry_dead(&self, org: &OrgId, id: DeliveryId) -> Result<()>;
}

/// One translated inbox item for [`QueueStore::inbox_complete_batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedItem {
    /// The leased item.
    pub id: InboxId,
    /// Origin messages it introduced to the message map.
    pub copies: Vec<MessageCopy>,
    /// What it means for the other endpoints.
    pub deliveries: Vec<NewDelivery>,
}

/// A delivery that was given up on, kept for inspection and retry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Queue id.
    pub id: DeliveryId,
    /// The connection it was to go through.
    pub connection: ConnectionId,
    /// The target channel.
    pub target: ChannelRef,
    /// The job (`None` when the row cannot be decoded by this version).
    pub job: Option<DeliveryJob>,
    /// Attempts made.
    pub attempts: u32,
    /// Why it failed.
    pub error: Option<String>,
    /// When it was given up on.
    pub failed_at: OffsetDateTime,
}

/// Someone who reacted to a message, as the reaction ledger keeps them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Reactor {
    /// Their platform.
    pub platform: PlatformKind,
    /// Their id there.
    pub user: UserId,
    /// Their display name when it was recorded (shown in "👍 Ann, Bob").
    pub name: String,
}

/// Which relayed reaction: one emoji on one part of the copy of a universal message in one
/// target channel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReactionKey {
    /// The universal message.
    pub universal: UniversalMessageId,
    /// The target channel (where the reaction is shown through one identity).
    pub channel: ChannelRef,
    /// The part of the copy reacted on.
    pub part: u32,
    /// The emoji.
    pub emoji: Emoji,
}

/// The ledger after a change: whether the change was new, and who reacts with that emoji now
/// (in the order they reacted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReactionTally {
    /// The change was recorded now (`false`: a duplicate add, or a remove of nothing).
    pub changed: bool,
    /// Who reacts with the emoji after the change.
    pub reactors: Vec<Reactor>,
}

/// One message of a [`CombinedPost`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CombinedEntry {
    /// The universal message.
    pub universal: UniversalMessageId,
    /// Its content as combined (translated for the target); `None` once it was deleted.
    pub content: Option<PortableMessage>,
}

/// A post on a target that combines several queued messages (under backlog), in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CombinedPost {
    /// Where it was posted.
    pub channel: ChannelRef,
    /// The platform message.
    pub message: MessageId,
    /// The messages it holds, in origin order.
    pub entries: Vec<CombinedEntry>,
}

/// The most messages one [`CombinedPost`] holds.
pub const MAX_COMBINED_ENTRIES: usize = 100;

/// State the relay keeps besides the queues and the message map: the ledger of reactions
/// relayed through one identity, posts that combine several messages, and how many messages
/// were posted into each channel per day.
#[async_trait]
pub trait RelayStateStore: Send + Sync {
    /// Records that `reactor` reacted (idempotent: a second add is `changed: false`).
    async fn reaction_add(
        &self,
        org: &OrgId,
        key: &ReactionKey,
        reactor: &Reactor,
    ) -> Result<ReactionTally>;
    /// Records that `reactor` took the reaction back (`changed: false` when it was not there).
    async fn reaction_remove(
        &self,
        org: &OrgId,
        key: &ReactionKey,
        reactor: (PlatformKind, &UserId),
    ) -> Result<ReactionTally>;
    /// Every relayed reaction on `part` of the copy of `universal` in `channel`: each emoji
    /// (in the order it was first used) with its reactors (in the order they reacted).
    async fn reactions_on(
        &self,
        org: &OrgId,
        universal: &UniversalMessageId,
        channel: &ChannelRef,
        part: u32,
    ) -> Result<Vec<(Emoji, Vec<Reactor>)>>;
    /// Records a combined post (1 to [`MAX_COMBINED_ENTRIES`] entries, else `InvalidInput`).
    /// `Conflict` when one of its universal messages is already combined in that channel.
    async fn put_combined_post(&self, org: &OrgId, post: &CombinedPost) -> Result<()>;
    /// The combined post holding `universal` in `channel`, if any.
    async fn find_combined_post(
        &self,
        org: &OrgId,
        universal: &UniversalMessageId,
        channel: &ChannelRef,
    ) -> Result<Option<CombinedPost>>;
    /// Which of `universals` are already posted in `channel`: as the first part of a copy,
    /// or as an entry of a combined post. One lookup for a whole run of deliveries (a
    /// platform's redelivery of an event the catch-up replayed first is not posted again).
    async fn posted_in(
        &self,
        org: &OrgId,
        channel: &ChannelRef,
        universals: &[UniversalMessageId],
    ) -> Result<std::collections::HashSet<UniversalMessageId>>;
    /// Replaces the content of `universal`'s entry of a combined post (`None`: deleted) and
    /// returns the post as it is now. `NotFound` when `universal` is not combined there.
    async fn set_combined_entry(
        &self,
        org: &OrgId,
        universal: &UniversalMessageId,
        channel: &ChannelRef,
        content: Option<&PortableMessage>,
    ) -> Result<CombinedPost>;
    /// Adds `messages` to the count of messages posted into `channel` on `day` (UTC) and
    /// returns the new count.
    async fn count_posted(
        &self,
        org: &OrgId,
        channel: &ChannelRef,
        day: time::Date,
        messages: u64,
    ) -> Result<u64>;
    /// Messages posted per channel on `day` (UTC), busiest first.
    async fn posted_on(&self, org: &OrgId, day: time::Date) -> Result<Vec<(ChannelRef, u64)>>;
}

/// The result of verifying the audit chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditVerification {
    /// Entries checked.
    pub checked: u64,
    /// The first sequence number found altered, removed or out of order; `None` when intact.
    pub first_bad_seq: Option<u64>,
    /// What was wrong there.
    pub reason: Option<String>,
}

impl AuditVerification {
    /// Whether the chain is intact.
    pub fn is_ok(&self) -> bool {
        self.first_bad_seq.is_none()
    }
}

/// The append-only, hash-chained audit log.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends an entry, chaining it to the previous one.
    async fn append_audit(&self, org: &OrgId, entry: NewAuditEntry) -> Result<AuditEntry>;
    /// Entries with `seq > after`, at most `limit`, in order.
    async fn list_audit(&self, org: &OrgId, after: u64, limit: usize) -> Result<Vec<AuditEntry>>;
    /// Recomputes the chain and finds the first bad entry.
    async fn verify_audit(&self, org: &OrgId) -> Result<AuditVerification>;
}

/// An end user's own platform account, linked so copies of their messages are posted as
/// them ("link my account"). As listed: never the credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkedAccount {
    /// The platform of the account.
    pub platform: PlatformKind,
    /// The user's id on that platform.
    pub user: UserId,
    /// The name shown for the user (the platform's display name or sign-in name).
    pub display_name: String,
    /// When the user (last) linked the account.
    #[serde(with = "time::serde::rfc3339")]
    pub linked_at: OffsetDateTime,
}

/// End users' linked accounts and their delegated credentials, sealed at rest like a
/// connection's credentials; one per (organization, platform, user).
#[async_trait]
pub trait UserAccountStore: Send + Sync {
    /// Seals and stores `credentials` for `account`, replacing a previous link of the same
    /// user, and appends a `user_account.linked` audit entry by `actor`, in one transaction.
    async fn put_linked_account(
        &self,
        org: &OrgId,
        account: &LinkedAccount,
        credentials: &Credentials,
        actor: Actor,
    ) -> Result<()>;
    /// The linked accounts of `org` (of one platform when `platform` is given), by platform
    /// and user id. Never the credentials.
    async fn list_linked_accounts(
        &self,
        org: &OrgId,
        platform: Option<PlatformKind>,
    ) -> Result<Vec<LinkedAccount>>;
    /// Whether `user` linked an account on `platform` (without reading the credentials).
    async fn has_linked_account(
        &self,
        org: &OrgId,
        platform: PlatformKind,
        user: &UserId,
    ) -> Result<bool>;
    /// One linked account with its unsealed credentials (to post as the user).
    async fn get_linked_account(
        &self,
        org: &OrgId,
        platform: PlatformKind,
        user: &UserId,
    ) -> Result<Option<(LinkedAccount, Credentials)>>;
    /// Replaces the credentials of a linked account after a refresh (refresh tokens rotate).
    /// `NotFound` when the account was unlinked meanwhile (the refreshed token is not
    /// stored again).
    async fn update_linked_credentials(
        &self,
        org: &OrgId,
        platform: PlatformKind,
        user: &UserId,
        credentials: &Credentials,
    ) -> Result<()>;
    /// Deletes a linked account and its credentials and appends a `user_account.unlinked`
    /// audit entry by `actor`, in one transaction. `NotFound` when absent.
    async fn delete_linked_account(
        &self,
        org: &OrgId,
        platform: PlatformKind,
        user: &UserId,
        actor: Actor,
    ) -> Result<()>;
}

/// Everything a Switchboard deployment stores.
pub trait Store:
    OrgStore
    + ConnectionStore
    + SecretStore
    + DirectoryStore
    + UniversalChannelStore
    + MessageMapStore
    + SyncStateStore
    + QueueStore
    + RelayStateStore
    + UserAccountStore
    + AuditStore
    + std::fmt::Debug
{
}

impl<T> Store for T where
    T: OrgStore
        + ConnectionStore
        + SecretStore
        + DirectoryStore
        + UniversalChannelStore
        + MessageMapStore
        + SyncStateStore
        + QueueStore
        + RelayStateStore
        + UserAccountStore
        + AuditStore
        + std::fmt::Debug
{
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(dead_code)]
    fn object_safe(_: &dyn Store) {}

    #[test]
    fn audit_verification_is_ok_only_without_a_bad_entry() {
        let ok = AuditVerification {
            checked: 3,
            first_bad_seq: None,
            reason: None,
        };
        assert!(ok.is_ok());
        let bad = AuditVerification {
            checked: 3,
            first_bad_seq: Some(2),
            reason: Some("hash mismatch".into()),
        };
        assert!(!bad.is_ok());
    }

    #[test]
    fn worker_ids_are_validated() {
        assert_eq!(
            WorkerId::new("host-1/relay-3").unwrap().as_str(),
            "host-1/relay-3"
        );
        for bad in ["", "  ", "a\nb", &"w".repeat(MAX_WORKER_ID_LEN + 1)] {
            let e = WorkerId::new(bad).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidInput, "{bad:?}");
        }
        assert!(serde_json::from_str::<WorkerId>("\"\"").is_err());
        assert_eq!(
            serde_json::from_str::<WorkerId>("\"w1\"").unwrap(),
            WorkerId::new("w1").unwrap()
        );
    }

    #[test]
    fn cursor_keys_have_a_stable_encoding() {
        let channel: ChannelRef = "msteams:t1/19:c1@thread.tacv2".parse().unwrap();
        let delta = CursorKey::Delta {
            channel: channel.clone(),
        };
        let history = CursorKey::History {
            channel: "slack:T1/C1".parse().unwrap(),
        };
        // The stored form: changing it would orphan every stored cursor.
        assert_eq!(delta.encode(), "delta:msteams:t1/19:c1@thread.tacv2");
        assert_eq!(history.to_string(), "history:slack:T1/C1");
        for key in [&delta, &history] {
            assert_eq!(&key.encode().parse::<CursorKey>().unwrap(), key);
        }
        assert_eq!(delta.channel(), &channel);
        for bad in ["", "delta", "later:slack:T1/C1", "delta:nowhere"] {
            assert!(bad.parse::<CursorKey>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn delivery_jobs_are_tagged_and_round_trip() {
        let universal = UniversalMessageId::new("u-1").unwrap();
        let jobs = [
            DeliveryJob::Delete {
                universal: universal.clone(),
            },
            DeliveryJob::React {
                universal: universal.clone(),
                emoji: Emoji::Unicode {
                    value: "👍".into(),
                    name: Some("thumbsup".into()),
                },
                change: ReactionChange::Remove,
                reactor: UserId::new("U1").unwrap(),
            },
            DeliveryJob::Notice {
                text: "Alice joined".into(),
            },
        ];
        for job in &jobs {
            let json = serde_json::to_value(job).unwrap();
            assert!(json["job"].is_string(), "{json}");
            assert_eq!(&serde_json::from_value::<DeliveryJob>(json).unwrap(), job);
        }
        assert_eq!(
            serde_json::to_value(&jobs[0]).unwrap(),
            serde_json::json!({"job": "delete", "universal": "u-1"})
        );
        assert_eq!(jobs[0].universal(), Some(&universal));
        assert_eq!(jobs[2].universal(), None);
        assert!(serde_json::from_str::<DeliveryJob>(r#"{"job":"teleport"}"#).is_err());
    }
}
