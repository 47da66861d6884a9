//! PVH guests (Xen's "x86/HVM direct boot ABI", `docs/misc/pvh.pandoc`),
//! and the pieces every HVM-container builder shares.
//!
//! **Owns**: (1) the guest-physical memory map of Oxen's HVM and PVH
//! guests ([`GuestMemoryMap`]: what the builder populates, what the guest
//! is told is RAM, where ACPI and boot data go) and placement in it
//! ([`GuestMemoryMap::place_high`]); (2) loading an ELF32 or ELF64 kernel
//! by physical address ([`PhysElf`], with its `XEN_ELFNOTE_PHYS32_ENTRY`);
//! (3) the first vCPU's state at a 32-bit or 64-bit entry
//! ([`EntryState`]); (4) the PVH plan itself: kernel segments,
//! `hvm_start_info` v1 with its memory map, module list and command line,
//! the initrd, the RSDP ([`plan`], [`start_info_blob`], [`write`]).
//! `bzimage` and `multiboot2` build on (1)-(3).
//! **Trusts**: nothing in the kernel image: every header, segment and note
//! is bounds-checked, segments may not overlap each other, the boot data
//! or anything but RAM, and the entry must lie in a loaded segment.
//!
//! Why not `xen_core::domain_build::elf::PvKernel`: it is a PV loader
//! (ELF64 only, Xen's PV notes required); a PVH or bare-metal kernel may be
//! ELF32 and need not carry any note but `PHYS32_ENTRY`.
//!
//! Initial state (pvh.pandoc): 32-bit protected mode, paging off
//! (`cr0` = PE|ET as libxc sets it, `cr4` = 0), flat 4 GiB `cs` (code)
//! and `ds`/`es`/`ss` (data), a 32-bit TSS, `eflags` IF/TF/VM clear,
//! `ebx` = the physical address of `hvm_start_info`.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use hypercall_abi::elfnote::{ElfNote, ElfNoteHeader, ELF_NOTE_ALIGN, XEN_ELFNOTE_NAME};
use hypercall_abi::hvm::{
    HvmMemmapTableEntry, HvmMemmapType, HvmModlistEntry, HvmStartInfo, XEN_HVM_START_INFO_VERSION,
    XEN_HVM_START_MAGIC_VALUE,
};
use zerocopy::byteorder::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::acpi::AcpiTables;
use super::bzimage::PayloadError;
use crate::devmodel::{GuestMemory, MemoryFault};

/// Guest page size.
pub const PAGE: u64 = 4096;
/// End of conventional memory (640 KiB): RAM below it.
pub const LOW_RAM_END: u64 = 0xa_0000;
/// Start of the BIOS area (reserved), where the ACPI tables go so that a
/// guest scanning 0xe0000..0x100000 for the RSDP finds it.
pub const ACPI_BASE: u64 = 0xe_0000;
/// Start of RAM above the ISA hole.
pub const HIGH_RAM_START: u64 = 0x10_0000;
/// End of RAM below 4 GiB (Xen's `HVM_BELOW_4G_RAM_END`); the rest of
/// the guest's memory continues at 4 GiB.
pub const BELOW_4G_RAM_END: u64 = 0xf000_0000;
/// 4 GiB.
pub const FOUR_GIB: u64 = 1 << 32;
/// Boot data (start info, zero page, command lines, Multiboot2 info) is
/// placed from here up to [`LOW_RAM_END`]: page 0 stays empty, as
/// `hvm_start_info` asks (an address 0 means "absent").
pub const BOOT_DATA_BASE: u64 = 0x1000;
/// Smallest guest accepted.
pub const MIN_RAM: u64 = 2 << 20;
/// Largest guest accepted (1 TiB).
pub const MAX_RAM: u64 = 1 << 40;
/// Longest command line accepted (with its NUL).
pub const MAX_CMDLINE: usize = 64 * 1024;

/// Rounds `v` up to a multiple of `a` (a power of two; 0 counts as 1);
/// `None` on overflow.
pub fn align_up(v: u64, a: u64) -> Option<u64> {
    let m = a.max(1) - 1;
    v.checked_add(m).map(|x| x & !m)
}

/// Rounds `v` down to a multiple of `a` (a power of two; 0 counts as 1).
pub const fn align_down(v: u64, a: u64) -> u64 {
    let m = if a == 0 { 0 } else { a - 1 };
    v & !m
}

/// `[start, end)` and `[s, e)` share a byte.
const fn overlaps(start: u64, end: u64, s: u64, e: u64) -> bool {
    start < e && s < end
}

/// Why a guest's memory cannot hold what it should.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlacementError {
    /// Memory size not a page multiple, below [`MIN_RAM`] or above
    /// [`MAX_RAM`].
    RamSize(u64),
    /// No room for this piece.
    NoRoom {
        /// What.
        what: &'static str,
        /// Its size.
        len: u64,
    },
    /// This piece is not entirely in RAM.
    OutsideRam {
        /// What.
        what: &'static str,
        /// Where it starts.
        start: u64,
        /// Where it ends.
        end: u64,
    },
    /// The ACPI tables are not at [`ACPI_BASE`] or do not fit below 1 MiB.
    Acpi {
        /// Their base.
        base: u64,
        /// Their size.
        len: u64,
    },
}

impl fmt::Display for PlacementError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::RamSize(b) => write!(f, "bad guest memory size {b:#x}"),
            Self::NoRoom { what, len } => write!(f, "no room for the {what} ({len:#x} bytes)"),
            Self::OutsideRam { what, start, end } => {
                write!(
                    f,
                    "{what} at {start:#x}..{end:#x} is not in the guest's RAM"
                )
            }
            Self::Acpi { base, len } => {
                write!(
                    f,
                    "ACPI tables at {base:#x} ({len:#x} bytes) do not fit the BIOS area"
                )
            }
        }
    }
}

/// The guest-physical memory map of an HVM or PVH guest with `ram`
/// bytes: RAM `[0, 640 KiB)`, the BIOS area `[0xe0000, 1 MiB)` reserved
/// (ACPI tables), RAM from 1 MiB to `min(ram, 0xf0000000)`, and what does
/// not fit below 4 GiB from 4 GiB up. The builder populates every frame
/// of [`GuestMemoryMap::populated`] (the ISA hole too: the ACPI tables
/// live there); the guest is told [`GuestMemoryMap::entries`] (E820 types).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestMemoryMap {
    ram: u64,
    entries: Vec<HvmMemmapTableEntry>,
}

fn entry(addr: u64, size: u64, ty: HvmMemmapType) -> HvmMemmapTableEntry {
    HvmMemmapTableEntry {
        addr,
        size,
        r#type: ty.raw(),
        reserved: 0,
    }
}

impl GuestMemoryMap {
    /// The map of a guest with `ram` bytes.
    pub fn new(ram: u64) -> Result<GuestMemoryMap, PlacementError> {
        if !ram.is_multiple_of(PAGE) || !(MIN_RAM..=MAX_RAM).contains(&ram) {
            return Err(PlacementError::RamSize(ram));
        }
        let low_end = ram.min(BELOW_4G_RAM_END);
        let mut entries = vec![
            entry(0, LOW_RAM_END, HvmMemmapType::Ram),
            entry(
                ACPI_BASE,
                HIGH_RAM_START - ACPI_BASE,
                HvmMemmapType::Reserved,
            ),
            entry(HIGH_RAM_START, low_end - HIGH_RAM_START, HvmMemmapType::Ram),
        ];
        if ram > low_end {
            entries.push(entry(FOUR_GIB, ram - low_end, HvmMemmapType::Ram));
        }
        Ok(GuestMemoryMap { ram, entries })
    }

    /// Marks `[start, start + len)` reserved in the map the guest is
    /// told (the toolstack's special pages above RAM, as libxl's e820);
    /// it must be page aligned and clear of every other entry. Entries
    /// stay sorted.
    pub fn reserve(&mut self, start: u64, len: u64) -> Result<(), PlacementError> {
        let bad = PlacementError::NoRoom {
            what: "reserved range",
            len,
        };
        let end = start.checked_add(len).ok_or(bad)?;
        if len == 0
            || !start.is_multiple_of(PAGE)
            || !len.is_multiple_of(PAGE)
            || self
                .entries
                .iter()
                .any(|e| overlaps(start, end, e.addr, e.addr + e.size))
        {
            return Err(bad);
        }
        let at = self.entries.partition_point(|e| e.addr < start);
        self.entries
            .insert(at, entry(start, len, HvmMemmapType::Reserved));
        Ok(())
    }

    /// The guest's memory in bytes.
    pub fn ram_bytes(&self) -> u64 {
        self.ram
    }

    /// The map the guest is given (`hvm_memmap_table_entry`, E820 types).
    pub fn entries(&self) -> &[HvmMemmapTableEntry] {
        &self.entries
    }

    /// The usable RAM ranges `[start, end)`, ascending.
    pub fn ram_ranges(&self) -> impl DoubleEndedIterator<Item = (u64, u64)> + '_ {
        self.entries
            .iter()
            .filter(|e| e.r#type == HvmMemmapType::Ram.raw())
            .map(|e| (e.addr, e.addr + e.size))
    }

