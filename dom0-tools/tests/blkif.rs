//! pv-guest-lib's blkfront against Dom0's blkback, through the real
//! xenstored (guests talk to it over their ring pages), in-memory blkif
//! rings, a fake grant table and fake event channels.

mod blkif_world;

use blkif_world::*;
use dom0_tools::blkback::toolstack::{block_list, list_vbds, remove_vbd};
use dom0_tools::blkback::{self, backend_path, MemDisk, MAX_INDIRECT_SEGMENTS};
use hypercall_abi::io::xenbus::XenbusState;
use pv_guest_lib::blkfront::{BlkError, Blkfront, Config, Op, XsAccess};
use std::cell::RefCell;
use std::rc::Rc;

fn read_be(w: &World, devid: u32, domid: u16, key: &str) -> Option<String> {
    let p = format!("{}/{key}", backend_path(domid, devid));
    XsAccess::read(&mut w.borrow_mut().xs, &p)
}

#[test]
fn handshake_walks_the_states_and_publishes_the_keys() {
    let (w, fabric) = world();
    let disk = Rc::new(RefCell::new(MemDisk::new(2048)));
    let mut xs = guest_xs(&w, 3);
    let devid = add_disk(&w, 3, "xvda", true, disk.clone());
    assert_eq!(devid, 51712);
    assert_eq!(read_be(&w, devid, 3, "state").as_deref(), Some("2"));
    for (k, v) in [
        ("feature-flush-cache", "1"),
        ("feature-barrier", "1"),
        ("feature-discard", "1"),
        ("feature-max-indirect-segments", "256"),
        ("max-ring-page-order", "4"),
        ("mode", "w"),
        ("frontend", "/local/domain/3/device/vbd/51712"),
    ] {
        assert_eq!(read_be(&w, devid, 3, k).as_deref(), Some(v), "{k}");
    }
    let mut host = GuestHost::new(&w, &fabric, 3);
    let mut front = Blkfront::new(devid, None, Config::default());
    // Step by step: the frontend publishes its ring and goes Initialised.
    assert_eq!(
        front.xenbus_changed(&mut xs, &mut host).unwrap(),
        XenbusState::Initialised
    );
    assert_eq!(
        XsAccess::read(&mut xs, "device/vbd/51712/protocol").as_deref(),
        Some("x86_64-abi")
    );
    assert!(XsAccess::read(&mut xs, "device/vbd/51712/ring-ref").is_some());
    assert!(XsAccess::read(&mut xs, "device/vbd/51712/event-channel").is_some());
    w.borrow_mut().run();
    assert_eq!(read_be(&w, devid, 3, "state").as_deref(), Some("4"));
    assert_eq!(read_be(&w, devid, 3, "sectors").as_deref(), Some("2048"));
    assert_eq!(read_be(&w, devid, 3, "sector-size").as_deref(), Some("512"));
    assert_eq!(read_be(&w, devid, 3, "info").as_deref(), Some("0"));
    assert_eq!(
        front.xenbus_changed(&mut xs, &mut host).unwrap(),
        XenbusState::Connected
    );
    let info = front.info().unwrap();
    assert_eq!(info.sectors, 2048);
    assert!(info.flush && info.barrier && info.discard && !info.readonly());
    assert_eq!(info.max_segments, 32);
    assert_eq!(info.ring_pages, 1);
    assert_eq!(fabric.borrow().mapped, 1);

    // Close: 5 then 6 on both sides; every grant and mapping is gone.
    front.close(&mut xs, &mut host).unwrap();
    assert_eq!(front.state(), XenbusState::Closed);
    assert_eq!(read_be(&w, devid, 3, "state").as_deref(), Some("6"));
    assert_eq!(fabric.borrow().mapped, 0);
    assert_eq!(fabric.borrow().granted_by(3), 0);
    assert_eq!(host.pages, 0);
    assert!(!w.borrow().back.get(3, devid).unwrap().is_connected());

    // And it can come back (the frontend restarts at Initialising).
    front.restart(&mut xs, &mut host).unwrap();
    assert_eq!(
        XsAccess::read(&mut xs, "device/vbd/51712/state").as_deref(),
        Some("1")
    );
    w.borrow_mut().run();
    assert_eq!(read_be(&w, devid, 3, "state").as_deref(), Some("2"));
    front.connect_blocking(&mut xs, &mut host).unwrap();
    let data = pattern(1, 4096);
    front.write(&mut host, 8, &data).unwrap();
    assert_eq!(&disk.borrow().data[4096..8192], &data[..]);
}

