//! netback on the metal: [`MetalHost`] is the [`NetbackHost`] Dom0 runs
//! with.
//!
//! - Grant copies ([`MetalCopier`]): `GNTTABOP_copy` between a guest's
//!   grant and a bounce frame of Dom0's, then a plain copy to or from the
//!   caller's buffer (which may span pages, or not be page-backed at all).
//! - Ring pages: `GNTTABOP_map_grant_ref` (`GNTMAP_host_map`) at a page of
//!   [`RING_WINDOW`] (L4 slot 502, beside the foreign-mapping window in
//!   slot 500), unmapped when the [`MappedRing`] is dropped.
//! - Event channels: `EVTCHNOP_bind_interdomain`, `close`, `send`.

use pv_guest_lib::frame::{self, Frame};
use pv_guest_lib::grant::{self, CopyPtr, GrantError};
use pv_guest_lib::xenbus::page::{RawPage, SharedPage};

use hypercall_abi::grant_table::GNTMAP_HOST_MAP;
use pv_guest_lib::{events, mm};

use super::{GrantCopier, GrantRef, NetbackHost};
use crate::xenstore::DomId;

/// `GNTST_general_error`, `GNTST_bad_copy_arg`.
const GENERAL_ERROR: i16 = -1;
const BAD_COPY_ARG: i16 = -10;

/// Grant copies through one bounce frame.
pub struct MetalCopier {
    bounce: Frame,
    raw: RawPage,
}

fn status(e: GrantError) -> i16 {
    match e {
        GrantError::Status(s) => s,
        _ => GENERAL_ERROR,
    }
}

impl MetalCopier {
    /// Allocates the bounce frame.
    pub fn new() -> Option<MetalCopier> {
        let bounce = frame::alloc_frame().ok()?;
        // SAFETY: the frame is ours for as long as the copier lives (it is
        // never freed), zeroed and mapped writable at `va`, page aligned;
        // only this RawPage and the hypervisor's copies touch it.
        let raw = unsafe { RawPage::new(bounce.va as *mut u8) };
        Some(MetalCopier { bounce, raw })
    }
}

impl GrantCopier for MetalCopier {
    fn copy_from_guest(
        &mut self,
        domid: DomId,
        gref: GrantRef,
        offset: u16,
        dst: &mut [u8],
    ) -> Result<(), i16> {
        if usize::from(offset) + dst.len() > 4096 {
            return Err(BAD_COPY_ARG);
        }
        if dst.is_empty() {
            return Ok(());
        }
        grant::copy(
            CopyPtr::Grant {
                dom: domid,
                gref,
                offset,
            },
            CopyPtr::Frame {
                mfn: self.bounce.mfn,
                offset: 0,
            },
            dst.len() as u16,
        )
        .map_err(status)?;
        self.raw.read(0, dst);
        Ok(())
    }

    fn copy_to_guest(
        &mut self,
        domid: DomId,
        gref: GrantRef,
        offset: u16,
        src: &[u8],
    ) -> Result<(), i16> {
        if usize::from(offset) + src.len() > 4096 {
            return Err(BAD_COPY_ARG);
        }
        if src.is_empty() {
            return Ok(());
        }
        self.raw.write(0, src);
        grant::copy(
            CopyPtr::Frame {
                mfn: self.bounce.mfn,
                offset: 0,
            },
            CopyPtr::Grant {
                dom: domid,
                gref,
                offset,
            },
            src.len() as u16,
        )
        .map_err(status)
    }
}

/// Where ring pages are mapped: L4 slot 502.
pub const RING_WINDOW: u64 = 0xFFFF_FB00_0000_0000;
/// Pages in the ring window (two per vif).
pub const RING_WINDOW_PAGES: usize = 1024;

static RING_SLOTS: spin::Mutex<[u64; RING_WINDOW_PAGES / 64]> =
    spin::Mutex::new([0; RING_WINDOW_PAGES / 64]);

/// The machine frame each ring-window slot maps (0: none): the HAL's
/// address translation for DMA in place reads it instead of walking the
/// page tables once per segment.
static SLOT_MFNS: [core::sync::atomic::AtomicU64; RING_WINDOW_PAGES] =
    [const { core::sync::atomic::AtomicU64::new(0) }; RING_WINDOW_PAGES];

/// The machine frame mapped at `va`, if `va` is in the ring window and
/// its slot holds a mapped grant.
pub fn window_mfn(va: u64) -> Option<u64> {
    let i = usize::try_from(va.checked_sub(RING_WINDOW)? / 4096).ok()?;
    let m = SLOT_MFNS
        .get(i)?
        .load(core::sync::atomic::Ordering::Acquire);
    (m != 0).then_some(m)
}

fn take_slot() -> Option<usize> {
    let mut m = RING_SLOTS.lock();
    let i = (0..RING_WINDOW_PAGES).find(|&i| m[i / 64] & (1 << (i % 64)) == 0)?;
    m[i / 64] |= 1 << (i % 64);
    Some(i)
}

