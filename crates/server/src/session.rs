//! Console sessions and OAuth `state`.
//!
//! A session is a random 256-bit id in an `HttpOnly`, `SameSite=Lax` cookie (`Secure` when
//! the public URL is HTTPS), rotated at sign-in, with a CSRF token every form carries. OAuth
//! `state` is random, single use, bound to the session that started the flow, and expires
//! after 10 minutes; for Microsoft it keeps the PKCE verifier (S256). Both live in memory:
//! a restart signs everyone out and abandons flows in progress (the admin starts again).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use parking_lot::Mutex;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use switchboard_core::{AdminPrincipal, ConnectionId, PlatformKind};

/// The session cookie's name.
pub const COOKIE: &str = "sb_session";
/// How long a signed-in session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// How long an OAuth `state` is accepted.
pub const STATE_TTL: Duration = Duration::from_secs(10 * 60);

/// 32 random bytes, URL-safe base64.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// The PKCE S256 challenge of `verifier`.
pub fn pkce_challenge(verifier: &SecretString) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.expose_secret().as_bytes()))
}

fn key(id: &str) -> [u8; 32] {
    // Sessions are looked up by a hash of the id, so a timing leak of the map reveals nothing
    // usable.
    Sha256::digest(id.as_bytes()).into()
}

/// A signed-in console session.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who signed in (an admin token's organization and name).
    pub principal: AdminPrincipal,
    /// The CSRF token of this session's forms.
    pub csrf: String,
    created: Instant,
}

impl Session {
    /// Whether `presented` is this session's CSRF token (constant time).
    pub fn csrf_ok(&self, presented: &str) -> bool {
        bool::from(self.csrf.as_bytes().ct_eq(presented.as_bytes()))
    }
}

/// A pending OAuth authorization.
#[derive(Debug)]
pub struct PendingAuth {
    /// Which platform.
    pub platform: PlatformKind,
    /// The PKCE verifier, when the flow uses one.
    pub verifier: Option<SecretString>,
    /// The connection to move onto the account that signs in, when the flow is a migration
    /// ("Move to a service account") rather than a new connection.
    pub migrate: Option<ConnectionId>,
    /// The flow signs an administrator in to the console (with the account that connected a
    /// platform) rather than connecting one.
    pub signin: bool,
    session: [u8; 32],
    created: Instant,
}

/// Sessions and pending authorizations of one server.
#[derive(Debug, Default)]
pub struct Sessions {
    sessions: Mutex<HashMap<[u8; 32], Session>>,
    pending: Mutex<HashMap<String, PendingAuth>>,
}

impl Sessions {
    /// Signs `principal` in: a new session id (the old one, if any, is dropped: rotation).
    pub fn sign_in(&self, principal: AdminPrincipal, previous: Option<&str>) -> String {
        let id = random_token();
        let mut map = self.sessions.lock();
        if let Some(old) = previous {
            map.remove(&key(old));
        }
        let now = Instant::now();
        map.retain(|_, s| now.duration_since(s.created) < SESSION_TTL);
        map.insert(
            key(&id),
            Session {
                principal,
                csrf: random_token(),
                created: now,
            },
        );
        id
    }

    /// The live session of cookie value `id`.
    pub fn get(&self, id: &str) -> Option<Session> {
        let map = self.sessions.lock();
        map.get(&key(id))
            .filter(|s| s.created.elapsed() < SESSION_TTL)
            .cloned()
    }

    /// Signs out.
    pub fn sign_out(&self, id: &str) {
        self.sessions.lock().remove(&key(id));
    }

    /// Starts an authorization for the session `session_id`: returns the `state` to send.
    pub fn begin_auth(
        &self,
        session_id: &str,
        platform: PlatformKind,
        verifier: Option<SecretString>,
    ) -> String {
        self.begin_auth_for(session_id, platform, verifier, None)
    }

