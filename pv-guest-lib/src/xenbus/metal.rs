//! The glue for a real domain: the store ring page from `start_info`
//! (`store_mfn`, found in the direct map) and its event channel
//! (`store_evtchn`): [`StoreTransport`] notifies xenstored with
//! `EVTCHNOP_send` and waits with [`crate::time::block_until`] until
//! xenstored has moved one of the indexes it owns.
//!
//! Builds everywhere; only meaningful in a booted PV kernel after
//! [`crate::runtime::init`] (on the host the hypercalls go to the mock).

use super::page::{RawPage, SharedPage, REQ_CONS, RSP_PROD};
use super::ring::RingClient;
use super::wire::Message;
use super::{ShutdownRequest, Transport, Xenbus, XsError};
use crate::abi::sched::ShutdownReason;
use crate::start_info::StartInfo;

/// How long [`StoreTransport::wait`] sleeps before giving up by default.
pub const DEFAULT_TIMEOUT_NS: u64 = 10_000_000_000;

/// The domain's connection to xenstored over its ring page and event
/// channel.
pub struct StoreTransport {
    ring: RingClient<RawPage>,
    port: u32,
    timeout_ns: u64,
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
        }
    }

    /// The transport `start_info` describes: `store_mfn` must be one of
    /// our frames and in the direct map. `None` for Dom0 (which has no
    /// store ring: it runs xenstored) or if the frame is not mapped.
    pub fn from_start_info(si: &StartInfo) -> Option<Self> {
        if si.store_mfn == 0 {
            return None;
        }
        let pfn = crate::frame::mfn_to_pfn(si.store_mfn)?;
        let va = crate::frame::direct_va(pfn)?;
        // SAFETY: the direct map maps our own frames writable for the
        // kernel's lifetime, and the store page is one of them.
        Some(unsafe { StoreTransport::new(va as *mut u8, si.store_evtchn) })
    }

    /// Sets how long `wait` sleeps before giving up.
    pub fn set_timeout_ns(&mut self, ns: u64) {
        self.timeout_ns = ns;
    }
}

impl Transport for StoreTransport {
    fn send(&mut self, data: &[u8]) -> Result<usize, XsError> {
        let n = self.ring.send(data)?;
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
        let page = self.ring.page();
        let (rsp, req) = (page.load_u32(RSP_PROD), page.load_u32(REQ_CONS));
        let deadline = crate::time::now_ns().saturating_add(self.timeout_ns);
        let moved = || page.load_u32(RSP_PROD) != rsp || page.load_u32(REQ_CONS) != req;
        crate::time::block_until(deadline, moved) == crate::time::Wake::Ready
    }
}

/// A xenstore client for this domain (see [`StoreTransport::from_start_info`]).
pub fn connect(si: &StartInfo) -> Option<Xenbus<StoreTransport>> {
    StoreTransport::from_start_info(si).map(Xenbus::new)
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
