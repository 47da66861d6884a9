//! Shared harness of the netif tests: the real xenstored, guests talking to
//! it over ring pages (as in `xenstore_wire.rs`), a fake grant table shared
//! by the guests' grants and Dom0's copies and mappings, and Dom0's
//! netback. Event channels are not simulated: [`World::pump`] runs every
//! back-end step, as if every event had fired.

#![allow(dead_code)]

use std::boxed::Box;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use dom0_tools::netback::{create_vif, GrantCopier, Netback, NetbackHost, VifParams};
use dom0_tools::vif::Mac;
use dom0_tools::xenstore::layout::{ConsoleInfo, DomainInfo};
use dom0_tools::xenstore::{MemHost, Quotas, Xenstored};
use pv_guest_lib::grant::{GrantError, GrantRef};
use pv_guest_lib::netfront::{Netfront, NetfrontHost};
use pv_guest_lib::xenbus::page::{MemPage, SharedPage};
use pv_guest_lib::xenbus::{RingTransport, Xenbus};
use pv_guest_lib::Errno;

pub type Daemon = Rc<RefCell<Xenstored<MemHost>>>;
pub type Xb = Xenbus<RingTransport<MemPage, Box<dyn FnMut()>, Box<dyn FnMut() -> bool>>>;

/// `GNTST_bad_gntref`, `GNTST_permission_denied`, `GNTST_bad_copy_arg`.
pub const BAD_GNTREF: i16 = -3;
pub const PERMISSION_DENIED: i16 = -8;
pub const BAD_COPY_ARG: i16 = -10;

#[derive(Clone)]
pub struct GrantEntry {
    pub page: MemPage,
    pub to: u16,
    pub ro: bool,
}

/// Every domain's grant table: `(granter, gref)` → entry.
#[derive(Clone, Default)]
pub struct Grants(pub Rc<RefCell<BTreeMap<(u16, u32), GrantEntry>>>);

impl Grants {
    pub fn get(&self, dom: u16, gref: u32) -> Option<GrantEntry> {
        self.0.borrow().get(&(dom, gref)).cloned()
    }
    pub fn count(&self, dom: u16) -> usize {
        self.0.borrow().keys().filter(|k| k.0 == dom).count()
    }
}

/// A guest's kernel for netfront.
pub struct GuestHost {
    pub domid: u16,
    pub grants: Grants,
    next_ref: u32,
    next_port: u32,
    pub notifies: Rc<Cell<u64>>,
}

impl GuestHost {
    pub fn new(domid: u16, grants: Grants) -> Self {
        GuestHost {
            domid,
            grants,
            next_ref: 8,
            next_port: 10,
            notifies: Rc::default(),
        }
    }
}

impl NetfrontHost for GuestHost {
    type Page = MemPage;
    fn alloc_page(&mut self) -> Option<MemPage> {
        Some(MemPage::new())
    }
    fn grant(
        &mut self,
        page: &MemPage,
        domid: u16,
        readonly: bool,
    ) -> Result<GrantRef, GrantError> {
        let r = self.next_ref;
        self.next_ref += 1;
        self.grants.0.borrow_mut().insert(
            (self.domid, r),
            GrantEntry {
                page: page.clone(),
                to: domid,
                ro: readonly,
            },
        );
        Ok(r)
    }
    fn end_grant(&mut self, gref: GrantRef) -> Result<(), GrantError> {
        self.grants
            .0
            .borrow_mut()
            .remove(&(self.domid, gref))
            .map(drop)
            .ok_or(GrantError::BadRef)
    }
    fn alloc_evtchn(&mut self, _remote: u16) -> Result<u32, Errno> {
        self.next_port += 1;
        Ok(self.next_port)
    }
    fn close_evtchn(&mut self, _port: u32) {}
    fn notify(&mut self, _port: u32) {
        self.notifies.set(self.notifies.get() + 1);
    }
}

/// A guest page mapped into Dom0; counts live mappings.
pub struct Mapped {
    page: MemPage,
    live: Rc<Cell<i64>>,
}

