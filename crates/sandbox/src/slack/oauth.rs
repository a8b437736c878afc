//! OAuth v2: the consent page (`/slack/oauth/v2/authorize`) and `oauth.v2.access`
//! (authorization code and refresh-token grants, with token rotation).

// Handlers bail out with a ready `Response`, axum's usual style.
#![allow(clippy::result_large_err)]

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

use super::auth::{CODE_TTL, CodeRec, Issued, Scopes, TokenKind};
use super::web::Args;
use crate::SharedWorld;

/// HTML-escapes text and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn error_page(status: StatusCode, code: &str, detail: &str) -> Response {
    let body = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Slack (sandbox): {c}</title></head>\n\
         <body><h1>Something went wrong</h1>\n<p id=\"error\" data-error=\"{c}\">{c}</p>\n<p>{d}</p></body></html>\n",
        c = esc(code),
        d = esc(detail)
    );
    (status, Html(body)).into_response()
}

/// The authorize parameters, from the query string (GET) or the form (POST).
#[derive(Debug)]
struct AuthorizeRequest {
    client_id: String,
    scope: String,
    user_scope: String,
    redirect_uri: Option<String>,
    state: String,
    scopes: Scopes,
    user_scopes: Scopes,
}

fn parse_request(world: &crate::World, args: &Args) -> Result<AuthorizeRequest, Response> {
    let app = &world.slack.app;
    let client_id = args.str("client_id").unwrap_or_default();
    if client_id != app.client_id {
        return Err(error_page(
            StatusCode::BAD_REQUEST,
            "invalid_client_id",
            "The client_id is not the sandbox app's client id.",
        ));
    }
    let scope = args.str("scope").unwrap_or_default();
    let user_scope = args.str("user_scope").unwrap_or_default();
    let scopes = Scopes::parse(&scope).map_err(|bad| {
        error_page(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            &format!("Unknown scope requested: {bad}"),
        )
    })?;
    let user_scopes = Scopes::parse(&user_scope).map_err(|bad| {
        error_page(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            &format!("Unknown user scope requested: {bad}"),
        )
    })?;
    if scopes.is_empty() && user_scopes.is_empty() {
        return Err(error_page(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "No scope or user_scope was requested.",
        ));
    }
    let redirect_uri = args.str("redirect_uri");
    match &redirect_uri {
        Some(r) => match url::Url::parse(r) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => {
                return Err(error_page(
                    StatusCode::BAD_REQUEST,
                    "bad_redirect_uri",
                    "redirect_uri must be an absolute http(s) URL.",
                ));
            }
        },
        None => {
            return Err(error_page(
                StatusCode::BAD_REQUEST,
                "bad_redirect_uri",
                "redirect_uri is required (the sandbox app has no default redirect URL).",
            ));
        }
    }
    Ok(AuthorizeRequest {
        client_id,
        scope,
        user_scope,
        redirect_uri,
        state: args.str("state").unwrap_or_default(),
        scopes,
        user_scopes,
    })
}

