//! xl.cfg's `cpuid=`: CPU feature levelling, in Xen's two syntaxes.
//!
//! What it owns: parsing both forms into a [`CpuidDelta`] (plain data: per
//! CPUID leaf and register, a 32-character policy string, libxl's
//! `libxl_cpuid_policy_list`), the errors xl reports for them, and
//! [`CpuidDelta::apply`], which turns a delta and a domain's default policy
//! (from `XEN_DOMCTL_get_cpu_policy`) into the leaves `xl create` hands to
//! `XEN_DOMCTL_set_cpu_policy`, refusing a feature the default lacks.
//!
//! - libxl form, a string: `cpuid = "host,aes=0,avx=0,sse4_2=x"`. The first
//!   word must be `host`; then `NAME=VALUE` with VALUE a number (its low
//!   bit for a one-bit flag: `0` clears, `1` sets), `x` (the default), `k`
//!   or `s` (the host's value). Names are libxl's (`libxl_cpuid.c`),
//!   feature flags only (leaves 1, 6, 7.0-2, 0x80000001, 0x80000007,
//!   0x80000008); the multi-bit fields (`family`, `model`, ...) are refused:
//!   Oxen levels features, it does not fake a CPU model.
//! - xend form, a list: `cpuid = [ "0x00000001:ecx=xxxxxxxxxxxxxxxxxxxxxxxxxxxx0xxx", ... ]`,
//!   `LEAF[,SUBLEAF]:eREG=32CHARS[,eREG=32CHARS...]`, the first character
//!   being bit 31; each character `1`, `0`, `x`, `k` or `s`.
//!
//! Errors: xl prints two lines (`while parsing CPUID flag: "avx=2":` then
//! `  error #3: ...`) and goes on without the flag; Oxen refuses the
//! config, in one line: `while parsing CPUID flag "avx=2": error #3:
//! illegal CPUID value (must be: [0|1|x|k|s])` (the caller adds the file
//! and line).
//!
//! DEVIATION: `k` and `s` take the domain's *default* value, not the raw
//! host's: Oxen lets a policy only lose features relative to its default
//! (see `xen_core::cpuid_level`), so the host bits the default hides could
//! never be granted anyway.
//!
//! Follows Xen 4.17 `tools/xl/xl_parse.c` (`parse_config_data`, "cpuid"),
//! `tools/libs/light/libxl_cpuid.c` (`libxl_cpuid_parse_config`,
//! `libxl_cpuid_parse_config_xend`) and `tools/libs/guest/xg_cpuid_x86.c`
//! (`xc_cpuid_xend_policy`).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// `XEN_CPUID_NO_SUBLEAF` / `XEN_CPUID_INPUT_UNUSED`.
pub const NO_SUBLEAF: u32 = 0xffff_ffff;

/// One leaf's requested registers: `regs[r]` for EAX..EDX, the 32 policy
/// characters with bit 31 first, `None` where the register is left as is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuidEntry {
    /// The leaf.
    pub leaf: u32,
    /// The subleaf, or [`NO_SUBLEAF`].
    pub subleaf: u32,
    /// Per register: `b'0'`, `b'1'`, `b'x'`, `b'k'` or `b's'` for bits 31..0.
    pub regs: [Option<[u8; 32]>; 4],
}

/// A parsed `cpuid=`: what to change, leaf by leaf (libxl's
/// `libxl_cpuid_policy_list`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuidDelta {
    /// The leaves, in the order first mentioned.
    pub entries: Vec<CpuidEntry>,
}

/// The register names, EAX..EDX.
pub const REG_NAMES: [&str; 4] = ["eax", "ebx", "ecx", "edx"];

const EAX: usize = 0;
const EBX: usize = 1;
const ECX: usize = 2;
const EDX: usize = 3;
const NA: u32 = NO_SUBLEAF;

