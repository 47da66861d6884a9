//! What the boot loader told us, from either boot protocol, in one [`BootInfo`]:
//! command line location, memory map, modules, RSDP, loader name. Owns the
//! parsers for PVH `hvm_start_info`, Multiboot2 and the Oxen module bundle;
//! trusts nothing it reads through [`PhysRead`] (sizes and counts are bounded).
//!
//! PVH (Xen's `xen/include/public/arch-x86/hvm/start_info.h`): `ebx` holds the
//! physical address of `hvm_start_info` (magic 0x336ec578). Version 0 has no
//! memory map ([`BootInfo::memory_map`] is `None`: the glue must find one
//! elsewhere); version 1 adds `memmap_paddr`/`memmap_entries`.
//!
//! Multiboot2 (the Multiboot2 specification, §3.6): `eax` = 0x36d76289, `ebx`
//! = physical address of the 8-byte-aligned information structure: `u32
//! total_size, u32 reserved`, then tags `{u32 type, u32 size, ...}` each
//! starting 8-byte aligned, ending with an end tag (type 0, size 8). We read
//! tags 1 (cmdline), 2 (boot loader name), 3 (module), 4 (basic meminfo), 6
//! (mmap), 14/15 (ACPI old/new RSDP copy) and skip the others.
//!
//! Oxen module bundle (QEMU's PVH boot passes one initrd only, so the test
//! harness packs several modules into it). All integers little endian:
//!
//! ```text
//! offset  size        field
//! 0       8           magic b"OXENMODS"
//! 8       4           count: number of modules (1..=MAX_MODULES)
//! 12      4           reserved, 0
//! 16      64 * count  entries, entry i at 16 + 64*i:
//!                       +0  u64 offset of the payload from the bundle start,
//!                           a multiple of 4096, at or after 16 + 64*count
//!                       +8  u64 length of the payload in bytes
//!                       +16 [u8; 48] command line, NUL-padded (48 bytes
//!                           without a NUL is a 48-byte command line)
//! ...                 payloads, each within the bundle, none overlapping
//! ```
//!
//! If the first module starts with the magic, [`BootInfo::expand_bundle`]
//! replaces it by the modules inside, in entry order.

use core::fmt;

use hypercall_abi::hvm::{
    HvmMemmapTableEntry, HvmModlistEntry, HvmStartInfo, XEN_HVM_START_MAGIC_VALUE,
};
use zerocopy::{FromBytes, FromZeros, IntoBytes};

use crate::mm::memmap::{MemRange, RawEntry};

/// Largest number of boot modules kept.
pub const MAX_MODULES: usize = 16;
/// Largest number of memory map entries kept.
pub const MAX_MEMMAP_ENTRIES: usize = 128;
/// Longest NUL-terminated string (command line) accepted, without the NUL.
pub const MAX_STRING_LEN: u64 = 4096;
/// Largest Multiboot2 information structure accepted (GRUB's are a few KiB).
pub const MAX_MB2_INFO_SIZE: u32 = 1 << 20;
/// Multiboot2 boot loader magic, in `eax` at entry.
pub const MULTIBOOT2_BOOTLOADER_MAGIC: u32 = 0x36d7_6289;
/// First bytes of an Oxen module bundle.
pub const BUNDLE_MAGIC: &[u8; 8] = b"OXENMODS";
/// Size of the bundle header before the entries.
pub const BUNDLE_HEADER_SIZE: u64 = 16;
/// Size of one bundle entry.
pub const BUNDLE_ENTRY_SIZE: u64 = 64;
/// Size of a bundle entry's command line field.
pub const BUNDLE_CMDLINE_SIZE: usize = 48;

