//! Webhook acknowledgement latency and idle memory of the server (PRODUCT.md's bars:
//! p99 ≤ 10 ms at 500 signed Slack events/s, every event in the inbox; idle RSS ≤ 40 MB).
//!
//! `cargo bench -p switchboard-server --bench webhooks` (part of `cargo xtask bench`). The
//! real router with the real Slack receiver (v0 signature checked on every request) on
//! loopback, over SQLite in a temporary directory; the client offers events open-loop at a
//! fixed rate and measures each acknowledgement from its *scheduled* send time, so a slow
//! answer cannot hide the ones queued behind it. At the end the inbox is drained and every
//! event must be there exactly once.
//!
//! Knobs (environment): `BENCH_RATE` (events/s, default 500), `BENCH_SECONDS` (default 10).
//! Idle RSS: this process's `VmRSS` once the server is up and idle (before any client
//! exists), and, when a release `switchboard` binary sits next to this bench
//! (`cargo build --release -p switchboard-cli`), that of `switchboard serve` itself.

use std::collections::HashSet;
use std::io::BufRead;
use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use switchboard_core::{
    AccountIdentity, Connection, ConnectionHealth, ConnectionId, Credentials, PlatformKind, Store,
    TenantId, UserId, WorkerId,
};
use switchboard_server::{AppState, Receivers, router};
use switchboard_slack::events::{compute_signature, now_unix};
use switchboard_slack::{OwnIdentityCache, SlackEventsReceiver};
use switchboard_storage::{Keyring, MasterKey, SqlStore};
use time::OffsetDateTime;

const TEAM: &str = "TBENCH0001";
const SIGNING_SECRET: &str = "bench-signing-secret-0123456789abcdef";
const P99_BAR_MS: f64 = 10.0;
const RSS_BAR_MB: f64 = 40.0;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|v| *v > 0)
        .unwrap_or(default)
}

/// `VmRSS` of `/proc/{pid}/status`, in kB.
fn rss_kb(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn event_body(i: u64) -> String {
    serde_json::json!({
        "token": "unused",
        "team_id": TEAM,
        "api_app_id": "ABENCH",
        "type": "event_callback",
        "event_id": format!("EvBENCH{i:08}"),
        "event_time": 1_700_000_000 + i,
        "event": {
            "type": "message",
            "channel": format!("C{:04}", i % 50),
            "user": "UBENCHUSER",
            "text": format!("benchmark message {i} with *some* _formatting_"),
            "ts": format!("{}.{:06}", 1_700_000_000 + i, i % 1_000_000),
            "channel_type": "channel",
        },
    })
    .to_string()
}

/// The idle RSS of `switchboard serve`, when a release binary is next to this bench.
fn serve_binary_rss() -> Option<(String, u64)> {
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?.parent()?.join("switchboard");
    if !bin.exists() {
        return None;
    }
    let data = tempfile::tempdir().ok()?;
    let mut child = std::process::Command::new(&bin)
        .args(["serve", "--port", "0", "--data-dir"])
        .arg(data.path())
        .env_remove("SWITCHBOARD_SANDBOX_URL")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take()?)
        .read_line(&mut line)
        .ok()?;
    std::thread::sleep(Duration::from_secs(3));
    let rss = rss_kb(&child.id().to_string());
    let _ = child.kill();
    let _ = child.wait();
    Some((bin.display().to_string(), rss?))
}

