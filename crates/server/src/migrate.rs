//! Moving a connection made with a personal account's token onto a dedicated service
//! account, in place.
//!
//! The new account is verified first, through the platform's own [`Connector`] and
//! [`ServiceAccount::verify`](switchboard_core::ServiceAccount::verify): it must be on the
//! same tenant or workspace, be a different account, be a service account (or bot), and hold
//! every required role and scope. Only then are the identity and credentials swapped, in one
//! transaction with the audit entry ([`ConnectionStore::migrate_connection`]). The connection
//! keeps its id, so universal channels, queued deliveries and message maps keep working;
//! nothing is re-linked. The caller then makes its pool forget the old live connection
//! ([`ConnectionPool::forget`](crate::pool::ConnectionPool::forget)) so the next delivery
//! opens the new credentials.
//!
//! What cannot move is said: the copies the previous account posted stay its messages (Teams
//! lets only the sender edit or delete a message, Slack a bot only its own), so
//! [`Migrated::old_copies`] counts them and [`old_copies_note`] words it; the relay reports
//! edits and deletes of them as dead letters instead of attempting them. Graph subscriptions
//! made with the previous account's token are moved by
//! [`FeedKeeper::resubscribe`](crate::feeds::FeedKeeper::resubscribe), with the previous
//! account's feeds kept in [`Migrated::previous_feeds`] to delete its subscriptions.
//!
//! [`ConnectionStore::migrate_connection`]: switchboard_core::ConnectionStore::migrate_connection

use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use switchboard_core::{
    AccessReport, AccountIdentity, Actor, Authorized, ChannelFeeds, Connection, ConnectionId,
    Connector, Credentials, CredentialsSink, Error, ErrorKind, NewAuditEntry, OrgId, PlatformKind,
    Result, Store, VerifyOptions,
};
use switchboard_relay::engine::Connections;

use crate::pool::ConnectionPool;

/// The audit action a migration records.
pub const MIGRATED_ACTION: &str = "connection.migrated";

/// What a migration did.
#[derive(Debug, Clone)]
pub struct Migrated {
    /// The connection as stored now (same id, the new account, health reset).
    pub connection: Connection,
    /// The account it acted as before.
    pub previous: AccountIdentity,
    /// The verification of the new account (every check passed).
    pub report: AccessReport,
    /// Deliveries of the organization still queued (they go out through the new account).
    pub queued: u64,
    /// Copies the previous account posted in the connection's linked channels: the platform
    /// lets only that account edit or delete them, so they stay as they are (edits and
    /// deletes of them are reported as dead letters).
    pub old_copies: u64,
    /// The previous account's live subscriptions handle (platforms with per-channel feeds,
    /// when the pool could open it before the switch): deletes the subscriptions its token
    /// made, which the new account may not be allowed to see.
    pub previous_feeds: Option<Arc<dyn ChannelFeeds>>,
}

/// What a migration leaves behind about old copies, in words for the admin; `None` when the
/// previous account posted none.
pub fn old_copies_note(m: &Migrated) -> Option<String> {
    if m.old_copies == 0 {
        return None;
    }
    let rule = match m.connection.platform {
        PlatformKind::Slack => "Slack lets a bot edit or delete only its own messages",
        _ => "Microsoft Teams lets only the sender edit or delete a message",
    };
    let n = m.old_copies;
    Some(format!(
        "{n} relayed message{} posted by {} before the switch stay{} as {}: {rule}, so {} cannot \
         edit or delete {}. Edits and deletes of {} are reported as dead letters (and to their \
         senders) instead.",
        if n == 1 { "" } else { "s" },
        m.previous.display_name,
        if n == 1 { "s" } else { "" },
        if n == 1 { "it is" } else { "they are" },
        m.connection.account.display_name,
        if n == 1 { "it" } else { "them" },
        if n == 1 { "it" } else { "them" },
    ))
}

/// Keeps the latest credentials a verification rotated (a refresh during verification
/// replaces the refresh token: the one to store is the newest).
#[derive(Default)]
struct Latest(Mutex<Option<Credentials>>);

impl std::fmt::Debug for Latest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Latest(<credentials>)")
    }
}

#[async_trait]
impl CredentialsSink for Latest {
    async fn persist(&self, credentials: &Credentials) -> Result<()> {
        *self.0.lock() = Some(credentials.clone());
        Ok(())
    }
}

/// Whether `connection` acts through a personal account (what a migration moves off).
pub fn is_personal(connection: &Connection) -> bool {
    !connection.account.is_service_account
}

