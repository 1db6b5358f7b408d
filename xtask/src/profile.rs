//! Where a process's CPU time goes, for `cargo xtask bench --perf`: `perf record` on a pid for a
//! while, then each sample given to a component of the service.
//!
//! Call stacks are unwound from DWARF (the release profile keeps debug info; the build has no
//! frame pointers), so a sample in `memcpy` goes to whoever called it: the innermost frame of a
//! known component takes the sample (allocation and the kernel are components of their own).
//! Redis is profiled flat, by function (Debian's build has neither frame pointers nor debug
//! info).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use crate::process::Started;

/// Samples per second per CPU: a few thousand samples of a service using a tenth of a core for
/// seconds, and DWARF stacks (16 KiB each) in the tens of megabytes.
const FREQUENCY: &str = "1999";
/// Redis's functions below this share are left out.
const PERCENT_LIMIT: &str = "1.5";

/// The service's components, each by the paths its functions start with, in the order a frame
/// is tried. The first frame (innermost first) that belongs to one takes the sample.
const COMPONENTS: [(&str, &[&str]); 12] = [
    (
        "allocation (malloc, free)",
        &[
            "malloc",
            "_int_malloc",
            "_int_free",
            "__GI___libc_malloc",
            "__GI___libc_free",
            "__libc_calloc",
            "__libc_realloc",
            "cfree",
            "realloc",
            "malloc_consolidate",
            "unlink_chunk",
        ],
    ),
    ("model (tree walk)", &["antifraud_model::"]),
    ("features", &["antifraud_domain::features"]),
    ("embedded store", &["antifraud_store_memory::"]),
    (
        "Redis client (fred, script arguments)",
        &["fred::", "antifraud_store_redis::", "redis_protocol::"],
    ),
    ("JSON (serde_json)", &["serde_json::", "serde::"]),
    ("metrics (prometheus)", &["prometheus::"]),
    (
        "tracing",
        &["tracing::", "tracing_core::", "tracing_subscriber::"],
    ),
    ("validation and scoring (domain)", &["antifraud_domain::"]),
    ("handler and middlewares (app)", &["antifraud_app::"]),
    (
        "HTTP (actix, http)",
        &[
            "actix_http::",
            "actix_web::",
            "actix_server::",
            "actix_router::",
            "actix_service::",
            "http::",
            "httparse::",
            "bytes::",
        ],
    ),
    ("async runtime (tokio)", &["tokio::", "mio::", "actix_rt::"]),
];
/// A sample whose innermost frame is in the kernel.
const KERNEL: &str = "kernel (syscalls, network, scheduling)";
/// A sample no component claims.
const OTHER: &str = "other (std, libc, unresolved)";

/// A recording in progress.
pub(crate) struct Recording {
    data: PathBuf,
    stacks: bool,
    perf: Started,
}

