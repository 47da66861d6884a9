//! What the toolstack does when a guest shuts down (xl's domain monitor,
//! `handle_domain_death`): the xl.cfg `on_poweroff`/`on_reboot`/`on_crash`
//! action chosen by the shutdown reason. Pure, host-tested.

use crate::xlcfg::{Action, DomainConfig};

/// What to do with a guest that shut down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Destroy it.
    Destroy,
    /// Destroy it and build it again from the same configuration.
    Restart,
    /// Keep the old one under a new name and build a new one.
    RenameRestart,
    /// Leave it as it is (`xl list` shows it shut down).
    Preserve,
    /// Nothing: it is suspended (save/restore is a later issue).
    Ignore,
}

/// Xen's `SHUTDOWN_*` reasons.
pub mod reason {
    /// `SHUTDOWN_poweroff`.
    pub const POWEROFF: u32 = 0;
    /// `SHUTDOWN_reboot`.
    pub const REBOOT: u32 = 1;
    /// `SHUTDOWN_suspend`.
    pub const SUSPEND: u32 = 2;
    /// `SHUTDOWN_crash`.
    pub const CRASH: u32 = 3;
    /// `SHUTDOWN_watchdog`.
    pub const WATCHDOG: u32 = 4;
    /// `SHUTDOWN_soft_reset`.
    pub const SOFT_RESET: u32 = 5;
}

/// The action for a guest configured by `cfg` that shut down for `reason`
/// (libxl: poweroff → on_poweroff, reboot → on_reboot, crash and watchdog
/// → on_crash, soft_reset → on_soft_reset (restart), suspend → nothing).
/// Core dumps are not written (no file system to write them to): the
/// `coredump-*` actions act as their plain counterparts.
pub fn next(cfg: &DomainConfig, reason: u32) -> Next {
    let action = match reason {
        reason::POWEROFF => cfg.on_poweroff,
        reason::REBOOT => cfg.on_reboot,
        reason::CRASH | reason::WATCHDOG => cfg.on_crash,
        reason::SOFT_RESET => Action::Restart,
        _ => return Next::Ignore,
    };
    match action {
        Action::Destroy | Action::CoredumpDestroy => Next::Destroy,
        Action::Restart | Action::CoredumpRestart | Action::SoftReset => Next::Restart,
        Action::RenameRestart => Next::RenameRestart,
        Action::Preserve => Next::Preserve,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> DomainConfig {
        let text = alloc::format!("name = \"g\"\nkernel = \"/boot/hello\"\n{extra}\n");
        crate::xlcfg::load("g.cfg", &text, &[]).unwrap().0
    }

    #[test]
    fn xl_defaults_destroy_on_poweroff_and_crash_restart_on_reboot() {
        let c = cfg("");
        assert_eq!(next(&c, reason::POWEROFF), Next::Destroy);
        assert_eq!(next(&c, reason::REBOOT), Next::Restart);
        assert_eq!(next(&c, reason::CRASH), Next::Destroy);
        assert_eq!(next(&c, reason::WATCHDOG), Next::Destroy);
        assert_eq!(next(&c, reason::SUSPEND), Next::Ignore);
        assert_eq!(next(&c, 99), Next::Ignore);
    }

    #[test]
    fn configured_actions_are_honoured() {
        let c = cfg(
            "on_crash = \"restart\"\non_poweroff = \"preserve\"\non_reboot = \"rename-restart\"",
        );
        assert_eq!(next(&c, reason::CRASH), Next::Restart);
        assert_eq!(next(&c, reason::POWEROFF), Next::Preserve);
        assert_eq!(next(&c, reason::REBOOT), Next::RenameRestart);
        let c = cfg("on_crash = \"coredump-destroy\"");
        assert_eq!(next(&c, reason::CRASH), Next::Destroy);
        let c = cfg("on_crash = \"coredump-restart\"");
        assert_eq!(next(&c, reason::CRASH), Next::Restart);
    }
}
