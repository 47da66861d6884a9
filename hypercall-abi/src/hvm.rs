//! HVM/PVH interfaces (`public/hvm/hvm_op.h`, `params.h`, `start_info.h`,
//! `ioreq.h`, `save.h` excerpts): `__HYPERVISOR_hvm_op` sub-ops, HVM params,
//! the PVH boot structure `hvm_start_info`, and device-model I/O requests.

use crate::DomId;

// ---------------------------------------------------------------------------
// hvm_op
// ---------------------------------------------------------------------------

abi_enum! {
    /// `__HYPERVISOR_hvm_op` commands (`HVMOP_*`); call is `hvm_op(op, arg)`.
    pub enum HvmOp: u32, raw u64 {
        /// Set an HVM param; `arg` is a [`XenHvmParam`].
        SetParam = 0 => "HVMOP_set_param",
        /// Get an HVM param; `arg` is a [`XenHvmParam`].
        GetParam = 1 => "HVMOP_get_param",
        /// Flush all guest TLBs.
        FlushTlbs = 5 => "HVMOP_flush_tlbs",
        /// Notify that a page table is being torn down.
        PagetableDying = 9 => "HVMOP_pagetable_dying",
        /// Get the current system time.
        GetTime = 10 => "HVMOP_get_time",
        /// Emit a trace record (tools).
        Xentrace = 11 => "HVMOP_xentrace",
        /// Set memory access permissions (tools, legacy).
        SetMemAccess = 12 => "HVMOP_set_mem_access",
        /// Get memory access permissions (tools, legacy).
        GetMemAccess = 13 => "HVMOP_get_mem_access",
        /// Get the p2m type of a gfn.
        GetMemType = 15 => "HVMOP_get_mem_type",
        /// Set a per-vCPU event upcall vector.
        SetEvtchnUpcallVector = 23 => "HVMOP_set_evtchn_upcall_vector",
        /// Send a guest-request vm_event.
        GuestRequestVmEvent = 24 => "HVMOP_guest_request_vm_event",
        /// Alternate p2m operations ([`Altp2mOp`]).
        Altp2m = 25 => "HVMOP_altp2m",
    }
}

/// Interface version expected in `xen_hvm_altp2m_op.version`.
pub const HVMOP_ALTP2M_INTERFACE_VERSION: u32 = 1;

abi_enum! {
    /// `HVMOP_altp2m` sub-commands (`HVMOP_altp2m_*`).
    pub enum Altp2mOp: u32, raw u64 {
        /// Get altp2m enabled state of the domain.
        GetDomainState = 1 => "HVMOP_altp2m_get_domain_state",
        /// Set altp2m enabled state of the domain.
        SetDomainState = 2 => "HVMOP_altp2m_set_domain_state",
        /// Enable #VE notification for a vCPU.
        VcpuEnableNotify = 3 => "HVMOP_altp2m_vcpu_enable_notify",
        /// Create a new altp2m view.
        CreateP2m = 4 => "HVMOP_altp2m_create_p2m",
        /// Destroy an altp2m view.
        DestroyP2m = 5 => "HVMOP_altp2m_destroy_p2m",
        /// Switch all vCPUs to a view.
        SwitchP2m = 6 => "HVMOP_altp2m_switch_p2m",
        /// Set access of a page in a view.
        SetMemAccess = 7 => "HVMOP_altp2m_set_mem_access",
        /// Change a gfn mapping in a view.
        ChangeGfn = 8 => "HVMOP_altp2m_change_gfn",
        /// Set access of many pages.
        SetMemAccessMulti = 9 => "HVMOP_altp2m_set_mem_access_multi",
        /// Set the suppress-#VE bit of a page.
        SetSuppressVe = 10 => "HVMOP_altp2m_set_suppress_ve",
        /// Get the suppress-#VE bit of a page.
        GetSuppressVe = 11 => "HVMOP_altp2m_get_suppress_ve",
        /// Get access of a page in a view.
        GetMemAccess = 12 => "HVMOP_altp2m_get_mem_access",
        /// Disable #VE notification for a vCPU.
        VcpuDisableNotify = 13 => "HVMOP_altp2m_vcpu_disable_notify",
        /// Get the current view index of a vCPU.
        GetP2mIdx = 14 => "HVMOP_altp2m_get_p2m_idx",
        /// Set the suppress-#VE bit of a range.
        SetSuppressVeMulti = 15 => "HVMOP_altp2m_set_suppress_ve_multi",
        /// Set the visibility of a view.
        SetVisibility = 16 => "HVMOP_altp2m_set_visibility",
    }
}

