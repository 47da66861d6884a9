//! Dom0's domain builder for HVM and PVH guests booted directly (no
//! firmware): `type = "hvm"` with a Multiboot2 kernel
//! ([`super::multiboot2`], started the way GRUB starts it) or a Linux
//! bzImage ([`super::bzimage`], its 32-bit boot protocol), with ACPI
//! tables ([`super::acpi`]) and a device model in Dom0 reached through
//! Xen's legacy ioreq page; `type = "pvh"` with an ELF kernel at its
//! `XEN_ELFNOTE_PHYS32_ENTRY` ([`super::pvh`]) and, as libxc gives a PVH
//! guest, xenstore and PV console rings in the special pages instead of a
//! device model.
//!
//! **Owns**: the plan ([`plan_hvm`], [`plan_pvh`]: memory map with the
//! special pages reserved, populate extents, ACPI tables, kernel and boot
//! data placement), the first vCPU's `hvm_hw_cpu` save record built from
//! the builder's [`EntryState`] ([`hw_cpu`]) and the `sethvmcontext`
//! buffer ([`context`]). **Trusts**: nothing in the kernel image (the
//! Multiboot2, bzImage and ELF parsers check it) nor in what
//! `gethvmcontext` returns (only a well-formed header record is reused).
//!
//! Sequence ([`build`], target only), as `libxl__build_hvm` →
//! `xc_dom_*` for a direct-boot guest:
//! 1. everything that can be checked without a domain is checked first
//!    (kernel, memory size, placement), so a refused guest leaves nothing;
//! 2. `XEN_DOMCTL_createdomain` with `CDF_hvm | CDF_hap`, `max_mem`;
//! 3. `XENMEM_populate_physmap` of the RAM frames (2 MiB extents where
//!    aligned) and of the special pages (libxc's layout below 0xff000,
//!    reserved in the guest's memory map): the ioreq page ([`IOREQ_GFN`])
//!    of an HVM guest, the xenstore and console pages of a PVH guest;
//! 4. kernel, ACPI tables and boot data written through foreign mappings
//!    of guest frames; the special pages zeroed;
//! 5. HVM: `HVM_PARAM_IOREQ_PFN` (Dom0 is the device model:
//!    `HVM_PARAM_DM_DOMAIN` stays 0); PVH: two event channels and
//!    `HVM_PARAM_{STORE,CONSOLE}_{PFN,EVTCHN}`;
//! 6. `XEN_DOMCTL_sethvmcontext` with HEADER + CPU (vCPU 0) + END, the
//!    header the hypervisor's own `gethvmcontext` gives if it gives one.
//!
//! The caller unpauses it. On any failure after creation the domain is
//! destroyed again.

use alloc::vec::Vec;
use core::fmt;

use hypercall_abi::hvm_save::{
    self, code, HvmHwCpu, HvmSaveHeader, HVM_FILE_MAGIC, HVM_FILE_VERSION,
};
use zerocopy::{FromBytes, IntoBytes};

use super::acpi::{self, AcpiConfig, AcpiError, AcpiTables};
use super::bzimage::{self, BzImage, BzImageError, BzLayout, Compression, PayloadError};
use super::multiboot2::{self, Mb2Error, Mb2Kernel, Mb2Layout};
use super::pvh::{
    self, ElfImageError, EntryState, GuestMemoryMap, PhysElf, PlacementError, PvhError, PvhLayout,
    ACPI_BASE, PAGE, RFLAGS_FIXED,
};
use crate::devmodel::GuestMemory;

/// One past the last special page (libxc's `X86_HVM_END_SPECIAL_REGION`).
pub const SPECIAL_END_GFN: u64 = 0xff000;
/// Special pages (libxc's `X86_HVM_NR_SPECIAL_PAGES`).
pub const NR_SPECIAL_PAGES: u64 = 8;
/// The first special page.
pub const SPECIAL_START_GFN: u64 = SPECIAL_END_GFN - NR_SPECIAL_PAGES;
/// The xenstore ring of a PVH guest (`HVM_PARAM_STORE_PFN`; libxc's
/// `SPECIALPAGE_XENSTORE`).
pub const STORE_GFN: u64 = SPECIAL_START_GFN + 4;
/// The shared ioreq page of an HVM guest (`HVM_PARAM_IOREQ_PFN`; libxc's
/// `SPECIALPAGE_IOREQ`).
pub const IOREQ_GFN: u64 = SPECIAL_START_GFN + 5;
/// The PV console ring of a PVH guest (`HVM_PARAM_CONSOLE_PFN`; libxc's
/// `SPECIALPAGE_CONSOLE`).
pub const CONSOLE_GFN: u64 = SPECIAL_START_GFN + 7;
/// What libxl adds to a guest's memory limit (`LIBXL_MAXMEM_CONSTANT`).
pub const MAXMEM_SLACK_KIB: u64 = 1024;
/// Frames in a 2 MiB extent.
const EXTENT_2M: u64 = 512;
/// The code selector of vCPU 0 (a flat GDT's first descriptor).
pub const HVM_BOOT_CS: u16 = 0x08;
/// The data selector of vCPU 0 (`ds`/`es`/`ss`).
pub const HVM_BOOT_DS: u16 = 0x10;
/// `ldtr` attributes: an LDT descriptor, present (Xen's reset value).
pub const LDTR_AR: u32 = 0x82;
/// DR6 and DR7 at reset.
const DR6_RESET: u64 = 0xffff_0ff0;
const DR7_RESET: u64 = 0x400;
/// FXSAVE image at reset: FCW (offset 0) and MXCSR (offset 24).
const FCW_RESET: u16 = 0x037f;
const MXCSR_RESET: u32 = 0x1f80;

