//! Tokens, scopes, OAuth codes and refresh tokens.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::util::{now_unix, random_token};

/// Every scope name the sandbox knows (bot and user scopes share names).
pub(crate) const KNOWN_SCOPES: &[&str] = &[
    "channels:read",
    "groups:read",
    "im:read",
    "mpim:read",
    "channels:history",
    "groups:history",
    "im:history",
    "mpim:history",
    "users:read",
    "users:read.email",
    "users.profile:read",
    "team:read",
    "channels:join",
    "channels:manage",
    "channels:write",
    "groups:write",
    "im:write",
    "mpim:write",
    "chat:write",
    "chat:write.customize",
    "chat:write.public",
    "reactions:read",
    "reactions:write",
    "files:read",
    "files:write",
    "pins:read",
    "pins:write",
    "emoji:read",
    "usergroups:read",
    "app_mentions:read",
    "commands",
    "incoming-webhook",
    "identify",
    "connections:write",
];

/// The bot scopes of the seeded bot token (PLATFORM_FACTS: the scopes the Slack connection requests).
pub(crate) const BOT_SCOPES: &str = "channels:read,groups:read,channels:history,groups:history,\
users:read,users:read.email,team:read,channels:join,chat:write,chat:write.customize,\
reactions:read,reactions:write,files:read,files:write";

/// Lifetime of rotating access tokens (12 h), as Slack's token rotation.
pub(crate) const ROTATING_EXPIRES_IN: u64 = 43_200;
/// Lifetime of an OAuth authorization code.
pub(crate) const CODE_TTL: Duration = Duration::from_secs(600);

/// A set of scopes (bit per entry of [`KNOWN_SCOPES`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Scopes(u64);

impl Scopes {
    /// Parses a comma- or space-separated scope list. `Err(name)` on an unknown scope.
    pub fn parse(s: &str) -> Result<Scopes, String> {
        let mut bits = 0u64;
        for name in s
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|n| !n.is_empty())
        {
            match KNOWN_SCOPES.iter().position(|k| *k == name) {
                Some(i) => bits |= 1 << i,
                None => return Err(name.to_owned()),
            }
        }
        Ok(Scopes(bits))
    }

    /// The scope list as requested (comma separated, request order, duplicates dropped).
    /// Call on a string [`Scopes::parse`] accepted.
    pub fn normalize(s: &str) -> String {
        let mut seen: Vec<&str> = Vec::new();
        for name in s
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|n| !n.is_empty())
        {
            if !seen.contains(&name) {
                seen.push(name);
            }
        }
        seen.join(",")
    }

    pub fn has(self, name: &str) -> bool {
        KNOWN_SCOPES
            .iter()
            .position(|k| *k == name)
            .is_some_and(|i| self.0 & (1 << i) != 0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Comma-separated, in [`KNOWN_SCOPES`] order.
    pub fn to_list(self) -> String {
        KNOWN_SCOPES
            .iter()
            .enumerate()
            .filter(|(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, n)| *n)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenKind {
    /// `xoxb-` / `xoxe.xoxb-`: acts as the app's bot user.
    Bot,
    /// `xoxe.xoxp-`: acts as the installing user.
    User,
    /// `xapp-`: app-level token (Socket Mode only).
    App,
}

/// An access token.
#[derive(Debug, Clone)]
pub(crate) struct TokenRec {
    pub kind: TokenKind,
    pub user: u32,
    pub scopes: Scopes,
    /// Unix seconds; `None`: never expires.
    pub expires_at: Option<u64>,
    pub revoked: bool,
}

/// A refresh token (single use).
#[derive(Debug, Clone)]
pub(crate) struct RefreshRec {
    pub kind: TokenKind,
    pub user: u32,
    pub scopes: Scopes,
    /// The scope list as granted (request order).
    pub scope_text: String,
    /// Used (rotated away) or revoked.
    pub dead: bool,
}

/// An OAuth authorization code.
#[derive(Debug, Clone)]
pub(crate) struct CodeRec {
    pub client_id: String,
    pub redirect_uri: Option<String>,
    pub scopes: Scopes,
    pub user_scopes: Scopes,
    pub scope_text: String,
    pub user_scope_text: String,
    pub installer: u32,
    pub created: Instant,
    pub used: bool,
}

/// Who is calling, once the token checked out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Principal {
    pub kind: TokenKind,
    pub user: u32,
    pub scopes: Scopes,
}

impl Principal {
    pub fn is_bot(&self) -> bool {
        self.kind == TokenKind::Bot
    }
}

/// Token-related state.
#[derive(Default)]
pub(crate) struct AuthState {
    pub tokens: HashMap<String, TokenRec>,
    pub refresh: HashMap<String, RefreshRec>,
    pub codes: HashMap<String, CodeRec>,
}

impl std::fmt::Debug for AuthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthState")
            .field("tokens", &self.tokens.len())
            .field("refresh", &self.refresh.len())
            .field("codes", &self.codes.len())
            .finish()
    }
}

/// A newly issued rotating token pair.
#[derive(Debug, Clone)]
pub(crate) struct Issued {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
    /// The granted scopes, comma separated in request order.
    pub scope_text: String,
}

fn digits(n: usize) -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
        .collect()
}

