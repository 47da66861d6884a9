//! Direct boot of a Linux `bzImage` as an HVM guest: the Linux x86 boot
//! protocol (`Documentation/arch/x86/boot.rst`, `zero-page.rst`), as a
//! boot loader that skips the real-mode setup code.
//!
//! **Owns**: parsing the setup header (at 0x1f1), choosing where the
//! protected-mode kernel, the zero page (`struct boot_params`), the
//! command line, the initrd and the boot page tables go, and building the
//! zero page (header copied as the protocol says, loader fields, e820
//! table, ACPI RSDP address).
//! **Trusts**: nothing in the image: the header must be a bzImage's
//! (boot flag 0xAA55, "HdrS", protocol 2.12 or later, LOADED_HIGH,
//! XLF_KERNEL_64), the file must hold the `syssize` the header claims, and
//! every placement is checked against the guest's memory map
//! ([`GuestMemoryMap`]).
//!
//! The compressed `vmlinux` inside (`payload_offset`/`payload_length`)
//! is what a PVH guest boots from a bzImage, as libxc's
//! `xc_dom_bzimageloader` does: [`BzImage::payload`] finds it and names
//! its compression; [`BzImage::decompress_payload`] unpacks the LZ4
//! (legacy frame) payload Debian's kernels carry. Other compressions are
//! reported, not unpacked.
//!
//! Entry: the 64-bit boot protocol (`load + 0x200`, long mode, an
//! identity map of the low 4 GiB, a GDT with `__BOOT_CS` 0x10 and
//! `__BOOT_DS` 0x18, RSI = zero page), [`entry_state_64`]; or the 32-bit
//! protocol (`load`, protected mode, paging off, ESI = zero page, EBX =
//! EBP = EDI = 0), [`entry_state_32`], which needs no page tables.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use zerocopy::byteorder::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::acpi::AcpiTables;
use super::pvh::{
    align_up, cmdline_len, EntryState, GuestMemoryMap, PlacementError, FOUR_GIB, HIGH_RAM_START,
    PAGE,
};
use crate::devmodel::{GuestMemory, MemoryFault};

/// Offset of the setup header in the image and in `boot_params`.
pub const SETUP_HEADER_OFFSET: usize = 0x1f1;
/// `boot_flag`.
pub const BOOT_FLAG: u16 = 0xaa55;
/// `header`: "HdrS".
pub const HDRS_MAGIC: [u8; 4] = *b"HdrS";
/// Oldest protocol accepted: 2.12 has `xloadflags`.
pub const MIN_VERSION: u16 = 0x020c;
/// `loadflags`: the protected-mode code is loaded at 0x100000 (bzImage).
pub const LOADED_HIGH: u8 = 1 << 0;
/// `loadflags`: `heap_end_ptr` is valid.
pub const CAN_USE_HEAP: u8 = 1 << 7;
/// `xloadflags`: has the 64-bit entry at `load + 0x200`.
pub const XLF_KERNEL_64: u16 = 1 << 0;
/// `xloadflags`: kernel, boot_params, command line and ramdisk may be
/// above 4 GiB.
pub const XLF_CAN_BE_LOADED_ABOVE_4G: u16 = 1 << 1;
/// `type_of_loader`: undefined loader.
pub const LOADER_TYPE_UNDEFINED: u8 = 0xff;
/// `heap_end_ptr` as GRUB sets it (0xe000 - 0x200; unused when the setup
/// code does not run).
pub const HEAP_END_PTR: u16 = 0xde00;
/// Offset of the 64-bit entry from the load address.
pub const ENTRY64_OFFSET: u64 = 0x200;
/// `boot_params` size.
pub const ZERO_PAGE_LEN: usize = 4096;
/// Most e820 entries in the zero page (`E820_MAX_ENTRIES_ZEROPAGE`).
pub const E820_MAX: usize = 128;

/// Offsets in `struct boot_params` (zero-page.rst).
pub mod zp {
    /// `acpi_rsdp_addr` (u64).
    pub const ACPI_RSDP_ADDR: usize = 0x070;
    /// `ext_ramdisk_image` (u32): `ramdisk_image` high 32 bits.
    pub const EXT_RAMDISK_IMAGE: usize = 0x0c0;
    /// `ext_ramdisk_size` (u32).
    pub const EXT_RAMDISK_SIZE: usize = 0x0c4;
    /// `ext_cmd_line_ptr` (u32).
    pub const EXT_CMD_LINE_PTR: usize = 0x0c8;
    /// `e820_entries` (u8).
    pub const E820_ENTRIES: usize = 0x1e8;
    /// `sentinel` (u8): must stay 0.
    pub const SENTINEL: usize = 0x1ef;
    /// `hdr.type_of_loader` (u8).
    pub const TYPE_OF_LOADER: usize = 0x210;
    /// `hdr.loadflags` (u8).
    pub const LOADFLAGS: usize = 0x211;
    /// `hdr.code32_start` (u32).
    pub const CODE32_START: usize = 0x214;
    /// `hdr.ramdisk_image` (u32).
    pub const RAMDISK_IMAGE: usize = 0x218;
    /// `hdr.ramdisk_size` (u32).
    pub const RAMDISK_SIZE: usize = 0x21c;
    /// `hdr.heap_end_ptr` (u16).
    pub const HEAP_END_PTR: usize = 0x224;
    /// `hdr.cmd_line_ptr` (u32).
    pub const CMD_LINE_PTR: usize = 0x228;
    /// End of the room for the setup header in `boot_params`.
    pub const HDR_END: usize = 0x290;
    /// `e820_table` (20-byte entries).
    pub const E820_TABLE: usize = 0x2d0;
}

/// The setup header (boot.rst, "The Real-Mode Kernel Header"), from 0x1f1
/// through protocol 2.15's `kernel_info_offset`.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct SetupHeader {
    /// Size of the setup in 512-byte sectors (0 means 4).
    pub setup_sects: u8,
    /// Root read-only (obsolete).
    pub root_flags: U16,
    /// Size of the protected-mode code in 16-byte paragraphs.
    pub syssize: U32,
    /// Obsolete.
    pub ram_size: U16,
    /// Video mode.
    pub vid_mode: U16,
    /// Root device.
    pub root_dev: U16,
    /// 0xAA55.
    pub boot_flag: U16,
    /// A short jump; its second byte is where the header ends (+0x202).
    pub jump: U16,
    /// "HdrS".
    pub header: [u8; 4],
    /// Protocol version (major << 8 | minor).
    pub version: U16,
    /// Boot loader hook.
    pub realmode_swtch: U32,
    /// Obsolete.
    pub start_sys_seg: U16,
    /// Pointer to the kernel version string.
    pub kernel_version: U16,
    /// Boot loader identifier.
    pub type_of_loader: u8,
    /// Boot protocol option flags.
    pub loadflags: u8,
    /// Obsolete.
    pub setup_move_size: U16,
    /// 32-bit entry (the protected-mode kernel's default load address).
    pub code32_start: U32,
    /// initrd address.
    pub ramdisk_image: U32,
    /// initrd size.
    pub ramdisk_size: U32,
    /// Obsolete.
    pub bootsect_kludge: U32,
    /// End of the setup heap, minus 0x200.
    pub heap_end_ptr: U16,
    /// Extended boot loader version.
    pub ext_loader_ver: u8,
    /// Extended boot loader type.
    pub ext_loader_type: u8,
    /// Command line address.
    pub cmd_line_ptr: U32,
    /// Highest address the initrd may occupy.
    pub initrd_addr_max: U32,
    /// Physical alignment the kernel needs (if relocatable).
    pub kernel_alignment: U32,
    /// Whether the kernel is relocatable.
    pub relocatable_kernel: u8,
    /// Minimum alignment, as a power of two.
    pub min_alignment: u8,
    /// Boot protocol option flags (2.12).
    pub xloadflags: U16,
    /// Longest command line (without its NUL).
    pub cmdline_size: U32,
    /// Hardware subarchitecture.
    pub hardware_subarch: U32,
    /// Its data.
    pub hardware_subarch_data: U64,
    /// Offset of the compressed payload.
    pub payload_offset: U32,
    /// Its length.
    pub payload_length: U32,
    /// 64-bit pointer to a `setup_data` list.
    pub setup_data: U64,
    /// Preferred load address.
    pub pref_address: U64,
    /// Linear memory the kernel needs from its load address.
    pub init_size: U32,
    /// EFI handover entry.
    pub handover_offset: U32,
    /// Offset of `kernel_info` (2.15).
    pub kernel_info_offset: U32,
}

