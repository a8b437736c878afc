//! Domain records: connections, teams, channels, users, memberships, universal channels and
//! audit entries. Plain data: no I/O.

use std::collections::BTreeSet;
use std::fmt;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::ids::*;

/// The identity a connection acts as on its platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountIdentity {
    /// The platform user id (Entra object id, Slack bot user id).
    pub user_id: UserId,
    /// A name for humans (UPN or display name; the bot name on Slack).
    pub display_name: String,
    /// `true` when this is a dedicated service account (or bot), `false` for a personal
    /// account's token, which `connections migrate` moves off.
    pub is_service_account: bool,
}

/// Whether a connection works, and if not what an admin must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ConnectionHealth {
    /// Credentials valid, roles and scopes complete.
    Ok,
    /// The grant was revoked or expired: reconnect through OAuth. Messages wait.
    NeedsReauth,
    /// The service account lacks directory roles (Teams) required to administer channels.
    MissingRoles,
    /// Scopes were not granted (re-consent with the full scope set).
    MissingScopes,
    /// The platform has been failing; retrying.
    Degraded,
    /// Disconnected by an admin.
    Disabled,
}

impl ConnectionHealth {
    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionHealth::Ok => "ok",
            ConnectionHealth::NeedsReauth => "needs_reauth",
            ConnectionHealth::MissingRoles => "missing_roles",
            ConnectionHealth::MissingScopes => "missing_scopes",
            ConnectionHealth::Degraded => "degraded",
            ConnectionHealth::Disabled => "disabled",
        }
    }
}

impl fmt::Display for ConnectionHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ConnectionHealth {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "ok" => ConnectionHealth::Ok,
            "needs_reauth" => ConnectionHealth::NeedsReauth,
            "missing_roles" => ConnectionHealth::MissingRoles,
            "missing_scopes" => ConnectionHealth::MissingScopes,
            "degraded" => ConnectionHealth::Degraded,
            "disabled" => ConnectionHealth::Disabled,
            other => {
                return Err(Error::invalid(format!(
                    "unknown connection health {other:?}"
                )));
            }
        })
    }
}

/// A connected platform instance: one Microsoft tenant or one Slack workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    /// Switchboard's id for it.
    pub id: ConnectionId,
    /// The owning organization.
    pub org: OrgId,
    /// Which platform.
    pub platform: PlatformKind,
    /// The Microsoft tenant id or Slack workspace id.
    pub tenant: TenantId,
    /// Slack Enterprise Grid id, when installed org-wide.
    pub enterprise: Option<TenantId>,
    /// A human name (tenant or workspace name).
    pub display_name: String,
    /// Who the connection acts as.
    pub account: AccountIdentity,
    /// Current health.
    pub health: ConnectionHealth,
    /// When it was first connected.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// OAuth credentials of a connection. Never printed: `Debug` shows `<redacted>` for tokens.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The access token used on API calls.
    pub access_token: SecretString,
    /// The refresh token, when the grant has one (rotated on every refresh).
    pub refresh_token: Option<SecretString>,
    /// When the access token expires, when known.
    pub expires_at: Option<OffsetDateTime>,
    /// Granted scopes.
    pub scopes: Vec<String>,
}

/// What a channel is on its platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// Visible to everyone in the team/workspace.
    Standard,
    /// Visible to its members only.
    Private,
    /// Shared with other teams or organizations (Teams shared channels, Slack Connect).
    Shared,
}

impl ChannelKind {
    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Standard => "standard",
            ChannelKind::Private => "private",
            ChannelKind::Shared => "shared",
        }
    }
}

impl std::str::FromStr for ChannelKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "standard" => ChannelKind::Standard,
            "private" => ChannelKind::Private,
            "shared" => ChannelKind::Shared,
            other => return Err(Error::invalid(format!("unknown channel kind {other:?}"))),
        })
    }
}

/// A Teams team or a Slack workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Team {
    /// Platform id.
    pub id: TeamId,
    /// Display name.
    pub name: String,
    /// Description, if any.
    pub description: Option<String>,
}

/// A channel of a team.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    /// Platform id.
    pub id: ChannelId,
    /// The team it belongs to.
    pub team: TeamId,
    /// Display name (without `#`).
    pub name: String,
    /// Standard, private or shared.
    pub kind: ChannelKind,
    /// Description or topic, if any.
    pub description: Option<String>,
}