#[test]
fn read_write_small_and_large_requests() {
    let (w, fabric) = world();
    let (mut g, disk) = guest_with_disk(&w, &fabric, 1, 16384, Config::default());
    let h = &mut g.host;
    // One sector, unaligned to pages.
    let one = pattern(2, 512);
    g.front.write(h, 3, &one).unwrap();
    assert_eq!(&disk.borrow().data[3 * 512..4 * 512], &one[..]);
    let mut back = vec![0u8; 512];
    g.front.read(h, 3, &mut back).unwrap();
    assert_eq!(back, one);
    // Direct requests (<= 11 pages) and indirect ones (up to 32), several
    // in flight: 1 MiB.
    let big = pattern(3, 1 << 20);
    g.front.write(h, 100, &big).unwrap();
    assert_eq!(
        &disk.borrow().data[100 * 512..100 * 512 + (1 << 20)],
        &big[..]
    );
    let mut rd = vec![0u8; 1 << 20];
    g.front.read(h, 100, &mut rd).unwrap();
    assert!(rd == big);
    let st = w.borrow().back.get(1, 51712).unwrap().stats();
    assert!(st.indirect >= 16, "{st:?}");
    assert_eq!(st.errors, 0);
    // Odd sizes: 13 sectors (a partial last page), 44 KiB (exactly 11 pages).
    for (sector, len) in [
        (7u64, 13 * 512usize),
        (1000, 11 * 4096),
        (2000, 12 * 4096 + 1024),
    ] {
        let d = pattern(sector, len);
        g.front.write(h, sector, &d).unwrap();
        let mut r = vec![0u8; len];
        g.front.read(h, sector, &mut r).unwrap();
        assert_eq!(r, d);
    }
    // Checks the frontend makes itself.
    assert_eq!(
        g.front.read(h, 16384, &mut [0u8; 512]),
        Err(BlkError::OutOfRange)
    );
    assert_eq!(
        g.front.read(h, 16383, &mut [0u8; 1024]),
        Err(BlkError::OutOfRange)
    );
    assert_eq!(g.front.write(h, 0, &[0u8; 100]), Err(BlkError::Unaligned));
    // Everything came back: nothing in flight, pool bounded.
    assert!(g.front.pool_pages() <= Config::default().max_pages);
}

#[test]
fn multi_page_ring_and_max_indirect() {
    let (w, fabric) = world();
    let cfg = Config {
        ring_page_order: 2,
        max_indirect_segments: 1024,
        max_pages: 2048,
    };
    let (mut g, disk) = guest_with_disk(&w, &fabric, 2, 65536, cfg);
    let info = g.front.info().unwrap();
    assert_eq!(info.ring_pages, 4);
    assert_eq!(info.max_segments, MAX_INDIRECT_SEGMENTS);
    assert_eq!(fabric.borrow().mapped, 4);
    let order = XsAccess::read(&mut g.xs, "device/vbd/51712/ring-page-order");
    assert_eq!(order.as_deref(), Some("2"));
    for i in 0..4 {
        assert!(XsAccess::read(&mut g.xs, &format!("device/vbd/51712/ring-ref{i}")).is_some());
    }
    // Many small requests in flight at once (more than a one-page ring).
    let h = &mut g.host;
    let mut ids = Vec::new();
    for i in 0..100u64 {
        let d = pattern(i, 512);
        ids.push(g.front.submit(h, Op::Write, i * 8, 1, Some(&d)).unwrap());
    }
    w.borrow_mut().run();
    g.front.poll().unwrap();
    for id in ids {
        assert_eq!(g.front.complete(id, None), Some(Ok(())));
    }
    for i in 0..100u64 {
        let s = (i * 8 * 512) as usize;
        assert_eq!(&disk.borrow().data[s..s + 512], &pattern(i, 512)[..]);
    }
    // 256 segments = one full-size indirect request (1 MiB).
    let big = pattern(9, 256 * 4096);
    g.front.write(h, 8192, &big).unwrap();
    let mut r = vec![0u8; big.len()];
    g.front.read(h, 8192, &mut r).unwrap();
    assert!(r == big);
}

#[test]
fn flush_and_barrier_make_writes_durable() {
    let (w, fabric) = world();
    let (mut g, disk) = guest_with_disk(&w, &fabric, 1, 4096, Config::default());
    let h = &mut g.host;
    let d = pattern(5, 8192);
    g.front.write(h, 0, &d).unwrap();
    assert_eq!(&disk.borrow().data[..8192], &d[..]);
    assert!(disk.borrow().durable[..8192].iter().all(|&b| b == 0));
    g.front.flush(h).unwrap();
    assert_eq!(&disk.borrow().durable[..8192], &d[..]);
    let d2 = pattern(6, 4096);
    g.front.write_barrier(h, 64, &d2).unwrap();
    assert_eq!(&disk.borrow().durable[64 * 512..64 * 512 + 4096], &d2[..]);
    // A barrier with data, as Linux's old frontends send it.
    let d3 = pattern(7, 4096);
    let id = g
        .front
        .submit(h, Op::WriteBarrier, 128, 8, Some(&d3))
        .unwrap();
    w.borrow_mut().run();
    g.front.poll().unwrap();
    assert_eq!(g.front.complete(id, None), Some(Ok(())));
    assert_eq!(&disk.borrow().durable[128 * 512..128 * 512 + 4096], &d3[..]);
    assert!(disk.borrow().flushes >= 4);
}

