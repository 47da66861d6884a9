//! `__HYPERVISOR_domctl` (`public/domctl.h`): the toolstack's per-domain
//! control interface (control domain only). Owns the command numbers, their
//! argument structs, the `xen_domctl` envelope and related flag constants.
//!
//! Every call passes one [`XenDomctl`]: `cmd`, `interface_version` (must equal
//! [`XEN_DOMCTL_INTERFACE_VERSION`]), target `domain`, and a 128-byte union
//! holding the per-command struct (use [`XenDomctl::payload`] /
//! [`XenDomctl::set_payload`]). Xen copies the whole envelope back on success.

use crate::arch_x86::XenArchDomainconfig;
use crate::hvm::HvmVmceVcpu;
use crate::xen::XenDomainHandle;
use crate::{union_read, union_write, DomId, GuestHandle, XenPfn};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// Version of the domctl interface this crate implements (Xen 4.17).
pub const XEN_DOMCTL_INTERFACE_VERSION: u32 = 0x15;

abi_enum! {
    /// Domctl commands (`XEN_DOMCTL_*`), in [`XenDomctl::cmd`].
    pub enum DomctlCmd: u32, raw u64 {
        /// Create a domain; [`XenDomctlCreatedomain`] (Xen returns the domid in `domain`).
        Createdomain = 1 => "XEN_DOMCTL_createdomain",
        /// Destroy a domain.
        Destroydomain = 2 => "XEN_DOMCTL_destroydomain",
        /// Pause a domain.
        Pausedomain = 3 => "XEN_DOMCTL_pausedomain",
        /// Unpause a domain.
        Unpausedomain = 4 => "XEN_DOMCTL_unpausedomain",
        /// Get domain info; [`XenDomctlGetdomaininfo`].
        Getdomaininfo = 5 => "XEN_DOMCTL_getdomaininfo",
        /// Set vCPU affinity; [`XenDomctlVcpuaffinity`].
        Setvcpuaffinity = 9 => "XEN_DOMCTL_setvcpuaffinity",
        /// Shadow paging control; [`XenDomctlShadowOp`].
        ShadowOp = 10 => "XEN_DOMCTL_shadow_op",
        /// Set the memory limit; [`XenDomctlMaxMem`].
        MaxMem = 11 => "XEN_DOMCTL_max_mem",
        /// Set a vCPU's context; [`XenDomctlVcpucontext`].
        Setvcpucontext = 12 => "XEN_DOMCTL_setvcpucontext",
        /// Get a vCPU's context; [`XenDomctlVcpucontext`].
        Getvcpucontext = 13 => "XEN_DOMCTL_getvcpucontext",
        /// Get vCPU run info; [`XenDomctlGetvcpuinfo`].
        Getvcpuinfo = 14 => "XEN_DOMCTL_getvcpuinfo",
        /// Set the number of vCPUs; [`XenDomctlMaxVcpus`].
        MaxVcpus = 15 => "XEN_DOMCTL_max_vcpus",
        /// Scheduler parameters; [`XenDomctlSchedulerOp`].
        SchedulerOp = 16 => "XEN_DOMCTL_scheduler_op",
        /// Set the domain handle (UUID); [`XenDomctlSetdomainhandle`].
        Setdomainhandle = 17 => "XEN_DOMCTL_setdomainhandle",
        /// Enable/disable debugging; [`XenDomctlSetdebugging`].
        Setdebugging = 18 => "XEN_DOMCTL_setdebugging",
        /// Grant/revoke access to a PIRQ; [`XenDomctlIrqPermission`].
        IrqPermission = 19 => "XEN_DOMCTL_irq_permission",
        /// Grant/revoke access to MMIO; [`XenDomctlIomemPermission`].
        IomemPermission = 20 => "XEN_DOMCTL_iomem_permission",
        /// Grant/revoke access to I/O ports; [`XenDomctlIoportPermission`].
        IoportPermission = 21 => "XEN_DOMCTL_ioport_permission",
        /// Fill a guest frame as hypercall page; [`XenDomctlHypercallInit`].
        HypercallInit = 22 => "XEN_DOMCTL_hypercall_init",
        /// Set the wallclock offset; [`XenDomctlSettimeoffset`].
        Settimeoffset = 24 => "XEN_DOMCTL_settimeoffset",
        /// Get vCPU affinity; [`XenDomctlVcpuaffinity`].
        Getvcpuaffinity = 25 => "XEN_DOMCTL_getvcpuaffinity",
        /// Obsolete.
        RealModeArea = 26 => "XEN_DOMCTL_real_mode_area",
        /// Resume a suspended domain.
        Resumedomain = 27 => "XEN_DOMCTL_resumedomain",
        /// Send a virtual trigger (NMI, reset, ...); [`XenDomctlSendtrigger`].
        Sendtrigger = 28 => "XEN_DOMCTL_sendtrigger",
        /// Subscribe to domain state changes; [`XenDomctlSubscribe`].
        Subscribe = 29 => "XEN_DOMCTL_subscribe",
        /// Get HVM save context; [`XenDomctlHvmcontext`].
        Gethvmcontext = 33 => "XEN_DOMCTL_gethvmcontext",
        /// Set HVM save context; [`XenDomctlHvmcontext`].
        Sethvmcontext = 34 => "XEN_DOMCTL_sethvmcontext",
        /// Set PV address size (32/64); [`XenDomctlAddressSize`].
        SetAddressSize = 35 => "XEN_DOMCTL_set_address_size",
        /// Get PV address size; [`XenDomctlAddressSize`].
        GetAddressSize = 36 => "XEN_DOMCTL_get_address_size",
        /// Assign a device; [`XenDomctlAssignDevice`].
        AssignDevice = 37 => "XEN_DOMCTL_assign_device",
        /// Bind a passthrough IRQ; [`XenDomctlBindPtIrq`].
        BindPtIrq = 38 => "XEN_DOMCTL_bind_pt_irq",
        /// Map MMIO into the physmap; [`XenDomctlMemoryMapping`].
        MemoryMapping = 39 => "XEN_DOMCTL_memory_mapping",
        /// Map I/O ports; [`XenDomctlIoportMapping`].
        IoportMapping = 40 => "XEN_DOMCTL_ioport_mapping",
        /// Set extended vCPU context; [`XenDomctlExtVcpucontext`].
        SetExtVcpucontext = 42 => "XEN_DOMCTL_set_ext_vcpucontext",
        /// Get extended vCPU context; [`XenDomctlExtVcpucontext`].
        GetExtVcpucontext = 43 => "XEN_DOMCTL_get_ext_vcpucontext",
        /// Obsolete.
        SetOptFeature = 44 => "XEN_DOMCTL_set_opt_feature",
        /// Test whether a device can be assigned; [`XenDomctlAssignDevice`].
        TestAssignDevice = 45 => "XEN_DOMCTL_test_assign_device",
        /// Set the target domain of a device model; [`XenDomctlSetTarget`].
        SetTarget = 46 => "XEN_DOMCTL_set_target",
        /// De-assign a device; [`XenDomctlAssignDevice`].
        DeassignDevice = 47 => "XEN_DOMCTL_deassign_device",
        /// Unbind a passthrough IRQ; [`XenDomctlBindPtIrq`].
        UnbindPtIrq = 48 => "XEN_DOMCTL_unbind_pt_irq",
        /// Get a device's IOMMU group; [`XenDomctlGetDeviceGroup`].
        GetDeviceGroup = 50 => "XEN_DOMCTL_get_device_group",
        /// Debug (single-step) control; [`XenDomctlDebugOp`].
        DebugOp = 54 => "XEN_DOMCTL_debug_op",
        /// Get one HVM save record; [`XenDomctlHvmcontextPartial`].
        GethvmcontextPartial = 55 => "XEN_DOMCTL_gethvmcontext_partial",
        /// vm_event ring control; [`XenDomctlVmEventOp`].
        VmEventOp = 56 => "XEN_DOMCTL_vm_event_op",
        /// Memory sharing control; [`XenDomctlMemSharingOp`].
        MemSharingOp = 57 => "XEN_DOMCTL_mem_sharing_op",
        /// Get TSC info; [`XenDomctlTscInfo`].
        Gettscinfo = 59 => "XEN_DOMCTL_gettscinfo",
        /// Set TSC info; [`XenDomctlTscInfo`].
        Settscinfo = 60 => "XEN_DOMCTL_settscinfo",
        /// Page frame types; [`XenDomctlGetpageframeinfo3`].
        Getpageframeinfo3 = 61 => "XEN_DOMCTL_getpageframeinfo3",
        /// Set extended (xsave) state; [`XenDomctlVcpuextstate`].
        Setvcpuextstate = 62 => "XEN_DOMCTL_setvcpuextstate",
        /// Get extended (xsave) state; [`XenDomctlVcpuextstate`].
        Getvcpuextstate = 63 => "XEN_DOMCTL_getvcpuextstate",
        /// Require a vm_event listener; [`XenDomctlSetAccessRequired`].
        SetAccessRequired = 64 => "XEN_DOMCTL_set_access_required",
        /// Audit the p2m; [`XenDomctlAuditP2m`].
        AuditP2m = 65 => "XEN_DOMCTL_audit_p2m",
        /// Route a global VIRQ to a domain; [`XenDomctlSetVirqHandler`].
        SetVirqHandler = 66 => "XEN_DOMCTL_set_virq_handler",
        /// Mark a page broken; [`XenDomctlSetBrokenPageP2m`].
        SetBrokenPageP2m = 67 => "XEN_DOMCTL_set_broken_page_p2m",
        /// Set NUMA node affinity; [`XenDomctlNodeaffinity`].
        Setnodeaffinity = 68 => "XEN_DOMCTL_setnodeaffinity",
        /// Get NUMA node affinity; [`XenDomctlNodeaffinity`].
        Getnodeaffinity = 69 => "XEN_DOMCTL_getnodeaffinity",
        /// Cache flush (ARM); [`XenDomctlCacheflush`].
        Cacheflush = 71 => "XEN_DOMCTL_cacheflush",
        /// Get vCPU MSRs; [`XenDomctlVcpuMsrs`].
        GetVcpuMsrs = 72 => "XEN_DOMCTL_get_vcpu_msrs",
        /// Set vCPU MSRs; [`XenDomctlVcpuMsrs`].
        SetVcpuMsrs = 73 => "XEN_DOMCTL_set_vcpu_msrs",
        /// Set vNUMA topology; [`XenDomctlVnuma`].
        Setvnumainfo = 74 => "XEN_DOMCTL_setvnumainfo",
        /// Cache monitoring; [`XenDomctlPsrCmtOp`].
        PsrCmtOp = 75 => "XEN_DOMCTL_psr_cmt_op",
        /// Monitor (vm_event) configuration; [`XenDomctlMonitorOp`].
        MonitorOp = 77 => "XEN_DOMCTL_monitor_op",
        /// Cache/bandwidth allocation; [`XenDomctlPsrAlloc`].
        PsrAlloc = 78 => "XEN_DOMCTL_psr_alloc",
        /// Soft reset (kexec).
        SoftReset = 79 => "XEN_DOMCTL_soft_reset",
        /// Virtual UART (ARM); [`XenDomctlVuartOp`].
        VuartOp = 81 => "XEN_DOMCTL_vuart_op",
        /// Get CPUID/MSR policy; [`XenDomctlCpuPolicy`].
        GetCpuPolicy = 82 => "XEN_DOMCTL_get_cpu_policy",
        /// Set CPUID/MSR policy; [`XenDomctlCpuPolicy`].
        SetCpuPolicy = 83 => "XEN_DOMCTL_set_cpu_policy",
        /// Processor trace control; [`XenDomctlVmtraceOp`].
        VmtraceOp = 84 => "XEN_DOMCTL_vmtrace_op",
        /// Get the paging pool size; [`XenDomctlPagingMempool`].
        GetPagingMempoolSize = 85 => "XEN_DOMCTL_get_paging_mempool_size",
        /// Set the paging pool size; [`XenDomctlPagingMempool`].
        SetPagingMempoolSize = 86 => "XEN_DOMCTL_set_paging_mempool_size",
        /// gdbsx: guest memory I/O; [`XenDomctlGdbsxMemio`].
        GdbsxGuestmemio = 1000 => "XEN_DOMCTL_gdbsx_guestmemio",
        /// gdbsx: pause a vCPU; [`XenDomctlGdbsxPauseunpVcpu`].
        GdbsxPausevcpu = 1001 => "XEN_DOMCTL_gdbsx_pausevcpu",
        /// gdbsx: unpause a vCPU; [`XenDomctlGdbsxPauseunpVcpu`].
        GdbsxUnpausevcpu = 1002 => "XEN_DOMCTL_gdbsx_unpausevcpu",
        /// gdbsx: domain status; [`XenDomctlGdbsxDomstatus`].
        GdbsxDomstatus = 1003 => "XEN_DOMCTL_gdbsx_domstatus",
    }
}