/// Why an HVM guest cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HvmError {
    /// The kernel is not a Multiboot2 kernel we can boot (nor a Linux
    /// bzImage: it has no "HdrS" setup header).
    NotMultiboot2(Mb2Error),
    /// A Linux bzImage that cannot be booted or placed.
    BzImage(BzImageError),
    /// The kernel is not a PVH kernel (`type = "pvh"`).
    NotPvh(PvhError),
    /// It is, but it does not fit the guest.
    Pvh(PvhError),
    /// It is, but it does not fit the guest (placement, command line).
    Multiboot2(Mb2Error),
    /// `memory` is too small, too big or not whole pages.
    Memory(u64),
    /// The guest's memory map.
    Place(PlacementError),
    /// ACPI tables.
    Acpi(AcpiError),
    /// The hypervisor refused an HVM domain (no SVM/VMX with nested
    /// paging): `createdomain`'s error.
    NoHvm(pv_guest_lib::Errno),
    /// The hypervisor cannot run HVM vCPUs (unpause refused).
    NoHvmVcpus(pv_guest_lib::Errno),
    /// A hypercall failed: what, and Xen's error.
    Hypercall(&'static str, pv_guest_lib::Errno),
    /// Guest memory could not be reached while writing it.
    GuestMemory(u64),
}

impl fmt::Display for HvmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotMultiboot2(e) => write!(
                f,
                "not a Multiboot2 kernel ({e}) nor a Linux bzImage; type=\"hvm\" boots those directly"
            ),
            Self::Multiboot2(e) => write!(f, "Multiboot2 kernel: {e}"),
            Self::BzImage(e) => write!(f, "Linux bzImage: {e}"),
            Self::NotPvh(PvhError::NoPhys32Entry) => f.write_str(
                "not a PVH kernel (no XEN_ELFNOTE_PHYS32_ENTRY note); type=\"pvh\" boots ELF kernels that have one",
            ),
            Self::NotPvh(PvhError::Elf(ElfImageError::Payload(PayloadError::Unsupported(c)))) => {
                write!(
                    f,
                    "a Linux bzImage whose kernel is {c:?}-compressed: type=\"pvh\" unpacks LZ4 (Debian's kernels) and uncompressed ones; give kernel= the ELF vmlinux instead (Linux's scripts/extract-vmlinux)"
                )
            }
            Self::NotPvh(e) => write!(
                f,
                "not a PVH kernel ({e}); type=\"pvh\" boots ELF kernels with XEN_ELFNOTE_PHYS32_ENTRY"
            ),
            Self::Pvh(e) => write!(f, "PVH kernel: {e}"),
            Self::Memory(mib) => write!(
                f,
                "memory = {mib} MiB is not a size an HVM guest can have (at least 2 MiB)"
            ),
            Self::Place(e) => write!(f, "guest memory: {e}"),
            Self::Acpi(e) => write!(f, "ACPI tables: {e:?}"),
            Self::NoHvm(e) => write!(
                f,
                "this hypervisor cannot create HVM guests (createdomain: {e}): \
                 it needs SVM or VMX with nested paging"
            ),
            Self::NoHvmVcpus(e) => {
                write!(f, "this hypervisor cannot run HVM vCPUs yet (unpause: {e})")
            }
            Self::Hypercall(what, e) => write!(f, "{what}: {e}"),
            Self::GuestMemory(gpa) => write!(f, "guest memory at {gpa:#x} unreachable"),
        }
    }
}

impl From<PlacementError> for HvmError {
    fn from(e: PlacementError) -> Self {
        HvmError::Place(e)
    }
}

/// The memory map of an HVM guest with `memory_mib` MiB: RAM as
/// [`GuestMemoryMap::new`], and the special pages
/// `[SPECIAL_START_GFN, SPECIAL_END_GFN)` reserved.
pub fn memory_map(memory_mib: u64) -> Result<GuestMemoryMap, HvmError> {
    let ram = memory_mib
        .checked_mul(1 << 20)
        .ok_or(HvmError::Memory(memory_mib))?;
    let mut map = GuestMemoryMap::new(ram).map_err(|_| HvmError::Memory(memory_mib))?;
    map.reserve(SPECIAL_START_GFN * PAGE, NR_SPECIAL_PAGES * PAGE)?;
    Ok(map)
}

/// The populate calls for `map`'s frames: 2 MiB extents (first guest
/// frames) where a whole aligned extent is to be populated, single frames
/// elsewhere.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extents {
    /// First frames of order-9 extents.
    pub large: Vec<u64>,
    /// Single frames.
    pub small: Vec<u64>,
}

impl Extents {
    /// Frames in all.
    pub fn pages(&self) -> u64 {
        self.large.len() as u64 * EXTENT_2M + self.small.len() as u64
    }
}

/// See [`Extents`].
pub fn extents(map: &GuestMemoryMap) -> Extents {
    let mut x = Extents::default();
    for (first, count) in map.populated() {
        let end = first + count;
        let mut g = first;
        while g < end {
            if g.is_multiple_of(EXTENT_2M) && end - g >= EXTENT_2M {
                x.large.push(g);
                g += EXTENT_2M;
            } else {
                x.small.push(g);
                g += 1;
            }
        }
    }
    x
}

/// How the guest boots.
#[derive(Clone, Debug)]
pub enum Boot<'a> {
    /// `type = "hvm"`: a Multiboot2 kernel, a device model in Dom0.
    Multiboot2 {
        /// The kernel.
        kernel: Mb2Kernel<'a>,
        /// Where the kernel, modules and boot information go.
        layout: Mb2Layout,
    },
    /// `type = "hvm"`: a Linux bzImage at its 32-bit boot protocol entry
    /// (ESI = the zero page), a device model in Dom0.
    BzImage {
        /// The kernel.
        bz: BzImage<'a>,
        /// Where the kernel, the boot data and the initrd go.
        layout: BzLayout,
        /// The command line.
        cmdline: Vec<u8>,
    },
    /// `type = "pvh"`: an ELF kernel at its `PHYS32_ENTRY` with
    /// `hvm_start_info`, xenstore and a PV console, no device model.
    Pvh {
        /// The kernel.
        elf: PhysElf<'a>,
        /// Where the kernel, the start info and the initrd go.
        layout: PvhLayout,
        /// The command line.
        cmdline: Vec<u8>,
    },
}

