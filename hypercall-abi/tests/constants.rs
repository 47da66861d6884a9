//! Constants test: every enum value and constant of `hypercall-abi` whose Xen
//! name appears in `tests/data/xen-4.17-x86_64-constants.tsv` must have the
//! table's value, and every table constant must be defined by the crate.
//!
//! Matching is by name, case-insensitively (Rust constants are upper-cased
//! versions of Xen's names, e.g. `GTF_permit_access` → `GTF_PERMIT_ACCESS`;
//! enum values carry Xen's exact name in `name()`). Negative table values are
//! the table generator's signed view of 64-bit constants and also match the
//! unsigned value with the same bits.

mod common;

use hypercall_abi::io::{blkif, console, netif, ring, xenbus, xs_wire};
use hypercall_abi::{
    arch_x86, callback, domctl, elfnote, errno, event_channel, grant_table, hvm, hypercall, memory,
    physdev, sched, sysctl, vcpu, version, xen,
};
use std::collections::{BTreeMap, BTreeSet};

/// (name, value) for every value of the listed ABI enums.
macro_rules! enum_defs {
    ($($e:ty),* $(,)?) => {{
        let mut v: Vec<(String, i128)> = Vec::new();
        $( for x in <$e>::ALL { v.push((x.name().to_string(), x.raw() as i128)); } )*
        v
    }};
}

/// (name, value) for plain constants written as `module::NAME`.
macro_rules! const_defs {
    ($($m:ident :: $n:ident),* $(,)?) => {
        vec![ $( (stringify!($n).to_string(), $m::$n as i128), )* ]
    };
}

