//! The call generators of the hostile fuzzing guest, one per class: pure
//! functions from the PRNG and the guest's [`Layout`] to what to call.
//! The guest (`src/bin/domu-fuzz.rs`) makes the calls and tallies the
//! answers; nothing here touches memory.
//!
//! Each generator aims at the hypervisor, never at the guest's own life:
//! a draw that would legitimately destroy the guest (a shutdown, a new
//! trap table, a remap of its own kernel) comes back as [`Draw::Skip`]
//! and is counted as `fatal-skipped`. Writes the hypervisor may make on
//! the guest's behalf land in its scratch buffer (followed by an unmapped
//! guard page), in its fuzz-only L1 tables, or nowhere.

use super::Rng;

/// Machine-frame flags of an L1/L2/L3/L4 entry (x86_64).
pub mod pte {
    /// Present.
    pub const P: u64 = 1;
    /// Writable.
    pub const RW: u64 = 1 << 1;
    /// User (every PV guest kernel mapping has it).
    pub const US: u64 = 1 << 2;
    /// Accessed.
    pub const A: u64 = 1 << 5;
    /// Dirty.
    pub const D: u64 = 1 << 6;
    /// Page size (L2/L3: superpage).
    pub const PSE: u64 = 1 << 7;
    /// Global.
    pub const G: u64 = 1 << 8;
    /// No-execute.
    pub const NX: u64 = 1 << 63;
}

/// The hypervisor's L4 slots in every PV address space (256..272).
pub const HYPERVISOR_SLOTS: core::ops::Range<u64> = 256..272;

/// What the generators know of the guest.
#[derive(Clone, Debug, Default)]
pub struct Layout {
    /// Our domain id.
    pub domid: u16,
    /// A writable buffer of ours the hypervisor may write into, followed
    /// by an unmapped guard page.
    pub scratch_va: u64,
    /// Its length in bytes.
    pub scratch_len: u64,
    /// Pseudo-physical frames of the scratch buffer (targets of grant
    /// copies and of grants themselves).
    pub scratch_pfns: [u64; 4],
    /// Machine frames of the same pages.
    pub scratch_mfns: [u64; 4],
    /// Our live page tables, L4 first (machine frames).
    pub pt_mfns: [u64; 4],
    /// The same tables' addresses (read-only mappings).
    pub pt_vas: [u64; 4],
    /// An L1 table of ours that only the mmu class writes; it maps
    /// [`Layout::fuzz_va`] onwards.
    pub fuzz_l1_mfn: u64,
    /// The VA its entry 0 maps.
    pub fuzz_va: u64,
    /// An L1 table of ours where grants get mapped; it maps
    /// [`Layout::grant_va`] onwards.
    pub grant_l1_mfn: u64,
    /// The VA its entry 0 maps.
    pub grant_va: u64,
    /// Frames of ours with crafted page-table contents (read-only, never
    /// part of our live tables): pin and type-confusion targets.
    pub crafted_mfns: [u64; 6],
    /// An L4 slot of our live L4 that nothing of ours uses.
    pub fuzz_l4_slot: u64,
    /// The highest machine frame the machine has (a guess is fine).
    pub max_mfn: u64,
    /// Grant references of ours in use for the fuzz (granted to us).
    pub grant_refs: [u32; 4],
    /// The event-channel ports we must keep (console, xenstore, timer).
    pub protected_ports: [u32; 4],
    /// Every machine frame we own, sorted: a "foreign" guess must not be
    /// one (a guessed frame that is our own kernel's, cleared with
    /// `MMUEXT_CLEAR_PAGE` or written as a page table, kills us, in Xen
    /// too).
    pub own_mfns: alloc::vec::Vec<u64>,
}

impl Layout {
    /// A frame we do not own, guessed: anywhere in the machine but ours.
    pub fn foreign_mfn(&self, r: &mut Rng) -> u64 {
        loop {
            let m = match r.below(4) {
                // The hypervisor's own low memory.
                0 => r.below(0x100),
                // Anywhere in RAM.
                1 | 2 => r.below(self.max_mfn.max(1)),
                // Beyond RAM.
                _ => self.max_mfn + 1 + r.below(1 << 20),
            };
            if !self.owns_mfn(m) {
                return m;
            }
        }
    }

