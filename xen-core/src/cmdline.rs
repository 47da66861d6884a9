//! The hypervisor command line, Xen style: space-separated `key=value` options
//! and bare flags, with Xen's option names and value syntax. Owns the typed
//! option values; trusts nothing in the string (bad values become errors).
//!
//! Known options: `loglvl=` (none|error|warning|info|debug|all, optionally
//! `level/guest-level`: the first part is taken), `dom0_mem=` (`512M`,
//! `min:128M,max:1G,512M`), `dom0_max_vcpus=` (`N`, `min-max`, `min-`),
//! `console=` (comma list of com1, com2, vga, none), `noreboot` (also
//! `noreboot=<bool>`), the scheduler's `sched=`, `sched_credit_tslice_ms=`,
//! `sched_ratelimit_us=` and `vcpu_migration_delay=` ([`SchedOptions`]),
//! and Oxen's `selftest=fault`. Sizes take Xen's suffixes (B, K, M, G, T; none means
//! KiB as in Xen's `parse_size_and_unit`) and decimal or 0x-hex numbers.
//! Values may be double-quoted. A later occurrence overrides an earlier one.
//! Everything after a lone `--` is not for the hypervisor ([`CmdLine::rest`]).

use core::fmt;

/// How many unknown options and errors are remembered.
pub const MAX_REPORTS: usize = 16;

/// Log threshold (`loglvl=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Nothing.
    None,
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warning,
    /// Informational messages too.
    Info,
    /// Debug messages too.
    Debug,
    /// Everything.
    All,
}

/// `dom0_mem=`: amounts in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Dom0Mem {
    /// The plain amount, if given.
    pub amount: Option<u64>,
    /// `min:` bound, if given.
    pub min: Option<u64>,
    /// `max:` bound, if given.
    pub max: Option<u64>,
}

impl Dom0Mem {
    /// The amount to give Dom0 if everything were available: the plain
    /// amount, else `max:`, clamped to `[min, max]` (Xen's order).
    pub fn target(&self) -> Option<u64> {
        let amount = self.amount.or(self.max)?;
        let amount = self.max.map_or(amount, |max| amount.min(max));
        Some(self.min.map_or(amount, |min| amount.max(min)))
    }
}

/// `dom0_max_vcpus=`: `N` means `min = max = N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dom0MaxVcpus {
    /// Lower bound.
    pub min: u32,
    /// Upper bound; `None` for `min-` (as many as there are CPUs).
    pub max: Option<u32>,
}

/// Deliberate failures for testing xen-core's own error paths (Oxen-only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelfTest {
    /// `selftest=fault`: touch an unmapped address in xen-core after the
    /// CPUs are up, to show the crash dump.
    Fault,
}

/// The scheduler's options, as Xen spells them. The values are taken as
/// written; the scheduler checks their ranges (and, like Xen, warns and
/// falls back to its default for one out of range).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SchedOptions<'a> {
    /// `sched=`: the scheduler's name (Oxen has only `credit`).
    pub sched: Option<&'a str>,
    /// `sched_credit_tslice_ms=`: credit's time slice, ms.
    pub credit_tslice_ms: Option<u32>,
    /// `sched_ratelimit_us=`: the context-switch rate limit, µs (0 = off).
    pub ratelimit_us: Option<u32>,
    /// `vcpu_migration_delay=`: credit's migration delay, µs.
    pub migration_delay_us: Option<u32>,
}

/// Consoles named by `console=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Consoles {
    /// First serial port.
    pub com1: bool,
    /// Second serial port.
    pub com2: bool,
    /// VGA text console.
    pub vga: bool,
}

/// Why an option's value was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptionErrorKind {
    /// `key=` with nothing, or the key needs a value and had none.
    MissingValue,
    /// Not one of none|error|warning|info|debug|all.
    BadLogLevel,
    /// Not a size (number with optional B/K/M/G/T suffix).
    BadSize,
    /// A `dom0_mem` part that is not `min:`, `max:` or an amount.
    BadDom0MemPart,
    /// Negative and percentage `dom0_mem` amounts are not supported.
    UnsupportedDom0Mem,
    /// Not a number, or out of range.
    BadNumber,
    /// `min-max` with min > max.
    InvertedRange,
    /// Unknown console name.
    BadConsole,
    /// Not a boolean (0/1, no/yes, false/true, off/on, disable/enable).
    BadBool,
    /// Not a known self-test name.
    BadSelfTest,
}

