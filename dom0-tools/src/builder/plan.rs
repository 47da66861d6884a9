//! The pure half of Dom0's PV domain builder: libxc's x86 PV layout
//! (tools/libs/guest/xg_dom_x86.c, xg_dom_core.c), planned with xen-core's
//! own planners (`xen_core::domain_build`: the ELF loader, the bootstrap
//! layout with the domU xenstore and console pages, the page-table
//! writer), plus the `start_info` page and the first vCPU's context as
//! libxc fills them (`start_info_x86_64`, `vcpu_x86_64`).
//!
//! From `virt_base` upward: the kernel's segments, the ramdisk, the p2m
//! list, `start_info`, the xenstore page, the console page, the bootstrap
//! page tables (the L4 first, every table mapped read-only) and one page
//! of boot stack; the region is mapped 1:1 onto PFNs 0.. and ends on a
//! 4 MiB boundary with at least 512 KiB to spare.
//!
//! Nothing here trusts the kernel image: it is parsed and checked by
//! `PvKernel::parse`, and every size is checked against the memory given.

use core::fmt;

use hypercall_abi::arch_x86::{
    VcpuGuestContext, FLAT_KERNEL_CS, FLAT_KERNEL_DS, FLAT_KERNEL_SS, VGCF_IN_KERNEL, VGCF_ONLINE,
};
use hypercall_abi::xen::{
    StartInfo as RawStartInfo, StartInfoConsole, StartInfoConsoleDomU, MAX_GUEST_CMDLINE,
    SIF_MOD_START_PFN, START_INFO_MAGIC_PREFIX,
};
use xen_core::domain_build::elf::{ElfError, ElfPolicy, PvKernel};
use xen_core::domain_build::layout::{BootLayout, DomainKind, LayoutError, LayoutParams};
use xen_core::domain_build::pagetable::{
    self, FrameSink, HypervisorSlots, PtError, PtFrame, XEN_L4_SLOTS,
};
use xen_core::mm::{Mfn, Pfn, PAGE_SIZE};
use zerocopy::FromZeros;

pub use xen_core::domain_build::layout::BootLayout as Layout;

/// RFLAGS of the first vCPU: IF (libxc's `1 << 9`).
pub const GUEST_RFLAGS: u64 = 1 << 9;

/// Why a guest cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildError {
    /// The kernel image was refused.
    Elf(ElfError),
    /// No layout fits.
    Layout(LayoutError),
    /// The page tables could not be written.
    PageTables(PtError),
    /// The kernel wants ring 0 (`supervisor_mode_kernel`).
    SupervisorMode,
    /// The p2m is shorter than the domain.
    ShortP2m,
    /// A hypercall failed: what, and Xen's error.
    Hypercall(&'static str, pv_guest_lib::Errno),
    /// The file is not in the ramdisk.
    NoSuchKernel,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Elf(e) => write!(f, "kernel image: {e}"),
            BuildError::Layout(e) => write!(f, "layout: {e}"),
            BuildError::PageTables(e) => write!(f, "page tables: {e}"),
            BuildError::SupervisorMode => f.write_str("kernel requires supervisor mode"),
            BuildError::ShortP2m => f.write_str("p2m shorter than the domain"),
            BuildError::Hypercall(what, e) => write!(f, "{what}: {e}"),
            BuildError::NoSuchKernel => f.write_str("no such kernel file"),
        }
    }
}

impl From<ElfError> for BuildError {
    fn from(e: ElfError) -> Self {
        BuildError::Elf(e)
    }
}

impl From<LayoutError> for BuildError {
    fn from(e: LayoutError) -> Self {
        BuildError::Layout(e)
    }
}

impl From<PtError> for BuildError {
    fn from(e: PtError) -> Self {
        BuildError::PageTables(e)
    }
}

/// Parses and checks a guest kernel.
pub fn parse_kernel(image: &[u8]) -> Result<PvKernel<'_>, BuildError> {
    let k = PvKernel::parse(image, &ElfPolicy::default())?;
    if k.requires_supervisor_mode() {
        return Err(BuildError::SupervisorMode);
    }
    Ok(k)
}

/// The layout of a domU with `nr_pages` pages and a ramdisk of
/// `ramdisk_len` bytes.
pub fn plan(kernel: &PvKernel, ramdisk_len: u64, nr_pages: u64) -> Result<BootLayout, BuildError> {
    Ok(BootLayout::compute(&LayoutParams::for_kernel(
        kernel,
        ramdisk_len,
        nr_pages,
        DomainKind::DomU,
    ))?)
}