    /// The guest frames the builder populates, as `(first gfn, count)`.
    pub fn populated(&self) -> Vec<(u64, u64)> {
        let low_end = self.ram.min(BELOW_4G_RAM_END);
        let mut v = vec![(0, low_end / PAGE)];
        if self.ram > low_end {
            v.push((FOUR_GIB / PAGE, (self.ram - low_end) / PAGE));
        }
        v
    }

    /// `[start, end)` lies inside one usable RAM range.
    pub fn is_ram(&self, start: u64, end: u64) -> bool {
        start <= end && self.ram_ranges().any(|(s, e)| start >= s && end <= e)
    }

    /// Checks that `[start, end)` is RAM.
    pub fn check_ram(
        &self,
        what: &'static str,
        start: u64,
        end: u64,
    ) -> Result<(), PlacementError> {
        if self.is_ram(start, end) {
            Ok(())
        } else {
            Err(PlacementError::OutsideRam { what, start, end })
        }
    }

    /// The highest `align`-aligned (a power of two) address `a` with
    /// `[a, a + len)` in RAM,
    /// ending at or below `limit`, at or above `floor`, and clear of every
    /// range in `avoid`.
    pub fn place_high(
        &self,
        what: &'static str,
        len: u64,
        align: u64,
        floor: u64,
        limit: u64,
        avoid: &[(u64, u64)],
    ) -> Result<u64, PlacementError> {
        let none = PlacementError::NoRoom { what, len };
        if len == 0 {
            return Err(none);
        }
        for (s, e) in self.ram_ranges().rev() {
            let lo = s.max(floor);
            let Some(mut top) = e.min(limit).checked_sub(len) else {
                continue;
            };
            loop {
                let a = align_down(top, align);
                if a < lo {
                    break;
                }
                match avoid.iter().find(|&&(x, y)| overlaps(a, a + len, x, y)) {
                    None => return Ok(a),
                    Some(&(x, _)) => match x.checked_sub(len) {
                        Some(t) if t < top => top = t,
                        _ => break,
                    },
                }
            }
        }
        Err(none)
    }

    /// The lowest page-aligned address for `len` bytes of boot data in
    /// `[BOOT_DATA_BASE, LOW_RAM_END)`, clear of `avoid`.
    pub fn place_boot_data(
        &self,
        what: &'static str,
        len: u64,
        avoid: &[(u64, u64)],
    ) -> Result<u64, PlacementError> {
        let none = PlacementError::NoRoom { what, len };
        let mut a = BOOT_DATA_BASE;
        loop {
            let end = a.checked_add(len).ok_or(none)?;
            if len == 0 || end > LOW_RAM_END {
                return Err(none);
            }
            match avoid.iter().find(|&&(x, y)| overlaps(a, end, x, y)) {
                None => return Ok(a),
                Some(&(_, y)) => a = align_up(y, PAGE).ok_or(none)?,
            }
        }
    }

    /// Checks that `acpi` sits at [`ACPI_BASE`] and ends below 1 MiB.
    pub fn check_acpi(&self, acpi: &AcpiTables) -> Result<(), PlacementError> {
        let len = acpi.bytes.len() as u64;
        if acpi.base != ACPI_BASE || ACPI_BASE + len > HIGH_RAM_START {
            return Err(PlacementError::Acpi {
                base: acpi.base,
                len,
            });
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// ELF by physical address
// ---------------------------------------------------------------------------

/// Why an ELF image was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfImageError {
    /// No ELF magic, or shorter than its header.
    NotElf,
    /// Not ELFCLASS32/64, little endian, version 1.
    BadIdent,
    /// `e_machine` is not EM_386 (32-bit) or EM_X86_64 (64-bit).
    BadMachine(u16),
    /// `e_type` is not ET_EXEC.
    NotExecutable(u16),
    /// The program header table is malformed or outside the file.
    BadProgramHeaders,
    /// No loadable segment.
    NoSegments,
    /// More than [`MAX_SEGMENTS`] loadable segments.
    TooManySegments,
    /// A segment's bytes lie outside the file, `filesz > memsz`, or its
    /// addresses wrap.
    BadSegment {
        /// Program header index.
        index: usize,
    },
    /// Two loadable segments overlap in physical memory.
    OverlappingSegments {
        /// Program header index of the later one.
        index: usize,
    },
    /// A note segment is malformed.
    BadNotes {
        /// Program header index.
        index: usize,
    },
    /// The compressed image (a bzImage's LZ4 payload) does not unpack.
    Payload(PayloadError),
}

impl fmt::Display for ElfImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NotElf => f.write_str("not an ELF image"),
            Self::BadIdent => f.write_str("not a little-endian ELF32/ELF64 image"),
            Self::BadMachine(m) => write!(f, "ELF machine {m} is not x86"),
            Self::NotExecutable(t) => write!(f, "ELF type {t} is not ET_EXEC"),
            Self::BadProgramHeaders => f.write_str("malformed program headers"),
            Self::NoSegments => f.write_str("no loadable segments"),
            Self::TooManySegments => write!(f, "more than {MAX_SEGMENTS} loadable segments"),
            Self::BadSegment { index } => write!(f, "ELF segment {index} is malformed"),
            Self::OverlappingSegments { index } => {
                write!(f, "ELF segment {index} overlaps another")
            }
            Self::BadNotes { index } => write!(f, "ELF note segment {index} is malformed"),
            Self::Payload(e) => write!(f, "compressed kernel: {e}"),
        }
    }
}

/// Most loadable segments accepted.
pub const MAX_SEGMENTS: usize = 16;
/// Most program headers accepted.
const MAX_PHDRS: usize = 128;

const ELFMAG: [u8; 4] = [0x7f, b'E', b'L', b'F'];
const ELFCLASS32: u8 = 1;
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const EV_CURRENT: u8 = 1;
const ET_EXEC: u16 = 2;
const EM_386: u16 = 3;
const EM_X86_64: u16 = 62;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;

/// `Elf32_Ehdr` (System V gABI).
#[derive(FromBytes, KnownLayout, Immutable)]
#[repr(C)]
struct Elf32Ehdr {
    ident: [u8; 16],
    e_type: U16,
    e_machine: U16,
    e_version: U32,
    e_entry: U32,
    e_phoff: U32,
    e_shoff: U32,
    e_flags: U32,
    e_ehsize: U16,
    e_phentsize: U16,
    e_phnum: U16,
    e_shentsize: U16,
    e_shnum: U16,
    e_shstrndx: U16,
}

/// `Elf64_Ehdr`.
#[derive(FromBytes, KnownLayout, Immutable)]
#[repr(C)]
struct Elf64Ehdr {
    ident: [u8; 16],
    e_type: U16,
    e_machine: U16,
    e_version: U32,
    e_entry: U64,
    e_phoff: U64,
    e_shoff: U64,
    e_flags: U32,
    e_ehsize: U16,
    e_phentsize: U16,
    e_phnum: U16,
    e_shentsize: U16,
    e_shnum: U16,
    e_shstrndx: U16,
}

/// `Elf32_Phdr`.
#[derive(FromBytes, KnownLayout, Immutable)]
#[repr(C)]
struct Elf32Phdr {
    p_type: U32,
    p_offset: U32,
    p_vaddr: U32,
    p_paddr: U32,
    p_filesz: U32,
    p_memsz: U32,
    p_flags: U32,
    p_align: U32,
}

/// `Elf64_Phdr`.
#[derive(FromBytes, KnownLayout, Immutable)]
#[repr(C)]
struct Elf64Phdr {
    p_type: U32,
    p_flags: U32,
    p_offset: U64,
    p_vaddr: U64,
    p_paddr: U64,
    p_filesz: U64,
    p_memsz: U64,
    p_align: U64,
}

/// A program header, either class.
#[derive(Clone, Copy, Debug)]
struct Phdr {
    p_type: u32,
    offset: u64,
    vaddr: u64,
    paddr: u64,
    filesz: u64,
    memsz: u64,
}

/// One loadable segment, placed by its physical address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhysSegment {
    /// Program header index.
    pub index: usize,
    /// File offset of its bytes.
    pub offset: u64,
    /// Bytes in the file.
    pub filesz: u64,
    /// Bytes in memory (the rest is zeroed).
    pub memsz: u64,
    /// `p_paddr`: where it is loaded.
    pub paddr: u64,
    /// `p_vaddr`: where it is linked to run.
    pub vaddr: u64,
}

impl PhysSegment {
    /// `[paddr, paddr + memsz)`.
    pub fn range(&self) -> (u64, u64) {
        (self.paddr, self.paddr + self.memsz)
    }
}

