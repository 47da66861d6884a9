//! Translating a PV guest's virtual address through its own page tables, in
//! software, so hypercall arguments are copied without ever letting the CPU
//! touch a guest pointer. Trusts nothing: every level must be present and
//! user-accessible (and writable for writes), the address must be canonical
//! and outside the range Xen reserves for itself.

use crate::mm::pte::{self, PteFlags};

/// First virtual address of the hypervisor's reserved range.
pub const HYPERVISOR_VIRT_START: u64 = hypercall_abi::arch_x86::HYPERVISOR_VIRT_START;
/// End of the hypervisor's reserved range.
pub const HYPERVISOR_VIRT_END: u64 = hypercall_abi::arch_x86::HYPERVISOR_VIRT_END;

/// Why a guest address could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkError {
    /// Not a canonical x86-64 address, or inside the hypervisor's range.
    BadAddress,
    /// A level of the walk is not present.
    NotPresent,
    /// The mapping exists but forbids what was asked (user or write access).
    Protection,
    /// A table or frame lies outside the machine memory we may touch.
    BadFrame,
}

/// Reads entry `index` of the page-table page at machine address `table`;
/// `None` when that frame may not be read.
pub trait PteReader {
    /// The raw entry.
    fn read_pte(&self, table: u64, index: usize) -> Option<u64>;
}

/// Whether `va` is canonical (bits 63..47 all equal).
pub fn is_canonical(va: u64) -> bool {
    let top = (va as i64) >> 47;
    top == 0 || top == -1
}

/// Translates `va` for a guest access, returning the machine address.
pub fn translate(
    mem: &impl PteReader,
    l4_maddr: u64,
    va: u64,
    write: bool,
) -> Result<u64, WalkError> {
    walk(mem, l4_maddr, va, write, false)
}

/// [`translate`] in a PV guest's own page tables, reading L1 entries as
/// what they stand for ([`crate::mm::ptval::logical_l1e`]): a mapping the
/// hypervisor write-protected for log-dirty mode is writable for the
/// hypervisor's copies into guest memory (the caller marks the frame
/// dirty).
pub fn translate_pv(
    mem: &impl PteReader,
    l4_maddr: u64,
    va: u64,
    write: bool,
) -> Result<u64, WalkError> {
    walk(mem, l4_maddr, va, write, true)
}

/// Where a PV guest's write fault at `va` in the address space rooted at
/// `l4_maddr` may have come from a log-dirty protected L1 entry: the
/// machine address of the L1 table and the index, if every upper level is
/// present, user-accessible, writable and no superpage (else the fault is
/// the guest's own).
pub fn write_fault_slot(mem: &impl PteReader, l4_maddr: u64, va: u64) -> Option<(u64, usize)> {
    if !is_canonical(va) || (HYPERVISOR_VIRT_START..HYPERVISOR_VIRT_END).contains(&va) {
        return None;
    }
    let need = PteFlags::PRESENT.bits() | PteFlags::USER.bits() | PteFlags::RW.bits();
    let mut table = l4_maddr;
    for level in (2..=4u32).rev() {
        let idx = ((va >> (12 + 9 * (level - 1))) & 0x1ff) as usize;
        let e = mem.read_pte(table, idx)?;
        if e & need != need || e & PteFlags::PSE.bits() != 0 {
            return None;
        }
        table = e & pte::ADDR_MASK;
    }
    Some((table, ((va >> 12) & 0x1ff) as usize))
}

