//! All integration tests of this crate in one binary (links are the slow part of CI).

mod account;
mod common;
mod error_matrix;
mod graph_client;
mod import;
mod messages;
mod oauth;
mod receiving;
mod sandbox;
mod sandbox_support;
