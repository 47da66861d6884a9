//! Saving and restoring a PV domain's image, as libxc's `x86_pv` save and
//! restore do it, over two small interfaces ([`PvSaveSide`],
//! [`PvRestoreSide`]) so the whole logic runs in host tests.
//!
//! **A PV guest's memory names machine frames**: its page tables, its
//! p2m, `start_info`, its vCPUs' `cr3` and GDT frames. The stream holds
//! pseudo-physical frames instead (canonical form), and the restore puts
//! the new domain's machine frames back (local form):
//!
//! - [`canonicalise`]: every present entry of a page-table page, machine
//!   frame → pseudo-physical frame through the inverse of the guest's
//!   p2m; a frame the guest does not own is an error (the guest must not
//!   map foreign frames when it suspends; `pv-guest-lib` unmaps shared
//!   info first, as Linux does); the hypervisor's L4 slots
//!   ([`XEN_L4_FIRST_SLOT`]..+[`XEN_L4_SLOTS`], the range Oxen, like Xen,
//!   reserves in every guest L4) are dropped (the new hypervisor fills
//!   them when it validates the L4). [`localise`] is the reverse.
//! - the vCPU context: `cr3` (`ctrlreg[3]`, `xen_cr3_to_pfn` = `>> 12` on
//!   x86_64) and the user L4 (`ctrlreg[1]`), the GDT frames, and vCPU 0's
//!   `rdx` (the `start_info` frame the guest passed to its suspend).
//!
//! The stream (after xl's and libxl's headers and libxl's
//! `LIBXC_CONTEXT`): libxc's headers (`DHDR_TYPE_X86_PV`),
//! `X86_PV_INFO` (guest width 8, 4 levels), `X86_PV_P2M_FRAMES` (the
//! pfns of the p2m's pages), `PAGE_DATA` batches with page types
//! (page tables canonicalised), `X86_TSC_INFO`, `SHARED_INFO`,
//! `X86_PV_VCPU_BASIC` per online vCPU, `END`; then libxl's `END`.
//!
//! The save reads the guest's p2m the way the toolstack finds it: from
//! `shared_info.arch` (`max_pfn`, `pfn_to_mfn_frame_list_list`) down the
//! frame list list the guest published (`pv_guest_lib::p2m_list`).
//!
//! **Trusts** nothing it reads, guest memory included: sizes are bounded
//! before anything is allocated (the p2m by what the domain may have,
//! and never over [`MAX_PFN`]), every frame number is
//! checked against the guest's own, and a restore populates a frame once.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use hypercall_abi::arch_x86::VcpuGuestContext;
use zerocopy::{FromBytes, IntoBytes};

use super::image::{next_record, Sink, Source, SrError, Stats};
use super::savefile::{self, librec};
use super::stream::{self, rec, Decoded, PageData, PageType, PAGE_SIZE};

/// First hypervisor slot of a guest L4 (Xen's
/// `ROOT_PAGETABLE_FIRST_XEN_SLOT`, xen-core's `XEN_L4_FIRST_SLOT`).
pub const XEN_L4_FIRST_SLOT: usize = 256;
/// Hypervisor slots of a guest L4 (`ROOT_PAGETABLE_XEN_SLOTS`).
pub const XEN_L4_SLOTS: usize = 16;
/// The most p2m entries a save or restore takes (64 GiB of guest).
pub const MAX_PFN: u64 = 1 << 24;
/// The most vCPUs a save or restore takes.
pub const MAX_VCPUS: u32 = 128;
/// p2m entries a guest may have beyond its `max_pages` (the p2m covers
/// the frames it was built with, which a balloon may have given back).
pub const P2M_SLACK: u64 = 1024;
/// An invalid p2m entry (`INVALID_MFN`).
pub const INVALID: u64 = u64::MAX;
/// Frames per `PAGE_DATA` record written.
const SAVE_BATCH: usize = 256;
/// Entries per page-table or list page.
const PER_PAGE: usize = 512;
/// Present bit of a PTE.
const PTE_PRESENT: u64 = 1;
/// Writable bit of a PTE.
const PTE_RW: u64 = 2;
/// Oxen's mark on an L1 entry of the guest's writable mapping that
/// log-dirty mode write-protected (a bit guests may not set).
const L1E_LOGDIRTY_RO: u64 = hypercall_abi::xen::OXEN_L1E_LOGDIRTY_RO;
/// The frame bits of a PTE.
const PTE_FRAME: u64 = 0x000f_ffff_ffff_f000;
/// Offsets in `shared_info`.
const SI_VCPU_INFO_END: usize = 2048;
const SI_PENDING: usize = 2048;
const SI_MASK: usize = 2560;
const SI_ARCH: usize = 3088;
const SI_ARCH_MAX_PFN: usize = SI_ARCH;
const SI_ARCH_FLL: usize = SI_ARCH + 8;
const SI_ARCH_END: usize = SI_ARCH + 48;
/// Offsets in `start_info`.
const SI_SHARED_INFO: usize = 40;
const SI_STORE_MFN: usize = 56;
const SI_STORE_EVTCHN: usize = 64;
const SI_CONSOLE_MFN: usize = 72;
const SI_CONSOLE_EVTCHN: usize = 80;
/// `VGCF_online`.
const VGCF_ONLINE: u64 = 1 << 5;
/// `XEN_DOMCTL_PFINFO_*`, as getpageframeinfo3 returns them.
const PFINFO_SHIFT: u32 = 28;
const PFINFO_XTAB: u64 = 0xf;
/// Size of `vcpu_guest_context`.
const VCPU_CTX_LEN: usize = core::mem::size_of::<VcpuGuestContext>();

fn err(s: String) -> SrError {
    SrError::Unsupported(s)
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(w)
}

fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

/// Whether entry `index` of a level-`level` table is a hypervisor slot.
fn xen_slot(level: u8, index: usize) -> bool {
    level == 4 && (XEN_L4_FIRST_SLOT..XEN_L4_FIRST_SLOT + XEN_L4_SLOTS).contains(&index)
}

/// Machine → pseudo-physical frames in a page-table page of `level`
/// (1..=4), in place (see the module docs). `pfn_of` gives the guest's
/// pfn of a machine frame it owns, `None` for any other frame.
pub fn canonicalise(
    page: &mut [u8],
    level: u8,
    pfn_of: impl Fn(u64) -> Option<u64>,
) -> Result<(), String> {
    if level == 1 && page.len() == PAGE_SIZE {
        // An entry the hypervisor write-protected for log-dirty mode is
        // the guest's writable mapping.
        for i in 0..PER_PAGE {
            let pte = u64_at(page, i * 8);
            if pte & PTE_PRESENT != 0 && pte & L1E_LOGDIRTY_RO != 0 {
                put_u64(page, i * 8, (pte & !L1E_LOGDIRTY_RO) | PTE_RW);
            }
        }
    }
    rewrite(page, level, |i, mfn| {
        pfn_of(mfn).ok_or_else(|| {
            format!("L{level} entry {i} names machine frame {mfn:#x}, which the guest does not own")
        })
    })
}

/// Pseudo-physical → machine frames in a page-table page of `level`, in
/// place. `mfn_of` gives the new machine frame of a pfn, `None` for one
/// the image does not have.
pub fn localise(
    page: &mut [u8],
    level: u8,
    mfn_of: impl Fn(u64) -> Option<u64>,
) -> Result<(), String> {
    rewrite(page, level, |i, pfn| {
        mfn_of(pfn).ok_or_else(|| {
            format!("L{level} entry {i} names pseudo-physical frame {pfn:#x}, which the image does not have")
        })
    })
}

fn rewrite(
    page: &mut [u8],
    level: u8,
    mut f: impl FnMut(usize, u64) -> Result<u64, String>,
) -> Result<(), String> {
    if page.len() != PAGE_SIZE || !(1..=4).contains(&level) {
        return Err(format!("not a level-{level} page table"));
    }
    for i in 0..PER_PAGE {
        let pte = u64_at(page, i * 8);
        if xen_slot(level, i) {
            put_u64(page, i * 8, 0);
            continue;
        }
        if pte & PTE_PRESENT == 0 {
            continue;
        }
        let frame = f(i, (pte & PTE_FRAME) >> 12)?;
        if frame > (PTE_FRAME >> 12) {
            return Err(format!(
                "L{level} entry {i}: frame {frame:#x} does not fit a PTE"
            ));
        }
        put_u64(page, i * 8, (pte & !PTE_FRAME) | (frame << 12));
    }
    Ok(())
}

/// GDT frames a context uses (`gdt_ents` descriptors, 512 per frame).
fn gdt_frames(ctx: &VcpuGuestContext) -> Result<usize, String> {
    let n = ctx.gdt_ents.div_ceil(PER_PAGE as u64) as usize;
    if n > ctx.gdt_frames.len() {
        return Err(format!("gdt_ents {} is over 8192", ctx.gdt_ents));
    }
    Ok(n)
}

