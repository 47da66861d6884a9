//! Decoding how a QEMU run ended.
//!
//! xen-core stops the machine by writing a code to QEMU's `isa-debug-exit`
//! device (I/O port 0xf4); QEMU then exits with status `(code << 1) | 1`.
//! The codes are the contract between xen-core and this harness:
//!
//! | code | meaning                                   | QEMU status |
//! |------|-------------------------------------------|-------------|
//! | 0    | Dom0 shut down: poweroff                  | 1           |
//! | 1    | Dom0 shut down: reboot                    | 3           |
//! | 2    | Dom0 shut down: suspend                   | 5           |
//! | 3    | Dom0 shut down: crash                     | 7           |
//! | 4    | Dom0 shut down: watchdog                  | 9           |
//! | 5    | Dom0 shut down: soft_reset                | 11          |
//! | 0x10 | hypervisor fatal error (boot error/panic) | 33          |
//!
//! Codes 0–5 are Xen's `SHUTDOWN_*` reasons (`sched.h`).  Everything about
//! exit codes lives in this one enum, [`Exit`].

use std::fmt;
use std::process::ExitStatus;

/// The isa-debug-exit code xen-core writes when the hypervisor itself gives up.
pub const HYPERVISOR_FATAL_CODE: u32 = 0x10;

/// Dom0's shutdown reason, as Xen's `SHUTDOWN_*` values (`xen/include/public/sched.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ShutdownReason {
    /// `SHUTDOWN_poweroff` (0).
    Poweroff,
    /// `SHUTDOWN_reboot` (1).
    Reboot,
    /// `SHUTDOWN_suspend` (2).
    Suspend,
    /// `SHUTDOWN_crash` (3).
    Crash,
    /// `SHUTDOWN_watchdog` (4).
    Watchdog,
    /// `SHUTDOWN_soft_reset` (5).
    SoftReset,
}

impl ShutdownReason {
    /// All reasons, in code order.
    pub const ALL: [ShutdownReason; 6] = [
        ShutdownReason::Poweroff,
        ShutdownReason::Reboot,
        ShutdownReason::Suspend,
        ShutdownReason::Crash,
        ShutdownReason::Watchdog,
        ShutdownReason::SoftReset,
    ];

    /// Xen's numeric value, which is also the isa-debug-exit code.
    pub fn code(self) -> u32 {
        match self {
            ShutdownReason::Poweroff => 0,
            ShutdownReason::Reboot => 1,
            ShutdownReason::Suspend => 2,
            ShutdownReason::Crash => 3,
            ShutdownReason::Watchdog => 4,
            ShutdownReason::SoftReset => 5,
        }
    }

    /// The reason for a code, if it is one.
    pub fn from_code(code: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }
}

/// How a QEMU run ended, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Exit {
    /// xen-core reported Dom0's shutdown with this reason.
    Dom0(ShutdownReason),
    /// xen-core halted on a fatal error (code 0x10, QEMU status 33).
    HypervisorFatal,
    /// isa-debug-exit with a code this harness does not know.
    UnknownCode(u32),
    /// QEMU exited with status 0: the guest reset the machine (a triple
    /// fault, or a reset request) and `-no-reboot` turned that into an exit.
    Reset,
    /// QEMU itself failed (bad arguments, missing file), before the guest ran.
    QemuFailed(i32),
    /// QEMU died from a signal it did not get from the harness.
    Signal(i32),
    /// The harness killed QEMU because the run took longer than allowed.
    TimedOut,
}

impl Exit {
    pub const POWEROFF: Exit = Exit::Dom0(ShutdownReason::Poweroff);
    pub const CRASH: Exit = Exit::Dom0(ShutdownReason::Crash);

    /// Decodes an isa-debug-exit code (the value xen-core wrote to port 0xf4).
    pub fn from_debug_exit_code(code: u32) -> Exit {
        if code == HYPERVISOR_FATAL_CODE {
            return Exit::HypervisorFatal;
        }
        match ShutdownReason::from_code(code) {
            Some(r) => Exit::Dom0(r),
            None => Exit::UnknownCode(code),
        }
    }

    /// Decodes QEMU's raw exit status (the number a shell sees in `$?`).
    ///
    /// QEMU exits 1 both for "debug-exit code 0" and for its own start-up
    /// errors; `qemu_complained` (QEMU wrote to stderr and the guest printed
    /// nothing) tells them apart.
    pub fn from_qemu_status(status: i32, qemu_complained: bool) -> Exit {
        if status == 0 {
            return Exit::Reset;
        }
        if status == 1 && qemu_complained {
            return Exit::QemuFailed(status);
        }
        if status > 0 && status & 1 == 1 {
            // An exit status is 8 bits: codes up to 0x7f survive the shift.
            return Exit::from_debug_exit_code((status as u32) >> 1);
        }
        Exit::QemuFailed(status)
    }

