//! `__HYPERVISOR_memory_op` (`public/memory.h`): reservations, physmap
//! manipulation, memory maps, M2P discovery and the tool-only paging, sharing,
//! access and resource sub-ops. The call is `memory_op(cmd, arg)`.

use crate::{DomId, GuestHandle, XenPfn, XenUlong};

abi_enum! {
    /// `__HYPERVISOR_memory_op` commands (`XENMEM_*`). For the reservation ops
    /// the upper bits of `cmd` (from bit 6, `MEMOP_EXTENT_SHIFT`) carry a
    /// continuation start extent; use [`memop_cmd`] to split it.
    pub enum MemoryOp: u32, raw u64 {
        /// Allocate extents to a domain; [`XenMemoryReservation`].
        IncreaseReservation = 0 => "XENMEM_increase_reservation",
        /// Release extents; [`XenMemoryReservation`].
        DecreaseReservation = 1 => "XENMEM_decrease_reservation",
        /// Highest machine frame of the host (return value).
        MaximumRamPage = 2 => "XENMEM_maximum_ram_page",
        /// Current pages of a domain (arg: `domid_t`).
        CurrentReservation = 3 => "XENMEM_current_reservation",
        /// Maximum pages of a domain (arg: `domid_t`).
        MaximumReservation = 4 => "XENMEM_maximum_reservation",
        /// Frames of the M2P table; [`XenMachphysMfnList`].
        MachphysMfnList = 5 => "XENMEM_machphys_mfn_list",
        /// Populate guest physical frames; [`XenMemoryReservation`].
        PopulatePhysmap = 6 => "XENMEM_populate_physmap",
        /// Map a special page into the physmap; [`XenAddToPhysmap`].
        AddToPhysmap = 7 => "XENMEM_add_to_physmap",
        /// The domain's pseudo-physical E820; [`XenMemoryMap`].
        MemoryMap = 9 => "XENMEM_memory_map",
        /// The host E820 (control domain); [`XenMemoryMap`].
        MachineMemoryMap = 10 => "XENMEM_machine_memory_map",
        /// Exchange extents; [`XenMemoryExchange`].
        Exchange = 11 => "XENMEM_exchange",
        /// Location of the M2P table; [`XenMachphysMapping`].
        MachphysMapping = 12 => "XENMEM_machphys_mapping",
        /// Set a domain's E820 (tools); [`XenForeignMemoryMap`].
        SetMemoryMap = 13 => "XENMEM_set_memory_map",
        /// Highest GPFN of a domain (arg: `domid_t`).
        MaximumGpfn = 14 => "XENMEM_maximum_gpfn",
        /// Remove a page from the physmap; [`XenRemoveFromPhysmap`].
        RemoveFromPhysmap = 15 => "XENMEM_remove_from_physmap",
        /// Set the populate-on-demand target (tools).
        SetPodTarget = 16 => "XENMEM_set_pod_target",
        /// Get the populate-on-demand target (tools).
        GetPodTarget = 17 => "XENMEM_get_pod_target",
        /// Pages freed by sharing.
        GetSharingFreedPages = 18 => "XENMEM_get_sharing_freed_pages",
        /// Pages currently shared.
        GetSharingSharedPages = 19 => "XENMEM_get_sharing_shared_pages",
        /// Paging operations (tools, [`MemPagingOp`]).
        PagingOp = 20 => "XENMEM_paging_op",
        /// Memory access operations (tools, [`MemAccessOp`]).
        AccessOp = 21 => "XENMEM_access_op",
        /// Memory sharing operations (tools, [`MemSharingOp`]).
        SharingOp = 22 => "XENMEM_sharing_op",
        /// Batched add_to_physmap; [`XenAddToPhysmapBatch`].
        AddToPhysmapBatch = 23 => "XENMEM_add_to_physmap_batch",
        /// Claim pages for a domain being built (tools).
        ClaimPages = 24 => "XENMEM_claim_pages",
        /// Compat M2P frames (32-bit guests).
        MachphysCompatMfnList = 25 => "XENMEM_machphys_compat_mfn_list",
        /// vNUMA topology of the caller.
        GetVnumainfo = 26 => "XENMEM_get_vnumainfo",
        /// Reserved device memory regions.
        ReservedDeviceMemoryMap = 27 => "XENMEM_reserved_device_memory_map",
        /// Map a resource (grant table, ioreq pages, vmtrace buffer) of a domain.
        AcquireResource = 28 => "XENMEM_acquire_resource",
    }
}

