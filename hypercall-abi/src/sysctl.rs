//! `__HYPERVISOR_sysctl` (`public/sysctl.h`): host-wide control operations for
//! the control domain (console ring, physical info, domain lists, scheduler,
//! cpupools, power management, livepatch, CPU policy). Owns the command
//! numbers, their argument structs and the `xen_sysctl` envelope.

use crate::domctl::XenctlBitmap;
use crate::xen::XenDomainHandle;
use crate::{union_read, union_write, DomId, GuestHandle};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// Version of the sysctl interface this crate implements (Xen 4.17).
pub const XEN_SYSCTL_INTERFACE_VERSION: u32 = 0x15;

abi_enum! {
    /// Sysctl commands (`XEN_SYSCTL_*`), in [`XenSysctl::cmd`].
    pub enum SysctlCmd: u32, raw u64 {
        /// Read the Xen console ring; [`XenSysctlReadconsole`].
        Readconsole = 1 => "XEN_SYSCTL_readconsole",
        /// Trace buffer control; [`XenSysctlTbufOp`].
        TbufOp = 2 => "XEN_SYSCTL_tbuf_op",
        /// Physical host info; [`XenSysctlPhysinfo`].
        Physinfo = 3 => "XEN_SYSCTL_physinfo",
        /// Default scheduler; [`XenSysctlSchedId`].
        SchedId = 4 => "XEN_SYSCTL_sched_id",
        /// Perf counters; [`XenSysctlPerfcOp`].
        PerfcOp = 5 => "XEN_SYSCTL_perfc_op",
        /// List domains; [`XenSysctlGetdomaininfolist`].
        Getdomaininfolist = 6 => "XEN_SYSCTL_getdomaininfolist",
        /// Inject debug keys; [`XenSysctlDebugKeys`].
        DebugKeys = 7 => "XEN_SYSCTL_debug_keys",
        /// Per-CPU idle time; [`XenSysctlGetcpuinfo`].
        Getcpuinfo = 8 => "XEN_SYSCTL_getcpuinfo",
        /// Free heap memory; [`XenSysctlAvailheap`].
        Availheap = 9 => "XEN_SYSCTL_availheap",
        /// Power-management statistics; [`XenSysctlGetPmstat`].
        GetPmstat = 10 => "XEN_SYSCTL_get_pmstat",
        /// CPU online/offline; [`XenSysctlCpuHotplug`].
        CpuHotplug = 11 => "XEN_SYSCTL_cpu_hotplug",
        /// Power-management control; [`XenSysctlPmOp`].
        PmOp = 12 => "XEN_SYSCTL_pm_op",
        /// Page offlining; [`XenSysctlPageOfflineOp`].
        PageOfflineOp = 14 => "XEN_SYSCTL_page_offline_op",
        /// Lock profiling; [`XenSysctlLockprofOp`].
        LockprofOp = 15 => "XEN_SYSCTL_lockprof_op",
        /// CPU topology; [`XenSysctlCputopoinfo`].
        Cputopoinfo = 16 => "XEN_SYSCTL_cputopoinfo",
        /// NUMA info; [`XenSysctlNumainfo`].
        Numainfo = 17 => "XEN_SYSCTL_numainfo",
        /// CPU pools; [`XenSysctlCpupoolOp`].
        CpupoolOp = 18 => "XEN_SYSCTL_cpupool_op",
        /// Scheduler globals; [`XenSysctlSchedulerOp`].
        SchedulerOp = 19 => "XEN_SYSCTL_scheduler_op",
        /// Coverage; [`XenSysctlCoverageOp`].
        CoverageOp = 20 => "XEN_SYSCTL_coverage_op",
        /// Cache monitoring; [`XenSysctlPsrCmtOp`].
        PsrCmtOp = 21 => "XEN_SYSCTL_psr_cmt_op",
        /// PCI topology; [`XenSysctlPcitopoinfo`].
        Pcitopoinfo = 22 => "XEN_SYSCTL_pcitopoinfo",
        /// Cache/bandwidth allocation info; [`XenSysctlPsrAlloc`].
        PsrAlloc = 23 => "XEN_SYSCTL_psr_alloc",
        /// CPU levelling capabilities; [`XenSysctlCpuLevellingCaps`].
        GetCpuLevellingCaps = 25 => "XEN_SYSCTL_get_cpu_levelling_caps",
        /// CPU featureset; [`XenSysctlCpuFeatureset`].
        GetCpuFeatureset = 26 => "XEN_SYSCTL_get_cpu_featureset",
        /// Livepatch; [`XenSysctlLivepatchOp`].
        LivepatchOp = 27 => "XEN_SYSCTL_livepatch_op",
        /// System CPU policies; [`XenSysctlCpuPolicy`].
        GetCpuPolicy = 29 => "XEN_SYSCTL_get_cpu_policy",
    }
}

abi_struct! {
    /// `XEN_SYSCTL_readconsole`: copy (part of) Xen's console ring.
    pub struct XenSysctlReadconsole {
        /// Clear the ring after reading.
        pub clear: u8,
        /// Read from `index` onwards (incremental).
        pub incremental: u8,
        /// Padding.
        pub pad0: u8,
        /// Padding.
        pub pad1: u8,
        /// Start index (in), next index (out).
        pub index: u32,
        /// Handle of the `char` buffer.
        pub buffer: GuestHandle,
        /// Buffer size (in), bytes written (out).
        pub count: u32,
        /// Implicit C padding.
        pub _pad20: u32,
    }
}

abi_enum! {
    /// `tbuf_op.cmd` (`XEN_SYSCTL_TBUFOP_*`).
    pub enum TbufOp: u32, raw u64 {
        /// Get info.
        GetInfo = 0 => "XEN_SYSCTL_TBUFOP_get_info",
        /// Set CPU mask.
        SetCpuMask = 1 => "XEN_SYSCTL_TBUFOP_set_cpu_mask",
        /// Set event mask.
        SetEvtMask = 2 => "XEN_SYSCTL_TBUFOP_set_evt_mask",
        /// Set buffer size.
        SetSize = 3 => "XEN_SYSCTL_TBUFOP_set_size",
        /// Enable.
        Enable = 4 => "XEN_SYSCTL_TBUFOP_enable",
        /// Disable.
        Disable = 5 => "XEN_SYSCTL_TBUFOP_disable",
    }
}

