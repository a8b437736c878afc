//! The console's Universal Channels, Users, Audit Log and Settings pages. Server-rendered
//! (minijinja, auto-escaped), no JavaScript; every form carries the session's CSRF token and
//! every change is audited through the same operations as the admin API
//! ([`crate::api_links`]).
//!
//! Linking is two steps: **Check** shows the capability report of the chosen channels
//! (nothing changes), then **Link** makes the universal channel (refused while the report has
//! a blocker).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use minijinja::{Environment, Value, context};
use serde::{Deserialize, Serialize};
use switchboard_core::{
    Actor, ChannelRef, ErrorKind, MAX_PAGE_SIZE, NewAuditEntry, PlatformKind, StoredChannel, UserId,
};

use crate::AppState;
use crate::api_links::{self, parse_identity, parse_refs};
use crate::capability::{self, CapabilityReport};
use crate::identities;
use crate::session::{COOKIE, Session};

/// Rows per page of the audit log and of the identity map's lists.
pub const PAGE: usize = 50;

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    for (name, src) in [
        ("layout.html", include_str!("../templates/layout.html")),
        (
            "universal_channels.html",
            include_str!("../templates/universal_channels.html"),
        ),
        ("users.html", include_str!("../templates/users.html")),
        ("audit.html", include_str!("../templates/audit.html")),
        ("settings.html", include_str!("../templates/settings.html")),
    ] {
        // The templates are part of the binary; a syntax error is a build defect caught by
        // the console tests.
        env.add_template(name, src)
            .unwrap_or_else(|e| panic!("template {name}: {e}"));
    }
    env
});

fn render(status: StatusCode, name: &str, ctx: Value) -> Response {
    match TEMPLATES.get_template(name).and_then(|t| t.render(ctx)) {
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

fn session(state: &AppState, headers: &HeaderMap) -> Option<Session> {
    let id = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)?;
    state.sessions.get(id)
}

fn signin() -> Response {
    Redirect::to("/signin").into_response()
}

fn unavailable(e: &switchboard_core::Error) -> String {
    tracing::error!(error = %e, "console read failed");
    "The database could not be reached. Try again in a moment.".to_owned()
}

/// A form's fields, repeated keys kept (`endpoint=…&endpoint=…`).
#[derive(Debug, Default)]
pub struct Fields(Vec<(String, String)>);

impl Fields {
    fn one(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, v)| k == key && !v.trim().is_empty())
            .map(|(_, v)| v.trim().to_owned())
            .collect()
    }
    fn csrf_ok(&self, s: &Session) -> bool {
        self.one("csrf").is_some_and(|c| s.csrf_ok(c))
    }
}

fn fields(body: &str) -> Fields {
    Fields(serde_urlencoded::from_str(body).unwrap_or_default())
}

fn expired(section: &str, s: &Session) -> Response {
    render(
        StatusCode::FORBIDDEN,
        "universal_channels.html",
        context! {
            title => "Form expired", section, signed_in => true, csrf => s.csrf,
            fatal => "This form is out of date (or was not sent from this console). Reload the page and try again; nothing was changed.",
        },
    )
}

fn platform_name(p: PlatformKind) -> &'static str {
    match p {
        PlatformKind::Msteams => "Microsoft Teams",
        PlatformKind::Slack => "Slack",
        _ => "Other",
    }
}

// ----- Universal Channels -----------------------------------------------------------------

#[derive(Debug, Serialize)]
struct Option_ {
    value: String,
    label: String,
    selected: bool,
}

#[derive(Debug, Serialize)]
struct Picker {
    platform: String,
    platform_name: &'static str,
    options: Vec<Option_>,
}

#[derive(Debug, Serialize)]
struct EndpointRow {
    reference: String,
    platform: String,
    platform_name: &'static str,
    label: String,
}

#[derive(Debug, Serialize)]
struct ChannelRow {
    id: String,
    name: String,
    notices: bool,
    endpoints: Vec<EndpointRow>,
}

async fn all_channels(
    state: &AppState,
    org: &switchboard_core::OrgId,
) -> switchboard_core::Result<Vec<StoredChannel>> {
    let mut list: Vec<StoredChannel> = Vec::new();
    loop {
        let after = list.last().map(|c| c.reference.clone());
        let page = state
            .store
            .list_channels(org, None, after.as_ref(), MAX_PAGE_SIZE)
            .await?;
        let done = page.len() < MAX_PAGE_SIZE;
        list.extend(page);
        if done {
            return Ok(list);
        }
    }
}