    /// Whether `m` is one of the frames we know we own.
    pub fn owns_mfn(&self, m: u64) -> bool {
        self.own_mfns.binary_search(&m).is_ok()
            || self.pt_mfns.contains(&m)
            || self.scratch_mfns.contains(&m)
            || self.crafted_mfns.contains(&m)
            || m == self.fuzz_l1_mfn
            || m == self.grant_l1_mfn
    }

    /// A page-table frame of ours of any kind (live, fuzz, crafted).
    pub fn any_table(&self, r: &mut Rng) -> u64 {
        match r.below(3) {
            0 => r.pick(&self.pt_mfns),
            1 => self.fuzz_l1_mfn,
            _ => r.pick(&self.crafted_mfns),
        }
    }
}

impl Layout {
    /// The VA a grant map at `host_addr` with `flags` would replace, if
    /// it is one of ours the grant class maps at (the grant L1's range,
    /// by VA or by entry address with `GNTMAP_contains_pte`, or the
    /// scratch guard page). Mapping a grant over a live grant mapping
    /// drops that one implicitly, which Xen punishes by crashing the
    /// domain: the guest keeps track and does not.
    pub fn grant_slot(&self, host_addr: u64, flags: u32) -> Option<u64> {
        if flags & 0x10 != 0 {
            return (host_addr >> 12 == self.grant_l1_mfn)
                .then(|| self.grant_va + (host_addr & 0xfff) / 8 * 4096);
        }
        let va = host_addr & !0xfff;
        ((self.grant_va..self.grant_va + 512 * 4096).contains(&va)
            || va == self.scratch_va + self.scratch_len)
            .then_some(va)
    }
}

/// A raw hypercall to make, or one not made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Draw {
    /// `hypercall_raw(nr, args)`.
    Call {
        /// Hypercall number.
        nr: u64,
        /// Its five arguments.
        args: [u64; 5],
    },
    /// A call that would legitimately destroy the guest: not made.
    Skip,
}

/// Hypercalls that change the caller's own execution state: a random
/// one kills the caller, in Xen as anywhere (`set_trap_table`,
/// `set_gdt`, `stack_switch`, `set_callbacks`, `fpu_taskswitch`,
/// `sched_op_compat`, `set_debugreg`, `update_descriptor`, `multicall`,
/// `update_va_mapping` (the class `mmu` does it with care), `vm_assist`,
/// `update_va_mapping_otherdomain`, `iret`, `set_segment_base`,
/// `nmi_op`, `callback_op`).
pub const SELF_DESTRUCTIVE: &[u64] = &[0, 2, 3, 4, 5, 6, 8, 10, 13, 14, 21, 22, 23, 25, 28, 30];

/// One argument: small numbers, boundaries, random bits, or a pointer
/// into the hypervisor's range, a non-canonical, an unmapped one, our own
/// page tables (read-only) or our scratch buffer.
pub fn arg(r: &mut Rng, l: &Layout, own_tables: bool) -> u64 {
    match r.below(if own_tables { 9 } else { 8 }) {
        0 | 1 => r.below(65),
        2 => r.pick(&[
            0,
            1,
            0x7fff_ffff,
            0xffff_ffff,
            0x8000_0000_0000_0000,
            u64::MAX,
            u64::MAX - 1,
            0x7ff0, // DOMID_SELF
            0x7ff2, // DOMID_XEN
        ]),
        3 => r.next_u64(),
        // The hypervisor's own range.
        4 => 0xffff_8000_0000_0000 + (r.below(0x0800_0000_0000) & !7),
        // Non-canonical.
        5 => 0x0000_8000_0000_0000 | (r.next_u64() & 0x7fff_ffff_fff8),
        // Low, unmapped (a PV domU has no user mappings).
        6 => 0x1000 + (r.below(0x1_0000_0000) & !7),
        7 => l.scratch_va + (r.below(l.scratch_len.max(8)) & !7),
        _ => r.pick(&l.pt_vas) + (r.below(4096) & !7),
    }
}

