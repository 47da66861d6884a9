//! The physical-to-machine map of an HVM guest, kept as the nested page
//! tables the hardware walks: AMD NPT (AMD APM vol 2 §15.25) or Intel EPT
//! (Intel SDM vol 3C §29.3, "The Extended Page Table Mechanism").
//!
//! **Owns**: the encoding of every nested-table entry, the shape of the tree
//! (4 levels, leaves of 4 KiB at level 1 or 2 MiB at level 2, never 1 GiB),
//! splitting a 2 MiB leaf when one of its 4 KiB pieces changes, and the
//! bookkeeping of which table frames belong to the tree (so [`P2m::destroy`]
//! frees exactly those).
//!
//! **Trusts**: the [`TableMemory`] the glue implements: it hands out zeroed
//! frames nobody else uses, and reads/writes entries of exactly the frames
//! this module allocated. Guest frame numbers, machine frame numbers, orders
//! and permissions are checked; nothing here panics or uses `unsafe`.
//!
//! **The glue's duties**: flush the nested TLB (INVEPT single-context, or a
//! new ASID / `TLB_CONTROL` on SVM) after any operation that removes a
//! mapping or reduces its permissions ([`P2m::unmap`], [`P2m::map`] over an
//! existing entry, [`P2m::set_readonly_range`]); the module never does.
//! Table frames given to [`TableMemory::free_table`] may still sit in the
//! hardware's paging-structure caches: the glue must not reuse them before
//! that flush.
//! Tables emptied by `unmap` stay linked until `destroy` (no merging).

use crate::mm::Mfn;
use bitflags::bitflags;

/// Entries per table (512 × 8 bytes = one 4 KiB frame) at every level.
pub const ENTRIES: usize = 512;
/// Order of a 4 KiB mapping.
pub const ORDER_4K: u32 = 0;
/// Order of a 2 MiB mapping (a level-2 leaf).
pub const ORDER_2M: u32 = 9;
/// Guest frames must lie below 2^36: a 4-level nested walk translates 48-bit
/// guest-physical addresses (APM §15.25.1; SDM §29.3.2 with page-walk length 4).
pub const GFN_LIMIT: u64 = 1 << 36;
/// Machine frames must lie below 2^40 (52-bit machine addresses, the
/// architectural maximum; MAXPHYADDR is the glue's to enforce further).
pub const MFN_LIMIT: u64 = 1 << 40;

/// Address field of an entry, bits 12..=51 (both formats).
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
/// Software bits 52..=55 hold the [`P2mType`]: ignored by NPT (APM: bits
/// 52..=58 available to software) and EPT (SDM table 29-6: bits 52..=62 ignored).
const TYPE_SHIFT: u32 = 52;
const TYPE_MASK: u64 = 0xf << TYPE_SHIFT;

// AMD NPT entries are long-mode page-table entries (APM vol 2 §5.3.3, §5.4).
const NPT_P: u64 = 1 << 0;
const NPT_RW: u64 = 1 << 1;
/// Nested walks are user accesses (APM §15.25.5), so every level needs U/S.
const NPT_US: u64 = 1 << 2;
const NPT_PWT: u64 = 1 << 3;
const NPT_PCD: u64 = 1 << 4;
const NPT_PS: u64 = 1 << 7;
const NPT_NX: u64 = 1 << 63;

// Intel EPT entries (SDM vol 3C tables 29-1..29-6).
const EPT_R: u64 = 1 << 0;
const EPT_W: u64 = 1 << 1;
const EPT_X: u64 = 1 << 2;
const EPT_RWX: u64 = EPT_R | EPT_W | EPT_X;
const EPT_MT_SHIFT: u32 = 3;
/// EPT memory type write-back (SDM §29.3.7; IA32_PAT encoding 6).
pub const EPT_MT_WB: u64 = 6;
/// EPT memory type uncacheable.
pub const EPT_MT_UC: u64 = 0;
const EPT_IPAT: u64 = 1 << 6;
const EPT_LARGE: u64 = 1 << 7;
/// EPTP bits 5:3: page-walk length minus one (SDM §25.6.11).
const EPTP_WALK_LEN_4: u64 = 3 << 3;

/// Which hardware walks the tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum P2mFormat {
    /// AMD-V nested page tables (the root goes into the VMCB's `N_CR3`).
    Npt,
    /// Intel VT-x extended page tables (the root goes into the VMCS's EPTP).
    Ept,
}

bitflags! {
    /// Access rights of a guest frame. The bit values are EPT's (bits 0..=2).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct P2mPerms: u8 {
        /// Reads allowed (required for every mapping: NPT cannot express
        /// a present but unreadable page, EPT calls write-only a misconfiguration).
        const R = 1 << 0;
        /// Writes allowed.
        const W = 1 << 1;
        /// Instruction fetches allowed.
        const X = 1 << 2;
        /// All three.
        const RWX = Self::R.bits() | Self::W.bits() | Self::X.bits();
    }
}

/// What a guest frame is, kept in the entry's software bits (Xen's `p2m_type_t`,
/// the subset Oxen uses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum P2mType {
    /// Ordinary guest RAM, write-back.
    Ram = 1,
    /// RAM write-protected for log-dirty tracking ([`P2m::set_readonly_range`]);
    /// a write fault on it marks the frame dirty and restores `Ram`.
    RamLogDirty = 2,
    /// RAM the guest may only read (ROMs); writes are discarded by the glue.
    RamRo = 3,
    /// A host device's MMIO passed straight through, uncacheable.
    MmioDirect = 4,
}

impl P2mType {
    fn from_bits(v: u64) -> Option<Self> {
        match v {
            1 => Some(Self::Ram),
            2 => Some(Self::RamLogDirty),
            3 => Some(Self::RamRo),
            4 => Some(Self::MmioDirect),
            _ => None,
        }
    }

    fn uncached(self) -> bool {
        self == Self::MmioDirect
    }
}

/// The type a p2m leaf entry carries (the same software bits in both
/// formats), for walkers outside this module.
pub fn leaf_type(e: u64) -> Option<P2mType> {
    P2mType::from_bits((e & TYPE_MASK) >> TYPE_SHIFT)
}

