//! `__HYPERVISOR_grant_table_op` (`public/grant_table.h`): grant entries (v1
//! and v2) that a granting domain writes in its shared grant table, the `GTF_*`
//! / `GNTMAP_*` flags, `GNTST_*` status codes, and all operation structs.

use crate::{DomId, GrantHandle, GrantRef, GuestHandle, XenPfn};

abi_enum! {
    /// `__HYPERVISOR_grant_table_op` commands (`GNTTABOP_*`); call is
    /// `grant_table_op(cmd, uop, count)` with `uop` an array of `count` structs.
    pub enum GnttabOp: u32, raw u64 {
        /// Map foreign grants; [`GnttabMapGrantRef`].
        MapGrantRef = 0 => "GNTTABOP_map_grant_ref",
        /// Unmap grants; [`GnttabUnmapGrantRef`].
        UnmapGrantRef = 1 => "GNTTABOP_unmap_grant_ref",
        /// Size the table and get its frames; [`GnttabSetupTable`].
        SetupTable = 2 => "GNTTABOP_setup_table",
        /// Dump the table to the Xen console (debug); [`GnttabDumpTable`].
        DumpTable = 3 => "GNTTABOP_dump_table",
        /// Transfer page ownership; [`GnttabTransfer`].
        Transfer = 4 => "GNTTABOP_transfer",
        /// Copy between granted/local frames; [`GnttabCopy`].
        Copy = 5 => "GNTTABOP_copy",
        /// Query current and maximum table size; [`GnttabQuerySize`].
        QuerySize = 6 => "GNTTABOP_query_size",
        /// Unmap and replace with another mapping; [`GnttabUnmapAndReplace`].
        UnmapAndReplace = 7 => "GNTTABOP_unmap_and_replace",
        /// Select grant table version 1 or 2; [`GnttabSetVersion`].
        SetVersion = 8 => "GNTTABOP_set_version",
        /// Get v2 status frames; [`GnttabGetStatusFrames`].
        GetStatusFrames = 9 => "GNTTABOP_get_status_frames",
        /// Query the table version; [`GnttabGetVersion`].
        GetVersion = 10 => "GNTTABOP_get_version",
        /// Swap two grant entries; [`GnttabSwapGrantRef`].
        SwapGrantRef = 11 => "GNTTABOP_swap_grant_ref",
        /// Cache maintenance on granted frames; [`GnttabCacheFlush`].
        CacheFlush = 12 => "GNTTABOP_cache_flush",
    }
}

abi_enum! {
    /// Per-operation status codes written by Xen into the `status` fields (`GNTST_*`).
    pub enum GntStatus: i16, raw i64 {
        /// Success.
        Okay = 0 => "GNTST_okay",
        /// Unspecified error.
        GeneralError = -1 => "GNTST_general_error",
        /// Unrecognised domain id.
        BadDomain = -2 => "GNTST_bad_domain",
        /// Unrecognised or inappropriate grant reference.
        BadGntref = -3 => "GNTST_bad_gntref",
        /// Unrecognised or inappropriate handle.
        BadHandle = -4 => "GNTST_bad_handle",
        /// Inappropriate virtual address to map.
        BadVirtAddr = -5 => "GNTST_bad_virt_addr",
        /// Inappropriate device address to unmap.
        BadDevAddr = -6 => "GNTST_bad_dev_addr",
        /// Out of space in the I/O MMU.
        NoDeviceSpace = -7 => "GNTST_no_device_space",
        /// Not enough privilege for the operation.
        PermissionDenied = -8 => "GNTST_permission_denied",
        /// Specified page was invalid for the operation.
        BadPage = -9 => "GNTST_bad_page",
        /// Copy arguments cross a page boundary.
        BadCopyArg = -10 => "GNTST_bad_copy_arg",
        /// Transfer page address too large.
        AddressTooBig = -11 => "GNTST_address_too_big",
        /// Operation not done; try again.
        Eagain = -12 => "GNTST_eagain",
        /// Out of space (handles etc.).
        NoSpace = -13 => "GNTST_no_space",
    }
}

