//! The two backends. Both compile the same operations (`imp.rs`) against their own sqlx
//! driver, so SQLite and PostgreSQL share one implementation and one conformance suite.

pub(crate) mod postgres;
pub(crate) mod sqlite;
