//! The toolstack on the metal: [`Toolstack`], the `xl` back end, with the
//! back ends' state (xenstored, the guests' console rings) and the
//! registry of the guests `xl create` started.
//!
//! Guests' ring pages are mapped into Dom0 with foreign `mmu_update`s
//! ([`ForeignMap`]) for as long as the guest lives; everything read from
//! them is validated by the pure code (`xenstore`, `consoled`).

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::{self, Write as _};

use super::devices::{self, Hardware};
use super::hvm::HvmIo;
use super::lifecycle::{self, Next};
use super::media::{self, Medium, Sharing};
use super::net::Net;
use crate::blkback::{self, Blkback, CopySeg, EventChannels, GrantFault, GrantMapper};
use crate::builder::{self, Built, GuestConfig};
use crate::consoled::{scan_input, DomConsole, RawRing};
use crate::fat;
use crate::netback::metal::{map_grant, MappedRing};
use crate::ramdisk::{Archive, Kind};
use crate::virtio::dev::Disk;
use crate::xc::{self, foreign::ForeignMap};
use crate::xenstore::layout::{ConsoleInfo, DomainInfo as XsDomain};
use crate::xenstore::{Host, Quotas, Xenstored};
use crate::xl::backend::{
    ConsoleType, CreateRequest, CreditDomain, CreditPool, DomainConfig as XlDomainConfig,
    DomainGone, DomainInfo, PhysInfo, Uname, VcpuInfo, VersionInfo, VirtCaps, XlError, XlResult,
};
use crate::xl::cpumap::CpuMap;
use crate::xlcfg::{self, DomainConfig, DomainType, VcpuAffinity};
use hypercall_abi::xen::Virq;
use pv_guest_lib::util::c_str;
use pv_guest_lib::xenbus::page::{RawPage, SharedPage};
use pv_guest_lib::{console, events, print, time, xen};

mod migrate;
mod pvsave;
mod saverestore;

/// Where Dom0's own grant table is mapped.
const GRANT_TABLE_VA: u64 = 0xffff_c000_3fe0_0000;
/// Where `xl` looks for a config file named without a directory.
const XEN_CONFIG_DIR: &str = "/etc/xen";
/// How long `xl network-detach` waits for the frontend to close
/// (libxl's `LIBXL_DESTROY_TIMEOUT`) before removing the vif anyway.
const DETACH_PATIENCE_NS: u64 = 10_000_000_000;
/// How long the service loop sleeps when nothing happened (an event
/// wakes it earlier).
const IDLE_NS: u64 = 20_000_000;
/// How often the vbds' XenBus state machines run when xenstore is quiet
/// (hot-unplug by Dom0's own writes, a frontend's directory vanishing).
const XENBUS_SCAN_NS: u64 = 10_000_000;
/// For how long after a block request [`Toolstack::idle`] polls first.
const IO_ACTIVE_NS: u64 = 10_000_000;
/// How long it polls.
const IO_POLL_NS: u64 = 200_000;

/// A guest's page mapped into Dom0, for xenstored.
pub struct MappedPage {
    _map: ForeignMap,
    raw: RawPage,
}

impl SharedPage for MappedPage {
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

/// What xenstored needs from Dom0's kernel: foreign mappings of ring pages
/// and interdomain event channels.
pub struct Dom0Host;

impl Host for Dom0Host {
    type Page = MappedPage;

    fn map_ring(&mut self, domid: u16, mfn: u64) -> Option<MappedPage> {
        let map = ForeignMap::new(domid, &[mfn]).ok()?;
        let base = map.page_ptr(0)?;
        // SAFETY: `base` is the page-aligned VA of the one page `map`
        // keeps mapped (writable) until it is dropped, which happens with
        // the MappedPage that owns both; only RawPage touches it here.
        let raw = unsafe { RawPage::new(base) };
        Some(MappedPage { _map: map, raw })
    }

    fn bind(&mut self, domid: u16, remote_port: u32) -> Option<u32> {
        events::bind_interdomain(domid, remote_port).ok()
    }

    fn unbind(&mut self, local_port: u32) {
        let _ = events::close(local_port);
    }
}

/// What the back ends need from Dom0's kernel: grant mappings (netback's
/// ring window) and copies, event channels.
#[derive(Default)]
pub struct BackHost {
    /// `events::generation` when [`Toolstack::service`] started.
    seen: core::cell::Cell<u64>,
    /// When the vbds' XenBus state machines run next without xenstore
    /// traffic (system time, ns).
    xenbus_at: u64,
    /// Grants blkback keeps mapped (`feature-persistent`).
    persistent: usize,
    /// Requests blkback had answered at the last look, and when that
    /// count last moved (system time, ns).
    io_seen: u64,
    io_at: u64,
}

fn netback_window_pages() -> usize {
    crate::netback::metal::RING_WINDOW_PAGES
}

impl BackHost {
    fn copy(
        &mut self,
        domid: u16,
        segs: &[CopySeg],
        buf_va: u64,
        to_guest: bool,
    ) -> Result<(), GrantFault> {
        let mfn_of =
            |va: u64| pv_guest_lib::frame::direct_pfn(va).and_then(pv_guest_lib::frame::pfn_to_mfn);
        let mut ops =
            blkback::copy::copy_ops(domid, segs, buf_va, to_guest, mfn_of).ok_or(GrantFault)?;
        pv_guest_lib::grant::copy_batch(&mut ops).map_err(|_| GrantFault)?;
        if ops.iter().all(|o| o.status == 0) {
            Ok(())
        } else {
            Err(GrantFault)
        }
    }
}

impl GrantMapper for BackHost {
    type Page = MappedRing;

    fn map(&mut self, domid: u16, gref: u32, readonly: bool) -> Result<MappedRing, GrantFault> {
        map_grant(domid, gref, readonly).ok_or_else(|| {
            log::warn!("d{domid}: mapping grant {gref} failed");
            GrantFault
        })
    }

    fn unmap(&mut self, page: MappedRing) {
        drop(page);
    }

    fn copy_in(&mut self, domid: u16, segs: &[CopySeg], buf: &mut [u8]) -> Result<(), GrantFault> {
        self.copy(domid, segs, buf.as_mut_ptr() as u64, false)
    }

    fn copy_out(&mut self, domid: u16, segs: &[CopySeg], buf: &[u8]) -> Result<(), GrantFault> {
        self.copy(domid, segs, buf.as_ptr() as u64, true)
    }

    fn map_persistent(&mut self, domid: u16, gref: u32) -> Result<MappedRing, GrantFault> {
        // The ring window is shared with every back end's rings: blkback's
        // persistent grants take at most half of it.
        if self.persistent >= netback_window_pages() / 2 {
            return Err(GrantFault);
        }
        let p = map_grant(domid, gref, false).ok_or(GrantFault)?;
        self.persistent += 1;
        Ok(p)
    }

    fn unmap_persistent(&mut self, page: MappedRing) {
        self.persistent = self.persistent.saturating_sub(1);
        drop(page);
    }

    fn page_read(&mut self, page: &MappedRing, off: usize, out: &mut [u8]) {
        if off.checked_add(out.len()).is_some_and(|e| e <= 4096) {
            // SAFETY: `[off, off + len)` is inside the page `page` keeps
            // mapped (checked above); `out` is Dom0's own buffer. The
            // frontend may write its page meanwhile: the copy is inline
            // assembly, opaque like a volatile access.
            unsafe {
                pv_guest_lib::blkfront::metal::copy_bytes(
                    (page.va() as usize + off) as *const u8,
                    out.as_mut_ptr(),
                    out.len(),
                )
            }
        }
    }

    fn page_write(&mut self, page: &MappedRing, off: usize, data: &[u8]) {
        if off.checked_add(data.len()).is_some_and(|e| e <= 4096) {
            // SAFETY: as in `page_read`, the other way round (mapped
            // writable by `map_persistent`).
            unsafe {
                pv_guest_lib::blkfront::metal::copy_bytes(
                    data.as_ptr(),
                    (page.va() as usize + off) as *mut u8,
                    data.len(),
                )
            }
        }
    }