impl Drop for Mapped {
    fn drop(&mut self) {
        self.live.set(self.live.get() - 1);
    }
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

/// Dom0's kernel for netback.
#[derive(Default)]
pub struct Dom0Host {
    pub grants: Grants,
    pub mapped: Rc<Cell<i64>>,
    pub bound: Vec<u32>,
    pub notified: Vec<u32>,
    pub copy_errors: u64,
}

impl GrantCopier for Dom0Host {
    fn copy_from_guest(
        &mut self,
        domid: u16,
        gref: u32,
        offset: u16,
        dst: &mut [u8],
    ) -> Result<(), i16> {
        let r = (|| {
            let e = self.grants.get(domid, gref).ok_or(BAD_GNTREF)?;
            if e.to != 0 {
                return Err(PERMISSION_DENIED);
            }
            if offset as usize + dst.len() > 4096 {
                return Err(BAD_COPY_ARG);
            }
            e.page.read(offset as usize, dst);
            Ok(())
        })();
        self.copy_errors += u64::from(r.is_err());
        r
    }
    fn copy_to_guest(&mut self, domid: u16, gref: u32, offset: u16, src: &[u8]) -> Result<(), i16> {
        let r = (|| {
            let e = self.grants.get(domid, gref).ok_or(BAD_GNTREF)?;
            if e.to != 0 || e.ro {
                return Err(PERMISSION_DENIED);
            }
            if offset as usize + src.len() > 4096 {
                return Err(BAD_COPY_ARG);
            }
            e.page.write(offset as usize, src);
            Ok(())
        })();
        self.copy_errors += u64::from(r.is_err());
        r
    }
}

impl NetbackHost for Dom0Host {
    type Page = Mapped;
    fn map_ring(&mut self, domid: u16, gref: u32) -> Option<Mapped> {
        let e = self.grants.get(domid, gref)?;
        if e.to != 0 || e.ro {
            return None;
        }
        self.mapped.set(self.mapped.get() + 1);
        Some(Mapped {
            page: e.page,
            live: self.mapped.clone(),
        })
    }
    fn bind(&mut self, domid: u16, remote_port: u32) -> Option<u32> {
        let p = u32::from(domid) * 1000 + remote_port;
        self.bound.push(p);
        Some(p)
    }
    fn unbind(&mut self, local_port: u32) {
        self.bound.retain(|&p| p != local_port);
    }
    fn notify(&mut self, local_port: u32) {
        self.notified.push(local_port);
    }
}

/// Dom0: xenstored and netback, and what went out to the "physical NIC".
pub struct World {
    pub d: Daemon,
    pub nb: Netback<Dom0Host>,
    pub grants: Grants,
    pub mapped: Rc<Cell<i64>>,
    pub uplink_out: Vec<(u32, Vec<u8>)>,
    pub now: u64,
}

pub fn mac(n: u8) -> Mac {
    Mac([0x00, 0x16, 0x3e, 0x00, 0x00, n])
}

impl World {
    pub fn new() -> World {
        let d = Rc::new(RefCell::new(Xenstored::new(
            MemHost::default(),
            Quotas::default(),
        )));
        d.borrow_mut().init_dom0("Domain-0").unwrap();
        let grants = Grants::default();
        let host = Dom0Host {
            grants: grants.clone(),
            ..Default::default()
        };
        let mapped = host.mapped.clone();
        World {
            d,
            nb: Netback::new(host),
            grants,
            mapped,
            uplink_out: Vec::new(),
            now: 0,
        }
    }

    /// Builds domain `domid` with a xenstore ring, gives it vif 0 with
    /// `mac` on xenbr0 (as `xl create` with `vif = ['mac=...']`) and
    /// probes the backend. Returns the guest's xenbus client.
    pub fn add_guest(&mut self, domid: u16, m: Mac) -> Xb {
        let page = MemPage::new();
        let mfn = 0x1000 + u64::from(domid);
        let uuid = format!("00000000-0000-0000-0000-{domid:012}");
        let name = format!("guest{domid}");
        let conn = {
            let mut xs = self.d.borrow_mut();
            xs.host().add_ring(domid, mfn, page.clone());
            let c = xs
                .create_domain(&DomainInfo {
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
                .unwrap();
            create_vif(
                &mut xs,
                domid,
                0,
                &VifParams {
                    mac: m,
                    bridge: "xenbr0".into(),
                    script: "vif-bridge".into(),
                },
            )
            .unwrap();
            self.nb.attach(&mut xs, domid, 0).unwrap();
            c
        };
        let (d1, d2) = (self.d.clone(), self.d.clone());
        let mut budget = 10_000;
        let notify: Box<dyn FnMut()> = Box::new(move || {
            d1.borrow_mut().poll(conn);
        });
        let wait: Box<dyn FnMut() -> bool> = Box::new(move || {
            d2.borrow_mut().poll_all();
            budget -= 1;
            budget > 0
        });
        Xenbus::new(RingTransport::new(page, notify, wait))
    }

    /// Every back-end step once: xenstore rings, xenbus states, data path.
    pub fn pump(&mut self) -> usize {
        self.now += 1_000_000;
        let mut xs = self.d.borrow_mut();
        xs.poll_all();
        self.nb.xenbus_changed(&mut xs);
        let out = &mut self.uplink_out;
        let n = self
            .nb
            .service(&mut xs, self.now, &mut |p, f| out.push((p, f.to_vec())));
        xs.poll_all();
        n
    }

    /// Connects a netfront for device 0 of the guest.
    pub fn netfront(&mut self, xb: &mut Xb, domid: u16) -> Netfront<GuestHost> {
        let mut nf = Netfront::init(xb, GuestHost::new(domid, self.grants.clone()), 0).unwrap();
        for _ in 0..20 {
            if nf.connect_step(xb).unwrap() {
                return nf;
            }
            self.pump();
        }
        panic!("netfront of domain {domid} did not connect");
    }

    pub fn read(&self, path: &str) -> Option<String> {
        self.d
            .borrow_mut()
            .read(path)
            .ok()
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    }

    pub fn backend_state(&self, domid: u16) -> Option<String> {
        self.read(&format!("/local/domain/0/backend/vif/{domid}/0/state"))
    }
}

/// An Ethernet frame `dst ← src` with an IPv4 ethertype and `payload`.
pub fn frame(dst: Mac, src: Mac, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(payload);
    f
}

/// Receives everything waiting.
pub fn drain(nf: &mut Netfront<GuestHost>) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    while let Some(f) = nf.recv(|f| f.to_vec()).unwrap() {
        v.push(f);
    }
    v
}