const _: () = assert!(core::mem::size_of::<SetupHeader>() == 0x26c - SETUP_HEADER_OFFSET);

/// One e820 entry (`struct boot_e820_entry`, packed).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct E820Entry {
    addr: U64,
    size: U64,
    ty: U32,
}

/// Why a bzImage was refused or cannot be placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BzImageError {
    /// Shorter than its setup header, or than the setup it declares.
    TooShort,
    /// No 0xAA55 boot flag.
    NoBootFlag,
    /// No "HdrS".
    NoHeader,
    /// Protocol older than [`MIN_VERSION`].
    OldVersion(u16),
    /// LOADED_HIGH clear: a zImage.
    NotBzImage,
    /// No XLF_KERNEL_64.
    Not64Bit,
    /// The protected-mode kernel is shorter than `syssize` says.
    Truncated {
        /// Bytes the header claims.
        need: u64,
        /// Bytes in the file.
        have: u64,
    },
    /// `kernel_alignment` of a relocatable kernel is not a power of two.
    BadAlignment(u32),
    /// The kernel does not fit at its preferred address and cannot move.
    KernelDoesNotFit {
        /// Load address tried.
        at: u64,
        /// Memory it needs.
        len: u64,
    },
    /// Command line longer than `cmdline_size` or containing a NUL.
    BadCmdline,
    /// The initrd's length differs from the plan's.
    InitrdLength,
    /// Placement in guest memory.
    Place(PlacementError),
    /// Writing guest memory failed.
    Memory(MemoryFault),
}

impl fmt::Display for BzImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TooShort => f.write_str("bzImage too short"),
            Self::NoBootFlag => f.write_str("no 0xAA55 boot flag"),
            Self::NoHeader => f.write_str("no HdrS setup header"),
            Self::OldVersion(v) => write!(
                f,
                "boot protocol {}.{:02} is older than 2.12",
                v >> 8,
                v & 0xff
            ),
            Self::NotBzImage => f.write_str("not a bzImage (LOADED_HIGH clear)"),
            Self::Not64Bit => f.write_str("kernel has no 64-bit entry (XLF_KERNEL_64)"),
            Self::Truncated { need, have } => {
                write!(f, "kernel truncated: {have:#x} of {need:#x} bytes")
            }
            Self::BadAlignment(a) => write!(f, "bad kernel_alignment {a:#x}"),
            Self::KernelDoesNotFit { at, len } => {
                write!(f, "kernel ({len:#x} bytes) does not fit at {at:#x}")
            }
            Self::BadCmdline => f.write_str("command line too long or has a NUL"),
            Self::InitrdLength => f.write_str("initrd length differs from the plan"),
            Self::Place(e) => write!(f, "{e}"),
            Self::Memory(m) => write!(f, "guest memory at {:#x} unreachable", m.gpa),
        }
    }
}

impl From<PlacementError> for BzImageError {
    fn from(e: PlacementError) -> Self {
        BzImageError::Place(e)
    }
}

impl From<MemoryFault> for BzImageError {
    fn from(e: MemoryFault) -> Self {
        BzImageError::Memory(e)
    }
}

/// A parsed bzImage.
#[derive(Clone, Debug)]
pub struct BzImage<'a> {
    image: &'a [u8],
    /// The setup header.
    pub header: SetupHeader,
    /// Bytes of the real-mode part (boot sector and setup).
    pub setup_len: usize,
    /// End of the header in the image (0x202 + the jump's offset byte,
    /// at most [`zp::HDR_END`]).
    pub header_end: usize,
}

impl<'a> BzImage<'a> {
    /// Parses and checks `image`.
    pub fn parse(image: &'a [u8]) -> Result<BzImage<'a>, BzImageError> {
        let tail = image
            .get(SETUP_HEADER_OFFSET..)
            .ok_or(BzImageError::TooShort)?;
        let (header, _) =
            SetupHeader::read_from_prefix(tail).map_err(|_| BzImageError::TooShort)?;
        if header.boot_flag.get() != BOOT_FLAG {
            return Err(BzImageError::NoBootFlag);
        }
        if header.header != HDRS_MAGIC {
            return Err(BzImageError::NoHeader);
        }
        let version = header.version.get();
        if version < MIN_VERSION {
            return Err(BzImageError::OldVersion(version));
        }
        if header.loadflags & LOADED_HIGH == 0 {
            return Err(BzImageError::NotBzImage);
        }
        if header.xloadflags.get() & XLF_KERNEL_64 == 0 {
            return Err(BzImageError::Not64Bit);
        }
        let sects = match header.setup_sects {
            0 => 4,
            n => usize::from(n),
        };
        let setup_len = (sects + 1) * 512;
        let kernel_len = image
            .len()
            .checked_sub(setup_len)
            .filter(|&n| n > 0)
            .ok_or(BzImageError::TooShort)? as u64;
        let need = u64::from(header.syssize.get()) * 16;
        if kernel_len < need {
            return Err(BzImageError::Truncated {
                need,
                have: kernel_len,
            });
        }
        let align = header.kernel_alignment.get();
        if header.relocatable_kernel != 0 && !align.is_power_of_two() {
            return Err(BzImageError::BadAlignment(align));
        }
        // The jump at 0x200 is `eb xx`: the header ends at 0x202 + xx.
        let header_end = (0x202 + usize::from(image[0x201])).min(zp::HDR_END);
        Ok(BzImage {
            image,
            header,
            setup_len,
            header_end,
        })
    }

    /// The protected-mode kernel (loaded at the load address).
    pub fn kernel(&self) -> &'a [u8] {
        &self.image[self.setup_len..]
    }

    /// Memory the kernel needs from its load address: `init_size`, and
    /// at least its own file bytes.
    pub fn memory_needed(&self) -> u64 {
        let file = align_up(self.kernel().len() as u64, PAGE).unwrap_or(u64::MAX);
        u64::from(self.header.init_size.get()).max(file)
    }

    /// Whether the kernel may be loaded elsewhere than `pref_address`.
    pub fn relocatable(&self) -> bool {
        self.header.relocatable_kernel != 0
    }

    /// The highest address + 1 the initrd may reach.
    pub fn initrd_limit(&self) -> u64 {
        if self.header.xloadflags.get() & XLF_CAN_BE_LOADED_ABOVE_4G != 0 {
            u64::MAX
        } else {
            u64::from(self.header.initrd_addr_max.get()) + 1
        }
    }
}

/// How the payload is compressed (by its magic, as the kernel's
/// `decompress_method`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// gzip (1f 8b).
    Gzip,
    /// bzip2 ("BZh").
    Bzip2,
    /// LZMA (5d 00 00).
    Lzma,
    /// xz (fd "7zXZ" 00).
    Xz,
    /// LZO (89 "LZO").
    Lzo,
    /// LZ4 legacy frame (02 21 4c 18).
    Lz4,
    /// Zstandard (28 b5 2f fd).
    Zstd,
    /// Anything else.
    Unknown,
}

impl Compression {
    /// The compression `data` starts with.
    pub fn detect(data: &[u8]) -> Compression {
        const MAGICS: [(&[u8], Compression); 7] = [
            (&[0x1f, 0x8b], Compression::Gzip),
            (b"BZh", Compression::Bzip2),
            (&[0x5d, 0x00, 0x00], Compression::Lzma),
            (&[0xfd, b'7', b'z', b'X', b'Z', 0x00], Compression::Xz),
            (&[0x89, b'L', b'Z', b'O'], Compression::Lzo),
            (&LZ4_LEGACY_MAGIC.to_le_bytes(), Compression::Lz4),
            (&[0x28, 0xb5, 0x2f, 0xfd], Compression::Zstd),
        ];
        MAGICS
            .iter()
            .find(|(m, _)| data.starts_with(m))
            .map_or(Compression::Unknown, |&(_, c)| c)
    }
}

