//! The storage traits. `switchboard-storage` implements them on SQLite and PostgreSQL, and
//! every backend passes one shared conformance suite.
//!
//! Invariants every implementation keeps:
//! - Everything is scoped by [`OrgId`]: a call for org A never reads or changes org B's rows.
//! - Writes are transactional: bad input is refused with `InvalidInput` and changes nothing.
//! - Secrets ([`Credentials`], [`SecretStore`] values) are sealed with an AEAD before they
//!   touch the database; the database alone reveals none.
//! - The audit log is append-only and hash-chained.

use std::time::Duration;

use async_trait::async_trait;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::Result;
use crate::ids::*;
use crate::message::PlatformEvent;
use crate::model::*;

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
    /// Channels of the organization (optionally one connection), removed ones included.
    async fn list_channels(
        &self,
        org: &OrgId,
        connection: Option<&ConnectionId>,
    ) -> Result<Vec<StoredChannel>>;
    /// One channel by reference.
    async fn get_channel(
        &self,
        org: &OrgId,
        reference: &ChannelRef,
    ) -> Result<Option<StoredChannel>>;
    /// Users of the organization (optionally one connection), removed ones included.
    async fn list_users(
        &self,
        org: &OrgId,
        connection: Option<&ConnectionId>,
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
    /// the same verified email (case-insensitive).
    async fn counterpart(
        &self,
        org: &OrgId,
        platform: PlatformKind,
        user: &UserId,
        target: PlatformKind,
    ) -> Result<Option<UserId>>;
    /// Manually links two users (overrides email matching for both).
    async fn link_identities(
        &self,
        org: &OrgId,
        a: (PlatformKind, &UserId),
        b: (PlatformKind, &UserId),
    ) -> Result<()>;
    /// Removes the manual links of `user` (both directions), so email matching applies to it
    /// again. `NotFound` when it had none.
    async fn unlink_identity(&self, org: &OrgId, user: (PlatformKind, &UserId)) -> Result<()>;
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

/// One platform copy of a relayed message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageCopy {
    /// The universal message it is a copy of.
    pub universal: UniversalMessageId,
    /// Where.
    pub channel: ChannelRef,
    /// Its platform id.
    pub message: MessageId,
    /// Its thread root on that platform, when a reply.
    pub thread_root: Option<MessageId>,
    /// Whether Switchboard posted it (as opposed to the original).
    pub posted_by_us: bool,
}

/// The message map: universal message ↔ per-platform ids. Also the persisted layer of loop
/// prevention (`posted_by_us`).
#[async_trait]
pub trait MessageMapStore: Send + Sync {
    /// Records a copy. Idempotent for the same (channel, message).
    async fn put_message_copy(&self, org: &OrgId, copy: &MessageCopy) -> Result<()>;
    /// The copy of a platform message.
    async fn find_message_copy(
        &self,
        org: &OrgId,
        channel: &ChannelRef,
        message: &MessageId,
    ) -> Result<Option<MessageCopy>>;
    /// Every copy of a universal message.
    async fn message_copies(
        &self,
        org: &OrgId,
        universal: &UniversalMessageId,
    ) -> Result<Vec<MessageCopy>>;
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
}

/// Per-connection sync state: delta links, cursors, subscriptions.
#[async_trait]
pub trait SyncStateStore: Send + Sync {
    /// Stores a cursor (Graph deltaLink, Slack history `ts`) under `key`.
    async fn put_cursor(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
        key: &str,
        value: &str,
    ) -> Result<()>;
    /// Reads it.
    async fn get_cursor(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
        key: &str,
    ) -> Result<Option<String>>;
    /// Stores or replaces a change-notification subscription.
    async fn put_subscription(&self, org: &OrgId, subscription: &Subscription) -> Result<()>;
    /// Finds a subscription by its platform id (for checking `clientState`).
    async fn get_subscription(&self, id: &str) -> Result<Option<(OrgId, Subscription)>>;
    /// Subscriptions of an organization.
    async fn list_subscriptions(&self, org: &OrgId) -> Result<Vec<Subscription>>;
    /// Removes one (nothing happens when it is absent).
    async fn delete_subscription(&self, org: &OrgId, id: &str) -> Result<()>;
}

/// A Graph change-notification subscription. `client_state` is sealed at rest.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// The platform's subscription id.
    pub id: String,
    /// The connection that owns it.
    pub connection: ConnectionId,
    /// The channel watched.
    pub channel: ChannelRef,
    /// The random secret the platform echoes in every notification.
    pub client_state: SecretString,
    /// When it expires unless renewed.
    pub expires_at: OffsetDateTime,
}

/// Whether [`QueueStore::inbox_accept`] stored the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InboxOutcome {
    /// Stored now.
    Accepted,
    /// Seen before (same platform and event id): not stored again.
    Duplicate,
}

/// An accepted event waiting to be processed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxItem {
    /// Queue id.
    pub id: i64,
    /// The organization.
    pub org: OrgId,
    /// The connection that received it.
    pub connection: ConnectionId,
    /// The event.
    pub event: PlatformEvent,
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
    /// What to do (the relay's own job description).
    pub payload: serde_json::Value,
}

/// A leased delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Queue id (increasing in enqueue order).
    pub id: i64,
    /// The organization.
    pub org: OrgId,
    /// The connection to post through.
    pub connection: ConnectionId,
    /// The target channel.
    pub target: ChannelRef,
    /// The job.
    pub payload: serde_json::Value,
    /// Attempts made before this lease.
    pub attempts: u32,
}

/// The durable inbox (accepted events, deduplicated) and outbox (per-target deliveries with
/// attempts, next-attempt time and leases).
///
/// Leasing contract: a leased row is held by exactly one worker until completed, retried or
/// the lease expires (a crashed worker's rows come back). For the outbox, only the oldest
/// unfinished delivery of each target channel can be leased, so origin order is kept per
/// channel.
#[async_trait]
pub trait QueueStore: Send + Sync {
    /// Durably stores an event before it is acknowledged to the platform.
    async fn inbox_accept(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
        event: &PlatformEvent,
    ) -> Result<InboxOutcome>;
    /// Leases up to `max` unprocessed events, oldest first. Events of one channel are never
    /// split across workers: while an earlier unprocessed event of a channel is leased, later
    /// ones of that channel are not handed out (one lease may hold several, in order).
    async fn inbox_lease(
        &self,
        worker: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<InboxItem>>;
    /// Marks an event processed and enqueues its deliveries in one transaction.
    async fn inbox_complete(&self, worker: &str, id: i64, deliveries: &[NewDelivery])
    -> Result<()>;
    /// Enqueues deliveries directly.
    async fn outbox_enqueue(&self, deliveries: &[NewDelivery]) -> Result<()>;
    /// Leases up to `max` due deliveries (at most one per target channel).
    async fn outbox_lease(
        &self,
        worker: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<Delivery>>;
    /// Marks a delivery done. `Conflict` when the lease was lost.
    async fn outbox_complete(&self, worker: &str, id: i64) -> Result<()>;
    /// Releases a delivery for another attempt at `next_attempt_at`, recording the error.
    async fn outbox_retry(
        &self,
        worker: &str,
        id: i64,
        next_attempt_at: OffsetDateTime,
        error: &str,
    ) -> Result<()>;
    /// Gives up on a delivery (kept as failed for inspection); later ones of the target proceed.
    async fn outbox_fail(&self, worker: &str, id: i64, error: &str) -> Result<()>;
    /// Deliveries not yet done, for one org.
    async fn outbox_pending(&self, org: &OrgId) -> Result<u64>;
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
}