    fn dma_buf(&mut self, pieces: &[(&MappedRing, u16, u16)]) -> Option<Box<dyn blkback::IoBuf>> {
        let segs = pieces
            .iter()
            .map(|&(page, off, len)| {
                (usize::from(off) + usize::from(len) <= 4096 && len > 0).then(|| blkback::DmaSeg {
                    va: page.va() + u64::from(off),
                    len: u32::from(len),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        // SAFETY: every piece lies inside a page blkback mapped with
        // `map_persistent` (writable), which stays mapped until
        // `unmap_persistent`; blkback calls that only at disconnect, after
        // draining the device's I/O, so after every I/O carrying this
        // buffer was handed back and the buffer dropped. Dom0 itself does
        // not touch the data meanwhile (blkback neither copies nor looks
        // at an in-place request's data).
        Some(Box::new(unsafe { blkback::SgBuf::new(segs) }))
    }

    fn io_buf(&mut self, len: usize) -> Box<dyn blkback::IoBuf> {
        // Machine-contiguous, so the disk DMAs in place (no bounce).
        match crate::virtio::hal::DmaBuf::new(len) {
            Some(b) => Box::new(b),
            None => Box::new(alloc::vec![0u8; len]),
        }
    }
}

impl EventChannels for BackHost {
    fn bind(&mut self, domid: u16, remote_port: u32) -> Option<u32> {
        events::bind_interdomain(domid, remote_port).ok()
    }
    fn unbind(&mut self, local_port: u32) {
        let _ = events::close(local_port);
    }
    fn notify(&mut self, local_port: u32) {
        let _ = events::send(local_port);
    }
}

/// Where a guest's configuration came from (for restarts).
struct Source {
    file: String,
    text: String,
    overrides: Vec<String>,
}

/// A guest `xl create` started.
struct Guest {
    name: String,
    cfg: DomainConfig,
    source: Source,
    uuid: [u8; 16],
    /// Its console output: the PV console ring's, or an HVM guest's COM1.
    console: DomConsole,
    /// The PV console ring (none for an HVM guest).
    console_map: Option<ForeignMap>,
    /// Dom0's end of the console event channel (PV).
    console_port: Option<u32>,
    /// An HVM guest's device model.
    hvm: Option<Box<HvmIo>>,
    started_ns: u64,
    /// The shutdown was seen and acted on (preserved).
    settled: bool,
}

impl Guest {
    fn ring(&self) -> Option<RawRing> {
        let p = self.console_map.as_ref()?.page_ptr(0)?;
        // SAFETY: the console page stays mapped as long as the guest
        // record (console_map) lives; RawRing only does volatile accesses
        // bounded to the page.
        Some(unsafe { RawRing::new(p) })
    }
}

/// Dom0's toolstack. See the module documentation.
pub struct Toolstack {
    ramdisk: Option<Archive<'static>>,
    xs: Xenstored<Dom0Host>,
    /// Boxed: a guest record holds its console backlog (16 KiB), too big
    /// to move around on a 64 KiB stack.
    guests: BTreeMap<u16, Box<Guest>>,
    /// The guest `xl console` shows now.
    attached: Option<u16>,
    dom_exc: Option<u32>,
    uuid_seq: u64,
    /// The block back-end (blkif) and its view of the machine.
    blk: Blkback<MappedRing>,
    back: BackHost,
    /// Dom0's grant table (grant copies need one).
    _grants: Option<pv_guest_lib::grant::GrantTable>,
    /// Dom0's own disks by name (`vda`), shared by the devices served
    /// from them.
    disks: BTreeMap<String, SharedDisk>,
    /// netback, the bridge xenbr0 and Dom0's NIC as its uplink.
    pub(super) net: Net,
    /// Which guest devices use which media.
    sharing: Sharing,
    /// The FAT volumes on Dom0's disks, by mount name (`vda`, `vda1`):
    /// image files on them back guests' disks (`/mnt/vda/guest.img`).
    volumes: BTreeMap<String, (String, fat::Volume)>,
}

/// One of Dom0's disks, shared between the guest devices it backs.
type SharedDisk = alloc::rc::Rc<core::cell::RefCell<Disk>>;

/// Finds the FAT file systems on Dom0's disks: on a whole disk (mounted
/// as `/mnt/vda`) or in its MBR partitions (`/mnt/vda1`).
fn mount_volumes(disks: &BTreeMap<String, SharedDisk>) -> BTreeMap<String, (String, fat::Volume)> {
    let mut found = BTreeMap::new();
    for (name, disk) in disks {
        let mut dev = disk.clone();
        let mut mounts = Vec::new();
        if let Ok(v) = fat::Volume::mount(&mut dev, 0) {
            mounts.push((media::volume_name(name, 0), v));
        } else if let Ok(parts) = fat::partitions(&mut dev) {
            for p in parts.iter().filter(|p| p.may_hold_fs()) {
                if let Ok(v) = fat::Volume::mount_within(&mut dev, p.start, p.sectors) {
                    mounts.push((media::volume_name(name, u32::from(p.number)), v));
                }
            }
        }
        for (mount, v) in mounts {
            pv_guest_lib::println!(
                "Dom0: /mnt/{mount}: {} file system on /dev/{name}, {} MiB",
                v.kind(),
                v.sectors() / 2048
            );
            found.insert(mount, (name.clone(), v));
        }
    }
    found
}

fn fail(what: &str, e: impl fmt::Display) -> XlError {
    XlError::Message(format!("{what}: {e}"))
}

fn xen_err(e: pv_guest_lib::Errno) -> XlError {
    XlError::Xen(e.ret() as i32)
}

fn uuid_string(u: &[u8; 16]) -> String {
    let mut s = String::new();
    for (i, b) in u.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        let _ = write!(s, "{b:02x}");
    }
    s
}

impl Toolstack {
    /// The toolstack over Dom0's ramdisk (config files and kernels).
    /// Dom0's events must be set up (shared_info, callbacks, timer).
    pub fn new(ramdisk: Option<Archive<'static>>) -> Toolstack {
        let mut xs = Xenstored::new(Dom0Host, Quotas::default());
        let _ = xs.init_dom0("Domain-0");
        // Serial input and domain exceptions wake the service loop.
        let _ = events::bind_virq(Virq::Console, 0);
        let dom_exc = events::bind_virq(Virq::DomExc, 0).ok();
        let Hardware { disks, nic } = devices::probe();
        let disks: BTreeMap<String, SharedDisk> = disks
            .into_iter()
            .map(|d| (d.name, alloc::rc::Rc::new(core::cell::RefCell::new(d.disk))))
            .collect();
        let volumes = mount_volumes(&disks);
        Toolstack {
            ramdisk,
            xs,
            guests: BTreeMap::new(),
            attached: None,
            dom_exc,
            uuid_seq: 0,
            blk: Blkback::new(),
            back: BackHost::default(),
            _grants: pv_guest_lib::grant::GrantTable::setup(1, GRANT_TABLE_VA).ok(),
            disks,
            net: Net::new(nic),
            sharing: Sharing::default(),
            volumes,
        }
    }

    /// `lsblk`: Dom0's disks and the guest devices they back.
    pub fn lsblk(&self, out: &mut dyn fmt::Write) {
        let _ = writeln!(out, "NAME   SIZE(MiB) RO PCI      USED BY");
        for (name, d) in &self.disks {
            let d = d.borrow();
            let users = self.sharing.users_of(&format!("/dev/{name}"));
            let _ = writeln!(
                out,
                "{name:<6} {:>9} {:>2} {:<8} {}",
                d.sectors() / 2048,
                u8::from(d.readonly()),
                format!("{}", d.bdf),
                if users.is_empty() {
                    String::from("-")
                } else {
                    users.join(", ")
                }
            );
        }
        for (mount, (_, v)) in &self.volumes {
            let _ = writeln!(
                out,
                "/mnt/{mount}: {} file system, {} MiB, {} clusters of {} bytes",
                v.kind(),
                v.sectors() / 2048,
                v.clusters(),
                v.cluster_bytes()
            );
        }
    }

    /// `ls /mnt/vda[/DIR]`: a directory of a FAT volume on Dom0's disks.
    /// None if `path` is not under [`media::MOUNT_ROOT`].
    pub fn ls_volume(&self, path: &str, out: &mut dyn fmt::Write) -> Option<Result<(), String>> {
        let rest = path.strip_prefix(media::MOUNT_ROOT)?;
        let (mount, dir) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, "/"),
        };
        let Some((disk, vol)) = self.volumes.get(mount) else {
            return Some(Err(format!("{path}: no FAT file system is mounted there")));
        };
        let Some(disk) = self.disks.get(disk) else {
            return Some(Err(format!("{path}: its disk is gone")));
        };
        Some(
            vol.list(&mut disk.clone(), dir)
                .map(|entries| {
                    for e in entries {
                        let kind = if e.is_dir { "d" } else { "-" };
                        let _ = writeln!(out, "{kind} {:>12}  {}", e.size, e.name);
                    }
                })
                .map_err(|e| e.to_string()),
        )
    }

    /// `disk-bench DISK`: Dom0's own sequential write and read and 4 KiB
    /// random reads on one of its disks, the same requests as
    /// `domu-disk mode=bench` makes through blkback, at each depth (the
    /// requests kept in flight) of `DEPTHS` (`BENCH` lines).
    pub fn disk_bench(&mut self, name: &str, out: &mut dyn fmt::Write) -> Result<(), String> {
        const CHUNK: usize = 256 * 1024;
        /// As `domu-disk mode=bench`'s.
        const DEPTHS: [usize; 2] = [1, 8];
        let name = name.trim().trim_start_matches("/dev/");
        let disk = self
            .disks
            .get(name)
            .ok_or_else(|| format!("{name}: no such disk (lsblk lists them)"))?
            .clone();
        let users = self.sharing.users_of(&format!("/dev/{name}"));
        if !users.is_empty() {
            return Err(format!("{name} is in use by {}", users.join(", ")));
        }
        let mut d = disk.borrow_mut();
        if d.readonly() {
            return Err(format!("{name} is read-only"));
        }
        let span = (d.sectors() * 512 / 2).min(32 << 20) / CHUNK as u64 * CHUNK as u64;
        let io = |e| format!("{name}: I/O error ({e:?})");
        for depth in DEPTHS {
            let mut big: Vec<Vec<u8>> = (0..depth).map(|_| alloc::vec![0x5au8; CHUNK]).collect();
            let mut bufs: Vec<&mut [u8]> = big.iter_mut().map(|b| &mut b[..]).collect();
            let mut seq = (0..span).step_by(CHUNK).map(|off| off / 512);
            let t0 = time::now_ns();
            d.stream(true, &mut seq, &mut bufs).map_err(io)?;
            d.flush().map_err(io)?;
            let w = time::now_ns() - t0;
            let mut seq = (0..span).step_by(CHUNK).map(|off| off / 512);
            let t0 = time::now_ns();
            d.stream(false, &mut seq, &mut bufs).map_err(io)?;
            let r = time::now_ns() - t0;
            let mut small: Vec<Vec<u8>> = (0..depth).map(|_| alloc::vec![0u8; 4096]).collect();
            let mut bufs: Vec<&mut [u8]> = small.iter_mut().map(|b| &mut b[..]).collect();
            let pages = (span / 4096).max(1);
            let mut x: u64 = 0x2545_f491_4f6c_dd1d;
            let t0 = time::now_ns();
            let mut rand = core::iter::from_fn(|| {
                (time::now_ns() - t0 < 1_000_000_000).then(|| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x % pages) * 8
                })
            });
            let ios = d.stream(false, &mut rand, &mut bufs).map_err(io)?;
            let iops = ios * 1_000_000_000 / (time::now_ns() - t0).max(1);
            let mb_s = |ns: u64| span * 1000 / ns.max(1);
            let _ = writeln!(
                out,
                "BENCH blk_dom0_seq_write_mb_s {} bytes={span} depth={depth}",
                mb_s(w)
            );
            let _ = writeln!(
                out,
                "BENCH blk_dom0_seq_read_mb_s {} bytes={span} depth={depth}",
                mb_s(r)
            );
            let _ = writeln!(out, "BENCH blk_dom0_rand_read_4k_iops {iops} depth={depth}");
        }
        Ok(())
    }

