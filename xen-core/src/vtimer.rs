//! Virtual timers: each vCPU's one-shot timer (set_timer_op,
//! VCPUOP_set_singleshot_timer), periodic timer (VCPUOP_set_periodic_timer)
//! and SCHEDOP_poll timeout, fired from the boot CPU's tick as VIRQ_TIMER
//! (or a poll wake-up).

use crate::domain::DOMAINS;
use hypercall_abi::xen::Virq;

/// Fires every expired timer. Runs on CPU 0's tick, interrupts off.
pub fn run_expired() {
    let now = crate::time::now_ns();
    let mut doms = DOMAINS.lock();
    for d in doms.iter_mut() {
        for id in 0..d.vcpus.len() {
            let v = &mut d.vcpus[id];
            if v.state == crate::domain::RunState::Down {
                continue;
            }
            let mut fire = false;
            if v.singleshot.is_some_and(|t| t <= now) {
                v.singleshot = None;
                fire = true;
            }
            if let Some((period, next)) = v.periodic {
                if next <= now {
                    // Skip missed periods rather than firing a burst.
                    let missed = (now - next) / period;
                    v.periodic = Some((period, next + (missed + 1) * period));
                    v.periodic_last = now;
                    fire = true;
                }
            }
            let poll_expired = v.poll_deadline.is_some_and(|t| t <= now);
            if poll_expired {
                v.poll_deadline = None;
            }
            if fire {
                crate::event::send_virq(d, id as u32, Virq::Timer);
            }
            if poll_expired {
                crate::sched::wake(d, id as u32);
            }
        }
        if d.is_hvm() {
            crate::hvm_run::wake_expired(d, now);
        }
    }
    crate::event::console_input_tick(&mut doms);
}