/// Whether `perf` can record here (installed, and allowed to sample other processes).
pub(crate) fn available() -> bool {
    Command::new("perf")
        .args(["record", "-e", "cpu-clock", "-o", "/dev/null", "--", "true"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Starts recording `pid` for `seconds` into `data`, with call stacks when `stacks`.
pub(crate) fn record(
    pid: u32,
    seconds: u64,
    stacks: bool,
    data: &Path,
) -> anyhow::Result<Recording> {
    let mut command = Command::new("perf");
    command.args(["record", "-e", "cpu-clock", "-F", FREQUENCY, "-q"]);
    if stacks {
        command.args(["--call-graph", "dwarf,16384"]);
    }
    command
        .args(["-p", &pid.to_string(), "-o"])
        .arg(data)
        .args(["--", "sleep", &seconds.to_string()]);
    Ok(Recording {
        data: data.to_owned(),
        stacks,
        perf: Started::spawn("perf", &mut command)?,
    })
}

impl Recording {
    /// Waits for the recording to end, then reads the shares, largest first: of the service's
    /// components with call stacks, of functions without.
    pub(crate) fn report(self) -> anyhow::Result<Vec<(f64, String)>> {
        self.perf.wait().context("perf record")?;
        let mut command = Command::new("perf");
        if self.stacks {
            command
                .args(["script", "-F", "ip,sym", "-i"])
                .arg(&self.data);
        } else {
            command.args([
                "report",
                "--stdio",
                "-q",
                "--sort",
                "symbol",
                "--no-children",
            ]);
            command
                .args(["--percent-limit", PERCENT_LIMIT, "-i"])
                .arg(&self.data);
        }
        let output = command.output().context("perf script / report")?;
        anyhow::ensure!(
            output.status.success(),
            "perf failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8_lossy(&output.stdout);
        Ok(if self.stacks {
            components(&text)
        } else {
            functions(&text)
        })
    }
}

/// `perf script -F ip,sym`: samples separated by blank lines, one frame a line (address, then
/// symbol), innermost first. Each sample goes to a component; shares in per cent.
fn components(text: &str) -> Vec<(f64, String)> {
    let mut counts: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    let mut total = 0u64;
    for sample in text.split("\n\n") {
        let frames: Vec<(&str, &str)> = sample
            .lines()
            .filter_map(|line| line.trim().split_once(' '))
            .collect();
        let Some(&(leaf_address, _)) = frames.first() else {
            continue;
        };
        total += 1;
        let component = if leaf_address.len() == 16 && leaf_address.starts_with("ffff") {
            KERNEL
        } else {
            frames
                .iter()
                .find_map(|(_, symbol)| {
                    let symbol = symbol.trim_start_matches('<');
                    COMPONENTS
                        .iter()
                        .find(|(_, paths)| paths.iter().any(|p| symbol.starts_with(p)))
                        .map(|(name, _)| *name)
                })
                .unwrap_or(OTHER)
        };
        *counts.entry(component).or_default() += 1;
    }
    let mut shares: Vec<(f64, String)> = counts
        .into_iter()
        .map(|(name, n)| (n as f64 * 100.0 / total.max(1) as f64, name.to_owned()))
        .collect();
    shares.sort_by(|a, b| b.0.total_cmp(&a.0));
    shares
}

/// Lines of `perf report --stdio -q --sort symbol --no-children`: a share, the symbol's kind
/// (`[.]` user, `[k]` kernel) and its name, padded with `-` columns.
fn functions(text: &str) -> Vec<(f64, String)> {
    let mut functions: Vec<(f64, String)> = text
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let share: f64 = fields.next()?.strip_suffix('%')?.parse().ok()?;
            let kind = fields.next()?;
            let name: Vec<&str> = fields.take_while(|field| *field != "-").collect();
            let name = shorten(&name.join(" "));
            Some((
                share,
                if kind == "[k]" {
                    format!("{name} (kernel)")
                } else {
                    name
                },
            ))
        })
        .collect();
    functions.sort_by(|a, b| b.0.total_cmp(&a.0));
    functions
}

/// A Rust symbol without its generic arguments and hash, so a table row stays readable.
fn shorten(name: &str) -> String {
    let mut out = String::new();
    let mut depth = 0usize;
    for c in name.chars() {
        match c {
            '<' => depth += 1,
            '>' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    let out = match out.rfind("::h") {
        Some(at) if out[at + 3..].chars().all(|c| c.is_ascii_hexdigit()) => out[..at].to_owned(),
        _ => out,
    };
    out.chars().take(110).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_sample_goes_to_the_innermost_frame_of_a_component() {
        let script = "\n\
            \t  ac4533 scores (inlined)\n\
            \t  ac881d antifraud_model::onnx::tree::TreeEnsemble::classify\n\
            \t  9731f5 <antifraud_app::model::ReloadableModel as antifraud_domain::FraudModel>::predict\n\
            \n\
            \t  11aa00 __memcpy_avx512_unaligned_erms (inlined)\n\
            \t  11ab00 serde_json::de::from_slice\n\
            \t  11ac00 antifraud_app::routes::transactions::score\n\
            \n\
            \t  22aa00 _int_malloc\n\
            \t  22ab00 serde_json::de::from_slice\n\
            \n\
            \tffffffff8a001000 entry_SYSCALL_64\n\
            \t  33aa00 tokio::runtime::park\n\
            \n\
            \t  44aa00 [unknown]\n";
        assert_eq!(
            components(script),
            vec![
                (20.0, "JSON (serde_json)".to_owned()),
                (20.0, "allocation (malloc, free)".to_owned()),
                (20.0, KERNEL.to_owned()),
                (20.0, "model (tree walk)".to_owned()),
                (20.0, OTHER.to_owned()),
            ]
        );
    }

    #[test]
    fn flat_reports_are_read_without_their_padding() {
        let flat = "    20.00%  [.] luaV_execute   -      -   \n    30.00%  [k] tcp_sendmsg\n";
        assert_eq!(
            functions(flat),
            vec![
                (30.0, "tcp_sendmsg (kernel)".to_owned()),
                (20.0, "luaV_execute".to_owned()),
            ]
        );
    }

    #[test]
    fn symbols_lose_generics_and_hashes() {
        assert_eq!(
            shorten("core::ptr::drop_in_place<alloc::vec::Vec<u8>>::h0123456789abcdef"),
            "core::ptr::drop_in_place"
        );
        assert_eq!(shorten("tokio::runtime::park"), "tokio::runtime::park");
    }
}
