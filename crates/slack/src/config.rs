//! Configuration: base URLs (every one configurable, so the sandbox or a proxy can stand in
//! for slack.com), app credentials, rate limits and retry bounds.

use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use crate::error::{Error, Result};

/// The bot token scopes Switchboard asks for (PLATFORM_FACTS.md, "Slack OAuth v2").
pub const BOT_SCOPES: &[&str] = &[
    "channels:read",
    "groups:read",
    "channels:history",
    "groups:history",
    "users:read",
    "users:read.email",
    "team:read",
    "channels:join",
    "chat:write",
    "chat:write.customize",
    "reactions:read",
    "reactions:write",
    "files:read",
    "files:write",
];

/// The `metadata.event_type` Switchboard puts on everything it posts (loop prevention).
pub const MARKER_EVENT_TYPE: &str = "switchboard_relayed";

/// A rate: `limit` calls per `window`, allowing a burst of `limit` (a token bucket of that
/// capacity refilled continuously). A `limit` of 0 means unlimited.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Calls allowed per window (and the burst size).
    pub limit: u32,
    /// The window.
    pub window: Duration,
}

impl Rate {
    /// `limit` calls per minute.
    pub const fn per_minute(limit: u32) -> Rate {
        Rate {
            limit,
            window: Duration::from_secs(60),
        }
    }

    /// `limit` calls per second.
    pub const fn per_second(limit: u32) -> Rate {
        Rate {
            limit,
            window: Duration::from_secs(1),
        }
    }

    /// No limit.
    pub const UNLIMITED: Rate = Rate {
        limit: 0,
        window: Duration::from_secs(1),
    };

    /// Whether this rate limits anything.
    pub fn is_limited(&self) -> bool {
        self.limit > 0 && !self.window.is_zero()
    }
}

/// Slack's method tiers (PLATFORM_FACTS.md): the per-method, per-workspace limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    /// 1+ per minute (`apps.connections.open`).
    Tier1,
    /// 20+ per minute.
    Tier2,
    /// 50+ per minute.
    Tier3,
    /// 100+ per minute.
    Tier4,
    /// Methods with their own limit (`auth.test`: hundreds per minute).
    Special,
    /// `chat.postMessage`: about one per second per channel plus a workspace budget.
    Post,
    /// `conversations.history` / `conversations.replies`: tier 3 for internal apps, 1 per
    /// minute for commercially distributed non-Marketplace apps (Slack, 2025-05-29).
    History,
}

/// How the Slack app is distributed, which decides the limits of `conversations.history` and
/// `conversations.replies` (Slack's rules of 2025-05-29).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Distribution {
    /// A customer-built app installed in its own workspace (what a self-hosted Switchboard
    /// registers), or a Marketplace app: history is tier 3, pages up to 999 messages.
    #[default]
    Internal,
    /// A commercially distributed app that is not in the Marketplace: history is 1 request a
    /// minute with at most 15 messages a page.
    NonMarketplace,
}

impl Distribution {
    /// The rate of `conversations.history` / `conversations.replies`.
    pub fn history_rate(self) -> Rate {
        match self {
            Distribution::Internal => Rate::per_minute(50),
            Distribution::NonMarketplace => Rate::per_minute(1),
        }
    }

    /// The largest `limit` of one history page.
    pub fn history_page_max(self) -> u32 {
        match self {
            Distribution::Internal => 999,
            Distribution::NonMarketplace => 15,
        }
    }
}

/// The limits the client paces itself under. The defaults are Slack's documented ones;
/// [`RateLimits::scaled`] multiplies them (the sandbox's `time_scale`).
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimits {
    /// Tier 1 methods.
    pub tier1: Rate,
    /// Tier 2 methods (`conversations.list`, `users.list`).
    pub tier2: Rate,
    /// Tier 3 methods (`team.info`, `conversations.join`, `chat.update`, `reactions.*`).
    pub tier3: Rate,
    /// Tier 4 methods (`conversations.members`, file upload methods).
    pub tier4: Rate,
    /// Special-tier methods (`auth.test`).
    pub special: Rate,
    /// `chat.postMessage` in one channel.
    pub post_per_channel: Rate,
    /// `chat.postMessage` across the workspace.
    pub post_workspace: Rate,
    /// `conversations.history` / `conversations.replies` (see [`Distribution`]).
    pub history: Rate,
    /// Fraction of each limit actually used (below 1 leaves headroom for clock skew between
    /// this process and Slack's counters).
    pub headroom: f64,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits::documented()
    }
}

