//! `switchboard.toml`, with every key overridable by a `SWITCHBOARD_*` environment variable
//! (nested keys joined by `__`: `SWITCHBOARD_SERVER__PORT=8080`), loaded with `figment`.
//!
//! ```toml
//! data_dir = "./switchboard-data"          # the SQLite file and the key file
//! database_url = "postgres://…"            # optional: PostgreSQL instead of SQLite
//! log_format = "human"                     # or "json"
//!
//! [server]
//! bind = "127.0.0.1"
//! port = 8080                              # 0: any free port
//! public_url = "https://switchboard.example.com"   # where platforms reach the webhooks
//!
//! [msteams]                                # the Microsoft Entra app registration
//! tenant_id = "contoso.onmicrosoft.com"
//! client_id = "…"
//! client_secret = "…"
//!
//! [slack]                                  # the Slack app
//! client_id = "…"
//! client_secret = "…"
//! signing_secret = "…"
//! ```
//!
//! `sandbox_url = "http://127.0.0.1:P"` instead takes both app registrations (and the
//! platforms' endpoints) from a running `switchboard sandbox`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use switchboard_core::{Error, Result};

/// How logs are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// The HTTP listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ListenConfig {
    /// Address to bind (loopback unless told otherwise).
    pub bind: IpAddr,
    /// Port (0: any free port).
    pub port: u16,
    /// The public base URL platforms use for webhooks and OAuth redirects; defaults to the
    /// listening address.
    pub public_url: Option<String>,
}

impl Default for ListenConfig {
    fn default() -> Self {
        ListenConfig {
            bind: IpAddr::from([127, 0, 0, 1]),
            port: 8080,
            public_url: None,
        }
    }
}

/// A Microsoft Entra app registration (Teams).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MsTeamsApp {
    /// Tenant GUID or domain.
    pub tenant_id: String,
    /// Application (client) id.
    pub client_id: String,
    /// Client secret.
    #[serde(skip_serializing)]
    pub client_secret: SecretString,
    /// Microsoft identity base (before `/{tenant}/oauth2/v2.0`); login.microsoftonline.com
    /// when absent.
    #[serde(default)]
    pub login_url: Option<String>,
    /// Graph base including the version; `https://graph.microsoft.com/v1.0` when absent.
    #[serde(default)]
    pub graph_url: Option<String>,
}

/// A Slack app.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlackApp {
    /// Client id.
    pub client_id: String,
    /// Client secret.
    #[serde(skip_serializing)]
    pub client_secret: SecretString,
    /// Signing secret (Events API request verification).
    #[serde(skip_serializing)]
    pub signing_secret: SecretString,
    /// Web API base (`https://slack.com/api/` when absent).
    #[serde(default)]
    pub api_url: Option<String>,
    /// OAuth base (`https://slack.com/` when absent).
    #[serde(default)]
    pub oauth_url: Option<String>,
}

/// Tuning of the relay workers (`[relay]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RelayTuning {
    /// How long a worker holds an inbox item or delivery it leased; after a crash the rows
    /// come back to the other workers (or the restarted one) once this has passed.
    pub lease_seconds: u64,
    /// Items or deliveries leased per batch.
    pub batch: usize,
    /// After a partial translation batch, how long (milliseconds) the worker lets more
    /// items arrive before it leases again (0: at once). Fewer, larger transactions under a
    /// steady stream; an isolated message is never delayed, and a batch that queued no
    /// delivery (our own copies' notifications) is not lingered after.
    pub linger_ms: u64,
    /// The longest (milliseconds) a connection's new events are held back for late ones
    /// once its platform was seen delivering out of order (0: never held; events leased
    /// together are still ordered).
    pub reorder_max_ms: u64,
}

impl Default for RelayTuning {
    fn default() -> Self {
        RelayTuning {
            lease_seconds: 60,
            batch: 64,
            linger_ms: 5,
            reorder_max_ms: 1000,
        }
    }
}