impl fmt::Display for OptionErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::MissingValue => "missing value",
            Self::BadLogLevel => "expected none|error|warning|info|debug|all",
            Self::BadSize => "expected a size such as 512M",
            Self::BadDom0MemPart => "expected min:<size>, max:<size> or <size>",
            Self::UnsupportedDom0Mem => "negative and % amounts are not supported",
            Self::BadNumber => "expected a number",
            Self::InvertedRange => "min is above max",
            Self::BadSelfTest => "expected fault",
            Self::BadConsole => "expected com1, com2, vga or none",
            Self::BadBool => "expected a boolean",
        })
    }
}

/// A refused option: its key, its raw value and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptionError<'a> {
    /// The option name.
    pub key: &'a str,
    /// The value as written (without quotes).
    pub value: &'a str,
    /// Why it was refused.
    pub kind: OptionErrorKind,
}

impl fmt::Display for OptionError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bad value '{}' for '{}': {}",
            self.value, self.key, self.kind
        )
    }
}

/// A fixed-capacity list that counts what did not fit.
#[derive(Clone, Copy, Debug)]
struct Reports<T: Copy, const N: usize> {
    items: [Option<T>; N],
    len: usize,
    dropped: usize,
}

impl<T: Copy, const N: usize> Reports<T, N> {
    const fn new() -> Self {
        Reports {
            items: [None; N],
            len: 0,
            dropped: 0,
        }
    }

    fn push(&mut self, item: T) {
        if self.len < N {
            self.items[self.len] = Some(item);
            self.len += 1;
        } else {
            self.dropped += 1;
        }
    }

    fn iter(&self) -> impl Iterator<Item = T> + '_ {
        self.items[..self.len].iter().flatten().copied()
    }
}

/// The parsed command line; borrows the string it came from.
#[derive(Clone, Debug)]
pub struct CmdLine<'a> {
    /// `loglvl=`.
    pub loglvl: Option<LogLevel>,
    /// `dom0_mem=`.
    pub dom0_mem: Option<Dom0Mem>,
    /// `dom0_max_vcpus=`.
    pub dom0_max_vcpus: Option<Dom0MaxVcpus>,
    /// `console=`; `None` if the option was absent.
    pub console: Option<Consoles>,
    /// `noreboot`: stay halted instead of rebooting on a crash.
    pub noreboot: bool,
    /// `selftest=`: a deliberate failure to exercise a hypervisor error path.
    pub selftest: Option<SelfTest>,
    /// The scheduler's options.
    pub sched: SchedOptions<'a>,
    rest: Option<&'a str>,
    unknown: Reports<&'a str, MAX_REPORTS>,
    errors: Reports<OptionError<'a>, MAX_REPORTS>,
}

impl<'a> CmdLine<'a> {
    /// Parse a command line. Never fails: unknown options and bad values are
    /// collected ([`CmdLine::unknown`], [`CmdLine::errors`]) for the caller to
    /// report, and the option keeps its default.
    pub fn parse(line: &'a str) -> CmdLine<'a> {
        let mut cl = CmdLine {
            loglvl: None,
            dom0_mem: None,
            dom0_max_vcpus: None,
            console: None,
            noreboot: false,
            selftest: None,
            sched: SchedOptions::default(),
            rest: None,
            unknown: Reports::new(),
            errors: Reports::new(),
        };
        let mut tokens = Tokens { rest: line };
        while let Some(token) = tokens.next() {
            if token == "--" {
                cl.rest = Some(tokens.rest.trim_start_matches(' '));
                break;
            }
            cl.apply(token);
        }
        cl
    }

    /// Options the hypervisor does not know, as written (`key` or `key=value`).
    pub fn unknown(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.unknown.iter()
    }

    /// Unknown options beyond [`MAX_REPORTS`] that were not remembered.
    pub fn unknown_dropped(&self) -> usize {
        self.unknown.dropped
    }

    /// Refused option values.
    pub fn errors(&self) -> impl Iterator<Item = OptionError<'a>> + '_ {
        self.errors.iter()
    }

    /// Refused values beyond [`MAX_REPORTS`] that were not remembered.
    pub fn errors_dropped(&self) -> usize {
        self.errors.dropped
    }

    /// What followed a lone `--`, if anything did.
    pub fn rest(&self) -> Option<&'a str> {
        self.rest
    }

