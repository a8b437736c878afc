//! Import of the sandbox's large Slack seed (5,000 channels, 20,000 users) under enforced
//! rate limits, measured against the rate-limit floor.
//!
//! The sandbox enforces Slack's documented limits (PLATFORM_FACTS.md; its reference
//! `crates/sandbox/docs/slack.md`) multiplied by a time scale K: a method of limit L per
//! minute is a token bucket of capacity L·K refilled at L·K per minute, per method per
//! workspace. The floor of a method called n times is `max(0, n − L·K) / (L·K/60)` seconds;
//! methods have separate buckets, so the floor of the import is the largest of them. The
//! number of calls is the client's own count of successful calls (the pages it needed).
//!
//! The import is channels (`conversations.list`) and users (`users.list`); channel
//! membership is not part of it (read per linked channel with `import_channel_members`).
//!
//! Prints wall time, floor, ratio (bar ≤ 1.10), the floor at time scale 1, 429s (from `/_sandbox/stats`) and peak RSS
//! (bar ≤ 200 MB; `VmHWM` includes the in-process sandbox).
//!
//! `cargo bench -p switchboard-slack --bench import_large` (env `SWITCHBOARD_BENCH_TIME_SCALE`,
//! default 30: a floor of about 40 s).

use std::time::Instant;

use secrecy::SecretString;
use serde_json::Value;
use switchboard_core::{
    Channel, Credentials, ImportSink, Membership, Result, TeamId, TeamImport, User, async_trait,
};
use switchboard_sandbox::{Sandbox, SandboxConfig, Seed};
use switchboard_slack::{RateLimits, SlackClient, SlackConfig, SlackConnection};
use url::Url;

/// The sandbox's per-minute limits of the methods an import calls (before scaling).
const LIMITS_PER_MINUTE: &[(&str, f64)] = &[
    ("auth.test", 600.0),
    ("team.info", 50.0),
    ("conversations.list", 20.0),
    ("users.list", 20.0),
    ("conversations.members", 100.0),
];

#[derive(Default)]
struct Count {
    channels: u64,
    members: u64,
    users: u64,
}

#[async_trait]
impl ImportSink for Count {
    async fn channels(&mut self, _: &TeamId, page: Vec<Channel>) -> Result<()> {
        self.channels += page.len() as u64;
        Ok(())
    }
    async fn members(&mut self, _: &TeamId, page: Vec<Membership>) -> Result<()> {
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

fn s(v: &Value, k: &str) -> String {
    v[k].as_str()
        .unwrap_or_else(|| panic!("ready info lacks {k}"))
        .to_owned()
}

async fn run(time_scale: f64) {
    let sandbox = Sandbox::start(SandboxConfig {
        seed: Seed::Large,
        time_scale,
        ..Default::default()
    })
    .await
    .expect("sandbox starts");
    let ready = sandbox.ready_info();
    let slack = &ready["slack"];
    let config = SlackConfig::new(
        s(slack, "client_id"),
        SecretString::from(s(slack, "client_secret")),
        SecretString::from(s(slack, "signing_secret")),
    )
    .with_base_urls(
        Url::parse(&s(&ready, "slack_api_url")).unwrap(),
        Url::parse(&format!("{}/slack/", sandbox.base_url())).unwrap(),
    )
    .with_limits(RateLimits::documented().scaled(time_scale));
    let client = SlackClient::new(&config).unwrap();
    let team = TeamId::new(s(slack, "team_id")).unwrap();
    let conn = SlackConnection::new(
        &config,
        client.clone(),
        team.clone(),
        Credentials {
            access_token: SecretString::from(s(slack, "bot_token")),
            refresh_token: None,
            expires_at: None,
            scopes: vec![],
        },
    );

    let started = Instant::now();
    let teams = conn.list_teams().await.expect("team.info");
    assert_eq!(teams.teams.len(), 1);
    let mut team_sink = Count::default();
    let mut user_sink = Count::default();
    let (t, u) = tokio::join!(
        conn.import_team(&team, &mut team_sink),
        conn.import_users(&mut user_sink)
    );
    t.expect("team import");
    u.expect("user import");
    let wall = started.elapsed().as_secs_f64();

    let stats = client.stats();
    let sandbox_stats: Value = reqwest::get(format!("{}/_sandbox/stats", sandbox.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let throttled = sandbox_stats["throttled_429"].as_u64().unwrap_or(0);
    let route = |m: &str| -> (u64, u64) {
        sandbox_stats["routes"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| k.ends_with(&format!("/slack/api/{m}")))
            .fold((0, 0), |(a, b), (_, v)| {
                (
                    a + v["requests"].as_u64().unwrap_or(0),
                    b + v["throttled_429"].as_u64().unwrap_or(0),
                )
            })
    };
    println!(
        "import_large: time_scale {time_scale}: {} channels, {} members, {} users",
        team_sink.channels, team_sink.members, user_sink.users
    );
    let mut floor = 0.0f64;
    let mut floor_real_time = 0.0f64;
    for (method, per_minute) in LIMITS_PER_MINUTE {
        let (requests, limited) = route(method);
        let calls = requests.saturating_sub(limited) as f64;
        let capacity = (per_minute * time_scale).max(1.0);
        let rate = capacity / 60.0;
        let t = ((calls - capacity).max(0.0)) / rate;
        floor = floor.max(t);
        // The same calls against Slack's own (unscaled) limits.
        floor_real_time = floor_real_time.max((calls - per_minute).max(0.0) / (per_minute / 60.0));
        println!(
            "  {method:<22} {calls:>6} calls ({} by the client), {limited} × 429, limit {capacity}/min → floor {t:.2}s",
            stats.requests.get(*method).copied().unwrap_or(0)
        );
    }
    let ratio = if floor > 0.0 { wall / floor } else { f64::NAN };
    println!("  wall time   {wall:.2}s");
    println!("  floor       {floor:.2}s");
    println!("  ratio       {ratio:.3}  (bar ≤ 1.10; NaN when every call fits in the bursts)");
    println!(
        "  real time   floor {floor_real_time:.1}s at time scale 1 (membership is read per linked channel, on demand)"
    );
    println!("  429s        {throttled}  (sandbox /_sandbox/stats)");
    match peak_rss_mb() {
        Some(mb) => {
            println!("  peak RSS    {mb:.1} MB  (VmHWM, in-process sandbox included; bar ≤ 200 MB)")
        }
        None => println!("  peak RSS    unavailable (no /proc/self/status)"),
    }
    sandbox.shutdown().await;
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: skip the long run then.
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "import_large: skipped (run it with `cargo bench -p switchboard-slack --bench import_large`)"
        );
        return;
    }
    let time_scale: f64 = std::env::var("SWITCHBOARD_BENCH_TIME_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30.0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(time_scale));
}
