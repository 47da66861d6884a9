//! Parsing `xl`'s argument values: memory sizes with unit suffixes
//! (xl_parse.c `parse_mem_size_kb`: a number of MiB by default, or with
//! `b`, `k`, `m`, `g`, `t`), plain decimal numbers, and domain qualifiers
//! (libxl `libxl_domain_qualifier_to_domid`: all digits is an id,
//! anything else a name).

/// A domain argument: an id (all digits) or a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainQualifier<'a> {
    /// All digits: a domain id.
    Id(u32),
    /// Anything else: a name to look up.
    Name(&'a str),
}

impl<'a> DomainQualifier<'a> {
    /// Classifies `s` as libxl does. Digits that do not fit a domain id are
    /// a name (which will not be found).
    pub fn parse(s: &'a str) -> DomainQualifier<'a> {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(id) = s.parse::<u32>() {
                return DomainQualifier::Id(id);
            }
        }
        DomainQualifier::Name(s)
    }
}

/// Parses a memory size into KiB: decimal digits, then at most one unit
/// letter (any case): `b` bytes (rounded down to KiB), `k` KiB, `m` (or
/// none) MiB, `g` GiB, `t` TiB. `None` for anything else, negative
/// values or overflow (where xl's `strtoll` would quietly go wrong).
pub fn parse_mem_size_kb(s: &str) -> Option<u64> {
    let digits = s.bytes().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let n: u64 = s[..digits].parse().ok()?;
    let unit = &s[digits..];
    let shift: i32 = match unit.to_ascii_lowercase().as_str() {
        "" | "m" => 10,
        "k" => 0,
        "g" => 20,
        "t" => 30,
        "b" => -10,
        _ => return None,
    };
    if shift >= 0 {
        let kb = n.checked_mul(1u64 << shift)?;
        // libxl keeps memory sizes in 64-bit KiB but Xen counts pages in
        // 64 bits too: keep it well inside both.
        (kb <= u64::MAX >> 12).then_some(kb)
    } else {
        Some(n >> 10)
    }
}

/// A plain decimal number (optional leading `-`), the whole string.
pub fn parse_int(s: &str) -> Option<i64> {
    let body = s.strip_prefix('-').unwrap_or(s);
    if body.is_empty() || !body.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A plain unsigned decimal number that fits a `u32`, the whole string.
pub fn parse_u32(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}