#[test]
fn discard() {
    let (w, fabric) = world();
    let (mut g, disk) = guest_with_disk(&w, &fabric, 1, 4096, Config::default());
    let h = &mut g.host;
    g.front.write(h, 0, &[0xaa; 8192]).unwrap();
    g.front.discard(h, 8, 8).unwrap();
    let mut r = vec![0u8; 8192];
    g.front.read(h, 0, &mut r).unwrap();
    assert!(r[..4096].iter().all(|&b| b == 0xaa));
    assert!(r[4096..].iter().all(|&b| b == 0));
    assert_eq!(disk.borrow().discards, 1);
    assert_eq!(g.front.discard(h, 4090, 8), Err(BlkError::OutOfRange));
    drop(w);
}

#[test]
fn discard_not_offered_when_the_store_cannot() {
    let (w, fabric) = world();
    let mut d = MemDisk::new(1024);
    d.discard = false;
    let disk = Rc::new(RefCell::new(d));
    let mut xs = guest_xs(&w, 4);
    let devid = add_disk(&w, 4, "xvdb", true, disk);
    assert_eq!(
        read_be(&w, devid, 4, "feature-discard").as_deref(),
        Some("0")
    );
    let mut host = GuestHost::new(&w, &fabric, 4);
    let mut front = Blkfront::new(devid, None, Config::default());
    front.connect_blocking(&mut xs, &mut host).unwrap();
    assert_eq!(front.discard(&mut host, 0, 8), Err(BlkError::NotSupported));
}

#[test]
fn read_only_disk() {
    let (w, fabric) = world();
    let disk = Rc::new(RefCell::new(MemDisk::new(1024)));
    disk.borrow_mut().data[..512].fill(7);
    let mut xs = guest_xs(&w, 5);
    let devid = add_disk(&w, 5, "xvdc", false, disk.clone());
    let mut host = GuestHost::new(&w, &fabric, 5);
    let mut front = Blkfront::new(devid, None, Config::default());
    let info = front.connect_blocking(&mut xs, &mut host).unwrap();
    assert!(info.readonly());
    assert!(!info.discard);
    assert_eq!(
        front.write(&mut host, 0, &[1; 512]),
        Err(BlkError::ReadOnly)
    );
    let mut r = [0u8; 512];
    front.read(&mut host, 0, &mut r).unwrap();
    assert_eq!(r, [7; 512]);
}

#[test]
fn two_guests_interleaved() {
    let (w, fabric) = world();
    let (mut a, da) = guest_with_disk(&w, &fabric, 1, 4096, Config::default());
    let (mut b, db) = guest_with_disk(&w, &fabric, 2, 4096, Config::default());
    for i in 0..20u64 {
        let pa = pattern(i, 4096);
        let pb = pattern(1000 + i, 4096);
        a.front.write(&mut a.host, i * 8, &pa).unwrap();
        b.front.write(&mut b.host, i * 8, &pb).unwrap();
    }
    for i in 0..20u64 {
        let s = (i * 4096) as usize;
        assert_eq!(&da.borrow().data[s..s + 4096], &pattern(i, 4096)[..]);
        assert_eq!(&db.borrow().data[s..s + 4096], &pattern(1000 + i, 4096)[..]);
    }
}

#[test]
fn hot_unplug() {
    let (w, fabric) = world();
    let (mut g, _disk) = guest_with_disk(&w, &fabric, 6, 1024, Config::default());
    // A second disk, plugged in while the guest runs.
    let d2 = Rc::new(RefCell::new(MemDisk::new(512)));
    let devid = add_disk(&w, 6, "xvdb", true, d2.clone());
    assert_eq!(list_vbds(&mut w.borrow_mut().xs, 6), vec![51712, 51728]);
    let bl = block_list(&mut w.borrow_mut().xs, 6);
    assert_eq!((bl[0].devid, bl[0].state, bl[0].frontend_id), (51712, 4, 6));
    assert!(bl[0].evtch > 0 && bl[0].rref > 0);
    assert_eq!((bl[1].state, bl[1].evtch, bl[1].rref), (2, -1, -1));
    assert_eq!(bl[1].backend, "/local/domain/0/backend/vbd/6/51728");
    let mut f2 = Blkfront::new(devid, None, Config::default());
    f2.connect_blocking(&mut g.xs, &mut g.host).unwrap();
    f2.write(&mut g.host, 0, &[3; 4096]).unwrap();
    assert_eq!(d2.borrow().data[0], 3);
    // xl block-detach: online=0, backend Closing; the frontend follows.
    {
        let mut d = w.borrow_mut();
        let d = &mut *d;
        assert!(d.back.detach(&mut d.xs, 6, devid));
    }
    for _ in 0..20 {
        f2.xenbus_changed(&mut g.xs, &mut g.host).unwrap();
        w.borrow_mut().run();
    }
    assert_eq!(f2.state(), XenbusState::Closed);
    assert_eq!(
        f2.write(&mut g.host, 0, &[3; 512]),
        Err(BlkError::NotConnected)
    );
    assert!(w.borrow().back.get(6, devid).is_none());
    assert_eq!(w.borrow().gone, vec![(6, devid)]);
    remove_vbd(&mut w.borrow_mut().xs, 6, devid);
    assert_eq!(list_vbds(&mut w.borrow_mut().xs, 6), vec![51712]);
    // The first disk still works, and only its ring (and the grants it
    // keeps mapped for the persistent frontend) is mapped.
    g.front.write(&mut g.host, 0, &[4; 512]).unwrap();
    let kept = w.borrow().back.get(6, 51712).unwrap().persistent_grants();
    assert!(kept > 0);
    assert_eq!(fabric.borrow().mapped, 1 + kept as u32);
}