/// An HVM or PVH guest, planned: what [`write`] puts where.
#[derive(Clone, Debug)]
pub struct HvmPlan<'a> {
    /// The kernel and its layout.
    pub boot: Boot<'a>,
    /// The guest's memory map.
    pub map: GuestMemoryMap,
    /// Its ACPI tables (at [`ACPI_BASE`]).
    pub acpi: AcpiTables,
    /// The populate calls for RAM.
    pub extents: Extents,
    /// The modules' lengths (`ramdisk =`: Multiboot2 module 1, or the
    /// PVH initrd).
    pub module_lens: Vec<u64>,
    /// vCPUs.
    pub vcpus: u32,
}

impl HvmPlan<'_> {
    /// A PVH guest?
    pub fn is_pvh(&self) -> bool {
        matches!(self.boot, Boot::Pvh { .. })
    }

    /// The special pages it has: the ioreq page (HVM), or the xenstore
    /// and console rings (PVH).
    pub fn special_gfns(&self) -> &'static [u64] {
        if self.is_pvh() {
            &[STORE_GFN, CONSOLE_GFN]
        } else {
            &[IOREQ_GFN]
        }
    }

    /// The domain's memory: its RAM and its special pages.
    pub fn max_pages(&self) -> u64 {
        self.extents.pages() + self.special_gfns().len() as u64
    }

    /// Its limit (`max_mem`, KiB): [`HvmPlan::max_pages`] and libxl's
    /// slack (`LIBXL_MAXMEM_CONSTANT`, 1 MiB).
    pub fn max_mem_kib(&self) -> u64 {
        self.max_pages() * 4 + MAXMEM_SLACK_KIB
    }
}

/// A Linux bzImage? (the "HdrS" magic of its setup header at 0x202)
pub fn is_bzimage(image: &[u8]) -> bool {
    image.get(0x202..0x206) == Some(&bzimage::HDRS_MAGIC[..])
}

/// Plans a `type = "hvm"` guest: a Linux bzImage (see [`is_bzimage`])
/// with [`plan_bzimage`], anything else as a Multiboot2 kernel with
/// [`plan_multiboot2`].
pub fn plan_hvm<'a>(
    image: &'a [u8],
    memory_mib: u64,
    vcpus: u32,
    cmdline: &[u8],
    module_lens: &[u64],
) -> Result<HvmPlan<'a>, HvmError> {
    if is_bzimage(image) {
        plan_bzimage(image, memory_mib, vcpus, cmdline, module_lens)
    } else {
        plan_multiboot2(image, memory_mib, vcpus, cmdline, module_lens)
    }
}

/// Plans an HVM guest booting the Linux bzImage `image` (the initrd is
/// the one module, if any).
pub fn plan_bzimage<'a>(
    image: &'a [u8],
    memory_mib: u64,
    vcpus: u32,
    cmdline: &[u8],
    module_lens: &[u64],
) -> Result<HvmPlan<'a>, HvmError> {
    let bz = BzImage::parse(image).map_err(HvmError::BzImage)?;
    if module_lens.len() > 1 {
        return Err(HvmError::BzImage(BzImageError::InitrdLength));
    }
    let map = memory_map(memory_mib)?;
    let acpi = acpi::build(&AcpiConfig::hvm(vcpus.max(1), ACPI_BASE)).map_err(HvmError::Acpi)?;
    let initrd = module_lens.first().copied().unwrap_or(0);
    let layout =
        bzimage::plan(&bz, &map, cmdline, initrd, Some(&acpi)).map_err(HvmError::BzImage)?;
    let extents = extents(&map);
    Ok(HvmPlan {
        boot: Boot::BzImage {
            bz,
            layout,
            cmdline: cmdline.to_vec(),
        },
        map,
        acpi,
        extents,
        module_lens: module_lens.to_vec(),
        vcpus: vcpus.max(1),
    })
}

/// Plans an HVM guest booting the Multiboot2 kernel `image` with
/// `memory_mib` MiB, `vcpus` vCPUs, `cmdline` and modules of
/// `module_lens` bytes.
pub fn plan_multiboot2<'a>(
    image: &'a [u8],
    memory_mib: u64,
    vcpus: u32,
    cmdline: &[u8],
    module_lens: &[u64],
) -> Result<HvmPlan<'a>, HvmError> {
    let kernel = Mb2Kernel::parse(image).map_err(HvmError::NotMultiboot2)?;
    let map = memory_map(memory_mib)?;
    let acpi = acpi::build(&AcpiConfig::hvm(vcpus.max(1), ACPI_BASE)).map_err(HvmError::Acpi)?;
    let layout = multiboot2::plan(&kernel, &map, cmdline, module_lens, Some(&acpi))
        .map_err(HvmError::Multiboot2)?;
    let extents = extents(&map);
    Ok(HvmPlan {
        boot: Boot::Multiboot2 { kernel, layout },
        map,
        acpi,
        extents,
        module_lens: module_lens.to_vec(),
        vcpus: vcpus.max(1),
    })
}

/// A PVH kernel: an ELF image, or a Linux bzImage whose payload is one
/// (as libxc's bzImage loader finds it): LZ4-compressed, as Debian
/// builds its kernels, unpacked while loading ([`PhysElf::parse_lz4`]),
/// or stored uncompressed.
pub fn pvh_kernel(image: &[u8]) -> Result<PhysElf<'_>, ElfImageError> {
    if !is_bzimage(image) {
        return PhysElf::parse(image);
    }
    let bz = BzImage::parse(image).map_err(|_| ElfImageError::Payload(PayloadError::Missing))?;
    let (c, payload) = bz
        .payload()
        .ok_or(ElfImageError::Payload(PayloadError::Missing))?;
    match c {
        Compression::Lz4 => PhysElf::parse_lz4(payload),
        Compression::Unknown if payload.starts_with(b"\x7fELF") => PhysElf::parse(payload),
        other => Err(ElfImageError::Payload(PayloadError::Unsupported(other))),
    }
}

