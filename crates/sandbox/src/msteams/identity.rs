//! The Microsoft identity platform: `authorize` (sign-in + consent page), `token`
//! (authorization code + PKCE, rotating refresh tokens, client credentials), and the token
//! store behind Graph's bearer authentication.

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::GraphState;
use super::common::Caller;
use super::model::{
    OIDC_EMAIL, OIDC_OFFLINE, OIDC_OPENID, OIDC_PROFILE, Perm, Scopes, app_configured_delegated,
    app_roles,
};
use super::state::Dir;
use crate::SharedWorld;
use crate::util::{now_unix, random_token};

/// Access-token lifetime (seconds), as Entra ID reports it.
pub(crate) const ACCESS_TTL: u64 = 3599;
/// Refresh-token lifetime (seconds): 90 days.
pub(crate) const REFRESH_TTL: u64 = 90 * 86_400;
/// Authorization-code lifetime (seconds).
pub(crate) const CODE_TTL: u64 = 600;
/// Lifetime of the ready-made service-account token (seconds): one year.
pub(crate) const SERVICE_TOKEN_TTL: u64 = 365 * 86_400;

#[derive(Debug, Clone)]
struct AccessTok {
    user: Option<u32>,
    client_id: String,
    perms: u32,
    expires_at: u64,
}

#[derive(Debug, Clone)]
struct RefreshTok {
    user: u32,
    client_id: String,
    scopes: Scopes,
    expires_at: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retired {
    Rotated,
    Revoked,
}

#[derive(Debug, Clone)]
struct Code {
    client_id: String,
    redirect_uri: String,
    user: u32,
    scopes: Scopes,
    challenge: Option<(String, bool)>, // (challenge, is_s256)
    nonce: Option<String>,
    expires_at: u64,
    redeemed: bool,
}

/// Tokens and codes.
#[derive(Debug, Default)]
pub(crate) struct Auth {
    access: HashMap<String, AccessTok>,
    refresh: HashMap<String, RefreshTok>,
    retired: HashMap<String, Retired>,
    codes: HashMap<String, Code>,
}

impl Auth {
    /// Drops long-expired access tokens and codes (called by the background ticker).
    pub fn sweep(&mut self, now: u64) {
        self.access.retain(|_, t| t.expires_at + 3600 > now);
        self.codes.retain(|_, c| c.expires_at + 3600 > now);
        self.refresh.retain(|_, r| r.expires_at > now);
    }
}

impl GraphState {
    /// Validates an access token. `Err(true)`: expired; `Err(false)`: unknown.
    pub(crate) fn lookup_access_token(&self, token: &str) -> Result<Caller, bool> {
        let auth = self.auth.lock();
        let t = auth.access.get(token).ok_or(false)?;
        if now_unix() >= t.expires_at {
            return Err(true);
        }
        Ok(Caller {
            user: t.user,
            client_id: t.client_id.clone(),
            perms: t.perms,
            token_expires_at: t.expires_at,
        })
    }

    pub(crate) fn issue_access(
        &self,
        user: Option<u32>,
        client_id: &str,
        perms: u32,
        ttl: u64,
    ) -> String {
        let token = format!("EwB{}", random_token(120));
        self.auth.lock().access.insert(
            token.clone(),
            AccessTok {
                user,
                client_id: client_id.to_owned(),
                perms,
                expires_at: now_unix() + ttl,
            },
        );
        token
    }

    fn issue_refresh(&self, user: u32, client_id: &str, scopes: Scopes) -> String {
        let token = format!("1.AS0A{}", random_token(120));
        self.auth.lock().refresh.insert(
            token.clone(),
            RefreshTok {
                user,
                client_id: client_id.to_owned(),
                scopes,
                expires_at: now_unix() + REFRESH_TTL,
            },
        );
        token
    }

    /// Control API: makes an access token expired at once. False when unknown.
    pub(crate) fn expire_token(&self, token: &str) -> bool {
        let mut auth = self.auth.lock();
        match auth.access.get_mut(token) {
            Some(t) => {
                t.expires_at = 0;
                true
            }
            None => false,
        }
    }

