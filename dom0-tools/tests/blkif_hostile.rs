//! Hostile frontends (and one hostile backend) against the real blkback
//! and blkfront: bad grant references, malformed and out-of-range
//! requests, unknown operations, ring indexes that jump past the ring,
//! requests after close, broken connection details, random ring contents.
//! Each gets an error response or the device is disconnected; Dom0 and
//! every other guest keep working.

mod blkif_world;

use std::cell::RefCell;
use std::rc::Rc;

use blkif_world::*;
use dom0_tools::blkback::{backend_path, MemDisk};
use hypercall_abi::io::blkif::{
    BlkifOp, BlkifRequestDiscard, BlkifRequestIndirect, BlkifRequestSegment, BlkifResponse,
    BlkifRsp, BlkifSringEntry, BLKIF_DISCARD_SECURE,
};
use hypercall_abi::io::xenbus::XenbusState;
use pv_guest_lib::blkfront::ring::{FrontRing, SharedRing, REQ_PROD, RSP_PROD};
use pv_guest_lib::blkfront::{BlkError, Config, XsAccess};
use pv_guest_lib::grant::GrantRef;
use pv_guest_lib::xenbus::page::{MemPage, SharedPage};
use zerocopy::IntoBytes;

const OKAY: i16 = BlkifRsp::Okay as i16;
const ERROR: i16 = BlkifRsp::Error as i16;
const NOTSUPP: i16 = BlkifRsp::Eopnotsupp as i16;

/// A frontend written by hand: it says whatever the test wants.
struct Raw {
    w: World,
    fabric: Shared,
    xs: GuestXs,
    domid: u16,
    devid: u32,
    ring: FrontRing<MemPage>,
    ring_page: MemPage,
    port: u32,
    /// A data page granted writable, and one granted read-only.
    data: (MemPage, GrantRef),
    ro: (MemPage, GrantRef),
}

fn fe(devid: u32, k: &str) -> String {
    format!("device/vbd/{devid}/{k}")
}

fn be_read(w: &World, domid: u16, devid: u32, k: &str) -> Option<String> {
    XsAccess::read(
        &mut w.borrow_mut().xs,
        &format!("{}/{k}", backend_path(domid, devid)),
    )
}

fn be_state(w: &World, domid: u16, devid: u32) -> Option<String> {
    be_read(w, domid, devid, "state")
}

/// Sets up the ring by hand; `tweak` may spoil the xenstore entries
/// before the frontend says Initialised.
fn raw_with(
    w: &World,
    fabric: &Shared,
    domid: u16,
    disk: Rc<RefCell<MemDisk>>,
    writable: bool,
    tweak: impl FnOnce(&mut GuestXs, u32),
) -> Raw {
    let mut xs = guest_xs(w, domid);
    let devid = add_disk(w, domid, "xvda", writable, disk);
    let ring_page = MemPage::new();
    let ring = FrontRing::new(SharedRing::new(vec![ring_page.clone()]).unwrap());
    let gref = fabric.borrow_mut().grant(domid, 0, &ring_page, false);
    let port = fabric.borrow_mut().alloc_port(domid);
    let data_page = MemPage::new();
    let data = fabric.borrow_mut().grant(domid, 0, &data_page, false);
    let ro_page = MemPage::new();
    let ro = fabric.borrow_mut().grant(domid, 0, &ro_page, true);
    XsAccess::write(&mut xs, &fe(devid, "ring-ref"), &gref.to_string());
    XsAccess::write(&mut xs, &fe(devid, "event-channel"), &port.to_string());
    XsAccess::write(&mut xs, &fe(devid, "protocol"), "x86_64-abi");
    tweak(&mut xs, devid);
    XsAccess::write(&mut xs, &fe(devid, "state"), "3");
    w.borrow_mut().run();
    Raw {
        w: w.clone(),
        fabric: fabric.clone(),
        xs,
        domid,
        devid,
        ring,
        ring_page,
        port,
        data: (data_page, data),
        ro: (ro_page, ro),
    }
}

fn raw(w: &World, fabric: &Shared, domid: u16, disk: Rc<RefCell<MemDisk>>) -> Raw {
    let r = raw_with(w, fabric, domid, disk, true, |_, _| {});
    assert_eq!(be_state(w, domid, r.devid).as_deref(), Some("4"));
    r
}