    fn apply(&mut self, token: &'a str) {
        let (key, value) = match token.split_once('=') {
            Some((k, v)) => (k, Some(unquote(v))),
            None => (token, None),
        };
        let outcome = match key {
            "loglvl" => need(value)
                .and_then(parse_loglvl)
                .map(|v| self.loglvl = Some(v)),
            "dom0_mem" => need(value)
                .and_then(parse_dom0_mem)
                .map(|v| self.dom0_mem = Some(v)),
            "dom0_max_vcpus" => need(value)
                .and_then(parse_max_vcpus)
                .map(|v| self.dom0_max_vcpus = Some(v)),
            "console" => need(value)
                .and_then(parse_consoles)
                .map(|v| self.console = Some(v)),
            "noreboot" => value
                .map_or(Ok(true), parse_bool)
                .map(|v| self.noreboot = v),
            "selftest" => need(value)
                .and_then(|v| match v {
                    "fault" => Ok(SelfTest::Fault),
                    _ => Err(OptionErrorKind::BadSelfTest),
                })
                .map(|v| self.selftest = Some(v)),
            "sched" => need(value).map(|v| self.sched.sched = Some(v)),
            "sched_credit_tslice_ms" => need(value)
                .and_then(parse_u32)
                .map(|v| self.sched.credit_tslice_ms = Some(v)),
            "sched_ratelimit_us" => need(value)
                .and_then(parse_u32)
                .map(|v| self.sched.ratelimit_us = Some(v)),
            "vcpu_migration_delay" => need(value)
                .and_then(parse_u32)
                .map(|v| self.sched.migration_delay_us = Some(v)),
            _ => {
                self.unknown.push(token);
                return;
            }
        };
        if let Err(kind) = outcome {
            let value = value.unwrap_or("");
            self.errors.push(OptionError { key, value, kind });
        }
    }
}

/// Splits on spaces (and tabs), keeping double-quoted spans together.
struct Tokens<'a> {
    rest: &'a str,
}

impl<'a> Tokens<'a> {
    fn next(&mut self) -> Option<&'a str> {
        let s = self.rest.trim_start_matches([' ', '\t']);
        if s.is_empty() {
            self.rest = s;
            return None;
        }
        let mut in_quote = false;
        let end = s
            .char_indices()
            .find(|&(_, c)| {
                if c == '"' {
                    in_quote = !in_quote;
                }
                !in_quote && (c == ' ' || c == '\t')
            })
            .map_or(s.len(), |(i, _)| i);
        self.rest = &s[end..];
        Some(&s[..end])
    }
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .map(|v| v.strip_suffix('"').unwrap_or(v))
        .unwrap_or(v)
}

fn need(value: Option<&str>) -> Result<&str, OptionErrorKind> {
    match value {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(OptionErrorKind::MissingValue),
    }
}

fn parse_loglvl(value: &str) -> Result<LogLevel, OptionErrorKind> {
    let first = value.split('/').next().unwrap_or(value);
    Ok(match first {
        "none" => LogLevel::None,
        "error" => LogLevel::Error,
        "warning" => LogLevel::Warning,
        "info" => LogLevel::Info,
        "debug" => LogLevel::Debug,
        "all" => LogLevel::All,
        _ => return Err(OptionErrorKind::BadLogLevel),
    })
}

/// A number in decimal or `0x` hexadecimal.
fn parse_number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) if !hex.is_empty() && !hex.starts_with('+') => u64::from_str_radix(hex, 16).ok(),
        Some(_) => None,
        None if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
        None => None,
    }
}

/// A size with Xen's unit suffixes; no suffix means KiB.
pub fn parse_size(s: &str) -> Option<u64> {
    let (digits, shift) = match s.as_bytes().last()? {
        b'B' | b'b' => (&s[..s.len() - 1], 0),
        b'K' | b'k' => (&s[..s.len() - 1], 10),
        b'M' | b'm' => (&s[..s.len() - 1], 20),
        b'G' | b'g' => (&s[..s.len() - 1], 30),
        b'T' | b't' => (&s[..s.len() - 1], 40),
        _ => (s, 10),
    };
    let n = parse_number(digits)?;
    n.checked_mul(1u64 << shift)
}