#[test]
fn persistent_grants_replace_copies() {
    let (w, fabric) = world();
    let (mut g, disk) = guest_with_disk(&w, &fabric, 8, 1024, Config::default());
    let d = pattern(3, 8 * 4096);
    g.front.write(&mut g.host, 0, &d).unwrap();
    let mut back = vec![0u8; d.len()];
    g.front.read(&mut g.host, 0, &mut back).unwrap();
    assert_eq!(back, d);
    assert_eq!(&disk.borrow().data[..d.len()], &d[..]);
    // Our blkfront reuses its granted bounce pages: blkback maps each once
    // and copies nothing by GNTTABOP_copy.
    assert_eq!(fabric.borrow().copies, 0);
    let kept = w.borrow().back.get(8, 51712).unwrap().persistent_grants();
    assert!(kept > 0 && kept <= blkback::MAX_PERSISTENT);
    // Closing unmaps them all with the ring, before the frontend revokes
    // its grants (none is leaked).
    g.front.start_close(&mut g.xs).unwrap();
    for _ in 0..20 {
        g.front.xenbus_changed(&mut g.xs, &mut g.host).unwrap();
        w.borrow_mut().run();
    }
    assert_eq!(g.front.state(), XenbusState::Closed);
    assert_eq!(fabric.borrow().mapped, 0);
    assert_eq!(g.front.pool_pages(), 0);
}

#[test]
fn destroyed_domain_leaves_no_mappings() {
    let (w, fabric) = world();
    let (mut g, disk) = guest_with_disk(&w, &fabric, 7, 1024, Config::default());
    let d = pattern(1, 4096);
    g.front.write(&mut g.host, 0, &d).unwrap();
    g.front.flush(&mut g.host).unwrap();
    // Requests in flight when the domain dies.
    let _id = g
        .front
        .submit(&mut g.host, Op::Write, 8, 8, Some(&d))
        .unwrap();
    assert!(fabric.borrow().mapped > 0);
    {
        let mut dd = w.borrow_mut();
        let dd = &mut *dd;
        dd.back.remove_domain(&mut dd.host, 7);
    }
    assert_eq!(fabric.borrow().mapped, 0);
    assert!(fabric.borrow().links.is_empty());
    // What was flushed is on disk.
    assert_eq!(&disk.borrow().durable[..4096], &d[..]);
}

#[test]
fn frontend_vanishing_removes_the_device() {
    let (w, fabric) = world();
    let (_g, _disk) = guest_with_disk(&w, &fabric, 8, 1024, Config::default());
    {
        let mut d = w.borrow_mut();
        d.xs.rm("/local/domain/8/device").unwrap();
        d.run();
    }
    assert!(w.borrow().back.get(8, 51712).is_none());
    assert_eq!(fabric.borrow().mapped, 0);
}

#[test]
fn toolstack_closing_the_backend_unplugs_like_libxl() {
    let (w, fabric) = world();
    let (mut g, _disk) = guest_with_disk(&w, &fabric, 9, 1024, Config::default());
    // libxl's device removal: online = 0, backend state = Closing.
    {
        let mut d = w.borrow_mut();
        let be = backend_path(9, 51712);
        XsAccess::write(&mut d.xs, &format!("{be}/online"), "0");
        XsAccess::write(&mut d.xs, &format!("{be}/state"), "5");
    }
    for _ in 0..10 {
        g.front.xenbus_changed(&mut g.xs, &mut g.host).unwrap();
        w.borrow_mut().run();
    }
    assert_eq!(g.front.state(), XenbusState::Closed);
    assert_eq!(read_be(&w, 51712, 9, "state").as_deref(), Some("6"));
    assert!(w.borrow().back.get(9, 51712).is_none());
    assert_eq!(fabric.borrow().mapped, 0);
    assert_eq!(fabric.borrow().granted_by(9), 0);
    assert_eq!(g.host.pages, 0);
}

