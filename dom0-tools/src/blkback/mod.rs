//! # blkback — Dom0's block back-end (Xen's blkif protocol)
//!
//! Serves `vbd` devices to guests' blkfronts the way Linux's `xen-blkback`
//! does, as pure logic:
//!
//! - [`Vbd`] is one device's XenBus back-end: it advertises its features
//!   in `/local/domain/0/backend/vbd/<domid>/<devid>/` and switches to
//!   InitWait ([`Vbd::probe`]); when the frontend (`<frontend>/state`)
//!   reaches Initialised it reads `ring-ref` (or `ring-page-order` and
//!   `ring-ref0..N`), `event-channel` and `protocol`, maps the ring, binds
//!   the port, writes `sectors`, `info`, `sector-size` and switches to
//!   Connected; Closing and Closed follow the frontend, and a device whose
//!   `online` is 0 goes away once closed (hot-unplug, [`Vbd::detach`]).
//! - [`request`] validates and executes each request against a
//!   [`BlockStore`] ([`store`]), moving data through persistently mapped
//!   grants or grant copies. [`Vbd::process`] takes every request on the
//!   ring while fewer than [`DEPTH`] are in flight, gives each read or
//!   write to the store at once ([`BlockStore::submit`]: a device with a
//!   queue keeps them in flight) and answers each as it completes; a
//!   flush, barrier or discard waits for everything before it. A device
//!   going away waits for its I/O before its grants and buffers go.
//! - [`Blkback`] holds every device and routes event-channel ports.
//! - [`toolstack`] writes the nodes libxl writes for a `disk = [...]` entry
//!   (from a [`DiskSpec`](crate::xlcfg::disk::DiskSpec)).
//! - [`copy`] turns a request's segments into `GNTTABOP_copy` batches.
//!
//! Dom0's glue supplies the kernel side through [`GrantMapper`] (map and
//! unmap a frontend's ring pages, grant-copy data — `GNTTABOP_map_grant_ref`
//! / `unmap_grant_ref` / `copy`) and [`EventChannels`], and xenstore through
//! [`XsAccess`] (implemented here for [`Xenstored`]).
//!
//! Hostile frontends: a request that breaks the rules gets
//! `BLKIF_RSP_ERROR` (bad grant references, out-of-range or misaligned
//! sectors, bad segments, writes to a read-only disk) or
//! `BLKIF_RSP_EOPNOTSUPP` (unknown operations); a frontend whose ring
//! indexes jump past the ring is disconnected (ring unmapped, port unbound,
//! `error` written, state Closing); bad ring references or an unknown
//! `protocol` fail the connection the same way. Requests after close find
//! no ring. Nothing here panics on any input, and no device's state leaks
//! into another's.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use hypercall_abi::io::blkif::{VDISK_CDROM, VDISK_READONLY, VDISK_REMOVABLE};
use hypercall_abi::io::xenbus::XenbusState;
use pv_guest_lib::blkfront::ring::{BackRing, SharedRing, MAX_RING_PAGE_ORDER};
pub use pv_guest_lib::blkfront::{read_state, read_u64, write_state, XsAccess};
use pv_guest_lib::grant::GrantRef;
use pv_guest_lib::xenbus::page::SharedPage;

use crate::xenstore::{Host, Xenstored};

pub mod copy;
pub mod request;
pub mod store;
pub mod toolstack;

pub use request::{Limits, Stats};
pub use store::{BlockStore, IoError, MemDisk, OwnedIo, Slice, StoreIo, Submitted};

/// Where Dom0's vbd back-ends live.
pub const BACKEND_ROOT: &str = "/local/domain/0/backend/vbd";
/// `feature-max-indirect-segments` offered (Linux's `MAX_INDIRECT_SEGMENTS`).
pub const MAX_INDIRECT_SEGMENTS: u32 = 256;
/// Grants a device keeps mapped for a `feature-persistent` frontend
/// (Linux's blkfront reuses up to 32 pages per ring slot; ours its bounce
/// pool): enough for 8 requests of 256 KiB in flight (Linux's blkback
/// keeps up to 1056 per ring). Segments past it, or past the glue's
/// budget, go by grant copy, beside the mapped ones.
pub const MAX_PERSISTENT: usize = 512;
/// Requests handled per device per [`Blkback::on_event`] call before
/// giving other devices a turn.
pub const BATCH: usize = 64;
/// Reads and writes a device keeps in flight on its store.
pub const DEPTH: usize = 32;

/// A grant operation failed (bad reference, not granted to us, read-only,
/// or any error the hypervisor returned).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantFault;

/// One piece of a frontend's granted page for a grant copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopySeg {
    /// The frontend's grant.
    pub gref: GrantRef,
    /// Byte offset in its page.
    pub offset: u16,
    /// Bytes (`offset + len <= 4096`, checked by the caller).
    pub len: u16,
}

