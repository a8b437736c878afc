//! The Web API: `/slack/api/{method}`, GET or POST, arguments from the query string, a form or
//! a JSON body; `{"ok":true,…}` / `{"ok":false,"error":…}` on HTTP 200, 429 when rate limited.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Map, Value, json};

use super::auth::{Principal, TokenKind};
use super::model::{HistoryLimits, Workspace, fmt_ts, is_standard_emoji, parse_exact_ts, parse_ts};
use super::ops::NewMessage;
use super::render::{Flavor, channel_json, message_json, team_json, user_json};
use crate::SharedWorld;
use crate::ratelimit::retry_after_secs;
use crate::util::now_unix;

/// Longest accepted message text (Slack truncates/refuses past 40,000 characters).
const MAX_TEXT: usize = 40_000;

/// A failed call.
#[derive(Debug, Clone)]
pub(crate) enum ApiError {
    /// `{"ok":false,"error":code}`.
    Code(&'static str),
    /// `missing_scope` with `needed` (and `provided`, added on the way out).
    MissingScope(&'static str),
    /// `invalid_arguments` with `response_metadata.messages`.
    Invalid(String),
}

pub(crate) type ApiResult = Result<Value, ApiError>;

impl From<&'static str> for ApiError {
    fn from(code: &'static str) -> Self {
        ApiError::Code(code)
    }
}

/// Call arguments, merged from the query string and the body.
#[derive(Debug, Default)]
pub(crate) struct Args(HashMap<String, Value>);

impl Args {
    /// Parses the query string and a form or JSON body. `Err(code)` for a malformed body.
    pub fn parse(
        query: Option<&str>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Args, &'static str> {
        let mut map = HashMap::new();
        if let Some(q) = query {
            let pairs: Vec<(String, String)> =
                serde_urlencoded::from_str(q).map_err(|_| "invalid_form_data")?;
            for (k, v) in pairs {
                map.insert(k, Value::String(v));
            }
        }
        let ctype_raw = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let ctype = ctype_raw.to_ascii_lowercase();
        let has_body = body.iter().any(|b| !b.is_ascii_whitespace());
        if ctype.starts_with("application/json") {
            if has_body {
                let v: Value = serde_json::from_slice(body).map_err(|_| "invalid_json")?;
                let Value::Object(o) = v else {
                    return Err("json_not_object");
                };
                map.extend(o);
            }
        } else if ctype.starts_with("multipart/form-data") {
            let parts =
                super::files::multipart_parts(ctype_raw, body).ok_or("invalid_form_data")?;
            for p in parts.into_iter().filter(|p| !p.is_file) {
                if let Some(name) = p.name {
                    let text = String::from_utf8(p.data).map_err(|_| "invalid_charset")?;
                    map.insert(name, Value::String(text));
                }
            }
        } else if has_body {
            let pairs: Vec<(String, String)> =
                serde_urlencoded::from_bytes(body).map_err(|_| "invalid_form_data")?;
            for (k, v) in pairs {
                map.insert(k, Value::String(v));
            }
        }
        Ok(Args(map))
    }

    pub fn raw(&self, k: &str) -> Option<&Value> {
        self.0.get(k).filter(|v| !v.is_null())
    }

    /// A string argument (numbers and booleans stringified); empty strings count as absent.
    pub fn str(&self, k: &str) -> Option<String> {
        match self.raw(k)? {
            Value::String(s) if s.is_empty() => None,
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    pub fn bool(&self, k: &str) -> Result<bool, ApiError> {
        match self.raw(k) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::Number(n)) => Ok(n.as_f64().is_some_and(|f| f != 0.0)),
            Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
                "" | "0" | "false" | "no" => Ok(false),
                "1" | "true" | "yes" => Ok(true),
                _ => Err(ApiError::Invalid(format!(
                    "[ERROR] invalid boolean for argument `{k}`"
                ))),
            },
            Some(_) => Err(ApiError::Invalid(format!(
                "[ERROR] invalid boolean for argument `{k}`"
            ))),
        }
    }

    /// `limit`: absent or 0 → `default`; above `max` → `max`.
    pub fn limit(&self, default: usize, max: usize) -> Result<usize, ApiError> {
        match self.str("limit") {
            None => Ok(default),
            Some(s) => match s.trim().parse::<i64>() {
                Ok(0) => Ok(default),
                Ok(n) if n > 0 => Ok((n as usize).min(max)),
                _ => Err(ApiError::Invalid(
                    "[ERROR] `limit` must be a positive integer".into(),
                )),
            },
        }
    }

    /// A JSON argument given either as JSON or as a JSON-encoded string.
    pub fn json(&self, k: &str) -> Result<Option<Value>, ()> {
        match self.raw(k) {
            None => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => serde_json::from_str(s).map(Some).map_err(|_| ()),
            Some(v) => Ok(Some(v.clone())),
        }
    }

