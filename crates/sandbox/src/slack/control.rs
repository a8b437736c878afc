//! `/_sandbox/slack/...`: act as seeded users, configure event delivery, manage tokens and
//! Socket Mode connections, read what is stored.

// Handlers bail out with a ready `Response`, axum's usual style.
#![allow(clippy::result_large_err)]

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post, put};
use base64::Engine;
use serde_json::{Value, json};

use super::model::{Workspace, parse_ts};
use super::ops::NewMessage;
use super::render::stored_json;
use crate::SharedWorld;

pub(crate) fn routes() -> Router<SharedWorld> {
    Router::new()
        .route("/messages", post(post_message))
        .route(
            "/messages/{channel}/{ts}",
            patch(edit_message).delete(delete_message),
        )
        .route("/reactions", post(add_reaction).delete(remove_reaction))
        .route("/channels/{channel}/messages", get(list_messages))
        .route("/members", post(add_member).delete(remove_member))
        .route("/files", post(share_file))
        .route(
            "/event_subscription",
            put(set_subscription)
                .get(get_subscription)
                .delete(clear_subscription),
        )
        .route("/events", get(events_log).delete(clear_events))
        .route("/tokens/expire", post(expire_token))
        .route("/tokens/revoke", post(revoke_token))
        .route("/socket/disconnect", post(socket_disconnect))
        .route("/modes", get(get_modes).put(set_modes))
}

fn modes_json(m: &super::model::Modes) -> Value {
    json!({
        "shuffle": m.shuffle,
        "id_only_files": m.id_only_files,
        "history_limits": m.history.as_str(),
    })
}

async fn get_modes(State(world): State<SharedWorld>) -> Response {
    reply(StatusCode::OK, modes_json(&world.slack.ws.read().modes))
}

/// `PUT /_sandbox/slack/modes`: `{shuffle?, id_only_files?, history_limits?}`; fields left
/// out keep their value. A bad field changes nothing.
async fn set_modes(State(world): State<SharedWorld>, body: Bytes) -> Response {
    let o = match body_json(&body) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let mut modes = world.slack.ws.read().modes;
    for (k, v) in &o {
        match (k.as_str(), v) {
            ("shuffle", Value::Bool(b)) => modes.shuffle = *b,
            ("id_only_files", Value::Bool(b)) => modes.id_only_files = *b,
            ("history_limits", Value::String(s)) => match super::model::HistoryLimits::parse(s) {
                Some(h) => modes.history = h,
                None => {
                    return bad("`history_limits` is \"internal\" or \"non_marketplace\"");
                }
            },
            ("shuffle" | "id_only_files", _) => return bad(format!("`{k}` must be a boolean")),
            ("history_limits", _) => return bad("`history_limits` must be a string"),
            _ => return bad(format!("unknown mode `{k}`")),
        }
    }
    world.slack.ws.write().modes = modes;
    reply(StatusCode::OK, modes_json(&modes))
}

fn reply(status: StatusCode, v: Value) -> Response {
    (status, axum::Json(v)).into_response()
}

fn bad(msg: impl Into<String>) -> Response {
    reply(StatusCode::BAD_REQUEST, json!({"error": msg.into()}))
}

fn not_found(msg: impl Into<String>) -> Response {
    reply(StatusCode::NOT_FOUND, json!({"error": msg.into()}))
}

/// Maps an operation's Slack error code to a 400.
fn op_error(code: &str) -> Response {
    let message = match code {
        "is_archived" => "the channel is archived",
        "thread_not_found" => "thread_ts does not name a message in this channel",
        "message_not_found" => "no such message",
        "already_reacted" => "the user already reacted with this emoji",
        "no_reaction" => "the user has no such reaction on this message",
        "cant_leave_general" => "nobody can leave the general channel",
        "cant_update_message" => "this message cannot be edited",
        "cant_delete_message" => "this message cannot be deleted",
        "file_not_found" => "the file is unknown or already shared",
        _ => "the operation failed",
    };
    reply(
        StatusCode::BAD_REQUEST,
        json!({"error": code, "message": message}),
    )
}

/// Parses a JSON object body.
fn body_json(body: &[u8]) -> Result<serde_json::Map<String, Value>, Response> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(bad("the body must be a JSON object")),
        Err(e) => Err(bad(format!("invalid JSON body: {e}"))),
    }
}

fn field<'a>(o: &'a serde_json::Map<String, Value>, k: &str) -> Result<&'a str, Response> {
    match o.get(k) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.as_str()),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            Err(bad(format!("missing required field `{k}`")))
        }
        Some(_) => Err(bad(format!("field `{k}` must be a string"))),
    }
}

