//! The capability report: before channels are linked into a universal channel, what will
//! degrade on them and why, from what the store knows (the channels as imported, the
//! connections' health, the scopes granted to their credentials, the team memberships of the
//! service accounts, the universal channels already made).
//!
//! Every finding has a severity. A **blocker** refuses the link (a channel that was never
//! imported, one already linked, fewer than two platforms); **degraded** means the link works
//! but something a user would expect does not (no sender name and avatar on Slack, files
//! linked instead of uploaded, a connection that needs reconnecting); **unknown** says a fact
//! that matters is not recorded, so the report does not guess; **info** is a limit worth
//! knowing (Teams' 3,000 messages a day into one channel).
//!
//! The platform facts used here (scope names, limits) are the ones of
//! `shared/PLATFORM_FACTS.md`: Slack bot scopes, Microsoft Graph delegated permissions.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;
use switchboard_core::{
    ChannelKind, ChannelRef, Connection, ConnectionHealth, ConnectionId, OrgId, PlatformKind,
    Result, Store,
};
use utoipa::ToSchema;

/// The most endpoints one universal channel may be proposed with.
pub const MAX_ENDPOINTS: usize = 20;

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The link cannot be made.
    Blocker,
    /// The link works, with less than a user would expect.
    Degraded,
    /// A fact that matters is not recorded; the report does not guess.
    Unknown,
    /// A limit worth knowing.
    Info,
}

impl Severity {
    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Blocker => "blocker",
            Severity::Degraded => "degraded",
            Severity::Unknown => "unknown",
            Severity::Info => "info",
        }
    }
}

/// One thing that will not work as expected, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Finding {
    /// How much it matters.
    pub severity: Severity,
    /// A stable code (`not_imported`, `no_sender_identity`, `files_linked`, …).
    pub code: &'static str,
    /// The channel it is about (`slack:T/C`), when it is about one.
    pub endpoint: Option<String>,
    /// What will happen, in words.
    pub summary: String,
    /// What to do about it, when something can be done.
    pub fix: Option<String>,
}

/// What the store knows of one proposed endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct EndpointFacts {
    /// The reference as given.
    #[serde(rename = "ref")]
    pub reference: String,
    /// `msteams` or `slack`.
    pub platform: String,
    /// The channel's name, when imported.
    pub name: Option<String>,
    /// `standard`, `private` or `shared`, when imported.
    pub kind: Option<String>,
    /// The connection that reaches it, when imported.
    pub connection: Option<String>,
    /// That connection's health.
    pub health: Option<String>,
}

/// The capability report of a proposed universal channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct CapabilityReport {
    /// Whether the link can be made (no blocker).
    pub can_link: bool,
    /// The proposed endpoints, as the store knows them.
    pub endpoints: Vec<EndpointFacts>,
    /// What will degrade, most serious first.
    pub findings: Vec<Finding>,
}

impl CapabilityReport {
    /// The findings of `severity`.
    pub fn of(&self, severity: Severity) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(move |f| f.severity == severity)
    }

    /// The report as plain text lines (the CLI's `link --dry-run`).
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for e in &self.endpoints {
            out.push_str(&format!(
                "  {} {}{}\n",
                e.reference,
                e.name
                    .as_deref()
                    .map(|n| format!("#{n}"))
                    .unwrap_or_default(),
                e.health
                    .as_deref()
                    .map(|h| format!(" (connection {h})"))
                    .unwrap_or_default()
            ));
        }
        if self.findings.is_empty() {
            out.push_str("Nothing will degrade: every message, edit, reaction and file flows.\n");
        }
        for f in &self.findings {
            // Name the channel as people know it when the store does.
            let about = f.endpoint.as_deref().map(|e| {
                self.endpoints
                    .iter()
                    .find(|x| x.reference == e)
                    .and_then(|x| x.name.as_deref())
                    .map(|n| format!("#{n}"))
                    .unwrap_or_else(|| e.to_owned())
            });
            out.push_str(&format!(
                "{:<9} {}{}\n",
                f.severity.as_str(),
                about.map(|a| format!("{a}: ")).unwrap_or_default(),
                f.summary
            ));
            if let Some(fix) = &f.fix {
                out.push_str(&format!("          fix: {fix}\n"));
            }
        }
        out.push_str(if self.can_link {
            "The link can be made.\n"
        } else {
            "The link cannot be made until the blockers are fixed.\n"
        });
        out
    }
}

