//! x86_64 architecture ABI (`public/arch-x86/xen.h`, `xen-x86_64.h`,
//! `cpuid.h`): PV flat selectors, the reserved virtual-address hole, register
//! frames, virtual IDT entries, the vCPU guest context and Xen's CPUID leaves.

use crate::XenUlong;

// ---------------------------------------------------------------------------
// Flat segment selectors (64-bit PV guests run kernel and user in ring 3)
// ---------------------------------------------------------------------------

/// Selector RPL mask (low 2 bits).
pub const SELECTOR_RPL_MASK: u16 = 0x3;

/// Flat 32-bit ring-3 code segment (compat user code).
pub const FLAT_RING3_CS32: u16 = 0xe023;
/// Flat 64-bit ring-3 code segment (64-bit kernel and user code).
pub const FLAT_RING3_CS64: u16 = 0xe033;
/// Flat 32-bit ring-3 data segment.
pub const FLAT_RING3_DS32: u16 = 0xe02b;
/// 64-bit data segment: the null selector.
pub const FLAT_RING3_DS64: u16 = 0x0000;
/// Flat 32-bit ring-3 stack segment.
pub const FLAT_RING3_SS32: u16 = 0xe02b;
/// 64-bit stack segment (same as the 32-bit flat data segment).
pub const FLAT_RING3_SS64: u16 = 0xe02b;

/// Guest kernel 64-bit data selector (= ring 3).
pub const FLAT_KERNEL_DS64: u16 = FLAT_RING3_DS64;
/// Guest kernel 32-bit data selector (= ring 3).
pub const FLAT_KERNEL_DS32: u16 = FLAT_RING3_DS32;
/// Guest kernel data selector.
pub const FLAT_KERNEL_DS: u16 = FLAT_KERNEL_DS64;
/// Guest kernel 64-bit code selector (= ring 3).
pub const FLAT_KERNEL_CS64: u16 = FLAT_RING3_CS64;
/// Guest kernel 32-bit code selector (= ring 3).
pub const FLAT_KERNEL_CS32: u16 = FLAT_RING3_CS32;
/// Guest kernel code selector.
pub const FLAT_KERNEL_CS: u16 = FLAT_KERNEL_CS64;
/// Guest kernel 64-bit stack selector (= ring 3).
pub const FLAT_KERNEL_SS64: u16 = FLAT_RING3_SS64;
/// Guest kernel 32-bit stack selector (= ring 3).
pub const FLAT_KERNEL_SS32: u16 = FLAT_RING3_SS32;
/// Guest kernel stack selector.
pub const FLAT_KERNEL_SS: u16 = FLAT_KERNEL_SS64;

/// Guest user 64-bit data selector.
pub const FLAT_USER_DS64: u16 = FLAT_RING3_DS64;
/// Guest user 32-bit data selector.
pub const FLAT_USER_DS32: u16 = FLAT_RING3_DS32;
/// Guest user data selector.
pub const FLAT_USER_DS: u16 = FLAT_USER_DS64;
/// Guest user 64-bit code selector.
pub const FLAT_USER_CS64: u16 = FLAT_RING3_CS64;
/// Guest user 32-bit code selector.
pub const FLAT_USER_CS32: u16 = FLAT_RING3_CS32;
/// Guest user code selector.
pub const FLAT_USER_CS: u16 = FLAT_USER_CS64;
/// Guest user 64-bit stack selector.
pub const FLAT_USER_SS64: u16 = FLAT_RING3_SS64;
/// Guest user 32-bit stack selector.
pub const FLAT_USER_SS32: u16 = FLAT_RING3_SS32;
/// Guest user stack selector.
pub const FLAT_USER_SS: u16 = FLAT_USER_SS64;

/// `FLAT_KERNEL_CS64` with its RPL cleared (0xe030): the `cs` Xen writes into
/// a bounce frame that interrupted guest kernel mode.
pub const FLAT_KERNEL_CS64_RPL0: u16 = FLAT_KERNEL_CS64 & !SELECTOR_RPL_MASK;

// ---------------------------------------------------------------------------
// Reserved virtual address range
// ---------------------------------------------------------------------------