/// Converts the frames a vCPU context names (`cr3`, the user L4 in
/// `ctrlreg[1]`, the GDT frames; for vCPU 0 `rdx`, the `start_info`
/// frame) with `conv`, which says what is wrong when a frame has no
/// counterpart.
fn convert_vcpu(
    ctx: &mut VcpuGuestContext,
    vcpu: u32,
    mut conv: impl FnMut(&str, u64) -> Result<u64, String>,
) -> Result<(), String> {
    // xen_cr3_to_pfn / xen_pfn_to_cr3 on x86_64: the frame is cr3 >> 12.
    ctx.ctrlreg[3] = conv("cr3", ctx.ctrlreg[3] >> 12)? << 12;
    if ctx.ctrlreg[1] != 0 {
        ctx.ctrlreg[1] = conv("the user L4", ctx.ctrlreg[1] >> 12)? << 12;
    }
    for i in 0..gdt_frames(ctx)? {
        ctx.gdt_frames[i] = conv("a GDT frame", ctx.gdt_frames[i])?;
    }
    if vcpu == 0 {
        ctx.user_regs.rdx = conv("the start_info frame (rdx)", ctx.user_regs.rdx)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Save
// ---------------------------------------------------------------------------

/// A suspended PV domain, as the save sees it.
pub trait PvSaveSide {
    /// Its shared info page (4096 bytes).
    fn shared_info(&mut self) -> Result<Vec<u8>, SrError>;
    /// Its `max_pages` (bounds the p2m it may claim to have).
    fn max_pages(&mut self) -> Result<u64, SrError>;
    /// Reads machine frames of the domain (mapped read-only), 4 KiB each,
    /// into `out`; a frame it does not own is an error.
    fn read_frames(&mut self, mfns: &[u64], out: &mut [u8]) -> Result<(), SrError>;
    /// getpageframeinfo3: each machine frame replaced by its type
    /// (`XEN_DOMCTL_PFINFO_*`).
    fn frame_types(&mut self, mfns: &mut [u64]) -> Result<(), SrError>;
    /// How many vCPUs it has.
    fn nr_vcpus(&mut self) -> Result<u32, SrError>;
    /// vCPU `id`'s context; `None` if it is down.
    fn vcpu_context(&mut self, id: u32) -> Result<Option<VcpuGuestContext>, SrError>;
}

/// The guest's p2m as the toolstack finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct P2m {
    /// Machine frame of each pfn ([`INVALID`] for none).
    pub entries: Vec<u64>,
    /// Machine frames of the p2m's own pages.
    pub frames: Vec<u64>,
}

/// Reads the p2m through `shared_info.arch` and the frame list list
/// (`read` reads one machine frame of the guest); a p2m of more than
/// `limit` entries is refused before anything is read.
pub fn read_p2m(
    shared_info: &[u8],
    limit: u64,
    mut read: impl FnMut(u64) -> Result<Vec<u8>, SrError>,
) -> Result<P2m, SrError> {
    if shared_info.len() != PAGE_SIZE {
        return Err(err(String::from("the shared info page is not 4 KiB")));
    }
    let max_pfn = u64_at(shared_info, SI_ARCH_MAX_PFN);
    let fll = u64_at(shared_info, SI_ARCH_FLL);
    if max_pfn == 0 || fll == 0 {
        return Err(err(String::from(
            "the guest published no p2m (shared_info.arch max_pfn / pfn_to_mfn_frame_list_list are 0): it cannot be saved",
        )));
    }
    let limit = limit.min(MAX_PFN);
    if max_pfn > limit {
        return Err(err(format!(
            "the guest says its p2m has {max_pfn} entries (it may have at most {limit})"
        )));
    }
    let p2m_pages = max_pfn.div_ceil(PER_PAGE as u64) as usize;
    let lists = p2m_pages.div_ceil(PER_PAGE);
    let words = |b: &[u8], n: usize| -> Vec<u64> { (0..n).map(|i| u64_at(b, i * 8)).collect() };
    let page = |b: Vec<u8>, what: &str| -> Result<Vec<u8>, SrError> {
        if b.len() == PAGE_SIZE {
            Ok(b)
        } else {
            Err(err(format!("{what}: not a 4 KiB frame")))
        }
    };
    let fll_page = page(read(fll)?, "the frame list list")?;
    let list_mfns = words(&fll_page, lists);
    let mut frames = Vec::with_capacity(p2m_pages);
    for (i, &l) in list_mfns.iter().enumerate() {
        let b = page(read(l)?, "a frame list")?;
        let n = (p2m_pages - i * PER_PAGE).min(PER_PAGE);
        frames.extend(words(&b, n));
    }
    let mut entries = Vec::with_capacity(max_pfn as usize);
    for &f in &frames {
        let b = page(read(f)?, "a p2m page")?;
        let n = (max_pfn as usize - entries.len()).min(PER_PAGE);
        entries.extend(words(&b, n));
    }
    Ok(P2m { entries, frames })
}

/// The inverse of the p2m: machine frame → pfn. Two pfns on one machine
/// frame is an error.
fn invert(p2m: &[u64]) -> Result<BTreeMap<u64, u64>, SrError> {
    let mut m = BTreeMap::new();
    for (pfn, &mfn) in p2m.iter().enumerate() {
        if mfn == INVALID || mfn > (PTE_FRAME >> 12) {
            continue;
        }
        if let Some(other) = m.insert(mfn, pfn as u64) {
            return Err(err(format!(
                "the guest's p2m gives machine frame {mfn:#x} to pfns {other:#x} and {pfn:#x}"
            )));
        }
    }
    Ok(m)
}

fn page_type(t: u64) -> PageType {
    match (t >> PFINFO_SHIFT) & 0xf {
        0 => PageType::Normal,
        n @ (1..=4 | 9..=12) => PageType::PageTable {
            level: (n & 7) as u8,
            pinned: n & 8 != 0,
        },
        0xd => PageType::Broken,
        0xe => PageType::Allocated,
        PFINFO_XTAB => PageType::Invalid,
        _ => PageType::Normal,
    }
}

/// Counts what goes into the image.
struct Writer {
    bytes: u64,
}

impl Writer {
    fn put<S: Sink + ?Sized>(&mut self, s: &mut S, b: &[u8]) -> Result<(), SrError> {
        s.put(b)?;
        self.bytes += b.len() as u64;
        Ok(())
    }
    fn record<S: Sink + ?Sized>(&mut self, s: &mut S, ty: u32, body: &[u8]) -> Result<(), SrError> {
        let r =
            stream::record(ty, body).ok_or_else(|| err(String::from("a record over 128 MiB")))?;
        self.put(s, &r)
    }
}

/// A save side and a sink that are two objects (a file save).
struct Pair<'a, D: ?Sized, S: ?Sized> {
    d: &'a mut D,
    s: &'a mut S,
}

impl<D: ?Sized, S: Sink + ?Sized> Sink for Pair<'_, D, S> {
    fn put(&mut self, b: &[u8]) -> Result<(), SrError> {
        self.s.put(b)
    }
}

impl<D: PvSaveSide + ?Sized, S: ?Sized> PvSaveSide for Pair<'_, D, S> {
    fn shared_info(&mut self) -> Result<Vec<u8>, SrError> {
        self.d.shared_info()
    }
    fn max_pages(&mut self) -> Result<u64, SrError> {
        self.d.max_pages()
    }
    fn read_frames(&mut self, mfns: &[u64], out: &mut [u8]) -> Result<(), SrError> {
        self.d.read_frames(mfns, out)
    }
    fn frame_types(&mut self, mfns: &mut [u64]) -> Result<(), SrError> {
        self.d.frame_types(mfns)
    }
    fn nr_vcpus(&mut self) -> Result<u32, SrError> {
        self.d.nr_vcpus()
    }
    fn vcpu_context(&mut self, id: u32) -> Result<Option<VcpuGuestContext>, SrError> {
        self.d.vcpu_context(id)
    }
}

/// `X86_PV_INFO`: guest width 8, 4 page-table levels.
pub fn pv_info() -> [u8; 8] {
    [8, 4, 0, 0, 0, 0, 0, 0]
}

/// The guest's p2m and its inverse, as a save reads them.
struct SaveP2m {
    p2m: P2m,
    inv: BTreeMap<u64, u64>,
}

impl SaveP2m {
    fn read<D: PvSaveSide + ?Sized>(d: &mut D, shared: &[u8]) -> Result<SaveP2m, SrError> {
        let limit = d.max_pages()?.saturating_add(P2M_SLACK);
        let p2m = read_p2m(shared, limit, |mfn| {
            let mut b = vec![0u8; PAGE_SIZE];
            d.read_frames(&[mfn], &mut b)?;
            Ok(b)
        })?;
        let inv = invert(&p2m.entries)?;
        Ok(SaveP2m { p2m, inv })
    }

    fn max_pfn(&self) -> u64 {
        self.p2m.entries.len() as u64
    }
}

/// xl's, libxl's and libxc's headers, `X86_PV_INFO` and the p2m frames.
fn write_head<T: Sink + ?Sized>(
    t: &mut T,
    w: &mut Writer,
    m: &SaveP2m,
    config: &[u8],
    xen: (u32, u32),
) -> Result<(), SrError> {
    w.put(t, &savefile::xl_header(config))?;
    w.put(t, &savefile::libxl_header())?;
    w.record(t, librec::LIBXC_CONTEXT, &[])?;
    w.put(t, &stream::headers(stream::DHDR_TYPE_X86_PV, xen.0, xen.1))?;
    w.record(t, rec::X86_PV_INFO, &pv_info())?;
    // Stream version 3: X86_PV_INFO is the static data (Oxen's PV guests
    // keep the CPUID policy their config gives them).
    w.record(t, rec::STATIC_DATA_END, &[])?;
    let mut frames_body = Vec::with_capacity(8 + 8 * m.p2m.frames.len());
    frames_body.extend_from_slice(&0u32.to_le_bytes());
    frames_body.extend_from_slice(&((m.max_pfn() - 1) as u32).to_le_bytes());
    for &f in &m.p2m.frames {
        let pfn = m.inv.get(&f).copied().ok_or_else(|| {
            err(format!(
                "a p2m page (machine frame {f:#x}) is not the guest's"
            ))
        })?;
        frames_body.extend_from_slice(&pfn.to_le_bytes());
    }
    w.record(t, rec::X86_PV_P2M_FRAMES, &frames_body)
}

