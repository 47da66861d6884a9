//! The PV MMU hypercalls: `mmu_update`, `update_va_mapping`, `mmuext_op`.
//!
//! - [`mmu_update`] writes page-table entries by *machine address*
//!   (`MMU_NORMAL_PT_UPDATE`) or M2P entries (`MMU_MACHPHYS_UPDATE`); Xen
//!   validates each and stops at the first failure, returning its error
//!   and how many were done.
//! - [`update_va_mapping`] replaces the L1 entry that maps a virtual address
//!   in the current address space, with a TLB flush ([`Flush`]).
//! - [`mmuext_op`] pins and unpins tables, switches the kernel and user page
//!   table bases, flushes TLBs, clears and copies pages.
//!
//! All of these only pass buffers Xen reads (and a `done` counter it
//! writes), so they are safe functions: the hypervisor, not the caller, is
//! what stands between a bad request and memory corruption. (A request can
//! still unmap memory Rust code uses; kernels keep such requests inside
//! [`crate::frame`] and [`crate::mm`].)

use crate::abi::hypercall::Hypercall;
use crate::abi::xen::{
    MmuUpdate, MmuUpdateCmd, MmuextCmd, MmuextOp, DOMID_SELF, UVMF_ALL, UVMF_INVLPG, UVMF_LOCAL,
    UVMF_NONE, UVMF_TLB_FLUSH,
};
use crate::error::{check, Errno};
use crate::hypercall::{hypercall3, hypercall4};
use crate::mm::{entry_maddr, Level, Pte};

/// A failed batch: the error and how many requests succeeded before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchError {
    /// Xen's error for the failing request.
    pub errno: Errno,
    /// Requests done before it.
    pub done: u32,
}

impl core::fmt::Display for BatchError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} after {} done", self.errno, self.done)
    }
}

/// `mmu_update(reqs, count, &done, DOMID_SELF)`. Ok(done) on success.
pub fn mmu_update(reqs: &[MmuUpdate]) -> Result<u32, BatchError> {
    mmu_update_foreign(reqs, DOMID_SELF)
}

/// `mmu_update` with a `foreigndom` (Dom0 building other domains).
pub fn mmu_update_foreign(reqs: &[MmuUpdate], foreigndom: u16) -> Result<u32, BatchError> {
    let mut done: u32 = 0;
    let count = u32::try_from(reqs.len()).unwrap_or(u32::MAX);
    // SAFETY: Xen reads `count` 16-byte requests from `reqs` and writes the
    // 4-byte `done`; both are live for the call.
    let r = unsafe {
        hypercall4(
            Hypercall::MmuUpdate,
            reqs.as_ptr() as u64,
            u64::from(count),
            &mut done as *mut u32 as u64,
            u64::from(foreigndom),
        )
    };
    match check(r) {
        Ok(_) => Ok(done),
        Err(errno) => Err(BatchError { errno, done }),
    }
}

/// An `MMU_NORMAL_PT_UPDATE` request: entry `index` of table `table_mfn`.
pub const fn pt_update(table_mfn: u64, index: usize, pte: Pte) -> MmuUpdate {
    MmuUpdate {
        ptr: entry_maddr(table_mfn, index) | MmuUpdateCmd::NormalPtUpdate as u64,
        val: pte.0,
    }
}

/// An `MMU_MACHPHYS_UPDATE` request: `M2P[mfn] = pfn`.
pub const fn machphys_update(mfn: u64, pfn: u64) -> MmuUpdate {
    MmuUpdate {
        ptr: (mfn << 12) | MmuUpdateCmd::MachphysUpdate as u64,
        val: pfn,
    }
}

/// Writes one page-table entry (the table's level is only for callers'
/// bookkeeping; Xen knows the frame's type).
pub fn write_pte(table_mfn: u64, _level: Level, index: usize, pte: Pte) -> Result<(), Errno> {
    mmu_update(&[pt_update(table_mfn, index, pte)])
        .map(|_| ())
        .map_err(|e| e.errno)
}