/// Class `random`: a random hypercall number (0..64 mostly, beyond too)
/// with a random sub-op and random arguments.
pub fn random_call(r: &mut Rng, l: &Layout) -> Draw {
    let nr = match r.below(10) {
        0..=6 => r.below(43),
        7 | 8 => 43 + r.below(21),
        _ => match r.below(3) {
            0 => 64 + r.below(4096),
            1 => r.next_u64(),
            _ => 0x8000_0000 + r.below(64),
        },
    };
    // mmu_update and mmuext_op read their requests from our own tables
    // as happily as from anywhere: request lists come from the scratch
    // buffer only (an entry of our own table read as a request could
    // rewrite our own m2p entries).
    let own = !matches!(nr, 1 | 26);
    let mut args = [0u64; 5];
    for a in args.iter_mut() {
        *a = arg(r, l, own);
    }
    // The sub-op: mostly a small one.
    if r.below(4) != 0 {
        let n = if r.one_in(4) { 64 } else { 24 };
        args[0] = r.below(n);
    }
    if SELF_DESTRUCTIVE.contains(&nr) {
        return Draw::Skip;
    }
    // Sub-ops and vCPU ids are C `int`s / `unsigned int`s: the hypervisor
    // looks at the low 32 bits only (as Xen does), and so must we.
    let (cmd, a1) = (args[0] as u32, args[1] as u32);
    let ok = match nr {
        // console_io write: junk bytes on the hypervisor's console.
        18 => cmd != 0,
        // grant_table_op set_version: our grant class stays on v1.
        20 => cmd != 8,
        // vcpu_op on our own vCPUs (down, initialise) stops us.
        24 => a1 >= 2,
        // sched_op: yield only (shutdown, block, poll, remote_shutdown of
        // ourselves stop us).
        29 => cmd == 0,
        // event_channel_op reset (closes our console and xenstore ports),
        // init_control (switches us to FIFO), reset_cont.
        32 => !matches!(cmd, 10 | 11 | 15),
        _ => true,
    };
    if ok {
        Draw::Call { nr, args }
    } else {
        Draw::Skip
    }
}

/// Class `mmu`: one crafted page-table operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmuDraw {
    /// `mmu_update` of one request (`ptr`, `val`) with `foreigndom`.
    Update {
        /// Machine address of the entry | command.
        ptr: u64,
        /// The new entry.
        val: u64,
        /// `foreigndom`.
        foreigndom: u64,
    },
    /// `mmu_update` with a bad count or request pointer.
    BadBatch {
        /// Request pointer (scratch, hypervisor, non-canonical).
        reqs: u64,
        /// Count.
        count: u64,
    },
    /// `update_va_mapping(va, val, flags)` in the fuzz L1's range.
    UpdateVa {
        /// The VA.
        va: u64,
        /// The new entry.
        val: u64,
        /// `UVMF_*` flags.
        flags: u64,
    },
    /// One `mmuext_op`.
    Ext {
        /// `MMUEXT_*`.
        cmd: u32,
        /// `arg1` (mfn or linear address).
        arg1: u64,
        /// `arg2` (nr_ents, vcpumask pointer or src mfn).
        arg2: u64,
    },
    /// A draw that would take our own life.
    Skip,
}

/// A crafted entry value: a foreign frame, one of our tables (read-only
/// or writable: a writable map of a page table), the fuzz L1 itself (a
/// self-map), a scratch frame, reserved bits, or 0.
pub fn entry(r: &mut Rng, l: &Layout) -> u64 {
    let flags = match r.below(6) {
        0 => pte::P | pte::US | pte::A,
        1 | 2 => pte::P | pte::RW | pte::US | pte::A | pte::D,
        3 => pte::P | pte::RW | pte::US | pte::PSE,
        4 => pte::P | pte::US | pte::G | pte::NX,
        _ => r.next_u64() & 0x8000_0000_0000_0fff,
    };
    let mfn = match r.below(6) {
        0 | 1 => l.foreign_mfn(r),
        2 => l.any_table(r),
        3 => l.fuzz_l1_mfn,
        4 => r.pick(&l.scratch_mfns),
        _ => return if r.one_in(2) { 0 } else { r.next_u64() },
    };
    ((mfn << 12) & 0x000f_ffff_ffff_f000) | flags
}

