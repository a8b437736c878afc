//! The traits every platform adapter implements: [`Platform`] (post and manage messages),
//! [`ServiceAccount`] (verify and maintain the administering account) and [`TeamImport`]
//! (read teams, channels, members and users page by page).
//!
//! All are object safe (`Box<dyn Platform>`) and `Send + Sync`.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::ids::*;
use crate::message::{Attachment, Emoji, PortableMessage};
use crate::model::*;

/// Where a message lives, with what is needed to address it on its platform.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MessageRef {
    /// Team and channel.
    pub channel: ChannelRef,
    /// The message.
    pub message: MessageId,
    /// The thread root when the message is a reply (Graph addresses replies under their
    /// root: `…/messages/{root}/replies/{id}`).
    pub thread_root: Option<MessageId>,
}

/// What a platform can do; the relay degrades gracefully where something is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Reactions can be added/removed by the posting identity.
    pub reactions: bool,
    /// Messages can be edited after posting.
    pub edits: bool,
    /// Messages can be deleted.
    pub deletes: bool,
    /// Files can be uploaded (otherwise they are linked).
    pub file_upload: bool,
    /// A post can carry another sender's name and avatar.
    pub sender_attribution: bool,
}

/// Which identity posted (or is to post) a message copy. Recorded with every copy, so edits
/// and deletes go out as the identity that posted it (platforms let only the sender change a
/// message).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "as", rename_all = "snake_case")]
pub enum PostingIdentity {
    /// The connection's service account (Teams) or its bot (Slack).
    ServiceAccount,
    /// A linked user's own delegated token: the copy appears as that user. `user` is the
    /// user's id on the target platform.
    LinkedUser {
        /// The user on the target platform.
        user: UserId,
    },
}

/// A file to carry with an outgoing message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingFile {
    /// The file as it was on the origin.
    pub attachment: Attachment,
    /// Its bytes, when they were fetched from the origin and may be uploaded; `None` to post
    /// a link to [`Attachment::url`] instead (too large, upload not allowed, fetch refused).
    pub content: Option<FileContent>,
}

/// The bytes of a file fetched from its origin.
#[derive(Clone, PartialEq, Eq)]
pub struct FileContent {
    /// File name.
    pub name: String,
    /// MIME type, when known.
    pub mime_type: Option<String>,
    /// The bytes.
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for FileContent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileContent")
            .field("name", &self.name)
            .field("mime_type", &self.mime_type)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// The largest file the relay fetches into memory to re-upload; larger files are linked.
pub const MAX_UPLOAD_BYTES: u64 = 100 * 1024 * 1024;

/// A message Switchboard posts, with the attribution to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// The content, sender included; mentions already mapped to the target platform's IDs.
    /// Its `thread_root` is the *origin's* and is not used for addressing: see `reply_to`.
    pub content: PortableMessage,
    /// The thread root on the *target* platform to reply under, when this is a reply there.
    pub reply_to: Option<MessageId>,
    /// Slack "also send to channel": a reply that also shows in the channel.
    pub broadcast: bool,
    /// An opaque marker the adapter embeds where the platform allows (Slack `metadata`),
    /// so our own posts are recognised when they come back (loop prevention) and found again
    /// in history after a crash.
    pub marker: Option<String>,
    /// Who posts it.
    pub post_as: PostingIdentity,
    /// Files to carry: uploaded where `content` is present and the platform allows it,
    /// otherwise linked. Never dropped.
    pub files: Vec<OutgoingFile>,
}

impl OutgoingMessage {
    /// A top-level post of `content` by the service account, without marker or files.
    pub fn new(content: PortableMessage) -> Self {
        OutgoingMessage {
            content,
            reply_to: None,
            broadcast: false,
            marker: None,
            post_as: PostingIdentity::ServiceAccount,
            files: Vec::new(),
        }
    }

    /// Replies under `root` on the target.
    pub fn in_thread(mut self, root: MessageId) -> Self {
        self.reply_to = Some(root);
        self
    }