    /// Control API: revokes every refresh token of `user` (sign-in sessions revoked).
    /// Returns how many were revoked.
    pub(crate) fn revoke_user(&self, user: u32) -> usize {
        let mut auth = self.auth.lock();
        let revoked: Vec<String> = auth
            .refresh
            .iter()
            .filter(|(_, r)| r.user == user)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &revoked {
            auth.refresh.remove(k);
            auth.retired.insert(k.clone(), Retired::Revoked);
        }
        revoked.len()
    }
}

// ---------------------------------------------------------------------------------------
// Scope parsing
// ---------------------------------------------------------------------------------------

const GRAPH_PREFIXES: [&str; 2] = [
    "https://graph.microsoft.com/",
    "00000003-0000-0000-c000-000000000000/",
];

/// Parses a space-separated delegated scope request. Err: the offending scope.
fn parse_scopes(raw: &str) -> Result<Scopes, String> {
    let mut s = Scopes::default();
    let mut any = false;
    for item in raw.split_whitespace() {
        any = true;
        match item.to_ascii_lowercase().as_str() {
            "openid" => s.oidc |= OIDC_OPENID,
            "profile" => s.oidc |= OIDC_PROFILE,
            "email" => s.oidc |= OIDC_EMAIL,
            "offline_access" => s.oidc |= OIDC_OFFLINE,
            _ => {
                let lower = item.to_ascii_lowercase();
                let bare = GRAPH_PREFIXES
                    .iter()
                    .find_map(|p| lower.strip_prefix(p).map(|_| &item[p.len()..]))
                    .unwrap_or(item);
                if item.contains("://") && bare == item {
                    return Err(item.to_owned());
                }
                if bare.eq_ignore_ascii_case(".default") {
                    s.perms |= app_configured_delegated();
                } else {
                    match Perm::parse(bare) {
                        Some(p) => s.perms |= p.bit(),
                        None => return Err(item.to_owned()),
                    }
                }
            }
        }
    }
    if !any {
        return Err(String::new());
    }
    Ok(s)
}

fn is_graph_default(scope: &str) -> bool {
    let lower = scope.trim().to_ascii_lowercase();
    GRAPH_PREFIXES
        .iter()
        .any(|p| lower == format!("{p}.default"))
}

// ---------------------------------------------------------------------------------------
// AAD error helpers
// ---------------------------------------------------------------------------------------

fn aad_error(status: StatusCode, error: &str, code: u32, description: &str) -> Response {
    let trace = uuid::Uuid::new_v4().to_string();
    let corr = uuid::Uuid::new_v4().to_string();
    let ts = super::common::iso_seconds(now_unix()).replace('T', " ");
    let body = json!({
        "error": error,
        "error_description": format!(
            "AADSTS{code}: {description} Trace ID: {trace} Correlation ID: {corr} Timestamp: {ts}"
        ),
        "error_codes": [code],
        "timestamp": ts,
        "trace_id": trace,
        "correlation_id": corr,
        "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
    });
    let mut resp = (status, axum::Json(body)).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn bad(error: &str, code: u32, description: &str) -> Response {
    aad_error(StatusCode::BAD_REQUEST, error, code, description)
}

fn missing(param: &str) -> Response {
    bad(
        "invalid_request",
        900144,
        &format!("The request body must contain the following parameter: '{param}'."),
    )
}

/// Whether `tenant` names the seeded tenant (GUID, a verified domain, `common`,
/// `organizations`).
fn tenant_ok(dir: &Dir, tenant: &str) -> bool {
    let t = tenant.to_ascii_lowercase();
    t == dir.tenant_id
        || t == dir.domain
        || t == dir.custom_domain
        || t == "common"
        || t == "organizations"
}

/// Registered redirect URIs of the seeded app: any loopback `http://127.0.0.1:*/…` or
/// `http://localhost:*/…` (`[::1]` too).
pub(crate) fn redirect_uri_registered(uri: &str) -> bool {
    let Ok(u) = url::Url::parse(uri) else {
        return false;
    };
    if u.scheme() != "http" || u.fragment().is_some() {
        return false;
    }
    matches!(
        u.host(),
        Some(url::Host::Domain("localhost"))
            | Some(url::Host::Ipv4(std::net::Ipv4Addr::LOCALHOST))
            | Some(url::Host::Ipv6(std::net::Ipv6Addr::LOCALHOST))
    )
}

// ---------------------------------------------------------------------------------------
// authorize
// ---------------------------------------------------------------------------------------

const AUTHORIZE_PARAMS: [&str; 11] = [
    "client_id",
    "response_type",
    "redirect_uri",
    "scope",
    "response_mode",
    "state",
    "code_challenge",
    "code_challenge_method",
    "login_hint",
    "prompt",
    "nonce",
];

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn error_page(status: StatusCode, code: u32, message: &str) -> Response {
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sign in to your account</title></head>\n<body><main id=\"error-page\">\n<h1>Sorry, but we're having trouble signing you in.</h1>\n<p id=\"error\" data-error-code=\"AADSTS{code}\">AADSTS{code}: {}</p>\n</main></body></html>\n",
        html_escape(message)
    );
    (status, Html(body)).into_response()
}

/// Appends `params` to `redirect_uri` as a query string.
fn redirect_with(redirect_uri: &str, params: &[(&str, &str)]) -> Response {
    let mut url = match url::Url::parse(redirect_uri) {
        Ok(u) => u,
        Err(_) => return error_page(StatusCode::BAD_REQUEST, 50011, "Invalid redirect URI."),
    };
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
    }
    let mut resp = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(url.as_str()) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The validated authorize request.
struct AuthzRequest {
    redirect_uri: String,
    state: Option<String>,
    scopes: Scopes,
    challenge: Option<(String, bool)>,
    nonce: Option<String>,
}

/// Validates the authorize parameters. Errors are either a page (bad client / redirect URI,
/// unknown tenant) or a redirect to the client with `error`.
fn validate_authorize(
    dir: &Dir,
    tenant: &str,
    pairs: &[(String, String)],
) -> Result<AuthzRequest, Box<Response>> {
    if !tenant_ok(dir, tenant) {
        return Err(Box::new(error_page(
            StatusCode::BAD_REQUEST,
            90002,
            &format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        )));
    }
    let Some(client_id) = param(pairs, "client_id").filter(|c| !c.is_empty()) else {
        return Err(Box::new(error_page(
            StatusCode::BAD_REQUEST,
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        )));
    };
    if client_id != dir.app.client_id {
        return Err(Box::new(error_page(
            StatusCode::BAD_REQUEST,
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{}'.",
                dir.tenant_name
            ),
        )));
    }
    let redirect_uri = param(pairs, "redirect_uri").unwrap_or("");
    if !redirect_uri_registered(redirect_uri) {
        return Err(Box::new(error_page(
            StatusCode::BAD_REQUEST,
            50011,
            &format!(
                "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs configured for the application '{client_id}'."
            ),
        )));
    }
    let state = param(pairs, "state").map(str::to_owned);
    let fail = |error: &str, desc: &str| {
        let mut p: Vec<(&str, &str)> = vec![("error", error), ("error_description", desc)];
        if let Some(s) = state.as_deref() {
            p.push(("state", s));
        }
        redirect_with(redirect_uri, &p)
    };
    if param(pairs, "response_type") != Some("code") {
        return Err(Box::new(fail(
            "unsupported_response_type",
            "AADSTS700054: response_type must be 'code' (the sandbox supports the authorization code flow only).",
        )));
    }
    if let Some(mode) = param(pairs, "response_mode") {
        if mode != "query" {
            return Err(Box::new(fail(
                "invalid_request",
                "AADSTS900144: the sandbox supports response_mode=query only.",
            )));
        }
    }
    let scopes = match parse_scopes(param(pairs, "scope").unwrap_or("")) {
        Ok(s) => s,
        Err(bad_scope) if bad_scope.is_empty() => {
            return Err(Box::new(fail(
                "invalid_request",
                "AADSTS900144: The request body must contain the following parameter: 'scope'.",
            )));
        }
        Err(bad_scope) => {
            return Err(Box::new(fail(
                "invalid_scope",
                &format!(
                    "AADSTS70011: The provided value for the input parameter 'scope' is not valid. The scope '{bad_scope}' is not valid."
                ),
            )));
        }
    };
    let challenge = match param(pairs, "code_challenge").filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => {
            let s256 = match param(pairs, "code_challenge_method") {
                None | Some("plain") => false,
                Some("S256") => true,
                Some(_) => {
                    return Err(Box::new(fail(
                        "invalid_request",
                        "AADSTS501491: Invalid code_challenge_method: use S256 or plain.",
                    )));
                }
            };
            if c.len() < 43 || c.len() > 128 {
                return Err(Box::new(fail(
                    "invalid_request",
                    "AADSTS501491: Invalid size of code_challenge parameter.",
                )));
            }
            Some((c.to_owned(), s256))
        }
    };
    if param(pairs, "prompt") == Some("none") {
        return Err(Box::new(fail(
            "login_required",
            "AADSTS50058: A silent sign-in request was sent but no user is signed in.",
        )));
    }
    Ok(AuthzRequest {
        redirect_uri: redirect_uri.to_owned(),
        state,
        scopes,
        challenge,
        nonce: param(pairs, "nonce").map(str::to_owned),
    })
}

