//! PV kernel image parsing, as Xen's libelf (xen/common/libelf/): the loadable
//! segments of an x86_64 ELF executable and its Xen ELF notes, with libelf's
//! address checks. Owns the parsed view; trusts nothing in the image.
//!
//! Notes come from `PT_NOTE` segments, or, if those hold no Xen note, from
//! `SHT_NOTE` sections; only notes named "Xen" count (numeric notes may be
//! 1, 2, 4 or 8 bytes, as libelf's `elf_note_numeric`). The kernel is loaded
//! by physical address: segment `p_paddr` + (`VIRT_BASE` - `PADDR_OFFSET`) is
//! where it lives in the guest's virtual address space. The legacy
//! `__xen_guest` section is not supported.

use core::fmt;

use hypercall_abi::elfnote::ElfNote;
use object::elf::{FileHeader64, ELFCLASS64, ELFDATA2LSB, ELFMAG, EM_X86_64, ET_EXEC, PT_LOAD};
use object::elf::{PF_R, PF_W, PF_X};
use object::read::elf::{FileHeader, NoteIterator, ProgramHeader, SectionHeader};
use object::LittleEndian;

use super::VRange;

type Elf64 = FileHeader64<LittleEndian>;
const LE: LittleEndian = LittleEndian;

/// Most loadable segments accepted.
pub const MAX_SEGMENTS: usize = 16;
/// Default upper bound of the loaded kernel's size.
pub const DEFAULT_MAX_KERNEL_SIZE: u64 = 1 << 30;

/// `XENFEAT_*` bits libelf knows by name in the `FEATURES` note.
const FEATURE_NAMES: [(&[u8], u32); 7] = [
    (b"writable_page_tables", 0),
    (b"writable_descriptor_tables", 1),
    (b"auto_translated_physmap", 2),
    (b"supervisor_mode_kernel", 3),
    (b"pae_pgdir_above_4gb", 4),
    (b"hvm_callback_vector", 8),
    (b"dom0", 11),
];
/// `XENFEAT_supervisor_mode_kernel`.
pub const XENFEAT_SUPERVISOR_MODE_KERNEL: u32 = 3;
/// `XENFEAT_dom0`.
pub const XENFEAT_DOM0: u32 = 11;

/// What the loader accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ElfPolicy {
    /// Virtual range no part of the kernel may occupy.
    pub forbidden: VRange,
    /// Largest loaded size (`virt_kend - virt_kstart`).
    pub max_kernel_size: u64,
}

impl Default for ElfPolicy {
    /// The hypervisor's reserved range and [`DEFAULT_MAX_KERNEL_SIZE`].
    fn default() -> Self {
        ElfPolicy {
            forbidden: VRange::HYPERVISOR,
            max_kernel_size: DEFAULT_MAX_KERNEL_SIZE,
        }
    }
}

/// Why a kernel image was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// No ELF magic, or shorter than an ELF header.
    NotElf,
    /// Not ELFCLASS64.
    NotElf64,
    /// Not little endian.
    NotLittleEndian,
    /// `e_machine` is not x86-64.
    NotX86_64 {
        /// The `e_machine` found.
        machine: u16,
    },
    /// `e_type` is not `ET_EXEC`.
    NotExecutable {
        /// The `e_type` found.
        e_type: u16,
    },
    /// The ELF header or program header table is malformed.
    Malformed(object::read::Error),
    /// A note segment or section is malformed.
    BadNotes {
        /// Program or section header index.
        index: usize,
        /// What is wrong.
        error: object::read::Error,
    },
    /// A numeric Xen note whose size is not 1, 2, 4 or 8 (or not a u32 array).
    BadNoteSize {
        /// Note type.
        note: u32,
        /// Descriptor size.
        size: usize,
    },
    /// No note named "Xen": not a Xen PV kernel.
    NoXenNotes,
    /// Neither `LOADER` is "generic" nor `GUEST_OS` is "linux".
    UnsupportedGuest,
    /// `XEN_VERSION` is missing or not "xen-3.0".
    UnsupportedXenVersion,
    /// `FEATURES` requires ('!') a feature we do not know.
    UnknownRequiredFeature,
    /// No `PT_LOAD` segment with any of R/W/X.
    NoLoadableSegments,
    /// More than [`MAX_SEGMENTS`] loadable segments.
    TooManySegments,
    /// A segment's file bytes lie outside the image.
    SegmentOutsideFile {
        /// Program header index.
        index: usize,
    },
    /// `p_filesz > p_memsz`, or the segment's addresses wrap.
    BadSegmentSize {
        /// Program header index.
        index: usize,
    },
    /// `PADDR_OFFSET` given without `VIRT_BASE`.
    PaddrOffsetWithoutVirtBase,
    /// Entry outside the kernel, or `VIRT_BASE` above the kernel start.
    AddressesOutOfBounds {
        /// `VIRT_BASE` (0 if unset).
        virt_base: u64,
        /// Loaded kernel range.
        kernel: VRange,
        /// Entry point.
        entry: u64,
    },
    /// `INIT_P2M` points into the kernel.
    P2mInKernel {
        /// The note's value.
        p2m_base: u64,
    },
    /// Larger than the policy's maximum.
    KernelTooLarge {
        /// Loaded size.
        size: u64,
        /// Maximum.
        max: u64,
    },
    /// The kernel overlaps the forbidden (hypervisor) range.
    OverlapsForbidden {
        /// Loaded kernel range.
        kernel: VRange,
        /// The forbidden range.
        forbidden: VRange,
    },
    /// [`PvKernel::load_into`] got a buffer smaller than the kernel.
    DestinationTooSmall {
        /// Bytes needed.
        needed: u64,
    },
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NotElf => write!(f, "not an ELF image"),
            Self::NotElf64 => write!(f, "not a 64-bit ELF image"),
            Self::NotLittleEndian => write!(f, "not a little-endian ELF image"),
            Self::NotX86_64 { machine } => write!(f, "ELF machine {machine} is not x86-64"),
            Self::NotExecutable { e_type } => write!(f, "ELF type {e_type} is not ET_EXEC"),
            Self::Malformed(e) => write!(f, "malformed ELF: {e}"),
            Self::BadNotes { index, error } => write!(f, "bad ELF notes (header {index}): {error}"),
            Self::BadNoteSize { note, size } => {
                write!(f, "Xen ELF note {note} has bad size {size}")
            }
            Self::NoXenNotes => write!(f, "not a Xen-ELF image: no Xen ELF notes"),
            Self::UnsupportedGuest => write!(
                f,
                "will only load images built for the generic loader or Linux images"
            ),
            Self::UnsupportedXenVersion => write!(f, "will only load images built for Xen v3.0"),
            Self::UnknownRequiredFeature => write!(f, "kernel requires an unknown Xen feature"),
            Self::NoLoadableSegments => write!(f, "no loadable ELF segments"),
            Self::TooManySegments => write!(f, "more than {MAX_SEGMENTS} loadable segments"),
            Self::SegmentOutsideFile { index } => {
                write!(f, "ELF segment {index} lies outside the file")
            }
            Self::BadSegmentSize { index } => write!(f, "ELF segment {index} has bad sizes"),
            Self::PaddrOffsetWithoutVirtBase => write!(f, "ELF_PADDR_OFFSET set, VIRT_BASE unset"),
            Self::AddressesOutOfBounds {
                virt_base,
                kernel,
                entry,
            } => write!(
                f,
                "ELF start or entries are out of bounds (virt_base {virt_base:#x}, \
                 kernel {kernel}, entry {entry:#x})"
            ),
            Self::P2mInKernel { p2m_base } => {
                write!(f, "P->M table base {p2m_base:#x} is inside the kernel")
            }
            Self::KernelTooLarge { size, max } => {
                write!(f, "kernel too large ({size:#x} bytes, max {max:#x})")
            }
            Self::OverlapsForbidden { kernel, forbidden } => {
                write!(f, "kernel {kernel} overlaps the reserved range {forbidden}")
            }
            Self::DestinationTooSmall { needed } => {
                write!(f, "kernel needs {needed:#x} bytes of destination")
            }
        }
    }
}