/// Why an operation was refused. A refused operation changed no mapping
/// (it may have linked empty intermediate tables).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum P2mError {
    /// The guest frame (or the end of the range) is at or above [`GFN_LIMIT`].
    GfnTooLarge,
    /// The machine frame is at or above [`MFN_LIMIT`].
    MfnTooLarge,
    /// The order is neither [`ORDER_4K`] nor [`ORDER_2M`].
    BadOrder,
    /// A 2 MiB operation on a gfn or mfn that is not 512-frame aligned.
    Misaligned,
    /// Permissions without R.
    BadPerms,
    /// [`TableMemory::alloc_table`] failed.
    NoMemory,
    /// A table holds an entry this module never writes (a 1 GiB leaf, an
    /// unknown type): the tables were changed behind its back.
    Corrupt,
}

/// Where the tables live. The glue implements it over the frame allocator
/// and the direct map; tests implement it over a `HashMap`.
pub trait TableMemory {
    /// A zeroed frame for a new table, or `None` when out of memory.
    fn alloc_table(&mut self) -> Option<Mfn>;
    /// Gives back a table frame `alloc_table` returned (never the same twice).
    fn free_table(&mut self, table: Mfn);
    /// Entry `index` (< 512) of table frame `table`.
    fn read_entry(&self, table: Mfn, index: usize) -> u64;
    /// Writes entry `index` (< 512) of table frame `table`. The glue makes the
    /// 8-byte store atomic (the hardware may be walking the table).
    fn write_entry(&mut self, table: Mfn, index: usize, value: u64);
}

/// One translation, as [`P2m::lookup`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct P2mEntry {
    /// The machine frame backing the looked-up gfn itself (for a 2 MiB leaf,
    /// the leaf's base plus the gfn's offset in it).
    pub mfn: Mfn,
    /// Size of the mapping containing it: [`ORDER_4K`] or [`ORDER_2M`].
    pub order: u32,
    /// Access rights.
    pub perms: P2mPerms,
    /// What the frame is.
    pub kind: P2mType,
}

/// What [`P2m::populate`] built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PopulateStats {
    /// 2 MiB leaves written.
    pub pages_2m: u64,
    /// 4 KiB leaves written.
    pub pages_4k: u64,
}

/// An HVM guest's nested page tables. Holds only the root; the tables live
/// in [`TableMemory`] passed to every call. Dropping it leaks the tables:
/// call [`P2m::destroy`].
#[derive(Debug, PartialEq, Eq)]
pub struct P2m {
    format: P2mFormat,
    root: Mfn,
}

/// How a walk treats missing tables and 2 MiB leaves on its way down.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Walk {
    /// Allocate missing tables and split 2 MiB leaves (for map).
    Create,
    /// Split 2 MiB leaves but stop at missing tables (for unmap/protect).
    SplitOnly,
}

/// Index into the table at `level` (4 = root .. 1 = 4 KiB leaves).
fn index(gfn: u64, level: u32) -> usize {
    ((gfn >> (9 * (level - 1))) & (ENTRIES as u64 - 1)) as usize
}

fn check_order(order: u32) -> Result<(), P2mError> {
    if order == ORDER_4K || order == ORDER_2M {
        Ok(())
    } else {
        Err(P2mError::BadOrder)
    }
}

fn check_gfn(gfn: u64, order: u32) -> Result<(), P2mError> {
    check_order(order)?;
    if gfn >= GFN_LIMIT {
        return Err(P2mError::GfnTooLarge);
    }
    if gfn & ((1 << order) - 1) != 0 {
        return Err(P2mError::Misaligned);
    }
    Ok(())
}

impl P2m {
    /// An empty map: allocates the root table.
    pub fn new(mem: &mut impl TableMemory, format: P2mFormat) -> Result<Self, P2mError> {
        let root = mem.alloc_table().ok_or(P2mError::NoMemory)?;
        Ok(Self { format, root })
    }

    /// The table format.
    pub fn format(&self) -> P2mFormat {
        self.format
    }

    /// The root table frame.
    pub fn root(&self) -> Mfn {
        self.root
    }

    /// The VMCB `N_CR3` value for NPT (APM §15.25.3): the root's address;
    /// PWT/PCD clear, so the walk is write-back.
    pub fn ncr3(&self) -> u64 {
        self.root.maddr()
    }

    /// The VMCS EPT pointer (SDM §25.6.11): memory type WB (bits 2:0 = 6),
    /// page-walk length 4 (bits 5:3 = 3), accessed/dirty flags off (bit 6).
    pub fn eptp(&self) -> u64 {
        self.root.maddr() | EPT_MT_WB | EPTP_WALK_LEN_4
    }

    fn present(&self, e: u64) -> bool {
        match self.format {
            P2mFormat::Npt => e & NPT_P != 0,
            P2mFormat::Ept => e & EPT_RWX != 0,
        }
    }

    fn large(&self, e: u64) -> bool {
        match self.format {
            P2mFormat::Npt => e & NPT_PS != 0,
            P2mFormat::Ept => e & EPT_LARGE != 0,
        }
    }

    /// A non-leaf entry pointing at `table`: full rights, so only the leaf
    /// decides (NPT: P|RW|US; EPT: R|W|X; SDM table 29-2..29-4).
    fn table_entry(&self, table: Mfn) -> u64 {
        let flags = match self.format {
            P2mFormat::Npt => NPT_P | NPT_RW | NPT_US,
            P2mFormat::Ept => EPT_RWX,
        };
        (table.maddr() & ADDR_MASK) | flags
    }

    /// A leaf for `mfn`. The caller has checked perms contain R.
    fn leaf_entry(&self, mfn: Mfn, large: bool, perms: P2mPerms, kind: P2mType) -> u64 {
        let mut e = (mfn.maddr() & ADDR_MASK) | ((kind as u64) << TYPE_SHIFT);
        match self.format {
            P2mFormat::Npt => {
                e |= NPT_P | NPT_US;
                if perms.contains(P2mPerms::W) {
                    e |= NPT_RW;
                }
                if !perms.contains(P2mPerms::X) {
                    e |= NPT_NX;
                }
                if kind.uncached() {
                    // PAT index 3 = UC under the reset PAT (APM §7.8.2).
                    e |= NPT_PCD | NPT_PWT;
                }
                if large {
                    e |= NPT_PS;
                }
            }
            P2mFormat::Ept => {
                // As Xen's epte_get_entry_emt for a domain without passed-through
                // devices: WB for RAM, UC for direct MMIO, guest PAT ignored.
                let mt = if kind.uncached() {
                    EPT_MT_UC
                } else {
                    EPT_MT_WB
                };
                e |= u64::from(perms.bits()) & EPT_RWX;
                e |= (mt << EPT_MT_SHIFT) | EPT_IPAT;
                if large {
                    e |= EPT_LARGE;
                }
            }
        }
        e
    }