impl Raw {
    fn kick(&mut self) {
        let mut f = self.fabric.borrow_mut();
        if let Some(&l) = f.links.get(&(self.domid, self.port)) {
            f.back_pending.push(l);
        }
    }

    /// Sends requests, runs Dom0, returns the responses.
    fn send(&mut self, reqs: &[BlkifSringEntry]) -> Vec<BlkifResponse> {
        for r in reqs {
            assert!(self.ring.put_request(r));
        }
        self.ring.push_requests();
        self.kick();
        self.w.borrow_mut().run();
        let mut out = Vec::new();
        while let Some(r) = self.ring.next_response().unwrap() {
            out.push(r);
        }
        out
    }

    fn status(&mut self, r: BlkifSringEntry) -> i16 {
        let id = r.req.id;
        let op = r.req.operation;
        let rsp = self.send(&[r]);
        assert_eq!(rsp.len(), 1);
        assert_eq!(rsp[0].id, id);
        assert_eq!(rsp[0].operation, op);
        rsp[0].status
    }
}

fn rw(op: BlkifOp, id: u64, sector: u64, segs: &[(GrantRef, u8, u8)]) -> BlkifSringEntry {
    let mut e = BlkifSringEntry::default();
    e.req.operation = op as u8;
    e.req.id = id;
    e.req.sector_number = sector;
    e.req.nr_segments = segs.len() as u8;
    for (i, &(g, f, l)) in segs.iter().enumerate().take(11) {
        e.req.seg[i] = BlkifRequestSegment {
            gref: g,
            first_sect: f,
            last_sect: l,
            _pad6: 0,
        };
    }
    e
}

fn indirect(id: u64, op: u8, sector: u64, nr: u16, grefs: &[GrantRef]) -> BlkifSringEntry {
    let mut r = BlkifRequestIndirect {
        operation: BlkifOp::Indirect as u8,
        indirect_op: op,
        nr_segments: nr,
        id,
        sector_number: sector,
        ..Default::default()
    };
    r.indirect_grefs[..grefs.len()].copy_from_slice(grefs);
    let mut e = BlkifSringEntry::default();
    e.req.as_mut_bytes()[..64].copy_from_slice(r.as_bytes());
    e
}

fn disk(sectors: u64) -> Rc<RefCell<MemDisk>> {
    Rc::new(RefCell::new(MemDisk::new(sectors)))
}

#[test]
fn good_raw_requests_work() {
    let (w, fabric) = world();
    let d = disk(64);
    let mut r = raw(&w, &fabric, 3, d.clone());
    r.data.0.write(0, &[9; 4096]);
    let g = r.data.1;
    assert_eq!(r.status(rw(BlkifOp::Write, 1, 8, &[(g, 0, 7)])), OKAY);
    assert_eq!(&d.borrow().data[4096..8192], &[9; 4096][..]);
    // Partial page: sectors 2..=3 of the page to disk sectors 0..=1.
    assert_eq!(r.status(rw(BlkifOp::Write, 2, 0, &[(g, 2, 3)])), OKAY);
    assert_eq!(&d.borrow().data[..1024], &[9; 1024][..]);
    r.data.0.write(0, &[0; 4096]);
    assert_eq!(r.status(rw(BlkifOp::Read, 3, 8, &[(g, 1, 1)])), OKAY);
    let mut b = [0u8; 1024];
    r.data.0.read(0, &mut b);
    assert_eq!(&b[..512], &[0; 512]);
    assert_eq!(&b[512..], &[9; 512]);
}