/// One loadable segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct LoadSegment {
    /// Program header index.
    pub index: usize,
    /// File offset of the bytes.
    pub offset: u64,
    /// Bytes in the file.
    pub filesz: u64,
    /// Bytes in memory (the rest is zeroed).
    pub memsz: u64,
    /// `p_vaddr` as linked.
    pub vaddr: u64,
    /// `p_paddr`: what placement uses.
    pub paddr: u64,
    /// `p_flags`.
    pub flags: u32,
}

/// `FEATURES` / `SUPPORTED_FEATURES`: `XENFEAT_*` bitmaps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Features {
    /// Features the kernel can use.
    pub supported: u32,
    /// Features the kernel cannot run without.
    pub required: u32,
}

/// The Xen ELF notes found (Xen's `elf_dom_parms`, raw).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct XenNotes<'a> {
    /// Number of notes named "Xen" (known types or not).
    pub count: usize,
    /// `ENTRY`.
    pub entry: Option<u64>,
    /// `HYPERCALL_PAGE`.
    pub hypercall_page: Option<u64>,
    /// `VIRT_BASE`.
    pub virt_base: Option<u64>,
    /// `PADDR_OFFSET`.
    pub paddr_offset: Option<u64>,
    /// `XEN_VERSION`.
    pub xen_version: Option<&'a [u8]>,
    /// `GUEST_OS`.
    pub guest_os: Option<&'a [u8]>,
    /// `GUEST_VERSION`.
    pub guest_version: Option<&'a [u8]>,
    /// `LOADER`.
    pub loader: Option<&'a [u8]>,
    /// `PAE_MODE`.
    pub pae_mode: Option<&'a [u8]>,
    /// `FEATURES` as written.
    pub features_string: Option<&'a [u8]>,
    /// `BSD_SYMTAB` says "yes".
    pub bsd_symtab: bool,
    /// `HV_START_LOW` (meaningful for 32-bit guests only).
    pub hv_start_low: Option<u64>,
    /// `L1_MFN_VALID` descriptor, raw (Linux gives a mask/value pair).
    pub l1_mfn_valid: Option<&'a [u8]>,
    /// `SUSPEND_CANCEL`.
    pub suspend_cancel: Option<u64>,
    /// `INIT_P2M`: where the kernel wants its p2m.
    pub init_p2m: Option<u64>,
    /// `MOD_START_PFN`.
    pub mod_start_pfn: Option<u64>,
    /// `SUPPORTED_FEATURES` was present.
    pub has_supported_features: bool,
    /// `PHYS32_ENTRY` (PVH entry).
    pub phys32_entry: Option<u64>,
    /// `FEATURES` and `SUPPORTED_FEATURES` combined.
    pub features: Features,
}

/// A parsed and checked PV kernel image.
#[derive(Clone, Debug)]
pub struct PvKernel<'a> {
    image: &'a [u8],
    segments: [LoadSegment; MAX_SEGMENTS],
    nr_segments: usize,
    /// The Xen notes.
    pub notes: XenNotes<'a>,
    /// Lowest `p_paddr` of the loadable segments (libelf's `pstart`).
    pub pstart: u64,
    /// Highest `p_paddr + p_memsz` (libelf's `pend`).
    pub pend: u64,
    /// `VIRT_BASE`, or 0: the start of the bootstrap region.
    pub virt_base: u64,
    /// `VIRT_BASE - PADDR_OFFSET`: added to a `p_paddr` to get its address.
    pub virt_offset: u64,
    /// Loaded kernel start (`virt_kstart`).
    pub virt_kstart: u64,
    /// Loaded kernel end (`virt_kend`).
    pub virt_kend: u64,
    /// Entry point (`ENTRY`, else `e_entry`).
    pub virt_entry: u64,
}

impl<'a> PvKernel<'a> {
    /// Parse and check `image` against `policy`.
    pub fn parse(image: &'a [u8], policy: &ElfPolicy) -> Result<Self, ElfError> {
        let header = parse_header(image)?;
        let phdrs = header
            .program_headers(LE, image)
            .map_err(ElfError::Malformed)?;
        let mut kernel = PvKernel {
            image,
            segments: [LoadSegment::default(); MAX_SEGMENTS],
            nr_segments: 0,
            notes: find_notes(header, phdrs, image)?,
            pstart: 0,
            pend: 0,
            virt_base: 0,
            virt_offset: 0,
            virt_kstart: 0,
            virt_kend: 0,
            virt_entry: 0,
        };
        check_notes(&kernel.notes)?;
        kernel.collect_segments(phdrs)?;
        kernel.compute_addresses(header.e_entry(LE))?;
        kernel.check_policy(policy)?;
        Ok(kernel)
    }

    /// The loadable segments in program header order.
    pub fn segments(&self) -> &[LoadSegment] {
        &self.segments[..self.nr_segments]
    }