/// What the Universal Channels page shows besides the list: the form's state.
#[derive(Debug, Default)]
struct FormState {
    name: String,
    endpoints: Vec<String>,
    notices: bool,
    report: Option<CapabilityReport>,
    error: Option<String>,
    notice: Option<String>,
}

async fn channels_page(
    state: &AppState,
    s: &Session,
    status: StatusCode,
    form: FormState,
) -> Response {
    let org = &s.principal.org;
    let loaded = async {
        let connections = state.store.list_connections(org).await?;
        let universal = state.store.list_universal_channels(org).await?;
        let channels = all_channels(state, org).await?;
        Ok::<_, switchboard_core::Error>((connections, universal, channels))
    }
    .await;
    let (connections, universal, channels) = match loaded {
        Ok(x) => x,
        Err(e) => {
            return render(
                StatusCode::SERVICE_UNAVAILABLE,
                "universal_channels.html",
                context! { title => "Universal Channels", section => "channels", signed_in => true,
                csrf => s.csrf, fatal => unavailable(&e) },
            );
        }
    };
    let mut platforms: Vec<PlatformKind> = connections.iter().map(|c| c.platform).collect();
    platforms.sort();
    platforms.dedup();
    let team_names: BTreeMap<(String, String), String> = {
        let mut m = BTreeMap::new();
        for c in &connections {
            if let Ok(teams) = state.store.list_teams(org, &c.id).await {
                for t in teams {
                    m.insert((c.platform.to_string(), t.id.to_string()), t.name);
                }
            }
        }
        m
    };
    let label = |c: &StoredChannel| -> String {
        let team = team_names
            .get(&(
                c.reference.platform.to_string(),
                c.reference.team.to_string(),
            ))
            .cloned()
            .unwrap_or_else(|| c.reference.team.to_string());
        let kind = match c.channel.kind {
            switchboard_core::ChannelKind::Private => " (private)",
            switchboard_core::ChannelKind::Shared => " (shared)",
            switchboard_core::ChannelKind::Standard => "",
        };
        format!("{team} › #{}{kind}", c.channel.name)
    };
    let by_ref: BTreeMap<String, &StoredChannel> = channels
        .iter()
        .map(|c| (c.reference.to_string(), c))
        .collect();
    let linked: std::collections::HashSet<String> = universal
        .iter()
        .flat_map(|u| u.endpoints().iter().map(|e| e.channel.to_string()))
        .collect();
    // Each platform's picker shows the first chosen channel of that platform; any further
    // choice goes to the optional third picker.
    let first_of = |p: PlatformKind| -> Option<&String> {
        form.endpoints
            .iter()
            .find(|e| e.starts_with(&format!("{}:", p.as_str())))
    };
    let pickers: Vec<Picker> = platforms
        .iter()
        .map(|p| Picker {
            platform: p.to_string(),
            platform_name: platform_name(*p),
            options: channels
                .iter()
                .filter(|c| c.reference.platform == *p && !c.removed)
                .filter(|c| !linked.contains(&c.reference.to_string()))
                .map(|c| {
                    let value = c.reference.to_string();
                    Option_ {
                        selected: first_of(*p) == Some(&value),
                        label: label(c),
                        value,
                    }
                })
                .collect(),
        })
        .collect();
    // A third channel, any platform: chosen beyond the first pick of each platform.
    let first_picks: Vec<&str> = pickers
        .iter()
        .filter_map(|p| {
            p.options
                .iter()
                .find(|o| o.selected)
                .map(|o| o.value.as_str())
        })
        .collect();
    let extra: Vec<&String> = form
        .endpoints
        .iter()
        .filter(|e| !first_picks.contains(&e.as_str()))
        .collect();
    let all_options: Vec<Option_> = pickers
        .iter()
        .flat_map(|p| {
            p.options.iter().map(|o| Option_ {
                value: o.value.clone(),
                label: format!("{}: {}", p.platform_name, o.label),
                selected: extra.contains(&&o.value),
            })
        })
        .collect();
    let extra_chosen = !extra.is_empty();
    let rows: Vec<ChannelRow> = universal
        .iter()
        .map(|u| ChannelRow {
            id: u.id().to_string(),
            name: u.name().to_owned(),
            notices: u.relay_membership_notices,
            endpoints: u
                .endpoints()
                .iter()
                .map(|e| EndpointRow {
                    reference: e.channel.to_string(),
                    platform: e.channel.platform.to_string(),
                    platform_name: platform_name(e.channel.platform),
                    label: by_ref
                        .get(&e.channel.to_string())
                        .map(|c| label(c))
                        .unwrap_or_else(|| e.channel.to_string()),
                })
                .collect(),
        })
        .collect();
    let connected_names: Vec<&str> = platforms.iter().map(|p| platform_name(*p)).collect();
    let labels: BTreeMap<String, String> = form
        .report
        .iter()
        .flat_map(|r| r.endpoints.iter())
        .filter_map(|e| {
            by_ref
                .get(&e.reference)
                .map(|c| (e.reference.clone(), label(c)))
        })
        .collect();
    render(
        status,
        "universal_channels.html",
        context! {
            title => "Universal Channels", section => "channels", signed_in => true,
            csrf => s.csrf, channels => rows, pickers, all_options, extra_chosen,
            platforms_connected => platforms.len(), connected_names,
            name => form.name, notices => form.notices, chosen => form.endpoints,
            report => form.report, labels, error => form.error, notice => form.notice,
        },
    )
}