abi_struct! {
    /// `XEN_SYSCTL_tbuf_op`.
    pub struct XenSysctlTbufOp {
        /// A [`TbufOp`].
        pub cmd: u32,
        /// Implicit C padding.
        pub _pad4: u32,
        /// CPU mask.
        pub cpu_mask: XenctlBitmap,
        /// Event mask.
        pub evt_mask: u32,
        /// Implicit C padding.
        pub _pad28: u32,
        /// Trace buffer MFN (output).
        pub buffer_mfn: u64,
        /// Buffer size.
        pub size: u32,
        /// Implicit C padding.
        pub _pad44: u32,
    }
}

/// `physinfo.capabilities`: HVM supported.
pub const XEN_SYSCTL_PHYSCAP_HVM: u32 = 1 << 0;
/// `physinfo.capabilities`: PV supported.
pub const XEN_SYSCTL_PHYSCAP_PV: u32 = 1 << 1;
/// `physinfo.capabilities`: IOMMU passthrough.
pub const XEN_SYSCTL_PHYSCAP_DIRECTIO: u32 = 1 << 2;
/// `physinfo.capabilities`: HAP.
pub const XEN_SYSCTL_PHYSCAP_HAP: u32 = 1 << 3;
/// `physinfo.capabilities`: shadow paging.
pub const XEN_SYSCTL_PHYSCAP_SHADOW: u32 = 1 << 4;
/// `physinfo.capabilities`: IOMMU shares HAP page tables.
pub const XEN_SYSCTL_PHYSCAP_IOMMU_HAP_PT_SHARE: u32 = 1 << 5;
/// `physinfo.capabilities`: vmtrace.
pub const XEN_SYSCTL_PHYSCAP_VMTRACE: u32 = 1 << 6;
/// `physinfo.capabilities`: vPMU.
pub const XEN_SYSCTL_PHYSCAP_VPMU: u32 = 1 << 7;
/// `physinfo.capabilities`: grant table v1.
pub const XEN_SYSCTL_PHYSCAP_GNTTAB_V1: u32 = 1 << 8;
/// `physinfo.capabilities`: grant table v2.
pub const XEN_SYSCTL_PHYSCAP_GNTTAB_V2: u32 = 1 << 9;
/// Highest defined capability bit.
pub const XEN_SYSCTL_PHYSCAP_MAX: u32 = XEN_SYSCTL_PHYSCAP_GNTTAB_V2;

/// Number of hardware capability words in `physinfo.hw_cap`.
pub const XEN_SYSCTL_PHYSINFO_HW_CAP_WORDS: usize = 8;

abi_struct! {
    /// `XEN_SYSCTL_physinfo`, written by Xen.
    pub struct XenSysctlPhysinfo {
        /// Threads per core.
        pub threads_per_core: u32,
        /// Cores per socket.
        pub cores_per_socket: u32,
        /// Online CPUs.
        pub nr_cpus: u32,
        /// Highest CPU id.
        pub max_cpu_id: u32,
        /// NUMA nodes.
        pub nr_nodes: u32,
        /// Highest node id.
        pub max_node_id: u32,
        /// CPU frequency (kHz).
        pub cpu_khz: u32,
        /// `XEN_SYSCTL_PHYSCAP_*`.
        pub capabilities: u32,
        /// Architecture capabilities.
        pub arch_capabilities: u32,
        /// Padding.
        pub pad: u32,
        /// Total pages.
        pub total_pages: u64,
        /// Free pages.
        pub free_pages: u64,
        /// Pages awaiting scrub.
        pub scrub_pages: u64,
        /// Outstanding claims.
        pub outstanding_pages: u64,
        /// Highest MFN.
        pub max_mfn: u64,
        /// Hardware capability words.
        pub hw_cap: [u32; XEN_SYSCTL_PHYSINFO_HW_CAP_WORDS],
    }
}

abi_struct! {
    /// `XEN_SYSCTL_sched_id`.
    pub struct XenSysctlSchedId {
        /// A [`crate::domctl::SchedulerId`] (output).
        pub sched_id: u32,
    }
}

/// `perfc_op.cmd`: reset counters.
pub const XEN_SYSCTL_PERFCOP_RESET: u32 = 1;
/// `perfc_op.cmd`: query counters.
pub const XEN_SYSCTL_PERFCOP_QUERY: u32 = 2;

/// Length of `xen_sysctl_perfc_desc.name`.
pub const XEN_SYSCTL_PERFC_NAME_LEN: usize = 80;

abi_struct! {
    /// A perf counter descriptor (`struct xen_sysctl_perfc_desc`).
    pub struct XenSysctlPerfcDesc {
        /// Name.
        pub name: [u8; XEN_SYSCTL_PERFC_NAME_LEN],
        /// Number of values.
        pub nr_vals: u32,
    }
}

abi_struct! {
    /// `XEN_SYSCTL_perfc_op`.
    pub struct XenSysctlPerfcOp {
        /// `XEN_SYSCTL_PERFCOP_*`.
        pub cmd: u32,
        /// Counters (output).
        pub nr_counters: u32,
        /// Values (output).
        pub nr_vals: u32,
        /// Implicit C padding.
        pub _pad12: u32,
        /// Handle of [`XenSysctlPerfcDesc`] entries.
        pub desc: GuestHandle,
        /// Handle of `u32` values.
        pub val: GuestHandle,
    }
}

