//! Import jobs through the admin API and the console: the teams a service account sees
//! (with `imported` flags), starting an import, its progress and result, the imported users,
//! with a fake Teams platform behind the connection pool.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use parking_lot::Mutex;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use switchboard_core::*;
use switchboard_server::Receivers;
use switchboard_server::pool::ConnectionPool;
use time::OffsetDateTime;
use tokio::sync::Semaphore;

use crate::support::World;

/// A Teams tenant with teams `team-1` (Engineering, already imported by the world),
/// `team-2` (Marketing) and `team-3` (Broken: reading its channels is forbidden), and five
/// users delivered two per page.
#[derive(Debug, Default)]
struct FakeTenant {
    /// When set, the users phase waits for a permit (an import "in flight").
    gate: Option<Arc<Semaphore>>,
    /// Channels the service account was made a member through.
    ensured: Mutex<Vec<ChannelRef>>,
}

fn team(id: &str, name: &str) -> Team {
    Team {
        id: TeamId::new(id).unwrap(),
        name: name.into(),
        description: Some(format!("{name} team")),
    }
}

fn user(n: u32) -> User {
    User {
        id: UserId::new(format!("u{n}")).unwrap(),
        display_name: format!("Person {n}"),
        email: Some(format!("person{n}@contoso.test")),
        avatar_url: None,
        is_guest: n == 5,
        is_bot: false,
        is_deleted: false,
    }
}

#[async_trait]
impl TeamImport for Live {
    async fn list_teams(&self) -> Result<TeamListing> {
        Ok(TeamListing {
            teams: vec![
                team("team-1", "Engineering"),
                team("team-2", "Marketing"),
                team("team-3", "Broken"),
            ],
            source: TeamListSource::TenantWide,
        })
    }
    async fn import_team(&self, team: &TeamId, sink: &mut dyn ImportSink) -> Result<ImportCounts> {
        if team.as_str() == "team-3" {
            return Err(Error::new(
                ErrorKind::Forbidden,
                "Graph refused to list the channels of team-3",
            ));
        }
        let names = if team.as_str() == "team-1" {
            vec!["General", "Backend", "Frontend"]
        } else {
            vec!["General", "Campaigns"]
        };
        let channels: Vec<Channel> = names
            .iter()
            .enumerate()
            .map(|(i, n)| Channel {
                id: ChannelId::new(format!("19:{team}-{i}@thread.tacv2")).unwrap(),
                team: team.clone(),
                name: (*n).into(),
                kind: ChannelKind::Standard,
                description: None,
            })
            .collect();
        let n = channels.len() as u64;
        // two pages, so progress is published in between
        let (a, b) = channels.split_at(1);
        sink.channels(team, a.to_vec()).await?;
        sink.channels(team, b.to_vec()).await?;
        // the service account ("svc") is a member of team-1 already
        let mut members: Vec<String> = (1..=3).map(|u| format!("u{u}")).collect();
        if team.as_str() == "team-1" {
            members.push("svc".into());
        }
        let m = members.len() as u64;
        sink.members(
            team,
            members
                .into_iter()
                .map(|u| Membership {
                    team: team.clone(),
                    is_owner: u == "u1",
                    user: UserId::new(u).unwrap(),
                })
                .collect(),
        )
        .await?;
        Ok(ImportCounts {
            channels: n,
            members: m,
            users: 0,
        })
    }
    async fn import_users(&self, sink: &mut dyn ImportSink) -> Result<ImportCounts> {
        if let Some(g) = &self.0.gate {
            let _permit = g.acquire().await.unwrap();
        }
        sink.progress(Progress {
            phase: ImportPhase::Users,
            done: 0,
            estimated_total: Some(5),
        })
        .await?;
        for page in [
            vec![user(1), user(2)],
            vec![user(3), user(4)],
            vec![user(5)],
        ] {
            sink.users(page).await?;
        }
        Ok(ImportCounts {
            channels: 0,
            members: 0,
            users: 5,
        })
    }
}