/// `?created=` / `?removed=` after a redirect.
#[derive(Debug, Deserialize)]
pub struct Flash {
    created: Option<String>,
    removed: Option<String>,
}

/// `GET /universal-channels`.
pub async fn universal_channels(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(flash): Query<Flash>,
) -> Response {
    let Some(s) = session(&state, &headers) else {
        return signin();
    };
    let notice = match (flash.created, flash.removed) {
        (Some(name), _) => Some(format!(
            "Linked {name:?}: messages now flow between its channels."
        )),
        (_, Some(name)) => Some(format!("Unlinked {name:?}: its channels no longer relay.")),
        _ => None,
    };
    channels_page(
        &state,
        &s,
        StatusCode::OK,
        FormState {
            notice,
            ..FormState::default()
        },
    )
    .await
}

fn form_state(f: &Fields) -> FormState {
    FormState {
        name: f.one("name").unwrap_or_default().trim().to_owned(),
        endpoints: f.all("endpoint"),
        notices: f.one("notices").is_some_and(|v| v == "on" || v == "true"),
        ..FormState::default()
    }
}

/// `POST /universal-channels/check`: the capability report of the chosen channels; changes
/// nothing.
pub async fn check(State(state): State<AppState>, headers: HeaderMap, body: String) -> Response {
    let Some(s) = session(&state, &headers) else {
        return signin();
    };
    let f = fields(&body);
    if !f.csrf_ok(&s) {
        return expired("channels", &s);
    }
    let mut form = form_state(&f);
    let refs = match parse_refs(&form.endpoints) {
        Ok(r) => r,
        Err(e) => {
            form.error = Some(e.message().to_owned());
            return channels_page(&state, &s, StatusCode::UNPROCESSABLE_ENTITY, form).await;
        }
    };
    match capability::report(state.store.as_ref(), &s.principal.org, &refs).await {
        Ok(r) => {
            form.report = Some(r);
            channels_page(&state, &s, StatusCode::OK, form).await
        }
        Err(e) => {
            form.error = Some(unavailable(&e));
            channels_page(&state, &s, StatusCode::SERVICE_UNAVAILABLE, form).await
        }
    }
}

