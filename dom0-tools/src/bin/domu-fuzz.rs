//! The hostile fuzzing PV guest (issue 8): with a seed and a call count
//! from its command line (`seed=S calls=N`, xl.cfg's `extra=`), it
//! throws hypercalls at the hypervisor in four classes, drawn by
//! [`dom0_tools::hostile::gen`]:
//!
//! - `random`: random hypercall numbers (0..64 and far beyond), sub-ops
//!   and arguments (pointers into the hypervisor's range, non-canonical,
//!   unmapped, into its own page tables, into a scratch buffer);
//! - `mmu`: crafted `mmu_update` / `update_va_mapping` / `mmuext_op`:
//!   foreign frames, self-maps, L1..L4 type confusion, writable maps of
//!   page tables, recursive and hypervisor-slot L4 entries, pin/unpin
//!   misuse, bad counts;
//! - `grant`: bad references, double unmaps, maps of its own and of other
//!   domains' references, `setup_table` abuse, copies with bad offsets,
//!   and a revocation race: vCPU 1 rewrites the grant entries (ends
//!   access, flips flags) while vCPU 0 maps and unmaps them;
//! - `evtchn`: port exhaustion (`alloc_unbound` until it fails), binds to
//!   other domains' ports, sends/closes/unmasks of closed and
//!   out-of-range ports, `bind_virq`/`bind_ipi` abuse, FIFO
//!   `init_control` with bad frames.
//!
//! It then prints how each class was answered (the `fuzz:` report of
//! [`dom0_tools::hostile`]) and waits to be destroyed. Its Dom0
//! (`dom0-fuzz`) relays the report and checks that nothing else was
//! disturbed.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    extern crate alloc;

    use alloc::vec::Vec;
    use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use dom0_tools::hostile::gen::{self, Draw, EvtDraw, GrantDraw, Layout, MmuDraw};
    use dom0_tools::hostile::{answer, grant_answer, Rng, Tally, FATAL_SKIPPED};
    use hypercall_abi::event_channel::{
        EvtchnAllocUnbound, EvtchnBindInterdomain, EvtchnBindIpi, EvtchnBindVirq,
        EvtchnInitControl, EvtchnStatus,
    };
    use hypercall_abi::grant_table::{
        GnttabCopy, GnttabCopyPtr, GnttabMapGrantRef, GnttabSetupTable, GnttabUnmapGrantRef,
    };
    use hypercall_abi::xen::{MmuUpdate, MmuextOp};
    use pv_guest_lib::hypercall::hypercall_raw;
    use pv_guest_lib::mm::{self, PteFlags};
    use pv_guest_lib::{frame, println, runtime, smp, time, StartInfo};

    pv_guest_lib::entry!(main);

    /// Hypercall numbers.
    const MMU_UPDATE: u64 = 1;
    const MEMORY_OP: u64 = 12;
    const UPDATE_VA_MAPPING: u64 = 14;
    const GRANT_TABLE_OP: u64 = 20;
    const MMUEXT_OP: u64 = 26;
    const EVENT_CHANNEL_OP: u64 = 32;
    const DOMID_SELF: u16 = 0x7ff0;

    /// Scratch buffer pages (the hypervisor may write into them), then an
    /// unmapped guard page.
    const SCRATCH_PAGES: u64 = 4;
    const SCRATCH_VA: u64 = 0xffff_c000_0040_0000;
    /// What the mmu class's own L1 maps.
    const FUZZ_VA: u64 = 0xffff_c000_0060_0000;
    /// What the grant class's L1 maps (grant mappings land here).
    const GRANT_VA: u64 = 0xffff_c000_0080_0000;
    /// Our grant table.
    const GT_VA: u64 = 0xffff_c000_00a0_0000;
    /// An L4 slot nothing of ours uses (0xffff_a000_0000_0000).
    const FUZZ_L4_SLOT: u64 = 320;
    /// Ports looked at for the ones we must keep.
    const PORTS_SCANNED: u32 = 64;
    /// Live handles / ports the fuzz keeps at most.
    const KEEP: usize = 48;

    /// Every how many calls of the random class a progress line goes out.
    const PROGRESS_EVERY: u64 = 100_000;

    fn raw(nr: u64, args: [u64; 5]) -> i64 {
        // SAFETY: every call the fuzz makes was drawn by the generators,
        // which aim only at the hypervisor: the memory they let it write
        // is the scratch buffer (guarded), the fuzz-only L1 tables and
        // L4 slot, grant mappings in the grant L1's range, or the op
        // structs on our stack passed with a count of 1; calls that would
        // change our own execution state are never drawn (see
        // `gen::SELF_DESTRUCTIVE`).
        unsafe { hypercall_raw(nr, args) }
    }

    fn addr<T>(v: &mut T) -> u64 {
        v as *mut T as u64
    }

    fn read_entry(table_mfn: u64, index: u64) -> Option<u64> {
        let va = frame::direct_va(frame::mfn_to_pfn(table_mfn)?)?;
        // SAFETY: the direct map maps every frame of ours, page tables
        // read-only; index < 512 keeps the read inside the page.
        Some(unsafe { ((va + (index & 511) * 8) as *const u64).read_volatile() })
    }

    fn table_va(mfn: u64) -> u64 {
        frame::mfn_to_pfn(mfn)
            .and_then(frame::direct_va)
            .unwrap_or(SCRATCH_VA)
    }

    /// `trace`: print each random-class call before making it (to find
    /// the call that did something, from the console's last lines).
    static TRACE: AtomicBool = AtomicBool::new(false);

    fn args(seed: &mut u64, calls: &mut u64, si: &StartInfo) {
        for w in si.cmd_line().split_whitespace() {
            if w == "trace" {
                TRACE.store(true, Ordering::Relaxed);
            }
            if let Some(v) = w.strip_prefix("seed=") {
                *seed = v.parse().unwrap_or(*seed);
            }
            if let Some(v) = w.strip_prefix("calls=") {
                *calls = v.parse().unwrap_or(*calls);
            }
        }
    }

    /// The race's state: vCPU 1 rewrites `refs`' entries while set.
    static RACING: AtomicBool = AtomicBool::new(false);
    static RACER_DONE: AtomicBool = AtomicBool::new(false);
    static RACE_SEED: AtomicU64 = AtomicU64::new(0);
    static RACE_WRITES: AtomicU64 = AtomicU64::new(0);
    /// (domid << 32) | first scratch mfn, for the racer's entries.
    static RACE_TARGET: AtomicU64 = AtomicU64::new(0);
    /// The first of the four grant references the racer rewrites.
    static RACE_REF0: AtomicU64 = AtomicU64::new(8);

    fn grant_entry(r: u32) -> &'static AtomicU64 {
        // SAFETY: GT_VA maps our one-frame grant table (512 v1 entries of
        // 8 bytes, naturally aligned, shared with the hypervisor, which
        // itself only ever accesses them atomically); r < 512.
        unsafe { &*((GT_VA + u64::from(r & 511) * 8) as *const AtomicU64) }
    }

    /// vCPU 1 during the grant class: ends access to the fuzz's grants,
    /// grants them again, flips their flags to read-only, transitive,
    /// junk, all under vCPU 0's maps and unmaps.
    fn racer(_me: u32) -> ! {
        let mut r = Rng::new(RACE_SEED.load(Ordering::Acquire));
        let t = RACE_TARGET.load(Ordering::Acquire);
        let (domid, mfn) = (t >> 32, t & 0xffff_ffff);
        while RACING.load(Ordering::Acquire) {
            let gref = (RACE_REF0.load(Ordering::Relaxed) + r.below(4)) as u32;
            let flags: u64 = r.pick(&[0, 1, 1, 1 | 4, 3, 2, 1 | 8 | 16, 0xffff]);
            let dom = if r.one_in(8) { r.below(0x8000) } else { domid };
            let frame = mfn + r.below(4);
            let v = flags | (dom << 16) | (frame << 32);
            let e = grant_entry(gref);
            if r.one_in(2) {
                e.store(v, Ordering::SeqCst);
            } else {
                // What a guest's gnttab_end_foreign_access does: clear
                // the flags unless the hypervisor marked it in use.
                let old = e.load(Ordering::SeqCst);
                let _ = e.compare_exchange(old, old & !0xffff, Ordering::SeqCst, Ordering::SeqCst);
            }
            RACE_WRITES.fetch_add(1, Ordering::Relaxed);
            core::hint::spin_loop();
        }
        RACER_DONE.store(true, Ordering::Release);
        let _ = smp::down(1);
        loop {
            let _ = pv_guest_lib::xen::sched_block();
        }
    }

    struct Fuzz {
        r: Rng,
        l: Layout,
        t: Tally,
        /// Live grant mappings: (handle, host_addr, still mapped).
        handles: Vec<(u32, u64, bool)>,
        /// Our open fuzz ports.
        ports: Vec<u32>,
        closed: Option<u32>,
        /// Crafted frames we pinned.
        pinned: Vec<u64>,
        ldt_set: bool,
    }

    impl Fuzz {
        fn refill_scratch(&mut self) {
            let off = self.r.below(self.l.scratch_len / 8 - 8) * 8;
            for i in 0..8 {
                let v = self.r.next_u64();
                // SAFETY: inside the scratch buffer (off + 64 <= len),
                // which is ours, writable and used for nothing else.
                unsafe { ((SCRATCH_VA + off + i * 8) as *mut u64).write_volatile(v) };
            }
        }

        fn random(&mut self) {
            self.refill_scratch();
            match gen::random_call(&mut self.r, &self.l) {
                Draw::Call { nr, args } => {
                    if TRACE.load(Ordering::Relaxed) {
                        println!("domu-fuzz: call {nr} {args:x?}");
                    }
                    let a = answer(raw(nr, args));
                    self.t.add("random", &a);
                }
                Draw::Skip => self.t.add("random", FATAL_SKIPPED),
            }
        }

        fn mmu(&mut self) {
            match gen::mmu_call(&mut self.r, &self.l) {
                MmuDraw::Update {
                    ptr,
                    val,
                    foreigndom,
                } => {
                    let mut req = MmuUpdate { ptr, val };
                    let mut done = 0u32;
                    let rc = raw(
                        MMU_UPDATE,
                        [addr(&mut req), 1, addr(&mut done), foreigndom, 0],
                    );
                    self.t.add("mmu", &answer(rc));
                }
                MmuDraw::BadBatch { reqs, count } => {
                    let mut done = 0u32;
                    let rc = raw(MMU_UPDATE, [reqs, count, addr(&mut done), 0x7ff0, 0]);
                    self.t.add("mmu", &answer(rc));
                }
                MmuDraw::UpdateVa { va, val, flags } => {
                    let rc = raw(UPDATE_VA_MAPPING, [va, val, flags, 0, 0]);
                    self.t.add("mmu", &answer(rc));
                }
                MmuDraw::Ext { cmd, arg1, arg2 } => {
                    let mut op = MmuextOp {
                        cmd,
                        _pad4: 0,
                        arg1,
                        arg2,
                    };
                    let mut done = 0u32;
                    let rc = raw(MMUEXT_OP, [addr(&mut op), 1, addr(&mut done), 0x7ff0, 0]);
                    self.t.add("mmu", &answer(rc));
                    if rc >= 0 {
                        match cmd {
                            0..=3 => self.pinned.push(arg1),
                            4 => self.pinned.retain(|&m| m != arg1),
                            13 => self.ldt_set = true,
                            _ => {}
                        }
                    }
                }
                MmuDraw::Skip => self.t.add("mmu", FATAL_SKIPPED),
            }
        }

        /// Puts the fuzz-only tables back: every fuzz L1 entry and the
        /// fuzz L4 slot cleared, pins dropped, no LDT.
        fn mmu_cleanup(&mut self) {
            for i in 0..512u64 {
                let mut req = MmuUpdate {
                    ptr: (self.l.fuzz_l1_mfn << 12) | (i * 8),
                    val: 0,
                };
                let mut done = 0u32;
                raw(MMU_UPDATE, [addr(&mut req), 1, addr(&mut done), 0x7ff0, 0]);
            }
            let mut req = MmuUpdate {
                ptr: (self.l.pt_mfns[0] << 12) | (FUZZ_L4_SLOT * 8),
                val: 0,
            };
            let mut done = 0u32;
            raw(MMU_UPDATE, [addr(&mut req), 1, addr(&mut done), 0x7ff0, 0]);
            for m in core::mem::take(&mut self.pinned) {
                let mut op = MmuextOp {
                    cmd: 4,
                    _pad4: 0,
                    arg1: m,
                    arg2: 0,
                };
                raw(MMUEXT_OP, [addr(&mut op), 1, addr(&mut done), 0x7ff0, 0]);
            }
            if self.ldt_set {
                let _ = pv_guest_lib::mmu::set_ldt(0, 0);
            }
        }

        fn grant(&mut self) {
            let d = gen::grant_call(&mut self.r, &self.l, self.handles.len());
            if TRACE.load(Ordering::Relaxed) {
                println!("domu-fuzz: call {d:x?}");
            }
            match d {
                GrantDraw::Map {
                    dom,
                    gref,
                    flags,
                    host_addr,
                } => {
                    // Our entry there, as it is now: a present one (a grant
                    // mapping: nothing else is mapped there) would be
                    // dropped implicitly.
                    let slot = self.l.grant_slot(host_addr, flags);
                    if slot.is_some_and(|va| self.slot_pte(va) & 1 != 0) {
                        self.t.add("grant", FATAL_SKIPPED);
                        return;
                    }
                    let mut op = GnttabMapGrantRef {
                        host_addr,
                        flags,
                        r#ref: gref,
                        dom,
                        ..Default::default()
                    };
                    let rc = raw(GRANT_TABLE_OP, [0, addr(&mut op), 1, 0, 0]);
                    self.t.add("grant", &grant_answer(rc, op.status));
                    if rc == 0 && op.status == 0 {
                        if self.handles.len() >= KEEP {
                            self.handles.retain(|h| h.2);
                        }
                        if self.handles.len() >= KEEP {
                            let (h, a, _) = self.handles.remove(0);
                            self.unmap(h, a);
                        }
                        self.handles.push((op.handle, host_addr, true));
                    }
                }
                GrantDraw::Unmap {
                    slot,
                    handle,
                    host_addr,
                } => {
                    let (h, a) = match slot.and_then(|s| self.handles.get(s).copied()) {
                        Some((h, a, _)) => (h, if host_addr == 0 { 0 } else { a }),
                        None => (handle, host_addr),
                    };
                    let ok = self.unmap(h, a);
                    if ok {
                        for e in self.handles.iter_mut().filter(|e| e.0 == h) {
                            e.2 = false;
                        }
                    }
                }
                GrantDraw::Setup {
                    dom,
                    nr_frames,
                    list,
                } => {
                    let mut op = GnttabSetupTable {
                        dom,
                        nr_frames,
                        frame_list: list,
                        ..Default::default()
                    };
                    let rc = raw(GRANT_TABLE_OP, [2, addr(&mut op), 1, 0, 0]);
                    self.t.add("grant", &grant_answer(rc, op.status));
                }
                GrantDraw::Copy {
                    src_dom,
                    src,
                    src_off,
                    dst_dom,
                    dst,
                    dst_off,
                    len,
                    flags,
                } => {
                    let mut op = GnttabCopy {
                        source: GnttabCopyPtr {
                            u: src,
                            domid: src_dom,
                            offset: src_off,
                            _pad12: 0,
                        },
                        dest: GnttabCopyPtr {
                            u: dst,
                            domid: dst_dom,
                            offset: dst_off,
                            _pad12: 0,
                        },
                        len,
                        flags,
                        status: 0,
                        _pad38: 0,
                    };
                    let rc = raw(GRANT_TABLE_OP, [5, addr(&mut op), 1, 0, 0]);
                    self.t.add("grant", &grant_answer(rc, op.status));
                }
                GrantDraw::Other { cmd, count } => {
                    self.refill_scratch();
                    let rc = raw(GRANT_TABLE_OP, [cmd, SCRATCH_VA, count, 0, 0]);
                    self.t.add("grant", &answer(rc));
                }
            }
        }

        /// One tallied unmap; true if it worked.
        fn unmap(&mut self, handle: u32, host_addr: u64) -> bool {
            let mut op = GnttabUnmapGrantRef {
                host_addr,
                handle,
                ..Default::default()
            };
            let rc = raw(GRANT_TABLE_OP, [1, addr(&mut op), 1, 0, 0]);
            self.t.add("grant", &grant_answer(rc, op.status));
            rc == 0 && op.status == 0
        }

        /// The L1 entry that maps `va`, a grant slot of ours (the grant
        /// L1's range or the scratch guard page).
        fn slot_pte(&self, va: u64) -> u64 {
            let (table, base) = if va >= GRANT_VA {
                (self.l.grant_l1_mfn, GRANT_VA)
            } else {
                (self.l.pt_mfns[3], va & !0x1f_ffff)
            };
            // Unreadable: treat as present (skip).
            read_entry(table, (va - base) >> 12).unwrap_or(1)
        }

        fn evtchn_op<T>(&mut self, cmd: u64, op: &mut T) -> i64 {
            let rc = raw(EVENT_CHANNEL_OP, [cmd, addr(op), 0, 0, 0]);
            self.t.add("evtchn", &answer(rc));
            rc
        }

        fn keep_port(&mut self, p: u32) {
            if self.ports.len() >= KEEP {
                let old = self.ports.remove(0);
                self.close(old);
            }
            self.ports.push(p);
        }

        fn close(&mut self, p: u32) {
            let mut port = p;
            if self.evtchn_op(3, &mut port) >= 0 {
                self.closed = Some(p);
                self.ports.retain(|&q| q != p);
            }
        }

        fn evtchn(&mut self) {
            let live = if self.ports.is_empty() {
                None
            } else {
                Some(self.ports[self.r.below(self.ports.len() as u64) as usize])
            };
            match gen::evtchn_call(&mut self.r, &self.l, live, self.closed) {
                EvtDraw::Exhaust => {
                    let mut got = Vec::new();
                    loop {
                        let mut op = EvtchnAllocUnbound {
                            dom: DOMID_SELF,
                            remote_dom: self.l.domid,
                            port: 0,
                        };
                        if self.evtchn_op(6, &mut op) < 0 || got.len() >= 1 << 17 {
                            break;
                        }
                        got.push(op.port);
                    }
                    for p in got {
                        self.close(p);
                    }
                }
                EvtDraw::AllocUnbound { dom, remote } => {
                    let mut op = EvtchnAllocUnbound {
                        dom,
                        remote_dom: remote,
                        port: 0,
                    };
                    if self.evtchn_op(6, &mut op) >= 0 && (dom == DOMID_SELF || dom == self.l.domid)
                    {
                        self.keep_port(op.port);
                    }
                }
                EvtDraw::BindInterdomain { dom, port } => {
                    let mut op = EvtchnBindInterdomain {
                        remote_dom: dom,
                        remote_port: port,
                        local_port: 0,
                        ..Default::default()
                    };
                    if self.evtchn_op(0, &mut op) >= 0 {
                        self.keep_port(op.local_port);
                    }
                }
                EvtDraw::BindVirq { virq, vcpu } => {
                    let mut op = EvtchnBindVirq {
                        virq,
                        vcpu,
                        port: 0,
                    };
                    if self.evtchn_op(1, &mut op) >= 0 {
                        self.keep_port(op.port);
                    }
                }
                EvtDraw::BindIpi { vcpu } => {
                    let mut op = EvtchnBindIpi { vcpu, port: 0 };
                    if self.evtchn_op(7, &mut op) >= 0 {
                        self.keep_port(op.port);
                    }
                }
                EvtDraw::OnPort { cmd, port, extra } => match cmd {
                    3 => self.close(port),
                    5 => {
                        let mut op = EvtchnStatus {
                            dom: DOMID_SELF,
                            port,
                            ..Default::default()
                        };
                        self.evtchn_op(5, &mut op);
                    }
                    8 | 13 => {
                        let mut op = [port, extra];
                        self.evtchn_op(u64::from(cmd), &mut op);
                    }
                    _ => {
                        let mut p = port;
                        self.evtchn_op(u64::from(cmd), &mut p);
                    }
                },
                EvtDraw::InitControl { gfn, offset, vcpu } => {
                    let mut op = EvtchnInitControl {
                        control_gfn: gfn,
                        offset,
                        vcpu,
                        ..Default::default()
                    };
                    self.evtchn_op(11, &mut op);
                }
                EvtDraw::ExpandArray { gfn } => {
                    let mut g = gfn;
                    self.evtchn_op(12, &mut g);
                }
                EvtDraw::Reset { dom } => {
                    let mut d = dom;
                    self.evtchn_op(10, &mut d);
                }
                EvtDraw::Skip => self.t.add("evtchn", FATAL_SKIPPED),
            }
        }
    }

    /// Sets up the layout the generators aim with: the scratch buffer and
    /// its guard, the fuzz L1s, crafted frames, our grant table and the
    /// grants the fuzz uses, the ports we keep.
    fn setup(si: &StartInfo) -> Result<Layout, &'static str> {
        let mut l = Layout::default();
        let xs = pv_guest_lib::domu::connect(si).map_err(|_| "xenstore")?;
        let mut xs = xs;
        l.domid = pv_guest_lib::domu::identity(&mut xs)
            .domid
            .ok_or("no domid in xenstore")?;
        let scratch = frame::alloc_frames(SCRATCH_PAGES, 1).map_err(|_| "scratch frames")?;
        for i in 0..SCRATCH_PAGES as usize {
            let mfn = frame::pfn_to_mfn(scratch.pfn + i as u64).ok_or("scratch mfn")?;
            l.scratch_pfns[i] = scratch.pfn + i as u64;
            l.scratch_mfns[i] = mfn;
            frame::map_kernel(SCRATCH_VA + i as u64 * 4096, mfn, PteFlags::KERNEL_RW)
                .map_err(|_| "map scratch")?;
        }
        l.scratch_va = SCRATCH_VA;
        // Every frame we own (from our p2m), for the foreign guesses.
        let mut own: Vec<u64> = (0..si.nr_pages).filter_map(frame::pfn_to_mfn).collect();
        own.sort_unstable();
        l.own_mfns = own;
        l.scratch_len = SCRATCH_PAGES * 4096;
        let l4 = frame::kernel_l4();
        let l3 = read_entry(l4, (SCRATCH_VA >> 39) & 511).ok_or("l3")? >> 12 & 0xff_ffff_ffff;
        let l2 = read_entry(l3, (SCRATCH_VA >> 30) & 511).ok_or("l2")? >> 12 & 0xff_ffff_ffff;
        let l1 = read_entry(l2, (SCRATCH_VA >> 21) & 511).ok_or("l1")? >> 12 & 0xff_ffff_ffff;
        l.pt_mfns = [l4, l3, l2, l1];
        l.pt_vas = l.pt_mfns.map(table_va);
        l.fuzz_l1_mfn = frame::with_pt(|p| mm::ensure_l1(p, l4, FUZZ_VA)).map_err(|_| "fuzz L1")?;
        l.fuzz_va = FUZZ_VA;
        l.grant_l1_mfn =
            frame::with_pt(|p| mm::ensure_l1(p, l4, GRANT_VA)).map_err(|_| "grant L1")?;
        l.grant_va = GRANT_VA;
        l.fuzz_l4_slot = FUZZ_L4_SLOT;
        // XENMEM_maximum_ram_page.
        let max = raw(MEMORY_OP, [2, 0, 0, 0, 0]);
        l.max_mfn = if max > 0 { max as u64 } else { 0x8_0000 };
        // Crafted frames: zeros; foreign entries; a recursive entry to
        // our L4; hypervisor-slot entries; a writable entry to a live
        // L1; random bits. Read-only from here on.
        let mut r = Rng::new(0x5eed);
        for i in 0..l.crafted_mfns.len() {
            let f = frame::alloc_frame().map_err(|_| "crafted frame")?;
            let words: Vec<u64> = (0..512u64)
                .map(|j| match i {
                    0 => 0,
                    1 => (l.foreign_mfn(&mut r) << 12) | 0x67,
                    2 if j % 8 == 0 => (l4 << 12) | 0x25,
                    3 if gen::HYPERVISOR_SLOTS.contains(&j) => (l3 << 12) | 0x67,
                    4 if j % 16 == 0 => (l1 << 12) | 0x67,
                    5 => r.next_u64(),
                    _ => 0,
                })
                .collect();
            for (j, w) in words.iter().enumerate() {
                // SAFETY: a frame just allocated to us, direct-mapped
                // writable; j < 512.
                unsafe { ((f.va + j as u64 * 8) as *mut u64).write_volatile(*w) };
            }
            frame::set_direct_writable(f.pfn, false).map_err(|_| "crafted read-only")?;
            l.crafted_mfns[i] = f.mfn;
        }
        // Our grant table, and the fuzz's grants (scratch frames, to
        // ourselves, two read-only).
        let mut gt = pv_guest_lib::grant::GrantTable::setup(1, GT_VA).map_err(|_| "grant table")?;
        for i in 0..4 {
            l.grant_refs[i] = gt
                .grant_access(l.domid, l.scratch_mfns[i], i >= 2)
                .map_err(|_| "grant")?;
        }
        // The table stays set up and mapped (GT_VA) for the rest of our life.
        // The ports we live on: every one open now.
        let mut n = 0;
        for p in 1..PORTS_SCANNED {
            let mut st = EvtchnStatus {
                dom: DOMID_SELF,
                port: p,
                ..Default::default()
            };
            let rc = raw(EVENT_CHANNEL_OP, [5, addr(&mut st), 0, 0, 0]);
            if rc == 0 && st.status != 0 && n < l.protected_ports.len() {
                l.protected_ports[n] = p;
                n += 1;
            }
        }
        Ok(l)
    }

    fn main(si: &'static StartInfo) -> ! {
        let (mut seed, mut calls) = (1u64, 200_000u64);
        args(&mut seed, &mut calls, si);
        println!("domu-fuzz: seed {seed}, {calls} calls");
        if runtime::init().is_err() {
            println!("domu-fuzz: ERROR: runtime init");
            pv_guest_lib::xen::crash();
        }
        let l = match setup(si) {
            Ok(l) => l,
            Err(e) => {
                println!("domu-fuzz: ERROR: setup: {e}");
                pv_guest_lib::xen::crash();
            }
        };
        println!(
            "domu-fuzz: d{} max mfn {:#x}, protected ports {:?}",
            l.domid, l.max_mfn, l.protected_ports
        );
        let mut f = Fuzz {
            r: Rng::new(seed),
            l,
            t: Tally::new(),
            handles: Vec::new(),
            ports: Vec::new(),
            closed: None,
            pinned: Vec::new(),
            ldt_set: false,
        };
        for c in ["random", "mmu", "grant", "evtchn"] {
            f.t.class(c);
        }
        let t0 = time::now_ns();
        // random 40 %, the others 20 % each.
        let budget = |share: u64| calls * share / 100;
        let (b_random, b_mmu, b_grant) = (budget(40), budget(20), budget(20));
        let b_evtchn = calls - b_random - b_mmu - b_grant;
        println!("domu-fuzz: class random");
        while f.t.calls("random") < b_random {
            f.random();
            let n = f.t.calls("random");
            if n.is_multiple_of(PROGRESS_EVERY) {
                println!("domu-fuzz: random: {n} calls");
            }
        }
        println!("domu-fuzz: class mmu");
        while f.t.calls("mmu") < b_mmu {
            f.mmu();
        }
        f.mmu_cleanup();
        // The grant class, with vCPU 1 racing on the entries.
        RACE_SEED.store(seed ^ 0x7261_6365, Ordering::Release);
        RACE_TARGET.store(
            (u64::from(f.l.domid) << 32) | f.l.scratch_mfns[0],
            Ordering::Release,
        );
        RACE_REF0.store(u64::from(f.l.grant_refs[0]), Ordering::Release);
        RACING.store(true, Ordering::Release);
        let racer_up = smp::count() > 1 && smp::start(1, racer).is_ok();
        println!("domu-fuzz: class grant");
        while f.t.calls("grant") < b_grant {
            f.grant();
        }
        RACING.store(false, Ordering::Release);
        if racer_up {
            let end = time::now_ns() + 5_000_000_000;
            while !RACER_DONE.load(Ordering::Acquire) && time::now_ns() < end {
                let _ = pv_guest_lib::xen::sched_yield();
            }
        }
        println!(
            "domu-fuzz: grant race: vCPU 1 {}, {} entry rewrites",
            if racer_up { "raced" } else { "not started" },
            RACE_WRITES.load(Ordering::Relaxed)
        );
        for (h, a, live) in core::mem::take(&mut f.handles) {
            if live {
                let mut op = GnttabUnmapGrantRef {
                    host_addr: a,
                    handle: h,
                    ..Default::default()
                };
                raw(GRANT_TABLE_OP, [1, addr(&mut op), 1, 0, 0]);
            }
        }
        println!("domu-fuzz: class evtchn");
        while f.t.calls("evtchn") < b_evtchn {
            f.evtchn();
        }
        for p in core::mem::take(&mut f.ports) {
            let mut port = p;
            raw(EVENT_CHANNEL_OP, [3, addr(&mut port), 0, 0, 0]);
        }
        let ms = (time::now_ns() - t0) / 1_000_000;
        for line in f.t.report(seed, ms) {
            println!("{line}");
        }
        println!("domu-fuzz: done, waiting to be destroyed");
        loop {
            time::sleep_ns(1_000_000_000);
        }
    }
}
