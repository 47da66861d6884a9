//! Building and starting Dom0, the way Xen's PV Dom0 builder does
//! (xen/arch/x86/pv/dom0_build.c): parse the kernel, plan the bootstrap
//! region, give Dom0 its memory, load kernel and ramdisk, write the p2m list,
//! start_info, shared_info, page tables and hypercall page, then enter the
//! kernel in ring 3.
//!
//! The planning is `xen_core::domain_build` (pure, host-tested); this module
//! moves the bytes. The kernel image is not trusted: every refusal is printed
//! with its reason and stops the machine cleanly.

use crate::arch::x86_64::entry::TrapFrame;
use crate::arch::x86_64::gdt::{RING3_CS64, RING3_DS};
use crate::arch::x86_64::paging::{self, phys_to_virt};
use crate::arch::x86_64::{power, smp};
use crate::domain::{Domain, DOMAINS};
use crate::memory::{self, FRAMES, FRAME_TABLE};
use alloc::vec::Vec;
use hypercall_abi::xen::{
    SharedInfo, StartInfo, SIF_INITDOMAIN, SIF_MOD_START_PFN, SIF_PRIVILEGED,
    START_INFO_MAGIC_PREFIX, XEN_LEGACY_MAX_VCPUS,
};
use xen_core::boot_info::{BootInfo, BootModule, PhysRead};
use xen_core::cmdline::CmdLine;
use xen_core::domain_build::elf::{ElfPolicy, PvKernel};
use xen_core::domain_build::layout::{BootLayout, DomainKind, LayoutError, LayoutParams};
use xen_core::domain_build::pagetable::{self, FrameSink, HypervisorSlots, PtFrame, PtLevel};
use xen_core::mm::frame_table::{DomId as FtDomId, Owner, PageType};
use xen_core::mm::ptval;
use xen_core::mm::{Mfn, Pfn, PAGE_SIZE};
use zerocopy::{FromZeros, IntoBytes};

/// Dom0's domain ID.
const DOM0: u16 = 0;
/// RFLAGS a PV guest starts with: IF set (interrupts reach the hypervisor
/// while the guest runs) and the always-one bit 1.
const GUEST_RFLAGS: u64 = (1 << 9) | (1 << 1);
/// Memory kept back for the hypervisor when `dom0_mem` is not given
/// (Xen keeps 1/16 of RAM, at most 128 MiB).
const DOM0_RESERVE_MAX: u64 = 128 << 20;

fn fatal(args: core::fmt::Arguments) -> ! {
    log::error!("{args}");
    crate::println!("(XEN) ****************************************");
    crate::println!("(XEN) Panic on CPU 0:");
    crate::println!("(XEN) Could not set up DOM0 guest OS: {args}");
    crate::println!("(XEN) ****************************************");
    power::halt_fatal();
}

/// A module's bytes through the direct map.
fn module_bytes(m: &BootModule) -> &'static [u8] {
    // SAFETY: boot modules lie in RAM reserved from the allocator at boot
    // (nothing else writes them) and the direct map covers all RAM.
    unsafe { core::slice::from_raw_parts(phys_to_virt(m.start) as *const u8, m.len as usize) }
}

/// Dom0's command line: the module string, minus a leading image path as
/// boot loaders write it (Xen's `cmdline_cook`).
fn dom0_cmdline(m: &BootModule, phys: &impl PhysRead, buf: &mut [u8; 1024]) -> usize {
    let Some(c) = m.cmdline else { return 0 };
    let Ok(bytes) = c.read_into(phys, &mut buf[..1023]) else {
        return 0;
    };
    let s = bytes.split(|&b| b == 0).next().unwrap_or(&[]);
    let s = match s.first() {
        Some(b'/') => s
            .iter()
            .position(|&b| b == b' ')
            .map_or(&[][..], |i| &s[i + 1..]),
        _ => s,
    };
    let n = s.len();
    let tmp: heapless::Vec<u8, 1024> = heapless::Vec::from_slice(s).unwrap_or_default();
    buf[..n].copy_from_slice(&tmp);
    buf[n..].fill(0);
    n
}

/// The least memory Dom0 gets without `dom0_mem=`.
const DOM0_DEFAULT_MIN: u64 = 128 << 20;

fn dom0_pages(cl: &CmdLine, free_pages: u64, needed: u64) -> u64 {
    let free = free_pages * PAGE_SIZE;
    let want = match cl.dom0_mem.and_then(|m| m.target()) {
        Some(bytes) => bytes,
        // Xen gives Dom0 everything but a reserve and lets the toolstack
        // balloon it down for guests; Oxen's Dom0 has no balloon driver
        // yet, so it gets a quarter (at least 128 MiB) and the rest stays
        // free for guests (docs/abi-deviations.md).
        None => (free / 4)
            .max(DOM0_DEFAULT_MIN)
            .min(free - (free / 16).min(DOM0_RESERVE_MAX)),
    };
    (want / PAGE_SIZE).clamp(needed, free_pages.saturating_sub(256))
}