fn consent_page(
    dir: &Dir,
    tenant: &str,
    pairs: &[(String, String)],
    scopes: Scopes,
    username: &str,
    error: Option<&str>,
) -> Response {
    let mut h = String::with_capacity(4096);
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sign in to your account</title></head>\n<body><main id=\"consent\">\n<h1>Sign in to {}</h1>\n<p id=\"app\" data-client-id=\"{}\">{} wants to:</p>\n<ul id=\"permissions\">\n",
        html_escape(&dir.tenant_name),
        html_escape(&dir.app.client_id),
        html_escape(&dir.app.display_name)
    );
    for scope in scopes
        .to_scope_string()
        .split(' ')
        .filter(|s| !s.is_empty())
    {
        let _ = writeln!(h, "<li data-scope=\"{0}\">{0}</li>", html_escape(scope));
    }
    h.push_str("</ul>\n");
    if let Some(e) = error {
        let _ = writeln!(h, "<p id=\"error\" class=\"error\">{}</p>", html_escape(e));
    }
    let action = format!(
        "/microsoft/{}/oauth2/v2.0/authorize",
        url::form_urlencoded::byte_serialize(tenant.as_bytes()).collect::<String>()
    );
    let _ = writeln!(
        h,
        "<form id=\"signin\" method=\"post\" action=\"{}\">",
        html_escape(&action)
    );
    for name in AUTHORIZE_PARAMS {
        if let Some(v) = param(pairs, name) {
            let _ = writeln!(
                h,
                "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
                html_escape(v)
            );
        }
    }
    let _ = write!(
        h,
        "<label>Email or username <input type=\"text\" name=\"username\" value=\"{}\" autocomplete=\"username\"></label>\n<label>Password <input type=\"password\" name=\"password\" value=\"\" autocomplete=\"current-password\"></label>\n<button type=\"submit\" name=\"decision\" value=\"accept\">Accept</button>\n<button type=\"submit\" name=\"decision\" value=\"cancel\">Cancel</button>\n</form>\n</main></body></html>\n",
        html_escape(username)
    );
    let mut resp = Html(h).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `GET /microsoft/{tenant}/oauth2/v2.0/authorize`: the sign-in + consent page.