// ---------------------------------------------------------------------------
// xenctl_bitmap
// ---------------------------------------------------------------------------

abi_struct! {
    /// A bitmap in caller memory (`struct xenctl_bitmap`, from `xen.h`): CPU or
    /// node masks for affinity, cpupools and trace buffers.
    pub struct XenctlBitmap {
        /// Handle of the `u8` bitmap buffer.
        pub bitmap: GuestHandle,
        /// Number of valid bits.
        pub nr_bits: u32,
        /// Implicit C padding; zero.
        pub _pad12: u32,
    }
}

// ---------------------------------------------------------------------------
// createdomain / getdomaininfo
// ---------------------------------------------------------------------------

/// `createdomain.flags`: HVM (or PVH) guest.
pub const XEN_DOMCTL_CDF_HVM: u32 = 1 << 0;
/// `createdomain.flags`: use hardware-assisted paging.
pub const XEN_DOMCTL_CDF_HAP: u32 = 1 << 1;
/// `createdomain.flags`: S3 integrity (tboot).
pub const XEN_DOMCTL_CDF_S3_INTEGRITY: u32 = 1 << 2;
/// `createdomain.flags`: disable out-of-sync shadow page tables.
pub const XEN_DOMCTL_CDF_OOS_OFF: u32 = 1 << 3;
/// `createdomain.flags`: this is the xenstore domain.
pub const XEN_DOMCTL_CDF_XS_DOMAIN: u32 = 1 << 4;
/// `createdomain.flags`: enable IOMMU mappings.
pub const XEN_DOMCTL_CDF_IOMMU: u32 = 1 << 5;
/// `createdomain.flags`: enable nested virtualisation.
pub const XEN_DOMCTL_CDF_NESTED_VIRT: u32 = 1 << 6;
/// `createdomain.flags`: enable vPMU.
pub const XEN_DOMCTL_CDF_VPMU: u32 = 1 << 7;
/// Highest defined `createdomain.flags` bit.
pub const XEN_DOMCTL_CDF_MAX: u32 = XEN_DOMCTL_CDF_VPMU;
/// `createdomain.iommu_opts`: do not share CPU and IOMMU page tables.
pub const XEN_DOMCTL_IOMMU_NO_SHAREPT: u32 = 1 << 0;
/// Highest defined `iommu_opts` bit.
pub const XEN_DOMCTL_IOMMU_MAX: u32 = XEN_DOMCTL_IOMMU_NO_SHAREPT;
/// `createdomain.grant_opts`: mask of the maximum grant table version.
pub const XEN_DOMCTL_GRANT_VERSION_MASK: u32 = 0xf;

abi_struct! {
    /// `XEN_DOMCTL_createdomain` (`struct xen_domctl_createdomain`), written by the toolstack.
    pub struct XenDomctlCreatedomain {
        /// XSM security label.
        pub ssidref: u32,
        /// Domain handle (UUID).
        pub handle: XenDomainHandle,
        /// `XEN_DOMCTL_CDF_*`.
        pub flags: u32,
        /// `XEN_DOMCTL_IOMMU_*`.
        pub iommu_opts: u32,
        /// Maximum number of vCPUs.
        pub max_vcpus: u32,
        /// Highest event channel port.
        pub max_evtchn_port: u32,
        /// Maximum grant table frames (-1: default).
        pub max_grant_frames: i32,
        /// Maximum maptrack frames (-1: default).
        pub max_maptrack_frames: i32,
        /// Grant options (`XEN_DOMCTL_GRANT_version_mask`).
        pub grant_opts: u32,
        /// Per-vCPU processor trace buffer size.
        pub vmtrace_size: u32,
        /// CPU pool.
        pub cpupool_id: u32,
        /// Architecture config.
        pub arch: XenArchDomainconfig,
    }
}

