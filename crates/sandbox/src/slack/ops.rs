//! Changes to the workspace shared by the Web API and the control API. Each one emits its
//! Events API event(s) while holding the workspace lock, so events queue in change order.

use serde_json::{Value, json};

use super::SlackState;
use super::model::{Message, Reaction, Workspace, fmt_ts};
use super::render::{Flavor, message_json};

/// A message to post.
#[derive(Debug, Default)]
pub(crate) struct NewMessage {
    pub user: u32,
    pub text: String,
    pub blocks: Option<Value>,
    pub thread_ts: Option<u64>,
    pub reply_broadcast: bool,
    /// Post as the author's bot (`bot_id`, `app_id` set).
    pub as_bot: bool,
    pub username: Option<String>,
    pub icon_url: Option<String>,
    pub icon_emoji: Option<String>,
    pub metadata: Option<Value>,
    pub files: Vec<String>,
    pub subtype: Option<&'static str>,
}

/// The outcome of a post.
#[derive(Debug)]
pub(crate) struct Posted {
    pub channel_id: String,
    pub ts: u64,
    /// The message in Web API shape.
    pub message: Value,
}

fn channel_type(ws: &Workspace, ch: u32) -> &'static str {
    if ws.channel(ch).is_private {
        "group"
    } else {
        "channel"
    }
}

impl SlackState {
    /// Emits `event` for channel `ch` if the app can see it (its bot user is a member), or
    /// always when `force`.
    fn emit_in(&self, ws: &Workspace, ch: u32, event: Value, force: bool) {
        let c = ws.channel(ch);
        if force || c.members.contains(&ws.bot_user) {
            self.events.emit(&self.app, &c.id, event);
        }
    }

    fn message_event(&self, ws: &Workspace, base: &str, ch: u32, i: usize) -> Value {
        let c = ws.channel(ch);
        let m = &c.messages[i];
        let mut ev = message_json(ws, base, c, m, Flavor::Event);
        ev["channel"] = json!(c.id);
        ev["event_ts"] = json!(fmt_ts(m.ts));
        ev["channel_type"] = json!(channel_type(ws, ch));
        ev
    }

