//! ServiceAccount against wiremock: role report (paged, by template id), scopes,
//! membership ensured idempotently, removal detected, credentials refreshed.

#[allow(unused_imports)]
use crate::common;

use std::sync::Arc;

use common::*;
use secrecy::ExposeSecret;
use switchboard_core::{
    ChannelRef, ConnectionHealth, ErrorKind, MembershipOutcome, ServiceAccount, TeamId,
    VerifyOptions,
};
use switchboard_msteams::account::{
    APPLICATION_ADMINISTRATOR, TEAMS_ADMINISTRATOR, USER_ADMINISTRATOR,
};
use switchboard_msteams::{MsTeamsConnection, TeamAccess};
use wiremock::matchers::{body_json, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const ALL_SCOPES: &[&str] = &[
    "openid",
    "profile",
    "offline_access",
    "https://graph.microsoft.com/Team.ReadBasic.All",
    "https://graph.microsoft.com/Channel.ReadBasic.All",
    "https://graph.microsoft.com/TeamMember.ReadWrite.All",
    "https://graph.microsoft.com/User.Read.All",
    "https://graph.microsoft.com/RoleManagement.Read.Directory",
    "https://graph.microsoft.com/ChannelMessage.Send",
    "https://graph.microsoft.com/ChannelMessage.ReadWrite",
    "https://graph.microsoft.com/ChannelMessage.Read.All",
];

fn role(template: &str, name: &str) -> serde_json::Value {
    serde_json::json!({
        "@odata.type": "#microsoft.graph.directoryRole",
        "id": format!("tenant-specific-{name}"),
        "displayName": name,
        "description": "…",
        "roleTemplateId": template
    })
}

async fn mount_roles(server: &MockServer, roles: Vec<serde_json::Value>) {
    // page 1: a group and the first role; page 2: the rest
    let next = format!(
        "{}/v1.0/me/transitiveMemberOf?$top=999&$skiptoken=r2",
        server.uri()
    );
    let mut first = vec![serde_json::json!({
        "@odata.type": "#microsoft.graph.group",
        "id": "g1",
        "displayName": "Teams Administrator fans",
        "roleTemplateId": TEAMS_ADMINISTRATOR.template_id
    })];
    let mut rest = roles;
    if !rest.is_empty() {
        first.push(rest.remove(0));
    }
    Mock::given(method("GET"))
        .and(path("/v1.0/me/transitiveMemberOf"))
        .and(query_param("$skiptoken", "r2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"value": rest})))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/me/transitiveMemberOf"))
        .and(query_param("$top", "999"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "@odata.nextLink": next, "value": first
        })))
        .with_priority(10)
        .mount(server)
        .await;
}

fn conn_with_scopes(server: &MockServer, scopes: &[&str]) -> MsTeamsConnection {
    let tokens = refreshing_provider(server, creds(TOKEN, Some("rt"), 3000, scopes), None);
    MsTeamsConnection::new(config(server), tokens).unwrap()
}

fn channel(team: &str) -> ChannelRef {
    format!("msteams:{team}/19:general@thread.tacv2")
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_well_configured_service_account_passes() {
    let server = MockServer::start().await;
    mount_me(&server).await;
    mount_roles(
        &server,
        vec![
            role(
                APPLICATION_ADMINISTRATOR.template_id,
                "Application Administrator",
            ),
            role(TEAMS_ADMINISTRATOR.template_id, "Teams Administrator"),
        ],
    )
    .await;
    let conn = conn_with_scopes(&server, ALL_SCOPES);
    let report = conn.verify(VerifyOptions::default()).await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.account.user_id.as_str(), ME);
    assert_eq!(
        report.account.display_name,
        "switchboard@contoso.onmicrosoft.com"
    );
    assert!(report.account.is_service_account);
    assert_eq!(report.health(), ConnectionHealth::Ok);
    let names: Vec<_> = report.checks.iter().map(|c| c.name.as_str()).collect();
    assert!(names.contains(&"Application Administrator role"));
    assert!(names.contains(&"Teams Administrator role"));
    assert!(names.contains(&"scope ChannelMessage.Send"));
    assert!(!names.iter().any(|n| n.contains("User Administrator")));
}

#[tokio::test]
async fn missing_roles_and_scopes_are_reported_with_fixes() {
    let server = MockServer::start().await;
    mount_me(&server).await;
    mount_roles(
        &server,
        vec![role(
            APPLICATION_ADMINISTRATOR.template_id,
            "Application Administrator",
        )],
    )
    .await;
    let scopes: Vec<&str> = ALL_SCOPES
        .iter()
        .copied()
        .filter(|s| !s.ends_with("ChannelMessage.Send"))
        .collect();
    let conn = conn_with_scopes(&server, &scopes);
    let report = conn
        .verify(VerifyOptions { guest_sync: true })
        .await
        .unwrap();
    assert!(!report.is_ok());
    assert_eq!(report.health(), ConnectionHealth::MissingRoles);
    let problems: Vec<_> = report.problems().map(|c| c.name.as_str()).collect();
    assert_eq!(
        problems,
        [
            "Teams Administrator role",
            "User Administrator role",
            "scope ChannelMessage.Send",
            "scope User.Invite.All"
        ]
    );
    let teams = report.problems().next().unwrap();
    let fix = teams.fix.as_deref().unwrap();
    assert!(
        fix.contains("Teams Administrator") && fix.contains("switchboard@contoso.onmicrosoft.com"),
        "{fix}"
    );
    assert!(report.checks.iter().any(
        |c| c.name == "User Administrator role" && c.fix.as_deref().unwrap().contains("guest")
    ));
    let _ = USER_ADMINISTRATOR;
}