fn opt_field<'a>(
    o: &'a serde_json::Map<String, Value>,
    k: &str,
) -> Result<Option<&'a str>, Response> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(bad(format!("field `{k}` must be a string"))),
    }
}

fn find_user(ws: &Workspace, key: &str) -> Result<u32, Response> {
    let ix = ws.find_user(key).ok_or_else(|| {
        bad(format!(
            "unknown user `{key}` (give an id, a name or an email)"
        ))
    })?;
    if ws.user(ix).deleted {
        return Err(bad(format!("user `{key}` is deactivated")));
    }
    Ok(ix)
}

fn find_channel(ws: &Workspace, key: &str) -> Result<u32, Response> {
    ws.find_channel(key)
        .ok_or_else(|| bad(format!("unknown channel `{key}` (give an id or a name)")))
}

fn parse_ts_field(s: &str, what: &str) -> Result<u64, Response> {
    parse_ts(s).ok_or_else(|| {
        bad(format!(
            "`{what}` must be a Slack timestamp like 1700000000.000100"
        ))
    })
}

async fn post_message(State(world): State<SharedWorld>, body: Bytes) -> Response {
    let o = match body_json(&body) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let (user, ch, text, thread_ts) = {
        let ws = world.slack.ws.read();
        let user = match field(&o, "user").and_then(|u| find_user(&ws, u)) {
            Ok(u) => u,
            Err(r) => return r,
        };
        let ch = match field(&o, "channel").and_then(|c| find_channel(&ws, c)) {
            Ok(c) => c,
            Err(r) => return r,
        };
        let text = match field(&o, "text") {
            Ok(t) => t.to_owned(),
            Err(r) => return r,
        };
        let thread_ts = match opt_field(&o, "thread_ts") {
            Ok(None) => None,
            Ok(Some(t)) => match parse_ts_field(t, "thread_ts") {
                Ok(t) => Some(t),
                Err(r) => return r,
            },
            Err(r) => return r,
        };
        let c = ws.channel(ch);
        if !c.members.contains(&user) {
            return bad(format!(
                "user `{}` is not a member of #{} (add them with POST /_sandbox/slack/members)",
                ws.user(user).name,
                c.name
            ));
        }
        (user, ch, text, thread_ts)
    };
    let as_bot = world.slack.ws.read().user(user).is_bot();
    match world.slack.post(
        &world.base_url,
        ch,
        NewMessage {
            user,
            text,
            thread_ts,
            as_bot,
            ..NewMessage::default()
        },
    ) {
        Ok(p) => reply(
            StatusCode::OK,
            json!({"channel": p.channel_id, "ts": super::model::fmt_ts(p.ts)}),
        ),
        Err(code) => op_error(code),
    }
}

/// Resolves `{channel}/{ts}` from the path: 404 when either is unknown.
fn path_message(ws: &Workspace, channel: &str, ts: &str) -> Result<(u32, u64), Response> {
    let ch = ws
        .find_channel(channel)
        .ok_or_else(|| not_found(format!("unknown channel `{channel}`")))?;
    let ts = parse_ts_field(ts, "ts")?;
    let c = ws.channel(ch);
    match c.find(ts) {
        Some(i) if !c.messages[i].deleted => Ok((ch, ts)),
        _ => Err(not_found(format!(
            "no message {ts} in #{}",
            c.name,
            ts = super::model::fmt_ts(ts)
        ))),
    }
}

