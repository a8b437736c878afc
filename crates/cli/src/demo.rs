//! `switchboard demo`: the whole product on a fresh machine with no credentials. It starts the
//! emulated platforms and the server, connects Microsoft Teams and Slack through their service
//! accounts (the console's real OAuth flows), imports them, links a universal channel, relays
//! a post, a reply, an edit, a reaction and a delete from Slack to Teams (checked in the
//! emulated Teams' own state), prints the audit log, and exits 0.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde_json::{Value, json};

use crate::serve::{ServeArgs, launch};

/// `switchboard demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the data here instead of a fresh temporary directory.
    #[arg(long = "data-dir")]
    pub data_dir: Option<PathBuf>,
    /// Print the outcome as one JSON object instead of words.
    #[arg(long)]
    pub json: bool,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

struct Demo {
    http: reqwest::Client,
    server: String,
    token: String,
    sandbox: String,
    steps: Vec<Value>,
    json: bool,
}

impl Demo {
    fn say(&mut self, step: &str, detail: String) {
        if !self.json {
            println!("✔ {step}: {detail}");
        }
        self.steps.push(json!({"step": step, "detail": detail}));
    }

    async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.server))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(err)?;
        let status = resp.status();
        let text = resp.text().await.map_err(err)?;
        if !status.is_success() {
            return Err(format!("{path} answered {status}: {text}"));
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn sandbox(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let mut req = self
            .http
            .request(method, format!("{}/_sandbox{path}", self.sandbox));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(err)?;
        let status = resp.status();
        let text = resp.text().await.map_err(err)?;
        if !status.is_success() {
            return Err(format!("sandbox {path} answered {status}: {text}"));
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Polls the emulated Teams channel until `check` finds what it wants (10 s at most).
    async fn wait_teams<T>(
        &self,
        path: &str,
        what: &str,
        check: impl Fn(&[Value]) -> Option<T>,
    ) -> Result<T, String> {
        for _ in 0..200 {
            let stored = self.sandbox(reqwest::Method::GET, path, None).await?;
            let list = stored["value"].as_array().cloned().unwrap_or_default();
            if let Some(t) = check(&list) {
                return Ok(t);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!("{what} did not reach Teams within 10 s"))
    }
}

impl Demo {
    async fn wait_slack<T>(
        &self,
        channel: &str,
        what: &str,
        check: impl Fn(&[Value]) -> Option<T>,
    ) -> Result<T, String> {
        let path = format!("/slack/channels/{channel}/messages");
        for _ in 0..200 {
            let stored = self.sandbox(reqwest::Method::GET, &path, None).await?;
            let list = stored["messages"].as_array().cloned().unwrap_or_default();
            if let Some(t) = check(&list) {
                return Ok(t);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!("{what} did not reach Slack within 10 s"))
    }
}

fn text_of(m: &Value) -> &str {
    m["text"].as_str().unwrap_or("")
}

fn body_of(m: &Value) -> &str {
    m["body"]["content"].as_str().unwrap_or("")
}

/// Runs the walkthrough.
pub async fn run(args: DemoArgs) -> Result<(), String> {
    let tmp;
    let data_dir = match args.data_dir {
        Some(d) => d,
        None => {
            tmp = std::env::temp_dir().join(format!("switchboard-demo-{}", std::process::id()));
            std::fs::create_dir_all(&tmp).map_err(err)?;
            tmp.clone()
        }
    };
    let launched = launch(ServeArgs {
        config: None,
        data_dir: Some(data_dir.clone()),
        port: Some(0),
        sandbox: true,
        sandbox_url: None,
        time_scale: 1.0,
        autoconnect: true,
        ready_file: None,
    })
    .await?;
    let ready = launched
        .ready
        .clone()
        .ok_or("the demo runs on the sandbox")?;
    let mut demo = Demo {
        http: reqwest::Client::new(),
        server: launched.running.url.clone(),
        token: secrecy::ExposeSecret::expose_secret(&launched.running.admin_token).to_owned(),
        sandbox: ready.base_url.clone(),
        steps: Vec::new(),
        json: args.json,
    };
    let outcome = walkthrough(&mut demo).await;
    let audit = demo
        .api(reqwest::Method::GET, "/api/v1/audit", None)
        .await
        .unwrap_or(Value::Null);
    let verify = demo
        .api(reqwest::Method::GET, "/api/v1/audit/verify", None)
        .await
        .unwrap_or(Value::Null);
    launched.shutdown().await?;
    if args.json {
        println!(
            "{}",
            json!({"ok": outcome.is_ok(), "error": outcome.as_ref().err(), "steps": demo.steps, "audit": audit, "audit_verify": verify})
        );
    } else {
        println!("\nAudit log:");
        for e in audit.as_array().into_iter().flatten() {
            println!(
                "  #{} {} {} by {} on {}",
                e["seq"],
                e["at"].as_str().unwrap_or(""),
                e["action"].as_str().unwrap_or(""),
                e["actor"].as_str().unwrap_or(""),
                e["target"].as_str().unwrap_or("")
            );
        }
        println!("Audit chain intact: {}", verify["ok"]);
        println!("Data: {}", data_dir.display());
    }
    outcome
}

async fn walkthrough(d: &mut Demo) -> Result<(), String> {
    use reqwest::Method;
    let conns = d.api(Method::GET, "/api/v1/connections", None).await?;
    let names: Vec<String> = conns
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            format!(
                "{} {} as {} ({})",
                c["platform"], c["display_name"], c["account"], c["health"]
            )
        })
        .collect();
    d.say("connected through service accounts", names.join("; "));
    let channels = d.api(Method::GET, "/api/v1/channels", None).await?;
    let n = channels.as_array().map_or(0, Vec::len);
    d.say("imported", format!("{n} channels"));

    let seed = d.sandbox(Method::GET, "/seed", None).await?;
    let slack_team = seed["slack"]["team_id"]
        .as_str()
        .ok_or("no Slack team")?
        .to_owned();
    let slack_channel = seed["slack"]["channels"]
        .as_array()
        .and_then(|cs| {
            cs.iter()
                .find(|c| c["is_private"] == false && c["is_member"] == true)
        })
        .and_then(|c| c["id"].as_str())
        .ok_or("no public Slack channel with the bot")?
        .to_owned();
    let team = &seed["msteams"]["teams"][0];
    let team_id = team["id"].as_str().ok_or("no Teams team")?.to_owned();
    let teams_channel = team["channels"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["membershipType"] == "standard"))
        .and_then(|c| c["id"].as_str())
        .ok_or("no standard Teams channel")?
        .to_owned();
    let user = seed["slack"]["users"]
        .as_array()
        .and_then(|us| {
            us.iter()
                .find(|u| u["is_bot"] == false && u["deleted"] == false)
        })
        .cloned()
        .ok_or("no Slack user")?;
    let uid = user["id"].as_str().unwrap_or_default().to_owned();
    let linked = d
        .api(
            Method::POST,
            "/api/v1/universal-channels",
            Some(json!({"name": "demo", "endpoints": [
                format!("slack:{slack_team}/{slack_channel}"),
                format!("msteams:{team_id}/{teams_channel}")]})),
        )
        .await?;
    d.say(
        "linked a universal channel",
        format!("{} ⇄ Teams {}", slack_channel, linked["id"]),
    );

    let teams_path = format!(
        "/msteams/teams/{team_id}/channels/{}/messages",
        teams_channel.replace(':', "%3A").replace('@', "%40")
    );
    let posted = d
        .sandbox(
            Method::POST,
            "/slack/messages",
            Some(json!({"user": uid, "channel": slack_channel, "text": "Hello from *Slack*!"})),
        )
        .await?;
    let ts = posted["ts"].as_str().ok_or("no ts")?.to_owned();
    let copy = d
        .wait_teams(&teams_path, "the post", |l| {
            l.iter()
                .find(|m| body_of(m).contains("Hello from"))
                .cloned()
        })
        .await?;
    let copy_id = copy["id"].as_str().unwrap_or_default().to_owned();
    d.say("posted Slack → Teams", body_of(&copy).to_owned());

    d.sandbox(Method::POST, "/slack/messages", Some(json!({"user": uid, "channel": slack_channel, "text": "a reply in the thread", "thread_ts": ts})))
        .await?;
    let reply = d
        .wait_teams(&teams_path, "the reply", |l| {
            // Graph's shape: a reply carries `replyToId`; the control API lists replies flat,
            // or nested under their root.
            let nested = l
                .iter()
                .filter(|m| m["id"] == copy_id.as_str())
                .flat_map(|m| m["replies"].as_array().cloned().unwrap_or_default());
            l.iter()
                .cloned()
                .chain(nested)
                .find(|r| r["replyToId"] == copy_id.as_str() && body_of(r).contains("a reply"))
        })
        .await?;
    d.say("replied in the thread", body_of(&reply).to_owned());

    d.sandbox(
        Method::PATCH,
        &format!("/slack/messages/{slack_channel}/{ts}"),
        Some(json!({"text": "Hello from *Slack*, edited"})),
    )
    .await?;
    let edited = d
        .wait_teams(&teams_path, "the edit", |l| {
            l.iter()
                .find(|m| m["id"] == copy_id.as_str() && body_of(m).contains("edited"))
                .cloned()
        })
        .await?;
    d.say("edited", body_of(&edited).to_owned());

    d.sandbox(
        Method::POST,
        "/slack/reactions",
        Some(json!({"user": uid, "channel": slack_channel, "ts": ts, "name": "+1"})),
    )
    .await?;
    let reactions = d
        .wait_teams(&teams_path, "the reaction", |l| {
            l.iter()
                .find(|m| m["id"] == copy_id.as_str())
                .and_then(|m| m["reactions"].as_array().filter(|r| !r.is_empty()).cloned())
        })
        .await?;
    d.say("reacted", format!("{}", reactions[0]["reactionType"]));

    d.sandbox(
        Method::DELETE,
        &format!("/slack/messages/{slack_channel}/{ts}"),
        None,
    )
    .await?;
    d.wait_teams(&teams_path, "the delete", |l| {
        l.iter()
            .find(|m| m["id"] == copy_id.as_str() && !m["deletedDateTime"].is_null())
            .map(|_| ())
    })
    .await?;
    d.say("deleted", "the Teams copy is deleted too".into());

    // A file, Slack → Teams: re-uploaded into the channel's files (or linked).
    d.sandbox(
        Method::POST,
        "/slack/files",
        Some(
            json!({"user": uid, "channel": slack_channel, "filename": "notes.txt",
                    "content": "minutes of the meeting", "initial_comment": "the notes"}),
        ),
    )
    .await?;
    let with_file = d
        .wait_teams(&teams_path, "the file", |l| {
            l.iter()
                .find(|m| {
                    m["attachments"].as_array().is_some_and(|a| !a.is_empty())
                        || body_of(m).contains("notes.txt")
                })
                .cloned()
        })
        .await?;
    let file = with_file["attachments"][0]["name"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| "notes.txt (linked)".into());
    d.say("shared a file Slack → Teams", file);

    // ---- and back: a Teams user's post, reply, edit, reaction and delete reach Slack.
    let teams_user = teams_member(d, &team_id).await?;
    // Graph sends a channel's messages only once its subscription exists (the server made
    // it when the channel was linked).
    let mut subscribed = false;
    for _ in 0..200 {
        let subs = d
            .sandbox(Method::GET, "/msteams/subscriptions", None)
            .await?;
        let list = subs["value"].as_array().or(subs.as_array()).cloned();
        if list.unwrap_or_default().iter().any(|s| {
            s["resource"]
                .as_str()
                .is_some_and(|r| r.contains(&teams_channel))
        }) {
            subscribed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !subscribed {
        return Err("the Teams channel's subscription was not made within 10 s".into());
    }
    d.say(
        "subscribed to the Teams channel",
        "Graph change notifications".into(),
    );
    let t_posted = d
        .sandbox(
            Method::POST,
            "/msteams/messages",
            Some(
                json!({"user": teams_user, "team": team_id, "channel": teams_channel,
                        "html": "<p>Hello from <b>Teams</b>!</p>"}),
            ),
        )
        .await?;
    let t_id = t_posted["id"].as_str().ok_or("no id")?.to_owned();
    let s_copy = d
        .wait_slack(&slack_channel, "the Teams post", |l| {
            l.iter()
                .find(|m| text_of(m).contains("from *Teams*") && m["deleted"] != true)
                .cloned()
        })
        .await?;
    let s_ts = s_copy["ts"].as_str().unwrap_or_default().to_owned();
    d.say(
        "posted Teams → Slack",
        format!(
            "{} (as {})",
            text_of(&s_copy),
            s_copy["username"].as_str().unwrap_or("the app")
        ),
    );
    d.sandbox(
        Method::POST,
        "/msteams/messages",
        Some(
            json!({"user": teams_user, "team": team_id, "channel": teams_channel,
                    "html": "<p>a Teams reply</p>", "reply_to": t_id}),
        ),
    )
    .await?;
    let s_reply = d
        .wait_slack(&slack_channel, "the Teams reply", |l| {
            l.iter()
                .find(|m| text_of(m).contains("a Teams reply"))
                .cloned()
        })
        .await?;
    if s_reply["thread_ts"].as_str() != Some(s_ts.as_str()) {
        return Err(format!(
            "the Teams reply is not in the copy's thread: {s_reply}"
        ));
    }
    d.say("replied in the Slack thread", text_of(&s_reply).to_owned());
    let msg_path = format!(
        "/msteams/messages/{team_id}/{}/{t_id}",
        teams_channel.replace(':', "%3A").replace('@', "%40")
    );
    d.sandbox(
        Method::PATCH,
        &msg_path,
        Some(json!({"html": "<p>Hello from <b>Teams</b>, edited</p>"})),
    )
    .await?;
    let s_edited = d
        .wait_slack(&slack_channel, "the Teams edit", |l| {
            l.iter()
                .find(|m| m["ts"] == s_ts.as_str() && text_of(m).contains("edited"))
                .cloned()
        })
        .await?;
    d.say("edited on Slack", text_of(&s_edited).to_owned());
    d.sandbox(
        Method::POST,
        "/msteams/reactions",
        Some(
            json!({"user": teams_user, "team": team_id, "channel": teams_channel,
                    "message": t_id, "reaction": "heart"}),
        ),
    )
    .await?;
    let s_reactions = d
        .wait_slack(&slack_channel, "the Teams reaction", |l| {
            l.iter()
                .find(|m| m["ts"] == s_ts.as_str())
                .and_then(|m| m["reactions"].as_array().filter(|r| !r.is_empty()).cloned())
        })
        .await?;
    d.say("reacted on Slack", format!("{}", s_reactions[0]["name"]));
    d.sandbox(Method::DELETE, &msg_path, None).await?;
    d.wait_slack(&slack_channel, "the Teams delete", |l| {
        l.iter()
            .all(|m| m["ts"] != s_ts.as_str() || m["deleted"] == true)
            .then_some(())
    })
    .await?;
    d.say("deleted", "the Slack copy is deleted too".into());

    // A file, Teams → Slack: what a Teams client does (upload into the channel's SharePoint
    // folder, then a message with a reference attachment), as the Teams user.
    let name = teams_file(d, &teams_user, &team_id, &teams_channel).await?;
    let s_file = d
        .wait_slack(&slack_channel, "the Teams file", |l| {
            l.iter()
                .find(|m| {
                    m["files"]
                        .as_array()
                        .is_some_and(|f| f.iter().any(|x| x["name"] == name.as_str()))
                })
                .cloned()
        })
        .await?;
    d.say(
        "shared a file Teams → Slack",
        s_file["files"][0]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    );
    Ok(())
}

/// Uploads a file into the Teams channel's folder and posts it, as `user` with their own
/// delegated token (minted by the sandbox); returns the file's name.
async fn teams_file(d: &Demo, user: &str, team: &str, channel: &str) -> Result<String, String> {
    let name = "agenda.txt".to_owned();
    let token = d
        .sandbox(
            reqwest::Method::POST,
            "/msteams/tokens",
            Some(json!({ "user": user })),
        )
        .await?;
    let token = token["access_token"]
        .as_str()
        .or(token["token"].as_str())
        .ok_or("the sandbox minted no token")?
        .to_owned();
    let ready = d.sandbox(reqwest::Method::GET, "/ready", None).await?;
    let graph = ready["graph_api_url"].as_str().ok_or("no Graph URL")?;
    let ch = channel.replace(':', "%3A").replace('@', "%40");
    let get = |url: String| d.http.get(url).bearer_auth(&token).send();
    let folder: Value = get(format!("{graph}/teams/{team}/channels/{ch}/filesFolder"))
        .await
        .map_err(err)?
        .json()
        .await
        .map_err(err)?;
    let drive = folder["parentReference"]["driveId"]
        .as_str()
        .ok_or("no drive")?;
    let folder_id = folder["id"].as_str().ok_or("no folder")?;
    let item: Value = d
        .http
        .put(format!(
            "{graph}/drives/{drive}/items/{folder_id}:/{name}:/content"
        ))
        .bearer_auth(&token)
        .body("1. welcome\n2. roadmap\n")
        .send()
        .await
        .map_err(err)?
        .json()
        .await
        .map_err(err)?;
    let guid = item["eTag"]
        .as_str()
        .and_then(|e| e.trim_matches('"').split(',').next())
        .map(|g| g.trim_matches(|c| c == '{' || c == '}').to_owned())
        .ok_or("no eTag")?;
    let body = json!({
        "body": {"contentType": "html",
                 "content": format!("<p>the agenda</p><attachment id=\"{guid}\"></attachment>")},
        "attachments": [{"id": guid, "contentType": "reference",
                         "contentUrl": item["webUrl"], "name": name}],
    });
    let mut tries = 0;
    let posted = loop {
        let r = d
            .http
            .post(format!("{graph}/teams/{team}/channels/{ch}/messages"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .map_err(err)?;
        // Graph paces a channel at 4 requests/s (the relay is posting there too): wait as
        // told and try again, as a Teams client does.
        if r.status() == reqwest::StatusCode::TOO_MANY_REQUESTS && tries < 10 {
            tries += 1;
            let wait = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(1.0)
                .clamp(0.05, 10.0);
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
            continue;
        }
        break r;
    };
    if !posted.status().is_success() {
        return Err(format!(
            "posting the file on Teams failed: {}",
            posted.text().await.unwrap_or_default()
        ));
    }
    Ok(name)
}

/// A member of `team` other than the service account, through Graph with the sandbox's
/// ready token (the admin's view of the team).
async fn teams_member(d: &Demo, team: &str) -> Result<String, String> {
    let ready = d.sandbox(reqwest::Method::GET, "/ready", None).await?;
    let graph = ready["graph_api_url"].as_str().ok_or("no Graph URL")?;
    let token = ready["msteams"]["service_account_token"]
        .as_str()
        .ok_or("no token")?;
    let svc = ready["msteams"]["service_account_upn"]
        .as_str()
        .unwrap_or_default();
    let members: Value = d
        .http
        .get(format!("{graph}/teams/{team}/members"))
        .bearer_auth(token)
        .send()
        .await
        .map_err(err)?
        .json()
        .await
        .map_err(err)?;
    members["value"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["email"].as_str() != Some(svc))
        .and_then(|m| m["userId"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| format!("no member of team {team} to post as"))
}
