//! The web console: sign-in, the Connect Platforms page, and connecting a platform through
//! OAuth. Server-rendered HTML (minijinja, auto-escaped) with no JavaScript.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use minijinja::{Environment, context};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use switchboard_core::{
    Actor, Authorized, Connection, ConnectionHealth, ConnectionId, Credentials, CredentialsSink,
    NewAuditEntry, OrgId, PlatformKind, Result as CoreResult, Store, VerifyOptions,
};
use time::OffsetDateTime;

use crate::AppState;
use crate::session::{self, COOKIE, Session};

/// The console's templates, compiled once.
pub fn templates() -> Environment<'static> {
    let mut env = Environment::new();
    for (name, src) in [
        ("layout.html", include_str!("../templates/layout.html")),
        ("signin.html", include_str!("../templates/signin.html")),
        ("connect.html", include_str!("../templates/connect.html")),
        ("message.html", include_str!("../templates/message.html")),
    ] {
        // The templates are part of the binary; a syntax error is a build defect caught by
        // the console tests.
        env.add_template(name, src)
            .unwrap_or_else(|e| panic!("template {name}: {e}"));
    }
    env
}

pub(crate) fn render(
    state: &AppState,
    status: StatusCode,
    name: &str,
    ctx: minijinja::Value,
) -> Response {
    match state
        .templates
        .get_template(name)
        .and_then(|t| t.render(ctx))
    {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(template = name, error = %e, "rendering failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

pub(crate) fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn session_of(state: &AppState, headers: &HeaderMap) -> Option<(String, Session)> {
    let id = cookie_value(headers, COOKIE)?;
    state.sessions.get(id).map(|s| (id.to_owned(), s))
}

fn session_cookie(state: &AppState, id: &str, max_age: u64) -> HeaderValue {
    let secure = if state.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("sb_session=; Path=/; Max-Age=0"))
}

fn message(
    state: &AppState,
    status: StatusCode,
    session: Option<&Session>,
    heading: &str,
    error: Option<String>,
    paragraphs: Vec<String>,
) -> Response {
    render(
        state,
        status,
        "message.html",
        context! {
            title => heading, heading, error, paragraphs,
            signed_in => session.is_some(),
            csrf => session.map(|s| s.csrf.clone()),
        },
    )
}

/// `GET /`.
pub async fn index() -> Redirect {
    Redirect::to("/connect")
}

/// `GET /static/console.css`.
pub async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../static/console.css"),
    )
        .into_response()
}

/// `GET /signin`.
pub async fn signin_page(State(state): State<AppState>) -> Response {
    render(
        &state,
        StatusCode::OK,
        "signin.html",
        context! { title => "Sign in", signed_in => false },
    )
}

/// The sign-in form.
#[derive(Debug, Deserialize)]
pub struct SigninForm {
    token: String,
}

/// `POST /signin`.
pub async fn signin(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<SigninForm>,
) -> Response {
    let token = form.token.trim();
    let principal = if token.is_empty() || token.len() > 512 {
        None
    } else {
        match state
            .store
            .authenticate_admin_token(&SecretString::from(token.to_owned()))
            .await
        {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "sign-in lookup failed");
                return message(
                    &state,
                    StatusCode::SERVICE_UNAVAILABLE,
                    None,
                    "Sign-in is unavailable",
                    Some("The database could not be reached. Try again in a moment.".into()),
                    vec![],
                );
            }
        }
    };
    let Some(principal) = principal else {
        return render(
            &state,
            StatusCode::UNAUTHORIZED,
            "signin.html",
            context! {
                title => "Sign in", signed_in => false,
                error => "That admin token is not valid (it may have been revoked). Check it and try again.",
            },
        );
    };
    let previous = cookie_value(&headers, COOKIE);
    let id = state.sessions.sign_in(principal, previous);
    let mut response = Redirect::to("/connect").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie(&state, &id, session::SESSION_TTL.as_secs()),
    );
    response
}

/// A form that only carries the CSRF token.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

/// `POST /signout`.
pub async fn signout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    match session_of(&state, &headers) {
        Some((id, s)) if s.csrf_ok(&form.csrf) => {
            state.sessions.sign_out(&id);
            let mut r = Redirect::to("/signin").into_response();
            r.headers_mut()
                .insert(header::SET_COOKIE, session_cookie(&state, "", 0));
            r
        }
        Some((_, s)) => message(
            &state,
            StatusCode::FORBIDDEN,
            Some(&s),
            "Form expired",
            Some("This form is out of date. Reload the page and try again.".into()),
            vec![],
        ),
        None => Redirect::to("/signin").into_response(),
    }
}

