//! Page-table validation for PV guests: Xen's "direct paging". A PV guest's
//! page tables hold machine frame numbers and are live in the MMU, so every
//! entry must be checked before the hardware may use it, and the frames it
//! references must stay what the entry assumes for as long as it exists.
//!
//! **What it owns.** The rules for what a guest page-table entry may say and
//! the references each present entry holds, as Xen 4.17 keeps them
//! (xen/arch/x86/mm.c: `get_page_from_l[1-4]e`, `put_page_from_l[1-4]e`,
//! `promote_l[1-4]_table`/`demote_l[1-4]_table` (formerly
//! `alloc_/free_l*_table`), `mod_l[1-4]_entry`, `new_guest_cr3`, the
//! `MMUEXT_PIN_*`/`MMUEXT_UNPIN_TABLE`/`MMUEXT_NEW_USER_BASEPTR` cases of
//! `do_mmuext_op`, the `MMU_NORMAL_PT_UPDATE` case of `do_mmu_update`;
//! xen/arch/x86/include/asm/pv/mm.h: `adjust_guest_l[1-4]e`;
//! asm/x86_64/page.h and mm.c for the `*_DISALLOW_MASK` values):
//!
//! - An L1 entry holds a general reference on the frame it maps, plus a
//!   [`PageType::Writable`] type reference when it is writable. So a frame in
//!   use as a page table or descriptor page can never be mapped writable, and
//!   a frame mapped writable can never become one.
//! - An L2/L3/L4 entry holds a general and a type reference of the next level
//!   down on the table it points at; the first such reference validates that
//!   table (recursively), the last one devalidates it.
//! - Entries may only point at frames the domain owns. Bits Xen disallows are
//!   refused: PWT, PCD, PAT/PSE and (above L1) G; so no superpages and no
//!   guest-chosen cache attributes (the masks of a PV domain without I/O
//!   capabilities). A/D, U/S, R/W, NX and the software bits (9-11, 52-62) are
//!   the guest's.
//! - Slots 256..=271 of every L4 are the hypervisor's: validation skips them
//!   and fills them with [`PtContext::xen_l4_slots`] (`init_xen_l4_slots`),
//!   updates to them are refused.
//! - Entries are rewritten as Xen does for 64-bit PV guests, whose kernel runs
//!   in ring 3 ([`adjust_entry`]): every present entry gets U/S; an L1 entry
//!   the guest wrote without U/S (a kernel mapping) also gets Xen's
//!   `_PAGE_GUEST_KERNEL` (bit 52), the others get G (Xen's user mappings are
//!   global); L4 entries also get A.
//! - Validation is all-or-nothing: a failing entry undoes every reference
//!   taken for the table so far, including whole subtrees validated on the
//!   way. (Like Xen, entries before the failing one may keep the bits
//!   [`adjust_entry`] added; those change no reference.)
//!
//! Error codes are the ones Xen returns for the same input, see
//! [`PtError::errno`].
//!
//! **What it trusts.** The [`FrameTable`] (ownership, types, counts) and the
//! caller's claims about references it holds: `put_*` and `devalidate_*` drop
//! references the caller says exist. A refused put means the accounting is
//! already broken; it is logged and skipped, never wrapped or panicked on.
//! Nothing a guest hands over is trusted: every MFN, index, level and entry is
//! checked. [`PtMemory`] reads and writes the tables and is only asked about
//! frames the domain owns and that are in the frame table.
//!
//! **The glue's duties** (not expressible here): hold the frame-table lock
//! across a call; flush TLBs in [`PtMemory::flush_before_type_change`] (Xen
//! flushes in `_get_page_type` before a frame changes type: a stale writable
//! translation of a frame about to become a page table would let the guest
//! rewrite a validated table); give frames back to the allocator in
//! [`PtMemory::frame_freed`]; flush global translations (CR4.PGE toggle) when
//! switching to page tables of another domain or process, since guests may set
//! G on L1 entries and [`adjust_entry`] sets it on user mappings, as in Xen.
//! A builder that sets up a domain's first tables by hand must leave exactly
//! the references validation would have taken, including a general reference
//! for every read-only mapping of a page-table frame; simplest is to build the
//! tables and [`pin`] (or [`get_table`]) the L4, which validates them all.
//!
//! **Deliberate deviations from Xen 4.17:**
//! - No linear (recursive) page tables: an L2/L3/L4 entry pointing at a table
//!   of its own level is refused with `-EINVAL` ([`PtError::LinearPageTable`]).
//!   Xen accepts read-only ones when built with `CONFIG_PV_LINEAR_PT` (the
//!   default); its security history (XSA-240) argues for leaving them out.
//! - I/O memory as a plain permission ([`PtContext::iomem`], Xen's
//!   `iomem_caps` without `mmio_ro_ranges`): an L1 entry for a frame outside
//!   RAM or owned by `DOMID_IO` takes no reference and is allowed if the
//!   domain may map that frame, else refused with `-EPERM`; PWT/PCD/PAT are
//!   allowed in L1 entries of a domain with I/O memory (Xen's
//!   `l1_disallow_mask`). No read-only MMIO ranges.
//! - No foreign mappings (`pg_owner != pt_owner`), no `DOMID_XEN` pages: a
//!   frame owned by anyone but the domain is refused with Xen's `-EBUSY`.
//! - No preemption: validation and devalidation run to completion (Xen may
//!   return `-ERESTART` half-way). The work is bounded by the domain's own
//!   frames times 512, since a table is only validated on its 0→1 type
//!   reference.
//! - No L1TF checks of non-present entries (Xen's `pv_l1tf_check_*`, which
//!   shadows or crashes guests on vulnerable hardware).
//! - Validation and devalidation happen at once, not deferred to
//!   `old_guest_table` as in Xen's `mod_l[2-4]_entry` and `MMUEXT_UNPIN_TABLE`.

use core::fmt;

use hypercall_abi::errno::Errno;

use super::frame_table::{
    DomId, FrameTable, FrameTableError, FrameTableErrorKind, Owner, PageFlags, PageInfo, PagePut,
    PageType, TypeGet, TypePut,
};
use super::pte::{PteFlags, ADDR_MASK, ENTRIES};
use super::{Mfn, PAGE_SHIFT};

/// First L4 slot the hypervisor owns in every guest L4 (Xen's
/// `ROOT_PAGETABLE_FIRST_XEN_SLOT`).
pub const XEN_L4_FIRST_SLOT: usize = 256;
/// Number of hypervisor L4 slots (Xen's `ROOT_PAGETABLE_XEN_SLOTS`): 256..=271.
pub const XEN_L4_SLOT_COUNT: usize = 16;

const P: u64 = PteFlags::PRESENT.bits();
const RW: u64 = PteFlags::RW.bits();
const USER: u64 = PteFlags::USER.bits();
const ACCESSED: u64 = PteFlags::ACCESSED.bits();
const DIRTY: u64 = PteFlags::DIRTY.bits();
const GLOBAL: u64 = PteFlags::GLOBAL.bits();
const NX: u64 = PteFlags::NX.bits();
/// Xen's `_PAGE_AVAIL`: bits 9..=11, the guest's to use.
const AVAIL: u64 = 0xe00;
/// Xen's `_PAGE_AVAIL_HIGH`: bits 52..=62, the guest's to use.
const AVAIL_HIGH: u64 = 0x7ff << 52;
/// The bits of an entry that are not the frame address.
const FLAG_BITS: u64 = !ADDR_MASK;

/// Xen's `_PAGE_GUEST_KERNEL` (bit 52): set by [`adjust_entry`] on L1 entries
/// the guest wrote without U/S, i.e. guest-kernel mappings.
pub const GUEST_KERNEL: u64 = 1 << 52;

/// Xen's `base_disallow_mask` for x86_64 (arch_init_memory), in entry bits:
/// everything but P, R/W, U/S, A, D, the software bits and NX, i.e. PWT, PCD,
/// PAT/PSE and G.
pub const BASE_DISALLOW_MASK: u64 =
    FLAG_BITS & !(P | RW | USER | ACCESSED | DIRTY | AVAIL | AVAIL_HIGH | NX);
/// Xen's `_PAGE_GNTTAB` as its debug builds define it (flag bit 22, i.e.
/// entry bit 62): set by the grant-table code on the L1 entries of grant
/// host mappings; guests may not set it ([`L1_DISALLOW_MASK`]), and an L1
/// entry carrying it that goes any other way than through
/// `GNTTABOP_unmap_grant_ref` is reported with
/// [`PtMemory::grant_pte_dropped`] (Xen crashes the domain).
pub const GNTTAB: u64 = 1 << 62;
/// Oxen's log-dirty marker (bit 58,
/// [`hypercall_abi::xen::OXEN_L1E_LOGDIRTY_RO`]): set with R/W cleared on
/// an L1 entry the hypervisor write-protected while its domain is in
/// log-dirty mode. Such an entry is *logically writable*: it holds the
/// writable type reference it held before ([`logical_l1e`]). Guests may
/// not set it ([`L1_DISALLOW_MASK`]).
pub const LOGDIRTY_RO: u64 = hypercall_abi::xen::OXEN_L1E_LOGDIRTY_RO;
/// Xen's `L1_DISALLOW_MASK` (debug builds, with `_PAGE_GNTTAB`): G allowed,
/// [`GNTTAB`] refused; and (Oxen) [`LOGDIRTY_RO`] refused.
pub const L1_DISALLOW_MASK: u64 = (BASE_DISALLOW_MASK & !GLOBAL) | GNTTAB | LOGDIRTY_RO;

/// What L1 entry `e` means for reference counting: an entry the hypervisor
/// write-protected for log-dirty mode ([`LOGDIRTY_RO`]) reads as the
/// writable entry it stands for. Every path that decides from an existing
/// entry's flags which references it holds goes through this.
pub const fn logical_l1e(e: u64) -> u64 {
    if e & LOGDIRTY_RO != 0 {
        (e & !LOGDIRTY_RO) | RW
    } else {
        e
    }
}

/// The write-protected form of L1 entry `e` for log-dirty mode, if it is a
/// present, writable, non-grant mapping (the caller checks that it maps a
/// RAM frame of the domain): R/W cleared, [`LOGDIRTY_RO`] set.
pub const fn protect_l1e(e: u64) -> Option<u64> {
    if e & (P | RW) == P | RW && e & (GNTTAB | LOGDIRTY_RO) == 0 {
        Some((e & !RW) | LOGDIRTY_RO)
    } else {
        None
    }
}

/// The writable form of an L1 entry [`protect_l1e`] protected (`None` if
/// `e` carries no marker): what a write fault or leaving log-dirty mode
/// puts back.
pub const fn unprotect_l1e(e: u64) -> Option<u64> {
    if e & LOGDIRTY_RO != 0 {
        Some(logical_l1e(e))
    } else {
        None
    }
}
/// Xen's `L2_DISALLOW_MASK`: PSE refused, so no 2 MiB pages for PV.
pub const L2_DISALLOW_MASK: u64 = BASE_DISALLOW_MASK;
/// Xen's `l3_disallow_mask` for a 64-bit PV domain: no 1 GiB pages either.
pub const L3_DISALLOW_MASK: u64 = BASE_DISALLOW_MASK;
/// Xen's `L4_DISALLOW_MASK`.
pub const L4_DISALLOW_MASK: u64 = BASE_DISALLOW_MASK;

/// Xen's `FASTPATH_FLAG_WHITELIST`: flags a guest may change in a present
/// entry without the references being retaken.
const FASTPATH_FLAG_WHITELIST: u64 = NX | AVAIL_HIGH | AVAIL | GLOBAL | DIRTY | ACCESSED | USER;
/// What must stay equal for the fast path (Xen's `l*e_has_changed` mask).
const FASTPATH_CHECK: u64 = ADDR_MASK | (FLAG_BITS & !FASTPATH_FLAG_WHITELIST);
/// The frame number an all-ones address field gives (`PADDR_MASK >>
/// PAGE_SHIFT`, Xen's `INVALID_MFN` as seen through an entry).
const INVALID_MFN_FIELD: u64 = ADDR_MASK >> PAGE_SHIFT;

/// Access to the guest's page tables and the hypervisor services validation
/// needs. The glue implements it over the direct map; tests over a `Vec`.
pub trait PtMemory {
    /// Entry `index` (< 512) of the table in frame `table`.
    fn read_pte(&self, table: Mfn, index: usize) -> u64;
    /// Store entry `index` (< 512) of the table in frame `table`.
    fn write_pte(&mut self, table: Mfn, index: usize, val: u64);
    /// Stores `val` in entry `index` and returns what it held, in one
    /// atomic exchange: the hardware may set A/D in it concurrently, and a
    /// flag set between a read and a write would be lost.
    fn swap_pte(&mut self, table: Mfn, index: usize, val: u64) -> u64;
    /// `mfn` is about to change type (a writable frame becoming a page table,
    /// a page table becoming writable or another table level): flush every
    /// TLB that may still hold a translation of it or through it before this
    /// returns (Xen's flush in `_get_page_type`). Not called for frames that
    /// have had no type since they were assigned.
    fn flush_before_type_change(&mut self, mfn: Mfn);
    /// The last reference to `mfn` went: the frame table shows it free; give
    /// it back to the frame allocator (Xen's `put_page` → `free_domheap_page`).
    fn frame_freed(&mut self, mfn: Mfn);
    /// A grant host mapping (an L1 entry with [`GNTTAB`]) was removed other
    /// than through the grant-table code: by an update of its L1 entry or
    /// with its L1 table. Its references are dropped as any mapping's; Xen
    /// crashes the domain unless it is dying (`put_page_from_l1e`).
    fn grant_pte_dropped(&mut self, _entry: u64) {}
    /// A writable mapping of `mfn`, a frame of another domain `owner` (a
    /// privileged domain's foreign mapping), was removed: whatever was
    /// written through it is now in the frame (Xen's
    /// `paging_mark_dirty` in `put_page_from_l1e`, for log-dirty mode).
    fn foreign_writable_dropped(&mut self, _mfn: Mfn, _owner: DomId) {}
    /// A writable L1 mapping of `mfn` was made (validated, written by an
    /// update, or a log-dirty protected entry made writable again by one):
    /// writes through it are not seen by log-dirty mode until the next
    /// `CLEAN` protects it, so the glue marks the frame dirty.
    fn writable_mapped(&mut self, _mfn: Mfn) {}
    /// The table in `mfn` was just validated (became a live page table):
    /// in log-dirty mode the toolstack must send it again, since its
    /// entries now change only through the hypervisor.
    fn table_validated(&mut self, _mfn: Mfn) {}
}

/// Who the tables belong to and what the hypervisor fixes in them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PtContext {
    /// The domain whose tables these are; every referenced frame must be its.
    pub domid: DomId,
    /// The domain whose frames an L1 entry written by `mod_entry` may map
    /// (Xen's `pg_owner`): `domid`, except for a privileged domain's
    /// foreign mappings (`mmu_update` with `foreigndom`). Entries found in a
    /// table being validated always map `domid`'s frames.
    pub pg_owner: DomId,
    /// The hypervisor's entries for L4 slots 256..=271, written into every
    /// L4 when it is validated (Xen's `init_xen_l4_slots`).
    /// Borrowed, not copied: a context is made for every page-table
    /// operation, and copying 128 bytes (and the I/O memory's ranges) each
    /// time was a measurable part of `mmu_update`.
    pub xen_l4_slots: &'static [u64; XEN_L4_SLOT_COUNT],
    /// Highest machine frame number that is RAM (Xen's `max_page - 1`);
    /// anything above is treated as MMIO.
    pub max_mfn: u64,
    /// The I/O memory the domain may map (Xen's `iomem_caps`).
    pub iomem: &'static IoMem,
}

/// Most ranges [`IoMem`] keeps away from a domain.
pub const IOMEM_DENY_MAX: usize = 8;

/// The machine frames outside RAM a domain may map (Xen's `iomem_caps`
/// rangeset, as `dom0_setup_permissions` leaves it for the hardware
/// domain: every frame but the ones the hypervisor drives itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoMem {
    /// Whether any I/O frame may be mapped (false: none, Xen's empty set).
    pub permitted: bool,
    /// Inclusive frame ranges kept away even then (local APIC, IO-APICs,
    /// the MSI address window ...).
    pub deny: [(u64, u64); IOMEM_DENY_MAX],
}

impl IoMem {
    /// No I/O memory at all (every domain but the hardware domain).
    pub const NONE: IoMem = IoMem {
        permitted: false,
        deny: [(1, 0); IOMEM_DENY_MAX],
    };

