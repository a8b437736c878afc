//! The conformance suite every [`Store`] passes, reusable by any backend (the pattern of
//! matrix-rust-sdk's `store_integration_tests!`). Enabled by the `testing` feature.
//!
//! A backend provides a [`Harness`]: the store under test (fresh and empty for each check)
//! and a way to open another handle on the same data, as a second process or replica would.
//! [`store_conformance!`](crate::store_conformance) expands to one `#[tokio::test]` per
//! check:
//!
//! ```ignore
//! async fn setup() -> Option<MyHarness> { Some(MyHarness::new().await) } // None: skipped
//! switchboard_storage::store_conformance!(setup);
//! ```
//!
//! Every check talks to the store only through `&dyn Store`. Checks that need raw access to
//! a database (plaintext scans, corrupted rows, schema versions) live with that backend's
//! tests (`tests/it/sql.rs` for [`SqlStore`](crate::SqlStore)).

#![allow(clippy::too_many_lines)]

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use switchboard_core::secrecy::{ExposeSecret, SecretString};
use switchboard_core::*;
use time::OffsetDateTime;

/// What a backend gives the suite.
#[async_trait]
pub trait Harness: Send + Sync {
    /// The store under test: fresh and empty when the check starts.
    fn store(&self) -> &dyn Store;
    /// Another handle on the same data (another process or replica), for concurrency and
    /// crash checks.
    async fn reopen(&self) -> Arc<dyn Store>;
    /// Called after the check passed (drop a test schema, close pools).
    async fn cleanup(&self) {}
}

/// Expands to one `#[tokio::test]` per conformance check. `$setup` is an async fn returning
/// `Option<impl Harness>`; `None` skips the check (e.g. no database configured).
#[macro_export]
macro_rules! store_conformance {
    ($setup:path) => {
        $crate::store_conformance!(@tests $setup;
            orgs_and_admin_tokens,
            connections_and_credentials,
            migrate_connection_is_atomic_and_audited,
            delete_connection_cascades_and_refuses_when_linked,
            imports_are_idempotent_upserts,
            disappeared_rows_are_marked_removed,
            directory_listings_are_paged,
            identity_map,
            identity_links_are_listed_once_per_pair,
            identity_separations_stop_email_matching,
            admin_tokens_are_listed_without_secrets,
            universal_channels,
            message_map,
            message_copies_keep_parts_and_posting_identity,
            message_copies_record_the_posting_account,
            a_message_copy_part_can_be_replaced,
            sync_state,
            message_snapshots,
            inbox_dedupes_and_leases_per_channel,
            inbox_takes_hints_signals_and_batches,
            inbox_defers_items_and_holds_their_channel,
            inbox_retry_counts_attempts_and_holds_the_channel,
            delivery_jobs_round_trip,
            outbox_order_retry_and_fail,
            outbox_concurrent_workers_deliver_each_row_once,
            outbox_runs_and_dead_letters,
            inbox_batches_complete_in_one_transaction,
            relay_state_reactions_combined_posts_and_daily_counts,
            leases_expire_after_a_crash,
            audit_chain_appends_lists_exports,
            concurrent_audit_appends_keep_one_chain,
            org_isolation,
            bad_input_changes_nothing,
            linked_user_accounts,
            written_fingerprints_of_copies,
        );
    };
    (@tests $setup:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(h) = $setup().await else { return };
                $crate::testing::$name(&h).await;
                $crate::testing::Harness::cleanup(&h).await;
            }
        )*
    };
}

// ----- helpers --------------------------------------------------------------------------------

/// A worker id.
pub fn w(name: &str) -> WorkerId {
    WorkerId::new(name).unwrap()
}

/// A subscription id.
pub fn sid(id: &str) -> SubscriptionId {
    SubscriptionId::new(id).unwrap()
}

/// The delta cursor key of `channel`.
pub fn delta_key(channel: &str) -> CursorKey {
    CursorKey::Delta {
        channel: ch(channel),
    }
}

/// The history cursor key of `channel`.
pub fn history_key(channel: &str) -> CursorKey {
    CursorKey::History {
        channel: ch(channel),
    }
}