/// Everything `start_info` needs beyond the layout.
#[derive(Clone, Copy, Debug)]
pub struct StartParams<'a> {
    /// Machine address of the shared info page (`shared_info_frame << 12`).
    pub shared_info_maddr: u64,
    /// `SIF_*` flags (0 for an ordinary guest).
    pub flags: u32,
    /// The xenstore ring's event channel (in the guest).
    pub store_evtchn: u32,
    /// The console ring's event channel (in the guest).
    pub console_evtchn: u32,
    /// The command line (cut to 1023 bytes).
    pub cmdline: &'a [u8],
}

/// The guest's `start_info`, as libxc's `start_info_x86_64` fills it.
/// `p2m` is the domain's pfn → mfn list.
pub fn start_info(
    l: &BootLayout,
    kernel: &PvKernel,
    p2m: &[u64],
    p: &StartParams,
) -> Result<RawStartInfo, BuildError> {
    let mfn = |va: Option<u64>| -> Result<u64, BuildError> {
        let pfn = va
            .and_then(|va| l.vaddr_to_pfn(va))
            .ok_or(BuildError::ShortP2m)?;
        p2m.get(pfn.0 as usize).copied().ok_or(BuildError::ShortP2m)
    };
    let mut si = RawStartInfo::new_zeroed();
    si.magic[..START_INFO_MAGIC_PREFIX.len()].copy_from_slice(START_INFO_MAGIC_PREFIX);
    // libxc writes the guest type, "xen-3.0-x86_64", whatever PAE_MODE
    // says (only Xen's own Dom0 builder appends "p").
    let _ = kernel;
    si.nr_pages = l.nr_pages;
    si.shared_info = p.shared_info_maddr;
    si.flags = p.flags;
    if l.ramdisk_unmapped() {
        si.flags |= SIF_MOD_START_PFN;
    }
    si.store_mfn = mfn(l.xenstore)?;
    si.store_evtchn = p.store_evtchn;
    si.console = StartInfoConsole::from_dom_u(StartInfoConsoleDomU {
        mfn: mfn(l.console)?,
        evtchn: p.console_evtchn,
        _pad12: 0,
    });
    si.pt_base = l.pt_base();
    si.nr_pt_frames = l.nr_pt_frames();
    si.mfn_list = l.p2m.start;
    si.mod_start = l.mod_start();
    si.mod_len = l.ramdisk_len;
    let n = p.cmdline.len().min(MAX_GUEST_CMDLINE - 1);
    si.cmd_line[..n].copy_from_slice(&p.cmdline[..n]);
    Ok(si)
}

/// `xen_pfn_to_cr3` on x86_64: the frame number shifted into place.
pub const fn pfn_to_cr3(mfn: u64) -> u64 {
    mfn << 12
}

/// vCPU 0's context, as libxc's `vcpu_x86_64`: the entry point, the boot
/// stack, `rsi` = start_info, Xen's flat kernel selectors, the L4.
pub fn vcpu_context(l: &BootLayout, kernel: &PvKernel, l4_mfn: u64) -> VcpuGuestContext {
    let mut c = VcpuGuestContext::new_zeroed();
    c.user_regs.rip = kernel.entry();
    c.user_regs.rsp = l.stack_top();
    c.user_regs.rsi = l.start_info;
    c.user_regs.rflags = GUEST_RFLAGS;
    c.user_regs.cs = FLAT_KERNEL_CS;
    c.user_regs.ss = FLAT_KERNEL_SS;
    c.user_regs.ds = FLAT_KERNEL_DS;
    c.user_regs.es = FLAT_KERNEL_DS;
    c.user_regs.fs = FLAT_KERNEL_DS;
    c.user_regs.gs = FLAT_KERNEL_DS;
    c.kernel_ss = u64::from(FLAT_KERNEL_SS);
    c.kernel_sp = l.stack_top();
    c.flags = VGCF_IN_KERNEL | VGCF_ONLINE;
    c.ctrlreg[3] = pfn_to_cr3(l4_mfn);
    c
}

/// The guest's L4 leaves the hypervisor's slots empty: Xen fills them
/// when the L4 is pinned (`init_xen_l4_slots`).
pub const GUEST_XEN_SLOTS: HypervisorSlots = HypervisorSlots {
    template: [0; XEN_L4_SLOTS],
    self_map_slot: None,
};