/// Where a [`PhysElf`]'s file bytes are.
#[derive(Clone, Copy, Debug)]
enum ElfSource<'a> {
    /// The ELF file itself.
    Bytes(&'a [u8]),
    /// An LZ4 legacy frame (a bzImage's payload) that unpacks to it,
    /// unpacked again, piece by piece, while loading: the file is never
    /// held whole.
    Lz4(&'a [u8]),
}

/// How much of the start of a compressed ELF is kept while parsing it:
/// the ELF header and the program headers must lie in it.
const STREAM_HEAD: usize = 64 << 10;
/// Most note bytes kept from a compressed ELF.
const STREAM_NOTES_MAX: u64 = 64 << 10;

/// A kernel ELF image (ELF32 for i386 or ELF64 for x86-64) loaded by
/// physical address, with its PVH entry note if it has one.
#[derive(Clone, Debug)]
pub struct PhysElf<'a> {
    source: ElfSource<'a>,
    /// ELFCLASS64.
    pub elf64: bool,
    /// `e_entry`.
    pub e_entry: u64,
    segments: Vec<PhysSegment>,
    /// `XEN_ELFNOTE_PHYS32_ENTRY`, if present.
    pub phys32_entry: Option<u64>,
    /// Notes named "Xen" seen.
    pub xen_notes: usize,
}

fn phdrs(image: &[u8]) -> Result<(bool, u64, Vec<Phdr>), ElfImageError> {
    let ident = image.get(..16).ok_or(ElfImageError::NotElf)?;
    if ident[..4] != ELFMAG {
        return Err(ElfImageError::NotElf);
    }
    if ident[5] != ELFDATA2LSB || ident[6] != EV_CURRENT {
        return Err(ElfImageError::BadIdent);
    }
    let (elf64, e_type, machine, entry, phoff, phentsize, phnum) = match ident[4] {
        ELFCLASS32 => {
            let (h, _) = Elf32Ehdr::read_from_prefix(image).map_err(|_| ElfImageError::NotElf)?;
            (
                false,
                h.e_type.get(),
                h.e_machine.get(),
                u64::from(h.e_entry.get()),
                u64::from(h.e_phoff.get()),
                h.e_phentsize.get(),
                h.e_phnum.get(),
            )
        }
        ELFCLASS64 => {
            let (h, _) = Elf64Ehdr::read_from_prefix(image).map_err(|_| ElfImageError::NotElf)?;
            (
                true,
                h.e_type.get(),
                h.e_machine.get(),
                h.e_entry.get(),
                h.e_phoff.get(),
                h.e_phentsize.get(),
                h.e_phnum.get(),
            )
        }
        _ => return Err(ElfImageError::BadIdent),
    };
    let want_machine = if elf64 { EM_X86_64 } else { EM_386 };
    if machine != want_machine {
        return Err(ElfImageError::BadMachine(machine));
    }
    if e_type != ET_EXEC {
        return Err(ElfImageError::NotExecutable(e_type));
    }
    let entsize = if elf64 {
        core::mem::size_of::<Elf64Phdr>()
    } else {
        core::mem::size_of::<Elf32Phdr>()
    };
    if usize::from(phentsize) != entsize || usize::from(phnum) > MAX_PHDRS {
        return Err(ElfImageError::BadProgramHeaders);
    }
    let mut v = Vec::with_capacity(phnum.into());
    for i in 0..u64::from(phnum) {
        let at = phoff
            .checked_add(i * entsize as u64)
            .and_then(|at| usize::try_from(at).ok())
            .and_then(|at| image.get(at..))
            .ok_or(ElfImageError::BadProgramHeaders)?;
        let p = if elf64 {
            let (p, _) =
                Elf64Phdr::read_from_prefix(at).map_err(|_| ElfImageError::BadProgramHeaders)?;
            Phdr {
                p_type: p.p_type.get(),
                offset: p.p_offset.get(),
                vaddr: p.p_vaddr.get(),
                paddr: p.p_paddr.get(),
                filesz: p.p_filesz.get(),
                memsz: p.p_memsz.get(),
            }
        } else {
            let (p, _) =
                Elf32Phdr::read_from_prefix(at).map_err(|_| ElfImageError::BadProgramHeaders)?;
            Phdr {
                p_type: p.p_type.get(),
                offset: u64::from(p.p_offset.get()),
                vaddr: u64::from(p.p_vaddr.get()),
                paddr: u64::from(p.p_paddr.get()),
                filesz: u64::from(p.p_filesz.get()),
                memsz: u64::from(p.p_memsz.get()),
            }
        };
        v.push(p);
    }
    Ok((elf64, entry, v))
}

/// The file bytes `[offset, offset + len)`, if inside `image`.
fn file_bytes(image: &[u8], offset: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    image.get(start..end)
}

/// Rounds a note length that already has `ELF_NOTE_ALIGN - 1` added down
/// to the alignment (`elf_note_pad` without its overflow).
const fn elf_note_pad_down(n: usize) -> usize {
    n & !(ELF_NOTE_ALIGN - 1)
}

/// Walks the notes in `bytes`; calls `f(name, type, desc)` for each.
fn walk_notes<'a>(mut bytes: &'a [u8], mut f: impl FnMut(&'a [u8], u32, &'a [u8])) -> Option<()> {
    let hdr = core::mem::size_of::<ElfNoteHeader>();
    while !bytes.is_empty() {
        let (h, _) = ElfNoteHeader::read_from_prefix(bytes).ok()?;
        let namesz = usize::try_from(h.n_namesz).ok()?;
        let descsz = usize::try_from(h.n_descsz).ok()?;
        // `elf_note_pad`, overflow-checked.
        let pad = |n: usize| n.checked_add(ELF_NOTE_ALIGN - 1).map(elf_note_pad_down);
        let name_end = hdr.checked_add(namesz)?;
        let desc_at = hdr.checked_add(pad(namesz)?)?;
        let desc_end = desc_at.checked_add(descsz)?;
        let next = desc_at.checked_add(pad(descsz)?)?;
        let name = bytes.get(hdr..name_end)?;
        let desc = bytes.get(desc_at..desc_end)?;
        f(name, h.n_type, desc);
        // The last note's padding may be missing.
        bytes = bytes.get(next..).unwrap_or(&[]);
    }
    Some(())
}

impl<'a> PhysElf<'a> {
    /// Parses and checks `image`.
    pub fn parse(image: &'a [u8]) -> Result<PhysElf<'a>, ElfImageError> {
        Self::parse_parts(
            ElfSource::Bytes(image),
            image,
            image.len() as u64,
            &|o, l| file_bytes(image, o, l),
        )
    }

    /// Parses and checks the ELF that the LZ4 legacy frame `frame` (a
    /// Linux bzImage's payload, [`super::bzimage::BzImage::payload`])
    /// unpacks to, without holding it: one pass keeps the first
    /// [`STREAM_HEAD`] bytes and the note segments' bytes; [`Self::load`]
    /// unpacks it again straight into the guest.
    pub fn parse_lz4(frame: &'a [u8]) -> Result<PhysElf<'a>, ElfImageError> {
        let mut head: Vec<u8> = Vec::new();
        // (file offset, bytes) of each note segment, once the program
        // headers are known.
        let mut notes: Option<Vec<(u64, Vec<u8>)>> = None;
        let mut sink = |at: u64, bytes: &[u8]| -> Result<(), ElfImageError> {
            if head.len() < STREAM_HEAD {
                let n = (STREAM_HEAD - head.len()).min(bytes.len());
                head.extend_from_slice(&bytes[..n]);
            }
            if notes.is_none() && head.len() == STREAM_HEAD {
                let (_, _, hs) = phdrs(&head)?;
                let mut v = Vec::new();
                let mut total = 0u64;
                for p in hs.iter().filter(|p| p.p_type == PT_NOTE) {
                    total = total.saturating_add(p.filesz);
                    if total > STREAM_NOTES_MAX {
                        return Err(ElfImageError::BadProgramHeaders);
                    }
                    v.push((p.offset, alloc::vec![0u8; p.filesz as usize]));
                }
                notes = Some(v);
            }
            // Copy each note segment's part of this piece (the pieces
            // before the head was complete are in the head).
            for (off, buf) in notes.iter_mut().flatten() {
                let (a, b) = (
                    at.max(*off),
                    (at + bytes.len() as u64).min(*off + buf.len() as u64),
                );
                if a < b {
                    buf[(a - *off) as usize..(b - *off) as usize]
                        .copy_from_slice(&bytes[(a - at) as usize..(b - at) as usize]);
                }
            }
            Ok(())
        };
        let len = super::bzimage::unlz4_legacy_stream(frame, &mut sink).map_err(|e| match e {
            super::bzimage::StreamError::Payload(p) => ElfImageError::Payload(p),
            super::bzimage::StreamError::Sink(e) => e,
        })?;
        let lookup = |o: u64, l: u64| -> Option<&[u8]> {
            if let Some(b) = file_bytes(&head, o, l) {
                return Some(b);
            }
            notes
                .iter()
                .flatten()
                .find(|(off, b)| *off == o && b.len() as u64 == l)
                .map(|(_, b)| &b[..])
        };
        Self::parse_parts(ElfSource::Lz4(frame), &head, len, &lookup)
    }

    /// Parses an ELF whose headers are in `head`, whose file is `file_len`
    /// bytes long and whose bytes `[offset, offset + len)` `bytes` gives
    /// (needed for the note segments only).
    fn parse_parts<'b>(
        source: ElfSource<'a>,
        head: &'b [u8],
        file_len: u64,
        bytes: &'b dyn Fn(u64, u64) -> Option<&'b [u8]>,
    ) -> Result<PhysElf<'a>, ElfImageError> {
        let (elf64, e_entry, headers) = phdrs(head)?;
        let mut segments = Vec::new();
        let mut phys32_entry = None;
        let mut xen_notes = 0;
        for (index, p) in headers.iter().enumerate() {
            match p.p_type {
                PT_LOAD if p.memsz > 0 => {
                    let ok = p
                        .offset
                        .checked_add(p.filesz)
                        .is_some_and(|e| e <= file_len)
                        && p.filesz <= p.memsz
                        && p.paddr.checked_add(p.memsz).is_some();
                    if !ok {
                        return Err(ElfImageError::BadSegment { index });
                    }
                    if segments.len() == MAX_SEGMENTS {
                        return Err(ElfImageError::TooManySegments);
                    }
                    segments.push(PhysSegment {
                        index,
                        offset: p.offset,
                        filesz: p.filesz,
                        memsz: p.memsz,
                        paddr: p.paddr,
                        vaddr: p.vaddr,
                    });
                }
                PT_NOTE => {
                    let bytes = p
                        .offset
                        .checked_add(p.filesz)
                        .filter(|&e| e <= file_len)
                        .and_then(|_| bytes(p.offset, p.filesz))
                        .ok_or(ElfImageError::BadNotes { index })?;
                    let mut bad = false;
                    walk_notes(bytes, |name, ty, desc| {
                        if name != XEN_ELFNOTE_NAME {
                            return;
                        }
                        xen_notes += 1;
                        if ty == ElfNote::Phys32Entry.raw() {
                            match desc.len() {
                                1 | 2 | 4 | 8 => {
                                    let mut b = [0u8; 8];
                                    b[..desc.len()].copy_from_slice(desc);
                                    phys32_entry = Some(u64::from_le_bytes(b));
                                }
                                _ => bad = true,
                            }
                        }
                    })
                    .ok_or(ElfImageError::BadNotes { index })?;
                    if bad {
                        return Err(ElfImageError::BadNotes { index });
                    }
                }
                _ => {}
            }
        }
        if segments.is_empty() {
            return Err(ElfImageError::NoSegments);
        }
        let mut sorted = segments.clone();
        sorted.sort_by_key(|s| s.paddr);
        for w in sorted.windows(2) {
            if w[1].paddr < w[0].paddr + w[0].memsz {
                return Err(ElfImageError::OverlappingSegments { index: w[1].index });
            }
        }
        Ok(PhysElf {
            source,
            elf64,
            e_entry,
            segments,
            phys32_entry,
            xen_notes,
        })
    }