/// libxl's one-bit flags: name, leaf, subleaf, register, bit.
pub const FLAGS: &[(&str, u32, u32, usize, u32)] = &[
    ("sse3", 1, NA, ECX, 0),
    ("pclmulqdq", 1, NA, ECX, 1),
    ("dtes64", 1, NA, ECX, 2),
    ("monitor", 1, NA, ECX, 3),
    ("dscpl", 1, NA, ECX, 4),
    ("vmx", 1, NA, ECX, 5),
    ("smx", 1, NA, ECX, 6),
    ("est", 1, NA, ECX, 7),
    ("tm2", 1, NA, ECX, 8),
    ("ssse3", 1, NA, ECX, 9),
    ("cntxid", 1, NA, ECX, 10),
    ("fma", 1, NA, ECX, 12),
    ("cmpxchg16", 1, NA, ECX, 13),
    ("xtpr", 1, NA, ECX, 14),
    ("pdcm", 1, NA, ECX, 15),
    ("pcid", 1, NA, ECX, 17),
    ("dca", 1, NA, ECX, 18),
    ("sse4_1", 1, NA, ECX, 19),
    ("sse4.1", 1, NA, ECX, 19),
    ("sse4_2", 1, NA, ECX, 20),
    ("sse4.2", 1, NA, ECX, 20),
    ("x2apic", 1, NA, ECX, 21),
    ("movbe", 1, NA, ECX, 22),
    ("popcnt", 1, NA, ECX, 23),
    ("tsc-deadline", 1, NA, ECX, 24),
    ("aes", 1, NA, ECX, 25),
    ("xsave", 1, NA, ECX, 26),
    ("osxsave", 1, NA, ECX, 27),
    ("avx", 1, NA, ECX, 28),
    ("f16c", 1, NA, ECX, 29),
    ("rdrand", 1, NA, ECX, 30),
    ("hypervisor", 1, NA, ECX, 31),
    ("fpu", 1, NA, EDX, 0),
    ("vme", 1, NA, EDX, 1),
    ("de", 1, NA, EDX, 2),
    ("pse", 1, NA, EDX, 3),
    ("tsc", 1, NA, EDX, 4),
    ("msr", 1, NA, EDX, 5),
    ("pae", 1, NA, EDX, 6),
    ("mce", 1, NA, EDX, 7),
    ("cmpxchg8", 1, NA, EDX, 8),
    ("apic", 1, NA, EDX, 9),
    ("sysenter", 1, NA, EDX, 11),
    ("mtrr", 1, NA, EDX, 12),
    ("pge", 1, NA, EDX, 13),
    ("mca", 1, NA, EDX, 14),
    ("cmov", 1, NA, EDX, 15),
    ("pat", 1, NA, EDX, 16),
    ("pse36", 1, NA, EDX, 17),
    ("psn", 1, NA, EDX, 18),
    ("clfsh", 1, NA, EDX, 19),
    ("ds", 1, NA, EDX, 21),
    ("acpi", 1, NA, EDX, 22),
    ("mmx", 1, NA, EDX, 23),
    ("fxsr", 1, NA, EDX, 24),
    ("sse", 1, NA, EDX, 25),
    ("sse2", 1, NA, EDX, 26),
    ("ss", 1, NA, EDX, 27),
    ("htt", 1, NA, EDX, 28),
    ("tm", 1, NA, EDX, 29),
    ("ia64", 1, NA, EDX, 30),
    ("pbe", 1, NA, EDX, 31),
    ("arat", 6, NA, EAX, 2),
    ("fsgsbase", 7, 0, EBX, 0),
    ("tsc_adjust", 7, 0, EBX, 1),
    ("bmi1", 7, 0, EBX, 3),
    ("hle", 7, 0, EBX, 4),
    ("avx2", 7, 0, EBX, 5),
    ("smep", 7, 0, EBX, 7),
    ("bmi2", 7, 0, EBX, 8),
    ("erms", 7, 0, EBX, 9),
    ("invpcid", 7, 0, EBX, 10),
    ("rtm", 7, 0, EBX, 11),
    ("cmt", 7, 0, EBX, 12),
    ("mpx", 7, 0, EBX, 14),
    ("avx512f", 7, 0, EBX, 16),
    ("avx512dq", 7, 0, EBX, 17),
    ("rdseed", 7, 0, EBX, 18),
    ("adx", 7, 0, EBX, 19),
    ("smap", 7, 0, EBX, 20),
    ("avx512-ifma", 7, 0, EBX, 21),
    ("clflushopt", 7, 0, EBX, 23),
    ("clwb", 7, 0, EBX, 24),
    ("proc-trace", 7, 0, EBX, 25),
    ("avx512pf", 7, 0, EBX, 26),
    ("avx512er", 7, 0, EBX, 27),
    ("avx512cd", 7, 0, EBX, 28),
    ("sha", 7, 0, EBX, 29),
    ("avx512bw", 7, 0, EBX, 30),
    ("avx512vl", 7, 0, EBX, 31),
    ("prefetchwt1", 7, 0, ECX, 0),
    ("avx512-vbmi", 7, 0, ECX, 1),
    ("umip", 7, 0, ECX, 2),
    ("pku", 7, 0, ECX, 3),
    ("ospke", 7, 0, ECX, 4),
    ("avx512-vbmi2", 7, 0, ECX, 6),
    ("cet-ss", 7, 0, ECX, 7),
    ("gfni", 7, 0, ECX, 8),
    ("vaes", 7, 0, ECX, 9),
    ("vpclmulqdq", 7, 0, ECX, 10),
    ("avx512-vnni", 7, 0, ECX, 11),
    ("avx512-bitalg", 7, 0, ECX, 12),
    ("avx512-vpopcntdq", 7, 0, ECX, 14),
    ("rdpid", 7, 0, ECX, 22),
    ("cldemote", 7, 0, ECX, 25),
    ("pks", 7, 0, ECX, 31),
    ("avx512-4vnniw", 7, 0, EDX, 2),
    ("avx512-4fmaps", 7, 0, EDX, 3),
    ("fsrm", 7, 0, EDX, 4),
    ("avx512-vp2intersect", 7, 0, EDX, 8),
    ("srbds-ctrl", 7, 0, EDX, 9),
    ("md-clear", 7, 0, EDX, 10),
    ("serialize", 7, 0, EDX, 14),
    ("tsxldtrk", 7, 0, EDX, 16),
    ("cet-ibt", 7, 0, EDX, 20),
    ("avx512-fp16", 7, 0, EDX, 23),
    ("ibrsb", 7, 0, EDX, 26),
    ("stibp", 7, 0, EDX, 27),
    ("l1d-flush", 7, 0, EDX, 28),
    ("arch-caps", 7, 0, EDX, 29),
    ("core-caps", 7, 0, EDX, 30),
    ("ssbd", 7, 0, EDX, 31),
    ("avx-vnni", 7, 1, EAX, 4),
    ("avx512-bf16", 7, 1, EAX, 5),
    ("fzrm", 7, 1, EAX, 10),
    ("fsrs", 7, 1, EAX, 11),
    ("fsrcs", 7, 1, EAX, 12),
    ("wrmsrns", 7, 1, EAX, 19),
    ("cet-sss", 7, 1, EDX, 18),
    ("intel-psfd", 7, 2, EDX, 0),
    ("mcdt-no", 7, 2, EDX, 5),
    ("lahfsahf", 0x8000_0001, NA, ECX, 0),
    ("cmplegacy", 0x8000_0001, NA, ECX, 1),
    ("svm", 0x8000_0001, NA, ECX, 2),
    ("extapic", 0x8000_0001, NA, ECX, 3),
    ("altmovcr8", 0x8000_0001, NA, ECX, 4),
    ("abm", 0x8000_0001, NA, ECX, 5),
    ("sse4a", 0x8000_0001, NA, ECX, 6),
    ("misalignsse", 0x8000_0001, NA, ECX, 7),
    ("3dnowprefetch", 0x8000_0001, NA, ECX, 8),
    ("osvw", 0x8000_0001, NA, ECX, 9),
    ("ibs", 0x8000_0001, NA, ECX, 10),
    ("xop", 0x8000_0001, NA, ECX, 11),
    ("skinit", 0x8000_0001, NA, ECX, 12),
    ("wdt", 0x8000_0001, NA, ECX, 13),
    ("lwp", 0x8000_0001, NA, ECX, 15),
    ("fma4", 0x8000_0001, NA, ECX, 16),
    ("nodeid", 0x8000_0001, NA, ECX, 19),
    ("tbm", 0x8000_0001, NA, ECX, 21),
    ("topoext", 0x8000_0001, NA, ECX, 22),
    ("perfctr_core", 0x8000_0001, NA, ECX, 23),
    ("perfctr_nb", 0x8000_0001, NA, ECX, 24),
    ("syscall", 0x8000_0001, NA, EDX, 11),
    ("nx", 0x8000_0001, NA, EDX, 20),
    ("mmxext", 0x8000_0001, NA, EDX, 22),
    ("ffxsr", 0x8000_0001, NA, EDX, 25),
    ("page1gb", 0x8000_0001, NA, EDX, 26),
    ("rdtscp", 0x8000_0001, NA, EDX, 27),
    ("lm", 0x8000_0001, NA, EDX, 29),
    ("3dnowext", 0x8000_0001, NA, EDX, 30),
    ("3dnow", 0x8000_0001, NA, EDX, 31),
    ("invtsc", 0x8000_0007, NA, EDX, 8),
    ("clzero", 0x8000_0008, NA, EBX, 0),
    ("rstr-fp-err-ptrs", 0x8000_0008, NA, EBX, 2),
    ("wbnoinvd", 0x8000_0008, NA, EBX, 9),
    ("ibpb", 0x8000_0008, NA, EBX, 12),
    ("ibrs", 0x8000_0008, NA, EBX, 14),
    ("amd-stibp", 0x8000_0008, NA, EBX, 15),
    ("ibrs-always", 0x8000_0008, NA, EBX, 16),
    ("stibp-always", 0x8000_0008, NA, EBX, 17),
    ("ibrs-fast", 0x8000_0008, NA, EBX, 18),
    ("ibrs-same-mode", 0x8000_0008, NA, EBX, 19),
    ("no-lmsl", 0x8000_0008, NA, EBX, 20),
    ("ppin", 0x8000_0008, NA, EBX, 23),
    ("amd-ssbd", 0x8000_0008, NA, EBX, 24),
    ("virt-ssbd", 0x8000_0008, NA, EBX, 25),
    ("ssb-no", 0x8000_0008, NA, EBX, 26),
    ("psfd", 0x8000_0008, NA, EBX, 28),
    ("btc-no", 0x8000_0008, NA, EBX, 29),
    ("ibpb-ret", 0x8000_0008, NA, EBX, 30),
];