// ---------------------------------------------------------------------------
// HVM params
// ---------------------------------------------------------------------------

abi_enum! {
    /// HVM parameter indices (`HVM_PARAM_*`), read/written with
    /// `HVMOP_get_param`/`HVMOP_set_param`. PVH guests read e.g. the xenstore
    /// and console pages and event channels through these.
    pub enum HvmParam: u32, raw u64 {
        /// Event delivery method: type in bits 56..64 (`HVM_PARAM_CALLBACK_TYPE_*`).
        CallbackIrq = 0 => "HVM_PARAM_CALLBACK_IRQ",
        /// GFN of the xenstore ring page.
        StorePfn = 1 => "HVM_PARAM_STORE_PFN",
        /// Event channel of xenstore.
        StoreEvtchn = 2 => "HVM_PARAM_STORE_EVTCHN",
        /// PAE enabled.
        PaeEnabled = 4 => "HVM_PARAM_PAE_ENABLED",
        /// GFN of the synchronous ioreq page.
        IoreqPfn = 5 => "HVM_PARAM_IOREQ_PFN",
        /// GFN of the buffered ioreq page.
        BufioreqPfn = 6 => "HVM_PARAM_BUFIOREQ_PFN",
        /// Viridian (Hyper-V) enlightenment mask.
        Viridian = 9 => "HVM_PARAM_VIRIDIAN",
        /// Virtual timer mode.
        TimerMode = 10 => "HVM_PARAM_TIMER_MODE",
        /// HPET enabled.
        HpetEnabled = 11 => "HVM_PARAM_HPET_ENABLED",
        /// Identity page table for unpaged real mode.
        IdentPt = 12 => "HVM_PARAM_IDENT_PT",
        /// Device-model domain.
        DmDomain = 13 => "HVM_PARAM_DM_DOMAIN",
        /// ACPI S-state.
        AcpiSState = 14 => "HVM_PARAM_ACPI_S_STATE",
        /// VM86 TSS address.
        Vm86Tss = 15 => "HVM_PARAM_VM86_TSS",
        /// Virtual platform timer alignment.
        VptAlign = 16 => "HVM_PARAM_VPT_ALIGN",
        /// GFN of the PV console ring.
        ConsolePfn = 17 => "HVM_PARAM_CONSOLE_PFN",
        /// Event channel of the PV console.
        ConsoleEvtchn = 18 => "HVM_PARAM_CONSOLE_EVTCHN",
        /// ACPI PM I/O port layout.
        AcpiIoportsLocation = 19 => "HVM_PARAM_ACPI_IOPORTS_LOCATION",
        /// Deprecated memory event (CR0).
        MemoryEventCr0 = 20 => "HVM_PARAM_MEMORY_EVENT_CR0",
        /// Deprecated memory event (CR3).
        MemoryEventCr3 = 21 => "HVM_PARAM_MEMORY_EVENT_CR3",
        /// Deprecated memory event (CR4).
        MemoryEventCr4 = 22 => "HVM_PARAM_MEMORY_EVENT_CR4",
        /// Deprecated memory event (INT3).
        MemoryEventInt3 = 23 => "HVM_PARAM_MEMORY_EVENT_INT3",
        /// Nested HVM enabled.
        Nestedhvm = 24 => "HVM_PARAM_NESTEDHVM",
        /// Deprecated memory event (single step).
        MemoryEventSingleStep = 25 => "HVM_PARAM_MEMORY_EVENT_SINGLE_STEP",
        /// Event channel of the buffered ioreq page.
        BufioreqEvtchn = 26 => "HVM_PARAM_BUFIOREQ_EVTCHN",
        /// GFN of the paging ring.
        PagingRingPfn = 27 => "HVM_PARAM_PAGING_RING_PFN",
        /// GFN of the monitor ring.
        MonitorRingPfn = 28 => "HVM_PARAM_MONITOR_RING_PFN",
        /// GFN of the sharing ring.
        SharingRingPfn = 29 => "HVM_PARAM_SHARING_RING_PFN",
        /// Deprecated memory event (MSR).
        MemoryEventMsr = 30 => "HVM_PARAM_MEMORY_EVENT_MSR",
        /// Action on triple fault.
        TripleFaultReason = 31 => "HVM_PARAM_TRIPLE_FAULT_REASON",
        /// First GFN of ioreq server pages.
        IoreqServerPfn = 32 => "HVM_PARAM_IOREQ_SERVER_PFN",
        /// Number of ioreq server pages.
        NrIoreqServerPages = 33 => "HVM_PARAM_NR_IOREQ_SERVER_PAGES",
        /// VM generation id address.
        VmGenerationIdAddr = 34 => "HVM_PARAM_VM_GENERATION_ID_ADDR",
        /// altp2m mode.
        Altp2m = 35 => "HVM_PARAM_ALTP2M",
        /// x87 FIP width.
        X87FipWidth = 36 => "HVM_PARAM_X87_FIP_WIDTH",
        /// VM86 TSS address and size.
        Vm86TssSized = 37 => "HVM_PARAM_VM86_TSS_SIZED",
        /// MCA capabilities (`XEN_HVM_MCA_CAP_*`).
        McaCap = 38 => "HVM_PARAM_MCA_CAP",
    }
}

