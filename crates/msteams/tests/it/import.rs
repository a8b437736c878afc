//! TeamImport against wiremock: team listing with fallback, channels (kinds), members and
//! users paged, progress, concurrent multi-team import, errors.

#[allow(unused_imports)]
use crate::common;

use common::*;
use switchboard_core::{ChannelKind, ErrorKind, ImportPhase, TeamId, TeamImport, TeamListSource};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn team(id: &str) -> TeamId {
    TeamId::new(id).unwrap()
}

async fn mount_channels(server: &MockServer, team: &str) {
    Mock::given(method("GET"))
        .and(path(format!("/v1.0/teams/{team}/channels")))
        .and(query_param("$select", "id,displayName,description,membershipType"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#teams('x')/channels",
            "@odata.count": 4,
            "value": [
                {"id": format!("19:general-{team}@thread.tacv2"), "createdDateTime": "2020-01-01T00:00:00Z", "displayName": "General", "description": "Everyone", "isFavoriteByDefault": null, "email": "", "webUrl": "https://teams.microsoft.com/l/channel/x", "membershipType": "standard"},
                {"id": format!("19:private-{team}@thread.tacv2"), "displayName": "Leads", "description": null, "membershipType": "private"},
                {"id": format!("19:shared-{team}@thread.tacv2"), "displayName": "Partners", "membershipType": "shared"},
                {"id": format!("19:future-{team}@thread.tacv2"), "displayName": "Future", "membershipType": "unknownFutureValue"}
            ]
        })))
        .mount(server)
        .await;
}

async fn mount_members(server: &MockServer, team: &str) {
    let next = format!(
        "{}/v1.0/teams/{team}/members?$top=999&$skiptoken=m2",
        server.uri()
    );
    Mock::given(method("GET"))
        .and(path(format!("/v1.0/teams/{team}/members")))
        .and(query_param("$skiptoken", "m2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "value": [
                {"@odata.type": "#microsoft.graph.aadUserConversationMember", "id": "m3", "roles": [], "displayName": "Carol", "userId": "u3", "email": "carol@contoso.test", "tenantId": "t1"},
                {"@odata.type": "#microsoft.graph.anonymousGuestConversationMember", "id": "m4", "roles": ["guest"], "displayName": "Anon", "userId": null}
            ]
        })))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/v1.0/teams/{team}/members")))
        .and(query_param("$top", "999"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "@odata.nextLink": next,
            "value": [
                {"@odata.type": "#microsoft.graph.aadUserConversationMember", "id": "m1", "roles": ["owner"], "displayName": "Alice", "userId": "u1", "email": "alice@contoso.test", "tenantId": "t1", "visibleHistoryStartDateTime": "0001-01-01T00:00:00Z"},
                {"@odata.type": "#microsoft.graph.aadUserConversationMember", "id": "m2", "roles": null, "displayName": "Bob", "userId": "u2", "email": "bob@contoso.test"}
            ]
        })))
        .with_priority(10)
        .mount(server)
        .await;
}

#[tokio::test]
async fn list_teams_uses_the_tenant_wide_list_across_pages() {
    let server = MockServer::start().await;
    let next = format!("{}/v1.0/teams?$skiptoken=p2", server.uri());
    Mock::given(method("GET"))
        .and(path("/v1.0/teams"))
        .and(query_param("$skiptoken", "p2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "value": [{"id": "T3", "displayName": "", "description": ""}]
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/teams"))
        .and(query_param("$select", "id,displayName,description"))
        .and(query_param("$top", "999"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "@odata.nextLink": next,
            "value": [
                {"id": "T1", "displayName": "Engineering", "description": "Builds things", "visibility": "public"},
                {"id": "T2", "displayName": "Sales", "description": null}
            ]
        })))
        .with_priority(10)
        .mount(&server)
        .await;
    let conn = fixed_conn(&server);
    let listing = conn.list_teams().await.unwrap();
    assert_eq!(listing.source, TeamListSource::TenantWide);
    let names: Vec<_> = listing.teams.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["Engineering", "Sales", "T3"]);
    assert_eq!(
        listing.teams[0].description.as_deref(),
        Some("Builds things")
    );
    assert_eq!(listing.teams[2].description, None);
}