/// `POST /universal-channels`: links the chosen channels (refused while the capability
/// report has a blocker).
pub async fn create(State(state): State<AppState>, headers: HeaderMap, body: String) -> Response {
    let Some(s) = session(&state, &headers) else {
        return signin();
    };
    let f = fields(&body);
    if !f.csrf_ok(&s) {
        return expired("channels", &s);
    }
    let mut form = form_state(&f);
    let refs: Vec<ChannelRef> = match parse_refs(&form.endpoints) {
        Ok(r) => r,
        Err(e) => {
            form.error = Some(e.message().to_owned());
            return channels_page(&state, &s, StatusCode::UNPROCESSABLE_ENTITY, form).await;
        }
    };
    match api_links::link_channels(
        state.store.as_ref(),
        &s.principal.org,
        &s.principal.name,
        &form.name,
        &refs,
        form.notices,
    )
    .await
    {
        Ok(linked) => {
            state.links_changed.notify_one();
            let to = format!(
                "/universal-channels?created={}",
                urlencode(linked.channel.name())
            );
            Redirect::to(&to).into_response()
        }
        Err(e) => {
            let status = match e.kind() {
                ErrorKind::Conflict => StatusCode::CONFLICT,
                ErrorKind::InvalidInput => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            form.error = Some(if status == StatusCode::SERVICE_UNAVAILABLE {
                unavailable(&e)
            } else {
                format!("Nothing was linked: {}", e.message())
            });
            form.report = capability::report(state.store.as_ref(), &s.principal.org, &refs)
                .await
                .ok();
            channels_page(&state, &s, status, form).await
        }
    }
}

fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("x", s)])
        .map(|v| v.trim_start_matches("x=").to_owned())
        .unwrap_or_default()
}

/// `POST /universal-channels/{id}/delete`: unlinks.
pub async fn delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: String,
) -> Response {
    let Some(s) = session(&state, &headers) else {
        return signin();
    };
    let f = fields(&body);
    if !f.csrf_ok(&s) {
        return expired("channels", &s);
    }
    match api_links::unlink_channel(
        state.store.as_ref(),
        &s.principal.org,
        &s.principal.name,
        &id,
    )
    .await
    {
        Ok(channel) => {
            state.links_changed.notify_one();
            Redirect::to(&format!(
                "/universal-channels?removed={}",
                urlencode(channel.name())
            ))
            .into_response()
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let form = FormState {
                error: Some("That universal channel does not exist (it may already be unlinked). Nothing was changed.".into()),
                ..FormState::default()
            };
            channels_page(&state, &s, StatusCode::NOT_FOUND, form).await
        }
        Err(e) => {
            let form = FormState {
                error: Some(unavailable(&e)),
                ..FormState::default()
            };
            channels_page(&state, &s, StatusCode::SERVICE_UNAVAILABLE, form).await
        }
    }
}

// ----- Users ------------------------------------------------------------------------------

/// Paging of the Users page.
#[derive(Debug, Deserialize)]
pub struct UsersQuery {
    #[serde(default)]
    page: usize,
    #[serde(default)]
    unmatched_page: usize,
    linked: Option<String>,
    unlinked: Option<String>,
    separated: Option<String>,
}

fn users_ctx_page<T: Serialize>(list: &[T], page: usize) -> (Vec<&T>, usize) {
    let pages = list.len().div_ceil(PAGE).max(1);
    let page = page.min(pages - 1);
    (list.iter().skip(page * PAGE).take(PAGE).collect(), pages)
}

async fn users_page(
    state: &AppState,
    s: &Session,
    status: StatusCode,
    q: UsersQuery,
    error: Option<String>,
) -> Response {
    let map = match identities::load(state.store.as_ref(), &s.principal.org).await {
        Ok(m) => m,
        Err(e) => {
            return render(
                StatusCode::SERVICE_UNAVAILABLE,
                "users.html",
                context! { title => "Users", section => "users", signed_in => true,
                csrf => s.csrf, fatal => unavailable(&e) },
            );
        }
    };
    let overrides: Vec<_> = map
        .pairs
        .iter()
        .filter(|p| p.matched_by == identities::MatchedBy::Override)
        .collect();
    let emails: Vec<_> = map
        .pairs
        .iter()
        .filter(|p| p.matched_by == identities::MatchedBy::Email)
        .collect();
    // Teams users who linked their own account ("link my account"): a badge in the pairs.
    let linked: Vec<String> = state
        .store
        .list_linked_accounts(&s.principal.org, Some(PlatformKind::Msteams))
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|a| a.user.as_str().to_owned())
        .collect();
    let (email_page, email_pages) = users_ctx_page(&emails, q.page);
    let (unmatched_page, unmatched_pages) = users_ctx_page(&map.unmatched, q.unmatched_page);
    let notice = match (q.linked, q.unlinked, q.separated) {
        (Some(w), _, _) => Some(format!(
            "Linked {w}: mentions and identities now follow the override."
        )),
        (_, Some(w), _) => Some(format!(
            "Removed the overrides of {w}: email matching applies to it again."
        )),
        (_, _, Some(w)) => Some(format!(
            "Separated {w}: they are no longer matched by email."
        )),
        _ => None,
    };
    render(
        status,
        "users.html",
        context! {
            title => "Users", section => "users", signed_in => true, csrf => s.csrf,
            users => map.users, conflicts => map.conflicts, overrides,
            separations => map.separations,
            email_pairs => email_page, email_total => emails.len(),
            page => q.page.min(email_pages - 1), pages => email_pages,
            unmatched => unmatched_page, unmatched_total => map.unmatched.len(),
            unmatched_page => q.unmatched_page.min(unmatched_pages - 1), unmatched_pages,
            error, notice, linked,
        },
    )
}