fn parse_dom0_mem(value: &str) -> Result<Dom0Mem, OptionErrorKind> {
    let mut mem = Dom0Mem::default();
    for part in value.split(',') {
        let (slot, amount) = if let Some(v) = part.strip_prefix("min:") {
            (&mut mem.min, v)
        } else if let Some(v) = part.strip_prefix("max:") {
            (&mut mem.max, v)
        } else if part.contains(':') {
            return Err(OptionErrorKind::BadDom0MemPart);
        } else {
            (&mut mem.amount, part)
        };
        if amount.starts_with('-') || amount.ends_with('%') {
            return Err(OptionErrorKind::UnsupportedDom0Mem);
        }
        *slot = Some(parse_size(amount).ok_or(OptionErrorKind::BadSize)?);
    }
    match (mem.min, mem.max) {
        (Some(min), Some(max)) if min > max => Err(OptionErrorKind::InvertedRange),
        _ => Ok(mem),
    }
}

fn parse_u32(s: &str) -> Result<u32, OptionErrorKind> {
    parse_number(s)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or(OptionErrorKind::BadNumber)
}

fn parse_max_vcpus(value: &str) -> Result<Dom0MaxVcpus, OptionErrorKind> {
    let Some((min, max)) = value.split_once('-') else {
        let n = parse_u32(value)?;
        return Ok(Dom0MaxVcpus {
            min: n,
            max: Some(n),
        });
    };
    let min = parse_u32(min)?;
    let max = if max.is_empty() {
        None
    } else {
        Some(parse_u32(max)?)
    };
    if max.is_some_and(|max| max < min) {
        return Err(OptionErrorKind::InvertedRange);
    }
    Ok(Dom0MaxVcpus { min, max })
}

fn parse_consoles(value: &str) -> Result<Consoles, OptionErrorKind> {
    let mut c = Consoles::default();
    for name in value.split(',') {
        match name {
            "com1" => c.com1 = true,
            "com2" => c.com2 = true,
            "vga" => c.vga = true,
            "none" => {}
            _ => return Err(OptionErrorKind::BadConsole),
        }
    }
    Ok(c)
}

