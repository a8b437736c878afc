//! "Link my account": the page where an end user (no admin session) links their own platform
//! account, so copies of their messages are posted as them (on Teams: with their own
//! delegated token, without the attribution line).
//!
//! The flow: `GET /link-account?org=<org>` → "Link my Microsoft Teams account" →
//! `GET /link-account/{platform}/start?org=<org>` (a fresh single-use `state` bound to the
//! pre-link cookie `sb_link`, PKCE S256, 10 minutes) → the provider, with only the delegated
//! scopes posting as the user needs → `/connect/{platform}/callback` (the app registration's
//! one redirect URI; [`callback`] takes the states this module issued) → who signed in
//! (`/me`, through core's [`Authorizer`]) → refused, with nothing stored, unless that user is
//! in the organization's imported directory of that platform → the credentials stored sealed
//! ([`UserAccountStore`](switchboard_core::UserAccountStore)), the open connections told
//! ([`ConnectionPool::refresh_linked_user`](crate::pool::ConnectionPool::refresh_linked_user))
//! → "Linked as …" with an Unlink button (CSRF token of the short end-user session
//! `sb_linked`; unlinking deletes the credentials).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use minijinja::{Environment, context};
use parking_lot::Mutex;
use secrecy::SecretString;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use switchboard_core::{
    Actor, Authorizer, LinkedAccount, OrgId, PlatformKind, Result as CoreResult, UserId,
};
use time::OffsetDateTime;

use crate::AppState;
use crate::console::{cookie_value, platform_name, redirect_uri, render};
use crate::session::{STATE_TTL, pkce_challenge, random_token};

/// The cookie binding a started link to the browser that started it.
pub const PRE_COOKIE: &str = "sb_link";
/// The cookie of an end user's short session after linking (to unlink).
pub const LINKED_COOKIE: &str = "sb_linked";
/// How long the "linked as …" session lasts.
pub const LINKED_TTL: Duration = Duration::from_secs(3600);

/// Adds this module's templates.
pub fn add_templates(env: &mut Environment<'static>) {
    env.add_template(
        "link_account.html",
        include_str!("../templates/link_account.html"),
    )
    .unwrap_or_else(|e| panic!("template link_account.html: {e}"));
}

/// `org=<org>`, encoded for a URL's query.
fn org_query(org: &OrgId) -> String {
    format!(
        "org={}",
        url::form_urlencoded::byte_serialize(org.as_str().as_bytes()).collect::<String>()
    )
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

#[derive(Debug)]
struct PendingLink {
    org: OrgId,
    platform: PlatformKind,
    verifier: Option<SecretString>,
    browser: [u8; 32],
    created: Instant,
}

#[derive(Debug, Clone)]
struct LinkedSession {
    org: OrgId,
    platform: PlatformKind,
    user: UserId,
    display_name: String,
    csrf: String,
    created: Instant,
}

/// Pending links (by OAuth `state`) and end users' short sessions after linking (by a hash
/// of the cookie).
#[derive(Debug, Default)]
pub struct LinkSessions {
    pending: Mutex<HashMap<String, PendingLink>>,
    linked: Mutex<HashMap<[u8; 32], LinkedSession>>,
}

impl LinkSessions {
    fn begin(
        &self,
        browser: &str,
        org: OrgId,
        platform: PlatformKind,
        verifier: Option<SecretString>,
    ) -> String {
        let state = random_token();
        let now = Instant::now();
        let mut map = self.pending.lock();
        map.retain(|_, p| now.duration_since(p.created) < STATE_TTL);
        map.insert(
            state.clone(),
            PendingLink {
                org,
                platform,
                verifier,
                browser: key(browser),
                created: now,
            },
        );
        state
    }

    /// Takes the pending link of `state` (single use). `None` when this module did not issue
    /// it; `Some(None)` when it did but it expired, is for another platform or another browser.
    fn finish(
        &self,
        state: &str,
        browser: Option<&str>,
        platform: PlatformKind,
    ) -> Option<Option<PendingLink>> {
        let pending = self.pending.lock().remove(state)?;
        let same = browser.is_some_and(|b| bool::from(pending.browser.ct_eq(&key(b))));
        let fresh = pending.created.elapsed() < STATE_TTL;
        Some((same && fresh && pending.platform == platform).then_some(pending))
    }

    fn start_session(&self, s: LinkedSession) -> String {
        let id = random_token();
        let now = Instant::now();
        let mut map = self.linked.lock();
        map.retain(|_, v| now.duration_since(v.created) < LINKED_TTL);
        map.insert(key(&id), s);
        id
    }

    fn session(&self, id: &str) -> Option<LinkedSession> {
        let map = self.linked.lock();
        map.get(&key(id))
            .filter(|s| s.created.elapsed() < LINKED_TTL)
            .cloned()
    }

    fn end_session(&self, id: &str) {
        self.linked.lock().remove(&key(id));
    }
}

fn cookie(state: &AppState, name: &str, value: &str, max_age: u64) -> HeaderValue {
    let secure = if state.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("sb_link=; Path=/; Max-Age=0"))
}

