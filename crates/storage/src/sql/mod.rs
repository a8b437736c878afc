//! The two backends. Both compile the same operations (the `imp` module directory, one file
//! per store) against their own sqlx driver, so SQLite and PostgreSQL share one
//! implementation and one conformance suite.

pub(crate) mod postgres;
pub(crate) mod sqlite;