    fn decode_leaf(&self, e: u64) -> Option<(Mfn, P2mPerms, P2mType)> {
        let kind = P2mType::from_bits((e & TYPE_MASK) >> TYPE_SHIFT)?;
        let perms = match self.format {
            P2mFormat::Npt => {
                let mut p = P2mPerms::R;
                if e & NPT_RW != 0 {
                    p |= P2mPerms::W;
                }
                if e & NPT_NX == 0 {
                    p |= P2mPerms::X;
                }
                p
            }
            P2mFormat::Ept => P2mPerms::from_bits_truncate((e & EPT_RWX) as u8),
        };
        Some((Mfn((e & ADDR_MASK) >> 12), perms, kind))
    }

    fn child(e: u64) -> Mfn {
        Mfn((e & ADDR_MASK) >> 12)
    }

    /// Replaces the 2 MiB leaf `e` by a level-1 table of 512 equivalent
    /// 4 KiB leaves; returns the new table (not yet linked).
    fn split(&self, mem: &mut impl TableMemory, e: u64) -> Result<Mfn, P2mError> {
        let (base, perms, kind) = self.decode_leaf(e).ok_or(P2mError::Corrupt)?;
        let t = mem.alloc_table().ok_or(P2mError::NoMemory)?;
        for i in 0..ENTRIES {
            let mfn = Mfn(base.0 + i as u64);
            mem.write_entry(t, i, self.leaf_entry(mfn, false, perms, kind));
        }
        Ok(t)
    }

    /// The table at `level` covering `gfn`, walking down from the root.
    /// `Ok(None)` when a table on the way is missing and `mode` is `SplitOnly`.
    fn table_for(
        &self,
        mem: &mut impl TableMemory,
        gfn: u64,
        level: u32,
        mode: Walk,
    ) -> Result<Option<Mfn>, P2mError> {
        let mut table = self.root;
        let mut lvl = 4;
        while lvl > level {
            let idx = index(gfn, lvl);
            let e = mem.read_entry(table, idx);
            if !self.present(e) {
                if mode != Walk::Create {
                    return Ok(None);
                }
                let t = mem.alloc_table().ok_or(P2mError::NoMemory)?;
                mem.write_entry(table, idx, self.table_entry(t));
                table = t;
            } else if self.large(e) {
                if lvl != 2 {
                    return Err(P2mError::Corrupt);
                }
                let t = self.split(mem, e)?;
                mem.write_entry(table, idx, self.table_entry(t));
                table = t;
            } else {
                table = Self::child(e);
            }
            lvl -= 1;
        }
        Ok(Some(table))
    }

    /// Maps `1 << order` guest frames at `gfn` to machine frames at `mfn`,
    /// replacing whatever was there (a 2 MiB map over a split range frees the
    /// level-1 table; a 4 KiB map inside a 2 MiB leaf splits it first).
    pub fn map(
        &mut self,
        mem: &mut impl TableMemory,
        gfn: u64,
        mfn: Mfn,
        order: u32,
        perms: P2mPerms,
        kind: P2mType,
    ) -> Result<(), P2mError> {
        check_gfn(gfn, order)?;
        if mfn.0 >= MFN_LIMIT {
            return Err(P2mError::MfnTooLarge);
        }
        if mfn.0 & ((1 << order) - 1) != 0 {
            return Err(P2mError::Misaligned);
        }
        if !perms.contains(P2mPerms::R) {
            return Err(P2mError::BadPerms);
        }
        if order == ORDER_4K {
            let Some(t) = self.table_for(mem, gfn, 1, Walk::Create)? else {
                return Err(P2mError::Corrupt);
            };
            mem.write_entry(t, index(gfn, 1), self.leaf_entry(mfn, false, perms, kind));
        } else {
            let Some(t) = self.table_for(mem, gfn, 2, Walk::Create)? else {
                return Err(P2mError::Corrupt);
            };
            let idx = index(gfn, 2);
            let old = mem.read_entry(t, idx);
            mem.write_entry(t, idx, self.leaf_entry(mfn, true, perms, kind));
            if self.present(old) && !self.large(old) {
                self.free_tree(mem, Self::child(old), 1);
            }
        }
        Ok(())
    }

    /// Removes the mapping of `1 << order` guest frames at `gfn` (splitting a
    /// 2 MiB leaf to remove one 4 KiB piece). Unmapping nothing succeeds.
    pub fn unmap(
        &mut self,
        mem: &mut impl TableMemory,
        gfn: u64,
        order: u32,
    ) -> Result<(), P2mError> {
        check_gfn(gfn, order)?;
        let level = if order == ORDER_4K { 1 } else { 2 };
        let Some(t) = self.table_for(mem, gfn, level, Walk::SplitOnly)? else {
            return Ok(());
        };
        let idx = index(gfn, level);
        let old = mem.read_entry(t, idx);
        mem.write_entry(t, idx, 0);
        if level == 2 && self.present(old) && !self.large(old) {
            self.free_tree(mem, Self::child(old), 1);
        }
        Ok(())
    }

    /// The highest guest frame mapped, if any (Xen's
    /// `domain_get_maximum_gpfn`: the log-dirty bitmap covers up to it).
    pub fn highest_gfn(&self, mem: &impl TableMemory) -> Option<u64> {
        self.highest_in(mem, self.root, 4, 0)
    }

    fn highest_in(&self, mem: &impl TableMemory, table: Mfn, lvl: u32, base: u64) -> Option<u64> {
        let span = 1u64 << (9 * (lvl - 1));
        (0..ENTRIES).rev().find_map(|idx| {
            let e = mem.read_entry(table, idx);
            if !self.present(e) {
                return None;
            }
            let first = base + idx as u64 * span;
            if lvl == 1 || self.large(e) {
                Some(first + span - 1)
            } else {
                self.highest_in(mem, Self::child(e), lvl - 1, first)
            }
        })
    }

