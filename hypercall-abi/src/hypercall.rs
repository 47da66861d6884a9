//! Hypercall numbers (`__HYPERVISOR_*` from `public/xen.h`) and the x86_64 PV
//! hypercall page that Xen fills in for guests (`arch/x86/pv/hypercall.c`).
//! Owns: [`Hypercall`], the calling convention and the hypercall-page encoder.
//!
//! # Calling convention (x86_64 PV)
//! A 64-bit PV guest kernel executes `syscall` with the hypercall number in
//! `rax` and up to [`HYPERCALL_MAX_ARGS`] arguments in `rdi`, `rsi`, `rdx`,
//! `r10`, `r8`. The result comes back in `rax` (`i64`: `>= 0` success, negated
//! [`crate::errno::Errno`] on failure). `rcx` and `r11` are clobbered by
//! `syscall` itself, which is why each page slot saves them. Guests normally do
//! not issue `syscall` directly but `call` into slot `N` of the hypercall page.

abi_enum! {
    /// A hypercall number, as placed in `rax` (`__HYPERVISOR_*`).
    ///
    /// [`Hypercall::name`] gives Xen's name without the `__HYPERVISOR_` prefix
    /// (e.g. `"console_io"`). Number 11 is unused in Xen 4.17. On x86
    /// `arch_0` is `mca` and `arch_1` is `paging_domctl_cont`
    /// (see [`Hypercall::MCA`], [`Hypercall::PAGING_DOMCTL_CONT`]).
    pub enum Hypercall: u32, raw u64 {
        /// Install the virtual IDT (`trap_info` array). Args: handle.
        SetTrapTable = 0 => "set_trap_table",
        /// Batch page-table / M2P updates (`mmu_update` array). Args: reqs, count, done, domid.
        MmuUpdate = 1 => "mmu_update",
        /// Install a new GDT from a frame list. Args: frame_list, entries.
        SetGdt = 2 => "set_gdt",
        /// Set the kernel stack used on ring transitions. Args: ss, esp.
        StackSwitch = 3 => "stack_switch",
        /// Legacy event/failsafe callback registration.
        SetCallbacks = 4 => "set_callbacks",
        /// Set/clear CR0.TS lazily. Args: set.
        FpuTaskswitch = 5 => "fpu_taskswitch",
        /// Old scheduler op (pre-3.0.2 ABI).
        SchedOpCompat = 6 => "sched_op_compat",
        /// Platform (machine-wide) operations, control domain only.
        PlatformOp = 7 => "platform_op",
        /// Write a debug register. Args: reg, value.
        SetDebugreg = 8 => "set_debugreg",
        /// Read a debug register. Args: reg.
        GetDebugreg = 9 => "get_debugreg",
        /// Update one GDT/LDT descriptor. Args: maddr, desc.
        UpdateDescriptor = 10 => "update_descriptor",
        /// Memory reservation and physmap operations (`XENMEM_*`). Args: cmd, arg.
        MemoryOp = 12 => "memory_op",
        /// Batch several hypercalls (`multicall_entry` array). Args: calls, nr.
        Multicall = 13 => "multicall",
        /// Update one PTE mapping a virtual address. Args: va, val, flags (`UVMF_*`).
        UpdateVaMapping = 14 => "update_va_mapping",
        /// Set the one-shot timer (absolute ns of system time). Args: timeout.
        SetTimerOp = 15 => "set_timer_op",
        /// Old event-channel op (pre-3.0.2 ABI).
        EventChannelOpCompat = 16 => "event_channel_op_compat",
        /// Query the hypervisor version and features (`XENVER_*`). Args: cmd, arg.
        XenVersion = 17 => "xen_version",
        /// Emergency console I/O (`CONSOLEIO_*`). Args: cmd, count, buffer.
        ConsoleIo = 18 => "console_io",
        /// Old physdev op (pre-3.0.2 ABI).
        PhysdevOpCompat = 19 => "physdev_op_compat",
        /// Grant-table operations (`GNTTABOP_*`). Args: cmd, uop, count.
        GrantTableOp = 20 => "grant_table_op",
        /// Enable/disable VM assists (`VMASST_*`). Args: cmd, type.
        VmAssist = 21 => "vm_assist",
        /// Like `update_va_mapping` for another domain's frame. Args: va, val, flags, domid.
        UpdateVaMappingOtherdomain = 22 => "update_va_mapping_otherdomain",
        /// Return from a bounce frame (`iret_context` on the stack); never returns.
        Iret = 23 => "iret",
        /// Per-vCPU operations (`VCPUOP_*`). Args: cmd, vcpuid, arg.
        VcpuOp = 24 => "vcpu_op",
        /// Set FS/GS base or user GS selector. Args: which, base.
        SetSegmentBase = 25 => "set_segment_base",
        /// Extended MMU operations (`mmuext_op` array). Args: ops, count, done, domid.
        MmuextOp = 26 => "mmuext_op",
        /// XSM/FLASK security operations.
        XsmOp = 27 => "xsm_op",
        /// NMI callback registration.
        NmiOp = 28 => "nmi_op",
        /// Scheduler operations (`SCHEDOP_*`). Args: cmd, arg.
        SchedOp = 29 => "sched_op",
        /// Callback registration (`CALLBACKOP_*`). Args: cmd, arg.
        CallbackOp = 30 => "callback_op",
        /// Xenoprof profiling operations.
        XenoprofOp = 31 => "xenoprof_op",
        /// Event-channel operations (`EVTCHNOP_*`). Args: cmd, arg.
        EventChannelOp = 32 => "event_channel_op",
        /// Physical-device operations (`PHYSDEVOP_*`). Args: cmd, arg.
        PhysdevOp = 33 => "physdev_op",
        /// HVM operations (`HVMOP_*`). Args: op, arg.
        HvmOp = 34 => "hvm_op",
        /// System-wide control operations (`XEN_SYSCTL_*`), control domain only.
        Sysctl = 35 => "sysctl",
        /// Domain control operations (`XEN_DOMCTL_*`), control domain only.
        Domctl = 36 => "domctl",
        /// Kexec operations.
        KexecOp = 37 => "kexec_op",
        /// Transcendent memory (removed; always fails).
        TmemOp = 38 => "tmem_op",
        /// Argo inter-domain messaging.
        ArgoOp = 39 => "argo_op",
        /// Xen PMU (vPMU) operations.
        XenpmuOp = 40 => "xenpmu_op",
        /// Device-model operations.
        DmOp = 41 => "dm_op",
        /// Hypervisor filesystem operations.
        HypfsOp = 42 => "hypfs_op",
        /// Architecture-specific hypercall 0 (x86: `mca`).
        Arch0 = 48 => "arch_0",
        /// Architecture-specific hypercall 1 (x86: `paging_domctl_cont`).
        Arch1 = 49 => "arch_1",
        /// Architecture-specific hypercall 2 (unused on x86).
        Arch2 = 50 => "arch_2",
        /// Architecture-specific hypercall 3 (unused on x86).
        Arch3 = 51 => "arch_3",
        /// Architecture-specific hypercall 4 (unused on x86).
        Arch4 = 52 => "arch_4",
        /// Architecture-specific hypercall 5 (unused on x86).
        Arch5 = 53 => "arch_5",
        /// Architecture-specific hypercall 6 (unused on x86).
        Arch6 = 54 => "arch_6",
        /// Architecture-specific hypercall 7 (unused on x86).
        Arch7 = 55 => "arch_7",
    }
}