/// `GET /users`: the identity map.
pub async fn users(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<UsersQuery>,
) -> Response {
    let Some(s) = session(&state, &headers) else {
        return signin();
    };
    users_page(&state, &s, StatusCode::OK, q, None).await
}

fn no_query() -> UsersQuery {
    UsersQuery {
        page: 0,
        unmatched_page: 0,
        linked: None,
        unlinked: None,
        separated: None,
    }
}

/// Resolves what an admin typed for an account of `platform`: a user id, or an email of
/// exactly one live user.
async fn resolve_account(
    state: &AppState,
    org: &switchboard_core::OrgId,
    platform: PlatformKind,
    typed: &str,
) -> Result<(PlatformKind, UserId), String> {
    let typed = typed.trim();
    if typed.is_empty() {
        return Err(format!(
            "Enter the {} account (its id or email).",
            platform_name(platform)
        ));
    }
    if typed.contains('@') {
        let users = identities::all_users(state.store.as_ref(), org)
            .await
            .map_err(|e| unavailable(&e))?;
        let wanted = typed.to_lowercase();
        let found: Vec<_> = users
            .iter()
            .filter(|u| u.platform == platform && !u.removed && !u.user.is_deleted)
            .filter(|u| {
                u.user
                    .email
                    .as_deref()
                    .is_some_and(|e| e.trim().to_lowercase() == wanted)
            })
            .collect();
        return match found.as_slice() {
            [one] => Ok((platform, one.user.id.clone())),
            [] => Err(format!(
                "No {} account has the email {typed}.",
                platform_name(platform)
            )),
            many => Err(format!(
                "{} {} accounts have the email {typed}: enter the id of the right one.",
                many.len(),
                platform_name(platform)
            )),
        };
    }
    parse_identity(platform.as_str(), typed).map_err(|e| e.message().to_owned())
}

/// `POST /users/link`: an admin override linking two accounts.
pub async fn users_link(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let Some(s) = session(&state, &headers) else {
        return signin();
    };
    let f = fields(&body);
    if !f.csrf_ok(&s) {
        return expired("users", &s);
    }
    let org = s.principal.org.clone();
    let a = resolve_account(
        &state,
        &org,
        PlatformKind::Msteams,
        f.one("msteams").unwrap_or_default(),
    )
    .await;
    let b = resolve_account(
        &state,
        &org,
        PlatformKind::Slack,
        f.one("slack").unwrap_or_default(),
    )
    .await;
    let (a, b) = match (a, b) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            return users_page(
                &state,
                &s,
                StatusCode::UNPROCESSABLE_ENTITY,
                no_query(),
                Some(format!("Nothing was linked. {e}")),
            )
            .await;
        }
    };
    match api_links::link_identities(state.store.as_ref(), &org, &s.principal.name, &a, &b).await {
        Ok(()) => Redirect::to(&format!(
            "/users?linked={}",
            urlencode(&format!("{}:{} with {}:{}", a.0, a.1, b.0, b.1))
        ))
        .into_response(),
        Err(e) => users_refused(&state, &s, &e, "Nothing was linked").await,
    }
}

