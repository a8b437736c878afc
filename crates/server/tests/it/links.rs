//! The capability report, the identity map, the audit export (admin API), and the console's
//! Universal Channels, Users, Audit Log and Settings pages.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use switchboard_core::*;
use switchboard_server::Receivers;

use crate::support::World;

const SLACK_C1: &str = "slack:T1/C1";
const SLACK_C2: &str = "slack:T1/C2";
const TEAMS_A: &str = "msteams:team-1/19:a@thread.tacv2";

fn creds(scopes: &[&str]) -> Credentials {
    Credentials {
        access_token: SecretString::from("at-not-shown".to_owned()),
        refresh_token: None,
        expires_at: None,
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
    }
}

async fn world() -> World {
    let w = World::new(Receivers::default()).await;
    let w = World {
        state: w.state.clone().with_public_url("https://sb.contoso.test"),
        ..w
    };
    // Slack without chat:write.customize, files:write or reactions:write; Teams without
    // Files.ReadWrite.All (full-form Graph scopes, as Microsoft returns them).
    w.store
        .put_credentials(
            &w.org_a,
            &w.slack,
            &creds(&["chat:write", "channels:history", "groups:history"]),
        )
        .await
        .unwrap();
    w.store
        .put_credentials(
            &w.org_a,
            &w.teams,
            &creds(&[
                "https://graph.microsoft.com/ChannelMessage.Send",
                "https://graph.microsoft.com/ChannelMessage.Read.All",
            ]),
        )
        .await
        .unwrap();
    w
}

fn findings(report: &Value) -> Vec<(String, String)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["severity"].as_str().unwrap().to_owned(),
                f["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn has(report: &Value, severity: &str, code: &str) -> bool {
    findings(report)
        .iter()
        .any(|(s, c)| s == severity && c == code)
}

async fn audit_len(w: &World) -> usize {
    w.store.list_audit(&w.org_a, 0, 1000).await.unwrap().len()
}

async fn import_users(w: &World) {
    let user = |id: &str, name: &str, email: Option<&str>| User {
        id: UserId::new(id).unwrap(),
        display_name: name.into(),
        email: email.map(str::to_owned),
        avatar_url: None,
        is_guest: false,
        is_bot: false,
        is_deleted: false,
    };
    let run = w.store.begin_import(&w.org_a, &w.slack).await.unwrap();
    w.store
        .upsert_users(
            &w.org_a,
            &w.slack,
            run,
            &[
                user("U1", "alice", Some("alice@contoso.test")),
                user("U2", "bob", Some("bob@contoso.test")),
                user("U3", "robert", Some("robert@home.test")),
            ],
        )
        .await
        .unwrap();
    let run = w.store.begin_import(&w.org_a, &w.teams).await.unwrap();
    w.store
        .upsert_users(
            &w.org_a,
            &w.teams,
            run,
            &[
                user("A1", "Alice Anders", Some("Alice@Contoso.test")),
                user("B1", "Bob Berg", Some("bob.berg@contoso.test")),
            ],
        )
        .await
        .unwrap();
}

// ----- admin API ----------------------------------------------------------------------------

