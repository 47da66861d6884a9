//! Saving and restoring an HVM domain's image: the order of the layers and
//! records an `xl save` file (or an `xl migrate` stream) holds, over two
//! small interfaces, so the whole logic runs in host tests and the same
//! code serves files and sockets.
//!
//! **Owns** what goes where: [`save_hvm`] writes xl's header with the
//! config, libxl's header, `LIBXC_CONTEXT`, then libxc's stream (image and
//! domain headers, `X86_TSC_INFO`, `PAGE_DATA` batches of every populated
//! guest frame, `HVM_CONTEXT`, `HVM_PARAMS`, `END`), then
//! `EMULATOR_CONTEXT` and libxl's `END`. [`read_config`] and
//! [`restore_hvm`] read the same back in two steps (the caller creates the
//! domain from the config in between).
//!
//! **Trusts** nothing it reads: every record is checked by
//! [`super::stream`] and [`super::savefile`], record bodies are bounded
//! per type before anything is allocated (a hostile length cannot exhaust
//! Dom0's heap), and frames are populated once each. The domain side
//! ([`HvmSaveSide`], [`HvmRestoreSide`]) does the hypercalls.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use super::savefile::{self, librec, SaveFileError};
use super::stream::{self, rec, Decoded, PageData, PageType, StreamError, PAGE_SIZE};

/// Guest frames per `PAGE_DATA` record Oxen writes (1 MiB of data).
pub const SAVE_BATCH: usize = 256;
/// Frames per getpageframeinfo3 (Xen's most).
const TYPES_BATCH: usize = 1024;
/// The longest `HVM_CONTEXT` accepted.
const HVM_CONTEXT_MAX: usize = 1 << 20;
/// The longest body of any other record accepted.
const SMALL_RECORD_MAX: usize = 64 << 10;
/// The highest guest frame a restore populates (64 GiB of guest space:
/// the populated-frame bitmap stays within 2 MiB of Dom0's heap).
const GFN_MAX: u64 = 1 << 24;

/// `XEN_DOMCTL_PFINFO_XTAB` (not populated).
const PFINFO_XTAB: u64 = 0xf << 28;
/// Mask of a getpageframeinfo3 type.
const PFINFO_MASK: u64 = 0xf << 28;

/// Why a save or restore failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SrError {
    /// libxc's stream is malformed.
    Stream(StreamError),
    /// xl's or libxl's layer is malformed.
    File(SaveFileError),
    /// The file or connection ended early.
    Truncated,
    /// Reading or writing the file or connection failed.
    Io(String),
    /// A hypercall on the domain failed.
    Domain(String),
    /// Something valid this restore cannot do.
    Unsupported(String),
}

impl fmt::Display for SrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SrError::Stream(e) => write!(f, "bad stream: {e}"),
            SrError::File(e) => write!(f, "{e}"),
            SrError::Truncated => f.write_str("the image ends early (truncated)"),
            SrError::Io(e) | SrError::Domain(e) | SrError::Unsupported(e) => f.write_str(e),
        }
    }
}

impl From<StreamError> for SrError {
    fn from(e: StreamError) -> Self {
        SrError::Stream(e)
    }
}

impl From<SaveFileError> for SrError {
    fn from(e: SaveFileError) -> Self {
        SrError::File(e)
    }
}

/// Where an image goes (a file, a connection).
pub trait Sink {
    /// Writes all of `b`.
    fn put(&mut self, b: &[u8]) -> Result<(), SrError>;
}

/// Where an image comes from.
pub trait Source {
    /// Reads exactly `b.len()` bytes ([`SrError::Truncated`] at the end).
    fn take(&mut self, b: &mut [u8]) -> Result<(), SrError>;
}

/// The domain being saved.
pub trait HvmSaveSide {
    /// `XENMEM_maximum_gpfn`.
    fn max_gpfn(&mut self) -> Result<u64, SrError>;
    /// getpageframeinfo3 on `gfns` (at most 1024), in place.
    fn page_types(&mut self, gfns: &mut [u64]) -> Result<(), SrError>;
    /// The contents of `gfns` into `out` (4 KiB each).
    fn read_pages(&mut self, gfns: &[u64], out: &mut [u8]) -> Result<(), SrError>;
    /// Frames that are not the guest's own memory (the ioreq page): left
    /// out, the restore makes them anew.
    fn skip(&self, gfn: u64) -> bool;
    /// `XEN_DOMCTL_gethvmcontext`'s records.
    fn hvm_context(&mut self) -> Result<Vec<u8>, SrError>;
    /// The `HVM_PARAM_*` values to carry.
    fn hvm_params(&mut self) -> Result<Vec<(u64, u64)>, SrError>;
    /// The device model's state.
    fn emulator_state(&mut self) -> Vec<u8>;
    /// The CPUID policy the domain sees (`XEN_DOMCTL_get_cpu_policy`),
    /// for the target to check it can offer the same.
    fn cpu_policy(&mut self) -> Result<Vec<(u32, u32, [u32; 4])>, SrError>;
}

