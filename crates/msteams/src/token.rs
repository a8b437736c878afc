//! Access tokens for Graph calls: silent refresh ahead of expiry with refresh-token
//! rotation, single-flight under concurrency, and a sticky `needs_reauth` once the grant is
//! dead.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use switchboard_core::{Credentials, Error, ErrorKind, Result};
use time::OffsetDateTime;
use tokio::sync::Mutex;

use crate::oauth::OAuthClient;

/// Core's rotation callback, shared by every adapter: told about every refresh, so the
/// rotated credentials are sealed and stored at once.
pub use switchboard_core::CredentialsSink;

struct State {
    credentials: Credentials,
    /// When the current credentials were obtained from the token endpoint (unknown for
    /// credentials handed to the provider).
    issued: Option<OffsetDateTime>,
    /// Why the grant is dead, once it is.
    dead: Option<String>,
    refreshes: u64,
}

/// Hands out access tokens for one account, refreshing them before they expire.
///
/// Concurrent callers share one refresh: the first takes the lock and refreshes; the others
/// wait on the lock and then find the fresh token. An `invalid_grant` (revoked or expired
/// refresh token) marks the provider dead: every later call fails at once with
/// [`ErrorKind::NeedsReauth`] without contacting the identity platform again.
pub struct TokenProvider {
    oauth: Option<OAuthClient>,
    state: Mutex<State>,
    sink: Option<Arc<dyn CredentialsSink>>,
    margin: Duration,
}

impl fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenProvider")
            .field("refreshable", &self.oauth.is_some())
            .field("margin", &self.margin)
            .finish_non_exhaustive()
    }
}

impl TokenProvider {
    /// A provider that refreshes through `oauth` ahead of expiry by `margin` (capped at half
    /// the token's remaining lifetime at issue).
    pub fn new(
        oauth: OAuthClient,
        credentials: Credentials,
        margin: Duration,
        sink: Option<Arc<dyn CredentialsSink>>,
    ) -> Self {
        TokenProvider {
            oauth: Some(oauth),
            state: Mutex::new(State {
                credentials,
                issued: None,
                dead: None,
                refreshes: 0,
            }),
            sink,
            margin,
        }
    }

    /// A provider for a fixed access token that cannot be refreshed (tests, the sandbox's
    /// ready token, a token managed elsewhere).
    pub fn fixed(access_token: SecretString) -> Self {
        TokenProvider {
            oauth: None,
            state: Mutex::new(State {
                credentials: Credentials {
                    access_token,
                    refresh_token: None,
                    expires_at: None,
                    scopes: Vec::new(),
                },
                issued: None,
                dead: None,
                refreshes: 0,
            }),
            sink: None,
            margin: Duration::ZERO,
        }
    }

    fn due(&self, st: &State, now: OffsetDateTime) -> bool {
        match st.credentials.expires_at {
            None => false,
            Some(exp) => {
                let mut margin =
                    time::Duration::try_from(self.margin).unwrap_or(time::Duration::MAX);
                // a short-lived token is not refreshed on every call: at most half its life
                if let Some(issued) = st.issued {
                    margin = margin.min((exp - issued).max(time::Duration::ZERO) / 2);
                }
                exp - now <= margin
            }
        }
    }

    /// A valid access token, refreshed first when it expires within the margin.
    pub async fn access_token(&self) -> Result<SecretString> {
        let mut st = self.state.lock().await;
        if let Some(why) = &st.dead {
            return Err(dead_error(why));
        }
        let now = OffsetDateTime::now_utc();
        if self.due(&st, now) {
            let expired = st.credentials.expires_at.is_some_and(|e| e <= now);
            match self.refresh_locked(&mut st).await {
                Ok(()) => {}
                // a transient failure ahead of expiry: keep using the current token
                Err(e) if !expired && e.kind() != ErrorKind::NeedsReauth => {
                    tracing::warn!(error = %e, "early token refresh failed; using the current token");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(st.credentials.access_token.clone())
    }

    /// Called after Graph refused `rejected` with 401: refreshes unless another caller
    /// already did (then returns that newer token). `Unauthorized` when the token cannot be
    /// refreshed.
    pub async fn token_after_rejection(&self, rejected: &SecretString) -> Result<SecretString> {
        let mut st = self.state.lock().await;
        if let Some(why) = &st.dead {
            return Err(dead_error(why));
        }
        if st.credentials.access_token.expose_secret() != rejected.expose_secret() {
            return Ok(st.credentials.access_token.clone());
        }
        self.refresh_locked(&mut st).await?;
        Ok(st.credentials.access_token.clone())
    }

    /// Refreshes now (rotating the refresh token) and returns the new credentials.
    pub async fn refresh_now(&self) -> Result<Credentials> {
        let mut st = self.state.lock().await;
        if let Some(why) = &st.dead {
            return Err(dead_error(why));
        }
        self.refresh_locked(&mut st).await?;
        Ok(st.credentials.clone())
    }

    async fn refresh_locked(&self, st: &mut State) -> Result<()> {
        let (Some(oauth), Some(refresh)) = (&self.oauth, st.credentials.refresh_token.clone())
        else {
            return Err(Error::new(
                ErrorKind::Unauthorized,
                "the access token was refused or expired and there is no refresh token to renew it",
            ));
        };
        match oauth.refresh(&refresh).await {
            Ok(mut fresh) => {
                if fresh.scopes.is_empty() {
                    fresh.scopes = st.credentials.scopes.clone();
                }
                st.credentials = fresh;
                st.issued = Some(OffsetDateTime::now_utc());
                st.refreshes += 1;
                if let Some(sink) = &self.sink {
                    if let Err(e) = sink.persist(&st.credentials).await {
                        tracing::warn!(error = %e, "could not persist rotated Teams credentials");
                    }
                }
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::NeedsReauth => {
                st.dead = Some(e.message().to_owned());
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// The current credentials (for sealing at rest).
    pub async fn credentials(&self) -> Credentials {
        self.state.lock().await.credentials.clone()
    }

    /// The scopes granted with the current token, as the token endpoint reported them.
    pub async fn granted_scopes(&self) -> Vec<String> {
        self.state.lock().await.credentials.scopes.clone()
    }

    /// Whether the grant is dead (an admin must reconnect).
    pub async fn needs_reauth(&self) -> bool {
        self.state.lock().await.dead.is_some()
    }

    /// How many refreshes succeeded.
    pub async fn refresh_count(&self) -> u64 {
        self.state.lock().await.refreshes
    }
}

fn dead_error(why: &str) -> Error {
    Error::new(ErrorKind::NeedsReauth, why.to_owned())
}
