//! Channel messages: post, reply, list, get, edit, soft delete, reactions, delta; and the
//! chatMessage JSON shape.

use std::collections::BTreeSet;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::common::{
    Caller, GResult, GraphError, Limit, Query, authenticate, decode_token, encode_token,
    graph_link, iso_ms, ok_json, parse_body, parse_iso, take_daily_message, throttle,
};
use super::model::{ChannelMsgs, Msg, Perm, Reaction};
use super::state::Dir;
use super::subscriptions::{Change, notify};
use crate::SharedWorld;

/// Largest accepted message content (UTF-8 bytes): Teams' ~28 KB.
pub(crate) const MAX_CONTENT_BYTES: usize = 28 * 1024;
/// Page size bounds of message listings.
const MSG_TOP_DEFAULT: usize = 20;
const MSG_TOP_MAX: usize = 50;

const READ_PERMS: &[Perm] = &[
    Perm::CHANNELMESSAGE_READ_ALL,
    Perm::GROUP_READ_ALL,
    Perm::GROUP_READWRITE_ALL,
];
const SEND_PERMS: &[Perm] = &[Perm::CHANNELMESSAGE_SEND, Perm::GROUP_READWRITE_ALL];
const WRITE_PERMS: &[Perm] = &[Perm::CHANNELMESSAGE_READWRITE, Perm::GROUP_READWRITE_ALL];

// ---------------------------------------------------------------------------------------
// Lookup and access
// ---------------------------------------------------------------------------------------

/// Resolves a team and one of its channels; 404 `NotFound` otherwise.
pub(crate) fn resolve(dir: &Dir, team: &str, channel: &str) -> Result<(u32, u32), GraphError> {
    let ti = dir.find_team(team, false).ok_or_else(|| {
        GraphError::not_found("NotFound", format!("No team found with Group Id {team}"))
    })?;
    let ci = dir.find_channel(ti, channel, false).ok_or_else(|| {
        GraphError::not_found(
            "NotFound",
            format!("Channel {channel} not found in team {team}."),
        )
    })?;
    Ok((ti, ci))
}

/// Message access: app-only tokens read everywhere; a user must be a member of the team (and
/// of the channel when private/shared). Teams admins get no bypass here.
pub(crate) fn check_msg_access(
    dir: &Dir,
    caller: &Caller,
    ti: u32,
    ci: u32,
) -> Result<(), GraphError> {
    let Some(user) = caller.user else {
        return Ok(());
    };
    let team = &dir.teams[ti as usize];
    if team.member(user).is_none() {
        return Err(GraphError::forbidden(format!(
            "Forbidden: the caller is not a member of team {}.",
            team.id
        )));
    }
    let ch = &team.channels[ci as usize];
    if !ch.has_member(user) {
        return Err(GraphError::forbidden(format!(
            "Forbidden: the caller is not a member of the {} channel {}.",
            ch.membership_type.as_str(),
            ch.id
        )));
    }
    Ok(())
}

fn parse_msg_id(s: &str) -> Result<u64, GraphError> {
    s.parse::<u64>()
        .map_err(|_| GraphError::not_found("NotFound", format!("Message {s} not found.")))
}

/// A root message of the channel.
fn find_root(dir: &Dir, ti: u32, ci: u32, id: &str) -> Result<u64, GraphError> {
    let mid = parse_msg_id(id)?;
    match dir.msg(ti, ci, mid) {
        Some(m) if m.reply_to.is_none() => Ok(mid),
        _ => Err(GraphError::not_found(
            "NotFound",
            format!("Message {id} not found."),
        )),
    }
}

/// A reply of root `root`.
fn find_reply(dir: &Dir, ti: u32, ci: u32, root: u64, id: &str) -> Result<u64, GraphError> {
    let rid = parse_msg_id(id)?;
    match dir.msg(ti, ci, rid) {
        Some(m) if m.reply_to == Some(root) => Ok(rid),
        _ => Err(GraphError::not_found(
            "NotFound",
            format!("Reply {id} not found."),
        )),
    }
}

// ---------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------

fn user_identity(dir: &Dir, user: u32, with_name: bool) -> Value {
    let u = &dir.users[user as usize];
    json!({
        "@odata.type": "#microsoft.graph.teamworkUserIdentity",
        "id": u.id,
        "displayName": if with_name { Value::String(u.display_name.clone()) } else { Value::Null },
        "userIdentityType": "aadUser",
        "tenantId": dir.tenant_id,
    })
}