#[derive(Debug, Clone)]
struct Live(Arc<FakeTenant>);

#[async_trait]
impl Platform for Live {
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
impl ServiceAccount for Live {
    async fn verify(&self, _: VerifyOptions) -> Result<AccessReport> {
        Err(Error::new(ErrorKind::Unsupported, "fake"))
    }
    async fn ensure_membership(&self, channel: &ChannelRef) -> Result<MembershipOutcome> {
        self.0.ensured.lock().push(channel.clone());
        Ok(MembershipOutcome::Added)
    }
    async fn refresh_credentials(&self) -> Result<Credentials> {
        Err(Error::new(ErrorKind::Unsupported, "fake"))
    }
}

#[async_trait]
impl History for Live {
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
struct FakeConnector(Arc<FakeTenant>);

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
        let live = Arc::new(Live(self.0.clone()));
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

struct Fixture {
    w: World,
    tenant: Arc<FakeTenant>,
}

async fn fixture(gate: Option<Arc<Semaphore>>) -> Fixture {
    let mut w = World::new(Receivers::default()).await;
    let tenant = Arc::new(FakeTenant {
        gate,
        ..Default::default()
    });
    w.store
        .put_credentials(
            &w.org_a,
            &w.teams,
            &Credentials {
                access_token: SecretString::from("at-secret-789".to_owned()),
                refresh_token: None,
                expires_at: None,
                scopes: vec![],
            },
        )
        .await
        .unwrap();
    let pool = Arc::new(ConnectionPool::new(
        w.store.clone(),
        vec![Arc::new(FakeConnector(tenant.clone()))],
    ));
    w.state = w.state.clone().with_pool(pool);
    Fixture { w, tenant }
}

/// Polls the job until it is done (bounded: the fake finishes at once).
async fn finished(w: &World, token: &SecretString, id: &str) -> Value {
    for _ in 0..500 {
        let (s, v) = w
            .json(
                "GET",
                &format!("/api/v1/import-jobs/{id}"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        if v["done"] == true {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the import job never finished");
}

async fn actions(w: &World) -> Vec<String> {
    w.store
        .list_audit(&w.org_a, 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect()
}

#[tokio::test]
async fn the_teams_of_a_connection_are_listed_with_imported_flags() {
    let Fixture { w, .. } = fixture(None).await;
    let path = format!("/api/v1/connections/{}/teams", w.teams);
    let (s, v) = w.json("GET", &path, Some(&w.token_a), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["platform"], "msteams");
    assert_eq!(v["source"], "tenant_wide");
    let teams = v["teams"].as_array().unwrap();
    assert_eq!(teams.len(), 3);
    let flag = |id: &str| teams.iter().find(|t| t["id"] == id).unwrap()["imported"].clone();
    assert_eq!(flag("team-1"), true, "imported before: {v}");
    assert_eq!(flag("team-2"), false);
    assert_eq!(teams[1]["name"], "Marketing");

    let (s, v) = w.json("GET", &path, None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(v["code"], "unauthorized");
    let wrong = SecretString::from("sb_not-a-token".to_owned());
    let (s, _) = w.json("GET", &path, Some(&wrong), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // another org's token: 404, exactly like an id that does not exist, nothing leaked
    let (s, v) = w.json("GET", &path, Some(&w.token_b), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["code"], "not_found");
    let text = v.to_string();
    assert!(
        !text.contains("Marketing") && !text.contains("tenant-1"),
        "{text}"
    );
    let (s, v2) = w
        .json(
            "GET",
            &format!("/api/v1/connections/{}/teams", ConnectionId::generate()),
            Some(&w.token_a),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v, v2, "a foreign id answers like a missing one");
    // the Slack connection has no credentials stored: connect again, in words
    let (s, v) = w
        .json(
            "GET",
            &format!("/api/v1/connections/{}/teams", w.slack),
            Some(&w.token_a),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["code"], "needs_reauth");
    assert!(v["message"].as_str().unwrap().contains("connect it again"));
}

#[tokio::test]
async fn an_import_job_imports_the_chosen_team_and_reports_progress_and_result() {
    let Fixture { w, tenant } = fixture(None).await;
    let (s, v) = w
        .json(
            "POST",
            "/api/v1/import-jobs",
            Some(&w.token_a),
            Some(json!({"connection": w.teams.to_string(), "teams": ["team-2"]})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let job = finished(&w, &w.token_a, &id).await;
    assert_eq!(job["error"], Value::Null, "{job}");
    assert_eq!(job["progress"]["stage"], "done");
    assert_eq!(job["progress"]["teams_total"], 1);
    assert_eq!(job["progress"]["teams_done"], 1);
    assert_eq!(job["progress"]["users_estimated"], 5);
    assert_eq!(job["progress"]["memberships_ensured"], 1);
    assert_eq!(
        job["result"],
        json!({"channels": 2, "members": 3, "users": 5})
    );
    assert_eq!(job["teams"], json!(["team-2"]));
    assert!(job["finished_at"].is_string());

    // stored: team-2's channels (team-1's untouched), the users; the account joined team-2
    let channels = w
        .store
        .list_channels(&w.org_a, Some(&w.teams), None, 100)
        .await
        .unwrap();
    let of_team_2: Vec<&str> = channels
        .iter()
        .filter(|c| c.channel.team.as_str() == "team-2")
        .map(|c| c.channel.name.as_str())
        .collect();
    assert_eq!(of_team_2, ["General", "Campaigns"]);
    assert!(channels.iter().any(|c| c.channel.team.as_str() == "team-1"));
    let ensured = tenant.ensured.lock().clone();
    assert_eq!(ensured.len(), 1);
    assert_eq!(ensured[0].team.as_str(), "team-2");
    let acts = actions(&w).await;
    let started = acts.iter().position(|a| a == "import.started").unwrap();
    let completed = acts.iter().position(|a| a == "import.completed").unwrap();
    assert!(started < completed, "{acts:?}");

    // now team-2 shows as imported
    let (_, v) = w
        .json(
            "GET",
            &format!("/api/v1/connections/{}/teams", w.teams),
            Some(&w.token_a),
            None,
        )
        .await;
    let t2 = v["teams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "team-2")
        .unwrap()
        .clone();
    assert_eq!(t2["imported"], true);

    // another org sees nothing of the job, and cannot import org A's connection
    let (s, v) = w
        .json(
            "GET",
            &format!("/api/v1/import-jobs/{id}"),
            Some(&w.token_b),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(!v.to_string().contains("team-2"));
    let (s, _) = w
        .json(
            "POST",
            "/api/v1/import-jobs",
            Some(&w.token_b),
            Some(json!({"connection": w.teams.to_string(), "all": true})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = w
        .json("GET", &format!("/api/v1/import-jobs/{id}"), None, None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = w
        .json(
            "GET",
            "/api/v1/import-jobs/not-a-job",
            Some(&w.token_a),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_import_requests_get_4xx_and_start_nothing() {
    let Fixture { w, .. } = fixture(None).await;
    let conn = w.teams.to_string();
    let before = actions(&w).await.len();
    for (body, code) in [
        (json!({"connection": conn}), "invalid_input"),
        (
            json!({"connection": conn, "teams": ["team-2"], "all": true}),
            "invalid_input",
        ),
        (json!({"connection": conn, "teams": []}), "invalid_input"),
        (json!({"connection": conn, "teams": [""]}), "invalid_input"),
        (
            json!({"connection": conn, "all": true, "extra": 1}),
            "invalid_input",
        ),
        (json!({"teams": ["team-2"]}), "invalid_input"),
    ] {
        let (s, v) = w
            .json(
                "POST",
                "/api/v1/import-jobs",
                Some(&w.token_a),
                Some(body.clone()),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
        assert_eq!(v["code"], code, "{body}: {v}");
        assert!(v["message"].as_str().unwrap().len() > 10);
    }
    let request = Request::post("/api/v1/import-jobs")
        .header(
            "authorization",
            format!("Bearer {}", w.token_a.expose_secret()),
        )
        .header("content-type", "application/json")
        .body(Body::from("{not json"))
        .unwrap();
    let (s, _, body) = w.send(request).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["code"], "invalid_json");
    let (s, _) = w
        .json(
            "POST",
            "/api/v1/import-jobs",
            None,
            Some(json!({"connection": conn, "all": true})),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(actions(&w).await.len(), before, "nothing was audited");

    // a team the service account cannot see: the job fails in words, before any write
    let (s, v) = w
        .json(
            "POST",
            "/api/v1/import-jobs",
            Some(&w.token_a),
            Some(json!({"connection": conn, "teams": ["team-9"]})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let job = finished(&w, &w.token_a, v["id"].as_str().unwrap()).await;
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains("cannot see") && error.contains("team-9"),
        "{error}"
    );
    assert_eq!(
        w.store.list_teams(&w.org_a, &w.teams).await.unwrap().len(),
        1
    );
    // a team the platform refuses: the error is in words, and audited
    let (_, v) = w
        .json(
            "POST",
            "/api/v1/import-jobs",
            Some(&w.token_a),
            Some(json!({"connection": conn, "teams": ["team-3"]})),
        )
        .await;
    let job = finished(&w, &w.token_a, v["id"].as_str().unwrap()).await;
    let error = job["error"].as_str().unwrap();
    assert!(error.contains("not allowed"), "{error}");
    assert_eq!(job["result"], Value::Null);
    assert!(actions(&w).await.iter().any(|a| a == "import.failed"));
}

#[tokio::test]
async fn one_import_per_connection_runs_at_a_time() {
    let gate = Arc::new(Semaphore::new(0));
    let Fixture { w, .. } = fixture(Some(gate.clone())).await;
    let body = json!({"connection": w.teams.to_string(), "teams": ["team-1", "team-2"]});
    let (s, v) = w
        .json(
            "POST",
            "/api/v1/import-jobs",
            Some(&w.token_a),
            Some(body.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    // it waits in the users phase, with both teams done and their channels counted
    let mut running = Value::Null;
    for _ in 0..500 {
        let (_, v) = w
            .json(
                "GET",
                &format!("/api/v1/import-jobs/{id}"),
                Some(&w.token_a),
                None,
            )
            .await;
        if v["progress"]["stage"] == "users" {
            running = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(running["done"], false, "{running}");
    assert_eq!(running["progress"]["teams_total"], 2);
    assert_eq!(running["progress"]["teams_done"], 2);
    assert_eq!(running["progress"]["channels"], 5);
    assert_eq!(running["progress"]["members"], 7);
    assert_eq!(running["result"], Value::Null);
    let (s, v) = w
        .json("POST", "/api/v1/import-jobs", Some(&w.token_a), Some(body))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(v["message"].as_str().unwrap().contains("already running"));
    gate.add_permits(1);
    let job = finished(&w, &w.token_a, &id).await;
    assert_eq!(job["result"]["users"], 5, "{job}");
}

#[tokio::test]
async fn imported_users_are_listed_paged_and_by_platform() {
    let Fixture { w, .. } = fixture(None).await;
    let (_, v) = w
        .json(
            "POST",
            "/api/v1/import-jobs",
            Some(&w.token_a),
            Some(json!({"connection": w.teams.to_string(), "teams": ["team-1"]})),
        )
        .await;
    finished(&w, &w.token_a, v["id"].as_str().unwrap()).await;

    let (s, v) = w.json("GET", "/api/v1/users", Some(&w.token_a), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let users = v["users"].as_array().unwrap();
    assert_eq!(users.len(), 5);
    assert_eq!(v["next"], Value::Null);
    assert_eq!(users[0]["display_name"], "Person 1");
    assert_eq!(users[0]["email"], "person1@contoso.test");
    assert_eq!(users[0]["platform"], "msteams");
    assert_eq!(users[4]["is_guest"], true);

    // pages of two, following `next`
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            None => "/api/v1/users?limit=2&platform=msteams".to_owned(),
            Some(a) => format!("/api/v1/users?limit=2&platform=msteams&after={a}"),
        };
        let (s, v) = w.json("GET", &path, Some(&w.token_a), None).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let page = v["users"].as_array().unwrap();
        assert!(page.len() <= 2);
        seen.extend(page.iter().map(|u| u["id"].as_str().unwrap().to_owned()));
        match v["next"].as_str() {
            Some(n) => after = Some(n.to_owned()),
            None => break,
        }
        assert!(seen.len() <= 5, "paging terminates");
    }
    assert_eq!(seen, ["u1", "u2", "u3", "u4", "u5"]);

    let (s, v) = w
        .json(
            "GET",
            "/api/v1/users?platform=slack",
            Some(&w.token_a),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["users"], json!([]));
    for bad in [
        "/api/v1/users?platform=myspace",
        "/api/v1/users?limit=0",
        "/api/v1/users?limit=5000",
        "/api/v1/users?after=nonsense",
    ] {
        let (s, v) = w.json("GET", bad, Some(&w.token_a), None).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {v}");
        assert_eq!(v["code"], "invalid_input");
    }
    // another org sees none of them
    let (s, v) = w.json("GET", "/api/v1/users", Some(&w.token_b), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["users"], json!([]));
    let (s, _) = w.json("GET", "/api/v1/users", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_openapi_document_describes_the_import_routes() {
    let Fixture { w, .. } = fixture(None).await;
    let (s, v) = w.json("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    for path in [
        "/api/v1/connections/{id}/teams",
        "/api/v1/import-jobs",
        "/api/v1/import-jobs/{id}",
        "/api/v1/users",
    ] {
        assert!(v["paths"][path].is_object(), "{path} missing");
    }
    assert!(v["paths"]["/api/v1/import-jobs"]["post"]["responses"]["202"].is_object());
    for schema in [
        "ImportJobView",
        "ImportProgress",
        "ImportStage",
        "TeamList",
        "UserPage",
    ] {
        assert!(
            v["components"]["schemas"][schema].is_object(),
            "schema {schema} missing"
        );
    }
}

// --- the console -------------------------------------------------------------------------

fn get(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut b = Request::get(path);
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    b.body(Body::empty()).unwrap()
}

fn form(path: &str, cookie: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/x-www-form-urlencoded")
        .header(header::COOKIE, cookie)
        .body(Body::from(body.to_owned()))
        .unwrap()
}

async fn sign_in(w: &World, token: &SecretString) -> String {
    let (s, h, _) = w
        .send(
            Request::post("/signin")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(format!("token={}", token.expose_secret())))
                .unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    h[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

async fn page(w: &World, path: &str, cookie: &str) -> (StatusCode, String) {
    let (s, _, body) = w.send(get(path, Some(cookie))).await;
    (s, String::from_utf8(body).unwrap())
}

fn csrf_of(page: &str) -> String {
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn the_console_lists_teams_imports_the_selection_and_shows_the_result() {
    let Fixture { w, tenant } = fixture(None).await;
    let teams_path = format!("/connect/msteams/{}/teams", w.teams);
    let (s, h, _) = w.send(get(&teams_path, None)).await;
    assert_eq!(s, StatusCode::SEE_OTHER, "signed out → sign in");
    assert_eq!(h[header::LOCATION], "/signin");

    let cookie = sign_in(&w, &w.token_a).await;
    let (s, html) = page(&w, &teams_path, &cookie).await;
    assert_eq!(s, StatusCode::OK, "{html}");
    assert!(html.contains("Choose teams to import"));
    assert_eq!(html.matches("type=\"checkbox\" name=\"team\"").count(), 3);
    assert!(html.contains("value=\"team-2\"") && html.contains("Marketing"));
    assert!(html.contains("Imported"), "team-1 is marked imported");
    let csrf = csrf_of(&html);

    // the wrong platform in the path, another org's session: not found
    let (s, _) = page(&w, &format!("/connect/slack/{}/teams", w.teams), &cookie).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let other = sign_in(&w, &w.token_b).await;
    let (s, html_b) = page(&w, &teams_path, &other).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(!html_b.contains("Marketing"));

    // a forged form and an empty selection change nothing
    let (s, _, _) = w
        .send(form(&teams_path, &cookie, "csrf=forged&team=team-2"))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, body) = w
        .send(form(&teams_path, &cookie, &format!("csrf={csrf}")))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(String::from_utf8_lossy(&body).contains("Choose at least one team"));
    assert!(!actions(&w).await.iter().any(|a| a == "import.started"));

    // two teams selected
    let (s, h, _) = w
        .send(form(
            &teams_path,
            &cookie,
            &format!("csrf={csrf}&team=team-1&team=team-2"),
        ))
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let progress_page = h[header::LOCATION].to_str().unwrap().to_owned();
    assert!(progress_page.starts_with(&format!("/connect/msteams/{}/import/", w.teams)));

    // the progress JSON, for the page's script, until done
    let mut done = Value::Null;
    for _ in 0..500 {
        let (s, _, body) = w
            .send(get(&format!("{progress_page}/progress"), Some(&cookie)))
            .await;
        assert_eq!(s, StatusCode::OK);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert!(v["stage_text"].is_string());
        if v["done"] == true {
            done = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(done["result"]["channels"], 5, "{done}");
    assert_eq!(done["progress"]["memberships_ensured"], 2);
    let ensured = tenant.ensured.lock().clone();
    assert_eq!(
        ensured.iter().map(|c| c.team.as_str()).collect::<Vec<_>>(),
        ["team-2"],
        "no call for team-1, whose imported members include the service account"
    );
    let (s, _, _) = w
        .send(get(&format!("{progress_page}/progress"), Some(&other)))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "another org's session");
    let (s, _, _) = w
        .send(get(&format!("{progress_page}/progress"), None))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    let (s, html) = page(&w, &progress_page, &cookie).await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("Channels imported (5)"), "{html}");
    assert!(html.contains("Campaigns") && html.contains("Backend"));
    assert!(html.contains("Users imported (5)"));
    assert!(html.contains("person3@contoso.test"));
    assert!(html.contains("/static/import.js"));
    let (s, html) = page(&w, &progress_page, &other).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(!html.contains("Campaigns"));
    let (s, _) = page(
        &w,
        &format!(
            "/connect/msteams/{}/import/0123456789abcdef0123456789abcdef",
            w.teams
        ),
        &cookie,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // "all teams" includes Broken, whose channels Graph refuses: the failure shows in words
    let (s, h, _) = w
        .send(form(&teams_path, &cookie, &format!("csrf={csrf}&all=1")))
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let failed_page = h[header::LOCATION].to_str().unwrap().to_owned();
    for _ in 0..500 {
        let (_, _, body) = w
            .send(get(&format!("{failed_page}/progress"), Some(&cookie)))
            .await;
        let v: Value = serde_json::from_slice(&body).unwrap();
        if v["done"] == true {
            assert!(v["error"].is_string(), "{v}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (s, html) = page(&w, &failed_page, &cookie).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        html.contains("The import stopped: The service account is not allowed"),
        "{html}"
    );
    assert!(html.contains("Try again") && !html.contains("Channels imported"));

    let (s, _, js) = w.send(get("/static/import.js", None)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(String::from_utf8_lossy(&js).contains("fetch("));
}