#[derive(Debug, Serialize)]
struct ConnectionRow {
    id: String,
    platform: String,
    platform_name: &'static str,
    display_name: String,
    account: String,
    is_service_account: bool,
    health_text: &'static str,
    health_class: &'static str,
}

pub(crate) fn platform_name(p: PlatformKind) -> &'static str {
    match p {
        PlatformKind::Msteams => "Microsoft Teams",
        PlatformKind::Slack => "Slack",
        _ => "Other",
    }
}

fn health_words(h: ConnectionHealth) -> (&'static str, &'static str) {
    match h {
        ConnectionHealth::Ok => ("Healthy", "ok"),
        ConnectionHealth::NeedsReauth => ("Reconnect needed", "bad"),
        ConnectionHealth::MissingRoles => ("Missing roles", "bad"),
        ConnectionHealth::MissingScopes => ("Missing permissions", "bad"),
        ConnectionHealth::Degraded => ("Degraded", "warn"),
        ConnectionHealth::Disabled => ("Disabled", "warn"),
        _ => ("Unknown", "warn"),
    }
}

/// `GET /connect`: the Connect Platforms page.
pub async fn connect_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some((_, session)) = session_of(&state, &headers) else {
        return Redirect::to("/signin").into_response();
    };
    let connections = match state.store.list_connections(&session.principal.org).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "listing connections failed");
            return message(
                &state,
                StatusCode::SERVICE_UNAVAILABLE,
                Some(&session),
                "Connect Platforms",
                Some("The database could not be reached. Try again in a moment.".into()),
                vec![],
            );
        }
    };
    let mut platforms: Vec<PlatformKind> = connections.iter().map(|c| c.platform).collect();
    platforms.sort();
    platforms.dedup();
    let rows: Vec<ConnectionRow> = connections
        .into_iter()
        .map(|c| {
            let (health_text, health_class) = health_words(c.health);
            ConnectionRow {
                id: c.id.to_string(),
                platform: c.platform.to_string(),
                platform_name: platform_name(c.platform),
                display_name: c.display_name,
                account: c.account.display_name,
                is_service_account: c.account.is_service_account,
                health_text,
                health_class,
            }
        })
        .collect();
    render(
        &state,
        StatusCode::OK,
        "connect.html",
        context! {
            title => "Connect Platforms", section => "connect", signed_in => true,
            csrf => session.csrf, connections => rows, platforms_connected => platforms.len(),
        },
    )
}

fn parse_platform(s: &str) -> Option<PlatformKind> {
    s.parse().ok()
}

pub(crate) fn redirect_uri(state: &AppState, platform: PlatformKind) -> String {
    format!(
        "{}/connect/{platform}/callback",
        state.public_url.trim_end_matches('/')
    )
}

/// `GET /connect/{platform}/start`: redirects to the provider with a fresh `state` (and
/// PKCE for Microsoft).
pub async fn connect_start(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(platform): Path<String>,
    Query(start): Query<StartQuery>,
) -> Response {
    let Some((sid, session)) = session_of(&state, &headers) else {
        return Redirect::to("/signin").into_response();
    };
    let Some(kind) = parse_platform(&platform) else {
        return message(
            &state,
            StatusCode::NOT_FOUND,
            Some(&session),
            "Unknown platform",
            Some(format!("Switchboard does not connect to {platform:?}.")),
            vec![],
        );
    };
    let Some(authorizer) = state.authorizer(kind) else {
        return message(
            &state,
            StatusCode::NOT_FOUND,
            Some(&session),
            "Not configured",
            Some(format!(
                "{} is not configured on this server: add its app registration to switchboard.toml.",
                platform_name(kind)
            )),
            vec![],
        );
    };
    // "Move to a service account": the connection must be this org's, on this platform.
    let migrate = match start.migrate.as_deref() {
        None => None,
        Some(id) => {
            let found = match ConnectionId::new(id) {
                Ok(id) => state
                    .store
                    .get_connection(&session.principal.org, &id)
                    .await
                    .ok()
                    .flatten()
                    .filter(|c| c.platform == kind),
                Err(_) => None,
            };
            match found {
                Some(c) => Some(c.id),
                None => {
                    return message(
                        &state,
                        StatusCode::NOT_FOUND,
                        Some(&session),
                        "Unknown connection",
                        Some(format!(
                            "There is no {} connection {id:?} to move.",
                            platform_name(kind)
                        )),
                        vec![],
                    );
                }
            }
        }
    };
    let verifier = authorizer
        .uses_pkce()
        .then(|| SecretString::from(session::random_token()));
    let challenge = verifier.as_ref().map(session::pkce_challenge);
    let oauth_state = state.sessions.begin_auth_for(&sid, kind, verifier, migrate);
    match authorizer.authorize_url(
        &redirect_uri(&state, kind),
        &oauth_state,
        challenge.as_deref(),
    ) {
        Ok(url) => (StatusCode::FOUND, [(header::LOCATION, url)]).into_response(),
        Err(e) => message(
            &state,
            StatusCode::INTERNAL_SERVER_ERROR,
            Some(&session),
            "Cannot start connecting",
            Some(e.to_string()),
            vec![],
        ),
    }
}