/// Sends the frames of `pfns` in `PAGE_DATA` batches, page tables
/// canonicalised. While the guest runs (`live`), a page table that does
/// not canonicalise (caught between two updates, or no longer a page
/// table) is left out and returned, to go again later (libxc's
/// `-EAGAIN` from `normalise_pagetable`); paused, it is an error.
fn send_pfns<T: PvSaveSide + Sink + ?Sized>(
    d: &mut T,
    w: &mut Writer,
    m: &SaveP2m,
    pfns: &[u64],
    live: bool,
    progress: &mut dyn FnMut(u64),
) -> Result<Vec<u64>, SrError> {
    let pfn_of = |mfn: u64| m.inv.get(&mfn).copied();
    let mut data = vec![0u8; SAVE_BATCH * PAGE_SIZE];
    let mut sent = 0u64;
    let mut deferred = Vec::new();
    for batch in pfns.chunks(SAVE_BATCH) {
        let mut types: Vec<u64> = batch
            .iter()
            .map(|&p| m.p2m.entries[p as usize])
            .map(|m| if m == INVALID { 0 } else { m })
            .collect();
        d.frame_types(&mut types)?;
        let mut list = Vec::with_capacity(batch.len());
        let mut read = Vec::new();
        for (&pfn, &t) in batch.iter().zip(&types) {
            let mfn = m.p2m.entries[pfn as usize];
            let ty = if mfn == INVALID {
                PageType::Invalid
            } else {
                page_type(t)
            };
            if ty.has_data() {
                read.push(mfn);
            }
            list.push((pfn, ty));
        }
        let buf = &mut data[..read.len() * PAGE_SIZE];
        if !read.is_empty() {
            d.read_frames(&read, buf)?;
        }
        // Pages that go, in `list`'s order, and their data packed.
        let mut out_list = Vec::with_capacity(list.len());
        let mut k = 0;
        let mut kept = 0;
        for &(pfn, ty) in &list {
            if !ty.has_data() {
                out_list.push((pfn, ty));
                continue;
            }
            let (from, to) = (k * PAGE_SIZE, kept * PAGE_SIZE);
            k += 1;
            if let PageType::PageTable { level, .. } = ty {
                let page = &mut buf[from..from + PAGE_SIZE];
                if let Err(e) = canonicalise(page, level, pfn_of) {
                    if live {
                        deferred.push(pfn);
                        continue;
                    }
                    return Err(err(format!("saving pfn {pfn:#x}: {e}")));
                }
            }
            if from != to {
                buf.copy_within(from..from + PAGE_SIZE, to);
            }
            kept += 1;
            out_list.push((pfn, ty));
        }
        if out_list.is_empty() {
            continue;
        }
        let body = stream::page_data(&out_list, &buf[..kept * PAGE_SIZE])
            .ok_or_else(|| err(String::from("a PAGE_DATA batch")))?;
        w.record(d, rec::PAGE_DATA, &body)?;
        sent += kept as u64;
        progress(sent);
    }
    Ok(deferred)
}

/// `X86_TSC_INFO`, `SHARED_INFO`, the vCPUs and the two `END`s (the
/// domain is suspended).
fn write_tail<T: PvSaveSide + Sink + ?Sized>(
    d: &mut T,
    w: &mut Writer,
    m: &SaveP2m,
    shared: &[u8],
) -> Result<(), SrError> {
    let pfn_of = |mfn: u64| m.inv.get(&mfn).copied();
    w.record(d, rec::X86_TSC_INFO, &stream::TscInfo::default().body())?;
    w.record(d, rec::SHARED_INFO, shared)?;
    let n = d.nr_vcpus()?.min(MAX_VCPUS);
    for id in 0..n {
        let Some(mut ctx) = d.vcpu_context(id)? else {
            continue;
        };
        convert_vcpu(&mut ctx, id, |what, mfn| {
            pfn_of(mfn).ok_or_else(|| {
                format!("vCPU {id}: {what} is machine frame {mfn:#x}, not the guest's")
            })
        })
        .map_err(err)?;
        let mut body = Vec::with_capacity(8 + VCPU_CTX_LEN);
        body.extend_from_slice(&id.to_le_bytes());
        body.extend_from_slice(&0u32.to_le_bytes());
        body.extend_from_slice(ctx.as_bytes());
        w.record(d, rec::X86_PV_VCPU_BASIC, &body)?;
    }
    w.record(d, rec::END, &[])?;
    w.record(d, librec::END, &[])
}

/// Saves the suspended domain `d` with its config to `out` (xl's and
/// libxl's layers around libxc's PV stream), calling
/// `progress(frames sent, frames in all)`.
pub fn save_pv<D: PvSaveSide + ?Sized, S: Sink + ?Sized>(
    d: &mut D,
    out: &mut S,
    config: &[u8],
    xen: (u32, u32),
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Stats, SrError> {
    let t = &mut Pair { d, s: out };
    let shared = t.shared_info()?;
    let m = SaveP2m::read(t, &shared)?;
    let max_pfn = m.max_pfn();
    let mut w = Writer { bytes: 0 };
    write_head(t, &mut w, &m, config, xen)?;
    let pfns: Vec<u64> = (0..max_pfn).collect();
    let mut sent = 0;
    send_pfns(t, &mut w, &m, &pfns, false, &mut |n| {
        sent = n;
        progress(n, max_pfn)
    })?;
    write_tail(t, &mut w, &m, &shared)?;
    Ok(Stats {
        pages: sent,
        bytes: w.bytes,
    })
}

/// A running PV domain saved live: log-dirty mode and the suspend.
pub trait LivePv: PvSaveSide {
    /// Turns log-dirty mode on (`XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY`).
    fn log_dirty_on(&mut self) -> Result<(), SrError>;
    /// The pfns written since the last call (`..._CLEAN`), one bit each
    /// in `bitmap`.
    fn clean(&mut self, bitmap: &mut [u8]) -> Result<(), SrError>;
    /// Suspends the guest for the last round (it answers
    /// `control/shutdown = suspend` and stops).
    fn suspend(&mut self) -> Result<(), SrError>;
}

/// Saves the running PV domain `d` live to `out`: every frame while it
/// runs, then, in log-dirty mode, the frames it wrote meanwhile, round
/// after round until few are left or `policy.max_rounds` have gone; then
/// the guest suspends and the rest goes (libxc's `send_memory_live`).
/// `d` also takes the image. `progress(round, frames sent, frames in
/// the round)`, round 0 the last.
pub fn save_pv_live<T: LivePv + Sink + ?Sized>(
    d: &mut T,
    config: &[u8],
    xen: (u32, u32),
    policy: super::image::Precopy,
    progress: &mut dyn FnMut(u32, u64, u64),
) -> Result<super::image::LiveStats, SrError> {
    let shared = d.shared_info()?;
    let mut m = SaveP2m::read(d, &shared)?;
    let max_pfn = m.max_pfn();
    let mut bitmap = vec![0u8; max_pfn.div_ceil(8) as usize];
    d.log_dirty_on()?;
    let mut w = Writer { bytes: 0 };
    write_head(d, &mut w, &m, config, xen)?;
    let mut stats = super::image::LiveStats::default();
    let mut todo: Vec<u64> = (0..max_pfn).collect();
    let mut deferred: Vec<u64> = Vec::new();
    let mut round = 1u32;
    loop {
        let n = todo.len() as u64;
        let again = send_pfns(d, &mut w, &m, &todo, true, &mut |s| progress(round, s, n))?;
        merge(&mut deferred, &again);
        stats.rounds.push(n);
        d.clean(&mut bitmap)?;
        todo = set_bits(&bitmap, max_pfn);
        merge(&mut todo, &deferred);
        if todo.len() as u64 <= policy.dirty_threshold || round >= policy.max_rounds {
            break;
        }
        deferred.clear();
        round += 1;
    }
    d.suspend()?;
    d.clean(&mut bitmap)?;
    merge(&mut todo, &set_bits(&bitmap, max_pfn));
    merge(&mut todo, &deferred);
    // The guest may have changed its p2m meanwhile (a balloon): read it
    // again; a pfn whose frame changed goes again.
    let shared = d.shared_info()?;
    let now = SaveP2m::read(d, &shared)?;
    if now.max_pfn() != max_pfn || now.p2m.frames != m.p2m.frames {
        return Err(err(String::from(
            "the guest's p2m changed its size or its frames during the migration",
        )));
    }
    let changed: Vec<u64> = (0..max_pfn)
        .filter(|&p| now.p2m.entries[p as usize] != m.p2m.entries[p as usize])
        .collect();
    merge(&mut todo, &changed);
    m = now;
    let n = todo.len() as u64;
    send_pfns(d, &mut w, &m, &todo, false, &mut |s| progress(0, s, n))?;
    stats.last = n;
    write_tail(d, &mut w, &m, &shared)?;
    stats.bytes = w.bytes;
    Ok(stats)
}

/// The pfns below `max_pfn` whose bit is set.
fn set_bits(bitmap: &[u8], max_pfn: u64) -> Vec<u64> {
    (0..max_pfn)
        .filter(|&p| {
            bitmap
                .get((p / 8) as usize)
                .is_some_and(|b| b & (1 << (p % 8)) != 0)
        })
        .collect()
}

/// Adds `more` to the sorted set `into`.
fn merge(into: &mut Vec<u64>, more: &[u64]) {
    for &p in more {
        if let Err(at) = into.binary_search(&p) {
            into.insert(at, p);
        }
    }
}

// ---------------------------------------------------------------------------
// Restore
// ---------------------------------------------------------------------------

/// A new, paused PV domain being restored into.
pub trait PvRestoreSide {
    /// Allocates frames for `pfns`; returns their machine frames, in order.
    fn populate(&mut self, pfns: &[u64]) -> Result<Vec<u64>, SrError>;
    /// Writes 4 KiB to each of `mfns` (the domain's own frames).
    fn write_frames(&mut self, mfns: &[u64], data: &[u8]) -> Result<(), SrError>;
    /// Reads one of the domain's frames.
    fn read_frame(&mut self, mfn: u64) -> Result<Vec<u8>, SrError>;
    /// Pins `mfn` as a level-`level` page table (`MMUEXT_PIN_L*_TABLE`).
    fn pin(&mut self, mfn: u64, level: u8) -> Result<(), SrError>;
    /// Lets `f` change the new domain's shared info page; returns the
    /// page's machine address.
    fn update_shared_info(&mut self, f: &mut dyn FnMut(&mut [u8])) -> Result<u64, SrError>;
    /// `XEN_DOMCTL_setvcpucontext`.
    fn set_vcpu_context(&mut self, id: u32, ctx: &VcpuGuestContext) -> Result<(), SrError>;
}

/// What the toolstack gives the restored domain in `start_info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ports {
    /// The new xenstore event channel.
    pub store_evtchn: u32,
    /// The new console event channel.
    pub console_evtchn: u32,
}

