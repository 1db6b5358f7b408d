//! Tidy checks on the repository itself, run by plain `cargo test`: the conventions that
//! reviews would otherwise have to remember.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

fn files_with_extension(dir: &Path, extension: &str, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            if path.file_name().is_some_and(|name| name != "target") {
                files_with_extension(&path, extension, found);
            }
        } else if path.extension().is_some_and(|e| e == extension) {
            found.push(path);
        }
    }
}

fn rust_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["crates", "xtask"] {
        files_with_extension(&root().join(dir), "rs", &mut files);
    }
    assert!(files.len() > 10, "found the sources");
    files
}

#[test]
fn every_module_starts_with_a_doc_comment() {
    let undocumented: Vec<_> = rust_files()
        .into_iter()
        .filter(|path| {
            let text = std::fs::read_to_string(path).expect("readable");
            !text.trim_start().starts_with("//!")
        })
        .collect();
    assert!(
        undocumented.is_empty(),
        "add a `//!` line at the top of: {undocumented:#?}"
    );
}

#[test]
fn the_domain_depends_on_no_framework_or_io_crate() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "tree",
            "-p",
            "antifraud-domain",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--locked",
        ])
        .current_dir(root())
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8(output.stdout).expect("UTF-8");
    assert!(tree.contains("antifraud-domain"), "{tree}");
    for banned in [
        "actix", "fred", "tokio", "hyper", "reqwest", "anyhow", "mockall",
    ] {
        let found: Vec<_> = tree
            .lines()
            .filter(|line| line.starts_with(banned))
            .collect();
        assert!(
            found.is_empty(),
            "the domain must not depend on {banned}: {found:?}"
        );
    }
}

#[test]
fn every_crate_uses_the_workspace_lints_and_dependencies() {
    let mut manifests = Vec::new();
    files_with_extension(&root().join("crates"), "toml", &mut manifests);
    manifests.push(root().join("xtask/Cargo.toml"));
    for manifest in manifests.iter().filter(|p| p.ends_with("Cargo.toml")) {
        let text = std::fs::read_to_string(manifest).expect("readable");
        assert!(
            text.contains("[lints]\nworkspace = true"),
            "{} must have `[lints] workspace = true`",
            manifest.display()
        );
        assert!(
            !text.contains("path = \"../"),
            "{}: internal crates are listed once, in the root [workspace.dependencies]",
            manifest.display()
        );
    }
}