/// Start of the VA range reserved for Xen in every 64-bit PV address space
/// (`HYPERVISOR_VIRT_START`, L4 slot 256).
pub const HYPERVISOR_VIRT_START: u64 = 0xFFFF_8000_0000_0000;
/// End (exclusive) of the reserved range (`HYPERVISOR_VIRT_END`, L4 slot 272).
pub const HYPERVISOR_VIRT_END: u64 = 0xFFFF_8800_0000_0000;
/// Start of the read-only machine-to-phys table mapped into PV guests.
pub const MACH2PHYS_VIRT_START: u64 = 0xFFFF_8000_0000_0000;
/// End (exclusive) of the machine-to-phys table.
pub const MACH2PHYS_VIRT_END: u64 = 0xFFFF_8040_0000_0000;
/// log2 of the size of one M2P entry (8 bytes).
pub const MACH2PHYS_ENTRY_SHIFT: u32 = 3;
/// Number of M2P entries (`MACH2PHYS_NR_ENTRIES`).
pub const MACH2PHYS_NR_ENTRIES: u64 =
    (MACH2PHYS_VIRT_END - MACH2PHYS_VIRT_START) >> MACH2PHYS_ENTRY_SHIFT;

/// First L4 page-table slot covered by the reserved range.
pub const HYPERVISOR_L4_FIRST_SLOT: usize = 256;
/// Last L4 page-table slot covered by the reserved range (inclusive).
pub const HYPERVISOR_L4_LAST_SLOT: usize = 271;

// ---------------------------------------------------------------------------
// set_segment_base
// ---------------------------------------------------------------------------

abi_enum! {
    /// First argument of `__HYPERVISOR_set_segment_base` (`SEGBASE_*`).
    pub enum SegBase: u32, raw u64 {
        /// Set the FS base.
        Fs = 0 => "SEGBASE_FS",
        /// Set the user GS base (swapped in on return to user).
        GsUser = 1 => "SEGBASE_GS_USER",
        /// Set the kernel GS base.
        GsKernel = 2 => "SEGBASE_GS_KERNEL",
        /// Load the user GS selector (base is taken from the descriptor).
        GsUserSel = 3 => "SEGBASE_GS_USER_SEL",
    }
}

// ---------------------------------------------------------------------------
// iret
// ---------------------------------------------------------------------------

/// `iret_context.flags` / `VGCF_in_syscall`: return via the `sysret` path
/// (rcx/r11 are not restored from the frame).
pub const VGCF_IN_SYSCALL: u64 = 1 << 8;

abi_struct! {
    /// The frame `HYPERVISOR_iret` pops from the guest kernel stack
    /// (`struct iret_context`). The guest builds it (the hypercall-page `iret`
    /// slot pushes `rcx`, `r11`, `rax`), Xen consumes it.
    pub struct IretContext {
        /// Value to restore into `rax`.
        pub rax: u64,
        /// Value to restore into `r11`.
        pub r11: u64,
        /// Value to restore into `rcx`.
        pub rcx: u64,
        /// `VGCF_IN_SYSCALL` or 0.
        pub flags: u64,
        /// Return instruction pointer.
        pub rip: u64,
        /// Return code selector.
        pub cs: u64,
        /// Return flags (IF becomes the inverse of the upcall mask).
        pub rflags: u64,
        /// Return stack pointer.
        pub rsp: u64,
        /// Return stack selector.
        pub ss: u64,
    }
}

/// Bit position of the saved upcall mask in the `cs` slot of a bounce frame
/// (`cs | saved_upcall_mask << 32`).
pub const BOUNCE_FRAME_UPCALL_MASK_SHIFT: u32 = 32;

// ---------------------------------------------------------------------------
// Register frame
// ---------------------------------------------------------------------------

