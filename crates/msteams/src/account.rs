//! The service account: directory roles and granted scopes ([`ServiceAccount::verify`]),
//! membership of imported teams ([`ServiceAccount::ensure_membership`]) and its detection of
//! removal ([`MsTeamsConnection::check_membership`]).

use async_trait::async_trait;
use base64::Engine as _;
use reqwest::Method;
use secrecy::ExposeSecret;
use switchboard_core::{
    AccessCheck, AccessReport, ChannelRef, CheckKind, Credentials, Error, ErrorKind,
    MembershipOutcome, Platform, Result, ServiceAccount, TeamId, VerifyOptions,
};

use crate::connection::MsTeamsConnection;
use crate::graph::GraphRequest;
use crate::oauth::{required_permissions, short_scope};
use crate::wire::{DirectoryObject, GraphMember};

/// A directory role by its template id (stable across tenants).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectoryRole {
    /// The role's name as the Entra admin center shows it.
    pub name: &'static str,
    /// Its `roleTemplateId`.
    pub template_id: &'static str,
}

/// Application Administrator.
pub const APPLICATION_ADMINISTRATOR: DirectoryRole = DirectoryRole {
    name: "Application Administrator",
    template_id: "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3",
};
/// Teams Administrator.
pub const TEAMS_ADMINISTRATOR: DirectoryRole = DirectoryRole {
    name: "Teams Administrator",
    template_id: "69091246-20e8-4a56-aa4d-066075b2a7a8",
};
/// User Administrator (needed when guests are synced).
pub const USER_ADMINISTRATOR: DirectoryRole = DirectoryRole {
    name: "User Administrator",
    template_id: "fe930be7-5e62-47db-91af-98c3a49a38b1",
};
/// Global Administrator (holds every permission of the others).
pub const GLOBAL_ADMINISTRATOR: DirectoryRole = DirectoryRole {
    name: "Global Administrator",
    template_id: "62e90394-69f5-4237-9190-012177145e10",
};

/// The roles a service account needs.
pub fn required_roles(guest_sync: bool) -> Vec<DirectoryRole> {
    let mut v = vec![APPLICATION_ADMINISTRATOR, TEAMS_ADMINISTRATOR];
    if guest_sync {
        v.push(USER_ADMINISTRATOR);
    }
    v
}

const DIRECTORY_ROLE_TYPE: &str = "#microsoft.graph.directoryRole";

/// One check per required role, from the account's directory objects. A Global
/// Administrator satisfies every role. When roles are present but their template ids are
/// hidden (no `RoleManagement.Read.Directory`), the checks fail with that fix.
pub fn role_checks(
    account: &str,
    objects: &[DirectoryObject],
    guest_sync: bool,
) -> Vec<AccessCheck> {
    let roles: Vec<&DirectoryObject> = objects
        .iter()
        .filter(|o| {
            o.odata_type
                .as_deref()
                .is_some_and(|t| t.eq_ignore_ascii_case(DIRECTORY_ROLE_TYPE))
        })
        .collect();
    let held = |r: DirectoryRole| {
        roles.iter().any(|o| {
            o.role_template_id
                .as_deref()
                .is_some_and(|id| id.eq_ignore_ascii_case(r.template_id))
        })
    };
    let hidden = !roles.is_empty() && roles.iter().all(|o| o.role_template_id.is_none());
    let global = held(GLOBAL_ADMINISTRATOR);
    required_roles(guest_sync)
        .into_iter()
        .map(|r| {
            let ok = global || held(r);
            let why = if r == USER_ADMINISTRATOR {
                " (needed because guest accounts are synced)"
            } else {
                ""
            };
            let fix = if ok {
                None
            } else if hidden {
                Some(format!(
                    "The directory roles of {account} could not be read: grant the app the delegated permission RoleManagement.Read.Directory (admin consent in Microsoft Entra admin center → App registrations → API permissions), reconnect, and check again."
                ))
            } else {
                Some(format!(
                    "In the Microsoft Entra admin center, open Identity → Roles & admins → {name}, choose Add assignments and assign the role to {account} as an active assignment (an eligible PIM assignment is not enough){why}; then reconnect Teams and check again.",
                    name = r.name
                ))
            };
            AccessCheck {
                kind: CheckKind::Role,
                name: format!("{} role", r.name),
                ok,
                fix,
            }
        })
        .collect()
}

/// One check per required Graph permission, from the granted scopes (full or short form,
/// case-insensitive).
pub fn scope_checks(granted: &[String], guest_sync: bool) -> Vec<AccessCheck> {
    required_permissions(guest_sync)
        .into_iter()
        .map(|p| {
            let ok = granted
                .iter()
                .any(|g| short_scope(g).eq_ignore_ascii_case(p));
            AccessCheck {
                kind: CheckKind::Scope,
                name: format!("scope {p}"),
                ok,
                fix: (!ok).then(|| {
                    format!(
                        "Add the delegated Microsoft Graph permission {p} to the app registration (Microsoft Entra admin center → App registrations → API permissions), grant admin consent, then reconnect Teams so the new token carries it."
                    )
                }),
            }
        })
        .collect()
}

