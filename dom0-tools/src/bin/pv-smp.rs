//! Test Dom0: bringing up every vCPU and exchanging IPIs through event
//! channels, the way Xen 4.17 does it.
//!
//! vCPU 0 counts the domain's vCPUs (`VCPUOP_is_up` until -ENOENT), binds
//! one IPI port per vCPU (`EVTCHNOP_bind_ipi`) plus one ack port each,
//! starts each vCPU with `VCPUOP_initialise` + `VCPUOP_up` on its own stack,
//! then pings every vCPU several rounds and waits for each ack. Each vCPU
//! reports (its id from its stack, its clock, the pings it answered) and
//! finally takes itself down (`VCPUOP_down`). Works with any number of
//! vCPUs up to 32; every wait has a timeout.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use dom0_tools::pvtest::{want, Checks};
    use pv_guest_lib::events::{self, Port};
    use pv_guest_lib::smp::{self, MAX_VCPUS};
    use pv_guest_lib::time::{self, Wake, NS_PER_MS};
    use pv_guest_lib::{percpu, println, runtime, xen, StartInfo};

    pv_guest_lib::entry!(main);

    const ROUNDS: u64 = 5;
    const WAIT_NS: u64 = 5_000 * NS_PER_MS;
    const N: usize = MAX_VCPUS as usize;
    const NONE: u64 = u64::MAX;

    /// Port that notifies vCPU k.
    static PING: [AtomicU64; N] = [const { AtomicU64::new(NONE) }; N];
    /// Port vCPU k sends its acks on (bound to vCPU 0).
    static ACK_PORT: [AtomicU64; N] = [const { AtomicU64::new(NONE) }; N];
    static PINGS: [AtomicU64; N] = [const { AtomicU64::new(0) }; N];
    static ACKS: [AtomicU64; N] = [const { AtomicU64::new(0) }; N];
    static SEEN_ID: [AtomicU64; N] = [const { AtomicU64::new(NONE) }; N];
    static CLOCK: [AtomicU64; N] = [const { AtomicU64::new(0) }; N];
    static DONE: [AtomicBool; N] = [const { AtomicBool::new(false) }; N];
    static GO_DOWN: AtomicBool = AtomicBool::new(false);

    fn on_ping(_p: Port, k: usize) {
        PINGS[k].fetch_add(1, Ordering::SeqCst);
    }

    fn on_ack(_p: Port, k: usize) {
        ACKS[k].fetch_add(1, Ordering::SeqCst);
    }

    fn secondary(me: u32) -> ! {
        let k = me as usize;
        SEEN_ID[k].store(u64::from(percpu::current_vcpu()), Ordering::SeqCst);
        CLOCK[k].store(time::now_ns(), Ordering::SeqCst);
        let ack = ACK_PORT[k].load(Ordering::SeqCst) as Port;
        let mut answered = 0;
        while answered < ROUNDS {
            let deadline = time::now_ns() + WAIT_NS;
            let want = answered + 1;
            if time::block_until(deadline, || PINGS[k].load(Ordering::SeqCst) >= want)
                == Wake::TimedOut
            {
                break;
            }
            answered = want;
            let _ = events::send(ack);
        }
        println!(
            "pv-smp: vCPU {me} reports: stack says vCPU {}, clock {} ms, {answered}/{ROUNDS} pings answered, timer ticks {}",
            percpu::current_vcpu(),
            time::now_ns() / NS_PER_MS,
            time::ticks(me)
        );
        DONE[k].store(true, Ordering::SeqCst);
        let _ = time::block_until(time::now_ns() + WAIT_NS, || GO_DOWN.load(Ordering::SeqCst));
        let _ = smp::down(me);
        loop {
            let _ = xen::sched_block();
        }
    }

    fn wait(cond: impl FnMut() -> bool) -> bool {
        time::block_until(time::now_ns() + WAIT_NS, cond) == Wake::Ready
    }

    /// Waits for `cond` by yielding, for changes no event announces.
    fn poll(mut cond: impl FnMut() -> bool) -> bool {
        let end = time::now_ns() + WAIT_NS;
        while time::now_ns() < end {
            if cond() {
                return true;
            }
            let _ = xen::sched_yield();
        }
        cond()
    }

    fn main(_si: &'static StartInfo) -> ! {
        println!("pv-smp: Oxen PV SMP test (Xen 4.17 semantics)");
        let mut c = Checks::new("pv-smp");
        if c.ok(
            "runtime (shared_info, traps, memory, heap, timer)",
            runtime::init(),
        )
        .is_none()
        {
            c.finish()
        }
        let n = smp::count();
        c.note(format_args!("{n} vCPUs"));
        c.check("more than one vCPU", n > 1, format_args!("{n}"));
        c.ok("VCPUOP_is_up(0)", smp::is_up(0));
        c.err(
            "VCPUOP_is_up of an absent vCPU",
            smp::is_up(1000),
            want::VCPU_ABSENT,
        );
        c.err(
            "VCPUOP_up of an absent vCPU",
            smp::up(1000),
            want::VCPU_ABSENT,
        );

        for k in 1..n {
            let ku = k as usize;
            let Some(p) = c.ok("EVTCHNOP_bind_ipi for a vCPU", events::bind_ipi(k)) else {
                continue;
            };
            let _ = events::set_handler(p, on_ping, ku);
            PING[ku].store(u64::from(p), Ordering::SeqCst);
            if let Some(a) = c.ok(
                "EVTCHNOP_bind_ipi for its acks (vCPU 0)",
                events::bind_ipi(0),
            ) {
                let _ = events::set_handler(a, on_ack, ku);
                ACK_PORT[ku].store(u64::from(a), Ordering::SeqCst);
            }
        }
        for k in 1..n {
            c.check(
                "vCPU is down before VCPUOP_up",
                smp::is_up(k) == Ok(false),
                format_args!("vCPU {k}: {:?}", smp::is_up(k)),
            );
            c.ok("VCPUOP_initialise + VCPUOP_up", smp::start(k, secondary));
        }
        if n > 1 {
            let ctx = smp::context(
                0,
                0,
                pv_guest_lib::frame::kernel_l4(),
                &pv_guest_lib::trap::trap_ctxt(),
                pv_guest_lib::trap::callback_entries(),
            );
            c.err(
                "VCPUOP_initialise of a running vCPU",
                smp::initialise(1, &ctx),
                want::VCPU_INIT_TWICE,
            );
        }
        for k in 1..n {
            // A vCPU coming up sends no event: poll, yielding.
            let up = poll(|| smp::online(k));
            c.check(
                "vCPU came up",
                up,
                format_args!("vCPU {k}, is_up {:?}", smp::is_up(k)),
            );
        }
        for round in 1..=ROUNDS {
            for k in 1..n {
                let ku = k as usize;
                if !smp::online(k) {
                    continue;
                }
                let p = PING[ku].load(Ordering::SeqCst);
                if p == NONE || events::send(p as Port).is_err() {
                    c.check("IPI send", false, format_args!("vCPU {k} round {round}"));
                    continue;
                }
                let ok = wait(|| ACKS[ku].load(Ordering::SeqCst) >= round);
                if !ok || round == ROUNDS {
                    c.check(
                        "IPI ping answered",
                        ok,
                        format_args!(
                            "vCPU {k} round {round}: {} acks",
                            ACKS[ku].load(Ordering::SeqCst)
                        ),
                    );
                }
            }
        }
        for k in 1..n {
            let ku = k as usize;
            // DONE is set after the last ack: no event follows it.
            let done = poll(|| DONE[ku].load(Ordering::SeqCst));
            let id = SEEN_ID[ku].load(Ordering::SeqCst);
            c.check(
                "vCPU reported with its own id",
                done && id == u64::from(k),
                format_args!("vCPU {k}: done {done}, id {id}"),
            );
            let clk = CLOCK[ku].load(Ordering::SeqCst);
            c.check(
                "its clock agrees (monotonic across vCPUs)",
                clk > 0 && clk <= time::now_ns(),
                format_args!("vCPU {k}: {clk} ns"),
            );
        }
        GO_DOWN.store(true, Ordering::SeqCst);
        for k in 1..n {
            if !smp::online(k) {
                continue;
            }
            if let Some(p) = PING.get(k as usize).map(|p| p.load(Ordering::SeqCst)) {
                let _ = events::send(p as Port);
            }
            // Going down sends no event (in Xen either): poll, yielding.
            let down = poll(|| smp::is_up(k) == Ok(false));
            c.check(
                "VCPUOP_down (by the vCPU itself)",
                down,
                format_args!("vCPU {k}: is_up {:?}", smp::is_up(k)),
            );
        }
        c.finish()
    }
}
