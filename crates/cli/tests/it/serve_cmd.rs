//! `switchboard serve --sandbox-url … --autoconnect`: both platforms connected through the
//! console's real OAuth flow and imported, and a restart on the same data directory changes
//! nothing (idempotent), against a sandbox that keeps its state.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

fn spawn(args: &[&str]) -> (Child, serde_json::Value) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start switchboard");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready: serde_json::Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("the ready line is JSON ({e}): {line:?}"));
    assert_eq!(ready["ready"], true, "{ready}");
    (child, ready)
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "exited with {status}");
}

async fn get(url: &str, token: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn autoconnect_connects_and_imports_both_platforms_once() {
    let (sandbox, sb) = spawn(&["sandbox", "--port", "0", "--time-scale", "0"]);
    let base = sb["base_url"].as_str().unwrap().to_owned();
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap().to_owned();
    let args = [
        "serve",
        "--sandbox-url",
        &base,
        "--autoconnect",
        "--port",
        "0",
        "--data-dir",
        &data_dir,
    ];

    let (server, ready) = spawn(&args);
    let url = ready["url"].as_str().unwrap().to_owned();
    let token = ready["admin_token"].as_str().unwrap().to_owned();
    assert_eq!(ready["sandbox"]["base_url"], base.as_str());
    let conns = get(&format!("{url}/api/v1/connections"), &token).await;
    let conns = conns.as_array().unwrap();
    assert_eq!(conns.len(), 2, "{conns:?}");
    for c in conns {
        assert_eq!(c["health"], "ok", "{c}");
        assert_eq!(c["is_service_account"], true);
    }
    let channels = get(&format!("{url}/api/v1/channels"), &token).await;
    let channels = channels.as_array().unwrap().len();
    let seed = &sb["seed"];
    assert!(seed.is_string(), "{seed}");
    assert!(
        channels >= 2,
        "channels of both platforms were imported: {channels}"
    );
    let audit = get(&format!("{url}/api/v1/audit"), &token).await;
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == "connection.connected")
            .count(),
        2,
        "{actions:?}"
    );
    stop(server);

    // Restart on the same data: the same connections, nothing connected twice, a new token.
    let (server, again) = spawn(&args);
    let url = again["url"].as_str().unwrap().to_owned();
    let new_token = again["admin_token"].as_str().unwrap().to_owned();
    assert_ne!(new_token, token, "a fresh admin token at every start");
    let conns = get(&format!("{url}/api/v1/connections"), &new_token).await;
    assert_eq!(conns.as_array().unwrap().len(), 2, "{conns}");
    let audit = get(&format!("{url}/api/v1/audit"), &new_token).await;
    let connected = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "connection.connected")
        .count();
    assert_eq!(connected, 2, "autoconnect did not connect again");
    let old = reqwest::Client::new()
        .get(format!("{url}/api/v1/connections"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), 401, "the previous start's token was revoked");
    stop(server);
    stop(sandbox);
}