/// What a PV restore did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Restored {
    /// Frames written.
    pub pages: u64,
    /// The xenstore ring's new machine frame (for `XS_INTRODUCE`).
    pub store_mfn: u64,
    /// The console ring's new machine frame.
    pub console_mfn: u64,
    /// p2m entries.
    pub max_pfn: u64,
}

/// The longest record body accepted (other than `PAGE_DATA`).
const SMALL_RECORD_MAX: usize = 64 << 10;

fn libxc_max(ty: u32) -> usize {
    match ty {
        rec::PAGE_DATA => {
            8 + 8 * stream::PAGE_DATA_MAX_COUNT as usize
                + PAGE_SIZE * stream::PAGE_DATA_MAX_COUNT as usize
        }
        // The p2m frames of MAX_PFN entries.
        rec::X86_PV_P2M_FRAMES => 8 + 8 * (MAX_PFN as usize / PER_PAGE),
        _ => SMALL_RECORD_MAX,
    }
}

/// The restore's state of libxc's stream.
struct PvRestore {
    max_pfn: u64,
    p2m: Vec<u64>,
    p2m_frames: Vec<u64>,
    pinned: Vec<(u64, u8)>,
    shared: Option<Vec<u8>>,
    vcpus: BTreeMap<u32, VcpuGuestContext>,
    pages: u64,
}

impl PvRestore {
    fn mfn(&self, pfn: u64) -> Option<u64> {
        self.p2m
            .get(usize::try_from(pfn).ok()?)
            .copied()
            .filter(|&m| m != INVALID)
    }

    /// Populates every pfn of `pfns` that is not yet.
    fn populate<D: PvRestoreSide + ?Sized>(
        &mut self,
        d: &mut D,
        pfns: &[u64],
    ) -> Result<(), SrError> {
        let mut fresh: Vec<u64> = Vec::new();
        for &p in pfns {
            if p >= self.max_pfn {
                return Err(err(format!(
                    "pfn {p:#x} is beyond the p2m's {} entries",
                    self.max_pfn
                )));
            }
            if self.p2m[p as usize] == INVALID && !fresh.contains(&p) {
                fresh.push(p);
            }
        }
        if fresh.is_empty() {
            return Ok(());
        }
        let mfns = d.populate(&fresh)?;
        if mfns.len() != fresh.len() {
            return Err(SrError::Domain(String::from(
                "populate gave the wrong number of frames",
            )));
        }
        for (p, m) in fresh.into_iter().zip(mfns) {
            self.p2m[p as usize] = m;
        }
        Ok(())
    }

    fn page_data<D: PvRestoreSide + ?Sized>(
        &mut self,
        d: &mut D,
        body: &[u8],
        at: u64,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), SrError> {
        if self.p2m.is_empty() {
            return Err(err(format!(
                "PAGE_DATA at offset {at} before X86_PV_P2M_FRAMES"
            )));
        }
        let pd = PageData::parse(body, at)?;
        let pfns: Vec<u64> = pd
            .pages
            .iter()
            .filter(|(_, t)| *t != PageType::Invalid)
            .map(|&(p, _)| p)
            .collect();
        self.populate(d, &pfns)?;
        let mut data = pd.data.to_vec();
        let mut mfns = Vec::new();
        let mut k = 0;
        for &(pfn, t) in &pd.pages {
            if !t.has_data() {
                continue;
            }
            let page = &mut data[k * PAGE_SIZE..(k + 1) * PAGE_SIZE];
            // A live save sends a frame again as the guest changed it,
            // maybe with another type: only its last one counts.
            if let Some(m) = self.mfn(pfn) {
                self.pinned.retain(|&(x, _)| x != m);
            }
            if let PageType::PageTable { level, pinned } = t {
                // Frames the table names may come later in the stream:
                // populate them now (as libxc does).
                let mut refs = Vec::new();
                for i in 0..PER_PAGE {
                    let pte = u64_at(page, i * 8);
                    if !xen_slot(level, i) && pte & PTE_PRESENT != 0 {
                        refs.push((pte & PTE_FRAME) >> 12);
                    }
                }
                self.populate(d, &refs).map_err(|e| match e {
                    SrError::Unsupported(m) => {
                        err(format!("page table pfn {pfn:#x} at offset {at}: {m}"))
                    }
                    e => e,
                })?;
                let p2m = &self.p2m;
                localise(page, level, |p| {
                    p2m.get(p as usize).copied().filter(|&m| m != INVALID)
                })
                .map_err(|e| err(format!("pfn {pfn:#x} at offset {at}: {e}")))?;
                if pinned {
                    let m = self
                        .mfn(pfn)
                        .ok_or_else(|| err(String::from("unpopulated")))?;
                    self.pinned.push((m, level));
                }
            }
            mfns.push(
                self.mfn(pfn)
                    .ok_or_else(|| err(String::from("unpopulated")))?,
            );
            k += 1;
        }
        if !mfns.is_empty() {
            d.write_frames(&mfns, &data)?;
        }
        self.pages += mfns.len() as u64;
        progress(self.pages);
        Ok(())
    }
}

/// Restores the rest of a PV image (after [`super::image::read_config`])
/// into `d`, a new paused PV domain, giving it `ports`. Pages go in as
/// they come; the page tables are pinned, the p2m and `start_info`
/// rewritten, shared info and the vCPUs set only once the whole image has
/// been read (a truncated one leaves a domain the caller destroys).
///
/// `max_pfn` bounds the p2m the image may claim (what the config's memory
/// allows): a bigger one is refused before anything is allocated.
pub fn restore_pv<D: PvRestoreSide + ?Sized, S: Source + ?Sized>(
    src: &mut S,
    d: &mut D,
    ports: Ports,
    max_pfn: u64,
    progress: &mut dyn FnMut(u64),
) -> Result<Restored, SrError> {
    let mut h = [0u8; savefile::LIBXL_HEADER_LEN];
    src.take(&mut h)?;
    savefile::read_libxl_header(&h)?;
    let mut at = 0u64;
    let mut done = None;
    loop {
        let r = next_record(src, &mut at, |_| SMALL_RECORD_MAX)?;
        match r.ty {
            librec::END => break,
            librec::LIBXC_CONTEXT if done.is_none() => {
                done = Some(restore_libxc(src, d, max_pfn, progress)?);
            }
            librec::EMULATOR_XENSTORE_DATA => {}
            ty => {
                return Err(err(format!(
                    "libxl record {ty:#x} at offset {} (not supported for PV here, or repeated)",
                    r.at
                )))
            }
        }
    }
    let st =
        done.ok_or_else(|| err(String::from("the image holds no domain (no LIBXC_CONTEXT)")))?;
    // Only now, the whole image read (libxl's END too), the page tables,
    // shared info and the vCPUs.
    finish(st, d, ports)
}

