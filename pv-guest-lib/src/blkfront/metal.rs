//! [`FrontHost`] for a booted PV domain: pages from [`crate::frame`], grants
//! in the domain's [`GrantTable`], event channels through
//! [`crate::events`], waiting with [`crate::time::block_until`].
//!
//! ```no_run
//! # fn f(si: &pv_guest_lib::StartInfo, gt: &mut pv_guest_lib::grant::GrantTable) -> Option<()> {
//! use pv_guest_lib::blkfront::{metal::MetalHost, Blkfront, Config};
//! let mut xs = pv_guest_lib::domu::connect(si).ok()?;
//! let mut host = MetalHost::new(gt);
//! host.patience(30_000_000_000);
//! let mut disk = Blkfront::new(51712, None, Config::default()); // xvda
//! let info = disk.connect_blocking(&mut xs, &mut host).ok()?;
//! let mut sector0 = [0u8; 512];
//! disk.read(&mut host, 0, &mut sector0).ok()?;
//! # Some(()) }
//! ```
//!
//! Not exercised by host tests (everything it calls is a hypercall); the
//! protocol above it is.

use crate::abi::xen::DOMID_SELF;
use crate::events;
use crate::frame::{self, Frame};
use crate::grant::{GrantRef, GrantTable};
use crate::time;
use crate::xenbus::page::{RawPage, SharedPage, PAGE_SIZE};

use super::FrontHost;

/// How long one [`FrontHost::wait`] sleeps at most before the caller
/// re-checks (xenstore changes without a watch wake nobody).
pub const WAIT_SLICE_NS: u64 = 5_000_000;

/// How long [`FrontHost::wait`] polls for an event before it blocks
/// (see [`MetalHost::poll_ns`]).
pub const POLL_NS: u64 = 500_000;

/// A frame of this domain, shared with the backend.
pub struct MetalPage {
    frame: Frame,
    page: RawPage,
}

impl MetalPage {
    /// The machine frame, as the p2m says now (a restore into a new
    /// domain moves every frame: the one the page was allocated with is
    /// the old domain's).
    pub fn mfn(&self) -> u64 {
        crate::frame::pfn_to_mfn(self.frame.pfn).unwrap_or(self.frame.mfn)
    }
}

impl SharedPage for MetalPage {
    fn load_u32(&self, off: usize) -> u32 {
        self.page.load_u32(off)
    }
    fn store_u32(&self, off: usize, v: u32) {
        self.page.store_u32(off, v)
    }
    fn read(&self, off: usize, out: &mut [u8]) {
        match off.checked_add(out.len()) {
            Some(end) if end <= PAGE_SIZE => {
                // SAFETY: `[off, end)` lies in our page (checked above),
                // `out` is a distinct, valid buffer of that length.
                unsafe {
                    copy_bytes(
                        (self.frame.va as usize + off) as *const u8,
                        out.as_mut_ptr(),
                        out.len(),
                    )
                }
            }
            _ => out.fill(0),
        }
    }
    fn write(&self, off: usize, data: &[u8]) {
        if off
            .checked_add(data.len())
            .is_some_and(|end| end <= PAGE_SIZE)
        {
            // SAFETY: as in `read`, the other way round.
            unsafe {
                copy_bytes(
                    data.as_ptr(),
                    (self.frame.va as usize + off) as *mut u8,
                    data.len(),
                )
            }
        }
    }
}

/// Copies `len` bytes from `src` to `dst` with `rep movs`, whole words
/// first. A bulk copy instead of `RawPage`'s byte-at-a-time volatile
/// accesses (which cost ~1 ms per 256 KiB under TCG); being inline
/// assembly it is as opaque to the compiler as volatile accesses are, so
/// a backend writing the page at the same time only garbles the bytes.
///
/// # Safety
///
/// `src` must be valid for reads and `dst` for writes of `len` bytes, and
/// the ranges must not overlap.
pub unsafe fn copy_bytes(src: *const u8, dst: *mut u8, len: usize) {
    // SAFETY: the caller's contract; `rep movsq`/`rep movsb` copy exactly
    // `rcx` quad words/bytes forwards (the direction flag is clear, as
    // the ABI requires) and touch nothing else.
    unsafe {
        core::arch::asm!(
            "rep movsq",
            "mov rcx, {rest}",
            "rep movsb",
            rest = in(reg) len & 7,
            inout("rcx") len / 8 => _,
            inout("rsi") src => _,
            inout("rdi") dst => _,
            options(nostack, preserves_flags)
        );
    }
}