#[tokio::test]
async fn the_check_reports_what_degrades_and_changes_nothing() {
    let w = world().await;
    w.store
        .set_connection_health(&w.org_a, &w.teams, ConnectionHealth::NeedsReauth)
        .await
        .unwrap();
    // The Slack connection was made with a personal token.
    let mut slack = w
        .store
        .get_connection(&w.org_a, &w.slack)
        .await
        .unwrap()
        .unwrap();
    slack.account.is_service_account = false;
    w.store.put_connection(&slack).await.unwrap();
    let before = audit_len(&w).await;
    let (s, r) = w
        .json(
            "POST",
            "/api/v1/universal-channels/check",
            Some(&w.token_a),
            Some(json!({"endpoints": [SLACK_C1, TEAMS_A]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["can_link"], true, "{r}");
    for code in [
        "no_sender_identity",
        "files_linked",
        "no_reactions",
        "connection_unhealthy",
        "personal_token",
    ] {
        assert!(has(&r, "degraded", code), "{code} in {r}");
    }
    // files_linked once per platform: Slack's files:write and Teams' Files.ReadWrite.All.
    let files: Vec<&Value> = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "files_linked")
        .collect();
    assert_eq!(files.len(), 2, "{r}");
    assert!(files.iter().any(|f| {
        f["summary"]
            .as_str()
            .unwrap()
            .contains("Files.ReadWrite.All")
    }));
    assert!(has(&r, "info", "teams_daily_cap"));
    assert!(
        r["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["summary"].as_str().unwrap().contains("3,000"))
    );
    // The import recorded no members of team-1: said so, not guessed.
    assert!(has(&r, "unknown", "team_membership_not_recorded"));
    // Granted scopes are not a blocker, and nothing needs a scope that was granted.
    assert!(!findings(&r).iter().any(|(_, c)| c == "cannot_post"), "{r}");
    // Most serious first.
    let sev: Vec<String> = findings(&r).into_iter().map(|(s, _)| s).collect();
    let rank = |s: &str| {
        ["blocker", "degraded", "unknown", "info"]
            .iter()
            .position(|x| *x == s)
    };
    assert!(
        sev.windows(2).all(|p| rank(&p[0]) <= rank(&p[1])),
        "{sev:?}"
    );
    assert_eq!(r["endpoints"][0]["name"], "name-C1");
    assert_eq!(r["endpoints"][1]["health"], "needs_reauth");
    // Nothing changed.
    let (_, list) = w
        .json("GET", "/api/v1/universal-channels", Some(&w.token_a), None)
        .await;
    assert_eq!(list.as_array().unwrap().len(), 0);
    assert_eq!(audit_len(&w).await, before);
}

#[tokio::test]
async fn the_check_names_blockers_private_channels_and_missing_scope_records() {
    let w = World::new(Receivers::default()).await;
    // A private Slack channel, imported.
    let run = w.store.begin_import(&w.org_a, &w.slack).await.unwrap();
    w.store
        .upsert_channels(
            &w.org_a,
            &w.slack,
            run,
            &[Channel {
                id: ChannelId::new("G1").unwrap(),
                team: TeamId::new("T1").unwrap(),
                name: "secret".into(),
                kind: ChannelKind::Private,
                description: None,
            }],
        )
        .await
        .unwrap();
    let check = |endpoints: Value| {
        let w = &w;
        async move {
            w.json(
                "POST",
                "/api/v1/universal-channels/check",
                Some(&w.token_a),
                Some(json!({ "endpoints": endpoints })),
            )
            .await
        }
    };
    let (s, r) = check(json!(["slack:T1/G1", TEAMS_A])).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(r["can_link"], true);
    assert!(has(&r, "unknown", "private_channel_membership"), "{r}");
    // No credentials stored in this world: the scopes are unknown, not assumed.
    assert!(has(&r, "unknown", "scopes_not_recorded"), "{r}");

    let (_, r) = check(json!([SLACK_C1, SLACK_C2])).await;
    assert_eq!(r["can_link"], false);
    assert!(has(&r, "blocker", "one_platform"), "{r}");
    let (_, r) = check(json!(["slack:T1/C9", TEAMS_A])).await;
    assert!(has(&r, "blocker", "not_imported"), "{r}");
    let (_, r) = check(json!([SLACK_C1, SLACK_C1, TEAMS_A])).await;
    assert!(has(&r, "blocker", "duplicate_channel"), "{r}");
    let (_, r) = check(json!([SLACK_C1])).await;
    assert!(has(&r, "blocker", "too_few_endpoints"), "{r}");

    // Linked once: a second link of the same channel is a blocker naming the first.
    let (s, _) = w
        .json(
            "POST",
            "/api/v1/universal-channels",
            Some(&w.token_a),
            Some(json!({"name": "eng", "endpoints": [SLACK_C1, TEAMS_A]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, r) = check(json!([SLACK_C1, TEAMS_A])).await;
    assert!(has(&r, "blocker", "already_linked"), "{r}");
    assert!(r.to_string().contains("\\\"eng\\\""), "{r}");

    // Bad input: 4xx, nothing changes.
    let (s, e) = check(json!(["nonsense", TEAMS_A])).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e["code"], "invalid_input");
    let many: Vec<String> = (0..21).map(|i| format!("slack:T1/C{i}")).collect();
    let (s, _) = check(json!(many)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _, _) = w
        .send(
            Request::post("/api/v1/universal-channels/check")
                .header(
                    "authorization",
                    format!("Bearer {}", w.token_a.expose_secret()),
                )
                .header("content-type", "application/json")
                .body(Body::from("{not json"))
                .unwrap(),
        )
        .await;
    assert!(s.is_client_error(), "{s}");
}

#[tokio::test]
async fn the_check_needs_a_token_and_sees_only_its_organization() {
    let w = world().await;
    let body = Some(json!({"endpoints": [SLACK_C1, TEAMS_A]}));
    let (s, _) = w
        .json(
            "POST",
            "/api/v1/universal-channels/check",
            None,
            body.clone(),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let bad = SecretString::from("sbat_0000000000000000_nope".to_owned());
    let (s, _) = w
        .json(
            "POST",
            "/api/v1/universal-channels/check",
            Some(&bad),
            body.clone(),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Org B has no connection and none of A's channels: nothing of A's shows.
    let (s, r) = w
        .json(
            "POST",
            "/api/v1/universal-channels/check",
            Some(&w.token_b),
            body,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(r["can_link"], false);
    assert!(has(&r, "blocker", "one_platform_connected"), "{r}");
    assert!(has(&r, "blocker", "not_imported"), "{r}");
    assert!(!r.to_string().contains("name-C1"), "{r}");
}

#[tokio::test]
async fn the_identity_map_lists_matches_and_overrides_are_audited() {
    let w = world().await;
    import_users(&w).await;
    let (s, m) = w
        .json("GET", "/api/v1/identities", Some(&w.token_a), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{m}");
    let pairs = m["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 1, "{m}");
    assert_eq!(pairs[0]["a"]["id"], "A1");
    assert_eq!(pairs[0]["b"]["id"], "U1");
    assert_eq!(pairs[0]["matched_by"], "email");
    assert_eq!(m["unmatched"].as_array().unwrap().len(), 3);
    assert_eq!(m["users"], 5);

    let before = audit_len(&w).await;
    // Bob Berg's Teams email differs from his Slack one: an admin links them by hand.
    let link = json!({"a": {"platform": "msteams", "user": "B1"}, "b": {"platform": "slack", "user": "U2"}});
    let (s, _) = w
        .json(
            "POST",
            "/api/v1/identities",
            Some(&w.token_a),
            Some(link.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(
        w.store
            .counterpart(
                &w.org_a,
                PlatformKind::Slack,
                &UserId::new("U2").unwrap(),
                PlatformKind::Msteams
            )
            .await
            .unwrap(),
        Some(UserId::new("B1").unwrap())
    );
    let (_, m) = w
        .json("GET", "/api/v1/identities", Some(&w.token_a), None)
        .await;
    assert!(
        m["pairs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["matched_by"] == "override" && p["a"]["id"] == "B1" && p["b"]["id"] == "U2"),
        "{m}"
    );
    // Linking Alice (Teams) to robert contradicts her email match with alice (Slack).
    let (s, _) = w
        .json(
            "POST",
            "/api/v1/identities",
            Some(&w.token_a),
            Some(json!({"a": {"platform": "msteams", "user": "A1"}, "b": {"platform": "slack", "user": "U3"}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, m) = w
        .json("GET", "/api/v1/identities", Some(&w.token_a), None)
        .await;
    let conflicts = m["conflicts"].as_array().unwrap();
    assert!(
        conflicts
            .iter()
            .any(|c| c["kind"] == "override_contradicts_email"),
        "{m}"
    );
    let entries = w.store.list_audit(&w.org_a, 0, 1000).await.unwrap();
    assert_eq!(entries.len(), before + 2);
    assert_eq!(entries[before].action, "identity.linked");
    assert_eq!(entries[before].target, "msteams:B1");

    // Bad input: 4xx and nothing changes.
    let n = audit_len(&w).await;
    for (body, status) in [
        (
            json!({"a": {"platform": "slack", "user": "U1"}, "b": {"platform": "slack", "user": "U2"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"a": {"platform": "msteams", "user": "ghost"}, "b": {"platform": "slack", "user": "U2"}}),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({"a": {"platform": "myspace", "user": "x"}, "b": {"platform": "slack", "user": "U2"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({"a": "nope"}), StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let (s, e) = w
            .json(
                "POST",
                "/api/v1/identities",
                Some(&w.token_a),
                Some(body.clone()),
            )
            .await;
        assert_eq!(s, status, "{body} → {e}");
    }
    assert_eq!(audit_len(&w).await, n);
    assert_eq!(
        w.store.list_identity_links(&w.org_a).await.unwrap().len(),
        2
    );

    // Another organization: it cannot see, link or unlink org A's people.
    let (_, mb) = w
        .json("GET", "/api/v1/identities", Some(&w.token_b), None)
        .await;
    assert_eq!(mb["users"], 0);
    assert!(mb["pairs"].as_array().unwrap().is_empty());
    let (s, _) = w
        .json("POST", "/api/v1/identities", Some(&w.token_b), Some(link))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = w
        .json(
            "DELETE",
            "/api/v1/identities/slack/U2",
            Some(&w.token_b),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = w
        .json("DELETE", "/api/v1/identities/slack/U2", None, None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = w.json("GET", "/api/v1/identities", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(
        w.store.list_identity_links(&w.org_a).await.unwrap().len(),
        2
    );

    // Unlink: email matching applies again; a second time is 404.
    let (s, _) = w
        .json(
            "DELETE",
            "/api/v1/identities/slack/U2",
            Some(&w.token_a),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = w
        .json(
            "DELETE",
            "/api/v1/identities/slack/U2",
            Some(&w.token_a),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = w
        .json(
            "DELETE",
            "/api/v1/identities/nowhere/U2",
            Some(&w.token_a),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let last = w.store.list_audit(&w.org_a, 0, 1000).await.unwrap();
    assert_eq!(last.last().unwrap().action, "identity.unlinked");
}

#[tokio::test]
async fn the_audit_export_is_the_whole_chain_as_json_lines() {
    let w = world().await;
    for i in 0..3 {
        w.store
            .append_audit(
                &w.org_a,
                NewAuditEntry {
                    actor: Actor::System,
                    action: "test.event".into(),
                    target: format!("t{i}"),
                    details: json!({"i": i}),
                },
            )
            .await
            .unwrap();
    }
    let get = |token: Option<&SecretString>| {
        let mut b = Request::get("/api/v1/audit/export");
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {}", t.expose_secret()));
        }
        b.body(Body::empty()).unwrap()
    };
    let (s, h, body) = w.send(get(Some(&w.token_a))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h[header::CONTENT_TYPE], "application/x-ndjson");
    let text = String::from_utf8(body).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), audit_len(&w).await);
    assert!(lines.len() >= 3);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["seq"], i as u64 + 1);
        if i > 0 {
            assert_eq!(l["prev_hash"], lines[i - 1]["hash"], "chained");
        }
    }
    assert_eq!(lines.last().unwrap()["target"], "t2");
    assert!(!text.contains("at-not-shown"));
    let (s, _, body) = w.send(get(Some(&w.token_b))).await;
    assert_eq!(s, StatusCode::OK);
    assert!(!String::from_utf8(body).unwrap().contains("test.event"));
    let (s, _, _) = w.send(get(None)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_openapi_document_lists_the_new_routes() {
    let w = world().await;
    let (s, doc) = w.json("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    for p in [
        "/api/v1/universal-channels/check",
        "/api/v1/identities",
        "/api/v1/identities/{platform}/{user}",
        "/api/v1/audit/export",
    ] {
        assert!(doc["paths"][p].is_object(), "{p}");
    }
    assert!(doc["paths"]["/api/v1/identities"]["post"].is_object());
}

// ----- console ------------------------------------------------------------------------------

fn form(path: &str, cookie: Option<&str>, body: &str) -> Request<Body> {
    let mut b = Request::post(path).header("content-type", "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    b.body(Body::from(body.to_owned())).unwrap()
}

fn get(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut b = Request::get(path);
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    b.body(Body::empty()).unwrap()
}

fn enc(s: &str) -> String {
    serde_urlencoded::to_string([("x", s)]).unwrap()[2..].to_owned()
}

/// Signs in; returns the session cookie and the page's CSRF token.
async fn sign_in(w: &World, token: &SecretString) -> (String, String) {
    let (s, h, _) = w
        .send(form(
            "/signin",
            None,
            &format!("token={}", token.expose_secret()),
        ))
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let cookie = h[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let (_, _, page) = w.send(get("/universal-channels", Some(&cookie))).await;
    let page = String::from_utf8(page).unwrap();
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    (cookie, csrf)
}

async fn page(w: &World, req: Request<Body>) -> (StatusCode, String, Option<String>) {
    let (s, h, body) = w.send(req).await;
    let location = h
        .get(header::LOCATION)
        .map(|v| v.to_str().unwrap().to_owned());
    (s, unescape(&String::from_utf8(body).unwrap()), location)
}

/// The text of an HTML page as a person reads it (minijinja escapes `/`, quotes, `&`).
fn unescape(html: &str) -> String {
    html.replace("&#x2f;", "/")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[tokio::test]
async fn console_pages_need_a_session() {
    let w = world().await;
    for path in [
        "/universal-channels",
        "/users",
        "/audit",
        "/audit/export",
        "/settings",
    ] {
        let (s, _, to) = page(&w, get(path, None)).await;
        assert!(s.is_redirection(), "{path}: {s}");
        assert_eq!(to.as_deref(), Some("/signin"), "{path}");
        let (s, _, to) = page(&w, get(path, Some("sb_session=forged"))).await;
        assert!(s.is_redirection(), "{path}: {s}");
        assert_eq!(to.as_deref(), Some("/signin"));
    }
    for path in [
        "/universal-channels",
        "/universal-channels/check",
        "/universal-channels/x/delete",
        "/users/link",
        "/users/unlink",
        "/settings/tokens",
        "/settings/tokens/revoke",
    ] {
        let (s, _, to) = page(&w, form(path, None, "csrf=x&name=ci")).await;
        assert!(s.is_redirection(), "{path}: {s}");
        assert_eq!(to.as_deref(), Some("/signin"), "{path}");
    }
    assert_eq!(w.store.list_admin_tokens(&w.org_a).await.unwrap().len(), 1);
}

#[tokio::test]
async fn universal_channels_are_checked_then_linked_and_unlinked_from_the_console() {
    let w = world().await;
    let (cookie, csrf) = sign_in(&w, &w.token_a).await;
    let (s, html, _) = page(&w, get("/universal-channels", Some(&cookie))).await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("aria-current=\"page\""));
    assert!(html.contains("class=\"active\""));
    assert!(
        html.contains(&format!("value=\"{SLACK_C1}\"")),
        "the Slack picker"
    );
    assert!(
        html.contains("value=\"msteams:team-1/19:a@thread.tacv2\""),
        "the Teams picker"
    );
    assert!(html.contains("No universal channel yet"));
    assert!(
        !html.contains("id=\"link-button\""),
        "Link comes after Check"
    );

    let choice = format!(
        "name=eng&endpoint={}&endpoint={}&notices=on",
        enc(SLACK_C1),
        enc(TEAMS_A)
    );
    // Check: the report, the Link button, nothing stored.
    let (s, html, _) = page(
        &w,
        form(
            "/universal-channels/check",
            Some(&cookie),
            &format!("csrf={csrf}&{choice}"),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{html}");
    assert!(html.contains("Capability report"));
    assert!(html.contains("These channels can be linked"));
    assert!(
        html.contains("chat:write.customize"),
        "the missing customize scope is named"
    );
    assert!(html.contains("id=\"link-button\""));
    assert!(
        w.store
            .list_universal_channels(&w.org_a)
            .await
            .unwrap()
            .is_empty()
    );

    // Without the CSRF token: refused, nothing stored.
    let (s, _, _) = page(&w, form("/universal-channels", Some(&cookie), &choice)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, _) = page(
        &w,
        form(
            "/universal-channels",
            Some(&cookie),
            &format!("csrf=forged&{choice}"),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(
        w.store
            .list_universal_channels(&w.org_a)
            .await
            .unwrap()
            .is_empty()
    );

    // Bad input: the blocker in words, 4xx, nothing stored.
    let (s, html, _) = page(
        &w,
        form(
            "/universal-channels",
            Some(&cookie),
            &format!(
                "csrf={csrf}&name=x&endpoint={}&endpoint={}",
                enc(SLACK_C1),
                enc(SLACK_C2)
            ),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("Nothing was linked"), "{html}");
    assert!(html.contains("at least two platforms"));
    let (s, _, _) = page(
        &w,
        form(
            "/universal-channels/check",
            Some(&cookie),
            &format!("csrf={csrf}&endpoint=garbage"),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        w.store
            .list_universal_channels(&w.org_a)
            .await
            .unwrap()
            .is_empty()
    );

    // A third channel through the optional picker: checked and kept in the form.
    let three = format!("{choice}&endpoint={}", enc(SLACK_C2));
    let (s, html, _) = page(
        &w,
        form(
            "/universal-channels/check",
            Some(&cookie),
            &format!("csrf={csrf}&{three}"),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("<details class=\"more\" open>"), "{html}");
    assert!(
        html.contains(&format!("<option value=\"{SLACK_C2}\" selected>")),
        "{html}"
    );
    assert!(html.contains("T1 › #name-C2"));
    assert!(
        w.store
            .list_universal_channels(&w.org_a)
            .await
            .unwrap()
            .is_empty()
    );

    // Link.
    let (s, _, to) = page(
        &w,
        form(
            "/universal-channels",
            Some(&cookie),
            &format!("csrf={csrf}&{choice}"),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let list = w.store.list_universal_channels(&w.org_a).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].name(), "eng");
    assert!(list[0].relay_membership_notices);
    let entries = w.store.list_audit(&w.org_a, 0, 1000).await.unwrap();
    let created = entries.last().unwrap();
    assert_eq!(created.action, "universal_channel.created");
    assert_eq!(
        created.actor,
        Actor::Admin {
            name: "alice".into()
        }
    );
    assert!(
        created.details["degraded"]
            .as_array()
            .unwrap()
            .contains(&json!("no_sender_identity"))
    );
    let (_, html, _) = page(&w, get(&to.unwrap(), Some(&cookie))).await;
    assert!(html.contains("Linked \"eng\""), "{html}");
    assert!(html.contains("id=\"universal-channels\""));
    assert!(html.contains("T1 › #name-C1"), "{html}");
    // A linked channel is no longer offered in the pickers.
    assert!(!html.contains(&format!("<option value=\"{SLACK_C1}\"")));
    let id = list[0].id().to_string();

    // Another organization's session cannot see or unlink it.
    let (cookie_b, csrf_b) = sign_in(&w, &w.token_b).await;
    let (_, html_b, _) = page(&w, get("/universal-channels", Some(&cookie_b))).await;
    assert!(!html_b.contains("eng"));
    assert!(html_b.contains("Connect two platforms first"));
    let (s, _, _) = page(
        &w,
        form(
            &format!("/universal-channels/{id}/delete"),
            Some(&cookie_b),
            &format!("csrf={csrf_b}"),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Unlink without CSRF: refused.
    let (s, _, _) = page(
        &w,
        form(
            &format!("/universal-channels/{id}/delete"),
            Some(&cookie),
            "",
        ),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(
        w.store
            .list_universal_channels(&w.org_a)
            .await
            .unwrap()
            .len(),
        1
    );

    let (s, _, _) = page(
        &w,
        form(
            &format!("/universal-channels/{id}/delete"),
            Some(&cookie),
            &format!("csrf={csrf}"),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert!(
        w.store
            .list_universal_channels(&w.org_a)
            .await
            .unwrap()
            .is_empty()
    );
    let last = w.store.list_audit(&w.org_a, 0, 1000).await.unwrap();
    assert_eq!(last.last().unwrap().action, "universal_channel.deleted");
    let (s, _, _) = page(
        &w,
        form(
            &format!("/universal-channels/{id}/delete"),
            Some(&cookie),
            &format!("csrf={csrf}"),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_users_page_shows_the_identity_map_and_takes_overrides() {
    let w = world().await;
    import_users(&w).await;
    let (cookie, csrf) = sign_in(&w, &w.token_a).await;
    let (s, html, _) = page(&w, get("/users", Some(&cookie))).await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("Alice Anders"));
    assert!(html.contains("id=\"email-matches\""));
    assert!(html.contains("Bob Berg"), "unmatched people are listed");
    assert!(html.contains("No override"));

    // Link by email address on one side and id on the other.
    let body = format!(
        "csrf={csrf}&msteams={}&slack=U2",
        enc("bob.berg@contoso.test")
    );
    let (s, _, _) = page(
        &w,
        form("/users/link", Some(&cookie), "msteams=B1&slack=U2"),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "no CSRF token");
    assert!(
        w.store
            .list_identity_links(&w.org_a)
            .await
            .unwrap()
            .is_empty()
    );
    let (s, _, to) = page(&w, form("/users/link", Some(&cookie), &body)).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let links = w.store.list_identity_links(&w.org_a).await.unwrap();
    assert_eq!(links.len(), 1);
    assert_eq!(
        links[0].a,
        (PlatformKind::Msteams, UserId::new("B1").unwrap())
    );
    let (_, html, _) = page(&w, get(&to.unwrap(), Some(&cookie))).await;
    assert!(html.contains("id=\"overrides\""));
    assert!(html.contains("Remove override"));

    // Unknown accounts: said in words, nothing changes.
    let (s, html, _) = page(
        &w,
        form(
            "/users/link",
            Some(&cookie),
            &format!(
                "csrf={csrf}&msteams={}&slack=U1",
                enc("nobody@contoso.test")
            ),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        html.contains("No Microsoft Teams account has the email nobody@contoso.test"),
        "{html}"
    );
    let (s, _, _) = page(
        &w,
        form(
            "/users/link",
            Some(&cookie),
            &format!("csrf={csrf}&msteams=ghost&slack=U1"),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        w.store.list_identity_links(&w.org_a).await.unwrap().len(),
        1
    );

    // Org B cannot remove org A's override.
    let (cookie_b, csrf_b) = sign_in(&w, &w.token_b).await;
    let (s, _, _) = page(
        &w,
        form(
            "/users/unlink",
            Some(&cookie_b),
            &format!("csrf={csrf_b}&platform=msteams&user=B1"),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        w.store.list_identity_links(&w.org_a).await.unwrap().len(),
        1
    );
    let (s, _, _) = page(
        &w,
        form(
            "/users/unlink",
            Some(&cookie),
            &format!("csrf={csrf}&platform=msteams&user=B1"),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert!(
        w.store
            .list_identity_links(&w.org_a)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn the_audit_page_pages_verifies_and_exports() {
    let w = world().await;
    for i in 0..120 {
        w.store
            .append_audit(
                &w.org_a,
                NewAuditEntry {
                    actor: Actor::System,
                    action: "test.event".into(),
                    target: format!("target-{i:03}"),
                    details: json!({}),
                },
            )
            .await
            .unwrap();
    }
    let total = audit_len(&w).await;
    let (cookie, _) = sign_in(&w, &w.token_a).await;
    let (s, html, _) = page(&w, get("/audit", Some(&cookie))).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        html.contains(&format!("Chain verified: all {total} entries")),
        "{html}"
    );
    assert!(html.contains("target-119"), "the latest page first");
    assert!(!html.contains("target-000"));
    assert!(html.contains("Older →"));
    let (_, html, _) = page(&w, get("/audit?after=0", Some(&cookie))).await;
    assert!(html.contains("target-000"));
    assert!(!html.contains("target-119"));
    assert!(html.contains("← Newer"));
    let (s, _, _) = page(&w, get("/audit?after=banana", Some(&cookie))).await;
    assert!(s.is_client_error());
    let (s, text, _) = page(&w, get("/audit/export", Some(&cookie))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(text.lines().count(), total);
    // Org B sees none of it.
    let (cookie_b, _) = sign_in(&w, &w.token_b).await;
    let (_, html, _) = page(&w, get("/audit", Some(&cookie_b))).await;
    assert!(!html.contains("target-"));
    let (_, text, _) = page(&w, get("/audit/export", Some(&cookie_b))).await;
    assert!(!text.contains("target-"));
}

#[tokio::test]
async fn settings_show_the_organization_urls_and_manage_tokens() {
    let w = world().await;
    let (cookie, csrf) = sign_in(&w, &w.token_a).await;
    let (s, html, _) = page(&w, get("/settings", Some(&cookie))).await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("Contoso"));
    assert!(html.contains(w.org_a.as_str()));
    assert!(html.contains("https://sb.contoso.test/webhooks/slack/events"));
    assert!(html.contains("https://sb.contoso.test/webhooks/msteams/notifications"));
    assert!(html.contains("https://sb.contoso.test/connect/msteams/callback"));
    assert!(html.contains("you signed in with this name"));
    assert!(!html.contains(w.token_a.expose_secret()));

    // No CSRF, a bad name: nothing created.
    let (s, _, _) = page(&w, form("/settings/tokens", Some(&cookie), "name=ci")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, html, _) = page(
        &w,
        form(
            "/settings/tokens",
            Some(&cookie),
            &format!("csrf={csrf}&name={}", enc("two words")),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("No token was created"));
    assert_eq!(w.store.list_admin_tokens(&w.org_a).await.unwrap().len(), 1);
    let (s, _, _) = page(
        &w,
        form(
            "/settings/tokens",
            Some(&cookie),
            &format!("csrf={csrf}&name="),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _, _) = page(
        &w,
        form(
            "/settings/tokens/revoke",
            Some(&cookie),
            &format!("csrf={csrf}&name=nobody"),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(w.store.list_admin_tokens(&w.org_a).await.unwrap().len(), 1);

    // Create: shown once (never cached), and it works.
    let (s, h, _) = w
        .send(form(
            "/settings/tokens",
            Some(&cookie),
            &format!("csrf={csrf}&name=probe"),
        ))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h[header::CACHE_CONTROL], "no-store");
    let (s, html, _) = page(
        &w,
        form(
            "/settings/tokens",
            Some(&cookie),
            &format!("csrf={csrf}&name=ci"),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let token = html
        .split("<code class=\"token\">")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_owned();
    let token = SecretString::from(token);
    let p = w
        .store
        .authenticate_admin_token(&token)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.org, w.org_a);
    assert_eq!(p.name, "ci");
    let (_, html, _) = page(&w, get("/settings", Some(&cookie))).await;
    assert!(!html.contains(token.expose_secret()), "shown once only");

    // Org B cannot revoke it; org A can.
    let (cookie_b, csrf_b) = sign_in(&w, &w.token_b).await;
    let (s, _, _) = page(
        &w,
        form(
            "/settings/tokens/revoke",
            Some(&cookie_b),
            &format!("csrf={csrf_b}&name=ci"),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(
        w.store
            .authenticate_admin_token(&token)
            .await
            .unwrap()
            .is_some()
    );
    let (s, _, _) = page(
        &w,
        form("/settings/tokens/revoke", Some(&cookie), "name=ci"),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, html, _) = page(
        &w,
        form(
            "/settings/tokens/revoke",
            Some(&cookie),
            &format!("csrf={csrf}&name=ci"),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("Revoked every token named"));
    assert!(
        w.store
            .authenticate_admin_token(&token)
            .await
            .unwrap()
            .is_none()
    );
    let actions: Vec<String> = w
        .store
        .list_audit(&w.org_a, 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(actions.contains(&"admin_token.created".to_owned()));
    assert!(actions.contains(&"admin_token.revoked".to_owned()));
    assert!(!format!("{actions:?}").contains(token.expose_secret()));
}

#[tokio::test]
async fn accounts_matched_by_email_can_be_kept_apart() {
    let w = world().await;
    import_users(&w).await;
    let apart = json!({"a": {"platform": "msteams", "user": "A1"}, "b": {"platform": "slack", "user": "U1"}, "relation": "different"});
    let (s, _) = w
        .json(
            "POST",
            "/api/v1/identities",
            Some(&w.token_b),
            Some(apart.clone()),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "another org's people are not found"
    );
    let bad = json!({"a": {"platform": "msteams", "user": "A1"}, "b": {"platform": "slack", "user": "U1"}, "relation": "cousins"});
    let (s, _) = w
        .json("POST", "/api/v1/identities", Some(&w.token_a), Some(bad))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        w.store
            .list_identity_separations(&w.org_a)
            .await
            .unwrap()
            .is_empty()
    );
    let (s, _) = w
        .json("POST", "/api/v1/identities", Some(&w.token_a), Some(apart))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, m) = w
        .json("GET", "/api/v1/identities", Some(&w.token_a), None)
        .await;
    assert!(m["pairs"].as_array().unwrap().is_empty(), "{m}");
    assert_eq!(m["separations"][0]["a"]["id"], "A1");
    assert_eq!(
        w.store
            .counterpart(
                &w.org_a,
                PlatformKind::Msteams,
                &UserId::new("A1").unwrap(),
                PlatformKind::Slack
            )
            .await
            .unwrap(),
        None,
        "the relay's lookup agrees"
    );
    let last = w.store.list_audit(&w.org_a, 0, 1000).await.unwrap();
    assert_eq!(last.last().unwrap().action, "identity.separated");

    // From the console: remove the override, then separate again with the button's form.
    let (cookie, csrf) = sign_in(&w, &w.token_a).await;
    let (_, html, _) = page(&w, get("/users", Some(&cookie))).await;
    assert!(html.contains("id=\"separations\""), "{html}");
    let (s, _, _) = page(
        &w,
        form(
            "/users/unlink",
            Some(&cookie),
            &format!("csrf={csrf}&platform=msteams&user=A1"),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let (_, html, _) = page(&w, get("/users", Some(&cookie))).await;
    assert!(html.contains("Not the same person"));
    let fields = "a_platform=msteams&a_user=A1&b_platform=slack&b_user=U1";
    let (s, _, _) = page(&w, form("/users/separate", Some(&cookie), fields)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, _) = page(
        &w,
        form(
            "/users/separate",
            Some(&cookie),
            &format!("csrf={csrf}&a_platform=slack&a_user=U1&b_platform=slack&b_user=U2"),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        w.store
            .list_identity_separations(&w.org_a)
            .await
            .unwrap()
            .is_empty()
    );
    let (s, _, to) = page(
        &w,
        form(
            "/users/separate",
            Some(&cookie),
            &format!("csrf={csrf}&{fields}"),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(
        w.store
            .list_identity_separations(&w.org_a)
            .await
            .unwrap()
            .len(),
        1
    );
    let (_, html, _) = page(&w, get(&to.unwrap(), Some(&cookie))).await;
    assert!(html.contains("no longer matched by email"), "{html}");
}
