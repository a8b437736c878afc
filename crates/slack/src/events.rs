//! Receiving from Slack: Events API request verification (the v0 HMAC-SHA256 signature over
//! the raw body, compared in constant time, within a 300 s window), typed parsing of the
//! request bodies (`url_verification`, `event_callback`, `app_rate_limited`) that tolerates
//! event types it does not know, and the translation into the core [`PlatformEvent`] with
//! our own posts recognised (bot user, bot id, app id, metadata marker).
//!
//! The server calls [`verify_signature`] then [`parse_request`]; Socket Mode payloads go
//! straight to [`parse_request`] (they are not signed: the socket is authenticated).

use std::fmt;

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use switchboard_core::{
    Attachment, ChannelId, ChannelRef, ConnectionSignal, EventKind, Inbound, MessageId,
    PlatformEvent, PlatformKind, PortableMessage, Route, RoutedItems, Sender, TeamId, UserId,
    WebhookEndpoint, WebhookOutcome, WebhookReceiver, WebhookRequest,
};
use time::OffsetDateTime;

use crate::emoji;
use crate::error::{Error, ErrorKind, Result};
use crate::mrkdwn;
use crate::types::MessageMetadata;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-slack-signature";
/// The timestamp header.
pub const TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";
/// Requests older or newer than this many seconds are refused (replay protection).
pub const MAX_SKEW_SECS: i64 = 300;
/// The largest request body accepted (Slack's event payloads are far smaller).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Why a request's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureError {
    /// No `X-Slack-Request-Timestamp`.
    MissingTimestamp,
    /// The timestamp is not a Unix time in seconds.
    MalformedTimestamp,
    /// The timestamp is more than [`MAX_SKEW_SECS`] from now.
    StaleTimestamp {
        /// Seconds between the timestamp and now.
        skew_secs: i64,
    },
    /// No `X-Slack-Signature`.
    MissingSignature,
    /// The signature is not `v0=` followed by 64 hex digits.
    MalformedSignature,
    /// The signature does not match the body.
    Mismatch,
    /// The body is larger than [`MAX_BODY_BYTES`].
    BodyTooLarge,
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignatureError::MissingTimestamp => f.write_str("missing X-Slack-Request-Timestamp"),
            SignatureError::MalformedTimestamp => {
                f.write_str("X-Slack-Request-Timestamp is not a Unix time")
            }
            SignatureError::StaleTimestamp { skew_secs } => write!(
                f,
                "X-Slack-Request-Timestamp is {skew_secs}s away from now (at most {MAX_SKEW_SECS}s allowed)"
            ),
            SignatureError::MissingSignature => f.write_str("missing X-Slack-Signature"),
            SignatureError::MalformedSignature => {
                f.write_str("X-Slack-Signature is not `v0=` and 64 hex digits")
            }
            SignatureError::Mismatch => f.write_str("X-Slack-Signature does not match the body"),
            SignatureError::BodyTooLarge => write!(f, "request body over {MAX_BODY_BYTES} bytes"),
        }
    }
}

impl std::error::Error for SignatureError {}

impl SignatureError {
    /// The core kind: [`ErrorKind::Unauthorized`], or [`ErrorKind::InvalidInput`] for an
    /// oversized body.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SignatureError::BodyTooLarge => ErrorKind::InvalidInput,
            _ => ErrorKind::Unauthorized,
        }
    }
}

impl From<SignatureError> for Error {
    fn from(e: SignatureError) -> Error {
        Error::new(e.kind(), format!("Slack request refused: {e}")).with_source(e)
    }
}

fn mac(secret: &SecretString, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac
}

/// The `X-Slack-Signature` value for a body: `v0=` + hex HMAC-SHA256 of
/// `v0:{timestamp}:{body}` under the signing secret.
pub fn compute_signature(signing_secret: &SecretString, timestamp: &str, body: &[u8]) -> String {
    format!(
        "v0={}",
        hex::encode(mac(signing_secret, timestamp, body).finalize().into_bytes())
    )
}

/// Checks a signature given as header values. `now_unix`: the current Unix time in seconds.
pub fn verify_signature_values(
    timestamp: Option<&str>,
    signature: Option<&str>,
    raw_body: &[u8],
    signing_secret: &SecretString,
    now_unix: i64,
) -> std::result::Result<(), SignatureError> {
    if raw_body.len() > MAX_BODY_BYTES {
        return Err(SignatureError::BodyTooLarge);
    }
    let timestamp = timestamp.ok_or(SignatureError::MissingTimestamp)?.trim();
    if timestamp.is_empty()
        || timestamp.len() > 12
        || !timestamp.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(SignatureError::MalformedTimestamp);
    }
    let ts: i64 = timestamp
        .parse()
        .map_err(|_| SignatureError::MalformedTimestamp)?;
    let skew = (now_unix - ts).abs();
    if skew > MAX_SKEW_SECS {
        return Err(SignatureError::StaleTimestamp { skew_secs: skew });
    }
    let signature = signature.ok_or(SignatureError::MissingSignature)?.trim();
    let hex_part = signature
        .strip_prefix("v0=")
        .ok_or(SignatureError::MalformedSignature)?;
    if hex_part.len() != 64 {
        return Err(SignatureError::MalformedSignature);
    }
    let expected = hex::decode(hex_part).map_err(|_| SignatureError::MalformedSignature)?;
    // `verify_slice` compares in constant time.
    mac(signing_secret, timestamp, raw_body)
        .verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

/// Checks an Events API request: the headers as received, the body exactly as received
/// (before any parsing), the app's signing secret and the current Unix time.
pub fn verify_signature(
    headers: &http::HeaderMap,
    raw_body: &[u8],
    signing_secret: &SecretString,
    now_unix: i64,
) -> std::result::Result<(), SignatureError> {
    let get = |name: &str| -> std::result::Result<Option<&str>, SignatureError> {
        match headers.get(name) {
            None => Ok(None),
            Some(v) => v.to_str().map(Some).map_err(|_| match name {
                TIMESTAMP_HEADER => SignatureError::MalformedTimestamp,
                _ => SignatureError::MalformedSignature,
            }),
        }
    };
    verify_signature_values(
        get(TIMESTAMP_HEADER)?,
        get(SIGNATURE_HEADER)?,
        raw_body,
        signing_secret,
        now_unix,
    )
}

/// The current Unix time, for [`verify_signature`].
pub fn now_unix() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

// ---------------------------------------------------------------------------------------
// Payloads
// ---------------------------------------------------------------------------------------

/// A file attached to a message.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SlackFile {
    /// `F…`.
    pub id: String,
    /// File name.
    #[serde(default)]
    pub name: Option<String>,
    /// Title.
    #[serde(default)]
    pub title: Option<String>,
    /// MIME type.
    #[serde(default)]
    pub mimetype: Option<String>,
    /// Size in bytes.
    #[serde(default)]
    pub size: Option<u64>,
    /// Download URL (needs the bot token).
    #[serde(default)]
    pub url_private: Option<String>,
    /// Download URL that forces a download (needs the bot token).
    #[serde(default)]
    pub url_private_download: Option<String>,
    /// Permanent link.
    #[serde(default)]
    pub permalink: Option<String>,
    /// `hosted`, `external`, `tombstone` (deleted), `hidden_by_limit` …
    #[serde(default)]
    pub mode: Option<String>,
    /// `check_file_info` for files delivered by id only (Slack Connect): read them with
    /// `files.info`.
    #[serde(default)]
    pub file_access: Option<String>,
}

