//! `cargo xtask`: the project's one task runner. Each task is a small struct with a `run` method.
//!
//! - `cargo xtask lint`: rustfmt check and clippy on every target with warnings denied.
//! - `cargo xtask test`: the whole test suite (nextest when installed, plus doc tests).

// This binary owns its terminal: it reports to the developer directly.
#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "antifraud's development tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// rustfmt check and clippy on all targets with warnings denied.
    Lint(Lint),
    /// The whole test suite: unit, conformance, API and doc tests.
    Test(Test),
}

fn main() -> ExitCode {
    let result = match Cli::parse().task {
        Task::Lint(lint) => lint.run(),
        Task::Test(test) => test.run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[derive(clap::Args)]
struct Lint {}

impl Lint {
    fn run(self) -> anyhow::Result<()> {
        cargo(&["fmt", "--all", "--", "--check"])?;
        // Warnings are denied here, not in RUSTFLAGS, so toggling lint does not rebuild everything.
        cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ])?;
        println!("lint: clean");
        Ok(())
    }
}

#[derive(clap::Args)]
struct Test {
    /// Arguments passed on to the test runner (a filter, for example).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

impl Test {
    fn run(self) -> anyhow::Result<()> {
        let extra: Vec<&str> = self.args.iter().map(String::as_str).collect();
        // nextest does not run doc tests; they are part of the suite. They run first so that the
        // runner's summary of the whole suite is the last thing printed.
        if extra.is_empty() {
            cargo(&["test", "--workspace", "--locked", "--doc"])?;
        }
        if has_nextest() {
            let mut args = vec![
                "nextest",
                "run",
                "--workspace",
                "--locked",
                "--no-fail-fast",
            ];
            args.extend(&extra);
            cargo(&args)
        } else {
            println!("test: cargo-nextest not found, using cargo test");
            let mut args = vec!["test", "--workspace", "--locked", "--no-fail-fast"];
            args.extend(&extra);
            cargo(&args)
        }
    }
}

fn has_nextest() -> bool {
    Command::new(cargo_path())
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|output| output.status.success())
}

/// Runs cargo at the workspace root, failing when it fails.
fn cargo(args: &[&str]) -> anyhow::Result<()> {
    println!("$ cargo {}", args.join(" "));
    let status = Command::new(cargo_path())
        .args(args)
        .current_dir(workspace_root())
        .status()
        .with_context(|| format!("cannot run cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// The cargo that runs us, so the pinned toolchain is used throughout.
fn cargo_path() -> PathBuf {
    std::env::var_os("CARGO").map_or_else(|| "cargo".into(), PathBuf::from)
}

fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
}