/// A page of this flow: `heading`, an optional error, paragraphs, and what to offer next.
fn page(state: &AppState, status: StatusCode, ctx: minijinja::Value) -> Response {
    render(state, status, "link_account.html", ctx)
}

fn refusal(state: &AppState, status: StatusCode, heading: &str, error: String) -> Response {
    page(
        state,
        status,
        context! { title => heading, heading, error, signed_in => false },
    )
}

/// The `?org=` of the page; without one, the server's only organization.
#[derive(Debug, Deserialize)]
pub struct OrgQuery {
    org: Option<String>,
}

async fn resolve_org(state: &AppState, q: &OrgQuery) -> Result<OrgId, Box<Response>> {
    let not_found = || {
        Box::new(refusal(
            state,
            StatusCode::NOT_FOUND,
            "Unknown organization",
            "This link does not name an organization of this server; ask your administrator for the link to your organization's page.".into(),
        ))
    };
    match q.org.as_deref() {
        Some(raw) => {
            let id = OrgId::new(raw.to_owned()).map_err(|_| not_found())?;
            match state.store.get_org(&id).await {
                Ok(Some(_)) => Ok(id),
                Ok(None) => Err(not_found()),
                Err(e) => Err(Box::new(unavailable(state, &e))),
            }
        }
        None => match state.store.list_orgs().await {
            Ok(orgs) if orgs.len() == 1 => Ok(orgs[0].id.clone()),
            Ok(_) => Err(not_found()),
            Err(e) => Err(Box::new(unavailable(state, &e))),
        },
    }
}

fn unavailable(state: &AppState, e: &switchboard_core::Error) -> Response {
    tracing::error!(error = %e, "link-account page: storage unavailable");
    refusal(
        state,
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again later",
        "Switchboard cannot reach its database right now; nothing was changed.".into(),
    )
}

fn user_authorizer(state: &AppState, platform: PlatformKind) -> Option<&Arc<dyn Authorizer>> {
    state
        .user_authorizers
        .iter()
        .find(|a| a.platform() == platform)
}