    /// Every frame but the `deny` ranges (at most [`IOMEM_DENY_MAX`] are
    /// kept; more is a caller bug and the extra ones deny everything).
    pub fn all_but(deny: &[(u64, u64)]) -> IoMem {
        let mut m = IoMem {
            permitted: true,
            deny: [(1, 0); IOMEM_DENY_MAX],
        };
        if deny.len() > IOMEM_DENY_MAX {
            m.permitted = false;
            return m;
        }
        m.deny[..deny.len()].copy_from_slice(deny);
        m
    }

    /// Whether `mfn` may be mapped (`iomem_access_permitted`).
    pub fn permits(&self, mfn: Mfn) -> bool {
        self.permitted && !self.deny.iter().any(|&(a, b)| a <= mfn.0 && mfn.0 <= b)
    }

    /// Whether the domain has I/O capabilities at all, which lets it choose
    /// cache attributes (Xen's `l1_disallow_mask`).
    pub const fn any(&self) -> bool {
        self.permitted
    }
}

impl PtContext {
    /// The frame-table owner of the domain's frames.
    pub const fn owner(&self) -> Owner {
        Owner::Domain(self.domid)
    }
}

/// Why a page-table operation was refused. [`PtError::errno`] gives the code
/// Xen returns for the same input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PtError {
    /// A paging level outside 1..=4 (a caller bug).
    BadLevel(u8),
    /// An entry index outside 0..512.
    BadIndex(usize),
    /// A present entry sets bits its level disallows.
    BadFlags {
        /// Level of the table holding the entry.
        level: u8,
        /// The offending bits.
        flags: u64,
    },
    /// An update of L4 slot 256..=271, which belongs to the hypervisor.
    HypervisorSlot(usize),
    /// An L1 entry maps an all-ones frame number (Xen's `INVALID_MFN`).
    InvalidMfn,
    /// An L1 entry maps a frame that is not RAM or belongs to `DOMID_IO`.
    MapIo {
        /// The frame.
        mfn: Mfn,
    },
    /// An L1 entry maps a frame the domain does not own.
    MapNotOwned {
        /// The frame.
        mfn: Mfn,
        /// Its real owner ([`Owner::Free`] if unallocated).
        owner: Owner,
    },
    /// A writable L1 entry maps a frame in use with another type (a page
    /// table or a descriptor page).
    MapTypeConflict {
        /// The frame.
        mfn: Mfn,
        /// Its type.
        current: PageType,
    },
    /// An L1 mapping would overflow the frame's counts.
    MapCountOverflow {
        /// The frame.
        mfn: Mfn,
    },
    /// A page table (referenced by an entry, pinned, loaded as a base
    /// pointer or updated) is not a RAM frame the domain owns.
    TableNotOwned {
        /// The frame.
        mfn: Mfn,
        /// Its owner; `None` if it is not RAM.
        owner: Option<Owner>,
    },
    /// A frame wanted as a page table of one type is in use as another.
    TableTypeConflict {
        /// The frame.
        mfn: Mfn,
        /// The type wanted.
        want: PageType,
        /// The type it has.
        current: PageType,
    },
    /// An L2/L3/L4 entry points at a table of its own level (a linear page
    /// table; deliberately unsupported).
    LinearPageTable {
        /// Level of the entry.
        level: u8,
        /// The table it points at.
        mfn: Mfn,
    },
    /// A page-table reference would overflow the frame's counts.
    TableCountOverflow {
        /// The frame.
        mfn: Mfn,
    },
    /// An update of a frame that is neither a live page table nor usable as
    /// a writable page (e.g. a descriptor page in use), or validation asked
    /// of a frame not waiting for it.
    NotPageTable {
        /// The frame.
        mfn: Mfn,
    },
    /// Pin of a table that is already pinned.
    AlreadyPinned(Mfn),
    /// Unpin of a table that is not pinned.
    NotPinned(Mfn),
    /// Any other frame-table refusal (the accounting is inconsistent).
    FrameTable(FrameTableError),
}

impl PtError {
    /// The error Xen 4.17 returns for the same input (mm.c):
    /// - `get_page_from_l1e`: bad flags, and an all-ones MFN, `-EINVAL`; MMIO
    ///   without permission `-EPERM`; a frame it cannot reference or type
    ///   writable (`could_not_pin`) `-EBUSY`.
    /// - `get_page_from_l[2-4]e` and everything that takes a page-table
    ///   reference (`get_page_and_type_from_mfn`, `_get_page_type`, the
    ///   `MMUEXT_PIN_*` lookup): `-EINVAL`; a failure while validating the
    ///   referenced table passes through unchanged.
    /// - `mod_l4_entry` on a hypervisor slot, `do_mmu_update` on a frame that
    ///   is not a usable table, (un)pinning twice: `-EINVAL`.
    pub const fn errno(&self) -> Errno {
        match self {
            PtError::MapIo { .. } => Errno::EPERM,
            PtError::MapNotOwned { .. }
            | PtError::MapTypeConflict { .. }
            | PtError::MapCountOverflow { .. } => Errno::EBUSY,
            PtError::BadLevel(_)
            | PtError::BadIndex(_)
            | PtError::BadFlags { .. }
            | PtError::HypervisorSlot(_)
            | PtError::InvalidMfn
            | PtError::TableNotOwned { .. }
            | PtError::TableTypeConflict { .. }
            | PtError::LinearPageTable { .. }
            | PtError::TableCountOverflow { .. }
            | PtError::NotPageTable { .. }
            | PtError::AlreadyPinned(_)
            | PtError::NotPinned(_)
            | PtError::FrameTable(_) => Errno::EINVAL,
        }
    }
}

impl fmt::Display for PtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PtError::BadLevel(l) => write!(f, "bad paging level {l}"),
            PtError::BadIndex(i) => write!(f, "bad entry index {i}"),
            PtError::BadFlags { level, flags } => {
                write!(f, "bad L{level} flags {flags:#x}")
            }
            PtError::HypervisorSlot(i) => {
                write!(f, "L4 update in the hypervisor's area, slot {i:#x}")
            }
            PtError::InvalidMfn => write!(f, "L1 entry maps the invalid mfn"),
            PtError::MapIo { mfn } => {
                write!(f, "attempt to map MMIO space mfn {mfn}")
            }
            PtError::MapNotOwned { mfn, owner } => {
                write!(f, "attempt to map mfn {mfn} owned by {owner:?}")
            }
            PtError::MapTypeConflict { mfn, current } => {
                write!(f, "cannot map mfn {mfn} writable: in use as {current:?}")
            }
            PtError::MapCountOverflow { mfn } => {
                write!(f, "mfn {mfn}: reference count overflow")
            }
            PtError::TableNotOwned { mfn, owner: None } => {
                write!(f, "page table mfn {mfn} is not RAM")
            }
            PtError::TableNotOwned {
                mfn,
                owner: Some(o),
            } => write!(f, "page table mfn {mfn} owned by {o:?}"),
            PtError::TableTypeConflict { mfn, want, current } => {
                write!(f, "mfn {mfn} wanted as {want:?} but in use as {current:?}")
            }
            PtError::LinearPageTable { level, mfn } => {
                write!(
                    f,
                    "L{level} entry points at L{level} mfn {mfn} (linear page table)"
                )
            }
            PtError::TableCountOverflow { mfn } => {
                write!(f, "page table mfn {mfn}: reference count overflow")
            }
            PtError::NotPageTable { mfn } => {
                write!(f, "mfn {mfn} is not a usable page table")
            }
            PtError::AlreadyPinned(mfn) => write!(f, "mfn {mfn} already pinned"),
            PtError::NotPinned(mfn) => write!(f, "mfn {mfn} not pinned"),
            PtError::FrameTable(e) => write!(f, "frame table: {e}"),
        }
    }
}

/// The disallowed-bits mask of entries of a level-`level` table.
pub const fn disallow_mask(level: u8) -> u64 {
    match level {
        1 => L1_DISALLOW_MASK,
        2 => L2_DISALLOW_MASK,
        3 => L3_DISALLOW_MASK,
        _ => L4_DISALLOW_MASK,
    }
}

/// Cache-attribute bits of an L1 entry (PWT, PCD, PAT).
const CACHE_ATTRS: u64 = PteFlags::PWT.bits() | PteFlags::PCD.bits() | (1 << 7);

/// Xen's `l1_disallow_mask(d)`: a domain with I/O capabilities may choose
/// the cache attributes of its L1 entries.
pub const fn l1_disallow_mask(iomem: &IoMem) -> u64 {
    if iomem.any() {
        L1_DISALLOW_MASK & !CACHE_ATTRS
    } else {
        L1_DISALLOW_MASK
    }
}

/// Xen's `adjust_guest_l[1-4]e` for a 64-bit PV guest (its kernel runs in
/// ring 3): what a present entry of a level-`level` table is stored as.
/// Not-present entries are returned unchanged.
pub const fn adjust_entry(level: u8, entry: u64) -> u64 {
    if entry & P == 0 {
        return entry;
    }
    match level {
        1 => {
            let mut e = entry;
            if e & USER == 0 {
                e |= GUEST_KERNEL | USER;
            }
            if e & GUEST_KERNEL == 0 {
                e |= GLOBAL | USER;
            }
            e
        }
        2 | 3 => entry | USER,
        _ => entry | ACCESSED | USER,
    }
}

/// Check every present entry of the level-`level` table in `mfn` and take the
/// references they hold (Xen's `promote_lN_table`): the caller holds a type
/// reference of that level that [`FrameTable::get_page_type`] answered with
/// [`TypeGet::NeedsValidation`]; on `Ok` it calls
/// [`FrameTable::mark_validated`], on `Err` it drops its reference (nothing
/// else is held then). For an L4, slots 256..=271 get the hypervisor's entries.
pub fn validate_table<M: PtMemory + ?Sized>(
    ctx: &PtContext,
    ft: &mut FrameTable<'_>,
    mem: &mut M,
    mfn: Mfn,
    level: u8,
) -> Result<(), PtError> {
    let ty = table_type(level)?;
    let mut pt = Pt { ctx, ft, mem };
    let info = pt.owned_table(mfn)?;
    let pending = info.page_type() == ty
        && info.type_count() > 0
        && !info.flags().contains(PageFlags::VALIDATED);
    if !pending {
        return Err(PtError::NotPageTable { mfn });
    }
    pt.promote(mfn, level)
}

/// Drop every reference the entries of the level-`level` table in `mfn` hold
/// (Xen's `demote_lN_table`), devalidating tables whose last type reference
/// goes: what the caller does when [`FrameTable::put_page_type`] answers
/// [`TypePut::Devalidate`] for a page table it validated with
/// [`validate_table`].
pub fn devalidate_table<M: PtMemory + ?Sized>(
    ctx: &PtContext,
    ft: &mut FrameTable<'_>,
    mem: &mut M,
    mfn: Mfn,
    level: u8,
) {
    if table_type(level).is_err() {
        log::error!("ptval: devalidate of {mfn:?} at bad level {level}");
        return;
    }
    Pt { ctx, ft, mem }.demote(mfn, level);
}

/// Take a general and a level-`level` type reference on the domain's table
/// `mfn`, validating it (recursively) if this is its first type reference
/// (Xen's `get_page_and_type_from_mfn` for a page-table type).
pub fn get_table<M: PtMemory + ?Sized>(
    ctx: &PtContext,
    ft: &mut FrameTable<'_>,
    mem: &mut M,
    mfn: Mfn,
    level: u8,
) -> Result<(), PtError> {
    table_type(level)?;
    Pt { ctx, ft, mem }.get_table(mfn, level)
}

/// Drop a page-table reference taken by [`get_table`] (Xen's
/// `put_page_and_type`), devalidating the table if it was the last.
pub fn put_table<M: PtMemory + ?Sized>(
    ctx: &PtContext,
    ft: &mut FrameTable<'_>,
    mem: &mut M,
    mfn: Mfn,
) {
    Pt { ctx, ft, mem }.put_table(mfn, None);
}

/// `MMU_NORMAL_PT_UPDATE` / `MMU_PT_UPDATE_PRESERVE_AD` (`preserve_ad`: the
/// old entry's A/D bits are ORed into the new one): set entry `index` of the
/// domain's frame `table` to `new`.
///
/// If `table` is a live (validated, referenced) L1..L4 table, this is Xen's
/// `mod_lN_entry`: the new entry is checked and its references taken first,
/// then it is written (adjusted, see [`adjust_entry`]), then the old entry's
/// references are dropped; if only bits in Xen's fast-path whitelist change
/// (A/D/U/S/G/NX/software bits) the references stay as they are. Hypervisor
/// L4 slots are refused. If `table` is not a live page table and can be typed
/// writable, the value is stored as is (a plain memory write, as Xen does).
/// On error nothing changed.
///
/// For `update_va_mapping`, check first that the L1 the address resolves to
/// has type [`PageType::L1`] (Xen answers `-EINVAL` otherwise).
pub fn mod_entry<M: PtMemory + ?Sized>(
    ctx: &PtContext,
    ft: &mut FrameTable<'_>,
    mem: &mut M,
    table: Mfn,
    index: usize,
    new: u64,
    preserve_ad: bool,
) -> Result<(), PtError> {
    if index >= ENTRIES {
        return Err(PtError::BadIndex(index));
    }
    let mut pt = Pt { ctx, ft, mem };
    let info = pt.owned_table(table)?;
    let live = info.type_count() > 0 && info.flags().contains(PageFlags::VALIDATED);
    match table_level(info.page_type()) {
        Some(level) if live => pt.mod_pt_entry(table, level, index, new, preserve_ad),
        _ if live && info.page_type() != PageType::Writable => {
            Err(PtError::NotPageTable { mfn: table })
        }
        _ => pt.mod_writable(table, index, new),
    }
}

/// `MMUEXT_PIN_Lx_TABLE`: take a level-`level` type reference on the domain's
/// table `mfn` (validating it if needed) and make it the pin. Pinning a pinned
/// table is refused (`-EINVAL`), with no reference left behind.
pub fn pin<M: PtMemory + ?Sized>(
    ctx: &PtContext,
    ft: &mut FrameTable<'_>,
    mem: &mut M,
    mfn: Mfn,
    level: u8,
) -> Result<(), PtError> {
    let ty = table_type(level)?;
    let mut pt = Pt { ctx, ft, mem };
    pt.get_table(mfn, level)?;
    if let Err(e) = pt.ft.set_pinned(mfn) {
        pt.put_table(mfn, Some(ty));
        return Err(match e.kind {
            FrameTableErrorKind::AlreadyPinned => PtError::AlreadyPinned(mfn),
            _ => PtError::FrameTable(e),
        });
    }
    Ok(())
}

/// `MMUEXT_UNPIN_TABLE`: drop the pin of the domain's table `mfn`; the table
/// stays validated while other references remain, and is devalidated (its
/// entries' references dropped) with the last.
pub fn unpin<M: PtMemory + ?Sized>(
    ctx: &PtContext,
    ft: &mut FrameTable<'_>,
    mem: &mut M,
    mfn: Mfn,
) -> Result<(), PtError> {
    let mut pt = Pt { ctx, ft, mem };
    pt.owned_table(mfn)?;
    pt.ft.clear_pinned(mfn).map_err(|e| match e.kind {
        FrameTableErrorKind::NotPinned => PtError::NotPinned(mfn),
        _ => PtError::FrameTable(e),
    })?;
    pt.put_table(mfn, None);
    Ok(())
}

/// `MMUEXT_NEW_BASEPTR` / `MMUEXT_NEW_USER_BASEPTR` (Xen's `new_guest_cr3`):
/// take an L4 reference on `new` (validating it if needed), then drop the one
/// on `old`. `None` is "no table" (`NEW_USER_BASEPTR` with MFN 0; pass
/// `Some(Mfn(0))` for `NEW_BASEPTR`, which Xen refuses as any frame the
/// domain does not own). `old == new` changes nothing. On error the caller
/// keeps `old`.
pub fn new_baseptr<M: PtMemory + ?Sized>(
    ctx: &PtContext,
    ft: &mut FrameTable<'_>,
    mem: &mut M,
    old: Option<Mfn>,
    new: Option<Mfn>,
) -> Result<(), PtError> {
    if old == new {
        return Ok(());
    }
    let mut pt = Pt { ctx, ft, mem };
    if let Some(n) = new {
        pt.get_table(n, 4)?;
    }
    if let Some(o) = old {
        pt.put_table(o, Some(PageType::L4));
    }
    Ok(())
}

