//! The console's sign-in and the OAuth connect flow, with a fake platform whose account lacks
//! a role.

use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use secrecy::{ExposeSecret, SecretString};
use switchboard_core::*;
use switchboard_server::Receivers;
use time::OffsetDateTime;

use crate::support::World;

#[derive(Debug)]
struct FakeTeams;

#[async_trait]
impl Authorizer for FakeTeams {
    fn platform(&self) -> PlatformKind {
        PlatformKind::Msteams
    }
    fn uses_pkce(&self) -> bool {
        true
    }
    fn authorize_url(&self, redirect: &str, state: &str, pkce: Option<&str>) -> Result<String> {
        Ok(format!(
            "https://login.test/authorize?redirect_uri={redirect}&state={state}&code_challenge={}&code_challenge_method=S256",
            pkce.unwrap()
        ))
    }
    async fn complete(
        &self,
        code: &SecretString,
        _redirect: &str,
        verifier: Option<&SecretString>,
    ) -> Result<Authorized> {
        if code.expose_secret() != "good-code" || verifier.is_none() {
            return Err(Error::new(ErrorKind::Unauthorized, "the code was refused"));
        }
        Ok(Authorized {
            tenant: TenantId::new("tenant-new").unwrap(),
            enterprise: None,
            display_name: "Contoso Teams".into(),
            account: AccountIdentity {
                user_id: UserId::new("svc-new").unwrap(),
                display_name: "svc@contoso.test".into(),
                is_service_account: true,
            },
            credentials: Credentials {
                access_token: SecretString::from("at-secret-123".to_owned()),
                refresh_token: Some(SecretString::from("rt-secret-456".to_owned())),
                expires_at: None,
                scopes: vec![],
            },
        })
    }
}

#[derive(Debug)]
struct FakeLive;

#[async_trait]
impl Platform for FakeLive {
    fn kind(&self) -> PlatformKind {
        PlatformKind::Msteams
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            reactions: true,
            edits: true,
            deletes: true,
            file_upload: false,
            sender_attribution: true,
        }
    }
    async fn identity(&self) -> Result<AccountIdentity> {
        Err(Error::new(ErrorKind::Unsupported, "fake"))
    }
    async fn post(&self, _: &ChannelRef, _: &OutgoingMessage) -> Result<PostedMessage> {
        Err(Error::new(ErrorKind::Unsupported, "fake"))
    }
    async fn edit(&self, _: &MessageRef, _: &OutgoingMessage, _: &PostingIdentity) -> Result<()> {
        Err(Error::new(ErrorKind::Unsupported, "fake"))
    }
    async fn delete(&self, _: &MessageRef, _: &PostingIdentity) -> Result<()> {
        Err(Error::new(ErrorKind::Unsupported, "fake"))
    }
    async fn react(
        &self,
        _: &MessageRef,
        _: &Emoji,
        _: ReactionChange,
        _: &PostingIdentity,
    ) -> Result<()> {
        Err(Error::new(ErrorKind::Unsupported, "fake"))
    }
    async fn fetch_attachment(&self, _: &Attachment, _: u64) -> Result<FileContent> {
        Err(Error::new(ErrorKind::Unsupported, "fake"))
    }
    async fn health(&self) -> Result<ConnectionHealth> {
        Ok(ConnectionHealth::Ok)
    }
}

#[async_trait]
impl ServiceAccount for FakeLive {
    async fn verify(&self, _: VerifyOptions) -> Result<AccessReport> {
        Ok(AccessReport {
            account: AccountIdentity {
                user_id: UserId::new("svc-new").unwrap(),
                display_name: "svc@contoso.test".into(),
                is_service_account: true,
            },
            checks: vec![
                AccessCheck {
                    kind: CheckKind::Role,
                    name: "Teams Administrator role".into(),
                    ok: false,
                    fix: Some("Assign the Teams Administrator role to svc@contoso.test".into()),
                },
                AccessCheck {
                    kind: CheckKind::Scope,
                    name: "scope ChannelMessage.Send".into(),
                    ok: true,
                    fix: None,
                },
            ],
        })
    }
    async fn ensure_membership(&self, _: &ChannelRef) -> Result<MembershipOutcome> {
        Ok(MembershipOutcome::AlreadyMember)
    }
    async fn refresh_credentials(&self) -> Result<Credentials> {
        Err(Error::new(ErrorKind::Unsupported, "fake"))
    }
}

#[async_trait]
impl TeamImport for FakeLive {
    async fn list_teams(&self) -> Result<TeamListing> {
        Ok(TeamListing {
            teams: vec![],
            source: TeamListSource::TenantWide,
        })
    }
    async fn import_team(&self, _: &TeamId, _: &mut dyn ImportSink) -> Result<ImportCounts> {
        Ok(ImportCounts::default())
    }
    async fn import_users(&self, _: &mut dyn ImportSink) -> Result<ImportCounts> {
        Ok(ImportCounts::default())
    }
}