/// How blkback touches frontends' memory. Dom0's glue implements it with
/// `GNTTABOP_map_grant_ref`/`unmap_grant_ref` (ring pages) and
/// `GNTTABOP_copy` (data, one batch per call: [`copy::copy_ops`] builds it,
/// split at Dom0's page boundaries); tests with a fake grant table.
pub trait GrantMapper {
    /// A mapped frontend page.
    type Page: SharedPage;
    /// Maps `domid`'s grant `gref` (writable unless `readonly`).
    fn map(&mut self, domid: u16, gref: GrantRef, readonly: bool)
        -> Result<Self::Page, GrantFault>;
    /// Unmaps a page [`GrantMapper::map`] returned.
    fn unmap(&mut self, page: Self::Page);
    /// Copies the pieces `segs` of `domid`'s pages, in order, into `buf`
    /// (`buf.len()` is the sum of their lengths). All or nothing.
    fn copy_in(&mut self, domid: u16, segs: &[CopySeg], buf: &mut [u8]) -> Result<(), GrantFault>;
    /// Copies `buf` out into the pieces `segs` of `domid`'s pages.
    fn copy_out(&mut self, domid: u16, segs: &[CopySeg], buf: &[u8]) -> Result<(), GrantFault>;
    /// A zeroed data buffer of at least `len` bytes, kept by a device
    /// between requests. Dom0's glue hands out machine-contiguous memory
    /// so the disk's DMA needs no bounce; the default is the heap.
    fn io_buf(&mut self, len: usize) -> Box<dyn IoBuf> {
        Box::new(alloc::vec![0u8; len])
    }
    /// Maps `domid`'s grant `gref` writable to keep for the connection's
    /// lifetime (`feature-persistent`); the glue may refuse (a budget of
    /// mappings), and the data then goes by grant copy.
    fn map_persistent(&mut self, domid: u16, gref: GrantRef) -> Result<Self::Page, GrantFault> {
        self.map(domid, gref, false)
    }
    /// Unmaps a page [`GrantMapper::map_persistent`] returned.
    fn unmap_persistent(&mut self, page: Self::Page) {
        self.unmap(page)
    }
    /// Copies `out.len()` bytes at `off` out of a mapped page.
    fn page_read(&mut self, page: &Self::Page, off: usize, out: &mut [u8]) {
        page.read(off, out)
    }
    /// Copies `data` into a mapped page at `off`.
    fn page_write(&mut self, page: &Self::Page, off: usize, data: &[u8]) {
        page.write(off, data)
    }
    /// The pieces `(page, offset, len)` of persistently mapped pages as
    /// one buffer a device reads and writes in place ([`SgBuf`]); `None`
    /// (the default) if the glue cannot, and the data is copied. blkback
    /// keeps every persistent page mapped until every I/O carrying it
    /// was handed back ([`GrantMapper::unmap_persistent`] comes after the
    /// device's I/O is drained).
    fn dma_buf(&mut self, _pieces: &[(&Self::Page, u16, u16)]) -> Option<Box<dyn IoBuf>> {
        None
    }
}

/// A request data buffer from [`GrantMapper::io_buf`] (or, in place in
/// the frontend's pages, [`GrantMapper::dma_buf`]).
pub trait IoBuf {
    /// All of it (empty for a [`SgBuf`]: its bytes are the frontend's).
    fn bytes(&mut self) -> &mut [u8];
    /// Itself, for a store that does DMA to tell buffer types it knows
    /// keep their memory in place (the disk's queue only takes those).
    fn as_any(&mut self) -> &mut dyn core::any::Any;
    /// The pieces of memory the data is in, for a store that takes them
    /// ([`BlockStore::takes_segments`]); `None`: it is [`IoBuf::bytes`].
    fn dma_segments(&self) -> Option<&[DmaSeg]> {
        None
    }
}

/// One piece of an [`SgBuf`]: `len` bytes at Dom0 address `va`, inside
/// one page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaSeg {
    /// Where, in Dom0's address space.
    pub va: u64,
    /// How many bytes.
    pub len: u32,
}

/// A request's data left where it is, in the frontend's persistently
/// mapped pages: the device moves it straight to and from them (no copy
/// in Dom0). Only a store that takes segments gets one.
pub struct SgBuf {
    segs: Vec<DmaSeg>,
}

impl SgBuf {
    /// The data in `segs`, in order.
    ///
    /// # Safety
    ///
    /// Every segment is memory that stays mapped, writable and unmoved
    /// for as long as this value lives, and that nothing else in Dom0
    /// reads or writes meanwhile (a device may DMA into it at any time
    /// until the I/O carrying it is handed back).
    pub unsafe fn new(segs: Vec<DmaSeg>) -> SgBuf {
        SgBuf { segs }
    }
}