const MB2_TAG_END: u32 = 0;
const MB2_TAG_CMDLINE: u32 = 1;
const MB2_TAG_BOOT_LOADER_NAME: u32 = 2;
const MB2_TAG_MODULE: u32 = 3;
const MB2_TAG_BASIC_MEMINFO: u32 = 4;
const MB2_TAG_MMAP: u32 = 6;
const MB2_TAG_ACPI_OLD: u32 = 14;
const MB2_TAG_ACPI_NEW: u32 = 15;
const MB2_TAG_HEADER: u64 = 8;
const MB2_MMAP_ENTRY_MIN: u32 = 24;
const RSDP_V1_LEN: u32 = 20;
const RSDP_V2_LEN: u32 = 36;
/// `hvm_start_info` fields present in version 0 (up to `rsdp_paddr`).
const HVM_START_INFO_V0_SIZE: usize = 40;

/// Reads physical memory for the parsers. The glue implements it over
/// identity-mapped low memory; tests over a byte vector.
pub trait PhysRead {
    /// Fill `buf` from physical address `paddr`; fail if any byte is unreadable.
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), PhysReadError>;
}

/// Physical memory that could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhysReadError {
    /// Start of the failed read.
    pub paddr: u64,
    /// Its length.
    pub len: usize,
}

impl fmt::Display for PhysReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot read {} bytes at {:#x}", self.len, self.paddr)
    }
}

/// A byte string in physical memory (without its NUL terminator).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PhysSlice {
    /// Physical address of the first byte.
    pub paddr: u64,
    /// Length in bytes.
    pub len: u64,
}

impl PhysSlice {
    /// Copy the bytes into `buf` (truncating to its size); returns the filled part.
    pub fn read_into<'b, R: PhysRead + ?Sized>(
        &self,
        r: &R,
        buf: &'b mut [u8],
    ) -> Result<&'b [u8], PhysReadError> {
        let n = usize::try_from(self.len).unwrap_or(usize::MAX).min(buf.len());
        let out = &mut buf[..n];
        r.read(self.paddr, out)?;
        Ok(out)
    }

    /// The bytes as a range, for reserving them.
    pub fn range(&self) -> MemRange {
        MemRange::new(self.paddr, self.paddr.saturating_add(self.len))
    }
}

/// One boot module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct BootModule {
    /// Physical start.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
    /// Its command line, if it has a non-empty one.
    pub cmdline: Option<PhysSlice>,
}

impl BootModule {
    /// The module's bytes as a range.
    pub fn range(&self) -> MemRange {
        MemRange::new(self.start, self.start.saturating_add(self.len))
    }
}

/// Which boot protocol started us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootProtocol {
    /// Xen PVH, with the `hvm_start_info` version.
    Pvh {
        /// `hvm_start_info.version`.
        version: u32,
    },
    /// Multiboot2.
    Multiboot2,
}

/// Multiboot2 basic memory information, in KiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BasicMemInfo {
    /// Memory below 1 MiB.
    pub lower_kib: u32,
    /// Memory from 1 MiB to the first hole.
    pub upper_kib: u32,
}

/// Why the boot information could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootInfoError {
    /// A read failed.
    Read(PhysReadError),
    /// `hvm_start_info.magic` is wrong.
    BadPvhMagic(u32),
    /// `eax` did not hold the Multiboot2 magic.
    BadMultiboot2Magic(u32),
    /// The Multiboot2 information is not 8-byte aligned.
    MisalignedInfo(u64),
    /// Multiboot2 `total_size` too small or too large.
    BadTotalSize(u32),
    /// A Multiboot2 tag whose size is too small for its type or runs past
    /// `total_size`; `offset` is from the start of the information.
    BadTag {
        /// Tag offset.
        offset: u32,
        /// Tag type.
        tag: u32,
        /// Tag size.
        size: u32,
    },
    /// No end tag before `total_size`.
    MissingEndTag,
    /// A Multiboot2 module ends before it starts.
    BadModuleRange {
        /// `mod_start`.
        start: u32,
        /// `mod_end`.
        end: u32,
    },
    /// A Multiboot2 mmap `entry_size` below 24 or not a multiple of 8.
    BadMmapEntrySize(u32),
    /// PVH: modules announced but no module list address.
    MissingModlist,
    /// A string with no NUL within [`MAX_STRING_LEN`] bytes (or its tag).
    UnterminatedString {
        /// Where the string starts.
        paddr: u64,
    },
    /// An address plus a length wraps around 2^64.
    AddressOverflow {
        /// Start.
        paddr: u64,
    },
}