/// libxl's multi-bit fields, which Oxen does not let a config change.
pub const FIELDS: &[&str] = &[
    "maxleaf",
    "stepping",
    "model",
    "family",
    "brandid",
    "clflush",
    "proccount",
    "localapicid",
    "procpkg",
    "nc",
    "apicidsize",
    "maxhvleaf",
];

/// The flag named `name`: leaf, subleaf, register, bit.
pub fn flag(name: &str) -> Option<(u32, u32, usize, u32)> {
    FLAGS
        .iter()
        .find(|f| f.0 == name)
        .map(|&(_, l, s, r, b)| (l, s, r, b))
}

/// The (first) name of the flag at `leaf`/`subleaf`/`reg`/`bit`.
pub fn flag_name(leaf: u32, subleaf: u32, reg: usize, bit: u32) -> Option<&'static str> {
    FLAGS
        .iter()
        .find(|f| f.1 == leaf && f.2 == subleaf && f.3 == reg && f.4 == bit)
        .map(|f| f.0)
}

/// Why a `cpuid=` was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CpuidError {
    /// libxl form: the first word is not `host` (the whole string).
    NotHost(String),
    /// libxl form: a `NAME=VALUE` item and xl's error number (1 missing
    /// `=`, 2 unknown name, 3 bad value).
    Flag(String, u32),
    /// libxl form: a multi-bit field Oxen does not change.
    Field(String),
    /// xend form: the item and xl's error number (1 bad leaf, 2 bad
    /// subleaf, 3 missing colon, 4 bad register, 5 not 32 characters).
    Xend(String, u32),
    /// xend form: a policy character that is none of `01xks`.
    XendChar(String, char),
}