    /// Decodes a [`ExitStatus`] from `std::process`.
    pub fn from_exit_status(status: ExitStatus, qemu_complained: bool) -> Exit {
        if let Some(code) = status.code() {
            return Exit::from_qemu_status(code, qemu_complained);
        }
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            if let Some(sig) = status.signal() {
                return Exit::Signal(sig);
            }
        }
        Exit::QemuFailed(-1)
    }

    /// The QEMU exit status that this outcome corresponds to, when there is one.
    pub fn qemu_status(&self) -> Option<i32> {
        match *self {
            Exit::Dom0(r) => Some(((r.code() << 1) | 1) as i32),
            Exit::HypervisorFatal => Some(((HYPERVISOR_FATAL_CODE << 1) | 1) as i32),
            Exit::UnknownCode(c) => Some(((c << 1) | 1) as i32),
            Exit::Reset => Some(0),
            Exit::QemuFailed(s) => Some(s),
            Exit::Signal(_) | Exit::TimedOut => None,
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Exit::Dom0(ShutdownReason::Poweroff) => f.write_str("Dom0 powered off"),
            Exit::Dom0(ShutdownReason::Reboot) => f.write_str("Dom0 rebooted"),
            Exit::Dom0(ShutdownReason::Suspend) => f.write_str("Dom0 suspended"),
            Exit::Dom0(ShutdownReason::Crash) => f.write_str("Dom0 crashed"),
            Exit::Dom0(ShutdownReason::Watchdog) => f.write_str("Dom0's watchdog fired"),
            Exit::Dom0(ShutdownReason::SoftReset) => f.write_str("Dom0 asked for a soft reset"),
            Exit::HypervisorFatal => f.write_str("hypervisor halted on a fatal error"),
            Exit::UnknownCode(c) => write!(f, "unknown isa-debug-exit code {c:#x}"),
            Exit::Reset => f.write_str(
                "machine reset (triple fault or reset request; QEMU exited 0 under -no-reboot)",
            ),
            Exit::QemuFailed(s) => write!(f, "QEMU failed (exit status {s}) before the guest ran"),
            Exit::Signal(s) => write!(f, "QEMU was killed by signal {s}"),
            Exit::TimedOut => f.write_str("killed after timeout"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_statuses() {
        assert_eq!(Exit::from_qemu_status(1, false), Exit::POWEROFF);
        assert_eq!(
            Exit::from_qemu_status(3, false),
            Exit::Dom0(ShutdownReason::Reboot)
        );
        assert_eq!(
            Exit::from_qemu_status(5, false),
            Exit::Dom0(ShutdownReason::Suspend)
        );
        assert_eq!(Exit::from_qemu_status(7, false), Exit::CRASH);
        assert_eq!(
            Exit::from_qemu_status(9, false),
            Exit::Dom0(ShutdownReason::Watchdog)
        );
        assert_eq!(
            Exit::from_qemu_status(11, false),
            Exit::Dom0(ShutdownReason::SoftReset)
        );
        assert_eq!(Exit::from_qemu_status(33, false), Exit::HypervisorFatal);
        assert_eq!(Exit::from_qemu_status(0, false), Exit::Reset);
        assert_eq!(Exit::from_qemu_status(13, false), Exit::UnknownCode(6));
        assert_eq!(Exit::from_qemu_status(2, false), Exit::QemuFailed(2));
    }

    #[test]
    fn qemu_start_failure_is_not_poweroff() {
        assert_eq!(Exit::from_qemu_status(1, true), Exit::QemuFailed(1));
        assert_eq!(Exit::from_qemu_status(7, true), Exit::CRASH);
    }

    #[test]
    fn status_round_trips() {
        for r in ShutdownReason::ALL {
            let e = Exit::Dom0(r);
            assert_eq!(Exit::from_qemu_status(e.qemu_status().unwrap(), false), e);
        }
        assert_eq!(Exit::HypervisorFatal.qemu_status(), Some(33));
        assert_eq!(Exit::POWEROFF.qemu_status(), Some(1));
        assert_eq!(Exit::CRASH.qemu_status(), Some(7));
    }

    #[test]
    fn display_says_what_happened() {
        assert_eq!(Exit::POWEROFF.to_string(), "Dom0 powered off");
        assert_eq!(Exit::CRASH.to_string(), "Dom0 crashed");
        assert_eq!(
            Exit::HypervisorFatal.to_string(),
            "hypervisor halted on a fatal error"
        );
        assert_eq!(Exit::TimedOut.to_string(), "killed after timeout");
        assert_eq!(
            Exit::UnknownCode(0x22).to_string(),
            "unknown isa-debug-exit code 0x22"
        );
    }
}