/// The Users page again, saying why an override was refused (`nothing`: what did not happen).
async fn users_refused(
    state: &AppState,
    s: &Session,
    e: &switchboard_core::Error,
    nothing: &str,
) -> Response {
    let status = match e.kind() {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::InvalidInput => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    let msg = if status == StatusCode::SERVICE_UNAVAILABLE {
        unavailable(e)
    } else {
        format!("{nothing}: {}", e.message())
    };
    users_page(state, s, status, no_query(), Some(msg)).await
}

/// `POST /users/separate`: an admin override keeping two email-matched accounts apart.
pub async fn users_separate(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let Some(s) = session(&state, &headers) else {
        return signin();
    };
    let f = fields(&body);
    if !f.csrf_ok(&s) {
        return expired("users", &s);
    }
    let parsed = parse_identity(
        f.one("a_platform").unwrap_or_default(),
        f.one("a_user").unwrap_or_default(),
    )
    .and_then(|a| {
        parse_identity(
            f.one("b_platform").unwrap_or_default(),
            f.one("b_user").unwrap_or_default(),
        )
        .map(|b| (a, b))
    });
    let (a, b) = match parsed {
        Ok(x) => x,
        Err(e) => {
            return users_page(
                &state,
                &s,
                StatusCode::UNPROCESSABLE_ENTITY,
                no_query(),
                Some(format!("Nothing was changed: {}", e.message())),
            )
            .await;
        }
    };
    match api_links::separate_identities(
        state.store.as_ref(),
        &s.principal.org,
        &s.principal.name,
        &a,
        &b,
    )
    .await
    {
        Ok(()) => Redirect::to(&format!(
            "/users?separated={}",
            urlencode(&format!("{}:{} from {}:{}", a.0, a.1, b.0, b.1))
        ))
        .into_response(),
        Err(e) => users_refused(&state, &s, &e, "Nothing was changed").await,
    }
}

/// `POST /users/unlink`: removes an account's overrides.
pub async fn users_unlink(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let Some(s) = session(&state, &headers) else {
        return signin();
    };
    let f = fields(&body);
    if !f.csrf_ok(&s) {
        return expired("users", &s);
    }
    let who = match parse_identity(
        f.one("platform").unwrap_or_default(),
        f.one("user").unwrap_or_default(),
    ) {
        Ok(w) => w,
        Err(e) => {
            return users_page(
                &state,
                &s,
                StatusCode::UNPROCESSABLE_ENTITY,
                no_query(),
                Some(format!("Nothing was changed: {}", e.message())),
            )
            .await;
        }
    };
    match api_links::unlink_identity(
        state.store.as_ref(),
        &s.principal.org,
        &s.principal.name,
        &who,
    )
    .await
    {
        Ok(()) => Redirect::to(&format!(
            "/users?unlinked={}",
            urlencode(&format!("{}:{}", who.0, who.1))
        ))
        .into_response(),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            users_page(
                &state,
                &s,
                StatusCode::NOT_FOUND,
                no_query(),
                Some(format!("Nothing was changed: {}", e.message())),
            )
            .await
        }
        Err(e) => {
            users_page(
                &state,
                &s,
                StatusCode::SERVICE_UNAVAILABLE,
                no_query(),
                Some(unavailable(&e)),
            )
            .await
        }
    }
}

// ----- Audit Log --------------------------------------------------------------------------

/// Paging of the Audit Log page.
#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    /// Entries after this sequence number; absent: the latest page.
    after: Option<u64>,
}

#[derive(Debug, Serialize)]
struct AuditRow {
    seq: u64,
    at: String,
    actor: String,
    action: String,
    target: String,
    details: Vec<(String, String)>,
}

/// An entry's details as (key, value) pairs for people: strings bare, lists joined.
fn detail_pairs(details: &serde_json::Value) -> Vec<(String, String)> {
    let Some(map) = details.as_object() else {
        return if details.is_null() {
            Vec::new()
        } else {
            vec![(String::new(), details.to_string())]
        };
    };
    map.iter()
        .map(|(k, v)| {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Array(items) if items.is_empty() => "none".to_owned(),
                serde_json::Value::Array(items) => items
                    .iter()
                    .map(|i| {
                        i.as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| i.to_string())
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
                other => other.to_string(),
            };
            (k.replace('_', " "), text)
        })
        .collect()
}

fn actor_text(a: &Actor) -> String {
    match a {
        Actor::Admin { name } => format!("admin {name}"),
        Actor::ServiceAccount { connection } => format!("service account of {connection}"),
        Actor::User { platform, name, .. } => format!("{name} ({})", platform.display_name()),
        Actor::System => "Switchboard".into(),
    }
}