/// Writes the bootstrap page tables through `sink`; returns the L4's mfn
/// and fills `frames` (at least `l.nr_pt_frames()` long).
pub fn page_tables<S: FrameSink>(
    l: &BootLayout,
    p2m: &[u64],
    sink: &mut S,
    frames: &mut [PtFrame],
) -> Result<Mfn, BuildError> {
    let p2m_fn = |pfn: Pfn| p2m.get(pfn.0 as usize).map(|&m| Mfn(m));
    let s = pagetable::build_bootstrap_tables(l, &p2m_fn, &GUEST_XEN_SLOTS, sink, frames)?;
    Ok(s.l4)
}

/// Where each piece goes, in pages of the bootstrap region (PFNs): what
/// the glue copies, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pieces {
    /// First PFN of the kernel image.
    pub kernel_pfn: u64,
    /// First PFN of the ramdisk (mapped or not), if any.
    pub ramdisk_pfn: Option<u64>,
    /// First PFN of the p2m list.
    pub p2m_pfn: u64,
    /// start_info.
    pub start_info_pfn: u64,
    /// The xenstore ring.
    pub xenstore_pfn: u64,
    /// The console ring.
    pub console_pfn: u64,
    /// The first page table (the L4).
    pub pt_pfn: u64,
    /// The boot stack.
    pub stack_pfn: u64,
    /// Pages to map in Dom0 while building: the bootstrap region plus an
    /// unmapped ramdisk.
    pub pages_to_fill: u64,
}

/// The PFNs of a layout's pieces.
pub fn pieces(l: &BootLayout) -> Result<Pieces, BuildError> {
    let pfn = |va: u64| l.vaddr_to_pfn(va).map(|p| p.0).ok_or(BuildError::ShortP2m);
    Ok(Pieces {
        kernel_pfn: pfn(l.kernel.start)?,
        ramdisk_pfn: l.ramdisk_pfn.map(|p| p.0),
        p2m_pfn: pfn(l.p2m.start)?,
        start_info_pfn: pfn(l.start_info)?,
        xenstore_pfn: pfn(l.xenstore.ok_or(BuildError::ShortP2m)?)?,
        console_pfn: pfn(l.console.ok_or(BuildError::ShortP2m)?)?,
        pt_pfn: l.pt_pfn().0,
        stack_pfn: pfn(l.stack.start)?,
        pages_to_fill: l.pages_needed(),
    })
}

/// Byte offset of virtual address `va` in the bootstrap region (the
/// region is contiguous in PFN space, and so in a window mapping it).
pub fn region_offset(l: &BootLayout, va: u64) -> Option<usize> {
    l.region().contains(va).then(|| (va - l.v_start) as usize)
}

