//! Names and times for new directory entries: checking a long name,
//! deciding whether it fits a bare 8.3 entry, generating a unique 8.3
//! alias (`GUEST~1.SAV`) and the VFAT long-name entries (spec sections
//! 6 and 7), and [`DosTime`]. Pure functions of their arguments.

use alloc::collections::BTreeSet;
use alloc::string::ToString;
use alloc::vec::Vec;

use super::dir::{checksum, ATTR_LONG_NAME, CHARS_PER_ENTRY, LAST_LONG, LONG_CHAR_OFFSETS};
use super::FatError;

/// The most UTF-16 units in a long name (spec section 7).
const MAX_LONG_UNITS: usize = 255;
/// Characters a short name may hold besides `A-Z` and `0-9` (spec
/// section 6.1).
const SHORT_SPECIALS: &[u8] = b"!#$%&'()-@^_`{}~";

/// A FAT date and time (local time, taken to be UTC here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DosTime {
    /// Bits 15-9: years since 1980; 8-5: month 1-12; 4-0: day 1-31.
    pub date: u16,
    /// Bits 15-11: hours; 10-5: minutes; 4-0: seconds / 2.
    pub time: u16,
    /// Hundredths of a second past `time` (0..=199), creation time only.
    pub hundredths: u8,
}

/// 1980-01-01 00:00:00 UTC, the first time FAT can store.
const DOS_EPOCH: u64 = 315_532_800;
/// 2107-12-31 23:59:59 UTC, the last.
const DOS_END: u64 = 4_354_819_199;

impl DosTime {
    /// The FAT time of `secs` seconds since 1970-01-01 UTC, clamped to
    /// 1980-01-01 .. 2107-12-31.
    pub fn from_unix(secs: u64) -> DosTime {
        let secs = secs.clamp(DOS_EPOCH, DOS_END);
        let days = secs / 86400;
        let rem = secs % 86400;
        // Howard Hinnant's civil_from_days, days since 1970-01-01 ≥ 0.
        let z = days + 719_468;
        let era = z / 146_097;
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + u64::from(month <= 2);
        let (h, m, s) = (rem / 3600, rem / 60 % 60, rem % 60);
        DosTime {
            date: (((year - 1980) << 9) | (month << 5) | day) as u16,
            time: ((h << 11) | (m << 5) | (s / 2)) as u16,
            hundredths: ((s % 2) * 100) as u8,
        }
    }
}

fn bad(name: &str, why: &'static str) -> FatError {
    FatError::BadName {
        name: name.to_string(),
        why,
    }
}

/// Checks that `name` may be stored as a long name.
pub(super) fn check_long(name: &str) -> Result<(), FatError> {
    if name.is_empty() {
        return Err(bad(name, "empty"));
    }
    if name == "." || name == ".." {
        return Err(bad(name, "reserved name"));
    }
    if let Some(c) = name
        .chars()
        .find(|&c| c.is_control() || "\"*/:<>?\\|".contains(c))
    {
        return Err(if c.is_control() {
            bad(name, "control character")
        } else {
            bad(name, "contains one of \" * / : < > ? \\ |")
        });
    }
    if name.ends_with('.') || name.ends_with(' ') {
        return Err(bad(name, "ends with a dot or a space"));
    }
    if name.encode_utf16().count() > MAX_LONG_UNITS {
        return Err(bad(name, "longer than 255 characters"));
    }
    Ok(())
}

fn short_char(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit() || SHORT_SPECIALS.contains(&b)
}

/// `name` as an 11-byte short name if it is exactly a valid upper-case
/// 8.3 name (then it needs no long-name entries).
pub(super) fn exact_short(name: &str) -> Option<[u8; 11]> {
    let (base, ext) = name.split_once('.').unwrap_or((name, ""));
    let ok = |s: &str, max: usize| s.len() <= max && s.bytes().all(short_char);
    if base.is_empty() || !ok(base, 8) || !ok(ext, 3) || (name.contains('.') && ext.is_empty()) {
        return None;
    }
    let mut out = [b' '; 11];
    out[..base.len()].copy_from_slice(base.as_bytes());
    out[8..8 + ext.len()].copy_from_slice(ext.as_bytes());
    Some(out)
}