/// Plans a PVH guest booting the ELF kernel `image` (with
/// `XEN_ELFNOTE_PHYS32_ENTRY`) with `memory_mib` MiB, `vcpus` vCPUs,
/// `cmdline` and an initrd of `ramdisk_len` bytes (0: none).
pub fn plan_pvh<'a>(
    image: &'a [u8],
    memory_mib: u64,
    vcpus: u32,
    cmdline: &[u8],
    ramdisk_len: u64,
) -> Result<HvmPlan<'a>, HvmError> {
    let elf = pvh_kernel(image).map_err(|e| HvmError::NotPvh(PvhError::Elf(e)))?;
    if elf.phys32_entry.is_none() {
        return Err(HvmError::NotPvh(PvhError::NoPhys32Entry));
    }
    let map = memory_map(memory_mib)?;
    let acpi = acpi::build(&AcpiConfig::pvh(vcpus.max(1), ACPI_BASE)).map_err(HvmError::Acpi)?;
    let layout = pvh::plan(&elf, &map, cmdline, ramdisk_len, Some(&acpi)).map_err(HvmError::Pvh)?;
    let extents = extents(&map);
    Ok(HvmPlan {
        boot: Boot::Pvh {
            elf,
            layout,
            cmdline: cmdline.to_vec(),
        },
        map,
        acpi,
        extents,
        module_lens: if ramdisk_len > 0 {
            alloc::vec![ramdisk_len]
        } else {
            Vec::new()
        },
        vcpus: vcpus.max(1),
    })
}

/// Writes the kernel, the modules (as long as planned), the ACPI tables
/// and the boot information; returns vCPU 0's state: 32-bit protected
/// mode, paging off, flat segments; for Multiboot2 (selectors
/// [`HVM_BOOT_CS`] and [`HVM_BOOT_DS`]) EAX = its magic and EBX = the
/// boot information, for PVH (the same selectors) EBX =
/// `hvm_start_info`, for a bzImage (Linux's `__BOOT_CS` 0x10 and
/// `__BOOT_DS` 0x18, with the GDT the boot data holds) ESI = the zero
/// page.
pub fn write(
    p: &HvmPlan,
    modules: &[&[u8]],
    mem: &mut dyn GuestMemory,
) -> Result<EntryState, HvmError> {
    let e = match &p.boot {
        Boot::Multiboot2 { kernel, layout } => {
            multiboot2::write(kernel, layout, modules, Some(&p.acpi), mem).map_err(|e| match e {
                Mb2Error::Memory(m) => HvmError::GuestMemory(m.gpa),
                e => HvmError::Multiboot2(e),
            })?
        }
        Boot::BzImage {
            bz,
            layout,
            cmdline,
        } => {
            if modules.len() > 1 {
                return Err(HvmError::BzImage(BzImageError::InitrdLength));
            }
            let rd = modules.first().copied().unwrap_or(&[]);
            bzimage::write(bz, layout, &p.map, cmdline, rd, Some(&p.acpi), mem).map_err(
                |e| match e {
                    BzImageError::Memory(m) => HvmError::GuestMemory(m.gpa),
                    e => HvmError::BzImage(e),
                },
            )?;
            // The 32-bit protocol: no page tables needed, as the
            // hypervisor's contract for vCPU 0 asks.
            return Ok(bzimage::entry_state_32(layout));
        }
        Boot::Pvh {
            elf,
            layout,
            cmdline,
        } => {
            if modules.len() > 1 {
                return Err(HvmError::Pvh(PvhError::RamdiskLength));
            }
            let rd = modules.first().copied().unwrap_or(&[]);
            pvh::write(elf, layout, &p.map, cmdline, rd, Some(&p.acpi), mem).map_err(
                |e| match e {
                    PvhError::Memory(m) => HvmError::GuestMemory(m.gpa),
                    e => HvmError::Pvh(e),
                },
            )?
        }
    };
    Ok(EntryState {
        cs: HVM_BOOT_CS,
        ds: HVM_BOOT_DS,
        ..e
    })
}

/// The 12-bit segment attribute form of `hvm_hw_cpu` (type, S, DPL, P in
/// bits 0-7; AVL, L, D/B, G in bits 8-11) from the VMX access-rights
/// layout [`EntryState`] uses (the same bits at 12-15).
pub const fn arbytes(vmx_ar: u32) -> u32 {
    (vmx_ar & 0xff) | ((vmx_ar >> 4) & 0xf00)
}

/// vCPU 0's `hvm_hw_cpu` record at `e`: every segment flat (base 0,
/// limit 4 GiB), `cs` code, `ds`/`es`/`ss` (and `fs`/`gs`) data, `tr` a
/// busy 32-bit TSS (limit 0x67), `ldtr` an empty LDT; control registers,
/// EFER, RFLAGS and the entry registers as `e` says; debug and FPU
/// registers at their reset values.
pub fn hw_cpu(e: &EntryState) -> HvmHwCpu {
    use super::pvh::seg;
    let data_ar = arbytes(seg::DATA32);
    let ds = u32::from(e.ds);
    let mut c = HvmHwCpu {
        rax: e.rax,
        rbx: e.rbx,
        rsi: e.rsi,
        rip: e.rip,
        rflags: e.rflags | RFLAGS_FIXED,
        cr0: e.cr0,
        cr3: e.cr3,
        cr4: e.cr4,
        dr6: DR6_RESET,
        dr7: DR7_RESET,
        cs_sel: u32::from(e.cs),
        ds_sel: ds,
        es_sel: ds,
        fs_sel: ds,
        gs_sel: ds,
        ss_sel: ds,
        cs_limit: seg::FLAT_LIMIT,
        ds_limit: seg::FLAT_LIMIT,
        es_limit: seg::FLAT_LIMIT,
        fs_limit: seg::FLAT_LIMIT,
        gs_limit: seg::FLAT_LIMIT,
        ss_limit: seg::FLAT_LIMIT,
        tr_limit: seg::TSS_LIMIT,
        gdtr_base: e.gdt_base,
        gdtr_limit: u32::from(e.gdt_limit),
        cs_arbytes: arbytes(e.cs_ar),
        ds_arbytes: data_ar,
        es_arbytes: data_ar,
        fs_arbytes: data_ar,
        gs_arbytes: data_ar,
        ss_arbytes: data_ar,
        tr_arbytes: arbytes(seg::TSS32_BUSY),
        ldtr_arbytes: LDTR_AR,
        msr_efer: e.efer,
        ..HvmHwCpu::default()
    };
    c.fpu_regs[0..2].copy_from_slice(&FCW_RESET.to_le_bytes());
    c.fpu_regs[24..28].copy_from_slice(&MXCSR_RESET.to_le_bytes());
    c
}

