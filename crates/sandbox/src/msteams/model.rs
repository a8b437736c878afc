//! The emulated tenant's data: users, directory roles, teams, channels, memberships, messages,
//! and the permission (scope) vocabulary.

use std::collections::HashMap;

use serde_json::Value;

/// Graph permissions the sandbox knows. Bit `i` of a permission set is `PERMS[i]`.
pub(crate) const PERMS: &[&str] = &[
    "User.Read",
    "User.ReadWrite",
    "User.ReadBasic.All",
    "User.Read.All",
    "User.ReadWrite.All",
    "User.Invite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
    "RoleManagement.Read.Directory",
    "GroupMember.Read.All",
    "Group.Read.All",
    "Group.ReadWrite.All",
    "Team.ReadBasic.All",
    "TeamSettings.Read.All",
    "TeamSettings.ReadWrite.All",
    "Channel.ReadBasic.All",
    "ChannelSettings.Read.All",
    "ChannelSettings.ReadWrite.All",
    "TeamMember.Read.All",
    "TeamMember.ReadWrite.All",
    "TeamMember.ReadWriteNonOwnerRole.All",
    "ChannelMember.Read.All",
    "ChannelMember.ReadWrite.All",
    "ChannelMessage.Send",
    "ChannelMessage.ReadWrite",
    "ChannelMessage.Read.All",
    "Files.ReadWrite.All",
];

/// A Graph permission, by its index in [`PERMS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Perm(pub u8);

macro_rules! perms {
    ($($name:ident = $ix:expr),* $(,)?) => {
        impl Perm { $(pub const $name: Perm = Perm($ix);)* }
    };
}
perms! {
    USER_READ = 0, USER_READWRITE = 1, USER_READBASIC_ALL = 2, USER_READ_ALL = 3,
    USER_READWRITE_ALL = 4, USER_INVITE_ALL = 5, DIRECTORY_READ_ALL = 6,
    DIRECTORY_READWRITE_ALL = 7, ROLEMANAGEMENT_READ_DIRECTORY = 8, GROUPMEMBER_READ_ALL = 9,
    GROUP_READ_ALL = 10, GROUP_READWRITE_ALL = 11, TEAM_READBASIC_ALL = 12,
    TEAMSETTINGS_READ_ALL = 13, TEAMSETTINGS_READWRITE_ALL = 14, CHANNEL_READBASIC_ALL = 15,
    CHANNELSETTINGS_READ_ALL = 16, CHANNELSETTINGS_READWRITE_ALL = 17,
    TEAMMEMBER_READ_ALL = 18, TEAMMEMBER_READWRITE_ALL = 19,
    TEAMMEMBER_READWRITENONOWNERROLE_ALL = 20,
    CHANNELMESSAGE_SEND = 23, CHANNELMESSAGE_READWRITE = 24,
    CHANNELMESSAGE_READ_ALL = 25, FILES_READWRITE_ALL = 26,
}

impl Perm {
    pub fn name(self) -> &'static str {
        PERMS[self.0 as usize]
    }
    pub fn bit(self) -> u32 {
        1u32 << self.0
    }
    /// Looks a permission up by name (case-insensitive, as Entra ID treats scopes).
    pub fn parse(name: &str) -> Option<Perm> {
        PERMS
            .iter()
            .position(|p| p.eq_ignore_ascii_case(name))
            .map(|i| Perm(i as u8))
    }
}

/// The names of the permissions in a set, in [`PERMS`] order.
pub(crate) fn perm_names(set: u32) -> Vec<&'static str> {
    (0..PERMS.len())
        .filter(|i| set & (1u32 << i) != 0)
        .map(|i| PERMS[i])
        .collect()
}