    /// The translation of guest frame `gfn`, if mapped. Never changes anything.
    pub fn lookup(&self, mem: &impl TableMemory, gfn: u64) -> Option<P2mEntry> {
        if gfn >= GFN_LIMIT {
            return None;
        }
        let mut table = self.root;
        for lvl in (1..=4u32).rev() {
            let e = mem.read_entry(table, index(gfn, lvl));
            if !self.present(e) {
                return None;
            }
            if lvl == 1 || self.large(e) {
                if lvl > 2 {
                    return None; // never written by this module
                }
                let (base, perms, kind) = self.decode_leaf(e)?;
                let order = 9 * (lvl - 1);
                let off = gfn & ((1 << order) - 1);
                return Some(P2mEntry {
                    mfn: Mfn(base.0 + off),
                    order,
                    perms,
                    kind,
                });
            }
            table = Self::child(e);
        }
        None
    }

    /// Write-protects every mapped frame in `[gfn, gfn + count)`: clears W,
    /// and turns [`P2mType::Ram`] into [`P2mType::RamLogDirty`] (Xen's
    /// `p2m_change_type_range(ram_rw → ram_logdirty)`). A 2 MiB leaf wholly
    /// inside the range stays one leaf; one straddling an end is split
    /// (before anything is protected, so an error changes no permission).
    pub fn set_readonly_range(
        &mut self,
        mem: &mut impl TableMemory,
        gfn: u64,
        count: u64,
    ) -> Result<(), P2mError> {
        self.retype_range(mem, gfn, count, Self::write_protect)
    }

    /// Ends log-dirty mode over `[gfn, gfn + count)`: every
    /// [`P2mType::RamLogDirty`] frame becomes writable [`P2mType::Ram`]
    /// again (Xen's `p2m_change_type_range(ram_logdirty → ram_rw)`); other
    /// entries are left alone. Leaves keep their size, except 2 MiB ones
    /// straddling an end, which are split.
    pub fn clear_logdirty_range(
        &mut self,
        mem: &mut impl TableMemory,
        gfn: u64,
        count: u64,
    ) -> Result<(), P2mError> {
        self.retype_range(mem, gfn, count, Self::unprotect)
    }

    /// A write fault on `gfn` in log-dirty mode: that one 4 KiB frame
    /// becomes writable RAM again, splitting a 2 MiB leaf around it (Xen's
    /// `p2m_change_type_one(ram_logdirty → ram_rw)`). `Ok(false)` if `gfn`
    /// is not a log-dirty frame (unmapped, or already writable).
    pub fn mark_written(&mut self, mem: &mut impl TableMemory, gfn: u64) -> Result<bool, P2mError> {
        if !self
            .lookup(mem, gfn)
            .is_some_and(|e| e.kind == P2mType::RamLogDirty)
        {
            return Ok(false);
        }
        let Some(t) = self.table_for(mem, gfn, 1, Walk::SplitOnly)? else {
            return Ok(false);
        };
        let idx = index(gfn, 1);
        let e = mem.read_entry(t, idx);
        mem.write_entry(t, idx, self.unprotect(e)?);
        Ok(true)
    }

    /// Rewrites every mapped leaf in `[gfn, gfn + count)` with `f`.
    fn retype_range(
        &mut self,
        mem: &mut impl TableMemory,
        gfn: u64,
        count: u64,
        f: fn(&Self, u64) -> Result<u64, P2mError>,
    ) -> Result<(), P2mError> {
        let end = gfn.checked_add(count).ok_or(P2mError::GfnTooLarge)?;
        if end > GFN_LIMIT {
            return Err(P2mError::GfnTooLarge);
        }
        if count == 0 {
            return Ok(());
        }
        // Split the 2 MiB leaves straddling either end first, so the pass
        // below allocates nothing and a refusal changes no permission.
        for edge in [gfn, end - 1] {
            let aligned = edge & !(ENTRIES as u64 - 1);
            if aligned < gfn || aligned + ENTRIES as u64 > end {
                self.table_for(mem, edge, 1, Walk::SplitOnly)?;
            }
        }
        let mut g = gfn;
        while g < end {
            let aligned = g & !(ENTRIES as u64 - 1);
            let whole_2m = aligned == g && end - g >= ENTRIES as u64;
            // Look at the level-2 entry without splitting first.
            let l2 = match self.table_for_nosplit(mem, g)? {
                Ok(t) => t,
                Err(next) => {
                    g = next; // skip the hole the missing table leaves
                    continue;
                }
            };
            let e2 = mem.read_entry(l2, index(g, 2));
            if !self.present(e2) {
                g = aligned + ENTRIES as u64;
                continue;
            }
            if self.large(e2) && whole_2m {
                mem.write_entry(l2, index(g, 2), f(self, e2)?);
                g += ENTRIES as u64;
                continue;
            }
            let Some(l1) = self.table_for(mem, g, 1, Walk::SplitOnly)? else {
                return Err(P2mError::Corrupt);
            };
            let stop = end.min(aligned + ENTRIES as u64);
            while g < stop {
                let idx = index(g, 1);
                let e = mem.read_entry(l1, idx);
                if self.present(e) {
                    mem.write_entry(l1, idx, f(self, e)?);
                }
                g += 1;
            }
        }
        Ok(())
    }

    /// The level-2 table covering `gfn` without creating or splitting, or
    /// (inner `Err`) the first gfn after the hole a missing table leaves.
    fn table_for_nosplit(
        &self,
        mem: &impl TableMemory,
        gfn: u64,
    ) -> Result<Result<Mfn, u64>, P2mError> {
        let mut table = self.root;
        for lvl in [4u32, 3] {
            let e = mem.read_entry(table, index(gfn, lvl));
            if !self.present(e) {
                // An entry at `lvl` covers 2^(9 * (lvl - 1)) frames.
                let span = 1u64 << (9 * (lvl - 1));
                return Ok(Err((gfn & !(span - 1)) + span));
            }
            if self.large(e) {
                return Err(P2mError::Corrupt);
            }
            table = Self::child(e);
        }
        Ok(Ok(table))
    }

    /// `e` writable again if it is log-dirty RAM; anything else as it is.
    fn unprotect(&self, e: u64) -> Result<u64, P2mError> {
        let (mfn, perms, kind) = self.decode_leaf(e).ok_or(P2mError::Corrupt)?;
        if kind != P2mType::RamLogDirty {
            return Ok(e);
        }
        Ok(self.leaf_entry(mfn, self.large(e), perms | P2mPerms::W, P2mType::Ram))
    }

