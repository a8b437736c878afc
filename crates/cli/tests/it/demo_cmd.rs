//! `switchboard demo` runs the walkthrough on the built-in sandbox and exits 0.

use std::process::{Command, Stdio};

#[test]
fn demo_relays_post_reply_edit_reaction_and_delete_and_exits_0() {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["demo", "--json", "--data-dir"])
        .arg(data.path())
        .stdin(Stdio::null())
        .output()
        .expect("run switchboard demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    assert_eq!(v["ok"], true, "{v}");
    let steps: Vec<&str> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    for step in [
        "posted Slack → Teams",
        "replied in the thread",
        "edited",
        "reacted",
        "deleted",
        "shared a file Slack → Teams",
        "posted Teams → Slack",
        "replied in the Slack thread",
        "edited on Slack",
        "reacted on Slack",
        "shared a file Teams → Slack",
    ] {
        assert!(steps.contains(&step), "{step} missing: {steps:?}");
    }
    let deleted = steps.iter().filter(|s| **s == "deleted").count();
    assert_eq!(deleted, 2, "a delete each way: {steps:?}");
    assert_eq!(v["audit_verify"]["ok"], true);
    let actions: Vec<&str> = v["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"universal_channel.created"),
        "{actions:?}"
    );
}