// GTF_* (grant entry flags) -------------------------------------------------

/// Entry type: not in use.
pub const GTF_INVALID: u16 = 0;
/// Entry type: allow `domid` to map/access `frame`.
pub const GTF_PERMIT_ACCESS: u16 = 1;
/// Entry type: allow `domid` to transfer a frame to us.
pub const GTF_ACCEPT_TRANSFER: u16 = 2;
/// Entry type (v2): transitive grant of another domain's grant.
pub const GTF_TRANSITIVE: u16 = 3;
/// Mask of the entry type.
pub const GTF_TYPE_MASK: u16 = 3;
/// Access: the grantee may only map read-only.
pub const GTF_READONLY: u16 = 1 << 2;
/// Status (set by Xen): the grantee is reading the frame.
pub const GTF_READING: u16 = 1 << 3;
/// Status (set by Xen): the grantee is writing the frame.
pub const GTF_WRITING: u16 = 1 << 4;
/// Cache attribute: PWT.
pub const GTF_PWT: u16 = 1 << 5;
/// Cache attribute: PCD.
pub const GTF_PCD: u16 = 1 << 6;
/// Cache attribute: PAT.
pub const GTF_PAT: u16 = 1 << 7;
/// v2: sub-page grant (`sub_page` form).
pub const GTF_SUB_PAGE: u16 = 1 << 8;
/// Transfer: Xen has committed to transferring a frame.
pub const GTF_TRANSFER_COMMITTED: u16 = 1 << 2;
/// Transfer: the frame has been transferred (`frame` is valid).
pub const GTF_TRANSFER_COMPLETED: u16 = 1 << 3;

// GNTMAP_* (map flags) ------------------------------------------------------

/// Map for device (DMA) access; returns `dev_bus_addr`.
pub const GNTMAP_DEVICE_MAP: u32 = 1 << 0;
/// Map for host (CPU) access at `host_addr`.
pub const GNTMAP_HOST_MAP: u32 = 1 << 1;
/// Map read-only.
pub const GNTMAP_READONLY: u32 = 1 << 2;
/// Map accessible from guest user mode.
pub const GNTMAP_APPLICATION_MAP: u32 = 1 << 3;
/// `host_addr` is the machine address of a PTE to update.
pub const GNTMAP_CONTAINS_PTE: u32 = 1 << 4;
/// First guest-available PTE bit (with `XENFEAT_gnttab_map_avail_bits`).
pub const GNTMAP_GUEST_AVAIL0: u32 = 1 << 16;
/// Mask of guest-available PTE bits.
pub const GNTMAP_GUEST_AVAIL_MASK: u32 = 0xffff_0000;

// GNTCOPY_* -----------------------------------------------------------------

/// `gnttab_copy.flags`: `source.u` is a grant ref (else a GMFN).
pub const GNTCOPY_SOURCE_GREF: u16 = 1 << 0;
/// `gnttab_copy.flags`: `dest.u` is a grant ref (else a GMFN).
pub const GNTCOPY_DEST_GREF: u16 = 1 << 1;

// GNTTAB_CACHE_* -------------------------------------------------------------

/// `gnttab_cache_flush.op`: clean (write back).
pub const GNTTAB_CACHE_CLEAN: u32 = 1 << 0;
/// `gnttab_cache_flush.op`: invalidate.
pub const GNTTAB_CACHE_INVAL: u32 = 1 << 1;
/// `gnttab_cache_flush.op`: `a` is a grant ref (else a bus address).
pub const GNTTAB_CACHE_SOURCE_GREF: u32 = 1 << 31;