/// Bit position of the continuation extent in a reservation `cmd`.
pub const MEMOP_EXTENT_SHIFT: u32 = 6;
/// Mask of the command part of a memory_op `cmd`.
pub const MEMOP_CMD_MASK: u64 = (1 << MEMOP_EXTENT_SHIFT) - 1;

/// Splits a raw `memory_op` command into the command and the start extent.
pub const fn memop_cmd(raw: u64) -> (Option<MemoryOp>, u64) {
    (
        MemoryOp::from_raw(raw & MEMOP_CMD_MASK),
        raw >> MEMOP_EXTENT_SHIFT,
    )
}

// mem_flags -----------------------------------------------------------------

/// Mask of the NUMA node field after shifting.
pub const XENMEMF_NODE_MASK: u32 = 0xff;
/// Mask of `XENMEMF_address_bits(x)`: restrict allocation below 2^x (0 = no limit).
pub const XENMEMF_ADDRESS_BITS_MASK: u32 = 0xff;
/// Bit position of the NUMA node field (`XENMEMF_node(n)` = (n + 1) << 8).
pub const XENMEMF_NODE_SHIFT: u32 = 8;
/// Allocate populate-on-demand entries.
pub const XENMEMF_POPULATE_ON_DEMAND: u32 = 1 << 16;
/// Fail rather than fall back to another node.
pub const XENMEMF_EXACT_NODE_REQUEST: u32 = 1 << 17;
/// The node number is a virtual node.
pub const XENMEMF_VNODE: u32 = 1 << 18;

/// `XENMEMF_node(n)`.
pub const fn xenmemf_node(n: u32) -> u32 {
    ((n + 1) & XENMEMF_NODE_MASK) << XENMEMF_NODE_SHIFT
}

/// `XENMEMF_get_node(flags)`: `None` if no node was requested.
pub const fn xenmemf_get_node(flags: u32) -> Option<u32> {
    let n = (flags >> XENMEMF_NODE_SHIFT) & XENMEMF_NODE_MASK;
    if n == 0 {
        None
    } else {
        Some(n - 1)
    }
}

abi_struct! {
    /// Argument of increase/decrease_reservation and populate_physmap
    /// (`struct xen_memory_reservation`), written by the caller. Xen writes
    /// MFNs into `extent_start` for increase_reservation; returns the number of
    /// extents done.
    pub struct XenMemoryReservation {
        /// Handle of a `xen_pfn_t` array (GPFNs in, or MFNs out).
        pub extent_start: GuestHandle,
        /// Number of extents.
        pub nr_extents: XenUlong,
        /// Each extent is 2^extent_order pages.
        pub extent_order: u32,
        /// `XENMEMF_*` flags.
        pub mem_flags: u32,
        /// Target domain.
        pub domid: DomId,
        /// Implicit C padding; zero.
        pub _pad26: [u16; 3],
    }
}

abi_struct! {
    /// Argument of `XENMEM_exchange` (`struct xen_memory_exchange`).
    pub struct XenMemoryExchange {
        /// Extents given up.
        pub r#in: XenMemoryReservation,
        /// Extents received.
        pub out: XenMemoryReservation,
        /// Extents exchanged so far (output, and input for continuation).
        pub nr_exchanged: XenUlong,
    }
}

abi_struct! {
    /// Argument of `XENMEM_machphys_mfn_list` (`struct xen_machphys_mfn_list`).
    pub struct XenMachphysMfnList {
        /// Size of the caller's array.
        pub max_extents: u32,
        /// Implicit C padding; zero.
        pub _pad4: u32,
        /// Handle of a `xen_pfn_t` array (output: M2P frames, 2 MiB each).
        pub extent_start: GuestHandle,
        /// Entries written (output).
        pub nr_extents: u32,
        /// Implicit C padding; zero.
        pub _pad20: u32,
    }
}

abi_struct! {
    /// Argument of `XENMEM_machphys_mapping`, written by Xen.
    pub struct XenMachphysMapping {
        /// Start of the M2P mapping in the guest address space.
        pub v_start: XenUlong,
        /// End of the M2P mapping.
        pub v_end: XenUlong,
        /// Highest MFN covered.
        pub max_mfn: XenUlong,
    }
}