#[test]
fn bad_grant_references_get_errors() {
    let (w, fabric) = world();
    let d = disk(64);
    let mut r = raw(&w, &fabric, 3, d.clone());
    // A grant of another domain to Dom0, one of ours to someone else.
    // (A reference number domain 3 has not used itself.)
    let mut other = 0;
    for _ in 0..50 {
        other = fabric.borrow_mut().grant(9, 0, &MemPage::new(), false);
    }
    let not_dom0 = fabric.borrow_mut().grant(3, 5, &MemPage::new(), false);
    let g = r.data.1;
    for (id, bad) in [(1, 9999), (2, other), (3, not_dom0), (4, u32::MAX)] {
        assert_eq!(
            r.status(rw(BlkifOp::Write, id, 0, &[(g, 0, 7), (bad, 0, 7)])),
            ERROR
        );
        assert_eq!(r.status(rw(BlkifOp::Read, id, 0, &[(bad, 0, 7)])), ERROR);
    }
    // Reading into a read-only grant: the backend may not write it.
    let ro = r.ro.1;
    assert_eq!(r.status(rw(BlkifOp::Read, 5, 0, &[(ro, 0, 7)])), ERROR);
    // Writing from it is fine.
    assert_eq!(r.status(rw(BlkifOp::Write, 6, 0, &[(ro, 0, 7)])), OKAY);
    // A failed write touched nothing.
    r.data.0.write(0, &[1; 4096]);
    assert_eq!(
        r.status(rw(BlkifOp::Write, 7, 16, &[(g, 0, 7), (9999, 0, 7)])),
        ERROR
    );
    assert!(d.borrow().data[16 * 512..].iter().all(|&b| b == 0));
    // The device still works.
    assert_eq!(r.status(rw(BlkifOp::Write, 8, 16, &[(g, 0, 7)])), OKAY);
    assert_eq!(d.borrow().data[16 * 512], 1);
    assert_eq!(be_state(&w, 3, r.devid).as_deref(), Some("4"));
}

#[test]
fn malformed_and_out_of_range_requests_get_errors() {
    let (w, fabric) = world();
    let d = disk(64);
    let mut r = raw(&w, &fabric, 3, d.clone());
    let g = r.data.1;
    let full = (g, 0u8, 7u8);
    let cases: Vec<(&str, BlkifSringEntry)> = vec![
        ("no segments", rw(BlkifOp::Read, 1, 0, &[])),
        ("12 segments", {
            let mut e = rw(BlkifOp::Read, 2, 0, &[full]);
            e.req.nr_segments = 12;
            e
        }),
        ("255 segments", {
            let mut e = rw(BlkifOp::Write, 3, 0, &[full]);
            e.req.nr_segments = 255;
            e
        }),
        ("last_sect 8", rw(BlkifOp::Read, 4, 0, &[(g, 0, 8)])),
        ("last_sect 255", rw(BlkifOp::Write, 5, 0, &[(g, 0, 255)])),
        ("first > last", rw(BlkifOp::Read, 6, 0, &[(g, 5, 4)])),
        ("at the end", rw(BlkifOp::Read, 7, 64, &[(g, 0, 0)])),
        ("across the end", rw(BlkifOp::Write, 8, 60, &[full])),
        ("huge sector", rw(BlkifOp::Read, 9, 1 << 60, &[full])),
        ("wrapping", rw(BlkifOp::Write, 10, u64::MAX - 3, &[full])),
        ("barrier 12 segs", {
            let mut e = rw(BlkifOp::WriteBarrier, 11, 0, &[full]);
            e.req.nr_segments = 12;
            e
        }),
    ];
    for (what, e) in cases {
        assert_eq!(r.status(e), ERROR, "{what}");
    }
    let discard = |id, sector, n, flag| {
        let q = BlkifRequestDiscard {
            operation: BlkifOp::Discard as u8,
            flag,
            id,
            sector_number: sector,
            nr_sectors: n,
            ..Default::default()
        };
        let mut e = BlkifSringEntry::default();
        e.req.as_mut_bytes()[..32].copy_from_slice(q.as_bytes());
        e
    };
    assert_eq!(r.status(discard(20, 60, 8, 0)), ERROR);
    assert_eq!(r.status(discard(21, 8, u64::MAX, 0)), ERROR);
    assert_eq!(r.status(discard(22, 0, 8, BLKIF_DISCARD_SECURE)), NOTSUPP);
    assert_eq!(r.status(discard(23, 0, 8, 0)), OKAY);
    assert!(d.borrow().data.iter().all(|&b| b == 0));
    let st = w.borrow().back.get(3, r.devid).unwrap().stats();
    assert_eq!(st.errors, 13);
    assert_eq!(be_state(&w, 3, r.devid).as_deref(), Some("4"));
}

#[test]
fn unknown_operations_are_not_supported() {
    let (w, fabric) = world();
    let mut r = raw(&w, &fabric, 3, disk(64));
    for op in [4u8, 7, 8, 100, 255] {
        let mut e = rw(
            BlkifOp::Read,
            u64::from(op) << 32 | 0xabc,
            0,
            &[(r.data.1, 0, 7)],
        );
        e.req.operation = op;
        assert_eq!(r.status(e), NOTSUPP, "op {op}");
    }
}