    fn write_protect(&self, e: u64) -> Result<u64, P2mError> {
        let (mfn, perms, kind) = self.decode_leaf(e).ok_or(P2mError::Corrupt)?;
        let kind = if kind == P2mType::Ram {
            P2mType::RamLogDirty
        } else {
            kind
        };
        Ok(self.leaf_entry(mfn, self.large(e), perms - P2mPerms::W, kind))
    }

    /// Maps guest RAM `[gfn, gfn + mfns.len())` to `mfns` (one machine frame
    /// per guest frame), as 2 MiB leaves wherever a 512-frame run starts on a
    /// 2 MiB boundary on both sides and is machine-contiguous, 4 KiB leaves
    /// elsewhere. Checks the whole range before mapping anything; on a later
    /// error (out of table memory, a bad mfn) the frames before it stay mapped.
    pub fn populate(
        &mut self,
        mem: &mut impl TableMemory,
        gfn: u64,
        mfns: &[Mfn],
        perms: P2mPerms,
        kind: P2mType,
    ) -> Result<PopulateStats, P2mError> {
        let len = mfns.len() as u64;
        match gfn.checked_add(len) {
            Some(end) if end <= GFN_LIMIT => {}
            _ => return Err(P2mError::GfnTooLarge),
        }
        if mfns.iter().any(|m| m.0 >= MFN_LIMIT) {
            return Err(P2mError::MfnTooLarge);
        }
        let mut stats = PopulateStats::default();
        let mut i = 0usize;
        while i < mfns.len() {
            let g = gfn + i as u64;
            let run = mfns.get(i..i + ENTRIES).filter(|run| {
                let mask = ENTRIES as u64 - 1;
                g & mask == 0
                    && run[0].0 & mask == 0
                    && run
                        .iter()
                        .enumerate()
                        .all(|(k, m)| m.0 == run[0].0 + k as u64)
            });
            if let Some(run) = run {
                self.map(mem, g, run[0], ORDER_2M, perms, kind)?;
                stats.pages_2m += 1;
                i += ENTRIES;
            } else {
                self.map(mem, g, mfns[i], ORDER_4K, perms, kind)?;
                stats.pages_4k += 1;
                i += 1;
            }
        }
        Ok(stats)
    }

    /// Frees `table` (at `level`) and every table below it.
    fn free_tree(&self, mem: &mut impl TableMemory, table: Mfn, level: u32) {
        if level > 1 {
            for i in 0..ENTRIES {
                let e = mem.read_entry(table, i);
                if self.present(e) && !self.large(e) {
                    self.free_tree(mem, Self::child(e), level - 1);
                }
            }
        }
        mem.free_table(table);
    }

    /// Frees every table frame of the map, the root included. The glue must
    /// have stopped every vCPU using it and flushed its nested TLB entries.
    pub fn destroy(self, mem: &mut impl TableMemory) {
        self.free_tree(mem, self.root, 4);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, HashMap, HashSet};
    use std::vec::Vec;

    /// Tables in a `HashMap`; counts allocations and frees, can be told to
    /// fail, and panics on a double free or a foreign frame.
    #[derive(Default)]
    struct FakeMem {
        tables: HashMap<u64, [u64; ENTRIES]>,
        next: u64,
        allocs: u64,
        frees: u64,
        fail_after: Option<u64>,
    }

    impl TableMemory for FakeMem {
        fn alloc_table(&mut self) -> Option<Mfn> {
            if let Some(n) = self.fail_after {
                if self.allocs >= n {
                    return None;
                }
            }
            self.next += 1;
            let mfn = 0x1000 + self.next;
            self.tables.insert(mfn, [0; ENTRIES]);
            self.allocs += 1;
            Some(Mfn(mfn))
        }
        fn free_table(&mut self, table: Mfn) {
            assert!(self.tables.remove(&table.0).is_some(), "bad free {table:?}");
            self.frees += 1;
        }
        fn read_entry(&self, table: Mfn, index: usize) -> u64 {
            self.tables.get(&table.0).expect("foreign table")[index]
        }
        fn write_entry(&mut self, table: Mfn, index: usize, value: u64) {
            self.tables.get_mut(&table.0).expect("foreign table")[index] = value;
        }
    }

    const FORMATS: [P2mFormat; 2] = [P2mFormat::Npt, P2mFormat::Ept];

    /// The raw leaf entry for `gfn` and its level.
    fn raw_leaf(p: &P2m, mem: &FakeMem, gfn: u64) -> (u64, u32) {
        let mut t = p.root();
        for lvl in (1..=4).rev() {
            let e = mem.read_entry(t, index(gfn, lvl));
            if lvl == 1 || p.large(e) {
                return (e, lvl);
            }
            t = P2m::child(e);
        }
        unreachable!()
    }

    #[test]
    fn p2m_map_lookup_unmap_both_orders_both_formats() {
        for f in FORMATS {
            let mut mem = FakeMem::default();
            let mut p = P2m::new(&mut mem, f).unwrap();
            p.map(&mut mem, 5, Mfn(0x777), 0, P2mPerms::RWX, P2mType::Ram)
                .unwrap();
            p.map(&mut mem, 0x400, Mfn(0x2000), 9, P2mPerms::R, P2mType::RamRo)
                .unwrap();
            assert_eq!(
                p.lookup(&mem, 5),
                Some(P2mEntry {
                    mfn: Mfn(0x777),
                    order: 0,
                    perms: P2mPerms::RWX,
                    kind: P2mType::Ram
                })
            );
            assert_eq!(p.lookup(&mem, 4), None);
            let e = p.lookup(&mem, 0x400 + 17).unwrap();
            assert_eq!((e.mfn, e.order, e.perms), (Mfn(0x2011), 9, P2mPerms::R));
            assert_eq!(e.kind, P2mType::RamRo);
            p.unmap(&mut mem, 5, 0).unwrap();
            assert_eq!(p.lookup(&mem, 5), None);
            p.unmap(&mut mem, 0x400, 9).unwrap();
            assert_eq!(p.lookup(&mem, 0x400 + 17), None);
            // Unmapping nothing is fine.
            p.unmap(&mut mem, 0x123_4567, 0).unwrap();
            p.destroy(&mut mem);
            assert_eq!(mem.allocs, mem.frees);
        }
    }

