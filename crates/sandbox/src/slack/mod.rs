//! Emulator placeholder: replaced by the real implementation.

use axum::Router;
use serde_json::{Value, json};

use crate::{Seed, SharedWorld};

#[derive(Debug)]
pub(crate) struct SlackState {}

impl SlackState {
    pub fn new(_seed: Seed) -> Self {
        SlackState {}
    }
    pub fn ready_info(&self) -> Value {
        json!({})
    }
    pub fn seed_json(&self) -> Value {
        json!({})
    }
}

pub(crate) fn routes() -> Router<SharedWorld> {
    Router::new()
}

pub(crate) fn control_routes() -> Router<SharedWorld> {
    Router::new()
}

pub(crate) fn spawn_background(_world: SharedWorld) {}
