//! Walking an HVM guest's own page tables in software (Xen's
//! `guest_walk_tables`), to turn a linear address the emulator needs
//! (an instruction fetch, an MMIO operand) into a guest-physical one.
//!
//! **Owns**: the four paging modes an x86 guest can be in (paging off;
//! 32-bit two-level with 4 MiB pages under CR4.PSE; PAE three-level; long
//! mode four-level), the permission checks (present, write with CR0.WP,
//! user, no-execute with EFER.NXE) and the #PF error code of a failed
//! walk. Accessed/dirty bits are not written (the guest's own MMU sets
//! them when it next uses the mapping).
//! **Trusts**: nothing: table entries are guest memory; a table the
//! [`GuestPhys`] reader cannot read (not RAM) ends the walk with a #PF as
//! if not present. Never panics.

use super::emulate::{Access, Fault};

/// Reads guest-physical memory for the walk (through the p2m).
pub trait GuestPhys {
    /// The little-endian u64 at `gpa` (8-aligned), `None` if not RAM.
    fn read_u64(&self, gpa: u64) -> Option<u64>;
    /// The little-endian u32 at `gpa` (4-aligned), `None` if not RAM.
    fn read_u32(&self, gpa: u64) -> Option<u32>;
}

/// The paging state of a vCPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PagingRegs {
    /// CR0.
    pub cr0: u64,
    /// CR3.
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// EFER.
    pub efer: u64,
    /// Current privilege level (3: user accesses).
    pub cpl: u8,
}

const CR0_PG: u64 = 1 << 31;
const CR0_WP: u64 = 1 << 16;
const CR4_PSE: u64 = 1 << 4;
const CR4_PAE: u64 = 1 << 5;
const EFER_LMA: u64 = 1 << 10;
const EFER_NXE: u64 = 1 << 11;

const P: u64 = 1 << 0;
const RW: u64 = 1 << 1;
const US: u64 = 1 << 2;
const PS: u64 = 1 << 7;
const NX: u64 = 1 << 63;

/// #PF error code bits.
const PF_P: u32 = 1 << 0;
const PF_W: u32 = 1 << 1;
const PF_U: u32 = 1 << 2;
const PF_RSVD: u32 = 1 << 3;
const PF_I: u32 = 1 << 4;

/// Address bits of a 64-bit entry (up to 52-bit physical addresses).
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Translates `linear` for `access`, or the #PF the guest takes.
pub fn translate(
    mem: &impl GuestPhys,
    regs: &PagingRegs,
    linear: u64,
    access: Access,
) -> Result<u64, Fault> {
    if regs.cr0 & CR0_PG == 0 {
        // Paging off: linear is physical (32-bit wrap outside long mode,
        // which needs paging).
        return Ok(linear & 0xffff_ffff);
    }
    let user = regs.cpl == 3;
    let write = access == Access::Write;
    let fetch = access == Access::Fetch;
    let nxe = regs.efer & EFER_NXE != 0;
    let mut code = if write { PF_W } else { 0 } | if user { PF_U } else { 0 };
    if fetch && nxe {
        code |= PF_I;
    }
    let fault = |extra: u32| Err(Fault::page_fault(linear, code | extra));
    // Permissions accumulate over the levels.
    let (mut w_ok, mut u_ok, mut x_ok) = (true, true, true);
    let mut check = |e: u64| {
        w_ok &= e & RW != 0;
        u_ok &= e & US != 0;
        x_ok &= !(nxe && e & NX != 0);
    };
    let leaf: (u64, u64); // (frame base, offset mask)
    if regs.efer & EFER_LMA != 0 && regs.cr4 & CR4_PAE != 0 {
        if !is_canonical(linear) {
            return Err(Fault::GP0);
        }
        let mut table = regs.cr3 & ADDR_MASK;
        let mut level = 4;
        loop {
            let idx = (linear >> (12 + 9 * (level - 1))) & 511;
            let Some(e) = mem.read_u64(table + idx * 8) else {
                return fault(0);
            };
            if e & P == 0 {
                return fault(0);
            }
            if nxe_reserved(e, nxe) {
                return fault(PF_P | PF_RSVD);
            }
            check(e);
            if level == 1 || (e & PS != 0 && (level == 2 || level == 3)) {
                let shift = 12 + 9 * (level - 1);
                let base = e & ADDR_MASK & !((1u64 << shift) - 1);
                leaf = (base, (1u64 << shift) - 1);
                break;
            }
            if e & PS != 0 {
                // PS in a PML4E is reserved.
                return fault(PF_P | PF_RSVD);
            }
            table = e & ADDR_MASK;
            level -= 1;
        }
    } else if regs.cr4 & CR4_PAE != 0 {
        let linear = linear & 0xffff_ffff;
        let Some(pdpte) = mem.read_u64((regs.cr3 & 0xffff_ffe0) + ((linear >> 30) & 3) * 8) else {
            return fault(0);
        };
        if pdpte & P == 0 {
            return fault(0);
        }
        let mut table = pdpte & ADDR_MASK;
        let mut level = 2;
        loop {
            let idx = (linear >> (12 + 9 * (level - 1))) & 511;
            let Some(e) = mem.read_u64(table + idx * 8) else {
                return fault(0);
            };
            if e & P == 0 {
                return fault(0);
            }
            if nxe_reserved(e, nxe) {
                return fault(PF_P | PF_RSVD);
            }
            check(e);
            if level == 1 || e & PS != 0 {
                let shift = 12 + 9 * (level - 1);
                let base = e & ADDR_MASK & !((1u64 << shift) - 1);
                leaf = (base, (1u64 << shift) - 1);
                break;
            }
            table = e & ADDR_MASK;
            level -= 1;
        }
    } else {
        // Two-level 32-bit paging; no NX.
        let linear = linear & 0xffff_ffff;
        x_ok = true;
        let Some(pde) = mem.read_u32((regs.cr3 & 0xffff_f000) + (linear >> 22) * 4) else {
            return fault(0);
        };
        let pde = u64::from(pde);
        if pde & P == 0 {
            return fault(0);
        }
        w_ok &= pde & RW != 0;
        u_ok &= pde & US != 0;
        if pde & PS != 0 && regs.cr4 & CR4_PSE != 0 {
            // 4 MiB page: bits 13..20 are physical bits 32..39.
            let base = (pde & 0xffc0_0000) | ((pde >> 13) & 0xff) << 32;
            leaf = (base, 0x3f_ffff);
        } else {
            let Some(pte) = mem.read_u32((pde & 0xffff_f000) + ((linear >> 12) & 1023) * 4) else {
                return fault(0);
            };
            let pte = u64::from(pte);
            if pte & P == 0 {
                return fault(0);
            }
            w_ok &= pte & RW != 0;
            u_ok &= pte & US != 0;
            leaf = (pte & 0xffff_f000, 0xfff);
        }
        return finish(linear, leaf, (w_ok, u_ok, x_ok), regs, access, code);
    }
    finish(linear, leaf, (w_ok, u_ok, x_ok), regs, access, code)
}