fn legacy_reaction_name(r: &str) -> Value {
    match r {
        "like" => "Like".into(),
        "heart" => "Heart".into(),
        "laugh" => "Laugh".into(),
        "surprised" => "Surprised".into(),
        "sad" => "Sad".into(),
        "angry" => "Angry".into(),
        _ => Value::Null,
    }
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The chatMessage JSON of `m`. `raw`: the control API's view (deleted content kept, plus
/// `deleted`).
pub(crate) fn render(
    dir: &Dir,
    ti: u32,
    ci: u32,
    m: &Msg,
    expand_replies: bool,
    raw: bool,
) -> Value {
    let team = &dir.teams[ti as usize];
    let ch = &team.channels[ci as usize];
    let root = m.reply_to.unwrap_or(m.id);
    let deleted = m.deleted_ms.is_some();
    let hide = deleted && !raw;
    let reactions: Vec<Value> = if hide {
        Vec::new()
    } else {
        m.reactions
            .iter()
            .map(|r| {
                json!({
                    "reactionType": r.reaction_type,
                    "displayName": legacy_reaction_name(&r.reaction_type),
                    "reactionContentUrl": null,
                    "createdDateTime": iso_ms(r.created_ms),
                    "user": {
                        "application": null,
                        "device": null,
                        "user": user_identity(dir, r.user, false),
                    },
                })
            })
            .collect()
    };
    let mut v = json!({
        "id": m.id.to_string(),
        "replyToId": m.reply_to.map(|r| r.to_string()),
        "etag": m.modified_ms.to_string(),
        "messageType": "message",
        "createdDateTime": iso_ms(m.created_ms),
        "lastModifiedDateTime": iso_ms(m.modified_ms),
        "lastEditedDateTime": m.edited_ms.map(iso_ms),
        "deletedDateTime": m.deleted_ms.map(iso_ms),
        "subject": m.subject,
        "summary": null,
        "chatId": null,
        "importance": m.importance,
        "locale": "en-us",
        "webUrl": format!(
            "https://teams.microsoft.com/l/message/{}/{}?groupId={}&tenantId={}&createdTime={}&parentMessageId={}",
            enc(&ch.id), m.id, team.id, dir.tenant_id, m.created_ms, root
        ),
        "policyViolation": null,
        "eventDetail": null,
        "from": {
            "application": null,
            "device": null,
            "user": user_identity(dir, m.from, true),
        },
        "body": {
            "contentType": if hide { "text" } else { m.content_type },
            "content": if hide { "" } else { m.content.as_str() },
        },
        "channelIdentity": { "teamId": team.id, "channelId": ch.id },
        "attachments": if hide { Vec::new() } else { m.attachments.clone() },
        "mentions": if hide { Vec::new() } else { m.mentions.clone() },
        "reactions": reactions,
        "messageHistory": [],
    });
    if raw {
        v["deleted"] = Value::Bool(deleted);
    }
    if expand_replies && m.reply_to.is_none() {
        let replies: Vec<Value> = ch
            .msgs
            .as_ref()
            .map(|ms| {
                m.replies
                    .iter()
                    .filter_map(|r| ms.map.get(r))
                    .map(|r| render(dir, ti, ci, r, false, raw))
                    .collect()
            })
            .unwrap_or_default();
        v["replies@odata.context"] = Value::String(format!(
            "https://graph.microsoft.com/v1.0/$metadata#teams('{}')/channels('{}')/messages('{}')/replies",
            team.id, ch.id, m.id
        ));
        v["replies"] = Value::Array(replies);
    }
    v
}

// ---------------------------------------------------------------------------------------
// Validation of message content
// ---------------------------------------------------------------------------------------

/// The `id` attributes of every `<tag …>` in `content` (tag = `at` or `attachment`).
fn tag_ids(content: &str, tag: &str) -> Result<Vec<String>, GraphError> {
    let lower = content.to_ascii_lowercase();
    let open = format!("<{tag}");
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(found) = lower[pos..].find(&open) {
        let start = pos + found;
        let after = start + open.len();
        pos = after;
        // must be followed by whitespace or '>' (so `<attachment` is not an `<at`)
        match lower.as_bytes().get(after) {
            Some(b) if b.is_ascii_whitespace() => {}
            Some(b'>') => {
                return Err(GraphError::bad_request(format!(
                    "A <{tag}> tag in the message body has no id attribute."
                )));
            }
            _ => continue,
        }
        let end = lower[after..].find('>').map(|e| after + e).ok_or_else(|| {
            GraphError::bad_request(format!("Unterminated <{tag}> tag in the message body."))
        })?;
        let attrs = &content[after..end];
        let attrs_lower = &lower[after..end];
        let Some(idpos) = find_attr(attrs_lower, "id") else {
            return Err(GraphError::bad_request(format!(
                "A <{tag}> tag in the message body has no id attribute."
            )));
        };
        let rest = &attrs[idpos..];
        let value = match rest.chars().next() {
            Some(q @ ('"' | '\'')) => {
                let inner = &rest[1..];
                let close = inner.find(q).ok_or_else(|| {
                    GraphError::bad_request(format!("Malformed id attribute of a <{tag}> tag."))
                })?;
                inner[..close].to_owned()
            }
            _ => rest
                .split(|c: char| c.is_whitespace() || c == '/')
                .next()
                .unwrap_or("")
                .to_owned(),
        };
        out.push(value);
        pos = end;
    }
    Ok(out)
}

/// Position of the value of attribute `name` (after `name=`) in a lowercase attribute string.
fn find_attr(attrs: &str, name: &str) -> Option<usize> {
    let bytes = attrs.as_bytes();
    let mut i = 0;
    while let Some(f) = attrs[i..].find(name) {
        let at = i + f;
        let before_ok = at == 0 || bytes[at - 1].is_ascii_whitespace();
        let mut j = at + name.len();
        while j < bytes.len() && bytes[j].is_ascii_whitespace() {
            j += 1;
        }
        if before_ok && bytes.get(j) == Some(&b'=') {
            j += 1;
            while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                j += 1;
            }
            return Some(j);
        }
        i = at + name.len();
    }
    None
}

/// A message body as a client sends it.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ItemBody {
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub content: Option<String>,
}

/// The writable parts of a chatMessage.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MessageInput {
    #[serde(default)]
    pub body: Option<ItemBody>,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub importance: Option<String>,
    #[serde(default)]
    pub mentions: Option<Vec<Value>>,
    #[serde(default)]
    pub attachments: Option<Vec<Value>>,
}

/// A validated message body.
#[derive(Debug)]
pub(crate) struct ValidContent {
    content_type: &'static str,
    content: String,
    mentions: Vec<Value>,
    attachments: Vec<Value>,
}