impl RateLimits {
    /// Slack's documented limits (PLATFORM_FACTS.md). Tier 1 is one per minute with bursts
    /// of five; `chat.postMessage` one per second per channel with bursts of five, and (Slack
    /// publishes no number for the workspace budget) 600 per minute per workspace, the
    /// reading the sandbox documents too.
    pub fn documented() -> RateLimits {
        RateLimits {
            tier1: Rate {
                limit: 5,
                window: Duration::from_secs(300),
            },
            tier2: Rate::per_minute(20),
            tier3: Rate::per_minute(50),
            tier4: Rate::per_minute(100),
            special: Rate::per_minute(600),
            post_per_channel: Rate {
                limit: 5,
                window: Duration::from_secs(5),
            },
            post_workspace: Rate::per_minute(600),
            history: Distribution::Internal.history_rate(),
            headroom: 0.98,
        }
    }

    /// The documented limits for an app distributed as `distribution`.
    pub fn for_distribution(distribution: Distribution) -> RateLimits {
        RateLimits {
            history: distribution.history_rate(),
            ..RateLimits::documented()
        }
    }

    /// No pacing at all (429s are still honoured).
    pub fn unlimited() -> RateLimits {
        RateLimits {
            tier1: Rate::UNLIMITED,
            tier2: Rate::UNLIMITED,
            tier3: Rate::UNLIMITED,
            tier4: Rate::UNLIMITED,
            special: Rate::UNLIMITED,
            post_per_channel: Rate::UNLIMITED,
            post_workspace: Rate::UNLIMITED,
            history: Rate::UNLIMITED,
            headroom: 1.0,
        }
    }

    /// Every limit multiplied by `factor` (the sandbox's `time_scale`); `0` means unlimited.
    /// Each limit stays at least one call per window.
    pub fn scaled(&self, factor: f64) -> RateLimits {
        if factor <= 0.0 || !factor.is_finite() {
            return RateLimits::unlimited();
        }
        let s = |r: Rate| {
            if !r.is_limited() {
                return r;
            }
            Rate {
                limit: ((f64::from(r.limit) * factor).round() as u32).max(1),
                window: r.window,
            }
        };
        RateLimits {
            tier1: s(self.tier1),
            tier2: s(self.tier2),
            tier3: s(self.tier3),
            tier4: s(self.tier4),
            special: s(self.special),
            post_per_channel: s(self.post_per_channel),
            post_workspace: s(self.post_workspace),
            history: s(self.history),
            headroom: self.headroom,
        }
    }

    /// The rate of a tier ([`Tier::Post`] gives the per-channel rate).
    pub fn for_tier(&self, tier: Tier) -> Rate {
        match tier {
            Tier::Tier1 => self.tier1,
            Tier::Tier2 => self.tier2,
            Tier::Tier3 => self.tier3,
            Tier::Tier4 => self.tier4,
            Tier::Special => self.special,
            Tier::Post => self.post_per_channel,
            Tier::History => self.history,
        }
    }
}

/// The tier of a Web API method (PLATFORM_FACTS.md and each method's documentation).
pub fn tier_of(method: &str) -> Tier {
    match method {
        "auth.test" => Tier::Special,
        "apps.connections.open" => Tier::Tier1,
        "chat.postMessage" => Tier::Post,
        "conversations.list" | "users.list" | "reactions.remove" => Tier::Tier2,
        "conversations.history" | "conversations.replies" => Tier::History,
        "conversations.members"
        | "oauth.v2.access"
        | "files.getUploadURLExternal"
        | "files.completeUploadExternal"
        | "files.info"
        | "users.info" => Tier::Tier4,
        // team.info, conversations.info, conversations.join, chat.update, chat.delete,
        // reactions.add and anything else.
        _ => Tier::Tier3,
    }
}

