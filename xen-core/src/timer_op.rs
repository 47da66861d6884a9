//! What Xen 4.17 does with a vCPU's one-shot timer deadline, as pure
//! logic (`do_set_timer_op` and `VCPUOP_set_singleshot_timer` in Xen's
//! `common/domain.c`; the hypercalls themselves are in the binary).
//!
//! Xen arms its timer with `set_timer`, and a timer whose time has come
//! is run by the timer softirq before the hypervisor returns to the guest:
//! a deadline that is already due raises `VIRQ_TIMER` at once, so the
//! guest's upcall comes on the hypercall's return, not at the next tick.
//! The same kernel run on Xen showed it (`pv-bench`'s `timer_upcall`).

/// What to do with the vCPU's one-shot timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arm {
    /// Stop it (a deadline of 0 in `set_timer_op`).
    Cancel,
    /// Raise `VIRQ_TIMER` now (the deadline is due, or Xen's overflow
    /// workaround), leaving no timer armed.
    FireNow,
    /// Arm it for this system time (ns).
    At(u64),
}

/// `set_timer_op(timeout)` at system time `now` (ns): 0 cancels; a
/// deadline that is negative as Xen's signed `s_time_t`, or more than
/// 2^50 ns (about 13 days) ahead (Linux's wrapped jiffies, Xen's
/// comment says), fires at once; so does one already due.
pub fn set_timer_op(timeout: u64, now: u64) -> Arm {
    if timeout == 0 {
        return Arm::Cancel;
    }
    let t = timeout as i64;
    let offset = t.wrapping_sub(now as i64);
    if t < 0 || (offset > 0 && (offset >> 50) as u32 != 0) {
        return Arm::FireNow;
    }
    due(timeout, now)
}

/// `VCPUOP_set_singleshot_timer`: a deadline that is due (including one
/// beyond `s_time_t`, negative to Xen) fires at once. Its
/// `VCPU_SSHOTTMR_future` flag (`-ETIME` for a deadline in the past) is
/// ignored, as by Xen since 4.17.3 (Debian's 4.17.7 returns success).
pub fn singleshot(timeout: u64, now: u64) -> Arm {
    if (timeout as i64) < 0 {
        return Arm::FireNow;
    }
    due(timeout, now)
}

/// A periodic timer just set (`VCPUOP_set_periodic_timer`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Periodic {
    /// Raise `VIRQ_TIMER` now.
    pub fire_now: bool,
    /// When it last fired (now, if it fires now).
    pub last: u64,
    /// Its next deadline.
    pub next: u64,
}

/// Xen's `vcpu_set_periodic_timer` → `vcpu_periodic_timer_work`: if a
/// whole `period` has passed since the last periodic event (`last`; 0 for
/// a vCPU whose periodic timer never fired), the first tick comes at once
/// and the next a period later; otherwise a period after the last one.
pub fn set_periodic(period: u64, last: u64, now: u64) -> Periodic {
    let next = last.saturating_add(period);
    if now >= next {
        Periodic {
            fire_now: true,
            last: now,
            next: now.saturating_add(period),
        }
    } else {
        Periodic {
            fire_now: false,
            last,
            next,
        }
    }
}

fn due(timeout: u64, now: u64) -> Arm {
    if timeout <= now {
        Arm::FireNow
    } else {
        Arm::At(timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 5_000_000_000;

    #[test]
    fn set_timer_op_cancels_arms_and_fires_what_is_due() {
        assert_eq!(set_timer_op(0, NOW), Arm::Cancel);
        assert_eq!(set_timer_op(NOW + 1, NOW), Arm::At(NOW + 1));
        assert_eq!(set_timer_op(NOW, NOW), Arm::FireNow);
        assert_eq!(set_timer_op(1, NOW), Arm::FireNow);
        // Not due yet at system time 0 either.
        assert_eq!(set_timer_op(7, 0), Arm::At(7));
    }

    #[test]
    fn set_timer_op_fires_xens_overflow_cases_at_once() {
        // Negative as s_time_t.
        assert_eq!(set_timer_op(u64::MAX, NOW), Arm::FireNow);
        assert_eq!(set_timer_op(1 << 63, NOW), Arm::FireNow);
        // More than 2^50 ns ahead; just under is armed.
        assert_eq!(set_timer_op(NOW + (1 << 50), NOW), Arm::FireNow);
        assert_eq!(
            set_timer_op(NOW + (1 << 50) - 1, NOW),
            Arm::At(NOW + (1 << 50) - 1)
        );
    }

    #[test]
    fn a_periodic_timer_ticks_at_once_if_a_period_has_passed() {
        const MS: u64 = 1_000_000;
        // Never fired (or long ago): at once, then a period later.
        assert_eq!(
            set_periodic(10 * MS, 0, NOW),
            Periodic {
                fire_now: true,
                last: NOW,
                next: NOW + 10 * MS
            }
        );
        // Fired 3 ms ago: the next tick a period after that one.
        assert_eq!(
            set_periodic(10 * MS, NOW - 3 * MS, NOW),
            Periodic {
                fire_now: false,
                last: NOW - 3 * MS,
                next: NOW + 7 * MS
            }
        );
        // Exactly a period ago: due.
        assert!(set_periodic(10 * MS, NOW - 10 * MS, NOW).fire_now);
    }

    #[test]
    fn singleshot_fires_what_is_due() {
        assert_eq!(singleshot(NOW + 1, NOW), Arm::At(NOW + 1));
        assert_eq!(singleshot(NOW, NOW), Arm::FireNow);
        assert_eq!(singleshot(0, NOW), Arm::FireNow);
        assert_eq!(singleshot(u64::MAX, NOW), Arm::FireNow);
        // Far ahead is simply far ahead (no overflow workaround here).
        assert_eq!(singleshot(NOW + (1 << 55), NOW), Arm::At(NOW + (1 << 55)));
    }
}