/// Upper-cases and filters one part of a long name for its alias; the
/// bool says whether anything was lost (a character replaced or
/// dropped, or the part cut to `max`).
fn alias_part(s: &str, max: usize) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut lossy = false;
    for c in s.chars() {
        if c == ' ' || c == '.' {
            lossy = true;
            continue;
        }
        let u = c.to_ascii_uppercase();
        let b = if u.is_ascii() && short_char(u as u8) {
            u as u8
        } else {
            lossy = true;
            b'_'
        };
        if out.len() == max {
            lossy = true;
            break;
        }
        out.push(b);
    }
    (out, lossy)
}

/// A short name for long name `name` that is none of `taken`: the
/// upper-cased name itself if it fits 8.3 without loss, else the first
/// free `BASE~N.EXT` (N = 1, 2, ...), as Windows and Linux make them.
pub(super) fn alias(name: &str, taken: &BTreeSet<[u8; 11]>) -> Option<[u8; 11]> {
    let trimmed = name.trim_start_matches(['.', ' ']);
    let lead_lost = trimmed.len() != name.len();
    let (base, ext) = match trimmed.rfind('.') {
        Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
        None => (trimmed, ""),
    };
    let (mut b, lb) = alias_part(base, 8);
    let (e, le) = alias_part(ext, 3);
    if b.is_empty() {
        b.push(b'_');
    }
    let mut out = [b' '; 11];
    out[8..8 + e.len()].copy_from_slice(&e);
    if !(lead_lost || lb || le) {
        out[..b.len()].copy_from_slice(&b);
        if !taken.contains(&out) {
            return Some(out);
        }
    }
    // Far more numbers than a directory (65536 entries) has names.
    for n in 1u32..1_000_000 {
        let mut tail = [0u8; 8];
        let digits = {
            let mut v = n;
            let mut d = Vec::new();
            while v > 0 {
                d.push(b'0' + (v % 10) as u8);
                v /= 10;
            }
            d.reverse();
            d
        };
        let tlen = 1 + digits.len();
        tail[0] = b'~';
        tail[1..tlen].copy_from_slice(&digits);
        let keep = b.len().min(8 - tlen);
        out[..8].copy_from_slice(b"        ");
        out[..keep].copy_from_slice(&b[..keep]);
        out[keep..keep + tlen].copy_from_slice(&tail[..tlen]);
        if !taken.contains(&out) {
            return Some(out);
        }
    }
    None
}

/// The long-name entries for `name` in disk order (last part first),
/// tied to the short name `short` by its checksum.
pub(super) fn long_entries(name: &str, short: &[u8; 11]) -> Vec<[u8; 32]> {
    let mut units: Vec<u16> = name.encode_utf16().collect();
    let n = units.len().div_ceil(CHARS_PER_ENTRY);
    if units.len() < n * CHARS_PER_ENTRY {
        units.push(0);
    }
    units.resize(n * CHARS_PER_ENTRY, 0xFFFF);
    let sum = checksum(short);
    (1..=n)
        .rev()
        .map(|ord| {
            let mut e = [0u8; 32];
            e[0] = ord as u8 | if ord == n { LAST_LONG } else { 0 };
            e[11] = ATTR_LONG_NAME;
            e[13] = sum;
            for (i, &o) in LONG_CHAR_OFFSETS.iter().enumerate() {
                let u = units[(ord - 1) * CHARS_PER_ENTRY + i];
                e[o..o + 2].copy_from_slice(&u.to_le_bytes());
            }
            e
        })
        .collect()
}