async fn edit_message(
    State(world): State<SharedWorld>,
    Path((channel, ts)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let o = match body_json(&body) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let text = match o.get("text") {
        Some(Value::String(s)) => s.clone(),
        _ => return bad("missing required field `text` (a string)"),
    };
    let (ch, ts, author) = {
        let ws = world.slack.ws.read();
        let (ch, ts) = match path_message(&ws, &channel, &ts) {
            Ok(x) => x,
            Err(r) => return r,
        };
        let c = ws.channel(ch);
        let author = c.messages[c.find(ts).unwrap_or(0)].user;
        if let Ok(Some(u)) = opt_field(&o, "user") {
            match find_user(&ws, u) {
                Ok(ix) if ix == author => {}
                Ok(_) => return bad("only the author can edit a message"),
                Err(r) => return r,
            }
        }
        (ch, ts, author)
    };
    match world.slack.update(
        &world.base_url,
        ch,
        ts,
        author,
        None,
        Some(text),
        None,
        None,
    ) {
        Ok(_) => {
            let id = world.slack.ws.read().channel(ch).id.clone();
            reply(
                StatusCode::OK,
                json!({"channel": id, "ts": super::model::fmt_ts(ts)}),
            )
        }
        Err(code) => op_error(code),
    }
}

async fn delete_message(
    State(world): State<SharedWorld>,
    Path((channel, ts)): Path<(String, String)>,
) -> Response {
    let (ch, ts) = {
        let ws = world.slack.ws.read();
        match path_message(&ws, &channel, &ts) {
            Ok(x) => x,
            Err(r) => return r,
        }
    };
    match world.slack.delete(&world.base_url, ch, ts, None) {
        Ok(()) => {
            let id = world.slack.ws.read().channel(ch).id.clone();
            reply(
                StatusCode::OK,
                json!({"channel": id, "ts": super::model::fmt_ts(ts), "deleted": true}),
            )
        }
        Err(code) => op_error(code),
    }
}

async fn reaction(world: SharedWorld, body: Bytes, add: bool) -> Response {
    let o = match body_json(&body) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let (user, ch, ts, name) = {
        let ws = world.slack.ws.read();
        let user = match field(&o, "user").and_then(|u| find_user(&ws, u)) {
            Ok(u) => u,
            Err(r) => return r,
        };
        let ch = match field(&o, "channel").and_then(|c| find_channel(&ws, c)) {
            Ok(c) => c,
            Err(r) => return r,
        };
        let ts = match field(&o, "ts").and_then(|t| parse_ts_field(t, "ts")) {
            Ok(t) => t,
            Err(r) => return r,
        };
        let name = match field(&o, "name") {
            Ok(n) => n.trim_matches(':').to_owned(),
            Err(r) => return r,
        };
        if !super::web::valid_reaction_name(&name) {
            return bad(format!("`{name}` is not a valid emoji name"));
        }
        (user, ch, ts, name)
    };
    match world.slack.react(ch, ts, user, &name, add) {
        Ok(()) => reply(StatusCode::OK, json!({"ok": true})),
        Err(code) => op_error(code),
    }
}

async fn add_reaction(State(world): State<SharedWorld>, body: Bytes) -> Response {
    reaction(world, body, true).await
}

async fn remove_reaction(State(world): State<SharedWorld>, body: Bytes) -> Response {
    reaction(world, body, false).await
}

async fn list_messages(State(world): State<SharedWorld>, Path(channel): Path<String>) -> Response {
    let ws = world.slack.ws.read();
    let Some(ch) = ws.find_channel(&channel) else {
        return not_found(format!("unknown channel `{channel}`"));
    };
    let c = ws.channel(ch);
    let messages: Vec<Value> = c
        .messages
        .iter()
        .map(|m| stored_json(&ws, &world.base_url, c, m))
        .collect();
    reply(
        StatusCode::OK,
        json!({"channel": c.id, "name": c.name, "messages": messages}),
    )
}

async fn membership(world: SharedWorld, body: Bytes, join: bool) -> Response {
    let o = match body_json(&body) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let (user, ch) = {
        let ws = world.slack.ws.read();
        let user = match field(&o, "user").and_then(|u| find_user(&ws, u)) {
            Ok(u) => u,
            Err(r) => return r,
        };
        let ch = match field(&o, "channel").and_then(|c| find_channel(&ws, c)) {
            Ok(c) => c,
            Err(r) => return r,
        };
        (user, ch)
    };
    let result = if join {
        world.slack.join(&world.base_url, ch, user)
    } else {
        world.slack.leave(&world.base_url, ch, user)
    };
    match result {
        Ok(changed) => reply(StatusCode::OK, json!({"ok": true, "changed": changed})),
        Err(code) => op_error(code),
    }
}

async fn add_member(State(world): State<SharedWorld>, body: Bytes) -> Response {
    membership(world, body, true).await
}

async fn remove_member(State(world): State<SharedWorld>, body: Bytes) -> Response {
    membership(world, body, false).await
}

async fn share_file(State(world): State<SharedWorld>, body: Bytes) -> Response {
    let o = match body_json(&body) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let (user, ch) = {
        let ws = world.slack.ws.read();
        let user = match field(&o, "user").and_then(|u| find_user(&ws, u)) {
            Ok(u) => u,
            Err(r) => return r,
        };
        let ch = match field(&o, "channel").and_then(|c| find_channel(&ws, c)) {
            Ok(c) => c,
            Err(r) => return r,
        };
        if !ws.channel(ch).members.contains(&user) {
            return bad("the user is not a member of the channel");
        }
        (user, ch)
    };
    let filename = match field(&o, "filename") {
        Ok(f) => f.to_owned(),
        Err(r) => return r,
    };
    let bytes = match (o.get("content"), o.get("content_base64")) {
        (Some(Value::String(s)), None) => s.as_bytes().to_vec(),
        (None, Some(Value::String(b))) => {
            match base64::engine::general_purpose::STANDARD.decode(b.trim()) {
                Ok(v) => v,
                Err(_) => return bad("`content_base64` is not valid base64"),
            }
        }
        _ => return bad("give exactly one of `content` (text) or `content_base64`"),
    };
    if bytes.len() > super::files::MAX_UPLOAD {
        return bad("file too large");
    }
    let thread_ts = match opt_field(&o, "thread_ts") {
        Ok(None) => None,
        Ok(Some(t)) => match parse_ts_field(t, "thread_ts") {
            Ok(t) => Some(t),
            Err(r) => return r,
        },
        Err(r) => return r,
    };
    let title = match opt_field(&o, "title") {
        Ok(t) => t.map(str::to_owned),
        Err(r) => return r,
    };
    let text = match opt_field(&o, "initial_comment") {
        Ok(t) => t.unwrap_or("").to_owned(),
        Err(r) => return r,
    };
    let (file_id, upload_id) =
        super::files::new_pending(&world, user, &filename, bytes.len() as u64);
    {
        let mut ws = world.slack.ws.write();
        ws.uploads.remove(&upload_id);
        if let Some(f) = ws.files.get_mut(&file_id) {
            f.bytes = Some(std::sync::Arc::new(bytes));
        }
    }
    let as_bot = world.slack.ws.read().user(user).is_bot();
    match super::files::share(
        &world,
        user,
        as_bot,
        &[(file_id.clone(), title)],
        Some(ch),
        thread_ts,
        text,
    ) {
        Ok(Some((channel, ts))) => reply(
            StatusCode::OK,
            json!({"channel": channel, "ts": super::model::fmt_ts(ts), "file_id": file_id}),
        ),
        Ok(None) => reply(StatusCode::OK, json!({"file_id": file_id})),
        Err(code) => {
            world.slack.ws.write().files.remove(&file_id);
            op_error(code)
        }
    }
}

async fn set_subscription(State(world): State<SharedWorld>, body: Bytes) -> Response {
    let o = match body_json(&body) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let url = match field(&o, "request_url") {
        Ok(u) => u.to_owned(),
        Err(r) => return r,
    };
    match super::events::verify_url(&world, &url).await {
        Ok(()) => {
            world.slack.events.set_request_url(Some(url.clone()));
            reply(
                StatusCode::OK,
                json!({"ok": true, "request_url": url, "verified": true}),
            )
        }
        Err(e) => bad(e),
    }
}

async fn get_subscription(State(world): State<SharedWorld>) -> Response {
    reply(
        StatusCode::OK,
        json!({
            "request_url": world.slack.events.request_url(),
            "socket_mode_connections": world.slack.sockets.count(),
        }),
    )
}

async fn clear_subscription(State(world): State<SharedWorld>) -> Response {
    world.slack.events.set_request_url(None);
    reply(StatusCode::OK, json!({"ok": true, "request_url": null}))
}

async fn events_log(State(world): State<SharedWorld>) -> Response {
    let mut v = world.slack.events.log_json();
    v["summary"] = world.slack.events.log_summary();
    v["request_url"] = json!(world.slack.events.request_url());
    v["socket_mode_connections"] = json!(world.slack.sockets.count());
    reply(StatusCode::OK, v)
}

async fn clear_events(State(world): State<SharedWorld>) -> Response {
    world.slack.events.clear_log();
    reply(StatusCode::OK, json!({"ok": true}))
}

async fn token_op(world: SharedWorld, body: Bytes, revoke: bool) -> Response {
    let o = match body_json(&body) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let token = match field(&o, "token") {
        Ok(t) => t.trim().to_owned(),
        Err(r) => return r,
    };
    let mut auth = world.slack.auth.lock();
    let done = if revoke {
        auth.revoke(&token)
    } else {
        if auth.refresh.contains_key(&token) {
            return bad("refresh tokens do not expire; revoke it instead");
        }
        auth.expire(&token)
    };
    if done {
        reply(StatusCode::OK, json!({"ok": true}))
    } else {
        bad("unknown token")
    }
}

async fn expire_token(State(world): State<SharedWorld>, body: Bytes) -> Response {
    token_op(world, body, false).await
}

async fn revoke_token(State(world): State<SharedWorld>, body: Bytes) -> Response {
    token_op(world, body, true).await
}

async fn socket_disconnect(State(world): State<SharedWorld>, body: Bytes) -> Response {
    let o = match body_json(&body) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let reason = match opt_field(&o, "reason") {
        Ok(r) => r.unwrap_or("refresh_requested").to_owned(),
        Err(r) => return r,
    };
    if !matches!(
        reason.as_str(),
        "warning" | "refresh_requested" | "link_disabled"
    ) {
        return bad("reason must be one of warning, refresh_requested, link_disabled");
    }
    let n = world.slack.sockets.disconnect_all(&reason);
    reply(StatusCode::OK, json!({"ok": true, "connections": n}))
}