abi_struct! {
    /// `XEN_SYSCTL_getdomaininfolist`.
    pub struct XenSysctlGetdomaininfolist {
        /// First domain id to report.
        pub first_domain: DomId,
        /// Implicit C padding.
        pub _pad2: u16,
        /// Capacity of `buffer`.
        pub max_domains: u32,
        /// Handle of [`crate::domctl::XenDomctlGetdomaininfo`] entries.
        pub buffer: GuestHandle,
        /// Entries written (output).
        pub num_domains: u32,
        /// Implicit C padding.
        pub _pad20: u32,
    }
}

abi_struct! {
    /// `XEN_SYSCTL_debug_keys`.
    pub struct XenSysctlDebugKeys {
        /// Handle of the key characters.
        pub keys: GuestHandle,
        /// Number of keys.
        pub nr_keys: u32,
        /// Implicit C padding.
        pub _pad12: u32,
    }
}

abi_struct! {
    /// Per-CPU info (`struct xen_sysctl_cpuinfo`).
    pub struct XenSysctlCpuinfo {
        /// Idle time (ns).
        pub idletime: u64,
    }
}

abi_struct! {
    /// `XEN_SYSCTL_getcpuinfo`.
    pub struct XenSysctlGetcpuinfo {
        /// Capacity of `info`.
        pub max_cpus: u32,
        /// Implicit C padding.
        pub _pad4: u32,
        /// Handle of [`XenSysctlCpuinfo`] entries.
        pub info: GuestHandle,
        /// Entries written (output).
        pub nr_cpus: u32,
        /// Implicit C padding.
        pub _pad20: u32,
    }
}

abi_struct! {
    /// `XEN_SYSCTL_availheap`.
    pub struct XenSysctlAvailheap {
        /// Minimum address width.
        pub min_bitwidth: u32,
        /// Maximum address width.
        pub max_bitwidth: u32,
        /// Node (-1 = all).
        pub node: i32,
        /// Implicit C padding.
        pub _pad12: u32,
        /// Free bytes (output).
        pub avail_bytes: u64,
    }
}

abi_struct! {
    /// P-state value (`struct pm_px_val`).
    pub struct PmPxVal {
        /// Frequency.
        pub freq: u64,
        /// Residency.
        pub residency: u64,
        /// Transitions.
        pub count: u64,
    }
}

abi_struct! {
    /// P-state statistics (`struct pm_px_stat`).
    pub struct PmPxStat {
        /// Total P-states.
        pub total: u8,
        /// Usable P-states.
        pub usable: u8,
        /// Last P-state.
        pub last: u8,
        /// Current P-state.
        pub cur: u8,
        /// Implicit C padding.
        pub _pad4: u32,
        /// Handle of the transition table.
        pub trans_pt: GuestHandle,
        /// Handle of [`PmPxVal`] entries.
        pub pt: GuestHandle,
    }
}

abi_struct! {
    /// C-state statistics (`struct pm_cx_stat`).
    pub struct PmCxStat {
        /// Number of C-states.
        pub nr: u32,
        /// Last C-state.
        pub last: u32,
        /// Idle time.
        pub idle_time: u64,
        /// Handle of trigger counts.
        pub triggers: GuestHandle,
        /// Handle of residencies.
        pub residencies: GuestHandle,
        /// Package C-states.
        pub nr_pc: u32,
        /// Core C-states.
        pub nr_cc: u32,
        /// Handle of package residencies.
        pub pc: GuestHandle,
        /// Handle of core residencies.
        pub cc: GuestHandle,
    }
}

abi_struct! {
    /// `XEN_SYSCTL_get_pmstat`. The union `u` is stored as [`PmCxStat`].
    pub struct XenSysctlGetPmstat {
        /// Statistic type.
        pub r#type: u32,
        /// CPU.
        pub cpuid: u32,
        /// Union `getpx` / `getcx`.
        pub u: PmCxStat,
    }
}

impl XenSysctlGetPmstat {
    /// `u.getpx` view.
    pub fn getpx(&self) -> PmPxStat {
        union_read(self.u.as_bytes())
    }
}

/// `cpu_hotplug.op`: online.
pub const XEN_SYSCTL_CPU_HOTPLUG_ONLINE: u32 = 0;
/// `cpu_hotplug.op`: offline.
pub const XEN_SYSCTL_CPU_HOTPLUG_OFFLINE: u32 = 1;
/// `cpu_hotplug.op`: enable SMT.
pub const XEN_SYSCTL_CPU_HOTPLUG_SMT_ENABLE: u32 = 2;
/// `cpu_hotplug.op`: disable SMT.
pub const XEN_SYSCTL_CPU_HOTPLUG_SMT_DISABLE: u32 = 3;

abi_struct! {
    /// `XEN_SYSCTL_cpu_hotplug`.
    pub struct XenSysctlCpuHotplug {
        /// CPU.
        pub cpu: u32,
        /// `XEN_SYSCTL_CPU_HOTPLUG_*`.
        pub op: u32,
    }
}

abi_struct! {
    /// Userspace governor parameters (`struct xen_userspace`).
    pub struct XenUserspace {
        /// Set speed.
        pub scaling_setspeed: u32,
    }
}

abi_struct! {
    /// Ondemand governor parameters (`struct xen_ondemand`).
    pub struct XenOndemand {
        /// Maximum sampling rate.
        pub sampling_rate_max: u32,
        /// Minimum sampling rate.
        pub sampling_rate_min: u32,
        /// Sampling rate.
        pub sampling_rate: u32,
        /// Up threshold.
        pub up_threshold: u32,
    }
}

/// Length of governor/driver names in cpufreq structs.
pub const CPUFREQ_NAME_LEN: usize = 16;