fn validate_content(
    dir: &Dir,
    body: &ItemBody,
    mentions: &[Value],
    attachments: &[Value],
) -> Result<ValidContent, GraphError> {
    let content_type = match body
        .content_type
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("text") => "text",
        Some("html") => "html",
        Some(other) => {
            return Err(GraphError::bad_request(format!(
                "Invalid body contentType '{other}': use 'text' or 'html'."
            )));
        }
    };
    let content = body.content.clone().unwrap_or_default();
    if content.trim().is_empty() && attachments.is_empty() {
        return Err(GraphError::bad_request("Message body cannot be empty."));
    }
    if content.len() > MAX_CONTENT_BYTES {
        return Err(GraphError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!(
                "Message size of {} bytes exceeds the maximum of {MAX_CONTENT_BYTES} bytes.",
                content.len()
            ),
        ));
    }
    // Mentions: every <at id> must have a mentions entry and vice versa.
    let mut norm_mentions = Vec::with_capacity(mentions.len());
    let mut mention_ids = BTreeSet::new();
    for m in mentions {
        let id = m
            .get("id")
            .and_then(Value::as_i64)
            .filter(|i| *i >= 0)
            .ok_or_else(|| {
                GraphError::bad_request("Each mention needs a non-negative integer id.")
            })?;
        if !mention_ids.insert(id) {
            return Err(GraphError::bad_request(format!(
                "Duplicate mention id {id} in the mentions collection."
            )));
        }
        let text = m
            .get("mentionText")
            .and_then(Value::as_str)
            .ok_or_else(|| GraphError::bad_request(format!("Mention {id} has no mentionText.")))?;
        let uid = m
            .pointer("/mentioned/user/id")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                GraphError::bad_request(format!(
                    "Mention {id} must name a user in mentioned.user.id (only user mentions are supported)."
                ))
            })?;
        let ux = dir.find_user(uid).ok_or_else(|| {
            GraphError::bad_request(format!(
                "Mentioned user '{uid}' (mention {id}) was not found."
            ))
        })?;
        norm_mentions.push(json!({
            "id": id,
            "mentionText": text,
            "mentioned": {
                "application": null,
                "device": null,
                "conversation": null,
                "tag": null,
                "user": user_identity(dir, ux, true),
            }
        }));
    }
    let mut at_ids = BTreeSet::new();
    if content_type == "html" {
        for raw in tag_ids(&content, "at")? {
            let id: i64 = raw.trim().parse().map_err(|_| {
                GraphError::bad_request(format!("The id '{raw}' of an <at> tag is not an integer."))
            })?;
            at_ids.insert(id);
        }
    }
    if let Some(missing) = at_ids.difference(&mention_ids).next() {
        return Err(GraphError::bad_request(format!(
            "Mention with id {missing} in the message body has no entry in the mentions collection."
        )));
    }
    if let Some(extra) = mention_ids.difference(&at_ids).next() {
        return Err(GraphError::bad_request(format!(
            "Mention with id {extra} is not referenced by an <at id=\"{extra}\"> tag in the message body."
        )));
    }
    // Attachments: each must be referenced by <attachment id="…">, and vice versa.
    let mut norm_att = Vec::with_capacity(attachments.len());
    let mut att_ids = BTreeSet::new();
    for a in attachments {
        let id = a
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| GraphError::bad_request("Each attachment needs a string id."))?;
        if !att_ids.insert(id.to_owned()) {
            return Err(GraphError::bad_request(format!(
                "Duplicate attachment id '{id}'."
            )));
        }
        let field = |k: &str| a.get(k).cloned().unwrap_or(Value::Null);
        norm_att.push(json!({
            "id": id,
            "contentType": field("contentType"),
            "contentUrl": field("contentUrl"),
            "content": field("content"),
            "name": field("name"),
            "thumbnailUrl": field("thumbnailUrl"),
            "teamsAppId": field("teamsAppId"),
        }));
    }
    let body_att: BTreeSet<String> = if content_type == "html" {
        tag_ids(&content, "attachment")?.into_iter().collect()
    } else {
        BTreeSet::new()
    };
    if let Some(missing) = body_att.difference(&att_ids).next() {
        return Err(GraphError::bad_request(format!(
            "Attachment with id '{missing}' in the message body has no entry in the attachments collection."
        )));
    }
    if let Some(extra) = att_ids.difference(&body_att).next() {
        return Err(GraphError::bad_request(format!(
            "Attachment with id '{extra}' is not referenced by an <attachment id=\"{extra}\"> tag in the message body."
        )));
    }
    Ok(ValidContent {
        content_type,
        content,
        mentions: norm_mentions,
        attachments: norm_att,
    })
}

fn validate_importance(i: Option<&str>) -> Result<String, GraphError> {
    match i.map(str::to_ascii_lowercase).as_deref() {
        None | Some("normal") => Ok("normal".into()),
        Some("high") => Ok("high".into()),
        Some("urgent") => Ok("urgent".into()),
        Some(other) => Err(GraphError::bad_request(format!(
            "Invalid importance '{other}': use normal, high or urgent."
        ))),
    }
}

// ---------------------------------------------------------------------------------------
// Mutations (shared by Graph routes and the control API)
// ---------------------------------------------------------------------------------------