fn walk(
    mem: &impl PteReader,
    l4_maddr: u64,
    va: u64,
    write: bool,
    logical_l1: bool,
) -> Result<u64, WalkError> {
    if !is_canonical(va) || (HYPERVISOR_VIRT_START..HYPERVISOR_VIRT_END).contains(&va) {
        return Err(WalkError::BadAddress);
    }
    let mut table = l4_maddr;
    for level in (1..=4u32).rev() {
        let idx = ((va >> (12 + 9 * (level - 1))) & 0x1ff) as usize;
        let mut e = mem.read_pte(table, idx).ok_or(WalkError::BadFrame)?;
        if logical_l1 && level == 1 {
            e = crate::mm::ptval::logical_l1e(e);
        }
        if e & PteFlags::PRESENT.bits() == 0 {
            return Err(WalkError::NotPresent);
        }
        if e & PteFlags::USER.bits() == 0 || (write && e & PteFlags::RW.bits() == 0) {
            return Err(WalkError::Protection);
        }
        let addr = e & pte::ADDR_MASK;
        let large = e & PteFlags::PSE.bits() != 0 && (level == 2 || level == 3);
        if large {
            let size = 1u64 << (12 + 9 * (level - 1));
            return Ok((addr & !(size - 1)) + (va & (size - 1)));
        }
        if level == 1 {
            return Ok(addr + (va & 0xfff));
        }
        table = addr;
    }
    Err(WalkError::NotPresent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Fake(HashMap<(u64, usize), u64>);

    impl PteReader for Fake {
        fn read_pte(&self, table: u64, index: usize) -> Option<u64> {
            if table >= 0x1000_0000 {
                return None;
            }
            Some(*self.0.get(&(table, index)).unwrap_or(&0))
        }
    }

    const U: u64 = PteFlags::PRESENT.bits() | PteFlags::USER.bits();

    fn tables(leaf_flags: u64) -> Fake {
        let mut m = HashMap::new();
        // va 0x40_0000_1234 -> L4[0] L3[256] L2[0] L1[0]
        m.insert((0x1000, 0), 0x2000 | U | PteFlags::RW.bits());
        m.insert((0x2000, 256), 0x3000 | U | PteFlags::RW.bits());
        m.insert((0x3000, 0), 0x4000 | U | PteFlags::RW.bits());
        m.insert((0x4000, 0), 0x9000 | leaf_flags);
        Fake(m)
    }

    #[test]
    fn walks_to_the_frame() {
        let t = tables(U | PteFlags::RW.bits());
        assert_eq!(translate(&t, 0x1000, 0x40_0000_0123, true), Ok(0x9123));
    }

    #[test]
    fn read_only_leaf_refuses_writes() {
        let t = tables(U);
        assert_eq!(translate(&t, 0x1000, 0x40_0000_0123, false), Ok(0x9123));
        assert_eq!(
            translate(&t, 0x1000, 0x40_0000_0123, true),
            Err(WalkError::Protection)
        );
    }

    #[test]
    fn log_dirty_protected_leaf_is_writable_for_pv_copies() {
        use crate::mm::ptval::{protect_l1e, LOGDIRTY_RO};
        let leaf = U | PteFlags::RW.bits();
        let t = tables(protect_l1e(0x9000 | leaf).unwrap() & 0xfff0_0000_0000_0fff);
        assert_eq!(
            translate(&t, 0x1000, 0x40_0000_0123, true),
            Err(WalkError::Protection),
            "the hardware view: read-only"
        );
        assert_eq!(translate_pv(&t, 0x1000, 0x40_0000_0123, true), Ok(0x9123));
        assert_eq!(translate_pv(&t, 0x1000, 0x40_0000_0123, false), Ok(0x9123));
        // A plain read-only entry stays read-only.
        let ro = tables(U);
        assert_eq!(
            translate_pv(&ro, 0x1000, 0x40_0000_0123, true),
            Err(WalkError::Protection)
        );
        // The marker only means something in an L1 entry.
        let mut m = tables(leaf).0;
        m.insert((0x3000, 0), 0x4000 | U | LOGDIRTY_RO);
        assert_eq!(
            translate_pv(&Fake(m), 0x1000, 0x40_0000_0123, true),
            Err(WalkError::Protection)
        );
    }

    #[test]
    fn write_fault_slot_needs_writable_upper_levels() {
        let t = tables(U);
        assert_eq!(
            write_fault_slot(&t, 0x1000, 0x40_0000_1123),
            Some((0x4000, 1))
        );
        let mut m = tables(U).0;
        m.insert((0x2000, 256), 0x3000 | U);
        assert_eq!(write_fault_slot(&Fake(m), 0x1000, 0x40_0000_0123), None);
        let mut m = tables(U).0;
        m.insert(
            (0x3000, 0),
            0x4000 | U | PteFlags::RW.bits() | PteFlags::PSE.bits(),
        );
        assert_eq!(write_fault_slot(&Fake(m), 0x1000, 0x40_0000_0123), None);
        assert_eq!(write_fault_slot(&t, 0x1000, 0x80_0000_0000), None);
        assert_eq!(write_fault_slot(&t, 0x1000, HYPERVISOR_VIRT_START), None);
    }

    #[test]
    fn supervisor_leaf_is_refused() {
        let t = tables(PteFlags::PRESENT.bits() | PteFlags::RW.bits());
        assert_eq!(
            translate(&t, 0x1000, 0x40_0000_0000, false),
            Err(WalkError::Protection)
        );
    }

    #[test]
    fn absent_and_bad_addresses() {
        let t = tables(U);
        assert_eq!(
            translate(&t, 0x1000, 0x80_0000_0000, false),
            Err(WalkError::NotPresent)
        );
        assert_eq!(
            translate(&t, 0x1000, 0x0000_8000_0000_0000, false),
            Err(WalkError::BadAddress)
        );
        assert_eq!(
            translate(&t, 0x1000, HYPERVISOR_VIRT_START + 8, false),
            Err(WalkError::BadAddress)
        );
        assert_eq!(
            translate(&t, 0x2000_0000, 0x1000, false),
            Err(WalkError::BadFrame)
        );
    }

    #[test]
    fn large_pages() {
        let mut t = tables(U);
        t.0.insert((0x3000, 1), 0x20_0000 | U | PteFlags::PSE.bits());
        assert_eq!(translate(&t, 0x1000, 0x40_0020_1234, false), Ok(0x20_1234));
    }

    /// XSA-212, "x86: broken check in memory_exchange() permits PV guest
    /// breakout" (CVE-2017-7228): Xen checked only the start of
    /// XENMEM_exchange's guest arrays, then accessed element
    /// `extent_start + i` for a guest-chosen `i`, reaching hypervisor
    /// memory. Oxen's hypercalls translate every element's own address
    /// (`copy_from_guest` per element): each must be refused inside the
    /// hypervisor's range, even if the guest's L4 had user mappings there,
    /// and an index that wraps the address around must land nowhere else.
    #[test]
    fn xsa_212_every_array_element_is_checked_on_its_own() {
        let rw = U | PteFlags::RW.bits();
        let mut m = HashMap::new();
        for slot in [256, 271, 272] {
            m.insert((0x1000, slot), 0x2000 | rw);
        }
        m.insert((0x2000, 0), 0x3000 | rw);
        m.insert((0x2000, 511), 0x3000 | rw);
        m.insert((0x3000, 0), 0x4000 | rw);
        m.insert((0x3000, 511), 0x4000 | rw);
        m.insert((0x4000, 0), 0x9000 | rw);
        m.insert((0x4000, 511), 0xa000 | rw);
        let t = Fake(m);
        // The guest's array starts right after the hypervisor's range.
        let start = HYPERVISOR_VIRT_END;
        assert_eq!(translate(&t, 0x1000, start, true), Ok(0x9000));
        assert_eq!(translate(&t, 0x1000, start + 8, false), Ok(0x9008));
        // Index "-1" (what a hostile nr_exchanged makes of it): the element
        // before the array is Xen's memory, however the L4 maps it.
        for i in [u64::MAX, u64::MAX - 0x1000, u64::MAX - (1 << 30)] {
            let va = start.wrapping_add(i.wrapping_mul(8));
            assert!((HYPERVISOR_VIRT_START..HYPERVISOR_VIRT_END).contains(&va));
            assert_eq!(translate(&t, 0x1000, va, false), Err(WalkError::BadAddress));
            assert_eq!(
                translate_pv(&t, 0x1000, va, true),
                Err(WalkError::BadAddress)
            );
        }
        assert_eq!(
            translate(&t, 0x1000, start - 8, false),
            Err(WalkError::BadAddress)
        );
        assert_eq!(
            translate(&t, 0x1000, HYPERVISOR_VIRT_START, false),
            Err(WalkError::BadAddress)
        );
        // Elements running off the top wrap to non-canonical or the user
        // half, never silently into Xen's range.
        assert_eq!(
            translate(&t, 0x1000, u64::MAX.wrapping_add(1), false),
            Err(WalkError::NotPresent)
        );
    }
}