/// A person (or bot) on a platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Platform id.
    pub id: UserId,
    /// The name people see.
    pub display_name: String,
    /// Email, when the platform shares it (`users:read.email`, `mail`).
    pub email: Option<String>,
    /// Avatar URL, when the platform has one.
    pub avatar_url: Option<String>,
    /// A guest / external account.
    pub is_guest: bool,
    /// A bot or app identity.
    pub is_bot: bool,
    /// Deactivated or deleted upstream.
    pub is_deleted: bool,
}

/// A user's membership of a team.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// The team.
    pub team: TeamId,
    /// The member.
    pub user: UserId,
    /// Owner of the team.
    pub is_owner: bool,
}

/// One channel of a universal channel, on the connection that reaches it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Endpoint {
    /// The connection used to read and post.
    pub connection: ConnectionId,
    /// The channel.
    pub channel: ChannelRef,
}

/// Linked channels on two or more platforms whose messages flow both ways.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UniversalChannel {
    id: UniversalChannelId,
    org: OrgId,
    name: String,
    endpoints: Vec<Endpoint>,
    /// Relay join/leave notices.
    pub relay_membership_notices: bool,
}

/// The longest universal channel name accepted.
pub const MAX_NAME_LEN: usize = 200;

impl UniversalChannel {
    /// Builds a universal channel, refusing one that would not bridge anything: fewer than
    /// two endpoints, endpoints on fewer than two platforms, the same channel twice, or an
    /// empty or over-long name.
    pub fn new(
        id: UniversalChannelId,
        org: OrgId,
        name: impl Into<String>,
        endpoints: Vec<Endpoint>,
    ) -> Result<Self> {
        let name = name.into();
        let trimmed = name.trim();
        if trimmed.is_empty() {
            return Err(Error::invalid("a universal channel needs a name"));
        }
        if trimmed.len() > MAX_NAME_LEN || trimmed.chars().any(char::is_control) {
            return Err(Error::invalid(format!(
                "a universal channel name must be at most {MAX_NAME_LEN} bytes without control characters"
            )));
        }
        if endpoints.len() < 2 {
            return Err(Error::invalid(
                "a universal channel needs at least two endpoints",
            ));
        }
        let mut seen = BTreeSet::new();
        for e in &endpoints {
            if !seen.insert(&e.channel) {
                return Err(Error::invalid(format!(
                    "channel {} appears twice in the universal channel",
                    e.channel
                )));
            }
        }
        let platforms: BTreeSet<PlatformKind> =
            endpoints.iter().map(|e| e.channel.platform).collect();
        if platforms.len() < 2 {
            return Err(Error::invalid(
                "a universal channel needs endpoints on at least two platforms",
            ));
        }
        Ok(UniversalChannel {
            id,
            org,
            name: trimmed.to_owned(),
            endpoints,
            relay_membership_notices: false,
        })
    }

    /// Its id.
    pub fn id(&self) -> &UniversalChannelId {
        &self.id
    }
    /// The owning organization.
    pub fn org(&self) -> &OrgId {
        &self.org
    }
    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The linked channels (at least two, on at least two platforms).
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }
    /// The endpoints a message from `origin` must be delivered to.
    pub fn targets_for<'a>(&'a self, origin: &'a ChannelRef) -> impl Iterator<Item = &'a Endpoint> {
        self.endpoints.iter().filter(move |e| &e.channel != origin)
    }
}

/// Who did something recorded in the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Actor {
    /// A connection's service account acting on a platform.
    ServiceAccount {
        /// The connection.
        connection: ConnectionId,
    },
    /// An administrator (by admin token name or console user).
    Admin {
        /// Who.
        name: String,
    },
    /// An end user acting for themselves (linking or unlinking their own account).
    User {
        /// Their platform.
        platform: PlatformKind,
        /// Their id there.
        user: UserId,
        /// Their display name when they acted.
        name: String,
    },
    /// Switchboard itself (workers, schedulers).
    System,
}