    #[test]
    fn p2m_npt_entries_bit_exact() {
        let mut mem = FakeMem::default();
        let mut p = P2m::new(&mut mem, P2mFormat::Npt).unwrap();
        assert_eq!(p.ncr3(), p.root().maddr());
        p.map(
            &mut mem,
            0x200,
            Mfn(0x4_0000),
            9,
            P2mPerms::R | P2mPerms::W,
            P2mType::Ram,
        )
        .unwrap();
        let (e, lvl) = raw_leaf(&p, &mem, 0x200);
        assert_eq!(lvl, 2);
        // P|RW|US|PS, NX (no X), address, type Ram in bits 52..55.
        assert_eq!(e, 0x4000_0000 | 0x87 | (1 << 63) | (1 << 52));
        p.map(
            &mut mem,
            3,
            Mfn(0x99),
            0,
            P2mPerms::RWX,
            P2mType::MmioDirect,
        )
        .unwrap();
        let (e, lvl) = raw_leaf(&p, &mem, 3);
        assert_eq!(lvl, 1);
        // P|RW|US|PWT|PCD, executable.
        assert_eq!(e, 0x99000 | 0x1f | (4 << 52));
        // Every non-leaf level: P|RW|US.
        let l4e = mem.read_entry(p.root(), 0);
        assert_eq!(l4e & 0xfff, 0x7);
        assert_eq!(l4e >> 52, 0);
        p.destroy(&mut mem);
    }

    #[test]
    fn p2m_ept_entries_bit_exact() {
        let mut mem = FakeMem::default();
        let mut p = P2m::new(&mut mem, P2mFormat::Ept).unwrap();
        assert_eq!(p.eptp(), p.root().maddr() | 0x1e);
        p.map(
            &mut mem,
            0x200,
            Mfn(0x4_0000),
            9,
            P2mPerms::R | P2mPerms::X,
            P2mType::Ram,
        )
        .unwrap();
        let (e, _) = raw_leaf(&p, &mem, 0x200);
        // R|X, WB (6 << 3), IPAT, large.
        assert_eq!(
            e,
            0x4000_0000 | 0b101 | (6 << 3) | (1 << 6) | (1 << 7) | (1 << 52)
        );
        p.map(
            &mut mem,
            3,
            Mfn(0x99),
            0,
            P2mPerms::R | P2mPerms::W,
            P2mType::MmioDirect,
        )
        .unwrap();
        let (e, _) = raw_leaf(&p, &mem, 3);
        // R|W, UC (0), IPAT.
        assert_eq!(e, 0x99000 | 0b011 | (1 << 6) | (4 << 52));
        let l4e = mem.read_entry(p.root(), 0);
        assert_eq!(l4e & 0xfff, 0x7);
        p.destroy(&mut mem);
    }

    #[test]
    fn p2m_split_keeps_other_511() {
        for f in FORMATS {
            let mut mem = FakeMem::default();
            let mut p = P2m::new(&mut mem, f).unwrap();
            p.map(
                &mut mem,
                0x600,
                Mfn(0x8_0000),
                9,
                P2mPerms::RWX,
                P2mType::Ram,
            )
            .unwrap();
            p.map(
                &mut mem,
                0x600 + 7,
                Mfn(0x1234),
                0,
                P2mPerms::R,
                P2mType::RamRo,
            )
            .unwrap();
            p.unmap(&mut mem, 0x600 + 8, 0).unwrap();
            for i in 0..512u64 {
                let got = p.lookup(&mem, 0x600 + i);
                match i {
                    7 => assert_eq!(got.unwrap().mfn, Mfn(0x1234)),
                    8 => assert_eq!(got, None),
                    _ => {
                        let e = got.unwrap();
                        assert_eq!((e.mfn, e.order), (Mfn(0x8_0000 + i), 0));
                        assert_eq!((e.perms, e.kind), (P2mPerms::RWX, P2mType::Ram));
                    }
                }
            }
            // Remapping 2 MiB over the split range frees the level-1 table.
            let before = mem.frees;
            p.map(
                &mut mem,
                0x600,
                Mfn(0x8_0000),
                9,
                P2mPerms::RWX,
                P2mType::Ram,
            )
            .unwrap();
            assert_eq!(mem.frees, before + 1);
            assert_eq!(p.lookup(&mem, 0x608).unwrap().order, 9);
            p.destroy(&mut mem);
            assert_eq!(mem.allocs, mem.frees);
            assert!(mem.tables.is_empty());
        }
    }

    #[test]
    fn p2m_destroy_frees_exactly_what_was_allocated() {
        for f in FORMATS {
            let mut mem = FakeMem::default();
            let mut p = P2m::new(&mut mem, f).unwrap();
            for g in [0u64, 1 << 27, 1 << 18, (1 << 36) - 1, 0x200] {
                p.map(&mut mem, g, Mfn(1), 0, P2mPerms::R, P2mType::Ram)
                    .unwrap();
            }
            // root + 3 fresh subtrees (3 each) + 1 shared-L3 path (L2+L1)
            // + an L1 under the first L2 for gfn 0x200.
            assert!(mem.allocs > 4);
            p.destroy(&mut mem);
            assert_eq!(mem.allocs, mem.frees);
            assert!(mem.tables.is_empty());
        }
    }

