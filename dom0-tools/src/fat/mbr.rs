//! The MBR partition table: the four primary entries of sector 0. A FAT
//! boot sector at sector 0 (a "superfloppy", whose boot code area
//! `mkfs.fat` may even fill with a fake table) is not an MBR.

use alloc::vec::Vec;

use super::{bpb, read_bytes, FatError};
use crate::blkback::BlockStore;

const TABLE: usize = 446;
const ENTRY: usize = 16;
const STATUS_ACTIVE: u8 = 0x80;
/// Partition types that hold a FAT file system: FAT12, FAT16 (<32M),
/// FAT16, FAT32 (CHS, LBA), FAT16 LBA, their hidden variants, and the
/// EFI system partition.
const FAT_TYPES: [u8; 13] = [
    0x01, 0x04, 0x06, 0x0B, 0x0C, 0x0E, 0x11, 0x14, 0x16, 0x1B, 0x1C, 0x1E, 0xEF,
];
/// Extended partitions and GPT's protective entry hold no file system.
const CONTAINER_TYPES: [u8; 4] = [0x05, 0x0F, 0x85, 0xEE];

/// One primary partition; `start` and `sectors` are in 512-byte units
/// (the table's own units are the disk's logical sectors).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partition {
    /// 1..=4, as Linux numbers them.
    pub number: u8,
    /// The partition type byte.
    pub kind: u8,
    /// The boot flag.
    pub bootable: bool,
    /// First sector.
    pub start: u64,
    /// Length in sectors.
    pub sectors: u64,
}

impl Partition {
    /// Whether the type byte says FAT (or EFI system partition).
    pub fn is_fat(&self) -> bool {
        FAT_TYPES.contains(&self.kind)
    }

    /// Whether the entry could hold a file system at all (not an
    /// extended partition or GPT's protective entry).
    pub fn may_hold_fs(&self) -> bool {
        !CONTAINER_TYPES.contains(&self.kind)
    }
}

/// The MBR's primary partitions, or none if sector 0 is not an MBR (no
/// signature, a FAT boot sector, or entries with an invalid status byte).
/// Entries with a zero type, start or length are left out.
pub fn partitions(dev: &mut impl BlockStore) -> Result<Vec<Partition>, FatError> {
    let mut s = [0u8; 512];
    read_bytes(dev, 0, &mut s)?;
    if s[510..512] != [0x55, 0xAA] || bpb::parse(&s).is_ok() {
        return Ok(Vec::new());
    }
    let unit = u64::from(dev.sector_size() / 512);
    let mut out = Vec::new();
    for (i, e) in s[TABLE..TABLE + 4 * ENTRY].chunks_exact(ENTRY).enumerate() {
        if e[0] != 0 && e[0] != STATUS_ACTIVE {
            return Ok(Vec::new());
        }
        let start = u64::from(u32::from_le_bytes([e[8], e[9], e[10], e[11]]));
        let len = u64::from(u32::from_le_bytes([e[12], e[13], e[14], e[15]]));
        if e[4] == 0 || start == 0 || len == 0 {
            continue;
        }
        out.push(Partition {
            number: i as u8 + 1,
            kind: e[4],
            bootable: e[0] == STATUS_ACTIVE,
            // Below 2^32 · 2^3: no overflow.
            start: start * unit,
            sectors: len * unit,
        });
    }
    Ok(out)
}
