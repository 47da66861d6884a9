//! Direct boot of Multiboot2 kernels (the Multiboot2 specification,
//! version 2.0) as HVM guests: unmodified bare-metal kernels that GRUB
//! would boot, started the way GRUB starts them.
//!
//! **Owns**: finding and checking the Multiboot2 header (in the first
//! 32 KiB, 8-byte aligned, magic 0xE85250D6, architecture 0 = i386,
//! checksum), its tags (information request, address, entry address,
//! module alignment; console, framebuffer, EFI and relocation tags are
//! ignored: the guest gets a serial console, no framebuffer, no EFI, and
//! is loaded where it asks), loading the kernel (by the address tag, else
//! as an ELF by physical address through [`PhysElf`]), and building the
//! boot information: command line (1), boot loader name (2), modules
//! (3), basic memory information (4), memory map (6, entry size 24,
//! version 0) and the ACPI RSDP (15 for ACPI 2.0+, else 14), end (0).
//! **Trusts**: nothing in the image: the header and every tag are
//! bounds-checked, a non-optional information request for a tag we
//! cannot give is refused (as the specification requires), and every
//! placement is checked against the guest's memory map.
//!
//! Initial state (§3.3 "I386 machine state"): EAX = 0x36d76289, EBX = the
//! boot information's physical address, 32-bit protected mode with
//! paging off, flat CS (execute/read) and DS/ES/FS/GS/SS (read/write),
//! interrupts off.

use alloc::vec::Vec;
use core::fmt;

use zerocopy::byteorder::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, KnownLayout};

use super::acpi::AcpiTables;
use super::pvh::{
    align_up, cmdline_len, ElfImageError, EntryState, GuestMemoryMap, PhysElf, PlacementError,
    FOUR_GIB, HIGH_RAM_START, LOW_RAM_END, MAX_CMDLINE, PAGE,
};
use crate::devmodel::{GuestMemory, MemoryFault};

/// Header magic.
pub const HEADER_MAGIC: u32 = 0xe852_50d6;
/// EAX at entry.
pub const BOOTLOADER_MAGIC: u32 = 0x36d7_6289;
/// Architecture 0: 32-bit (protected mode) i386.
pub const ARCH_I386: u32 = 0;
/// The header lies within this many bytes of the image's start.
pub const SEARCH_LEN: usize = 32 * 1024;
/// Header and boot information tags are 8-byte aligned.
pub const TAG_ALIGN: usize = 8;
/// Header tag flag: the tag is optional.
pub const TAG_OPTIONAL: u16 = 1;
/// The boot loader name we give.
pub const LOADER_NAME: &[u8] = b"Oxen";
/// Most modules accepted.
pub const MAX_MODULES: usize = 16;

/// Header tag types.
pub mod header_tag {
    /// End of tags.
    pub const END: u16 = 0;
    /// Information request.
    pub const INFORMATION_REQUEST: u16 = 1;
    /// Address (load without ELF).
    pub const ADDRESS: u16 = 2;
    /// Entry address.
    pub const ENTRY_ADDRESS: u16 = 3;
    /// Console flags.
    pub const CONSOLE_FLAGS: u16 = 4;
    /// Framebuffer.
    pub const FRAMEBUFFER: u16 = 5;
    /// Module alignment.
    pub const MODULE_ALIGN: u16 = 6;
    /// EFI boot services.
    pub const EFI_BS: u16 = 7;
    /// EFI i386 entry address.
    pub const ENTRY_ADDRESS_EFI32: u16 = 8;
    /// EFI amd64 entry address.
    pub const ENTRY_ADDRESS_EFI64: u16 = 9;
    /// Relocatable.
    pub const RELOCATABLE: u16 = 10;
}

/// Boot information tag types.
pub mod info_tag {
    /// End of tags.
    pub const END: u32 = 0;
    /// Command line.
    pub const CMDLINE: u32 = 1;
    /// Boot loader name.
    pub const BOOT_LOADER_NAME: u32 = 2;
    /// A module.
    pub const MODULE: u32 = 3;
    /// Basic memory information.
    pub const BASIC_MEMINFO: u32 = 4;
    /// Memory map.
    pub const MMAP: u32 = 6;
    /// ACPI 1.0 RSDP.
    pub const ACPI_OLD: u32 = 14;
    /// ACPI 2.0+ RSDP.
    pub const ACPI_NEW: u32 = 15;
}

/// Memory map entry size and version.
const MMAP_ENTRY_SIZE: u32 = 24;
const MMAP_ENTRY_VERSION: u32 = 0;
/// RSDP lengths: ACPI 1.0 (20 bytes), 2.0+ (36).
const RSDP_V1_LEN: usize = 20;
const RSDP_V2_LEN: usize = 36;