/// Class `mmu`.
pub fn mmu_call(r: &mut Rng, l: &Layout) -> MmuDraw {
    match r.below(12) {
        // An entry of the fuzz L1: foreign frames, writable maps of page
        // tables, self-maps.
        0..=2 => MmuDraw::Update {
            ptr: (l.fuzz_l1_mfn << 12) | (r.below(512) * 8) | r.pick(&[0, 0, 0, 2, 3]),
            val: entry(r, l),
            foreigndom: r.pick(&[
                0x7ff0,
                0x7ff0,
                0x7ff0,
                u64::from(l.domid),
                0,
                0x7ff1,
                0x7ff2,
            ]),
        },
        // An entry of our L4: the fuzz slot (recursive entries, a crafted
        // or an L1 frame as an L3: type confusion) or a hypervisor slot.
        3 => {
            let slot = if r.one_in(2) {
                l.fuzz_l4_slot
            } else {
                HYPERVISOR_SLOTS.start + r.below(16)
            };
            let val = match r.below(3) {
                0 => (l.pt_mfns[0] << 12) | pte::P | pte::US | r.pick(&[0, pte::RW]),
                1 => entry(r, l),
                _ => 0,
            };
            MmuDraw::Update {
                ptr: (l.pt_mfns[0] << 12) | (slot * 8),
                val,
                foreigndom: 0x7ff0,
            }
        }
        // An entry of a crafted frame (writable maps of it are refused
        // once it is a table; while it is not, it is a plain frame of
        // ours and the write is refused as a page-table update of a
        // frame that is not one).
        4 => MmuDraw::Update {
            ptr: (r.pick(&l.crafted_mfns) << 12) | (r.below(512) * 8),
            val: entry(r, l),
            foreigndom: 0x7ff0,
        },
        // Requests aimed at frames we do not own, or m2p updates of them.
        5 => MmuDraw::Update {
            ptr: (l.foreign_mfn(r) << 12) | (r.below(512) * 8) | r.pick(&[0, 1, 2]),
            val: r.next_u64(),
            foreigndom: r.pick(&[0x7ff0, 0, 0x7ff2, 0xffff, u64::from(l.domid) + 1]),
        },
        6 => MmuDraw::BadBatch {
            reqs: match r.below(3) {
                0 => l.scratch_va + l.scratch_len - 16,
                1 => 0xffff_8000_0000_0000 + (r.below(1 << 40) & !7),
                _ => 0x0000_8000_0000_0000 | (r.next_u64() & 0x7fff_ffff_fff8),
            },
            count: r.pick(&[2, 3, 1000, 0x7fff_ffff, 0x8000_0001, u64::MAX]),
        },
        7 | 8 => MmuDraw::UpdateVa {
            va: l.fuzz_va + r.below(512) * 4096 + r.pick(&[0, 0, 0, 1]),
            val: entry(r, l),
            flags: r.pick(&[0, 1, 2, 3, 4, 0x10, !3]),
        },
        _ => {
            let cmd = r.below(24) as u32;
            let (arg1, arg2) = match cmd {
                // Pins: crafted frames (any level), our own tables at the
                // wrong level, the fuzz L1, scratch (writable) and
                // foreign frames.
                0..=4 => (
                    match r.below(5) {
                        0 | 1 => r.pick(&l.crafted_mfns),
                        2 => r.pick(&l.pt_mfns),
                        3 => r.pick(&l.scratch_mfns),
                        _ => l.foreign_mfn(r),
                    },
                    0,
                ),
                // New (user) base pointers: a wrong one is refused, a
                // right one (a crafted L4) would switch us to it.
                5 | 15 => return MmuDraw::Skip,
                // SET_LDT: bad bases and sizes only (a good one loads an
                // LDT we do not use; reset afterwards anyway).
                13 => (
                    r.pick(&[
                        l.scratch_va,
                        l.pt_vas[0],
                        0xffff_8000_0000_0000,
                        0x0000_8000_0000_0000,
                        l.scratch_va + 1,
                    ]),
                    r.pick(&[1, 8192, 8193, u64::from(u32::MAX)]),
                ),
                // CLEAR_PAGE / COPY_PAGE: page tables and foreign frames
                // (refused); scratch to scratch (fine).
                16 | 17 => (
                    match r.below(3) {
                        0 => l.any_table(r),
                        1 => l.foreign_mfn(r),
                        _ => r.pick(&l.scratch_mfns),
                    },
                    match r.below(3) {
                        0 => l.any_table(r),
                        1 => l.foreign_mfn(r),
                        _ => r.pick(&l.scratch_mfns),
                    },
                ),
                // Flushes with a bad vCPU mask pointer, invlpg of
                // anything.
                _ => (arg(r, l, false), arg(r, l, false)),
            };
            MmuDraw::Ext { cmd, arg1, arg2 }
        }
    }
}

