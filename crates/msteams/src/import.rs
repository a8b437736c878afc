//! Importing teams, channels, members and users, page by page, paced under Graph's limits.

use async_trait::async_trait;
use futures::StreamExt;
use switchboard_core::{
    Channel, ChannelId, ChannelKind, ChannelRef, Error, ErrorKind, ImportCounts, ImportPhase,
    ImportSink, Membership, PlatformKind, Progress, Result, Team, TeamId, TeamImport,
    TeamListSource, TeamListing, User, UserId,
};
use tokio::sync::mpsc;

use crate::connection::MsTeamsConnection;
use crate::wire::{GraphChannel, GraphMember, GraphTeam, GraphUser};

/// `$select` of the user import.
pub const USER_SELECT: &str = "id,displayName,mail,userPrincipalName,userType,accountEnabled";
/// `$select` of the channel import.
pub const CHANNEL_SELECT: &str = "id,displayName,description,membershipType";

fn team_of(t: GraphTeam) -> Option<Team> {
    let id = TeamId::new(t.id.clone()).ok()?;
    Some(Team {
        name: t
            .display_name
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| t.id.clone()),
        description: t.description.filter(|d| !d.is_empty()),
        id,
    })
}

/// The channel kind of a `membershipType` (an unknown future value is treated as private,
/// the more careful assumption).
pub fn channel_kind(membership_type: Option<&str>) -> ChannelKind {
    match membership_type.map(str::to_ascii_lowercase).as_deref() {
        None | Some("standard") => ChannelKind::Standard,
        Some("shared") => ChannelKind::Shared,
        Some(_) => ChannelKind::Private,
    }
}

fn channel_of(team: &TeamId, c: GraphChannel) -> Option<Channel> {
    let id = ChannelId::new(c.id.clone()).ok()?;
    Some(Channel {
        team: team.clone(),
        name: c
            .display_name
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| c.id.clone()),
        kind: channel_kind(c.membership_type.as_deref()),
        description: c.description.filter(|d| !d.is_empty()),
        id,
    })
}

fn membership_of(team: &TeamId, m: GraphMember) -> Option<Membership> {
    let user = UserId::new(m.user_id?).ok()?;
    Some(Membership {
        team: team.clone(),
        user,
        is_owner: m.roles.iter().any(|r| r.eq_ignore_ascii_case("owner")),
    })
}

/// The portable user of a Graph user: `mail` as the email (never the UPN, which is not a
/// verified address), `userType == Guest` as guest, `accountEnabled == false` as deleted.
pub fn user_of(u: GraphUser) -> Option<User> {
    let id = UserId::new(u.id.clone()).ok()?;
    Some(User {
        display_name: u
            .display_name
            .filter(|n| !n.trim().is_empty())
            .or(u.user_principal_name)
            .unwrap_or_else(|| u.id.clone()),
        email: u.mail.filter(|m| m.contains('@')),
        avatar_url: None,
        is_guest: u
            .user_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("guest")),
        is_bot: false,
        is_deleted: u.account_enabled == Some(false),
        id,
    })
}

enum Item {
    /// A page of channels; `true` on the team's last channel page.
    Channels(TeamId, Vec<Channel>, bool),
    /// A page of members; `true` on the team's last member page.
    Members(TeamId, Vec<Membership>, bool),
    /// The team could not be read (403: a private team the account is not a member of).
    Skipped(SkippedTeam),
    Failed(Error),
}

/// A team an import left out because the account may not read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedTeam {
    /// The team.
    pub team: TeamId,
    /// Why, in words for an administrator.
    pub reason: String,
}

/// What [`MsTeamsConnection::import_teams_report`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TeamsImport {
    /// What was delivered.
    pub counts: ImportCounts,
    /// Teams left out, with the reason (nothing of theirs was delivered).
    pub skipped: Vec<SkippedTeam>,
}

/// The words for a team the account may not read.
fn skipped_reason(team: &TeamId, e: &Error) -> String {
    format!(
        "team {team} was skipped: the service account may not read its channels and members (it is not a member, or was removed from team {team}, and is not a Teams Administrator; a non-admin sees every team in /teams, private ones included). Add the account to the team (ensure_membership) or give it the Teams Administrator role to import it. Graph said: {}",
        e.message()
    )
}