/// Why a Multiboot2 kernel was refused or cannot be placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mb2Error {
    /// No valid header in the first 32 KiB.
    NoHeader,
    /// The header is for another architecture.
    Arch(u32),
    /// A header tag is malformed (size, bounds, no end tag).
    BadTag {
        /// Offset of the tag in the image.
        offset: usize,
    },
    /// A non-optional tag we do not know.
    UnknownTag(u16),
    /// A non-optional information request for a tag we cannot give.
    Unsupported(u32),
    /// The address tag's addresses are inconsistent with the file.
    BadAddressTag,
    /// No entry address (no entry tag, and not an ELF).
    NoEntry,
    /// The entry is not in the loaded image (or not below 4 GiB).
    EntryNotLoaded(u64),
    /// Not an ELF, and no address tag.
    Elf(ElfImageError),
    /// Command line too long or with a NUL.
    BadCmdline,
    /// More than [`MAX_MODULES`], or lengths differing from the plan's.
    Modules,
    /// Placement in guest memory.
    Place(PlacementError),
    /// Writing guest memory failed.
    Memory(MemoryFault),
}

impl fmt::Display for Mb2Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NoHeader => f.write_str("no Multiboot2 header in the first 32 KiB"),
            Self::Arch(a) => write!(f, "Multiboot2 architecture {a} is not i386"),
            Self::BadTag { offset } => write!(f, "malformed Multiboot2 tag at {offset:#x}"),
            Self::UnknownTag(t) => write!(f, "required Multiboot2 tag {t} is unknown"),
            Self::Unsupported(t) => write!(f, "kernel requires boot information tag {t}"),
            Self::BadAddressTag => f.write_str("inconsistent Multiboot2 address tag"),
            Self::NoEntry => f.write_str("no entry address"),
            Self::EntryNotLoaded(e) => write!(f, "entry {e:#x} is not in the loaded image"),
            Self::Elf(e) => write!(f, "kernel image: {e}"),
            Self::BadCmdline => f.write_str("bad command line"),
            Self::Modules => f.write_str("bad modules"),
            Self::Place(e) => write!(f, "{e}"),
            Self::Memory(m) => write!(f, "guest memory at {:#x} unreachable", m.gpa),
        }
    }
}

impl From<PlacementError> for Mb2Error {
    fn from(e: PlacementError) -> Self {
        Mb2Error::Place(e)
    }
}

impl From<MemoryFault> for Mb2Error {
    fn from(e: MemoryFault) -> Self {
        Mb2Error::Memory(e)
    }
}

/// The fixed part of the header.
#[derive(FromBytes, KnownLayout, Immutable)]
#[repr(C)]
struct RawHeader {
    magic: U32,
    architecture: U32,
    header_length: U32,
    checksum: U32,
}

/// A header tag's head.
#[derive(FromBytes, KnownLayout, Immutable)]
#[repr(C)]
struct RawTag {
    ty: U16,
    flags: U16,
    size: U32,
}

/// The address tag (type 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressTag {
    /// Where the header's magic is loaded.
    pub header_addr: u32,
    /// Where the text begins (file offset: header offset − (header_addr −
    /// load_addr)).
    pub load_addr: u32,
    /// End of the data to load (0: to the end of the file).
    pub load_end_addr: u32,
    /// End of the bss (0: none).
    pub bss_end_addr: u32,
}

/// The header and what its tags ask.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mb2Header {
    /// Offset of the header in the image.
    pub offset: usize,
    /// `header_length`.
    pub length: usize,
    /// Information requested (tag types).
    pub requests: Vec<u32>,
    /// The information request tag is optional.
    pub requests_optional: bool,
    /// The address tag.
    pub address: Option<AddressTag>,
    /// The entry address tag.
    pub entry: Option<u32>,
    /// Modules must be page aligned (they always are here).
    pub module_align: bool,
}

/// Tags we can give.
const GIVEN: [u32; 7] = [
    info_tag::CMDLINE,
    info_tag::BOOT_LOADER_NAME,
    info_tag::MODULE,
    info_tag::BASIC_MEMINFO,
    info_tag::MMAP,
    info_tag::ACPI_OLD,
    info_tag::ACPI_NEW,
];

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let (v, _) = U32::read_from_prefix(b.get(at..)?).ok()?;
    Some(v.get())
}