#[test]
fn small_bounce_pools_still_move_big_buffers() {
    let (w, fabric) = world();
    for max_pages in [1usize, 4, 15, 20] {
        let cfg = Config {
            max_pages,
            ..Config::default()
        };
        let domid = 10 + max_pages as u16;
        let (mut g, disk) = guest_with_disk(&w, &fabric, domid, 1024, cfg);
        assert!(g.front.max_request_bytes() <= max_pages * 4096);
        let p = pattern(max_pages as u64, 100 * 1024);
        g.front.write(&mut g.host, 16, &p).unwrap();
        assert_eq!(&disk.borrow().data[16 * 512..16 * 512 + p.len()], &p[..]);
        let mut r = vec![0u8; p.len()];
        g.front.read(&mut g.host, 16, &mut r).unwrap();
        assert!(r == p);
        assert!(g.front.pool_pages() <= max_pages);
    }
    // The low-level API with a too-short buffer: no panic, short copy.
    let (mut g, disk) = guest_with_disk(&w, &fabric, 40, 1024, Config::default());
    disk.borrow_mut().data[..4096].fill(3);
    let id = g.front.submit(&mut g.host, Op::Read, 0, 64, None).unwrap();
    w.borrow_mut().run();
    g.front.poll().unwrap();
    let mut short = [0u8; 100];
    assert_eq!(g.front.complete(id, Some(&mut short)), Some(Ok(())));
    assert_eq!(short, [3; 100]);
    assert_eq!(g.front.complete(id, None), None);
    assert_eq!(g.front.complete(u64::MAX, None), None);
}

#[test]
fn online_resize() {
    let (w, fabric) = world();
    let (mut g, disk) = guest_with_disk(&w, &fabric, 1, 1024, Config::default());
    assert_eq!(
        g.front.write(&mut g.host, 1024, &[1; 512]),
        Err(BlkError::OutOfRange)
    );
    disk.borrow_mut().data.resize(2048 * 512, 0);
    disk.borrow_mut().durable.resize(2048 * 512, 0);
    {
        let mut d = w.borrow_mut();
        let d = &mut *d;
        d.back.get_mut(1, 51712).unwrap().resized(&mut d.xs);
    }
    g.front.xenbus_changed(&mut g.xs, &mut g.host).unwrap();
    assert_eq!(g.front.info().unwrap().sectors, 2048);
    g.front.write(&mut g.host, 1024, &[1; 512]).unwrap();
    assert_eq!(disk.borrow().data[1024 * 512], 1);
}

#[test]
fn a_disk_spec_from_xl_cfg_becomes_a_connected_vbd() {
    use dom0_tools::blkback::toolstack::{add_vbd, VbdSpec};
    use dom0_tools::xlcfg::disk::parse_disk_spec;
    let (w, fabric) = world();
    let mut xs = guest_xs(&w, 2);
    let spec = parse_disk_spec("format=raw, vdev=xvdb, access=ro, target=/images/b.img").unwrap();
    {
        let mut d = w.borrow_mut();
        let d = &mut *d;
        add_vbd(&mut d.xs, &VbdSpec::from_disk(2, &spec)).unwrap();
        d.back.add(
            &mut d.xs,
            &mut d.host,
            2,
            spec.devid,
            Box::new(MemDisk::new(256)),
        );
    }
    assert_eq!(
        read_be(&w, 51728, 2, "params").as_deref(),
        Some("/images/b.img")
    );
    assert_eq!(read_be(&w, 51728, 2, "mode").as_deref(), Some("r"));
    let mut host = GuestHost::new(&w, &fabric, 2);
    let mut front = Blkfront::new(spec.devid, None, Config::default());
    let info = front.connect_blocking(&mut xs, &mut host).unwrap();
    assert!(info.readonly());
    assert_eq!(info.sectors, 256);
}

/// A store with a queue that logs what blkback asks of it (`submit`,
/// `flush`, `complete N`): submitted reads and writes stay in flight
/// until it waits (`wait_any`) or `auto` is set.
struct Logged {
    disk: Rc<RefCell<MemDisk>>,
    log: Rc<RefCell<Vec<String>>>,
    queue: Rc<RefCell<Vec<blkback::OwnedIo>>>,
    ready: Rc<std::cell::Cell<usize>>,
    auto: Rc<std::cell::Cell<bool>>,
}