#[tokio::test]
async fn list_teams_falls_back_to_joined_teams_when_forbidden() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/teams"))
        .respond_with(ResponseTemplate::new(403).set_body_json(graph_error(
            "Forbidden",
            "Missing scope permissions on the request. API requires one of 'Team.ReadBasic.All'.",
        )))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/me/joinedTeams"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "value": [{"id": "T9", "displayName": "Mine", "description": null, "isArchived": false, "tenantId": "t"}]
        })))
        .expect(1)
        .mount(&server)
        .await;
    let conn = fixed_conn(&server);
    let listing = conn.list_teams().await.unwrap();
    assert_eq!(listing.source, TeamListSource::Joined);
    assert_eq!(listing.teams.len(), 1);
    let reqs = server.received_requests().await.unwrap();
    assert_eq!(
        reqs[1].url.query(),
        None,
        "joinedTeams takes no OData options"
    );

    // other failures are not papered over by the fallback
    server.reset().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/teams"))
        .respond_with(ResponseTemplate::new(404).set_body_json(graph_error("NotFound", "x")))
        .mount(&server)
        .await;
    assert_eq!(
        conn.list_teams().await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn import_team_streams_channels_and_members_with_progress() {
    let server = MockServer::start().await;
    mount_channels(&server, "T1").await;
    mount_members(&server, "T1").await;
    let conn = fixed_conn(&server);
    let mut sink = VecSink::default();
    let counts = conn.import_team(&team("T1"), &mut sink).await.unwrap();
    assert_eq!((counts.channels, counts.members, counts.users), (4, 3, 0));
    let kinds: Vec<_> = sink.channels.iter().map(|c| c.kind).collect();
    assert_eq!(
        kinds,
        [
            ChannelKind::Standard,
            ChannelKind::Private,
            ChannelKind::Shared,
            ChannelKind::Private
        ]
    );
    assert_eq!(sink.channels[0].description.as_deref(), Some("Everyone"));
    assert!(sink.channels.iter().all(|c| c.team.as_str() == "T1"));
    let owners: Vec<_> = sink
        .members
        .iter()
        .map(|m| (m.user.as_str(), m.is_owner))
        .collect();
    assert_eq!(owners, [("u1", true), ("u2", false), ("u3", false)]);
    // one channel page, two member pages
    assert_eq!(sink.pages, 3);
    let p = &sink.progress;
    assert_eq!(p[0].phase, ImportPhase::Channels);
    assert_eq!((p[0].done, p[0].estimated_total), (4, Some(4)));
    assert_eq!(
        (p[1].phase, p[1].done, p[1].estimated_total),
        (ImportPhase::Members, 2, None)
    );
    assert_eq!((p[2].done, p[2].estimated_total), (3, Some(3)));
}

#[tokio::test]
async fn import_team_reports_a_lost_membership() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/teams/T1/channels"))
        .respond_with(ResponseTemplate::new(403).set_body_json(graph_error(
            "Forbidden",
            "The user is not a member of the team",
        )))
        .mount(&server)
        .await;
    let conn = fixed_conn(&server);
    let e = conn
        .import_team(&team("T1"), &mut VecSink::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Forbidden);
    assert!(e.message().contains("removed from team T1"), "{e}");
}

