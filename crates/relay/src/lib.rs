//! # switchboard-relay
//!
//! The universal-channel engine, written against `switchboard-core`'s traits only (no adapter,
//! no storage crate). [`engine`] is the pipeline (inbox → translate → outbox → deliver) over
//! core's `Store` and the platforms' trait objects; it is made of pure building blocks, each
//! without I/O and tested on its own:
//!
//! - [`marker`]: the marker embedded in every copy we post (loop prevention, crash
//!   reconciliation through history).
//! - [`translate`]: mentions through the identity map (matched → real mention, unmatched →
//!   the display name, never a raw id) and the attribution line of a relayed message.
//! - [`split`]: a message longer than the target allows becomes several parts, cut at block,
//!   line and word boundaries, all mapped to the one origin.
//! - [`reactions`]: where a platform allows one reaction per identity, reactions relayed
//!   through one account are counted per emoji and removed only when the last reactor leaves.
//! - [`batch`]: combining queued posts of several senders into one post (each name kept) when
//!   a target channel's backlog grows past its rate limit.
//! - [`limits`]: what a target accepts (message size, daily cap) and the size estimate
//!   splitting uses.
//! - [`order`]: origin order per channel (Slack delivers out of order: order by `ts`).
//!
//! [`catchup`] replays what a channel missed (downtime, a removed subscription) through the
//! history seam into the inbox, bounded, with an outage marker.

#![warn(missing_docs)]

pub mod batch;
pub mod catchup;
pub mod engine;
pub mod limits;
pub mod marker;
pub mod order;
pub mod reactions;
pub mod split;
pub mod translate;
