//! The glue for a real domain: the store ring page from `start_info`
//! (`store_mfn`) and its event channel (`store_evtchn`).
//!
//! # Finding the ring page
//!
//! `store_mfn` is a machine frame of the domain's own. libxc (and Oxen's
//! builder) put it inside the bootstrap region, which is mapped 1:1 from
//! `VIRT_BASE`, so its address is `VIRT_BASE + pfn * 4096` with `pfn` from
//! the hypervisor's M2P (checked against our P2M) or, failing that, from a
//! search of the P2M. A builder may also leave it outside the mapped
//! region; then [`StoreTransport::from_start_info`] maps it itself, with
//! `update_va_mapping`, over a page-aligned page of this crate's `.bss`
//! reserved for it (as [`crate::shared::map`] does for `shared_info`).
//! [`locate`] is that decision as pure logic.
//!
//! # Waiting
//!
//! [`StoreTransport`] notifies xenstored with `EVTCHNOP_send` on the store
//! port and waits with [`crate::time::block_until`], which sleeps in
//! `SCHEDOP_block` (events unmasked, the vCPU's timer armed for the
//! deadline) until the condition holds: there are unread bytes in the
//! response ring, or — while a request is only partly sent — the request
//! ring has room again. The condition is on the ring itself, not on
//! "an index moved since I looked", so a reply (and its event) that arrived
//! just before the wait cannot be slept through.
//!
//! Builds everywhere; only meaningful in a booted PV kernel after
//! [`crate::runtime::init`] (on the host the hypercalls go to the mock).

use super::page::{RawPage, SharedPage, REQ_CONS, REQ_PROD, RSP_CONS, RSP_PROD, SERVER_FEATURES};
use super::ring::RingClient;
use super::wire::{Message, XENSTORE_RING_SIZE};
use super::{ShutdownRequest, Transport, Xenbus, XsError};
use crate::abi::sched::ShutdownReason;
use crate::error::Errno;
use crate::start_info::StartInfo;
use core::sync::atomic::{AtomicU64, Ordering};

/// How long [`StoreTransport::wait`] sleeps before giving up by default.
pub const DEFAULT_TIMEOUT_NS: u64 = 10_000_000_000;

/// A `timeout_ns` that never expires.
pub const NO_TIMEOUT: u64 = u64::MAX;

/// The domain's connection to xenstored over its ring page and event
/// channel.
pub struct StoreTransport {
    ring: RingClient<RawPage>,
    port: u32,
    timeout_ns: u64,
    /// The last `send` did not fit: `wait` also wakes for room.
    send_blocked: bool,
}

/// Why the store ring cannot be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreError {
    /// `start_info.store_mfn` is 0 (Dom0, which runs xenstored itself, or a
    /// domain built without xenstore).
    NoStore,
    /// The frame is not in the direct map and mapping it failed
    /// (`update_va_mapping`'s error: not our frame, not booted, ...).
    Map(u64, Errno),
}

impl core::fmt::Display for StoreError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StoreError::NoStore => f.write_str("no xenstore ring in start_info"),
            StoreError::Map(mfn, e) => write!(f, "mapping the xenstore ring (mfn {mfn:#x}): {e}"),
        }
    }
}

/// Where the ring page is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    /// Already mapped at this address (pseudo-physical frame `pfn`).
    Mapped {
        /// The frame.
        pfn: u64,
        /// Its direct-map address.
        va: u64,
    },
    /// Not in the direct map: it must be mapped.
    Unmapped,
}

/// Finds machine frame `mfn` in the direct map: its pseudo-physical frame
/// from `m2p` if the P2M agrees, else by searching `p2m`; then its address
/// from `direct_va`. Pure.
pub fn locate(
    mfn: u64,
    m2p: impl Fn(u64) -> Option<u64>,
    p2m: &[AtomicU64],
    direct_va: impl Fn(u64) -> Option<u64>,
) -> Location {
    let at = |m: &AtomicU64| m.load(Ordering::Acquire);
    let from_m2p = m2p(mfn).filter(|&pfn| {
        usize::try_from(pfn)
            .ok()
            .and_then(|i| p2m.get(i))
            .is_some_and(|m| at(m) == mfn)
    });
    let pfn = from_m2p.or_else(|| p2m.iter().position(|m| at(m) == mfn).map(|p| p as u64));
    match pfn.and_then(|pfn| direct_va(pfn).map(|va| (pfn, va))) {
        Some((pfn, va)) => Location::Mapped { pfn, va },
        None => Location::Unmapped,
    }
}

