//! All integration tests of this crate in one binary (links are the slow part of CI).

mod control_limits;
mod msgraph_sdk;
mod msteams_graph;
mod msteams_identity;
mod msteams_notifications;
mod msteams_paging;
mod msteams_support;
mod slack_api;
mod slack_events;
mod slack_oauth;
mod slack_sdk;
mod slack_support;