/// Class `grant`: one grant-table misuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantDraw {
    /// `GNTTABOP_map_grant_ref` of (`dom`, `gref`) at `host_addr`.
    Map {
        /// Granting domain.
        dom: u16,
        /// Reference.
        gref: u32,
        /// `GNTMAP_*`.
        flags: u32,
        /// Where (a VA in the grant L1's range, or an entry's machine
        /// address with `GNTMAP_contains_pte`, or a bad address).
        host_addr: u64,
    },
    /// `GNTTABOP_unmap_grant_ref` of handle slot `slot` (or a random
    /// handle if `None`): double unmaps included.
    Unmap {
        /// The index of a handle the guest got (it may be unmapped
        /// already).
        slot: Option<usize>,
        /// A random handle otherwise.
        handle: u32,
        /// Host address given.
        host_addr: u64,
    },
    /// `GNTTABOP_setup_table`.
    Setup {
        /// Domain.
        dom: u16,
        /// Frames wanted.
        nr_frames: u32,
        /// The frame list pointer.
        list: u64,
    },
    /// `GNTTABOP_copy` of `len` bytes (`src`/`dst`: a reference of `dom`
    /// if the flag is set, else a frame).
    Copy {
        /// Source domain.
        src_dom: u16,
        /// Source reference or frame.
        src: u64,
        /// Source offset.
        src_off: u16,
        /// Destination domain.
        dst_dom: u16,
        /// Destination reference or frame (only our scratch, foreign
        /// frames or references).
        dst: u64,
        /// Destination offset.
        dst_off: u16,
        /// Length.
        len: u16,
        /// `GNTCOPY_*`.
        flags: u16,
    },
    /// `GNTTABOP_query_size` / `get_version` / `get_status_frames` /
    /// random sub-ops with a scratch argument and a count.
    Other {
        /// The sub-op.
        cmd: u64,
        /// Count.
        count: u64,
    },
}

/// A frame number beyond any guest's memory.
pub const BEYOND_GFN: u64 = 1 << 32;

/// Class `grant`. `handles` is how many handle slots the guest holds.
pub fn grant_call(r: &mut Rng, l: &Layout, handles: usize) -> GrantDraw {
    let some_dom = |r: &mut Rng| -> u16 {
        r.pick(&[
            l.domid,
            l.domid,
            l.domid,
            0,
            0x7ff0,
            l.domid.wrapping_add(1),
            l.domid.wrapping_sub(1),
            0x7ff2,
            0xffff,
        ])
    };
    let some_ref = |r: &mut Rng| -> u32 {
        match r.below(4) {
            0 | 1 => r.pick(&l.grant_refs),
            2 => r.below(16) as u32,
            _ => r.pick(&[511, 512, 0xffff, 0x7fff_ffff, u32::MAX]),
        }
    };
    match r.below(10) {
        0..=3 => {
            let flags = r.pick(&[2u32, 2, 2 | 4, 1, 1 | 2, 2 | 8, 0, 0x10 | 2, 0xffff_ffff]);
            let host_addr = if flags & 0x10 != 0 {
                match r.below(3) {
                    0 => (l.grant_l1_mfn << 12) | (r.below(512) * 8),
                    1 => l.foreign_mfn(r) << 12,
                    // Our live L4: not an L1, refused.
                    _ => (l.pt_mfns[0] << 12) | 0xff8,
                }
            } else {
                match r.below(6) {
                    // The scratch buffer's guard page (not mapped).
                    0 => l.scratch_va + l.scratch_len,
                    1 => 0xffff_8000_0000_0000,
                    2 => 0x0000_8000_0000_0000,
                    _ => l.grant_va + r.below(512) * 4096,
                }
            };
            GrantDraw::Map {
                dom: some_dom(r),
                gref: some_ref(r),
                flags,
                host_addr,
            }
        }
        4..=5 => GrantDraw::Unmap {
            slot: if handles > 0 && !r.one_in(4) {
                Some(r.below(handles as u64) as usize)
            } else {
                None
            },
            handle: r.pick(&[0, 1, 0x1000, u32::MAX]) ^ (r.below(4) as u32),
            host_addr: if r.one_in(3) {
                0
            } else {
                l.grant_va + r.below(512) * 4096
            },
        },
        6 => GrantDraw::Setup {
            dom: some_dom(r),
            nr_frames: r.pick(&[0, 1, 2, 4, 64, 1024, u32::MAX]),
            list: match r.below(4) {
                0 => l.scratch_va,
                1 => l.pt_vas[0],
                2 => 0xffff_8000_0000_0000,
                _ => l.scratch_va + l.scratch_len - 8,
            },
        },
        7 | 8 => {
            let flags = r.below(4) as u16 | if r.one_in(8) { 0x40 } else { 0 };
            let src = if flags & 1 != 0 {
                u64::from(some_ref(r))
            } else if r.one_in(2) {
                r.pick(&l.scratch_pfns)
            } else {
                l.foreign_mfn(r)
            };
            // A frame destination is a frame of ours (the other side's
            // would be refused): our scratch, or beyond our memory.
            let dst = if flags & 2 != 0 {
                u64::from(some_ref(r))
            } else if r.one_in(2) {
                r.pick(&l.scratch_pfns)
            } else {
                BEYOND_GFN + r.below(1 << 20)
            };
            GrantDraw::Copy {
                src_dom: some_dom(r),
                src,
                src_off: r.pick(&[0, 8, 4000, 4096, 0xffff]),
                dst_dom: some_dom(r),
                dst,
                dst_off: r.pick(&[0, 16, 4090, 4096]),
                len: r.pick(&[0, 8, 96, 4096, 4097, 0xffff]),
                flags,
            }
        }
        _ => GrantDraw::Other {
            cmd: r.pick(&[
                6,
                9,
                10,
                11,
                12,
                13,
                14,
                15,
                16,
                17,
                30,
                u64::from(u32::MAX),
            ]),
            count: r.pick(&[0, 1, 2, 100]),
        },
    }
}