    /// Embeds `marker`.
    pub fn with_marker(mut self, marker: impl Into<String>) -> Self {
        self.marker = Some(marker.into());
        self
    }

    /// Posts as `identity`.
    pub fn posted_as(mut self, identity: PostingIdentity) -> Self {
        self.post_as = identity;
        self
    }
}

/// What a successful post returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostedMessage {
    /// The new message, addressable for later edits, deletes and reactions.
    pub reference: MessageRef,
    /// Further messages the post needed (parts of a split message, Slack file shares), in
    /// order; edits and deletes of the origin reach them too.
    pub extra_parts: Vec<MessageRef>,
    /// Who actually posted it (a linked user's post may fall back to the service account).
    pub posted_by: PostingIdentity,
}

/// Adding or removing a reaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReactionChange {
    /// Add it.
    Add,
    /// Take it back.
    Remove,
}

/// Posting and managing messages on one connected platform instance.
///
/// Contract:
/// - Calls act as the connection's service account (or bot), or as a linked user's own
///   delegated token when asked to ([`PostingIdentity::LinkedUser`]) and one is available.
/// - Edits and deletes are made as the identity that posted the copy (`posted_by`, recorded
///   with the copy); when that identity can no longer act (a token that is gone), the error is
///   `Forbidden` with words saying so, never a silent success.
/// - Errors carry an [`ErrorKind`](crate::ErrorKind): `RateLimited` with the platform's
///   `Retry-After`, `NeedsReauth` when the grant is dead (never retried), `Forbidden` when the
///   account lost access to the team or channel (e.g. removed from a team: the caller may
///   re-add it through [`ServiceAccount::ensure_membership`]).
/// - Deleting an already deleted message and removing an absent reaction succeed.
#[async_trait]
pub trait Platform: Send + Sync + std::fmt::Debug {
    /// Which platform this is.
    fn kind(&self) -> PlatformKind;
    /// What it supports.
    fn capabilities(&self) -> Capabilities;
    /// Who the connection acts as.
    async fn identity(&self) -> Result<AccountIdentity>;
    /// Posts a new message, or a reply under [`OutgoingMessage::reply_to`].
    async fn post(&self, channel: &ChannelRef, message: &OutgoingMessage) -> Result<PostedMessage>;
    /// Replaces the content of a message we posted, as `posted_by`.
    async fn edit(
        &self,
        message: &MessageRef,
        content: &OutgoingMessage,
        posted_by: &PostingIdentity,
    ) -> Result<()>;
    /// Deletes a message we posted, as `posted_by`.
    async fn delete(&self, message: &MessageRef, posted_by: &PostingIdentity) -> Result<()>;
    /// Adds or removes a reaction as `identity`. `Unsupported` when the platform has none.
    async fn react(
        &self,
        message: &MessageRef,
        emoji: &Emoji,
        change: ReactionChange,
        identity: &PostingIdentity,
    ) -> Result<()>;
    /// Downloads an attachment of a message received on this platform, with this
    /// connection's credentials, refusing more than `max_bytes` (`InvalidInput`).
    async fn fetch_attachment(
        &self,
        attachment: &Attachment,
        max_bytes: u64,
    ) -> Result<FileContent>;
    /// Checks that the credentials work (refreshing them if needed) and returns the health.
    async fn health(&self) -> Result<ConnectionHealth>;
    /// Lets the end user `user` (an id on this platform) post as themselves: messages asked
    /// to be posted as [`PostingIdentity::LinkedUser`] with this user use `credentials` (their
    /// own delegated grant) from now on; every rotation of them is handed to `sink`.
    /// `Unsupported` (the default) where a platform posts only as its bot; such a platform
    /// posts a `LinkedUser` message as the service account and says so in `posted_by`.
    async fn link_user(
        &self,
        user: UserId,
        credentials: Credentials,
        sink: std::sync::Arc<dyn crate::connector::CredentialsSink>,
    ) -> Result<()> {
        let _ = (user, credentials, sink);
        Err(crate::error::Error::new(
            crate::error::ErrorKind::Unsupported,
            format!("{} does not post with end users' own accounts", self.kind()),
        ))
    }
    /// Forgets the linked credentials of `user` (after an unlink). A no-op by default and
    /// for a user who was not linked.
    fn unlink_user(&self, user: &UserId) {
        let _ = user;
    }
}