impl MsTeamsConnection {
    async fn list_all_teams(&self) -> Result<Vec<Team>> {
        let url = self.graph.url(
            &["teams"],
            &[("$select", "id,displayName,description"), ("$top", "999")],
        );
        let mut teams = Vec::new();
        self.graph
            .for_each_page::<GraphTeam, _>(url, |p| {
                teams.extend(p.items.into_iter().filter_map(team_of));
                Ok(true)
            })
            .await?;
        Ok(teams)
    }

    async fn list_joined_teams(&self) -> Result<Vec<Team>> {
        let url = self.graph.url(&["me", "joinedTeams"], &[]);
        let mut teams = Vec::new();
        self.graph
            .for_each_page::<GraphTeam, _>(url, |p| {
                teams.extend(p.items.into_iter().filter_map(team_of));
                Ok(true)
            })
            .await?;
        Ok(teams)
    }

    /// Imports several teams at once: their channels and members are fetched concurrently
    /// (bounded by the connection's concurrency and paced under the limits) and handed to
    /// `sink` one page at a time, so memory stays bounded by a few pages. Progress reports
    /// an estimated total extrapolated from the teams finished so far.
    ///
    /// Teams the account may not read (403 on their channels: private teams of which a
    /// non-admin account is not a member) are skipped and logged; use
    /// [`MsTeamsConnection::import_teams_report`] to get the list.
    pub async fn import_teams(
        &self,
        teams: &[TeamId],
        sink: &mut dyn ImportSink,
    ) -> Result<ImportCounts> {
        Ok(self.import_teams_report(teams, sink).await?.counts)
    }

    /// As [`MsTeamsConnection::import_teams`], returning the skipped teams with the reason.
    pub async fn import_teams_report(
        &self,
        teams: &[TeamId],
        sink: &mut dyn ImportSink,
    ) -> Result<TeamsImport> {
        let concurrency = self.config.max_concurrency.max(1);
        let (tx, mut rx) = mpsc::channel::<Item>(concurrency * 2);
        let total_teams = teams.len() as u64;
        let producer = futures::stream::iter(teams.iter().cloned()).for_each_concurrent(
            concurrency,
            move |team| {
                let tx = tx.clone();
                async move {
                    if tx.is_closed() {
                        // the consumer stopped (an error): start nothing new
                        return;
                    }
                    if let Err(e) = self.fetch_team_into(&team, &tx).await {
                        let _ = tx.send(Item::Failed(e)).await;
                    }
                }
            },
        );
        // the closure owns the last sender: once every team is done it is dropped and the
        // consumer sees the end of the channel
        let producer = async move {
            producer.await;
        };
        let consumer = async {
            let mut counts = ImportCounts::default();
            let mut skipped = Vec::new();
            // teams whose channels / members are complete, for the estimate
            let (mut channels_done, mut members_done) = (0u64, 0u64);
            let estimate = |done: u64, finished: u64| {
                if finished == total_teams {
                    Some(done)
                } else {
                    (done * total_teams).checked_div(finished)
                }
            };
            while let Some(item) = rx.recv().await {
                match item {
                    Item::Channels(team, page, last) => {
                        counts.channels += page.len() as u64;
                        channels_done += u64::from(last);
                        sink.channels(&team, page).await?;
                        sink.progress(Progress {
                            phase: ImportPhase::Channels,
                            done: counts.channels,
                            estimated_total: estimate(counts.channels, channels_done),
                        })
                        .await?;
                    }
                    Item::Members(team, page, last) => {
                        counts.members += page.len() as u64;
                        members_done += u64::from(last);
                        sink.members(&team, page).await?;
                        sink.progress(Progress {
                            phase: ImportPhase::Members,
                            done: counts.members,
                            estimated_total: estimate(counts.members, members_done),
                        })
                        .await?;
                    }
                    Item::Skipped(s) => {
                        tracing::warn!(team = %s.team, reason = %s.reason, "team skipped by the import");
                        // a skipped team finishes both phases for the estimate
                        channels_done += 1;
                        members_done += 1;
                        skipped.push(s);
                    }
                    Item::Failed(e) => return Err(e),
                }
            }
            Ok(TeamsImport { counts, skipped })
        };
        let ((), result) = futures::future::join(producer, consumer).await;
        result
    }

