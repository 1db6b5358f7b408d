//! Build script: records the git commit for the `antifraud_build_info` metric.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=ANTIFRAUD_GIT_SHA");
    println!("cargo:rerun-if-changed=../../.git/HEAD");
    println!("cargo:rerun-if-changed=../../.git/refs/heads");
    // An explicit value wins (container builds have no .git); then git; then "unknown".
    let sha = std::env::var("ANTIFRAUD_GIT_SHA").ok().or_else(|| {
        Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    });
    println!(
        "cargo:rustc-env=ANTIFRAUD_GIT_SHA={}",
        sha.unwrap_or_else(|| "unknown".into())
    );
}
