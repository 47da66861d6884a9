//! Parsing `xl`'s argument values: memory sizes with unit suffixes
//! (xl_parse.c `parse_mem_size_kb`: a number of MiB by default, or with
//! `b`, `k`, `m`, `g`, `t`), plain decimal numbers, and domain qualifiers
//! (libxl `libxl_domain_qualifier_to_domid`: all digits is an id,
//! anything else a name), and splitting a shell line into words
//! ([`split_args`]).

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

/// Why [`split_args`] could not split a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitError {
    /// A quote was opened and never closed.
    UnterminatedQuote,
}

/// Splits a shell command line into words as `sh` would for plain words:
/// blanks separate words, `'...'` keeps everything literally, `"..."`
/// keeps blanks (a backslash in it escapes `"` and `\`), and a backslash
/// outside quotes escapes the next character. For Dom0's shell, so that
/// `xl create g.cfg 'name="my guest"'` passes one override.
pub fn split_args(line: &str) -> Result<alloc::vec::Vec<alloc::string::String>, SplitError> {
    use alloc::string::String;
    let mut words = alloc::vec::Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(core::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err(SplitError::UnterminatedQuote),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err(SplitError::UnterminatedQuote),
                        },
                        Some(c) => cur.push(c),
                        None => return Err(SplitError::UnterminatedQuote),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    cur.push(c);
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}