/// The user profile Slack embeds in some message events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct EmbeddedProfile {
    /// Display name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Full name.
    #[serde(default)]
    pub real_name: Option<String>,
    /// 72 px avatar.
    #[serde(default)]
    pub image_72: Option<String>,
}

/// A message as it appears in message events (top level, or inside `message_changed`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct SlackMessage {
    /// The subtype (`bot_message`, `file_share`, `message_changed`, …); absent for plain
    /// user messages.
    #[serde(default)]
    pub subtype: Option<String>,
    /// The author.
    #[serde(default)]
    pub user: Option<String>,
    /// The posting bot.
    #[serde(default)]
    pub bot_id: Option<String>,
    /// The posting app.
    #[serde(default)]
    pub app_id: Option<String>,
    /// The name shown for bot messages (attribution).
    #[serde(default)]
    pub username: Option<String>,
    /// mrkdwn text.
    #[serde(default)]
    pub text: Option<String>,
    /// The message's timestamp: its id in the channel.
    #[serde(default)]
    pub ts: Option<String>,
    /// The thread root.
    #[serde(default)]
    pub thread_ts: Option<String>,
    /// Attached files.
    #[serde(default)]
    pub files: Vec<SlackFile>,
    /// Message metadata.
    #[serde(default)]
    pub metadata: Option<MessageMetadata>,
    /// The author's profile, when Slack embeds it.
    #[serde(default)]
    pub user_profile: Option<EmbeddedProfile>,
    /// Bot profile (name, icons) for bot messages.
    #[serde(default)]
    pub bot_profile: Option<Value>,
    /// Set when the message was edited.
    #[serde(default)]
    pub edited: Option<Value>,
}

/// A `message` event.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MessageEvent {
    /// The conversation.
    pub channel: String,
    /// `channel`, `group`, `im`, `mpim`.
    #[serde(default)]
    pub channel_type: Option<String>,
    /// When the event happened.
    #[serde(default)]
    pub event_ts: Option<String>,
    /// Hidden messages (changes, deletions) are not shown in the channel themselves.
    #[serde(default)]
    pub hidden: bool,
    /// The message fields (for `message_changed` and `message_deleted`, those of the event).
    #[serde(flatten)]
    pub message: SlackMessage,
    /// `message_changed`: the new version.
    #[serde(default, rename = "message")]
    pub changed: Option<SlackMessage>,
    /// `message_changed` / `message_deleted`: the version before.
    #[serde(default)]
    pub previous_message: Option<SlackMessage>,
    /// `message_deleted`: the deleted message's `ts`.
    #[serde(default)]
    pub deleted_ts: Option<String>,
}

/// What a message event is, by subtype.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MessageKind<'a> {
    /// A new message by a person (no subtype, `me_message`, `thread_broadcast`).
    New,
    /// A new message by a bot (`bot_message`).
    Bot,
    /// A new message sharing files (`file_share`).
    FileShare,
    /// An edit (`message_changed`): the new version.
    Changed(&'a SlackMessage),
    /// A deletion (`message_deleted`, or a `message_changed` to a tombstone): the `ts`.
    Deleted(&'a str),
    /// Any other subtype (joins, topic changes, …).
    Other(&'a str),
}

impl MessageEvent {
    /// Classifies the event by subtype.
    pub fn kind(&self) -> MessageKind<'_> {
        match self.message.subtype.as_deref() {
            None | Some("me_message") | Some("thread_broadcast") => MessageKind::New,
            Some("bot_message") => MessageKind::Bot,
            Some("file_share") => MessageKind::FileShare,
            Some("message_changed") => match &self.changed {
                Some(m) if m.subtype.as_deref() == Some("tombstone") => {
                    MessageKind::Deleted(m.ts.as_deref().unwrap_or(""))
                }
                Some(m) => MessageKind::Changed(m),
                None => MessageKind::Other("message_changed"),
            },
            Some("message_deleted") => MessageKind::Deleted(
                self.deleted_ts
                    .as_deref()
                    .or(self.previous_message.as_ref().and_then(|p| p.ts.as_deref()))
                    .unwrap_or(""),
            ),
            Some(other) => MessageKind::Other(other),
        }
    }
}

/// What a reaction was added to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ReactionItem {
    /// `message` or `file`.
    #[serde(rename = "type")]
    pub item_type: String,
    /// The message's channel.
    #[serde(default)]
    pub channel: Option<String>,
    /// The message's `ts`.
    #[serde(default)]
    pub ts: Option<String>,
}

/// `reaction_added` / `reaction_removed`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ReactionEvent {
    /// Who reacted.
    pub user: String,
    /// The emoji name, without colons (may carry `::skin-tone-N`).
    pub reaction: String,
    /// The author of the message reacted to.
    #[serde(default)]
    pub item_user: Option<String>,
    /// What was reacted to.
    pub item: ReactionItem,
    /// When.
    #[serde(default)]
    pub event_ts: Option<String>,
}

/// `member_joined_channel` / `member_left_channel`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MembershipEvent {
    /// Who.
    pub user: String,
    /// Which channel.
    pub channel: String,
    /// `C` public, `G` private.
    #[serde(default)]
    pub channel_type: Option<String>,
    /// The workspace.
    #[serde(default)]
    pub team: Option<String>,
    /// Who invited them, when someone did.
    #[serde(default)]
    pub inviter: Option<String>,
    /// When.
    #[serde(default)]
    pub event_ts: Option<String>,
}

/// An event of an `event_callback`.
#[derive(Debug, Clone, PartialEq)]
pub enum SlackEvent {
    /// `message` (every subtype).
    Message(Box<MessageEvent>),
    /// `reaction_added`.
    ReactionAdded(ReactionEvent),
    /// `reaction_removed`.
    ReactionRemoved(ReactionEvent),
    /// `member_joined_channel`.
    MemberJoinedChannel(MembershipEvent),
    /// `member_left_channel`.
    MemberLeftChannel(MembershipEvent),
    /// `app_uninstalled`: the app was removed from the workspace; its tokens are dead.
    AppUninstalled,
    /// `tokens_revoked`: some of the app's tokens were revoked (`tokens.oauth` / `.bot`).
    TokensRevoked {
        /// The revoked tokens' user ids, by kind (`oauth`, `bot`).
        tokens: Value,
    },
    /// A type this crate does not handle; kept so callers can log it.
    Other {
        /// The event's `type`.
        event_type: String,
    },
}

/// One authorization an event is visible to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EventAuthorization {
    /// Enterprise Grid id.
    #[serde(default)]
    pub enterprise_id: Option<String>,
    /// Workspace.
    #[serde(default)]
    pub team_id: Option<String>,
    /// The installing bot user.
    #[serde(default)]
    pub user_id: Option<String>,
    /// Whether that is a bot.
    #[serde(default)]
    pub is_bot: bool,
    /// Org-wide install.
    #[serde(default)]
    pub is_enterprise_install: bool,
}

/// An `event_callback` envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct EventCallback {
    /// The workspace.
    pub team_id: String,
    /// The Enterprise Grid organization, if any.
    pub enterprise_id: Option<String>,
    /// The app.
    pub api_app_id: Option<String>,
    /// Globally unique id: deduplicate on it (Slack retries).
    pub event_id: String,
    /// When the event was dispatched (Unix seconds).
    pub event_time: i64,
    /// The event.
    pub event: SlackEvent,
    /// Who the event is visible to.
    pub authorizations: Vec<EventAuthorization>,
}