    /// Number of guests it runs.
    pub fn guests(&self) -> usize {
        self.guests.len()
    }

    /// The value of xenstore node `path`, if it exists (as Dom0 sees it).
    pub fn xenstore_read(&self, path: &str) -> Option<Vec<u8>> {
        self.xs.store().get(path).map(|n| n.value.clone())
    }

    /// Writes xenstore node `path` as Dom0 does (watches fire).
    pub fn xenstore_write(&mut self, path: &str, value: &[u8]) -> Result<(), String> {
        self.xs.write(path, value).map_err(|e| format!("{e:?}"))?;
        self.flush_xs();
        Ok(())
    }

    /// Every path in xenstore now, sorted (for leak checks).
    pub fn xenstore_paths(&self) -> Vec<String> {
        self.xs.store().paths().map(String::from).collect()
    }

    /// What guest `domid` wrote on its console so far, as the console
    /// back-end holds it (its backlog), while Dom0 runs that guest.
    pub fn console_backlog(&self, domid: u16) -> Option<&crate::consoled::Backlog> {
        self.guests.get(&domid).map(|g| g.console.backlog())
    }

    /// One step of the back ends: xenstore requests, console output,
    /// shutdowns, block requests. True if anything happened.
    ///
    /// Block requests are the hot path (one wake-up per guest request):
    /// the vbds' XenBus state machines only run when xenstore saw traffic
    /// or every [`XENBUS_SCAN_NS`], and shutdowns are only looked for on
    /// `VIRQ_DOM_EXC` or xenstore/console activity, not on block traffic.
    pub fn service(&mut self) -> bool {
        // Events from here on wake the next `idle`.
        self.back.seen.set(events::generation());
        let mut progress = false;
        // HVM guests' I/O requests first: each holds a vCPU until it is
        // answered. They do not make the reaper look for shutdowns (that
        // would cost a getdomaininfo per guest per request): a shutdown
        // comes with VIRQ_DOM_EXC.
        let mut hvm_progress = false;
        for (&id, g) in self.guests.iter_mut() {
            if let Some(h) = g.hvm.as_mut() {
                if h.service() > 0 {
                    hvm_progress = true;
                }
                if h.take_shut_down() {
                    progress = true;
                }
                let out = h.take_output();
                if !out.is_empty() {
                    g.console.feed(&out, |_| {});
                    if self.attached == Some(id) {
                        print_tail(&g.console, out.len());
                    }
                }
            }
        }
        // Block requests next: their answers are what a guest waits for.
        let blk_progress = self.blk.service(&mut self.xs, &mut self.back);
        if self.blk.stats_total() != self.back.io_seen {
            self.back.io_seen = self.blk.stats_total();
            self.back.io_at = time::now_ns();
        }
        let r = self.xs.poll_all();
        for n in &r.notify {
            let _ = events::send(n.port);
        }
        progress |= !r.notify.is_empty() || !r.more.is_empty();
        for (&id, g) in self.guests.iter_mut() {
            let Some(mut ring) = g.ring() else { continue };
            let before = g.console.backlog().total();
            let n = g.console.poll(&mut ring, |_| {});
            if n > 0 {
                progress = true;
                if let Some(p) = g.console_port {
                    let _ = events::send(p);
                }
                if self.attached == Some(id) {
                    let added = (g.console.backlog().total() - before) as usize;
                    print_tail(&g.console, added);
                }
            }
        }
        if self.blk.devices().next().is_some() {
            let now = time::now_ns();
            if progress || now >= self.back.xenbus_at {
                self.back.xenbus_at = now.saturating_add(XENBUS_SCAN_NS);
                for (domid, devid) in self.blk.xenbus_changed(&mut self.xs, &mut self.back) {
                    // Unplugged (or its frontend vanished): its nodes and its
                    // claim on the medium go with it, as libxl's device removal.
                    blkback::toolstack::remove_vbd(&mut self.xs, domid, devid);
                    self.sharing.release(domid, devid);
                    progress = true;
                }
                self.flush_xs();
            }
        }
        if self.net.service(&mut self.xs) {
            progress = true;
            self.flush_xs();
        }
        let exc = self.dom_exc.is_some_and(events::take_fired);
        if exc || progress {
            progress |= self.reap();
        }
        progress || blk_progress || hvm_progress
    }

    /// Pushes out what Dom0's own xenstore writes caused (watch events)
    /// and kicks the guests that got some: without the kick a guest
    /// sleeping on its store ring would never see them.
    fn flush_xs(&mut self) {
        for n in self.xs.flush_output().notify {
            let _ = events::send(n.port);
        }
    }

    /// Runs the back ends ([`Toolstack::service`], idling when there is
    /// nothing to do) until `done` says so or `ns` have passed; false on
    /// the timeout. For Dom0 programs that drive the toolstack directly.
    pub fn serve_until(&mut self, ns: u64, mut done: impl FnMut(&mut Toolstack) -> bool) -> bool {
        let end = time::now_ns().saturating_add(ns);
        loop {
            let progress = self.service();
            if done(self) {
                return true;
            }
            if time::now_ns() > end {
                return false;
            }
            if !progress {
                self.idle();
            }
        }
    }

    /// Sleeps until an event or a short while, if `idle`.
    pub fn idle(&self) {
        // No later than Dom0's IP stack's next timer (net.rs).
        let end = time::now_ns()
            .saturating_add(IDLE_NS)
            .min(self.net.wake_at().unwrap_or(u64::MAX));
        // Not sampled here: an event that came while `service` ran (after
        // it looked) must not be slept through.
        let gen = self.back.seen.get();
        // While guests do block I/O, poll a little before halting (as
        // cpuidle-haltpoll): their next request often comes within it.
        if time::now_ns().saturating_sub(self.back.io_at) < IO_ACTIVE_NS {
            let spin_end = time::now_ns().saturating_add(IO_POLL_NS);
            while events::generation() == gen && time::now_ns() < spin_end {
                core::hint::spin_loop();
            }
        }
        time::block_until(end, || events::generation() != gen);
    }

