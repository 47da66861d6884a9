//! blkfront: a PV guest's virtual block device (Xen's blkif protocol,
//! `public/io/blkif.h`), as Linux's `xen-blkfront` speaks it.
//!
//! - [`ring`]: the shared request/response ring, both ends (Dom0's blkback
//!   uses [`ring::BackRing`]);
//! - [`Blkfront`]: one `device/vbd/<devid>` device: the XenBus handshake
//!   (Initialising → Initialised → Connected, Closing → Closed), a
//!   multi-page ring (`ring-page-order`), indirect descriptors
//!   (`feature-max-indirect-segments`), flush and discard, and a safe,
//!   blocking API ([`Blkfront::read`], [`Blkfront::write`],
//!   [`Blkfront::flush`], [`Blkfront::discard`]) over a lower, pipelined
//!   one ([`Blkfront::submit`], [`Blkfront::poll`], [`Blkfront::complete`]).
//!
//! Pure logic: grants, event channels, page allocation and waiting are
//! behind [`FrontHost`], xenstore behind [`XsAccess`] (implemented for
//! [`Xenbus`]), so it runs on the host against Dom0's real blkback and
//! xenstored (`dom0-tools/tests/blkif*.rs`).
//!
//! Data moves through bounce pages the frontend grants to the backend once
//! (a pool grown on demand up to [`Config::max_pages`]); callers' buffers
//! never leave this address space. The backend is not trusted either: a
//! response for an id not in flight, of the wrong operation, or a producer
//! index past what was asked, disables the device ([`BlkError::Protocol`]).

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use zerocopy::IntoBytes;

use crate::abi::io::blkif::{
    BlkifOp, BlkifRequestDiscard, BlkifRequestIndirect, BlkifRequestSegment, BlkifRsp,
    BlkifSringEntry, BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST, BLKIF_MAX_SEGMENTS_PER_REQUEST,
    BLKIF_SECTOR_SIZE, BLKIF_SEGS_PER_INDIRECT_FRAME, VDISK_READONLY,
};
use crate::abi::io::xenbus::XenbusState;
use crate::grant::GrantRef;
use crate::xenbus::page::{SharedPage, PAGE_SIZE};
use crate::xenbus::{Transport, Xenbus, NO_TX};

#[cfg(target_os = "none")]
pub mod metal;
pub mod ring;

use ring::{FrontRing, SharedRing, MAX_RING_PAGE_ORDER};

/// The `protocol` this side speaks (`XEN_IO_PROTO_ABI_X86_64`).
pub const PROTOCOL: &str = "x86_64-abi";
/// Sectors (512 bytes) in a page.
pub const SECTORS_PER_PAGE: u64 = (PAGE_SIZE / BLKIF_SECTOR_SIZE) as u64;

/// Xenstore as both blkif ends use it: plain reads and writes outside
/// transactions (each end writes its `state` last).
pub trait XsAccess {
    /// The value at `path`, if it exists and is UTF-8.
    fn read(&mut self, path: &str) -> Option<String>;
    /// Writes `value` at `path`; false on failure.
    fn write(&mut self, path: &str, value: &str) -> bool;
    /// Removes `path`; false on failure.
    fn rm(&mut self, path: &str) -> bool;
}

impl<T: Transport> XsAccess for Xenbus<T> {
    fn read(&mut self, path: &str) -> Option<String> {
        self.read_string(NO_TX, path).ok()
    }
    fn write(&mut self, path: &str, value: &str) -> bool {
        Xenbus::write(self, NO_TX, path, value.as_bytes()).is_ok()
    }
    fn rm(&mut self, path: &str) -> bool {
        Xenbus::rm(self, NO_TX, path).is_ok()
    }
}

/// Reads a decimal number (surrounding whitespace allowed).
pub fn read_u64<X: XsAccess + ?Sized>(xs: &mut X, path: &str) -> Option<u64> {
    xs.read(path)?.trim().parse().ok()
}

/// Reads a `state` node; missing or garbage is [`XenbusState::Unknown`].
pub fn read_state<X: XsAccess + ?Sized>(xs: &mut X, path: &str) -> XenbusState {
    read_u64(xs, path)
        .and_then(XenbusState::from_raw)
        .unwrap_or(XenbusState::Unknown)
}

/// Writes a `state` node.
pub fn write_state<X: XsAccess + ?Sized>(xs: &mut X, path: &str, s: XenbusState) -> bool {
    xs.write(path, &(s as u32).to_string())
}

