//! The credit scheduler's boot-time parameters: Xen's command-line options
//! `sched_credit_tslice_ms=`, `sched_ratelimit_us=` and
//! `vcpu_migration_delay=`, checked the way Xen's `scheduler_init`,
//! `csched_global_init` and `csched_init` check them: a value out of range
//! is reported and replaced by the default; a rate limit longer than the
//! slice becomes the slice.

use super::{GlobalParams, DEFAULT_RATELIMIT_US, DEFAULT_TSLICE_MS};
use hypercall_abi::sysctl::{
    XEN_SYSCTL_CSCHED_MGR_DLY_MAX_US, XEN_SYSCTL_CSCHED_TSLICE_MAX, XEN_SYSCTL_CSCHED_TSLICE_MIN,
    XEN_SYSCTL_SCHED_RATELIMIT_MAX, XEN_SYSCTL_SCHED_RATELIMIT_MIN,
};

/// What [`boot_params`] had to correct (each one is a Xen boot warning).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Corrections {
    /// `sched_credit_tslice_ms` was outside 1..=1000: default used.
    pub tslice_reset: bool,
    /// `sched_ratelimit_us` was neither 0 nor in 100..=500000: default used.
    pub ratelimit_reset: bool,
    /// The rate limit was longer than the slice: set to the slice.
    pub ratelimit_clamped: bool,
    /// `vcpu_migration_delay` was above 100 ms: 0 used.
    pub migration_delay_reset: bool,
}

/// The global parameters from the boot options (`None`: not given), and
/// what was corrected. The result is always accepted by
/// [`set_global`](super::CreditScheduler::set_global).
pub fn boot_params(
    tslice_ms: Option<u32>,
    ratelimit_us: Option<u32>,
    migration_delay_us: Option<u32>,
) -> (GlobalParams, Corrections) {
    let mut c = Corrections::default();
    let mut tslice = tslice_ms.unwrap_or(DEFAULT_TSLICE_MS);
    if !(XEN_SYSCTL_CSCHED_TSLICE_MIN..=XEN_SYSCTL_CSCHED_TSLICE_MAX).contains(&tslice) {
        c.tslice_reset = true;
        tslice = DEFAULT_TSLICE_MS;
    }
    let mut rl = ratelimit_us.unwrap_or(DEFAULT_RATELIMIT_US);
    if rl != 0 && !(XEN_SYSCTL_SCHED_RATELIMIT_MIN..=XEN_SYSCTL_SCHED_RATELIMIT_MAX).contains(&rl) {
        c.ratelimit_reset = true;
        rl = DEFAULT_RATELIMIT_US;
    }
    if u64::from(rl) > u64::from(tslice) * 1000 {
        c.ratelimit_clamped = true;
        rl = tslice * 1000;
    }
    let mut delay = migration_delay_us.unwrap_or(0);
    if delay > XEN_SYSCTL_CSCHED_MGR_DLY_MAX_US {
        c.migration_delay_reset = true;
        delay = 0;
    }
    (
        GlobalParams {
            tslice_ms: tslice,
            ratelimit_us: rl,
            vcpu_migr_delay_us: delay,
        },
        c,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credit::Credit;

    fn accepted(p: GlobalParams) -> bool {
        let mut s = Credit::new();
        s.set_global(p).is_ok() && s.global() == p
    }

    #[test]
    fn defaults_are_xens() {
        let (p, c) = boot_params(None, None, None);
        assert_eq!(
            p,
            GlobalParams {
                tslice_ms: 30,
                ratelimit_us: 1000,
                vcpu_migr_delay_us: 0
            }
        );
        assert_eq!(c, Corrections::default());
        assert!(accepted(p));
    }

    #[test]
    fn good_values_are_kept() {
        let (p, c) = boot_params(Some(5), Some(0), Some(100_000));
        assert_eq!(
            (p.tslice_ms, p.ratelimit_us, p.vcpu_migr_delay_us),
            (5, 0, 100_000)
        );
        assert_eq!(c, Corrections::default());
        assert!(accepted(p));
        let (p, _) = boot_params(Some(1000), Some(500_000), None);
        assert_eq!((p.tslice_ms, p.ratelimit_us), (1000, 500_000));
        assert!(accepted(p));
    }

    #[test]
    fn bad_values_fall_back_like_xen() {
        let (p, c) = boot_params(Some(0), Some(99), Some(100_001));
        assert_eq!(
            (p.tslice_ms, p.ratelimit_us, p.vcpu_migr_delay_us),
            (30, 1000, 0)
        );
        assert!(c.tslice_reset && c.ratelimit_reset && c.migration_delay_reset);
        assert!(!c.ratelimit_clamped);
        assert!(accepted(p));
        let (p, c) = boot_params(Some(u32::MAX), Some(u32::MAX), Some(u32::MAX));
        assert_eq!((p.tslice_ms, p.ratelimit_us), (30, 1000));
        assert!(c.tslice_reset && c.ratelimit_reset);
        assert!(accepted(p));
    }

    #[test]
    fn ratelimit_longer_than_slice_becomes_the_slice() {
        let (p, c) = boot_params(Some(1), Some(5000), None);
        assert_eq!((p.tslice_ms, p.ratelimit_us), (1, 1000));
        assert!(c.ratelimit_clamped && !c.ratelimit_reset);
        assert!(accepted(p));
    }
}