    /// Acts on guests that shut down; true if one was.
    fn reap(&mut self) -> bool {
        let mut acted = false;
        let ids: Vec<u16> = self.guests.keys().copied().collect();
        for id in ids {
            let info = match xc::domain_info(id) {
                Ok(i) => i,
                Err(_) => {
                    // Gone behind our back: forget it.
                    self.forget(id);
                    acted = true;
                    continue;
                }
            };
            let attached = self.attached == Some(id);
            let Some(g) = self.guests.get_mut(&id) else {
                continue;
            };
            if !info.is_shutdown() || g.settled {
                continue;
            }
            let reason = info.shutdown_reason();
            // The last of its console output, before it goes: what it
            // wrote after this pass read its ring, just before it shut
            // down ("reboot: System halted").
            if let Some(mut ring) = g.ring() {
                let before = g.console.backlog().total();
                if g.console.poll(&mut ring, |_| {}) > 0 && attached {
                    print_tail(&g.console, (g.console.backlog().total() - before) as usize);
                }
            }
            let Some(g) = self.guests.get(&id) else {
                continue;
            };
            acted = true;
            match lifecycle::next(&g.cfg, reason) {
                Next::Destroy => {
                    let _ = self.destroy_guest(id);
                }
                Next::Restart | Next::RenameRestart => {
                    let Some(g) = self.guests.get(&id) else {
                        continue;
                    };
                    let source = Source {
                        file: g.source.file.clone(),
                        text: g.source.text.clone(),
                        overrides: g.source.overrides.clone(),
                    };
                    let _ = self.destroy_guest(id);
                    if let Err(e) = self.start_from(source, false) {
                        log::error!("restarting d{id}: {e}");
                    }
                }
                Next::Preserve => {
                    if let Some(g) = self.guests.get_mut(&id) {
                        g.settled = true;
                    }
                }
                Next::Ignore => {
                    if let Some(g) = self.guests.get_mut(&id) {
                        g.settled = true;
                    }
                }
            }
        }
        acted
    }

    /// Drops Dom0's side of a guest (mappings, ports, xenstore).
    fn forget(&mut self, domid: u16) {
        self.net.forget(&mut self.xs, domid);
        self.blk.remove_domain(&mut self.back, domid);
        self.sharing.release_domain(domid);
        for devid in blkback::toolstack::list_vbds(&mut self.xs, domid) {
            blkback::toolstack::remove_vbd(&mut self.xs, domid, devid);
        }
        if let Some(g) = self.guests.remove(&domid) {
            let _ = self.xs.release(domid);
            let _ = self.xs.destroy_domain_dirs(domid, &uuid_string(&g.uuid));
            if let Some(p) = g.console_port {
                let _ = events::close(p);
            }
            // An HVM guest's device model unbinds its ports and unmaps
            // its ioreq page here.
            drop(g);
        }
        if self.attached == Some(domid) {
            self.attached = None;
        }
    }

    fn destroy_guest(&mut self, domid: u16) -> XlResult<()> {
        self.forget(domid);
        xc::destroy(domid).map_err(xen_err)
    }

