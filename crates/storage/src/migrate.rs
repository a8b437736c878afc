//! Migrations, embedded in the binary and applied on start (sqlx's migrator: versioned,
//! checksummed, locked on PostgreSQL so replicas starting together apply them once).

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use sqlx::error::BoxDynError;
use sqlx::migrate::{Migrate, MigrateError, Migration, MigrationSource, MigrationType, Migrator};
use switchboard_core::{Error, ErrorKind, Result};

/// (version, description, SQL)
pub(crate) type Embedded = &'static [(i64, &'static str, &'static str)];

/// SQLite migrations.
pub(crate) const SQLITE: Embedded = &[
    (
        1,
        "initial",
        include_str!("../migrations/sqlite/0001_initial.sql"),
    ),
    (
        2,
        "typed edges",
        include_str!("../migrations/sqlite/0002_typed_edges.sql"),
    ),
    (
        3,
        "identity separations",
        include_str!("../migrations/sqlite/0003_identity_separations.sql"),
    ),
    (
        4,
        "relay state",
        include_str!("../migrations/sqlite/0004_relay_state.sql"),
    ),
    (
        5,
        "copy accounts",
        include_str!("../migrations/sqlite/0005_copy_accounts.sql"),
    ),
    (
        6,
        "user accounts",
        include_str!("../migrations/sqlite/0006_user_accounts.sql"),
    ),
];

/// PostgreSQL migrations.
pub(crate) const POSTGRES: Embedded = &[
    (
        1,
        "initial",
        include_str!("../migrations/postgres/0001_initial.sql"),
    ),
    (
        2,
        "typed edges",
        include_str!("../migrations/postgres/0002_typed_edges.sql"),
    ),
    (
        3,
        "identity separations",
        include_str!("../migrations/postgres/0003_identity_separations.sql"),
    ),
    (
        4,
        "relay state",
        include_str!("../migrations/postgres/0004_relay_state.sql"),
    ),
    (
        5,
        "copy accounts",
        include_str!("../migrations/postgres/0005_copy_accounts.sql"),
    ),
    (
        6,
        "user accounts",
        include_str!("../migrations/postgres/0006_user_accounts.sql"),
    ),
];

#[derive(Debug)]
struct Source(Embedded);

impl<'s> MigrationSource<'s> for Source {
    fn resolve(
        self,
    ) -> Pin<Box<dyn Future<Output = std::result::Result<Vec<Migration>, BoxDynError>> + Send + 's>>
    {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|(version, description, sql)| {
                    Migration::new(
                        *version,
                        Cow::Borrowed(*description),
                        MigrationType::Simple,
                        Cow::Borrowed(*sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// The migrator for `migrations`.
async fn migrator(migrations: Embedded) -> Result<Migrator> {
    Migrator::new(Source(migrations))
        .await
        .map_err(|e| Error::new(ErrorKind::Storage, format!("loading migrations: {e}")))
}

/// Applies `migrations` through `pool`.
pub(crate) async fn run<DB>(pool: &sqlx::Pool<DB>, migrations: Embedded) -> Result<()>
where
    DB: sqlx::Database,
    DB::Connection: Migrate,
{
    migrator(migrations).await?.run(pool).await.map_err(error)
}

/// Applies `migrations` on one connection.
pub(crate) async fn run_on<DB>(conn: &mut DB::Connection, migrations: Embedded) -> Result<()>
where
    DB: sqlx::Database,
    DB::Connection: Migrate,
{
    migrator(migrations)
        .await?
        .run_direct(conn)
        .await
        .map_err(error)
}

/// A failed migration run, said for the operator.
fn error(e: MigrateError) -> Error {
    let message = match &e {
        MigrateError::VersionMissing(v) => format!(
            "the database was migrated by a newer Switchboard (migration {v} is unknown to this \
             version); upgrade Switchboard or use another database"
        ),
        MigrateError::VersionMismatch(v) => format!(
            "migration {v} applied to the database differs from this version's; the database \
             was written by a different build"
        ),
        other => format!("applying migrations: {other}"),
    };
    Error::new(ErrorKind::Storage, message).with_source(e)
}
