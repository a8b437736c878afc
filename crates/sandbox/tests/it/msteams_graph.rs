//! Graph v1.0 emulation: directory roles, teams and memberships, channel messages, throttling.

#[allow(unused_imports)]
use crate::msteams_support;

use std::time::Duration;

use msteams_support::*;
use reqwest::Method;
use serde_json::{Value, json};
use switchboard_sandbox::Seed;

const TEAMS_ADMIN: &str = "69091246-20e8-4a56-aa4d-066075b2a7a8";
const APP_ADMIN: &str = "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3";
const USER_ADMIN: &str = "fe930be7-5e62-47db-91af-98c3a49a38b1";

fn role_templates(v: &Value) -> Vec<Option<String>> {
    v["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["@odata.type"] == "#microsoft.graph.directoryRole")
        .map(|o| o["roleTemplateId"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn role_listing_for_good_and_underprivileged_accounts() {
    let env = start(Seed::Small, 0.0).await;
    // service account (ready token carries RoleManagement.Read.Directory)
    let r = env.get(&env.svc_token, "/me/transitiveMemberOf").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let items = r.body["value"].as_array().unwrap();
    assert!(
        items
            .iter()
            .any(|o| o["@odata.type"] == "#microsoft.graph.group"),
        "groups are mixed in"
    );
    let roles = role_templates(&r.body);
    for t in [TEAMS_ADMIN, APP_ADMIN, USER_ADMIN] {
        assert!(roles.contains(&Some(t.to_owned())), "{t} in {roles:?}");
    }
    // underprivileged account: Application Administrator only
    let jr = env
        .mint(
            &env.jr_upn,
            Some("User.Read.All RoleManagement.Read.Directory Team.ReadBasic.All"),
        )
        .await;
    let r = env.get(&jr, "/me/memberOf").await;
    assert_eq!(r.status, 200);
    assert_eq!(role_templates(&r.body), vec![Some(APP_ADMIN.to_owned())]);
    // without RoleManagement.Read.Directory (or Directory.Read.All) roleTemplateId is null
    let weak = env.mint(&env.svc_upn, Some("User.Read.All")).await;
    let r = env.get(&weak, "/me/memberOf").await;
    assert_eq!(r.status, 200);
    let roles = role_templates(&r.body);
    assert_eq!(roles.len(), 3);
    assert!(roles.iter().all(Option::is_none));
    // the cast segment returns roles only
    let r = env
        .get(&env.svc_token, "/me/memberOf/microsoft.graph.directoryRole")
        .await;
    assert_eq!(r.body["value"].as_array().unwrap().len(), 3);
    // any user with Team.ReadBasic.All lists every team (as Graph does), private teams
    // included; a team jr is not a member of refuses its channels and members with 403
    let r = env.get(&jr, "/teams").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["value"].as_array().unwrap().len(), 3);
    let (marketing, _) = env.team("Marketing").await;
    let r = env.get(&jr, &format!("/teams/{marketing}/channels")).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.error_code(), "Forbidden");
    let r = env.get(&jr, &format!("/teams/{marketing}/members")).await;
    assert_eq!(r.status, 403);
    let r = env.get(&jr, "/me/joinedTeams").await;
    assert_eq!(r.status, 200);
    let names: Vec<&str> = r.body["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["displayName"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["Engineering"]);
    let r = env.get(&env.svc_token, "/teams").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["value"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn users_have_types_and_select() {
    let env = start(Seed::Small, 0.0).await;
    let r = env
        .get(
            &env.svc_token,
            "/users?$select=id,displayName,mail,userPrincipalName,userType,accountEnabled&$top=999",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let users = r.body["value"].as_array().unwrap();
    let alice = users
        .iter()
        .find(|u| u["mail"] == "alice@contoso.com")
        .unwrap();
    assert_eq!(alice["userPrincipalName"], "alice@contoso.onmicrosoft.com");
    assert_eq!(alice["userType"], "Member");
    let guest = users
        .iter()
        .find(|u| u["mail"] == "guest@fabrikam.com")
        .unwrap();
    assert_eq!(guest["userType"], "Guest");
    assert!(users.iter().any(|u| u["accountEnabled"] == false));
    assert!(alice.get("jobTitle").is_none(), "only selected properties");
    // default property set has no userType
    let r = env
        .get(&env.svc_token, "/users/alice@contoso.onmicrosoft.com")
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body.get("userType").is_none());
    assert_eq!(r.body["displayName"], "Alice Johnson");
    // $filter
    let r = env
        .get(
            &env.svc_token,
            "/users?$filter=userType eq 'Guest'&$select=id,userType",
        )
        .await;
    assert_eq!(r.body["value"].as_array().unwrap().len(), 1);
    // bad $select and unknown user
    assert_eq!(
        env.get(&env.svc_token, "/users?$select=nope").await.status,
        400
    );
    let r = env.get(&env.svc_token, "/users/nobody@contoso.com").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "Request_ResourceNotFound");
    // invitations create guests
    let r = env
        .post(
            &env.svc_token,
            "/invitations",
            json!({
                "invitedUserEmailAddress": "erin@northwind.example",
                "inviteRedirectUrl": "https://teams.microsoft.com",
                "invitedUserDisplayName": "Erin N",
                "sendInvitationMessage": false
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["status"], "PendingAcceptance");
    let id = r.body["invitedUser"]["id"].as_str().unwrap().to_owned();
    let u = env
        .get(
            &env.svc_token,
            &format!("/users/{id}?$select=userType,mail"),
        )
        .await;
    assert_eq!(u.body["userType"], "Guest");
    // jr lacks User Administrator
    let jr = env.mint(&env.jr_upn, Some("User.Invite.All")).await;
    let r = env
        .post(&jr, "/invitations", json!({"invitedUserEmailAddress": "x@y.example", "inviteRedirectUrl": "https://a.example"}))
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.error_code(), "Authorization_RequestDenied");
}

#[tokio::test]
async fn membership_add_remove_and_403_after_removal() {
    let env = start(Seed::Small, 0.0).await;
    let svc = env.svc_token.clone();
    let me = env.get(&svc, "/me").await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Leadership: the service account is not a member
    let (lead, lead_chans) = env.team("Leadership").await;
    let lead_general = lead_chans[0].1.clone();
    let r = env
        .post(
            &svc,
            &format!("/teams/{lead}/channels/{lead_general}/messages"),
            json!({"body": {"content": "hi"}}),
        )
        .await;
    assert_eq!(r.status, 403);
    // a Teams admin can read the team and add itself
    assert_eq!(env.get(&svc, &format!("/teams/{lead}")).await.status, 200);
    let bind = json!({
        "@odata.type": "#microsoft.graph.aadUserConversationMember",
        "roles": [],
        "user@odata.bind": format!("https://graph.microsoft.com/v1.0/users('{me}')"),
    });
    let r = env
        .post(&svc, &format!("/teams/{lead}/members"), bind.clone())
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["userId"], me.as_str());
    let membership = r.body["id"].as_str().unwrap().to_owned();
    // adding again is idempotent
    let again = env
        .post(&svc, &format!("/teams/{lead}/members"), bind)
        .await;
    assert_eq!(again.status, 201);
    assert_eq!(again.body["id"], membership.as_str());
    let members = env.get(&svc, &format!("/teams/{lead}/members")).await;
    assert!(
        members.body["value"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["userId"] == me.as_str()
                && m["@odata.type"] == "#microsoft.graph.aadUserConversationMember")
    );
    let r = env
        .post(
            &svc,
            &format!("/teams/{lead}/channels/{lead_general}/messages"),
            json!({"body": {"content": "now I can"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    // removal through Graph
    let r = env
        .send(
            Method::DELETE,
            &svc,
            &format!("/teams/{lead}/members/{membership}"),
            None,
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = env
        .get(
            &svc,
            &format!("/teams/{lead}/channels/{lead_general}/messages"),
        )
        .await;
    assert_eq!(r.status, 403);

    // removal through the control API (someone removed the service account from Engineering)
    let (eng, general) = env.channel("Engineering", "General").await;
    let r = env
        .post(
            &svc,
            &format!("/teams/{eng}/channels/{general}/messages"),
            json!({"body": {"content": "before"}}),
        )
        .await;
    assert_eq!(r.status, 201);
    let r = env
        .control(
            Method::POST,
            &format!("/msteams/teams/{eng}/members/remove"),
            Some(json!({"user": env.svc_upn})),
        )
        .await;
    assert_eq!(r.body["removed"], true);
    let r = env
        .post(
            &svc,
            &format!("/teams/{eng}/channels/{general}/messages"),
            json!({"body": {"content": "after"}}),
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.error_code(), "Forbidden");
    assert_eq!(
        env.get(&svc, &format!("/teams/{eng}/channels/{general}/messages"))
            .await
            .status,
        403
    );
    let joined = env.get(&svc, "/me/joinedTeams").await;
    assert!(
        !joined.body["value"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == eng.as_str())
    );
    // bad input changes nothing
    let r = env
        .post(
            &svc,
            &format!("/teams/{eng}/members"),
            json!({"user@odata.bind": "nonsense"}),
        )
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn post_reply_edit_soft_delete_round_trip_via_control() {
    let env = start(Seed::Small, 0.0).await;
    let svc = env.svc_token.clone();
    let (team, chan) = env.channel("Engineering", "Backend").await;
    let base = format!("/teams/{team}/channels/{chan}/messages");
    // a seeded user posts through the control API
    let r = env
        .control(Method::POST, "/msteams/messages", Some(json!({"user": "alice@contoso.com", "team": "Engineering", "channel": "Backend", "html": "<p>Hello from Alice</p>"})))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let root = r.body["id"].as_str().unwrap().to_owned();
    // the service account replies with a mention
    let alice_id = env
        .get(&svc, "/users/alice@contoso.onmicrosoft.com")
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let reply = env
        .post(&svc, &format!("{base}/{root}/replies"), json!({
            "body": {"contentType": "html", "content": "Hi <at id=\"0\">Alice Johnson</at>"},
            "mentions": [{"id": 0, "mentionText": "Alice Johnson", "mentioned": {"user": {"id": alice_id, "displayName": "Alice Johnson", "userIdentityType": "aadUser"}}}]
        }))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let m = &reply.body;
    assert_eq!(m["replyToId"], root.as_str());
    assert_eq!(m["chatId"], Value::Null);
    assert_eq!(m["messageType"], "message");
    assert_eq!(m["channelIdentity"]["channelId"], chan.as_str());
    assert_eq!(m["from"]["user"]["displayName"], "Switchboard Service");
    assert!(
        m["id"].as_str().unwrap().parse::<u64>().is_ok(),
        "id is an ms timestamp"
    );
    assert_eq!(m["etag"], m["id"]);
    for k in ["createdDateTime", "lastModifiedDateTime", "webUrl"] {
        assert!(m[k].is_string(), "{k}");
    }
    for k in [
        "lastEditedDateTime",
        "deletedDateTime",
        "subject",
        "summary",
    ] {
        assert!(m[k].is_null(), "{k}");
    }
    assert_eq!(
        m["mentions"][0]["mentioned"]["user"]["id"],
        alice_id.as_str()
    );
    let reply_id = m["id"].as_str().unwrap().to_owned();
    // edit the reply (sender only) and soft-delete it
    let r = env
        .send(
            Method::PATCH,
            &svc,
            &format!("{base}/{root}/replies/{reply_id}"),
            Some(json!({"body": {"contentType": "html", "content": "edited"}})),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = env
        .post(
            &svc,
            &format!("{base}/{root}/replies/{reply_id}/setReaction"),
            json!({"reactionType": "👍"}),
        )
        .await;
    assert_eq!(r.status, 204);
    // the service account may not edit Alice's message
    let r = env
        .send(
            Method::PATCH,
            &svc,
            &format!("{base}/{root}"),
            Some(json!({"body": {"content": "mine now"}})),
        )
        .await;
    assert_eq!(r.status, 403);
    let got = env
        .get(&svc, &format!("{base}/{root}/replies/{reply_id}"))
        .await;
    assert_eq!(got.body["body"]["content"], "edited");
    assert!(got.body["lastEditedDateTime"].is_string());
    assert_eq!(got.body["reactions"][0]["reactionType"], "👍");
    let r = env
        .post(
            &svc,
            &format!("{base}/{root}/replies/{reply_id}/softDelete"),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 204);
    // Alice edits her root through the control API
    let r = env
        .control(
            Method::PATCH,
            &format!("/msteams/messages/{team}/{chan}/{root}"),
            Some(json!({"html": "<p>Hello (edited)</p>"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // everything is visible through the control API
    let r = env
        .control(
            Method::GET,
            &format!("/msteams/teams/{team}/channels/{chan}/messages"),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    let all = r.body["value"].as_array().unwrap();
    assert_eq!(all.len(), 2);
    let root_msg = all.iter().find(|m| m["id"] == root.as_str()).unwrap();
    assert_eq!(root_msg["body"]["content"], "<p>Hello (edited)</p>");
    assert!(root_msg["lastEditedDateTime"].is_string());
    assert_eq!(root_msg["deleted"], false);
    let reply_msg = all.iter().find(|m| m["id"] == reply_id.as_str()).unwrap();
    assert_eq!(reply_msg["deleted"], true);
    assert!(reply_msg["deletedDateTime"].is_string());
    assert_eq!(reply_msg["replyToId"], root.as_str());
    // Graph hides deleted content
    let got = env
        .get(&svc, &format!("{base}/{root}/replies/{reply_id}"))
        .await;
    assert_eq!(got.body["body"]["content"], "");
    // list with $expand=replies
    let list = env.get(&svc, &format!("{base}?$expand=replies")).await;
    assert_eq!(list.status, 200);
    assert_eq!(
        list.body["value"][0]["replies"].as_array().unwrap().len(),
        1
    );
    // undoSoftDelete restores
    let r = env
        .post(
            &svc,
            &format!("{base}/{root}/replies/{reply_id}/undoSoftDelete"),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        env.get(&svc, &format!("{base}/{root}/replies/{reply_id}"))
            .await
            .body["body"]["content"],
        "edited"
    );
}

#[tokio::test]
async fn bad_messages_are_rejected_and_change_nothing() {
    let env = start(Seed::Small, 0.0).await;
    let svc = env.svc_token.clone();
    let (team, chan) = env.channel("Marketing", "Campaigns").await;
    let url = format!("/teams/{team}/channels/{chan}/messages");
    // <at> without a mentions entry
    let r = env
        .post(
            &svc,
            &url,
            json!({"body": {"contentType": "html", "content": "<at id=\"0\">Bob</at>"}}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    // mentions entry not referenced
    let r = env
        .post(&svc, &url, json!({"body": {"contentType": "html", "content": "hi"}, "mentions": [{"id": 0, "mentionText": "x", "mentioned": {"user": {"id": "nope"}}}]}))
        .await;
    assert_eq!(r.status, 400);
    // too big
    let big = "x".repeat(29 * 1024);
    let r = env
        .post(&svc, &url, json!({"body": {"content": big}}))
        .await;
    assert_eq!(r.status, 413);
    // not JSON
    let r = env
        .http
        .post(format!("{}{url}", env.graph))
        .bearer_auth(&svc)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // a token without ChannelMessage.Send
    let ro = env
        .mint(&env.svc_upn, Some("ChannelMessage.Read.All"))
        .await;
    let r = env
        .post(&ro, &url, json!({"body": {"content": "hi"}}))
        .await;
    assert_eq!(r.status, 403);
    // control API: bad input is a 400 JSON error
    let r = env
        .control(
            Method::POST,
            "/msteams/messages",
            Some(
                json!({"user": "nobody", "team": "Marketing", "channel": "Campaigns", "html": "x"}),
            ),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.body["error"].is_string());
    let r = env
        .control(Method::POST, "/msteams/messages", Some(json!({"user": "frank@contoso.com", "team": "Leadership", "channel": "General", "html": "x"})))
        .await;
    assert_eq!(r.status, 400, "frank is not in Leadership");
    let r = env
        .control(
            Method::GET,
            &format!("/msteams/teams/{team}/channels/{chan}/messages"),
            None,
        )
        .await;
    assert_eq!(r.body["value"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn throttling_429_over_the_limit_and_none_under_it() {
    let env = start(Seed::Small, 1.0).await;
    let svc = env.svc_token.clone();
    let (team, chan) = env.channel("Engineering", "General").await;
    let url = format!("/teams/{team}/channels/{chan}/messages");
    // POST channel message: 2 per second per app per tenant. A quick burst of 6 gets the
    // first 2 through and 429s for (at least) most of the rest.
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for i in 0..6 {
        let r = env
            .post(
                &svc,
                &url,
                json!({"body": {"content": format!("burst {i}")}}),
            )
            .await;
        statuses.push(r.status);
        if r.status == 429 {
            assert_eq!(r.error_code(), "TooManyRequests");
            retry_after = Some(r.header("retry-after").expect("Retry-After on every 429"));
        } else {
            assert_eq!(r.status, 201, "{}", r.body);
        }
    }
    assert_eq!(&statuses[..2], &[201, 201]);
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    assert!(throttled >= 1, "{statuses:?}");
    let secs: u64 = retry_after
        .expect("Retry-After")
        .parse()
        .expect("whole seconds");
    assert!(secs >= 1);
    tokio::time::sleep(Duration::from_secs(secs)).await;
    // a client pacing itself under the limit is never throttled
    for i in 0..4 {
        let r = env
            .post(
                &svc,
                &url,
                json!({"body": {"content": format!("paced {i}")}}),
            )
            .await;
        assert_eq!(r.status, 201, "paced post {i}: {}", r.body);
        tokio::time::sleep(Duration::from_millis(550)).await;
    }
    let stats = env.control(Method::GET, "/stats", None).await;
    assert_eq!(stats.body["throttled_429"], throttled as u64);
}

#[tokio::test]
async fn the_3001st_message_of_a_day_into_a_channel_is_refused() {
    let env = start(Seed::Small, 0.0).await;
    let (team, chan) = env.channel("Engineering", "General").await;
    let url = format!("/teams/{team}/channels/{chan}/messages");
    let body = json!({"body": {"contentType": "html", "content": "<p>hi</p>"}});
    // 2,998 messages were posted today already (counted even with rate limits off)
    let r = env
        .control(
            Method::POST,
            "/msteams/daily-messages",
            Some(json!({"channel": chan, "used": 2_998})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        env.post(&env.svc_token, &url, body.clone()).await.status,
        201
    );
    assert_eq!(
        env.post(&env.svc_token, &url, body.clone()).await.status,
        201
    );
    let r = env.post(&env.svc_token, &url, body.clone()).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.error_code(), "TooManyRequests");
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(wait > 80_000, "{wait}");
    // another channel has its own budget; replies count against the channel too
    let (_, other) = env.channel("Engineering", "Backend").await;
    let r = env
        .post(
            &env.svc_token,
            &format!("/teams/{team}/channels/{other}/messages"),
            body,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
}

#[tokio::test]
async fn channel_members_are_listed_per_channel_kind() {
    let env = start(Seed::Small, 0.0).await;
    let seed = env.seed().await;
    // a private channel lists its own members; a standard one the team's
    let teams = seed["teams"].as_array().unwrap();
    let (team, private) = teams
        .iter()
        .find_map(|t| {
            t["channels"]
                .as_array()?
                .iter()
                .find(|c| c["membershipType"] == "private")
                .map(|c| {
                    (
                        t["id"].as_str().unwrap().to_owned(),
                        c["id"].as_str().unwrap().to_owned(),
                    )
                })
        })
        .expect("a seeded private channel");
    let r = env
        .get(
            &env.svc_token,
            &format!("/teams/{team}/channels/{private}/members?$top=999"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let private_members = r.body["value"].as_array().unwrap().len();
    let r = env
        .get(&env.svc_token, &format!("/teams/{team}/members?$top=999"))
        .await;
    let team_members = r.body["value"].as_array().unwrap().len();
    assert!(private_members >= 1 && private_members < team_members);
    let general = teams
        .iter()
        .find(|t| t["id"] == team.as_str())
        .and_then(|t| {
            t["channels"]
                .as_array()?
                .iter()
                .find(|c| c["membershipType"] == "standard")
                .map(|c| c["id"].as_str().unwrap().to_owned())
        })
        .unwrap();
    let r = env
        .get(
            &env.svc_token,
            &format!("/teams/{team}/channels/{general}/members?$top=999"),
        )
        .await;
    assert_eq!(r.body["value"].as_array().unwrap().len(), team_members);
    assert_eq!(
        env.get(
            &env.svc_token,
            &format!("/teams/{team}/channels/{general}/members?$top=1000")
        )
        .await
        .status,
        400
    );
}