    fn file(&self, path: &str) -> Option<&'static [u8]> {
        let a = self.ramdisk?;
        let e = a.find(path)?;
        (e.kind() == Kind::File).then_some(e.data)
    }

    /// Finds a config file as xl does: as given, else in /etc/xen.
    fn config(&self, path: &str) -> XlResult<(String, &'static [u8])> {
        if let Some(d) = self.file(path) {
            return Ok((path.to_string(), d));
        }
        if !path.contains('/') {
            let p = format!("{XEN_CONFIG_DIR}/{path}");
            if let Some(d) = self.file(&p) {
                return Ok((p, d));
            }
        }
        Err(XlError::Message(format!(
            "Failed to read config file: {path}: No such file or directory"
        )))
    }

    fn start_from(&mut self, src: Source, paused: bool) -> XlResult<u32> {
        let ov: Vec<&str> = src.overrides.iter().map(String::as_str).collect();
        let (cfg, _) =
            xlcfg::load(&src.file, &src.text, &ov).map_err(|e| XlError::Message(e.to_string()))?;
        self.start(cfg, src, paused)
    }

    fn start(&mut self, cfg: DomainConfig, source: Source, paused: bool) -> XlResult<u32> {
        if self.guests.values().any(|g| g.name == cfg.name) || cfg.name == "Domain-0" {
            return Err(XlError::Message(format!(
                "Domain with name {} already exists.",
                cfg.name
            )));
        }
        match cfg.domain_type {
            DomainType::Pv => {}
            DomainType::Hvm | DomainType::Pvh => return self.start_hvm(cfg, source, paused),
        }
        let kpath = cfg.kernel.clone().unwrap_or_default();
        let kernel = self.file(&kpath).ok_or_else(|| {
            XlError::Message(format!(
                "failed to read kernel {kpath}: No such file or directory"
            ))
        })?;
        let ramdisk: &[u8] = match &cfg.ramdisk {
            Some(p) => self.file(p).ok_or_else(|| {
                XlError::Message(format!(
                    "failed to read ramdisk {p}: No such file or directory"
                ))
            })?,
            None => &[],
        };
        let cmdline = cfg.cmdline.clone().unwrap_or_default();
        let built = builder::build(&GuestConfig {
            kernel,
            ramdisk,
            memory_mib: cfg.memory_mib,
            cmdline: cmdline.as_bytes(),
            vcpus: cfg.max_vcpus.max(1),
        })
        .map_err(|e| fail(&format!("building domain {}", cfg.name), e))?;
        let domid = built.domid;
        match self.finish_start(&cfg, &built, paused) {
            Ok((uuid, console_map, console_port)) => {
                let name = cfg.name.clone();
                self.guests.insert(
                    domid,
                    Box::new(Guest {
                        name,
                        cfg,
                        source,
                        uuid,
                        console: DomConsole::new(domid),
                        console_map: Some(console_map),
                        console_port: Some(console_port),
                        hvm: None,
                        started_ns: time::now_ns(),
                        settled: false,
                    }),
                );
                Ok(u32::from(domid))
            }
            Err(e) => {
                self.net.forget(&mut self.xs, domid);
                let _ = self.xs.release(domid);
                let _ = xc::destroy(domid);
                Err(e)
            }
        }
    }

    /// Credit weight and cap, vCPU affinity, from xl.cfg.
    fn scheduling(domid: u16, cfg: &DomainConfig) -> XlResult<()> {
        if cfg.cpu_weight.is_some() || cfg.cap.is_some() {
            let w = cfg.cpu_weight.unwrap_or(0).min(65535) as u16;
            let c = cfg.cap.map_or(0xffff, |c| c.min(65534) as u16);
            xc::sched_credit_set(domid, w, c).map_err(xen_err)?;
        }
        if let Some(aff) = &cfg.cpus {
            let nr = xc::physinfo().map_or(1, |p| p.nr_cpus);
            for v in 0..cfg.max_vcpus.max(1) {
                let set = match aff {
                    VcpuAffinity::All(s) => Some(s),
                    VcpuAffinity::PerVcpu(l) => l.get(v as usize),
                };
                if let Some(s) = set {
                    let mut bits = [0u8; 8];
                    for cpu in (0..nr.min(64)).filter(|&c| s.contains(c)) {
                        bits[(cpu / 8) as usize] |= 1 << (cpu % 8);
                    }
                    xc::set_vcpu_affinity(domid, v, &bits).map_err(xen_err)?;
                }
            }
        }
        Ok(())
    }

    /// `cpuid=`: the domain's default CPUID policy (`get_cpu_policy`) with
    /// the config's changes, set with `set_cpu_policy` before the domain
    /// first runs (libxl's `libxl__cpuid_legacy`). A feature the default
    /// lacks asked for as `=1` is refused here, naming it.
    fn apply_cpuid(domid: u16, cfg: &DomainConfig) -> XlResult<()> {
        let Some(delta) = cfg.cpuid.as_ref().filter(|d| !d.is_empty()) else {
            return Ok(());
        };
        let what = format!("building domain {}: cpuid", cfg.name);
        let mut leaves = xc::get_cpu_policy(domid)
            .map_err(|e| fail(&what, format_args!("XEN_DOMCTL_get_cpu_policy: {e}")))?;
        let mut policy: Vec<(u32, u32, [u32; 4])> = leaves
            .iter()
            .map(|l| (l.leaf, l.subleaf, [l.a, l.b, l.c, l.d]))
            .collect();
        delta.apply(&mut policy).map_err(|e| fail(&what, e))?;
        for (l, (_, _, r)) in leaves.iter_mut().zip(&policy) {
            [l.a, l.b, l.c, l.d] = *r;
        }
        xc::set_cpu_policy(domid, &leaves).map_err(|e| {
            let at = if e.leaf == u32::MAX {
                String::new()
            } else if e.subleaf == u32::MAX {
                format!(" (leaf {:#010x})", e.leaf)
            } else {
                format!(" (leaf {:#010x} subleaf {})", e.leaf, e.subleaf)
            };
            fail(
                &what,
                format_args!(
                    "Xen refused the policy: XEN_DOMCTL_set_cpu_policy: {}{at}",
                    e.errno
                ),
            )
        })
    }

    /// After the build: limits, scheduling, console, xenstore, unpause.
    fn finish_start(
        &mut self,
        cfg: &DomainConfig,
        b: &Built,
        paused: bool,
    ) -> XlResult<([u8; 16], ForeignMap, u32)> {
        let domid = b.domid;
        if cfg.maxmem_mib > cfg.memory_mib {
            xc::set_max_mem(domid, cfg.maxmem_mib * 1024).map_err(xen_err)?;
        }
        Self::scheduling(domid, cfg)?;
        Self::apply_cpuid(domid, cfg)?;
        let uuid = cfg.uuid.unwrap_or_else(|| self.new_uuid(domid));
        let console_map = ForeignMap::new(domid, &[b.console_mfn]).map_err(xen_err)?;
        let console_port = events::bind_interdomain(domid, b.console_port).map_err(xen_err)?;
        let uuid_s = uuid_string(&uuid);
        let xs = self.xs.create_domain(&XsDomain {
            domid,
            name: &cfg.name,
            uuid: &uuid_s,
            vcpus: cfg.vcpus,
            max_vcpus: cfg.max_vcpus,
            target_kb: cfg.memory_mib * 1024,
            max_kb: cfg.maxmem_mib.max(cfg.memory_mib) * 1024,
            store_mfn: b.store_mfn,
            store_port: b.store_port,
            console: Some(ConsoleInfo {
                ring_ref: b.console_mfn,
                port: b.console_port,
                backend_domid: 0,
            }),
        });
        if let Err(e) = xs {
            let _ = events::close(console_port);
            return Err(fail("xenstore", format_args!("{e:?}")));
        }
        for d in &cfg.disk {
            if let Err(e) = self.add_disk(domid, d) {
                let _ = events::close(console_port);
                return Err(e);
            }
        }
        for v in &cfg.vif {
            if let Err(e) = self.net.add_vif(&mut self.xs, domid, v) {
                let _ = events::close(console_port);
                return Err(XlError::Message(e));
            }
        }
        if !paused {
            if let Err(e) = xc::unpause(domid) {
                let _ = events::close(console_port);
                return Err(xen_err(e));
            }
        }
        Ok((uuid, console_map, console_port))
    }

    /// `xl create` of a `type = "hvm"` guest (a Multiboot2 kernel booted
    /// directly, its COM1 served by Dom0's device model ([`HvmIo`]) into
    /// the guest's console backlog) or of a `type = "pvh"` guest (an ELF
    /// kernel with `PHYS32_ENTRY`, xenstore and the PV console as for a
    /// PV guest, no device model); see [`builder::hvm`]. Everything the
    /// config or the kernel can get wrong is refused before a domain
    /// exists; after that, a failure destroys the domain again.
    fn start_hvm(&mut self, cfg: DomainConfig, source: Source, paused: bool) -> XlResult<u32> {
        let name = cfg.name.clone();
        let pvh = cfg.domain_type == DomainType::Pvh;
        let refuse = |why: String| XlError::Message(format!("building domain {name}: {why}"));
        let Some(kpath) = cfg.kernel.clone() else {
            return Err(refuse(format!(
                "type=\"{}\" needs kernel= (a {}): Oxen has no HVM firmware to boot a disk",
                cfg.domain_type.as_str(),
                if pvh {
                    "PVH kernel"
                } else {
                    "Multiboot2 kernel or a Linux bzImage"
                }
            )));
        };
        if !pvh && (!cfg.disk.is_empty() || !cfg.vif.is_empty()) {
            return Err(refuse(String::from(
                "type=\"hvm\" guests get no disk= or vif= yet (Dom0 emulates COM1 and a PCI host bridge only)",
            )));
        }
        let kernel = self.file(&kpath).ok_or_else(|| {
            XlError::Message(format!(
                "failed to read kernel {kpath}: No such file or directory"
            ))
        })?;
        let ramdisk: &[u8] = match &cfg.ramdisk {
            Some(p) => self.file(p).ok_or_else(|| {
                XlError::Message(format!(
                    "failed to read ramdisk {p}: No such file or directory"
                ))
            })?,
            None => &[],
        };
        let modules: Vec<&[u8]> = if ramdisk.is_empty() {
            Vec::new()
        } else {
            alloc::vec![ramdisk]
        };
        let lens: Vec<u64> = modules.iter().map(|m| m.len() as u64).collect();
        // Read in place from the ramdisk (the parsers copy every header
        // out, so a cpio member's 4-byte alignment is enough): a 14 MiB
        // bzImage would not fit in Dom0's heap a second time.
        let image = kernel;
        let cmdline = cfg.cmdline.clone().unwrap_or_default();
        let vcpus = cfg.max_vcpus.max(1);
        let plan = if pvh {
            builder::hvm::plan_pvh(
                image,
                cfg.memory_mib,
                vcpus,
                cmdline.as_bytes(),
                ramdisk.len() as u64,
            )
        } else {
            builder::hvm::plan_hvm(image, cfg.memory_mib, vcpus, cmdline.as_bytes(), &lens)
        }
        .map_err(|e| refuse(format!("{kpath}: {e}")))?;
        let built =
            builder::hvm::build(&plan, &modules, [0; 16]).map_err(|e| refuse(e.to_string()))?;
        drop(plan);
        let domid = built.domid;
        if let Some(r) = built.rings {
            return self.start_pvh(cfg, source, paused, domid, built.nr_pages, r);
        }
        let Some(ioreq) = built.ioreq else {
            let _ = xc::destroy(domid);
            return Err(refuse(String::from("no ioreq page")));
        };
        let uuid = cfg.uuid.unwrap_or_else(|| self.new_uuid(domid));
        let uuid_s = uuid_string(&uuid);
        let io = Box::new(HvmIo::new(domid, ioreq, built.vcpus));
        match self.finish_start_hvm(&cfg, domid, &uuid_s, paused) {
            Ok(()) => {
                self.guests.insert(
                    domid,
                    Box::new(Guest {
                        name,
                        cfg,
                        source,
                        uuid,
                        console: DomConsole::new(domid),
                        console_map: None,
                        console_port: None,
                        hvm: Some(io),
                        started_ns: time::now_ns(),
                        settled: false,
                    }),
                );
                Ok(u32::from(domid))
            }
            Err(e) => {
                drop(io);
                let _ = self.xs.destroy_domain_dirs(domid, &uuid_s);
                let _ = xc::destroy(domid);
                Err(e)
            }
        }
    }

    /// A built PVH guest: from here on as a PV guest (console ring and
    /// xenstore at its special pages, disks, vifs, unpause).
    fn start_pvh(
        &mut self,
        cfg: DomainConfig,
        source: Source,
        paused: bool,
        domid: u16,
        nr_pages: u64,
        r: builder::hvm::PvhRings,
    ) -> XlResult<u32> {
        let b = Built {
            domid,
            nr_pages,
            console_mfn: r.console_gfn,
            console_port: r.console_port,
            store_mfn: r.store_gfn,
            store_port: r.store_port,
            l4_mfn: 0,
            entry: 0,
            shared_info_frame: 0,
        };
        match self.finish_start(&cfg, &b, paused) {
            Ok((uuid, console_map, console_port)) => {
                let name = cfg.name.clone();
                self.guests.insert(
                    domid,
                    Box::new(Guest {
                        name,
                        cfg,
                        source,
                        uuid,
                        console: DomConsole::new(domid),
                        console_map: Some(console_map),
                        console_port: Some(console_port),
                        hvm: None,
                        started_ns: time::now_ns(),
                        settled: false,
                    }),
                );
                Ok(u32::from(domid))
            }
            Err(e) => {
                self.net.forget(&mut self.xs, domid);
                let _ = self.xs.release(domid);
                let _ = xc::destroy(domid);
                Err(e)
            }
        }
    }

    /// An HVM guest after the build: limits, scheduling, xenstore (no
    /// rings: the guest is not Xen-aware), unpause.
    fn finish_start_hvm(
        &mut self,
        cfg: &DomainConfig,
        domid: u16,
        uuid_s: &str,
        paused: bool,
    ) -> XlResult<()> {
        if cfg.maxmem_mib > cfg.memory_mib {
            // The ioreq page and libxl's slack are counted as well.
            xc::set_max_mem(
                domid,
                cfg.maxmem_mib * 1024 + 4 + builder::hvm::MAXMEM_SLACK_KIB,
            )
            .map_err(xen_err)?;
        }
        Self::scheduling(domid, cfg)?;
        Self::apply_cpuid(domid, cfg)?;
        self.xs
            .create_domain_dirs(&XsDomain {
                domid,
                name: &cfg.name,
                uuid: uuid_s,
                vcpus: cfg.vcpus,
                max_vcpus: cfg.max_vcpus,
                target_kb: cfg.memory_mib * 1024,
                max_kb: cfg.maxmem_mib.max(cfg.memory_mib) * 1024,
                store_mfn: 0,
                store_port: 0,
                console: None,
            })
            .map_err(|e| fail("xenstore", format_args!("{e:?}")))?;
        self.flush_xs();
        if !paused {
            xc::unpause(domid).map_err(|e| {
                XlError::Message(format!(
                    "building domain {}: {}",
                    cfg.name,
                    builder::hvm::HvmError::NoHvmVcpus(e)
                ))
            })?;
        }
        Ok(())
    }

    /// A disk from xl.cfg (see [`Medium`]): one of Dom0's disks, or a raw
    /// image file in Dom0's ramdisk, served from memory (changes last as
    /// long as the guest: the ramdisk is read-only).
    fn add_disk(&mut self, domid: u16, d: &crate::xlcfg::DiskSpec) -> XlResult<()> {
        let path = d.medium().ok_or_else(|| {
            XlError::Message(format!(
                "disk {}: no medium (CD-ROMs are not supported)",
                d.vdev
            ))
        })?;
        use crate::xlcfg::DiskFormat;
        let qcow2 = match d.format {
            DiskFormat::Raw => false,
            DiskFormat::Qcow2 => true,
            f => {
                return Err(XlError::Message(format!(
                "disk {}: {path}: format {} is not supported (Oxen serves raw and qcow2 images)",
                d.vdev,
                f.as_str()
            )))
            }
        };
        let store = self.open_medium(d, path, qcow2)?;
        self.sharing
            .claim(domid, d.devid, path, d.readwrite)
            .map_err(|e| XlError::Message(format!("disk {}: {e}", d.vdev)))?;
        if let Err(e) = blkback::toolstack::add_vbd(
            &mut self.xs,
            &blkback::toolstack::VbdSpec::from_disk(domid, d),
        ) {
            self.sharing.release(domid, d.devid);
            return Err(fail("xenstore", format_args!("{e:?}")));
        }
        self.blk
            .add(&mut self.xs, &mut self.back, domid, d.devid, store);
        Ok(())
    }

    /// The backing store for `path`: the medium, read through the qcow2
    /// format if `qcow2` (only files may be qcow2).
    fn open_medium(
        &mut self,
        d: &crate::xlcfg::DiskSpec,
        path: &str,
        qcow2: bool,
    ) -> XlResult<Box<dyn blkback::store::BlockStore>> {
        let medium = Medium::parse(path);
        if qcow2 && matches!(medium, Medium::Disk(_) | Medium::Partition(..)) {
            return Err(XlError::Message(format!(
                "disk {}: {path}: a qcow2 image must be a file (on /mnt/... or in the ramdisk)",
                d.vdev
            )));
        }
        let store = self.open_raw_medium(d, path, medium, qcow2)?;
        if !qcow2 {
            return Ok(store);
        }
        crate::qcow2::Qcow2::open(store)
            .map(|q| Box::new(q) as Box<dyn blkback::store::BlockStore>)
            .map_err(|e| XlError::Message(format!("disk {}: {path}: {e}", d.vdev)))
    }

    /// The medium's bytes as they are. (A qcow2 file in the ramdisk may
    /// end mid-sector: it is padded.)
    fn open_raw_medium(
        &mut self,
        d: &crate::xlcfg::DiskSpec,
        path: &str,
        medium: Medium<'_>,
        qcow2: bool,
    ) -> XlResult<Box<dyn blkback::store::BlockStore>> {
        let missing = || {
            XlError::Message(format!(
                "disk {}: {path}: No such file or directory",
                d.vdev
            ))
        };
        match medium {
            Medium::Disk(name) => {
                let disk = self.disks.get(name).ok_or_else(missing)?;
                if d.readwrite && disk.borrow().readonly() {
                    return Err(XlError::Message(format!(
                        "disk {}: {path} is read-only: use mode r",
                        d.vdev
                    )));
                }
                Ok(Box::new(disk.clone()))
            }
            Medium::Partition(name, n) => {
                let disk = self.disks.get(name).ok_or_else(missing)?;
                let part = fat::partitions(&mut disk.clone())
                    .ok()
                    .and_then(|ps| ps.into_iter().find(|p| u32::from(p.number) == n))
                    .ok_or_else(missing)?;
                let ro = disk.borrow().readonly();
                if d.readwrite && ro {
                    return Err(XlError::Message(format!(
                        "disk {}: {path} is read-only: use mode r",
                        d.vdev
                    )));
                }
                let slice = blkback::store::Slice::new(disk.clone(), part.start, part.sectors)
                    .ok_or_else(|| {
                        XlError::Message(format!(
                            "disk {}: {path}: the partition table entry does not fit the disk",
                            d.vdev
                        ))
                    })?;
                Ok(Box::new(slice))
            }
            Medium::File {
                disk: name,
                partition,
                path: inner,
            } => {
                let vol_name = media::volume_name(name, partition);
                let (_, vol) = self.volumes.get(&vol_name).ok_or_else(|| {
                    XlError::Message(format!(
                        "disk {}: {path}: no FAT file system is mounted at /mnt/{vol_name} (lsblk lists them)",
                        d.vdev
                    ))
                })?;
                let disk = self.disks.get(name).ok_or_else(missing)?;
                if d.readwrite && disk.borrow().readonly() {
                    return Err(XlError::Message(format!(
                        "disk {}: {path} is on a read-only disk: use mode r",
                        d.vdev
                    )));
                }
                let file = vol
                    .open(&mut disk.clone(), inner)
                    .and_then(|ext| fat::FileStore::new(disk.clone(), ext))
                    .map_err(|e| XlError::Message(format!("disk {}: {path}: {e}", d.vdev)))?;
                Ok(Box::new(file))
            }
            Medium::Ramdisk(file) => {
                let data = self.file(file).ok_or_else(missing)?;
                if data.is_empty() || (data.len() % 512 != 0 && !qcow2) {
                    return Err(XlError::Message(format!(
                        "disk {}: {path}: size {} is not a whole number of 512-byte sectors",
                        d.vdev,
                        data.len()
                    )));
                }
                let mut disk = blkback::store::MemDisk::new(data.len().div_ceil(512) as u64);
                use blkback::store::BlockStore as _;
                disk.write(0, data).map_err(|_| {
                    XlError::Message(format!("disk {}: cannot load {path}", d.vdev))
                })?;
                Ok(Box::new(disk))
            }
        }
    }

    fn new_uuid(&mut self, domid: u16) -> [u8; 16] {
        self.uuid_seq += 1;
        let t = time::now_ns();
        let mut u = [0u8; 16];
        u[..8].copy_from_slice(&t.to_le_bytes());
        u[8..10].copy_from_slice(&domid.to_le_bytes());
        u[10..16].copy_from_slice(&self.uuid_seq.to_le_bytes()[..6]);
        // RFC 4122 version 4 / variant bits, as libxl_uuid_generate.
        u[6] = (u[6] & 0x0f) | 0x40;
        u[8] = (u[8] & 0x3f) | 0x80;
        u
    }

    fn exists(&self, domid: u32) -> XlResult<u16> {
        let id = u16::try_from(domid).map_err(|_| XlError::NoSuchDomain)?;
        xc::domain_info(id).map_err(|_| XlError::NoSuchDomain)?;
        Ok(id)
    }

    fn dom_path(domid: u16, rel: &str) -> String {
        format!("/local/domain/{domid}/{rel}")
    }

    fn request_shutdown(&mut self, domid: u32, what: &str) -> XlResult<()> {
        let id = self.exists(domid)?;
        if id == 0 {
            return Err(XlError::Message(
                "Dom0 is shut down from its own shell (poweroff)".to_string(),
            ));
        }
        self.xs
            .write(&Self::dom_path(id, "control/shutdown"), what.as_bytes())
            .map_err(|e| fail("xenstore write", format_args!("{e:?}")))?;
        self.flush_xs();
        Ok(())
    }
}

