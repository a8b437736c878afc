//! Graph `chatMessage` → the portable model and platform events, and the portable model →
//! the HTML body Switchboard posts.
//!
//! Odd messages (system events, app cards without text, messages without a sender, deleted
//! ones) are handled one by one: they become a `Deleted` event, a placeholder text, or are
//! skipped; they never fail the batch they arrived in.

use switchboard_core::{
    Attachment, Block, ChannelRef, Error, EventKind, Inline, MAX_TEXT_BYTES, MessageId,
    OutgoingMessage, PlatformEvent, PlatformKind, PortableMessage, RichText, Sender, UserId,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::html::{self, RenderedHtml, escape, is_safe_url};
use crate::wire::{ChatMessage, IdentitySet};

fn parse_time(s: Option<&str>) -> Option<OffsetDateTime> {
    s.and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
}

/// Whether a message is a user-visible message (not a system event, typing indicator, …).
pub fn is_user_message(msg: &ChatMessage) -> bool {
    match msg.message_type.as_deref() {
        None => true,
        Some(t) => t.eq_ignore_ascii_case("message"),
    }
}

fn sender_of(from: &IdentitySet) -> Option<Sender> {
    let who = from.user.as_ref().or(from.application.as_ref())?;
    let id = UserId::new(who.id.clone()?).ok()?;
    let display_name = who
        .display_name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| id.as_str().to_owned());
    Some(Sender {
        platform: PlatformKind::Msteams,
        user: id,
        display_name,
        avatar_url: None,
        email: None,
    })
}

/// The portable form of a message: the sender, the body as rich text, files as
/// attachments, and the thread root. `None` for messages without a usable sender (system
/// events).
pub fn portable_message(msg: &ChatMessage) -> Option<PortableMessage> {
    let sender = msg.from.as_ref().and_then(sender_of)?;
    let mut text = match &msg.body {
        Some(b)
            if b.content_type
                .as_deref()
                .is_some_and(|t| t.eq_ignore_ascii_case("text")) =>
        {
            html::from_plain_text(&b.content)
        }
        Some(b) => html::from_html(&b.content, &msg.mentions),
        None => RichText::default(),
    };
    let mut attachments = Vec::new();
    let mut cards = 0;
    for a in &msg.attachments {
        let ct = a.content_type.as_deref().unwrap_or("");
        match a.content_url.as_deref().filter(|u| is_safe_url(u)) {
            Some(url) if !ct.starts_with("application/vnd.microsoft.card") => {
                attachments.push(Attachment {
                    name: a
                        .name
                        .clone()
                        .filter(|n| !n.trim().is_empty())
                        .unwrap_or_else(|| "file".into()),
                    url: url.to_owned(),
                    mime_type: (!ct.is_empty() && ct != "reference").then(|| ct.to_owned()),
                    size: None,
                });
            }
            _ if ct.starts_with("application/vnd.microsoft.card") => cards += 1,
            _ => {}
        }
    }
    if text.is_empty() && attachments.is_empty() && cards > 0 {
        text = RichText {
            blocks: vec![Block::Paragraph {
                inlines: vec![Inline::Italic {
                    inlines: vec![Inline::Text {
                        text: "[a card that can only be shown in Teams]".into(),
                    }],
                }],
            }],
        };
    }
    let thread_root = msg
        .reply_to_id
        .as_deref()
        .filter(|r| !r.is_empty() && *r != msg.id)
        .and_then(|r| MessageId::new(r).ok());
    Some(PortableMessage {
        sender,
        text,
        attachments,
        thread_root,
    })
}

