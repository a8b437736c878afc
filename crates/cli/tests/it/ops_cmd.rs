//! The operator's commands on the real binary against a running sandbox: `orgs create|list`,
//! `connect` from the terminal (the test plays the browser on the consent page and follows
//! the redirect to the loopback listener), `doctor`, and `connections migrate`.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;

use secrecy::SecretString;
use switchboard_core::*;
use time::OffsetDateTime;

/// A child process killed when dropped.
struct Proc(Option<Child>);

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    c.env_remove("SWITCHBOARD_LOG_FORMAT")
        .env_remove("SWITCHBOARD_SANDBOX_URL")
        .env_remove("SWITCHBOARD_SERVER__PUBLIC_URL");
    c
}

fn spawn_ready(args: &[&str]) -> (Proc, serde_json::Value) {
    let mut child = bin()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start switchboard");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready: serde_json::Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("the ready line is JSON ({e}): {line:?}"));
    (Proc(Some(child)), ready)
}

/// Runs a command to its end with `env`.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    bin()
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run switchboard")
}

fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json_of(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", text(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("JSON ({e}): {}", text(o)))
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let pat = format!("{name}=\"");
    let start = tag.find(&pat)? + pat.len();
    let end = tag[start..].find('"')? + start;
    Some(
        tag[start..end]
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&#39;", "'")
            .replace("&amp;", "&"),
    )
}

/// Plays the browser: opens the authorize URL, signs in on the consent page, accepts, and
/// follows the redirect back to the terminal's loopback listener. Returns that page.
async fn play_browser(base: &str, authorize: &str, user: Option<(&str, &str)>) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = http
        .get(authorize)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut fields: Vec<(String, String)> = page
        .split("<input")
        .skip(1)
        .filter_map(|rest| {
            let tag = &rest[..rest.find('>')?];
            if attr(tag, "type").as_deref() != Some("hidden") {
                return None;
            }
            Some((attr(tag, "name")?, attr(tag, "value").unwrap_or_default()))
        })
        .collect();
    if let Some((u, p)) = user {
        fields.push(("username".into(), u.into()));
        fields.push(("password".into(), p.into()));
    }
    fields.push(("decision".into(), "accept".into()));
    let i = page.find("<form").expect("a consent form");
    let action = attr(&page[i..i + page[i..].find('>').unwrap()], "action").unwrap();
    let target = if action.starts_with("http") {
        action
    } else {
        format!("{base}{action}")
    };
    let consent = http.post(target).form(&fields).send().await.unwrap();
    let back = consent
        .headers()
        .get("location")
        .unwrap_or_else(|| panic!("the consent page did not redirect ({})", consent.status()))
        .to_str()
        .unwrap()
        .to_owned();
    assert!(back.starts_with("http://127.0.0.1:"), "{back}");
    // A stray request first (a browser asks for a favicon): the terminal keeps waiting.
    let origin = back.split("/connect/").next().unwrap();
    let stray = http
        .get(format!("{origin}/favicon.ico"))
        .send()
        .await
        .unwrap();
    assert_eq!(stray.status(), 404);
    // A forged answer (right path, wrong state) is refused and the terminal keeps waiting.
    let path = back.split('?').next().unwrap();
    let forged = http
        .get(format!("{path}?code=forged&state=not-the-one"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 400);
    let done = http.get(&back).send().await.unwrap();
    assert_eq!(done.status(), 200);
    done.text().await.unwrap()
}

/// Runs an OAuth command (`connect`, `connections migrate`), signing in as `user` in the
/// "browser" once it prints the URL. Returns the process output.
async fn run_with_sign_in(
    args: &[&str],
    env: &[(&str, &str)],
    base: &str,
    user: Option<(&str, &str)>,
) -> Output {
    let mut child = bin()
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let url = loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            let out = child.wait_with_output().unwrap();
            panic!("no URL was printed: {seen}\n{}", text(&out));
        }
        seen.push_str(&line);
        if line.starts_with("http") {
            break line.trim().to_owned();
        }
    };
    assert!(url.starts_with(base), "{url}");
    let page = play_browser(base, &url, user).await;
    assert!(page.contains("Signed in"), "{page}");
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    let mut out = child.wait_with_output().unwrap();
    out.stderr = format!("{seen}{rest}").into_bytes();
    out
}

fn seed_user<'a>(seed: &'a serde_json::Value, upn: &str) -> &'a serde_json::Value {
    seed["msteams"]["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["userPrincipalName"] == upn)
        .unwrap()
}

