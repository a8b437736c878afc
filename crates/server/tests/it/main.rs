//! In-process tests of the server's router (`tower::ServiceExt::oneshot`), on a real SQLite
//! store in a temporary directory.

mod api;
mod console;
mod deliveries;
mod imports;
mod link_account;
mod links;
mod migrate;
mod support;
mod webhooks;