/// The cookie binding a platform sign-in's `state` to the browser before any session exists.
const PRE_COOKIE: &str = "sb_signin";

/// `GET /signin/{platform}/start`: sign in with the account that connected the platform
/// (its service account, or the admin who consented): OAuth as for connecting, bound to a
/// pre-sign-in cookie; the callback signs in to the organization of the connection whose
/// tenant and account match.
pub async fn signin_start(State(state): State<AppState>, Path(platform): Path<String>) -> Response {
    let Some(kind) = parse_platform(&platform) else {
        return message(
            &state,
            StatusCode::NOT_FOUND,
            None,
            "Unknown platform",
            Some(format!("Switchboard does not sign in with {platform:?}.")),
            vec![],
        );
    };
    let Some(authorizer) = state.authorizer(kind) else {
        return message(
            &state,
            StatusCode::NOT_FOUND,
            None,
            "Not configured",
            Some(format!(
                "{} is not configured on this server; sign in with an admin token.",
                platform_name(kind)
            )),
            vec![],
        );
    };
    let browser = session::random_token();
    let verifier = authorizer
        .uses_pkce()
        .then(|| SecretString::from(session::random_token()));
    let challenge = verifier.as_ref().map(session::pkce_challenge);
    let oauth_state = state.sessions.begin_signin(&browser, kind, verifier);
    match authorizer.authorize_url(
        &redirect_uri(&state, kind),
        &oauth_state,
        challenge.as_deref(),
    ) {
        Ok(url) => {
            let secure = if state.public_url.starts_with("https://") {
                "; Secure"
            } else {
                ""
            };
            let cookie = HeaderValue::from_str(&format!(
                "{PRE_COOKIE}={browser}; Path=/; HttpOnly; SameSite=Lax; Max-Age=600{secure}"
            ))
            .unwrap_or_else(|_| HeaderValue::from_static("sb_signin=; Path=/; Max-Age=0"));
            let mut r = (StatusCode::FOUND, [(header::LOCATION, url)]).into_response();
            r.headers_mut().insert(header::SET_COOKIE, cookie);
            r
        }
        Err(e) => message(
            &state,
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
            "Cannot start signing in",
            Some(e.to_string()),
            vec![],
        ),
    }
}

/// Finishes a platform sign-in: the organization whose connection on this tenant acts as
/// the account that just signed in.
async fn signin_callback(
    state: &AppState,
    headers: &HeaderMap,
    kind: PlatformKind,
    authorized: &switchboard_core::Authorized,
) -> Response {
    let mut found = None;
    match state.store.list_orgs().await {
        Ok(orgs) => {
            for org in orgs {
                let Ok(conns) = state.store.list_connections(&org.id).await else {
                    continue;
                };
                if conns.iter().any(|c| {
                    c.platform == kind
                        && c.tenant == authorized.tenant
                        && c.account.user_id == authorized.account.user_id
                }) {
                    found = Some(org.id);
                    break;
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "sign-in lookup failed");
        }
    }
    let Some(org) = found else {
        return message(
            state,
            StatusCode::FORBIDDEN,
            None,
            "This account administers no organization here",
            Some(format!(
                "{} signed in as {}, but no connected platform acts as that account. Sign in with an admin token, or with the account that connected {}.",
                platform_name(kind),
                authorized.account.display_name,
                platform_name(kind)
            )),
            vec![],
        );
    };
    let principal = switchboard_core::AdminPrincipal {
        org,
        name: format!("{kind}:{}", authorized.account.display_name),
    };
    let previous = cookie_value(headers, COOKIE);
    let id = state.sessions.sign_in(principal, previous);
    let mut response = Redirect::to("/connect").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie(state, &id, session::SESSION_TTL.as_secs()),
    );
    response.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static("sb_signin=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"),
    );
    response
}

