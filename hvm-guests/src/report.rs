//! The verdict of a test kernel, in the fixed form a harness matches.
//!
//! One line per check: `bare: <check>: ok`, `bare: <check>: FAILED <why>`
//! or `bare: <check>: skipped (<why>)`; then exactly one of
//! `bare: all checks passed` / `bare: N checks FAILED`. As in XTF, a run's
//! verdict can only get worse. Owns no hardware: it writes to any
//! `fmt::Write`.

use core::fmt::{self, Write};

/// Every line a test kernel prints starts with this.
pub const PREFIX: &str = "bare: ";
/// The last line of a run in which no check failed.
pub const ALL_PASSED: &str = "bare: all checks passed";

/// Why a check failed: a short message, kept without an allocator
/// (truncated at [`Why::CAPACITY`] bytes).
#[derive(Clone)]
pub struct Why {
    buf: [u8; Why::CAPACITY],
    len: usize,
}

impl Why {
    /// The longest message kept.
    pub const CAPACITY: usize = 160;

    /// A message from format arguments (see the [`why!`](crate::why) macro).
    pub fn new(args: fmt::Arguments<'_>) -> Self {
        let mut w = Why {
            buf: [0; Self::CAPACITY],
            len: 0,
        };
        // Writing into a Why never fails; it truncates.
        let _ = w.write_fmt(args);
        w
    }

    /// The message.
    pub fn as_str(&self) -> &str {
        // Only whole UTF-8 characters are ever copied in (`write_str`).
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("?")
    }
}

impl Write for Why {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            let mut b = [0u8; 4];
            let e = c.encode_utf8(&mut b).as_bytes();
            if self.len + e.len() > Self::CAPACITY {
                break;
            }
            self.buf[self.len..self.len + e.len()].copy_from_slice(e);
            self.len += e.len();
        }
        Ok(())
    }
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// `why!("fmt", args..)`: a [`Why`] from a format string.
#[macro_export]
macro_rules! why {
    ($($t:tt)*) => {
        $crate::report::Why::new(format_args!($($t)*))
    };
}

/// What became of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Ok,
    Skipped,
    Failed,
}

/// The running tally of a test kernel's checks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub passed: u32,
    pub skipped: u32,
    pub failed: u32,
}

impl Report {
    pub const fn new() -> Self {
        Report {
            passed: 0,
            skipped: 0,
            failed: 0,
        }
    }

    /// Records and prints the outcome of `check`.
    pub fn check(&mut self, out: &mut impl Write, check: &str, result: Result<(), Why>) {
        match result {
            Ok(()) => {
                self.passed += 1;
                let _ = writeln!(out, "{PREFIX}{check}: ok");
            }
            Err(why) => self.fail(out, check, why),
        }
    }

    /// Records and prints a failed check.
    pub fn fail(&mut self, out: &mut impl Write, check: &str, why: Why) {
        self.failed += 1;
        let _ = writeln!(out, "{PREFIX}{check}: FAILED {why}");
    }

    /// Records and prints a check that could not run here (not a failure).
    pub fn skip(&mut self, out: &mut impl Write, check: &str, why: Why) {
        self.skipped += 1;
        let _ = writeln!(out, "{PREFIX}{check}: skipped ({why})");
    }

    /// The worst outcome so far.
    pub fn status(&self) -> Status {
        if self.failed > 0 {
            Status::Failed
        } else if self.skipped > 0 {
            Status::Skipped
        } else {
            Status::Ok
        }
    }

    /// Prints the run's last line.
    pub fn finish(&self, out: &mut impl Write) {
        if self.failed == 0 {
            let _ = writeln!(out, "{ALL_PASSED}");
        } else {
            let _ = writeln!(out, "{PREFIX}{} checks FAILED", self.failed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_the_fixed_form() {
        let mut out = String::new();
        let mut r = Report::new();
        r.check(&mut out, "cpuid", Ok(()));
        assert_eq!(r.status(), Status::Ok);
        r.skip(&mut out, "smp", why!("one CPU"));
        assert_eq!(r.status(), Status::Skipped);
        r.finish(&mut out);
        r.check(&mut out, "mmio", Err(why!("version {:#x}", 0xffu8)));
        assert_eq!(r.status(), Status::Failed);
        r.check(&mut out, "x", Ok(()));
        assert_eq!(r.status(), Status::Failed, "a verdict only gets worse");
        r.finish(&mut out);
        assert_eq!(
            out,
            "bare: cpuid: ok\nbare: smp: skipped (one CPU)\nbare: all checks passed\n\
             bare: mmio: FAILED version 0xff\nbare: x: ok\nbare: 1 checks FAILED\n"
        );
        assert_eq!((r.passed, r.skipped, r.failed), (2, 1, 1));
    }

    #[test]
    fn why_truncates_on_a_character_boundary() {
        let long = "é".repeat(200);
        let w = why!("{long}");
        assert_eq!(w.as_str().len(), Why::CAPACITY);
        assert!(w.as_str().chars().all(|c| c == 'é'));
    }
}
