//! Microsoft identity platform emulation: authorization code + PKCE through the consent
//! page, refresh-token rotation and revocation, access-token expiry, client credentials.

#[allow(unused_imports)]
use crate::msteams_support;

use msteams_support::*;
use reqwest::Method;
use serde_json::json;
use switchboard_sandbox::Seed;

const REDIRECT: &str = "http://127.0.0.1:9/connect/msteams/callback";

#[tokio::test]
async fn authorization_code_with_pkce_end_to_end() {
    let env = start(Seed::Small, 1.0).await;
    let (verifier, challenge) = pkce();
    let code = sign_in(&env, REDIRECT, &challenge, &env.svc_upn, &env.svc_password).await;
    let r = env
        .token(&[
            ("grant_type", "authorization_code"),
            ("client_id", &env.client_id),
            ("client_secret", &env.client_secret),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
            ("scope", SCOPES),
        ])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["token_type"], "Bearer");
    assert_eq!(r.body["expires_in"], 3599);
    assert!(r.body["ext_expires_in"].is_number());
    assert!(
        r.body["refresh_token"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
    let scope = r.body["scope"].as_str().unwrap();
    assert!(
        scope.contains("https://graph.microsoft.com/ChannelMessage.Send"),
        "{scope}"
    );
    // id_token: a JWT-shaped string whose payload names the user
    let id_token = r.body["id_token"].as_str().unwrap();
    let payload = id_token.split('.').nth(1).unwrap();
    use base64::Engine as _;
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["preferred_username"], env.svc_upn.as_str());
    assert_eq!(claims["aud"], env.client_id.as_str());
    assert_eq!(claims["tid"], env.tenant.as_str());
    // the access token works on Graph and names the signed-in user
    let access = r.body["access_token"].as_str().unwrap();
    let me = env.get(access, "/me").await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.body["userPrincipalName"], env.svc_upn.as_str());

    // the same code cannot be redeemed twice
    let again = env
        .token(&[
            ("grant_type", "authorization_code"),
            ("client_id", &env.client_id),
            ("client_secret", &env.client_secret),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ])
        .await;
    assert_eq!(again.status, 400);
    assert_eq!(again.body["error"], "invalid_grant");
    assert_eq!(again.body["error_codes"][0], 54005);
    for k in [
        "error_description",
        "timestamp",
        "trace_id",
        "correlation_id",
    ] {
        assert!(again.body[k].is_string(), "{k} missing: {}", again.body);
    }
}

#[tokio::test]
async fn wrong_verifier_and_wrong_redirect_fail() {
    let env = start(Seed::Small, 1.0).await;
    let (verifier, challenge) = pkce();

    let code = sign_in(&env, REDIRECT, &challenge, &env.svc_upn, &env.svc_password).await;
    let (other_verifier, _) = pkce();
    let r = env
        .token(&[
            ("grant_type", "authorization_code"),
            ("client_id", &env.client_id),
            ("client_secret", &env.client_secret),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &other_verifier),
        ])
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error"], "invalid_grant", "{}", r.body);
    assert!(r.body["access_token"].is_null());

    let code = sign_in(&env, REDIRECT, &challenge, &env.svc_upn, &env.svc_password).await;
    let r = env
        .token(&[
            ("grant_type", "authorization_code"),
            ("client_id", &env.client_id),
            ("client_secret", &env.client_secret),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:9/other"),
            ("code_verifier", &verifier),
        ])
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error"], "invalid_grant", "{}", r.body);

    // a wrong client secret is invalid_client (401)
    let r = env
        .token(&[
            ("grant_type", "authorization_code"),
            ("client_id", &env.client_id),
            ("client_secret", "nope"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ])
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.body["error"], "invalid_client");

    // unknown grant types
    let r = env
        .token(&[("grant_type", "password"), ("client_id", &env.client_id)])
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error"], "unsupported_grant_type");
}