    /// The loadable segments, in program header order.
    pub fn segments(&self) -> &[PhysSegment] {
        &self.segments
    }

    /// The physical ranges the segments occupy.
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        self.segments.iter().map(PhysSegment::range).collect()
    }

    /// `[lowest paddr, highest paddr + memsz)`.
    pub fn extent(&self) -> (u64, u64) {
        let lo = self.segments.iter().map(|s| s.paddr).min().unwrap_or(0);
        let hi = self
            .segments
            .iter()
            .map(|s| s.paddr + s.memsz)
            .max()
            .unwrap_or(0);
        (lo, hi)
    }

    /// `addr` lies in a segment's file-backed bytes (where code can be).
    pub fn is_loaded(&self, addr: u64) -> bool {
        self.segments
            .iter()
            .any(|s| addr >= s.paddr && addr < s.paddr + s.filesz)
    }

    /// The physical address of `entry`: itself if it lies in a segment's
    /// file bytes, else translated from a segment's linked (virtual)
    /// range into its physical one, as GRUB does for `e_entry`.
    pub fn entry_paddr(&self, entry: u64) -> Option<u64> {
        if self.is_loaded(entry) {
            return Some(entry);
        }
        self.segments
            .iter()
            .find(|s| entry >= s.vaddr && entry - s.vaddr < s.filesz)
            .map(|s| s.paddr + (entry - s.vaddr))
    }

    /// Checks every segment lies in the guest's RAM.
    pub fn check_ram(&self, map: &GuestMemoryMap) -> Result<(), PlacementError> {
        for s in &self.segments {
            let (a, b) = s.range();
            map.check_ram("kernel segment", a, b)?;
        }
        Ok(())
    }

    /// Copies every segment to guest memory and zeroes its tail.
    pub fn load(&self, mem: &mut dyn GuestMemory) -> Result<(), MemoryFault> {
        const ZEROS: [u8; 4096] = [0; 4096];
        match self.source {
            ElfSource::Bytes(image) => {
                for s in &self.segments {
                    // Checked by `parse`.
                    let bytes = file_bytes(image, s.offset, s.filesz).unwrap_or(&[]);
                    mem.write(s.paddr, bytes)?;
                }
            }
            ElfSource::Lz4(frame) => {
                let mut sink = |at: u64, bytes: &[u8]| -> Result<(), MemoryFault> {
                    let end = at + bytes.len() as u64;
                    for s in &self.segments {
                        let (a, b) = (at.max(s.offset), end.min(s.offset + s.filesz));
                        if a < b {
                            let piece = &bytes[(a - at) as usize..(b - at) as usize];
                            mem.write(s.paddr + (a - s.offset), piece)?;
                        }
                    }
                    Ok(())
                };
                super::bzimage::unlz4_legacy_stream(frame, &mut sink).map_err(|e| match e {
                    super::bzimage::StreamError::Sink(f) => f,
                    // `parse_lz4` unpacked this very frame: it cannot fail
                    // now, but if it did, the first segment is incomplete.
                    super::bzimage::StreamError::Payload(_) => MemoryFault {
                        gpa: self.segments.first().map_or(0, |s| s.paddr),
                    },
                })?;
            }
        }
        for s in &self.segments {
            let mut at = s.paddr + s.filesz;
            let end = s.paddr + s.memsz;
            while at < end {
                let n = (end - at).min(ZEROS.len() as u64);
                mem.write(at, &ZEROS[..n as usize])?;
                at += n;
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// The first vCPU
// ---------------------------------------------------------------------------

/// The mode the first vCPU starts in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryMode {
    /// 32-bit protected mode, paging off.
    Protected32,
    /// 64-bit long mode with paging (identity map at `cr3`).
    Long64,
}

/// Segment attributes (VMX access-rights layout: type, S, DPL, P, AVL,
/// L, D/B, G; Intel SDM vol. 3 §24.4.1; SVM packs the same bits
/// differently).
pub mod seg {
    /// 32-bit code, execute/read, accessed, present, 4 KiB granular.
    pub const CODE32: u32 = 0xc09b;
    /// 64-bit code (L=1, D=0).
    pub const CODE64: u32 = 0xa09b;
    /// 32-bit data, read/write, accessed.
    pub const DATA32: u32 = 0xc093;
    /// A busy 32-bit TSS, present.
    pub const TSS32_BUSY: u32 = 0x008b;
    /// Limit of a flat segment.
    pub const FLAT_LIMIT: u32 = 0xffff_ffff;
    /// Limit of a 32-bit TSS.
    pub const TSS_LIMIT: u32 = 0x67;
    /// Selector of the flat code segment (Linux's `__BOOT_CS`).
    pub const BOOT_CS: u16 = 0x10;
    /// Selector of the flat data segments (Linux's `__BOOT_DS`).
    pub const BOOT_DS: u16 = 0x18;
}

/// CR0.PE.
pub const CR0_PE: u64 = 1 << 0;
/// CR0.ET.
pub const CR0_ET: u64 = 1 << 4;
/// CR0.PG.
pub const CR0_PG: u64 = 1 << 31;
/// CR4.PAE.
pub const CR4_PAE: u64 = 1 << 5;
/// EFER.LME.
pub const EFER_LME: u64 = 1 << 8;
/// EFER.LMA.
pub const EFER_LMA: u64 = 1 << 10;
/// RFLAGS bit 1 (always set).
pub const RFLAGS_FIXED: u64 = 1 << 1;

/// The first vCPU's registers at a kernel's entry (what Xen's
/// `vcpu_hvm_context` carries for `VCPU_HVM_MODE_32B`/`64B`). Every
/// segment is flat (base 0, limit 4 GiB): `cs` with [`EntryState::cs_ar`],
/// `ds`/`es`/`ss` data ([`seg::DATA32`]), `tr` a busy 32-bit TSS at 0;
/// every register not named here is 0 and interrupts are off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryState {
    /// The mode.
    pub mode: EntryMode,
    /// Entry point.
    pub rip: u64,
    /// `eax`/`rax`.
    pub rax: u64,
    /// `ebx`/`rbx`.
    pub rbx: u64,
    /// `esi`/`rsi`.
    pub rsi: u64,
    /// `rflags`.
    pub rflags: u64,
    /// `cr0`.
    pub cr0: u64,
    /// `cr3` (page tables; 0 in 32-bit mode).
    pub cr3: u64,
    /// `cr4`.
    pub cr4: u64,
    /// EFER.
    pub efer: u64,
    /// `cs` selector.
    pub cs: u16,
    /// `ds`/`es`/`ss` selector.
    pub ds: u16,
    /// `cs` attributes ([`seg::CODE32`] or [`seg::CODE64`]).
    pub cs_ar: u32,
    /// GDTR base (0: none loaded; the segment registers' hidden parts
    /// are set directly).
    pub gdt_base: u64,
    /// GDTR limit.
    pub gdt_limit: u16,
}

impl EntryState {
    /// 32-bit protected mode, paging off, at `eip`.
    pub fn protected32(eip: u32) -> EntryState {
        EntryState {
            mode: EntryMode::Protected32,
            rip: u64::from(eip),
            rax: 0,
            rbx: 0,
            rsi: 0,
            rflags: RFLAGS_FIXED,
            cr0: CR0_PE | CR0_ET,
            cr3: 0,
            cr4: 0,
            efer: 0,
            cs: seg::BOOT_CS,
            ds: seg::BOOT_DS,
            cs_ar: seg::CODE32,
            gdt_base: 0,
            gdt_limit: 0,
        }
    }

    /// 64-bit mode at `rip` with page tables at `cr3`.
    pub fn long64(rip: u64, cr3: u64) -> EntryState {
        EntryState {
            mode: EntryMode::Long64,
            rip,
            cr0: CR0_PE | CR0_ET | CR0_PG,
            cr3,
            cr4: CR4_PAE,
            efer: EFER_LME | EFER_LMA,
            cs_ar: seg::CODE64,
            ..EntryState::protected32(0)
        }
    }
}

// ---------------------------------------------------------------------------
// PVH
// ---------------------------------------------------------------------------

/// Why a PVH guest cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PvhError {
    /// The kernel image.
    Elf(ElfImageError),
    /// No `XEN_ELFNOTE_PHYS32_ENTRY`: not a PVH kernel.
    NoPhys32Entry,
    /// The entry is not inside a loaded segment (or not below 4 GiB).
    EntryNotLoaded(u64),
    /// Placement in guest memory.
    Place(PlacementError),
    /// Command line longer than [`MAX_CMDLINE`] or containing a NUL.
    BadCmdline,
    /// The ramdisk's length differs from the plan's.
    RamdiskLength,
    /// Writing guest memory failed.
    Memory(MemoryFault),
}

