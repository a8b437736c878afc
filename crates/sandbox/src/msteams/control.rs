//! The Microsoft Teams control API (`/_sandbox/msteams/...`): act as seeded users, change
//! memberships, expire/revoke tokens, inspect subscriptions and notification deliveries.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::common::GraphError;
use super::messages::{
    ItemBody, MessageInput, create_message, edit_message, render, set_deleted, set_reaction,
};
use super::model::{Perm, Scopes};
use super::state::Dir;
use super::subscriptions::{
    Change, fire_lifecycle, notify, on_member_removed, on_user_revoked, subs_json,
};
use crate::SharedWorld;

pub(crate) fn routes() -> Router<SharedWorld> {
    Router::new()
        .route("/messages", post(post_message))
        .route(
            "/messages/{team}/{channel}/{id}",
            patch(edit).delete(delete),
        )
        .route(
            "/teams/{team}/channels/{channel}/messages",
            get(list_messages),
        )
        .route("/reactions", post(react))
        .route("/teams/{team}/members/remove", post(remove_member))
        .route("/teams/{team}/members/add", post(add_member))
        .route("/tokens", post(mint_token))
        .route("/tokens/expire", post(expire_token))
        .route("/tokens/revoke", post(revoke_tokens))
        .route("/subscriptions", get(list_subscriptions))
        .route("/delta/expire", post(expire_delta))
        .route("/daily-messages", post(set_daily_messages))
        .route("/subscriptions/{id}/lifecycle", post(lifecycle))
        .route(
            "/notifications",
            get(notifications).delete(clear_notifications),
        )
}

/// A control API error: `{"error": "…"}` with a 4xx status.
#[derive(Debug)]
struct CtlError(StatusCode, String);

impl IntoResponse for CtlError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

fn err(status: StatusCode, msg: impl Into<String>) -> CtlError {
    CtlError(status, msg.into())
}

fn from_graph(e: GraphError) -> CtlError {
    // 404 and 413 keep their meaning; every other Graph refusal is the caller's bad request
    let status = match e.status {
        StatusCode::NOT_FOUND | StatusCode::PAYLOAD_TOO_LARGE => e.status,
        _ => StatusCode::BAD_REQUEST,
    };
    err(status, format!("{}: {}", e.code, e.message))
}

type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

/// The JSON body, or 400 for a malformed one and 413 for one over the request body limit.
fn body<T>(b: JsonBody<T>) -> Result<T, CtlError> {
    b.map(|Json(v)| v).map_err(|e| {
        let status = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::BAD_REQUEST
        };
        err(status, e.body_text())
    })
}

fn user_of(dir: &Dir, key: &str) -> Result<u32, CtlError> {
    let key = key.trim();
    dir.find_user(key)
        .or_else(|| {
            // "alice" → alice@contoso.onmicrosoft.com
            (!key.contains('@') && !key.is_empty())
                .then(|| dir.find_user(&format!("{key}@{}", dir.domain)))
                .flatten()
        })
        .ok_or_else(|| {
            err(
                StatusCode::BAD_REQUEST,
                format!("unknown user {key:?} (use an id, UPN, mail or UPN alias)"),
            )
        })
}

fn team_of(dir: &Dir, key: &str, status: StatusCode) -> Result<u32, CtlError> {
    dir.find_team(key.trim(), true).ok_or_else(|| {
        err(
            status,
            format!("unknown team {key:?} (use an id or display name)"),
        )
    })
}

fn channel_of(dir: &Dir, team: u32, key: &str, status: StatusCode) -> Result<u32, CtlError> {
    dir.find_channel(team, key.trim(), true).ok_or_else(|| {
        err(
            status,
            format!(
                "unknown channel {key:?} in team {} (use an id or display name)",
                dir.teams[team as usize].display_name
            ),
        )
    })
}

/// The user must be an enabled member of the team and (private/shared) channel.
fn check_author(dir: &Dir, user: u32, ti: u32, ci: u32) -> Result<(), CtlError> {
    let u = &dir.users[user as usize];
    if !u.account_enabled {
        return Err(err(
            StatusCode::BAD_REQUEST,
            format!("user {} is disabled", u.upn),
        ));
    }
    let t = &dir.teams[ti as usize];
    if t.member(user).is_none() {
        return Err(err(
            StatusCode::BAD_REQUEST,
            format!("user {} is not a member of team {}", u.upn, t.display_name),
        ));
    }
    let c = &t.channels[ci as usize];
    if !c.has_member(user) {
        return Err(err(
            StatusCode::BAD_REQUEST,
            format!(
                "user {} is not a member of the {} channel {}",
                u.upn,
                c.membership_type.as_str(),
                c.display_name
            ),
        ));
    }
    Ok(())
}