impl Hypercall {
    /// x86 name of `arch_0`: machine-check architecture operations (`__HYPERVISOR_mca`).
    pub const MCA: Hypercall = Hypercall::Arch0;
    /// x86 name of `arch_1`: continuation of paging domctls (`__HYPERVISOR_paging_domctl_cont`).
    pub const PAGING_DOMCTL_CONT: Hypercall = Hypercall::Arch1;
    /// Prefix of Xen's C macro names: `__HYPERVISOR_` + [`Hypercall::name`].
    pub const C_PREFIX: &'static str = "__HYPERVISOR_";
}

/// Number of hypercall numbers a dispatch table must cover (`NR_hypercalls`):
/// one past the highest defined number ([`Hypercall::Arch7`]).
pub const NR_HYPERCALLS: usize = 64;

/// Maximum number of arguments a hypercall takes (`rdi, rsi, rdx, r10, r8`).
pub const HYPERCALL_MAX_ARGS: usize = 5;

/// Size of one hypercall-page slot in bytes: hypercall `N` lives at
/// `hypercall_page + N * HYPERCALL_SLOT_SIZE`.
pub const HYPERCALL_SLOT_SIZE: usize = 32;

/// Size of the hypercall page (one Xen page).
pub const HYPERCALL_PAGE_SIZE: usize = crate::XEN_PAGE_SIZE;