/// Class `evtchn`: one event-channel misuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvtDraw {
    /// `EVTCHNOP_alloc_unbound` until it fails (port exhaustion), then
    /// close every port got.
    Exhaust,
    /// `EVTCHNOP_alloc_unbound` in `dom` for `remote`.
    AllocUnbound {
        /// Domain.
        dom: u16,
        /// Remote domain.
        remote: u16,
    },
    /// `EVTCHNOP_bind_interdomain` to (`dom`, `port`).
    BindInterdomain {
        /// Remote domain.
        dom: u16,
        /// Remote port.
        port: u32,
    },
    /// `EVTCHNOP_bind_virq`.
    BindVirq {
        /// VIRQ.
        virq: u32,
        /// vCPU.
        vcpu: u32,
    },
    /// `EVTCHNOP_bind_ipi`.
    BindIpi {
        /// vCPU.
        vcpu: u32,
    },
    /// `EVTCHNOP_send` / `close` / `unmask` / `status` / `bind_vcpu` /
    /// `set_priority` (by `cmd`) of `port`.
    OnPort {
        /// `EVTCHNOP_*`.
        cmd: u32,
        /// The port: closed, out of range, or one of the fuzz's own.
        port: u32,
        /// Second argument (vCPU or priority).
        extra: u32,
    },
    /// `EVTCHNOP_init_control` with a bad frame or offset.
    InitControl {
        /// The control block's frame.
        gfn: u64,
        /// Its offset.
        offset: u32,
        /// vCPU.
        vcpu: u32,
    },
    /// `EVTCHNOP_expand_array` with a bad frame.
    ExpandArray {
        /// The frame.
        gfn: u64,
    },
    /// `EVTCHNOP_reset` of `dom` (never ourselves).
    Reset {
        /// Domain.
        dom: u16,
    },
    /// A draw that would take our own life.
    Skip,
}

const DOMID_SELF_U16: u16 = 0x7ff0;

