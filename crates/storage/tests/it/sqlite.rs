//! SQLite-specific checks.

use switchboard_storage::{DB_FILE_NAME, Keyring, SqlStore};

#[tokio::test]
async fn data_dir_is_created_private_with_wal() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("switchboard-data");
    let store = SqlStore::open_data_dir(&data).await.unwrap();
    assert_eq!(store.backend(), switchboard_storage::BackendKind::Sqlite);
    let org = store.create_org("first run").await.unwrap();
    let key_id = store.keyring().current().id().clone();
    store.close().await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in [DB_FILE_NAME, switchboard_storage::keys::KEY_FILE_NAME] {
            let mode = std::fs::metadata(data.join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{f} is readable by others: {mode:o}");
        }
    }
    // Second run: same key, same data, migrations not re-applied.
    let again = SqlStore::open_data_dir(&data).await.unwrap();
    assert_eq!(again.keyring().current().id(), &key_id);
    assert_eq!(again.get_org(&org.id).await.unwrap(), Some(org));
    again.close().await;
    let pool =
        sqlx::SqlitePool::connect(&format!("sqlite://{}", data.join(DB_FILE_NAME).display()))
            .await
            .unwrap();
    let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    pool.close().await;
}

#[tokio::test]
async fn open_accepts_paths_and_urls_but_not_memory() {
    let dir = tempfile::tempdir().unwrap();
    let key = switchboard_storage::MasterKey::generate();
    let url = format!("sqlite://{}", dir.path().join("a.db").display());
    let s = SqlStore::open(&url, key.clone()).await.unwrap();
    s.close().await;
    assert!(dir.path().join("a.db").exists());
    let e = SqlStore::open("sqlite::memory:", key.clone())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), switchboard_core::ErrorKind::InvalidInput);
    let e = SqlStore::postgres("sqlite://x.db", Keyring::new(key))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), switchboard_core::ErrorKind::InvalidInput);
}