impl From<PhysReadError> for BootInfoError {
    fn from(e: PhysReadError) -> Self {
        BootInfoError::Read(e)
    }
}

impl fmt::Display for BootInfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Read(e) => write!(f, "{e}"),
            Self::BadPvhMagic(m) => write!(f, "bad hvm_start_info magic {m:#x}"),
            Self::BadMultiboot2Magic(m) => write!(f, "bad Multiboot2 magic {m:#x}"),
            Self::MisalignedInfo(p) => write!(f, "Multiboot2 info at {p:#x} not 8-byte aligned"),
            Self::BadTotalSize(s) => write!(f, "bad Multiboot2 total_size {s:#x}"),
            Self::BadTag { offset, tag, size } => {
                write!(f, "bad Multiboot2 tag {tag} at offset {offset:#x} size {size:#x}")
            }
            Self::MissingEndTag => write!(f, "Multiboot2 info has no end tag"),
            Self::BadModuleRange { start, end } => {
                write!(f, "Multiboot2 module ends ({end:#x}) before it starts ({start:#x})")
            }
            Self::BadMmapEntrySize(s) => write!(f, "bad Multiboot2 mmap entry size {s}"),
            Self::MissingModlist => write!(f, "PVH modules announced without a module list"),
            Self::UnterminatedString { paddr } => write!(f, "unterminated string at {paddr:#x}"),
            Self::AddressOverflow { paddr } => write!(f, "address range at {paddr:#x} wraps"),
        }
    }
}

/// Why a module bundle was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BundleError {
    /// A read failed.
    Read(PhysReadError),
    /// `count` is 0.
    Empty,
    /// `count` exceeds [`MAX_MODULES`] (or what is left of the module list).
    TooManyModules(u32),
    /// The reserved header field is not 0.
    BadReserved(u32),
    /// The header or entry table runs past the end of the bundle.
    Truncated,
    /// A payload offset is not 4 KiB aligned or points into the entry table.
    BadOffset {
        /// Entry index.
        index: usize,
        /// Its offset.
        offset: u64,
    },
    /// A payload runs past the end of the bundle.
    OutsideBundle {
        /// Entry index.
        index: usize,
    },
    /// Two payloads overlap.
    Overlap {
        /// First entry index.
        first: usize,
        /// Second entry index.
        second: usize,
    },
}

impl From<PhysReadError> for BundleError {
    fn from(e: PhysReadError) -> Self {
        BundleError::Read(e)
    }
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Read(e) => write!(f, "{e}"),
            Self::Empty => write!(f, "module bundle holds no module"),
            Self::TooManyModules(n) => write!(f, "module bundle holds too many modules ({n})"),
            Self::BadReserved(v) => write!(f, "module bundle reserved field is {v:#x}"),
            Self::Truncated => write!(f, "module bundle entry table is truncated"),
            Self::BadOffset { index, offset } => {
                write!(f, "bundle module {index}: bad offset {offset:#x}")
            }
            Self::OutsideBundle { index } => write!(f, "bundle module {index} exceeds the bundle"),
            Self::Overlap { first, second } => {
                write!(f, "bundle modules {first} and {second} overlap")
            }
        }
    }
}

/// A fixed-capacity list that counts what did not fit.
#[derive(Clone, Copy, Debug)]
struct List<T: Copy + Default, const N: usize> {
    items: [T; N],
    len: usize,
    dropped: u64,
}

impl<T: Copy + Default, const N: usize> List<T, N> {
    fn new() -> Self {
        List {
            items: [T::default(); N],
            len: 0,
            dropped: 0,
        }
    }