/// The delegated permissions configured (and admin-consented) on the seeded app registration:
/// what `https://graph.microsoft.com/.default` expands to in a delegated flow.
pub(crate) fn app_configured_delegated() -> u32 {
    [
        Perm::USER_READ,
        Perm::TEAM_READBASIC_ALL,
        Perm::CHANNEL_READBASIC_ALL,
        Perm::TEAMMEMBER_READWRITE_ALL,
        Perm::USER_READ_ALL,
        Perm::ROLEMANAGEMENT_READ_DIRECTORY,
        Perm::CHANNELMESSAGE_SEND,
        Perm::CHANNELMESSAGE_READWRITE,
        Perm::CHANNELMESSAGE_READ_ALL,
        Perm::USER_INVITE_ALL,
    ]
    .iter()
    .fold(0, |acc, p| acc | p.bit())
}

/// Application permissions (app roles) granted to the seeded app: what an app-only
/// (`client_credentials`) token carries. No `ChannelMessage.Send`: application permissions
/// cannot post channel messages.
pub(crate) fn app_roles() -> u32 {
    [
        Perm::TEAM_READBASIC_ALL,
        Perm::CHANNEL_READBASIC_ALL,
        Perm::TEAMMEMBER_READWRITE_ALL,
        Perm::USER_READ_ALL,
        Perm::CHANNELMESSAGE_READ_ALL,
        Perm::USER_INVITE_ALL,
    ]
    .iter()
    .fold(0, |acc, p| acc | p.bit())
}

/// OpenID Connect scopes, kept apart from Graph permissions.
pub(crate) const OIDC_OPENID: u8 = 1;
pub(crate) const OIDC_PROFILE: u8 = 2;
pub(crate) const OIDC_OFFLINE: u8 = 4;
pub(crate) const OIDC_EMAIL: u8 = 8;

/// A granted scope set: Graph permissions plus OIDC scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Scopes {
    pub perms: u32,
    pub oidc: u8,
}

impl Scopes {
    /// The `scope` string of a token response: Graph permissions in full URI form, then the
    /// OIDC scopes.
    pub fn to_scope_string(self) -> String {
        let mut out: Vec<String> = perm_names(self.perms)
            .into_iter()
            .map(|p| format!("https://graph.microsoft.com/{p}"))
            .collect();
        for (bit, name) in [
            (OIDC_OPENID, "openid"),
            (OIDC_PROFILE, "profile"),
            (OIDC_EMAIL, "email"),
            (OIDC_OFFLINE, "offline_access"),
        ] {
            if self.oidc & bit != 0 {
                out.push(name.to_owned());
            }
        }
        out.join(" ")
    }

    /// Whether every scope of `other` is in `self`.
    pub fn contains(self, other: Scopes) -> bool {
        self.perms & other.perms == other.perms && self.oidc & other.oidc == other.oidc
    }
}

/// The Entra ID directory roles the sandbox knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Role(pub u8);

impl Role {
    pub const APPLICATION_ADMIN: Role = Role(0);
    pub const TEAMS_ADMIN: Role = Role(1);
    pub const USER_ADMIN: Role = Role(2);
    pub const GLOBAL_ADMIN: Role = Role(3);
    pub const ALL: [Role; 4] = [
        Role::APPLICATION_ADMIN,
        Role::TEAMS_ADMIN,
        Role::USER_ADMIN,
        Role::GLOBAL_ADMIN,
    ];
    pub fn bit(self) -> u8 {
        1 << self.0
    }
    pub fn display_name(self) -> &'static str {
        [
            "Application Administrator",
            "Teams Administrator",
            "User Administrator",
            "Global Administrator",
        ][self.0 as usize]
    }
    pub fn template_id(self) -> &'static str {
        [
            "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3",
            "69091246-20e8-4a56-aa4d-066075b2a7a8",
            "fe930be7-5e62-47db-91af-98c3a49a38b1",
            "62e90394-69f5-4237-9190-012177145e10",
        ][self.0 as usize]
    }
    pub fn description(self) -> &'static str {
        [
            "Can create and manage all aspects of app registrations and enterprise apps.",
            "Can manage the Microsoft Teams service.",
            "Can manage all aspects of users and groups, including resetting passwords for limited admins.",
            "Can manage all aspects of Microsoft Entra ID and Microsoft services that use Microsoft Entra identities.",
        ][self.0 as usize]
    }
}

