//! # switchboard-core
//!
//! The domain of Switchboard without I/O: typed IDs ([`ids`]), records ([`model`]), the
//! portable message model ([`message`]), the platform traits ([`Platform`],
//! [`ServiceAccount`], [`TeamImport`]), the storage traits ([`store`]) and the error type
//! ([`Error`] with a [`ErrorKind`] to branch on).
//!
//! Adapters (`switchboard-msteams`, `switchboard-slack`) and storage implement these traits;
//! the relay and the server consume them through trait objects.

#![warn(missing_docs)]

pub mod error;
pub mod ids;
pub mod message;
pub mod model;
pub mod platform;
pub mod store;

pub use error::{Error, ErrorKind, Result};
pub use ids::*;
pub use message::*;
pub use model::*;
pub use platform::*;
pub use store::*;

pub use async_trait::async_trait;
pub use secrecy;