    fn push(&mut self, item: T) {
        if self.len < N {
            self.items[self.len] = item;
            self.len += 1;
        } else {
            self.dropped += 1;
        }
    }

    fn as_slice(&self) -> &[T] {
        &self.items[..self.len]
    }
}

/// Boot information, protocol-independent. Addresses are physical.
#[derive(Clone, Debug)]
pub struct BootInfo {
    /// The protocol that started us.
    pub protocol: BootProtocol,
    /// The hypervisor command line, if any (non-empty).
    pub cmdline: Option<PhysSlice>,
    /// The boot loader's name (Multiboot2 only).
    pub loader_name: Option<PhysSlice>,
    /// Physical address of the ACPI RSDP (for Multiboot2: of the loader's
    /// copy inside the information structure, the newer RSDP preferred).
    pub rsdp: Option<u64>,
    /// Multiboot2 basic memory information.
    pub basic_meminfo: Option<BasicMemInfo>,
    has_memmap: bool,
    memmap: List<RawEntry, MAX_MEMMAP_ENTRIES>,
    modules: List<BootModule, MAX_MODULES>,
    info_ranges: List<MemRange, 4>,
}

impl BootInfo {
    fn empty(protocol: BootProtocol) -> Self {
        BootInfo {
            protocol,
            cmdline: None,
            loader_name: None,
            rsdp: None,
            basic_meminfo: None,
            has_memmap: false,
            memmap: List::new(),
            modules: List::new(),
            info_ranges: List::new(),
        }
    }

    /// The firmware memory map, or `None` if the loader gave none (PVH
    /// version 0, or no Multiboot2 mmap tag).
    pub fn memory_map(&self) -> Option<&[RawEntry]> {
        self.has_memmap.then(|| self.memmap.as_slice())
    }

    /// Memory map entries beyond [`MAX_MEMMAP_ENTRIES`] that were dropped.
    pub fn memmap_dropped(&self) -> u64 {
        self.memmap.dropped
    }

    /// The boot modules in loader order.
    pub fn modules(&self) -> &[BootModule] {
        self.modules.as_slice()
    }

    /// Modules beyond [`MAX_MODULES`] that were dropped.
    pub fn modules_dropped(&self) -> u64 {
        self.modules.dropped
    }