/// `GET /audit`: the log, a page at a time, with the chain check.
pub async fn audit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> Response {
    let Some(s) = session(&state, &headers) else {
        return signin();
    };
    let org = &s.principal.org;
    let verification = match state.store.verify_audit(org).await {
        Ok(v) => v,
        Err(e) => {
            return render(
                StatusCode::SERVICE_UNAVAILABLE,
                "audit.html",
                context! { title => "Audit Log", section => "audit", signed_in => true,
                csrf => s.csrf, fatal => unavailable(&e) },
            );
        }
    };
    let total = verification.checked;
    let page = PAGE as u64;
    let after = q
        .after
        .unwrap_or_else(|| total.saturating_sub(page))
        .min(total);
    let entries = match state.store.list_audit(org, after, PAGE).await {
        Ok(e) => e,
        Err(e) => {
            return render(
                StatusCode::SERVICE_UNAVAILABLE,
                "audit.html",
                context! { title => "Audit Log", section => "audit", signed_in => true,
                csrf => s.csrf, fatal => unavailable(&e) },
            );
        }
    };
    let rows: Vec<AuditRow> = entries
        .iter()
        .rev()
        .map(|e| AuditRow {
            seq: e.seq,
            at: e
                .at
                .format(&time::macros::format_description!(
                    "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
                ))
                .unwrap_or_default(),
            actor: actor_text(&e.actor),
            action: e.action.clone(),
            target: e.target.clone(),
            details: detail_pairs(&e.details),
        })
        .collect();
    let newer = (after + page < total).then(|| (after + page).min(total));
    let older = (after > 0).then(|| after.saturating_sub(page));
    render(
        StatusCode::OK,
        "audit.html",
        context! {
            title => "Audit Log", section => "audit", signed_in => true, csrf => s.csrf,
            rows, total, newer, older,
            first => rows_first(&entries), last => entries.last().map(|e| e.seq),
            chain_ok => verification.is_ok(), first_bad => verification.first_bad_seq,
            reason => verification.reason,
        },
    )
}

fn rows_first(entries: &[switchboard_core::AuditEntry]) -> Option<u64> {
    entries.first().map(|e| e.seq)
}

/// `GET /audit/export`: the whole log as JSON lines, for the signed-in organization.
pub async fn audit_export(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(s) = session(&state, &headers) else {
        return signin();
    };
    match api_links::export_audit(state.store.as_ref(), &s.principal.org).await {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, "application/x-ndjson"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"switchboard-audit.jsonl\"",
                ),
            ],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, unavailable(&e)).into_response(),
    }
}

// ----- Settings ---------------------------------------------------------------------------

#[derive(Debug, Serialize)]
struct TokenRow {
    name: String,
    created: String,
    live: bool,
    revoked: Option<String>,
    yours: bool,
}

fn day(t: time::OffsetDateTime) -> String {
    t.format(&time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute] UTC"
    ))
    .unwrap_or_default()
}

async fn settings_page(
    state: &AppState,
    s: &Session,
    status: StatusCode,
    error: Option<String>,
    new_token: Option<(String, String)>,
    notice: Option<String>,
) -> Response {
    let org = &s.principal.org;
    let loaded = async {
        let o = state.store.get_org(org).await?;
        let tokens = state.store.list_admin_tokens(org).await?;
        Ok::<_, switchboard_core::Error>((o, tokens))
    }
    .await;
    let (o, tokens) = match loaded {
        Ok(x) => x,
        Err(e) => {
            return render(
                StatusCode::SERVICE_UNAVAILABLE,
                "settings.html",
                context! { title => "Settings", section => "settings", signed_in => true,
                csrf => s.csrf, fatal => unavailable(&e) },
            );
        }
    };
    let rows: Vec<TokenRow> = tokens
        .iter()
        .map(|t| TokenRow {
            name: t.name.clone(),
            created: day(t.created_at),
            live: t.revoked_at.is_none(),
            revoked: t.revoked_at.map(day),
            yours: t.name == s.principal.name && t.revoked_at.is_none(),
        })
        .collect();
    let public = state.public_url.trim_end_matches('/').to_owned();
    render(
        status,
        "settings.html",
        context! {
            title => "Settings", section => "settings", signed_in => true, csrf => s.csrf,
            org_name => o.as_ref().map(|o| o.name.clone()), org_id => org.to_string(),
            tokens => rows, public_url => public.clone(),
            https => public.starts_with("https://"),
            slack_events => format!("{public}/webhooks/slack/events"),
            slack_redirect => format!("{public}/connect/slack/callback"),
            graph_notifications => format!("{public}/webhooks/msteams/notifications"),
            graph_lifecycle => format!("{public}/webhooks/msteams/lifecycle"),
            msteams_redirect => format!("{public}/connect/msteams/callback"),
            error, notice,
            new_token_name => new_token.as_ref().map(|t| t.0.clone()),
            new_token => new_token.map(|t| t.1),
        },
    )
}