    #[test]
    fn p2m_rejects_bad_input() {
        let mut mem = FakeMem::default();
        let mut p = P2m::new(&mut mem, P2mFormat::Npt).unwrap();
        let rw = P2mPerms::R | P2mPerms::W;
        let m = |p: &mut P2m, mem: &mut FakeMem, g, mfn, o, perms| {
            p.map(mem, g, Mfn(mfn), o, perms, P2mType::Ram)
        };
        assert_eq!(
            m(&mut p, &mut mem, GFN_LIMIT, 0, 0, rw),
            Err(P2mError::GfnTooLarge)
        );
        assert_eq!(
            m(&mut p, &mut mem, 0, MFN_LIMIT, 0, rw),
            Err(P2mError::MfnTooLarge)
        );
        assert_eq!(
            m(&mut p, &mut mem, 0x201, 0x200, 9, rw),
            Err(P2mError::Misaligned)
        );
        assert_eq!(
            m(&mut p, &mut mem, 0x200, 0x201, 9, rw),
            Err(P2mError::Misaligned)
        );
        assert_eq!(m(&mut p, &mut mem, 0, 0, 1, rw), Err(P2mError::BadOrder));
        assert_eq!(m(&mut p, &mut mem, 0, 0, 18, rw), Err(P2mError::BadOrder));
        assert_eq!(
            m(&mut p, &mut mem, 0, 0, 0, P2mPerms::W),
            Err(P2mError::BadPerms)
        );
        assert_eq!(p.unmap(&mut mem, u64::MAX, 0), Err(P2mError::GfnTooLarge));
        assert_eq!(p.lookup(&mem, u64::MAX), None);
        assert_eq!(
            p.set_readonly_range(&mut mem, u64::MAX, 2),
            Err(P2mError::GfnTooLarge)
        );
        assert_eq!(
            p.populate(&mut mem, GFN_LIMIT - 1, &[Mfn(1), Mfn(2)], rw, P2mType::Ram),
            Err(P2mError::GfnTooLarge)
        );
        // Out of table memory: refused, nothing mapped.
        mem.fail_after = Some(mem.allocs);
        assert_eq!(m(&mut p, &mut mem, 0, 0, 0, rw), Err(P2mError::NoMemory));
        assert_eq!(p.lookup(&mem, 0), None);
        mem.fail_after = None;
        p.destroy(&mut mem);
        assert_eq!(mem.allocs, mem.frees);
    }

    #[test]
    fn p2m_log_dirty_cycle_write_fault_then_clear() {
        for f in FORMATS {
            let mut mem = FakeMem::default();
            let mut p = P2m::new(&mut mem, f).unwrap();
            assert_eq!(p.highest_gfn(&mem), None);
            p.map(&mut mem, 0, Mfn(0x200), 9, P2mPerms::RWX, P2mType::Ram)
                .unwrap();
            assert_eq!(p.highest_gfn(&mem), Some(0x1ff));
            // An empty level-1 table left by an unmap above it is skipped.
            p.map(&mut mem, 0x5_0000, Mfn(0x8), 0, P2mPerms::RWX, P2mType::Ram)
                .unwrap();
            p.unmap(&mut mem, 0x5_0000, 0).unwrap();
            p.map(&mut mem, 0x200, Mfn(0x7), 0, P2mPerms::R, P2mType::RamRo)
                .unwrap();
            p.set_readonly_range(&mut mem, 0, GFN_LIMIT).unwrap();
            // Not log-dirty: nothing to do (a ROM stays read-only, a hole
            // stays a hole).
            assert_eq!(p.mark_written(&mut mem, 0x200), Ok(false));
            assert_eq!(p.mark_written(&mut mem, 0x9999), Ok(false));
            // A write inside the 2 MiB leaf: that frame alone becomes
            // writable RAM, its neighbours stay log-dirty.
            assert_eq!(p.mark_written(&mut mem, 0x42), Ok(true));
            let e = p.lookup(&mem, 0x42).unwrap();
            assert_eq!(
                (e.mfn, e.order, e.perms, e.kind),
                (Mfn(0x242), 0, P2mPerms::RWX, P2mType::Ram)
            );
            let e = p.lookup(&mem, 0x43).unwrap();
            assert_eq!(
                (e.perms, e.kind),
                (P2mPerms::R | P2mPerms::X, P2mType::RamLogDirty)
            );
            assert_eq!(
                p.mark_written(&mut mem, 0x42),
                Ok(false),
                "already writable"
            );
            assert_eq!(p.highest_gfn(&mem), Some(0x200));
            // Log-dirty off: everything writable RAM again, the ROM still a ROM.
            p.clear_logdirty_range(&mut mem, 0, GFN_LIMIT).unwrap();
            for g in [0, 0x43, 0x1ff] {
                let e = p.lookup(&mem, g).unwrap();
                assert_eq!(
                    (e.perms, e.kind),
                    (P2mPerms::RWX, P2mType::Ram),
                    "gfn {g:#x}"
                );
            }
            let e = p.lookup(&mem, 0x200).unwrap();
            assert_eq!((e.perms, e.kind), (P2mPerms::R, P2mType::RamRo));
            p.destroy(&mut mem);
            assert_eq!(mem.allocs, mem.frees);
        }
    }

    #[test]
    fn p2m_set_readonly_range() {
        for f in FORMATS {
            let mut mem = FakeMem::default();
            let mut p = P2m::new(&mut mem, f).unwrap();
            p.map(&mut mem, 0, Mfn(0x200), 9, P2mPerms::RWX, P2mType::Ram)
                .unwrap();
            p.map(&mut mem, 0x200, Mfn(0x400), 9, P2mPerms::RWX, P2mType::Ram)
                .unwrap();
            p.map(
                &mut mem,
                0x400,
                Mfn(0x5),
                0,
                P2mPerms::RWX,
                P2mType::MmioDirect,
            )
            .unwrap();
            // Whole first 2 MiB, half of the second, the MMIO page, holes
            // (the whole guest-physical space: must skip empty subtrees).
            p.set_readonly_range(&mut mem, 0, 0x300).unwrap();
            p.set_readonly_range(&mut mem, 0x400, GFN_LIMIT - 0x400)
                .unwrap();
            let e = p.lookup(&mem, 0x10).unwrap();
            assert_eq!(
                (e.order, e.perms, e.kind),
                (9, P2mPerms::R | P2mPerms::X, P2mType::RamLogDirty)
            );
            let e = p.lookup(&mem, 0x2ff).unwrap();
            assert_eq!(
                (e.order, e.perms, e.kind),
                (0, P2mPerms::R | P2mPerms::X, P2mType::RamLogDirty)
            );
            let e = p.lookup(&mem, 0x300).unwrap();
            assert_eq!(
                (e.mfn, e.perms, e.kind),
                (Mfn(0x500), P2mPerms::RWX, P2mType::Ram)
            );
            let e = p.lookup(&mem, 0x400).unwrap();
            assert_eq!(
                (e.perms, e.kind),
                (P2mPerms::R | P2mPerms::X, P2mType::MmioDirect)
            );
            p.destroy(&mut mem);
            assert_eq!(mem.allocs, mem.frees);
        }
    }

