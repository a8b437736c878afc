//! Typed identifiers. Every ID is a validated string newtype: non-empty, at most
//! [`MAX_ID_LEN`] bytes, no whitespace or control characters. Platform IDs keep the
//! platform's own form (`C0123ABC`, `19:…@thread.tacv2`, a GUID); Switchboard's own IDs
//! (organizations, connections, universal channels) are UUIDs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::Error;

/// The longest ID accepted, in bytes.
pub const MAX_ID_LEN: usize = 256;

fn validate(kind: &str, s: &str) -> Result<(), Error> {
    if s.is_empty() {
        return Err(Error::invalid(format!("{kind} must not be empty")));
    }
    if s.len() > MAX_ID_LEN {
        return Err(Error::invalid(format!(
            "{kind} is {} bytes long; at most {MAX_ID_LEN} are allowed",
            s.len()
        )));
    }
    if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Error::invalid(format!(
            "{kind} must not contain whitespace or control characters"
        )));
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $label:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps `id`.
            pub fn new(id: impl Into<String>) -> Result<Self, Error> {
                let id = id.into();
                validate($label, &id)?;
                Ok($name(id))
            }

            /// The ID as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Unwraps the string.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                $name::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $name::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $label:literal) => {
        string_id!($(#[$doc])* $name, $label);

        impl $name {
            /// A fresh random (v4) ID.
            pub fn generate() -> Self {
                $name(uuid::Uuid::new_v4().to_string())
            }
        }
    };
}

uuid_id!(
    /// An organization: the tenant of Switchboard itself; everything stored is scoped by one.
    OrgId,
    "organization id"
);
uuid_id!(
    /// A connected platform instance (one Microsoft tenant or one Slack workspace).
    ConnectionId,
    "connection id"
);
uuid_id!(
    /// A universal channel: a set of linked platform channels.
    UniversalChannelId,
    "universal channel id"
);
uuid_id!(
    /// A message as Switchboard knows it, across every platform it was relayed to.
    UniversalMessageId,
    "universal message id"
);
string_id!(
    /// A Teams team (group GUID) or a Slack workspace (`T…`).
    TeamId,
    "team id"
);
string_id!(
    /// A Teams channel (`19:…@thread.tacv2`) or a Slack conversation (`C…`, `G…`).
    ChannelId,
    "channel id"
);
string_id!(
    /// A platform user (Entra object id GUID, Slack `U…`/`W…`).
    UserId,
    "user id"
);
string_id!(
    /// A platform message (Graph message id, Slack `ts`).
    MessageId,
    "message id"
);
string_id!(
    /// A change-notification subscription of a platform (Graph subscription id).
    SubscriptionId,
    "subscription id"
);
string_id!(
    /// A Microsoft tenant id or a Slack workspace/enterprise id that a connection belongs to.
    TenantId,
    "tenant id"
);

/// The chat platforms Switchboard speaks. Open to more: unknown names are refused with a
/// clear error rather than mapped to a default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum PlatformKind {
    /// Microsoft Teams (Microsoft Graph).
    Msteams,
    /// Slack.
    Slack,
}

impl PlatformKind {
    /// Every supported platform.
    pub const ALL: [PlatformKind; 2] = [PlatformKind::Msteams, PlatformKind::Slack];

    /// The stable lowercase name (`msteams`, `slack`).
    pub fn as_str(self) -> &'static str {
        match self {
            PlatformKind::Msteams => "msteams",
            PlatformKind::Slack => "slack",
        }
    }

    /// A human name (`Microsoft Teams`, `Slack`).
    pub fn display_name(self) -> &'static str {
        match self {
            PlatformKind::Msteams => "Microsoft Teams",
            PlatformKind::Slack => "Slack",
        }
    }
}

impl fmt::Display for PlatformKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PlatformKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "msteams" => Ok(PlatformKind::Msteams),
            "slack" => Ok(PlatformKind::Slack),
            other => Err(Error::invalid(format!(
                "unknown platform {other:?}: expected `msteams` or `slack`"
            ))),
        }
    }
}