/// Finds the header: the first 8-byte aligned offset in the first 32 KiB
/// with the magic and a valid checksum.
pub fn find_header(image: &[u8]) -> Result<Mb2Header, Mb2Error> {
    let window = &image[..image.len().min(SEARCH_LEN)];
    let offset = (0..window.len())
        .step_by(TAG_ALIGN)
        .find(|&at| {
            RawHeader::read_from_prefix(&window[at..]).is_ok_and(|(h, _)| {
                h.magic.get() == HEADER_MAGIC
                    && h.magic
                        .get()
                        .wrapping_add(h.architecture.get())
                        .wrapping_add(h.header_length.get())
                        .wrapping_add(h.checksum.get())
                        == 0
            })
        })
        .ok_or(Mb2Error::NoHeader)?;
    let (h, _) = RawHeader::read_from_prefix(&window[offset..]).map_err(|_| Mb2Error::NoHeader)?;
    if h.architecture.get() != ARCH_I386 {
        return Err(Mb2Error::Arch(h.architecture.get()));
    }
    let length = h.header_length.get() as usize;
    let end = offset
        .checked_add(length)
        .filter(|&e| length >= 16 && e <= window.len())
        .ok_or(Mb2Error::BadTag { offset })?;
    let hdr = &window[..end];
    let mut out = Mb2Header {
        offset,
        length,
        requests: Vec::new(),
        requests_optional: false,
        address: None,
        entry: None,
        module_align: false,
    };
    let mut at = offset + 16;
    loop {
        let bad = Mb2Error::BadTag { offset: at };
        let (t, _) = RawTag::read_from_prefix(hdr.get(at..).ok_or(bad)?).map_err(|_| bad)?;
        let size = t.size.get() as usize;
        let tag_end = at
            .checked_add(size)
            .filter(|&e| size >= 8 && e <= end)
            .ok_or(bad)?;
        let body = &hdr[at + 8..tag_end];
        let optional = t.flags.get() & TAG_OPTIONAL != 0;
        match t.ty.get() {
            header_tag::END => break,
            header_tag::INFORMATION_REQUEST => {
                if !body.len().is_multiple_of(4) {
                    return Err(bad);
                }
                out.requests_optional = optional;
                out.requests = body
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
            }
            header_tag::ADDRESS => {
                if body.len() != 16 {
                    return Err(bad);
                }
                let w = |i: usize| u32_at(body, i * 4).unwrap_or(0);
                out.address = Some(AddressTag {
                    header_addr: w(0),
                    load_addr: w(1),
                    load_end_addr: w(2),
                    bss_end_addr: w(3),
                });
            }
            header_tag::ENTRY_ADDRESS => {
                out.entry = Some(u32_at(body, 0).filter(|_| body.len() == 4).ok_or(bad)?);
            }
            header_tag::MODULE_ALIGN => out.module_align = true,
            // No text console, framebuffer or EFI here; loaded where it
            // asks. Ignored, even when not optional.
            header_tag::CONSOLE_FLAGS
            | header_tag::FRAMEBUFFER
            | header_tag::EFI_BS
            | header_tag::ENTRY_ADDRESS_EFI32
            | header_tag::ENTRY_ADDRESS_EFI64
            | header_tag::RELOCATABLE => {}
            ty if !optional => return Err(Mb2Error::UnknownTag(ty)),
            _ => {}
        }
        at = align_up(tag_end as u64, TAG_ALIGN as u64).ok_or(bad)? as usize;
    }
    if !out.requests_optional {
        if let Some(&t) = out.requests.iter().find(|t| !GIVEN.contains(t)) {
            return Err(Mb2Error::Unsupported(t));
        }
    }
    Ok(out)
}

/// How the kernel's bytes get into memory.
#[derive(Clone, Debug)]
enum Image<'a> {
    /// By the address tag: `bytes` at `load`, zeros to `bss_end`.
    Raw {
        bytes: &'a [u8],
        load: u64,
        bss_end: u64,
    },
    /// By the ELF program headers.
    Elf(PhysElf<'a>),
}

/// A Multiboot2 kernel ready to load.
#[derive(Clone, Debug)]
pub struct Mb2Kernel<'a> {
    /// Its header.
    pub header: Mb2Header,
    image: Image<'a>,
    /// The entry point (physical, 32-bit).
    pub entry: u32,
}

impl<'a> Mb2Kernel<'a> {
    /// Finds the header and works out what to load and where to enter.
    pub fn parse(file: &'a [u8]) -> Result<Mb2Kernel<'a>, Mb2Error> {
        let header = find_header(file)?;
        let image = match header.address {
            Some(a) => {
                let (load, hdr_at) = (u64::from(a.load_addr), u64::from(a.header_addr));
                let skip = hdr_at.checked_sub(load).ok_or(Mb2Error::BadAddressTag)?;
                let start = (header.offset as u64)
                    .checked_sub(skip)
                    .ok_or(Mb2Error::BadAddressTag)?;
                let avail = file.len() as u64 - start;
                let len = match a.load_end_addr {
                    0 => avail,
                    e => u64::from(e)
                        .checked_sub(load)
                        .filter(|&n| n <= avail)
                        .ok_or(Mb2Error::BadAddressTag)?,
                };
                let bss_end = match a.bss_end_addr {
                    0 => load + len,
                    e if u64::from(e) >= load + len => u64::from(e),
                    _ => return Err(Mb2Error::BadAddressTag),
                };
                if len == 0 {
                    return Err(Mb2Error::BadAddressTag);
                }
                Image::Raw {
                    bytes: &file[start as usize..(start + len) as usize],
                    load,
                    bss_end,
                }
            }
            None => Image::Elf(PhysElf::parse(file).map_err(Mb2Error::Elf)?),
        };
        let entry = match (&image, header.entry) {
            (Image::Raw { load, bytes, .. }, Some(e)) => {
                let e = u64::from(e);
                if e < *load || e >= load + bytes.len() as u64 {
                    return Err(Mb2Error::EntryNotLoaded(e));
                }
                e
            }
            (Image::Raw { .. }, None) => return Err(Mb2Error::NoEntry),
            (Image::Elf(elf), tag) => {
                let e = tag.map_or(elf.e_entry, u64::from);
                elf.entry_paddr(e).ok_or(Mb2Error::EntryNotLoaded(e))?
            }
        };
        let entry = u32::try_from(entry).map_err(|_| Mb2Error::EntryNotLoaded(entry))?;
        Ok(Mb2Kernel {
            header,
            image,
            entry,
        })
    }

    /// The physical ranges the kernel occupies.
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        match &self.image {
            Image::Raw { load, bss_end, .. } => alloc::vec![(*load, *bss_end)],
            Image::Elf(e) => e.ranges(),
        }
    }

