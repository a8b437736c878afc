//! "Link my account": an end user (no admin session) links their own Teams account through
//! OAuth; only a person of the organization's imported directory is stored, sealed; the open
//! connection is told; unlinking (CSRF-checked) deletes the token.

use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use parking_lot::Mutex;
use secrecy::{ExposeSecret, SecretString};
use switchboard_core::*;
use switchboard_relay::engine::Connections;
use switchboard_server::Receivers;
use time::OffsetDateTime;

use crate::support::World;

const JANE: &str = "00000000-0000-0000-0000-00000000a11e";
const MALLORY: &str = "00000000-0000-0000-0000-0000000bad00";
const JANE_TOKEN: &str = "jane-delegated-access-7f3c9a";
const JANE_REFRESH: &str = "jane-delegated-refresh-51be02";

/// The end users' Microsoft sign-in: the code names who signs in.
#[derive(Debug)]
struct FakeUserSignIn;

#[async_trait]
impl Authorizer for FakeUserSignIn {
    fn platform(&self) -> PlatformKind {
        PlatformKind::Msteams
    }
    fn uses_pkce(&self) -> bool {
        true
    }
    fn authorize_url(&self, redirect: &str, state: &str, pkce: Option<&str>) -> Result<String> {
        Ok(format!(
            "https://login.test/authorize?scope=ChannelMessage.Send&redirect_uri={redirect}&state={state}&code_challenge={}",
            pkce.unwrap()
        ))
    }
    async fn complete(
        &self,
        code: &SecretString,
        _redirect: &str,
        verifier: Option<&SecretString>,
    ) -> Result<Authorized> {
        assert!(verifier.is_some(), "the PKCE verifier is sent");
        let (id, upn) = match code.expose_secret() {
            "jane-code" => (JANE, "jane@contoso.test"),
            "mallory-code" => (MALLORY, "mallory@elsewhere.test"),
            _ => return Err(Error::new(ErrorKind::Unauthorized, "the code was refused")),
        };
        Ok(Authorized {
            tenant: TenantId::new("tenant-1").unwrap(),
            enterprise: None,
            display_name: "contoso.test".into(),
            account: AccountIdentity {
                user_id: UserId::new(id).unwrap(),
                display_name: upn.into(),
                is_service_account: false,
            },
            credentials: Credentials {
                access_token: SecretString::from(JANE_TOKEN.to_owned()),
                refresh_token: Some(SecretString::from(JANE_REFRESH.to_owned())),
                expires_at: None,
                scopes: vec!["ChannelMessage.Send".into()],
            },
        })
    }
}

/// What the live Teams connection was told.
type Told = Arc<Mutex<Vec<String>>>;

/// The sinks the live connection was given for linked users' rotated tokens.
type Sinks = Arc<Mutex<Vec<Arc<dyn CredentialsSink>>>>;

struct FakeLive(Told, Sinks);

impl std::fmt::Debug for FakeLive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FakeLive")
    }
}

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
    async fn link_user(
        &self,
        user: UserId,
        credentials: Credentials,
        sink: Arc<dyn CredentialsSink>,
    ) -> Result<()> {
        self.1.lock().push(sink);
        self.0.lock().push(format!(
            "link {user} {}",
            credentials.access_token.expose_secret()
        ));
        Ok(())
    }
    fn unlink_user(&self, user: &UserId) {
        self.0.lock().push(format!("unlink {user}"));
    }
}

#[async_trait]
impl ServiceAccount for FakeLive {
    async fn verify(&self, _: VerifyOptions) -> Result<AccessReport> {
        Err(Error::new(ErrorKind::Unsupported, "fake"))
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

struct FakeConnector(Told, Sinks);

impl std::fmt::Debug for FakeConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FakeConnector")
    }
}

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
        let live = Arc::new(FakeLive(self.0.clone(), self.1.clone()));
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

/// The service account's sign-in (unused here; the connector needs an authorizer beside it).
#[derive(Debug)]
struct NoAdminSignIn;

