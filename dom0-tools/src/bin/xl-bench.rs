//! Test Dom0: the toolstack benchmarks behind `scripts/bench --only
//! toolstack` (issue 4).
//!
//! Runs Dom0's toolstack ([`Toolstack`], the `xl` back end) the way Dom0
//! does, but drives it directly instead of from the shell, and times in
//! TSC cycles and in nanoseconds (the clock), each figure beside a floor
//! measured in the same boot:
//!
//! - `builder_alone` (floor of the next): the PV domain builder alone
//!   building the example guest (`/boot/hello`, 16 MiB, as
//!   `/etc/xen/hello.cfg` says), the domain left paused;
//! - `xl_create_first_line`: `xl create /etc/xen/hello.cfg` (parse the
//!   config, build, console and xenstore set-up, unpause) until the
//!   guest's first console line is in the console back-end's backlog,
//!   running the back ends ([`Toolstack::service`]) meanwhile, as Dom0's
//!   shell does: median of [`CREATES`];
//! - `domctl_destroy` (floor of the next): `XEN_DOMCTL_destroydomain` alone
//!   of a just-built (never run) domain of the same size;
//! - `xl_destroy`: `xl destroy` of the running example guest (xenstore
//!   and console teardown, unmapping its rings, the domctl);
//! - then it creates `domu-xsbench` (`/boot/domu-xsbench`) and relays its
//!   console to the serial console as `[d<id>] ...`: that guest prints
//!   the xenstore round trips (`xs_read`, `xs_write`) beside its floor
//!   (`evtchn_self`), see `domu-xsbench.rs`, and, with this Dom0 on the
//!   other end, the cross-domain figures: `evtchn_pingpong` (an event to
//!   Dom0 and straight back, beside `evtchn_self`), `grant_copy_domu`
//!   (`GNTTABOP_copy` of the guest's granted page into Dom0, beside a
//!   4 KiB `memcpy` in Dom0, `memcpy_4k_dom0`). Without that kernel in
//!   the ramdisk those figures are `n/a`.
//!
//! One `BENCH name=...` line per figure (`dom0_tools::bench`); the verdict
//! is SUCCESS if every step worked (every guest built, said its first
//! line, was destroyed, and memory came back exactly); timings are never
//! judged.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    extern crate alloc;

    use alloc::string::String;
    use alloc::vec;
    use alloc::vec::Vec;
    use core::arch::asm;

    use dom0_tools::bench::{has_line, Line, Relay, Stats};
    use dom0_tools::builder::{self, GuestConfig};
    use dom0_tools::pvtest::{Checks, ConsoleOut};
    use dom0_tools::ramdisk::{Archive, Kind};
    use dom0_tools::toolstack::Toolstack;
    use dom0_tools::xc;
    use dom0_tools::xl::backend::CreateRequest;
    use dom0_tools::xl::XlBackend;
    use pv_guest_lib::grant::{self, CopyPtr};
    use pv_guest_lib::{events, frame, println, time, StartInfo};

    pv_guest_lib::entry!(main);

    /// `xl create`s timed (the median of 20).
    const CREATES: usize = 20;
    /// Untimed ones first.
    const WARMUP: usize = 2;
    /// Heap pages for the toolstack (as Dom0: the builder parses a copy of
    /// each guest kernel).
    const HEAP_PAGES: u64 = 4096;
    /// The example guest, as Dom0's ramdisk carries it.
    const HELLO_CFG: &str = "/etc/xen/hello.cfg";
    const HELLO_KERNEL: &str = "/boot/hello";
    /// What hello.cfg says (the builder-alone floor builds the same).
    const HELLO_MIB: u64 = 16;
    const HELLO_CMDLINE: &[u8] = b"hello from xl";
    /// The xenstore benchmark guest.
    const XSBENCH_KERNEL: &str = "/boot/domu-xsbench";
    /// How long one guest may take to say its first line, or the xenstore
    /// guest to finish.
    const FIRST_LINE_NS: u64 = 30_000_000_000;
    const XSBENCH_NS: u64 = 240_000_000_000;
    /// Figures the xenstore guest prints.
    const XS_FIGURES: &[&str] = &[
        "evtchn_self",
        "xs_read",
        "xs_write",
        "evtchn_pingpong",
        "memcpy_4k_dom0",
        "grant_copy_domu",
    ];
    /// Timed grant copies (and memcpys) from domu-xsbench's page.
    const COPIES: usize = 301;

    /// Dom0's end of domu-xsbench's cross-domain figures (see its
    /// header): grant copies from the page it grants, and the echo of its
    /// ping-pong events. Dom0's own figure lines wait until the guest is
    /// done, so the lines come in one order.
    #[derive(Default)]
    struct Cross {
        copied: bool,
        lines: Vec<String>,
        error: Option<String>,
        pong: Option<events::Port>,
    }

    /// Dom0's side of the ping-pong: every event is sent straight back.
    fn echo(port: events::Port, _data: usize) {
        let _ = events::send(port);
    }

    impl Cross {
        fn step(&mut self, ts: &mut Toolstack, id: u16, ovh: u64) {
            let node = |n: &str| alloc::format!("/local/domain/{id}/data/{n}");
            let number =
                |v: Vec<u8>| -> Option<u32> { core::str::from_utf8(&v).ok()?.parse().ok() };
            if !self.copied {
                if let Some(v) = ts.xenstore_read(&node("copy-gref")) {
                    self.copied = true;
                    let r = number(v)
                        .ok_or_else(|| String::from("data/copy-gref is no number"))
                        .and_then(|gref| self.copies(id, gref, ovh));
                    let answer = match &r {
                        Ok(()) => String::from("ok"),
                        Err(e) => e.clone(),
                    };
                    if let Err(e) = r {
                        self.error.get_or_insert(e);
                    }
                    let _ = ts.xenstore_write(&node("copy-done"), answer.as_bytes());
                }
            }
            if self.pong.is_none() {
                if let Some(port) = ts.xenstore_read(&node("pingpong-port")).and_then(number) {
                    match events::bind_interdomain(id, port) {
                        Ok(local) => {
                            let _ = events::set_handler(local, echo, 0);
                            let _ = events::unmask(local);
                            self.pong = Some(local);
                        }
                        Err(e) => {
                            self.error
                                .get_or_insert(alloc::format!("bind to d{id} port {port}: {e}"));
                            self.pong = Some(0);
                        }
                    }
                }
            }
        }

        /// Times a 4 KiB memcpy in Dom0 (the floor), then `GNTTABOP_copy`
        /// of the guest's page `gref` into a frame of Dom0's, and checks
        /// the copy.
        fn copies(&mut self, id: u16, gref: u32, ovh: u64) -> Result<(), String> {
            let (src, dst) = match (frame::alloc_frame(), frame::alloc_frame()) {
                (Ok(s), Ok(d)) => (s, d),
                _ => return Err(String::from("Dom0 has no frames to copy into")),
            };
            let mut s = vec![0u64; COPIES];
            for x in s.iter_mut() {
                let t0 = tsc();
                // SAFETY: two distinct frames of Dom0's, direct-mapped.
                unsafe {
                    core::ptr::copy_nonoverlapping(src.va as *const u8, dst.va as *mut u8, 4096);
                    asm!("", options(nostack, preserves_flags));
                }
                *x = tsc().wrapping_sub(t0);
            }
            self.figure("memcpy_4k_dom0", &mut s, ovh);
            for x in s.iter_mut() {
                let t0 = tsc();
                grant::copy(
                    CopyPtr::Grant {
                        dom: id,
                        gref,
                        offset: 0,
                    },
                    CopyPtr::Frame {
                        mfn: dst.mfn,
                        offset: 0,
                    },
                    4096,
                )
                .map_err(|e| alloc::format!("GNTTABOP_copy from d{id} ref {gref}: {e}"))?;
                *x = tsc().wrapping_sub(t0);
            }
            // SAFETY: Dom0's frame, direct-mapped, 4 KiB.
            let got = unsafe { core::slice::from_raw_parts(dst.va as *const u8, 4096) };
            if got.iter().enumerate().any(|(k, &b)| b != k as u8) {
                return Err(String::from("the copied page is not the guest's pattern"));
            }
            self.figure("grant_copy_domu", &mut s, ovh);
            Ok(())
        }

        fn figure(&mut self, name: &str, s: &mut [u64], ovh: u64) {
            if let Some(stats) = Stats::of(s) {
                let stats = stats.minus(ovh);
                self.lines.push(alloc::format!(
                    "{}",
                    Line::Figure {
                        name,
                        stats,
                        per: None
                    }
                ));
            }
        }
    }

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

    /// One timed span: TSC and clock.
    struct Span {
        tsc: u64,
        ns: u64,
    }

    impl Span {
        fn start() -> Span {
            Span {
                ns: time::now_ns(),
                tsc: tsc(),
            }
        }
        /// (cycles, ns) since the start.
        fn stop(&self) -> (u64, u64) {
            let c = tsc().wrapping_sub(self.tsc);
            (c, time::now_ns().saturating_sub(self.ns))
        }
    }

    /// Samples of one figure.
    #[derive(Default)]
    struct Samples {
        cycles: Vec<u64>,
        ns: Vec<u64>,
    }

    impl Samples {
        fn push(&mut self, (c, ns): (u64, u64)) {
            self.cycles.push(c);
            self.ns.push(ns);
        }

        fn report(&mut self, name: &str, ovh: u64) -> bool {
            match (Stats::of(&mut self.cycles), Stats::of(&mut self.ns)) {
                (Some(c), Some(ns)) => {
                    println!(
                        "{}",
                        Line::Timed {
                            name,
                            cycles: c.minus(ovh),
                            ns
                        }
                    );
                    true
                }
                _ => {
                    println!(
                        "{}",
                        Line::NotAvailable {
                            name,
                            why: format_args!("no samples"),
                        }
                    );
                    false
                }
            }
        }
    }

    fn free_pages() -> u64 {
        xc::physinfo().map_or(0, |p| p.free_pages)
    }

    fn request(config: &str, extra: &[&str]) -> CreateRequest {
        CreateRequest {
            config_file: Some(String::from(config)),
            extra_config: extra.iter().map(|s| String::from(*s)).collect(),
            quiet: true,
            ..CreateRequest::default()
        }
    }

    /// The builder alone, and the domctl alone destroying what it built.
    fn bench_builder(c: &mut Checks, kernel: &[u8], ovh: u64) {
        let mut build = Samples::default();
        let mut destroy = Samples::default();
        for i in 0..WARMUP + CREATES {
            let t = Span::start();
            let b = builder::build(&GuestConfig {
                kernel,
                ramdisk: &[],
                memory_mib: HELLO_MIB,
                cmdline: HELLO_CMDLINE,
                vcpus: 1,
            });
            let dt = t.stop();
            let b = match b {
                Ok(b) => b,
                Err(e) => {
                    c.check(
                        "the builder builds the example guest",
                        false,
                        format_args!("{e}"),
                    );
                    return;
                }
            };
            let t = Span::start();
            let r = xc::destroy(b.domid);
            let dd = t.stop();
            if let Err(e) = r {
                c.check(
                    "destroydomain of a built domain",
                    false,
                    format_args!("{e}"),
                );
                return;
            }
            if i >= WARMUP {
                build.push(dt);
                destroy.push(dd);
            }
        }
        build.report("builder_alone", ovh);
        destroy.report("domctl_destroy", ovh);
    }

    /// `xl create` to the first console line, and `xl destroy`, of the
    /// example guest.
    fn bench_xl(c: &mut Checks, ts: &mut Toolstack, ovh: u64) {
        let mut create = Samples::default();
        let mut destroy = Samples::default();
        let req = request(HELLO_CFG, &[]);
        for i in 0..WARMUP + CREATES {
            let t = Span::start();
            let id = match ts.create(&req, &mut ConsoleOut) {
                Ok(Some(id)) => id,
                Ok(None) => {
                    c.error(format_args!("xl create returned no domain"));
                    return;
                }
                Err(e) => {
                    c.check("xl create /etc/xen/hello.cfg", false, format_args!("{e}"));
                    return;
                }
            };
            let domid = id as u16;
            let seen = ts.serve_until(FIRST_LINE_NS, |ts| {
                ts.console_backlog(domid)
                    .is_some_and(|b| has_line(b.as_slices()))
            });
            let dt = t.stop();
            if !seen {
                c.check(
                    "the guest's first console line reached the back end",
                    false,
                    format_args!(
                        "d{domid}: nothing within {} s",
                        FIRST_LINE_NS / 1_000_000_000
                    ),
                );
                let _ = ts.destroy(id);
                return;
            }
            let t = Span::start();
            let r = ts.destroy(id);
            let dd = t.stop();
            if let Err(e) = r {
                c.check("xl destroy", false, format_args!("d{domid}: {e}"));
                return;
            }
            if xc::domain_info(domid).is_ok() {
                c.check("xl destroy", false, format_args!("d{domid} still exists"));
                return;
            }
            if i >= WARMUP {
                create.push(dt);
                destroy.push(dd);
            }
        }
        c.check(
            "every example guest said its first line and was destroyed",
            true,
            format_args!("{} creates", WARMUP + CREATES),
        );
        create.report("xl_create_first_line", ovh);
        destroy.report("xl_destroy", ovh);
    }

    /// Runs domu-xsbench, relaying its console lines.
    fn run_xsbench(c: &mut Checks, ts: &mut Toolstack, ovh: u64) {
        let req = request(
            HELLO_CFG,
            &[
                "name=\"xsbench\"",
                "kernel=\"/boot/domu-xsbench\"",
                "extra=\"\"",
                "on_poweroff=\"preserve\"",
                "on_crash=\"preserve\"",
            ],
        );
        let id = match ts.create(&req, &mut ConsoleOut) {
            Ok(Some(id)) => id as u16,
            r => {
                c.check("xl create domu-xsbench", false, format_args!("{r:?}"));
                return;
            }
        };
        let mut relay = Relay::new();
        let mut success = false;
        let mut relay_now = |ts: &mut Toolstack| {
            if let Some(b) = ts.console_backlog(id) {
                relay.take(b.total(), b.as_slices(), |l| {
                    let l = core::str::from_utf8(l).unwrap_or("(not UTF-8)");
                    success |= l.starts_with("VERDICT: SUCCESS");
                    println!("[d{id}] {l}");
                });
            }
        };
        let mut cross = Cross::default();
        let finished = ts.serve_until(XSBENCH_NS, |ts| {
            relay_now(ts);
            cross.step(ts, id, ovh);
            xc::domain_info(id).is_ok_and(|i| i.is_shutdown())
        });
        // The last of its output (bounded: a guest that keeps the back
        // ends busy must not hang the benchmark).
        for _ in 0..1000 {
            if !ts.service() {
                break;
            }
        }
        relay_now(ts);
        if let Some(p) = cross.pong.filter(|&p| p != 0) {
            events::unbind(p);
            let _ = events::close(p);
        }
        for l in &cross.lines {
            println!("{l}");
        }
        c.check(
            "Dom0's end of the cross-domain figures",
            cross.error.is_none() && cross.copied && cross.pong.is_some(),
            format_args!("{:?}", cross.error),
        );
        c.check(
            "domu-xsbench ran to its end",
            finished,
            format_args!("d{id}"),
        );
        c.check(
            "domu-xsbench's verdict is SUCCESS",
            success,
            format_args!("d{id}"),
        );
        c.ok("xl destroy domu-xsbench", ts.destroy(u32::from(id)));
    }

    fn main(_si: &'static StartInfo) -> ! {
        println!("xl-bench: Oxen toolstack benchmarks (TSC cycles and ns; median, min)");
        let mut c = Checks::new("xl-bench");
        if c.ok("runtime::init", pv_guest_lib::runtime::init().map(|_| ()))
            .is_none()
            || c.ok("heap", pv_guest_lib::heap::init(HEAP_PAGES)).is_none()
        {
            c.finish()
        }
        let ramdisk = pv_guest_lib::ramdisk().map(Archive::new);
        let file = |p: &str| {
            ramdisk
                .and_then(|a| a.find(p))
                .filter(|e| e.kind() == Kind::File)
                .map(|e| e.data)
        };
        let Some(hello) = file(HELLO_KERNEL) else {
            c.error(format_args!("no {HELLO_KERNEL} in the ramdisk"));
            c.finish()
        };
        let has_xsbench = file(XSBENCH_KERNEL).is_some();
        let mut ts = Toolstack::new(ramdisk);

        let mut s = vec![0u64; 1001];
        for v in s.iter_mut() {
            let t0 = tsc();
            *v = tsc().wrapping_sub(t0);
        }
        let ovh = Stats::of(&mut s).map_or(0, |s| s.median);
        c.note(format_args!(
            "timing overhead {ovh} cycles (subtracted from every cycle figure)"
        ));

        let free0 = free_pages();
        bench_builder(&mut c, hello, ovh);
        bench_xl(&mut c, &mut ts, ovh);
        if has_xsbench {
            run_xsbench(&mut c, &mut ts, ovh);
        } else {
            for name in XS_FIGURES {
                println!(
                    "{}",
                    Line::NotAvailable {
                        name,
                        why: format_args!("no {XSBENCH_KERNEL} in the ramdisk"),
                    }
                );
            }
        }
        let free1 = free_pages();
        c.check(
            "free memory is back exactly",
            free1 == free0,
            format_args!("{free0} pages before, {free1} after"),
        );
        c.finish()
    }
}