/// `GET /link-account?org=<org>`: what this browser linked, or the buttons to link.
pub async fn link_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<OrgQuery>,
) -> Response {
    let org = match resolve_org(&state, &q).await {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let linked = cookie_value(&headers, LINKED_COOKIE)
        .and_then(|id| state.links.session(id))
        .filter(|s| s.org == org);
    let platforms: Vec<minijinja::Value> = state
        .user_authorizers
        .iter()
        .map(|a| {
            context! {
                slug => a.platform().as_str(),
                name => platform_name(a.platform()),
            }
        })
        .collect();
    page(
        &state,
        StatusCode::OK,
        context! {
            title => "Link my account",
            heading => "Link my account",
            org => org_query(&org),
            platforms,
            linked => linked.as_ref().map(|s| context! {
                name => s.display_name,
                platform => platform_name(s.platform),
                csrf => s.csrf,
            }),
            signed_in => false,
        },
    )
}

/// `GET /link-account/{platform}/start?org=<org>`: to the provider with a fresh `state`.
pub async fn link_start(
    State(state): State<AppState>,
    Path(platform): Path<String>,
    Query(q): Query<OrgQuery>,
) -> Response {
    let org = match resolve_org(&state, &q).await {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let authorizer = platform
        .parse::<PlatformKind>()
        .ok()
        .and_then(|k| user_authorizer(&state, k));
    let Some(authorizer) = authorizer else {
        return refusal(
            &state,
            StatusCode::NOT_FOUND,
            "Not available",
            format!("Linking a {platform:?} account is not offered on this server."),
        );
    };
    let kind = authorizer.platform();
    let browser = random_token();
    let verifier = authorizer
        .uses_pkce()
        .then(|| SecretString::from(random_token()));
    let challenge = verifier.as_ref().map(pkce_challenge);
    let oauth_state = state.links.begin(&browser, org, kind, verifier);
    match authorizer.authorize_url(
        &redirect_uri(&state, kind),
        &oauth_state,
        challenge.as_deref(),
    ) {
        Ok(url) => {
            let mut r = (StatusCode::FOUND, [(header::LOCATION, url)]).into_response();
            r.headers_mut().insert(
                header::SET_COOKIE,
                cookie(&state, PRE_COOKIE, &browser, STATE_TTL.as_secs()),
            );
            r
        }
        Err(e) => refusal(
            &state,
            StatusCode::INTERNAL_SERVER_ERROR,
            "Cannot start linking",
            e.to_string(),
        ),
    }
}

/// Finishes a link when `oauth_state` is one this module issued (`None` otherwise: the
/// console's own flows handle it). Called first by the shared `/connect/{platform}/callback`.
pub async fn callback(
    state: &AppState,
    headers: &HeaderMap,
    kind: PlatformKind,
    oauth_state: Option<&str>,
    code: Option<&str>,
    error: Option<&str>,
) -> Option<Response> {
    let pending = state
        .links
        .finish(oauth_state?, cookie_value(headers, PRE_COOKIE), kind)?;
    let Some(pending) = pending else {
        return Some(refusal(
            state,
            StatusCode::BAD_REQUEST,
            "This link is not valid",
            "It was already used, has expired (after 10 minutes), or was started in another browser. Nothing was linked; start again from your organization's Link my account page.".into(),
        ));
    };
    let (Some(code), Some(authorizer)) = (code, user_authorizer(state, kind)) else {
        return Some(refusal(
            state,
            StatusCode::BAD_REQUEST,
            "Linking was cancelled",
            error.map_or_else(
                || "The sign-in did not complete; nothing was linked.".into(),
                |e| format!("{e}. Nothing was linked."),
            ),
        ));
    };
    let authorized = match authorizer
        .complete(
            &SecretString::from(code.to_owned()),
            &redirect_uri(state, kind),
            pending.verifier.as_ref(),
        )
        .await
    {
        Ok(a) => a,
        Err(e) => {
            return Some(refusal(
                state,
                StatusCode::BAD_GATEWAY,
                "Linking failed",
                format!("{e}. Nothing was linked."),
            ));
        }
    };
    Some(finish_link(state, &pending.org, kind, authorized).await)
}

async fn finish_link(
    state: &AppState,
    org: &OrgId,
    kind: PlatformKind,
    authorized: switchboard_core::Authorized,
) -> Response {
    let user = authorized.account.user_id.clone();
    // Only a person of this organization's imported directory may link: anyone else who
    // signs in is refused before anything is stored.
    let member = match state.store.get_user(org, kind, &user).await {
        Ok(u) => u.filter(|u| !u.removed && !u.user.is_deleted),
        Err(e) => return unavailable(state, &e),
    };
    let Some(member) = member else {
        return refusal(
            state,
            StatusCode::FORBIDDEN,
            "This account cannot be linked",
            format!(
                "{} ({}) is not in this organization's {} directory as Switchboard imported it. Nothing was stored. If you should be, ask your administrator to import your team again.",
                authorized.account.display_name,
                platform_name(kind),
                platform_name(kind)
            ),
        );
    };
    let account = LinkedAccount {
        platform: kind,
        user: user.clone(),
        display_name: if member.user.display_name.trim().is_empty() {
            authorized.account.display_name.clone()
        } else {
            member.user.display_name.clone()
        },
        linked_at: OffsetDateTime::now_utc(),
    };
    if let Err(e) = state
        .store
        .put_linked_account(
            org,
            &account,
            &authorized.credentials,
            Actor::User {
                platform: kind,
                user: user.clone(),
                name: account.display_name.clone(),
            },
        )
        .await
    {
        return match e.kind() {
            switchboard_core::ErrorKind::Storage => unavailable(state, &e),
            _ => refusal(
                state,
                StatusCode::BAD_REQUEST,
                "Linking failed",
                format!("{e}. Nothing was linked."),
            ),
        };
    }
    state.pool().refresh_linked_user(org, kind, &user).await;
    let id = state.links.start_session(LinkedSession {
        org: org.clone(),
        platform: kind,
        user,
        display_name: account.display_name,
        csrf: random_token(),
        created: Instant::now(),
    });
    let to = format!("/link-account?{}", org_query(org));
    let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        cookie(state, LINKED_COOKIE, &id, LINKED_TTL.as_secs()),
    );
    r.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static("sb_link=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"),
    );
    r
}

