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

    use dom0_tools::bench::{Line, Stats};
    use pv_guest_lib::xenbus::NO_TX;
    use pv_guest_lib::{domu, events, println, runtime, StartInfo, Verdict};

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
        v.finish()
    }
}
