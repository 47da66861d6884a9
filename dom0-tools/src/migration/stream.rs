//! Xen's migration stream v2 (`docs/specs/libxc-migration-stream.pandoc`,
//! `xg_sr_stream_format.h`): the byte format `xl save` writes and `xl
//! restore` and `xl migrate` read.
//!
//! **Owns** the layouts and their checks: the image header (marker,
//! "XENF", version 3 written, 2 and 3 read, little endian), the domain header (x86 PV or HVM,
//! 4 KiB pages, the saving Xen's version), record headers (type, length,
//! bodies padded to 8 bytes, at most [`REC_LENGTH_MAX`]) and the bodies
//! Oxen writes: `PAGE_DATA` (typed pfns, then the pages that carry data),
//! `HVM_CONTEXT`, `HVM_PARAMS`, `X86_TSC_INFO`, `END`.
//!
//! **Trusts** nothing it reads: a stream comes from a file or another
//! host. Every length, count, type and alignment is checked and refused
//! with a [`StreamError`] that says what and where; nothing panics on
//! input. Decoding works on whatever prefix of the stream is at hand
//! ([`Decoded::Incomplete`] says how much more is needed), so a socket
//! and a file read the same way.

use alloc::vec::Vec;
use core::fmt;

use zerocopy::byteorder::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Image header marker (all ones: no legacy stream starts so).
pub const IHDR_MARKER: u64 = u64::MAX;
/// Image header id, "XENF".
pub const IHDR_ID: u32 = 0x5845_4e46;
/// The stream version Oxen writes: 3, as Xen 4.14 and later (the CPUID
/// and MSR policies and `STATIC_DATA_END` before the first page).
pub const IHDR_VERSION: u32 = 3;
/// The oldest version read: 2 (Xen 4.6 to 4.13), which has no static
/// data section.
pub const IHDR_VERSION_MIN: u32 = 2;
/// Options bit 0: the stream is big endian (never written; refused).
pub const IHDR_OPT_BIG_ENDIAN: u16 = 1;

/// Domain type: x86 PV.
pub const DHDR_TYPE_X86_PV: u32 = 1;
/// Domain type: x86 HVM (PVH too).
pub const DHDR_TYPE_X86_HVM: u32 = 2;

/// Records are padded to this.
pub const REC_ALIGN: usize = 8;
/// The longest record body accepted (Xen's, 128 MiB).
pub const REC_LENGTH_MAX: u32 = 128 << 20;
/// Pages in one `PAGE_DATA` record, at most (Xen's `MAX_BATCH_SIZE`).
pub const PAGE_DATA_MAX_COUNT: u32 = 1024;
/// Page size of every stream Oxen reads (4 KiB, `page_shift` 12).
pub const PAGE_SIZE: usize = 4096;

/// Record types (`REC_TYPE_*`).
pub mod rec {
    /// End of the stream.
    pub const END: u32 = 0x00;
    /// Guest pages.
    pub const PAGE_DATA: u32 = 0x01;
    /// x86 PV: guest width and paging levels.
    pub const X86_PV_INFO: u32 = 0x02;
    /// x86 PV: the p2m's frames.
    pub const X86_PV_P2M_FRAMES: u32 = 0x03;
    /// x86 PV: a vCPU's basic context.
    pub const X86_PV_VCPU_BASIC: u32 = 0x04;
    /// x86 PV: a vCPU's extended context.
    pub const X86_PV_VCPU_EXTENDED: u32 = 0x05;
    /// x86 PV: a vCPU's XSAVE state.
    pub const X86_PV_VCPU_XSAVE: u32 = 0x06;
    /// The shared info page.
    pub const SHARED_INFO: u32 = 0x07;
    /// x86: TSC mode and frequency.
    pub const X86_TSC_INFO: u32 = 0x08;
    /// HVM: the hypervisor's save records (`XEN_DOMCTL_gethvmcontext`).
    pub const HVM_CONTEXT: u32 = 0x09;
    /// HVM: `HVM_PARAM_*` values.
    pub const HVM_PARAMS: u32 = 0x0a;
    /// Toolstack data.
    pub const TOOLSTACK: u32 = 0x0b;
    /// x86 PV: a vCPU's MSRs.
    pub const X86_PV_VCPU_MSRS: u32 = 0x0c;
    /// Verify the pages sent so far.
    pub const VERIFY: u32 = 0x0d;
    /// Checkpoint (Remus/COLO).
    pub const CHECKPOINT: u32 = 0x0e;
    /// Checkpoint dirty pfn list.
    pub const CHECKPOINT_DIRTY_PFN_LIST: u32 = 0x0f;
    /// End of the static data (before memory).
    pub const STATIC_DATA_END: u32 = 0x10;
    /// x86: the CPUID policy.
    pub const X86_CPUID_POLICY: u32 = 0x11;
    /// x86: the MSR policy.
    pub const X86_MSR_POLICY: u32 = 0x12;
    /// Set on a record a restorer may skip if it does not know it.
    pub const OPTIONAL: u32 = 0x8000_0000;
}