fn platform_name(p: PlatformKind) -> &'static str {
    match p {
        PlatformKind::Msteams => "Microsoft Teams",
        PlatformKind::Slack => "Slack",
        _ => "this platform",
    }
}

/// A scope as compared: Graph permissions may come in full form
/// (`https://graph.microsoft.com/ChannelMessage.Send`); compared case-insensitively.
fn short_scope(s: &str) -> String {
    s.rsplit('/').next().unwrap_or(s).to_ascii_lowercase()
}

/// A scope whose absence degrades a link: (platform, scope, code, what happens without it,
/// applies to private channels only).
struct ScopeFact {
    platform: PlatformKind,
    scope: &'static str,
    code: &'static str,
    without: &'static str,
    private_only: bool,
}

const SCOPE_FACTS: &[ScopeFact] = &[
    ScopeFact {
        platform: PlatformKind::Slack,
        scope: "chat:write",
        code: "cannot_post",
        without: "Switchboard cannot post into Slack: messages from the other platforms will fail and be dead-lettered",
        private_only: false,
    },
    ScopeFact {
        platform: PlatformKind::Slack,
        scope: "chat:write.customize",
        code: "no_sender_identity",
        without: "copies in Slack show the app's own name and avatar, not the sender's (the sender's name is put in the text instead)",
        private_only: false,
    },
    ScopeFact {
        platform: PlatformKind::Slack,
        scope: "files:write",
        code: "files_linked",
        without: "files from the other platforms are linked in the message, not uploaded into Slack",
        private_only: false,
    },
    ScopeFact {
        platform: PlatformKind::Slack,
        scope: "reactions:write",
        code: "no_reactions",
        without: "reactions made on the other platforms are not shown in Slack",
        private_only: false,
    },
    ScopeFact {
        platform: PlatformKind::Slack,
        scope: "channels:history",
        code: "cannot_read",
        without: "messages of public Slack channels cannot be read, so nothing is relayed from them",
        private_only: false,
    },
    ScopeFact {
        platform: PlatformKind::Slack,
        scope: "groups:history",
        code: "cannot_read_private",
        without: "messages of private Slack channels cannot be read, so nothing is relayed from this one",
        private_only: true,
    },
    ScopeFact {
        platform: PlatformKind::Msteams,
        scope: "ChannelMessage.Send",
        code: "cannot_post",
        without: "the service account cannot post into Teams channels: messages from the other platforms will fail and be dead-lettered",
        private_only: false,
    },
    ScopeFact {
        platform: PlatformKind::Msteams,
        scope: "ChannelMessage.Read.All",
        code: "cannot_read",
        without: "messages of Teams channels cannot be read, so nothing is relayed from them",
        private_only: false,
    },
    ScopeFact {
        platform: PlatformKind::Msteams,
        scope: "Files.ReadWrite.All",
        code: "files_linked",
        without: "files from the other platforms are linked in the message, not uploaded into the channel's SharePoint folder",
        private_only: false,
    },
];

fn scope_fix(platform: PlatformKind, scope: &str) -> String {
    match platform {
        PlatformKind::Slack => format!(
            "Add the bot scope {scope} to the Slack app (api.slack.com → your app → OAuth & Permissions → Bot Token Scopes), reinstall it, then connect Slack again from Connect Platforms."
        ),
        _ => format!(
            "Add the delegated Microsoft Graph permission {scope} to the app registration (Microsoft Entra admin center → App registrations → API permissions), grant admin consent, then connect Teams again from Connect Platforms."
        ),
    }
}