abi_enum! {
    /// `xen_add_to_physmap.space` (`XENMAPSPACE_*`).
    pub enum XenMapSpace: u32, raw u64 {
        /// The shared info page (`idx` = 0).
        SharedInfo = 0 => "XENMAPSPACE_shared_info",
        /// Grant table frame `idx` (| `XENMAPIDX_grant_table_status` for v2 status).
        GrantTable = 1 => "XENMAPSPACE_grant_table",
        /// Move GMFN `idx` to `gpfn`.
        Gmfn = 2 => "XENMAPSPACE_gmfn",
        /// Move `size` GMFNs starting at `idx`.
        GmfnRange = 3 => "XENMAPSPACE_gmfn_range",
        /// Map a foreign domain's GMFN (batch op).
        GmfnForeign = 4 => "XENMAPSPACE_gmfn_foreign",
        /// Device MMIO (ARM).
        DevMmio = 5 => "XENMAPSPACE_dev_mmio",
    }
}

/// `idx` flag for `XENMAPSPACE_grant_table`: map a status frame (v2).
pub const XENMAPIDX_GRANT_TABLE_STATUS: u64 = 0x8000_0000;

abi_struct! {
    /// Argument of `XENMEM_add_to_physmap` (`struct xen_add_to_physmap`).
    pub struct XenAddToPhysmap {
        /// Domain whose physmap changes.
        pub domid: DomId,
        /// Number of pages for `XENMAPSPACE_gmfn_range`.
        pub size: u16,
        /// A [`XenMapSpace`].
        pub space: u32,
        /// Index into the source space.
        pub idx: XenUlong,
        /// Guest frame to map at.
        pub gpfn: XenPfn,
    }
}

abi_struct! {
    /// `xen_add_to_physmap_batch.u` (`union xen_add_to_physmap_batch_extra`):
    /// `foreign_domid` for `XENMAPSPACE_gmfn_foreign`, else `res0` (zero).
    pub struct XenAddToPhysmapBatchExtra {
        /// Foreign domain (or `res0`).
        pub foreign_domid: DomId,
    }
}

abi_struct! {
    /// Argument of `XENMEM_add_to_physmap_batch`.
    pub struct XenAddToPhysmapBatch {
        /// Domain whose physmap changes.
        pub domid: DomId,
        /// A [`XenMapSpace`] (16 bits here).
        pub space: u16,
        /// Number of entries in the three arrays.
        pub size: u16,
        /// Extra (foreign domid).
        pub u: XenAddToPhysmapBatchExtra,
        /// Handle of `xen_ulong_t` indexes.
        pub idxs: GuestHandle,
        /// Handle of `xen_pfn_t` target GPFNs.
        pub gpfns: GuestHandle,
        /// Handle of `int` per-entry errors (output).
        pub errs: GuestHandle,
    }
}

abi_struct! {
    /// Argument of `XENMEM_remove_from_physmap`.
    pub struct XenRemoveFromPhysmap {
        /// Domain.
        pub domid: DomId,
        /// Implicit C padding; zero.
        pub _pad2: [u16; 3],
        /// Guest frame to unmap.
        pub gpfn: XenPfn,
    }
}

abi_struct! {
    /// Argument of `XENMEM_memory_map` / `machine_memory_map`
    /// (`struct xen_memory_map`): the caller sets `nr_entries` to its buffer's
    /// capacity; Xen writes E820 entries (20 bytes each) and the count.
    pub struct XenMemoryMap {
        /// Capacity in, entries written out.
        pub nr_entries: u32,
        /// Implicit C padding; zero.
        pub _pad4: u32,
        /// Handle of the E820 entry buffer.
        pub buffer: GuestHandle,
    }
}

abi_struct! {
    /// Argument of `XENMEM_set_memory_map` (`struct xen_foreign_memory_map`).
    pub struct XenForeignMemoryMap {
        /// Target domain.
        pub domid: DomId,
        /// Implicit C padding; zero.
        pub _pad2: [u16; 3],
        /// The map.
        pub map: XenMemoryMap,
    }
}

abi_struct! {
    /// A vNUMA memory range (`struct xen_vmemrange`).
    pub struct XenVmemrange {
        /// Start address.
        pub start: u64,
        /// End address.
        pub end: u64,
        /// Flags; zero.
        pub flags: u32,
        /// Virtual node id.
        pub nid: u32,
    }
}

/// Size of one E820 entry in a [`XenMemoryMap`] buffer (packed u64, u64, u32).
pub const E820_ENTRY_SIZE: usize = 20;

// Tool-only sub-op enums -----------------------------------------------------

abi_enum! {
    /// `XENMEM_access_op` sub-ops (`XENMEM_access_op_*`).
    pub enum MemAccessOp: u8, raw u64 {
        /// Set access rights.
        SetAccess = 0 => "XENMEM_access_op_set_access",
        /// Get access rights.
        GetAccess = 1 => "XENMEM_access_op_get_access",
        /// Set access rights for a list of pages.
        SetAccessMulti = 4 => "XENMEM_access_op_set_access_multi",
    }
}

