//! `__HYPERVISOR_vcpu_op` (`public/vcpu.h`): bringing vCPUs up and down,
//! runstate reporting, per-vCPU timers and registration of the `vcpu_info`,
//! runstate and time areas. The call is `vcpu_op(cmd, vcpuid, arg)`.

use crate::{GuestHandle, XenPfn};

abi_enum! {
    /// `__HYPERVISOR_vcpu_op` commands (`VCPUOP_*`).
    pub enum VcpuOp: u32, raw u64 {
        /// Set the initial context of a down vCPU; `arg` is a
        /// [`crate::arch_x86::VcpuGuestContext`].
        Initialise = 0 => "VCPUOP_initialise",
        /// Bring an initialised vCPU up.
        Up = 1 => "VCPUOP_up",
        /// Take a vCPU down.
        Down = 2 => "VCPUOP_down",
        /// Returns 1 if the vCPU is up, else 0.
        IsUp = 3 => "VCPUOP_is_up",
        /// Fill a [`VcpuRunstateInfo`].
        GetRunstateInfo = 4 => "VCPUOP_get_runstate_info",
        /// Register a guest area Xen keeps updated with [`VcpuRunstateInfo`];
        /// `arg` is a [`VcpuRegisterRunstateMemoryArea`].
        RegisterRunstateMemoryArea = 5 => "VCPUOP_register_runstate_memory_area",
        /// Start a periodic timer; `arg` is a [`VcpuSetPeriodicTimer`].
        SetPeriodicTimer = 6 => "VCPUOP_set_periodic_timer",
        /// Stop the periodic timer.
        StopPeriodicTimer = 7 => "VCPUOP_stop_periodic_timer",
        /// Arm the single-shot timer; `arg` is a [`VcpuSetSingleshotTimer`].
        SetSingleshotTimer = 8 => "VCPUOP_set_singleshot_timer",
        /// Disarm the single-shot timer.
        StopSingleshotTimer = 9 => "VCPUOP_stop_singleshot_timer",
        /// Move this vCPU's `vcpu_info` to guest memory; `arg` is a [`VcpuRegisterVcpuInfo`].
        RegisterVcpuInfo = 10 => "VCPUOP_register_vcpu_info",
        /// Send an NMI to the vCPU.
        SendNmi = 11 => "VCPUOP_send_nmi",
        /// Get the physical CPU id; `arg` is a [`VcpuGetPhysid`].
        GetPhysid = 12 => "VCPUOP_get_physid",
        /// Register a guest area Xen keeps updated with `vcpu_time_info`;
        /// `arg` is a [`VcpuRegisterTimeMemoryArea`].
        RegisterVcpuTimeMemoryArea = 13 => "VCPUOP_register_vcpu_time_memory_area",
    }
}

abi_enum! {
    /// vCPU run states (`RUNSTATE_*`), index into [`VcpuRunstateInfo::time`].
    pub enum RunstateState: u32, raw u64 {
        /// Running on a physical CPU.
        Running = 0 => "RUNSTATE_running",
        /// Runnable but waiting for a physical CPU.
        Runnable = 1 => "RUNSTATE_runnable",
        /// Blocked (waiting for an event) or otherwise not runnable.
        Blocked = 2 => "RUNSTATE_blocked",
        /// Offline (down or paused by tools).
        Offline = 3 => "RUNSTATE_offline",
    }
}

/// Number of run states.
pub const RUNSTATE_COUNT: usize = 4;

/// Set in `state_entry_time` while Xen updates the registered runstate area
/// (with `VMASST_TYPE_runstate_update_flag`).
pub const XEN_RUNSTATE_UPDATE: u64 = 1 << 63;

abi_struct! {
    /// vCPU runstate accounting (`struct vcpu_runstate_info`), written by Xen.
    pub struct VcpuRunstateInfo {
        /// Current [`RunstateState`].
        pub state: u32,
        /// Implicit C padding; zero.
        pub _pad4: u32,
        /// System time (ns) at which `state` was entered (bit 63:
        /// [`XEN_RUNSTATE_UPDATE`]).
        pub state_entry_time: u64,
        /// Total ns spent in each state.
        pub time: [u64; RUNSTATE_COUNT],
    }
}

abi_struct! {
    /// Argument of `VCPUOP_register_runstate_memory_area`. C has a union of
    /// handle (`h`), virtual (`v`) and physical (`p`) address; all are the same
    /// 8-byte address here: a guest virtual address for PV, guest physical for HVM.
    pub struct VcpuRegisterRunstateMemoryArea {
        /// Address of a [`VcpuRunstateInfo`] in guest memory.
        pub addr: u64,
    }
}

abi_struct! {
    /// Argument of `VCPUOP_set_periodic_timer`.
    pub struct VcpuSetPeriodicTimer {
        /// Period in ns.
        pub period_ns: u64,
    }
}

/// `vcpu_set_singleshot_timer.flags`: fail with `-ETIME` if the timeout is in the past
/// (ignored by Xen since 4.17.3, and by Oxen: such a timeout fires at once).
pub const VCPU_SSHOTTMR_FUTURE: u32 = 1 << 0;

abi_struct! {
    /// Argument of `VCPUOP_set_singleshot_timer`.
    pub struct VcpuSetSingleshotTimer {
        /// Absolute system time of expiry in ns.
        pub timeout_abs_ns: u64,
        /// `VCPU_SSHOTTMR_*` flags.
        pub flags: u32,
        /// Implicit C padding; zero.
        pub _pad12: u32,
    }
}

abi_struct! {
    /// Argument of `VCPUOP_register_vcpu_info`: the `vcpu_info` moves to
    /// `mfn << 12 | offset`, which must not cross a page boundary.
    pub struct VcpuRegisterVcpuInfo {
        /// Frame (MFN for PV, GFN for HVM) holding the new `vcpu_info`.
        pub mfn: XenPfn,
        /// Byte offset within that frame.
        pub offset: u32,
        /// Reserved; zero.
        pub rsvd: u32,
    }
}

abi_struct! {
    /// Argument of `VCPUOP_get_physid`, written by Xen.
    pub struct VcpuGetPhysid {
        /// Physical id: x86 APIC id in bits 0..32, ACPI id in bits 32..64.
        pub phys_id: u64,
    }
}

abi_struct! {
    /// Argument of `VCPUOP_register_vcpu_time_memory_area` (union of handle /
    /// virtual / physical address, all 8 bytes).
    pub struct VcpuRegisterTimeMemoryArea {
        /// Address of a `vcpu_time_info` in guest memory.
        pub addr: GuestHandle,
    }
}

zeroed_default!(
    VcpuRunstateInfo,
    VcpuRegisterRunstateMemoryArea,
    VcpuSetPeriodicTimer,
    VcpuSetSingleshotTimer,
    VcpuRegisterVcpuInfo,
    VcpuGetPhysid,
    VcpuRegisterTimeMemoryArea,
);
