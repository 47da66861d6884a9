//! What the boot loader handed over: a Multiboot2 information structure
//! (GRUB, an HVM domain builder) or a PVH `hvm_start_info` (QEMU's
//! `-kernel`, Xen's PVH builders). The kernels want the RSDP from it, and
//! the memory map, to be sure the page they put the AP trampoline in is RAM.
//!
//! Trusts nothing: sizes and tag lengths are checked; a malformed structure
//! yields an error or no RSDP, and the kernel falls back to scanning the
//! BIOS areas.

use crate::report::Why;
use crate::why;

/// EAX at a Multiboot2 entry (Multiboot2 spec §3.3).
pub const MB2_BOOTLOADER_MAGIC: u32 = 0x36d7_6289;
/// The Multiboot2 header's magic (spec §3.1.1).
pub const MB2_HEADER_MAGIC: u32 = 0xe852_50d6;
/// `hvm_start_info.magic` (Xen `public/arch-x86/hvm/start_info.h`).
pub const HVM_START_MAGIC: u32 = 0x336e_c578;
/// `XEN_ELFNOTE_PHYS32_ENTRY` (Xen `public/elfnote.h`).
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
/// The most this kernel reads of a Multiboot2 information structure.
pub const MB2_MAX_INFO: usize = 64 << 10;
/// `hvm_start_info` through `rsdp_paddr` (offset 32, 8 bytes).
pub const HVM_START_INFO_LEN: usize = 40;
/// `hvm_start_info` version 1, with `memmap_paddr` and `memmap_entries`.
pub const HVM_START_INFO_V1_LEN: usize = 56;
/// `hvm_memmap_table_entry`'s size.
pub const HVM_MEMMAP_ENTRY_LEN: usize = 24;
/// The most memory-map entries believed.
pub const MAX_MEMMAP_ENTRIES: usize = 1024;
/// E820 / Multiboot2 / `XEN_HVM_MEMMAP_TYPE_RAM`: usable RAM.
pub const MEMORY_RAM: u32 = 1;

/// Multiboot2 tag types (spec §3.6).
const MB2_TAG_END: u32 = 0;
const MB2_TAG_CMDLINE: u32 = 1;
const MB2_TAG_ACPI_OLD: u32 = 14;
const MB2_TAG_ACPI_NEW: u32 = 15;
const MB2_TAG_MMAP: u32 = 6;

/// How the kernel was entered (the entry stub passes it in `edi`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `XEN_ELFNOTE_PHYS32_ENTRY`, EBX = `hvm_start_info`.
    Pvh,
    /// The Multiboot2 entry with EAX = [`MB2_BOOTLOADER_MAGIC`].
    Multiboot2,
    /// The Multiboot2 entry without the magic in EAX.
    Multiboot2BadMagic,
}

impl Protocol {
    /// The value the entry stub passes (1, 2 or 3).
    pub fn from_stub(v: u32) -> Option<Self> {
        match v {
            1 => Some(Protocol::Pvh),
            2 => Some(Protocol::Multiboot2),
            3 => Some(Protocol::Multiboot2BadMagic),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Pvh => "PVH (hvm_start_info)",
            Protocol::Multiboot2 => "Multiboot2",
            Protocol::Multiboot2BadMagic => "Multiboot2 entry without its magic",
        }
    }
}

/// `total_size` of a Multiboot2 information structure whose first 8 bytes
/// are `head`, if it is plausible.
pub fn mb2_total_size(head: &[u8]) -> Result<usize, Why> {
    let size = head
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or_else(|| why!("Multiboot2 info cut short"))?;
    if !(16..=MB2_MAX_INFO).contains(&size) {
        return Err(why!("Multiboot2 info total_size {size}"));
    }
    Ok(size)
}

/// The tags of a Multiboot2 information structure: `(type, payload)`,
/// validated up to the end tag.
fn mb2_tags(info: &[u8]) -> Result<impl Iterator<Item = (u32, &[u8])> + '_, Why> {
    // Validate the whole chain first, so that callers see every tag or an
    // error, never half of them.
    let mut off = 8;
    loop {
        let head = info
            .get(off..off + 8)
            .ok_or_else(|| why!("Multiboot2 tags run past total_size (no end tag)"))?;
        let ty = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let size = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
        if ty == MB2_TAG_END {
            break;
        }
        if size < 8 || off + size > info.len() {
            return Err(why!("Multiboot2 tag {ty} at {off} has size {size}"));
        }
        off += size.next_multiple_of(8);
    }
    let end = off;
    let mut off = 8;
    Ok(core::iter::from_fn(move || {
        if off >= end {
            return None;
        }
        let ty = u32::from_le_bytes(info[off..off + 4].try_into().ok()?);
        let size = u32::from_le_bytes(info[off + 4..off + 8].try_into().ok()?) as usize;
        let payload = &info[off + 8..off + size];
        off += size.next_multiple_of(8);
        Some((ty, payload))
    }))
}