/// `getdomaininfo.flags`: domain is dying.
pub const XEN_DOMINF_DYING: u32 = 1 << 0;
/// `getdomaininfo.flags`: HVM guest.
pub const XEN_DOMINF_HVM_GUEST: u32 = 1 << 1;
/// `getdomaininfo.flags`: domain has shut down (reason in the shutdown field).
pub const XEN_DOMINF_SHUTDOWN: u32 = 1 << 2;
/// `getdomaininfo.flags`: paused by the toolstack.
pub const XEN_DOMINF_PAUSED: u32 = 1 << 3;
/// `getdomaininfo.flags`: all vCPUs blocked.
pub const XEN_DOMINF_BLOCKED: u32 = 1 << 4;
/// `getdomaininfo.flags`: some vCPU running.
pub const XEN_DOMINF_RUNNING: u32 = 1 << 5;
/// `getdomaininfo.flags`: being debugged.
pub const XEN_DOMINF_DEBUGGED: u32 = 1 << 6;
/// `getdomaininfo.flags`: the xenstore domain.
pub const XEN_DOMINF_XS_DOMAIN: u32 = 1 << 7;
/// `getdomaininfo.flags`: uses HAP.
pub const XEN_DOMINF_HAP: u32 = 1 << 8;
/// Position of the shutdown reason in `getdomaininfo.flags`.
pub const XEN_DOMINF_SHUTDOWNSHIFT: u32 = 16;
/// Mask of the shutdown reason (after shifting).
pub const XEN_DOMINF_SHUTDOWNMASK: u32 = 255;

abi_struct! {
    /// `XEN_DOMCTL_getdomaininfo` result (`struct xen_domctl_getdomaininfo`),
    /// written by Xen; also the element of `XEN_SYSCTL_getdomaininfolist`.
    pub struct XenDomctlGetdomaininfo {
        /// Domain id.
        pub domain: DomId,
        /// Padding.
        pub pad1: u16,
        /// `XEN_DOMINF_*`.
        pub flags: u32,
        /// Pages allocated.
        pub tot_pages: u64,
        /// Page limit.
        pub max_pages: u64,
        /// Outstanding claimed pages.
        pub outstanding_pages: u64,
        /// Shared pages.
        pub shr_pages: u64,
        /// Paged-out pages.
        pub paged_pages: u64,
        /// MFN of the shared info page.
        pub shared_info_frame: u64,
        /// CPU time used (ns).
        pub cpu_time: u64,
        /// Online vCPUs.
        pub nr_online_vcpus: u32,
        /// Highest vCPU id.
        pub max_vcpu_id: u32,
        /// XSM label.
        pub ssidref: u32,
        /// Domain handle (UUID).
        pub handle: XenDomainHandle,
        /// CPU pool.
        pub cpupool: u32,
        /// Guest physical address width.
        pub gpaddr_bits: u8,
        /// Padding.
        pub pad2: [u8; 7],
        /// Architecture config.
        pub arch_config: XenArchDomainconfig,
    }
}

// ---------------------------------------------------------------------------
// Page frame info / shadow
// ---------------------------------------------------------------------------

/// Shift of the page-type field in getpageframeinfo3 results.
pub const XEN_DOMCTL_PFINFO_LTAB_SHIFT: u32 = 28;
/// Not a page table.
pub const XEN_DOMCTL_PFINFO_NOTAB: u32 = 0x0 << XEN_DOMCTL_PFINFO_LTAB_SHIFT;
/// L1 page table.
pub const XEN_DOMCTL_PFINFO_L1TAB: u32 = 0x1 << XEN_DOMCTL_PFINFO_LTAB_SHIFT;
/// L2 page table.
pub const XEN_DOMCTL_PFINFO_L2TAB: u32 = 0x2 << XEN_DOMCTL_PFINFO_LTAB_SHIFT;
/// L3 page table.
pub const XEN_DOMCTL_PFINFO_L3TAB: u32 = 0x3 << XEN_DOMCTL_PFINFO_LTAB_SHIFT;
/// L4 page table.
pub const XEN_DOMCTL_PFINFO_L4TAB: u32 = 0x4 << XEN_DOMCTL_PFINFO_LTAB_SHIFT;
/// Mask of the table level.
pub const XEN_DOMCTL_PFINFO_LTABTYPE_MASK: u32 = 0x7 << XEN_DOMCTL_PFINFO_LTAB_SHIFT;
/// Pinned page table.
pub const XEN_DOMCTL_PFINFO_LPINTAB: u32 = 0x8 << XEN_DOMCTL_PFINFO_LTAB_SHIFT;
/// Invalid page.
pub const XEN_DOMCTL_PFINFO_XTAB: u32 = 0xf << XEN_DOMCTL_PFINFO_LTAB_SHIFT;
/// Allocate-only page.
pub const XEN_DOMCTL_PFINFO_XALLOC: u32 = 0xe << XEN_DOMCTL_PFINFO_LTAB_SHIFT;
/// Broken page.
pub const XEN_DOMCTL_PFINFO_BROKEN: u32 = 0xd << XEN_DOMCTL_PFINFO_LTAB_SHIFT;
/// Mask of the whole type field.
pub const XEN_DOMCTL_PFINFO_LTAB_MASK: u32 = 0xf << XEN_DOMCTL_PFINFO_LTAB_SHIFT;

abi_struct! {
    /// `XEN_DOMCTL_getpageframeinfo3`: types of `num` frames, in place.
    pub struct XenDomctlGetpageframeinfo3 {
        /// Number of entries.
        pub num: u64,
        /// Handle of a `xen_pfn_t` array (in: frames, out: frames | type).
        pub array: GuestHandle,
    }
}

abi_enum! {
    /// `xen_domctl_shadow_op.op` (`XEN_DOMCTL_SHADOW_OP_*`).
    pub enum ShadowOp: u32, raw u64 {
        /// Disable shadow mode.
        Off = 0 => "XEN_DOMCTL_SHADOW_OP_OFF",
        /// Enable test mode.
        EnableTest = 1 => "XEN_DOMCTL_SHADOW_OP_ENABLE_TEST",
        /// Enable log-dirty mode.
        EnableLogdirty = 2 => "XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY",
        /// Read and clear the dirty bitmap.
        Clean = 11 => "XEN_DOMCTL_SHADOW_OP_CLEAN",
        /// Read the dirty bitmap.
        Peek = 12 => "XEN_DOMCTL_SHADOW_OP_PEEK",
        /// Get the shadow allocation (MB).
        GetAllocation = 30 => "XEN_DOMCTL_SHADOW_OP_GET_ALLOCATION",
        /// Set the shadow allocation (MB).
        SetAllocation = 31 => "XEN_DOMCTL_SHADOW_OP_SET_ALLOCATION",
        /// Enable with `mode` flags.
        Enable = 32 => "XEN_DOMCTL_SHADOW_OP_ENABLE",
    }
}

/// Shadow mode: reference counting.
pub const XEN_DOMCTL_SHADOW_ENABLE_REFCOUNT: u32 = 1 << 1;
/// Shadow mode: log-dirty.
pub const XEN_DOMCTL_SHADOW_ENABLE_LOG_DIRTY: u32 = 1 << 2;
/// Shadow mode: translate.
pub const XEN_DOMCTL_SHADOW_ENABLE_TRANSLATE: u32 = 1 << 3;
/// Shadow mode: external.
pub const XEN_DOMCTL_SHADOW_ENABLE_EXTERNAL: u32 = 1 << 4;
/// `XEN_DOMCTL_SHADOW_OP_CLEAN`/`PEEK` mode flag: final pass.
pub const XEN_DOMCTL_SHADOW_LOGDIRTY_FINAL: u32 = 1 << 0;

abi_struct! {
    /// Log-dirty statistics (`struct xen_domctl_shadow_op_stats`).
    pub struct XenDomctlShadowOpStats {
        /// Faults since last clean.
        pub fault_count: u32,
        /// Dirty pages.
        pub dirty_count: u32,
    }
}

abi_struct! {
    /// `XEN_DOMCTL_shadow_op`.
    pub struct XenDomctlShadowOp {
        /// A [`ShadowOp`].
        pub op: u32,
        /// `XEN_DOMCTL_SHADOW_ENABLE_*` / `LOGDIRTY_FINAL`.
        pub mode: u32,
        /// Allocation in MB (get/set allocation).
        pub mb: u32,
        /// Implicit C padding; zero.
        pub _pad12: u32,
        /// Handle of the dirty bitmap.
        pub dirty_bitmap: GuestHandle,
        /// Pages covered by the bitmap.
        pub pages: u64,
        /// Statistics (output).
        pub stats: XenDomctlShadowOpStats,
    }
}

