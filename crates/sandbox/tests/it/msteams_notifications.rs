//! Subscriptions: the validation handshake, change notifications with clientState, lifecycle
//! events, retries; and delta queries.

#[allow(unused_imports)]
use crate::msteams_support;

use msteams_support::*;
use reqwest::Method;
use serde_json::{Value, json};
use switchboard_sandbox::Seed;

fn in_minutes(m: i64) -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::minutes(m);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

async fn subscribe(
    env: &Env,
    rx: &Receiver,
    team: &str,
    chan: &str,
    lifecycle: bool,
    minutes: i64,
) -> Resp {
    let mut body = json!({
        "changeType": "created,updated,deleted",
        "notificationUrl": format!("{}/notify", rx.base),
        "resource": format!("/teams/{team}/channels/{chan}/messages"),
        "expirationDateTime": in_minutes(minutes),
        "clientState": "s3cret-state",
    });
    if lifecycle {
        body["lifecycleNotificationUrl"] = json!(format!("{}/lifecycle", rx.base));
    }
    env.post(&env.svc_token, "/subscriptions", body).await
}

#[tokio::test]
async fn subscription_handshake_and_notifications() {
    let env = start(Seed::Small, 0.0).await;
    let rx = Receiver::start(Mode::Good).await;
    let (team, chan) = env.channel("Engineering", "General").await;
    let r = subscribe(&env, &rx, &team, &chan, true, 120).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let sub_id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(r.body["clientState"], "s3cret-state");
    // both URLs were validated with a token that needed decoding
    let v = rx.validations();
    assert_eq!(v.len(), 2);
    assert!(v[0].starts_with("Validation: "), "{v:?}");

    // a seeded user posts (control) and the service account replies (Graph)
    let p = env
        .control(
            Method::POST,
            "/msteams/messages",
            Some(
                json!({"user": "bob@contoso.com", "team": team, "channel": chan, "html": "hello"}),
            ),
        )
        .await;
    let root = p.body["id"].as_str().unwrap().to_owned();
    let reply = env
        .post(
            &env.svc_token,
            &format!("/teams/{team}/channels/{chan}/messages/{root}/replies"),
            json!({"body": {"content": "hi bob"}}),
        )
        .await;
    assert_eq!(reply.status, 201);
    let reply_id = reply.body["id"].as_str().unwrap().to_owned();
    env.control(
        Method::PATCH,
        &format!("/msteams/messages/{team}/{chan}/{root}"),
        Some(json!({"html": "hello!"})),
    )
    .await;
    env.control(
        Method::DELETE,
        &format!("/msteams/messages/{team}/{chan}/{root}"),
        None,
    )
    .await;

    let items = wait_for(5.0, || {
        let items = rx.items("/notify");
        (items.len() >= 4).then_some(items)
    })
    .await
    .expect("4 notifications");
    let kinds: Vec<&str> = items
        .iter()
        .map(|i| i["changeType"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["created", "created", "updated", "deleted"]);
    for i in &items {
        assert_eq!(i["clientState"], "s3cret-state");
        assert_eq!(i["subscriptionId"], sub_id.as_str());
        assert_eq!(i["tenantId"], env.tenant.as_str());
        assert_eq!(
            i["resourceData"]["@odata.type"],
            "#Microsoft.Graph.chatMessage"
        );
        assert!(i["subscriptionExpirationDateTime"].is_string());
    }
    assert_eq!(items[0]["resourceData"]["id"], root.as_str());
    assert_eq!(
        items[0]["resource"],
        format!("teams('{team}')/channels('{chan}')/messages('{root}')").as_str()
    );
    assert_eq!(
        items[1]["resource"],
        format!("teams('{team}')/channels('{chan}')/messages('{root}')/replies('{reply_id}')")
            .as_str()
    );

    // lifecycle events on demand
    let r = env
        .control(
            Method::POST,
            &format!("/msteams/subscriptions/{sub_id}/lifecycle"),
            Some(json!({"event": "reauthorizationRequired"})),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let life = wait_for(5.0, || {
        let l = rx.items("/lifecycle");
        (!l.is_empty()).then_some(l)
    })
    .await
    .expect("lifecycle notification");
    assert_eq!(life[0]["lifecycleEvent"], "reauthorizationRequired");
    assert_eq!(life[0]["clientState"], "s3cret-state");

    // renew, list, delete
    let r = env
        .send(
            Method::PATCH,
            &env.svc_token,
            &format!("/subscriptions/{sub_id}"),
            Some(json!({"expirationDateTime": in_minutes(200)})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let listed = env.get(&env.svc_token, "/subscriptions").await;
    assert_eq!(listed.body["value"].as_array().unwrap().len(), 1);
    let log = env
        .control(
            Method::GET,
            &format!("/msteams/notifications?subscription={sub_id}"),
            None,
        )
        .await;
    assert!(
        log.body["value"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["status"] == "delivered")
    );
    let r = env
        .send(
            Method::DELETE,
            &env.svc_token,
            &format!("/subscriptions/{sub_id}"),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    env.control(
        Method::POST,
        "/msteams/messages",
        Some(json!({"user": "bob@contoso.com", "team": team, "channel": chan, "html": "unheard"})),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(rx.items("/notify").len(), 4, "nothing after delete");
}

#[tokio::test]
async fn subscription_fails_without_echo_and_limits_apply() {
    let env = start(Seed::Small, 0.0).await;
    let (team, chan) = env.channel("Engineering", "Backend").await;
    let bad = Receiver::start(Mode::WrongEcho).await;
    let r = subscribe(&env, &bad, &team, &chan, false, 30).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "ValidationError");
    assert_eq!(bad.validations().len(), 1);
    // unreachable endpoint
    let r = env
        .post(
            &env.svc_token,
            "/subscriptions",
            json!({
            "changeType": "created", "notificationUrl": "http://127.0.0.1:9/none",
            "resource": format!("/teams/{team}/channels/{chan}/messages"),
            "expirationDateTime": in_minutes(30), "clientState": "x"}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "ValidationError");
    // more than an hour needs a lifecycle URL; more than 3 days never
    let good = Receiver::start(Mode::Good).await;
    let r = subscribe(&env, &good, &team, &chan, false, 90).await;
    assert_eq!(r.status, 400);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("lifecycleNotificationUrl")
    );
    let r = subscribe(&env, &good, &team, &chan, true, 5 * 1440).await;
    assert_eq!(r.status, 400);
    assert!(
        good.validations().is_empty(),
        "limits are checked before the handshake"
    );
    // clientState too long
    let r = env
        .post(
            &env.svc_token,
            "/subscriptions",
            json!({
            "changeType": "created", "notificationUrl": format!("{}/notify", good.base),
            "resource": format!("/teams/{team}/channels/{chan}/messages"),
            "expirationDateTime": in_minutes(30), "clientState": "x".repeat(129)}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(
        env.get(&env.svc_token, "/subscriptions").await.body["value"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn failed_deliveries_are_retried() {
    // a large time scale shortens the retry backoff
    let env = start(Seed::Small, 100.0).await;
    let rx = Receiver::start(Mode::FailFirst(2)).await;
    let (team, chan) = env.channel("Marketing", "General").await;
    let r = subscribe(&env, &rx, &team, &chan, false, 30).await;
    assert_eq!(r.status, 201, "{}", r.body);
    env.control(Method::POST, "/msteams/messages", Some(json!({"user": "carol@contoso.com", "team": "Marketing", "channel": "General", "html": "retry me"}))).await;
    let items = wait_for(5.0, || {
        let i = rx.items("/notify");
        (!i.is_empty()).then_some(i)
    })
    .await
    .expect("delivered after retries");
    assert_eq!(items.len(), 1);
    let log = env
        .control(Method::GET, "/msteams/notifications", None)
        .await;
    let d = log.body["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["kind"] == "notification")
        .unwrap()
        .clone();
    assert_eq!(d["attempts"], 3);
    assert_eq!(d["status"], "delivered");
}

async fn delta(env: &Env, url: &str) -> (Vec<Value>, Option<String>, Option<String>) {
    let r = env.get(&env.svc_token, url).await;
    assert_eq!(r.status, 200, "{url}: {}", r.body);
    (
        r.body["value"].as_array().unwrap().clone(),
        r.body["@odata.nextLink"].as_str().map(str::to_owned),
        r.body["@odata.deltaLink"].as_str().map(str::to_owned),
    )
}

#[tokio::test]
async fn delta_returns_delta_link_and_later_only_changes() {
    let env = start(Seed::Small, 0.0).await;
    let (team, chan) = env.channel("Engineering", "Incidents").await;
    let post = |html: &'static str| {
        let env = &env;
        async move {
            let r = env
                .control(Method::POST, "/msteams/messages", Some(json!({"user": "carol@contoso.com", "team": "Engineering", "channel": "Incidents", "html": html})))
                .await;
            assert_eq!(r.status, 200, "{}", r.body);
            r.body["id"].as_str().unwrap().to_owned()
        }
    };
    let a = post("a").await;
    let b = post("b").await;
    let c = post("c").await;
    // initial round: 3 messages over 2 pages, then a deltaLink
    let (page1, next, dl) = delta(
        &env,
        &format!("/teams/{team}/channels/{chan}/messages/delta?$top=2"),
    )
    .await;
    assert_eq!(page1.len(), 2);
    assert!(dl.is_none());
    let (page2, next2, delta_link) = delta(&env, &next.expect("nextLink")).await;
    assert!(next2.is_none());
    let delta_link = delta_link.expect("deltaLink");
    let mut seen: Vec<String> = page1
        .iter()
        .chain(page2.iter())
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    seen.sort();
    assert_eq!(seen, vec![a.clone(), b.clone(), c.clone()]);
    // nothing changed: empty, with a new deltaLink
    let (none, _, dl2) = delta(&env, &delta_link).await;
    assert!(none.is_empty());
    let dl2 = dl2.expect("deltaLink again");
    // later: one new message, one edit, one reply to `a`
    let d = post("d").await;
    env.control(
        Method::PATCH,
        &format!("/msteams/messages/{team}/{chan}/{b}"),
        Some(json!({"html": "b2"})),
    )
    .await;
    let r = env
        .post(
            &env.svc_token,
            &format!("/teams/{team}/channels/{chan}/messages/{a}/replies"),
            json!({"body": {"content": "re: a"}}),
        )
        .await;
    assert_eq!(r.status, 201);
    // the deltaLink keeps $top=2: follow nextLinks to the end of the round
    let (mut changes, mut next, mut dl3) = delta(&env, &dl2).await;
    while let Some(n) = next.take() {
        let (more, n2, d3) = delta(&env, &n).await;
        changes.extend(more);
        next = n2;
        dl3 = d3;
    }
    assert!(dl3.is_some());
    let mut changed: Vec<String> = changes
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    changed.sort();
    let mut want = vec![a.clone(), b.clone(), d];
    want.sort();
    assert_eq!(changed, want, "only the changed reply chains");
    let b_msg = changes.iter().find(|m| m["id"] == b.as_str()).unwrap();
    assert_eq!(b_msg["body"]["content"], "b2");
    // $expand=replies brings the reply along
    let (all, _, _) = delta(
        &env,
        &format!("/teams/{team}/channels/{chan}/messages/delta?$expand=replies&$top=50"),
    )
    .await;
    let a_msg = all.iter().find(|m| m["id"] == a.as_str()).unwrap();
    assert_eq!(a_msg["replies"].as_array().unwrap().len(), 1);
    // a token of another channel is rejected
    let (_, general) = env.channel("Engineering", "General").await;
    let other = dl2
        .replace(&urlencode(&chan), &urlencode(&general))
        .replace(&chan, &general);
    assert_eq!(env.get(&env.svc_token, &other).await.status, 400);
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn losing_access_sends_lifecycle_events() {
    let env = start(Seed::Small, 0.0).await;
    let rx = Receiver::start(Mode::Good).await;
    let (team, chan) = env.channel("Marketing", "Campaigns").await;
    let r = subscribe(&env, &rx, &team, &chan, true, 60).await;
    assert_eq!(r.status, 201, "{}", r.body);
    // the creator's sessions are revoked: reauthorizationRequired
    env.control(
        Method::POST,
        "/msteams/tokens/revoke",
        Some(json!({"user": env.svc_upn})),
    )
    .await;
    // the creator is removed from the team: subscriptionRemoved, and the subscription is gone
    env.control(
        Method::POST,
        &format!("/msteams/teams/{team}/members/remove"),
        Some(json!({"user": env.svc_upn})),
    )
    .await;
    let events = wait_for(5.0, || {
        let l = rx.items("/lifecycle");
        (l.len() >= 2).then_some(l)
    })
    .await
    .expect("two lifecycle notifications");
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["lifecycleEvent"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        vec!["reauthorizationRequired", "subscriptionRemoved"]
    );
    let subs = env
        .control(Method::GET, "/msteams/subscriptions", None)
        .await;
    assert!(subs.body["value"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn one_subscription_per_app_per_channel() {
    let env = start(Seed::Small, 0.0).await;
    let rx = Receiver::start(Mode::Good).await;
    let (team, chan) = env.channel("Engineering", "General").await;
    let r = subscribe(&env, &rx, &team, &chan, true, 120).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r2 = subscribe(&env, &rx, &team, &chan, true, 120).await;
    assert_eq!(r2.status, 403, "{}", r2.body);
    assert!(
        r2.body
            .to_string()
            .contains("one subscription per app per channel")
    );
    // another channel is fine; after deleting the first, the channel can be subscribed again
    let (_, other) = env.channel("Engineering", "Backend").await;
    assert_eq!(
        subscribe(&env, &rx, &team, &other, true, 120).await.status,
        201
    );
    let id = r.body["id"].as_str().unwrap();
    let d = env
        .send(
            Method::DELETE,
            &env.svc_token,
            &format!("/subscriptions/{id}"),
            None,
        )
        .await;
    assert_eq!(d.status, 204);
    assert_eq!(
        subscribe(&env, &rx, &team, &chan, true, 120).await.status,
        201
    );
}

#[tokio::test]
async fn reauthorization_is_required_per_token_and_delivery_pauses_until_then() {
    let env = start(Seed::Small, 0.0).await;
    let rx = Receiver::start(Mode::Good).await;
    let (team, chan) = env.channel("Engineering", "General").await;
    // a delegated token that expires in 2 s: reauthorizationRequired comes at once (it is
    // within the warning lead), and delivery pauses when the token expires
    let mint = |secs: u64| {
        env.control(
            Method::POST,
            "/msteams/tokens",
            Some(json!({"user": env.svc_upn, "expires_in": secs})),
        )
    };
    let short = mint(2).await.body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = json!({
        "changeType": "created,updated,deleted",
        "notificationUrl": format!("{}/notify", rx.base),
        "lifecycleNotificationUrl": format!("{}/lifecycle", rx.base),
        "resource": format!("/teams/{team}/channels/{chan}/messages"),
        "expirationDateTime": in_minutes(600),
        "clientState": "s3cret-state",
    });
    let r = env.post(&short, "/subscriptions", body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_owned();
    wait_for(5.0, || (!rx.items("/lifecycle").is_empty()).then_some(()))
        .await
        .expect("reauthorizationRequired");
    // wait for the pause (the token expired)
    let paused = async {
        for _ in 0..80 {
            let subs = env
                .control(Method::GET, "/msteams/subscriptions", None)
                .await;
            if subs.body["value"][0]["paused"] == true {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        false
    };
    assert!(paused.await, "delivery paused");
    let post = |html: &'static str| {
        env.control(
            Method::POST,
            "/msteams/messages",
            Some(json!({"user": "bob@contoso.com", "team": team, "channel": chan, "html": html})),
        )
    };
    let lost = post("posted during the pause").await;
    let lost_id = lost.body["id"].to_string().trim_matches('"').to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert!(
        rx.items("/notify").is_empty(),
        "nothing is delivered while paused"
    );
    // reauthorize with a fresh (again short) token: delivery resumes, the change made during
    // the pause is not sent later, and the next expiry warns again
    let fresh = mint(3).await.body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = env
        .send(
            Method::POST,
            &fresh,
            &format!("/subscriptions/{id}/reauthorize"),
            None,
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let seen = post("after reauthorizing").await;
    let seen_id = seen.body["id"].to_string().trim_matches('"').to_owned();
    let items = wait_for(5.0, || {
        let n = rx.items("/notify");
        (!n.is_empty()).then_some(n)
    })
    .await
    .expect("a notification after reauthorizing");
    let resources: Vec<String> = items
        .iter()
        .map(|i| i["resource"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        resources.iter().any(|r| r.contains(&seen_id)),
        "{resources:?}"
    );
    assert!(
        !resources.iter().any(|r| r.contains(&lost_id)),
        "{resources:?}"
    );
    let warnings = wait_for(5.0, || {
        let l = rx.items("/lifecycle");
        (l.len() >= 2).then_some(l)
    })
    .await
    .expect("a second reauthorizationRequired for the new token");
    assert!(
        warnings
            .iter()
            .all(|e| e["lifecycleEvent"] == "reauthorizationRequired")
    );
}

#[tokio::test]
async fn expired_delta_links_answer_410() {
    let env = start(Seed::Small, 0.0).await;
    let (team, chan) = env.channel("Engineering", "General").await;
    let r = env
        .get(
            &env.svc_token,
            &format!(
                "/teams/{team}/channels/{chan}/messages/delta?$filter=lastModifiedDateTime%20gt%202020-01-01T00:00:00Z"
            ),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut link = r.body["@odata.nextLink"]
        .as_str()
        .or(r.body["@odata.deltaLink"].as_str())
        .unwrap()
        .to_owned();
    loop {
        let r = env.get(&env.svc_token, &link).await;
        match r.body["@odata.nextLink"].as_str() {
            Some(n) => link = n.to_owned(),
            None => {
                link = r.body["@odata.deltaLink"]
                    .as_str()
                    .unwrap_or(&link)
                    .to_owned();
                break;
            }
        }
    }
    assert_eq!(env.get(&env.svc_token, &link).await.status, 200);
    let x = env
        .control(
            Method::POST,
            "/msteams/delta/expire",
            Some(json!({"channel": chan})),
        )
        .await;
    assert_eq!(x.status, 200);
    let r = env.get(&env.svc_token, &link).await;
    assert_eq!(r.status, 410, "{}", r.body);
    assert_eq!(r.error_code(), "resyncRequired");
}