/// Number of HVM params (`HVM_NR_PARAMS`).
pub const HVM_NR_PARAMS: u32 = 39;

/// Bit position of the callback type in `HVM_PARAM_CALLBACK_IRQ`.
pub const HVM_PARAM_CALLBACK_IRQ_TYPE_SHIFT: u32 = 56;
/// Mask of the callback type in `HVM_PARAM_CALLBACK_IRQ`.
pub const HVM_PARAM_CALLBACK_IRQ_TYPE_MASK: u64 = 0xff << HVM_PARAM_CALLBACK_IRQ_TYPE_SHIFT;
/// Callback type: low bits are a GSI.
pub const HVM_PARAM_CALLBACK_TYPE_GSI: u64 = 0;
/// Callback type: low bits are PCI domain/bus/devfn/INTx.
pub const HVM_PARAM_CALLBACK_TYPE_PCI_INTX: u64 = 1;
/// Callback type: low 8 bits are an IDT vector.
pub const HVM_PARAM_CALLBACK_TYPE_VECTOR: u64 = 2;

/// `HVM_PARAM_MCA_CAP`: LMCE supported.
pub const XEN_HVM_MCA_CAP_LMCE: u64 = 1 << 0;
/// Mask of the defined `HVM_PARAM_MCA_CAP` bits.
pub const XEN_HVM_MCA_CAP_MASK: u64 = XEN_HVM_MCA_CAP_LMCE;

/// I/O port of the HVM debug console (port 0xe9 hack).
pub const XEN_HVM_DEBUGCONS_IOPORT: u16 = 0xe9;

/// `hvm_hw_cpu.flags` (save record): FPU state has been initialised.
pub const XEN_X86_FPU_INITIALISED: u32 = 1 << 0;

abi_struct! {
    /// Argument of `HVMOP_set_param` / `HVMOP_get_param` (`struct xen_hvm_param`).
    pub struct XenHvmParam {
        /// Target domain ([`crate::xen::DOMID_SELF`] allowed).
        pub domid: DomId,
        /// Padding; zero.
        pub pad: u16,
        /// An [`HvmParam`] index.
        pub index: u32,
        /// Value (input for set, output for get).
        pub value: u64,
    }
}

// ---------------------------------------------------------------------------
// PVH start info
// ---------------------------------------------------------------------------

/// `hvm_start_info.magic` ("xEn3" with the high bit of 'n' set).
pub const XEN_HVM_START_MAGIC_VALUE: u32 = 0x336e_c578;
/// `hvm_start_info.version` that has the memory map fields.
pub const XEN_HVM_START_INFO_VERSION: u32 = 1;