abi_struct! {
    /// cpufreq parameters (`struct xen_get_cpufreq_para`). The governor union
    /// `u` is stored as [`XenOndemand`] (userspace is its first word).
    pub struct XenGetCpufreqPara {
        /// CPUs in the domain of this CPU.
        pub cpu_num: u32,
        /// Available frequencies.
        pub freq_num: u32,
        /// Available governors.
        pub gov_num: u32,
        /// Implicit C padding.
        pub _pad12: u32,
        /// Handle of affected CPUs.
        pub affected_cpus: GuestHandle,
        /// Handle of available frequencies.
        pub scaling_available_frequencies: GuestHandle,
        /// Handle of available governor names.
        pub scaling_available_governors: GuestHandle,
        /// Driver name.
        pub scaling_driver: [u8; CPUFREQ_NAME_LEN],
        /// Current frequency.
        pub cpuinfo_cur_freq: u32,
        /// Maximum frequency.
        pub cpuinfo_max_freq: u32,
        /// Minimum frequency.
        pub cpuinfo_min_freq: u32,
        /// Current scaling frequency.
        pub scaling_cur_freq: u32,
        /// Governor name.
        pub scaling_governor: [u8; CPUFREQ_NAME_LEN],
        /// Maximum scaling frequency.
        pub scaling_max_freq: u32,
        /// Minimum scaling frequency.
        pub scaling_min_freq: u32,
        /// Governor parameters (union `userspace` / `ondemand`).
        pub u: XenOndemand,
        /// Turbo enabled.
        pub turbo_enabled: i32,
        /// Implicit C padding.
        pub _pad116: u32,
    }
}

abi_struct! {
    /// Set governor (`struct xen_set_cpufreq_gov`).
    pub struct XenSetCpufreqGov {
        /// Governor name.
        pub scaling_governor: [u8; CPUFREQ_NAME_LEN],
    }
}

abi_struct! {
    /// Set cpufreq parameter (`struct xen_set_cpufreq_para`).
    pub struct XenSetCpufreqPara {
        /// Parameter selector.
        pub ctrl_type: u32,
        /// Value.
        pub ctrl_value: u32,
    }
}

/// `pm_op.cmd`: set SMT scheduling option.
pub const XEN_SYSCTL_PM_OP_SET_SCHED_OPT_SMT: u32 = 0x21;
/// `pm_op.cmd`: get maximum C-state.
pub const XEN_SYSCTL_PM_OP_GET_MAX_CSTATE: u32 = 0x22;
/// `pm_op.cmd`: set maximum C-state.
pub const XEN_SYSCTL_PM_OP_SET_MAX_CSTATE: u32 = 0x23;
/// `pm_op.cmd`: set vCPU migration delay.
pub const XEN_SYSCTL_PM_OP_SET_VCPU_MIGRATION_DELAY: u32 = 0x24;
/// `pm_op.cmd`: get vCPU migration delay.
pub const XEN_SYSCTL_PM_OP_GET_VCPU_MIGRATION_DELAY: u32 = 0x25;
/// `pm_op.cmd`: enable turbo.
pub const XEN_SYSCTL_PM_OP_ENABLE_TURBO: u32 = 0x26;
/// `pm_op.cmd`: disable turbo.
pub const XEN_SYSCTL_PM_OP_DISABLE_TURBO: u32 = 0x27;
/// `set_max_cstate` value: unlimited.
pub const XEN_SYSCTL_CX_UNLIMITED: u32 = 0xffff_ffff;

abi_struct! {
    /// `XEN_SYSCTL_pm_op`. The union `u` is stored as [`XenGetCpufreqPara`].
    pub struct XenSysctlPmOp {
        /// Sub-command.
        pub cmd: u32,
        /// CPU.
        pub cpuid: u32,
        /// Union of the sub-command arguments.
        pub u: XenGetCpufreqPara,
    }
}

impl XenSysctlPmOp {
    /// `u.set_gov` view.
    pub fn set_gov(&self) -> XenSetCpufreqGov {
        union_read(self.u.as_bytes())
    }
    /// `u.set_para` view.
    pub fn set_para(&self) -> XenSetCpufreqPara {
        union_read(self.u.as_bytes())
    }
    /// `u.get_avgfreq` / first 8 bytes.
    pub fn get_avgfreq(&self) -> u64 {
        union_read(self.u.as_bytes())
    }
    /// `u.set_sched_opt_smt` / `get_max_cstate` / `set_max_cstate`: first 4 bytes.
    pub const fn word(&self) -> u32 {
        self.u.cpu_num
    }
}

abi_struct! {
    /// `XEN_SYSCTL_page_offline_op`.
    pub struct XenSysctlPageOfflineOp {
        /// Sub-command.
        pub cmd: u32,
        /// First MFN.
        pub start: u32,
        /// Last MFN.
        pub end: u32,
        /// Implicit C padding.
        pub _pad12: u32,
        /// Handle of per-page status words.
        pub status: GuestHandle,
    }
}

/// `lockprof_op.cmd`: reset.
pub const XEN_SYSCTL_LOCKPROF_RESET: u32 = 1;
/// `lockprof_op.cmd`: query.
pub const XEN_SYSCTL_LOCKPROF_QUERY: u32 = 2;

/// Length of `xen_sysctl_lockprof_data.name`.
pub const XEN_SYSCTL_LOCKPROF_NAME_LEN: usize = 40;

abi_struct! {
    /// Lock profile entry (`struct xen_sysctl_lockprof_data`).
    pub struct XenSysctlLockprofData {
        /// Lock name.
        pub name: [u8; XEN_SYSCTL_LOCKPROF_NAME_LEN],
        /// Lock type.
        pub r#type: u32,
        /// Index.
        pub idx: u32,
        /// Lock count.
        pub lock_cnt: u64,
        /// Block count.
        pub block_cnt: u64,
        /// Lock time.
        pub lock_time: i64,
        /// Block time.
        pub block_time: i64,
    }
}

abi_struct! {
    /// `XEN_SYSCTL_lockprof_op`.
    pub struct XenSysctlLockprofOp {
        /// `XEN_SYSCTL_LOCKPROF_*`.
        pub cmd: u32,
        /// Capacity.
        pub max_elem: u32,
        /// Entries (output).
        pub nr_elem: u32,
        /// Implicit C padding.
        pub _pad12: u32,
        /// Profiling time.
        pub time: i64,
        /// Handle of [`XenSysctlLockprofData`] entries.
        pub data: GuestHandle,
    }
}