impl fmt::Display for PvhError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Elf(e) => write!(f, "kernel image: {e}"),
            Self::NoPhys32Entry => f.write_str("no XEN_ELFNOTE_PHYS32_ENTRY: not a PVH kernel"),
            Self::EntryNotLoaded(a) => write!(f, "PVH entry {a:#x} is not in a loaded segment"),
            Self::Place(e) => write!(f, "{e}"),
            Self::BadCmdline => f.write_str("bad command line"),
            Self::RamdiskLength => f.write_str("ramdisk length differs from the plan"),
            Self::Memory(m) => write!(f, "guest memory at {:#x} unreachable", m.gpa),
        }
    }
}

impl From<ElfImageError> for PvhError {
    fn from(e: ElfImageError) -> Self {
        PvhError::Elf(e)
    }
}

impl From<PlacementError> for PvhError {
    fn from(e: PlacementError) -> Self {
        PvhError::Place(e)
    }
}

impl From<MemoryFault> for PvhError {
    fn from(e: MemoryFault) -> Self {
        PvhError::Memory(e)
    }
}

/// Checks a command line (no NUL inside, at most [`MAX_CMDLINE`] with its
/// NUL) and returns its length with the NUL.
pub fn cmdline_len(cmdline: &[u8], max: usize) -> Option<usize> {
    (!cmdline.contains(&0) && cmdline.len() < max).then_some(cmdline.len() + 1)
}

/// Where everything of a PVH guest goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PvhLayout {
    /// `XEN_ELFNOTE_PHYS32_ENTRY`.
    pub entry: u32,
    /// The boot data blob: `hvm_start_info`, then the module list, the
    /// memory map and the command line ([`start_info_blob`]).
    pub start_info: u64,
    /// Its length.
    pub blob_len: u64,
    /// `modlist_paddr` (0: no modules).
    pub modlist: u64,
    /// `memmap_paddr`.
    pub memmap: u64,
    /// `memmap_entries`.
    pub memmap_entries: u32,
    /// `cmdline_paddr` (0: none).
    pub cmdline: u64,
    /// The initrd `[start, end)`, page aligned, below 4 GiB.
    pub ramdisk: Option<(u64, u64)>,
    /// `rsdp_paddr` (0: none).
    pub rsdp: u64,
}

const START_INFO_LEN: u64 = core::mem::size_of::<HvmStartInfo>() as u64;
const MODLIST_ENTRY_LEN: u64 = core::mem::size_of::<HvmModlistEntry>() as u64;
const MEMMAP_ENTRY_LEN: u64 = core::mem::size_of::<HvmMemmapTableEntry>() as u64;

/// Plans a PVH guest: `elf` must have a `PHYS32_ENTRY` inside a loaded
/// segment and every segment in RAM; the boot data goes low (below
/// 640 KiB, clear of the kernel), the initrd as high below 4 GiB as RAM
/// allows (Xen keeps everything it hands a PVH guest below 4 GiB).
pub fn plan(
    elf: &PhysElf,
    map: &GuestMemoryMap,
    cmdline: &[u8],
    ramdisk_len: u64,
    acpi: Option<&AcpiTables>,
) -> Result<PvhLayout, PvhError> {
    let entry = elf.phys32_entry.ok_or(PvhError::NoPhys32Entry)?;
    let entry32 = u32::try_from(entry).map_err(|_| PvhError::EntryNotLoaded(entry))?;
    if !elf.is_loaded(entry) {
        return Err(PvhError::EntryNotLoaded(entry));
    }
    elf.check_ram(map)?;
    if let Some(a) = acpi {
        map.check_acpi(a)?;
    }
    let cmd_len = if cmdline.is_empty() {
        0
    } else {
        cmdline_len(cmdline, MAX_CMDLINE).ok_or(PvhError::BadCmdline)? as u64
    };
    let nr_modules = u64::from(ramdisk_len > 0);
    let nr_memmap = map.entries().len() as u64;
    let modlist_off = START_INFO_LEN;
    let memmap_off = modlist_off + nr_modules * MODLIST_ENTRY_LEN;
    let cmdline_off = memmap_off + nr_memmap * MEMMAP_ENTRY_LEN;
    let blob_len = cmdline_off + cmd_len;
    let mut avoid = elf.ranges();
    let start_info = map.place_boot_data("start info", blob_len, &avoid)?;
    avoid.push((start_info, start_info + blob_len));
    let ramdisk = if ramdisk_len > 0 {
        let len = align_up(ramdisk_len, PAGE).ok_or(PlacementError::NoRoom {
            what: "ramdisk",
            len: ramdisk_len,
        })?;
        let at = map.place_high("ramdisk", len, PAGE, HIGH_RAM_START, FOUR_GIB, &avoid)?;
        Some((at, at + ramdisk_len))
    } else {
        None
    };
    Ok(PvhLayout {
        entry: entry32,
        start_info,
        blob_len,
        modlist: if nr_modules > 0 {
            start_info + modlist_off
        } else {
            0
        },
        memmap: start_info + memmap_off,
        memmap_entries: nr_memmap as u32,
        cmdline: if cmd_len > 0 {
            start_info + cmdline_off
        } else {
            0
        },
        ramdisk,
        rsdp: acpi.map_or(0, AcpiTables::rsdp_paddr),
    })
}

/// The boot data blob to copy to `l.start_info`: `hvm_start_info`
/// (version 1), the module list, the memory map, the command line.
pub fn start_info_blob(l: &PvhLayout, map: &GuestMemoryMap, cmdline: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(l.blob_len as usize);
    let si = HvmStartInfo {
        magic: XEN_HVM_START_MAGIC_VALUE,
        version: XEN_HVM_START_INFO_VERSION,
        flags: 0,
        nr_modules: u32::from(l.ramdisk.is_some()),
        modlist_paddr: l.modlist,
        cmdline_paddr: l.cmdline,
        rsdp_paddr: l.rsdp,
        memmap_paddr: l.memmap,
        memmap_entries: l.memmap_entries,
        reserved: 0,
    };
    b.extend_from_slice(si.as_bytes());
    if let Some((s, e)) = l.ramdisk {
        let m = HvmModlistEntry {
            paddr: s,
            size: e - s,
            cmdline_paddr: 0,
            reserved: 0,
        };
        b.extend_from_slice(m.as_bytes());
    }
    for e in map.entries() {
        b.extend_from_slice(e.as_bytes());
    }
    if l.cmdline != 0 {
        b.extend_from_slice(cmdline);
        b.push(0);
    }
    b
}

/// The first vCPU at the PVH entry: `ebx` = `hvm_start_info`.
pub fn entry_state(l: &PvhLayout) -> EntryState {
    EntryState {
        rbx: l.start_info,
        ..EntryState::protected32(l.entry)
    }
}

/// Writes the whole guest: kernel segments, ACPI tables, boot data,
/// initrd; returns the first vCPU's state.
pub fn write(
    elf: &PhysElf,
    l: &PvhLayout,
    map: &GuestMemoryMap,
    cmdline: &[u8],
    ramdisk: &[u8],
    acpi: Option<&AcpiTables>,
    mem: &mut dyn GuestMemory,
) -> Result<EntryState, PvhError> {
    let rd_len = l.ramdisk.map_or(0, |(s, e)| e - s);
    if rd_len != ramdisk.len() as u64 {
        return Err(PvhError::RamdiskLength);
    }
    elf.load(mem)?;
    if let Some(a) = acpi {
        mem.write(a.base, &a.bytes)?;
    }
    mem.write(l.start_info, &start_info_blob(l, map, cmdline))?;
    if let Some((s, _)) = l.ramdisk {
        mem.write(s, ramdisk)?;
    }
    Ok(entry_state(l))
}