/// Verifies the account of `authorized` as the new service account of `connection`
/// without changing anything: the report, or the reason it cannot take over (wrong tenant
/// or workspace, the same account, a personal account), as `InvalidInput`.
pub async fn verify_candidate(
    connector: &dyn Connector,
    connection: &Connection,
    authorized: &Authorized,
    options: VerifyOptions,
) -> Result<(AccessReport, Credentials)> {
    if connector.platform() != connection.platform {
        return Err(Error::invalid(format!(
            "connection {} is a {} connection; the account signed in to {}",
            connection.id,
            connection.platform,
            connector.platform()
        )));
    }
    if authorized.tenant != connection.tenant {
        return Err(Error::invalid(format!(
            "the account {} belongs to {} ({}), but connection {} is for {}: sign in with a service account of the same {}",
            authorized.account.display_name,
            authorized.display_name,
            authorized.tenant,
            connection.id,
            connection.tenant,
            tenant_word(connection)
        )));
    }
    if authorized.account.user_id == connection.account.user_id {
        return Err(Error::invalid(format!(
            "{} is the account connection {} already uses: sign in with the dedicated service account instead",
            authorized.account.display_name, connection.id
        )));
    }
    let mut candidate = connection.clone();
    candidate.account = authorized.account.clone();
    let latest = Arc::new(Latest::default());
    let live = connector
        .open(&candidate, authorized.credentials.clone(), latest.clone())
        .await?;
    let report = live.account.verify(options).await?;
    if report.account.user_id != authorized.account.user_id {
        return Err(Error::upstream(format!(
            "the platform reported the token as {} although {} signed in; nothing was changed",
            report.account.display_name, authorized.account.display_name
        )));
    }
    if !report.account.is_service_account {
        return Err(Error::invalid(format!(
            "{} is a personal account, not a service account (or bot); nothing was changed",
            report.account.display_name
        )));
    }
    let credentials = latest
        .0
        .lock()
        .take()
        .unwrap_or_else(|| authorized.credentials.clone());
    Ok((report, credentials))
}

fn tenant_word(connection: &Connection) -> &'static str {
    match connection.platform {
        switchboard_core::PlatformKind::Slack => "workspace",
        _ => "tenant",
    }
}

/// What to migrate onto what.
#[derive(Debug, Clone)]
pub struct MigrationRequest<'a> {
    /// The organization.
    pub org: &'a OrgId,
    /// The connection to move.
    pub connection: &'a ConnectionId,
    /// The OAuth sign-in of the new service account.
    pub authorized: &'a Authorized,
    /// Who asks (recorded in the audit entry).
    pub actor: Actor,
    /// Verification options (guest sync needs more roles).
    pub options: VerifyOptions,
}

/// Moves the connection of `request` onto the account it signed in, after verifying it:
/// refused with nothing changed when that account is on another tenant or workspace, is the
/// same or a personal account (`InvalidInput`), or lacks a role or scope (`Forbidden`, every
/// missing requirement with its fix in the message). The actor is recorded in the audit entry
/// (the accounts' names and ids, never a token). When `pool` is given, its live connection is
/// forgotten.
pub async fn migrate(
    store: &Arc<dyn Store>,
    connector: &dyn Connector,
    pool: Option<&ConnectionPool>,
    request: MigrationRequest<'_>,
) -> Result<Migrated> {
    let MigrationRequest {
        org,
        connection: id,
        authorized,
        actor,
        options,
    } = request;
    let connection = store.get_connection(org, id).await?.ok_or_else(|| {
        Error::new(
            ErrorKind::NotFound,
            format!("connection {id} does not exist"),
        )
    })?;
    let (report, credentials) =
        verify_candidate(connector, &connection, authorized, options).await?;
    if !report.is_ok() {
        let fixes: Vec<String> = report
            .problems()
            .map(|c| match &c.fix {
                Some(fix) => format!("{}: {fix}", c.name),
                None => c.name.clone(),
            })
            .collect();
        return Err(Error::new(
            ErrorKind::Forbidden,
            format!(
                "{} cannot administer this connection yet; nothing was changed. Fix: {}",
                report.account.display_name,
                fixes.join("; ")
            ),
        ));
    }
    let new_account = AccountIdentity {
        user_id: report.account.user_id.clone(),
        display_name: authorized.account.display_name.clone(),
        is_service_account: true,
    };
    let entry = NewAuditEntry {
        actor,
        action: MIGRATED_ACTION.into(),
        target: id.to_string(),
        details: serde_json::json!({
            "platform": connection.platform.to_string(),
            "tenant": connection.tenant.to_string(),
            "from": {
                "user_id": connection.account.user_id.to_string(),
                "name": connection.account.display_name,
                "service_account": connection.account.is_service_account,
            },
            "to": {
                "user_id": new_account.user_id.to_string(),
                "name": new_account.display_name,
                "service_account": true,
            },
            "checks": report.checks.len(),
        }),
    };
    // The previous account's feeds, opened before its credentials are replaced.
    let previous_feeds = match pool {
        Some(pool) => match pool.get(org, id).await {
            Ok(live) => live.feeds,
            Err(e) => {
                tracing::info!(connection = %id, error = %e, "the previous account's connection could not be opened; its subscriptions are left to expire");
                None
            }
        },
        None => None,
    };
    let migrated = store
        .migrate_connection(org, id, &new_account, &credentials, entry)
        .await?;
    if let Some(pool) = pool {
        pool.forget(org, id);
    }
    let queued = store.outbox_pending(org).await?;
    let old_copies = store
        .count_copies_by_account(org, id, &connection.account.user_id)
        .await?;
    tracing::info!(
        connection = %id,
        from = %connection.account.display_name,
        to = %new_account.display_name,
        queued,
        old_copies,
        "connection migrated to a service account"
    );
    Ok(Migrated {
        connection: migrated,
        previous: connection.account,
        report,
        queued,
        old_copies,
        previous_feeds,
    })
}