/// The number of a [`delivery`] fixture's job.
pub fn job_n(job: &DeliveryJob) -> u64 {
    match job {
        DeliveryJob::Notice { text } => text
            .strip_prefix("delivery ")
            .and_then(|t| t.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not a numbered delivery: {text:?}")),
        other => panic!("not a numbered delivery: {other:?}"),
    }
}

/// Every user of `org` (optionally one connection), read page by page (pages of 7, so
/// every listing in the suite goes through paging).
pub async fn all_users(
    s: &dyn Store,
    org: &OrgId,
    connection: Option<&ConnectionId>,
) -> Vec<StoredUser> {
    let mut out: Vec<StoredUser> = Vec::new();
    loop {
        let after = out.last().map(|u| (u.platform, u.user.id.clone()));
        let page = s
            .list_users(org, connection, after.as_ref().map(|(p, u)| (*p, u)), 7)
            .await
            .unwrap();
        let done = page.len() < 7;
        out.extend(page);
        if done {
            return out;
        }
    }
}

/// Every channel of `org` (optionally one connection), read page by page (pages of 7).
pub async fn all_channels(
    s: &dyn Store,
    org: &OrgId,
    connection: Option<&ConnectionId>,
) -> Vec<StoredChannel> {
    let mut out: Vec<StoredChannel> = Vec::new();
    loop {
        let after = out.last().map(|c| c.reference.clone());
        let page = s
            .list_channels(org, connection, after.as_ref(), 7)
            .await
            .unwrap();
        let done = page.len() < 7;
        out.extend(page);
        if done {
            return out;
        }
    }
}

// ----- fixtures -----------------------------------------------------------------------------

/// Parses a channel reference (`slack:T1/C1`).
pub fn ch(s: &str) -> ChannelRef {
    s.parse().unwrap()
}

/// A user id.
pub fn uid(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

/// A healthy connection of `org` to `platform` in `tenant`, administered by a service account.
pub fn connection(org: &OrgId, platform: PlatformKind, tenant: &str) -> Connection {
    Connection {
        id: ConnectionId::generate(),
        org: org.clone(),
        platform,
        tenant: TenantId::new(tenant).unwrap(),
        enterprise: None,
        display_name: format!("{tenant} ({platform})"),
        account: AccountIdentity {
            user_id: uid("USVC"),
            display_name: "Switchboard".into(),
            is_service_account: true,
        },
        health: ConnectionHealth::Ok,
        created_at: OffsetDateTime::now_utc(),
    }
}

/// Credentials with access token `token`, a refresh token and an expiry in an hour.
pub fn creds(token: &str) -> Credentials {
    Credentials {
        access_token: SecretString::from(token.to_owned()),
        refresh_token: Some(SecretString::from(format!("{token}-refresh"))),
        expires_at: Some(OffsetDateTime::now_utc() + time::Duration::hours(1)),
        scopes: vec!["chat:write".into(), "channels:history".into()],
    }
}

/// An organization with one Slack and one Teams connection.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// The organization.
    pub org: OrgId,
    /// Its Slack connection (workspace `T1`).
    pub slack: Connection,
    /// Its Teams connection (tenant `tenant-1`).
    pub teams: Connection,
}

/// A Slack channel of workspace `T1`.
pub const SLACK_C1: &str = "slack:T1/C1";
/// A Teams channel of team `team-1`.
pub const TEAMS_C1: &str = "msteams:team-1/19:one@thread.tacv2";

/// Creates an organization named `name` with its two connections.
pub async fn fixture(store: &dyn Store, name: &str) -> Fixture {
    let org = store.create_org(name).await.unwrap();
    let slack = connection(&org.id, PlatformKind::Slack, "T1");
    let teams = connection(&org.id, PlatformKind::Msteams, "tenant-1");
    store.put_connection(&slack).await.unwrap();
    store.put_connection(&teams).await.unwrap();
    Fixture {
        org: org.id,
        slack,
        teams,
    }
}

/// A universal channel linking Slack channel `a` and Teams channel `b` of `f`.
pub fn universal(f: &Fixture, a: &str, b: &str) -> UniversalChannel {
    UniversalChannel::new(
        UniversalChannelId::generate(),
        f.org.clone(),
        "eng",
        vec![
            Endpoint {
                connection: f.slack.id.clone(),
                channel: ch(a),
            },
            Endpoint {
                connection: f.teams.id.clone(),
                channel: ch(b),
            },
        ],
    )
    .unwrap()
}

/// An inbox item: a posted-message event `id` in `channel` with `text`.
pub fn event(id: &str, channel: &str, text: &str) -> Inbound {
    Inbound::Event(platform_event(id, channel, text))
}

/// A posted-message event `id` in `channel` with `text`.
pub fn platform_event(id: &str, channel: &str, text: &str) -> PlatformEvent {
    let channel = ch(channel);
    PlatformEvent {
        event_id: id.into(),
        occurred_at: OffsetDateTime::now_utc(),
        kind: EventKind::Posted {
            message: MessageId::new(format!("m-{id}")).unwrap(),
            content: PortableMessage {
                sender: Sender {
                    platform: channel.platform,
                    user: uid("U1"),
                    display_name: "Alice".into(),
                    avatar_url: None,
                    email: Some("alice@contoso.com".into()),
                },
                text: RichText::plain(text),
                attachments: vec![],
                thread_root: None,
            },
        },
        channel,
    }
}

/// A notice delivery numbered `n` (see [`job_n`]) to `target` through `conn`.
pub fn delivery(org: &OrgId, conn: &Connection, target: &str, n: u64) -> NewDelivery {
    NewDelivery {
        org: org.clone(),
        connection: conn.id.clone(),
        target: ch(target),
        job: DeliveryJob::Notice {
            text: format!("delivery {n} to {target}"),
        },
    }
}

/// A user.
pub fn user(id: &str, name: &str, email: Option<&str>) -> User {
    User {
        id: uid(id),
        display_name: name.into(),
        email: email.map(str::to_owned),
        avatar_url: Some(format!("https://avatars.test/{id}.png")),
        is_guest: false,
        is_bot: false,
        is_deleted: false,
    }
}

/// A team.
pub fn team(id: &str) -> Team {
    Team {
        id: TeamId::new(id).unwrap(),
        name: format!("Team {id}"),
        description: Some("a team".into()),
    }
}

/// A standard channel of `team`.
pub fn channel(team: &str, id: &str) -> Channel {
    Channel {
        id: ChannelId::new(id).unwrap(),
        team: TeamId::new(team).unwrap(),
        name: format!("chan-{id}"),
        kind: ChannelKind::Standard,
        description: None,
    }
}

/// A membership of `user` in `team`.
pub fn member(team: &str, user: &str) -> Membership {
    Membership {
        team: TeamId::new(team).unwrap(),
        user: uid(user),
        is_owner: false,
    }
}

/// An audit entry by the system.
pub fn audit(action: &str, details: serde_json::Value) -> NewAuditEntry {
    NewAuditEntry {
        actor: Actor::System,
        action: action.into(),
        target: "t".into(),
        details,
    }
}

/// Asserts `r` failed with `kind` and returns the error.
#[track_caller]
pub fn assert_kind<T: std::fmt::Debug>(r: Result<T>, kind: ErrorKind) -> Error {
    match r {
        Ok(v) => panic!("expected {kind:?}, got Ok({v:?})"),
        Err(e) => {
            assert_eq!(e.kind(), kind, "{e}");
            e
        }
    }
}

const LEASE: Duration = Duration::from_secs(30);

// ----- organizations and tokens ---------------------------------------------------------------

/// Check: orgs and admin tokens.
pub async fn orgs_and_admin_tokens(h: &dyn Harness) {
    let s = h.store();
    let a = s.create_org("  Contoso ").await.unwrap();
    assert_eq!(a.name, "Contoso");
    assert_eq!(s.get_org(&a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(s.get_org(&OrgId::generate()).await.unwrap(), None);
    let b = s.create_org("Fabrikam").await.unwrap();
    assert_eq!(s.list_orgs().await.unwrap(), vec![a.clone(), b.clone()]);
    assert_kind(s.create_org(" ").await, ErrorKind::InvalidInput);
    let e = assert_kind(
        s.create_org(&"x".repeat(5000)).await,
        ErrorKind::InvalidInput,
    );
    assert!(e.message().contains("1024"), "{e}");

    let token = s.create_admin_token(&a.id, "ci").await.unwrap();
    assert!(token.expose_secret().starts_with("sbat_"));
    let p = s.authenticate_admin_token(&token).await.unwrap().unwrap();
    assert_eq!(
        p,
        AdminPrincipal {
            org: a.id.clone(),
            name: "ci".into()
        }
    );

    let tb = s.create_admin_token(&b.id, "ci").await.unwrap();
    assert_eq!(
        s.authenticate_admin_token(&tb).await.unwrap().unwrap().org,
        b.id
    );

    // Altered or malformed tokens resolve to nothing.
    let mut altered = token.expose_secret().to_owned();
    let last = altered.pop().unwrap();
    altered.push(if last == 'A' { 'B' } else { 'A' });
    for bad in [
        altered.as_str(),
        "",
        "sbat_",
        "sbat_zz_zz",
        "Bearer x",
        &"sbat_".repeat(100),
    ] {
        assert_eq!(
            s.authenticate_admin_token(&SecretString::from(bad.to_owned()))
                .await
                .unwrap(),
            None,
            "{bad:?}"
        );
    }

    s.revoke_admin_token(&a.id, "ci").await.unwrap();
    assert_eq!(s.authenticate_admin_token(&token).await.unwrap(), None);
    assert_kind(s.revoke_admin_token(&a.id, "ci").await, ErrorKind::NotFound);
    // Org B's token of the same name is untouched.
    assert!(s.authenticate_admin_token(&tb).await.unwrap().is_some());
    assert_kind(
        s.create_admin_token(&OrgId::generate(), "x").await,
        ErrorKind::NotFound,
    );
    assert_kind(
        s.create_admin_token(&a.id, "").await,
        ErrorKind::InvalidInput,
    );
}

// ----- connections ----------------------------------------------------------------------------

/// Check: connections and credentials.
pub async fn connections_and_credentials(h: &dyn Harness) {
    let s = h.store();
    let f = fixture(s, "org").await;
    assert_eq!(
        s.get_connection(&f.org, &f.slack.id).await.unwrap(),
        Some(f.slack.clone())
    );
    assert_eq!(
        s.list_connections(&f.org).await.unwrap(),
        vec![f.slack.clone(), f.teams.clone()]
    );
    assert_eq!(
        s.get_connection(&f.org, &ConnectionId::generate())
            .await
            .unwrap(),
        None
    );

    s.set_connection_health(&f.org, &f.slack.id, ConnectionHealth::NeedsReauth)
        .await
        .unwrap();
    let got = s
        .get_connection(&f.org, &f.slack.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.health, ConnectionHealth::NeedsReauth);
    assert_kind(
        s.set_connection_health(&f.org, &ConnectionId::generate(), ConnectionHealth::Ok)
            .await,
        ErrorKind::NotFound,
    );

    // Replace in place.
    let mut renamed = f.slack.clone();
    renamed.display_name = "Renamed".into();
    renamed.enterprise = Some(TenantId::new("E1").unwrap());
    s.put_connection(&renamed).await.unwrap();
    assert_eq!(
        s.get_connection(&f.org, &f.slack.id).await.unwrap(),
        Some(renamed.clone())
    );
    assert_eq!(s.list_connections(&f.org).await.unwrap().len(), 2);
    // The platform of a connection cannot change.
    let mut other = renamed.clone();
    other.platform = PlatformKind::Msteams;
    assert_kind(s.put_connection(&other).await, ErrorKind::Conflict);
    // Unknown organization.
    let stray = connection(&OrgId::generate(), PlatformKind::Slack, "T9");
    assert_kind(s.put_connection(&stray).await, ErrorKind::NotFound);

    // Credentials.
    assert!(
        s.get_credentials(&f.org, &f.slack.id)
            .await
            .unwrap()
            .is_none()
    );
    let c = creds("xoxb-first");
    s.put_credentials(&f.org, &f.slack.id, &c).await.unwrap();
    let back = s
        .get_credentials(&f.org, &f.slack.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back.access_token.expose_secret(), "xoxb-first");
    assert_eq!(
        back.refresh_token.as_ref().unwrap().expose_secret(),
        "xoxb-first-refresh"
    );
    assert_eq!(back.expires_at, c.expires_at);
    assert_eq!(back.scopes, c.scopes);
    let c2 = Credentials {
        access_token: SecretString::from("xoxb-second".to_owned()),
        refresh_token: None,
        expires_at: None,
        scopes: vec![],
    };
    s.put_credentials(&f.org, &f.slack.id, &c2).await.unwrap();
    let back = s
        .get_credentials(&f.org, &f.slack.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back.access_token.expose_secret(), "xoxb-second");
    assert!(back.refresh_token.is_none() && back.expires_at.is_none());
    assert_kind(
        s.put_credentials(&f.org, &ConnectionId::generate(), &c)
            .await,
        ErrorKind::NotFound,
    );
    // Oversized: refused, previous credentials intact.
    let huge = creds(&"x".repeat(20_000));
    let e = assert_kind(
        s.put_credentials(&f.org, &f.slack.id, &huge).await,
        ErrorKind::InvalidInput,
    );
    assert!(!e.to_string().contains("xxxxxxxx"), "{e}");
    assert_eq!(
        s.get_credentials(&f.org, &f.slack.id)
            .await
            .unwrap()
            .unwrap()
            .access_token
            .expose_secret(),
        "xoxb-second"
    );
}

/// Check: migrate connection is atomic and audited.
pub async fn migrate_connection_is_atomic_and_audited(h: &dyn Harness) {
    let s = h.store();
    let f = fixture(s, "org").await;
    let mut personal = f.teams.clone();
    personal.account = AccountIdentity {
        user_id: uid("alice-guid"),
        display_name: "alice@contoso.com".into(),
        is_service_account: false,
    };
    s.put_connection(&personal).await.unwrap();
    s.put_credentials(&f.org, &f.teams.id, &creds("personal-token"))
        .await
        .unwrap();
    s.set_connection_health(&f.org, &f.teams.id, ConnectionHealth::NeedsReauth)
        .await
        .unwrap();
    let uc = universal(&f, SLACK_C1, TEAMS_C1);
    s.create_universal_channel(&uc).await.unwrap();
    s.outbox_enqueue(&[delivery(&f.org, &f.teams, TEAMS_C1, 1)])
        .await
        .unwrap();

    let svc = AccountIdentity {
        user_id: uid("svc-guid"),
        display_name: "svc-switchboard@contoso.com".into(),
        is_service_account: true,
    };
    let entry = NewAuditEntry {
        actor: Actor::Admin { name: "ci".into() },
        action: "connection.migrated".into(),
        target: f.teams.id.to_string(),
        details: json!({"from": "alice@contoso.com", "to": "svc", "access_token": "leaked?"}),
    };
    let migrated = s
        .migrate_connection(
            &f.org,
            &f.teams.id,
            &svc,
            &creds("service-token"),
            entry.clone(),
        )
        .await
        .unwrap();
    assert_eq!(migrated.id, f.teams.id);
    assert_eq!(migrated.account, svc);
    assert_eq!(migrated.health, ConnectionHealth::Ok);
    assert_eq!(
        s.get_connection(&f.org, &f.teams.id).await.unwrap(),
        Some(migrated.clone())
    );
    assert_eq!(
        s.get_credentials(&f.org, &f.teams.id)
            .await
            .unwrap()
            .unwrap()
            .access_token
            .expose_secret(),
        "service-token"
    );
    // Universal channels and queued deliveries keep pointing at the same connection.
    assert_eq!(
        s.find_universal_channel(&f.org, &ch(TEAMS_C1))
            .await
            .unwrap(),
        Some(uc.clone())
    );
    assert_eq!(s.outbox_pending(&f.org).await.unwrap(), 1);
    let log = s.list_audit(&f.org, 0, 10).await.unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].action, "connection.migrated");
    assert_eq!(log[0].actor, Actor::Admin { name: "ci".into() });
    assert_eq!(log[0].details["access_token"], "[redacted]");
    assert_eq!(log[0].details["from"], "alice@contoso.com");

    // Failures change nothing: an unknown connection, or an invalid audit entry.
    assert_kind(
        s.migrate_connection(
            &f.org,
            &ConnectionId::generate(),
            &svc,
            &creds("t"),
            entry.clone(),
        )
        .await,
        ErrorKind::NotFound,
    );
    let mut bad = entry.clone();
    bad.action = String::new();
    let other = AccountIdentity {
        user_id: uid("other"),
        display_name: "other".into(),
        is_service_account: true,
    };
    assert_kind(
        s.migrate_connection(&f.org, &f.teams.id, &other, &creds("other-token"), bad)
            .await,
        ErrorKind::InvalidInput,
    );
    assert_eq!(
        s.get_connection(&f.org, &f.teams.id).await.unwrap(),
        Some(migrated)
    );
    assert_eq!(
        s.get_credentials(&f.org, &f.teams.id)
            .await
            .unwrap()
            .unwrap()
            .access_token
            .expose_secret(),
        "service-token"
    );
    assert_eq!(s.list_audit(&f.org, 0, 10).await.unwrap().len(), 1);
    assert!(s.verify_audit(&f.org).await.unwrap().is_ok());
}

/// Check: delete connection cascades and refuses when linked.
pub async fn delete_connection_cascades_and_refuses_when_linked(h: &dyn Harness) {
    let s = h.store();
    let f = fixture(s, "org").await;
    s.put_credentials(&f.org, &f.slack.id, &creds("xoxb-del"))
        .await
        .unwrap();
    let run = s.begin_import(&f.org, &f.slack.id).await.unwrap();
    s.upsert_teams(&f.org, &f.slack.id, run, &[team("T1")])
        .await
        .unwrap();
    s.upsert_channels(&f.org, &f.slack.id, run, &[channel("T1", "C1")])
        .await
        .unwrap();
    s.upsert_users(&f.org, &f.slack.id, run, &[user("U1", "Alice", None)])
        .await
        .unwrap();
    s.put_cursor(
        &f.org,
        &f.slack.id,
        &history_key(SLACK_C1),
        "1700000000.000100",
    )
    .await
    .unwrap();
    s.outbox_enqueue(&[delivery(&f.org, &f.slack, SLACK_C1, 1)])
        .await
        .unwrap();
    s.inbox_accept(&f.org, &f.slack.id, &event("Ev1", SLACK_C1, "hi"))
        .await
        .unwrap();
    let uc = universal(&f, SLACK_C1, TEAMS_C1);
    s.create_universal_channel(&uc).await.unwrap();

    let e = assert_kind(
        s.delete_connection(&f.org, &f.slack.id).await,
        ErrorKind::Conflict,
    );
    assert!(e.message().contains(uc.id().as_str()), "{e}");
    assert!(
        s.get_connection(&f.org, &f.slack.id)
            .await
            .unwrap()
            .is_some()
    );

    s.delete_universal_channel(&f.org, uc.id()).await.unwrap();
    // Another replica has written for the connection (so it knows the connection) when this
    // one deletes it: that replica's next writes for it are refused as NotFound, not stored.
    let other = h.reopen().await;
    other
        .inbox_accept(&f.org, &f.slack.id, &event("Ev0", SLACK_C1, "before"))
        .await
        .unwrap();
    other
        .outbox_enqueue(&[delivery(&f.org, &f.slack, SLACK_C1, 9)])
        .await
        .unwrap();
    s.delete_connection(&f.org, &f.slack.id).await.unwrap();
    assert_kind(
        other
            .inbox_accept(&f.org, &f.slack.id, &event("Ev2", SLACK_C1, "after"))
            .await,
        ErrorKind::NotFound,
    );
    assert_kind(
        other
            .outbox_enqueue(&[delivery(&f.org, &f.slack, SLACK_C1, 10)])
            .await,
        ErrorKind::NotFound,
    );
    assert_kind(
        s.inbox_accept(&f.org, &f.slack.id, &event("Ev3", SLACK_C1, "after"))
            .await,
        ErrorKind::NotFound,
    );
    assert!(
        s.get_connection(&f.org, &f.slack.id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.get_credentials(&f.org, &f.slack.id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(all_channels(s, &f.org, None).await.is_empty());
    assert!(all_users(s, &f.org, None).await.is_empty());
    assert!(s.list_teams(&f.org, &f.slack.id).await.unwrap().is_empty());
    assert!(
        s.get_cursor(&f.org, &f.slack.id, &history_key(SLACK_C1))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(s.outbox_pending(&f.org).await.unwrap(), 0);
    assert!(s.inbox_lease(&w("w"), 10, LEASE).await.unwrap().is_empty());
    assert_kind(
        s.delete_connection(&f.org, &f.slack.id).await,
        ErrorKind::NotFound,
    );
    // The other connection is untouched.
    assert_eq!(
        s.list_connections(&f.org).await.unwrap(),
        vec![f.teams.clone()]
    );
}

// ----- secrets --------------------------------------------------------------------------------

// ----- directory ------------------------------------------------------------------------------

type Snapshot = (
    Vec<Team>,
    Vec<StoredChannel>,
    Vec<StoredUser>,
    Vec<Membership>,
    Vec<Membership>,
);

async fn snapshot(s: &dyn Store, org: &OrgId, conn: &ConnectionId) -> Snapshot {
    (
        s.list_teams(org, conn).await.unwrap(),
        all_channels(s, org, Some(conn)).await,
        all_users(s, org, Some(conn)).await,
        s.list_memberships(org, conn, &TeamId::new("team-a").unwrap())
            .await
            .unwrap(),
        s.list_memberships(org, conn, &TeamId::new("team-b").unwrap())
            .await
            .unwrap(),
    )
}

async fn import_teams(s: &dyn Store, f: &Fixture, dup: bool) {
    let conn = &f.teams.id;
    let run = s.begin_import(&f.org, conn).await.unwrap();
    s.upsert_teams(&f.org, conn, run, &[team("team-a"), team("team-b")])
        .await
        .unwrap();
    let mut chans = vec![
        channel("team-a", "19:a1@thread.tacv2"),
        channel("team-a", "19:a2@thread.tacv2"),
        channel("team-b", "19:b1@thread.tacv2"),
    ];
    chans[1].kind = ChannelKind::Private;
    chans[1].description = Some("secret plans".into());
    if dup {
        chans.push(chans[0].clone());
    }
    s.upsert_channels(&f.org, conn, run, &chans).await.unwrap();
    let mut users = vec![
        user("u1", "Alice", Some("alice@contoso.com")),
        user("u2", "Bob", Some("bob@contoso.com")),
        user("u3", "Guest", None),
    ];
    users[2].is_guest = true;
    if dup {
        users.push(users[0].clone());
    }
    s.upsert_users(&f.org, conn, run, &users).await.unwrap();
    s.upsert_memberships(
        &f.org,
        conn,
        run,
        &[
            member("team-a", "u1"),
            member("team-a", "u2"),
            member("team-b", "u3"),
        ],
    )
    .await
    .unwrap();
    for t in ["team-a", "team-b"] {
        s.finish_team_import(&f.org, conn, run, &TeamId::new(t).unwrap())
            .await
            .unwrap();
    }
    s.finish_user_import(&f.org, conn, run).await.unwrap();
}

/// Check: imports are idempotent upserts.
pub async fn imports_are_idempotent_upserts(h: &dyn Harness) {
    let s = h.store();
    let f = fixture(s, "org").await;
    import_teams(s, &f, false).await;
    let first = snapshot(s, &f.org, &f.teams.id).await;
    assert_eq!(first.0.len(), 2);
    assert_eq!(first.1.len(), 3);
    assert_eq!(first.2.len(), 3);
    assert_eq!(first.3.len(), 2);
    assert_eq!(first.4.len(), 1);
    assert!(first.1.iter().all(|c| !c.removed) && first.2.iter().all(|u| !u.removed));
    let a2 = &first.1[1];
    assert_eq!(a2.channel.kind, ChannelKind::Private);
    assert_eq!(a2.channel.description.as_deref(), Some("secret plans"));
    assert_eq!(a2.reference, ch("msteams:team-a/19:a2@thread.tacv2"));
    assert_eq!(a2.connection, f.teams.id);
    assert_eq!(
        s.get_channel(&f.org, &a2.reference).await.unwrap(),
        Some(a2.clone())
    );
    let u1 = s
        .get_user(&f.org, PlatformKind::Msteams, &uid("u1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(u1.user, user("u1", "Alice", Some("alice@contoso.com")));
    assert_eq!(u1.platform, PlatformKind::Msteams);
    assert!(
        s.get_user(&f.org, PlatformKind::Slack, &uid("u1"))
            .await
            .unwrap()
            .is_none()
    );

    // The same import again, with duplicates inside a batch: nothing changes.
    import_teams(s, &f, true).await;
    assert_eq!(snapshot(s, &f.org, &f.teams.id).await, first);
    import_teams(s, &f, false).await;
    assert_eq!(snapshot(s, &f.org, &f.teams.id).await, first);

    // Changed upstream data is updated in place.
    let run = s.begin_import(&f.org, &f.teams.id).await.unwrap();
    let mut alice = user("u1", "Alice Smith", Some("alice@contoso.com"));
    alice.is_deleted = true;
    s.upsert_users(&f.org, &f.teams.id, run, &[alice.clone()])
        .await
        .unwrap();
    assert_eq!(
        s.get_user(&f.org, PlatformKind::Msteams, &uid("u1"))
            .await
            .unwrap()
            .unwrap()
            .user,
        alice
    );

    // A run of another connection or organization is refused.
    let other = s.create_org("other").await.unwrap().id;
    let oc = connection(&other, PlatformKind::Msteams, "tenant-1");
    s.put_connection(&oc).await.unwrap();
    let other_run = s.begin_import(&other, &oc.id).await.unwrap();
    assert_kind(
        s.upsert_users(&f.org, &f.teams.id, other_run, &[user("x", "X", None)])
            .await,
        ErrorKind::InvalidInput,
    );
    assert_kind(
        s.upsert_teams(&f.org, &f.slack.id, run, &[team("t")]).await,
        ErrorKind::InvalidInput,
    );
    assert_kind(
        s.begin_import(&f.org, &ConnectionId::generate()).await,
        ErrorKind::NotFound,
    );

    // Large batches span several statements.
    let run = s.begin_import(&f.org, &f.slack.id).await.unwrap();
    let many: Vec<User> = (0..1234)
        .map(|i| {
            user(
                &format!("U{i:05}"),
                &format!("User {i}"),
                Some(&format!("user{i:05}@contoso.com")),
            )
        })
        .collect();
    s.upsert_users(&f.org, &f.slack.id, run, &many)
        .await
        .unwrap();
    s.upsert_users(&f.org, &f.slack.id, run, &many)
        .await
        .unwrap();
    assert_eq!(all_users(s, &f.org, Some(&f.slack.id)).await.len(), 1234);
    assert_eq!(all_users(s, &f.org, None).await.len(), 1234 + 3);
}

/// Check: disappeared rows are marked removed.
pub async fn disappeared_rows_are_marked_removed(h: &dyn Harness) {
    let s = h.store();
    let f = fixture(s, "org").await;
    import_teams(s, &f, false).await;
    let conn = &f.teams.id;
    let team_a = TeamId::new("team-a").unwrap();
    // Second import: team-a lost channel a2 and member u2; user u2 is gone; team-b was not
    // re-imported in this run (and not finished), so it is left alone.
    let run = s.begin_import(&f.org, conn).await.unwrap();
    s.upsert_teams(&f.org, conn, run, &[team("team-a")])
        .await
        .unwrap();
    s.upsert_channels(
        &f.org,
        conn,
        run,
        &[channel("team-a", "19:a1@thread.tacv2")],
    )
    .await
    .unwrap();
    s.upsert_memberships(&f.org, conn, run, &[member("team-a", "u1")])
        .await
        .unwrap();
    s.finish_team_import(&f.org, conn, run, &team_a)
        .await
        .unwrap();
    s.upsert_users(
        &f.org,
        conn,
        run,
        &[
            user("u1", "Alice", Some("alice@contoso.com")),
            user("u3", "Guest", None),
        ],
    )
    .await
    .unwrap();
    s.finish_user_import(&f.org, conn, run).await.unwrap();

    let a1 = s
        .get_channel(&f.org, &ch("msteams:team-a/19:a1@thread.tacv2"))
        .await
        .unwrap()
        .unwrap();
    let a2 = s
        .get_channel(&f.org, &ch("msteams:team-a/19:a2@thread.tacv2"))
        .await
        .unwrap()
        .unwrap();
    let b1 = s
        .get_channel(&f.org, &ch("msteams:team-b/19:b1@thread.tacv2"))
        .await
        .unwrap()
        .unwrap();
    assert!(!a1.removed);
    assert!(a2.removed, "a channel gone upstream must be marked removed");
    assert!(!b1.removed, "a team not re-imported is left alone");
    assert_eq!(all_channels(s, &f.org, Some(conn)).await.len(), 3);
    let u2 = s
        .get_user(&f.org, PlatformKind::Msteams, &uid("u2"))
        .await
        .unwrap()
        .unwrap();
    assert!(u2.removed);
    assert!(
        !s.get_user(&f.org, PlatformKind::Msteams, &uid("u1"))
            .await
            .unwrap()
            .unwrap()
            .removed
    );
    assert_eq!(
        s.list_memberships(&f.org, conn, &team_a).await.unwrap(),
        vec![member("team-a", "u1")]
    );
    assert_eq!(
        s.list_memberships(&f.org, conn, &TeamId::new("team-b").unwrap())
            .await
            .unwrap()
            .len(),
        1
    );

    // It comes back: live again.
    import_teams(s, &f, false).await;
    assert!(
        !s.get_channel(&f.org, &a2.reference)
            .await
            .unwrap()
            .unwrap()
            .removed
    );
    assert!(
        !s.get_user(&f.org, PlatformKind::Msteams, &uid("u2"))
            .await
            .unwrap()
            .unwrap()
            .removed
    );
    assert_eq!(
        s.list_memberships(&f.org, conn, &team_a)
            .await
            .unwrap()
            .len(),
        2
    );

    // An older run finishing late does not mark what a newer run saw.
    let old_run = s.begin_import(&f.org, conn).await.unwrap();
    let new_run = s.begin_import(&f.org, conn).await.unwrap();
    s.upsert_users(&f.org, conn, new_run, &[user("u9", "New", None)])
        .await
        .unwrap();
    s.finish_user_import(&f.org, conn, old_run).await.unwrap();
    assert!(
        !s.get_user(&f.org, PlatformKind::Msteams, &uid("u9"))
            .await
            .unwrap()
            .unwrap()
            .removed
    );
}

/// Check: identity map.
pub async fn identity_map(h: &dyn Harness) {
    let s = h.store();
    let f = fixture(s, "org").await;
    let (slack, teams) = (PlatformKind::Slack, PlatformKind::Msteams);
    let run = s.begin_import(&f.org, &f.slack.id).await.unwrap();
    s.upsert_users(
        &f.org,
        &f.slack.id,
        run,
        &[
            user("U1", "alice", Some("Alice@Contoso.COM")),
            user("U2", "bob", Some("bob@contoso.com")),
            user("U3", "carol", None),
        ],
    )
    .await
    .unwrap();
    let run = s.begin_import(&f.org, &f.teams.id).await.unwrap();
    let mut b_deleted = user("B1", "Bob (old)", Some("BOB@contoso.com"));
    b_deleted.is_deleted = true;
    s.upsert_users(
        &f.org,
        &f.teams.id,
        run,
        &[user("A1", "Alice", Some(" alice@contoso.com ")), b_deleted],
    )
    .await
    .unwrap();
    // Another organization with the same emails must not interfere.
    let other = fixture(s, "other").await;
    let orun = s.begin_import(&other.org, &other.teams.id).await.unwrap();
    s.upsert_users(
        &other.org,
        &other.teams.id,
        orun,
        &[user("Z1", "Bob", Some("bob@contoso.com"))],
    )
    .await
    .unwrap();

    let cp = |p, u: &'static str, t| {
        let org = f.org.clone();
        async move { s.counterpart(&org, p, &uid(u), t).await.unwrap() }
    };
    assert_eq!(
        cp(slack, "U1", teams).await,
        Some(uid("A1")),
        "case-insensitive email match"
    );
    assert_eq!(cp(teams, "A1", slack).await, Some(uid("U1")));
    assert_eq!(
        cp(slack, "U2", teams).await,
        None,
        "deleted users are not counterparts"
    );
    assert_eq!(cp(slack, "U3", teams).await, None, "no email, no match");
    assert_eq!(cp(slack, "NOPE", teams).await, None);
    assert_eq!(cp(slack, "U1", slack).await, Some(uid("U1")));

    let run = s.begin_import(&f.org, &f.teams.id).await.unwrap();
    s.upsert_users(
        &f.org,
        &f.teams.id,
        run,
        &[user("B2", "Bob", Some("bob@contoso.com"))],
    )
    .await
    .unwrap();
    assert_eq!(cp(slack, "U2", teams).await, Some(uid("B2")));

    // A manual link wins, both ways, even over email.
    s.link_identities(&f.org, (slack, &uid("U1")), (teams, &uid("B2")))
        .await
        .unwrap();
    assert_eq!(cp(slack, "U1", teams).await, Some(uid("B2")));
    assert_eq!(cp(teams, "B2", slack).await, Some(uid("U1")));
    // Linked users are out of email matching towards each other's platform.
    assert_eq!(cp(teams, "A1", slack).await, None);
    assert_eq!(cp(slack, "U2", teams).await, None);
    // Relinking replaces the old pair on both sides.
    s.link_identities(&f.org, (teams, &uid("A1")), (slack, &uid("U1")))
        .await
        .unwrap();
    assert_eq!(cp(slack, "U1", teams).await, Some(uid("A1")));
    assert_eq!(cp(teams, "B2", slack).await, Some(uid("U2")));
    // A link to a deleted user still applies (the admin said so).
    s.link_identities(&f.org, (slack, &uid("U3")), (teams, &uid("B1")))
        .await
        .unwrap();
    assert_eq!(cp(slack, "U3", teams).await, Some(uid("B1")));

    s.unlink_identity(&f.org, (slack, &uid("U3")))
        .await
        .unwrap();
    assert_eq!(cp(slack, "U3", teams).await, None);
    // B1 is back to email matching (a deleted source user still has its email).
    assert_eq!(cp(teams, "B1", slack).await, Some(uid("U2")));
    assert_kind(
        s.unlink_identity(&f.org, (slack, &uid("U3"))).await,
        ErrorKind::NotFound,
    );
    assert_kind(
        s.link_identities(&f.org, (slack, &uid("U1")), (slack, &uid("U2")))
            .await,
        ErrorKind::InvalidInput,
    );
    assert_kind(
        s.link_identities(&f.org, (slack, &uid("U1")), (teams, &uid("ghost")))
            .await,
        ErrorKind::NotFound,
    );
    assert_kind(
        s.link_identities(&other.org, (slack, &uid("U1")), (teams, &uid("Z1")))
            .await,
        ErrorKind::NotFound,
    );

    // Removed users are not matched by email.
    s.unlink_identity(&f.org, (slack, &uid("U1")))
        .await
        .unwrap();
    assert_eq!(cp(slack, "U1", teams).await, Some(uid("A1")));
    let run = s.begin_import(&f.org, &f.teams.id).await.unwrap();
    s.upsert_users(
        &f.org,
        &f.teams.id,
        run,
        &[user("B2", "Bob", Some("bob@contoso.com"))],
    )
    .await
    .unwrap();
    s.finish_user_import(&f.org, &f.teams.id, run)
        .await
        .unwrap();
    assert_eq!(cp(slack, "U1", teams).await, None);
    assert_eq!(cp(slack, "U2", teams).await, Some(uid("B2")));
}

/// Check: the manual identity links are listed once per pair, in platform order, per org.
pub async fn identity_links_are_listed_once_per_pair(h: &dyn Harness) {
    let s = h.store();
    let f = fixture(s, "org").await;
    let (slack, teams) = (PlatformKind::Slack, PlatformKind::Msteams);
    assert!(s.list_identity_links(&f.org).await.unwrap().is_empty());
    let run = s.begin_import(&f.org, &f.slack.id).await.unwrap();
    s.upsert_users(
        &f.org,
        &f.slack.id,
        run,
        &[
            user("U1", "alice", Some("alice@contoso.com")),
            user("U2", "bob", None),
        ],
    )
    .await
    .unwrap();
    let run = s.begin_import(&f.org, &f.teams.id).await.unwrap();
    s.upsert_users(
        &f.org,
        &f.teams.id,
        run,
        &[
            user("A1", "Alice", Some("alice@contoso.com")),
            user("B1", "Bob", None),
        ],
    )
    .await
    .unwrap();
    // Linked from either side, a pair is listed once with the Teams user first
    // ("msteams" sorts before "slack").
    s.link_identities(&f.org, (slack, &uid("U2")), (teams, &uid("B1")))
        .await
        .unwrap();
    s.link_identities(&f.org, (teams, &uid("A1")), (slack, &uid("U1")))
        .await
        .unwrap();
    let links = s.list_identity_links(&f.org).await.unwrap();
    let pairs: Vec<_> = links.iter().map(|l| (l.a.clone(), l.b.clone())).collect();
    assert_eq!(
        pairs,
        vec![
            ((teams, uid("A1")), (slack, uid("U1"))),
            ((teams, uid("B1")), (slack, uid("U2"))),
        ]
    );
    // Relinking replaces: U1 now goes with B1, so A1 and U2 are unlinked.
    s.link_identities(&f.org, (slack, &uid("U1")), (teams, &uid("B1")))
        .await
        .unwrap();
    let pairs: Vec<_> = s
        .list_identity_links(&f.org)
        .await
        .unwrap()
        .into_iter()
        .map(|l| (l.a, l.b))
        .collect();
    assert_eq!(pairs, vec![((teams, uid("B1")), (slack, uid("U1")))]);
    // Another organization sees none of them.
    let other = fixture(s, "other").await;
    assert!(s.list_identity_links(&other.org).await.unwrap().is_empty());
    s.unlink_identity(&f.org, (teams, &uid("B1")))
        .await
        .unwrap();
    assert!(s.list_identity_links(&f.org).await.unwrap().is_empty());
}

/// Check: a separation keeps two accounts with one email apart, until it is removed or the
/// two are linked by hand.
pub async fn identity_separations_stop_email_matching(h: &dyn Harness) {
    let s = h.store();
    let f = fixture(s, "org").await;
    let (slack, teams) = (PlatformKind::Slack, PlatformKind::Msteams);
    let run = s.begin_import(&f.org, &f.slack.id).await.unwrap();
    s.upsert_users(
        &f.org,
        &f.slack.id,
        run,
        &[
            user("U1", "sam (sales)", Some("sam@contoso.com")),
            user("U2", "sam (support)", Some("sam@contoso.com")),
        ],
    )
    .await
    .unwrap();
    let run = s.begin_import(&f.org, &f.teams.id).await.unwrap();
    s.upsert_users(
        &f.org,
        &f.teams.id,
        run,
        &[user("A1", "Sam", Some("sam@contoso.com"))],
    )
    .await
    .unwrap();
    let cp = |p, u: &'static str, t| {
        let org = f.org.clone();
        async move { s.counterpart(&org, p, &uid(u), t).await.unwrap() }
    };
    assert_eq!(
        cp(teams, "A1", slack).await,
        Some(uid("U1")),
        "lowest id first"
    );
    // A1 is not U1: email matching moves on to U2, and never pairs U1 with A1.
    s.separate_identities(&f.org, (teams, &uid("A1")), (slack, &uid("U1")))
        .await
        .unwrap();
    s.separate_identities(&f.org, (slack, &uid("U1")), (teams, &uid("A1")))
        .await
        .unwrap();
    assert_eq!(cp(teams, "A1", slack).await, Some(uid("U2")));
    assert_eq!(cp(slack, "U1", teams).await, None);
    assert_eq!(cp(slack, "U2", teams).await, Some(uid("A1")));
    let seps = s.list_identity_separations(&f.org).await.unwrap();
    assert_eq!(seps.len(), 1, "idempotent, one per pair: {seps:?}");
    assert_eq!(
        (seps[0].a.clone(), seps[0].b.clone()),
        ((teams, uid("A1")), (slack, uid("U1")))
    );
    assert!(s.list_identity_links(&f.org).await.unwrap().is_empty());
    // Bad input changes nothing.
    assert_kind(
        s.separate_identities(&f.org, (slack, &uid("U1")), (slack, &uid("U2")))
            .await,
        ErrorKind::InvalidInput,
    );
    assert_kind(
        s.separate_identities(&f.org, (slack, &uid("U1")), (teams, &uid("ghost")))
            .await,
        ErrorKind::NotFound,
    );
    let other = fixture(s, "other").await;
    assert!(
        s.list_identity_separations(&other.org)
            .await
            .unwrap()
            .is_empty()
    );
    assert_kind(
        s.separate_identities(&other.org, (slack, &uid("U1")), (teams, &uid("A1")))
            .await,
        ErrorKind::NotFound,
    );
    // Linking the two by hand replaces the separation.
    s.link_identities(&f.org, (slack, &uid("U1")), (teams, &uid("A1")))
        .await
        .unwrap();
    assert!(
        s.list_identity_separations(&f.org)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(cp(slack, "U1", teams).await, Some(uid("A1")));
    // Separating linked users removes the link; unlinking removes the separation.
    s.separate_identities(&f.org, (slack, &uid("U1")), (teams, &uid("A1")))
        .await
        .unwrap();
    assert!(s.list_identity_links(&f.org).await.unwrap().is_empty());
    assert_eq!(cp(slack, "U1", teams).await, None);
    s.unlink_identity(&f.org, (slack, &uid("U1")))
        .await
        .unwrap();
    assert!(
        s.list_identity_separations(&f.org)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(cp(slack, "U1", teams).await, Some(uid("A1")));
    assert_kind(
        s.unlink_identity(&f.org, (slack, &uid("U1"))).await,
        ErrorKind::NotFound,
    );
}

/// Check: admin tokens are listed by name with their lifetime, revoked ones marked.
pub async fn admin_tokens_are_listed_without_secrets(h: &dyn Harness) {
    let s = h.store();
    let a = s.create_org("Contoso").await.unwrap();
    let b = s.create_org("Fabrikam").await.unwrap();
    assert!(s.list_admin_tokens(&a.id).await.unwrap().is_empty());
    let before = OffsetDateTime::now_utc() - Duration::from_secs(5);
    let ci = s.create_admin_token(&a.id, "ci").await.unwrap();
    s.create_admin_token(&a.id, "ops").await.unwrap();
    s.create_admin_token(&b.id, "bob").await.unwrap();
    s.revoke_admin_token(&a.id, "ci").await.unwrap();
    let list = s.list_admin_tokens(&a.id).await.unwrap();
    let names: Vec<&str> = list.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, vec!["ci", "ops"], "oldest first, only this org's");
    assert!(list[0].revoked_at.is_some());
    assert!(list[1].revoked_at.is_none());
    assert!(list.iter().all(|t| t.created_at >= before));
    let debug = format!("{list:?}");
    assert!(!debug.contains(ci.expose_secret()), "{debug}");
    assert_eq!(s.list_admin_tokens(&b.id).await.unwrap().len(), 1);
}

// ----- universal channels ---------------------------------------------------------------------

/// Check: universal channels.
pub async fn universal_channels(h: &dyn Harness) {
    let s = h.store();
    let f = fixture(s, "org").await;
    let mut uc = universal(&f, SLACK_C1, TEAMS_C1);
    uc.relay_membership_notices = true;
    s.create_universal_channel(&uc).await.unwrap();
    assert_eq!(
        s.get_universal_channel(&f.org, uc.id()).await.unwrap(),
        Some(uc.clone())
    );
    assert_eq!(
        s.list_universal_channels(&f.org).await.unwrap(),
        vec![uc.clone()]
    );
    for r in [SLACK_C1, TEAMS_C1] {
        assert_eq!(
            s.find_universal_channel(&f.org, &ch(r)).await.unwrap(),
            Some(uc.clone())
        );
    }
    assert_eq!(
        s.find_universal_channel(&f.org, &ch("slack:T1/C999"))
            .await
            .unwrap(),
        None
    );

    // A channel belongs to one universal channel at most.
    let clash = universal(&f, SLACK_C1, "msteams:team-1/19:two@thread.tacv2");
    let e = assert_kind(
        s.create_universal_channel(&clash).await,
        ErrorKind::Conflict,
    );
    assert!(e.message().contains("already linked"), "{e}");
    assert_kind(s.create_universal_channel(&uc).await, ErrorKind::Conflict);
    assert_eq!(s.list_universal_channels(&f.org).await.unwrap().len(), 1);

    // Endpoints must go through a connection of their platform, in the same organization.
    let wrong = UniversalChannel::new(
        UniversalChannelId::generate(),
        f.org.clone(),
        "wrong",
        vec![
            Endpoint {
                connection: f.teams.id.clone(),
                channel: ch("slack:T1/C7"),
            },
            Endpoint {
                connection: f.teams.id.clone(),
                channel: ch("msteams:team-1/19:7@thread.tacv2"),
            },
        ],
    )
    .unwrap();
    assert_kind(
        s.create_universal_channel(&wrong).await,
        ErrorKind::InvalidInput,
    );
    let other = fixture(s, "other").await;
    let foreign = UniversalChannel::new(
        UniversalChannelId::generate(),
        f.org.clone(),
        "foreign",
        vec![
            Endpoint {
                connection: other.slack.id.clone(),
                channel: ch("slack:T1/C8"),
            },
            Endpoint {
                connection: f.teams.id.clone(),
                channel: ch("msteams:team-1/19:8@thread.tacv2"),
            },
        ],
    )
    .unwrap();
    assert_kind(
        s.create_universal_channel(&foreign).await,
        ErrorKind::NotFound,
    );
    assert_eq!(s.list_universal_channels(&f.org).await.unwrap().len(), 1);

    // Three endpoints, order kept.
    let three = UniversalChannel::new(
        UniversalChannelId::generate(),
        f.org.clone(),
        "three",
        vec![
            Endpoint {
                connection: f.teams.id.clone(),
                channel: ch("msteams:team-1/19:3@thread.tacv2"),
            },
            Endpoint {
                connection: f.slack.id.clone(),
                channel: ch("slack:T1/C3"),
            },
            Endpoint {
                connection: f.slack.id.clone(),
                channel: ch("slack:T1/C4"),
            },
        ],
    )
    .unwrap();
    s.create_universal_channel(&three).await.unwrap();
    assert_eq!(
        s.get_universal_channel(&f.org, three.id())
            .await
            .unwrap()
            .unwrap()
            .endpoints(),
        three.endpoints()
    );
    assert_eq!(
        s.list_universal_channels(&f.org).await.unwrap(),
        vec![uc.clone(), three.clone()]
    );

    s.delete_universal_channel(&f.org, uc.id()).await.unwrap();
    assert_eq!(
        s.get_universal_channel(&f.org, uc.id()).await.unwrap(),
        None
    );
    assert_eq!(
        s.find_universal_channel(&f.org, &ch(SLACK_C1))
            .await
            .unwrap(),
        None
    );
    assert_kind(
        s.delete_universal_channel(&f.org, uc.id()).await,
        ErrorKind::NotFound,
    );
    // Its channels can be linked again.
    s.create_universal_channel(&clash).await.unwrap();
}

// ----- message map ----------------------------------------------------------------------------

/// Check: message map.
pub async fn message_map(h: &dyn Harness) {
    let s = h.store();
    let f = fixture(s, "org").await;
    let u = UniversalMessageId::generate();
    let original = MessageCopy {
        universal: u.clone(),
        channel: ch(SLACK_C1),
        message: MessageId::new("1700000000.000100").unwrap(),
        thread_root: None,
        posted_by: None,
        posted_by_account: None,
        part: 0,
    };
    let copy = MessageCopy {
        universal: u.clone(),
        channel: ch(TEAMS_C1),
        message: MessageId::new("1700000001234").unwrap(),
        thread_root: Some(MessageId::new("1699999999999").unwrap()),
        posted_by: Some(PostingIdentity::ServiceAccount),
        posted_by_account: None,
        part: 0,
    };
    s.put_message_copy(&f.org, &original).await.unwrap();
    s.put_message_copy(&f.org, &copy).await.unwrap();
    s.put_message_copy(&f.org, &copy).await.unwrap(); // idempotent
    assert_eq!(
        s.find_message_copy(&f.org, &copy.channel, &copy.message)
            .await
            .unwrap(),
        Some(copy.clone())
    );
    assert_eq!(
        s.find_message_copy(&f.org, &original.channel, &original.message)
            .await
            .unwrap(),
        Some(original.clone())
    );
    assert_eq!(
        s.find_message_copy(&f.org, &ch(SLACK_C1), &MessageId::new("nope").unwrap())
            .await
            .unwrap(),
        None
    );
    // Several at once: only what the map knows, in that channel, of that organization.
    let nope = MessageId::new("nope").unwrap();
    let found = s
        .find_message_copies(
            &f.org,
            &copy.channel,
            &[nope.clone(), copy.message.clone(), original.message.clone()],
        )
        .await
        .unwrap();
    assert_eq!(found, vec![copy.clone()]);
    assert!(
        s.find_message_copies(
            &OrgId::generate(),
            &copy.channel,
            std::slice::from_ref(&copy.message)
        )
        .await
        .unwrap()
        .is_empty()
    );
    assert!(
        s.find_message_copies(&f.org, &copy.channel, &[])
            .await
            .unwrap()
            .is_empty()
    );
    let all = s.message_copies(&f.org, &u).await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(all.contains(&original) && all.contains(&copy));
    assert!(
        s.message_copies(&f.org, &UniversalMessageId::generate())
            .await
            .unwrap()
            .is_empty()
    );

    let mut remapped = copy.clone();
    remapped.universal = UniversalMessageId::generate();
    assert_kind(
        s.put_message_copy(&f.org, &remapped).await,
        ErrorKind::Conflict,
    );
    assert_kind(
        s.put_message_copy(&OrgId::generate(), &copy).await,
        ErrorKind::NotFound,
    );

    let t0 = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    let t1 = t0 + time::Duration::seconds(5);
    let t2 = t1 + time::Duration::nanoseconds(1);
    assert!(
        s.record_message_edit(&f.org, &copy.channel, &copy.message, t1)
            .await
            .unwrap()
    );
    assert!(
        !s.record_message_edit(&f.org, &copy.channel, &copy.message, t1)
            .await
            .unwrap()
    );
    assert!(
        !s.record_message_edit(&f.org, &copy.channel, &copy.message, t0)
            .await
            .unwrap()
    );
    assert!(
        s.record_message_edit(&f.org, &copy.channel, &copy.message, t2)
            .await
            .unwrap()
    );
    // Edits of the original are tracked separately.
    assert!(
        s.record_message_edit(&f.org, &original.channel, &original.message, t0)
            .await
            .unwrap()
    );
    assert_kind(
        s.record_message_edit(&f.org, &copy.channel, &MessageId::new("nope").unwrap(), t0)
            .await,
        ErrorKind::NotFound,
    );
}

// ----- sync state -----------------------------------------------------------------------------

/// Check: sync state.
pub async fn sync_state(h: &dyn Harness) {
    let s = h.store();
    let f = fixture(s, "org").await;
    let delta =
        "https://graph.microsoft.com/v1.0/teams/x/channels/y/messages/delta?$deltatoken=abc";
    s.put_cursor(&f.org, &f.teams.id, &delta_key(TEAMS_C1), delta)
        .await
        .unwrap();
    assert_eq!(
        s.get_cursor(&f.org, &f.teams.id, &delta_key(TEAMS_C1))
            .await
            .unwrap()
            .as_deref(),
        Some(delta)
    );
    s.put_cursor(&f.org, &f.teams.id, &delta_key(TEAMS_C1), "next")
        .await
        .unwrap();
    assert_eq!(
        s.get_cursor(&f.org, &f.teams.id, &delta_key(TEAMS_C1))
            .await
            .unwrap()
            .as_deref(),
        Some("next")
    );
    assert_eq!(
        s.get_cursor(&f.org, &f.slack.id, &delta_key(TEAMS_C1))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.get_cursor(&f.org, &f.teams.id, &history_key(TEAMS_C1))
            .await
            .unwrap(),
        None
    );
    assert_kind(
        s.put_cursor(&f.org, &ConnectionId::generate(), &delta_key(TEAMS_C1), "v")
            .await,
        ErrorKind::NotFound,
    );
    assert_kind(
        s.put_cursor(&f.org, &f.teams.id, &history_key(SLACK_C1), "v")
            .await,
        ErrorKind::InvalidInput,
    );
    assert_kind(
        s.put_cursor(
            &f.org,
            &f.teams.id,
            &delta_key(TEAMS_C1),
            &"v".repeat(20_000),
        )
        .await,
        ErrorKind::InvalidInput,
    );

    let expires = OffsetDateTime::now_utc() + time::Duration::hours(1);
    let sub = Subscription {
        id: sid("sub-1"),
        connection: f.teams.id.clone(),
        channel: ch(TEAMS_C1),
        client_state: SecretString::from("cs-1".to_owned()),
        expires_at: expires,
    };
    s.put_subscription(&f.org, &sub).await.unwrap();
    let (org, got) = s.get_subscription(&sid("sub-1")).await.unwrap().unwrap();
    assert_eq!(org, f.org);
    assert_eq!(got.id, sid("sub-1"));
    assert_eq!(got.connection, f.teams.id);
    assert_eq!(got.channel, ch(TEAMS_C1));
    assert_eq!(got.client_state.expose_secret(), "cs-1");
    assert_eq!(got.expires_at, expires);
    // Renewal replaces.
    let mut renewed = sub.clone();
    renewed.expires_at = expires + time::Duration::hours(1);
    renewed.client_state = SecretString::from("cs-2".to_owned());
    s.put_subscription(&f.org, &renewed).await.unwrap();
    let list = s.list_subscriptions(&f.org).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].expires_at, renewed.expires_at);
    assert_eq!(list[0].client_state.expose_secret(), "cs-2");
    // Another organization cannot take it over.
    let other = fixture(s, "other").await;
    let mut stolen = sub.clone();
    stolen.connection = other.teams.id.clone();
    assert_kind(
        s.put_subscription(&other.org, &stolen).await,
        ErrorKind::Conflict,
    );
    assert!(s.list_subscriptions(&other.org).await.unwrap().is_empty());
    // A Teams subscription through the Slack connection is refused.
    let mut mismatched = sub.clone();
    mismatched.id = sid("sub-2");
    mismatched.connection = f.slack.id.clone();
    assert_kind(
        s.put_subscription(&f.org, &mismatched).await,
        ErrorKind::InvalidInput,
    );

    s.delete_subscription(&other.org, &sid("sub-1"))
        .await
        .unwrap(); // not theirs: nothing happens
    assert!(s.get_subscription(&sid("sub-1")).await.unwrap().is_some());
    s.delete_subscription(&f.org, &sid("sub-1")).await.unwrap();
    assert!(s.get_subscription(&sid("sub-1")).await.unwrap().is_none());
    s.delete_subscription(&f.org, &sid("sub-1")).await.unwrap();
    assert!(s.list_subscriptions(&f.org).await.unwrap().is_empty());
}

// ----- queues ---------------------------------------------------------------------------------

/// Check: a deferred item comes back after its delay and, while it waits, later items of its
/// channel are not handed out; only the holder can defer.
pub async fn inbox_defers_items_and_holds_their_channel(h: &dyn Harness) {
    let s = h.store();
    let f = fixture(s, "org").await;
    let c2 = "slack:T1/C2";
    let before = OffsetDateTime::now_utc();
    for (id, chan) in [("Ev1", SLACK_C1), ("Ev2", SLACK_C1), ("Ev3", c2)] {
        s.inbox_accept(&f.org, &f.slack.id, &event(id, chan, id))
            .await
            .unwrap();
    }
    let leased = s.inbox_lease(&w("w1"), 10, LEASE).await.unwrap();
    assert_eq!(leased.len(), 3);
    // When each was stored, by the receiving side's clock.
    let after = OffsetDateTime::now_utc();
    assert!(
        leased
            .iter()
            .all(|i| i.received_at >= before && i.received_at <= after)
    );
    assert!(leased[0].received_at <= leased[1].received_at);
    let delay = Duration::from_millis(400);
    // Someone else's defer changes nothing: w1 still holds them.
    s.inbox_defer(&w("w2"), &[leased[0].id], Duration::ZERO)
        .await
        .unwrap();
    assert!(s.inbox_lease(&w("w2"), 10, LEASE).await.unwrap().is_empty());
    s.inbox_defer(&w("w1"), &[leased[0].id, leased[1].id], delay)
        .await
        .unwrap();
    s.inbox_complete(&w("w1"), leased[2].id, &[]).await.unwrap();
    // A deferred item can no longer be completed by its former holder.
    assert_kind(
        s.inbox_complete(&w("w1"), leased[0].id, &[]).await,
        ErrorKind::Conflict,
    );
    // Waiting: neither they nor a later item of their channel are handed out; other
    // channels are.
    s.inbox_accept(&f.org, &f.slack.id, &event("Ev4", SLACK_C1, "later"))
        .await
        .unwrap();
    s.inbox_accept(&f.org, &f.slack.id, &event("Ev5", c2, "other"))
        .await
        .unwrap();
    let now = s.inbox_lease(&w("w2"), 10, LEASE).await.unwrap();
    assert_eq!(now.len(), 1, "only the other channel's item: {now:?}");
    assert_eq!(now[0].item.dedupe_key(), Some("Ev5"));
    assert_eq!(s.inbox_pending(&f.org).await.unwrap(), 4);
    tokio::time::sleep(delay + Duration::from_millis(50)).await;
    let back = s.inbox_lease(&w("w2"), 10, LEASE).await.unwrap();
    let keys: Vec<_> = back.iter().filter_map(|i| i.item.dedupe_key()).collect();
    assert_eq!(
        keys,
        ["Ev1", "Ev2", "Ev4"],
        "back in order with the later one"
    );
    for item in back.iter().chain(&now) {
        s.inbox_complete(&w("w2"), item.id, &[]).await.unwrap();
    }
    assert_eq!(s.inbox_pending(&f.org).await.unwrap(), 0);
}

/// Check: an item given back after a failed attempt waits its delay with its channel held
/// behind it, and the attempt counts (a deferral and a fresh lease do not; a lease that ran
/// out does).
pub async fn inbox_retry_counts_attempts_and_holds_the_channel(h: &dyn Harness) {
    let s = h.store();
    let f = fixture(s, "org").await;
    for id in ["Ev1", "Ev2"] {
        s.inbox_accept(&f.org, &f.slack.id, &event(id, SLACK_C1, id))
            .await
            .unwrap();
    }
    let leased = s.inbox_lease(&w("w1"), 10, LEASE).await.unwrap();
    assert_eq!(
        leased.iter().map(|i| i.attempts).collect::<Vec<_>>(),
        [0, 0]
    );
    let delay = Duration::from_millis(300);
    // Someone else's give-back changes nothing.
    s.inbox_retry(&w("w2"), &[leased[0].id], Duration::ZERO)
        .await
        .unwrap();
    assert!(s.inbox_lease(&w("w2"), 10, LEASE).await.unwrap().is_empty());
    s.inbox_retry(&w("w1"), &[leased[0].id], delay)
        .await
        .unwrap();
    s.inbox_defer(&w("w1"), &[leased[1].id], Duration::ZERO)
        .await
        .unwrap();
    assert_kind(
        s.inbox_complete(&w("w1"), leased[0].id, &[]).await,
        ErrorKind::Conflict,
    );
    // Ev2 is due at once but waits behind Ev1.
    assert!(s.inbox_lease(&w("w2"), 10, LEASE).await.unwrap().is_empty());
    tokio::time::sleep(delay + Duration::from_millis(50)).await;
    let short = Duration::from_millis(100);
    let back = s.inbox_lease(&w("w2"), 10, short).await.unwrap();
    let seen: Vec<_> = back
        .iter()
        .map(|i| (i.item.dedupe_key().unwrap().to_owned(), i.attempts))
        .collect();
    assert_eq!(seen, [("Ev1".into(), 1), ("Ev2".into(), 0)]);
    // A lease that runs out counts as an attempt too.
    tokio::time::sleep(short + Duration::from_millis(50)).await;
    let again = s.inbox_lease(&w("w3"), 10, LEASE).await.unwrap();
    assert_eq!(again.iter().map(|i| i.attempts).collect::<Vec<_>>(), [2, 1]);
    for item in &again {
        s.inbox_complete(&w("w3"), item.id, &[]).await.unwrap();
    }
    assert_eq!(s.inbox_pending(&f.org).await.unwrap(), 0);
}

/// Check: inbox dedupes and leases per channel.
pub async fn inbox_dedupes_and_leases_per_channel(h: &dyn Harness) {
    let s = h.store();
    let f = fixture(s, "org").await;
    let other = fixture(s, "other").await;
    let e1 = event("Ev1", SLACK_C1, "one");
    assert_eq!(
        s.inbox_accept(&f.org, &f.slack.id, &e1).await.unwrap(),
        InboxOutcome::Accepted
    );
    assert_eq!(
        s.inbox_accept(&f.org, &f.slack.id, &e1).await.unwrap(),
        InboxOutcome::Duplicate
    );
    // The same event id in another organization is a different event.
    assert_eq!(
        s.inbox_accept(&other.org, &other.slack.id, &e1)
            .await
            .unwrap(),
        InboxOutcome::Accepted
    );
    assert_kind(
        s.inbox_accept(&f.org, &f.teams.id, &e1).await,
        ErrorKind::InvalidInput,
    );
    assert_kind(
        s.inbox_accept(&f.org, &ConnectionId::generate(), &e1).await,
        ErrorKind::NotFound,
    );
    let huge = event("EvHuge", SLACK_C1, &"x".repeat(300_000));
    assert_kind(
        s.inbox_accept(&f.org, &f.slack.id, &huge).await,
        ErrorKind::InvalidInput,
    );

    assert_eq!(
        s.inbox_pending(&f.org).await.unwrap(),
        1,
        "one item of this org"
    );
    let leased = s.inbox_lease(&w("w1"), 10, LEASE).await.unwrap();
    assert_eq!(leased.len(), 2);
    assert_eq!(leased[0].org, f.org);
    assert_eq!(leased[0].connection, f.slack.id);
    assert_eq!(leased[0].item, e1);
    assert_eq!(leased[1].org, other.org);
    assert!(leased[0].id < leased[1].id);
    assert!(s.inbox_lease(&w("w2"), 10, LEASE).await.unwrap().is_empty());
    assert_eq!(
        s.inbox_pending(&f.org).await.unwrap(),
        1,
        "leased is still pending"
    );
    for item in &leased {
        s.inbox_complete(&w("w1"), item.id, &[]).await.unwrap();
    }
    assert_eq!(s.inbox_pending(&f.org).await.unwrap(), 0);
    // Still deduplicated after processing.
    assert_eq!(
        s.inbox_accept(&f.org, &f.slack.id, &e1).await.unwrap(),
        InboxOutcome::Duplicate
    );

    // Per-channel exclusivity: while w1 holds the oldest event of C1, nobody else gets C1.
    let c2 = "slack:T1/C2";
    for (id, chan) in [
        ("Ev2", SLACK_C1),
        ("Ev3", SLACK_C1),
        ("Ev4", c2),
        ("Ev5", SLACK_C1),
    ] {
        s.inbox_accept(&f.org, &f.slack.id, &event(id, chan, id))
            .await
            .unwrap();
    }
    let w1 = s.inbox_lease(&w("w1"), 1, LEASE).await.unwrap();
    assert_eq!(w1.len(), 1);
    assert_eq!(w1[0].item.dedupe_key(), Some("Ev2"));
    let w2 = s.inbox_lease(&w("w2"), 10, LEASE).await.unwrap();
    assert_eq!(
        w2.iter()
            .map(|i| i.item.dedupe_key().unwrap())
            .collect::<Vec<_>>(),
        vec!["Ev4"]
    );
    // Completing with deliveries enqueues them atomically.
    let d = delivery(&f.org, &f.teams, TEAMS_C1, 2);
    assert_kind(
        s.inbox_complete(&w("w2"), w1[0].id, std::slice::from_ref(&d))
            .await,
        ErrorKind::Conflict,
    );
    let foreign = delivery(&other.org, &other.teams, TEAMS_C1, 2);
    assert_kind(
        s.inbox_complete(&w("w1"), w1[0].id, &[d.clone(), foreign])
            .await,
        ErrorKind::InvalidInput,
    );
    assert_eq!(s.outbox_pending(&f.org).await.unwrap(), 0);
    s.inbox_complete(&w("w1"), w1[0].id, &[d.clone(), d.clone()])
        .await
        .unwrap();
    assert_eq!(s.outbox_pending(&f.org).await.unwrap(), 2);
    assert_kind(
        s.inbox_complete(&w("w1"), w1[0].id, &[]).await,
        ErrorKind::Conflict,
    );
    assert_kind(
        s.inbox_complete(&w("w1"), InboxId(987_654), &[]).await,
        ErrorKind::NotFound,
    );
    // One lease may hold several events of a channel, in order.
    let rest = s.inbox_lease(&w("w3"), 10, LEASE).await.unwrap();
    assert_eq!(
        rest.iter()
            .map(|i| i.item.dedupe_key().unwrap())
            .collect::<Vec<_>>(),
        vec!["Ev3", "Ev5"]
    );
    assert!(s.inbox_lease(&w("w3"), 0, LEASE).await.unwrap().is_empty());
}

/// Check: outbox order retry and fail.
pub async fn outbox_order_retry_and_fail(h: &dyn Harness) {
    let s = h.store();
    let f = fixture(s, "org").await;
    let x = TEAMS_C1;
    let y = "msteams:team-1/19:two@thread.tacv2";
    s.outbox_enqueue(&[
        delivery(&f.org, &f.teams, x, 1),
        delivery(&f.org, &f.teams, x, 2),
        delivery(&f.org, &f.teams, x, 3),
        delivery(&f.org, &f.teams, y, 4),
    ])
    .await
    .unwrap();
    assert_eq!(s.outbox_pending(&f.org).await.unwrap(), 4);
    let first = s.outbox_lease(&w("w1"), 10, LEASE).await.unwrap();
    assert_eq!(
        first.iter().map(|d| job_n(&d.job)).collect::<Vec<_>>(),
        vec![1, 4],
        "one delivery per target, oldest first"
    );
    assert_eq!(first[0].attempts, 0);
    assert_eq!(first[0].target, ch(x));
    assert_eq!(first[0].connection, f.teams.id);
    assert_eq!(first[0].org, f.org);
    assert!(
        s.outbox_lease(&w("w2"), 10, LEASE)
            .await
            .unwrap()
            .is_empty()
    );

    // Retry later: the target waits (order kept), the delivery comes back with its attempt.
    let later = OffsetDateTime::now_utc() + time::Duration::milliseconds(800);
    s.outbox_retry(&w("w1"), first[0].id, later, "HTTP 429")
        .await
        .unwrap();
    assert_kind(
        s.outbox_retry(&w("w1"), first[0].id, later, "again").await,
        ErrorKind::Conflict,
    );
    assert!(
        s.outbox_lease(&w("w2"), 10, LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let again = s.outbox_lease(&w("w2"), 10, LEASE).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, first[0].id);
    assert_eq!(again[0].attempts, 1);
    assert_kind(
        s.outbox_complete(&w("w1"), again[0].id).await,
        ErrorKind::Conflict,
    );
    s.outbox_complete(&w("w2"), again[0].id).await.unwrap();
    assert_kind(
        s.outbox_complete(&w("w2"), again[0].id).await,
        ErrorKind::Conflict,
    );

    let second = s.outbox_lease(&w("w2"), 10, LEASE).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(job_n(&second[0].job), 2);
    s.outbox_fail(&w("w2"), second[0].id, &"e".repeat(100_000))
        .await
        .unwrap();
    // A failed delivery does not block the ones after it.
    let third = s.outbox_lease(&w("w2"), 10, LEASE).await.unwrap();
    assert_eq!(third.len(), 1);
    assert_eq!(job_n(&third[0].job), 3);
    s.outbox_complete(&w("w2"), third[0].id).await.unwrap();
    s.outbox_complete(&w("w1"), first[1].id).await.unwrap();
    assert_eq!(s.outbox_pending(&f.org).await.unwrap(), 0);
    assert!(
        s.outbox_lease(&w("w2"), 10, LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    assert_kind(
        s.outbox_complete(&w("w2"), DeliveryId(987_654)).await,
        ErrorKind::NotFound,
    );
    assert_kind(
        s.outbox_fail(&w("w2"), second[0].id, "x").await,
        ErrorKind::Conflict,
    );

    // A bad delivery refuses the whole batch.
    let wrong_platform = delivery(&f.org, &f.slack, x, 9);
    assert_kind(
        s.outbox_enqueue(&[delivery(&f.org, &f.teams, x, 8), wrong_platform])
            .await,
        ErrorKind::InvalidInput,
    );
    let mut huge = delivery(&f.org, &f.teams, x, 10);
    huge.job = DeliveryJob::Notice {
        text: "x".repeat(300_000),
    };
    assert_kind(s.outbox_enqueue(&[huge]).await, ErrorKind::InvalidInput);
    let mut missing = delivery(&f.org, &f.teams, x, 11);
    missing.connection = ConnectionId::generate();
    assert_kind(s.outbox_enqueue(&[missing]).await, ErrorKind::NotFound);
    assert_eq!(s.outbox_pending(&f.org).await.unwrap(), 0);
    s.outbox_enqueue(&[]).await.unwrap();
    assert!(s.outbox_lease(&w("w1"), 0, LEASE).await.unwrap().is_empty());
}

/// Check: a batch of inbox items completes at once (origin copies, processed marks,
/// deliveries), and a lost lease or a conflicting copy in it changes nothing.
pub async fn inbox_batches_complete_in_one_transaction(h: &dyn Harness) {
    let s = h.store();
    let f = fixture(s, "org").await;
    for id in ["e1", "e2", "e3"] {
        s.inbox_accept(&f.org, &f.slack.id, &event(id, SLACK_C1, "hi"))
            .await
            .unwrap();
    }
    let leased = s.inbox_lease(&w("w1"), 2, LEASE).await.unwrap();
    assert_eq!(leased.len(), 2);
    let copy = |m: &str, u: &str| MessageCopy {
        universal: UniversalMessageId::new(u).unwrap(),
        channel: ch(SLACK_C1),
        message: MessageId::new(m).unwrap(),
        thread_root: None,
        posted_by: None,
        posted_by_account: None,
        part: 0,
    };
    let items = vec![
        CompletedItem {
            id: leased[0].id,
            copies: vec![copy("m-e1", "u-1")],
            deliveries: vec![delivery(&f.org, &f.teams, TEAMS_C1, 1)],
        },
        CompletedItem {
            id: leased[1].id,
            copies: vec![copy("m-e2", "u-2")],
            deliveries: vec![delivery(&f.org, &f.teams, TEAMS_C1, 2)],
        },
    ];
    // Another worker cannot; a conflicting copy refuses the whole batch.
    assert_kind(
        s.inbox_complete_batch(&w("w2"), &items).await,
        ErrorKind::Conflict,
    );
    let mut bad = items.clone();
    bad[1].copies = vec![copy("m-e1", "u-other")];
    assert_kind(
        s.inbox_complete_batch(&w("w1"), &bad).await,
        ErrorKind::Conflict,
    );
    assert_eq!(s.outbox_pending(&f.org).await.unwrap(), 0);
    assert!(
        s.find_message_copy(&f.org, &ch(SLACK_C1), &MessageId::new("m-e1").unwrap())
            .await
            .unwrap()
            .is_none(),
        "nothing recorded"
    );
    // The same item twice in one batch completes nothing either.
    assert_kind(
        s.inbox_complete_batch(&w("w1"), &[items[0].clone(), items[0].clone()])
            .await,
        ErrorKind::Conflict,
    );
    assert_eq!(s.outbox_pending(&f.org).await.unwrap(), 0);
    s.inbox_complete_batch(&w("w1"), &items).await.unwrap();
    assert_eq!(s.outbox_pending(&f.org).await.unwrap(), 2);
    let c = s
        .find_message_copy(&f.org, &ch(SLACK_C1), &MessageId::new("m-e2").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.universal.as_str(), "u-2");
    let out = s.outbox_lease(&w("w1"), 10, LEASE).await.unwrap();
    assert_eq!(
        out.iter().map(|d| job_n(&d.job)).collect::<Vec<_>>(),
        vec![1]
    );
    // Completed once: again is a conflict; the third item is still there.
    assert_kind(
        s.inbox_complete_batch(&w("w1"), &items).await,
        ErrorKind::Conflict,
    );
    let rest = s.inbox_lease(&w("w1"), 10, LEASE).await.unwrap();
    assert_eq!(rest.len(), 1);
    // A copy recorded again as it is (a redelivery) is no conflict; the batch's new copy
    // is recorded with it.
    s.inbox_complete_batch(
        &w("w1"),
        &[CompletedItem {
            id: rest[0].id,
            copies: vec![copy("m-e2", "u-2"), copy("m-e3", "u-3")],
            deliveries: vec![],
        }],
    )
    .await
    .unwrap();
    let c = s
        .find_message_copy(&f.org, &ch(SLACK_C1), &MessageId::new("m-e3").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.universal.as_str(), "u-3");
    s.inbox_complete_batch(&w("w1"), &[]).await.unwrap();
}

/// Check: a worker extends its lease to the run queued behind it on one target and completes
/// the run at once; dead letters are listed per organization, newest first, and retried.
pub async fn outbox_runs_and_dead_letters(h: &dyn Harness) {
    let s = h.store();
    let f = fixture(s, "org").await;
    let other = fixture(s, "other").await;
    let x = TEAMS_C1;
    let y = "msteams:team-1/19:two@thread.tacv2";
    s.outbox_enqueue(&[
        delivery(&f.org, &f.teams, x, 1),
        delivery(&f.org, &f.teams, y, 2),
        delivery(&f.org, &f.teams, x, 3),
        delivery(&f.org, &f.teams, x, 4),
        delivery(&f.org, &f.teams, x, 5),
    ])
    .await
    .unwrap();
    assert_eq!(s.outbox_backlog(&f.org, &ch(x)).await.unwrap(), 4);
    assert_eq!(s.outbox_backlog(&f.org, &ch(y)).await.unwrap(), 1);
    assert_eq!(s.outbox_backlog(&other.org, &ch(x)).await.unwrap(), 0);
    let head = s.outbox_lease(&w("w1"), 10, LEASE).await.unwrap();
    assert_eq!(
        head.iter().map(|d| job_n(&d.job)).collect::<Vec<_>>(),
        vec![1, 2]
    );
    // Only the holder of the head may extend it.
    assert_kind(
        s.outbox_lease_following(&w("w2"), head[0].id, 10, LEASE)
            .await,
        ErrorKind::Conflict,
    );
    let run = s
        .outbox_lease_following(&w("w1"), head[0].id, 2, LEASE)
        .await
        .unwrap();
    assert_eq!(
        run.iter().map(|d| job_n(&d.job)).collect::<Vec<_>>(),
        vec![3, 4]
    );
    assert!(run.iter().all(|d| d.target == ch(x) && d.attempts == 0));
    // Rows of the run are not handed out again, nor is what comes after them.
    assert!(
        s.outbox_lease(&w("w2"), 10, LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    // A lost lease in the run refuses the whole completion.
    assert_kind(
        s.outbox_complete_many(&w("w2"), &[head[0].id, run[0].id])
            .await,
        ErrorKind::Conflict,
    );
    // One id it cannot complete (here: the same one twice) refuses the others too.
    let backlog = s.outbox_backlog(&f.org, &ch(x)).await.unwrap();
    assert_kind(
        s.outbox_complete_many(&w("w1"), &[head[0].id, run[0].id, run[0].id])
            .await,
        ErrorKind::Conflict,
    );
    assert_eq!(s.outbox_backlog(&f.org, &ch(x)).await.unwrap(), backlog);
    let ids: Vec<DeliveryId> = std::iter::once(head[0].id)
        .chain(run.iter().map(|d| d.id))
        .collect();
    s.outbox_complete_many(&w("w1"), &ids).await.unwrap();
    assert_eq!(s.outbox_backlog(&f.org, &ch(x)).await.unwrap(), 1);
    assert_kind(
        s.outbox_complete_many(&w("w1"), &ids).await,
        ErrorKind::Conflict,
    );
    s.outbox_complete_many(&w("w1"), &[]).await.unwrap();

    // Dead letters.
    let next = s.outbox_lease(&w("w1"), 10, LEASE).await.unwrap();
    assert_eq!(
        next.iter().map(|d| job_n(&d.job)).collect::<Vec<_>>(),
        vec![5]
    );
    s.outbox_fail(&w("w1"), next[0].id, "HTTP 403 forbidden")
        .await
        .unwrap();
    s.outbox_fail(&w("w1"), head[1].id, "token revoked")
        .await
        .unwrap();
    s.outbox_enqueue(&[delivery(&other.org, &other.teams, x, 9)])
        .await
        .unwrap();
    let o = s.outbox_lease(&w("w1"), 10, LEASE).await.unwrap();
    s.outbox_fail(&w("w1"), o[0].id, "elsewhere").await.unwrap();
    assert_eq!(s.outbox_dead_letter_count(&f.org).await.unwrap(), 2);
    let dead = s.outbox_dead_letters(&f.org, None, 10).await.unwrap();
    assert_eq!(
        dead.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![next[0].id, head[1].id],
        "newest first, this organization's only"
    );
    assert_eq!(dead[0].error.as_deref(), Some("HTTP 403 forbidden"));
    assert_eq!(dead[0].target, ch(x));
    assert_eq!(dead[0].connection, f.teams.id);
    assert_eq!(dead[0].attempts, 1);
    assert_eq!(dead[0].job.as_ref().map(job_n), Some(5));
    let page = s
        .outbox_dead_letters(&f.org, Some(next[0].id), 10)
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![head[1].id]
    );
    assert_kind(
        s.outbox_dead_letters(&f.org, None, MAX_PAGE_SIZE + 1).await,
        ErrorKind::InvalidInput,
    );
    // Another organization cannot retry it; a retry queues it again, once.
    assert_kind(
        s.outbox_retry_dead(&other.org, dead[0].id).await,
        ErrorKind::NotFound,
    );
    s.outbox_retry_dead(&f.org, dead[0].id).await.unwrap();
    assert_kind(
        s.outbox_retry_dead(&f.org, dead[0].id).await,
        ErrorKind::NotFound,
    );
    assert_kind(
        s.outbox_retry_dead(&f.org, DeliveryId(987_654)).await,
        ErrorKind::NotFound,
    );
    assert_eq!(s.outbox_dead_letter_count(&f.org).await.unwrap(), 1);
    let again = s.outbox_lease(&w("w2"), 10, LEASE).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, dead[0].id);
    assert_eq!(again[0].attempts, 0);
    s.outbox_complete(&w("w2"), again[0].id).await.unwrap();
    assert_eq!(s.outbox_pending(&f.org).await.unwrap(), 0);
}

/// Check: the reaction ledger counts reactors per emoji, combined posts keep their entries,
/// and messages posted per channel per day add up; all scoped by organization.
pub async fn relay_state_reactions_combined_posts_and_daily_counts(h: &dyn Harness) {
    let s = h.store();
    let f = fixture(s, "org").await;
    let other = fixture(s, "other").await;
    let u = UniversalMessageId::new("u-1").unwrap();
    let thumbs = Emoji::Unicode {
        value: "👍".into(),
        name: Some("+1".into()),
    };
    let key = ReactionKey {
        universal: u.clone(),
        channel: ch(TEAMS_C1),
        part: 0,
        emoji: thumbs.clone(),
    };
    let ann = Reactor {
        platform: PlatformKind::Slack,
        user: uid("UANN"),
        name: "Ann".into(),
    };
    let bob = Reactor {
        platform: PlatformKind::Slack,
        user: uid("UBOB"),
        name: "Bob".into(),
    };
    let t = s.reaction_add(&f.org, &key, &ann).await.unwrap();
    assert!(t.changed);
    assert_eq!(t.reactors, vec![ann.clone()]);
    let t = s.reaction_add(&f.org, &key, &bob).await.unwrap();
    assert!(t.changed);
    assert_eq!(t.reactors, vec![ann.clone(), bob.clone()]);
    // A redelivered add changes nothing.
    let t = s.reaction_add(&f.org, &key, &ann).await.unwrap();
    assert!(!t.changed);
    assert_eq!(t.reactors.len(), 2);
    let party = ReactionKey {
        emoji: Emoji::Custom {
            name: "partyparrot".into(),
        },
        ..key.clone()
    };
    s.reaction_add(&f.org, &party, &bob).await.unwrap();
    // Other parts, channels and organizations are apart.
    let part1 = ReactionKey {
        part: 1,
        ..key.clone()
    };
    assert!(
        s.reaction_add(&f.org, &part1, &ann)
            .await
            .unwrap()
            .reactors
            .len()
            == 1
    );
    assert_eq!(
        s.reaction_add(&other.org, &key, &ann)
            .await
            .unwrap()
            .reactors
            .len(),
        1
    );
    let on = s.reactions_on(&f.org, &u, &ch(TEAMS_C1), 0).await.unwrap();
    assert_eq!(
        on,
        vec![
            (thumbs.clone(), vec![ann.clone(), bob.clone()]),
            (party.emoji.clone(), vec![bob.clone()])
        ]
    );
    let t = s
        .reaction_remove(&f.org, &key, (PlatformKind::Slack, &ann.user))
        .await
        .unwrap();
    assert!(t.changed);
    assert_eq!(t.reactors, vec![bob.clone()]);
    let t = s
        .reaction_remove(&f.org, &key, (PlatformKind::Slack, &ann.user))
        .await
        .unwrap();
    assert!(!t.changed);
    let t = s
        .reaction_remove(&f.org, &key, (PlatformKind::Slack, &bob.user))
        .await
        .unwrap();
    assert!(t.changed && t.reactors.is_empty());
    assert_eq!(
        s.reactions_on(&other.org, &u, &ch(TEAMS_C1), 0)
            .await
            .unwrap()
            .len(),
        1
    );
    let empty = ReactionKey {
        emoji: Emoji::Custom {
            name: String::new(),
        },
        ..key.clone()
    };
    assert_kind(
        s.reaction_add(&f.org, &empty, &ann).await,
        ErrorKind::InvalidInput,
    );

    // Combined posts.
    let content = |text: &str| PortableMessage {
        sender: Sender {
            platform: PlatformKind::Slack,
            user: uid("UANN"),
            display_name: "Ann".into(),
            avatar_url: None,
            email: None,
        },
        text: RichText::plain(text),
        attachments: vec![],
        thread_root: None,
    };
    let (u1, u2) = (
        UniversalMessageId::new("c-1").unwrap(),
        UniversalMessageId::new("c-2").unwrap(),
    );
    let post = CombinedPost {
        channel: ch(TEAMS_C1),
        message: MessageId::new("m-combined").unwrap(),
        entries: vec![
            CombinedEntry {
                universal: u1.clone(),
                content: Some(content("one")),
            },
            CombinedEntry {
                universal: u2.clone(),
                content: Some(content("two")),
            },
        ],
    };
    s.put_combined_post(&f.org, &post).await.unwrap();
    assert_eq!(
        s.find_combined_post(&f.org, &u2, &ch(TEAMS_C1))
            .await
            .unwrap(),
        Some(post.clone())
    );
    assert_eq!(
        s.find_combined_post(&other.org, &u2, &ch(TEAMS_C1))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.find_combined_post(&f.org, &u2, &ch(SLACK_C1))
            .await
            .unwrap(),
        None
    );
    assert_kind(
        s.put_combined_post(&f.org, &post).await,
        ErrorKind::Conflict,
    );
    // What is posted in a channel: combined entries and first parts of copies.
    let alone = UniversalMessageId::new("c-alone").unwrap();
    let second_part = UniversalMessageId::new("c-second-part").unwrap();
    for (universal, message, part) in [(&alone, "m-alone", 0), (&second_part, "m-part", 1)] {
        s.put_message_copy(
            &f.org,
            &MessageCopy {
                universal: universal.clone(),
                channel: ch(TEAMS_C1),
                message: MessageId::new(message).unwrap(),
                thread_root: None,
                posted_by: Some(PostingIdentity::ServiceAccount),
                posted_by_account: None,
                part,
            },
        )
        .await
        .unwrap();
    }
    let never = UniversalMessageId::new("c-never").unwrap();
    let asked = [u1.clone(), u2.clone(), alone.clone(), second_part, never];
    assert_eq!(
        s.posted_in(&f.org, &ch(TEAMS_C1), &asked).await.unwrap(),
        [u1.clone(), u2.clone(), alone].into_iter().collect()
    );
    assert!(
        s.posted_in(&f.org, &ch(SLACK_C1), &asked)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.posted_in(&other.org, &ch(TEAMS_C1), &asked)
            .await
            .unwrap()
            .is_empty()
    );
    // One entry already combined elsewhere refuses the whole post.
    let u3 = UniversalMessageId::new("c-3").unwrap();
    let partly = CombinedPost {
        message: MessageId::new("m-combined-2").unwrap(),
        entries: vec![
            CombinedEntry {
                universal: u3.clone(),
                content: Some(content("three")),
            },
            post.entries[1].clone(),
        ],
        ..post.clone()
    };
    assert_kind(
        s.put_combined_post(&f.org, &partly).await,
        ErrorKind::Conflict,
    );
    assert_eq!(
        s.find_combined_post(&f.org, &u3, &ch(TEAMS_C1))
            .await
            .unwrap(),
        None
    );
    let edited = s
        .set_combined_entry(&f.org, &u1, &ch(TEAMS_C1), Some(&content("one, edited")))
        .await
        .unwrap();
    assert_eq!(edited.entries[0].content, Some(content("one, edited")));
    assert_eq!(edited.entries[1].content, Some(content("two")));
    let deleted = s
        .set_combined_entry(&f.org, &u2, &ch(TEAMS_C1), None)
        .await
        .unwrap();
    assert_eq!(deleted.entries[1].content, None);
    assert_eq!(deleted.entries.len(), 2);
    assert_kind(
        s.set_combined_entry(&other.org, &u2, &ch(TEAMS_C1), None)
            .await,
        ErrorKind::NotFound,
    );
    let empty_post = CombinedPost {
        entries: vec![],
        ..post.clone()
    };
    assert_kind(
        s.put_combined_post(&f.org, &empty_post).await,
        ErrorKind::InvalidInput,
    );
    let twice = CombinedPost {
        message: MessageId::new("m-twice").unwrap(),
        entries: vec![post.entries[0].clone(), post.entries[0].clone()],
        ..post.clone()
    };
    assert_kind(
        s.put_combined_post(&other.org, &twice).await,
        ErrorKind::InvalidInput,
    );

    // Daily counts.
    let day = time::macros::date!(2026 - 12 - 01);
    let next_day = time::macros::date!(2026 - 12 - 02);
    assert_eq!(
        s.count_posted(&f.org, &ch(TEAMS_C1), day, 1).await.unwrap(),
        1
    );
    assert_eq!(
        s.count_posted(&f.org, &ch(TEAMS_C1), day, 5).await.unwrap(),
        6
    );
    assert_eq!(
        s.count_posted(&f.org, &ch(TEAMS_C1), next_day, 2)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        s.count_posted(&f.org, &ch(SLACK_C1), day, 1).await.unwrap(),
        1
    );
    assert_eq!(
        s.count_posted(&other.org, &ch(TEAMS_C1), day, 1)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.posted_on(&f.org, day).await.unwrap(),
        vec![(ch(TEAMS_C1), 6), (ch(SLACK_C1), 1)]
    );
    assert_kind(
        s.count_posted(&OrgId::generate(), &ch(TEAMS_C1), day, 1)
            .await,
        ErrorKind::NotFound,
    );
}

/// Check: outbox concurrent workers deliver each row once.
pub async fn outbox_concurrent_workers_deliver_each_row_once(h: &dyn Harness) {
    const TARGETS: u64 = 20;
    const PER_TARGET: u64 = 20;
    // Two more store instances: other processes or replicas on the same database.
    let s = h.reopen().await;
    let s2 = h.reopen().await;
    let f = fixture(&*s, "org").await;
    let mut batch = Vec::new();
    for n in 0..TARGETS * PER_TARGET {
        let t = format!("msteams:team-1/19:t{}@thread.tacv2", n % TARGETS);
        batch.push(delivery(&f.org, &f.teams, &t, n));
    }
    for chunk in batch.chunks(37) {
        s.outbox_enqueue(chunk).await.unwrap();
    }
    let seen: Arc<Mutex<Vec<(String, DeliveryId, String)>>> = Arc::default();
    let mut tasks = Vec::new();
    for n in 0..4 {
        let store = if n % 2 == 0 { s.clone() } else { s2.clone() };
        let seen = seen.clone();
        let org = f.org.clone();
        tasks.push(tokio::spawn(async move {
            let worker = w(&format!("worker-{n}"));
            let mut idle = 0;
            loop {
                let leased = store.outbox_lease(&worker, 4, LEASE).await.unwrap();
                if leased.is_empty() {
                    if store.outbox_pending(&org).await.unwrap() == 0 {
                        break;
                    }
                    idle += 1;
                    assert!(idle < 10_000, "workers starved");
                    tokio::task::yield_now().await;
                    continue;
                }
                for d in leased {
                    // Recorded before completing: the next delivery of this target cannot be
                    // leased until the completion commits.
                    seen.lock()
                        .unwrap()
                        .push((worker.to_string(), d.id, d.target.to_string()));
                    store.outbox_complete(&worker, d.id).await.unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    let ids: HashSet<DeliveryId> = seen.iter().map(|(_, id, _)| *id).collect();
    assert_eq!(
        seen.len() as u64,
        TARGETS * PER_TARGET,
        "each row delivered exactly once"
    );
    assert_eq!(ids.len(), seen.len(), "no row delivered twice");
    let mut last: BTreeMap<&str, DeliveryId> = BTreeMap::new();
    for (_, id, target) in &seen {
        if let Some(prev) = last.insert(target, *id) {
            assert!(prev < *id, "per-target order broken on {target}");
        }
    }
    let workers: HashSet<&str> = seen.iter().map(|(w, _, _)| w.as_str()).collect();
    assert!(workers.len() >= 2, "only {workers:?} did any work");
    assert_eq!(s.outbox_pending(&f.org).await.unwrap(), 0);
}

/// Check: leases expire after a crash.
pub async fn leases_expire_after_a_crash(h: &dyn Harness) {
    let s = h.store();
    let f = fixture(s, "org").await;
    let crashing = h.reopen().await;
    let short = Duration::from_millis(700);
    s.outbox_enqueue(&[delivery(&f.org, &f.teams, TEAMS_C1, 1)])
        .await
        .unwrap();
    s.inbox_accept(&f.org, &f.slack.id, &event("EvCrash", SLACK_C1, "x"))
        .await
        .unwrap();
    let held = crashing
        .outbox_lease(&w("doomed"), 10, short)
        .await
        .unwrap();
    let held_in = crashing.inbox_lease(&w("doomed"), 10, short).await.unwrap();
    assert_eq!((held.len(), held_in.len()), (1, 1));
    // The worker dies without completing.
    drop(crashing);
    assert!(
        s.outbox_lease(&w("survivor"), 10, LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.inbox_lease(&w("survivor"), 10, LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    tokio::time::sleep(Duration::from_millis(900)).await;
    let back = s.outbox_lease(&w("survivor"), 10, LEASE).await.unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].id, held[0].id);
    assert_eq!(back[0].attempts, 1);
    let back_in = s.inbox_lease(&w("survivor"), 10, LEASE).await.unwrap();
    assert_eq!(back_in.len(), 1);
    assert_eq!(back_in[0].id, held_in[0].id);
    // The dead worker's lease is gone for good.
    assert_kind(
        s.outbox_complete(&w("doomed"), held[0].id).await,
        ErrorKind::Conflict,
    );
    assert_kind(
        s.inbox_complete(&w("doomed"), held_in[0].id, &[]).await,
        ErrorKind::Conflict,
    );
    s.outbox_complete(&w("survivor"), back[0].id).await.unwrap();
    s.inbox_complete(&w("survivor"), back_in[0].id, &[])
        .await
        .unwrap();
    assert_eq!(s.outbox_pending(&f.org).await.unwrap(), 0);
}

// ----- audit ----------------------------------------------------------------------------------

/// Appends `n` numbered entries to the audit log of `org`.
pub async fn fill_audit(s: &dyn Store, org: &OrgId, n: u64) {
    for i in 1..=n {
        s.append_audit(org, audit("test.entry", json!({"i": i})))
            .await
            .unwrap();
    }
}

/// Check: audit chain appends lists exports.
pub async fn audit_chain_appends_lists_exports(h: &dyn Harness) {
    let s = h.store();
    let f = fixture(s, "org").await;
    let actors = [
        Actor::ServiceAccount {
            connection: f.teams.id.clone(),
        },
        Actor::Admin { name: "ci".into() },
        Actor::System,
    ];
    let mut appended = Vec::new();
    for (i, actor) in actors.iter().cycle().take(5).enumerate() {
        let e = s
            .append_audit(
                &f.org,
                NewAuditEntry {
                    actor: actor.clone(),
                    action: "membership.readded".into(),
                    target: format!("team-{i}"),
                    details: json!({"i": i, "nested": {"b": 1, "a": [1.5, "x", null]},
                                    "refresh_token": "r-secret", "note": "xoxp-123-abc"}),
                },
            )
            .await
            .unwrap();
        appended.push(e);
    }
    assert_eq!(
        appended.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(appended[0].prev_hash, "");
    for w in appended.windows(2) {
        assert_eq!(w[1].prev_hash, w[0].hash);
    }
    assert_eq!(appended[0].details["refresh_token"], "[redacted]");
    assert_eq!(appended[0].details["note"], "[redacted]");
    let listed = s.list_audit(&f.org, 0, 100).await.unwrap();
    assert_eq!(listed, appended);
    assert_eq!(
        s.list_audit(&f.org, 2, 2)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect::<Vec<_>>(),
        vec![3, 4]
    );
    assert!(s.list_audit(&f.org, 5, 10).await.unwrap().is_empty());
    let v = s.verify_audit(&f.org).await.unwrap();
    assert!(v.is_ok(), "{v:?}");
    assert_eq!(v.checked, 5);

    // Export as JSON lines; the export verifies on its own.
    let mut out = Vec::new();
    let n = crate::export_audit_jsonl(s, &f.org, &mut out)
        .await
        .unwrap();
    assert_eq!(n, 5);
    let text = String::from_utf8(out.clone()).unwrap();
    assert_eq!(text.lines().count(), 5);
    let first: AuditEntry = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first, appended[0]);
    assert!(crate::verify_jsonl(&out[..]).unwrap().is_ok());
    assert!(!text.contains("r-secret"));

    // Each organization has its own chain.
    let other = s.create_org("other").await.unwrap().id;
    let e = s
        .append_audit(&other, audit("x.y", json!({})))
        .await
        .unwrap();
    assert_eq!((e.seq, e.prev_hash.as_str()), (1, ""));
    assert_eq!(s.list_audit(&other, 0, 10).await.unwrap(), vec![e]);
    assert!(s.verify_audit(&OrgId::generate()).await.unwrap().is_ok());

    // Bad entries are refused and leave the chain as it was.
    assert_kind(
        s.append_audit(&f.org, audit("", json!({}))).await,
        ErrorKind::InvalidInput,
    );
    assert_kind(
        s.append_audit(&f.org, audit("a.b", json!({"blob": "x".repeat(70_000)})))
            .await,
        ErrorKind::InvalidInput,
    );
    let mut long_target = audit("a.b", json!({}));
    long_target.target = "t".repeat(2000);
    assert_kind(
        s.append_audit(&f.org, long_target).await,
        ErrorKind::InvalidInput,
    );
    assert_kind(
        s.append_audit(&OrgId::generate(), audit("a.b", json!({})))
            .await,
        ErrorKind::NotFound,
    );
    assert_eq!(s.list_audit(&f.org, 0, 100).await.unwrap().len(), 5);
    assert!(s.verify_audit(&f.org).await.unwrap().is_ok());
}

/// Check: concurrent audit appends keep one chain.
pub async fn concurrent_audit_appends_keep_one_chain(h: &dyn Harness) {
    let s = h.reopen().await;
    let s2 = h.reopen().await;
    let org = s.create_org("busy").await.unwrap().id;
    let mut tasks = Vec::new();
    for t in 0..8 {
        let store = if t % 2 == 0 { s.clone() } else { s2.clone() };
        let org = org.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                store
                    .append_audit(&org, audit("load.test", json!({"t": t, "i": i})))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let v = s.verify_audit(&org).await.unwrap();
    assert!(v.is_ok(), "{v:?}");
    assert_eq!(v.checked, 80);
    let seqs: Vec<u64> = s
        .list_audit(&org, 0, 1000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, (1..=80).collect::<Vec<_>>());
}

// ----- isolation and bad input ------------------------------------------------------------------

/// Check: org isolation.
pub async fn org_isolation(h: &dyn Harness) {
    let s = h.store();
    let a = fixture(s, "A").await;
    let b = fixture(s, "B").await;
    // Both organizations import the same platform ids with different data.
    for (f, name) in [(&a, "in A"), (&b, "in B")] {
        let run = s.begin_import(&f.org, &f.slack.id).await.unwrap();
        s.upsert_teams(
            &f.org,
            &f.slack.id,
            run,
            &[Team {
                name: name.into(),
                ..team("T1")
            }],
        )
        .await
        .unwrap();
        s.upsert_channels(
            &f.org,
            &f.slack.id,
            run,
            &[Channel {
                name: name.into(),
                ..channel("T1", "C1")
            }],
        )
        .await
        .unwrap();
        s.upsert_users(
            &f.org,
            &f.slack.id,
            run,
            &[user("U1", name, Some("same@contoso.com"))],
        )
        .await
        .unwrap();
        s.upsert_memberships(&f.org, &f.slack.id, run, &[member("T1", "U1")])
            .await
            .unwrap();
        s.put_cursor(&f.org, &f.slack.id, &history_key(SLACK_C1), name)
            .await
            .unwrap();
        s.put_secret(
            &f.org,
            "slack.signing_secret",
            &SecretString::from(name.to_owned()),
        )
        .await
        .unwrap();
        s.put_credentials(&f.org, &f.slack.id, &creds(name))
            .await
            .unwrap();
        s.put_message_copy(
            &f.org,
            &MessageCopy {
                universal: UniversalMessageId::generate(),
                channel: ch(SLACK_C1),
                message: MessageId::new("1.0").unwrap(),
                thread_root: None,
                posted_by: None,
                posted_by_account: None,
                part: 0,
            },
        )
        .await
        .unwrap();
        s.inbox_accept(&f.org, &f.slack.id, &event("EvSame", SLACK_C1, name))
            .await
            .unwrap();
        s.append_audit(&f.org, audit("x.y", json!({"org": name})))
            .await
            .unwrap();
    }
    let ta = run_a_only(s, &a).await;

    for (f, other, name) in [(&a, &b, "in A"), (&b, &a, "in B")] {
        let org = &f.org;
        assert_eq!(
            s.list_connections(org).await.unwrap(),
            vec![f.slack.clone(), f.teams.clone()]
        );
        assert_eq!(s.get_connection(org, &other.slack.id).await.unwrap(), None);
        assert_eq!(
            s.get_credentials(org, &other.slack.id)
                .await
                .unwrap()
                .map(|_| ()),
            None
        );
        assert_eq!(
            s.get_credentials(org, &f.slack.id)
                .await
                .unwrap()
                .unwrap()
                .access_token
                .expose_secret(),
            name
        );
        assert_eq!(s.list_teams(org, &f.slack.id).await.unwrap()[0].name, name);
        assert!(s.list_teams(org, &other.slack.id).await.unwrap().is_empty());
        let chans = all_channels(s, org, None).await;
        assert_eq!(chans.len(), 1);
        assert_eq!(chans[0].channel.name, name);
        assert_eq!(
            s.get_channel(org, &ch(SLACK_C1))
                .await
                .unwrap()
                .unwrap()
                .channel
                .name,
            name
        );
        let users = all_users(s, org, Some(&f.slack.id)).await;
        assert_eq!(users.len(), 1);
        assert_eq!(users[0].user.display_name, name);
        assert_eq!(
            s.get_user(org, PlatformKind::Slack, &uid("U1"))
                .await
                .unwrap()
                .unwrap()
                .user
                .display_name,
            name
        );
        assert_eq!(
            s.list_memberships(org, &f.slack.id, &TeamId::new("T1").unwrap())
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(
            s.list_memberships(org, &other.slack.id, &TeamId::new("T1").unwrap())
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            s.get_cursor(org, &f.slack.id, &history_key(SLACK_C1))
                .await
                .unwrap()
                .as_deref(),
            Some(name)
        );
        assert_eq!(
            s.get_cursor(org, &other.slack.id, &history_key(SLACK_C1))
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            s.get_secret(org, "slack.signing_secret")
                .await
                .unwrap()
                .unwrap()
                .expose_secret(),
            name
        );
        let copy = s
            .find_message_copy(org, &ch(SLACK_C1), &MessageId::new("1.0").unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            s.message_copies(org, &copy.universal).await.unwrap().len(),
            1
        );
        let log = s.list_audit(org, 0, 10).await.unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].details["org"], name);
        assert!(s.verify_audit(org).await.unwrap().is_ok());
        // Writes aimed at the other organization's rows find nothing.
        assert_kind(
            s.set_connection_health(org, &other.slack.id, ConnectionHealth::Disabled)
                .await,
            ErrorKind::NotFound,
        );
        assert_kind(
            s.delete_connection(org, &other.slack.id).await,
            ErrorKind::NotFound,
        );
        assert_kind(
            s.put_credentials(org, &other.slack.id, &creds("steal"))
                .await,
            ErrorKind::NotFound,
        );
        assert_kind(
            s.begin_import(org, &other.slack.id).await,
            ErrorKind::NotFound,
        );
        assert_kind(
            s.put_cursor(org, &other.slack.id, &history_key(SLACK_C1), "v")
                .await,
            ErrorKind::NotFound,
        );
    }
    // Universal channels, the outbox and subscriptions.
    assert_eq!(s.list_universal_channels(&b.org).await.unwrap(), vec![]);
    assert_eq!(
        s.find_universal_channel(&b.org, &ch(SLACK_C1))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.get_universal_channel(&b.org, ta.id()).await.unwrap(),
        None
    );
    assert_kind(
        s.delete_universal_channel(&b.org, ta.id()).await,
        ErrorKind::NotFound,
    );
    assert_eq!(
        s.list_universal_channels(&a.org).await.unwrap(),
        vec![ta.clone()]
    );
    assert_eq!(s.outbox_pending(&a.org).await.unwrap(), 1);
    assert_eq!(s.outbox_pending(&b.org).await.unwrap(), 0);
    assert!(s.list_subscriptions(&b.org).await.unwrap().is_empty());
    assert_eq!(
        s.get_subscription(&sid("sub-a")).await.unwrap().unwrap().0,
        a.org
    );
    s.delete_subscription(&b.org, &sid("sub-a")).await.unwrap();
    assert_eq!(s.list_subscriptions(&a.org).await.unwrap().len(), 1);
    // Identity matching stays inside the organization.
    assert_eq!(
        s.counterpart(
            &b.org,
            PlatformKind::Slack,
            &uid("U1"),
            PlatformKind::Msteams
        )
        .await
        .unwrap(),
        None
    );
    assert_eq!(
        s.counterpart(
            &a.org,
            PlatformKind::Slack,
            &uid("U1"),
            PlatformKind::Msteams
        )
        .await
        .unwrap(),
        Some(uid("A1"))
    );
    // Admin tokens.
    let token = s.create_admin_token(&a.org, "ci").await.unwrap();
    assert_kind(
        s.revoke_admin_token(&b.org, "ci").await,
        ErrorKind::NotFound,
    );
    assert_eq!(
        s.authenticate_admin_token(&token)
            .await
            .unwrap()
            .unwrap()
            .org,
        a.org
    );
    // Both events were accepted (one per organization) and lease with their own org.
    let leased = s.inbox_lease(&w("w"), 10, LEASE).await.unwrap();
    let orgs: HashSet<OrgId> = leased.iter().map(|i| i.org.clone()).collect();
    assert_eq!(orgs, HashSet::from([a.org.clone(), b.org.clone()]));
}

/// Org A only: a universal channel, a queued delivery, a subscription and a Teams user.
async fn run_a_only(s: &dyn Store, a: &Fixture) -> UniversalChannel {
    let uc = universal(a, SLACK_C1, TEAMS_C1);
    s.create_universal_channel(&uc).await.unwrap();
    s.outbox_enqueue(&[delivery(&a.org, &a.teams, TEAMS_C1, 1)])
        .await
        .unwrap();
    s.put_subscription(
        &a.org,
        &Subscription {
            id: sid("sub-a"),
            connection: a.teams.id.clone(),
            channel: ch(TEAMS_C1),
            client_state: SecretString::from("cs".to_owned()),
            expires_at: OffsetDateTime::now_utc(),
        },
    )
    .await
    .unwrap();
    let run = s.begin_import(&a.org, &a.teams.id).await.unwrap();
    s.upsert_users(
        &a.org,
        &a.teams.id,
        run,
        &[user("A1", "A", Some("SAME@contoso.com"))],
    )
    .await
    .unwrap();
    uc
}

/// Check: bad input changes nothing.
pub async fn bad_input_changes_nothing(h: &dyn Harness) {
    let s = h.store();
    let f = fixture(s, "org").await;
    let run = s.begin_import(&f.org, &f.slack.id).await.unwrap();
    // One oversized user in a batch: the whole batch is refused, nothing written.
    let mut users: Vec<User> = (0..10)
        .map(|i| user(&format!("U{i}"), "ok", None))
        .collect();
    users[7].display_name = "x".repeat(2000);
    let e = assert_kind(
        s.upsert_users(&f.org, &f.slack.id, run, &users).await,
        ErrorKind::InvalidInput,
    );
    assert!(
        e.message().contains("user display name") && e.message().contains("1024"),
        "{e}"
    );
    assert!(all_users(s, &f.org, None).await.is_empty());
    users[7].display_name = "ok".into();
    users[3].email = Some(format!("{}@contoso.com", "a".repeat(400)));
    assert_kind(
        s.upsert_users(&f.org, &f.slack.id, run, &users).await,
        ErrorKind::InvalidInput,
    );
    users[3].email = None;
    users[4].avatar_url = Some(format!("https://x.test/{}", "a".repeat(3000)));
    assert_kind(
        s.upsert_users(&f.org, &f.slack.id, run, &users).await,
        ErrorKind::InvalidInput,
    );
    assert!(all_users(s, &f.org, None).await.is_empty());
    let mut c = channel("T1", "C1");
    c.name = "nul\0name".into();
    let e = assert_kind(
        s.upsert_channels(&f.org, &f.slack.id, run, &[channel("T1", "C0"), c])
            .await,
        ErrorKind::InvalidInput,
    );
    assert!(e.message().contains("NUL"), "{e}");
    let mut c = channel("T1", "C2");
    c.description = Some("d".repeat(5000));
    assert_kind(
        s.upsert_channels(&f.org, &f.slack.id, run, &[c]).await,
        ErrorKind::InvalidInput,
    );
    let mut t = team("T1");
    t.name = "n".repeat(1025);
    assert_kind(
        s.upsert_teams(&f.org, &f.slack.id, run, &[t]).await,
        ErrorKind::InvalidInput,
    );
    assert!(all_channels(s, &f.org, None).await.is_empty());
    assert!(s.list_teams(&f.org, &f.slack.id).await.unwrap().is_empty());
    // Out-of-range timestamps.
    let mut future = connection(&f.org, PlatformKind::Slack, "T2");
    future.created_at = time::macros::datetime!(2300-01-01 0:00 UTC);
    assert_kind(s.put_connection(&future).await, ErrorKind::InvalidInput);
    assert_eq!(s.list_connections(&f.org).await.unwrap().len(), 2);
    let mut long = connection(&f.org, PlatformKind::Slack, "T3");
    long.display_name = "x".repeat(1025);
    assert_kind(s.put_connection(&long).await, ErrorKind::InvalidInput);

    // A failure half-way through a transaction rolls everything back: the inbox event is
    // marked processed before its deliveries are enqueued, and one delivery is bad.
    s.inbox_accept(&f.org, &f.slack.id, &event("EvTx", SLACK_C1, "x"))
        .await
        .unwrap();
    let item = s.inbox_lease(&w("w"), 1, LEASE).await.unwrap().remove(0);
    let mut ghost = delivery(&f.org, &f.teams, TEAMS_C1, 2);
    ghost.connection = ConnectionId::generate();
    assert_kind(
        s.inbox_complete(
            &w("w"),
            item.id,
            &[delivery(&f.org, &f.teams, TEAMS_C1, 1), ghost],
        )
        .await,
        ErrorKind::NotFound,
    );
    assert_eq!(s.outbox_pending(&f.org).await.unwrap(), 0);
    // Still unprocessed and still ours: completing properly works.
    s.inbox_complete(&w("w"), item.id, &[delivery(&f.org, &f.teams, TEAMS_C1, 1)])
        .await
        .unwrap();
    assert_eq!(s.outbox_pending(&f.org).await.unwrap(), 1);
    // Sizes of queue items and ids.
    let mut long_id = platform_event("x", SLACK_C1, "x");
    long_id.event_id = "e".repeat(2000);
    assert_kind(
        s.inbox_accept(&f.org, &f.slack.id, &Inbound::Event(long_id.clone()))
            .await,
        ErrorKind::InvalidInput,
    );
    long_id.event_id = String::new();
    assert_kind(
        s.inbox_accept(&f.org, &f.slack.id, &Inbound::Event(long_id))
            .await,
        ErrorKind::InvalidInput,
    );
    assert_kind(
        s.put_secret(
            &f.org,
            &"n".repeat(300),
            &SecretString::from("v".to_owned()),
        )
        .await,
        ErrorKind::InvalidInput,
    );
    assert_kind(
        s.put_secret(&f.org, "n", &SecretString::from("a\0b".to_owned()))
            .await,
        ErrorKind::InvalidInput,
    );
}

// ----- typed edges ------------------------------------------------------------------------------

/// Check: listings are paged by key, in a stable order, every row exactly once.
pub async fn directory_listings_are_paged(h: &dyn Harness) {
    let s = h.store();
    let f = fixture(s, "org").await;
    let run = s.begin_import(&f.org, &f.slack.id).await.unwrap();
    let slack_users: Vec<User> = (0..25)
        .map(|i| user(&format!("U{i:03}"), &format!("user {i}"), None))
        .collect();
    s.upsert_users(&f.org, &f.slack.id, run, &slack_users)
        .await
        .unwrap();
    let slack_channels: Vec<Channel> = (0..12)
        .map(|i| channel(if i % 2 == 0 { "T1" } else { "T2" }, &format!("C{i:02}")))
        .collect();
    s.upsert_channels(&f.org, &f.slack.id, run, &slack_channels)
        .await
        .unwrap();
    let trun = s.begin_import(&f.org, &f.teams.id).await.unwrap();
    s.upsert_users(
        &f.org,
        &f.teams.id,
        trun,
        &[
            user("A1", "a", None),
            user("A2", "b", None),
            user("A3", "c", None),
        ],
    )
    .await
    .unwrap();

    // Pages of 10 over both platforms: 10, 10, 8, then nothing.
    let mut pages = Vec::new();
    let mut after: Option<(PlatformKind, UserId)> = None;
    loop {
        let page = s
            .list_users(&f.org, None, after.as_ref().map(|(p, u)| (*p, u)), 10)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|u| (u.platform, u.user.id.clone()));
        pages.push(page);
        assert!(pages.len() < 10, "paging does not end");
    }
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![10, 10, 8]
    );
    let keys: Vec<(PlatformKind, String)> = pages
        .iter()
        .flatten()
        .map(|u| (u.platform, u.user.id.to_string()))
        .collect();
    let unique: HashSet<&(PlatformKind, String)> = keys.iter().collect();
    assert_eq!(unique.len(), 28, "a user was listed twice or not at all");
    // The order is (platform, id) on every backend: each page continues the previous one.
    let mut sorted = keys.clone();
    sorted.sort_by(|a, b| (a.0.as_str(), &a.1).cmp(&(b.0.as_str(), &b.1)));
    assert_eq!(keys, sorted);
    // One connection only.
    let slack_only = all_users(s, &f.org, Some(&f.slack.id)).await;
    assert_eq!(slack_only.len(), 25);
    assert!(slack_only.iter().all(|u| u.connection == f.slack.id));
    let first = s
        .list_users(&f.org, Some(&f.slack.id), None, 3)
        .await
        .unwrap();
    assert_eq!(
        first.iter().map(|u| u.user.id.as_str()).collect::<Vec<_>>(),
        vec!["U000", "U001", "U002"]
    );
    let next = s
        .list_users(
            &f.org,
            Some(&f.slack.id),
            Some((PlatformKind::Slack, &uid("U002"))),
            2,
        )
        .await
        .unwrap();
    assert_eq!(
        next.iter().map(|u| u.user.id.as_str()).collect::<Vec<_>>(),
        vec!["U003", "U004"]
    );
    assert!(
        s.list_users(&f.org, None, Some((PlatformKind::Slack, &uid("U024"))), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.list_users(&f.org, None, None, 0)
            .await
            .unwrap()
            .is_empty()
    );
    let e = assert_kind(
        s.list_users(&f.org, None, None, MAX_PAGE_SIZE + 1).await,
        ErrorKind::InvalidInput,
    );
    assert!(e.message().contains(&MAX_PAGE_SIZE.to_string()), "{e}");
    assert_eq!(
        s.list_users(&f.org, None, None, MAX_PAGE_SIZE)
            .await
            .unwrap()
            .len(),
        28
    );

    // Channels page by reference.
    let chans = all_channels(s, &f.org, None).await;
    assert_eq!(chans.len(), 12);
    let page = s
        .list_channels(&f.org, None, Some(&chans[4].reference), 3)
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|c| c.reference.clone()).collect::<Vec<_>>(),
        chans[5..8]
            .iter()
            .map(|c| c.reference.clone())
            .collect::<Vec<_>>()
    );
    let refs: HashSet<String> = chans.iter().map(|c| c.reference.to_string()).collect();
    assert_eq!(refs.len(), 12);
    assert!(
        s.list_channels(&f.org, Some(&f.teams.id), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_kind(
        s.list_channels(&f.org, None, None, MAX_PAGE_SIZE + 1).await,
        ErrorKind::InvalidInput,
    );
}

/// Check: every copy records who posted it and which part it is; parts come back in order.
pub async fn message_copies_keep_parts_and_posting_identity(h: &dyn Harness) {
    let s = h.store();
    let f = fixture(s, "org").await;
    let u = UniversalMessageId::generate();
    let teams = ch(TEAMS_C1);
    let origin = MessageCopy {
        universal: u.clone(),
        channel: ch(SLACK_C1),
        message: MessageId::new("1700000000.000100").unwrap(),
        thread_root: None,
        posted_by: None,
        posted_by_account: None,
        part: 0,
    };
    let as_alice = PostingIdentity::LinkedUser {
        user: uid("alice-guid"),
    };
    let part0 = MessageCopy {
        universal: u.clone(),
        channel: teams.clone(),
        message: MessageId::new("1700000001000").unwrap(),
        thread_root: Some(MessageId::new("1699999999999").unwrap()),
        posted_by: Some(as_alice.clone()),
        posted_by_account: None,
        part: 0,
    };
    let part1 = MessageCopy {
        message: MessageId::new("1700000001001").unwrap(),
        posted_by: Some(PostingIdentity::ServiceAccount),
        part: 1,
        ..part0.clone()
    };
    let slack2 = MessageCopy {
        channel: ch("slack:T1/C2"),
        message: MessageId::new("1700000002.000100").unwrap(),
        thread_root: None,
        posted_by: Some(PostingIdentity::ServiceAccount),
        part: 0,
        ..origin.clone()
    };
    // Recorded out of order; read back origin first, then by channel, parts in order.
    for c in [&part1, &slack2, &part0, &origin] {
        s.put_message_copy(&f.org, c).await.unwrap();
    }
    assert_eq!(
        s.message_copies(&f.org, &u).await.unwrap(),
        vec![origin.clone(), part0.clone(), part1.clone(), slack2.clone()]
    );
    assert_eq!(
        s.find_message_copy(&f.org, &teams, &part0.message)
            .await
            .unwrap(),
        Some(part0.clone())
    );
    // Idempotent for the same record.
    s.put_message_copy(&f.org, &part1).await.unwrap();
    // Another message as an existing part, or an existing message as another part: refused.
    let usurper = MessageCopy {
        message: MessageId::new("1700000009999").unwrap(),
        ..part0.clone()
    };
    let e = assert_kind(
        s.put_message_copy(&f.org, &usurper).await,
        ErrorKind::Conflict,
    );
    assert!(e.message().contains("part 0"), "{e}");
    let moved = MessageCopy {
        part: 2,
        ..part1.clone()
    };
    assert_kind(
        s.put_message_copy(&f.org, &moved).await,
        ErrorKind::Conflict,
    );
    assert_eq!(s.message_copies(&f.org, &u).await.unwrap().len(), 4);
    // The same part number in another universal message is unrelated.
    let other = MessageCopy {
        universal: UniversalMessageId::generate(),
        message: MessageId::new("1700000003000").unwrap(),
        ..part0.clone()
    };
    s.put_message_copy(&f.org, &other).await.unwrap();
}

/// Check: every copy keeps the account that posted it, and the copies a connection's account
/// posted in the channels linked through that connection are counted per account (what a
/// migration reports: copies only the previous account may edit or delete).
pub async fn message_copies_record_the_posting_account(h: &dyn Harness) {
    let s = h.store();
    let f = fixture(s, "org").await;
    let other = fixture(s, "other").await;
    s.create_universal_channel(&universal(&f, SLACK_C1, TEAMS_C1))
        .await
        .unwrap();
    let (alice, svc) = (uid("alice-guid"), uid("svc-guid"));
    let u = UniversalMessageId::generate();
    let copy = |c: &str, m: &str, by: Option<PostingIdentity>, account: Option<&UserId>, part| {
        MessageCopy {
            universal: u.clone(),
            channel: ch(c),
            message: MessageId::new(m).unwrap(),
            thread_root: None,
            posted_by: by,
            posted_by_account: account.cloned(),
            part,
        }
    };
    let sa = Some(PostingIdentity::ServiceAccount);
    let copies = [
        copy(SLACK_C1, "1700000000.000100", None, None, 0),
        // Two parts posted by the personal account before a migration, one by the new one.
        copy(TEAMS_C1, "1700000001000", sa.clone(), Some(&alice), 0),
        copy(TEAMS_C1, "1700000001001", sa.clone(), Some(&alice), 1),
        copy(TEAMS_C1, "1700000001002", sa.clone(), Some(&svc), 2),
        // A linked user's own copy is not the connection's account's.
        copy(
            TEAMS_C1,
            "1700000001003",
            Some(PostingIdentity::LinkedUser {
                user: alice.clone(),
            }),
            Some(&alice),
            3,
        ),
        // Unknown account (recorded before it was kept).
        copy(TEAMS_C1, "1700000001004", sa.clone(), None, 4),
        // A channel that is not linked through the Teams connection.
        copy(
            "msteams:team-1/19:two@thread.tacv2",
            "1700000002000",
            sa.clone(),
            Some(&alice),
            0,
        ),
    ];
    for c in &copies {
        s.put_message_copy(&f.org, c).await.unwrap();
    }
    // Read back as recorded, by either lookup.
    for c in &copies {
        assert_eq!(
            s.find_message_copy(&f.org, &c.channel, &c.message)
                .await
                .unwrap()
                .as_ref(),
            Some(c)
        );
    }
    let listed = s.message_copies(&f.org, &u).await.unwrap();
    assert_eq!(listed.len(), copies.len());
    for c in &copies {
        assert!(listed.contains(c), "{c:?} missing from {listed:?}");
    }
    let count = |conn: &Connection, org: &OrgId, account: &UserId| {
        let (conn, org, account) = (conn.id.clone(), org.clone(), account.clone());
        async move {
            s.count_copies_by_account(&org, &conn, &account)
                .await
                .unwrap()
        }
    };
    assert_eq!(count(&f.teams, &f.org, &alice).await, 2);
    assert_eq!(count(&f.teams, &f.org, &svc).await, 1);
    assert_eq!(count(&f.slack, &f.org, &alice).await, 0);
    assert_eq!(count(&f.teams, &f.org, &uid("nobody")).await, 0);
    // Scoped by organization.
    assert_eq!(count(&other.teams, &other.org, &alice).await, 0);
    assert_eq!(count(&f.teams, &other.org, &alice).await, 0);
}

/// Check: message snapshots are kept per organization, channel and message.
pub async fn message_snapshots(h: &dyn Harness) {
    let s = h.store();
    let f = fixture(s, "org").await;
    let other = fixture(s, "other").await;
    let teams = ch(TEAMS_C1);
    let m = MessageId::new("1700000001000").unwrap();
    assert_eq!(
        s.get_message_snapshot(&f.org, &teams, &m).await.unwrap(),
        None
    );
    let thumbs = Emoji::Unicode {
        value: "👍".into(),
        name: Some("thumbsup".into()),
    };
    let first = MessageSnapshot {
        edited_at: None,
        reactions: vec![(uid("alice-guid"), thumbs.clone())],
        deleted: false,
    };
    s.put_message_snapshot(&f.org, &teams, &m, &first)
        .await
        .unwrap();
    assert_eq!(
        s.get_message_snapshot(&f.org, &teams, &m).await.unwrap(),
        Some(first.clone())
    );
    let edited = MessageSnapshot {
        edited_at: Some(
            OffsetDateTime::from_unix_timestamp_nanos(1_700_000_123_456_789_000).unwrap(),
        ),
        reactions: vec![
            (uid("alice-guid"), thumbs.clone()),
            (
                uid("bob-guid"),
                Emoji::Custom {
                    name: "partyparrot".into(),
                },
            ),
        ],
        deleted: false,
    };
    s.put_message_snapshot(&f.org, &teams, &m, &edited)
        .await
        .unwrap();
    assert_eq!(
        s.get_message_snapshot(&f.org, &teams, &m).await.unwrap(),
        Some(edited.clone())
    );
    // Scoped by organization and channel.
    assert_eq!(
        s.get_message_snapshot(&other.org, &teams, &m)
            .await
            .unwrap(),
        None
    );
    let elsewhere = ch("msteams:team-1/19:two@thread.tacv2");
    assert_eq!(
        s.get_message_snapshot(&f.org, &elsewhere, &m)
            .await
            .unwrap(),
        None
    );
    s.delete_message_snapshot(&other.org, &teams, &m)
        .await
        .unwrap();
    assert!(
        s.get_message_snapshot(&f.org, &teams, &m)
            .await
            .unwrap()
            .is_some()
    );
    s.delete_message_snapshot(&f.org, &teams, &m).await.unwrap();
    assert_eq!(
        s.get_message_snapshot(&f.org, &teams, &m).await.unwrap(),
        None
    );
    s.delete_message_snapshot(&f.org, &teams, &m).await.unwrap();
    assert_kind(
        s.put_message_snapshot(&OrgId::generate(), &teams, &m, &first)
            .await,
        ErrorKind::NotFound,
    );
    let huge = MessageSnapshot {
        reactions: (0..20_000)
            .map(|i| (uid(&format!("user-{i}")), thumbs.clone()))
            .collect(),
        ..MessageSnapshot::default()
    };
    assert_kind(
        s.put_message_snapshot(&f.org, &teams, &m, &huge).await,
        ErrorKind::InvalidInput,
    );
    assert_eq!(
        s.get_message_snapshot(&f.org, &teams, &m).await.unwrap(),
        None
    );
}

fn hint(id: &str, channel: &str, message: &str) -> Inbound {
    Inbound::Changed(ChangeHint {
        event_id: id.into(),
        channel: ch(channel),
        message: MessageId::new(message).unwrap(),
        thread_root: None,
        change: ChangeType::Updated,
        received_at: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
    })
}

fn signal(subscription: &str) -> Inbound {
    Inbound::Signal(ConnectionSignal::ReauthorizationRequired {
        subscription: sid(subscription),
    })
}

/// Check: the inbox stores change hints and signals too, a whole delivery at once.
pub async fn inbox_takes_hints_signals_and_batches(h: &dyn Harness) {
    let s = h.store();
    let f = fixture(s, "org").await;
    let ev = event("Ev1", TEAMS_C1, "one");
    let hi = hint("sub-1:updated:m1", TEAMS_C1, "m1");
    let sig = signal("sub-1");
    let batch = vec![ev.clone(), hi.clone(), sig.clone(), ev.clone(), sig.clone()];
    assert_eq!(
        s.inbox_accept_batch(&f.org, &f.teams.id, &batch)
            .await
            .unwrap(),
        vec![
            InboxOutcome::Accepted,
            InboxOutcome::Accepted,
            InboxOutcome::Accepted,
            InboxOutcome::Duplicate,
            InboxOutcome::Accepted,
        ],
        "a repeated key in one batch is a duplicate; signals never are"
    );
    assert_eq!(
        s.inbox_accept(&f.org, &f.teams.id, &hi).await.unwrap(),
        InboxOutcome::Duplicate
    );
    assert!(
        s.inbox_accept_batch(&f.org, &f.teams.id, &[])
            .await
            .unwrap()
            .is_empty()
    );

    // A bad item refuses the batch: nothing of it is stored.
    let later = event("Ev2", TEAMS_C1, "two");
    assert_kind(
        s.inbox_accept_batch(
            &f.org,
            &f.teams.id,
            &[
                later.clone(),
                event("EvSlack", SLACK_C1, "wrong connection"),
            ],
        )
        .await,
        ErrorKind::InvalidInput,
    );
    let too_many: Vec<Inbound> = (0..=MAX_INBOX_BATCH).map(|_| sig.clone()).collect();
    assert_kind(
        s.inbox_accept_batch(&f.org, &f.teams.id, &too_many).await,
        ErrorKind::InvalidInput,
    );
    assert_kind(
        s.inbox_accept_batch(
            &f.org,
            &ConnectionId::generate(),
            std::slice::from_ref(&sig),
        )
        .await,
        ErrorKind::NotFound,
    );

    // Channel order: while w1 holds the event of the channel, the hint of that channel waits;
    // signals have no channel and are handed out on their own.
    let w1 = s.inbox_lease(&w("w1"), 1, LEASE).await.unwrap();
    assert_eq!(w1.len(), 1);
    assert_eq!(w1[0].item, ev);
    assert_eq!(w1[0].connection, f.teams.id);
    let w2 = s.inbox_lease(&w("w2"), 10, LEASE).await.unwrap();
    assert_eq!(
        w2.iter().map(|i| i.item.clone()).collect::<Vec<_>>(),
        vec![sig.clone(), sig.clone()]
    );
    assert!(w2.iter().all(|i| i.item.channel().is_none()));
    s.inbox_complete(&w("w1"), w1[0].id, &[]).await.unwrap();
    let w3 = s.inbox_lease(&w("w3"), 10, LEASE).await.unwrap();
    assert_eq!(
        w3.iter().map(|i| i.item.clone()).collect::<Vec<_>>(),
        vec![hi.clone()]
    );
    // The refused batch's valid item was not stored.
    assert_eq!(
        s.inbox_accept(&f.org, &f.teams.id, &later).await.unwrap(),
        InboxOutcome::Accepted
    );
}

/// A `Post` job with everything set.
pub fn post_job(universal: &UniversalMessageId) -> DeliveryJob {
    let origin = ch(SLACK_C1);
    DeliveryJob::Post {
        universal: universal.clone(),
        origin: MessageRef {
            channel: origin.clone(),
            message: MessageId::new("1700000000.000200").unwrap(),
            thread_root: Some(MessageId::new("1700000000.000100").unwrap()),
        },
        content: PortableMessage {
            sender: Sender {
                platform: PlatformKind::Slack,
                user: uid("U1"),
                display_name: "Alice".into(),
                avatar_url: Some("https://avatars.test/U1.png".into()),
                email: Some("alice@contoso.com".into()),
            },
            text: RichText::plain("see the attached *plan* ✨"),
            attachments: vec![],
            thread_root: Some(MessageId::new("1700000000.000100").unwrap()),
        },
        reply_to: Some(MessageId::new("1699999999999").unwrap()),
        broadcast: true,
        post_as: PostingIdentity::LinkedUser {
            user: uid("alice-guid"),
        },
        files: vec![Attachment {
            name: "plan.pdf".into(),
            url: "https://files.slack.test/F1/plan.pdf".into(),
            mime_type: Some("application/pdf".into()),
            size: Some(123_456),
        }],
    }
}

/// Check: every kind of delivery job comes back exactly as enqueued.
pub async fn delivery_jobs_round_trip(h: &dyn Harness) {
    let s = h.store();
    let f = fixture(s, "org").await;
    let u = UniversalMessageId::generate();
    let jobs = vec![
        post_job(&u),
        DeliveryJob::Edit {
            universal: u.clone(),
            content: PortableMessage {
                sender: Sender {
                    platform: PlatformKind::Slack,
                    user: uid("U1"),
                    display_name: "Alice".into(),
                    avatar_url: None,
                    email: None,
                },
                text: RichText::plain("edited"),
                attachments: vec![],
                thread_root: None,
            },
        },
        DeliveryJob::React {
            universal: u.clone(),
            emoji: Emoji::Custom {
                name: "partyparrot".into(),
            },
            change: ReactionChange::Add,
            reactor: uid("U2"),
        },
        DeliveryJob::Delete {
            universal: u.clone(),
        },
        DeliveryJob::Notice {
            text: "Bob joined the channel".into(),
        },
    ];
    // One target each, so all are leasable at once; enqueued through inbox completion.
    let deliveries: Vec<NewDelivery> = jobs
        .iter()
        .enumerate()
        .map(|(i, job)| NewDelivery {
            org: f.org.clone(),
            connection: f.teams.id.clone(),
            target: ch(&format!("msteams:team-1/19:job{i}@thread.tacv2")),
            job: job.clone(),
        })
        .collect();
    s.inbox_accept(&f.org, &f.slack.id, &event("EvJobs", SLACK_C1, "x"))
        .await
        .unwrap();
    let item = s.inbox_lease(&w("w"), 1, LEASE).await.unwrap().remove(0);
    s.inbox_complete(&w("w"), item.id, &deliveries)
        .await
        .unwrap();
    let leased = s.outbox_lease(&w("w"), 10, LEASE).await.unwrap();
    assert_eq!(
        leased.iter().map(|d| d.job.clone()).collect::<Vec<_>>(),
        jobs
    );
    assert_eq!(
        leased.iter().map(|d| d.target.clone()).collect::<Vec<_>>(),
        deliveries
            .iter()
            .map(|d| d.target.clone())
            .collect::<Vec<_>>()
    );
    assert!(leased.windows(2).all(|p| p[0].id < p[1].id));
    // An empty notice is refused.
    let mut empty = deliveries[4].clone();
    empty.job = DeliveryJob::Notice { text: " ".into() };
    assert_kind(s.outbox_enqueue(&[empty]).await, ErrorKind::InvalidInput);
}

// ----- linked user accounts ---------------------------------------------------------------

/// End users' linked accounts: put (replace), list without secrets, get with them, refreshed
/// credentials persisted, delete; audited; scoped by organization; bad input changes nothing.
pub async fn linked_user_accounts(h: &dyn Harness) {
    let s = h.store();
    let f = fixture(s, "org").await;
    let other = fixture(s, "other").await;
    let jane = uid("teams-jane");
    let account = |user: &UserId, name: &str| LinkedAccount {
        platform: PlatformKind::Msteams,
        user: user.clone(),
        display_name: name.into(),
        linked_at: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
    };
    let token = |c: &Credentials| c.access_token.expose_secret().to_owned();
    let refresh = |c: &Credentials| {
        c.refresh_token
            .as_ref()
            .map(|r| r.expose_secret().to_owned())
    };
    assert!(
        s.list_linked_accounts(&f.org, None)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.get_linked_account(&f.org, PlatformKind::Msteams, &jane)
            .await
            .unwrap()
            .is_none()
    );

    s.put_linked_account(
        &f.org,
        &account(&jane, "Jane"),
        &creds("jane-1"),
        Actor::System,
    )
    .await
    .unwrap();
    let (got, c) = s
        .get_linked_account(&f.org, PlatformKind::Msteams, &jane)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, account(&jane, "Jane"));
    assert_eq!(token(&c), "jane-1");
    assert!(
        s.has_linked_account(&f.org, PlatformKind::Msteams, &jane)
            .await
            .unwrap()
    );
    assert!(
        !s.has_linked_account(&f.org, PlatformKind::Slack, &jane)
            .await
            .unwrap()
    );
    assert!(
        !s.has_linked_account(&other.org, PlatformKind::Msteams, &jane)
            .await
            .unwrap()
    );
    assert_eq!(refresh(&c).as_deref(), Some("jane-1-refresh"));
    assert_eq!(c.scopes, creds("jane-1").scopes);
    // Another platform's user of the same id is another account.
    assert!(
        s.get_linked_account(&f.org, PlatformKind::Slack, &jane)
            .await
            .unwrap()
            .is_none()
    );

    // Linking again replaces the credentials and the name (one row per user).
    s.put_linked_account(
        &f.org,
        &account(&jane, "Jane Doe"),
        &creds("jane-2"),
        Actor::System,
    )
    .await
    .unwrap();
    let bob = uid("teams-bob");
    s.put_linked_account(
        &f.org,
        &account(&bob, "Bob"),
        &creds("bob-1"),
        Actor::System,
    )
    .await
    .unwrap();
    let listed = s.list_linked_accounts(&f.org, None).await.unwrap();
    assert_eq!(
        listed,
        vec![account(&bob, "Bob"), account(&jane, "Jane Doe")]
    );
    assert_eq!(
        s.list_linked_accounts(&f.org, Some(PlatformKind::Msteams))
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(
        s.list_linked_accounts(&f.org, Some(PlatformKind::Slack))
            .await
            .unwrap()
            .is_empty()
    );
    let (_, c) = s
        .get_linked_account(&f.org, PlatformKind::Msteams, &jane)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(token(&c), "jane-2");

    // A refresh rotates the stored token; the link itself is unchanged.
    s.update_linked_credentials(&f.org, PlatformKind::Msteams, &jane, &creds("jane-3"))
        .await
        .unwrap();
    let (got, c) = s
        .get_linked_account(&f.org, PlatformKind::Msteams, &jane)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, account(&jane, "Jane Doe"));
    assert_eq!(token(&c), "jane-3");
    assert_eq!(refresh(&c).as_deref(), Some("jane-3-refresh"));
    assert_kind(
        s.update_linked_credentials(&f.org, PlatformKind::Msteams, &uid("nobody"), &creds("x"))
            .await,
        ErrorKind::NotFound,
    );

    // Scoped by organization: the other org sees nothing and cannot change or delete it.
    assert!(
        s.list_linked_accounts(&other.org, None)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.get_linked_account(&other.org, PlatformKind::Msteams, &jane)
            .await
            .unwrap()
            .is_none()
    );
    assert_kind(
        s.update_linked_credentials(&other.org, PlatformKind::Msteams, &jane, &creds("evil"))
            .await,
        ErrorKind::NotFound,
    );
    assert_kind(
        s.delete_linked_account(&other.org, PlatformKind::Msteams, &jane, Actor::System)
            .await,
        ErrorKind::NotFound,
    );

    // Bad input changes nothing.
    let mut nameless = account(&jane, "");
    nameless.display_name.clear();
    assert_kind(
        s.put_linked_account(&f.org, &nameless, &creds("jane-bad"), Actor::System)
            .await,
        ErrorKind::InvalidInput,
    );
    let mut empty = creds("x");
    empty.access_token = SecretString::from(String::new());
    assert_kind(
        s.put_linked_account(&f.org, &account(&jane, "Jane"), &empty, Actor::System)
            .await,
        ErrorKind::InvalidInput,
    );
    assert_kind(
        s.put_linked_account(
            &OrgId::generate(),
            &account(&jane, "Jane"),
            &creds("stray"),
            Actor::System,
        )
        .await,
        ErrorKind::NotFound,
    );
    let (got, c) = s
        .get_linked_account(&f.org, PlatformKind::Msteams, &jane)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.display_name, "Jane Doe");
    assert_eq!(token(&c), "jane-3");

    // Unlinking deletes the credentials; a second unlink is NotFound.
    s.delete_linked_account(
        &f.org,
        PlatformKind::Msteams,
        &jane,
        Actor::Admin {
            name: "alice".into(),
        },
    )
    .await
    .unwrap();
    assert!(
        s.get_linked_account(&f.org, PlatformKind::Msteams, &jane)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        s.list_linked_accounts(&f.org, None).await.unwrap(),
        vec![account(&bob, "Bob")]
    );
    assert!(
        !s.has_linked_account(&f.org, PlatformKind::Msteams, &jane)
            .await
            .unwrap()
    );
    assert_kind(
        s.delete_linked_account(&f.org, PlatformKind::Msteams, &jane, Actor::System)
            .await,
        ErrorKind::NotFound,
    );

    // Every link and unlink is in the audit log, without the credentials.
    let log = s.list_audit(&f.org, 0, 100).await.unwrap();
    let actions: Vec<(&str, &str)> = log
        .iter()
        .filter(|e| e.action.starts_with("user_account."))
        .map(|e| (e.action.as_str(), e.target.as_str()))
        .collect();
    assert_eq!(
        actions,
        vec![
            ("user_account.linked", "msteams/teams-jane"),
            ("user_account.linked", "msteams/teams-jane"),
            ("user_account.linked", "msteams/teams-bob"),
            ("user_account.unlinked", "msteams/teams-jane"),
        ]
    );
    let unlinked = log
        .iter()
        .find(|e| e.action == "user_account.unlinked")
        .unwrap();
    assert_eq!(
        unlinked.actor,
        Actor::Admin {
            name: "alice".into()
        }
    );
    assert_eq!(unlinked.details["display_name"], "Jane Doe");
    for e in &log {
        let text = e.details.to_string();
        assert!(
            !text.contains("jane-"),
            "a token reached the audit log: {text}"
        );
    }
    assert!(s.verify_audit(&f.org).await.unwrap().is_ok());
}

/// The fingerprint of what Switchboard last wrote to a copy: replaced on every write, read
/// back per copy, scoped by organization; unknown copies and bad fingerprints are refused.
pub async fn written_fingerprints_of_copies(h: &dyn Harness) {
    let s = h.store();
    let f = fixture(s, "org").await;
    let other = fixture(s, "other").await;
    let teams = ch(TEAMS_C1);
    let copy = MessageCopy {
        universal: UniversalMessageId::generate(),
        channel: teams.clone(),
        message: MessageId::new("1700000001000").unwrap(),
        thread_root: None,
        posted_by: Some(PostingIdentity::LinkedUser {
            user: uid("jane-guid"),
        }),
        posted_by_account: Some(uid("jane-guid")),
        part: 0,
    };
    s.put_message_copy(&f.org, &copy).await.unwrap();
    assert_eq!(
        s.written_fingerprint(&f.org, &teams, &copy.message)
            .await
            .unwrap(),
        None
    );
    s.set_written_fingerprint(&f.org, &teams, &copy.message, "fp-1")
        .await
        .unwrap();
    s.set_written_fingerprint(&f.org, &teams, &copy.message, "fp-2")
        .await
        .unwrap();
    assert_eq!(
        s.written_fingerprint(&f.org, &teams, &copy.message)
            .await
            .unwrap()
            .as_deref(),
        Some("fp-2")
    );
    // The copy itself is unchanged.
    assert_eq!(
        s.find_message_copy(&f.org, &teams, &copy.message)
            .await
            .unwrap(),
        Some(copy.clone())
    );
    let unknown = MessageId::new("999").unwrap();
    assert_kind(
        s.set_written_fingerprint(&f.org, &teams, &unknown, "fp")
            .await,
        ErrorKind::NotFound,
    );
    assert_eq!(
        s.written_fingerprint(&f.org, &teams, &unknown)
            .await
            .unwrap(),
        None
    );
    assert_kind(
        s.set_written_fingerprint(&f.org, &teams, &copy.message, "")
            .await,
        ErrorKind::InvalidInput,
    );
    // Another organization neither sees nor changes it.
    assert_kind(
        s.set_written_fingerprint(&other.org, &teams, &copy.message, "evil")
            .await,
        ErrorKind::NotFound,
    );
    assert_eq!(
        s.written_fingerprint(&other.org, &teams, &copy.message)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.written_fingerprint(&f.org, &teams, &copy.message)
            .await
            .unwrap()
            .as_deref(),
        Some("fp-2")
    );
}

/// Check: a part of a universal message in a channel can be recorded anew (a note the
/// previous account posted, followed by a new one): the old message is forgotten, the other
/// parts and channels are untouched, and a message recorded as something else is refused.
pub async fn a_message_copy_part_can_be_replaced(h: &dyn Harness) {
    let s = h.store();
    let f = fixture(s, "org").await;
    let u = UniversalMessageId::generate();
    let copy = |c: &str, m: &str, part: u32| MessageCopy {
        universal: u.clone(),
        channel: ch(c),
        message: MessageId::new(m).unwrap(),
        thread_root: None,
        posted_by: Some(PostingIdentity::ServiceAccount),
        posted_by_account: Some(uid("svc-guid")),
        part,
    };
    let (body, old_note) = (
        copy(TEAMS_C1, "1700000001000", 0),
        copy(TEAMS_C1, "1700000001001", 7),
    );
    let slack_note = copy(SLACK_C1, "1700000000.000200", 7);
    for c in [&body, &old_note, &slack_note] {
        s.put_message_copy(&f.org, c).await.unwrap();
    }
    let new_note = MessageCopy {
        posted_by_account: Some(uid("svc2-guid")),
        ..copy(TEAMS_C1, "1700000009000", 7)
    };
    assert_kind(
        s.put_message_copy(&f.org, &new_note).await,
        ErrorKind::Conflict,
    );
    s.replace_message_copy(&f.org, &new_note).await.unwrap();
    // Idempotent.
    s.replace_message_copy(&f.org, &new_note).await.unwrap();
    let mut all = s.message_copies(&f.org, &u).await.unwrap();
    all.sort_by(|a, b| a.message.as_str().cmp(b.message.as_str()));
    assert_eq!(
        all,
        vec![slack_note.clone(), body.clone(), new_note.clone()]
    );
    assert!(
        s.find_message_copy(&f.org, &old_note.channel, &old_note.message)
            .await
            .unwrap()
            .is_none(),
        "the old note is forgotten"
    );
    // A message already recorded as another part is not taken over.
    let clash = copy(TEAMS_C1, "1700000001000", 7);
    assert_kind(
        s.replace_message_copy(&f.org, &clash).await,
        ErrorKind::Conflict,
    );
    assert_eq!(
        s.message_copies(&f.org, &u).await.unwrap().len(),
        3,
        "unchanged"
    );
    assert_kind(
        s.replace_message_copy(&OrgId::new("nope").unwrap(), &new_note)
            .await,
        ErrorKind::NotFound,
    );
}