/// Posts a message (root when `reply_to` is None). The author's team/channel membership is
/// checked by the caller. Returns the new id.
pub(crate) fn create_message(
    dir: &mut Dir,
    ti: u32,
    ci: u32,
    from: u32,
    input: &MessageInput,
    reply_to: Option<u64>,
) -> Result<u64, GraphError> {
    let body = input
        .body
        .as_ref()
        .ok_or_else(|| GraphError::bad_request("The message needs a body."))?;
    let valid = validate_content(
        dir,
        body,
        input.mentions.as_deref().unwrap_or(&[]),
        input.attachments.as_deref().unwrap_or(&[]),
    )?;
    let importance = validate_importance(input.importance.as_deref())?;
    if let Some(s) = &input.subject {
        if s.len() > 255 {
            return Err(GraphError::bad_request(
                "The subject is longer than 255 characters.",
            ));
        }
    }
    if let Some(root) = reply_to {
        match dir.msg(ti, ci, root) {
            Some(m) if m.reply_to.is_none() => {
                if m.deleted_ms.is_some() {
                    return Err(GraphError::bad_request(
                        "Cannot reply to a deleted message.",
                    ));
                }
            }
            _ => {
                return Err(GraphError::not_found(
                    "NotFound",
                    format!("Message {root} not found."),
                ));
            }
        }
    }
    let id = dir.next_msg_id();
    let seq = dir.next_seq();
    let msg = Msg {
        id,
        reply_to,
        from,
        created_ms: id,
        modified_ms: id,
        edited_ms: None,
        deleted_ms: None,
        subject: if reply_to.is_none() {
            input.subject.clone()
        } else {
            None
        },
        content_type: valid.content_type,
        content: valid.content,
        importance,
        mentions: valid.mentions,
        attachments: valid.attachments,
        reactions: Vec::new(),
        seq,
        chain_seq: seq,
        replies: Vec::new(),
    };
    let ch = dir.channel_mut(ti, ci);
    let msgs = ch
        .msgs
        .get_or_insert_with(|| Box::new(ChannelMsgs::default()));
    msgs.map.insert(id, msg);
    match reply_to {
        None => msgs.roots.push(id),
        Some(root) => {
            if let Some(r) = msgs.map.get_mut(&root) {
                r.replies.push(id);
                r.chain_seq = seq;
            }
        }
    }
    Ok(id)
}

/// Applies `f` to message `id`, bumping its change sequence (and its root's chain sequence).
/// Returns `f`'s result.
pub(crate) fn mutate<T>(
    dir: &mut Dir,
    ti: u32,
    ci: u32,
    id: u64,
    f: impl FnOnce(&mut Msg) -> Result<(T, bool), GraphError>,
) -> Result<T, GraphError> {
    let seq = dir.seq + 1;
    let ch = dir.channel_mut(ti, ci);
    let msgs = ch
        .msgs
        .as_mut()
        .ok_or_else(|| GraphError::not_found("NotFound", format!("Message {id} not found.")))?;
    let m = msgs
        .map
        .get_mut(&id)
        .ok_or_else(|| GraphError::not_found("NotFound", format!("Message {id} not found.")))?;
    let (out, changed) = f(m)?;
    if changed {
        let now = crate::util::now_unix_ms() as u64;
        m.modified_ms = now.max(m.modified_ms + 1);
        m.seq = seq;
        let root = m.reply_to.unwrap_or(m.id);
        if let Some(r) = msgs.map.get_mut(&root) {
            r.chain_seq = seq;
        }
        dir.seq = seq;
    }
    Ok(out)
}

/// Edits a message body. `editor`: the user editing (must be the sender); `None` bypasses
/// the sender check (control API acting as the sender).
pub(crate) fn edit_message(
    dir: &mut Dir,
    ti: u32,
    ci: u32,
    id: u64,
    editor: Option<u32>,
    input: &MessageInput,
) -> Result<(), GraphError> {
    let existing = dir
        .msg(ti, ci, id)
        .ok_or_else(|| GraphError::not_found("NotFound", format!("Message {id} not found.")))?;
    if let Some(e) = editor {
        if existing.from != e {
            return Err(GraphError::forbidden(
                "Forbidden: only the sender of a message can edit its body.",
            ));
        }
    }
    if existing.deleted_ms.is_some() {
        return Err(GraphError::bad_request("Cannot update a deleted message."));
    }
    let valid = match &input.body {
        Some(b) => Some(validate_content(
            dir,
            b,
            input.mentions.as_deref().unwrap_or(&[]),
            input.attachments.as_deref().unwrap_or(&[]),
        )?),
        None => None,
    };
    let importance = match &input.importance {
        Some(i) => Some(validate_importance(Some(i))?),
        None => None,
    };
    if valid.is_none() && importance.is_none() && input.subject.is_none() {
        return Err(GraphError::bad_request(
            "Nothing to update: send a body (and optionally mentions, subject, importance).",
        ));
    }
    mutate(dir, ti, ci, id, |m| {
        if let Some(v) = valid {
            m.content_type = v.content_type;
            m.content = v.content;
            m.mentions = v.mentions;
            m.attachments = v.attachments;
        }
        if let Some(i) = importance {
            m.importance = i;
        }
        if let Some(s) = &input.subject {
            if m.reply_to.is_none() {
                m.subject = Some(s.clone());
            }
        }
        m.edited_ms = Some(crate::util::now_unix_ms() as u64);
        Ok(((), true))
    })
}

/// Soft-deletes (or restores) a message. Returns whether anything changed.
pub(crate) fn set_deleted(
    dir: &mut Dir,
    ti: u32,
    ci: u32,
    id: u64,
    actor: Option<u32>,
    deleted: bool,
) -> Result<bool, GraphError> {
    let existing = dir
        .msg(ti, ci, id)
        .ok_or_else(|| GraphError::not_found("NotFound", format!("Message {id} not found.")))?;
    if let Some(a) = actor {
        let owner = dir.teams[ti as usize].member(a).is_some_and(|m| m.owner);
        if existing.from != a && !owner {
            return Err(GraphError::forbidden(
                "Forbidden: only the sender or a team owner can delete a message.",
            ));
        }
    }
    mutate(dir, ti, ci, id, |m| {
        let changed = m.deleted_ms.is_some() != deleted;
        if changed {
            m.deleted_ms = deleted.then(|| crate::util::now_unix_ms() as u64);
        }
        Ok((changed, changed))
    })
}

