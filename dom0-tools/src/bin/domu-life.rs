//! A guest (domU) kernel for the lifecycle tests (issue 7), built on
//! `pv-guest-lib`:
//!
//! - `mode=balloon`: runs the balloon driver ([`pv_guest_lib::balloon`])
//!   on `memory/target` while a worker keeps allocating frames, filling
//!   them with a pattern of their own frame number and checking it before
//!   freeing them (a frame the balloon took while in use would show up as
//!   a bad frame). Each target it reaches is reported on the console:
//!   `domu-life: target T KiB: now P KiB (released R, reclaimed C, short S)`.
//!
//! - `mode=vcpus`: vCPU hot-plug ([`pv_guest_lib::hotplug`]) on the
//!   `cpu/N/availability` nodes while every online vCPU counts in its own
//!   counter. After each change it reports which vCPUs the hypervisor has
//!   up and which counted meanwhile:
//!   `domu-life: vcpus up [0, 1]; working [0, 1]`.
//!
//! - `mode=suspend`: `xl save`/`xl restore` ([`pv_guest_lib::suspend`]):
//!   fills [`SUSPEND_PAGES`] frames with a pattern of their own, then
//!   every ~200 ms counts and checks every page:
//!   `life: count N pages ok K/P`. It takes `suspend` from
//!   `control/shutdown`, suspends, and says how it came back
//!   (`life: suspend cancelled at count N` or `life: resumed in a new
//!   domain at count N ...`), then counts on. At boot and after each
//!   resume it walks the p2m frame list list it published, as the
//!   toolstack does (`life: p2m frame list list ok: ...`).
//!
//! All serve `control/shutdown`, so `xl shutdown` ends them cleanly.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    extern crate alloc;
    use alloc::collections::VecDeque;
    use alloc::vec::Vec;
    use core::sync::atomic::{AtomicU64, Ordering};
    use dom0_tools::pvtest::Checks;
    use pv_guest_lib::balloon::{self, Balloon};
    use pv_guest_lib::domu::{Outcome, ShutdownWatcher};
    use pv_guest_lib::frame::{self, Frame};
    use pv_guest_lib::hotplug::{self, Change, VcpuState};
    use pv_guest_lib::smp;
    use pv_guest_lib::xenbus::metal::StoreTransport;
    use pv_guest_lib::xenbus::{Transport, Xenbus, NO_TX};
    use pv_guest_lib::{domu, println, runtime, xen, StartInfo};

    pv_guest_lib::entry!(main);

    type Store = Xenbus<StoreTransport>;

    /// The balloon never takes the domain below this (4 MiB).
    const FLOOR_PAGES: u64 = 1024;
    /// Frames the worker holds at most.
    const WORKER_FRAMES: usize = 256;
    /// Frames it allocates (and frees) per round.
    const WORKER_STEP: usize = 16;
    const TARGET_NODE: &str = "memory/target";
    const TARGET_TOKEN: &str = "balloon";

    fn arg<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
        cmdline
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
    }

    fn main(si: &'static StartInfo) -> ! {
        let mut c = Checks::new("domu-life");
        if runtime::init().is_err() {
            c.error(format_args!("runtime init"));
            c.finish();
        }
        let mut xs = match domu::connect(si) {
            Ok(xs) => xs,
            Err(e) => {
                c.error(format_args!("connect to xenstore: {e}"));
                c.finish();
            }
        };
        match arg(si.cmd_line(), "mode") {
            Some("balloon") => balloon(c, &mut xs),
            Some("vcpus") => vcpus(c, &mut xs),
            Some("suspend") => suspend(c, &mut xs, arg(si.cmd_line(), "disk") == Some("1")),
            m => {
                c.error(format_args!(
                    "unknown mode {m:?} (want mode=balloon, mode=vcpus or mode=suspend)"
                ));
                c.finish();
            }
        }
    }

    /// Frames `mode=suspend` keeps and checks.
    const SUSPEND_PAGES: usize = 256;
    /// Its tick.
    const TICK_NS: u64 = 200_000_000;

    fn pattern(pfn: u64, i: usize) -> u64 {
        (pfn.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (i as u64).wrapping_mul(0x0100_0000_01b3))
            .rotate_left((i % 61) as u32)
    }

    fn fill_pattern(f: &Frame) {
        let p = f.va as *mut u64;
        for i in 0..512 {
            // SAFETY: `f` is a frame the allocator gave us for good, mapped
            // writable at `va`, used by nothing else.
            unsafe { p.add(i).write_volatile(pattern(f.pfn, i)) };
        }
    }

    fn pattern_intact(f: &Frame) -> bool {
        let p = f.va as *const u64;
        // SAFETY: as in `fill_pattern`.
        (0..512).all(|i| unsafe { p.add(i).read_volatile() } == pattern(f.pfn, i))
    }

    fn report_p2m_list(c: &mut Checks, when: &str) {
        match pv_guest_lib::p2m_list::check() {
            Ok(s) => println!(
                "life: p2m frame list list ok {when}: max_pfn {}, {} p2m pages, {} frame lists",
                s.max_pfn, s.p2m_pages, s.lists
            ),
            Err(e) => c.error(format_args!("p2m frame list list {when}: {e}")),
        }
    }

    fn watch_shutdown(c: &mut Checks, xs: &mut Store) -> ShutdownWatcher {
        match ShutdownWatcher::start(xs) {
            Ok(mut sw) => {
                sw.accept_suspend(xs);
                sw
            }
            Err(e) => {
                c.error(format_args!("watch control/shutdown: {e}"));
                core::mem::replace(c, Checks::new("domu-life")).finish()
            }
        }
    }

    /// `disk=1`: its disk (xvda), with a pattern in its first
    /// [`DISK_BYTES`], checked every [`DISK_EVERY`] ticks and after each
    /// resume.
    struct Disk {
        front: pv_guest_lib::blkfront::Blkfront<pv_guest_lib::blkfront::metal::MetalHost<'static>>,
        host: pv_guest_lib::blkfront::metal::MetalHost<'static>,
    }

    const GT_VA: u64 = 0xffff_c000_0020_0000;
    const XVDA: u32 = 51712;
    const DISK_BYTES: usize = 64 << 10;
    const DISK_EVERY: u64 = 5;

    fn disk_byte(i: usize) -> u8 {
        (i.wrapping_mul(131) ^ (i >> 9)) as u8
    }

    impl Disk {
        fn open(c: &mut Checks, xs: &mut Store) -> Option<Disk> {
            let gt = match pv_guest_lib::grant::GrantTable::setup(4, GT_VA) {
                Ok(gt) => alloc::boxed::Box::leak(alloc::boxed::Box::new(gt)),
                Err(e) => {
                    c.error(format_args!("grant table: {e:?}"));
                    return None;
                }
            };
            let mut host = pv_guest_lib::blkfront::metal::MetalHost::new(gt);
            host.patience(30_000_000_000);
            let mut front = pv_guest_lib::blkfront::Blkfront::new(XVDA, None, Default::default());
            if let Err(e) = front.connect_blocking(xs, &mut host) {
                c.error(format_args!("blkfront: {e:?}"));
                return None;
            }
            let data: Vec<u8> = (0..DISK_BYTES).map(disk_byte).collect();
            if let Err(e) = front.write(&mut host, 0, &data) {
                c.error(format_args!("writing the disk: {e:?}"));
                return None;
            }
            let _ = front.flush(&mut host);
            println!("life: disk xvda connected, pattern written");
            Some(Disk { front, host })
        }

        fn intact(&mut self) -> bool {
            let mut buf = alloc::vec![0u8; DISK_BYTES];
            self.host.patience(30_000_000_000);
            self.front.read(&mut self.host, 0, &mut buf).is_ok()
                && buf.iter().enumerate().all(|(i, &b)| b == disk_byte(i))
        }
    }

    fn suspend(mut c: Checks, xs: &mut Store, with_disk: bool) -> ! {
        let mut disk = if with_disk {
            match Disk::open(&mut c, xs) {
                Some(d) => Some(d),
                None => c.finish(),
            }
        } else {
            None
        };
        let mut disk_bad: u64 = 0;
        let mut sw = watch_shutdown(&mut c, xs);
        xs.transport().set_timeout_ns(TICK_NS / 4);
        report_p2m_list(&mut c, "at boot");
        let mut pages = Vec::new();
        for _ in 0..SUSPEND_PAGES {
            match frame::alloc_frame() {
                Ok(f) => {
                    fill_pattern(&f);
                    pages.push(f);
                }
                Err(e) => {
                    c.error(format_args!("allocating its pages: {e:?}"));
                    c.finish();
                }
            }
        }
        // Its other vCPUs (`vcpus = N`) count too, each in its own
        // counter; they are parked around each suspend.
        let n = smp::count();
        hotplug::mark_running(0);
        for v in 1..n {
            if let Change::Failed(e) = hotplug::set_online(v, true, worker) {
                c.error(format_args!("starting vCPU {v}: {e}"));
            }
        }
        println!("life: counting with {} pages on {n} vCPUs", pages.len());
        let mut seen: Vec<u64> = (0..n)
            .map(|v| WORK[v as usize].load(Ordering::Relaxed))
            .collect();
        let mut count: u64 = 0;
        let mut bad_ticks: u64 = 0;
        let mut next = pv_guest_lib::time::now_ns();
        loop {
            match sw.poll(xs) {
                Ok(Some(Outcome::Shutdown(s)))
                    if s.reason == hypercall_abi::sched::ShutdownReason::Suspend =>
                {
                    println!("life: suspending at count {count}");
                    if let Some(d) = disk.as_mut() {
                        if let Err(e) = d.host.grants().suspend() {
                            println!("life: unmapping the grant table: {e:?}");
                        }
                    }
                    let r = pv_guest_lib::suspend::suspend_smp(xs, worker);
                    if let Some(d) = disk.as_mut() {
                        if let Err(e) = d.host.grants().resume() {
                            println!("life: the grant table after the suspend: {e:?}");
                        }
                        if let Ok(pv_guest_lib::suspend::Resumed::Restored { .. }) = r {
                            match d.front.reconnect_after_restore(xs, &mut d.host) {
                                Ok(_) => println!("life: disk xvda reconnected"),
                                Err(e) => println!("life: disk reconnect failed: {e:?}"),
                            }
                        }
                    }
                    match r {
                        Ok(pv_guest_lib::suspend::Resumed::Cancelled) => {
                            println!("life: suspend cancelled at count {count}: running on");
                        }
                        Ok(pv_guest_lib::suspend::Resumed::Restored {
                            store_evtchn,
                            console_evtchn,
                            ..
                        }) => {
                            println!(
                                "life: resumed in a new domain at count {count} (store port {store_evtchn}, console port {console_evtchn})"
                            );
                            // xenstored forgot our watches with the old domain.
                            sw = watch_shutdown(&mut c, xs);
                            report_p2m_list(&mut c, "after the restore");
                        }
                        Err(e) => println!("life: suspend failed: {e}"),
                    }
                    next = pv_guest_lib::time::now_ns();
                }
                Ok(Some(Outcome::Shutdown(s))) => {
                    c.check(
                        "every page kept its pattern at every tick",
                        bad_ticks == 0,
                        format_args!("{bad_ticks} bad ticks of {count}"),
                    );
                    if disk.is_some() {
                        c.check(
                            "the disk kept its pattern at every check",
                            disk_bad == 0,
                            format_args!("{disk_bad} bad checks"),
                        );
                    }
                    let _ = c.verdict();
                    xen::shutdown(s.reason)
                }
                Ok(_) => {}
                Err(e) => println!("life: xenstore: {e}"),
            }
            let now = pv_guest_lib::time::now_ns();
            if now >= next {
                count += 1;
                let ok = pages.iter().filter(|f| pattern_intact(f)).count();
                if ok != pages.len() {
                    bad_ticks += 1;
                }
                println!("life: count {count} pages ok {ok}/{}", pages.len());
                if n > 1 && count.is_multiple_of(5) {
                    // Which vCPUs counted since the last report.
                    let now: Vec<u64> = (0..n)
                        .map(|v| WORK[v as usize].load(Ordering::Relaxed))
                        .collect();
                    let working: Vec<u32> = (1..n)
                        .filter(|&v| now[v as usize] != seen[v as usize])
                        .collect();
                    println!(
                        "life: vcpus working {}",
                        list(&[&[0u32][..], &working].concat())
                    );
                    seen = now;
                }
                if let Some(d) = disk.as_mut() {
                    if count.is_multiple_of(DISK_EVERY) {
                        let ok = d.intact();
                        if !ok {
                            disk_bad += 1;
                        }
                        println!(
                            "life: disk at count {count}: {}",
                            if ok { "pattern ok" } else { "PATTERN BAD" }
                        );
                    }
                }
                next = now + TICK_NS;
            }
            let _ = xs.transport().wait();
        }
    }

    /// The worker: frames it holds, each filled with its own frame number.
    struct Worker {
        held: VecDeque<Frame>,
        checked: u64,
        bad: u64,
    }

    impl Worker {
        fn fill(f: &Frame) {
            let p = f.va as *mut u64;
            for i in 0..512 {
                // SAFETY: `f` is a frame the allocator gave us, mapped
                // writable at `va` and used by nothing else.
                unsafe { p.add(i).write_volatile(f.pfn ^ (i as u64) << 40) };
            }
        }

        fn intact(f: &Frame) -> bool {
            let p = f.va as *const u64;
            // SAFETY: as in `fill`: still ours until freed.
            (0..512).all(|i| unsafe { p.add(i).read_volatile() } == f.pfn ^ (i as u64) << 40)
        }

        /// One round: frees the oldest frames (checking them), allocates
        /// new ones as far as memory allows.
        fn round(&mut self) {
            let free = if self.held.len() + WORKER_STEP > WORKER_FRAMES {
                WORKER_STEP
            } else {
                WORKER_STEP / 2
            };
            for _ in 0..free {
                let Some(f) = self.held.pop_front() else {
                    break;
                };
                self.checked += 1;
                if !Self::intact(&f) {
                    self.bad += 1;
                    println!("domu-life: frame {:#x} lost its pattern", f.pfn);
                }
                frame::free_frame(f);
            }
            for _ in 0..WORKER_STEP {
                match frame::alloc_frame() {
                    Ok(f) => {
                        Self::fill(&f);
                        self.held.push_back(f);
                    }
                    Err(_) => break,
                }
            }
        }
    }

    /// Each vCPU's work counter.
    static WORK: [AtomicU64; smp::MAX_VCPUS as usize] =
        [const { AtomicU64::new(0) }; smp::MAX_VCPUS as usize];
    const HOTPLUG_TOKEN: &str = "hotplug";

    /// What a hot-plugged vCPU runs: counts, and goes down when asked.
    fn worker(me: u32) -> ! {
        loop {
            WORK[me as usize].fetch_add(1, Ordering::Relaxed);
            for _ in 0..1000 {
                core::hint::spin_loop();
            }
            // Leave the host CPUs to vCPU 0 and Dom0 now and then: under
            // TCG on a loaded host, three spinning vCPUs can otherwise keep
            // the guest's xenstore traffic waiting for long.
            let _ = xen::sched_yield();
            hotplug::park_if_asked(me);
        }
    }

    /// Spins (yielding) for `ns` of guest time, or until `done` says so.
    fn wait_for(ns: u64, mut done: impl FnMut() -> bool) -> bool {
        let end = pv_guest_lib::time::now_ns() + ns;
        while pv_guest_lib::time::now_ns() < end {
            if done() {
                return true;
            }
            let _ = xen::sched_yield();
        }
        done()
    }

    fn list(v: &[u32]) -> alloc::string::String {
        alloc::format!("{v:?}")
    }

    fn vcpus(mut c: Checks, xs: &mut Store) -> ! {
        let n = smp::count();
        hotplug::mark_running(0);
        let mut sw = match ShutdownWatcher::start(xs) {
            Ok(sw) => sw,
            Err(e) => {
                c.error(format_args!("watch control/shutdown: {e}"));
                c.finish();
            }
        };
        if let Err(e) = xs.watch(hotplug::CPU_DIR, HOTPLUG_TOKEN) {
            c.error(format_args!("watch {}: {e}", hotplug::CPU_DIR));
            c.finish();
        }
        xs.transport().set_timeout_ns(50_000_000);
        println!("domu-life: {n} vCPUs possible, vCPU 0 up");
        let mut reports = 0u32;
        let mut consistent = true;
        loop {
            match sw.poll(xs) {
                Ok(Some(Outcome::Shutdown(s))) => {
                    c.check(
                        "after every change the vCPUs up were the ones working",
                        consistent && reports > 0,
                        format_args!("{reports} reports"),
                    );
                    let _ = c.verdict();
                    xen::shutdown(s.reason)
                }
                Ok(_) => {}
                Err(e) => println!("domu-life: xenstore: {e}"),
            }
            let fired = sw.take_other_events().any(|e| e.token == HOTPLUG_TOKEN);
            if !fired {
                WORK[0].fetch_add(1, Ordering::Relaxed);
                let _ = xs.transport().wait();
                continue;
            }
            let mut changed = false;
            for v in 1..n {
                let path = alloc::format!("{}/{v}/availability", hotplug::CPU_DIR);
                let Ok(raw) = xs.read(NO_TX, &path) else {
                    continue;
                };
                let Some(online) = hotplug::parse_availability(&raw) else {
                    println!("domu-life: {path}: not online/offline");
                    continue;
                };
                match hotplug::set_online(v, online, worker) {
                    Change::None => {}
                    Change::Failed(e) => println!("domu-life: vCPU {v}: {e}"),
                    ch => {
                        changed = true;
                        println!("domu-life: vCPU {v}: {ch:?}");
                    }
                }
            }
            if !changed {
                continue;
            }
            // Let every change land: a stopping vCPU parks itself, a
            // started one reaches its loop.
            let settled = wait_for(3_000_000_000, || {
                (1..n).all(|v| match hotplug::state(v) {
                    VcpuState::StopRequested | VcpuState::Waking => false,
                    VcpuState::Parked => smp::is_up(v) == Ok(false),
                    VcpuState::Running => smp::online(v),
                    VcpuState::Absent => true,
                })
            });
            let before: Vec<u64> = (0..n)
                .map(|v| WORK[v as usize].load(Ordering::Relaxed))
                .collect();
            WORK[0].fetch_add(1, Ordering::Relaxed);
            wait_for(500_000_000, || false);
            WORK[0].fetch_add(1, Ordering::Relaxed);
            let up: Vec<u32> = (0..n).filter(|&v| smp::is_up(v) == Ok(true)).collect();
            let working: Vec<u32> = (0..n)
                .filter(|&v| WORK[v as usize].load(Ordering::Relaxed) != before[v as usize])
                .collect();
            reports += 1;
            consistent &= settled && up == working;
            println!(
                "domu-life: vcpus up {}; working {}{}",
                list(&up),
                list(&working),
                if settled {
                    ""
                } else {
                    " (not settled after 3 s)"
                }
            );
        }
    }

    fn balloon(mut c: Checks, xs: &mut Store) -> ! {
        let mut sw = match ShutdownWatcher::start(xs) {
            Ok(sw) => sw,
            Err(e) => {
                c.error(format_args!("watch control/shutdown: {e}"));
                c.finish();
            }
        };
        if let Err(e) = xs.watch(TARGET_NODE, TARGET_TOKEN) {
            c.error(format_args!("watch {TARGET_NODE}: {e}"));
            c.finish();
        }
        xs.transport().set_timeout_ns(50_000_000);
        let mut b = Balloon::new(FLOOR_PAGES);
        let mut w = Worker {
            held: VecDeque::new(),
            checked: 0,
            bad: 0,
        };
        let pages = pv_guest_lib::memory::current_reservation(hypercall_abi::xen::DOMID_SELF);
        println!(
            "domu-life: balloon driver up with {} KiB",
            pages.map_or(0, |p| p * balloon::KIB_PER_PAGE)
        );
        let mut rounds: u64 = 0;
        loop {
            match sw.poll(xs) {
                Ok(Some(Outcome::Shutdown(s))) => {
                    println!(
                        "domu-life: worker checked {} frames, {} bad; shutting down ({})",
                        w.checked, w.bad, s.value
                    );
                    c.check(
                        "the worker's frames kept their patterns",
                        w.bad == 0,
                        format_args!("{} of {} bad", w.bad, w.checked),
                    );
                    // Give the worker's frames back before going.
                    while let Some(f) = w.held.pop_front() {
                        frame::free_frame(f);
                    }
                    let _ = c.verdict();
                    xen::shutdown(s.reason)
                }
                Ok(_) => {}
                Err(e) => println!("domu-life: xenstore: {e}"),
            }
            let fired = sw.take_other_events().any(|e| e.token == TARGET_TOKEN);
            if fired {
                match xs.read(NO_TX, TARGET_NODE) {
                    Ok(raw) => match balloon::parse_target_kib(&raw) {
                        Some(target) => match b.set_target(target) {
                            Ok(o) => println!(
                                "domu-life: target {} KiB: now {} KiB (released {}, reclaimed {}, short {})",
                                target * balloon::KIB_PER_PAGE,
                                o.pages * balloon::KIB_PER_PAGE,
                                o.released,
                                o.reclaimed,
                                o.short
                            ),
                            Err(e) => println!("domu-life: ballooning failed: {e}"),
                        },
                        None => println!(
                            "domu-life: {TARGET_NODE} is not a number of KiB: {:?}",
                            core::str::from_utf8(&raw).unwrap_or("(not UTF-8)")
                        ),
                    },
                    Err(e) => println!("domu-life: read {TARGET_NODE}: {e}"),
                }
            }
            w.round();
            rounds += 1;
            if rounds.is_multiple_of(64) {
                println!(
                    "domu-life: worker holds {} frames, checked {}, {} bad",
                    w.held.len(),
                    w.checked,
                    w.bad
                );
            }
            let _ = xs.transport().wait();
        }
    }
}
