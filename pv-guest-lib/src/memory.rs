//! `memory_op`: reservations, the memory map and the M2P.
//!
//! For a PV guest, "GMFN" means machine frame: `decrease_reservation` takes
//! machine frames back, `increase_reservation` hands new ones out (the
//! guest puts them in its p2m and M2P itself).

use crate::abi::hypercall::Hypercall;
use crate::abi::memory::{
    MemoryOp, XenMachphysMfnList, XenMemoryMap, XenMemoryReservation, E820_ENTRY_SIZE,
};
use crate::abi::xen::DOMID_SELF;
use crate::abi::DomId;
use crate::error::{check, Errno};
use crate::hypercall::hypercall2;

fn op(cmd: MemoryOp, arg: u64) -> Result<u64, Errno> {
    // SAFETY: callers pass `arg` = 0 or the address of a live argument of
    // the type `cmd` takes, whose buffers are live and big enough.
    check(unsafe { hypercall2(Hypercall::MemoryOp, cmd as u64, arg) })
}

/// `XENMEM_maximum_ram_page`: the highest machine frame of the host (+1 on Xen).
pub fn maximum_ram_page() -> Result<u64, Errno> {
    op(MemoryOp::MaximumRamPage, 0)
}

/// `XENMEM_current_reservation` of `domid`: its pages now.
pub fn current_reservation(domid: DomId) -> Result<u64, Errno> {
    let d = domid;
    op(MemoryOp::CurrentReservation, &d as *const DomId as u64)
}

/// `XENMEM_maximum_reservation` of `domid`: the most pages it may have.
pub fn maximum_reservation(domid: DomId) -> Result<u64, Errno> {
    let d = domid;
    op(MemoryOp::MaximumReservation, &d as *const DomId as u64)
}

fn reservation(cmd: MemoryOp, frames: &mut [u64], order: u32) -> Result<u64, Errno> {
    let r = XenMemoryReservation {
        extent_start: frames.as_mut_ptr() as u64,
        nr_extents: frames.len() as u64,
        extent_order: order,
        mem_flags: 0,
        domid: DOMID_SELF,
        _pad26: [0; 3],
    };
    op(cmd, &r as *const _ as u64)
}

/// `XENMEM_decrease_reservation`: gives the extents starting at the machine
/// frames in `mfns` (each `2^order` pages) back. Returns how many were given
/// back. The frames must no longer be mapped or used.
pub fn decrease_reservation(mfns: &[u64], order: u32) -> Result<u64, Errno> {
    // Xen only reads the array for decrease_reservation; a copy keeps the
    // signature honest about that.
    let mut copy: heapless::Vec<u64, 64> = heapless::Vec::new();
    if copy.extend_from_slice(mfns).is_err() {
        return Err(Errno::E2BIG);
    }
    reservation(MemoryOp::DecreaseReservation, &mut copy, order)
}

/// `XENMEM_increase_reservation`: asks for `out.len()` extents of `2^order`
/// pages; Xen writes their first machine frames into `out`. Returns how
/// many were allocated.
pub fn increase_reservation(out: &mut [u64], order: u32) -> Result<u64, Errno> {
    reservation(MemoryOp::IncreaseReservation, out, order)
}

/// One E820 entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct E820Entry {
    /// Start address.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// Type (1 = RAM).
    pub kind: u32,
}

/// `XENMEM_memory_map`: the domain's pseudo-physical memory map, written
/// into `out`; returns the number of entries.
pub fn memory_map(out: &mut [E820Entry]) -> Result<usize, Errno> {
    const MAX: usize = 32;
    let mut raw = [0u8; MAX * E820_ENTRY_SIZE];
    let cap = out.len().min(MAX);
    let mut m = XenMemoryMap {
        nr_entries: cap as u32,
        _pad4: 0,
        buffer: raw.as_mut_ptr() as u64,
    };
    op(MemoryOp::MemoryMap, &mut m as *mut _ as u64)?;
    let n = (m.nr_entries as usize).min(cap);
    Ok(decode_e820(&raw[..n * E820_ENTRY_SIZE], out))
}

/// Decodes packed 20-byte E820 entries into `out`; returns how many.
pub fn decode_e820(raw: &[u8], out: &mut [E820Entry]) -> usize {
    let mut n = 0;
    for (chunk, slot) in raw.chunks_exact(E820_ENTRY_SIZE).zip(out.iter_mut()) {
        let u = |r: core::ops::Range<usize>| {
            let mut b = [0u8; 8];
            b[..r.len()].copy_from_slice(&chunk[r]);
            u64::from_le_bytes(b)
        };
        *slot = E820Entry {
            addr: u(0..8),
            size: u(8..16),
            kind: u(16..20) as u32,
        };
        n += 1;
    }
    n
}

/// `XENMEM_machphys_mfn_list`: the machine frames of the M2P table (one per
/// 2 MiB of it) into `out`; returns how many.
pub fn machphys_mfn_list(out: &mut [u64]) -> Result<usize, Errno> {
    let mut l = XenMachphysMfnList {
        max_extents: u32::try_from(out.len()).unwrap_or(u32::MAX),
        _pad4: 0,
        extent_start: out.as_mut_ptr() as u64,
        nr_extents: 0,
        _pad20: 0,
    };
    op(MemoryOp::MachphysMfnList, &mut l as *mut _ as u64)?;
    Ok((l.nr_extents as usize).min(out.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypercall::mock;

    #[test]
    fn e820_decoding() {
        let mut raw = [0u8; 40];
        raw[0..8].copy_from_slice(&0x1000u64.to_le_bytes());
        raw[8..16].copy_from_slice(&0x9f000u64.to_le_bytes());
        raw[16..20].copy_from_slice(&1u32.to_le_bytes());
        raw[20..28].copy_from_slice(&0x100000u64.to_le_bytes());
        raw[36..40].copy_from_slice(&2u32.to_le_bytes());
        let mut out = [E820Entry::default(); 4];
        assert_eq!(decode_e820(&raw, &mut out), 2);
        assert_eq!(
            out[0],
            E820Entry {
                addr: 0x1000,
                size: 0x9f000,
                kind: 1
            }
        );
        assert_eq!(out[1].kind, 2);
        let mut one = [E820Entry::default(); 1];
        assert_eq!(decode_e820(&raw, &mut one), 1);
    }

    #[test]
    fn reservation_arguments() {
        let _g = mock::install(|nr, a| {
            assert_eq!(nr, Hypercall::MemoryOp as u64);
            match MemoryOp::from_raw(a[0]).unwrap() {
                MemoryOp::CurrentReservation => {
                    assert_eq!(mock::read(a[1], 2), DOMID_SELF.to_ne_bytes());
                    1234
                }
                MemoryOp::IncreaseReservation => {
                    let r = mock::read(a[1], 32);
                    let ptr = u64::from_ne_bytes(r[0..8].try_into().unwrap());
                    assert_eq!(u64::from_ne_bytes(r[8..16].try_into().unwrap()), 2);
                    mock::write(ptr, &0x55u64.to_ne_bytes());
                    1
                }
                _ => -38,
            }
        });
        assert_eq!(current_reservation(DOMID_SELF), Ok(1234));
        let mut out = [0u64; 2];
        assert_eq!(increase_reservation(&mut out, 0), Ok(1));
        assert_eq!(out[0], 0x55);
        assert_eq!(maximum_ram_page(), Err(Errno::ENOSYS));
    }
}
