//! Driving Dom0's shell without a human: the logic behind `scripts/run --batch`.
//!
//! Wait for the `dom0# ` prompt, type each command and wait for the next
//! prompt before the next command, type `poweroff` at the end, and judge the
//! run: success only if the machine stopped with "Dom0 powered off" and the
//! last `VERDICT:` line says SUCCESS.  A kernel that never shows a prompt
//! (a test kernel that prints its verdict and powers off) is judged the same
//! way once it stops.

use std::time::{Duration, Instant};

use crate::check::Verdict;
use crate::exit::Exit;
use crate::qemu::{Machine, RunResult, WaitError};

/// Dom0's shell prompt (no newline follows it).
pub const PROMPT: &str = "dom0# ";
/// The command that makes Dom0 print its verdict and power off.
pub const POWEROFF: &str = "poweroff";

/// The commands to send: one per line; blank lines and lines starting with
/// `#` are skipped; trailing `\r` is dropped.
pub fn commands_from(input: &str) -> Vec<String> {
    input
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// The outcome of a batch run.
#[derive(Debug, Clone)]
pub struct BatchOutcome {
    pub result: RunResult,
    /// How many commands (not counting the final `poweroff`) were typed.
    pub sent: usize,
    /// Whether the prompt ever appeared.
    pub saw_prompt: bool,
    pub verdict: Option<Verdict>,
    /// Success: "Dom0 powered off" and `VERDICT: SUCCESS`.
    pub ok: bool,
    /// One line saying why the run failed (or that it succeeded).
    pub why: String,
}

/// Runs `commands` on `machine`; the whole run is allowed `timeout`.
pub fn run(mut machine: Machine, commands: &[String], timeout: Duration) -> BatchOutcome {
    let deadline = Instant::now() + timeout;
    let left = || deadline.saturating_duration_since(Instant::now());
    let mut stuck: Option<String> = None;
    let mut sent = 0;
    let mut saw_prompt = false;

    match machine.wait_for(PROMPT, left()) {
        Ok(_) => saw_prompt = true,
        Err(WaitError::Exited { .. }) => {}
        Err(WaitError::Timeout { .. }) => {
            stuck = Some(format!(
                "no {PROMPT:?} prompt appeared within {}",
                secs(timeout)
            ));
        }
    }
    if saw_prompt {
        for cmd in commands
            .iter()
            .map(String::as_str)
            .chain(std::iter::once(POWEROFF))
        {
            if machine.send_line(cmd).is_err() {
                break; // QEMU is gone: judged below.
            }
            if cmd == POWEROFF {
                break;
            }
            sent += 1;
            match machine.wait_for(PROMPT, left()) {
                Ok(_) => {}
                Err(WaitError::Exited { .. }) => break,
                Err(WaitError::Timeout { .. }) => {
                    stuck = Some(format!(
                        "no {PROMPT:?} prompt came back after {cmd:?} (whole run limited to {})",
                        secs(timeout)
                    ));
                    break;
                }
            }
        }
    }
    let result = if stuck.is_some() {
        machine.kill()
    } else {
        machine.wait_exit(left())
    };
    judge(result, sent, saw_prompt, stuck)
}

fn secs(d: Duration) -> String {
    format!("{} s", d.as_secs_f64().round())
}

fn judge(result: RunResult, sent: usize, saw_prompt: bool, stuck: Option<String>) -> BatchOutcome {
    let verdict = result.verdict();
    let said = match &verdict {
        Some(v) => format!("last verdict: \"{v}\""),
        None => "no VERDICT line".to_string(),
    };
    let (ok, why) = match (&stuck, result.exit, &verdict) {
        (Some(s), ..) => (false, format!("{s}; killed after timeout; {said}")),
        (None, Exit::TimedOut, _) => (
            false,
            format!(
                "the machine did not stop within {}; killed after timeout; {said}",
                secs(result.timeout)
            ),
        ),
        (None, e, _) if e != Exit::POWEROFF => {
            (false, format!("{}; {said}", result.exit_summary()))
        }
        (None, _, None) => (
            false,
            "Dom0 powered off without printing a VERDICT line".to_string(),
        ),
        (None, _, Some(Verdict::Failure(_))) => (false, format!("Dom0 powered off; {said}")),
        (None, _, Some(Verdict::Success)) => {
            (true, "Dom0 powered off; VERDICT: SUCCESS".to_string())
        }
    };
    BatchOutcome {
        result,
        sent,
        saw_prompt,
        verdict,
        ok,
        why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rr(log: &str, exit: Exit) -> RunResult {
        RunResult {
            name: "b".into(),
            command: "q".into(),
            log: log.into(),
            stderr: String::new(),
            exit,
            timed_out: exit == Exit::TimedOut,
            elapsed: Duration::from_secs(3),
            timeout: Duration::from_secs(60),
        }
    }

    #[test]
    fn command_list() {
        assert_eq!(
            commands_from("help\r\n\n  \n# comment\nxl list\n"),
            ["help", "xl list"]
        );
        assert!(commands_from("").is_empty());
    }

    #[test]
    fn judging() {
        let j = |log: &str, exit| judge(rr(log, exit), 0, true, None);
        assert!(j("VERDICT: SUCCESS\n", Exit::POWEROFF).ok);
        let f = j("VERDICT: FAILURE: help failed\n", Exit::POWEROFF);
        assert!(!f.ok);
        assert_eq!(
            f.why,
            "Dom0 powered off; last verdict: \"VERDICT: FAILURE: help failed\""
        );
        let c = j("domain crash: d0v0\n", Exit::CRASH);
        assert_eq!(c.why, "Dom0 crashed (QEMU exit status 7); no VERDICT line");
        let n = j("", Exit::POWEROFF);
        assert_eq!(n.why, "Dom0 powered off without printing a VERDICT line");
        let s = j("VERDICT: SUCCESS\n", Exit::HypervisorFatal);
        assert!(!s.ok);
        assert!(
            s.why
                .starts_with("hypervisor halted on a fatal error (QEMU exit status 33)"),
            "{}",
            s.why
        );
        let t = judge(rr("", Exit::TimedOut), 0, false, Some("no prompt".into()));
        assert!(!t.ok);
        assert_eq!(t.why, "no prompt; killed after timeout; no VERDICT line");
    }
}
