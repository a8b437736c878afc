//! The storage tests, in one binary (linking is the slow part of a test build):
//!
//! - `conformance`: the reusable `&dyn Store` suite (`switchboard_storage::testing`) on
//!   SQLite (always) and PostgreSQL (when `DATABASE_URL` is set; required when `CI` is set);
//! - `sql`: checks that need raw database access, on both backends;
//! - `migrations`: data written by an older schema, migrated;
//! - `sqlite`: SQLite-only behaviour (file modes, WAL, targets).
//!
//! ```sh
//! DATABASE_URL=postgres://switchboard:switchboard@127.0.0.1/switchboard \
//!     cargo test -p switchboard-storage --test it
//! ```

mod conformance;
mod migrations;
mod sql;
mod sqlite;
mod support;