#[tokio::test]
async fn import_users_selects_pages_and_maps_users() {
    let server = MockServer::start().await;
    let p2 = format!(
        "{}/v1.0/users?$select=id&$top=999&$skiptoken=u2",
        server.uri()
    );
    let p3 = format!("{}/v1.0/users?$skiptoken=u3", server.uri());
    Mock::given(method("GET"))
        .and(path("/v1.0/users"))
        .and(query_param("$skiptoken", "u3"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "value": [{"id": "u5", "displayName": "Eve", "mail": null, "userPrincipalName": "eve@contoso.test", "userType": "Member", "accountEnabled": false}]
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users"))
        .and(query_param("$skiptoken", "u2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "@odata.nextLink": p3,
            "value": [
                {"id": "u3", "displayName": "Guest Gal", "mail": "gal@fabrikam.test", "userPrincipalName": "gal_fabrikam.test#EXT#@contoso.onmicrosoft.com", "userType": "Guest", "accountEnabled": true},
                {"displayName": "broken entry without id"}
            ]
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users"))
        .and(query_param("$select", "id,displayName,mail,userPrincipalName,userType,accountEnabled"))
        .and(query_param("$top", "999"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users(id,displayName,mail,userPrincipalName,userType,accountEnabled)",
            "@odata.nextLink": p2,
            "value": [
                {"id": "u1", "displayName": "Alice", "mail": "alice@contoso.test", "userPrincipalName": "alice@contoso.test", "userType": "Member", "accountEnabled": true},
                {"id": "u2", "displayName": "Bob", "mail": "bob@contoso.test", "userPrincipalName": "bob@contoso.test", "userType": null, "accountEnabled": null}
            ]
        })))
        .with_priority(10)
        .mount(&server)
        .await;
    let conn = fixed_conn(&server);
    let mut sink = VecSink::default();
    let counts = conn.import_users(&mut sink).await.unwrap();
    assert_eq!(counts.users, 4);
    assert_eq!(sink.pages, 3);
    let u: Vec<_> = sink
        .users
        .iter()
        .map(|u| (u.id.as_str(), u.email.as_deref(), u.is_guest, u.is_deleted))
        .collect();
    assert_eq!(
        u,
        [
            ("u1", Some("alice@contoso.test"), false, false),
            ("u2", Some("bob@contoso.test"), false, false),
            ("u3", Some("gal@fabrikam.test"), true, false),
            ("u5", None, false, true),
        ]
    );
    let last = sink.progress.last().unwrap();
    assert_eq!(
        (last.phase, last.done, last.estimated_total),
        (ImportPhase::Users, 4, Some(4))
    );
    assert_eq!(sink.progress[0].estimated_total, None);
}

#[tokio::test]
async fn import_teams_runs_teams_concurrently_into_one_sink() {
    let server = MockServer::start().await;
    let ids: Vec<String> = (0..6).map(|i| format!("T{i}")).collect();
    for id in &ids {
        mount_channels(&server, id).await;
        mount_members(&server, id).await;
    }
    let conn = fixed_conn(&server);
    let teams: Vec<TeamId> = ids.iter().map(|i| team(i)).collect();
    let mut sink = VecSink::default();
    let counts = conn.import_teams(&teams, &mut sink).await.unwrap();
    assert_eq!((counts.channels, counts.members), (24, 18));
    assert_eq!(sink.channels.len(), 24);
    assert_eq!(sink.members.len(), 18);
    for id in &ids {
        assert_eq!(
            sink.channels
                .iter()
                .filter(|c| c.team.as_str() == id)
                .count(),
            4
        );
        assert_eq!(
            sink.members
                .iter()
                .filter(|m| m.team.as_str() == id)
                .count(),
            3
        );
    }
    let last_channels = sink
        .progress
        .iter()
        .rfind(|p| p.phase == ImportPhase::Channels)
        .unwrap();
    assert_eq!(last_channels.done, 24);
    assert!(last_channels.estimated_total.is_some());

    // a failing sink stops the import with its error
    let mut failing = VecSink {
        fail_at_page: Some(2),
        ..Default::default()
    };
    let e = conn.import_teams(&teams, &mut failing).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Storage);
}

#[tokio::test]
async fn import_teams_stops_at_the_first_failing_team() {
    let server = MockServer::start().await;
    mount_channels(&server, "T0").await;
    mount_members(&server, "T0").await;
    Mock::given(method("GET"))
        .and(path("/v1.0/teams/T1/channels"))
        .respond_with(
            ResponseTemplate::new(404)
                .set_body_json(graph_error("NotFound", "No team found with Group Id T1")),
        )
        .mount(&server)
        .await;
    let conn = fixed_conn(&server);
    let e = conn
        .import_teams(&[team("T0"), team("T1")], &mut VecSink::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.message().contains("T1"), "{e}");
}