/// A page's type in `PAGE_DATA` (the top four bits of its pfn entry,
/// `XEN_DOMCTL_PFINFO_*` >> 28).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageType {
    /// Ordinary memory (`NOTAB`): data follows.
    Normal,
    /// A PV page table of this level (1..=4), maybe pinned: data follows.
    PageTable {
        /// 1..=4.
        level: u8,
        /// `LPINTAB`.
        pinned: bool,
    },
    /// Allocated but its contents are not sent (`XALLOC`).
    Allocated,
    /// Broken (`BROKEN`): no data.
    Broken,
    /// Not populated (`XTAB`): no data.
    Invalid,
}

const PFN_MASK: u64 = 0x000f_ffff_ffff_ffff;
const TYPE_SHIFT: u32 = 60;

impl PageType {
    fn nibble(self) -> u64 {
        match self {
            PageType::Normal => 0x0,
            PageType::PageTable { level, pinned } => {
                u64::from(level & 7) | if pinned { 8 } else { 0 }
            }
            PageType::Broken => 0xd,
            PageType::Allocated => 0xe,
            PageType::Invalid => 0xf,
        }
    }

    fn from_nibble(n: u64) -> Option<PageType> {
        Some(match n {
            0x0 => PageType::Normal,
            0x1..=0x4 | 0x9..=0xc => PageType::PageTable {
                level: (n & 7) as u8,
                pinned: n & 8 != 0,
            },
            0xd => PageType::Broken,
            0xe => PageType::Allocated,
            0xf => PageType::Invalid,
            _ => return None,
        })
    }

    /// Whether the page's 4 KiB follow in the record.
    pub fn has_data(self) -> bool {
        matches!(self, PageType::Normal | PageType::PageTable { .. })
    }
}

/// `struct xc_sr_ihdr`.
///
/// Big endian, whatever the stream's own byte order (the spec's rule:
/// libxc's `read_headers` takes every field through `ntohl`/`ntohs`).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
struct ImageHeader {
    marker: zerocopy::byteorder::big_endian::U64,
    id: zerocopy::byteorder::big_endian::U32,
    version: zerocopy::byteorder::big_endian::U32,
    options: zerocopy::byteorder::big_endian::U16,
    _res1: U16,
    _res2: U32,
}

/// `struct xc_sr_dhdr`.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
struct DomainHeaderRaw {
    ty: U32,
    page_shift: U16,
    _res1: U16,
    xen_major: U32,
    xen_minor: U32,
}

/// Bytes of the image header and the domain header, which open a stream.
pub const HEADERS_LEN: usize = 24 + 16;

/// What the domain header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomainHeader {
    /// [`DHDR_TYPE_X86_PV`] or [`DHDR_TYPE_X86_HVM`].
    pub ty: u32,
    /// The Xen version the stream was saved on.
    pub xen_major: u32,
    /// The Xen version the stream was saved on.
    pub xen_minor: u32,
}