impl AuthState {
    /// Registers a long-lived token (the seeded bot and app tokens).
    pub fn add_static(&mut self, kind: TokenKind, user: u32, scopes: Scopes) -> String {
        let token = match kind {
            TokenKind::Bot => format!("xoxb-{}-{}-{}", digits(12), digits(13), random_token(24)),
            TokenKind::User => format!(
                "xoxp-{}-{}-{}-{}",
                digits(12),
                digits(12),
                digits(13),
                random_token(32)
            ),
            TokenKind::App => format!(
                "xapp-1-{}-{}-{}",
                crate::slack::model::random_id("A"),
                digits(13),
                hex::encode(rand::random::<[u8; 32]>())
            ),
        };
        self.tokens.insert(
            token.clone(),
            TokenRec {
                kind,
                user,
                scopes,
                expires_at: None,
                revoked: false,
            },
        );
        token
    }

    /// Issues a rotating access token plus its refresh token.
    pub fn issue_rotating(
        &mut self,
        kind: TokenKind,
        user: u32,
        scopes: Scopes,
        scope_text: String,
    ) -> Issued {
        let prefix = if kind == TokenKind::User {
            "xoxe.xoxp-1-"
        } else {
            "xoxe.xoxb-1-"
        };
        let access_token = format!("{prefix}{}", random_token(64));
        let refresh_token = format!("xoxe-1-{}", random_token(64));
        self.tokens.insert(
            access_token.clone(),
            TokenRec {
                kind,
                user,
                scopes,
                expires_at: Some(now_unix() + ROTATING_EXPIRES_IN),
                revoked: false,
            },
        );
        self.refresh.insert(
            refresh_token.clone(),
            RefreshRec {
                kind,
                user,
                scopes,
                scope_text: scope_text.clone(),
                dead: false,
            },
        );
        Issued {
            access_token,
            refresh_token,
            expires_in: ROTATING_EXPIRES_IN,
            scope_text,
        }
    }

    /// Checks a token: `Err(slack error code)` when missing, unknown, revoked or expired.
    pub fn check(&self, token: Option<&str>) -> Result<Principal, &'static str> {
        let token = token.map(str::trim).filter(|t| !t.is_empty());
        let Some(token) = token else {
            return Err("not_authed");
        };
        let Some(rec) = self.tokens.get(token) else {
            return Err("invalid_auth");
        };
        if rec.revoked {
            return Err("token_revoked");
        }
        if rec.expires_at.is_some_and(|e| now_unix() >= e) {
            return Err("token_expired");
        }
        Ok(Principal {
            kind: rec.kind,
            user: rec.user,
            scopes: rec.scopes,
        })
    }

    /// Rotates a refresh token: the old one dies, a new pair is issued.
    pub fn refresh(
        &mut self,
        refresh_token: &str,
    ) -> Result<(TokenKind, u32, Issued), &'static str> {
        let rec = match self.refresh.get_mut(refresh_token) {
            Some(r) if !r.dead => r,
            _ => return Err("invalid_refresh_token"),
        };
        rec.dead = true;
        let (kind, user, scopes, text) = (rec.kind, rec.user, rec.scopes, rec.scope_text.clone());
        Ok((kind, user, self.issue_rotating(kind, user, scopes, text)))
    }

    /// Marks an access token expired. `false` when unknown.
    pub fn expire(&mut self, token: &str) -> bool {
        match self.tokens.get_mut(token) {
            Some(t) => {
                t.expires_at = Some(now_unix().saturating_sub(1));
                true
            }
            None => false,
        }
    }

    /// Revokes an access or refresh token. `false` when unknown.
    pub fn revoke(&mut self, token: &str) -> bool {
        if let Some(t) = self.tokens.get_mut(token) {
            t.revoked = true;
            return true;
        }
        if let Some(r) = self.refresh.get_mut(token) {
            r.dead = true;
            return true;
        }
        false
    }

    /// Stores a new authorization code and returns it.
    pub fn new_code(&mut self, rec: CodeRec) -> String {
        let now = Instant::now();
        self.codes
            .retain(|_, c| now.duration_since(c.created) < CODE_TTL * 2);
        let code = format!(
            "{}.{}.{}",
            digits(12),
            digits(13),
            hex::encode(rand::random::<[u8; 32]>())
        );
        self.codes.insert(code.clone(), rec);
        code
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_list() {
        let s = Scopes::parse("chat:write, users:read users:read.email").unwrap();
        assert!(s.has("chat:write") && s.has("users:read") && s.has("users:read.email"));
        assert!(!s.has("channels:read"));
        assert_eq!(s.to_list(), "users:read,users:read.email,chat:write");
        assert_eq!(
            Scopes::normalize("chat:write, users:read chat:write"),
            "chat:write,users:read"
        );
        assert_eq!(Scopes::parse("bogus:scope"), Err("bogus:scope".into()));
        assert!(Scopes::parse(BOT_SCOPES).is_ok());
        assert!(KNOWN_SCOPES.len() <= 64);
    }

    #[test]
    fn refresh_rotates_once() {
        let mut a = AuthState::default();
        let first = a.issue_rotating(
            TokenKind::Bot,
            0,
            Scopes::parse("chat:write").unwrap(),
            "chat:write".into(),
        );
        assert!(a.check(Some(&first.access_token)).is_ok());
        let (_, _, second) = a.refresh(&first.refresh_token).unwrap();
        assert_eq!(
            a.refresh(&first.refresh_token).unwrap_err(),
            "invalid_refresh_token"
        );
        assert!(a.check(Some(&second.access_token)).is_ok());
        assert!(a.expire(&second.access_token));
        assert_eq!(
            a.check(Some(&second.access_token)).unwrap_err(),
            "token_expired"
        );
        assert!(a.revoke(&first.access_token));
        assert_eq!(
            a.check(Some(&first.access_token)).unwrap_err(),
            "token_revoked"
        );
        assert_eq!(a.check(None).unwrap_err(), "not_authed");
        assert_eq!(a.check(Some("xoxb-nope")).unwrap_err(), "invalid_auth");
    }
}
