//! XTF-style test verdicts.
//!
//! A [`Verdict`] starts at success and can only get worse:
//! success → skip → error → failure. The first reason given at the worst
//! level reached is kept (later ones at that level are counted). At the end
//! [`Verdict::finish`] prints exactly one line and powers the domain off:
//!
//! ```text
//! VERDICT: SUCCESS
//! VERDICT: FAILURE: <reason>
//! ```
//!
//! Skips and errors are not successes, so they print as failures too, with
//! the level in the reason (`VERDICT: FAILURE: skipped: ...`,
//! `VERDICT: FAILURE: error: ...`): the test harness knows only the two
//! forms above and never passes on anything but `SUCCESS`.

#![forbid(unsafe_code)]

use core::fmt::{self, Write};

/// Longest reason kept (longer ones are cut, ending in "...").
pub const REASON_MAX: usize = 160;

/// How bad things are, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Everything passed.
    Success,
    /// The test could not run here (missing feature).
    Skip,
    /// The test itself went wrong (bad setup), so nothing was proven.
    Error,
    /// The thing under test misbehaved.
    Failure,
}

/// A test's running verdict.
#[derive(Clone, Debug)]
pub struct Verdict {
    outcome: Outcome,
    reason: heapless::String<REASON_MAX>,
    /// Further reports at the worst level after the first.
    more: u32,
}

impl Default for Verdict {
    fn default() -> Self {
        Self::new()
    }
}

impl Verdict {
    /// A fresh verdict: success.
    pub const fn new() -> Self {
        Verdict {
            outcome: Outcome::Success,
            reason: heapless::String::new(),
            more: 0,
        }
    }

    /// The current outcome.
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// The kept reason ("" on success).
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// True while nothing has gone wrong (not even a skip).
    pub fn is_success(&self) -> bool {
        self.outcome == Outcome::Success
    }

    /// Records a skip.
    pub fn skip(&mut self, reason: fmt::Arguments<'_>) {
        self.report(Outcome::Skip, reason);
    }

    /// Records an error (of the test, not of the thing tested).
    pub fn error(&mut self, reason: fmt::Arguments<'_>) {
        self.report(Outcome::Error, reason);
    }

    /// Records a failure.
    pub fn fail(&mut self, reason: fmt::Arguments<'_>) {
        self.report(Outcome::Failure, reason);
    }

    /// Records a failure with `reason` unless `ok`; returns `ok`.
    pub fn check(&mut self, ok: bool, reason: fmt::Arguments<'_>) -> bool {
        if !ok {
            self.fail(reason);
        }
        ok
    }

    /// Makes the verdict at least `outcome`.
    pub fn report(&mut self, outcome: Outcome, reason: fmt::Arguments<'_>) {
        if outcome == Outcome::Success {
            return;
        }
        if outcome > self.outcome {
            self.outcome = outcome;
            self.reason.clear();
            let mut w = Truncating {
                s: &mut self.reason,
                cut: false,
            };
            let _ = w.write_fmt(reason);
            if w.cut {
                w.finish_cut();
            }
            self.more = 0;
        } else if outcome == self.outcome {
            self.more = self.more.saturating_add(1);
        }
    }

    /// The line to print: `VERDICT: SUCCESS` or `VERDICT: FAILURE: ...`.
    pub fn line(&self) -> VerdictLine<'_> {
        VerdictLine(self)
    }

    /// Prints [`Verdict::line`] and shuts down with `SHUTDOWN_poweroff`.
    pub fn finish(&self) -> ! {
        crate::println!("{}", self.line());
        crate::xen::poweroff()
    }
}

/// The single verdict line (see [`Verdict::line`]).
pub struct VerdictLine<'a>(&'a Verdict);

impl fmt::Display for VerdictLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        let prefix = match v.outcome {
            Outcome::Success => return f.write_str("VERDICT: SUCCESS"),
            Outcome::Skip => "skipped: ",
            Outcome::Error => "error: ",
            Outcome::Failure => "",
        };
        let reason = if v.reason.is_empty() {
            "(no reason given)"
        } else {
            &v.reason
        };
        write!(f, "VERDICT: FAILURE: {prefix}{reason}")?;
        if v.more > 0 {
            write!(f, " (and {} more)", v.more)?;
        }
        Ok(())
    }
}

/// Writes into a fixed string, dropping what does not fit and turning line
/// breaks into spaces (the verdict is one line).
struct Truncating<'a> {
    s: &'a mut heapless::String<REASON_MAX>,
    cut: bool,
}

const ELLIPSIS: &str = "...";

impl Truncating<'_> {
    fn finish_cut(&mut self) {
        while self.s.len() + ELLIPSIS.len() > REASON_MAX {
            self.s.pop();
        }
        let _ = self.s.push_str(ELLIPSIS);
    }
}

impl Write for Truncating<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for c in text.chars() {
            let c = if c == '\n' || c == '\r' { ' ' } else { c };
            if self.s.push(c).is_err() {
                self.cut = true;
                return Ok(());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;

    #[test]
    fn success_line() {
        let v = Verdict::new();
        assert!(v.is_success());
        assert_eq!(v.line().to_string(), "VERDICT: SUCCESS");
    }

    #[test]
    fn only_gets_worse_and_keeps_the_first_worst_reason() {
        let mut v = Verdict::new();
        v.skip(format_args!("no smp"));
        assert_eq!(v.line().to_string(), "VERDICT: FAILURE: skipped: no smp");
        v.fail(format_args!("hypercall {} returned {}", 3, 0));
        v.error(format_args!("ignored, failure is worse"));
        v.skip(format_args!("ignored too"));
        assert_eq!(v.outcome(), Outcome::Failure);
        assert_eq!(
            v.line().to_string(),
            "VERDICT: FAILURE: hypercall 3 returned 0"
        );
        v.fail(format_args!("second"));
        v.fail(format_args!("third"));
        assert_eq!(
            v.line().to_string(),
            "VERDICT: FAILURE: hypercall 3 returned 0 (and 2 more)"
        );
    }

    #[test]
    fn error_prefix_and_check() {
        let mut v = Verdict::new();
        assert!(v.check(true, format_args!("not recorded")));
        assert!(v.is_success());
        v.error(format_args!("setup"));
        assert_eq!(v.line().to_string(), "VERDICT: FAILURE: error: setup");
        assert!(!v.check(false, format_args!("now a failure")));
        assert_eq!(v.line().to_string(), "VERDICT: FAILURE: now a failure");
    }

    #[test]
    fn long_reasons_are_cut_and_stay_one_line() {
        let mut v = Verdict::new();
        let long = "x".repeat(500);
        v.fail(format_args!("a\nb {long}"));
        let line = v.line().to_string();
        assert!(!line.contains('\n'));
        assert!(line.starts_with("VERDICT: FAILURE: a b xxx"));
        assert!(line.ends_with("..."));
        assert_eq!(v.reason().len(), REASON_MAX);
        let multi = "\u{e9}".repeat(200);
        let mut v = Verdict::new();
        v.fail(format_args!("{multi}"));
        assert!(v.reason().len() <= REASON_MAX);
        assert!(v.reason().ends_with("..."));
    }

    #[test]
    fn empty_reason_still_says_something() {
        let mut v = Verdict::new();
        v.fail(format_args!(""));
        assert_eq!(v.line().to_string(), "VERDICT: FAILURE: (no reason given)");
    }
}