    /// Physical memory this information still points into (the loader's
    /// structures and strings): reserve it until done with the `BootInfo`.
    /// Does not include the modules themselves.
    pub fn info_ranges(&self) -> impl Iterator<Item = MemRange> + '_ {
        let strings = self.cmdline.iter().chain(self.loader_name.iter());
        let module_strings = self.modules().iter().filter_map(|m| m.cmdline.as_ref());
        self.info_ranges
            .as_slice()
            .iter()
            .copied()
            .chain(strings.chain(module_strings).map(PhysSlice::range))
    }

    /// Parse PVH boot information at `start_info_paddr` (the `ebx` at entry).
    pub fn from_pvh<R: PhysRead + ?Sized>(
        r: &R,
        start_info_paddr: u64,
    ) -> Result<Self, BootInfoError> {
        let si = read_hvm_start_info(r, start_info_paddr)?;
        let mut bi = BootInfo::empty(BootProtocol::Pvh { version: si.version });
        let si_size = if si.version >= 1 {
            size_of::<HvmStartInfo>()
        } else {
            HVM_START_INFO_V0_SIZE
        };
        bi.info_ranges.push(checked_range(start_info_paddr, si_size as u64)?);
        bi.cmdline = read_cstr(r, si.cmdline_paddr)?;
        bi.rsdp = (si.rsdp_paddr != 0).then_some(si.rsdp_paddr);
        bi.read_pvh_modules(r, &si)?;
        if si.version >= 1 && si.memmap_paddr != 0 {
            bi.read_pvh_memmap(r, &si)?;
        }
        Ok(bi)
    }

    fn read_pvh_modules<R: PhysRead + ?Sized>(
        &mut self,
        r: &R,
        si: &HvmStartInfo,
    ) -> Result<(), BootInfoError> {
        if si.nr_modules == 0 {
            return Ok(());
        }
        if si.modlist_paddr == 0 {
            return Err(BootInfoError::MissingModlist);
        }
        let entry = size_of::<HvmModlistEntry>() as u64;
        let nr_read = u64::from(si.nr_modules).min(MAX_MODULES as u64);
        self.modules.dropped = u64::from(si.nr_modules) - nr_read;
        let list = checked_range(si.modlist_paddr, nr_read * entry)?;
        self.info_ranges.push(list);
        for i in 0..nr_read {
            let m: HvmModlistEntry = read_struct(r, list.start + i * entry)?;
            checked_range(m.paddr, m.size)?;
            let cmdline = read_cstr(r, m.cmdline_paddr)?;
            self.modules.push(BootModule {
                start: m.paddr,
                len: m.size,
                cmdline,
            });
        }
        Ok(())
    }

    fn read_pvh_memmap<R: PhysRead + ?Sized>(
        &mut self,
        r: &R,
        si: &HvmStartInfo,
    ) -> Result<(), BootInfoError> {
        let entry = size_of::<HvmMemmapTableEntry>() as u64;
        let nr_read = u64::from(si.memmap_entries).min(MAX_MEMMAP_ENTRIES as u64);
        self.memmap.dropped = u64::from(si.memmap_entries) - nr_read;
        let table = checked_range(si.memmap_paddr, nr_read * entry)?;
        self.info_ranges.push(table);
        self.has_memmap = true;
        for i in 0..nr_read {
            let e: HvmMemmapTableEntry = read_struct(r, table.start + i * entry)?;
            self.memmap.push(RawEntry {
                addr: e.addr,
                size: e.size,
                kind: e.r#type,
            });
        }
        Ok(())
    }

    /// Parse Multiboot2 boot information: `magic` is the `eax` and
    /// `info_paddr` the `ebx` at entry.
    pub fn from_multiboot2<R: PhysRead + ?Sized>(
        r: &R,
        magic: u32,
        info_paddr: u64,
    ) -> Result<Self, BootInfoError> {
        if magic != MULTIBOOT2_BOOTLOADER_MAGIC {
            return Err(BootInfoError::BadMultiboot2Magic(magic));
        }
        if info_paddr % 8 != 0 {
            return Err(BootInfoError::MisalignedInfo(info_paddr));
        }
        let total_size = read_u32(r, info_paddr)?;
        if !(16..=MAX_MB2_INFO_SIZE).contains(&total_size) {
            return Err(BootInfoError::BadTotalSize(total_size));
        }
        let mut bi = BootInfo::empty(BootProtocol::Multiboot2);
        bi.info_ranges.push(checked_range(info_paddr, u64::from(total_size))?);
        let mut rsdp_v1 = None;
        let mut offset = 8u32;
        while offset <= total_size - 8 {
            let tag = Mb2Tag::read(r, info_paddr, offset, total_size)?;
            if tag.ty == MB2_TAG_END {
                bi.rsdp = bi.rsdp.or(rsdp_v1);
                return Ok(bi);
            }
            bi.apply_mb2_tag(r, &tag, &mut rsdp_v1)?;
            // size >= 8 and offset + size <= total_size <= 1 MiB: no overflow,
            // and the loop always advances.
            offset += tag.size.next_multiple_of(8);
        }
        Err(BootInfoError::MissingEndTag)
    }

    fn apply_mb2_tag<R: PhysRead + ?Sized>(
        &mut self,
        r: &R,
        tag: &Mb2Tag,
        rsdp_v1: &mut Option<u64>,
    ) -> Result<(), BootInfoError> {
        match tag.ty {
            MB2_TAG_CMDLINE => {
                let s = tag.string(r, 0)?;
                self.cmdline = self.cmdline.or(s);
            }
            MB2_TAG_BOOT_LOADER_NAME => {
                let s = tag.string(r, 0)?;
                self.loader_name = self.loader_name.or(s);
            }
            MB2_TAG_MODULE => self.modules.push(tag.module(r)?),
            MB2_TAG_BASIC_MEMINFO => {
                tag.need(8)?;
                self.basic_meminfo = Some(BasicMemInfo {
                    lower_kib: read_u32(r, tag.body())?,
                    upper_kib: read_u32(r, tag.body() + 4)?,
                });
            }
            MB2_TAG_MMAP => self.read_mb2_mmap(r, tag)?,
            MB2_TAG_ACPI_OLD => {
                tag.need(RSDP_V1_LEN)?;
                *rsdp_v1 = rsdp_v1.or(Some(tag.body()));
            }
            MB2_TAG_ACPI_NEW => {
                tag.need(RSDP_V2_LEN)?;
                self.rsdp = self.rsdp.or(Some(tag.body()));
            }
            _ => {}
        }
        Ok(())
    }

    fn read_mb2_mmap<R: PhysRead + ?Sized>(
        &mut self,
        r: &R,
        tag: &Mb2Tag,
    ) -> Result<(), BootInfoError> {
        tag.need(8)?;
        let entry_size = read_u32(r, tag.body())?;
        if entry_size < MB2_MMAP_ENTRY_MIN || entry_size % 8 != 0 {
            return Err(BootInfoError::BadMmapEntrySize(entry_size));
        }
        let n = (tag.size - 16) / entry_size;
        self.has_memmap = true;
        for i in 0..n {
            let at = tag.body() + 8 + u64::from(i * entry_size);
            let mut raw = [0u8; 24];
            r.read(at, &mut raw)?;
            self.memmap.push(RawEntry {
                addr: le_u64(&raw[0..8]),
                size: le_u64(&raw[8..16]),
                kind: le_u32(&raw[16..20]),
            });
        }
        Ok(())
    }

    /// If the first module is an Oxen module bundle, replace it by the
    /// modules inside (see the module header). Returns whether it was one.
    /// On error the module list is unchanged.
    pub fn expand_bundle<R: PhysRead + ?Sized>(&mut self, r: &R) -> Result<bool, BundleError> {
        let Some(&outer) = self.modules().first() else {
            return Ok(false);
        };
        let room = MAX_MODULES - (self.modules.len - 1);
        let Some(inner) = split_bundle(r, &outer, room)? else {
            return Ok(false);
        };
        let rest = self.modules;
        self.modules = List::new();
        for m in inner.modules().iter().chain(&rest.as_slice()[1..]) {
            self.modules.push(*m);
        }
        self.modules.dropped = rest.dropped;
        self.info_ranges.push(inner.header);
        Ok(true)
    }
}