/// Take the references the L1 entry `l1e` holds (Xen's `get_page_from_l1e`):
/// nothing if not present, else a general reference on the frame and, if
/// writable, a writable type reference.
pub fn get_l1_mapping<M: PtMemory + ?Sized>(
    ctx: &PtContext,
    ft: &mut FrameTable<'_>,
    mem: &mut M,
    l1e: u64,
) -> Result<(), PtError> {
    Pt { ctx, ft, mem }.get_l1(l1e)
}

/// Drop the references [`get_l1_mapping`] took for `l1e` (Xen's
/// `put_page_from_l1e`).
pub fn put_l1_mapping<M: PtMemory + ?Sized>(
    ctx: &PtContext,
    ft: &mut FrameTable<'_>,
    mem: &mut M,
    l1e: u64,
) {
    Pt { ctx, ft, mem }.put_l1(l1e);
}

/// Domain destruction (Xen's `relinquish_memory` for page tables): if the
/// dying domain's frame `mfn` is still a validated page table (kept alive
/// by a cycle of tables, or a linear map of itself, once the pins and base
/// pointers are gone), empties it and drops every reference its entries
/// held. After this has run on every such frame the domain's tables hold
/// nothing, and only references from outside the domain remain.
pub fn relinquish_table<M: PtMemory + ?Sized>(
    ctx: &PtContext,
    ft: &mut FrameTable<'_>,
    mem: &mut M,
    mfn: Mfn,
) {
    let Ok(info) = ft.info(mfn) else { return };
    if info.owner() != ctx.owner()
        || info.type_count() == 0
        || !info.flags().contains(PageFlags::VALIDATED)
    {
        return;
    }
    if let Some(level) = table_level(info.page_type()) {
        Pt { ctx, ft, mem }.relinquish(mfn, level);
    }
}

fn table_type(level: u8) -> Result<PageType, PtError> {
    PageType::page_table(level).ok_or(PtError::BadLevel(level))
}

fn table_level(ty: PageType) -> Option<u8> {
    match ty {
        PageType::L1 => Some(1),
        PageType::L2 => Some(2),
        PageType::L3 => Some(3),
        PageType::L4 => Some(4),
        _ => None,
    }
}

const fn is_xen_l4_slot(index: usize) -> bool {
    index >= XEN_L4_FIRST_SLOT && index < XEN_L4_FIRST_SLOT + XEN_L4_SLOT_COUNT
}

const fn entry_mfn(entry: u64) -> Mfn {
    Mfn((entry & ADDR_MASK) >> PAGE_SHIFT)
}

/// A frame-table refusal while referencing a frame an L1 entry maps.
fn map_err(e: FrameTableError) -> PtError {
    use FrameTableErrorKind as K;
    let mfn = e.mfn;
    match e.kind {
        K::OutOfRange | K::WrongOwner { owner: Owner::Io } => PtError::MapIo { mfn },
        K::NotInUse => PtError::MapNotOwned {
            mfn,
            owner: Owner::Free,
        },
        K::WrongOwner { owner } => PtError::MapNotOwned { mfn, owner },
        K::CountOverflow | K::TypeCountOverflow => PtError::MapCountOverflow { mfn },
        K::TypeConflict { current } => PtError::MapTypeConflict { mfn, current },
        _ => PtError::FrameTable(e),
    }
}

/// A frame-table refusal while referencing a frame as a table of type `want`.
fn table_err(e: FrameTableError, want: PageType) -> PtError {
    use FrameTableErrorKind as K;
    let mfn = e.mfn;
    match e.kind {
        K::OutOfRange => PtError::TableNotOwned { mfn, owner: None },
        K::NotInUse => PtError::TableNotOwned {
            mfn,
            owner: Some(Owner::Free),
        },
        K::WrongOwner { owner } => PtError::TableNotOwned {
            mfn,
            owner: Some(owner),
        },
        K::CountOverflow | K::TypeCountOverflow => PtError::TableCountOverflow { mfn },
        K::TypeConflict { current } => PtError::TableTypeConflict { mfn, want, current },
        _ => PtError::FrameTable(e),
    }
}

/// One operation's view of the world.
struct Pt<'r, 'f, M: PtMemory + ?Sized> {
    ctx: &'r PtContext,
    ft: &'r mut FrameTable<'f>,
    mem: &'r mut M,
}

impl<M: PtMemory + ?Sized> Pt<'_, '_, M> {
    /// The frame's entry, if it is RAM the domain owns (Xen's
    /// `get_page_from_gfn` on `pt_owner`, which fails with `-EINVAL`).
    fn owned_table(&self, mfn: Mfn) -> Result<PageInfo, PtError> {
        if mfn.0 > self.ctx.max_mfn {
            return Err(PtError::TableNotOwned { mfn, owner: None });
        }
        let info = self
            .ft
            .info(mfn)
            .map_err(|_| PtError::TableNotOwned { mfn, owner: None })?;
        if info.count() == 0 || info.owner() != self.ctx.owner() {
            return Err(PtError::TableNotOwned {
                mfn,
                owner: Some(info.owner()),
            });
        }
        Ok(info)
    }

    /// Flush before `mfn` (referenced, type count 0) takes type `ty` instead
    /// of the one it had.
    fn before_type_change(&mut self, mfn: Mfn, ty: PageType) {
        if let Ok(info) = self.ft.info(mfn) {
            if info.type_count() == 0
                && info.page_type() != ty
                && info.page_type() != PageType::None
            {
                self.mem.flush_before_type_change(mfn);
            }
        }
    }

    fn put_page(&mut self, mfn: Mfn) {
        match self.ft.put_page(mfn) {
            Ok(PagePut::InUse) => {}
            Ok(PagePut::Freed) => self.mem.frame_freed(mfn),
            Err(e) => log::error!("ptval: put of an unheld reference: {e}"),
        }
    }

    fn get_l1(&mut self, e: u64) -> Result<(), PtError> {
        self.get_l1_as(e, self.ctx.owner())
    }

    /// [`Self::get_l1`] for a frame that must belong to `owner`.
    fn get_l1_as(&mut self, e: u64, owner: Owner) -> Result<(), PtError> {
        if e & P == 0 {
            return Ok(());
        }
        let bad = e & l1_disallow_mask(self.ctx.iomem);
        if bad != 0 {
            return Err(PtError::BadFlags {
                level: 1,
                flags: bad,
            });
        }
        let mfn = entry_mfn(e);
        if mfn.0 > self.ctx.max_mfn {
            if mfn.0 == INVALID_MFN_FIELD {
                return Err(PtError::InvalidMfn);
            }
            // MMIO above RAM (Xen's `!mfn_valid`): no reference, only the
            // domain's I/O memory permission (DOMID_IO reverts to the
            // caller, whose permission `ctx.iomem` is).
            return if self.ctx.iomem.permits(mfn) {
                Ok(())
            } else {
                Err(PtError::MapIo { mfn })
            };
        }
        if matches!(self.ft.info(mfn), Ok(info) if info.owner() == Owner::Io) {
            // A hole below the top of RAM, owned by DOMID_IO.
            return if self.ctx.iomem.permits(mfn) {
                Ok(())
            } else {
                Err(PtError::MapIo { mfn })
            };
        }
        self.ft.get_page(mfn, owner).map_err(map_err)?;
        if e & RW != 0 {
            self.before_type_change(mfn, PageType::Writable);
            if let Err(err) = self.ft.get_page_type(mfn, PageType::Writable) {
                self.put_page(mfn);
                return Err(map_err(err));
            }
            self.mem.writable_mapped(mfn);
        }
        Ok(())
    }

    fn put_l1(&mut self, e: u64) {
        if e & P == 0 {
            return;
        }
        let e = logical_l1e(e);
        if e & GNTTAB != 0 {
            self.mem.grant_pte_dropped(e);
        }
        let mfn = entry_mfn(e);
        if mfn.0 > self.ctx.max_mfn {
            return; // MMIO: never referenced (Xen's is_iomem_page).
        }
        match self.ft.info(mfn) {
            Ok(info) if info.owner() == Owner::Io => return,
            Ok(info) if e & RW != 0 && info.page_type() != PageType::Writable => {
                log::error!(
                    "ptval: writable mapping of {mfn:?} typed {:?}",
                    info.page_type()
                );
                return;
            }
            Ok(_) => {}
            Err(err) => {
                log::error!("ptval: L1 entry for {err}");
                return;
            }
        }
        if e & RW != 0 {
            if let Err(err) = self.ft.put_page_type(mfn) {
                log::error!("ptval: put of an unheld writable reference: {err}");
                return;
            }
            if let Ok(Owner::Domain(o)) = self.ft.info(mfn).map(|i| i.owner()) {
                if o != self.ctx.domid {
                    self.mem.foreign_writable_dropped(mfn, o);
                }
            }
        }
        self.put_page(mfn);
    }

    /// A general and a level-`level` type reference on `mfn`, validating it
    /// on its first type reference.
    fn get_table(&mut self, mfn: Mfn, level: u8) -> Result<(), PtError> {
        let ty = table_type(level)?;
        if mfn.0 > self.ctx.max_mfn {
            return Err(PtError::TableNotOwned { mfn, owner: None });
        }
        self.ft
            .get_page(mfn, self.ctx.owner())
            .map_err(|e| table_err(e, ty))?;
        self.before_type_change(mfn, ty);
        match self.ft.get_page_type(mfn, ty) {
            Ok(TypeGet::Validated) => Ok(()),
            Ok(TypeGet::NeedsValidation) => match self.promote(mfn, level) {
                Ok(()) => {
                    if let Err(e) = self.ft.mark_validated(mfn) {
                        log::error!("ptval: {e}");
                    }
                    Ok(())
                }
                Err(err) => {
                    // Not validated: dropping the type reference devalidates
                    // nothing (promote undid its own work).
                    if let Err(e) = self.ft.put_page_type(mfn) {
                        log::error!("ptval: {e}");
                    }
                    self.put_page(mfn);
                    Err(err)
                }
            },
            Err(e) => {
                self.put_page(mfn);
                Err(table_err(e, ty))
            }
        }
    }

    /// Drop a page-table reference on `mfn` (of type `expect`, if given),
    /// devalidating the table with its last type reference.
    fn put_table(&mut self, mfn: Mfn, expect: Option<PageType>) {
        let ty = match self.ft.info(mfn) {
            Ok(info) => info.page_type(),
            Err(e) => {
                log::error!("ptval: put of table {e}");
                return;
            }
        };
        let level = match table_level(ty) {
            Some(l) if expect.is_none_or(|want| want == ty) => l,
            _ => {
                log::error!("ptval: put of {mfn:?} as {expect:?}, but it is {ty:?}");
                return;
            }
        };
        match self.ft.put_page_type(mfn) {
            Ok(TypePut::Devalidate) => self.demote(mfn, level),
            Ok(TypePut::Done) => {}
            Err(e) => {
                log::error!("ptval: put of an unheld table reference: {e}");
                return;
            }
        }
        self.put_page(mfn);
    }

    /// The references a present entry of a level-`level` table holds.
    fn get_entry(&mut self, level: u8, e: u64) -> Result<(), PtError> {
        if e & P == 0 {
            return Ok(());
        }
        if level == 1 {
            return self.get_l1(e);
        }
        let bad = e & disallow_mask(level);
        if bad != 0 {
            return Err(PtError::BadFlags { level, flags: bad });
        }
        let target = entry_mfn(e);
        let own = PageType::page_table(level);
        self.get_table(target, level - 1).map_err(|err| match err {
            PtError::TableTypeConflict { mfn, current, .. }
                if mfn == target && Some(current) == own =>
            {
                PtError::LinearPageTable { level, mfn }
            }
            other => other,
        })
    }

    fn put_entry(&mut self, level: u8, e: u64) {
        if e & P == 0 {
            return;
        }
        if level == 1 {
            self.put_l1(e);
        } else {
            self.put_table(entry_mfn(e), PageType::page_table(level - 1));
        }
    }

    /// Take the references of every entry of the table, all or nothing.
    fn promote(&mut self, mfn: Mfn, level: u8) -> Result<(), PtError> {
        for i in 0..ENTRIES {
            if level == 4 && is_xen_l4_slot(i) {
                continue;
            }
            let e = self.mem.read_pte(mfn, i);
            if e & P == 0 {
                continue;
            }
            if let Err(err) = self.get_entry(level, e) {
                self.demote_below(mfn, level, i);
                return Err(err);
            }
            let adjusted = adjust_entry(level, e);
            if adjusted != e {
                self.mem.write_pte(mfn, i, adjusted);
            }
        }
        if level == 4 {
            for (k, &xen) in self.ctx.xen_l4_slots.iter().enumerate() {
                self.mem.write_pte(mfn, XEN_L4_FIRST_SLOT + k, xen);
            }
        }
        self.mem.table_validated(mfn);
        Ok(())
    }

    fn demote(&mut self, mfn: Mfn, level: u8) {
        self.demote_below(mfn, level, ENTRIES);
    }

    /// Drop the references of entries `0..end`, last first.
    fn demote_below(&mut self, mfn: Mfn, level: u8, end: usize) {
        for i in (0..end).rev() {
            if level == 4 && is_xen_l4_slot(i) {
                continue;
            }
            let e = self.mem.read_pte(mfn, i);
            if level == 1 {
                if let Some(w) = unprotect_l1e(e) {
                    // No longer a page table: the frame holds what the
                    // guest wrote, which it may validate again.
                    self.mem.write_pte(mfn, i, w);
                }
            }
            self.put_entry(level, e);
        }
    }

    /// Xen's `mod_lN_entry` on a live table.
    fn mod_pt_entry(
        &mut self,
        table: Mfn,
        level: u8,
        index: usize,
        new: u64,
        preserve_ad: bool,
    ) -> Result<(), PtError> {
        if level == 4 && is_xen_l4_slot(index) {
            return Err(PtError::HypervisorSlot(index));
        }
        let raw_old = self.mem.read_pte(table, index);
        // What the old entry holds references for (a log-dirty protected
        // entry is a writable one).
        let old = if level == 1 {
            logical_l1e(raw_old)
        } else {
            raw_old
        };
        let ad = if preserve_ad {
            old & (ACCESSED | DIRTY)
        } else {
            0
        };
        if new & P == 0 {
            self.mem.write_pte(table, index, new | ad);
            self.put_entry(level, old);
            return Ok(());
        }
        let mask = if level == 1 {
            l1_disallow_mask(self.ctx.iomem)
        } else {
            disallow_mask(level)
        };
        let bad = new & mask;
        if bad != 0 {
            return Err(PtError::BadFlags { level, flags: bad });
        }
        let stored = adjust_entry(level, new) | ad;
        // A grant mapping never takes the fast path: rewriting it is an
        // implicit unmap.
        let grant = level == 1 && old & (P | GNTTAB) == P | GNTTAB;
        if (old ^ new) & FASTPATH_CHECK == 0 && !grant {
            // Same frame, same P/RW/cache bits: the references stand.
            self.mem.write_pte(table, index, stored);
            if level == 1 && stored & RW != 0 {
                // Writable again without a write fault.
                self.mem.writable_mapped(entry_mfn(stored));
            }
            return Ok(());
        }
        if level == 1 {
            // The one place a foreign frame may enter (Xen's mod_l1_entry
            // with pg_dom).
            self.get_l1_as(new, Owner::Domain(self.ctx.pg_owner))?;
        } else {
            self.get_entry(level, new)?;
        }
        self.mem.write_pte(table, index, stored);
        self.put_entry(level, old);
        Ok(())
    }

    /// Empties a table of a dying domain and drops what its entries held.
    fn relinquish(&mut self, mfn: Mfn, level: u8) {
        let mut held = [0u64; ENTRIES];
        for (i, slot) in held.iter_mut().enumerate() {
            if level == 4 && is_xen_l4_slot(i) {
                continue;
            }
            *slot = self.mem.read_pte(mfn, i);
            if *slot & P != 0 {
                self.mem.write_pte(mfn, i, 0);
            }
        }
        // Every entry is empty before the first reference goes, so a cycle
        // that brings this table's own type count to zero demotes nothing
        // twice.
        for e in held {
            self.put_entry(level, e);
        }
    }

    /// `do_mmu_update` on a frame that is not a live page table: a plain
    /// write under a transient writable type reference.
    fn mod_writable(&mut self, table: Mfn, index: usize, new: u64) -> Result<(), PtError> {
        self.before_type_change(table, PageType::Writable);
        if self.ft.get_page_type(table, PageType::Writable).is_err() {
            return Err(PtError::NotPageTable { mfn: table });
        }
        self.mem.write_pte(table, index, new);
        if let Err(e) = self.ft.put_page_type(table) {
            log::error!("ptval: {e}");
        }
        Ok(())
    }
}