/// Prints the last `n` bytes of a console backlog (what just arrived).
fn print_tail(c: &DomConsole, n: usize) {
    let (a, b) = c.backlog().as_slices();
    let total = a.len() + b.len();
    let skip = total.saturating_sub(n);
    let (a, b) = if skip >= a.len() {
        (&[][..], &b[skip - a.len()..])
    } else {
        (&a[skip..], b)
    };
    console::write_bytes(a);
    console::write_bytes(b);
}

impl crate::xl::XlBackend for Toolstack {
    fn list_domains(&mut self) -> XlResult<Vec<DomainInfo>> {
        let mut out = Vec::new();
        let mut first = 0u16;
        loop {
            let mut buf = [xc::DomainInfo::default(); 8];
            let n = xc::domain_list(first, &mut buf).map_err(xen_err)?;
            for i in &buf[..n] {
                let name = if i.domid == 0 {
                    String::from("Domain-0")
                } else if let Some(g) = self.guests.get(&i.domid) {
                    g.name.clone()
                } else {
                    self.xs
                        .read(&Self::dom_path(i.domid, "name"))
                        .ok()
                        .and_then(|v| String::from_utf8(v).ok())
                        .unwrap_or_default()
                };
                let uuid = self.guests.get(&i.domid).map_or([0; 16], |g| g.uuid);
                out.push(DomainInfo {
                    domid: u32::from(i.domid),
                    name,
                    uuid,
                    current_memkb: i.tot_pages * 4,
                    max_memkb: i.max_pages * 4,
                    vcpu_count: i.max_vcpu_id + 1,
                    vcpu_online: i.nr_online_vcpus,
                    running: i.flags & hypercall_abi::domctl::XEN_DOMINF_RUNNING != 0,
                    blocked: i.flags & hypercall_abi::domctl::XEN_DOMINF_BLOCKED != 0,
                    paused: i.is_paused(),
                    shutdown: i.is_shutdown(),
                    shutdown_reason: i.shutdown_reason() as u8,
                    dying: i.is_dying(),
                    cpu_time_ns: i.cpu_time,
                    ..DomainInfo::default()
                });
            }
            if n < buf.len() {
                break;
            }
            first = buf[n - 1].domid + 1;
        }
        Ok(out)
    }

