//! Import upserts of the large seed's users: 20,000 users shaped like the sandbox large seed
//! (`user00001@contoso.com` …), first import (inserts) and an unchanged re-import (the
//! idempotent path). Target: < 5 s. SQLite always; PostgreSQL when `DATABASE_URL` is set.

mod common;

use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use switchboard_core::{PlatformKind, User, UserId};

const USERS: usize = 20_000;

fn seed_users() -> Vec<User> {
    (1..=USERS)
        .map(|i| User {
            // Entra object ids are GUIDs.
            id: UserId::new(format!("{:08x}-0000-4000-8000-{:012x}", i, i)).unwrap(),
            display_name: format!("User {i:05}"),
            email: Some(format!("user{i:05}@contoso.com")),
            avatar_url: None,
            is_guest: i % 50 == 0,
            is_bot: false,
            is_deleted: false,
        })
        .collect()
}

fn import(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let users = seed_users();
    let benches = rt.block_on(common::backends());
    for b in benches {
        let mut g = c.benchmark_group(format!("import_users/{}", b.label));
        g.sampling_mode(SamplingMode::Flat)
            .sample_size(10)
            .measurement_time(Duration::from_secs(20))
            .throughput(Throughput::Elements(USERS as u64));
        g.bench_function("first_import_20000", |bench| {
            bench.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let conn =
                            common::new_connection(&b.store, &b.org, PlatformKind::Msteams).await;
                        let run = b.store.begin_import(&b.org, &conn.id).await.unwrap();
                        let start = Instant::now();
                        b.store
                            .upsert_users(&b.org, &conn.id, run, &users)
                            .await
                            .unwrap();
                        b.store
                            .finish_user_import(&b.org, &conn.id, run)
                            .await
                            .unwrap();
                        total += start.elapsed();
                    }
                    total
                })
            })
        });
        let conn = rt.block_on(common::new_connection(
            &b.store,
            &b.org,
            PlatformKind::Msteams,
        ));
        g.bench_function("reimport_unchanged_20000", |bench| {
            bench.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let run = b.store.begin_import(&b.org, &conn.id).await.unwrap();
                        b.store
                            .upsert_users(&b.org, &conn.id, run, &users)
                            .await
                            .unwrap();
                        b.store
                            .finish_user_import(&b.org, &conn.id, run)
                            .await
                            .unwrap();
                    }
                    start.elapsed()
                })
            })
        });
        g.finish();
        rt.block_on(b.drop_schema());
    }
}

criterion_group!(benches, import);
criterion_main!(benches);