fn definitions() -> Vec<(String, i128)> {
    let mut defs = enum_defs!(
        xen::ConsoleIoOp,
        xen::Virq,
        xen::MmuUpdateCmd,
        xen::MmuextCmd,
        xen::VmAssistCmd,
        xen::VmAssistType,
        errno::Errno,
        version::XenVersionOp,
        version::XenFeature,
        sched::SchedOp,
        sched::ShutdownReason,
        vcpu::VcpuOp,
        vcpu::RunstateState,
        callback::CallbackOp,
        callback::CallbackType,
        elfnote::ElfNote,
        arch_x86::SegBase,
        event_channel::EvtchnOp,
        event_channel::EvtchnStat,
        grant_table::GnttabOp,
        grant_table::GntStatus,
        memory::MemoryOp,
        memory::XenMapSpace,
        memory::MemAccessOp,
        memory::MemPagingOp,
        memory::MemSharingOp,
        memory::MemResourceType,
        physdev::PhysdevOp,
        physdev::MapPirqType,
        hvm::HvmOp,
        hvm::Altp2mOp,
        hvm::HvmParam,
        hvm::HvmMemmapType,
        hvm::IoreqState,
        hvm::IoreqType,
        domctl::DomctlCmd,
        domctl::SchedulerId,
        domctl::DomctlSchedOp,
        domctl::ShadowOp,
        domctl::SendTrigger,
        domctl::PtIrqType,
        domctl::MonitorOp,
        domctl::MonitorEvent,
        domctl::DomctlPsrOp,
        domctl::VmtraceOp,
        sysctl::SysctlCmd,
        sysctl::TbufOp,
        sysctl::CpupoolOp,
        sysctl::CpuFeaturesetIndex,
        sysctl::CpuPolicyIndex,
        xenbus::XenbusState,
        xs_wire::XsdSockmsgType,
        blkif::BlkifOp,
        blkif::BlkifRsp,
        netif::NetifExtraType,
        netif::NetifGsoType,
        netif::NetifRsp,
        netif::NetifCtrlType,
        netif::NetifCtrlStatus,
    );
    // Hypercall names are given without Xen's `__HYPERVISOR_` prefix.
    for h in hypercall::Hypercall::ALL {
        defs.push((
            format!("{}{}", hypercall::Hypercall::C_PREFIX, h.name()),
            h.raw() as i128,
        ));
    }
    defs.extend(const_defs!(
        // xen.h
        xen::DOMID_FIRST_RESERVED,
        xen::DOMID_SELF,
        xen::DOMID_IO,
        xen::DOMID_XEN,
        xen::DOMID_COW,
        xen::DOMID_INVALID,
        xen::DOMID_IDLE,
        xen::DOMID_MASK,
        xen::UVMF_NONE,
        xen::UVMF_TLB_FLUSH,
        xen::UVMF_INVLPG,
        xen::UVMF_FLUSHTYPE_MASK,
        xen::UVMF_MULTI,
        xen::UVMF_LOCAL,
        xen::UVMF_ALL,
        xen::XEN_LEGACY_MAX_VCPUS,
        xen::NR_VIRQS,
        xen::SIF_PRIVILEGED,
        xen::SIF_INITDOMAIN,
        xen::SIF_MULTIBOOT_MOD,
        xen::SIF_MOD_START_PFN,
        xen::SIF_VIRT_P2M_4TOOLS,
        xen::SIF_PM_MASK,
        xen::MAX_GUEST_CMDLINE,
        // arch-x86
        arch_x86::FLAT_RING3_CS32,
        arch_x86::FLAT_RING3_CS64,
        arch_x86::FLAT_RING3_DS32,
        arch_x86::FLAT_RING3_DS64,
        arch_x86::FLAT_RING3_SS32,
        arch_x86::FLAT_RING3_SS64,
        arch_x86::FLAT_KERNEL_DS64,
        arch_x86::FLAT_KERNEL_DS32,
        arch_x86::FLAT_KERNEL_DS,
        arch_x86::FLAT_KERNEL_CS64,
        arch_x86::FLAT_KERNEL_CS32,
        arch_x86::FLAT_KERNEL_CS,
        arch_x86::FLAT_KERNEL_SS64,
        arch_x86::FLAT_KERNEL_SS32,
        arch_x86::FLAT_KERNEL_SS,
        arch_x86::FLAT_USER_DS64,
        arch_x86::FLAT_USER_DS32,
        arch_x86::FLAT_USER_DS,
        arch_x86::FLAT_USER_CS64,
        arch_x86::FLAT_USER_CS32,
        arch_x86::FLAT_USER_CS,
        arch_x86::FLAT_USER_SS64,
        arch_x86::FLAT_USER_SS32,
        arch_x86::FLAT_USER_SS,
        arch_x86::HYPERVISOR_VIRT_START,
        arch_x86::HYPERVISOR_VIRT_END,
        arch_x86::MACH2PHYS_VIRT_START,
        arch_x86::MACH2PHYS_VIRT_END,
        arch_x86::MACH2PHYS_NR_ENTRIES,
        arch_x86::VGCF_IN_SYSCALL,
        arch_x86::VGCF_I387_VALID,
        arch_x86::VGCF_IN_KERNEL,
        arch_x86::VGCF_FAILSAFE_DISABLES_EVENTS,
        arch_x86::VGCF_SYSCALL_DISABLES_EVENTS,
        arch_x86::VGCF_ONLINE,
        arch_x86::XEN_X86_EMU_LAPIC,
        arch_x86::XEN_X86_EMU_HPET,
        arch_x86::XEN_X86_EMU_PM,
        arch_x86::XEN_X86_EMU_RTC,
        arch_x86::XEN_X86_EMU_IOAPIC,
        arch_x86::XEN_X86_EMU_PIC,
        arch_x86::XEN_X86_EMU_VGA,
        arch_x86::XEN_X86_EMU_IOMMU,
        arch_x86::XEN_X86_EMU_PIT,
        arch_x86::XEN_X86_EMU_USE_PIRQ,
        arch_x86::XEN_X86_EMU_VPCI,
        arch_x86::XEN_X86_EMU_ALL,
        arch_x86::XEN_X86_MSR_RELAXED,
        arch_x86::XEN_X86_MISC_FLAGS_MAX,
        arch_x86::XEN_CPUID_NO_SUBLEAF,
        // version / features / elfnote / sched / vcpu / callback
        version::XEN_EXTRAVERSION_LEN,
        version::XENFEAT_NR_SUBMAPS,
        elfnote::XEN_ELFNOTE_MAX,
        sched::SHUTDOWN_MAX,
        vcpu::VCPU_SSHOTTMR_FUTURE,
        callback::CALLBACKF_MASK_EVENTS,
        // event channels
        event_channel::EVTCHN_2L_NR_CHANNELS,
        event_channel::EVTCHN_FIFO_PENDING,
        event_channel::EVTCHN_FIFO_MASKED,
        event_channel::EVTCHN_FIFO_LINKED,
        event_channel::EVTCHN_FIFO_BUSY,
        event_channel::EVTCHN_FIFO_LINK_BITS,
        event_channel::EVTCHN_FIFO_LINK_MASK,
        event_channel::EVTCHN_FIFO_NR_CHANNELS,
        event_channel::EVTCHN_FIFO_PRIORITY_MAX,
        event_channel::EVTCHN_FIFO_PRIORITY_DEFAULT,
        event_channel::EVTCHN_FIFO_PRIORITY_MIN,
        event_channel::EVTCHN_FIFO_MAX_QUEUES,
        // grant tables
        grant_table::GTF_INVALID,
        grant_table::GTF_PERMIT_ACCESS,
        grant_table::GTF_ACCEPT_TRANSFER,
        grant_table::GTF_TRANSITIVE,
        grant_table::GTF_TYPE_MASK,
        grant_table::GTF_READONLY,
        grant_table::GTF_READING,
        grant_table::GTF_WRITING,
        grant_table::GTF_PWT,
        grant_table::GTF_PCD,
        grant_table::GTF_PAT,
        grant_table::GTF_SUB_PAGE,
        grant_table::GTF_TRANSFER_COMMITTED,
        grant_table::GTF_TRANSFER_COMPLETED,
        grant_table::GNTMAP_DEVICE_MAP,
        grant_table::GNTMAP_HOST_MAP,
        grant_table::GNTMAP_READONLY,
        grant_table::GNTMAP_APPLICATION_MAP,
        grant_table::GNTMAP_CONTAINS_PTE,
        grant_table::GNTMAP_GUEST_AVAIL_MASK,
        grant_table::GNTCOPY_SOURCE_GREF,
        grant_table::GNTCOPY_DEST_GREF,
        // memory
        memory::XENMEM_SHARING_OP_S_HANDLE_INVALID,
        memory::XENMEM_SHARING_OP_C_HANDLE_INVALID,
        memory::XENMEM_SHARING_OP_FIELD_IS_GREF_FLAG,
        memory::XENMEM_FORK_WITH_IOMMU_ALLOWED,
        memory::XENMEM_FORK_BLOCK_INTERRUPTS,
        memory::XENMEM_FORK_RESET_STATE,
        memory::XENMEM_FORK_RESET_MEMORY,
        memory::XENMEM_RDM_ALL,
        memory::XENMEM_RESOURCE_IOREQ_SERVER_FRAME_BUFIOREQ,
        memory::XENMEM_RESOURCE_GRANT_TABLE_ID_SHARED,
        memory::XENMEM_RESOURCE_GRANT_TABLE_ID_STATUS,
        // physdev
        physdev::PHYSDEVOP_PIRQ_EOI_GMFN,
        physdev::PHYSDEVOP_DBGP_RESET_PREPARE,
        physdev::PHYSDEVOP_DBGP_RESET_DONE,
        physdev::PHYSDEVOP_DBGP_BUS_UNKNOWN,
        physdev::PHYSDEVOP_DBGP_BUS_PCI,
        physdev::XEN_PCI_DEV_EXTFN,
        physdev::XEN_PCI_DEV_VIRTFN,
        physdev::XEN_PCI_DEV_PXM,
        physdev::XEN_PCI_MMCFG_RESERVED,
        // hvm
        hvm::HVMOP_ALTP2M_INTERFACE_VERSION,
        hvm::HVM_PARAM_CALLBACK_IRQ_TYPE_MASK,
        hvm::HVM_PARAM_CALLBACK_TYPE_GSI,
        hvm::HVM_PARAM_CALLBACK_TYPE_PCI_INTX,
        hvm::HVM_PARAM_CALLBACK_TYPE_VECTOR,
        hvm::XEN_HVM_MCA_CAP_LMCE,
        hvm::XEN_HVM_MCA_CAP_MASK,
        hvm::XEN_HVM_DEBUGCONS_IOPORT,
        hvm::XEN_X86_FPU_INITIALISED,
        hvm::XEN_HVM_START_MAGIC_VALUE,
        hvm::IOREQ_READ,
        hvm::IOREQ_WRITE,
        hvm::IOREQ_BUFFER_SLOT_NUM,
        // xenstore
        xs_wire::XS_TYPE_COUNT,
        xs_wire::XS_WATCH_PATH,
        xs_wire::XS_WATCH_TOKEN,
        xs_wire::XENSTORE_RING_SIZE,
        xs_wire::XENSTORE_PAYLOAD_MAX,
        xs_wire::XENSTORE_ABS_PATH_MAX,
        xs_wire::XENSTORE_REL_PATH_MAX,
        xs_wire::XENSTORE_SERVER_FEATURE_RECONNECTION,
        xs_wire::XENSTORE_SERVER_FEATURE_ERROR,
        xs_wire::XENSTORE_CONNECTED,
        xs_wire::XENSTORE_RECONNECT,
        xs_wire::XENSTORE_ERROR_NONE,
        xs_wire::XENSTORE_ERROR_COMM,
        xs_wire::XENSTORE_ERROR_RINGIDX,
        xs_wire::XENSTORE_ERROR_PROTO,
        // blkif / netif
        blkif::BLKIF_MAX_SEGMENTS_PER_REQUEST,
        blkif::BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST,
        blkif::BLKIF_DISCARD_SECURE,
        netif::NETTXF_CSUM_BLANK,
        netif::NETTXF_DATA_VALIDATED,
        netif::NETTXF_MORE_DATA,
        netif::NETTXF_EXTRA_INFO,
        netif::NETRXF_DATA_VALIDATED,
        netif::NETRXF_CSUM_BLANK,
        netif::NETRXF_MORE_DATA,
        netif::NETRXF_EXTRA_INFO,
        netif::NETRXF_GSO_PREFIX,
        netif::XEN_NETIF_EXTRA_FLAG_MORE,
        netif::XEN_NETIF_NR_SLOTS_MIN,
        netif::XEN_NETIF_MAX_TX_SIZE,
        netif::XEN_NETIF_EXTRA_TYPE_MAX,
        netif::XEN_NETIF_CTRL_HASH_ALGORITHM_NONE,
        netif::XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ,
        netif::XEN_NETIF_CTRL_HASH_TYPE_IPV4,
        netif::XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP,
        netif::XEN_NETIF_CTRL_HASH_TYPE_IPV6,
        netif::XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP,
        netif::XEN_NETIF_CTRLF_GREF_READONLY,
        // domctl
        domctl::XEN_DOMCTL_INTERFACE_VERSION,
        domctl::XEN_DOMCTL_CDF_HVM,
        domctl::XEN_DOMCTL_CDF_HAP,
        domctl::XEN_DOMCTL_CDF_S3_INTEGRITY,
        domctl::XEN_DOMCTL_CDF_OOS_OFF,
        domctl::XEN_DOMCTL_CDF_XS_DOMAIN,
        domctl::XEN_DOMCTL_CDF_IOMMU,
        domctl::XEN_DOMCTL_CDF_NESTED_VIRT,
        domctl::XEN_DOMCTL_CDF_VPMU,
        domctl::XEN_DOMCTL_CDF_MAX,
        domctl::XEN_DOMCTL_IOMMU_NO_SHAREPT,
        domctl::XEN_DOMCTL_IOMMU_MAX,
        domctl::XEN_DOMCTL_GRANT_VERSION_MASK,
        domctl::XEN_DOMINF_DYING,
        domctl::XEN_DOMINF_HVM_GUEST,
        domctl::XEN_DOMINF_SHUTDOWN,
        domctl::XEN_DOMINF_PAUSED,
        domctl::XEN_DOMINF_BLOCKED,
        domctl::XEN_DOMINF_RUNNING,
        domctl::XEN_DOMINF_DEBUGGED,
        domctl::XEN_DOMINF_XS_DOMAIN,
        domctl::XEN_DOMINF_HAP,
        domctl::XEN_DOMINF_SHUTDOWNSHIFT,
        domctl::XEN_DOMINF_SHUTDOWNMASK,
        domctl::XEN_DOMCTL_PFINFO_LTAB_SHIFT,
        domctl::XEN_DOMCTL_PFINFO_NOTAB,
        domctl::XEN_DOMCTL_PFINFO_L1TAB,
        domctl::XEN_DOMCTL_PFINFO_L2TAB,
        domctl::XEN_DOMCTL_PFINFO_L3TAB,
        domctl::XEN_DOMCTL_PFINFO_L4TAB,
        domctl::XEN_DOMCTL_PFINFO_LTABTYPE_MASK,
        domctl::XEN_DOMCTL_PFINFO_LPINTAB,
        domctl::XEN_DOMCTL_PFINFO_XTAB,
        domctl::XEN_DOMCTL_PFINFO_XALLOC,
        domctl::XEN_DOMCTL_PFINFO_BROKEN,
        domctl::XEN_DOMCTL_PFINFO_LTAB_MASK,
        domctl::XEN_DOMCTL_SHADOW_ENABLE_REFCOUNT,
        domctl::XEN_DOMCTL_SHADOW_ENABLE_LOG_DIRTY,
        domctl::XEN_DOMCTL_SHADOW_ENABLE_TRANSLATE,
        domctl::XEN_DOMCTL_SHADOW_ENABLE_EXTERNAL,
        domctl::XEN_DOMCTL_SHADOW_LOGDIRTY_FINAL,
        domctl::XEN_VCPUAFFINITY_HARD,
        domctl::XEN_VCPUAFFINITY_SOFT,
        domctl::XEN_VCPUAFFINITY_FORCE,
        domctl::XEN_DOMCTL_SCHEDRT_EXTRA,
        domctl::XEN_DOMCTL_DEV_PCI,
        domctl::XEN_DOMCTL_DEV_DT,
        domctl::XEN_DOMCTL_DEV_RDM_RELAXED,
        domctl::XEN_DOMCTL_VMSI_X86_DEST_ID_MASK,
        domctl::XEN_DOMCTL_VMSI_X86_RH_MASK,
        domctl::XEN_DOMCTL_VMSI_X86_DM_MASK,
        domctl::XEN_DOMCTL_VMSI_X86_DELIV_MASK,
        domctl::XEN_DOMCTL_VMSI_X86_TRIG_MASK,
        domctl::XEN_DOMCTL_VMSI_X86_UNMASKED,
        domctl::XEN_CPUID_INPUT_UNUSED,
        domctl::XEN_DOMCTL_DEBUG_OP_SINGLE_STEP_OFF,
        domctl::XEN_DOMCTL_DEBUG_OP_SINGLE_STEP_ON,
        domctl::XEN_VM_EVENT_ENABLE,
        domctl::XEN_VM_EVENT_DISABLE,
        domctl::XEN_VM_EVENT_RESUME,
        domctl::XEN_VM_EVENT_GET_VERSION,
        domctl::XEN_DOMCTL_VM_EVENT_OP_PAGING,
        domctl::XEN_DOMCTL_VM_EVENT_OP_MONITOR,
        domctl::XEN_DOMCTL_VM_EVENT_OP_SHARING,
        domctl::XEN_DOMCTL_MEM_SHARING_CONTROL,
        domctl::XEN_DOMCTL_PSR_CMT_OP_DETACH,
        domctl::XEN_DOMCTL_PSR_CMT_OP_ATTACH,
        domctl::XEN_DOMCTL_PSR_CMT_OP_QUERY_RMID,
        domctl::XEN_DOMCTL_VUART_OP_INIT,
        domctl::XEN_DOMCTL_VUART_TYPE_VPL011,
        domctl::XEN_DOMCTL_MEM_CACHEATTR_UC,
        domctl::XEN_DOMCTL_MEM_CACHEATTR_WC,
        domctl::XEN_DOMCTL_MEM_CACHEATTR_WT,
        domctl::XEN_DOMCTL_MEM_CACHEATTR_WP,
        domctl::XEN_DOMCTL_MEM_CACHEATTR_WB,
        domctl::XEN_DOMCTL_MEM_CACHEATTR_UCM,
        domctl::XEN_DOMCTL_DELETE_MEM_CACHEATTR,
        // sysctl
        sysctl::XEN_SYSCTL_INTERFACE_VERSION,
        sysctl::XEN_SYSCTL_PHYSCAP_HVM,
        sysctl::XEN_SYSCTL_PHYSCAP_PV,
        sysctl::XEN_SYSCTL_PHYSCAP_DIRECTIO,
        sysctl::XEN_SYSCTL_PHYSCAP_HAP,
        sysctl::XEN_SYSCTL_PHYSCAP_SHADOW,
        sysctl::XEN_SYSCTL_PHYSCAP_IOMMU_HAP_PT_SHARE,
        sysctl::XEN_SYSCTL_PHYSCAP_VMTRACE,
        sysctl::XEN_SYSCTL_PHYSCAP_VPMU,
        sysctl::XEN_SYSCTL_PHYSCAP_GNTTAB_V1,
        sysctl::XEN_SYSCTL_PHYSCAP_GNTTAB_V2,
        sysctl::XEN_SYSCTL_PHYSCAP_MAX,
        sysctl::XEN_SYSCTL_PERFCOP_RESET,
        sysctl::XEN_SYSCTL_PERFCOP_QUERY,
        sysctl::XEN_SYSCTL_CPU_HOTPLUG_ONLINE,
        sysctl::XEN_SYSCTL_CPU_HOTPLUG_OFFLINE,
        sysctl::XEN_SYSCTL_CPU_HOTPLUG_SMT_ENABLE,
        sysctl::XEN_SYSCTL_CPU_HOTPLUG_SMT_DISABLE,
        sysctl::XEN_SYSCTL_PM_OP_SET_SCHED_OPT_SMT,
        sysctl::XEN_SYSCTL_PM_OP_GET_MAX_CSTATE,
        sysctl::XEN_SYSCTL_PM_OP_SET_MAX_CSTATE,
        sysctl::XEN_SYSCTL_PM_OP_SET_VCPU_MIGRATION_DELAY,
        sysctl::XEN_SYSCTL_PM_OP_GET_VCPU_MIGRATION_DELAY,
        sysctl::XEN_SYSCTL_PM_OP_ENABLE_TURBO,
        sysctl::XEN_SYSCTL_PM_OP_DISABLE_TURBO,
        sysctl::XEN_SYSCTL_CX_UNLIMITED,
        sysctl::XEN_SYSCTL_LOCKPROF_RESET,
        sysctl::XEN_SYSCTL_LOCKPROF_QUERY,
        sysctl::XEN_SYSCTL_CPUPOOL_PAR_ANY,
        sysctl::XEN_SYSCTL_CSCHED_TSLICE_MAX,
        sysctl::XEN_SYSCTL_CSCHED_TSLICE_MIN,
        sysctl::XEN_SYSCTL_CSCHED_MGR_DLY_MAX_US,
        sysctl::XEN_SYSCTL_SCHED_RATELIMIT_MAX,
        sysctl::XEN_SYSCTL_SCHED_RATELIMIT_MIN,
        sysctl::XEN_SYSCTL_SCHEDOP_PUTINFO,
        sysctl::XEN_SYSCTL_SCHEDOP_GETINFO,
        sysctl::XEN_SYSCTL_COVERAGE_GET_SIZE,
        sysctl::XEN_SYSCTL_COVERAGE_READ,
        sysctl::XEN_SYSCTL_COVERAGE_RESET,
        sysctl::XEN_SYSCTL_PSR_CMT_GET_TOTAL_RMID,
        sysctl::XEN_SYSCTL_PSR_CMT_GET_L3_UPSCALING_FACTOR,
        sysctl::XEN_SYSCTL_PSR_CMT_GET_L3_CACHE_SIZE,
        sysctl::XEN_SYSCTL_PSR_CMT_ENABLED,
        sysctl::XEN_SYSCTL_PSR_CMT_GET_L3_EVENT_MASK,
        sysctl::XEN_SYSCTL_PSR_GET_L3_INFO,
        sysctl::XEN_SYSCTL_PSR_GET_L2_INFO,
        sysctl::XEN_SYSCTL_PSR_GET_MBA_INFO,
        sysctl::XEN_SYSCTL_PSR_CAT_L3_CDP,
        sysctl::XEN_SYSCTL_PSR_MBA_LINEAR,
        sysctl::XEN_SYSCTL_CPU_LEVELCAP_FAULTING,
        sysctl::XEN_SYSCTL_CPU_LEVELCAP_ECX,
        sysctl::XEN_SYSCTL_CPU_LEVELCAP_EDX,
        sysctl::XEN_SYSCTL_CPU_LEVELCAP_EXTD_ECX,
        sysctl::XEN_SYSCTL_CPU_LEVELCAP_EXTD_EDX,
        sysctl::XEN_SYSCTL_CPU_LEVELCAP_XSAVE_EAX,
        sysctl::XEN_SYSCTL_CPU_LEVELCAP_THERMAL_ECX,
        sysctl::XEN_SYSCTL_CPU_LEVELCAP_L7S0_EAX,
        sysctl::XEN_SYSCTL_CPU_LEVELCAP_L7S0_EBX,
        sysctl::XEN_SYSCTL_LIVEPATCH_UPLOAD,
        sysctl::XEN_SYSCTL_LIVEPATCH_GET,
        sysctl::XEN_SYSCTL_LIVEPATCH_LIST,
        sysctl::XEN_SYSCTL_LIVEPATCH_ACTION,
    ));
    // Names that are not a plain upper-casing of the Rust name.
    defs.extend([
        (
            "__HYPERVISOR_VIRT_START".into(),
            arch_x86::HYPERVISOR_VIRT_START as i128,
        ),
        (
            "__HYPERVISOR_VIRT_END".into(),
            arch_x86::HYPERVISOR_VIRT_END as i128,
        ),
        (
            "__MACH2PHYS_VIRT_START".into(),
            arch_x86::MACH2PHYS_VIRT_START as i128,
        ),
        (
            "__MACH2PHYS_VIRT_END".into(),
            arch_x86::MACH2PHYS_VIRT_END as i128,
        ),
        (
            "__XEN_LATEST_INTERFACE_VERSION__".into(),
            version::XEN_LATEST_INTERFACE_VERSION as i128,
        ),
        (
            "XEN_PAGE_SHIFT".into(),
            hypercall_abi::XEN_PAGE_SHIFT as i128,
        ),
        (
            "XS_DEBUG".into(),
            xs_wire::XsdSockmsgType::DEBUG.raw() as i128,
        ),
    ]);
    defs
}