    fn domain_config(&mut self, domid: u32) -> XlResult<XlDomainConfig> {
        let id = self.exists(domid)?;
        let g = self.guests.get(&id).ok_or(XlError::NotImplemented)?;
        let c = &g.cfg;
        Ok(XlDomainConfig {
            guest_type: String::from(c.domain_type.as_str()),
            name: c.name.clone(),
            uuid: g.uuid,
            max_vcpus: c.max_vcpus,
            avail_vcpus: (0..c.vcpus).collect(),
            max_memkb: c.maxmem_mib * 1024,
            target_memkb: c.memory_mib * 1024,
            weight: c.cpu_weight,
            cap: c.cap,
            kernel: c.kernel.clone(),
            ramdisk: c.ramdisk.clone(),
            cmdline: c.cmdline.clone(),
            disks: c.disk.iter().map(Into::into).collect(),
            nics: self.net.configs(&mut self.xs, id),
            on_poweroff: String::from(c.on_poweroff.as_str()),
            on_reboot: String::from(c.on_reboot.as_str()),
            on_crash: String::from(c.on_crash.as_str()),
        })
    }

    fn physinfo(&mut self) -> XlResult<PhysInfo> {
        let p = xc::physinfo().map_err(xen_err)?;
        Ok(PhysInfo {
            nr_cpus: p.nr_cpus,
            max_cpu_id: p.nr_cpus.saturating_sub(1),
            nr_nodes: 1,
            cores_per_socket: p.nr_cpus,
            threads_per_core: 1,
            cpu_khz: p.cpu_khz,
            caps: VirtCaps::from_physcap(p.capabilities),
            total_pages: p.total_pages,
            free_pages: p.free_pages,
            ..PhysInfo::default()
        })
    }

    fn version_info(&mut self) -> XlResult<VersionInfo> {
        let v = xen::version().map_err(xen_err)?;
        let s = |b: &[u8]| String::from(c_str(b));
        Ok(VersionInfo {
            major: v.0 >> 16,
            minor: v.0 & 0xffff,
            extra: xen::extraversion().map(|x| s(&x.bytes)).unwrap_or_default(),
            capabilities: xen::capabilities().map(|x| s(&x.bytes)).unwrap_or_default(),
            scheduler: String::from("credit"),
            pagesize: 4096,
            virt_start: xen::platform_parameters().map_or(0, |p| p.virt_start),
            changeset: xen::changeset().map(|x| s(&x.bytes)).unwrap_or_default(),
            commandline: xen::commandline().map(|x| s(&x.bytes)).unwrap_or_default(),
            compiler: xen::compile_info()
                .map(|c| s(&c.compiler))
                .unwrap_or_default(),
            compile_by: xen::compile_info()
                .map(|c| s(&c.compile_by))
                .unwrap_or_default(),
            compile_domain: xen::compile_info()
                .map(|c| s(&c.compile_domain))
                .unwrap_or_default(),
            compile_date: xen::compile_info()
                .map(|c| s(&c.compile_date))
                .unwrap_or_default(),
            build_id: String::new(),
        })
    }

    fn uname(&mut self) -> XlResult<Uname> {
        Ok(Uname {
            host: String::from("oxen"),
            release: String::from(env!("CARGO_PKG_VERSION")),
            version: String::from("Oxen Dom0 (pv-guest-lib)"),
            machine: String::from("x86_64"),
        })
    }

    fn create(&mut self, req: &CreateRequest, out: &mut dyn fmt::Write) -> XlResult<Option<u32>> {
        let path = req
            .config_file
            .as_deref()
            .ok_or_else(|| XlError::Message(String::from("Config file not specified")))?;
        let (file, text) = self.config(path)?;
        let text = String::from(
            core::str::from_utf8(text)
                .map_err(|_| XlError::Message(format!("{file}: not a text file")))?,
        );
        let ov: Vec<&str> = req.extra_config.iter().map(String::as_str).collect();
        let (cfg, warnings) =
            xlcfg::load(&file, &text, &ov).map_err(|e| XlError::Message(e.to_string()))?;
        if !req.quiet {
            for w in &warnings {
                let _ = writeln!(out, "{w}");
            }
        }
        if req.dry_run {
            let _ = writeln!(
                out,
                "{}: name \"{}\", type {}, memory {} MiB (max {}), {} vCPUs (max {}), kernel {}",
                file,
                cfg.name,
                cfg.domain_type.as_str(),
                cfg.memory_mib,
                cfg.maxmem_mib,
                cfg.vcpus,
                cfg.max_vcpus,
                cfg.kernel.as_deref().unwrap_or("(none)")
            );
            return Ok(None);
        }
        let source = Source {
            file,
            text,
            overrides: req.extra_config.clone(),
        };
        self.start(cfg, source, req.paused).map(Some)
    }

    fn destroy(&mut self, domid: u32) -> XlResult<()> {
        let id = self.exists(domid)?;
        if id == 0 {
            return Err(XlError::Message(String::from("Cannot destroy Domain-0")));
        }
        self.destroy_guest(id)
    }

    fn save(
        &mut self,
        domid: u32,
        file: &str,
        config: Option<&str>,
        after: crate::xl::backend::AfterSave,
        out: &mut dyn fmt::Write,
    ) -> XlResult<()> {
        self.save_domain(domid, file, config, after, out)
    }

    fn migrate(
        &mut self,
        domid: u32,
        target: &str,
        config: Option<&str>,
        paused: bool,
        out: &mut dyn fmt::Write,
    ) -> XlResult<()> {
        self.migrate_domain(domid, target, config, paused, out)
    }

    fn migrate_receive(&mut self, paused: bool, out: &mut dyn fmt::Write) -> XlResult<u32> {
        self.migrate_receive_domain(paused, out)
    }

    fn restore(
        &mut self,
        file: &str,
        config: Option<&str>,
        paused: bool,
        out: &mut dyn fmt::Write,
    ) -> XlResult<u32> {
        self.restore_domain(file, config, paused, out)
    }

    fn shutdown(&mut self, domid: u32) -> XlResult<()> {
        self.request_shutdown(domid, "poweroff")
    }

    fn reboot(&mut self, domid: u32) -> XlResult<()> {
        self.request_shutdown(domid, "reboot")
    }

    fn wait_for_domain(&mut self, domid: u32) -> XlResult<DomainGone> {
        let id = u16::try_from(domid).map_err(|_| XlError::NoSuchDomain)?;
        loop {
            let progress = self.service();
            match xc::domain_info(id) {
                Err(_) => return Ok(DomainGone::Destroyed),
                Ok(i) if i.is_shutdown() && self.guests.get(&id).is_none_or(|g| g.settled) => {
                    return Ok(DomainGone::Shutdown(i.shutdown_reason() as u8))
                }
                Ok(_) => {}
            }
            if !progress {
                self.idle();
            }
        }
    }

    fn pause(&mut self, domid: u32) -> XlResult<()> {
        let id = self.exists(domid)?;
        xc::pause(id).map_err(xen_err)
    }

    fn unpause(&mut self, domid: u32) -> XlResult<()> {
        let id = self.exists(domid)?;
        xc::unpause(id).map_err(xen_err)
    }

    fn console(&mut self, domid: u32, kind: ConsoleType, _num: u32) -> XlResult<()> {
        let id = self.exists(domid)?;
        if !matches!(kind, ConsoleType::Primary | ConsoleType::Pv) {
            return Err(XlError::NotImplemented);
        }
        let Some(g) = self.guests.get(&id) else {
            return Err(XlError::Message(format!(
                "Domain {domid} has no console Oxen serves"
            )));
        };
        // The backlog first, then live output until Ctrl-] or the end.
        let (a, b) = g.console.backlog().as_slices();
        console::write_bytes(a);
        console::write_bytes(b);
        self.attached = Some(id);
        loop {
            // Byte by byte: whatever follows Ctrl-] is the shell's (typed
            // ahead), so nothing past it may be taken from the console.
            let mut buf = [0u8; 1];
            let n = console::try_read(&mut buf).unwrap_or(0);
            if n > 0 {
                let (fwd, detach) = scan_input(&buf[..n]);
                if let Some(g) = self.guests.get_mut(&id) {
                    if let Some(mut ring) = g.ring() {
                        ring.write_input(fwd);
                        if let Some(p) = g.console_port {
                            let _ = events::send(p);
                        }
                    } else if let Some(h) = g.hvm.as_mut() {
                        h.input(fwd);
                    }
                }
                if detach {
                    break;
                }
            }
            let progress = self.service();
            if !self.guests.contains_key(&id) {
                break;
            }
            if n == 0 && !progress {
                self.idle();
            }
        }
        self.attached = None;
        print!("\n");
        Ok(())
    }

    fn read_xen_console(&mut self, clear: bool) -> XlResult<String> {
        let mut all = Vec::new();
        let mut buf = alloc::vec![0u8; 64 * 1024];
        let n = xc::read_console_all(clear, &mut buf).map_err(xen_err)?;
        all.extend_from_slice(&buf[..n]);
        Ok(String::from_utf8_lossy(&all).into_owned())
    }

    fn send_debug_keys(&mut self, keys: &str) -> XlResult<()> {
        xc::debug_keys(keys.as_bytes()).map_err(xen_err)
    }