abi_struct! {
    /// Guest general-purpose register state (`struct cpu_user_regs`, x86_64).
    ///
    /// Used inside [`VcpuGuestContext`] (written by the toolstack/guest for
    /// `VCPUOP_initialise` / `setvcpucontext`, by Xen for `getvcpucontext`) and as
    /// Xen's own exception frame layout. In C every GPR is an anonymous union
    /// of its 64/32/16/8-bit names (`rax`/`eax`/`ax`/`al`/`ah`); here each is a
    /// single `u64` and the narrow names are the low bytes (little-endian).
    pub struct CpuUserRegs {
        /// r15.
        pub r15: u64,
        /// r14.
        pub r14: u64,
        /// r13.
        pub r13: u64,
        /// r12.
        pub r12: u64,
        /// rbp.
        pub rbp: u64,
        /// rbx.
        pub rbx: u64,
        /// r11.
        pub r11: u64,
        /// r10.
        pub r10: u64,
        /// r9.
        pub r9: u64,
        /// r8.
        pub r8: u64,
        /// rax.
        pub rax: u64,
        /// rcx.
        pub rcx: u64,
        /// rdx.
        pub rdx: u64,
        /// rsi.
        pub rsi: u64,
        /// rdi.
        pub rdi: u64,
        /// Hardware error code of the exception (Xen private).
        pub error_code: u32,
        /// Exception vector (Xen private).
        pub entry_vector: u32,
        /// rip.
        pub rip: u64,
        /// Code selector.
        pub cs: u16,
        /// Padding.
        pub _pad0: [u16; 1],
        /// Saved event-upcall mask (in a bounce frame: bits 32..40 of the `cs` slot).
        pub saved_upcall_mask: u8,
        /// Padding.
        pub _pad1: [u8; 3],
        /// rflags.
        pub rflags: u64,
        /// rsp.
        pub rsp: u64,
        /// Stack selector.
        pub ss: u16,
        /// Padding.
        pub _pad2: [u16; 3],
        /// es selector.
        pub es: u16,
        /// Padding.
        pub _pad3: [u16; 3],
        /// ds selector.
        pub ds: u16,
        /// Padding.
        pub _pad4: [u16; 3],
        /// fs selector.
        pub fs: u16,
        /// Padding.
        pub _pad5: [u16; 3],
        /// gs selector.
        pub gs: u16,
        /// Padding.
        pub _pad6: [u16; 3],
    }
}

// ---------------------------------------------------------------------------
// Virtual IDT
// ---------------------------------------------------------------------------

/// `trap_info.flags` bits 0..2: the DPL a software `int` needs to raise the vector.
pub const TI_DPL_MASK: u8 = 0x3;
/// `trap_info.flags` bit 2: mask events on entry (interrupt gate semantics).
pub const TI_IF_FLAG: u8 = 0x4;

abi_struct! {
    /// One virtual IDT entry (`struct trap_info`), written by the guest in the
    /// array it passes to `__HYPERVISOR_set_trap_table` (terminated by an entry
    /// with `address == 0`) and inside [`VcpuGuestContext::trap_ctxt`].
    pub struct TrapInfo {
        /// Exception vector.
        pub vector: u8,
        /// Bits 0..2: DPL ([`TI_DPL_MASK`]); bit 2: disable events ([`TI_IF_FLAG`]).
        pub flags: u8,
        /// Code selector of the handler.
        pub cs: u16,
        /// Implicit C padding; zero.
        pub _pad4: u32,
        /// Handler address; 0 means "no handler"/end of table.
        pub address: u64,
    }
}

impl TrapInfo {
    /// `TI_GET_DPL`.
    pub const fn dpl(&self) -> u8 {
        self.flags & TI_DPL_MASK
    }
    /// `TI_GET_IF`: true if events are masked on entry.
    pub const fn disables_events(&self) -> bool {
        self.flags & TI_IF_FLAG != 0
    }
    /// `TI_SET_DPL`.
    pub fn set_dpl(&mut self, dpl: u8) {
        self.flags = (self.flags & !TI_DPL_MASK) | (dpl & TI_DPL_MASK);
    }
    /// `TI_SET_IF`.
    pub fn set_disables_events(&mut self, on: bool) {
        self.flags = (self.flags & !TI_IF_FLAG) | if on { TI_IF_FLAG } else { 0 };
    }
}

// ---------------------------------------------------------------------------
// Per-vCPU / per-domain arch parts of the shared info page
// ---------------------------------------------------------------------------

abi_struct! {
    /// x86 part of [`crate::xen::VcpuInfo`] (`struct arch_vcpu_info`).
    pub struct ArchVcpuInfo {
        /// Faulting address of the last page fault delivered (written by Xen).
        pub cr2: u64,
        /// Padding; zero.
        pub pad: u64,
    }
}

