//! `switchboard link | unlink | audit` on the data directory of a server that connected and
//! imported both sandbox platforms (`serve --sandbox --autoconnect`, then stopped).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

struct Proc(Option<Child>);

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `serve --sandbox --autoconnect` on `data` until it is ready, reads the imported
/// channel references through the API, and stops it; returns (a Slack ref, another Slack
/// ref, a Teams ref).
async fn prepared(data: &Path) -> (String, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "serve",
            "--sandbox",
            "--autoconnect",
            "--time-scale",
            "0",
            "--port",
            "0",
            "--data-dir",
        ])
        .arg(data)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start switchboard serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let mut proc = Proc(Some(child));
    let ready: serde_json::Value = serde_json::from_str(&line).unwrap();
    let url = ready["url"].as_str().unwrap();
    let channels: serde_json::Value = reqwest::Client::new()
        .get(format!("{url}/api/v1/channels"))
        .bearer_auth(ready["admin_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refs: Vec<String> = channels
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "standard")
        .map(|c| c["ref"].as_str().unwrap().to_owned())
        .collect();
    let slack: Vec<&String> = refs.iter().filter(|r| r.starts_with("slack:")).collect();
    let teams = refs.iter().find(|r| r.starts_with("msteams:")).unwrap();
    let child = proc.0.take().unwrap();
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let mut child = child;
    assert!(child.wait().unwrap().success());
    (slack[0].clone(), slack[1].clone(), teams.clone())
}

fn run(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .stdin(Stdio::null())
        .output()
        .expect("run switchboard")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn audit_actions(data: &Path) -> Vec<String> {
    let out = run(data, &["audit", "list", "--json", "--limit", "1000"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn link_checks_links_and_unlink_removes_with_an_audit_trail() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let (slack, slack2, teams) = prepared(data).await;
    let before = audit_actions(data);

    // --dry-run prints the capability report and changes nothing.
    let out = run(data, &["link", &slack, &teams, "--dry-run"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("Capability report (dry run, nothing changed)"),
        "{stdout}"
    );
    assert!(stdout.contains("3,000 messages a day"), "{stdout}");
    assert!(stdout.contains("The link can be made."), "{stdout}");
    let out = run(data, &["link", &slack, &teams, "--dry-run", "--json"]);
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["can_link"], true, "{report}");
    assert_eq!(report["endpoints"].as_array().unwrap().len(), 2);
    assert_eq!(audit_actions(data), before, "a dry run changes nothing");

    // A dry run with a blocker says so and exits non-zero.
    let out = run(data, &["link", &slack, &slack2, "--dry-run"]);
    assert!(!out.status.success());
    let stdout = text(&out.stdout);
    assert!(stdout.contains("blocker"), "{stdout}");
    assert!(stdout.contains("at least two platforms"), "{stdout}");
    assert!(text(&out.stderr).contains("cannot be linked"));

    // Bad input: a clear error, nothing changes.
    let out = run(data, &["link", "nonsense", &teams]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("is not a channel reference"),
        "{}",
        text(&out.stderr)
    );
    let out = run(data, &["link", &slack, &slack2, "--name", "same-side"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("at least two platforms"));
    assert_eq!(audit_actions(data), before);

    // Link.
    let out = run(data, &["link", &slack, &teams, "--name", "eng", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let linked: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = linked["id"].as_str().unwrap().to_owned();
    assert_eq!(linked["name"], "eng");
    assert_eq!(linked["endpoints"], serde_json::json!([slack, teams]));
    let actions = audit_actions(data);
    assert_eq!(actions.last().unwrap(), "universal_channel.created");
    // The same channel twice: refused, naming the universal channel it is in.
    let out = run(data, &["link", &slack, &teams]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("already linked"),
        "{}",
        text(&out.stderr)
    );
    let out = run(data, &["audit", "list"]);
    let table = text(&out.stdout);
    assert!(
        table.contains("universal_channel.created") && table.contains("admin:cli"),
        "{table}"
    );

    // Unlink, then again: not found.
    let out = run(data, &["unlink", &id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Unlinked \"eng\""));
    let out = run(data, &["unlink", &id]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("no universal channel"));
    assert_eq!(
        audit_actions(data).last().unwrap(),
        "universal_channel.deleted"
    );
    // Unlinked, the channels can be linked again.
    let out = run(data, &["link", &slack, &teams, "--dry-run", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["can_link"], true);
}

#[tokio::test]
async fn audit_exports_and_verify_fails_on_a_broken_chain() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let (slack, _, teams) = prepared(data).await;
    assert!(run(data, &["link", &slack, &teams]).status.success());
    let entries = audit_actions(data).len();
    assert!(entries >= 5);

    let out = run(data, &["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!("intact: {entries} entries checked")));

    let file = dir.path().join("audit.jsonl");
    let out = run(
        data,
        &["audit", "export", "--output", file.to_str().unwrap()],
    );
    assert!(out.status.success());
    let exported = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<serde_json::Value> = exported
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), entries);
    for w in lines.windows(2) {
        assert_eq!(w[1]["prev_hash"], w[0]["hash"]);
    }
    let out = run(data, &["audit", "export"]);
    assert_eq!(text(&out.stdout), exported, "stdout and file agree");
    let out = run(data, &["audit", "list", "--limit", "0"]);
    assert!(!out.status.success());

    // Someone with raw database access edits entry 2: verify names it and exits non-zero.
    let db = data.join(switchboard_storage::DB_FILE_NAME);
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    for sql in [
        "DROP TRIGGER audit_log_no_update",
        "UPDATE audit_log SET target = 'forged' WHERE seq = 2",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    pool.close().await;
    let out = run(data, &["audit", "verify"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("broken at entry 2"), "{err}");
    let out = run(data, &["audit", "verify", "--json"]);
    assert!(!out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["first_bad_seq"], 2);
}
