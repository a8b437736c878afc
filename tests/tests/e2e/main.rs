//! End-to-end tests: the `switchboard` server and sandbox as processes over real HTTP, on
//! SQLite, judged from the platforms' own state.

mod faults;
mod relay;
mod support;
