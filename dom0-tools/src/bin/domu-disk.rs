//! A guest (domU) that exercises its virtual disks through blkfront, for
//! issue 5's batch scenarios. Its command line (xl.cfg `extra=`) picks
//! the scenario:
//!
//! - `mode=pattern mib=N`: on a disk whose sector 0 holds no pattern
//!   header, writes an N MiB pattern from byte 4096, reads it back,
//!   flushes, writes the header and reboots; after the reboot (the header
//!   is there) it reads the pattern again and powers off. The pattern's
//!   8-byte word at disk byte offset `o` is `(o / 8) * PATTERN_MUL ^
//!   PATTERN_SEED` (little endian), so the host can check the image file.
//! - `mode=hotplug`: starts without disks, waits for one to be hot-plugged
//!   (`xl block-attach`), connects, reads its label, writes and reads back
//!   a block, then waits for `xl block-detach` and closes cleanly.
//! - `mode=churn`: writes numbered 64 KiB records round a 16 MiB ring
//!   on xvda, each followed by a flush, forever; every 8th acknowledged
//!   flush is announced, so that after `xl destroy` the host can check
//!   that the last announced record is on the disk.
//! - `mode=hostile`: a frontend that misbehaves on purpose. Through
//!   blkfront on xvda: a read past the end. With a hand-made ring on xvdb:
//!   a bad grant reference, zero and too many segments, a segment whose
//!   sectors are reversed, an unknown operation — each must get an error
//!   response with the device still working; then a producer index far
//!   past the ring, which must get the device disconnected (Dom0 records
//!   why in xenstore, where the guest cannot read it); then requests after the close, which must go unanswered.
//! - `mode=bench`: sequential write and read MB/s and 4 KiB random read
//!   IOPS on xvda, as `BENCH` lines.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    extern crate alloc;
    use alloc::format;
    use alloc::string::String;
    use alloc::vec;
    use dom0_tools::pvtest::Checks;
    use hypercall_abi::io::xenbus::XenbusState;
    use hypercall_abi::sched::ShutdownReason;
    use pv_guest_lib::blkfront::{
        metal::MetalHost, BlkError, Blkfront, Config, DiskInfo, FrontHost, Op,
    };
    use pv_guest_lib::grant::GrantTable;
    use pv_guest_lib::xenbus::metal::StoreTransport;
    use pv_guest_lib::xenbus::{Xenbus, NO_TX};
    use pv_guest_lib::{domu, println, runtime, time, xen, StartInfo};

    pv_guest_lib::entry!(main);

    /// Where the grant table is mapped.
    const GT_VA: u64 = 0xffff_c000_0020_0000;
    /// `xvda`.
    const XVDA: u32 = 51712;
    /// The pattern (see the module documentation).
    const PATTERN_MUL: u64 = 0x9e37_79b9_7f4a_7c15;
    const PATTERN_SEED: u64 = 0x0e0e_4f58_454e_0005;
    /// Where the pattern starts (bytes).
    const PATTERN_START: u64 = 4096;
    /// Bytes per transfer in the pattern and bench modes.
    const CHUNK: usize = 256 * 1024;
    /// The churn ring: 256 records of 64 KiB.
    const CHURN_RECORDS: u64 = 256;
    const CHURN_RECORD: usize = 64 * 1024;

    type Front<'a> = Blkfront<MetalHost<'a>>;
    type Store = Xenbus<StoreTransport>;

    fn dbg(e: impl core::fmt::Debug) -> String {
        format!("{e:?}")
    }

    /// `key=value` from the command line.
    fn arg<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
        cmdline
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
    }

    fn header(mib: u64) -> String {
        format!("OXEN-PATTERN v1 mib={mib} start={PATTERN_START}\n")
    }

    fn fill_pattern(offset: u64, buf: &mut [u8]) {
        for (i, w) in buf.chunks_exact_mut(8).enumerate() {
            let word = (offset / 8 + i as u64).wrapping_mul(PATTERN_MUL) ^ PATTERN_SEED;
            w.copy_from_slice(&word.to_le_bytes());
        }
    }

    fn main(si: &'static StartInfo) -> ! {
        let mut c = Checks::new("domu-disk");
        if runtime::init().is_err() {
            c.error(format_args!("runtime init"));
            c.finish();
        }
        let cmdline = si.cmd_line();
        let mut xs = match domu::connect(si) {
            Ok(xs) => xs,
            Err(e) => {
                c.error(format_args!("connect to xenstore: {e:?}"));
                c.finish();
            }
        };
        let mut gt = match GrantTable::setup(4, GT_VA) {
            Ok(gt) => gt,
            Err(e) => {
                c.error(format_args!("set up the grant table: {e:?}"));
                c.finish();
            }
        };
        let mut host = MetalHost::new(&mut gt);
        host.patience(30_000_000_000);
        match arg(cmdline, "mode") {
            Some("pattern") => pattern(&mut c, &mut xs, &mut host, cmdline),
            Some("hotplug") => hotplug(&mut c, &mut xs, &mut host),
            Some("churn") => churn(&mut c, &mut xs, &mut host),
            Some("bench") => bench(&mut c, &mut xs, &mut host),
            Some("hostile") => hostile::run(&mut c, &mut xs, &mut host, si),
            m => c.error(format_args!(
                "unknown mode {m:?} (command line {cmdline:?})"
            )),
        }
        c.finish()
    }

    fn connect<'a>(
        c: &mut Checks,
        xs: &mut Store,
        host: &mut MetalHost<'a>,
        devid: u32,
    ) -> Option<(Front<'a>, DiskInfo)> {
        connect_with(c, xs, host, devid, Config::default())
    }

    fn connect_with<'a>(
        c: &mut Checks,
        xs: &mut Store,
        host: &mut MetalHost<'a>,
        devid: u32,
        cfg: Config,
    ) -> Option<(Front<'a>, DiskInfo)> {
        let mut disk = Blkfront::new(devid, None, cfg);
        c.ok(
            &format!("blkfront connects to blkback (vbd {devid})"),
            disk.connect_blocking(xs, host)
                .map(|i| i.sectors)
                .map_err(dbg),
        )?;
        let info = disk.info()?;
        println!(
            "domu-disk: vbd {devid}: {} sectors of {} bytes, flush {}, {} segments per request",
            info.sectors, info.sector_size, info.flush, info.max_segments
        );
        Some((disk, info))
    }

    fn mb_s(bytes: u64, ns: u64) -> u64 {
        bytes * 1000 / ns.max(1)
    }

    fn pattern(c: &mut Checks, xs: &mut Store, host: &mut MetalHost<'_>, cmdline: &str) {
        let mib: u64 = arg(cmdline, "mib")
            .and_then(|m| m.parse().ok())
            .unwrap_or(64);
        let Some((mut disk, info)) = connect(c, xs, host, XVDA) else {
            return;
        };
        let bytes = mib << 20;
        if !c.check(
            "the disk holds the pattern",
            info.bytes() >= PATTERN_START + bytes,
            format_args!("{} bytes, want {}", info.bytes(), PATTERN_START + bytes),
        ) {
            return;
        }
        let mut s0 = vec![0u8; 512];
        if c.ok("read sector 0", disk.read(host, 0, &mut s0).map_err(dbg))
            .is_none()
        {
            return;
        }
        let h = header(mib);
        let rebooted = s0.starts_with(h.as_bytes());
        let mut buf = vec![0u8; CHUNK];
        let mut want = vec![0u8; CHUNK];
        if !rebooted {
            println!("domu-disk: no pattern on the disk: writing {mib} MiB");
            let t0 = time::now_ns();
            let mut off = 0;
            while off < bytes {
                fill_pattern(PATTERN_START + off, &mut buf);
                if let Err(e) = disk.write(host, (PATTERN_START + off) / 512, &buf) {
                    c.error(format_args!("write at byte {off}: {e:?}"));
                    return;
                }
                off += CHUNK as u64;
            }
            c.ok("flush", disk.flush(host).map_err(dbg));
            let dt = time::now_ns() - t0;
            println!(
                "domu-disk: wrote {mib} MiB in {} ms ({} MB/s)",
                dt / 1_000_000,
                mb_s(bytes, dt)
            );
        }
        let t0 = time::now_ns();
        let mut bad = None;
        let mut off = 0;
        while off < bytes {
            if let Err(e) = disk.read(host, (PATTERN_START + off) / 512, &mut buf) {
                c.error(format_args!("read at byte {off}: {e:?}"));
                return;
            }
            fill_pattern(PATTERN_START + off, &mut want);
            if buf != want && bad.is_none() {
                bad = Some(off);
            }
            off += CHUNK as u64;
        }
        let dt = time::now_ns() - t0;
        let what = if rebooted {
            "after the reboot the pattern reads back"
        } else {
            "the pattern reads back"
        };
        c.check(
            what,
            bad.is_none(),
            format_args!(
                "{mib} MiB in {} ms ({} MB/s), first difference at {bad:?}",
                dt / 1_000_000,
                mb_s(bytes, dt)
            ),
        );
        if rebooted || bad.is_some() {
            return;
        }
        s0.fill(0);
        s0[..h.len()].copy_from_slice(h.as_bytes());
        c.ok("write the header", disk.write(host, 0, &s0).map_err(dbg));
        c.ok("flush", disk.flush(host).map_err(dbg));
        let (_, failed) = c.counts();
        if failed == 0 {
            println!("domu-disk: pattern written and checked; rebooting");
            let _ = disk.close(xs, host);
            xen::shutdown(ShutdownReason::Reboot);
        }
    }

    /// Waits for a vbd to appear under `device/vbd`.
    fn wait_for_vbd(xs: &mut Store, deadline: u64) -> Option<u32> {
        while time::now_ns() < deadline {
            if let Ok(ids) = xs.directory(NO_TX, "device/vbd") {
                if let Some(id) = ids.iter().find_map(|i| i.parse().ok()) {
                    return Some(id);
                }
            }
            time::sleep_ns(50_000_000);
        }
        None
    }

    fn hotplug(c: &mut Checks, xs: &mut Store, host: &mut MetalHost<'_>) {
        let none = xs
            .directory(NO_TX, "device/vbd")
            .map_or(true, |d| d.is_empty());
        c.check("the guest starts without disks", none, format_args!(""));
        println!("domu-disk: waiting for a disk to be hot-plugged");
        let Some(devid) = wait_for_vbd(xs, time::now_ns() + 60_000_000_000) else {
            c.error(format_args!("no disk was hot-plugged within 60 s"));
            return;
        };
        println!("domu-disk: vbd {devid} appeared");
        let Some((mut disk, info)) = connect(c, xs, host, devid) else {
            return;
        };
        let mut s0 = vec![0u8; 512];
        if c.ok("read sector 0", disk.read(host, 0, &mut s0).map_err(dbg))
            .is_some()
        {
            let label = s0.split(|&b| b == 0 || b == b'\n').next().unwrap_or(&[]);
            println!(
                "domu-disk: hot-plugged disk label: {}",
                core::str::from_utf8(label).unwrap_or("?")
            );
        }
        let block: vec::Vec<u8> = (0..4096u32).map(|i| (i * 13 + 7) as u8).collect();
        let last = info.bytes() / 512 - 8;
        c.ok(
            "write 4 KiB at the end",
            disk.write(host, last, &block).map_err(dbg),
        );
        c.ok("flush", disk.flush(host).map_err(dbg));
        let mut back = vec![0u8; 4096];
        c.ok(
            "read it back",
            disk.read(host, last, &mut back).map_err(dbg),
        );
        c.check(
            "the hot-plugged disk reads back what was written",
            back == block,
            format_args!(""),
        );
        println!("domu-disk: waiting for the disk to be unplugged");
        let deadline = time::now_ns() + 60_000_000_000;
        let mut closed = false;
        while time::now_ns() < deadline {
            match disk.xenbus_changed(xs, host) {
                Ok(XenbusState::Closed) => {
                    closed = true;
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    c.error(format_args!("xenbus: {e:?}"));
                    break;
                }
            }
            time::sleep_ns(20_000_000);
        }
        // Let the backend finish, then make sure every page came back.
        let _ = disk.close(xs, host);
        c.check(
            "the unplugged disk closed cleanly",
            closed && disk.port().is_none(),
            format_args!("state {:?}", disk.state()),
        );
        c.check(
            "I/O to the unplugged disk fails",
            disk.read(host, 0, &mut s0).is_err(),
            format_args!(""),
        );
    }

    fn churn(c: &mut Checks, xs: &mut Store, host: &mut MetalHost<'_>) {
        let Some((mut disk, info)) = connect(c, xs, host, XVDA) else {
            return;
        };
        if !c.check(
            "the disk holds the churn ring",
            info.bytes() >= CHURN_RECORDS * CHURN_RECORD as u64,
            format_args!("{} bytes", info.bytes()),
        ) {
            return;
        }
        let mut rec = vec![0u8; CHURN_RECORD];
        let mut n: u64 = 0;
        println!("domu-disk: churning (records of 64 KiB, each flushed)");
        loop {
            let tag = format!("OXEN-CHURN record {n:>10}\n");
            rec.fill((n % 251) as u8);
            rec[..tag.len()].copy_from_slice(tag.as_bytes());
            let sector = (n % CHURN_RECORDS) * (CHURN_RECORD as u64 / 512);
            if let Err(e) = disk.write(host, sector, &rec) {
                c.error(format_args!("write of record {n}: {e:?}"));
                return;
            }
            if let Err(e) = disk.flush(host) {
                c.error(format_args!("flush after record {n}: {e:?}"));
                return;
            }
            if n % 8 == 7 {
                println!("domu-disk: flushed record {n}");
            }
            n += 1;
        }
    }

    /// Requests kept in flight: each figure is taken at each depth (as
    /// Dom0's `disk-bench`).
    const DEPTHS: [usize; 2] = [1, 8];

    /// One request of `buf.len()` bytes per sector `at` yields (`op` a
    /// read or a write), up to `depth` in flight through blkfront's
    /// submit/poll/complete. The data stays in blkfront's granted pages
    /// (`submit_in_place`/`complete_in_place`): like Dom0's `disk-bench`,
    /// which reads into and writes from its own buffers, nothing is
    /// copied per request and nothing looks at the data. How many were
    /// done; `None` on an error.
    fn stream<'a>(
        disk: &mut Blkfront<MetalHost<'a>>,
        host: &mut MetalHost<'a>,
        op: Op,
        at: &mut dyn Iterator<Item = u64>,
        depth: usize,
        buf: &mut [u8],
    ) -> Option<u64> {
        let sectors = (buf.len() / 512) as u64;
        let mut inflight: vec::Vec<u64> = vec::Vec::with_capacity(depth);
        let (mut done, mut held) = (0u64, None);
        loop {
            while inflight.len() < depth {
                let Some(s) = held.take().or_else(|| at.next()) else {
                    break;
                };
                // The data in place, in the granted pages themselves (as
                // Dom0's bench, no copy per request; see `bench`).
                match disk.submit_in_place(host, op, s, sectors, &mut |_, _| {}) {
                    Ok(id) => inflight.push(id),
                    // Out of ring slots or pages: wait for one.
                    Err(BlkError::Busy) if !inflight.is_empty() => {
                        held = Some(s);
                        break;
                    }
                    Err(_) => return None,
                }
            }
            if inflight.is_empty() {
                return Some(done);
            }
            disk.poll().ok()?;
            let before = inflight.len();
            let mut failed = false;
            inflight.retain(|&id| match disk.complete_in_place(id, &mut |_, _, _| {}) {
                None => true,
                Some(r) => {
                    failed |= r.is_err();
                    false
                }
            });
            if failed {
                return None;
            }
            done += (before - inflight.len()) as u64;
            if inflight.len() == before && !host.wait() {
                return None;
            }
        }
    }

    fn bench(c: &mut Checks, xs: &mut Store, host: &mut MetalHost<'_>) {
        // One 256 KiB request per chunk, as Dom0's `disk-bench` issues;
        // pages for the deepest queue (data and one indirect page each).
        let pages = CHUNK / 4096;
        let cfg = Config {
            max_indirect_segments: pages as u32,
            max_pages: DEPTHS.iter().max().copied().unwrap_or(1) * (pages + 1),
            ..Config::default()
        };
        let Some((mut disk, info)) = connect_with(c, xs, host, XVDA, cfg) else {
            return;
        };
        let span = (info.bytes() / 2).min(32 << 20) / CHUNK as u64 * CHUNK as u64;
        let mut buf = vec![0x5au8; CHUNK];
        let mut one = vec![0u8; 4096];
        for depth in DEPTHS {
            let seq = || (0..span).step_by(CHUNK).map(|off| off / 512);
            let t0 = time::now_ns();
            if stream(&mut disk, host, Op::Write, &mut seq(), depth, &mut buf).is_none() {
                c.error(format_args!("bench write, depth {depth}"));
                return;
            }
            let _ = disk.flush(host);
            let w = time::now_ns() - t0;
            let t0 = time::now_ns();
            if stream(&mut disk, host, Op::Read, &mut seq(), depth, &mut buf).is_none() {
                c.error(format_args!("bench read, depth {depth}"));
                return;
            }
            let r = time::now_ns() - t0;
            let pages = span / 4096;
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
            let Some(ios) = stream(&mut disk, host, Op::Read, &mut rand, depth, &mut one) else {
                c.error(format_args!("bench random read, depth {depth}"));
                return;
            };
            let iops = ios * 1_000_000_000 / (time::now_ns() - t0).max(1);
            println!(
                "BENCH blk_guest_seq_write_mb_s {} bytes={span} depth={depth}",
                mb_s(span, w)
            );
            println!(
                "BENCH blk_guest_seq_read_mb_s {} bytes={span} depth={depth}",
                mb_s(span, r)
            );
            println!("BENCH blk_guest_rand_read_4k_iops {iops} depth={depth}");
        }
    }

    mod hostile {
        //! The misbehaving frontend (`mode=hostile`).
        use super::*;
        use hypercall_abi::io::blkif::{BlkifOp, BlkifRsp, BlkifSringEntry};
        use pv_guest_lib::blkfront::metal::MetalPage;
        use pv_guest_lib::blkfront::ring::{FrontRing, SharedRing};
        use pv_guest_lib::blkfront::{read_state, write_state, FrontHost, XsAccess};
        use pv_guest_lib::xenbus::page::SharedPage;

        /// `xvdb`.
        const XVDB: u32 = 51728;

        struct Raw {
            ring: FrontRing<MetalPage>,
            port: u32,
            fe: String,
            be: String,
            data: MetalPage,
            data_gref: u32,
        }

        fn wait_state(xs: &mut Store, path: &str, want: &[XenbusState], ms: u64) -> XenbusState {
            let end = time::now_ns() + ms * 1_000_000;
            loop {
                let s = read_state(xs, path);
                if want.contains(&s) || time::now_ns() > end {
                    return s;
                }
                time::sleep_ns(10_000_000);
            }
        }

        /// xvdb's handshake by hand: a one-page ring, its grant, a port.
        fn connect(c: &mut Checks, xs: &mut Store, host: &mut MetalHost<'_>) -> Option<Raw> {
            let fe = format!("device/vbd/{XVDB}");
            let be = XsAccess::read(xs, &format!("{fe}/backend"))?;
            let s = wait_state(xs, &format!("{be}/state"), &[XenbusState::InitWait], 10_000);
            if !c.check(
                "xvdb's backend waits for us",
                s == XenbusState::InitWait,
                format_args!("{s:?}"),
            ) {
                return None;
            }
            let page = host.alloc_page()?;
            let gref = host.grant(0, &page, false)?;
            let data = host.alloc_page()?;
            let data_gref = host.grant(0, &data, false)?;
            let port = host.alloc_evtchn(0)?;
            let ring = FrontRing::new(SharedRing::new(alloc::vec![page])?);
            XsAccess::write(xs, &format!("{fe}/ring-ref"), &format!("{gref}"));
            XsAccess::write(xs, &format!("{fe}/event-channel"), &format!("{port}"));
            XsAccess::write(xs, &format!("{fe}/protocol"), "x86_64-abi");
            write_state(xs, &format!("{fe}/state"), XenbusState::Initialised);
            let s = wait_state(
                xs,
                &format!("{be}/state"),
                &[XenbusState::Connected],
                10_000,
            );
            c.check(
                "the hand-made ring connects",
                s == XenbusState::Connected,
                format_args!("{s:?}"),
            );
            write_state(xs, &format!("{fe}/state"), XenbusState::Connected);
            Some(Raw {
                ring,
                port,
                fe,
                be,
                data,
                data_gref,
            })
        }

        fn request(op: u8, nr_segments: u8, sector: u64, id: u64) -> BlkifSringEntry {
            let mut e = BlkifSringEntry::default();
            e.req.operation = op;
            e.req.nr_segments = nr_segments;
            e.req.handle = XVDB as u16;
            e.req.id = id;
            e.req.sector_number = sector;
            e
        }

        /// Sends one request and waits for its response's status.
        fn send(
            r: &mut Raw,
            host: &mut MetalHost<'_>,
            e: &BlkifSringEntry,
            ms: u64,
        ) -> Option<i16> {
            if !r.ring.put_request(e) {
                return None;
            }
            r.ring.push_requests();
            host.notify(r.port);
            let end = time::now_ns() + ms * 1_000_000;
            while time::now_ns() < end {
                if let Ok(Some(rsp)) = r.ring.next_response() {
                    return (rsp.id == e.req.id).then_some(rsp.status);
                }
                time::sleep_ns(2_000_000);
            }
            None
        }

        pub fn run(c: &mut Checks, xs: &mut Store, host: &mut MetalHost<'_>, _si: &StartInfo) {
            // Through blkfront: out of range, then still working.
            if let Some((mut disk, info)) = super::connect(c, xs, host, XVDA) {
                let mut b = vec![0u8; 4096];
                c.check(
                    "a read past the end of xvda gets an error response",
                    disk.read(host, info.sectors, &mut b[..512]).is_err()
                        && disk.read(host, info.sectors - 1, &mut b[..1024]).is_err(),
                    format_args!("sector {}", info.sectors),
                );
                c.check(
                    "xvda still works after it",
                    disk.read(host, 0, &mut b).is_ok() && info.sectors > 8,
                    format_args!(""),
                );
                let _ = disk.close(xs, host);
            }
            let Some(mut r) = connect(c, xs, host) else {
                return;
            };
            let read = BlkifOp::Read as u8;
            let mut id = 100;
            let mut next = |op: u8, nseg: u8, sector: u64| {
                id += 1;
                request(op, nseg, sector, id)
            };
            // A good request first: the ring works.
            let mut e = next(read, 1, 0);
            e.req.seg[0].gref = r.data_gref;
            e.req.seg[0].first_sect = 0;
            e.req.seg[0].last_sect = 7;
            let ok = send(&mut r, host, &e, 5000);
            c.check(
                "a well-formed read on the hand-made ring succeeds",
                ok == Some(BlkifRsp::Okay as i16),
                format_args!("{ok:?}"),
            );
            let mut label = [0u8; 16];
            r.data.read(0, &mut label);
            println!(
                "domu-disk: xvdb's first bytes: {:?}",
                core::str::from_utf8(&label).unwrap_or("?")
            );
            let mut cases: vec::Vec<(&str, BlkifSringEntry, i16)> = vec::Vec::new();
            let mut e = next(read, 1, 0);
            e.req.seg[0].gref = 0x7fff_0000;
            e.req.seg[0].last_sect = 7;
            cases.push(("a bad grant reference", e, BlkifRsp::Error as i16));
            let mut e = next(read, 1, 0);
            e.req.seg[0].gref = 0;
            e.req.seg[0].last_sect = 7;
            cases.push((
                "a grant of another domain's table entry 0",
                e,
                BlkifRsp::Error as i16,
            ));
            cases.push(("zero segments", next(read, 0, 0), BlkifRsp::Error as i16));
            cases.push((
                "too many segments (200)",
                next(read, 200, 0),
                BlkifRsp::Error as i16,
            ));
            let mut e = next(read, 1, 0);
            e.req.seg[0].gref = r.data_gref;
            e.req.seg[0].first_sect = 6;
            e.req.seg[0].last_sect = 2;
            cases.push(("reversed sectors in a segment", e, BlkifRsp::Error as i16));
            let mut e = next(read, 1, 0);
            e.req.seg[0].gref = r.data_gref;
            e.req.seg[0].first_sect = 0;
            e.req.seg[0].last_sect = 9;
            cases.push(("a segment past its page", e, BlkifRsp::Error as i16));
            let mut e = next(read, 1, u64::MAX - 3);
            e.req.seg[0].gref = r.data_gref;
            e.req.seg[0].last_sect = 7;
            cases.push(("a sector number that wraps", e, BlkifRsp::Error as i16));
            cases.push((
                "an unknown operation (99)",
                next(99, 0, 0),
                BlkifRsp::Eopnotsupp as i16,
            ));
            for (what, e, want) in &cases {
                let got = send(&mut r, host, e, 5000);
                c.check(
                    &format!("{what} gets an error response"),
                    got == Some(*want),
                    format_args!("status {got:?}, want {want}"),
                );
            }
            let mut e = next(read, 1, 8);
            e.req.seg[0].gref = r.data_gref;
            e.req.seg[0].last_sect = 7;
            let ok = send(&mut r, host, &e, 5000);
            c.check(
                "after them the ring still works",
                ok == Some(BlkifRsp::Okay as i16),
                format_args!("{ok:?}"),
            );
            // A producer index far past the ring.
            let page = &r.ring.shared().pages()[0];
            let prod = page.load_u32(0);
            page.store_u32(0, prod.wrapping_add(1000));
            host.notify(r.port);
            let s = wait_state(
                xs,
                &format!("{}/state", r.be),
                &[XenbusState::Closing, XenbusState::Closed],
                10_000,
            );
            c.check(
                "a producer index 1000 past the ring gets the device disconnected",
                matches!(s, XenbusState::Closing | XenbusState::Closed),
                format_args!("backend state {s:?}"),
            );
            // We close; requests after that are not answered.
            write_state(xs, &format!("{}/state", r.fe), XenbusState::Closed);
            let s = wait_state(
                xs,
                &format!("{}/state", r.be),
                &[XenbusState::Closed],
                10_000,
            );
            c.check(
                "the backend closes after us",
                s == XenbusState::Closed,
                format_args!("{s:?}"),
            );
            let page = &r.ring.shared().pages()[0];
            page.store_u32(0, prod.wrapping_add(1));
            host.notify(r.port);
            time::sleep_ns(300_000_000);
            c.check(
                "a request after the close goes unanswered",
                page.load_u32(8) == 0 || page.load_u32(8) == prod,
                format_args!("rsp_prod {}", page.load_u32(8)),
            );
        }
    }
}
