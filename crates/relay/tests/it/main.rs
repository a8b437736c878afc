//! The relay pipeline end to end over a real SQLite store, with recording platforms.

mod pipeline;