abi_struct! {
    /// PVH boot information (`struct hvm_start_info`), written by the domain
    /// builder into guest memory; `ebx` holds its physical address at the
    /// `XEN_ELFNOTE_PHYS32_ENTRY` entry point. All addresses are physical.
    pub struct HvmStartInfo {
        /// [`XEN_HVM_START_MAGIC_VALUE`].
        pub magic: u32,
        /// Structure version (0, or 1 with the memmap fields).
        pub version: u32,
        /// `SIF_*` flags.
        pub flags: u32,
        /// Number of [`HvmModlistEntry`] at `modlist_paddr`.
        pub nr_modules: u32,
        /// Physical address of the module list.
        pub modlist_paddr: u64,
        /// Physical address of the NUL-terminated command line.
        pub cmdline_paddr: u64,
        /// Physical address of the ACPI RSDP.
        pub rsdp_paddr: u64,
        /// Physical address of the [`HvmMemmapTableEntry`] array (version >= 1).
        pub memmap_paddr: u64,
        /// Number of memory map entries (version >= 1).
        pub memmap_entries: u32,
        /// Reserved; zero.
        pub reserved: u32,
    }
}

abi_struct! {
    /// One boot module of a PVH guest (`struct hvm_modlist_entry`).
    pub struct HvmModlistEntry {
        /// Physical address of the module.
        pub paddr: u64,
        /// Size in bytes.
        pub size: u64,
        /// Physical address of its NUL-terminated command line (0 = none).
        pub cmdline_paddr: u64,
        /// Reserved; zero.
        pub reserved: u64,
    }
}

abi_struct! {
    /// One E820-style memory map entry (`struct hvm_memmap_table_entry`).
    pub struct HvmMemmapTableEntry {
        /// Base physical address.
        pub addr: u64,
        /// Length in bytes.
        pub size: u64,
        /// An [`HvmMemmapType`].
        pub r#type: u32,
        /// Reserved; zero.
        pub reserved: u32,
    }
}

abi_enum! {
    /// Memory map entry types (`XEN_HVM_MEMMAP_TYPE_*`, E820 numbering).
    pub enum HvmMemmapType: u32, raw u64 {
        /// Usable RAM.
        Ram = 1 => "XEN_HVM_MEMMAP_TYPE_RAM",
        /// Reserved.
        Reserved = 2 => "XEN_HVM_MEMMAP_TYPE_RESERVED",
        /// ACPI reclaimable.
        Acpi = 3 => "XEN_HVM_MEMMAP_TYPE_ACPI",
        /// ACPI NVS.
        Nvs = 4 => "XEN_HVM_MEMMAP_TYPE_NVS",
        /// Unusable.
        Unusable = 5 => "XEN_HVM_MEMMAP_TYPE_UNUSABLE",
        /// Disabled.
        Disabled = 6 => "XEN_HVM_MEMMAP_TYPE_DISABLED",
        /// Persistent memory.
        Pmem = 7 => "XEN_HVM_MEMMAP_TYPE_PMEM",
    }
}

// ---------------------------------------------------------------------------
// ioreq
// ---------------------------------------------------------------------------

/// `ioreq.dir`: device model writes data to the guest (guest read).
pub const IOREQ_READ: u8 = 1;
/// `ioreq.dir`: guest write.
pub const IOREQ_WRITE: u8 = 0;

abi_enum! {
    /// `ioreq.state` values (`STATE_*`).
    pub enum IoreqState: u8, raw u64 {
        /// Slot free.
        IoreqNone = 0 => "STATE_IOREQ_NONE",
        /// Request written by Xen, ready for the device model.
        IoreqReady = 1 => "STATE_IOREQ_READY",
        /// Device model is processing it.
        IoreqInprocess = 2 => "STATE_IOREQ_INPROCESS",
        /// Response written by the device model.
        IorespReady = 3 => "STATE_IORESP_READY",
    }
}

abi_enum! {
    /// `ioreq.type` values (`IOREQ_TYPE_*`).
    pub enum IoreqType: u8, raw u64 {
        /// Port I/O.
        Pio = 0 => "IOREQ_TYPE_PIO",
        /// MMIO ("copy").
        Copy = 1 => "IOREQ_TYPE_COPY",
        /// PCI config space access.
        PciConfig = 2 => "IOREQ_TYPE_PCI_CONFIG",
        /// Guest changed its RTC time offset.
        Timeoffset = 7 => "IOREQ_TYPE_TIMEOFFSET",
        /// Invalidate the device model's mapcache.
        Invalidate = 8 => "IOREQ_TYPE_INVALIDATE",
    }
}