/// The event a message represents in `channel`: deleted, edited or posted. `None` for what
/// the relay should not see (system events, unparseable ids, messages without sender).
///
/// Event ids are stable per version (`msteams:{id}:posted`, `…:edited:{time}`,
/// `…:deleted`) so the same message seen through a notification and through delta is
/// deduplicated by the inbox.
pub fn message_event(channel: &ChannelRef, msg: &ChatMessage) -> Option<PlatformEvent> {
    if !is_user_message(msg) {
        return None;
    }
    let id = MessageId::new(msg.id.clone()).ok()?;
    let created = parse_time(msg.created_date_time.as_deref());
    if let Some(deleted) = msg.deleted_date_time.as_deref().filter(|d| !d.is_empty()) {
        return Some(PlatformEvent {
            event_id: format!("msteams:{id}:deleted"),
            channel: channel.clone(),
            occurred_at: parse_time(Some(deleted))
                .or(created)
                .unwrap_or_else(OffsetDateTime::now_utc),
            kind: EventKind::Deleted { message: id },
        });
    }
    let content = portable_message(msg)?;
    if let Some(edited) = msg
        .last_edited_date_time
        .as_deref()
        .filter(|d| !d.is_empty())
    {
        return Some(PlatformEvent {
            event_id: format!("msteams:{id}:edited:{edited}"),
            channel: channel.clone(),
            occurred_at: parse_time(Some(edited))
                .or(created)
                .unwrap_or_else(OffsetDateTime::now_utc),
            kind: EventKind::Edited {
                message: id,
                content,
            },
        });
    }
    Some(PlatformEvent {
        event_id: format!("msteams:{id}:posted"),
        channel: channel.clone(),
        occurred_at: created.unwrap_or_else(OffsetDateTime::now_utc),
        kind: EventKind::Posted {
            message: id,
            content,
        },
    })
}

/// The events of a message and its expanded replies, root first.
pub fn message_events(channel: &ChannelRef, msg: &ChatMessage) -> Vec<PlatformEvent> {
    let mut out = Vec::with_capacity(1 + msg.replies.len());
    out.extend(message_event(channel, msg));
    for r in &msg.replies {
        let mut r = r.clone();
        if r.reply_to_id.is_none() {
            r.reply_to_id = Some(msg.id.clone());
        }
        out.extend(message_event(channel, &r));
    }
    out
}

/// The HTML body of a post: the sender's name line when the post carries someone else's
/// words (Graph cannot post as another user), the content, files as links (never
/// silently dropped), and the marker (see [`marker_html`]). `InvalidInput` when there is nothing to post or it is over Graph's
/// size limit.
pub fn render_outgoing(
    message: &OutgoingMessage,
    attribution: bool,
) -> Result<RenderedHtml, Error> {
    render_outgoing_with(message, attribution, &[])
}

/// [`render_outgoing`] where some of `message.files` were uploaded into the channel's folder:
/// those (by index in `files`) are attached with `<attachment id>` instead of linked; the
/// body's `attachments` come from [`message_body_with`].
pub fn render_outgoing_with(
    message: &OutgoingMessage,
    attribution: bool,
    uploaded: &[(usize, crate::files::UploadedFile)],
) -> Result<RenderedHtml, Error> {
    let content = &message.content;
    if content.text.is_empty() && content.attachments.is_empty() && message.files.is_empty() {
        return Err(Error::invalid(
            "the message has no text and no files; nothing to post",
        ));
    }
    let mut rendered = html::to_html(&content.text);
    let mut out = String::with_capacity(rendered.html.len() + 128);
    if attribution {
        out.push_str("<p><b>");
        out.push_str(&escape(content.sender.display_name.trim()));
        out.push_str("</b> <i>(via ");
        out.push_str(content.sender.platform.display_name());
        out.push_str(")</i></p>");
    }
    out.push_str(&rendered.html);
    // the origin's attachments, then files handed over apart (never dropped: linked)
    let is_uploaded = |a: &switchboard_core::Attachment| {
        uploaded.iter().any(|(i, _)| {
            message
                .files
                .get(*i)
                .is_some_and(|f| f.attachment.url == a.url)
        })
    };
    let extra = message
        .files
        .iter()
        .map(|f| &f.attachment)
        .filter(|f| !content.attachments.iter().any(|a| a.url == f.url));
    for (_, u) in uploaded {
        out.push_str("<attachment id=\"");
        out.push_str(&escape(&u.id));
        out.push_str("\"></attachment>");
    }
    for a in content
        .attachments
        .iter()
        .chain(extra)
        .filter(|a| !is_uploaded(a))
    {
        out.push_str("<p>📎 ");
        if is_safe_url(&a.url) {
            out.push_str("<a href=\"");
            out.push_str(&escape(a.url.trim()));
            out.push_str("\">");
            out.push_str(&escape(&a.name));
            out.push_str("</a>");
        } else {
            out.push_str(&escape(&a.name));
        }
        out.push_str("</p>");
    }
    if let Some(m) = &message.marker {
        out.push_str(&marker_html(m));
    }
    if out.len() > MAX_TEXT_BYTES {
        return Err(Error::invalid(format!(
            "the message is {} bytes of HTML; Teams accepts about {} KB",
            out.len(),
            MAX_TEXT_BYTES / 1024
        )));
    }
    rendered.html = out;
    Ok(rendered)
}