/// The `scp` claim of a JWT access token, when it is one (opaque tokens give `None`).
fn jwt_scopes(token: &str) -> Option<Vec<String>> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let scp = v.get("scp")?.as_str()?;
    Some(scp.split_whitespace().map(str::to_owned).collect())
}

/// The scopes granted to the connection's token: from the token response, else from the
/// token's `scp` claim; `None` when neither tells.
pub(crate) async fn granted_scopes(conn: &MsTeamsConnection) -> Option<Vec<String>> {
    let creds = conn.tokens().credentials().await;
    if !creds.scopes.is_empty() {
        return Some(creds.scopes);
    }
    jwt_scopes(creds.access_token.expose_secret())
}

/// The required permissions missing from the granted scopes (`None` when unknown).
pub(crate) async fn missing_scopes(
    conn: &MsTeamsConnection,
    guest_sync: bool,
) -> Option<Vec<String>> {
    let granted = granted_scopes(conn).await?;
    Some(
        scope_checks(&granted, guest_sync)
            .into_iter()
            .filter(|c| !c.ok)
            .map(|c| c.name)
            .collect(),
    )
}

/// Whether the service account is in a team, as Graph shows it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeamAccess {
    /// A member.
    Member,
    /// The team is readable but the account is not in its member list.
    NotMember,
    /// Graph refused (403): typically the account was removed from the team; re-add it.
    Forbidden,
}

impl MsTeamsConnection {
    /// The account's directory objects (`/me/transitiveMemberOf`, every page).
    pub async fn directory_objects(&self) -> Result<Vec<DirectoryObject>> {
        let url = self
            .graph
            .url(&["me", "transitiveMemberOf"], &[("$top", "999")]);
        let mut all = Vec::new();
        self.graph
            .for_each_page::<DirectoryObject, _>(url, |page| {
                all.extend(page.items);
                Ok(true)
            })
            .await?;
        Ok(all)
    }

    async fn find_member(&self, team: &TeamId, user_id: &str) -> Result<Option<GraphMember>> {
        let filter = format!(
            "(microsoft.graph.aadUserConversationMember/userId eq '{}')",
            user_id.replace('\'', "''")
        );
        let url = self.graph.url(
            &["teams", team.as_str(), "members"],
            &[("$filter", &filter)],
        );
        let mut found = None;
        self.graph
            .for_each_page::<GraphMember, _>(url, |page| {
                found = page.items.into_iter().find(|m| {
                    m.user_id
                        .as_deref()
                        .is_some_and(|u| u.eq_ignore_ascii_case(user_id))
                });
                Ok(found.is_none())
            })
            .await?;
        Ok(found)
    }

    /// Checks whether the service account is still in `team` (a 403 means it was removed:
    /// re-add it with [`ServiceAccount::ensure_membership`]).
    pub async fn check_membership(&self, team: &TeamId) -> Result<TeamAccess> {
        let me = self.me().await?;
        match self.find_member(team, &me.id).await {
            Ok(Some(_)) => Ok(TeamAccess::Member),
            Ok(None) => Ok(TeamAccess::NotMember),
            Err(e) if e.kind() == ErrorKind::Forbidden => Ok(TeamAccess::Forbidden),
            Err(e) => Err(e),
        }
    }

    /// Ensures membership of every team, one after the other (Microsoft advises spacing
    /// member additions); one team's failure does not stop the others.
    pub async fn ensure_memberships(
        &self,
        teams: &[TeamId],
    ) -> Vec<(TeamId, Result<MembershipOutcome>)> {
        let mut out = Vec::with_capacity(teams.len());
        for t in teams {
            out.push((t.clone(), self.ensure_team_membership(t).await));
        }
        out
    }

    /// Makes the service account a member of `team`. Already a member is success.
    pub async fn ensure_team_membership(&self, team: &TeamId) -> Result<MembershipOutcome> {
        let me = self.me().await?;
        match self.find_member(team, &me.id).await {
            Ok(Some(_)) => return Ok(MembershipOutcome::AlreadyMember),
            Ok(None) => {}
            // removed from the team (or never in a private one): try to add
            Err(e) if e.kind() == ErrorKind::Forbidden => {}
            Err(e) => return Err(e),
        }
        let account = me
            .user_principal_name
            .clone()
            .unwrap_or_else(|| me.id.clone());
        let bind = format!(
            "{}users('{}')",
            self.graph.base(),
            me.id.replace('\'', "''")
        );
        let url = self.graph.url(&["teams", team.as_str(), "members"], &[]);
        let req = GraphRequest::new(Method::POST, url)
            .json(serde_json::json!({
                "@odata.type": "#microsoft.graph.aadUserConversationMember",
                "roles": [],
                "user@odata.bind": bind,
            }))
            .idempotent(true);
        match self.graph.send(&req).await {
            Ok(_) => Ok(MembershipOutcome::Added),
            Err(f) if f.status == Some(409) => Ok(MembershipOutcome::AlreadyMember),
            Err(f)
                if f.status == Some(400)
                    && f.error.message().to_ascii_lowercase().contains("already") =>
            {
                Ok(MembershipOutcome::AlreadyMember)
            }
            Err(f) if f.status == Some(403) => Ok(MembershipOutcome::ActionRequired {
                fix: format!(
                    "{account} may not add itself to team {team}: assign it the Teams Administrator role (Microsoft Entra admin center → Roles & admins), or ask a team owner to add {account} to the team."
                ),
            }),
            Err(f) => Err(f.into()),
        }
    }
}