abi_struct! {
    /// `XEN_DOMCTL_max_mem`.
    pub struct XenDomctlMaxMem {
        /// Limit in KiB.
        pub max_memkb: u64,
    }
}

abi_struct! {
    /// `XEN_DOMCTL_setvcpucontext` / `getvcpucontext`.
    pub struct XenDomctlVcpucontext {
        /// vCPU.
        pub vcpu: u32,
        /// Implicit C padding; zero.
        pub _pad4: u32,
        /// Handle of a [`crate::arch_x86::VcpuGuestContext`].
        pub ctxt: GuestHandle,
    }
}

abi_struct! {
    /// `XEN_DOMCTL_getvcpuinfo`, filled by Xen.
    pub struct XenDomctlGetvcpuinfo {
        /// vCPU (input).
        pub vcpu: u32,
        /// Online?
        pub online: u8,
        /// Blocked?
        pub blocked: u8,
        /// Running?
        pub running: u8,
        /// Implicit C padding.
        pub _pad7: u8,
        /// CPU time (ns).
        pub cpu_time: u64,
        /// Current physical CPU.
        pub cpu: u32,
        /// Implicit C padding.
        pub _pad20: u32,
    }
}

abi_struct! {
    /// `XEN_DOMCTL_setnodeaffinity` / `getnodeaffinity`.
    pub struct XenDomctlNodeaffinity {
        /// Node mask.
        pub nodemap: XenctlBitmap,
    }
}

/// `vcpuaffinity.flags`: hard affinity.
pub const XEN_VCPUAFFINITY_HARD: u32 = 1 << 0;
/// `vcpuaffinity.flags`: soft affinity.
pub const XEN_VCPUAFFINITY_SOFT: u32 = 1 << 1;
/// `vcpuaffinity.flags`: force (break temporary pinning).
pub const XEN_VCPUAFFINITY_FORCE: u32 = 1 << 2;

abi_struct! {
    /// `XEN_DOMCTL_setvcpuaffinity` / `getvcpuaffinity`.
    pub struct XenDomctlVcpuaffinity {
        /// vCPU.
        pub vcpu: u32,
        /// `XEN_VCPUAFFINITY_*`.
        pub flags: u32,
        /// Hard affinity mask.
        pub cpumap_hard: XenctlBitmap,
        /// Soft affinity mask.
        pub cpumap_soft: XenctlBitmap,
    }
}

abi_struct! {
    /// `XEN_DOMCTL_max_vcpus`.
    pub struct XenDomctlMaxVcpus {
        /// Maximum number of vCPUs.
        pub max: u32,
    }
}

// ---------------------------------------------------------------------------
// Scheduler
// ---------------------------------------------------------------------------

abi_enum! {
    /// Scheduler ids (`XEN_SCHEDULER_*`).
    pub enum SchedulerId: u32, raw u64 {
        /// Credit.
        Credit = 5 => "XEN_SCHEDULER_CREDIT",
        /// Credit2.
        Credit2 = 6 => "XEN_SCHEDULER_CREDIT2",
        /// ARINC 653.
        Arinc653 = 7 => "XEN_SCHEDULER_ARINC653",
        /// RTDS.
        Rtds = 8 => "XEN_SCHEDULER_RTDS",
        /// Null scheduler.
        Null = 9 => "XEN_SCHEDULER_NULL",
    }
}

abi_enum! {
    /// `xen_domctl_scheduler_op.cmd` (`XEN_DOMCTL_SCHEDOP_*`).
    pub enum DomctlSchedOp: u32, raw u64 {
        /// Set domain parameters.
        Putinfo = 0 => "XEN_DOMCTL_SCHEDOP_putinfo",
        /// Get domain parameters.
        Getinfo = 1 => "XEN_DOMCTL_SCHEDOP_getinfo",
        /// Set per-vCPU parameters.
        Putvcpuinfo = 2 => "XEN_DOMCTL_SCHEDOP_putvcpuinfo",
        /// Get per-vCPU parameters.
        Getvcpuinfo = 3 => "XEN_DOMCTL_SCHEDOP_getvcpuinfo",
    }
}

/// RTDS flag: the vCPU may use extra time.
pub const XEN_DOMCTL_SCHEDRT_EXTRA: u32 = 1 << 0;

abi_struct! {
    /// Credit scheduler parameters (`struct xen_domctl_sched_credit`).
    pub struct XenDomctlSchedCredit {
        /// Relative weight.
        pub weight: u16,
        /// Cap in percent of a CPU (0 = none).
        pub cap: u16,
    }
}

abi_struct! {
    /// Credit2 scheduler parameters (`struct xen_domctl_sched_credit2`).
    pub struct XenDomctlSchedCredit2 {
        /// Relative weight.
        pub weight: u16,
        /// Cap.
        pub cap: u16,
    }
}

abi_struct! {
    /// RTDS scheduler parameters (`struct xen_domctl_sched_rtds`).
    pub struct XenDomctlSchedRtds {
        /// Period (µs).
        pub period: u32,
        /// Budget (µs).
        pub budget: u32,
        /// `XEN_DOMCTL_SCHEDRT_*`.
        pub flags: u32,
    }
}

abi_struct! {
    /// Per-vCPU scheduler parameters (`struct xen_domctl_schedparam_vcpu`).
    /// The union `u` is stored as its largest member ([`XenDomctlSchedRtds`]).
    pub struct XenDomctlSchedparamVcpu {
        /// Union of credit/credit2/rtds parameters.
        pub u: XenDomctlSchedRtds,
        /// vCPU id.
        pub vcpuid: u32,
    }
}

impl XenDomctlSchedparamVcpu {
    /// `u.credit` view.
    pub fn credit(&self) -> XenDomctlSchedCredit {
        union_read(self.u.as_bytes())
    }
    /// `u.credit2` view.
    pub fn credit2(&self) -> XenDomctlSchedCredit2 {
        union_read(self.u.as_bytes())
    }
}

abi_struct! {
    /// `xen_domctl_scheduler_op.u.v`: per-vCPU parameter array.
    pub struct XenDomctlSchedulerOpV {
        /// Handle of [`XenDomctlSchedparamVcpu`] entries.
        pub vcpus: GuestHandle,
        /// Number of entries.
        pub nr_vcpus: u32,
        /// Padding.
        pub padding: u32,
    }
}

abi_struct! {
    /// `XEN_DOMCTL_scheduler_op`. The union `u` (credit / credit2 / rtds /
    /// per-vCPU `v`) is stored as raw words; use the accessors.
    pub struct XenDomctlSchedulerOp {
        /// A [`SchedulerId`].
        pub sched_id: u32,
        /// A [`DomctlSchedOp`].
        pub cmd: u32,
        /// Raw union storage (16 bytes).
        pub u: [u64; 2],
    }
}

impl XenDomctlSchedulerOp {
    /// `u.credit`.
    pub fn credit(&self) -> XenDomctlSchedCredit {
        union_read(self.u.as_bytes())
    }
    /// Stores `u.credit`.
    pub fn set_credit(&mut self, v: &XenDomctlSchedCredit) {
        union_write(self.u.as_mut_bytes(), v)
    }
    /// `u.credit2`.
    pub fn credit2(&self) -> XenDomctlSchedCredit2 {
        union_read(self.u.as_bytes())
    }
    /// Stores `u.credit2`.
    pub fn set_credit2(&mut self, v: &XenDomctlSchedCredit2) {
        union_write(self.u.as_mut_bytes(), v)
    }
    /// `u.rtds`.
    pub fn rtds(&self) -> XenDomctlSchedRtds {
        union_read(self.u.as_bytes())
    }
    /// Stores `u.rtds`.
    pub fn set_rtds(&mut self, v: &XenDomctlSchedRtds) {
        union_write(self.u.as_mut_bytes(), v)
    }
    /// `u.v`.
    pub fn v(&self) -> XenDomctlSchedulerOpV {
        union_read(self.u.as_bytes())
    }
    /// Stores `u.v`.
    pub fn set_v(&mut self, v: &XenDomctlSchedulerOpV) {
        union_write(self.u.as_mut_bytes(), v)
    }
}

// ---------------------------------------------------------------------------
// Small commands
// ---------------------------------------------------------------------------

abi_struct! {
    /// `XEN_DOMCTL_setdomainhandle`.
    pub struct XenDomctlSetdomainhandle {
        /// New handle (UUID).
        pub handle: XenDomainHandle,
    }
}

abi_struct! {
    /// `XEN_DOMCTL_setdebugging`.
    pub struct XenDomctlSetdebugging {
        /// Non-zero to enable.
        pub enable: u8,
    }
}

