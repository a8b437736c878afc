//! The world of an end-to-end test: a `switchboard sandbox` process (the platforms, whose own
//! state is the judge) and a `switchboard serve --sandbox-url … --autoconnect` process (the
//! real server on SQLite), both killed when the test ends, pass or fail.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

/// A child process killed when dropped, so a failing test never leaves servers behind.
pub struct Proc(Option<Child>);

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Proc {
    /// SIGKILL, no chance to clean up.
    pub fn kill9(mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts `switchboard ARGS` and returns it with its ready line.
pub fn spawn(args: &[&str], envs: &[(&str, &str)]) -> (Proc, Value) {
    spawn_logged(args, envs, Stdio::null())
}

/// [`spawn`] with the process's log (stderr) going to `stderr`.
pub fn spawn_logged(args: &[&str], envs: &[(&str, &str)], stderr: Stdio) -> (Proc, Value) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard-e2e"))
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("start switchboard");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready: Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("the ready line is JSON ({e}): {line:?}"));
    assert_eq!(ready["ready"], true, "{ready}");
    (Proc(Some(child)), ready)
}

/// The linked pair of channels of a test.
#[derive(Debug, Clone)]
pub struct Pair {
    /// Slack channel id.
    pub slack: String,
    /// Teams team id.
    pub team: String,
    /// Teams channel id.
    pub channel: String,
}

/// The sandbox, the server, and the seeded world.
pub struct World {
    _sandbox: Proc,
    server: Option<Proc>,
    /// The sandbox's ready line.
    pub sandbox: Value,
    /// The sandbox's base URL.
    pub base: String,
    /// The server's URL.
    pub url: String,
    /// Its admin token.
    pub token: String,
    /// `GET /_sandbox/seed`.
    pub seed: Value,
    /// HTTP client.
    pub http: reqwest::Client,
    data: tempfile::TempDir,
    envs: Vec<(String, String)>,
    /// Server processes started so far (each logs to `server-N.log`).
    started: usize,
}

fn enc(s: &str) -> String {
    s.replace(':', "%3A").replace('@', "%40")
}

impl World {
    /// A sandbox with limits scaled by `time_scale` (0: off) and a server connected to it.
    pub async fn start(time_scale: &str) -> World {
        World::start_with(time_scale, &[]).await
    }