impl IoBuf for SgBuf {
    fn bytes(&mut self) -> &mut [u8] {
        &mut []
    }
    fn as_any(&mut self) -> &mut dyn core::any::Any {
        self
    }
    fn dma_segments(&self) -> Option<&[DmaSeg]> {
        Some(&self.segs)
    }
}

impl IoBuf for Vec<u8> {
    fn bytes(&mut self) -> &mut [u8] {
        self
    }
    fn as_any(&mut self) -> &mut dyn core::any::Any {
        self
    }
}

/// Event channels to frontends.
pub trait EventChannels {
    /// Binds to `domid`'s unbound port `remote_port`; the local port.
    fn bind(&mut self, domid: u16, remote_port: u32) -> Option<u32>;
    /// Closes a port [`EventChannels::bind`] returned.
    fn unbind(&mut self, local_port: u32);
    /// Signals the frontend.
    fn notify(&mut self, local_port: u32);
}

impl<H: Host> XsAccess for Xenstored<H> {
    fn read(&mut self, path: &str) -> Option<String> {
        Xenstored::read(self, path)
            .ok()
            .and_then(|v| String::from_utf8(v).ok())
    }
    fn write(&mut self, path: &str, value: &str) -> bool {
        Xenstored::write(self, path, value.as_bytes()).is_ok()
    }
    fn rm(&mut self, path: &str) -> bool {
        Xenstored::rm(self, path).is_ok()
    }
}

/// The back-end directory of `domid`'s device `devid`.
pub fn backend_path(domid: u16, devid: u32) -> String {
    format!("{BACKEND_ROOT}/{domid}/{devid}")
}

/// The frontend directory libxl creates for it.
pub fn frontend_path(domid: u16, devid: u32) -> String {
    format!("/local/domain/{domid}/device/vbd/{devid}")
}

/// Owner names for [`Vbd`]s' I/Os.
static NEXT_OWNER: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(1);

/// Most bytes of data a device keeps in flight on its store (past one
/// request).
pub const FLIGHT_BYTES: usize = request::BATCH_BYTES;

struct Conn<P> {
    ring: BackRing<P>,
    port: u32,
}

/// What one call to [`Vbd::process`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Processed {
    /// Requests answered.
    pub requests: usize,
    /// More requests are waiting (call again).
    pub more: bool,
    /// The frontend broke the ring protocol and was disconnected.
    pub disconnected: bool,
}

/// One virtual block device served to a frontend.
pub struct Vbd<P> {
    domid: u16,
    devid: u32,
    be: String,
    fe: String,
    store: Box<dyn BlockStore>,
    state: XenbusState,
    readonly: bool,
    info: u32,
    discard: bool,
    conn: Option<Conn<P>>,
    /// `feature-persistent` negotiated: the frontend reuses its grants,
    /// which stay mapped here (up to [`MAX_PERSISTENT`]) until the ring is
    /// disconnected.
    persistent: Option<BTreeMap<GrantRef, P>>,
    /// The data buffer of requests run one at a time (barriers with
    /// data), grown to the largest seen and kept while connected.
    buf: Option<Box<dyn IoBuf>>,
    /// This device's name for its I/Os on the store (which others may
    /// share).
    owner: u64,
    /// The tag of the next I/O.
    next_tag: u64,
    /// Reads and writes on the store, by tag.
    flights: BTreeMap<u64, request::Flight>,
    /// Their bytes.
    flight_bytes: usize,
    /// Data buffers for them.
    pool: request::Pool,
    /// Responses put on the ring and not pushed yet.
    unpushed: usize,
    stats: Stats,
    /// Requests answered.
    requests: u64,
    gone: bool,
    last_error: Option<String>,
}

impl<P: SharedPage> Vbd<P> {
    /// A device for `domid`'s `devid` over `store`. Its xenstore nodes
    /// (libxl's, see [`toolstack::add_vbd`]) must exist; call
    /// [`Vbd::probe`] next.
    pub fn new(domid: u16, devid: u32, store: Box<dyn BlockStore>) -> Self {
        Vbd {
            domid,
            devid,
            be: backend_path(domid, devid),
            fe: frontend_path(domid, devid),
            store,
            state: XenbusState::Initialising,
            readonly: false,
            info: 0,
            discard: false,
            conn: None,
            persistent: None,
            buf: None,
            owner: NEXT_OWNER.fetch_add(1, core::sync::atomic::Ordering::Relaxed),
            next_tag: 0,
            flights: BTreeMap::new(),
            flight_bytes: 0,
            pool: request::Pool::default(),
            unpushed: 0,
            stats: Stats::default(),
            requests: 0,
            gone: false,
            last_error: None,
        }
    }

