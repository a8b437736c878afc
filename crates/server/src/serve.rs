//! Running the server: open the store named by the configuration, make sure an organization
//! and an admin token exist, listen, and hand back what the ready line reports.

use std::net::SocketAddr;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use switchboard_core::{Error, ErrorKind, OrgId, Result, Store};
use switchboard_storage::SqlStore;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::ServerConfig;
use crate::{AppState, Receivers, router};

/// The name of the admin token `serve` issues at every start (the previous one is revoked:
/// tokens are stored hashed, so the old one cannot be shown again).
pub const SERVE_TOKEN_NAME: &str = "serve";

/// Opens the store: PostgreSQL when `database_url` is set, else SQLite in `data_dir`.
pub async fn open_store(config: &ServerConfig) -> Result<SqlStore> {
    match &config.database_url {
        Some(url) => {
            std::fs::create_dir_all(&config.data_dir).map_err(|e| {
                Error::new(
                    ErrorKind::Storage,
                    format!("cannot create {}: {e}", config.data_dir.display()),
                )
            })?;
            let keyring = switchboard_storage::Keyring::load(&config.data_dir)?;
            let mut options = switchboard_storage::StoreOptions::default();
            options.schema = config.database_schema.clone();
            SqlStore::open_with(url.expose_secret(), keyring, options).await
        }
        None => {
            std::fs::create_dir_all(&config.data_dir).map_err(|e| {
                Error::new(
                    ErrorKind::Storage,
                    format!("cannot create {}: {e}", config.data_dir.display()),
                )
            })?;
            SqlStore::open_data_dir(&config.data_dir).await
        }
    }
}

/// The organization `serve` administers (the oldest; a first start creates "default") and a
/// fresh admin token for it.
pub async fn bootstrap_admin(store: &dyn Store) -> Result<(OrgId, SecretString)> {
    let org = match store.list_orgs().await?.into_iter().next() {
        Some(o) => o,
        None => store.create_org("default").await?,
    };
    match store.revoke_admin_token(&org.id, SERVE_TOKEN_NAME).await {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let token = store.create_admin_token(&org.id, SERVE_TOKEN_NAME).await?;
    Ok((org.id, token))
}

/// A running server.
#[derive(Debug)]
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    /// `http://addr`.
    pub url: String,
    /// The organization served.
    pub org: OrgId,
    /// A fresh admin token of that organization.
    pub admin_token: SecretString,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// The ready line's JSON object (`{"ready":true,"url","admin_token"}`).
    pub fn ready_info(&self) -> serde_json::Value {
        serde_json::json!({
            "ready": true,
            "url": self.url,
            "admin_token": self.admin_token.expose_secret(),
        })
    }

    /// Stops accepting, finishes in-flight requests, and returns.
    pub async fn shutdown(mut self) -> Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.wait().await
    }

    /// Waits until the server stops.
    pub async fn wait(self) -> Result<()> {
        match self.task.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::new(
                ErrorKind::Upstream,
                format!("server failed: {e}"),
            )),
            Err(e) => Err(Error::new(ErrorKind::Upstream, format!("server task: {e}"))),
        }
    }
}

/// Binds the configured address and serves `store` with `receivers`. Returns once the
/// listener accepts connections (print the ready line then).
pub async fn start(
    config: &ServerConfig,
    store: Arc<dyn Store>,
    receivers: Receivers,
) -> Result<Running> {
    let (org, admin_token) = bootstrap_admin(store.as_ref()).await?;
    let listener = TcpListener::bind((config.server.bind, config.server.port))
        .await
        .map_err(|e| {
            Error::invalid(format!(
                "cannot listen on {}:{}: {e}",
                config.server.bind, config.server.port
            ))
        })?;
    start_with(listener, AppState::new(store, receivers), org, admin_token)
}

/// Serves `state` on an already bound `listener` (so the caller knows the port before it
/// configures OAuth redirects), for the organization `org` with its fresh `admin_token`.
pub fn start_with(
    listener: TcpListener,
    state: AppState,
    org: OrgId,
    admin_token: SecretString,
) -> Result<Running> {
    let addr = listener
        .local_addr()
        .map_err(|e| Error::invalid(format!("no local address: {e}")))?;
    let app = router(state);
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await
    });
    Ok(Running {
        addr,
        url: format!("http://{addr}"),
        org,
        admin_token,
        shutdown: Some(tx),
        task,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_restart_keeps_the_org_and_replaces_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let config = ServerConfig {
            data_dir: dir.path().join("data"),
            server: crate::config::ListenConfig {
                port: 0,
                ..Default::default()
            },
            ..Default::default()
        };
        let store: Arc<dyn Store> = open_store(&config).await.unwrap().shared();
        let first = start(&config, store.clone(), Receivers::default())
            .await
            .unwrap();
        let info = first.ready_info();
        assert_eq!(info["ready"], true);
        assert!(
            info["url"]
                .as_str()
                .unwrap()
                .starts_with("http://127.0.0.1:")
        );
        let org = first.org.clone();
        let old = first.admin_token.clone();
        first.shutdown().await.unwrap();

        let second = start(&config, store.clone(), Receivers::default())
            .await
            .unwrap();
        assert_eq!(
            second.org, org,
            "the same organization is served after a restart"
        );
        assert_eq!(store.list_orgs().await.unwrap().len(), 1);
        assert!(
            store
                .authenticate_admin_token(&old)
                .await
                .unwrap()
                .is_none()
        );
        let p = store
            .authenticate_admin_token(&second.admin_token)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(p.org, org);
        second.shutdown().await.unwrap();
    }
}