/// What blkfront needs from the guest kernel. On the metal: pages from the
/// page allocator, grant-table entries, event channels; in host tests: a
/// fake grant table shared with the test's blkback.
pub trait FrontHost {
    /// A page of this guest's memory.
    type Page: SharedPage;
    /// A zeroed page, or `None` if out of memory.
    fn alloc_page(&mut self) -> Option<Self::Page>;
    /// Returns a page to the allocator (no grant is left on it).
    fn free_page(&mut self, page: Self::Page);
    /// Grants `backend` access to `page`.
    fn grant(&mut self, backend: u16, page: &Self::Page, readonly: bool) -> Option<GrantRef>;
    /// Ends a grant; false if the backend still has it mapped (the page
    /// must then be leaked, never reused).
    fn end_grant(&mut self, gref: GrantRef) -> bool;
    /// An unbound event channel for `backend` to bind to.
    fn alloc_evtchn(&mut self, backend: u16) -> Option<u32>;
    /// Closes a port.
    fn close_evtchn(&mut self, port: u32);
    /// Signals the backend.
    fn notify(&mut self, port: u32);
    /// Blocks until something may have changed (an event, a xenstore
    /// watch); false to give up.
    fn wait(&mut self) -> bool;
}

/// Why a block operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlkError {
    /// The device is not connected (yet, or any more).
    NotConnected,
    /// A xenstore access failed.
    Xenstore,
    /// The backend's xenstore entries are missing or malformed.
    BadBackend,
    /// No page, grant or event channel.
    NoMemory,
    /// Every ring slot or bounce page is in use (try again after
    /// [`Blkfront::poll`]).
    Busy,
    /// The backend broke the ring protocol; the device is disabled.
    Protocol,
    /// The backend answered `BLKIF_RSP_ERROR`.
    Io,
    /// The backend answered `BLKIF_RSP_EOPNOTSUPP`, or the feature is not
    /// advertised.
    NotSupported,
    /// Sectors past the end of the disk.
    OutOfRange,
    /// A length or sector not a multiple of the sector size.
    Unaligned,
    /// Write to a read-only device.
    ReadOnly,
    /// [`FrontHost::wait`] gave up.
    Timeout,
}

/// Frontend settings.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// `ring-page-order` to ask for (capped by the backend's
    /// `max-ring-page-order` and [`MAX_RING_PAGE_ORDER`]).
    pub ring_page_order: u32,
    /// Most segments per indirect request (capped by the backend's
    /// `feature-max-indirect-segments`); 0 disables indirect requests.
    pub max_indirect_segments: u32,
    /// Most bounce pages (data and indirect descriptor pages) kept granted.
    pub max_pages: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ring_page_order: 0,
            max_indirect_segments: 32,
            max_pages: 256,
        }
    }
}

/// What the backend told us about the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskInfo {
    /// Size in 512-byte sectors (`sectors`).
    pub sectors: u64,
    /// Logical sector size in bytes (`sector-size`).
    pub sector_size: u32,
    /// `info` (`VDISK_*` bits).
    pub info: u32,
    /// `feature-flush-cache`.
    pub flush: bool,
    /// `feature-barrier`.
    pub barrier: bool,
    /// `feature-discard`.
    pub discard: bool,
    /// Segments per request in use: 11, or the negotiated indirect maximum.
    pub max_segments: u32,
    /// Ring pages in use.
    pub ring_pages: u32,
}

impl DiskInfo {
    /// `VDISK_READONLY`.
    pub fn readonly(&self) -> bool {
        self.info & VDISK_READONLY != 0
    }
    /// Size in bytes.
    pub fn bytes(&self) -> u64 {
        self.sectors * BLKIF_SECTOR_SIZE as u64
    }
}

/// An operation for [`Blkfront::submit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Read `n` sectors.
    Read,
    /// Write `n` sectors (data passed to `submit`).
    Write,
    /// Write with a barrier.
    WriteBarrier,
    /// Flush the disk cache.
    Flush,
    /// Discard `n` sectors.
    Discard,
}