abi_enum! {
    /// `XENMEM_paging_op` sub-ops (`XENMEM_paging_op_*`).
    pub enum MemPagingOp: u8, raw u64 {
        /// Nominate a page for paging out.
        Nominate = 0 => "XENMEM_paging_op_nominate",
        /// Evict a nominated page.
        Evict = 1 => "XENMEM_paging_op_evict",
        /// Prepare a page for paging in.
        Prep = 2 => "XENMEM_paging_op_prep",
    }
}

abi_enum! {
    /// `XENMEM_sharing_op` sub-ops (`XENMEM_sharing_op_*`).
    pub enum MemSharingOp: u8, raw u64 {
        /// Nominate a GFN for sharing.
        NominateGfn = 0 => "XENMEM_sharing_op_nominate_gfn",
        /// Nominate a grant ref for sharing.
        NominateGref = 1 => "XENMEM_sharing_op_nominate_gref",
        /// Share two nominated pages.
        Share = 2 => "XENMEM_sharing_op_share",
        /// Debug by GFN.
        DebugGfn = 3 => "XENMEM_sharing_op_debug_gfn",
        /// Debug by MFN.
        DebugMfn = 4 => "XENMEM_sharing_op_debug_mfn",
        /// Debug by grant ref.
        DebugGref = 5 => "XENMEM_sharing_op_debug_gref",
        /// Add a shared page to a physmap.
        AddPhysmap = 6 => "XENMEM_sharing_op_add_physmap",
        /// Audit sharing state.
        Audit = 7 => "XENMEM_sharing_op_audit",
        /// Share a range.
        RangeShare = 8 => "XENMEM_sharing_op_range_share",
        /// Fork a domain.
        Fork = 9 => "XENMEM_sharing_op_fork",
        /// Reset a fork.
        ForkReset = 10 => "XENMEM_sharing_op_fork_reset",
    }
}

/// Sharing error: invalid source handle.
pub const XENMEM_SHARING_OP_S_HANDLE_INVALID: i32 = -10;
/// Sharing error: invalid client handle.
pub const XENMEM_SHARING_OP_C_HANDLE_INVALID: i32 = -9;
/// Sharing: the gfn field holds a grant ref.
pub const XENMEM_SHARING_OP_FIELD_IS_GREF_FLAG: u64 = 1 << 62;

/// Fork flag: allow IOMMU in the fork.
pub const XENMEM_FORK_WITH_IOMMU_ALLOWED: u32 = 1 << 0;
/// Fork flag: block interrupts in the fork.
pub const XENMEM_FORK_BLOCK_INTERRUPTS: u32 = 1 << 1;
/// Fork reset flag: reset vCPU state.
pub const XENMEM_FORK_RESET_STATE: u32 = 1 << 2;
/// Fork reset flag: reset memory.
pub const XENMEM_FORK_RESET_MEMORY: u32 = 1 << 3;

/// `XENMEM_reserved_device_memory_map` flag: all devices.
pub const XENMEM_RDM_ALL: u32 = 1 << 0;

abi_enum! {
    /// `XENMEM_acquire_resource` types (`XENMEM_resource_*`).
    pub enum MemResourceType: u16, raw u64 {
        /// Pages of an ioreq server.
        IoreqServer = 0 => "XENMEM_resource_ioreq_server",
        /// Grant table frames.
        GrantTable = 1 => "XENMEM_resource_grant_table",
        /// vmtrace buffer.
        VmtraceBuf = 2 => "XENMEM_resource_vmtrace_buf",
    }
}

/// Ioreq server resource frame: buffered ioreq page (`frame_ioreq(n)` = 1 + n).
pub const XENMEM_RESOURCE_IOREQ_SERVER_FRAME_BUFIOREQ: u32 = 0;
/// Grant table resource id: shared frames.
pub const XENMEM_RESOURCE_GRANT_TABLE_ID_SHARED: u32 = 0;
/// Grant table resource id: status frames.
pub const XENMEM_RESOURCE_GRANT_TABLE_ID_STATUS: u32 = 1;

zeroed_default!(
    XenMemoryReservation,
    XenMemoryExchange,
    XenMachphysMfnList,
    XenMachphysMapping,
    XenAddToPhysmap,
    XenAddToPhysmapBatchExtra,
    XenAddToPhysmapBatch,
    XenRemoveFromPhysmap,
    XenMemoryMap,
    XenForeignMemoryMap,
    XenVmemrange,
);