    /// Where `segment` is loaded in the guest's virtual address space.
    pub fn load_vaddr(&self, segment: &LoadSegment) -> u64 {
        segment.paddr.wrapping_add(self.virt_offset)
    }

    /// The loaded kernel `[virt_kstart, virt_kend)`.
    pub fn kernel_range(&self) -> VRange {
        VRange::new(self.virt_kstart, self.virt_kend)
    }

    /// Entry point.
    pub fn entry(&self) -> u64 {
        self.virt_entry
    }

    /// Virtual address of the hypercall page, if the kernel wants one.
    pub fn hypercall_page(&self) -> Option<u64> {
        self.notes.hypercall_page
    }

    /// The kernel understands an initrd given by PFN (`SIF_MOD_START_PFN`),
    /// so the builder may leave the initrd out of the bootstrap mapping.
    pub fn unmapped_initrd(&self) -> bool {
        self.notes.mod_start_pfn.is_some_and(|v| v != 0)
    }

    /// `PAE_MODE` says "yes" or "bimodal" (start_info magic gets a "p").
    pub fn pae(&self) -> bool {
        self.notes
            .pae_mode
            .is_some_and(|m| m == b"yes" || contains(m, b"bimodal"))
    }

    /// False if `SUPPORTED_FEATURES` is present without `XENFEAT_dom0`
    /// (Xen then refuses to boot the kernel as Dom0).
    pub fn supports_dom0(&self) -> bool {
        !self.notes.has_supported_features || self.notes.features.supported & 1 << XENFEAT_DOM0 != 0
    }

    /// The kernel requires ring-0 execution, which PV cannot give.
    pub fn requires_supervisor_mode(&self) -> bool {
        self.notes.features.required & 1 << XENFEAT_SUPERVISOR_MODE_KERNEL != 0
    }

    /// Copy the kernel into `dest`, which stands for `[virt_kstart,
    /// virt_kend)`: segment bytes where they belong, zeros everywhere else.
    pub fn load_into(&self, dest: &mut [u8]) -> Result<(), ElfError> {
        let size = self.virt_kend - self.virt_kstart;
        let dest = usize::try_from(size)
            .ok()
            .and_then(|n| dest.get_mut(..n))
            .ok_or(ElfError::DestinationTooSmall { needed: size })?;
        dest.fill(0);
        for seg in self.segments() {
            // All bounds were checked by `parse`.
            let at = (seg.paddr - self.pstart) as usize;
            let from = seg.offset as usize;
            let len = seg.filesz as usize;
            dest[at..at + len].copy_from_slice(&self.image[from..from + len]);
        }
        Ok(())
    }

    fn collect_segments(
        &mut self,
        phdrs: &[object::elf::ProgramHeader64<LittleEndian>],
    ) -> Result<(), ElfError> {
        for (index, ph) in phdrs.iter().enumerate() {
            if ph.p_type(LE) != PT_LOAD || ph.p_flags(LE) & (PF_R | PF_W | PF_X) == 0 {
                continue;
            }
            let seg = checked_segment(index, ph, self.image.len())?;
            if self.nr_segments == MAX_SEGMENTS {
                return Err(ElfError::TooManySegments);
            }
            self.segments[self.nr_segments] = seg;
            self.nr_segments += 1;
        }
        let segs = self.segments();
        let pstart = segs.iter().map(|s| s.paddr).min();
        let pend = segs.iter().map(|s| s.paddr + s.memsz).max();
        let (Some(pstart), Some(pend)) = (pstart, pend) else {
            return Err(ElfError::NoLoadableSegments);
        };
        (self.pstart, self.pend) = (pstart, pend);
        Ok(())
    }

    /// libelf's `elf_xen_addr_calc_check`.
    fn compute_addresses(&mut self, e_entry: u64) -> Result<(), ElfError> {
        let notes = &self.notes;
        if notes.paddr_offset.is_some() && notes.virt_base.is_none() {
            return Err(ElfError::PaddrOffsetWithoutVirtBase);
        }
        self.virt_base = notes.virt_base.unwrap_or(0);
        let paddr_offset = notes.paddr_offset.unwrap_or(0);
        self.virt_offset = self.virt_base.wrapping_sub(paddr_offset);
        self.virt_kstart = self.pstart.wrapping_add(self.virt_offset);
        self.virt_kend = self.pend.wrapping_add(self.virt_offset);
        self.virt_entry = notes.entry.unwrap_or(e_entry);
        let kernel = self.kernel_range();
        if kernel.start > kernel.end
            || self.virt_entry < kernel.start
            || self.virt_entry > kernel.end
            || self.virt_base > kernel.start
        {
            return Err(ElfError::AddressesOutOfBounds {
                virt_base: self.virt_base,
                kernel,
                entry: self.virt_entry,
            });
        }
        match notes.init_p2m {
            Some(p2m_base) if kernel.contains(p2m_base) => Err(ElfError::P2mInKernel { p2m_base }),
            _ => Ok(()),
        }
    }

    fn check_policy(&self, policy: &ElfPolicy) -> Result<(), ElfError> {
        let kernel = self.kernel_range();
        if kernel.len() > policy.max_kernel_size {
            return Err(ElfError::KernelTooLarge {
                size: kernel.len(),
                max: policy.max_kernel_size,
            });
        }
        if kernel.overlaps(&policy.forbidden) {
            return Err(ElfError::OverlapsForbidden {
                kernel,
                forbidden: policy.forbidden,
            });
        }
        Ok(())
    }
}

fn parse_header(image: &[u8]) -> Result<&Elf64, ElfError> {
    let ident = image.get(..16).ok_or(ElfError::NotElf)?;
    if ident[..4] != ELFMAG {
        return Err(ElfError::NotElf);
    }
    if ident[4] != ELFCLASS64 {
        return Err(ElfError::NotElf64);
    }
    if ident[5] != ELFDATA2LSB {
        return Err(ElfError::NotLittleEndian);
    }
    let header = Elf64::parse(image).map_err(|_| ElfError::NotElf)?;
    let machine = header.e_machine(LE);
    if machine != EM_X86_64 {
        return Err(ElfError::NotX86_64 { machine });
    }
    let e_type = header.e_type(LE);
    if e_type != ET_EXEC {
        return Err(ElfError::NotExecutable { e_type });
    }
    Ok(header)
}

