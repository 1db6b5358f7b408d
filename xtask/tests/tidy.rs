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

/// What the domain may depend on: no framework, no I/O, nothing that ties a service reusing it to
/// our choices of HTTP server, store, metrics or command line.
const DOMAIN_MAY_DEPEND_ON: [&str; 6] = [
    "async-trait", // ports are dyn-compatible async traits (README-dev.md says why)
    "serde",       // models are (de)serialisable, for DTOs and stored answers
    "sha2",        // the payload fingerprint behind idempotency
    "thiserror",   // errors per operation
    "time",        // event time and windows
    "tracing",     // spans and events, with no subscriber: the app chooses one
];

#[test]
fn the_domain_depends_only_on_what_its_allow_list_names() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "tree",
            "-p",
            "antifraud-domain",
            "-e",
            "normal",
            "--depth",
            "1",
            "--prefix",
            "depth",
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
    let direct: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.strip_prefix('1'))
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert!(direct.contains(&"serde"), "read the tree: {tree}");
    let unexpected: Vec<_> = direct
        .iter()
        .filter(|name| !DOMAIN_MAY_DEPEND_ON.contains(name))
        .collect();
    assert!(
        unexpected.is_empty(),
        "the domain may depend only on {DOMAIN_MAY_DEPEND_ON:?}; it depends on {unexpected:?} \
         (add it to the allow-list in xtask/tests/tidy.rs with a reason, if it truly belongs)"
    );
}

#[test]
fn every_crate_folder_is_named_as_its_package() {
    for entry in std::fs::read_dir(root().join("crates")).expect("crates/") {
        let dir = entry.expect("entry").path();
        let Ok(manifest) = std::fs::read_to_string(dir.join("Cargo.toml")) else {
            continue;
        };
        let folder = dir.file_name().and_then(|n| n.to_str()).expect("UTF-8");
        let expected = format!("name = \"antifraud-{folder}\"");
        assert!(
            manifest.lines().any(|line| line.trim() == expected),
            "crates/{folder} must be the package antifraud-{folder}"
        );
    }
}

#[test]
fn plain_cargo_test_at_the_root_runs_these_checks() {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).expect("readable");
    let default_members = manifest
        .lines()
        .find(|line| line.starts_with("default-members"))
        .unwrap_or("default-members = all members");
    assert!(
        default_members.contains("all members") || default_members.contains("\"xtask\""),
        "`cargo test` at the root must build xtask, where these tests live: {default_members}"
    );
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
        // Every dependency, external ones too, comes from [workspace.dependencies]: one list of
        // versions and features for the whole workspace.
        let mut in_dependencies = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                in_dependencies = line.ends_with("dependencies]");
            } else if in_dependencies && !line.is_empty() && !line.starts_with('#') {
                assert!(
                    line.contains("workspace = true"),
                    "{}: `{line}` must come from the root [workspace.dependencies]",
                    manifest.display()
                );
            }
        }
    }
}