/// A request body of the Events API (or a Socket Mode `events_api` payload).
#[derive(Debug, Clone, PartialEq)]
pub enum EventRequest {
    /// The endpoint check: answer 200 with the challenge.
    UrlVerification {
        /// Echo this back.
        challenge: String,
    },
    /// An event.
    EventCallback(Box<EventCallback>),
    /// Slack is dropping events for this app (30,000 per workspace per hour).
    AppRateLimited {
        /// The workspace.
        team_id: Option<String>,
        /// The minute that was limited (Unix seconds).
        minute_rate_limited: Option<i64>,
    },
    /// Another request type; answer 200 and ignore.
    Other {
        /// Its `type`.
        request_type: String,
    },
}

#[derive(Deserialize)]
struct RawEnvelope {
    #[serde(rename = "type")]
    kind: String,
    challenge: Option<String>,
    team_id: Option<String>,
    enterprise_id: Option<String>,
    api_app_id: Option<String>,
    event_id: Option<String>,
    event_time: Option<i64>,
    event: Option<Value>,
    #[serde(default)]
    authorizations: Vec<EventAuthorization>,
    minute_rate_limited: Option<i64>,
}

fn bad(msg: impl Into<String>) -> Error {
    Error::invalid(msg)
}

/// Parses an Events API body (already verified). Malformed JSON or a known event missing
/// required fields is [`ErrorKind::InvalidInput`]; unknown request and event types parse
/// to their `Other` variants.
pub fn parse_request(raw_body: &[u8]) -> Result<EventRequest> {
    if raw_body.len() > MAX_BODY_BYTES {
        return Err(bad(format!("Slack event body over {MAX_BODY_BYTES} bytes")));
    }
    let raw: RawEnvelope = serde_json::from_slice(raw_body)
        .map_err(|e| bad(format!("Slack event body is not a valid envelope: {e}")))?;
    parse_envelope(raw)
}

/// Parses an already decoded Events API body (e.g. a Socket Mode payload).
pub fn parse_request_value(value: Value) -> Result<EventRequest> {
    let raw: RawEnvelope = serde_json::from_value(value)
        .map_err(|e| bad(format!("Slack event payload is not a valid envelope: {e}")))?;
    parse_envelope(raw)
}

fn parse_envelope(raw: RawEnvelope) -> Result<EventRequest> {
    match raw.kind.as_str() {
        "url_verification" => Ok(EventRequest::UrlVerification {
            challenge: raw
                .challenge
                .ok_or_else(|| bad("url_verification without a challenge"))?,
        }),
        "app_rate_limited" => Ok(EventRequest::AppRateLimited {
            team_id: raw.team_id,
            minute_rate_limited: raw.minute_rate_limited,
        }),
        "event_callback" => {
            let event = raw
                .event
                .ok_or_else(|| bad("event_callback without an event"))?;
            Ok(EventRequest::EventCallback(Box::new(EventCallback {
                team_id: raw
                    .team_id
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| bad("event_callback without a team_id"))?,
                enterprise_id: raw.enterprise_id,
                api_app_id: raw.api_app_id,
                event_id: raw
                    .event_id
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| bad("event_callback without an event_id"))?,
                event_time: raw.event_time.unwrap_or(0),
                event: parse_event(event)?,
                authorizations: raw.authorizations,
            })))
        }
        other => Ok(EventRequest::Other {
            request_type: other.to_owned(),
        }),
    }
}

/// Parses the inner `event` object.
pub fn parse_event(event: Value) -> Result<SlackEvent> {
    let event_type = event
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("event without a type"))?
        .to_owned();
    fn typed<T: serde::de::DeserializeOwned>(t: &str, v: Value) -> Result<T> {
        serde_json::from_value(v).map_err(|e| bad(format!("malformed Slack {t} event: {e}")))
    }
    Ok(match event_type.as_str() {
        "message" => SlackEvent::Message(Box::new(typed(&event_type, event)?)),
        "reaction_added" => SlackEvent::ReactionAdded(typed(&event_type, event)?),
        "reaction_removed" => SlackEvent::ReactionRemoved(typed(&event_type, event)?),
        "member_joined_channel" => SlackEvent::MemberJoinedChannel(typed(&event_type, event)?),
        "member_left_channel" => SlackEvent::MemberLeftChannel(typed(&event_type, event)?),
        "app_uninstalled" => SlackEvent::AppUninstalled,
        "tokens_revoked" => SlackEvent::TokensRevoked {
            tokens: event.get("tokens").cloned().unwrap_or(Value::Null),
        },
        _ => SlackEvent::Other { event_type },
    })
}

// ---------------------------------------------------------------------------------------
// Translation into core events
// ---------------------------------------------------------------------------------------

/// Who "we" are on Slack, to drop our own posts (loop prevention).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnIdentity {
    /// Our bot user (`U…`).
    pub bot_user_id: Option<String>,
    /// Our bot (`B…`).
    pub bot_id: Option<String>,
    /// Our app (`A…`).
    pub app_id: Option<String>,
    /// The `metadata.event_type` we put on our posts.
    pub marker_event_type: String,
}

impl OwnIdentity {
    /// Whether `message` was posted by us.
    pub fn is_own(&self, message: &SlackMessage) -> bool {
        let eq =
            |a: &Option<String>, b: &Option<String>| matches!((a, b), (Some(a), Some(b)) if a == b);
        eq(&message.bot_id, &self.bot_id)
            || eq(&message.user, &self.bot_user_id)
            || eq(&message.app_id, &self.app_id)
            || message.metadata.as_ref().is_some_and(|m| {
                !self.marker_event_type.is_empty() && m.event_type == self.marker_event_type
            })
    }
}

/// What to do with an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Disposition {
    /// Relay it.
    Relay(Box<PlatformEvent>),
    /// We caused it (our own post, edit, delete, reaction or join): drop it.
    Own,
    /// Nothing to relay (unknown type, hidden subtype, unchanged edit …).
    Ignored(String),
    /// Something about the connection itself (the grant is gone).
    Signal(ConnectionSignal),
}