fn scope_list(s: Scopes) -> String {
    let list = s.to_list();
    if list.is_empty() {
        return "<li>(none)</li>".into();
    }
    list.split(',')
        .map(|n| format!("<li><code>{}</code></li>", esc(n)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `GET /slack/oauth/v2/authorize`: the consent page.
pub(crate) async fn authorize_page(
    State(world): State<SharedWorld>,
    RawQuery(query): RawQuery,
) -> Response {
    let args = match Args::parse(query.as_deref(), &HeaderMap::new(), b"") {
        Ok(a) => a,
        Err(_) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Malformed query string.",
            );
        }
    };
    let req = match parse_request(&world, &args) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let ws = world.slack.ws.read();
    let installer = ws.user(ws.installer);
    let hidden = |name: &str, value: &str| {
        format!(
            "    <input type=\"hidden\" name=\"{}\" value=\"{}\">\n",
            esc(name),
            esc(value)
        )
    };
    let mut form = String::new();
    form.push_str(&hidden("client_id", &req.client_id));
    form.push_str(&hidden("scope", &req.scope));
    form.push_str(&hidden("user_scope", &req.user_scope));
    form.push_str(&hidden(
        "redirect_uri",
        req.redirect_uri.as_deref().unwrap_or(""),
    ));
    form.push_str(&hidden("state", &req.state));
    let body = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{app} is requesting permission to access the {team} Slack workspace</title></head>\n<body>\n\
<h1><span id=\"app-name\">{app}</span> is requesting permission to access the <span id=\"team-name\">{team}</span> Slack workspace</h1>\n\
<p>Signed in as <span id=\"installer\">{who}</span> ({email}).</p>\n\
<h2>Bot scopes</h2>\n<ul id=\"scopes\">\n{scopes}\n</ul>\n\
<h2>User scopes</h2>\n<ul id=\"user-scopes\">\n{user_scopes}\n</ul>\n\
<form id=\"consent\" method=\"post\" action=\"/slack/oauth/v2/authorize\">\n{form}\
    <button type=\"submit\" name=\"decision\" value=\"accept\">Accept</button>\n\
    <button type=\"submit\" name=\"decision\" value=\"cancel\">Cancel</button>\n\
</form>\n</body></html>\n",
        app = esc(&world.slack.app.app_name),
        team = esc(&ws.team_name),
        who = esc(&installer.real_name),
        email = esc(installer.email.as_deref().unwrap_or("")),
        scopes = scope_list(req.scopes),
        user_scopes = scope_list(req.user_scopes),
        form = form,
    );
    (StatusCode::OK, Html(body)).into_response()
}

fn redirect_to(base: &str, params: &[(&str, &str)]) -> Response {
    let mut url = base.to_owned();
    let sep = if url.contains('?') { '&' } else { '?' };
    url.push(sep);
    url.push_str(
        &url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish(),
    );
    let mut resp = StatusCode::FOUND.into_response();
    match HeaderValue::from_str(&url) {
        Ok(v) => {
            resp.headers_mut().insert(header::LOCATION, v);
            resp
        }
        Err(_) => error_page(
            StatusCode::BAD_REQUEST,
            "bad_redirect_uri",
            "redirect_uri cannot be used in a Location header.",
        ),
    }
}

/// `POST /slack/oauth/v2/authorize`: the consent form's Accept / Cancel.
pub(crate) async fn authorize_submit(
    State(world): State<SharedWorld>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let args = match Args::parse(query.as_deref(), &headers, &body) {
        Ok(a) => a,
        Err(_) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Malformed form body.",
            );
        }
    };
    let req = match parse_request(&world, &args) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let redirect = req.redirect_uri.clone().unwrap_or_default();
    match args.str("decision").as_deref() {
        Some("accept") => {
            let installer = world.slack.ws.read().installer;
            let code = world.slack.auth.lock().new_code(CodeRec {
                client_id: req.client_id,
                redirect_uri: req.redirect_uri,
                scopes: req.scopes,
                user_scopes: req.user_scopes,
                scope_text: Scopes::normalize(&req.scope),
                user_scope_text: Scopes::normalize(&req.user_scope),
                installer,
                created: Instant::now(),
                used: false,
            });
            redirect_to(&redirect, &[("code", &code), ("state", &req.state)])
        }
        Some("cancel") => redirect_to(
            &redirect,
            &[("error", "access_denied"), ("state", &req.state)],
        ),
        _ => error_page(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "decision must be `accept` or `cancel`.",
        ),
    }
}

/// Client credentials from HTTP Basic or the arguments.
fn client_credentials(headers: &HeaderMap, args: &Args) -> (Option<String>, Option<String>) {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("basic").then_some(rest.trim())
        })
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.split_once(':').map(|(a, b)| (a.to_owned(), b.to_owned())));
    match basic {
        Some((id, secret)) => (Some(id), Some(secret)),
        None => (args.str("client_id"), args.str("client_secret")),
    }
}

