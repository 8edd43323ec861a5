//! Spawning QEMU: with a deadline and output to files for `rig test`, or on
//! the user's terminal for `rig run`. The only module that waits on a child.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::check::Exit;

/// How often a running child is polled. Short enough that the time the rig
/// reports is the boot's, long enough to cost nothing.
const POLL: Duration = Duration::from_millis(50);

fn exit_of(status: ExitStatus) -> Exit {
    match (status.code(), status.signal()) {
        (Some(code), _) => Exit::Code(code),
        (None, Some(signal)) => Exit::Signal(signal),
        // Neither a code nor a signal is not something Unix reports; treat
        // it as an unknown failure rather than a pass.
        (None, None) => Exit::Code(-1),
    }
}

/// A spawn error worded for the FAIL line, with the fix when the program is
/// simply not installed.
fn spawn_error(program: &OsStr, err: io::Error) -> String {
    let program = program.to_string_lossy();
    if err.kind() == io::ErrorKind::NotFound {
        format!(
            "cannot run {program}: not found (install it, e.g. apt-get install qemu-system-x86)"
        )
    } else {
        format!("cannot run {program}: {err}")
    }
}

/// Runs `program` with no input, stdout and stderr to `output`, and kills it
/// once `timeout` has passed. Returns how it ended and how long it ran.
pub fn run_with_timeout(
    program: &OsStr,
    args: &[OsString],
    output: File,
    timeout: Duration,
) -> Result<(Exit, Duration), String> {
    let stderr = output
        .try_clone()
        .map_err(|e| format!("cannot share the output file: {e}"))?;
    let start = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(output)
        .stderr(stderr)
        .spawn()
        .map_err(|e| spawn_error(program, e))?;
    wait_until(&mut child, start, timeout, || {})
}

/// Polls `child` until it exits or `timeout` (from `start`) passes, then
/// kills it; calls `each_poll` between polls.
fn wait_until(
    child: &mut std::process::Child,
    start: Instant,
    timeout: Duration,
    mut each_poll: impl FnMut(),
) -> Result<(Exit, Duration), String> {
    loop {
        each_poll();
        match child.try_wait() {
            Ok(Some(status)) => return Ok((exit_of(status), start.elapsed())),
            Ok(None) if start.elapsed() >= timeout => {
                // kill() fails only if the child already exited, and wait()
                // below reaps it either way; the outcome is a timeout.
                let _ = child.kill();
                let _ = child.wait();
                return Ok((Exit::Timeout(timeout), start.elapsed()));
            }
            Ok(None) => thread::sleep(POLL),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("cannot wait for QEMU: {e}"));
            }
        }
    }
}

/// Runs `program` on the user's terminal until it exits by itself.
pub fn run_interactive(program: &OsStr, args: &[OsString]) -> Result<Exit, String> {
    Command::new(program)
        .args(args)
        .status()
        .map(exit_of)
        .map_err(|e| spawn_error(program, e))
}

/// Runs a helper to completion, capturing its output; a failure carries what
/// it printed, since that is where the reason is.
pub fn run_helper(program: &OsStr, args: &[OsString]) -> Result<(), String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| spawn_error(program, e))?;
    if output.status.success() {
        return Ok(());
    }
    let mut said = String::from_utf8_lossy(&output.stderr).trim().to_string();
    if said.is_empty() {
        said = String::from_utf8_lossy(&output.stdout).trim().to_string();
    }
    Err(format!(
        "{} {}: {said}",
        program.to_string_lossy(),
        match exit_of(output.status) {
            Exit::Code(code) => format!("exited with status {code}"),
            Exit::Signal(sig) => format!("was killed by signal {sig}"),
            Exit::Timeout(_) => "timed out".to_string(),
        }
    ))
}

/// Like [`run_with_timeout`], with stdout to `output` (the serial log at
/// `log`) and `input` written to the child's stdin once the log contains
/// `after`. Stdin stays open until the child exits: QEMU's stdio serial
/// ends the machine on end of file.
pub fn run_with_input(
    program: &OsStr,
    args: &[OsString],
    output: File,
    timeout: Duration,
    log: &std::path::Path,
    after: &str,
    input: &mut dyn FnMut() -> String,
) -> Result<(Exit, Duration), String> {
    use std::io::Write;
    let start = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(output)
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| spawn_error(program, e))?;
    let mut stdin = child.stdin.take();
    let mut typed = false;
    // Stdin (`stdin`) lives until this function returns: QEMU's stdio
    // serial would end the machine on end of file.
    wait_until(&mut child, start, timeout, || {
        if typed {
            return;
        }
        let seen = std::fs::read(log).map(|bytes| String::from_utf8_lossy(&bytes).contains(after));
        if seen.unwrap_or(false) {
            let input = input();
            if let Some(stdin) = stdin.as_mut() {
                // Byte by byte, with a pause: a UART's FIFO is 16 bytes.
                for byte in input.bytes() {
                    let _ = stdin.write_all(&[byte]);
                    let _ = stdin.flush();
                    thread::sleep(Duration::from_millis(5));
                }
            }
            typed = true;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // These use /bin/sh, which every machine that runs the rig has; they
    // check the deadline machinery, not QEMU.

    fn sh(script: &str) -> Vec<OsString> {
        vec![OsString::from("-c"), OsString::from(script)]
    }

    fn scratch(name: &str) -> (std::path::PathBuf, File) {
        let path = std::env::temp_dir().join(format!("sanos-rig-{}-{name}", std::process::id()));
        // Creating a file in the temp directory is what every test host
        // allows; a failure here is a broken host, not a rig bug.
        let file = File::create(&path).expect("temp file");
        (path, file)
    }

    #[test]
    fn exit_status_and_output_are_captured() {
        let (path, file) = scratch("status");
        let result = run_with_timeout(
            OsStr::new("/bin/sh"),
            &sh("echo out; echo err >&2; exit 33"),
            file,
            Duration::from_secs(10),
        );
        assert_eq!(result.map(|(exit, _)| exit), Ok(Exit::Code(33)));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let _ = std::fs::remove_file(&path);
        assert_eq!(text, "out\nerr\n");
    }

    #[test]
    fn a_hung_child_is_killed_at_the_deadline() {
        let (path, file) = scratch("timeout");
        let timeout = Duration::from_millis(200);
        let result = run_with_timeout(OsStr::new("/bin/sh"), &sh("sleep 30"), file, timeout);
        let _ = std::fs::remove_file(&path);
        let (exit, elapsed) = result.unwrap_or((Exit::Code(0), Duration::ZERO));
        assert_eq!(exit, Exit::Timeout(timeout));
        assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    }

    #[test]
    fn a_missing_program_is_an_error_value() {
        let (path, file) = scratch("missing");
        let result = run_with_timeout(
            OsStr::new("/nonexistent/qemu"),
            &[],
            file,
            Duration::from_secs(1),
        );
        let _ = std::fs::remove_file(&path);
        assert!(
            matches!(&result, Err(e) if e.contains("not found")),
            "{result:?}"
        );
    }

    #[test]
    fn helper_failure_carries_its_message() {
        let err = run_helper(
            OsStr::new("/bin/sh"),
            &sh("echo 'no grub here' >&2; exit 3"),
        );
        assert_eq!(
            err,
            Err("/bin/sh exited with status 3: no grub here".to_string())
        );
        assert_eq!(run_helper(OsStr::new("/bin/sh"), &sh("exit 0")), Ok(()));
    }
}