abi_struct! {
    /// CPU topology entry (`struct xen_sysctl_cputopo`).
    pub struct XenSysctlCputopo {
        /// Core id.
        pub core: u32,
        /// Socket id.
        pub socket: u32,
        /// Node id.
        pub node: u32,
    }
}

abi_struct! {
    /// `XEN_SYSCTL_cputopoinfo`.
    pub struct XenSysctlCputopoinfo {
        /// Number of CPUs (in/out).
        pub num_cpus: u32,
        /// Implicit C padding.
        pub _pad4: u32,
        /// Handle of [`XenSysctlCputopo`] entries.
        pub cputopo: GuestHandle,
    }
}

abi_struct! {
    /// Node memory info (`struct xen_sysctl_meminfo`).
    pub struct XenSysctlMeminfo {
        /// Total bytes.
        pub memsize: u64,
        /// Free bytes.
        pub memfree: u64,
    }
}

abi_struct! {
    /// `XEN_SYSCTL_numainfo`.
    pub struct XenSysctlNumainfo {
        /// Number of nodes (in/out).
        pub num_nodes: u32,
        /// Implicit C padding.
        pub _pad4: u32,
        /// Handle of [`XenSysctlMeminfo`] entries.
        pub meminfo: GuestHandle,
        /// Handle of the distance matrix.
        pub distance: GuestHandle,
    }
}

abi_enum! {
    /// `cpupool_op.op` (`XEN_SYSCTL_CPUPOOL_OP_*`).
    pub enum CpupoolOp: u32, raw u64 {
        /// Create.
        Create = 1 => "XEN_SYSCTL_CPUPOOL_OP_CREATE",
        /// Destroy.
        Destroy = 2 => "XEN_SYSCTL_CPUPOOL_OP_DESTROY",
        /// Info.
        Info = 3 => "XEN_SYSCTL_CPUPOOL_OP_INFO",
        /// Add a CPU.
        Addcpu = 4 => "XEN_SYSCTL_CPUPOOL_OP_ADDCPU",
        /// Remove a CPU.
        Rmcpu = 5 => "XEN_SYSCTL_CPUPOOL_OP_RMCPU",
        /// Move a domain.
        Movedomain = 6 => "XEN_SYSCTL_CPUPOOL_OP_MOVEDOMAIN",
        /// Free CPUs.
        Freeinfo = 7 => "XEN_SYSCTL_CPUPOOL_OP_FREEINFO",
    }
}

/// `cpupool_op` wildcard (any pool / any CPU).
pub const XEN_SYSCTL_CPUPOOL_PAR_ANY: u32 = 0xffff_ffff;

abi_struct! {
    /// `XEN_SYSCTL_cpupool_op`.
    pub struct XenSysctlCpupoolOp {
        /// A [`CpupoolOp`].
        pub op: u32,
        /// Pool id.
        pub cpupool_id: u32,
        /// Scheduler id.
        pub sched_id: u32,
        /// Domain.
        pub domid: u32,
        /// CPU.
        pub cpu: u32,
        /// Number of domains (output).
        pub n_dom: u32,
        /// CPU map (output).
        pub cpumap: XenctlBitmap,
    }
}

/// Maximum entries in an ARINC 653 schedule.
pub const ARINC653_MAX_DOMAINS_PER_SCHEDULE: usize = 64;

abi_struct! {
    /// One ARINC 653 schedule entry.
    pub struct XenSysctlArinc653Entry {
        /// Domain handle.
        pub dom_handle: XenDomainHandle,
        /// vCPU.
        pub vcpu_id: u32,
        /// Implicit C padding.
        pub _pad20: u32,
        /// Runtime (ns).
        pub runtime: u64,
    }
}

abi_struct! {
    /// ARINC 653 schedule (`struct xen_sysctl_arinc653_schedule`).
    pub struct XenSysctlArinc653Schedule {
        /// Major frame (ns).
        pub major_frame: u64,
        /// Entries used.
        pub num_sched_entries: u8,
        /// Implicit C padding.
        pub _pad9: [u8; 7],
        /// Entries.
        pub sched_entries: [XenSysctlArinc653Entry; ARINC653_MAX_DOMAINS_PER_SCHEDULE],
    }
}

/// Credit: maximum timeslice (ms).
pub const XEN_SYSCTL_CSCHED_TSLICE_MAX: u32 = 1000;
/// Credit: minimum timeslice (ms).
pub const XEN_SYSCTL_CSCHED_TSLICE_MIN: u32 = 1;
/// Credit: maximum migration delay (µs).
pub const XEN_SYSCTL_CSCHED_MGR_DLY_MAX_US: u32 = 100 * 1000;
/// Maximum rate limit (µs).
pub const XEN_SYSCTL_SCHED_RATELIMIT_MAX: u32 = 500_000;
/// Minimum rate limit (µs).
pub const XEN_SYSCTL_SCHED_RATELIMIT_MIN: u32 = 100;

abi_struct! {
    /// Credit globals (`struct xen_sysctl_credit_schedule`).
    pub struct XenSysctlCreditSchedule {
        /// Timeslice (ms).
        pub tslice_ms: u32,
        /// Rate limit (µs).
        pub ratelimit_us: u32,
        /// Migration delay (µs).
        pub vcpu_migr_delay_us: u32,
    }
}

abi_struct! {
    /// Credit2 globals (`struct xen_sysctl_credit2_schedule`).
    pub struct XenSysctlCredit2Schedule {
        /// Rate limit (µs).
        pub ratelimit_us: u32,
    }
}

abi_struct! {
    /// ARINC 653 globals (`sched_arinc653` member).
    pub struct XenSysctlSchedArinc653 {
        /// Handle of a [`XenSysctlArinc653Schedule`].
        pub schedule: GuestHandle,
    }
}

/// `scheduler_op.cmd`: set.
pub const XEN_SYSCTL_SCHEDOP_PUTINFO: u32 = 0;
/// `scheduler_op.cmd`: get.
pub const XEN_SYSCTL_SCHEDOP_GETINFO: u32 = 1;

