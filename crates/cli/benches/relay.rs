//! Relay benchmarks on the built-in sandbox, through the real server, adapters and SQLite
//! (`switchboard serve --sandbox --autoconnect` in-process):
//!
//! 1. **Throughput, limits off** (sandbox time scale 0): the raw sandbox rate of Graph channel
//!    message POSTs, measured in the same run, then N Slack messages relayed to Teams
//!    (messages/s and Graph POSTs/s, from the sandbox's own timestamps): into one linked
//!    channel, and spread over several linked channel pairs.
//! 2. **Added latency at 100 msg/s offered**: Slack `ts` → the Teams copy's
//!    `createdDateTime`, both stamped by the sandbox; p50/p99.
//! 3. **Teams per-channel backlog** (time scale 1: 4 requests/s on one channel): a burst from
//!    several senders; the share of the channel's allowance used while the backlog lasts, and
//!    messages/s against requests/s.
//!
//! 4. **Slack out of order** (the sandbox's shuffle mode): throughput, latency and order
//!    once the relay has learned to hold events back.
//!
//! `cargo bench -p switchboard-cli --bench relay` (env `SB_BENCH_MESSAGES`, default 2000;
//! `SB_BENCH_BACKLOG`, default 2000; `SB_BENCH_PAIRS`, the linked channel pairs of the
//! several-channels throughput run, default 2: the small seed's Slack bot is a member of two
//! public channels). Prints one JSON line per scenario.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_cli::serve::{Launched, ServeArgs, launch};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Env {
    http: reqwest::Client,
    server: String,
    token: String,
    sandbox: String,
    graph: String,
    graph_token: String,
    slack_channel: String,
    team: String,
    teams_channel: String,
    spare_channels: Vec<String>,
    /// Further linked pairs (Slack channel, Teams team, Teams channel), beyond the first.
    more: Vec<(String, String, String)>,
    users: Vec<String>,
    launched: Launched,
    _dir: tempfile::TempDir,
}

fn enc(s: &str) -> String {
    s.replace(':', "%3A").replace('@', "%40")
}

impl Env {
    /// `linger_ms`: the relay's `[relay] linger_ms` (`None`: the default).
    async fn start(time_scale: f64, linger_ms: Option<u64>) -> Env {
        Env::start_pairs(time_scale, linger_ms, 1).await
    }

    /// With up to `pairs` Slack channels (public, the bot a member) each linked to a Teams
    /// channel of its own.
    async fn start_pairs(time_scale: f64, linger_ms: Option<u64>, pairs: usize) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let config = linger_ms.map(|ms| {
            let path = dir.path().join("switchboard.toml");
            std::fs::write(&path, format!("[relay]\nlinger_ms = {ms}\n")).unwrap();
            path
        });
        let launched = launch(ServeArgs {
            config,
            data_dir: Some(dir.path().to_owned()),
            port: Some(0),
            sandbox: true,
            sandbox_url: None,
            time_scale,
            autoconnect: true,
            ready_file: None,
        })
        .await
        .expect("serve --sandbox --autoconnect");
        let ready = launched.ready.clone().unwrap();
        let ready_json = serde_json::to_value(&ready).unwrap();
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .unwrap();
        let sandbox = ready_json["base_url"].as_str().unwrap().to_owned();
        let seed: Value = http
            .get(format!("{sandbox}/_sandbox/seed"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let slack_team = seed["slack"]["team_id"].as_str().unwrap().to_owned();
        let slack_channels: Vec<String> = seed["slack"]["channels"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["is_private"] == false && c["is_member"] == true)
            .filter_map(|c| c["id"].as_str().map(str::to_owned))
            .collect();
        let slack_channel = slack_channels[0].clone();
        let team = &seed["msteams"]["teams"][0];
        let standard: Vec<String> = team["channels"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["membershipType"] == "standard")
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect();
        let users: Vec<String> = seed["slack"]["users"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|u| u["is_bot"] == false && u["deleted"] == false)
            .take(4)
            .map(|u| u["id"].as_str().unwrap().to_owned())
            .collect();
        // Further pairs use a standard channel of each further team (the first team's others
        // stay unlinked, for the raw POST rate).
        let elsewhere: Vec<(String, String)> = seed["msteams"]["teams"]
            .as_array()
            .unwrap()
            .iter()
            .skip(1)
            .filter_map(|t| {
                let c = t["channels"]
                    .as_array()?
                    .iter()
                    .find(|c| c["membershipType"] == "standard")?;
                Some((t["id"].as_str()?.to_owned(), c["id"].as_str()?.to_owned()))
            })
            .collect();
        let pairs = pairs.clamp(1, slack_channels.len().min(elsewhere.len() + 1));
        let more: Vec<(String, String, String)> = (1..pairs)
            .map(|i| {
                let (team, channel) = elsewhere[i - 1].clone();
                (slack_channels[i].clone(), team, channel)
            })
            .collect();
        let env = Env {
            server: launched.running.url.clone(),
            token: secrecy::ExposeSecret::expose_secret(&launched.running.admin_token).to_owned(),
            graph: ready_json["graph_api_url"].as_str().unwrap().to_owned(),
            graph_token: ready_json["msteams"]["service_account_token"]
                .as_str()
                .unwrap()
                .to_owned(),
            team: team["id"].as_str().unwrap().to_owned(),
            teams_channel: standard[0].clone(),
            spare_channels: standard[1..].to_vec(),
            more,
            slack_channel: slack_channel.clone(),
            users,
            sandbox,
            http,
            launched,
            _dir: dir,
        };
        for (i, (slack, team, teams)) in env.pairs().into_iter().enumerate() {
            let r = env
                .http
                .post(format!("{}/api/v1/universal-channels", env.server))
                .bearer_auth(&env.token)
                .json(&json!({"name": format!("bench-{i}"), "endpoints": [
                    format!("slack:{slack_team}/{slack}"),
                    format!("msteams:{team}/{teams}")]}))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "link: {}", r.text().await.unwrap());
        }
        // Let the feed keeper subscribe (Graph) and the link settle.
        tokio::time::sleep(Duration::from_millis(500)).await;
        env
    }

