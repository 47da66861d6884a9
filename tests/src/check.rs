//! Judging a finished run: verdict lines and assertions that, on failure,
//! print the whole console log and say exactly what was missing.
//!
//! The harness never passes on silence: every assertion here fails on a run
//! that timed out or printed nothing, and says so.

use std::fmt;

use crate::exit::Exit;
use crate::qemu::RunResult;

/// The marker test kernels and Dom0 print before shutting down (XTF style):
/// `VERDICT: SUCCESS` or `VERDICT: FAILURE: <reason>`.
pub const VERDICT_MARKER: &str = "VERDICT: ";

/// A guest's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Success,
    Failure(String),
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Success => f.write_str("VERDICT: SUCCESS"),
            Verdict::Failure(r) if r.is_empty() => f.write_str("VERDICT: FAILURE"),
            Verdict::Failure(r) => write!(f, "VERDICT: FAILURE: {r}"),
        }
    }
}

impl Verdict {
    /// Parses the text after `VERDICT: `.  Anything but `SUCCESS` or
    /// `FAILURE[: reason]` counts as a failure.
    pub fn parse(after_marker: &str) -> Verdict {
        let t = after_marker.trim();
        if t == "SUCCESS" {
            return Verdict::Success;
        }
        if let Some(rest) = t.strip_prefix("FAILURE") {
            return Verdict::Failure(rest.trim_start_matches(':').trim().to_string());
        }
        Verdict::Failure(format!("malformed verdict line {t:?}"))
    }
}

/// All verdicts in a console log, in order.
pub fn verdicts(log: &str) -> Vec<Verdict> {
    log.lines()
        .filter_map(|l| {
            l.find(VERDICT_MARKER)
                .map(|i| Verdict::parse(&l[i + VERDICT_MARKER.len()..]))
        })
        .collect()
}

/// The last verdict in a console log.
pub fn last_verdict(log: &str) -> Option<Verdict> {
    verdicts(log).pop()
}