/// Mentions: Graph-shaped entries, or `{id, user, mentionText?}` shorthand.
fn normalize_mentions(
    dir: &Dir,
    mentions: Option<Vec<Value>>,
) -> Result<Option<Vec<Value>>, CtlError> {
    let Some(list) = mentions else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(list.len());
    for m in list {
        if m.get("mentioned").is_some() {
            out.push(m);
            continue;
        }
        let key = m.get("user").and_then(Value::as_str).ok_or_else(|| {
            err(
                StatusCode::BAD_REQUEST,
                "each mention needs `user` (id, UPN or mail) or a Graph `mentioned` object",
            )
        })?;
        let ux = user_of(dir, key)?;
        let u = &dir.users[ux as usize];
        let text = m
            .get("mentionText")
            .and_then(Value::as_str)
            .unwrap_or(&u.display_name)
            .to_owned();
        out.push(json!({
            "id": m.get("id").cloned().unwrap_or(Value::Null),
            "mentionText": text,
            "mentioned": {"user": {"id": u.id, "displayName": u.display_name, "userIdentityType": "aadUser"}},
        }));
    }
    Ok(Some(out))
}

fn message_id(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => s.trim().parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

#[derive(Debug, Deserialize)]
struct PostMsg {
    user: String,
    team: String,
    channel: String,
    html: String,
    #[serde(default)]
    reply_to: Option<Value>,
    #[serde(default)]
    mentions: Option<Vec<Value>>,
    #[serde(default)]
    subject: Option<String>,
}

/// `POST /messages` `{user, team, channel, html, reply_to?, mentions?, subject?}` → `{id}`.
async fn post_message(State(world): State<SharedWorld>, b: JsonBody<PostMsg>) -> Response {
    let req = match body(b) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let result = (|| {
        let mut dir = world.msteams.dir.write();
        let user = user_of(&dir, &req.user)?;
        let ti = team_of(&dir, &req.team, StatusCode::BAD_REQUEST)?;
        let ci = channel_of(&dir, ti, &req.channel, StatusCode::BAD_REQUEST)?;
        check_author(&dir, user, ti, ci)?;
        let reply_to = match &req.reply_to {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                message_id(v)
                    .ok_or_else(|| err(StatusCode::BAD_REQUEST, "reply_to must be a message id"))?,
            ),
        };
        let input = MessageInput {
            body: Some(ItemBody {
                content_type: Some("html".into()),
                content: Some(req.html.clone()),
            }),
            subject: req.subject.clone(),
            importance: None,
            mentions: normalize_mentions(&dir, req.mentions.clone())?,
            attachments: None,
        };
        let id = create_message(&mut dir, ti, ci, user, &input, reply_to).map_err(from_graph)?;
        Ok::<_, CtlError>((
            id,
            reply_to,
            dir.teams[ti as usize].id.clone(),
            dir.channel(ti, ci).id.clone(),
        ))
    })();
    match result {
        Err(e) => e.into_response(),
        Ok((id, reply_to, team_id, channel_id)) => {
            notify(&world, &team_id, &channel_id, id, reply_to, Change::Created);
            Json(json!({
                "id": id.to_string(),
                "replyToId": reply_to.map(|r| r.to_string()),
                "team": team_id,
                "channel": channel_id,
            }))
            .into_response()
        }
    }
}

#[derive(Debug, Deserialize)]
struct EditMsg {
    html: String,
    #[serde(default)]
    mentions: Option<Vec<Value>>,
}

fn locate(
    dir: &Dir,
    team: &str,
    channel: &str,
    id: &str,
) -> Result<(u32, u32, u64, Option<u64>), CtlError> {
    let ti = team_of(dir, team, StatusCode::NOT_FOUND)?;
    let ci = channel_of(dir, ti, channel, StatusCode::NOT_FOUND)?;
    let mid: u64 = id
        .trim()
        .parse()
        .map_err(|_| err(StatusCode::NOT_FOUND, format!("unknown message {id:?}")))?;
    let m = dir
        .msg(ti, ci, mid)
        .ok_or_else(|| err(StatusCode::NOT_FOUND, format!("unknown message {id:?}")))?;
    Ok((ti, ci, mid, m.reply_to))
}

