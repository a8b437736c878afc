//! Checks of `SqlStore` that need raw access to the database (plaintext scans, corrupted
//! rows, schema versions, triggers) or `SqlStore`'s own API (key usage, pruning), run on
//! both backends. The `&dyn Store` checks are the reusable suite in
//! `switchboard_storage::testing`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use switchboard_core::secrecy::{ExposeSecret, SecretString};
use switchboard_core::*;
use switchboard_storage::testing::*;
use switchboard_storage::{Keyring, MasterKey};
use time::OffsetDateTime;

use crate::support::TestDb;

const LEASE: Duration = Duration::from_secs(30);

/// One test per check, for one backend.
macro_rules! sql_checks {
    ($setup:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(db) = $setup().await else { return };
                super::$name(&db).await;
                db.cleanup().await;
            }
        )*
    };
}

macro_rules! all_sql_checks {
    ($setup:path) => {
        sql_checks!($setup;
            secrets_and_key_rotation,
            database_holds_no_plaintext_secret,
            audit_log_refuses_edits_in_the_database,
            audit_verification_catches_tampering,
            prune_removes_finished_rows_only,
            unreadable_rows_are_clear_errors,
            undecodable_jobs_and_items_are_set_aside,
            newer_schema_is_refused,
            usable_as_dyn_store,
        );
    };
}

mod sqlite {
    all_sql_checks!(crate::support::TestDb::sqlite);
}

mod postgres {
    all_sql_checks!(crate::support::TestDb::postgres);
}

async fn audit_log_refuses_edits_in_the_database(db: &TestDb) {
    let s = &db.store;
    let org = s.create_org("org").await.unwrap().id;
    let e = s.append_audit(&org, audit("a.b", json!({}))).await.unwrap();
    assert!(
        db.try_exec("UPDATE audit_log SET action = 'x'")
            .await
            .is_err()
    );
    assert!(db.try_exec("DELETE FROM audit_log").await.is_err());
    assert_eq!(s.list_audit(&org, 0, 100).await.unwrap(), vec![e]);
}

