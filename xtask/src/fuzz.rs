//! `cargo xtask fuzz`: the request-body fuzz target (fuzz/) under libFuzzer for a bounded time.
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

#[derive(clap::Args)]
pub(crate) struct Fuzz {
    /// How long to fuzz, in seconds.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// The fuzz target (a file in fuzz/fuzz_targets/).
    #[arg(long, default_value = "request_body")]
    target: String,
}

impl Fuzz {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        ensure_cargo_tool("fuzz", "cargo-fuzz", CARGO_FUZZ_VERSION)?;
        let fuzz_dir = workspace_root().join("fuzz");
        // New inputs go to the first directory (ignored by git); the committed seeds are read.
        let corpus = fuzz_dir.join("corpus").join(&self.target);
        let seeds = fuzz_dir.join("seeds").join(&self.target);
        std::fs::create_dir_all(&corpus).context("creating the corpus directory")?;
        let dictionary = fuzz_dir.join(format!("{}.dict", self.target));
        let mut args = vec![
            "fuzz".to_owned(),
            "run".to_owned(),
            "--fuzz-dir".to_owned(),
            fuzz_dir.display().to_string(),
            self.target.clone(),
            corpus.display().to_string(),
            seeds.display().to_string(),
            "--".to_owned(),
            format!("-max_total_time={}", self.seconds),
            // Findings are written here and named in libFuzzer's output.
            format!(
                "-artifact_prefix={}/",
                fuzz_dir.join("artifacts").join(&self.target).display()
            ),
        ];
        if dictionary.exists() {
            args.push(format!("-dict={}", dictionary.display()));
        }
        std::fs::create_dir_all(fuzz_dir.join("artifacts").join(&self.target))
            .context("creating the artifacts directory")?;
        println!("$ RUSTC_BOOTSTRAP=1 cargo {}", args.join(" "));
        let status = Command::new(cargo_path())
            .args(&args)
            .env("RUSTC_BOOTSTRAP", "1")
            .current_dir(&fuzz_dir)
            .status()
            .context("cannot run cargo fuzz")?;
        if !status.success() {
            bail!(
                "the fuzzer found a failing input ({status}): see fuzz/artifacts/{}/; replay it \
                 with `RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz {} <file>`",
                self.target,
                self.target
            );
        }
        println!(
            "fuzz: {} s of {} without a finding",
            self.seconds, self.target
        );
        Ok(())
    }
}
