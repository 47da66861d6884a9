//! What the boot loader handed over: a Multiboot2 information structure
//! (GRUB, an HVM domain builder) or a PVH `hvm_start_info` (QEMU's
//! `-kernel`, Xen's PVH builders). The kernels only want the RSDP from it.
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

/// Multiboot2 tag types (spec §3.6).
const MB2_TAG_END: u32 = 0;
const MB2_TAG_ACPI_OLD: u32 = 14;
const MB2_TAG_ACPI_NEW: u32 = 15;

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

/// The offset and length, inside the information structure `info`, of the
/// copy of the RSDP that the ACPI tags carry (the new one, tag 15,
/// preferred over the old one, tag 14).
pub fn mb2_rsdp(info: &[u8]) -> Result<Option<(usize, usize)>, Why> {
    let mut off = 8;
    let mut found = None;
    loop {
        let head = info
            .get(off..off + 8)
            .ok_or_else(|| why!("Multiboot2 tags run past total_size (no end tag)"))?;
        let ty = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let size = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
        if ty == MB2_TAG_END {
            return Ok(found);
        }
        if size < 8 || off + size > info.len() {
            return Err(why!("Multiboot2 tag {ty} at {off} has size {size}"));
        }
        match ty {
            MB2_TAG_ACPI_NEW => found = Some((off + 8, size - 8)),
            MB2_TAG_ACPI_OLD if found.is_none() => found = Some((off + 8, size - 8)),
            _ => {}
        }
        // Tags are 8-byte aligned.
        off += size.next_multiple_of(8);
    }
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
}
