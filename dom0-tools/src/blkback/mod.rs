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
//!   ring (up to [`DEPTH`]) and gives their reads and writes to the store
//!   as one batch ([`BlockStore::batch`]: a device with a queue keeps them
//!   all in flight); a flush, barrier or discard waits for everything
//!   before it.
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
pub use store::{BlockStore, IoError, MemDisk, Slice, StoreIo};

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
/// Requests a device takes off its ring at once and gives the store as
/// one batch (their data I/O in flight together).
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
}

/// A request data buffer from [`GrantMapper::io_buf`].
pub trait IoBuf {
    /// All of it.
    fn bytes(&mut self) -> &mut [u8];
}

impl IoBuf for Vec<u8> {
    fn bytes(&mut self) -> &mut [u8] {
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
    /// The data buffer, grown to the largest batch seen (at most
    /// [`request::BATCH_BYTES`]) and kept while connected.
    buf: Option<Box<dyn IoBuf>>,
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
        self.buf = None;
        for (_, p) in self.persistent.take().unwrap_or_default() {
            host.unmap_persistent(p);
        }
        if let Some(c) = self.conn.take() {
            host.unbind(c.port);
            for p in c.ring.into_pages() {
                host.unmap(p);
            }
        }
    }

    /// Answers up to [`BATCH`] requests, in batches of up to [`DEPTH`]
    /// ([`request::handle_batch`]), and notifies the frontend if it
    /// asked. A ring the frontend corrupted disconnects the device.
    pub fn process<X, H>(&mut self, xs: &mut X, host: &mut H) -> Processed
    where
        X: XsAccess + ?Sized,
        H: GrantMapper<Page = P> + EventChannels + ?Sized,
    {
        let mut done = Processed::default();
        let lim = self.limits();
        let Some(conn) = self.conn.as_mut() else {
            return done;
        };
        let mut broken = None;
        let mut batch = Vec::with_capacity(DEPTH);
        loop {
            // Everything on the ring now (up to DEPTH) goes to the store
            // together.
            batch.clear();
            let mut drained = false;
            while batch.len() < DEPTH && done.requests + batch.len() < BATCH {
                match conn.ring.next_request() {
                    Ok(Some(e)) => batch.push(e),
                    // Answer what we have before looking again.
                    Ok(None) if !batch.is_empty() => break,
                    Ok(None) => {
                        if !conn.ring.final_check_for_requests() {
                            drained = true;
                            break;
                        }
                    }
                    Err(e) => {
                        broken = Some(e);
                        break;
                    }
                }
            }
            let rs = request::handle_batch(
                &lim,
                host,
                &mut *self.store,
                self.persistent.as_mut(),
                &mut self.buf,
                &mut self.stats,
                &batch,
            );
            for r in &rs {
                conn.ring.put_response(r);
            }
            // Each batch's answers go out at once (one notification, if
            // the frontend asked): it can queue more while we look again.
            if !rs.is_empty() && conn.ring.push_responses() {
                host.notify(conn.port);
            }
            done.requests += rs.len();
            self.requests += rs.len() as u64;
            if broken.is_some() || drained {
                break;
            }
            if done.requests >= BATCH {
                done.more = true;
                break;
            }
        }
        if let Some(e) = broken {
            self.disconnect(host);
            self.fatal(xs, format!("bogus ring requests ({e:?}): halting"));
            done.more = false;
            done.disconnected = true;
        }
        done
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