/// A channel on one platform: `msteams:<team>/<channel>` or `slack:<workspace>/<channel>`.
/// This is the `REF` of `switchboard link` and of the admin API.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ChannelRef {
    /// The platform.
    pub platform: PlatformKind,
    /// The team (Teams) or workspace (Slack).
    pub team: TeamId,
    /// The channel in it.
    pub channel: ChannelId,
}

impl ChannelRef {
    /// Builds a reference from its parts.
    pub fn new(platform: PlatformKind, team: TeamId, channel: ChannelId) -> Self {
        ChannelRef {
            platform,
            team,
            channel,
        }
    }
}

impl fmt::Display for ChannelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}/{}", self.platform, self.team, self.channel)
    }
}

impl FromStr for ChannelRef {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let (platform, rest) = s.split_once(':').ok_or_else(|| {
            Error::invalid(format!(
                "channel reference {s:?} must look like `slack:<workspace>/<channel>` or `msteams:<team>/<channel>`"
            ))
        })?;
        let platform: PlatformKind = platform.parse()?;
        let (team, channel) = rest.split_once('/').ok_or_else(|| {
            Error::invalid(format!(
                "channel reference {s:?} is missing the `/<channel>` part"
            ))
        })?;
        if channel.contains('/') {
            return Err(Error::invalid(format!(
                "channel reference {s:?} has more than one `/`"
            )));
        }
        Ok(ChannelRef {
            platform,
            team: team.parse()?,
            channel: channel.parse()?,
        })
    }
}

impl Serialize for ChannelRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ChannelRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_display_fromstr_and_serde() {
        let c = ChannelId::new("19:abc123@thread.tacv2").unwrap();
        assert_eq!(c.to_string().parse::<ChannelId>().unwrap(), c);
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(json, "\"19:abc123@thread.tacv2\"");
        assert_eq!(serde_json::from_str::<ChannelId>(&json).unwrap(), c);
        let o = OrgId::generate();
        assert_eq!(o.as_str().parse::<OrgId>().unwrap(), o);
    }

    #[test]
    fn ids_refuse_empty_long_and_control_characters() {
        assert_eq!(
            UserId::new("").unwrap_err().kind(),
            crate::ErrorKind::InvalidInput
        );
        assert!(UserId::new("a".repeat(MAX_ID_LEN)).is_ok());
        assert!(UserId::new("a".repeat(MAX_ID_LEN + 1)).is_err());
        assert!(UserId::new("U1\nU2").is_err());
        assert!(UserId::new("U1 U2").is_err());
        assert!(serde_json::from_str::<UserId>("\"\"").is_err());
    }

    #[test]
    fn platform_kind_round_trips_and_refuses_unknown() {
        for p in PlatformKind::ALL {
            assert_eq!(p.as_str().parse::<PlatformKind>().unwrap(), p);
            let j = serde_json::to_string(&p).unwrap();
            assert_eq!(serde_json::from_str::<PlatformKind>(&j).unwrap(), p);
        }
        assert!("discord".parse::<PlatformKind>().is_err());
        assert!(serde_json::from_str::<PlatformKind>("\"discord\"").is_err());
    }

    #[test]
    fn channel_refs_parse_both_platforms() {
        let r: ChannelRef = "msteams:0f1e-22/19:abc@thread.tacv2".parse().unwrap();
        assert_eq!(r.platform, PlatformKind::Msteams);
        assert_eq!(r.team.as_str(), "0f1e-22");
        assert_eq!(r.channel.as_str(), "19:abc@thread.tacv2");
        assert_eq!(r.to_string(), "msteams:0f1e-22/19:abc@thread.tacv2");
        let s: ChannelRef = "slack:T123/C456".parse().unwrap();
        assert_eq!(s.platform, PlatformKind::Slack);
        let j = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<ChannelRef>(&j).unwrap(), s);
        for bad in [
            "",
            "slack",
            "slack:T1",
            "slack:/C1",
            "slack:T1/",
            "irc:T1/C1",
            "slack:T1/C1/x",
        ] {
            assert!(bad.parse::<ChannelRef>().is_err(), "{bad:?} accepted");
        }
    }
}