/// TLB flush after `update_va_mapping`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flush {
    /// No flush.
    None,
    /// Flush this vCPU's TLB.
    TlbLocal,
    /// Invalidate the address on this vCPU.
    InvlpgLocal,
    /// Flush every vCPU's TLB.
    TlbAll,
    /// Invalidate the address on every vCPU.
    InvlpgAll,
}

impl Flush {
    /// The `UVMF_*` flags.
    pub const fn flags(self) -> u64 {
        match self {
            Flush::None => UVMF_NONE,
            Flush::TlbLocal => UVMF_TLB_FLUSH | UVMF_LOCAL,
            Flush::InvlpgLocal => UVMF_INVLPG | UVMF_LOCAL,
            Flush::TlbAll => UVMF_TLB_FLUSH | UVMF_ALL,
            Flush::InvlpgAll => UVMF_INVLPG | UVMF_ALL,
        }
    }
}

/// `update_va_mapping(va, val, flags)`: replaces the L1 entry mapping `va`
/// in the current address space.
pub fn update_va_mapping(va: u64, val: u64, flush: Flush) -> Result<(), Errno> {
    update_va_mapping_raw(va, val, flush.flags())
}

/// `update_va_mapping` with raw flags (e.g. a `UVMF_MULTI` vCPU mask).
pub fn update_va_mapping_raw(va: u64, val: u64, flags: u64) -> Result<(), Errno> {
    // SAFETY: no guest memory is passed; Xen validates the new entry.
    check(unsafe { hypercall3(Hypercall::UpdateVaMapping, va, val, flags) }).map(|_| ())
}

/// `mmuext_op(ops, count, &done, DOMID_SELF)`.
pub fn mmuext_op(ops: &[MmuextOp]) -> Result<u32, BatchError> {
    let mut done: u32 = 0;
    let count = u32::try_from(ops.len()).unwrap_or(u32::MAX);
    // SAFETY: Xen reads `count` 24-byte ops and writes the 4-byte `done`.
    // (The *_MULTI ops' vcpumask handles are built by `mmuext_multi`,
    // which keeps the mask alive for the call.)
    let r = unsafe {
        hypercall4(
            Hypercall::MmuextOp,
            ops.as_ptr() as u64,
            u64::from(count),
            &mut done as *mut u32 as u64,
            u64::from(DOMID_SELF),
        )
    };
    match check(r) {
        Ok(_) => Ok(done),
        Err(errno) => Err(BatchError { errno, done }),
    }
}

/// One `mmuext_op`.
pub const fn ext(cmd: MmuextCmd, arg1: u64, arg2: u64) -> MmuextOp {
    MmuextOp {
        cmd: cmd as u32,
        _pad4: 0,
        arg1,
        arg2,
    }
}

fn one(cmd: MmuextCmd, arg1: u64, arg2: u64) -> Result<(), Errno> {
    mmuext_op(&[ext(cmd, arg1, arg2)])
        .map(|_| ())
        .map_err(|e| e.errno)
}

/// The `MMUEXT_PIN_Ln_TABLE` command for a level.
pub const fn pin_cmd(level: Level) -> MmuextCmd {
    match level {
        1 => MmuextCmd::PinL1Table,
        2 => MmuextCmd::PinL2Table,
        3 => MmuextCmd::PinL3Table,
        _ => MmuextCmd::PinL4Table,
    }
}

/// Pins `mfn` as a level-`level` page table.
pub fn pin(level: Level, mfn: u64) -> Result<(), Errno> {
    one(pin_cmd(level), mfn, 0)
}

/// `MMUEXT_UNPIN_TABLE`.
pub fn unpin(mfn: u64) -> Result<(), Errno> {
    one(MmuextCmd::UnpinTable, mfn, 0)
}

/// `MMUEXT_NEW_BASEPTR`: switches the kernel page-table base.
pub fn new_baseptr(mfn: u64) -> Result<(), Errno> {
    one(MmuextCmd::NewBaseptr, mfn, 0)
}

/// `MMUEXT_NEW_USER_BASEPTR`: sets the user page-table base (0: none).
pub fn new_user_baseptr(mfn: u64) -> Result<(), Errno> {
    one(MmuextCmd::NewUserBaseptr, mfn, 0)
}

