//! Saved-domain images and migration streams, as `xl restore` and the
//! receiving end of `xl migrate` read them (dom0-tools `migration`): xl's
//! header and config (`image::read_config`), libxl's records, libxc's
//! stream v2, into a fake new HVM domain (`image::restore_hvm`) or a fake
//! new PV domain (`pv::restore_pv`).
//!
//! Input: a selector byte (bit 0: PV or HVM), then the image. Checks: no
//! panic; errors are one line; the HVM restore populates a frame at most
//! once and writes only populated frames, whole pages; device state
//! (params, context, emulator) is applied only to an image read to its
//! end; the PV restore writes, reads and pins only frames it populated,
//! never populates a pfn past the p2m limit, and sets shared info and
//! the vCPUs only after the whole image was read.
#![no_main]

use std::collections::BTreeSet;

use dom0_tools::migration::image::{self, HvmRestoreSide, Source, SrError};
use dom0_tools::migration::pv::{self, Ports, PvRestoreSide};
use dom0_tools::migration::stream::PAGE_SIZE;
use hypercall_abi::arch_x86::VcpuGuestContext;
use libfuzzer_sys::fuzz_target;

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

#[derive(Default)]
struct Hvm {
    populated: BTreeSet<u64>,
    written: u64,
    applied: bool,
}

impl HvmRestoreSide for Hvm {
    fn populate(&mut self, gfns: &[u64]) -> Result<(), SrError> {
        for &g in gfns {
            assert!(self.populated.insert(g), "gfn {g:#x} populated twice");
        }
        Ok(())
    }
    fn write_pages(&mut self, gfns: &[u64], data: &[u8]) -> Result<(), SrError> {
        assert_eq!(data.len(), gfns.len() * PAGE_SIZE, "partial pages");
        for g in gfns {
            assert!(
                self.populated.contains(g),
                "gfn {g:#x} written before populated"
            );
        }
        self.written += gfns.len() as u64;
        Ok(())
    }
    fn set_hvm_params(&mut self, _params: &[(u64, u64)]) -> Result<(), SrError> {
        self.applied = true;
        Ok(())
    }
    fn set_hvm_context(&mut self, _ctx: &[u8]) -> Result<(), SrError> {
        self.applied = true;
        Ok(())
    }
    fn set_emulator_state(&mut self, _state: &[u8]) -> Result<(), SrError> {
        self.applied = true;
        Ok(())
    }
    fn check_cpu_policy(&mut self, policy: &[(u32, u32, [u32; 4])]) -> Result<(), SrError> {
        // This host offers nothing in leaf 7.
        if policy.iter().any(|&(l, _, r)| l == 7 && r != [0; 4]) {
            return Err(SrError::Unsupported("leaf 7 not offered here".into()));
        }
        Ok(())
    }
}

const MAX_PFN: u64 = 4096;

#[derive(Default)]
struct Pv {
    /// Machine frames populated, by mfn.
    mfns: BTreeSet<u64>,
    next: u64,
    pfns: BTreeSet<u64>,
    late: bool,
}

impl PvRestoreSide for Pv {
    fn populate(&mut self, pfns: &[u64]) -> Result<Vec<u64>, SrError> {
        let mut out = Vec::new();
        for &p in pfns {
            assert!(p < MAX_PFN, "pfn {p:#x} past the limit");
            assert!(self.pfns.insert(p), "pfn {p:#x} populated twice");
            self.next += 1;
            let m = 0x10_0000 + self.next * 3;
            self.mfns.insert(m);
            out.push(m);
        }
        Ok(out)
    }
    fn write_frames(&mut self, mfns: &[u64], data: &[u8]) -> Result<(), SrError> {
        assert_eq!(data.len(), mfns.len() * PAGE_SIZE, "partial frames");
        for m in mfns {
            assert!(self.mfns.contains(m), "mfn {m:#x} is not the domain's");
        }
        Ok(())
    }
    fn read_frame(&mut self, mfn: u64) -> Result<Vec<u8>, SrError> {
        assert!(
            self.mfns.contains(&mfn),
            "read mfn {mfn:#x}, not the domain's"
        );
        Ok(vec![0; PAGE_SIZE])
    }
    fn pin(&mut self, mfn: u64, level: u8) -> Result<(), SrError> {
        assert!(
            self.mfns.contains(&mfn),
            "pinned mfn {mfn:#x}, not the domain's"
        );
        assert!((1..=4).contains(&level), "pin level {level}");
        Ok(())
    }
    fn update_shared_info(&mut self, f: &mut dyn FnMut(&mut [u8])) -> Result<u64, SrError> {
        let mut page = vec![0u8; PAGE_SIZE];
        f(&mut page);
        self.late = true;
        Ok(0x7777 << 12)
    }
    fn set_vcpu_context(&mut self, _id: u32, _ctx: &VcpuGuestContext) -> Result<(), SrError> {
        self.late = true;
        Ok(())
    }
}

fn one_line(e: &SrError) {
    let s = e.to_string();
    assert!(!s.contains('\n') && !s.is_empty(), "error {s:?}");
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, image_bytes)) = data.split_first() else {
        return;
    };
    let mut src = Reader(image_bytes);
    // The config xl's header carries (a restore starts with it); an
    // image without one is read from the libxl header on.
    match image::read_config(&mut src) {
        Ok(cfg) => assert!(cfg.len() <= image_bytes.len()),
        Err(e) => {
            one_line(&e);
            src = Reader(image_bytes);
        }
    }
    if sel & 1 == 0 {
        let mut d = Hvm::default();
        let mut frames = 0;
        let r = image::restore_hvm(&mut src, &mut d, &mut |n| frames = n);
        match r {
            Ok(stats) => {
                assert_eq!(stats.pages, d.written);
                assert!(d.applied);
            }
            Err(e) => {
                one_line(&e);
                assert!(!d.applied, "device state applied from a failed image: {e}");
            }
        }
    } else {
        let mut d = Pv::default();
        let ports = Ports {
            store_evtchn: 1,
            console_evtchn: 2,
        };
        match pv::restore_pv(&mut src, &mut d, ports, MAX_PFN, &mut |_| {}) {
            Ok(r) => {
                assert!(r.max_pfn <= MAX_PFN);
                assert!(d.mfns.contains(&r.store_mfn) && d.mfns.contains(&r.console_mfn));
            }
            Err(e) => {
                one_line(&e);
                if e == SrError::Truncated {
                    assert!(!d.late, "a truncated image set shared info or vCPUs");
                }
            }
        }
    }
});