/// Adds or removes `user`'s reaction. Returns whether anything changed.
pub(crate) fn set_reaction(
    dir: &mut Dir,
    ti: u32,
    ci: u32,
    id: u64,
    user: u32,
    reaction: &str,
    add: bool,
) -> Result<bool, GraphError> {
    let reaction = reaction.trim();
    if reaction.is_empty() || reaction.chars().count() > 64 {
        return Err(GraphError::bad_request(
            "reactionType must be a non-empty string of at most 64 characters (a Unicode emoji or like, heart, laugh, surprised, sad, angry).",
        ));
    }
    let existing = dir
        .msg(ti, ci, id)
        .ok_or_else(|| GraphError::not_found("NotFound", format!("Message {id} not found.")))?;
    if existing.deleted_ms.is_some() {
        return Err(GraphError::bad_request(
            "Cannot react to a deleted message.",
        ));
    }
    mutate(dir, ti, ci, id, |m| {
        let pos = m
            .reactions
            .iter()
            .position(|r| r.user == user && r.reaction_type == reaction);
        let changed = match (add, pos) {
            (true, None) => {
                m.reactions.push(Reaction {
                    reaction_type: reaction.to_owned(),
                    user,
                    created_ms: crate::util::now_unix_ms() as u64,
                });
                true
            }
            (false, Some(p)) => {
                m.reactions.remove(p);
                true
            }
            _ => false,
        };
        Ok((changed, changed))
    })
}

// ---------------------------------------------------------------------------------------
// Graph routes
// ---------------------------------------------------------------------------------------

type ChanPath = Path<(String, String)>;
type MsgPath = Path<(String, String, String)>;
type ReplyPath = Path<(String, String, String, String)>;

fn read_limits(channel: &str) -> [Limit; 2] {
    [Limit::GetMessage, Limit::Channel(channel.to_owned())]
}

fn write_limits(channel: &str) -> [Limit; 2] {
    [Limit::OtherCall, Limit::Channel(channel.to_owned())]
}

fn created(v: Value) -> axum::response::Response {
    (StatusCode::CREATED, axum::Json(v)).into_response()
}

fn entity_context(team: &str, channel: &str, tail: &str) -> String {
    format!(
        "https://graph.microsoft.com/v1.0/$metadata#teams('{team}')/channels('{channel}')/{tail}"
    )
}

fn app_only_post() -> GraphError {
    GraphError::new(
        StatusCode::FORBIDDEN,
        "Unauthorized",
        "Message POST is allowed in application-only context only for import purposes. Use a delegated (user) token to post channel messages.",
    )
}

/// Posting needs a delegated token of a team (and channel) member.
fn check_post(dir: &Dir, caller: &Caller, ti: u32, ci: u32) -> Result<u32, GraphError> {
    let Some(user) = caller.user else {
        return Err(app_only_post());
    };
    check_msg_access(dir, caller, ti, ci)?;
    Ok(user)
}

async fn post_common(
    world: SharedWorld,
    headers: HeaderMap,
    team: String,
    channel: String,
    root: Option<String>,
    body: axum::body::Bytes,
) -> GResult {
    let caller = authenticate(&world, &headers)?;
    throttle(
        &world,
        &caller,
        &[Limit::PostMessage, Limit::Channel(channel.clone())],
    )?;
    if caller.app_only() {
        return Err(app_only_post());
    }
    caller.require_teams(SEND_PERMS)?;
    let input: MessageInput = parse_body(&body)?;
    let (json_out, team_id, channel_id, id, reply_to) = {
        let mut dir = world.msteams.dir.write();
        let (ti, ci) = resolve(&dir, &team, &channel)?;
        let user = check_post(&dir, &caller, ti, ci)?;
        let reply_to = match &root {
            None => None,
            Some(r) => Some(find_root(&dir, ti, ci, r)?),
        };
        let channel_key = dir.channel(ti, ci).id.clone();
        take_daily_message(&world, &caller, &channel_key)?;
        let id = create_message(&mut dir, ti, ci, user, &input, reply_to)?;
        let m = dir.msg(ti, ci, id).cloned().ok_or_else(|| {
            GraphError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                "lost message",
            )
        })?;
        let team_id = dir.teams[ti as usize].id.clone();
        let channel_id = dir.channel(ti, ci).id.clone();
        let mut v = render(&dir, ti, ci, &m, false, false);
        let tail = match reply_to {
            None => "messages/$entity".to_owned(),
            Some(r) => format!("messages('{r}')/replies/$entity"),
        };
        v["@odata.context"] = Value::String(entity_context(&team_id, &channel_id, &tail));
        (v, team_id, channel_id, id, reply_to)
    };
    notify(&world, &team_id, &channel_id, id, reply_to, Change::Created);
    Ok(created(json_out))
}

/// `POST /teams/{t}/channels/{c}/messages`.
pub(crate) async fn post_message(
    State(world): State<SharedWorld>,
    headers: HeaderMap,
    Path((team, channel)): ChanPath,
    body: axum::body::Bytes,
) -> GResult {
    post_common(world, headers, team, channel, None, body).await
}

/// `POST /teams/{t}/channels/{c}/messages/{m}/replies`.
pub(crate) async fn post_reply(
    State(world): State<SharedWorld>,
    headers: HeaderMap,
    Path((team, channel, root)): MsgPath,
    body: axum::body::Bytes,
) -> GResult {
    post_common(world, headers, team, channel, Some(root), body).await
}

#[derive(Debug, Serialize, Deserialize)]
struct ListToken {
    /// channel id
    c: String,
    /// root id (for replies) or 0
    r: u64,
    /// next page: ids strictly below this
    b: u64,
    t: usize,
    x: bool,
}

fn expand_replies(q: &Query) -> Result<bool, GraphError> {
    match q.get("$expand") {
        None => Ok(false),
        Some(e) if e.trim().eq_ignore_ascii_case("replies") => Ok(true),
        Some(e) => Err(GraphError::bad_request(format!(
            "Unsupported $expand '{e}': only 'replies' is supported."
        ))),
    }
}