/// The offset and length, inside the information structure `info`, of the
/// copy of the RSDP that the ACPI tags carry (the new one, tag 15,
/// preferred over the old one, tag 14).
pub fn mb2_rsdp(info: &[u8]) -> Result<Option<(usize, usize)>, Why> {
    let base = info.as_ptr() as usize;
    let mut found = None;
    for (ty, payload) in mb2_tags(info)? {
        let at = (payload.as_ptr() as usize - base, payload.len());
        match ty {
            MB2_TAG_ACPI_NEW => found = Some(at),
            MB2_TAG_ACPI_OLD if found.is_none() => found = Some(at),
            _ => {}
        }
    }
    Ok(found)
}

/// The boot command line Multiboot2's tag 1 carries (without its NUL),
/// if the boot loader gave one.
pub fn mb2_cmdline(info: &[u8]) -> Result<Option<&[u8]>, Why> {
    for (ty, payload) in mb2_tags(info)? {
        if ty == MB2_TAG_CMDLINE {
            let end = payload
                .iter()
                .position(|&b| b == 0)
                .unwrap_or(payload.len());
            return Ok(Some(&payload[..end]));
        }
    }
    Ok(None)
}

/// The value of `key=VALUE` among a command line's words (the last one
/// wins, as Linux's parameters do).
pub fn cmdline_value<'a>(cmdline: &'a [u8], key: &str) -> Option<&'a str> {
    core::str::from_utf8(cmdline)
        .ok()?
        .split_ascii_whitespace()
        .filter_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .next_back()
}

/// One memory-map entry: base, length, type ([`MEMORY_RAM`] is RAM).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryRange {
    pub base: u64,
    pub len: u64,
    pub kind: u32,
}

/// Memory-map entries: `entry_size`-byte records of base (u64), length
/// (u64) and type (u32), as both Multiboot2's tag 6 and
/// `hvm_memmap_table_entry` lay them out.
pub fn memory_ranges(entries: &[u8], entry_size: usize) -> impl Iterator<Item = MemoryRange> + '_ {
    let size = entry_size.max(20);
    entries
        .chunks_exact(size)
        .take(MAX_MEMMAP_ENTRIES)
        .map(|e| MemoryRange {
            base: u64::from_le_bytes(e[0..8].try_into().unwrap_or([0; 8])),
            len: u64::from_le_bytes(e[8..16].try_into().unwrap_or([0; 8])),
            kind: u32::from_le_bytes(e[16..20].try_into().unwrap_or([0; 4])),
        })
}

/// The entries of the Multiboot2 memory map (tag 6) and their size, if the
/// boot loader gave one.
pub fn mb2_memory_map(info: &[u8]) -> Result<Option<(&[u8], usize)>, Why> {
    for (ty, payload) in mb2_tags(info)? {
        if ty != MB2_TAG_MMAP {
            continue;
        }
        // entry_size (u32), entry_version (u32), then the entries.
        let entry_size = payload
            .get(..4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| why!("Multiboot2 memory map tag cut short"))?;
        if entry_size < 20 || entry_size % 8 != 0 {
            return Err(why!("Multiboot2 memory map entry size {entry_size}"));
        }
        return Ok(Some((&payload[8.min(payload.len())..], entry_size)));
    }
    Ok(None)
}

/// Where the `hvm_start_info` memory map is and how many entries it has
/// (version 1 and later; `info` holds [`HVM_START_INFO_V1_LEN`] bytes).
pub fn hvm_memory_map(info: &[u8]) -> Result<Option<(u64, usize)>, Why> {
    let b = info
        .get(..HVM_START_INFO_V1_LEN)
        .ok_or_else(|| why!("hvm_start_info cut short"))?;
    hvm_rsdp(b)?; // the magic
    let version = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    if version < 1 {
        return Ok(None);
    }
    let paddr = u64::from_le_bytes(b[40..48].try_into().unwrap_or([0; 8]));
    let n = u32::from_le_bytes([b[48], b[49], b[50], b[51]]) as usize;
    if paddr == 0 || n == 0 {
        return Ok(None);
    }
    if n > MAX_MEMMAP_ENTRIES {
        return Err(why!("hvm_start_info lists {n} memory map entries"));
    }
    Ok(Some((paddr, n)))
}

