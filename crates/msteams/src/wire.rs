//! Graph's JSON shapes, as far as Switchboard reads them. Every type tolerates unknown
//! fields and missing optional ones; only the id is required.

use serde::{Deserialize, Serialize};

/// A team (`/teams`, `/me/joinedTeams`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphTeam {
    /// The group id.
    pub id: String,
    /// Its name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Its description.
    #[serde(default)]
    pub description: Option<String>,
    /// Archived (joinedTeams only).
    #[serde(default)]
    pub is_archived: Option<bool>,
}

/// A channel.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphChannel {
    /// `19:…@thread.tacv2`.
    pub id: String,
    /// Its name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Its description.
    #[serde(default)]
    pub description: Option<String>,
    /// `standard`, `private`, `shared` (or a future value).
    #[serde(default)]
    pub membership_type: Option<String>,
}

/// A team member (`conversationMember`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphMember {
    /// `#microsoft.graph.aadUserConversationMember` for users.
    #[serde(default, rename = "@odata.type")]
    pub odata_type: Option<String>,
    /// The membership id (not the user id).
    pub id: String,
    /// `owner`, `guest`, or none.
    #[serde(default, deserialize_with = "null_as_default")]
    pub roles: Vec<String>,
    /// The member's name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// The Entra user id.
    #[serde(default)]
    pub user_id: Option<String>,
    /// Their email.
    #[serde(default)]
    pub email: Option<String>,
    /// Their home tenant.
    #[serde(default)]
    pub tenant_id: Option<String>,
}

/// A user of the tenant.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphUser {
    /// The object id.
    pub id: String,
    /// Their name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Their mail address.
    #[serde(default)]
    pub mail: Option<String>,
    /// Their sign-in name.
    #[serde(default)]
    pub user_principal_name: Option<String>,
    /// `Member` or `Guest`.
    #[serde(default)]
    pub user_type: Option<String>,
    /// Whether they can sign in.
    #[serde(default)]
    pub account_enabled: Option<bool>,
}

/// An item of `/me/transitiveMemberOf`: a group, an administrative unit or a directory
/// role.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryObject {
    /// `#microsoft.graph.directoryRole` for roles.
    #[serde(default, rename = "@odata.type")]
    pub odata_type: Option<String>,
    /// The object id (differs per tenant for roles).
    pub id: String,
    /// Its name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// The role template id (stable across tenants); null without
    /// `RoleManagement.Read.Directory`.
    #[serde(default)]
    pub role_template_id: Option<String>,
}

/// An identity (`user`, `application`, `device`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    /// Its id.
    #[serde(default)]
    pub id: Option<String>,
    /// Its name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// `aadUser`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_identity_type: Option<String>,
}

/// Who did something.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentitySet {
    /// A user.
    #[serde(default)]
    pub user: Option<Identity>,
    /// An application (bots, connectors).
    #[serde(default)]
    pub application: Option<Identity>,
}

/// A message body.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemBody {
    /// `html` or `text`.
    #[serde(default)]
    pub content_type: Option<String>,
    /// The content.
    #[serde(default, deserialize_with = "null_as_default")]
    pub content: String,
}

/// A conversation (channel or team) in a mention.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationIdentity {
    /// Its id.
    #[serde(default)]
    pub id: Option<String>,
    /// Its name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// `channel`, `team`, `chat`.
    #[serde(default)]
    pub conversation_identity_type: Option<String>,
}

/// What a mention points at.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Mentioned {
    /// A user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<Identity>,
    /// A channel or team.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<ConversationIdentity>,
    /// A tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<Identity>,
}

/// An entry of a message's `mentions` array, matched to `<at id="N">` in the body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatMention {
    /// The `id` of the `<at>` element.
    pub id: i64,
    /// The text shown.
    #[serde(default)]
    pub mention_text: Option<String>,
    /// Who or what.
    #[serde(default)]
    pub mentioned: Mentioned,
}

/// An attachment (file reference, card, message reference).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatAttachment {
    /// Its id (referenced by `<attachment id>` in the body).
    #[serde(default)]
    pub id: Option<String>,
    /// `reference` for files, `application/vnd.microsoft.card.*` for cards, …
    #[serde(default)]
    pub content_type: Option<String>,
    /// Where the file lives.
    #[serde(default)]
    pub content_url: Option<String>,
    /// Inline content (cards).
    #[serde(default)]
    pub content: Option<String>,
    /// The file name.
    #[serde(default)]
    pub name: Option<String>,
}

/// A reaction on a message.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatReaction {
    /// A Unicode emoji or a legacy name (`like`, `heart`, …).
    #[serde(default)]
    pub reaction_type: Option<String>,
    /// Who reacted.
    #[serde(default)]
    pub user: Option<IdentitySet>,
    /// When.
    #[serde(default)]
    pub created_date_time: Option<String>,
}

/// Where a channel message lives.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelIdentity {
    /// The team.
    #[serde(default)]
    pub team_id: Option<String>,
    /// The channel.
    #[serde(default)]
    pub channel_id: Option<String>,
}