abi_struct! {
    /// x86 part of [`crate::xen::SharedInfo`] (`struct arch_shared_info`).
    /// Written by the PV guest (p2m description for save/restore tools);
    /// `nmi_reason` is written by Xen.
    pub struct ArchSharedInfo {
        /// Highest PFN + 1 of the guest's p2m.
        pub max_pfn: u64,
        /// Frame of the p2m frame-list-list (3-level p2m description).
        pub pfn_to_mfn_frame_list_list: XenUlong,
        /// NMI reason bits (`_XEN_NMIREASON_*`), set by Xen.
        pub nmi_reason: XenUlong,
        /// CR3 value of the linear p2m's page tables (0: not present).
        pub p2m_cr3: u64,
        /// Virtual address of the linear p2m.
        pub p2m_vaddr: u64,
        /// Incremented by the guest around p2m updates (odd while changing).
        pub p2m_generation: u64,
    }
}

// ---------------------------------------------------------------------------
// vcpu_guest_context
// ---------------------------------------------------------------------------

/// `vcpu_guest_context.flags`: `fpu_ctxt` holds valid state.
pub const VGCF_I387_VALID: u64 = 1 << 0;
/// `vcpu_guest_context.flags`: the vCPU is in guest-kernel mode.
pub const VGCF_IN_KERNEL: u64 = 1 << 2;
/// `vcpu_guest_context.flags`: the failsafe callback masks events.
pub const VGCF_FAILSAFE_DISABLES_EVENTS: u64 = 1 << 3;
/// `vcpu_guest_context.flags`: the syscall callback masks events.
pub const VGCF_SYSCALL_DISABLES_EVENTS: u64 = 1 << 4;
/// `vcpu_guest_context.flags`: the vCPU should be brought online.
pub const VGCF_ONLINE: u64 = 1 << 5;

/// Size of the FXSAVE area in `vcpu_guest_context.fpu_ctxt`.
pub const FPU_CTXT_SIZE: usize = 512;
/// Entries in the virtual IDT (`trap_ctxt`).
pub const TRAP_CTXT_ENTRIES: usize = 256;
/// Maximum GDT frames in `gdt_frames`.
pub const GDT_FRAMES: usize = 16;
/// Number of control registers in `ctrlreg`.
pub const NR_CTRLREGS: usize = 8;
/// Number of debug registers in `debugreg`.
pub const NR_DEBUGREGS: usize = 8;

abi_struct! {
    /// Complete PV vCPU state (`struct vcpu_guest_context`, x86_64), written by
    /// the guest for `VCPUOP_initialise` or by the toolstack for
    /// `XEN_DOMCTL_setvcpucontext`; written by Xen for `getvcpucontext`.
    pub struct VcpuGuestContext {
        /// FXSAVE image (`fpu_ctxt.x`), valid with `VGCF_I387_VALID`.
        pub fpu_ctxt: [u8; FPU_CTXT_SIZE],
        /// `VGCF_*` flags.
        pub flags: u64,
        /// General-purpose registers.
        pub user_regs: CpuUserRegs,
        /// Virtual IDT.
        pub trap_ctxt: [TrapInfo; TRAP_CTXT_ENTRIES],
        /// LDT linear base.
        pub ldt_base: u64,
        /// LDT entry count.
        pub ldt_ents: u64,
        /// GDT machine frames.
        pub gdt_frames: [u64; GDT_FRAMES],
        /// GDT entry count.
        pub gdt_ents: u64,
        /// Kernel stack selector (for `stack_switch`).
        pub kernel_ss: u64,
        /// Kernel stack pointer.
        pub kernel_sp: u64,
        /// Control registers; `ctrlreg[3]` is the kernel L4 as an MFN (xen_pfn_to_cr3),
        /// `ctrlreg[1]` the user L4.
        pub ctrlreg: [u64; NR_CTRLREGS],
        /// Debug registers.
        pub debugreg: [u64; NR_DEBUGREGS],
        /// Event upcall entry point.
        pub event_callback_eip: u64,
        /// Failsafe callback entry point.
        pub failsafe_callback_eip: u64,
        /// `syscall` entry point.
        pub syscall_callback_eip: u64,
        /// Bitmap of enabled `VMASST_TYPE_*` assists.
        pub vm_assist: XenUlong,
        /// FS base.
        pub fs_base: u64,
        /// Kernel GS base.
        pub gs_base_kernel: u64,
        /// User GS base.
        pub gs_base_user: u64,
    }
}