/// Whether `[base, base + len)` lies inside one RAM range of the map.
pub fn is_ram(ranges: impl Iterator<Item = MemoryRange>, base: u64, len: u64) -> bool {
    ranges
        .filter(|r| r.kind == MEMORY_RAM)
        .any(|r| r.base <= base && base.saturating_add(len) <= r.base.saturating_add(r.len))
}

/// The end of the highest RAM range that ends at or below `limit`.
pub fn ram_top(ranges: impl Iterator<Item = MemoryRange>, limit: u64) -> Option<u64> {
    ranges
        .filter(|r| r.kind == MEMORY_RAM)
        .map(|r| r.base.saturating_add(r.len))
        .filter(|&end| end <= limit)
        .max()
}

/// `rsdp_paddr` from an `hvm_start_info` (`info` holds at least
/// [`HVM_START_INFO_LEN`] bytes); `None` when it is zero.
pub fn hvm_rsdp(info: &[u8]) -> Result<Option<u64>, Why> {
    let b = info
        .get(..HVM_START_INFO_LEN)
        .ok_or_else(|| why!("hvm_start_info cut short"))?;
    let magic = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    if magic != HVM_START_MAGIC {
        return Err(why!("hvm_start_info magic {magic:#x}"));
    }
    let mut r = [0u8; 8];
    r.copy_from_slice(&b[32..40]);
    Ok(Some(u64::from_le_bytes(r)).filter(|&a| a != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(ty: u32, payload: &[u8]) -> Vec<u8> {
        let mut t = Vec::new();
        t.extend_from_slice(&ty.to_le_bytes());
        t.extend_from_slice(&(8 + payload.len() as u32).to_le_bytes());
        t.extend_from_slice(payload);
        while t.len() % 8 != 0 {
            t.push(0);
        }
        t
    }

    fn info(tags: &[Vec<u8>]) -> Vec<u8> {
        let mut i = vec![0u8; 8];
        for t in tags {
            i.extend_from_slice(t);
        }
        i.extend_from_slice(&tag(MB2_TAG_END, &[]));
        let n = i.len() as u32;
        i[..4].copy_from_slice(&n.to_le_bytes());
        i
    }

    #[test]
    fn mb2_acpi_tags() {
        let i = info(&[tag(1, b"cmdline\0"), tag(14, &[1; 20]), tag(15, &[2; 36])]);
        assert_eq!(mb2_cmdline(&i).unwrap(), Some(&b"cmdline"[..]));
        assert_eq!(
            cmdline_value(b"a=1 busy=64 busy=128 x", "busy"),
            Some("128")
        );
        assert_eq!(cmdline_value(b"busybox=1", "busy"), None);
        assert_eq!(mb2_total_size(&i).unwrap(), i.len());
        let (off, len) = mb2_rsdp(&i).unwrap().unwrap();
        assert_eq!((len, i[off]), (36, 2));
        let i = info(&[tag(14, &[1; 20])]);
        let (off, len) = mb2_rsdp(&i).unwrap().unwrap();
        assert_eq!((len, i[off]), (20, 1));
        assert_eq!(mb2_rsdp(&info(&[tag(4, &[0; 8])])).unwrap(), None);
    }

    #[test]
    fn mb2_malformed() {
        let mut i = info(&[tag(14, &[1; 20])]);
        assert!(mb2_rsdp(&i[..i.len() - 8]).is_err(), "no end tag");
        i[12..16].copy_from_slice(&4u32.to_le_bytes());
        assert!(mb2_rsdp(&i).is_err(), "tag size below 8");
        i[12..16].copy_from_slice(&4000u32.to_le_bytes());
        assert!(mb2_rsdp(&i).is_err(), "tag past the end");
        assert!(mb2_total_size(&[0, 0]).is_err());
        assert!(mb2_total_size(&[8, 0, 0, 0]).is_err());
        assert!(mb2_total_size(&[0, 0, 0, 1]).is_err());
    }

    fn ram_entry(base: u64, len: u64, kind: u32, size: usize) -> Vec<u8> {
        let mut e = Vec::new();
        e.extend_from_slice(&base.to_le_bytes());
        e.extend_from_slice(&len.to_le_bytes());
        e.extend_from_slice(&kind.to_le_bytes());
        e.resize(size, 0);
        e
    }

    #[test]
    fn mb2_memory_map_and_ram() {
        let mut mmap = Vec::new();
        mmap.extend_from_slice(&24u32.to_le_bytes());
        mmap.extend_from_slice(&0u32.to_le_bytes());
        mmap.extend(ram_entry(0, 0x9fc00, MEMORY_RAM, 24));
        mmap.extend(ram_entry(0xf0000, 0x10000, 2, 24));
        mmap.extend(ram_entry(0x100000, 0x7ee0000, MEMORY_RAM, 24));
        let i = info(&[tag(1, b"x\0"), tag(6, &mmap), tag(14, &[1; 20])]);
        let (entries, size) = mb2_memory_map(&i).unwrap().unwrap();
        assert_eq!(size, 24);
        let ranges: Vec<_> = memory_ranges(entries, size).collect();
        assert_eq!(ranges.len(), 3);
        assert!(is_ram(ranges.iter().copied(), 0x8000, 0x1000));
        assert!(
            !is_ram(ranges.iter().copied(), 0x9f000, 0x1000),
            "crosses the end"
        );
        assert!(!is_ram(ranges.iter().copied(), 0xf0000, 0x1000), "reserved");
        assert!(!is_ram(ranges.iter().copied(), u64::MAX - 4, 0x1000));
        assert!(mb2_rsdp(&i).unwrap().is_some(), "the RSDP is still found");
        assert_eq!(mb2_memory_map(&info(&[tag(14, &[1; 20])])).unwrap(), None);
        let mut bad = mmap.clone();
        bad[..4].copy_from_slice(&7u32.to_le_bytes());
        assert!(mb2_memory_map(&info(&[tag(6, &bad)])).is_err());
        assert!(mb2_memory_map(&info(&[tag(6, &[0, 0])])).is_err());
    }

    #[test]
    fn hvm_start_info_memory_map() {
        let mut s = vec![0u8; 56];
        s[..4].copy_from_slice(&HVM_START_MAGIC.to_le_bytes());
        assert_eq!(hvm_memory_map(&s).unwrap(), None, "version 0");
        s[4] = 1;
        assert_eq!(hvm_memory_map(&s).unwrap(), None, "no map");
        s[40..48].copy_from_slice(&0x1000u64.to_le_bytes());
        s[48..52].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(hvm_memory_map(&s).unwrap(), Some((0x1000, 3)));
        s[48..52].copy_from_slice(&100_000u32.to_le_bytes());
        assert!(hvm_memory_map(&s).is_err());
        assert!(hvm_memory_map(&s[..40]).is_err());
        s[0] = 0;
        assert!(hvm_memory_map(&s).is_err());
        let table: Vec<u8> = ram_entry(0, 0xa0000, MEMORY_RAM, 24);
        assert!(is_ram(
            memory_ranges(&table, HVM_MEMMAP_ENTRY_LEN),
            0x8000,
            4096
        ));
    }

    #[test]
    fn hvm_start_info_rsdp() {
        let mut s = vec![0u8; 56];
        s[..4].copy_from_slice(&HVM_START_MAGIC.to_le_bytes());
        assert_eq!(hvm_rsdp(&s).unwrap(), None);
        s[32..40].copy_from_slice(&0xf5a40u64.to_le_bytes());
        assert_eq!(hvm_rsdp(&s).unwrap(), Some(0xf5a40));
        s[0] = 0;
        assert!(hvm_rsdp(&s).is_err());
        assert!(hvm_rsdp(&s[..20]).is_err());
        assert_eq!(Protocol::from_stub(2), Some(Protocol::Multiboot2));
        assert_eq!(Protocol::from_stub(9), None);
    }

    #[test]
    fn ram_top_is_the_highest_ram_end_below_the_limit() {
        let r = |base, len, kind| MemoryRange { base, len, kind };
        let map = [
            r(0, 0x9fc00, MEMORY_RAM),
            r(0x10_0000, 0x1f0_0000, MEMORY_RAM),
            r(0xfeff_8000, 0x8000, 2),
            r(0x1_0000_0000, 0x1000_0000, MEMORY_RAM),
        ];
        assert_eq!(ram_top(map.into_iter(), 1 << 32), Some(0x200_0000));
        assert_eq!(ram_top(map.into_iter(), u64::MAX), Some(0x1_1000_0000));
        assert_eq!(ram_top(map[2..3].iter().copied(), 1 << 32), None);
    }
}