fn parse_bool(value: &str) -> Result<bool, OptionErrorKind> {
    match value {
        "1" | "yes" | "true" | "on" | "enable" => Ok(true),
        "0" | "no" | "false" | "off" | "disable" => Ok(false),
        _ => Err(OptionErrorKind::BadBool),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;
    use std::vec::Vec;

    const K: u64 = 1 << 10;
    const M: u64 = 1 << 20;
    const G: u64 = 1 << 30;

    fn errors<'a>(cl: &CmdLine<'a>) -> Vec<(&'a str, OptionErrorKind)> {
        cl.errors().map(|e| (e.key, e.kind)).collect()
    }

    #[test]
    fn empty_and_blank_lines() {
        for line in ["", "   ", "\t \t"] {
            let cl = CmdLine::parse(line);
            assert_eq!(cl.loglvl, None);
            assert_eq!(cl.dom0_mem, None);
            assert_eq!(cl.dom0_max_vcpus, None);
            assert_eq!(cl.console, None);
            assert!(!cl.noreboot);
            assert_eq!(cl.unknown().count(), 0);
            assert_eq!(cl.errors().count(), 0);
            assert_eq!(cl.rest(), None);
        }
    }

    #[test]
    fn a_typical_line() {
        let cl = CmdLine::parse(
            "console=com1,vga loglvl=all/all dom0_mem=512M dom0_max_vcpus=2 noreboot",
        );
        assert_eq!(cl.loglvl, Some(LogLevel::All));
        assert_eq!(cl.dom0_mem.unwrap().amount, Some(512 * M));
        assert_eq!(
            cl.dom0_max_vcpus,
            Some(Dom0MaxVcpus {
                min: 2,
                max: Some(2)
            })
        );
        assert_eq!(
            cl.console,
            Some(Consoles {
                com1: true,
                com2: false,
                vga: true
            })
        );
        assert!(cl.noreboot);
        assert_eq!(cl.errors().count(), 0);
        assert_eq!(cl.unknown().count(), 0);
    }

    #[test]
    fn loglvl_values() {
        for (v, want) in [
            ("none", LogLevel::None),
            ("error", LogLevel::Error),
            ("warning", LogLevel::Warning),
            ("info", LogLevel::Info),
            ("debug", LogLevel::Debug),
            ("all", LogLevel::All),
            ("debug/none", LogLevel::Debug),
            ("warning/", LogLevel::Warning),
        ] {
            let line = format!("loglvl={v}");
            assert_eq!(CmdLine::parse(&line).loglvl, Some(want), "{v}");
        }
        for bad in [
            "loglvl=",
            "loglvl",
            "loglvl=verbose",
            "loglvl=/all",
            "loglvl=ALL",
        ] {
            let cl = CmdLine::parse(bad);
            assert_eq!(cl.loglvl, None, "{bad}");
            assert_eq!(cl.errors().count(), 1, "{bad}");
        }
        assert_eq!(
            errors(&CmdLine::parse("loglvl")),
            [("loglvl", OptionErrorKind::MissingValue)]
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512M"), Some(512 * M));
        assert_eq!(parse_size("512m"), Some(512 * M));
        assert_eq!(parse_size("2G"), Some(2 * G));
        assert_eq!(parse_size("1T"), Some(1 << 40));
        assert_eq!(parse_size("64k"), Some(64 * K));
        assert_eq!(parse_size("4096B"), Some(4096));
        assert_eq!(parse_size("1024"), Some(1024 * K)); // Xen: no unit = KiB
        assert_eq!(parse_size("0x10M"), Some(16 * M));
        assert_eq!(parse_size("0"), Some(0));
        for bad in [
            "",
            "M",
            "0xM",
            "12X",
            "1.5G",
            "-1M",
            "+1M",
            "0x+1",
            "99999999999T",
            "1 M",
        ] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
        assert_eq!(parse_size("18446744073709551615B"), Some(u64::MAX));
        assert_eq!(parse_size("18446744073709551616B"), None);
    }

    #[test]
    fn dom0_mem_forms() {
        let m = CmdLine::parse("dom0_mem=min:128M,max:1G,512M")
            .dom0_mem
            .unwrap();
        assert_eq!(
            m,
            Dom0Mem {
                amount: Some(512 * M),
                min: Some(128 * M),
                max: Some(G)
            }
        );
        assert_eq!(m.target(), Some(512 * M));
        let m = CmdLine::parse("dom0_mem=max:1G").dom0_mem.unwrap();
        assert_eq!(
            m,
            Dom0Mem {
                amount: None,
                min: None,
                max: Some(G)
            }
        );
        assert_eq!(m.target(), Some(G));
        let m = CmdLine::parse("dom0_mem=2G,max:1G").dom0_mem.unwrap();
        assert_eq!(m.target(), Some(G));
        let m = CmdLine::parse("dom0_mem=64M,min:128M").dom0_mem.unwrap();
        assert_eq!(m.target(), Some(128 * M));
        let m = CmdLine::parse("dom0_mem=min:128M").dom0_mem.unwrap();
        assert_eq!(m.target(), None);
        let m = CmdLine::parse("dom0_mem=\"256M\"").dom0_mem.unwrap();
        assert_eq!(m.amount, Some(256 * M));
    }

    #[test]
    fn dom0_mem_errors() {
        for (line, kind) in [
            ("dom0_mem=", OptionErrorKind::MissingValue),
            ("dom0_mem=lots", OptionErrorKind::BadSize),
            ("dom0_mem=max:", OptionErrorKind::BadSize),
            ("dom0_mem=512M,", OptionErrorKind::BadSize),
            ("dom0_mem=foo:1G", OptionErrorKind::BadDom0MemPart),
            ("dom0_mem=-512M", OptionErrorKind::UnsupportedDom0Mem),
            ("dom0_mem=50%", OptionErrorKind::UnsupportedDom0Mem),
            ("dom0_mem=min:2G,max:1G", OptionErrorKind::InvertedRange),
        ] {
            let cl = CmdLine::parse(line);
            assert_eq!(cl.dom0_mem, None, "{line}");
            assert_eq!(errors(&cl), [("dom0_mem", kind)], "{line}");
        }
    }

    #[test]
    fn scheduler_options() {
        let cl = CmdLine::parse(
            "sched=credit sched_credit_tslice_ms=5 sched_ratelimit_us=0 vcpu_migration_delay=0x64",
        );
        assert_eq!(
            cl.sched,
            SchedOptions {
                sched: Some("credit"),
                credit_tslice_ms: Some(5),
                ratelimit_us: Some(0),
                migration_delay_us: Some(100),
            }
        );
        assert_eq!(CmdLine::parse("").sched, SchedOptions::default());
        // Out-of-range values are the scheduler's business; bad numbers are
        // refused here and leave the default.
        let cl = CmdLine::parse(
            "sched_credit_tslice_ms=100000 sched_ratelimit_us=x vcpu_migration_delay=-1 sched=",
        );
        assert_eq!(cl.sched.credit_tslice_ms, Some(100_000));
        assert_eq!(cl.sched.ratelimit_us, None);
        assert_eq!(cl.sched.migration_delay_us, None);
        assert_eq!(cl.sched.sched, None);
        assert_eq!(
            errors(&cl),
            [
                ("sched_ratelimit_us", OptionErrorKind::BadNumber),
                ("vcpu_migration_delay", OptionErrorKind::BadNumber),
                ("sched", OptionErrorKind::MissingValue),
            ]
        );
    }

    #[test]
    fn dom0_max_vcpus_forms() {
        let v = |s: &str| CmdLine::parse(s).dom0_max_vcpus;
        assert_eq!(
            v("dom0_max_vcpus=4"),
            Some(Dom0MaxVcpus {
                min: 4,
                max: Some(4)
            })
        );
        assert_eq!(
            v("dom0_max_vcpus=1-8"),
            Some(Dom0MaxVcpus {
                min: 1,
                max: Some(8)
            })
        );
        assert_eq!(
            v("dom0_max_vcpus=2-"),
            Some(Dom0MaxVcpus { min: 2, max: None })
        );
        assert_eq!(
            v("dom0_max_vcpus=0x2"),
            Some(Dom0MaxVcpus {
                min: 2,
                max: Some(2)
            })
        );
        for (line, kind) in [
            ("dom0_max_vcpus=", OptionErrorKind::MissingValue),
            ("dom0_max_vcpus=many", OptionErrorKind::BadNumber),
            ("dom0_max_vcpus=-4", OptionErrorKind::BadNumber),
            ("dom0_max_vcpus=4294967296", OptionErrorKind::BadNumber),
            ("dom0_max_vcpus=8-1", OptionErrorKind::InvertedRange),
            ("dom0_max_vcpus=1-2-3", OptionErrorKind::BadNumber),
        ] {
            let cl = CmdLine::parse(line);
            assert_eq!(cl.dom0_max_vcpus, None, "{line}");
            assert_eq!(errors(&cl), [("dom0_max_vcpus", kind)], "{line}");
        }
    }

    #[test]
    fn consoles() {
        let c = |s: &str| CmdLine::parse(s).console;
        assert_eq!(
            c("console=vga"),
            Some(Consoles {
                vga: true,
                ..Default::default()
            })
        );
        assert_eq!(
            c("console=com2"),
            Some(Consoles {
                com2: true,
                ..Default::default()
            })
        );
        assert_eq!(c("console=none"), Some(Consoles::default()));
        let cl = CmdLine::parse("console=com1,lpt1");
        assert_eq!(cl.console, None);
        assert_eq!(errors(&cl), [("console", OptionErrorKind::BadConsole)]);
        assert_eq!(
            errors(&CmdLine::parse("console")),
            [("console", OptionErrorKind::MissingValue)]
        );
        assert_eq!(
            errors(&CmdLine::parse("console=")),
            [("console", OptionErrorKind::MissingValue)]
        );
    }

    #[test]
    fn noreboot_flag_and_bool_forms() {
        assert!(CmdLine::parse("noreboot").noreboot);
        assert!(CmdLine::parse("noreboot=1").noreboot);
        assert!(CmdLine::parse("noreboot=yes").noreboot);
        assert!(!CmdLine::parse("noreboot noreboot=0").noreboot);
        assert!(!CmdLine::parse("noreboot=off").noreboot);
        let cl = CmdLine::parse("noreboot=maybe");
        assert!(!cl.noreboot);
        assert_eq!(errors(&cl), [("noreboot", OptionErrorKind::BadBool)]);
        assert_eq!(
            errors(&CmdLine::parse("noreboot=")),
            [("noreboot", OptionErrorKind::BadBool)]
        );
    }

    #[test]
    fn selftest_option() {
        assert_eq!(
            CmdLine::parse("selftest=fault").selftest,
            Some(SelfTest::Fault)
        );
        let cl = CmdLine::parse("selftest=boom");
        assert_eq!(cl.selftest, None);
        assert_eq!(errors(&cl), [("selftest", OptionErrorKind::BadSelfTest)]);
    }

    #[test]
    fn unknown_options_are_kept() {
        let cl = CmdLine::parse("cpufreq=none loglvl=info iommu=off  dom0_mem=1G x=");
        let unknown: Vec<&str> = cl.unknown().collect();
        assert_eq!(unknown, ["cpufreq=none", "iommu=off", "x="]);
        assert_eq!(cl.loglvl, Some(LogLevel::Info));
        assert_eq!(cl.dom0_mem.unwrap().amount, Some(G));
        assert_eq!(cl.unknown_dropped(), 0);
    }

    #[test]
    fn report_lists_are_bounded() {
        let mut line = std::string::String::new();
        for i in 0..40 {
            line.push_str(&format!("opt{i} loglvl=bad{i} "));
        }
        let cl = CmdLine::parse(&line);
        assert_eq!(cl.unknown().count(), MAX_REPORTS);
        assert_eq!(cl.unknown_dropped(), 40 - MAX_REPORTS);
        assert_eq!(cl.errors().count(), MAX_REPORTS);
        assert_eq!(cl.errors_dropped(), 40 - MAX_REPORTS);
        assert_eq!(cl.unknown().next(), Some("opt0"));
    }

    #[test]
    fn last_occurrence_wins_and_errors_keep_earlier_value() {
        let cl = CmdLine::parse("loglvl=info loglvl=debug dom0_mem=1G dom0_mem=bogus");
        assert_eq!(cl.loglvl, Some(LogLevel::Debug));
        assert_eq!(cl.dom0_mem.unwrap().amount, Some(G));
        assert_eq!(errors(&cl), [("dom0_mem", OptionErrorKind::BadSize)]);
    }

    #[test]
    fn quotes_and_double_dash() {
        let cl = CmdLine::parse("extra=\"a b c\" loglvl=\"warning\" -- root=/dev/xvda  ro");
        assert_eq!(cl.unknown().collect::<Vec<_>>(), ["extra=\"a b c\""]);
        assert_eq!(cl.loglvl, Some(LogLevel::Warning));
        assert_eq!(cl.rest(), Some("root=/dev/xvda  ro"));
        // Options after `--` are not parsed.
        let cl = CmdLine::parse("-- noreboot");
        assert!(!cl.noreboot);
        assert_eq!(cl.rest(), Some("noreboot"));
        let cl = CmdLine::parse("noreboot --");
        assert_eq!(cl.rest(), Some(""));
        // An unterminated quote swallows the rest of the line.
        let cl = CmdLine::parse("a=\"x noreboot");
        assert!(!cl.noreboot);
        assert_eq!(cl.unknown().collect::<Vec<_>>(), ["a=\"x noreboot"]);
    }

    #[test]
    fn hostile_strings_do_not_panic() {
        for line in [
            "=",
            "==",
            "=value",
            "\"",
            "\"\"",
            "a=\"",
            "\u{1F600}=\u{1F600}",
            "loglvl=\u{e9}",
            "dom0_mem=\u{1F600}M",
            "dom0_mem=,,,",
            "console=,",
            "dom0_max_vcpus=-",
            "dom0_mem=0x",
            "loglvl==all",
        ] {
            let cl = CmdLine::parse(line);
            let _ = cl.errors().count() + cl.unknown().count();
        }
        assert_eq!(CmdLine::parse("=x").unknown().collect::<Vec<_>>(), ["=x"]);
        assert_eq!(
            errors(&CmdLine::parse("console=,")),
            [("console", OptionErrorKind::BadConsole)]
        );
        assert_eq!(
            errors(&CmdLine::parse("loglvl==all")),
            [("loglvl", OptionErrorKind::BadLogLevel)]
        );
    }

    #[test]
    fn error_display() {
        let cl = CmdLine::parse("dom0_mem=lots");
        let e = cl.errors().next().unwrap();
        assert_eq!(
            format!("{e}"),
            "bad value 'lots' for 'dom0_mem': expected a size such as 512M"
        );
    }
}
