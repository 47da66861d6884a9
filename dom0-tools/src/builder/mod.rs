//! Dom0's PV domain builder (libxc's `xc_dom_*` for x86 PV): create a
//! domain, give it memory, load an ELF kernel with Xen notes, write its
//! p2m list, `start_info` (console and xenstore rings with their event
//! channels, command line, ramdisk) and bootstrap page tables, pin the L4
//! and set vCPU 0's context. The caller unpauses it.
//!
//! [`plan`] is the pure part (host-tested, on xen-core's planners); the
//! glue below ([`build`], target only) maps the new domain's frames into
//! Dom0 with foreign `mmu_update`s ([`crate::xc::foreign::ForeignMap`])
//! and moves the bytes. Sequence, as `libxl__build_pv` → `xc_dom_*`:
//!
//! 1. `XEN_DOMCTL_createdomain` (paused), `max_mem`;
//! 2. `XENMEM_populate_physmap` of PFNs `0..nr_pages` (Xen writes the M2P
//!    and returns the MFNs: the p2m);
//! 3. `EVTCHNOP_alloc_unbound` (guest ↔ Dom0) for the console and xenstore;
//! 4. map the bootstrap region, zero it, copy kernel, ramdisk, p2m,
//!    `start_info`; the hypercall page (`XEN_DOMCTL_hypercall_init`, or
//!    written by us if Xen does not offer it); write the page tables;
//!    unmap everything (a page table must have no writable mapping);
//! 5. mask every vCPU's events in shared_info (libxc's `shared_info_x86_64`);
//! 6. `MMUEXT_PIN_L4_TABLE` with `foreigndom`, `XEN_DOMCTL_setvcpucontext`.
//!
//! On any failure after creation the domain is destroyed again.
//!
//! Needs `pv_guest_lib::runtime::init` (frame allocator, page tables) and
//! a heap with room for a copy of the kernel file (the ELF parser wants
//! 8-byte alignment, a cpio member has 4): `pv-domains` grows the heap by
//! 16 MiB with `pv_guest_lib::heap::init`.

pub mod acpi;
pub mod bzimage;
pub mod hvm;
pub mod multiboot2;
pub mod plan;
pub mod pvh;

pub use plan::BuildError;

/// What to build.
#[derive(Clone, Copy, Debug)]
pub struct GuestConfig<'a> {
    /// The kernel ELF image.
    pub kernel: &'a [u8],
    /// The ramdisk (empty: none).
    pub ramdisk: &'a [u8],
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Command line.
    pub cmdline: &'a [u8],
    /// vCPUs.
    pub vcpus: u32,
}

/// A built (still paused) domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Built {
    /// Its id.
    pub domid: u16,
    /// Pages it has.
    pub nr_pages: u64,
    /// Machine frame of its console ring.
    pub console_mfn: u64,
    /// The console's event channel, guest side.
    pub console_port: u32,
    /// Machine frame of its xenstore ring.
    pub store_mfn: u64,
    /// The xenstore event channel, guest side.
    pub store_port: u32,
    /// Its L4 (pinned).
    pub l4_mfn: u64,
    /// Entry point.
    pub entry: u64,
    /// Machine frame of its shared info page.
    pub shared_info_frame: u64,
}

#[cfg(target_os = "none")]
pub use glue::build;

#[cfg(target_os = "none")]
mod glue {
    use alloc::vec;
    use alloc::vec::Vec;

    use super::plan::{self, BuildError, StartParams};
    use super::{Built, GuestConfig};
    use crate::xc::{self, foreign::ForeignMap, CreateParams};
    use xen_core::domain_build::pagetable::{FrameSink, PtFrame, PtLevel};
    use xen_core::mm::Mfn;
    use zerocopy::IntoBytes;

    const PAGE: usize = 4096;
    /// `sizeof(struct vcpu_info)` and `XEN_LEGACY_MAX_VCPUS`.
    const VCPU_INFO_SIZE: usize = 64;
    const LEGACY_VCPUS: usize = 32;

    fn hc<T>(what: &'static str, r: Result<T, pv_guest_lib::Errno>) -> Result<T, BuildError> {
        r.map_err(|e| BuildError::Hypercall(what, e))
    }

    /// Builds a domain from `cfg`; it stays paused.
    pub fn build(cfg: &GuestConfig) -> Result<Built, BuildError> {
        // The ELF parser wants its headers 8-byte aligned; a file in the
        // ramdisk is only 4-byte aligned (cpio), so parse a copy.
        let mut words: Vec<u64> = vec![0; cfg.kernel.len().div_ceil(8)];
        words.as_mut_bytes()[..cfg.kernel.len()].copy_from_slice(cfg.kernel);
        let image = &words.as_bytes()[..cfg.kernel.len()];
        let kernel = plan::parse_kernel(image)?;
        let nr_pages = plan::pages_for_mib(cfg.memory_mib);
        let layout = plan::plan(&kernel, cfg.ramdisk.len() as u64, nr_pages)?;
        let domid = hc(
            "createdomain",
            xc::create_domain(&CreateParams {
                max_vcpus: cfg.vcpus.max(1),
                ..CreateParams::default()
            }),
        )?;
        match fill(domid, cfg, &kernel, &layout) {
            Ok(b) => Ok(b),
            Err(e) => {
                let _ = xc::destroy(domid);
                Err(e)
            }
        }
    }