pub(crate) async fn authorize_get(
    State(world): State<SharedWorld>,
    Path(tenant): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(raw.as_deref().unwrap_or("")).unwrap_or_default();
    let dir = world.msteams.dir.read();
    match validate_authorize(&dir, &tenant, &pairs) {
        Err(resp) => *resp,
        Ok(req) => {
            let hint = param(&pairs, "login_hint").unwrap_or("");
            consent_page(&dir, &tenant, &pairs, req.scopes, hint, None)
        }
    }
}

/// `POST /microsoft/{tenant}/oauth2/v2.0/authorize`: the consent form's submission.
pub(crate) async fn authorize_post(
    State(world): State<SharedWorld>,
    Path(tenant): Path<String>,
    RawQuery(raw): RawQuery,
    body: axum::body::Bytes,
) -> Response {
    let mut pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    // Parameters may also stay in the query string (the form posts to the bare path).
    if let Some(r) = raw.as_deref() {
        let q: Vec<(String, String)> = serde_urlencoded::from_str(r).unwrap_or_default();
        for (k, v) in q {
            if param(&pairs, &k).is_none() {
                pairs.push((k, v));
            }
        }
    }
    let dir = world.msteams.dir.read();
    let req = match validate_authorize(&dir, &tenant, &pairs) {
        Err(resp) => return *resp,
        Ok(r) => r,
    };
    let decision = param(&pairs, "decision").unwrap_or("accept");
    if decision != "accept" {
        let mut p: Vec<(&str, &str)> = vec![
            ("error", "access_denied"),
            (
                "error_description",
                "AADSTS65004: User declined to consent to access the app.",
            ),
        ];
        if let Some(s) = req.state.as_deref() {
            p.push(("state", s));
        }
        return redirect_with(&req.redirect_uri, &p);
    }
    let username = param(&pairs, "username").unwrap_or("").trim();
    let password = param(&pairs, "password").unwrap_or("");
    let page_error =
        |msg: &str| consent_page(&dir, &tenant, &pairs, req.scopes, username, Some(msg));
    if username.is_empty() {
        return page_error("Enter a valid email address or username.");
    }
    let Some(user_ix) = dir.find_user(username) else {
        return page_error(&format!(
            "AADSTS50034: The user account {username} does not exist in the {} directory.",
            dir.tenant_name
        ));
    };
    let user = &dir.users[user_ix as usize];
    let Some(expected) = user.password.as_deref() else {
        return page_error("AADSTS50020: This account cannot sign in to this tenant from here.");
    };
    if !user.account_enabled {
        return page_error("AADSTS50057: The user account is disabled.");
    }
    if password != expected {
        return page_error(
            "AADSTS50126: Error validating credentials due to invalid username or password.",
        );
    }
    let code = format!("1.AS0A{}", random_token(160));
    world.msteams.auth.lock().codes.insert(
        code.clone(),
        Code {
            client_id: dir.app.client_id.clone(),
            redirect_uri: req.redirect_uri.clone(),
            user: user_ix,
            scopes: req.scopes,
            challenge: req.challenge,
            nonce: req.nonce,
            expires_at: now_unix() + CODE_TTL,
            redeemed: false,
        },
    );
    let mut p: Vec<(&str, &str)> = vec![("code", &code)];
    if let Some(s) = req.state.as_deref() {
        p.push(("state", s));
    }
    redirect_with(&req.redirect_uri, &p)
}