    /// Copies the kernel into guest memory (and zeroes its bss).
    pub fn load(&self, mem: &mut dyn GuestMemory) -> Result<(), MemoryFault> {
        match &self.image {
            Image::Elf(e) => e.load(mem),
            Image::Raw {
                bytes,
                load,
                bss_end,
            } => {
                mem.write(*load, bytes)?;
                let zeros = [0u8; 4096];
                let mut at = load + bytes.len() as u64;
                while at < *bss_end {
                    let n = (bss_end - at).min(zeros.len() as u64);
                    mem.write(at, &zeros[..n as usize])?;
                    at += n;
                }
                Ok(())
            }
        }
    }
}

/// Where everything goes, and the boot information's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mb2Layout {
    /// Entry point.
    pub entry: u32,
    /// The boot information (MBI), 8-byte aligned, below 640 KiB.
    pub mbi: u64,
    /// Its bytes.
    pub mbi_bytes: Vec<u8>,
    /// Modules `[start, end)`, page aligned, below 4 GiB.
    pub modules: Vec<(u64, u64)>,
}

/// Appends a boot information tag (padded to 8 bytes).
fn push_tag(b: &mut Vec<u8>, ty: u32, body: &[u8]) {
    b.extend_from_slice(&ty.to_le_bytes());
    b.extend_from_slice(&(8 + body.len() as u32).to_le_bytes());
    b.extend_from_slice(body);
    while !b.len().is_multiple_of(TAG_ALIGN) {
        b.push(0);
    }
}

/// The boot information: fixed part, then tags 1, 2, 3 (per module), 4,
/// 6, 15 or 14, 0.
fn boot_info(
    map: &GuestMemoryMap,
    cmdline: &[u8],
    modules: &[(u64, u64)],
    acpi: Option<&AcpiTables>,
) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&[0u8; 8]); // total_size, reserved
    push_tag(&mut b, info_tag::CMDLINE, &[cmdline, b"\0"].concat());
    push_tag(
        &mut b,
        info_tag::BOOT_LOADER_NAME,
        &[LOADER_NAME, b"\0"].concat(),
    );
    for &(s, e) in modules {
        let mut m = Vec::new();
        m.extend_from_slice(&(s as u32).to_le_bytes());
        m.extend_from_slice(&(e as u32).to_le_bytes());
        m.push(0); // empty module command line
        push_tag(&mut b, info_tag::MODULE, &m);
    }
    // mem_lower: KiB from 0; mem_upper: KiB from 1 MiB to the first hole.
    let upper = map
        .ram_ranges()
        .find(|&(s, _)| s == HIGH_RAM_START)
        .map_or(0, |(s, e)| (e - s) / 1024);
    let mut mi = Vec::new();
    mi.extend_from_slice(&((LOW_RAM_END / 1024) as u32).to_le_bytes());
    mi.extend_from_slice(&(upper as u32).to_le_bytes());
    push_tag(&mut b, info_tag::BASIC_MEMINFO, &mi);
    let mut mm = Vec::new();
    mm.extend_from_slice(&MMAP_ENTRY_SIZE.to_le_bytes());
    mm.extend_from_slice(&MMAP_ENTRY_VERSION.to_le_bytes());
    for e in map.entries() {
        mm.extend_from_slice(&e.addr.to_le_bytes());
        mm.extend_from_slice(&e.size.to_le_bytes());
        mm.extend_from_slice(&e.r#type.to_le_bytes());
        mm.extend_from_slice(&0u32.to_le_bytes());
    }
    push_tag(&mut b, info_tag::MMAP, &mm);
    if let Some(a) = acpi {
        let rsdp = a.rsdp_bytes();
        // Revision (byte 15) 2+ has the 36-byte form.
        if rsdp.len() >= RSDP_V2_LEN && rsdp[15] >= 2 {
            push_tag(&mut b, info_tag::ACPI_NEW, &rsdp[..RSDP_V2_LEN]);
        } else if rsdp.len() >= RSDP_V1_LEN {
            push_tag(&mut b, info_tag::ACPI_OLD, &rsdp[..RSDP_V1_LEN]);
        }
    }
    push_tag(&mut b, info_tag::END, &[]);
    let total = b.len() as u32;
    b[..4].copy_from_slice(&total.to_le_bytes());
    b
}

