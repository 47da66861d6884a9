//! The virtio devices Dom0 drives: finding them, their MSI-X interrupts as
//! event channels, and the safe [`Disk`] and [`Nic`] wrappers.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use super::blk::{BlkDev, ReqHeader, Seg, Status, SECTOR_SIZE};
use super::hal::Dom0Hal;
use crate::blkback::store::{IoError, OwnedIo, Submitted};
use crate::pci::{self, Bdf, ConfigSpace, Function, VirtioCam};
use hypercall_abi::event_channel::{EvtchnBindPirq, EvtchnOp};
use hypercall_abi::hypercall::Hypercall;
use hypercall_abi::physdev::{
    MapPirqType, PhysdevEoi, PhysdevIrqStatusQuery, PhysdevMapPirq, PhysdevOp, PhysdevUnmapPirq,
    XENIRQSTAT_NEEDS_EOI,
};
use hypercall_abi::xen::DOMID_SELF;
use pv_guest_lib::hypercall::hypercall2;
use pv_guest_lib::{events, time, Errno};
use virtio_drivers::device::net::VirtIONetRaw;
use virtio_drivers::transport::pci::bus::PciRoot;
use virtio_drivers::transport::pci::{virtio_device_type, PciTransport};
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::PhysAddr;

/// A virtio function on the bus.
#[derive(Clone, Copy, Debug)]
pub struct Found {
    /// Where and what.
    pub function: Function,
    /// Its virtio device type.
    pub kind: DeviceType,
}

/// Every virtio function among `functions`.
pub fn find(functions: &[Function]) -> Vec<Found> {
    functions
        .iter()
        .filter_map(|f| {
            let info = virtio_drivers::transport::pci::bus::DeviceFunctionInfo {
                vendor_id: f.vendor,
                device_id: f.device,
                revision: f.revision,
                prog_if: f.prog_if,
                class: f.class,
                subclass: f.subclass,
                header_type: virtio_drivers::transport::pci::bus::HeaderType::Standard,
            };
            virtio_device_type(&info).map(|kind| Found { function: *f, kind })
        })
        .collect()
}

// ---- Interrupts ---------------------------------------------------------------

/// Interrupts counted per device slot (the handler's data word).
static IRQ_COUNTS: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];
static NEXT_SLOT: AtomicU64 = AtomicU64::new(0);