/// Number of grant entries reserved for the toolstack (`GNTTAB_NR_RESERVED_ENTRIES`).
pub const GNTTAB_NR_RESERVED_ENTRIES: u32 = 8;
/// Reserved grant for the console ring (`GNTTAB_RESERVED_CONSOLE`).
pub const GNTTAB_RESERVED_CONSOLE: GrantRef = 0;
/// Reserved grant for the xenstore ring (`GNTTAB_RESERVED_XENSTORE`).
pub const GNTTAB_RESERVED_XENSTORE: GrantRef = 1;

/// v2 grant status word (`grant_status_t`): `GTF_reading`/`GTF_writing`.
pub type GrantStatus = u16;

// Entries -------------------------------------------------------------------

abi_struct! {
    /// A version-1 grant entry (`struct grant_entry_v1`), written by the
    /// granting domain (`flags` last, after a write barrier); Xen updates the
    /// `GTF_reading`/`GTF_writing` bits of `flags`.
    pub struct GrantEntryV1 {
        /// `GTF_*` type, access and status bits.
        pub flags: u16,
        /// Domain being granted access.
        pub domid: DomId,
        /// Frame being granted (or, for transfers, the frame received).
        pub frame: u32,
    }
}

abi_struct! {
    /// Common header of v2 grant entries (`struct grant_entry_header`).
    pub struct GrantEntryHeader {
        /// `GTF_*` type and access bits.
        pub flags: u16,
        /// Domain being granted access.
        pub domid: DomId,
    }
}

abi_struct! {
    /// `grant_entry_v2.full_page`: grant of a whole frame.
    pub struct GrantEntryV2FullPage {
        /// Header.
        pub hdr: GrantEntryHeader,
        /// Padding.
        pub pad0: u32,
        /// Frame.
        pub frame: u64,
    }
}

abi_struct! {
    /// `grant_entry_v2.sub_page`: grant of a byte range of a frame (`GTF_sub_page`).
    pub struct GrantEntryV2SubPage {
        /// Header.
        pub hdr: GrantEntryHeader,
        /// Byte offset of the range.
        pub page_off: u16,
        /// Length of the range.
        pub length: u16,
        /// Frame.
        pub frame: u64,
    }
}

abi_struct! {
    /// `grant_entry_v2.transitive`: re-grant of another domain's grant. The C
    /// struct is 12 bytes; `_tail` is the rest of the 16-byte union.
    pub struct GrantEntryV2Transitive {
        /// Header.
        pub hdr: GrantEntryHeader,
        /// Domain that granted us `gref`.
        pub trans_domid: DomId,
        /// Padding.
        pub pad0: u16,
        /// Grant reference in `trans_domid`'s table.
        pub gref: GrantRef,
        /// Rest of the union.
        pub _tail: u32,
    }
}

abi_struct! {
    /// A version-2 grant entry (`union grant_entry_v2`, 16 bytes), stored raw;
    /// use the view accessors for the `full_page`, `sub_page` and `transitive` forms.
    pub struct GrantEntryV2 {
        /// Raw union storage (`__spacer[4]`).
        pub raw: [u64; 2],
    }
}

impl GrantEntryV2 {
    /// The common header.
    pub fn hdr(&self) -> GrantEntryHeader {
        self.full_page().hdr
    }
    /// `full_page` view.
    pub fn full_page(&self) -> GrantEntryV2FullPage {
        zerocopy::transmute!(self.raw)
    }
    /// `sub_page` view.
    pub fn sub_page(&self) -> GrantEntryV2SubPage {
        zerocopy::transmute!(self.raw)
    }
    /// `transitive` view.
    pub fn transitive(&self) -> GrantEntryV2Transitive {
        zerocopy::transmute!(self.raw)
    }
    /// Builds an entry from its `full_page` form.
    pub fn from_full_page(v: GrantEntryV2FullPage) -> Self {
        Self {
            raw: zerocopy::transmute!(v),
        }
    }
    /// Builds an entry from its `sub_page` form.
    pub fn from_sub_page(v: GrantEntryV2SubPage) -> Self {
        Self {
            raw: zerocopy::transmute!(v),
        }
    }
    /// Builds an entry from its `transitive` form.
    pub fn from_transitive(v: GrantEntryV2Transitive) -> Self {
        Self {
            raw: zerocopy::transmute!(v),
        }
    }
}

