//! A machine in a test: the real xenstored (guests talk to it over their
//! xenstore ring pages), Dom0's real blkback, a fake grant table and fake
//! event channels joining them, and guests running pv-guest-lib's real
//! blkfront. `FrontHost::wait` runs Dom0 (xenstored, then blkback).

#![allow(dead_code)]

use std::boxed::Box;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use dom0_tools::blkback::toolstack::{add_vbd, VbdSpec};
use dom0_tools::blkback::{
    Blkback, BlockStore, CopySeg, EventChannels, GrantFault, GrantMapper, MemDisk,
};
use dom0_tools::xenstore::layout::{ConsoleInfo, DomainInfo};
use dom0_tools::xenstore::{MemHost, Quotas, Xenstored};
use pv_guest_lib::blkfront::{Blkfront, Config, FrontHost};
use pv_guest_lib::grant::GrantRef;
use pv_guest_lib::xenbus::page::{MemPage, SharedPage, PAGE_SIZE};
use pv_guest_lib::xenbus::{RingTransport, Xenbus};

/// A grant-table entry.
pub struct Entry {
    pub owner: u16,
    pub to: u16,
    pub page: MemPage,
    pub readonly: bool,
    pub maps: u32,
}

/// Every domain's grant table, and the event channels.
#[derive(Default)]
pub struct Fabric {
    pub grants: BTreeMap<(u16, GrantRef), Entry>,
    next_ref: BTreeMap<u16, GrantRef>,
    /// (domid, guest port) -> Dom0 local port.
    pub links: BTreeMap<(u16, u32), u32>,
    next_port: BTreeMap<u16, u32>,
    next_local: u32,
    /// Dom0 ports a frontend signalled.
    pub back_pending: Vec<u32>,
    /// Guest ports Dom0 signalled.
    pub front_pending: Vec<(u16, u32)>,
    /// Grants Dom0 has mapped now.
    pub mapped: u32,
    /// Grant copies done.
    pub copies: u64,
    /// Grant copies out of each (granter, gref), for double-fetch checks.
    pub reads: BTreeMap<(u16, GrantRef), u32>,
}

impl Fabric {
    pub fn grant(&mut self, owner: u16, to: u16, page: &MemPage, readonly: bool) -> GrantRef {
        let r = self.next_ref.entry(owner).or_insert(8);
        let g = *r;
        *r += 1;
        self.grants.insert(
            (owner, g),
            Entry {
                owner,
                to,
                page: page.clone(),
                readonly,
                maps: 0,
            },
        );
        g
    }

    pub fn end(&mut self, owner: u16, g: GrantRef) -> bool {
        match self.grants.get(&(owner, g)) {
            Some(e) if e.maps > 0 => false,
            Some(_) => {
                self.grants.remove(&(owner, g));
                true
            }
            None => false,
        }
    }

    /// Grants `owner` still has out.
    pub fn granted_by(&self, owner: u16) -> usize {
        self.grants.keys().filter(|k| k.0 == owner).count()
    }

    fn lookup(&mut self, domid: u16, g: GrantRef, write: bool) -> Result<&mut Entry, GrantFault> {
        match self.grants.get_mut(&(domid, g)) {
            Some(e) if e.to == 0 && (!write || !e.readonly) => Ok(e),
            _ => Err(GrantFault),
        }
    }

    pub fn alloc_port(&mut self, domid: u16) -> u32 {
        let p = self.next_port.entry(domid).or_insert(10);
        *p += 1;
        *p
    }
}

pub type Shared = Rc<RefCell<Fabric>>;

/// The fake bus address of byte `off` of `domid`'s granted page `gref`.
pub fn dma_address(domid: u16, gref: GrantRef, off: u16) -> u64 {
    (u64::from(domid) << 48) | (u64::from(gref) << 12) | u64::from(off)
}

/// What [`dma_address`] encoded.
pub fn dma_target(a: u64) -> (u16, GrantRef, u16) {
    ((a >> 48) as u16, (a >> 12) as GrantRef, (a & 0xfff) as u16)
}

/// Dom0's side of the fabric, as blkback sees it.
pub struct BackHost(pub Shared);

/// A mapped page: remembers what to unmap.
pub struct Mapped {
    page: MemPage,
    key: (u16, GrantRef),
}

impl SharedPage for Mapped {
    fn load_u32(&self, off: usize) -> u32 {
        self.page.load_u32(off)
    }
    fn store_u32(&self, off: usize, v: u32) {
        self.page.store_u32(off, v)
    }
    fn read(&self, off: usize, out: &mut [u8]) {
        self.page.read(off, out)
    }
    fn write(&self, off: usize, data: &[u8]) {
        self.page.write(off, data)
    }
}