abi_struct! {
    /// `XEN_SYSCTL_scheduler_op`. The union `u` is raw storage (16 bytes).
    pub struct XenSysctlSchedulerOp {
        /// Pool.
        pub cpupool_id: u32,
        /// A [`crate::domctl::SchedulerId`].
        pub sched_id: u32,
        /// `XEN_SYSCTL_SCHEDOP_*`.
        pub cmd: u32,
        /// Implicit C padding.
        pub _pad12: u32,
        /// Union `sched_arinc653` / `sched_credit` / `sched_credit2`.
        pub u: [u64; 2],
    }
}

impl XenSysctlSchedulerOp {
    /// `u.sched_credit`.
    pub fn sched_credit(&self) -> XenSysctlCreditSchedule {
        union_read(self.u.as_bytes())
    }
    /// Stores `u.sched_credit`.
    pub fn set_sched_credit(&mut self, v: &XenSysctlCreditSchedule) {
        union_write(self.u.as_mut_bytes(), v)
    }
    /// `u.sched_credit2`.
    pub fn sched_credit2(&self) -> XenSysctlCredit2Schedule {
        union_read(self.u.as_bytes())
    }
    /// `u.sched_arinc653`.
    pub fn sched_arinc653(&self) -> XenSysctlSchedArinc653 {
        union_read(self.u.as_bytes())
    }
}

/// `coverage_op.cmd`: get size.
pub const XEN_SYSCTL_COVERAGE_GET_SIZE: u32 = 0;
/// `coverage_op.cmd`: read.
pub const XEN_SYSCTL_COVERAGE_READ: u32 = 1;
/// `coverage_op.cmd`: reset.
pub const XEN_SYSCTL_COVERAGE_RESET: u32 = 2;

abi_struct! {
    /// `XEN_SYSCTL_coverage_op`.
    pub struct XenSysctlCoverageOp {
        /// `XEN_SYSCTL_COVERAGE_*`.
        pub cmd: u32,
        /// Size.
        pub size: u32,
        /// Handle of the buffer.
        pub buffer: GuestHandle,
    }
}

/// PSR CMT: total RMIDs.
pub const XEN_SYSCTL_PSR_CMT_GET_TOTAL_RMID: u32 = 0;
/// PSR CMT: L3 upscaling factor.
pub const XEN_SYSCTL_PSR_CMT_GET_L3_UPSCALING_FACTOR: u32 = 1;
/// PSR CMT: L3 cache size.
pub const XEN_SYSCTL_PSR_CMT_GET_L3_CACHE_SIZE: u32 = 2;
/// PSR CMT: enabled?
pub const XEN_SYSCTL_PSR_CMT_ENABLED: u32 = 3;
/// PSR CMT: L3 event mask.
pub const XEN_SYSCTL_PSR_CMT_GET_L3_EVENT_MASK: u32 = 4;

abi_struct! {
    /// `psr_cmt_op.u.l3_cache` view.
    pub struct XenSysctlPsrCmtL3Cache {
        /// CPU.
        pub cpu: u32,
        /// Reserved.
        pub rsvd: u32,
    }
}

abi_struct! {
    /// `XEN_SYSCTL_psr_cmt_op`. The union `u` (`data` / `l3_cache`) is a raw word.
    pub struct XenSysctlPsrCmtOp {
        /// `XEN_SYSCTL_PSR_CMT_*`.
        pub cmd: u32,
        /// Flags.
        pub flags: u32,
        /// Union: `data` (output) or `l3_cache`.
        pub u: u64,
    }
}

impl XenSysctlPsrCmtOp {
    /// `u.l3_cache` view.
    pub fn l3_cache(&self) -> XenSysctlPsrCmtL3Cache {
        zerocopy::transmute!(self.u)
    }
}

abi_struct! {
    /// `XEN_SYSCTL_pcitopoinfo`.
    pub struct XenSysctlPcitopoinfo {
        /// Number of devices (in/out).
        pub num_devs: u32,
        /// Implicit C padding.
        pub _pad4: u32,
        /// Handle of `physdev_pci_device` entries.
        pub devs: GuestHandle,
        /// Handle of node ids (output).
        pub nodes: GuestHandle,
    }
}

/// `psr_alloc.cmd`: L3 info.
pub const XEN_SYSCTL_PSR_GET_L3_INFO: u32 = 0;
/// `psr_alloc.cmd`: L2 info.
pub const XEN_SYSCTL_PSR_GET_L2_INFO: u32 = 1;
/// `psr_alloc.cmd`: MBA info.
pub const XEN_SYSCTL_PSR_GET_MBA_INFO: u32 = 2;
/// CAT info flag: L3 CDP supported.
pub const XEN_SYSCTL_PSR_CAT_L3_CDP: u32 = 1 << 0;
/// MBA info flag: linear throttling.
pub const XEN_SYSCTL_PSR_MBA_LINEAR: u32 = 1 << 0;

abi_struct! {
    /// `psr_alloc.u.cat_info` (stored form of the union).
    pub struct XenSysctlPsrCatInfo {
        /// CBM length.
        pub cbm_len: u32,
        /// Maximum COS.
        pub cos_max: u32,
        /// `XEN_SYSCTL_PSR_CAT_*`.
        pub flags: u32,
    }
}

abi_struct! {
    /// `psr_alloc.u.mba_info` view.
    pub struct XenSysctlPsrMbaInfo {
        /// Maximum throttling.
        pub thrtl_max: u32,
        /// Maximum COS.
        pub cos_max: u32,
        /// `XEN_SYSCTL_PSR_MBA_*`.
        pub flags: u32,
    }
}

abi_struct! {
    /// `XEN_SYSCTL_psr_alloc`.
    pub struct XenSysctlPsrAlloc {
        /// `XEN_SYSCTL_PSR_get_*`.
        pub cmd: u32,
        /// Socket.
        pub target: u32,
        /// Union `cat_info` / `mba_info` (output).
        pub u: XenSysctlPsrCatInfo,
    }
}

