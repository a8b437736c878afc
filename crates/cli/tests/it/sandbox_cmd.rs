//! `switchboard sandbox` prints the ready line, writes the ready file, serves, and stops on
//! SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn sandbox_prints_ready_line_and_serves() {
    let dir = std::env::temp_dir().join(format!("sb-ready-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ready_file = dir.join("ready.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["sandbox", "--port", "0", "--seed", "small", "--ready-file"])
        .arg(&ready_file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start switchboard sandbox");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready: serde_json::Value = serde_json::from_str(&line).expect("ready line is JSON");
    assert_eq!(ready["ready"], true);
    let base = ready["base_url"].as_str().unwrap().to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    assert_eq!(ready["slack_api_url"], format!("{base}/slack/api/"));
    assert_eq!(ready["graph_api_url"], format!("{base}/graph/v1.0"));
    for key in [
        "team_id",
        "client_id",
        "client_secret",
        "signing_secret",
        "bot_token",
        "app_token",
    ] {
        assert!(
            ready["slack"][key].is_string(),
            "slack.{key} missing: {ready}"
        );
    }
    for key in [
        "tenant_id",
        "client_id",
        "client_secret",
        "service_account_upn",
        "service_account_password",
        "service_account_token",
        "underprivileged_upn",
        "underprivileged_password",
    ] {
        assert!(
            ready["msteams"][key].is_string(),
            "msteams.{key} missing: {ready}"
        );
    }
    let from_file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ready_file).unwrap()).unwrap();
    assert_eq!(from_file, ready);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let seed: serde_json::Value = rt.block_on(async {
        reqwest::get(format!("{base}/_sandbox/seed"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert!(!seed["slack"]["users"].as_array().unwrap().is_empty());

    // GET /_sandbox/ready is the ready line again, credentials included.
    let again: serde_json::Value = rt.block_on(async {
        reqwest::get(format!("{base}/_sandbox/ready"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(again, ready);

    // SIGTERM stops it cleanly.
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sandbox_refuses_bad_arguments() {
    for args in [
        vec!["sandbox", "--seed", "huge"],
        vec!["sandbox", "--time-scale", "-1"],
        // Not accepted until a command uses them (rather than accepted and ignored).
        vec!["--json", "sandbox"],
        vec!["sandbox", "--data-dir", "/tmp/x"],
        vec!["sandbox", "--config", "switchboard.toml"],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A command line that is accepted starts a sandbox that serves until killed: give
        // a refusal ample time, then stop the server and fail instead of hanging.
        let mut status = None;
        for _ in 0..600 {
            if let Some(s) = child.try_wait().unwrap() {
                status = Some(s);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let Some(status) = status else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{args:?} accepted: the sandbox started");
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert!(!status.success(), "{args:?} accepted");
        assert!(!stderr.is_empty(), "{args:?}: no error message");
    }
}