/// libxc's stream, up to its `END`: frames populated and written; the
/// rest is left for [`finish`].
fn restore_libxc<D: PvRestoreSide + ?Sized, S: Source + ?Sized>(
    src: &mut S,
    d: &mut D,
    limit: u64,
    progress: &mut dyn FnMut(u64),
) -> Result<PvRestore, SrError> {
    let limit = limit.min(MAX_PFN);
    let mut h = [0u8; stream::HEADERS_LEN];
    src.take(&mut h)?;
    let dh = match stream::read_headers(&h)? {
        Decoded::Done(dh, _) => dh,
        Decoded::Incomplete(_) => return Err(SrError::Truncated),
    };
    if dh.ty != stream::DHDR_TYPE_X86_PV {
        return Err(err(String::from(
            "an HVM domain's image where a PV one was expected",
        )));
    }
    let mut at = stream::HEADERS_LEN as u64;
    let mut st = PvRestore {
        max_pfn: 0,
        p2m: Vec::new(),
        p2m_frames: Vec::new(),
        pinned: Vec::new(),
        shared: None,
        vcpus: BTreeMap::new(),
        pages: 0,
    };
    let mut info = false;
    loop {
        let r = next_record(src, &mut at, libxc_max)?;
        let bad = |why: &str| {
            err(format!(
                "{} at offset {}: {why}",
                stream::record_name(r.ty),
                r.at
            ))
        };
        match r.ty {
            rec::END => break,
            rec::X86_PV_INFO => {
                if r.body.len() != 8 {
                    return Err(bad("not 8 bytes"));
                }
                if r.body[0] != 8 || r.body[1] != 4 {
                    return Err(bad(&format!(
                        "guest width {} with {} levels (only 64-bit guests with 4 levels)",
                        r.body[0], r.body[1]
                    )));
                }
                info = true;
            }
            rec::X86_PV_P2M_FRAMES => {
                if !info || !st.p2m.is_empty() {
                    return Err(bad("before X86_PV_INFO, or repeated"));
                }
                if r.body.len() < 8 || (r.body.len() - 8) % 8 != 0 {
                    return Err(bad("not a whole number of frames"));
                }
                let start = u32::from_le_bytes([r.body[0], r.body[1], r.body[2], r.body[3]]);
                let end = u32::from_le_bytes([r.body[4], r.body[5], r.body[6], r.body[7]]);
                let max_pfn = u64::from(end) + 1;
                if start != 0 || max_pfn > limit {
                    return Err(bad(&format!(
                        "pfns {start}..={end} (must start at 0, at most {limit} for this config's memory)"
                    )));
                }
                let frames: Vec<u64> = r.body[8..].chunks_exact(8).map(|c| u64_at(c, 0)).collect();
                if frames.len() as u64 != max_pfn.div_ceil(PER_PAGE as u64) {
                    return Err(bad("the frame count does not match the pfn range"));
                }
                if let Some(f) = frames.iter().find(|&&f| f >= max_pfn) {
                    return Err(bad(&format!("p2m frame pfn {f:#x} is beyond the range")));
                }
                st.max_pfn = max_pfn;
                // A hostile image's range must not exhaust Dom0's heap:
                // the allocation may fail, with an error.
                let mut p2m = Vec::new();
                p2m.try_reserve_exact(max_pfn as usize)
                    .map_err(|_| bad("no memory in Dom0 for a p2m this large"))?;
                p2m.resize(max_pfn as usize, INVALID);
                st.p2m = p2m;
                st.p2m_frames = frames;
            }
            rec::PAGE_DATA => st.page_data(d, &r.body, r.at, progress)?,
            rec::X86_TSC_INFO => {
                stream::parse_tsc_info(&r.body, r.at)?;
            }
            rec::SHARED_INFO => {
                if r.body.len() != PAGE_SIZE {
                    return Err(bad("not 4 KiB"));
                }
                st.shared = Some(r.body);
            }
            rec::X86_PV_VCPU_BASIC => {
                if r.body.len() != 8 + VCPU_CTX_LEN {
                    return Err(bad(&format!("not {} bytes", 8 + VCPU_CTX_LEN)));
                }
                let id = u32::from_le_bytes([r.body[0], r.body[1], r.body[2], r.body[3]]);
                if id >= MAX_VCPUS {
                    return Err(bad(&format!("vCPU {id}")));
                }
                let ctx =
                    VcpuGuestContext::read_from_bytes(&r.body[8..]).map_err(|_| bad("context"))?;
                st.vcpus.insert(id, ctx);
            }
            rec::X86_PV_VCPU_EXTENDED
            | rec::X86_PV_VCPU_XSAVE
            | rec::X86_PV_VCPU_MSRS
            | rec::VERIFY
            | rec::STATIC_DATA_END
            | rec::X86_CPUID_POLICY
            | rec::X86_MSR_POLICY => {}
            ty if ty & rec::OPTIONAL != 0 => {}
            _ => return Err(bad("not supported for PV here")),
        }
    }
    Ok(st)
}

