//! `teams list`, `import`, `channels list`, `users list` and `connections list` against a
//! data directory that `serve --sandbox-url … --autoconnect` populated, with the platforms
//! taken from `SWITCHBOARD_SANDBOX_URL` (the sandbox keeps running between the commands).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
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

fn spawn(args: &[&str]) -> (Proc, serde_json::Value) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
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

fn stop(mut proc: Proc) {
    let mut child = proc.0.take().unwrap();
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    assert!(child.wait().unwrap().success());
}

struct Cli {
    sandbox: String,
    data_dir: String,
}

impl Cli {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(args)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env("SWITCHBOARD_SANDBOX_URL", &self.sandbox)
            .stdin(Stdio::null())
            .output()
            .expect("run switchboard")
    }

    /// Runs a command that must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut with = args.to_vec();
        with.push("--json");
        let out = self.ok(&with);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
    }
}

fn strs<'a>(v: &'a serde_json::Value, key: &str) -> BTreeSet<&'a str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x[key].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn the_listing_and_import_commands_show_the_seeded_teams_channels_and_users() {
    let (sandbox, sb) = spawn(&["sandbox", "--port", "0", "--time-scale", "0"]);
    let base = sb["base_url"].as_str().unwrap().to_owned();
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap().to_owned();
    let (server, ready) = spawn(&[
        "serve",
        "--sandbox-url",
        &base,
        "--autoconnect",
        "--port",
        "0",
        "--data-dir",
        &data_dir,
    ]);
    assert_eq!(ready["ready"], true);
    stop(server);
    let cli = Cli {
        sandbox: base.clone(),
        data_dir,
    };
    let seed: serde_json::Value = reqwest::get(format!("{base}/_sandbox/seed"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let seeded_teams = &seed["msteams"]["teams"];

    // connections list
    let conns = cli.json(&["connections", "list"]);
    assert_eq!(
        strs(&conns, "platform"),
        BTreeSet::from(["msteams", "slack"])
    );
    for c in conns.as_array().unwrap() {
        assert_eq!(c["health"], "ok", "{c}");
        assert_eq!(c["is_service_account"], true);
    }
    let table = cli.ok(&["connections", "list"]);
    assert!(
        table.starts_with("ID ") && table.contains("HEALTH"),
        "{table}"
    );

    // teams list: every seeded team, imported by autoconnect
    let teams = cli.json(&["teams", "list", "--platform", "msteams"]);
    assert_eq!(teams["platform"], "msteams");
    assert_eq!(strs(&teams["teams"], "id"), strs(seeded_teams, "id"));
    assert!(
        teams["teams"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["imported"] == true),
        "{teams}"
    );
    let table = cli.ok(&["teams", "list", "--platform", "msteams"]);
    assert!(
        table.lines().next().unwrap().contains("IMPORTED"),
        "{table}"
    );
    for t in seeded_teams.as_array().unwrap() {
        assert!(
            table.contains(t["displayName"].as_str().unwrap()),
            "{table}"
        );
    }
    let slack = cli.json(&["teams", "list", "--platform", "slack"]);
    assert_eq!(slack["teams"][0]["id"], seed["slack"]["team_id"]);

    // import two teams: their channels are counted, no progress bars off a terminal
    let (a, b) = (&seeded_teams[0], &seeded_teams[1]);
    let out = cli.run(&[
        "import",
        "--platform",
        "msteams",
        "--team",
        a["id"].as_str().unwrap(),
        "--team",
        b["id"].as_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("teams ["),
        "bars hidden when not a terminal: {stderr}"
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let expected =
        a["channels"].as_array().unwrap().len() + b["channels"].as_array().unwrap().len();
    assert_eq!(summary["teams"], 2);
    assert_eq!(summary["channels"], expected as u64, "{summary}");
    assert_eq!(
        summary["users"],
        seed["msteams"]["users"].as_array().unwrap().len() as u64
    );
    let all = cli.json(&["import", "--platform", "msteams", "--all"]);
    assert_eq!(all["teams"], seeded_teams.as_array().unwrap().len() as u64);
    let words = cli.ok(&["import", "--platform", "slack", "--all"]);
    assert!(words.starts_with("Imported the workspace of"), "{words}");

    // channels list: every seeded Teams channel and the Slack channels, with refs
    let channels = cli.json(&["channels", "list"]);
    let ids = strs(&channels, "id");
    for t in seeded_teams.as_array().unwrap() {
        for c in t["channels"].as_array().unwrap() {
            assert!(ids.contains(c["id"].as_str().unwrap()), "{c} missing");
        }
    }
    for c in seed["slack"]["channels"].as_array().unwrap() {
        if c["is_private"] == false && c["is_archived"] != true {
            assert!(ids.contains(c["id"].as_str().unwrap()), "{c} missing");
        }
    }
    let slack_only = cli.json(&["channels", "list", "--platform", "slack"]);
    assert_eq!(strs(&slack_only, "platform"), BTreeSet::from(["slack"]));
    let slack_team = seed["slack"]["team_id"].as_str().unwrap();
    assert!(
        strs(&slack_only, "ref")
            .iter()
            .all(|r| r.starts_with(&format!("slack:{slack_team}/")))
    );
    let table = cli.ok(&["channels", "list", "--platform", "msteams"]);
    assert!(
        table.contains(a["displayName"].as_str().unwrap()),
        "team names shown: {table}"
    );

    // users list
    let users = cli.json(&["users", "list", "--platform", "msteams"]);
    assert_eq!(strs(&users, "id"), strs(&seed["msteams"]["users"], "id"));
    let users = cli.json(&["users", "list", "--platform", "slack"]);
    let ids = strs(&users, "id");
    for u in seed["slack"]["users"].as_array().unwrap() {
        assert!(ids.contains(u["id"].as_str().unwrap()), "{u} missing");
    }
    let table = cli.ok(&["users", "list"]);
    assert!(table.contains("EMAIL"), "{table}");

    // bad input: words and a non-zero exit, nothing imported
    let out = cli.run(&["import", "--platform", "msteams", "--team", "no-such-team"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot see") && stderr.contains("no-such-team"),
        "{stderr}"
    );
    let out = cli.run(&["teams", "list", "--platform", "myspace"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a platform"));
    let out = cli.run(&["import", "--platform", "msteams"]);
    assert!(!out.status.success(), "--team or --all is required");
    stop(sandbox);
}
