//! Configuration of a Teams connection: where the Microsoft identity platform and Graph live,
//! the app registration, and the client's pacing and retry behaviour.

use std::fmt;
use std::time::Duration;

use secrecy::SecretString;
use switchboard_core::{Error, Result};
use url::Url;

use crate::pacer::RateLimits;

/// The public Microsoft identity platform.
pub const MICROSOFT_LOGIN_BASE: &str = "https://login.microsoftonline.com/";
/// The public Microsoft Graph v1.0 endpoint.
pub const GRAPH_V1_BASE: &str = "https://graph.microsoft.com/v1.0/";

/// Everything a Teams connection needs to know before it has a token.
///
/// Every base URL is configurable so tests point the adapter at wiremock or the sandbox.
/// `Debug` never prints the client secret.
#[derive(Clone)]
pub struct MsTeamsConfig {
    /// The identity platform base (`https://login.microsoftonline.com/`); the tenant and
    /// `oauth2/v2.0/{authorize,token}` are appended.
    pub login_base: Url,
    /// The Graph base including the version (`https://graph.microsoft.com/v1.0/`).
    pub graph_base: Url,
    /// `common`, `organizations`, a tenant GUID or a verified domain.
    pub tenant: String,
    /// The app registration's application (client) id.
    pub client_id: String,
    /// The app registration's client secret (web app).
    pub client_secret: SecretString,
    /// The redirect URI registered on the app (must match exactly).
    pub redirect_uri: Url,
    /// Guest accounts are synced: `User.Invite.All` is requested and User Administrator is
    /// required of the service account.
    pub guest_sync: bool,
    /// The throttling limits the client paces itself under.
    pub limits: RateLimits,
    /// Retry behaviour on 429, 503, 5xx and network failures.
    pub retry: RetryPolicy,
    /// Requests in flight at once, at most.
    pub max_concurrency: usize,
    /// Timeout of one HTTP request.
    pub request_timeout: Duration,
    /// Refresh an access token this long before it expires (capped at half its lifetime).
    pub refresh_margin: Duration,
}

impl fmt::Debug for MsTeamsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MsTeamsConfig")
            .field("login_base", &self.login_base.as_str())
            .field("graph_base", &self.graph_base.as_str())
            .field("tenant", &self.tenant)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[REDACTED]")
            .field("redirect_uri", &self.redirect_uri.as_str())
            .field("guest_sync", &self.guest_sync)
            .field("limits", &self.limits)
            .field("retry", &self.retry)
            .field("max_concurrency", &self.max_concurrency)
            .field("request_timeout", &self.request_timeout)
            .field("refresh_margin", &self.refresh_margin)
            .finish()
    }
}

/// Ensures a base URL ends with `/` so that relative joins append instead of replacing the
/// last segment.
pub(crate) fn with_trailing_slash(mut url: Url) -> Url {
    if !url.path().ends_with('/') {
        let p = format!("{}/", url.path());
        url.set_path(&p);
    }
    url
}

