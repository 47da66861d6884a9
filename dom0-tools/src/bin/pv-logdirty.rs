//! Test Dom0: log-dirty mode (`XEN_DOMCTL_shadow_op`) on a PV guest, as a
//! live migration of it uses it.
//!
//! Builds `/boot/domu-dirty` (it writes 16 pages of its memory round
//! after round, see `dom0_tools::pvtest::dirty`) and checks: CLEAN before
//! ENABLE and ENABLE on Dom0 refused (`-EINVAL`); ENABLE, and ENABLE twice
//! refused; CLEAN rounds report the 16 pages dirty (and never the page it
//! does not write), the writes counted as faults, while the guest keeps
//! counting (its write faults were fixed and retried, never bounced: it
//! has no page-fault handler and would crash); a paused guest after CLEAN
//! shows none of them dirty, and its L1 entries for them are
//! write-protected with Oxen's marker (`OXEN_L1E_LOGDIRTY_RO`); a frame
//! Dom0 writes through a writable foreign mapping is dirty once unmapped;
//! a writable mapping the guest rewrites with `update_va_mapping` marks
//! its frame dirty; CLEAN into an unmapped bitmap is `-EFAULT`; OFF gives
//! every entry its R/W back (no marker left) and the guest keeps running;
//! CLEAN after OFF is `-EINVAL`; 200 rounds of ENABLE, CLEAN, OFF while
//! the guest runs on the other CPU; a guest destroyed in log-dirty mode
//! gives back every frame.
//!
//! Ends with `VERDICT: ...` and powers off.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    use alloc::vec::Vec;
    use core::sync::atomic::{AtomicU64, Ordering};

    use dom0_tools::builder::{self, Built, GuestConfig};
    use dom0_tools::pvtest::{dirty, Checks};
    use dom0_tools::ramdisk::Archive;
    use dom0_tools::xc::{self, foreign::ForeignMap};
    use hypercall_abi::domctl::{
        DomctlCmd, ShadowOp, XenDomctl, XenDomctlShadowOp, XenDomctlShadowOpStats,
    };
    use hypercall_abi::errno::Errno as AbiErrno;
    use hypercall_abi::hypercall::Hypercall;
    use hypercall_abi::xen::OXEN_L1E_LOGDIRTY_RO;
    use pv_guest_lib::hypercall::hypercall1;
    use pv_guest_lib::time::{self, NS_PER_MS};
    use pv_guest_lib::{println, runtime, Errno, StartInfo};

    pv_guest_lib::entry!(main);

    const NAME: &str = "pv-logdirty";
    /// Heap pages added after `runtime::init` (the guest kernel's copy).
    const HEAP_EXTRA_PAGES: u64 = 4096;
    /// The guest's memory.
    const GUEST_MIB: u64 = 16;
    /// Bitmap bytes: one bit per guest page.
    const BITMAP: usize = (GUEST_MIB * 256 / 8) as usize;
    /// How long freed memory may take to reach the heap again.
    const FREE_DEADLINE_NS: u64 = 3_000 * NS_PER_MS;
    /// Frames besides the 16 a round may report: the stack the guest's
    /// event upcalls are bounced onto, its page tables.
    const SLACK: usize = 4;
    const PTE_RW: u64 = 1 << 1;
    const PTE_P: u64 = 1;

    fn free_pages() -> u64 {
        xc::physinfo().map(|p| p.free_pages).unwrap_or(0)
    }

    fn wait_free(want: u64) -> u64 {
        let end = time::now_ns() + FREE_DEADLINE_NS;
        loop {
            let f = free_pages();
            if f == want || time::now_ns() > end {
                return f;
            }
            time::sleep_ns(10 * NS_PER_MS);
        }
    }

    fn domctl(d: &mut XenDomctl) -> Result<u64, Errno> {
        // SAFETY: the hypervisor reads and writes back one `xen_domctl`;
        // buffers it points to are live for the call (the callers').
        pv_guest_lib::error::check(unsafe {
            hypercall1(Hypercall::Domctl, d as *mut XenDomctl as u64)
        })
    }

    /// `XEN_DOMCTL_shadow_op`: the pages reported and the stats.
    fn shadow(
        domid: u16,
        op: ShadowOp,
        bitmap: Option<(u64, u64)>,
    ) -> Result<(u64, XenDomctlShadowOpStats), Errno> {
        let mut d = XenDomctl::new(DomctlCmd::ShadowOp, domid);
        let (addr, pages) = bitmap.unwrap_or((0, 0));
        d.set_payload(&XenDomctlShadowOp {
            op: op.raw(),
            dirty_bitmap: addr,
            pages,
            ..Default::default()
        });
        domctl(&mut d)?;
        let r: XenDomctlShadowOp = d.payload();
        Ok((r.pages, r.stats))
    }

    fn bm(bits: &mut [u8; BITMAP]) -> Option<(u64, u64)> {
        Some((bits.as_mut_ptr() as u64, BITMAP as u64 * 8))
    }

    fn dirty_pfns(bits: &[u8]) -> Vec<u64> {
        let mut v = Vec::new();
        for (i, b) in bits.iter().enumerate() {
            for k in 0..8 {
                if b & (1 << k) != 0 {
                    v.push((i * 8 + k) as u64);
                }
            }
        }
        v
    }

    /// The guest's words in its shared_info page (mapped writable: Dom0
    /// sends commands there; the page is reported dirty anyway).
    struct Shared {
        map: ForeignMap,
    }

    impl Shared {
        fn word(&self, i: usize) -> Option<&AtomicU64> {
            let p = self.map.page_ptr(0)?;
            // SAFETY: the mapped shared_info page lives as long as `self`;
            // word `i` of the shared area is an aligned u64 in it, which
            // the guest accesses atomically too.
            Some(unsafe { &*(p.add(dirty::OFFSET as usize + 8 * i) as *const AtomicU64) })
        }

        fn get(&self, i: usize) -> u64 {
            self.word(i).map_or(0, |w| w.load(Ordering::Acquire))
        }

        fn counter(&self) -> u64 {
            self.get(dirty::COUNTER)
        }

        /// Whether the guest's counter moves within ~3 s.
        fn advances(&self) -> (bool, u64, u64) {
            let n0 = self.counter();
            for _ in 0..300 {
                time::sleep_ns(10 * NS_PER_MS);
                let n1 = self.counter();
                if n1 != n0 {
                    return (true, n0, n1);
                }
            }
            (false, n0, self.counter())
        }
    }

    /// What the guest told Dom0.
    #[derive(Clone, Copy, Debug)]
    struct Where {
        first_pfn: u64,
        spare_pfn: u64,
        spare_mfn: u64,
        l1_mfn: u64,
        l1_index: u64,
    }

    /// The guest's L1 entries for its 16 pages and the spare (read
    /// through a read-only foreign mapping: marks nothing dirty).
    fn l1_entries(d: u16, w: &Where) -> Option<Vec<u64>> {
        let m = ForeignMap::new_readonly(d, &[w.l1_mfn]).ok()?;
        let mut page = [0u8; 4096];
        if !m.read_page(0, &mut page) {
            return None;
        }
        let end = (w.l1_index + dirty::PAGES + 1).min(512);
        Some(
            (w.l1_index..end)
                .map(|i| {
                    let o = i as usize * 8;
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&page[o..o + 8]);
                    u64::from_le_bytes(b)
                })
                .collect(),
        )
    }

    fn main(_si: &'static StartInfo) -> ! {
        println!("{NAME}: log-dirty mode of a PV guest (XEN_DOMCTL_shadow_op)");
        let mut c = Checks::new(NAME);
        let _ = pv_guest_lib::console::init_logger(log::LevelFilter::Info);
        if let Err(e) = runtime::init() {
            c.error(format_args!("runtime init: {e}"));
            c.finish();
        }
        c.ok(
            "grow the heap by 16 MiB",
            pv_guest_lib::heap::init(HEAP_EXTRA_PAGES),
        );
        let rd = pv_guest_lib::ramdisk().map(Archive::new);
        let kernel = rd.as_ref().and_then(|a| {
            a.find("/boot/domu-dirty")
                .or_else(|| a.find("domu-dirty"))
                .map(|e| e.data)
        });
        match kernel {
            Some(k) => run(&mut c, k),
            None => c.error(format_args!("no /boot/domu-dirty in the ramdisk")),
        }
        c.finish()
    }

    fn run(c: &mut Checks, kernel: &[u8]) {
        let free0 = free_pages();
        let mut bits = [0u8; BITMAP];
        c.err(
            "log-dirty mode on Dom0 itself",
            shadow(0, ShadowOp::EnableLogdirty, None),
            AbiErrno::EINVAL,
        );
        let Some(b) = c.ok(
            "build the PV guest",
            builder::build(&GuestConfig {
                kernel,
                ramdisk: &[],
                memory_mib: GUEST_MIB,
                cmdline: b"",
                vcpus: 1,
            }),
        ) else {
            return;
        };
        let d = b.domid;
        c.err(
            "CLEAN before log-dirty mode is on",
            shadow(d, ShadowOp::Clean, bm(&mut bits)),
            AbiErrno::EINVAL,
        );
        if let Some(w) = guest_up(c, &b) {
            checks(c, d, &w.0, &w.1, &mut bits);
        }
        // Destroyed while in log-dirty mode: every frame comes back.
        let _ = shadow(d, ShadowOp::EnableLogdirty, None);
        let _ = shadow(d, ShadowOp::Clean, bm(&mut bits));
        c.ok("destroy the guest in log-dirty mode", xc::destroy(d));
        let f = wait_free(free0);
        c.check(
            "a guest destroyed in log-dirty mode gives back every frame",
            f == free0,
            format_args!("free pages {free0} before, {f} after"),
        );
        // The same domain id may come back: its log did not survive.
        if let Some(b2) = c.ok(
            "build another PV guest",
            builder::build(&GuestConfig {
                kernel,
                ramdisk: &[],
                memory_mib: GUEST_MIB,
                cmdline: b"",
                vcpus: 1,
            }),
        ) {
            c.err(
                "CLEAN on a new guest (no log left over)",
                shadow(b2.domid, ShadowOp::Clean, bm(&mut bits)),
                AbiErrno::EINVAL,
            );
            let _ = xc::destroy(b2.domid);
            let f = wait_free(free0);
            c.check(
                "free memory is back exactly",
                f == free0,
                format_args!("free pages {free0} before, {f} after"),
            );
        }
    }

    /// Unpauses the guest and waits for it to say where its pages are.
    fn guest_up(c: &mut Checks, b: &Built) -> Option<(Shared, Where)> {
        let map = c.ok(
            "map the guest's shared_info",
            ForeignMap::new(b.domid, &[b.shared_info_frame]),
        )?;
        let s = Shared { map };
        c.ok("unpause the guest", xc::unpause(b.domid))?;
        let end = time::now_ns() + 10_000 * NS_PER_MS;
        while s.get(dirty::MAGIC) != dirty::MAGIC_VALUE || s.counter() < 10 {
            if time::now_ns() > end {
                c.error(format_args!("the guest never started counting"));
                return None;
            }
            time::sleep_ns(10 * NS_PER_MS);
        }
        let w = Where {
            first_pfn: s.get(dirty::FIRST_PFN),
            spare_pfn: s.get(dirty::SPARE_PFN),
            spare_mfn: s.get(dirty::SPARE_MFN),
            l1_mfn: s.get(dirty::L1_MFN),
            l1_index: s.get(dirty::L1_INDEX),
        };
        c.note(format_args!("guest d{}: {w:x?}", b.domid));
        Some((s, w))
    }

    fn checks(c: &mut Checks, d: u16, s: &Shared, w: &Where, bits: &mut [u8; BITMAP]) {
        let data: Vec<u64> = (w.first_pfn..w.first_pfn + dirty::PAGES).collect();
        if c.ok("ENABLE_LOGDIRTY", shadow(d, ShadowOp::EnableLogdirty, None))
            .is_none()
        {
            return;
        }
        c.err(
            "ENABLE_LOGDIRTY twice",
            shadow(d, ShadowOp::EnableLogdirty, None),
            AbiErrno::EINVAL,
        );
        for round in 0..3 {
            time::sleep_ns(100 * NS_PER_MS);
            *bits = [0; BITMAP];
            let r = shadow(d, ShadowOp::Clean, bm(bits));
            let got = dirty_pfns(bits);
            let all = data.iter().all(|p| got.contains(p));
            c.check(
                "CLEAN: the 16 frames the guest writes are dirty (and little else), the writes counted as faults",
                r.is_ok_and(|(p, s)| {
                    p == BITMAP as u64 * 8 && s.fault_count >= 16 && s.dirty_count >= 16
                }) && all
                    && !got.contains(&w.spare_pfn)
                    && got.len() <= data.len() + SLACK,
                format_args!("round {round}: {r:?}, dirty {got:x?}"),
            );
        }
        let (moving, n0, n1) = s.advances();
        c.check(
            "the guest keeps counting in log-dirty mode (its write faults are retried, not bounced)",
            moving && xc::domain_info(d).is_ok_and(|i| !i.is_shutdown()),
            format_args!("count {n0} then {n1}"),
        );
        // Paused, cleaned: nothing the guest writes is dirty, and its
        // mappings of the pages are protected with the marker.
        let _ = xc::pause(d);
        let _ = shadow(d, ShadowOp::Clean, bm(bits));
        *bits = [0xff; BITMAP];
        let r = shadow(d, ShadowOp::Peek, bm(bits));
        let got = dirty_pfns(bits);
        c.check(
            "PEEK of a paused guest after CLEAN: none of its pages dirty",
            r.is_ok() && !data.iter().any(|p| got.contains(p)) && got.len() <= 2,
            format_args!("{r:?}, dirty {got:x?}"),
        );
        let l1 = l1_entries(d, w);
        let protected = l1.as_ref().is_some_and(|es| {
            !es.is_empty()
                && es[..es.len().min(dirty::PAGES as usize)]
                    .iter()
                    .all(|&e| e & PTE_P != 0 && e & PTE_RW == 0 && e & OXEN_L1E_LOGDIRTY_RO != 0)
        });
        c.check(
            "after CLEAN the guest's writable mappings are read-only with the log-dirty marker",
            protected,
            format_args!("{l1:x?}"),
        );
        // Dom0 writes the spare page through a writable foreign mapping.
        if let Ok(mut m) = ForeignMap::new(d, &[w.spare_mfn]) {
            if let Some(p) = m.page(0) {
                p[8] = 0x5a;
            }
        }
        *bits = [0; BITMAP];
        let r = shadow(d, ShadowOp::Peek, bm(bits));
        let got = dirty_pfns(bits);
        c.check(
            "a frame Dom0 wrote through a foreign mapping is dirty once it is unmapped",
            r.is_ok() && got.contains(&w.spare_pfn),
            format_args!("{r:?}, {got:x?}"),
        );
        c.err(
            "CLEAN into an unmapped bitmap",
            shadow(
                d,
                ShadowOp::Clean,
                Some((0xdead_0000_0000, BITMAP as u64 * 8)),
            ),
            AbiErrno::EFAULT,
        );
        *bits = [0; BITMAP];
        let r = shadow(d, ShadowOp::Peek, bm(bits));
        c.check(
            "a failed CLEAN clears nothing",
            r.is_ok() && dirty_pfns(bits).contains(&w.spare_pfn),
            format_args!("{r:?}"),
        );
        let _ = shadow(d, ShadowOp::Clean, bm(bits));
        // The guest rewrites its mapping of the spare page (writable).
        let _ = xc::unpause(d);
        if let Some(cmd) = s.word(dirty::CMD) {
            cmd.store(dirty::CMD_REMAP, Ordering::Release);
        }
        let end = time::now_ns() + 3_000 * NS_PER_MS;
        while s.get(dirty::ACK) != dirty::CMD_REMAP && time::now_ns() < end {
            time::sleep_ns(10 * NS_PER_MS);
        }
        *bits = [0; BITMAP];
        let r = shadow(d, ShadowOp::Peek, bm(bits));
        let got = dirty_pfns(bits);
        c.check(
            "a writable mapping made with update_va_mapping marks its frame dirty",
            s.get(dirty::ACK) == dirty::CMD_REMAP && r.is_ok() && got.contains(&w.spare_pfn),
            format_args!("ack {:#x}, {r:?}, {got:x?}", s.get(dirty::ACK)),
        );
        c.ok("log-dirty OFF", shadow(d, ShadowOp::Off, None));
        let (moving, n0, n1) = s.advances();
        c.check(
            "the guest keeps running after log-dirty mode",
            moving,
            format_args!("count {n0} then {n1}"),
        );
        let l1 = l1_entries(d, w);
        let restored = l1.as_ref().is_some_and(|es| {
            !es.is_empty()
                && es.iter().all(|&e| e & OXEN_L1E_LOGDIRTY_RO == 0)
                && es[..es.len().min(dirty::PAGES as usize)]
                    .iter()
                    .all(|&e| e & (PTE_P | PTE_RW) == PTE_P | PTE_RW)
        });
        c.check(
            "OFF gives every mapping its R/W back, no marker left",
            restored,
            format_args!("{l1:x?}"),
        );
        c.err(
            "CLEAN after OFF",
            shadow(d, ShadowOp::Clean, bm(bits)),
            AbiErrno::EINVAL,
        );
        // On, cleaned and off again and again while the guest writes on
        // the other CPU: faults racing CLEAN and OFF are retried.
        let mut refused = 0u32;
        for _ in 0..200 {
            refused += u32::from(shadow(d, ShadowOp::EnableLogdirty, None).is_err());
            refused += u32::from(shadow(d, ShadowOp::Clean, bm(bits)).is_err());
            refused += u32::from(shadow(d, ShadowOp::Off, None).is_err());
        }
        let (moving, n0, n1) = s.advances();
        c.check(
            "200 rounds of ENABLE, CLEAN, OFF while the guest writes: it keeps running",
            refused == 0 && moving && xc::domain_info(d).is_ok_and(|i| !i.is_shutdown()),
            format_args!("{refused} refused, count {n0} then {n1}"),
        );
    }
}