impl XenSysctlPsrAlloc {
    /// `u.mba_info` view.
    pub fn mba_info(&self) -> XenSysctlPsrMbaInfo {
        zerocopy::transmute!(self.u)
    }
}

/// Levelling cap: faulting.
pub const XEN_SYSCTL_CPU_LEVELCAP_FAULTING: u32 = 1 << 0;
/// Levelling cap: leaf 1 ECX.
pub const XEN_SYSCTL_CPU_LEVELCAP_ECX: u32 = 1 << 1;
/// Levelling cap: leaf 1 EDX.
pub const XEN_SYSCTL_CPU_LEVELCAP_EDX: u32 = 1 << 2;
/// Levelling cap: extended ECX.
pub const XEN_SYSCTL_CPU_LEVELCAP_EXTD_ECX: u32 = 1 << 3;
/// Levelling cap: extended EDX.
pub const XEN_SYSCTL_CPU_LEVELCAP_EXTD_EDX: u32 = 1 << 4;
/// Levelling cap: xsave EAX.
pub const XEN_SYSCTL_CPU_LEVELCAP_XSAVE_EAX: u32 = 1 << 5;
/// Levelling cap: thermal ECX.
pub const XEN_SYSCTL_CPU_LEVELCAP_THERMAL_ECX: u32 = 1 << 6;
/// Levelling cap: leaf 7 subleaf 0 EAX.
pub const XEN_SYSCTL_CPU_LEVELCAP_L7S0_EAX: u32 = 1 << 7;
/// Levelling cap: leaf 7 subleaf 0 EBX.
pub const XEN_SYSCTL_CPU_LEVELCAP_L7S0_EBX: u32 = 1 << 8;

abi_struct! {
    /// `XEN_SYSCTL_get_cpu_levelling_caps`.
    pub struct XenSysctlCpuLevellingCaps {
        /// `XEN_SYSCTL_CPU_LEVELCAP_*` (output).
        pub caps: u32,
    }
}

abi_enum! {
    /// `cpu_featureset.index` (`XEN_SYSCTL_cpu_featureset_*`).
    pub enum CpuFeaturesetIndex: u32, raw u64 {
        /// Raw hardware.
        Raw = 0 => "XEN_SYSCTL_cpu_featureset_raw",
        /// Host.
        Host = 1 => "XEN_SYSCTL_cpu_featureset_host",
        /// PV default.
        Pv = 2 => "XEN_SYSCTL_cpu_featureset_pv",
        /// HVM default.
        Hvm = 3 => "XEN_SYSCTL_cpu_featureset_hvm",
        /// PV maximum.
        PvMax = 4 => "XEN_SYSCTL_cpu_featureset_pv_max",
        /// HVM maximum.
        HvmMax = 5 => "XEN_SYSCTL_cpu_featureset_hvm_max",
    }
}

abi_struct! {
    /// `XEN_SYSCTL_get_cpu_featureset`.
    pub struct XenSysctlCpuFeatureset {
        /// A [`CpuFeaturesetIndex`].
        pub index: u32,
        /// Words (in/out).
        pub nr_features: u32,
        /// Handle of `u32` feature words.
        pub features: GuestHandle,
    }
}

/// Livepatch op: upload.
pub const XEN_SYSCTL_LIVEPATCH_UPLOAD: u32 = 0;
/// Livepatch op: get status.
pub const XEN_SYSCTL_LIVEPATCH_GET: u32 = 1;
/// Livepatch op: list.
pub const XEN_SYSCTL_LIVEPATCH_LIST: u32 = 2;
/// Livepatch op: action.
pub const XEN_SYSCTL_LIVEPATCH_ACTION: u32 = 3;

abi_struct! {
    /// Livepatch name (`struct xen_livepatch_name`).
    pub struct XenLivepatchName {
        /// Handle of the name.
        pub name: GuestHandle,
        /// Length including NUL.
        pub size: u16,
        /// Padding.
        pub pad: [u16; 3],
    }
}

abi_struct! {
    /// Livepatch upload (`struct xen_sysctl_livepatch_upload`).
    pub struct XenSysctlLivepatchUpload {
        /// Name.
        pub name: XenLivepatchName,
        /// Payload size.
        pub size: u64,
        /// Handle of the payload.
        pub payload: GuestHandle,
    }
}

abi_struct! {
    /// Livepatch status (`struct xen_livepatch_status`).
    pub struct XenLivepatchStatus {
        /// State.
        pub state: u32,
        /// Return code.
        pub rc: i32,
    }
}

abi_struct! {
    /// Livepatch get (`struct xen_sysctl_livepatch_get`).
    pub struct XenSysctlLivepatchGet {
        /// Name.
        pub name: XenLivepatchName,
        /// Status (output).
        pub status: XenLivepatchStatus,
    }
}

abi_struct! {
    /// Livepatch list (`struct xen_sysctl_livepatch_list`).
    pub struct XenSysctlLivepatchList {
        /// Version (output).
        pub version: u32,
        /// Start index.
        pub idx: u32,
        /// Entries (in/out).
        pub nr: u32,
        /// Padding.
        pub pad: u32,
        /// Total name bytes.
        pub name_total_size: u32,
        /// Total metadata bytes.
        pub metadata_total_size: u32,
        /// Handle of status entries.
        pub status: GuestHandle,
        /// Handle of names.
        pub name: GuestHandle,
        /// Handle of name lengths.
        pub len: GuestHandle,
        /// Handle of metadata.
        pub metadata: GuestHandle,
        /// Handle of metadata lengths.
        pub metadata_len: GuestHandle,
    }
}

abi_struct! {
    /// Livepatch action (`struct xen_sysctl_livepatch_action`).
    pub struct XenSysctlLivepatchAction {
        /// Name.
        pub name: XenLivepatchName,
        /// Action.
        pub cmd: u32,
        /// Timeout.
        pub timeout: u32,
        /// Flags.
        pub flags: u32,
        /// Padding.
        pub pad: u32,
    }
}