/// Everything `serve` reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerConfig {
    /// Data directory: the SQLite file and the master key file.
    pub data_dir: PathBuf,
    /// A PostgreSQL URL (several replicas share one); SQLite in `data_dir` when absent.
    #[serde(skip_serializing)]
    pub database_url: Option<SecretString>,
    /// PostgreSQL: the schema to use (created when missing), so several deployments (or
    /// test runs) can share one database; the server's `search_path` when absent.
    pub database_schema: Option<String>,
    /// Log format.
    pub log_format: LogFormat,
    /// The listener.
    pub server: ListenConfig,
    /// The relay workers.
    pub relay: RelayTuning,
    /// Take the app registrations and endpoints from the sandbox running here (development).
    pub sandbox_url: Option<String>,
    /// The Teams app registration.
    #[serde(skip_serializing)]
    pub msteams: Option<MsTeamsApp>,
    /// The Slack app.
    #[serde(skip_serializing)]
    pub slack: Option<SlackApp>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            data_dir: PathBuf::from("./switchboard-data"),
            database_url: None,
            database_schema: None,
            log_format: LogFormat::Human,
            server: ListenConfig::default(),
            relay: RelayTuning::default(),
            sandbox_url: None,
            msteams: None,
            slack: None,
        }
    }
}

impl ServerConfig {
    /// Defaults, then `file` (when given; it must exist), then `SWITCHBOARD_*` variables.
    pub fn load(file: Option<&Path>) -> Result<ServerConfig> {
        let mut figment = Figment::from(Serialized::defaults(ServerConfig::default()));
        if let Some(f) = file {
            if !f.exists() {
                return Err(Error::invalid(format!(
                    "the configuration file {} does not exist",
                    f.display()
                )));
            }
            figment = figment.merge(Toml::file(f));
        }
        Self::extract(figment.merge(Env::prefixed("SWITCHBOARD_").split("__")))
    }

    fn extract(figment: Figment) -> Result<ServerConfig> {
        figment
            .extract()
            .map_err(|e| Error::invalid(format!("configuration: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API
    fn files_and_environment_layer_over_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "switchboard.toml",
                "data_dir = \"/var/lib/sb\"\nlog_format = \"json\"\n[server]\nport = 9000\n",
            )?;
            let c = ServerConfig::load(Some(Path::new("switchboard.toml"))).unwrap();
            assert_eq!(c.data_dir, PathBuf::from("/var/lib/sb"));
            assert_eq!(c.log_format, LogFormat::Json);
            assert_eq!(c.server.port, 9000);
            assert_eq!(c.server.bind, IpAddr::from([127, 0, 0, 1]));
            jail.set_env("SWITCHBOARD_SERVER__PORT", "9100");
            jail.set_env("SWITCHBOARD_DATABASE_URL", "postgres://u:p@h/db");
            let c = ServerConfig::load(Some(Path::new("switchboard.toml"))).unwrap();
            assert_eq!(c.server.port, 9100);
            assert_eq!(
                c.database_url.as_ref().unwrap().expose_secret(),
                "postgres://u:p@h/db"
            );
            // the secret never shows in Debug
            assert!(!format!("{c:?}").contains("u:p@h"));
            jail.set_env("SWITCHBOARD_SLACK__CLIENT_ID", "c1");
            jail.set_env("SWITCHBOARD_SLACK__CLIENT_SECRET", "very-secret-1");
            jail.set_env("SWITCHBOARD_SLACK__SIGNING_SECRET", "very-secret-2");
            let c = ServerConfig::load(Some(Path::new("switchboard.toml"))).unwrap();
            let slack = c.slack.as_ref().unwrap();
            assert_eq!(slack.client_id, "c1");
            assert_eq!(slack.signing_secret.expose_secret(), "very-secret-2");
            assert!(!format!("{c:?}").contains("very-secret"));
            jail.set_env("SWITCHBOARD_SERVER__PORT", "not-a-port");
            let e = ServerConfig::load(None).unwrap_err();
            assert!(e.to_string().contains("configuration"), "{e}");
            let e = ServerConfig::load(Some(Path::new("missing.toml"))).unwrap_err();
            assert!(e.to_string().contains("does not exist"));
            Ok(())
        });
    }
}