impl fmt::Display for CpuidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CpuidError::NotHost(s) => write!(
                f,
                "while parsing CPUID string \"{s}\": error: first word must be \"host\""
            ),
            CpuidError::Flag(s, n) => {
                let why = match n {
                    1 => "missing \"=\" in key=value",
                    2 => "unknown CPUID flag name",
                    3 => "illegal CPUID value (must be: [0|1|x|k|s])",
                    _ => "unknown error",
                };
                write!(f, "while parsing CPUID flag \"{s}\": error #{n}: {why}")
            }
            CpuidError::Field(s) => write!(
                f,
                "while parsing CPUID flag \"{s}\": error: only feature flags can be set (Oxen levels features, not CPU models)"
            ),
            CpuidError::Xend(s, n) => {
                let why = match n {
                    1 => "illegal leaf number",
                    2 => "illegal subleaf number",
                    3 => "missing colon",
                    4 => "invalid register name (must be e[abcd]x)",
                    5 => "policy string must be exactly 32 characters long",
                    _ => "unknown error",
                };
                write!(f, "while parsing CPUID line \"{s}\": error #{n}: {why}")
            }
            CpuidError::XendChar(s, c) => write!(
                f,
                "while parsing CPUID line \"{s}\": error: bad character '{c}' in a register string (must be: [0|1|x|k|s])"
            ),
        }
    }
}

/// C's `strtoul(s, &end, 0)` for the prefix of `s`: the value and the
/// rest, or `None` when no digits start it (leading blanks and a sign are
/// taken, `0x` is hex, a leading `0` octal; overflow saturates).
fn strtoul(s: &str) -> Option<(u64, &str)> {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let b = t.as_bytes();
    let (radix, start) = if b.len() >= 3
        && b[0] == b'0'
        && (b[1] | 0x20) == b'x'
        && (b[2] as char).is_ascii_hexdigit()
    {
        (16, 2)
    } else if b.first() == Some(&b'0') {
        (8, 0)
    } else {
        (10, 0)
    };
    let digits = t[start..]
        .bytes()
        .take_while(|c| (*c as char).is_digit(radix))
        .count();
    if digits == 0 {
        return None;
    }
    let mut v: u64 = 0;
    for c in t[start..start + digits].bytes() {
        let d = (c as char).to_digit(radix).unwrap_or(0);
        v = v
            .checked_mul(u64::from(radix))
            .and_then(|v| v.checked_add(u64::from(d)))
            .unwrap_or(u64::MAX);
    }
    Some((if neg { v.wrapping_neg() } else { v }, &t[start + digits..]))
}

impl CpuidDelta {
    /// Nothing to change.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// libxl's `cpuid_find_match`: the entry for `leaf`/`subleaf`, made
    /// if missing.
    fn entry(&mut self, leaf: u32, subleaf: u32) -> &mut CpuidEntry {
        let i = match self
            .entries
            .iter()
            .position(|e| e.leaf == leaf && e.subleaf == subleaf)
        {
            Some(i) => i,
            None => {
                self.entries.push(CpuidEntry {
                    leaf,
                    subleaf,
                    regs: [None; 4],
                });
                self.entries.len() - 1
            }
        };
        &mut self.entries[i]
    }

    /// The libxl form, `"host,NAME=VALUE,..."` (xl splits on `,` with
    /// `strtok`, so empty items vanish; an empty string changes nothing).
    pub fn parse_libxl(s: &str) -> Result<CpuidDelta, CpuidError> {
        let mut d = CpuidDelta::default();
        let mut words = s.split(',').filter(|w| !w.is_empty());
        match words.next() {
            None => return Ok(d),
            Some("host") => {}
            Some(_) => return Err(CpuidError::NotHost(String::from(s))),
        }
        for w in words {
            let Some((name, val)) = w.split_once('=') else {
                return Err(CpuidError::Flag(String::from(w), 1));
            };
            let Some((leaf, subleaf, reg, bit)) = flag(name) else {
                if FIELDS.contains(&name) {
                    return Err(CpuidError::Field(String::from(w)));
                }
                return Err(CpuidError::Flag(String::from(w), 2));
            };
            let c = match strtoul(val) {
                Some((n, _)) => {
                    if n & 1 != 0 {
                        b'1'
                    } else {
                        b'0'
                    }
                }
                None => match val.as_bytes().first() {
                    Some(&c @ (b'x' | b'k' | b's')) => c,
                    _ => return Err(CpuidError::Flag(String::from(w), 3)),
                },
            };
            let e = d.entry(leaf, subleaf);
            let r = e.regs[reg].get_or_insert([b'x'; 32]);
            r[31 - bit as usize] = c;
        }
        Ok(d)
    }