// Grant host mappings ------------------------------------------------------
//
// The L1 side of `GNTTABOP_map_grant_ref` / `unmap_grant_ref` for PV
// domains (Xen's xen/arch/x86/pv/grant_table.c: `create_grant_pv_mapping`,
// `replace_grant_pv_mapping`). The grant-table code takes the references a
// grant PTE holds (a general reference, plus a writable type reference when
// it is writable: the same as any L1 entry's, so `put_l1` drops them right
// if the entry goes another way) before installing it, and drops them after
// removing it.

/// Where a grant host mapping goes: the L1 entry mapping a linear address in
/// the address space rooted at `l4` (no `GNTMAP_contains_pte`), or the L1
/// entry at a machine address (`GNTMAP_contains_pte`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantPteAt {
    /// `host_addr` is a linear address of the caller's current page tables.
    Linear {
        /// The caller's L4.
        l4: Mfn,
        /// The address.
        va: u64,
    },
    /// `host_addr` is the machine address of an L1 entry.
    Pte {
        /// Its machine address.
        maddr: u64,
    },
}

/// First address of the hypervisor's range in every PV address space.
const HYPERVISOR_VIRT_START: u64 = 0xffff_8000_0000_0000;
/// End of the hypervisor's range.
const HYPERVISOR_VIRT_END: u64 = 0xffff_8800_0000_0000;

/// The entry written for a grant host mapping of `mfn` with `GNTMAP_*`
/// `flags` in a 64-bit PV domain (Xen's `grant_to_pte_flags` then
/// `adjust_guest_l1e`): present, dirty, NX, [`GNTTAB`]; user with
/// `GNTMAP_application_map`; writable unless `GNTMAP_readonly`; the
/// `GNTMAP_guest_avail` bits in bits 9..=11.
///
/// Unlike Xen 4.17's, the accessed flag is left clear: the CPU sets it on
/// the first use, and an unmap finding it still clear knows no TLB holds
/// the mapping and skips the flush ([`replace_grant_pte`]). Under
/// emulation that flush is most of a map-and-unmap's cost.
pub const fn grant_pte(mfn: Mfn, flags: u32) -> u64 {
    const GNTMAP_READONLY: u32 = 1 << 2;
    const GNTMAP_APPLICATION_MAP: u32 = 1 << 3;
    let mut e = (mfn.0 << PAGE_SHIFT) & ADDR_MASK;
    e |= P | DIRTY | NX | GNTTAB;
    if flags & GNTMAP_APPLICATION_MAP != 0 {
        e |= USER;
    }
    if flags & GNTMAP_READONLY == 0 {
        e |= RW;
    }
    e |= ((flags >> 16) as u64 & 7) << 9;
    adjust_entry(1, e)
}

/// The live L1 table and index a grant mapping at `at` goes to, if the
/// caller may put one there: a validated, referenced L1 the domain owns
/// (Xen: `get_page_from_mfn` on the domain, then the `PGT_l1_page_table`
/// check under `page_lock`); a linear address must be a guest address whose
/// L4..L2 entries are present, a PTE address 8-byte aligned.
pub fn grant_l1_slot<M: PtMemory + ?Sized>(
    ctx: &PtContext,
    ft: &FrameTable<'_>,
    mem: &M,
    at: GrantPteAt,
) -> Option<(Mfn, usize)> {
    let (l1, index) = match at {
        GrantPteAt::Pte { maddr } => {
            if maddr & 7 != 0 {
                return None;
            }
            (Mfn(maddr >> PAGE_SHIFT), ((maddr & 0xfff) >> 3) as usize)
        }
        GrantPteAt::Linear { l4, va } => {
            let top = (va as i64) >> 47;
            let canonical = top == 0 || top == -1;
            if !canonical || (HYPERVISOR_VIRT_START..HYPERVISOR_VIRT_END).contains(&va) {
                return None;
            }
            let mut table = l4;
            for shift in [39u32, 30, 21] {
                if table.0 > ctx.max_mfn || !owned_live(ctx, ft, table, None) {
                    return None;
                }
                let e = mem.read_pte(table, ((va >> shift) & 511) as usize);
                if e & P == 0 || e & PteFlags::PSE.bits() != 0 {
                    return None;
                }
                table = entry_mfn(e);
            }
            (table, ((va >> PAGE_SHIFT) & 511) as usize)
        }
    };
    if l1.0 > ctx.max_mfn || !owned_live(ctx, ft, l1, Some(PageType::L1)) {
        return None;
    }
    Some((l1, index))
}

/// Whether `mfn` is the domain's, in use, and (if `ty` is given) a live,
/// validated table of that type.
fn owned_live(ctx: &PtContext, ft: &FrameTable<'_>, mfn: Mfn, ty: Option<PageType>) -> bool {
    let Ok(info) = ft.info(mfn) else { return false };
    if info.owner() != ctx.owner() || info.count() == 0 {
        return false;
    }
    ty.is_none_or(|t| {
        info.page_type() == t
            && info.type_count() > 0
            && info.flags().contains(PageFlags::VALIDATED)
    })
}

/// Writes the grant entry `pte` (from [`grant_pte`]) at `at` (Xen's
/// `create_grant_pv_mapping`): the caller already holds the references it
/// stands for. The entry it replaces is dropped like any other (so
/// replacing another grant mapping is reported through
/// [`PtMemory::grant_pte_dropped`]). Returns the L1 and index written, or
/// `None` (nothing changed) if `at` is not a place for it.
pub fn install_grant_pte<M: PtMemory + ?Sized>(
    ctx: &PtContext,
    ft: &mut FrameTable<'_>,
    mem: &mut M,
    at: GrantPteAt,
    pte: u64,
) -> Option<(Mfn, usize)> {
    let (l1, index) = grant_l1_slot(ctx, ft, mem, at)?;
    let old = mem.read_pte(l1, index);
    mem.write_pte(l1, index, pte);
    Pt { ctx, ft, mem }.put_l1(old);
    Some((l1, index))
}

/// Clears the grant entry for `mfn` at `at` (Xen's
/// `replace_grant_pv_mapping` with no new address): it must be present,
/// map `mfn`, carry [`GNTTAB`], and be writable exactly if `writable`.
/// The caller then flushes TLBs and drops the references. Returns the L1
/// and index cleared, or `None` (nothing changed).
pub fn remove_grant_pte<M: PtMemory + ?Sized>(
    ctx: &PtContext,
    ft: &FrameTable<'_>,
    mem: &mut M,
    at: GrantPteAt,
    mfn: Mfn,
    writable: bool,
) -> Option<(Mfn, usize, bool)> {
    replace_grant_pte(ctx, ft, mem, at, mfn, writable, 0)
}

/// [`remove_grant_pte`], writing `new` (an entry whose references the
/// caller holds, from [`steal_pte`]) in its place (Xen's
/// `replace_grant_pv_mapping` for `GNTTABOP_unmap_and_replace`). On `None`
/// nothing changed and `new`'s references are still the caller's.
///
/// The third value says whether the entry removed had its accessed flag
/// set when it went (read in the same atomic exchange that removed it).
/// A CPU caches a translation only after setting that flag, so an entry
/// that went without it left no TLB entry anywhere, and the caller need
/// not flush for it (Xen's "avoid TLB flush if grant mapped page was not
/// accessed").
pub fn replace_grant_pte<M: PtMemory + ?Sized>(
    ctx: &PtContext,
    ft: &FrameTable<'_>,
    mem: &mut M,
    at: GrantPteAt,
    mfn: Mfn,
    writable: bool,
    new: u64,
) -> Option<(Mfn, usize, bool)> {
    let (l1, index) = grant_l1_slot(ctx, ft, mem, at)?;
    let old = logical_l1e(mem.read_pte(l1, index));
    let rw = if writable { RW } else { 0 };
    if old & (P | GNTTAB) != P | GNTTAB || entry_mfn(old) != mfn || old & RW != rw {
        return None;
    }
    // The hardware may set A/D meanwhile, nothing else (the frame table's
    // lock keeps every other writer out): the exchange sees the last word.
    let gone = mem.swap_pte(l1, index, new);
    Some((l1, index, gone & ACCESSED != 0))
}

/// Clears the caller's L1 entry mapping the linear address `va` of the
/// address space rooted at `l4` and hands it over with its references
/// (Xen's `steal_linear_address`): `None` if no live L1 of the domain maps
/// it. The caller flushes the address before relying on it.
pub fn steal_pte<M: PtMemory + ?Sized>(
    ctx: &PtContext,
    ft: &FrameTable<'_>,
    mem: &mut M,
    l4: Mfn,
    va: u64,
) -> Option<u64> {
    let (l1, index) = grant_l1_slot(ctx, ft, mem, GrantPteAt::Linear { l4, va })?;
    let old = mem.read_pte(l1, index);
    mem.write_pte(l1, index, 0);
    Some(old)
}

