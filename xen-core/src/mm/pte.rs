//! x86-64 page-table entry bits (Intel SDM vol 3 §4.5, tables 4-14 to 4-20),
//! named once for the whole hypervisor: the idle tables, the Dom0 builder and
//! page-table validation all use these.

/// Present.
pub const PRESENT: u64 = 1 << 0;
/// Writable.
pub const RW: u64 = 1 << 1;
/// User-mode accessible.
pub const USER: u64 = 1 << 2;
/// Page-level write-through.
pub const PWT: u64 = 1 << 3;
/// Page-level cache disable.
pub const PCD: u64 = 1 << 4;
/// Accessed.
pub const ACCESSED: u64 = 1 << 5;
/// Dirty (leaf entries).
pub const DIRTY: u64 = 1 << 6;
/// Page size: a 2 MiB (L2) or 1 GiB (L3) leaf.
pub const PSE: u64 = 1 << 7;
/// Global (leaf entries, with CR4.PGE).
pub const GLOBAL: u64 = 1 << 8;
/// Execute disable (with EFER.NXE).
pub const NX: u64 = 1 << 63;
/// Bits 12..51: the frame address of a 4 KiB-aligned entry.
pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