impl blkback::BlockStore for Logged {
    fn sectors(&self) -> u64 {
        self.disk.borrow().data.len() as u64 / 512
    }
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), blkback::IoError> {
        self.log.borrow_mut().push("read".into());
        self.disk.borrow_mut().read(sector, buf)
    }
    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), blkback::IoError> {
        self.log.borrow_mut().push("write".into());
        self.disk.borrow_mut().write(sector, data)
    }
    fn flush(&mut self) -> Result<(), blkback::IoError> {
        assert!(self.queue.borrow().is_empty(), "flush with I/O in flight");
        self.log.borrow_mut().push("flush".into());
        self.disk.borrow_mut().flush()
    }
    fn submit(&mut self, io: blkback::OwnedIo) -> blkback::Submitted {
        self.log.borrow_mut().push("submit".into());
        self.queue.borrow_mut().push(io);
        blkback::Submitted::InFlight
    }
    fn poll_completed(
        &mut self,
        owner: u64,
    ) -> Vec<(blkback::OwnedIo, Result<(), blkback::IoError>)> {
        let n = if self.auto.get() {
            self.queue.borrow().len()
        } else {
            self.ready.replace(0)
        };
        if n == 0 {
            return Vec::new();
        }
        self.log.borrow_mut().push(format!("complete {n}"));
        let ios: Vec<_> = self.queue.borrow_mut().drain(..n).collect();
        ios.into_iter()
            .map(|mut io| {
                assert_eq!(io.owner, owner);
                let mut d = self.disk.borrow_mut();
                let b = &mut io.buf.bytes()[..io.len];
                let r = if io.write {
                    d.write(io.sector, b)
                } else {
                    d.read(io.sector, b)
                };
                (io, r)
            })
            .collect()
    }
    fn outstanding(&self, _owner: u64) -> usize {
        self.queue.borrow().len()
    }
    fn wait_any(&mut self) {
        self.ready.set(self.queue.borrow().len());
    }
}

#[test]
fn queued_requests_go_to_the_store_as_batches_split_at_flushes() {
    use blkback::BlockStore as _;
    let (w, fabric) = world();
    let disk = Rc::new(RefCell::new(MemDisk::new(4096)));
    disk.borrow_mut().bad_sector = Some(4000);
    let log = Rc::new(RefCell::new(Vec::new()));
    let auto = Rc::new(std::cell::Cell::new(false));
    let xs = guest_xs(&w, 1);
    let devid = add_disk(
        &w,
        1,
        "xvda",
        true,
        Logged {
            disk: disk.clone(),
            log: log.clone(),
            queue: Rc::default(),
            ready: Rc::default(),
            auto: auto.clone(),
        },
    );
    let mut g = Guest {
        front: Blkfront::new(devid, None, Config::default()),
        host: GuestHost::new(&w, &fabric, 1),
        xs,
    };
    g.front.connect_blocking(&mut g.xs, &mut g.host).unwrap();
    disk.borrow_mut().write(0, &pattern(9, 4096)).unwrap();
    log.borrow_mut().clear();
    let h = &mut g.host;
    let (a, b, c) = (pattern(1, 8192), pattern(2, 4096), pattern(3, 65536));
    // Two writes, a read, a read of a bad sector, a flush and two more
    // writes (one indirect): all on the ring before blkback looks.
    let ids = [
        g.front.submit(h, Op::Write, 64, 16, Some(&a)).unwrap(),
        g.front.submit(h, Op::Write, 128, 8, Some(&b)).unwrap(),
        g.front.submit(h, Op::Read, 0, 8, None).unwrap(),
        g.front.submit(h, Op::Read, 4000, 8, None).unwrap(),
        g.front.submit(h, Op::Flush, 0, 0, None).unwrap(),
        g.front.submit(h, Op::Write, 256, 8, Some(&b)).unwrap(),
        g.front.submit(h, Op::Write, 512, 128, Some(&c)).unwrap(),
    ];
    w.borrow_mut().run();
    // The reads and writes before the flush go to the store one by one
    // as they come off the ring; the flush waits for all four; the two
    // after it stay in flight until the store finishes them.
    assert_eq!(
        *log.borrow(),
        [
            "submit",
            "submit",
            "submit",
            "submit",
            "complete 4",
            "flush",
            "submit",
            "submit"
        ]
    );
    assert_eq!(w.borrow().back.get(1, devid).unwrap().in_flight(), 2);
    g.front.poll().unwrap();
    for &id in &ids[5..] {
        assert_eq!(g.front.complete(id, None), None, "answered while in flight");
    }
    auto.set(true);
    {
        let mut d = w.borrow_mut();
        let d = &mut *d;
        d.back.service(&mut d.xs, &mut d.host);
    }
    assert_eq!(log.borrow().last().map(String::as_str), Some("complete 2"));
    g.front.poll().unwrap();
    let mut r = vec![0u8; 4096];
    let mut res = Vec::new();
    for (k, &id) in ids.iter().enumerate() {
        let out = (k == 2).then_some(&mut r[..]);
        res.push(g.front.complete(id, out));
    }
    assert_eq!(
        res,
        [
            Some(Ok(())),
            Some(Ok(())),
            Some(Ok(())),
            Some(Err(BlkError::Io)),
            Some(Ok(())),
            Some(Ok(())),
            Some(Ok(()))
        ]
    );
    assert!(r == pattern(9, 4096));
    let d = disk.borrow();
    assert!(d.durable[64 * 512..80 * 512] == a[..]);
    assert!(d.durable[128 * 512..136 * 512] == b[..]);
    // Written after the flush: not durable yet.
    assert!(d.data[256 * 512..264 * 512] == b[..]);
    assert!(d.durable[256 * 512..264 * 512].iter().all(|&x| x == 0));
    assert!(d.data[512 * 512..640 * 512] == c[..]);
    drop(d);
    let s = w.borrow().back.get(1, devid).unwrap().stats();
    assert_eq!((s.reads, s.writes, s.flushes, s.errors), (1, 4, 1, 1));
}

