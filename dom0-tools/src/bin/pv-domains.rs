//! Test Dom0: builds and runs other domains (issue 4's builder and
//! console back-end, issue 3's weights test).
//!
//! 1. Builds `/boot/domu-hello` from its ramdisk with Dom0's PV builder,
//!    connects its console ring, unpauses it and prints its console lines
//!    prefixed `[d<id>] `; waits for it to shut down (`VIRQ_DOM_EXC` and
//!    `getdomaininfo`), checks the reason (poweroff), destroys it and
//!    checks that `physinfo`'s free pages are back exactly where they were.
//!    Then the same with the example guest `/boot/hello` (as
//!    `/etc/xen/hello.cfg` describes it) and `/boot/domu-eperm` (an
//!    unprivileged guest every control operation is refused to).
//! 2. Builds two `/boot/domu-spin` guests, gives them credit weights 256
//!    and 512, pins both vCPUs to one host CPU, lets them run ~2 s and
//!    compares their CPU time (`getvcpuinfo`): 1:2 within 10%.
//!
//! Ends with `VERDICT: ...` and powers off.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    use alloc::string::String;
    use alloc::vec::Vec;

    use dom0_tools::builder::{self, Built, GuestConfig};
    use dom0_tools::consoled::{DomConsole, RawRing};
    use dom0_tools::pvtest::{Checks, SPIN_COUNTER_OFFSET};
    use dom0_tools::ramdisk::Archive;
    use dom0_tools::xc::{self, foreign::ForeignMap};
    use hypercall_abi::errno::Errno as AbiErrno;
    use hypercall_abi::xen::Virq;
    use pv_guest_lib::events::{self, Port};
    use pv_guest_lib::time::{self, NS_PER_MS};
    use pv_guest_lib::{println, runtime, StartInfo};

    pv_guest_lib::entry!(main);

    const NAME: &str = "pv-domains";
    /// How long a guest may take to say hello and shut down.
    const GUEST_DEADLINE_NS: u64 = 20_000 * NS_PER_MS;
    /// How long freed memory may take to reach the heap again.
    const FREE_DEADLINE_NS: u64 = 3_000 * NS_PER_MS;
    /// Polling period of the console rings.
    const POLL_NS: u64 = 10 * NS_PER_MS;
    /// The weights test: warm-up, then measuring time.
    const WARMUP_NS: u64 = 300 * NS_PER_MS;
    const MEASURE_NS: u64 = 1_500 * NS_PER_MS;
    /// Measuring windows; the median ratio is judged.
    const WINDOWS: usize = 3;
    /// Weights and tolerance (percent) of issue 3's test.
    const WEIGHTS: [u16; 2] = [256, 512];
    const TOLERANCE_PCT: u64 = 10;
    /// Heap pages added after `runtime::init` (the guest kernels' copies).
    const HEAP_EXTRA_PAGES: u64 = 4096;

    /// A running guest with its console connected.
    struct Guest {
        built: Built,
        console: DomConsole,
        ring_map: Option<ForeignMap>,
        ring: Option<RawRing>,
        local_port: Option<Port>,
        lines: Vec<String>,
    }

    impl Guest {
        fn connect(built: Built, c: &mut Checks) -> Guest {
            let domid = built.domid;
            let ring_map = c.ok(
                "map the guest's console ring (foreign mmu_update)",
                ForeignMap::new(domid, &[built.console_mfn]),
            );
            let ring = ring_map.as_ref().and_then(|m| m.page_ptr(0)).map(|p| {
                // SAFETY: `p` is the mapped console page, which stays
                // mapped while `ring_map` lives (the ring is dropped
                // first, in `disconnect`).
                unsafe { RawRing::new(p) }
            });
            let local_port = c.ok(
                "bind the guest's console event channel",
                events::bind_interdomain(domid, built.console_port),
            );
            Guest {
                built,
                console: DomConsole::new(domid),
                ring_map,
                ring,
                local_port,
                lines: Vec::new(),
            }
        }

        /// Reads the ring and prints new lines prefixed `[d<id>] `.
        fn poll(&mut self) {
            let Some(ring) = self.ring.as_mut() else {
                return;
            };
            let domid = self.built.domid;
            let lines = &mut self.lines;
            self.console.poll(ring, |l| {
                let s = String::from_utf8_lossy(l).into_owned();
                println!("[d{domid}] {s}");
                lines.push(s);
            });
        }

        fn said(&self, what: &str) -> bool {
            self.lines.iter().any(|l| l.contains(what))
        }

        fn disconnect(&mut self) {
            self.poll();
            self.ring = None;
            self.ring_map = None;
            if let Some(p) = self.local_port.take() {
                let _ = events::close(p);
            }
        }
    }

    fn free_pages() -> u64 {
        xc::physinfo().map(|p| p.free_pages).unwrap_or(0)
    }

    /// Waits until the free pages are `want` again (freeing can lag the
    /// destroy a little); returns what was last seen.
    fn wait_free(want: u64) -> u64 {
        let end = time::now_ns() + FREE_DEADLINE_NS;
        loop {
            let f = free_pages();
            if f == want || time::now_ns() > end {
                return f;
            }
            time::sleep_ns(POLL_NS);
        }
    }

    fn main(_si: &'static StartInfo) -> ! {
        println!("{NAME}: Dom0 builds and runs PV guests (Xen 4.17 toolstack ABI)");
        let mut c = Checks::new(NAME);
        // The builder's warnings go to the log.
        let _ = pv_guest_lib::console::init_logger(log::LevelFilter::Info);
        if let Err(e) = runtime::init() {
            c.error(format_args!("runtime init: {e}"));
            c.finish();
        }
        // Guest kernels are parsed from an aligned copy: grow the heap.
        c.ok(
            "grow the heap by 16 MiB",
            pv_guest_lib::heap::init(HEAP_EXTRA_PAGES),
        );
        let dom_exc = c.ok("bind VIRQ_DOM_EXC", events::bind_virq(Virq::DomExc, 0));
        let rd = pv_guest_lib::ramdisk().map(Archive::new);
        // /boot/<name> as the boot tests ship it, or /<name> (scripts/run --add).
        let file = |path: &str| {
            let a = rd.as_ref()?;
            a.find(path)
                .or_else(|| a.find(path.trim_start_matches("/boot")))
                .map(|e| e.data)
        };
        if let Some(p) = c.ok("physinfo", xc::physinfo()) {
            c.note(format_args!(
                "host: {} CPUs, {} pages total, {} free",
                p.nr_cpus, p.total_pages, p.free_pages
            ));
        }

        match file("/boot/domu-hello") {
            Some(k) => hello(&mut c, k, dom_exc),
            None => c.error(format_args!("no /boot/domu-hello in the ramdisk")),
        }
        // The example guest Dom0's ramdisk ships for `xl create
        // /etc/xen/hello.cfg` (16 MiB, extra = "hello from xl").
        match file("/boot/hello") {
            Some(k) => run_guest(
                &mut c,
                &Run {
                    kernel: k,
                    mib: 16,
                    cmdline: b"hello from xl",
                    expect: EXAMPLE_EXPECT,
                },
                None,
            ),
            None => c.note(format_args!(
                "no /boot/hello in the ramdisk: example guest skipped"
            )),
        }
        // An unprivileged guest trying the control domain's operations.
        match file("/boot/domu-eperm") {
            Some(k) => run_guest(
                &mut c,
                &Run {
                    kernel: k,
                    mib: 8,
                    cmdline: b"",
                    expect: EPERM_EXPECT,
                },
                None,
            ),
            None => c.note(format_args!("no /boot/domu-eperm in the ramdisk: skipped")),
        }
        match file("/boot/domu-spin") {
            Some(k) => weights(&mut c, k),
            None => c.error(format_args!("no /boot/domu-spin in the ramdisk")),
        }
        c.finish()
    }

    fn build(c: &mut Checks, kernel: &[u8], mib: u64, cmdline: &[u8]) -> Option<Built> {
        let t0 = time::now_ns();
        let b = c.ok(
            "build a PV guest",
            builder::build(&GuestConfig {
                kernel,
                ramdisk: &[],
                memory_mib: mib,
                cmdline,
                vcpus: 1,
            }),
        )?;
        c.note(format_args!(
            "built d{} in {} ms: {} pages, entry {:#x}, L4 mfn {:#x}, console mfn {:#x} port {}, xenstore mfn {:#x} port {}",
            b.domid,
            (time::now_ns() - t0) / 1_000_000,
            b.nr_pages,
            b.entry,
            b.l4_mfn,
            b.console_mfn,
            b.console_port,
            b.store_mfn,
            b.store_port
        ));
        Some(b)
    }

    /// A guest to run to its end, and what its console must show.
    struct Run<'a> {
        kernel: &'a [u8],
        mib: u64,
        cmdline: &'a [u8],
        /// (check name, console substring).
        expect: &'a [(&'a str, &'a str)],
    }

    const HELLO_EXPECT: &[(&str, &str)] = &[
        ("the guest's console line reached Dom0", "hello from domU"),
        (
            "the guest saw its command line",
            "cmdline \"hello from Dom0's builder\"",
        ),
        ("the guest's own checks passed", "VERDICT: SUCCESS"),
    ];

    const EXAMPLE_EXPECT: &[(&str, &str)] = &[
        (
            "the example guest (/boot/hello) said hello on its console ring",
            "hello from a PV kernel: 4096 pages, cmdline \"hello from xl\"",
        ),
        ("the example guest passed", "VERDICT: SUCCESS"),
    ];

    const EPERM_EXPECT: &[(&str, &str)] = &[(
        "domu-eperm: every privileged operation was refused to the guest",
        "VERDICT: SUCCESS",
    )];

    fn hello(c: &mut Checks, kernel: &[u8], dom_exc: Option<Port>) {
        run_guest(
            c,
            &Run {
                kernel,
                mib: 8,
                cmdline: b"hello from Dom0's builder",
                expect: HELLO_EXPECT,
            },
            dom_exc,
        )
    }

    fn run_guest(c: &mut Checks, r: &Run, dom_exc: Option<Port>) {
        let free0 = free_pages();
        let Some(b) = build(c, r.kernel, r.mib, r.cmdline) else {
            return;
        };
        let domid = b.domid;
        if let Ok(info) = xc::domain_info(domid) {
            c.check(
                "the new domain is paused and has its memory",
                info.is_paused() && info.tot_pages == b.nr_pages,
                format_args!(
                    "flags {:#x}, tot_pages {} of {}",
                    info.flags, info.tot_pages, b.nr_pages
                ),
            );
        }
        let mut g = Guest::connect(b, c);
        c.ok("unpause the guest", xc::unpause(domid));
        let end = time::now_ns() + GUEST_DEADLINE_NS;
        let last;
        loop {
            g.poll();
            let info = xc::domain_info(domid);
            if let Ok(i) = info {
                if i.is_shutdown() {
                    last = Some(i);
                    break;
                }
            }
            if time::now_ns() > end {
                last = info.ok();
                break;
            }
            time::sleep_ns(POLL_NS);
        }
        g.poll();
        for (what, line) in r.expect {
            c.check(
                what,
                g.said(line),
                format_args!("{} lines from d{domid}", g.lines.len()),
            );
        }
        match last {
            Some(i) if i.is_shutdown() => {
                c.check(
                    "the guest shut down with SHUTDOWN_poweroff",
                    i.shutdown_reason() == 0,
                    format_args!("reason {}", xc::shutdown_reason_name(i.shutdown_reason())),
                );
            }
            other => {
                c.check(
                    "the guest shut down",
                    false,
                    format_args!("still running after the deadline: {other:?}"),
                );
            }
        }
        if let Some(p) = dom_exc {
            c.check(
                "VIRQ_DOM_EXC fired",
                events::is_pending(p) || events::has_fired(p),
                format_args!("port {p}"),
            );
        }
        g.disconnect();
        c.ok("destroy the guest", xc::destroy(domid));
        c.err(
            "getdomaininfo of the destroyed domain",
            xc::domain_info(domid).map(|_| ()),
            AbiErrno::ESRCH,
        );
        let free1 = wait_free(free0);
        c.check(
            "free memory is back exactly",
            free1 == free0,
            format_args!("{free0} free pages before, {free1} after"),
        );
    }

    fn weights(c: &mut Checks, kernel: &[u8]) {
        let free0 = free_pages();
        let ncpus = xc::physinfo().map(|p| p.nr_cpus).unwrap_or(1).max(1);
        let cpu = ncpus - 1;
        let mut guests: Vec<Guest> = Vec::new();
        for (i, &w) in WEIGHTS.iter().enumerate() {
            let Some(b) = build(c, kernel, 4, b"spin") else {
                break;
            };
            let domid = b.domid;
            c.ok(
                "set the credit weight (scheduler_op putinfo)",
                xc::sched_credit_set(domid, w, 0),
            );
            if let Ok((weight, cap)) = xc::sched_credit_get(domid) {
                c.check(
                    "scheduler_op getinfo reads the weight back",
                    weight == w && cap == 0,
                    format_args!("guest {i}: weight {weight}, cap {cap}"),
                );
            }
            let map = [1u8 << (cpu % 8)];
            let map = &map[..];
            let mut full = [0u8; 4];
            full[(cpu / 8) as usize % 4] = map[0];
            c.ok(
                "pin the vCPU to one host CPU (setvcpuaffinity)",
                xc::set_vcpu_affinity(domid, 0, &full),
            );
            guests.push(Guest::connect(b, c));
        }
        if guests.len() == WEIGHTS.len() {
            for g in &guests {
                c.ok("unpause a spinning guest", xc::unpause(g.built.domid));
            }
            let end = time::now_ns() + WARMUP_NS;
            while time::now_ns() < end {
                guests.iter_mut().for_each(Guest::poll);
                time::sleep_ns(POLL_NS);
            }
            // Each guest's work counter (in its shared_info page).
            let counters: Vec<Option<xc::foreign::ForeignMap>> = guests
                .iter()
                .map(|g| {
                    xc::foreign::ForeignMap::new(g.built.domid, &[g.built.shared_info_frame]).ok()
                })
                .collect();
            let work = |i: usize| {
                counters[i]
                    .as_ref()
                    .and_then(|m| m.page_ptr(0))
                    // SAFETY: the page stays mapped while `counters` lives;
                    // an aligned u64 read of a word the guest writes.
                    .map_or(0, |p| unsafe {
                        (p.add(SPIN_COUNTER_OFFSET as usize) as *const u64).read_volatile()
                    })
            };
            // Three windows; the median ratio decides (one window can be
            // off when the emulator's host thread is descheduled for long).
            let mut ratios = [0u64; WINDOWS];
            let mut all_on_cpu = true;
            let mut shared_fully = true;
            for (k, slot) in ratios.iter_mut().enumerate() {
                let w0 = [work(0), work(1)];
                let t0: Vec<u64> = guests
                    .iter()
                    .map(|g| xc::vcpu_info(g.built.domid, 0).map_or(0, |v| v.cpu_time))
                    .collect();
                let start = time::now_ns();
                time::sleep_ns(MEASURE_NS);
                let w1 = [work(0), work(1)];
                let t1: Vec<(u64, u32)> = guests
                    .iter()
                    .map(|g| {
                        xc::vcpu_info(g.built.domid, 0)
                            .map_or((0, u32::MAX), |v| (v.cpu_time, v.cpu))
                    })
                    .collect();
                let wall = time::now_ns() - start;
                all_on_cpu &= t1.iter().all(|&(_, on)| on == cpu);
                let da = t1[0].0.saturating_sub(t0[0]);
                let db = t1[1].0.saturating_sub(t0[1]);
                shared_fully &= (da + db) * 100 >= wall * 80;
                let (wa, wb) = (w1[0].saturating_sub(w0[0]), w1[1].saturating_sub(w0[1]));
                // ratio db/da in thousandths.
                *slot = (db * 1000).checked_div(da).unwrap_or(0);
                println!(
                    "{NAME}: window {k}: {} ms: CPU time {} ms : {} ms, ratio 1:{}.{:03} (work done {wa} : {wb})",
                    wall / NS_PER_MS,
                    da / 1_000_000,
                    db / 1_000_000,
                    *slot / 1000,
                    *slot % 1000
                );
            }
            guests.iter_mut().for_each(Guest::poll);
            for g in &guests {
                c.check(
                    "the spinning guest said so",
                    g.said("domu-spin: spinning"),
                    format_args!("d{}", g.built.domid),
                );
            }
            c.check(
                "both vCPUs ran on the CPU they were pinned to",
                all_on_cpu,
                format_args!("CPU {cpu}"),
            );
            ratios.sort_unstable();
            let ratio_milli = ratios[WINDOWS / 2];
            let want = 1000 * u64::from(WEIGHTS[1]) / u64::from(WEIGHTS[0]);
            let ok = ratio_milli.abs_diff(want) * 100 <= want * TOLERANCE_PCT;
            println!(
                "{NAME}: weights {}:{} on CPU {cpu}: median CPU time ratio of {WINDOWS} windows 1:{}.{:03} (want 1:{}.{:03} within {}%): {}",
                WEIGHTS[0],
                WEIGHTS[1],
                ratio_milli / 1000,
                ratio_milli % 1000,
                want / 1000,
                want % 1000,
                TOLERANCE_PCT,
                if ok { "PASS" } else { "FAIL" }
            );
            c.check(
                "credit weights 256:512 give CPU time 1:2 within 10%",
                ok,
                format_args!("ratio 1:{}.{:03}", ratio_milli / 1000, ratio_milli % 1000),
            );
            c.check(
                "the two vCPUs shared the CPU fully",
                shared_fully,
                format_args!("in every window"),
            );
        }
        for mut g in guests {
            g.disconnect();
            c.ok("destroy a spinning guest", xc::destroy(g.built.domid));
        }
        let free1 = wait_free(free0);
        c.check(
            "free memory is back exactly after the weights test",
            free1 == free0,
            format_args!("{free0} free pages before, {free1} after"),
        );
    }
}