#[async_trait]
impl Authorizer for NoAdminSignIn {
    fn platform(&self) -> PlatformKind {
        PlatformKind::Msteams
    }
    fn uses_pkce(&self) -> bool {
        true
    }
    fn authorize_url(&self, _: &str, _: &str, _: Option<&str>) -> Result<String> {
        Ok("https://login.test/admin".into())
    }
    async fn complete(
        &self,
        _: &SecretString,
        _: &str,
        _: Option<&SecretString>,
    ) -> Result<Authorized> {
        Err(Error::new(ErrorKind::Unauthorized, "not in this test"))
    }
}

/// Imports one user, `jane@contoso.test`, into `connection`'s directory.
async fn import_user(w: &World, connection: &ConnectionId, id: &str, name: &str) {
    let run = w.store.begin_import(&w.org_a, connection).await.unwrap();
    let user = User {
        id: UserId::new(id).unwrap(),
        display_name: name.into(),
        email: Some("jane@contoso.test".into()),
        avatar_url: None,
        is_guest: false,
        is_bot: false,
        is_deleted: false,
    };
    w.store
        .upsert_users(&w.org_a, connection, run, &[user])
        .await
        .unwrap();
    w.store
        .finish_user_import(&w.org_a, connection, run)
        .await
        .unwrap();
}

async fn world() -> (World, Told, Sinks) {
    let told = Told::default();
    let sinks = Sinks::default();
    let mut w = World::new(Receivers::default()).await;
    w.state = w
        .state
        .clone()
        .with_platform(
            Arc::new(NoAdminSignIn),
            Arc::new(FakeConnector(told.clone(), sinks.clone())),
        )
        .with_user_authorizer(Arc::new(FakeUserSignIn))
        .with_public_url("http://127.0.0.1:9999");
    // Jane is in the imported Teams directory; Mallory is not.
    import_user(&w, &w.teams, JANE, "Jane Doe").await;
    // Her Slack account, matched by email.
    import_user(&w, &w.slack, "U0JANE", "Jane (Slack)").await;
    w.store
        .put_credentials(
            &w.org_a,
            &w.teams,
            &Credentials {
                access_token: SecretString::from("svc-token".to_owned()),
                refresh_token: None,
                expires_at: None,
                scopes: vec![],
            },
        )
        .await
        .unwrap();
    (w, told, sinks)
}

fn get(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut b = Request::get(path);
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    b.body(Body::empty()).unwrap()
}

fn post(path: &str, cookie: Option<&str>, body: &str) -> Request<Body> {
    let mut b = Request::post(path).header("content-type", "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    b.body(Body::from(body.to_owned())).unwrap()
}

fn text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

/// The `name=value` of the cookie `name` set by a response.
fn set_cookie(h: &axum::http::HeaderMap, name: &str) -> String {
    h.get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie set: {h:?}"))
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// Starts a link; returns the OAuth `state` and the pre-link cookie.
async fn start(w: &World) -> (String, String) {
    let (s, h, _) = w
        .send(get(
            &format!("/link-account/msteams/start?org={}", w.org_a),
            None,
        ))
        .await;
    assert_eq!(s, StatusCode::FOUND);
    let location = h[header::LOCATION].to_str().unwrap();
    assert!(
        location.contains("redirect_uri=http://127.0.0.1:9999/connect/msteams/callback"),
        "{location}"
    );
    let state = location
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("state="))
        .unwrap()
        .to_owned();
    (state, set_cookie(&h, "sb_link"))
}

fn db_bytes(w: &World) -> Vec<u8> {
    let mut all = Vec::new();
    for name in ["sb.db", "sb.db-wal"] {
        if let Ok(b) = std::fs::read(w._dir.path().join(name)) {
            all.extend(b);
        }
    }
    assert!(!all.is_empty(), "the database file was not found");
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|win| win == needle.as_bytes())
}

