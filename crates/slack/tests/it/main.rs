//! All integration tests of this crate in one binary (links are the slow part of CI).

mod common;
mod hostile_input;
mod oauth;
mod sandbox;
mod socket_mode;
mod spec_conformance;
mod web_api;
