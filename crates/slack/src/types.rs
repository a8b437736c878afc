//! Slack Web API objects as this crate reads them. Every field that Slack may omit is
//! optional or defaulted, and unknown fields are ignored, so additions on Slack's side do
//! not break parsing.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `response_metadata` of paged methods.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ResponseMetadata {
    /// The cursor of the next page; empty or absent on the last page.
    #[serde(default)]
    pub next_cursor: Option<String>,
}

impl ResponseMetadata {
    /// The next cursor, when there is a next page.
    pub fn next(&self) -> Option<&str> {
        self.next_cursor.as_deref().filter(|c| !c.is_empty())
    }
}

/// `auth.test`.
#[derive(Debug, Clone, Deserialize)]
pub struct AuthTest {
    /// Workspace URL.
    #[serde(default)]
    pub url: Option<String>,
    /// Workspace name.
    #[serde(default)]
    pub team: Option<String>,
    /// The token's user name (the bot user's name for bot tokens).
    #[serde(default)]
    pub user: Option<String>,
    /// Workspace id.
    #[serde(default)]
    pub team_id: Option<String>,
    /// The token's user id (the bot user id for bot tokens).
    pub user_id: String,
    /// The bot id (`B…`), for bot tokens.
    #[serde(default)]
    pub bot_id: Option<String>,
    /// Enterprise Grid organization id.
    #[serde(default)]
    pub enterprise_id: Option<String>,
    /// Installed org-wide.
    #[serde(default)]
    pub is_enterprise_install: bool,
}

/// A workspace (`team.info`).
#[derive(Debug, Clone, Deserialize)]
pub struct TeamObject {
    /// `T…`.
    pub id: String,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Subdomain.
    #[serde(default)]
    pub domain: Option<String>,
    /// Enterprise Grid id.
    #[serde(default)]
    pub enterprise_id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct TeamInfo {
    pub team: TeamObject,
}

/// A channel's topic or purpose.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TextValue {
    /// The text.
    #[serde(default)]
    pub value: String,
}

/// A conversation (`conversations.list`).
#[derive(Debug, Clone, Deserialize)]
pub struct ConversationObject {
    /// `C…` / `G…`.
    pub id: String,
    /// Name without `#`.
    #[serde(default)]
    pub name: Option<String>,
    /// Private channel.
    #[serde(default)]
    pub is_private: bool,
    /// Archived.
    #[serde(default)]
    pub is_archived: bool,
    /// Shared with another workspace or organization.
    #[serde(default)]
    pub is_shared: bool,
    /// Shared with another organization (Slack Connect).
    #[serde(default)]
    pub is_ext_shared: bool,
    /// Shared across an Enterprise Grid organization.
    #[serde(default)]
    pub is_org_shared: bool,
    /// The bot is a member.
    #[serde(default)]
    pub is_member: bool,
    /// Member count, when Slack includes it.
    #[serde(default)]
    pub num_members: Option<u64>,
    /// Topic.
    #[serde(default)]
    pub topic: Option<TextValue>,
    /// Purpose.
    #[serde(default)]
    pub purpose: Option<TextValue>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ConversationsList {
    #[serde(default)]
    pub channels: Vec<ConversationObject>,
    #[serde(default)]
    pub response_metadata: ResponseMetadata,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ConversationsMembers {
    #[serde(default)]
    pub members: Vec<String>,
    #[serde(default)]
    pub response_metadata: ResponseMetadata,
}

/// A user's profile.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ProfileObject {
    /// Email (with `users:read.email`).
    #[serde(default)]
    pub email: Option<String>,
    /// Full name.
    #[serde(default)]
    pub real_name: Option<String>,
    /// Display name (may be empty).
    #[serde(default)]
    pub display_name: Option<String>,
    /// 72 px avatar.
    #[serde(default)]
    pub image_72: Option<String>,
    /// 192 px avatar.
    #[serde(default)]
    pub image_192: Option<String>,
}

/// A user (`users.list`).
#[derive(Debug, Clone, Deserialize)]
pub struct UserObject {
    /// `U…` / `W…`.
    pub id: String,
    /// Handle.
    #[serde(default)]
    pub name: Option<String>,
    /// Full name (also in the profile).
    #[serde(default)]
    pub real_name: Option<String>,
    /// Deactivated.
    #[serde(default)]
    pub deleted: bool,
    /// A bot user.
    #[serde(default)]
    pub is_bot: bool,
    /// Multi-channel guest.
    #[serde(default)]
    pub is_restricted: bool,
    /// Single-channel guest.
    #[serde(default)]
    pub is_ultra_restricted: bool,
    /// Profile.
    #[serde(default)]
    pub profile: ProfileObject,
}

#[derive(Debug, Deserialize)]
pub(crate) struct UsersList {
    #[serde(default)]
    pub members: Vec<UserObject>,
    #[serde(default)]
    pub response_metadata: ResponseMetadata,
}

/// `chat.postMessage`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct PostMessage {
    pub ts: String,
}

/// `files.getUploadURLExternal`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct UploadUrl {
    pub upload_url: String,
    pub file_id: String,
}

/// `apps.connections.open`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ConnectionsOpen {
    pub url: String,
}

/// Message metadata (`metadata` on `chat.postMessage` and on message events).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageMetadata {
    /// Application-defined event type.
    pub event_type: String,
    /// Free-form payload.
    #[serde(default)]
    pub event_payload: Value,
}

/// An object we only need to acknowledge (`ok:true` with nothing we read).
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Empty {}

/// `users.info`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct UsersInfo {
    pub user: UserObject,
}

/// `files.info`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct FilesInfo {
    pub file: FileInfo,
}

/// One share of a file (`shares.public|private.{channel}[]`).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct FileShare {
    pub ts: String,
}

/// The parts of a file object we read from `files.info`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct FileInfo {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub mimetype: Option<String>,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub url_private: Option<String>,
    #[serde(default)]
    pub url_private_download: Option<String>,
    /// `{public: {C…: [{ts}]}, private: {G…: [{ts}]}}`.
    #[serde(default)]
    pub shares:
        std::collections::HashMap<String, std::collections::HashMap<String, Vec<FileShare>>>,
}

/// `conversations.history` / `conversations.replies`: the messages stay raw JSON, parsed
/// by [`crate::events::SlackMessage`].
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct MessagesPage {
    #[serde(default)]
    pub messages: Vec<Value>,
    #[serde(default)]
    pub has_more: bool,
    #[serde(default)]
    pub response_metadata: Option<ResponseMetadata>,
}