/// Why a stream was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamError {
    /// Not a migration v2 stream (no marker or no "XENF").
    NotAStream,
    /// A version this reader does not know.
    Version(u32),
    /// A big-endian stream.
    BigEndian,
    /// Not x86 PV or HVM.
    DomainType(u32),
    /// Pages other than 4 KiB.
    PageShift(u16),
    /// A record longer than [`REC_LENGTH_MAX`], at this stream offset.
    RecordTooLong {
        /// Offset of the record header.
        at: u64,
        /// Its length field.
        length: u32,
    },
    /// A record's body does not fit its type, at this stream offset.
    BadRecord {
        /// Offset of the record header.
        at: u64,
        /// Its type.
        ty: u32,
        /// What is wrong.
        why: &'static str,
    },
    /// The stream ended before its `END` record.
    Truncated,
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            StreamError::NotAStream => {
                f.write_str("not a Xen migration v2 stream (no image header)")
            }
            StreamError::Version(v) => {
                write!(f, "stream version {v} (this reads versions 2 and 3)")
            }
            StreamError::BigEndian => f.write_str("big-endian stream (this reads little endian)"),
            StreamError::DomainType(t) => write!(f, "domain type {t} (this reads x86 PV and HVM)"),
            StreamError::PageShift(s) => write!(f, "page shift {s} (this reads 4 KiB pages)"),
            StreamError::RecordTooLong { at, length } => {
                write!(
                    f,
                    "record at offset {at}: length {length} is over the limit"
                )
            }
            StreamError::BadRecord { at, ty, why } => {
                write!(f, "record {} at offset {at}: {why}", record_name(ty))
            }
            StreamError::Truncated => {
                f.write_str("the stream ends before its END record (truncated)")
            }
        }
    }
}

/// A record type's name, as Xen's `rec_type_to_str`.
pub fn record_name(ty: u32) -> &'static str {
    match ty & !rec::OPTIONAL {
        rec::END => "END",
        rec::PAGE_DATA => "PAGE_DATA",
        rec::X86_PV_INFO => "X86_PV_INFO",
        rec::X86_PV_P2M_FRAMES => "X86_PV_P2M_FRAMES",
        rec::X86_PV_VCPU_BASIC => "X86_PV_VCPU_BASIC",
        rec::X86_PV_VCPU_EXTENDED => "X86_PV_VCPU_EXTENDED",
        rec::X86_PV_VCPU_XSAVE => "X86_PV_VCPU_XSAVE",
        rec::SHARED_INFO => "SHARED_INFO",
        rec::X86_TSC_INFO => "X86_TSC_INFO",
        rec::HVM_CONTEXT => "HVM_CONTEXT",
        rec::HVM_PARAMS => "HVM_PARAMS",
        rec::TOOLSTACK => "TOOLSTACK",
        rec::X86_PV_VCPU_MSRS => "X86_PV_VCPU_MSRS",
        rec::VERIFY => "VERIFY",
        rec::CHECKPOINT => "CHECKPOINT",
        rec::CHECKPOINT_DIRTY_PFN_LIST => "CHECKPOINT_DIRTY_PFN_LIST",
        rec::STATIC_DATA_END => "STATIC_DATA_END",
        rec::X86_CPUID_POLICY => "X86_CPUID_POLICY",
        rec::X86_MSR_POLICY => "X86_MSR_POLICY",
        _ => "unknown",
    }
}

// ---------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------

/// The image and domain headers for a domain of type `ty` saved on Xen
/// `major.minor`.
pub fn headers(ty: u32, major: u32, minor: u32) -> [u8; HEADERS_LEN] {
    let mut out = [0u8; HEADERS_LEN];
    let ih = ImageHeader {
        marker: IHDR_MARKER.into(),
        id: IHDR_ID.into(),
        version: IHDR_VERSION.into(),
        options: 0.into(),
        _res1: 0.into(),
        _res2: 0.into(),
    };
    let dh = DomainHeaderRaw {
        ty: ty.into(),
        page_shift: 12.into(),
        _res1: 0.into(),
        xen_major: major.into(),
        xen_minor: minor.into(),
    };
    out[..24].copy_from_slice(ih.as_bytes());
    out[24..].copy_from_slice(dh.as_bytes());
    out
}