/// `MMUEXT_TLB_FLUSH_LOCAL`.
pub fn tlb_flush_local() -> Result<(), Errno> {
    one(MmuextCmd::TlbFlushLocal, 0, 0)
}

/// `MMUEXT_TLB_FLUSH_ALL`.
pub fn tlb_flush_all() -> Result<(), Errno> {
    one(MmuextCmd::TlbFlushAll, 0, 0)
}

/// `MMUEXT_INVLPG_LOCAL`.
pub fn invlpg_local(va: u64) -> Result<(), Errno> {
    one(MmuextCmd::InvlpgLocal, va, 0)
}

/// `MMUEXT_INVLPG_ALL`.
pub fn invlpg_all(va: u64) -> Result<(), Errno> {
    one(MmuextCmd::InvlpgAll, va, 0)
}

/// `MMUEXT_TLB_FLUSH_MULTI` / `MMUEXT_INVLPG_MULTI` (with `va`) on the
/// vCPUs in `mask` (bit n = vCPU n).
pub fn flush_multi(mask: &[u64], va: Option<u64>) -> Result<(), Errno> {
    let (cmd, a1) = match va {
        Some(va) => (MmuextCmd::InvlpgMulti, va),
        None => (MmuextCmd::TlbFlushMulti, 0),
    };
    one(cmd, a1, mask.as_ptr() as u64)
}

/// `MMUEXT_SET_LDT`: the LDT is `ents` descriptors at page-aligned `base`
/// (each page mapped read-only: it becomes a descriptor page); `ents == 0`
/// removes it.
pub fn set_ldt(base: u64, ents: u32) -> Result<(), Errno> {
    one(MmuextCmd::SetLdt, base, u64::from(ents))
}

/// `MMUEXT_CLEAR_PAGE`: zeroes frame `mfn`.
pub fn clear_page(mfn: u64) -> Result<(), Errno> {
    one(MmuextCmd::ClearPage, mfn, 0)
}

/// `MMUEXT_COPY_PAGE`: copies frame `src` to `dst`.
pub fn copy_page(dst: u64, src: u64) -> Result<(), Errno> {
    one(MmuextCmd::CopyPage, dst, src)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::abi::errno::Errno as AbiErrno;
    use crate::hypercall::mock;
    use crate::mm::PteFlags;
    use zerocopy::FromBytes;

    #[test]
    fn mmu_update_passes_requests_and_reports_done() {
        let _g = mock::install(|nr, a| {
            assert_eq!(nr, Hypercall::MmuUpdate as u64);
            assert_eq!(a[1], 2);
            assert_eq!(a[3], u64::from(DOMID_SELF));
            let bytes = mock::read(a[0], 32);
            let r = MmuUpdate::read_from_bytes(&bytes[16..]).unwrap();
            assert_eq!(r.ptr, (0x77 << 12) | 1);
            mock::write(a[2], &1u32.to_ne_bytes());
            AbiErrno::EBUSY.to_ret()
        });
        let reqs = [
            pt_update(0x10, 3, Pte::new(5, PteFlags::KERNEL_RW)),
            machphys_update(0x77, 9),
        ];
        assert_eq!(reqs[0].ptr, 0x10018);
        assert_eq!(
            mmu_update(&reqs),
            Err(BatchError {
                errno: crate::Errno::from_abi(AbiErrno::EBUSY),
                done: 1
            })
        );
    }

    #[test]
    fn mmuext_encodings() {
        let _g = mock::install(|nr, a| {
            assert_eq!(nr, Hypercall::MmuextOp as u64);
            let op = MmuextOp::read_from_bytes(&mock::read(a[0], 24)).unwrap();
            assert_eq!(op.cmd, MmuextCmd::PinL2Table as u32);
            assert_eq!(op.arg1, 0x1234);
            mock::write(a[2], &1u32.to_ne_bytes());
            0
        });
        assert_eq!(pin(2, 0x1234), Ok(()));
        assert_eq!(pin_cmd(4), MmuextCmd::PinL4Table);
        assert_eq!(Flush::InvlpgAll.flags(), 6);
        assert_eq!(Flush::TlbLocal.flags(), 1);
    }
}