/// Everything after the stream's `END`.
fn finish<D: PvRestoreSide + ?Sized>(
    mut st: PvRestore,
    d: &mut D,
    ports: Ports,
) -> Result<Restored, SrError> {
    if st.p2m.is_empty() {
        return Err(err(String::from(
            "the image has no X86_PV_P2M_FRAMES record",
        )));
    }
    let shared = st
        .shared
        .take()
        .ok_or_else(|| err(String::from("the image has no SHARED_INFO record")))?;
    let si_pfn = st
        .vcpus
        .get(&0)
        .ok_or_else(|| err(String::from("the image has no context for vCPU 0")))?
        .user_regs
        .rdx;
    // The guest's p2m, rewritten with the new machine frames.
    for (i, &pfn) in st.p2m_frames.clone().iter().enumerate() {
        let mfn = st
            .mfn(pfn)
            .ok_or_else(|| err(format!("p2m page pfn {pfn:#x} is not in the image")))?;
        let mut page = vec![0u8; PAGE_SIZE];
        for j in 0..PER_PAGE {
            let v = st.p2m.get(i * PER_PAGE + j).copied().unwrap_or(INVALID);
            put_u64(&mut page, j * 8, v);
        }
        d.write_frames(&[mfn], &page)?;
    }
    // Pin the page tables, lowest level first.
    st.pinned.sort_by_key(|&(_, l)| l);
    for &(m, l) in &st.pinned {
        d.pin(m, l)?;
    }
    // Shared info: the saved vCPU info and arch part; no event pending,
    // every port masked (the guest binds and unmasks again), no p2m
    // published until the guest publishes it again.
    let shared_maddr = d.update_shared_info(&mut |page: &mut [u8]| {
        page[..SI_VCPU_INFO_END].copy_from_slice(&shared[..SI_VCPU_INFO_END]);
        page[SI_ARCH..SI_ARCH_END].copy_from_slice(&shared[SI_ARCH..SI_ARCH_END]);
        page[SI_PENDING..SI_PENDING + 512].fill(0);
        page[SI_MASK..SI_MASK + 512].fill(0xff);
        put_u64(page, SI_ARCH_FLL, 0);
    })?;
    // start_info: vCPU 0's rdx names it.
    let si_mfn = st.mfn(si_pfn).ok_or_else(|| {
        err(format!(
            "the start_info pfn {si_pfn:#x} is not in the image"
        ))
    })?;
    let mut si = d.read_frame(si_mfn)?;
    if si.len() != PAGE_SIZE {
        return Err(SrError::Domain(String::from("start_info is not 4 KiB")));
    }
    let store_pfn = u64_at(&si, SI_STORE_MFN);
    let console_pfn = u64_at(&si, SI_CONSOLE_MFN);
    let store_mfn = st.mfn(store_pfn).ok_or_else(|| {
        err(format!(
            "the xenstore pfn {store_pfn:#x} is not in the image"
        ))
    })?;
    let console_mfn = st.mfn(console_pfn).ok_or_else(|| {
        err(format!(
            "the console pfn {console_pfn:#x} is not in the image"
        ))
    })?;
    put_u64(&mut si, SI_SHARED_INFO, shared_maddr);
    put_u64(&mut si, SI_STORE_MFN, store_mfn);
    put_u32(&mut si, SI_STORE_EVTCHN, ports.store_evtchn);
    put_u64(&mut si, SI_CONSOLE_MFN, console_mfn);
    put_u32(&mut si, SI_CONSOLE_EVTCHN, ports.console_evtchn);
    d.write_frames(&[si_mfn], &si)?;
    // The vCPUs, localised.
    let vcpus: Vec<(u32, VcpuGuestContext)> = st.vcpus.iter().map(|(&i, &c)| (i, c)).collect();
    for (id, mut ctx) in vcpus {
        convert_vcpu(&mut ctx, id, |what, pfn| {
            st.mfn(pfn)
                .ok_or_else(|| format!("vCPU {id}: {what} is pfn {pfn:#x}, not in the image"))
        })
        .map_err(err)?;
        ctx.flags |= VGCF_ONLINE;
        d.set_vcpu_context(id, &ctx)?;
    }
    Ok(Restored {
        pages: st.pages,
        store_mfn,
        console_mfn,
        max_pfn: st.max_pfn,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migration::image::read_config;
    use alloc::collections::BTreeSet;
    use alloc::string::ToString;
    use zerocopy::FromZeros;

    const MAX: u64 = 600;
    const SI_PFN: u64 = 1;
    const STORE_PFN: u64 = 2;
    const CONSOLE_PFN: u64 = 3;
    const P2M_PFNS: [u64; 2] = [10, 11];
    const FLL_PFN: u64 = 12;
    const LIST_PFN: u64 = 13;
    const L4: u64 = 20;
    const L3: u64 = 21;
    const L2: u64 = 22;
    const L1: u64 = 23;
    const BALLOONED: u64 = 500;
    const SHARED_MFN: u64 = 0x9_0000;
    const FOREIGN_MFN: u64 = 0x9_9999;

    fn old_mfn(pfn: u64) -> u64 {
        0x1000 + pfn * 3
    }

    fn pte(mfn: u64) -> u64 {
        (mfn << 12) | 0x67
    }

    /// A suspended PV guest: machine memory, its p2m, page tables.
    struct Guest {
        mem: BTreeMap<u64, Vec<u8>>,
        p2m: Vec<u64>,
        ctx: VcpuGuestContext,
        /// Page types other than the fixed tables', by pfn.
        types: BTreeMap<u64, u64>,
    }

    impl Guest {
        fn new() -> Guest {
            let mut p2m: Vec<u64> = (0..MAX).map(old_mfn).collect();
            p2m[BALLOONED as usize] = INVALID;
            let mut mem = BTreeMap::new();
            for (pfn, &m) in p2m.iter().enumerate() {
                if m == INVALID {
                    continue;
                }
                let page: Vec<u8> = (0..PAGE_SIZE).map(|i| (pfn * 31 + i * 7) as u8).collect();
                mem.insert(m, page);
            }
            let mut g = Guest {
                mem,
                p2m,
                ctx: VcpuGuestContext::new_zeroed(),
                types: BTreeMap::new(),
            };
            // The p2m pages, the frame list, the frame list list.
            for (i, &pp) in P2M_PFNS.iter().enumerate() {
                let mut page = vec![0u8; PAGE_SIZE];
                for j in 0..PER_PAGE {
                    let v = g.p2m.get(i * PER_PAGE + j).copied().unwrap_or(0);
                    put_u64(&mut page, j * 8, v);
                }
                g.set(pp, page);
            }
            let mut list = vec![0u8; PAGE_SIZE];
            put_u64(&mut list, 0, old_mfn(P2M_PFNS[0]));
            put_u64(&mut list, 8, old_mfn(P2M_PFNS[1]));
            g.set(LIST_PFN, list);
            let mut fll = vec![0u8; PAGE_SIZE];
            put_u64(&mut fll, 0, old_mfn(LIST_PFN));
            g.set(FLL_PFN, fll);
            // Page tables: L4 -> L3 -> L2 -> L1 -> pages 100..110, and a
            // hypervisor slot in the L4.
            let table = |entries: &[(usize, u64)]| {
                let mut p = vec![0u8; PAGE_SIZE];
                for &(i, v) in entries {
                    put_u64(&mut p, i * 8, v);
                }
                p
            };
            g.set(
                L4,
                table(&[
                    (0, pte(old_mfn(L3))),
                    (256, pte(FOREIGN_MFN)),
                    (300, 0x1234_5000),
                ]),
            );
            g.set(L3, table(&[(1, pte(old_mfn(L2)))]));
            g.set(L2, table(&[(2, pte(old_mfn(L1)))]));
            let l1: Vec<(usize, u64)> =
                (0..10).map(|i| (i, pte(old_mfn(100 + i as u64)))).collect();
            g.set(L1, table(&l1));
            // start_info: the store and console frames as pfns (the guest
            // converted them before suspending).
            let mut si = vec![0u8; PAGE_SIZE];
            si[..14].copy_from_slice(b"xen-3.0-x86_64");
            put_u64(&mut si, SI_STORE_MFN, STORE_PFN);
            put_u32(&mut si, SI_STORE_EVTCHN, 1);
            put_u64(&mut si, SI_CONSOLE_MFN, CONSOLE_PFN);
            put_u32(&mut si, SI_CONSOLE_EVTCHN, 2);
            g.set(SI_PFN, si);
            // Shared info (not the guest's frame).
            let mut sh = vec![0x11u8; PAGE_SIZE];
            put_u64(&mut sh, SI_ARCH_MAX_PFN, MAX);
            put_u64(&mut sh, SI_ARCH_FLL, old_mfn(FLL_PFN));
            g.mem.insert(SHARED_MFN, sh);
            g.ctx.ctrlreg[3] = old_mfn(L4) << 12;
            g.ctx.user_regs.rdx = old_mfn(SI_PFN);
            g.ctx.user_regs.rip = 0xffff_ffff_8000_1234;
            g.ctx.gdt_ents = 16;
            g.ctx.gdt_frames[0] = old_mfn(30);
            g
        }

        fn set(&mut self, pfn: u64, page: Vec<u8>) {
            self.mem.insert(old_mfn(pfn), page);
        }
    }

    impl PvSaveSide for Guest {
        fn shared_info(&mut self) -> Result<Vec<u8>, SrError> {
            Ok(self.mem[&SHARED_MFN].clone())
        }
        fn max_pages(&mut self) -> Result<u64, SrError> {
            Ok(MAX)
        }
        fn read_frames(&mut self, mfns: &[u64], out: &mut [u8]) -> Result<(), SrError> {
            for (m, o) in mfns.iter().zip(out.chunks_mut(PAGE_SIZE)) {
                let owned = *m == SHARED_MFN || self.p2m.contains(m);
                let p =
                    self.mem.get(m).filter(|_| owned).ok_or_else(|| {
                        SrError::Domain(format!("frame {m:#x} is not the guest's"))
                    })?;
                o.copy_from_slice(p);
            }
            Ok(())
        }
        fn frame_types(&mut self, mfns: &mut [u64]) -> Result<(), SrError> {
            for m in mfns {
                let t: u64 = match self.p2m.iter().position(|x| x == m) {
                    Some(p) if self.types.contains_key(&(p as u64)) => self.types[&(p as u64)],
                    Some(p) if p as u64 == L4 => 4 | 8,
                    Some(p) if p as u64 == L3 => 3,
                    Some(p) if p as u64 == L2 => 2,
                    Some(p) if p as u64 == L1 => 1,
                    Some(_) => 0,
                    None => PFINFO_XTAB,
                };
                *m = t << PFINFO_SHIFT;
            }
            Ok(())
        }
        fn nr_vcpus(&mut self) -> Result<u32, SrError> {
            Ok(2)
        }
        fn vcpu_context(&mut self, id: u32) -> Result<Option<VcpuGuestContext>, SrError> {
            Ok((id == 0).then_some(self.ctx))
        }
    }

    /// A new domain being restored into.
    #[derive(Default)]
    struct NewDomain {
        mem: BTreeMap<u64, Vec<u8>>,
        next: u64,
        pins: Vec<(u64, u8)>,
        shared: Vec<u8>,
        vcpus: BTreeMap<u32, VcpuGuestContext>,
    }

    const NEW_SHARED: u64 = 0x7777;

    impl PvRestoreSide for NewDomain {
        fn populate(&mut self, pfns: &[u64]) -> Result<Vec<u64>, SrError> {
            Ok(pfns
                .iter()
                .map(|_| {
                    self.next += 1;
                    let m = 0x5_0000 + self.next * 5;
                    assert!(self.mem.insert(m, vec![0; PAGE_SIZE]).is_none());
                    m
                })
                .collect())
        }
        fn write_frames(&mut self, mfns: &[u64], data: &[u8]) -> Result<(), SrError> {
            for (m, d) in mfns.iter().zip(data.chunks(PAGE_SIZE)) {
                self.mem
                    .get_mut(m)
                    .expect("written before populated")
                    .copy_from_slice(d);
            }
            Ok(())
        }
        fn read_frame(&mut self, mfn: u64) -> Result<Vec<u8>, SrError> {
            Ok(self.mem[&mfn].clone())
        }
        fn pin(&mut self, mfn: u64, level: u8) -> Result<(), SrError> {
            self.pins.push((mfn, level));
            Ok(())
        }
        fn update_shared_info(&mut self, f: &mut dyn FnMut(&mut [u8])) -> Result<u64, SrError> {
            if self.shared.is_empty() {
                self.shared = vec![0x22; PAGE_SIZE];
            }
            f(&mut self.shared);
            Ok(NEW_SHARED << 12)
        }
        fn set_vcpu_context(&mut self, id: u32, ctx: &VcpuGuestContext) -> Result<(), SrError> {
            self.vcpus.insert(id, *ctx);
            Ok(())
        }
    }

    struct Reader<'a>(&'a [u8]);

    impl Source for Reader<'_> {
        fn take(&mut self, b: &mut [u8]) -> Result<(), SrError> {
            if self.0.len() < b.len() {
                return Err(SrError::Truncated);
            }
            b.copy_from_slice(&self.0[..b.len()]);
            self.0 = &self.0[b.len()..];
            Ok(())
        }
    }

    const PORTS: Ports = Ports {
        store_evtchn: 7,
        console_evtchn: 8,
    };

    fn saved(g: &mut Guest) -> Vec<u8> {
        let mut out = Vec::new();
        let mut last = 0;
        let st = save_pv(g, &mut out, b"name = \"life\"\n", (4, 17), &mut |n, _| {
            last = n
        })
        .unwrap();
        assert_eq!(st.pages, MAX - 1, "every populated frame");
        assert_eq!(last, MAX - 1);
        assert_eq!(st.bytes, out.len() as u64);
        out
    }

    fn restore(image: &[u8]) -> Result<(NewDomain, Restored), SrError> {
        let mut r = Reader(image);
        let cfg = read_config(&mut r)?;
        assert_eq!(cfg, b"name = \"life\"\n");
        let mut d = NewDomain::default();
        let got = restore_pv(&mut r, &mut d, PORTS, MAX + 100, &mut |_| {})?;
        Ok((d, got))
    }

    /// The new machine frame of `pfn` (through the restored p2m pages).
    fn new_mfn(d: &NewDomain, got: &Restored, pfn: u64) -> u64 {
        let _ = got;
        // The p2m pages are at pfns 10 and 11: find them by content.
        let pages: Vec<&Vec<u8>> = d
            .mem
            .values()
            .filter(|p| {
                (0..4).all(|j| {
                    let v = u64_at(p, j * 8);
                    (0x5_0000..0x5_0000 + 5 * 10_000).contains(&v)
                })
            })
            .collect();
        for p in pages {
            // page 0 holds pfn 0..512; page 1 holds 512..600 then INVALID.
            let first_is_page1 = u64_at(p, (MAX as usize - PER_PAGE) * 8) == INVALID;
            let base = if first_is_page1 { PER_PAGE as u64 } else { 0 };
            if (base..base + PER_PAGE as u64).contains(&pfn) {
                return u64_at(p, ((pfn - base) as usize) * 8);
            }
        }
        panic!("no p2m page for pfn {pfn}");
    }

    #[test]
    fn canonicalise_and_localise_are_inverses_and_drop_hypervisor_slots() {
        let mut page = vec![0u8; PAGE_SIZE];
        put_u64(&mut page, 0, pte(0x1003));
        put_u64(&mut page, 8, 0x1234_5000); // not present: kept
        put_u64(&mut page, 256 * 8, pte(0xdead)); // Xen's slot
        put_u64(&mut page, 511 * 8, pte(0x1006) | (1 << 63));
        let mut c = page.clone();
        canonicalise(&mut c, 4, |m| (m >= 0x1000).then(|| (m - 0x1000) / 3)).unwrap();
        assert_eq!(u64_at(&c, 0), pte(1));
        assert_eq!(u64_at(&c, 8), 0x1234_5000);
        assert_eq!(u64_at(&c, 256 * 8), 0);
        assert_eq!(u64_at(&c, 511 * 8), pte(2) | (1 << 63));
        localise(&mut c, 4, |p| Some(0x1000 + p * 3)).unwrap();
        put_u64(&mut page, 256 * 8, 0);
        assert_eq!(c, page);
        // An L1 keeps entry 256 (only L4s have hypervisor slots).
        let mut l1 = vec![0u8; PAGE_SIZE];
        put_u64(&mut l1, 256 * 8, pte(0x1003));
        canonicalise(&mut l1, 1, |m| Some(m - 0x1000)).unwrap();
        assert_eq!(u64_at(&l1, 256 * 8), pte(3));
        // A frame that is not the guest's.
        let e = canonicalise(&mut page.clone(), 2, |_| None).unwrap_err();
        assert!(e.contains("does not own"), "{e}");
        let e = localise(&mut page.clone(), 1, |_| None).unwrap_err();
        assert!(e.contains("does not have"), "{e}");
        assert!(canonicalise(&mut page.clone(), 5, Some).is_err());
        assert!(canonicalise(&mut [0u8; 8], 1, Some).is_err());
    }

    #[test]
    fn the_p2m_is_read_down_the_frame_list_list() {
        let mut g = Guest::new();
        let sh = g.mem[&SHARED_MFN].clone();
        let p = read_p2m(&sh, MAX, |m| Ok(g.mem[&m].clone())).unwrap();
        assert_eq!(p.entries, g.p2m);
        assert_eq!(p.frames, [old_mfn(10), old_mfn(11)]);
        // Nothing published.
        let mut none = sh.clone();
        put_u64(&mut none, SI_ARCH_FLL, 0);
        let e = read_p2m(&none, MAX, |m| Ok(g.mem[&m].clone())).unwrap_err();
        assert!(e.to_string().contains("published no p2m"), "{e}");
        // A hostile max_pfn is refused before anything is read.
        let mut huge = sh.clone();
        put_u64(&mut huge, SI_ARCH_MAX_PFN, u64::MAX);
        let e = read_p2m(&huge, MAX, |_| panic!("read")).unwrap_err();
        assert!(e.to_string().contains("entries"), "{e}");
        // More than the domain may have, though under MAX_PFN.
        let e = read_p2m(&sh, MAX - 1, |_| panic!("read")).unwrap_err();
        assert!(e.to_string().contains("at most 599"), "{e}");
        // A frame list naming a frame the guest does not own.
        g.mem.get_mut(&old_mfn(FLL_PFN)).unwrap()[..8].copy_from_slice(&FOREIGN_MFN.to_le_bytes());
        let sh = g.mem[&SHARED_MFN].clone();
        assert!(read_p2m(&sh, MAX, |m| {
            let mut b = vec![0u8; PAGE_SIZE];
            g.read_frames(&[m], &mut b)?;
            Ok(b)
        })
        .is_err());
    }

    #[test]
    fn a_saved_pv_domain_restores_with_its_frames_localised() {
        let mut g = Guest::new();
        let image = saved(&mut g);
        let (d, got) = restore(&image).unwrap();
        assert_eq!(got.pages, MAX - 1);
        assert_eq!(got.max_pfn, MAX);
        let nm = |p| new_mfn(&d, &got, p);
        // Every populated pfn has a frame; the ballooned one has none.
        assert_eq!(d.mem.len() as u64, MAX - 1);
        assert_eq!(nm(BALLOONED), INVALID);
        let specials: BTreeSet<u64> = [SI_PFN, P2M_PFNS[0], P2M_PFNS[1], L4, L3, L2, L1]
            .into_iter()
            .collect();
        for pfn in (0..MAX).filter(|p| *p != BALLOONED && !specials.contains(p)) {
            assert_eq!(d.mem[&nm(pfn)], g.mem[&old_mfn(pfn)], "pfn {pfn}");
        }
        // The page tables point at the new frames; Xen's slot is gone, the
        // not-present entry kept.
        let l4 = &d.mem[&nm(L4)];
        assert_eq!(u64_at(l4, 0), pte(nm(L3)));
        assert_eq!(u64_at(l4, 256 * 8), 0);
        assert_eq!(u64_at(l4, 300 * 8), 0x1234_5000);
        assert_eq!(u64_at(&d.mem[&nm(L1)], 9 * 8), pte(nm(109)));
        assert_eq!(d.pins, [(nm(L4), 4)]);
        // start_info rewritten.
        let si = &d.mem[&nm(SI_PFN)];
        assert_eq!(u64_at(si, SI_SHARED_INFO), NEW_SHARED << 12);
        assert_eq!(u64_at(si, SI_STORE_MFN), nm(STORE_PFN));
        assert_eq!(u64_at(si, SI_CONSOLE_MFN), nm(CONSOLE_PFN));
        assert_eq!(
            &si[SI_STORE_EVTCHN..SI_STORE_EVTCHN + 4],
            &7u32.to_le_bytes()
        );
        assert_eq!(
            &si[SI_CONSOLE_EVTCHN..SI_CONSOLE_EVTCHN + 4],
            &8u32.to_le_bytes()
        );
        assert_eq!(got.store_mfn, nm(STORE_PFN));
        assert_eq!(&si[..14], b"xen-3.0-x86_64");
        // Shared info: vcpu_info and arch carried, events masked, no p2m.
        assert!(d.shared[..SI_VCPU_INFO_END].iter().all(|&b| b == 0x11));
        assert!(d.shared[SI_PENDING..SI_PENDING + 512]
            .iter()
            .all(|&b| b == 0));
        assert!(d.shared[SI_MASK..SI_MASK + 512].iter().all(|&b| b == 0xff));
        assert_eq!(u64_at(&d.shared, SI_ARCH_MAX_PFN), MAX);
        assert_eq!(u64_at(&d.shared, SI_ARCH_FLL), 0);
        assert_eq!(d.shared[3072], 0x22, "the new wallclock is kept");
        // vCPU 0 only (vCPU 1 was down), localised, online.
        assert_eq!(d.vcpus.len(), 1);
        let c = d.vcpus[&0];
        assert_eq!(c.ctrlreg[3], nm(L4) << 12);
        assert_eq!(c.user_regs.rdx, nm(SI_PFN));
        assert_eq!(c.gdt_frames[0], nm(30));
        assert_eq!(c.user_regs.rip, 0xffff_ffff_8000_1234);
        assert_ne!(c.flags & VGCF_ONLINE, 0);
    }

    /// A guest that runs on while it is saved live: it writes between
    /// rounds, and log-dirty mode reports what it wrote.
    struct Running {
        g: Guest,
        on: bool,
        cleans: u32,
        dirty: BTreeSet<u64>,
        suspended: bool,
        out: Vec<u8>,
    }

    impl Sink for Running {
        fn put(&mut self, b: &[u8]) -> Result<(), SrError> {
            self.out.extend_from_slice(b);
            Ok(())
        }
    }

    impl Running {
        fn write(&mut self, pfn: u64, byte: u8) {
            self.g.mem.insert(old_mfn(pfn), vec![byte; PAGE_SIZE]);
            self.dirty.insert(pfn);
        }
        fn set_l1(&mut self, index: usize, v: u64) {
            let l1 = self.g.mem.get_mut(&old_mfn(L1)).unwrap();
            put_u64(l1, index * 8, v);
        }
    }

    impl PvSaveSide for Running {
        fn shared_info(&mut self) -> Result<Vec<u8>, SrError> {
            self.g.shared_info()
        }
        fn max_pages(&mut self) -> Result<u64, SrError> {
            self.g.max_pages()
        }
        fn read_frames(&mut self, mfns: &[u64], out: &mut [u8]) -> Result<(), SrError> {
            self.g.read_frames(mfns, out)
        }
        fn frame_types(&mut self, mfns: &mut [u64]) -> Result<(), SrError> {
            self.g.frame_types(mfns)
        }
        fn nr_vcpus(&mut self) -> Result<u32, SrError> {
            assert!(self.suspended, "vCPUs are read only once suspended");
            self.g.nr_vcpus()
        }
        fn vcpu_context(&mut self, id: u32) -> Result<Option<VcpuGuestContext>, SrError> {
            self.g.vcpu_context(id)
        }
    }

    impl LivePv for Running {
        fn log_dirty_on(&mut self) -> Result<(), SrError> {
            self.on = true;
            // Caught in the middle of an update: L1 entry 20 names a
            // frame that is not the guest's (it cannot go yet).
            self.set_l1(20, pte(FOREIGN_MFN));
            Ok(())
        }
        fn clean(&mut self, bitmap: &mut [u8]) -> Result<(), SrError> {
            assert!(self.on);
            bitmap.fill(0);
            for &p in &self.dirty {
                bitmap[(p / 8) as usize] |= 1 << (p % 8);
            }
            self.dirty.clear();
            self.cleans += 1;
            if self.cleans == 1 && !self.suspended {
                // It runs on: writes, write-protected entries, a page
                // table that stops being one.
                for p in 100..104 {
                    self.write(p, p as u8);
                }
                self.set_l1(5, (pte(old_mfn(105)) & !PTE_RW) | L1E_LOGDIRTY_RO);
                self.dirty.insert(L1);
                self.g.types.remove(&40);
                self.write(40, 0x40);
            }
            Ok(())
        }
        fn suspend(&mut self) -> Result<(), SrError> {
            // Its last writes, and the update finished.
            self.write(104, 0xee);
            self.set_l1(20, pte(old_mfn(110)));
            self.suspended = true;
            Ok(())
        }
    }

    #[test]
    fn a_running_pv_guest_saved_live_restores_as_it_was_when_it_stopped() {
        let mut g = Guest::new();
        // pfn 40 is a pinned L1 (empty) when the save starts.
        g.set(40, vec![0; PAGE_SIZE]);
        g.types.insert(40, 1 | 8);
        let mut r = Running {
            g,
            on: false,
            cleans: 0,
            dirty: BTreeSet::new(),
            suspended: false,
            out: Vec::new(),
        };
        let st = save_pv_live(
            &mut r,
            b"name = \"life\"\n",
            (4, 17),
            crate::migration::image::Precopy::default(),
            &mut |_, _, _| {},
        )
        .unwrap();
        // Round 1: every pfn (the L1 caught mid-update waits); then the
        // written frames, the L1 and pfn 40 go while paused.
        assert_eq!(st.rounds, [MAX]);
        assert_eq!(st.last, 7, "pfns 40, L1, 100..=104");
        assert_eq!(st.bytes, r.out.len() as u64);
        let (d, got) = restore(&r.out).unwrap();
        let nm = |p| new_mfn(&d, &got, p);
        for p in 100..104 {
            assert_eq!(d.mem[&nm(p)], vec![p as u8; PAGE_SIZE]);
        }
        assert_eq!(d.mem[&nm(104)], vec![0xee; PAGE_SIZE]);
        assert_eq!(d.mem[&nm(40)], vec![0x40; PAGE_SIZE]);
        let l1 = &d.mem[&nm(L1)];
        assert_eq!(u64_at(l1, 5 * 8), pte(nm(105)), "writable again, unmarked");
        assert_eq!(u64_at(l1, 20 * 8), pte(nm(110)));
        assert_eq!(u64_at(l1, 9 * 8), pte(nm(109)));
        // pfn 40 was sent as a pinned L1, then as data: not pinned.
        assert_eq!(d.pins, [(nm(L4), 4)]);
    }

    #[test]
    fn a_guest_mapping_a_frame_it_does_not_own_cannot_be_saved() {
        let mut g = Guest::new();
        let l1 = g.mem.get_mut(&old_mfn(L1)).unwrap();
        put_u64(l1, 5 * 8, pte(FOREIGN_MFN));
        let e = save_pv(&mut g, &mut Vec::new(), b"", (4, 17), &mut |_, _| {}).unwrap_err();
        assert!(e.to_string().contains("does not own"), "{e}");
        // A vCPU on a foreign L4.
        let mut g = Guest::new();
        g.ctx.ctrlreg[3] = FOREIGN_MFN << 12;
        let e = save_pv(&mut g, &mut Vec::new(), b"", (4, 17), &mut |_, _| {}).unwrap_err();
        assert!(e.to_string().contains("cr3"), "{e}");
        // Two pfns on one frame.
        let mut g = Guest::new();
        g.p2m[7] = old_mfn(8);
        let p = g.p2m.clone();
        let mut page = g.mem[&old_mfn(10)].clone();
        put_u64(&mut page, 7 * 8, p[7]);
        g.set(10, page);
        let e = save_pv(&mut g, &mut Vec::new(), b"", (4, 17), &mut |_, _| {}).unwrap_err();
        assert!(e.to_string().contains("gives machine frame"), "{e}");
    }

    #[test]
    fn every_truncation_of_a_pv_image_is_refused() {
        let mut g = Guest::new();
        let image = saved(&mut g);
        let mut cuts: Vec<usize> = (0..200).collect();
        cuts.extend((200..image.len()).step_by(4093));
        cuts.extend(image.len() - 64..image.len());
        for cut in cuts {
            assert!(
                restore(&image[..cut]).is_err(),
                "cut at {cut} of {}",
                image.len()
            );
        }
    }

    #[test]
    fn an_image_cut_after_libxcs_end_sets_neither_shared_info_nor_vcpus() {
        // Found by fuzzing (fuzz/fuzz_targets/save_image.rs): the page
        // tables, shared info and vCPUs went in at libxc's END, before
        // libxl's END was read.
        let mut g = Guest::new();
        let image = saved(&mut g);
        // libxl's END record (8 bytes) is the image's last.
        let mut r = Reader(&image[..image.len() - 8]);
        read_config(&mut r).unwrap();
        let mut d = NewDomain::default();
        let e = restore_pv(&mut r, &mut d, PORTS, MAX + 100, &mut |_| {}).unwrap_err();
        assert_eq!(e, SrError::Truncated);
        assert!(d.vcpus.is_empty(), "vCPUs set");
        assert!(d.shared.is_empty(), "shared info set");
        assert!(d.pins.is_empty(), "page tables pinned");
    }

    /// The offset of the first record of type `ty` in libxc's stream.
    fn find_record(image: &[u8], ty: u32) -> usize {
        let mut at = savefile::XL_HEADER_LEN
            + u32::from_le_bytes(image[44..48].try_into().unwrap()) as usize
            + savefile::LIBXL_HEADER_LEN
            + 8
            + stream::HEADERS_LEN;
        loop {
            let t = u32::from_le_bytes(image[at..at + 4].try_into().unwrap());
            let len = u32::from_le_bytes(image[at + 4..at + 8].try_into().unwrap()) as usize;
            if t == ty {
                return at;
            }
            at += 8 + len.next_multiple_of(8);
        }
    }

    #[test]
    fn hostile_pv_images_are_refused_with_what_is_wrong() {
        let mut g = Guest::new();
        let image = saved(&mut g);
        let bad = |f: &dyn Fn(&mut Vec<u8>), want: &str| {
            let mut i = image.clone();
            f(&mut i);
            let e = restore(&i)
                .err()
                .unwrap_or_else(|| panic!("{want}: accepted"));
            assert!(e.to_string().contains(want), "{want}: {e}");
        };
        // A p2m bigger than the config's memory allows.
        let mut r = Reader(&image);
        read_config(&mut r).unwrap();
        let mut nd = NewDomain::default();
        let e = restore_pv(&mut r, &mut nd, PORTS, MAX - 1, &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("this config's memory"), "{e}");
        assert!(nd.mem.is_empty(), "refused before anything was populated");
        let info = find_record(&image, rec::X86_PV_INFO);
        bad(&|i| i[info + 8] = 4, "guest width 4");
        let frames = find_record(&image, rec::X86_PV_P2M_FRAMES);
        bad(
            &|i| i[frames + 12..frames + 16].copy_from_slice(&u32::MAX.to_le_bytes()),
            "at most",
        );
        bad(
            &|i| i[frames + 16..frames + 24].copy_from_slice(&9999u64.to_le_bytes()),
            "beyond the range",
        );
        // A page table entry naming a pfn past the p2m.
        let pd = find_record(&image, rec::PAGE_DATA);
        let count = u32::from_le_bytes(image[pd + 8..pd + 12].try_into().unwrap()) as usize;
        // The L4 is pfn 20, the 21st page with data (pfns 0..256 all have data).
        let l4_data = pd + 16 + 8 * count + (L4 as usize) * PAGE_SIZE;
        bad(
            &|i| i[l4_data..l4_data + 8].copy_from_slice(&pte(0xfff_ffff).to_le_bytes()),
            "beyond the p2m",
        );
        // vCPU 0's start_info pointing outside the image.
        let v = find_record(&image, rec::X86_PV_VCPU_BASIC);
        let rdx = v + 16 + 520 + 96;
        bad(
            &|i| i[rdx..rdx + 8].copy_from_slice(&BALLOONED.to_le_bytes()),
            "start_info pfn",
        );
        // An HVM image.
        let dh = find_record(&image, rec::X86_PV_INFO) - 16;
        bad(
            &|i| i[dh..dh + 4].copy_from_slice(&stream::DHDR_TYPE_X86_HVM.to_le_bytes()),
            "HVM",
        );
    }
}