    /// The frontend's domain.
    pub fn domid(&self) -> u16 {
        self.domid
    }
    /// The device id.
    pub fn devid(&self) -> u32 {
        self.devid
    }
    /// Our XenBus state.
    pub fn state(&self) -> XenbusState {
        self.state
    }
    /// The back-end directory.
    pub fn path(&self) -> &str {
        &self.be
    }
    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }
    /// Grants mapped persistently now.
    pub fn persistent_grants(&self) -> usize {
        self.persistent.as_ref().map_or(0, BTreeMap::len)
    }
    /// Whether the ring is mapped.
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }
    /// The local event-channel port, while connected.
    pub fn port(&self) -> Option<u32> {
        self.conn.as_ref().map(|c| c.port)
    }
    /// Whether the device is finished (closed and offline, or its
    /// frontend vanished): drop it and remove its nodes.
    pub fn is_gone(&self) -> bool {
        self.gone
    }
    /// The last fatal error written to xenstore.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }
    /// The store.
    pub fn store(&mut self) -> &mut dyn BlockStore {
        &mut *self.store
    }

    fn key(&self, k: &str) -> String {
        format!("{}/{k}", self.be)
    }

    fn fkey(&self, k: &str) -> String {
        format!("{}/{k}", self.fe)
    }

    fn switch<X: XsAccess + ?Sized>(&mut self, xs: &mut X, s: XenbusState) {
        self.state = s;
        write_state(xs, &self.key("state"), s);
    }

    /// `xenbus_dev_fatal`: records `msg` where Linux does
    /// (`/local/domain/0/error/backend/vbd/<domid>/<devid>/error`) and
    /// starts closing.
    fn fatal<X: XsAccess + ?Sized>(&mut self, xs: &mut X, msg: String) {
        log::warn!("blkback d{} {}: {msg}", self.domid, self.devid);
        let p = format!(
            "/local/domain/0/error/backend/vbd/{}/{}/error",
            self.domid, self.devid
        );
        xs.write(&p, &msg);
        self.last_error = Some(msg);
        self.switch(xs, XenbusState::Closing);
    }

    /// Reads the device's settings (`mode`, `device-type`, `frontend`,
    /// `discard-enable`), advertises the features and switches to InitWait.
    pub fn probe<X: XsAccess + ?Sized>(&mut self, xs: &mut X) {
        if let Some(fe) = xs.read(&self.key("frontend")) {
            // Only a path into the frontend's own directory is accepted.
            if fe.starts_with(&format!("/local/domain/{}/", self.domid)) {
                self.fe = fe;
            }
        }
        let mode = xs.read(&self.key("mode")).unwrap_or_default();
        self.readonly = !mode.contains('w');
        let cdrom = xs.read(&self.key("device-type")).as_deref() == Some("cdrom");
        let removable = read_u64(xs, &self.key("removable")) == Some(1);
        self.info = if cdrom { VDISK_CDROM } else { 0 }
            | if removable { VDISK_REMOVABLE } else { 0 }
            | if self.readonly { VDISK_READONLY } else { 0 };
        self.discard = self.store.can_discard()
            && !self.readonly
            && read_u64(xs, &self.key("discard-enable")) != Some(0);
        let flush = if self.store.can_flush() { "1" } else { "0" };
        xs.write(&self.key("feature-flush-cache"), flush);
        xs.write(&self.key("feature-barrier"), flush);
        xs.write(
            &self.key("feature-discard"),
            if self.discard { "1" } else { "0" },
        );
        if self.discard {
            let g = self.store.sector_size().to_string();
            xs.write(&self.key("discard-granularity"), &g);
            xs.write(&self.key("discard-alignment"), "0");
            xs.write(&self.key("discard-secure"), "0");
        }
        xs.write(
            &self.key("feature-max-indirect-segments"),
            &MAX_INDIRECT_SEGMENTS.to_string(),
        );
        xs.write(
            &self.key("max-ring-page-order"),
            &MAX_RING_PAGE_ORDER.to_string(),
        );
        xs.write(&self.key("feature-persistent"), "1");
        self.switch(xs, XenbusState::InitWait);
    }

    fn limits(&self) -> Limits {
        Limits {
            domid: self.domid,
            readonly: self.readonly,
            flush: self.store.can_flush(),
            discard: self.discard,
            max_indirect: MAX_INDIRECT_SEGMENTS,
            sectors: self.store.sectors(),
            sector_size: self.store.sector_size(),
        }
    }

    /// Starts a hot-unplug: `online` = 0 and state Closing; the frontend
    /// closes, then the device is gone.
    pub fn detach<X: XsAccess + ?Sized>(&mut self, xs: &mut X) {
        xs.write(&self.key("online"), "0");
        if !matches!(self.state, XenbusState::Closing | XenbusState::Closed) {
            self.switch(xs, XenbusState::Closing);
        }
    }

    /// One step of the XenBus state machine: reads the frontend's state
    /// (and ours, which the toolstack may set to Closing) and reacts. Call
    /// it when a watch on either fires, or in the service loop.
    pub fn xenbus_changed<X, H>(&mut self, xs: &mut X, host: &mut H)
    where
        X: XsAccess + ?Sized,
        H: GrantMapper<Page = P> + EventChannels + ?Sized,
    {
        if self.gone {
            return;
        }
        use XenbusState as S;
        if read_state(xs, &self.key("state")) == S::Closing
            && !matches!(self.state, S::Closing | S::Closed)
        {
            self.state = S::Closing;
        }
        let online = read_u64(xs, &self.key("online")) != Some(0);
        match read_state(xs, &self.fkey("state")) {
            // The frontend is coming back (e.g. after resume).
            S::Initialising if self.state == S::Closed && online => {
                self.switch(xs, S::InitWait);
            }
            S::Initialised | S::Connected if self.state == S::InitWait => {
                self.disconnect(host);
                if self.connect_ring(xs, host) {
                    self.connect(xs);
                }
            }
            S::Closing if !matches!(self.state, S::Closing | S::Closed) => {
                self.switch(xs, S::Closing);
            }
            S::Closed => {
                self.disconnect(host);
                if self.state != S::Closed {
                    self.switch(xs, S::Closed);
                }
                if !online {
                    self.gone = true;
                }
            }
            S::Unknown => {
                // The frontend's directory vanished (domain destroyed).
                self.disconnect(host);
                if self.state != S::Closed && xs.read(&self.key("state")).is_some() {
                    self.switch(xs, S::Closed);
                }
                self.gone = true;
            }
            _ => {}
        }
    }

    /// Reads the frontend's ring details, maps the ring and binds the
    /// port. False (after [`Vbd::fatal`]) if anything is wrong.
    fn connect_ring<X, H>(&mut self, xs: &mut X, host: &mut H) -> bool
    where
        X: XsAccess + ?Sized,
        H: GrantMapper<Page = P> + EventChannels + ?Sized,
    {
        match xs.read(&self.fkey("protocol")).as_deref() {
            None | Some("x86_64-abi") | Some("native") => {}
            Some(p) => {
                self.fatal(xs, format!("unknown fe protocol {p}"));
                return false;
            }
        }
        if let Some(q) = read_u64(xs, &self.fkey("multi-queue-num-queues")) {
            if q != 1 {
                self.fatal(xs, format!("multi-queue-num-queues {q} not offered"));
                return false;
            }
        }
        let grefs: Vec<u64> = match xs.read(&self.fkey("ring-page-order")) {
            Some(o) => {
                let Some(order) = o
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|&o| o <= MAX_RING_PAGE_ORDER)
                else {
                    self.fatal(xs, format!("bad ring-page-order {o}"));
                    return false;
                };
                let mut v = Vec::new();
                for i in 0..1u32 << order {
                    match read_u64(xs, &self.fkey(&format!("ring-ref{i}"))) {
                        Some(g) => v.push(g),
                        None => {
                            self.fatal(xs, format!("reading ring-ref{i}"));
                            return false;
                        }
                    }
                }
                v
            }
            None => match read_u64(xs, &self.fkey("ring-ref")) {
                Some(g) => alloc::vec![g],
                None => {
                    self.fatal(xs, "reading ring-ref".into());
                    return false;
                }
            },
        };
        let Some(port) =
            read_u64(xs, &self.fkey("event-channel")).and_then(|p| u32::try_from(p).ok())
        else {
            self.fatal(xs, "reading event-channel".into());
            return false;
        };
        let mut pages = Vec::with_capacity(grefs.len());
        for &g in &grefs {
            let m = u32::try_from(g)
                .map_err(|_| GrantFault)
                .and_then(|g| host.map(self.domid, g, false));
            match m {
                Ok(p) => pages.push(p),
                Err(_) => {
                    for p in pages {
                        host.unmap(p);
                    }
                    self.fatal(xs, format!("mapping ring-ref {g} port {port}"));
                    return false;
                }
            }
        }
        let Some(local) = host.bind(self.domid, port) else {
            for p in pages {
                host.unmap(p);
            }
            self.fatal(xs, format!("binding event-channel {port}"));
            return false;
        };
        let Some(shared) = SharedRing::new(pages) else {
            // Not reachable: the page count is a power of two <= 16.
            host.unbind(local);
            return false;
        };
        self.conn = Some(Conn {
            ring: BackRing::new(shared),
            port: local,
        });
        let persistent = read_u64(xs, &self.fkey("feature-persistent")) == Some(1);
        self.persistent = persistent.then(BTreeMap::new);
        true
    }

    /// Publishes the disk and switches to Connected.
    fn connect<X: XsAccess + ?Sized>(&mut self, xs: &mut X) {
        let ss = self.store.sector_size().to_string();
        xs.write(&self.key("sectors"), &self.store.sectors().to_string());
        xs.write(&self.key("info"), &self.info.to_string());
        xs.write(&self.key("sector-size"), &ss);
        xs.write(&self.key("physical-sector-size"), &ss);
        self.switch(xs, XenbusState::Connected);
    }

    /// The store changed size (online resize): publishes the new
    /// `sectors`; a connected frontend re-reads it.
    pub fn resized<X: XsAccess + ?Sized>(&mut self, xs: &mut X) {
        if self.state == XenbusState::Connected {
            xs.write(&self.key("sectors"), &self.store.sectors().to_string());
            // Re-writing the state fires the frontend's watch on it.
            write_state(xs, &self.key("state"), XenbusState::Connected);
        }
    }

    /// Unmaps the ring and unbinds the port (idempotent).
    pub fn disconnect<H>(&mut self, host: &mut H)
    where
        H: GrantMapper<Page = P> + EventChannels + ?Sized,
    {
        // The device may still be reading or writing our buffers (and, at
        // completion, a read's data would go to the frontend's pages):
        // wait for every I/O and answer none.
        let drained = self.drain(None, host);
        if self.conn.is_some() {
            let st = &self.stats;
            log::info!(
                "blkback d{} {}: closed after {} reads, {} writes, {} flushes ({} in place), \
                 {} errors; {} visits, {} notifies",
                self.domid,
                self.devid,
                st.reads,
                st.writes,
                st.flushes,
                st.in_place,
                st.errors,
                st.visits,
                st.notifies
            );
        }
        self.buf = None;
        self.pool.clear();
        let pages = self.persistent.take().unwrap_or_default();
        if drained {
            for (_, p) in pages {
                host.unmap_persistent(p);
            }
        } else {
            // I/O the store never handed back may still move data to or
            // from these pages in place: they stay mapped for good (a
            // leak, never a device writing into a page given back).
            log::error!(
                "blkback d{} {}: keeping {} grants mapped for I/O that never completed",
                self.domid,
                self.devid,
                pages.len()
            );
            core::mem::forget(pages);
        }
        if let Some(c) = self.conn.take() {
            host.unbind(c.port);
            for p in c.ring.into_pages() {
                host.unmap(p);
            }
        }
    }

    /// Answers the I/Os the store finished: with `lim`, by their
    /// responses on the ring; without, dropped (the device is going).
    /// How many.
    fn reap<H>(&mut self, lim: Option<&Limits>, host: &mut H) -> usize
    where
        H: GrantMapper<Page = P> + EventChannels + ?Sized,
    {
        let list = self.store.poll_completed(self.owner);
        let n = list.len();
        for (mut io, r) in list {
            let Some(f) = self.flights.remove(&io.tag) else {
                continue;
            };
            self.flight_bytes = self.flight_bytes.saturating_sub(f.len);
            if let (Some(lim), Some(conn)) = (lim, self.conn.as_mut()) {
                let rsp = request::finish(
                    lim,
                    host,
                    self.persistent.as_mut(),
                    &mut self.stats,
                    &f,
                    &mut io,
                    r,
                );
                conn.ring.put_response(&rsp);
                self.unpushed += 1;
                self.requests += 1;
            }
            self.pool.give(io.buf);
        }
        n
    }

    /// Waits for every I/O of this device on the store (answering them
    /// as [`Vbd::reap`]); false if the store never finished some (they
    /// stay with it).
    fn drain<H>(&mut self, lim: Option<&Limits>, host: &mut H) -> bool
    where
        H: GrantMapper<Page = P> + EventChannels + ?Sized,
    {
        // A store that never finishes what it took would hang us: give
        // up after this many empty waits (its buffers stay with it).
        let mut patience = 1_000_000u32;
        while !self.flights.is_empty() || self.store.outstanding(self.owner) > 0 {
            if self.reap(lim, host) == 0 {
                if patience == 0 {
                    log::error!(
                        "blkback d{} {}: {} I/Os never completed",
                        self.domid,
                        self.devid,
                        self.flights.len()
                    );
                    self.flights.clear();
                    self.flight_bytes = 0;
                    return false;
                }
                patience -= 1;
                self.store.wait_any();
            }
        }
        true
    }

    /// Gives a prepared read or write to the store; answers it at once if
    /// the store finished it already. A full queue (other devices' I/O)
    /// is waited out.
    fn start<H>(&mut self, lim: &Limits, host: &mut H, f: request::Flight, io: OwnedIo)
    where
        H: GrantMapper<Page = P> + EventChannels + ?Sized,
    {
        let mut io = io;
        let mut tries = 0u32;
        loop {
            let (mut back, r) = match self.store.submit(io) {
                Submitted::InFlight => {
                    self.flight_bytes += f.len;
                    self.flights.insert(self.next_tag, f);
                    self.next_tag = self.next_tag.wrapping_add(1);
                    return;
                }
                Submitted::Done(back, r) => (back, r),
                Submitted::Busy(back) if tries < 1000 => {
                    tries += 1;
                    self.store.wait_any();
                    self.reap(Some(lim), host);
                    io = back;
                    continue;
                }
                Submitted::Busy(back) => (back, Err(IoError::Io)),
            };
            if let Some(conn) = self.conn.as_mut() {
                let rsp = request::finish(
                    lim,
                    host,
                    self.persistent.as_mut(),
                    &mut self.stats,
                    &f,
                    &mut back,
                    r,
                );
                conn.ring.put_response(&rsp);
                self.unpushed += 1;
                self.requests += 1;
            }
            self.pool.give(back.buf);
            return;
        }
    }

    /// Pushes the responses put on the ring, notifying the frontend if it
    /// asked.
    fn push<H>(&mut self, host: &mut H)
    where
        H: EventChannels + ?Sized,
    {
        if self.unpushed == 0 {
            return;
        }
        self.unpushed = 0;
        if let Some(conn) = self.conn.as_mut() {
            if conn.ring.push_responses() {
                host.notify(conn.port);
                self.stats.notifies += 1;
            }
        }
    }

    /// Answers the reads and writes the store finished, then takes
    /// requests off the ring (up to [`BATCH`] per call) while fewer than
    /// [`DEPTH`] (and [`FLIGHT_BYTES`]) are in flight: each read or write
    /// goes to the store at once ([`BlockStore::submit`]) and is answered
    /// when it completes (a later call, when the store's interrupt woke
    /// Dom0); a flush, barrier or discard first waits for everything
    /// before it. Answers are pushed (and the frontend notified, if it
    /// asked) per batch of completions. A ring the frontend corrupted
    /// disconnects the device (after its I/O finished).
    pub fn process<X, H>(&mut self, xs: &mut X, host: &mut H) -> Processed
    where
        X: XsAccess + ?Sized,
        H: GrantMapper<Page = P> + EventChannels + ?Sized,
    {
        let mut done = Processed::default();
        if self.conn.is_none() {
            return done;
        }
        let lim = self.limits();
        let before = self.requests;
        let mut broken = None;
        let mut taken = 0usize;
        self.stats.visits += 1;
        loop {
            self.reap(Some(&lim), host);
            self.push(host);
            if self.flights.len() >= DEPTH
                || (!self.flights.is_empty() && self.flight_bytes >= FLIGHT_BYTES)
            {
                // Full: the next completion brings us back.
                break;
            }
            if taken >= BATCH {
                done.more = true;
                break;
            }
            let Some(conn) = self.conn.as_mut() else {
                break;
            };
            let e = match conn.ring.next_request() {
                Ok(Some(e)) => e,
                Ok(None) => {
                    if conn.ring.final_check_for_requests() {
                        continue;
                    }
                    break;
                }
                Err(e) => {
                    broken = Some(e);
                    break;
                }
            };
            taken += 1;
            let tag = self.next_tag;
            let in_place = self.store.takes_segments();
            match request::prepare(
                &lim,
                host,
                self.persistent.as_mut(),
                &mut self.pool,
                &mut self.stats,
                &e,
                (self.owner, tag),
                in_place,
            ) {
                request::Prepared::Answer(rsp) => {
                    conn.ring.put_response(&rsp);
                    self.unpushed += 1;
                    self.requests += 1;
                }
                request::Prepared::Ordered => {
                    // Everything before it first.
                    self.drain(Some(&lim), host);
                    let rsp = request::handle(
                        &lim,
                        host,
                        &mut *self.store,
                        self.persistent.as_mut(),
                        &mut self.buf,
                        &mut self.stats,
                        &e,
                    );
                    if let Some(conn) = self.conn.as_mut() {
                        conn.ring.put_response(&rsp);
                        self.unpushed += 1;
                        self.requests += 1;
                    }
                }
                request::Prepared::Io(f, io) => self.start(&lim, host, f, io),
            }
        }
        self.push(host);
        done.requests = (self.requests - before) as usize;
        if let Some(e) = broken {
            self.disconnect(host);
            self.fatal(xs, format!("bogus ring requests ({e:?}): halting"));
            done.more = false;
            done.disconnected = true;
        }
        done
    }

    /// Reads and writes of this device in flight on its store.
    pub fn in_flight(&self) -> usize {
        self.flights.len()
    }
}