#[tokio::test]
async fn an_end_user_links_only_from_the_directory_sealed_and_can_unlink() {
    let (w, told, _) = world().await;
    // The relay's connection to Teams is open before anyone links.
    w.state.pool().get(&w.org_a, &w.teams).await.unwrap();

    // The page needs no admin session and names the organization.
    let (s, _, body) = w
        .send(get(&format!("/link-account?org={}", w.org_a), None))
        .await;
    assert_eq!(s, StatusCode::OK);
    let page = text(&body);
    assert!(page.contains("Link my Microsoft Teams account"), "{page}");
    assert!(
        page.contains(&format!("/link-account/msteams/start?org={}", w.org_a)),
        "{page}"
    );
    assert!(!page.contains("/signout"), "no admin navigation: {page}");
    // Two organizations on this server: a page without `org` does not guess.
    let (s, _, _) = w.send(get("/link-account", None)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = w.send(get("/link-account?org=no-such-org", None)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Someone outside the imported directory is refused and nothing is stored.
    let (state, pre) = start(&w).await;
    let cb = format!("/connect/msteams/callback?code=mallory-code&state={state}");
    let (s, _, body) = w.send(get(&cb, Some(&pre))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let page = text(&body);
    assert!(page.contains("not in this organization"), "{page}");
    assert!(page.contains("Nothing was stored"), "{page}");
    assert!(
        w.store
            .list_linked_accounts(&w.org_a, None)
            .await
            .unwrap()
            .is_empty()
    );
    // The state was single use.
    let (s, _, _) = w.send(get(&cb, Some(&pre))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // A state finished in another browser (without the pre-link cookie) links nothing.
    let (state, _) = start(&w).await;
    let (s, _, _) = w
        .send(get(
            &format!("/connect/msteams/callback?code=jane-code&state={state}"),
            None,
        ))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        w.store
            .list_linked_accounts(&w.org_a, None)
            .await
            .unwrap()
            .is_empty()
    );
    // The user declines at the provider: a clear page, nothing stored.
    let (state, pre) = start(&w).await;
    let (s, _, body) = w
        .send(get(
            &format!(
                "/connect/msteams/callback?error=access_denied&error_description=The+user+declined&state={state}"
            ),
            Some(&pre),
        ))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let page = text(&body);
    assert!(
        page.contains("Linking was cancelled") && page.contains("The user declined"),
        "{page}"
    );
    // A code the provider refuses: nothing stored either.
    let (state, pre) = start(&w).await;
    let (s, _, _) = w
        .send(get(
            &format!("/connect/msteams/callback?code=forged&state={state}"),
            Some(&pre),
        ))
        .await;
    assert_eq!(s, StatusCode::BAD_GATEWAY);
    // Only platforms offering it can be linked.
    let (s, _, _) = w
        .send(get(
            &format!("/link-account/slack/start?org={}", w.org_a),
            None,
        ))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(
        w.store
            .list_linked_accounts(&w.org_a, None)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(told.lock().is_empty(), "{:?}", told.lock());

    // Jane is in the directory: her token is stored, sealed, and the open connection uses it.
    let (state, pre) = start(&w).await;
    let (s, h, _) = w
        .send(get(
            &format!("/connect/msteams/callback?code=jane-code&state={state}"),
            Some(&pre),
        ))
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(
        h[header::LOCATION].to_str().unwrap(),
        format!("/link-account?org={}", w.org_a)
    );
    let linked = set_cookie(&h, "sb_linked");
    let jane = UserId::new(JANE).unwrap();
    let accounts = w.store.list_linked_accounts(&w.org_a, None).await.unwrap();
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0].user, jane);
    assert_eq!(accounts[0].display_name, "Jane Doe");
    let (_, creds) = w
        .store
        .get_linked_account(&w.org_a, PlatformKind::Msteams, &jane)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(creds.access_token.expose_secret(), JANE_TOKEN);
    let raw = db_bytes(&w);
    assert!(
        contains(&raw, "Jane Doe"),
        "the byte search finds stored text"
    );
    assert!(
        !contains(&raw, JANE_TOKEN),
        "the access token is stored in the clear"
    );
    assert!(
        !contains(&raw, JANE_REFRESH),
        "the refresh token is stored in the clear"
    );
    assert_eq!(*told.lock(), vec![format!("link {JANE} {JANE_TOKEN}")]);

    // The page now says who is linked, with an Unlink form carrying a CSRF token.
    let (s, _, body) = w
        .send(get(
            &format!("/link-account?org={}", w.org_a),
            Some(&linked),
        ))
        .await;
    assert_eq!(s, StatusCode::OK);
    let page = text(&body);
    assert!(
        page.contains("Linked as <strong>Jane Doe</strong>"),
        "{page}"
    );
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    // Another browser sees no link.
    let (_, _, body) = w
        .send(get(&format!("/link-account?org={}", w.org_a), None))
        .await;
    assert!(!text(&body).contains("Linked as"));

    // The admin's Users page shows that she posts with her own account.
    let (s, h, _) = w
        .send(post(
            "/signin",
            None,
            &format!("token={}", w.token_a.expose_secret()),
        ))
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let admin = set_cookie(&h, "sb_session");
    let (s, _, body) = w.send(get("/users", Some(&admin))).await;
    assert_eq!(s, StatusCode::OK);
    let users = text(&body);
    let row = users
        .split("<tr>")
        .find(|r| r.contains("Jane Doe") && r.contains("Jane (Slack)"))
        .unwrap_or_else(|| panic!("Jane's pair on the Users page: {users}"));
    assert!(row.contains("own account"), "{row}");

    // Unlink refuses a forged request and keeps the link.
    let (s, _, _) = w
        .send(post("/link-account/unlink", Some(&linked), "csrf=forged"))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, _) = w
        .send(post("/link-account/unlink", None, &format!("csrf={csrf}")))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(
        w.store
            .list_linked_accounts(&w.org_a, None)
            .await
            .unwrap()
            .len(),
        1
    );

    // Unlink deletes the token and the live connection forgets it.
    let (s, _, body) = w
        .send(post(
            "/link-account/unlink",
            Some(&linked),
            &format!("csrf={csrf}"),
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{}", text(&body));
    assert!(text(&body).contains("unlinked"));
    assert!(
        w.store
            .get_linked_account(&w.org_a, PlatformKind::Msteams, &jane)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(told.lock().last().unwrap(), &format!("unlink {JANE}"));
    let (_, _, body) = w.send(get("/users", Some(&admin))).await;
    assert!(!text(&body).contains("own account"), "the badge is gone");
    let actions: Vec<String> = w
        .store
        .list_audit(&w.org_a, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action.starts_with("user_account."))
        .map(|e| {
            // Recorded as the end user's own act, not an admin's or Switchboard's.
            assert!(
                matches!(&e.actor, Actor::User { platform: PlatformKind::Msteams, user, .. } if user.as_str() == JANE),
                "{:?}",
                e.actor
            );
            e.action
        })
        .collect();
    assert_eq!(actions, ["user_account.linked", "user_account.unlinked"]);
}

#[tokio::test]
async fn a_connection_opened_later_loads_the_linked_tokens() {
    let (w, told, sinks) = world().await;
    let (state, pre) = start(&w).await;
    let (s, _, _) = w
        .send(get(
            &format!("/connect/msteams/callback?code=jane-code&state={state}"),
            Some(&pre),
        ))
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert!(told.lock().is_empty(), "no connection was open yet");
    w.state.pool().get(&w.org_a, &w.teams).await.unwrap();
    assert_eq!(*told.lock(), vec![format!("link {JANE} {JANE_TOKEN}")]);

    // The token refreshes: the rotated grant is stored back, sealed, for the next start.
    let sink = sinks.lock().last().cloned().unwrap();
    let rotated = Credentials {
        access_token: SecretString::from("jane-rotated-access".to_owned()),
        refresh_token: Some(SecretString::from("jane-rotated-refresh".to_owned())),
        expires_at: None,
        scopes: vec!["ChannelMessage.Send".into()],
    };
    sink.persist(&rotated).await.unwrap();
    let jane = UserId::new(JANE).unwrap();
    let (_, stored) = w
        .store
        .get_linked_account(&w.org_a, PlatformKind::Msteams, &jane)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.access_token.expose_secret(), "jane-rotated-access");
    // Once unlinked, a late refresh is not stored again.
    w.store
        .delete_linked_account(&w.org_a, PlatformKind::Msteams, &jane, Actor::System)
        .await
        .unwrap();
    let e = sink.persist(&rotated).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(
        w.store
            .get_linked_account(&w.org_a, PlatformKind::Msteams, &jane)
            .await
            .unwrap()
            .is_none()
    );
}