/// A tiny ELF writer for the builders' tests.
#[cfg(test)]
pub(crate) mod testelf {
    use std::vec;
    use std::vec::Vec;

    /// A program header to write: type, file bytes, paddr, memsz.
    pub struct Seg {
        pub p_type: u32,
        pub bytes: Vec<u8>,
        pub paddr: u64,
        pub vaddr: u64,
        pub memsz: u64,
    }

    impl Seg {
        pub fn load(paddr: u64, bytes: Vec<u8>, memsz: u64) -> Seg {
            Seg {
                p_type: 1,
                bytes,
                paddr,
                vaddr: paddr,
                memsz,
            }
        }

        pub fn note(bytes: Vec<u8>) -> Seg {
            Seg {
                p_type: 4,
                bytes,
                paddr: 0,
                vaddr: 0,
                memsz: 0,
            }
        }
    }

    /// A note's bytes (name "Xen").
    pub fn xen_note(ty: u32, desc: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&4u32.to_le_bytes());
        v.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        v.extend_from_slice(&ty.to_le_bytes());
        v.extend_from_slice(b"Xen\0");
        v.extend_from_slice(desc);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    /// An ET_EXEC image: headers, then each segment's bytes in order.
    pub fn build(elf64: bool, entry: u64, segs: &[Seg]) -> Vec<u8> {
        let (eh, ph) = if elf64 { (64, 56) } else { (52, 32) };
        // Segment data from a 16-byte boundary (a Multiboot2 header at
        // the start of the text must be 8-byte aligned in the file).
        let mut off = (eh + ph * segs.len()).next_multiple_of(16);
        let mut out = vec![0u8; off];
        out[..4].copy_from_slice(b"\x7fELF");
        out[4] = if elf64 { 2 } else { 1 };
        out[5] = 1;
        out[6] = 1;
        out[16..18].copy_from_slice(&2u16.to_le_bytes());
        let machine: u16 = if elf64 { 62 } else { 3 };
        out[18..20].copy_from_slice(&machine.to_le_bytes());
        out[20..24].copy_from_slice(&1u32.to_le_bytes());
        let put = |o: &mut Vec<u8>, at: usize, v: u64, w: usize| {
            o[at..at + w].copy_from_slice(&v.to_le_bytes()[..w]);
        };
        if elf64 {
            put(&mut out, 24, entry, 8);
            put(&mut out, 32, eh as u64, 8);
            put(&mut out, 52, eh as u64, 2);
            put(&mut out, 54, ph as u64, 2);
            put(&mut out, 56, segs.len() as u64, 2);
        } else {
            put(&mut out, 24, entry, 4);
            put(&mut out, 28, eh as u64, 4);
            put(&mut out, 40, eh as u64, 2);
            put(&mut out, 42, ph as u64, 2);
            put(&mut out, 44, segs.len() as u64, 2);
        }
        let mut data = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            let at = eh + i * ph;
            let filesz = s.bytes.len() as u64;
            if elf64 {
                put(&mut out, at, u64::from(s.p_type), 4);
                put(&mut out, at + 4, 7, 4);
                put(&mut out, at + 8, off as u64, 8);
                put(&mut out, at + 16, s.vaddr, 8);
                put(&mut out, at + 24, s.paddr, 8);
                put(&mut out, at + 32, filesz, 8);
                put(&mut out, at + 40, s.memsz, 8);
                put(&mut out, at + 48, 4, 8);
            } else {
                put(&mut out, at, u64::from(s.p_type), 4);
                put(&mut out, at + 4, off as u64, 4);
                put(&mut out, at + 8, s.vaddr, 4);
                put(&mut out, at + 12, s.paddr, 4);
                put(&mut out, at + 16, filesz, 4);
                put(&mut out, at + 20, s.memsz, 4);
                put(&mut out, at + 24, 7, 4);
                put(&mut out, at + 28, 4, 4);
            }
            data.extend_from_slice(&s.bytes);
            off += s.bytes.len();
        }
        out.extend_from_slice(&data);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::testelf::{build, xen_note, Seg};
    use super::*;
    use crate::builder::acpi::{self, AcpiConfig};
    use crate::devmodel::testmem::Sparse;
    use std::vec;

    const MIB: u64 = 1 << 20;
    const KBASE: u64 = 16 * MIB;

    fn note_seg(bytes: Vec<u8>) -> Seg {
        Seg::note(bytes)
    }

    /// A PVH kernel: text at 16 MiB with the entry 0x40 into it, a bss,
    /// and the PHYS32_ENTRY note.
    fn pvh_kernel(elf64: bool, entry: u64) -> Vec<u8> {
        build(
            elf64,
            0xffff_ffff_8100_0000,
            &[
                Seg::load(KBASE, vec![0xf4; 0x1000], 0x3000),
                note_seg(
                    [
                        xen_note(6, b"linux\0"),
                        xen_note(18, &(entry as u32).to_le_bytes()),
                    ]
                    .concat(),
                ),
            ],
        )
    }

    /// `data` as an LZ4 legacy frame of literal-only blocks of `block`
    /// bytes, with the size trailer.
    fn lz4_literals(data: &[u8], block: usize) -> Vec<u8> {
        let mut f = super::super::bzimage::LZ4_LEGACY_MAGIC
            .to_le_bytes()
            .to_vec();
        for chunk in data.chunks(block) {
            let mut b = vec![0xf0];
            let mut n = chunk.len() - 15;
            while n >= 255 {
                b.push(255);
                n -= 255;
            }
            b.push(n as u8);
            b.extend_from_slice(chunk);
            f.extend_from_slice(&(b.len() as u32).to_le_bytes());
            f.extend_from_slice(&b);
        }
        f.extend_from_slice(&(data.len() as u32).to_le_bytes());
        f
    }

    #[test]
    fn a_compressed_elf_parses_and_loads_as_the_same_elf_does() {
        // 200 KiB of text first, so the note segment lies past the head
        // kept from the stream.
        let text: Vec<u8> = (0..200 << 10)
            .map(|i: u32| (i * 7 + i / 251) as u8)
            .collect();
        let img = build(
            true,
            0xffff_ffff_8100_0000,
            &[
                Seg::load(KBASE, text, 0x40000),
                Seg::load(KBASE + 0x40000, vec![0x5a; 0x3000], 0x5000),
                note_seg(xen_note(18, &((KBASE + 0x40) as u32).to_le_bytes())),
            ],
        );
        let plain = PhysElf::parse(&img).unwrap();
        let frame = lz4_literals(&img, 50_000);
        let packed = PhysElf::parse_lz4(&frame).unwrap();
        assert_eq!(packed.phys32_entry, Some(KBASE + 0x40));
        assert_eq!(packed.segments(), plain.segments());
        assert_eq!((packed.elf64, packed.e_entry), (plain.elf64, plain.e_entry));
        let (mut a, mut b) = (Sparse::new(64 * MIB), Sparse::new(64 * MIB));
        plain.load(&mut a).unwrap();
        packed.load(&mut b).unwrap();
        for (at, len) in [(KBASE, 0x40000), (KBASE + 0x40000, 0x5000)] {
            assert!(a.get(at, len) == b.get(at, len), "segment at {at:#x}");
        }
        assert_eq!(b.get(KBASE + 0x40000 + 0x2ffe, 4), [0x5a, 0x5a, 0, 0]);
        // A stream cut short (in its trailer, or a block running off the
        // end): refused, nothing parsed.
        for cut in [frame.len() - 5, frame.len() - 100, 60_000] {
            assert!(matches!(
                PhysElf::parse_lz4(&frame[..cut]),
                Err(ElfImageError::Payload(_))
            ));
        }
        // A segment past the end of what the frame unpacks to.
        let short = lz4_literals(&img[..img.len() - 16], 50_000);
        assert!(PhysElf::parse_lz4(&short).is_err());
        // Not LZ4.
        assert_eq!(
            PhysElf::parse_lz4(&img).unwrap_err(),
            ElfImageError::Payload(PayloadError::Unsupported(
                super::super::bzimage::Compression::Unknown
            ))
        );
    }

    fn acpi_tables() -> AcpiTables {
        acpi::build(&AcpiConfig::pvh(2, ACPI_BASE)).unwrap()
    }