abi_struct! {
    /// `XEN_DOMCTL_irq_permission`.
    pub struct XenDomctlIrqPermission {
        /// PIRQ.
        pub pirq: u32,
        /// Non-zero to allow.
        pub allow_access: u8,
        /// Padding.
        pub pad: [u8; 3],
    }
}

abi_struct! {
    /// `XEN_DOMCTL_iomem_permission`.
    pub struct XenDomctlIomemPermission {
        /// First MFN.
        pub first_mfn: u64,
        /// Number of MFNs.
        pub nr_mfns: u64,
        /// Non-zero to allow.
        pub allow_access: u8,
        /// Implicit C padding.
        pub _pad17: [u8; 7],
    }
}

abi_struct! {
    /// `XEN_DOMCTL_ioport_permission`.
    pub struct XenDomctlIoportPermission {
        /// First port.
        pub first_port: u32,
        /// Number of ports.
        pub nr_ports: u32,
        /// Non-zero to allow.
        pub allow_access: u8,
        /// Implicit C padding.
        pub _pad9: [u8; 3],
    }
}

abi_struct! {
    /// `XEN_DOMCTL_hypercall_init`.
    pub struct XenDomctlHypercallInit {
        /// Guest frame to fill with the hypercall page.
        pub gmfn: u64,
    }
}

abi_struct! {
    /// `XEN_DOMCTL_settimeoffset`.
    pub struct XenDomctlSettimeoffset {
        /// Wallclock offset in seconds.
        pub time_offset_seconds: i64,
    }
}

abi_struct! {
    /// `XEN_DOMCTL_gethvmcontext` / `sethvmcontext`.
    pub struct XenDomctlHvmcontext {
        /// Buffer size (in/out).
        pub size: u32,
        /// Implicit C padding.
        pub _pad4: u32,
        /// Handle of the save-record buffer (NULL: query size).
        pub buffer: GuestHandle,
    }
}

abi_struct! {
    /// `XEN_DOMCTL_set_address_size` / `get_address_size`.
    pub struct XenDomctlAddressSize {
        /// Address size in bits (32 or 64).
        pub size: u32,
    }
}

abi_enum! {
    /// `xen_domctl_sendtrigger.trigger` (`XEN_DOMCTL_SENDTRIGGER_*`).
    pub enum SendTrigger: u32, raw u64 {
        /// NMI.
        Nmi = 0 => "XEN_DOMCTL_SENDTRIGGER_NMI",
        /// Reset.
        Reset = 1 => "XEN_DOMCTL_SENDTRIGGER_RESET",
        /// INIT.
        Init = 2 => "XEN_DOMCTL_SENDTRIGGER_INIT",
        /// Power button.
        Power = 3 => "XEN_DOMCTL_SENDTRIGGER_POWER",
        /// Sleep button.
        Sleep = 4 => "XEN_DOMCTL_SENDTRIGGER_SLEEP",
    }
}

abi_struct! {
    /// `XEN_DOMCTL_sendtrigger`.
    pub struct XenDomctlSendtrigger {
        /// A [`SendTrigger`].
        pub trigger: u32,
        /// Target vCPU.
        pub vcpu: u32,
    }
}

// ---------------------------------------------------------------------------
// Devices / passthrough
// ---------------------------------------------------------------------------

/// `assign_device.dev`: PCI device.
pub const XEN_DOMCTL_DEV_PCI: u32 = 0;
/// `assign_device.dev`: device-tree device.
pub const XEN_DOMCTL_DEV_DT: u32 = 1;
/// `assign_device.flags`: relaxed reserved-device-memory policy.
pub const XEN_DOMCTL_DEV_RDM_RELAXED: u32 = 1;

abi_struct! {
    /// `xen_domctl_assign_device.u.dt` (stored form of the union).
    pub struct XenDomctlAssignDeviceDt {
        /// Path length (also `u.pci.machine_sbdf`).
        pub size: u32,
        /// Implicit C padding.
        pub _pad4: u32,
        /// Handle of the device-tree path.
        pub path: GuestHandle,
    }
}

abi_struct! {
    /// `XEN_DOMCTL_assign_device` / `test_assign_device` / `deassign_device`.
    pub struct XenDomctlAssignDevice {
        /// `XEN_DOMCTL_DEV_*`.
        pub dev: u32,
        /// `XEN_DOMCTL_DEV_RDM_RELAXED`.
        pub flags: u32,
        /// Union: `pci.machine_sbdf` (first 4 bytes) or `dt`.
        pub u: XenDomctlAssignDeviceDt,
    }
}

impl XenDomctlAssignDevice {
    /// `u.pci.machine_sbdf`.
    pub const fn machine_sbdf(&self) -> u32 {
        self.u.size
    }
}

abi_struct! {
    /// `XEN_DOMCTL_get_device_group`.
    pub struct XenDomctlGetDeviceGroup {
        /// Device (segment/bus/devfn).
        pub machine_sbdf: u32,
        /// Capacity of `sdev_array`.
        pub max_sdevs: u32,
        /// Devices returned.
        pub num_sdevs: u32,
        /// Implicit C padding.
        pub _pad12: u32,
        /// Handle of a `u32` SBDF array.
        pub sdev_array: GuestHandle,
    }
}

abi_enum! {
    /// `xen_domctl_bind_pt_irq.irq_type` (`enum pt_irq_type`).
    pub enum PtIrqType: u32, raw u64 {
        /// PCI INTx.
        Pci = 1 => "PT_IRQ_TYPE_PCI",
        /// ISA IRQ.
        Isa = 2 => "PT_IRQ_TYPE_ISA",
        /// MSI.
        Msi = 3 => "PT_IRQ_TYPE_MSI",
        /// MSI (translate).
        MsiTranslate = 4 => "PT_IRQ_TYPE_MSI_TRANSLATE",
        /// ARM SPI.
        Spi = 5 => "PT_IRQ_TYPE_SPI",
    }
}

/// `bind_pt_irq.u.msi.gflags`: destination id mask.
pub const XEN_DOMCTL_VMSI_X86_DEST_ID_MASK: u32 = 0x0000_00ff;
/// `gflags`: redirection hint.
pub const XEN_DOMCTL_VMSI_X86_RH_MASK: u32 = 0x0000_0100;
/// `gflags`: destination mode.
pub const XEN_DOMCTL_VMSI_X86_DM_MASK: u32 = 0x0000_0200;
/// `gflags`: delivery mode.
pub const XEN_DOMCTL_VMSI_X86_DELIV_MASK: u32 = 0x0000_7000;
/// `gflags`: trigger mode.
pub const XEN_DOMCTL_VMSI_X86_TRIG_MASK: u32 = 0x0000_8000;
/// `gflags`: unmasked.
pub const XEN_DOMCTL_VMSI_X86_UNMASKED: u32 = 0x0001_0000;

abi_struct! {
    /// `bind_pt_irq.u.pci` view.
    pub struct XenDomctlBindPtIrqPci {
        /// Bus.
        pub bus: u8,
        /// Device.
        pub device: u8,
        /// INTx line.
        pub intx: u8,
    }
}

abi_struct! {
    /// `bind_pt_irq.u.msi` (stored form of the union).
    pub struct XenDomctlBindPtIrqMsi {
        /// Guest vector (also `u.isa.isa_irq`, `u.pci.bus`).
        pub gvec: u8,
        /// Implicit C padding.
        pub _pad1: [u8; 3],
        /// `XEN_DOMCTL_VMSI_X86_*`.
        pub gflags: u32,
        /// MSI-X table address.
        pub gtable: u64,
    }
}

abi_struct! {
    /// `XEN_DOMCTL_bind_pt_irq` / `unbind_pt_irq`.
    pub struct XenDomctlBindPtIrq {
        /// Machine IRQ.
        pub machine_irq: u32,
        /// A [`PtIrqType`].
        pub irq_type: u32,
        /// Union `u` (isa / pci / msi / spi), stored in msi form.
        pub u: XenDomctlBindPtIrqMsi,
    }
}

impl XenDomctlBindPtIrq {
    /// `u.pci` view.
    pub fn pci(&self) -> XenDomctlBindPtIrqPci {
        union_read(self.u.as_bytes())
    }
    /// `u.isa.isa_irq`.
    pub const fn isa_irq(&self) -> u8 {
        self.u.gvec
    }
    /// `u.spi.spi` (first 2 bytes).
    pub fn spi(&self) -> u16 {
        union_read(self.u.as_bytes())
    }
}