    /// The xend form, one list item: `LEAF[,SUBLEAF]:eREG=CHARS[,...]`,
    /// added to `self` (later items win, as in libxl).
    pub fn add_xend(&mut self, item: &str) -> Result<(), CpuidError> {
        let err = |n| CpuidError::Xend(String::from(item), n);
        let (leaf, rest) = strtoul(item).ok_or(err(1))?;
        let (subleaf, rest) = match rest.strip_prefix(',') {
            Some(r) => {
                let (s, r) = strtoul(r).ok_or(err(2))?;
                (s as u32, r)
            }
            None => (NO_SUBLEAF, rest),
        };
        let mut rest = rest.strip_prefix(':').ok_or(err(3))?;
        let mut regs: [Option<[u8; 32]>; 4] = [None; 4];
        while !rest.is_empty() {
            let b = rest.as_bytes();
            if b.len() < 3 || b[0] != b'e' || b[2] != b'x' || !(b'a'..=b'd').contains(&b[1]) {
                return Err(err(4));
            }
            let reg = (b[1] - b'a') as usize;
            let Some(eq) = rest.find('=') else {
                return Err(err(4));
            };
            let val_and_more = &rest[eq + 1..];
            let (val, more) = match val_and_more.find(',') {
                Some(i) => (&val_and_more[..i], Some(&val_and_more[i + 1..])),
                None => (val_and_more, None),
            };
            if val.len() != 32 {
                return Err(err(5));
            }
            let mut chars = [0u8; 32];
            for (i, c) in val.bytes().enumerate() {
                if !matches!(c, b'0' | b'1' | b'x' | b'k' | b's') {
                    return Err(CpuidError::XendChar(String::from(item), c as char));
                }
                chars[i] = c;
            }
            regs[reg] = Some(chars);
            match more {
                None => break,
                Some(m) => rest = m.trim_start_matches([' ', '\n']),
            }
        }
        let e = self.entry(leaf as u32, subleaf);
        for (r, v) in regs.into_iter().enumerate() {
            if v.is_some() {
                e.regs[r] = v;
            }
        }
        Ok(())
    }

    /// The xend form, a list of items.
    pub fn parse_xend(items: &[&str]) -> Result<CpuidDelta, CpuidError> {
        let mut d = CpuidDelta::default();
        for i in items {
            d.add_xend(i)?;
        }
        Ok(d)
    }

    /// Applies the delta to `policy` (the domain's default leaves, as
    /// `(leaf, subleaf, [eax, ebx, ecx, edx])`), as libxc's
    /// `xc_cpuid_xend_policy` does: `1` sets, `0` clears, `x`, `k` and `s`
    /// keep the default (see the module notes). A `1` the default lacks is
    /// refused ([`ApplyError::Unavailable`]); a leaf the policy lacks is
    /// refused if anything in it would be set, and ignored otherwise (its
    /// bits are clear already), but leaves 4, 7, 0xb and 0xd without a
    /// subleaf are refused ([`ApplyError::NeedsSubleaf`]: `7:ebx=...`
    /// would otherwise change nothing, silently; libxc refuses every
    /// missing leaf).
    pub fn apply(&self, policy: &mut [(u32, u32, [u32; 4])]) -> Result<(), ApplyError> {
        for e in &self.entries {
            if e.subleaf == NO_SUBLEAF
                && matches!(e.leaf, 0x4 | 0x7 | 0xb | 0xd)
                && e.regs
                    .iter()
                    .flatten()
                    .flatten()
                    .any(|c| matches!(c, b'0' | b'1'))
            {
                return Err(ApplyError::NeedsSubleaf(e.leaf));
            }
            // Leaves without subleaves are NO_SUBLEAF in both lists; libxl
            // names leaf 7's subleaves explicitly.
            let slot = policy
                .iter()
                .position(|(l, s, _)| *l == e.leaf && *s == e.subleaf);
            for (r, chars) in e.regs.iter().enumerate() {
                let Some(chars) = chars else { continue };
                let def = slot.map_or(0, |i| policy[i].2[r]);
                let mut v = def;
                for (j, &c) in chars.iter().enumerate() {
                    let bit = 31 - j as u32;
                    match c {
                        b'1' => {
                            if def & (1 << bit) == 0 {
                                return Err(ApplyError::Unavailable(Unavailable {
                                    leaf: e.leaf,
                                    subleaf: e.subleaf,
                                    reg: r,
                                    bit,
                                }));
                            }
                            v |= 1 << bit;
                        }
                        b'0' => v &= !(1 << bit),
                        _ => {}
                    }
                }
                if let Some(i) = slot {
                    policy[i].2[r] = v;
                }
            }
        }
        Ok(())
    }
}

