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
        let n = usize::try_from(self.len)
            .unwrap_or(usize::MAX)
            .min(buf.len());
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
                write!(
                    f,
                    "bad Multiboot2 tag {tag} at offset {offset:#x} size {size:#x}"
                )
            }
            Self::MissingEndTag => write!(f, "Multiboot2 info has no end tag"),
            Self::BadModuleRange { start, end } => {
                write!(
                    f,
                    "Multiboot2 module ends ({end:#x}) before it starts ({start:#x})"
                )
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
        let mut bi = BootInfo::empty(BootProtocol::Pvh {
            version: si.version,
        });
        let si_size = if si.version >= 1 {
            size_of::<HvmStartInfo>()
        } else {
            HVM_START_INFO_V0_SIZE
        };
        bi.info_ranges
            .push(checked_range(start_info_paddr, si_size as u64)?);
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
        if !info_paddr.is_multiple_of(8) {
            return Err(BootInfoError::MisalignedInfo(info_paddr));
        }
        let total_size = read_u32(r, info_paddr)?;
        if !(16..=MAX_MB2_INFO_SIZE).contains(&total_size) {
            return Err(BootInfoError::BadTotalSize(total_size));
        }
        let mut bi = BootInfo::empty(BootProtocol::Multiboot2);
        bi.info_ranges
            .push(checked_range(info_paddr, u64::from(total_size))?);
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
        if entry_size < MB2_MMAP_ENTRY_MIN || !entry_size.is_multiple_of(8) {
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
    if !offset.is_multiple_of(4096) || offset < table_end {
        return Err(BundleError::BadOffset { index, offset });
    }
    if offset.checked_add(len).is_none_or(|end| end > bundle.len) {
        return Err(BundleError::OutsideBundle { index });
    }
    let name = &raw[16..];
    let name_len = name
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(BUNDLE_CMDLINE_SIZE) as u64;
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
    match seen
        .iter()
        .position(|other| other.range().overlaps(&m.range()))
    {
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
        let tag = Mb2Tag {
            paddr,
            offset,
            ty,
            size,
        };
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::format;
    use std::vec;
    use std::vec::Vec;

    /// Fake physical memory: `bytes` at physical address `base`; reads
    /// outside fail. Counts reads to prove loops terminate early.
    struct Mem {
        base: u64,
        bytes: Vec<u8>,
        reads: Cell<usize>,
    }

    impl Mem {
        fn new(base: u64, size: usize) -> Self {
            Mem {
                base,
                bytes: vec![0; size],
                reads: Cell::new(0),
            }
        }

        fn put(&mut self, paddr: u64, data: &[u8]) {
            let at = (paddr - self.base) as usize;
            self.bytes[at..at + data.len()].copy_from_slice(data);
        }

        fn put_u32(&mut self, paddr: u64, v: u32) {
            self.put(paddr, &v.to_le_bytes());
        }

        fn put_u64(&mut self, paddr: u64, v: u64) {
            self.put(paddr, &v.to_le_bytes());
        }

        fn string(&self, s: PhysSlice) -> Vec<u8> {
            let mut buf = [0u8; 256];
            s.read_into(self, &mut buf).unwrap().to_vec()
        }
    }

    impl PhysRead for Mem {
        fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), PhysReadError> {
            self.reads.set(self.reads.get() + 1);
            let err = PhysReadError {
                paddr,
                len: buf.len(),
            };
            let off = paddr.checked_sub(self.base).ok_or(err)? as usize;
            let end = off.checked_add(buf.len()).ok_or(err)?;
            buf.copy_from_slice(self.bytes.get(off..end).ok_or(err)?);
            Ok(())
        }
    }

    // ---------------------------------------------------------------- PVH

    const SI: u64 = 0x1000;
    const MODLIST: u64 = 0x2000;
    const MEMMAP: u64 = 0x3000;
    const CMDLINE: u64 = 0x4000;

    fn pvh_mem(version: u32) -> Mem {
        let mut m = Mem::new(0, 0x10000);
        m.put_u32(SI, XEN_HVM_START_MAGIC_VALUE);
        m.put_u32(SI + 4, version);
        m.put_u32(SI + 12, 2); // nr_modules
        m.put_u64(SI + 16, MODLIST);
        m.put_u64(SI + 24, CMDLINE);
        m.put_u64(SI + 32, 0xf_5a40); // rsdp
        m.put(CMDLINE, b"loglvl=all console=com1\0");
        // Module 0 with a command line, module 1 without.
        m.put_u64(MODLIST, 0x10_0000);
        m.put_u64(MODLIST + 8, 0x1234);
        m.put_u64(MODLIST + 16, CMDLINE + 0x100);
        m.put(CMDLINE + 0x100, b"dom0 root=/dev/ram\0");
        m.put_u64(MODLIST + 32, 0x20_0000);
        m.put_u64(MODLIST + 40, 0x5000);
        if version >= 1 {
            m.put_u64(SI + 40, MEMMAP);
            m.put_u32(SI + 48, 3);
            for (i, (addr, size, ty)) in [
                (0u64, 0x9fc00u64, 1u32),
                (0xf0000, 0x10000, 2),
                (0x10_0000, 0x7ee_0000, 1),
            ]
            .into_iter()
            .enumerate()
            {
                let e = MEMMAP + 24 * i as u64;
                m.put_u64(e, addr);
                m.put_u64(e + 8, size);
                m.put_u32(e + 16, ty);
            }
        }
        m
    }

    #[test]
    fn pvh_version_1() {
        let m = pvh_mem(1);
        let bi = BootInfo::from_pvh(&m, SI).unwrap();
        assert_eq!(bi.protocol, BootProtocol::Pvh { version: 1 });
        assert_eq!(m.string(bi.cmdline.unwrap()), b"loglvl=all console=com1");
        assert_eq!(bi.rsdp, Some(0xf_5a40));
        assert_eq!(bi.loader_name, None);
        let mods = bi.modules();
        assert_eq!(mods.len(), 2);
        assert_eq!((mods[0].start, mods[0].len), (0x10_0000, 0x1234));
        assert_eq!(m.string(mods[0].cmdline.unwrap()), b"dom0 root=/dev/ram");
        assert_eq!(
            (mods[1].start, mods[1].len, mods[1].cmdline),
            (0x20_0000, 0x5000, None)
        );
        let map = bi.memory_map().unwrap();
        assert_eq!(map.len(), 3);
        assert_eq!(
            map[2],
            RawEntry {
                addr: 0x10_0000,
                size: 0x7ee_0000,
                kind: 1
            }
        );
        assert_eq!(bi.memmap_dropped(), 0);
        let ranges: Vec<MemRange> = bi.info_ranges().collect();
        assert!(ranges.contains(&MemRange::new(SI, SI + 56)));
        assert!(ranges.contains(&MemRange::new(MODLIST, MODLIST + 64)));
        assert!(ranges.contains(&MemRange::new(MEMMAP, MEMMAP + 72)));
        assert!(ranges.contains(&MemRange::new(CMDLINE, CMDLINE + 23)));
        assert!(ranges.contains(&MemRange::new(CMDLINE + 0x100, CMDLINE + 0x100 + 18)));
    }

    #[test]
    fn pvh_version_0_has_no_memory_map_and_reads_only_v0_fields() {
        let mut m = pvh_mem(0);
        // Fields beyond version 0 hold garbage that must be ignored.
        m.put_u64(SI + 40, 0xdead_beef);
        m.put_u32(SI + 48, 77);
        let bi = BootInfo::from_pvh(&m, SI).unwrap();
        assert_eq!(bi.protocol, BootProtocol::Pvh { version: 0 });
        assert_eq!(bi.memory_map(), None);
        assert_eq!(bi.modules().len(), 2);
        // A v0 structure right at the end of readable memory is fine.
        let mut m = Mem::new(0, 40);
        m.put_u32(0, XEN_HVM_START_MAGIC_VALUE);
        let bi = BootInfo::from_pvh(&m, 0).unwrap();
        assert_eq!(bi.modules().len(), 0);
        assert_eq!(bi.cmdline, None);
        assert_eq!(bi.rsdp, None);
    }

    #[test]
    fn pvh_version_1_without_memmap_address() {
        let mut m = pvh_mem(1);
        m.put_u64(SI + 40, 0);
        let bi = BootInfo::from_pvh(&m, SI).unwrap();
        assert_eq!(bi.memory_map(), None);
    }

    #[test]
    fn pvh_errors() {
        let mut m = pvh_mem(1);
        m.put_u32(SI, 0x1234_5678);
        assert_eq!(
            BootInfo::from_pvh(&m, SI).unwrap_err(),
            BootInfoError::BadPvhMagic(0x1234_5678)
        );
        let m = pvh_mem(1);
        assert!(matches!(
            BootInfo::from_pvh(&m, 0x20_0000),
            Err(BootInfoError::Read(_))
        ));
        assert_eq!(
            BootInfo::from_pvh(&m, u64::MAX - 8).unwrap_err(),
            BootInfoError::AddressOverflow {
                paddr: u64::MAX - 8
            }
        );
        let mut m = pvh_mem(1);
        m.put_u64(SI + 16, 0);
        assert_eq!(
            BootInfo::from_pvh(&m, SI).unwrap_err(),
            BootInfoError::MissingModlist
        );
        let mut m = pvh_mem(1);
        m.put_u64(SI + 16, 0xfff0); // list runs off the end of memory
        assert!(matches!(
            BootInfo::from_pvh(&m, SI),
            Err(BootInfoError::Read(_))
        ));
        let mut m = pvh_mem(1);
        m.put_u64(MODLIST + 8, u64::MAX); // module wraps
        assert_eq!(
            BootInfo::from_pvh(&m, SI).unwrap_err(),
            BootInfoError::AddressOverflow { paddr: 0x10_0000 }
        );
        let mut m = pvh_mem(1);
        m.put_u64(SI + 40, u64::MAX - 10); // memmap wraps
        assert!(matches!(
            BootInfo::from_pvh(&m, SI),
            Err(BootInfoError::AddressOverflow { .. })
        ));
    }

    #[test]
    fn pvh_unterminated_command_line() {
        let mut m = pvh_mem(1);
        let long = vec![b'x'; 0x2000];
        m.put(CMDLINE, &long);
        assert_eq!(
            BootInfo::from_pvh(&m, SI).unwrap_err(),
            BootInfoError::UnterminatedString { paddr: CMDLINE }
        );
        // Exactly MAX_STRING_LEN characters is accepted.
        m.put(CMDLINE + MAX_STRING_LEN, &[0]);
        let bi = BootInfo::from_pvh(&m, SI).unwrap();
        assert_eq!(bi.cmdline.unwrap().len, MAX_STRING_LEN);
        // A string running into unreadable memory is a read error.
        let mut m = Mem::new(0, 0x100);
        m.put_u32(0, XEN_HVM_START_MAGIC_VALUE);
        m.put_u64(24, 0xf0);
        m.put(0xf0, &[b'a'; 16]);
        assert!(matches!(
            BootInfo::from_pvh(&m, 0),
            Err(BootInfoError::Read(_))
        ));
    }

    #[test]
    fn pvh_string_read_stops_at_the_nul() {
        // The command line ends 2 bytes before unreadable memory.
        let mut m = Mem::new(0, 0x1000);
        m.put_u32(0, XEN_HVM_START_MAGIC_VALUE);
        m.put_u64(24, 0xffd);
        m.put(0xffd, b"ab\0");
        let bi = BootInfo::from_pvh(&m, 0).unwrap();
        assert_eq!(
            bi.cmdline,
            Some(PhysSlice {
                paddr: 0xffd,
                len: 2
            })
        );
        // Empty string means no command line.
        m.put(0xffd, b"\0");
        assert_eq!(BootInfo::from_pvh(&m, 0).unwrap().cmdline, None);
    }

    #[test]
    fn pvh_hostile_counts_are_bounded() {
        let mut m = pvh_mem(1);
        m.put_u32(SI + 12, u32::MAX);
        m.put_u32(SI + 48, u32::MAX);
        // Only the first MAX_* entries are ever read.
        let bi = BootInfo::from_pvh(&m, SI).unwrap();
        assert_eq!(bi.modules().len(), MAX_MODULES);
        assert!(m.reads.get() < 10_000);
        // Tables running off readable memory fail.
        m.put_u64(SI + 16, 0xff00);
        assert!(matches!(
            BootInfo::from_pvh(&m, SI),
            Err(BootInfoError::Read(_))
        ));
        // With enough readable memory, the lists are capped.
        let mut m = Mem::new(0, 0x20000);
        m.put_u32(0, XEN_HVM_START_MAGIC_VALUE);
        m.put_u32(4, 1);
        m.put_u32(12, u32::MAX);
        m.put_u64(16, 0x1000);
        m.put_u64(40, 0x8000);
        m.put_u32(48, u32::MAX);
        let bi = BootInfo::from_pvh(&m, 0).unwrap();
        assert_eq!(bi.modules().len(), MAX_MODULES);
        assert_eq!(
            bi.modules_dropped(),
            u64::from(u32::MAX) - MAX_MODULES as u64
        );
        assert_eq!(bi.memory_map().unwrap().len(), MAX_MEMMAP_ENTRIES);
        assert_eq!(
            bi.memmap_dropped(),
            u64::from(u32::MAX) - MAX_MEMMAP_ENTRIES as u64
        );
    }

    // ---------------------------------------------------------- Multiboot2

    const MBI: u64 = 0x9000;

    /// Builds a Multiboot2 information structure tag by tag.
    struct Mb2Builder {
        bytes: Vec<u8>,
    }

    impl Mb2Builder {
        fn new() -> Self {
            Mb2Builder { bytes: vec![0; 8] }
        }

        fn tag(mut self, ty: u32, body: &[u8]) -> Self {
            self.bytes.extend_from_slice(&ty.to_le_bytes());
            self.bytes
                .extend_from_slice(&(8 + body.len() as u32).to_le_bytes());
            self.bytes.extend_from_slice(body);
            while !self.bytes.len().is_multiple_of(8) {
                self.bytes.push(0);
            }
            self
        }

        fn end(self) -> Vec<u8> {
            let mut b = self.tag(0, &[]).bytes;
            let total = b.len() as u32;
            b[0..4].copy_from_slice(&total.to_le_bytes());
            b
        }
    }

    fn module_body(start: u32, end: u32, cmdline: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&start.to_le_bytes());
        b.extend_from_slice(&end.to_le_bytes());
        b.extend_from_slice(cmdline);
        b
    }

    fn mmap_body(entry_size: u32, entries: &[(u64, u64, u32)]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&entry_size.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        for &(addr, len, ty) in entries {
            let start = b.len();
            b.extend_from_slice(&addr.to_le_bytes());
            b.extend_from_slice(&len.to_le_bytes());
            b.extend_from_slice(&ty.to_le_bytes());
            b.resize(start + entry_size as usize, 0);
        }
        b
    }

    fn mb2_mem(info: &[u8]) -> Mem {
        let mut m = Mem::new(0, 0x20000);
        m.put(MBI, info);
        m
    }

    fn parse(info: &[u8]) -> Result<BootInfo, BootInfoError> {
        BootInfo::from_multiboot2(&mb2_mem(info), MULTIBOOT2_BOOTLOADER_MAGIC, MBI)
    }

    fn grub_info() -> Vec<u8> {
        Mb2Builder::new()
            .tag(1, b"loglvl=all dom0_mem=512M\0")
            .tag(2, b"GRUB 2.06\0")
            .tag(21, &[1, 2, 3, 4]) // load base address: skipped
            .tag(
                3,
                &module_body(0x20_0000, 0x28_0000, b"dom0 console=hvc0\0"),
            )
            .tag(3, &module_body(0x30_0000, 0x30_0100, b"\0"))
            .tag(4, &[0x7f, 2, 0, 0, 0, 0xfc, 1, 0])
            .tag(
                6,
                &mmap_body(
                    24,
                    &[
                        (0, 0x9fc00, 1),
                        (0x10_0000, 0x1ff0_0000, 1),
                        (0xfffc_0000, 0x4_0000, 2),
                    ],
                ),
            )
            .tag(14, &[b'R'; 20])
            .end()
    }

    #[test]
    fn multiboot2_from_grub() {
        let info = grub_info();
        let m = mb2_mem(&info);
        let bi = BootInfo::from_multiboot2(&m, MULTIBOOT2_BOOTLOADER_MAGIC, MBI).unwrap();
        assert_eq!(bi.protocol, BootProtocol::Multiboot2);
        assert_eq!(m.string(bi.cmdline.unwrap()), b"loglvl=all dom0_mem=512M");
        assert_eq!(m.string(bi.loader_name.unwrap()), b"GRUB 2.06");
        let mods = bi.modules();
        assert_eq!(mods.len(), 2);
        assert_eq!((mods[0].start, mods[0].len), (0x20_0000, 0x8_0000));
        assert_eq!(m.string(mods[0].cmdline.unwrap()), b"dom0 console=hvc0");
        assert_eq!(
            (mods[1].start, mods[1].len, mods[1].cmdline),
            (0x30_0000, 0x100, None)
        );
        assert_eq!(
            bi.basic_meminfo,
            Some(BasicMemInfo {
                lower_kib: 0x27f,
                upper_kib: 0x1fc00
            })
        );
        let map = bi.memory_map().unwrap();
        assert_eq!(map.len(), 3);
        assert_eq!(
            map[1],
            RawEntry {
                addr: 0x10_0000,
                size: 0x1ff0_0000,
                kind: 1
            }
        );
        // The old RSDP copy lives in the tag body.
        let rsdp = bi.rsdp.unwrap();
        let mut sig = [0u8; 1];
        m.read(rsdp, &mut sig).unwrap();
        assert_eq!(sig, [b'R']);
        let ranges: Vec<MemRange> = bi.info_ranges().collect();
        assert_eq!(ranges[0], MemRange::new(MBI, MBI + info.len() as u64));
    }

    #[test]
    fn multiboot2_prefers_the_new_rsdp_in_either_order() {
        for new_first in [false, true] {
            let mut b = Mb2Builder::new();
            let tags: [(u32, Vec<u8>); 2] = [(14, vec![b'O'; 20]), (15, vec![b'N'; 36])];
            let order: Vec<usize> = if new_first { vec![1, 0] } else { vec![0, 1] };
            for i in order {
                b = b.tag(tags[i].0, &tags[i].1);
            }
            let info = b.end();
            let m = mb2_mem(&info);
            let bi = BootInfo::from_multiboot2(&m, MULTIBOOT2_BOOTLOADER_MAGIC, MBI).unwrap();
            let mut sig = [0u8; 1];
            m.read(bi.rsdp.unwrap(), &mut sig).unwrap();
            assert_eq!(sig, [b'N'], "new_first={new_first}");
        }
    }

    #[test]
    fn multiboot2_minimal_and_mmap_with_larger_entries() {
        let bi = parse(&Mb2Builder::new().end()).unwrap();
        assert_eq!(bi.memory_map(), None);
        assert_eq!(bi.modules().len(), 0);
        assert_eq!(bi.cmdline, None);
        let info = Mb2Builder::new()
            .tag(6, &mmap_body(32, &[(0x1000, 0x2000, 1), (0x5000, 1, 3)]))
            .end();
        let bi = parse(&info).unwrap();
        assert_eq!(
            bi.memory_map().unwrap(),
            [
                RawEntry {
                    addr: 0x1000,
                    size: 0x2000,
                    kind: 1
                },
                RawEntry {
                    addr: 0x5000,
                    size: 1,
                    kind: 3
                }
            ]
        );
        // A trailing partial entry is ignored.
        let mut body = mmap_body(24, &[(0x1000, 0x2000, 1)]);
        body.extend_from_slice(&[0xff; 12]);
        let bi = parse(&Mb2Builder::new().tag(6, &body).end()).unwrap();
        assert_eq!(bi.memory_map().unwrap().len(), 1);
    }

    #[test]
    fn multiboot2_header_errors() {
        let info = grub_info();
        let m = mb2_mem(&info);
        assert_eq!(
            BootInfo::from_multiboot2(&m, 0x2bad_b002, MBI).unwrap_err(),
            BootInfoError::BadMultiboot2Magic(0x2bad_b002)
        );
        assert_eq!(
            BootInfo::from_multiboot2(&m, MULTIBOOT2_BOOTLOADER_MAGIC, MBI + 4).unwrap_err(),
            BootInfoError::MisalignedInfo(MBI + 4)
        );
        assert!(matches!(
            BootInfo::from_multiboot2(&m, MULTIBOOT2_BOOTLOADER_MAGIC, 0x10_0000),
            Err(BootInfoError::Read(_))
        ));
        for total in [0u32, 8, 15, MAX_MB2_INFO_SIZE + 1, u32::MAX] {
            let mut info = info.clone();
            info[0..4].copy_from_slice(&total.to_le_bytes());
            assert_eq!(
                parse(&info).unwrap_err(),
                BootInfoError::BadTotalSize(total)
            );
        }
    }

    #[test]
    fn multiboot2_tag_errors() {
        // Tag size below 8 (would loop forever if trusted).
        let mut info = Mb2Builder::new().tag(1, b"x\0").end();
        info[12..16].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(
            parse(&info).unwrap_err(),
            BootInfoError::BadTag {
                offset: 8,
                tag: 1,
                size: 0
            }
        );
        // Tag running past total_size.
        let mut info = Mb2Builder::new().tag(1, b"x\0").end();
        info[12..16].copy_from_slice(&0x1000u32.to_le_bytes());
        assert!(matches!(
            parse(&info),
            Err(BootInfoError::BadTag { size: 0x1000, .. })
        ));
        // total_size cutting the end tag off.
        let mut info = Mb2Builder::new().tag(1, b"x\0").end();
        let cut = (info.len() - 8) as u32;
        info[0..4].copy_from_slice(&cut.to_le_bytes());
        assert_eq!(parse(&info).unwrap_err(), BootInfoError::MissingEndTag);
        // End tag with a wrong size.
        let mut info = Mb2Builder::new().end();
        info[12..16].copy_from_slice(&16u32.to_le_bytes());
        info.extend_from_slice(&[0; 8]);
        let total = info.len() as u32;
        info[0..4].copy_from_slice(&total.to_le_bytes());
        assert!(matches!(
            parse(&info),
            Err(BootInfoError::BadTag {
                tag: 0,
                size: 16,
                ..
            })
        ));
        // Unterminated strings.
        let info = Mb2Builder::new().tag(1, b"abcdefgh").end();
        assert!(matches!(
            parse(&info),
            Err(BootInfoError::UnterminatedString { .. })
        ));
        let info = Mb2Builder::new().tag(1, b"").end();
        assert!(matches!(
            parse(&info),
            Err(BootInfoError::BadTag {
                tag: 1,
                size: 8,
                ..
            })
        ));
        let info = Mb2Builder::new()
            .tag(3, &module_body(0, 0x1000, b"noterm"))
            .end();
        assert!(matches!(
            parse(&info),
            Err(BootInfoError::UnterminatedString { .. })
        ));
        // Short fixed-size tags.
        for (ty, len) in [(3u32, 8usize), (4, 7), (6, 7), (14, 19), (15, 35)] {
            let info = Mb2Builder::new().tag(ty, &vec![0; len]).end();
            assert!(
                matches!(parse(&info), Err(BootInfoError::BadTag { tag, .. }) if tag == ty),
                "tag {ty}"
            );
        }
        // Inverted module and bad mmap entry sizes.
        let info = Mb2Builder::new()
            .tag(3, &module_body(0x2000, 0x1000, b"\0"))
            .end();
        assert_eq!(
            parse(&info).unwrap_err(),
            BootInfoError::BadModuleRange {
                start: 0x2000,
                end: 0x1000
            }
        );
        for es in [0u32, 8, 20, 28] {
            let info = Mb2Builder::new()
                .tag(6, &mmap_body(24, &[(0, 0x1000, 1)]))
                .end();
            let mut info = info;
            info[16..20].copy_from_slice(&es.to_le_bytes());
            assert_eq!(
                parse(&info).unwrap_err(),
                BootInfoError::BadMmapEntrySize(es)
            );
        }
    }

    #[test]
    fn multiboot2_many_modules_are_capped() {
        let mut b = Mb2Builder::new();
        for i in 0..20u32 {
            b = b.tag(3, &module_body(i * 0x1000, i * 0x1000 + 0x10, b"\0"));
        }
        let bi = parse(&b.end()).unwrap();
        assert_eq!(bi.modules().len(), MAX_MODULES);
        assert_eq!(bi.modules_dropped(), 4);
    }

    #[test]
    fn multiboot2_garbage_never_panics_or_hangs() {
        let base = grub_info();
        let mut x: u32 = 0x9e37_79b9;
        for round in 0..2000 {
            let mut info = base.clone();
            for _ in 0..1 + round % 4 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let at = (x as usize) % info.len();
                info[at] = (x >> 24) as u8;
            }
            let m = mb2_mem(&info);
            m.reads.set(0);
            let _ = BootInfo::from_multiboot2(&m, MULTIBOOT2_BOOTLOADER_MAGIC, MBI);
            assert!(m.reads.get() < 100_000);
        }
    }

    // -------------------------------------------------------------- bundle

    const BUNDLE: u64 = 0x10_0000;

    fn bundle_bytes(entries: &[(u64, u64, &[u8])], size: usize) -> Vec<u8> {
        let mut b = vec![0u8; size];
        b[0..8].copy_from_slice(BUNDLE_MAGIC);
        b[8..12].copy_from_slice(&(entries.len() as u32).to_le_bytes());
        for (i, &(off, len, name)) in entries.iter().enumerate() {
            let e = 16 + 64 * i;
            b[e..e + 8].copy_from_slice(&off.to_le_bytes());
            b[e + 8..e + 16].copy_from_slice(&len.to_le_bytes());
            b[e + 16..e + 16 + name.len()].copy_from_slice(name);
        }
        b
    }

    fn bundle_mem(bytes: &[u8]) -> (Mem, BootModule) {
        let mut m = Mem::new(BUNDLE, 0x10_0000);
        m.put(BUNDLE, bytes);
        let module = BootModule {
            start: BUNDLE,
            len: bytes.len() as u64,
            cmdline: None,
        };
        (m, module)
    }

    fn split(bytes: &[u8]) -> Result<Option<Bundle>, BundleError> {
        let (m, module) = bundle_mem(bytes);
        split_bundle(&m, &module, MAX_MODULES)
    }

    #[test]
    fn bundle_splits_into_modules() {
        let bytes = bundle_bytes(
            &[
                (0x1000, 0x1800, b"dom0 loglvl=all"),
                (0x3000, 0x10, &[b'r'; 48]),
                (0x4000, 0, b""),
            ],
            0x5000,
        );
        let (m, module) = bundle_mem(&bytes);
        let b = split_bundle(&m, &module, MAX_MODULES).unwrap().unwrap();
        let mods = b.modules();
        assert_eq!(mods.len(), 3);
        assert_eq!((mods[0].start, mods[0].len), (BUNDLE + 0x1000, 0x1800));
        assert_eq!(m.string(mods[0].cmdline.unwrap()), b"dom0 loglvl=all");
        assert_eq!(mods[0].cmdline.unwrap().paddr, BUNDLE + 16 + 16);
        assert_eq!(m.string(mods[1].cmdline.unwrap()), [b'r'; 48]);
        assert_eq!(
            (mods[2].start, mods[2].len, mods[2].cmdline),
            (BUNDLE + 0x4000, 0, None)
        );
        assert_eq!(b.header(), MemRange::new(BUNDLE, BUNDLE + 16 + 3 * 64));
    }

    #[test]
    fn not_a_bundle() {
        assert!(split(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0")
            .unwrap()
            .is_none());
        assert!(split(b"OXENMOD").unwrap().is_none()); // shorter than the magic
        assert!(split(b"").unwrap().is_none());
    }

    #[test]
    fn bundle_errors() {
        let ok = |entries: &[(u64, u64, &[u8])]| bundle_bytes(entries, 0x4000);
        assert_eq!(split(&ok(&[])).unwrap_err(), BundleError::Empty);
        let mut b = ok(&[(0x1000, 1, b"")]);
        b[12] = 1;
        assert_eq!(split(&b).unwrap_err(), BundleError::BadReserved(1));
        let mut b = ok(&[(0x1000, 1, b"")]);
        b[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            split(&b).unwrap_err(),
            BundleError::TooManyModules(u32::MAX)
        );
        let mut b = ok(&[(0x1000, 1, b"")]);
        b[8..12].copy_from_slice(&16u32.to_le_bytes());
        assert!(split(&b[..0x200]).is_err()); // table larger than the bundle
        assert_eq!(split(&b[..0x400]).unwrap_err(), BundleError::Truncated);
        assert_eq!(split(&b[..12]).unwrap_err(), BundleError::Truncated);
        assert_eq!(
            split(&ok(&[(0x1001, 1, b"")])).unwrap_err(),
            BundleError::BadOffset {
                index: 0,
                offset: 0x1001
            }
        );
        assert_eq!(
            split(&ok(&[(0, 1, b"")])).unwrap_err(),
            BundleError::BadOffset {
                index: 0,
                offset: 0
            }
        );
        assert_eq!(
            split(&ok(&[(0x1000, 0x3001, b"")])).unwrap_err(),
            BundleError::OutsideBundle { index: 0 }
        );
        assert_eq!(
            split(&ok(&[(0x1000, 1, b""), (0x3000, u64::MAX, b"")])).unwrap_err(),
            BundleError::OutsideBundle { index: 1 }
        );
        assert_eq!(
            split(&ok(&[(0x1000, 0x1001, b""), (0x2000, 0x10, b"")])).unwrap_err(),
            BundleError::Overlap {
                first: 0,
                second: 1
            }
        );
        assert_eq!(
            split(&ok(&[
                (0x1000, 0x10, b""),
                (0x3000, 0x10, b""),
                (0x1000, 0x10, b"")
            ]))
            .unwrap_err(),
            BundleError::Overlap {
                first: 0,
                second: 2
            }
        );
        // The table itself is unreadable.
        let b = ok(&[(0x1000, 1, b"")]);
        let mut m = Mem::new(BUNDLE, 20);
        m.put(BUNDLE, &b[..20]);
        let module = BootModule {
            start: BUNDLE,
            len: 0x4000,
            cmdline: None,
        };
        assert!(matches!(
            split_bundle(&m, &module, MAX_MODULES),
            Err(BundleError::Read(_))
        ));
        // Room for fewer modules than the bundle holds.
        let b = ok(&[(0x1000, 1, b""), (0x2000, 1, b"")]);
        let (m, module) = bundle_mem(&b);
        assert_eq!(
            split_bundle(&m, &module, 1).unwrap_err(),
            BundleError::TooManyModules(2)
        );
    }

    #[test]
    fn expand_bundle_replaces_the_first_module() {
        let bytes = bundle_bytes(
            &[(0x1000, 0x100, b"kernel"), (0x2000, 0x200, b"ramdisk")],
            0x3000,
        );
        let mut m = pvh_mem(1);
        m.put_u64(MODLIST, BUNDLE);
        m.put_u64(MODLIST + 8, bytes.len() as u64);
        let mut big = Mem::new(0, 0x20_0000);
        big.bytes[..m.bytes.len()].copy_from_slice(&m.bytes);
        big.put(BUNDLE, &bytes);
        let mut bi = BootInfo::from_pvh(&big, SI).unwrap();
        assert_eq!(bi.modules().len(), 2);
        assert!(bi.expand_bundle(&big).unwrap());
        let mods = bi.modules();
        assert_eq!(mods.len(), 3);
        assert_eq!((mods[0].start, mods[0].len), (BUNDLE + 0x1000, 0x100));
        assert_eq!(big.string(mods[0].cmdline.unwrap()), b"kernel");
        assert_eq!(big.string(mods[1].cmdline.unwrap()), b"ramdisk");
        assert_eq!((mods[2].start, mods[2].len), (0x20_0000, 0x5000));
        assert!(bi
            .info_ranges()
            .any(|r| r == MemRange::new(BUNDLE, BUNDLE + 16 + 128)));
        // A second expansion finds no bundle.
        assert!(!bi.expand_bundle(&big).unwrap());
    }

    #[test]
    fn expand_bundle_without_modules_or_with_errors() {
        let mut m = Mem::new(0, 64);
        m.put_u32(0, XEN_HVM_START_MAGIC_VALUE);
        let mut bi = BootInfo::from_pvh(&m, 0).unwrap();
        assert!(!bi.expand_bundle(&m).unwrap());
        // A broken bundle leaves the module list alone.
        let bytes = bundle_bytes(&[(0x1000, 0x10_0000, b"")], 0x2000);
        let (bm, module) = bundle_mem(&bytes);
        let mut bi = BootInfo::empty(BootProtocol::Multiboot2);
        bi.modules.push(module);
        assert_eq!(
            bi.expand_bundle(&bm).unwrap_err(),
            BundleError::OutsideBundle { index: 0 }
        );
        assert_eq!(bi.modules(), [module]);
    }

    #[test]
    fn displays() {
        assert_eq!(
            format!(
                "{}",
                BootInfoError::BadTag {
                    offset: 8,
                    tag: 6,
                    size: 4
                }
            ),
            "bad Multiboot2 tag 6 at offset 0x8 size 0x4"
        );
        assert_eq!(
            format!(
                "{}",
                BootInfoError::Read(PhysReadError {
                    paddr: 0x10,
                    len: 4
                })
            ),
            "cannot read 4 bytes at 0x10"
        );
        assert_eq!(
            format!(
                "{}",
                BundleError::Overlap {
                    first: 0,
                    second: 2
                }
            ),
            "bundle modules 0 and 2 overlap"
        );
    }
}