impl StoreTransport {
    /// A transport over the ring page mapped at `page` and event channel
    /// `port`.
    ///
    /// # Safety
    ///
    /// `page` must be the xenstore ring page, mapped writable for as long as
    /// the transport lives (see [`RawPage::new`]).
    pub unsafe fn new(page: *mut u8, port: u32) -> Self {
        // SAFETY: forwarded from our caller.
        let page = unsafe { RawPage::new(page) };
        StoreTransport {
            ring: RingClient::new(page),
            port,
            timeout_ns: DEFAULT_TIMEOUT_NS,
            send_blocked: false,
        }
    }

    /// The transport `start_info` describes (see the module docs for how
    /// the page is found or mapped). Fails for Dom0 (no store ring: it
    /// runs xenstored) or if the frame cannot be mapped.
    pub fn from_start_info(si: &StartInfo) -> Result<Self, StoreError> {
        let mfn = si.store_mfn;
        if mfn == 0 {
            return Err(StoreError::NoStore);
        }
        let p2m: &[AtomicU64] = crate::boot::p2m().unwrap_or(&[]);
        let va = match locate(mfn, crate::frame::m2p_raw, p2m, crate::frame::direct_va) {
            Location::Mapped { va, .. } => va,
            Location::Unmapped => imp::map_store_page(mfn).map_err(|e| StoreError::Map(mfn, e))?,
        };
        // SAFETY: `va` maps the store frame writable for the kernel's
        // lifetime: either the direct map of our own frames (the bootstrap
        // region is mapped writable apart from the page tables, which are
        // never the store page: Xen refuses to type a writable-mapped
        // frame as a page table) or the page reserved for it in `imp`.
        Ok(unsafe { StoreTransport::new(va as *mut u8, si.store_evtchn) })
    }

    /// Sets how long `wait` sleeps before giving up ([`NO_TIMEOUT`]: never).
    pub fn set_timeout_ns(&mut self, ns: u64) {
        self.timeout_ns = ns;
    }

    /// How long `wait` sleeps before giving up.
    pub fn timeout_ns(&self) -> u64 {
        self.timeout_ns
    }

    /// The store event channel.
    pub fn port(&self) -> u32 {
        self.port
    }

    /// After a restore: the same ring page (same pseudo-physical frame),
    /// a new event channel (`start_info.store_evtchn`).
    pub fn set_port(&mut self, port: u32) {
        self.port = port;
        self.send_blocked = false;
    }

    /// The page's `server_features` (`XENSTORE_SERVER_FEATURE_*`): Xen
    /// 4.17's xenstored and Oxen's set them when they take the ring on
    /// (`XS_INTRODUCE`, before the toolstack unpauses the domain), so 0
    /// hints that nobody serves it (or that the daemon predates them).
    pub fn server_features(&self) -> u32 {
        self.ring.page().load_u32(SERVER_FEATURES)
    }

    /// True if `wait` has something to wake up for: unread response bytes,
    /// or room in the request ring while a send is pending.
    fn ready(&self) -> bool {
        let page = self.ring.page();
        if page.load_u32(RSP_PROD) != page.load_u32(RSP_CONS) {
            return true;
        }
        self.send_blocked
            && page
                .load_u32(REQ_PROD)
                .wrapping_sub(page.load_u32(REQ_CONS))
                < XENSTORE_RING_SIZE as u32
    }
}

impl Transport for StoreTransport {
    fn send(&mut self, data: &[u8]) -> Result<usize, XsError> {
        let n = self.ring.send(data)?;
        self.send_blocked = n < data.len();
        if n > 0 {
            let _ = crate::events::send(self.port);
        }
        Ok(n)
    }

    fn recv(&mut self) -> Result<Option<Message>, XsError> {
        let (m, consumed) = self.ring.recv()?;
        if consumed {
            let _ = crate::events::send(self.port);
        }
        Ok(m)
    }

    fn wait(&mut self) -> bool {
        let deadline = crate::time::now_ns().saturating_add(self.timeout_ns);
        crate::time::block_until(deadline, || self.ready()) == crate::time::Wake::Ready
    }
}

/// A xenstore client for this domain (see [`StoreTransport::from_start_info`];
/// [`crate::domu::connect`] also checks the domain and the runtime).
pub fn connect(si: &StartInfo) -> Option<Xenbus<StoreTransport>> {
    StoreTransport::from_start_info(si).ok().map(Xenbus::new)
}

impl ShutdownRequest {
    /// The `SCHEDOP_shutdown` reason that carries the request out.
    pub fn reason(self) -> ShutdownReason {
        match self {
            ShutdownRequest::Poweroff => ShutdownReason::Poweroff,
            ShutdownRequest::Reboot => ShutdownReason::Reboot,
            ShutdownRequest::Suspend => ShutdownReason::Suspend,
            ShutdownRequest::Crash => ShutdownReason::Crash,
        }
    }
}

