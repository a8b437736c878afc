//! A store with two organizations, their admin tokens, and org A's connections and channels.

use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use switchboard_core::*;
use switchboard_server::{AppState, Receivers, router};
use switchboard_storage::{Keyring, MasterKey, SqlStore};
use time::OffsetDateTime;
use tower::ServiceExt;

pub struct World {
    pub _dir: tempfile::TempDir,
    pub store: Arc<dyn Store>,
    pub state: AppState,
    pub org_a: OrgId,
    pub token_a: SecretString,
    pub token_b: SecretString,
    pub slack: ConnectionId,
    pub teams: ConnectionId,
}

fn connection(org: &OrgId, platform: PlatformKind, tenant: &str) -> Connection {
    Connection {
        id: ConnectionId::generate(),
        org: org.clone(),
        platform,
        tenant: TenantId::new(tenant).unwrap(),
        enterprise: None,
        display_name: format!("{platform} {tenant}"),
        account: AccountIdentity {
            user_id: UserId::new("svc").unwrap(),
            display_name: "svc@contoso.test".into(),
            is_service_account: true,
        },
        health: ConnectionHealth::Ok,
        created_at: OffsetDateTime::now_utc(),
    }
}

async fn import(store: &dyn Store, org: &OrgId, conn: &Connection, team: &str, channels: &[&str]) {
    let run = store.begin_import(org, &conn.id).await.unwrap();
    let team_id = TeamId::new(team).unwrap();
    store
        .upsert_teams(
            org,
            &conn.id,
            run,
            &[Team {
                id: team_id.clone(),
                name: team.into(),
                description: None,
            }],
        )
        .await
        .unwrap();
    let chans: Vec<Channel> = channels
        .iter()
        .map(|c| Channel {
            id: ChannelId::new(*c).unwrap(),
            team: team_id.clone(),
            name: format!("name-{c}"),
            kind: ChannelKind::Standard,
            description: None,
        })
        .collect();
    store
        .upsert_channels(org, &conn.id, run, &chans)
        .await
        .unwrap();
    store
        .finish_team_import(org, &conn.id, run, &team_id)
        .await
        .unwrap();
}

impl World {
    pub async fn new(receivers: Receivers) -> World {
        let dir = tempfile::tempdir().unwrap();
        let store = SqlStore::sqlite(
            dir.path().join("sb.db"),
            Keyring::new(MasterKey::generate()),
        )
        .await
        .unwrap();
        let store: Arc<dyn Store> = store.shared();
        let a = store.create_org("Contoso").await.unwrap();
        let b = store.create_org("Fabrikam").await.unwrap();
        let token_a = store.create_admin_token(&a.id, "alice").await.unwrap();
        let token_b = store.create_admin_token(&b.id, "bob").await.unwrap();
        let slack = connection(&a.id, PlatformKind::Slack, "T1");
        let teams = connection(&a.id, PlatformKind::Msteams, "tenant-1");
        store.put_connection(&slack).await.unwrap();
        store.put_connection(&teams).await.unwrap();
        import(store.as_ref(), &a.id, &slack, "T1", &["C1", "C2"]).await;
        import(
            store.as_ref(),
            &a.id,
            &teams,
            "team-1",
            &["19:a@thread.tacv2"],
        )
        .await;
        let state = AppState::new(store.clone(), receivers);
        World {
            _dir: dir,
            store,
            state,
            org_a: a.id,
            token_a,
            token_b,
            slack: slack.id,
            teams: teams.id,
        }
    }

    pub async fn send(
        &self,
        request: Request<Body>,
    ) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let response = router(self.state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), 16 * 1024 * 1024)
            .await
            .unwrap()
            .to_vec();
        (status, headers, body)
    }

    pub async fn json(
        &self,
        method: &str,
        path: &str,
        token: Option<&SecretString>,
        body: Option<serde_json::Value>,
    ) -> (StatusCode, serde_json::Value) {
        let mut b = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {}", t.expose_secret()));
        }
        let request = match body {
            Some(v) => b
                .header("content-type", "application/json")
                .body(Body::from(v.to_string()))
                .unwrap(),
            None => b.body(Body::empty()).unwrap(),
        };
        let (status, _, bytes) = self.send(request).await;
        let value = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
            })
        };
        (status, value)
    }
}

/// A receiver with the shape of the real ones: a header signature, a handshake, routed items.
/// Body: `{"team": "T1", "events": ["Ev1", …]}`; header `x-test-signature: good`.
#[derive(Debug, Default)]
pub struct TestReceiver;

#[async_trait]
impl WebhookReceiver for TestReceiver {
    async fn receive(&self, request: &WebhookRequest<'_>) -> Result<WebhookOutcome> {
        if let Some(token) = request.query.strip_prefix("validationToken=") {
            return Ok(WebhookOutcome::Handshake {
                content_type: "text/plain",
                body: token.to_owned(),
            });
        }
        if request.header("x-test-signature") != Some("good") {
            return Err(Error::new(ErrorKind::Unauthorized, "bad signature"));
        }
        let v: serde_json::Value = serde_json::from_slice(request.body)
            .map_err(|e| Error::invalid(format!("malformed body: {e}")))?;
        let team = v["team"]
            .as_str()
            .ok_or_else(|| Error::invalid("no team"))?;
        let items = v["events"]
            .as_array()
            .ok_or_else(|| Error::invalid("no events"))?
            .iter()
            .filter_map(|e| e.as_str())
            .map(|id| {
                Inbound::Event(PlatformEvent {
                    event_id: id.to_owned(),
                    channel: format!("slack:{team}/C1").parse().unwrap(),
                    occurred_at: OffsetDateTime::now_utc(),
                    kind: EventKind::Deleted {
                        message: MessageId::new("1700000000.000100").unwrap(),
                    },
                })
            })
            .collect();
        Ok(WebhookOutcome::Accept {
            routed: vec![RoutedItems {
                route: Route::Workspace {
                    team: TeamId::new(team).unwrap(),
                },
                items,
            }],
            status: 200,
        })
    }
}