/// The modules inside a bundle.
#[derive(Clone, Debug)]
pub struct Bundle {
    modules: List<BootModule, MAX_MODULES>,
    header: MemRange,
}

impl Bundle {
    /// The inner modules, in entry order.
    pub fn modules(&self) -> &[BootModule] {
        self.modules.as_slice()
    }

    /// The bundle's header and entry table (holds the inner command lines).
    pub fn header(&self) -> MemRange {
        self.header
    }
}

/// True if `module` starts with [`BUNDLE_MAGIC`].
pub fn is_bundle<R: PhysRead + ?Sized>(r: &R, module: &BootModule) -> Result<bool, PhysReadError> {
    if module.len < BUNDLE_MAGIC.len() as u64 {
        return Ok(false);
    }
    let mut magic = [0u8; 8];
    r.read(module.start, &mut magic)?;
    Ok(&magic == BUNDLE_MAGIC)
}

/// Split a bundle into its modules, allowing at most `max_modules` of them;
/// `Ok(None)` if `module` is not a bundle.
pub fn split_bundle<R: PhysRead + ?Sized>(
    r: &R,
    module: &BootModule,
    max_modules: usize,
) -> Result<Option<Bundle>, BundleError> {
    if !is_bundle(r, module)? {
        return Ok(None);
    }
    if module.len < BUNDLE_HEADER_SIZE || module.start.checked_add(module.len).is_none() {
        return Err(BundleError::Truncated);
    }
    let count = read_u32(r, module.start + 8)?;
    let reserved = read_u32(r, module.start + 12)?;
    if reserved != 0 {
        return Err(BundleError::BadReserved(reserved));
    }
    if count == 0 {
        return Err(BundleError::Empty);
    }
    if count as usize > max_modules.min(MAX_MODULES) {
        return Err(BundleError::TooManyModules(count));
    }
    let table_end = BUNDLE_HEADER_SIZE + u64::from(count) * BUNDLE_ENTRY_SIZE;
    if table_end > module.len {
        return Err(BundleError::Truncated);
    }
    let mut bundle = Bundle {
        modules: List::new(),
        header: MemRange::new(module.start, module.start + table_end),
    };
    for index in 0..count as usize {
        let m = read_bundle_entry(r, module, index, table_end)?;
        check_no_overlap(bundle.modules(), &m, index)?;
        bundle.modules.push(m);
    }
    Ok(Some(bundle))
}

