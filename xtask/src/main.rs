//! `cargo xtask ci | bench`: project automation; the binary has no dependencies.
//!
//! `cargo test -p xtask` also runs the tidy test (`src/tidy.rs`): the architecture's dependency
//! rules and the docs' file references (test-only, with the `toml` parser as a dev-dependency).

use std::process::{Command, ExitCode};

#[cfg(test)]
mod tidy;

fn run(program: &str, args: &[&str]) -> bool {
    eprintln!("$ {program} {}", args.join(" "));
    match Command::new(program).args(args).status() {
        Ok(s) => s.success(),
        Err(e) => {
            eprintln!("failed to run {program}: {e}");
            false
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    let ok = match args.first().map(String::as_str) {
        Some("ci") => {
            run("cargo", &["fmt", "--all", "--", "--check"])
                && run(
                    "cargo",
                    &[
                        "clippy",
                        "--workspace",
                        "--all-targets",
                        "--",
                        "-D",
                        "warnings",
                    ],
                )
                && run("cargo", &["test", "--workspace"])
                && run("cargo", &["doc", "--workspace", "--no-deps"])
        }
        Some("bench") => {
            let mut a = vec!["bench", "--workspace"];
            a.extend(rest.iter().copied());
            run("cargo", &a)
        }
        _ => {
            eprintln!("usage: cargo xtask <ci | bench [ARGS]>");
            false
        }
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
