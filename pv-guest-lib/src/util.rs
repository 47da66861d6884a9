//! Small helpers for the fixed, NUL-padded strings Xen hands out.

#![forbid(unsafe_code)]

/// The bytes of `buf` up to its first NUL, as `&str`, cut at the first byte
/// that is not valid UTF-8 (so a hostile buffer still gives a usable string).
pub fn c_str(buf: &[u8]) -> &str {
    let n = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    utf8_prefix(&buf[..n])
}

/// The longest valid UTF-8 prefix of `bytes`.
pub fn utf8_prefix(bytes: &[u8]) -> &str {
    match core::str::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => core::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default(),
    }
}

/// Rounds `x` up to a multiple of `align` (a power of two), saturating at
/// the highest aligned value.
pub const fn align_up(x: u64, align: u64) -> u64 {
    let mask = align - 1;
    match x.checked_add(mask) {
        Some(v) => v & !mask,
        None => !mask,
    }
}

/// Rounds `x` down to a multiple of `align` (a power of two).
pub const fn align_down(x: u64, align: u64) -> u64 {
    x & !(align - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_str_stops_at_nul_and_bad_utf8() {
        assert_eq!(c_str(b"abc\0def"), "abc");
        assert_eq!(c_str(b"abc"), "abc");
        assert_eq!(c_str(b"ab\xffc\0"), "ab");
        assert_eq!(c_str(b""), "");
        assert_eq!(c_str("h\u{e9}\0".as_bytes()), "h\u{e9}");
    }

    #[test]
    fn alignment() {
        assert_eq!(align_up(0, 4096), 0);
        assert_eq!(align_up(1, 4096), 4096);
        assert_eq!(align_up(4096, 4096), 4096);
        assert_eq!(align_up(u64::MAX, 4096), !4095);
        assert_eq!(align_down(4097, 4096), 4096);
    }
}
