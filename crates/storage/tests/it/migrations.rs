//! Data written under the first schema, migrated by opening the store: message copies keep
//! who posted them (`posted_by_us` → the service account, and which account that was, from
//! the connection and its migrations) and get part numbers, stored
//! events become inbox items, untyped deliveries are set aside with a clear error.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use switchboard_core::*;
use switchboard_storage::testing::{platform_event, w};
use switchboard_storage::{MasterKey, SqlStore, StoreOptions};

const LEASE: Duration = Duration::from_secs(30);

/// Applies only the first migration, exactly as version 1 of Switchboard did.
async fn first_schema_only<DB>(pool: &sqlx::Pool<DB>, dialect: &str)
where
    DB: sqlx::Database,
    DB::Connection: sqlx::migrate::Migrate,
{
    let dir = tempfile::tempdir().unwrap();
    let src = format!(
        "{}/migrations/{dialect}/0001_initial.sql",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::copy(src, dir.path().join("0001_initial.sql")).unwrap();
    Migrator::new(dir.path())
        .await
        .unwrap()
        .run(pool)
        .await
        .unwrap();
}

/// Rows as version 1 wrote them. Returns the JSON of the stored event.
fn legacy_rows(org: &str, conn: &str, event_json: &str) -> Vec<String> {
    let esc = event_json.replace('\'', "''");
    vec![
        format!("INSERT INTO orgs (id, name, created_at) VALUES ('{org}', 'old', 1)"),
        format!(
            "INSERT INTO connections (org_id, id, platform, tenant, display_name, account_user_id, \
             account_display_name, account_is_service_account, health, created_at) \
             VALUES ('{org}', '{conn}', 'slack', 'T1', 'old', 'USVC', 'svc', TRUE, 'ok', 1)"
        ),
        // The origin, and two copies of it in one Teams channel (recorded in this order).
        format!(
            "INSERT INTO message_copies (org_id, platform, team_id, channel_id, message_id, \
             universal_id, thread_root, posted_by_us, created_at) VALUES \
             ('{org}', 'slack', 'T1', 'C1', '1.000100', 'u-1', NULL, FALSE, 10), \
             ('{org}', 'msteams', 'team-1', '19:a@thread.tacv2', 'm-2', 'u-1', NULL, TRUE, 30), \
             ('{org}', 'msteams', 'team-1', '19:a@thread.tacv2', 'm-1', 'u-1', 'r-1', TRUE, 20)"
        ),
        // The Teams channel is linked through a connection migrated (at 25) off `UOLD` onto
        // `USVC2`: the copy recorded before that was posted by `UOLD`, the later one by `USVC2`.
        format!(
            "INSERT INTO connections (org_id, id, platform, tenant, display_name, account_user_id, \
             account_display_name, account_is_service_account, health, created_at) \
             VALUES ('{org}', '{conn}-t', 'msteams', 'tenant-1', 'teams', 'USVC2', 'svc2', TRUE, \
             'ok', 1)"
        ),
        format!(
            "INSERT INTO universal_channels (org_id, id, name, relay_membership_notices, \
             created_at) VALUES ('{org}', 'uc-1', 'eng', FALSE, 1)"
        ),
        format!(
            "INSERT INTO universal_endpoints (org_id, universal_id, position, connection_id, \
             platform, team_id, channel_id) VALUES ('{org}', 'uc-1', 0, '{conn}-t', 'msteams', \
             'team-1', '19:a@thread.tacv2')"
        ),
        format!(
            "INSERT INTO audit_log (org_id, seq, actor, action, target, at, details, prev_hash, \
             hash) VALUES ('{org}', 1, '{{\"kind\":\"system\"}}', 'connection.migrated', \
             '{conn}-t', 25, '{{\"from\":{{\"user_id\":\"UOLD\"}},\"to\":{{\"user_id\":\"USVC2\"}}}}', \
             'p', 'h')"
        ),
        format!(
            "INSERT INTO inbox (org_id, connection_id, platform, event_id, channel, event, received_at) \
             VALUES ('{org}', '{conn}', 'slack', 'EvOld', 'slack:T1/C1', '{esc}', 5)"
        ),
        format!(
            "INSERT INTO outbox (org_id, connection_id, target, payload, state, attempts, \
             next_attempt_at, created_at) VALUES ('{org}', '{conn}', 'slack:T1/C9', \
             '{{\"op\":\"post\",\"n\":1}}', 'pending', 0, 0, 0)"
        ),
    ]
}

async fn check_migrated(store: &SqlStore, org: &OrgId, event: &PlatformEvent) {
    let copies = store
        .message_copies(org, &UniversalMessageId::new("u-1").unwrap())
        .await
        .unwrap();
    let summary: Vec<(String, Option<PostingIdentity>, u32)> = copies
        .iter()
        .map(|c| (c.message.to_string(), c.posted_by.clone(), c.part))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("1.000100".to_owned(), None, 0),
            ("m-1".to_owned(), Some(PostingIdentity::ServiceAccount), 0),
            ("m-2".to_owned(), Some(PostingIdentity::ServiceAccount), 1),
        ]
    );
    assert_eq!(copies[1].thread_root, Some(MessageId::new("r-1").unwrap()));
    let accounts: Vec<Option<&str>> = copies
        .iter()
        .map(|c| c.posted_by_account.as_ref().map(|a| a.as_str()))
        .collect();
    assert_eq!(accounts, vec![None, Some("UOLD"), Some("USVC2")]);
    let items = store.inbox_lease(&w("w"), 10, LEASE).await.unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].item, Inbound::Event(event.clone()));
    // Still deduplicated against what was stored before.
    assert_eq!(
        store
            .inbox_accept(org, &items[0].connection, &Inbound::Event(event.clone()))
            .await
            .unwrap(),
        InboxOutcome::Duplicate
    );
    // The untyped delivery cannot run: set aside, not leased, not blocking.
    assert!(
        store
            .outbox_lease(&w("w"), 10, LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.outbox_pending(org).await.unwrap(), 0);
}