/// Why the payload could not be unpacked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadError {
    /// No payload (`payload_length` 0) or it lies outside the file.
    Missing,
    /// A compression this decoder does not do.
    Unsupported(Compression),
    /// The compressed stream is malformed at this input offset.
    Corrupt(usize),
    /// It unpacks to more than [`MAX_PAYLOAD`] bytes, or to another
    /// length than its trailer says.
    BadLength,
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Missing => f.write_str("no kernel payload"),
            Self::Unsupported(c) => write!(f, "{c:?} payloads are not supported"),
            Self::Corrupt(at) => write!(f, "corrupt payload at {at:#x}"),
            Self::BadLength => f.write_str("payload length mismatch"),
        }
    }
}

/// LZ4 legacy frame magic.
pub const LZ4_LEGACY_MAGIC: u32 = 0x184c_2102;
/// Largest uncompressed block of an LZ4 legacy frame (8 MiB).
const LZ4_LEGACY_BLOCK: usize = 8 << 20;
/// Largest unpacked payload accepted (256 MiB).
pub const MAX_PAYLOAD: usize = 256 << 20;

/// Unpacks an LZ4 legacy frame as the kernel's `unlz4` reads it: the
/// magic, then blocks (a u32 compressed size, then an LZ4 block of at
/// most 8 MiB output), repeated frames allowed, and the kernel build's
/// trailing u32 of the unpacked size (checked when present).
pub fn unlz4_legacy(input: &[u8]) -> Result<Vec<u8>, PayloadError> {
    let mut out = Vec::new();
    unlz4_legacy_stream(input, &mut |_, bytes: &[u8]| {
        out.extend_from_slice(bytes);
        Ok::<(), ()>(())
    })
    .map_err(|e| match e {
        StreamError::Payload(p) => p,
        StreamError::Sink(()) => PayloadError::BadLength,
    })?;
    Ok(out)
}

/// Why [`unlz4_legacy_stream`] stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamError<E> {
    /// The frame is malformed (or unpacks to too much).
    Payload(PayloadError),
    /// The sink refused a piece.
    Sink(E),
}

/// Where [`unlz4_legacy_stream`] sends the unpacked bytes:
/// `(offset, bytes)`, in order.
pub type Sink<'s, E> = dyn FnMut(u64, &[u8]) -> Result<(), E> + 's;

/// Bytes of output kept for matches to copy from: an LZ4 match reaches at
/// most 65,535 bytes back.
const LZ4_HISTORY: usize = 64 << 10;
/// Output gathered before it goes to the sink (history included).
const LZ4_WINDOW: usize = 4 * LZ4_HISTORY;

/// The decoder's output side: a window whose last [`LZ4_HISTORY`] bytes
/// stay for matches after the rest has gone to the sink.
struct Lz4Out<'s, E> {
    buf: Vec<u8>,
    /// `buf[..sent]` has gone to the sink.
    sent: usize,
    /// Unpacked offset of `buf[0]`.
    base: u64,
    /// Unpacked bytes of the current block.
    in_block: usize,
    sink: &'s mut Sink<'s, E>,
}