    fn set_memory_target(&mut self, domid: u32, kb: u64) -> XlResult<()> {
        let id = self.exists(domid)?;
        let i = xc::domain_info(id).map_err(xen_err)?;
        if kb > i.max_pages * 4 {
            return Err(XlError::Message(format!(
                "memory_dynamic_max must be less than or equal to memory_static_max ({} kB)",
                i.max_pages * 4
            )));
        }
        self.xs
            .write(
                &Self::dom_path(id, "memory/target"),
                kb.to_string().as_bytes(),
            )
            .map_err(|e| fail("xenstore write", format_args!("{e:?}")))?;
        self.flush_xs();
        Ok(())
    }

    fn set_memory_max(&mut self, domid: u32, kb: u64) -> XlResult<()> {
        let id = self.exists(domid)?;
        xc::set_max_mem(id, kb).map_err(xen_err)?;
        if id != 0 {
            let _ = self.xs.write(
                &Self::dom_path(id, "memory/static-max"),
                kb.to_string().as_bytes(),
            );
        }
        Ok(())
    }

    fn set_vcpus_online(&mut self, domid: u32, count: u32) -> XlResult<()> {
        let id = self.exists(domid)?;
        let i = xc::domain_info(id).map_err(xen_err)?;
        let max = i.max_vcpu_id + 1;
        if count > max {
            return Err(XlError::Message(format!(
                "Requested vcpus:{count} > max_vcpus:{max}"
            )));
        }
        for v in 0..max {
            let state: &[u8] = if v < count { b"online" } else { b"offline" };
            let _ = self
                .xs
                .write(&Self::dom_path(id, &format!("cpu/{v}/availability")), state);
        }
        self.flush_xs();
        Ok(())
    }

    fn list_vcpus(&mut self, domid: u32) -> XlResult<Vec<VcpuInfo>> {
        let id = self.exists(domid)?;
        let i = xc::domain_info(id).map_err(xen_err)?;
        let nr = xc::physinfo().map_or(1, |p| p.nr_cpus) as usize;
        let mut out = Vec::new();
        for v in 0..=i.max_vcpu_id {
            let vi = xc::vcpu_info(id, v).map_err(xen_err)?;
            let hard = xc::get_vcpu_affinity(id, v)
                .map(|m| {
                    let cpus: Vec<u32> = (0..nr as u32).filter(|c| m & (1 << c) != 0).collect();
                    CpuMap::from_cpus(nr, &cpus)
                })
                .unwrap_or_else(|_| CpuMap::all(nr));
            out.push(VcpuInfo {
                vcpuid: v,
                cpu: vi.cpu,
                online: vi.online,
                blocked: vi.blocked,
                running: vi.running,
                vcpu_time_ns: vi.cpu_time,
                hard,
                soft: CpuMap::all(nr),
            });
        }
        Ok(out)
    }

    fn set_vcpu_affinity(
        &mut self,
        domid: u32,
        vcpu: Option<u32>,
        hard: Option<&CpuMap>,
        _soft: Option<&CpuMap>,
        _force: bool,
    ) -> XlResult<()> {
        let id = self.exists(domid)?;
        let i = xc::domain_info(id).map_err(xen_err)?;
        let Some(hard) = hard else { return Ok(()) };
        let mut bits = [0u8; 8];
        for c in hard.cpus().filter(|&c| c < 64) {
            bits[(c / 8) as usize] |= 1 << (c % 8);
        }
        let vcpus: Vec<u32> = match vcpu {
            Some(v) if v > i.max_vcpu_id => return Err(XlError::Invalid),
            Some(v) => alloc::vec![v],
            None => (0..=i.max_vcpu_id).collect(),
        };
        for v in vcpus {
            xc::set_vcpu_affinity(id, v, &bits).map_err(xen_err)?;
        }
        Ok(())
    }

    fn sched_credit_get(&mut self, domid: u32) -> XlResult<CreditDomain> {
        let id = self.exists(domid)?;
        let (weight, cap) = xc::sched_credit_get(id).map_err(xen_err)?;
        Ok(CreditDomain {
            weight: u32::from(weight),
            cap: u32::from(cap),
        })
    }

    fn sched_credit_set(
        &mut self,
        domid: u32,
        weight: Option<u32>,
        cap: Option<u32>,
    ) -> XlResult<()> {
        let id = self.exists(domid)?;
        let w = match weight {
            Some(w) if w == 0 || w > 65535 => return Err(XlError::Invalid),
            Some(w) => w as u16,
            None => 0,
        };
        let c = match cap {
            Some(c) if c > 65534 => return Err(XlError::Invalid),
            Some(c) => c as u16,
            None => 0xffff,
        };
        xc::sched_credit_set(id, w, c).map_err(xen_err)
    }

    fn sched_credit_pool_get(&mut self, poolid: u32) -> XlResult<CreditPool> {
        if poolid != 0 {
            return Err(XlError::Invalid);
        }
        let (tslice_ms, ratelimit_us, migration_delay_us) =
            xc::sched_credit_globals_get().map_err(xen_err)?;
        Ok(CreditPool {
            tslice_ms,
            ratelimit_us,
            migration_delay_us,
        })
    }

    fn sched_credit_pool_set(&mut self, poolid: u32, p: &CreditPool) -> XlResult<()> {
        if poolid != 0 {
            return Err(XlError::Invalid);
        }
        xc::sched_credit_globals_set(p.tslice_ms, p.ratelimit_us, p.migration_delay_us)
            .map_err(xen_err)
    }

    fn uptime_secs(&mut self, domid: u32) -> XlResult<u64> {
        let id = self.exists(domid)?;
        let now = time::now_ns();
        let since = self.guests.get(&id).map_or(0, |g| g.started_ns);
        Ok(now.saturating_sub(since) / 1_000_000_000)
    }

    fn wallclock_secs(&mut self) -> XlResult<u64> {
        let (sec, _) = time::wallclock().ok_or(XlError::Failed)?;
        Ok(sec + time::now_ns() / 1_000_000_000)
    }

    fn monotonic_ns(&mut self) -> XlResult<u64> {
        Ok(time::now_ns())
    }

    fn block_attach(&mut self, domid: u32, disk: &crate::xlcfg::DiskSpec) -> XlResult<()> {
        let id = self.exists(domid)?;
        if id == 0 {
            return Err(XlError::Message(String::from(
                "Dom0 uses its own devices, not blkback",
            )));
        }
        self.add_disk(id, disk)
    }

    fn block_list(&mut self, domid: u32) -> XlResult<Vec<crate::xl::backend::BlockInfo>> {
        let id = self.exists(domid)?;
        Ok(blkback::toolstack::block_list(&mut self.xs, id))
    }

    fn block_detach(&mut self, domid: u32, devid: u32, force: bool) -> XlResult<()> {
        let id = self.exists(domid)?;
        if force {
            self.blk.remove(&mut self.back, id, devid);
            blkback::toolstack::remove_vbd(&mut self.xs, id, devid);
            self.sharing.release(id, devid);
            return Ok(());
        }
        if self.blk.detach(&mut self.xs, id, devid) {
            self.flush_xs();
            Ok(())
        } else {
            Err(XlError::Message(format!("Device {devid} not connected")))
        }
    }

    fn network_attach(&mut self, domid: u32, nic: &crate::xlcfg::VifSpec) -> XlResult<()> {
        let id = self.exists(domid)?;
        if id == 0 {
            return Err(XlError::Message(String::from(
                "Dom0 uses its own NIC, not netback",
            )));
        }
        self.net
            .add_vif(&mut self.xs, id, nic)
            .map_err(XlError::Message)?;
        self.flush_xs();
        Ok(())
    }

    fn network_list(&mut self, domid: u32) -> XlResult<Vec<crate::xl::backend::NicInfo>> {
        let id = self.exists(domid)?;
        Ok(self.net.list(&mut self.xs, id))
    }

    fn network_detach(&mut self, domid: u32, devid: u32) -> XlResult<()> {
        let id = self.exists(domid)?;
        if !self.net.has(id, devid) {
            return Err(XlError::Message(format!("Device {devid} not connected")));
        }
        // As libxl: ask the frontend to close, wait for it, then remove
        // the device anyway.
        self.net.request_detach(&mut self.xs, id, devid);
        self.flush_xs();
        let end = time::now_ns().saturating_add(DETACH_PATIENCE_NS);
        while self.net.has(id, devid) && time::now_ns() < end {
            if !self.service() {
                self.idle();
            }
        }
        if self.net.has(id, devid) {
            self.net.detach(&mut self.xs, id, devid);
            self.flush_xs();
        }
        Ok(())
    }

    fn top_wait(&mut self, delay_secs: u32) -> XlResult<bool> {
        let end = time::now_ns().saturating_add(u64::from(delay_secs.max(1)) * 1_000_000_000);
        while time::now_ns() < end {
            let mut b = [0u8; 16];
            let n = console::try_read(&mut b).unwrap_or(0);
            if b[..n]
                .iter()
                .any(|&c| c == b'q' || c == b'Q' || c == 0x1d || c == 3)
            {
                return Ok(false);
            }
            if !self.service() {
                self.idle();
            }
        }
        Ok(true)
    }
}