#[async_trait]
impl History for FakeLive {
    async fn changes_since(
        &self,
        _: &ChannelRef,
        _: &HistoryStart,
        _: usize,
    ) -> Result<HistoryPage> {
        Err(Error::new(ErrorKind::Unsupported, "fake"))
    }
    async fn recent_messages(
        &self,
        _: &ChannelRef,
        _: OffsetDateTime,
        _: usize,
    ) -> Result<Vec<RecentMessage>> {
        Err(Error::new(ErrorKind::Unsupported, "fake"))
    }
}

#[derive(Debug)]
struct FakeConnector;

#[async_trait]
impl Connector for FakeConnector {
    fn platform(&self) -> PlatformKind {
        PlatformKind::Msteams
    }
    async fn open(
        &self,
        _: &Connection,
        _: Credentials,
        _: Arc<dyn CredentialsSink>,
    ) -> Result<Connected> {
        let live = Arc::new(FakeLive);
        Ok(Connected {
            platform: live.clone(),
            account: live.clone(),
            import: live.clone(),
            history: live,
            resolver: None,
            feeds: None,
        })
    }
}

async fn world() -> World {
    let mut w = World::new(Receivers::default()).await;
    w.state = w
        .state
        .clone()
        .with_platform(Arc::new(FakeTeams), Arc::new(FakeConnector))
        .with_public_url("http://127.0.0.1:9999");
    w
}

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

/// Signs in with `token`; returns the `name=value` of the session cookie.
async fn sign_in(w: &World, token: &SecretString, previous: Option<&str>) -> String {
    let (s, h, _) = w
        .send(form(
            "/signin",
            previous,
            &format!("token={}", token.expose_secret()),
        ))
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let set = h[header::SET_COOKIE].to_str().unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Lax"),
        "{set}"
    );
    set.split(';').next().unwrap().to_owned()
}