fn installed_json(world: &crate::World, kind: TokenKind, user: u32, bot: &Issued) -> Value {
    let ws = world.slack.ws.read();
    let app = &world.slack.app;
    let mut v = json!({
        "ok": true,
        "app_id": app.app_id,
        "authed_user": {"id": ws.user(user).id},
        "scope": bot.scope_text,
        "token_type": if kind == TokenKind::User { "user" } else { "bot" },
        "access_token": bot.access_token,
        "bot_user_id": app.bot_user_id,
        "refresh_token": bot.refresh_token,
        "expires_in": bot.expires_in,
        "team": {"id": ws.team_id, "name": ws.team_name},
        "enterprise": null,
        "is_enterprise_install": false,
    });
    if kind == TokenKind::User {
        v.as_object_mut().map(|o| o.remove("bot_user_id"));
    }
    v
}

/// `oauth.v2.access`: exchanges a code (or a refresh token) for tokens.
pub(crate) fn access(world: &crate::World, headers: &HeaderMap, args: &Args) -> Value {
    let app = &world.slack.app;
    let (client_id, client_secret) = client_credentials(headers, args);
    if client_id.as_deref() != Some(app.client_id.as_str()) {
        return json!({"ok": false, "error": "invalid_client_id"});
    }
    if client_secret.as_deref() != Some(app.client_secret.as_str()) {
        return json!({"ok": false, "error": "bad_client_secret"});
    }
    let grant = args
        .str("grant_type")
        .unwrap_or_else(|| "authorization_code".into());
    match grant.as_str() {
        "authorization_code" => {
            let Some(code) = args.str("code") else {
                return json!({"ok": false, "error": "invalid_code"});
            };
            let mut auth = world.slack.auth.lock();
            let Some(rec) = auth.codes.get_mut(&code) else {
                return json!({"ok": false, "error": "invalid_code"});
            };
            if rec.used || rec.created.elapsed() >= CODE_TTL || rec.client_id != app.client_id {
                // A replayed code is burnt for good.
                rec.used = true;
                return json!({"ok": false, "error": "invalid_code"});
            }
            if let Some(expected) = &rec.redirect_uri {
                if args.str("redirect_uri").as_deref() != Some(expected.as_str()) {
                    return json!({"ok": false, "error": "bad_redirect_uri"});
                }
            }
            rec.used = true;
            let rec = rec.clone();
            let bot_user = world.slack.ws.read().bot_user;
            let user_issued = (!rec.user_scopes.is_empty()).then(|| {
                auth.issue_rotating(
                    TokenKind::User,
                    rec.installer,
                    rec.user_scopes,
                    rec.user_scope_text.clone(),
                )
            });
            if rec.scopes.is_empty() {
                // A user-token-only install.
                drop(auth);
                let ws = world.slack.ws.read();
                let u = user_issued.expect("user scopes were requested");
                return json!({
                    "ok": true,
                    "app_id": app.app_id,
                    "authed_user": {
                        "id": ws.user(rec.installer).id,
                        "scope": u.scope_text,
                        "access_token": u.access_token,
                        "token_type": "user",
                        "refresh_token": u.refresh_token,
                        "expires_in": u.expires_in,
                    },
                    "team": {"id": ws.team_id, "name": ws.team_name},
                    "enterprise": null,
                    "is_enterprise_install": false,
                });
            }
            let bot =
                auth.issue_rotating(TokenKind::Bot, bot_user, rec.scopes, rec.scope_text.clone());
            drop(auth);
            let mut v = installed_json(world, TokenKind::Bot, rec.installer, &bot);
            if let Some(u) = user_issued {
                v["authed_user"]["scope"] = json!(u.scope_text);
                v["authed_user"]["access_token"] = json!(u.access_token);
                v["authed_user"]["token_type"] = json!("user");
                v["authed_user"]["refresh_token"] = json!(u.refresh_token);
                v["authed_user"]["expires_in"] = json!(u.expires_in);
            }
            v
        }
        "refresh_token" => {
            let Some(rt) = args.str("refresh_token") else {
                return json!({"ok": false, "error": "invalid_refresh_token"});
            };
            let result = world.slack.auth.lock().refresh(&rt);
            match result {
                Ok((kind, user, issued)) => {
                    let installer = world.slack.ws.read().installer;
                    let authed = if kind == TokenKind::User {
                        user
                    } else {
                        installer
                    };
                    installed_json(world, kind, authed, &issued)
                }
                Err(code) => json!({"ok": false, "error": code}),
            }
        }
        _ => json!({"ok": false, "error": "invalid_grant_type"}),
    }
}