/// Number of slots in the buffered ioreq page (`IOREQ_BUFFER_SLOT_NUM`).
pub const IOREQ_BUFFER_SLOT_NUM: u32 = 511;

/// Bits of [`Ioreq::bits`]: `state` (bits 0..4).
pub const IOREQ_BITS_STATE_MASK: u8 = 0x0f;
/// Bits of [`Ioreq::bits`]: `data_is_ptr` (bit 4).
pub const IOREQ_BITS_DATA_IS_PTR: u8 = 1 << 4;
/// Bits of [`Ioreq::bits`]: `dir` (bit 5).
pub const IOREQ_BITS_DIR: u8 = 1 << 5;
/// Bits of [`Ioreq::bits`]: `df` (bit 6).
pub const IOREQ_BITS_DF: u8 = 1 << 6;

abi_struct! {
    /// One emulation request (`struct ioreq`), written by Xen and answered by
    /// a device model. The C bitfields `state:4, data_is_ptr:1, dir:1, df:1`
    /// share byte 30, kept here as [`Ioreq::bits`] with accessors.
    pub struct Ioreq {
        /// Physical address / port.
        pub addr: u64,
        /// Data, or guest physical address of data if `data_is_ptr`.
        pub data: u64,
        /// Repeat count (rep prefixes).
        pub count: u32,
        /// Access size in bytes.
        pub size: u32,
        /// Event channel for notifications to/from the device model.
        pub vp_eport: u32,
        /// Padding.
        pub _pad0: u16,
        /// Bitfields `state:4, data_is_ptr:1, dir:1, df:1, _pad1:1`.
        pub bits: u8,
        /// An [`IoreqType`].
        pub r#type: u8,
    }
}

impl Ioreq {
    /// `state` bitfield.
    pub const fn state(&self) -> u8 {
        self.bits & IOREQ_BITS_STATE_MASK
    }
    /// `data_is_ptr` bitfield.
    pub const fn data_is_ptr(&self) -> bool {
        self.bits & IOREQ_BITS_DATA_IS_PTR != 0
    }
    /// `dir` bitfield ([`IOREQ_READ`] or [`IOREQ_WRITE`]).
    pub const fn dir(&self) -> u8 {
        if self.bits & IOREQ_BITS_DIR != 0 {
            IOREQ_READ
        } else {
            IOREQ_WRITE
        }
    }
    /// `df` bitfield (direction flag for rep operations).
    pub const fn df(&self) -> bool {
        self.bits & IOREQ_BITS_DF != 0
    }
    /// Sets the `state` bitfield.
    pub fn set_state(&mut self, state: u8) {
        self.bits = (self.bits & !IOREQ_BITS_STATE_MASK) | (state & IOREQ_BITS_STATE_MASK);
    }
}

/// Number of per-vCPU ioreq slots in one shared iopage (page / 32 bytes).
pub const SHARED_IOPAGE_NR_IOREQ: usize = crate::XEN_PAGE_SIZE / core::mem::size_of::<Ioreq>();

abi_struct! {
    /// The synchronous ioreq page (`struct shared_iopage`): slot N belongs to
    /// vCPU N. C declares `vcpu_ioreq[1]` as a variable-length tail; this type
    /// spans the full page.
    pub struct SharedIopage {
        /// Per-vCPU request slots.
        pub vcpu_ioreq: [Ioreq; SHARED_IOPAGE_NR_IOREQ],
    }
}

abi_struct! {
    /// vMCE save record for one vCPU (`struct hvm_vmce_vcpu`), also embedded
    /// in `xen_domctl_ext_vcpucontext`.
    pub struct HvmVmceVcpu {
        /// MCG_CAP value.
        pub caps: u64,
        /// MCi_CTL2 of bank 0.
        pub mci_ctl2_bank0: u64,
        /// MCi_CTL2 of bank 1.
        pub mci_ctl2_bank1: u64,
        /// MCG_EXT_CTL value.
        pub mcg_ext_ctl: u64,
    }
}

zeroed_default!(
    XenHvmParam,
    HvmStartInfo,
    HvmModlistEntry,
    HvmMemmapTableEntry,
    Ioreq,
    SharedIopage,
    HvmVmceVcpu,
);