#[tokio::test]
async fn sqlite_data_of_the_first_schema_migrates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let pool = sqlx::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true),
    )
    .await
    .unwrap();
    first_schema_only(&pool, "sqlite").await;
    let (org, conn) = (OrgId::generate(), ConnectionId::generate());
    let event = platform_event("EvOld", "slack:T1/C1", "from version 1");
    for sql in legacy_rows(
        org.as_str(),
        conn.as_str(),
        &serde_json::to_string(&event).unwrap(),
    ) {
        sqlx::query(&sql).execute(&pool).await.unwrap();
    }
    pool.close().await;
    let store = SqlStore::sqlite(&path, MasterKey::generate())
        .await
        .unwrap();
    check_migrated(&store, &org, &event).await;
    store.close().await;
}

#[tokio::test]
async fn postgres_data_of_the_first_schema_migrates() {
    let Some(url) = crate::support::postgres_url(
        std::env::var("DATABASE_URL").ok(),
        std::env::var_os("CI").is_some(),
    ) else {
        return;
    };
    let schema = format!("sbm_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
        .execute(&admin)
        .await
        .unwrap();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(
            sqlx::postgres::PgConnectOptions::from_str(&url)
                .unwrap()
                .options([("search_path", schema.as_str())]),
        )
        .await
        .unwrap();
    first_schema_only(&pool, "postgres").await;
    let (org, conn) = (OrgId::generate(), ConnectionId::generate());
    let event = platform_event("EvOld", "slack:T1/C1", "from version 1");
    for sql in legacy_rows(
        org.as_str(),
        conn.as_str(),
        &serde_json::to_string(&event).unwrap(),
    ) {
        sqlx::query(&sql).execute(&pool).await.unwrap();
    }
    pool.close().await;
    let store = SqlStore::open_with(
        &url,
        MasterKey::generate(),
        StoreOptions::default().with_schema(schema.clone()).unwrap(),
    )
    .await
    .unwrap();
    check_migrated(&store, &org, &event).await;
    store.close().await;
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
}
