//! Helpers shared by the `msteams_*` integration tests: start a sandbox, call Graph, drive
//! the consent page, and a tiny notification receiver.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use parking_lot::Mutex;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use switchboard_sandbox::{Sandbox, SandboxConfig, Seed};

/// A running sandbox plus what the tests need from its ready line.
pub struct Env {
    pub sandbox: Sandbox,
    pub base: String,
    pub graph: String,
    pub tenant: String,
    pub client_id: String,
    pub client_secret: String,
    pub svc_token: String,
    pub svc_upn: String,
    pub svc_password: String,
    pub jr_upn: String,
    pub jr_password: String,
    pub http: reqwest::Client,
}

pub async fn start(seed: Seed, time_scale: f64) -> Env {
    let sandbox = Sandbox::start(SandboxConfig {
        seed,
        time_scale,
        ..Default::default()
    })
    .await
    .expect("sandbox starts");
    let info = sandbox.ready_info();
    let ms = &info["msteams"];
    let s = |k: &str| {
        ms[k]
            .as_str()
            .unwrap_or_else(|| panic!("ready_info.msteams.{k}"))
            .to_owned()
    };
    Env {
        base: sandbox.base_url().to_owned(),
        graph: info["graph_api_url"]
            .as_str()
            .expect("graph url")
            .to_owned(),
        tenant: s("tenant_id"),
        client_id: s("client_id"),
        client_secret: s("client_secret"),
        svc_token: s("service_account_token"),
        svc_upn: s("service_account_upn"),
        svc_password: s("service_account_password"),
        jr_upn: s("underprivileged_upn"),
        jr_password: s("underprivileged_password"),
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        sandbox,
    }
}

/// A response: status, headers and JSON body (Null when not JSON).
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
    pub fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

async fn to_resp(r: reqwest::Response) -> Resp {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp {
        status,
        headers,
        body,
    }
}

impl Env {
    /// `url` may be absolute or relative to the Graph base.
    fn url(&self, url: &str) -> String {
        if url.starts_with("http") {
            url.to_owned()
        } else {
            format!("{}{}", self.graph, url)
        }
    }

    pub async fn get(&self, token: &str, url: &str) -> Resp {
        let r = self
            .http
            .get(self.url(url))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET");
        to_resp(r).await
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        token: &str,
        url: &str,
        body: Option<Value>,
    ) -> Resp {
        let mut req = self.http.request(method, self.url(url)).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        to_resp(req.send().await.expect("request")).await
    }

    pub async fn post(&self, token: &str, url: &str, body: Value) -> Resp {
        self.send(reqwest::Method::POST, token, url, Some(body))
            .await
    }