/// The Unlink form.
#[derive(Debug, Deserialize)]
pub struct UnlinkForm {
    csrf: String,
}

/// `POST /link-account/unlink`: deletes this browser's linked account (CSRF-checked).
pub async fn unlink(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<UnlinkForm>,
) -> Response {
    let id = cookie_value(&headers, LINKED_COOKIE);
    let session = id.and_then(|id| state.links.session(id));
    let Some(session) =
        session.filter(|s| bool::from(s.csrf.as_bytes().ct_eq(form.csrf.as_bytes())))
    else {
        return refusal(
            &state,
            StatusCode::FORBIDDEN,
            "Cannot unlink from here",
            "This page has expired or the request did not come from it. Nothing was changed; link your account again to get a fresh page, then unlink.".into(),
        );
    };
    let result: CoreResult<()> = state
        .store
        .delete_linked_account(
            &session.org,
            session.platform,
            &session.user,
            Actor::User {
                platform: session.platform,
                user: session.user.clone(),
                name: session.display_name.clone(),
            },
        )
        .await;
    // Already gone (unlinked from another page) is what the user asked for.
    if let Err(e) = result
        && e.kind() != switchboard_core::ErrorKind::NotFound
    {
        return unavailable(&state, &e);
    }
    state
        .pool()
        .refresh_linked_user(&session.org, session.platform, &session.user)
        .await;
    if let Some(id) = id {
        state.links.end_session(id);
    }
    let mut r = page(
        &state,
        StatusCode::OK,
        context! {
            title => "Unlinked",
            heading => "Your account is unlinked",
            paragraphs => vec![format!(
                "Switchboard no longer holds a {} token for {}. Messages you send from now on are posted by Switchboard with your name; copies posted as you before can no longer be edited or deleted by Switchboard.",
                platform_name(session.platform),
                session.display_name
            )],
            org => org_query(&session.org),
            signed_in => false,
        },
    );
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("sb_linked=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"),
    );
    r
}