fn checked_segment(
    index: usize,
    ph: &object::elf::ProgramHeader64<LittleEndian>,
    file_len: usize,
) -> Result<LoadSegment, ElfError> {
    let seg = LoadSegment {
        index,
        offset: ph.p_offset(LE),
        filesz: ph.p_filesz(LE),
        memsz: ph.p_memsz(LE),
        vaddr: ph.p_vaddr(LE),
        paddr: ph.p_paddr(LE),
        flags: ph.p_flags(LE),
    };
    let in_file = seg
        .offset
        .checked_add(seg.filesz)
        .is_some_and(|end| end <= file_len as u64);
    if !in_file {
        return Err(ElfError::SegmentOutsideFile { index });
    }
    if seg.filesz > seg.memsz || seg.paddr.checked_add(seg.memsz).is_none() {
        return Err(ElfError::BadSegmentSize { index });
    }
    Ok(seg)
}

/// Xen notes from `PT_NOTE` segments, else from `SHT_NOTE` sections.
fn find_notes<'a>(
    header: &Elf64,
    phdrs: &'a [object::elf::ProgramHeader64<LittleEndian>],
    image: &'a [u8],
) -> Result<XenNotes<'a>, ElfError> {
    let mut notes = XenNotes::default();
    for (index, ph) in phdrs.iter().enumerate() {
        // libelf skips note segments with p_offset 0 (old binutils bug).
        if ph.p_offset(LE) == 0 {
            continue;
        }
        let iter = ph
            .notes(LE, image)
            .map_err(|error| ElfError::BadNotes { index, error })?;
        if let Some(iter) = iter {
            parse_notes(&mut notes, iter, index)?;
        }
    }
    if notes.count > 0 {
        return Ok(notes);
    }
    // A broken section table just means there are no section notes, as in libelf.
    let sections = header.section_headers(LE, image).unwrap_or(&[]);
    for (index, sh) in sections.iter().enumerate().skip(1) {
        let iter = sh
            .notes(LE, image)
            .map_err(|error| ElfError::BadNotes { index, error })?;
        if let Some(iter) = iter {
            parse_notes(&mut notes, iter, index)?;
        }
    }
    Ok(notes)
}

fn parse_notes<'a>(
    notes: &mut XenNotes<'a>,
    mut iter: NoteIterator<'a, Elf64>,
    index: usize,
) -> Result<(), ElfError> {
    while let Some(note) = iter
        .next()
        .map_err(|error| ElfError::BadNotes { index, error })?
    {
        if note.name() != b"Xen" {
            continue;
        }
        notes.count += 1;
        apply_note(notes, note.n_type(LE), note.desc())?;
    }
    Ok(())
}

/// libelf's `elf_xen_parse_note`: unknown types are counted and ignored.
fn apply_note<'a>(notes: &mut XenNotes<'a>, ty: u32, desc: &'a [u8]) -> Result<(), ElfError> {
    let Some(kind) = ElfNote::from_raw(u64::from(ty)) else {
        return Ok(());
    };
    let num = || numeric(ty, desc);
    match kind {
        ElfNote::Entry => notes.entry = Some(num()?),
        ElfNote::HypercallPage => notes.hypercall_page = Some(num()?),
        ElfNote::VirtBase => notes.virt_base = Some(num()?),
        ElfNote::PaddrOffset => notes.paddr_offset = Some(num()?),
        ElfNote::XenVersion => notes.xen_version = Some(string(desc)),
        ElfNote::GuestOs => notes.guest_os = Some(string(desc)),
        ElfNote::GuestVersion => notes.guest_version = Some(string(desc)),
        ElfNote::Loader => notes.loader = Some(string(desc)),
        ElfNote::PaeMode => notes.pae_mode = Some(string(desc)),
        ElfNote::Features => apply_features_string(notes, string(desc))?,
        ElfNote::BsdSymtab => notes.bsd_symtab = string(desc) == b"yes",
        ElfNote::HvStartLow => notes.hv_start_low = Some(num()?),
        ElfNote::L1MfnValid => notes.l1_mfn_valid = Some(desc),
        ElfNote::SuspendCancel => notes.suspend_cancel = Some(num()?),
        ElfNote::InitP2m => notes.init_p2m = Some(num()?),
        ElfNote::ModStartPfn => notes.mod_start_pfn = Some(num()?),
        ElfNote::SupportedFeatures => {
            notes.features.supported |= first_u32(ty, desc)?;
            notes.has_supported_features = true;
        }
        ElfNote::Phys32Entry => notes.phys32_entry = Some(num()?),
        _ => {}
    }
    Ok(())
}

/// libelf's `elf_xen_parse_features`: `name|!required_name|...`.
fn apply_features_string<'a>(notes: &mut XenNotes<'a>, s: &'a [u8]) -> Result<(), ElfError> {
    notes.features_string = Some(s);
    for word in s.split(|&b| b == b'|').filter(|w| !w.is_empty()) {
        let (required, name) = match word.strip_prefix(b"!") {
            Some(name) => (true, name),
            None => (false, word),
        };
        match FEATURE_NAMES.iter().find(|(n, _)| *n == name) {
            Some(&(_, bit)) => {
                notes.features.supported |= 1 << bit;
                if required {
                    notes.features.required |= 1 << bit;
                }
            }
            None if required => return Err(ElfError::UnknownRequiredFeature),
            None => {}
        }
    }
    Ok(())
}

/// libelf's `elf_xen_note_check` for a PV guest.
fn check_notes(notes: &XenNotes) -> Result<(), ElfError> {
    if notes.count == 0 {
        return Err(ElfError::NoXenNotes);
    }
    let generic = notes.loader.is_some_and(|l| l.starts_with(b"generic"));
    let linux = notes.guest_os.is_some_and(|g| g.starts_with(b"linux"));
    if !generic && !linux {
        return Err(ElfError::UnsupportedGuest);
    }
    if !notes.xen_version.is_some_and(|v| v.starts_with(b"xen-3.0")) {
        return Err(ElfError::UnsupportedXenVersion);
    }
    Ok(())
}

fn numeric(ty: u32, desc: &[u8]) -> Result<u64, ElfError> {
    let mut b = [0u8; 8];
    match desc.len() {
        1 | 2 | 4 | 8 => {
            b[..desc.len()].copy_from_slice(desc);
            Ok(u64::from_le_bytes(b))
        }
        size => Err(ElfError::BadNoteSize { note: ty, size }),
    }
}

fn first_u32(ty: u32, desc: &[u8]) -> Result<u32, ElfError> {
    match desc.get(..4) {
        Some(b) if desc.len().is_multiple_of(4) => Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        _ => Err(ElfError::BadNoteSize {
            note: ty,
            size: desc.len(),
        }),
    }
}

