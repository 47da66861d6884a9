//! Page tables the PV way (pure logic).
//!
//! A PV guest's page tables hold **machine** frame numbers and are mapped
//! read-only in the guest: every change goes through the hypervisor, which
//! validates it (`mmu_update` with the machine address of the entry, or
//! `update_va_mapping`). This module knows the x86_64 4-level format and
//! walks and edits tables through a [`PtBackend`], which says how to read an
//! entry, how to write one (a hypercall on the metal, a fake machine in the
//! host tests) and where new, empty tables come from. [`crate::frame`]
//! provides the backend that runs on Xen.
//!
//! Rules a backend must keep (Xen enforces them): a frame used as a page
//! table has no writable mapping anywhere; a new table is zeroed and made
//! read-only before it is linked (linking it makes the hypervisor validate
//! and type it); L4 slots 256..=271 belong to the hypervisor
//! ([`HYPERVISOR_L4_FIRST_SLOT`]..=[`HYPERVISOR_L4_LAST_SLOT`]) and are
//! refused here before any hypercall.

#![forbid(unsafe_code)]

use core::fmt;

use crate::abi::arch_x86::{HYPERVISOR_L4_FIRST_SLOT, HYPERVISOR_L4_LAST_SLOT};
use crate::error::Errno;

/// Entries per table.
pub const ENTRIES: usize = 512;
/// Mask of the frame address bits in an entry (bits 12..52).
pub const PTE_ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Page-table entry flag bits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PteFlags(pub u64);

impl PteFlags {
    /// Present.
    pub const PRESENT: PteFlags = PteFlags(1 << 0);
    /// Writable.
    pub const RW: PteFlags = PteFlags(1 << 1);
    /// User-accessible (Xen sets it on every entry of a 64-bit PV guest anyway).
    pub const USER: PteFlags = PteFlags(1 << 2);
    /// Write-through.
    pub const PWT: PteFlags = PteFlags(1 << 3);
    /// Cache disable.
    pub const PCD: PteFlags = PteFlags(1 << 4);
    /// Accessed.
    pub const ACCESSED: PteFlags = PteFlags(1 << 5);
    /// Dirty.
    pub const DIRTY: PteFlags = PteFlags(1 << 6);
    /// PAT (L1) / page size (L2, L3: refused for PV guests).
    pub const PSE: PteFlags = PteFlags(1 << 7);
    /// Global.
    pub const GLOBAL: PteFlags = PteFlags(1 << 8);
    /// No-execute.
    pub const NX: PteFlags = PteFlags(1 << 63);

    /// A kernel data page: present, writable, accessed, dirty.
    pub const KERNEL_RW: PteFlags = PteFlags(0x63);
    /// A read-only page: present, accessed.
    pub const KERNEL_RO: PteFlags = PteFlags(0x21);
    /// A user data page: present, writable, user, accessed, dirty.
    pub const USER_RW: PteFlags = PteFlags(0x67);
    /// A user read-only (e.g. code) page: present, user, accessed.
    pub const USER_RO: PteFlags = PteFlags(0x25);
    /// What non-leaf entries carry: present, writable, user, accessed.
    pub const TABLE: PteFlags = PteFlags(0x27);

    /// True if every bit of `other` is set.
    pub const fn contains(self, other: PteFlags) -> bool {
        self.0 & other.0 == other.0
    }
    /// Union.
    pub const fn union(self, other: PteFlags) -> PteFlags {
        PteFlags(self.0 | other.0)
    }
    /// Without the bits of `other`.
    pub const fn without(self, other: PteFlags) -> PteFlags {
        PteFlags(self.0 & !other.0)
    }
}

impl fmt::Debug for PteFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PteFlags({:#x})", self.0)
    }
}

/// A page-table entry: a machine frame number and flags.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pte(pub u64);

impl Pte {
    /// The empty entry.
    pub const EMPTY: Pte = Pte(0);