    /// Posts a message (membership and scope checks are the caller's).
    pub(crate) fn post(&self, base: &str, ch: u32, nm: NewMessage) -> Result<Posted, &'static str> {
        let mut guard = self.ws.write();
        let ws = &mut *guard;
        let c = ws.channel(ch);
        if c.is_archived {
            return Err("is_archived");
        }
        let parent = match nm.thread_ts {
            None => None,
            Some(t) => match c.find(t) {
                Some(i) if !c.messages[i].deleted => {
                    let m = &c.messages[i];
                    let root = if m.is_reply() {
                        m.thread_ts.unwrap_or(m.ts)
                    } else {
                        m.ts
                    };
                    match c.find(root) {
                        Some(r) if !c.messages[r].deleted => Some(r),
                        _ => return Err("thread_not_found"),
                    }
                }
                _ => return Err("thread_not_found"),
            },
        };
        let ts = ws.next_ts();
        let mut m = Message::new(ts, nm.user, nm.text);
        if nm.as_bot {
            if let Some(b) = ws.user(nm.user).bot_id() {
                m.bot_id = Some(b.to_owned());
                m.app_id = Some(self.app_id_of(ws, nm.user));
            }
        }
        m.username = nm.username;
        m.icon_url = nm.icon_url;
        m.icon_emoji = nm.icon_emoji;
        m.blocks = nm.blocks;
        m.metadata = nm.metadata;
        m.files = nm.files;
        m.subtype = nm.subtype;
        if m.bot_id.is_some()
            && m.subtype.is_none()
            && (m.username.is_some() || m.icon_url.is_some() || m.icon_emoji.is_some())
        {
            m.subtype = Some("bot_message");
        }
        let c = ws.channel_mut(ch);
        if let Some(p) = parent {
            let root_ts = c.messages[p].ts;
            m.thread_ts = Some(root_ts);
            if nm.reply_broadcast {
                m.subtype = Some("thread_broadcast");
            }
            let parent = &mut c.messages[p];
            parent.thread_ts = Some(root_ts);
            parent.replies.push(ts);
        }
        let file_ids = m.files.clone();
        c.messages.push(m);
        let i = c.messages.len() - 1;
        for id in &file_ids {
            if let Some(f) = ws.files.get_mut(id) {
                if !f.channels.contains(&ch) {
                    f.channels.push(ch);
                }
            }
        }
        let c = ws.channel(ch);
        let message = message_json(ws, base, c, &c.messages[i], Flavor::Api { metadata: false });
        let ev = self.message_event(ws, base, ch, i);
        self.emit_in(ws, ch, ev, false);
        Ok(Posted {
            channel_id: c.id.clone(),
            ts,
            message,
        })
    }

    fn app_id_of(&self, ws: &Workspace, user: u32) -> String {
        match &ws.user(user).kind {
            super::model::UserKind::Bot { app_id, .. } => app_id.clone(),
            super::model::UserKind::Person => self.app.app_id.clone(),
        }
    }

    /// Edits a message. `author`: only that user's messages may be edited.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn update(
        &self,
        base: &str,
        ch: u32,
        ts: u64,
        editor: u32,
        author: Option<u32>,
        text: Option<String>,
        blocks: Option<Value>,
        metadata: Option<Value>,
    ) -> Result<Value, &'static str> {
        let mut guard = self.ws.write();
        let ws = &mut *guard;
        let c = ws.channel(ch);
        let Some(i) = c.find(ts).filter(|i| !c.messages[*i].deleted) else {
            return Err("message_not_found");
        };
        if author.is_some_and(|a| c.messages[i].user != a) {
            return Err("cant_update_message");
        }
        if c.is_archived {
            return Err("is_archived");
        }
        if c.messages[i]
            .subtype
            .is_some_and(|s| s == "channel_join" || s == "channel_leave")
        {
            return Err("cant_update_message");
        }
        let previous = message_json(ws, base, c, &c.messages[i], Flavor::Event);
        let edit_ts = ws.next_ts();
        let c = ws.channel_mut(ch);
        let m = &mut c.messages[i];
        if let Some(t) = text {
            m.text = t;
        }
        if let Some(b) = blocks {
            m.blocks = Some(b);
        }
        if metadata.is_some() {
            m.metadata = metadata;
        }
        // chat.update takes no username / icons: the edited message shows the app's own
        // name and avatar afterwards, as on Slack.
        m.username = None;
        m.icon_url = None;
        m.icon_emoji = None;
        m.edited = Some((editor, edit_ts));
        let c = ws.channel(ch);
        let message = message_json(ws, base, c, &c.messages[i], Flavor::Event);
        let ev = json!({
            "type": "message",
            "subtype": "message_changed",
            "hidden": true,
            "channel": c.id,
            "ts": fmt_ts(edit_ts),
            "event_ts": fmt_ts(edit_ts),
            "channel_type": channel_type(ws, ch),
            "message": message,
            "previous_message": previous,
        });
        self.emit_in(ws, ch, ev, false);
        Ok(message_json(
            ws,
            base,
            c,
            &c.messages[i],
            Flavor::Api { metadata: false },
        ))
    }

    /// Deletes a message. `author`: only that user's messages may be deleted.
    pub(crate) fn delete(
        &self,
        base: &str,
        ch: u32,
        ts: u64,
        author: Option<u32>,
    ) -> Result<(), &'static str> {
        let mut guard = self.ws.write();
        let ws = &mut *guard;
        let c = ws.channel(ch);
        let Some(i) = c.find(ts).filter(|i| !c.messages[*i].deleted) else {
            return Err("message_not_found");
        };
        if author.is_some_and(|a| c.messages[i].user != a) {
            return Err("cant_delete_message");
        }
        if c.is_archived {
            return Err("is_archived");
        }
        let previous = message_json(ws, base, c, &c.messages[i], Flavor::Event);
        let event_ts = ws.next_ts();
        ws.channel_mut(ch).messages[i].deleted = true;
        let c = ws.channel(ch);
        let ev = json!({
            "type": "message",
            "subtype": "message_deleted",
            "hidden": true,
            "channel": c.id,
            "ts": fmt_ts(event_ts),
            "deleted_ts": fmt_ts(ts),
            "event_ts": fmt_ts(event_ts),
            "channel_type": channel_type(ws, ch),
            "previous_message": previous,
        });
        self.emit_in(ws, ch, ev, false);
        Ok(())
    }

    /// Adds (`add`) or removes a reaction.
    pub(crate) fn react(
        &self,
        ch: u32,
        ts: u64,
        user: u32,
        name: &str,
        add: bool,
    ) -> Result<(), &'static str> {
        let mut guard = self.ws.write();
        let ws = &mut *guard;
        let c = ws.channel(ch);
        let Some(i) = c.find(ts).filter(|i| !c.messages[*i].deleted) else {
            return Err("message_not_found");
        };
        if c.is_archived {
            return Err("is_archived");
        }
        let event_ts = ws.next_ts();
        let m = &mut ws.channel_mut(ch).messages[i];
        let pos = m.reactions.iter().position(|r| r.name == name);
        if add {
            match pos {
                Some(p) if m.reactions[p].users.contains(&user) => return Err("already_reacted"),
                Some(p) => m.reactions[p].users.push(user),
                None => m.reactions.push(Reaction {
                    name: name.to_owned(),
                    users: vec![user],
                }),
            }
        } else {
            match pos {
                Some(p) if m.reactions[p].users.contains(&user) => {
                    m.reactions[p].users.retain(|u| *u != user);
                    if m.reactions[p].users.is_empty() {
                        m.reactions.remove(p);
                    }
                }
                _ => return Err("no_reaction"),
            }
        }
        let author = m.user;
        let c = ws.channel(ch);
        let ev = json!({
            "type": if add { "reaction_added" } else { "reaction_removed" },
            "user": ws.user(user).id,
            "reaction": name,
            "item_user": ws.user(author).id,
            "item": {"type": "message", "channel": c.id, "ts": fmt_ts(ts)},
            "event_ts": fmt_ts(event_ts),
        });
        self.emit_in(ws, ch, ev, false);
        Ok(())
    }

    /// Adds `user` to channel `ch`. `Ok(false)` when already a member.
    pub(crate) fn join(&self, base: &str, ch: u32, user: u32) -> Result<bool, &'static str> {
        {
            let mut ws = self.ws.write();
            let c = ws.channel(ch);
            if c.is_archived {
                return Err("is_archived");
            }
            if c.members.contains(&user) {
                return Ok(false);
            }
            ws.channel_mut(ch).members.insert(user);
        }
        let uid = self.ws.read().user(user).id.clone();
        self.post(
            base,
            ch,
            NewMessage {
                user,
                text: format!("<@{uid}> has joined the channel"),
                subtype: Some("channel_join"),
                ..NewMessage::default()
            },
        )?;
        let mut guard = self.ws.write();
        let ws = &mut *guard;
        let event_ts = ws.next_ts();
        let c = ws.channel(ch);
        let ev = json!({
            "type": "member_joined_channel",
            "user": uid,
            "channel": c.id,
            "channel_type": if c.is_private { "G" } else { "C" },
            "team": ws.team_id,
            "event_ts": fmt_ts(event_ts),
        });
        self.emit_in(ws, ch, ev, false);
        Ok(true)
    }

    /// Removes `user` from channel `ch`. `Ok(false)` when not a member.
    pub(crate) fn leave(&self, base: &str, ch: u32, user: u32) -> Result<bool, &'static str> {
        {
            let ws = self.ws.read();
            let c = ws.channel(ch);
            if c.is_archived {
                return Err("is_archived");
            }
            if c.is_general {
                return Err("cant_leave_general");
            }
            if !c.members.contains(&user) {
                return Ok(false);
            }
        }
        let uid = self.ws.read().user(user).id.clone();
        self.post(
            base,
            ch,
            NewMessage {
                user,
                text: format!("<@{uid}> has left the channel"),
                subtype: Some("channel_leave"),
                ..NewMessage::default()
            },
        )?;
        let mut guard = self.ws.write();
        let ws = &mut *guard;
        ws.channel_mut(ch).members.remove(&user);
        let event_ts = ws.next_ts();
        let c = ws.channel(ch);
        let ev = json!({
            "type": "member_left_channel",
            "user": uid,
            "channel": c.id,
            "channel_type": if c.is_private { "G" } else { "C" },
            "team": ws.team_id,
            "event_ts": fmt_ts(event_ts),
        });
        let force = user == ws.bot_user;
        self.emit_in(ws, ch, ev, force);
        Ok(true)
    }
}