    /// Control API call (`path` below `/_sandbox`).
    pub async fn control(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Resp {
        let mut req = self
            .http
            .request(method, format!("{}/_sandbox{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        to_resp(req.send().await.expect("control request")).await
    }

    pub async fn seed(&self) -> Value {
        self.control(reqwest::Method::GET, "/seed", None).await.body["msteams"].clone()
    }

    /// (team id, [(channel name, channel id)]) of a seeded team by name.
    pub async fn team(&self, name: &str) -> (String, Vec<(String, String)>) {
        let seed = self.seed().await;
        let t = seed["teams"]
            .as_array()
            .expect("teams")
            .iter()
            .find(|t| t["displayName"] == name)
            .unwrap_or_else(|| panic!("team {name}"))
            .clone();
        let chans = t["channels"]
            .as_array()
            .expect("channels")
            .iter()
            .map(|c| {
                (
                    c["displayName"].as_str().unwrap_or("").to_owned(),
                    c["id"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        (t["id"].as_str().expect("id").to_owned(), chans)
    }

    pub async fn channel(&self, team: &str, channel: &str) -> (String, String) {
        let (tid, chans) = self.team(team).await;
        let cid = chans
            .into_iter()
            .find(|(n, _)| n == channel)
            .unwrap_or_else(|| panic!("channel {channel}"))
            .1;
        (tid, cid)
    }

    /// A delegated token minted through the control API.
    pub async fn mint(&self, user: &str, scope: Option<&str>) -> String {
        let mut body = json!({"user": user});
        if let Some(s) = scope {
            body["scope"] = json!(s);
        }
        let r = self
            .control(reqwest::Method::POST, "/msteams/tokens", Some(body))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["access_token"].as_str().expect("token").to_owned()
    }

    /// Form POST to the token endpoint.
    pub async fn token(&self, form: &[(&str, &str)]) -> Resp {
        let r = self
            .http
            .post(format!(
                "{}/microsoft/{}/oauth2/v2.0/token",
                self.base, self.tenant
            ))
            .form(form)
            .send()
            .await
            .expect("token request");
        to_resp(r).await
    }
}

/// The consent page's hidden inputs (name, value), HTML-unescaped.
pub fn hidden_inputs(html: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for part in html.split("<input type=\"hidden\" ").skip(1) {
        let attr = |name: &str| -> Option<String> {
            let start = part.find(&format!("{name}=\""))? + name.len() + 2;
            let end = part[start..].find('"')? + start;
            Some(unescape(&part[start..end]))
        };
        if let (Some(n), Some(v)) = (attr("name"), attr("value")) {
            out.push((n, v));
        }
    }
    out
}

pub fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The form's `action` attribute.
pub fn form_action(html: &str) -> String {
    let start = html.find("action=\"").expect("form action") + 8;
    let end = html[start..].find('"').expect("action end") + start;
    unescape(&html[start..end])
}

pub fn pkce() -> (String, String) {
    let verifier =
        format!("v{}", uuid::Uuid::new_v4().simple()) + &uuid::Uuid::new_v4().simple().to_string();
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

pub const SCOPES: &str = "openid profile offline_access https://graph.microsoft.com/Team.ReadBasic.All https://graph.microsoft.com/Channel.ReadBasic.All https://graph.microsoft.com/TeamMember.ReadWrite.All https://graph.microsoft.com/User.Read.All https://graph.microsoft.com/RoleManagement.Read.Directory https://graph.microsoft.com/ChannelMessage.Send https://graph.microsoft.com/ChannelMessage.ReadWrite https://graph.microsoft.com/ChannelMessage.Read.All";

/// The authorize URL for the seeded app.
pub fn authorize_url(
    env: &Env,
    redirect: &str,
    challenge: &str,
    state: &str,
    login_hint: &str,
) -> String {
    let mut u = url::Url::parse(&format!(
        "{}/microsoft/{}/oauth2/v2.0/authorize",
        env.base, env.tenant
    ))
    .expect("url");
    u.query_pairs_mut()
        .append_pair("client_id", &env.client_id)
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", redirect)
        .append_pair("response_mode", "query")
        .append_pair("scope", SCOPES)
        .append_pair("state", state)
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("login_hint", login_hint);
    u.to_string()
}

/// GETs the consent page and submits it; returns the POST response.
pub async fn submit_consent(
    env: &Env,
    authorize: &str,
    username: &str,
    password: &str,
    decision: &str,
) -> reqwest::Response {
    let page = env.http.get(authorize).send().await.expect("consent page");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    assert!(
        html.contains("name=\"decision\" value=\"accept\""),
        "{html}"
    );
    let action = form_action(&html);
    let mut form = hidden_inputs(&html);
    form.push(("username".into(), username.into()));
    form.push(("password".into(), password.into()));
    form.push(("decision".into(), decision.into()));
    env.http
        .post(format!("{}{}", env.base, action))
        .form(&form)
        .send()
        .await
        .expect("consent post")
}

/// Signs `username` in through the consent page: returns (code, state) from the redirect.
pub async fn sign_in(
    env: &Env,
    redirect: &str,
    challenge: &str,
    username: &str,
    password: &str,
) -> String {
    let state = uuid::Uuid::new_v4().to_string();
    let r = submit_consent(
        env,
        &authorize_url(env, redirect, challenge, &state, username),
        username,
        password,
        "accept",
    )
    .await;
    assert_eq!(r.status(), 302, "{}", r.text().await.unwrap_or_default());
    let loc = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    assert!(loc.starts_with(redirect), "{loc}");
    let u = url::Url::parse(&loc).expect("location url");
    let q: std::collections::HashMap<String, String> = u.query_pairs().into_owned().collect();
    assert_eq!(q.get("state"), Some(&state));
    q.get("code").expect("code").clone()
}

/// Polls `f` until it returns Some or `secs` pass.
pub async fn wait_for<T>(secs: f64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Echo validation tokens, 202 notifications.
    Good,
    /// Answer validation with the wrong body.
    WrongEcho,
    /// Fail the first `n` notification POSTs with 500.
    FailFirst(u32),
}

#[derive(Default)]
struct Shared {
    validations: Vec<String>,
    posts: Vec<(String, Value)>,
    failures_left: u32,
}

#[derive(Clone)]
struct RecvState {
    mode: Mode,
    shared: Arc<Mutex<Shared>>,
}

/// A tiny HTTP receiver for Graph notifications on 127.0.0.1.
pub struct Receiver {
    pub base: String,
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
}

async fn receive(
    State(st): State<RecvState>,
    uri: axum::http::Uri,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(q.as_deref().unwrap_or("")).unwrap_or_default();
    if let Some((_, token)) = pairs.iter().find(|(k, _)| k == "validationToken") {
        st.shared.lock().validations.push(token.clone());
        let echo = if st.mode == Mode::WrongEcho {
            "nope".to_owned()
        } else {
            token.clone()
        };
        return (StatusCode::OK, [("content-type", "text/plain")], echo).into_response();
    }
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut sh = st.shared.lock();
    if let Mode::FailFirst(_) = st.mode {
        if sh.failures_left > 0 {
            sh.failures_left -= 1;
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    }
    sh.posts.push((uri.path().to_owned(), v));
    StatusCode::ACCEPTED.into_response()
}

impl Receiver {
    pub async fn start(mode: Mode) -> Receiver {
        let shared = Arc::new(Mutex::new(Shared {
            failures_left: match mode {
                Mode::FailFirst(n) => n,
                _ => 0,
            },
            ..Default::default()
        }));
        let app = Router::new()
            .route("/notify", post(receive))
            .route("/lifecycle", post(receive))
            .with_state(RecvState {
                mode,
                shared: shared.clone(),
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            base: format!("http://{addr}"),
            shared,
            task,
        }
    }

    pub fn validations(&self) -> Vec<String> {
        self.shared.lock().validations.clone()
    }

    /// Every notification item (the `value` entries) received on `path`, in order.
    pub fn items(&self, path: &str) -> Vec<Value> {
        self.shared
            .lock()
            .posts
            .iter()
            .filter(|(p, _)| p == path)
            .flat_map(|(_, v)| v["value"].as_array().cloned().unwrap_or_default())
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
