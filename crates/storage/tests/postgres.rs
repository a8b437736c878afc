//! The conformance suite on PostgreSQL. Runs when `DATABASE_URL` points at a server (each
//! test uses its own schema); otherwise every test prints that it skipped and passes.
//!
//! ```sh
//! DATABASE_URL=postgres://switchboard:switchboard@127.0.0.1/switchboard \
//!     cargo test -p switchboard-storage --test postgres
//! ```

mod conformance;

use conformance::TestDb;

conformance_suite!(TestDb::postgres);
