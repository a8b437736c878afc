//! The `switchboard` command, for the end-to-end tests to run as a process.

use clap::Parser;

fn main() -> std::process::ExitCode {
    switchboard_cli::main(switchboard_cli::Cli::parse())
}
