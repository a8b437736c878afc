//! The bot token of a connection, refreshed before it expires when Slack's token rotation is
//! on. Concurrent callers share one refresh (a tokio mutex: the first refreshes, the others
//! wait and get the new token); every rotation is handed to core's [`CredentialsSink`] so
//! the new refresh token is persisted (the old one stops working). A dead grant is remembered:
//! later calls fail fast with `NeedsReauth` instead of hammering Slack.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use secrecy::SecretString;
use switchboard_core::{Credentials, CredentialsSink};
use time::OffsetDateTime;
use tokio::sync::Mutex;

use crate::error::{Error, ErrorKind, Result};
use crate::oauth::SlackOAuth;

struct State {
    credentials: Credentials,
    generation: u64,
}

struct Inner {
    state: Mutex<State>,
    oauth: SlackOAuth,
    sink: std::sync::RwLock<Option<Arc<dyn CredentialsSink>>>,
    margin: Duration,
    dead: AtomicBool,
}

/// A connection's bot token with its rotation. Cheap to clone; clones share the state.
#[derive(Clone)]
pub struct TokenSource {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("token", &"<redacted>")
            .field("margin", &self.inner.margin)
            .field("dead", &self.inner.dead.load(Ordering::Relaxed))
            .finish()
    }
}

/// A token handed out, with the generation it belongs to (to refresh once after Slack
/// rejects it, however many callers saw the rejection).
#[derive(Clone)]
pub(crate) struct IssuedToken {
    pub token: SecretString,
    pub generation: u64,
    pub rotating: bool,
}

impl TokenSource {
    /// Wraps stored credentials. `margin`: refresh this long before expiry.
    pub fn new(credentials: Credentials, oauth: SlackOAuth, margin: Duration) -> TokenSource {
        TokenSource {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    credentials,
                    generation: 0,
                }),
                oauth,
                sink: std::sync::RwLock::new(None),
                margin,
                dead: AtomicBool::new(false),
            }),
        }
    }

    /// Hands every rotation to `sink` (replacing any earlier one).
    pub fn set_sink(&self, sink: Arc<dyn CredentialsSink>) {
        *self.inner.sink.write().unwrap_or_else(|p| p.into_inner()) = Some(sink);
    }

    /// The current credentials (after any rotation).
    pub async fn credentials(&self) -> Credentials {
        self.inner.state.lock().await.credentials.clone()
    }

    /// Whether the grant is known to be dead (a refresh was refused).
    pub fn needs_reauth(&self) -> bool {
        self.inner.dead.load(Ordering::Relaxed)
    }

    /// A valid access token, refreshed first when it expires within the margin.
    pub async fn access_token(&self) -> Result<SecretString> {
        Ok(self.issue().await?.token)
    }

    pub(crate) async fn issue(&self) -> Result<IssuedToken> {
        self.fail_if_dead()?;
        let mut state = self.inner.state.lock().await;
        let now = OffsetDateTime::now_utc();
        let expiring = state.credentials.expires_at.is_some_and(|at| {
            at - time::Duration::try_from(self.inner.margin).unwrap_or_default() <= now
        });
        if expiring {
            if state.credentials.refresh_token.is_some() {
                self.refresh_locked(&mut state).await?;
            } else if state.credentials.expires_at.is_some_and(|at| at <= now) {
                return Err(Error::new(
                    ErrorKind::NeedsReauth,
                    "the Slack access token has expired and there is no refresh token: reconnect the workspace",
                ));
            }
        }
        Ok(IssuedToken {
            token: state.credentials.access_token.clone(),
            generation: state.generation,
            rotating: state.credentials.refresh_token.is_some(),
        })
    }

    /// Slack rejected the token of `generation` (`token_expired`, `invalid_auth`): refresh
    /// once for every caller that saw it, and hand out the new token.
    pub(crate) async fn refresh_after_rejection(&self, generation: u64) -> Result<IssuedToken> {
        self.fail_if_dead()?;
        let mut state = self.inner.state.lock().await;
        if state.generation == generation {
            self.refresh_locked(&mut state).await?;
        }
        Ok(IssuedToken {
            token: state.credentials.access_token.clone(),
            generation: state.generation,
            rotating: state.credentials.refresh_token.is_some(),
        })
    }

    /// Refreshes now, whatever the expiry. Without a refresh token (rotation off) the
    /// current credentials are returned unchanged.
    pub async fn refresh_now(&self) -> Result<Credentials> {
        self.fail_if_dead()?;
        let mut state = self.inner.state.lock().await;
        if state.credentials.refresh_token.is_some() {
            self.refresh_locked(&mut state).await?;
        }
        Ok(state.credentials.clone())
    }

    fn fail_if_dead(&self) -> Result<()> {
        if self.inner.dead.load(Ordering::Relaxed) {
            return Err(Error::new(
                ErrorKind::NeedsReauth,
                "Slack refused the refresh token earlier: reconnect the workspace",
            ));
        }
        Ok(())
    }

    async fn refresh_locked(&self, state: &mut State) -> Result<()> {
        let Some(refresh) = state.credentials.refresh_token.clone() else {
            return Err(Error::new(
                ErrorKind::NeedsReauth,
                "the Slack token cannot be refreshed (no refresh token): reconnect the workspace",
            ));
        };
        match self.inner.oauth.refresh(&refresh).await {
            Ok(mut fresh) => {
                if fresh.scopes.is_empty() {
                    fresh.scopes = state.credentials.scopes.clone();
                }
                if fresh.refresh_token.is_none() {
                    // Rotation answers always carry a new refresh token; keep the old one
                    // if one ever does not.
                    fresh.refresh_token = Some(refresh);
                }
                state.credentials = fresh;
                state.generation += 1;
                tracing::info!(generation = state.generation, "rotated the Slack bot token");
                let sink = self
                    .inner
                    .sink
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                if let Some(sink) = sink {
                    if let Err(e) = sink.persist(&state.credentials).await {
                        // The fresh token is still used; the error never carries it.
                        tracing::error!(error = %e, "could not persist the rotated Slack credentials");
                    }
                }
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::NeedsReauth => {
                self.inner.dead.store(true, Ordering::Relaxed);
                tracing::warn!(error = %e, "Slack refused the refresh token; the connection needs reauthorization");
                Err(e)
            }
            Err(e) => Err(e),
        }
    }
}
