//! Processes the tasks start for themselves: on free loopback ports, waited for, and killed by
//! pid when dropped.

use std::fs::OpenOptions;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};

/// A child process, killed by pid and reaped when dropped.
pub(crate) struct Started {
    name: &'static str,
    child: Child,
    /// SIGTERM first when dropped: for a process that must stop its own children (uvicorn's
    /// master stops its workers on SIGTERM, and orphans them on SIGKILL).
    graceful: bool,
}

impl Started {
    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn spawn(name: &'static str, command: &mut Command) -> anyhow::Result<Started> {
        Self::start(name, command, Stdio::null(), Stdio::null())
    }

    /// [`Started::spawn`], with the process's output appended to `log`.
    pub(crate) fn spawn_logged(
        name: &'static str,
        command: &mut Command,
        log: &Path,
    ) -> anyhow::Result<Started> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        Self::start(name, command, file.try_clone()?.into(), file.into())
    }

    fn start(
        name: &'static str,
        command: &mut Command,
        stdout: Stdio,
        stderr: Stdio,
    ) -> anyhow::Result<Started> {
        let child = command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        Ok(Started {
            name,
            child,
            graceful: false,
        })
    }

    /// Waits for the process to end by itself; an error when it failed.
    pub(crate) fn wait(mut self) -> anyhow::Result<()> {
        let status = self.child.wait()?;
        ensure!(status.success(), "{} exited with {status}", self.name);
        Ok(())
    }

    /// Asks for SIGTERM, then up to 5 s, before SIGKILL when dropped.
    pub(crate) fn graceful(mut self) -> Started {
        self.graceful = true;
        self
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if self.graceful {
            let pid = self.child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                pause(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        println!("xtask: stopped {} (pid {})", self.name, self.child.id());
    }
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub(crate) fn wait_for_port(port: u16) -> anyhow::Result<()> {
    wait_for_port_within(port, Duration::from_secs(20))
}

/// [`wait_for_port`] for a process that may take longer to start (one that installs first).
pub(crate) fn wait_for_port_within(port: u16, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        ensure!(
            Instant::now() < deadline,
            "nothing listens on port {port} after {within:?}"
        );
        pause(Duration::from_millis(50));
    }
    Ok(())
}

#[expect(
    clippy::disallowed_methods,
    reason = "a synchronous task runner, not an async worker"
)]
pub(crate) fn pause(duration: Duration) {
    std::thread::sleep(duration);
}

/// CPU time (user and system) a process and all its descendants have used, in seconds, from
/// /proc (clock ticks of 1/100 s, Linux's USER_HZ).
pub(crate) fn tree_cpu_seconds(pid: u32) -> f64 {
    let own = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // Fields after the command name, which may hold spaces: state is the first, utime
            // the 12th and stime the 13th.
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0) as f64
        / 100.0;
    let children: f64 = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|child| child.parse().ok())
                .collect::<Vec<u32>>()
        })
        .map(tree_cpu_seconds)
        .sum();
    own + children
}

/// A memory figure of a process (`VmRSS:`, `VmHWM:`), from /proc.
pub(crate) fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The pid of the `redis-server` on `port`, as its `INFO server` says.
pub(crate) fn redis_pid(port: u16) -> anyhow::Result<u32> {
    let info = antifraud_testkit::RedisServer::command_on(port, &["INFO", "server"])?;
    info.lines()
        .find_map(|line| line.strip_prefix("process_id:"))
        .and_then(|pid| pid.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("INFO server names no process_id"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// User and system ticks of one process, without its children.
    fn own_ticks(pid: u32) -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
                Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
            })
            .unwrap_or(0)
    }

    #[test]
    fn the_cpu_of_a_process_tree_counts_its_children() {
        // A child of this test process that burns CPU, then sleeps in its place (no grandchild
        // to leave behind).
        let mut command = Command::new("sh");
        command.args([
            "-c",
            "i=0; while [ $i -lt 3000000 ]; do i=$((i+1)); done; exec sleep 10",
        ]);
        let child = Started::spawn("burner", &mut command).expect("sh runs");
        let deadline = Instant::now() + Duration::from_secs(30);
        while own_ticks(child.pid()) < 10 {
            assert!(Instant::now() < deadline, "the child burns 0.1 s of CPU");
            pause(Duration::from_millis(50));
        }
        // Read the parts before the whole: each only grows.
        let me = std::process::id();
        let own_s = own_ticks(me) as f64 / 100.0;
        let child_s = own_ticks(child.pid()) as f64 / 100.0;
        let tree_s = tree_cpu_seconds(me);
        assert!(
            tree_s >= own_s + child_s,
            "the tree ({tree_s} s) holds this process ({own_s} s) and its child ({child_s} s)"
        );
    }
}