/// The domain being restored (created from the config, paused, empty).
pub trait HvmRestoreSide {
    /// Populates `gfns` (none populated before).
    fn populate(&mut self, gfns: &[u64]) -> Result<(), SrError>;
    /// Writes `data` (4 KiB per frame) into `gfns`.
    fn write_pages(&mut self, gfns: &[u64], data: &[u8]) -> Result<(), SrError>;
    /// Sets `HVM_PARAM_*` values.
    fn set_hvm_params(&mut self, params: &[(u64, u64)]) -> Result<(), SrError>;
    /// `XEN_DOMCTL_sethvmcontext`.
    fn set_hvm_context(&mut self, ctx: &[u8]) -> Result<(), SrError>;
    /// The device model's state.
    fn set_emulator_state(&mut self, state: &[u8]) -> Result<(), SrError>;
    /// The CPUID policy the guest saw: refused (with which feature) if
    /// this host cannot offer all of it. Comes before any frame.
    fn check_cpu_policy(&mut self, policy: &[(u32, u32, [u32; 4])]) -> Result<(), SrError>;
}

/// What a save or restore moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Guest frames (with data).
    pub pages: u64,
    /// Bytes of the image.
    pub bytes: u64,
}

/// A saving domain and its sink as one (the live save needs both through
/// one object: on the metal both are the toolstack).
struct Pair<'a, D: ?Sized, S: ?Sized> {
    d: &'a mut D,
    s: &'a mut S,
}

impl<D: HvmSaveSide + ?Sized, S: ?Sized> HvmSaveSide for Pair<'_, D, S> {
    fn max_gpfn(&mut self) -> Result<u64, SrError> {
        self.d.max_gpfn()
    }
    fn page_types(&mut self, gfns: &mut [u64]) -> Result<(), SrError> {
        self.d.page_types(gfns)
    }
    fn read_pages(&mut self, gfns: &[u64], out: &mut [u8]) -> Result<(), SrError> {
        self.d.read_pages(gfns, out)
    }
    fn skip(&self, gfn: u64) -> bool {
        self.d.skip(gfn)
    }
    fn hvm_context(&mut self) -> Result<Vec<u8>, SrError> {
        self.d.hvm_context()
    }
    fn hvm_params(&mut self) -> Result<Vec<(u64, u64)>, SrError> {
        self.d.hvm_params()
    }
    fn emulator_state(&mut self) -> Vec<u8> {
        self.d.emulator_state()
    }
    fn cpu_policy(&mut self) -> Result<Vec<(u32, u32, [u32; 4])>, SrError> {
        self.d.cpu_policy()
    }
}

impl<D: ?Sized, S: Sink + ?Sized> Sink for Pair<'_, D, S> {
    fn put(&mut self, b: &[u8]) -> Result<(), SrError> {
        self.s.put(b)
    }
}

/// Writes records into a sink, counting the bytes.
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
        let r = stream::record(ty, body)
            .ok_or_else(|| SrError::Unsupported(String::from("a record over 128 MiB")))?;
        self.put(s, &r)
    }

    /// Everything before the first page: xl's and libxl's headers,
    /// `LIBXC_CONTEXT`, libxc's headers and `X86_TSC_INFO`.
    fn head<T: HvmSaveSide + Sink + ?Sized>(
        &mut self,
        t: &mut T,
        config: &[u8],
        xen: (u32, u32),
    ) -> Result<(), SrError> {
        self.put(t, &savefile::xl_header(config))?;
        self.put(t, &savefile::libxl_header())?;
        self.record(t, librec::LIBXC_CONTEXT, &[])?;
        self.put(t, &stream::headers(stream::DHDR_TYPE_X86_HVM, xen.0, xen.1))?;
        // Version 3's static data: the CPUID policy, then its end.
        let policy = stream::cpuid_policy(&t.cpu_policy()?);
        self.record(t, rec::X86_CPUID_POLICY, &policy)?;
        self.record(t, rec::STATIC_DATA_END, &[])?;
        self.record(t, rec::X86_TSC_INFO, &stream::TscInfo::default().body())
    }
    /// `PAGE_DATA` records with the contents of `gfns`, [`SAVE_BATCH`] at a
    /// time; `progress(frames sent)` after each.
    fn frames<T: HvmSaveSide + Sink + ?Sized>(
        &mut self,
        t: &mut T,
        gfns: &[u64],
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), SrError> {
        let mut data = vec![0u8; SAVE_BATCH * PAGE_SIZE];
        let mut sent = 0u64;
        for batch in gfns.chunks(SAVE_BATCH) {
            let buf = &mut data[..batch.len() * PAGE_SIZE];
            t.read_pages(batch, buf)?;
            let list: Vec<(u64, PageType)> = batch.iter().map(|&g| (g, PageType::Normal)).collect();
            let body = stream::page_data(&list, buf)
                .ok_or_else(|| SrError::Unsupported(String::from("a PAGE_DATA batch")))?;
            self.record(t, rec::PAGE_DATA, &body)?;
            sent += batch.len() as u64;
            progress(sent);
        }
        Ok(())
    }

    /// Everything after the last page: the HVM context and parameters,
    /// libxc's `END`, the device model's state, libxl's `END`.
    fn tail<T: HvmSaveSide + Sink + ?Sized>(&mut self, t: &mut T) -> Result<(), SrError> {
        let ctx = t.hvm_context()?;
        self.record(t, rec::HVM_CONTEXT, &ctx)?;
        let params = stream::hvm_params(&t.hvm_params()?);
        self.record(t, rec::HVM_PARAMS, &params)?;
        self.record(t, rec::END, &[])?;
        let state = savefile::emulator_context(&t.emulator_state());
        self.record(t, librec::EMULATOR_CONTEXT, &state)?;
        self.record(t, librec::END, &[])
    }
}