async fn run() -> Result<(), String> {
    let rate = env_or("BENCH_RATE", 500);
    let seconds = env_or("BENCH_SECONDS", 10);
    let total = rate * seconds;

    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let store: Arc<dyn Store> = SqlStore::sqlite(
        dir.path().join("bench.db"),
        Keyring::new(MasterKey::generate()),
    )
    .await
    .map_err(|e| e.to_string())?
    .shared();
    let org = store.create_org("bench").await.map_err(|e| e.to_string())?;
    let connection = Connection {
        id: ConnectionId::generate(),
        org: org.id.clone(),
        platform: PlatformKind::Slack,
        tenant: TenantId::new(TEAM).map_err(|e| e.to_string())?,
        enterprise: None,
        display_name: "Bench".into(),
        account: AccountIdentity {
            user_id: UserId::new("UBENCHBOT").map_err(|e| e.to_string())?,
            display_name: "bot".into(),
            is_service_account: true,
        },
        health: ConnectionHealth::Ok,
        created_at: OffsetDateTime::now_utc(),
    };
    store
        .put_connection(&connection)
        .await
        .map_err(|e| e.to_string())?;
    store
        .put_credentials(
            &org.id,
            &connection.id,
            &Credentials {
                access_token: SecretString::from("xoxb-bench".to_owned()),
                refresh_token: None,
                expires_at: None,
                scopes: Vec::new(),
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    let receivers = Receivers {
        slack: Some(Arc::new(SlackEventsReceiver::new(
            SecretString::from(SIGNING_SECRET.to_owned()),
            None,
            Arc::new(OwnIdentityCache::default()),
        ))),
        graph: None,
    };
    let app = router(AppState::new(store.clone(), receivers));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let url = format!(
        "http://{}/webhooks/slack/events",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_in_process = rss_kb("self");

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .map_err(|e| e.to_string())?;
    let secret = SecretString::from(SIGNING_SECRET.to_owned());
    let send = {
        let client = client.clone();
        let url = url.clone();
        move |i: u64| {
            let body = event_body(i);
            let ts = now_unix().to_string();
            let sig = compute_signature(&secret, &ts, body.as_bytes());
            client
                .post(&url)
                .header("content-type", "application/json")
                .header("x-slack-request-timestamp", ts)
                .header("x-slack-signature", sig)
                .body(body)
                .send()
        }
    };
    // Warm-up: connections, statement caches (these events count too).
    let warmup = 200u64;
    for i in 0..warmup {
        let r = send(i).await.map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            return Err(format!("warm-up event {i} answered {}", r.status()));
        }
    }

    println!("webhooks: {total} signed Slack events offered at {rate}/s for {seconds} s");
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now() + Duration::from_millis(50);
    let mut tasks = Vec::with_capacity(total as usize);
    for k in 0..total {
        let due = start + interval.mul_f64(k as f64);
        tokio::time::sleep_until(due.into()).await;
        let request = send(warmup + k);
        tasks.push(tokio::spawn(async move {
            let answer = request.await;
            let latency = due.elapsed();
            (answer.map(|r| r.status().as_u16()), latency)
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    let mut failures = 0u64;
    for t in tasks {
        match t.await.map_err(|e| e.to_string())? {
            (Ok(200), latency) => latencies.push(latency),
            (Ok(status), _) => {
                failures += 1;
                eprintln!("an event answered {status}");
            }
            (Err(e), _) => {
                failures += 1;
                eprintln!("an event failed: {e}");
            }
        }
    }
    let elapsed = start.elapsed();
    latencies.sort();

    // Every acknowledged event is in the inbox, exactly once.
    let worker = WorkerId::new("bench/drain").map_err(|e| e.to_string())?;
    let mut keys = HashSet::new();
    let mut stored = 0u64;
    loop {
        let batch = store
            .inbox_lease(&worker, 1000, Duration::from_secs(60))
            .await
            .map_err(|e| e.to_string())?;
        if batch.is_empty() {
            break;
        }
        for item in batch {
            stored += 1;
            if let Some(k) = item.item.dedupe_key() {
                keys.insert(k.to_owned());
            }
            store
                .inbox_complete(&worker, item.id, &[])
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    let expected = warmup + total;

    let p50 = percentile(&latencies, 50.0);
    let p90 = percentile(&latencies, 90.0);
    let p99 = percentile(&latencies, 99.0);
    let max = *latencies.last().ok_or("no event was acknowledged")?;
    println!(
        "  achieved {:.0} events/s; acknowledgement latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        total as f64 / elapsed.as_secs_f64(),
        ms(p50),
        ms(p90),
        ms(p99),
        ms(max)
    );
    println!(
        "  p99 bar ≤ {P99_BAR_MS} ms: {}",
        if ms(p99) <= P99_BAR_MS {
            "met"
        } else {
            "MISSED"
        }
    );
    println!(
        "  inbox: {stored} items, {} distinct, {expected} expected (incl. {warmup} warm-up)",
        keys.len()
    );
    if let Some(kb) = idle_in_process {
        println!(
            "idle RSS (this process: store, router, listener; no client yet): {:.1} MB",
            kb as f64 / 1024.0
        );
    }
    match serve_binary_rss() {
        Some((bin, kb)) => {
            let mb = kb as f64 / 1024.0;
            println!(
                "idle RSS of `switchboard serve` ({bin}, 3 s after its ready line): {mb:.1} MB; bar ≤ {RSS_BAR_MB} MB: {}",
                if mb <= RSS_BAR_MB { "met" } else { "MISSED" }
            );
        }
        None => println!(
            "idle RSS of `switchboard serve`: no release binary next to this bench (cargo build --release -p switchboard-cli)"
        ),
    }
    if failures > 0 {
        return Err(format!("{failures} events were not acknowledged with 200"));
    }
    if stored != expected || keys.len() as u64 != expected {
        return Err(format!(
            "the inbox holds {stored} items ({} distinct), not the {expected} acknowledged events",
            keys.len()
        ));
    }
    Ok(())
}

fn main() {
    // `cargo bench` passes `--bench` (and filters); this harness has one benchmark.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    if let Err(e) = runtime.block_on(run()) {
        eprintln!("webhooks bench failed: {e}");
        std::process::exit(1);
    }
}
