//! The boot loader's memory map (Multiboot2 tag 6, or `hvm_start_info`'s
//! table from version 1 on), asked two questions: is this range RAM (the
//! AP trampoline's page must be), and where does RAM below 4 GiB end? Parsing is [`crate::bootinfo`]'s; this
//! module only reads memory, through [`super::phys`].

use super::boot::Boot;
use super::phys;
use crate::bootinfo::{self, Protocol};
use crate::report::Why;

/// The end of the highest RAM range below 4 GiB (`None`: no map, or no
/// RAM there).
pub fn ram_top_below_4g(boot: &Boot) -> Result<Option<u64>, Why> {
    const LIMIT: u64 = 1 << 32;
    match boot.protocol {
        Some(Protocol::Pvh) => {
            let info = phys::bytes(boot.info, bootinfo::HVM_START_INFO_V1_LEN)?;
            let Some((table, n)) = bootinfo::hvm_memory_map(info)? else {
                return Ok(None);
            };
            let entries = phys::bytes(table, n * bootinfo::HVM_MEMMAP_ENTRY_LEN)?;
            let ranges = bootinfo::memory_ranges(entries, bootinfo::HVM_MEMMAP_ENTRY_LEN);
            Ok(bootinfo::ram_top(ranges, LIMIT))
        }
        Some(Protocol::Multiboot2) => {
            let size = bootinfo::mb2_total_size(phys::bytes(boot.info, 8)?)?;
            let info = phys::bytes(boot.info, size)?;
            let Some((entries, entry_size)) = bootinfo::mb2_memory_map(info)? else {
                return Ok(None);
            };
            Ok(bootinfo::ram_top(
                bootinfo::memory_ranges(entries, entry_size),
                LIMIT,
            ))
        }
        _ => Ok(None),
    }
}

/// Whether `[base, base + len)` lies in one RAM range of the boot loader's
/// memory map; `None` if it gave no map.
pub fn is_ram(boot: &Boot, base: u64, len: u64) -> Result<Option<bool>, Why> {
    match boot.protocol {
        Some(Protocol::Pvh) => {
            let info = phys::bytes(boot.info, bootinfo::HVM_START_INFO_V1_LEN)?;
            let Some((table, n)) = bootinfo::hvm_memory_map(info)? else {
                return Ok(None);
            };
            let entries = phys::bytes(table, n * bootinfo::HVM_MEMMAP_ENTRY_LEN)?;
            let ranges = bootinfo::memory_ranges(entries, bootinfo::HVM_MEMMAP_ENTRY_LEN);
            Ok(Some(bootinfo::is_ram(ranges, base, len)))
        }
        Some(Protocol::Multiboot2) => {
            let size = bootinfo::mb2_total_size(phys::bytes(boot.info, 8)?)?;
            let info = phys::bytes(boot.info, size)?;
            let Some((entries, entry_size)) = bootinfo::mb2_memory_map(info)? else {
                return Ok(None);
            };
            let ranges = bootinfo::memory_ranges(entries, entry_size);
            Ok(Some(bootinfo::is_ram(ranges, base, len)))
        }
        _ => Ok(None),
    }
}