    fn fill(
        domid: u16,
        cfg: &GuestConfig,
        kernel: &xen_core::domain_build::elf::PvKernel,
        l: &plan::Layout,
    ) -> Result<Built, BuildError> {
        let nr_pages = l.nr_pages;
        hc("max_mem", xc::set_max_mem(domid, nr_pages * 4))?;
        let mut p2m: Vec<u64> = (0..nr_pages).collect();
        hc(
            "populate_physmap",
            xc::populate_physmap_exact(domid, &mut p2m),
        )?;
        let console_port = hc(
            "alloc_unbound (console)",
            xc::evtchn_alloc_unbound(domid, 0),
        )?;
        let store_port = hc(
            "alloc_unbound (xenstore)",
            xc::evtchn_alloc_unbound(domid, 0),
        )?;
        let info = hc("getdomaininfo", xc::domain_info(domid))?;
        let pc = plan::pieces(l)?;

        let fill_pages = pc.pages_to_fill as usize;
        let map = hc(
            "mapping the new domain",
            ForeignMap::new(domid, &p2m[..fill_pages]),
        )?;
        let base = map.base() as *mut u8;
        // SAFETY: the window maps `fill_pages` frames of the new domain,
        // writable, contiguously from `base`; the domain is paused and
        // nothing else maps them, so this slice is the only access until
        // `map` is dropped below (the slice does not outlive it).
        let region = unsafe { core::slice::from_raw_parts_mut(base, fill_pages * PAGE) };
        region.fill(0);

        let off = |va: u64| plan::region_offset(l, va).ok_or(BuildError::ShortP2m);
        let k = off(l.kernel.start)?;
        kernel.load_into(&mut region[k..k + l.kernel.len() as usize])?;
        if let Some(pfn) = pc.ramdisk_pfn {
            let at = pfn as usize * PAGE;
            region[at..at + cfg.ramdisk.len()].copy_from_slice(cfg.ramdisk);
        }
        let p = off(l.p2m.start)?;
        region[p..p + p2m.len() * 8].copy_from_slice(p2m.as_bytes());

        if let Some(hp) = kernel.hypercall_page() {
            let pfn = (hp - l.v_start) / PAGE as u64;
            if xc::hypercall_init(domid, p2m[pfn as usize]).is_err() {
                let at = off(hp & !0xfff)?;
                let page: &mut [u8; 4096] = (&mut region[at..at + PAGE])
                    .try_into()
                    .map_err(|_| BuildError::ShortP2m)?;
                hypercall_abi::hypercall::fill_hypercall_page(page);
            }
        }

        let si = plan::start_info(
            l,
            kernel,
            &p2m,
            &StartParams {
                shared_info_maddr: info.shared_info_frame << 12,
                flags: 0,
                store_evtchn: store_port,
                console_evtchn: console_port,
                cmdline: cfg.cmdline,
            },
        )?;
        let s = off(l.start_info)?;
        let sib = si.as_bytes();
        region[s..s + sib.len()].copy_from_slice(sib);

        let mut frames = vec![PtFrame::default(); l.nr_pt_frames() as usize];
        let pt_first = pc.pt_pfn as usize;
        let pt_n = l.nr_pt_frames() as usize;
        let l4 = {
            let mut sink = WindowSink {
                region: &mut *region,
                p2m: &p2m,
                first: pt_first,
                n: pt_n,
            };
            plan::page_tables(l, &p2m, &mut sink, &mut frames)?
        };
        drop(map);

        // libxc's shared_info_x86_64: every vCPU's events masked.
        if let Ok(mut sh) = ForeignMap::new(domid, &[info.shared_info_frame]) {
            if let Some(page) = sh.page(0) {
                for v in 0..LEGACY_VCPUS {
                    page[v * VCPU_INFO_SIZE + 1] = 1;
                }
            }
        } else {
            log::warn!(
                "builder: d{domid}: cannot map shared_info; vCPU events left as Xen set them"
            );
        }

        hc("pin L4", xc::pin_table(domid, 4, l4.0))?;
        let ctx = plan::vcpu_context(l, kernel, l4.0);
        hc("setvcpucontext", xc::set_vcpu_context(domid, 0, &ctx))?;
        Ok(Built {
            domid,
            nr_pages,
            console_mfn: si.console.dom_u().mfn,
            console_port,
            store_mfn: si.store_mfn,
            store_port,
            l4_mfn: l4.0,
            entry: kernel.entry(),
            shared_info_frame: info.shared_info_frame,
        })
    }

    /// Writes page tables into the mapped region: table frames are the
    /// PFNs `first..first + n`, found by their MFN in the p2m.
    struct WindowSink<'a> {
        region: &'a mut [u8],
        p2m: &'a [u64],
        first: usize,
        n: usize,
    }

    impl WindowSink<'_> {
        fn table(&mut self, mfn: Mfn) -> Option<&mut [u8]> {
            let end = (self.first + self.n).min(self.p2m.len());
            let i = self
                .p2m
                .get(self.first..end)?
                .iter()
                .position(|&m| m == mfn.0)?;
            let at = (self.first + i) * PAGE;
            self.region.get_mut(at..at + PAGE)
        }
    }

    impl FrameSink for WindowSink<'_> {
        fn clear_table(&mut self, mfn: Mfn, _level: PtLevel) {
            if let Some(t) = self.table(mfn) {
                t.fill(0);
            }
        }

        fn write_entry(&mut self, table: Mfn, index: usize, entry: u64) {
            if let Some(t) = self.table(table) {
                if let Some(e) = t.get_mut(index * 8..index * 8 + 8) {
                    e.copy_from_slice(&entry.to_le_bytes());
                }
            }
        }
    }
}