fn read_bundle_entry<R: PhysRead + ?Sized>(
    r: &R,
    bundle: &BootModule,
    index: usize,
    table_end: u64,
) -> Result<BootModule, BundleError> {
    let at = bundle.start + BUNDLE_HEADER_SIZE + index as u64 * BUNDLE_ENTRY_SIZE;
    let mut raw = [0u8; BUNDLE_ENTRY_SIZE as usize];
    r.read(at, &mut raw)?;
    let offset = le_u64(&raw[0..8]);
    let len = le_u64(&raw[8..16]);
    if offset % 4096 != 0 || offset < table_end {
        return Err(BundleError::BadOffset { index, offset });
    }
    if offset.checked_add(len).is_none_or(|end| end > bundle.len) {
        return Err(BundleError::OutsideBundle { index });
    }
    let name = &raw[16..];
    let name_len = name.iter().position(|&b| b == 0).unwrap_or(BUNDLE_CMDLINE_SIZE) as u64;
    let cmdline = (name_len > 0).then_some(PhysSlice {
        paddr: at + 16,
        len: name_len,
    });
    Ok(BootModule {
        start: bundle.start + offset,
        len,
        cmdline,
    })
}

fn check_no_overlap(seen: &[BootModule], m: &BootModule, index: usize) -> Result<(), BundleError> {
    match seen.iter().position(|other| other.range().overlaps(&m.range())) {
        Some(first) => Err(BundleError::Overlap {
            first,
            second: index,
        }),
        None => Ok(()),
    }
}

/// A Multiboot2 tag header, validated against the information's bounds.
struct Mb2Tag {
    paddr: u64,
    offset: u32,
    ty: u32,
    size: u32,
}

impl Mb2Tag {
    fn read<R: PhysRead + ?Sized>(
        r: &R,
        info: u64,
        offset: u32,
        total_size: u32,
    ) -> Result<Self, BootInfoError> {
        let paddr = info + u64::from(offset);
        let ty = read_u32(r, paddr)?;
        let size = read_u32(r, paddr + 4)?;
        let tag = Mb2Tag { paddr, offset, ty, size };
        let fits = size >= 8 && size <= total_size - offset;
        let end_ok = ty != MB2_TAG_END || size == 8;
        if !fits || !end_ok {
            return Err(tag.bad());
        }
        Ok(tag)
    }

    fn bad(&self) -> BootInfoError {
        BootInfoError::BadTag {
            offset: self.offset,
            tag: self.ty,
            size: self.size,
        }
    }

    /// Physical address of the first byte after the tag header.
    fn body(&self) -> u64 {
        self.paddr + MB2_TAG_HEADER
    }

    /// Require `len` bytes of body.
    fn need(&self, len: u32) -> Result<(), BootInfoError> {
        if self.size - 8 < len {
            return Err(self.bad());
        }
        Ok(())
    }