/// A channel message or reply (`chatMessage`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatMessage {
    /// Its id.
    pub id: String,
    /// The thread root, for replies.
    #[serde(default)]
    pub reply_to_id: Option<String>,
    /// Version tag.
    #[serde(default)]
    pub etag: Option<String>,
    /// `message`, `systemEventMessage`, `chatEvent`, `typing`, …
    #[serde(default)]
    pub message_type: Option<String>,
    /// Created.
    #[serde(default)]
    pub created_date_time: Option<String>,
    /// Last change of any kind (reactions included).
    #[serde(default)]
    pub last_modified_date_time: Option<String>,
    /// Last edit of the content.
    #[serde(default)]
    pub last_edited_date_time: Option<String>,
    /// Set once deleted.
    #[serde(default)]
    pub deleted_date_time: Option<String>,
    /// Subject line (root messages).
    #[serde(default)]
    pub subject: Option<String>,
    /// The sender; null for system events.
    #[serde(default)]
    pub from: Option<IdentitySet>,
    /// The body.
    #[serde(default)]
    pub body: Option<ItemBody>,
    /// Mentions referenced from the body.
    #[serde(default, deserialize_with = "null_as_default")]
    pub mentions: Vec<ChatMention>,
    /// Attachments.
    #[serde(default, deserialize_with = "null_as_default")]
    pub attachments: Vec<ChatAttachment>,
    /// Reactions.
    #[serde(default, deserialize_with = "null_as_default")]
    pub reactions: Vec<ChatReaction>,
    /// Team and channel.
    #[serde(default)]
    pub channel_identity: Option<ChannelIdentity>,
    /// A link to the message in Teams.
    #[serde(default)]
    pub web_url: Option<String>,
    /// Replies (with `$expand=replies`); odd replies are dropped rather than failing the
    /// message.
    #[serde(default, deserialize_with = "lenient_messages")]
    pub replies: Vec<ChatMessage>,
    /// More replies than `$expand` returned (over 1,000): follow it.
    #[serde(default, rename = "replies@odata.nextLink")]
    pub replies_next_link: Option<String>,
}

/// The signed-in user (`/me`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Me {
    /// The object id.
    pub id: String,
    /// Their name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Their sign-in name.
    #[serde(default)]
    pub user_principal_name: Option<String>,
    /// Their mail.
    #[serde(default)]
    pub mail: Option<String>,
}

/// A created or renewed subscription. `Debug` leaves the `clientState` out.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphSubscription {
    /// Its id.
    pub id: String,
    /// The watched resource.
    #[serde(default)]
    pub resource: Option<String>,
    /// When it expires.
    #[serde(default)]
    pub expiration_date_time: Option<String>,
    /// Where notifications go.
    #[serde(default)]
    pub notification_url: Option<String>,
    /// Where lifecycle events go.
    #[serde(default)]
    pub lifecycle_notification_url: Option<String>,
    /// The secret echoed in notifications, when Graph shows it.
    #[serde(default)]
    pub client_state: Option<String>,
}

impl std::fmt::Debug for GraphSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphSubscription")
            .field("id", &self.id)
            .field("resource", &self.resource)
            .field("expiration_date_time", &self.expiration_date_time)
            .field("notification_url", &self.notification_url)
            .field(
                "lifecycle_notification_url",
                &self.lifecycle_notification_url,
            )
            .field(
                "client_state",
                &self.client_state.as_ref().map(|_| "[REDACTED]"),
            )
            .finish()
    }
}

/// The answer of `/invitations`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphInvitation {
    /// The invitation id.
    #[serde(default)]
    pub id: Option<String>,
    /// The guest user created (or found).
    #[serde(default)]
    pub invited_user: Option<Identity>,
    /// `PendingAcceptance`, `Completed`, …
    #[serde(default)]
    pub status: Option<String>,
    /// The redemption URL.
    #[serde(default)]
    pub invite_redeem_url: Option<String>,
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn lenient_messages<'de, D>(d: D) -> Result<Vec<ChatMessage>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let values = Option::<Vec<serde_json::Value>>::deserialize(d)?.unwrap_or_default();
    Ok(values
        .into_iter()
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_message_tolerates_nulls_unknown_fields_and_odd_replies() {
        let m: ChatMessage = serde_json::from_value(serde_json::json!({
            "id": "1616990032035",
            "replyToId": null,
            "etag": "1616990032035",
            "messageType": "message",
            "createdDateTime": "2021-03-29T03:53:52.035Z",
            "from": {"application": null, "device": null, "user": {"id": "u1", "displayName": "Jane", "userIdentityType": "aadUser", "tenantId": "t"}},
            "body": {"contentType": "html", "content": "<p>hi</p>"},
            "mentions": null,
            "attachments": [],
            "reactions": [{"reactionType": "like", "user": {"user": {"id": "u2"}}}],
            "policyViolation": null,
            "eventDetail": {"@odata.type": "#microsoft.graph.somethingNew"},
            "replies": [{"id": "r1", "body": {"content": null}}, {"no": "id"}, 3]
        }))
        .unwrap();
        assert_eq!(m.id, "1616990032035");
        assert!(m.mentions.is_empty());
        assert_eq!(m.reactions[0].reaction_type.as_deref(), Some("like"));
        assert_eq!(m.replies.len(), 1);
        assert_eq!(m.replies[0].body.as_ref().unwrap().content, "");
        assert_eq!(
            m.from.unwrap().user.unwrap().display_name.as_deref(),
            Some("Jane")
        );
    }
}
