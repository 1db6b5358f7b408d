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
        Ok(Started { name, child })
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        println!("xtask: stopped {} (pid {})", self.name, self.child.id());
    }
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub(crate) fn wait_for_port(port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        ensure!(
            Instant::now() < deadline,
            "nothing listens on port {port} after 20 s"
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
