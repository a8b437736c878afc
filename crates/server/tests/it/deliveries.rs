//! Dead letters in the admin API and the console's Deliveries page; the relay's gauges.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use secrecy::ExposeSecret;
use switchboard_core::*;
use switchboard_server::Receivers;

use crate::support::World;

const LEASE: std::time::Duration = std::time::Duration::from_secs(30);

/// Queues `n` posts to the Teams channel of org A and dead-letters them; returns their ids.
async fn dead_letters(w: &World, n: usize) -> Vec<DeliveryId> {
    let target: ChannelRef = "msteams:team-1/19:a@thread.tacv2".parse().unwrap();
    let deliveries: Vec<NewDelivery> = (0..n)
        .map(|i| NewDelivery {
            org: w.org_a.clone(),
            connection: w.teams.clone(),
            target: target.clone(),
            job: DeliveryJob::Post {
                universal: UniversalMessageId::new(format!("u-{i}")).unwrap(),
                origin: MessageRef {
                    channel: "slack:T1/C1".parse().unwrap(),
                    message: MessageId::new(format!("1.00000{i}")).unwrap(),
                    thread_root: None,
                },
                content: PortableMessage {
                    sender: Sender {
                        platform: PlatformKind::Slack,
                        user: UserId::new("U1").unwrap(),
                        display_name: "Jane Doe".into(),
                        avatar_url: None,
                        email: None,
                    },
                    text: RichText::plain(format!("message <{i}>")),
                    attachments: vec![],
                    thread_root: None,
                },
                reply_to: None,
                broadcast: false,
                post_as: PostingIdentity::ServiceAccount,
                files: vec![],
            },
        })
        .collect();
    w.store.outbox_enqueue(&deliveries).await.unwrap();
    let worker = WorkerId::new("w").unwrap();
    let mut ids = Vec::new();
    for _ in 0..n {
        let d = w.store.outbox_lease(&worker, 1, LEASE).await.unwrap();
        w.store
            .outbox_fail(&worker, d[0].id, "Forbidden: removed from the team")
            .await
            .unwrap();
        ids.push(d[0].id);
    }
    ids
}

#[tokio::test]
async fn dead_letters_are_listed_per_organization_and_retried() {
    let w = World::new(Receivers::default()).await;
    let ids = dead_letters(&w, 2).await;
    let (s, _) = w.json("GET", "/api/v1/dead-letters", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, list) = w
        .json("GET", "/api/v1/dead-letters", Some(&w.token_a), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let list = list.as_array().unwrap().clone();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["id"], ids[1].0, "newest first");
    assert_eq!(list[0]["kind"], "post");
    assert_eq!(list[0]["sender"], "Jane Doe");
    assert_eq!(list[0]["summary"], "message <1>");
    assert_eq!(list[0]["target"], "msteams:team-1/19:a@thread.tacv2");
    assert_eq!(list[0]["target_name"], "name-19:a@thread.tacv2");
    assert_eq!(list[0]["error"], "Forbidden: removed from the team");
    let (_, page) = w
        .json(
            "GET",
            &format!("/api/v1/dead-letters?before={}&limit=5", ids[1].0),
            Some(&w.token_a),
            None,
        )
        .await;
    assert_eq!(page.as_array().unwrap().len(), 1);
    // Org B sees none and cannot retry org A's.
    let (_, other) = w
        .json("GET", "/api/v1/dead-letters", Some(&w.token_b), None)
        .await;
    assert_eq!(other, serde_json::json!([]));
    let path = format!("/api/v1/dead-letters/{}/retry", ids[0].0);
    let (s, body) = w.json("POST", &path, Some(&w.token_b), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "not_found");
    let (s, _) = w
        .json(
            "POST",
            "/api/v1/dead-letters/nope/retry",
            Some(&w.token_a),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, body) = w.json("POST", &path, Some(&w.token_a), None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "pending");
    let (s, _) = w.json("POST", &path, Some(&w.token_a), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "retried already");
    assert_eq!(w.store.outbox_pending(&w.org_a).await.unwrap(), 1);
    let audit = w.store.list_audit(&w.org_a, 0, 100).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.action == "delivery.retried" && e.target == ids[0].0.to_string())
    );
    // Listed in the OpenAPI document.
    let (_, doc) = w.json("GET", "/api/v1/openapi.json", None, None).await;
    assert!(doc["paths"]["/api/v1/dead-letters"]["get"].is_object());
    assert!(doc["paths"]["/api/v1/dead-letters/{id}/retry"]["post"].is_object());
    assert!(doc["paths"]["/api/v1/daily-messages"]["get"].is_object());
}