/// Every vbd Dom0 serves, by (frontend domain, device id).
pub struct Blkback<P> {
    devs: BTreeMap<(u16, u32), Vbd<P>>,
}

impl<P> Default for Blkback<P> {
    fn default() -> Self {
        Blkback {
            devs: BTreeMap::new(),
        }
    }
}

impl<P: SharedPage> Blkback<P> {
    /// No devices.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts serving `domid`'s `devid` from `store` (its nodes must exist:
    /// [`toolstack::add_vbd`]); probes it (InitWait). Replaces (and
    /// disconnects) a device of the same name.
    pub fn add<X, H>(
        &mut self,
        xs: &mut X,
        host: &mut H,
        domid: u16,
        devid: u32,
        store: Box<dyn BlockStore>,
    ) where
        X: XsAccess + ?Sized,
        H: GrantMapper<Page = P> + EventChannels + ?Sized,
    {
        self.remove(host, domid, devid);
        let mut v = Vbd::new(domid, devid, store);
        v.probe(xs);
        self.devs.insert((domid, devid), v);
    }

    /// Drops a device at once (ring unmapped, port unbound).
    pub fn remove<H>(&mut self, host: &mut H, domid: u16, devid: u32) -> bool
    where
        H: GrantMapper<Page = P> + EventChannels + ?Sized,
    {
        match self.devs.remove(&(domid, devid)) {
            Some(mut v) => {
                v.disconnect(host);
                true
            }
            None => false,
        }
    }