/// What an [`AccessCheck`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// A directory role (Teams Administrator, …).
    Role,
    /// An OAuth scope / permission.
    Scope,
    /// Membership of a team or channel.
    Membership,
    /// The credentials themselves (valid, refreshable).
    Token,
}

/// One check of an account's privileges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessCheck {
    /// What kind of requirement it is.
    pub kind: CheckKind,
    /// What was checked ("Teams Administrator role", "scope chat:write").
    pub name: String,
    /// Whether it is satisfied.
    pub ok: bool,
    /// When not: what an admin should do, in plain words.
    pub fix: Option<String>,
}

/// The result of [`ServiceAccount::verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessReport {
    /// Who was checked.
    pub account: AccountIdentity,
    /// Every check, satisfied or not.
    pub checks: Vec<AccessCheck>,
}

impl AccessReport {
    /// Whether every check passed.
    pub fn is_ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    /// The failed checks.
    pub fn problems(&self) -> impl Iterator<Item = &AccessCheck> {
        self.checks.iter().filter(|c| !c.ok)
    }

    /// The health this report implies (roles before scopes).
    pub fn health(&self) -> ConnectionHealth {
        if self.is_ok() {
            ConnectionHealth::Ok
        } else if self.problems().any(|c| c.kind == CheckKind::Role) {
            ConnectionHealth::MissingRoles
        } else {
            ConnectionHealth::MissingScopes
        }
    }
}

/// Options of [`ServiceAccount::verify`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyOptions {
    /// Guest accounts are synced (Teams: User Administrator and `User.Invite.All` needed).
    pub guest_sync: bool,
}

/// What [`ServiceAccount::ensure_membership`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum MembershipOutcome {
    /// It was a member already.
    AlreadyMember,
    /// It was added now.
    Added,
    /// It cannot add itself; a human must (e.g. a Slack private channel needs an invite).
    ActionRequired {
        /// What to do.
        fix: String,
    },
}

/// The dedicated account that administers universal channels on one platform.
#[async_trait]
pub trait ServiceAccount: Send + Sync + std::fmt::Debug {
    /// Reads the account's roles and granted scopes and reports what is missing, with fixes.
    async fn verify(&self, options: VerifyOptions) -> Result<AccessReport>;
    /// Makes the account a member of the team (Teams) or channel (Slack) of `channel`.
    /// Idempotent: already a member is success.
    async fn ensure_membership(&self, channel: &ChannelRef) -> Result<MembershipOutcome>;
    /// Refreshes the credentials now (rotating refresh tokens). `NeedsReauth` when the grant
    /// is dead.
    async fn refresh_credentials(&self) -> Result<Credentials>;
}

/// Which list [`TeamImport::list_teams`] used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TeamListSource {
    /// Every team of the tenant (`/teams`), or the Slack workspace itself.
    TenantWide,
    /// Only the teams the account belongs to (`/me/joinedTeams`): the tenant-wide list was
    /// forbidden.
    Joined,
}

/// The result of [`TeamImport::list_teams`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamListing {
    /// The teams.
    pub teams: Vec<Team>,
    /// Where they came from.
    pub source: TeamListSource,
}

/// Which part of an import is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportPhase {
    /// Channels of a team.
    Channels,
    /// Members of a team.
    Members,
    /// Users of the tenant/workspace.
    Users,
    /// Members of one channel.
    ChannelMembers,
}

/// Progress of an import phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The phase.
    pub phase: ImportPhase,
    /// Items delivered so far in this phase.
    pub done: u64,
    /// Estimated total, when the platform gives a hint.
    pub estimated_total: Option<u64>,
}

