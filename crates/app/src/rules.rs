//! The rule file the settings name: loaded at start-up, and checked by `antifraud rules check`
//! for the CI pipelines of rule authors.

use std::fmt::Write as _;
use std::path::Path;

use antifraud_domain::Mode;
use antifraud_rules::CelRules;

/// Reads and checks the rule file at `path`.
///
/// # Errors
/// One line: the file cannot be read, or the first problem in it, naming the rule.
pub fn load(path: &Path) -> Result<CelRules, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    CelRules::load(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// `antifraud rules check FILE`: what the file defines, or why it is refused.
///
/// # Errors
/// As [`load`].
pub fn check(path: &Path) -> Result<String, String> {
    let rules = load(path)?;
    let file = rules.file();
    let mut out = String::new();
    let _ = writeln!(out, "{}: version {}", path.display(), file.version);
    let values: usize = file.lists.values().map(|l| l.len()).sum();
    let _ = writeln!(out, "lists: {} ({values} values)", file.lists.len());
    for (name, list) in &file.lists {
        let _ = writeln!(out, "  {name}: {} values", list.len());
    }
    let shadow = file.rules.iter().filter(|r| r.mode == Mode::Shadow).count();
    let _ = writeln!(
        out,
        "rules: {} ({} active, {shadow} shadow)",
        file.rules.len(),
        file.rules.len() - shadow
    );
    for rule in &file.rules {
        let _ = writeln!(
            out,
            "  {} [{}, {}] reason {}: {}",
            rule.id,
            rule.mode.as_str(),
            rule.action,
            rule.reason,
            rule.when.source()
        );
    }
    Ok(out)
}