/// The permission checks at the leaf, then the physical address.
fn finish(
    linear: u64,
    (base, off_mask): (u64, u64),
    (w_ok, u_ok, x_ok): (bool, bool, bool),
    regs: &PagingRegs,
    access: Access,
    code: u32,
) -> Result<u64, Fault> {
    let user = regs.cpl == 3;
    let denied = (user && !u_ok)
        || (access == Access::Write && !w_ok && (user || regs.cr0 & CR0_WP != 0))
        || (access == Access::Fetch && !x_ok);
    if denied {
        return Err(Fault::page_fault(linear, code | PF_P));
    }
    Ok(base | (linear & off_mask))
}

/// An entry with NX set while EFER.NXE is off has a reserved bit set.
fn nxe_reserved(e: u64, nxe: bool) -> bool {
    !nxe && e & NX != 0
}

fn is_canonical(va: u64) -> bool {
    let top = (va as i64) >> 47;
    top == 0 || top == -1
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::collections::BTreeMap;

    #[derive(Default)]
    struct Mem(BTreeMap<u64, u64>);

    impl Mem {
        fn put(&mut self, gpa: u64, v: u64) {
            self.0.insert(gpa, v);
        }
    }

    impl GuestPhys for Mem {
        fn read_u64(&self, gpa: u64) -> Option<u64> {
            if gpa >= 0x1000_0000 {
                return None;
            }
            Some(self.0.get(&gpa).copied().unwrap_or(0))
        }
        fn read_u32(&self, gpa: u64) -> Option<u32> {
            let v = self.read_u64(gpa & !7)?;
            Some(if gpa & 4 != 0 {
                (v >> 32) as u32
            } else {
                v as u32
            })
        }
    }

    fn long_mode() -> PagingRegs {
        PagingRegs {
            cr0: CR0_PG | CR0_WP | 1,
            cr3: 0x1000,
            cr4: CR4_PAE,
            efer: EFER_LMA | (1 << 8) | EFER_NXE,
            cpl: 0,
        }
    }

    #[test]
    fn paging_off_is_identity_wrapped() {
        let m = Mem::default();
        let r = PagingRegs::default();
        assert_eq!(
            translate(&m, &r, 0x1234_5678, Access::Read),
            Ok(0x1234_5678)
        );
        assert_eq!(translate(&m, &r, 0x1_0000_0010, Access::Read), Ok(0x10));
    }

    #[test]
    fn four_level_with_4k_2m_and_1g_pages() {
        let mut m = Mem::default();
        // PML4[0] -> 0x2000; PDPT[0] -> 0x3000 (PD); PDPT[1] 1 GiB page.
        m.put(0x1000, 0x2000 | P | RW);
        m.put(0x2000, 0x3000 | P | RW);
        m.put(0x2008, 0x4000_0000 | P | RW | PS);
        // PD[0] -> 0x4000 (PT); PD[1] 2 MiB page at 0x80_0000.
        m.put(0x3000, 0x4000 | P | RW);
        m.put(0x3008, 0x80_0000 | P | PS | NX);
        // PT[5] -> frame 0x9000 read-only.
        m.put(0x4000 + 5 * 8, 0x9000 | P);
        let r = long_mode();
        assert_eq!(translate(&m, &r, 0x5123, Access::Read), Ok(0x9123));
        assert_eq!(translate(&m, &r, 0x20_0042, Access::Read), Ok(0x80_0042));
        assert_eq!(
            translate(&m, &r, 0x4000_1234, Access::Write),
            Ok(0x4000_1234)
        );
        // Read-only with CR0.WP: a supervisor write faults (P|W).
        let f = translate(&m, &r, 0x5000, Access::Write).unwrap_err();
        assert_eq!(
            (f.vector, f.error_code, f.cr2),
            (14, Some(PF_P | PF_W), Some(0x5000))
        );
        // WP off: supervisor writes go through.
        let r2 = PagingRegs {
            cr0: r.cr0 & !CR0_WP,
            ..r
        };
        assert_eq!(translate(&m, &r2, 0x5000, Access::Write), Ok(0x9000));
        // NX page: fetch faults with I/D set.
        let f = translate(&m, &r, 0x20_0000, Access::Fetch).unwrap_err();
        assert_eq!(f.error_code, Some(PF_P | PF_I));
        // Not present.
        let f = translate(&m, &r, 0x6000, Access::Read).unwrap_err();
        assert_eq!(f.error_code, Some(0));
        // User access to supervisor pages.
        let ru = PagingRegs { cpl: 3, ..r };
        let f = translate(&m, &ru, 0x5000, Access::Read).unwrap_err();
        assert_eq!(f.error_code, Some(PF_P | PF_U));
        // Non-canonical: #GP.
        assert_eq!(
            translate(&m, &r, 0x8000_0000_0000, Access::Read),
            Err(Fault::GP0)
        );
    }

    #[test]
    fn reserved_bits_and_tables_outside_ram() {
        let mut m = Mem::default();
        m.put(0x1000, 0x2000 | P | RW | NX);
        let r = PagingRegs {
            efer: EFER_LMA,
            ..long_mode()
        };
        let f = translate(&m, &r, 0, Access::Read).unwrap_err();
        assert_eq!(f.error_code, Some(PF_P | PF_RSVD));
        let mut m = Mem::default();
        m.put(0x1000, 0x7000_0000_0000 | P);
        let f = translate(&m, &long_mode(), 0, Access::Read).unwrap_err();
        assert_eq!(f.vector, 14);
    }

    #[test]
    fn pae_and_two_level() {
        let mut m = Mem::default();
        // PAE: PDPTE[1] -> PD at 0x3000; PD[0] 2 MiB page at 0x60_0000.
        m.put(0x1000 + 8, 0x3000 | P);
        m.put(0x3000, 0x60_0000 | P | RW | PS);
        let r = PagingRegs {
            cr0: CR0_PG | 1,
            cr3: 0x1000,
            cr4: CR4_PAE,
            efer: 0,
            cpl: 0,
        };
        assert_eq!(translate(&m, &r, 0x4000_0010, Access::Write), Ok(0x60_0010));
        // Two-level: PDE[1] 4 MiB page (PSE), PDE[0] -> PT at 0x5000.
        let mut m = Mem::default();
        m.put(0x1000, (0x5000 | P | RW) | ((0x40_0000 | P | PS) << 32));
        m.put(0x5000, (0xa000 | P | RW) << 32);
        let r = PagingRegs {
            cr0: CR0_PG | 1,
            cr3: 0x1000,
            cr4: CR4_PSE,
            efer: 0,
            cpl: 0,
        };
        assert_eq!(translate(&m, &r, 0x1004, Access::Read), Ok(0xa004));
        assert_eq!(translate(&m, &r, 0x40_1234, Access::Read), Ok(0x40_1234));
        assert_eq!(
            translate(&m, &r, 0x80_0000, Access::Read)
                .unwrap_err()
                .error_code,
            Some(0)
        );
    }
}
