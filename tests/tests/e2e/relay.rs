//! Universal channels end to end: what one platform's users do shows up on the other, judged
//! from the sandbox's own state.

use serde_json::{Value, json};

use crate::support::{Pair, World};

fn text_of_teams(m: &Value) -> String {
    m["body"]["content"].as_str().unwrap_or_default().to_owned()
}

async fn teams_find(w: &World, pair: &Pair, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..600 {
        if let Some(m) = w.teams_messages(pair).await.into_iter().find(|m| f(m)) {
            return m;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!(
        "timed out waiting for {what}; Teams has {:#}",
        Value::Array(w.teams_messages(pair).await)
    );
}

async fn slack_find(w: &World, channel: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..600 {
        if let Some(m) = w.slack_messages(channel).await.into_iter().find(|m| f(m)) {
            return m;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!(
        "timed out waiting for {what}; Slack has {:#}",
        Value::Array(w.slack_messages(channel).await)
    );
}

fn slack_text(m: &Value) -> &str {
    m["text"].as_str().unwrap_or_default()
}

fn is_deleted_teams(m: &Value) -> bool {
    !m["deletedDateTime"].is_null() && m.get("deletedDateTime").is_some()
}

#[tokio::test]
async fn posts_replies_edits_reactions_and_deletes_flow_both_ways() {
    let w = World::start("0").await;
    let pair = w.link_pair(0).await;
    let (slack_user, slack_name, _) = w.slack_user(0);
    let (teams_user, teams_name, _) = w.teams_author(&pair, 0).await;

    // ---- Slack → Teams: a post with formatting and the sender's name
    let s_ts = w
        .slack_post(&slack_user, &pair.slack, "hello *bold* from Slack", None)
        .await;
    let t_copy = teams_find(&w, &pair, "the Slack post in Teams", |m| {
        text_of_teams(m).contains("from Slack")
    })
    .await;
    let html = text_of_teams(&t_copy);
    let first = slack_name.split(' ').next().unwrap();
    assert!(html.contains(first), "the sender's name is shown: {html}");
    assert!(
        html.contains("<b>bold</b>") || html.contains("<strong>bold</strong>"),
        "formatting kept: {html}"
    );
    assert!(!html.contains(&slack_user), "no raw id: {html}");
    let t_copy_id = t_copy["id"].as_str().unwrap().to_owned();

    // ---- Teams → Slack: a post, with the sender's name and formatting
    let t_id = w
        .teams_post(
            &teams_user,
            &pair,
            "<p>hi <b>there</b> from Teams</p>",
            None,
        )
        .await;
    let s_copy = slack_find(&w, &pair.slack, "the Teams post in Slack", |m| {
        slack_text(m).contains("from Teams")
    })
    .await;
    assert!(
        slack_text(&s_copy).contains("*there*"),
        "bold became Slack bold: {s_copy}"
    );
    let shown = format!(
        "{} {}",
        s_copy["username"].as_str().unwrap_or_default(),
        slack_text(&s_copy)
    );
    assert!(
        shown.contains(&teams_name),
        "the Teams sender's name is shown on Slack: {s_copy}"
    );
    let s_copy_ts = s_copy["ts"].as_str().unwrap().to_owned();

    // ---- replies both ways land in the right thread
    w.teams_post(&teams_user, &pair, "<p>a Teams reply</p>", Some(&t_id))
        .await;
    let s_reply = slack_find(&w, &pair.slack, "the Teams reply in Slack", |m| {
        slack_text(m).contains("a Teams reply")
    })
    .await;
    assert_eq!(
        s_reply["thread_ts"].as_str(),
        Some(s_copy_ts.as_str()),
        "the reply is in the copy's thread: {s_reply}"
    );
    w.slack_post(&slack_user, &pair.slack, "a Slack reply", Some(&s_ts))
        .await;
    let t_reply = teams_find(&w, &pair, "the Slack reply in Teams", |m| {
        text_of_teams(m).contains("a Slack reply")
    })
    .await;
    assert_eq!(
        t_reply["replyToId"].as_str(),
        Some(t_copy_id.as_str()),
        "the reply is under the copy: {t_reply}"
    );

    // ---- edits both ways
    w.ctl(
        "PATCH",
        &format!(
            "/_sandbox/msteams/messages/{}/{}/{t_id}",
            pair.team,
            pair.channel.replace(':', "%3A").replace('@', "%40")
        ),
        json!({ "html": "<p>hi there from Teams, edited</p>" }),
    )
    .await;
    let edited = slack_find(&w, &pair.slack, "the Teams edit in Slack", |m| {
        m["ts"].as_str() == Some(s_copy_ts.as_str()) && slack_text(m).contains("edited")
    })
    .await;
    assert!(
        format!("{} {}", edited["username"], slack_text(&edited)).contains(&teams_name),
        "the sender stays visible after the edit: {edited}"
    );
    w.ctl(
        "PATCH",
        &format!("/_sandbox/slack/messages/{}/{s_ts}", pair.slack),
        json!({ "text": "hello from Slack, edited" }),
    )
    .await;
    teams_find(&w, &pair, "the Slack edit in Teams", |m| {
        m["id"].as_str() == Some(t_copy_id.as_str()) && text_of_teams(m).contains("edited")
    })
    .await;

    // ---- reactions both ways
    w.ctl(
        "POST",
        "/_sandbox/msteams/reactions",
        json!({ "user": teams_user, "team": pair.team, "channel": pair.channel,
                "message": t_id, "reaction": "like" }),
    )
    .await;
    let reacted = slack_find(&w, &pair.slack, "the Teams reaction in Slack", |m| {
        m["ts"].as_str() == Some(s_copy_ts.as_str())
            && m["reactions"].as_array().is_some_and(|r| !r.is_empty())
    })
    .await;
    assert!(
        reacted["reactions"].to_string().contains("thumbsup")
            || reacted["reactions"].to_string().contains("+1"),
        "like became Slack's thumbs up: {}",
        reacted["reactions"]
    );
    w.ctl(
        "POST",
        "/_sandbox/slack/reactions",
        json!({ "user": slack_user, "channel": pair.slack, "ts": s_ts, "name": "tada" }),
    )
    .await;
    teams_find(&w, &pair, "the Slack reaction in Teams", |m| {
        m["id"].as_str() == Some(t_copy_id.as_str())
            && m["reactions"].as_array().is_some_and(|r| !r.is_empty())
    })
    .await;

    // ---- deletes both ways
    w.ctl(
        "DELETE",
        &format!(
            "/_sandbox/msteams/messages/{}/{}/{t_id}",
            pair.team,
            pair.channel.replace(':', "%3A").replace('@', "%40")
        ),
        Value::Null,
    )
    .await;
    w.wait("the Teams delete in Slack", || async {
        w.slack_messages(&pair.slack)
            .await
            .iter()
            .all(|m| m["ts"].as_str() != Some(s_copy_ts.as_str()) || m["deleted"] == true)
    })
    .await;
    w.ctl(
        "DELETE",
        &format!("/_sandbox/slack/messages/{}/{s_ts}", pair.slack),
        Value::Null,
    )
    .await;
    teams_find(&w, &pair, "the Slack delete in Teams", |m| {
        m["id"].as_str() == Some(t_copy_id.as_str()) && is_deleted_teams(m)
    })
    .await;

    // ---- nothing echoed: each message exists once per platform
    let slack = w.slack_messages(&pair.slack).await;
    let teams = w.teams_messages(&pair).await;
    for (needle, n) in [
        ("from Teams", 1),
        ("a Teams reply", 1),
        ("a Slack reply", 1),
    ] {
        let on_slack = slack
            .iter()
            .filter(|m| m["deleted"] != true && slack_text(m).contains(needle))
            .count();
        let on_teams = teams
            .iter()
            .filter(|m| !is_deleted_teams(m) && text_of_teams(m).contains(needle))
            .count();
        assert!(
            on_slack <= n && on_teams <= n,
            "{needle:?} echoed: {on_slack} on Slack, {on_teams} on Teams"
        );
    }
    assert_eq!(
        slack
            .iter()
            .filter(|m| slack_text(m).contains("a Slack reply"))
            .count(),
        1
    );
    assert_eq!(
        teams
            .iter()
            .filter(|m| text_of_teams(m).contains("a Teams reply"))
            .count(),
        1
    );
}

/// A Slack user and the Teams user with the same email (the identity map matches them):
/// `(slack id, teams id, teams display name)`.
fn matched_pair(w: &World) -> (String, String, String) {
    let teams = w.seed["msteams"]["users"].as_array().unwrap();
    for u in w.seed["slack"]["users"].as_array().unwrap() {
        let Some(email) = u["email"].as_str().filter(|e| !e.is_empty()) else {
            continue;
        };
        if u["is_bot"] == true || u["deleted"] == true {
            continue;
        }
        if let Some(t) = teams.iter().find(|t| {
            t["mail"]
                .as_str()
                .is_some_and(|m| m.eq_ignore_ascii_case(email))
        }) {
            return (
                u["id"].as_str().unwrap().to_owned(),
                t["id"].as_str().unwrap().to_owned(),
                t["displayName"].as_str().unwrap().to_owned(),
            );
        }
    }
    panic!("the seed has no user on both platforms with one email");
}

#[tokio::test]
async fn mentions_of_matched_users_and_files_cross_over() {
    let w = World::start("0").await;
    let pair = w.link_pair(0).await;
    let (slack_author, _, _) = w.slack_user(0);
    let (teams_author, _, _) = w.teams_author(&pair, 0).await;
    let (slack_bob, teams_bob, teams_bob_name) = matched_pair(&w);

    // Slack → Teams: a mention of a matched user becomes a Teams mention of the counterpart
    w.slack_post(
        &slack_author,
        &pair.slack,
        &format!("ping <@{slack_bob}> about the plan"),
        None,
    )
    .await;
    let copy = teams_find(&w, &pair, "the mention in Teams", |m| {
        text_of_teams(m).contains("about the plan")
    })
    .await;
    let mentions = copy["mentions"].as_array().cloned().unwrap_or_default();
    assert!(
        mentions
            .iter()
            .any(|m| m["mentioned"]["user"]["id"].as_str() == Some(teams_bob.as_str())),
        "a real Teams mention of the counterpart: {copy}"
    );
    assert!(
        text_of_teams(&copy).contains("<at"),
        "an <at> element: {}",
        text_of_teams(&copy)
    );
    assert!(
        !text_of_teams(&copy).contains(&slack_bob),
        "no raw Slack id"
    );

    // Teams → Slack: a mention of the same person becomes a Slack mention
    w.ctl(
        "POST",
        "/_sandbox/msteams/messages",
        json!({ "user": teams_author, "team": pair.team, "channel": pair.channel,
                "html": format!("<p>thanks <at id=\"0\">{teams_bob_name}</at> for the notes</p>"),
                "mentions": [{ "id": 0, "user": teams_bob, "mentionText": teams_bob_name }] }),
    )
    .await;
    let s_copy = slack_find(&w, &pair.slack, "the mention in Slack", |m| {
        slack_text(m).contains("for the notes")
    })
    .await;
    assert!(
        slack_text(&s_copy).contains(&format!("<@{slack_bob}>")),
        "a real Slack mention: {s_copy}"
    );

    // a file shared on Slack is uploaded (or linked) into Teams, never dropped
    w.ctl(
        "POST",
        "/_sandbox/slack/files",
        json!({ "user": slack_author, "channel": pair.slack, "filename": "plan.txt",
                "content": "step one, step two", "initial_comment": "the plan file" }),
    )
    .await;
    let with_file = teams_find(&w, &pair, "the file in Teams", |m| {
        text_of_teams(m).contains("plan.txt")
            || m["attachments"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x["name"] == "plan.txt"))
    })
    .await;
    assert!(
        with_file["attachments"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["name"] == "plan.txt")),
        "the file is attached to the Teams copy: {with_file}"
    );
}

async fn subscription_of(w: &World, pair: &Pair) -> Option<String> {
    let subs: Value = w
        .http
        .get(format!("{}/_sandbox/msteams/subscriptions", w.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let list = subs["value"].as_array().or(subs.as_array()).cloned();
    list.unwrap_or_default()
        .iter()
        .find(|s| {
            s["resource"]
                .as_str()
                .is_some_and(|r| r.contains(&pair.channel))
        })
        .and_then(|s| s["id"].as_str().map(str::to_owned))
}

#[tokio::test]
async fn the_teams_feed_survives_reauthorization_and_removal() {
    let w = World::start("0").await;
    let pair = w.link_pair(0).await;
    let (teams_user, _, _) = w.teams_author(&pair, 0).await;
    let first = subscription_of(&w, &pair).await.unwrap();

    // reauthorizationRequired: Graph holds notifications until the subscription is
    // reauthorized; the server does so and the message still arrives
    w.ctl(
        "POST",
        &format!("/_sandbox/msteams/subscriptions/{first}/lifecycle"),
        json!({ "event": "reauthorizationRequired" }),
    )
    .await;
    w.teams_post(&teams_user, &pair, "<p>after reauthorization</p>", None)
        .await;
    slack_find(&w, &pair.slack, "the post after reauthorization", |m| {
        slack_text(m).contains("after reauthorization")
    })
    .await;

    // subscriptionRemoved: Graph dropped it; what is posted meanwhile is caught up once
    // the server has subscribed again
    w.ctl(
        "POST",
        &format!("/_sandbox/msteams/subscriptions/{first}/lifecycle"),
        json!({ "event": "subscriptionRemoved" }),
    )
    .await;
    w.teams_post(&teams_user, &pair, "<p>while unsubscribed</p>", None)
        .await;
    w.wait("a new subscription", || async {
        subscription_of(&w, &pair)
            .await
            .is_some_and(|id| id != first)
    })
    .await;
    slack_find(&w, &pair.slack, "the post made while unsubscribed", |m| {
        slack_text(m).contains("while unsubscribed")
    })
    .await;
    w.teams_post(&teams_user, &pair, "<p>live again</p>", None)
        .await;
    slack_find(
        &w,
        &pair.slack,
        "a live post on the new subscription",
        |m| slack_text(m).contains("live again"),
    )
    .await;
    let on_slack = w.slack_messages(&pair.slack).await;
    assert_eq!(
        on_slack
            .iter()
            .filter(|m| slack_text(m).contains("while unsubscribed"))
            .count(),
        1,
        "caught up once"
    );
}

#[tokio::test]
async fn a_file_shared_on_teams_reaches_slack() {
    let w = World::start("0").await;
    let pair = w.link_pair(0).await;
    let (teams_user, _, _) = w.teams_author(&pair, 0).await;
    // What a Teams client does: upload into the channel's SharePoint folder, then post a
    // message with a reference attachment (as the user, with their delegated token).
    let token: Value = w
        .ctl(
            "POST",
            "/_sandbox/msteams/tokens",
            json!({ "user": teams_user }),
        )
        .await;
    let token = token["access_token"]
        .as_str()
        .or(token["token"].as_str())
        .unwrap()
        .to_owned();
    let graph = w.sandbox["graph_api_url"].as_str().unwrap().to_owned();
    let channel = pair.channel.replace(':', "%3A").replace('@', "%40");
    let folder: Value = w
        .http
        .get(format!(
            "{graph}/teams/{}/channels/{channel}/filesFolder",
            pair.team
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let drive = folder["parentReference"]["driveId"].as_str().unwrap();
    let item: Value = w
        .http
        .put(format!(
            "{graph}/drives/{drive}/items/{}:/budget.csv:/content",
            folder["id"].as_str().unwrap()
        ))
        .bearer_auth(&token)
        .body("quarter,amount\nQ1,100\n")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let guid = item["eTag"]
        .as_str()
        .unwrap()
        .trim_matches('"')
        .split(',')
        .next()
        .unwrap()
        .trim_matches(|c| c == '{' || c == '}')
        .to_owned();
    let r = w
        .http
        .post(format!("{graph}/teams/{}/channels/{channel}/messages", pair.team))
        .bearer_auth(&token)
        .json(&json!({
            "body": { "contentType": "html",
                      "content": format!("<p>the budget</p><attachment id=\"{guid}\"></attachment>") },
            "attachments": [{ "id": guid, "contentType": "reference",
                              "contentUrl": item["webUrl"], "name": "budget.csv" }],
        }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());

    let copy = slack_find(&w, &pair.slack, "the Teams file in Slack", |m| {
        m["files"].as_array().is_some_and(|f| !f.is_empty()) || slack_text(m).contains("budget.csv")
    })
    .await;
    assert!(
        copy["files"].as_array().is_some_and(|f| f
            .iter()
            .any(|x| x["name"] == "budget.csv" && x["size"] == 22)),
        "the file's bytes were fetched from SharePoint and uploaded to Slack: {copy}"
    );
    slack_find(&w, &pair.slack, "the message's text in Slack", |m| {
        slack_text(m).contains("the budget")
    })
    .await;
}

/// The numbers of the `w…` words in `text`, in order.
fn words(text: &str) -> Vec<u32> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter_map(|t| t.strip_prefix('w').and_then(|n| n.parse().ok()))
        .collect()
}

#[tokio::test]
async fn long_messages_arrive_whole_each_way() {
    let w = World::start("0").await;
    let pair = w.link_pair(0).await;
    let (slack_user, _, _) = w.slack_user(0);
    let (teams_user, _, _) = w.teams_author(&pair, 0).await;

    // Slack → Teams: 35,000 characters, more than a Teams message holds: split into parts,
    // every word there once, in order
    let long: String = (0..5000u32).map(|n| format!("w{n:05} ")).collect();
    w.slack_post(&slack_user, &pair.slack, long.trim_end(), None)
        .await;
    let mut parts = Vec::new();
    for _ in 0..600 {
        parts = w
            .teams_messages(&pair)
            .await
            .into_iter()
            .filter(|m| text_of_teams(m).contains("w0"))
            .collect();
        let got: usize = parts.iter().map(|m| words(&text_of_teams(m)).len()).sum();
        if got >= 5000 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        parts.len() >= 2,
        "split into parts: {} message(s)",
        parts.len()
    );
    for p in &parts {
        assert!(
            text_of_teams(p).len() <= 28 * 1024,
            "each part fits in a Teams message"
        );
    }
    parts.sort_by_key(|m| {
        m["id"]
            .as_str()
            .unwrap_or_default()
            .parse::<u64>()
            .unwrap_or(0)
    });
    let all: Vec<u32> = parts
        .iter()
        .flat_map(|m| words(&text_of_teams(m)))
        .collect();
    assert_eq!(
        all,
        (0..5000).collect::<Vec<_>>(),
        "every word once, in order"
    );

    // Teams → Slack: a long Teams message arrives whole
    let html: String = format!(
        "<p>{}</p>",
        (10_000..13_000u32)
            .map(|n| format!("w{n:05} "))
            .collect::<String>()
    );
    w.teams_post(&teams_user, &pair, &html, None).await;
    let copy = slack_find(&w, &pair.slack, "the long Teams message in Slack", |m| {
        slack_text(m).contains("w12999")
    })
    .await;
    let got = words(slack_text(&copy));
    assert_eq!(
        got,
        (10_000..13_000).collect::<Vec<_>>(),
        "whole and in order"
    );
}

#[tokio::test]
async fn a_removed_service_account_is_added_back_and_the_message_delivered() {
    let w = World::start("0").await;
    let pair = w.link_pair(0).await;
    let (slack_user, _, _) = w.slack_user(0);
    let svc = w.sandbox["msteams"]["service_account_upn"]
        .as_str()
        .unwrap()
        .to_owned();
    w.ctl(
        "POST",
        &format!("/_sandbox/msteams/teams/{}/members/remove", pair.team),
        json!({ "user": svc }),
    )
    .await;
    w.slack_post(&slack_user, &pair.slack, "after the removal", None)
        .await;
    teams_find(&w, &pair, "the post after the removal", |m| {
        text_of_teams(m).contains("after the removal")
    })
    .await;
    let audit: Value = w
        .http
        .get(format!("{}/api/v1/audit", w.url))
        .bearer_auth(&w.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "service_account.readded"),
        "audited: {audit}"
    );
}

/// The `name=value` of the cookie `name` a response sets.
fn set_cookie(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie: {:?}", r.headers()))
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

fn location(r: &reqwest::Response) -> String {
    r.headers()[reqwest::header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_linked_users_message_appears_in_teams_as_them_and_nothing_echoes() {
    let w = World::start("0").await;
    let pair = w.link_pair(0).await;
    let (slack_user, slack_name, _) = w.slack_user(0);
    // The Teams user who links: one who can sign in at the sandbox's consent page.
    let upn = w.sandbox["msteams"]["underprivileged_upn"]
        .as_str()
        .unwrap()
        .to_owned();
    let password = w.sandbox["msteams"]["underprivileged_password"]
        .as_str()
        .unwrap()
        .to_owned();
    let teams_user = w.seed["msteams"]["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["userPrincipalName"].as_str() == Some(upn.as_str()))
        .unwrap_or_else(|| panic!("{upn} in the seed"))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    w.ctl(
        "POST",
        &format!("/_sandbox/msteams/teams/{}/members/add", pair.team),
        json!({ "user": upn }),
    )
    .await;
    // The admin says the Slack user and this Teams user are one person.
    let r = w
        .http
        .post(format!("{}/api/v1/identities", w.url))
        .bearer_auth(&w.token)
        .json(&json!({
            "a": {"platform": "slack", "user": slack_user},
            "b": {"platform": "msteams", "user": teams_user},
            "relation": "same",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());

    // The user links their Teams account from the end-user page, through the sandbox's real
    // sign-in and consent.
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = browser
        .get(format!("{}/link-account", w.url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("Link my Microsoft Teams account")
    );
    let start = browser
        .get(format!("{}/link-account/msteams/start", w.url))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 302);
    let pre = set_cookie(&start, "sb_link");
    let authorize = location(&start);
    assert!(
        authorize.contains("ChannelMessage.Send") && !authorize.contains("User.Read.All"),
        "only the end-user scopes are asked: {authorize}"
    );
    let consent = browser
        .post(&authorize)
        .form(&[
            ("username", upn.as_str()),
            ("password", password.as_str()),
            ("decision", "accept"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        consent.status(),
        302,
        "{}",
        consent.text().await.unwrap_or_default()
    );
    let callback = location(&consent);
    let done = browser
        .get(&callback)
        .header(reqwest::header::COOKIE, &pre)
        .send()
        .await
        .unwrap();
    assert_eq!(
        done.status(),
        303,
        "{}",
        done.text().await.unwrap_or_default()
    );
    let linked = set_cookie(&done, "sb_linked");
    let page = browser
        .get(format!("{}{}", w.url, location(&done)))
        .header(reqwest::header::COOKIE, &linked)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Linked as"), "{page}");

    // Their Slack message appears in Teams as them, without the attribution line.
    let s_ts = w
        .slack_post(
            &slack_user,
            &pair.slack,
            "posted as myself from Slack",
            None,
        )
        .await;
    let copy = teams_find(&w, &pair, "the linked user's message in Teams", |m| {
        text_of_teams(m).contains("posted as myself")
    })
    .await;
    assert_eq!(
        copy["from"]["user"]["id"].as_str(),
        Some(teams_user.as_str()),
        "posted with the user's own token: {copy}"
    );
    let html = text_of_teams(&copy);
    let first = slack_name.split(' ').next().unwrap();
    assert!(
        !html.contains(first),
        "no attribution line naming the sender: {html}"
    );
    // Nothing echoes: the copy does not come back to Slack.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let in_slack = w
        .slack_messages(&pair.slack)
        .await
        .into_iter()
        .filter(|m| slack_text(m).contains("posted as myself"))
        .count();
    assert_eq!(in_slack, 1, "only the original in Slack");
    let in_teams = w
        .teams_messages(&pair)
        .await
        .into_iter()
        .filter(|m| text_of_teams(m).contains("posted as myself"))
        .count();
    assert_eq!(in_teams, 1, "one copy in Teams");

    // They edit that copy in Teams themselves: Slack does not let the bot edit their own
    // Slack message, so the edit shows as a reply under it; the original keeps its text.
    let copy_id = copy["id"].as_str().unwrap().to_owned();
    w.ctl(
        "PATCH",
        &format!(
            "/_sandbox/msteams/messages/{}/{}/{copy_id}",
            pair.team,
            pair.channel.replace(':', "%3A").replace('@', "%40")
        ),
        json!({ "html": "<p>posted as myself, fixed in Teams</p>" }),
    )
    .await;
    let note = slack_find(&w, &pair.slack, "the Teams edit under the origin", |m| {
        slack_text(m).contains("fixed in Teams")
    })
    .await;
    assert_eq!(note["thread_ts"].as_str(), Some(s_ts.as_str()), "{note}");
    assert!(
        slack_text(&note).contains("Edited in Microsoft Teams"),
        "{note}"
    );
    let origin = w
        .slack_messages(&pair.slack)
        .await
        .into_iter()
        .find(|m| m["ts"].as_str() == Some(s_ts.as_str()))
        .unwrap();
    assert_eq!(slack_text(&origin), "posted as myself from Slack");
    // Our own note does not come back to Teams.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert!(
        w.teams_messages(&pair)
            .await
            .iter()
            .all(|m| !text_of_teams(m).contains("Edited in")),
        "nothing echoes"
    );
}
