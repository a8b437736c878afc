//! All integration tests of this crate in one binary (links are the slow part of CI).

mod browser;
mod demo_cmd;
mod import_cmd;
mod link_cmd;
mod ops_cmd;
mod sandbox_cmd;
mod serve_cmd;