fn health_finding(c: &Connection, endpoints: &str) -> Option<Finding> {
    let name = platform_name(c.platform);
    let (summary, fix) = match c.health {
        ConnectionHealth::Ok => return None,
        ConnectionHealth::NeedsReauth => (
            format!(
                "the {name} connection {} needs reconnecting: nothing is relayed to or from {endpoints} until then (messages wait, none are dropped)",
                c.display_name
            ),
            format!("Connect {name} again from Connect Platforms."),
        ),
        ConnectionHealth::MissingRoles => (
            format!(
                "the {name} service account {} lacks directory roles: it may not see or join every team, and deliveries into {endpoints} can fail",
                c.account.display_name
            ),
            "Give the service account the Application Administrator and Teams Administrator roles (User Administrator too when guests are synced) as active assignments, then connect Teams again.".to_owned(),
        ),
        ConnectionHealth::MissingScopes => (
            format!(
                "the {name} connection {} was granted fewer permissions than Switchboard requests: some of {endpoints}'s traffic will fail",
                c.display_name
            ),
            format!("Grant every permission Switchboard asks for, then connect {name} again."),
        ),
        ConnectionHealth::Degraded => (
            format!(
                "the {name} connection {} has been failing recently: deliveries into {endpoints} are retried and may be late",
                c.display_name
            ),
            "Run `switchboard doctor` to see what fails.".to_owned(),
        ),
        ConnectionHealth::Disabled => (
            format!(
                "the {name} connection {} is disabled: nothing is relayed to or from {endpoints}",
                c.display_name
            ),
            format!("Connect {name} again from Connect Platforms."),
        ),
        _ => (
            format!(
                "the {name} connection {} is in an unknown state",
                c.display_name
            ),
            "Run `switchboard doctor`.".to_owned(),
        ),
    };
    Some(Finding {
        severity: Severity::Degraded,
        code: "connection_unhealthy",
        endpoint: None,
        summary,
        fix: Some(fix),
    })
}