abi_struct! {
    /// `XEN_DOMCTL_memory_mapping`.
    pub struct XenDomctlMemoryMapping {
        /// First guest frame.
        pub first_gfn: u64,
        /// First machine frame.
        pub first_mfn: u64,
        /// Number of frames.
        pub nr_mfns: u64,
        /// 1 to add, 0 to remove.
        pub add_mapping: u32,
        /// Padding.
        pub padding: u32,
    }
}

abi_struct! {
    /// `XEN_DOMCTL_ioport_mapping`.
    pub struct XenDomctlIoportMapping {
        /// First guest port.
        pub first_gport: u32,
        /// First machine port.
        pub first_mport: u32,
        /// Number of ports.
        pub nr_ports: u32,
        /// 1 to add, 0 to remove.
        pub add_mapping: u32,
    }
}

abi_struct! {
    /// `XEN_DOMCTL_set_ext_vcpucontext` / `get_ext_vcpucontext`.
    pub struct XenDomctlExtVcpucontext {
        /// vCPU.
        pub vcpu: u32,
        /// Size of valid data (output for get).
        pub size: u32,
        /// 32-bit syscall entry.
        pub syscall32_callback_eip: u64,
        /// sysenter entry.
        pub sysenter_callback_eip: u64,
        /// 32-bit syscall CS.
        pub syscall32_callback_cs: u16,
        /// sysenter CS.
        pub sysenter_callback_cs: u16,
        /// syscall32 masks events.
        pub syscall32_disables_events: u8,
        /// sysenter masks events.
        pub sysenter_disables_events: u8,
        /// Implicit C padding.
        pub _pad30: u16,
        /// vMCE state (anonymous union with the older `mcg_cap`).
        pub vmce: HvmVmceVcpu,
    }
}

abi_struct! {
    /// `XEN_DOMCTL_set_target`.
    pub struct XenDomctlSetTarget {
        /// Target domain.
        pub target: DomId,
    }
}

/// `XEN_CPUID_INPUT_UNUSED`: no subleaf in a CPUID policy entry (domctl form).
pub const XEN_CPUID_INPUT_UNUSED: u32 = 0xffff_ffff;

abi_struct! {
    /// `XEN_DOMCTL_get_cpu_policy` / `set_cpu_policy`.
    pub struct XenDomctlCpuPolicy {
        /// Number of leaves (in/out).
        pub nr_leaves: u32,
        /// Number of MSRs (in/out).
        pub nr_msrs: u32,
        /// Handle of [`crate::arch_x86::XenCpuidLeaf`] entries.
        pub leaves: GuestHandle,
        /// Handle of [`crate::arch_x86::XenMsrEntry`] entries.
        pub msrs: GuestHandle,
        /// Failing leaf (output).
        pub err_leaf: u32,
        /// Failing subleaf (output).
        pub err_subleaf: u32,
        /// Failing MSR (output).
        pub err_msr: u32,
        /// Implicit C padding.
        pub _pad36: u32,
    }
}

abi_struct! {
    /// `XEN_DOMCTL_subscribe`.
    pub struct XenDomctlSubscribe {
        /// Port notified on state changes.
        pub port: u32,
    }
}

/// `debug_op.op`: single-step off.
pub const XEN_DOMCTL_DEBUG_OP_SINGLE_STEP_OFF: u32 = 0;
/// `debug_op.op`: single-step on.
pub const XEN_DOMCTL_DEBUG_OP_SINGLE_STEP_ON: u32 = 1;

abi_struct! {
    /// `XEN_DOMCTL_debug_op`.
    pub struct XenDomctlDebugOp {
        /// `XEN_DOMCTL_DEBUG_OP_*`.
        pub op: u32,
        /// vCPU.
        pub vcpu: u32,
    }
}

abi_struct! {
    /// `XEN_DOMCTL_gethvmcontext_partial`.
    pub struct XenDomctlHvmcontextPartial {
        /// Save record type code.
        pub r#type: u32,
        /// Instance (e.g. vCPU).
        pub instance: u32,
        /// Buffer size.
        pub bufsz: u64,
        /// Handle of the buffer.
        pub buffer: GuestHandle,
    }
}

abi_struct! {
    /// `XEN_DOMCTL_gettscinfo` / `settscinfo`.
    pub struct XenDomctlTscInfo {
        /// TSC mode.
        pub tsc_mode: u32,
        /// Guest TSC frequency (kHz).
        pub gtsc_khz: u32,
        /// Migration incarnation.
        pub incarnation: u32,
        /// Padding.
        pub pad: u32,
        /// Elapsed ns.
        pub elapsed_nsec: u64,
    }
}

abi_struct! {
    /// `XEN_DOMCTL_gdbsx_guestmemio`.
    pub struct XenDomctlGdbsxMemio {
        /// Guest CR3 (or 0).
        pub pgd3val: u64,
        /// Guest virtual address.
        pub gva: u64,
        /// Caller buffer address.
        pub uva: u64,
        /// Length.
        pub len: u32,
        /// Non-zero to write.
        pub gwr: u8,
        /// Implicit C padding.
        pub _pad29: [u8; 3],
        /// Bytes not done (output).
        pub remain: u32,
        /// Implicit C padding.
        pub _pad36: u32,
    }
}

abi_struct! {
    /// `XEN_DOMCTL_gdbsx_pausevcpu` / `unpausevcpu`.
    pub struct XenDomctlGdbsxPauseunpVcpu {
        /// vCPU.
        pub vcpu: u32,
    }
}

abi_struct! {
    /// `XEN_DOMCTL_gdbsx_domstatus`.
    pub struct XenDomctlGdbsxDomstatus {
        /// Domain paused?
        pub paused: u8,
        /// Implicit C padding.
        pub _pad1: [u8; 3],
        /// vCPU with an event.
        pub vcpu_id: u32,
        /// The event.
        pub vcpu_ev: u32,
    }
}

// ---------------------------------------------------------------------------
// vm_event / sharing / monitor
// ---------------------------------------------------------------------------

/// `vm_event_op.op`: enable.
pub const XEN_VM_EVENT_ENABLE: u32 = 0;
/// `vm_event_op.op`: disable.
pub const XEN_VM_EVENT_DISABLE: u32 = 1;
/// `vm_event_op.op`: resume.
pub const XEN_VM_EVENT_RESUME: u32 = 2;
/// `vm_event_op.op`: get interface version.
pub const XEN_VM_EVENT_GET_VERSION: u32 = 3;
/// `vm_event_op.mode`: paging.
pub const XEN_DOMCTL_VM_EVENT_OP_PAGING: u32 = 1;
/// `vm_event_op.mode`: monitor.
pub const XEN_DOMCTL_VM_EVENT_OP_MONITOR: u32 = 2;
/// `vm_event_op.mode`: sharing.
pub const XEN_DOMCTL_VM_EVENT_OP_SHARING: u32 = 3;

abi_struct! {
    /// `XEN_DOMCTL_vm_event_op`.
    pub struct XenDomctlVmEventOp {
        /// `XEN_VM_EVENT_*`.
        pub op: u32,
        /// `XEN_DOMCTL_VM_EVENT_OP_*`.
        pub mode: u32,
        /// Union: `enable.port` (output) or `version` (output).
        pub u: u32,
    }
}

/// `mem_sharing_op.op`: control.
pub const XEN_DOMCTL_MEM_SHARING_CONTROL: u8 = 0;

abi_struct! {
    /// `XEN_DOMCTL_mem_sharing_op`.
    pub struct XenDomctlMemSharingOp {
        /// `XEN_DOMCTL_MEM_SHARING_*`.
        pub op: u8,
        /// Union: `enable`.
        pub u: u8,
    }
}

abi_struct! {
    /// `XEN_DOMCTL_audit_p2m` (output).
    pub struct XenDomctlAuditP2m {
        /// Orphaned pages.
        pub orphans: u64,
        /// Bad M2P entries.
        pub m2p_bad: u64,
        /// Bad P2M entries.
        pub p2m_bad: u64,
    }
}

abi_struct! {
    /// `XEN_DOMCTL_set_virq_handler`.
    pub struct XenDomctlSetVirqHandler {
        /// Global VIRQ.
        pub virq: u32,
    }
}

abi_struct! {
    /// `XEN_DOMCTL_setvcpuextstate` / `getvcpuextstate`.
    pub struct XenDomctlVcpuextstate {
        /// vCPU.
        pub vcpu: u32,
        /// Implicit C padding.
        pub _pad4: u32,
        /// XCR0 feature mask.
        pub xfeature_mask: u64,
        /// Buffer size.
        pub size: u64,
        /// Handle of the buffer.
        pub buffer: GuestHandle,
    }
}