#[async_trait]
impl ServiceAccount for MsTeamsConnection {
    async fn verify(&self, options: VerifyOptions) -> Result<AccessReport> {
        let account = self.identity().await?;
        let guest_sync = options.guest_sync || self.config.guest_sync;
        let objects = match self.directory_objects().await {
            Ok(o) => o,
            Err(e) if e.kind() == ErrorKind::Forbidden => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut checks = role_checks(&account.display_name, &objects, guest_sync);
        match granted_scopes(self).await {
            Some(granted) => checks.extend(scope_checks(&granted, guest_sync)),
            None => tracing::info!(
                "the granted scopes are unknown for this token; scope checks skipped"
            ),
        }
        Ok(AccessReport { account, checks })
    }

    async fn ensure_membership(&self, channel: &ChannelRef) -> Result<MembershipOutcome> {
        if channel.platform != switchboard_core::PlatformKind::Msteams {
            return Err(Error::invalid(format!(
                "{channel} is not a Microsoft Teams channel"
            )));
        }
        self.ensure_team_membership(&channel.team).await
    }

    async fn refresh_credentials(&self) -> Result<Credentials> {
        self.tokens().refresh_now().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(template: Option<&str>) -> DirectoryObject {
        DirectoryObject {
            odata_type: Some("#microsoft.graph.directoryRole".into()),
            id: "r".into(),
            display_name: None,
            role_template_id: template.map(str::to_owned),
        }
    }

    #[test]
    fn roles_are_matched_by_template_id() {
        let group = DirectoryObject {
            odata_type: Some("#microsoft.graph.group".into()),
            id: "g".into(),
            display_name: Some("Teams Administrator".into()),
            role_template_id: Some(TEAMS_ADMINISTRATOR.template_id.into()),
        };
        let checks = role_checks(
            "svc@contoso.test",
            &[role(Some(APPLICATION_ADMINISTRATOR.template_id)), group],
            false,
        );
        assert_eq!(checks.len(), 2);
        assert!(checks[0].ok);
        assert_eq!(checks[1].name, "Teams Administrator role");
        assert!(!checks[1].ok, "a group named like a role is not the role");
        let fix = checks[1].fix.as_deref().unwrap();
        assert!(fix.contains("svc@contoso.test") && fix.contains("Teams Administrator"));
        let guest = role_checks("svc", &[role(Some(GLOBAL_ADMINISTRATOR.template_id))], true);
        assert_eq!(guest.len(), 3);
        assert!(guest.iter().all(|c| c.ok));
        let hidden = role_checks("svc", &[role(None)], false);
        assert!(hidden.iter().all(|c| !c.ok));
        assert!(
            hidden[0]
                .fix
                .as_deref()
                .unwrap()
                .contains("RoleManagement.Read.Directory")
        );
    }

    #[test]
    fn scopes_are_compared_in_short_form() {
        let mut granted: Vec<String> = required_permissions(false)
            .iter()
            .map(|p| format!("https://graph.microsoft.com/{p}"))
            .collect();
        granted.push("openid".into());
        assert!(scope_checks(&granted, false).iter().all(|c| c.ok));
        let guest = scope_checks(&granted, true);
        let missing: Vec<_> = guest.iter().filter(|c| !c.ok).collect();
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].name, "scope User.Invite.All");
        assert!(!missing[0].name.contains("role"));
        let lower: Vec<String> = granted.iter().map(|s| s.to_lowercase()).collect();
        assert!(scope_checks(&lower, false).iter().all(|c| c.ok));
    }

    #[test]
    fn jwt_scp_claim_is_read() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"scp":"User.Read.All ChannelMessage.Send","oid":"x"}"#);
        let token = format!("eyJhbGciOiJub25lIn0.{payload}.sig");
        assert_eq!(
            jwt_scopes(&token).unwrap(),
            vec!["User.Read.All".to_owned(), "ChannelMessage.Send".to_owned()]
        );
        assert_eq!(jwt_scopes("opaque-token"), None);
        assert_eq!(jwt_scopes("a.!!!.c"), None);
    }
}