/// Plans a Multiboot2 guest: the kernel where it asks (in RAM), modules
/// page aligned as high below 4 GiB as RAM allows, the boot information
/// low.
pub fn plan(
    k: &Mb2Kernel,
    map: &GuestMemoryMap,
    cmdline: &[u8],
    module_lens: &[u64],
    acpi: Option<&AcpiTables>,
) -> Result<Mb2Layout, Mb2Error> {
    if cmdline_len(cmdline, MAX_CMDLINE).is_none() {
        return Err(Mb2Error::BadCmdline);
    }
    if module_lens.len() > MAX_MODULES {
        return Err(Mb2Error::Modules);
    }
    let mut avoid = k.ranges();
    for &(s, e) in &avoid {
        map.check_ram("kernel", s, e)?;
    }
    if let Some(a) = acpi {
        map.check_acpi(a)?;
    }
    let mut modules = Vec::new();
    for &len in module_lens {
        let rounded = align_up(len.max(1), PAGE).ok_or(PlacementError::NoRoom {
            what: "module",
            len,
        })?;
        let at = map.place_high("module", rounded, PAGE, HIGH_RAM_START, FOUR_GIB, &avoid)?;
        avoid.push((at, at + rounded));
        modules.push((at, at + len));
    }
    let mbi_bytes = boot_info(map, cmdline, &modules, acpi);
    let mbi = map.place_boot_data("boot information", mbi_bytes.len() as u64, &avoid)?;
    Ok(Mb2Layout {
        entry: k.entry,
        mbi,
        mbi_bytes,
        modules,
    })
}

/// The first vCPU: EAX = the boot loader magic, EBX = the boot
/// information.
pub fn entry_state(l: &Mb2Layout) -> EntryState {
    EntryState {
        rax: u64::from(BOOTLOADER_MAGIC),
        rbx: l.mbi,
        ..EntryState::protected32(l.entry)
    }
}