    pub fn required(&self, k: &str) -> Result<String, ApiError> {
        self.str(k)
            .ok_or_else(|| ApiError::Invalid(format!("[ERROR] missing required field: {k}")))
    }
}

/// Encodes an opaque paging cursor (Slack's look: base64 of `kind:value`).
pub(crate) fn encode_cursor(kind: &str, value: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{kind}:{value}"))
}

/// Decodes a cursor of the expected kind. `Ok(None)` when absent.
pub(crate) fn decode_cursor(args: &Args, kind: &str) -> Result<Option<String>, ApiError> {
    let Some(c) = args.str("cursor") else {
        return Ok(None);
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(c.trim())
        .map_err(|_| ApiError::Code("invalid_cursor"))?;
    let s = String::from_utf8(bytes).map_err(|_| ApiError::Code("invalid_cursor"))?;
    match s.split_once(':') {
        Some((k, v)) if k == kind && !v.is_empty() => Ok(Some(v.to_owned())),
        _ => Err(ApiError::Code("invalid_cursor")),
    }
}

fn need(p: &Principal, scope: &'static str) -> Result<(), ApiError> {
    if p.scopes.has(scope) {
        Ok(())
    } else {
        Err(ApiError::MissingScope(scope))
    }
}

/// The read scope a conversation needs.
fn read_scope(is_private: bool) -> &'static str {
    if is_private {
        "groups:read"
    } else {
        "channels:read"
    }
}

fn history_scope(is_private: bool) -> &'static str {
    if is_private {
        "groups:history"
    } else {
        "channels:history"
    }
}

/// Resolves a conversation the caller can see by its exact id (as Slack's
/// `conversations.*`, `chat.update`, `chat.delete` and `reactions.*` do: a channel name
/// is `channel_not_found`): private ones only for members.
fn visible_channel(ws: &Workspace, p: &Principal, key: Option<&str>) -> Result<u32, ApiError> {
    let key = key.ok_or(ApiError::Code("channel_not_found"))?;
    let ix = ws
        .find_channel_id(key)
        .ok_or(ApiError::Code("channel_not_found"))?;
    check_visible(ws, p, ix)
}

/// Like [`visible_channel`], also accepting a channel name (`chat.postMessage` and
/// `files.completeUploadExternal` take "an encoded ID, or a name").
fn visible_channel_or_name(ws: &Workspace, p: &Principal, key: &str) -> Result<u32, ApiError> {
    let ix = ws
        .find_channel(key)
        .ok_or(ApiError::Code("channel_not_found"))?;
    check_visible(ws, p, ix)
}

fn check_visible(ws: &Workspace, p: &Principal, ix: u32) -> Result<u32, ApiError> {
    let c = ws.channel(ix);
    if c.is_private && !c.members.contains(&p.user) {
        return Err(ApiError::Code("channel_not_found"));
    }
    Ok(ix)
}

/// Rate limit of a method: `(limit, per)` before time scaling.
fn method_limit(method: &str) -> Option<(u32, Duration)> {
    let minute = Duration::from_secs(60);
    let tier = |t: u32| match t {
        1 => (5, Duration::from_secs(300)),
        2 => (20, minute),
        3 => (50, minute),
        _ => (100, minute),
    };
    Some(match method {
        "auth.test" => (600, minute),
        "apps.connections.open" => tier(1),
        "conversations.list" | "users.list" => tier(2),
        "auth.revoke"
        | "team.info"
        | "conversations.info"
        | "conversations.join"
        | "conversations.leave"
        | "conversations.history"
        | "conversations.replies"
        | "users.lookupByEmail"
        | "chat.update"
        | "chat.delete"
        | "reactions.add" => tier(3),
        "reactions.remove" => tier(2),
        "conversations.members"
        | "users.info"
        | "files.info"
        | "files.getUploadURLExternal"
        | "files.completeUploadExternal"
        | "oauth.v2.access" => tier(4),
        // chat.postMessage has its own rules (per channel + workspace budget).
        "chat.postMessage" => return None,
        _ => return None,
    })
}

/// `conversations.history` / `conversations.replies` of a non-Marketplace commercial app
/// (Slack's 2025-05-29 rules): 1 request a minute.
fn history_limit(ws: &Workspace, method: &str) -> Option<(u32, Duration)> {
    let limited = ws.modes.history == HistoryLimits::NonMarketplace
        && matches!(method, "conversations.history" | "conversations.replies");
    limited.then_some((1, Duration::from_secs(60)))
}

/// `limit` of `conversations.history` / `conversations.replies`: with the 2025 limits the
/// default and the maximum are 15.
fn history_page_limit(ws: &Workspace, args: &Args, max: usize) -> Result<usize, ApiError> {
    match ws.modes.history {
        HistoryLimits::Internal => args.limit(100, max),
        HistoryLimits::NonMarketplace => Ok(args.limit(15, max)?.min(15)),
    }
}