    /// An entry for machine frame `mfn` with `flags`.
    pub const fn new(mfn: u64, flags: PteFlags) -> Pte {
        Pte(((mfn << 12) & PTE_ADDR_MASK) | flags.0)
    }
    /// The machine frame number.
    pub const fn mfn(self) -> u64 {
        (self.0 & PTE_ADDR_MASK) >> 12
    }
    /// The flag bits (everything but the address).
    pub const fn flags(self) -> PteFlags {
        PteFlags(self.0 & !PTE_ADDR_MASK)
    }
    /// Present bit.
    pub const fn present(self) -> bool {
        self.0 & PteFlags::PRESENT.0 != 0
    }
    /// Whether the mapping is writable: R/W, or Oxen's log-dirty marker
    /// ([`crate::abi::xen::OXEN_L1E_LOGDIRTY_RO`]: an L1 entry the
    /// hypervisor write-protected while the domain is in log-dirty mode,
    /// which stays writable for the guest).
    pub const fn writable(self) -> bool {
        self.0 & (PteFlags::RW.0 | crate::abi::xen::OXEN_L1E_LOGDIRTY_RO) != 0
    }
}

impl fmt::Debug for Pte {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pte(mfn {:#x}, flags {:#x})", self.mfn(), self.flags().0)
    }
}

/// A page-table level: 4 (the root) down to 1 (the leaf tables).
pub type Level = u8;

/// Index of `va` in its level-`level` table.
pub const fn index(va: u64, level: Level) -> usize {
    ((va >> (12 + 9 * (level as u64 - 1))) & 0x1ff) as usize
}

/// The four indices of `va`, root first.
pub const fn indices(va: u64) -> [usize; 4] {
    [index(va, 4), index(va, 3), index(va, 2), index(va, 1)]
}

/// True if `va` is canonical (bits 47..64 all equal).
pub const fn is_canonical(va: u64) -> bool {
    let top = (va as i64) >> 47;
    top == 0 || top == -1
}

/// True if `va` lies in the L4 slots the hypervisor owns.
pub const fn in_hypervisor_slots(va: u64) -> bool {
    let i = index(va, 4);
    i >= HYPERVISOR_L4_FIRST_SLOT && i <= HYPERVISOR_L4_LAST_SLOT
}

/// The machine address of entry `index` in table `table_mfn` (what
/// `mmu_update` takes in `ptr`, before the command bits).
pub const fn entry_maddr(table_mfn: u64, index: usize) -> u64 {
    (table_mfn << 12) + (index as u64) * 8
}

/// Why a page-table operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PtError {
    /// The hypervisor refused an update.
    Hypervisor(Errno),
    /// No frame for a new table (or page).
    NoMemory,
    /// The address is not canonical.
    NonCanonical,
    /// The address is in the hypervisor's L4 slots.
    HypervisorSlot,
    /// A table on the way is not readable by the backend (its frame is not
    /// in the direct map).
    Unreadable(u64),
    /// A large page is in the way (PV guests do not use them).
    LargePage,
}

impl From<Errno> for PtError {
    fn from(e: Errno) -> PtError {
        PtError::Hypervisor(e)
    }
}

impl fmt::Display for PtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PtError::Hypervisor(e) => write!(f, "hypervisor refused: {e}"),
            PtError::NoMemory => f.write_str("out of frames"),
            PtError::NonCanonical => f.write_str("non-canonical address"),
            PtError::HypervisorSlot => f.write_str("address in the hypervisor's L4 slots"),
            PtError::Unreadable(m) => write!(f, "page table mfn {m:#x} is not readable"),
            PtError::LargePage => f.write_str("large page in the way"),
        }
    }
}

/// How page tables are read and changed.
pub trait PtBackend {
    /// Reads entry `index` of table `table_mfn`.
    fn read(&self, table_mfn: u64, index: usize) -> Result<Pte, PtError>;
    /// Writes entry `index` of table `table_mfn` (validated by the
    /// hypervisor; `level` is the table's level).
    fn write(
        &mut self,
        table_mfn: u64,
        level: Level,
        index: usize,
        pte: Pte,
    ) -> Result<(), PtError>;
    /// A new, zeroed table frame, mapped nowhere writable, ready to be
    /// linked as a level-`level` table. Returns its machine frame.
    fn new_table(&mut self, level: Level) -> Result<u64, PtError>;
}

