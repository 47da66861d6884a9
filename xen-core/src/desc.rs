//! Segment descriptors a PV guest may install in its GDT or LDT (Xen's
//! `check_descriptor` for 64-bit PV guests). Pure.
//!
//! A guest kernel runs in ring 3, so every code and data segment it
//! describes is forced to DPL 3; system descriptors other than the empty
//! type-0 one are refused. Oxen also refuses call gates, which Xen accepts
//! with a checked target selector (listed in docs/abi-deviations.md).

/// Present bit (Intel SDM vol 3 §3.4.5).
const P: u64 = 1 << 47;
/// Descriptor type: code/data (1) or system (0).
const S: u64 = 1 << 44;
/// DPL field.
const DPL_MASK: u64 = 3 << 45;
/// System descriptor type field.
const TYPE_MASK: u64 = 0xf << 40;

/// Checks one descriptor; returns it with Xen's fix-ups (DPL forced to 3),
/// or None if a guest may not install it.
pub fn check_descriptor(d: u64) -> Option<u64> {
    if d & P == 0 {
        // A not-present descriptor always faults when used: harmless.
        return Some(d);
    }
    if d & S != 0 {
        return Some(d | DPL_MASK);
    }
    if d & TYPE_MASK == 0 {
        // Type 0 is harmless (the upper half of a 16-byte gate).
        return Some(d);
    }
    None
}

/// Checks every descriptor of a GDT/LDT page, fixing them up in place.
/// False (and the page untouched) if any is refused.
pub fn check_descriptor_page(page: &mut [u64; 512]) -> bool {
    let mut fixed = [0u64; 512];
    for (f, &d) in fixed.iter_mut().zip(page.iter()) {
        match check_descriptor(d) {
            Some(v) => *f = v,
            None => return false,
        }
    }
    *page = fixed;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_and_data_get_dpl3() {
        // Ring-0 64-bit code descriptor.
        assert_eq!(
            check_descriptor(0x00af_9a00_0000_ffff),
            Some(0x00af_fa00_0000_ffff)
        );
        // Ring-3 data stays as is.
        assert_eq!(
            check_descriptor(0x00cf_f200_0000_ffff),
            Some(0x00cf_f200_0000_ffff)
        );
    }

    #[test]
    fn not_present_and_empty_are_fine() {
        assert_eq!(check_descriptor(0), Some(0));
        assert_eq!(
            check_descriptor(0x0000_1a00_0000_ffff),
            Some(0x0000_1a00_0000_ffff)
        );
    }

    #[test]
    fn system_descriptors_are_refused() {
        // Available 64-bit TSS.
        assert_eq!(check_descriptor(0x0000_8900_0000_0067), None);
        // 64-bit call gate.
        assert_eq!(check_descriptor(0x0000_ec00_e008_0000), None);
        // LDT descriptor.
        assert_eq!(check_descriptor(0x0000_8200_0000_ffff), None);
    }

    #[test]
    fn page_check_is_all_or_nothing() {
        let mut page = [0u64; 512];
        page[1] = 0x00af_9a00_0000_ffff;
        page[2] = 0x0000_8900_0000_0067;
        let before = page;
        assert!(!check_descriptor_page(&mut page));
        assert_eq!(page, before);
        page[2] = 0;
        assert!(check_descriptor_page(&mut page));
        assert_eq!(page[1], 0x00af_fa00_0000_ffff);
    }
}