/// Receives an import page by page, so memory stays bounded by one page.
/// Returning an error stops the import with that error.
#[async_trait]
pub trait ImportSink: Send {
    /// A page of channels of `team`.
    async fn channels(&mut self, team: &TeamId, page: Vec<Channel>) -> Result<()>;
    /// A page of memberships of `team`.
    async fn members(&mut self, team: &TeamId, page: Vec<Membership>) -> Result<()>;
    /// A page of users.
    async fn users(&mut self, page: Vec<User>) -> Result<()>;
    /// A page of the members of one channel ([`TeamImport::import_channel_members`]). Sinks
    /// that do not keep channel membership ignore it.
    async fn channel_members(&mut self, channel: &ChannelRef, page: Vec<UserId>) -> Result<()> {
        let _ = (channel, page);
        Ok(())
    }
    /// Progress after each page.
    async fn progress(&mut self, progress: Progress) -> Result<()> {
        let _ = progress;
        Ok(())
    }
}

/// Counts of what an import delivered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportCounts {
    /// Channels.
    pub channels: u64,
    /// Memberships.
    pub members: u64,
    /// Users.
    pub users: u64,
}

/// Reading the teams, channels, members and users to make interoperable.
///
/// Contract: every item is delivered exactly once per call, page by page; the adapter paces
/// itself under the documented limits and honours `Retry-After`; it gives up after a bounded
/// time with a clear error.
#[async_trait]
pub trait TeamImport: Send + Sync + std::fmt::Debug {
    /// The teams (Slack: the workspace) the account can see.
    async fn list_teams(&self) -> Result<TeamListing>;
    /// Streams the channels of `team` into `sink`, with the team's members where the platform
    /// lists them in one cheap call (Teams: `/teams/{id}/members`). Channel membership that
    /// costs a call per channel (Slack `conversations.members`) is left to
    /// [`TeamImport::import_channel_members`], for the channels that get linked.
    async fn import_team(&self, team: &TeamId, sink: &mut dyn ImportSink) -> Result<ImportCounts>;
    /// Streams the members of one channel into `sink` (as memberships of the channel's team
    /// scoped to the channel where the platform has channel membership).
    async fn import_channel_members(
        &self,
        channel: &ChannelRef,
        sink: &mut dyn ImportSink,
    ) -> Result<ImportCounts> {
        let _ = sink;
        Err(crate::Error::new(
            crate::ErrorKind::Unsupported,
            format!("{} does not list channel members", channel.platform),
        ))
    }
    /// Streams the tenant's or workspace's users into `sink`.
    async fn import_users(&self, sink: &mut dyn ImportSink) -> Result<ImportCounts>;
}

#[cfg(test)]
mod tests {
    use super::*;

    // The traits are used as trait objects by the relay and the server.
    #[allow(dead_code)]
    fn object_safe(
        _: &dyn Platform,
        _: &dyn ServiceAccount,
        _: &dyn TeamImport,
        _: &mut dyn ImportSink,
    ) {
    }

    fn check(kind: CheckKind, name: &str, ok: bool) -> AccessCheck {
        AccessCheck {
            kind,
            name: name.into(),
            ok,
            fix: (!ok).then(|| format!("grant {name}")),
        }
    }

    #[test]
    fn access_report_health_prefers_roles() {
        let account = AccountIdentity {
            user_id: UserId::new("u1").unwrap(),
            display_name: "svc".into(),
            is_service_account: true,
        };
        let mut report = AccessReport {
            account,
            checks: vec![
                check(CheckKind::Role, "Teams Administrator", true),
                check(CheckKind::Scope, "chat:write", true),
            ],
        };
        assert!(report.is_ok());
        assert_eq!(report.health(), ConnectionHealth::Ok);
        report.checks[1].ok = false;
        assert_eq!(report.health(), ConnectionHealth::MissingScopes);
        report.checks[0].ok = false;
        assert_eq!(report.health(), ConnectionHealth::MissingRoles);
        assert_eq!(report.problems().count(), 2);
    }
}