    #[test]
    fn p2m_populate_uses_2m_exactly_where_possible() {
        for f in FORMATS {
            let mut mem = FakeMem::default();
            let mut p = P2m::new(&mut mem, f).unwrap();
            // gfn 0x1fe..: 2 unaligned frames, then an aligned contiguous run
            // at an aligned mfn (2 MiB), then a run at an unaligned mfn (4 KiB),
            // then an aligned run with one hole in contiguity (4 KiB), then a
            // short tail.
            let mut mfns = Vec::new();
            mfns.extend([Mfn(0x9_0000), Mfn(0x9_0001)]);
            mfns.extend((0..512).map(|i| Mfn(0x10_0000 + i)));
            mfns.extend((0..512).map(|i| Mfn(0x20_0001 + i)));
            mfns.extend((0..512).map(|i| Mfn(0x30_0000 + i + u64::from(i >= 100))));
            mfns.extend((0..512).map(|i| Mfn(0x40_0000 + i)));
            mfns.extend((0..10).map(|i| Mfn(0x50_0000 + i)));
            let stats = p
                .populate(&mut mem, 0x1fe, &mfns, P2mPerms::RWX, P2mType::Ram)
                .unwrap();
            assert_eq!(
                stats,
                PopulateStats {
                    pages_2m: 2,
                    pages_4k: 2 + 512 + 512 + 10
                }
            );
            for (i, m) in mfns.iter().enumerate() {
                let e = p.lookup(&mem, 0x1fe + i as u64).unwrap();
                assert_eq!(e.mfn, *m, "gfn {:#x}", 0x1fe + i);
            }
            assert_eq!(p.lookup(&mem, 0x200).unwrap().order, 9);
            assert_eq!(p.lookup(&mem, 0x400).unwrap().order, 0);
            assert_eq!(p.lookup(&mem, 0x600).unwrap().order, 0);
            assert_eq!(p.lookup(&mem, 0x800).unwrap().order, 9);
            p.destroy(&mut mem);
            assert_eq!(mem.allocs, mem.frees);
        }
    }

    /// xorshift64*: deterministic, no dependencies.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    type Model = BTreeMap<u64, (Mfn, P2mPerms, P2mType)>;

    fn random_perms(r: &mut Rng) -> P2mPerms {
        P2mPerms::from_bits_truncate(r.below(8) as u8)
    }

    #[test]
    fn p2m_random_against_reference_model() {
        for f in FORMATS {
            let mut r = Rng(0x1234_5678_9abc_def1 ^ f as u64);
            let mut mem = FakeMem::default();
            let mut p = P2m::new(&mut mem, f).unwrap();
            let mut model = Model::new();
            // Guest frames in three 4 MiB windows, one near the top.
            let bases = [0u64, 0x4_0000, GFN_LIMIT - 0x800];
            for step in 0..4000 {
                mem.fail_after = (r.below(20) == 0).then_some(mem.allocs + r.below(3));
                let base = bases[r.below(3) as usize];
                let order = if r.below(3) == 0 { 9 } else { 0 };
                let gfn = (base + r.below(0x800)) & !((1 << order) - 1);
                match r.below(10) {
                    0..=4 => {
                        let mfn =
                            Mfn((r.below(0x1000) << 9) + if order == 0 { r.below(512) } else { 0 });
                        let perms = random_perms(&mut r) | P2mPerms::R;
                        let kind = [P2mType::Ram, P2mType::RamRo, P2mType::MmioDirect]
                            [r.below(3) as usize];
                        if p.map(&mut mem, gfn, mfn, order, perms, kind).is_ok() {
                            for i in 0..1u64 << order {
                                model.insert(gfn + i, (Mfn(mfn.0 + i), perms, kind));
                            }
                        }
                    }
                    5..=7 => {
                        if p.unmap(&mut mem, gfn, order).is_ok() {
                            for i in 0..1u64 << order {
                                model.remove(&(gfn + i));
                            }
                        }
                    }
                    _ => {
                        let count = r.below(0x300);
                        if p.set_readonly_range(&mut mem, gfn, count).is_ok() {
                            for (_, v) in model.range_mut(gfn..gfn + count) {
                                v.1 -= P2mPerms::W;
                                if v.2 == P2mType::Ram {
                                    v.2 = P2mType::RamLogDirty;
                                }
                            }
                        }
                    }
                }
                mem.fail_after = None;
                if step % 97 == 0 {
                    for base in bases {
                        for g in base..base + 0x800 {
                            let got = p.lookup(&mem, g).map(|e| (e.mfn, e.perms, e.kind));
                            assert_eq!(got, model.get(&g).copied(), "step {step} gfn {g:#x}");
                        }
                    }
                }
            }
            p.destroy(&mut mem);
            assert_eq!(mem.allocs, mem.frees);
            assert!(mem.tables.is_empty());
        }
    }

    #[test]
    fn p2m_no_panic_on_random_operations() {
        for f in FORMATS {
            let mut r = Rng(0xdead_beef_cafe_f00d ^ f as u64);
            let mut mem = FakeMem::default();
            let mut p = P2m::new(&mut mem, f).unwrap();
            let mut seen = HashSet::new();
            for _ in 0..3000 {
                mem.fail_after = (r.below(10) == 0).then_some(mem.allocs + r.below(2));
                let gfn = match r.below(3) {
                    0 => r.next(),
                    1 => r.below(GFN_LIMIT + 10),
                    _ => r.below(0x2000),
                };
                let order = [0, 9, 1, 18, u32::MAX][r.below(5) as usize];
                let mfn = Mfn(match r.below(3) {
                    0 => r.next(),
                    _ => r.below(MFN_LIMIT + 5),
                });
                let res = match r.below(5) {
                    0 | 1 => p
                        .map(
                            &mut mem,
                            gfn,
                            mfn,
                            order,
                            random_perms(&mut r),
                            P2mType::Ram,
                        )
                        .map(|_| ()),
                    2 => p.unmap(&mut mem, gfn, order),
                    3 => p.set_readonly_range(&mut mem, gfn, r.below(0x1000)),
                    _ => {
                        let mfns: Vec<Mfn> = (0..r.below(1100))
                            .map(|i| Mfn(mfn.0.wrapping_add(i)))
                            .collect();
                        p.populate(&mut mem, gfn, &mfns, P2mPerms::RWX, P2mType::Ram)
                            .map(|_| ())
                    }
                };
                seen.insert(res.err());
                mem.fail_after = None;
                let _ = p.lookup(&mem, gfn);
            }
            assert!(seen.contains(&None) && seen.len() > 3);
            p.destroy(&mut mem);
            assert_eq!(mem.allocs, mem.frees);
        }
    }
}