/// `PATCH /messages/{team}/{channel}/{id}` `{html, mentions?}`: the sender edits.
async fn edit(
    State(world): State<SharedWorld>,
    Path((team, channel, id)): Path<(String, String, String)>,
    b: JsonBody<EditMsg>,
) -> Response {
    let req = match body(b) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let result = (|| {
        let mut dir = world.msteams.dir.write();
        let (ti, ci, mid, reply_to) = locate(&dir, &team, &channel, &id)?;
        let input = MessageInput {
            body: Some(ItemBody {
                content_type: Some("html".into()),
                content: Some(req.html.clone()),
            }),
            subject: None,
            importance: None,
            mentions: normalize_mentions(&dir, req.mentions.clone())?,
            attachments: None,
        };
        edit_message(&mut dir, ti, ci, mid, None, &input).map_err(from_graph)?;
        Ok::<_, CtlError>((
            mid,
            reply_to,
            dir.teams[ti as usize].id.clone(),
            dir.channel(ti, ci).id.clone(),
        ))
    })();
    match result {
        Err(e) => e.into_response(),
        Ok((mid, reply_to, t, c)) => {
            notify(&world, &t, &c, mid, reply_to, Change::Updated);
            Json(json!({"id": mid.to_string(), "edited": true})).into_response()
        }
    }
}

/// `DELETE /messages/{team}/{channel}/{id}`: the sender soft-deletes.
async fn delete(
    State(world): State<SharedWorld>,
    Path((team, channel, id)): Path<(String, String, String)>,
) -> Response {
    let result = (|| {
        let mut dir = world.msteams.dir.write();
        let (ti, ci, mid, reply_to) = locate(&dir, &team, &channel, &id)?;
        let changed = set_deleted(&mut dir, ti, ci, mid, None, true).map_err(from_graph)?;
        Ok::<_, CtlError>((
            mid,
            reply_to,
            changed,
            dir.teams[ti as usize].id.clone(),
            dir.channel(ti, ci).id.clone(),
        ))
    })();
    match result {
        Err(e) => e.into_response(),
        Ok((mid, reply_to, changed, t, c)) => {
            if changed {
                notify(&world, &t, &c, mid, reply_to, Change::Deleted);
            }
            Json(json!({"id": mid.to_string(), "deleted": true})).into_response()
        }
    }
}

/// `GET /teams/{team}/channels/{channel}/messages`: every message as stored (roots and
/// replies, in creation order), chatMessage shape plus `deleted`.
async fn list_messages(
    State(world): State<SharedWorld>,
    Path((team, channel)): Path<(String, String)>,
) -> Response {
    let dir = world.msteams.dir.read();
    let ti = match team_of(&dir, &team, StatusCode::NOT_FOUND) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let ci = match channel_of(&dir, ti, &channel, StatusCode::NOT_FOUND) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let ch = dir.channel(ti, ci);
    let mut value = Vec::new();
    if let Some(ms) = &ch.msgs {
        let mut ids: Vec<u64> = ms.map.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            if let Some(m) = ms.map.get(&id) {
                value.push(render(&dir, ti, ci, m, false, true));
            }
        }
    }
    Json(json!({
        "team": dir.teams[ti as usize].id,
        "channel": ch.id,
        "value": value,
    }))
    .into_response()
}

#[derive(Debug, Deserialize)]
struct ReactReq {
    user: String,
    team: String,
    channel: String,
    message: Value,
    reaction: String,
    #[serde(default)]
    remove: bool,
}