    async fn fetch_team_into(&self, team: &TeamId, tx: &mpsc::Sender<Item>) -> Result<()> {
        let closed = || Error::new(ErrorKind::Upstream, "the import was stopped");
        let mut next = Some(self.graph.url(
            &["teams", team.as_str(), "channels"],
            &[("$select", CHANNEL_SELECT)],
        ));
        let mut first = true;
        while let Some(u) = next.take() {
            let page = match self.graph.get_page::<GraphChannel>(u).await {
                Ok(p) => p,
                Err(e) if first && e.kind() == ErrorKind::Forbidden => {
                    let reason = skipped_reason(team, &e);
                    return tx
                        .send(Item::Skipped(SkippedTeam {
                            team: team.clone(),
                            reason,
                        }))
                        .await
                        .map_err(|_| closed());
                }
                Err(e) => return Err(self.team_error(team.as_str(), e)),
            };
            first = false;
            next = page.next_link;
            let items = page
                .items
                .into_iter()
                .filter_map(|c| channel_of(team, c))
                .collect();
            tx.send(Item::Channels(team.clone(), items, next.is_none()))
                .await
                .map_err(|_| closed())?;
        }
        let mut next = Some(
            self.graph
                .url(&["teams", team.as_str(), "members"], &[("$top", "999")]),
        );
        while let Some(u) = next.take() {
            let page = self
                .graph
                .get_page::<GraphMember>(u)
                .await
                .map_err(|e| self.team_error(team.as_str(), e))?;
            next = page.next_link;
            let items = page
                .items
                .into_iter()
                .filter_map(|m| membership_of(team, m))
                .collect();
            tx.send(Item::Members(team.clone(), items, next.is_none()))
                .await
                .map_err(|_| closed())?;
        }
        Ok(())
    }
}

#[async_trait]
impl TeamImport for MsTeamsConnection {
    /// Every team of the tenant (`/teams`); when that is forbidden, the teams the service
    /// account belongs to (`/me/joinedTeams`), and the listing says so.
    async fn list_teams(&self) -> Result<TeamListing> {
        match self.list_all_teams().await {
            Ok(teams) => Ok(TeamListing {
                teams,
                source: TeamListSource::TenantWide,
            }),
            Err(e) if e.kind() == ErrorKind::Forbidden => {
                tracing::info!(error = %e, "listing all teams is forbidden; falling back to joined teams");
                Ok(TeamListing {
                    teams: self.list_joined_teams().await?,
                    source: TeamListSource::Joined,
                })
            }
            Err(e) => Err(e),
        }
    }

    async fn import_team(&self, team: &TeamId, sink: &mut dyn ImportSink) -> Result<ImportCounts> {
        let mut counts = ImportCounts::default();
        // channels, one page at a time: each page is handed over before the next is read
        let url = self.graph.url(
            &["teams", team.as_str(), "channels"],
            &[("$select", CHANNEL_SELECT)],
        );
        let mut next = Some(url);
        let mut first = true;
        while let Some(u) = next.take() {
            let page = match self.graph.get_page::<GraphChannel>(u).await {
                Ok(p) => p,
                Err(e) if first && e.kind() == ErrorKind::Forbidden => {
                    return Err(Error::new(ErrorKind::Forbidden, skipped_reason(team, &e)));
                }
                Err(e) => return Err(self.team_error(team.as_str(), e)),
            };
            first = false;
            next = page.next_link.clone();
            let items: Vec<Channel> = page
                .items
                .into_iter()
                .filter_map(|c| channel_of(team, c))
                .collect();
            counts.channels += items.len() as u64;
            sink.channels(team, items).await?;
            sink.progress(Progress {
                phase: ImportPhase::Channels,
                done: counts.channels,
                estimated_total: page.count.or(next.is_none().then_some(counts.channels)),
            })
            .await?;
        }
        let url = self
            .graph
            .url(&["teams", team.as_str(), "members"], &[("$top", "999")]);
        let mut next = Some(url);
        while let Some(u) = next.take() {
            let page = self
                .graph
                .get_page::<GraphMember>(u)
                .await
                .map_err(|e| self.team_error(team.as_str(), e))?;
            next = page.next_link.clone();
            let items: Vec<Membership> = page
                .items
                .into_iter()
                .filter_map(|m| membership_of(team, m))
                .collect();
            counts.members += items.len() as u64;
            sink.members(team, items).await?;
            sink.progress(Progress {
                phase: ImportPhase::Members,
                done: counts.members,
                estimated_total: page.count.or(next.is_none().then_some(counts.members)),
            })
            .await?;
        }
        Ok(counts)
    }

