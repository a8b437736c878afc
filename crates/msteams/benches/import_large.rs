//! Import benchmark: the large seed (1,000 teams × 10 channels, 20,000 users) from the
//! in-process sandbox with its rate limits enforced, compared with the rate-limit floor.
//!
//! `cargo bench -p switchboard-msteams --bench import_large`
//!
//! Environment: `SWITCHBOARD_BENCH_TIME_SCALE` (default `1`: the documented limits) and
//! `SWITCHBOARD_BENCH_CONCURRENCY` (default 16).
//!
//! The floor is computed from the calls made per limit bucket and the sandbox's (scaled)
//! limits of the current Teams table (GET members/channels 60/s, GET team/channel 30/s,
//! other GET 30/s, 4/s on one team or channel, directory 3,000/10 s; no tenant-wide "any
//! call" row): for each paced bucket, the calls beyond its burst divided by its rate; the
//! largest. Bars: wall time ≤ 1.10 × floor, peak RSS ≤ 200 MB (VmHWM of this process,
//! which includes the in-process sandbox), ≈ no 429s. Exits non-zero when a bar is missed.
//! Also printed: the floor of the same calls at time scale 1 (the real-time equivalent).

use std::time::{Duration, Instant};

use async_trait::async_trait;
use secrecy::SecretString;
use switchboard_core::{Channel, ImportSink, Membership, Result, TeamId, TeamImport, User};
use switchboard_msteams::{MsTeamsConfig, MsTeamsConnection, RateLimits, TokenProvider};
use switchboard_sandbox::{Sandbox, SandboxConfig, Seed};

#[derive(Default)]
struct Count {
    channels: u64,
    members: u64,
    users: u64,
}

#[async_trait]
impl ImportSink for Count {
    async fn channels(&mut self, _t: &TeamId, page: Vec<Channel>) -> Result<()> {
        self.channels += page.len() as u64;
        Ok(())
    }
    async fn members(&mut self, _t: &TeamId, page: Vec<Membership>) -> Result<()> {
        self.members += page.len() as u64;
        Ok(())
    }
    async fn users(&mut self, page: Vec<User>) -> Result<()> {
        self.users += page.len() as u64;
        Ok(())
    }
}

fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing special: run
    // only when asked to benchmark.
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("import_large: skipped (run with `cargo bench`)");
        return;
    }
    let scale = env_f64("SWITCHBOARD_BENCH_TIME_SCALE", 1.0);
    let concurrency = env_f64("SWITCHBOARD_BENCH_CONCURRENCY", 16.0) as usize;
    let seeding = Instant::now();
    let sandbox = Sandbox::start(SandboxConfig {
        seed: Seed::Large,
        time_scale: scale,
        ..Default::default()
    })
    .await
    .expect("the sandbox starts");
    let info = sandbox.ready_info();
    println!(
        "sandbox: large seed ready in {:.1}s, time_scale {scale}",
        seeding.elapsed().as_secs_f64()
    );
    let ms = &info["msteams"];
    let limits = RateLimits::documented().scaled(scale);
    let config = MsTeamsConfig::with_endpoints(
        info["microsoft_login_url"].as_str().unwrap(),
        info["graph_api_url"].as_str().unwrap(),
        ms["tenant_id"].as_str().unwrap(),
        ms["client_id"].as_str().unwrap(),
        SecretString::from(ms["client_secret"].as_str().unwrap().to_owned()),
        "http://127.0.0.1:9/callback",
    )
    .expect("config")
    .limits(limits.clone())
    .max_concurrency(concurrency);
    let tokens = TokenProvider::fixed(SecretString::from(
        ms["service_account_token"].as_str().unwrap().to_owned(),
    ));
    let conn = MsTeamsConnection::new(config, std::sync::Arc::new(tokens)).expect("connection");
    let http = reqwest::Client::new();
    let _ = http
        .delete(format!("{}/_sandbox/stats", sandbox.base_url()))
        .send()
        .await;

    let started = Instant::now();
    let listing = conn.list_teams().await.expect("list teams");
    let teams: Vec<TeamId> = listing.teams.iter().map(|t| t.id.clone()).collect();
    let mut team_sink = Count::default();
    let mut user_sink = Count::default();
    let (teams_result, users_result) = tokio::join!(
        conn.import_teams(&teams, &mut team_sink),
        conn.import_users(&mut user_sink)
    );
    let wall = started.elapsed();
    let team_counts = teams_result.expect("team import");
    let user_counts = users_result.expect("user import");

    let stats = conn.graph().pacer().stats();
    let floor = stats.floor(&limits);
    let sandbox_stats: serde_json::Value = http
        .get(format!("{}/_sandbox/stats", sandbox.base_url()))
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("stats json");
    let throttled = sandbox_stats["throttled_429"].as_u64().unwrap_or(0);
    let requests = sandbox_stats["requests"].as_u64().unwrap_or(0);
    let rss = peak_rss_mb();
    let ratio = if floor > Duration::ZERO {
        wall.as_secs_f64() / floor.as_secs_f64()
    } else {
        f64::NAN
    };

    println!(
        "imported: {} teams, {} channels, {} memberships, {} users",
        teams.len(),
        team_counts.channels,
        team_counts.members,
        user_counts.users
    );
    println!("calls per bucket (client side):");
    for (bucket, n) in &stats.per_bucket {
        let shown = if bucket.is_scoped() {
            format!(
                "{n} total, at most {} on one team/channel",
                stats.max_per_scope.get(bucket).copied().unwrap_or(0)
            )
        } else {
            n.to_string()
        };
        match limits.limit(*bucket).filter(|_| bucket.is_paced()) {
            Some(l) => println!(
                "  {:<24} {shown} (limit {:.0} per {:?})",
                bucket.as_str(),
                limits.capacity(*bucket),
                l.per,
            ),
            None => println!("  {:<24} {shown} (counted only)", bucket.as_str()),
        }
    }
    println!("wall time:        {:.2} s", wall.as_secs_f64());
    let real_floor = stats.floor(&RateLimits::documented());
    println!("rate-limit floor: {:.2} s", floor.as_secs_f64());
    println!("ratio:            {ratio:.3} (bar ≤ 1.10)");
    println!(
        "at time scale 1:  floor {:.1} s; this run's wall time × scale = {:.1} s",
        real_floor.as_secs_f64(),
        wall.as_secs_f64() * scale
    );
    println!("sandbox requests: {requests}, 429s: {throttled}");
    match rss {
        Some(mb) => {
            println!("peak RSS:         {mb:.1} MB (bar ≤ 200 MB; includes the in-process sandbox)")
        }
        None => println!("peak RSS:         unavailable (no /proc/self/status)"),
    }
    let mut ok = true;
    if ratio.is_finite() && ratio > 1.10 {
        println!("BAR MISSED: wall time is {ratio:.3} × the floor");
        ok = false;
    }
    if rss.is_some_and(|mb| mb > 200.0) {
        println!("BAR MISSED: peak RSS over 200 MB");
        ok = false;
    }
    sandbox.shutdown().await;
    if !ok {
        std::process::exit(1);
    }
}