/// The domain's populated frames, less those it [`HvmSaveSide::skip`]s,
/// found with getpageframeinfo3 in batches of 1024.
fn populated<T: HvmSaveSide + ?Sized>(t: &mut T) -> Result<Vec<u64>, SrError> {
    let max = t.max_gpfn()?;
    let mut out = Vec::new();
    let mut types = Vec::with_capacity(TYPES_BATCH);
    let mut first = 0u64;
    while first <= max {
        let n = (max + 1 - first).min(TYPES_BATCH as u64);
        types.clear();
        types.extend(first..first + n);
        t.page_types(&mut types)?;
        out.extend(
            (first..first + n)
                .zip(&types)
                .filter(|&(g, &ty)| ty & PFINFO_MASK != PFINFO_XTAB && !t.skip(g))
                .map(|(g, _)| g),
        );
        first += n;
    }
    Ok(out)
}

/// Saves the (paused) domain `d` with its config `config` to `out`,
/// calling `progress(frames sent, frames in all)` after each batch.
/// `xen` is the version the domain header names.
pub fn save_hvm<D: HvmSaveSide + ?Sized, S: Sink + ?Sized>(
    d: &mut D,
    out: &mut S,
    config: &[u8],
    xen: (u32, u32),
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Stats, SrError> {
    let mut t = Pair { d, s: out };
    let mut w = Writer { bytes: 0 };
    w.head(&mut t, config, xen)?;
    let gfns = populated(&mut t)?;
    let total = gfns.len() as u64;
    w.frames(&mut t, &gfns, &mut |n| progress(n, total))?;
    w.tail(&mut t)?;
    Ok(Stats {
        pages: total,
        bytes: w.bytes,
    })
}

/// A running domain in live migration: log-dirty mode and the pause at
/// the end of the pre-copy.
pub trait LiveHvm: HvmSaveSide + Sink {
    /// Turns log-dirty mode on (`XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY`).
    fn log_dirty_on(&mut self) -> Result<(), SrError>;
    /// The frames written since the last call (`..._CLEAN`): one bit per
    /// frame in `bitmap`, which covers every frame up to the highest.
    fn clean(&mut self, bitmap: &mut [u8]) -> Result<(), SrError>;
    /// Pauses the domain for the last round (its device model's state is
    /// taken from here on).
    fn suspend(&mut self) -> Result<(), SrError>;
}

/// When the pre-copy stops (libxc's defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Precopy {
    /// Rounds while running, the first (everything) included.
    pub max_rounds: u32,
    /// Few enough dirty frames to stop and copy the rest paused.
    pub dirty_threshold: u64,
}

impl Default for Precopy {
    fn default() -> Self {
        Precopy {
            max_rounds: 5,
            dirty_threshold: 50,
        }
    }
}

/// What a live save did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveStats {
    /// Frames sent in each round while running.
    pub rounds: Vec<u64>,
    /// Frames sent while paused.
    pub last: u64,
    /// Bytes of the stream.
    pub bytes: u64,
}

/// Live save: every frame while the domain runs, then rounds of the frames
/// it dirtied until few enough remain or `policy.max_rounds` is reached,
/// then it is paused and the rest, its vCPU and device state follow.
/// `progress(round, frames sent in it, frames in it)`; round 0 is the
/// paused one.
pub fn save_hvm_live<T: LiveHvm + ?Sized>(
    t: &mut T,
    config: &[u8],
    xen: (u32, u32),
    policy: Precopy,
    progress: &mut dyn FnMut(u32, u64, u64),
) -> Result<LiveStats, SrError> {
    let mut w = Writer { bytes: 0 };
    w.head(t, config, xen)?;
    let gfns = populated(t)?;
    let limit = gfns.last().map_or(0, |&g| g + 1);
    let mut bitmap = vec![0u8; limit.div_ceil(8) as usize];
    t.log_dirty_on()?;
    let mut stats = LiveStats::default();
    let mut round = 1u32;
    let mut todo = gfns.clone();
    loop {
        let n = todo.len() as u64;
        w.frames(t, &todo, &mut |s| progress(round, s, n))?;
        stats.rounds.push(n);
        t.clean(&mut bitmap)?;
        todo = dirty(&gfns, &bitmap);
        if todo.len() as u64 <= policy.dirty_threshold || round >= policy.max_rounds {
            break;
        }
        round += 1;
    }
    t.suspend()?;
    t.clean(&mut bitmap)?;
    for g in dirty(&gfns, &bitmap) {
        if todo.binary_search(&g).is_err() {
            let at = todo.partition_point(|&x| x < g);
            todo.insert(at, g);
        }
    }
    let n = todo.len() as u64;
    w.frames(t, &todo, &mut |s| progress(0, s, n))?;
    stats.last = n;
    w.tail(t)?;
    stats.bytes = w.bytes;
    Ok(stats)
}