/// One entry of the append-only, hash-chained audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the organization's chain, from 1.
    pub seq: u64,
    /// The organization.
    pub org: OrgId,
    /// Who.
    pub actor: Actor,
    /// What, as a dotted verb (`connection.created`, `membership.readded`).
    pub action: String,
    /// On what (an id or reference).
    pub target: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Details; never secrets.
    pub details: serde_json::Value,
    /// Hex SHA-256 of the previous entry (empty for the first).
    pub prev_hash: String,
    /// Hex SHA-256 of this entry.
    pub hash: String,
}

/// An audit entry about to be appended: the store assigns `seq`, time and hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAuditEntry {
    /// Who.
    pub actor: Actor,
    /// What.
    pub action: String,
    /// On what.
    pub target: String,
    /// Details; never secrets.
    pub details: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(s: &str) -> Endpoint {
        Endpoint {
            connection: ConnectionId::generate(),
            channel: s.parse().unwrap(),
        }
    }

    fn uc(endpoints: Vec<Endpoint>) -> Result<UniversalChannel> {
        UniversalChannel::new(
            UniversalChannelId::generate(),
            OrgId::generate(),
            "eng",
            endpoints,
        )
    }

    #[test]
    fn universal_channel_needs_two_platforms() {
        assert!(uc(vec![]).is_err());
        assert!(uc(vec![ep("slack:T1/C1")]).is_err());
        let same_platform = uc(vec![ep("slack:T1/C1"), ep("slack:T1/C2")]).unwrap_err();
        assert_eq!(same_platform.kind(), crate::ErrorKind::InvalidInput);
        assert!(same_platform.message().contains("two platforms"));
        let ok = uc(vec![ep("slack:T1/C1"), ep("msteams:G1/19:a@thread.tacv2")]).unwrap();
        assert_eq!(ok.endpoints().len(), 2);
        let origin: ChannelRef = "slack:T1/C1".parse().unwrap();
        let targets: Vec<_> = ok.targets_for(&origin).collect();
        assert_eq!(targets.len(), 1);
        assert_eq!(targets[0].channel.platform, PlatformKind::Msteams);
    }

    #[test]
    fn universal_channel_refuses_duplicates_and_bad_names() {
        assert!(
            uc(vec![
                ep("slack:T1/C1"),
                ep("slack:T1/C1"),
                ep("msteams:G/19:x")
            ])
            .is_err()
        );
        let eps = || vec![ep("slack:T1/C1"), ep("msteams:G/19:x")];
        assert!(
            UniversalChannel::new(
                UniversalChannelId::generate(),
                OrgId::generate(),
                "  ",
                eps()
            )
            .is_err()
        );
        assert!(
            UniversalChannel::new(
                UniversalChannelId::generate(),
                OrgId::generate(),
                "x".repeat(MAX_NAME_LEN + 1),
                eps()
            )
            .is_err()
        );
        let named = UniversalChannel::new(
            UniversalChannelId::generate(),
            OrgId::generate(),
            " eng ",
            eps(),
        )
        .unwrap();
        assert_eq!(named.name(), "eng");
    }

    #[test]
    fn enums_round_trip() {
        for h in [
            ConnectionHealth::Ok,
            ConnectionHealth::NeedsReauth,
            ConnectionHealth::MissingRoles,
            ConnectionHealth::MissingScopes,
            ConnectionHealth::Degraded,
            ConnectionHealth::Disabled,
        ] {
            assert_eq!(h.as_str().parse::<ConnectionHealth>().unwrap(), h);
            assert_eq!(serde_json::to_value(h).unwrap(), h.as_str());
        }
        assert!("exploded".parse::<ConnectionHealth>().is_err());
        for k in [
            ChannelKind::Standard,
            ChannelKind::Private,
            ChannelKind::Shared,
        ] {
            assert_eq!(k.as_str().parse::<ChannelKind>().unwrap(), k);
        }
    }

    #[test]
    fn credentials_debug_redacts_tokens() {
        let c = Credentials {
            access_token: SecretString::from("xoxb-very-secret"),
            refresh_token: Some(SecretString::from("refresh-very-secret")),
            expires_at: None,
            scopes: vec!["chat:write".into()],
        };
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("very-secret"), "{dbg}");
        assert!(
            dbg.contains("REDACTED") || dbg.contains("redacted"),
            "{dbg}"
        );
    }
}
