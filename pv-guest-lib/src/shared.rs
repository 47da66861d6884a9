//! The shared info page, seen through atomics.
//!
//! Xen writes `shared_info` (pending bits, vCPU time, wallclock) while the
//! guest reads and writes it (mask bits, the upcall mask), from every vCPU
//! at once. [`SharedInfoView`] has exactly the layout of `struct
//! shared_info` ([`crate::abi::xen::SharedInfo`], checked at compile time)
//! with every field an atomic, so all access is race-free Rust.
//!
//! A PV guest finds the page's *machine* address in `start_info.shared_info`
//! and must map it itself. [`map`] does what mini-os does: it points a
//! page-aligned page of this library's `.bss` at that frame with
//! `update_va_mapping` (the pseudo-physical frame underneath is given up).

use core::sync::atomic::{AtomicI8, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, Ordering};

use crate::abi::xen::{SharedInfo, VcpuInfo, VcpuTimeInfo, XEN_LEGACY_MAX_VCPUS};
use crate::error::Errno;

/// `struct vcpu_time_info`, as atomics.
#[repr(C)]
pub struct VcpuTimeView {
    /// Odd while Xen updates the record.
    pub version: AtomicU32,
    /// Padding.
    pub pad0: AtomicU32,
    /// TSC at `system_time`.
    pub tsc_timestamp: AtomicU64,
    /// Nanoseconds since boot at `tsc_timestamp`.
    pub system_time: AtomicU64,
    /// 32.32 multiplier from shifted TSC ticks to ns.
    pub tsc_to_system_mul: AtomicU32,
    /// Shift applied to the TSC delta first (negative: right shift).
    pub tsc_shift: AtomicI8,
    /// `XEN_PVCLOCK_*` flags.
    pub flags: AtomicU8,
    /// Padding.
    pub pad1: [AtomicU8; 2],
}

/// `struct vcpu_info`, as atomics.
#[repr(C)]
pub struct VcpuInfoView {
    /// Set by Xen when an event is pending for the vCPU.
    pub evtchn_upcall_pending: AtomicU8,
    /// The guest's virtual interrupt flag: non-zero masks upcalls.
    pub evtchn_upcall_mask: AtomicU8,
    /// Padding.
    pub pad: [AtomicU8; 6],
    /// Which words of `evtchn_pending` to look at.
    pub evtchn_pending_sel: AtomicU64,
    /// `arch.cr2`: the faulting address of the last page fault delivered.
    pub cr2: AtomicU64,
    /// `arch.pad`.
    pub arch_pad: AtomicU64,
    /// The vCPU's system time.
    pub time: VcpuTimeView,
}

/// `struct shared_info`, as atomics (the arch part is not needed here and
/// is left as raw words).
#[repr(C)]
pub struct SharedInfoView {
    /// vCPUs 0..32.
    pub vcpu_info: [VcpuInfoView; XEN_LEGACY_MAX_VCPUS],
    /// 2-level pending bitmap.
    pub evtchn_pending: [AtomicU64; 64],
    /// 2-level mask bitmap.
    pub evtchn_mask: [AtomicU64; 64],
    /// Odd while Xen updates the wallclock.
    pub wc_version: AtomicU32,
    /// Wallclock seconds at system time 0 (low half).
    pub wc_sec: AtomicU32,
    /// Wallclock nanoseconds at system time 0.
    pub wc_nsec: AtomicU32,
    /// Wallclock seconds, high half.
    pub wc_sec_hi: AtomicU32,
    /// `arch_shared_info`, untouched.
    pub arch: [AtomicU64; 6],
}

const _: () = {
    assert!(core::mem::size_of::<VcpuTimeView>() == core::mem::size_of::<VcpuTimeInfo>());
    assert!(core::mem::size_of::<VcpuInfoView>() == core::mem::size_of::<VcpuInfo>());
    assert!(core::mem::size_of::<SharedInfoView>() == core::mem::size_of::<SharedInfo>());
    assert!(core::mem::offset_of!(VcpuInfoView, evtchn_pending_sel) == 8);
    assert!(core::mem::offset_of!(VcpuInfoView, cr2) == 16);
    assert!(core::mem::offset_of!(VcpuInfoView, time) == 32);
    assert!(core::mem::offset_of!(SharedInfoView, evtchn_pending) == 2048);
    assert!(core::mem::offset_of!(SharedInfoView, evtchn_mask) == 2560);
    assert!(core::mem::offset_of!(SharedInfoView, wc_version) == 3072);
};

impl SharedInfoView {
    /// `vcpu_info[vcpu]` (only the first 32 vCPUs have one here).
    pub fn vcpu(&self, vcpu: u32) -> Option<&VcpuInfoView> {
        self.vcpu_info.get(vcpu as usize)
    }