/// For restore and migration: the first feature that `policy` (a guest's
/// policy, as saved with it) offers and `available` (the default policy
/// of a new domain of the same type on this host) lacks, over the feature
/// words the hypervisor levels (`xen_core::cpuid_level::FEATURE_WORDS`).
/// A guest must not move to a host where this is `Some`: it may be using
/// the feature. Both lists are `(leaf, subleaf, [eax, ebx, ecx, edx])`;
/// a leaf missing from either reads as zeros.
pub fn missing_feature(
    policy: &[(u32, u32, [u32; 4])],
    available: &[(u32, u32, [u32; 4])],
) -> Option<Unavailable> {
    let word = |set: &[(u32, u32, [u32; 4])], leaf: u32, subleaf: u32, reg: usize| {
        set.iter()
            .find(|(l, s, _)| *l == leaf && *s == subleaf)
            .map_or(0, |(_, _, r)| r[reg])
    };
    for &(leaf, subleaf, reg) in xen_core::cpuid_level::FEATURE_WORDS.iter() {
        let lacking = word(policy, leaf, subleaf, reg) & !word(available, leaf, subleaf, reg);
        if lacking != 0 {
            return Some(Unavailable {
                leaf,
                subleaf,
                reg,
                bit: lacking.trailing_zeros(),
            });
        }
    }
    None
}

/// Why a delta cannot be applied to a domain's policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyError {
    /// A bit asked for that the default lacks.
    Unavailable(Unavailable),
    /// An xend line for a leaf with subleaves, without one.
    NeedsSubleaf(u32),
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApplyError::Unavailable(u) => u.fmt(f),
            ApplyError::NeedsSubleaf(l) => write!(
                f,
                "CPUID leaf {l:#010x} has subleaves: name one (\"{l:#x},0:...\")"
            ),
        }
    }
}