fn count_irq(_port: u32, slot: usize) {
    if let Some(c) = IRQ_COUNTS.get(slot) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

fn physdev<T: zerocopy::IntoBytes + zerocopy::FromBytes>(
    op: PhysdevOp,
    arg: &mut T,
) -> Result<u64, Errno> {
    // SAFETY: Xen reads (and may write back) the command's struct, which
    // lives across the call.
    pv_guest_lib::error::check(unsafe {
        hypercall2(
            Hypercall::PhysdevOp,
            u64::from(op.raw()),
            arg as *mut T as u64,
        )
    })
}

/// A device interrupt (MSI-X entry 0) delivered as an event channel.
#[derive(Debug)]
pub struct Irq {
    /// The PIRQ Xen gave it.
    pub pirq: u32,
    /// The event channel it is bound to.
    pub port: u32,
    needs_eoi: bool,
    slot: usize,
}

impl Irq {
    /// Maps MSI-X entry 0 of `f` to a PIRQ (Xen writes the table entry
    /// and enables MSI-X) and binds it to an event channel.
    pub fn msix<C: ConfigSpace>(cs: &C, f: &Function) -> Result<Irq, Errno> {
        let m = pci::msix(cs, f.bdf).ok_or(Errno::ENOSYS)?;
        let table_base = pci::bar_address(cs, f.bdf, m.table.0).ok_or(Errno::EINVAL)?;
        let mut mp = PhysdevMapPirq {
            domid: DOMID_SELF,
            r#type: MapPirqType::Msi as i32,
            index: -1,
            pirq: -1,
            bus: i32::from(f.bdf.bus),
            devfn: i32::from(f.bdf.devfn()),
            entry_nr: 0,
            table_base,
            ..Default::default()
        };
        physdev(PhysdevOp::MapPirq, &mut mp)?;
        let pirq = mp.pirq as u32;
        let mut q = PhysdevIrqStatusQuery {
            irq: pirq,
            flags: 0,
        };
        let needs_eoi = physdev(PhysdevOp::IrqStatusQuery, &mut q).is_ok()
            && q.flags & XENIRQSTAT_NEEDS_EOI != 0;
        let mut b = EvtchnBindPirq {
            pirq,
            flags: 0,
            port: 0,
        };
        events::op_raw(u64::from(EvtchnOp::BindPirq.raw()), &mut b)?;
        let slot = (NEXT_SLOT.fetch_add(1, Ordering::Relaxed) as usize) % IRQ_COUNTS.len();
        events::set_handler(b.port, count_irq, slot)?;
        events::unmask(b.port)?;
        Ok(Irq {
            pirq,
            port: b.port,
            needs_eoi,
            slot,
        })
    }

    /// Interrupts received so far.
    pub fn count(&self) -> u64 {
        IRQ_COUNTS[self.slot].load(Ordering::Relaxed)
    }

    /// `PHYSDEVOP_eoi` where Xen asks for it.
    fn eoi(&self) {
        if self.needs_eoi {
            let _ = physdev(PhysdevOp::Eoi, &mut PhysdevEoi { irq: self.pirq });
        }
    }
}

/// Closing the port masks the MSI-X entry (Xen); the PIRQ is unmapped.
impl Drop for Irq {
    fn drop(&mut self) {
        events::unbind(self.port);
        let _ = events::close(self.port);
        let _ = physdev(
            PhysdevOp::UnmapPirq,
            &mut PhysdevUnmapPirq {
                domid: DOMID_SELF,
                pirq: self.pirq as i32,
                ..Default::default()
            },
        );
    }
}

/// How long a device may take before the waiter stops sleeping on the
/// interrupt and polls (a lost interrupt costs time, never a hang).
const IRQ_PATIENCE_NS: u64 = 2_000_000_000;

/// Waits until `done()`: sleeping on the device's event channel when it
/// has one, yielding the CPU between polls otherwise. Returns false if
/// the interrupt did not come in time (then it polled).
fn wait(irq: Option<&Irq>, mut done: impl FnMut() -> bool) -> bool {
    let mut in_time = true;
    if let Some(i) = irq {
        let deadline = time::now_ns().saturating_add(IRQ_PATIENCE_NS);
        in_time = time::block_until(deadline, &mut done) == time::Wake::Ready;
        i.eoi();
    }
    while !done() {
        let _ = pv_guest_lib::xen::sched_yield();
    }
    in_time
}

// ---- The transport ------------------------------------------------------------

/// `virtio-drivers`' PCI transport plus what a Dom0 needs on top: each
/// virtqueue is given MSI-X vector 0 as it is set up (virtio 1.x
/// `queue_msix_vector`; the crate leaves it `NO_VECTOR`).
#[derive(Debug)]
pub struct Dom0Transport {
    inner: PciTransport,
    /// The common configuration structure, mapped.
    common: Option<u64>,
    /// MSI-X vector for the queues (`0xffff`: none).
    vector: u16,
}

/// `virtio_pci_common_cfg.queue_msix_vector`.
const COMMON_QUEUE_MSIX_VECTOR: u64 = 0x1a;
/// `virtio_pci_common_cfg.queue_select`.
const COMMON_QUEUE_SELECT: u64 = 0x16;
/// No vector.
pub const NO_VECTOR: u16 = 0xffff;

impl Transport for Dom0Transport {
    fn device_type(&self) -> DeviceType {
        self.inner.device_type()
    }
    fn read_device_features(&mut self) -> u64 {
        self.inner.read_device_features()
    }
    fn write_driver_features(&mut self, driver_features: u64) {
        self.inner.write_driver_features(driver_features)
    }
    fn max_queue_size(&mut self, queue: u16) -> u32 {
        self.inner.max_queue_size(queue)
    }
    fn notify(&mut self, queue: u16) {
        self.inner.notify(queue)
    }
    fn get_status(&self) -> DeviceStatus {
        self.inner.get_status()
    }
    fn set_status(&mut self, status: DeviceStatus) {
        self.inner.set_status(status)
    }
    fn set_guest_page_size(&mut self, guest_page_size: u32) {
        self.inner.set_guest_page_size(guest_page_size)
    }
    fn requires_legacy_layout(&self) -> bool {
        self.inner.requires_legacy_layout()
    }
    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        if let (Some(c), true) = (self.common, self.vector != NO_VECTOR) {
            // SAFETY: `c` maps the device's common configuration
            // structure (uncached); these are its 16-bit registers.
            unsafe {
                core::ptr::write_volatile((c + COMMON_QUEUE_SELECT) as *mut u16, queue);
                core::ptr::write_volatile((c + COMMON_QUEUE_MSIX_VECTOR) as *mut u16, self.vector);
                if core::ptr::read_volatile((c + COMMON_QUEUE_MSIX_VECTOR) as *const u16)
                    == self.vector
                {
                    VECTORS_SET.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.inner
            .queue_set(queue, size, descriptors, driver_area, device_area)
    }
    fn queue_unset(&mut self, queue: u16) {
        self.inner.queue_unset(queue)
    }
    fn queue_used(&mut self, queue: u16) -> bool {
        self.inner.queue_used(queue)
    }
    fn ack_interrupt(&mut self) -> InterruptStatus {
        self.inner.ack_interrupt()
    }
    fn read_config_generation(&self) -> u32 {
        self.inner.read_config_generation()
    }
    fn read_config_space<T: zerocopy::FromBytes + zerocopy::IntoBytes>(
        &self,
        offset: usize,
    ) -> virtio_drivers::Result<T> {
        self.inner.read_config_space(offset)
    }
    fn write_config_space<T: zerocopy::IntoBytes + zerocopy::Immutable>(
        &mut self,
        offset: usize,
        value: T,
    ) -> virtio_drivers::Result<()> {
        self.inner.write_config_space(offset, value)
    }
}

/// Why a device could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// The PCI transport refused it.
    Pci(virtio_drivers::transport::pci::VirtioPciError),
    /// The driver failed to initialise it.
    Virtio(virtio_drivers::Error),
    /// Mapping its registers failed.
    Map(Errno),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Pci(e) => write!(f, "virtio PCI transport: {e}"),
            OpenError::Virtio(e) => write!(f, "virtio: {e}"),
            OpenError::Map(e) => write!(f, "mapping the device's registers: {e}"),
        }
    }
}

