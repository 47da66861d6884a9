//! `__HYPERVISOR_xen_version` (`public/version.h`, `public/features.h`):
//! sub-ops, their argument buffers, the `XENFEAT_*` feature bits, and the
//! version identity Oxen reports (it impersonates Xen 4.17).

abi_enum! {
    /// `__HYPERVISOR_xen_version` commands (`XENVER_*`). The call is
    /// `xen_version(cmd, arg)`; `arg` is a guest buffer whose type depends on `cmd`.
    pub enum XenVersionOp: u32, raw u64 {
        /// Returns `major << 16 | minor` directly; `arg` unused.
        Version = 0 => "XENVER_version",
        /// Fills a [`XenExtraversion`] (e.g. ".0-oxen").
        Extraversion = 1 => "XENVER_extraversion",
        /// Fills a [`XenCompileInfo`].
        CompileInfo = 2 => "XENVER_compile_info",
        /// Fills a [`XenCapabilitiesInfo`] (space separated ABI list).
        Capabilities = 3 => "XENVER_capabilities",
        /// Fills a [`XenChangesetInfo`].
        Changeset = 4 => "XENVER_changeset",
        /// Fills a [`XenPlatformParameters`].
        PlatformParameters = 5 => "XENVER_platform_parameters",
        /// Reads/fills a [`XenFeatureInfo`] (guest sets `submap_idx`).
        GetFeatures = 6 => "XENVER_get_features",
        /// Returns the page size (4096); `arg` unused.
        Pagesize = 7 => "XENVER_pagesize",
        /// Fills a [`crate::xen::XenDomainHandle`] with the caller's handle.
        GuestHandle = 8 => "XENVER_guest_handle",
        /// Fills a [`XenCommandline`] (privileged only).
        Commandline = 9 => "XENVER_commandline",
        /// Fills a [`XenBuildIdHeader`] + bytes with the build id.
        BuildId = 10 => "XENVER_build_id",
    }
}

/// Major version reported to guests (Xen 4.17 compatible).
pub const XEN_VERSION_MAJOR: u32 = 4;
/// Minor version reported to guests.
pub const XEN_VERSION_MINOR: u32 = 17;
/// Bit position of the major version in the `XENVER_version` result.
pub const XEN_VERSION_MAJOR_SHIFT: u32 = 16;
/// Mask of the minor version in the `XENVER_version` result.
pub const XEN_VERSION_MINOR_MASK: u32 = 0xffff;
/// The `XENVER_version` result: `major << 16 | minor` (0x0004_0011).
pub const XEN_VERSION: u32 = (XEN_VERSION_MAJOR << XEN_VERSION_MAJOR_SHIFT) | XEN_VERSION_MINOR;
/// Extra version string reported by `XENVER_extraversion` (NUL padded into 16 bytes).
pub const XEN_EXTRAVERSION: &str = ".0-oxen";
/// Capabilities string reported by `XENVER_capabilities`.
pub const XEN_CAPABILITIES: &str = "xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64";
/// Changeset string reported by `XENVER_changeset`.
pub const XEN_CHANGESET: &str = "oxen";
/// Compiler string reported in `XENVER_compile_info`.
pub const XEN_COMPILER: &str = "rustc";
/// Page size reported by `XENVER_pagesize`.
pub const XEN_PAGESIZE: u64 = crate::XEN_PAGE_SIZE as u64;

/// Latest interface version of the public headers (`__XEN_LATEST_INTERFACE_VERSION__`).
pub const XEN_LATEST_INTERFACE_VERSION: u32 = 0x0004_0e00;

/// Length of `xen_extraversion_t` (`XEN_EXTRAVERSION_LEN`).
pub const XEN_EXTRAVERSION_LEN: usize = 16;
/// Length of `xen_capabilities_info_t`.
pub const XEN_CAPABILITIES_INFO_LEN: usize = 1024;
/// Length of `xen_changeset_info_t`.
pub const XEN_CHANGESET_INFO_LEN: usize = 64;
/// Length of `xen_commandline_t`.
pub const XEN_COMMANDLINE_LEN: usize = 1024;

/// Copies `s` into a zeroed fixed buffer, truncating so a NUL always remains.
pub const fn c_string<const N: usize>(s: &str) -> [u8; N] {
    let b = s.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < b.len() && i + 1 < N {
        out[i] = b[i];
        i += 1;
    }
    out
}

/// Returns the bytes of a NUL-terminated fixed buffer up to the first NUL.
pub fn c_str_bytes(buf: &[u8]) -> &[u8] {
    let n = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    &buf[..n]
}

abi_struct! {
    /// `xen_extraversion_t`: NUL-terminated extra version, written by Xen.
    pub struct XenExtraversion {
        /// The string bytes.
        pub bytes: [u8; XEN_EXTRAVERSION_LEN],
    }
}

abi_struct! {
    /// `xen_capabilities_info_t`: NUL-terminated capabilities list, written by Xen.
    pub struct XenCapabilitiesInfo {
        /// The string bytes.
        pub bytes: [u8; XEN_CAPABILITIES_INFO_LEN],
    }
}

abi_struct! {
    /// `xen_changeset_info_t`: NUL-terminated source changeset, written by Xen.
    pub struct XenChangesetInfo {
        /// The string bytes.
        pub bytes: [u8; XEN_CHANGESET_INFO_LEN],
    }
}

abi_struct! {
    /// `xen_commandline_t`: Xen's own command line, written by Xen.
    pub struct XenCommandline {
        /// The string bytes.
        pub bytes: [u8; XEN_COMMANDLINE_LEN],
    }
}