    /// The NUL-terminated string at body offset `at`, within the tag.
    fn string<R: PhysRead + ?Sized>(
        &self,
        r: &R,
        at: u32,
    ) -> Result<Option<PhysSlice>, BootInfoError> {
        self.need(at + 1)?;
        let start = self.body() + u64::from(at);
        let max = u64::from(self.size - 8 - at);
        let len = cstr_len(r, start, max)?;
        Ok((len > 0).then_some(PhysSlice { paddr: start, len }))
    }

    fn module<R: PhysRead + ?Sized>(&self, r: &R) -> Result<BootModule, BootInfoError> {
        self.need(8)?;
        let start = read_u32(r, self.body())?;
        let end = read_u32(r, self.body() + 4)?;
        if end < start {
            return Err(BootInfoError::BadModuleRange { start, end });
        }
        Ok(BootModule {
            start: u64::from(start),
            len: u64::from(end - start),
            cmdline: self.string(r, 8)?,
        })
    }
}

fn read_hvm_start_info<R: PhysRead + ?Sized>(
    r: &R,
    paddr: u64,
) -> Result<HvmStartInfo, BootInfoError> {
    checked_range(paddr, size_of::<HvmStartInfo>() as u64)?;
    let mut si = HvmStartInfo::new_zeroed();
    let (v0, v1) = si.as_mut_bytes().split_at_mut(HVM_START_INFO_V0_SIZE);
    r.read(paddr, v0)?;
    let magic = le_u32(&v0[0..4]);
    if magic != XEN_HVM_START_MAGIC_VALUE {
        return Err(BootInfoError::BadPvhMagic(magic));
    }
    if le_u32(&v0[4..8]) >= 1 {
        r.read(paddr + HVM_START_INFO_V0_SIZE as u64, v1)?;
    }
    Ok(si)
}

fn read_struct<T: FromBytes + IntoBytes, R: PhysRead + ?Sized>(
    r: &R,
    paddr: u64,
) -> Result<T, PhysReadError> {
    let mut t = T::new_zeroed();
    r.read(paddr, t.as_mut_bytes())?;
    Ok(t)
}

fn read_u32<R: PhysRead + ?Sized>(r: &R, paddr: u64) -> Result<u32, PhysReadError> {
    let mut b = [0u8; 4];
    r.read(paddr, &mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

fn checked_range(paddr: u64, len: u64) -> Result<MemRange, BootInfoError> {
    match paddr.checked_add(len) {
        Some(end) => Ok(MemRange::new(paddr, end)),
        None => Err(BootInfoError::AddressOverflow { paddr }),
    }
}

/// The NUL-terminated string at `paddr` (0 = none); empty strings are `None`.
fn read_cstr<R: PhysRead + ?Sized>(r: &R, paddr: u64) -> Result<Option<PhysSlice>, BootInfoError> {
    if paddr == 0 {
        return Ok(None);
    }
    let len = cstr_len(r, paddr, MAX_STRING_LEN + 1)?;
    Ok((len > 0).then_some(PhysSlice { paddr, len }))
}

/// Length of the string at `paddr` whose NUL must lie within `max` bytes.
/// Reads in chunks that never cross a 64-byte boundary, so nothing past the
/// page holding the NUL is touched.
fn cstr_len<R: PhysRead + ?Sized>(r: &R, paddr: u64, max: u64) -> Result<u64, BootInfoError> {
    let mut buf = [0u8; 64];
    let mut done = 0u64;
    while done < max {
        let at = paddr
            .checked_add(done)
            .ok_or(BootInfoError::AddressOverflow { paddr })?;
        let chunk = (64 - at % 64).min(max - done) as usize;
        r.read(at, &mut buf[..chunk])?;
        if let Some(nul) = buf[..chunk].iter().position(|&b| b == 0) {
            return Ok(done + nul as u64);
        }
        done += chunk as u64;
    }
    Err(BootInfoError::UnterminatedString { paddr })
}