// Operations ----------------------------------------------------------------

abi_struct! {
    /// `GNTTABOP_map_grant_ref`: caller fills the first four fields; Xen writes
    /// `status`, `handle` and `dev_bus_addr`.
    pub struct GnttabMapGrantRef {
        /// Where to map (VA, or PTE machine address with `GNTMAP_contains_pte`).
        pub host_addr: u64,
        /// `GNTMAP_*` flags.
        pub flags: u32,
        /// Grant reference in `dom`'s table.
        pub r#ref: GrantRef,
        /// Granting domain.
        pub dom: DomId,
        /// [`GntStatus`] (output).
        pub status: i16,
        /// Handle for unmapping (output).
        pub handle: GrantHandle,
        /// Bus address for device mappings (output).
        pub dev_bus_addr: u64,
    }
}

abi_struct! {
    /// `GNTTABOP_unmap_grant_ref`: caller fills addresses and handle; Xen writes `status`.
    pub struct GnttabUnmapGrantRef {
        /// Host address that was mapped (0 if none).
        pub host_addr: u64,
        /// Device address that was mapped (0 if none).
        pub dev_bus_addr: u64,
        /// Handle from the map operation.
        pub handle: GrantHandle,
        /// [`GntStatus`] (output).
        pub status: i16,
        /// Implicit C padding; zero.
        pub _pad22: u16,
    }
}

abi_struct! {
    /// `GNTTABOP_setup_table`: grow `dom`'s table to `nr_frames` and return its
    /// frames in `frame_list`.
    pub struct GnttabSetupTable {
        /// Domain (`DOMID_SELF` or a privileged target).
        pub dom: DomId,
        /// Implicit C padding; zero.
        pub _pad2: u16,
        /// Number of frames wanted.
        pub nr_frames: u32,
        /// [`GntStatus`] (output).
        pub status: i16,
        /// Implicit C padding; zero.
        pub _pad10: [u16; 3],
        /// Handle of an array of `xen_pfn_t` (output).
        pub frame_list: GuestHandle,
    }
}

abi_struct! {
    /// `GNTTABOP_dump_table`.
    pub struct GnttabDumpTable {
        /// Domain.
        pub dom: DomId,
        /// [`GntStatus`] (output).
        pub status: i16,
    }
}

abi_struct! {
    /// `GNTTABOP_transfer`: give frame `mfn` to `domid` via its grant `ref`.
    pub struct GnttabTransfer {
        /// Frame to transfer.
        pub mfn: XenPfn,
        /// Receiving domain.
        pub domid: DomId,
        /// Implicit C padding; zero.
        pub _pad10: u16,
        /// Receiver's `GTF_accept_transfer` grant.
        pub r#ref: GrantRef,
        /// [`GntStatus`] (output).
        pub status: i16,
        /// Implicit C padding; zero.
        pub _pad18: [u16; 3],
    }
}

abi_struct! {
    /// One side of a [`GnttabCopy`] (`struct gnttab_copy_ptr`).
    pub struct GnttabCopyPtr {
        /// Union `u`: grant ref (u32, with `GNTCOPY_*_gref`) or GMFN.
        pub u: u64,
        /// Domain owning the frame.
        pub domid: DomId,
        /// Byte offset within the frame.
        pub offset: u16,
        /// Implicit C padding; zero.
        pub _pad12: u32,
    }
}

impl GnttabCopyPtr {
    /// `u.ref`.
    pub const fn gref(&self) -> GrantRef {
        self.u as u32
    }
    /// `u.gmfn`.
    pub const fn gmfn(&self) -> XenPfn {
        self.u
    }
}