/// `POST /reactions` `{user, team, channel, message, reaction, remove?}`.
async fn react(State(world): State<SharedWorld>, b: JsonBody<ReactReq>) -> Response {
    let req = match body(b) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let result = (|| {
        let mut dir = world.msteams.dir.write();
        let user = user_of(&dir, &req.user)?;
        let ti = team_of(&dir, &req.team, StatusCode::BAD_REQUEST)?;
        let ci = channel_of(&dir, ti, &req.channel, StatusCode::BAD_REQUEST)?;
        check_author(&dir, user, ti, ci)?;
        let mid = message_id(&req.message)
            .filter(|m| dir.msg(ti, ci, *m).is_some())
            .ok_or_else(|| {
                err(
                    StatusCode::BAD_REQUEST,
                    format!("unknown message {}", req.message),
                )
            })?;
        let reply_to = dir.msg(ti, ci, mid).and_then(|m| m.reply_to);
        let changed = set_reaction(&mut dir, ti, ci, mid, user, &req.reaction, !req.remove)
            .map_err(from_graph)?;
        Ok::<_, CtlError>((
            mid,
            reply_to,
            changed,
            dir.teams[ti as usize].id.clone(),
            dir.channel(ti, ci).id.clone(),
        ))
    })();
    match result {
        Err(e) => e.into_response(),
        Ok((mid, reply_to, changed, t, c)) => {
            if changed {
                notify(&world, &t, &c, mid, reply_to, Change::Updated);
            }
            Json(json!({"ok": true, "changed": changed})).into_response()
        }
    }
}

#[derive(Debug, Deserialize)]
struct MemberReq {
    user: String,
    #[serde(default)]
    owner: bool,
}

/// `POST /teams/{team}/members/remove` `{user}`.
async fn remove_member(
    State(world): State<SharedWorld>,
    Path(team): Path<String>,
    b: JsonBody<MemberReq>,
) -> Response {
    let req = match body(b) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let result = (|| {
        let mut dir = world.msteams.dir.write();
        let ti = team_of(&dir, &team, StatusCode::NOT_FOUND)?;
        let user = user_of(&dir, &req.user)?;
        let removed = dir.remove_member(ti, user);
        Ok::<_, CtlError>((removed, dir.teams[ti as usize].id.clone(), user))
    })();
    match result {
        Err(e) => e.into_response(),
        Ok((removed, team_id, user)) => {
            if removed {
                on_member_removed(&world, &team_id, user);
            }
            Json(json!({"removed": removed})).into_response()
        }
    }
}