fn check_va(va: u64) -> Result<(), PtError> {
    if !is_canonical(va) {
        return Err(PtError::NonCanonical);
    }
    if in_hypervisor_slots(va) {
        return Err(PtError::HypervisorSlot);
    }
    Ok(())
}

/// The L1 table that maps `va` under root `l4_mfn`, creating missing
/// L3/L2/L1 tables (linked with [`PteFlags::TABLE`]).
pub fn ensure_l1<B: PtBackend + ?Sized>(b: &mut B, l4_mfn: u64, va: u64) -> Result<u64, PtError> {
    check_va(va)?;
    let mut table = l4_mfn;
    for level in [4u8, 3, 2] {
        let i = index(va, level);
        let e = b.read(table, i)?;
        if e.present() {
            if level < 4 && e.flags().contains(PteFlags::PSE) {
                return Err(PtError::LargePage);
            }
            table = e.mfn();
        } else {
            let new = b.new_table(level - 1)?;
            b.write(table, level, i, Pte::new(new, PteFlags::TABLE))?;
            table = new;
        }
    }
    Ok(table)
}

/// The L1 table mapping `va`, if the tables on the way exist.
pub fn find_l1<B: PtBackend + ?Sized>(b: &B, l4_mfn: u64, va: u64) -> Result<Option<u64>, PtError> {
    check_va(va)?;
    let mut table = l4_mfn;
    for level in [4u8, 3, 2] {
        let e = b.read(table, index(va, level))?;
        if !e.present() {
            return Ok(None);
        }
        if level < 4 && e.flags().contains(PteFlags::PSE) {
            return Err(PtError::LargePage);
        }
        table = e.mfn();
    }
    Ok(Some(table))
}

/// Maps the page at `va` to `leaf` under root `l4_mfn`; returns the old
/// entry.
pub fn map<B: PtBackend + ?Sized>(
    b: &mut B,
    l4_mfn: u64,
    va: u64,
    leaf: Pte,
) -> Result<Pte, PtError> {
    let l1 = ensure_l1(b, l4_mfn, va)?;
    let i = index(va, 1);
    let old = b.read(l1, i)?;
    b.write(l1, 1, i, leaf)?;
    Ok(old)
}

/// Clears the entry for `va` (if any); returns the old entry.
pub fn unmap<B: PtBackend + ?Sized>(b: &mut B, l4_mfn: u64, va: u64) -> Result<Pte, PtError> {
    match find_l1(b, l4_mfn, va)? {
        None => Ok(Pte::EMPTY),
        Some(l1) => {
            let i = index(va, 1);
            let old = b.read(l1, i)?;
            if old.present() {
                b.write(l1, 1, i, Pte::EMPTY)?;
            }
            Ok(old)
        }
    }
}

/// The leaf entry for `va` (empty if not mapped).
pub fn lookup<B: PtBackend + ?Sized>(b: &B, l4_mfn: u64, va: u64) -> Result<Pte, PtError> {
    match find_l1(b, l4_mfn, va)? {
        None => Ok(Pte::EMPTY),
        Some(l1) => b.read(l1, index(va, 1)),
    }
}

/// The machine address `va` translates to (with the page offset), if mapped.
pub fn translate<B: PtBackend + ?Sized>(
    b: &B,
    l4_mfn: u64,
    va: u64,
) -> Result<Option<u64>, PtError> {
    let e = lookup(b, l4_mfn, va)?;
    Ok(e.present().then(|| (e.mfn() << 12) | (va & 0xfff)))
}