impl GrantMapper for BackHost {
    type Page = Mapped;
    fn map(&mut self, domid: u16, gref: GrantRef, readonly: bool) -> Result<Mapped, GrantFault> {
        let mut f = self.0.borrow_mut();
        let e = f.lookup(domid, gref, !readonly)?;
        e.maps += 1;
        let page = e.page.clone();
        f.mapped += 1;
        Ok(Mapped {
            page,
            key: (domid, gref),
        })
    }
    fn unmap(&mut self, m: Mapped) {
        let mut f = self.0.borrow_mut();
        if let Some(e) = f.grants.get_mut(&m.key) {
            e.maps -= 1;
        }
        f.mapped -= 1;
    }
    fn copy_in(&mut self, domid: u16, segs: &[CopySeg], buf: &mut [u8]) -> Result<(), GrantFault> {
        let mut f = self.0.borrow_mut();
        let mut pos = 0;
        for s in segs {
            let e = f.lookup(domid, s.gref, false)?;
            let len = usize::from(s.len);
            if usize::from(s.offset) + len > PAGE_SIZE || pos + len > buf.len() {
                return Err(GrantFault);
            }
            e.page.read(usize::from(s.offset), &mut buf[pos..pos + len]);
            pos += len;
            *f.reads.entry((domid, s.gref)).or_insert(0) += 1;
        }
        f.copies += segs.len() as u64;
        Ok(())
    }
    /// A fake bus address per piece ([`dma_address`]): the test's
    /// in-place store resolves it to the frontend's page itself.
    fn dma_buf(
        &mut self,
        pieces: &[(&Mapped, u16, u16)],
    ) -> Option<Box<dyn dom0_tools::blkback::IoBuf>> {
        let segs = pieces
            .iter()
            .map(|&(m, off, len)| dom0_tools::blkback::DmaSeg {
                va: dma_address(m.key.0, m.key.1, off),
                len: u32::from(len),
            })
            .collect();
        // SAFETY: these addresses are tokens: nothing dereferences them
        // (the in-place test store looks the page up in the fabric).
        Some(Box::new(unsafe { dom0_tools::blkback::SgBuf::new(segs) }))
    }
    fn copy_out(&mut self, domid: u16, segs: &[CopySeg], buf: &[u8]) -> Result<(), GrantFault> {
        let mut f = self.0.borrow_mut();
        // Check every segment first: all or nothing.
        for s in segs {
            f.lookup(domid, s.gref, true)?;
        }
        let mut pos = 0;
        for s in segs {
            let e = f.lookup(domid, s.gref, true)?;
            let len = usize::from(s.len);
            if usize::from(s.offset) + len > PAGE_SIZE || pos + len > buf.len() {
                return Err(GrantFault);
            }
            e.page.write(usize::from(s.offset), &buf[pos..pos + len]);
            pos += len;
        }
        f.copies += segs.len() as u64;
        Ok(())
    }
}

impl EventChannels for BackHost {
    fn bind(&mut self, domid: u16, remote_port: u32) -> Option<u32> {
        let mut f = self.0.borrow_mut();
        if remote_port == 0 || remote_port > f.next_port.get(&domid).copied().unwrap_or(0) {
            return None;
        }
        f.next_local += 1;
        let l = 100 + f.next_local;
        f.links.insert((domid, remote_port), l);
        Some(l)
    }
    fn unbind(&mut self, local_port: u32) {
        self.0.borrow_mut().links.retain(|_, l| *l != local_port);
    }
    fn notify(&mut self, local_port: u32) {
        let mut f = self.0.borrow_mut();
        if let Some((&k, _)) = f.links.iter().find(|(_, &l)| l == local_port) {
            f.front_pending.push(k);
        }
    }
}

/// Dom0: xenstored, blkback and its host.
pub struct Dom0 {
    pub xs: Xenstored<MemHost>,
    pub back: Blkback<Mapped>,
    pub host: BackHost,
    /// Devices blkback finished with.
    pub gone: Vec<(u16, u32)>,
}

impl Dom0 {
    /// One pass of Dom0's service loop.
    pub fn run(&mut self) {
        self.xs.poll_all();
        let gone = self.back.xenbus_changed(&mut self.xs, &mut self.host);
        self.gone.extend(gone);
        let ports: Vec<u32> = std::mem::take(&mut self.host.0.borrow_mut().back_pending);
        for p in ports {
            while self.back.on_event(&mut self.xs, &mut self.host, p) {}
        }
        self.xs.poll_all();
    }
}

pub type World = Rc<RefCell<Dom0>>;

pub fn world() -> (World, Shared) {
    let fabric: Shared = Rc::default();
    let mut xs = Xenstored::new(MemHost::default(), Quotas::default());
    xs.init_dom0("Domain-0").unwrap();
    let d = Dom0 {
        xs,
        back: Blkback::new(),
        host: BackHost(fabric.clone()),
        gone: Vec::new(),
    };
    (Rc::new(RefCell::new(d)), fabric)
}

pub type GuestXs = Xenbus<RingTransport<MemPage, Box<dyn FnMut()>, Box<dyn FnMut() -> bool>>>;