/// How long the client keeps retrying before giving up with a clear error.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// The longest total time one call may spend waiting on `Retry-After` before it fails
    /// with [`ErrorKind::RateLimited`](crate::ErrorKind::RateLimited).
    pub max_rate_limit_wait: Duration,
    /// Retries of a read after a 5xx, a network failure or a malformed answer.
    pub max_transient_retries: u32,
    /// The first backoff after a transient failure (doubled each time).
    pub transient_backoff: Duration,
    /// The wait after a 429 that carried no `Retry-After` (doubled each time).
    pub default_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_rate_limit_wait: Duration::from_secs(300),
            max_transient_retries: 3,
            transient_backoff: Duration::from_millis(250),
            default_retry_after: Duration::from_secs(1),
        }
    }
}

/// The Slack app and where to reach Slack.
#[derive(Debug, Clone)]
pub struct SlackConfig {
    /// The Web API base: `https://slack.com/api/` (the sandbox: `{base}/slack/api/`).
    pub api_base: Url,
    /// The OAuth base the authorize page lives under (`oauth/v2/authorize`):
    /// `https://slack.com/` (the sandbox: `{base}/slack/`).
    pub oauth_base: Url,
    /// The app's client id.
    pub client_id: String,
    /// The app's client secret.
    pub client_secret: SecretString,
    /// The app's signing secret (Events API request verification).
    pub signing_secret: SecretString,
    /// The OAuth redirect URI registered with the app, when one is used.
    pub redirect_uri: Option<Url>,
    /// The bot scopes requested on install.
    pub bot_scopes: Vec<String>,
    /// How the app is distributed (history limits and page sizes).
    pub distribution: Distribution,
    /// The limits the client paces itself under.
    pub limits: RateLimits,
    /// Retry bounds.
    pub retry: RetryPolicy,
    /// Timeout of one HTTP request.
    pub http_timeout: Duration,
    /// Refresh a rotating access token this long before it expires.
    pub refresh_margin: Duration,
}

impl SlackConfig {
    /// A configuration for slack.com with the documented limits.
    pub fn new(
        client_id: impl Into<String>,
        client_secret: SecretString,
        signing_secret: SecretString,
    ) -> SlackConfig {
        SlackConfig {
            api_base: Url::parse("https://slack.com/api/").expect("static URL"),
            oauth_base: Url::parse("https://slack.com/").expect("static URL"),
            client_id: client_id.into(),
            client_secret,
            signing_secret,
            redirect_uri: None,
            bot_scopes: BOT_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
            distribution: Distribution::Internal,
            limits: RateLimits::documented(),
            retry: RetryPolicy::default(),
            http_timeout: Duration::from_secs(30),
            refresh_margin: Duration::from_secs(300),
        }
    }

    /// Points the Web API and OAuth at other base URLs (the sandbox, a proxy, a mock).
    /// A missing trailing slash is added so methods resolve under the base.
    pub fn with_base_urls(mut self, api_base: Url, oauth_base: Url) -> SlackConfig {
        self.api_base = with_trailing_slash(api_base);
        self.oauth_base = with_trailing_slash(oauth_base);
        self
    }

    /// Sets the OAuth redirect URI.
    pub fn with_redirect_uri(mut self, redirect_uri: Url) -> SlackConfig {
        self.redirect_uri = Some(redirect_uri);
        self
    }

    /// Sets the limits the client paces itself under.
    pub fn with_limits(mut self, limits: RateLimits) -> SlackConfig {
        self.limits = limits;
        self
    }

    /// Declares how the app is distributed; the history limit follows (keeping any scaling
    /// already applied to the other limits is the caller's: set limits after this).
    pub fn with_distribution(mut self, distribution: Distribution) -> SlackConfig {
        self.distribution = distribution;
        self.limits.history = distribution.history_rate();
        self
    }

