//! Outbox throughput: enqueue, lease and complete N deliveries spread over many target
//! channels, with one worker and with four concurrent workers. SQLite always; PostgreSQL when
//! `DATABASE_URL` is set.

mod common;

use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use switchboard_core::{ChannelRef, NewDelivery, PlatformKind, UniversalMessageId, WorkerId};
use switchboard_storage::SqlStore;
use switchboard_storage::testing::post_job;

const DELIVERIES: u64 = 1_000;
const TARGETS: u64 = 50;
const LEASE: Duration = Duration::from_secs(60);

async fn cycle(store: &SqlStore, batch: &[NewDelivery], workers: usize) {
    for chunk in batch.chunks(100) {
        store.outbox_enqueue(chunk).await.unwrap();
    }
    let org = batch[0].org.clone();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let store = store.clone();
        let org = org.clone();
        tasks.push(tokio::spawn(async move {
            let worker = WorkerId::new(format!("bench-{w}")).unwrap();
            loop {
                let leased = store.outbox_lease(&worker, 25, LEASE).await.unwrap();
                if leased.is_empty() {
                    if store.outbox_pending(&org).await.unwrap() == 0 {
                        break;
                    }
                    tokio::task::yield_now().await;
                    continue;
                }
                for d in leased {
                    store.outbox_complete(&worker, d.id).await.unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

fn outbox(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let benches = rt.block_on(common::backends());
    for b in benches {
        let conn = rt.block_on(common::new_connection(
            &b.store,
            &b.org,
            PlatformKind::Msteams,
        ));
        let batch: Vec<NewDelivery> = (0..DELIVERIES)
            .map(|n| NewDelivery {
                org: b.org.clone(),
                connection: conn.id.clone(),
                target: format!("msteams:team-1/19:c{}@thread.tacv2", n % TARGETS)
                    .parse::<ChannelRef>()
                    .unwrap(),
                // A full post job (content, sender, a file), as the relay enqueues them.
                job: post_job(&UniversalMessageId::generate()),
            })
            .collect();
        let mut g = c.benchmark_group(format!("outbox/{}", b.label));
        g.sampling_mode(SamplingMode::Flat)
            .sample_size(10)
            .measurement_time(Duration::from_secs(20))
            .throughput(Throughput::Elements(DELIVERIES));
        for workers in [1usize, 4] {
            g.bench_function(
                format!("enqueue_lease_complete_{DELIVERIES}_x{workers}_workers"),
                |bench| {
                    bench.iter_custom(|iters| {
                        rt.block_on(async {
                            let start = Instant::now();
                            for _ in 0..iters {
                                cycle(&b.store, &batch, workers).await;
                            }
                            start.elapsed()
                        })
                    })
                },
            );
        }
        g.finish();
        rt.block_on(b.drop_schema());
    }
}

criterion_group!(benches, outbox);
criterion_main!(benches);