abi_struct! {
    /// `XEN_DOMCTL_set_access_required`.
    pub struct XenDomctlSetAccessRequired {
        /// Non-zero: pause vCPUs when no listener.
        pub access_required: u8,
    }
}

abi_struct! {
    /// `XEN_DOMCTL_set_broken_page_p2m`.
    pub struct XenDomctlSetBrokenPageP2m {
        /// Guest frame.
        pub pfn: u64,
    }
}

abi_struct! {
    /// `XEN_DOMCTL_cacheflush`.
    pub struct XenDomctlCacheflush {
        /// First frame.
        pub start_pfn: XenPfn,
        /// Number of frames.
        pub nr_pfns: XenPfn,
    }
}

abi_struct! {
    /// `XEN_DOMCTL_get/set_paging_mempool_size`.
    pub struct XenDomctlPagingMempool {
        /// Size in bytes.
        pub size: u64,
    }
}

abi_struct! {
    /// One vCPU MSR (`struct xen_domctl_vcpu_msr`).
    pub struct XenDomctlVcpuMsr {
        /// MSR index.
        pub index: u32,
        /// Reserved.
        pub reserved: u32,
        /// Value.
        pub value: u64,
    }
}

abi_struct! {
    /// `XEN_DOMCTL_get_vcpu_msrs` / `set_vcpu_msrs`.
    pub struct XenDomctlVcpuMsrs {
        /// vCPU.
        pub vcpu: u32,
        /// Number of entries (in/out).
        pub msr_count: u32,
        /// Handle of [`XenDomctlVcpuMsr`] entries.
        pub msrs: GuestHandle,
    }
}

abi_struct! {
    /// `XEN_DOMCTL_setvnumainfo`.
    pub struct XenDomctlVnuma {
        /// Virtual nodes.
        pub nr_vnodes: u32,
        /// Memory ranges.
        pub nr_vmemranges: u32,
        /// vCPUs.
        pub nr_vcpus: u32,
        /// Padding.
        pub pad: u32,
        /// Handle of the distance table.
        pub vdistance: GuestHandle,
        /// Handle of the vCPU → vnode map.
        pub vcpu_to_vnode: GuestHandle,
        /// Handle of the vnode → pnode map.
        pub vnode_to_pnode: GuestHandle,
        /// Handle of [`crate::memory::XenVmemrange`] entries.
        pub vmemrange: GuestHandle,
    }
}

/// PSR CMT op: detach.
pub const XEN_DOMCTL_PSR_CMT_OP_DETACH: u32 = 0;
/// PSR CMT op: attach.
pub const XEN_DOMCTL_PSR_CMT_OP_ATTACH: u32 = 1;
/// PSR CMT op: query RMID.
pub const XEN_DOMCTL_PSR_CMT_OP_QUERY_RMID: u32 = 2;

abi_struct! {
    /// `XEN_DOMCTL_psr_cmt_op`.
    pub struct XenDomctlPsrCmtOp {
        /// `XEN_DOMCTL_PSR_CMT_OP_*`.
        pub cmd: u32,
        /// Data (output).
        pub data: u32,
    }
}

abi_enum! {
    /// `monitor_op.op` (`XEN_DOMCTL_MONITOR_OP_*`).
    pub enum MonitorOp: u32, raw u64 {
        /// Enable an event.
        Enable = 0 => "XEN_DOMCTL_MONITOR_OP_ENABLE",
        /// Disable an event.
        Disable = 1 => "XEN_DOMCTL_MONITOR_OP_DISABLE",
        /// Get capabilities.
        GetCapabilities = 2 => "XEN_DOMCTL_MONITOR_OP_GET_CAPABILITIES",
        /// Emulate each rep iteration.
        EmulateEachRep = 3 => "XEN_DOMCTL_MONITOR_OP_EMULATE_EACH_REP",
        /// Control register write monitoring.
        ControlRegisters = 4 => "XEN_DOMCTL_MONITOR_OP_CONTROL_REGISTERS",
    }
}

abi_enum! {
    /// `monitor_op.event` (`XEN_DOMCTL_MONITOR_EVENT_*`).
    pub enum MonitorEvent: u32, raw u64 {
        /// Control register write.
        WriteCtrlreg = 0 => "XEN_DOMCTL_MONITOR_EVENT_WRITE_CTRLREG",
        /// MSR write.
        MovToMsr = 1 => "XEN_DOMCTL_MONITOR_EVENT_MOV_TO_MSR",
        /// Single step.
        Singlestep = 2 => "XEN_DOMCTL_MONITOR_EVENT_SINGLESTEP",
        /// Software breakpoint.
        SoftwareBreakpoint = 3 => "XEN_DOMCTL_MONITOR_EVENT_SOFTWARE_BREAKPOINT",
        /// Guest request.
        GuestRequest = 4 => "XEN_DOMCTL_MONITOR_EVENT_GUEST_REQUEST",
        /// Debug exception.
        DebugException = 5 => "XEN_DOMCTL_MONITOR_EVENT_DEBUG_EXCEPTION",
        /// CPUID.
        Cpuid = 6 => "XEN_DOMCTL_MONITOR_EVENT_CPUID",
        /// Privileged call.
        PrivilegedCall = 7 => "XEN_DOMCTL_MONITOR_EVENT_PRIVILEGED_CALL",
        /// Interrupt.
        Interrupt = 8 => "XEN_DOMCTL_MONITOR_EVENT_INTERRUPT",
        /// Descriptor table access.
        DescAccess = 9 => "XEN_DOMCTL_MONITOR_EVENT_DESC_ACCESS",
        /// Unimplemented emulation.
        EmulUnimplemented = 10 => "XEN_DOMCTL_MONITOR_EVENT_EMUL_UNIMPLEMENTED",
        /// In-guest page fault.
        InguestPagefault = 11 => "XEN_DOMCTL_MONITOR_EVENT_INGUEST_PAGEFAULT",
        /// VM exit.
        Vmexit = 12 => "XEN_DOMCTL_MONITOR_EVENT_VMEXIT",
    }
}

abi_struct! {
    /// `monitor_op.u.mov_to_cr` (stored form of the union).
    pub struct XenDomctlMonitorOpMovToCr {
        /// Control register index (also `sync` of the 1-byte members).
        pub index: u8,
        /// Synchronous.
        pub sync: u8,
        /// Only on change.
        pub onchangeonly: u8,
        /// Padding.
        pub pad1: u8,
        /// Padding.
        pub pad2: u32,
        /// Bits to ignore.
        pub bitmask: u64,
    }
}

abi_struct! {
    /// `monitor_op.u.mov_to_msr` view.
    pub struct XenDomctlMonitorOpMovToMsr {
        /// MSR.
        pub msr: u32,
        /// Only on change.
        pub onchangeonly: u8,
        /// Rest of the member.
        pub _pad5: [u8; 3],
    }
}

abi_struct! {
    /// `monitor_op.u.guest_request` view.
    pub struct XenDomctlMonitorOpGuestRequest {
        /// Synchronous.
        pub sync: u8,
        /// Allow requests from user mode.
        pub allow_userspace: u8,
    }
}

abi_struct! {
    /// `XEN_DOMCTL_monitor_op`.
    pub struct XenDomctlMonitorOp {
        /// A [`MonitorOp`].
        pub op: u32,
        /// A [`MonitorEvent`].
        pub event: u32,
        /// Union `u` stored in `mov_to_cr` form.
        pub u: XenDomctlMonitorOpMovToCr,
    }
}

impl XenDomctlMonitorOp {
    /// `u.mov_to_msr` view.
    pub fn mov_to_msr(&self) -> XenDomctlMonitorOpMovToMsr {
        union_read(self.u.as_bytes())
    }
    /// `u.guest_request` view.
    pub fn guest_request(&self) -> XenDomctlMonitorOpGuestRequest {
        union_read(self.u.as_bytes())
    }
    /// `u.debug_exception.sync` / `u.vmexit.sync` (first byte).
    pub const fn sync_byte(&self) -> u8 {
        self.u.index
    }
}