    /// The wallclock at system time 0, `(seconds, nanoseconds)`, read with
    /// the `wc_version` protocol (retried while odd or changed).
    pub fn wallclock_base(&self) -> (u64, u32) {
        loop {
            let v1 = self.wc_version.load(Ordering::Acquire);
            if v1 & 1 != 0 {
                core::hint::spin_loop();
                continue;
            }
            let lo = self.wc_sec.load(Ordering::Acquire);
            let hi = self.wc_sec_hi.load(Ordering::Acquire);
            let nsec = self.wc_nsec.load(Ordering::Acquire);
            if self.wc_version.load(Ordering::Acquire) == v1 {
                return ((u64::from(hi) << 32) | u64::from(lo), nsec);
            }
        }
    }
}

/// The mapped page, once [`map`] succeeded (or a test installed one).
static SHARED: AtomicPtr<SharedInfoView> = AtomicPtr::new(core::ptr::null_mut());

/// The shared info page, if it is mapped.
pub fn get() -> Option<&'static SharedInfoView> {
    let p = SHARED.load(Ordering::Acquire);
    // SAFETY: only `map` and `install` store here, both with a pointer to a
    // page that stays mapped (and is only accessed through atomics) for the
    // rest of the domain's life.
    unsafe { p.as_ref() }
}

/// Uses `view` as the shared info page (tests, or a kernel that mapped the
/// page itself).
pub fn install(view: &'static SharedInfoView) {
    SHARED.store(view as *const _ as *mut _, Ordering::Release);
}

/// Maps the shared info page (machine address `maddr`, from
/// `start_info.shared_info`) and makes it available through [`get`].
/// Returns the page on success; mapping it again is a no-op.
pub fn map(maddr: u64) -> Result<&'static SharedInfoView, Errno> {
    if let Some(s) = get() {
        return Ok(s);
    }
    let va = imp::page_va();
    let pte = crate::mm::Pte::new(maddr >> 12, crate::mm::PteFlags::KERNEL_RW);
    crate::mmu::update_va_mapping(va, pte.0, crate::mmu::Flush::InvlpgLocal)?;
    // SAFETY: the page at `va` is now the shared info frame; it is 4 KiB,
    // page aligned, and every field of the view is an atomic.
    let view = unsafe { &*(va as *const SharedInfoView) };
    install(view);
    Ok(view)
}

/// Points the page [`get`] returns at another shared info frame (machine
/// address `maddr`): after a restore, `start_info.shared_info` names the
/// new domain's page. The view stays at the same address.
pub fn remap(maddr: u64) -> Result<(), Errno> {
    let va = imp::page_va();
    let pte = crate::mm::Pte::new(maddr >> 12, crate::mm::PteFlags::KERNEL_RW);
    crate::mmu::update_va_mapping(va, pte.0, crate::mmu::Flush::InvlpgLocal)?;
    if get().is_none() {
        // SAFETY: as in `map`.
        install(unsafe { &*(va as *const SharedInfoView) });
    }
    Ok(())
}

/// Before a suspend (Linux's `xen_pre_suspend`): maps the page's own
/// frame back where the shared info frame was, so no page table of the
/// guest names a frame it does not own (the toolstack's canonicalisation
/// refuses those). [`get`] then reads that plain page until [`remap`].
pub fn detach() -> Result<(), Errno> {
    let va = imp::page_va();
    let l = crate::boot::layout().ok_or(Errno::EINVAL)?;
    let mfn = l
        .va_to_pfn(va)
        .and_then(crate::frame::pfn_to_mfn)
        .ok_or(Errno::EINVAL)?;
    let pte = crate::mm::Pte::new(mfn, crate::mm::PteFlags::KERNEL_RW);
    crate::mmu::update_va_mapping(va, pte.0, crate::mmu::Flush::InvlpgLocal)
}

#[cfg(target_os = "none")]
mod imp {
    #[repr(C, align(4096))]
    struct Page([u8; 4096]);

    /// The page whose mapping is replaced by the shared info frame. It is
    /// never accessed as a Rust value.
    static mut SHARED_PAGE: Page = Page([0; 4096]);

    pub fn page_va() -> u64 {
        (&raw const SHARED_PAGE) as u64
    }
}

#[cfg(not(target_os = "none"))]
mod imp {
    pub fn page_va() -> u64 {
        0
    }
}

/// A zeroed, leaked [`SharedInfoView`] for host tests.
#[cfg(test)]
pub(crate) fn test_view() -> &'static SharedInfoView {
    extern crate std;
    let layout = std::alloc::Layout::new::<SharedInfoView>();
    // SAFETY: non-zero size; all-zero bytes are a valid SharedInfoView
    // (atomics of integers).
    unsafe { &*(std::alloc::alloc_zeroed(layout) as *const SharedInfoView) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wallclock_read() {
        let s = test_view();
        s.wc_sec.store(5, Ordering::Relaxed);
        s.wc_sec_hi.store(1, Ordering::Relaxed);
        s.wc_nsec.store(7, Ordering::Relaxed);
        s.wc_version.store(2, Ordering::Relaxed);
        assert_eq!(s.wallclock_base(), ((1 << 32) | 5, 7));
        assert!(s.vcpu(31).is_some());
        assert!(s.vcpu(32).is_none());
    }
}