/// `GET /settings`.
pub async fn settings(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(s) = session(&state, &headers) else {
        return signin();
    };
    settings_page(&state, &s, StatusCode::OK, None, None, None).await
}

async fn audit_token(
    state: &AppState,
    s: &Session,
    action: &str,
    name: &str,
) -> switchboard_core::Result<()> {
    state
        .store
        .append_audit(
            &s.principal.org,
            NewAuditEntry {
                actor: Actor::Admin {
                    name: s.principal.name.clone(),
                },
                action: action.into(),
                target: name.to_owned(),
                details: serde_json::json!({}),
            },
        )
        .await
        .map(|_| ())
}

/// `POST /settings/tokens`: issues an admin token, shown once.
pub async fn create_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let Some(s) = session(&state, &headers) else {
        return signin();
    };
    let f = fields(&body);
    if !f.csrf_ok(&s) {
        return expired("settings", &s);
    }
    let name = f.one("name").unwrap_or_default().trim();
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
    {
        return settings_page(&state, &s, StatusCode::UNPROCESSABLE_ENTITY,
            Some("A token name is 1 to 64 letters, digits, '-', '_', '.' or '@' (it is shown in the audit log). No token was created.".into()), None, None).await;
    }
    match state.store.create_admin_token(&s.principal.org, name).await {
        Ok(token) => {
            if let Err(e) = audit_token(&state, &s, "admin_token.created", name).await {
                tracing::error!(error = %e, "auditing a token creation failed");
            }
            use secrecy::ExposeSecret;
            let shown = token.expose_secret().to_owned();
            let mut page = settings_page(
                &state,
                &s,
                StatusCode::OK,
                None,
                Some((name.to_owned(), shown)),
                None,
            )
            .await;
            // The one page that shows a token: never cached.
            page.headers_mut().insert(
                header::CACHE_CONTROL,
                axum::http::HeaderValue::from_static("no-store"),
            );
            page
        }
        Err(e) if e.kind() == ErrorKind::InvalidInput => {
            settings_page(
                &state,
                &s,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(format!("No token was created: {}", e.message())),
                None,
                None,
            )
            .await
        }
        Err(e) => {
            settings_page(
                &state,
                &s,
                StatusCode::SERVICE_UNAVAILABLE,
                Some(unavailable(&e)),
                None,
                None,
            )
            .await
        }
    }
}

/// `POST /settings/tokens/revoke`: revokes every live token of a name.
pub async fn revoke_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let Some(s) = session(&state, &headers) else {
        return signin();
    };
    let f = fields(&body);
    if !f.csrf_ok(&s) {
        return expired("settings", &s);
    }
    let name = f.one("name").unwrap_or_default().trim();
    match state.store.revoke_admin_token(&s.principal.org, name).await {
        Ok(()) => {
            if let Err(e) = audit_token(&state, &s, "admin_token.revoked", name).await {
                tracing::error!(error = %e, "auditing a token revocation failed");
            }
            settings_page(&state, &s, StatusCode::OK, None, None,
                Some(format!("Revoked every token named {name:?}: the API and sign-in refuse them from now on."))).await
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            settings_page(
                &state,
                &s,
                StatusCode::NOT_FOUND,
                Some(format!(
                    "Nothing was revoked: no live token is named {name:?}."
                )),
                None,
                None,
            )
            .await
        }
        Err(e) => {
            settings_page(
                &state,
                &s,
                StatusCode::SERVICE_UNAVAILABLE,
                Some(unavailable(&e)),
                None,
                None,
            )
            .await
        }
    }
}