    /// Every linked pair (Slack channel, Teams team, Teams channel), the first one first.
    fn pairs(&self) -> Vec<(String, String, String)> {
        std::iter::once((
            self.slack_channel.clone(),
            self.team.clone(),
            self.teams_channel.clone(),
        ))
        .chain(self.more.iter().cloned())
        .collect()
    }

    async fn stats(&self) -> Value {
        self.http
            .get(format!("{}/_sandbox/stats", self.sandbox))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Graph POSTs of channel messages counted by the sandbox.
    async fn graph_posts(&self) -> u64 {
        let s = self.stats().await;
        s["routes"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| {
                        k.starts_with("POST ")
                            && k.contains("/channels/")
                            && k.ends_with("/messages")
                    })
                    .map(|(_, v)| v["requests"].as_u64().unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0)
    }

    async fn post_slack(&self, user: &str, text: &str) -> f64 {
        let v: Value = self
            .http
            .post(format!("{}/_sandbox/slack/messages", self.sandbox))
            .json(&json!({"user": user, "channel": self.slack_channel, "text": text}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["ts"].as_str().unwrap().parse().unwrap()
    }

    /// Teams messages of the (first) linked channel: (body, created in seconds).
    async fn teams_messages(&self) -> Vec<(String, f64)> {
        self.teams_messages_of(&self.team, &self.teams_channel)
            .await
    }

    /// Teams messages of `channel` in `team`: (body, created in seconds).
    async fn teams_messages_of(&self, team: &str, channel: &str) -> Vec<(String, f64)> {
        let v: Value = self
            .http
            .get(format!(
                "{}/_sandbox/msteams/teams/{}/channels/{}/messages",
                self.sandbox,
                team,
                enc(channel)
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["value"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|m| {
                let created = m["createdDateTime"].as_str().unwrap_or("");
                let t = time::OffsetDateTime::parse(
                    created,
                    &time::format_description::well_known::Rfc3339,
                )
                .map(|t| t.unix_timestamp_nanos() as f64 / 1e9)
                .unwrap_or(0.0);
                (m["body"]["content"].as_str().unwrap_or("").to_owned(), t)
            })
            .collect()
    }

    /// Waits until every `prefix-i` (i < n) is in a Teams message of a linked channel;
    /// returns each one's arrival (the created time of the message holding it).
    async fn wait_all(&self, prefix: &str, n: usize, timeout: Duration) -> HashMap<usize, f64> {
        let start = Instant::now();
        loop {
            let mut found = HashMap::new();
            let mut messages = Vec::new();
            for (_, team, teams) in self.pairs() {
                messages.extend(self.teams_messages_of(&team, &teams).await);
            }
            for (body, created) in messages {
                for piece in body.split(prefix).skip(1) {
                    let digits: String = piece.chars().take_while(char::is_ascii_digit).collect();
                    if let Ok(i) = digits.parse::<usize>()
                        && i < n
                    {
                        found.entry(i).or_insert(created);
                    }
                }
            }
            if found.len() == n || start.elapsed() > timeout {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// Raw sandbox rate: `n` Graph channel-message POSTs with `concurrency` clients.
/// The sandbox keeps Teams' 3,000 messages a day per channel even with limits off.
async fn raw_post_rate(env: &Env, channel: &str, n: usize, concurrency: usize) -> f64 {
    let url = format!(
        "{}/teams/{}/channels/{}/messages",
        env.graph,
        env.team,
        enc(channel)
    );
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for w in 0..concurrency {
        let (http, url, token) = (env.http.clone(), url.clone(), env.graph_token.clone());
        let count = n / concurrency + usize::from(w < n % concurrency);
        set.spawn(async move {
            for i in 0..count {
                let r = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"body": {"contentType": "html", "content": format!("<p>raw {w}-{i}</p>")}}))
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success(), "raw POST: {}", r.status());
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.expect("a raw POST client failed");
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn throughput_and_latency(throughput: bool) {
    let n = env_usize("SB_BENCH_MESSAGES", 2000);
    // Lines printed once the raw POST rate (measured last) can be set beside them.
    let mut held: Vec<Value> = Vec::new();
    if throughput {
        // The same run with the translating worker's linger off, side by side (own server
        // and sandbox), before the default one.
        let env = Env::start(0.0, Some(0)).await;
        let mut line = throughput_run(&env, n).await;
        line["scenario"] = json!("throughput_limits_off_linger_0");
        println!("{line}");
        env.launched.shutdown().await.unwrap();
        // Several linked channels at once (the sandbox delivers each channel's events one
        // at a time, as the single-channel runs show, but channels side by side).
        let env = Env::start_pairs(0.0, None, env_usize("SB_BENCH_PAIRS", 2)).await;
        let mut line = throughput_run(&env, n).await;
        line["scenario"] = json!("throughput_limits_off_several_channels");
        line["linked_pairs"] = json!(env.pairs().len());
        held.push(line);
        env.launched.shutdown().await.unwrap();
    }
    let env = Env::start(0.0, None).await;
    // The raw POST rate is measured last: the sandbox stamps a Teams message's id and
    // `createdDateTime` from one millisecond clock that never repeats (as Graph's ids are
    // creation times), so 30,000 POSTs/s push that clock seconds ahead of real time, and
    // every copy created after them would look late.
    if throughput {
        held.push(throughput_run(&env, n).await);
    }
    latency_run(&env).await;
    if throughput {
        // Both raw runs go into one unlinked channel: 2 × 1,400 stays under its daily 3,000.
        let spare = env
            .spare_channels
            .first()
            .expect("an unlinked Teams channel");
        let raw_n = n.min(1400);
        let raw = raw_post_rate(&env, spare, raw_n, 8).await;
        let raw_one = raw_post_rate(&env, spare, raw_n, 1).await;
        for mut line in held {
            let rate = line["messages_per_s"].as_f64().unwrap_or(0.0);
            line["raw_sandbox_posts_per_s_8_clients"] = json!(raw);
            line["raw_sandbox_posts_per_s_1_client"] = json!(raw_one);
            line["relay_vs_raw_8_clients"] = json!(rate / raw);
            line["relay_vs_raw_1_client"] = json!(rate / raw_one);
            println!("{line}");
        }
    }
    env.launched.shutdown().await.unwrap();
}

/// Slack events the server stored (webhook deliveries of `slack_events` answered after
/// the inbox write), from its own metrics.
async fn slack_events_stored(env: &Env) -> f64 {
    let text = env
        .http
        .get(format!("{}/metrics", env.server))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| {
            l.starts_with("switchboard_webhook_deliveries_total")
                && l.contains("endpoint=\"slack_events\"")
                && l.contains("outcome=\"stored\"")
        })
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum()
}

async fn throughput_run(env: &Env, n: usize) -> Value {
    let inject_start = Instant::now();
    // Relay: inject n Slack messages as fast as 8 clients can.
    let posts_before = env.graph_posts().await;
    let mut set = tokio::task::JoinSet::new();
    let first_ts = std::sync::Arc::new(parking_lot_free::Min::default());
    let pairs = env.pairs();
    for w in 0..8usize {
        let (http, sandbox, channel, user, first) = (
            env.http.clone(),
            env.sandbox.clone(),
            pairs[w % pairs.len()].0.clone(),
            env.users[w % env.users.len()].clone(),
            first_ts.clone(),
        );
        let count = n / 8 + usize::from(w < n % 8);
        set.spawn(async move {
            for i in 0..count {
                let v: Value = http
                    .post(format!("{sandbox}/_sandbox/slack/messages"))
                    .json(&json!({"user": user, "channel": channel, "text": format!("tput-{} ", i * 8 + w)}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                first.update(v["ts"].as_str().unwrap().parse().unwrap());
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.expect("an injecting client failed");
    }
    let inject_seconds = inject_start.elapsed().as_secs_f64();
    // When the server had stored every Slack event (webhook → inbox), from its own counter.
    // Every 20 ms: each scrape of /metrics is five queries, and at 5 ms the bench's own
    // polling was a thousand statements a second taken from the server it measures.
    let mut ingested_seconds = f64::NAN;
    for _ in 0..7_500 {
        if slack_events_stored(env).await >= n as f64 {
            ingested_seconds = inject_start.elapsed().as_secs_f64();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let arrived = env.wait_all("tput-", n, Duration::from_secs(600)).await;
    let last = arrived.values().copied().fold(0.0, f64::max);
    let span = (last - first_ts.get()).max(1e-3);
    let posts = env.graph_posts().await - posts_before;
    json!({
        "scenario": "throughput_limits_off",
        "messages": n,
        "delivered": arrived.len(),
        "seconds": span,
        "messages_per_s": arrived.len() as f64 / span,
        "inject_seconds": inject_seconds,
        "ingested_seconds": ingested_seconds,
        "graph_posts": posts,
        "graph_posts_per_s": posts as f64 / span,
    })
}

/// Posts `m` Slack messages `prefix-i` at 100 a second (senders in turn) and returns each
/// one's added latency (Slack `ts` → the Teams copy's `createdDateTime`) in ms with its
/// number, fastest first.
async fn paced_latencies(env: &Env, prefix: &str, m: usize) -> Vec<(usize, f64)> {
    let mut sent = Vec::with_capacity(m);
    let start = Instant::now();
    for i in 0..m {
        let due = Duration::from_millis(10 * i as u64);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        let user = env.users[i % env.users.len()].clone();
        sent.push(env.post_slack(&user, &format!("{prefix}{i} ")).await);
    }
    let arrived = env.wait_all(prefix, m, Duration::from_secs(120)).await;
    let mut lat: Vec<(usize, f64)> = (0..m)
        .filter_map(|i| arrived.get(&i).map(|t| (i, (t - sent[i]) * 1000.0)))
        .collect();
    lat.sort_by(|a, b| a.1.partial_cmp(&b.1).unwrap());
    lat
}

/// The latency figures of a paced run: delivered, p50, p99, max and the ten slowest
/// messages as `[number, ms]` (where in the run the outliers fall).
fn latency_figures(paced: &[(usize, f64)]) -> Value {
    let lat: Vec<f64> = paced.iter().map(|p| p.1).collect();
    let slowest: Vec<Value> = paced
        .iter()
        .rev()
        .take(10)
        .map(|&(i, ms)| json!([i, ms.round()]))
        .collect();
    json!({
        "delivered": lat.len(),
        "p50_ms": percentile(&lat, 0.50),
        "p99_ms": percentile(&lat, 0.99),
        "max_ms": lat.last().copied().unwrap_or(f64::NAN),
        "slowest": slowest,
    })
}

async fn latency_run(env: &Env) {
    // Latency at 100 msg/s offered, 10 s.
    let m = 1000usize;
    let start = Instant::now();
    let mut line = latency_figures(&paced_latencies(env, "lat-", m).await);
    line["scenario"] = json!("latency_100_per_s");
    line["messages"] = json!(m);
    line["offered_per_s"] = json!(m as f64 / start.elapsed().as_secs_f64());
    println!("{line}");
}

async fn teams_backlog() {
    let n = env_usize("SB_BENCH_BACKLOG", 2000);
    let env = Env::start(1.0, None).await;
    let posts_before = env.graph_posts().await;
    let mut set = tokio::task::JoinSet::new();
    for (w, user) in env.users.iter().enumerate() {
        let (http, sandbox, channel, user) = (
            env.http.clone(),
            env.sandbox.clone(),
            env.slack_channel.clone(),
            user.clone(),
        );
        let k = env.users.len();
        let count = n / k + usize::from(w < n % k);
        set.spawn(async move {
            for i in 0..count {
                http.post(format!("{sandbox}/_sandbox/slack/messages"))
                    .json(&json!({"user": user, "channel": channel, "text": format!("bl-{} ", i * k + w)}))
                    .send()
                    .await
                    .unwrap();
            }
        });
    }
    while set.join_next().await.is_some() {}
    let arrived = env.wait_all("bl-", n, Duration::from_secs(900)).await;
    let posts = env.graph_posts().await - posts_before;
    let msgs = env.teams_messages().await;
    let mut created: Vec<f64> = msgs
        .iter()
        .filter(|(b, _)| b.contains("bl-"))
        .map(|(_, t)| *t)
        .collect();
    created.sort_by(|a, b| a.partial_cmp(b).unwrap());
    // The backlog lasts from the first post to the last; the allowance is 4 requests/s after
    // a burst of 4 (the bucket starts full), so the steady rate leaves the burst out.
    let span = (created.last().copied().unwrap_or(0.0) - created.first().copied().unwrap_or(0.0))
        .max(1e-3);
    let stats = env.stats().await;
    println!(
        "{}",
        json!({
            "scenario": "teams_channel_backlog",
            "messages": n,
            "delivered": arrived.len(),
            "senders": env.users.len(),
            "graph_posts": posts,
            "seconds": span,
            "requests_per_s": (posts.saturating_sub(4)) as f64 / span,
            "allowance_used": ((posts.saturating_sub(4)) as f64 / span) / 4.0,
            "messages_per_s": arrived.len() as f64 / span,
            "throttled_429": stats["throttled_429"],
        })
    );
    env.launched.shutdown().await.unwrap();
}

/// A tiny lock-free minimum of f64 (the first Slack ts of a concurrent burst).
mod parking_lot_free {
    use std::sync::atomic::{AtomicU64, Ordering};

    pub struct Min(AtomicU64);

    impl Default for Min {
        fn default() -> Self {
            Min(AtomicU64::new(f64::INFINITY.to_bits()))
        }
    }

    impl Min {
        pub fn update(&self, v: f64) {
            let mut cur = self.0.load(Ordering::Relaxed);
            while v < f64::from_bits(cur) {
                match self.0.compare_exchange(
                    cur,
                    v.to_bits(),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => break,
                    Err(c) => cur = c,
                }
            }
        }

        pub fn get(&self) -> f64 {
            f64::from_bits(self.0.load(Ordering::Relaxed))
        }
    }
}

/// Every `prefix-i` in the Teams channel, in the channel's order (creation time, then place
/// in a combined post).
async fn teams_order(env: &Env, prefix: &str) -> Vec<usize> {
    let mut msgs = env.teams_messages().await;
    msgs.sort_by(|a, b| a.1.partial_cmp(&b.1).unwrap());
    let mut order = Vec::new();
    for (body, _) in &msgs {
        for piece in body.split(prefix).skip(1) {
            let digits: String = piece.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(i) = digits.parse::<usize>() {
                order.push(i);
            }
        }
    }
    order
}

/// 4. **Slack out of order** (the sandbox's shuffle mode: each event delivered on its own
///    after a random 0–200 ms): after a warm-up that shows the relay the disorder, a burst
///    of N messages and then 100 msg/s for 5 s; throughput, added latency (the learned
///    hold-back window is in it) and how many copies are out of Slack's order.
async fn slack_disorder() {
    let env = Env::start(0.0, None).await;
    let r = env
        .http
        .put(format!("{}/_sandbox/slack/modes", env.sandbox))
        .json(&json!({"shuffle": true}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "shuffle mode: {}", r.status());
    for i in 0..20 {
        env.post_slack(&env.users[0], &format!("warm-{i} ")).await;
    }
    env.wait_all("warm-", 20, Duration::from_secs(60)).await;
    let out_of_order = |order: &[usize]| order.windows(2).filter(|w| w[0] > w[1]).count();
    let n = env_usize("SB_BENCH_MESSAGES", 2000).min(2000);
    let mut line = throughput_run(&env, n).await;
    line["scenario"] = json!("slack_out_of_order_burst");
    line["out_of_order_pairs"] = json!(out_of_order(&teams_order(&env, "tput-").await));
    println!("{line}");
    let m = 500usize;
    let mut line = latency_figures(&paced_latencies(&env, "dis-", m).await);
    line["scenario"] = json!("slack_out_of_order_100_per_s");
    line["messages"] = json!(m);
    line["out_of_order_pairs"] = json!(out_of_order(&teams_order(&env, "dis-").await));
    println!("{line}");
    env.launched.shutdown().await.unwrap();
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    rt.block_on(async {
        match only.as_deref() {
            None => {
                throughput_and_latency(true).await;
                teams_backlog().await;
                slack_disorder().await;
            }
            Some("throughput") => throughput_and_latency(true).await,
            Some("latency") => throughput_and_latency(false).await,
            Some("backlog") => teams_backlog().await,
            Some("disorder") => slack_disorder().await,
            Some(other) => {
                panic!("unknown scenario {other:?} (throughput, latency, backlog, disorder)")
            }
        }
    });
}