/// Table constants the crate deliberately does not define, with the reason.
const NOT_DEFINED: &[(&str, &str)] = &[];

fn same_value(ours: i128, table: i128) -> bool {
    ours == table || (table < 0 && ours == table + (1i128 << 64))
}

#[test]
fn constants_match_table() {
    let defs = definitions();
    let mut by_name: BTreeMap<String, Vec<(String, i128)>> = BTreeMap::new();
    for (n, v) in &defs {
        by_name
            .entry(n.to_uppercase())
            .or_default()
            .push((n.clone(), *v));
    }
    let mut errors = Vec::new();
    let mut missing = Vec::new();
    let mut matched = 0usize;
    for (name, value) in common::constants() {
        let excused = NOT_DEFINED.iter().any(|(n, _)| *n == name);
        match by_name.get(&name.to_uppercase()) {
            None if excused => {}
            None => missing.push(name),
            Some(ours) => {
                assert!(!excused, "{name} is both defined and excused");
                matched += 1;
                for (rust_name, v) in ours {
                    if !same_value(*v, value) {
                        errors.push(format!("{name}: table {value}, ours ({rust_name}) {v}"));
                    }
                }
            }
        }
    }
    assert!(
        errors.is_empty(),
        "value mismatches:\n  {}",
        errors.join("\n  ")
    );
    assert!(
        missing.is_empty(),
        "table constants not defined by the crate: {missing:?}"
    );
    assert_eq!(
        matched + NOT_DEFINED.len(),
        common::constants().len(),
        "every table constant must be matched or excused"
    );
}

