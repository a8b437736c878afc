//! Slack's `{"ok":false,"error":"…"}` answers and how they map onto the core [`ErrorKind`].
//!
//! Every failure of this crate is a core [`Error`]. When Slack answered `ok:false`, the
//! [`SlackApiError`] with the method, the error code and (for `missing_scope`) the `needed`
//! and `provided` scopes is attached as the error's source: [`slack_api_error`] gets it back.

use std::fmt;

pub use switchboard_core::{Error, ErrorKind, Result};

/// An `ok:false` answer of the Slack Web API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlackApiError {
    /// The Web API method that answered (`chat.postMessage`).
    pub method: String,
    /// Slack's error code (`channel_not_found`, `missing_scope`, …).
    pub code: String,
    /// With `missing_scope`: the scope(s) the method needs.
    pub needed: Option<String>,
    /// With `missing_scope`: the scopes the token has.
    pub provided: Option<String>,
}

impl fmt::Display for SlackApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Slack method {} answered `{}`", self.method, self.code)?;
        if let Some(needed) = &self.needed {
            write!(f, " (needed: {needed}")?;
            if let Some(provided) = &self.provided {
                write!(f, "; provided: {provided}")?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

impl std::error::Error for SlackApiError {}

impl SlackApiError {
    /// The core kind this error code maps to.
    pub fn kind(&self) -> ErrorKind {
        kind_for_code(&self.code)
    }

    /// What an administrator should do about it, when there is something to do.
    pub fn fix(&self) -> Option<String> {
        match self.code.as_str() {
            "missing_scope" => Some(format!(
                "add the bot token scope{} `{}` under OAuth & Permissions in the Slack app settings, then reinstall the app (Connect with Slack again)",
                if self.needed.as_deref().is_some_and(|n| n.contains(',')) { "s" } else { "" },
                self.needed.as_deref().unwrap_or("(unknown)")
            )),
            "not_in_channel" => Some(
                "add the bot to the channel (`/invite @bot` for a private channel; Switchboard joins public channels itself)".into(),
            ),
            "invalid_refresh_token" | "token_revoked" | "account_inactive" | "invalid_grant" => {
                Some("reconnect the Slack workspace (Connect with Slack) to grant a new token".into())
            }
            "invalid_auth" | "not_authed" => {
                Some("the token is not valid: reconnect the Slack workspace".into())
            }
            "is_archived" => Some("unarchive the channel or unlink it".into()),
            _ => None,
        }
    }
}

/// The core [`ErrorKind`] of a Slack error code. Unknown codes are [`ErrorKind::Upstream`]:
/// Slack said something this crate does not understand.
pub fn kind_for_code(code: &str) -> ErrorKind {
    match code {
        // The grant is dead: only a new OAuth consent helps.
        "invalid_refresh_token"
        | "invalid_grant"
        | "token_revoked"
        | "account_inactive"
        | "app_uninstalled"
        | "org_login_required" => ErrorKind::NeedsReauth,
        "not_authed"
        | "invalid_auth"
        | "token_expired"
        | "invalid_client_id"
        | "bad_client_secret"
        | "invalid_client"
        | "two_factor_setup_required" => ErrorKind::Unauthorized,
        "missing_scope"
        | "not_allowed_token_type"
        | "no_permission"
        | "access_denied"
        | "restricted_action"
        | "restricted_action_read_only_channel"
        | "restricted_action_thread_only_channel"
        | "restricted_action_non_threadable_channel"
        | "not_in_channel"
        | "is_archived"
        | "cant_update_message"
        | "cant_delete_message"
        | "cant_delete_file"
        | "edit_window_closed"
        | "ekm_access_denied"
        | "team_access_not_granted"
        | "method_not_supported_for_channel_type"
        | "posting_to_general_channel_denied"
        | "user_is_restricted"
        | "enterprise_is_restricted"
        | "forbidden_team"
        | "not_reactable"
        | "compliance_exports_prevent_deletion"
        | "slack_connect_file_upload_sharing_restricted"
        | "team_not_on_enterprise" => ErrorKind::Forbidden,
        "channel_not_found" | "message_not_found" | "thread_not_found" | "user_not_found"
        | "users_not_found" | "team_not_found" | "file_not_found" | "file_deleted"
        | "no_reaction" | "bad_timestamp" => ErrorKind::NotFound,
        "ratelimited" | "rate_limited" | "app_rate_limited" | "message_limit_exceeded" => {
            ErrorKind::RateLimited { retry_after: None }
        }
        "already_reacted" | "already_in_channel" | "too_many_reactions" | "name_taken"
        | "already_pinned" => ErrorKind::Conflict,
        "invalid_arguments"
        | "invalid_arg_name"
        | "invalid_array_arg"
        | "invalid_charset"
        | "invalid_form_data"
        | "invalid_post_type"
        | "missing_post_type"
        | "invalid_json"
        | "json_not_object"
        | "msg_too_long"
        | "no_text"
        | "too_many_attachments"
        | "invalid_blocks"
        | "invalid_blocks_format"
        | "invalid_metadata_format"
        | "invalid_metadata_schema"
        | "metadata_too_large"
        | "metadata_must_be_sent_from_app"
        | "invalid_name"
        | "invalid_cursor"
        | "invalid_limit"
        | "limit_required"
        | "invalid_code"
        | "code_already_used"
        | "bad_redirect_uri"
        | "redirect_uri_mismatch"
        | "oauth_authorization_url_mismatch"
        | "invalid_grant_type"
        | "invalid_ts_latest"
        | "invalid_ts_oldest"
        | "invalid_channel"
        | "invalid_types"
        | "no_item_specified"
        | "invalid_thread_ts"
        | "file_uploads_disabled"
        | "file_upload_size_restricted"
        | "invalid_file_id" => ErrorKind::InvalidInput,
        // internal_error, fatal_error, service_unavailable, request_timeout, unknown codes
        _ => ErrorKind::Upstream,
    }
}

/// The core error for an `ok:false` answer, with the [`SlackApiError`] as its source.
pub(crate) fn api_error(
    method: &str,
    code: &str,
    needed: Option<String>,
    provided: Option<String>,
    retry_after: Option<std::time::Duration>,
) -> Error {
    let detail = SlackApiError {
        method: method.to_owned(),
        code: code.to_owned(),
        needed,
        provided,
    };
    let mut kind = detail.kind();
    if let ErrorKind::RateLimited { .. } = kind {
        kind = ErrorKind::RateLimited { retry_after };
    }
    let mut message = detail.to_string();
    if let Some(fix) = detail.fix() {
        message.push_str(": ");
        message.push_str(&fix);
    }
    Error::new(kind, message).with_source(detail)
}

/// The [`SlackApiError`] behind a core error, when Slack answered `ok:false`.
pub fn slack_api_error(error: &Error) -> Option<&SlackApiError> {
    std::error::Error::source(error)?.downcast_ref::<SlackApiError>()
}

/// The Slack error code behind a core error, when Slack answered `ok:false`.
pub fn slack_error_code(error: &Error) -> Option<&str> {
    slack_api_error(error).map(|e| e.code.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_kinds() {
        assert_eq!(
            kind_for_code("invalid_refresh_token"),
            ErrorKind::NeedsReauth
        );
        assert_eq!(kind_for_code("token_revoked"), ErrorKind::NeedsReauth);
        assert_eq!(kind_for_code("invalid_auth"), ErrorKind::Unauthorized);
        assert_eq!(kind_for_code("missing_scope"), ErrorKind::Forbidden);
        assert_eq!(kind_for_code("not_in_channel"), ErrorKind::Forbidden);
        assert_eq!(kind_for_code("channel_not_found"), ErrorKind::NotFound);
        assert_eq!(kind_for_code("invalid_cursor"), ErrorKind::InvalidInput);
        assert_eq!(kind_for_code("already_reacted"), ErrorKind::Conflict);
        assert_eq!(kind_for_code("internal_error"), ErrorKind::Upstream);
        assert_eq!(kind_for_code("something_new"), ErrorKind::Upstream);
        assert!(matches!(
            kind_for_code("ratelimited"),
            ErrorKind::RateLimited { .. }
        ));
    }

    #[test]
    fn missing_scope_carries_needed_and_provided() {
        let e = api_error(
            "chat.postMessage",
            "missing_scope",
            Some("chat:write.customize".into()),
            Some("chat:write,channels:read".into()),
            None,
        );
        assert_eq!(e.kind(), ErrorKind::Forbidden);
        let detail = slack_api_error(&e).expect("source kept");
        assert_eq!(detail.needed.as_deref(), Some("chat:write.customize"));
        assert_eq!(detail.provided.as_deref(), Some("chat:write,channels:read"));
        assert!(e.message().contains("needed: chat:write.customize"), "{e}");
        assert!(e.message().contains("reinstall"), "{e}");
        assert_eq!(slack_error_code(&e), Some("missing_scope"));
    }

    #[test]
    fn rate_limit_error_keeps_retry_after() {
        let e = api_error(
            "users.list",
            "ratelimited",
            None,
            None,
            Some(std::time::Duration::from_secs(7)),
        );
        assert_eq!(e.retry_after(), Some(std::time::Duration::from_secs(7)));
    }
}