/// Every method this emulator serves.
pub(crate) const METHODS: &[&str] = &[
    "api.test",
    "auth.test",
    "auth.revoke",
    "team.info",
    "conversations.list",
    "conversations.info",
    "conversations.members",
    "conversations.join",
    "conversations.leave",
    "conversations.history",
    "conversations.replies",
    "users.list",
    "users.info",
    "users.lookupByEmail",
    "chat.postMessage",
    "chat.update",
    "chat.delete",
    "reactions.add",
    "reactions.remove",
    "files.info",
    "files.getUploadURLExternal",
    "files.completeUploadExternal",
    "apps.connections.open",
    "oauth.v2.access",
];

/// Per-channel `chat.postMessage` rule: 1 per second, bursts of up to 5.
pub(crate) const POST_PER_CHANNEL: (u32, Duration) = (5, Duration::from_secs(5));
/// Workspace-wide posting budget: 600 per minute.
pub(crate) const POST_PER_WORKSPACE: (u32, Duration) = (600, Duration::from_secs(60));

pub(crate) fn json_response(status: StatusCode, v: &Value) -> Response {
    let mut resp = (status, v.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

fn error_body(e: &ApiError, p: Option<&Principal>) -> Value {
    match e {
        ApiError::Code(c) => json!({"ok": false, "error": c}),
        ApiError::MissingScope(needed) => json!({
            "ok": false,
            "error": "missing_scope",
            "needed": needed,
            "provided": p.map(|p| p.scopes.to_list()).unwrap_or_default(),
        }),
        ApiError::Invalid(msg) => json!({
            "ok": false,
            "error": "invalid_arguments",
            "response_metadata": {"messages": [msg]},
        }),
    }
}

fn ok_body(v: Value) -> Value {
    let mut o = Map::new();
    o.insert("ok".into(), Value::Bool(true));
    if let Value::Object(m) = v {
        o.extend(m);
    }
    Value::Object(o)
}

pub(crate) fn ratelimited(wait: Duration) -> Response {
    let mut resp = json_response(
        StatusCode::TOO_MANY_REQUESTS,
        &json!({"ok": false, "error": "ratelimited"}),
    );
    resp.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(retry_after_secs(wait)),
    );
    resp
}

pub(crate) fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim().to_owned())
}