#[test]
fn large_sector_disks_want_aligned_requests() {
    let (w, fabric) = world();
    let d = disk(64);
    d.borrow_mut().sector_size = 4096;
    let mut r = raw(&w, &fabric, 3, d.clone());
    assert_eq!(
        be_read(&w, 3, r.devid, "sector-size").as_deref(),
        Some("4096")
    );
    let g = r.data.1;
    assert_eq!(r.status(rw(BlkifOp::Read, 1, 1, &[(g, 0, 7)])), ERROR);
    assert_eq!(r.status(rw(BlkifOp::Read, 2, 0, &[(g, 0, 3)])), ERROR);
    assert_eq!(r.status(rw(BlkifOp::Read, 3, 8, &[(g, 0, 7)])), OKAY);
}

#[test]
fn hostile_indirect_requests() {
    let (w, fabric) = world();
    let d = disk(8192);
    let mut r = raw(&w, &fabric, 3, d.clone());
    // An indirect page with 20 good segments.
    let ind = MemPage::new();
    let ig = fabric.borrow_mut().grant(3, 0, &ind, false);
    let g = r.data.1;
    let seg = |gref, f, l| BlkifRequestSegment {
        gref,
        first_sect: f,
        last_sect: l,
        _pad6: 0,
    };
    let good: Vec<BlkifRequestSegment> = (0..20).map(|_| seg(g, 0, 7)).collect();
    ind.write(0, good.as_bytes());
    let read = BlkifOp::Read as u8;
    let write = BlkifOp::Write as u8;
    assert_eq!(r.status(indirect(1, write, 0, 20, &[ig])), OKAY);
    assert_eq!(r.status(indirect(2, read, 0, 20, &[ig])), OKAY);
    for (what, e) in [
        ("0 segments", indirect(3, read, 0, 0, &[ig])),
        ("257 segments", indirect(4, read, 0, 257, &[ig, ig])),
        ("65535 segments", indirect(5, read, 0, u16::MAX, &[ig; 8])),
        ("flush inside", indirect(6, 3, 0, 1, &[ig])),
        ("indirect inside", indirect(7, 6, 0, 1, &[ig])),
        ("unknown op", indirect(8, 77, 0, 1, &[ig])),
        ("bad indirect gref", indirect(9, read, 0, 1, &[4242])),
        ("second page bad", indirect(10, read, 0, 20, &[ig, 4242])),
        ("out of range", indirect(11, write, 8190, 20, &[ig])),
    ] {
        let want = if what == "second page bad" {
            OKAY
        } else {
            ERROR
        };
        assert_eq!(r.status(e), want, "{what}");
    }
    // Bad descriptors inside the indirect page.
    for (k, bad) in [seg(g, 0, 8), seg(g, 7, 6), seg(31337, 0, 7)]
        .into_iter()
        .enumerate()
    {
        ind.write(5 * 8, bad.as_bytes());
        assert_eq!(
            r.status(indirect(20 + k as u64, write, 0, 20, &[ig])),
            ERROR
        );
    }
    let st = w.borrow().back.get(3, r.devid).unwrap().stats();
    assert_eq!(st.errors, 11);
    assert_eq!(be_state(&w, 3, r.devid).as_deref(), Some("4"));
}

#[test]
fn read_only_disk_refuses_changes() {
    let (w, fabric) = world();
    let d = disk(64);
    d.borrow_mut().data[0] = 5;
    let mut r = raw_with(&w, &fabric, 3, d.clone(), false, |_, _| {});
    assert_eq!(be_state(&w, 3, r.devid).as_deref(), Some("4"));
    assert_eq!(be_read(&w, 3, r.devid, "info").as_deref(), Some("4"));
    let g = r.data.1;
    r.data.0.write(0, &[1; 4096]);
    assert_eq!(r.status(rw(BlkifOp::Write, 1, 0, &[(g, 0, 7)])), ERROR);
    assert_eq!(
        r.status(rw(BlkifOp::WriteBarrier, 2, 0, &[(g, 0, 7)])),
        ERROR
    );
    let mut e = rw(BlkifOp::FlushDiskcache, 3, 0, &[]);
    e.req.nr_segments = 0;
    assert_eq!(r.status(e), ERROR);
    assert_eq!(d.borrow().data[0], 5);
    assert_eq!(r.status(rw(BlkifOp::Read, 4, 0, &[(g, 0, 7)])), OKAY);
    let mut b = [0u8; 1];
    r.data.0.read(0, &mut b);
    assert_eq!(b[0], 5);
}

