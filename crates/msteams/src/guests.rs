//! Guest accounts (when guest sync is on): inviting an outside user by email through
//! `/invitations`.

use reqwest::Method;
use switchboard_core::{Error, Result, UserId};
use url::Url;

use crate::connection::MsTeamsConnection;
use crate::graph::GraphRequest;
use crate::wire::GraphInvitation;

/// An invitation to send.
#[derive(Debug, Clone)]
pub struct GuestInvite {
    /// The outside user's email address.
    pub email: String,
    /// Their name, shown in the directory.
    pub display_name: Option<String>,
    /// Where they land after redeeming (e.g. `https://teams.microsoft.com`).
    pub redirect_url: Url,
    /// Whether Microsoft sends the invitation email.
    pub send_invitation_message: bool,
}

/// What Graph answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestInvitation {
    /// The guest user's object id in the tenant.
    pub user_id: UserId,
    /// `PendingAcceptance`, `Completed`, …
    pub status: String,
    /// The redemption link, when Graph returned one.
    pub redeem_url: Option<String>,
}

/// A plausible email address: one `@`, a dot in the domain, no spaces or controls, at most
/// 254 bytes.
pub fn is_plausible_email(email: &str) -> bool {
    let e = email.trim();
    if e.is_empty() || e.len() > 254 || e.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    match e.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        }
        None => false,
    }
}

impl MsTeamsConnection {
    /// Invites an outside user as a guest of the tenant. Refused unless guest sync is on
    /// for this connection (it needs `User.Invite.All` and the User Administrator role).
    pub async fn invite_guest(&self, invite: &GuestInvite) -> Result<GuestInvitation> {
        if !self.config.guest_sync {
            return Err(Error::invalid(
                "guest sync is turned off for this Teams connection; turn it on (and reconnect for User.Invite.All) to invite guests",
            ));
        }
        let email = invite.email.trim();
        if !is_plausible_email(email) {
            return Err(Error::invalid(format!(
                "{email:?} is not an email address that can be invited"
            )));
        }
        let mut body = serde_json::json!({
            "invitedUserEmailAddress": email,
            "inviteRedirectUrl": invite.redirect_url.as_str(),
            "sendInvitationMessage": invite.send_invitation_message,
        });
        if let Some(n) = invite
            .display_name
            .as_deref()
            .filter(|n| !n.trim().is_empty())
        {
            body["invitedUserDisplayName"] = serde_json::Value::String(n.trim().to_owned());
        }
        let url = self.graph.url(&["invitations"], &[]);
        // inviting the same address again returns the same guest: safe to repeat
        let req = GraphRequest::new(Method::POST, url)
            .json(body)
            .idempotent(true);
        let resp = self.graph.send(&req).await?;
        let inv: GraphInvitation = resp.json("POST /invitations")?;
        let id = inv
            .invited_user
            .and_then(|u| u.id)
            .ok_or_else(|| Error::upstream("the invitation response has no invitedUser.id"))?;
        Ok(GuestInvitation {
            user_id: UserId::new(id)
                .map_err(|e| Error::upstream(format!("the invited user id is unusable: {e}")))?,
            status: inv.status.unwrap_or_default(),
            redeem_url: inv.invite_redeem_url,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_checked() {
        assert!(is_plausible_email("jane@fabrikam.test"));
        for bad in [
            "",
            "jane",
            "@x.test",
            "jane@",
            "jane@x",
            "a b@x.test",
            "a@b@c.test",
            "a@.x",
            "a@x.",
        ] {
            assert!(!is_plausible_email(bad), "{bad}");
        }
        assert!(!is_plausible_email(&format!("{}@x.test", "a".repeat(260))));
    }
}