/// Opens function `f` as a virtio device: decoding and bus mastering on,
/// the crate's PCI transport, the common configuration mapped for the
/// queue vectors, and (with `interrupts`) MSI-X entry 0 as an event
/// channel (`None` and polling when that fails).
pub fn open<C: ConfigSpace + Clone>(
    cs: &mut C,
    f: &Function,
    interrupts: bool,
) -> Result<(Dom0Transport, Option<Irq>, Option<Errno>), OpenError> {
    pci::enable(cs, f.bdf, true, false, true);
    let mut root = PciRoot::new(VirtioCam(cs.clone()));
    let inner = PciTransport::new::<Dom0Hal, _>(&mut root, pci::device_function(f.bdf))
        .map_err(OpenError::Pci)?;
    let common = pci::virtio_caps(cs, f.bdf)
        .into_iter()
        .find(|c| c.cfg_type == 1)
        .and_then(|c| Some((pci::bar_address(cs, f.bdf, c.bar)?, c)))
        .map(|(bar, c)| crate::pci::metal::map_io(bar + u64::from(c.offset), 0x40))
        .transpose()
        .map_err(OpenError::Map)?;
    let (irq, irq_err) = if interrupts {
        match Irq::msix(cs, f) {
            Ok(i) => (Some(i), None),
            Err(e) => (None, Some(e)),
        }
    } else {
        (None, None)
    };
    let t = Dom0Transport {
        inner,
        common,
        vector: if irq.is_some() { 0 } else { NO_VECTOR },
    };
    Ok((t, irq, irq_err))
}

// ---- The disk -------------------------------------------------------------------