#[test]
fn ring_index_jumping_past_the_ring_disconnects_only_that_device() {
    let (w, fabric) = world();
    let (mut good, good_disk) = guest_with_disk(&w, &fabric, 1, 1024, Config::default());
    let mut r = raw(&w, &fabric, 3, disk(64));
    assert_eq!(r.status(rw(BlkifOp::Read, 1, 0, &[(r.data.1, 0, 7)])), OKAY);
    assert_eq!(fabric.borrow().mapped, 2);
    // 1 request answered; claim 40 more in a 32-slot ring.
    r.ring_page.store_u32(REQ_PROD, 41);
    r.kick();
    w.borrow_mut().run();
    assert_eq!(be_state(&w, 3, r.devid).as_deref(), Some("5"));
    let err = XsAccess::read(
        &mut w.borrow_mut().xs,
        &format!("/local/domain/0/error/backend/vbd/3/{}/error", r.devid),
    );
    assert!(err.unwrap().contains("bogus ring"));
    let dev = w.borrow();
    let v = dev.back.get(3, r.devid).unwrap();
    assert!(!v.is_connected());
    drop(dev);
    assert_eq!(
        fabric.borrow().mapped,
        1,
        "only the good guest's ring is mapped"
    );
    assert!(!fabric.borrow().links.contains_key(&(3, r.port)));
    // No responses were written.
    assert_eq!(r.ring_page.load_u32(RSP_PROD), 1);
    // The other guest never noticed.
    let p = pattern(1, 8192);
    good.front.write(&mut good.host, 0, &p).unwrap();
    assert_eq!(&good_disk.borrow().data[..8192], &p[..]);
    // The bad frontend acknowledges, closes; the device is Closed.
    XsAccess::write(&mut r.xs, &fe(r.devid, "state"), "6");
    w.borrow_mut().run();
    assert_eq!(be_state(&w, 3, r.devid).as_deref(), Some("6"));
}

#[test]
fn ring_index_moving_backwards_disconnects() {
    let (w, fabric) = world();
    let mut r = raw(&w, &fabric, 3, disk(64));
    for i in 0..3 {
        assert_eq!(r.status(rw(BlkifOp::Read, i, 0, &[(r.data.1, 0, 0)])), OKAY);
    }
    r.ring_page.store_u32(REQ_PROD, 1);
    r.kick();
    w.borrow_mut().run();
    assert_eq!(be_state(&w, 3, r.devid).as_deref(), Some("5"));
    assert_eq!(fabric.borrow().mapped, 0);
}

#[test]
fn requests_after_close_are_never_seen() {
    let (w, fabric) = world();
    let d = disk(64);
    let mut r = raw(&w, &fabric, 3, d.clone());
    let local = *fabric.borrow().links.get(&(3, r.port)).unwrap();
    XsAccess::write(&mut r.xs, &fe(r.devid, "state"), "5");
    w.borrow_mut().run();
    assert_eq!(be_state(&w, 3, r.devid).as_deref(), Some("5"));
    XsAccess::write(&mut r.xs, &fe(r.devid, "state"), "6");
    w.borrow_mut().run();
    assert_eq!(be_state(&w, 3, r.devid).as_deref(), Some("6"));
    assert_eq!(fabric.borrow().mapped, 0);
    // Write requests anyway and signal the old port.
    r.data.0.write(0, &[7; 4096]);
    r.ring
        .put_request(&rw(BlkifOp::Write, 1, 0, &[(r.data.1, 0, 7)]));
    r.ring.push_requests();
    fabric.borrow_mut().back_pending.push(local);
    w.borrow_mut().run();
    assert_eq!(r.ring_page.load_u32(RSP_PROD), 0);
    assert!(d.borrow().data.iter().all(|&b| b == 0));
    // Once the ring is gone, the grants can be revoked.
    assert!(fabric.borrow_mut().end(3, r.data.1));
}