/// The query of `GET /connect/{platform}/start`.
#[derive(Debug, Deserialize)]
pub struct StartQuery {
    /// The connection to move onto the account that signs in ("Move to a service account").
    migrate: Option<String>,
}

/// The provider's answer.
#[derive(Debug, Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Stores rotated credentials of one connection, sealed ([`CredentialsSink`] over the store).
#[derive(Clone)]
pub struct StoreCredentials {
    store: Arc<dyn Store>,
    org: OrgId,
    connection: ConnectionId,
}

impl std::fmt::Debug for StoreCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreCredentials")
            .field("connection", &self.connection)
            .finish()
    }
}

impl StoreCredentials {
    /// For `connection` of `org`.
    pub fn new(store: Arc<dyn Store>, org: OrgId, connection: ConnectionId) -> Self {
        StoreCredentials {
            store,
            org,
            connection,
        }
    }
}

#[async_trait::async_trait]
impl CredentialsSink for StoreCredentials {
    async fn persist(&self, credentials: &Credentials) -> CoreResult<()> {
        self.store
            .put_credentials(&self.org, &self.connection, credentials)
            .await
    }
}

/// Stores a new connection for `authorized` (or refreshes the credentials of the org's
/// existing connection of the same tenant), audited.
pub async fn store_connection(
    store: &Arc<dyn Store>,
    org: &OrgId,
    actor: &str,
    platform: PlatformKind,
    authorized: &Authorized,
) -> CoreResult<Connection> {
    let existing = store
        .list_connections(org)
        .await?
        .into_iter()
        .find(|c| c.platform == platform && c.tenant == authorized.tenant);
    let connection = match existing {
        Some(mut c) => {
            c.account = authorized.account.clone();
            c.display_name = authorized.display_name.clone();
            c
        }
        None => Connection {
            id: ConnectionId::generate(),
            org: org.clone(),
            platform,
            tenant: authorized.tenant.clone(),
            enterprise: authorized.enterprise.clone(),
            display_name: authorized.display_name.clone(),
            account: authorized.account.clone(),
            health: ConnectionHealth::Ok,
            created_at: OffsetDateTime::now_utc(),
        },
    };
    store.put_connection(&connection).await?;
    store
        .put_credentials(org, &connection.id, &authorized.credentials)
        .await?;
    store
        .append_audit(
            org,
            NewAuditEntry {
                actor: Actor::Admin {
                    name: actor.to_owned(),
                },
                action: "connection.connected".into(),
                target: connection.id.to_string(),
                details: serde_json::json!({
                    "platform": platform.to_string(),
                    "tenant": connection.tenant.to_string(),
                    "account": connection.account.display_name,
                    "service_account": connection.account.is_service_account,
                }),
            },
        )
        .await?;
    Ok(connection)
}