/// One request of a [`Disk::batch`].
#[derive(Debug)]
pub enum Io<'a> {
    /// Read into the buffer from the sector.
    Read(u64, &'a mut [u8]),
    /// Write the buffer at the sector.
    Write(u64, &'a [u8]),
}

/// A request [`Disk::submit`] put on the queue, kept until it completes.
///
/// Ownership invariant: from `BlkDev::submit` until `BlkDev::complete`
/// the device may read or write `req`, `resp` and the memory `segs`
/// describe; all three are owned by this record alone (boxed, so they do
/// not move when the record does; `segs` is the memory of `io.buf`: a
/// `Vec<u8>` or `DmaBuf`, whose bytes stay where they are as long as the
/// value lives and is not resized — nothing resizes it: only the record
/// holds it — or an `SgBuf`, the frontend's pages, mapped while it
/// lives). A record leaves [`Disk::flights`] only through
/// [`Disk::reap`], after the device handed its token back.
struct Flight {
    token: u16,
    req: Box<ReqHeader>,
    resp: Box<Status>,
    segs: Vec<Seg>,
    io: OwnedIo,
}

/// A virtio-blk disk.
pub struct Disk {
    blk: BlkDev,
    irq: Option<Irq>,
    /// Requests of [`Disk::submit`] on the device.
    flights: Vec<Flight>,
    /// The interrupt count at the last EOI of [`Disk::poll_completed`].
    eoi_at: u64,
    /// Requests of [`Disk::submit`] that completed, until their owner
    /// polls.
    done: Vec<(OwnedIo, Result<(), IoError>)>,
    /// Requests whose interrupt did not come in time.
    pub late: u64,
    /// Where it is.
    pub bdf: Bdf,
}

impl Disk {
    /// Initialises the device (`open` first).
    pub fn new(t: Dom0Transport, irq: Option<Irq>, bdf: Bdf) -> Result<Disk, OpenError> {
        let blk = BlkDev::new(t).map_err(OpenError::Virtio)?;
        Ok(Disk {
            blk,
            irq,
            flights: Vec::new(),
            eoi_at: 0,
            done: Vec::new(),
            late: 0,
            bdf,
        })
    }

    /// Size in 512-byte sectors.
    pub fn sectors(&self) -> u64 {
        self.blk.capacity()
    }

    /// Read-only disk.
    pub fn readonly(&self) -> bool {
        self.blk.readonly()
    }

    /// The interrupt, if it has one.
    pub fn irq(&self) -> Option<&Irq> {
        self.irq.as_ref()
    }

    fn check_len(&self, sector: u64, len: usize) -> Result<(), virtio_drivers::Error> {
        let n = (len / SECTOR_SIZE) as u64;
        if len == 0
            || !len.is_multiple_of(SECTOR_SIZE)
            || sector.checked_add(n).is_none_or(|e| e > self.sectors())
        {
            return Err(virtio_drivers::Error::InvalidParam);
        }
        Ok(())
    }

    /// Reads `buf.len() / 512` sectors from `sector` (a whole, non-zero
    /// number of sectors inside the disk), sleeping until the device
    /// answers.
    pub fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), virtio_drivers::Error> {
        // The blocking paths expect the queue to themselves.
        self.settle();
        self.check_len(sector, buf.len())?;
        let mut req = ReqHeader::default();
        let mut resp = Status::default();
        // SAFETY: `req`, `buf` and `resp` are not touched until the
        // request completes below (this function waits for it).
        let token = unsafe {
            self.blk
                .read_blocks_nb(sector as usize, &mut req, buf, &mut resp)?
        };
        let blk = &mut self.blk;
        if !wait(self.irq.as_ref(), || blk.peek_used() == Some(token)) {
            self.late += 1;
        }
        // SAFETY: the same buffers as above.
        unsafe { self.blk.complete_read_blocks(token, &req, buf, &mut resp) }
    }

    /// Writes `buf` at `sector` (as [`Disk::read`]).
    pub fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), virtio_drivers::Error> {
        // The blocking paths expect the queue to themselves.
        self.settle();
        self.check_len(sector, buf.len())?;
        let mut req = ReqHeader::default();
        let mut resp = Status::default();
        // SAFETY: as in `read`.
        let token = unsafe {
            self.blk
                .write_blocks_nb(sector as usize, &mut req, buf, &mut resp)?
        };
        let blk = &mut self.blk;
        if !wait(self.irq.as_ref(), || blk.peek_used() == Some(token)) {
            self.late += 1;
        }
        // SAFETY: as in `read`.
        unsafe { self.blk.complete_write_blocks(token, &req, buf, &mut resp) }
    }

    /// Runs `ios` with as many requests in flight as the queue takes,
    /// sleeping on the interrupt between completions; the result of each
    /// is in its slot of the returned vector (in `ios`' order).
    pub fn batch(&mut self, ios: &mut [Io<'_>]) -> Vec<Result<(), virtio_drivers::Error>> {
        // The blocking paths expect the queue to themselves.
        self.settle();
        let n = ios.len();
        let mut out: Vec<Result<(), virtio_drivers::Error>> = (0..n).map(|_| Ok(())).collect();
        // Allocated once: the device holds pointers into these until each
        // request completes, so they never move.
        let mut reqs: Vec<ReqHeader> = (0..n).map(|_| ReqHeader::default()).collect();
        let mut resps: Vec<Status> = (0..n).map(|_| Status::default()).collect();
        let mut tokens: Vec<Option<u16>> = alloc::vec![None; n];
        let (mut next, mut in_flight) = (0, 0usize);
        while next < n || in_flight > 0 {
            if next < n {
                let i = next;
                let chk = match &ios[i] {
                    Io::Read(s, b) => self.check_len(*s, b.len()),
                    Io::Write(s, b) => self.check_len(*s, b.len()),
                };
                // SAFETY: `reqs[i]`, `resps[i]` and the buffer stay put and
                // untouched until the request is completed below (this
                // function does not return before every submitted request
                // completed).
                let r = chk.and_then(|_| unsafe {
                    match &mut ios[i] {
                        Io::Read(s, b) => {
                            self.blk
                                .read_blocks_nb(*s as usize, &mut reqs[i], b, &mut resps[i])
                        }
                        Io::Write(s, b) => {
                            self.blk
                                .write_blocks_nb(*s as usize, &mut reqs[i], b, &mut resps[i])
                        }
                    }
                });
                match r {
                    Ok(t) => {
                        tokens[i] = Some(t);
                        in_flight += 1;
                        next += 1;
                        continue;
                    }
                    Err(virtio_drivers::Error::QueueFull) if in_flight > 0 => {}
                    Err(e) => {
                        out[i] = Err(e);
                        next += 1;
                        continue;
                    }
                }
            }
            // Wait for the next completion and finish it.
            let blk = &mut self.blk;
            if !wait(self.irq.as_ref(), || blk.peek_used().is_some()) {
                self.late += 1;
            }
            let Some(t) = self.blk.peek_used() else {
                continue;
            };
            let Some(j) = tokens.iter().position(|&x| x == Some(t)) else {
                // Not ours: nothing else uses this queue; stop waiting on it.
                break;
            };
            // SAFETY: the buffers `j` was submitted with.
            out[j] = unsafe {
                match &mut ios[j] {
                    Io::Read(_, b) => self.blk.complete_read_blocks(t, &reqs[j], b, &mut resps[j]),
                    Io::Write(_, b) => {
                        self.blk
                            .complete_write_blocks(t, &reqs[j], b, &mut resps[j])
                    }
                }
            };
            tokens[j] = None;
            in_flight -= 1;
        }
        out
    }

    /// One request per sector `at` yields, all reads or all writes of
    /// one buffer's length, with up to `bufs.len()` in flight (the queue
    /// depth): each request uses a free buffer of `bufs` (written from,
    /// or read into) and the next is sent as soon as one completes.
    /// Returns how many were done; stops at the first error.
    pub fn stream(
        &mut self,
        write: bool,
        at: &mut dyn Iterator<Item = u64>,
        bufs: &mut [&mut [u8]],
    ) -> Result<u64, virtio_drivers::Error> {
        let depth = bufs.len();
        // The blocking paths expect the queue to themselves.
        self.settle();
        // Allocated once: the device holds pointers into these until each
        // request completes, so they never move.
        let mut reqs: Vec<ReqHeader> = (0..depth).map(|_| ReqHeader::default()).collect();
        let mut resps: Vec<Status> = (0..depth).map(|_| Status::default()).collect();
        let mut tokens: Vec<Option<u16>> = alloc::vec![None; depth];
        let (mut done, mut failed, mut more) = (0u64, None, true);
        loop {
            // Fill every free slot.
            while more && failed.is_none() {
                let Some(i) = tokens.iter().position(Option::is_none) else {
                    break;
                };
                let Some(sector) = at.next() else {
                    more = false;
                    break;
                };
                if let Err(e) = self.check_len(sector, bufs[i].len()) {
                    failed = Some(e);
                    break;
                }
                // SAFETY: `reqs[i]`, `resps[i]` and `bufs[i]` stay put and
                // untouched until the request is completed below (slot `i`
                // is busy until then; this function does not return
                // before every submitted request completed).
                let r = unsafe {
                    if write {
                        self.blk.write_blocks_nb(
                            sector as usize,
                            &mut reqs[i],
                            bufs[i],
                            &mut resps[i],
                        )
                    } else {
                        self.blk.read_blocks_nb(
                            sector as usize,
                            &mut reqs[i],
                            bufs[i],
                            &mut resps[i],
                        )
                    }
                };
                match r {
                    Ok(t) => tokens[i] = Some(t),
                    Err(e) => failed = Some(e),
                }
            }
            if tokens.iter().all(Option::is_none) {
                break;
            }
            let blk = &mut self.blk;
            if !wait(self.irq.as_ref(), || blk.peek_used().is_some()) {
                self.late += 1;
            }
            let Some(t) = self.blk.peek_used() else {
                continue;
            };
            let Some(j) = tokens.iter().position(|&x| x == Some(t)) else {
                // Not ours: nothing else uses this queue.
                return Err(virtio_drivers::Error::WrongToken);
            };
            // SAFETY: the buffers slot `j` was submitted with.
            let r = unsafe {
                if write {
                    self.blk
                        .complete_write_blocks(t, &reqs[j], bufs[j], &mut resps[j])
                } else {
                    self.blk
                        .complete_read_blocks(t, &reqs[j], bufs[j], &mut resps[j])
                }
            };
            tokens[j] = None;
            match r {
                Ok(()) => done += 1,
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(done),
        }
    }

    /// Flushes the device's write cache (waits by polling).
    pub fn flush(&mut self) -> Result<(), virtio_drivers::Error> {
        // The blocking paths expect the queue to themselves.
        self.settle();
        self.blk.flush()
    }
}

// ---- Requests in the background -----------------------------------------------

impl Disk {
    /// Takes every completed [`Disk::submit`] request off the queue into
    /// [`Disk::done`]. Stops at a token that is not one of them (the
    /// blocking paths complete their own before returning, after
    /// [`Disk::settle`], so none is seen here).
    fn reap(&mut self) -> usize {
        let mut n = 0;
        while let Some(t) = self.blk.peek_used() {
            let Some(k) = self.flights.iter().position(|f| f.token == t) else {
                break;
            };
            let mut f = self.flights.swap_remove(k);
            // SAFETY: `f` is the record `t` was submitted with (see
            // `Flight`): `segs` still describe the memory of `f.io.buf`,
            // which the record owned until now, as are `req` and `resp`.
            let r = unsafe {
                self.blk
                    .complete(t, f.io.write, &f.req, &f.segs, &mut f.resp)
            };
            self.done.push((f.io, r.map_err(|_| IoError::Io)));
            n += 1;
        }
        n
    }

    /// Waits until no [`Disk::submit`] request is on the device (their
    /// results wait in [`Disk::done`] for their owners).
    fn settle(&mut self) {
        while !self.flights.is_empty() {
            let blk = &mut self.blk;
            if !wait(self.irq.as_ref(), || blk.peek_used().is_some()) {
                self.late += 1;
            }
            if self.reap() == 0 {
                // Someone else's token: not ours to complete.
                log::error!(
                    "{self:?}: unknown completion; {} requests stuck",
                    self.flights.len()
                );
                break;
            }
        }
    }

    /// Starts `io` (see [`BlockStore::submit`]): on the queue if there is
    /// room, `Busy` if it is full of other requests. A disk without an
    /// interrupt (nothing would wake its owner) and a buffer of a kind
    /// that may move run it at once.
    ///
    /// [`BlockStore::submit`]: crate::blkback::store::BlockStore::submit
    pub fn submit(&mut self, mut io: OwnedIo) -> Submitted {
        if (io.write && self.readonly()) || self.check_len(io.sector, io.len).is_err() {
            return Submitted::Done(io, Err(IoError::Io));
        }
        let known = {
            let a = io.buf.as_any();
            a.is::<Vec<u8>>() || a.is::<super::hal::DmaBuf>() || a.is::<crate::blkback::SgBuf>()
        };
        if self.irq.is_none() || !known {
            return crate::blkback::store::run_now(self, io);
        }
        let segs = match io.buf.dma_segments() {
            // In place (an `SgBuf`): every piece inside one page, the
            // pieces together exactly the I/O.
            Some(pieces) => {
                let fits = pieces
                    .iter()
                    .all(|p| p.len > 0 && (p.va & 4095) + u64::from(p.len) <= 4096);
                let total: usize = pieces.iter().map(|p| p.len as usize).sum();
                if !fits || total != io.len {
                    return Submitted::Done(io, Err(IoError::Io));
                }
                pieces
                    .iter()
                    .map(|p| Seg {
                        ptr: p.va as *mut u8,
                        len: p.len as usize,
                    })
                    .collect::<Vec<_>>()
            }
            None => match io.buf.bytes().get_mut(..io.len) {
                Some(buf) => alloc::vec![Seg {
                    ptr: buf.as_mut_ptr(),
                    len: buf.len(),
                }],
                None => return Submitted::Done(io, Err(IoError::Io)),
            },
        };
        let mut req = Box::new(ReqHeader::default());
        let mut resp = Box::new(Status::default());
        // SAFETY: `req`, `resp` and the memory `segs` describe (that of
        // `io.buf`: a `Vec<u8>` or `DmaBuf`, which stays put while the
        // value lives, or an `SgBuf`, whose pages stay mapped and
        // untouched while it lives, per `SgBuf::new`) go into a `Flight`
        // record below, which owns them until `reap` completes the
        // request; nothing touches them meanwhile.
        let r = unsafe {
            self.blk
                .submit(io.write, io.sector, &mut req, &segs, &mut resp)
        };
        match r {
            Ok(token) => {
                self.flights.push(Flight {
                    token,
                    req,
                    resp,
                    segs,
                    io,
                });
                Submitted::InFlight
            }
            Err(virtio_drivers::Error::QueueFull) if !self.flights.is_empty() => {
                Submitted::Busy(io)
            }
            Err(_) => Submitted::Done(io, Err(IoError::Io)),
        }
    }

    /// `owner`'s requests that completed (never waits).
    pub fn poll_completed(&mut self, owner: u64) -> Vec<(OwnedIo, Result<(), IoError>)> {
        if !self.flights.is_empty() {
            self.reap();
        }
        // An interrupt that came after its request was reaped still wants
        // its EOI, or the next would never come.
        if let Some(i) = &self.irq {
            let n = i.count();
            if n != self.eoi_at {
                self.eoi_at = n;
                i.eoi();
            }
        }
        if !self.done.iter().any(|d| d.0.owner == owner) {
            return Vec::new();
        }
        let (mine, rest) = core::mem::take(&mut self.done)
            .into_iter()
            .partition(|d| d.0.owner == owner);
        self.done = rest;
        mine
    }

    /// `owner`'s requests not yet handed back.
    pub fn outstanding(&self, owner: u64) -> usize {
        self.flights.iter().filter(|f| f.io.owner == owner).count()
            + self.done.iter().filter(|d| d.0.owner == owner).count()
    }

    /// Sleeps until a request on the device completes (at once if none is).
    pub fn wait_any(&mut self) {
        if self.flights.is_empty() {
            return;
        }
        let blk = &mut self.blk;
        if !wait(self.irq.as_ref(), || blk.peek_used().is_some()) {
            self.late += 1;
        }
        self.reap();
    }
}

/// Requests still on the device when the disk goes would DMA into freed
/// memory: wait for them first.
impl Drop for Disk {
    fn drop(&mut self) {
        self.settle();
        if !self.flights.is_empty() {
            // The device never answered: its buffers can never be freed.
            core::mem::forget(core::mem::take(&mut self.flights));
        }
    }
}

/// Virtqueues (of every device) whose MSI-X vector the device took.
static VECTORS_SET: AtomicU64 = AtomicU64::new(0);

/// How many virtqueues so far took their MSI-X vector.
pub fn vectors_set() -> u64 {
    VECTORS_SET.load(Ordering::Relaxed)
}

// ---- The NIC --------------------------------------------------------------------

/// Descriptors per queue (receive and transmit).
pub const NET_QUEUE: usize = 64;
/// Size of each buffer (a full Ethernet frame and the virtio header);
/// two to a page, so none straddles a page and none needs a bounce.
pub const NET_BUF: usize = 2048;
/// Buffers per page.
const PER_PAGE: usize = (PAGE_SIZE as usize) / NET_BUF;
const PAGE_SIZE: u64 = super::PAGE;
/// How long a send waits for a transmit slot before dropping the frame.
const TX_PATIENCE_NS: u64 = 20_000_000;

/// `n` buffers of [`NET_BUF`] bytes in machine-contiguous DMA pages,
/// Dom0's for as long as the NIC lives.
struct Slots {
    first: pv_guest_lib::frame::Frame,
    pages: u64,
}

impl Slots {
    fn new(n: usize) -> Option<Slots> {
        let pages = n.div_ceil(PER_PAGE) as u64;
        super::hal::alloc_dma(pages).map(|first| Slots { first, pages })
    }

    /// Buffer `i` (< the `n` it was made with).
    fn buf(&mut self, i: usize) -> &mut [u8] {
        debug_assert!((i as u64) < self.pages * PER_PAGE as u64);
        // SAFETY: `alloc_dma` gave `pages` zeroed, direct-mapped pages
        // that only this NIC uses until `drop`; buffer `i` lies inside
        // them, and the `&mut self` borrow keeps the slice unique on the
        // CPU side (the device only touches buffers the driver posted,
        // which the driver does not read until the device hands them back).
        unsafe {
            core::slice::from_raw_parts_mut((self.first.va as *mut u8).add(i * NET_BUF), NET_BUF)
        }
    }
}

impl Drop for Slots {
    fn drop(&mut self) {
        super::hal::free_dma(self.first, self.pages);
    }
}

/// A virtio-net NIC: [`NET_QUEUE`] receive buffers kept posted, and up to
/// [`NET_QUEUE`] frames in flight to the device (a send does not wait for
/// the device: its slot comes back on a later call).
pub struct Nic {
    /// Boxed: its queues' bookkeeping is several KiB, too much to move
    /// around on Dom0's stack.
    net: Box<VirtIONetRaw<Dom0Hal, Dom0Transport, NET_QUEUE>>,
    rx: Slots,
    /// The receive buffer each token (descriptor) holds.
    rx_slot: Vec<u16>,
    tx: Slots,
    tx_free: Vec<u16>,
    /// The transmit buffer and length each token holds.
    tx_inflight: Vec<Option<(u16, u16)>>,
    irq: Option<Irq>,
    /// Where it is.
    pub bdf: Bdf,
}

impl Nic {
    /// Initialises the device and posts its receive buffers.
    pub fn new(t: Dom0Transport, irq: Option<Irq>, bdf: Bdf) -> Result<Nic, OpenError> {
        let net = Box::new(VirtIONetRaw::new(t).map_err(OpenError::Virtio)?);
        let no_memory = || OpenError::Virtio(virtio_drivers::Error::DmaError);
        let rx = Slots::new(NET_QUEUE).ok_or_else(no_memory)?;
        let tx = Slots::new(NET_QUEUE).ok_or_else(no_memory)?;
        let mut nic = Nic {
            net,
            rx,
            rx_slot: alloc::vec![0; NET_QUEUE],
            tx,
            tx_free: (0..NET_QUEUE as u16).collect(),
            tx_inflight: alloc::vec![None; NET_QUEUE],
            irq,
            bdf,
        };
        for i in 0..NET_QUEUE as u16 {
            nic.post_rx(i).map_err(OpenError::Virtio)?;
        }
        Ok(nic)
    }

    /// Hands receive buffer `slot` to the device.
    fn post_rx(&mut self, slot: u16) -> Result<(), virtio_drivers::Error> {
        let buf = self.rx.buf(usize::from(slot));
        // SAFETY: the buffer stays allocated (in `self.rx`) until the NIC
        // is dropped, and is not touched until the device returns its
        // token and `receive_complete` has run.
        let token = unsafe { self.net.receive_begin(buf)? };
        *self
            .rx_slot
            .get_mut(usize::from(token))
            .ok_or(virtio_drivers::Error::WrongToken)? = slot;
        Ok(())
    }

    /// Its MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.net.mac_address()
    }

    /// The interrupt, if it has one.
    pub fn irq(&self) -> Option<&Irq> {
        self.irq.as_ref()
    }

    /// Takes back the transmit buffers the device is done with.
    fn reap_tx(&mut self) {
        while let Some(token) = self.net.poll_transmit() {
            let Some((slot, len)) = self
                .tx_inflight
                .get_mut(usize::from(token))
                .and_then(Option::take)
            else {
                return;
            };
            let buf = self.tx.buf(usize::from(slot));
            // SAFETY: the same buffer (and length) `transmit_begin` got for
            // this token.
            let _ = unsafe { self.net.transmit_complete(token, &buf[..usize::from(len)]) };
            self.tx_free.push(slot);
        }
    }

    /// Queues one Ethernet frame (at most [`NET_BUF`] bytes less the
    /// header) for the device. Waits only if every transmit slot is in
    /// flight; then, after a while, the frame is dropped
    /// (`QueueFull`), as a full switch port would.
    pub fn send(&mut self, frame: &[u8]) -> Result<(), virtio_drivers::Error> {
        if frame.is_empty() || frame.len() > NET_BUF - 12 {
            return Err(virtio_drivers::Error::InvalidParam);
        }
        self.reap_tx();
        if self.tx_free.is_empty() {
            let deadline = time::now_ns() + TX_PATIENCE_NS;
            while self.tx_free.is_empty() {
                if time::now_ns() > deadline {
                    return Err(virtio_drivers::Error::QueueFull);
                }
                core::hint::spin_loop();
                self.reap_tx();
            }
        }
        let slot = self.tx_free.pop().ok_or(virtio_drivers::Error::QueueFull)?;
        let net = &self.net;
        let buf = self.tx.buf(usize::from(slot));
        let hdr = match net.fill_buffer_header(buf) {
            Ok(h) => h,
            Err(e) => {
                self.tx_free.push(slot);
                return Err(e);
            }
        };
        let len = hdr + frame.len();
        buf[hdr..len].copy_from_slice(frame);
        // SAFETY: the buffer stays allocated (in `self.tx`) and untouched
        // until `reap_tx` sees the device is done with its token.
        match unsafe { self.net.transmit_begin(&buf[..len]) } {
            Ok(token) => {
                if let Some(t) = self.tx_inflight.get_mut(usize::from(token)) {
                    *t = Some((slot, len as u16));
                }
                Ok(())
            }
            Err(e) => {
                self.tx_free.push(slot);
                Err(e)
            }
        }
    }

    /// Takes the next received frame to `f` and posts its buffer again;
    /// false if none is waiting.
    fn recv_one(&mut self, f: &mut dyn FnMut(&[u8])) -> bool {
        let Some(token) = self.net.poll_receive() else {
            return false;
        };
        let Some(&slot) = self.rx_slot.get(usize::from(token)) else {
            return false;
        };
        let buf = self.rx.buf(usize::from(slot));
        // SAFETY: the same buffer `receive_begin` got for this token.
        if let Ok((hdr, len)) = unsafe { self.net.receive_complete(token, buf) } {
            let buf = self.rx.buf(usize::from(slot));
            if let Some(frame) = buf.get(hdr..hdr + len) {
                f(frame);
            }
        }
        let _ = self.post_rx(slot);
        true
    }

    /// Receives frames until `f` returns `Some` or `deadline` (system
    /// time, ns) passes, sleeping on the interrupt in between.
    pub fn recv_until<R>(
        &mut self,
        deadline: u64,
        mut f: impl FnMut(&[u8]) -> Option<R>,
    ) -> Option<R> {
        loop {
            let mut got = None;
            while got.is_none() && self.recv_one(&mut |fr| got = f(fr)) {}
            if got.is_some() {
                return got;
            }
            let net = &self.net;
            let w = if self.irq.is_some() {
                time::block_until(deadline, || net.poll_receive().is_some())
            } else {
                let mut w = time::Wake::TimedOut;
                while time::now_ns() < deadline {
                    if net.poll_receive().is_some() {
                        w = time::Wake::Ready;
                        break;
                    }
                    let _ = pv_guest_lib::xen::sched_yield();
                }
                w
            };
            if let Some(i) = &self.irq {
                i.eoi();
            }
            if w == time::Wake::TimedOut && self.net.poll_receive().is_none() {
                return None;
            }
        }
    }

    /// Hands every frame received so far to `f` (and reaps finished
    /// sends); EOIs the interrupt. Returns how many frames.
    pub fn poll_recv(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        let mut n = 0;
        while self.recv_one(&mut f) {
            n += 1;
        }
        self.reap_tx();
        if let Some(i) = &self.irq {
            i.eoi();
        }
        n
    }

    /// Whether a received frame is waiting.
    pub fn can_recv(&self) -> bool {
        self.net.poll_receive().is_some()
    }
}