fn parse_base(what: &str, s: &str) -> Result<Url> {
    let url =
        Url::parse(s).map_err(|e| Error::invalid(format!("{what} {s:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::invalid(format!(
            "{what} {s:?} must be an http or https URL"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::invalid(format!(
            "{what} {s:?} must not have a query or fragment"
        )));
    }
    Ok(with_trailing_slash(url))
}

impl MsTeamsConfig {
    /// A configuration against the public Microsoft cloud with the documented limits.
    pub fn microsoft(
        tenant: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: SecretString,
        redirect_uri: &str,
    ) -> Result<Self> {
        Self::with_endpoints(
            MICROSOFT_LOGIN_BASE,
            GRAPH_V1_BASE,
            tenant,
            client_id,
            client_secret,
            redirect_uri,
        )
    }

    /// A configuration against custom endpoints (the sandbox, wiremock, a national cloud).
    /// `login_base` is the part before `{tenant}/oauth2/v2.0/…`; `graph_base` includes the
    /// version (`…/v1.0`).
    pub fn with_endpoints(
        login_base: &str,
        graph_base: &str,
        tenant: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: SecretString,
        redirect_uri: &str,
    ) -> Result<Self> {
        let tenant = tenant.into();
        if tenant.is_empty()
            || !tenant
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        {
            return Err(Error::invalid(format!(
                "tenant {tenant:?} must be `common`, `organizations`, a tenant GUID or a domain"
            )));
        }
        let client_id = client_id.into();
        if client_id.trim().is_empty() {
            return Err(Error::invalid("the client id must not be empty"));
        }
        let redirect_uri = Url::parse(redirect_uri).map_err(|e| {
            Error::invalid(format!("redirect URI {redirect_uri:?} is not a URL: {e}"))
        })?;
        Ok(MsTeamsConfig {
            login_base: parse_base("login base", login_base)?,
            graph_base: parse_base("Graph base", graph_base)?,
            tenant,
            client_id,
            client_secret,
            redirect_uri,
            guest_sync: false,
            limits: RateLimits::documented(),
            retry: RetryPolicy::default(),
            max_concurrency: 16,
            request_timeout: Duration::from_secs(30),
            refresh_margin: Duration::from_secs(300),
        })
    }

    /// Turns guest sync on or off.
    pub fn guest_sync(mut self, on: bool) -> Self {
        self.guest_sync = on;
        self
    }

    /// Replaces the pacing limits (e.g. `RateLimits::documented().scaled(k)` for a sandbox
    /// started with `time_scale = k`).
    pub fn limits(mut self, limits: RateLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Replaces the retry policy.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets the number of requests in flight at once (at least 1).
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = n.max(1);
        self
    }

    /// The authorize endpoint: `{login_base}{tenant}/oauth2/v2.0/authorize`.
    pub fn authorize_endpoint(&self) -> Result<Url> {
        self.login_endpoint("authorize")
    }

    /// The token endpoint: `{login_base}{tenant}/oauth2/v2.0/token`.
    pub fn token_endpoint(&self) -> Result<Url> {
        self.login_endpoint("token")
    }

    fn login_endpoint(&self, leaf: &str) -> Result<Url> {
        let mut url = self.login_base.clone();
        url.path_segments_mut()
            .map_err(|_| Error::invalid("the login base URL cannot have path segments"))?
            .pop_if_empty()
            .extend([self.tenant.as_str(), "oauth2", "v2.0", leaf]);
        Ok(url)
    }
}

/// How the client retries throttled and failed requests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// First backoff when the server gave no `Retry-After`; doubled per attempt.
    pub base_backoff: Duration,
    /// Largest single backoff.
    pub max_backoff: Duration,
    /// Total time one call may spend waiting for retries and pacing before it gives up with
    /// a clear error.
    pub max_total_wait: Duration,
    /// Attempts per call, the first included.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_total_wait: Duration::from_secs(120),
            max_attempts: 8,
        }
    }
}

impl RetryPolicy {
    /// The backoff before retry number `attempt` (1 = first retry), with full jitter in
    /// `[d/2, d]` so concurrent clients do not retry in lockstep.
    pub fn backoff(&self, attempt: u32) -> Duration {
        use rand::Rng;
        let exp = self.base_backoff.saturating_mul(
            1u32.checked_shl(attempt.saturating_sub(1).min(20))
                .unwrap_or(u32::MAX),
        );
        let d = exp.min(self.max_backoff);
        let factor: f64 = rand::thread_rng().gen_range(0.5..=1.0);
        d.mul_f64(factor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_built_from_the_bases() {
        let c = MsTeamsConfig::with_endpoints(
            "http://127.0.0.1:9/microsoft",
            "http://127.0.0.1:9/graph/v1.0",
            "contoso.onmicrosoft.com",
            "client",
            SecretString::from("s3cret-value"),
            "http://localhost/cb",
        )
        .unwrap();
        assert_eq!(
            c.authorize_endpoint().unwrap().as_str(),
            "http://127.0.0.1:9/microsoft/contoso.onmicrosoft.com/oauth2/v2.0/authorize"
        );
        assert_eq!(
            c.token_endpoint().unwrap().as_str(),
            "http://127.0.0.1:9/microsoft/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        assert_eq!(c.graph_base.as_str(), "http://127.0.0.1:9/graph/v1.0/");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("s3cret-value"), "{dbg}");
    }

    #[test]
    fn bad_configuration_is_refused() {
        let s = || SecretString::from("x");
        assert!(MsTeamsConfig::microsoft("bad tenant", "c", s(), "http://l/cb").is_err());
        assert!(MsTeamsConfig::microsoft("t", " ", s(), "http://l/cb").is_err());
        assert!(MsTeamsConfig::microsoft("t", "c", s(), "not a url").is_err());
        assert!(
            MsTeamsConfig::with_endpoints("ftp://x/", GRAPH_V1_BASE, "t", "c", s(), "http://l/")
                .is_err()
        );
        assert!(
            MsTeamsConfig::with_endpoints(
                MICROSOFT_LOGIN_BASE,
                "https://g/v1.0?x=1",
                "t",
                "c",
                s(),
                "http://l/"
            )
            .is_err()
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(700),
            ..Default::default()
        };
        let b1 = p.backoff(1);
        assert!(b1 >= Duration::from_millis(50) && b1 <= Duration::from_millis(100));
        let b3 = p.backoff(3);
        assert!(b3 >= Duration::from_millis(200) && b3 <= Duration::from_millis(400));
        for a in [5, 40, u32::MAX] {
            assert!(p.backoff(a) <= Duration::from_millis(700));
        }
    }
}