fn on_event(_port: events::Port, _data: usize) {
    // The delivery bumps `events::generation`, which wakes `wait`.
}

/// The kernel services blkfront uses, on the metal.
pub struct MetalHost<'a> {
    gt: &'a mut GrantTable,
    give_up_at: u64,
    /// `events::generation` when the last wait returned: an event that
    /// came since (while the caller polled the ring) ends the next wait
    /// at once instead of being slept through.
    seen: u64,
    /// How long a wait polls before it blocks.
    poll_ns: u64,
}

impl<'a> MetalHost<'a> {
    /// Over the domain's grant table; waits never give up (see
    /// [`MetalHost::patience`]).
    pub fn new(gt: &'a mut GrantTable) -> Self {
        MetalHost {
            gt,
            give_up_at: u64::MAX,
            seen: events::generation(),
            poll_ns: POLL_NS,
        }
    }

    /// The grant table (to suspend and resume it around a save).
    pub fn grants(&mut self) -> &mut GrantTable {
        self.gt
    }

    /// Makes waits poll for `ns` before blocking (0: block at once).
    pub fn poll_ns(&mut self, ns: u64) {
        self.poll_ns = ns;
    }

    /// Makes waits give up `ns` from now (call before a blocking
    /// operation; `u64::MAX` for never).
    pub fn patience(&mut self, ns: u64) {
        self.give_up_at = time::now_ns().saturating_add(ns);
    }
}

impl FrontHost for MetalHost<'_> {
    type Page = MetalPage;

    fn alloc_page(&mut self) -> Option<MetalPage> {
        let frame = frame::alloc_frame().ok()?;
        // SAFETY: `alloc_frame` hands out a zeroed frame mapped writable at
        // `frame.va`, page aligned, used by nothing else until
        // `free_page` gives it back.
        let page = unsafe { RawPage::new(frame.va as *mut u8) };
        Some(MetalPage { frame, page })
    }

    fn free_page(&mut self, page: MetalPage) {
        frame::free_frame(page.frame);
    }

    fn grant(&mut self, backend: u16, page: &MetalPage, readonly: bool) -> Option<GrantRef> {
        self.gt.grant_access(backend, page.mfn(), readonly).ok()
    }

    fn end_grant(&mut self, gref: GrantRef) -> bool {
        self.gt.end_access(gref).is_ok()
    }

    fn alloc_evtchn(&mut self, backend: u16) -> Option<u32> {
        let port = events::alloc_unbound(DOMID_SELF, backend).ok()?;
        let _ = events::set_handler(port, on_event, 0);
        let _ = events::unmask(port);
        Some(port)
    }

    fn close_evtchn(&mut self, port: u32) {
        events::unbind(port);
        let _ = events::close(port);
    }

    fn notify(&mut self, port: u32) {
        let _ = events::send(port);
    }

    fn wait(&mut self) -> bool {
        let now = time::now_ns();
        if now >= self.give_up_at {
            return false;
        }
        let gen = self.seen;
        // Poll briefly before halting, as Linux's cpuidle-haltpoll does: a
        // backend answering within the window costs no block and wake-up
        // (each ~100 us under TCG). Events still come by upcall.
        let spin_end = now.saturating_add(self.poll_ns).min(self.give_up_at);
        while events::generation() == gen && time::now_ns() < spin_end {
            core::hint::spin_loop();
        }
        let until = now.saturating_add(WAIT_SLICE_NS).min(self.give_up_at);
        time::block_until(until, || events::generation() != gen);
        self.seen = events::generation();
        true
    }
}