// ---------------------------------------------------------------------------------------
// token
// ---------------------------------------------------------------------------------------

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let b64 = v.strip_prefix("Basic ")?;
    let raw = STANDARD.decode(b64.trim()).ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (id, secret) = s.split_once(':')?;
    let dec = |x: &str| {
        url::form_urlencoded::parse(format!("v={x}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some((dec(id), dec(secret)))
}

fn unsigned_jwt(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"none"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
    format!("{header}.{payload}.")
}

/// `POST /microsoft/{tenant}/oauth2/v2.0/token`.
pub(crate) async fn token(
    State(world): State<SharedWorld>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let pairs: Vec<(String, String)> = match serde_urlencoded::from_bytes(&body) {
        Ok(p) => p,
        Err(_) => {
            return bad(
                "invalid_request",
                900144,
                "The request body must be application/x-www-form-urlencoded.",
            );
        }
    };
    let state = &world.msteams;
    let (tenant_id, app_client, app_secret) = {
        let dir = state.dir.read();
        if !tenant_ok(&dir, &tenant) {
            return bad(
                "invalid_request",
                90002,
                &format!("Tenant '{tenant}' not found."),
            );
        }
        (
            dir.tenant_id.clone(),
            dir.app.client_id.clone(),
            dir.app.client_secret.clone(),
        )
    };
    let Some(grant) = param(&pairs, "grant_type").filter(|g| !g.is_empty()) else {
        return missing("grant_type");
    };
    if !matches!(
        grant,
        "authorization_code" | "refresh_token" | "client_credentials"
    ) {
        return bad(
            "unsupported_grant_type",
            70003,
            &format!("The app requested an unsupported grant type '{grant}'."),
        );
    }
    // Client authentication: form fields or HTTP Basic.
    let basic = basic_credentials(&headers);
    let client_id = param(&pairs, "client_id")
        .map(str::to_owned)
        .or_else(|| basic.as_ref().map(|b| b.0.clone()));
    let Some(client_id) = client_id.filter(|c| !c.is_empty()) else {
        return missing("client_id");
    };
    if client_id != app_client {
        return bad(
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory 'Contoso'."
            ),
        );
    }
    let secret = param(&pairs, "client_secret")
        .map(str::to_owned)
        .or_else(|| basic.as_ref().map(|b| b.1.clone()));
    match secret {
        None => {
            return aad_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            );
        }
        Some(s) if s != app_secret => {
            return aad_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app.",
            );
        }
        Some(_) => {}
    }
    let now = now_unix();
    match grant {
        "client_credentials" => {
            let Some(scope) = param(&pairs, "scope") else {
                return missing("scope");
            };
            if !is_graph_default(scope) {
                return bad(
                    "invalid_scope",
                    1002012,
                    &format!(
                        "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
                    ),
                );
            }
            let token = state.issue_access(None, &client_id, app_roles(), ACCESS_TTL);
            let mut resp = axum::Json(json!({
                "token_type": "Bearer",
                "expires_in": ACCESS_TTL,
                "ext_expires_in": ACCESS_TTL,
                "access_token": token,
            }))
            .into_response();
            no_store(&mut resp);
            resp
        }
        "authorization_code" => {
            let Some(code) = param(&pairs, "code").filter(|c| !c.is_empty()) else {
                return missing("code");
            };
            let Some(redirect_uri) = param(&pairs, "redirect_uri") else {
                return missing("redirect_uri");
            };
            if let Some(scope) = param(&pairs, "scope") {
                if let Err(s) = parse_scopes(scope) {
                    if !s.is_empty() {
                        return bad(
                            "invalid_scope",
                            70011,
                            &format!(
                                "The provided value for the input parameter 'scope' is not valid. The scope '{s}' is not valid."
                            ),
                        );
                    }
                }
            }
            let verifier = param(&pairs, "code_verifier");
            let granted = {
                let mut auth = state.auth.lock();
                let Some(c) = auth.codes.get_mut(code) else {
                    return bad(
                        "invalid_grant",
                        70000,
                        "The provided value for the 'code' parameter is not valid.",
                    );
                };
                if c.redeemed {
                    return bad(
                        "invalid_grant",
                        54005,
                        "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.",
                    );
                }
                if now >= c.expires_at {
                    return bad(
                        "invalid_grant",
                        70008,
                        "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
                    );
                }
                if c.client_id != client_id {
                    return bad(
                        "invalid_grant",
                        70000,
                        "The provided authorization code was issued to another client.",
                    );
                }
                if c.redirect_uri != redirect_uri {
                    return bad(
                        "invalid_grant",
                        500112,
                        &format!(
                            "The reply address '{redirect_uri}' does not match the reply address '{}' provided when requesting Authorization code.",
                            c.redirect_uri
                        ),
                    );
                }
                if let Some((challenge, s256)) = &c.challenge {
                    let Some(v) = verifier.filter(|v| !v.is_empty()) else {
                        return missing("code_verifier");
                    };
                    let computed = if *s256 {
                        URL_SAFE_NO_PAD.encode(Sha256::digest(v.as_bytes()))
                    } else {
                        v.to_owned()
                    };
                    if &computed != challenge {
                        return bad(
                            "invalid_grant",
                            50148,
                            "The code_verifier does not match the code_challenge supplied in the authorization request for PKCE.",
                        );
                    }
                }
                c.redeemed = true;
                (c.user, c.scopes, c.nonce.clone())
            };
            let (user, scopes, nonce) = granted;
            token_response(
                &world,
                &tenant_id,
                &client_id,
                user,
                scopes,
                nonce.as_deref(),
            )
        }
        _ => {
            // refresh_token
            let Some(rt) = param(&pairs, "refresh_token").filter(|c| !c.is_empty()) else {
                return missing("refresh_token");
            };
            let requested = match param(&pairs, "scope") {
                None => None,
                Some(s) => match parse_scopes(s) {
                    Ok(sc) => Some(sc),
                    Err(e) if e.is_empty() => None,
                    Err(e) => {
                        return bad(
                            "invalid_scope",
                            70011,
                            &format!(
                                "The provided value for the input parameter 'scope' is not valid. The scope '{e}' is not valid."
                            ),
                        );
                    }
                },
            };
            let (user, scopes) = {
                let mut auth = state.auth.lock();
                let Some(r) = auth.refresh.get(rt).cloned() else {
                    let why = auth.retired.get(rt).copied();
                    return match why {
                        Some(Retired::Revoked) => bad(
                            "invalid_grant",
                            50173,
                            "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password.",
                        ),
                        Some(Retired::Rotated) => bad(
                            "invalid_grant",
                            70000,
                            "The provided grant is invalid or malformed: this refresh token was already redeemed and replaced by a newer one.",
                        ),
                        None => bad(
                            "invalid_grant",
                            9002313,
                            "Invalid request. Request is malformed or invalid: the refresh token is not valid.",
                        ),
                    };
                };
                if r.client_id != client_id {
                    return bad(
                        "invalid_grant",
                        70000,
                        "The refresh token was issued to a different client.",
                    );
                }
                if now >= r.expires_at {
                    auth.refresh.remove(rt);
                    return bad(
                        "invalid_grant",
                        700082,
                        "The refresh token has expired due to inactivity.",
                    );
                }
                let mut scopes = r.scopes;
                if let Some(req) = requested {
                    // Asking for less is fine; asking for more needs consent.
                    let wanted = Scopes {
                        perms: req.perms,
                        oidc: req.oidc & !OIDC_OFFLINE,
                    };
                    if !r.scopes.contains(wanted) {
                        return bad(
                            "invalid_grant",
                            65001,
                            "The user or administrator has not consented to use the application for the requested scopes. Send an interactive authorization request for this user and resource.",
                        );
                    }
                    if req.perms != 0 {
                        scopes.perms = req.perms;
                    }
                }
                auth.refresh.remove(rt);
                auth.retired.insert(rt.to_owned(), Retired::Rotated);
                (r.user, scopes)
            };
            token_response(&world, &tenant_id, &client_id, user, scopes, None)
        }
    }
}