    /// Sets the retry bounds.
    pub fn with_retry(mut self, retry: RetryPolicy) -> SlackConfig {
        self.retry = retry;
        self
    }

    /// Checks the configuration: absolute http(s) base URLs, a client id.
    pub fn validate(&self) -> Result<()> {
        for (name, url) in [
            ("api_base", &self.api_base),
            ("oauth_base", &self.oauth_base),
        ] {
            if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
                return Err(Error::invalid(format!(
                    "Slack {name} must be an http(s) URL, got {url}"
                )));
            }
        }
        if self.client_id.trim().is_empty() {
            return Err(Error::invalid("Slack client_id must not be empty"));
        }
        Ok(())
    }

    /// The URL of a Web API method.
    pub fn method_url(&self, method: &str) -> Result<Url> {
        self.api_base
            .join(method)
            .map_err(|e| Error::invalid(format!("bad Slack method URL for {method}: {e}")))
    }
}

pub(crate) fn with_trailing_slash(mut url: Url) -> Url {
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_get_a_trailing_slash_and_methods_resolve_under_them() {
        let c = SlackConfig::new(
            "1.2",
            "client-secret-value".to_owned().into(),
            "signing-secret-value".to_owned().into(),
        )
        .with_base_urls(
            Url::parse("http://127.0.0.1:9/slack/api").unwrap(),
            Url::parse("http://127.0.0.1:9/slack").unwrap(),
        );
        assert_eq!(
            c.method_url("auth.test").unwrap().as_str(),
            "http://127.0.0.1:9/slack/api/auth.test"
        );
        assert_eq!(c.oauth_base.as_str(), "http://127.0.0.1:9/slack/");
        c.validate().unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains("secret-value"), "{debug}");
    }

    #[test]
    fn scaling_multiplies_and_zero_disables() {
        let l = RateLimits::documented().scaled(30.0);
        assert_eq!(l.tier4.limit, 3000);
        assert_eq!(l.tier2.limit, 600);
        assert_eq!(l.post_per_channel.limit, 150);
        assert_eq!(l.post_per_channel.window, Duration::from_secs(5));
        let off = RateLimits::documented().scaled(0.0);
        assert!(!off.tier4.is_limited());
        let tiny = RateLimits::documented().scaled(0.01);
        assert_eq!(tiny.tier1.limit, 1);
    }

    #[test]
    fn tiers_follow_the_documentation() {
        assert_eq!(tier_of("conversations.members"), Tier::Tier4);
        assert_eq!(tier_of("conversations.list"), Tier::Tier2);
        assert_eq!(tier_of("users.list"), Tier::Tier2);
        assert_eq!(tier_of("team.info"), Tier::Tier3);
        assert_eq!(tier_of("auth.test"), Tier::Special);
        assert_eq!(tier_of("chat.postMessage"), Tier::Post);
        assert_eq!(tier_of("apps.connections.open"), Tier::Tier1);
        assert_eq!(tier_of("oauth.v2.access"), Tier::Tier4);
        assert_eq!(tier_of("reactions.remove"), Tier::Tier2);
        assert_eq!(tier_of("reactions.add"), Tier::Tier3);
        assert_eq!(tier_of("conversations.info"), Tier::Tier3);
        assert_eq!(tier_of("users.info"), Tier::Tier4);
        assert_eq!(tier_of("files.info"), Tier::Tier4);
        assert_eq!(tier_of("conversations.history"), Tier::History);
        let internal = RateLimits::for_distribution(Distribution::Internal);
        assert_eq!(internal.for_tier(Tier::History), Rate::per_minute(50));
        let commercial = RateLimits::for_distribution(Distribution::NonMarketplace);
        assert_eq!(commercial.for_tier(Tier::History), Rate::per_minute(1));
        assert_eq!(Distribution::NonMarketplace.history_page_max(), 15);
    }
}
