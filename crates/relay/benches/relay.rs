//! The relay engine alone: translate + deliver over SQLite with instant fake platforms, from
//! a pre-filled inbox (no HTTP, no webhook ingestion), so the number is what the engine and
//! the store sustain. `cargo bench -p switchboard-relay --bench relay` (env
//! `SB_BENCH_MESSAGES`, default 5000). Prints one JSON line per configuration.
//!
//! The fake platforms and the world are those of the pipeline tests (`tests/it/world.rs`).

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use std::time::Instant;
use switchboard_core::*;
use switchboard_relay::engine::{Connections, DeliveryOutcome, Relay, RelayConfig};
use switchboard_storage::{Keyring, MasterKey, SqlStore};
use time::OffsetDateTime;

include!("../tests/it/world.rs");

fn main() {
    let n: usize = std::env::var("SB_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for (label, threshold) in [
            ("batching off", None),
            ("batching on (backlog > 8)", Some(8)),
        ] {
            let w = world_with(|c| c.batch_threshold = threshold).await;
            let items: Vec<Inbound> = (0..n)
                .map(|i| {
                    event(
                        &format!("E{i}"),
                        &w.slack_ch,
                        posted(
                            &format!("1700000000.{:06}", i + 1),
                            None,
                            RichText::plain(format!("message {i} with a few words of text")),
                        ),
                    )
                })
                .collect();
            for chunk in items.chunks(MAX_INBOX_BATCH) {
                w.store
                    .inbox_accept_batch(&w.org, &w.slack, chunk)
                    .await
                    .unwrap();
            }
            let start = Instant::now();
            let mut delivered = 0usize;
            loop {
                let t = w.relay.translate_batch().await.unwrap();
                let d = w.relay.deliver_batch().await.unwrap();
                delivered += d
                    .iter()
                    .filter(|o| **o == DeliveryOutcome::Delivered)
                    .count();
                if t == 0 && d.is_empty() {
                    break;
                }
            }
            let secs = start.elapsed().as_secs_f64();
            let posts = w.teams_rec.posts().len();
            assert_eq!(delivered, n, "every message delivered");
            println!(
                "{}",
                serde_json::json!({
                    "scenario": "engine_sqlite",
                    "config": label,
                    "messages": n,
                    "seconds": secs,
                    "messages_per_s": n as f64 / secs,
                    "platform_posts": posts,
                    "posts_per_s": posts as f64 / secs,
                })
            );
        }
    });
}
