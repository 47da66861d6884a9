//! Debug keys, as Xen's keyhandler: with serial input switched to the
//! hypervisor (CTRL-a three times), a key dumps hypervisor state to the
//! console. `q` also sends every vCPU `VIRQ_DEBUG`, asking the guests to
//! dump theirs, as Xen's `dump_domains` does.
//!
//! Owns the key table. Runs on CPU 0's tick with DOMAINS held.

use crate::domain::{Domain, RunState};
use hypercall_abi::xen::Virq;

/// The keys and what they do (`h` prints this).
const KEYS: &[(u8, &str)] = &[
    (b'g', "print grant table usage"),
    (b'h', "print this help"),
    (b'm', "memory info"),
    (b'q', "dump domain (and guest debug) info"),
    (b'r', "dump run queues"),
    (b't', "display multi-cpu clock info"),
];

/// Handles debug key `k`; unknown keys are ignored, as in Xen.
pub fn handle(k: u8, doms: &mut [Domain]) {
    match k {
        b'h' => {
            crate::println!("(XEN) 'h' pressed -> showing installed handlers");
            for (key, what) in KEYS {
                crate::println!(
                    "(XEN)  key '{}' (ascii '{:02x}') => {what}",
                    *key as char,
                    key
                );
            }
        }
        b'g' => dump_grants(doms),
        b'm' => {
            crate::println!("(XEN) 'm' pressed -> memory info");
            crate::println!(
                "(XEN) free pages {} of {}",
                crate::memory::free_frames(),
                crate::memory::total_frames()
            );
            for d in doms.iter() {
                crate::println!("(XEN) d{}: {} pages", d.domid, d.tot_pages);
            }
        }
        b'q' => dump_domains(doms),
        b'r' => dump_runq(doms),
        b't' => {
            crate::println!("(XEN) 't' pressed -> dumping multi-cpu clock info");
            crate::println!(
                "(XEN) Synced stime skew: none (one clock); now {} ns, TSC {:#x}",
                crate::time::now_ns(),
                crate::arch::x86_64::instr::rdtsc()
            );
        }
        _ => {}
    }
}

fn state_name(s: RunState) -> &'static str {
    match s {
        RunState::Down => "down",
        RunState::Runnable => "runnable",
        RunState::Running(_) => "running",
        RunState::Blocked => "blocked",
    }
}

fn dump_domains(doms: &mut [Domain]) {
    crate::println!(
        "(XEN) 'q' pressed -> dumping domain info (now = {} ns)",
        crate::time::now_ns()
    );
    for d in doms.iter_mut() {
        crate::println!("(XEN) General information for domain {}:", d.domid);
        crate::println!(
            "(XEN)     privileged={} shutdown={:?} nr_pages={} max_pages={}",
            u8::from(d.is_privileged),
            d.shutdown.map(|r| r.name()),
            d.tot_pages,
            d.max_pages
        );
        crate::println!(
            "(XEN) VCPU information and callbacks for domain {}:",
            d.domid
        );
        for v in d.vcpus.iter() {
            let cpu = match v.state {
                RunState::Running(c) => alloc::format!("CPU{c}"),
                _ => alloc::string::String::from("-"),
            };
            crate::println!(
                "(XEN)   VCPU{}: {} {} {} mode",
                v.id,
                cpu,
                state_name(v.state),
                if v.kernel_mode { "kernel" } else { "user" }
            );
        }
        crate::println!(
            "(XEN) Notifying guest {}:* (virq {}, port *)",
            d.domid,
            Virq::Debug.raw()
        );
        for id in 0..d.vcpus.len() as u32 {
            crate::event::send_virq(d, id, Virq::Debug);
        }
    }
}

/// Xen's `gnttab_usage_print_all`, in short: per domain, its table's
/// frames, entries pinned by mappers, and the grants it maps (maptrack).
fn dump_grants(doms: &[Domain]) {
    crate::println!("(XEN) 'g' pressed -> dumping grant table usage");
    for d in doms {
        let g = &d.grants;
        crate::println!(
            "(XEN) grant-table for d{}: frames {}/{}, pinned entries {}, maptrack in use {} of {}",
            d.domid,
            g.active.nr_frames(),
            g.active.max_frames(),
            g.active.pinned(),
            g.maptrack.in_use(),
            g.maptrack.limit()
        );
    }
}

fn dump_runq(doms: &[Domain]) {
    crate::println!("(XEN) 'r' pressed -> dumping run queues");
    crate::println!("(XEN) Scheduler: SMP Credit Scheduler (credit)");
    for d in doms {
        for v in d.vcpus.iter() {
            crate::println!("(XEN)   d{}v{}: {}", d.domid, v.id, state_name(v.state));
        }
    }
}