    /// Drops every device of a domain (before it is destroyed: no mapping
    /// of its memory may outlive it).
    pub fn remove_domain<H>(&mut self, host: &mut H, domid: u16)
    where
        H: GrantMapper<Page = P> + EventChannels + ?Sized,
    {
        let ids: Vec<u32> = self
            .devs
            .keys()
            .filter(|k| k.0 == domid)
            .map(|k| k.1)
            .collect();
        for id in ids {
            self.remove(host, domid, id);
        }
    }

    /// A device.
    pub fn get(&self, domid: u16, devid: u32) -> Option<&Vbd<P>> {
        self.devs.get(&(domid, devid))
    }

    /// A device, mutably.
    pub fn get_mut(&mut self, domid: u16, devid: u32) -> Option<&mut Vbd<P>> {
        self.devs.get_mut(&(domid, devid))
    }

    /// Every device.
    pub fn devices(&self) -> impl Iterator<Item = &Vbd<P>> {
        self.devs.values()
    }

    /// Starts hot-unplugging a device ([`Vbd::detach`]).
    pub fn detach<X: XsAccess + ?Sized>(&mut self, xs: &mut X, domid: u16, devid: u32) -> bool {
        match self.devs.get_mut(&(domid, devid)) {
            Some(v) => {
                v.detach(xs);
                true
            }
            None => false,
        }
    }