#[test]
fn no_conflicting_definitions() {
    // Two definitions whose names differ only in case must agree.
    let mut seen: BTreeMap<String, (String, i128)> = BTreeMap::new();
    for (n, v) in definitions() {
        if let Some((other, ov)) = seen.get(&n.to_uppercase()) {
            assert!(
                same_value(*ov, v) || same_value(v, *ov),
                "{n}={v} vs {other}={ov}"
            );
        } else {
            seen.insert(n.to_uppercase(), (n, v));
        }
    }
}

#[test]
fn enums_round_trip_and_have_unique_values() {
    macro_rules! check {
        ($($e:ty),* $(,)?) => {$(
            let mut values = BTreeSet::new();
            for x in <$e>::ALL {
                assert_eq!(<$e>::from_raw(x.raw() as _), Some(*x), "{}", x.name());
                assert!(values.insert(x.raw()), "duplicate value in {}", stringify!($e));
            }
        )*};
    }
    check!(
        hypercall::Hypercall,
        errno::Errno,
        xen::ConsoleIoOp,
        xen::Virq,
        xen::MmuUpdateCmd,
        xen::MmuextCmd,
        version::XenVersionOp,
        version::XenFeature,
        sched::SchedOp,
        sched::ShutdownReason,
        vcpu::VcpuOp,
        callback::CallbackType,
        elfnote::ElfNote,
        event_channel::EvtchnOp,
        event_channel::EvtchnStat,
        grant_table::GnttabOp,
        grant_table::GntStatus,
        memory::MemoryOp,
        physdev::PhysdevOp,
        hvm::HvmOp,
        hvm::HvmParam,
        domctl::DomctlCmd,
        sysctl::SysctlCmd,
        xenbus::XenbusState,
        xs_wire::XsdSockmsgType,
        blkif::BlkifOp,
        blkif::BlkifRsp,
        netif::NetifRsp,
    );
}