/// Class `evtchn`. `live` is one of the fuzz's own open ports (if any),
/// `closed` one it closed.
pub fn evtchn_call(r: &mut Rng, l: &Layout, live: Option<u32>, closed: Option<u32>) -> EvtDraw {
    let some_dom = |r: &mut Rng| -> u16 {
        r.pick(&[
            0,
            0x7ff0,
            l.domid,
            l.domid.wrapping_add(1),
            l.domid.wrapping_sub(1),
            0x7ff2,
            0x7fff,
            0xffff,
        ])
    };
    let port = |r: &mut Rng| -> u32 {
        match r.below(6) {
            0 | 1 => live.unwrap_or(0),
            2 => closed.unwrap_or(1),
            3 => r.pick(&[0, 1023, 1024, 4095, 4096, 0x1_0000, 0x7fff_ffff, u32::MAX]),
            _ => r.below(64) as u32,
        }
    };
    // Exhaustion is thousands of calls: a rare draw.
    if r.one_in(2000) {
        return EvtDraw::Exhaust;
    }
    match r.below(40) {
        0 => EvtDraw::AllocUnbound {
            dom: DOMID_SELF_U16,
            remote: l.domid,
        },
        1..=4 => EvtDraw::AllocUnbound {
            dom: some_dom(r),
            remote: some_dom(r),
        },
        5..=9 => EvtDraw::BindInterdomain {
            dom: some_dom(r),
            port: port(r),
        },
        10..=12 => EvtDraw::BindVirq {
            virq: r.pick(&[0, 1, 2, 3, 7, 8, 11, 23, 24, 0x7fff_ffff]),
            vcpu: r.pick(&[0, 1, 2, 64, u32::MAX]),
        },
        13..=14 => EvtDraw::BindIpi {
            vcpu: r.pick(&[0, 1, 2, 64, u32::MAX]),
        },
        15..=34 => {
            let p = port(r);
            let cmd = r.pick(&[3u32, 4, 4, 5, 8, 9, 9, 13]);
            // Closing (or moving) a port of ours we live on, or sending
            // on one, is self-harm, not a hypervisor test.
            if l.protected_ports.contains(&p) && p != 0 && matches!(cmd, 3 | 4 | 8 | 13) {
                return EvtDraw::Skip;
            }
            EvtDraw::OnPort {
                cmd,
                port: p,
                extra: r.pick(&[0, 1, 2, 15, 16, 64, u32::MAX]),
            }
        }
        35..=36 => {
            let (gfn, offset) = match r.below(3) {
                0 => (l.foreign_mfn(r) | (1 << 40), 0),
                1 => (
                    r.pick(&l.scratch_pfns),
                    r.pick(&[4093, 4096, 8192, u32::MAX]),
                ),
                _ => (u64::MAX, 64),
            };
            EvtDraw::InitControl {
                gfn,
                offset,
                vcpu: r.pick(&[0, 1, 2, u32::MAX]),
            }
        }
        37 => {
            let any = r.next_u64();
            EvtDraw::ExpandArray {
                gfn: r.pick(&[0, u64::MAX, 1 << 40, any]),
            }
        }
        _ => {
            let dom = some_dom(r);
            if dom == 0x7ff0 || dom == l.domid {
                EvtDraw::Skip
            } else {
                EvtDraw::Reset { dom }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn layout() -> Layout {
        Layout {
            domid: 5,
            scratch_va: 0xffff_c000_0040_0000,
            scratch_len: 4 * 4096,
            scratch_pfns: [100, 101, 102, 103],
            scratch_mfns: [9100, 9101, 9102, 9103],
            pt_mfns: [9000, 9001, 9002, 9003],
            pt_vas: [0xffff_ffff_8000_1000; 4],
            fuzz_l1_mfn: 9010,
            fuzz_va: 0xffff_c000_0060_0000,
            grant_l1_mfn: 9011,
            grant_va: 0xffff_c000_0080_0000,
            crafted_mfns: [9020, 9021, 9022, 9023, 9024, 9025],
            fuzz_l4_slot: 320,
            max_mfn: 0x8000,
            grant_refs: [8, 9, 10, 11],
            protected_ports: [1, 2, 3, 0],
            own_mfns: (9000..9200).chain(20..40).collect::<Vec<u64>>().tap_sort(),
        }
    }

    trait TapSort {
        fn tap_sort(self) -> Self;
    }

    impl TapSort for Vec<u64> {
        fn tap_sort(mut self) -> Self {
            self.sort_unstable();
            self
        }
    }

    #[test]
    fn foreign_guesses_are_never_ours() {
        let l = layout();
        let mut r = Rng::new(11);
        for _ in 0..100_000 {
            let m = l.foreign_mfn(&mut r);
            assert!(!(20..40).contains(&m) && !(9000..9200).contains(&m), "{m}");
        }
    }

    #[test]
    fn random_calls_never_self_destruct() {
        let l = layout();
        let mut r = Rng::new(42);
        let (mut made, mut skipped, mut beyond) = (0, 0, 0);
        for _ in 0..100_000 {
            match random_call(&mut r, &l) {
                Draw::Call { nr, args } => {
                    made += 1;
                    assert!(!SELF_DESTRUCTIVE.contains(&nr), "{nr}");
                    if nr == 29 {
                        assert_eq!(args[0] as u32, 0);
                    }
                    if nr == 24 {
                        assert!(args[1] as u32 >= 2);
                    }
                    if nr == 32 {
                        assert!(!matches!(args[0] as u32, 10 | 11 | 15));
                    }
                    if matches!(nr, 1 | 26) {
                        // No request lists read from our own tables.
                        for a in args {
                            assert!(!(l.pt_vas[0]..l.pt_vas[0] + 4096).contains(&a));
                        }
                    }
                    if nr > 64 {
                        beyond += 1;
                    }
                }
                Draw::Skip => skipped += 1,
            }
        }
        assert!(
            made > 50_000 && skipped > 1000 && beyond > 1000,
            "{made} {skipped} {beyond}"
        );
    }

    #[test]
    fn mmu_calls_only_write_fuzz_tables() {
        let l = layout();
        let mut r = Rng::new(7);
        let mut hyp_slot = 0;
        for _ in 0..100_000 {
            match mmu_call(&mut r, &l) {
                MmuDraw::Update { ptr, .. } => {
                    let mfn = ptr >> 12;
                    if mfn == l.pt_mfns[0] {
                        let slot = (ptr & 0xfff) / 8;
                        assert!(slot == l.fuzz_l4_slot || HYPERVISOR_SLOTS.contains(&slot));
                        if slot != l.fuzz_l4_slot {
                            hyp_slot += 1;
                        }
                    } else {
                        assert!(
                            mfn == l.fuzz_l1_mfn
                                || l.crafted_mfns.contains(&mfn)
                                || !l.owns_mfn(mfn),
                            "{ptr:#x}"
                        );
                    }
                }
                MmuDraw::UpdateVa { va, .. } => {
                    assert!((l.fuzz_va..l.fuzz_va + 512 * 4096).contains(&va));
                }
                MmuDraw::Ext { cmd, .. } => assert!(cmd != 5 && cmd != 15),
                MmuDraw::BadBatch { .. } | MmuDraw::Skip => {}
            }
        }
        assert!(hyp_slot > 100);
    }

    #[test]
    fn grant_copies_never_write_our_own_memory_but_scratch() {
        let l = layout();
        let mut r = Rng::new(9);
        for _ in 0..100_000 {
            match grant_call(&mut r, &l, 3) {
                GrantDraw::Copy { dst, flags, .. } if flags & 2 == 0 => {
                    assert!(l.scratch_pfns.contains(&dst) || dst >= BEYOND_GFN, "{dst}");
                }
                GrantDraw::Map {
                    flags, host_addr, ..
                } if flags & 0x10 != 0 => {
                    let mfn = host_addr >> 12;
                    assert!(mfn == l.grant_l1_mfn || mfn == l.pt_mfns[0] || !l.owns_mfn(mfn));
                }
                GrantDraw::Unmap { slot: Some(s), .. } => assert!(s < 3),
                GrantDraw::Map {
                    host_addr, flags, ..
                } if flags & 0x12 == 2 => {
                    // Never over the scratch buffer itself.
                    assert!(!(l.scratch_va..l.scratch_va + l.scratch_len).contains(&host_addr));
                }
                _ => {}
            }
        }
    }

    #[test]
    fn grant_slots() {
        let l = layout();
        assert_eq!(
            l.grant_slot(l.grant_va + 3 * 4096, 2),
            Some(l.grant_va + 3 * 4096)
        );
        assert_eq!(
            l.grant_slot((l.grant_l1_mfn << 12) | 24, 0x12),
            Some(l.grant_va + 3 * 4096)
        );
        assert_eq!(
            l.grant_slot(l.scratch_va + l.scratch_len, 2),
            Some(l.scratch_va + l.scratch_len)
        );
        assert_eq!(l.grant_slot(0xffff_8000_0000_0000, 2), None);
        assert_eq!(l.grant_slot(l.pt_mfns[0] << 12, 0x12), None);
    }

    #[test]
    fn evtchn_calls_spare_our_ports_and_ourselves() {
        let l = layout();
        let mut r = Rng::new(3);
        let mut exhaust = 0;
        for _ in 0..100_000 {
            match evtchn_call(&mut r, &l, Some(40), Some(41)) {
                EvtDraw::OnPort { cmd, port, .. }
                    if l.protected_ports.contains(&port) && port != 0 =>
                {
                    assert!(matches!(cmd, 5 | 9), "{cmd} {port}");
                }
                EvtDraw::Reset { dom } => assert!(dom != 0x7ff0 && dom != l.domid),
                EvtDraw::InitControl { gfn, offset, .. } => {
                    assert!(!l.scratch_pfns.contains(&gfn) || offset > 4096 - 64);
                }
                EvtDraw::Exhaust => exhaust += 1,
                _ => {}
            }
        }
        assert!(exhaust > 10 && exhaust < 200, "{exhaust}");
    }
}
