//! Test Dom0: the PV microbenchmarks behind `scripts/bench` (issue 3).
//!
//! Times, in TSC cycles, each as the median and minimum of many
//! iterations (after a few warm-up ones), with the cost of an empty timing
//! pair (`lfence; rdtsc; lfence` twice) subtracted:
//!
//! - `hypercall_enosys`: a hypercall number Xen does not have (63), answered
//!   `-ENOSYS` at dispatch: entry, dispatch, exit and nothing else;
//! - `null_hypercall`: `xen_version(XENVER_version)`, what Xen people call
//!   the null hypercall, through the hypercall page;
//! - `mmu_update_512`: one `mmu_update` rewriting all 512 entries of an L1
//!   (each to a different frame than before, so every entry drops one
//!   reference and takes another), per batch and per PTE;
//! - `pf_bounce`: a read of an unmapped kernel address, the #PF bounced to
//!   the guest's handler, which skips the load and `iret`s back;
//! - `syscall_bounce`: a guest user-mode `syscall` bounced to the guest
//!   kernel's syscall callback, which returns at once with the `iret`
//!   hypercall and `VGCF_in_syscall` (the PV `sysret`), timed in user mode;
//! - `evtchn_upcall`: `EVTCHNOP_send` on an IPI port bound to this vCPU
//!   (`EVTCHNOP_bind_ipi`), timed from before the hypercall to the first
//!   instruction of the event callback. Until xen-core has event channels
//!   this prints `n/a (event channels: -ENOSYS)`;
//! - `memcpy_4k`: a 4 KiB copy between two of the guest's own frames (the
//!   floor of the two grant figures: what moving the page costs without
//!   the hypervisor);
//! - `grant_map_unmap` (issue 4): `GNTTABOP_map_grant_ref` of a grant Dom0
//!   gave itself (Xen allows it) at an unused kernel address, then
//!   `GNTTABOP_unmap_grant_ref` of it;
//! - `grant_copy_4k` (issue 4): `GNTTABOP_copy` of 4 KiB from that grant
//!   to another frame of ours. Without grant tables (`-ENOSYS`) both print
//!   `n/a`.
//!
//! The guest-side handlers timed here are a few instructions of assembly
//! each (not pv-guest-lib's general entry path, which saves every register
//! and dispatches in Rust), so the figures are the hypervisor's paths plus
//! the least a guest must do; they are installed for the measurement only
//! and pv-guest-lib's handlers put back afterwards.
//!
//! The floor these are compared with — a bare `syscall`/`sysret` pair — is
//! not measurable from a PV guest (its kernel runs in ring 3 and cannot
//! `sysret`); xen-core measures it on itself at boot and logs it
//! (`bench: syscall/sysret floor N cycles`, see
//! `xen-core/src/arch/x86_64/syscall_floor.rs`).
//!
//! One `BENCH name=...` line per figure (`dom0_tools::bench`), each
//! ending with `ref=<cycles>`: the median of a 4 KiB copy between two
//! guest frames timed right after the figure, the emulator's speed of the
//! moment (`oxen-bench` divides by it before it compares Oxen with Xen).
//! Then the verdict: SUCCESS if every benchmark ran (or, for event channels and
//! grant tables, was refused with `-ENOSYS`); the timings themselves are
//! never judged.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    use core::arch::{asm, global_asm};
    use core::sync::atomic::{AtomicU64, Ordering};

    use dom0_tools::bench::{Line, Stats};
    use dom0_tools::pvtest::Checks;
    use hypercall_abi::arch_x86::TrapInfo;
    use hypercall_abi::callback::{CallbackType, CALLBACKF_MASK_EVENTS};
    use hypercall_abi::hypercall::Hypercall;
    use hypercall_abi::xen::MmuUpdate;
    use pv_guest_lib::error::Errno;
    use pv_guest_lib::frame::{self, AddressSpace};
    use pv_guest_lib::grant::{self, CopyPtr, GrantError, GrantTable};
    use pv_guest_lib::hypercall::{hypercall2, hypercall_raw};
    use pv_guest_lib::mm::{self, Pte, PteFlags};
    use pv_guest_lib::mmu;
    use pv_guest_lib::trap::{self, TrapFrame};
    use pv_guest_lib::user::{self, Syscall, UserExit};
    use pv_guest_lib::{events, println, shared, time as xtime, xen, StartInfo};

    pv_guest_lib::entry!(main);

    /// Timed iterations per figure (odd: the median is a sample).
    const ITERS: usize = 1001;
    /// Untimed iterations first.
    const WARMUP: usize = 16;
    /// Timed `mmu_update` batches.
    const MMU_BATCHES: usize = 65;
    /// Entries per `mmu_update` batch: a whole L1.
    const MMU_BATCH: usize = 512;
    /// A hypercall number Xen 4.17 does not define.
    const UNKNOWN_HYPERCALL: u64 = 63;
    /// The 2 MiB region whose L1 the `mmu_update` benchmark rewrites (L4
    /// slot 384, away from the hypervisor and from anything the builder
    /// maps).
    const MMU_VA: u64 = 0xffff_c000_0000_0000;
    /// Never mapped: the page-fault benchmark reads it.
    const FAULT_VA: u64 = 0xffff_c000_4000_0000;
    /// The user program's code, its sample buffer and its stack.
    const CODE_VA: u64 = 0x40_0000;
    const DATA_VA: u64 = 0x80_0000;
    const DATA_PAGES: u64 = 2;
    const STACK_VA: u64 = 0x7fff_0000;
    /// Where the grant table is mapped (slot 384, its own 2 MiB), and the
    /// grant beside it (the same L1, so one exists).
    const GT_VA: u64 = 0xffff_c000_0080_0000;
    const GRANT_VA: u64 = GT_VA + 0x1000;
    /// Dom0's domain id: it grants to itself (`DOMID_SELF` is refused in
    /// a map, as by Xen).
    const DOM0: u16 = 0;
    /// `DOMID_SELF`, for the table's own operations.
    const DOMID_SELF: u16 = hypercall_abi::xen::DOMID_SELF;
    /// User syscall numbers: 0 exits, anything else returns at once.
    const SYS_EXIT: u64 = 0;

    // ---- Timing --------------------------------------------------------

    /// `lfence; rdtsc; lfence`: earlier instructions have finished, later
    /// ones have not started.
    #[inline(always)]
    fn tsc() -> u64 {
        let lo: u32;
        let hi: u32;
        // SAFETY: lfence and rdtsc only order execution and read the TSC.
        unsafe {
            asm!("lfence", "rdtsc", "lfence", out("eax") lo, out("edx") hi, options(nostack))
        };
        (u64::from(hi) << 32) | u64::from(lo)
    }

    /// Times `f` `WARMUP + samples.len()` times, keeping the last ones.
    fn time(samples: &mut [u64], mut f: impl FnMut()) {
        for _ in 0..WARMUP {
            f();
        }
        for s in samples.iter_mut() {
            let t0 = tsc();
            f();
            *s = tsc().wrapping_sub(t0);
        }
    }

    /// The cost of an empty timing pair.
    fn overhead() -> u64 {
        let mut s = [0u64; ITERS];
        time(&mut s, || {});
        Stats::of(&mut s).map_or(0, |s| s.median)
    }

    /// The speed reference's two frames (direct-map addresses; 0 until
    /// `main` allocates them).
    static REF_SRC: AtomicU64 = AtomicU64::new(0);
    static REF_DST: AtomicU64 = AtomicU64::new(0);
    /// Samples of the speed reference after each figure.
    const REF_ITERS: usize = 101;

    /// The speed reference: the median cycles of a 4 KiB copy between two
    /// of the guest's own frames, timed right after a figure (guest-only
    /// work, the same instructions on any hypervisor: `oxen-bench` divides
    /// the figure by it to take out the emulator's speed of the moment,
    /// which on a shared host changes within a boot). None before `main`
    /// set it up.
    fn reference() -> Option<u64> {
        let (src, dst) = (
            REF_SRC.load(Ordering::Relaxed),
            REF_DST.load(Ordering::Relaxed),
        );
        if src == 0 || dst == 0 {
            return None;
        }
        let mut s = [0u64; REF_ITERS];
        for v in s.iter_mut() {
            let t0 = tsc();
            // SAFETY: two distinct frames of ours, direct-mapped, 4 KiB each.
            unsafe {
                core::ptr::copy_nonoverlapping(src as *const u8, dst as *mut u8, 4096);
                asm!("", options(nostack, preserves_flags));
            }
            *v = tsc().wrapping_sub(t0);
        }
        Stats::of(&mut s).map(|s| s.median)
    }

    fn report(name: &str, samples: &mut [u64], overhead: u64, per: Option<(&str, u64)>) -> bool {
        match Stats::of(samples) {
            Some(stats) => {
                let stats = stats.minus(overhead);
                let line = Line::Figure { name, stats, per };
                match reference() {
                    Some(r) => println!("{line} ref={r}"),
                    None => println!("{line}"),
                }
                true
            }
            None => false,
        }
    }

    // ---- The guest-side handlers (assembly) ------------------------------

    /// TSC at the first instruction of the event callback (0: not yet).
    static EVENT_TSC: AtomicU64 = AtomicU64::new(0);
    /// pv-guest-lib's event and syscall entries, where the bench stubs go
    /// on for anything they do not handle themselves.
    static LIB_EVENT_ENTRY: AtomicU64 = AtomicU64::new(0);
    static LIB_SYSCALL_ENTRY: AtomicU64 = AtomicU64::new(0);

    global_asm!(
        ".pushsection .text.pv_bench, \"ax\", @progbits",
        // #PF from the benchmark's 3-byte load `mov rax, [rsi]`: Xen's frame
        // is rcx, r11, error code, rip, cs, rflags, rsp, ss. Take rcx and
        // r11 back, turn the error code slot into iret's flags (0), skip the
        // load, and iret (the hypercall page's stub pushes rcx, r11, rax).
        ".balign 16",
        ".globl pv_bench_pf_entry",
        "pv_bench_pf_entry:",
        "    pop rcx",
        "    pop r11",
        "    mov qword ptr [rsp], 0",
        "    add qword ptr [rsp + 8], 3",
        "    jmp hypercall_page + {iret}",
        // syscall from user mode: rcx, r11, rip, cs, rflags, rsp, ss. A
        // non-zero rax returns at once with VGCF_in_syscall (rcx/r11 are
        // the caller's to lose, as with sysret): drop the rcx slot, make
        // the r11 slot the flags, iret. rax = 0 (exit) goes to the library.
        ".balign 16",
        ".globl pv_bench_syscall_entry",
        "pv_bench_syscall_entry:",
        "    test rax, rax",
        "    jz 2f",
        "    add rsp, 8",
        "    mov qword ptr [rsp], {in_syscall}",
        "    jmp hypercall_page + {iret}",
        "2:  jmp qword ptr [rip + {lib_syscall}]",
        // Event upcall: note the TSC, then the library's entry does the
        // rest (scan, clear, handlers, iret). Clobbers nothing.
        ".balign 16",
        ".globl pv_bench_event_entry",
        "pv_bench_event_entry:",
        "    push rax",
        "    push rdx",
        "    lfence",
        "    rdtsc",
        "    shl rdx, 32",
        "    or rax, rdx",
        "    mov qword ptr [rip + {event_tsc}], rax",
        "    pop rdx",
        "    pop rax",
        "    jmp qword ptr [rip + {lib_event}]",
        ".popsection",
        // The user program (position independent, copied to CODE_VA): times
        // ITERS + WARMUP `syscall`s into DATA_VA + 8.., the count at
        // DATA_VA, then exits.
        ".pushsection .rodata.pv_bench_user, \"a\", @progbits",
        ".globl pv_bench_user_start",
        "pv_bench_user_start:",
        "    movabs rbx, {data}",
        "    mov r12, [rbx]",
        "    lea r14, [rbx + 8]",
        "3:  lfence",
        "    rdtsc",
        "    lfence",
        "    shl rdx, 32",
        "    or rax, rdx",
        "    mov r13, rax",
        "    mov eax, 1",
        "    syscall",
        "    lfence",
        "    rdtsc",
        "    lfence",
        "    shl rdx, 32",
        "    or rax, rdx",
        "    sub rax, r13",
        "    mov [r14], rax",
        "    add r14, 8",
        "    dec r12",
        "    jnz 3b",
        "    xor eax, eax",
        "    xor edi, edi",
        "    syscall",
        "    ud2",
        ".globl pv_bench_user_end",
        "pv_bench_user_end:",
        ".popsection",
        iret = const Hypercall::Iret as usize * hypercall_abi::hypercall::HYPERCALL_SLOT_SIZE,
        in_syscall = const hypercall_abi::arch_x86::VGCF_IN_SYSCALL,
        lib_syscall = sym LIB_SYSCALL_ENTRY,
        lib_event = sym LIB_EVENT_ENTRY,
        event_tsc = sym EVENT_TSC,
        data = const DATA_VA,
    );

    extern "C" {
        fn pv_bench_pf_entry();
        fn pv_bench_syscall_entry();
        fn pv_bench_event_entry();
        static pv_bench_user_start: u8;
        static pv_bench_user_end: u8;
    }

    fn addr(f: unsafe extern "C" fn()) -> u64 {
        f as *const () as usize as u64
    }

    // ---- The benchmarks ----------------------------------------------------

    fn bench_hypercalls(c: &mut Checks, ovh: u64) {
        let mut s = [0u64; ITERS];
        // SAFETY: an unknown hypercall number with no arguments: Xen
        // answers -ENOSYS and touches nothing.
        let r = unsafe { hypercall_raw(UNKNOWN_HYPERCALL, [0; 5]) };
        c.check(
            "hypercall 63 is unknown",
            r == -38,
            format_args!("returned {r}"),
        );
        time(&mut s, || {
            // SAFETY: as above.
            unsafe { hypercall_raw(UNKNOWN_HYPERCALL, [0; 5]) };
        });
        report("hypercall_enosys", &mut s, ovh, None);

        let v = xen::version();
        c.ok("xen_version(XENVER_version)", v);
        time(&mut s, || {
            // SAFETY: XENVER_version takes no buffer (the second argument
            // is ignored) and only returns the version in rax.
            unsafe { hypercall2(Hypercall::XenVersion, 0, 0) };
        });
        report("null_hypercall", &mut s, ovh, None);
    }

    fn bench_mmu_update(c: &mut Checks, ovh: u64) {
        let (Some(a), Some(b)) = (
            c.ok("a frame to map", frame::alloc_frame()),
            c.ok("another frame to map", frame::alloc_frame()),
        ) else {
            return;
        };
        if c.ok(
            "map the benchmark region (creating its L1)",
            frame::map_kernel(MMU_VA, a.mfn, PteFlags::KERNEL_RW),
        )
        .is_none()
        {
            return;
        }
        let l1 = frame::with_pt(|pt| mm::find_l1(pt, frame::kernel_l4(), MMU_VA));
        let Some(Some(l1)) = c.ok("find its L1", l1) else {
            return;
        };
        let mut reqs = [MmuUpdate::default(); MMU_BATCH];
        let fill = |reqs: &mut [MmuUpdate; MMU_BATCH], mfn: Option<u64>| {
            for (i, r) in reqs.iter_mut().enumerate() {
                let pte = mfn.map_or(Pte(0), |m| Pte::new(m, PteFlags::KERNEL_RW));
                *r = mmu::pt_update(l1, i, pte);
            }
        };
        // Every entry present, mapping `a`; then alternate b, a, b, ...
        fill(&mut reqs, Some(a.mfn));
        if c.ok("mmu_update of 512 entries", mmu::mmu_update(&reqs))
            .is_none()
        {
            return;
        }
        let mut s = [0u64; MMU_BATCHES];
        let mut failed = None;
        for (i, slot) in (0..WARMUP + MMU_BATCHES).map(|i| (i, i.checked_sub(WARMUP))) {
            fill(&mut reqs, Some(if i % 2 == 0 { b.mfn } else { a.mfn }));
            let t0 = tsc();
            let r = mmu::mmu_update(&reqs);
            let dt = tsc().wrapping_sub(t0);
            match r {
                Ok(n) if n as usize == MMU_BATCH => {}
                r => {
                    failed = Some(r);
                    break;
                }
            }
            if let Some(k) = slot {
                s[k] = dt;
            }
        }
        let batch_ok = match failed {
            Some(r) => {
                c.check(
                    "every batch did all 512 updates",
                    false,
                    format_args!("{r:?}"),
                );
                false
            }
            None => true,
        };
        // One entry (slot 0) per call, a then b then a ...
        let mut one = [MmuUpdate::default(); 1];
        let mut s1 = [0u64; ITERS];
        let mut failed = None;
        let mut k = 0usize;
        time(&mut s1, || {
            let mfn = if k.is_multiple_of(2) { b.mfn } else { a.mfn };
            k += 1;
            one[0] = mmu::pt_update(l1, 0, Pte::new(mfn, PteFlags::KERNEL_RW));
            match mmu::mmu_update(&one) {
                Ok(1) => {}
                r => failed = failed.or(Some(r)),
            }
        });
        let one_ok = c.check(
            "every single-entry mmu_update did its update",
            failed.is_none(),
            format_args!("{failed:?}"),
        );
        // SAFETY: a and b are frames of ours, direct-mapped writable: a
        // marker in each shows which one MMU_VA maps.
        unsafe {
            core::ptr::write_volatile(a.va as *mut u64, 0xaaaa);
            core::ptr::write_volatile(b.va as *mut u64, 0xbbbb);
        }
        // The same entry through update_va_mapping (its linear address,
        // the current address space), with a local INVLPG as Linux's
        // set_pte_at + flush does.
        let mut s2 = [0u64; ITERS];
        let mut failed = None;
        time(&mut s2, || {
            let mfn = if k.is_multiple_of(2) { b.mfn } else { a.mfn };
            k += 1;
            let pte = Pte::new(mfn, PteFlags::KERNEL_RW);
            if let Err(e) = mmu::update_va_mapping(MMU_VA, pte.0, mmu::Flush::InvlpgLocal) {
                failed = failed.or(Some(e));
            }
        });
        // SAFETY: MMU_VA maps a or b, both frames of ours, readable.
        let seen = unsafe { core::ptr::read_volatile(MMU_VA as *const u64) };
        let want = if k.is_multiple_of(2) { a.va } else { b.va };
        // SAFETY: as above, through the direct map.
        let want = unsafe { core::ptr::read_volatile(want as *const u64) };
        let uvm_ok = c.check(
            "update_va_mapping took effect at once (INVLPG)",
            failed.is_none() && seen == want,
            format_args!("{failed:?}, read {seen:#x}, want {want:#x}"),
        );
        fill(&mut reqs, None);
        c.ok("unmap the region", mmu::mmu_update(&reqs));
        c.ok("flush", mmu::tlb_flush_local());
        if one_ok {
            report("mmu_update_1", &mut s1, ovh, None);
        }
        if batch_ok {
            report(
                "mmu_update_512",
                &mut s,
                ovh,
                Some(("pte", MMU_BATCH as u64)),
            );
        }
        if uvm_ok {
            report("update_va_mapping", &mut s2, ovh, None);
        }
    }

    /// pv-guest-lib's trap table with vector `v` going to `entry`.
    fn trap_table_with(v: u8, entry: u64) -> [TrapInfo; 33] {
        let all = trap::trap_ctxt();
        let mut t = [TrapInfo::default(); 33];
        let mut n = 0;
        for (vec, ti) in all.iter().enumerate().take(32) {
            if ti.address == 0 {
                continue;
            }
            t[n] = *ti;
            if vec == usize::from(v) {
                t[n].address = entry;
            }
            n += 1;
        }
        t
    }

    fn bench_page_fault(c: &mut Checks, ovh: u64) {
        let table = trap_table_with(trap::PAGE_FAULT, addr(pv_bench_pf_entry));
        // SAFETY: every entry is pv-guest-lib's stub for its vector except
        // #PF, which goes to pv_bench_pf_entry, written for Xen's #PF frame;
        // the table ends with a zero entry. Only the loop below faults.
        if c.ok("set_trap_table with the bench #PF entry", unsafe {
            xen::set_trap_table(&table)
        })
        .is_none()
        {
            return;
        }
        let mut s = [0u64; ITERS];
        time(&mut s, || {
            // SAFETY: FAULT_VA is never mapped: the load (encoded as the 3
            // bytes pv_bench_pf_entry skips) faults, the handler resumes
            // after it with every register as it was.
            unsafe {
                asm!(
                    ".byte 0x48, 0x8b, 0x06", // mov rax, [rsi]
                    in("rsi") FAULT_VA,
                    out("rax") _,
                    out("rcx") _,
                    out("r11") _,
                )
            }
        });
        c.ok("restore the trap table", trap::install_trap_table());
        let cr2 = shared::get()
            .and_then(|s| s.vcpu(0))
            .map_or(0, |v| v.cr2.load(Ordering::Acquire));
        c.check(
            "the faults were page faults at the unmapped address",
            cr2 == FAULT_VA,
            format_args!("cr2 {cr2:#x}"),
        );
        report("pf_bounce", &mut s, ovh, None);
    }

    fn on_syscall(f: &mut TrapFrame, _space: &AddressSpace) -> Syscall {
        if f.rax == SYS_EXIT {
            Syscall::Exit(f.rdi)
        } else {
            Syscall::Return(0)
        }
    }

    fn on_user_fault(_f: &mut TrapFrame, _space: &AddressSpace) -> bool {
        false
    }

    fn bench_syscall(c: &mut Checks, ovh: u64) {
        let Some(space) = c.ok("a user address space", AddressSpace::new()) else {
            return;
        };
        // SAFETY: both symbols delimit one read-only blob in .rodata.
        let prog = unsafe {
            let start = &raw const pv_bench_user_start;
            let end = &raw const pv_bench_user_end;
            core::slice::from_raw_parts(start, end as usize - start as usize)
        };
        if c.ok("load the user program", user::load(&space, CODE_VA, prog))
            .is_none()
        {
            return;
        }
        let mut data = [None; DATA_PAGES as usize];
        for (i, d) in data.iter_mut().enumerate() {
            let Some(f) = c.ok("a sample page", frame::alloc_frame()) else {
                return;
            };
            let va = DATA_VA + i as u64 * 4096;
            if c.ok(
                "map it for the program",
                space.map(va, f.mfn, PteFlags::USER_RW),
            )
            .is_none()
            {
                return;
            }
            *d = Some(f);
        }
        let Some(top) = c.ok("its stack", user::map_zeroed(&space, STACK_VA, 1)) else {
            return;
        };
        let [Some(d0), Some(d1)] = data else {
            return;
        };
        // The two frames are contiguous in the program's view only; the
        // kernel reads them through the direct map one by one.
        let total = WARMUP + ITERS;
        let per_page = 4096 / 8;
        if total + 1 > per_page * DATA_PAGES as usize {
            c.error(format_args!("sample buffer too small"));
            return;
        }
        let word = |i: usize| -> u64 {
            let (f, k) = if i < per_page {
                (&d0, i)
            } else {
                (&d1, i - per_page)
            };
            // SAFETY: a frame of ours, direct-mapped; k < 512.
            unsafe { core::ptr::read_volatile((f.va as *const u64).add(k)) }
        };
        // SAFETY: the first word of d0 (DATA_VA in the program), ours.
        unsafe { core::ptr::write_volatile(d0.va as *mut u64, total as u64) };

        let lib = trap::callback_entries().2;
        LIB_SYSCALL_ENTRY.store(lib, Ordering::SeqCst);
        // SAFETY: pv_bench_syscall_entry is written for Xen's syscall
        // frame: it returns with the iret hypercall or continues in the
        // library's entry (whose address it reads from LIB_SYSCALL_ENTRY).
        let r = unsafe {
            xen::callback_register(
                CallbackType::Syscall,
                addr(pv_bench_syscall_entry),
                CALLBACKF_MASK_EVENTS,
            )
        };
        if c.ok("register the bench syscall entry", r).is_none() {
            return;
        }
        let exit = user::run(&space, CODE_VA, top, on_syscall, on_user_fault);
        c.ok("restore the callbacks", trap::install_callbacks());
        if !c.check(
            "the program ran its loop and exited",
            exit == UserExit::Exit(0),
            format_args!("{exit:?}"),
        ) {
            return;
        }
        let mut s = [0u64; ITERS];
        for (k, v) in s.iter_mut().enumerate() {
            *v = word(1 + WARMUP + k);
        }
        report("syscall_bounce", &mut s, ovh, None);
    }

    static UPCALLS: AtomicU64 = AtomicU64::new(0);

    fn on_event(_port: events::Port, _data: usize) {
        UPCALLS.fetch_add(1, Ordering::SeqCst);
    }

    fn bench_evtchn(c: &mut Checks, ovh: u64) {
        let port = match events::bind_ipi(0) {
            Ok(p) => p,
            Err(e) if e == Errno::ENOSYS => {
                println!(
                    "{}",
                    Line::NotAvailable {
                        name: "evtchn_upcall",
                        why: format_args!("event channels: {e}"),
                    }
                );
                return;
            }
            Err(e) => {
                c.check("EVTCHNOP_bind_ipi", false, format_args!("{e}"));
                return;
            }
        };
        let _ = events::set_handler(port, on_event, 0);
        LIB_EVENT_ENTRY.store(trap::callback_entries().0, Ordering::SeqCst);
        // SAFETY: pv_bench_event_entry notes the TSC and continues in the
        // library's event entry, which it reads from LIB_EVENT_ENTRY.
        let r =
            unsafe { xen::callback_register(CallbackType::Event, addr(pv_bench_event_entry), 0) };
        if c.ok("register the bench event entry", r).is_none() {
            return;
        }
        events::irq_enable();
        let mut s = [0u64; ITERS];
        let mut missed = 0u32;
        for i in 0..WARMUP + ITERS {
            EVENT_TSC.store(0, Ordering::SeqCst);
            let t0 = tsc();
            let r = events::send(port);
            let mut t1 = EVENT_TSC.load(Ordering::SeqCst);
            if r.is_err() {
                c.ok("EVTCHNOP_send", r);
                break;
            }
            if t1 == 0 {
                // Not delivered on the way back from the send: wait a bit.
                missed += 1;
                for _ in 0..1000 {
                    let _ = xen::sched_yield();
                    t1 = EVENT_TSC.load(Ordering::SeqCst);
                    if t1 != 0 {
                        break;
                    }
                }
            }
            if let Some(k) = i.checked_sub(WARMUP) {
                s[k] = t1.wrapping_sub(t0);
            }
        }
        c.ok("restore the callbacks", trap::install_callbacks());
        let _ = events::close(port);
        let n = UPCALLS.load(Ordering::SeqCst);
        if !c.check(
            "every send reached the port's handler",
            n == (WARMUP + ITERS) as u64,
            format_args!("{n} upcalls, {missed} not on the send's return"),
        ) {
            return;
        }
        report("evtchn_upcall", &mut s, ovh, None);
    }

    /// How long to wait for one timer upcall before giving up (TSC
    /// cycles: seconds at any TSC rate QEMU gives).
    const TIMER_PATIENCE: u64 = 10_000_000_000;

    fn bench_timer(c: &mut Checks, ovh: u64) {
        let Some(port) = c.ok("bind VIRQ_TIMER", xtime::init_vcpu_timer(0)) else {
            return;
        };
        LIB_EVENT_ENTRY.store(trap::callback_entries().0, Ordering::SeqCst);
        // SAFETY: as in bench_evtchn.
        let r =
            unsafe { xen::callback_register(CallbackType::Event, addr(pv_bench_event_entry), 0) };
        if c.ok("register the bench event entry", r).is_none() {
            return;
        }
        events::irq_enable();
        let ticks0 = xtime::ticks(0);
        let mut s = [0u64; ITERS];
        let mut late = 0u32;
        let mut lost = false;
        for i in 0..WARMUP + ITERS {
            EVENT_TSC.store(0, Ordering::SeqCst);
            // A deadline that is already due when the hypervisor sees it:
            // the figure is the hypervisor's path from arming the timer to
            // the guest's upcall, not a wait.
            let deadline = xtime::now_ns().max(1);
            let t0 = tsc();
            let r = xtime::set_timer_op(deadline);
            let mut t1 = EVENT_TSC.load(Ordering::SeqCst);
            if r.is_err() {
                c.ok("set_timer_op", r);
                lost = true;
                break;
            }
            if t1 == 0 {
                late += 1;
                while t1 == 0 && tsc().wrapping_sub(t0) < TIMER_PATIENCE {
                    core::hint::spin_loop();
                    t1 = EVENT_TSC.load(Ordering::SeqCst);
                }
                if t1 == 0 {
                    lost = true;
                    break;
                }
            }
            if let Some(k) = i.checked_sub(WARMUP) {
                s[k] = t1.wrapping_sub(t0);
            }
        }
        let _ = xtime::set_timer_op(0);
        c.ok("restore the callbacks", trap::install_callbacks());
        let n = xtime::ticks(0).wrapping_sub(ticks0);
        let _ = port;
        if !c.check(
            "every due timer reached VIRQ_TIMER's handler",
            !lost && n >= (WARMUP + ITERS) as u64,
            format_args!("{n} timer upcalls, {late} not on set_timer_op's return"),
        ) {
            return;
        }
        // Xen runs a due timer before it returns to the guest (its timer
        // softirq), so the upcall comes on set_timer_op's return, not at
        // the next tick; a tick or an interrupt in between may delay the
        // odd one.
        if !c.check(
            "due timers fire on set_timer_op's return, as in Xen",
            late as usize * 10 <= WARMUP + ITERS,
            format_args!("{late} of {} only later", WARMUP + ITERS),
        ) {
            return;
        }
        report("timer_upcall", &mut s, ovh, None);
    }

    fn grant_na(e: impl core::fmt::Display) {
        for name in ["grant_map_unmap", "grant_copy_4k"] {
            println!(
                "{}",
                Line::NotAvailable {
                    name,
                    why: format_args!("grant tables: {e}"),
                }
            );
        }
    }

    fn bench_grants(c: &mut Checks, ovh: u64) {
        let (Some(src), Some(dst)) = (
            c.ok("a frame to grant", frame::alloc_frame()),
            c.ok("a frame to copy to", frame::alloc_frame()),
        ) else {
            return;
        };
        for k in 0..512u64 {
            // SAFETY: a frame of ours, direct-mapped writable; k < 512.
            unsafe { core::ptr::write_volatile((src.va as *mut u64).add(k as usize), k * 3) };
        }
        // The floor: the same 4 KiB moved by the guest itself.
        let mut s = [0u64; ITERS];
        time(&mut s, || {
            // SAFETY: two distinct frames of ours, direct-mapped, 4 KiB each.
            unsafe {
                core::ptr::copy_nonoverlapping(src.va as *const u8, dst.va as *mut u8, 4096);
                asm!("", options(nostack, preserves_flags));
            }
        });
        report("memcpy_4k", &mut s, ovh, None);

        let mut gt = match GrantTable::setup(1, GT_VA) {
            Ok(gt) => gt,
            Err(GrantError::Errno(e)) if e == Errno::ENOSYS => return grant_na(e),
            Err(e) => {
                c.check("GNTTABOP_setup_table", false, format_args!("{e}"));
                return;
            }
        };
        // Setting up the table again at the size it has (Xen answers with
        // its frames and changes nothing), and asking its size.
        let mut frames = [0u64; 1];
        let mut failed = None;
        time(&mut s, || {
            if let Err(e) = grant::setup_table(DOMID_SELF, &mut frames) {
                failed = failed.or(Some(e));
            }
        });
        if c.check(
            "GNTTABOP_setup_table again",
            failed.is_none() && frames[0] != 0,
            format_args!("{failed:?}, frame {:#x}", frames[0]),
        ) {
            report("grant_setup", &mut s, ovh, None);
        }
        let mut size = None;
        let mut failed = None;
        time(&mut s, || match grant::query_size(DOMID_SELF) {
            Ok(q) => size = Some(q),
            Err(e) => failed = failed.or(Some(e)),
        });
        if c.check(
            "GNTTABOP_query_size",
            failed.is_none() && size.is_some_and(|(n, max)| n >= 1 && max >= n),
            format_args!("{failed:?}, (frames, max) {size:?}"),
        ) {
            report("grant_query", &mut s, ovh, None);
        }
        let Some(gref) = c.ok(
            "grant a frame to ourselves",
            gt.grant_access(DOM0, src.mfn, false),
        ) else {
            return;
        };
        let mut failed = None;
        time(&mut s, || {
            if failed.is_some() {
                return;
            }
            match grant::map(DOM0, gref, GRANT_VA, grant_table_flags::HOST) {
                Ok(m) => {
                    if let Err(e) = grant::unmap(m.handle, GRANT_VA, 0) {
                        failed = Some(e);
                    }
                }
                Err(e) => failed = Some(e),
            }
        });
        match failed {
            Some(e) => {
                c.check("grant map+unmap", false, format_args!("{e}"));
            }
            None => {
                report("grant_map_unmap", &mut s, ovh, None);
            }
        }
        // SAFETY: dst is ours; cleared so the copy's result shows.
        unsafe { core::ptr::write_bytes(dst.va as *mut u8, 0, 4096) };
        let mut failed = None;
        time(&mut s, || {
            if failed.is_some() {
                return;
            }
            let r = grant::copy(
                CopyPtr::Grant {
                    dom: DOM0,
                    gref,
                    offset: 0,
                },
                CopyPtr::Frame {
                    mfn: dst.mfn,
                    offset: 0,
                },
                4096,
            );
            if let Err(e) = r {
                failed = Some(e);
            }
        });
        // SAFETY: both frames ours, direct-mapped.
        let same = unsafe {
            core::slice::from_raw_parts(src.va as *const u8, 4096)
                == core::slice::from_raw_parts(dst.va as *const u8, 4096)
        };
        match failed {
            Some(e) => {
                c.check("grant copy 4 KiB", false, format_args!("{e}"));
            }
            None => {
                if c.check(
                    "the grant copy moved the page",
                    same,
                    format_args!("{} copies", WARMUP + ITERS),
                ) {
                    report("grant_copy_4k", &mut s, ovh, None);
                }
            }
        }
        c.ok("end the grant", gt.end_access(gref));
    }

    mod grant_table_flags {
        pub const HOST: u32 = hypercall_abi::grant_table::GNTMAP_HOST_MAP;
    }

    fn main(si: &'static StartInfo) -> ! {
        println!("pv-bench: PV microbenchmarks (TSC cycles; median, min)");
        let mut c = Checks::new("pv-bench");
        c.ok("map shared_info", shared::map(si.shared_info).map(|_| ()));
        c.ok("install traps and callbacks", trap::install());
        c.ok("frame allocator", frame::init());
        events::irq_enable();

        if let (Some(a), Some(b)) = (
            c.ok("a frame for the speed reference", frame::alloc_frame()),
            c.ok(
                "another frame for the speed reference",
                frame::alloc_frame(),
            ),
        ) {
            REF_SRC.store(a.va, Ordering::Relaxed);
            REF_DST.store(b.va, Ordering::Relaxed);
        }
        let ovh = overhead();
        c.note(format_args!(
            "timing overhead {ovh} cycles (subtracted from every figure)"
        ));
        // A profiling build (`OXEN_PV_BENCH_LOOP=grants cargo build ...`)
        // repeats one group forever, for a sampling profiler to watch.
        match option_env!("OXEN_PV_BENCH_LOOP") {
            Some("hypercalls") => loop {
                bench_hypercalls(&mut c, ovh)
            },
            Some("mmu") => loop {
                bench_mmu_update(&mut c, ovh)
            },
            Some("grants") => loop {
                bench_grants(&mut c, ovh)
            },
            _ => {}
        }
        bench_hypercalls(&mut c, ovh);
        bench_mmu_update(&mut c, ovh);
        bench_page_fault(&mut c, ovh);
        bench_syscall(&mut c, ovh);
        bench_evtchn(&mut c, ovh);
        bench_timer(&mut c, ovh);
        bench_grants(&mut c, ovh);
        c.finish()
    }
}
