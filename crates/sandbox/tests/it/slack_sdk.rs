//! Slack's official Python SDK (`slack_sdk`) against the sandbox: auth.test, paginated
//! conversations.list / users.list checked against `/_sandbox/seed`, errors and joining, and
//! every other Web API method the Slack adapter calls.
//! Needs `python3` with `slack_sdk` installed; fails (does not skip) without them.

#[allow(unused_imports)]
use crate::slack_support;

use slack_support::start;
use switchboard_sandbox::Seed;

#[tokio::test]
async fn official_python_sdk_pages_and_counts_match_the_seed() {
    let env = start(Seed::Small, 1.0).await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/slack_sdk_check.py"
    );
    let output = tokio::process::Command::new("python3")
        .arg(script)
        .arg(&env.api)
        .arg(&env.bot)
        .arg(format!("{}/_sandbox/seed", env.base))
        .arg(
            env.info["slack"]["app_token"]
                .as_str()
                .expect("the ready line has an app token"),
        )
        .output()
        .await
        .expect("python3 must be installed to run the slack_sdk check");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "slack_sdk check failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
        output.status
    );
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).expect("a JSON summary");
    assert_eq!(summary["ok"], true);
    assert_eq!(
        summary["socket_mode"], true,
        "apps.connections.open was checked"
    );
    assert_eq!(
        summary["users"].as_u64().unwrap() as usize,
        env.seed["users"].as_array().unwrap().len()
    );
}
