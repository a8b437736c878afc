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
//! ```

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

/// Everything `serve` reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerConfig {
    /// Data directory: the SQLite file and the master key file.
    pub data_dir: PathBuf,
    /// A PostgreSQL URL (several replicas share one); SQLite in `data_dir` when absent.
    #[serde(skip_serializing)]
    pub database_url: Option<SecretString>,
    /// Log format.
    pub log_format: LogFormat,
    /// The listener.
    pub server: ListenConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            data_dir: PathBuf::from("./switchboard-data"),
            database_url: None,
            log_format: LogFormat::Human,
            server: ListenConfig::default(),
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
            jail.set_env("SWITCHBOARD_SERVER__PORT", "not-a-port");
            let e = ServerConfig::load(None).unwrap_err();
            assert!(e.to_string().contains("configuration"), "{e}");
            let e = ServerConfig::load(Some(Path::new("missing.toml"))).unwrap_err();
            assert!(e.to_string().contains("does not exist"));
            Ok(())
        });
    }
}
