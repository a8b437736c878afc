//! Shared bench setup: one store per backend (SQLite in a temporary directory; PostgreSQL in
//! a fresh schema when `DATABASE_URL` is set).

use std::time::Duration;

use switchboard_core::{
    AccountIdentity, Connection, ConnectionHealth, ConnectionId, OrgId, PlatformKind, TenantId,
    UserId,
};
use switchboard_storage::{MasterKey, SqlStore, StoreOptions};
use time::OffsetDateTime;

/// A store under benchmark and how to clean it up.
pub struct Bench {
    pub label: &'static str,
    pub store: SqlStore,
    pub org: OrgId,
    schema: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl Bench {
    pub async fn drop_schema(self) {
        self.store.close().await;
        if let Some((url, schema)) = self.schema {
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
    }
}

/// SQLite always; PostgreSQL when `DATABASE_URL` is set.
pub async fn backends() -> Vec<Bench> {
    let mut out = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    let store = SqlStore::sqlite(dir.path().join("bench.db"), MasterKey::generate())
        .await
        .unwrap();
    let org = store.create_org("bench").await.unwrap().id;
    out.push(Bench {
        label: "sqlite",
        store,
        org,
        schema: None,
        _dir: Some(dir),
    });
    match std::env::var("DATABASE_URL") {
        Ok(url) => {
            let schema = format!("sbbench_{}", uuid::Uuid::new_v4().simple());
            let options = StoreOptions::default()
                .with_max_connections(8)
                .with_schema(schema.clone())
                .unwrap()
                .with_acquire_timeout(Duration::from_secs(60));
            let store = SqlStore::open_with(&url, MasterKey::generate(), options)
                .await
                .unwrap();
            let org = store.create_org("bench").await.unwrap().id;
            out.push(Bench {
                label: "postgres",
                store,
                org,
                schema: Some((url, schema)),
                _dir: None,
            });
        }
        Err(_) => eprintln!("PostgreSQL benchmarks skipped: DATABASE_URL is not set"),
    }
    out
}

/// A new connection of `platform` in `org`.
pub async fn new_connection(store: &SqlStore, org: &OrgId, platform: PlatformKind) -> Connection {
    let c = Connection {
        id: ConnectionId::generate(),
        org: org.clone(),
        platform,
        tenant: TenantId::new("contoso").unwrap(),
        enterprise: None,
        display_name: "Contoso".into(),
        account: AccountIdentity {
            user_id: UserId::new("svc").unwrap(),
            display_name: "svc".into(),
            is_service_account: true,
        },
        health: ConnectionHealth::Ok,
        created_at: OffsetDateTime::now_utc(),
    };
    store.put_connection(&c).await.unwrap();
    c
}