#[cfg(target_os = "none")]
mod imp {
    use crate::error::Errno;
    use crate::mm::{Pte, PteFlags};
    use crate::mmu::{self, Flush};

    #[repr(C, align(4096))]
    struct Page([u8; 4096]);

    /// The page whose mapping is replaced by the store frame when the
    /// builder left it outside the direct map. Never accessed as a Rust
    /// value.
    static mut STORE_PAGE: Page = Page([0; 4096]);

    static MAPPED: spin::Mutex<Option<u64>> = spin::Mutex::new(None);

    /// Maps `mfn` over [`STORE_PAGE`] (once; a second call for the same
    /// frame returns the same address).
    pub fn map_store_page(mfn: u64) -> Result<u64, Errno> {
        let va = (&raw const STORE_PAGE) as u64;
        let mut m = MAPPED.lock();
        match *m {
            Some(done) if done == mfn => return Ok(va),
            Some(_) => return Err(Errno::from_abi(crate::abi::errno::Errno::EBUSY)),
            None => {}
        }
        let pte = Pte::new(mfn, PteFlags::KERNEL_RW);
        mmu::update_va_mapping(va, pte.0, Flush::InvlpgLocal)?;
        *m = Some(mfn);
        Ok(va)
    }
}

#[cfg(not(target_os = "none"))]
mod imp {
    use crate::error::Errno;

    /// No page tables on the host.
    pub fn map_store_page(_mfn: u64) -> Result<u64, Errno> {
        Err(Errno::ENOSYS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VB: u64 = 0x1000_0000;

    fn va(limit: u64) -> impl Fn(u64) -> Option<u64> {
        move |pfn| (pfn < limit).then_some(VB + pfn * 4096)
    }

    #[test]
    fn locate_uses_the_m2p_checked_against_the_p2m() {
        let p2m = [0x50, 0x51, 0x99, 0x53].map(AtomicU64::new);
        // The M2P agrees.
        assert_eq!(
            locate(0x99, |_| Some(2), &p2m, va(4)),
            Location::Mapped {
                pfn: 2,
                va: VB + 2 * 4096
            }
        );
        // The M2P lies (or has no entry): the P2M search finds it.
        for m2p in [Some(0), Some(1 << 40), None] {
            assert_eq!(
                locate(0x99, |_| m2p, &p2m, va(4)),
                Location::Mapped {
                    pfn: 2,
                    va: VB + 2 * 4096
                }
            );
        }
        // Ours but beyond the direct map; not ours at all.
        assert_eq!(locate(0x99, |_| Some(2), &p2m, va(2)), Location::Unmapped);
        assert_eq!(locate(0x77, |_| None, &p2m, va(4)), Location::Unmapped);
    }

    #[repr(C, align(4096))]
    struct Page([u8; 4096]);

    #[test]
    fn wait_wakes_for_what_is_already_there() {
        let mut page = std::boxed::Box::new(Page([0; 4096]));
        let base = page.0.as_mut_ptr();
        // SAFETY: the box outlives the transport and is only touched
        // through it and `poke` below (single-threaded).
        let mut t = unsafe { StoreTransport::new(base, 3) };
        let poke = |off: usize, v: u32| {
            // SAFETY: a 4-aligned offset inside the page.
            unsafe { core::ptr::write_volatile(base.add(off) as *mut u32, v) }
        };
        assert!(!t.ready());
        // A reply (and its event) that came before the wait: not slept
        // through, however long ago the indexes moved.
        poke(RSP_PROD, 5);
        assert!(t.ready());
        // Its first bytes taken (a partial header): nothing to wake for.
        assert_eq!(t.recv(), Ok(None));
        assert!(!t.ready());
        // A request bigger than the ring: wakes when there is room.
        assert_eq!(t.send(&[0; 1100]), Ok(XENSTORE_RING_SIZE));
        assert!(!t.ready());
        poke(REQ_CONS, 100);
        assert!(t.ready());
        assert_eq!(t.send(&[0; 76]), Ok(76));
        assert!(!t.ready());
        assert_eq!(t.server_features(), 0);
        poke(SERVER_FEATURES, 3);
        assert_eq!(t.server_features(), 3);
    }

    #[test]
    fn no_store_no_transport() {
        let mut raw = crate::start_info::tests::sample_raw();
        raw.store_mfn = 0;
        let si = StartInfo::from_raw(&raw, 0);
        assert_eq!(
            StoreTransport::from_start_info(&si).err(),
            Some(StoreError::NoStore)
        );
        raw.store_mfn = 0x1234;
        let si = StartInfo::from_raw(&raw, 0);
        assert!(matches!(
            StoreTransport::from_start_info(&si).err(),
            Some(StoreError::Map(0x1234, _))
        ));
    }
}