/// Writes the kernel, ACPI tables, modules and boot information; returns
/// the first vCPU's state.
pub fn write(
    k: &Mb2Kernel,
    l: &Mb2Layout,
    modules: &[&[u8]],
    acpi: Option<&AcpiTables>,
    mem: &mut dyn GuestMemory,
) -> Result<EntryState, Mb2Error> {
    let same = modules.len() == l.modules.len()
        && modules
            .iter()
            .zip(&l.modules)
            .all(|(m, &(s, e))| m.len() as u64 == e - s);
    if !same {
        return Err(Mb2Error::Modules);
    }
    k.load(mem)?;
    if let Some(a) = acpi {
        mem.write(a.base, &a.bytes)?;
    }
    for (m, &(s, _)) in modules.iter().zip(&l.modules) {
        mem.write(s, m)?;
    }
    mem.write(l.mbi, &l.mbi_bytes)?;
    Ok(entry_state(l))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::acpi::{self, AcpiConfig};
    use crate::builder::pvh::testelf::{build, Seg};
    use crate::builder::pvh::{EntryMode, ACPI_BASE, CR0_PE};
    use crate::devmodel::testmem::Sparse;
    use std::vec;

    const MIB: u64 = 1 << 20;

    /// A header with `tags` (each `(type, flags, body)`), end tag added.
    fn header(arch: u32, tags: &[(u16, u16, Vec<u8>)]) -> Vec<u8> {
        let mut t = Vec::new();
        for (ty, flags, body) in tags.iter().chain([(0u16, 0u16, Vec::new())].iter()) {
            t.extend_from_slice(&ty.to_le_bytes());
            t.extend_from_slice(&flags.to_le_bytes());
            t.extend_from_slice(&(8 + body.len() as u32).to_le_bytes());
            t.extend_from_slice(body);
            while t.len() % 8 != 0 {
                t.push(0);
            }
        }
        let len = 16 + t.len() as u32;
        let sum = 0u32
            .wrapping_sub(HEADER_MAGIC)
            .wrapping_sub(arch)
            .wrapping_sub(len);
        let mut h = Vec::new();
        for v in [HEADER_MAGIC, arch, len, sum] {
            h.extend_from_slice(&v.to_le_bytes());
        }
        h.extend_from_slice(&t);
        h
    }

    fn words(ws: &[u32]) -> Vec<u8> {
        ws.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    /// An ELF32 kernel at 1 MiB with the header at the start of its text.
    fn elf_kernel(tags: &[(u16, u16, Vec<u8>)]) -> Vec<u8> {
        let mut text = header(0, tags);
        text.resize(0x200, 0x90);
        build(false, MIB + 0x100, &[Seg::load(MIB, text, 0x4000)])
    }

    /// A flat binary with an address tag: header at 0x40 of a file loaded
    /// at 2 MiB, entry at 2 MiB + 0x80, 0x1000 of bss after 0x200 bytes.
    fn raw_kernel() -> Vec<u8> {
        let base = 2 * MIB as u32;
        let mut f = vec![0xf4u8; 0x40];
        f.extend_from_slice(&header(
            0,
            &[
                (
                    2,
                    0,
                    words(&[base + 0x40, base, base + 0x200, base + 0x1200]),
                ),
                (3, 0, words(&[base + 0x80])),
            ],
        ));
        f.resize(0x300, 0xaa);
        f
    }

    #[test]
    fn finds_the_header_and_tags() {
        let img = elf_kernel(&[
            (1, 0, words(&[1, 6, 15])),
            (5, 0, words(&[1024, 768, 32])),
            (6, 0, vec![]),
        ]);
        let h = find_header(&img).unwrap();
        assert_eq!(h.offset % 8, 0);
        assert_eq!(h.requests, vec![1, 6, 15]);
        assert!(!h.requests_optional);
        assert!(h.module_align);
        assert_eq!(h.address, None);
        let k = Mb2Kernel::parse(&img).unwrap();
        assert_eq!(k.entry, (MIB + 0x100) as u32);
    }

    #[test]
    fn boots_an_elf_kernel() {
        let img = elf_kernel(&[(1, 0, words(&[4, 6, 14]))]);
        let k = Mb2Kernel::parse(&img).unwrap();
        let map = GuestMemoryMap::new(64 * MIB).unwrap();
        let tables = acpi::build(&AcpiConfig::hvm(2, ACPI_BASE)).unwrap();
        let l = plan(&k, &map, b"verbose", &[0x1234], Some(&tables)).unwrap();
        let mut mem = Sparse::new(64 * MIB);
        let module = vec![0x3c; 0x1234];
        let st = write(&k, &l, &[&module], Some(&tables), &mut mem).unwrap();
        assert_eq!(st.mode, EntryMode::Protected32);
        assert_eq!(st.rax, 0x36d7_6289);
        assert_eq!(st.rbx, l.mbi);
        assert_eq!(st.rip, MIB + 0x100);
        assert_eq!(st.cr0 & CR0_PE, CR0_PE);
        assert_eq!(st.cr0 & (1 << 31), 0, "paging off");
        assert_eq!(l.mbi % 8, 0);
        assert!(l.mbi + l.mbi_bytes.len() as u64 <= LOW_RAM_END);

        // Kernel loaded, bss zeroed.
        assert_eq!(mem.get(MIB, 4), 0xe852_50d6u32.to_le_bytes());
        assert_eq!(mem.get(MIB + 0x200, 4), vec![0; 4]);

        // Walk the MBI as a kernel would.
        let total = u32::from_le_bytes(mem.get(l.mbi, 4).try_into().unwrap()) as usize;
        assert_eq!(total, l.mbi_bytes.len());
        assert_eq!(mem.get(l.mbi + 4, 4), vec![0; 4], "reserved");
        let mbi = mem.get(l.mbi, total);
        let mut tags = Vec::new();
        let mut at = 8;
        loop {
            let ty = u32::from_le_bytes(mbi[at..at + 4].try_into().unwrap());
            let size = u32::from_le_bytes(mbi[at + 4..at + 8].try_into().unwrap()) as usize;
            tags.push((ty, mbi[at + 8..at + size].to_vec()));
            if ty == 0 {
                assert_eq!(size, 8);
                assert_eq!(at + size, total);
                break;
            }
            at = (at + size + 7) & !7;
        }
        let tag = |t: u32| tags.iter().find(|x| x.0 == t).map(|x| x.1.clone()).unwrap();
        assert_eq!(tag(1), b"verbose\0");
        assert_eq!(tag(2), b"Oxen\0");
        let m = tag(3);
        let (ms, me) = (
            u32::from_le_bytes(m[0..4].try_into().unwrap()),
            u32::from_le_bytes(m[4..8].try_into().unwrap()),
        );
        assert_eq!(u64::from(me - ms), 0x1234);
        assert_eq!(u64::from(ms) % PAGE, 0);
        assert_eq!(mem.get(u64::from(ms), 1), vec![0x3c]);
        let mi = tag(4);
        assert_eq!(u32::from_le_bytes(mi[0..4].try_into().unwrap()), 640);
        assert_eq!(u32::from_le_bytes(mi[4..8].try_into().unwrap()), 63 * 1024);
        let mm = tag(6);
        assert_eq!(&mm[..8], &words(&[24, 0])[..]);
        assert_eq!((mm.len() - 8) / 24, 3);
        let e2 = &mm[8 + 48..8 + 72];
        assert_eq!(u64::from_le_bytes(e2[0..8].try_into().unwrap()), MIB);
        assert_eq!(u64::from_le_bytes(e2[8..16].try_into().unwrap()), 63 * MIB);
        assert_eq!(u32::from_le_bytes(e2[16..20].try_into().unwrap()), 1);
        // ACPI 2.0 tables: the new-RSDP tag, the RSDP's 36 bytes.
        assert_eq!(tag(15), tables.rsdp_bytes());
        assert!(tags.iter().all(|t| t.0 != 14));
    }

    #[test]
    fn boots_a_raw_kernel_by_address_tag() {
        let img = raw_kernel();
        let k = Mb2Kernel::parse(&img).unwrap();
        assert_eq!(k.entry, (2 * MIB + 0x80) as u32);
        assert_eq!(k.ranges(), vec![(2 * MIB, 2 * MIB + 0x1200)]);
        let map = GuestMemoryMap::new(16 * MIB).unwrap();
        let l = plan(&k, &map, b"", &[], None).unwrap();
        assert!(l.modules.is_empty());
        let mut mem = Sparse::new(16 * MIB);
        // Something already in the bss gets zeroed.
        GuestMemory::write(&mut mem, 2 * MIB + 0x1000, &[9]).unwrap();
        write(&k, &l, &[], None, &mut mem).unwrap();
        assert_eq!(mem.get(2 * MIB, 1), vec![0xf4]);
        assert_eq!(mem.get(2 * MIB + 0x40, 4), 0xe852_50d6u32.to_le_bytes());
        assert_eq!(mem.get(2 * MIB + 0x1ff, 2), vec![0xaa, 0]);
        assert_eq!(mem.get(2 * MIB + 0x1000, 1), vec![0]);
        // No ACPI: no RSDP tag; empty command line.
        let b = &l.mbi_bytes;
        assert_eq!(&b[8..16], &words(&[1, 9])[..]);
    }

    #[test]
    fn higher_half_elf_entry_is_translated() {
        let mut text = header(0, &[]);
        text.resize(0x100, 0x90);
        let mut seg = Seg::load(MIB, text, 0x100);
        seg.vaddr = 0xffff_ffff_8010_0000;
        let img = build(true, 0xffff_ffff_8010_0020, &[seg]);
        let k = Mb2Kernel::parse(&img).unwrap();
        assert_eq!(k.entry, (MIB + 0x20) as u32);
    }

    #[test]
    fn header_search_rules() {
        // Beyond 32 KiB: not found.
        let mut img = vec![0u8; SEARCH_LEN];
        img.extend_from_slice(&header(0, &[]));
        assert_eq!(find_header(&img), Err(Mb2Error::NoHeader));
        // Misaligned: not found.
        let mut img = vec![0u8; 4];
        img.extend_from_slice(&header(0, &[]));
        assert_eq!(find_header(&img), Err(Mb2Error::NoHeader));
        // Bad checksum: not found.
        let mut h = header(0, &[]);
        h[12] ^= 1;
        assert_eq!(find_header(&h), Err(Mb2Error::NoHeader));
        // Another architecture.
        assert_eq!(find_header(&header(4, &[])), Err(Mb2Error::Arch(4)));
        // Truncated in the middle of the tags.
        let h = header(0, &[(3, 0, words(&[0x1000]))]);
        assert!(matches!(
            find_header(&h[..20]),
            Err(Mb2Error::BadTag { .. })
        ));
        // No truncation panics.
        let full = raw_kernel();
        for n in 0..full.len() {
            let _ = Mb2Kernel::parse(&full[..n]);
        }
    }

    #[test]
    fn malformed_tags_are_refused() {
        // A tag whose size runs past the header.
        let mut h = header(0, &[(3, 0, words(&[0x1000]))]);
        h[20..24].copy_from_slice(&0x100u32.to_le_bytes());
        let len = u32::from_le_bytes(h[8..12].try_into().unwrap());
        let sum = 0u32.wrapping_sub(HEADER_MAGIC).wrapping_sub(len);
        h[12..16].copy_from_slice(&sum.to_le_bytes());
        assert_eq!(find_header(&h), Err(Mb2Error::BadTag { offset: 16 }));
        // A tag of size < 8.
        let mut h = header(0, &[(3, 0, words(&[0x1000]))]);
        h[20..24].copy_from_slice(&4u32.to_le_bytes());
        assert_eq!(find_header(&h), Err(Mb2Error::BadTag { offset: 16 }));
        // Wrong sizes for the address and entry tags.
        assert!(matches!(
            find_header(&header(0, &[(2, 0, words(&[1, 2, 3]))])),
            Err(Mb2Error::BadTag { .. })
        ));
        assert!(matches!(
            find_header(&header(0, &[(3, 0, words(&[1, 2]))])),
            Err(Mb2Error::BadTag { .. })
        ));
        // An information request of a partial word.
        assert!(matches!(
            find_header(&header(0, &[(1, 0, vec![1, 0, 0])])),
            Err(Mb2Error::BadTag { .. })
        ));
        // Unknown tags: refused unless optional.
        assert_eq!(
            find_header(&header(0, &[(42, 0, vec![])])),
            Err(Mb2Error::UnknownTag(42))
        );
        assert!(find_header(&header(0, &[(42, TAG_OPTIONAL, vec![])])).is_ok());
    }

    #[test]
    fn information_requests_we_cannot_meet() {
        // Framebuffer info (8) required: refused; optional: fine.
        assert_eq!(
            find_header(&header(0, &[(1, 0, words(&[6, 8]))])),
            Err(Mb2Error::Unsupported(8))
        );
        assert!(find_header(&header(0, &[(1, TAG_OPTIONAL, words(&[6, 8]))])).is_ok());
    }

    #[test]
    fn bad_address_tags_and_entries() {
        let base = 2 * MIB as u32;
        let mk = |a: [u32; 4], entry: Option<u32>| {
            let mut tags = vec![(2u16, 0u16, words(&a))];
            if let Some(e) = entry {
                tags.push((3, 0, words(&[e])));
            }
            let mut f = header(0, &tags);
            f.resize(0x100, 0);
            f
        };
        // header_addr below load_addr.
        let f = mk([base, base + 8, 0, 0], Some(base));
        assert_eq!(Mb2Kernel::parse(&f).unwrap_err(), Mb2Error::BadAddressTag);
        // The text would start before the file.
        let f = mk([base + 0x10, base, 0, 0], Some(base));
        assert_eq!(Mb2Kernel::parse(&f).unwrap_err(), Mb2Error::BadAddressTag);
        // load_end beyond the file.
        let f = mk([base, base, base + 0x1000, 0], Some(base));
        assert_eq!(Mb2Kernel::parse(&f).unwrap_err(), Mb2Error::BadAddressTag);
        // bss_end below load_end.
        let f = mk([base, base, base + 0x80, base + 0x40], Some(base));
        assert_eq!(Mb2Kernel::parse(&f).unwrap_err(), Mb2Error::BadAddressTag);
        // No entry tag.
        let f = mk([base, base, 0, 0], None);
        assert_eq!(Mb2Kernel::parse(&f).unwrap_err(), Mb2Error::NoEntry);
        // Entry outside the loaded bytes.
        let f = mk([base, base, 0, 0], Some(base + 0x100));
        assert_eq!(
            Mb2Kernel::parse(&f).unwrap_err(),
            Mb2Error::EntryNotLoaded(u64::from(base) + 0x100)
        );
        // An ELF whose entry is nowhere in it.
        let mut text = header(0, &[]);
        text.resize(0x100, 0x90);
        let img = build(false, 0x5000_0000, &[Seg::load(MIB, text, 0x100)]);
        assert_eq!(
            Mb2Kernel::parse(&img).unwrap_err(),
            Mb2Error::EntryNotLoaded(0x5000_0000)
        );
        // Neither ELF nor address tag.
        let mut f = header(0, &[]);
        f.resize(0x100, 0);
        assert_eq!(
            Mb2Kernel::parse(&f).unwrap_err(),
            Mb2Error::Elf(ElfImageError::NotElf)
        );
    }

    /// Corrupted headers and images are refused or planned, never a
    /// panic.
    #[test]
    fn mutated_images_never_panic() {
        let map = GuestMemoryMap::new(64 * MIB).unwrap();
        let mut rng = crate::devmodel::testmem::Rng(13);
        let goods = [
            raw_kernel(),
            elf_kernel(&[
                (1, 0, words(&[4, 6])),
                (3, 0, words(&[(MIB + 0x100) as u32])),
            ]),
        ];
        for good in &goods {
            for _ in 0..3000 {
                let img = rng.mutate(good, 0x200);
                if let Ok(k) = Mb2Kernel::parse(&img) {
                    let _ = plan(&k, &map, b"x", &[10], None);
                }
            }
        }
    }

    /// A real Multiboot2 kernel named by `OXEN_TEST_MB2_KERNEL` (e.g.
    /// Oxen's own `xen-core`), if any (skipped otherwise).
    #[test]
    fn real_kernel_if_given() {
        let Some(p) = std::env::var_os("OXEN_TEST_MB2_KERNEL") else {
            std::eprintln!("OXEN_TEST_MB2_KERNEL unset: skipped");
            return;
        };
        let img = std::fs::read(p).unwrap();
        let k = Mb2Kernel::parse(&img).unwrap();
        let map = GuestMemoryMap::new(256 * MIB).unwrap();
        let tables = acpi::build(&AcpiConfig::hvm(2, ACPI_BASE)).unwrap();
        let l = plan(&k, &map, b"console=com1", &[MIB], Some(&tables)).unwrap();
        std::eprintln!(
            "mb2: header at {:#x}, requests {:?}, entry {:#x}, ranges {:x?}, mbi at {:#x}",
            k.header.offset,
            k.header.requests,
            k.entry,
            k.ranges(),
            l.mbi
        );
    }

    #[test]
    fn placement_errors() {
        let img = raw_kernel();
        let k = Mb2Kernel::parse(&img).unwrap();
        // Kernel at 2 MiB needs more than 2 MiB of RAM.
        let small = GuestMemoryMap::new(2 * MIB).unwrap();
        assert!(matches!(
            plan(&k, &small, b"", &[], None),
            Err(Mb2Error::Place(PlacementError::OutsideRam { .. }))
        ));
        let map = GuestMemoryMap::new(16 * MIB).unwrap();
        assert!(matches!(
            plan(&k, &map, b"", &[32 * MIB], None),
            Err(Mb2Error::Place(PlacementError::NoRoom {
                what: "module",
                ..
            }))
        ));
        assert_eq!(plan(&k, &map, b"a\0", &[], None), Err(Mb2Error::BadCmdline));
        assert_eq!(
            plan(&k, &map, b"", &[1; MAX_MODULES + 1], None),
            Err(Mb2Error::Modules)
        );
        let l = plan(&k, &map, b"", &[10, 20], None).unwrap();
        assert_eq!(l.modules.len(), 2);
        assert!(l.modules[1].1 <= l.modules[0].0, "placed downward, apart");
        let mut mem = Sparse::new(16 * MIB);
        assert_eq!(
            write(&k, &l, &[&[0; 10]], None, &mut mem),
            Err(Mb2Error::Modules)
        );
        assert_eq!(
            write(&k, &l, &[&[0; 10], &[0; 21]], None, &mut mem),
            Err(Mb2Error::Modules)
        );
    }
}