// ---------------------------------------------------------------------------
// Domain creation config
// ---------------------------------------------------------------------------

/// `emulation_flags`: emulated local APIC.
pub const XEN_X86_EMU_LAPIC: u32 = 1 << 0;
/// `emulation_flags`: emulated HPET.
pub const XEN_X86_EMU_HPET: u32 = 1 << 1;
/// `emulation_flags`: emulated ACPI PM timer/registers.
pub const XEN_X86_EMU_PM: u32 = 1 << 2;
/// `emulation_flags`: emulated RTC.
pub const XEN_X86_EMU_RTC: u32 = 1 << 3;
/// `emulation_flags`: emulated IO-APIC.
pub const XEN_X86_EMU_IOAPIC: u32 = 1 << 4;
/// `emulation_flags`: emulated PIC.
pub const XEN_X86_EMU_PIC: u32 = 1 << 5;
/// `emulation_flags`: emulated VGA.
pub const XEN_X86_EMU_VGA: u32 = 1 << 6;
/// `emulation_flags`: emulated IOMMU.
pub const XEN_X86_EMU_IOMMU: u32 = 1 << 7;
/// `emulation_flags`: emulated PIT.
pub const XEN_X86_EMU_PIT: u32 = 1 << 8;
/// `emulation_flags`: route GSIs through PIRQs (PVHVM).
pub const XEN_X86_EMU_USE_PIRQ: u32 = 1 << 9;
/// `emulation_flags`: virtual PCI config space.
pub const XEN_X86_EMU_VPCI: u32 = 1 << 10;
/// All emulation flags.
pub const XEN_X86_EMU_ALL: u32 = XEN_X86_EMU_LAPIC
    | XEN_X86_EMU_HPET
    | XEN_X86_EMU_PM
    | XEN_X86_EMU_RTC
    | XEN_X86_EMU_IOAPIC
    | XEN_X86_EMU_PIC
    | XEN_X86_EMU_VGA
    | XEN_X86_EMU_IOMMU
    | XEN_X86_EMU_PIT
    | XEN_X86_EMU_USE_PIRQ
    | XEN_X86_EMU_VPCI;

/// `misc_flags`: unhandled MSR accesses are ignored instead of faulting.
pub const XEN_X86_MSR_RELAXED: u32 = 1 << 0;
/// Highest defined `misc_flags` bit value.
pub const XEN_X86_MISC_FLAGS_MAX: u32 = XEN_X86_MSR_RELAXED;

abi_struct! {
    /// x86 part of `xen_domctl_createdomain` (`struct xen_arch_domainconfig`),
    /// written by the toolstack.
    pub struct XenArchDomainconfig {
        /// `XEN_X86_EMU_*`: which devices Xen emulates (0 for PV).
        pub emulation_flags: u32,
        /// `XEN_X86_MSR_RELAXED` etc.
        pub misc_flags: u32,
    }
}

// ---------------------------------------------------------------------------
// CPUID / MSR policy entries
// ---------------------------------------------------------------------------

/// `xen_cpuid_leaf.subleaf` for leaves without subleaves.
pub const XEN_CPUID_NO_SUBLEAF: u32 = 0xffff_ffff;

abi_struct! {
    /// One CPUID policy entry (`struct xen_cpuid_leaf`), exchanged by the
    /// toolstack and Xen in `XEN_DOMCTL_{get,set}_cpu_policy`.
    pub struct XenCpuidLeaf {
        /// Leaf (EAX input).
        pub leaf: u32,
        /// Subleaf (ECX input) or [`XEN_CPUID_NO_SUBLEAF`].
        pub subleaf: u32,
        /// EAX output.
        pub a: u32,
        /// EBX output.
        pub b: u32,
        /// ECX output.
        pub c: u32,
        /// EDX output.
        pub d: u32,
    }
}

abi_struct! {
    /// One MSR policy/value entry (`struct xen_msr_entry`).
    pub struct XenMsrEntry {
        /// MSR index.
        pub idx: u32,
        /// Reserved flags; zero.
        pub flags: u32,
        /// MSR value.
        pub val: u64,
    }
}