impl<E> Lz4Out<'_, E> {
    fn total(&self) -> u64 {
        self.base + self.buf.len() as u64
    }

    /// Room for `n` more bytes of this block, within every limit.
    fn reserve(&mut self, n: usize) -> Result<(), StreamError<E>> {
        let over = self
            .in_block
            .checked_add(n)
            .is_none_or(|b| b > LZ4_LEGACY_BLOCK)
            || self.total() + n as u64 > MAX_PAYLOAD as u64;
        if over {
            return Err(StreamError::Payload(PayloadError::BadLength));
        }
        self.in_block += n;
        Ok(())
    }

    /// Sends what is not yet sent; keeps the history.
    fn flush(&mut self) -> Result<(), StreamError<E>> {
        if self.sent < self.buf.len() {
            (self.sink)(self.base + self.sent as u64, &self.buf[self.sent..])
                .map_err(StreamError::Sink)?;
            self.sent = self.buf.len();
        }
        if self.buf.len() > LZ4_HISTORY {
            let drop = self.buf.len() - LZ4_HISTORY;
            self.buf.drain(..drop);
            self.base += drop as u64;
            self.sent -= drop;
        }
        Ok(())
    }

    fn literals(&mut self, mut lits: &[u8]) -> Result<(), StreamError<E>> {
        self.reserve(lits.len())?;
        while !lits.is_empty() {
            let room = LZ4_WINDOW.saturating_sub(self.buf.len()).max(1);
            let (now, rest) = lits.split_at(room.min(lits.len()));
            self.buf.extend_from_slice(now);
            lits = rest;
            if self.buf.len() >= LZ4_WINDOW {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Copies `len` bytes from `off` back (overlapping copies repeat).
    fn copy_match(&mut self, off: usize, len: usize) -> Result<(), StreamError<E>> {
        let before = self.in_block;
        self.reserve(len)?;
        if off == 0 || off > before || off > self.buf.len() {
            return Err(StreamError::Payload(PayloadError::Corrupt(0)));
        }
        let mut left = len;
        while left > 0 {
            if self.buf.len() >= LZ4_WINDOW {
                self.flush()?;
            }
            let from = self.buf.len() - off;
            // At most `off` bytes at a time: a source that overlaps its
            // own output repeats, as LZ4 means it to.
            let n = left.min(off).min(LZ4_WINDOW - self.buf.len());
            self.buf.extend_from_within(from..from + n);
            left -= n;
        }
        Ok(())
    }
}

/// [`unlz4_legacy`] without holding the output: the unpacked bytes go to
/// `sink(offset, bytes)` in order, in pieces of up to 256 KiB, using
/// 256 KiB of memory whatever the payload's size (a 50 MiB `vmlinux`
/// unpacks in Dom0's small heap this way).
pub fn unlz4_legacy_stream<E>(input: &[u8], sink: &mut Sink<'_, E>) -> Result<u64, StreamError<E>> {
    let word = |at: usize| {
        input
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    if word(0) != Some(LZ4_LEGACY_MAGIC) {
        return Err(StreamError::Payload(PayloadError::Unsupported(
            Compression::detect(input),
        )));
    }
    let mut out = Lz4Out {
        buf: Vec::with_capacity(LZ4_WINDOW),
        sent: 0,
        base: 0,
        in_block: 0,
        sink,
    };
    let corrupt = |at: usize| StreamError::Payload(PayloadError::Corrupt(at));
    let mut at = 4;
    while at < input.len() {
        let Some(size) = word(at) else {
            return Err(corrupt(at));
        };
        if size == LZ4_LEGACY_MAGIC {
            at += 4;
            continue;
        }
        let start = at + 4;
        let Some(block) = input.get(start..start + size as usize) else {
            // Only the 4-byte size trailer may be left over.
            if start == input.len() {
                if u64::from(size) != out.total() {
                    return Err(StreamError::Payload(PayloadError::BadLength));
                }
                break;
            }
            return Err(corrupt(at));
        };
        out.in_block = 0;
        lz4_block(block, &mut out).map_err(|e| match e {
            (StreamError::Payload(PayloadError::Corrupt(_)), i)
            | (StreamError::Payload(PayloadError::BadLength), i) => corrupt(start + i),
            (e, _) => e,
        })?;
        at = start + size as usize;
    }
    out.flush()?;
    Ok(out.total())
}

/// Decodes one LZ4 block (lz4's block format: sequences of a token,
/// literals and a match) onto `out`; an error comes with the input
/// offset.
fn lz4_block<E>(b: &[u8], out: &mut Lz4Out<'_, E>) -> Result<(), (StreamError<E>, usize)> {
    let bad = |i: usize| (StreamError::Payload(PayloadError::Corrupt(i)), i);
    let mut i = 0;
    let length = |i: &mut usize, mut n: usize| -> Result<usize, usize> {
        if n == 15 {
            loop {
                let x = *b.get(*i).ok_or(*i)?;
                *i += 1;
                n = n.checked_add(usize::from(x)).ok_or(*i)?;
                if x != 255 {
                    break;
                }
            }
        }
        Ok(n)
    };
    while i < b.len() {
        let token = b[i];
        i += 1;
        let lit = length(&mut i, usize::from(token >> 4)).map_err(bad)?;
        let lits = i
            .checked_add(lit)
            .and_then(|end| b.get(i..end))
            .ok_or_else(|| bad(i))?;
        out.literals(lits).map_err(|e| (e, i))?;
        i += lit;
        if i == b.len() {
            break; // the last sequence has no match
        }
        let off = b.get(i..i + 2).ok_or_else(|| bad(i))?;
        let off = usize::from(u16::from_le_bytes([off[0], off[1]]));
        i += 2;
        let len = length(&mut i, usize::from(token & 15)).map_err(bad)? + 4;
        out.copy_match(off, len).map_err(|e| (e, i))?;
    }
    Ok(())
}

impl<'a> BzImage<'a> {
    /// The compressed kernel (`payload_offset` from the protected-mode
    /// kernel's start, `payload_length` bytes) and its compression.
    pub fn payload(&self) -> Option<(Compression, &'a [u8])> {
        let off = self.header.payload_offset.get() as usize;
        let len = self.header.payload_length.get() as usize;
        let p = self.kernel().get(off..off.checked_add(len)?)?;
        (len > 0).then(|| (Compression::detect(p), p))
    }

    /// The uncompressed `vmlinux` (an ELF with the PVH entry note, for
    /// [`super::pvh::PhysElf`]), if its compression is LZ4.
    pub fn decompress_payload(&self) -> Result<Vec<u8>, PayloadError> {
        let (c, p) = self.payload().ok_or(PayloadError::Missing)?;
        match c {
            Compression::Lz4 => unlz4_legacy(p),
            other => Err(PayloadError::Unsupported(other)),
        }
    }
}

/// Where everything goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BzLayout {
    /// Load address of the protected-mode kernel.
    pub kernel: u64,
    /// `[kernel, kernel + kernel_len)` is reserved for it (`init_size`).
    pub kernel_len: u64,
    /// The boot data: zero page, page tables, GDT, command line.
    pub boot_data: u64,
    /// Its length.
    pub boot_data_len: u64,
    /// The zero page (`boot_params`).
    pub zero_page: u64,
    /// The PML4 of the identity map (for the 64-bit entry).
    pub page_tables: u64,
    /// The GDT of the 64-bit entry (`__BOOT_CS` 64-bit code,
    /// `__BOOT_DS`); the 32-bit entry's follows it at `gdt + 32`.
    pub gdt: u64,
    /// The command line (0: none).
    pub cmdline: u64,
    /// The initrd `[start, end)`.
    pub initrd: Option<(u64, u64)>,
    /// The 64-bit entry (`kernel + 0x200`).
    pub entry64: u64,
    /// The 32-bit entry (`kernel`).
    pub entry32: u64,
    /// `acpi_rsdp_addr` (0: none).
    pub rsdp: u64,
}

/// Offsets in the boot data.
const BD_ZERO_PAGE: u64 = 0;
const BD_PAGE_TABLES: u64 = 0x1000;
/// PML4, PDPT and four page directories of 2 MiB pages: the low 4 GiB.
const PT_PAGES: u64 = 6;
const BD_GDT: u64 = BD_PAGE_TABLES + PT_PAGES * PAGE;
const GDT_LEN: u64 = 4 * 8;
const BD_CMDLINE: u64 = BD_GDT + 2 * GDT_LEN;

/// Plans a bzImage guest with `map`'s memory: the kernel at
/// `pref_address` if `[pref, pref + init_size)` is RAM, else (if
/// relocatable) at the lowest `kernel_alignment`-aligned address above
/// 1 MiB where it fits; boot data low; the initrd page aligned as high as
/// RAM and `initrd_addr_max` allow.
pub fn plan(
    bz: &BzImage,
    map: &GuestMemoryMap,
    cmdline: &[u8],
    initrd_len: u64,
    acpi: Option<&AcpiTables>,
) -> Result<BzLayout, BzImageError> {
    let max_cmd = bz.header.cmdline_size.get() as usize;
    let cmd_len = if cmdline.is_empty() {
        0
    } else {
        cmdline_len(cmdline, max_cmd.saturating_add(1)).ok_or(BzImageError::BadCmdline)? as u64
    };
    if let Some(a) = acpi {
        map.check_acpi(a)?;
    }
    let need = bz.memory_needed();
    let align = if bz.relocatable() {
        u64::from(bz.header.kernel_alignment.get()).max(PAGE)
    } else {
        1
    };
    let pref = bz.header.pref_address.get();
    let pref = align_up(pref, align).unwrap_or(pref);
    let fits = |a: u64| {
        a.checked_add(need)
            .is_some_and(|e| e <= FOUR_GIB && map.is_ram(a, e))
    };
    let kernel = if fits(pref) {
        pref
    } else if bz.relocatable() {
        map.ram_ranges()
            .filter_map(|(s, _)| align_up(s.max(HIGH_RAM_START), align))
            .find(|&a| fits(a))
            .ok_or(BzImageError::KernelDoesNotFit {
                at: pref,
                len: need,
            })?
    } else {
        return Err(BzImageError::KernelDoesNotFit {
            at: pref,
            len: need,
        });
    };
    let mut avoid = vec![(kernel, kernel + need)];
    let boot_data_len = BD_CMDLINE + cmd_len;
    let boot_data = map.place_boot_data("boot data", boot_data_len, &avoid)?;
    avoid.push((boot_data, boot_data + boot_data_len));
    let initrd = if initrd_len > 0 {
        let len = align_up(initrd_len, PAGE).ok_or(PlacementError::NoRoom {
            what: "initrd",
            len: initrd_len,
        })?;
        let at = map.place_high(
            "initrd",
            len,
            PAGE,
            HIGH_RAM_START,
            bz.initrd_limit(),
            &avoid,
        )?;
        Some((at, at + initrd_len))
    } else {
        None
    };
    Ok(BzLayout {
        kernel,
        kernel_len: need,
        boot_data,
        boot_data_len,
        zero_page: boot_data + BD_ZERO_PAGE,
        page_tables: boot_data + BD_PAGE_TABLES,
        gdt: boot_data + BD_GDT,
        cmdline: if cmd_len > 0 {
            boot_data + BD_CMDLINE
        } else {
            0
        },
        initrd,
        entry64: kernel + ENTRY64_OFFSET,
        entry32: kernel,
        rsdp: acpi.map_or(0, AcpiTables::rsdp_paddr),
    })
}

fn put(b: &mut [u8], at: usize, v: &[u8]) {
    b[at..at + v.len()].copy_from_slice(v);
}

/// The zero page: the image's setup header copied into `hdr` (0x1f1 up to
/// the header's end), the loader's fields set, the e820 table from `map`.
pub fn zero_page(bz: &BzImage, l: &BzLayout, map: &GuestMemoryMap) -> Vec<u8> {
    let mut b = vec![0u8; ZERO_PAGE_LEN];
    let hdr = SETUP_HEADER_OFFSET..bz.header_end;
    b[hdr.clone()].copy_from_slice(&bz.image[hdr]);
    b[zp::TYPE_OF_LOADER] = LOADER_TYPE_UNDEFINED;
    b[zp::LOADFLAGS] |= LOADED_HIGH | CAN_USE_HEAP;
    put(&mut b, zp::HEAP_END_PTR, &HEAP_END_PTR.to_le_bytes());
    // The kernel is not at its default 0x100000: say where it is.
    put(&mut b, zp::CODE32_START, &(l.kernel as u32).to_le_bytes());
    put(&mut b, zp::CMD_LINE_PTR, &(l.cmdline as u32).to_le_bytes());
    put(
        &mut b,
        zp::EXT_CMD_LINE_PTR,
        &((l.cmdline >> 32) as u32).to_le_bytes(),
    );
    let (ri, rs) = l.initrd.map_or((0, 0), |(s, e)| (s, e - s));
    put(&mut b, zp::RAMDISK_IMAGE, &(ri as u32).to_le_bytes());
    put(&mut b, zp::RAMDISK_SIZE, &(rs as u32).to_le_bytes());
    put(
        &mut b,
        zp::EXT_RAMDISK_IMAGE,
        &((ri >> 32) as u32).to_le_bytes(),
    );
    put(
        &mut b,
        zp::EXT_RAMDISK_SIZE,
        &((rs >> 32) as u32).to_le_bytes(),
    );
    put(&mut b, zp::ACPI_RSDP_ADDR, &l.rsdp.to_le_bytes());
    let entries = &map.entries()[..map.entries().len().min(E820_MAX)];
    b[zp::E820_ENTRIES] = entries.len() as u8;
    for (i, e) in entries.iter().enumerate() {
        let ent = E820Entry {
            addr: U64::new(e.addr),
            size: U64::new(e.size),
            ty: U32::new(e.r#type),
        };
        put(&mut b, zp::E820_TABLE + i * 20, ent.as_bytes());
    }
    b
}

/// Page-table entry bits.
const PTE_P: u64 = 1 << 0;
const PTE_RW: u64 = 1 << 1;
const PTE_PS: u64 = 1 << 7;

/// An identity map of `[0, 4 GiB)` with 2 MiB pages, for tables at `at`:
/// PML4, PDPT, then four page directories (6 pages).
pub fn identity_page_tables(at: u64) -> Vec<u8> {
    let mut b = vec![0u8; (PT_PAGES * PAGE) as usize];
    let pdpt = at + PAGE;
    put(&mut b, 0, &(pdpt | PTE_P | PTE_RW).to_le_bytes());
    for i in 0..4u64 {
        let pd = at + (2 + i) * PAGE;
        put(
            &mut b,
            (PAGE + i * 8) as usize,
            &(pd | PTE_P | PTE_RW).to_le_bytes(),
        );
        for j in 0..512u64 {
            let frame = (i * 512 + j) << 21;
            let at = ((2 + i) * PAGE + j * 8) as usize;
            put(&mut b, at, &(frame | PTE_P | PTE_RW | PTE_PS).to_le_bytes());
        }
    }
    b
}

/// A GDT: null, null, `__BOOT_CS` (0x10: 64-bit code if `long`, else
/// 32-bit code; execute/read, flat), `__BOOT_DS` (0x18: flat read/write)
/// (0x18: flat data), as the 64-bit protocol asks.
fn gdt(long: bool) -> [u8; GDT_LEN as usize] {
    let mut g = [0u8; GDT_LEN as usize];
    let cs: u64 = if long {
        0x00af_9b00_0000_ffff
    } else {
        0x00cf_9b00_0000_ffff
    };
    g[16..24].copy_from_slice(&cs.to_le_bytes());
    g[24..32].copy_from_slice(&0x00cf_9300_0000_ffffu64.to_le_bytes());
    g
}

/// The boot data blob to copy to `l.boot_data`.
pub fn boot_data(bz: &BzImage, l: &BzLayout, map: &GuestMemoryMap, cmdline: &[u8]) -> Vec<u8> {
    let mut b = zero_page(bz, l, map);
    b.extend_from_slice(&identity_page_tables(l.page_tables));
    b.extend_from_slice(&gdt(true));
    b.extend_from_slice(&gdt(false));
    b.resize(BD_CMDLINE as usize, 0);
    if l.cmdline != 0 {
        b.extend_from_slice(cmdline);
        b.push(0);
    }
    b
}

/// The first vCPU at the 64-bit entry: long mode on the identity map,
/// RSI = zero page.
pub fn entry_state_64(l: &BzLayout) -> EntryState {
    EntryState {
        rsi: l.zero_page,
        gdt_base: l.gdt,
        gdt_limit: (GDT_LEN - 1) as u16,
        ..EntryState::long64(l.entry64, l.page_tables)
    }
}

/// The first vCPU at the 32-bit entry: protected mode, paging off, ESI =
/// zero page, EBX = EBP = EDI = 0.
pub fn entry_state_32(l: &BzLayout) -> EntryState {
    EntryState {
        rsi: l.zero_page,
        gdt_base: l.gdt + GDT_LEN,
        gdt_limit: (GDT_LEN - 1) as u16,
        ..EntryState::protected32(l.entry32 as u32)
    }
}

/// Writes the kernel, ACPI tables, boot data and initrd; returns the
/// 64-bit entry state.
pub fn write(
    bz: &BzImage,
    l: &BzLayout,
    map: &GuestMemoryMap,
    cmdline: &[u8],
    initrd: &[u8],
    acpi: Option<&AcpiTables>,
    mem: &mut dyn GuestMemory,
) -> Result<EntryState, BzImageError> {
    if l.initrd.map_or(0, |(s, e)| e - s) != initrd.len() as u64 {
        return Err(BzImageError::InitrdLength);
    }
    mem.write(l.kernel, bz.kernel())?;
    if let Some(a) = acpi {
        mem.write(a.base, &a.bytes)?;
    }
    mem.write(l.boot_data, &boot_data(bz, l, map, cmdline))?;
    if let Some((s, _)) = l.initrd {
        mem.write(s, initrd)?;
    }
    Ok(entry_state_64(l))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::builder::acpi::{self, AcpiConfig};
    use crate::builder::pvh::{EntryMode, ACPI_BASE, BELOW_4G_RAM_END};
    use crate::devmodel::testmem::Sparse;

    const MIB: u64 = 1 << 20;

    /// Header fields a test may change.
    #[derive(Clone, Copy)]
    pub(crate) struct Spec {
        setup_sects: u8,
        version: u16,
        loadflags: u8,
        xloadflags: u16,
        relocatable: u8,
        kernel_alignment: u32,
        pref_address: u64,
        init_size: u32,
        initrd_addr_max: u32,
        cmdline_size: u32,
        kernel_len: usize,
    }

    pub(crate) const SPEC: Spec = Spec {
        setup_sects: 4,
        version: 0x020f,
        loadflags: LOADED_HIGH,
        xloadflags: XLF_KERNEL_64,
        relocatable: 1,
        kernel_alignment: 0x20_0000,
        pref_address: 0x100_0000,
        init_size: 0x200_0000,
        initrd_addr_max: 0x7fff_ffff,
        cmdline_size: 2047,
        kernel_len: 0x3000,
    };

    /// A bzImage as the kernel's build writes one: boot sector with the
    /// header, setup sectors, the protected-mode kernel.
    pub(crate) fn bzimage(s: Spec) -> Vec<u8> {
        let sects = if s.setup_sects == 0 {
            4
        } else {
            s.setup_sects as usize
        };
        let setup = (sects + 1) * 512;
        let mut b = vec![0u8; setup + s.kernel_len];
        for (i, x) in b[setup..].iter_mut().enumerate() {
            *x = (i % 251) as u8;
        }
        b[0x1f1] = s.setup_sects;
        put(&mut b, 0x1f4, &((s.kernel_len / 16) as u32).to_le_bytes());
        put(&mut b, 0x1fa, &0xffffu16.to_le_bytes()); // vid_mode: normal
        put(&mut b, 0x1fe, &BOOT_FLAG.to_le_bytes());
        b[0x200] = 0xeb;
        b[0x201] = 0x6a; // header ends at 0x26c
        put(&mut b, 0x202, b"HdrS");
        put(&mut b, 0x206, &s.version.to_le_bytes());
        b[0x211] = s.loadflags;
        put(&mut b, 0x214, &0x10_0000u32.to_le_bytes());
        put(&mut b, 0x22c, &s.initrd_addr_max.to_le_bytes());
        put(&mut b, 0x230, &s.kernel_alignment.to_le_bytes());
        b[0x234] = s.relocatable;
        put(&mut b, 0x236, &s.xloadflags.to_le_bytes());
        put(&mut b, 0x238, &s.cmdline_size.to_le_bytes());
        put(&mut b, 0x258, &s.pref_address.to_le_bytes());
        put(&mut b, 0x260, &s.init_size.to_le_bytes());
        // Setup code right after the header: must not be copied.
        b[0x26c..0x290].fill(0xcc);
        b
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }

    #[test]
    fn parses_the_header() {
        let img = bzimage(SPEC);
        let bz = BzImage::parse(&img).unwrap();
        assert_eq!(bz.setup_len, 5 * 512);
        assert_eq!(bz.kernel().len(), 0x3000);
        assert_eq!(bz.kernel()[1], 1);
        assert_eq!(bz.header.version.get(), 0x020f);
        assert_eq!(bz.header.pref_address.get(), 0x100_0000);
        assert_eq!(bz.header_end, 0x26c);
        assert_eq!(bz.memory_needed(), 0x200_0000);
        assert!(bz.relocatable());
        assert_eq!(bz.initrd_limit(), 0x8000_0000);
        // setup_sects 0 means 4.
        let img = bzimage(Spec {
            setup_sects: 0,
            ..SPEC
        });
        assert_eq!(BzImage::parse(&img).unwrap().setup_len, 5 * 512);
        let img = bzimage(Spec {
            setup_sects: 30,
            ..SPEC
        });
        assert_eq!(BzImage::parse(&img).unwrap().setup_len, 31 * 512);
    }

    #[test]
    fn plan_zero_page_and_entry() {
        let img = bzimage(SPEC);
        let bz = BzImage::parse(&img).unwrap();
        let map = GuestMemoryMap::new(256 * MIB).unwrap();
        let tables = acpi::build(&AcpiConfig::hvm(2, ACPI_BASE)).unwrap();
        let cmd = b"console=ttyS0 earlyprintk=serial";
        let l = plan(&bz, &map, cmd, 0x10_0001, Some(&tables)).unwrap();
        assert_eq!(l.kernel, 0x100_0000, "pref_address");
        assert_eq!(l.entry64, 0x100_0200);
        assert_eq!(l.entry32, 0x100_0000);
        assert_eq!(l.zero_page, 0x1000);
        assert_eq!(l.zero_page % PAGE, 0);
        let (is, ie) = l.initrd.unwrap();
        assert_eq!(ie - is, 0x10_0001);
        assert_eq!(is % PAGE, 0);
        assert_eq!(is, 256 * MIB - 0x10_1000, "as high as RAM allows");

        let mut mem = Sparse::new(256 * MIB);
        let initrd = vec![7u8; 0x10_0001];
        let st = write(&bz, &l, &map, cmd, &initrd, Some(&tables), &mut mem).unwrap();
        assert_eq!(st.mode, EntryMode::Long64);
        assert_eq!(st.rip, 0x100_0200);
        assert_eq!(st.rsi, l.zero_page);
        assert_eq!(st.cr3, l.page_tables);
        assert_eq!(st.cs, 0x10);
        assert_eq!(st.ds, 0x18);
        let s32 = entry_state_32(&l);
        assert_eq!(s32.mode, EntryMode::Protected32);
        assert_eq!(
            (s32.rip, s32.rsi, s32.rbx, s32.cr0 & (1 << 31)),
            (0x100_0000, l.zero_page, 0, 0)
        );

        // The kernel is where it should be.
        assert_eq!(mem.get(l.kernel, 4), vec![0, 1, 2, 3]);
        let z = mem.get(l.zero_page, ZERO_PAGE_LEN);
        // Header copied, setup code not.
        assert_eq!(&z[0x202..0x206], b"HdrS");
        assert_eq!(u32_at(&z, 0x1fe) & 0xffff, 0xaa55);
        assert_eq!(u64_at(&z, 0x258), 0x100_0000);
        assert_eq!(&z[0x26c..0x290], &[0; 0x24]);
        assert_eq!(z[zp::SENTINEL], 0);
        // Loader fields.
        assert_eq!(z[zp::TYPE_OF_LOADER], 0xff);
        assert_eq!(
            z[zp::LOADFLAGS] & (LOADED_HIGH | CAN_USE_HEAP),
            LOADED_HIGH | CAN_USE_HEAP
        );
        assert_eq!(u32_at(&z, zp::HEAP_END_PTR) & 0xffff, 0xde00);
        assert_eq!(u32_at(&z, zp::CODE32_START), 0x100_0000);
        assert_eq!(u64::from(u32_at(&z, zp::CMD_LINE_PTR)), l.cmdline);
        assert_eq!(
            mem.get(l.cmdline, cmd.len() + 1),
            [&cmd[..], b"\0"].concat()
        );
        assert_eq!(u64::from(u32_at(&z, zp::RAMDISK_IMAGE)), is);
        assert_eq!(u32_at(&z, zp::RAMDISK_SIZE), 0x10_0001);
        assert_eq!(u32_at(&z, zp::EXT_RAMDISK_IMAGE), 0);
        assert_eq!(u64_at(&z, zp::ACPI_RSDP_ADDR), tables.rsdp_paddr());
        assert_eq!(mem.get(tables.rsdp_paddr(), 8), b"RSD PTR ");
        // e820.
        assert_eq!(z[zp::E820_ENTRIES], 3);
        let e = |i: usize| {
            let at = zp::E820_TABLE + i * 20;
            (u64_at(&z, at), u64_at(&z, at + 8), u32_at(&z, at + 16))
        };
        assert_eq!(e(0), (0, 0xa0000, 1));
        assert_eq!(e(1), (0xe0000, 0x20000, 2));
        assert_eq!(e(2), (MIB, 255 * MIB, 1));
        assert_eq!(e(3), (0, 0, 0));
        assert_eq!(mem.get(is + 0x10_0000, 2), vec![7, 0]);

        // Page tables: PML4[0] → PDPT, PDPT[3] → PD 3, PD 0 [8] = 16 MiB.
        let pt = mem.get(l.page_tables, (6 * PAGE) as usize);
        assert_eq!(u64_at(&pt, 0), (l.page_tables + PAGE) | 3);
        assert_eq!(
            u64_at(&pt, (PAGE + 24) as usize),
            (l.page_tables + 5 * PAGE) | 3
        );
        assert_eq!(u64_at(&pt, (2 * PAGE + 64) as usize), 0x100_0000 | 0x83);
        assert_eq!(
            u64_at(&pt, (5 * PAGE + 511 * 8) as usize),
            (FOUR_GIB - 2 * MIB) | 0x83
        );
        // GDT.
        let g = mem.get(l.gdt, 32);
        assert_eq!(u64_at(&g, 16), 0x00af_9b00_0000_ffff);
        assert_eq!((st.gdt_base, st.gdt_limit), (l.gdt, 31));
        let g32 = mem.get(s32.gdt_base, 32);
        assert_eq!(u64_at(&g32, 16), 0x00cf_9b00_0000_ffff, "32-bit __BOOT_CS");
        assert_eq!(u64_at(&g32, 24), 0x00cf_9300_0000_ffff);
    }

    #[test]
    fn initrd_respects_initrd_addr_max_and_goes_high_when_allowed() {
        let map = GuestMemoryMap::new(5 << 30).unwrap();
        let img = bzimage(Spec {
            initrd_addr_max: 0x37ff_ffff,
            ..SPEC
        });
        let bz = BzImage::parse(&img).unwrap();
        let l = plan(&bz, &map, b"", 0x5000, None).unwrap();
        assert_eq!(l.initrd.unwrap(), (0x3800_0000 - 0x5000, 0x3800_0000));
        assert_eq!(l.cmdline, 0);
        // XLF_CAN_BE_LOADED_ABOVE_4G: at the top of RAM above 4 GiB, and
        // the ext_ fields carry the high bits.
        let img = bzimage(Spec {
            xloadflags: XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G,
            ..SPEC
        });
        let bz = BzImage::parse(&img).unwrap();
        let l = plan(&bz, &map, b"", 0x5000, None).unwrap();
        let top = FOUR_GIB + (5 << 30) - BELOW_4G_RAM_END;
        assert_eq!(l.initrd.unwrap(), (top - 0x5000, top));
        let z = zero_page(&bz, &l, &map);
        assert_eq!(u32_at(&z, zp::EXT_RAMDISK_IMAGE), 1);
        assert_eq!(
            u64::from(u32_at(&z, zp::RAMDISK_IMAGE)),
            (top - 0x5000) & 0xffff_ffff
        );
        assert_eq!(z[zp::E820_ENTRIES], 4);
    }

    #[test]
    fn kernel_moves_when_pref_address_does_not_fit() {
        // pref_address 1 GiB is beyond 40 MiB of RAM; relocatable: it moves.
        let map = GuestMemoryMap::new(40 * MIB).unwrap();
        let img = bzimage(Spec {
            pref_address: 0x4000_0000,
            ..SPEC
        });
        let bz = BzImage::parse(&img).unwrap();
        let l = plan(&bz, &map, b"", 0, None).unwrap();
        assert_eq!(l.kernel, 2 * MIB, "first 2 MiB-aligned address above 1 MiB");
        // Not relocatable: refused.
        let img = bzimage(Spec {
            pref_address: 0x4000_0000,
            relocatable: 0,
            ..SPEC
        });
        let bz = BzImage::parse(&img).unwrap();
        assert_eq!(
            plan(&bz, &map, b"", 0, None),
            Err(BzImageError::KernelDoesNotFit {
                at: 0x4000_0000,
                len: 0x200_0000
            })
        );
    }

    #[test]
    fn kernel_bigger_than_ram_is_refused() {
        let map = GuestMemoryMap::new(16 * MIB).unwrap();
        let img = bzimage(Spec {
            init_size: 0x1000_0000,
            ..SPEC
        });
        let bz = BzImage::parse(&img).unwrap();
        assert!(matches!(
            plan(&bz, &map, b"", 0, None),
            Err(BzImageError::KernelDoesNotFit { .. })
        ));
        // Kernel fits, initrd does not.
        let img = bzimage(SPEC);
        let bz = BzImage::parse(&img).unwrap();
        let map = GuestMemoryMap::new(48 * MIB).unwrap();
        assert!(matches!(
            plan(&bz, &map, b"", 40 * MIB, None),
            Err(BzImageError::Place(PlacementError::NoRoom {
                what: "initrd",
                ..
            }))
        ));
    }

    #[test]
    fn command_line_limits() {
        let img = bzimage(Spec {
            cmdline_size: 8,
            ..SPEC
        });
        let bz = BzImage::parse(&img).unwrap();
        let map = GuestMemoryMap::new(64 * MIB).unwrap();
        assert!(plan(&bz, &map, b"12345678", 0, None).is_ok());
        assert_eq!(
            plan(&bz, &map, b"123456789", 0, None),
            Err(BzImageError::BadCmdline)
        );
        assert_eq!(
            plan(&bz, &map, b"a\0b", 0, None),
            Err(BzImageError::BadCmdline)
        );
    }

    #[test]
    fn malformed_images_are_refused() {
        let good = bzimage(SPEC);
        assert_eq!(BzImage::parse(&[]).unwrap_err(), BzImageError::TooShort);
        assert_eq!(
            BzImage::parse(&good[..0x200]).unwrap_err(),
            BzImageError::TooShort
        );
        // Setup only, no kernel.
        assert_eq!(
            BzImage::parse(&good[..5 * 512]).unwrap_err(),
            BzImageError::TooShort
        );
        // Kernel cut short of syssize.
        assert_eq!(
            BzImage::parse(&good[..good.len() - 16]).unwrap_err(),
            BzImageError::Truncated {
                need: 0x3000,
                have: 0x3000 - 16
            }
        );
        let mut b = good.clone();
        b[0x1fe] = 0;
        assert_eq!(BzImage::parse(&b).unwrap_err(), BzImageError::NoBootFlag);
        let mut b = good.clone();
        b[0x202] = b'X';
        assert_eq!(BzImage::parse(&b).unwrap_err(), BzImageError::NoHeader);
        let b = bzimage(Spec {
            version: 0x020b,
            ..SPEC
        });
        assert_eq!(
            BzImage::parse(&b).unwrap_err(),
            BzImageError::OldVersion(0x020b)
        );
        let b = bzimage(Spec {
            loadflags: 0,
            ..SPEC
        });
        assert_eq!(BzImage::parse(&b).unwrap_err(), BzImageError::NotBzImage);
        let b = bzimage(Spec {
            xloadflags: 0,
            ..SPEC
        });
        assert_eq!(BzImage::parse(&b).unwrap_err(), BzImageError::Not64Bit);
        let b = bzimage(Spec {
            kernel_alignment: 0x30_0000,
            ..SPEC
        });
        assert_eq!(
            BzImage::parse(&b).unwrap_err(),
            BzImageError::BadAlignment(0x30_0000)
        );
        // A huge setup_sects on a small file.
        let mut b = good.clone();
        b[0x1f1] = 0xff;
        assert_eq!(BzImage::parse(&b).unwrap_err(), BzImageError::TooShort);
        // No truncation panics.
        for n in 0..good.len() {
            let _ = BzImage::parse(&good[..n]);
        }
    }

    /// Corrupted headers are refused or planned, never a panic.
    #[test]
    fn mutated_images_never_panic() {
        let map = GuestMemoryMap::new(64 * MIB).unwrap();
        let mut rng = crate::devmodel::testmem::Rng(11);
        let good = bzimage(SPEC);
        for _ in 0..5000 {
            let mut img = rng.mutate(&good[0x1f0..], 0x80);
            img.splice(0..0, good[..0x1f0].iter().copied());
            if let Ok(bz) = BzImage::parse(&img) {
                if let Ok(l) = plan(&bz, &map, b"x", 0x1000, None) {
                    let _ = boot_data(&bz, &l, &map, b"x");
                }
                let _ = bz.decompress_payload();
            }
        }
    }

    #[test]
    fn short_header_is_copied_only_to_its_end() {
        let mut img = bzimage(Spec {
            version: 0x020c,
            ..SPEC
        });
        img[0x201] = 0x66; // 2.12's header ends at 0x268
        let bz = BzImage::parse(&img).unwrap();
        assert_eq!(bz.header_end, 0x268);
        let map = GuestMemoryMap::new(64 * MIB).unwrap();
        let l = plan(&bz, &map, b"", 0, None).unwrap();
        let z = zero_page(&bz, &l, &map);
        assert_eq!(&z[0x268..0x26c], &[0; 4]);
    }

    /// An LZ4 legacy frame by hand: literals, an overlapping match, a
    /// second frame, the size trailer.
    fn lz4_frame(blocks: &[&[u8]], total: u32) -> Vec<u8> {
        let mut f = LZ4_LEGACY_MAGIC.to_le_bytes().to_vec();
        for b in blocks {
            f.extend_from_slice(&(b.len() as u32).to_le_bytes());
            f.extend_from_slice(b);
        }
        f.extend_from_slice(&total.to_le_bytes());
        f
    }

    #[test]
    fn unlz4_decodes_literals_and_matches() {
        // "abc" then a match of 9 at offset 3 ("abcabcabc"), then "xy".
        let block1: &[u8] = &[0x35, b'a', b'b', b'c', 3, 0, 0x20, b'x', b'y'];
        // Long literal run: 15 + 5 = 20 bytes of 'z'.
        let mut block2 = vec![0xf0, 5];
        block2.extend_from_slice(&[b'z'; 20]);
        let f = lz4_frame(&[block1, &block2], 34);
        let out = unlz4_legacy(&f).unwrap();
        assert_eq!(out, [&b"abcabcabcabcxy"[..], &[b'z'; 20]].concat());
        // The trailer must match.
        let f = lz4_frame(&[block1], 99);
        assert_eq!(unlz4_legacy(&f), Err(PayloadError::BadLength));
        // Without the trailer is fine too.
        let mut f = lz4_frame(&[block1], 0);
        f.truncate(f.len() - 4);
        assert_eq!(unlz4_legacy(&f).unwrap(), b"abcabcabcabcxy");
        // A match before the start of the block.
        let bad: &[u8] = &[0x10, b'a', 5, 0];
        assert!(matches!(
            unlz4_legacy(&lz4_frame(&[bad], 0)),
            Err(PayloadError::Corrupt(_))
        ));
        // Offset 0.
        let bad: &[u8] = &[0x10, b'a', 0, 0];
        assert!(matches!(
            unlz4_legacy(&lz4_frame(&[bad], 0)),
            Err(PayloadError::Corrupt(_))
        ));
        // Literals running past the block.
        let bad: &[u8] = &[0x50, b'a'];
        assert!(matches!(
            unlz4_legacy(&lz4_frame(&[bad], 0)),
            Err(PayloadError::Corrupt(_))
        ));
        // A block size past the input.
        let mut f = LZ4_LEGACY_MAGIC.to_le_bytes().to_vec();
        f.extend_from_slice(&100u32.to_le_bytes());
        f.extend_from_slice(&[0; 10]);
        assert!(matches!(unlz4_legacy(&f), Err(PayloadError::Corrupt(4))));
        // A match longer than a legacy block may unpack to.
        let mut huge = vec![0x1f, b'a', 1, 0];
        huge.extend(std::iter::repeat_n(255u8, LZ4_LEGACY_BLOCK / 255 + 2));
        huge.push(0);
        assert!(matches!(
            unlz4_legacy(&lz4_frame(&[&huge], 0)),
            Err(PayloadError::Corrupt(_))
        ));
        // Not LZ4.
        assert_eq!(
            unlz4_legacy(&[0x1f, 0x8b, 8, 0]),
            Err(PayloadError::Unsupported(Compression::Gzip))
        );
        // No truncation panics.
        let good = lz4_frame(&[block1, &block2], 34);
        for n in 0..good.len() {
            let _ = unlz4_legacy(&good[..n]);
        }
    }

    /// An LZ4 length field's extension bytes for `n` (after the nibble's 15).
    fn lz4_len_ext(mut n: usize, out: &mut Vec<u8>) {
        while n >= 255 {
            out.push(255);
            n -= 255;
        }
        out.push(n as u8);
    }

    /// One sequence: `lits` literals, then a match of `len` at `off`.
    fn lz4_seq(lits: &[u8], off: u16, len: usize, out: &mut Vec<u8>) {
        let ml = len - 4;
        out.push(((lits.len().min(15) as u8) << 4) | ml.min(15) as u8);
        if lits.len() >= 15 {
            lz4_len_ext(lits.len() - 15, out);
        }
        out.extend_from_slice(lits);
        out.extend_from_slice(&off.to_le_bytes());
        if ml >= 15 {
            lz4_len_ext(ml - 15, out);
        }
    }

    #[test]
    fn unlz4_streams_large_output_with_far_matches_in_small_pieces() {
        // 300 KiB of pseudo-random literals, a 100 KiB match reaching the
        // farthest back LZ4 allows (across the window's flushes), a short
        // overlapping match, then a closing literal.
        let mut x = 0x1234_5678u32;
        let lits: Vec<u8> = (0..300 << 10)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let mut block = Vec::new();
        lz4_seq(&lits, 65535, 100 << 10, &mut block);
        lz4_seq(b"q", 1, 70, &mut block);
        block.extend_from_slice(&[0x10, b'!']);
        let mut want = lits.clone();
        for _ in 0..100 << 10 {
            want.push(want[want.len() - 65535]);
        }
        want.push(b'q');
        want.extend(std::iter::repeat_n(b'q', 70));
        want.push(b'!');
        let frame = lz4_frame(&[&block, &block], 2 * want.len() as u32);
        let whole = unlz4_legacy(&frame).unwrap();
        assert_eq!(whole.len(), 2 * want.len());
        assert!(whole[..want.len()] == want[..] && whole[want.len()..] == want[..]);
        // Streamed: in order, in pieces no bigger than the window, the
        // same bytes.
        let mut got = Vec::new();
        let mut pieces = 0;
        let n = unlz4_legacy_stream(&frame, &mut |at, b: &[u8]| {
            assert_eq!(at, got.len() as u64);
            assert!(b.len() <= LZ4_WINDOW);
            got.extend_from_slice(b);
            pieces += 1;
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(n, whole.len() as u64);
        assert!(got == whole && pieces >= 4, "{pieces} pieces");
        // A sink's refusal stops the stream and comes back as itself.
        let mut calls = 0;
        let r = unlz4_legacy_stream(&frame, &mut |_, _| {
            calls += 1;
            if calls == 2 {
                Err("full")
            } else {
                Ok(())
            }
        });
        assert_eq!(r, Err(StreamError::Sink("full")));
        assert_eq!(calls, 2);
        // A match reaching before its block's start is corrupt, even
        // though the previous block's bytes are still in the window.
        let mut second = Vec::new();
        lz4_seq(b"ab", 10, 4, &mut second);
        second.extend_from_slice(&[0x10, b'!']);
        assert!(matches!(
            unlz4_legacy(&lz4_frame(&[&block, &second], 0)),
            Err(PayloadError::Corrupt(_))
        ));
    }

    #[test]
    fn payload_is_found_and_unpacked() {
        let mut img = bzimage(SPEC);
        let setup = 5 * 512;
        let block: &[u8] = &[0x35, b'a', b'b', b'c', 3, 0, 0x20, b'x', b'y'];
        let frame = lz4_frame(&[block], 14);
        put(&mut img, 0x248, &0x100u32.to_le_bytes());
        put(&mut img, 0x24c, &(frame.len() as u32).to_le_bytes());
        put(&mut img, setup + 0x100, &frame);
        let bz = BzImage::parse(&img).unwrap();
        assert_eq!(bz.payload().unwrap().0, Compression::Lz4);
        assert_eq!(bz.decompress_payload().unwrap(), b"abcabcabcabcxy");
        // xz: found, named, not unpacked.
        put(&mut img, setup + 0x100, &[0xfd, b'7', b'z', b'X', b'Z', 0]);
        let bz = BzImage::parse(&img).unwrap();
        assert_eq!(
            bz.decompress_payload(),
            Err(PayloadError::Unsupported(Compression::Xz))
        );
        // Outside the file, or absent.
        put(&mut img, 0x24c, &0xffff_ff00u32.to_le_bytes());
        let bz = BzImage::parse(&img).unwrap();
        assert_eq!(bz.payload(), None);
        assert_eq!(bz.decompress_payload(), Err(PayloadError::Missing));
        let img = bzimage(SPEC);
        assert_eq!(BzImage::parse(&img).unwrap().payload(), None);
    }

    /// With the host's `lz4` (legacy format, as the kernel build uses
    /// it): what it packs, we unpack (skipped without the tool).
    #[test]
    fn unlz4_matches_the_lz4_tool() {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let data: Vec<u8> = (0..300_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 27) as u8 ^ (i / 1000) as u8)
            .collect();
        let child = Command::new("lz4")
            .args(["-l", "-9", "-c", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn();
        let Ok(mut child) = child else {
            std::eprintln!("no lz4 tool: skipped");
            return;
        };
        child.stdin.take().unwrap().write_all(&data).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let mut packed = out.stdout;
        assert_eq!(Compression::detect(&packed), Compression::Lz4);
        assert_eq!(unlz4_legacy(&packed).unwrap(), data);
        packed.extend_from_slice(&(data.len() as u32).to_le_bytes());
        assert_eq!(unlz4_legacy(&packed).unwrap(), data);
    }

    /// A real kernel, if the host has one or `OXEN_TEST_BZIMAGE` names
    /// one (skipped otherwise).
    #[test]
    fn host_kernel_if_present() {
        let mut paths: Vec<std::path::PathBuf> = Vec::new();
        if let Some(p) = std::env::var_os("OXEN_TEST_BZIMAGE") {
            paths.push(p.into());
        }
        for dir in ["/boot", "/usr/lib"] {
            let Ok(rd) = std::fs::read_dir(dir) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("vmlinuz-") {
                    paths.push(p);
                } else if name.starts_with("linux") && p.is_dir() {
                    if let Ok(sub) = std::fs::read_dir(&p) {
                        paths.extend(sub.flatten().map(|s| s.path()).filter(|s| {
                            s.file_name()
                                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz"))
                        }));
                    }
                }
            }
        }
        let Some(img) = paths.iter().find_map(|p| std::fs::read(p).ok()) else {
            std::eprintln!("no host kernel readable under /boot or /usr/lib/linux*: skipped");
            return;
        };
        let bz = BzImage::parse(&img).unwrap();
        assert!(bz.header.version.get() >= MIN_VERSION);
        let map = GuestMemoryMap::new(512 * MIB).unwrap();
        let l = plan(&bz, &map, b"console=ttyS0", 4 * MIB, None).unwrap();
        assert_eq!(l.entry64, l.kernel + 0x200);
        let z = zero_page(&bz, &l, &map);
        assert_eq!(&z[0x202..0x206], b"HdrS");
        assert_eq!(z[zp::TYPE_OF_LOADER], 0xff);
        assert!(l.kernel >= bz.header.pref_address.get().min(l.kernel));
        assert_eq!(l.kernel % u64::from(bz.header.kernel_alignment.get()), 0);
        // The payload: if LZ4, it unpacks to an ELF a PVH guest can boot.
        let (c, _) = bz.payload().unwrap();
        std::eprintln!("payload compression: {c:?}");
        if c == Compression::Lz4 {
            let vmlinux = bz.decompress_payload().unwrap();
            let elf = crate::builder::pvh::PhysElf::parse(&vmlinux).unwrap();
            assert!(elf.phys32_entry.is_some_and(|e| elf.is_loaded(e)));
        }
    }
}
