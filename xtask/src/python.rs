//! Python environments for the tasks that need Python: training (`ml/`) and the test against a
//! real Open Inference Protocol server (Seldon MLServer). Each is a venv built from a pinned
//! requirements file and rebuilt only when that file changes.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// Ensures a venv at `dir` with exactly `requirements` installed; returns its `bin/` directory.
pub(crate) fn venv(dir: &Path, requirements: &Path) -> anyhow::Result<PathBuf> {
    let wanted = std::fs::read_to_string(requirements)
        .with_context(|| format!("cannot read {}", requirements.display()))?;
    let stamp = dir.join(".requirements");
    let bin = dir.join("bin");
    if std::fs::read_to_string(&stamp).is_ok_and(|installed| installed == wanted) {
        return Ok(bin);
    }
    println!(
        "xtask: preparing {} from {}",
        dir.display(),
        requirements.display()
    );
    run(Command::new(python()?)
        .args(["-m", "venv", "--clear"])
        .arg(dir))?;
    run(Command::new(bin.join("pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(requirements))?;
    std::fs::write(&stamp, wanted).context("cannot write the venv's stamp")?;
    Ok(bin)
}

/// The machine's Python 3.
fn python() -> anyhow::Result<&'static str> {
    for candidate in ["python3", "python"] {
        let ok = Command::new(candidate)
            .args(["-c", "import sys, venv; assert sys.version_info >= (3, 10)"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Ok(candidate);
        }
    }
    bail!(
        "Python 3.10 or later with the venv module is needed (Debian: apt-get install python3-venv)"
    )
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let shown = format!("{command:?}");
    let status = command
        .status()
        .with_context(|| format!("cannot run {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}
