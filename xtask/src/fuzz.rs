//! `cargo xtask fuzz`: the fuzz targets (fuzz/: the request body, the ONNX loader) under
//! libFuzzer, each for a bounded time.
//!
//! cargo fuzz builds with sanitizer flags that only nightly compilers accept; this project pins
//! one stable toolchain, so the task sets `RUSTC_BOOTSTRAP=1` for the fuzz build only, which
//! lets the pinned compiler accept them. The build instruments every dependency (about four
//! minutes on two cores the first time); runs after that start at once.

use std::process::Command;

use anyhow::{Context, bail};

use crate::{cargo_path, ensure_cargo_tool, workspace_root};

/// The cargo-fuzz that the task installs when none is present.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// One fuzz target: a file in fuzz/fuzz_targets/, and the committed inputs it starts from.
struct Target {
    name: &'static str,
    /// Directories of seed inputs, relative to the workspace root (read, never written).
    seeds: &'static [&'static str],
}

/// Every target, run in turn when none is named.
const TARGETS: [Target; 2] = [
    Target {
        name: "request_body",
        seeds: &["fuzz/seeds/request_body"],
    },
    // A model file is input too: seeded with the shipped model and the parity fixtures.
    Target {
        name: "onnx_model",
        seeds: &["crates/model/models", "crates/model/tests/fixtures"],
    },
];

/// Longest time one input may take before libFuzzer reports it as a hang.
const HANG_AFTER_SECONDS: u64 = 10;

#[derive(clap::Args)]
pub(crate) struct Fuzz {
    /// How long to fuzz each target, in seconds.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// The fuzz target (request_body or onnx_model); all of them, in turn, when omitted.
    #[arg(long)]
    target: Option<String>,
}

impl Fuzz {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        ensure_cargo_tool("fuzz", "cargo-fuzz", CARGO_FUZZ_VERSION)?;
        let targets: Vec<&Target> = match &self.target {
            None => TARGETS.iter().collect(),
            Some(name) => vec![TARGETS.iter().find(|t| t.name == name).with_context(|| {
                let names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
                format!("--target: one of {}", names.join(", "))
            })?],
        };
        for target in targets {
            self.fuzz(target)?;
        }
        Ok(())
    }

    fn fuzz(&self, target: &Target) -> anyhow::Result<()> {
        let fuzz_dir = workspace_root().join("fuzz");
        // New inputs go to the first directory (ignored by git); the committed seeds are read.
        let corpus = fuzz_dir.join("corpus").join(target.name);
        std::fs::create_dir_all(&corpus).context("creating the corpus directory")?;
        let artifacts = fuzz_dir.join("artifacts").join(target.name);
        std::fs::create_dir_all(&artifacts).context("creating the artifacts directory")?;
        // Built first, so that a build failure is not reported as a finding.
        let build = [
            "fuzz".to_owned(),
            "build".to_owned(),
            "--fuzz-dir".to_owned(),
            fuzz_dir.display().to_string(),
            target.name.to_owned(),
        ];
        let built = cargo_fuzz(&build)?;
        if !built.success() {
            bail!("cannot build the fuzz target {} ({built})", target.name);
        }
        let mut args = vec![
            "fuzz".to_owned(),
            "run".to_owned(),
            "--fuzz-dir".to_owned(),
            fuzz_dir.display().to_string(),
            target.name.to_owned(),
            corpus.display().to_string(),
        ];
        args.extend(
            target
                .seeds
                .iter()
                .map(|dir| workspace_root().join(dir).display().to_string()),
        );
        args.extend([
            "--".to_owned(),
            format!("-max_total_time={}", self.seconds),
            format!("-timeout={HANG_AFTER_SECONDS}"),
            // Findings are written here and named in libFuzzer's output.
            format!("-artifact_prefix={}/", artifacts.display()),
        ]);
        let dictionary = fuzz_dir.join(format!("{}.dict", target.name));
        if dictionary.exists() {
            args.push(format!("-dict={}", dictionary.display()));
        }
        let status = cargo_fuzz(&args)?;
        if !status.success() {
            bail!(
                "the fuzzer found a failing input ({status}): see fuzz/artifacts/{name}/; replay \
                 it with `RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz {name} <file>`",
                name = target.name
            );
        }
        println!(
            "fuzz: {} s of {} without a finding",
            self.seconds, target.name
        );
        Ok(())
    }
}

/// Runs `cargo ARGS` in fuzz/, with the pinned stable compiler allowed the nightly-only flags
/// cargo fuzz passes (see the module's docs).
fn cargo_fuzz(args: &[String]) -> anyhow::Result<std::process::ExitStatus> {
    println!("$ RUSTC_BOOTSTRAP=1 cargo {}", args.join(" "));
    Command::new(cargo_path())
        .args(args)
        .env("RUSTC_BOOTSTRAP", "1")
        .current_dir(workspace_root().join("fuzz"))
        .status()
        .context("cannot run cargo fuzz")
}