/// `POST /teams/{team}/members/add` `{user, owner?}`.
async fn add_member(
    State(world): State<SharedWorld>,
    Path(team): Path<String>,
    b: JsonBody<MemberReq>,
) -> Response {
    let req = match body(b) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let mut dir = world.msteams.dir.write();
    let ti = match team_of(&dir, &team, StatusCode::NOT_FOUND) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let user = match user_of(&dir, &req.user) {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    let added = dir.add_member(ti, user, req.owner);
    Json(json!({"added": added})).into_response()
}

#[derive(Debug, Deserialize)]
struct MintReq {
    user: String,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// `POST /tokens` `{user, scope?, expires_in?}`: a delegated access token for any seeded user
/// without the consent page (scope: space-separated permission names; default: every
/// permission the Teams connection requests).
async fn mint_token(State(world): State<SharedWorld>, b: JsonBody<MintReq>) -> Response {
    let req = match body(b) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let (user, client_id) = {
        let dir = world.msteams.dir.read();
        match user_of(&dir, &req.user) {
            Ok(u) => (u, dir.app.client_id.clone()),
            Err(e) => return e.into_response(),
        }
    };
    let perms = match &req.scope {
        None => super::connection_scopes().perms,
        Some(s) => {
            let mut bits = 0u32;
            for name in s.split_whitespace() {
                let bare = name
                    .strip_prefix("https://graph.microsoft.com/")
                    .unwrap_or(name);
                if matches!(bare, "openid" | "profile" | "email" | "offline_access") {
                    continue;
                }
                match Perm::parse(bare) {
                    Some(p) => bits |= p.bit(),
                    None => {
                        return err(
                            StatusCode::BAD_REQUEST,
                            format!("unknown permission {name:?}"),
                        )
                        .into_response();
                    }
                }
            }
            bits
        }
    };
    let ttl = req
        .expires_in
        .unwrap_or(super::identity::ACCESS_TTL)
        .clamp(1, 10 * 365 * 86_400);
    let token = world
        .msteams
        .issue_access(Some(user), &client_id, perms, ttl);
    Json(json!({
        "token_type": "Bearer",
        "access_token": token,
        "expires_in": ttl,
        "scope": Scopes { perms, oidc: 0 }.to_scope_string(),
    }))
    .into_response()
}

#[derive(Debug, Deserialize)]
struct ExpireReq {
    token: String,
}

/// `POST /tokens/expire` `{token}`: the access token is expired from now on.
async fn expire_token(State(world): State<SharedWorld>, b: JsonBody<ExpireReq>) -> Response {
    let req = match body(b) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    if world.msteams.expire_token(req.token.trim()) {
        Json(json!({"expired": true})).into_response()
    } else {
        err(StatusCode::NOT_FOUND, "unknown access token").into_response()
    }
}

#[derive(Debug, Deserialize)]
struct RevokeReq {
    user: String,
}

/// `POST /tokens/revoke` `{user}`: revokes the user's refresh tokens (next refresh:
/// `invalid_grant`) and sends `reauthorizationRequired` for their subscriptions.
async fn revoke_tokens(State(world): State<SharedWorld>, b: JsonBody<RevokeReq>) -> Response {
    let req = match body(b) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let user = {
        let dir = world.msteams.dir.read();
        match user_of(&dir, &req.user) {
            Ok(u) => u,
            Err(e) => return e.into_response(),
        }
    };
    let n = world.msteams.revoke_user(user);
    on_user_revoked(&world, user);
    Json(json!({"revoked": n})).into_response()
}

#[derive(Debug, Deserialize)]
struct ChannelReq {
    channel: String,
}

/// `POST /delta/expire` `{channel}`: every delta link of the channel issued so far is
/// expired; using one answers 410 `resyncRequired`.
async fn expire_delta(State(world): State<SharedWorld>, b: JsonBody<ChannelReq>) -> Response {
    let req = match body(b) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let channel = req.channel.trim().to_owned();
    let known = {
        let dir = world.msteams.dir.read();
        dir.teams
            .iter()
            .any(|t| t.channels.iter().any(|c| c.id == channel))
    };
    if !known {
        return err(StatusCode::NOT_FOUND, "unknown channel").into_response();
    }
    // links issued in this very millisecond are expired too
    let now = crate::util::now_unix_ms() as u64 + 1;
    world.msteams.delta_expired.lock().insert(channel, now);
    Json(json!({"expired": true})).into_response()
}

#[derive(Debug, Deserialize)]
struct DailyReq {
    channel: String,
    used: u32,
    #[serde(default)]
    client_id: Option<String>,
}

/// `POST /daily-messages` `{channel, used, client_id?}`: sets how many messages the app
/// (the seeded app unless `client_id` is given) has posted into the channel today, so the
/// 3,000-a-day limit can be reached without posting 3,000 messages.
async fn set_daily_messages(State(world): State<SharedWorld>, b: JsonBody<DailyReq>) -> Response {
    let req = match body(b) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let client_id = match req.client_id {
        Some(c) => c,
        None => world.msteams.dir.read().app.client_id.clone(),
    };
    let used = req.used.min(super::common::CHANNEL_DAILY_MESSAGES);
    world.msteams.daily.lock().insert(
        (client_id, req.channel.trim().to_owned()),
        super::common::DayCount {
            started_ms: crate::util::now_unix_ms() as u64,
            used,
        },
    );
    Json(json!({"used": used, "limit": super::common::CHANNEL_DAILY_MESSAGES})).into_response()
}

async fn list_subscriptions(State(world): State<SharedWorld>) -> Response {
    Json(subs_json(&world)).into_response()
}

#[derive(Debug, Deserialize)]
struct LifecycleReq {
    event: String,
}

/// `POST /subscriptions/{id}/lifecycle` `{event}`.
async fn lifecycle(
    State(world): State<SharedWorld>,
    Path(id): Path<String>,
    b: JsonBody<LifecycleReq>,
) -> Response {
    let req = match body(b) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    match fire_lifecycle(&world, &id, &req.event) {
        Ok(()) => (StatusCode::ACCEPTED, Json(json!({"queued": true}))).into_response(),
        Err((status, msg)) => err(status, msg).into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct NotifQuery {
    #[serde(default)]
    subscription: Option<String>,
}

/// `GET /notifications[?subscription=ID]`: the delivery log (validations, notifications,
/// lifecycle events), oldest first.
async fn notifications(State(world): State<SharedWorld>, Query(q): Query<NotifQuery>) -> Response {
    Json(world.msteams.log.lock().to_json(q.subscription.as_deref())).into_response()
}

async fn clear_notifications(State(world): State<SharedWorld>) -> StatusCode {
    world.msteams.log.lock().clear();
    StatusCode::NO_CONTENT
}