/// The frames of `gfns` (sorted) whose bit is set in `bitmap`.
fn dirty(gfns: &[u64], bitmap: &[u8]) -> Vec<u64> {
    gfns.iter()
        .copied()
        .filter(|&g| {
            bitmap
                .get((g / 8) as usize)
                .is_some_and(|b| b & (1 << (g % 8)) != 0)
        })
        .collect()
}

/// Reads xl's header and returns the config it carries (the first step of
/// a restore).
pub fn read_config<S: Source + ?Sized>(src: &mut S) -> Result<Vec<u8>, SrError> {
    let mut h = [0u8; savefile::XL_HEADER_LEN];
    src.take(&mut h).map_err(|e| {
        if e == SrError::Truncated {
            SrError::File(SaveFileError::NotASaveFile)
        } else {
            e
        }
    })?;
    let optlen = savefile::read_xl_header(&h)?;
    let mut opt = vec![0u8; optlen as usize];
    src.take(&mut opt)?;
    Ok(savefile::config_of(&opt)?.to_vec())
}

/// A libxc or libxl record read from a source.
pub(super) struct Rec {
    pub(super) ty: u32,
    pub(super) body: Vec<u8>,
    pub(super) at: u64,
}

/// Reads one record, refusing a body longer than `max(ty)` before
/// allocating it.
pub(super) fn next_record<S: Source + ?Sized>(
    src: &mut S,
    at: &mut u64,
    max: impl Fn(u32) -> usize,
) -> Result<Rec, SrError> {
    let mut h = [0u8; 8];
    src.take(&mut h)?;
    let ty = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    let length = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    let here = *at;
    if length as usize > max(ty) {
        return Err(StreamError::RecordTooLong { at: here, length }.into());
    }
    let padded = (length as usize).next_multiple_of(stream::REC_ALIGN);
    let mut buf = Vec::new();
    buf.try_reserve_exact(8 + padded)
        .map_err(|_| SrError::Io(String::from("out of memory for a record")))?;
    buf.extend_from_slice(&h);
    buf.resize(8 + padded, 0);
    src.take(&mut buf[8..])?;
    *at += buf.len() as u64;
    match stream::read_record(&buf, here)? {
        Decoded::Done(r, _) => {
            let body = r.body.to_vec();
            Ok(Rec { ty, body, at: here })
        }
        Decoded::Incomplete(_) => Err(SrError::Truncated),
    }
}

/// The longest body accepted for each libxc record type.
fn libxc_max(ty: u32) -> usize {
    match ty {
        rec::PAGE_DATA => {
            8 + 8 * stream::PAGE_DATA_MAX_COUNT as usize
                + PAGE_SIZE * stream::PAGE_DATA_MAX_COUNT as usize
        }
        rec::HVM_CONTEXT => HVM_CONTEXT_MAX,
        _ => SMALL_RECORD_MAX,
    }
}

/// Restores the rest of an image (after [`read_config`]) into `d`, calling
/// `progress(frames so far)` after each `PAGE_DATA`. Stops at libxl's
/// `END`; the domain is left paused.
pub fn restore_hvm<D: HvmRestoreSide + ?Sized, S: Source + ?Sized>(
    src: &mut S,
    d: &mut D,
    progress: &mut dyn FnMut(u64),
) -> Result<Stats, SrError> {
    let mut h = [0u8; savefile::LIBXL_HEADER_LEN];
    src.take(&mut h)?;
    savefile::read_libxl_header(&h)?;
    let mut at = 0u64;
    let mut stats = Stats::default();
    let mut libxc = None;
    let mut emulator = None;
    loop {
        let r = next_record(src, &mut at, |_| SMALL_RECORD_MAX)?;
        match r.ty {
            librec::END => break,
            librec::LIBXC_CONTEXT if libxc.is_none() => {
                libxc = Some(restore_libxc(src, d, progress)?);
            }
            librec::EMULATOR_CONTEXT if emulator.is_none() => {
                let state = savefile::parse_emulator_context(&r.body)
                    .map_err(|e| SrError::Unsupported(String::from(e)))?;
                emulator = Some(state.to_vec());
            }
            librec::EMULATOR_XENSTORE_DATA => {}
            ty => {
                return Err(SrError::Unsupported(format!(
                    "libxl record {ty:#x} at offset {} (not supported here, or repeated)",
                    r.at
                )))
            }
        }
    }
    let Some(done) = libxc else {
        return Err(SrError::Unsupported(String::from(
            "the image holds no domain (no LIBXC_CONTEXT)",
        )));
    };
    // The vCPUs' and devices' state goes in only once the whole image has
    // been read: a truncated one leaves the new domain's memory written
    // and nothing else (the caller destroys it).
    d.set_hvm_params(&done.params)?;
    d.set_hvm_context(&done.context)?;
    if let Some(state) = emulator {
        d.set_emulator_state(&state)?;
    }
    stats.pages = done.pages;
    Ok(stats)
}

