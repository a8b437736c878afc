//! JSON shapes of Slack objects: users, conversations, messages, files, team.
//!
//! Web API shapes emit only the properties that `web_api_openapi_v2.json` allows (many of its
//! objects are `additionalProperties: false`); event shapes follow the Events API docs.

use serde_json::{Map, Value, json};

use super::model::{Channel, FileRec, Message, UserKind, Workspace, fmt_ts};

/// Which surface a message is rendered for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// Web API (`conversations.history`, `chat.postMessage`…): spec-allowed fields only;
    /// `metadata` only when asked for (`include_all_metadata`).
    Api { metadata: bool },
    /// Events API payloads: also `app_id`, `edited`, `metadata`, `file_share` subtype.
    Event,
}

/// A short, stable hex digest of `s` (`n` ≤ 16): colours and avatar hashes.
fn hash_hex(s: &str, n: usize) -> String {
    // FNV-1a, then a splitmix64 finaliser.
    let mut x: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        x = (x ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    format!("{x:016x}")[..n.min(16)].to_owned()
}

/// Percent-encodes one URL path segment.
pub(crate) fn path_segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

pub(crate) fn avatar_url(base: &str, user_id: &str, size: u32) -> String {
    format!("{base}/slack/avatars/{user_id}/{size}.png")
}

/// `objs_user`.
pub(crate) fn user_json(ws: &Workspace, base: &str, ix: u32, with_email: bool) -> Value {
    let u = ws.user(ix);
    let (first, last) = match u.real_name.split_once(' ') {
        Some((f, l)) => (f.to_owned(), l.to_owned()),
        None => (u.real_name.clone(), String::new()),
    };
    let mut profile = json!({
        "title": "",
        "phone": "",
        "skype": "",
        "real_name": u.real_name,
        "real_name_normalized": u.real_name,
        "display_name": u.display_name,
        "display_name_normalized": u.display_name,
        "fields": null,
        "status_text": "",
        "status_emoji": "",
        "status_expiration": 0,
        "avatar_hash": format!("g{}", hash_hex(&u.id, 11)),
        "first_name": first,
        "last_name": last,
        "image_24": avatar_url(base, &u.id, 24),
        "image_32": avatar_url(base, &u.id, 32),
        "image_48": avatar_url(base, &u.id, 48),
        "image_72": avatar_url(base, &u.id, 72),
        "image_192": avatar_url(base, &u.id, 192),
        "image_512": avatar_url(base, &u.id, 512),
        "team": ws.team_id,
    });
    if let UserKind::Bot { bot_id, app_id } = &u.kind {
        profile["bot_id"] = json!(bot_id);
        profile["api_app_id"] = json!(app_id);
        profile["always_active"] = json!(true);
    } else if with_email {
        if let Some(e) = &u.email {
            profile["email"] = json!(e);
        }
    }
    if u.deleted {
        return json!({
            "id": u.id,
            "team_id": ws.team_id,
            "name": u.name,
            "deleted": true,
            "profile": profile,
            "is_bot": u.is_bot(),
            "is_app_user": false,
            "updated": u.updated,
        });
    }
    json!({
        "id": u.id,
        "team_id": ws.team_id,
        "name": u.name,
        "deleted": false,
        "color": hash_hex(&u.name, 6),
        "real_name": u.real_name,
        "tz": "America/Los_Angeles",
        "tz_label": "Pacific Standard Time",
        "tz_offset": -28800,
        "profile": profile,
        "is_admin": u.is_admin,
        "is_owner": u.is_owner,
        "is_primary_owner": u.is_primary_owner,
        "is_restricted": false,
        "is_ultra_restricted": false,
        "is_bot": u.is_bot(),
        "is_app_user": false,
        "updated": u.updated,
        "has_2fa": false,
    })
}

/// `objs_conversation` (channel flavour). `caller`: adds `is_member`.
pub(crate) fn channel_json(
    ws: &Workspace,
    ch: &Channel,
    caller: Option<u32>,
    with_num_members: bool,
) -> Value {
    let creator = ws.user(ch.creator).id.clone();
    let mut v = json!({
        "id": ch.id,
        "name": ch.name,
        "is_channel": !ch.is_private,
        "is_group": ch.is_private,
        "is_im": false,
        "is_mpim": false,
        "is_private": ch.is_private,
        "created": ch.created,
        "is_archived": ch.is_archived,
        "is_general": ch.is_general,
        "unlinked": 0,
        "name_normalized": ch.name,
        "is_shared": false,
        "is_org_shared": false,
        "is_pending_ext_shared": false,
        "pending_shared": [],
        "parent_conversation": null,
        "creator": creator,
        "is_ext_shared": false,
        "shared_team_ids": [ws.team_id],
        "pending_connected_team_ids": [],
        "topic": {"value": ch.topic, "creator": "", "last_set": 0},
        "purpose": {
            "value": ch.purpose,
            "creator": if ch.purpose.is_empty() { String::new() } else { creator },
            "last_set": if ch.purpose.is_empty() { 0 } else { ch.created },
        },
        "previous_names": [],
    });
    if let Some(u) = caller {
        v["is_member"] = json!(ch.members.contains(&u));
    }
    if with_num_members {
        v["num_members"] = json!(ch.members.len());
    }
    v
}

/// `objs_team`.
pub(crate) fn team_json(ws: &Workspace, base: &str) -> Value {
    let icon = |n: u32| format!("{base}/slack/avatars/{}/{n}.png", ws.team_id);
    json!({
        "id": ws.team_id,
        "name": ws.team_name,
        "domain": ws.domain,
        "email_domain": ws.email_domain,
        "icon": {
            "image_default": true,
            "image_34": icon(34),
            "image_44": icon(44),
            "image_68": icon(68),
            "image_88": icon(88),
            "image_102": icon(102),
            "image_132": icon(132),
            "image_230": icon(230),
        },
    })
}

/// `objs_bot_profile` of a bot user.
pub(crate) fn bot_profile(ws: &Workspace, base: &str, ix: u32) -> Option<Value> {
    let u = ws.user(ix);
    match &u.kind {
        UserKind::Bot { bot_id, app_id } => Some(json!({
            "id": bot_id,
            "deleted": false,
            "name": u.real_name,
            "updated": u.updated,
            "app_id": app_id,
            "icons": {
                "image_36": avatar_url(base, &u.id, 36),
                "image_48": avatar_url(base, &u.id, 48),
                "image_72": avatar_url(base, &u.id, 72),
            },
            "team_id": ws.team_id,
        })),
        UserKind::Person => None,
    }
}

pub(crate) fn file_url(base: &str, f: &FileRec) -> String {
    format!("{base}/slack/files/{}/{}", f.id, path_segment(&f.name))
}

pub(crate) fn file_download_url(base: &str, f: &FileRec) -> String {
    format!(
        "{base}/slack/files/{}/download/{}",
        f.id,
        path_segment(&f.name)
    )
}

/// `objs_file`.
pub(crate) fn file_json(ws: &Workspace, base: &str, f: &FileRec) -> Value {
    let (mut channels, mut groups) = (Vec::new(), Vec::new());
    for &c in &f.channels {
        let ch = ws.channel(c);
        if ch.is_private {
            groups.push(ch.id.clone());
        } else {
            channels.push(ch.id.clone());
        }
    }
    let is_public = !channels.is_empty();
    json!({
        "id": f.id,
        "created": f.created,
        "timestamp": f.created,
        "name": f.name,
        "title": f.title,
        "mimetype": f.mimetype,
        "filetype": f.filetype,
        "pretty_type": f.filetype.to_uppercase(),
        "user": ws.user(f.user).id,
        "user_team": ws.team_id,
        "editable": false,
        "size": f.bytes.as_ref().map_or(f.length, |b| b.len() as u64),
        "mode": "hosted",
        "is_external": false,
        "external_type": "",
        "is_public": is_public,
        "public_url_shared": false,
        "display_as_bot": false,
        "username": "",
        "url_private": file_url(base, f),
        "url_private_download": file_download_url(base, f),
        "permalink": file_url(base, f),
        "permalink_public": file_url(base, f),
        "channels": channels,
        "groups": groups,
        "ims": [],
        "comments_count": 0,
        "has_rich_preview": false,
        "is_starred": false,
    })
}

/// A message object for the Web API or an event.
pub(crate) fn message_json(
    ws: &Workspace,
    base: &str,
    ch: &Channel,
    m: &Message,
    flavor: Flavor,
) -> Value {
    let mut o = Map::new();
    o.insert("type".into(), json!("message"));
    let mut subtype = m.subtype;
    if flavor == Flavor::Event && subtype.is_none() && !m.files.is_empty() {
        subtype = Some("file_share");
    }
    if let Some(st) = subtype {
        o.insert("subtype".into(), json!(st));
    }
    o.insert("text".into(), json!(m.text));
    if m.subtype != Some("bot_message") {
        o.insert("user".into(), json!(ws.user(m.user).id));
    }
    o.insert("ts".into(), json!(fmt_ts(m.ts)));
    if let Some(b) = &m.bot_id {
        o.insert("bot_id".into(), json!(b));
        if flavor == Flavor::Event {
            if let Some(a) = &m.app_id {
                o.insert("app_id".into(), json!(a));
            }
        }
        if let Some(p) = bot_profile(ws, base, m.user) {
            o.insert("bot_profile".into(), p);
        }
    }
    if let Some(u) = &m.username {
        o.insert("username".into(), json!(u));
    }
    if let Some(e) = &m.icon_emoji {
        o.insert("icons".into(), json!({"emoji": e}));
    } else if let Some(url) = &m.icon_url {
        o.insert("icons".into(), json!({"image_64": url}));
    }
    o.insert("team".into(), json!(ws.team_id));
    if let Some(b) = &m.blocks {
        o.insert("blocks".into(), b.clone());
    }
    if let Some(t) = m.thread_ts {
        o.insert("thread_ts".into(), json!(fmt_ts(t)));
        if m.is_reply() {
            if let Some(p) = ch.find(t) {
                o.insert(
                    "parent_user_id".into(),
                    json!(ws.user(ch.messages[p].user).id),
                );
            }
        }
    }
    let live_replies: Vec<&Message> = m
        .replies
        .iter()
        .filter_map(|ts| ch.find(*ts).map(|i| &ch.messages[i]))
        .filter(|r| !r.deleted)
        .collect();
    if !live_replies.is_empty() {
        let mut users: Vec<String> = Vec::new();
        for r in &live_replies {
            let id = ws.user(r.user).id.clone();
            if !users.contains(&id) {
                users.push(id);
            }
        }
        o.insert("reply_count".into(), json!(live_replies.len()));
        o.insert("reply_users_count".into(), json!(users.len()));
        o.insert(
            "latest_reply".into(),
            json!(fmt_ts(live_replies.last().map_or(m.ts, |r| r.ts))),
        );
        o.insert("reply_users".into(), json!(users));
        o.insert("subscribed".into(), json!(false));
    }
    if !m.reactions.is_empty() {
        let rs: Vec<Value> = m
            .reactions
            .iter()
            .map(|r| {
                json!({
                    "name": r.name,
                    "users": r.users.iter().map(|u| ws.user(*u).id.clone()).collect::<Vec<_>>(),
                    "count": r.users.len(),
                })
            })
            .collect();
        o.insert("reactions".into(), json!(rs));
    }
    if !m.files.is_empty() {
        let fs: Vec<Value> = m
            .files
            .iter()
            .filter_map(|id| ws.files.get(id))
            .map(|f| {
                if flavor == Flavor::Event && ws.modes.id_only_files {
                    // Slack Connect: only the id; the rest comes from files.info.
                    json!({"id": f.id, "file_access": "check_file_info"})
                } else {
                    file_json(ws, base, f)
                }
            })
            .collect();
        o.insert("files".into(), json!(fs));
        o.insert("upload".into(), json!(true));
        o.insert("display_as_bot".into(), json!(false));
    }
    let with_metadata = match flavor {
        Flavor::Api { metadata } => metadata,
        Flavor::Event => true,
    };
    if with_metadata {
        if let Some(md) = &m.metadata {
            let md = if flavor == Flavor::Event {
                // Events carry `event_payload` only for event types declared in the app's
                // manifest; the sandbox's app declares none: `event_type` alone comes back.
                json!({"event_type": md["event_type"]})
            } else {
                md.clone()
            };
            o.insert("metadata".into(), md);
        }
    }
    if flavor == Flavor::Event {
        if let Some((u, ts)) = m.edited {
            o.insert(
                "edited".into(),
                json!({"user": ws.user(u).id, "ts": fmt_ts(ts)}),
            );
        }
    }
    Value::Object(o)
}

/// A message exactly as stored (control API).
pub(crate) fn stored_json(ws: &Workspace, base: &str, ch: &Channel, m: &Message) -> Value {
    let parent_user = m
        .thread_ts
        .filter(|t| *t != m.ts)
        .and_then(|t| ch.find(t))
        .map(|p| ws.user(ch.messages[p].user).id.clone());
    json!({
        "ts": fmt_ts(m.ts),
        "user": ws.user(m.user).id,
        "bot_id": m.bot_id,
        "app_id": m.app_id,
        "username": m.username,
        "icon_url": m.icon_url,
        "icon_emoji": m.icon_emoji,
        "text": m.text,
        "blocks": m.blocks,
        "subtype": m.subtype,
        "thread_ts": m.thread_ts.map(fmt_ts),
        "parent_user_id": parent_user,
        "reply_count": m.replies.iter().filter(|ts| ch.find(**ts).is_some_and(|i| !ch.messages[i].deleted)).count(),
        "metadata": m.metadata,
        "reactions": m.reactions.iter().map(|r| json!({
            "name": r.name,
            "users": r.users.iter().map(|u| ws.user(*u).id.clone()).collect::<Vec<_>>(),
            "count": r.users.len(),
        })).collect::<Vec<_>>(),
        "files": m.files.iter().filter_map(|id| ws.files.get(id)).map(|f| json!({
            "id": f.id,
            "name": f.name,
            "title": f.title,
            "mimetype": f.mimetype,
            "size": f.bytes.as_ref().map_or(f.length, |b| b.len() as u64),
            "url_private": file_url(base, f),
        })).collect::<Vec<_>>(),
        "edited": m.edited.map(|(u, ts)| json!({"user": ws.user(u).id, "ts": fmt_ts(ts)})),
        "deleted": m.deleted,
    })
}