    /// Private and shared channels: their own members (`/teams/{t}/channels/{c}/members`);
    /// standard channels: the team's members (`/teams/{t}/members`). `$top=999`, the
    /// largest page both allow. Each page goes to `sink.channel_members` as user ids.
    async fn import_channel_members(
        &self,
        channel: &ChannelRef,
        sink: &mut dyn ImportSink,
    ) -> Result<ImportCounts> {
        if channel.platform != PlatformKind::Msteams {
            return Err(Error::invalid(format!(
                "{channel} is not a Microsoft Teams channel"
            )));
        }
        let team = channel.team.as_str();
        let url = self.graph.url(
            &["teams", team, "channels", channel.channel.as_str()],
            &[("$select", "id,membershipType")],
        );
        let c: GraphChannel = self
            .graph
            .get_json(url)
            .await
            .map_err(|e| self.team_error(team, e))?;
        let url = match channel_kind(c.membership_type.as_deref()) {
            ChannelKind::Standard => self
                .graph
                .url(&["teams", team, "members"], &[("$top", "999")]),
            _ => self.graph.url(
                &[
                    "teams",
                    team,
                    "channels",
                    channel.channel.as_str(),
                    "members",
                ],
                &[("$top", "999")],
            ),
        };
        let mut counts = ImportCounts::default();
        let mut next = Some(url);
        while let Some(u) = next.take() {
            let page = self
                .graph
                .get_page::<GraphMember>(u)
                .await
                .map_err(|e| self.team_error(team, e))?;
            next = page.next_link.clone();
            let users: Vec<UserId> = page
                .items
                .into_iter()
                .filter_map(|m| UserId::new(m.user_id?).ok())
                .collect();
            counts.members += users.len() as u64;
            sink.channel_members(channel, users).await?;
            sink.progress(Progress {
                phase: ImportPhase::ChannelMembers,
                done: counts.members,
                estimated_total: page.count.or(next.is_none().then_some(counts.members)),
            })
            .await?;
        }
        Ok(counts)
    }

    async fn import_users(&self, sink: &mut dyn ImportSink) -> Result<ImportCounts> {
        let url = self
            .graph
            .url(&["users"], &[("$select", USER_SELECT), ("$top", "999")]);
        let mut counts = ImportCounts::default();
        let mut next = Some(url);
        let mut hint = None;
        while let Some(u) = next.take() {
            let page = self.graph.get_page::<GraphUser>(u).await?;
            next = page.next_link.clone();
            hint = page.count.or(hint);
            let items: Vec<User> = page.items.into_iter().filter_map(user_of).collect();
            counts.users += items.len() as u64;
            sink.users(items).await?;
            sink.progress(Progress {
                phase: ImportPhase::Users,
                done: counts.users,
                estimated_total: hint.or(next.is_none().then_some(counts.users)),
            })
            .await?;
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_items_map_to_the_core_model() {
        assert_eq!(channel_kind(None), ChannelKind::Standard);
        assert_eq!(channel_kind(Some("standard")), ChannelKind::Standard);
        assert_eq!(channel_kind(Some("private")), ChannelKind::Private);
        assert_eq!(channel_kind(Some("shared")), ChannelKind::Shared);
        assert_eq!(
            channel_kind(Some("unknownFutureValue")),
            ChannelKind::Private
        );
        let u = user_of(GraphUser {
            id: "u1".into(),
            display_name: None,
            mail: Some("not-an-address".into()),
            user_principal_name: Some("jane@contoso.test".into()),
            user_type: Some("Guest".into()),
            account_enabled: Some(false),
        })
        .unwrap();
        assert_eq!(u.display_name, "jane@contoso.test");
        assert_eq!(u.email, None);
        assert!(u.is_guest && u.is_deleted && !u.is_bot);
        assert!(
            user_of(GraphUser {
                id: "".into(),
                display_name: None,
                mail: None,
                user_principal_name: None,
                user_type: None,
                account_enabled: None
            })
            .is_none()
        );
        let team = TeamId::new("T").unwrap();
        let m = membership_of(
            &team,
            GraphMember {
                odata_type: None,
                id: "m".into(),
                roles: vec!["Owner".into()],
                display_name: None,
                user_id: Some("u1".into()),
                email: None,
                tenant_id: None,
            },
        )
        .unwrap();
        assert!(m.is_owner);
    }
}