/// Number of slots in the hypercall page (4096 / 32 = 128).
pub const HYPERCALL_PAGE_SLOTS: usize = HYPERCALL_PAGE_SIZE / HYPERCALL_SLOT_SIZE;

/// Filler byte for unused slot bytes: `int3`, so a stray jump traps.
pub const OPCODE_INT3: u8 = 0xcc;
/// `push %rcx`.
pub const OPCODE_PUSH_RCX: u8 = 0x51;
/// `push %r11` (REX.B + 0x53).
pub const OPCODE_PUSH_R11: [u8; 2] = [0x41, 0x53];
/// `push %rax`.
pub const OPCODE_PUSH_RAX: u8 = 0x50;
/// `mov $imm32, %eax` opcode; followed by the little-endian immediate.
pub const OPCODE_MOV_IMM32_EAX: u8 = 0xb8;
/// `syscall`.
pub const OPCODE_SYSCALL: [u8; 2] = [0x0f, 0x05];
/// `pop %r11` (REX.B + 0x5b).
pub const OPCODE_POP_R11: [u8; 2] = [0x41, 0x5b];
/// `pop %rcx`.
pub const OPCODE_POP_RCX: u8 = 0x59;
/// `ret`.
pub const OPCODE_RET: u8 = 0xc3;

/// Encodes one 32-byte slot of a 64-bit PV hypercall page for hypercall
/// number `nr`, exactly as Xen 4.17 writes it:
///
/// ```text
/// 51                push %rcx
/// 41 53             push %r11
/// b8 NN NN NN NN    mov  $nr, %eax
/// 0f 05             syscall
/// 41 5b             pop  %r11
/// 59                pop  %rcx
/// c3                ret
/// cc ...            int3 padding to 32 bytes
/// ```
///
/// The `iret` slot ([`Hypercall::Iret`]) is special: the guest *jumps* to it
/// with an `iret_context` frame already on its stack (minus `rax`, `r11`,
/// `rcx`, which the slot pushes), and it never returns:
///
/// ```text
/// 51 41 53 50       push %rcx; push %r11; push %rax
/// b8 17 00 00 00    mov  $__HYPERVISOR_iret, %eax
/// 0f 05             syscall
/// cc ...            int3 padding (the syscall does not return here)
/// ```
pub const fn hypercall_slot(nr: u32) -> [u8; HYPERCALL_SLOT_SIZE] {
    let mut s = [OPCODE_INT3; HYPERCALL_SLOT_SIZE];
    let imm = nr.to_le_bytes();
    if nr == Hypercall::Iret as u32 {
        s[0] = OPCODE_PUSH_RCX;
        s[1] = OPCODE_PUSH_R11[0];
        s[2] = OPCODE_PUSH_R11[1];
        s[3] = OPCODE_PUSH_RAX;
        s[4] = OPCODE_MOV_IMM32_EAX;
        s[5] = imm[0];
        s[6] = imm[1];
        s[7] = imm[2];
        s[8] = imm[3];
        s[9] = OPCODE_SYSCALL[0];
        s[10] = OPCODE_SYSCALL[1];
    } else {
        s[0] = OPCODE_PUSH_RCX;
        s[1] = OPCODE_PUSH_R11[0];
        s[2] = OPCODE_PUSH_R11[1];
        s[3] = OPCODE_MOV_IMM32_EAX;
        s[4] = imm[0];
        s[5] = imm[1];
        s[6] = imm[2];
        s[7] = imm[3];
        s[8] = OPCODE_SYSCALL[0];
        s[9] = OPCODE_SYSCALL[1];
        s[10] = OPCODE_POP_R11[0];
        s[11] = OPCODE_POP_R11[1];
        s[12] = OPCODE_POP_RCX;
        s[13] = OPCODE_RET;
    }
    s
}

/// Fills a whole hypercall page: every one of the [`HYPERCALL_PAGE_SLOTS`]
/// slots gets [`hypercall_slot`] of its index (Xen writes all 128 slots, so
/// unknown numbers reach the hypervisor and fail with `-ENOSYS`).
pub fn fill_hypercall_page(page: &mut [u8; HYPERCALL_PAGE_SIZE]) {
    for (nr, slot) in page.chunks_exact_mut(HYPERCALL_SLOT_SIZE).enumerate() {
        // nr < HYPERCALL_PAGE_SLOTS (128), so the cast cannot truncate.
        slot.copy_from_slice(&hypercall_slot(nr as u32));
    }
}