/// A record: its header, `body`, zero padding to 8 bytes. `None` if the
/// body is over [`REC_LENGTH_MAX`].
pub fn record(ty: u32, body: &[u8]) -> Option<Vec<u8>> {
    let len = u32::try_from(body.len())
        .ok()
        .filter(|&l| l <= REC_LENGTH_MAX)?;
    let mut out = Vec::with_capacity(8 + body.len() + REC_ALIGN);
    out.extend_from_slice(&ty.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(body);
    out.resize(out.len().next_multiple_of(REC_ALIGN), 0);
    Some(out)
}

/// A `PAGE_DATA` body: `pages` (pfn, type) with the contents of those whose
/// type has data, in order, in `data` (4 KiB each). `None` if there are
/// none or too many pages, a pfn is too large, or `data` is not exactly
/// the pages that need it.
pub fn page_data(pages: &[(u64, PageType)], data: &[u8]) -> Option<Vec<u8>> {
    let count = u32::try_from(pages.len()).ok()?;
    if count == 0 || count > PAGE_DATA_MAX_COUNT {
        return None;
    }
    let with_data = pages.iter().filter(|(_, t)| t.has_data()).count();
    if data.len() != with_data * PAGE_SIZE {
        return None;
    }
    let mut out = Vec::with_capacity(8 + 8 * pages.len() + data.len());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    for &(pfn, t) in pages {
        if pfn & !PFN_MASK != 0 {
            return None;
        }
        out.extend_from_slice(&(pfn | t.nibble() << TYPE_SHIFT).to_le_bytes());
    }
    out.extend_from_slice(data);
    Some(out)
}

/// An `HVM_PARAMS` body: `(index, value)` pairs.
pub fn hvm_params(params: &[(u64, u64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + 16 * params.len());
    out.extend_from_slice(&(params.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    for &(i, v) in params {
        out.extend_from_slice(&i.to_le_bytes());
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Bytes of one `xen_cpuid_leaf_t` in an `X86_CPUID_POLICY` body.
pub const CPUID_LEAF_LEN: usize = 24;
/// The most leaves an `X86_CPUID_POLICY` body may hold.
pub const CPUID_LEAVES_MAX: usize = 1024;

/// An `X86_CPUID_POLICY` body: `(leaf, subleaf, [eax, ebx, ecx, edx])`
/// as `xen_cpuid_leaf_t`s.
pub fn cpuid_policy(leaves: &[(u32, u32, [u32; 4])]) -> Vec<u8> {
    let mut out = Vec::with_capacity(leaves.len() * CPUID_LEAF_LEN);
    for &(l, s, r) in leaves {
        for w in [l, s, r[0], r[1], r[2], r[3]] {
            out.extend_from_slice(&w.to_le_bytes());
        }
    }
    out
}

/// Decodes an `X86_CPUID_POLICY` body.
pub fn parse_cpuid_policy(body: &[u8], at: u64) -> Result<Vec<(u32, u32, [u32; 4])>, StreamError> {
    if !body.len().is_multiple_of(CPUID_LEAF_LEN) || body.len() / CPUID_LEAF_LEN > CPUID_LEAVES_MAX
    {
        return Err(StreamError::BadRecord {
            at,
            ty: rec::X86_CPUID_POLICY,
            why: "not a whole number of leaves, or over 1024",
        });
    }
    Ok(body
        .chunks_exact(CPUID_LEAF_LEN)
        .map(|e| {
            let w = |i: usize| u32::from_le_bytes([e[i], e[i + 1], e[i + 2], e[i + 3]]);
            (w(0), w(4), [w(8), w(12), w(16), w(20)])
        })
        .collect())
}

/// `struct xc_sr_rec_x86_tsc_info`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TscInfo {
    /// `XEN_CPUID_TSC_MODE_*`.
    pub mode: u32,
    /// TSC frequency, kHz.
    pub khz: u32,
    /// Elapsed nanoseconds.
    pub nsec: u64,
    /// Incarnation.
    pub incarnation: u32,
}

impl TscInfo {
    /// The record body.
    pub fn body(&self) -> [u8; 24] {
        let mut b = [0u8; 24];
        b[0..4].copy_from_slice(&self.mode.to_le_bytes());
        b[4..8].copy_from_slice(&self.khz.to_le_bytes());
        b[8..16].copy_from_slice(&self.nsec.to_le_bytes());
        b[16..20].copy_from_slice(&self.incarnation.to_le_bytes());
        b
    }
}

// ---------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------

/// What a decode step found.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<T> {
    /// It, and the bytes it took (padding included).
    Done(T, usize),
    /// At least this many bytes in all are needed.
    Incomplete(usize),
}

/// Reads and checks the two headers at the start of a stream.
pub fn read_headers(buf: &[u8]) -> Result<Decoded<DomainHeader>, StreamError> {
    if buf.len() < HEADERS_LEN {
        // A prefix that already cannot be a stream is refused at once.
        if buf.len() >= 8 && buf[..8] != IHDR_MARKER.to_le_bytes() {
            return Err(StreamError::NotAStream);
        }
        return Ok(Decoded::Incomplete(HEADERS_LEN));
    }
    let (ih, rest) = ImageHeader::read_from_prefix(buf).map_err(|_| StreamError::NotAStream)?;
    if ih.marker.get() != IHDR_MARKER || ih.id.get() != IHDR_ID {
        return Err(StreamError::NotAStream);
    }
    if !(IHDR_VERSION_MIN..=IHDR_VERSION).contains(&ih.version.get()) {
        return Err(StreamError::Version(ih.version.get()));
    }
    if ih.options.get() & IHDR_OPT_BIG_ENDIAN != 0 {
        return Err(StreamError::BigEndian);
    }
    let (dh, _) = DomainHeaderRaw::read_from_prefix(rest).map_err(|_| StreamError::NotAStream)?;
    let ty = dh.ty.get();
    if ty != DHDR_TYPE_X86_PV && ty != DHDR_TYPE_X86_HVM {
        return Err(StreamError::DomainType(ty));
    }
    if dh.page_shift.get() != 12 {
        return Err(StreamError::PageShift(dh.page_shift.get()));
    }
    Ok(Decoded::Done(
        DomainHeader {
            ty,
            xen_major: dh.xen_major.get(),
            xen_minor: dh.xen_minor.get(),
        },
        HEADERS_LEN,
    ))
}

/// One record, borrowed from the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// Its type.
    pub ty: u32,
    /// Its body (no padding).
    pub body: &'a [u8],
}

/// Reads the record at the start of `buf`, which is at stream offset `at`
/// (for error messages). Padding must be zero.
pub fn read_record(buf: &[u8], at: u64) -> Result<Decoded<Record<'_>>, StreamError> {
    if buf.len() < 8 {
        return Ok(Decoded::Incomplete(8));
    }
    let ty = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let length = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if length > REC_LENGTH_MAX {
        return Err(StreamError::RecordTooLong { at, length });
    }
    let body_end = 8 + length as usize;
    let total = body_end.next_multiple_of(REC_ALIGN);
    if buf.len() < total {
        return Ok(Decoded::Incomplete(total));
    }
    if buf[body_end..total].iter().any(|&b| b != 0) {
        return Err(StreamError::BadRecord {
            at,
            ty,
            why: "non-zero padding",
        });
    }
    if ty == rec::END && length != 0 {
        return Err(StreamError::BadRecord {
            at,
            ty,
            why: "END with a body",
        });
    }
    Ok(Decoded::Done(
        Record {
            ty,
            body: &buf[8..body_end],
        },
        total,
    ))
}

/// A `PAGE_DATA` body, checked: its pages and their data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageData<'a> {
    /// (pfn, type) of each page, in order.
    pub pages: Vec<(u64, PageType)>,
    /// The data of the pages whose type has some, 4 KiB each, in order.
    pub data: &'a [u8],
}

impl<'a> PageData<'a> {
    /// Decodes `body` (a `PAGE_DATA` record at stream offset `at`).
    pub fn parse(body: &'a [u8], at: u64) -> Result<PageData<'a>, StreamError> {
        let bad = |why| StreamError::BadRecord {
            at,
            ty: rec::PAGE_DATA,
            why,
        };
        if body.len() < 8 {
            return Err(bad("shorter than its header"));
        }
        let count = u32::from_le_bytes([body[0], body[1], body[2], body[3]]);
        if count == 0 || count > PAGE_DATA_MAX_COUNT {
            return Err(bad("page count 0 or over 1024"));
        }
        let list_end = 8 + 8 * count as usize;
        let list = body.get(8..list_end).ok_or(bad("pfn list past its end"))?;
        let mut pages = Vec::with_capacity(count as usize);
        let mut with_data = 0usize;
        for e in list.chunks_exact(8) {
            let v = u64::from_le_bytes([e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7]]);
            let t = PageType::from_nibble(v >> TYPE_SHIFT).ok_or(bad("unknown page type"))?;
            if v & !PFN_MASK & !(0xf << TYPE_SHIFT) != 0 {
                return Err(bad("reserved pfn bits set"));
            }
            if t.has_data() {
                with_data += 1;
            }
            pages.push((v & PFN_MASK, t));
        }
        let data = &body[list_end..];
        if data.len() != with_data * PAGE_SIZE {
            return Err(bad("data length does not match the pages that carry data"));
        }
        Ok(PageData { pages, data })
    }
}

/// Decodes an `HVM_PARAMS` body.
pub fn parse_hvm_params(body: &[u8], at: u64) -> Result<Vec<(u64, u64)>, StreamError> {
    let bad = |why| StreamError::BadRecord {
        at,
        ty: rec::HVM_PARAMS,
        why,
    };
    if body.len() < 8 {
        return Err(bad("shorter than its header"));
    }
    let count = u32::from_le_bytes([body[0], body[1], body[2], body[3]]) as usize;
    if body.len() != 8 + 16 * count {
        return Err(bad("length does not match its count"));
    }
    Ok(body[8..]
        .chunks_exact(16)
        .map(|e| {
            let w = |r: core::ops::Range<usize>| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&e[r]);
                u64::from_le_bytes(b)
            };
            (w(0..8), w(8..16))
        })
        .collect())
}