impl fmt::Debug for Disk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "virtio-blk {} ({} sectors, irq {:?})",
            self.bdf,
            self.sectors(),
            self.irq
        )
    }
}

impl fmt::Debug for Nic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "virtio-net {} ({:02x?}, irq {:?})",
            self.bdf,
            self.mac(),
            self.irq
        )
    }
}

/// The machine's disk as blkback's backing store (the whole disk, or a
/// `blkback::store::Slice` of it).
impl crate::blkback::store::BlockStore for Disk {
    fn sectors(&self) -> u64 {
        Disk::sectors(self)
    }

    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), crate::blkback::store::IoError> {
        Disk::read(self, sector, buf).map_err(|_| crate::blkback::store::IoError::Io)
    }

    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), crate::blkback::store::IoError> {
        if self.readonly() {
            return Err(crate::blkback::store::IoError::Io);
        }
        Disk::write(self, sector, data).map_err(|_| crate::blkback::store::IoError::Io)
    }

    /// Every I/O in flight at once ([`Disk::batch`]); writes to a
    /// read-only disk fail without being sent.
    fn batch(
        &mut self,
        ios: &mut [crate::blkback::store::StoreIo<'_>],
    ) -> Vec<Result<(), crate::blkback::store::IoError>> {
        use crate::blkback::store::{IoError, StoreIo};
        let ro = self.readonly();
        let mut out: Vec<Result<(), IoError>> = alloc::vec![Ok(()); ios.len()];
        let mut owner = Vec::with_capacity(ios.len());
        let mut sub = Vec::with_capacity(ios.len());
        for (i, io) in ios.iter_mut().enumerate() {
            match io {
                StoreIo::Write(..) if ro => out[i] = Err(IoError::Io),
                StoreIo::Read(s, b) => {
                    owner.push(i);
                    sub.push(Io::Read(*s, b));
                }
                StoreIo::Write(s, d) => {
                    owner.push(i);
                    sub.push(Io::Write(*s, d));
                }
            }
        }
        for (i, r) in owner.into_iter().zip(Disk::batch(self, &mut sub)) {
            out[i] = r.map_err(|_| IoError::Io);
        }
        out
    }

    fn flush(&mut self) -> Result<(), crate::blkback::store::IoError> {
        Disk::flush(self).map_err(|_| crate::blkback::store::IoError::Io)
    }

    fn submit(&mut self, io: OwnedIo) -> Submitted {
        Disk::submit(self, io)
    }

    /// With an interrupt, requests stay on the queue and may be
    /// scattered (the frontend's pages in place).
    fn takes_segments(&self) -> bool {
        self.irq.is_some()
    }

    fn poll_completed(&mut self, owner: u64) -> Vec<(OwnedIo, Result<(), IoError>)> {
        Disk::poll_completed(self, owner)
    }

    fn outstanding(&self, owner: u64) -> usize {
        Disk::outstanding(self, owner)
    }

    fn wait_any(&mut self) {
        Disk::wait_any(self)
    }
}
