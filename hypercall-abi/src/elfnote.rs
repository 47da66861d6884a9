//! Xen ELF notes (`public/elfnote.h`): the `PT_NOTE` entries named "Xen" that a
//! PV/PVH kernel image carries to tell the domain builder how to load it.
//! Owns [`ElfNote`] and the note header type [`ElfNoteHeader`].

abi_enum! {
    /// Xen ELF note types (`XEN_ELFNOTE_*`), the `n_type` of a note named "Xen".
    pub enum ElfNote: u32, raw u64 {
        /// NAME=VALUE pairs in a string (legacy `__xen_guest` section).
        Info = 0 => "XEN_ELFNOTE_INFO",
        /// Virtual address of the PV kernel entry point.
        Entry = 1 => "XEN_ELFNOTE_ENTRY",
        /// Virtual address of the page Xen fills as the hypercall page.
        HypercallPage = 2 => "XEN_ELFNOTE_HYPERCALL_PAGE",
        /// Virtual base address of the kernel image.
        VirtBase = 3 => "XEN_ELFNOTE_VIRT_BASE",
        /// Offset between virtual and physical addresses of the image.
        PaddrOffset = 4 => "XEN_ELFNOTE_PADDR_OFFSET",
        /// Xen version the kernel expects ("xen-3.0").
        XenVersion = 5 => "XEN_ELFNOTE_XEN_VERSION",
        /// Guest OS name (e.g. "linux").
        GuestOs = 6 => "XEN_ELFNOTE_GUEST_OS",
        /// Guest OS version.
        GuestVersion = 7 => "XEN_ELFNOTE_GUEST_VERSION",
        /// Loader type ("generic").
        Loader = 8 => "XEN_ELFNOTE_LOADER",
        /// PAE mode ("yes", "no", "bimodal", "yes,bimodal").
        PaeMode = 9 => "XEN_ELFNOTE_PAE_MODE",
        /// Required/optional features string (`XENFEAT` names, '|' separated, '!' = required).
        Features = 10 => "XEN_ELFNOTE_FEATURES",
        /// Load BSD symbol table ("yes").
        BsdSymtab = 11 => "XEN_ELFNOTE_BSD_SYMTAB",
        /// Lowest address of the hypervisor hole (32-bit only).
        HvStartLow = 12 => "XEN_ELFNOTE_HV_START_LOW",
        /// PTE mask and value indicating a valid L1 entry.
        L1MfnValid = 13 => "XEN_ELFNOTE_L1_MFN_VALID",
        /// Kernel supports `SHUTDOWN_suspend` cancellation.
        SuspendCancel = 14 => "XEN_ELFNOTE_SUSPEND_CANCEL",
        /// Virtual address of where the builder should put the p2m.
        InitP2m = 15 => "XEN_ELFNOTE_INIT_P2M",
        /// Kernel understands `SIF_MOD_START_PFN`.
        ModStartPfn = 16 => "XEN_ELFNOTE_MOD_START_PFN",
        /// Bitmap (u32) of `XENFEAT_*` the kernel supports.
        SupportedFeatures = 17 => "XEN_ELFNOTE_SUPPORTED_FEATURES",
        /// Physical 32-bit PVH entry point (`ebx` = `hvm_start_info`).
        Phys32Entry = 18 => "XEN_ELFNOTE_PHYS32_ENTRY",
        /// Crash note: information block (in Xen's own crash dumps).
        CrashInfo = 0x0100_0001 => "XEN_ELFNOTE_CRASH_INFO",
        /// Crash note: per-CPU register state.
        CrashRegs = 0x0100_0002 => "XEN_ELFNOTE_CRASH_REGS",
        /// Dumpcore note: none.
        DumpcoreNone = 0x0200_0000 => "XEN_ELFNOTE_DUMPCORE_NONE",
        /// Dumpcore note: header.
        DumpcoreHeader = 0x0200_0001 => "XEN_ELFNOTE_DUMPCORE_HEADER",
        /// Dumpcore note: Xen version.
        DumpcoreXenVersion = 0x0200_0002 => "XEN_ELFNOTE_DUMPCORE_XEN_VERSION",
        /// Dumpcore note: format version.
        DumpcoreFormatVersion = 0x0200_0003 => "XEN_ELFNOTE_DUMPCORE_FORMAT_VERSION",
    }
}

/// Highest guest-image note type (`XEN_ELFNOTE_MAX`).
pub const XEN_ELFNOTE_MAX: u32 = ElfNote::Phys32Entry as u32;

/// Name of Xen notes, including the terminating NUL (`n_namesz` = 4).
pub const XEN_ELFNOTE_NAME: &[u8; 4] = b"Xen\0";

/// Alignment of the name and descriptor fields of an ELF note.
pub const ELF_NOTE_ALIGN: usize = 4;

abi_struct! {
    /// ELF note header (`Elf64_Nhdr` = `Elf32_Nhdr`): followed by the name
    /// (padded to 4 bytes) and the descriptor (padded to 4 bytes). Written by
    /// the kernel's linker script; parsed by the domain builder.
    pub struct ElfNoteHeader {
        /// Length of the name including its NUL ("Xen\0" = 4).
        pub n_namesz: u32,
        /// Length of the descriptor.
        pub n_descsz: u32,
        /// Note type ([`ElfNote`] for "Xen" notes).
        pub n_type: u32,
    }
}

/// Rounds a note field length up to [`ELF_NOTE_ALIGN`].
pub const fn elf_note_pad(len: usize) -> usize {
    (len + ELF_NOTE_ALIGN - 1) & !(ELF_NOTE_ALIGN - 1)
}

zeroed_default!(ElfNoteHeader);