/// `Member` or `Guest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UserType {
    Member,
    Guest,
}

impl UserType {
    pub fn as_str(self) -> &'static str {
        match self {
            UserType::Member => "Member",
            UserType::Guest => "Guest",
        }
    }
}

/// A directory user.
#[derive(Debug, Clone)]
pub(crate) struct User {
    pub id: String,
    pub display_name: String,
    pub given_name: Option<String>,
    pub surname: Option<String>,
    pub mail: Option<String>,
    pub upn: String,
    pub user_type: UserType,
    pub account_enabled: bool,
    pub job_title: Option<&'static str>,
    /// Sign-in password; `None`: cannot sign in here (guests).
    pub password: Option<String>,
    /// Directory roles, a bit per [`Role`].
    pub roles: u8,
    pub created_ms: u64,
}

impl User {
    pub fn has_role(&self, r: Role) -> bool {
        self.roles & r.bit() != 0
    }
    /// Teams Administrator or Global Administrator.
    pub fn is_teams_admin(&self) -> bool {
        self.has_role(Role::TEAMS_ADMIN) || self.has_role(Role::GLOBAL_ADMIN)
    }
}

/// `standard`, `private` or `shared`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MembershipType {
    Standard,
    Private,
    Shared,
}

impl MembershipType {
    pub fn as_str(self) -> &'static str {
        match self {
            MembershipType::Standard => "standard",
            MembershipType::Private => "private",
            MembershipType::Shared => "shared",
        }
    }
}

/// A team member: user index and whether they own the team.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Member {
    pub user: u32,
    pub owner: bool,
    pub since_ms: u64,
}

/// A team (its id is also the id of its Microsoft 365 group).
#[derive(Debug)]
pub(crate) struct Team {
    pub id: String,
    pub display_name: String,
    pub description: String,
    pub created_ms: u64,
    pub visibility: &'static str,
    pub members: Vec<Member>,
    pub channels: Vec<Channel>,
}

impl Team {
    pub fn member(&self, user: u32) -> Option<&Member> {
        self.members.iter().find(|m| m.user == user)
    }
}

/// A channel. Private and shared channels have their own member list.
#[derive(Debug)]
pub(crate) struct Channel {
    pub id: String,
    pub display_name: String,
    pub description: String,
    pub membership_type: MembershipType,
    pub created_ms: u64,
    /// For private/shared channels: (user, owner).
    pub members: Vec<(u32, bool)>,
    /// Messages, created on first post.
    pub msgs: Option<Box<ChannelMsgs>>,
}

impl Channel {
    /// Whether `user` may see this channel as a member (team membership is checked apart).
    pub fn has_member(&self, user: u32) -> bool {
        self.membership_type == MembershipType::Standard
            || self.members.iter().any(|(u, _)| *u == user)
    }
}

/// A channel's messages: root messages in creation order, every message by id.
#[derive(Debug, Default)]
pub(crate) struct ChannelMsgs {
    pub roots: Vec<u64>,
    pub map: HashMap<u64, Msg>,
}

/// A reaction on a message.
#[derive(Debug, Clone)]
pub(crate) struct Reaction {
    pub reaction_type: String,
    pub user: u32,
    pub created_ms: u64,
}

/// A channel message or reply. `id` is the creation time in ms (unique in the tenant).
#[derive(Debug, Clone)]
pub(crate) struct Msg {
    pub id: u64,
    pub reply_to: Option<u64>,
    pub from: u32,
    pub created_ms: u64,
    pub modified_ms: u64,
    pub edited_ms: Option<u64>,
    pub deleted_ms: Option<u64>,
    pub subject: Option<String>,
    pub content_type: &'static str,
    pub content: String,
    pub importance: String,
    pub mentions: Vec<Value>,
    pub attachments: Vec<Value>,
    pub reactions: Vec<Reaction>,
    /// Change sequence of the last change to this message.
    pub seq: u64,
    /// Roots: the highest change sequence in the reply chain (root and replies), for delta.
    pub chain_seq: u64,
    /// Roots: reply ids in creation order.
    pub replies: Vec<u64>,
}