    /// Runs every device's XenBus step (call when a watch under the
    /// back-end or a frontend fires, or each service loop). Devices that
    /// are finished are dropped; their ids are returned so the toolstack
    /// can remove their nodes.
    pub fn xenbus_changed<X, H>(&mut self, xs: &mut X, host: &mut H) -> Vec<(u16, u32)>
    where
        X: XsAccess + ?Sized,
        H: GrantMapper<Page = P> + EventChannels + ?Sized,
    {
        let mut gone = Vec::new();
        for (k, v) in self.devs.iter_mut() {
            v.xenbus_changed(xs, host);
            if v.is_gone() {
                gone.push(*k);
            }
        }
        for k in &gone {
            self.remove(host, k.0, k.1);
        }
        gone
    }

    /// Handles an event on local `port`: answers that device's requests.
    /// True if more are waiting (call again).
    pub fn on_event<X, H>(&mut self, xs: &mut X, host: &mut H, port: u32) -> bool
    where
        X: XsAccess + ?Sized,
        H: GrantMapper<Page = P> + EventChannels + ?Sized,
    {
        self.devs
            .values_mut()
            .find(|v| v.port() == Some(port))
            .is_some_and(|v| v.process(xs, host).more)
    }

    /// Requests answered by every device so far (a cheap activity count).
    pub fn stats_total(&self) -> u64 {
        self.devs.values().map(|v| v.requests).sum()
    }

    /// Answers every connected device's requests (one batch each). True if
    /// any has more waiting.
    pub fn service<X, H>(&mut self, xs: &mut X, host: &mut H) -> bool
    where
        X: XsAccess + ?Sized,
        H: GrantMapper<Page = P> + EventChannels + ?Sized,
    {
        let mut more = false;
        for v in self.devs.values_mut() {
            more |= v.process(xs, host).more;
        }
        more
    }
}