/// A feature asked for (`=1`) that the domain's default policy lacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unavailable {
    /// Its leaf.
    pub leaf: u32,
    /// Its subleaf or [`NO_SUBLEAF`].
    pub subleaf: u32,
    /// Its register (0..=3: EAX..EDX).
    pub reg: usize,
    /// Its bit.
    pub bit: u32,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = if self.subleaf == NO_SUBLEAF {
            format!("leaf {:#010x}", self.leaf)
        } else {
            format!("leaf {:#010x} subleaf {}", self.leaf, self.subleaf)
        };
        let reg = REG_NAMES.get(self.reg).copied().unwrap_or("e?x");
        match flag_name(self.leaf, self.subleaf, self.reg, self.bit) {
            Some(n) => write!(
                f,
                "CPUID feature \"{n}\" ({at} {reg} bit {}) is not available to this guest on this host",
                self.bit
            ),
            None => write!(
                f,
                "CPUID {at} {reg} bit {} is not available to this guest on this host",
                self.bit
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    fn chars(s: &str) -> [u8; 32] {
        s.as_bytes().try_into().unwrap()
    }

    fn with(bit: u32, c: u8) -> [u8; 32] {
        let mut r = [b'x'; 32];
        r[31 - bit as usize] = c;
        r
    }

    #[test]
    fn libxl_form() {
        let d = CpuidDelta::parse_libxl("host,aes=0,avx=0,sse4_2=x,avx2=1,lm=k,rdtscp=s").unwrap();
        assert_eq!(d.entries.len(), 3);
        let l1 = &d.entries[0];
        assert_eq!((l1.leaf, l1.subleaf), (1, NO_SUBLEAF));
        let mut want = [b'x'; 32];
        want[31 - 25] = b'0';
        want[31 - 28] = b'0';
        assert_eq!(l1.regs[ECX], Some(want));
        assert_eq!(l1.regs[EDX], None);
        let l7 = &d.entries[1];
        assert_eq!((l7.leaf, l7.subleaf), (7, 0));
        assert_eq!(l7.regs[EBX], Some(with(5, b'1')));
        let e1 = &d.entries[2];
        assert_eq!(e1.leaf, 0x8000_0001);
        let mut want = [b'x'; 32];
        want[31 - 29] = b'k';
        want[31 - 27] = b's';
        assert_eq!(e1.regs[EDX], Some(want));
        // Numbers as strtoull reads them: the low bit counts; later wins.
        let d = CpuidDelta::parse_libxl("host,aes=0x1,aes=2,sse3=1junk,,fpu=-1").unwrap();
        assert_eq!(d.entries[0].regs[ECX].unwrap()[31 - 25], b'0');
        assert_eq!(d.entries[0].regs[ECX].unwrap()[31], b'1');
        assert_eq!(d.entries[0].regs[EDX].unwrap()[31], b'1');
        // Aliases and the empty cases.
        let d = CpuidDelta::parse_libxl("host,sse4.2=0").unwrap();
        assert_eq!(d.entries[0].regs[ECX], Some(with(20, b'0')));
        assert!(CpuidDelta::parse_libxl("host").unwrap().is_empty());
        assert!(CpuidDelta::parse_libxl("").unwrap().is_empty());
        assert!(CpuidDelta::parse_libxl(",,").unwrap().is_empty());
    }

    #[test]
    fn libxl_form_errors_are_one_line() {
        for (s, want) in [
            (
                "aes=0",
                "while parsing CPUID string \"aes=0\": error: first word must be \"host\"",
            ),
            (
                "hostile,aes=0",
                "while parsing CPUID string \"hostile,aes=0\": error: first word must be \"host\"",
            ),
            (
                "host,aes",
                "while parsing CPUID flag \"aes\": error #1: missing \"=\" in key=value",
            ),
            (
                "host,aes=0,frobnicate=1",
                "while parsing CPUID flag \"frobnicate=1\": error #2: unknown CPUID flag name",
            ),
            (
                "host,AES=0",
                "while parsing CPUID flag \"AES=0\": error #2: unknown CPUID flag name",
            ),
            (
                "host,avx=2x",
                "", // a number: fine
            ),
            (
                "host,avx=yes",
                "while parsing CPUID flag \"avx=yes\": error #3: illegal CPUID value (must be: [0|1|x|k|s])",
            ),
            (
                "host,avx=",
                "while parsing CPUID flag \"avx=\": error #3: illegal CPUID value (must be: [0|1|x|k|s])",
            ),
            (
                "host,=1",
                "while parsing CPUID flag \"=1\": error #2: unknown CPUID flag name",
            ),
            (
                "host,family=6",
                "while parsing CPUID flag \"family=6\": error: only feature flags can be set (Oxen levels features, not CPU models)",
            ),
        ] {
            match CpuidDelta::parse_libxl(s) {
                Ok(_) => assert_eq!(want, "", "{s} parsed"),
                Err(e) => {
                    let t = e.to_string();
                    assert_eq!(t, want, "{s}");
                    assert!(!t.contains('\n'));
                }
            }
        }
    }

    #[test]
    fn xend_form() {
        let d = CpuidDelta::parse_xend(&[
            "0x00000001:ecx=xxxxxxxxxxx0xxxxxxxxxxxxxxxxxxxx",
            "7,0:ebx=xxxxxxxxxxxxxxxxxxxxxxxxxx0xxxxx,edx=kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk",
            "0x80000001:ecx=ssssssssssssssssssssssssssssssss, edx=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx1",
            "1:edx=0xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        ])
        .unwrap();
        assert_eq!(d.entries.len(), 3);
        assert_eq!(d.entries[0].regs[ECX], Some(with(20, b'0')));
        assert_eq!(
            d.entries[0].regs[EDX],
            Some(with(31, b'0')),
            "merged into leaf 1"
        );
        assert_eq!((d.entries[1].leaf, d.entries[1].subleaf), (7, 0));
        assert_eq!(d.entries[1].regs[EBX], Some(with(5, b'0')));
        assert_eq!(d.entries[1].regs[EDX], Some([b'k'; 32]));
        assert_eq!(d.entries[2].regs[ECX], Some([b's'; 32]));
        assert_eq!(d.entries[2].regs[EDX], Some(with(0, b'1')));
        // Decimal and octal leaves, as strtoul reads them.
        let d = CpuidDelta::parse_xend(&["010:eax=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"]).unwrap();
        assert_eq!(d.entries[0].leaf, 8);
        assert_eq!(chars("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"), [b'x'; 32]);
        // A trailing comma ends the list (libxl accepts it).
        let d = CpuidDelta::parse_xend(&["1:eax=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx,"]).unwrap();
        assert_eq!(d.entries[0].regs[EAX], Some([b'x'; 32]));
    }

    #[test]
    fn xend_form_errors_are_one_line() {
        let x32 = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
        for (s, want) in [
            (format!("leaf1:ecx={x32}"), "error #1: illegal leaf number"),
            (format!("1,z:ecx={x32}"), "error #2: illegal subleaf number"),
            (format!("1 ecx={x32}"), "error #3: missing colon"),
            ("1".to_string(), "error #3: missing colon"),
            (
                format!("1:ecy={x32}"),
                "error #4: invalid register name (must be e[abcd]x)",
            ),
            (
                format!("1:eex={x32}"),
                "error #4: invalid register name (must be e[abcd]x)",
            ),
            (
                "1:ecx".to_string(),
                "error #4: invalid register name (must be e[abcd]x)",
            ),
            (
                "1:e".to_string(),
                "error #4: invalid register name (must be e[abcd]x)",
            ),
            (
                "1:ecx=xxx".to_string(),
                "error #5: policy string must be exactly 32 characters long",
            ),
            (
                format!("1:ecx={x32}x"),
                "error #5: policy string must be exactly 32 characters long",
            ),
            (
                "1:ecx=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx2".to_string(),
                "error: bad character '2' in a register string (must be: [0|1|x|k|s])",
            ),
        ] {
            let e = CpuidDelta::parse_xend(&[&s]).unwrap_err().to_string();
            assert_eq!(e, format!("while parsing CPUID line \"{s}\": {want}"));
            assert!(!e.contains('\n'));
        }
    }

    /// A default policy: leaf 1 with SSE4.2 and AVX, leaf 7.0 with AVX2,
    /// no VMX.
    fn policy() -> Vec<(u32, u32, [u32; 4])> {
        vec![
            (0, NO_SUBLEAF, [0xd, 0, 0, 0]),
            (
                1,
                NO_SUBLEAF,
                [0x806f8, 0x800, (1 << 20) | (1 << 28) | (1 << 31), 0x1],
            ),
            (7, 0, [0, 1 << 5, 0, 0]),
            (0x8000_0001, NO_SUBLEAF, [0, 0, 1, 1 << 29]),
        ]
    }

    #[test]
    fn apply_levels_down() {
        let mut p = policy();
        CpuidDelta::parse_libxl("host,sse4_2=0,avx2=0,lm=k,hypervisor=1")
            .unwrap()
            .apply(&mut p)
            .unwrap();
        assert_eq!(p[1].2[ECX], (1 << 28) | (1 << 31));
        assert_eq!(p[1].2[EAX], 0x806f8, "other registers untouched");
        assert_eq!(p[2].2[EBX], 0);
        assert_eq!(p[3].2[EDX], 1 << 29);
        // Clearing something in a leaf the policy lacks: nothing to do.
        let mut p = policy();
        CpuidDelta::parse_libxl("host,arat=0,invtsc=0")
            .unwrap()
            .apply(&mut p)
            .unwrap();
        assert_eq!(p, policy());
        // The xend form likewise.
        let mut p = policy();
        CpuidDelta::parse_xend(&["1:ecx=xxxxxxxxxxx0xxxxxxxxxxxxxxxxxxxx"])
            .unwrap()
            .apply(&mut p)
            .unwrap();
        assert_eq!(p[1].2[ECX], (1 << 28) | (1 << 31));
    }

    #[test]
    fn apply_refuses_what_the_default_lacks() {
        let mut p = policy();
        let e = CpuidDelta::parse_libxl("host,vmx=1")
            .unwrap()
            .apply(&mut p)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "CPUID feature \"vmx\" (leaf 0x00000001 ecx bit 5) is not available to this guest on this host"
        );
        let e = CpuidDelta::parse_libxl("host,avx512f=1")
            .unwrap()
            .apply(&mut p)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "CPUID feature \"avx512f\" (leaf 0x00000007 subleaf 0 ebx bit 16) is not available to this guest on this host"
        );
        let e = CpuidDelta::parse_libxl("host,invtsc=1")
            .unwrap()
            .apply(&mut p)
            .unwrap_err();
        let ApplyError::Unavailable(u) = e else {
            panic!("{e:?}")
        };
        assert_eq!((u.leaf, u.reg, u.bit), (0x8000_0007, EDX, 8));
        // Leaf 7 without its subleaf would change nothing: refused.
        let e = CpuidDelta::parse_xend(&["7:ebx=xxxxxxxxxxxxxxxxxxxxxxxxxx0xxxxx"])
            .unwrap()
            .apply(&mut p)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "CPUID leaf 0x00000007 has subleaves: name one (\"0x7,0:...\")"
        );
        // ... unless it changes nothing anyway.
        CpuidDelta::parse_xend(&["7:ebx=kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"])
            .unwrap()
            .apply(&mut p)
            .unwrap();
        let e = CpuidDelta::parse_xend(&["1:eax=1xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"])
            .unwrap()
            .apply(&mut p)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "CPUID leaf 0x00000001 eax bit 31 is not available to this guest on this host"
        );
    }

    #[test]
    fn table_is_consistent() {
        for (i, f) in FLAGS.iter().enumerate() {
            assert!(f.3 < 4 && f.4 < 32, "{}", f.0);
            // Only aliases (sse4.1/sse4.2) share a bit.
            if let Some(other) = FLAGS[..i]
                .iter()
                .find(|g| (g.1, g.2, g.3, g.4) == (f.1, f.2, f.3, f.4))
            {
                assert!(other.0.replace('_', ".") == f.0, "{} / {}", other.0, f.0);
            }
            assert!(!FIELDS.contains(&f.0));
        }
    }

    #[test]
    fn a_guest_cannot_move_where_a_feature_it_has_is_missing() {
        let here = policy();
        // The same host: fine; a levelled guest: fine anywhere with its features.
        assert_eq!(missing_feature(&here, &here), None);
        let mut lev = policy();
        CpuidDelta::parse_libxl("host,avx2=0,sse4_2=0")
            .unwrap()
            .apply(&mut lev)
            .unwrap();
        let mut older = policy();
        older[2].2[EBX] = 0; // no AVX2
        older[1].2[ECX] &= !(1 << 20); // no SSE4.2
        assert_eq!(missing_feature(&lev, &older), None);
        // The unlevelled guest cannot go there: AVX2 is named... after
        // SSE4.2, which comes first in leaf order.
        let e = missing_feature(&here, &older).unwrap();
        assert_eq!(
            e.to_string(),
            "CPUID feature \"sse4_2\" (leaf 0x00000001 ecx bit 20) is not available to this guest on this host"
        );
        older[1].2[ECX] |= 1 << 20;
        let e = missing_feature(&here, &older).unwrap();
        assert_eq!((e.leaf, e.subleaf, e.reg, e.bit), (7, 0, EBX, 5));
        // A leaf the target lacks entirely reads as zeros.
        assert_eq!(missing_feature(&here, &here[..2]).map(|e| e.leaf), Some(7));
        // Non-feature registers (leaf 1 EAX, the model) do not matter.
        let mut other = policy();
        other[1].2[EAX] = 0x906ea;
        assert_eq!(missing_feature(&here, &other), None);
    }
}