#[test]
fn broken_connection_details_fail_the_connection() {
    type Tweak = Box<dyn FnOnce(&mut GuestXs, u32)>;
    let cases: Vec<(&str, Tweak)> = vec![
        (
            "garbage ring-ref",
            Box::new(|xs, d| {
                XsAccess::write(xs, &fe(d, "ring-ref"), "abc");
            }),
        ),
        (
            "ungranted ring-ref",
            Box::new(|xs, d| {
                XsAccess::write(xs, &fe(d, "ring-ref"), "4242");
            }),
        ),
        (
            "ring-ref too big",
            Box::new(|xs, d| {
                XsAccess::write(xs, &fe(d, "ring-ref"), "99999999999");
            }),
        ),
        (
            "no event channel",
            Box::new(|xs, d| {
                XsAccess::rm(xs, &fe(d, "event-channel"));
            }),
        ),
        (
            "unbound event channel",
            Box::new(|xs, d| {
                XsAccess::write(xs, &fe(d, "event-channel"), "999");
            }),
        ),
        (
            "32-bit protocol",
            Box::new(|xs, d| {
                XsAccess::write(xs, &fe(d, "protocol"), "x86_32-abi");
            }),
        ),
        (
            "ring-page-order 9",
            Box::new(|xs, d| {
                XsAccess::write(xs, &fe(d, "ring-page-order"), "9");
            }),
        ),
        (
            "ring-page-order without refs",
            Box::new(|xs, d| {
                XsAccess::write(xs, &fe(d, "ring-page-order"), "1");
            }),
        ),
        (
            "multi-queue",
            Box::new(|xs, d| {
                XsAccess::write(xs, &fe(d, "multi-queue-num-queues"), "4");
            }),
        ),
    ];
    for (what, tweak) in cases {
        let (w, fabric) = world();
        let r = raw_with(&w, &fabric, 3, disk(64), true, tweak);
        assert_eq!(be_state(&w, 3, r.devid).as_deref(), Some("5"), "{what}");
        assert_eq!(fabric.borrow().mapped, 0, "{what}");
        assert!(fabric.borrow().links.is_empty(), "{what}");
        let err = XsAccess::read(
            &mut w.borrow_mut().xs,
            &format!("/local/domain/0/error/backend/vbd/3/{}/error", r.devid),
        );
        assert!(err.is_some(), "{what}");
        assert!(
            w.borrow()
                .back
                .get(3, r.devid)
                .unwrap()
                .last_error()
                .is_some(),
            "{what}"
        );
    }
}

#[test]
fn random_ring_contents_never_hurt_dom0() {
    let (w, fabric) = world();
    let (mut good, _gd) = guest_with_disk(&w, &fabric, 1, 1024, Config::default());
    let d = disk(256);
    let mut r = raw(&w, &fabric, 3, d);
    let mut seed = 0x1234_5678_u64;
    let mut answered = 0u32;
    for round in 0..300u64 {
        let bytes = pattern(seed, 112 * 32);
        seed = seed.wrapping_add(0x9e37);
        let n = (bytes[0] % 8) as u32 + 1;
        for k in 0..n {
            let mut e = BlkifSringEntry::default();
            e.as_mut_bytes()
                .copy_from_slice(&bytes[k as usize * 112..(k as usize + 1) * 112]);
            // Make some of them plausible.
            if round % 3 == 0 {
                e.req.operation %= 7;
                e.req.nr_segments %= 12;
                e.req.sector_number %= 300;
                for s in e.req.seg.iter_mut() {
                    s.gref = [r.data.1, r.ro.1, s.gref][(s.gref % 3) as usize];
                    s.first_sect %= 9;
                    s.last_sect %= 9;
                }
            }
            assert!(r.ring.put_request(&e));
        }
        r.ring.push_requests();
        r.kick();
        w.borrow_mut().run();
        while let Some(rsp) = r.ring.next_response().unwrap() {
            assert!([OKAY, ERROR, NOTSUPP].contains(&rsp.status));
            answered += 1;
        }
    }
    assert!(answered > 1000);
    assert_eq!(be_state(&w, 3, r.devid).as_deref(), Some("4"));
    good.front.write(&mut good.host, 0, &[1; 512]).unwrap();
}