/// Decodes an `X86_TSC_INFO` body.
pub fn parse_tsc_info(body: &[u8], at: u64) -> Result<TscInfo, StreamError> {
    if body.len() != 24 {
        return Err(StreamError::BadRecord {
            at,
            ty: rec::X86_TSC_INFO,
            why: "not 24 bytes",
        });
    }
    let u32_at = |i: usize| u32::from_le_bytes([body[i], body[i + 1], body[i + 2], body[i + 3]]);
    let mut n = [0u8; 8];
    n.copy_from_slice(&body[8..16]);
    Ok(TscInfo {
        mode: u32_at(0),
        khz: u32_at(4),
        nsec: u64::from_le_bytes(n),
        incarnation: u32_at(16),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    fn page(fill: u8) -> Vec<u8> {
        vec![fill; PAGE_SIZE]
    }

    /// A whole stream: headers, TSC info, two PAGE_DATA records, params,
    /// HVM context, END.
    fn sample() -> Vec<u8> {
        let mut s = headers(DHDR_TYPE_X86_HVM, 4, 17).to_vec();
        s.extend(
            record(
                rec::X86_TSC_INFO,
                &TscInfo {
                    khz: 2_600_000,
                    ..Default::default()
                }
                .body(),
            )
            .unwrap(),
        );
        let data = [page(1), page(2)].concat();
        let pd = page_data(
            &[
                (0x10, PageType::Normal),
                (0x11, PageType::Invalid),
                (0x12, PageType::Normal),
            ],
            &data,
        )
        .unwrap();
        s.extend(record(rec::PAGE_DATA, &pd).unwrap());
        s.extend(record(rec::HVM_PARAMS, &hvm_params(&[(1, 0xfeffc), (2, 3)])).unwrap());
        s.extend(record(rec::HVM_CONTEXT, b"ctx").unwrap());
        s.extend(record(rec::END, &[]).unwrap());
        s
    }

    #[test]
    fn a_written_stream_reads_back_record_by_record() {
        let s = sample();
        let Decoded::Done(h, mut at) = read_headers(&s).unwrap() else {
            panic!("headers")
        };
        assert_eq!(
            h,
            DomainHeader {
                ty: DHDR_TYPE_X86_HVM,
                xen_major: 4,
                xen_minor: 17
            }
        );
        let mut types = vec![];
        loop {
            let Decoded::Done(r, n) = read_record(&s[at..], at as u64).unwrap() else {
                panic!("incomplete at {at}")
            };
            types.push(r.ty);
            match r.ty {
                rec::PAGE_DATA => {
                    let pd = PageData::parse(r.body, at as u64).unwrap();
                    assert_eq!(
                        pd.pages,
                        [
                            (0x10, PageType::Normal),
                            (0x11, PageType::Invalid),
                            (0x12, PageType::Normal)
                        ]
                    );
                    assert_eq!((pd.data[0], pd.data[PAGE_SIZE]), (1, 2));
                }
                rec::HVM_PARAMS => {
                    assert_eq!(parse_hvm_params(r.body, 0).unwrap(), [(1, 0xfeffc), (2, 3)]);
                }
                rec::X86_TSC_INFO => assert_eq!(parse_tsc_info(r.body, 0).unwrap().khz, 2_600_000),
                rec::HVM_CONTEXT => assert_eq!(r.body, b"ctx"),
                _ => {}
            }
            assert_eq!(n % 8, 0, "records are padded to 8");
            at += n;
            if r.ty == rec::END {
                break;
            }
        }
        assert_eq!(at, s.len());
        assert_eq!(
            types,
            [
                rec::X86_TSC_INFO,
                rec::PAGE_DATA,
                rec::HVM_PARAMS,
                rec::HVM_CONTEXT,
                rec::END
            ]
        );
    }

    #[test]
    fn every_prefix_is_incomplete_or_refused_never_a_panic() {
        let s = sample();
        for n in 0..HEADERS_LEN {
            assert_eq!(read_headers(&s[..n]), Ok(Decoded::Incomplete(HEADERS_LEN)));
        }
        // The first record (X86_TSC_INFO) is 8 + 24 bytes.
        let first = HEADERS_LEN;
        for n in 0..32 {
            let got = read_record(&s[first..first + n], first as u64).unwrap();
            assert!(
                matches!(got, Decoded::Incomplete(k) if k > n),
                "{n}: {got:?}"
            );
        }
    }

    #[test]
    fn the_image_header_is_big_endian_as_xen_writes_it() {
        let h = headers(DHDR_TYPE_X86_HVM, 4, 17);
        assert_eq!(&h[..8], &[0xff; 8]);
        assert_eq!(&h[8..12], b"XENF");
        assert_eq!(&h[12..16], &[0, 0, 0, 3]);
        assert_eq!(&h[16..24], &[0; 8]);
        // The domain header is in the stream's (little-endian) order.
        assert_eq!(&h[24..28], &[2, 0, 0, 0]);
        assert_eq!(&h[28..30], &[12, 0]);
        assert_eq!(&h[32..36], &[4, 0, 0, 0]);
        assert_eq!(&h[36..40], &[17, 0, 0, 0]);
    }

    #[test]
    fn malformed_streams_are_refused_with_what_is_wrong() {
        let good = sample();
        let mut s = good.clone();
        s[0] = 0;
        assert_eq!(read_headers(&s), Err(StreamError::NotAStream));
        assert_eq!(read_headers(&s[..10]), Err(StreamError::NotAStream));
        let mut s = good.clone();
        s[15] = 4;
        assert_eq!(read_headers(&s), Err(StreamError::Version(4)));
        let mut old = good.clone();
        old[15] = 2;
        assert!(
            read_headers(&old).is_ok(),
            "a version 2 stream (Xen 4.13) is read"
        );
        let mut s = good.clone();
        s[17] = 1;
        assert_eq!(read_headers(&s), Err(StreamError::BigEndian));
        let mut s = good.clone();
        s[24] = 7;
        assert_eq!(read_headers(&s), Err(StreamError::DomainType(7)));
        let mut s = good.clone();
        s[28] = 16;
        assert_eq!(read_headers(&s), Err(StreamError::PageShift(16)));
        // A record length over the limit.
        let mut r = record(rec::TOOLSTACK, b"x").unwrap();
        r[4..8].copy_from_slice(&(REC_LENGTH_MAX + 1).to_le_bytes());
        assert!(matches!(
            read_record(&r, 40),
            Err(StreamError::RecordTooLong { at: 40, .. })
        ));
        // Padding that is not zero; END with a body.
        let mut r = record(rec::TOOLSTACK, b"x").unwrap();
        r[12] = 1;
        assert!(matches!(
            read_record(&r, 0),
            Err(StreamError::BadRecord {
                why: "non-zero padding",
                ..
            })
        ));
        let r = record(rec::END, b"x").unwrap();
        assert!(matches!(
            read_record(&r, 0),
            Err(StreamError::BadRecord { ty: rec::END, .. })
        ));
        // PAGE_DATA: counts, lists, types, data.
        assert!(PageData::parse(&[0; 4], 0).is_err());
        let mut zero = vec![0u8; 8];
        assert!(PageData::parse(&zero, 0).is_err(), "count 0");
        zero[..4].copy_from_slice(&2000u32.to_le_bytes());
        assert!(PageData::parse(&zero, 0).is_err(), "count over 1024");
        let one = page_data(&[(5, PageType::Normal)], &page(9)).unwrap();
        assert!(
            PageData::parse(&one[..one.len() - 1], 0).is_err(),
            "data short"
        );
        assert!(PageData::parse(&one[..12], 0).is_err(), "list short");
        let mut bad_type = one.clone();
        bad_type[15] = 0x50; // type nibble 5
        assert!(PageData::parse(&bad_type, 0).is_err());
        let mut reserved = one.clone();
        reserved[14] = 0x10; // bit 52
        assert!(PageData::parse(&reserved, 0).is_err());
        let xtab = page_data(&[(5, PageType::Invalid)], &[]).unwrap();
        let mut with_data = xtab.clone();
        with_data.extend(page(0));
        assert!(
            PageData::parse(&with_data, 0).is_err(),
            "data for a page without"
        );
        // Writers refuse what readers would.
        assert!(page_data(&[], &[]).is_none());
        assert!(page_data(&[(1 << 60, PageType::Normal)], &page(0)).is_none());
        assert!(page_data(&[(1, PageType::Normal)], &[]).is_none());
        // Params and TSC info lengths.
        assert!(parse_hvm_params(&hvm_params(&[(1, 2)])[..20], 0).is_err());
        assert!(parse_tsc_info(&[0; 23], 0).is_err());
        // Messages name the record.
        let e = PageData::parse(&[0; 4], 96).unwrap_err();
        assert_eq!(
            std::format!("{e}"),
            "record PAGE_DATA at offset 96: shorter than its header"
        );
    }

    #[test]
    fn page_types_round_trip() {
        for t in [
            PageType::Normal,
            PageType::PageTable {
                level: 1,
                pinned: false,
            },
            PageType::PageTable {
                level: 4,
                pinned: true,
            },
            PageType::Allocated,
            PageType::Broken,
            PageType::Invalid,
        ] {
            let data = if t.has_data() { page(3) } else { vec![] };
            let b = page_data(&[(0x1234, t)], &data).unwrap();
            assert_eq!(PageData::parse(&b, 0).unwrap().pages, [(0x1234, t)]);
        }
        // XEN_DOMCTL_PFINFO_* values, shifted into the stream's top nibble.
        assert_eq!(PageType::Invalid.nibble() << 28, 0xf000_0000);
        assert_eq!(PageType::Allocated.nibble() << 28, 0xe000_0000);
        assert_eq!(PageType::Broken.nibble() << 28, 0xd000_0000);
    }
}