#[tokio::test]
async fn connect_with_the_underprivileged_account_then_doctor_names_the_missing_role() {
    let (_sandbox, sb) = spawn_ready(&["sandbox", "--port", "0", "--time-scale", "0"]);
    let base = sb["base_url"].as_str().unwrap().to_owned();
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap().to_owned();
    let env = [("SWITCHBOARD_SANDBOX_URL", base.as_str())];

    // Nothing works before there is an organization, and says so.
    let none = run(&["doctor", "--data-dir", &d], &env);
    assert!(!none.status.success());
    assert!(text(&none).contains("orgs create"), "{}", text(&none));
    let org = json_of(&run(
        &["orgs", "create", "Contoso", "--data-dir", &d, "--json"],
        &env,
    ));
    assert_eq!(org["name"], "Contoso");

    let upn = sb["msteams"]["underprivileged_upn"].as_str().unwrap();
    let password = sb["msteams"]["underprivileged_password"].as_str().unwrap();
    let out = run_with_sign_in(
        &["connect", "msteams", "--data-dir", &d, "--json"],
        &env,
        &base,
        Some((upn, password)),
    )
    .await;
    let connected = json_of(&out);
    assert_eq!(connected["account"], upn);
    assert_eq!(connected["health"], "missing_roles", "{connected}");
    let teams_admin = connected["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "Teams Administrator role")
        .unwrap_or_else(|| panic!("{connected}"));
    assert_eq!(teams_admin["ok"], false);
    assert!(
        teams_admin["fix"]
            .as_str()
            .unwrap()
            .contains("assign the role to")
    );
    // Stored with that health.
    let list = json_of(&run(
        &["connections", "list", "--data-dir", &d, "--json"],
        &env,
    ));
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["health"], "missing_roles");
    assert_eq!(list[0]["account"], upn);

    let doctor = run(&["doctor", "--data-dir", &d], &env);
    let report = text(&doctor);
    assert_eq!(doctor.status.code(), Some(1), "{report}");
    assert!(report.contains("Teams Administrator role"), "{report}");
    assert!(
        report.contains("Roles & admins → Teams Administrator, choose Add assignments"),
        "the fix says how to add the role: {report}"
    );
    // Slack from the terminal too: the workspace's bot, healthy.
    let out = run_with_sign_in(
        &["connect", "slack", "--data-dir", &d, "--json"],
        &env,
        &base,
        None,
    )
    .await;
    let slack = json_of(&out);
    assert_eq!(slack["platform"], "slack");
    assert_eq!(slack["health"], "ok", "{slack}");
    assert_eq!(
        slack["tenant"],
        sb["slack"]["team_id"].as_str().unwrap(),
        "{slack}"
    );
    // The JSON form names the same problem, as a role.
    let doctor = run(&["doctor", "--data-dir", &d, "--json"], &env);
    assert_eq!(doctor.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&doctor.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert!(
        v["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["kind"] == "role" && p["what"] == "Teams Administrator role"),
        "{v}"
    );
}

#[tokio::test]
async fn orgs_are_isolated_and_doctor_passes_on_a_healthy_installation() {
    let (_sandbox, sb) = spawn_ready(&["sandbox", "--port", "0", "--time-scale", "0"]);
    let base = sb["base_url"].as_str().unwrap().to_owned();
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap().to_owned();

    let a = json_of(&run(
        &["orgs", "create", "Contoso", "--data-dir", &d, "--json"],
        &[],
    ));
    let b = json_of(&run(
        &["orgs", "create", "Fabrikam", "--data-dir", &d, "--json"],
        &[],
    ));
    let again = run(&["orgs", "create", "Contoso", "--data-dir", &d], &[]);
    assert!(!again.status.success());
    assert!(text(&again).contains("exists already"), "{}", text(&again));
    let human = run(&["orgs", "create", "Northwind", "--data-dir", &d], &[]);
    assert!(human.status.success());
    let printed = String::from_utf8_lossy(&human.stdout).into_owned();
    assert!(printed.contains("shown once"), "{printed}");
    let listed = json_of(&run(&["orgs", "list", "--data-dir", &d, "--json"], &[]));
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Contoso", "Fabrikam", "Northwind"]);
    assert_eq!(listed[0]["id"], a["id"]);

    // serve administers the oldest organization: Contoso gets both platforms.
    let (_server, ready) = spawn_ready(&[
        "serve",
        "--sandbox-url",
        &base,
        "--autoconnect",
        "--port",
        "0",
        "--data-dir",
        &d,
    ]);
    let url = ready["url"].as_str().unwrap().to_owned();
    let http = reqwest::Client::new();
    let get = |path: &str, token: &serde_json::Value| {
        http.get(format!("{url}{path}"))
            .bearer_auth(token.as_str().unwrap())
            .send()
    };
    let mine: serde_json::Value = get("/api/v1/connections", &a["admin_token"])
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mine.as_array().map(Vec::len), Some(2), "{mine}");
    for path in ["/api/v1/connections", "/api/v1/channels"] {
        let theirs: serde_json::Value = get(path, &b["admin_token"])
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let text = theirs.to_string();
        for c in mine.as_array().unwrap() {
            assert!(!text.contains(c["id"].as_str().unwrap()), "{path}: {text}");
        }
    }
    let listed_b = json_of(&run(
        &[
            "connections",
            "list",
            "--org",
            "Fabrikam",
            "--data-dir",
            &d,
            "--json",
        ],
        &[("SWITCHBOARD_SANDBOX_URL", base.as_str())],
    ));
    assert_eq!(listed_b, serde_json::json!([]));

    // Link a channel pair so doctor checks membership too.
    let seed: serde_json::Value = http
        .get(format!("{base}/_sandbox/seed"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let slack_channel = seed["slack"]["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["is_private"] == false && c["is_member"] == true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let team = &seed["msteams"]["teams"][0];
    let link = http
        .post(format!("{url}/api/v1/universal-channels"))
        .bearer_auth(a["admin_token"].as_str().unwrap())
        .json(&serde_json::json!({
            "name": "general",
            "endpoints": [
                format!("slack:{}/{slack_channel}", seed["slack"]["team_id"].as_str().unwrap()),
                format!("msteams:{}/{}", team["id"].as_str().unwrap(), team["channels"][0]["id"].as_str().unwrap()),
            ],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(link.status(), 201);

    let env = [
        ("SWITCHBOARD_SANDBOX_URL", base.as_str()),
        ("SWITCHBOARD_SERVER__PUBLIC_URL", url.as_str()),
    ];
    let doctor = run(&["doctor", "--data-dir", &d], &env);
    assert!(doctor.status.success(), "{}", text(&doctor));
    assert!(text(&doctor).contains("No problems found"));
    // Another org has nothing connected: that is a problem with its fix.
    let other = run(&["doctor", "--org", "Fabrikam", "--data-dir", &d], &env);
    assert_eq!(other.status.code(), Some(1));
    assert!(
        text(&other).contains("switchboard connect msteams"),
        "{}",
        text(&other)
    );
    // A wrong public URL: the webhooks are unreachable, and doctor says how to fix it.
    let wrong = run(
        &["doctor", "--data-dir", &d],
        &[
            ("SWITCHBOARD_SANDBOX_URL", base.as_str()),
            ("SWITCHBOARD_SERVER__PUBLIC_URL", "http://127.0.0.1:9"),
        ],
    );
    assert_eq!(wrong.status.code(), Some(1));
    assert!(
        text(&wrong).contains("server.public_url"),
        "{}",
        text(&wrong)
    );
}

#[tokio::test]
async fn connections_migrate_moves_a_personal_connection_from_the_terminal() {
    let (_sandbox, sb) = spawn_ready(&["sandbox", "--port", "0", "--time-scale", "0"]);
    let base = sb["base_url"].as_str().unwrap().to_owned();
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap().to_owned();
    let env = [("SWITCHBOARD_SANDBOX_URL", base.as_str())];
    let http = reqwest::Client::new();
    let seed: serde_json::Value = http
        .get(format!("{base}/_sandbox/seed"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    // A connection made earlier with Bob's own token (an ordinary user).
    json_of(&run(
        &["orgs", "create", "Contoso", "--data-dir", &d, "--json"],
        &env,
    ));
    let bob = seed_user(&seed, "bob@contoso.onmicrosoft.com");
    let minted: serde_json::Value = http
        .post(format!("{base}/_sandbox/msteams/tokens"))
        .json(&serde_json::json!({ "user": "bob@contoso.onmicrosoft.com" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = {
        let store: Arc<dyn Store> = switchboard_storage::SqlStore::open_data_dir(data.path())
            .await
            .unwrap()
            .shared();
        let org = store.list_orgs().await.unwrap()[0].id.clone();
        let c = Connection {
            id: ConnectionId::generate(),
            org: org.clone(),
            platform: PlatformKind::Msteams,
            tenant: TenantId::new(sb["msteams"]["tenant_id"].as_str().unwrap()).unwrap(),
            enterprise: None,
            display_name: "contoso.onmicrosoft.com".into(),
            account: AccountIdentity {
                user_id: UserId::new(bob["id"].as_str().unwrap()).unwrap(),
                display_name: "bob@contoso.onmicrosoft.com".into(),
                is_service_account: false,
            },
            health: ConnectionHealth::Ok,
            created_at: OffsetDateTime::now_utc(),
        };
        store.put_connection(&c).await.unwrap();
        store
            .put_credentials(
                &org,
                &c.id,
                &Credentials {
                    access_token: SecretString::from(
                        minted["access_token"].as_str().unwrap().to_owned(),
                    ),
                    refresh_token: None,
                    expires_at: None,
                    scopes: Vec::new(),
                },
            )
            .await
            .unwrap();
        c.id.to_string()
    };

    // doctor calls the personal token out, with the command that fixes it.
    let doctor = run(&["doctor", "--data-dir", &d], &env);
    assert_eq!(doctor.status.code(), Some(1));
    assert!(
        text(&doctor).contains(&format!("switchboard connections migrate {id}")),
        "{}",
        text(&doctor)
    );

    // The underprivileged account is refused: nothing changes.
    let refused = run_with_sign_in(
        &["connections", "migrate", &id, "--data-dir", &d],
        &env,
        &base,
        Some((
            sb["msteams"]["underprivileged_upn"].as_str().unwrap(),
            sb["msteams"]["underprivileged_password"].as_str().unwrap(),
        )),
    )
    .await;
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("Teams Administrator"),
        "{}",
        text(&refused)
    );
    let list = json_of(&run(
        &["connections", "list", "--data-dir", &d, "--json"],
        &env,
    ));
    assert_eq!(list[0]["account"], "bob@contoso.onmicrosoft.com");
    assert_eq!(list[0]["is_service_account"], false);

    let svc_upn = sb["msteams"]["service_account_upn"].as_str().unwrap();
    let out = run_with_sign_in(
        &["connections", "migrate", &id, "--data-dir", &d, "--json"],
        &env,
        &base,
        Some((
            svc_upn,
            sb["msteams"]["service_account_password"].as_str().unwrap(),
        )),
    )
    .await;
    let moved = json_of(&out);
    assert_eq!(moved["previous"], "bob@contoso.onmicrosoft.com");
    assert_eq!(moved["connection"]["id"], id.as_str(), "in place");
    assert_eq!(moved["connection"]["account"], svc_upn);
    assert_eq!(moved["connection"]["is_service_account"], true);
    // Nothing was relayed through Bob's token and nothing is linked: no old copies, no
    // subscriptions to move.
    assert_eq!(moved["old_copies"], 0);
    assert_eq!(moved["subscriptions"]["created"], 0);
    let list = json_of(&run(
        &["connections", "list", "--data-dir", &d, "--json"],
        &env,
    ));
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(
        list[0]["account_id"],
        seed_user(&seed, svc_upn)["id"],
        "{list}"
    );

    // Audited as the CLI's user, and a second migrate has nothing to do.
    let store: Arc<dyn Store> = switchboard_storage::SqlStore::open_data_dir(data.path())
        .await
        .unwrap()
        .shared();
    let org = store.list_orgs().await.unwrap()[0].id.clone();
    let log = store.list_audit(&org, 0, 100).await.unwrap();
    let entry = log
        .iter()
        .find(|e| e.action == "connection.migrated")
        .unwrap();
    assert!(
        matches!(&entry.actor, Actor::Admin { name } if name.starts_with("cli:")),
        "{entry:?}"
    );
    assert_eq!(entry.details["from"]["name"], "bob@contoso.onmicrosoft.com");
    let again = run(&["connections", "migrate", &id, "--data-dir", &d], &env);
    assert!(!again.status.success());
    assert!(text(&again).contains("nothing to migrate"));
}

#[test]
fn logs_are_json_lines_when_configured() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap().to_owned();
    // An info event is logged when the store opens the data directory; JSON lines carry the
    // level and the message as fields.
    let out = run(
        &["orgs", "list", "--data-dir", &d],
        &[
            ("SWITCHBOARD_LOG_FORMAT", "json"),
            ("SWITCHBOARD_LOG", "debug"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "debug logging printed nothing");
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{v}");
    }
    // Human lines otherwise.
    let out = run(
        &["orgs", "list", "--data-dir", &d],
        &[("SWITCHBOARD_LOG", "debug")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr.lines().find(|l| !l.trim().is_empty()).unwrap();
    assert!(
        serde_json::from_str::<serde_json::Value>(first).is_err(),
        "{first}"
    );
    // Nothing secret reaches the logs, even at trace level: the token printed once on
    // stdout is not in them.
    let out = run(
        &["orgs", "create", "Contoso", "--data-dir", &d, "--json"],
        &[
            ("SWITCHBOARD_LOG_FORMAT", "json"),
            ("SWITCHBOARD_LOG", "trace"),
        ],
    );
    let created = json_of(&out);
    let token = created["admin_token"].as_str().unwrap();
    assert!(token.len() > 20);
    assert!(!String::from_utf8_lossy(&out.stderr).contains(token));
    // Quiet by default.
    let out = run(&["orgs", "list", "--data-dir", &d], &[]);
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "");
}