#[cfg(test)]
pub(crate) mod fake {
    //! A fake machine: frames hold 512 entries; writes are checked the way
    //! Xen checks them (table frames only, no hypervisor L4 slots, children
    //! must be fresh tables).
    extern crate std;
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};
    use std::vec::Vec;

    #[derive(Default)]
    pub struct FakeMachine {
        pub frames: BTreeMap<u64, Vec<u64>>,
        pub tables: BTreeMap<u64, Level>,
        pub next_mfn: u64,
        pub writes: usize,
        pub out_of_memory: bool,
    }

    impl FakeMachine {
        pub fn new() -> Self {
            let mut m = FakeMachine {
                next_mfn: 0x100,
                ..Default::default()
            };
            let root = m.new_table(4).unwrap();
            assert_eq!(root, 0x100);
            m
        }
    }

    impl PtBackend for FakeMachine {
        fn read(&self, t: u64, i: usize) -> Result<Pte, PtError> {
            self.frames
                .get(&t)
                .map(|f| Pte(f[i]))
                .ok_or(PtError::Unreadable(t))
        }
        fn write(&mut self, t: u64, level: Level, i: usize, pte: Pte) -> Result<(), PtError> {
            if self.tables.get(&t) != Some(&level) {
                return Err(PtError::Hypervisor(Errno::EINVAL));
            }
            if level == 4 && (HYPERVISOR_L4_FIRST_SLOT..=HYPERVISOR_L4_LAST_SLOT).contains(&i) {
                return Err(PtError::Hypervisor(Errno::EINVAL));
            }
            if level > 1 && pte.present() && self.tables.get(&pte.mfn()) != Some(&(level - 1)) {
                return Err(PtError::Hypervisor(Errno::EINVAL));
            }
            self.writes += 1;
            self.frames.get_mut(&t).unwrap()[i] = pte.0;
            Ok(())
        }
        fn new_table(&mut self, level: Level) -> Result<u64, PtError> {
            if self.out_of_memory {
                return Err(PtError::NoMemory);
            }
            let m = self.next_mfn;
            self.next_mfn += 1;
            self.frames.insert(m, std::vec![0; ENTRIES]);
            self.tables.insert(m, level);
            Ok(m)
        }
    }

    pub fn tables_at(m: &FakeMachine, level: Level) -> BTreeSet<u64> {
        m.tables
            .iter()
            .filter(|(_, l)| **l == level)
            .map(|(k, _)| *k)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::fake::*;
    use super::*;

    const VA: u64 = 0xffff_c000_1234_5000;

    #[test]
    fn pte_encoding() {
        let p = Pte::new(0x1234, PteFlags::KERNEL_RW);
        assert_eq!(p.0, 0x0123_4063);
        assert_eq!(p.mfn(), 0x1234);
        assert!(p.present() && p.writable());
        assert_eq!(p.flags(), PteFlags::KERNEL_RW);
        let nx = Pte::new(1, PteFlags::KERNEL_RO.union(PteFlags::NX));
        assert_eq!(nx.mfn(), 1);
        assert!(nx.flags().contains(PteFlags::NX));
        assert!(!nx.writable());
        // A log-dirty protected entry is still writable for the guest.
        let marked =
            Pte(Pte::new(0x1234, PteFlags::KERNEL_RO).0 | crate::abi::xen::OXEN_L1E_LOGDIRTY_RO);
        assert!(marked.writable());
        // Frame numbers beyond 40 bits are cut, never spill into flags.
        assert_eq!(Pte::new(u64::MAX, PteFlags(0)).0, PTE_ADDR_MASK);
    }

    #[test]
    fn index_math() {
        assert_eq!(indices(0xffff_ffff_8000_0000), [511, 510, 0, 0]);
        assert_eq!(indices(0xffff_8000_0000_0000), [256, 0, 0, 0]);
        assert_eq!(indices(0x0000_0000_0040_1000), [0, 0, 2, 1]);
        assert!(is_canonical(0xffff_8000_0000_0000));
        assert!(!is_canonical(0x0000_8000_0000_0000));
        assert!(in_hypervisor_slots(0xffff_8000_0000_0000));
        assert!(in_hypervisor_slots(0xffff_87ff_ffff_f000));
        assert!(!in_hypervisor_slots(0xffff_8800_0000_0000));
        assert_eq!(entry_maddr(0x10, 3), 0x10018);
    }

    #[test]
    fn map_creates_tables_once_and_lookup_finds_it() {
        let mut m = FakeMachine::new();
        let old = map(&mut m, 0x100, VA, Pte::new(0x999, PteFlags::KERNEL_RW)).unwrap();
        assert_eq!(old, Pte::EMPTY);
        assert_eq!(m.tables.len(), 4);
        assert_eq!(
            lookup(&m, 0x100, VA).unwrap(),
            Pte::new(0x999, PteFlags::KERNEL_RW)
        );
        assert_eq!(translate(&m, 0x100, VA + 0x10).unwrap(), Some(0x999010));
        // A neighbour in the same L1: no new tables.
        map(
            &mut m,
            0x100,
            VA + 0x1000,
            Pte::new(0x998, PteFlags::KERNEL_RO),
        )
        .unwrap();
        assert_eq!(m.tables.len(), 4);
        // Another 2 MiB region: one new L1.
        map(
            &mut m,
            0x100,
            VA + (2 << 20),
            Pte::new(0x997, PteFlags::KERNEL_RO),
        )
        .unwrap();
        assert_eq!(tables_at(&m, 1).len(), 2);
        assert_eq!(translate(&m, 0x100, VA + (4 << 20)).unwrap(), None);
    }

    #[test]
    fn unmap_returns_the_old_entry() {
        let mut m = FakeMachine::new();
        map(&mut m, 0x100, VA, Pte::new(0x42, PteFlags::USER_RW)).unwrap();
        assert_eq!(unmap(&mut m, 0x100, VA).unwrap().mfn(), 0x42);
        assert_eq!(lookup(&m, 0x100, VA).unwrap(), Pte::EMPTY);
        // Unmapping what is not there writes nothing.
        let w = m.writes;
        assert_eq!(unmap(&mut m, 0x100, VA).unwrap(), Pte::EMPTY);
        assert_eq!(unmap(&mut m, 0x100, 0x1000).unwrap(), Pte::EMPTY);
        assert_eq!(m.writes, w);
    }

    #[test]
    fn refuses_hypervisor_slots_and_non_canonical_before_any_write() {
        let mut m = FakeMachine::new();
        let e = map(
            &mut m,
            0x100,
            0xffff_8000_0000_0000,
            Pte::new(1, PteFlags::KERNEL_RW),
        );
        assert_eq!(e, Err(PtError::HypervisorSlot));
        let e = map(
            &mut m,
            0x100,
            0x0000_8000_0000_0000,
            Pte::new(1, PteFlags::KERNEL_RW),
        );
        assert_eq!(e, Err(PtError::NonCanonical));
        assert_eq!(m.writes, 0);
        assert_eq!(
            lookup(&m, 0x100, 0xffff_8100_0000_0000),
            Err(PtError::HypervisorSlot)
        );
    }

    #[test]
    fn errors_propagate() {
        let mut m = FakeMachine::new();
        m.out_of_memory = true;
        assert_eq!(
            map(&mut m, 0x100, VA, Pte::new(1, PteFlags::KERNEL_RW)),
            Err(PtError::NoMemory)
        );
        assert_eq!(lookup(&m, 0x555, VA), Err(PtError::Unreadable(0x555)));
        let mut m = FakeMachine::new();
        // A large page in the L2: refused.
        let l1 = ensure_l1(&mut m, 0x100, VA).unwrap();
        let _ = l1;
        let l3 = lookup_table(&m, 0x100, VA, 4);
        let l2 = lookup_table(&m, l3, VA, 3);
        m.frames.get_mut(&l2).unwrap()[index(VA, 2)] |= PteFlags::PSE.0;
        assert_eq!(lookup(&m, 0x100, VA), Err(PtError::LargePage));
    }

    fn lookup_table(m: &FakeMachine, table: u64, va: u64, level: Level) -> u64 {
        m.read(table, index(va, level)).unwrap().mfn()
    }
}