fn list_page(
    world: &SharedWorld,
    dir: &Dir,
    ti: u32,
    ci: u32,
    root: Option<u64>,
    q: &Query,
) -> Result<Value, GraphError> {
    let team = &dir.teams[ti as usize];
    let ch = &team.channels[ci as usize];
    let (top, before, expand) = match q.get("$skiptoken") {
        Some(tok) => {
            let t: ListToken = decode_token(tok, "$skiptoken")?;
            if t.c != ch.id || t.r != root.unwrap_or(0) {
                return Err(GraphError::bad_request(
                    "The $skiptoken belongs to another collection.",
                ));
            }
            (super::common::token_top(t.t, MSG_TOP_MAX)?, t.b, t.x)
        }
        None => (
            q.top(MSG_TOP_DEFAULT, MSG_TOP_MAX)?,
            u64::MAX,
            root.is_none() && expand_replies(q)?,
        ),
    };
    let ids: &[u64] = match (&ch.msgs, root) {
        (None, _) => &[],
        (Some(ms), None) => &ms.roots,
        (Some(ms), Some(r)) => ms.map.get(&r).map(|m| m.replies.as_slice()).unwrap_or(&[]),
    };
    // ids ascend; newest first below `before`
    let end = ids.partition_point(|&id| id < before);
    let start = end.saturating_sub(top);
    let page: Vec<Value> = ids[start..end]
        .iter()
        .rev()
        .filter_map(|id| ch.msgs.as_ref().and_then(|ms| ms.map.get(id)))
        .map(|m| render(dir, ti, ci, m, expand, false))
        .collect();
    let next = (start > 0).then(|| {
        let tok = encode_token(&ListToken {
            c: ch.id.clone(),
            r: root.unwrap_or(0),
            b: ids[start],
            t: top,
            x: expand,
        });
        let path = match root {
            None => format!("/teams/{}/channels/{}/messages", team.id, ch.id),
            Some(r) => format!("/teams/{}/channels/{}/messages/{r}/replies", team.id, ch.id),
        };
        graph_link(
            world,
            &path,
            &[("$top", top.to_string()), ("$skiptoken", tok)],
        )
    });
    let ctx = match root {
        None => format!("teams('{}')/channels('{}')/messages", team.id, ch.id),
        Some(r) => format!(
            "teams('{}')/channels('{}')/messages('{r}')/replies",
            team.id, ch.id
        ),
    };
    let mut v = super::common::collection(&ctx, page, next);
    if root.is_some() {
        v["@odata.count"] = json!(ids.len());
    }
    Ok(v)
}

/// `GET /teams/{t}/channels/{c}/messages`: roots, newest first.
pub(crate) async fn list_messages(
    State(world): State<SharedWorld>,
    headers: HeaderMap,
    Path((team, channel)): ChanPath,
    RawQuery(raw): RawQuery,
) -> GResult {
    let caller = authenticate(&world, &headers)?;
    throttle(&world, &caller, &read_limits(&channel))?;
    caller.require_teams(READ_PERMS)?;
    let q = Query::parse(raw.as_deref())?;
    let dir = world.msteams.dir.read();
    let (ti, ci) = resolve(&dir, &team, &channel)?;
    check_msg_access(&dir, &caller, ti, ci)?;
    Ok(ok_json(list_page(&world, &dir, ti, ci, None, &q)?))
}

/// `GET /teams/{t}/channels/{c}/messages/{m}/replies`: newest first.
pub(crate) async fn list_replies(
    State(world): State<SharedWorld>,
    headers: HeaderMap,
    Path((team, channel, root)): MsgPath,
    RawQuery(raw): RawQuery,
) -> GResult {
    let caller = authenticate(&world, &headers)?;
    throttle(&world, &caller, &read_limits(&channel))?;
    caller.require_teams(READ_PERMS)?;
    let q = Query::parse(raw.as_deref())?;
    let dir = world.msteams.dir.read();
    let (ti, ci) = resolve(&dir, &team, &channel)?;
    check_msg_access(&dir, &caller, ti, ci)?;
    let rid = find_root(&dir, ti, ci, &root)?;
    Ok(ok_json(list_page(&world, &dir, ti, ci, Some(rid), &q)?))
}

/// `GET /teams/{t}/channels/{c}/messages/{m}`.
pub(crate) async fn get_message(
    State(world): State<SharedWorld>,
    headers: HeaderMap,
    Path((team, channel, mid)): MsgPath,
    RawQuery(raw): RawQuery,
) -> GResult {
    let caller = authenticate(&world, &headers)?;
    throttle(&world, &caller, &read_limits(&channel))?;
    caller.require_teams(READ_PERMS)?;
    let q = Query::parse(raw.as_deref())?;
    let expand = expand_replies(&q)?;
    let dir = world.msteams.dir.read();
    let (ti, ci) = resolve(&dir, &team, &channel)?;
    check_msg_access(&dir, &caller, ti, ci)?;
    let id = find_root(&dir, ti, ci, &mid)?;
    let m = dir
        .msg(ti, ci, id)
        .ok_or_else(|| GraphError::not_found("NotFound", "Message not found."))?;
    let mut v = render(&dir, ti, ci, m, expand, false);
    let t = &dir.teams[ti as usize];
    v["@odata.context"] = Value::String(entity_context(
        &t.id,
        &t.channels[ci as usize].id,
        "messages/$entity",
    ));
    Ok(ok_json(v))
}