/// Builds the capability report of a universal channel over `endpoints` for `org`. Reads
/// only; changes nothing. Problems of the proposal itself (a channel not imported, fewer than
/// two platforms, too many endpoints) are blockers in the report, not errors; an error means
/// the store could not be read.
pub async fn report(
    store: &dyn Store,
    org: &OrgId,
    endpoints: &[ChannelRef],
) -> Result<CapabilityReport> {
    let mut findings: Vec<Finding> = Vec::new();
    let mut facts: Vec<EndpointFacts> = Vec::new();
    let connections: HashMap<ConnectionId, Connection> = store
        .list_connections(org)
        .await?
        .into_iter()
        .map(|c| (c.id.clone(), c))
        .collect();
    let connected: BTreeSet<PlatformKind> = connections.values().map(|c| c.platform).collect();

    if endpoints.len() > MAX_ENDPOINTS {
        findings.push(Finding {
            severity: Severity::Blocker,
            code: "too_many_endpoints",
            endpoint: None,
            summary: format!(
                "{} channels were proposed; a universal channel links at most {MAX_ENDPOINTS}",
                endpoints.len()
            ),
            fix: Some("Link fewer channels.".into()),
        });
    }
    if connected.len() < 2 {
        let which = match connected.iter().next() {
            Some(p) => format!("only {} is connected", platform_name(*p)),
            None => "no platform is connected".to_owned(),
        };
        findings.push(Finding {
            severity: Severity::Blocker,
            code: "one_platform_connected",
            endpoint: None,
            summary: format!(
                "{which}: a universal channel needs channels on at least two connected platforms"
            ),
            fix: Some(
                "Connect both Microsoft Teams and Slack from Connect Platforms, and import their teams."
                    .into(),
            ),
        });
    }
    let mut seen = BTreeSet::new();
    // Per connection: the endpoints it serves and whether any of them is private.
    let mut per_connection: BTreeMap<ConnectionId, (Vec<String>, bool)> = BTreeMap::new();
    let mut platforms = BTreeSet::new();
    for reference in endpoints.iter().take(MAX_ENDPOINTS) {
        let r = reference.to_string();
        let mut fact = EndpointFacts {
            reference: r.clone(),
            platform: reference.platform.to_string(),
            name: None,
            kind: None,
            connection: None,
            health: None,
        };
        if !seen.insert(reference.clone()) {
            findings.push(Finding {
                severity: Severity::Blocker,
                code: "duplicate_channel",
                endpoint: Some(r.clone()),
                summary: "this channel is proposed twice".into(),
                fix: Some("Name each channel once.".into()),
            });
            continue;
        }
        platforms.insert(reference.platform);
        let Some(stored) = store.get_channel(org, reference).await? else {
            findings.push(Finding {
                severity: Severity::Blocker,
                code: "not_imported",
                endpoint: Some(r.clone()),
                summary: "this channel has not been imported".into(),
                fix: Some(format!(
                    "Import its {} from Connect Platforms (Choose teams), or check the reference.",
                    if reference.platform == PlatformKind::Slack {
                        "workspace"
                    } else {
                        "team"
                    }
                )),
            });
            facts.push(fact);
            continue;
        };
        fact.name = Some(stored.channel.name.clone());
        fact.kind = Some(stored.channel.kind.as_str().to_owned());
        fact.connection = Some(stored.connection.to_string());
        if stored.removed {
            findings.push(Finding {
                severity: Severity::Blocker,
                code: "channel_removed",
                endpoint: Some(r.clone()),
                summary: format!(
                    "#{} no longer exists on {} (it was gone at the last import)",
                    stored.channel.name,
                    platform_name(reference.platform)
                ),
                fix: Some(
                    "Pick another channel, or import its team again if it was restored.".into(),
                ),
            });
        }
        if let Some(existing) = store.find_universal_channel(org, reference).await? {
            findings.push(Finding {
                severity: Severity::Blocker,
                code: "already_linked",
                endpoint: Some(r.clone()),
                summary: format!(
                    "#{} is already linked in the universal channel {:?}",
                    stored.channel.name,
                    existing.name()
                ),
                fix: Some(format!(
                    "Unlink {:?} first, or leave this channel out.",
                    existing.name()
                )),
            });
        }
        match connections.get(&stored.connection) {
            None => findings.push(Finding {
                severity: Severity::Blocker,
                code: "no_connection",
                endpoint: Some(r.clone()),
                summary: "the connection this channel was imported through is gone".into(),
                fix: Some(format!(
                    "Connect {} again and import the channel's team.",
                    platform_name(reference.platform)
                )),
            }),
            Some(c) => {
                fact.health = Some(c.health.to_string());
                let entry = per_connection.entry(c.id.clone()).or_default();
                entry.0.push(r.clone());
                entry.1 |= stored.channel.kind == ChannelKind::Private;
            }
        }
        match stored.channel.kind {
            ChannelKind::Private => findings.push(private_finding(reference, &r, &stored.channel.name)),
            ChannelKind::Shared => findings.push(Finding {
                severity: Severity::Info,
                code: "shared_channel",
                endpoint: Some(r.clone()),
                summary: format!(
                    "#{} is shared with another team or organization: people outside it see the copies too, and their files may need an extra lookup",
                    stored.channel.name
                ),
                fix: None,
            }),
            ChannelKind::Standard => {}
        }
        if reference.platform == PlatformKind::Msteams {
            findings.push(Finding {
                severity: Severity::Info,
                code: "teams_daily_cap",
                endpoint: Some(r.clone()),
                summary: format!(
                    "Teams accepts at most 3,000 messages a day from one app into #{}: past that, copies wait (queued, not lost) until the next day, and when a backlog builds messages of several senders are combined into one post",
                    stored.channel.name
                ),
                fix: None,
            });
            if let Some(c) = connections.get(&stored.connection) {
                let members = store.list_memberships(org, &c.id, &reference.team).await?;
                if members.is_empty() {
                    findings.push(Finding {
                        severity: Severity::Unknown,
                        code: "team_membership_not_recorded",
                        endpoint: Some(r.clone()),
                        summary: "no members of this team were recorded at import, so whether the service account is in it is not known".into(),
                        fix: Some("Import the team again from Connect Platforms: Switchboard adds the service account to every team it imports.".into()),
                    });
                } else if !members.iter().any(|m| m.user == c.account.user_id) {
                    findings.push(Finding {
                        severity: Severity::Degraded,
                        code: "not_team_member",
                        endpoint: Some(r.clone()),
                        summary: format!(
                            "the service account {} was not a member of this team at the last import: posting into #{} fails until it is",
                            c.account.display_name, stored.channel.name
                        ),
                        fix: Some("Import the team again from Connect Platforms: Switchboard adds the service account to every team it imports.".into()),
                    });
                }
            }
        }
        facts.push(fact);
    }
    if endpoints.len() < 2 {
        findings.push(Finding {
            severity: Severity::Blocker,
            code: "too_few_endpoints",
            endpoint: None,
            summary: "a universal channel links at least two channels".into(),
            fix: Some("Pick one channel on each platform.".into()),
        });
    } else if platforms.len() < 2 && connected.len() >= 2 {
        findings.push(Finding {
            severity: Severity::Blocker,
            code: "one_platform",
            endpoint: None,
            summary: "every proposed channel is on the same platform: a universal channel needs channels on at least two platforms".into(),
            fix: Some("Add a channel of the other platform.".into()),
        });
    }

    for (id, (served, any_private)) in &per_connection {
        let Some(c) = connections.get(id) else {
            continue;
        };
        let names = served.join(", ");
        findings.extend(health_finding(c, &names));
        if !c.account.is_service_account {
            findings.push(Finding {
                severity: Severity::Degraded,
                code: "personal_token",
                endpoint: None,
                summary: format!(
                    "the {} connection {} acts as {}, a personal account: {names} stops relaying the day that person leaves or loses access",
                    platform_name(c.platform),
                    c.display_name,
                    c.account.display_name
                ),
                fix: Some(format!(
                    "Move it onto a dedicated service account in place: `switchboard connections migrate {}` (the link keeps working).",
                    c.id
                )),
            });
        }
        if c.platform == PlatformKind::Msteams {
            findings.push(Finding {
                severity: Severity::Info,
                code: "teams_sender_in_text",
                endpoint: None,
                summary: "in Teams the service account posts the copies with the sender's name in the message (people who link their own Teams account post as themselves)".into(),
                fix: None,
            });
        }
        let scopes = store
            .get_credentials(org, id)
            .await?
            .map(|cr| cr.scopes)
            .unwrap_or_default();
        if scopes.is_empty() {
            findings.push(Finding {
                severity: Severity::Unknown,
                code: "scopes_not_recorded",
                endpoint: None,
                summary: format!(
                    "the permissions granted to the {} connection {} were not recorded, so sender names, file uploads and posting into {names} cannot be checked in advance",
                    platform_name(c.platform),
                    c.display_name
                ),
                fix: Some(format!(
                    "Connect {} again from Connect Platforms to record them, or run `switchboard doctor`.",
                    platform_name(c.platform)
                )),
            });
            continue;
        }
        let granted: BTreeSet<String> = scopes.iter().map(|s| short_scope(s)).collect();
        for fact in SCOPE_FACTS.iter().filter(|f| f.platform == c.platform) {
            if fact.private_only && !any_private {
                continue;
            }
            if granted.contains(&short_scope(fact.scope)) {
                continue;
            }
            findings.push(Finding {
                severity: Severity::Degraded,
                code: fact.code,
                endpoint: None,
                summary: format!(
                    "{names}: without the {} permission, {}",
                    fact.scope, fact.without
                ),
                fix: Some(scope_fix(c.platform, fact.scope)),
            });
        }
    }
    findings.sort_by_key(|f| f.severity);
    Ok(CapabilityReport {
        can_link: !findings.iter().any(|f| f.severity == Severity::Blocker),
        endpoints: facts,
        findings,
    })
}

fn private_finding(reference: &ChannelRef, r: &str, name: &str) -> Finding {
    match reference.platform {
        PlatformKind::Slack => Finding {
            severity: Severity::Unknown,
            code: "private_channel_membership",
            endpoint: Some(r.to_owned()),
            summary: format!(
                "#{name} is private: Slack lists a private channel only to its members, so the bot was in it at the last import, but whether it still is is not recorded; if it was removed, deliveries fail with not_in_channel"
            ),
            fix: Some(format!(
                "In Slack, open #{name} and /invite the Switchboard app (harmless if it is already there)."
            )),
        },
        _ => Finding {
            severity: Severity::Unknown,
            code: "private_channel_membership",
            endpoint: Some(r.to_owned()),
            summary: format!(
                "#{name} is a private channel: the service account must be a member of the channel itself (team membership is not enough), and channel membership is not recorded by the import"
            ),
            fix: Some(format!(
                "In Teams, open #{name} → Manage channel → Members and add the service account (it must be a member of the team first)."
            )),
        },
    }
}