/// Where a request's data comes from ([`Blkfront::submit_with`]).
enum Data<'a, P> {
    /// Copied from the caller's buffer (none for reads).
    Copy(Option<&'a [u8]>),
    /// Put into each lent page by the caller.
    Fill(&'a mut dyn FnMut(usize, &P)),
}

struct PoolPage<P> {
    page: P,
    gref: GrantRef,
}

struct Inflight {
    /// The operation in the ring slot (`BLKIF_OP_INDIRECT` for indirect).
    wire_op: u8,
    op: Op,
    data: Vec<usize>,
    indirect: Vec<usize>,
    sectors: u64,
    status: Option<i16>,
}

struct Conn<P> {
    ring: FrontRing<P>,
    ring_grefs: Vec<GrantRef>,
    port: u32,
}

/// One virtual block device.
pub struct Blkfront<H: FrontHost> {
    devid: u32,
    path: String,
    backend: String,
    backend_id: u16,
    config: Config,
    state: XenbusState,
    conn: Option<Conn<H::Page>>,
    info: DiskInfo,
    broken: bool,
    pool: Vec<PoolPage<H::Page>>,
    free_pages: Vec<usize>,
    shadow: Vec<Option<Inflight>>,
}

impl<H: FrontHost> Blkfront<H> {
    /// The device `devid` (`virtual-device`, e.g. 51712 for xvda), whose
    /// frontend directory is `device/vbd/<devid>` relative to the domain's
    /// home (pass another `path` for a different layout).
    pub fn new(devid: u32, path: Option<&str>, config: Config) -> Self {
        Blkfront {
            devid,
            path: path.map_or_else(|| format!("device/vbd/{devid}"), String::from),
            backend: String::new(),
            backend_id: 0,
            config,
            state: XenbusState::Initialising,
            conn: None,
            info: DiskInfo::default(),
            broken: false,
            pool: Vec::new(),
            free_pages: Vec::new(),
            shadow: Vec::new(),
        }
    }

    /// The frontend directory.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The backend directory (once known).
    pub fn backend_path(&self) -> &str {
        &self.backend
    }

    /// Our XenBus state.
    pub fn state(&self) -> XenbusState {
        self.state
    }

    /// The disk, once connected.
    pub fn info(&self) -> Option<DiskInfo> {
        (self.state == XenbusState::Connected && !self.broken).then_some(self.info)
    }

    /// The event channel port (once the ring is set up).
    pub fn port(&self) -> Option<u32> {
        self.conn.as_ref().map(|c| c.port)
    }

    /// Bounce pages granted now (for leak checks).
    pub fn pool_pages(&self) -> usize {
        self.pool.len()
    }

    fn key(&self, k: &str) -> String {
        format!("{}/{}", self.path, k)
    }

    fn bkey(&self, k: &str) -> String {
        format!("{}/{}", self.backend, k)
    }

    fn switch<X: XsAccess + ?Sized>(&mut self, xs: &mut X, s: XenbusState) -> Result<(), BlkError> {
        if !write_state(xs, &self.key("state"), s) {
            return Err(BlkError::Xenstore);
        }
        self.state = s;
        Ok(())
    }

    /// One step of the XenBus handshake: reads the backend's state and
    /// reacts (call it when a watch on either `state` fires, or in a
    /// loop). Returns our state afterwards.
    pub fn xenbus_changed<X: XsAccess + ?Sized>(
        &mut self,
        xs: &mut X,
        host: &mut H,
    ) -> Result<XenbusState, BlkError> {
        if self.backend.is_empty() {
            let be = xs.read(&self.key("backend")).ok_or(BlkError::BadBackend)?;
            let id = read_u64(xs, &self.key("backend-id")).unwrap_or(0);
            self.backend = be;
            self.backend_id = u16::try_from(id).map_err(|_| BlkError::BadBackend)?;
        }
        let be = read_state(xs, &self.bkey("state"));
        use XenbusState as S;
        match be {
            S::InitWait if matches!(self.state, S::Initialising | S::Closed) => {
                self.talk_to_backend(xs, host)?;
            }
            S::Connected if self.state == S::Initialised => {
                self.connect(xs)?;
            }
            S::Connected if self.state == S::Connected => {
                // Online resize.
                if let Some(s) = read_u64(xs, &self.bkey("sectors")) {
                    self.info.sectors = s;
                }
            }
            S::Closing if self.state != S::Closed => {
                self.fail_inflight();
                self.switch(xs, S::Closed)?;
            }
            S::Closed | S::Unknown if self.state != S::Initialising || self.conn.is_some() => {
                self.fail_inflight();
                self.teardown(host);
                if self.state != S::Closed {
                    self.switch(xs, S::Closed)?;
                }
            }
            _ => {}
        }
        Ok(self.state)
    }

    /// Allocates and grants the ring, allocates the event channel, writes
    /// `ring-ref`/`ring-page-order`+`ring-ref<N>`, `event-channel` and
    /// `protocol`, and switches to Initialised.
    fn talk_to_backend<X: XsAccess + ?Sized>(
        &mut self,
        xs: &mut X,
        host: &mut H,
    ) -> Result<(), BlkError> {
        self.teardown(host);
        self.broken = false;
        let be_max = read_u64(xs, &self.bkey("max-ring-page-order")).unwrap_or(0);
        let order = u64::from(self.config.ring_page_order.min(MAX_RING_PAGE_ORDER)).min(be_max);
        let n = 1usize << order;
        let mut pages = Vec::with_capacity(n);
        let mut grefs = Vec::with_capacity(n);
        let mut port = None;
        for _ in 0..n {
            let Some(p) = host.alloc_page() else { break };
            match host.grant(self.backend_id, &p, false) {
                Some(g) => {
                    grefs.push(g);
                    pages.push(p);
                }
                None => {
                    host.free_page(p);
                    break;
                }
            }
        }
        if pages.len() == n {
            port = host.alloc_evtchn(self.backend_id);
        }
        let Some(port) = port else {
            for (g, p) in grefs.into_iter().zip(pages) {
                if host.end_grant(g) {
                    host.free_page(p);
                }
            }
            return Err(BlkError::NoMemory);
        };
        let Some(shared) = SharedRing::new(pages) else {
            return Err(BlkError::NoMemory);
        };
        let ring = FrontRing::new(shared);
        let size = ring.shared().size() as usize;
        self.conn = Some(Conn {
            ring,
            ring_grefs: grefs.clone(),
            port,
        });
        self.shadow = (0..size).map(|_| None).collect();
        let mut ok = true;
        if order == 0 {
            ok &= xs.write(&self.key("ring-ref"), &grefs[0].to_string());
        } else {
            ok &= xs.write(&self.key("ring-page-order"), &order.to_string());
            for (i, g) in grefs.iter().enumerate() {
                ok &= xs.write(&self.key(&format!("ring-ref{i}")), &g.to_string());
            }
        }
        ok &= xs.write(&self.key("event-channel"), &port.to_string());
        ok &= xs.write(&self.key("protocol"), PROTOCOL);
        // Our bounce pages stay granted for the connection's lifetime, so a
        // backend may keep them mapped instead of grant-copying each time.
        ok &= xs.write(&self.key("feature-persistent"), "1");
        if !ok {
            self.teardown(host);
            return Err(BlkError::Xenstore);
        }
        self.info.ring_pages = n as u32;
        self.switch(xs, XenbusState::Initialised)
    }

    /// Reads the disk's parameters and features; switches to Connected.
    fn connect<X: XsAccess + ?Sized>(&mut self, xs: &mut X) -> Result<(), BlkError> {
        let sectors = read_u64(xs, &self.bkey("sectors")).ok_or(BlkError::BadBackend)?;
        let ss = read_u64(xs, &self.bkey("sector-size")).unwrap_or(512);
        if !(512..=65536).contains(&ss) || !ss.is_power_of_two() {
            return Err(BlkError::BadBackend);
        }
        let flag = |xs: &mut X, k: &str| read_u64(xs, &format!("{}/{k}", self.backend)) == Some(1);
        let flush = flag(xs, "feature-flush-cache");
        let barrier = flag(xs, "feature-barrier");
        let discard = flag(xs, "feature-discard");
        let info = read_u64(xs, &self.bkey("info")).unwrap_or(0) as u32;
        let be_ind = read_u64(xs, &self.bkey("feature-max-indirect-segments")).unwrap_or(0);
        let max_ind = (be_ind.min(u64::from(self.config.max_indirect_segments)) as usize)
            .min(BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST * BLKIF_SEGS_PER_INDIRECT_FRAME)
            as u32;
        // One request must fit in the bounce pool (with its indirect pages).
        let mut max_segments = max_ind.max(BLKIF_MAX_SEGMENTS_PER_REQUEST as u32);
        let pool = self.config.max_pages.clamp(1, u32::MAX as usize) as u32;
        if max_segments > BLKIF_MAX_SEGMENTS_PER_REQUEST as u32 {
            max_segments =
                max_segments.min(pool.saturating_sub(BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST as u32));
        }
        let max_segments = max_segments.min(pool).max(1);
        self.info = DiskInfo {
            sectors,
            sector_size: ss as u32,
            info,
            flush,
            barrier,
            discard,
            max_segments,
            ring_pages: self.info.ring_pages,
        };
        self.switch(xs, XenbusState::Connected)
    }

    /// Starts closing the device (the backend follows; keep calling
    /// [`Blkfront::xenbus_changed`] until the state is Closed, or use
    /// [`Blkfront::close`]).
    pub fn start_close<X: XsAccess + ?Sized>(&mut self, xs: &mut X) -> Result<(), BlkError> {
        self.switch(xs, XenbusState::Closing)
    }

    /// Closes the device and waits for the backend to let go of the ring;
    /// afterwards every page is revoked and freed.
    pub fn close<X: XsAccess + ?Sized>(
        &mut self,
        xs: &mut X,
        host: &mut H,
    ) -> Result<(), BlkError> {
        if self.state != XenbusState::Closed {
            self.start_close(xs)?;
        }
        for _ in 0..10_000 {
            self.xenbus_changed(xs, host)?;
            if self.state == XenbusState::Closed && self.conn.is_none() {
                return Ok(());
            }
            if !host.wait() {
                break;
            }
        }
        Err(BlkError::Timeout)
    }

    /// After Closed: goes back to Initialising so the backend offers the
    /// device again (then [`Blkfront::connect_blocking`]).
    pub fn restart<X: XsAccess + ?Sized>(
        &mut self,
        xs: &mut X,
        host: &mut H,
    ) -> Result<(), BlkError> {
        if self.state != XenbusState::Closed {
            return Err(BlkError::NotConnected);
        }
        self.teardown(host);
        self.switch(xs, XenbusState::Initialising)
    }

    /// After the domain was restored into a new one (see
    /// [`crate::suspend`]): the backend, the grants and the event channel
    /// of the old domain are gone, so the connection is dropped without
    /// closing its port (that number may now be someone else's) and the
    /// handshake runs again with the new domain's backend (the toolstack
    /// made its nodes anew, the frontend's state `Initialising`). The
    /// grant table must have been set up again first
    /// ([`crate::grant::GrantTable::resume`]). Requests must not be in
    /// flight across a suspend.
    pub fn reconnect_after_restore<X: XsAccess + ?Sized>(
        &mut self,
        xs: &mut X,
        host: &mut H,
    ) -> Result<DiskInfo, BlkError> {
        self.fail_inflight();
        if let Some(c) = self.conn.take() {
            // The new table is empty: ending the old references frees them.
            for g in &c.ring_grefs {
                let _ = host.end_grant(*g);
            }
            for p in c.ring.into_pages() {
                host.free_page(p);
            }
        }
        self.shadow.clear();
        for pp in self.pool.drain(..) {
            let _ = host.end_grant(pp.gref);
            host.free_page(pp.page);
        }
        self.free_pages.clear();
        // The backend is the new domain's (its path names the new domid).
        self.backend.clear();
        self.state = XenbusState::Initialising;
        self.connect_blocking(xs, host)
    }

    /// Runs the handshake until connected.
    pub fn connect_blocking<X: XsAccess + ?Sized>(
        &mut self,
        xs: &mut X,
        host: &mut H,
    ) -> Result<DiskInfo, BlkError> {
        for _ in 0..10_000 {
            let s = self.xenbus_changed(xs, host)?;
            if s == XenbusState::Connected {
                return Ok(self.info);
            }
            if s == XenbusState::Closed {
                return Err(BlkError::NotConnected);
            }
            if !host.wait() {
                break;
            }
        }
        Err(BlkError::Timeout)
    }

    fn fail_inflight(&mut self) {
        for s in self.shadow.iter_mut().flatten() {
            if s.status.is_none() {
                s.status = Some(BlkifRsp::Error as i16);
            }
        }
    }

    /// Revokes and frees the ring and the bounce pages, closes the port.
    /// A grant the backend still holds is leaked, never reused.
    fn teardown(&mut self, host: &mut H) {
        if let Some(c) = self.conn.take() {
            host.close_evtchn(c.port);
            let mut ok = true;
            for g in &c.ring_grefs {
                ok &= host.end_grant(*g);
            }
            if ok {
                for p in c.ring.into_pages() {
                    host.free_page(p);
                }
            }
        }
        // In-flight pages may still be in the backend's hands: the backend
        // is gone or closed here, so ending the grant tells us.
        self.shadow.clear();
        for pp in self.pool.drain(..) {
            if host.end_grant(pp.gref) {
                host.free_page(pp.page);
            }
        }
        self.free_pages.clear();
    }

    fn take_page(&mut self, host: &mut H) -> Option<usize> {
        if let Some(i) = self.free_pages.pop() {
            return Some(i);
        }
        if self.pool.len() >= self.config.max_pages {
            return None;
        }
        let page = host.alloc_page()?;
        let Some(gref) = host.grant(self.backend_id, &page, false) else {
            host.free_page(page);
            return None;
        };
        self.pool.push(PoolPage { page, gref });
        Some(self.pool.len() - 1)
    }

    fn connected(&self) -> Result<(), BlkError> {
        if self.broken {
            return Err(BlkError::Protocol);
        }
        if self.state != XenbusState::Connected || self.conn.is_none() {
            return Err(BlkError::NotConnected);
        }
        Ok(())
    }

    /// Largest transfer one request carries, in bytes.
    pub fn max_request_bytes(&self) -> usize {
        self.info.max_segments as usize * PAGE_SIZE
    }

    /// Queues one request and notifies the backend: `op` on `sectors`
    /// 512-byte sectors from `sector` (`data` holds them for writes).
    /// Returns the id to pass to [`Blkfront::complete`].
    pub fn submit(
        &mut self,
        host: &mut H,
        op: Op,
        sector: u64,
        sectors: u64,
        data: Option<&[u8]>,
    ) -> Result<u64, BlkError> {
        self.submit_with(host, op, sector, sectors, Data::Copy(data))
    }

    /// As [`Blkfront::submit`], with the data in place: instead of copying
    /// a buffer in, lends the caller each granted data page (`fill(k,
    /// page)` for the `k`th 4 KiB of the transfer) before the request
    /// goes out, so a writer can put its data straight into the pages
    /// (what it does not write, the pages keep from earlier use; a reader
    /// need not do anything). [`Blkfront::complete_in_place`] lends a
    /// read's pages back.
    pub fn submit_in_place(
        &mut self,
        host: &mut H,
        op: Op,
        sector: u64,
        sectors: u64,
        fill: &mut dyn FnMut(usize, &H::Page),
    ) -> Result<u64, BlkError> {
        self.submit_with(host, op, sector, sectors, Data::Fill(fill))
    }

    fn submit_with(
        &mut self,
        host: &mut H,
        op: Op,
        sector: u64,
        sectors: u64,
        mut data: Data<'_, H::Page>,
    ) -> Result<u64, BlkError> {
        self.connected()?;
        let info = self.info;
        let ss = u64::from(info.sector_size / 512);
        let data_op = matches!(op, Op::Read | Op::Write | Op::WriteBarrier);
        match op {
            Op::Flush if !info.flush && !info.barrier => return Err(BlkError::NotSupported),
            Op::WriteBarrier if !info.barrier => return Err(BlkError::NotSupported),
            Op::Discard if !info.discard => return Err(BlkError::NotSupported),
            _ => {}
        }
        if op != Op::Read && info.readonly() {
            return Err(BlkError::ReadOnly);
        }
        if data_op || op == Op::Discard {
            if !(sector | sectors).is_multiple_of(ss) {
                return Err(BlkError::Unaligned);
            }
            if sector.checked_add(sectors).is_none_or(|e| e > info.sectors) {
                return Err(BlkError::OutOfRange);
            }
        }
        let nsegs = if data_op {
            sectors.div_ceil(SECTORS_PER_PAGE) as usize
        } else {
            0
        };
        if nsegs > info.max_segments as usize || (data_op && nsegs == 0 && op != Op::WriteBarrier) {
            return Err(BlkError::OutOfRange);
        }
        if matches!(op, Op::Write | Op::WriteBarrier)
            && sectors > 0
            && matches!(data, Data::Copy(d)
                if d.is_none_or(|d| d.len() as u64 != sectors * BLKIF_SECTOR_SIZE as u64))
        {
            return Err(BlkError::Unaligned);
        }
        let indirect = nsegs > BLKIF_MAX_SEGMENTS_PER_REQUEST;
        let nind = if indirect {
            nsegs.div_ceil(BLKIF_SEGS_PER_INDIRECT_FRAME)
        } else {
            0
        };
        let conn = self.conn.as_ref().ok_or(BlkError::NotConnected)?;
        if conn.ring.free_requests() == 0 {
            return Err(BlkError::Busy);
        }
        let Some(id) = self.shadow.iter().position(Option::is_none) else {
            return Err(BlkError::Busy);
        };
        // Pages.
        let mut pages = Vec::with_capacity(nsegs + nind);
        for _ in 0..nsegs + nind {
            match self.take_page(host) {
                Some(i) => pages.push(i),
                None => {
                    self.free_pages.extend(pages);
                    return Err(BlkError::Busy);
                }
            }
        }
        let ind_pages = pages.split_off(nsegs);
        // Data and segments.
        let mut segs = Vec::with_capacity(nsegs);
        let mut left = sectors;
        for (k, &pi) in pages.iter().enumerate() {
            let n = left.min(SECTORS_PER_PAGE);
            left -= n;
            match &mut data {
                Data::Copy(Some(d)) => {
                    let off = k * PAGE_SIZE;
                    let len = n as usize * BLKIF_SECTOR_SIZE;
                    self.pool[pi].page.write(0, &d[off..off + len]);
                }
                Data::Copy(None) => {}
                Data::Fill(f) => f(k, &self.pool[pi].page),
            }
            segs.push(BlkifRequestSegment {
                gref: self.pool[pi].gref,
                first_sect: 0,
                last_sect: (n - 1) as u8,
                _pad6: 0,
            });
        }
        let wire = match op {
            Op::Read => BlkifOp::Read,
            Op::Write => BlkifOp::Write,
            Op::WriteBarrier => BlkifOp::WriteBarrier,
            Op::Flush if info.flush => BlkifOp::FlushDiskcache,
            Op::Flush => BlkifOp::WriteBarrier,
            Op::Discard => BlkifOp::Discard,
        } as u8;
        let mut e = BlkifSringEntry::default();
        let handle = self.devid as u16;
        let wire_op = if indirect {
            let mut r = BlkifRequestIndirect {
                operation: BlkifOp::Indirect as u8,
                indirect_op: wire,
                nr_segments: nsegs as u16,
                id: id as u64,
                sector_number: sector,
                handle,
                ..Default::default()
            };
            for (k, chunk) in segs.chunks(BLKIF_SEGS_PER_INDIRECT_FRAME).enumerate() {
                let pp = &self.pool[ind_pages[k]];
                pp.page.write(0, chunk.as_bytes());
                r.indirect_grefs[k] = pp.gref;
            }
            e.req.as_mut_bytes()[..core::mem::size_of::<BlkifRequestIndirect>()]
                .copy_from_slice(r.as_bytes());
            BlkifOp::Indirect as u8
        } else if op == Op::Discard {
            let r = BlkifRequestDiscard {
                operation: wire,
                id: id as u64,
                sector_number: sector,
                nr_sectors: sectors,
                handle,
                ..Default::default()
            };
            e.req.as_mut_bytes()[..core::mem::size_of::<BlkifRequestDiscard>()]
                .copy_from_slice(r.as_bytes());
            wire
        } else {
            e.req.operation = wire;
            e.req.nr_segments = nsegs as u8;
            e.req.handle = handle;
            e.req.id = id as u64;
            e.req.sector_number = sector;
            e.req.seg[..nsegs].copy_from_slice(&segs);
            wire
        };
        self.shadow[id] = Some(Inflight {
            wire_op,
            op,
            data: pages,
            indirect: ind_pages,
            sectors,
            status: None,
        });
        let conn = self.conn.as_mut().ok_or(BlkError::NotConnected)?;
        conn.ring.put_request(&e);
        if conn.ring.push_requests() {
            host.notify(conn.port);
        }
        Ok(id as u64)
    }

    /// Collects the backend's responses; returns how many arrived. A
    /// response that breaks the protocol disables the device.
    pub fn poll(&mut self) -> Result<usize, BlkError> {
        if self.broken {
            return Err(BlkError::Protocol);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Ok(0);
        };
        let mut n = 0;
        loop {
            let r = match conn.ring.next_response() {
                Ok(Some(r)) => r,
                Ok(None) => {
                    if conn.ring.final_check_for_responses() {
                        continue;
                    }
                    break;
                }
                Err(_) => {
                    self.broken = true;
                    self.fail_inflight();
                    return Err(BlkError::Protocol);
                }
            };
            let slot = usize::try_from(r.id)
                .ok()
                .and_then(|i| self.shadow.get_mut(i))
                .and_then(Option::as_mut);
            match slot {
                Some(s) if s.status.is_none() && s.wire_op == r.operation => {
                    s.status = Some(r.status);
                    n += 1;
                }
                _ => {
                    log::warn!("blkfront {}: bad response id {}", self.devid, r.id);
                    self.broken = true;
                    self.fail_inflight();
                    return Err(BlkError::Protocol);
                }
            }
        }
        Ok(n)
    }

    /// The result of request `id` if it is done (copying read data into
    /// `out`, which must hold its sectors); `None` while in flight. The id
    /// is free again afterwards.
    pub fn complete(&mut self, id: u64, out: Option<&mut [u8]>) -> Option<Result<(), BlkError>> {
        match out {
            Some(out) => self.complete_with(id, &mut |k, page, n| {
                // As much as fits in `out`.
                let off = k * PAGE_SIZE;
                let end = (off + n).min(out.len());
                if off < end {
                    page.read(0, &mut out[off..end]);
                }
            }),
            None => self.complete_with(id, &mut |_, _, _| {}),
        }
    }

    /// As [`Blkfront::complete`], lending the caller a successful read's
    /// data in place: `f(k, page, len)` for the `k`th 4 KiB of the
    /// transfer (`len` bytes of it at the page's start), before the pages
    /// go back to the pool.
    pub fn complete_in_place(
        &mut self,
        id: u64,
        f: &mut dyn FnMut(usize, &H::Page, usize),
    ) -> Option<Result<(), BlkError>> {
        self.complete_with(id, f)
    }

    fn complete_with(
        &mut self,
        id: u64,
        f: &mut dyn FnMut(usize, &H::Page, usize),
    ) -> Option<Result<(), BlkError>> {
        let i = usize::try_from(id).ok()?;
        let s = self.shadow.get(i)?.as_ref()?;
        let status = s.status?;
        let s = self.shadow[i].take()?;
        let res = match BlkifRsp::from_raw(i64::from(status)) {
            Some(BlkifRsp::Okay) => Ok(()),
            Some(BlkifRsp::Eopnotsupp) => Err(BlkError::NotSupported),
            _ => Err(BlkError::Io),
        };
        if res.is_ok() && s.op == Op::Read {
            let mut left = s.sectors as usize * BLKIF_SECTOR_SIZE;
            for (k, &pi) in s.data.iter().enumerate() {
                if left == 0 {
                    break;
                }
                let n = left.min(PAGE_SIZE);
                if let Some(pp) = self.pool.get(pi) {
                    f(k, &pp.page, n);
                }
                left -= n;
            }
        }
        // Pages of a device torn down meanwhile are gone from the pool.
        let live = self.pool.len();
        self.free_pages
            .extend(s.data.iter().chain(&s.indirect).filter(|&&p| p < live));
        Some(res)
    }

    fn wait_some(&mut self, host: &mut H) -> Result<(), BlkError> {
        if !host.wait() {
            return Err(BlkError::Timeout);
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes (a multiple of the sector size) from
    /// 512-byte sector `sector`.
    pub fn read(&mut self, host: &mut H, sector: u64, buf: &mut [u8]) -> Result<(), BlkError> {
        self.transfer(host, sector, Buf::Read(buf), Op::Read)
    }

    /// Writes `data` (a multiple of the sector size) at sector `sector`.
    pub fn write(&mut self, host: &mut H, sector: u64, data: &[u8]) -> Result<(), BlkError> {
        self.transfer(host, sector, Buf::Write(data), Op::Write)
    }

    /// Writes `data` with a barrier: everything written before is on stable
    /// storage first, and so is `data` when this returns.
    pub fn write_barrier(
        &mut self,
        host: &mut H,
        sector: u64,
        data: &[u8],
    ) -> Result<(), BlkError> {
        self.transfer(host, sector, Buf::Write(data), Op::WriteBarrier)
    }

    /// Flushes the backend's write cache (`BLKIF_OP_FLUSH_DISKCACHE`, or
    /// an empty barrier if only `feature-barrier` is offered).
    pub fn flush(&mut self, host: &mut H) -> Result<(), BlkError> {
        self.single(host, Op::Flush, 0, 0)
    }

    /// Discards `sectors` sectors from `sector`.
    pub fn discard(&mut self, host: &mut H, sector: u64, sectors: u64) -> Result<(), BlkError> {
        self.single(host, Op::Discard, sector, sectors)
    }

    fn single(&mut self, host: &mut H, op: Op, sector: u64, n: u64) -> Result<(), BlkError> {
        let id = loop {
            match self.submit(host, op, sector, n, None) {
                Err(BlkError::Busy) => {
                    self.poll()?;
                    self.wait_some(host)?;
                }
                r => break r?,
            }
        };
        loop {
            self.poll()?;
            if let Some(r) = self.complete(id, None) {
                return r;
            }
            self.connected()?;
            self.wait_some(host)?;
        }
    }

    fn transfer(
        &mut self,
        host: &mut H,
        sector: u64,
        mut buf: Buf<'_>,
        op: Op,
    ) -> Result<(), BlkError> {
        self.connected()?;
        let total = buf.len();
        let ss = self.info.sector_size as usize;
        if !total.is_multiple_of(ss) {
            return Err(BlkError::Unaligned);
        }
        let chunk = (self.max_request_bytes() / ss * ss).max(ss);
        let mut pending: VecDeque<(u64, usize, usize)> = VecDeque::new();
        let mut pos = 0;
        let mut result = Ok(());
        // A write barrier orders against everything before it: the data
        // goes as plain writes, then one empty barrier.
        let wop = if op == Op::WriteBarrier {
            Op::Write
        } else {
            op
        };
        while pos < total || !pending.is_empty() {
            while pos < total && result.is_ok() {
                let len = chunk.min(total - pos);
                let s = sector + (pos / BLKIF_SECTOR_SIZE) as u64;
                let n = (len / BLKIF_SECTOR_SIZE) as u64;
                let data = match &buf {
                    Buf::Write(d) => Some(&d[pos..pos + len]),
                    Buf::Read(_) => None,
                };
                match self.submit(host, wop, s, n, data) {
                    Ok(id) => {
                        pending.push_back((id, pos, len));
                        pos += len;
                    }
                    Err(BlkError::Busy) if !pending.is_empty() => break,
                    Err(e) => result = Err(e),
                }
            }
            if result.is_err() {
                pos = total;
            }
            if pending.is_empty() {
                break;
            }
            self.poll()?;
            let mut progress = false;
            while let Some(&(id, off, len)) = pending.front() {
                let out = match &mut buf {
                    Buf::Read(b) => Some(&mut b[off..off + len]),
                    Buf::Write(_) => None,
                };
                match self.complete(id, out) {
                    Some(r) => {
                        pending.pop_front();
                        progress = true;
                        if result.is_ok() {
                            result = r;
                        }
                    }
                    None => break,
                }
            }
            if !progress {
                self.connected()?;
                self.wait_some(host)?;
            }
        }
        result?;
        if op == Op::WriteBarrier {
            self.single(host, Op::WriteBarrier, 0, 0)?;
        }
        Ok(())
    }
}

enum Buf<'a> {
    Read(&'a mut [u8]),
    Write(&'a [u8]),
}

impl Buf<'_> {
    fn len(&self) -> usize {
        match self {
            Buf::Read(b) => b.len(),
            Buf::Write(b) => b.len(),
        }
    }
}