#[test]
fn hostile_backend_responses_disable_the_frontend() {
    let (w, fabric) = world();
    let (mut g, _d) = guest_with_disk(&w, &fabric, 1, 1024, Config::default());
    let gref: u32 = XsAccess::read(&mut g.xs, "device/vbd/51712/ring-ref")
        .unwrap()
        .parse()
        .unwrap();
    let page = fabric.borrow().grants.get(&(1, gref)).unwrap().page.clone();
    // One request in flight; a "backend" answers with an id never sent.
    let id = g
        .front
        .submit(&mut g.host, pv_guest_lib::blkfront::Op::Read, 0, 8, None)
        .unwrap();
    let bogus = BlkifResponse {
        id: id + 7,
        operation: BlkifOp::Read as u8,
        ..Default::default()
    };
    page.write(64, bogus.as_bytes());
    page.store_u32(RSP_PROD, 1);
    assert_eq!(g.front.poll(), Err(BlkError::Protocol));
    assert_eq!(
        g.front.read(&mut g.host, 0, &mut [0; 512]),
        Err(BlkError::Protocol)
    );
    assert!(g.front.info().is_none());
    // The frontend can still close cleanly.
    g.front.close(&mut g.xs, &mut g.host).unwrap();
    assert_eq!(g.front.state(), XenbusState::Closed);
}

#[test]
fn stray_events_are_ignored() {
    let (w, fabric) = world();
    let (mut g, _d) = guest_with_disk(&w, &fabric, 1, 1024, Config::default());
    {
        let mut d = w.borrow_mut();
        let d = &mut *d;
        for p in [0, 1, 99, u32::MAX] {
            assert!(!d.back.on_event(&mut d.xs, &mut d.host, p));
        }
    }
    g.front.write(&mut g.host, 0, &[1; 512]).unwrap();
}

#[test]
fn flush_with_data_is_a_durable_write() {
    // Linux's blkfront sends FUA writes as BLKIF_OP_FLUSH_DISKCACHE with
    // segments.
    let (w, fabric) = world();
    let d = disk(64);
    let mut r = raw(&w, &fabric, 3, d.clone());
    r.data.0.write(0, &[6; 4096]);
    let g = r.data.1;
    assert_eq!(
        r.status(rw(BlkifOp::FlushDiskcache, 1, 8, &[(g, 0, 7)])),
        OKAY
    );
    assert_eq!(&d.borrow().durable[4096..8192], &[6; 4096][..]);
    assert_eq!(
        r.status(rw(BlkifOp::FlushDiskcache, 2, 64, &[(g, 0, 7)])),
        ERROR
    );
    let mut e = rw(BlkifOp::FlushDiskcache, 3, 0, &[(g, 0, 7)]);
    e.req.nr_segments = 12;
    assert_eq!(r.status(e), ERROR);
}

// --- Xen security advisories (docs/xsa.md) ---------------------------------

/// The ring slot `i` of a single-page blkif ring, raw (64-byte header,
/// 112-byte slots).
fn raw_slot(page: &MemPage, i: usize) -> [u8; 112] {
    let mut b = [0u8; 112];
    page.read(64 + (i % 32) * 112, &mut b);
    b
}

/// XSA-216 (CVE-2017-10911: "an information leak flaw in Xen blkif
/// response handling, allowing a malicious unprivileged guest to obtain
/// sensitive information from the host or other guests"; the backends
/// built responses field by field, leaving their padding to stack
/// garbage). Oxen's blkback must write each response as a whole 16-byte
/// `blkif_response` with its padding zero: every byte of the slot's
/// response part is the id, operation, status or zero, whatever the
/// request there said, for successes, errors and unsupported operations.
#[test]
fn xsa_216_responses_leak_nothing_through_their_padding() {
    let (w, fabric) = world();
    let mut r = raw(&w, &fabric, 3, disk(64));
    let g = r.data.1;
    let cookie = 0xa5a5_a5a5_a5a5_a5a5u64;
    let mut ok = rw(BlkifOp::Read, cookie, 0, &[(g, 0, 7)]);
    let mut bad = rw(BlkifOp::Read, cookie ^ 1, 0, &[(4000, 0, 7)]);
    let mut odd = rw(BlkifOp::Read, cookie ^ 2, 0, &[]);
    odd.req.operation = 0x7f;
    for e in [&mut ok, &mut bad, &mut odd] {
        // Everything the backend might leave unwritten is non-zero.
        e.req.handle = 0xffff;
        e.req._pad4 = 0xffff_ffff;
    }
    let rsp = r.send(&[ok, bad, odd]);
    assert_eq!(rsp.len(), 3);
    for (i, want) in [(0, OKAY), (1, ERROR), (2, NOTSUPP)] {
        let slot = raw_slot(&r.ring_page, i);
        let mut expect = [0u8; 16];
        expect[..8].copy_from_slice(&(cookie ^ i as u64).to_le_bytes());
        expect[8] = [BlkifOp::Read as u8, BlkifOp::Read as u8, 0x7f][i];
        expect[10..12].copy_from_slice(&want.to_le_bytes());
        assert_eq!(slot[..16], expect, "response {i}: {:02x?}", &slot[..16]);
    }
    // The device is still connected and serving.
    assert_eq!(r.status(rw(BlkifOp::Read, 9, 0, &[(g, 0, 0)])), OKAY);
}