/// `GET /teams/{t}/channels/{c}/messages/{m}/replies/{r}`.
pub(crate) async fn get_reply(
    State(world): State<SharedWorld>,
    headers: HeaderMap,
    Path((team, channel, mid, rid)): ReplyPath,
) -> GResult {
    let caller = authenticate(&world, &headers)?;
    throttle(&world, &caller, &read_limits(&channel))?;
    caller.require_teams(READ_PERMS)?;
    let dir = world.msteams.dir.read();
    let (ti, ci) = resolve(&dir, &team, &channel)?;
    check_msg_access(&dir, &caller, ti, ci)?;
    let root = find_root(&dir, ti, ci, &mid)?;
    let id = find_reply(&dir, ti, ci, root, &rid)?;
    let m = dir
        .msg(ti, ci, id)
        .ok_or_else(|| GraphError::not_found("NotFound", "Reply not found."))?;
    let mut v = render(&dir, ti, ci, m, false, false);
    let t = &dir.teams[ti as usize];
    v["@odata.context"] = Value::String(entity_context(
        &t.id,
        &t.channels[ci as usize].id,
        &format!("messages('{root}')/replies/$entity"),
    ));
    Ok(ok_json(v))
}

/// What a write route does to the target message.
#[derive(Debug, Clone, Copy)]
enum WriteOp {
    Edit,
    SoftDelete,
    Undo,
    React(bool),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReactionBody {
    #[serde(default)]
    reaction_type: Option<String>,
}

/// The message a write route targets.
#[derive(Debug)]
struct Target {
    team: String,
    channel: String,
    mid: String,
    rid: Option<String>,
}

async fn write_common(
    world: SharedWorld,
    headers: HeaderMap,
    target: Target,
    op: WriteOp,
    body: axum::body::Bytes,
) -> GResult {
    let Target {
        team,
        channel,
        mid,
        rid,
    } = target;
    let caller = authenticate(&world, &headers)?;
    throttle(&world, &caller, &write_limits(&channel))?;
    match op {
        WriteOp::React(_) => caller.require_teams(SEND_PERMS)?,
        _ => caller.require_teams(WRITE_PERMS)?,
    }
    let edit_input: Option<MessageInput> = match op {
        WriteOp::Edit => Some(parse_body(&body)?),
        _ => None,
    };
    let reaction: Option<String> = match op {
        WriteOp::React(_) => {
            let b: ReactionBody = parse_body(&body)?;
            Some(b.reaction_type.ok_or_else(|| {
                GraphError::bad_request("The request body must contain reactionType.")
            })?)
        }
        _ => None,
    };
    let (team_id, channel_id, id, reply_to, change) = {
        let mut dir = world.msteams.dir.write();
        let (ti, ci) = resolve(&dir, &team, &channel)?;
        let Some(user) = caller.user else {
            return Err(GraphError::forbidden(
                "Forbidden: this operation needs a delegated (user) token.",
            ));
        };
        check_msg_access(&dir, &caller, ti, ci)?;
        let root = find_root(&dir, ti, ci, &mid)?;
        let id = match &rid {
            None => root,
            Some(r) => find_reply(&dir, ti, ci, root, r)?,
        };
        let change = match op {
            WriteOp::Edit => {
                let input = edit_input.unwrap_or_default();
                edit_message(&mut dir, ti, ci, id, Some(user), &input)?;
                Some(Change::Updated)
            }
            WriteOp::SoftDelete => {
                set_deleted(&mut dir, ti, ci, id, Some(user), true)?.then_some(Change::Deleted)
            }
            WriteOp::Undo => {
                set_deleted(&mut dir, ti, ci, id, Some(user), false)?.then_some(Change::Updated)
            }
            WriteOp::React(add) => set_reaction(
                &mut dir,
                ti,
                ci,
                id,
                user,
                reaction.as_deref().unwrap_or(""),
                add,
            )?
            .then_some(Change::Updated),
        };
        let team_id = dir.teams[ti as usize].id.clone();
        let channel_id = dir.channel(ti, ci).id.clone();
        let reply_to = rid.as_ref().map(|_| root);
        (team_id, channel_id, id, reply_to, change)
    };
    if let Some(c) = change {
        notify(&world, &team_id, &channel_id, id, reply_to, c);
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

macro_rules! write_routes {
    ($($msg_fn:ident, $reply_fn:ident => $op:expr;)*) => {$(
        pub(crate) async fn $msg_fn(
            State(world): State<SharedWorld>,
            headers: HeaderMap,
            Path((team, channel, mid)): MsgPath,
            body: axum::body::Bytes,
        ) -> GResult {
            write_common(world, headers, Target { team, channel, mid, rid: None }, $op, body).await
        }
        pub(crate) async fn $reply_fn(
            State(world): State<SharedWorld>,
            headers: HeaderMap,
            Path((team, channel, mid, rid)): ReplyPath,
            body: axum::body::Bytes,
        ) -> GResult {
            write_common(world, headers, Target { team, channel, mid, rid: Some(rid) }, $op, body).await
        }
    )*};
}

write_routes! {
    patch_message, patch_reply => WriteOp::Edit;
    soft_delete_message, soft_delete_reply => WriteOp::SoftDelete;
    undo_delete_message, undo_delete_reply => WriteOp::Undo;
    set_reaction_message, set_reaction_reply => WriteOp::React(true);
    unset_reaction_message, unset_reaction_reply => WriteOp::React(false);
}

// ---------------------------------------------------------------------------------------
// Delta
// ---------------------------------------------------------------------------------------

/// State of a delta round.
#[derive(Debug, Serialize, Deserialize)]
struct DeltaToken {
    /// channel id
    c: String,
    /// changes strictly after this sequence…
    w: u64,
    /// …and up to this one (the round's snapshot); absent in a deltaLink
    #[serde(default)]
    s: Option<u64>,
    /// cursor (chain_seq, id) of the last item returned in this round
    #[serde(default)]
    k: Option<(u64, u64)>,
    t: usize,
    x: bool,
    /// $filter lastModifiedDateTime gt (ms), first round only
    #[serde(default)]
    f: Option<u64>,
    /// when the deltaLink was issued (ms), so it can be expired
    #[serde(default)]
    i: u64,
}

fn chain_modified(ms: &ChannelMsgs, root: &Msg) -> u64 {
    root.replies
        .iter()
        .filter_map(|r| ms.map.get(r))
        .map(|r| r.modified_ms)
        .fold(root.modified_ms, u64::max)
}

fn parse_delta_filter(f: &str) -> Result<u64, GraphError> {
    let lower = f.trim().to_ascii_lowercase();
    let rest = lower
        .strip_prefix("lastmodifieddatetime")
        .map(str::trim_start)
        .and_then(|r| r.strip_prefix("gt "))
        .ok_or_else(|| {
            GraphError::bad_request(
                "Only '$filter=lastModifiedDateTime gt <timestamp>' is supported on delta.",
            )
        })?;
    let orig = &f.trim()[f.trim().len() - rest.len()..];
    parse_iso(orig.trim())
        .ok_or_else(|| GraphError::bad_request(format!("Invalid timestamp '{}'.", orig.trim())))
}

/// `GET /teams/{t}/channels/{c}/messages/delta`.
pub(crate) async fn delta(
    State(world): State<SharedWorld>,
    headers: HeaderMap,
    Path((team, channel)): ChanPath,
    RawQuery(raw): RawQuery,
) -> GResult {
    let caller = authenticate(&world, &headers)?;
    throttle(&world, &caller, &read_limits(&channel))?;
    caller.require_teams(&[Perm::CHANNELMESSAGE_READ_ALL])?;
    let q = Query::parse(raw.as_deref())?;
    let dir = world.msteams.dir.read();
    let (ti, ci) = resolve(&dir, &team, &channel)?;
    check_msg_access(&dir, &caller, ti, ci)?;
    let t = &dir.teams[ti as usize];
    let ch = &t.channels[ci as usize];
    let mut st: DeltaToken = if let Some(tok) = q.get("$skiptoken") {
        decode_token(tok, "$skiptoken")?
    } else if let Some(tok) = q.get("$deltatoken") {
        let mut d: DeltaToken = decode_token(tok, "$deltatoken")?;
        let expired_before = world
            .msteams
            .delta_expired
            .lock()
            .get(&ch.id)
            .copied()
            .unwrap_or(0);
        if d.i < expired_before {
            return Err(GraphError::new(
                StatusCode::GONE,
                "resyncRequired",
                "The delta token has expired and is no longer valid. Start a new round of change tracking (with a $filter on lastModifiedDateTime).",
            ));
        }
        d.s = None;
        d.k = None;
        d.f = None;
        d
    } else {
        DeltaToken {
            c: ch.id.clone(),
            w: 0,
            s: None,
            k: None,
            t: q.top(MSG_TOP_DEFAULT, MSG_TOP_MAX)?,
            x: expand_replies(&q)?,
            f: match q.get("$filter") {
                Some(f) => Some(parse_delta_filter(f)?),
                None => None,
            },
            i: 0,
        }
    };
    st.t = super::common::token_top(st.t, MSG_TOP_MAX)?;
    if st.c != ch.id {
        return Err(GraphError::bad_request(
            "The delta token belongs to another channel.",
        ));
    }
    let snapshot = *st.s.get_or_insert(dir.seq);
    let mut candidates: Vec<(u64, u64)> = match &ch.msgs {
        None => Vec::new(),
        Some(ms) => ms
            .roots
            .iter()
            .filter_map(|id| ms.map.get(id))
            .filter(|m| m.chain_seq > st.w && m.chain_seq <= snapshot)
            .filter(|m| st.k.is_none_or(|k| (m.chain_seq, m.id) > k))
            .filter(|m| st.f.is_none_or(|f| chain_modified(ms, m) > f))
            .map(|m| (m.chain_seq, m.id))
            .collect(),
    };
    candidates.sort_unstable();
    let more = candidates.len() > st.t;
    candidates.truncate(st.t);
    let value: Vec<Value> = candidates
        .iter()
        .filter_map(|(_, id)| ch.msgs.as_ref().and_then(|ms| ms.map.get(id)))
        .map(|m| {
            let mut v = render(&dir, ti, ci, m, st.x, false);
            v["@odata.type"] = Value::String("#microsoft.graph.chatMessage".into());
            v
        })
        .collect();
    let path = format!("/teams/{}/channels/{}/messages/delta", t.id, ch.id);
    let mut out = json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(chatMessage)",
    });
    if more {
        st.k = candidates.last().copied();
        out["@odata.nextLink"] = Value::String(graph_link(
            &world,
            &path,
            &[("$skiptoken", encode_token(&st))],
        ));
    } else {
        let next = DeltaToken {
            c: st.c.clone(),
            w: snapshot,
            s: None,
            k: None,
            t: st.t,
            x: st.x,
            f: None,
            i: crate::util::now_unix_ms() as u64,
        };
        out["@odata.deltaLink"] = Value::String(graph_link(
            &world,
            &path,
            &[("$deltatoken", encode_token(&next))],
        ));
    }
    out["value"] = Value::Array(value);
    Ok(ok_json(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_tags_are_found() {
        let ids = tag_ids(
            r#"Hi <at id="0">Alice</at> and <AT id='1'>Bob</AT>, see <attachment id="x"></attachment>"#,
            "at",
        )
        .unwrap();
        assert_eq!(ids, vec!["0", "1"]);
        let att = tag_ids(r#"<attachment id="abc"></attachment>"#, "attachment").unwrap();
        assert_eq!(att, vec!["abc"]);
        assert!(tag_ids("<at>nobody</at>", "at").is_err());
        assert_eq!(tag_ids("<at id=3>x</at>", "at").unwrap(), vec!["3"]);
    }

    #[test]
    fn delta_filter_parses() {
        assert_eq!(
            parse_delta_filter("lastModifiedDateTime gt 2020-11-27T22:18:03.514Z").unwrap(),
            1_606_515_483_514
        );
        assert!(parse_delta_filter("createdDateTime gt 2020-01-01T00:00:00Z").is_err());
    }
}
