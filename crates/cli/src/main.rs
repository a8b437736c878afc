//! The `switchboard` binary.

use clap::Parser;

fn main() -> std::process::ExitCode {
    switchboard_cli::main(switchboard_cli::Cli::parse())
}