/// For tearing a domain down: if entry `index` of the domain's live L1 `l1`
/// is still a grant entry for `mfn`, clears it and returns whether it was
/// writable (its references are the caller's to drop, after a flush);
/// `None` if it went already (its references went with it).
pub fn zap_grant_pte<M: PtMemory + ?Sized>(
    ctx: &PtContext,
    ft: &FrameTable<'_>,
    mem: &mut M,
    l1: Mfn,
    index: usize,
    mfn: Mfn,
) -> Option<bool> {
    if index >= ENTRIES || l1.0 > ctx.max_mfn || !owned_live(ctx, ft, l1, Some(PageType::L1)) {
        return None;
    }
    let old = logical_l1e(mem.read_pte(l1, index));
    if old & (P | GNTTAB) != P | GNTTAB || entry_mfn(old) != mfn {
        return None;
    }
    mem.write_pte(l1, index, 0);
    Some(old & RW != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::boxed::Box;
    use std::format;
    use std::string::ToString;
    use std::vec;
    use std::vec::Vec;

    /// Frames in the test machine.
    const N: u64 = 64;
    const DOM: DomId = DomId(1);
    const OTHER: DomId = DomId(2);
    /// Frames 1..=39 are the domain's, 40..=43 another domain's, 44..=45
    /// Xen's, 46..=47 I/O, the rest (and 0) free.
    const FOREIGN: u64 = 40;
    const XENPG: u64 = 44;
    const IOPG: u64 = 46;
    const FREE: u64 = 50;
    /// Beyond max_mfn.
    const BEYOND: u64 = N + 5;
    const PWT: u64 = PteFlags::PWT.bits();
    const PCD: u64 = PteFlags::PCD.bits();
    const PSE: u64 = PteFlags::PSE.bits();
    const PAT: u64 = PSE;

    struct Mem {
        t: Vec<[u64; ENTRIES]>,
        retyped: Vec<Mfn>,
        freed: Vec<Mfn>,
        /// Frames reported through `writable_mapped` / `table_validated`.
        dirtied: Vec<Mfn>,
    }

    impl PtMemory for Mem {
        fn writable_mapped(&mut self, mfn: Mfn) {
            self.dirtied.push(mfn);
        }
        fn table_validated(&mut self, mfn: Mfn) {
            self.dirtied.push(mfn);
        }
        fn read_pte(&self, table: Mfn, index: usize) -> u64 {
            self.t[table.0 as usize][index]
        }
        fn write_pte(&mut self, table: Mfn, index: usize, val: u64) {
            self.t[table.0 as usize][index] = val;
        }
        fn swap_pte(&mut self, table: Mfn, index: usize, val: u64) -> u64 {
            let old = self.read_pte(table, index);
            self.write_pte(table, index, val);
            old
        }
        fn flush_before_type_change(&mut self, mfn: Mfn) {
            self.retyped.push(mfn);
        }
        fn frame_freed(&mut self, mfn: Mfn) {
            self.freed.push(mfn);
        }
    }

    impl Mem {
        fn set(&mut self, table: u64, index: usize, val: u64) {
            self.t[table as usize][index] = val;
        }
        fn get(&self, table: u64, index: usize) -> u64 {
            self.t[table as usize][index]
        }
    }

    /// Hypervisor L4 entries: present, pointing beyond RAM.
    fn xen_slots() -> &'static [u64; XEN_L4_SLOT_COUNT] {
        Box::leak(Box::new(core::array::from_fn(|k| {
            NX | DIRTY | ACCESSED | RW | P | ((0x1000 + k as u64) << 12)
        })))
    }

    fn world(f: impl FnOnce(&PtContext, &mut FrameTable, &mut Mem)) {
        let mut pages = vec![PageInfo::FREE; N as usize];
        let mut ft = FrameTable::new(&mut pages);
        for i in 1..40 {
            ft.assign(Mfn(i), Owner::Domain(DOM)).unwrap();
        }
        for i in 40..44 {
            ft.assign(Mfn(i), Owner::Domain(OTHER)).unwrap();
        }
        for i in 44..46 {
            ft.assign(Mfn(i), Owner::Xen).unwrap();
        }
        for i in 46..48 {
            ft.assign(Mfn(i), Owner::Io).unwrap();
        }
        let mut mem = Mem {
            t: vec![[0; ENTRIES]; N as usize],
            retyped: Vec::new(),
            freed: Vec::new(),
            dirtied: Vec::new(),
        };
        let ctx = PtContext {
            domid: DOM,
            pg_owner: DOM,
            xen_l4_slots: xen_slots(),
            max_mfn: N - 1,
            iomem: &IoMem::NONE,
        };
        f(&ctx, &mut ft, &mut mem);
    }

    /// User read-only mapping.
    fn ro(m: u64) -> u64 {
        (m << 12) | P | USER | ACCESSED
    }
    /// User writable mapping.
    fn rw(m: u64) -> u64 {
        ro(m) | RW
    }
    /// Kernel (no U/S) read-only mapping.
    fn kro(m: u64) -> u64 {
        (m << 12) | P
    }
    /// Pointer to a next-level table, as a guest writes it (no U/S).
    fn tb(m: u64) -> u64 {
        (m << 12) | P | RW | ACCESSED | DIRTY
    }

    fn snap(ft: &FrameTable) -> Vec<PageInfo> {
        (0..N).map(|i| ft.info(Mfn(i)).unwrap()).collect()
    }

    fn cnt(ft: &FrameTable, m: u64) -> (u32, u32) {
        let i = ft.info(Mfn(m)).unwrap();
        (i.count(), i.type_count())
    }

    fn validated(ft: &FrameTable, m: u64) -> bool {
        ft.is_validated(Mfn(m)).unwrap()
    }

    /// The whole frame table has the counts, owners and pins of `before`.
    fn assert_balanced(ft: &FrameTable, before: &[PageInfo]) {
        for (i, b) in before.iter().enumerate() {
            let a = ft.info(Mfn(i as u64)).unwrap();
            let key = |p: &PageInfo| {
                (
                    p.owner(),
                    p.count(),
                    p.type_count(),
                    p.flags().contains(PageFlags::PINNED),
                )
            };
            assert_eq!(key(&a), key(b), "mfn {i}: {a:?} vs {b:?}");
        }
    }

    #[test]
    fn masks_are_xens() {
        // base_disallow_mask: PWT, PCD, PAT/PSE, G.
        assert_eq!(BASE_DISALLOW_MASK, 0x198);
        assert_eq!(L1_DISALLOW_MASK, 0x098 | GNTTAB | LOGDIRTY_RO);
        assert_eq!(L2_DISALLOW_MASK, 0x198);
        assert_eq!(L3_DISALLOW_MASK, 0x198);
        assert_eq!(L4_DISALLOW_MASK, 0x198);
        for l in 1..=4 {
            let guest_bits = NX | AVAIL | (AVAIL_HIGH & !GNTTAB & !LOGDIRTY_RO) | USER | RW;
            assert_eq!(disallow_mask(l) & guest_bits, 0);
        }
        // Fast path: the address, P, RW, PWT, PCD and PSE must not change.
        assert_eq!(FASTPATH_CHECK, ADDR_MASK | 0x9b);
        assert_eq!(INVALID_MFN_FIELD, (1 << 40) - 1);
        assert_eq!(GUEST_KERNEL, 1 << 52);
        assert!(is_xen_l4_slot(256) && is_xen_l4_slot(271));
        assert!(!is_xen_l4_slot(255) && !is_xen_l4_slot(272));
    }

    #[test]
    fn log_dirty_marker_encoding() {
        assert_eq!(LOGDIRTY_RO, 1 << 58);
        assert_ne!(LOGDIRTY_RO & (GNTTAB | GUEST_KERNEL), LOGDIRTY_RO);
        let w = adjust_entry(1, rw(11) | NX | DIRTY);
        let p = protect_l1e(w).unwrap();
        assert_eq!(p & RW, 0, "hardware sees it read-only");
        assert_eq!(p & LOGDIRTY_RO, LOGDIRTY_RO);
        assert_eq!(logical_l1e(p), w, "logically the writable entry");
        assert_eq!(unprotect_l1e(p), Some(w));
        assert_eq!(protect_l1e(p), None, "already protected");
        // Only present, writable, non-grant mappings are protected.
        assert_eq!(protect_l1e(ro(11)), None);
        assert_eq!(protect_l1e(rw(11) & !P), None);
        assert_eq!(protect_l1e(grant_pte(Mfn(11), 0)), None);
        // Entries without the marker read as they are.
        for e in [0, ro(3), rw(3), kro(3) | NX, rw(3) & !P] {
            assert_eq!(logical_l1e(e), e);
            assert_eq!(unprotect_l1e(e), None);
        }
    }

    #[test]
    fn log_dirty_protected_entries_keep_their_references() {
        world(|ctx, ft, mem| {
            let before = snap(ft);
            mem.set(1, 0, ro(10));
            mem.set(1, 1, rw(11));
            mem.set(1, 2, rw(12));
            mem.set(1, 3, rw(13));
            mem.set(1, 4, rw(14));
            get_table(ctx, ft, mem, Mfn(1), 1).unwrap();
            // Log-dirty mode hears of the writable mappings and the table.
            assert_eq!(
                mem.dirtied,
                [Mfn(11), Mfn(12), Mfn(13), Mfn(14), Mfn(1)],
                "writable mappings, then the validated table"
            );
            mem.dirtied.clear();
            let live = snap(ft);
            for i in 1..=4 {
                let p = protect_l1e(mem.get(1, i)).unwrap();
                mem.set(1, i, p);
            }
            // The guest may not set the marker itself.
            assert!(matches!(
                mod_entry(ctx, ft, mem, Mfn(1), 5, rw(15) | LOGDIRTY_RO, false),
                Err(PtError::BadFlags { level: 1, .. })
            ));
            assert_eq!(
                mod_entry(ctx, ft, mem, Mfn(1), 5, ro(15) | LOGDIRTY_RO, false)
                    .unwrap_err()
                    .errno(),
                Errno::EINVAL
            );
            // Write-protecting a protected entry (same frame, R/W clear in
            // both raw entries) drops the writable reference.
            mod_entry(ctx, ft, mem, Mfn(1), 1, ro(11), false).unwrap();
            assert_eq!(cnt(ft, 11), (2, 0));
            assert_eq!(mem.get(1, 1) & LOGDIRTY_RO, 0);
            // Rewriting it writable keeps the reference it holds.
            mod_entry(ctx, ft, mem, Mfn(1), 2, rw(12), false).unwrap();
            assert_eq!(cnt(ft, 12), (2, 1));
            assert_eq!(mem.dirtied, [Mfn(12)], "writable again: its frame is dirty");
            assert_eq!(mem.get(1, 2) & (RW | LOGDIRTY_RO), RW);
            // Clearing it drops both references.
            mod_entry(ctx, ft, mem, Mfn(1), 3, 0, false).unwrap();
            assert_eq!(cnt(ft, 13), (1, 0));
            // Pointing it elsewhere moves them.
            mod_entry(ctx, ft, mem, Mfn(1), 4, rw(16), false).unwrap();
            assert_eq!((cnt(ft, 14), cnt(ft, 16)), ((1, 0), (2, 1)));
            assert_eq!(
                mem.dirtied,
                [Mfn(12), Mfn(16)],
                "a new writable mapping: dirty"
            );
            mod_entry(ctx, ft, mem, Mfn(1), 4, rw(14), false).unwrap();
            mod_entry(ctx, ft, mem, Mfn(1), 1, rw(11), false).unwrap();
            mod_entry(ctx, ft, mem, Mfn(1), 3, rw(13), false).unwrap();
            assert_balanced(ft, &live);
            // Devalidating a table with protected entries drops what they
            // stand for and leaves no marker behind.
            let p = protect_l1e(mem.get(1, 4)).unwrap();
            mem.set(1, 4, p);
            put_table(ctx, ft, mem, Mfn(1));
            assert_balanced(ft, &before);
            assert!((0..ENTRIES).all(|i| mem.get(1, i) & LOGDIRTY_RO == 0));
            assert_eq!(mem.get(1, 4) & RW, RW);
            // So the guest may validate it again.
            get_table(ctx, ft, mem, Mfn(1), 1).unwrap();
            assert_balanced(ft, &live);
            // A dying domain's protected entries go the same way.
            let p = protect_l1e(mem.get(1, 2)).unwrap();
            mem.set(1, 2, p);
            relinquish_table(ctx, ft, mem, Mfn(1));
            assert_eq!(cnt(ft, 12), (1, 0));
            assert_eq!(cnt(ft, 11), (1, 0));
        });
    }

    #[test]
    fn adjust_is_xens() {
        // Kernel mapping: U/S added and remembered in bit 52, not global.
        assert_eq!(adjust_entry(1, kro(5)), kro(5) | USER | GUEST_KERNEL);
        // User mapping: global.
        assert_eq!(adjust_entry(1, ro(5)), ro(5) | GLOBAL);
        // Idempotent.
        for e in [kro(5), ro(5), rw(7) | NX] {
            let a = adjust_entry(1, e);
            assert_eq!(adjust_entry(1, a), a);
        }
        assert_eq!(adjust_entry(2, tb(5)), tb(5) | USER);
        assert_eq!(adjust_entry(3, tb(5)), tb(5) | USER);
        assert_eq!(
            adjust_entry(4, (5 << 12) | P),
            (5 << 12) | P | USER | ACCESSED
        );
        for l in 1..=4 {
            assert_eq!(adjust_entry(l, 0x1234_5000), 0x1234_5000);
        }
    }

    #[test]
    fn l1_entries_take_and_drop_references() {
        world(|ctx, ft, mem| {
            let before = snap(ft);
            mem.set(1, 0, ro(10));
            mem.set(1, 1, rw(11));
            mem.set(1, 2, kro(12));
            mem.set(1, 3, ro(10));
            mem.set(1, 5, rw(11) | GLOBAL | NX | AVAIL | (0x3 << 53));
            // The table maps itself read-only.
            mem.set(1, 6, ro(1));
            // Not present: never looked at, whatever it says.
            let junk = (FOREIGN << 12) | PWT | PSE;
            mem.set(1, 7, junk);
            get_table(ctx, ft, mem, Mfn(1), 1).unwrap();
            assert_eq!(cnt(ft, 1), (3, 1));
            assert!(validated(ft, 1));
            assert_eq!(ft.page_type(Mfn(1)), Ok(PageType::L1));
            assert_eq!(cnt(ft, 10), (3, 0));
            assert_eq!(cnt(ft, 11), (3, 2));
            assert_eq!(ft.page_type(Mfn(11)), Ok(PageType::Writable));
            assert_eq!(cnt(ft, 12), (2, 0));
            assert_eq!(mem.get(1, 0), ro(10) | GLOBAL);
            assert_eq!(mem.get(1, 2), kro(12) | USER | GUEST_KERNEL);
            assert_eq!(mem.get(1, 7), junk);
            // A second reference does not revalidate.
            get_table(ctx, ft, mem, Mfn(1), 1).unwrap();
            assert_eq!(cnt(ft, 10), (3, 0));
            put_table(ctx, ft, mem, Mfn(1));
            assert!(validated(ft, 1));
            put_table(ctx, ft, mem, Mfn(1));
            assert!(!validated(ft, 1));
            assert_balanced(ft, &before);
            assert!(mem.freed.is_empty());
        });
    }

    fn l1_case(entry: u64, want: PtError, errno: Errno) {
        world(|ctx, ft, mem| {
            // Something in use as an L2 and a descriptor page in use.
            pin(ctx, ft, mem, Mfn(20), 2).unwrap();
            ft.get_page_and_type(Mfn(21), ctx.owner(), PageType::SegDesc)
                .unwrap();
            ft.mark_validated(Mfn(21)).unwrap();
            let before = snap(ft);
            mem.set(1, 0, ro(10));
            mem.set(1, 1, rw(11));
            mem.set(1, 2, ro(20));
            mem.set(1, 3, ro(21));
            mem.set(1, 400, entry);
            let got = get_table(ctx, ft, mem, Mfn(1), 1).unwrap_err();
            assert_eq!(got, want, "{entry:#x}");
            assert_eq!(got.errno(), errno, "{entry:#x}");
            assert_balanced(ft, &before);
            assert!(!validated(ft, 1));
            // The same through get_l1_mapping (except the table mapping
            // itself: no longer a table, it may now be mapped writable).
            if entry != rw(1) {
                assert_eq!(get_l1_mapping(ctx, ft, mem, entry), Err(want));
                assert_balanced(ft, &before);
            }
        });
    }

    #[test]
    fn l1_refuses_what_xen_refuses() {
        use Errno::*;
        let m = |x: u64| Mfn(x);
        let bad = |flags| PtError::BadFlags { level: 1, flags };
        l1_case(ro(10) | PWT, bad(PWT), EINVAL);
        l1_case(ro(10) | PCD, bad(PCD), EINVAL);
        l1_case(rw(10) | PAT | PCD, bad(PAT | PCD), EINVAL);
        let not_owned = |x, owner| PtError::MapNotOwned { mfn: m(x), owner };
        l1_case(ro(FOREIGN), not_owned(FOREIGN, Owner::Domain(OTHER)), EBUSY);
        l1_case(rw(FOREIGN), not_owned(FOREIGN, Owner::Domain(OTHER)), EBUSY);
        l1_case(ro(XENPG), not_owned(XENPG, Owner::Xen), EBUSY);
        l1_case(ro(FREE), not_owned(FREE, Owner::Free), EBUSY);
        l1_case(ro(IOPG), PtError::MapIo { mfn: m(IOPG) }, EPERM);
        l1_case(ro(BEYOND), PtError::MapIo { mfn: m(BEYOND) }, EPERM);
        l1_case(ADDR_MASK | P, PtError::InvalidMfn, EINVAL);
        let conflict = |x, current| PtError::MapTypeConflict { mfn: m(x), current };
        // The table itself, a table in use, a descriptor page in use.
        l1_case(rw(1), conflict(1, PageType::L1), EBUSY);
        l1_case(rw(20), conflict(20, PageType::L2), EBUSY);
        l1_case(rw(21), conflict(21, PageType::SegDesc), EBUSY);
    }

    #[test]
    fn foreign_mappings_need_pg_owner_and_only_reach_l1_updates() {
        world(|ctx, ft, mem| {
            // An L1 (frame 10) under an L2 (11), pinned.
            mem.set(11, 0, tb(10));
            pin(ctx, ft, mem, Mfn(11), 2).unwrap();
            // Without pg_owner, another domain's frame is refused.
            assert_eq!(
                mod_entry(ctx, ft, mem, Mfn(10), 0, rw(40), false),
                Err(PtError::MapNotOwned {
                    mfn: Mfn(40),
                    owner: Owner::Domain(OTHER)
                })
            );
            let foreign = PtContext {
                pg_owner: OTHER,
                ..*ctx
            };
            mod_entry(&foreign, ft, mem, Mfn(10), 0, rw(40), false).unwrap();
            assert_eq!(cnt(ft, 40), (2, 1));
            // ... and then its own frames are not mappable through it.
            assert!(mod_entry(&foreign, ft, mem, Mfn(10), 1, ro(5), false).is_err());
            // A table entry (L2) still names the caller's own tables only.
            assert!(mod_entry(&foreign, ft, mem, Mfn(11), 1, tb(41), false).is_err());
            // Removing the mapping drops the foreign references.
            mod_entry(ctx, ft, mem, Mfn(10), 0, 0, false).unwrap();
            assert_eq!(cnt(ft, 40), (1, 0));
        });
    }

    #[test]
    fn relinquish_breaks_cycles_and_balances_every_count() {
        world(|ctx, ft, mem| {
            let before = snap(ft);
            // L4 20 -> L3 21 -> L2 22 -> L1 23 -> data 24 (rw) and 25 (ro),
            // plus a foreign frame 40 mapped into the L1 (kept by others'
            // rules: it must be put back too).
            mem.set(20, 0, tb(21));
            mem.set(21, 0, tb(22));
            mem.set(22, 0, tb(23));
            mem.set(23, 0, rw(24));
            mem.set(23, 1, ro(25));
            pin(ctx, ft, mem, Mfn(20), 4).unwrap();
            let foreign = PtContext {
                pg_owner: OTHER,
                ..*ctx
            };
            mod_entry(&foreign, ft, mem, Mfn(23), 2, ro(40), false).unwrap();
            // A second pinned L2 (26) sharing the L1 23.
            mem.set(26, 0, tb(23));
            pin(ctx, ft, mem, Mfn(26), 2).unwrap();
            // Destruction: pins are not dropped (the guest vanished), so
            // relinquish every table of the domain, in any order.
            for m in [23u64, 26, 21, 20, 22] {
                relinquish_table(ctx, ft, mem, Mfn(m));
            }
            // Drop the pins' own references as the destroyer does after.
            for m in [20u64, 26] {
                ft.clear_pinned(Mfn(m)).unwrap();
                let _ = ft.put_page_and_type(Mfn(m));
            }
            // Nothing refers to anything any more: every count is as before
            // (types may have stayed set, counts are what matter).
            for i in 0..N {
                let (a, b) = (ft.info(Mfn(i)).unwrap(), before[i as usize]);
                assert_eq!(
                    (a.count(), a.type_count()),
                    (b.count(), b.type_count()),
                    "mfn {i}"
                );
            }
            assert_eq!(cnt(ft, 40), (1, 0));
        });
    }

    #[test]
    fn l1_mapping_beyond_the_frame_table_is_io() {
        world(|ctx, ft, mem| {
            let ctx = PtContext {
                max_mfn: 1000,
                iomem: &IoMem::NONE,
                ..*ctx
            };
            assert_eq!(
                get_l1_mapping(&ctx, ft, mem, ro(100)),
                Err(PtError::MapIo { mfn: Mfn(100) })
            );
            // Nothing was referenced, so nothing is dropped.
            let before = snap(ft);
            put_l1_mapping(&ctx, ft, mem, ro(100));
            put_l1_mapping(&ctx, ft, mem, rw(IOPG));
            put_l1_mapping(&ctx, ft, mem, 0);
            assert_balanced(ft, &before);
        });
    }

    #[test]
    fn io_mappings_need_iomem_permission() {
        world(|ctx, ft, mem| {
            let io = PtContext {
                max_mfn: 1000,
                iomem: Box::leak(Box::new(IoMem::all_but(&[
                    (0xfee00, 0xfeeff),
                    (2000, 2000),
                ]))),
                ..*ctx
            };
            let before = snap(ft);
            // Above RAM and in a hole (DOMID_IO's frame), with cache
            // attributes: fine, and nothing is referenced.
            let uc = PteFlags::PCD.bits() | PteFlags::PWT.bits();
            get_l1_mapping(&io, ft, mem, rw(1500) | uc).unwrap();
            get_l1_mapping(&io, ft, mem, rw(IOPG)).unwrap();
            put_l1_mapping(&io, ft, mem, rw(1500) | uc);
            put_l1_mapping(&io, ft, mem, rw(IOPG));
            assert_balanced(ft, &before);
            // Denied frames, and any frame without permission: -EPERM.
            for (c, f) in [(&io, 2000), (&io, 0xfee00), (&io, 0xfeeff)] {
                assert_eq!(
                    get_l1_mapping(c, ft, mem, ro(f)),
                    Err(PtError::MapIo { mfn: Mfn(f) })
                );
            }
            let none = PtContext {
                max_mfn: 1000,
                ..*ctx
            };
            assert_eq!(
                get_l1_mapping(&none, ft, mem, ro(1500)),
                Err(PtError::MapIo { mfn: Mfn(1500) })
            );
            assert_eq!(
                get_l1_mapping(&none, ft, mem, ro(IOPG)),
                Err(PtError::MapIo { mfn: Mfn(IOPG) })
            );
            assert_eq!(PtError::MapIo { mfn: Mfn(1) }.errno(), Errno::EPERM);
            // Cache attributes only with I/O capabilities.
            assert!(matches!(
                get_l1_mapping(&none, ft, mem, ro(10) | uc),
                Err(PtError::BadFlags { level: 1, .. })
            ));
            get_l1_mapping(&io, ft, mem, ro(10) | uc).unwrap();
            put_l1_mapping(&io, ft, mem, ro(10) | uc);
            // RAM stays RAM: DOMID_IO as the owner maps none of it.
            let dio = PtContext {
                pg_owner: DomId::IO,
                ..io
            };
            assert!(Pt {
                ctx: &dio,
                ft: &mut *ft,
                mem: &mut *mem
            }
            .get_l1_as(ro(10), Owner::Domain(DomId::IO))
            .is_err());
            assert_balanced(ft, &before);
        });
    }

    #[test]
    fn l1_mapping_helpers() {
        world(|ctx, ft, mem| {
            let before = snap(ft);
            get_l1_mapping(ctx, ft, mem, rw(10)).unwrap();
            get_l1_mapping(ctx, ft, mem, ro(10)).unwrap();
            get_l1_mapping(ctx, ft, mem, 0x5000).unwrap(); // not present
            assert_eq!(cnt(ft, 10), (3, 1));
            put_l1_mapping(ctx, ft, mem, rw(10));
            put_l1_mapping(ctx, ft, mem, ro(10));
            put_l1_mapping(ctx, ft, mem, 0x5000);
            assert_balanced(ft, &before);
        });
    }

    #[test]
    fn l2_validates_its_l1s() {
        world(|ctx, ft, mem| {
            let before = snap(ft);
            mem.set(3, 0, rw(10));
            mem.set(2, 0, tb(3));
            mem.set(2, 1, tb(3));
            mem.set(2, 511, tb(4) & !RW);
            get_table(ctx, ft, mem, Mfn(2), 2).unwrap();
            assert_eq!(cnt(ft, 2), (2, 1));
            assert_eq!(cnt(ft, 3), (3, 2));
            assert_eq!(cnt(ft, 4), (2, 1));
            assert!(validated(ft, 3) && validated(ft, 4));
            assert_eq!(cnt(ft, 10), (2, 1));
            assert_eq!(mem.get(2, 0), tb(3) | USER);
            assert_eq!(mem.get(3, 0), rw(10) | GLOBAL);
            put_table(ctx, ft, mem, Mfn(2));
            assert!(!validated(ft, 3) && !validated(ft, 4));
            assert_balanced(ft, &before);
        });
    }

    fn l2_case(entry: u64, want: PtError) {
        world(|ctx, ft, mem| {
            pin(ctx, ft, mem, Mfn(20), 2).unwrap(); // an L2 in use
            pin(ctx, ft, mem, Mfn(22), 3).unwrap(); // an L3 in use
            get_l1_mapping(ctx, ft, mem, rw(11)).unwrap(); // 11 writable
            mem.set(5, 3, ro(FOREIGN)); // an L1 that cannot validate
            let before = snap(ft);
            mem.set(3, 0, rw(10));
            mem.set(2, 0, tb(3));
            mem.set(2, 300, entry);
            let got = get_table(ctx, ft, mem, Mfn(2), 2).unwrap_err();
            assert_eq!(got, want, "{entry:#x}");
            // Xen: -EINVAL for every L2 entry it refuses; a failure inside
            // the referenced L1 passes through (here -EBUSY).
            let errno = match want {
                PtError::MapNotOwned { .. } => Errno::EBUSY,
                _ => Errno::EINVAL,
            };
            assert_eq!(got.errno(), errno, "{entry:#x}");
            assert_balanced(ft, &before);
            assert!(!validated(ft, 2) && !validated(ft, 3));
            // The same entry as an update of the L2, once live.
            mem.set(2, 300, 0);
            pin(ctx, ft, mem, Mfn(2), 2).unwrap();
            let before = snap(ft);
            assert_eq!(
                mod_entry(ctx, ft, mem, Mfn(2), 300, entry, false),
                Err(want)
            );
            assert_eq!(mem.get(2, 300), 0);
            assert_balanced(ft, &before);
        });
    }

    #[test]
    fn l2_refuses_what_xen_refuses() {
        let m = |x: u64| Mfn(x);
        let bad = |flags| PtError::BadFlags { level: 2, flags };
        l2_case(tb(3) | PSE, bad(PSE));
        l2_case(tb(3) | GLOBAL, bad(GLOBAL));
        l2_case(tb(3) | PWT | PCD, bad(PWT | PCD));
        let not_owned = |x, owner| PtError::TableNotOwned { mfn: m(x), owner };
        l2_case(tb(FOREIGN), not_owned(FOREIGN, Some(Owner::Domain(OTHER))));
        l2_case(tb(FREE), not_owned(FREE, Some(Owner::Free)));
        l2_case(tb(IOPG), not_owned(IOPG, Some(Owner::Io)));
        l2_case(tb(XENPG), not_owned(XENPG, Some(Owner::Xen)));
        l2_case(tb(BEYOND), not_owned(BEYOND, None));
        l2_case(
            tb(11),
            PtError::TableTypeConflict {
                mfn: m(11),
                want: PageType::L1,
                current: PageType::Writable,
            },
        );
        l2_case(
            tb(22),
            PtError::TableTypeConflict {
                mfn: m(22),
                want: PageType::L1,
                current: PageType::L3,
            },
        );
        // Linear page tables: the table itself, another L2.
        l2_case(
            tb(2),
            PtError::LinearPageTable {
                level: 2,
                mfn: m(2),
            },
        );
        l2_case(
            tb(20),
            PtError::LinearPageTable {
                level: 2,
                mfn: m(20),
            },
        );
        // A failure inside the L1 comes through as is.
        l2_case(
            tb(5),
            PtError::MapNotOwned {
                mfn: m(FOREIGN),
                owner: Owner::Domain(OTHER),
            },
        );
    }

    /// L4 6 → L3 7 → L2 8 → L1 9 → {rw 10, ro 9 (itself), ro 6 (the L4)};
    /// L4 slot 255 → L3 7 again; junk in the hypervisor's slots.
    fn build_tree(mem: &mut Mem) {
        mem.set(9, 0, rw(10));
        mem.set(9, 1, ro(9));
        mem.set(9, 2, ro(6));
        mem.set(8, 0, tb(9));
        mem.set(7, 0, tb(8));
        mem.set(6, 0, tb(7));
        mem.set(6, 255, tb(7));
        for s in 256..272 {
            mem.set(6, s, tb(FOREIGN) | PSE);
        }
    }

    #[test]
    fn four_level_tree() {
        world(|ctx, ft, mem| {
            let before = snap(ft);
            build_tree(mem);
            get_table(ctx, ft, mem, Mfn(6), 4).unwrap();
            assert_eq!(cnt(ft, 6), (3, 1)); // alloc, ours, the RO mapping
            assert_eq!(cnt(ft, 7), (3, 2));
            assert_eq!(cnt(ft, 8), (2, 1));
            assert_eq!(cnt(ft, 9), (3, 1)); // alloc, the L2 entry, itself
            assert_eq!(cnt(ft, 10), (2, 1));
            for t in [6, 7, 8, 9] {
                assert!(validated(ft, t));
            }
            for (k, &x) in ctx.xen_l4_slots.iter().enumerate() {
                assert_eq!(mem.get(6, 256 + k), x);
            }
            assert_eq!(mem.get(6, 0), tb(7) | USER);
            put_table(ctx, ft, mem, Mfn(6));
            for t in [6, 7, 8, 9] {
                assert!(!validated(ft, t));
            }
            assert_balanced(ft, &before);
        });
    }

    #[test]
    fn upper_levels_refuse_superpages_and_linear_tables() {
        let cases = [
            (
                3,
                tb(8) | PSE,
                PtError::BadFlags {
                    level: 3,
                    flags: PSE,
                },
            ),
            (
                4,
                tb(7) | PSE,
                PtError::BadFlags {
                    level: 4,
                    flags: PSE,
                },
            ),
            (
                4,
                tb(7) | GLOBAL,
                PtError::BadFlags {
                    level: 4,
                    flags: GLOBAL,
                },
            ),
            (
                3,
                tb(30),
                PtError::LinearPageTable {
                    level: 3,
                    mfn: Mfn(30),
                },
            ),
            (
                4,
                tb(31),
                PtError::LinearPageTable {
                    level: 4,
                    mfn: Mfn(31),
                },
            ),
            (
                4,
                tb(6),
                PtError::LinearPageTable {
                    level: 4,
                    mfn: Mfn(6),
                },
            ),
            (
                3,
                tb(FOREIGN),
                PtError::TableNotOwned {
                    mfn: Mfn(FOREIGN),
                    owner: Some(Owner::Domain(OTHER)),
                },
            ),
        ];
        for (level, entry, want) in cases {
            world(|ctx, ft, mem| {
                pin(ctx, ft, mem, Mfn(30), 3).unwrap();
                pin(ctx, ft, mem, Mfn(31), 4).unwrap();
                let before = snap(ft);
                build_tree(mem);
                let table = if level == 4 { 6 } else { 7 };
                mem.set(table, 100, entry);
                assert_eq!(get_table(ctx, ft, mem, Mfn(6), 4), Err(want));
                assert_eq!(want.errno(), Errno::EINVAL);
                assert_balanced(ft, &before);
                for t in [6, 7, 8, 9] {
                    assert!(!validated(ft, t));
                }
            });
        }
    }

    #[test]
    fn deep_failure_is_all_or_nothing() {
        world(|ctx, ft, mem| {
            let before = snap(ft);
            build_tree(mem);
            // A second subtree whose last L1 entry is bad.
            mem.set(19, 0, rw(11));
            mem.set(19, 511, ro(FOREIGN));
            mem.set(18, 0, tb(19));
            mem.set(17, 0, tb(18));
            mem.set(6, 1, tb(17));
            let err = get_table(ctx, ft, mem, Mfn(6), 4).unwrap_err();
            assert_eq!(err.errno(), Errno::EBUSY);
            assert_balanced(ft, &before);
            for t in [6, 7, 8, 9, 17, 18, 19] {
                assert!(!validated(ft, t), "{t}");
            }
            // The hypervisor slots are only written on success.
            assert_eq!(mem.get(6, 256), tb(FOREIGN) | PSE);
        });
    }

    #[test]
    fn hypervisor_l4_slots_cannot_be_updated() {
        world(|ctx, ft, mem| {
            build_tree(mem);
            pin(ctx, ft, mem, Mfn(6), 4).unwrap();
            let before = snap(ft);
            for s in 256..272 {
                for val in [0, tb(7), tb(7) | USER] {
                    let got = mod_entry(ctx, ft, mem, Mfn(6), s, val, false);
                    assert_eq!(got, Err(PtError::HypervisorSlot(s)));
                    assert_eq!(got.unwrap_err().errno(), Errno::EINVAL);
                }
                assert_eq!(mem.get(6, s), ctx.xen_l4_slots[s - 256]);
            }
            assert_balanced(ft, &before);
            mod_entry(ctx, ft, mem, Mfn(6), 272, tb(7), false).unwrap();
            mod_entry(ctx, ft, mem, Mfn(6), 511, tb(7), false).unwrap();
            assert_eq!(cnt(ft, 7), (5, 4));
            mod_entry(ctx, ft, mem, Mfn(6), 272, 0, false).unwrap();
            mod_entry(ctx, ft, mem, Mfn(6), 511, 0, false).unwrap();
            assert_balanced(ft, &before);
        });
    }

    #[test]
    fn l1_updates() {
        world(|ctx, ft, mem| {
            let before = snap(ft);
            pin(ctx, ft, mem, Mfn(1), 1).unwrap();
            let pinned = snap(ft);
            let t = Mfn(1);
            mod_entry(ctx, ft, mem, t, 0, rw(10), false).unwrap();
            assert_eq!(cnt(ft, 10), (2, 1));
            assert_eq!(mem.get(1, 0), rw(10) | GLOBAL);
            // Fast path: only whitelisted bits change.
            let fast = rw(10) | DIRTY | NX | AVAIL | GUEST_KERNEL;
            mod_entry(ctx, ft, mem, t, 0, fast, false).unwrap();
            assert_eq!(cnt(ft, 10), (2, 1));
            assert_eq!(mem.get(1, 0), fast);
            // Read-only now: the writable reference goes.
            mod_entry(ctx, ft, mem, t, 0, ro(10), false).unwrap();
            assert_eq!(cnt(ft, 10), (2, 0));
            // Elsewhere.
            mod_entry(ctx, ft, mem, t, 0, kro(11), false).unwrap();
            assert_eq!(cnt(ft, 10), (1, 0));
            assert_eq!(cnt(ft, 11), (2, 0));
            assert_eq!(mem.get(1, 0), kro(11) | USER | GUEST_KERNEL);
            // Refused updates change nothing.
            let mid = snap(ft);
            let refused = [
                (
                    ro(10) | PCD,
                    PtError::BadFlags {
                        level: 1,
                        flags: PCD,
                    },
                ),
                (
                    rw(FOREIGN),
                    PtError::MapNotOwned {
                        mfn: Mfn(FOREIGN),
                        owner: Owner::Domain(OTHER),
                    },
                ),
                (ro(IOPG), PtError::MapIo { mfn: Mfn(IOPG) }),
                (
                    rw(1),
                    PtError::MapTypeConflict {
                        mfn: Mfn(1),
                        current: PageType::L1,
                    },
                ),
            ];
            for (val, want) in refused {
                assert_eq!(mod_entry(ctx, ft, mem, t, 0, val, false), Err(want));
                assert_eq!(mem.get(1, 0), kro(11) | USER | GUEST_KERNEL);
                assert_balanced(ft, &mid);
            }
            assert_eq!(
                mod_entry(ctx, ft, mem, t, 512, 0, false),
                Err(PtError::BadIndex(512))
            );
            // The table may map itself read-only.
            mod_entry(ctx, ft, mem, t, 1, ro(1), false).unwrap();
            // preserve_ad keeps the old A/D bits.
            mod_entry(ctx, ft, mem, t, 2, ro(12) | DIRTY, false).unwrap();
            mod_entry(ctx, ft, mem, t, 2, ro(12) & !ACCESSED, true).unwrap();
            assert_eq!(mem.get(1, 2), ro(12) | DIRTY | GLOBAL);
            mod_entry(ctx, ft, mem, t, 2, ro(12) & !ACCESSED, false).unwrap();
            assert_eq!(mem.get(1, 2), (ro(12) & !ACCESSED) | GLOBAL);
            // Not present: stored as is, whatever else it says.
            let junk = 0xdead_b000 | PCD | PSE;
            mod_entry(ctx, ft, mem, t, 2, junk, false).unwrap();
            assert_eq!(mem.get(1, 2), junk);
            for i in 0..3 {
                mod_entry(ctx, ft, mem, t, i, 0, false).unwrap();
            }
            assert_balanced(ft, &pinned);
            unpin(ctx, ft, mem, t).unwrap();
            assert_balanced(ft, &before);
        });
    }

    #[test]
    fn upper_level_updates() {
        world(|ctx, ft, mem| {
            let before = snap(ft);
            mem.set(3, 0, rw(10));
            pin(ctx, ft, mem, Mfn(2), 2).unwrap();
            let a = Mfn(2);
            mod_entry(ctx, ft, mem, a, 0, tb(3), false).unwrap();
            assert!(validated(ft, 3));
            assert_eq!(cnt(ft, 10), (2, 1));
            mod_entry(ctx, ft, mem, a, 0, tb(4), false).unwrap();
            assert!(!validated(ft, 3) && validated(ft, 4));
            assert_eq!(cnt(ft, 10), (1, 0));
            // Fast path (D toggled), slow path (RW dropped): same references.
            mod_entry(ctx, ft, mem, a, 0, tb(4) & !DIRTY, false).unwrap();
            assert_eq!(cnt(ft, 4), (2, 1));
            mod_entry(ctx, ft, mem, a, 0, tb(4) & !RW, false).unwrap();
            assert_eq!(cnt(ft, 4), (2, 1));
            assert_eq!(mem.get(2, 0), (tb(4) & !RW) | USER);
            assert_eq!(
                mod_entry(ctx, ft, mem, a, 1, tb(2), false),
                Err(PtError::LinearPageTable { level: 2, mfn: a })
            );
            mod_entry(ctx, ft, mem, a, 0, 0, false).unwrap();
            assert!(!validated(ft, 4));
            // L3 and L4 the same way.
            pin(ctx, ft, mem, Mfn(7), 3).unwrap();
            mod_entry(ctx, ft, mem, Mfn(7), 5, tb(8), false).unwrap();
            assert_eq!(ft.page_type(Mfn(8)), Ok(PageType::L2));
            pin(ctx, ft, mem, Mfn(6), 4).unwrap();
            mod_entry(ctx, ft, mem, Mfn(6), 5, tb(7), false).unwrap();
            assert_eq!(cnt(ft, 7), (3, 2));
            assert_eq!(mem.get(6, 5), tb(7) | USER);
            mod_entry(ctx, ft, mem, Mfn(6), 5, 0, false).unwrap();
            unpin(ctx, ft, mem, Mfn(6)).unwrap();
            unpin(ctx, ft, mem, Mfn(7)).unwrap();
            assert!(!validated(ft, 8));
            unpin(ctx, ft, mem, a).unwrap();
            assert_balanced(ft, &before);
        });
    }

    #[test]
    fn updates_of_frames_that_are_not_live_tables() {
        world(|ctx, ft, mem| {
            let before = snap(ft);
            let raw = 0xfeed_f000 | P | PCD; // never checked: not a table
            mod_entry(ctx, ft, mem, Mfn(15), 3, raw, false).unwrap();
            assert_eq!(mem.get(15, 3), raw);
            assert_eq!(ft.page_type(Mfn(15)), Ok(PageType::Writable));
            assert_balanced(ft, &before);
            // Someone else's frames, free frames, not RAM: refused.
            for (m, owner) in [
                (FOREIGN, Some(Owner::Domain(OTHER))),
                (FREE, Some(Owner::Free)),
                (XENPG, Some(Owner::Xen)),
                (IOPG, Some(Owner::Io)),
                (BEYOND, None),
            ] {
                let got = mod_entry(ctx, ft, mem, Mfn(m), 0, 0, false);
                assert_eq!(got, Err(PtError::TableNotOwned { mfn: Mfn(m), owner }));
                assert_eq!(got.unwrap_err().errno(), Errno::EINVAL);
            }
            // A descriptor page in use: refused.
            ft.get_page_and_type(Mfn(21), ctx.owner(), PageType::SegDesc)
                .unwrap();
            ft.mark_validated(Mfn(21)).unwrap();
            assert_eq!(
                mod_entry(ctx, ft, mem, Mfn(21), 0, 0, false),
                Err(PtError::NotPageTable { mfn: Mfn(21) })
            );
            // A former L1 (no references left) is plain memory again.
            pin(ctx, ft, mem, Mfn(16), 1).unwrap();
            unpin(ctx, ft, mem, Mfn(16)).unwrap();
            mem.retyped.clear();
            mod_entry(ctx, ft, mem, Mfn(16), 0, raw, false).unwrap();
            assert_eq!(mem.retyped, [Mfn(16)]);
            assert_eq!(mem.get(16, 0), raw);
            // ... and must validate again before it is a table.
            assert_eq!(
                pin(ctx, ft, mem, Mfn(16), 1),
                Err(PtError::BadFlags {
                    level: 1,
                    flags: PCD
                })
            );
        });
    }

    #[test]
    fn pin_and_unpin_rules() {
        world(|ctx, ft, mem| {
            let before = snap(ft);
            mem.set(3, 0, rw(10));
            pin(ctx, ft, mem, Mfn(3), 1).unwrap();
            assert_eq!(cnt(ft, 3), (2, 1));
            assert!(ft.is_pinned(Mfn(3)).unwrap());
            let pinned = snap(ft);
            let twice = pin(ctx, ft, mem, Mfn(3), 1);
            assert_eq!(twice, Err(PtError::AlreadyPinned(Mfn(3))));
            assert_eq!(twice.unwrap_err().errno(), Errno::EINVAL);
            assert_eq!(
                pin(ctx, ft, mem, Mfn(3), 2),
                Err(PtError::TableTypeConflict {
                    mfn: Mfn(3),
                    want: PageType::L2,
                    current: PageType::L1
                })
            );
            assert_balanced(ft, &pinned);
            for level in [0, 5, 255] {
                assert_eq!(
                    pin(ctx, ft, mem, Mfn(4), level),
                    Err(PtError::BadLevel(level))
                );
            }
            let not_pinned = unpin(ctx, ft, mem, Mfn(4));
            assert_eq!(not_pinned, Err(PtError::NotPinned(Mfn(4))));
            assert_eq!(not_pinned.unwrap_err().errno(), Errno::EINVAL);
            assert_eq!(
                unpin(ctx, ft, mem, Mfn(FOREIGN)),
                Err(PtError::TableNotOwned {
                    mfn: Mfn(FOREIGN),
                    owner: Some(Owner::Domain(OTHER))
                })
            );
            assert_eq!(
                unpin(ctx, ft, mem, Mfn(BEYOND)),
                Err(PtError::TableNotOwned {
                    mfn: Mfn(BEYOND),
                    owner: None
                })
            );
            assert_eq!(
                pin(ctx, ft, mem, Mfn(FREE), 1),
                Err(PtError::TableNotOwned {
                    mfn: Mfn(FREE),
                    owner: Some(Owner::Free)
                })
            );
            // A table that does not validate is not pinned.
            mem.set(5, 9, rw(3));
            assert_eq!(
                pin(ctx, ft, mem, Mfn(5), 1),
                Err(PtError::MapTypeConflict {
                    mfn: Mfn(3),
                    current: PageType::L1
                })
            );
            assert!(!ft.is_pinned(Mfn(5)).unwrap());
            assert_balanced(ft, &pinned);
            unpin(ctx, ft, mem, Mfn(3)).unwrap();
            assert!(!validated(ft, 3));
            assert_balanced(ft, &before);
            assert_eq!(unpin(ctx, ft, mem, Mfn(3)), Err(PtError::NotPinned(Mfn(3))));
        });
    }

    /// The four orders of pin/unpin and map/unmap of an L1 from a live L2.
    #[test]
    fn pin_and_mapping_in_every_order() {
        #[derive(Clone, Copy, Debug)]
        enum Op {
            Pin,
            Unpin,
            Map,
            Unmap,
        }
        use Op::*;
        let orders = [
            [Pin, Map, Unpin, Unmap],
            [Pin, Map, Unmap, Unpin],
            [Map, Pin, Unmap, Unpin],
            [Map, Pin, Unpin, Unmap],
        ];
        for order in orders {
            world(|ctx, ft, mem| {
                let before = snap(ft);
                mem.set(3, 0, rw(10));
                pin(ctx, ft, mem, Mfn(2), 2).unwrap();
                let mut refs = 0;
                for op in order {
                    match op {
                        Pin => pin(ctx, ft, mem, Mfn(3), 1).unwrap(),
                        Unpin => unpin(ctx, ft, mem, Mfn(3)).unwrap(),
                        Map => mod_entry(ctx, ft, mem, Mfn(2), 0, tb(3), false).unwrap(),
                        Unmap => mod_entry(ctx, ft, mem, Mfn(2), 0, 0, false).unwrap(),
                    }
                    refs = match op {
                        Pin | Map => refs + 1,
                        Unpin | Unmap => refs - 1,
                    };
                    // Validated exactly while referenced; the L1's own
                    // writable mapping lives exactly as long.
                    assert_eq!(cnt(ft, 3), (1 + refs, refs), "{order:?} {op:?}");
                    assert_eq!(validated(ft, 3), refs > 0, "{order:?} {op:?}");
                    let w = u32::from(refs > 0);
                    assert_eq!(cnt(ft, 10), (1 + w, w), "{order:?} {op:?}");
                }
                unpin(ctx, ft, mem, Mfn(2)).unwrap();
                assert_balanced(ft, &before);
            });
        }
    }

    #[test]
    fn pinned_l1_is_never_mapped_writable() {
        world(|ctx, ft, mem| {
            pin(ctx, ft, mem, Mfn(3), 1).unwrap();
            pin(ctx, ft, mem, Mfn(1), 1).unwrap();
            let before = snap(ft);
            let want = PtError::MapTypeConflict {
                mfn: Mfn(3),
                current: PageType::L1,
            };
            assert_eq!(mod_entry(ctx, ft, mem, Mfn(1), 0, rw(3), false), Err(want));
            assert_eq!(want.errno(), Errno::EBUSY);
            assert_eq!(get_l1_mapping(ctx, ft, mem, rw(3)), Err(want));
            mem.set(5, 0, rw(3));
            assert_eq!(pin(ctx, ft, mem, Mfn(5), 1), Err(want));
            assert_balanced(ft, &before);
            // Read-only is fine.
            mod_entry(ctx, ft, mem, Mfn(1), 0, ro(3), false).unwrap();
            // And a frame mapped writable cannot become a table.
            unpin(ctx, ft, mem, Mfn(3)).unwrap();
            mod_entry(ctx, ft, mem, Mfn(1), 0, rw(3), false).unwrap();
            assert_eq!(
                pin(ctx, ft, mem, Mfn(3), 1),
                Err(PtError::TableTypeConflict {
                    mfn: Mfn(3),
                    want: PageType::L1,
                    current: PageType::Writable
                })
            );
        });
    }

    #[test]
    fn base_pointers() {
        world(|ctx, ft, mem| {
            let before = snap(ft);
            build_tree(mem);
            mem.set(16, 0, tb(7));
            new_baseptr(ctx, ft, mem, None, Some(Mfn(6))).unwrap();
            assert!(validated(ft, 6) && validated(ft, 9));
            let one = snap(ft);
            new_baseptr(ctx, ft, mem, Some(Mfn(6)), Some(Mfn(6))).unwrap();
            assert_balanced(ft, &one);
            // Switch to another L4 sharing the L3.
            new_baseptr(ctx, ft, mem, Some(Mfn(6)), Some(Mfn(16))).unwrap();
            assert!(!validated(ft, 6) && validated(ft, 16) && validated(ft, 7));
            assert_eq!(cnt(ft, 7), (2, 1));
            let two = snap(ft);
            // Refused: the old one stays.
            let refused = [
                (
                    Mfn(FOREIGN),
                    PtError::TableNotOwned {
                        mfn: Mfn(FOREIGN),
                        owner: Some(Owner::Domain(OTHER)),
                    },
                ),
                (
                    Mfn(0), // NEW_BASEPTR with MFN 0
                    PtError::TableNotOwned {
                        mfn: Mfn(0),
                        owner: Some(Owner::Free),
                    },
                ),
                (
                    Mfn(7),
                    PtError::TableTypeConflict {
                        mfn: Mfn(7),
                        want: PageType::L4,
                        current: PageType::L3,
                    },
                ),
            ];
            for (new, want) in refused {
                assert_eq!(
                    new_baseptr(ctx, ft, mem, Some(Mfn(16)), Some(new)),
                    Err(want)
                );
                assert_balanced(ft, &two);
            }
            // NEW_USER_BASEPTR 0: none.
            new_baseptr(ctx, ft, mem, Some(Mfn(16)), None).unwrap();
            new_baseptr(ctx, ft, mem, None, None).unwrap();
            assert_balanced(ft, &before);
        });
    }

    #[test]
    fn type_changes_are_flushed_first() {
        world(|ctx, ft, mem| {
            pin(ctx, ft, mem, Mfn(1), 1).unwrap();
            // Fresh frames: nothing to flush.
            mod_entry(ctx, ft, mem, Mfn(1), 0, rw(20), false).unwrap();
            pin(ctx, ft, mem, Mfn(21), 1).unwrap();
            unpin(ctx, ft, mem, Mfn(21)).unwrap();
            pin(ctx, ft, mem, Mfn(21), 1).unwrap(); // same type again
            assert!(mem.retyped.is_empty());
            // Writable → L1.
            mod_entry(ctx, ft, mem, Mfn(1), 0, 0, false).unwrap();
            pin(ctx, ft, mem, Mfn(20), 1).unwrap();
            assert_eq!(mem.retyped, [Mfn(20)]);
            // L1 → writable.
            unpin(ctx, ft, mem, Mfn(20)).unwrap();
            mod_entry(ctx, ft, mem, Mfn(1), 0, rw(20), false).unwrap();
            assert_eq!(mem.retyped, [Mfn(20), Mfn(20)]);
            // L1 → L2.
            mem.retyped.clear();
            unpin(ctx, ft, mem, Mfn(21)).unwrap();
            pin(ctx, ft, mem, Mfn(21), 2).unwrap();
            assert_eq!(mem.retyped, [Mfn(21)]);
        });
    }

    #[test]
    fn last_reference_frees_a_released_frame() {
        world(|ctx, ft, mem| {
            pin(ctx, ft, mem, Mfn(1), 1).unwrap();
            mod_entry(ctx, ft, mem, Mfn(1), 0, rw(25), false).unwrap();
            assert_eq!(ft.release(Mfn(25)), Ok(PagePut::InUse));
            mod_entry(ctx, ft, mem, Mfn(1), 0, 0, false).unwrap();
            assert_eq!(mem.freed, [Mfn(25)]);
            assert_eq!(ft.owner(Mfn(25)), Ok(Owner::Free));
            // A released, pinned table goes with its pin.
            mem.set(26, 0, ro(27));
            pin(ctx, ft, mem, Mfn(26), 1).unwrap();
            assert_eq!(ft.release(Mfn(26)), Ok(PagePut::InUse));
            assert_eq!(ft.release(Mfn(27)), Ok(PagePut::InUse));
            unpin(ctx, ft, mem, Mfn(26)).unwrap();
            assert_eq!(mem.freed, [Mfn(25), Mfn(27), Mfn(26)]);
        });
    }

    /// The glue's pattern: its own get_page_and_type, then validate_table.
    #[test]
    fn validate_and_devalidate_directly() {
        world(|ctx, ft, mem| {
            let before = snap(ft);
            let owner = ctx.owner();
            mem.set(3, 0, rw(10));
            mem.set(3, 1, ro(3));
            let t = Mfn(3);
            assert_eq!(
                ft.get_page_and_type(t, owner, PageType::L1),
                Ok(TypeGet::NeedsValidation)
            );
            validate_table(ctx, ft, mem, t, 1).unwrap();
            ft.mark_validated(t).unwrap();
            // Not waiting for validation any more.
            assert_eq!(
                validate_table(ctx, ft, mem, t, 1),
                Err(PtError::NotPageTable { mfn: t })
            );
            assert_eq!(
                validate_table(ctx, ft, mem, t, 2),
                Err(PtError::NotPageTable { mfn: t })
            );
            assert_eq!(
                validate_table(ctx, ft, mem, Mfn(FOREIGN), 1),
                Err(PtError::TableNotOwned {
                    mfn: Mfn(FOREIGN),
                    owner: Some(Owner::Domain(OTHER))
                })
            );
            assert_eq!(
                validate_table(ctx, ft, mem, t, 9),
                Err(PtError::BadLevel(9))
            );
            assert_eq!(get_table(ctx, ft, mem, t, 0), Err(PtError::BadLevel(0)));
            assert_eq!(ft.put_page_type(t), Ok(TypePut::Devalidate));
            devalidate_table(ctx, ft, mem, t, 1);
            devalidate_table(ctx, ft, mem, t, 7); // ignored
            ft.put_page(t).unwrap();
            assert_balanced(ft, &before);
            // A failing validation leaves only the caller's own reference.
            mem.set(3, 2, ro(FOREIGN));
            ft.get_page_and_type(t, owner, PageType::L1).unwrap();
            let held = snap(ft);
            assert!(validate_table(ctx, ft, mem, t, 1).is_err());
            assert_balanced(ft, &held);
            ft.put_page_and_type(t).unwrap();
            assert_balanced(ft, &before);
        });
    }

    #[test]
    fn puts_of_unheld_references_are_harmless() {
        world(|ctx, ft, mem| {
            let before = snap(ft);
            put_table(ctx, ft, mem, Mfn(3)); // never referenced
            put_table(ctx, ft, mem, Mfn(BEYOND));
            put_l1_mapping(ctx, ft, mem, rw(10)); // not writable-typed
            new_baseptr(ctx, ft, mem, Some(Mfn(FOREIGN)), None).unwrap();
            assert_balanced(ft, &before);
            assert!(mem.freed.is_empty());
        });
    }

    #[test]
    fn frame_table_errors_map_to_xens_codes() {
        use FrameTableErrorKind as K;
        let e = |kind| FrameTableError { mfn: Mfn(9), kind };
        assert_eq!(
            map_err(e(K::CountOverflow)),
            PtError::MapCountOverflow { mfn: Mfn(9) }
        );
        assert_eq!(
            map_err(e(K::TypeCountOverflow)),
            PtError::MapCountOverflow { mfn: Mfn(9) }
        );
        assert_eq!(map_err(e(K::OutOfRange)), PtError::MapIo { mfn: Mfn(9) });
        assert_eq!(
            table_err(e(K::CountOverflow), PageType::L1),
            PtError::TableCountOverflow { mfn: Mfn(9) }
        );
        assert_eq!(
            table_err(e(K::NotValidated), PageType::L1),
            PtError::FrameTable(e(K::NotValidated))
        );
        assert_eq!(map_err(e(K::BadType)), PtError::FrameTable(e(K::BadType)));
        assert_eq!(
            PtError::MapCountOverflow { mfn: Mfn(9) }.errno(),
            Errno::EBUSY
        );
        assert_eq!(
            PtError::TableCountOverflow { mfn: Mfn(9) }.errno(),
            Errno::EINVAL
        );
    }

    #[test]
    fn display_and_errno() {
        let m = Mfn(0x2a);
        let f = FrameTableError {
            mfn: m,
            kind: FrameTableErrorKind::NotValidated,
        };
        let cases: [(PtError, Errno, &str); 19] = [
            (PtError::BadLevel(5), Errno::EINVAL, "bad paging level 5"),
            (PtError::BadIndex(512), Errno::EINVAL, "bad entry index 512"),
            (
                PtError::BadFlags {
                    level: 2,
                    flags: 0x80,
                },
                Errno::EINVAL,
                "bad L2 flags 0x80",
            ),
            (
                PtError::HypervisorSlot(0x100),
                Errno::EINVAL,
                "hypervisor's area, slot 0x100",
            ),
            (PtError::InvalidMfn, Errno::EINVAL, "invalid mfn"),
            (
                PtError::MapIo { mfn: m },
                Errno::EPERM,
                "MMIO space mfn 0x2a",
            ),
            (
                PtError::MapNotOwned {
                    mfn: m,
                    owner: Owner::Free,
                },
                Errno::EBUSY,
                "owned by Free",
            ),
            (
                PtError::MapTypeConflict {
                    mfn: m,
                    current: PageType::L2,
                },
                Errno::EBUSY,
                "in use as L2",
            ),
            (
                PtError::MapCountOverflow { mfn: m },
                Errno::EBUSY,
                "overflow",
            ),
            (
                PtError::TableNotOwned {
                    mfn: m,
                    owner: None,
                },
                Errno::EINVAL,
                "not RAM",
            ),
            (
                PtError::TableNotOwned {
                    mfn: m,
                    owner: Some(Owner::Xen),
                },
                Errno::EINVAL,
                "owned by Xen",
            ),
            (
                PtError::TableTypeConflict {
                    mfn: m,
                    want: PageType::L1,
                    current: PageType::Writable,
                },
                Errno::EINVAL,
                "wanted as L1 but in use as Writable",
            ),
            (
                PtError::LinearPageTable { level: 3, mfn: m },
                Errno::EINVAL,
                "linear page table",
            ),
            (
                PtError::TableCountOverflow { mfn: m },
                Errno::EINVAL,
                "overflow",
            ),
            (
                PtError::NotPageTable { mfn: m },
                Errno::EINVAL,
                "not a usable page table",
            ),
            (PtError::AlreadyPinned(m), Errno::EINVAL, "already pinned"),
            (PtError::NotPinned(m), Errno::EINVAL, "not pinned"),
            (
                PtError::FrameTable(f),
                Errno::EINVAL,
                "frame table: mfn 0x2a",
            ),
            (
                PtError::MapNotOwned {
                    mfn: m,
                    owner: Owner::Domain(OTHER),
                },
                Errno::EBUSY,
                "mfn 0x2a",
            ),
        ];
        for (e, errno, text) in cases {
            assert_eq!(e.errno(), errno, "{e:?}");
            let s = e.to_string();
            assert!(s.contains(text), "{s:?} lacks {text:?}");
        }
        assert_eq!(
            format!("{}", PtError::NotPinned(Mfn(1))),
            "mfn 0x1 not pinned"
        );
    }

    /// xorshift64*: deterministic, no crates.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn chance(&mut self, percent: u64) -> bool {
            self.below(100) < percent
        }
    }

    /// Frames the random sequences use as tables.
    const TABLES: u64 = 12;
    /// Entry indexes they write (the hypervisor slots are 256..=271).
    const IDX: [usize; 7] = [0, 1, 2, 255, 256, 300, 511];

    fn random_entry(rng: &mut Rng) -> u64 {
        match rng.below(100) {
            0..=14 => return 0,
            15..=19 => return rng.next() & !P,
            _ => {}
        }
        let target = match rng.below(100) {
            0..=54 => 1 + rng.below(TABLES),
            55..=79 => TABLES + 1 + rng.below(39 - TABLES),
            _ => [
                0,
                FOREIGN,
                XENPG,
                IOPG,
                FREE,
                N - 1,
                BEYOND,
                INVALID_MFN_FIELD,
            ][rng.below(8) as usize],
        };
        let mut e = (target << 12) | P | ACCESSED;
        for (bit, pct) in [
            (RW, 50),
            (USER, 60),
            (DIRTY, 30),
            (NX, 20),
            (AVAIL, 10),
            (GUEST_KERNEL, 5),
            (GLOBAL, 8),
            (PSE, 4),
            (PWT, 3),
            (PCD, 3),
        ] {
            if rng.chance(pct) {
                e |= bit;
            }
        }
        e
    }

    /// Recount every reference from scratch and compare with the frame
    /// table: allocation + pins + base pointer + what every present entry of
    /// every live table holds.
    fn check_accounting(ctx: &PtContext, ft: &FrameTable, mem: &Mem, root: Option<Mfn>) {
        let mut count = vec![0u32; N as usize];
        let mut types = vec![0u32; N as usize];
        let mut want_ty = vec![None; N as usize];
        for m in 0..N {
            let i = ft.info(Mfn(m)).unwrap();
            if i.flags().contains(PageFlags::ALLOCATED) {
                count[m as usize] += 1;
            }
            if i.flags().contains(PageFlags::PINNED) {
                count[m as usize] += 1;
                types[m as usize] += 1;
            }
        }
        if let Some(r) = root {
            count[r.0 as usize] += 1;
            types[r.0 as usize] += 1;
            want_ty[r.0 as usize] = Some(PageType::L4);
        }
        for m in 0..N {
            let i = ft.info(Mfn(m)).unwrap();
            let Some(level) = table_level(i.page_type()) else {
                continue;
            };
            if i.type_count() == 0 {
                assert!(!i.flags().contains(PageFlags::VALIDATED), "mfn {m}");
                continue;
            }
            assert!(i.flags().contains(PageFlags::VALIDATED), "mfn {m}");
            for idx in IDX.iter().copied().chain(257..272) {
                let e = mem.get(m, idx);
                if level == 4 && is_xen_l4_slot(idx) {
                    assert_eq!(e, ctx.xen_l4_slots[idx - 256]);
                    continue;
                }
                if e & P == 0 {
                    continue;
                }
                assert_eq!(e & disallow_mask(level), 0, "mfn {m}[{idx}] {e:#x}");
                assert_eq!(adjust_entry(level, e), e, "mfn {m}[{idx}] {e:#x}");
                let t = entry_mfn(e).0 as usize;
                assert!((t as u64) < N, "mfn {m}[{idx}] {e:#x}");
                count[t] += 1;
                if level == 1 {
                    if e & RW != 0 {
                        types[t] += 1;
                        want_ty[t] = Some(PageType::Writable);
                    }
                } else {
                    types[t] += 1;
                    want_ty[t] = PageType::page_table(level - 1);
                }
            }
        }
        for m in 0..N as usize {
            let i = ft.info(Mfn(m as u64)).unwrap();
            assert_eq!((i.count(), i.type_count()), (count[m], types[m]), "mfn {m}");
            if let Some(ty) = want_ty[m] {
                assert_eq!(i.page_type(), ty, "mfn {m}");
            }
            if i.page_type() == PageType::Writable && i.type_count() > 0 {
                assert_eq!(want_ty[m], Some(PageType::Writable), "mfn {m}");
            }
        }
    }

    #[test]
    fn random_sequences_keep_every_count_balanced() {
        let mut live_updates = [0u32; 5];
        let mut ok = 0u32;
        let mut total = 0u32;
        for seed in 1..=150u64 {
            world(|ctx, ft, mem| {
                let initial = snap(ft);
                let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
                let mut root: Option<Mfn> = None;
                for step in 0..250 {
                    let before = snap(ft);
                    mem.retyped.clear();
                    let table = if rng.chance(92) {
                        Mfn(1 + rng.below(TABLES))
                    } else {
                        Mfn(rng.below(N + 8))
                    };
                    let what = rng.below(100);
                    let result = match what {
                        0..=54 => {
                            let idx = IDX[rng.below(IDX.len() as u64) as usize];
                            let val = random_entry(&mut rng);
                            let old = (table.0 < N).then(|| mem.get(table.0, idx));
                            let info = ft.info(table).ok();
                            let r = mod_entry(ctx, ft, mem, table, idx, val, rng.chance(20));
                            match (&r, info) {
                                (Err(_), _) => {
                                    if let Some(old) = old {
                                        assert_eq!(mem.get(table.0, idx), old);
                                    }
                                }
                                (Ok(()), Some(i)) if i.type_count() > 0 => {
                                    if let Some(l) = table_level(i.page_type()) {
                                        live_updates[l as usize] += 1;
                                    }
                                }
                                _ => {}
                            }
                            r
                        }
                        55..=69 => pin(ctx, ft, mem, table, 1 + rng.below(4) as u8),
                        70..=79 => unpin(ctx, ft, mem, table),
                        80..=89 => {
                            let new = (!rng.chance(20)).then_some(table);
                            let r = new_baseptr(ctx, ft, mem, root, new);
                            if r.is_ok() {
                                root = new;
                            }
                            r
                        }
                        90..=94 => {
                            let e = random_entry(&mut rng);
                            let r = get_l1_mapping(ctx, ft, mem, e);
                            if r.is_ok() {
                                put_l1_mapping(ctx, ft, mem, e);
                                assert_balanced(ft, &before);
                            }
                            r
                        }
                        _ => {
                            let level = 1 + rng.below(4) as u8;
                            let r = get_table(ctx, ft, mem, table, level);
                            if r.is_ok() {
                                put_table(ctx, ft, mem, table);
                                assert_balanced(ft, &before);
                            }
                            r
                        }
                    };
                    total += 1;
                    match result {
                        Ok(()) => ok += 1,
                        Err(e) => {
                            // Refused: every count as it was.
                            assert_balanced(ft, &before);
                            let _ = e.errno();
                        }
                    }
                    // Every type change was flushed for first.
                    for m in 0..N {
                        let (b, a) = (
                            before[m as usize].page_type(),
                            ft.page_type(Mfn(m)).unwrap(),
                        );
                        if b != a && b != PageType::None && a != PageType::None {
                            assert!(
                                mem.retyped.contains(&Mfn(m)),
                                "seed {seed} step {step}: mfn {m} {b:?} -> {a:?} unflushed"
                            );
                        }
                    }
                    check_accounting(ctx, ft, mem, root);
                }
                // Tear down: nothing may be left behind.
                for t in 0..N {
                    let _ = unpin(ctx, ft, mem, Mfn(t));
                }
                new_baseptr(ctx, ft, mem, root, None).unwrap();
                assert_balanced(ft, &initial);
                for m in 0..N {
                    let i = ft.info(Mfn(m)).unwrap();
                    assert!(
                        !i.flags().contains(PageFlags::VALIDATED)
                            || !i.page_type().needs_validation()
                    );
                }
                assert!(mem.freed.is_empty());
            });
        }
        // The sequences really exercised live tables at every level.
        assert!(ok * 5 > total, "{ok}/{total} succeeded");
        for (level, n) in live_updates.iter().enumerate().skip(1) {
            assert!(*n > 100, "only {n} updates of live L{level} tables");
        }
    }

    // --- Xen security advisories (docs/xsa.md) -------------------------

    /// XSA-148, "x86: Uncontrolled creation of large page mappings by PV
    /// guests" (CVE-2015-7835). Xen's `mod_l2_entry` fast path (same frame,
    /// same presence) skipped the L2 flag check, so a guest could set PSE
    /// on an L2 entry pointing at one of its L1 tables and get the L1 (and
    /// 511 neighbours) mapped as a writable 2 MiB page. Oxen must refuse
    /// PSE in every L2 update, fast path or not, with `-EINVAL`, leaving the
    /// entry and every count as they were.
    #[test]
    fn xsa_148_l2_superpage_refused_on_the_fast_path() {
        world(|ctx, ft, mem| {
            let initial = snap(ft);
            mem.set(3, 0, tb(4));
            pin(ctx, ft, mem, Mfn(3), 2).unwrap();
            let before = snap(ft);
            let old = mem.get(3, 0);
            // Same frame, same P: only PSE (and RW, A/D) differ.
            for val in [tb(4) | PSE, (tb(4) | PSE) & !RW, old | PSE] {
                let r = mod_entry(ctx, ft, mem, Mfn(3), 0, val, false);
                assert_eq!(
                    r,
                    Err(PtError::BadFlags {
                        level: 2,
                        flags: PSE
                    })
                );
                assert_eq!(r.unwrap_err().errno(), Errno::EINVAL);
                assert_eq!(mem.get(3, 0), old);
                assert_balanced(ft, &before);
            }
            // A new superpage over a data frame: refused too.
            let r = mod_entry(ctx, ft, mem, Mfn(3), 1, rw(10) | PSE, false);
            assert_eq!(r.unwrap_err().errno(), Errno::EINVAL);
            assert_eq!(mem.get(3, 1), 0);
            assert_balanced(ft, &before);
            // The L1 is still an L1: it cannot be mapped writable.
            assert_eq!(ft.info(Mfn(4)).unwrap().page_type(), PageType::L1);
            // Nothing else broke: ordinary updates work, unpinning
            // gives everything back.
            mod_entry(ctx, ft, mem, Mfn(3), 1, tb(5), false).unwrap();
            mod_entry(ctx, ft, mem, Mfn(3), 1, 0, false).unwrap();
            assert_balanced(ft, &before);
            unpin(ctx, ft, mem, Mfn(3)).unwrap();
            assert_balanced(ft, &initial);
        });
    }

    /// XSA-182 (CVE-2016-6258, "Potential privilege escalation in PV
    /// guests" in SUSE's advisory listing; fixed by "x86/pv: Remove unsafe bits from the mod_l?_entry
    /// fastpath": "All changes in writeability and cacheability must go
    /// through full re-validation"). Xen's fast path let a guest flip RW on
    /// an entry whose frame and presence were unchanged, e.g. turn a
    /// read-only mapping of one of its page tables writable. Oxen must send
    /// every RW or cache-bit change through full validation: a read-only
    /// mapping of a live table stays read-only (`-EBUSY`, Xen's answer for
    /// a type conflict), cache bits are refused (`-EINVAL`), and a
    /// self-referencing L4 (the advisory's route) is refused outright.
    #[test]
    fn xsa_182_rw_changes_never_take_the_fast_path() {
        world(|ctx, ft, mem| {
            let initial = snap(ft);
            build_tree(mem);
            pin(ctx, ft, mem, Mfn(6), 4).unwrap();
            let before = snap(ft);
            // L1 slot 2 maps the L4 read-only, slot 1 the L1 itself.
            for (slot, table, ty) in [(2, 6, PageType::L4), (1, 9, PageType::L1)] {
                let old = mem.get(9, slot);
                let r = mod_entry(ctx, ft, mem, Mfn(9), slot, old | RW, false);
                assert_eq!(
                    r,
                    Err(PtError::MapTypeConflict {
                        mfn: Mfn(table),
                        current: ty
                    })
                );
                assert_eq!(r.unwrap_err().errno(), Errno::EBUSY);
                assert_eq!(mem.get(9, slot), old);
                assert_balanced(ft, &before);
            }
            // Cacheability changes on upper levels: refused.
            for (table, slot, bit, level) in [(7, 0, PCD, 3), (6, 0, PWT, 4), (8, 0, PCD, 2)] {
                let old = mem.get(table, slot);
                let r = mod_entry(ctx, ft, mem, Mfn(table), slot, old | bit, false);
                assert_eq!(r, Err(PtError::BadFlags { level, flags: bit }));
                assert_eq!(mem.get(table, slot), old);
            }
            // A read-only L4 self-map (a linear page table): refused.
            let r = mod_entry(ctx, ft, mem, Mfn(6), 1, tb(6) & !RW, false);
            assert_eq!(
                r,
                Err(PtError::LinearPageTable {
                    level: 4,
                    mfn: Mfn(6)
                })
            );
            assert_eq!(r.unwrap_err().errno(), Errno::EINVAL);
            assert_balanced(ft, &before);
            // Whitelisted bits still take the fast path.
            mod_entry(ctx, ft, mem, Mfn(9), 0, rw(10) | DIRTY, false).unwrap();
            assert_balanced(ft, &before);
            unpin(ctx, ft, mem, Mfn(6)).unwrap();
            assert_balanced(ft, &initial);
        });
    }
}