#[tokio::test]
async fn messages_per_channel_today_and_the_gauges_show_the_daily_cap() {
    let w = World::new(Receivers::default()).await;
    let teams: ChannelRef = "msteams:team-1/19:a@thread.tacv2".parse().unwrap();
    let today = time::OffsetDateTime::now_utc().date();
    w.store
        .count_posted(&w.org_a, &teams, today, 2_750)
        .await
        .unwrap();
    w.store
        .count_posted(&w.org_a, &"slack:T1/C1".parse().unwrap(), today, 5)
        .await
        .unwrap();
    dead_letters(&w, 1).await;
    let (s, daily) = w
        .json("GET", "/api/v1/daily-messages", Some(&w.token_a), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(daily[0]["channel"], teams.to_string());
    assert_eq!(daily[0]["posted"], 2_750);
    assert_eq!(daily[0]["cap"], 3_000);
    assert_eq!(daily[0]["percent_of_cap"], 91);
    assert_eq!(daily[0]["near_cap"], true);
    assert_eq!(daily[1]["cap"], serde_json::Value::Null);
    assert_eq!(daily[1]["near_cap"], false);
    let (_, other) = w
        .json("GET", "/api/v1/daily-messages", Some(&w.token_b), None)
        .await;
    assert_eq!(other, serde_json::json!([]));

    let (s, _, body) = w
        .send(Request::get("/metrics").body(Body::empty()).unwrap())
        .await;
    assert_eq!(s, StatusCode::OK);
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.contains(&format!(
            "switchboard_dead_letters{{org=\"{}\"}} 1",
            w.org_a
        )),
        "{text}"
    );
    assert!(text.contains(&format!(
        "switchboard_channel_daily_messages{{org=\"{}\",channel=\"{teams}\",cap=\"3000\"}} 2750",
        w.org_a
    )));
    assert!(text.contains("# TYPE switchboard_dead_letters gauge"));
    assert!(
        text.contains(&format!(
            "switchboard_outbox_pending{{org=\"{}\"}} ",
            w.org_a
        )),
        "the outbox depth is exported: {text}"
    );
    assert!(text.contains("# TYPE switchboard_imports_running gauge"));
    assert!(text.contains(&format!(
        "switchboard_inbox_pending{{org=\"{}\"}} ",
        w.org_a
    )));
    assert!(text.contains("# TYPE switchboard_import_progress gauge"));
    assert!(text.trim_end().ends_with("# EOF"), "one EOF, at the end");
    assert_eq!(text.matches("# EOF").count(), 1);
}

fn form(path: &str, cookie: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/x-www-form-urlencoded")
        .header(header::COOKIE, cookie)
        .body(Body::from(body.to_owned()))
        .unwrap()
}

fn get(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut b = Request::get(path);
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    b.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn the_deliveries_page_lists_dead_letters_with_a_csrf_protected_retry() {
    let w = World::new(Receivers::default()).await;
    let ids = dead_letters(&w, 1).await;
    let (s, _, _) = w.send(get("/deliveries", None)).await;
    assert_eq!(s, StatusCode::SEE_OTHER, "the console needs a session");
    let (s, h, _) = w
        .send(
            Request::post("/signin")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(format!("token={}", w.token_a.expose_secret())))
                .unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let cookie = h[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let (s, _, body) = w.send(get("/deliveries", Some(&cookie))).await;
    assert_eq!(s, StatusCode::OK);
    let page = String::from_utf8(body).unwrap();
    assert!(page.contains(&format!("id=\"dead-letter-{}\"", ids[0].0)));
    assert!(page.contains("Forbidden: removed from the team"));
    assert!(page.contains("message &lt;0&gt;"), "escaped");
    assert!(page.contains(&format!("action=\"/deliveries/{}/retry\"", ids[0].0)));
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned();
    let path = format!("/deliveries/{}/retry", ids[0].0);
    let (s, _, _) = w.send(form(&path, &cookie, "csrf=forged")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(
        w.store.outbox_dead_letter_count(&w.org_a).await.unwrap(),
        1,
        "nothing changed"
    );
    let (s, h, _) = w.send(form(&path, &cookie, &format!("csrf={csrf}"))).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(
        h[header::LOCATION],
        format!("/deliveries?retried={}", ids[0].0).as_str()
    );
    assert_eq!(w.store.outbox_dead_letter_count(&w.org_a).await.unwrap(), 0);
    assert_eq!(w.store.outbox_pending(&w.org_a).await.unwrap(), 1);
    let (_, _, body) = w
        .send(get(
            &format!("/deliveries?retried={}", ids[0].0),
            Some(&cookie),
        ))
        .await;
    let page = String::from_utf8(body).unwrap();
    assert!(page.contains("was queued again"));
    assert!(page.contains("No dead letters."));
    let (s, _, _) = w.send(form(&path, &cookie, &format!("csrf={csrf}"))).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "retried already");
}