/// `GET /connect/{platform}/callback`: a bad, reused, expired or foreign `state` gets 400
/// and nothing is stored. The end of a migration too (when the `state` carries one): the
/// state's [`ConnectionPool`](crate::pool::ConnectionPool) (the relay's, see
/// [`AppState::with_pool`]) forgets the moved connection.
pub async fn connect_callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(platform): Path<String>,
    Query(cb): Query<Callback>,
) -> Response {
    let session = session_of(&state, &headers);
    let Some(kind) = parse_platform(&platform) else {
        return message(
            &state,
            StatusCode::NOT_FOUND,
            session.as_ref().map(|(_, s)| s),
            "Unknown platform",
            None,
            vec![],
        );
    };
    // An end user's "link my account" (no session): its states are the link page's own.
    if let Some(r) = crate::console_linkme::callback(
        &state,
        &headers,
        kind,
        cb.state.as_deref(),
        cb.code.as_deref(),
        cb.error_description.as_deref().or(cb.error.as_deref()),
    )
    .await
    {
        return r;
    }
    // A platform sign-in has no session yet: its state is bound to the pre-sign-in cookie.
    if session.is_none()
        && let (Some(st), Some(browser)) = (cb.state.as_deref(), cookie_value(&headers, PRE_COOKIE))
    {
        let Some(pending) = state.sessions.finish_auth(st, Some(browser), kind) else {
            return message(
                &state,
                StatusCode::BAD_REQUEST,
                None,
                "This sign-in link is not valid",
                Some("It was already used, has expired (after 10 minutes), or was started in another browser.".into()),
                vec!["Go back to Sign in and start again.".into()],
            );
        };
        let (Some(code), Some(authorizer), true) =
            (cb.code, state.authorizer(kind), pending.signin)
        else {
            return message(
                &state,
                StatusCode::BAD_REQUEST,
                None,
                "Signing in was cancelled",
                cb.error_description.or(cb.error),
                vec![],
            );
        };
        return match authorizer
            .complete(
                &SecretString::from(code),
                &redirect_uri(&state, kind),
                pending.verifier.as_ref(),
            )
            .await
        {
            Ok(a) => signin_callback(&state, &headers, kind, &a).await,
            Err(e) => message(
                &state,
                StatusCode::BAD_GATEWAY,
                None,
                "Signing in failed",
                Some(e.to_string()),
                vec![],
            ),
        };
    }
    let pending = cb.state.as_deref().and_then(|st| {
        state
            .sessions
            .finish_auth(st, session.as_ref().map(|(id, _)| id.as_str()), kind)
    });
    let (Some(pending), Some((_, session))) = (pending, session) else {
        return message(
            &state,
            StatusCode::BAD_REQUEST,
            None,
            "This sign-in link is not valid",
            Some("It was already used, has expired (after 10 minutes), or was started in another browser. Nothing was connected.".into()),
            vec!["Go back to Connect Platforms and start again.".into()],
        );
    };
    if let Some(err) = cb.error {
        let why = cb.error_description.unwrap_or_default();
        return message(
            &state,
            StatusCode::BAD_REQUEST,
            Some(&session),
            "Connecting was cancelled",
            Some(format!("{} said: {err}. {why}", platform_name(kind))),
            vec!["Nothing was connected. Start again when ready.".into()],
        );
    }
    let (Some(code), Some(authorizer)) = (cb.code, state.authorizer(kind)) else {
        return message(
            &state,
            StatusCode::BAD_REQUEST,
            Some(&session),
            "This sign-in link is not valid",
            Some("The provider sent no authorization code. Nothing was connected.".into()),
            vec![],
        );
    };
    let code = SecretString::from(code);
    let authorized = match authorizer
        .complete(
            &code,
            &redirect_uri(&state, kind),
            pending.verifier.as_ref(),
        )
        .await
    {
        Ok(a) => a,
        Err(e) => {
            return message(
                &state,
                StatusCode::BAD_GATEWAY,
                Some(&session),
                "Connecting failed",
                Some(e.to_string()),
                vec!["Nothing was connected. Start again.".into()],
            );
        }
    };
    let org = session.principal.org.clone();
    if let Some(id) = &pending.migrate {
        let pool = state.pool();
        return migrate_callback(&state, Some(pool.as_ref()), &session, kind, id, &authorized)
            .await;
    }
    let connection = match store_connection(
        &state.store,
        &org,
        &session.principal.name,
        kind,
        &authorized,
    )
    .await
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "storing a connection failed");
            return message(
                &state,
                StatusCode::SERVICE_UNAVAILABLE,
                Some(&session),
                "Connecting failed",
                Some("The connection could not be stored. Try again in a moment.".into()),
                vec![],
            );
        }
    };
    // Webhook routing learns the (possibly new) connection of this workspace again.
    if let Ok(team) = switchboard_core::TeamId::new(connection.tenant.as_str()) {
        state.workspace_routes.write().remove(&team);
    }
    // Verify the account: every missing role or scope is shown with its fix, and the
    // connection keeps the health the report implies (never refused silently).
    let mut checks = Vec::new();
    let mut health = ConnectionHealth::Ok;
    if let Some(connector) = state.connector(kind) {
        let sink = Arc::new(StoreCredentials::new(
            state.store.clone(),
            org.clone(),
            connection.id.clone(),
        ));
        match connector
            .open(&connection, authorized.credentials.clone(), sink)
            .await
        {
            Ok(live) => match live.account.verify(VerifyOptions::default()).await {
                Ok(report) => {
                    health = report.health();
                    checks = report
                        .checks
                        .iter()
                        .map(|c| context! { name => c.name, ok => c.ok, fix => c.fix })
                        .collect();
                }
                Err(e) => {
                    health = ConnectionHealth::Degraded;
                    checks.push(
                        context! { name => "account check", ok => false, fix => e.to_string() },
                    );
                }
            },
            Err(e) => {
                health = ConnectionHealth::Degraded;
                checks.push(context! { name => "connection", ok => false, fix => e.to_string() });
            }
        }
    }
    if let Err(e) = state
        .store
        .set_connection_health(&org, &connection.id, health)
        .await
    {
        tracing::error!(error = %e, "recording health failed");
    }
    let heading = if health == ConnectionHealth::Ok {
        format!("{} connected", platform_name(kind))
    } else {
        format!("{} connected, with problems to fix", platform_name(kind))
    };
    render(
        &state,
        StatusCode::OK,
        "message.html",
        context! {
            title => heading.clone(), heading, signed_in => true, csrf => session.csrf,
            paragraphs => vec![format!(
                "{} as {}.", connection.display_name, connection.account.display_name
            )],
            checks,
            next_href => format!("/connect/{kind}/{}/teams", connection.id),
            next_label => if kind == PlatformKind::Msteams { "Choose teams to import" } else { "Import the workspace" },
        },
    )
}

