//! Helpers shared by the `slack_*` integration tests.
#![allow(dead_code)]

use std::sync::OnceLock;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use switchboard_sandbox::{Sandbox, SandboxConfig, Seed};

/// A running sandbox plus a client.
pub struct Env {
    pub sb: Sandbox,
    pub base: String,
    pub api: String,
    pub info: Value,
    pub http: reqwest::Client,
    pub bot: String,
    pub seed: Value,
}

pub async fn start(seed: Seed, time_scale: f64) -> Env {
    let sb = Sandbox::start(SandboxConfig {
        seed,
        time_scale,
        ..Default::default()
    })
    .await
    .expect("sandbox starts");
    let info = sb.ready_info();
    let base = sb.base_url().to_owned();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let seed = http
        .get(format!("{base}/_sandbox/seed"))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["slack"]
        .clone();
    Env {
        api: info["slack_api_url"].as_str().unwrap().to_owned(),
        bot: info["slack"]["bot_token"].as_str().unwrap().to_owned(),
        sb,
        base,
        info,
        http,
        seed,
    }
}

impl Env {
    /// POSTs a form-encoded Web API call with a bearer token; returns (status, headers, body).
    pub async fn call_raw(
        &self,
        method: &str,
        token: &str,
        params: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut req = self.http.post(format!("{}{method}", self.api)).form(params);
        if !token.is_empty() {
            req = req.bearer_auth(token);
        }
        req.send().await.unwrap()
    }

    /// POSTs a form-encoded Web API call and returns the JSON body (asserting HTTP 200).
    pub async fn call(&self, method: &str, token: &str, params: &[(&str, &str)]) -> Value {
        let resp = self.call_raw(method, token, params).await;
        assert_eq!(resp.status(), StatusCode::OK, "{method} HTTP status");
        resp.json().await.unwrap()
    }

    /// GETs a Web API call with the arguments in the query string.
    pub async fn get(&self, method: &str, token: &str, params: &[(&str, &str)]) -> Value {
        let resp = self
            .http
            .get(format!("{}{method}", self.api))
            .query(params)
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{method} HTTP status");
        resp.json().await.unwrap()
    }

    /// POSTs a JSON-bodied Web API call.
    pub async fn call_json(&self, method: &str, token: &str, body: Value) -> Value {
        let resp = self
            .http
            .post(format!("{}{method}", self.api))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{method} HTTP status");
        resp.json().await.unwrap()
    }

    /// A control API call under `/_sandbox/slack`.
    pub async fn control(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}/_sandbox/slack{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub fn channel_id(&self, name: &str) -> String {
        self.seed["channels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no channel {name}"))["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub fn user_id(&self, name: &str) -> String {
        self.seed["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["name"] == name)
            .unwrap_or_else(|| panic!("no user {name}"))["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// A seeded user posts through the control API; returns the ts.
    pub async fn user_posts(&self, user: &str, channel: &str, text: &str) -> String {
        let (st, v) = self
            .control(
                Method::POST,
                "/messages",
                Some(json!({"user": user, "channel": channel, "text": text})),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        v["ts"].as_str().unwrap().to_owned()
    }
}

fn spec() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../specs/slack/web_api_openapi_v2.json"
        );
        let text =
            std::fs::read_to_string(path).expect("specs/slack/web_api_openapi_v2.json is readable");
        serde_json::from_str(&text).expect("the spec is JSON")
    })
}

/// The 200 response schema of `method` in the spec, with the spec's `definitions` embedded.
pub fn response_schema(method: &str) -> Option<Value> {
    let path = spec()["paths"].get(format!("/{method}"))?;
    let op = path.as_object()?.values().next()?;
    let schema = op["responses"]["200"]["schema"].clone();
    if schema.is_null() {
        return None;
    }
    let mut s = schema;
    s["definitions"] = spec()["definitions"].clone();
    Some(s)
}

/// The spec writes alternatives as `{"items": [A, B]}` without a `type`, which a validator
/// applies to arrays only; read them as `anyOf` so objects are checked against them too.
pub fn strict(v: &Value) -> Value {
    match v {
        Value::Object(o) => {
            if let (Some(Value::Array(alts)), None) = (o.get("items"), o.get("type")) {
                return json!({"anyOf": alts.iter().map(strict).collect::<Vec<_>>()});
            }
            Value::Object(o.iter().map(|(k, x)| (k.clone(), strict(x))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(strict).collect()),
        other => other.clone(),
    }
}

fn check(schema: &Value, instance: &Value) -> Result<(), String> {
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .should_validate_formats(true)
        .build(schema)
        .map_err(|e| format!("bad schema: {e}"))?;
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n"))
    }
}

/// Validates a response against the spec as written and against its strict reading.
pub fn assert_valid(method: &str, response: &Value) {
    let schema = response_schema(method).unwrap_or_else(|| panic!("{method} is not in the spec"));
    if let Err(e) = check(&schema, response) {
        panic!("{method} response does not validate against the spec:\n{e}\n{response:#}");
    }
    if let Err(e) = check(&strict(&schema), response) {
        panic!(
            "{method} response does not validate against the strict reading:\n{e}\n{response:#}"
        );
    }
}

/// Like [`assert_valid`], with extra top-level properties allowed (documented spec gaps).
pub fn assert_valid_with(method: &str, response: &Value, extra: &[(&str, Value)]) {
    let mut schema = response_schema(method).unwrap();
    for (k, v) in extra {
        schema["properties"][*k] = v.clone();
    }
    if let Err(e) = check(&strict(&schema), response) {
        panic!("{method} response does not validate:\n{e}\n{response:#}");
    }
}