#[test]
fn hypercall_api() {
    use hypercall::Hypercall;
    assert_eq!(Hypercall::from_raw(18), Some(Hypercall::ConsoleIo));
    assert_eq!(Hypercall::ConsoleIo.name(), "console_io");
    assert_eq!(Hypercall::from_raw(11), None);
    assert_eq!(Hypercall::from_raw(u64::MAX), None);
    assert_eq!(Hypercall::from_raw(1 << 32 | 18), None);
    assert_eq!(Hypercall::SetTrapTable as u32, 0);
    assert_eq!(Hypercall::MmuUpdate as u32, 1);
    assert_eq!(Hypercall::XenVersion as u32, 17);
    assert_eq!(Hypercall::VcpuOp as u32, 24);
    assert_eq!(Hypercall::SchedOp as u32, 29);
    assert_eq!(Hypercall::EventChannelOp as u32, 32);
    for h in Hypercall::ALL {
        assert!((*h as usize) < hypercall::NR_HYPERCALLS);
    }
}

#[test]
fn hypercall_page_bytes() {
    use hypercall::*;
    let slot = hypercall_slot(Hypercall::ConsoleIo as u32);
    assert_eq!(
        slot[..14],
        [0x51, 0x41, 0x53, 0xb8, 18, 0, 0, 0, 0x0f, 0x05, 0x41, 0x5b, 0x59, 0xc3]
    );
    assert!(slot[14..].iter().all(|&b| b == OPCODE_INT3));
    let iret = hypercall_slot(Hypercall::Iret as u32);
    assert_eq!(
        iret[..11],
        [0x51, 0x41, 0x53, 0x50, 0xb8, 23, 0, 0, 0, 0x0f, 0x05]
    );
    assert!(iret[11..].iter().all(|&b| b == OPCODE_INT3));
    let mut page = [0u8; HYPERCALL_PAGE_SIZE];
    fill_hypercall_page(&mut page);
    let off = Hypercall::SchedOp as usize * HYPERCALL_SLOT_SIZE;
    assert_eq!(page[off..off + HYPERCALL_SLOT_SIZE], hypercall_slot(29));
    assert_eq!(HYPERCALL_PAGE_SLOTS, 128);
}