    /// [`Sessions::begin_auth`] with the connection a migration moves (`None`: connect).
    pub fn begin_auth_for(
        &self,
        session_id: &str,
        platform: PlatformKind,
        verifier: Option<SecretString>,
        migrate: Option<ConnectionId>,
    ) -> String {
        let state = random_token();
        let mut map = self.pending.lock();
        let now = Instant::now();
        map.retain(|_, p| now.duration_since(p.created) < STATE_TTL);
        map.insert(
            state.clone(),
            PendingAuth {
                platform,
                verifier,
                migrate,
                signin: false,
                session: key(session_id),
                created: now,
            },
        );
        state
    }

    /// Starts a sign-in through `platform`'s OAuth for the browser holding the pre-sign-in
    /// cookie `browser_id` (there is no session yet): returns the `state` to send.
    pub fn begin_signin(
        &self,
        browser_id: &str,
        platform: PlatformKind,
        verifier: Option<SecretString>,
    ) -> String {
        let state = random_token();
        let mut map = self.pending.lock();
        let now = Instant::now();
        map.retain(|_, p| now.duration_since(p.created) < STATE_TTL);
        map.insert(
            state.clone(),
            PendingAuth {
                platform,
                verifier,
                migrate: None,
                signin: true,
                session: key(browser_id),
                created: now,
            },
        );
        state
    }

    /// Takes the pending authorization of `state` (single use: it is gone afterwards, whatever
    /// the outcome). `None` when unknown, expired, for another platform, or started by
    /// another browser session.
    pub fn finish_auth(
        &self,
        state: &str,
        session_id: Option<&str>,
        platform: PlatformKind,
    ) -> Option<PendingAuth> {
        let pending = self.pending.lock().remove(state)?;
        let session = session_id.map(key)?;
        let fresh = pending.created.elapsed() < STATE_TTL;
        let same = bool::from(pending.session.ct_eq(&session));
        (fresh && same && pending.platform == platform).then_some(pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_core::OrgId;

    fn admin() -> AdminPrincipal {
        AdminPrincipal {
            org: OrgId::generate(),
            name: "alice".into(),
        }
    }

    #[test]
    fn sign_in_rotates_the_session() {
        let s = Sessions::default();
        let first = s.sign_in(admin(), None);
        assert!(s.get(&first).is_some());
        let second = s.sign_in(admin(), Some(&first));
        assert_ne!(first, second);
        assert!(s.get(&first).is_none(), "the old id no longer works");
        let session = s.get(&second).unwrap();
        assert!(session.csrf_ok(&session.csrf.clone()));
        assert!(!session.csrf_ok("forged"));
        s.sign_out(&second);
        assert!(s.get(&second).is_none());
    }

    #[test]
    fn state_is_single_use_and_bound_to_the_session_and_platform() {
        let s = Sessions::default();
        let sid = s.sign_in(admin(), None);
        let other = s.sign_in(admin(), None);
        let v = SecretString::from(random_token());
        let state = s.begin_auth(&sid, PlatformKind::Msteams, Some(v));
        assert!(
            s.finish_auth(&state, Some(&other), PlatformKind::Msteams)
                .is_none()
        );
        // the failed attempt consumed it
        assert!(
            s.finish_auth(&state, Some(&sid), PlatformKind::Msteams)
                .is_none()
        );

        let state = s.begin_auth(&sid, PlatformKind::Msteams, None);
        assert!(
            s.finish_auth(&state, Some(&sid), PlatformKind::Slack)
                .is_none()
        );
        let state = s.begin_auth(&sid, PlatformKind::Slack, None);
        assert!(s.finish_auth(&state, None, PlatformKind::Slack).is_none());
        let state = s.begin_auth(&sid, PlatformKind::Slack, None);
        assert!(
            s.finish_auth(&state, Some(&sid), PlatformKind::Slack)
                .is_some()
        );
        assert!(
            s.finish_auth(&state, Some(&sid), PlatformKind::Slack)
                .is_none(),
            "replayed"
        );
        assert!(
            s.finish_auth("made-up", Some(&sid), PlatformKind::Slack)
                .is_none()
        );
    }

    #[test]
    fn pkce_challenge_matches_rfc_7636() {
        // RFC 7636 appendix B
        let v = SecretString::from("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".to_owned());
        assert_eq!(
            pkce_challenge(&v),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