    #[test]
    fn memory_map_small_and_large() {
        let m = GuestMemoryMap::new(256 * MIB).unwrap();
        let e: Vec<_> = m
            .entries()
            .iter()
            .map(|e| (e.addr, e.size, e.r#type))
            .collect();
        assert_eq!(
            e,
            vec![(0, 0xa0000, 1), (0xe0000, 0x20000, 2), (MIB, 255 * MIB, 1)]
        );
        assert_eq!(m.populated(), vec![(0, 256 * MIB / PAGE)]);
        let big = GuestMemoryMap::new(5 << 30).unwrap();
        let last = big.entries().last().unwrap();
        assert_eq!(
            (last.addr, last.size),
            (FOUR_GIB, (5 << 30) - BELOW_4G_RAM_END)
        );
        assert_eq!(
            big.populated()[1],
            (FOUR_GIB / PAGE, ((5 << 30) - BELOW_4G_RAM_END) / PAGE)
        );
        let pages: u64 = big.populated().iter().map(|p| p.1).sum();
        assert_eq!(pages * PAGE, 5 << 30);
        for bad in [0, MIN_RAM - PAGE, 256 * MIB + 1, MAX_RAM + PAGE] {
            assert_eq!(GuestMemoryMap::new(bad), Err(PlacementError::RamSize(bad)));
        }
    }

    #[test]
    fn place_high_avoids_and_aligns() {
        let m = GuestMemoryMap::new(64 * MIB).unwrap();
        let top = m.place_high("x", 0x1800, PAGE, 0, FOUR_GIB, &[]).unwrap();
        assert_eq!(top, 64 * MIB - 0x2000);
        let a = m
            .place_high("x", MIB, PAGE, 0, FOUR_GIB, &[(60 * MIB, 64 * MIB)])
            .unwrap();
        assert_eq!(a, 59 * MIB);
        // Below a limit.
        let a = m.place_high("x", MIB, 2 * MIB, 0, 9 * MIB, &[]).unwrap();
        assert_eq!(a, 8 * MIB);
        // Too big.
        assert!(m.place_high("x", 64 * MIB, PAGE, 0, FOUR_GIB, &[]).is_err());
        assert!(m.place_high("x", 0, PAGE, 0, FOUR_GIB, &[]).is_err());
        // Boot data skips what it must avoid.
        let b = m.place_boot_data("b", 0x100, &[(0x1000, 0x1800)]).unwrap();
        assert_eq!(b, 0x2000);
        assert!(m.place_boot_data("b", LOW_RAM_END, &[]).is_err());
        assert!(m.place_boot_data("b", u64::MAX, &[]).is_err());
    }

    #[test]
    fn parses_elf64_and_elf32_notes() {
        for elf64 in [true, false] {
            let img = pvh_kernel(elf64, KBASE + 0x40);
            let e = PhysElf::parse(&img).unwrap();
            assert_eq!(e.elf64, elf64);
            assert_eq!(e.phys32_entry, Some(KBASE + 0x40));
            assert_eq!(e.xen_notes, 2);
            assert_eq!(e.segments().len(), 1);
            assert_eq!(e.extent(), (KBASE, KBASE + 0x3000));
        }
    }

    #[test]
    fn pvh_plan_and_start_info() {
        let img = pvh_kernel(true, KBASE + 0x40);
        let elf = PhysElf::parse(&img).unwrap();
        let map = GuestMemoryMap::new(128 * MIB).unwrap();
        let acpi = acpi_tables();
        let l = plan(&elf, &map, b"console=hvc0", 0x12345, Some(&acpi)).unwrap();
        assert_eq!(l.entry, (KBASE + 0x40) as u32);
        assert_eq!(l.start_info, BOOT_DATA_BASE);
        assert_eq!(l.rsdp, ACPI_BASE);
        let (rs, re) = l.ramdisk.unwrap();
        assert_eq!(re - rs, 0x12345);
        assert_eq!(rs % PAGE, 0);
        assert_eq!(rs, 128 * MIB - 0x13000, "as high as RAM allows");

        let mut mem = Sparse::new(128 * MIB);
        let rd = vec![0x5a; 0x12345];
        let st = write(&elf, &l, &map, b"console=hvc0", &rd, Some(&acpi), &mut mem).unwrap();
        assert_eq!(st.mode, EntryMode::Protected32);
        assert_eq!(st.rip, KBASE + 0x40);
        assert_eq!(st.rbx, l.start_info);
        assert_eq!(st.cr0, CR0_PE | CR0_ET);
        assert_eq!((st.cr4, st.efer, st.cr3), (0, 0, 0));
        assert_eq!(st.rflags & (1 << 9), 0, "IF clear");

        // hvm_start_info as the guest reads it.
        let raw = mem.get(l.start_info, START_INFO_LEN as usize);
        let si = HvmStartInfo::read_from_bytes(&raw).unwrap();
        assert_eq!(si.magic, 0x336e_c578);
        assert_eq!(si.version, 1);
        assert_eq!(si.nr_modules, 1);
        assert_eq!(si.rsdp_paddr, acpi.rsdp_paddr());
        assert_eq!(mem.get(si.rsdp_paddr, 8), b"RSD PTR ");
        let cmd = mem.get(si.cmdline_paddr, 13);
        assert_eq!(cmd, b"console=hvc0\0");
        let m = HvmModlistEntry::read_from_bytes(&mem.get(si.modlist_paddr, 32)).unwrap();
        assert_eq!((m.paddr, m.size, m.cmdline_paddr), (rs, 0x12345, 0));
        assert_eq!(mem.get(m.paddr + 0x12344, 2), vec![0x5a, 0]);
        assert_eq!(si.memmap_entries, 3);
        for i in 0..3 {
            let e = HvmMemmapTableEntry::read_from_bytes(
                &mem.get(si.memmap_paddr + i * MEMMAP_ENTRY_LEN, 24),
            )
            .unwrap();
            assert_eq!(e, map.entries()[i as usize]);
        }
        // Kernel bytes and zeroed bss.
        assert_eq!(mem.get(KBASE, 2), vec![0xf4, 0xf4]);
        assert_eq!(mem.get(KBASE + 0x1000, 2), vec![0, 0]);
    }

    #[test]
    fn pvh_without_cmdline_ramdisk_or_acpi_leaves_zeros() {
        let img = pvh_kernel(false, KBASE);
        let elf = PhysElf::parse(&img).unwrap();
        let map = GuestMemoryMap::new(32 * MIB).unwrap();
        let l = plan(&elf, &map, b"", 0, None).unwrap();
        assert_eq!((l.cmdline, l.modlist, l.rsdp), (0, 0, 0));
        let blob = start_info_blob(&l, &map, b"");
        assert_eq!(blob.len() as u64, l.blob_len);
        let si = HvmStartInfo::read_from_prefix(&blob).unwrap().0;
        assert_eq!(si.nr_modules, 0);
        assert_eq!(si.cmdline_paddr, 0);
        let mut mem = Sparse::new(32 * MIB);
        assert_eq!(
            write(&elf, &l, &map, b"", b"x", None, &mut mem),
            Err(PvhError::RamdiskLength)
        );
    }

    #[test]
    fn missing_note_is_refused() {
        let img = build(true, KBASE, &[Seg::load(KBASE, vec![0x90; 16], 16)]);
        let elf = PhysElf::parse(&img).unwrap();
        let map = GuestMemoryMap::new(32 * MIB).unwrap();
        assert_eq!(plan(&elf, &map, b"", 0, None), Err(PvhError::NoPhys32Entry));
        // Other Xen notes are not enough.
        let img = build(
            true,
            KBASE,
            &[
                Seg::load(KBASE, vec![0x90; 16], 16),
                note_seg(xen_note(1, &KBASE.to_le_bytes())),
            ],
        );
        let elf = PhysElf::parse(&img).unwrap();
        assert_eq!(plan(&elf, &map, b"", 0, None), Err(PvhError::NoPhys32Entry));
    }

    #[test]
    fn entry_outside_loaded_bytes_is_refused() {
        let map = GuestMemoryMap::new(64 * MIB).unwrap();
        // In the bss (memsz, not filesz), past the end, and below.
        for entry in [KBASE + 0x1000, KBASE + 0x3000, KBASE - 1] {
            let img = pvh_kernel(true, entry);
            let elf = PhysElf::parse(&img).unwrap();
            assert_eq!(
                plan(&elf, &map, b"", 0, None),
                Err(PvhError::EntryNotLoaded(entry))
            );
        }
    }

    #[test]
    fn bad_note_segments_are_refused() {
        // A note whose descriptor runs past the segment.
        let mut n = xen_note(18, &0u32.to_le_bytes());
        n[4] = 200;
        let img = build(
            true,
            KBASE,
            &[Seg::load(KBASE, vec![0; 16], 16), note_seg(n)],
        );
        assert_eq!(
            PhysElf::parse(&img).unwrap_err(),
            ElfImageError::BadNotes { index: 1 }
        );
        // PHYS32_ENTRY of size 3.
        let img = build(
            true,
            KBASE,
            &[
                Seg::load(KBASE, vec![0; 16], 16),
                note_seg(xen_note(18, &[1, 2, 3])),
            ],
        );
        assert_eq!(
            PhysElf::parse(&img).unwrap_err(),
            ElfImageError::BadNotes { index: 1 }
        );
        // A note header cut short.
        let img = build(
            true,
            KBASE,
            &[Seg::load(KBASE, vec![0; 16], 16), note_seg(vec![4, 0, 0])],
        );
        assert_eq!(
            PhysElf::parse(&img).unwrap_err(),
            ElfImageError::BadNotes { index: 1 }
        );
        // Notes named otherwise are skipped.
        let mut gnu = xen_note(18, &KBASE.to_le_bytes());
        gnu[12..16].copy_from_slice(b"GNU\0");
        let img = build(
            true,
            KBASE,
            &[Seg::load(KBASE, vec![0; 16], 16), note_seg(gnu)],
        );
        let e = PhysElf::parse(&img).unwrap();
        assert_eq!((e.phys32_entry, e.xen_notes), (None, 0));
    }

    #[test]
    fn overlapping_segments_are_refused() {
        let img = build(
            false,
            KBASE,
            &[
                Seg::load(KBASE, vec![0; 16], 0x2000),
                Seg::load(KBASE + 0x1fff, vec![0; 16], 16),
            ],
        );
        assert_eq!(
            PhysElf::parse(&img).unwrap_err(),
            ElfImageError::OverlappingSegments { index: 1 }
        );
        // Adjacent is fine.
        let img = build(
            false,
            KBASE,
            &[
                Seg::load(KBASE + 0x2000, vec![0; 16], 16),
                Seg::load(KBASE, vec![0; 16], 0x2000),
            ],
        );
        assert!(PhysElf::parse(&img).is_ok());
    }

    #[test]
    fn segments_beyond_ram_or_in_holes_are_refused() {
        let map = GuestMemoryMap::new(32 * MIB).unwrap();
        for (at, len) in [
            (32 * MIB - 0x1000, 0x2000), // runs past the end of RAM
            (64 * MIB, 0x1000),          // wholly beyond
            (0xb_8000, 0x1000),          // the VGA hole
            (0x9_f000, 0x2000),          // straddles 640 KiB
        ] {
            let img = build(
                true,
                at,
                &[
                    Seg::load(at, vec![0; 16], len),
                    note_seg(xen_note(18, &(at as u32).to_le_bytes())),
                ],
            );
            let elf = PhysElf::parse(&img).unwrap();
            assert!(
                matches!(
                    plan(&elf, &map, b"", 0, None),
                    Err(PvhError::Place(PlacementError::OutsideRam { .. }))
                ),
                "{at:#x}"
            );
        }
    }

    #[test]
    fn kernel_in_low_memory_pushes_boot_data_up() {
        let img = build(
            true,
            0x1000,
            &[
                Seg::load(0x1000, vec![0x90; 0x100], 0x2000),
                note_seg(xen_note(18, &0x1000u32.to_le_bytes())),
            ],
        );
        let elf = PhysElf::parse(&img).unwrap();
        let map = GuestMemoryMap::new(32 * MIB).unwrap();
        let l = plan(&elf, &map, b"x", 0, None).unwrap();
        assert_eq!(l.start_info, 0x3000);
    }

    #[test]
    fn ramdisk_too_big_and_bad_cmdline() {
        let img = pvh_kernel(true, KBASE);
        let elf = PhysElf::parse(&img).unwrap();
        let map = GuestMemoryMap::new(32 * MIB).unwrap();
        assert!(matches!(
            plan(&elf, &map, b"", 31 * MIB, None),
            Err(PvhError::Place(PlacementError::NoRoom {
                what: "ramdisk",
                ..
            }))
        ));
        assert!(matches!(
            plan(&elf, &map, b"", u64::MAX, None),
            Err(PvhError::Place(PlacementError::NoRoom { .. }))
        ));
        assert_eq!(
            plan(&elf, &map, b"a\0b", 0, None),
            Err(PvhError::BadCmdline)
        );
        let long = vec![b'a'; MAX_CMDLINE];
        assert_eq!(plan(&elf, &map, &long, 0, None), Err(PvhError::BadCmdline));
        // ACPI tables elsewhere than the BIOS area.
        let acpi = acpi::build(&AcpiConfig::pvh(1, 0x10_0000)).unwrap();
        assert!(matches!(
            plan(&elf, &map, b"", 0, Some(&acpi)),
            Err(PvhError::Place(PlacementError::Acpi { .. }))
        ));
    }

    #[test]
    fn malformed_elf_images() {
        let good = pvh_kernel(true, KBASE);
        assert_eq!(PhysElf::parse(&[]).unwrap_err(), ElfImageError::NotElf);
        assert_eq!(
            PhysElf::parse(&good[..40]).unwrap_err(),
            ElfImageError::NotElf
        );
        let mut b = good.clone();
        b[0] = 0;
        assert_eq!(PhysElf::parse(&b).unwrap_err(), ElfImageError::NotElf);
        let mut b = good.clone();
        b[5] = 2; // big endian
        assert_eq!(PhysElf::parse(&b).unwrap_err(), ElfImageError::BadIdent);
        let mut b = good.clone();
        b[4] = 3;
        assert_eq!(PhysElf::parse(&b).unwrap_err(), ElfImageError::BadIdent);
        let mut b = good.clone();
        b[18] = 3; // EM_386 in an ELF64
        assert_eq!(
            PhysElf::parse(&b).unwrap_err(),
            ElfImageError::BadMachine(3)
        );
        let mut b = good.clone();
        b[16] = 3; // ET_DYN
        assert_eq!(
            PhysElf::parse(&b).unwrap_err(),
            ElfImageError::NotExecutable(3)
        );
        let mut b = good.clone();
        b[54] = 32; // wrong phentsize
        assert_eq!(
            PhysElf::parse(&b).unwrap_err(),
            ElfImageError::BadProgramHeaders
        );
        let mut b = good.clone();
        b[32..40].copy_from_slice(&u64::MAX.to_le_bytes()); // phoff
        assert_eq!(
            PhysElf::parse(&b).unwrap_err(),
            ElfImageError::BadProgramHeaders
        );
        // Truncated: the segment's bytes are gone.
        assert_eq!(
            PhysElf::parse(&good[..good.len() - 4]).unwrap_err(),
            ElfImageError::BadNotes { index: 1 }
        );
        let seg_only = build(true, KBASE, &[Seg::load(KBASE, vec![1; 0x100], 0x100)]);
        assert_eq!(
            PhysElf::parse(&seg_only[..seg_only.len() - 1]).unwrap_err(),
            ElfImageError::BadSegment { index: 0 }
        );
        // filesz > memsz.
        let b = build(true, KBASE, &[Seg::load(KBASE, vec![1; 0x100], 0x10)]);
        assert_eq!(
            PhysElf::parse(&b).unwrap_err(),
            ElfImageError::BadSegment { index: 0 }
        );
        // paddr + memsz wraps.
        let b = build(true, KBASE, &[Seg::load(u64::MAX - 4, vec![1; 8], 8)]);
        assert_eq!(
            PhysElf::parse(&b).unwrap_err(),
            ElfImageError::BadSegment { index: 0 }
        );
        // No loadable segment.
        let b = build(true, KBASE, &[note_seg(xen_note(18, &[0; 4]))]);
        assert_eq!(PhysElf::parse(&b).unwrap_err(), ElfImageError::NoSegments);
        // Too many.
        let segs: Vec<Seg> = (0..17)
            .map(|i| Seg::load(KBASE + i * 0x1000, vec![0; 4], 4))
            .collect();
        assert_eq!(
            PhysElf::parse(&build(true, KBASE, &segs)).unwrap_err(),
            ElfImageError::TooManySegments
        );
        // Every truncation of a good image is an error or a smaller image,
        // never a panic.
        for n in 0..good.len() {
            let _ = PhysElf::parse(&good[..n]);
        }
    }

    /// A real PVH kernel (an uncompressed `vmlinux`) named by
    /// `OXEN_TEST_VMLINUX`, if any (skipped otherwise).
    #[test]
    fn real_vmlinux_if_given() {
        let Some(p) = std::env::var_os("OXEN_TEST_VMLINUX") else {
            std::eprintln!("OXEN_TEST_VMLINUX unset: skipped");
            return;
        };
        let img = std::fs::read(p).unwrap();
        let elf = PhysElf::parse(&img).unwrap();
        let entry = elf.phys32_entry.expect("PHYS32_ENTRY");
        assert!(elf.is_loaded(entry));
        let map = GuestMemoryMap::new(512 * MIB).unwrap();
        let acpi = acpi_tables();
        let l = plan(&elf, &map, b"console=hvc0", 8 * MIB, Some(&acpi)).unwrap();
        assert_eq!(u64::from(l.entry), entry);
        std::eprintln!("vmlinux: entry {entry:#x}, segments {:x?}", elf.ranges());
    }

    /// Corrupted images are refused or planned, never a panic.
    #[test]
    fn mutated_images_never_panic() {
        let map = GuestMemoryMap::new(64 * MIB).unwrap();
        let mut rng = crate::devmodel::testmem::Rng(7);
        for elf64 in [true, false] {
            let good = pvh_kernel(elf64, KBASE + 0x40);
            for _ in 0..3000 {
                let img = rng.mutate(&good, 0x100);
                if let Ok(elf) = PhysElf::parse(&img) {
                    let _ = plan(&elf, &map, b"x", 0x1000, None);
                }
            }
        }
    }

    #[test]
    fn acpi_tables_fit_the_bios_area_for_every_vcpu_count() {
        let map = GuestMemoryMap::new(32 * MIB).unwrap();
        for v in [1, 2, 64, acpi::MAX_VCPUS] {
            let t = acpi::build(&AcpiConfig::hvm(v, ACPI_BASE)).unwrap();
            map.check_acpi(&t).unwrap();
        }
    }
}