abi_struct! {
    /// `XEN_SYSCTL_livepatch_op`. The union `u` is stored as the largest member (`list`).
    pub struct XenSysctlLivepatchOp {
        /// `XEN_SYSCTL_LIVEPATCH_*`.
        pub cmd: u32,
        /// Padding.
        pub pad: u32,
        /// Union `upload` / `list` / `get` / `action`.
        pub u: XenSysctlLivepatchList,
    }
}

impl XenSysctlLivepatchOp {
    /// `u.upload` view.
    pub fn upload(&self) -> XenSysctlLivepatchUpload {
        union_read(self.u.as_bytes())
    }
    /// `u.get` view.
    pub fn get(&self) -> XenSysctlLivepatchGet {
        union_read(self.u.as_bytes())
    }
    /// `u.action` view.
    pub fn action(&self) -> XenSysctlLivepatchAction {
        union_read(self.u.as_bytes())
    }
}

abi_enum! {
    /// `cpu_policy.index` (`XEN_SYSCTL_cpu_policy_*`).
    pub enum CpuPolicyIndex: u32, raw u64 {
        /// Raw hardware.
        Raw = 0 => "XEN_SYSCTL_cpu_policy_raw",
        /// Host.
        Host = 1 => "XEN_SYSCTL_cpu_policy_host",
        /// PV maximum.
        PvMax = 2 => "XEN_SYSCTL_cpu_policy_pv_max",
        /// HVM maximum.
        HvmMax = 3 => "XEN_SYSCTL_cpu_policy_hvm_max",
        /// PV default.
        PvDefault = 4 => "XEN_SYSCTL_cpu_policy_pv_default",
        /// HVM default.
        HvmDefault = 5 => "XEN_SYSCTL_cpu_policy_hvm_default",
    }
}

abi_struct! {
    /// `XEN_SYSCTL_get_cpu_policy`.
    pub struct XenSysctlCpuPolicy {
        /// A [`CpuPolicyIndex`].
        pub index: u32,
        /// Leaves (in/out).
        pub nr_leaves: u32,
        /// MSRs (in/out).
        pub nr_msrs: u32,
        /// Reserved.
        pub _rsvd: u32,
        /// Handle of [`crate::arch_x86::XenCpuidLeaf`] entries.
        pub leaves: GuestHandle,
        /// Handle of [`crate::arch_x86::XenMsrEntry`] entries.
        pub msrs: GuestHandle,
    }
}

/// Size of the `xen_sysctl.u` union.
pub const XEN_SYSCTL_PAYLOAD_SIZE: usize = 128;

abi_struct! {
    /// The sysctl envelope (`struct xen_sysctl`), written by the toolstack and
    /// copied back by Xen. `u` holds the per-command struct.
    pub struct XenSysctl {
        /// A [`SysctlCmd`].
        pub cmd: u32,
        /// Must be [`XEN_SYSCTL_INTERFACE_VERSION`].
        pub interface_version: u32,
        /// The per-command union (`u.pad[128]`).
        pub u: [u64; XEN_SYSCTL_PAYLOAD_SIZE / 8],
    }
}

impl XenSysctl {
    /// A zeroed envelope for `cmd` with the current interface version.
    pub fn new(cmd: SysctlCmd) -> Self {
        Self {
            cmd: cmd as u32,
            interface_version: XEN_SYSCTL_INTERFACE_VERSION,
            u: [0; XEN_SYSCTL_PAYLOAD_SIZE / 8],
        }
    }
    /// Reads the union as `T`.
    pub fn payload<T: FromBytes>(&self) -> T {
        union_read(self.u.as_bytes())
    }
    /// Stores `v` in the union (rest zeroed).
    pub fn set_payload<T: IntoBytes + Immutable>(&mut self, v: &T) {
        union_write(self.u.as_mut_bytes(), v)
    }
}

zeroed_default!(
    XenSysctlReadconsole,
    XenSysctlTbufOp,
    XenSysctlPhysinfo,
    XenSysctlSchedId,
    XenSysctlPerfcDesc,
    XenSysctlPerfcOp,
    XenSysctlGetdomaininfolist,
    XenSysctlDebugKeys,
    XenSysctlCpuinfo,
    XenSysctlGetcpuinfo,
    XenSysctlAvailheap,
    PmPxVal,
    PmPxStat,
    PmCxStat,
    XenSysctlGetPmstat,
    XenSysctlCpuHotplug,
    XenUserspace,
    XenOndemand,
    XenGetCpufreqPara,
    XenSetCpufreqGov,
    XenSetCpufreqPara,
    XenSysctlPmOp,
    XenSysctlPageOfflineOp,
    XenSysctlLockprofData,
    XenSysctlLockprofOp,
    XenSysctlCputopo,
    XenSysctlCputopoinfo,
    XenSysctlMeminfo,
    XenSysctlNumainfo,
    XenSysctlCpupoolOp,
    XenSysctlArinc653Entry,
    XenSysctlArinc653Schedule,
    XenSysctlCreditSchedule,
    XenSysctlCredit2Schedule,
    XenSysctlSchedArinc653,
    XenSysctlSchedulerOp,
    XenSysctlCoverageOp,
    XenSysctlPsrCmtL3Cache,
    XenSysctlPsrCmtOp,
    XenSysctlPcitopoinfo,
    XenSysctlPsrCatInfo,
    XenSysctlPsrMbaInfo,
    XenSysctlPsrAlloc,
    XenSysctlCpuLevellingCaps,
    XenSysctlCpuFeatureset,
    XenLivepatchName,
    XenSysctlLivepatchUpload,
    XenLivepatchStatus,
    XenSysctlLivepatchGet,
    XenSysctlLivepatchList,
    XenSysctlLivepatchAction,
    XenSysctlLivepatchOp,
    XenSysctlCpuPolicy,
    XenSysctl,
);
