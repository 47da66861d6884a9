//! `__HYPERVISOR_sched_op` (`public/sched.h`): yield, block, shutdown, poll,
//! remote shutdown, watchdog and pin override, with their argument structs and
//! the shutdown reason codes.

use crate::{DomId, GuestHandle};

abi_enum! {
    /// `__HYPERVISOR_sched_op` commands (`SCHEDOP_*`); call is `sched_op(cmd, arg)`.
    pub enum SchedOp: u32, raw u64 {
        /// Voluntarily yield the CPU; `arg` unused.
        Yield = 0 => "SCHEDOP_yield",
        /// Block until an event is pending (clears the upcall mask); `arg` unused.
        Block = 1 => "SCHEDOP_block",
        /// Shut the domain down; `arg` is a [`SchedShutdown`].
        Shutdown = 2 => "SCHEDOP_shutdown",
        /// Block until one of a set of ports is pending; `arg` is a [`SchedPoll`].
        Poll = 3 => "SCHEDOP_poll",
        /// Shut another domain down (privileged); `arg` is a [`SchedRemoteShutdown`].
        RemoteShutdown = 4 => "SCHEDOP_remote_shutdown",
        /// Set the shutdown code without shutting down; `arg` is a [`SchedShutdown`].
        ShutdownCode = 5 => "SCHEDOP_shutdown_code",
        /// Create/feed/destroy a domain watchdog; `arg` is a [`SchedWatchdog`].
        Watchdog = 6 => "SCHEDOP_watchdog",
        /// Temporarily pin the vCPU to a pCPU (dom0); `arg` is a [`SchedPinOverride`].
        PinOverride = 7 => "SCHEDOP_pin_override",
    }
}

abi_enum! {
    /// Reason codes for `SCHEDOP_shutdown` / `SCHEDOP_remote_shutdown` (`SHUTDOWN_*`).
    pub enum ShutdownReason: u32, raw u64 {
        /// Domain exited normally; clean up and kill.
        Poweroff = 0 => "SHUTDOWN_poweroff",
        /// Clean up, kill and restart.
        Reboot = 1 => "SHUTDOWN_reboot",
        /// Clean up and save the domain's state (suspend).
        Suspend = 2 => "SHUTDOWN_suspend",
        /// Domain crashed (tell tools, maybe dump core).
        Crash = 3 => "SHUTDOWN_crash",
        /// Watchdog expired.
        Watchdog = 4 => "SHUTDOWN_watchdog",
        /// Soft reset: tear down state but keep memory (kexec).
        SoftReset = 5 => "SHUTDOWN_soft_reset",
    }
}

/// Highest shutdown reason (`SHUTDOWN_MAX`).
pub const SHUTDOWN_MAX: u32 = ShutdownReason::SoftReset as u32;

abi_struct! {
    /// Argument of `SCHEDOP_shutdown` and `SCHEDOP_shutdown_code`
    /// (`struct sched_shutdown`), written by the guest.
    pub struct SchedShutdown {
        /// A [`ShutdownReason`].
        pub reason: u32,
    }
}

abi_struct! {
    /// Argument of `SCHEDOP_poll` (`struct sched_poll`), written by the guest.
    pub struct SchedPoll {
        /// Guest handle of an array of `evtchn_port_t` to wait on.
        pub ports: GuestHandle,
        /// Number of ports in the array.
        pub nr_ports: u32,
        /// Implicit C padding; zero.
        pub _pad12: u32,
        /// Absolute system-time timeout in ns (0 = none).
        pub timeout: u64,
    }
}

abi_struct! {
    /// Argument of `SCHEDOP_remote_shutdown` (`struct sched_remote_shutdown`),
    /// written by a privileged caller.
    pub struct SchedRemoteShutdown {
        /// Domain to shut down.
        pub domain_id: DomId,
        /// Implicit C padding; zero.
        pub _pad2: u16,
        /// A [`ShutdownReason`].
        pub reason: u32,
    }
}

abi_struct! {
    /// Argument of `SCHEDOP_watchdog` (`struct sched_watchdog`). With `id == 0`
    /// a new watchdog is created and its id returned; with `id != 0` and
    /// `timeout == 0` it is destroyed, otherwise re-armed.
    pub struct SchedWatchdog {
        /// Watchdog id (input, 0 to create).
        pub id: u32,
        /// Timeout in seconds.
        pub timeout: u32,
    }
}

abi_struct! {
    /// Argument of `SCHEDOP_pin_override` (`struct sched_pin_override`).
    pub struct SchedPinOverride {
        /// Physical CPU to pin to, or -1 to remove the override.
        pub pcpu: i32,
    }
}

zeroed_default!(
    SchedShutdown,
    SchedPoll,
    SchedRemoteShutdown,
    SchedWatchdog,
    SchedPinOverride
);