/// `GET|POST /slack/api/{method}`.
pub(crate) async fn api(
    State(world): State<SharedWorld>,
    Path(method): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let args = match Args::parse(query.as_deref(), &headers, &body) {
        Ok(a) => a,
        Err(code) => {
            return json_response(StatusCode::OK, &json!({"ok": false, "error": code}));
        }
    };
    if !METHODS.contains(&method.as_str()) {
        return json_response(
            StatusCode::OK,
            &json!({"ok": false, "error": "unknown_method", "req_method": method}),
        );
    }
    let slack = &world.slack;
    let team = slack.app.team_id.clone();
    if method == "api.test" {
        let mut v = json!({"ok": true, "args": args.0});
        if let Some(e) = args.str("error") {
            v = json!({"ok": false, "error": e, "args": args.0});
        }
        return json_response(StatusCode::OK, &v);
    }
    if method == "oauth.v2.access" {
        if let Some((limit, per)) = method_limit(&method) {
            if let Err(wait) =
                world
                    .limiter
                    .check(&format!("slack:{team}:oauth.v2.access"), limit, per)
            {
                return ratelimited(wait);
            }
        }
        let v = super::oauth::access(&world, &headers, &args);
        return json_response(StatusCode::OK, &v);
    }
    let token = bearer(&headers).or_else(|| args.str("token"));
    let principal = slack.auth.lock().check(token.as_deref());
    let p = match principal {
        Ok(p) => p,
        Err(code) => return json_response(StatusCode::OK, &json!({"ok": false, "error": code})),
    };
    let app_method = method == "apps.connections.open";
    if (p.kind == TokenKind::App) != app_method {
        return json_response(
            StatusCode::OK,
            &json!({"ok": false, "error": "not_allowed_token_type"}),
        );
    }
    // Rate limits: per method per workspace; chat.postMessage per channel + a workspace budget.
    let limited = if method == "chat.postMessage" {
        // Unknown channels share one bucket, so made-up names cannot grow the limiter.
        let chan = args
            .str("channel")
            .and_then(|c| {
                let ws = slack.ws.read();
                ws.find_channel(&c).map(|ix| ws.channel(ix).id.clone())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let k1 = format!("slack:{team}:chat.postMessage:{chan}");
        let k2 = format!("slack:{team}:chat.postMessage");
        world.limiter.check_all(&[
            (k1.as_str(), POST_PER_CHANNEL.0, POST_PER_CHANNEL.1),
            (k2.as_str(), POST_PER_WORKSPACE.0, POST_PER_WORKSPACE.1),
        ])
    } else if let Some((limit, per)) =
        history_limit(&slack.ws.read(), &method).or_else(|| method_limit(&method))
    {
        world
            .limiter
            .check(&format!("slack:{team}:{method}"), limit, per)
    } else {
        Ok(())
    };
    if let Err(wait) = limited {
        return ratelimited(wait);
    }
    let result = call(&world, &p, token.as_deref().unwrap_or(""), &method, &args);
    let body = match result {
        Ok(v) => ok_body(v),
        Err(e) => error_body(&e, Some(&p)),
    };
    let mut resp = json_response(StatusCode::OK, &body);
    if let Ok(v) = HeaderValue::from_str(&p.scopes.to_list()) {
        resp.headers_mut().insert("x-oauth-scopes", v);
    }
    resp
}

fn call(world: &crate::World, p: &Principal, token: &str, method: &str, args: &Args) -> ApiResult {
    let base = world.base_url.as_str();
    match method {
        "auth.test" => auth_test(world, p),
        "auth.revoke" => {
            let test = args.bool("test")?;
            if !test {
                world.slack.auth.lock().revoke(token);
            }
            Ok(json!({"revoked": !test}))
        }
        "team.info" => {
            need(p, "team:read")?;
            let ws = world.slack.ws.read();
            if let Some(t) = args.str("team") {
                if t != ws.team_id {
                    return Err("team_not_found".into());
                }
            }
            Ok(json!({"team": team_json(&ws, base)}))
        }
        "conversations.list" => conversations_list(world, p, args),
        "conversations.info" => {
            let ws = world.slack.ws.read();
            let ix = visible_channel(&ws, p, args.str("channel").as_deref())?;
            let c = ws.channel(ix);
            need(p, read_scope(c.is_private))?;
            let n = args.bool("include_num_members")?;
            Ok(json!({"channel": channel_json(&ws, c, Some(p.user), n)}))
        }
        "conversations.members" => conversations_members(world, p, args),
        "conversations.join" => conversations_join(world, p, args),
        "conversations.leave" => {
            let ix = {
                let ws = world.slack.ws.read();
                let ix = visible_channel(&ws, p, args.str("channel").as_deref())?;
                let c = ws.channel(ix);
                if p.is_bot() || !p.scopes.has("channels:write") {
                    need(
                        p,
                        if c.is_private {
                            "groups:write"
                        } else {
                            "channels:manage"
                        },
                    )?;
                }
                ix
            };
            match world.slack.leave(base, ix, p.user)? {
                true => Ok(json!({})),
                false => Ok(json!({"not_in_channel": true})),
            }
        }
        "conversations.history" => conversations_history(world, p, args),
        "conversations.replies" => conversations_replies(world, p, args),
        "users.list" => users_list(world, p, args),
        "users.info" => {
            need(p, "users:read")?;
            let ws = world.slack.ws.read();
            let key = args.str("user").ok_or(ApiError::Code("user_not_found"))?;
            let ix = ws
                .user_ix
                .get(key.trim())
                .copied()
                .ok_or(ApiError::Code("user_not_found"))?;
            Ok(json!({"user": user_json(&ws, base, ix, p.scopes.has("users:read.email"))}))
        }
        "users.lookupByEmail" => {
            need(p, "users:read.email")?;
            let ws = world.slack.ws.read();
            let email = args.required("email")?;
            let ix = ws
                .user_by_email
                .get(&email.trim().to_ascii_lowercase())
                .copied()
                .ok_or(ApiError::Code("users_not_found"))?;
            Ok(json!({"user": user_json(&ws, base, ix, true)}))
        }
        "chat.postMessage" => chat_post(world, p, args),
        "chat.update" => chat_update(world, p, args),
        "chat.delete" => {
            need(p, "chat:write")?;
            let ix = {
                let ws = world.slack.ws.read();
                visible_channel(&ws, p, args.str("channel").as_deref())?
            };
            let ts = args
                .str("ts")
                .and_then(|t| parse_exact_ts(&t))
                .ok_or(ApiError::Code("message_not_found"))?;
            world.slack.delete(base, ix, ts, Some(p.user))?;
            let id = world.slack.ws.read().channel(ix).id.clone();
            Ok(json!({"channel": id, "ts": fmt_ts(ts)}))
        }
        "reactions.add" | "reactions.remove" => {
            need(p, "reactions:write")?;
            let add = method == "reactions.add";
            let ix = {
                let ws = world.slack.ws.read();
                let key = args
                    .str("channel")
                    .ok_or(ApiError::Code("no_item_specified"))?;
                visible_channel(&ws, p, Some(&key))?
            };
            let ts = args
                .str("timestamp")
                .ok_or(ApiError::Code("no_item_specified"))?;
            let ts = parse_exact_ts(&ts).ok_or(ApiError::Code("message_not_found"))?;
            let name = args.str("name").ok_or(ApiError::Code("invalid_name"))?;
            if !known_reaction_name(&name) {
                return Err("invalid_name".into());
            }
            world.slack.react(ix, ts, p.user, &name, add)?;
            Ok(json!({}))
        }
        "files.info" => super::files::info(world, p, args),
        "files.getUploadURLExternal" => super::files::get_upload_url(world, p, args),
        "files.completeUploadExternal" => super::files::complete_upload(world, p, args),
        "apps.connections.open" => {
            need(p, "connections:write")?;
            let ticket = world.slack.sockets.new_ticket();
            let ws_base = base
                .strip_prefix("https://")
                .map(|r| format!("wss://{r}"))
                .or_else(|| base.strip_prefix("http://").map(|r| format!("ws://{r}")))
                .unwrap_or_else(|| base.to_owned());
            Ok(json!({"url": format!("{ws_base}/slack/socket/{ticket}")}))
        }
        _ => Err("unknown_method".into()),
    }
}

/// Emoji names: no colons around them; an optional `::skin-tone-N` suffix.
pub(crate) fn valid_reaction_name(name: &str) -> bool {
    let (base, tone) = match name.split_once("::") {
        Some((b, t)) => (b, Some(t)),
        None => (name, None),
    };
    let ok_base = !base.is_empty()
        && base.len() <= 100
        && base
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_+-'".contains(c));
    let ok_tone = tone.is_none_or(|t| {
        t.strip_prefix("skin-tone-")
            .is_some_and(|n| matches!(n, "2" | "3" | "4" | "5" | "6"))
    });
    ok_base && ok_tone
}

/// A reaction name Slack accepts: well formed, and a standard emoji of Slack's own table
/// (iamcal emoji-data short names, e.g. `thinking_face`, not gemoji's `thinking`), with an
/// optional skin tone. The sandbox workspace has no custom emoji.
pub(crate) fn known_reaction_name(name: &str) -> bool {
    if !valid_reaction_name(name) {
        return false;
    }
    let base = name.split_once("::").map_or(name, |(b, _)| b);
    is_standard_emoji(base)
}

fn auth_test(world: &crate::World, p: &Principal) -> ApiResult {
    let ws = world.slack.ws.read();
    let u = ws.user(p.user);
    let mut v = json!({
        "url": format!("https://{}.slack.com/", ws.domain),
        "team": ws.team_name,
        "user": u.name,
        "team_id": ws.team_id,
        "user_id": u.id,
        "is_enterprise_install": false,
    });
    if p.is_bot() {
        if let Some(b) = u.bot_id() {
            v["bot_id"] = json!(b);
        }
    }
    Ok(v)
}

fn conversations_list(world: &crate::World, p: &Principal, args: &Args) -> ApiResult {
    let types = args
        .str("types")
        .unwrap_or_else(|| "public_channel".to_owned());
    let (mut public, mut private) = (false, false);
    for t in types.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        match t {
            "public_channel" => {
                need(p, "channels:read")?;
                public = true;
            }
            "private_channel" => {
                need(p, "groups:read")?;
                private = true;
            }
            // No DMs exist in the sandbox; the scope is still required.
            "im" => need(p, "im:read")?,
            "mpim" => need(p, "mpim:read")?,
            _ => return Err("invalid_types".into()),
        }
    }
    let exclude_archived = args.bool("exclude_archived")?;
    let limit = args.limit(100, 1000)?;
    let ws = world.slack.ws.read();
    let start = match decode_cursor(args, "channel")? {
        None => 0,
        Some(id) => *ws
            .chan_ix
            .get(&id)
            .ok_or(ApiError::Code("invalid_cursor"))? as usize,
    };
    let matches = |ix: usize| {
        let c = &ws.channels[ix];
        let kind_ok = if c.is_private {
            private && c.members.contains(&p.user)
        } else {
            public
        };
        kind_ok && !(exclude_archived && c.is_archived)
    };
    let mut out = Vec::new();
    let mut next = String::new();
    for ix in start..ws.channels.len() {
        if !matches(ix) {
            continue;
        }
        if out.len() == limit {
            next = encode_cursor("channel", &ws.channels[ix].id);
            break;
        }
        out.push(channel_json(&ws, &ws.channels[ix], Some(p.user), true));
    }
    Ok(json!({"channels": out, "response_metadata": {"next_cursor": next}}))
}

fn conversations_members(world: &crate::World, p: &Principal, args: &Args) -> ApiResult {
    let ws = world.slack.ws.read();
    let ix = visible_channel(&ws, p, args.str("channel").as_deref())?;
    let c = ws.channel(ix);
    need(p, read_scope(c.is_private))?;
    let limit = args.limit(100, 1000)?;
    let from = match decode_cursor(args, "member")? {
        None => 0,
        Some(id) => *ws
            .user_ix
            .get(&id)
            .ok_or(ApiError::Code("invalid_cursor"))?,
    };
    let mut members = Vec::new();
    let mut next = String::new();
    for &u in c.members.range(from..) {
        if members.len() == limit {
            next = encode_cursor("member", &ws.user(u).id);
            break;
        }
        members.push(ws.user(u).id.clone());
    }
    Ok(json!({"members": members, "response_metadata": {"next_cursor": next}}))
}

fn conversations_join(world: &crate::World, p: &Principal, args: &Args) -> ApiResult {
    let base = world.base_url.as_str();
    let ix = {
        let ws = world.slack.ws.read();
        let key = args
            .str("channel")
            .ok_or(ApiError::Code("channel_not_found"))?;
        let ix = ws
            .find_channel_id(&key)
            .ok_or(ApiError::Code("channel_not_found"))?;
        let c = ws.channel(ix);
        if c.is_private {
            return Err("method_not_supported_for_channel_type".into());
        }
        if p.is_bot() || !p.scopes.has("channels:write") {
            need(p, "channels:join")?;
        }
        if c.is_archived {
            return Err("is_archived".into());
        }
        ix
    };
    let joined = world.slack.join(base, ix, p.user)?;
    let ws = world.slack.ws.read();
    let mut v = json!({"channel": channel_json(&ws, ws.channel(ix), Some(p.user), false)});
    if !joined {
        v["warning"] = json!("already_in_channel");
        v["response_metadata"] = json!({"warnings": ["already_in_channel"]});
    }
    Ok(v)
}

/// Checks the caller may read a conversation's messages; bots must be members.
fn readable_channel(ws: &Workspace, p: &Principal, args: &Args) -> Result<u32, ApiError> {
    let ix = visible_channel(ws, p, args.str("channel").as_deref())?;
    let c = ws.channel(ix);
    need(p, history_scope(c.is_private))?;
    if p.is_bot() && !c.members.contains(&p.user) {
        return Err("not_in_channel".into());
    }
    Ok(ix)
}

fn ts_arg(args: &Args, k: &str, err: &'static str) -> Result<Option<u64>, ApiError> {
    match args.str(k) {
        None => Ok(None),
        Some(s) => parse_ts(&s).map(Some).ok_or(ApiError::Code(err)),
    }
}

fn conversations_history(world: &crate::World, p: &Principal, args: &Args) -> ApiResult {
    let base = world.base_url.as_str();
    let ws = world.slack.ws.read();
    let ix = readable_channel(&ws, p, args)?;
    let c = ws.channel(ix);
    let latest = ts_arg(args, "latest", "invalid_ts_latest")?;
    let oldest = ts_arg(args, "oldest", "invalid_ts_oldest")?.unwrap_or(0);
    let inclusive = args.bool("inclusive")?;
    let limit = history_page_limit(&ws, args, 999)?;
    let with_md = args.bool("include_all_metadata")?;
    let cursor = match decode_cursor(args, "next_ts")? {
        None => None,
        Some(t) => Some(parse_ts(&t).ok_or(ApiError::Code("invalid_cursor"))?),
    };
    let in_range = |ts: u64| {
        let upper = latest.is_none_or(|l| if inclusive { ts <= l } else { ts < l });
        let lower = if inclusive || oldest == 0 {
            ts >= oldest
        } else {
            ts > oldest
        };
        upper && lower && cursor.is_none_or(|cur| ts <= cur)
    };
    let end = match cursor.or(latest) {
        Some(t) => c.messages.partition_point(|m| m.ts <= t),
        None => c.messages.len(),
    };
    let mut out = Vec::new();
    let mut next = None;
    for m in c.messages[..end].iter().rev() {
        if !m.in_channel_history() || !in_range(m.ts) {
            if m.ts < oldest {
                break;
            }
            continue;
        }
        if out.len() == limit {
            next = Some(m.ts);
            break;
        }
        out.push(message_json(
            &ws,
            base,
            c,
            m,
            Flavor::Api { metadata: with_md },
        ));
    }
    let mut v = json!({
        "messages": out,
        "has_more": next.is_some(),
        "pin_count": 0,
        "channel_actions_ts": null,
        "channel_actions_count": 0,
    });
    if let Some(n) = next {
        v["response_metadata"] = json!({"next_cursor": encode_cursor("next_ts", &fmt_ts(n))});
    }
    Ok(v)
}

fn conversations_replies(world: &crate::World, p: &Principal, args: &Args) -> ApiResult {
    let base = world.base_url.as_str();
    let ws = world.slack.ws.read();
    let ix = readable_channel(&ws, p, args)?;
    let c = ws.channel(ix);
    let ts = args
        .str("ts")
        .and_then(|t| parse_exact_ts(&t))
        .ok_or(ApiError::Code("thread_not_found"))?;
    let i = c
        .find(ts)
        .filter(|i| !c.messages[*i].deleted)
        .ok_or(ApiError::Code("thread_not_found"))?;
    let root_ts = if c.messages[i].is_reply() {
        c.messages[i].thread_ts.unwrap_or(ts)
    } else {
        ts
    };
    let root = c
        .find(root_ts)
        .filter(|r| !c.messages[*r].deleted)
        .ok_or(ApiError::Code("thread_not_found"))?;
    let latest = ts_arg(args, "latest", "invalid_ts_latest")?;
    let oldest = ts_arg(args, "oldest", "invalid_ts_oldest")?.unwrap_or(0);
    let inclusive = args.bool("inclusive")?;
    let limit = history_page_limit(&ws, args, 1000)?;
    let with_md = args.bool("include_all_metadata")?;
    let cursor = match decode_cursor(args, "next_ts")? {
        None => None,
        Some(t) => Some(parse_ts(&t).ok_or(ApiError::Code("invalid_cursor"))?),
    };
    let thread = std::iter::once(root_ts).chain(c.messages[root].replies.iter().copied());
    let mut out = Vec::new();
    let mut next = None;
    for t in thread {
        let Some(j) = c.find(t) else { continue };
        let m = &c.messages[j];
        if m.deleted || cursor.is_some_and(|cur| t < cur) {
            continue;
        }
        let upper = latest.is_none_or(|l| if inclusive { t <= l } else { t < l });
        let lower = if inclusive || oldest == 0 {
            t >= oldest
        } else {
            t > oldest
        };
        if !(upper && lower) {
            continue;
        }
        if out.len() == limit {
            next = Some(t);
            break;
        }
        out.push(message_json(
            &ws,
            base,
            c,
            m,
            Flavor::Api { metadata: with_md },
        ));
    }
    let mut v = json!({"messages": out, "has_more": next.is_some()});
    if let Some(n) = next {
        v["response_metadata"] = json!({"next_cursor": encode_cursor("next_ts", &fmt_ts(n))});
    }
    Ok(v)
}

fn users_list(world: &crate::World, p: &Principal, args: &Args) -> ApiResult {
    need(p, "users:read")?;
    let base = world.base_url.as_str();
    let limit = args.limit(1000, 1000)?;
    let with_email = p.scopes.has("users:read.email");
    let ws = world.slack.ws.read();
    let start = match decode_cursor(args, "user")? {
        None => 0,
        Some(id) => *ws
            .user_ix
            .get(&id)
            .ok_or(ApiError::Code("invalid_cursor"))? as usize,
    };
    let end = (start + limit).min(ws.users.len());
    let members: Vec<Value> = (start..end)
        .map(|ix| user_json(&ws, base, ix as u32, with_email))
        .collect();
    let next = if end < ws.users.len() {
        encode_cursor("user", &ws.users[end].id)
    } else {
        String::new()
    };
    Ok(json!({
        "members": members,
        "cache_ts": now_unix(),
        "response_metadata": {"next_cursor": next},
    }))
}

/// Reads `metadata` (`{event_type, event_payload}`, as JSON or a JSON string).
fn metadata_arg(args: &Args) -> Result<Option<Value>, ApiError> {
    let md = args
        .json("metadata")
        .map_err(|_| ApiError::Code("invalid_metadata_format"))?;
    let Some(md) = md else { return Ok(None) };
    let ok = md.is_object()
        && md["event_type"].as_str().is_some_and(|s| !s.is_empty())
        && (md.get("event_payload").is_none() || md["event_payload"].is_object());
    if !ok {
        return Err("invalid_metadata_format".into());
    }
    let mut md = md;
    if md.get("event_payload").is_none() {
        md["event_payload"] = json!({});
    }
    Ok(Some(
        json!({"event_type": md["event_type"], "event_payload": md["event_payload"]}),
    ))
}

/// Checks the caller may post in `key`'s conversation.
pub(crate) fn postable_channel(ws: &Workspace, p: &Principal, key: &str) -> Result<u32, ApiError> {
    let ix = visible_channel_or_name(ws, p, key)?;
    let c = ws.channel(ix);
    if c.is_archived {
        return Err("is_archived".into());
    }
    let public_ok = p.is_bot() && !c.is_private && p.scopes.has("chat:write.public");
    if !c.members.contains(&p.user) && !public_ok {
        return Err("not_in_channel".into());
    }
    Ok(ix)
}

fn chat_post(world: &crate::World, p: &Principal, args: &Args) -> ApiResult {
    need(p, "chat:write")?;
    let base = world.base_url.as_str();
    let key = args
        .str("channel")
        .ok_or(ApiError::Code("channel_not_found"))?;
    let ix = postable_channel(&world.slack.ws.read(), p, &key)?;
    let text = args.str("text").unwrap_or_default();
    let blocks = args
        .json("blocks")
        .map_err(|_| ApiError::Code("invalid_blocks"))?;
    if let Some(b) = &blocks {
        let valid = b
            .as_array()
            .is_some_and(|a| a.iter().all(|x| x["type"].is_string()));
        if !valid {
            return Err("invalid_blocks".into());
        }
    }
    let has_attachments = args.json("attachments").ok().flatten().is_some();
    if text.trim().is_empty() && blocks.is_none() && !has_attachments {
        return Err("no_text".into());
    }
    if text.chars().count() > MAX_TEXT {
        return Err("msg_too_long".into());
    }
    let thread_ts = ts_arg(args, "thread_ts", "invalid_thread_ts")?;
    let (mut username, mut icon_url, mut icon_emoji) = (
        args.str("username"),
        args.str("icon_url"),
        args.str("icon_emoji"),
    );
    if p.is_bot() {
        // Without chat:write.customize Slack ignores the overrides silently and posts as the
        // app (no `missing_scope`).
        if !p.scopes.has("chat:write.customize") {
            (username, icon_url, icon_emoji) = (None, None, None);
        }
    } else {
        // User tokens post as the user: customisation is ignored, as on Slack.
        (username, icon_url, icon_emoji) = (None, None, None);
    }
    if let Some(u) = &icon_url {
        if url::Url::parse(u).is_err() {
            return Err(ApiError::Invalid("[ERROR] `icon_url` must be a URL".into()));
        }
    }
    let metadata = metadata_arg(args)?;
    let posted = world.slack.post(
        base,
        ix,
        NewMessage {
            user: p.user,
            text,
            blocks,
            thread_ts,
            reply_broadcast: args.bool("reply_broadcast")?,
            as_bot: p.is_bot(),
            username,
            icon_url,
            icon_emoji,
            metadata,
            ..NewMessage::default()
        },
    )?;
    Ok(json!({
        "channel": posted.channel_id,
        "ts": fmt_ts(posted.ts),
        "message": posted.message,
    }))
}

fn chat_update(world: &crate::World, p: &Principal, args: &Args) -> ApiResult {
    need(p, "chat:write")?;
    let base = world.base_url.as_str();
    let ix = {
        let ws = world.slack.ws.read();
        visible_channel(&ws, p, args.str("channel").as_deref())?
    };
    let ts = args
        .str("ts")
        .and_then(|t| parse_exact_ts(&t))
        .ok_or(ApiError::Code("message_not_found"))?;
    let text = args.str("text");
    // chat.update takes no username / icon_url / icon_emoji: they are not read, and the
    // updated message shows the app's own name (see `SlackState::update`).
    let metadata = metadata_arg(args)?;
    let blocks = args
        .json("blocks")
        .map_err(|_| ApiError::Code("invalid_blocks"))?;
    if text.is_none() && blocks.is_none() {
        return Err("no_text".into());
    }
    if text.as_ref().is_some_and(|t| t.chars().count() > MAX_TEXT) {
        return Err("msg_too_long".into());
    }
    let message = world
        .slack
        .update(base, ix, ts, p.user, Some(p.user), text, blocks, metadata)?;
    let id = world.slack.ws.read().channel(ix).id.clone();
    let text = message["text"].clone();
    Ok(json!({"channel": id, "ts": fmt_ts(ts), "text": text, "message": message}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = encode_cursor("user", "U123");
        let args = Args(HashMap::from([("cursor".to_owned(), json!(c))]));
        assert_eq!(
            decode_cursor(&args, "user").unwrap().as_deref(),
            Some("U123")
        );
        assert!(decode_cursor(&args, "channel").is_err());
        let bad = Args(HashMap::from([("cursor".to_owned(), json!("%%%"))]));
        assert!(decode_cursor(&bad, "user").is_err());
    }

    #[test]
    fn reaction_names() {
        assert!(valid_reaction_name("thumbsup"));
        assert!(valid_reaction_name("+1"));
        assert!(valid_reaction_name("thumbsup::skin-tone-2"));
        assert!(!valid_reaction_name(":thumbsup:"));
        assert!(!valid_reaction_name("thumbsup::skin-tone-9"));
        assert!(!valid_reaction_name(""));
    }

    #[test]
    fn args_from_form_query_and_json() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let a = Args::parse(Some("limit=5"), &h, b"channel=C1&text=hi%20there").unwrap();
        assert_eq!(a.str("channel").as_deref(), Some("C1"));
        assert_eq!(a.str("text").as_deref(), Some("hi there"));
        assert_eq!(a.limit(100, 1000).unwrap(), 5);
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let a = Args::parse(
            None,
            &h,
            br#"{"channel":"C1","limit":2000,"metadata":{"event_type":"x"}}"#,
        )
        .unwrap();
        assert_eq!(a.limit(100, 1000).unwrap(), 1000);
        assert!(a.json("metadata").unwrap().unwrap().is_object());
        assert_eq!(
            Args::parse(None, &h, b"[1]").unwrap_err(),
            "json_not_object"
        );
        assert_eq!(Args::parse(None, &h, b"{").unwrap_err(), "invalid_json");
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("multipart/form-data; boundary=AbC"),
        );
        let body =
            b"--AbC\r\nContent-Disposition: form-data; name=\"channel\"\r\n\r\nC9\r\n--AbC--\r\n";
        assert_eq!(
            Args::parse(None, &h, body)
                .unwrap()
                .str("channel")
                .as_deref(),
            Some("C9")
        );
    }
}