abi_enum! {
    /// `psr_alloc.cmd` (`XEN_DOMCTL_PSR_*`).
    pub enum DomctlPsrOp: u32, raw u64 {
        /// Set L3 CBM.
        SetL3Cbm = 0 => "XEN_DOMCTL_PSR_SET_L3_CBM",
        /// Get L3 CBM.
        GetL3Cbm = 1 => "XEN_DOMCTL_PSR_GET_L3_CBM",
        /// Set L3 code CBM.
        SetL3Code = 2 => "XEN_DOMCTL_PSR_SET_L3_CODE",
        /// Set L3 data CBM.
        SetL3Data = 3 => "XEN_DOMCTL_PSR_SET_L3_DATA",
        /// Get L3 code CBM.
        GetL3Code = 4 => "XEN_DOMCTL_PSR_GET_L3_CODE",
        /// Get L3 data CBM.
        GetL3Data = 5 => "XEN_DOMCTL_PSR_GET_L3_DATA",
        /// Set L2 CBM.
        SetL2Cbm = 6 => "XEN_DOMCTL_PSR_SET_L2_CBM",
        /// Get L2 CBM.
        GetL2Cbm = 7 => "XEN_DOMCTL_PSR_GET_L2_CBM",
        /// Set MBA throttling.
        SetMbaThrtl = 8 => "XEN_DOMCTL_PSR_SET_MBA_THRTL",
        /// Get MBA throttling.
        GetMbaThrtl = 9 => "XEN_DOMCTL_PSR_GET_MBA_THRTL",
    }
}

abi_struct! {
    /// `XEN_DOMCTL_psr_alloc`.
    pub struct XenDomctlPsrAlloc {
        /// A [`DomctlPsrOp`].
        pub cmd: u32,
        /// Target socket / COS.
        pub target: u32,
        /// Value (in/out).
        pub data: u64,
    }
}

/// `vuart_op.cmd`: initialise.
pub const XEN_DOMCTL_VUART_OP_INIT: u32 = 0;
/// `vuart_op.type`: PL011.
pub const XEN_DOMCTL_VUART_TYPE_VPL011: u32 = 0;

abi_struct! {
    /// `XEN_DOMCTL_vuart_op` (ARM).
    pub struct XenDomctlVuartOp {
        /// `XEN_DOMCTL_VUART_OP_*`.
        pub cmd: u32,
        /// `XEN_DOMCTL_VUART_TYPE_*`.
        pub r#type: u32,
        /// Ring frame.
        pub gfn: u64,
        /// Backend domain.
        pub console_domid: DomId,
        /// Padding.
        pub pad: [u8; 2],
        /// Event channel (output).
        pub evtchn: u32,
    }
}

abi_enum! {
    /// `vmtrace_op.cmd` (`XEN_DOMCTL_vmtrace_*`).
    pub enum VmtraceOp: u32, raw u64 {
        /// Enable tracing.
        Enable = 1 => "XEN_DOMCTL_vmtrace_enable",
        /// Disable tracing.
        Disable = 2 => "XEN_DOMCTL_vmtrace_disable",
        /// Reset and enable.
        ResetAndEnable = 3 => "XEN_DOMCTL_vmtrace_reset_and_enable",
        /// Get the output position.
        OutputPosition = 4 => "XEN_DOMCTL_vmtrace_output_position",
        /// Get an option.
        GetOption = 5 => "XEN_DOMCTL_vmtrace_get_option",
        /// Set an option.
        SetOption = 6 => "XEN_DOMCTL_vmtrace_set_option",
    }
}

abi_struct! {
    /// `XEN_DOMCTL_vmtrace_op`.
    pub struct XenDomctlVmtraceOp {
        /// A [`VmtraceOp`].
        pub cmd: u32,
        /// vCPU.
        pub vcpu: u32,
        /// Option key.
        pub key: u64,
        /// Value (in/out).
        pub value: u64,
    }
}

/// Memory cache attribute: UC.
pub const XEN_DOMCTL_MEM_CACHEATTR_UC: u32 = 0;
/// Memory cache attribute: WC.
pub const XEN_DOMCTL_MEM_CACHEATTR_WC: u32 = 1;
/// Memory cache attribute: WT.
pub const XEN_DOMCTL_MEM_CACHEATTR_WT: u32 = 4;
/// Memory cache attribute: WP.
pub const XEN_DOMCTL_MEM_CACHEATTR_WP: u32 = 5;
/// Memory cache attribute: WB.
pub const XEN_DOMCTL_MEM_CACHEATTR_WB: u32 = 6;
/// Memory cache attribute: UC-.
pub const XEN_DOMCTL_MEM_CACHEATTR_UCM: u32 = 7;
/// Delete a cache attribute range.
pub const XEN_DOMCTL_DELETE_MEM_CACHEATTR: u32 = !0;

// ---------------------------------------------------------------------------
// Envelope
// ---------------------------------------------------------------------------

/// Size of the `xen_domctl.u` union.
pub const XEN_DOMCTL_PAYLOAD_SIZE: usize = 128;

abi_struct! {
    /// The domctl envelope (`struct xen_domctl`), written by the toolstack and
    /// copied back by Xen. `u` holds the per-command struct (raw storage,
    /// 8-byte aligned like the C union).
    pub struct XenDomctl {
        /// A [`DomctlCmd`].
        pub cmd: u32,
        /// Must be [`XEN_DOMCTL_INTERFACE_VERSION`].
        pub interface_version: u32,
        /// Target domain.
        pub domain: DomId,
        /// Padding.
        pub _pad: [u16; 3],
        /// The per-command union (`u.pad[128]`).
        pub u: [u64; XEN_DOMCTL_PAYLOAD_SIZE / 8],
    }
}

impl XenDomctl {
    /// A zeroed envelope for `cmd` on `domain` with the current interface version.
    pub fn new(cmd: DomctlCmd, domain: DomId) -> Self {
        Self {
            cmd: cmd as u32,
            interface_version: XEN_DOMCTL_INTERFACE_VERSION,
            domain,
            _pad: [0; 3],
            u: [0; XEN_DOMCTL_PAYLOAD_SIZE / 8],
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
    XenctlBitmap,
    XenDomctlCreatedomain,
    XenDomctlGetdomaininfo,
    XenDomctlGetpageframeinfo3,
    XenDomctlShadowOpStats,
    XenDomctlShadowOp,
    XenDomctlMaxMem,
    XenDomctlVcpucontext,
    XenDomctlGetvcpuinfo,
    XenDomctlNodeaffinity,
    XenDomctlVcpuaffinity,
    XenDomctlMaxVcpus,
    XenDomctlSchedCredit,
    XenDomctlSchedCredit2,
    XenDomctlSchedRtds,
    XenDomctlSchedparamVcpu,
    XenDomctlSchedulerOpV,
    XenDomctlSchedulerOp,
    XenDomctlSetdomainhandle,
    XenDomctlSetdebugging,
    XenDomctlIrqPermission,
    XenDomctlIomemPermission,
    XenDomctlIoportPermission,
    XenDomctlHypercallInit,
    XenDomctlSettimeoffset,
    XenDomctlHvmcontext,
    XenDomctlAddressSize,
    XenDomctlSendtrigger,
    XenDomctlAssignDeviceDt,
    XenDomctlAssignDevice,
    XenDomctlGetDeviceGroup,
    XenDomctlBindPtIrqPci,
    XenDomctlBindPtIrqMsi,
    XenDomctlBindPtIrq,
    XenDomctlMemoryMapping,
    XenDomctlIoportMapping,
    XenDomctlExtVcpucontext,
    XenDomctlSetTarget,
    XenDomctlCpuPolicy,
    XenDomctlSubscribe,
    XenDomctlDebugOp,
    XenDomctlHvmcontextPartial,
    XenDomctlTscInfo,
    XenDomctlGdbsxMemio,
    XenDomctlGdbsxPauseunpVcpu,
    XenDomctlGdbsxDomstatus,
    XenDomctlVmEventOp,
    XenDomctlMemSharingOp,
    XenDomctlAuditP2m,
    XenDomctlSetVirqHandler,
    XenDomctlVcpuextstate,
    XenDomctlSetAccessRequired,
    XenDomctlSetBrokenPageP2m,
    XenDomctlCacheflush,
    XenDomctlPagingMempool,
    XenDomctlVcpuMsr,
    XenDomctlVcpuMsrs,
    XenDomctlVnuma,
    XenDomctlPsrCmtOp,
    XenDomctlMonitorOpMovToCr,
    XenDomctlMonitorOpMovToMsr,
    XenDomctlMonitorOpGuestRequest,
    XenDomctlMonitorOp,
    XenDomctlPsrAlloc,
    XenDomctlVuartOp,
    XenDomctlVmtraceOp,
    XenDomctl,
);