abi_struct! {
    /// `GNTTABOP_copy`: copy `len` bytes from `source` to `dest`.
    pub struct GnttabCopy {
        /// Source.
        pub source: GnttabCopyPtr,
        /// Destination.
        pub dest: GnttabCopyPtr,
        /// Number of bytes (must not cross a page on either side).
        pub len: u16,
        /// `GNTCOPY_*` flags.
        pub flags: u16,
        /// [`GntStatus`] (output).
        pub status: i16,
        /// Implicit C padding; zero.
        pub _pad38: u16,
    }
}

abi_struct! {
    /// `GNTTABOP_query_size`.
    pub struct GnttabQuerySize {
        /// Domain.
        pub dom: DomId,
        /// Implicit C padding; zero.
        pub _pad2: u16,
        /// Current frames (output).
        pub nr_frames: u32,
        /// Maximum frames (output).
        pub max_nr_frames: u32,
        /// [`GntStatus`] (output).
        pub status: i16,
        /// Implicit C padding; zero.
        pub _pad14: u16,
    }
}

abi_struct! {
    /// `GNTTABOP_unmap_and_replace`.
    pub struct GnttabUnmapAndReplace {
        /// Address of the grant mapping to remove.
        pub host_addr: u64,
        /// Address whose mapping is moved to `host_addr` (then zapped).
        pub new_addr: u64,
        /// Grant handle.
        pub handle: GrantHandle,
        /// [`GntStatus`] (output).
        pub status: i16,
        /// Implicit C padding; zero.
        pub _pad22: u16,
    }
}

abi_struct! {
    /// `GNTTABOP_set_version`: request version 1 or 2; Xen writes the result.
    pub struct GnttabSetVersion {
        /// Version (in/out).
        pub version: u32,
    }
}

abi_struct! {
    /// `GNTTABOP_get_status_frames` (v2).
    pub struct GnttabGetStatusFrames {
        /// Number of frames wanted.
        pub nr_frames: u32,
        /// Domain.
        pub dom: DomId,
        /// [`GntStatus`] (output).
        pub status: i16,
        /// Handle of a `u64` frame array (output).
        pub frame_list: GuestHandle,
    }
}

abi_struct! {
    /// `GNTTABOP_get_version`.
    pub struct GnttabGetVersion {
        /// Domain.
        pub dom: DomId,
        /// Padding.
        pub pad: u16,
        /// Version (output).
        pub version: u32,
    }
}

abi_struct! {
    /// `GNTTABOP_swap_grant_ref` (v2 debugging aid).
    pub struct GnttabSwapGrantRef {
        /// First entry.
        pub ref_a: GrantRef,
        /// Second entry.
        pub ref_b: GrantRef,
        /// [`GntStatus`] (output).
        pub status: i16,
        /// Implicit C padding; zero.
        pub _pad10: u16,
    }
}

abi_struct! {
    /// `GNTTABOP_cache_flush`.
    pub struct GnttabCacheFlush {
        /// Union `a`: bus address, or grant ref with `GNTTAB_CACHE_SOURCE_GREF`.
        pub a: u64,
        /// Byte offset.
        pub offset: u16,
        /// Length.
        pub length: u16,
        /// `GNTTAB_CACHE_*` operation bits.
        pub op: u32,
    }
}

zeroed_default!(
    GrantEntryV1,
    GrantEntryHeader,
    GrantEntryV2FullPage,
    GrantEntryV2SubPage,
    GrantEntryV2Transitive,
    GrantEntryV2,
    GnttabMapGrantRef,
    GnttabUnmapGrantRef,
    GnttabSetupTable,
    GnttabDumpTable,
    GnttabTransfer,
    GnttabCopyPtr,
    GnttabCopy,
    GnttabQuerySize,
    GnttabUnmapAndReplace,
    GnttabSetVersion,
    GnttabGetStatusFrames,
    GnttabGetVersion,
    GnttabSwapGrantRef,
    GnttabCacheFlush,
);