// ---------------------------------------------------------------------------
// Xen CPUID leaves (arch-x86/cpuid.h)
// ---------------------------------------------------------------------------

/// First Xen CPUID leaf. Guests scan from here in steps of
/// [`XEN_CPUID_LEAF_STRIDE`] (Viridian may sit at 0x40000000).
pub const XEN_CPUID_FIRST_LEAF: u32 = 0x4000_0000;
/// Step between candidate Xen CPUID bases.
pub const XEN_CPUID_LEAF_STRIDE: u32 = 0x100;
/// Number of Xen leaves after the base that Oxen implements (base+0..=base+5,
/// as Xen 4.17: signature, version, hypercall/MSR, time, HVM, PV).
pub const XEN_CPUID_MAX_NUM_LEAVES: u32 = 5;
/// The 12-byte signature returned in EBX, ECX, EDX of the base leaf.
pub const XEN_CPUID_SIGNATURE: &[u8; 12] = b"XenVMMXenVMM";
/// Base leaf EBX ("XenV").
pub const XEN_CPUID_SIGNATURE_EBX: u32 = 0x566e_6558;
/// Base leaf ECX ("MMXe").
pub const XEN_CPUID_SIGNATURE_ECX: u32 = 0x6558_4d4d;
/// Base leaf EDX ("nVMM").
pub const XEN_CPUID_SIGNATURE_EDX: u32 = 0x4d4d_566e;
/// Leaf offset returning the version: EAX = major << 16 | minor.
pub const XEN_CPUID_LEAF_VERSION: u32 = 1;
/// Leaf offset returning EAX = number of hypercall pages (1), EBX = MSR base
/// ([`XEN_HYPERCALL_MSR`]), ECX = `XEN_CPUID_FEAT1_*`.
pub const XEN_CPUID_LEAF_HYPERCALL: u32 = 2;
/// Leaf offset with time/TSC parameters.
pub const XEN_CPUID_LEAF_TIME: u32 = 3;
/// Leaf offset with HVM-specific features (`XEN_HVM_CPUID_*`).
pub const XEN_CPUID_LEAF_HVM: u32 = 4;
/// Leaf offset with PV-specific parameters.
pub const XEN_CPUID_LEAF_PV: u32 = 5;
/// Leaf-2 ECX: `MMU_PT_UPDATE_PRESERVE_AD` is supported.
pub const XEN_CPUID_FEAT1_MMU_PT_UPDATE_PRESERVE_AD: u32 = 1 << 0;
/// HVM leaf EAX: virtualised APIC registers.
pub const XEN_HVM_CPUID_APIC_ACCESS_VIRT: u32 = 1 << 0;
/// HVM leaf EAX: virtualised x2APIC accesses.
pub const XEN_HVM_CPUID_X2APIC_VIRT: u32 = 1 << 1;
/// HVM leaf EAX: foreign mappings have IOMMU entries.
pub const XEN_HVM_CPUID_IOMMU_MAPPINGS: u32 = 1 << 2;
/// HVM leaf EAX: EBX holds the vCPU id.
pub const XEN_HVM_CPUID_VCPU_ID_PRESENT: u32 = 1 << 3;
/// HVM leaf EAX: ECX holds the domain id.
pub const XEN_HVM_CPUID_DOMID_PRESENT: u32 = 1 << 4;
/// HVM leaf EAX: per-vCPU upcall vector (`HVMOP_set_evtchn_upcall_vector`) supported.
pub const XEN_HVM_CPUID_UPCALL_VECTOR: u32 = 1 << 6;

/// MSR (= leaf-2 EBX) to which an HVM/PVH guest writes the guest-physical
/// address of a page (low 12 bits: page index, 0) to have Xen fill it as the
/// hypercall page.
pub const XEN_HYPERCALL_MSR: u32 = 0x4000_0000;

/// Number of hypercall pages reported by leaf 2 EAX.
pub const XEN_CPUID_HYPERCALL_PAGES: u32 = 1;

zeroed_default!(
    IretContext,
    CpuUserRegs,
    TrapInfo,
    ArchVcpuInfo,
    ArchSharedInfo,
    VcpuGuestContext,
    XenArchDomainconfig,
    XenCpuidLeaf,
    XenMsrEntry,
);