/// XSA-155 (CVE-2015-8550: with PV backends, guests could attack them "by
/// writing to memory shared between the frontend and backend, aka a
/// double fetch vulnerability"; Linux's fixes were "xen: Add
/// RING_COPY_REQUEST()", "xen-blkback: only read request operation from
/// shared ring once" and "xen-blkback: read from indirect descriptors only
/// once"). Oxen's blkback must take one private copy of each request and
/// of each indirect descriptor page and work from it: a frontend that
/// rewrites a consumed slot changes nothing, the descriptor page is read
/// exactly once per request, and a producer index claiming more than a
/// ring of requests disconnects the device without touching the disk.
#[test]
fn xsa_155_requests_and_indexes_are_read_once() {
    let (w, fabric) = world();
    let d = disk(8192);
    let mut r = raw(&w, &fabric, 3, d.clone());
    let g = r.data.1;
    r.data.0.write(0, &[7; 4096]);
    // A write of sector 8; answered and done.
    assert_eq!(r.status(rw(BlkifOp::Write, 1, 8, &[(g, 0, 0)])), OKAY);
    assert_eq!(&d.borrow().data[4096..4608], &[7; 512][..]);
    // The frontend now rewrites that consumed slot into a write of sector
    // 0 and kicks again without producing anything: the backend must not
    // look at the slot again.
    let mut evil = rw(BlkifOp::Write, 1, 0, &[(g, 0, 7)]);
    evil.req.nr_segments = 1;
    let off = 64;
    r.ring_page.write(off, evil.as_bytes());
    r.kick();
    w.borrow_mut().run();
    assert_eq!(&d.borrow().data[..4096], &[0; 4096][..], "slot re-read");
    assert_eq!(r.ring_page.load_u32(RSP_PROD), 1);
    // An indirect write of 20 segments: its descriptor page is fetched
    // once (so what the frontend writes there meanwhile cannot split the
    // checks from the use).
    let ind = MemPage::new();
    let ig = fabric.borrow_mut().grant(3, 0, &ind, false);
    let segs: Vec<BlkifRequestSegment> = (0..20)
        .map(|_| BlkifRequestSegment {
            gref: g,
            first_sect: 0,
            last_sect: 7,
            _pad6: 0,
        })
        .collect();
    ind.write(0, segs.as_bytes());
    let write = BlkifOp::Write as u8;
    assert_eq!(r.status(indirect(2, write, 64, 20, &[ig])), OKAY);
    assert_eq!(fabric.borrow().reads.get(&(3, ig)), Some(&1));
    assert_eq!(&d.borrow().data[64 * 512..64 * 512 + 4096], &[7; 4096][..]);
    assert_eq!(r.ring_page.load_u32(RSP_PROD), 2);
    // A producer index more than a ring ahead: the device disconnects
    // without touching the disk.
    r.ring_page.store_u32(REQ_PROD, 2 + 33);
    r.kick();
    w.borrow_mut().run();
    assert_eq!(be_state(&w, 3, r.devid).as_deref(), Some("5"));
    assert_eq!(&d.borrow().data[..4096], &[0; 4096][..]);
    assert_eq!(r.ring_page.load_u32(RSP_PROD), 2);
}