/// The `itemid` prefix of the element carrying our marker.
pub const MARKER_PREFIX: &str = "switchboard:";

/// How a Teams copy carries its marker: an empty `<span>` whose `itemid` attribute is
/// `switchboard:{marker}`. Graph has no metadata field on channel messages, so the marker
/// lives in the body: an empty element shows nothing in Teams, and `itemid` is an attribute
/// Teams' own HTML uses (`<span itemscope itemtype=… itemid=…>` for mentions and cards), so
/// its sanitizer keeps it. Markers are restricted to `[A-Za-z0-9._:-]` (others are
/// dropped) so they never need escaping.
pub fn marker_html(marker: &str) -> String {
    let clean: String = marker
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))
        // a combined post's marker names each message it holds (about 40 characters each)
        .take(1024)
        .collect();
    format!("<span itemid=\"{MARKER_PREFIX}{clean}\"></span>")
}

/// The marker a message body carries ([`marker_html`]), when it carries one.
pub fn marker_of(html: &str) -> Option<String> {
    let needle = format!("itemid=\"{MARKER_PREFIX}");
    let start = html.find(&needle)? + needle.len();
    let rest = &html[start..];
    let end = rest.find('"')?;
    let m = &rest[..end];
    (!m.is_empty()
        && m.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
    .then(|| m.to_owned())
}

/// The JSON body of a post or edit.
pub fn message_body(rendered: &RenderedHtml) -> serde_json::Value {
    message_body_with(rendered, &[])
}

/// [`message_body`] with `reference` attachments for files uploaded into the channel folder.
pub fn message_body_with(
    rendered: &RenderedHtml,
    uploaded: &[(usize, crate::files::UploadedFile)],
) -> serde_json::Value {
    let mut body = message_body_plain(rendered);
    if !uploaded.is_empty() {
        body["attachments"] = serde_json::Value::Array(
            uploaded
                .iter()
                .map(|(_, u)| {
                    serde_json::json!({
                        "id": u.id,
                        "contentType": "reference",
                        "contentUrl": u.web_url,
                        "name": u.name,
                    })
                })
                .collect(),
        );
    }
    body
}

fn message_body_plain(rendered: &RenderedHtml) -> serde_json::Value {
    let mut body = serde_json::json!({
        "body": {"contentType": "html", "content": rendered.html},
    });
    if !rendered.mentions.is_empty() {
        body["mentions"] = serde_json::to_value(&rendered.mentions).unwrap_or_default();
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn channel() -> ChannelRef {
        "msteams:T1/19:c@thread.tacv2".parse().unwrap()
    }

    fn msg(v: serde_json::Value) -> ChatMessage {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn posted_edited_deleted_and_system_messages() {
        let base = json!({
            "id": "100", "messageType": "message", "createdDateTime": "2024-01-02T03:04:05.678Z",
            "from": {"user": {"id": "u1", "displayName": "Jane"}},
            "body": {"contentType": "html", "content": "<p>hi <at id=\"0\">Bob</at></p>"},
            "mentions": [{"id": 0, "mentionText": "Bob", "mentioned": {"user": {"id": "u2", "displayName": "Bob"}}}]
        });
        let ev = message_event(&channel(), &msg(base.clone())).unwrap();
        assert_eq!(ev.event_id, "msteams:100:posted");
        assert_eq!(ev.occurred_at.unix_timestamp(), 1_704_164_645);
        let EventKind::Posted { message, content } = &ev.kind else {
            panic!("{ev:?}")
        };
        assert_eq!(message.as_str(), "100");
        assert_eq!(content.sender.display_name, "Jane");
        assert_eq!(content.text.to_plain_text(), "hi @Bob");
        assert_eq!(content.text.mentioned_users()[0].as_str(), "u2");

        let mut edited = base.clone();
        edited["lastEditedDateTime"] = json!("2024-01-02T04:00:00Z");
        let ev = message_event(&channel(), &msg(edited)).unwrap();
        assert_eq!(ev.event_id, "msteams:100:edited:2024-01-02T04:00:00Z");
        assert!(matches!(ev.kind, EventKind::Edited { .. }));

        let mut deleted = base.clone();
        deleted["deletedDateTime"] = json!("2024-01-02T05:00:00Z");
        deleted["from"] = json!(null);
        let ev = message_event(&channel(), &msg(deleted)).unwrap();
        assert_eq!(ev.event_id, "msteams:100:deleted");
        assert!(matches!(ev.kind, EventKind::Deleted { .. }));

        let mut system = base.clone();
        system["messageType"] = json!("systemEventMessage");
        assert!(message_event(&channel(), &msg(system)).is_none());
        let mut nobody = base;
        nobody["from"] = json!(null);
        assert!(message_event(&channel(), &msg(nobody)).is_none());
    }

    #[test]
    fn replies_files_and_cards() {
        let m = msg(json!({
            "id": "200", "from": {"application": {"id": "app-1", "displayName": "Poll bot"}},
            "body": {"contentType": "html", "content": "<attachment id=\"c1\"></attachment>"},
            "attachments": [
                {"id": "c1", "contentType": "application/vnd.microsoft.card.adaptive", "content": "{}"},
                {"id": "f1", "contentType": "reference", "contentUrl": "https://contoso.sharepoint.com/f.pdf", "name": "f.pdf"},
                {"id": "f2", "contentType": "reference", "contentUrl": "javascript:alert(1)", "name": "x"}
            ],
            "replies": [{"id": "201", "from": {"user": {"id": "u1"}}, "body": {"contentType": "text", "content": "a\nb"}}]
        }));
        let evs = message_events(&channel(), &m);
        assert_eq!(evs.len(), 2);
        let EventKind::Posted { content, .. } = &evs[0].kind else {
            panic!()
        };
        assert_eq!(content.sender.user.as_str(), "app-1");
        assert_eq!(content.attachments.len(), 1);
        assert_eq!(content.attachments[0].name, "f.pdf");
        assert!(content.text.is_empty());
        let EventKind::Posted { content, .. } = &evs[1].kind else {
            panic!()
        };
        assert_eq!(content.thread_root.as_ref().unwrap().as_str(), "200");
        assert_eq!(content.text.to_plain_text(), "a\nb");
        let card_only = msg(json!({
            "id": "300", "from": {"user": {"id": "u1"}},
            "body": {"content": "<attachment id=\"c1\"></attachment>"},
            "attachments": [{"id": "c1", "contentType": "application/vnd.microsoft.card.hero"}]
        }));
        let EventKind::Posted { content, .. } = message_event(&channel(), &card_only).unwrap().kind
        else {
            panic!()
        };
        assert!(content.text.to_plain_text().contains("card"));
    }

    #[test]
    fn outgoing_html_has_attribution_files_and_limits() {
        let sender = Sender {
            platform: PlatformKind::Slack,
            user: UserId::new("U1").unwrap(),
            display_name: "Jane <Smith>".into(),
            avatar_url: None,
            email: None,
        };
        let out = OutgoingMessage {
            content: PortableMessage {
                sender: sender.clone(),
                text: RichText::plain("hello"),
                attachments: vec![Attachment {
                    name: "a&b.png".into(),
                    url: "https://files.slack.test/a.png".into(),
                    mime_type: None,
                    size: None,
                }],
                thread_root: None,
            },
            marker: None,
            reply_to: None,
            broadcast: false,
            post_as: switchboard_core::PostingIdentity::ServiceAccount,
            files: vec![],
        };
        let r = render_outgoing(&out, true).unwrap();
        assert_eq!(
            r.html,
            "<p><b>Jane &lt;Smith&gt;</b> <i>(via Slack)</i></p><p>hello</p><p>📎 <a href=\"https://files.slack.test/a.png\">a&amp;b.png</a></p>"
        );
        assert_eq!(render_outgoing(&out, false).unwrap().html.find("via"), None);
        let body = message_body(&r);
        assert_eq!(body["body"]["contentType"], "html");
        assert!(body.get("mentions").is_none());
        let mut big = out.clone();
        big.content.text = RichText::plain("x".repeat(MAX_TEXT_BYTES + 1));
        assert_eq!(
            render_outgoing(&big, false).unwrap_err().kind(),
            switchboard_core::ErrorKind::InvalidInput
        );
        let mut empty = out;
        empty.content.text = RichText::default();
        empty.content.attachments.clear();
        assert!(render_outgoing(&empty, true).is_err());
    }
}