    /// [`World::start`] with environment variables for the server.
    pub async fn start_with(time_scale: &str, envs: &[(&str, &str)]) -> World {
        let (sandbox, sb) = spawn(&["sandbox", "--port", "0", "--time-scale", time_scale], &[]);
        let base = sb["base_url"].as_str().unwrap().to_owned();
        let data = tempfile::tempdir().unwrap();
        let http = reqwest::Client::new();
        let seed: Value = http
            .get(format!("{base}/_sandbox/seed"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut w = World {
            _sandbox: sandbox,
            server: None,
            sandbox: sb,
            base,
            url: String::new(),
            token: String::new(),
            seed,
            http,
            data,
            envs: envs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            started: 0,
        };
        w.start_server();
        w
    }

    /// Starts (or restarts) the server on the same data directory.
    pub fn start_server(&mut self) {
        let data_dir = self.data.path().to_str().unwrap().to_owned();
        let mut envs: Vec<(&str, &str)> = self
            .envs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if !envs.iter().any(|(k, _)| *k == "SWITCHBOARD_LOG") {
            // The relay's info lines are the exceptional ones (a reconciliation that could
            // not look, a file linked instead of uploaded), not one per message.
            envs.push(("SWITCHBOARD_LOG", "warn,switchboard_relay=info"));
        }
        // Each server process logs (warnings and errors, the default) to a file of its own
        // in the data directory, for `World::server_logs` when a test fails.
        self.started += 1;
        let log = std::fs::File::create(
            self.data
                .path()
                .join(format!("server-{}.log", self.started)),
        )
        .expect("a log file in the data directory");
        let (server, ready) = spawn_logged(
            &[
                "serve",
                "--sandbox-url",
                &self.base,
                "--autoconnect",
                "--port",
                "0",
                "--data-dir",
                &data_dir,
            ],
            &envs,
            Stdio::from(log),
        );
        self.url = ready["url"].as_str().unwrap().to_owned();
        self.token = ready["admin_token"].as_str().unwrap().to_owned();
        self.server = Some(server);
    }

    /// The last `lines` lines of every server process's log, oldest process first (what a
    /// failing fault test prints).
    pub fn server_logs(&self, lines: usize) -> String {
        let mut out = String::new();
        for n in 1..=self.started {
            let text = std::fs::read_to_string(self.data.path().join(format!("server-{n}.log")))
                .unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            out.push_str(&format!(
                "--- server process {n}: last {} of {} log lines ---\n",
                lines.min(all.len()),
                all.len()
            ));
            for l in &all[all.len().saturating_sub(lines)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// Starts another replica of the server on the same data directory and environment
    /// (with PostgreSQL in `SWITCHBOARD_DATABASE_URL`, both share the work); it becomes the
    /// server the world's URL and token name (and the Slack request URL points at it).
    pub fn add_replica(&mut self) -> Proc {
        let first = self.server.take().expect("a running server");
        self.start_server();
        first
    }

    /// kill -9 of the server.
    pub fn kill_server(&mut self) {
        if let Some(s) = self.server.take() {
            s.kill9();
        }
    }

    /// The first public Slack channel the bot is in, and the `n`-th standard channel of the
    /// first team, linked as one universal channel.
    pub async fn link_pair(&self, n: usize) -> Pair {
        let slack = self.seed["slack"]["channels"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["is_private"] == false && c["is_member"] == true)
            .nth(n)
            .expect("enough public Slack channels with the bot")["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let team = &self.seed["msteams"]["teams"][0];
        let channel = team["channels"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["membershipType"] == "standard")
            .nth(n)
            .expect("enough standard Teams channels")["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let pair = Pair {
            slack,
            team: team["id"].as_str().unwrap().to_owned(),
            channel,
        };
        let slack_team = self.seed["slack"]["team_id"].as_str().unwrap();
        let r = self
            .http
            .post(format!("{}/api/v1/universal-channels", self.url))
            .bearer_auth(&self.token)
            .json(&json!({
                "name": format!("pair-{n}"),
                "endpoints": [
                    format!("slack:{slack_team}/{}", pair.slack),
                    format!("msteams:{}/{}", pair.team, pair.channel),
                ],
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        // Teams delivers a channel's messages only once its subscription exists: wait for it
        // in the sandbox's own state.
        self.wait("the Teams channel's subscription", || async {
            let subs: Value = self
                .http
                .get(format!("{}/_sandbox/msteams/subscriptions", self.base))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let list = subs["value"].as_array().or(subs.as_array()).cloned();
            list.unwrap_or_default().iter().any(|s| {
                s["resource"]
                    .as_str()
                    .is_some_and(|r| r.contains(&pair.channel))
            })
        })
        .await;
        pair
    }

    /// Polls `check` every 50 ms for up to 30 s (there is no ready signal for "the other
    /// platform shows it"); panics naming `what` when it never holds.
    pub async fn wait<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        for _ in 0..600 {
            if check().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for {what}");
    }

    /// A seeded Slack user (not a bot): `(id, real name, email)`.
    pub fn slack_user(&self, n: usize) -> (String, String, String) {
        let u = self.seed["slack"]["users"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|u| u["is_bot"] == false && u["deleted"] == false)
            .nth(n)
            .unwrap()
            .clone();
        (
            u["id"].as_str().unwrap().to_owned(),
            u["real_name"].as_str().unwrap_or_default().to_owned(),
            u["email"].as_str().unwrap_or_default().to_owned(),
        )
    }

    /// Posts as a Slack user; returns the `ts`.
    pub async fn slack_post(
        &self,
        user: &str,
        channel: &str,
        text: &str,
        thread: Option<&str>,
    ) -> String {
        let mut body = json!({ "user": user, "channel": channel, "text": text });
        if let Some(t) = thread {
            body["thread_ts"] = json!(t);
        }
        let r: Value = self.ctl("POST", "/_sandbox/slack/messages", body).await;
        r["ts"].as_str().expect("a ts").to_owned()
    }

    /// Posts as a Teams user (id or UPN); returns the message id.
    pub async fn teams_post(
        &self,
        user: &str,
        pair: &Pair,
        html: &str,
        reply_to: Option<&str>,
    ) -> String {
        let mut body =
            json!({ "user": user, "team": pair.team, "channel": pair.channel, "html": html });
        if let Some(r) = reply_to {
            body["reply_to"] = json!(r);
        }
        let r: Value = self.ctl("POST", "/_sandbox/msteams/messages", body).await;
        r["id"].as_str().expect("an id").to_owned()
    }

    /// A control-API call that must succeed.
    pub async fn ctl(&self, method: &str, path: &str, body: Value) -> Value {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = self
            .http
            .request(m, format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(status.is_success(), "{method} {path} → {status}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Every message of a Slack channel as the sandbox stores it.
    pub async fn slack_messages(&self, channel: &str) -> Vec<Value> {
        let v: Value = self
            .http
            .get(format!(
                "{}/_sandbox/slack/channels/{channel}/messages",
                self.base
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["messages"].as_array().cloned().unwrap_or_default()
    }

    /// Every message of a Teams channel as the sandbox stores it (replies included).
    pub async fn teams_messages(&self, pair: &Pair) -> Vec<Value> {
        let v: Value = self
            .http
            .get(format!(
                "{}/_sandbox/msteams/teams/{}/channels/{}/messages",
                self.base,
                pair.team,
                enc(&pair.channel)
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["value"]
            .as_array()
            .or(v.as_array())
            .cloned()
            .unwrap_or_default()
    }

    /// A member of the pair's team other than the service account, read through Graph with
    /// the sandbox's ready token: `(id, display name, mail)`.
    pub async fn teams_author(&self, pair: &Pair, n: usize) -> (String, String, String) {
        let graph = self.sandbox["graph_api_url"].as_str().unwrap();
        let token = self.sandbox["msteams"]["service_account_token"]
            .as_str()
            .unwrap();
        let svc = self.sandbox["msteams"]["service_account_upn"]
            .as_str()
            .unwrap();
        let v: Value = self
            .http
            .get(format!("{graph}/teams/{}/members", pair.team))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let m = v["value"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["email"].as_str() != Some(svc))
            .nth(n)
            .unwrap_or_else(|| panic!("a member of {}: {v}", pair.team))
            .clone();
        (
            m["userId"].as_str().unwrap().to_owned(),
            m["displayName"].as_str().unwrap_or_default().to_owned(),
            m["email"].as_str().unwrap_or_default().to_owned(),
        )
    }
}