#[test]
fn grants_past_the_persistent_budget_go_by_copy_beside_mapped_ones() {
    let (w, fabric) = world();
    let cfg = Config {
        max_indirect_segments: MAX_INDIRECT_SEGMENTS,
        max_pages: 2048,
        ..Config::default()
    };
    let (mut g, disk) = guest_with_disk(&w, &fabric, 9, 16384, cfg);
    let h = &mut g.host;
    // Three 1 MiB writes in flight: 768 data pages and 3 indirect ones,
    // more than a device keeps mapped.
    let data: Vec<Vec<u8>> = (0..3).map(|k| pattern(20 + k, 1 << 20)).collect();
    let ids: Vec<u64> = (0..3)
        .map(|k| {
            g.front
                .submit(h, Op::Write, k * 2048, 2048, Some(&data[k as usize]))
                .unwrap()
        })
        .collect();
    w.borrow_mut().run();
    g.front.poll().unwrap();
    for id in ids {
        assert_eq!(g.front.complete(id, None), Some(Ok(())));
    }
    assert_eq!(
        w.borrow().back.get(9, 51712).unwrap().persistent_grants(),
        blkback::MAX_PERSISTENT
    );
    assert!(fabric.borrow().copies > 0);
    for (k, d) in data.iter().enumerate() {
        let at = k * (1 << 20);
        assert!(disk.borrow().data[at..at + d.len()] == d[..]);
        let mut back = vec![0u8; d.len()];
        g.front
            .read(&mut g.host, k as u64 * 2048, &mut back)
            .unwrap();
        assert!(back == *d, "request {k} read back");
    }
}

#[test]
fn a_device_removed_with_io_in_flight_waits_for_it_before_unmapping() {
    let (w, fabric) = world();
    let disk = Rc::new(RefCell::new(MemDisk::new(4096)));
    let log = Rc::new(RefCell::new(Vec::new()));
    let queue: Rc<RefCell<Vec<blkback::OwnedIo>>> = Rc::default();
    let xs = guest_xs(&w, 1);
    let devid = add_disk(
        &w,
        1,
        "xvda",
        true,
        Logged {
            disk: disk.clone(),
            log: log.clone(),
            queue: queue.clone(),
            ready: Rc::default(),
            auto: Rc::default(),
        },
    );
    let mut g = Guest {
        front: Blkfront::new(devid, None, Config::default()),
        host: GuestHost::new(&w, &fabric, 1),
        xs,
    };
    g.front.connect_blocking(&mut g.xs, &mut g.host).unwrap();
    let h = &mut g.host;
    let a = pattern(4, 8192);
    g.front.submit(h, Op::Write, 64, 16, Some(&a)).unwrap();
    g.front.submit(h, Op::Read, 0, 8, None).unwrap();
    w.borrow_mut().run();
    assert_eq!(queue.borrow().len(), 2);
    assert!(fabric.borrow().mapped > 0);
    {
        let mut d = w.borrow_mut();
        let d = &mut *d;
        assert!(d.back.remove(&mut d.host, 1, devid));
    }
    // Both finished on the store before anything was unmapped; nothing
    // is mapped any more and nothing was answered.
    assert!(queue.borrow().is_empty());
    assert_eq!(log.borrow().last().map(String::as_str), Some("complete 2"));
    assert_eq!(fabric.borrow().mapped, 0);
    assert!(disk.borrow().data[64 * 512..80 * 512] == a[..]);
}

#[test]
fn data_in_place_goes_through_the_lent_pages() {
    use pv_guest_lib::xenbus::page::SharedPage;
    let (w, fabric) = world();
    let (mut g, disk) = guest_with_disk(&w, &fabric, 4, 2048, Config::default());
    let a = pattern(7, 3 * 4096 + 1024);
    let h = &mut g.host;
    let mut lent = Vec::new();
    let id = g
        .front
        .submit_in_place(h, Op::Write, 16, a.len() as u64 / 512, &mut |k, page| {
            lent.push(k);
            let end = (k * 4096 + 4096).min(a.len());
            page.write(0, &a[k * 4096..end]);
        })
        .unwrap();
    assert_eq!(lent, [0, 1, 2, 3]);
    w.borrow_mut().run();
    g.front.poll().unwrap();
    assert_eq!(g.front.complete(id, None), Some(Ok(())));
    assert!(disk.borrow().data[16 * 512..16 * 512 + a.len()] == a[..]);
    let h = &mut g.host;
    let id = g
        .front
        .submit_in_place(h, Op::Read, 16, a.len() as u64 / 512, &mut |_, _| {})
        .unwrap();
    w.borrow_mut().run();
    g.front.poll().unwrap();
    let mut back = vec![0u8; a.len()];
    let r = g.front.complete_in_place(id, &mut |k, page, n| {
        page.read(0, &mut back[k * 4096..k * 4096 + n]);
    });
    assert_eq!(r, Some(Ok(())));
    assert!(back == a);
    // A write in place needs no buffer; a copying one still checks its.
    let h = &mut g.host;
    assert_eq!(
        g.front.submit(h, Op::Write, 0, 8, None),
        Err(BlkError::Unaligned)
    );
}