async fn prune_removes_finished_rows_only(db: &TestDb) {
    let s = &db.store;
    let f = fixture(&*db.store, "org").await;
    s.outbox_enqueue(&[
        delivery(&f.org, &f.teams, TEAMS_C1, 1),
        delivery(&f.org, &f.teams, "msteams:team-1/19:two@thread.tacv2", 2),
        delivery(&f.org, &f.teams, "msteams:team-1/19:three@thread.tacv2", 3),
    ])
    .await
    .unwrap();
    let leased = s.outbox_lease(&w("w"), 10, LEASE).await.unwrap();
    assert_eq!(leased.len(), 3);
    s.outbox_complete(&w("w"), leased[0].id).await.unwrap();
    s.outbox_fail(&w("w"), leased[1].id, "gone").await.unwrap();
    s.inbox_accept(&f.org, &f.slack.id, &event("EvP1", SLACK_C1, "x"))
        .await
        .unwrap();
    s.inbox_accept(&f.org, &f.slack.id, &event("EvP2", "slack:T1/C2", "y"))
        .await
        .unwrap();
    let items = s.inbox_lease(&w("w"), 10, LEASE).await.unwrap();
    s.inbox_complete(&w("w"), items[0].id, &[]).await.unwrap();
    // Nothing finished before the cut-off time.
    let early = s
        .prune_queues(OffsetDateTime::now_utc() - time::Duration::hours(1))
        .await
        .unwrap();
    assert_eq!((early.inbox, early.outbox), (0, 0));
    let report = s
        .prune_queues(OffsetDateTime::now_utc() + time::Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!((report.inbox, report.outbox), (1, 2));
    assert_eq!(s.outbox_pending(&f.org).await.unwrap(), 1);
    // The unfinished item is still there; the pruned one no longer deduplicates.
    s.inbox_complete(&w("w"), items[1].id, &[]).await.unwrap();
    assert_eq!(
        s.inbox_accept(&f.org, &f.slack.id, &event("EvP1", SLACK_C1, "x"))
            .await
            .unwrap(),
        InboxOutcome::Accepted
    );
}

async fn undecodable_jobs_and_items_are_set_aside(db: &TestDb) {
    let s = &db.store;
    let f = fixture(&*db.store, "org").await;
    let two = "msteams:team-1/19:two@thread.tacv2";
    let three = "msteams:team-1/19:three@thread.tacv2";
    s.outbox_enqueue(&[
        delivery(&f.org, &f.teams, TEAMS_C1, 1),
        delivery(&f.org, &f.teams, two, 2),
        delivery(&f.org, &f.teams, three, 3),
    ])
    .await
    .unwrap();
    // A job from a newer version, and an untyped payload from before typed jobs.
    db.exec("UPDATE outbox SET job_version = 99 WHERE target LIKE '%19:one%'")
        .await;
    db.exec("UPDATE outbox SET job_version = 0 WHERE target LIKE '%19:two%'")
        .await;
    let leased = s.outbox_lease(&w("w"), 10, LEASE).await.unwrap();
    assert_eq!(leased.len(), 1);
    assert_eq!(job_n(&leased[0].job), 3);
    let errors = db
        .query_strings("SELECT last_error FROM outbox WHERE state = 'failed' ORDER BY id")
        .await;
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].contains("newer Switchboard"), "{errors:?}");
    assert!(errors[1].contains("untyped"), "{errors:?}");
    // A job tag this version does not know.
    s.outbox_enqueue(&[delivery(&f.org, &f.teams, TEAMS_C1, 4)])
        .await
        .unwrap();
    db.exec(r#"UPDATE outbox SET payload = '{"job":"teleport"}' WHERE state = 'pending' AND target LIKE '%19:one%'"#)
        .await;
    assert!(
        s.outbox_lease(&w("w2"), 10, LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.outbox_pending(&f.org).await.unwrap(), 1);

    // An inbox item of an unknown kind is set aside with its error; others still come.
    s.inbox_accept(&f.org, &f.teams.id, &event("EvNew", TEAMS_C1, "x"))
        .await
        .unwrap();
    s.inbox_accept(
        &f.org,
        &f.teams.id,
        &event("EvOk", "msteams:team-1/19:two@thread.tacv2", "y"),
    )
    .await
    .unwrap();
    db.exec(r#"UPDATE inbox SET item = '{"inbound":"hologram"}' WHERE event_id = 'EvNew'"#)
        .await;
    let items = s.inbox_lease(&w("w"), 10, LEASE).await.unwrap();
    assert_eq!(
        items
            .iter()
            .map(|i| i.item.dedupe_key().unwrap())
            .collect::<Vec<_>>(),
        vec!["EvOk"]
    );
    let errors = db
        .query_strings("SELECT error FROM inbox WHERE error IS NOT NULL")
        .await;
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("inbox.item"), "{errors:?}");
}

async fn secrets_and_key_rotation(db: &TestDb) {
    let s = &db.store;
    let f = fixture(&*db.store, "org").await;
    let other = s.create_org("other").await.unwrap();
    let v1 = SecretString::from("signing-secret-1".to_owned());
    s.put_secret(&f.org, "slack.signing_secret", &v1)
        .await
        .unwrap();
    assert_eq!(
        s.get_secret(&f.org, "slack.signing_secret")
            .await
            .unwrap()
            .unwrap()
            .expose_secret(),
        "signing-secret-1"
    );
    s.put_secret(
        &f.org,
        "slack.signing_secret",
        &SecretString::from("v2".to_owned()),
    )
    .await
    .unwrap();
    assert_eq!(
        s.get_secret(&f.org, "slack.signing_secret")
            .await
            .unwrap()
            .unwrap()
            .expose_secret(),
        "v2"
    );
    assert!(s.get_secret(&f.org, "missing").await.unwrap().is_none());
    assert!(
        s.get_secret(&other.id, "slack.signing_secret")
            .await
            .unwrap()
            .is_none()
    );
    assert_kind(s.put_secret(&f.org, "", &v1).await, ErrorKind::InvalidInput);
    assert_kind(
        s.put_secret(&f.org, "big", &SecretString::from("x".repeat(20_000)))
            .await,
        ErrorKind::InvalidInput,
    );
    assert_kind(
        s.put_secret(&OrgId::generate(), "n", &v1).await,
        ErrorKind::NotFound,
    );
    s.put_secret(
        &f.org,
        "msteams.client_secret",
        &SecretString::from("cs".to_owned()),
    )
    .await
    .unwrap();
    s.put_credentials(&f.org, &f.slack.id, &creds("xoxb-rot"))
        .await
        .unwrap();
    s.put_subscription(
        &f.org,
        &Subscription {
            id: sid("sub-rot"),
            connection: f.teams.id.clone(),
            channel: ch(TEAMS_C1),
            client_state: SecretString::from("state-rot".to_owned()),
            expires_at: OffsetDateTime::now_utc(),
        },
    )
    .await
    .unwrap();

    let jane = uid("teams-jane");
    s.put_linked_account(
        &f.org,
        &LinkedAccount {
            platform: PlatformKind::Msteams,
            user: jane.clone(),
            display_name: "Jane".into(),
            linked_at: OffsetDateTime::now_utc(),
        },
        &creds("jane-rot"),
        Actor::System,
    )
    .await
    .unwrap();

    let old = db.key.clone();
    let usage = s.sealed_key_usage().await.unwrap();
    assert_eq!(usage, BTreeMap::from([(old.id().clone(), 5)]));

    // Rotate: the new key seals, the old one still opens until everything is resealed.
    let new = MasterKey::generate();
    let rotated = db
        .reopen(Keyring::new(new.clone()).with_previous(old.clone()))
        .await
        .unwrap();
    assert_eq!(
        rotated
            .get_secret(&f.org, "slack.signing_secret")
            .await
            .unwrap()
            .unwrap()
            .expose_secret(),
        "v2"
    );
    assert_eq!(rotated.reseal_all().await.unwrap(), 5);
    assert_eq!(rotated.reseal_all().await.unwrap(), 0);
    assert_eq!(
        rotated.sealed_key_usage().await.unwrap(),
        BTreeMap::from([(new.id().clone(), 5)])
    );
    // Only the new key is needed now.
    let only_new = db.reopen(new.clone()).await.unwrap();
    assert_eq!(
        only_new
            .get_linked_account(&f.org, PlatformKind::Msteams, &jane)
            .await
            .unwrap()
            .unwrap()
            .1
            .access_token
            .expose_secret(),
        "jane-rot"
    );
    assert_eq!(
        only_new
            .get_credentials(&f.org, &f.slack.id)
            .await
            .unwrap()
            .unwrap()
            .access_token
            .expose_secret(),
        "xoxb-rot"
    );
    assert_eq!(
        only_new
            .get_subscription(&sid("sub-rot"))
            .await
            .unwrap()
            .unwrap()
            .1
            .client_state
            .expose_secret(),
        "state-rot"
    );
    assert_eq!(
        only_new
            .get_secret(&f.org, "msteams.client_secret")
            .await
            .unwrap()
            .unwrap()
            .expose_secret(),
        "cs"
    );
    // The old key alone can no longer open anything, and says which key is missing.
    let e = assert_kind(
        s.get_secret(&f.org, "slack.signing_secret").await,
        ErrorKind::Storage,
    );
    assert!(e.message().contains(new.id().as_str()), "{e}");
    assert!(!e.to_string().contains("v2"));
    only_new.close().await;
    rotated.close().await;
}

async fn database_holds_no_plaintext_secret(db: &TestDb) {
    let s = &db.store;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let canary = format!("canary-org-{tag}");
    let org = s.create_org(&canary).await.unwrap().id;
    let slack = connection(&org, PlatformKind::Slack, "T1");
    let teams = connection(&org, PlatformKind::Msteams, "tenant");
    s.put_connection(&slack).await.unwrap();
    s.put_connection(&teams).await.unwrap();
    let access = format!("xoxb-PLANTED-ACCESS-{tag}");
    let refresh = format!("PLANTED-REFRESH-{tag}");
    let signing = format!("PLANTED-SIGNING-{tag}");
    let client_secret = format!("PLANTED-CLIENT-SECRET-{tag}");
    let client_state = format!("PLANTED-CLIENTSTATE-{tag}");
    s.put_credentials(
        &org,
        &slack.id,
        &Credentials {
            access_token: SecretString::from(access.clone()),
            refresh_token: Some(SecretString::from(refresh.clone())),
            expires_at: None,
            scopes: vec![],
        },
    )
    .await
    .unwrap();
    s.put_secret(
        &org,
        "slack.signing_secret",
        &SecretString::from(signing.clone()),
    )
    .await
    .unwrap();
    s.put_secret(
        &org,
        "msteams.client_secret",
        &SecretString::from(client_secret.clone()),
    )
    .await
    .unwrap();
    s.put_subscription(
        &org,
        &Subscription {
            id: sid(&format!("sub-{tag}")),
            connection: teams.id.clone(),
            channel: ch(TEAMS_C1),
            client_state: SecretString::from(client_state.clone()),
            expires_at: OffsetDateTime::now_utc(),
        },
    )
    .await
    .unwrap();
    let user_access = format!("PLANTED-USER-ACCESS-{tag}");
    let user_refresh = format!("PLANTED-USER-REFRESH-{tag}");
    s.put_linked_account(
        &org,
        &LinkedAccount {
            platform: PlatformKind::Msteams,
            user: uid("teams-user-1"),
            display_name: "Jane".into(),
            linked_at: OffsetDateTime::now_utc(),
        },
        &Credentials {
            access_token: SecretString::from(user_access.clone()),
            refresh_token: Some(SecretString::from(user_refresh.clone())),
            expires_at: None,
            scopes: vec![],
        },
        Actor::System,
    )
    .await
    .unwrap();
    let admin = s.create_admin_token(&org, "ci").await.unwrap();
    // A careless audit entry: its secret-looking details are redacted before storage.
    s.append_audit(
        &org,
        audit(
            "connection.created",
            json!({"client_secret": client_secret, "note": access}),
        ),
    )
    .await
    .unwrap();

    let bytes = db.raw_bytes().await;
    let contains = |needle: &str| {
        let hexed = hex::encode(needle.as_bytes());
        let found = |n: &[u8]| bytes.windows(n.len()).any(|w| w == n);
        found(needle.as_bytes()) || found(hexed.as_bytes())
    };
    // Positive control: the search does find what is stored in the clear.
    assert!(
        contains(&canary),
        "the byte search is broken: the canary is missing"
    );
    for planted in [
        access.as_str(),
        refresh.as_str(),
        signing.as_str(),
        client_secret.as_str(),
        client_state.as_str(),
        user_access.as_str(),
        user_refresh.as_str(),
        admin.expose_secret(),
    ] {
        assert!(!contains(planted), "plaintext secret found in the database");
    }
    // Only the random part of the admin token is secret; not even a hex dump shows it. It is
    // everything after `sbat_<lookup>_` (URL-safe base64 may itself contain `_`).
    let admin_secret = admin
        .expose_secret()
        .splitn(3, '_')
        .nth(2)
        .unwrap()
        .to_owned();
    assert_eq!(admin_secret.len(), 43, "{admin_secret:?}");
    assert!(!contains(&admin_secret));
}

async fn audit_verification_catches_tampering(db: &TestDb) {
    let s = &db.store;
    let edited = s.create_org("edited").await.unwrap().id;
    let deleted = s.create_org("deleted").await.unwrap().id;
    let reordered = s.create_org("reordered").await.unwrap().id;
    let truncated = s.create_org("truncated").await.unwrap().id;
    let actor = s.create_org("actor").await.unwrap().id;
    let intact = s.create_org("intact").await.unwrap().id;
    for org in [&edited, &deleted, &reordered, &truncated, &actor, &intact] {
        fill_audit(&*db.store, org, 5).await;
        assert!(s.verify_audit(org).await.unwrap().is_ok());
    }
    db.allow_audit_tampering().await;

    db.exec(&format!(
        "UPDATE audit_log SET details = '{{\"i\":999}}' WHERE org_id = '{edited}' AND seq = 3"
    ))
    .await;
    let v = s.verify_audit(&edited).await.unwrap();
    assert_eq!(v.first_bad_seq, Some(3), "{v:?}");
    assert!(v.reason.unwrap().contains("altered"));

    db.exec(&format!(
        "DELETE FROM audit_log WHERE org_id = '{deleted}' AND seq = 2"
    ))
    .await;
    let v = s.verify_audit(&deleted).await.unwrap();
    assert_eq!(v.first_bad_seq, Some(2), "{v:?}");

    for sql in [
        format!("UPDATE audit_log SET seq = -1 WHERE org_id = '{reordered}' AND seq = 2"),
        format!("UPDATE audit_log SET seq = 2 WHERE org_id = '{reordered}' AND seq = 3"),
        format!("UPDATE audit_log SET seq = 3 WHERE org_id = '{reordered}' AND seq = -1"),
    ] {
        db.exec(&sql).await;
    }
    let v = s.verify_audit(&reordered).await.unwrap();
    assert_eq!(v.first_bad_seq, Some(2), "{v:?}");

    db.exec(&format!(
        "DELETE FROM audit_log WHERE org_id = '{truncated}' AND seq = 5"
    ))
    .await;
    let v = s.verify_audit(&truncated).await.unwrap();
    assert_eq!(v.first_bad_seq, Some(5), "{v:?}");
    assert!(v.reason.unwrap().contains("missing"));

    db.exec(&format!(
        "UPDATE audit_log SET actor = '{{\"type\":\"martian\"}}' WHERE org_id = '{actor}' AND seq = 4"
    ))
    .await;
    let v = s.verify_audit(&actor).await.unwrap();
    assert_eq!(v.first_bad_seq, Some(4), "{v:?}");
    // Listing the broken entry is a clear error, not a panic.
    assert_kind(s.list_audit(&actor, 3, 1).await, ErrorKind::Storage);

    let v = s.verify_audit(&intact).await.unwrap();
    assert!(v.is_ok(), "{v:?}");
    assert_eq!(v.checked, 5);
}

async fn unreadable_rows_are_clear_errors(db: &TestDb) {
    let s = &db.store;
    let f = fixture(&*db.store, "org").await;
    // An enum value from a newer version.
    db.exec(&format!(
        "UPDATE connections SET health = 'exploded' WHERE id = '{}'",
        f.slack.id
    ))
    .await;
    let e = assert_kind(
        s.get_connection(&f.org, &f.slack.id).await,
        ErrorKind::Storage,
    );
    assert!(
        e.message().contains("connections.health") && e.message().contains("exploded"),
        "{e}"
    );
    assert_kind(s.list_connections(&f.org).await, ErrorKind::Storage);
    // The other connection still reads.
    assert!(
        s.get_connection(&f.org, &f.teams.id)
            .await
            .unwrap()
            .is_some()
    );

    let run = s.begin_import(&f.org, &f.teams.id).await.unwrap();
    s.upsert_channels(
        &f.org,
        &f.teams.id,
        run,
        &[channel("team-1", "19:x@thread.tacv2")],
    )
    .await
    .unwrap();
    s.upsert_users(
        &f.org,
        &f.teams.id,
        run,
        &[user("A1", "A", None), user("A2", "B", None)],
    )
    .await
    .unwrap();
    db.exec("UPDATE channels SET kind = 'hologram'").await;
    let e = assert_kind(
        s.get_channel(&f.org, &ch("msteams:team-1/19:x@thread.tacv2"))
            .await,
        ErrorKind::Storage,
    );
    assert!(e.message().contains("channels.kind"), "{e}");
    db.exec("UPDATE users SET platform = 'discord' WHERE id = 'A2'")
        .await;
    let e = assert_kind(
        s.list_users(&f.org, None, None, 100).await,
        ErrorKind::Storage,
    );
    assert!(
        e.message().contains("users.platform") && e.message().contains("discord"),
        "{e}"
    );

    // Invalid UTF-8 in a text column: SQLite can hold it (and reading it is an error, not a
    // panic); PostgreSQL refuses to store it at all.
    let sql = if db.is_postgres() {
        "UPDATE users SET display_name = convert_from('\\xc328'::bytea, 'UTF8') WHERE id = 'A1'"
    } else {
        "UPDATE users SET display_name = CAST(X'C328' AS TEXT) WHERE id = 'A1'"
    };
    match db.try_exec(sql).await {
        Ok(_) => {
            let e = assert_kind(
                s.get_user(&f.org, PlatformKind::Msteams, &uid("A1")).await,
                ErrorKind::Storage,
            );
            assert!(e.message().contains("display_name"), "{e}");
        }
        Err(_) => assert!(db.is_postgres(), "SQLite should store the bytes"),
    }

    // Undecodable queue rows are set aside instead of blocking the queue.
    s.outbox_enqueue(&[
        delivery(&f.org, &f.teams, TEAMS_C1, 1),
        delivery(&f.org, &f.teams, "msteams:team-1/19:two@thread.tacv2", 2),
    ])
    .await
    .unwrap();
    db.exec("UPDATE outbox SET payload = '{not json' WHERE target LIKE '%19:one%'")
        .await;
    let leased = s.outbox_lease(&w("w"), 10, LEASE).await.unwrap();
    assert_eq!(leased.len(), 1);
    assert_eq!(job_n(&leased[0].job), 2);
    assert_eq!(s.outbox_pending(&f.org).await.unwrap(), 1);
    s.inbox_accept(&f.org, &f.teams.id, &event("EvBad", TEAMS_C1, "x"))
        .await
        .unwrap();
    s.inbox_accept(&f.org, &f.teams.id, &event("EvGood", TEAMS_C1, "y"))
        .await
        .unwrap();
    db.exec("UPDATE inbox SET item = '[]' WHERE event_id = 'EvBad'")
        .await;
    let items = s.inbox_lease(&w("w"), 10, LEASE).await.unwrap();
    assert_eq!(
        items
            .iter()
            .map(|i| i.item.dedupe_key().unwrap())
            .collect::<Vec<_>>(),
        vec!["EvGood"]
    );
}

async fn newer_schema_is_refused(db: &TestDb) {
    let sql = if db.is_postgres() {
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from the future', TRUE, '\\x00'::bytea, 0)"
    } else {
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from the future', TRUE, X'00', 0)"
    };
    db.exec(sql).await;
    let e = db.reopen(db.key.clone()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Storage);
    assert!(e.message().contains("newer Switchboard"), "{e}");
    // Reopening an up-to-date database applies nothing and works.
    db.exec("DELETE FROM _sqlx_migrations WHERE version = 9999")
        .await;
    let again = db.reopen(db.key.clone()).await.unwrap();
    again.close().await;
}

async fn usable_as_dyn_store(db: &TestDb) {
    // What the relay and the server hold.
    let store: Arc<dyn Store> = db.store.shared();
    let org = store.create_org("dyn").await.unwrap();
    assert_eq!(store.get_org(&org.id).await.unwrap(), Some(org.clone()));
    // The SqlStore itself is a `&dyn Store` too, over the same data.
    let as_dyn: &dyn Store = &*db.store;
    assert_eq!(as_dyn.get_org(&org.id).await.unwrap(), Some(org));
    let key = db.key.to_base64();
    for dbg in [format!("{store:?}"), format!("{:?}", db.store)] {
        assert!(
            dbg.contains("Sql") && !dbg.contains(key.expose_secret()),
            "{dbg}"
        );
    }
}