/// A header for a context built from scratch.
pub fn default_header() -> HvmSaveHeader {
    HvmSaveHeader {
        magic: HVM_FILE_MAGIC,
        version: HVM_FILE_VERSION,
        ..HvmSaveHeader::default()
    }
}

/// The header record of a `gethvmcontext` buffer, if it starts with a
/// well-formed one (magic and version checked).
pub fn header_of(buf: &[u8]) -> Option<HvmSaveHeader> {
    let r = hvm_save::records(buf).ok()?.next()?;
    if r.desc.typecode != code::HEADER {
        return None;
    }
    let h = HvmSaveHeader::read_from_bytes(r.data).ok()?;
    (h.magic == HVM_FILE_MAGIC && h.version == HVM_FILE_VERSION).then_some(h)
}

/// The `sethvmcontext` buffer: `header`, vCPU 0's `cpu`, END.
pub fn context(header: &HvmSaveHeader, cpu: &HvmHwCpu) -> Vec<u8> {
    let d = core::mem::size_of::<hvm_save::HvmSaveDescriptor>();
    let len = 3 * d + header.as_bytes().len() + cpu.as_bytes().len();
    let mut b = alloc::vec![0u8; len];
    let mut pos = 0;
    for (ty, data) in [
        (code::HEADER, header.as_bytes()),
        (code::CPU, cpu.as_bytes()),
        (code::END, &[][..]),
    ] {
        // The buffer is sized for exactly these three records.
        pos += hvm_save::put_record(&mut b, pos, ty, 0, data).unwrap_or(0);
    }
    b
}

#[cfg(target_os = "none")]
pub use glue::{build, HvmBuilt, PvhRings};

#[cfg(target_os = "none")]
mod glue {
    use super::*;
    use crate::xc::{self, foreign::ForeignGuestMemory, foreign::ForeignMap, CreateParams};
    use hypercall_abi::domctl::{XEN_DOMCTL_CDF_HAP, XEN_DOMCTL_CDF_HVM};
    use hypercall_abi::hvm::HvmParam;

    fn hc<T>(what: &'static str, r: Result<T, pv_guest_lib::Errno>) -> Result<T, HvmError> {
        r.map_err(|e| HvmError::Hypercall(what, e))
    }

    /// A built (still paused) HVM or PVH domain.
    pub struct HvmBuilt {
        /// Its id.
        pub domid: u16,
        /// Pages it has.
        pub nr_pages: u64,
        /// HVM: its ioreq page, mapped into Dom0 (zeroed).
        pub ioreq: Option<ForeignMap>,
        /// PVH: its xenstore and console rings.
        pub rings: Option<PvhRings>,
        /// vCPUs.
        pub vcpus: u32,
    }

    /// A PVH guest's xenstore and console rings (guest frames) and their
    /// event channels (guest side, Dom0 the remote end).
    #[derive(Clone, Copy, Debug)]
    pub struct PvhRings {
        /// `HVM_PARAM_STORE_PFN`.
        pub store_gfn: u64,
        /// `HVM_PARAM_STORE_EVTCHN`.
        pub store_port: u32,
        /// `HVM_PARAM_CONSOLE_PFN`.
        pub console_gfn: u64,
        /// `HVM_PARAM_CONSOLE_EVTCHN`.
        pub console_port: u32,
    }

    /// Builds the domain `p` plans (see the module documentation); it stays
    /// paused.
    pub fn build(p: &HvmPlan, modules: &[&[u8]], handle: [u8; 16]) -> Result<HvmBuilt, HvmError> {
        // As libxl: a PVH guest gets the local APIC alone; an HVM guest
        // the hypervisor's HVM set (0: Oxen's default, PIC, PIT, RTC,
        // IOAPIC, ACPI PM and LAPIC).
        let emulation = if p.is_pvh() {
            hypercall_abi::arch_x86::XEN_X86_EMU_LAPIC
        } else {
            0
        };
        let domid = xc::create_domain_emulating(
            &CreateParams {
                max_vcpus: p.vcpus,
                handle,
                ..CreateParams::default()
            },
            XEN_DOMCTL_CDF_HVM | XEN_DOMCTL_CDF_HAP,
            emulation,
        )
        .map_err(HvmError::NoHvm)?;
        match fill(domid, p, modules) {
            Ok(b) => Ok(b),
            Err(e) => {
                let _ = xc::destroy(domid);
                Err(e)
            }
        }
    }

    fn populate(domid: u16, order: u32, gfns: &[u64]) -> Result<(), HvmError> {
        for chunk in gfns.chunks(256) {
            let mut list = chunk.to_vec();
            let n = hc(
                "populate_physmap",
                xc::populate_physmap_order(domid, order, &mut list),
            )?;
            if n != chunk.len() {
                return Err(HvmError::Hypercall(
                    "populate_physmap (out of memory)",
                    pv_guest_lib::Errno::from_abi(hypercall_abi::errno::Errno::ENOMEM),
                ));
            }
        }
        Ok(())
    }