/// Pages of the domain (memory in MiB, at least what the layout needs).
pub const fn pages_for_mib(mib: u64) -> u64 {
    mib * (1 << 20) / PAGE_SIZE
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::vec;
    use std::vec::Vec;
    use xen_core::domain_build::pagetable::PtLevel;

    const VIRT_BASE: u64 = 0xffff_ffff_8000_0000;
    const KSTART: u64 = 0xffff_ffff_8010_0000;

    fn note(out: &mut Vec<u8>, ty: u32, desc: &[u8]) {
        out.extend_from_slice(&4u32.to_le_bytes());
        out.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        out.extend_from_slice(&ty.to_le_bytes());
        out.extend_from_slice(b"Xen\0");
        out.extend_from_slice(desc);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    }

    /// A minimal PV kernel as pv-guest-lib links them: one PT_LOAD of
    /// 0x3000 bytes (0x1000 in the file) at KSTART and a PT_NOTE with the
    /// Xen notes.
    fn kernel_image() -> Vec<u8> {
        let mut notes = Vec::new();
        note(&mut notes, 6, b"Oxen-PV\0"); // GUEST_OS
        note(&mut notes, 5, b"xen-3.0\0"); // XEN_VERSION
        note(&mut notes, 8, b"generic\0"); // LOADER
        note(&mut notes, 9, b"yes\0"); // PAE_MODE
        note(&mut notes, 3, &VIRT_BASE.to_le_bytes()); // VIRT_BASE
        note(&mut notes, 4, &0u64.to_le_bytes()); // PADDR_OFFSET
        note(&mut notes, 1, &KSTART.to_le_bytes()); // ENTRY
        note(&mut notes, 2, &(KSTART + 0x1000).to_le_bytes()); // HYPERCALL_PAGE
        let phoff = 64u64;
        let notes_off = phoff + 2 * 56;
        let load_off = 0x1000u64;
        let mut img = vec![0u8; 64];
        img[..4].copy_from_slice(b"\x7fELF");
        img[4] = 2; // ELFCLASS64
        img[5] = 1; // little endian
        img[6] = 1; // EV_CURRENT
        img[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        img[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
        img[20..24].copy_from_slice(&1u32.to_le_bytes());
        img[24..32].copy_from_slice(&KSTART.to_le_bytes());
        img[32..40].copy_from_slice(&phoff.to_le_bytes());
        img[52..54].copy_from_slice(&64u16.to_le_bytes());
        img[54..56].copy_from_slice(&56u16.to_le_bytes());
        img[56..58].copy_from_slice(&2u16.to_le_bytes());
        let ph = |ty: u32, flags: u32, off: u64, va: u64, filesz: u64, memsz: u64, align: u64| {
            let mut h = Vec::new();
            h.extend_from_slice(&ty.to_le_bytes());
            h.extend_from_slice(&flags.to_le_bytes());
            for v in [off, va, va - VIRT_BASE, filesz, memsz, align] {
                h.extend_from_slice(&v.to_le_bytes());
            }
            h
        };
        img.extend(ph(1, 7, load_off, KSTART, 0x1000, 0x3000, 0x1000));
        img.extend(ph(
            4,
            4,
            notes_off,
            KSTART,
            notes.len() as u64,
            notes.len() as u64,
            4,
        ));
        img.extend_from_slice(&notes);
        img.resize(load_off as usize, 0);
        img.extend((0..0x1000).map(|i| i as u8));
        img
    }

    struct Mem(BTreeMap<u64, [u64; 512]>);

    impl FrameSink for Mem {
        fn clear_table(&mut self, mfn: Mfn, _level: PtLevel) {
            self.0.insert(mfn.0, [0; 512]);
        }
        fn write_entry(&mut self, table: Mfn, index: usize, entry: u64) {
            self.0.get_mut(&table.0).unwrap()[index] = entry;
        }
    }

    fn p2m(n: u64) -> Vec<u64> {
        // Scattered, descending frames, as a real allocator may give.
        (0..n).map(|pfn| 0x40000 - pfn * 3).collect()
    }

    #[test]
    fn layout_follows_libxc_order() {
        let img = kernel_image();
        let k = parse_kernel(&img).unwrap();
        let l = plan(&k, 10_000, pages_for_mib(16)).unwrap();
        let p = pieces(&l).unwrap();
        assert_eq!(l.v_start, k.virt_base);
        assert!(p.kernel_pfn < p.ramdisk_pfn.unwrap());
        assert!(p.ramdisk_pfn.unwrap() < p.p2m_pfn);
        assert!(p.p2m_pfn < p.start_info_pfn);
        assert_eq!(p.xenstore_pfn, p.start_info_pfn + 1);
        assert_eq!(p.console_pfn, p.xenstore_pfn + 1);
        assert_eq!(p.pt_pfn, p.console_pfn + 1);
        assert_eq!(p.stack_pfn, p.pt_pfn + l.nr_pt_frames());
        assert_eq!(l.v_end % (4 << 20), 0);
        assert!(l.v_end - l.stack.end >= 512 << 10);
        assert!(p.pages_to_fill <= pages_for_mib(16));
    }

    #[test]
    fn too_little_memory_is_refused() {
        let img = kernel_image();
        let k = parse_kernel(&img).unwrap();
        assert!(matches!(
            plan(&k, 0, 16),
            Err(BuildError::Layout(LayoutError::TooSmall { .. }))
        ));
        assert!(matches!(
            parse_kernel(b"not an elf"),
            Err(BuildError::Elf(_))
        ));
    }

    #[test]
    fn start_info_as_libxc_fills_it() {
        let img = kernel_image();
        let k = parse_kernel(&img).unwrap();
        let n = pages_for_mib(8);
        let l = plan(&k, 4096, n).unwrap();
        let m = p2m(n);
        let pc = pieces(&l).unwrap();
        let si = start_info(
            &l,
            &k,
            &m,
            &StartParams {
                shared_info_maddr: 0x1234_5000,
                flags: 0,
                store_evtchn: 1,
                console_evtchn: 2,
                cmdline: b"console=hvc0 hello",
            },
        )
        .unwrap();
        assert!(si.magic.starts_with(b"xen-3.0-x86_64"));
        assert_eq!(si.nr_pages, n);
        assert_eq!(si.shared_info, 0x1234_5000);
        assert_eq!(si.flags, 0);
        assert_eq!(si.store_mfn, m[pc.xenstore_pfn as usize]);
        assert_eq!(si.store_evtchn, 1);
        let c = si.console.dom_u();
        assert_eq!(c.mfn, m[pc.console_pfn as usize]);
        assert_eq!(c.evtchn, 2);
        assert_eq!(si.pt_base, l.pt_base());
        assert_eq!(si.nr_pt_frames, l.nr_pt_frames());
        assert_eq!(si.mfn_list, l.p2m.start);
        assert_eq!(si.mod_start, l.ramdisk.unwrap().start);
        assert_eq!(si.mod_len, 4096);
        assert!(si.cmd_line.starts_with(b"console=hvc0 hello\0"));
        // A short p2m is refused, not indexed out of bounds.
        assert_eq!(
            start_info(
                &l,
                &k,
                &m[..3],
                &StartParams {
                    shared_info_maddr: 0,
                    flags: 0,
                    store_evtchn: 0,
                    console_evtchn: 0,
                    cmdline: &[b'x'; 5000],
                }
            )
            .err(),
            Some(BuildError::ShortP2m)
        );
    }

    #[test]
    fn long_command_lines_are_cut_and_terminated() {
        let img = kernel_image();
        let k = parse_kernel(&img).unwrap();
        let n = pages_for_mib(8);
        let l = plan(&k, 0, n).unwrap();
        let si = start_info(
            &l,
            &k,
            &p2m(n),
            &StartParams {
                shared_info_maddr: 0,
                flags: 0,
                store_evtchn: 0,
                console_evtchn: 0,
                cmdline: &[b'x'; 5000],
            },
        )
        .unwrap();
        assert_eq!(si.cmd_line[MAX_GUEST_CMDLINE - 2], b'x');
        assert_eq!(si.cmd_line[MAX_GUEST_CMDLINE - 1], 0);
        assert_eq!(si.mod_start, 0);
        assert_eq!(si.mod_len, 0);
    }

    #[test]
    fn vcpu_context_as_libxc() {
        let img = kernel_image();
        let k = parse_kernel(&img).unwrap();
        let l = plan(&k, 0, pages_for_mib(8)).unwrap();
        let c = vcpu_context(&l, &k, 0xabcde);
        assert_eq!(c.user_regs.rip, k.entry());
        assert_eq!(c.user_regs.rsp, l.stack.end);
        assert_eq!(c.user_regs.rsi, l.start_info);
        assert_eq!(c.user_regs.cs, 0xe033);
        assert_eq!(c.user_regs.ss, 0xe02b);
        assert_eq!(c.user_regs.ds, FLAT_KERNEL_DS);
        assert_eq!(c.kernel_ss, 0xe02b);
        assert_eq!(c.kernel_sp, l.stack.end);
        assert_eq!(c.user_regs.rflags, 0x200);
        assert_eq!(c.flags, VGCF_IN_KERNEL | VGCF_ONLINE);
        assert_eq!(c.ctrlreg[3], 0xabcde << 12);
    }

    #[test]
    fn page_tables_map_the_region_and_leave_xen_slots_empty() {
        let img = kernel_image();
        let k = parse_kernel(&img).unwrap();
        let n = pages_for_mib(8);
        let l = plan(&k, 0, n).unwrap();
        let m = p2m(n);
        let mut mem = Mem(BTreeMap::new());
        let mut frames = vec![PtFrame::default(); l.nr_pt_frames() as usize];
        let l4 = page_tables(&l, &m, &mut mem, &mut frames).unwrap();
        let pc = pieces(&l).unwrap();
        assert_eq!(l4.0, m[pc.pt_pfn as usize]);
        let t = &mem.0[&l4.0];
        assert!(t[256..272].iter().all(|&e| e == 0));
        // Walk the start_info address down to its frame.
        let va = l.start_info;
        let mut table = l4.0;
        for level in (1..=4).rev() {
            let idx = ((va >> (12 + 9 * (level - 1))) & 511) as usize;
            let e = mem.0[&table][idx];
            assert!(e & 1 != 0, "level {level} not present");
            table = (e & 0x000f_ffff_ffff_f000) >> 12;
        }
        assert_eq!(table, m[pc.start_info_pfn as usize]);
        // A p2m shorter than the region is an error, not a panic.
        let mut frames = vec![PtFrame::default(); l.nr_pt_frames() as usize];
        assert!(page_tables(&l, &m[..10], &mut Mem(BTreeMap::new()), &mut frames).is_err());
    }
}