impl RunResult {
    /// The console's lines.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.log.lines()
    }

    /// The first console line containing `needle`.
    pub fn find_line(&self, needle: &str) -> Option<&str> {
        self.lines().find(|l| l.contains(needle))
    }

    /// The last verdict printed.
    pub fn verdict(&self) -> Option<Verdict> {
        last_verdict(&self.log)
    }

    /// How the run ended, with QEMU's raw status, in one line.
    pub fn exit_summary(&self) -> String {
        match self.exit.qemu_status() {
            Some(s) if !self.timed_out => format!("{} (QEMU exit status {s})", self.exit),
            _ if self.timed_out => {
                format!("{} ({:.0?} timeout)", self.exit, self.timeout)
            }
            _ => self.exit.to_string(),
        }
    }

    /// A full report: the problem, the command, the exit, the console and
    /// QEMU's stderr; the problem is repeated at the end so it is seen.
    pub fn report(&self, problem: &str) -> String {
        let n = self.log.lines().count();
        let mut s = String::new();
        s.push_str(&format!("\n==== {}: {problem}\n", self.name));
        s.push_str(&format!("command: {}\n", self.command));
        s.push_str(&format!(
            "ended:   {} after {:.1?}\n",
            self.exit_summary(),
            self.elapsed
        ));
        s.push_str(&format!("---- serial console ({n} lines) ----\n"));
        if self.log.trim().is_empty() {
            s.push_str("(nothing: the guest printed nothing at all)\n");
        } else {
            s.push_str(&self.log);
            if !self.log.ends_with('\n') {
                s.push('\n');
            }
        }
        if !self.stderr.trim().is_empty() {
            s.push_str("---- QEMU stderr ----\n");
            s.push_str(&self.stderr);
            if !self.stderr.ends_with('\n') {
                s.push('\n');
            }
        }
        s.push_str(&format!("==== {}: {problem}\n", self.name));
        s
    }

    /// Fails the test with a full report.
    #[track_caller]
    pub fn fail(&self, problem: &str) -> ! {
        panic!("{}", self.report(problem))
    }

    fn timeout_note(&self) -> &'static str {
        if self.timed_out {
            " (the run was killed after its timeout)"
        } else {
            ""
        }
    }

    /// Asserts a console line contains `needle`; returns the line.
    #[track_caller]
    pub fn assert_line(&self, needle: &str) -> &str {
        match self.find_line(needle) {
            Some(l) => l,
            None => self.fail(&format!(
                "expected a console line containing {needle:?}, found none{}",
                self.timeout_note()
            )),
        }
    }

    /// Asserts lines containing each needle appear in this order.
    #[track_caller]
    pub fn assert_lines_in_order(&self, needles: &[&str]) {
        let lines: Vec<&str> = self.lines().collect();
        let mut from = 0;
        for (k, n) in needles.iter().enumerate() {
            match lines[from..].iter().position(|l| l.contains(n)) {
                Some(p) => from += p + 1,
                None => {
                    let what = if k == 0 {
                        format!("expected a console line containing {n:?}, found none")
                    } else {
                        format!(
                            "expected a console line containing {n:?} after the one containing {:?}, found none",
                            needles[k - 1]
                        )
                    };
                    self.fail(&format!("{what}{}", self.timeout_note()))
                }
            }
        }
    }

    /// Asserts no console line contains `needle`.
    #[track_caller]
    pub fn assert_no_line(&self, needle: &str) {
        if let Some(l) = self.find_line(needle) {
            self.fail(&format!(
                "expected no console line containing {needle:?}, found {l:?}"
            ));
        }
    }

    /// Asserts the run ended as `expected` (a timeout never matches).
    #[track_caller]
    pub fn assert_exit(&self, expected: Exit) {
        if self.timed_out || self.exit != expected {
            self.fail(&format!(
                "expected the run to end with \"{expected}\", but it ended with \"{}\"",
                self.exit_summary()
            ));
        }
    }

    /// Asserts the last verdict is `VERDICT: SUCCESS`.
    #[track_caller]
    pub fn assert_verdict_success(&self) {
        match self.verdict() {
            Some(Verdict::Success) => {}
            Some(v) => self.fail(&format!(
                "expected \"VERDICT: SUCCESS\", the guest said \"{v}\""
            )),
            None => self.fail(&format!(
                "expected a \"VERDICT: SUCCESS\" line, found no VERDICT line at all{}",
                self.timeout_note()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn run(log: &str, exit: Exit) -> RunResult {
        RunResult {
            name: "t".into(),
            command: "qemu".into(),
            log: log.into(),
            stderr: String::new(),
            exit,
            timed_out: exit == Exit::TimedOut,
            elapsed: Duration::from_secs(1),
            timeout: Duration::from_secs(60),
        }
    }

    fn panic_text(f: impl FnOnce() + std::panic::UnwindSafe) -> String {
        let e = std::panic::catch_unwind(f).unwrap_err();
        e.downcast_ref::<String>().cloned().unwrap_or_default()
    }

    #[test]
    fn verdict_parsing() {
        assert_eq!(Verdict::parse("SUCCESS"), Verdict::Success);
        assert_eq!(Verdict::parse("SUCCESS  "), Verdict::Success);
        assert_eq!(
            Verdict::parse("FAILURE: bad thing"),
            Verdict::Failure("bad thing".into())
        );
        assert_eq!(Verdict::parse("FAILURE"), Verdict::Failure(String::new()));
        assert!(matches!(Verdict::parse("MAYBE"), Verdict::Failure(_)));
        let log = "boot\n(d0) VERDICT: FAILURE: x\nVERDICT: SUCCESS\n";
        assert_eq!(verdicts(log).len(), 2);
        assert_eq!(last_verdict(log), Some(Verdict::Success));
        assert_eq!(last_verdict("nothing"), None);
        assert_eq!(
            Verdict::Failure("r".into()).to_string(),
            "VERDICT: FAILURE: r"
        );
    }

    #[test]
    fn assert_line_names_the_missing_line_and_shows_the_log() {
        let r = run("Oxen 0.1\nCPU0 online\n", Exit::POWEROFF);
        assert_eq!(r.assert_line("CPU0"), "CPU0 online");
        let msg = panic_text(move || {
            r.assert_line("CPU3 online");
        });
        assert!(
            msg.contains("expected a console line containing \"CPU3 online\""),
            "{msg}"
        );
        assert!(msg.contains("Oxen 0.1\nCPU0 online\n"), "{msg}");
        assert!(
            msg.contains("Dom0 powered off (QEMU exit status 1)"),
            "{msg}"
        );
    }

    #[test]
    fn silence_and_timeouts_never_pass() {
        let r = run("", Exit::TimedOut);
        let msg = panic_text(move || r.assert_exit(Exit::TimedOut));
        assert!(msg.contains("killed after timeout"), "{msg}");
        assert!(msg.contains("the guest printed nothing"), "{msg}");
        let r = run("", Exit::POWEROFF);
        let msg = panic_text(move || r.assert_verdict_success());
        assert!(msg.contains("no VERDICT line"), "{msg}");
    }

    #[test]
    fn order_and_absence() {
        let r = run("a\nb\nc\n", Exit::POWEROFF);
        r.assert_lines_in_order(&["a", "c"]);
        r.assert_no_line("zzz");
        let msg = panic_text(move || r.assert_lines_in_order(&["c", "a"]));
        assert!(
            msg.contains("\"a\" after the one containing \"c\""),
            "{msg}"
        );
    }

    #[test]
    fn verdict_failure_is_reported() {
        let r = run("VERDICT: FAILURE: hypercall 3 returned 0\n", Exit::POWEROFF);
        let msg = panic_text(move || r.assert_verdict_success());
        assert!(
            msg.contains("the guest said \"VERDICT: FAILURE: hypercall 3 returned 0\""),
            "{msg}"
        );
    }
}