#[tokio::test]
async fn consent_page_errors_and_cancel() {
    let env = start(Seed::Small, 1.0).await;
    let (_, challenge) = pkce();
    // wrong password: the page again, with an error, and no redirect
    let url = authorize_url(&env, REDIRECT, &challenge, "s1", &env.jr_upn);
    let r = submit_consent(&env, &url, &env.jr_upn, "wrong", "accept").await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("AADSTS50126"), "{html}");
    assert!(html.contains(&format!("value=\"{}\"", env.jr_upn)));
    // cancel: back to the client with access_denied and the state
    let r = submit_consent(&env, &url, &env.jr_upn, "", "cancel").await;
    assert_eq!(r.status(), 302);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(loc.starts_with(REDIRECT));
    assert!(loc.contains("error=access_denied"), "{loc}");
    assert!(loc.contains("state=s1"), "{loc}");
    // an unregistered redirect URI never redirects
    let bad = authorize_url(&env, "https://evil.example/cb", &challenge, "s", "");
    let r = env.http.get(&bad).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("AADSTS50011"));
    // an unknown scope goes back to the client as invalid_scope
    let u = authorize_url(&env, REDIRECT, &challenge, "s2", "")
        .replace("Team.ReadBasic.All", "Nope.Nope");
    let r = env.http.get(&u).send().await.unwrap();
    assert_eq!(r.status(), 302);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .contains("error=invalid_scope")
    );
    // tenant by domain works too
    let u = authorize_url(&env, REDIRECT, &challenge, "s3", "").replace(
        &format!("/microsoft/{}/", env.tenant),
        "/microsoft/contoso.onmicrosoft.com/",
    );
    assert_eq!(env.http.get(&u).send().await.unwrap().status(), 200);
}

async fn fresh_tokens(env: &Env, user: &str, password: &str) -> (String, String) {
    let (verifier, challenge) = pkce();
    let code = sign_in(env, REDIRECT, &challenge, user, password).await;
    let r = env
        .token(&[
            ("grant_type", "authorization_code"),
            ("client_id", &env.client_id),
            ("client_secret", &env.client_secret),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    (
        r.body["access_token"].as_str().unwrap().to_owned(),
        r.body["refresh_token"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn refresh_rotates_and_old_token_fails_and_revocation_is_invalid_grant() {
    let env = start(Seed::Small, 1.0).await;
    let (_, refresh1) = fresh_tokens(&env, &env.svc_upn, &env.svc_password).await;
    let refresh = |rt: String| {
        let env = &env;
        async move {
            env.token(&[
                ("grant_type", "refresh_token"),
                ("client_id", &env.client_id),
                ("client_secret", &env.client_secret),
                ("refresh_token", &rt),
            ])
            .await
        }
    };
    let r = refresh(refresh1.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let refresh2 = r.body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(refresh2, refresh1, "a new refresh token every time");
    let access2 = r.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(env.get(&access2, "/me").await.status, 200);
    // the old one is dead
    let r = refresh(refresh1).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error"], "invalid_grant");
    // revoking the user's sessions kills the current one too
    let rv = env
        .control(
            Method::POST,
            "/msteams/tokens/revoke",
            Some(json!({"user": env.svc_upn})),
        )
        .await;
    assert_eq!(rv.status, 200);
    assert_eq!(rv.body["revoked"], 1);
    let r = refresh(refresh2).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error"], "invalid_grant");
    assert_eq!(r.body["error_codes"][0], 50173);
}

#[tokio::test]
async fn expired_access_token_gets_401() {
    let env = start(Seed::Small, 1.0).await;
    let (access, _) = fresh_tokens(&env, &env.jr_upn, &env.jr_password).await;
    assert_eq!(env.get(&access, "/me").await.status, 200);
    let r = env
        .control(
            Method::POST,
            "/msteams/tokens/expire",
            Some(json!({"token": access})),
        )
        .await;
    assert_eq!(r.status, 200);
    let me = env.get(&access, "/me").await;
    assert_eq!(me.status, 401);
    assert_eq!(me.error_code(), "InvalidAuthenticationToken");
    assert!(me.body["error"]["innerError"]["request-id"].is_string());
    // no token / garbage token
    let r = env
        .http
        .get(format!("{}/me", env.graph))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(env.get("garbage", "/me").await.status, 401);
}

#[tokio::test]
async fn client_credentials_token_cannot_post_messages() {
    let env = start(Seed::Small, 1.0).await;
    let r = env
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", &env.client_id),
            ("client_secret", &env.client_secret),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body["refresh_token"].is_null());
    let app = r.body["access_token"].as_str().unwrap().to_owned();
    // app-only reads work …
    let (team, general) = env.channel("Engineering", "General").await;
    assert_eq!(env.get(&app, "/teams").await.status, 200);
    let msgs = env
        .get(&app, &format!("/teams/{team}/channels/{general}/messages"))
        .await;
    assert_eq!(msgs.status, 200, "{}", msgs.body);
    // … posting does not
    let p = env
        .post(
            &app,
            &format!("/teams/{team}/channels/{general}/messages"),
            json!({"body": {"content": "hi"}}),
        )
        .await;
    assert_eq!(p.status, 403);
    assert_eq!(p.error_code(), "Unauthorized");
    // /me needs a user
    assert_eq!(env.get(&app, "/me").await.status, 400);
    // a delegated scope in client credentials is invalid_scope
    let r = env
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", &env.client_id),
            ("client_secret", &env.client_secret),
            ("scope", "https://graph.microsoft.com/User.Read.All"),
        ])
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error"], "invalid_scope");
}
