//! Child processes and progress: commands that must succeed, background
//! servers killed (by their pid) when their guard drops, and Ctrl-C turned
//! into an error so that every guard on the way out still cleans up.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

/// One line of progress on stderr, prefixed so it stands out from what the
/// tools print.
macro_rules! say {
    ($($arg:tt)*) => { eprintln!("bench: {}", format_args!($($arg)*)) };
}
pub(crate) use say;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// SIGINT/SIGTERM only set a flag: the run stops at the next check with an
/// error, and the guards remove namespaces, links, pins and the daemon on
/// the way out (a default handler would kill us with everything in place).
pub fn install_interrupt_handler() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe.
        unsafe { libc::signal(signal, on_signal as *const () as libc::sighandler_t) };
    }
}

/// Fails once the user asked us to stop; called between measurements.
pub fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// Short, name-friendly rendering of a number (pids in link names, which
/// are limited to 15 bytes).
pub fn base36(mut n: u32) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII digits")
}

/// `cmd` as one would type it, for error messages.
pub fn show(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` to completion and returns its stdout; fails with its stderr
/// unless it exits 0.
pub fn output(cmd: &mut Command) -> Result<String> {
    let shown = show(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start `{shown}`: is it installed?"))?;
    if !out.status.success() {
        bail!(
            "`{shown}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `cmd` with `input` on stdin; returns stdout, or fails with stderr.
pub fn output_with_input(cmd: &mut Command, input: &[u8]) -> Result<String> {
    use std::io::Write as _;
    let shown = show(cmd);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{shown}`: is it installed?"))?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input)
        .with_context(|| format!("cannot write to `{shown}`"))?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "`{shown}` failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `cmd` and parses its stdout as JSON (our helpers and `iperf3 -J`).
pub fn json(cmd: &mut Command) -> Result<serde_json::Value> {
    let shown = show(cmd);
    let text = output(cmd)?;
    serde_json::from_str(&text).with_context(|| format!("`{shown}` printed no JSON: {text}"))
}

/// A background process (a server) that is killed when the guard drops.
/// Started in a process group of its own so that Ctrl-C reaches only us and
/// we stop it in order.
pub struct Background {
    child: Child,
    what: String,
}

impl Background {
    /// Starts `cmd` with its stdout piped, for [`Background::wait_for_line`]
    /// (only for programs that print little: nobody drains the pipe).
    pub fn spawn(cmd: &mut Command) -> Result<Background> {
        Background::start(cmd, Stdio::piped())
    }

    /// Starts `cmd` with its output discarded (a chatty server).
    pub fn spawn_quiet(cmd: &mut Command) -> Result<Background> {
        Background::start(cmd, Stdio::null())
    }

    fn start(cmd: &mut Command, stdout: Stdio) -> Result<Background> {
        use std::os::unix::process::CommandExt as _;
        let what = show(cmd);
        let child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start `{what}`: is it installed?"))?;
        Ok(Background { child, what })
    }

    /// Waits until the process prints `line` (our helpers announce
    /// readiness this way), failing if it exits first or takes too long.
    pub fn wait_for_line(&mut self, line: &str, timeout: Duration) -> Result<()> {
        let stdout: &mut ChildStdout = self
            .child
            .stdout
            .as_mut()
            .context("wait_for_line needs a process started with `spawn`")?;
        let mut reader = BufReader::new(stdout);
        let deadline = Instant::now() + timeout;
        let mut got = String::new();
        // The helper writes the line and flushes; a blocking read returns
        // it, or EOF if the helper died.
        while Instant::now() < deadline {
            got.clear();
            if reader.read_line(&mut got)? == 0 {
                bail!("`{}` exited before it was ready", self.what);
            }
            if got.trim() == line {
                return Ok(());
            }
        }
        bail!("`{}` not ready after {timeout:?}", self.what)
    }

    /// Fails if the process has already exited (a server that died).
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("`{}` exited unexpectedly ({status})", self.what);
        }
        Ok(())
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        // Our own child, by its pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `ready` every 50 ms until it returns true, for at most `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !ready() {
        check_interrupted()?;
        if Instant::now() >= deadline {
            bail!("{what}: not ready after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base36_digits() {
        assert_eq!(base36(0), "0");
        assert_eq!(base36(35), "z");
        assert_eq!(base36(36), "10");
        assert_eq!(base36(4_194_304), "2hwcg");
    }
}