/// The end of "Move to a service account": the signed-in account is verified and the
/// connection moved onto it ([`crate::migrate::migrate`]), or the page says why not and
/// nothing changes.
async fn migrate_callback(
    state: &AppState,
    pool: Option<&crate::pool::ConnectionPool>,
    session: &Session,
    kind: PlatformKind,
    id: &ConnectionId,
    authorized: &Authorized,
) -> Response {
    let Some(connector) = state.connector(kind) else {
        return message(
            state,
            StatusCode::NOT_FOUND,
            Some(session),
            "Not configured",
            Some(format!(
                "{} is not configured on this server.",
                platform_name(kind)
            )),
            vec![],
        );
    };
    let request = crate::migrate::MigrationRequest {
        org: &session.principal.org,
        connection: id,
        authorized,
        actor: Actor::Admin {
            name: session.principal.name.clone(),
        },
        options: VerifyOptions::default(),
    };
    match crate::migrate::migrate(&state.store, connector.as_ref(), pool, request).await {
        Ok(done) => {
            // The live feeds are made again under the new account (in the background: each
            // channel's catch-up may wait on rate limits).
            let feeds_note = match crate::feeds::FeedKeeper::new(
                state.store.clone(),
                state.pool(),
                &state.public_url,
            ) {
                Ok(keeper) if kind == PlatformKind::Msteams => {
                    let (org, id, previous) = (
                        session.principal.org.clone(),
                        id.clone(),
                        done.previous_feeds.clone(),
                    );
                    tokio::spawn(async move {
                        if let Err(e) = keeper.resubscribe(&org, &id, previous.as_deref()).await {
                            tracing::warn!(connection = %id, error = %e, "could not move the subscriptions; the feed keeper's passes retry");
                        }
                    });
                    Some("The channels' live feeds are being subscribed again under the service account, with a catch-up of anything posted meanwhile.".to_owned())
                }
                _ => None,
            };
            let heading = format!("{} moved to a service account", platform_name(kind));
            render(
                state,
                StatusCode::OK,
                "message.html",
                context! {
                    title => heading.clone(), heading, signed_in => true, csrf => session.csrf,
                    paragraphs => vec![
                        format!(
                            "{} now acts as {} instead of {}.",
                            done.connection.display_name,
                            done.connection.account.display_name,
                            done.previous.display_name
                        ),
                        "Universal channels keep working: nothing was re-linked, and queued messages go out through the service account.".to_owned(),
                    ].into_iter()
                        .chain(crate::migrate::old_copies_note(&done))
                        .chain(feeds_note)
                        .collect::<Vec<_>>(),
                    checks => done.report.checks.iter()
                        .map(|c| context! { name => c.name, ok => c.ok, fix => c.fix })
                        .collect::<Vec<_>>(),
                },
            )
        }
        Err(e) => {
            let status = match e.kind() {
                switchboard_core::ErrorKind::NotFound => StatusCode::NOT_FOUND,
                switchboard_core::ErrorKind::InvalidInput
                | switchboard_core::ErrorKind::Forbidden => StatusCode::UNPROCESSABLE_ENTITY,
                switchboard_core::ErrorKind::Storage => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::BAD_GATEWAY,
            };
            message(
                state,
                status,
                Some(session),
                "The connection was not moved",
                Some(e.to_string()),
                vec!["Nothing was changed: the connection still uses its current account.".into()],
            )
        }
    }
}
