//! netfront on the metal: [`MetalHost`] gives [`super::Netfront`] pages
//! from the frame allocator (through the direct map), grants from the
//! domain's [`GrantTable`], and event channels.
//!
//! ```ignore
//! let mut host = MetalHost { gt: &mut grant_table };
//! let mut nf = Netfront::init(&mut xenbus, host, 0)?;
//! xenbus.watch(&format!("{}/state", nf.backend_path()), "vif0")?;
//! while !nf.connect_step(&mut xenbus)? {
//!     xenbus.wait_event()?;
//! }
//! ```
//!
//! Pages are never given back: one the backend still had access to when
//! its grant could not be ended must not be reused, and netfront keeps
//! every page for its whole life anyway.

use crate::abi::xen::DOMID_SELF;
use crate::error::Errno;
use crate::events;
use crate::frame::{self, Frame};
use crate::grant::{GrantError, GrantRef, GrantTable};
use crate::xenbus::page::{RawPage, SharedPage};

/// A frame of ours, mapped in the direct map.
pub struct MetalPage {
    frame: Frame,
    raw: RawPage,
}

impl MetalPage {
    /// The machine frame, as the p2m says now (a restore into a new
    /// domain moves every frame: the one the page was allocated with is
    /// the old domain's).
    pub fn mfn(&self) -> u64 {
        crate::frame::pfn_to_mfn(self.frame.pfn).unwrap_or(self.frame.mfn)
    }

    /// The frame.
    pub fn frame(&self) -> Frame {
        self.frame
    }
}

impl SharedPage for MetalPage {
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

/// The kernel services netfront uses, over the domain's grant table.
pub struct MetalHost<'a> {
    /// The domain's grant table.
    pub gt: &'a mut GrantTable,
}

impl super::NetfrontHost for MetalHost<'_> {
    type Page = MetalPage;

    fn alloc_page(&mut self) -> Option<MetalPage> {
        let frame = frame::alloc_frame().ok()?;
        // SAFETY: the frame is ours for good (never freed, see the module
        // documentation), zeroed, and mapped writable at `va`, page
        // aligned; only this RawPage (and the backend, by grant) touches it.
        let raw = unsafe { RawPage::new(frame.va as *mut u8) };
        Some(MetalPage { frame, raw })
    }

    fn grant(
        &mut self,
        page: &MetalPage,
        domid: u16,
        readonly: bool,
    ) -> Result<GrantRef, GrantError> {
        self.gt.grant_access(domid, page.mfn(), readonly)
    }

    fn end_grant(&mut self, gref: GrantRef) -> Result<(), GrantError> {
        self.gt.end_access(gref)
    }

    fn alloc_evtchn(&mut self, remote: u16) -> Result<u32, Errno> {
        events::alloc_unbound(DOMID_SELF, remote)
    }

    fn close_evtchn(&mut self, port: u32) {
        let _ = events::close(port);
    }

    fn notify(&mut self, port: u32) {
        let _ = events::send(port);
    }
}