fn query_param(url: &str, name: &str) -> String {
    url.split(['?', '&'])
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn sign_in_rotates_the_session_and_bad_tokens_are_refused() {
    let w = world().await;
    let (s, _, _) = w.send(get("/connect", None)).await;
    assert_eq!(s, StatusCode::SEE_OTHER, "the console needs a session");
    let (s, _, body) = w.send(form("/signin", None, "token=sb_wrong")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(String::from_utf8_lossy(&body).contains("not valid"));

    let first = sign_in(&w, &w.token_a, None).await;
    let second = sign_in(&w, &w.token_a, Some(&first)).await;
    assert_ne!(first, second);
    let (s, _, _) = w.send(get("/connect", Some(&first))).await;
    assert_eq!(
        s,
        StatusCode::SEE_OTHER,
        "the pre-sign-in session id is dead"
    );
    let (s, _, body) = w.send(get("/connect", Some(&second))).await;
    assert_eq!(s, StatusCode::OK);
    let page = String::from_utf8(body).unwrap();
    assert!(page.contains("Connect with Microsoft Teams"));
    assert!(page.contains("Connect with Slack"));
    assert!(
        page.contains("Teams Administrator"),
        "the roles are explained before connecting"
    );
    assert!(page.contains("T1"), "org A's connections are listed");
}

#[tokio::test]
async fn connecting_runs_oauth_with_single_use_state_and_shows_missing_roles() {
    let w = world().await;
    let cookie = sign_in(&w, &w.token_a, None).await;
    let (s, h, _) = w.send(get("/connect/msteams/start", Some(&cookie))).await;
    assert_eq!(s, StatusCode::FOUND);
    let location = h[header::LOCATION].to_str().unwrap().to_owned();
    assert!(location.contains("code_challenge_method=S256"));
    assert!(location.contains("redirect_uri=http://127.0.0.1:9999/connect/msteams/callback"));
    let state = query_param(&location, "state");
    assert!(!query_param(&location, "code_challenge").is_empty());

    // another browser cannot finish it (and the attempt burns the state)
    let other = sign_in(&w, &w.token_a, None).await;
    let cb = format!("/connect/msteams/callback?code=good-code&state={state}");
    let (s, _, _) = w.send(get(&cb, Some(&other))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _, _) = w.send(get(&cb, Some(&cookie))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "state is single use");
    let conns = w.store.list_connections(&w.org_a).await.unwrap();
    assert_eq!(conns.len(), 2, "nothing was stored");

    // a fresh flow completes
    let (_, h, _) = w.send(get("/connect/msteams/start", Some(&cookie))).await;
    let state = query_param(h[header::LOCATION].to_str().unwrap(), "state");
    let cb = format!("/connect/msteams/callback?code=good-code&state={state}");
    let (s, _, body) = w.send(get(&cb, Some(&cookie))).await;
    assert_eq!(s, StatusCode::OK);
    let page = String::from_utf8(body).unwrap();
    assert!(page.contains("with problems to fix"), "{page}");
    assert!(page.contains("Assign the Teams Administrator role"));
    assert!(!page.contains("at-secret-123") && !page.contains("rt-secret-456"));
    let conn = w
        .store
        .list_connections(&w.org_a)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.tenant.as_str() == "tenant-new")
        .expect("the connection is stored");
    assert_eq!(conn.health, ConnectionHealth::MissingRoles);
    let creds = w
        .store
        .get_credentials(&w.org_a, &conn.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(creds.access_token.expose_secret(), "at-secret-123");
    let audit = w.store.list_audit(&w.org_a, 0, 10).await.unwrap();
    assert_eq!(audit.last().unwrap().action, "connection.connected");
    assert!(!serde_json::to_string(&audit).unwrap().contains("secret-"));

    // replaying the finished callback changes nothing
    let (s, _, _) = w.send(get(&cb, Some(&cookie))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // a provider error is shown in words
    let (_, h, _) = w.send(get("/connect/msteams/start", Some(&cookie))).await;
    let state = query_param(h[header::LOCATION].to_str().unwrap(), "state");
    let (s, _, body) = w
        .send(get(
            &format!("/connect/msteams/callback?error=access_denied&error_description=The+user+declined&state={state}"),
            Some(&cookie),
        ))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("access_denied"));
    // Slack is not configured here
    let (s, _, _) = w.send(get("/connect/slack/start", Some(&cookie))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn signing_out_needs_the_csrf_token() {
    let w = world().await;
    let cookie = sign_in(&w, &w.token_a, None).await;
    let (s, _, _) = w.send(form("/signout", Some(&cookie), "csrf=forged")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (_, _, body) = w.send(get("/connect", Some(&cookie))).await;
    let page = String::from_utf8(body).unwrap();
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned();
    let (s, _, _) = w
        .send(form("/signout", Some(&cookie), &format!("csrf={csrf}")))
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let (s, _, _) = w.send(get("/connect", Some(&cookie))).await;
    assert_eq!(s, StatusCode::SEE_OTHER, "signed out");
}

#[tokio::test]
async fn the_account_that_connected_a_platform_can_sign_in_with_it() {
    let w = world().await;
    // connect Teams once (the fake consents as the same account every time)
    let cookie = sign_in(&w, &w.token_a, None).await;
    let (_, h, _) = w.send(get("/connect/msteams/start", Some(&cookie))).await;
    let state = query_param(h[header::LOCATION].to_str().unwrap(), "state");
    let (s, _, _) = w
        .send(get(
            &format!("/connect/msteams/callback?code=good-code&state={state}"),
            Some(&cookie),
        ))
        .await;
    assert_eq!(s, StatusCode::OK);

    // a new browser: sign in with Microsoft
    let (s, h, _) = w.send(get("/signin/msteams/start", None)).await;
    assert_eq!(s, StatusCode::FOUND);
    let location = h[header::LOCATION].to_str().unwrap().to_owned();
    assert!(location.contains("code_challenge_method=S256"), "PKCE");
    let pre = h[header::SET_COOKIE].to_str().unwrap();
    assert!(
        pre.contains("HttpOnly") && pre.contains("SameSite=Lax"),
        "{pre}"
    );
    let pre = pre.split(';').next().unwrap().to_owned();
    let state = query_param(&location, "state");
    let cb = format!("/connect/msteams/callback?code=good-code&state={state}");
    let (s, h, _) = w.send(get(&cb, Some(&pre))).await;
    assert_eq!(s, StatusCode::SEE_OTHER, "signed in");
    assert_eq!(h[header::LOCATION], "/connect");
    let session = h
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("sb_session="))
        .expect("a session cookie");
    let session = session.split(';').next().unwrap().to_owned();
    let (s, _, body) = w.send(get("/connect", Some(&session))).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        String::from_utf8(body).unwrap().contains("T1"),
        "org A's console"
    );
    let (s, _, _) = w.send(get(&cb, Some(&pre))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "the state is single use");

    // a state started in one browser cannot be finished in another
    let (_, h, _) = w.send(get("/signin/msteams/start", None)).await;
    let state = query_param(h[header::LOCATION].to_str().unwrap(), "state");
    let (s, _, _) = w
        .send(get(
            &format!("/connect/msteams/callback?code=good-code&state={state}"),
            Some("sb_signin=someone-else"),
        ))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}