abi_struct! {
    /// `xen_domain_handle_t` as a `XENVER_guest_handle` buffer, written by Xen.
    pub struct XenDomainHandleBuf {
        /// The 16-byte handle (UUID).
        pub bytes: crate::xen::XenDomainHandle,
    }
}

/// Length of `xen_compile_info.compiler`.
pub const XEN_COMPILER_LEN: usize = 64;
/// Length of `xen_compile_info.compile_by`.
pub const XEN_COMPILE_BY_LEN: usize = 16;
/// Length of `xen_compile_info.compile_domain`.
pub const XEN_COMPILE_DOMAIN_LEN: usize = 32;
/// Length of `xen_compile_info.compile_date`.
pub const XEN_COMPILE_DATE_LEN: usize = 32;

abi_struct! {
    /// `struct xen_compile_info`, written by Xen.
    pub struct XenCompileInfo {
        /// Compiler identification.
        pub compiler: [u8; XEN_COMPILER_LEN],
        /// User who built Xen.
        pub compile_by: [u8; XEN_COMPILE_BY_LEN],
        /// Build host domain.
        pub compile_domain: [u8; XEN_COMPILE_DOMAIN_LEN],
        /// Build date.
        pub compile_date: [u8; XEN_COMPILE_DATE_LEN],
    }
}

abi_struct! {
    /// `struct xen_platform_parameters`, written by Xen.
    pub struct XenPlatformParameters {
        /// Start of the hypervisor hole ([`crate::arch_x86::HYPERVISOR_VIRT_START`]).
        pub virt_start: u64,
    }
}

abi_struct! {
    /// `struct xen_feature_info` for `XENVER_get_features`: the guest writes
    /// `submap_idx`, Xen writes the 32 feature bits of that submap.
    pub struct XenFeatureInfo {
        /// Which 32-bit group of `XENFEAT_*` bits (input).
        pub submap_idx: u32,
        /// Bit N set = feature `32 * submap_idx + N` present (output).
        pub submap: u32,
    }
}

abi_struct! {
    /// Header of `xen_build_id_t` for `XENVER_build_id`: the guest sets `len`
    /// to its buffer size; Xen writes the id bytes after the header and returns
    /// their count.
    pub struct XenBuildIdHeader {
        /// Buffer length (input).
        pub len: u32,
    }
}

/// Number of 32-bit feature submaps (`XENFEAT_NR_SUBMAPS`).
pub const XENFEAT_NR_SUBMAPS: u32 = 1;

abi_enum! {
    /// Feature bit numbers reported by `XENVER_get_features` (`XENFEAT_*`).
    pub enum XenFeature: u32, raw u64 {
        /// Guest may write its page tables directly (trapped and emulated).
        WritablePageTables = 0 => "XENFEAT_writable_page_tables",
        /// Guest may write its descriptor tables directly.
        WritableDescriptorTables = 1 => "XENFEAT_writable_descriptor_tables",
        /// Guest physical addresses are translated by Xen (HVM/PVH).
        AutoTranslatedPhysmap = 2 => "XENFEAT_auto_translated_physmap",
        /// Guest kernel runs in ring 0.
        SupervisorModeKernel = 3 => "XENFEAT_supervisor_mode_kernel",
        /// PAE page directories may live above 4 GiB.
        PaePgdirAbove4gb = 4 => "XENFEAT_pae_pgdir_above_4gb",
        /// `MMU_PT_UPDATE_PRESERVE_AD` is supported.
        MmuPtUpdatePreserveAd = 5 => "XENFEAT_mmu_pt_update_preserve_ad",
        /// x86 highmem assist (32-bit only).
        HighmemAssist = 6 => "XENFEAT_highmem_assist",
        /// `GNTMAP_guest_avail*` bits are available in grant mappings.
        GnttabMapAvailBits = 7 => "XENFEAT_gnttab_map_avail_bits",
        /// HVM guest may use a callback vector for events.
        HvmCallbackVector = 8 => "XENFEAT_hvm_callback_vector",
        /// HVM pvclock is safe to use.
        HvmSafePvclock = 9 => "XENFEAT_hvm_safe_pvclock",
        /// HVM guest may remap PIRQs to event channels.
        HvmPirqs = 10 => "XENFEAT_hvm_pirqs",
        /// The domain is the hardware/control domain.
        Dom0 = 11 => "XENFEAT_dom0",
        /// `XENMEM_get_vnumainfo` with vnode info is supported.
        MemoryOpVnodeSupported = 13 => "XENFEAT_memory_op_vnode_supported",
        /// ARM SMCCC is supported (ARM only).
        ArmSmcccSupported = 14 => "XENFEAT_ARM_SMCCC_supported",
        /// Linux may use any RSDP location.
        LinuxRsdpUnrestricted = 15 => "XENFEAT_linux_rsdp_unrestricted",
        /// Guest memory is not 1:1 (ARM).
        NotDirectMapped = 16 => "XENFEAT_not_direct_mapped",
        /// Guest memory is 1:1 (ARM).
        DirectMapped = 17 => "XENFEAT_direct_mapped",
    }
}

impl XenFeature {
    /// The `submap_idx` holding this feature.
    pub const fn submap_idx(self) -> u32 {
        self as u32 / 32
    }
    /// This feature's bit within its submap.
    pub const fn submap_bit(self) -> u32 {
        1 << (self as u32 % 32)
    }
}

zeroed_default!(
    XenExtraversion,
    XenCapabilitiesInfo,
    XenChangesetInfo,
    XenCommandline,
    XenDomainHandleBuf,
    XenCompileInfo,
    XenPlatformParameters,
    XenFeatureInfo,
    XenBuildIdHeader,
);