/// What libxc's stream left to apply once the image is complete.
struct LibxcDone {
    pages: u64,
    params: Vec<(u64, u64)>,
    context: Vec<u8>,
}

/// libxc's stream, up to its `END`: frames populated and written.
fn restore_libxc<D: HvmRestoreSide + ?Sized, S: Source + ?Sized>(
    src: &mut S,
    d: &mut D,
    progress: &mut dyn FnMut(u64),
) -> Result<LibxcDone, SrError> {
    let mut h = [0u8; stream::HEADERS_LEN];
    src.take(&mut h)?;
    let dh = match stream::read_headers(&h)? {
        Decoded::Done(dh, _) => dh,
        Decoded::Incomplete(_) => return Err(SrError::Truncated),
    };
    if dh.ty != stream::DHDR_TYPE_X86_HVM {
        return Err(SrError::Unsupported(String::from(
            "a PV domain's image (only HVM guests are restored so far)",
        )));
    }
    let mut at = stream::HEADERS_LEN as u64;
    let mut populated: Vec<u64> = Vec::new();
    let mut pages = 0u64;
    let mut context = None;
    let mut params = Vec::new();
    loop {
        let r = next_record(src, &mut at, libxc_max)?;
        match r.ty {
            rec::END => break,
            rec::PAGE_DATA => {
                let pd = PageData::parse(&r.body, r.at)?;
                let mut fresh = Vec::new();
                let mut with_data = Vec::new();
                for &(g, t) in &pd.pages {
                    if g > GFN_MAX {
                        return Err(SrError::Unsupported(format!(
                            "guest frame {g:#x} at offset {} is beyond 64 GiB",
                            r.at
                        )));
                    }
                    match t {
                        PageType::Normal => with_data.push(g),
                        PageType::Invalid => continue,
                        _ => {
                            return Err(SrError::Unsupported(format!(
                                "page type {t:?} in an HVM image at offset {}",
                                r.at
                            )))
                        }
                    }
                    let (w, b) = ((g / 64) as usize, g % 64);
                    if populated.len() <= w {
                        populated
                            .try_reserve(w + 1 - populated.len())
                            .map_err(|_| {
                                SrError::Io(String::from("out of memory for the frame bitmap"))
                            })?;
                        populated.resize(w + 1, 0);
                    }
                    if populated[w] & (1 << b) == 0 {
                        populated[w] |= 1 << b;
                        fresh.push(g);
                    }
                }
                if !fresh.is_empty() {
                    d.populate(&fresh)?;
                }
                if !with_data.is_empty() {
                    d.write_pages(&with_data, pd.data)?;
                }
                pages += with_data.len() as u64;
                progress(pages);
            }
            rec::HVM_CONTEXT => context = Some(r.body),
            rec::HVM_PARAMS => params = stream::parse_hvm_params(&r.body, r.at)?,
            rec::X86_TSC_INFO => {
                stream::parse_tsc_info(&r.body, r.at)?;
            }
            rec::X86_CPUID_POLICY => {
                let policy = stream::parse_cpuid_policy(&r.body, r.at)?;
                d.check_cpu_policy(&policy)?;
            }
            rec::STATIC_DATA_END if r.body.is_empty() => {}
            rec::VERIFY | rec::X86_MSR_POLICY => {}
            ty if ty & rec::OPTIONAL != 0 => {}
            ty => {
                return Err(SrError::Unsupported(format!(
                    "record {} at offset {} (not supported for HVM here)",
                    stream::record_name(ty),
                    r.at
                )))
            }
        }
    }
    let context = context
        .ok_or_else(|| SrError::Unsupported(String::from("the image has no HVM_CONTEXT record")))?;
    Ok(LibxcDone {
        pages,
        params,
        context,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;
    use alloc::string::ToString;

    /// A fake HVM domain: frames by gfn.
    #[derive(Default)]
    struct Fake {
        mem: BTreeMap<u64, Vec<u8>>,
        ctx: Vec<u8>,
        params: Vec<(u64, u64)>,
        emu: Vec<u8>,
        skip: Option<u64>,
        populate_calls: Vec<u64>,
        /// The CPUID policy it sees, or (restoring) the one it can offer.
        cpuid: Vec<(u32, u32, [u32; 4])>,
        /// The policy a restore was handed.
        checked: Option<Vec<(u32, u32, [u32; 4])>>,
    }

    impl HvmSaveSide for Fake {
        fn max_gpfn(&mut self) -> Result<u64, SrError> {
            Ok(*self.mem.keys().last().unwrap_or(&0))
        }
        fn page_types(&mut self, gfns: &mut [u64]) -> Result<(), SrError> {
            for g in gfns {
                *g = if self.mem.contains_key(g) {
                    0
                } else {
                    PFINFO_XTAB
                };
            }
            Ok(())
        }
        fn read_pages(&mut self, gfns: &[u64], out: &mut [u8]) -> Result<(), SrError> {
            for (g, o) in gfns.iter().zip(out.chunks_mut(PAGE_SIZE)) {
                o.copy_from_slice(&self.mem[g]);
            }
            Ok(())
        }
        fn skip(&self, gfn: u64) -> bool {
            self.skip == Some(gfn)
        }
        fn hvm_context(&mut self) -> Result<Vec<u8>, SrError> {
            Ok(self.ctx.clone())
        }
        fn hvm_params(&mut self) -> Result<Vec<(u64, u64)>, SrError> {
            Ok(self.params.clone())
        }
        fn emulator_state(&mut self) -> Vec<u8> {
            self.emu.clone()
        }
        fn cpu_policy(&mut self) -> Result<Vec<(u32, u32, [u32; 4])>, SrError> {
            Ok(self.cpuid.clone())
        }
    }

    impl HvmRestoreSide for Fake {
        fn populate(&mut self, gfns: &[u64]) -> Result<(), SrError> {
            for &g in gfns {
                assert!(
                    self.mem.insert(g, vec![0; PAGE_SIZE]).is_none(),
                    "populated twice"
                );
                self.populate_calls.push(g);
            }
            Ok(())
        }
        fn write_pages(&mut self, gfns: &[u64], data: &[u8]) -> Result<(), SrError> {
            for (g, d) in gfns.iter().zip(data.chunks(PAGE_SIZE)) {
                self.mem
                    .get_mut(g)
                    .expect("written before populated")
                    .copy_from_slice(d);
            }
            Ok(())
        }
        fn set_hvm_params(&mut self, p: &[(u64, u64)]) -> Result<(), SrError> {
            self.params = p.to_vec();
            Ok(())
        }
        fn set_hvm_context(&mut self, c: &[u8]) -> Result<(), SrError> {
            self.ctx = c.to_vec();
            Ok(())
        }
        fn set_emulator_state(&mut self, s: &[u8]) -> Result<(), SrError> {
            self.emu = s.to_vec();
            Ok(())
        }
        fn check_cpu_policy(&mut self, p: &[(u32, u32, [u32; 4])]) -> Result<(), SrError> {
            assert!(self.mem.is_empty(), "the policy comes before any frame");
            if let Some(&(l, _, r)) = p.iter().find(|(l, s, r)| {
                !self.cpuid.is_empty()
                    && !self.cpuid.iter().any(|(l2, s2, r2)| {
                        l2 == l && s2 == s && r.iter().zip(r2).all(|(a, b)| a & !b == 0)
                    })
            }) {
                return Err(SrError::Unsupported(format!(
                    "leaf {l:#x} {r:x?} not offered here"
                )));
            }
            self.checked = Some(p.to_vec());
            Ok(())
        }
    }

    impl Sink for Vec<u8> {
        fn put(&mut self, b: &[u8]) -> Result<(), SrError> {
            self.extend_from_slice(b);
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

    fn guest() -> Fake {
        let mut f = Fake::default();
        for g in (0..40u64).chain(300..310).chain([0xfeff0, 0xfeff1]) {
            let page: Vec<u8> = (0..PAGE_SIZE).map(|i| (g as usize * 7 + i) as u8).collect();
            f.mem.insert(g, page);
        }
        f.skip = Some(0xfeff0);
        f.ctx = b"HVM context records".to_vec();
        f.params = vec![(5, 0xfeff0), (1, 7)];
        f.emu = b"OXDM\x01state".to_vec();
        f.cpuid = vec![(1, u32::MAX, [0x600, 0, 0x0010_0000, 0x200])];
        f
    }

    fn saved(f: &mut Fake) -> Vec<u8> {
        let mut out = Vec::new();
        let mut last = 0;
        let st = save_hvm(f, &mut out, b"name = \"g\"\n", (4, 17), &mut |d, t| {
            assert!(d > last && d <= t);
            last = d;
        })
        .unwrap();
        assert_eq!(last, 51, "progress reaches every frame sent");
        assert_eq!(
            st.pages,
            40 + 10 + 1,
            "every populated frame but the skipped one"
        );
        assert_eq!(st.bytes, out.len() as u64);
        out
    }

    /// A running fake: each CLEAN reports the frames written since the
    /// last one; `writes` says how many frames it writes per round.
    struct Running {
        g: Fake,
        out: Vec<u8>,
        dirty: alloc::collections::BTreeSet<u64>,
        writes: Vec<u64>,
        round: usize,
        log_dirty: bool,
        paused: bool,
    }

    impl Running {
        /// The guest writes `n` frames (new contents), as between rounds.
        fn run(&mut self, n: u64) {
            assert!(!self.paused, "a paused guest writes nothing");
            let gfns: Vec<u64> = self
                .g
                .mem
                .keys()
                .copied()
                .filter(|&g| g != 0xfeff0)
                .collect();
            for k in 0..n {
                let g = gfns[(k * 7 + self.round as u64 * 3) as usize % gfns.len()];
                self.g.mem.get_mut(&g).unwrap()[0] = self.round as u8 + 1;
                if self.log_dirty {
                    self.dirty.insert(g);
                }
            }
        }
    }

    impl HvmSaveSide for Running {
        fn max_gpfn(&mut self) -> Result<u64, SrError> {
            self.g.max_gpfn()
        }
        fn page_types(&mut self, gfns: &mut [u64]) -> Result<(), SrError> {
            self.g.page_types(gfns)
        }
        fn read_pages(&mut self, gfns: &[u64], out: &mut [u8]) -> Result<(), SrError> {
            self.g.read_pages(gfns, out)
        }
        fn skip(&self, gfn: u64) -> bool {
            self.g.skip(gfn)
        }
        fn hvm_context(&mut self) -> Result<Vec<u8>, SrError> {
            assert!(self.paused, "the context is taken paused");
            self.g.hvm_context()
        }
        fn hvm_params(&mut self) -> Result<Vec<(u64, u64)>, SrError> {
            self.g.hvm_params()
        }
        fn emulator_state(&mut self) -> Vec<u8> {
            assert!(self.paused, "the device state is taken paused");
            self.g.emulator_state()
        }
        fn cpu_policy(&mut self) -> Result<Vec<(u32, u32, [u32; 4])>, SrError> {
            self.g.cpu_policy()
        }
    }

    impl Sink for Running {
        fn put(&mut self, b: &[u8]) -> Result<(), SrError> {
            self.out.extend_from_slice(b);
            Ok(())
        }
    }

    impl LiveHvm for Running {
        fn log_dirty_on(&mut self) -> Result<(), SrError> {
            self.log_dirty = true;
            Ok(())
        }
        fn clean(&mut self, bitmap: &mut [u8]) -> Result<(), SrError> {
            // The guest ran while the round was sent.
            if !self.paused {
                let n = self.writes.get(self.round).copied().unwrap_or(0);
                self.run(n);
                self.round += 1;
            }
            bitmap.fill(0);
            for g in core::mem::take(&mut self.dirty) {
                if let Some(b) = bitmap.get_mut((g / 8) as usize) {
                    *b |= 1 << (g % 8);
                }
            }
            Ok(())
        }
        fn suspend(&mut self) -> Result<(), SrError> {
            self.paused = true;
            Ok(())
        }
    }

    fn live(writes: Vec<u64>) -> (LiveStats, Fake, Fake) {
        let mut r = Running {
            g: guest(),
            out: Vec::new(),
            dirty: Default::default(),
            writes,
            round: 0,
            log_dirty: false,
            paused: false,
        };
        let mut rounds_seen = Vec::new();
        let st = save_hvm_live(
            &mut r,
            b"c",
            (4, 17),
            Precopy::default(),
            &mut |round, s, n| {
                assert!(s <= n);
                if s == n {
                    rounds_seen.push(round);
                }
            },
        )
        .unwrap();
        assert_eq!(st.bytes, r.out.len() as u64);
        let mut src = Reader(&r.out);
        read_config(&mut src).unwrap();
        let mut dst = Fake::default();
        restore_hvm(&mut src, &mut dst, &mut |_| {}).unwrap();
        let n = st.rounds.len();
        assert_eq!(rounds_seen.len(), n + 1);
        assert_eq!(rounds_seen.last(), Some(&0), "the paused round comes last");
        (st, r.g, dst)
    }

    #[test]
    fn live_save_stops_when_few_frames_are_dirty_and_the_copy_is_exact() {
        // 51 frames first; the guest writes all 51 again while they go
        // (over the threshold of 50), then 10 while the second round goes
        // (under it): two rounds, then the 10 paused.
        let (st, src, dst) = live(vec![60, 10]);
        assert_eq!(st.rounds, vec![51, 51]);
        assert_eq!(st.last, 10);
        let mut want = src.mem.clone();
        want.remove(&0xfeff0);
        assert_eq!(dst.mem, want, "the target holds the guest's last memory");
        assert_eq!(dst.ctx, src.ctx);
    }

    #[test]
    fn live_save_of_a_guest_that_keeps_writing_stops_after_the_last_round() {
        let (st, src, dst) = live(vec![51; 10]);
        assert_eq!(st.rounds.len(), Precopy::default().max_rounds as usize);
        let mut want = src.mem.clone();
        want.remove(&0xfeff0);
        assert_eq!(dst.mem, want);
    }

    #[test]
    fn a_saved_hvm_domain_restores_frame_for_frame() {
        let mut src = guest();
        let img = saved(&mut src);
        let mut r = Reader(&img);
        assert_eq!(read_config(&mut r).unwrap(), b"name = \"g\"\n");
        let mut dst = Fake::default();
        let st = restore_hvm(&mut r, &mut dst, &mut |_| {}).unwrap();
        assert_eq!(st.pages, 51);
        assert!(r.0.is_empty(), "everything read");
        let mut want = src.mem.clone();
        want.remove(&0xfeff0);
        assert_eq!(dst.mem, want);
        assert_eq!(dst.ctx, src.ctx);
        assert_eq!(dst.params, src.params);
        assert_eq!(dst.emu, src.emu);
        assert_eq!(
            dst.checked,
            Some(src.cpuid.clone()),
            "the target saw the guest's policy"
        );
    }

    #[test]
    fn a_host_that_lacks_a_feature_the_guest_was_given_refuses_it_before_any_frame() {
        let img = saved(&mut guest());
        let mut r = Reader(&img);
        read_config(&mut r).unwrap();
        // This host offers leaf 1 without ecx bit 20 (SSE4.2).
        let mut dst = Fake {
            cpuid: vec![(1, u32::MAX, [0x600, 0, 0, 0x200])],
            ..Fake::default()
        };
        let e = restore_hvm(&mut r, &mut dst, &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("not offered here"), "{e}");
        assert!(
            dst.mem.is_empty() && dst.ctx.is_empty(),
            "nothing was restored"
        );
        let mut bad = img.clone();
        // The policy record's length (the first after the headers) made
        // ragged.
        let cfg_end = savefile::XL_HEADER_LEN + 4 + 11;
        let pol = cfg_end + 16 + 8 + stream::HEADERS_LEN;
        assert_eq!(&bad[pol..pol + 4], &rec::X86_CPUID_POLICY.to_le_bytes());
        bad[pol + 4] = 23;
        let mut r = Reader(&bad);
        read_config(&mut r).unwrap();
        assert!(restore_hvm(&mut r, &mut Fake::default(), &mut |_| {}).is_err());
    }

    #[test]
    fn every_truncation_of_an_image_is_refused() {
        let img = saved(&mut guest());
        for cut in (0..img.len())
            .step_by(997)
            .chain([img.len() - 8, img.len() - 1])
        {
            let mut r = Reader(&img[..cut]);
            let mut dst = Fake::default();
            let res = read_config(&mut r).and_then(|_| restore_hvm(&mut r, &mut dst, &mut |_| {}));
            assert!(res.is_err(), "a {cut}-byte prefix was accepted");
            assert!(dst.ctx.is_empty(), "no context set from a truncated image");
        }
    }

    #[test]
    fn corrupted_images_are_refused_with_what_is_wrong() {
        let img = saved(&mut guest());
        let cfg_end = savefile::XL_HEADER_LEN + 4 + 11;
        let run = |img: &[u8]| {
            let mut r = Reader(img);
            let mut dst = Fake::default();
            read_config(&mut r).and_then(|_| restore_hvm(&mut r, &mut dst, &mut |_| {}))
        };
        // Not a save file at all.
        let e = run(b"just some text, not a domain at all, no indeed, not one").unwrap_err();
        assert_eq!(e.to_string(), "not an xl save file (no xl header)");
        // libxl header damaged.
        let mut b = img.clone();
        b[cfg_end] ^= 0xff;
        assert_eq!(run(&b).unwrap_err(), SrError::File(SaveFileError::NotLibxl));
        // libxc's marker damaged (after libxl's header and LIBXC_CONTEXT).
        let mut b = img.clone();
        b[cfg_end + 16 + 8] = 0;
        assert_eq!(
            run(&b).unwrap_err(),
            SrError::Stream(StreamError::NotAStream)
        );
        // A huge record length is refused before anything is allocated.
        let first_rec = cfg_end + 16 + 8 + stream::HEADERS_LEN;
        let mut b = img.clone();
        b[first_rec + 4..first_rec + 8].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
        assert!(matches!(
            run(&b).unwrap_err(),
            SrError::Stream(StreamError::RecordTooLong { .. })
        ));
        // An unknown mandatory record.
        let mut b = img.clone();
        b[first_rec..first_rec + 4].copy_from_slice(&0x77u32.to_le_bytes());
        let e = run(&b).unwrap_err();
        assert!(e.to_string().contains("not supported"), "{e}");
    }

    #[test]
    fn a_pv_stream_is_refused_clearly() {
        let mut out = Vec::new();
        out.extend_from_slice(&savefile::xl_header(b"c"));
        out.extend_from_slice(&savefile::libxl_header());
        out.extend_from_slice(&stream::record(librec::LIBXC_CONTEXT, &[]).unwrap());
        out.extend_from_slice(&stream::headers(stream::DHDR_TYPE_X86_PV, 4, 17));
        let mut r = Reader(&out);
        read_config(&mut r).unwrap();
        let e = restore_hvm(&mut r, &mut Fake::default(), &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("PV domain"), "{e}");
    }

    #[test]
    fn a_frame_sent_twice_is_populated_once_and_its_last_contents_win() {
        let mut out = Vec::new();
        out.extend_from_slice(&savefile::xl_header(b"c"));
        out.extend_from_slice(&savefile::libxl_header());
        out.extend_from_slice(&stream::record(librec::LIBXC_CONTEXT, &[]).unwrap());
        out.extend_from_slice(&stream::headers(stream::DHDR_TYPE_X86_HVM, 4, 17));
        for fill in [1u8, 2] {
            let body = stream::page_data(&[(9, PageType::Normal)], &[fill; PAGE_SIZE]).unwrap();
            out.extend_from_slice(&stream::record(rec::PAGE_DATA, &body).unwrap());
        }
        out.extend_from_slice(&stream::record(rec::HVM_CONTEXT, b"ctx").unwrap());
        out.extend_from_slice(&stream::record(rec::END, &[]).unwrap());
        out.extend_from_slice(&stream::record(librec::END, &[]).unwrap());
        let mut r = Reader(&out);
        read_config(&mut r).unwrap();
        let mut d = Fake::default();
        restore_hvm(&mut r, &mut d, &mut |_| {}).unwrap();
        assert_eq!(d.populate_calls, vec![9]);
        assert_eq!(d.mem[&9], vec![2u8; PAGE_SIZE]);
    }
}