/// A store that takes scattered I/O and moves it "in place": each piece's
/// fake bus address names the frontend's granted page, which it reads or
/// writes through the fabric, as a device's DMA would.
struct InPlace {
    disk: Rc<RefCell<MemDisk>>,
    fabric: Shared,
    /// The pieces of each I/O it was given.
    seen: Rc<RefCell<Vec<Vec<blkback::DmaSeg>>>>,
}

impl InPlace {
    fn run(&mut self, io: &mut blkback::OwnedIo) -> Result<(), blkback::IoError> {
        use blkback::BlockStore;
        use pv_guest_lib::xenbus::page::SharedPage;
        let segs = io.buf.dma_segments().ok_or(blkback::IoError::Io)?.to_vec();
        self.seen.borrow_mut().push(segs.clone());
        let mut data = vec![0u8; io.len];
        if !io.write {
            self.disk.borrow_mut().read(io.sector, &mut data)?;
        }
        let f = self.fabric.borrow();
        let mut pos = 0;
        for s in &segs {
            let (domid, gref, off) = dma_target(s.va);
            let e = f.grants.get(&(domid, gref)).ok_or(blkback::IoError::Io)?;
            let piece = &mut data[pos..pos + s.len as usize];
            if io.write {
                e.page.read(usize::from(off), piece);
            } else {
                e.page.write(usize::from(off), piece);
            }
            pos += s.len as usize;
        }
        drop(f);
        if io.write {
            self.disk.borrow_mut().write(io.sector, &data)?;
        }
        Ok(())
    }
}

impl blkback::BlockStore for InPlace {
    fn sectors(&self) -> u64 {
        self.disk.borrow().data.len() as u64 / 512
    }
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), blkback::IoError> {
        self.disk.borrow_mut().read(sector, buf)
    }
    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), blkback::IoError> {
        self.disk.borrow_mut().write(sector, data)
    }
    fn flush(&mut self) -> Result<(), blkback::IoError> {
        self.disk.borrow_mut().flush()
    }
    fn takes_segments(&self) -> bool {
        true
    }
    fn submit(&mut self, mut io: blkback::OwnedIo) -> blkback::Submitted {
        let r = self.run(&mut io);
        blkback::Submitted::Done(io, r)
    }
}

#[test]
fn a_store_that_takes_segments_gets_the_frontends_pages_in_place() {
    let (w, fabric) = world();
    let disk = Rc::new(RefCell::new(MemDisk::new(4096)));
    let seen = Rc::default();
    let xs = guest_xs(&w, 1);
    let devid = add_disk(
        &w,
        1,
        "xvda",
        true,
        InPlace {
            disk: disk.clone(),
            fabric: fabric.clone(),
            seen: Rc::clone(&seen),
        },
    );
    let mut g = Guest {
        front: Blkfront::new(devid, None, Config::default()),
        host: GuestHost::new(&w, &fabric, 1),
        xs,
    };
    g.front.connect_blocking(&mut g.xs, &mut g.host).unwrap();
    // An odd length and offset: pieces that are not whole pages.
    let a = pattern(11, 5 * 4096 + 1536);
    g.front.write(&mut g.host, 9, &a).unwrap();
    assert!(disk.borrow().data[9 * 512..9 * 512 + a.len()] == a[..]);
    let mut back = vec![0u8; a.len()];
    g.front.read(&mut g.host, 9, &mut back).unwrap();
    assert!(back == a, "a read in place lands in the frontend's pages");
    // Every piece went to the store as an address in a granted page,
    // covering the request exactly; nothing went by grant copy.
    let seen = seen.borrow();
    assert!(seen.len() >= 2);
    for segs in seen.iter() {
        assert!(segs
            .iter()
            .all(|s| s.len > 0 && (s.va & 0xfff) + u64::from(s.len) <= 4096));
    }
    let moved: u64 = seen.iter().flatten().map(|s| u64::from(s.len)).sum();
    assert_eq!(moved, 2 * a.len() as u64);
    assert_eq!(fabric.borrow().copies, 0);
    let st = w.borrow().back.get(1, devid).unwrap().stats();
    assert_eq!(st.in_place, seen.len() as u64);
    assert_eq!(st.reads + st.writes, st.in_place);
}
