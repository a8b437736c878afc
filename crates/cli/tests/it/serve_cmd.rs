//! `switchboard serve --sandbox-url … --autoconnect`: both platforms connected through the
//! console's real OAuth flow and imported, and a restart on the same data directory changes
//! nothing (idempotent), against a sandbox that keeps its state.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A child process killed when dropped, so a failing test never leaves servers behind
/// (they would hold the test's output open).
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
    assert_eq!(ready["ready"], true, "{ready}");
    (Proc(Some(child)), ready)
}

/// Stops the process with SIGTERM and checks it shut down cleanly.
fn stop(mut proc: Proc) {
    let mut child = proc.0.take().unwrap();
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

#[tokio::test]
async fn a_slack_message_reaches_the_linked_teams_channel_with_its_sender() {
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
    let url = ready["url"].as_str().unwrap().to_owned();
    let token = ready["admin_token"].as_str().unwrap().to_owned();
    let http = reqwest::Client::new();
    let seed: serde_json::Value = http
        .get(format!("{base}/_sandbox/seed"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // a public Slack channel the bot is in, and a standard Teams channel
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
    let team_id = team["id"].as_str().unwrap().to_owned();
    let teams_channel = team["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["membershipType"] == "standard")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let slack_team = seed["slack"]["team_id"].as_str().unwrap();
    let link = http
        .post(format!("{url}/api/v1/universal-channels"))
        .bearer_auth(&token)
        .json(&serde_json::json!({
            "name": "general",
            "endpoints": [
                format!("slack:{slack_team}/{slack_channel}"),
                format!("msteams:{team_id}/{teams_channel}"),
            ],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(link.status(), 201, "{}", link.text().await.unwrap());

    let sender = seed["slack"]["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["is_bot"] == false && u["deleted"] == false)
        .unwrap()
        .clone();
    let posted = http
        .post(format!("{base}/_sandbox/slack/messages"))
        .json(&serde_json::json!({
            "user": sender["id"],
            "channel": slack_channel,
            "text": "hello *from* Slack",
        }))
        .send()
        .await
        .unwrap();
    assert!(
        posted.status().is_success(),
        "{}",
        posted.text().await.unwrap()
    );

    // The sandbox delivers the signed event to the server, which stores it; the relay posts
    // the copy into Teams. Wait for it in the sandbox's own state (not our records).
    let path = format!(
        "{base}/_sandbox/msteams/teams/{team_id}/channels/{}/messages",
        teams_channel.replace(':', "%3A").replace('@', "%40")
    );
    let mut found = None;
    for _ in 0..200 {
        let stored: serde_json::Value = http.get(&path).send().await.unwrap().json().await.unwrap();
        let list = stored["value"]
            .as_array()
            .or(stored.as_array())
            .cloned()
            .unwrap_or_default();
        if let Some(m) = list.iter().find(|m| {
            m["body"]["content"]
                .as_str()
                .is_some_and(|c| c.contains("from") && c.contains("Slack"))
        }) {
            found = Some(m.clone());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let copy = found.expect("the Slack message was relayed into the linked Teams channel");
    let html = copy["body"]["content"].as_str().unwrap();
    // The attribution line names the sender as the directory knows them (the event carried
    // only an id): Slack's display name, which the seed sets to the first name.
    let first_name = sender["real_name"]
        .as_str()
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    assert!(
        html.contains(&format!("<b>{first_name}")) && html.contains("(via Slack)"),
        "the sender's name is shown, not an id: {html}"
    );
    assert!(
        html.contains("<strong>from</strong>") || html.contains("<b>from</b>"),
        "formatting kept: {html}"
    );
    assert!(
        !html.contains(sender["id"].as_str().unwrap()),
        "no raw id: {html}"
    );
    stop(server);
    stop(sandbox);
}
