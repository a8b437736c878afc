//! Slack OAuth v2 emulation: consent page → Accept → `oauth.v2.access`, token rotation,
//! expiry and revocation.

#[allow(unused_imports)]
use crate::slack_support;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use slack_support::{Env, assert_valid, start};
use switchboard_sandbox::Seed;

const REDIRECT: &str = "http://127.0.0.1:9/connect/slack/callback";

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The hidden inputs of the consent form, in order.
fn hidden_inputs(html: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for part in html.split("<input ").skip(1) {
        let tag = &part[..part.find('>').unwrap()];
        let attr = |name: &str| {
            let key = format!("{name}=\"");
            let start = tag.find(&key)? + key.len();
            let end = start + tag[start..].find('"')?;
            Some(unescape(&tag[start..end]))
        };
        if attr("type").as_deref() == Some("hidden") {
            out.push((attr("name").unwrap(), attr("value").unwrap()));
        }
    }
    out
}

/// Opens the consent page like a program would and submits the form; returns the Location.
async fn consent(env: &Env, scope: &str, user_scope: &str, state: &str, decision: &str) -> String {
    let client_id = env.info["slack"]["client_id"].as_str().unwrap();
    let page = env
        .http
        .get(format!("{}/slack/oauth/v2/authorize", env.base))
        .query(&[
            ("client_id", client_id),
            ("scope", scope),
            ("user_scope", user_scope),
            ("redirect_uri", REDIRECT),
            ("state", state),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("Switchboard"), "app name shown");
    assert!(html.contains("Contoso"), "workspace shown");
    for s in scope.split(',').filter(|s| !s.is_empty()) {
        assert!(html.contains(s), "scope {s} listed");
    }
    assert!(
        html.contains(r#"<button type="submit" name="decision" value="accept">Accept</button>"#)
    );
    assert!(html.contains(r#"method="post" action="/slack/oauth/v2/authorize""#));
    let mut form = hidden_inputs(&html);
    assert_eq!(
        form.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        ["client_id", "scope", "user_scope", "redirect_uri", "state"]
    );
    form.push(("decision".into(), decision.into()));
    let resp = env
        .http
        .post(format!("{}/slack/oauth/v2/authorize", env.base))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND);
    resp.headers()["location"].to_str().unwrap().to_owned()
}

fn query_param(location: &str, key: &str) -> Option<String> {
    let url = url::Url::parse(location).unwrap();
    url.query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

async fn exchange(env: &Env, params: &[(&str, &str)], basic: Option<(&str, &str)>) -> Value {
    let mut req = env
        .http
        .post(format!("{}oauth.v2.access", env.api))
        .form(params);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.unwrap()
}

#[tokio::test]
async fn install_exchange_refresh_expire_revoke() {
    let env = start(Seed::Small, 0.0).await;
    let client_id = env.info["slack"]["client_id"].as_str().unwrap().to_owned();
    let secret = env.info["slack"]["client_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let creds = Some((client_id.as_str(), secret.as_str()));

    let location = consent(&env, "users:read,chat:write", "", "st-1", "accept").await;
    assert!(location.starts_with(REDIRECT), "{location}");
    assert_eq!(query_param(&location, "state").as_deref(), Some("st-1"));
    let code = query_param(&location, "code").expect("code");

    // wrong secret, unknown client, wrong redirect URI: refused
    let v = exchange(
        &env,
        &[("code", &code), ("redirect_uri", REDIRECT)],
        Some((&client_id, "not-the-secret")),
    )
    .await;
    assert_eq!(v, json!({"ok": false, "error": "bad_client_secret"}));
    let v = exchange(
        &env,
        &[("code", &code), ("redirect_uri", REDIRECT)],
        Some(("123.456", &secret)),
    )
    .await;
    assert_eq!(v["error"], "invalid_client_id");
    let v = exchange(
        &env,
        &[
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:9/elsewhere"),
        ],
        creds,
    )
    .await;
    assert_eq!(v["error"], "bad_redirect_uri");

    let v = exchange(&env, &[("code", &code), ("redirect_uri", REDIRECT)], creds).await;
    assert_eq!(v["ok"], true, "{v}");
    assert_valid("oauth.v2.access", &v);
    let access = v["access_token"].as_str().unwrap().to_owned();
    let refresh = v["refresh_token"].as_str().unwrap().to_owned();
    assert!(access.starts_with("xoxe.xoxb-"), "{access}");
    assert!(refresh.starts_with("xoxe-1-"), "{refresh}");
    assert_eq!(v["token_type"], "bot");
    assert_eq!(v["scope"], "users:read,chat:write");
    assert_eq!(v["expires_in"], 43200);
    assert_eq!(v["bot_user_id"], env.seed["bot_user_id"]);
    assert_eq!(v["app_id"], env.info["slack"]["app_id"]);
    assert_eq!(
        v["team"],
        json!({"id": env.seed["team_id"], "name": "Contoso"})
    );
    assert_eq!(v["authed_user"], json!({"id": env.user_id("alice")}));
    assert_eq!(v["enterprise"], Value::Null);
    assert_eq!(v["is_enterprise_install"], false);

    // the code is single use
    let again = exchange(&env, &[("code", &code), ("redirect_uri", REDIRECT)], creds).await;
    assert_eq!(again["error"], "invalid_code");

    // the token works, within its scopes
    assert_eq!(env.call("auth.test", &access, &[]).await["ok"], true);
    assert_eq!(env.call("users.list", &access, &[]).await["ok"], true);
    let v = env.call("conversations.list", &access, &[]).await;
    assert_eq!(
        v,
        json!({"ok": false, "error": "missing_scope", "needed": "channels:read",
               "provided": "users:read,chat:write"})
    );
    let v = env.call("users.list", &access, &[("limit", "1")]).await;
    assert!(
        v["members"][0]["profile"].get("email").is_none(),
        "no email without users:read.email"
    );
    let v = env
        .call(
            "chat.postMessage",
            &access,
            &[
                ("channel", "general"),
                ("text", "hi"),
                ("username", "Someone"),
            ],
        )
        .await;
    // without chat:write.customize Slack ignores `username` silently (no missing_scope)
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["message"].get("username").is_none(), "{v}");

    // refresh rotates: a new pair, the old refresh token dies
    let v = exchange(
        &env,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
        creds,
    )
    .await;
    assert_eq!(v["ok"], true, "{v}");
    let access2 = v["access_token"].as_str().unwrap().to_owned();
    let refresh2 = v["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(access2, access);
    assert_ne!(refresh2, refresh);
    assert_eq!(v["scope"], "users:read,chat:write");
    assert_eq!(v["expires_in"], 43200);
    let v = exchange(
        &env,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
        creds,
    )
    .await;
    assert_eq!(v, json!({"ok": false, "error": "invalid_refresh_token"}));
    assert_eq!(env.call("auth.test", &access2, &[]).await["ok"], true);

    // credentials as form fields work too
    let v = exchange(
        &env,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh2),
            ("client_id", &client_id),
            ("client_secret", &secret),
        ],
        None,
    )
    .await;
    assert_eq!(v["ok"], true, "{v}");
    let access3 = v["access_token"].as_str().unwrap().to_owned();
    let refresh3 = v["refresh_token"].as_str().unwrap().to_owned();

    // expiry and revocation through the control API
    let (st, _) = env
        .control(
            Method::POST,
            "/tokens/expire",
            Some(json!({"token": access3})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        env.call("auth.test", &access3, &[]).await,
        json!({"ok": false, "error": "token_expired"})
    );
    let (st, _) = env
        .control(
            Method::POST,
            "/tokens/revoke",
            Some(json!({"token": access2})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        env.call("auth.test", &access2, &[]).await["error"],
        "token_revoked"
    );
    let (st, _) = env
        .control(
            Method::POST,
            "/tokens/revoke",
            Some(json!({"token": refresh3})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let v = exchange(
        &env,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh3),
        ],
        creds,
    )
    .await;
    assert_eq!(v["error"], "invalid_refresh_token");
    let v = exchange(&env, &[("grant_type", "password")], creds).await;
    assert_eq!(v["error"], "invalid_grant_type");
}

#[tokio::test]
async fn cancel_bad_requests_and_user_tokens() {
    let env = start(Seed::Small, 0.0).await;
    let client_id = env.info["slack"]["client_id"].as_str().unwrap().to_owned();
    let secret = env.info["slack"]["client_secret"]
        .as_str()
        .unwrap()
        .to_owned();

    let location = consent(&env, "chat:write", "", "st-2", "cancel").await;
    assert_eq!(
        query_param(&location, "error").as_deref(),
        Some("access_denied")
    );
    assert_eq!(query_param(&location, "state").as_deref(), Some("st-2"));
    assert!(query_param(&location, "code").is_none());

    let page = |q: Vec<(&'static str, String)>| {
        let env = &env;
        async move {
            env.http
                .get(format!("{}/slack/oauth/v2/authorize", env.base))
                .query(&q)
                .send()
                .await
                .unwrap()
        }
    };
    let resp = page(vec![
        ("client_id", "999.999".into()),
        ("scope", "chat:write".into()),
        ("redirect_uri", REDIRECT.into()),
    ])
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.text().await.unwrap().contains("invalid_client_id"));
    let resp = page(vec![
        ("client_id", client_id.clone()),
        ("scope", "chat:write,not:a:scope".into()),
        ("redirect_uri", REDIRECT.into()),
    ])
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.text().await.unwrap().contains("invalid_scope"));
    let resp = page(vec![
        ("client_id", client_id.clone()),
        ("scope", "chat:write".into()),
        ("redirect_uri", "javascript:alert(1)".into()),
    ])
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    // the page escapes what it echoes
    let resp = page(vec![
        ("client_id", client_id.clone()),
        ("scope", "chat:write".into()),
        ("redirect_uri", REDIRECT.into()),
        ("state", "\"><script>x</script>".into()),
    ])
    .await;
    let html = resp.text().await.unwrap();
    assert!(!html.contains("<script>"));
    assert!(html.contains("&quot;&gt;&lt;script&gt;"));

    // bot + user scopes: the user token acts as the installing user
    let location = consent(
        &env,
        "chat:write",
        "chat:write,channels:history,channels:write",
        "st-3",
        "accept",
    )
    .await;
    let code = query_param(&location, "code").unwrap();
    let v = exchange(
        &env,
        &[("code", &code), ("redirect_uri", REDIRECT)],
        Some((&client_id, &secret)),
    )
    .await;
    assert_eq!(v["ok"], true, "{v}");
    let user = &v["authed_user"];
    assert_eq!(user["id"], env.user_id("alice"));
    assert_eq!(user["token_type"], "user");
    assert_eq!(user["scope"], "chat:write,channels:history,channels:write");
    let user_token = user["access_token"].as_str().unwrap().to_owned();
    assert!(user_token.starts_with("xoxe.xoxp-"));
    let posted = env
        .call(
            "chat.postMessage",
            &user_token,
            &[("channel", "random"), ("text", "typed by Alice")],
        )
        .await;
    assert_eq!(posted["ok"], true, "{posted}");
    assert_eq!(posted["message"]["user"], env.user_id("alice"));
    assert!(posted["message"].get("bot_id").is_none());
    let who = env.call("auth.test", &user_token, &[]).await;
    assert_eq!(who["user_id"], env.user_id("alice"));
    assert!(who.get("bot_id").is_none());

    // conversations.leave (a user scope): leaving, then leaving again
    let random = env.channel_id("random");
    let left = env
        .call("conversations.leave", &user_token, &[("channel", &random)])
        .await;
    assert_eq!(left, json!({"ok": true}));
    assert_valid("conversations.leave", &left);
    let again = env
        .call("conversations.leave", &user_token, &[("channel", &random)])
        .await;
    assert_eq!(again, json!({"ok": true, "not_in_channel": true}));
    assert_valid("conversations.leave", &again);
    let general = env.channel_id("general");
    let v = env
        .call("conversations.leave", &user_token, &[("channel", &general)])
        .await;
    assert_eq!(v["error"], "cant_leave_general");
}

#[tokio::test]
async fn without_chat_write_customize_overrides_are_ignored_silently() {
    let env = start(Seed::Small, 0.0).await;
    let client_id = env.info["slack"]["client_id"].as_str().unwrap().to_owned();
    let secret = env.info["slack"]["client_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let location = consent(&env, "chat:write,channels:join", "", "st-c", "accept").await;
    let code = query_param(&location, "code").expect("code");
    let v = exchange(
        &env,
        &[("code", &code), ("redirect_uri", REDIRECT)],
        Some((&client_id, &secret)),
    )
    .await;
    assert_eq!(v["ok"], true, "{v}");
    let token = v["access_token"].as_str().unwrap().to_owned();
    let general = env.channel_id("general");
    let joined = env
        .call("conversations.join", &token, &[("channel", &general)])
        .await;
    assert_eq!(joined["ok"], true, "{joined}");
    let v = env
        .call(
            "chat.postMessage",
            &token,
            &[
                ("channel", &general),
                ("text", "hello"),
                ("username", "Jane Doe"),
                ("icon_url", "https://example.com/jane.png"),
            ],
        )
        .await;
    assert_eq!(v["ok"], true, "no missing_scope, as on Slack: {v}");
    assert!(v["message"].get("username").is_none(), "{v}");
    let (_, stored) = env
        .control(Method::GET, "/channels/general/messages", None)
        .await;
    let m = stored["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["ts"] == v["ts"])
        .unwrap()
        .clone();
    assert_eq!(m["username"], Value::Null);
    assert_eq!(m["icon_url"], Value::Null);
}