fn no_store(resp: &mut Response) {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

fn token_response(
    world: &SharedWorld,
    tenant_id: &str,
    client_id: &str,
    user: u32,
    scopes: Scopes,
    nonce: Option<&str>,
) -> Response {
    let state = &world.msteams;
    let access = state.issue_access(Some(user), client_id, scopes.perms, ACCESS_TTL);
    let mut body = json!({
        "token_type": "Bearer",
        "scope": scopes.to_scope_string(),
        "expires_in": ACCESS_TTL,
        "ext_expires_in": ACCESS_TTL,
        "access_token": access,
    });
    if scopes.oidc & OIDC_OFFLINE != 0 {
        body["refresh_token"] = Value::String(state.issue_refresh(user, client_id, scopes));
    }
    if scopes.oidc & OIDC_OPENID != 0 {
        let dir = state.dir.read();
        let u = &dir.users[user as usize];
        let now = now_unix();
        let sub = URL_SAFE_NO_PAD.encode(&Sha256::digest(format!("{}:{client_id}", u.id))[..24]);
        let mut claims = json!({
            "aud": client_id,
            "iss": format!("{}/microsoft/{tenant_id}/v2.0", world.base_url),
            "iat": now,
            "nbf": now,
            "exp": now + ACCESS_TTL,
            "oid": u.id,
            "sub": sub,
            "tid": tenant_id,
            "ver": "2.0",
        });
        if scopes.oidc & OIDC_PROFILE != 0 {
            claims["name"] = Value::String(u.display_name.clone());
            claims["preferred_username"] = Value::String(u.upn.clone());
        }
        if scopes.oidc & OIDC_EMAIL != 0 {
            if let Some(m) = &u.mail {
                claims["email"] = Value::String(m.clone());
            }
        }
        if let Some(n) = nonce {
            claims["nonce"] = Value::String(n.to_owned());
        }
        body["id_token"] = Value::String(unsigned_jwt(&claims));
    }
    let mut resp = axum::Json(body).into_response();
    no_store(&mut resp);
    resp
}

/// `GET /microsoft/{tenant}/v2.0/.well-known/openid-configuration`.
pub(crate) async fn openid_configuration(
    State(world): State<SharedWorld>,
    Path(tenant): Path<String>,
) -> Response {
    let dir = world.msteams.dir.read();
    if !tenant_ok(&dir, &tenant) {
        return bad(
            "invalid_tenant",
            90002,
            &format!("Tenant '{tenant}' not found."),
        );
    }
    let base = format!("{}/microsoft/{}", world.base_url, dir.tenant_id);
    axum::Json(json!({
        "issuer": format!("{base}/v2.0"),
        "authorization_endpoint": format!("{base}/oauth2/v2.0/authorize"),
        "token_endpoint": format!("{base}/oauth2/v2.0/token"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "code_challenge_methods_supported": ["S256", "plain"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "id_token_signing_alg_values_supported": ["none"],
        "tenant_region_scope": "NA",
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_parsing() {
        let s = parse_scopes(
            "openid profile offline_access https://graph.microsoft.com/User.Read.All ChannelMessage.Send",
        )
        .unwrap();
        assert_eq!(s.oidc, OIDC_OPENID | OIDC_PROFILE | OIDC_OFFLINE);
        assert_eq!(
            s.perms,
            Perm::USER_READ_ALL.bit() | Perm::CHANNELMESSAGE_SEND.bit()
        );
        assert_eq!(
            parse_scopes("https://graph.microsoft.com/Nope.Nope").unwrap_err(),
            "https://graph.microsoft.com/Nope.Nope"
        );
        assert!(parse_scopes("https://outlook.office.com/Mail.Read").is_err());
        assert_eq!(parse_scopes("").unwrap_err(), "");
        assert_eq!(
            parse_scopes("https://graph.microsoft.com/.default")
                .unwrap()
                .perms,
            app_configured_delegated()
        );
    }

    #[test]
    fn loopback_redirects_only() {
        assert!(redirect_uri_registered("http://127.0.0.1:8080/cb"));
        assert!(redirect_uri_registered(
            "http://localhost:1/connect/msteams/callback"
        ));
        assert!(!redirect_uri_registered("https://evil.example/cb"));
        assert!(!redirect_uri_registered("http://127.0.0.2/cb"));
        assert!(!redirect_uri_registered("not a url"));
    }
}