#[tokio::test]
async fn unreadable_roles_are_reported_not_a_crash() {
    let server = MockServer::start().await;
    mount_me(&server).await;
    Mock::given(method("GET"))
        .and(path("/v1.0/me/transitiveMemberOf"))
        .respond_with(ResponseTemplate::new(403).set_body_json(graph_error(
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        )))
        .mount(&server)
        .await;
    let conn = conn_with_scopes(&server, ALL_SCOPES);
    let report = conn.verify(VerifyOptions::default()).await.unwrap();
    assert_eq!(report.health(), ConnectionHealth::MissingRoles);
    // template ids hidden (no RoleManagement.Read.Directory): the fix says so
    server.reset().await;
    mount_me(&server).await;
    Mock::given(method("GET"))
        .and(path("/v1.0/me/transitiveMemberOf"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"value": [
            {"@odata.type": "#microsoft.graph.directoryRole", "id": "r1", "displayName": "Teams Administrator", "roleTemplateId": null}
        ]})))
        .mount(&server)
        .await;
    let report = conn.verify(VerifyOptions::default()).await.unwrap();
    assert!(report.problems().all(|c| {
        c.fix
            .as_deref()
            .unwrap()
            .contains("RoleManagement.Read.Directory")
    }));
}

#[tokio::test]
async fn ensure_membership_is_idempotent() {
    let server = MockServer::start().await;
    mount_me(&server).await;
    let filter = format!("(microsoft.graph.aadUserConversationMember/userId eq '{ME}')");
    // T1: already a member
    Mock::given(method("GET"))
        .and(path("/v1.0/teams/T1/members"))
        .and(query_param("$filter", filter.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"value": [
            {"@odata.type": "#microsoft.graph.aadUserConversationMember", "id": "m", "roles": [], "userId": ME, "displayName": "Switchboard Service"}
        ]})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1.0/teams/T1/members"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    // T2: not a member, added
    Mock::given(method("GET"))
        .and(path("/v1.0/teams/T2/members"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"value": []})))
        .mount(&server)
        .await;
    let bind = format!("{}/v1.0/users('{ME}')", server.uri());
    Mock::given(method("POST"))
        .and(path("/v1.0/teams/T2/members"))
        .and(body_json(serde_json::json!({
            "@odata.type": "#microsoft.graph.aadUserConversationMember",
            "roles": [],
            "user@odata.bind": bind
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(serde_json::json!({
            "@odata.type": "#microsoft.graph.aadUserConversationMember", "id": "new", "roles": [], "userId": ME
        })))
        .expect(1)
        .mount(&server)
        .await;
    // T3: removed (403 on reads), re-adding answers 409 (already there after all)
    Mock::given(method("GET"))
        .and(path("/v1.0/teams/T3/members"))
        .respond_with(
            ResponseTemplate::new(403).set_body_json(graph_error("Forbidden", "not a member")),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1.0/teams/T3/members"))
        .respond_with(
            ResponseTemplate::new(409).set_body_json(graph_error("Conflict", "already exists")),
        )
        .mount(&server)
        .await;
    // T4: may not add itself
    Mock::given(method("GET"))
        .and(path("/v1.0/teams/T4/members"))
        .respond_with(ResponseTemplate::new(403).set_body_json(graph_error("Forbidden", "x")))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1.0/teams/T4/members"))
        .respond_with(
            ResponseTemplate::new(403)
                .set_body_json(graph_error("Forbidden", "Insufficient privileges")),
        )
        .mount(&server)
        .await;
    let conn = fixed_conn(&server);
    assert_eq!(
        conn.ensure_membership(&channel("T1")).await.unwrap(),
        MembershipOutcome::AlreadyMember
    );
    assert_eq!(
        conn.ensure_membership(&channel("T2")).await.unwrap(),
        MembershipOutcome::Added
    );
    assert_eq!(
        conn.ensure_membership(&channel("T3")).await.unwrap(),
        MembershipOutcome::AlreadyMember
    );
    match conn.ensure_membership(&channel("T4")).await.unwrap() {
        MembershipOutcome::ActionRequired { fix } => {
            assert!(
                fix.contains("Teams Administrator") && fix.contains("T4"),
                "{fix}"
            )
        }
        other => panic!("{other:?}"),
    }
    let slack: ChannelRef = "slack:T1/C1".parse().unwrap();
    assert_eq!(
        conn.ensure_membership(&slack).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );

    // removal detection
    assert_eq!(
        conn.check_membership(&TeamId::new("T1").unwrap())
            .await
            .unwrap(),
        TeamAccess::Member
    );
    assert_eq!(
        conn.check_membership(&TeamId::new("T2").unwrap())
            .await
            .unwrap(),
        TeamAccess::NotMember
    );
    assert_eq!(
        conn.check_membership(&TeamId::new("T3").unwrap())
            .await
            .unwrap(),
        TeamAccess::Forbidden
    );
    let all = conn
        .ensure_memberships(&[TeamId::new("T1").unwrap(), TeamId::new("T4").unwrap()])
        .await;
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|(_, r)| r.is_ok()));
}

#[tokio::test]
async fn refresh_credentials_rotates() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(token_path()))
        .respond_with(ResponseTemplate::new(200).set_body_json(token_json("at-9", "rt-9")))
        .expect(1)
        .mount(&server)
        .await;
    let conn = conn_with_scopes(&server, ALL_SCOPES);
    let c = conn.refresh_credentials().await.unwrap();
    assert_eq!(c.access_token.expose_secret(), "at-9");
    assert_eq!(c.refresh_token.unwrap().expose_secret(), "rt-9");
    assert_eq!(
        conn.tokens()
            .credentials()
            .await
            .access_token
            .expose_secret(),
        "at-9"
    );
    let _: Arc<_> = conn.tokens().clone();
}