/// The time a Slack `ts` (`"1700000000.000100"`: seconds, then microseconds) stands for, to
/// the microsecond; `None` when it is not one.
pub(crate) fn ts_time(ts: &str) -> Option<OffsetDateTime> {
    let (secs, frac) = ts.split_once('.').unwrap_or((ts, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if secs.is_empty() || secs.len() > 12 || frac.len() > 9 || !digits(secs) || !digits(frac) {
        return None;
    }
    let mut nanos: i64 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    for _ in frac.len()..9 {
        nanos *= 10;
    }
    // Slack's ts carry microseconds: finer digits are not part of the order.
    let micros = nanos / 1_000;
    OffsetDateTime::from_unix_timestamp(secs.parse().ok()?)
        .ok()
        .map(|t| t + time::Duration::microseconds(micros))
}

fn message_id(ts: Option<&str>, what: &str) -> Result<MessageId> {
    MessageId::new(ts.unwrap_or_default())
        .map_err(|_| bad(format!("Slack {what} without a valid ts")))
}

fn nonempty(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The portable form of a Slack message.
pub fn portable_message(message: &SlackMessage) -> Result<PortableMessage> {
    let author = message
        .user
        .as_deref()
        .or(message.bot_id.as_deref())
        .ok_or_else(|| bad("Slack message without a user or bot_id"))?;
    let profile = message.user_profile.clone().unwrap_or_default();
    let bot_name = message
        .bot_profile
        .as_ref()
        .and_then(|b| b.get("name"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    // Slack's message events carry the user's id only: the name stays empty here (never the
    // raw id) and is filled in by `SlackConnection::resolve_sender` (users.info, cached).
    let display_name = nonempty(&profile.display_name)
        .or_else(|| nonempty(&profile.real_name))
        .or_else(|| nonempty(&message.username))
        .or(bot_name)
        .unwrap_or_default();
    let avatar_url = nonempty(&profile.image_72).or_else(|| {
        message
            .bot_profile
            .as_ref()
            .and_then(|b| b.pointer("/icons/image_72"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    let ts = message.ts.as_deref();
    let thread_root = match message.thread_ts.as_deref() {
        Some(root) if Some(root) != ts && !root.is_empty() => {
            Some(message_id(Some(root), "thread")?)
        }
        _ => None,
    };
    let attachments = message
        .files
        .iter()
        .filter(|f| !matches!(f.mode.as_deref(), Some("tombstone" | "hidden_by_limit")))
        .filter_map(|f| {
            // Slack Connect files come as {id, file_access:"check_file_info"}: keep them by
            // id; fetching reads files.info first (never dropped).
            let by_id = (!f.id.is_empty())
                .then(|| format!("{}{}", crate::connection::FILE_ID_SCHEME, f.id));
            let url = f
                .url_private_download
                .clone()
                .or_else(|| f.url_private.clone())
                .or_else(|| f.permalink.clone())
                .or(by_id)?;
            Some(Attachment {
                name: nonempty(&f.name)
                    .or_else(|| nonempty(&f.title))
                    .unwrap_or_else(|| f.id.clone()),
                url,
                mime_type: f.mimetype.clone(),
                size: f.size,
            })
        })
        .collect();
    Ok(PortableMessage {
        sender: Sender {
            platform: PlatformKind::Slack,
            user: UserId::new(author).map_err(|e| bad(format!("bad Slack author id: {e}")))?,
            display_name,
            avatar_url,
            email: None,
        },
        text: mrkdwn::from_mrkdwn(message.text.as_deref().unwrap_or("")),
        attachments,
        thread_root,
    })
}

/// Translates an `event_callback` into the core event the relay consumes, or says why not.
pub fn to_platform_event(callback: &EventCallback, own: &OwnIdentity) -> Result<Disposition> {
    let team = TeamId::new(&callback.team_id).map_err(|e| bad(format!("bad team_id: {e}")))?;
    let channel_ref = |channel: &str| -> Result<ChannelRef> {
        Ok(ChannelRef::new(
            PlatformKind::Slack,
            team.clone(),
            ChannelId::new(channel).map_err(|e| bad(format!("bad channel id: {e}")))?,
        ))
    };
    // The event's own `ts` (microseconds) first: the relay orders a channel's events by it,
    // and `event_time` has whole seconds only.
    let occurred = |precise_ts: Option<&str>| {
        precise_ts
            .and_then(ts_time)
            .or_else(|| {
                OffsetDateTime::from_unix_timestamp(callback.event_time)
                    .ok()
                    .filter(|_| callback.event_time > 0)
            })
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    };
    let event = |channel: ChannelRef, at: OffsetDateTime, kind: EventKind| {
        Disposition::Relay(Box::new(PlatformEvent {
            event_id: callback.event_id.clone(),
            channel,
            occurred_at: at,
            kind,
        }))
    };
    let own_user = |user: &str| own.bot_user_id.as_deref() == Some(user);
    match &callback.event {
        SlackEvent::Message(m) => {
            let channel = channel_ref(&m.channel)?;
            match m.kind() {
                MessageKind::New | MessageKind::Bot | MessageKind::FileShare => {
                    if own.is_own(&m.message) {
                        return Ok(Disposition::Own);
                    }
                    let ts = m.message.ts.as_deref();
                    Ok(event(
                        channel,
                        occurred(m.event_ts.as_deref().or(ts)),
                        EventKind::Posted {
                            message: message_id(ts, "message")?,
                            content: portable_message(&m.message)?,
                        },
                    ))
                }
                MessageKind::Changed(new) => {
                    if own.is_own(new) {
                        return Ok(Disposition::Own);
                    }
                    if let Some(prev) = &m.previous_message
                        && prev.text == new.text
                        && prev.files == new.files
                    {
                        return Ok(Disposition::Ignored(
                            "message_changed without a content change (unfurl, reply count …)"
                                .into(),
                        ));
                    }
                    Ok(event(
                        channel,
                        occurred(m.event_ts.as_deref().or(m.message.ts.as_deref())),
                        EventKind::Edited {
                            message: message_id(new.ts.as_deref(), "edited message")?,
                            content: portable_message(new)?,
                        },
                    ))
                }
                MessageKind::Deleted(ts) => {
                    if m.previous_message.as_ref().is_some_and(|p| own.is_own(p)) {
                        return Ok(Disposition::Own);
                    }
                    Ok(event(
                        channel,
                        occurred(m.event_ts.as_deref().or(m.message.ts.as_deref())),
                        EventKind::Deleted {
                            message: message_id(Some(ts), "deleted message")?,
                        },
                    ))
                }
                MessageKind::Other(subtype) => {
                    Ok(Disposition::Ignored(format!("message subtype {subtype}")))
                }
            }
        }
        SlackEvent::ReactionAdded(r) | SlackEvent::ReactionRemoved(r) => {
            if r.item.item_type != "message" {
                return Ok(Disposition::Ignored(format!(
                    "reaction to a {}",
                    r.item.item_type
                )));
            }
            if own_user(&r.user) {
                return Ok(Disposition::Own);
            }
            let channel = channel_ref(r.item.channel.as_deref().unwrap_or_default())?;
            let message = message_id(r.item.ts.as_deref(), "reaction item")?;
            let user = UserId::new(&r.user).map_err(|e| bad(format!("bad reacting user: {e}")))?;
            let emoji = emoji::from_slack_name(&r.reaction);
            let kind = if matches!(callback.event, SlackEvent::ReactionAdded(_)) {
                EventKind::ReactionAdded {
                    message,
                    user,
                    emoji,
                }
            } else {
                EventKind::ReactionRemoved {
                    message,
                    user,
                    emoji,
                }
            };
            Ok(event(channel, occurred(r.event_ts.as_deref()), kind))
        }
        SlackEvent::MemberJoinedChannel(j) | SlackEvent::MemberLeftChannel(j) => {
            if own_user(&j.user) {
                return Ok(Disposition::Own);
            }
            let channel = channel_ref(&j.channel)?;
            let user = UserId::new(&j.user).map_err(|e| bad(format!("bad member id: {e}")))?;
            let kind = if matches!(callback.event, SlackEvent::MemberJoinedChannel(_)) {
                EventKind::MemberJoined { user }
            } else {
                EventKind::MemberLeft { user }
            };
            Ok(event(channel, occurred(j.event_ts.as_deref()), kind))
        }
        SlackEvent::AppUninstalled => Ok(Disposition::Signal(ConnectionSignal::GrantRevoked {
            reason: "Slack: app_uninstalled (the app was removed from the workspace)".into(),
        })),
        SlackEvent::TokensRevoked { tokens } => {
            let bot_revoked = tokens
                .get("bot")
                .and_then(Value::as_array)
                .is_some_and(|b| !b.is_empty());
            let ours = own.bot_user_id.as_deref().is_none_or(|me| {
                tokens
                    .get("bot")
                    .and_then(Value::as_array)
                    .is_some_and(|b| b.iter().any(|u| u.as_str() == Some(me)))
            });
            if bot_revoked && ours {
                Ok(Disposition::Signal(ConnectionSignal::GrantRevoked {
                    reason: "Slack: tokens_revoked (the bot token was revoked)".into(),
                }))
            } else {
                Ok(Disposition::Ignored(
                    "tokens_revoked for user tokens only".into(),
                ))
            }
        }
        SlackEvent::Other { event_type } => {
            Ok(Disposition::Ignored(format!("event type {event_type}")))
        }
    }
}

/// The core items of an `event_callback` (none for our own posts and ignored events).
/// `thread_broadcast` ("also send to channel") is a reply: it keeps its `thread_root`
/// (the portable model has no "also in the channel" flag yet).
pub fn inbound_items(callback: &EventCallback, own: &OwnIdentity) -> Result<Vec<Inbound>> {
    Ok(match to_platform_event(callback, own)? {
        Disposition::Relay(e) => vec![Inbound::Event(*e)],
        Disposition::Signal(s) => vec![Inbound::Signal(s)],
        Disposition::Own => Vec::new(),
        Disposition::Ignored(why) => {
            tracing::trace!(event_id = %callback.event_id, why, "Slack event not relayed");
            Vec::new()
        }
    })
}

/// What the receiver knows of "us" per workspace, for loop prevention without API calls.
pub trait OwnIdentities: Send + Sync + fmt::Debug {
    /// Our bot in `team`, when the connection is open (the server caches
    /// [`SlackConnection::own_identity`](crate::SlackConnection::own_identity) per
    /// connection).
    fn own_identity(&self, team: &TeamId) -> Option<OwnIdentity>;
}

/// A shared map of [`OwnIdentity`] per workspace: the server inserts one when it opens a
/// connection and removes it when the connection goes.
#[derive(Debug, Default)]
pub struct OwnIdentityCache {
    map: RwLock<HashMap<TeamId, OwnIdentity>>,
}

impl OwnIdentityCache {
    /// Remembers our identity in `team`.
    pub fn insert(&self, team: TeamId, own: OwnIdentity) {
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(team, own);
    }

    /// Forgets `team`.
    pub fn remove(&self, team: &TeamId) {
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(team);
    }
}

impl OwnIdentities for OwnIdentityCache {
    fn own_identity(&self, team: &TeamId) -> Option<OwnIdentity> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(team)
            .cloned()
    }
}

/// The Events API receiver of one Slack app (`POST /webhooks/slack/events`).
///
/// It verifies the v0 signature over the raw body within 300 s of the request's
/// `received_at`, answers `url_verification` with a handshake, and turns `event_callback`s
/// into [`Inbound`] items routed by workspace (`Route::Workspace`), acknowledged with 200.
/// It makes no API calls: our own posts are recognised with the [`OwnIdentity`] the server
/// caches per connection ([`OwnIdentities`]); for a workspace without one, by our app id and
/// the metadata marker. Senders' names are filled in later, off the acknowledgement path
/// ([`SlackConnection::resolve_sender`](crate::SlackConnection::resolve_sender)). Slack
/// retries carry the same `event_id`: the inbox deduplicates on it.
pub struct SlackEventsReceiver {
    signing_secret: SecretString,
    app_id: Option<String>,
    marker_event_type: String,
    identities: Arc<dyn OwnIdentities>,
}

impl fmt::Debug for SlackEventsReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackEventsReceiver")
            .field("signing_secret", &"<redacted>")
            .field("app_id", &self.app_id)
            .field("identities", &self.identities)
            .finish()
    }
}

impl SlackEventsReceiver {
    /// A receiver for the app with `signing_secret` (and `app_id`, when known).
    pub fn new(
        signing_secret: SecretString,
        app_id: Option<String>,
        identities: Arc<dyn OwnIdentities>,
    ) -> SlackEventsReceiver {
        SlackEventsReceiver {
            signing_secret,
            app_id,
            marker_event_type: crate::config::MARKER_EVENT_TYPE.to_owned(),
            identities,
        }
    }

    /// Parses a verified body into the outcome (also used for Socket Mode payloads, which
    /// are not signed).
    pub fn outcome(&self, request: EventRequest) -> Result<WebhookOutcome> {
        let accept = |routed: Vec<RoutedItems>| WebhookOutcome::Accept {
            routed,
            status: 200,
        };
        match request {
            EventRequest::UrlVerification { challenge } => Ok(WebhookOutcome::Handshake {
                content_type: "text/plain",
                body: challenge,
            }),
            EventRequest::EventCallback(cb) => {
                let team =
                    TeamId::new(&cb.team_id).map_err(|e| bad(format!("bad team_id: {e}")))?;
                let own = self
                    .identities
                    .own_identity(&team)
                    .unwrap_or_else(|| OwnIdentity {
                        bot_user_id: cb
                            .authorizations
                            .iter()
                            .find(|a| a.is_bot && a.team_id.as_deref() == Some(cb.team_id.as_str()))
                            .and_then(|a| a.user_id.clone()),
                        bot_id: None,
                        app_id: self.app_id.clone().or_else(|| cb.api_app_id.clone()),
                        marker_event_type: self.marker_event_type.clone(),
                    });
                let items = inbound_items(&cb, &own)?;
                Ok(accept(if items.is_empty() {
                    Vec::new()
                } else {
                    vec![RoutedItems {
                        route: Route::Workspace { team },
                        items,
                    }]
                }))
            }
            EventRequest::AppRateLimited {
                team_id,
                minute_rate_limited,
            } => {
                let Some(team) = team_id.as_deref().and_then(|t| TeamId::new(t).ok()) else {
                    return Ok(accept(Vec::new()));
                };
                let since = minute_rate_limited
                    .and_then(|m| OffsetDateTime::from_unix_timestamp(m).ok())
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH);
                Ok(accept(vec![RoutedItems {
                    route: Route::Workspace { team },
                    items: vec![Inbound::Signal(ConnectionSignal::EventsDropped { since })],
                }]))
            }
            EventRequest::Other { request_type } => {
                tracing::debug!(request_type, "Slack request type not handled; acknowledged");
                Ok(accept(Vec::new()))
            }
        }
    }
}

#[async_trait]
impl WebhookReceiver for SlackEventsReceiver {
    async fn receive(&self, request: &WebhookRequest<'_>) -> Result<WebhookOutcome> {
        if request.endpoint != WebhookEndpoint::SlackEvents {
            return Err(bad(format!(
                "the Slack receiver does not serve {:?}",
                request.endpoint
            )));
        }
        verify_signature_values(
            request.header(TIMESTAMP_HEADER),
            request.header(SIGNATURE_HEADER),
            request.body,
            &self.signing_secret,
            request.received_at.unix_timestamp(),
        )?;
        self.outcome(parse_request(request.body)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const DOC_TS: &str = "1531420618";
    const DOC_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const DOC_SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    fn secret() -> SecretString {
        SecretString::from(DOC_SECRET)
    }

    fn headers(ts: &str, sig: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(TIMESTAMP_HEADER, ts.parse().unwrap());
        h.insert(SIGNATURE_HEADER, sig.parse().unwrap());
        h
    }

    #[test]
    fn slacks_documented_test_vector_verifies() {
        assert_eq!(
            compute_signature(&secret(), DOC_TS, DOC_BODY.as_bytes()),
            DOC_SIG
        );
        let now = DOC_TS.parse::<i64>().unwrap() + 10;
        verify_signature(
            &headers(DOC_TS, DOC_SIG),
            DOC_BODY.as_bytes(),
            &secret(),
            now,
        )
        .unwrap();
        // Exactly at the window's edge is still accepted; one second past is not.
        let edge = DOC_TS.parse::<i64>().unwrap() + MAX_SKEW_SECS;
        assert!(
            verify_signature(
                &headers(DOC_TS, DOC_SIG),
                DOC_BODY.as_bytes(),
                &secret(),
                edge
            )
            .is_ok()
        );
    }

    #[test]
    fn stale_and_future_timestamps_are_refused() {
        let ts = DOC_TS.parse::<i64>().unwrap();
        let err = verify_signature(
            &headers(DOC_TS, DOC_SIG),
            DOC_BODY.as_bytes(),
            &secret(),
            ts + MAX_SKEW_SECS + 1,
        )
        .unwrap_err();
        assert_eq!(err, SignatureError::StaleTimestamp { skew_secs: 301 });
        assert!(matches!(
            verify_signature(
                &headers(DOC_TS, DOC_SIG),
                DOC_BODY.as_bytes(),
                &secret(),
                ts - 3600
            ),
            Err(SignatureError::StaleTimestamp { .. })
        ));
        let core: Error = err.into();
        assert_eq!(core.kind(), ErrorKind::Unauthorized);
    }

    #[test]
    fn tampered_bodies_and_wrong_secrets_are_refused() {
        let now = DOC_TS.parse::<i64>().unwrap();
        let tampered = DOC_BODY.replace("roadrunner", "coyote");
        assert_eq!(
            verify_signature(
                &headers(DOC_TS, DOC_SIG),
                tampered.as_bytes(),
                &secret(),
                now
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(
                &headers(DOC_TS, DOC_SIG),
                DOC_BODY.as_bytes(),
                &SecretString::from("another-secret"),
                now
            ),
            Err(SignatureError::Mismatch)
        );
        // The timestamp is signed too: a replay with a fresh timestamp fails.
        let fresh = (now + 5).to_string();
        assert_eq!(
            verify_signature(
                &headers(&fresh, DOC_SIG),
                DOC_BODY.as_bytes(),
                &secret(),
                now
            ),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn malformed_and_missing_headers_are_refused() {
        let now = DOC_TS.parse::<i64>().unwrap();
        let body = DOC_BODY.as_bytes();
        let cases: Vec<(http::HeaderMap, SignatureError)> = vec![
            (http::HeaderMap::new(), SignatureError::MissingTimestamp),
            (
                headers("not-a-time", DOC_SIG),
                SignatureError::MalformedTimestamp,
            ),
            (
                headers("-1531420618", DOC_SIG),
                SignatureError::MalformedTimestamp,
            ),
            (
                headers(
                    DOC_TS,
                    "a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
                ),
                SignatureError::MalformedSignature,
            ),
            (
                headers(
                    DOC_TS,
                    "v1=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
                ),
                SignatureError::MalformedSignature,
            ),
            (
                headers(
                    DOC_TS,
                    "v0=zz14d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
                ),
                SignatureError::MalformedSignature,
            ),
            (
                headers(DOC_TS, "v0=a2114d"),
                SignatureError::MalformedSignature,
            ),
            (headers(DOC_TS, "v0="), SignatureError::MalformedSignature),
        ];
        for (h, expected) in cases {
            assert_eq!(verify_signature(&h, body, &secret(), now), Err(expected));
        }
        let mut only_ts = http::HeaderMap::new();
        only_ts.insert(TIMESTAMP_HEADER, DOC_TS.parse().unwrap());
        assert_eq!(
            verify_signature(&only_ts, body, &secret(), now),
            Err(SignatureError::MissingSignature)
        );
        let mut non_ascii = http::HeaderMap::new();
        non_ascii.insert(TIMESTAMP_HEADER, DOC_TS.parse().unwrap());
        non_ascii.insert(
            SIGNATURE_HEADER,
            http::HeaderValue::from_bytes(b"v0=\xff\xfe").unwrap(),
        );
        assert_eq!(
            verify_signature(&non_ascii, body, &secret(), now),
            Err(SignatureError::MalformedSignature)
        );
        let big = vec![b'a'; MAX_BODY_BYTES + 1];
        assert_eq!(
            verify_signature(&headers(DOC_TS, DOC_SIG), &big, &secret(), now),
            Err(SignatureError::BodyTooLarge)
        );
    }

    fn own() -> OwnIdentity {
        OwnIdentity {
            bot_user_id: Some("UBOT".into()),
            bot_id: Some("BBOT".into()),
            app_id: Some("AAPP".into()),
            marker_event_type: crate::config::MARKER_EVENT_TYPE.into(),
        }
    }

    fn callback(event: Value) -> EventCallback {
        let body = serde_json::json!({
            "token": "x", "team_id": "T1", "api_app_id": "AAPP", "type": "event_callback",
            "event_id": "Ev1", "event_time": 1_700_000_000, "authed_users": ["UBOT"],
            "event": event,
        });
        match parse_request(body.to_string().as_bytes()).unwrap() {
            EventRequest::EventCallback(cb) => *cb,
            other => panic!("{other:?}"),
        }
    }

    fn relay(d: Disposition) -> PlatformEvent {
        match d {
            Disposition::Relay(e) => *e,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    #[test]
    fn grant_signals_broadcast_replies_and_id_only_files() {
        use serde_json::json;
        let d = to_platform_event(&callback(json!({"type": "app_uninstalled"})), &own()).unwrap();
        assert!(
            matches!(
                d,
                Disposition::Signal(ConnectionSignal::GrantRevoked { .. })
            ),
            "{d:?}"
        );
        let revoked =
            callback(json!({"type": "tokens_revoked", "tokens": {"oauth": [], "bot": ["UBOT"]}}));
        assert!(matches!(
            to_platform_event(&revoked, &own()).unwrap(),
            Disposition::Signal(ConnectionSignal::GrantRevoked { .. })
        ));
        let users_only = callback(json!({"type": "tokens_revoked", "tokens": {"oauth": ["U7"]}}));
        assert!(matches!(
            to_platform_event(&users_only, &own()).unwrap(),
            Disposition::Ignored(_)
        ));
        // thread_broadcast: a reply (also shown in the channel) keeps its thread root
        let b = relay(
            to_platform_event(
                &callback(
                    json!({"type": "message", "subtype": "thread_broadcast", "channel": "C1",
                    "user": "U1", "text": "also here", "ts": "1700000002.000200",
                    "thread_ts": "1700000001.000100"}),
                ),
                &own(),
            )
            .unwrap(),
        );
        let EventKind::Posted { content, .. } = &b.kind else {
            panic!("{b:?}")
        };
        assert_eq!(
            content.thread_root.as_ref().unwrap().as_str(),
            "1700000001.000100"
        );
        // a name is never the raw id: empty until resolved through users.info
        assert_eq!(content.sender.display_name, "");
        // Slack Connect: files by id only are kept, to be read with files.info
        let f = relay(
            to_platform_event(
                &callback(
                    json!({"type": "message", "subtype": "file_share", "channel": "C1",
                    "user": "U1", "text": "", "ts": "1700000003.000300",
                    "files": [{"id": "F9", "file_access": "check_file_info"}]}),
                ),
                &own(),
            )
            .unwrap(),
        );
        let EventKind::Posted { content, .. } = &f.kind else {
            panic!("{f:?}")
        };
        assert_eq!(content.attachments.len(), 1);
        assert_eq!(content.attachments[0].url, "slack-file:F9");
    }

    #[tokio::test]
    async fn the_receiver_verifies_routes_and_answers_handshakes() {
        use serde_json::json;
        let secret = SecretString::from("8f742231b10e8888abcd99yyyzzz85a5".to_owned());
        let cache = Arc::new(OwnIdentityCache::default());
        cache.insert(TeamId::new("T1").unwrap(), own());
        let rx = SlackEventsReceiver::new(secret.clone(), Some("AAPP".into()), cache);
        let at = OffsetDateTime::from_unix_timestamp(1_700_000_100).unwrap();
        let send = |body: String, signed_at: i64| {
            let ts = signed_at.to_string();
            let sig = compute_signature(&secret, &ts, body.as_bytes());
            (
                body,
                vec![
                    ("X-Slack-Request-Timestamp".to_owned(), ts),
                    ("X-Slack-Signature".to_owned(), sig),
                ],
            )
        };
        async fn receive_on(
            rx: &SlackEventsReceiver,
            body: &(String, Vec<(String, String)>),
            at: OffsetDateTime,
        ) -> Result<WebhookOutcome> {
            let req = WebhookRequest {
                endpoint: WebhookEndpoint::SlackEvents,
                query: "",
                headers: &body.1,
                body: body.0.as_bytes(),
                received_at: at,
            };
            rx.receive(&req).await
        }
        let hs = send(
            json!({"type": "url_verification", "challenge": "c-1"}).to_string(),
            1_700_000_000,
        );
        assert_eq!(
            receive_on(&rx, &hs, at).await.unwrap(),
            WebhookOutcome::Handshake {
                content_type: "text/plain",
                body: "c-1".into()
            }
        );
        // 300 s window against received_at
        assert_eq!(
            receive_on(&rx, &hs, at + time::Duration::seconds(201))
                .await
                .unwrap_err()
                .kind(),
            ErrorKind::Unauthorized
        );
        let ev = send(json!({"type": "event_callback", "team_id": "T1", "api_app_id": "AAPP",
            "event_id": "Ev9", "event_time": 1_700_000_000,
            "event": {"type": "message", "channel": "C1", "user": "U1", "text": "hi", "ts": "1700000000.000100"}}).to_string(), 1_700_000_050);
        let WebhookOutcome::Accept { routed, status } = receive_on(&rx, &ev, at).await.unwrap()
        else {
            panic!()
        };
        assert_eq!(status, 200);
        assert_eq!(routed.len(), 1);
        assert_eq!(
            routed[0].route,
            Route::Workspace {
                team: TeamId::new("T1").unwrap()
            }
        );
        assert_eq!(routed[0].items[0].dedupe_key(), Some("Ev9"));
        let own_post = send(json!({"type": "event_callback", "team_id": "T1", "event_id": "Ev10",
            "event": {"type": "message", "subtype": "bot_message", "channel": "C1", "bot_id": "BBOT", "text": "x", "ts": "1700000000.000200"}}).to_string(), 1_700_000_050);
        let WebhookOutcome::Accept { routed, .. } = receive_on(&rx, &own_post, at).await.unwrap()
        else {
            panic!()
        };
        assert!(routed.is_empty(), "our own post is dropped");
        let limited = send(json!({"type": "app_rate_limited", "team_id": "T1", "minute_rate_limited": 1_700_000_040}).to_string(), 1_700_000_050);
        let WebhookOutcome::Accept { routed, .. } = receive_on(&rx, &limited, at).await.unwrap()
        else {
            panic!()
        };
        assert!(matches!(
            routed[0].items[0],
            Inbound::Signal(ConnectionSignal::EventsDropped { .. })
        ));
        let mut tampered = ev.clone();
        tampered.0.push(' ');
        assert_eq!(
            receive_on(&rx, &tampered, at).await.unwrap_err().kind(),
            ErrorKind::Unauthorized
        );
    }

    #[test]
    fn url_verification_rate_limits_and_unknown_types() {
        let r =
            parse_request(br#"{"token":"t","challenge":"3eZbrw1aB","type":"url_verification"}"#)
                .unwrap();
        assert_eq!(
            r,
            EventRequest::UrlVerification {
                challenge: "3eZbrw1aB".into()
            }
        );
        let r = parse_request(br#"{"type":"app_rate_limited","team_id":"T1","minute_rate_limited":1518467820,"api_app_id":"A1"}"#).unwrap();
        assert!(matches!(
            r,
            EventRequest::AppRateLimited {
                minute_rate_limited: Some(1518467820),
                ..
            }
        ));
        assert!(matches!(
            parse_request(br#"{"type":"something_new"}"#).unwrap(),
            EventRequest::Other { .. }
        ));
        let cb = callback(serde_json::json!({"type": "app_home_opened", "user": "U1"}));
        assert_eq!(
            cb.event,
            SlackEvent::Other {
                event_type: "app_home_opened".into()
            }
        );
        assert!(matches!(
            to_platform_event(&cb, &own()).unwrap(),
            Disposition::Ignored(_)
        ));
        for bad_body in [
            &b"not json"[..],
            br#"{"no":"type"}"#,
            br#"{"type":"url_verification"}"#,
            br#"{"type":"event_callback","team_id":"T1","event_id":"E"}"#,
            br#"{"type":"event_callback","team_id":"T1","event_id":"E","event":{"type":"message"}}"#,
            br#"{"type":"event_callback","team_id":"T1","event_id":"E","event":{"no":"type"}}"#,
        ] {
            let e = parse_request(bad_body).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        }
    }

    #[test]
    fn ts_times_are_exact_to_the_microsecond_and_total() {
        let t = ts_time("1700000000.000100").unwrap();
        assert_eq!((t.unix_timestamp(), t.microsecond()), (1_700_000_000, 100));
        assert_eq!(ts_time("1.1").unwrap().microsecond(), 100_000);
        assert_eq!(ts_time("5").unwrap().unix_timestamp(), 5);
        assert!(ts_time("999.1").unwrap() < ts_time("1000.0").unwrap());
        for bad in [
            "",
            ".1",
            "1.x",
            "a€€.1",
            "1.€€",
            "1.1234567890",
            "-1.0",
            "99999999999999.0",
        ] {
            assert_eq!(ts_time(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_user_message_becomes_posted() {
        let cb = callback(serde_json::json!({
            "type": "message", "channel": "C1", "user": "U7", "text": "hi *there* <@U8>",
            "ts": "1700000000.000100", "event_ts": "1700000000.000100", "channel_type": "channel",
            "user_profile": {"display_name": "jane", "real_name": "Jane Doe", "image_72": "https://a/72.png"}
        }));
        assert_eq!(cb.event_id, "Ev1");
        let ev = relay(to_platform_event(&cb, &own()).unwrap());
        assert_eq!(ev.event_id, "Ev1");
        assert_eq!(ev.channel.to_string(), "slack:T1/C1");
        assert_eq!(ev.occurred_at.unix_timestamp(), 1_700_000_000);
        // To the microsecond of the ts (event_time has whole seconds): the relay orders by it.
        assert_eq!(ev.occurred_at.microsecond(), 100);
        let EventKind::Posted { message, content } = ev.kind else {
            panic!()
        };
        assert_eq!(message.as_str(), "1700000000.000100");
        assert_eq!(content.sender.user.as_str(), "U7");
        assert_eq!(content.sender.display_name, "jane");
        assert_eq!(
            content.sender.avatar_url.as_deref(),
            Some("https://a/72.png")
        );
        assert_eq!(content.thread_root, None);
        assert_eq!(content.text.to_plain_text(), "hi there @U8");
    }

    #[test]
    fn replies_file_shares_and_bot_messages() {
        let reply = callback(serde_json::json!({
            "type": "message", "channel": "C1", "user": "U7", "text": "reply",
            "ts": "1700000001.000200", "thread_ts": "1700000000.000100"
        }));
        let EventKind::Posted { content, .. } =
            relay(to_platform_event(&reply, &own()).unwrap()).kind
        else {
            panic!()
        };
        assert_eq!(content.thread_root.unwrap().as_str(), "1700000000.000100");

        let share = callback(serde_json::json!({
            "type": "message", "subtype": "file_share", "channel": "C1", "user": "U7", "text": "see",
            "ts": "1700000002.000300",
            "files": [
                {"id": "F1", "name": "a.png", "mimetype": "image/png", "size": 10, "url_private": "https://files/a", "url_private_download": "https://files/a?dl"},
                {"id": "F2", "mode": "tombstone"}
            ]
        }));
        let EventKind::Posted { content, .. } =
            relay(to_platform_event(&share, &own()).unwrap()).kind
        else {
            panic!()
        };
        assert_eq!(content.attachments.len(), 1);
        assert_eq!(content.attachments[0].name, "a.png");
        assert_eq!(content.attachments[0].url, "https://files/a?dl");
        assert_eq!(content.attachments[0].size, Some(10));

        let other_bot = callback(serde_json::json!({
            "type": "message", "subtype": "bot_message", "channel": "C1", "bot_id": "B9",
            "username": "CI bot", "text": "build passed", "ts": "1700000003.000400"
        }));
        let EventKind::Posted { content, .. } =
            relay(to_platform_event(&other_bot, &own()).unwrap()).kind
        else {
            panic!()
        };
        assert_eq!(content.sender.user.as_str(), "B9");
        assert_eq!(content.sender.display_name, "CI bot");
    }

    #[test]
    fn our_own_posts_are_recognised_every_way() {
        let variants = [
            serde_json::json!({"type":"message","subtype":"bot_message","channel":"C1","bot_id":"BBOT","text":"x","ts":"1.1"}),
            serde_json::json!({"type":"message","channel":"C1","user":"UBOT","text":"x","ts":"1.1"}),
            serde_json::json!({"type":"message","channel":"C1","bot_id":"B2","app_id":"AAPP","text":"x","ts":"1.1"}),
            serde_json::json!({"type":"message","channel":"C1","bot_id":"B2","text":"x","ts":"1.1",
                "metadata":{"event_type":"switchboard_relayed","event_payload":{"marker":"m"}}}),
            serde_json::json!({"type":"message","subtype":"message_changed","channel":"C1","hidden":true,
                "message":{"bot_id":"BBOT","text":"new","ts":"1.1"},"previous_message":{"bot_id":"BBOT","text":"old","ts":"1.1"}}),
            serde_json::json!({"type":"message","subtype":"message_deleted","channel":"C1","hidden":true,"deleted_ts":"1.1",
                "previous_message":{"bot_id":"BBOT","text":"old","ts":"1.1"}}),
            serde_json::json!({"type":"reaction_added","user":"UBOT","reaction":"tada","item":{"type":"message","channel":"C1","ts":"1.1"}}),
            serde_json::json!({"type":"member_joined_channel","user":"UBOT","channel":"C1"}),
        ];
        for v in variants {
            let cb = callback(v.clone());
            assert_eq!(
                to_platform_event(&cb, &own()).unwrap(),
                Disposition::Own,
                "{v}"
            );
        }
    }

    #[test]
    fn edits_deletes_reactions_and_membership() {
        let changed = callback(serde_json::json!({
            "type":"message","subtype":"message_changed","channel":"C1","hidden":true,"ts":"1700000005.000001",
            "message":{"type":"message","user":"U7","text":"new text","ts":"1700000000.000100","edited":{"user":"U7","ts":"1700000005.000000"}},
            "previous_message":{"type":"message","user":"U7","text":"old text","ts":"1700000000.000100"}
        }));
        let ev = relay(to_platform_event(&changed, &own()).unwrap());
        // When the edit happened (the event's ts), not when the message was first posted.
        assert_eq!(
            ev.occurred_at,
            OffsetDateTime::from_unix_timestamp(1_700_000_005).unwrap()
                + time::Duration::microseconds(1)
        );
        let EventKind::Edited { message, content } = ev.kind else {
            panic!()
        };
        assert_eq!(message.as_str(), "1700000000.000100");
        assert_eq!(content.text.to_plain_text(), "new text");

        let unfurl = callback(serde_json::json!({
            "type":"message","subtype":"message_changed","channel":"C1","hidden":true,
            "message":{"user":"U7","text":"same","ts":"1.1","attachments":[{"title":"unfurl"}]},
            "previous_message":{"user":"U7","text":"same","ts":"1.1"}
        }));
        assert!(matches!(
            to_platform_event(&unfurl, &own()).unwrap(),
            Disposition::Ignored(_)
        ));

        let deleted = callback(serde_json::json!({
            "type":"message","subtype":"message_deleted","channel":"C1","hidden":true,
            "deleted_ts":"1700000000.000100","previous_message":{"user":"U7","text":"x","ts":"1700000000.000100"}
        }));
        assert_eq!(
            relay(to_platform_event(&deleted, &own()).unwrap()).kind,
            EventKind::Deleted {
                message: MessageId::new("1700000000.000100").unwrap()
            }
        );

        let tombstone = callback(serde_json::json!({
            "type":"message","subtype":"message_changed","channel":"C1","hidden":true,
            "message":{"subtype":"tombstone","user":"USLACKBOT","text":"This message was deleted.","ts":"1.5"},
            "previous_message":{"user":"U7","text":"x","ts":"1.5"}
        }));
        assert_eq!(
            relay(to_platform_event(&tombstone, &own()).unwrap()).kind,
            EventKind::Deleted {
                message: MessageId::new("1.5").unwrap()
            }
        );

        let added = callback(serde_json::json!({
            "type":"reaction_added","user":"U7","reaction":"thumbsup","item_user":"U8",
            "item":{"type":"message","channel":"C1","ts":"1.1"},"event_ts":"1.2"
        }));
        let EventKind::ReactionAdded {
            message,
            user,
            emoji,
        } = relay(to_platform_event(&added, &own()).unwrap()).kind
        else {
            panic!()
        };
        assert_eq!((message.as_str(), user.as_str()), ("1.1", "U7"));
        assert!(
            matches!(emoji, switchboard_core::Emoji::Unicode { ref value, .. } if value == "👍")
        );
        let removed = callback(serde_json::json!({
            "type":"reaction_removed","user":"U7","reaction":"partyparrot",
            "item":{"type":"message","channel":"C1","ts":"1.1"}
        }));
        assert!(matches!(
            relay(to_platform_event(&removed, &own()).unwrap()).kind,
            EventKind::ReactionRemoved { .. }
        ));
        let file_reaction = callback(serde_json::json!({
            "type":"reaction_added","user":"U7","reaction":"tada","item":{"type":"file","file":"F1"}
        }));
        assert!(matches!(
            to_platform_event(&file_reaction, &own()).unwrap(),
            Disposition::Ignored(_)
        ));

        let joined = callback(
            serde_json::json!({"type":"member_joined_channel","user":"U9","channel":"C1","channel_type":"C","team":"T1"}),
        );
        assert_eq!(
            relay(to_platform_event(&joined, &own()).unwrap()).kind,
            EventKind::MemberJoined {
                user: UserId::new("U9").unwrap()
            }
        );
        let left =
            callback(serde_json::json!({"type":"member_left_channel","user":"U9","channel":"C1"}));
        assert_eq!(
            relay(to_platform_event(&left, &own()).unwrap()).kind,
            EventKind::MemberLeft {
                user: UserId::new("U9").unwrap()
            }
        );
        let join_message = callback(
            serde_json::json!({"type":"message","subtype":"channel_join","channel":"C1","user":"U9","text":"joined","ts":"1.9"}),
        );
        assert!(matches!(
            to_platform_event(&join_message, &own()).unwrap(),
            Disposition::Ignored(_)
        ));
    }
}