/// A string note's bytes up to its NUL (all of it if there is none).
fn string(desc: &[u8]) -> &[u8] {
    desc.iter()
        .position(|&b| b == 0)
        .map_or(desc, |nul| &desc[..nul])
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A tiny ELF64 writer for tests of this module and its siblings.
#[cfg(test)]
pub(crate) mod testelf {
    use std::vec;
    use std::vec::Vec;

    /// A note: name, type, descriptor.
    pub type Note = (&'static [u8], u32, Vec<u8>);

    /// One `PT_LOAD`.
    #[derive(Clone)]
    pub struct Seg {
        pub vaddr: u64,
        pub paddr: u64,
        pub data: Vec<u8>,
        pub memsz: u64,
        pub flags: u32,
    }

    /// Describes an image; `build` writes it.
    #[derive(Clone)]
    pub struct ElfBuilder {
        pub class: u8,
        pub data: u8,
        pub e_type: u16,
        pub machine: u16,
        pub entry: u64,
        pub segs: Vec<Seg>,
        /// Each inner list becomes one PT_NOTE.
        pub note_segments: Vec<Vec<Note>>,
        /// Each inner list becomes one SHT_NOTE section.
        pub note_sections: Vec<Vec<Note>>,
        /// Extra raw program headers (type, offset, filesz).
        pub raw_phdrs: Vec<(u32, u64, u64)>,
    }

    pub const VIRT_BASE: u64 = 0xffff_ffff_8000_0000;
    pub const KSTART: u64 = 0xffff_ffff_8100_0000;
    pub const KPADDR: u64 = 0x100_0000;

    pub fn num(v: u64) -> Vec<u8> {
        v.to_le_bytes().to_vec()
    }

    pub fn s(v: &str) -> Vec<u8> {
        let mut b = v.as_bytes().to_vec();
        b.push(0);
        b
    }

    /// Notes as a Linux PV kernel carries them.
    pub fn linux_notes() -> Vec<Note> {
        let mut l1 = num(1);
        l1.extend_from_slice(&num(1));
        vec![
            (b"Xen", 6, s("linux")),
            (b"Xen", 7, s("2.6")),
            (b"Xen", 5, s("xen-3.0")),
            (b"Xen", 3, num(VIRT_BASE)),
            (b"Xen", 4, num(0)),
            (b"Xen", 1, num(KSTART + 0x1000)),
            (b"Xen", 2, num(KSTART + 0x2000)),
            (b"Xen", 10, s("!writable_page_tables|pae_pgdir_above_4gb")),
            (b"Xen", 17, (1u32 << 11 | 1 << 8).to_le_bytes().to_vec()),
            (b"Xen", 9, s("yes")),
            (b"Xen", 8, s("generic")),
            (b"Xen", 13, l1),
            (b"Xen", 14, 1u32.to_le_bytes().to_vec()),
            (b"Xen", 16, 1u32.to_le_bytes().to_vec()),
            (b"Xen", 18, 0x100_0200u32.to_le_bytes().to_vec()),
            (b"Xen", 12, num(0xf580_0000)),
            (b"Xen", 0x55, s("unknown type")),
            (b"GNU", 3, vec![1, 2, 3, 4]),
        ]
    }

    /// A Linux-like kernel: text (2 pages) and data+bss at 16 MiB physical.
    pub fn linux_like() -> ElfBuilder {
        ElfBuilder {
            class: 2,
            data: 1,
            e_type: 2,
            machine: 62,
            entry: KSTART + 0x1000,
            segs: vec![
                Seg {
                    vaddr: KSTART,
                    paddr: KPADDR,
                    data: (0..0x2000u32).map(|i| (i % 251) as u8).collect(),
                    memsz: 0x2000,
                    flags: 5,
                },
                Seg {
                    vaddr: KSTART + 0x3000,
                    paddr: KPADDR + 0x3000,
                    data: vec![0xaa; 0x800],
                    memsz: 0x5000,
                    flags: 6,
                },
            ],
            note_segments: vec![linux_notes()],
            note_sections: vec![],
            raw_phdrs: vec![],
        }
    }

    fn encode_notes(notes: &[Note]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, ty, desc) in notes {
            let namesz = name.len() as u32 + 1;
            out.extend_from_slice(&namesz.to_le_bytes());
            out.extend_from_slice(&(desc.len() as u32).to_le_bytes());
            out.extend_from_slice(&ty.to_le_bytes());
            out.extend_from_slice(name);
            out.push(0);
            pad4(&mut out);
            out.extend_from_slice(desc);
            pad4(&mut out);
        }
        out
    }

    fn pad4(v: &mut Vec<u8>) {
        while !v.len().is_multiple_of(4) {
            v.push(0);
        }
    }

    fn put(out: &mut [u8], at: usize, bytes: &[u8]) {
        out[at..at + bytes.len()].copy_from_slice(bytes);
    }

    impl ElfBuilder {
        pub fn build(&self) -> Vec<u8> {
            let nph = self.segs.len() + self.note_segments.len() + self.raw_phdrs.len();
            let mut blobs: Vec<Vec<u8>> = self.segs.iter().map(|s| s.data.clone()).collect();
            blobs.extend(self.note_segments.iter().map(|n| encode_notes(n)));
            blobs.extend(self.note_sections.iter().map(|n| encode_notes(n)));
            let mut offsets = Vec::new();
            let mut at = 64 + 56 * nph;
            for b in &blobs {
                at = at.next_multiple_of(16);
                offsets.push(at);
                at += b.len();
            }
            let shoff = at.next_multiple_of(8);
            let nsh = if self.note_sections.is_empty() {
                0
            } else {
                self.note_sections.len() + 1
            };
            let mut out = vec![0u8; shoff + 64 * nsh];
            put(
                &mut out,
                0,
                &[0x7f, b'E', b'L', b'F', self.class, self.data, 1],
            );
            put(&mut out, 16, &self.e_type.to_le_bytes());
            put(&mut out, 18, &self.machine.to_le_bytes());
            put(&mut out, 20, &1u32.to_le_bytes());
            put(&mut out, 24, &self.entry.to_le_bytes());
            put(&mut out, 32, &64u64.to_le_bytes());
            put(
                &mut out,
                40,
                &(if nsh > 0 { shoff as u64 } else { 0 }).to_le_bytes(),
            );
            put(&mut out, 52, &64u16.to_le_bytes());
            put(&mut out, 54, &56u16.to_le_bytes());
            put(&mut out, 56, &(nph as u16).to_le_bytes());
            put(&mut out, 58, &64u16.to_le_bytes());
            put(&mut out, 60, &(nsh as u16).to_le_bytes());
            for (b, &off) in blobs.iter().zip(&offsets) {
                put(&mut out, off, b);
            }
            let mut ph = 64;
            let mut phdr = |out: &mut Vec<u8>,
                            ty: u32,
                            flags: u32,
                            off: u64,
                            va: u64,
                            pa: u64,
                            fsz: u64,
                            msz: u64,
                            align: u64| {
                for (i, v) in [off, va, pa, fsz, msz, align].iter().enumerate() {
                    put(out, ph + 8 + 8 * i, &v.to_le_bytes());
                }
                put(out, ph, &ty.to_le_bytes());
                put(out, ph + 4, &flags.to_le_bytes());
                ph += 56;
            };
            for (i, sg) in self.segs.iter().enumerate() {
                let (off, fsz) = (offsets[i] as u64, sg.data.len() as u64);
                phdr(
                    &mut out, 1, sg.flags, off, sg.vaddr, sg.paddr, fsz, sg.memsz, 0x1000,
                );
            }
            for i in 0..self.note_segments.len() {
                let k = self.segs.len() + i;
                phdr(
                    &mut out,
                    4,
                    4,
                    offsets[k] as u64,
                    0,
                    0,
                    blobs[k].len() as u64,
                    0,
                    4,
                );
            }
            for &(ty, off, fsz) in &self.raw_phdrs {
                phdr(&mut out, ty, 4, off, 0, 0, fsz, fsz, 4);
            }
            for i in 0..self.note_sections.len() {
                let k = self.segs.len() + self.note_segments.len() + i;
                let sh = shoff + 64 * (i + 1);
                put(&mut out, sh + 4, &7u32.to_le_bytes()); // SHT_NOTE
                put(&mut out, sh + 24, &(offsets[k] as u64).to_le_bytes());
                put(&mut out, sh + 32, &(blobs[k].len() as u64).to_le_bytes());
                put(&mut out, sh + 48, &4u64.to_le_bytes());
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testelf::*;
    use super::*;
    use std::format;
    use std::vec;
    use std::vec::Vec;

    fn parse(b: &ElfBuilder) -> Result<PvKernel<'static>, ElfError> {
        let image: &'static [u8] = std::boxed::Box::leak(b.build().into_boxed_slice());
        PvKernel::parse(image, &ElfPolicy::default())
    }

    fn with_notes(notes: Vec<Note>) -> ElfBuilder {
        ElfBuilder {
            note_segments: vec![notes],
            ..linux_like()
        }
    }

    /// Linux notes with `ty` replaced by `desc` (or removed if `None`).
    fn notes_with(ty: u32, desc: Option<Vec<u8>>) -> Vec<Note> {
        let mut notes: Vec<Note> = linux_notes()
            .into_iter()
            .filter(|n| n.1 != ty || n.0 != b"Xen")
            .collect();
        if let Some(d) = desc {
            notes.push((b"Xen", ty, d));
        }
        notes
    }

    #[test]
    fn linux_like_kernel() {
        let k = parse(&linux_like()).unwrap();
        assert_eq!(k.segments().len(), 2);
        assert_eq!(k.pstart, KPADDR);
        assert_eq!(k.pend, KPADDR + 0x8000);
        assert_eq!(k.virt_base, VIRT_BASE);
        assert_eq!(k.kernel_range(), VRange::new(KSTART, KSTART + 0x8000));
        assert_eq!(k.entry(), KSTART + 0x1000);
        assert_eq!(k.hypercall_page(), Some(KSTART + 0x2000));
        assert_eq!(k.load_vaddr(&k.segments()[1]), KSTART + 0x3000);
        let n = &k.notes;
        assert_eq!(n.count, 17);
        assert_eq!(n.guest_os, Some(&b"linux"[..]));
        assert_eq!(n.guest_version, Some(&b"2.6"[..]));
        assert_eq!(n.xen_version, Some(&b"xen-3.0"[..]));
        assert_eq!(n.loader, Some(&b"generic"[..]));
        assert_eq!(n.paddr_offset, Some(0));
        assert_eq!(n.l1_mfn_valid.map(<[u8]>::len), Some(16));
        assert_eq!(n.suspend_cancel, Some(1));
        assert_eq!(n.phys32_entry, Some(0x100_0200));
        assert_eq!(n.hv_start_low, Some(0xf580_0000));
        assert_eq!(n.features.required, 1 << 0);
        assert_eq!(n.features.supported, 1 << 0 | 1 << 4 | 1 << 8 | 1 << 11);
        assert!(k.unmapped_initrd());
        assert!(k.pae());
        assert!(k.supports_dom0());
        assert!(!k.requires_supervisor_mode());
        assert!(!n.bsd_symtab);
    }

    #[test]
    fn load_into_copies_and_zeroes() {
        let b = linux_like();
        let k = parse(&b).unwrap();
        let mut dest = vec![0x55u8; 0x9000];
        k.load_into(&mut dest).unwrap();
        assert_eq!(&dest[..0x2000], &b.segs[0].data[..]);
        assert!(dest[0x2000..0x3000].iter().all(|&x| x == 0));
        assert!(dest[0x3000..0x3800].iter().all(|&x| x == 0xaa));
        assert!(dest[0x3800..0x8000].iter().all(|&x| x == 0));
        assert_eq!(dest[0x8000], 0x55); // beyond the kernel: untouched
        let mut small = vec![0u8; 0x7fff];
        assert_eq!(
            k.load_into(&mut small),
            Err(ElfError::DestinationTooSmall { needed: 0x8000 })
        );
    }

    #[test]
    fn header_errors() {
        assert_eq!(
            PvKernel::parse(b"", &ElfPolicy::default()).unwrap_err(),
            ElfError::NotElf
        );
        assert_eq!(
            PvKernel::parse(b"MZ\x90\0garbage.........", &ElfPolicy::default()).unwrap_err(),
            ElfError::NotElf
        );
        let good = linux_like().build();
        assert_eq!(
            PvKernel::parse(&good[..40], &ElfPolicy::default()).unwrap_err(),
            ElfError::NotElf
        );
        assert_eq!(
            parse(&ElfBuilder {
                class: 1,
                ..linux_like()
            })
            .unwrap_err(),
            ElfError::NotElf64
        );
        assert_eq!(
            parse(&ElfBuilder {
                data: 2,
                ..linux_like()
            })
            .unwrap_err(),
            ElfError::NotLittleEndian
        );
        assert_eq!(
            parse(&ElfBuilder {
                machine: 3,
                ..linux_like()
            })
            .unwrap_err(),
            ElfError::NotX86_64 { machine: 3 }
        );
        assert_eq!(
            parse(&ElfBuilder {
                e_type: 3,
                ..linux_like()
            })
            .unwrap_err(),
            ElfError::NotExecutable { e_type: 3 }
        );
        // A program header table beyond the file.
        let mut img = linux_like().build();
        img[32..40].copy_from_slice(&0xffff_0000u64.to_le_bytes());
        assert!(matches!(
            PvKernel::parse(&img, &ElfPolicy::default()),
            Err(ElfError::Malformed(_))
        ));
    }

    #[test]
    fn notes_are_required_and_checked() {
        assert_eq!(
            parse(&with_notes(vec![])).unwrap_err(),
            ElfError::NoXenNotes
        );
        let gnu_only = vec![(&b"GNU"[..], 3, vec![0; 4]), (&b"Xe"[..], 1, num(0))];
        assert_eq!(
            parse(&with_notes(gnu_only)).unwrap_err(),
            ElfError::NoXenNotes
        );
        let mut n = notes_with(6, Some(s("freebsd")));
        n.retain(|x| x.1 != 8);
        assert_eq!(
            parse(&with_notes(n)).unwrap_err(),
            ElfError::UnsupportedGuest
        );
        // generic loader alone is enough
        let n = notes_with(6, None);
        assert!(parse(&with_notes(n)).is_ok());
        assert_eq!(
            parse(&with_notes(notes_with(5, None))).unwrap_err(),
            ElfError::UnsupportedXenVersion
        );
        assert_eq!(
            parse(&with_notes(notes_with(5, Some(s("xen-4.0"))))).unwrap_err(),
            ElfError::UnsupportedXenVersion
        );
    }

    #[test]
    fn notes_from_sections_when_segments_have_none() {
        let b = ElfBuilder {
            note_segments: vec![],
            note_sections: vec![vec![(&b"GNU"[..], 1, vec![0; 4])], linux_notes()],
            ..linux_like()
        };
        let k = parse(&b).unwrap();
        assert_eq!(k.notes.count, 17);
        assert_eq!(k.entry(), KSTART + 0x1000);
        // Sections are ignored when segments have Xen notes.
        let b = ElfBuilder {
            note_sections: vec![notes_with(1, Some(num(KSTART + 0x10)))],
            ..linux_like()
        };
        assert_eq!(parse(&b).unwrap().entry(), KSTART + 0x1000);
    }

    #[test]
    fn note_segment_with_zero_offset_is_skipped() {
        let mut b = with_notes(vec![]);
        b.note_sections = vec![];
        b.raw_phdrs = vec![(4, 0, 64)];
        assert_eq!(parse(&b).unwrap_err(), ElfError::NoXenNotes);
    }

    #[test]
    fn malformed_notes() {
        let mut b = linux_like();
        b.raw_phdrs = vec![(4, 0x10, 0x100_0000)]; // beyond the file
        assert!(matches!(
            parse(&b),
            Err(ElfError::BadNotes { index: 3, .. })
        ));
        // A note whose descsz runs past its segment.
        let mut img = linux_like().build();
        let note_off =
            u64::from_le_bytes(img[64 + 2 * 56 + 8..64 + 2 * 56 + 16].try_into().unwrap()) as usize;
        img[note_off + 4..note_off + 8].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
        assert!(matches!(
            PvKernel::parse(&img, &ElfPolicy::default()),
            Err(ElfError::BadNotes { index: 2, .. })
        ));
    }

    #[test]
    fn numeric_note_sizes() {
        for (desc, want) in [
            (vec![0x10], 0x10u64),
            (vec![0x10, 0x20], 0x2010),
            (0x1234u32.to_le_bytes().to_vec(), 0x1234),
        ] {
            let n = notes_with(16, Some(desc));
            assert_eq!(
                parse(&with_notes(n)).unwrap().notes.mod_start_pfn,
                Some(want)
            );
        }
        for size in [0usize, 3, 5, 16] {
            let n = notes_with(1, Some(vec![0; size]));
            assert_eq!(
                parse(&with_notes(n)).unwrap_err(),
                ElfError::BadNoteSize { note: 1, size }
            );
        }
        for size in [0usize, 2, 6] {
            let n = notes_with(17, Some(vec![0; size]));
            assert_eq!(
                parse(&with_notes(n)).unwrap_err(),
                ElfError::BadNoteSize { note: 17, size }
            );
        }
        // A string note without its NUL is taken whole.
        let n = notes_with(6, Some(b"linux".to_vec()));
        assert_eq!(
            parse(&with_notes(n)).unwrap().notes.guest_os,
            Some(&b"linux"[..])
        );
    }

    #[test]
    fn features() {
        let n = notes_with(10, Some(s("!nonexistent")));
        assert_eq!(
            parse(&with_notes(n)).unwrap_err(),
            ElfError::UnknownRequiredFeature
        );
        let n = notes_with(10, Some(s("nonexistent|dom0||!supervisor_mode_kernel")));
        let k = parse(&with_notes(
            notes_with(17, None)
                .into_iter()
                .filter(|x| x.1 != 10)
                .chain(n.into_iter().filter(|x| x.1 == 10))
                .collect(),
        ))
        .unwrap();
        assert_eq!(k.notes.features.supported, 1 << 11 | 1 << 3);
        assert_eq!(k.notes.features.required, 1 << 3);
        assert!(k.requires_supervisor_mode());
        assert!(!k.notes.has_supported_features);
        assert!(k.supports_dom0());
        // SUPPORTED_FEATURES without dom0: not a Dom0 kernel.
        let n = notes_with(17, Some(1u32.to_le_bytes().to_vec()));
        assert!(!parse(&with_notes(n)).unwrap().supports_dom0());
        // PAE modes.
        let n = notes_with(9, Some(s("bimodal")));
        assert!(parse(&with_notes(n)).unwrap().pae());
        let n = notes_with(9, Some(s("no")));
        assert!(!parse(&with_notes(n)).unwrap().pae());
        let n = notes_with(16, Some(num(0)));
        assert!(!parse(&with_notes(n)).unwrap().unmapped_initrd());
        let n = notes_with(11, Some(s("yes")));
        assert!(parse(&with_notes(n)).unwrap().notes.bsd_symtab);
    }

    #[test]
    fn segment_errors() {
        let mut b = linux_like();
        b.segs.iter_mut().for_each(|s| s.flags = 0);
        assert_eq!(parse(&b).unwrap_err(), ElfError::NoLoadableSegments);
        b.segs.clear();
        assert_eq!(parse(&b).unwrap_err(), ElfError::NoLoadableSegments);
        let mut b = linux_like();
        b.segs[1].memsz = 0x7ff;
        assert_eq!(
            parse(&b).unwrap_err(),
            ElfError::BadSegmentSize { index: 1 }
        );
        let mut b = linux_like();
        b.segs[1].paddr = u64::MAX - 0x100;
        assert_eq!(
            parse(&b).unwrap_err(),
            ElfError::BadSegmentSize { index: 1 }
        );
        let mut img = linux_like().build();
        // Segment 0's p_filesz past the end of the file.
        img[64 + 32..64 + 40].copy_from_slice(&0x10_0000u64.to_le_bytes());
        img[64 + 40..64 + 48].copy_from_slice(&0x10_0000u64.to_le_bytes());
        assert_eq!(
            PvKernel::parse(&img, &ElfPolicy::default()).unwrap_err(),
            ElfError::SegmentOutsideFile { index: 0 }
        );
        // Offset + size wrapping.
        img[64 + 8..64 + 16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(
            PvKernel::parse(&img, &ElfPolicy::default()).unwrap_err(),
            ElfError::SegmentOutsideFile { index: 0 }
        );
        let mut b = linux_like();
        let s0 = b.segs[0].clone();
        for i in 0..MAX_SEGMENTS {
            let mut s = s0.clone();
            s.paddr += 0x10_0000 * i as u64;
            s.data = vec![1];
            b.segs.push(s);
        }
        assert_eq!(parse(&b).unwrap_err(), ElfError::TooManySegments);
    }

    #[test]
    fn address_checks() {
        // Entry outside the kernel.
        for entry in [KSTART - 1, KSTART + 0x8001] {
            let n = notes_with(1, Some(num(entry)));
            assert!(matches!(
                parse(&with_notes(n)).unwrap_err(),
                ElfError::AddressesOutOfBounds { entry: e, .. } if e == entry
            ));
        }
        // Entry exactly at kend is accepted, as libelf does.
        let n = notes_with(1, Some(num(KSTART + 0x8000)));
        assert!(parse(&with_notes(n)).is_ok());
        // Without ENTRY, e_entry is used.
        let mut b = with_notes(notes_with(1, None));
        b.entry = KSTART + 0x40;
        assert_eq!(parse(&b).unwrap().entry(), KSTART + 0x40);
        // VIRT_BASE above the kernel.
        let n = notes_with(3, Some(num(KSTART + 0x1000)));
        assert!(matches!(
            parse(&with_notes(n)),
            Err(ElfError::AddressesOutOfBounds { .. })
        ));
        // PADDR_OFFSET without VIRT_BASE.
        let n = notes_with(3, None);
        assert_eq!(
            parse(&with_notes(n)).unwrap_err(),
            ElfError::PaddrOffsetWithoutVirtBase
        );
        // Neither: virt_base 0, kernel at its physical address.
        let n: Vec<Note> = notes_with(3, None)
            .into_iter()
            .filter(|x| x.1 != 4 && x.1 != 1 && x.1 != 2)
            .collect();
        let mut b = with_notes(n);
        b.entry = KPADDR;
        let k = parse(&b).unwrap();
        assert_eq!(k.kernel_range(), VRange::new(KPADDR, KPADDR + 0x8000));
        assert_eq!(k.virt_base, 0);
        // A PADDR_OFFSET shifts the kernel.
        let n = notes_with(4, Some(num(0x80_0000)));
        let k = parse(&with_notes(
            notes_with(1, None)
                .into_iter()
                .filter(|x| x.1 != 4)
                .chain(n.into_iter().filter(|x| x.1 == 4))
                .collect(),
        ))
        .unwrap_err();
        assert!(matches!(k, ElfError::AddressesOutOfBounds { .. })); // e_entry now outside
                                                                     // INIT_P2M inside the kernel.
        let n = notes_with(15, Some(num(KSTART + 0x10)));
        assert_eq!(
            parse(&with_notes(n)).unwrap_err(),
            ElfError::P2mInKernel {
                p2m_base: KSTART + 0x10
            }
        );
        let n = notes_with(15, Some(num(0xffff_ea00_0000_0000)));
        assert_eq!(
            parse(&with_notes(n)).unwrap().notes.init_p2m,
            Some(0xffff_ea00_0000_0000)
        );
    }

    #[test]
    fn policy_checks() {
        let img = linux_like().build();
        let small = ElfPolicy {
            max_kernel_size: 0x7fff,
            ..ElfPolicy::default()
        };
        assert_eq!(
            PvKernel::parse(&img, &small).unwrap_err(),
            ElfError::KernelTooLarge {
                size: 0x8000,
                max: 0x7fff
            }
        );
        // A kernel placed in the hypervisor's range.
        let mut b = linux_like();
        let hv = VRange::HYPERVISOR.start;
        let n = notes_with(3, Some(num(hv)))
            .into_iter()
            .filter(|x| x.1 != 1)
            .collect();
        b.note_segments = vec![n];
        b.entry = hv + KPADDR;
        let err = parse(&b).unwrap_err();
        assert_eq!(
            err,
            ElfError::OverlapsForbidden {
                kernel: VRange::new(hv + KPADDR, hv + KPADDR + 0x8000),
                forbidden: VRange::HYPERVISOR
            }
        );
        assert!(format!("{err}").contains("overlaps the reserved range"));
    }

    #[test]
    fn corrupted_images_never_panic() {
        let good = linux_like().build();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for round in 0..3000u32 {
            let mut img = good.clone();
            for _ in 0..1 + round % 8 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let at = (x as usize)
                    % img.len().min(if round.is_multiple_of(2) {
                        400
                    } else {
                        usize::MAX
                    });
                img[at] = (x >> 32) as u8;
            }
            if let Ok(k) = PvKernel::parse(&img, &ElfPolicy::default()) {
                let size = k.kernel_range().len();
                if size <= 1 << 20 {
                    let mut dest = vec![0u8; size as usize];
                    k.load_into(&mut dest).unwrap();
                }
            }
        }
    }

    #[test]
    fn display_messages() {
        assert_eq!(
            format!("{}", ElfError::NoXenNotes),
            "not a Xen-ELF image: no Xen ELF notes"
        );
        let e = ElfError::AddressesOutOfBounds {
            virt_base: 1,
            kernel: VRange::new(2, 3),
            entry: 4,
        };
        assert_eq!(
            format!("{e}"),
            "ELF start or entries are out of bounds (virt_base 0x1, kernel 0x2->0x3, entry 0x4)"
        );
    }
}