#[test]
fn errno_api() {
    use errno::Errno;
    assert_eq!(Errno::EPERM as i32, 1);
    assert_eq!(Errno::ENOENT as i32, 2);
    assert_eq!(Errno::ESRCH as i32, 3);
    assert_eq!(Errno::E2BIG as i32, 7);
    assert_eq!(Errno::EAGAIN as i32, 11);
    assert_eq!(Errno::ENOMEM as i32, 12);
    assert_eq!(Errno::EACCES as i32, 13);
    assert_eq!(Errno::EFAULT as i32, 14);
    assert_eq!(Errno::EBUSY as i32, 16);
    assert_eq!(Errno::EEXIST as i32, 17);
    assert_eq!(Errno::EINVAL as i32, 22);
    assert_eq!(Errno::ENOSPC as i32, 28);
    assert_eq!(Errno::ERANGE as i32, 34);
    assert_eq!(Errno::ENOSYS as i32, 38);
    assert_eq!(Errno::EOPNOTSUPP as i32, 95);
    assert_eq!(Errno::ENOSYS.to_ret(), -38);
    assert_eq!(Errno::from_ret(-38), Some(Errno::ENOSYS));
    assert_eq!(Errno::from_ret(38), None);
    assert_eq!(Errno::from_ret(0), None);
    assert_eq!(Errno::from_ret(-4), None); // EINTR is Xen-internal
    assert_eq!(Errno::from_ret(i64::MIN), None);
    assert_eq!(errno::decode_ret(5), Ok(5));
    assert_eq!(errno::decode_ret(-22), Err(Some(Errno::EINVAL)));
    for e in Errno::ALL {
        assert_eq!(Errno::from_ret(e.to_ret()), Some(*e));
    }
}