/// Builds domain `domid` (xenstore ring, nodes) and connects its client.
pub fn guest_xs(w: &World, domid: u16) -> GuestXs {
    let page = MemPage::new();
    let mfn = 0x1000 + u64::from(domid);
    let uuid = format!("00000000-0000-0000-0000-{domid:012}");
    let name = format!("guest{domid}");
    let conn = {
        let mut d = w.borrow_mut();
        d.xs.host().add_ring(domid, mfn, page.clone());
        d.xs.create_domain(&DomainInfo {
            domid,
            name: &name,
            uuid: &uuid,
            vcpus: 1,
            max_vcpus: 1,
            target_kb: 65536,
            max_kb: 65536,
            store_mfn: mfn,
            store_port: 1,
            console: Some(ConsoleInfo {
                ring_ref: mfn + 1,
                port: 2,
                backend_domid: 0,
            }),
        })
        .unwrap()
    };
    let (w1, w2) = (w.clone(), w.clone());
    let mut budget = 100_000;
    let notify: Box<dyn FnMut()> = Box::new(move || {
        w1.borrow_mut().xs.poll(conn);
    });
    let wait: Box<dyn FnMut() -> bool> = Box::new(move || {
        w2.borrow_mut().xs.poll_all();
        budget -= 1;
        budget > 0
    });
    Xenbus::new(RingTransport::new(page, notify, wait))
}

/// Adds a disk for `domid` as the toolstack does, and starts serving it.
pub fn add_disk<S: BlockStore + 'static>(
    w: &World,
    domid: u16,
    vdev: &str,
    writable: bool,
    store: S,
) -> u32 {
    let devid = dom0_tools::xlcfg::disk::vdev_to_devid(vdev).unwrap();
    let mut d = w.borrow_mut();
    let d = &mut *d;
    add_vbd(
        &mut d.xs,
        &VbdSpec {
            domid,
            devid,
            vdev,
            params: "/images/test.img",
            writable,
            cdrom: false,
            discard: true,
        },
    )
    .unwrap();
    d.back
        .add(&mut d.xs, &mut d.host, domid, devid, Box::new(store));
    d.xs.poll_all();
    devid
}

/// The guest kernel side: its grants, ports, pages; waiting runs Dom0.
pub struct GuestHost {
    pub domid: u16,
    pub fabric: Shared,
    pub world: World,
    pub waits: u64,
    pub budget: u64,
    pub pages: u64,
}

impl GuestHost {
    pub fn new(w: &World, fabric: &Shared, domid: u16) -> Self {
        GuestHost {
            domid,
            fabric: fabric.clone(),
            world: w.clone(),
            waits: 0,
            budget: 1_000_000,
            pages: 0,
        }
    }
}

impl FrontHost for GuestHost {
    type Page = MemPage;
    fn alloc_page(&mut self) -> Option<MemPage> {
        self.pages += 1;
        Some(MemPage::new())
    }
    fn free_page(&mut self, _page: MemPage) {
        self.pages -= 1;
    }
    fn grant(&mut self, backend: u16, page: &MemPage, readonly: bool) -> Option<GrantRef> {
        Some(
            self.fabric
                .borrow_mut()
                .grant(self.domid, backend, page, readonly),
        )
    }
    fn end_grant(&mut self, gref: GrantRef) -> bool {
        self.fabric.borrow_mut().end(self.domid, gref)
    }
    fn alloc_evtchn(&mut self, _backend: u16) -> Option<u32> {
        Some(self.fabric.borrow_mut().alloc_port(self.domid))
    }
    fn close_evtchn(&mut self, port: u32) {
        self.fabric.borrow_mut().links.remove(&(self.domid, port));
    }
    fn notify(&mut self, port: u32) {
        let mut f = self.fabric.borrow_mut();
        if let Some(&l) = f.links.get(&(self.domid, port)) {
            f.back_pending.push(l);
        }
    }
    fn wait(&mut self) -> bool {
        self.waits += 1;
        self.world.borrow_mut().run();
        self.budget = self.budget.saturating_sub(1);
        self.budget > 0
    }
}

/// A guest with a connected blkfront.
pub struct Guest {
    pub xs: GuestXs,
    pub host: GuestHost,
    pub front: Blkfront<GuestHost>,
}

pub fn connect_guest(w: &World, fabric: &Shared, domid: u16, devid: u32, cfg: Config) -> Guest {
    let mut xs = guest_xs(w, domid);
    let mut host = GuestHost::new(w, fabric, domid);
    let mut front = Blkfront::new(devid, None, cfg);
    front.connect_blocking(&mut xs, &mut host).unwrap();
    Guest { xs, host, front }
}

/// A guest and a disk of `sectors` sectors, connected.
pub fn guest_with_disk(
    w: &World,
    fabric: &Shared,
    domid: u16,
    sectors: u64,
    cfg: Config,
) -> (Guest, Rc<RefCell<MemDisk>>) {
    let disk = Rc::new(RefCell::new(MemDisk::new(sectors)));
    // The guest's xenstore connection must exist before its nodes.
    let xs = guest_xs(w, domid);
    let devid = add_disk(w, domid, "xvda", true, disk.clone());
    let mut host = GuestHost::new(w, fabric, domid);
    let mut xs = xs;
    let mut front = Blkfront::new(devid, None, cfg);
    front.connect_blocking(&mut xs, &mut host).unwrap();
    (Guest { xs, host, front }, disk)
}

/// A deterministic byte pattern.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
