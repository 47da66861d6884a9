//! Guest (domU) for `scripts/bench`'s toolstack figures (issue 4): the
//! xenstore round trip as a guest sees it, beside its floor.
//!
//! `xl-bench` (Dom0) creates it with `xl create`; it connects to xenstored
//! through [`pv_guest_lib::domu::connect`] and times, in TSC cycles (median
//! and minimum, timing overhead subtracted):
//!
//! - `xs_read`: `XS_READ` of its own `name` (request on the ring, event to
//!   Dom0, xenstored answers, event back, reply taken off the ring);
//! - `xs_write`: `XS_WRITE` of `data/bench` (the node the toolstack makes
//!   writable for the guest), same path plus the store's update;
//! - `evtchn_self`: the floor, `EVTCHNOP_send` on an IPI port bound to
//!   itself until its handler has run (through pv-guest-lib's event entry,
//!   the same way the xenstore reply's event arrives). An event-channel
//!   round trip is the least a ring request costs.
//!
//!
//! Then two cross-domain figures, with Dom0 (`xl-bench`) on the other end:
//!
//! - it grants Dom0 a page (reference in `data/copy-gref`); Dom0 times
//!   `GNTTABOP_copy` of it into a frame of its own (`grant_copy_domu`,
//!   beside a 4 KiB `memcpy` in Dom0) and says so in `data/copy-done`;
//! - `evtchn_pingpong`: an event to Dom0 over an inter-domain channel
//!   (its port in `data/pingpong-port`), whose handler sends one straight
//!   back, until this guest's handler has run: the round trip between two
//!   domains, beside its floor `evtchn_self`.
//!
//! It prints one `BENCH name=...` line per figure on its console (Dom0
//! relays them to the serial console), then its verdict, and powers off.
//! Timings are never judged: the verdict says only whether every request
//! got its answer.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    use core::arch::asm;
    use core::sync::atomic::{AtomicU64, Ordering};

    use dom0_tools::bench::{decimal, Line, Stats};
    use hypercall_abi::xen::DOMID_SELF;
    use pv_guest_lib::frame;
    use pv_guest_lib::grant::GrantTable;
    use pv_guest_lib::xenbus::metal::StoreTransport;
    use pv_guest_lib::xenbus::{Xenbus, NO_TX};
    use pv_guest_lib::{domu, events, println, runtime, time, StartInfo, Verdict};

    pv_guest_lib::entry!(kmain);

    /// Timed iterations per figure (odd: the median is a sample).
    const ITERS: usize = 301;
    /// Untimed iterations first.
    const WARMUP: usize = 8;
    /// The node `xs_write` writes (relative to the domain's home).
    const WRITE_NODE: &str = "data/bench";

    #[inline(always)]
    fn tsc() -> u64 {
        let lo: u32;
        let hi: u32;
        // SAFETY: lfence and rdtsc only order execution and read the TSC.
        unsafe {
            asm!("lfence", "rdtsc", "lfence", out("eax") lo, out("edx") hi, options(nostack))
        };
        (u64::from(hi) << 32) | u64::from(lo)
    }

    /// Times `f` `WARMUP + samples.len()` times, keeping the last ones;
    /// false (and stops) as soon as `f` fails.
    fn time(samples: &mut [u64], mut f: impl FnMut() -> bool) -> bool {
        for _ in 0..WARMUP {
            if !f() {
                return false;
            }
        }
        for s in samples.iter_mut() {
            let t0 = tsc();
            let ok = f();
            *s = tsc().wrapping_sub(t0);
            if !ok {
                return false;
            }
        }
        true
    }

    fn report(name: &str, samples: &mut [u64], ovh: u64) {
        if let Some(stats) = Stats::of(samples) {
            let stats = stats.minus(ovh);
            println!(
                "{}",
                Line::Figure {
                    name,
                    stats,
                    per: None
                }
            );
        }
    }

    static FIRED: AtomicU64 = AtomicU64::new(0);

    fn on_ipi(_port: events::Port, _data: usize) {
        FIRED.fetch_add(1, Ordering::SeqCst);
    }

    /// Where the grant table is mapped.
    const GT_VA: u64 = 0xffff_c000_0020_0000;
    /// How long Dom0 may take to answer (ns).
    const PEER_NS: u64 = 30_000_000_000;

    /// Sends on `port` and sleeps until the handler has run, up to `ns`.
    /// Sleeping, not spinning: with Dom0 and this guest sharing a CPU, a
    /// spinning guest would hold it until the scheduler took it away, and
    /// the figure would be the time slice, not the round trip.
    fn ping(port: events::Port, ns: u64) -> bool {
        let before = FIRED.load(Ordering::SeqCst);
        if events::send(port).is_err() {
            return false;
        }
        let deadline = time::now_ns() + ns;
        let back = || FIRED.load(Ordering::SeqCst) != before;
        time::block_until(deadline, back) == time::Wake::Ready
    }

    /// The cross-domain figures (see the header): a page granted to Dom0
    /// for its grant copies, then the event ping-pong.
    fn cross_domain(xs: &mut Xenbus<StoreTransport>, v: &mut Verdict, s: &mut [u64], ovh: u64) {
        let mut gt = match GrantTable::setup(1, GT_VA) {
            Ok(gt) => gt,
            Err(e) => return v.fail(format_args!("GNTTABOP_setup_table: {e}")),
        };
        let page = match frame::alloc_frame() {
            Ok(p) => p,
            Err(e) => return v.fail(format_args!("a frame to grant: {e:?}")),
        };
        for k in 0..4096u64 {
            // SAFETY: a frame of ours, direct-mapped writable; k < 4096.
            unsafe { core::ptr::write_volatile((page.va as *mut u8).add(k as usize), k as u8) };
        }
        let gref = match gt.grant_access(0, page.mfn, true) {
            Ok(r) => r,
            Err(e) => return v.fail(format_args!("grant a page to Dom0: {e}")),
        };
        let mut buf = [0u8; 20];
        let r = xs.write(NO_TX, "data/copy-gref", decimal(u64::from(gref), &mut buf));
        if let Err(e) = r {
            return v.fail(format_args!("XS_WRITE data/copy-gref: {e}"));
        }
        let deadline = time::now_ns() + PEER_NS;
        let done = loop {
            match xs.read(NO_TX, "data/copy-done") {
                Ok(d) => break Some(d),
                Err(_) if time::now_ns() < deadline => time::sleep_ns(1_000_000),
                Err(_) => break None,
            }
        };
        match done.as_deref() {
            Some(b"ok") => {}
            Some(d) => v.fail(format_args!(
                "Dom0's grant copies: {}",
                core::str::from_utf8(d).unwrap_or("?")
            )),
            None => v.fail(format_args!("Dom0 never copied from our grant")),
        }
        if let Err(e) = gt.end_access(gref) {
            v.fail(format_args!("end the grant: {e}"));
        }

        let port = match events::alloc_unbound(DOMID_SELF, 0) {
            Ok(p) => p,
            Err(e) => return v.fail(format_args!("EVTCHNOP_alloc_unbound for Dom0: {e}")),
        };
        let _ = events::set_handler(port, on_ipi, 0);
        let _ = events::unmask(port);
        let r = xs.write(
            NO_TX,
            "data/pingpong-port",
            decimal(u64::from(port), &mut buf),
        );
        if let Err(e) = r {
            return v.fail(format_args!("XS_WRITE data/pingpong-port: {e}"));
        }
        // Dom0 binds when it sees the node: until then nothing comes back.
        let deadline = time::now_ns() + PEER_NS;
        while !ping(port, 10_000_000) {
            if time::now_ns() > deadline {
                events::unbind(port);
                let _ = events::close(port);
                return v.fail(format_args!("Dom0 never answered on port {port}"));
            }
        }
        if time(s, || ping(port, 1_000_000_000)) {
            report("evtchn_pingpong", s, ovh);
        } else {
            v.fail(format_args!("an event to Dom0 was not answered"));
        }
        events::unbind(port);
        let _ = events::close(port);
    }

    fn kmain(si: &'static StartInfo) -> ! {
        println!("domu-xsbench: xenstore round trips (TSC cycles; median, min)");
        let mut v = Verdict::new();
        if !domu::is_domu(si) {
            v.error(format_args!(
                "this is a domU benchmark: start it with xl create"
            ));
            v.finish()
        }
        if let Err(e) = runtime::init() {
            v.error(format_args!("runtime::init: {e}"));
            v.finish()
        }
        let mut xs = match domu::connect(si) {
            Ok(xs) => xs,
            Err(e) => {
                v.error(format_args!("domu::connect: {e}"));
                v.finish()
            }
        };
        let mut s = [0u64; ITERS];
        time(&mut s, || true);
        let ovh = Stats::of(&mut s).map_or(0, |s| s.median);
        println!("domu-xsbench: timing overhead {ovh} cycles (subtracted from every figure)");

        // The floor: an event to ourselves, until its handler ran.
        match events::bind_ipi(0) {
            Ok(port) => {
                let _ = events::set_handler(port, on_ipi, 0);
                let _ = events::unmask(port);
                events::irq_enable();
                let ok = time(&mut s, || {
                    let before = FIRED.load(Ordering::SeqCst);
                    if events::send(port).is_err() {
                        return false;
                    }
                    let mut spins = 0u32;
                    while FIRED.load(Ordering::SeqCst) == before {
                        core::hint::spin_loop();
                        spins += 1;
                        if spins > 100_000_000 {
                            return false;
                        }
                    }
                    true
                });
                events::unbind(port);
                let _ = events::close(port);
                if ok {
                    report("evtchn_self", &mut s, ovh);
                } else {
                    v.fail(format_args!("an event sent to ourselves never arrived"));
                }
            }
            Err(e) => v.fail(format_args!("EVTCHNOP_bind_ipi: {e}")),
        }

        let mut err = None;
        let name = xs.read(NO_TX, "name");
        match &name {
            Ok(n) => println!(
                "domu-xsbench: my name is \"{}\"",
                core::str::from_utf8(n).unwrap_or("?")
            ),
            Err(e) => v.fail(format_args!("XS_READ name: {e}")),
        }
        if name.is_ok() {
            if time(&mut s, || match xs.read(NO_TX, "name") {
                Ok(_) => true,
                Err(e) => {
                    err = Some(e);
                    false
                }
            }) {
                report("xs_read", &mut s, ovh);
            } else if let Some(e) = err.take() {
                v.fail(format_args!("XS_READ name: {e}"));
            }
            let mut i = 0u32;
            if time(&mut s, || {
                i = i.wrapping_add(1);
                let mut buf = [0u8; 20];
                let val = dom0_tools::bench::decimal(u64::from(i), &mut buf);
                match xs.write(NO_TX, WRITE_NODE, val) {
                    Ok(()) => true,
                    Err(e) => {
                        err = Some(e);
                        false
                    }
                }
            }) {
                report("xs_write", &mut s, ovh);
            } else if let Some(e) = err.take() {
                v.fail(format_args!("XS_WRITE {WRITE_NODE}: {e}"));
            }
            match xs.read(NO_TX, WRITE_NODE) {
                Ok(last) => {
                    let mut buf = [0u8; 20];
                    let want = dom0_tools::bench::decimal(u64::from(i), &mut buf);
                    if last != want {
                        v.fail(format_args!("{WRITE_NODE} does not hold the last write"));
                    }
                }
                Err(e) => v.fail(format_args!("XS_READ {WRITE_NODE}: {e}")),
            }
        }
        cross_domain(&mut xs, &mut v, &mut s, ovh);
        v.finish()
    }
}
