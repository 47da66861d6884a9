//! Finding the S5 ("soft off") sleep type in a DSDT without an AML
//! interpreter: the `\_S5` package is almost always a plain `Name` whose first
//! element is the SLP_TYPa value. Pure; the glue feeds it the DSDT bytes.

/// AML opcodes (ACPI 6.5 §20.3).
const NAME_OP: u8 = 0x08;
const PACKAGE_OP: u8 = 0x12;
const BYTE_PREFIX: u8 = 0x0a;
const ZERO_OP: u8 = 0x00;
const ONE_OP: u8 = 0x01;

/// Returns SLP_TYPa for S5 if the DSDT names `_S5_` as a package.
pub fn find_s5_sleep_type(dsdt: &[u8]) -> Option<u16> {
    let pos = dsdt.windows(4).position(|w| w == b"_S5_")?;
    // Expect `NameOp [\] _S5_ PackageOp PkgLength NumElements elem0`.
    let before = dsdt.get(pos.checked_sub(1)?)?;
    let named =
        *before == NAME_OP || (*before == b'\\' && pos >= 2 && dsdt.get(pos - 2) == Some(&NAME_OP));
    if !named {
        return None;
    }
    let mut i = pos + 4;
    if *dsdt.get(i)? != PACKAGE_OP {
        return None;
    }
    i += 1;
    // PkgLength: the top two bits of the lead byte say how many more bytes.
    let lead = *dsdt.get(i)?;
    i += 1 + usize::from(lead >> 6);
    i += 1; // NumElements
    match *dsdt.get(i)? {
        BYTE_PREFIX => dsdt.get(i + 1).map(|&b| u16::from(b)),
        ZERO_OP => Some(0),
        ONE_OP => Some(1),
        b if b < 8 => Some(u16::from(b)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_byte_prefixed_s5() {
        let aml = [
            0x10, 0x08, b'_', b'S', b'5', b'_', 0x12, 0x06, 0x04, 0x0a, 0x05, 0x0a, 0x05, 0, 0,
        ];
        assert_eq!(find_s5_sleep_type(&aml), Some(5));
    }

    #[test]
    fn finds_zero_op_s5_with_root_prefix() {
        let aml = [
            0x08, b'\\', b'_', b'S', b'5', b'_', 0x12, 0x06, 0x04, 0x00, 0x00, 0, 0,
        ];
        assert_eq!(find_s5_sleep_type(&aml), Some(0));
    }

    #[test]
    fn rejects_truncated_and_unnamed() {
        assert_eq!(find_s5_sleep_type(b"_S5_"), None);
        assert_eq!(
            find_s5_sleep_type(&[0x08, b'_', b'S', b'5', b'_', 0x12]),
            None
        );
        assert_eq!(
            find_s5_sleep_type(&[0x14, b'_', b'S', b'5', b'_', 0x12, 1, 1, 0]),
            None
        );
        assert_eq!(find_s5_sleep_type(&[]), None);
    }
}
