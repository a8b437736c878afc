//! # switchboard-core
//!
//! The domain of Switchboard without I/O: typed IDs ([`ids`]), records ([`model`]), the
//! portable message model ([`message`]), the platform traits ([`Platform`],
//! [`ServiceAccount`], [`TeamImport`]), receiving ([`inbound`]: [`EventSink`],
//! [`WebhookReceiver`], [`Resolver`]), catch-up ([`History`]), the [`Connector`] factory, the
//! storage traits ([`store`]) and the error type
//! ([`Error`] with a [`ErrorKind`] to branch on).
//!
//! Adapters (`switchboard-msteams`, `switchboard-slack`) and storage implement these traits;
//! the relay and the server consume them through trait objects.

#![warn(missing_docs)]

pub mod connector;
pub mod error;
pub mod history;
pub mod ids;
pub mod inbound;
pub mod message;
pub mod model;
pub mod platform;
pub mod store;

pub use connector::*;
pub use error::{Error, ErrorKind, Result};
pub use history::*;
pub use ids::*;
pub use inbound::*;
pub use message::*;
pub use model::*;
pub use platform::*;
pub use store::*;

pub use async_trait::async_trait;
pub use secrecy;