/// Builds Dom0 from the boot modules and runs it on this CPU. Never returns.
pub fn build_and_start(bi: &BootInfo, phys: &impl PhysRead, cl: &CmdLine) -> ! {
    crate::println!("(XEN) *** Building a PV Dom0 ***");
    let mods = bi.modules();
    let Some(kmod) = mods.first() else {
        fatal(format_args!(
            "no Dom0 kernel: the boot loader passed no modules"
        ));
    };
    let image = module_bytes(kmod);
    let kernel = PvKernel::parse(image, &ElfPolicy::default()).unwrap_or_else(|e| {
        fatal(format_args!(
            "Dom0 kernel (module 1, {} bytes): {e}",
            kmod.len
        ))
    });
    let ramdisk = mods.get(1).map(module_bytes).unwrap_or(&[]);
    log::info!(
        "Dom0 kernel: 64-bit, lsb, paddr {:#x} -> {:#x}, {} Xen notes",
        kernel.pstart,
        kernel.pend,
        kernel.notes.count
    );

    // Memory: what dom0_mem asks for (or Xen's default), grown to what the
    // bootstrap region needs if that is more.
    let free_pages = memory::free_frames();
    let plan = |nr_pages| {
        BootLayout::compute(&LayoutParams::for_kernel(
            &kernel,
            ramdisk.len() as u64,
            nr_pages,
            DomainKind::Dom0,
        ))
    };
    let mut nr_pages = dom0_pages(cl, free_pages, 0);
    let layout = match plan(nr_pages) {
        Ok(l) => l,
        Err(LayoutError::TooSmall { needed, .. }) if needed < free_pages => {
            log::warn!("dom0_mem too small for the kernel: giving Dom0 {needed} pages");
            nr_pages = needed;
            plan(nr_pages).unwrap_or_else(|e| fatal(format_args!("Dom0 kernel: {e}")))
        }
        Err(e) => fatal(format_args!("Dom0 kernel: {e}")),
    };
    let base = FRAMES
        .lock()
        .as_mut()
        .and_then(|fa| fa.alloc_contig(nr_pages, 1).ok())
        .unwrap_or_else(|| {
            fatal(format_args!(
                "cannot allocate {} MiB for Dom0 (dom0_mem too large?)",
                nr_pages >> 8
            ))
        });
    let mfn_of = |pfn: Pfn| Mfn(base.0 + pfn.0);
    let nr_vcpus = cl
        .dom0_max_vcpus
        .map_or(smp::cpus_online(), |v| {
            v.max.unwrap_or(smp::cpus_online()).max(v.min)
        })
        .clamp(1, XEN_LEGACY_MAX_VCPUS as u32);

    crate::println!("(XEN) PHYSICAL MEMORY ARRANGEMENT:");
    crate::println!(
        "(XEN)  Dom0 alloc.:   {:016x}->{:016x} ({} pages)",
        base.maddr(),
        base.maddr() + nr_pages * PAGE_SIZE,
        nr_pages
    );
    crate::println!("(XEN) VIRTUAL MEMORY ARRANGEMENT:");
    crate::println!(
        "(XEN)  Loaded kernel: {:016x}->{:016x}",
        layout.kernel.start,
        layout.kernel.end
    );
    if let Some(r) = layout.ramdisk {
        crate::println!("(XEN)  Init. ramdisk: {:016x}->{:016x}", r.start, r.end);
    }
    crate::println!(
        "(XEN)  Phys-Mach map: {:016x}->{:016x}",
        layout.p2m.start,
        layout.p2m.end
    );
    crate::println!(
        "(XEN)  Start info:    {:016x}->{:016x}",
        layout.start_info,
        layout.start_info + PAGE_SIZE
    );
    crate::println!(
        "(XEN)  Page tables:   {:016x}->{:016x}",
        layout.page_tables.start,
        layout.page_tables.end
    );
    crate::println!(
        "(XEN)  Boot stack:    {:016x}->{:016x}",
        layout.stack.start,
        layout.stack.end
    );
    crate::println!(
        "(XEN)  TOTAL:         {:016x}->{:016x}",
        layout.v_start,
        layout.v_end
    );
    crate::println!("(XEN)  ENTRY ADDRESS: {:016x}", kernel.entry());
    crate::println!("(XEN) Dom0 has maximum {} VCPUs", nr_vcpus);

    // Scrub and hand over every frame; record the M2P.
    let region = phys_to_virt(base.maddr()) as *mut u8;
    // SAFETY: the frames [base, base+nr_pages) were just allocated for Dom0
    // and are direct-mapped; nothing else refers to them.
    let mem = unsafe { core::slice::from_raw_parts_mut(region, (nr_pages * PAGE_SIZE) as usize) };
    let t0 = crate::time::now_us();
    // SAFETY: `mem` is exactly the Dom0 allocation, ours until Dom0 runs.
    unsafe { crate::scrub::zero_all_cpus(region as u64, nr_pages * PAGE_SIZE) };
    log::debug!(
        "scrubbed {} MiB for Dom0 in {} ms",
        nr_pages >> 8,
        (crate::time::now_us() - t0) / 1000
    );
    {
        let mut ft = FRAME_TABLE.lock();
        let ft = ft.as_mut().expect("frame table");
        for pfn in 0..nr_pages {
            let mfn = mfn_of(Pfn(pfn));
            let _ = ft.assign(mfn, Owner::Domain(FtDomId(DOM0)));
            memory::set_m2p(mfn, pfn);
        }
    }
    let v_start = layout.v_start;

    // Kernel, ramdisk, p2m list.
    kernel
        .load_into(va_slice(
            mem,
            v_start,
            layout.kernel.start,
            layout.kernel.len(),
        ))
        .unwrap_or_else(|e| fatal(format_args!("loading the Dom0 kernel: {e}")));
    if let Some(r) = layout.ramdisk {
        va_slice(mem, v_start, r.start, ramdisk.len() as u64).copy_from_slice(ramdisk);
    } else if let (true, Some(pfn)) = (layout.ramdisk_unmapped(), layout.ramdisk_pfn) {
        // The kernel takes its ramdisk by PFN (MOD_START_PFN): after the
        // bootstrap region, not mapped.
        let off = (pfn.0 * PAGE_SIZE) as usize;
        mem[off..off + ramdisk.len()].copy_from_slice(ramdisk);
    }
    let p2m: Vec<u64> = (0..nr_pages).map(|pfn| mfn_of(Pfn(pfn)).0).collect();
    va_slice(mem, v_start, layout.p2m.start, nr_pages * 8).copy_from_slice(p2m.as_bytes());

    // Hypercall page.
    if let Some(hp) = kernel.hypercall_page() {
        let page: &mut [u8; 4096] = va_slice(mem, v_start, hp & !0xfff, PAGE_SIZE)
            .try_into()
            .expect("one page");
        hypercall_abi::hypercall::fill_hypercall_page(page);
    }

    // shared_info: a hypervisor page shared with the domain.
    let shinfo = FRAMES
        .lock()
        .as_mut()
        .and_then(|fa| fa.alloc().ok())
        .unwrap_or_else(|| fatal(format_args!("no memory for Dom0's shared_info")));
    memory::clear_frame(shinfo);
    {
        let mut si = SharedInfo::new_zeroed();
        for v in si.vcpu_info.iter_mut() {
            v.evtchn_upcall_mask = 1;
        }
        si.arch.max_pfn = nr_pages;
        crate::time::fill_vcpu_time(&mut si.vcpu_info[0].time);
        crate::time::fill_wallclock(&mut si);
        // SAFETY: the shared_info frame was just allocated and cleared.
        let page = unsafe { memory::frame_bytes(shinfo) };
        page[..core::mem::size_of::<SharedInfo>()].copy_from_slice(si.as_bytes());
    }
    // Xen's share_xen_page_with_guest: the domain owns the page, which is
    // writable for good (a type reference held by xen-core, so it can never
    // become a page table), and cannot give it back.
    if let Some(ft) = FRAME_TABLE.lock().as_mut() {
        let owner = Owner::Domain(FtDomId(DOM0));
        let _ = ft.assign(shinfo, owner);
        let _ = ft.get_page_and_type(shinfo, owner, PageType::Writable);
    }

    // Page tables.
    let xen_slots = HypervisorSlots {
        template: *paging::hypervisor_l4_entries(),
        self_map_slot: None,
    };
    let mut frames: Vec<PtFrame> = alloc::vec![PtFrame::default(); layout.nr_pt_frames() as usize];
    let summary = {
        let mut sink = RegionSink {
            mem: &mut *mem,
            base,
        };
        let p2m_fn = |pfn: Pfn| (pfn.0 < nr_pages).then(|| mfn_of(pfn));
        pagetable::build_bootstrap_tables(&layout, &p2m_fn, &xen_slots, &mut sink, &mut frames)
            .unwrap_or_else(|e| fatal(format_args!("building Dom0's page tables: {e}")))
    };
    let l4 = summary.l4;
    // Account for the tables as Xen's builder does, by validating them: pin
    // the L4 (which validates the whole tree and takes every reference its
    // entries hold) and take the vCPU's base-pointer reference.
    crate::pv_mm::with_pt(DOM0, |ctx, ft, mem| {
        ptval::pin(ctx, ft, mem, l4, 4)?;
        ptval::new_baseptr(ctx, ft, mem, None, Some(l4))
    })
    .unwrap_or_else(|e| fatal(format_args!("Dom0's bootstrap page tables: {e}")));

    // start_info.
    let mut si = StartInfo::new_zeroed();
    // Xen 4.17 writes "xen-3.0-x86_64", plus "p" when PAE_MODE says yes.
    si.magic[..START_INFO_MAGIC_PREFIX.len()].copy_from_slice(START_INFO_MAGIC_PREFIX);
    if kernel.pae() {
        si.magic[START_INFO_MAGIC_PREFIX.len()] = b'p';
    }
    si.nr_pages = nr_pages;
    si.shared_info = shinfo.maddr();
    si.flags = SIF_PRIVILEGED | SIF_INITDOMAIN;
    if layout.ramdisk_unmapped() {
        si.flags |= SIF_MOD_START_PFN;
    }
    si.pt_base = layout.pt_base();
    si.nr_pt_frames = layout.nr_pt_frames();
    si.mfn_list = layout.p2m.start;
    si.mod_start = layout.mod_start();
    si.mod_len = ramdisk.len() as u64;
    let mut cmd = [0u8; 1024];
    dom0_cmdline(kmod, phys, &mut cmd);
    si.cmd_line.copy_from_slice(&cmd);
    va_slice(
        mem,
        v_start,
        layout.start_info,
        core::mem::size_of::<StartInfo>() as u64,
    )
    .copy_from_slice(si.as_bytes());

    // The domain and its first vCPU.
    let mut d = Domain::new(DOM0, true, nr_vcpus, shinfo.maddr());
    if let Err(e) = crate::sched::domain_init(&d) {
        fatal(format_args!(
            "cannot give Dom0's vCPUs to the scheduler ({e:?})"
        ));
    }
    d.tot_pages = nr_pages;
    d.max_pages = nr_pages;
    d.p2m = p2m;
    let v0 = &mut d.vcpus[0];
    v0.guest_table = l4.maddr();
    v0.regs = TrapFrame {
        rip: kernel.entry(),
        cs: u64::from(RING3_CS64),
        rflags: GUEST_RFLAGS,
        rsp: layout.stack_top(),
        ss: u64::from(RING3_DS),
        rsi: layout.start_info,
        ..TrapFrame::default()
    };
    crate::sched::vcpu_up(&mut d, 0);
    crate::domain::insert(&mut DOMAINS.lock(), d);

    crate::println!("(XEN) Std. Loglevel: {:?}", log::max_level());
    crate::println!("(XEN) *** Serial input to DOM0 (type 'CTRL-a' three times to switch input)");
    log::info!(
        "Dom0 built in {} ms since power-on; {} MiB free",
        crate::time::now_us() / 1000,
        memory::free_frames() >> 8
    );
    crate::sched::schedule_away()
}

/// Writes page-table entries into Dom0's (contiguous) memory region.
struct RegionSink<'a> {
    mem: &'a mut [u8],
    base: Mfn,
}

impl RegionSink<'_> {
    fn entry(&mut self, table: Mfn, index: usize) -> &mut [u8] {
        let off = ((table.0 - self.base.0) * PAGE_SIZE) as usize + index * 8;
        &mut self.mem[off..off + 8]
    }
}

impl FrameSink for RegionSink<'_> {
    fn clear_table(&mut self, mfn: Mfn, _level: PtLevel) {
        let off = ((mfn.0 - self.base.0) * PAGE_SIZE) as usize;
        self.mem[off..off + PAGE_SIZE as usize].fill(0);
    }

    fn write_entry(&mut self, table: Mfn, index: usize, entry: u64) {
        self.entry(table, index)
            .copy_from_slice(&entry.to_le_bytes());
    }
}

/// The bytes of Dom0's bootstrap region at virtual `va` (the region is
/// mapped 1:1 onto the first PFNs, which are contiguous in `mem`).
fn va_slice(mem: &mut [u8], v_start: u64, va: u64, len: u64) -> &mut [u8] {
    let off = (va - v_start) as usize;
    &mut mem[off..off + len as usize]
}
