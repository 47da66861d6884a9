//! The FAT boot sector: parsing and validating the BIOS Parameter Block
//! into a volume's geometry (Microsoft's "FAT: General Overview of On-Disk
//! Format", sections 3.1–3.5). Trusts no field: every value is checked
//! and all arithmetic is checked or done in `u64`.

use super::{FatError, FatKind};

/// The boot-sector signature at byte 510 (spec section 3.1).
const SIGNATURE: [u8; 2] = [0x55, 0xAA];
/// Bytes per directory entry (spec section 6).
pub(super) const DIRENT: u64 = 32;
/// Largest cluster count below which a volume is FAT12 / FAT16 (section 3.5).
const FAT12_MAX: u64 = 4085;
const FAT16_MAX: u64 = 65525;
/// Largest cluster count FAT32 can address: cluster numbers must stay
/// below the reserved values from 0x0FFF_FFF7 (section 4).
const FAT32_MAX: u64 = 0x0FFF_FFF5;

/// Where a volume's root directory lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Root {
    /// FAT12/16: a fixed region of `entries` entries at byte `start` of
    /// the volume.
    Fixed { start: u64, entries: u64 },
    /// FAT32: a cluster chain like any directory.
    Cluster(u32),
}

/// A validated volume layout; byte offsets are from the volume's start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Geometry {
    pub kind: FatKind,
    /// Bytes per logical sector: 512..=4096, a power of two.
    pub bps: u64,
    /// Bytes per cluster.
    pub cluster: u64,
    /// Offset of the FAT this driver reads (the active one on FAT32 with
    /// mirroring off, else the first).
    pub fat_start: u64,
    /// Bytes in one FAT.
    pub fat_bytes: u64,
    pub root: Root,
    /// Offset of cluster 2.
    pub data_start: u64,
    /// Data clusters: valid cluster numbers are `2..clusters + 2`.
    pub clusters: u64,
    /// The volume's size in bytes.
    pub total_bytes: u64,
    /// Offset of the first FAT; FAT `i` is `fat_bytes` further per copy.
    pub fats_start: u64,
    /// Number of FATs (BPB_NumFATs).
    pub nfats: u64,
    /// FAT32 with mirroring off (BPB_ExtFlags bit 7): only this FAT is
    /// live and written; otherwise every copy is.
    pub active_fat: Option<u64>,
    /// FAT32: offset of the FSInfo sector (BPB_FSInfo), if it names one
    /// inside the reserved region (its signatures are checked on use).
    pub fsinfo: Option<u64>,
}

fn u16_at(b: &[u8], at: usize) -> u64 {
    u64::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

fn u32_at(b: &[u8], at: usize) -> u64 {
    u64::from(u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]))
}

fn bad(field: &'static str, value: u64) -> FatError {
    FatError::BadField { field, value }
}

/// Parses the first 512 bytes of a volume.
pub(super) fn parse(b: &[u8; 512]) -> Result<Geometry, FatError> {
    if b[510..512] != SIGNATURE {
        return Err(FatError::NotFat("no boot signature"));
    }
    // A FAT boot sector starts with a jump over the BPB (section 3.1).
    if b[0] != 0xEB && b[0] != 0xE9 {
        return Err(FatError::NotFat("no jump instruction before the BPB"));
    }
    let bps = u16_at(b, 11);
    if !(512..=4096).contains(&bps) || !bps.is_power_of_two() {
        return Err(bad("bytes per sector", bps));
    }
    let spc = u64::from(b[13]);
    if !spc.is_power_of_two() {
        return Err(bad("sectors per cluster", spc));
    }
    let reserved = u16_at(b, 14);
    if reserved == 0 {
        return Err(bad("reserved sectors", 0));
    }
    let nfats = u64::from(b[16]);
    if nfats == 0 {
        return Err(bad("number of FATs", 0));
    }
    let root_entries = u16_at(b, 17);
    let media = u64::from(b[21]);
    if media != 0xF0 && media < 0xF8 {
        return Err(bad("media descriptor", media));
    }
    let fatsz16 = u16_at(b, 22);
    let fatsz = if fatsz16 != 0 { fatsz16 } else { u32_at(b, 36) };
    if fatsz == 0 {
        return Err(bad("sectors per FAT", 0));
    }
    let tot16 = u16_at(b, 19);
    let total = if tot16 != 0 { tot16 } else { u32_at(b, 32) };
    // All of these are below 2^32 · 2^8, so u64 arithmetic cannot overflow.
    let root_sectors = (root_entries * DIRENT).div_ceil(bps);
    let meta = reserved + nfats * fatsz + root_sectors;
    if total <= meta {
        return Err(bad("total sectors", total));
    }
    let clusters = (total - meta) / spc;
    if clusters == 0 {
        return Err(bad("total sectors", total));
    }
    let kind = if clusters < FAT12_MAX {
        FatKind::Fat12
    } else if clusters < FAT16_MAX {
        FatKind::Fat16
    } else {
        FatKind::Fat32
    };
    let mut fat_index = 0;
    let mut active_fat = None;
    let mut fsinfo = None;
    let root = if kind == FatKind::Fat32 {
        if clusters > FAT32_MAX {
            return Err(bad("cluster count", clusters));
        }
        if root_entries != 0 {
            return Err(bad("root directory entries (FAT32)", root_entries));
        }
        if fatsz16 != 0 {
            return Err(bad("16-bit sectors per FAT (FAT32)", fatsz16));
        }
        let version = u16_at(b, 42);
        if version != 0 {
            return Err(bad("FAT32 version", version));
        }
        let ext_flags = u16_at(b, 40);
        if ext_flags & 0x80 != 0 {
            // Mirroring off: only the FAT in bits 0-3 is active.
            fat_index = ext_flags & 0xF;
            if fat_index >= nfats {
                return Err(bad("active FAT", fat_index));
            }
            active_fat = Some(fat_index);
        }
        let fsinfo_sector = u16_at(b, 48);
        if fsinfo_sector >= 1 && fsinfo_sector < reserved {
            fsinfo = Some(fsinfo_sector * bps);
        }
        let root = u32_at(b, 44);
        if root < 2 || root >= clusters + 2 {
            return Err(bad("root directory cluster", root));
        }
        Root::Cluster(root as u32)
    } else {
        if root_entries == 0 {
            return Err(bad("root directory entries", 0));
        }
        Root::Fixed {
            start: (reserved + nfats * fatsz) * bps,
            entries: root_entries,
        }
    };
    // The FAT must have an entry for every cluster (section 4).
    let bits = match kind {
        FatKind::Fat12 => 12,
        FatKind::Fat16 => 16,
        FatKind::Fat32 => 32,
    };
    if fatsz * bps * 8 < (clusters + 2) * bits {
        return Err(bad("sectors per FAT", fatsz));
    }
    Ok(Geometry {
        kind,
        bps,
        cluster: spc * bps,
        fat_start: (reserved + fat_index * fatsz) * bps,
        fat_bytes: fatsz * bps,
        root,
        data_start: meta * bps,
        clusters,
        total_bytes: total * bps,
        fats_start: reserved * bps,
        nfats,
        active_fat,
        fsinfo,
    })
}