#[test]
fn version_identity() {
    assert_eq!(version::XEN_VERSION, 0x0004_0011);
    assert_eq!(version::XEN_VERSION_MAJOR, 4);
    assert_eq!(version::XEN_VERSION_MINOR, 17);
    assert!(version::XEN_EXTRAVERSION.len() < version::XEN_EXTRAVERSION_LEN);
    assert!(version::XEN_CAPABILITIES.starts_with("xen-3.0-x86_64"));
    let ev: [u8; version::XEN_EXTRAVERSION_LEN] = version::c_string(version::XEN_EXTRAVERSION);
    assert_eq!(
        version::c_str_bytes(&ev),
        version::XEN_EXTRAVERSION.as_bytes()
    );
    let tiny: [u8; 4] = version::c_string("abcdef");
    assert_eq!(tiny, *b"abc\0");
    assert_eq!(arch_x86::XEN_CPUID_SIGNATURE, b"XenVMMXenVMM");
    let sig = [
        arch_x86::XEN_CPUID_SIGNATURE_EBX.to_le_bytes(),
        arch_x86::XEN_CPUID_SIGNATURE_ECX.to_le_bytes(),
        arch_x86::XEN_CPUID_SIGNATURE_EDX.to_le_bytes(),
    ]
    .concat();
    assert_eq!(sig, arch_x86::XEN_CPUID_SIGNATURE);
    assert_eq!(arch_x86::FLAT_KERNEL_CS64_RPL0, 0xe030);
    assert_eq!(console::XENCONS_IN_SIZE, 1024);
    assert_eq!(ring::SRING_HEADER_SIZE, 64);
    assert_eq!(version::XenFeature::Dom0.submap_bit(), 1 << 11);
}