fn free_slot(i: usize) {
    if i < RING_WINDOW_PAGES {
        RING_SLOTS.lock()[i / 64] &= !(1 << (i % 64));
    }
}

/// How many guest pages are grant-mapped in the ring window now (every
/// [`MappedRing`] alive, netback's and blkback's).
pub fn mapped_pages() -> usize {
    RING_SLOTS
        .lock()
        .iter()
        .map(|w| w.count_ones() as usize)
        .sum()
}

/// A guest's ring page, grant-mapped into Dom0; unmapped on drop.
pub struct MappedRing {
    slot: usize,
    va: u64,
    handle: u32,
    raw: RawPage,
}

impl Drop for MappedRing {
    fn drop(&mut self) {
        if let Some(m) = SLOT_MFNS.get(self.slot) {
            m.store(0, core::sync::atomic::Ordering::Release);
        }
        // A failed unmap leaves the slot taken rather than reusing an
        // address that may still map the guest's page.
        match grant::unmap(self.handle, self.va, 0) {
            Ok(_) => free_slot(self.slot),
            Err(e) => log::warn!(
                "unmapping grant handle {} at {:#x} failed: {e}",
                self.handle,
                self.va
            ),
        }
    }
}

impl MappedRing {
    /// Where the page is mapped in Dom0.
    pub fn va(&self) -> u64 {
        self.va
    }
}

impl SharedPage for MappedRing {
    fn load_u32(&self, off: usize) -> u32 {
        self.raw.load_u32(off)
    }
    fn store_u32(&self, off: usize, v: u32) {
        self.raw.store_u32(off, v)
    }
    fn read(&self, off: usize, out: &mut [u8]) {
        self.raw.read(off, out)
    }
    fn write(&self, off: usize, data: &[u8]) {
        self.raw.write(off, data)
    }
}

/// Grant-maps `domid`'s page `gref` into the ring window (read-only if
/// `readonly`): the page the back ends share with a frontend. Unmapped when
/// the [`MappedRing`] is dropped.
pub fn map_grant(domid: DomId, gref: GrantRef, readonly: bool) -> Option<MappedRing> {
    let slot = take_slot()?;
    let va = RING_WINDOW + slot as u64 * 4096;
    // The grant goes into an existing L1 entry.
    if frame::with_pt(|b| mm::ensure_l1(b, frame::kernel_l4(), va)).is_err() {
        free_slot(slot);
        return None;
    }
    let mut flags = GNTMAP_HOST_MAP;
    if readonly {
        flags |= hypercall_abi::grant_table::GNTMAP_READONLY;
    }
    let Ok(m) = grant::map(domid, gref, va, flags) else {
        free_slot(slot);
        return None;
    };
    if let (Ok(pte), Some(m)) = (frame::lookup_kernel(va), SLOT_MFNS.get(slot)) {
        if pte.present() {
            m.store(pte.mfn(), core::sync::atomic::Ordering::Release);
        }
    }
    // SAFETY: `va` is page aligned and now maps the guest's granted page,
    // until the MappedRing owning this RawPage unmaps it on drop; nothing
    // else in Dom0 uses this slot meanwhile.
    let raw = unsafe { RawPage::new(va as *mut u8) };
    Some(MappedRing {
        slot,
        va,
        handle: m.handle,
        raw,
    })
}

/// Dom0's [`NetbackHost`].
pub struct MetalHost {
    /// The grant copier.
    pub copier: MetalCopier,
}

impl MetalHost {
    /// A host with its bounce frame.
    pub fn new() -> Option<MetalHost> {
        Some(MetalHost {
            copier: MetalCopier::new()?,
        })
    }
}

impl GrantCopier for MetalHost {
    fn copy_from_guest(
        &mut self,
        domid: DomId,
        gref: GrantRef,
        offset: u16,
        dst: &mut [u8],
    ) -> Result<(), i16> {
        self.copier.copy_from_guest(domid, gref, offset, dst)
    }
    fn copy_to_guest(
        &mut self,
        domid: DomId,
        gref: GrantRef,
        offset: u16,
        src: &[u8],
    ) -> Result<(), i16> {
        self.copier.copy_to_guest(domid, gref, offset, src)
    }
}

impl NetbackHost for MetalHost {
    type Page = MappedRing;

    fn map_ring(&mut self, domid: DomId, gref: GrantRef) -> Option<MappedRing> {
        map_grant(domid, gref, false)
    }

    fn bind(&mut self, domid: DomId, remote_port: u32) -> Option<u32> {
        events::bind_interdomain(domid, remote_port).ok()
    }

    fn unbind(&mut self, local_port: u32) {
        let _ = events::close(local_port);
    }

    fn notify(&mut self, local_port: u32) {
        let _ = events::send(local_port);
    }
}