    fn fill(domid: u16, p: &HvmPlan, modules: &[&[u8]]) -> Result<HvmBuilt, HvmError> {
        let pages = p.max_pages();
        hc("max_mem", xc::set_max_mem(domid, p.max_mem_kib()))?;
        populate(domid, 9, &p.extents.large)?;
        populate(domid, 0, &p.extents.small)?;
        populate(domid, 0, p.special_gfns())?;

        let entry = {
            let mut mem = ForeignGuestMemory::with_ranges(domid, p.map.populated());
            let e = write(p, modules, &mut mem)?;
            for &g in p.special_gfns() {
                mem.write(g * PAGE, &[0u8; PAGE as usize])
                    .map_err(|f| HvmError::GuestMemory(f.gpa))?;
            }
            e
        };

        let (ioreq, rings) = if p.is_pvh() {
            let store_port = hc(
                "alloc_unbound (xenstore)",
                xc::evtchn_alloc_unbound(domid, 0),
            )?;
            let console_port = hc(
                "alloc_unbound (console)",
                xc::evtchn_alloc_unbound(domid, 0),
            )?;
            for (what, param, v) in [
                (
                    "HVMOP_set_param HVM_PARAM_STORE_PFN",
                    HvmParam::StorePfn,
                    STORE_GFN,
                ),
                (
                    "HVMOP_set_param HVM_PARAM_STORE_EVTCHN",
                    HvmParam::StoreEvtchn,
                    u64::from(store_port),
                ),
                (
                    "HVMOP_set_param HVM_PARAM_CONSOLE_PFN",
                    HvmParam::ConsolePfn,
                    CONSOLE_GFN,
                ),
                (
                    "HVMOP_set_param HVM_PARAM_CONSOLE_EVTCHN",
                    HvmParam::ConsoleEvtchn,
                    u64::from(console_port),
                ),
            ] {
                hc(what, xc::hvm_set_param(domid, param, v))?;
            }
            let rings = PvhRings {
                store_gfn: STORE_GFN,
                store_port,
                console_gfn: CONSOLE_GFN,
                console_port,
            };
            (None, Some(rings))
        } else {
            let ioreq = hc(
                "mapping the ioreq page",
                ForeignMap::new(domid, &[IOREQ_GFN]),
            )?;
            hc(
                "HVMOP_set_param HVM_PARAM_IOREQ_PFN",
                xc::hvm_set_param(domid, HvmParam::IoreqPfn, IOREQ_GFN),
            )?;
            (Some(ioreq), None)
        };

        // As libxc's vcpu_hvm: the hypervisor's own header if it gives one.
        let header = xc::hvm_context_size(domid)
            .ok()
            .filter(|&n| n > 0 && n <= 64 * 1024)
            .and_then(|n| {
                let mut buf = alloc::vec![0u8; n];
                let got = xc::get_hvm_context(domid, &mut buf).ok()?;
                header_of(&buf[..got])
            })
            .unwrap_or_else(default_header);
        let ctx = context(&header, &hw_cpu(&entry));
        hc("sethvmcontext", xc::set_hvm_context(domid, &ctx))?;
        Ok(HvmBuilt {
            domid,
            nr_pages: pages,
            ioreq,
            rings,
            vcpus: p.vcpus,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::multiboot2::BOOTLOADER_MAGIC;
    use crate::builder::pvh::{testelf, CR0_ET, CR0_PE};
    use crate::devmodel::testmem::Sparse;
    use hypercall_abi::hvm::HvmMemmapType;
    use std::vec;

    const MIB: u64 = 1 << 20;

    /// A Multiboot2 ELF32 kernel at 1 MiB asking for the memory map.
    fn mb2_kernel() -> Vec<u8> {
        let magic = multiboot2::HEADER_MAGIC;
        let mut tags = Vec::new();
        // Information request (type 1, flags 0, size 12): mmap (6),
        // padding; then the end tag (type 0, size 8).
        for w in [1u32, 12, 6, 0, 0, 8] {
            tags.extend_from_slice(&w.to_le_bytes());
        }
        let len = 16 + tags.len() as u32;
        let sum = 0u32.wrapping_sub(magic).wrapping_sub(len);
        let mut text = Vec::new();
        for w in [magic, 0, len, sum] {
            text.extend_from_slice(&w.to_le_bytes());
        }
        text.extend_from_slice(&tags);
        text.resize(0x200, 0x90);
        testelf::build(false, MIB + 0x100, &[testelf::Seg::load(MIB, text, 0x4000)])
    }

    #[test]
    fn the_special_pages_are_reserved_above_ram_and_the_ioreq_page_is_one() {
        let map = memory_map(64).unwrap();
        let e = map.entries();
        assert!(
            e.windows(2).all(|w| w[0].addr + w[0].size <= w[1].addr),
            "sorted, disjoint"
        );
        let special = e
            .iter()
            .find(|x| x.addr == SPECIAL_START_GFN * PAGE)
            .expect("special region in the map");
        assert_eq!(special.size, NR_SPECIAL_PAGES * PAGE);
        assert_eq!(special.r#type, HvmMemmapType::Reserved.raw());
        assert!((SPECIAL_START_GFN..SPECIAL_END_GFN).contains(&IOREQ_GFN));
        assert!(!map.is_ram(IOREQ_GFN * PAGE, (IOREQ_GFN + 1) * PAGE));
        // A guest with more than 3.75 GiB: the special pages sit between
        // the below-4G RAM and the RAM above 4 GiB.
        let big = memory_map(5 * 1024).unwrap();
        let addrs: Vec<u64> = big.entries().iter().map(|x| x.addr).collect();
        assert_eq!(
            addrs,
            vec![0, ACPI_BASE, MIB, SPECIAL_START_GFN * PAGE, 1 << 32]
        );
    }

    #[test]
    fn memory_that_cannot_be_a_guest_is_refused() {
        assert_eq!(memory_map(1).unwrap_err(), HvmError::Memory(1));
        assert_eq!(memory_map(0).unwrap_err(), HvmError::Memory(0));
        assert_eq!(
            memory_map(u64::MAX).unwrap_err(),
            HvmError::Memory(u64::MAX)
        );
        assert!(memory_map(2).is_ok());
    }

    #[test]
    fn ram_is_populated_in_2mib_extents_where_aligned() {
        let x = extents(&memory_map(8).unwrap());
        assert_eq!(x.large, vec![0, 512, 1024, 1536]);
        assert!(x.small.is_empty());
        assert_eq!(x.pages(), 2048);
        // 3 MiB: one 2 MiB extent and 256 single frames.
        let x = extents(&memory_map(3).unwrap());
        assert_eq!(x.large, vec![0]);
        assert_eq!(x.small, (512..768).collect::<Vec<u64>>());
        // Above 4 GiB too.
        let x = extents(&memory_map(4096 + 2).unwrap());
        assert_eq!(x.pages(), (4096 + 2) * 256);
        assert!(x.large.contains(&((1u64 << 32) / PAGE)));
    }

    #[test]
    fn a_multiboot2_kernel_is_planned_and_written_with_its_entry_state() {
        let img = mb2_kernel();
        let p = plan_multiboot2(&img, 16, 2, b"console=com1", &[5000]).unwrap();
        assert_eq!(p.max_pages(), 16 * 256 + 1);
        assert_eq!(p.max_mem_kib(), 16 * 1024 + 4 + 1024);
        let mut mem = Sparse::new(16 * MIB);
        let module = vec![0x6d; 5000];
        let r = write(&p, &[], &mut mem);
        assert!(
            matches!(r, Err(HvmError::Multiboot2(Mb2Error::Modules))),
            "{r:?}"
        );
        let e = write(&p, &[&module], &mut mem).unwrap();
        let Boot::Multiboot2 { layout, .. } = &p.boot else {
            panic!("a Multiboot2 plan")
        };
        let (ms, me) = layout.modules[0];
        assert_eq!(mem.get(ms, (me - ms) as usize), module);
        assert_eq!(e.rip, MIB + 0x100);
        assert_eq!(e.rax, u64::from(BOOTLOADER_MAGIC));
        assert_eq!(e.rbx, layout.mbi);
        assert_eq!((e.cs, e.ds), (0x08, 0x10));
        assert_eq!(&mem.get(ACPI_BASE, 8), b"RSD PTR ");
        assert_eq!(
            mem.get(layout.mbi, layout.mbi_bytes.len()),
            layout.mbi_bytes
        );
        // The boot information's memory map names the special pages.
        let special = (SPECIAL_START_GFN * PAGE).to_le_bytes();
        assert!(layout.mbi_bytes.windows(8).any(|w| w == special));
    }

    /// A PVH ELF64 kernel at 1 MiB with its PHYS32_ENTRY note.
    fn pvh_kernel() -> Vec<u8> {
        let note = testelf::xen_note(18, &((MIB + 0x40) as u32).to_le_bytes());
        testelf::build(
            true,
            0xffff_ffff_8100_0000,
            &[
                testelf::Seg::load(MIB, vec![0x90; 0x200], 0x2000),
                testelf::Seg::note(note),
            ],
        )
    }

    #[test]
    fn a_pvh_kernel_gets_start_info_its_initrd_and_the_xenstore_and_console_pages() {
        let img = pvh_kernel();
        let p = plan_pvh(&img, 32, 2, b"console=hvc0", 10_000).unwrap();
        assert!(p.is_pvh());
        assert_eq!(p.special_gfns(), &[STORE_GFN, CONSOLE_GFN]);
        assert_eq!(p.max_pages(), 32 * 256 + 2);
        for g in p.special_gfns() {
            assert!((SPECIAL_START_GFN..SPECIAL_END_GFN).contains(g));
            assert_ne!(*g, IOREQ_GFN);
        }
        let mut mem = Sparse::new(32 * MIB);
        let rd = vec![0x72; 10_000];
        let e = write(&p, &[&rd], &mut mem).unwrap();
        let Boot::Pvh { layout, .. } = &p.boot else {
            panic!("a PVH plan")
        };
        assert_eq!(e.rip, MIB + 0x40);
        assert_eq!(e.rbx, layout.start_info);
        assert_eq!(mem.get(layout.start_info, 4), 0x336e_c578u32.to_le_bytes());
        let (rs, re) = layout.ramdisk.unwrap();
        assert_eq!(mem.get(rs, (re - rs) as usize), rd);
        assert_eq!(&mem.get(ACPI_BASE, 8), b"RSD PTR ");
        let c = hw_cpu(&e);
        assert_eq!((c.cs_sel, c.cs_arbytes, c.cr0), (0x8, 0xc9b, 0x11));
        // The wrong initrd is refused.
        assert!(matches!(
            write(&p, &[&rd[..10]], &mut mem),
            Err(HvmError::Pvh(PvhError::RamdiskLength))
        ));
    }

    #[test]
    fn a_kernel_that_is_not_pvh_is_refused_with_one_line() {
        // A Multiboot2 kernel has no PHYS32_ENTRY note.
        let mb2 = mb2_kernel();
        let r = plan_pvh(&mb2, 16, 1, b"", 0);
        assert!(
            matches!(r, Err(HvmError::NotPvh(PvhError::NoPhys32Entry))),
            "{r:?}"
        );
        let msg = alloc::format!("{}", r.unwrap_err());
        assert!(
            msg.starts_with("not a PVH kernel (no XEN_ELFNOTE_PHYS32_ENTRY"),
            "{msg}"
        );
        assert!(matches!(
            plan_pvh(b"MZ not an ELF at all", 16, 1, b"", 0),
            Err(HvmError::NotPvh(PvhError::Elf(_)))
        ));
    }

    #[test]
    fn a_linux_bzimage_boots_at_its_32bit_entry_with_the_zero_page_and_initrd() {
        use crate::builder::bzimage::tests::{bzimage, SPEC};
        let img = bzimage(SPEC);
        assert!(is_bzimage(&img));
        assert!(!is_bzimage(&mb2_kernel()));
        let p = plan_hvm(&img, 64, 2, b"console=ttyS0", &[3000]).unwrap();
        let Boot::BzImage { layout, .. } = &p.boot else {
            panic!("a bzImage plan")
        };
        let layout = *layout;
        assert_eq!(p.special_gfns(), &[IOREQ_GFN]);
        let mut mem = Sparse::new(64 * MIB);
        let rd = vec![0x55; 3000];
        let e = write(&p, &[&rd], &mut mem).unwrap();
        assert_eq!(e.mode, crate::builder::pvh::EntryMode::Protected32);
        assert_eq!((e.rip, e.rsi, e.rbx), (layout.entry32, layout.zero_page, 0));
        assert_eq!((e.cs, e.ds), (0x10, 0x18), "Linux's __BOOT_CS/__BOOT_DS");
        let c = hw_cpu(&e);
        assert_eq!((c.cs_sel, c.ds_sel, c.cs_arbytes), (0x10, 0x18, 0xc9b));
        assert_eq!(c.gdtr_base, e.gdt_base);
        assert_ne!(c.gdtr_base, 0, "the boot GDT is loaded");
        assert_eq!((c.cr0, c.cr3, c.msr_efer), (0x11, 0, 0));
        assert_eq!(&mem.get(layout.zero_page + 0x202, 4), b"HdrS");
        let (s, e2) = layout.initrd.unwrap();
        assert_eq!(mem.get(s, (e2 - s) as usize), rd);
        // The e820 in the zero page names the special pages as reserved.
        let special = (SPECIAL_START_GFN * PAGE).to_le_bytes();
        assert!(mem
            .get(layout.zero_page, 4096)
            .windows(8)
            .any(|w| w == special));
        // Two initrds cannot be given to Linux.
        assert!(matches!(
            plan_hvm(&img, 64, 1, b"", &[1, 2]),
            Err(HvmError::BzImage(BzImageError::InitrdLength))
        ));
        // A damaged bzImage says so (not "not Multiboot2").
        let mut bad = img.clone();
        bad[0x1fe] = 0;
        let msg = alloc::format!("{}", plan_hvm(&bad, 64, 1, b"", &[]).unwrap_err());
        assert!(msg.starts_with("Linux bzImage: no 0xAA55"), "{msg}");
    }

    #[test]
    fn a_kernel_without_a_multiboot2_header_is_refused_before_anything_else() {
        let elf = testelf::build(
            false,
            MIB,
            &[testelf::Seg::load(MIB, vec![0x90; 64], 0x1000)],
        );
        match plan_multiboot2(&elf, 16, 1, b"", &[]) {
            Err(HvmError::NotMultiboot2(Mb2Error::NoHeader)) => {}
            other => panic!("{other:?}"),
        }
        let msg = alloc::format!("{}", HvmError::NotMultiboot2(Mb2Error::NoHeader));
        assert!(
            msg.starts_with("not a Multiboot2 kernel (no Multiboot2 header"),
            "{msg}"
        );
        assert!(!msg.contains('\n'));
        // Too little memory for the kernel at 1 MiB + its bss: a
        // placement error, not a crash.
        assert!(matches!(
            plan_multiboot2(&mb2_kernel(), 1, 1, b"", &[]),
            Err(HvmError::Memory(1))
        ));
    }

    #[test]
    fn the_cpu_record_is_32bit_protected_mode_at_the_entry() {
        let e = EntryState {
            rax: 0x36d7_6289,
            rbx: 0x1000,
            cs: HVM_BOOT_CS,
            ds: HVM_BOOT_DS,
            ..EntryState::protected32(0x10_0100)
        };
        let c = hw_cpu(&e);
        assert_eq!((c.rip, c.rax, c.rbx), (0x10_0100, 0x36d7_6289, 0x1000));
        assert_eq!(c.cr0, CR0_PE | CR0_ET);
        assert_eq!(c.cr0, 0x11);
        assert_eq!((c.cr3, c.cr4, c.msr_efer), (0, 0, 0));
        assert_eq!(c.rflags, 2);
        assert_eq!(
            (c.cs_sel, c.cs_base, c.cs_limit, c.cs_arbytes),
            (0x8, 0, 0xffff_ffff, 0xc9b)
        );
        for (sel, base, limit, ar) in [
            (c.ds_sel, c.ds_base, c.ds_limit, c.ds_arbytes),
            (c.es_sel, c.es_base, c.es_limit, c.es_arbytes),
            (c.ss_sel, c.ss_base, c.ss_limit, c.ss_arbytes),
        ] {
            assert_eq!((sel, base, limit, ar), (0x10, 0, 0xffff_ffff, 0xc93));
        }
        assert_eq!((c.tr_arbytes, c.tr_limit), (0x8b, 0x67));
        assert_eq!(c.ldtr_arbytes, 0x82);
        assert_eq!(c.pending_event, 0, "no event to inject");
        assert_eq!(&c.fpu_regs[24..28], &0x1f80u32.to_le_bytes());
        // 64-bit code keeps its L bit in the 12-bit form.
        assert_eq!(arbytes(crate::builder::pvh::seg::CODE64), 0xa9b);
    }

    #[test]
    fn the_context_buffer_is_header_cpu_end_and_a_got_header_is_reused() {
        let cpu = hw_cpu(&EntryState::protected32(0x10_0000));
        let buf = context(&default_header(), &cpu);
        let recs: Vec<_> = hvm_save::records(&buf).unwrap().collect();
        assert_eq!(recs.len(), 2);
        assert_eq!(
            (recs[0].desc.typecode, recs[0].desc.instance),
            (code::HEADER, 0)
        );
        assert_eq!(
            (recs[1].desc.typecode, recs[1].desc.instance),
            (code::CPU, 0)
        );
        assert_eq!(recs[1].data, cpu.as_bytes());
        assert_eq!(buf.len(), 8 + 24 + 8 + 1024 + 8);
        assert_eq!(&buf[buf.len() - 8..], &[0u8; 8], "END record");
        let h = header_of(&buf).unwrap();
        assert_eq!((h.magic, h.version), (HVM_FILE_MAGIC, HVM_FILE_VERSION));
        // A hypervisor's header (its cpuid, tsc) is kept.
        let theirs = HvmSaveHeader {
            cpuid: 0x00a2_0f10,
            gtsc_khz: 2_000_000,
            ..default_header()
        };
        let buf = context(&theirs, &cpu);
        assert_eq!(header_of(&buf), Some(theirs));
        // Garbage, a wrong magic, a buffer without END: not reused.
        assert_eq!(header_of(&[0xff; 40]), None);
        let bad = HvmSaveHeader { magic: 1, ..theirs };
        assert_eq!(header_of(&context(&bad, &cpu)), None);
        assert_eq!(header_of(&buf[..40]), None);
    }
}
