//! Boot-time self-measurement of a bare `syscall`/`sysret` pair: the floor
//! that `scripts/bench` sets the PV figures (hypercall round trip, bounces,
//! upcalls) against.
//!
//! A PV guest cannot execute `sysret` (its kernel runs in ring 3), so the
//! cheapest round trip a guest can time already goes through xen-core's
//! entry and exit paths — that *is* the null hypercall. The honest floor is
//! the hardware's: the same CPU doing nothing but `syscall` from ring 3 and
//! `sysretq` straight back. xen-core measures that on itself, once, on the
//! boot CPU before the other CPUs, the APIC timer and Dom0 exist:
//!
//! 1. a 28-byte position-independent ring-3 stub is copied into a fresh
//!    frame and mapped user-executable (read-only) at [`STUB_VA`], in L4
//!    slot 0 of the idle page tables (a slot no guest shares and nothing
//!    else in xen-core uses), with three fresh table frames;
//! 2. with interrupts off, `MSR_LSTAR` points at a two-instruction ring-0
//!    handler (`test r15, r15; jnz exit; sysretq`), and ring 0 `sysretq`s
//!    into the stub with `IF` clear. The stub reads the TSC, runs
//!    `syscall` [`PAIRS_PER_SAMPLE`] times in a loop, reads the TSC again
//!    and `syscall`s with `r15 = 1`, which the handler takes back to the
//!    saved ring-0 stack;
//! 3. `LSTAR` is restored, the mapping removed, the frames freed.
//!
//! Each sample is one batch's TSC delta divided by the number of pairs (the
//! two `rdtsc`s and the loop's `dec`/`jnz` are amortised over the batch);
//! the log line gives the median and the minimum of [`SAMPLES`] batches:
//!
//! ```text
//! (XEN) [   0.190] bench: syscall/sysret floor 123 cycles (min 120; 33 x 64 pairs, ring 3 -> ring 0 -> ring 3)
//! ```
//!
//! Safety of the excursion: ring 3 runs with `IF` clear and touches no
//! memory but its own code page (its `rsp` is left pointing at the ring-0
//! stack, which ring 3 cannot access and never uses); an NMI (xen-core's
//! TLB-flush IPI; none can come before the APs start) runs on its IST
//! stack wherever it lands; the ring-0 handler uses no stack and no `gs`.
//! If anything needed is missing (no frame, slot 0 in use) the measurement
//! is skipped with a warning; it never stops the boot.

use core::arch::global_asm;
use core::sync::atomic::AtomicU64;

use super::instr::{self, msr};
use super::paging::{self, phys_to_virt};

/// Where the ring-3 stub runs (L4 slot 0, L3 slot 1).
const STUB_VA: u64 = 0x4000_0000;
/// `syscall`/`sysret` pairs per sample.
const PAIRS_PER_SAMPLE: u64 = 64;
/// Samples (odd, so the median is one of them).
const SAMPLES: usize = 33;
/// Present | writable | user (intermediate tables grant; the leaf restricts).
const TABLE_FLAGS: u64 = 0b111;
/// Present | user: read-only, executable.
const STUB_FLAGS: u64 = 0b101;

/// The ring-0 stack pointer to come back to (set by `floor_run`).
static FLOOR_SAVED_RSP: AtomicU64 = AtomicU64::new(0);

global_asm!(
    r#"
    .pushsection .text.syscall_floor, "ax", @progbits
    /* floor_run(stub_va: rdi, pairs: rsi) -> rax = TSC cycles for `pairs`
       syscall/sysret round trips. Interrupts must be off and LSTAR must
       point at floor_lstar. */
    .balign 16
    .globl floor_run
floor_run:
    push %rbx
    push %rbp
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, {saved}(%rip)
    mov %rsi, %r12
    xor %r15d, %r15d
    mov %rdi, %rcx
    mov $2, %r11d          /* rflags for ring 3: IF clear */
    sysretq

    /* The LSTAR target while measuring: straight back, unless r15 says the
       stub is done. */
    .balign 16
    .globl floor_lstar
floor_lstar:
    test %r15, %r15
    jnz 1f
    sysretq
1:  mov {saved}(%rip), %rsp
    mov %r13, %rax
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbp
    pop %rbx
    ret

    /* The ring-3 stub (copied to STUB_VA; position independent). In: r12 =
       pairs. Out (to floor_lstar's exit): r13 = cycles. */
    .popsection
    .pushsection .rodata.syscall_floor, "a", @progbits
    .globl floor_stub_start
floor_stub_start:
    lfence
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    mov %rax, %r13
2:  syscall
    dec %r12
    jnz 2b
    lfence
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    sub %r13, %rax
    mov %rax, %r13
    mov $1, %r15d
    syscall
    ud2
    .globl floor_stub_end
floor_stub_end:
    .popsection
    "#,
    saved = sym FLOOR_SAVED_RSP,
    options(att_syntax)
);

extern "C" {
    fn floor_run(stub_va: u64, pairs: u64) -> u64;
    fn floor_lstar();
    static floor_stub_start: u8;
    static floor_stub_end: u8;
}

fn index(va: u64, level: u32) -> usize {
    ((va >> (12 + 9 * (level - 1))) & 0x1ff) as usize
}

fn entry(table_maddr: u64, idx: usize) -> *mut u64 {
    (phys_to_virt(table_maddr) as *mut u64).wrapping_add(idx)
}

/// Measures the floor and logs it (see the module docs). Call once on the
/// boot CPU, after the frame allocator exists and before the other CPUs,
/// the timer and any guest.
pub fn measure_and_log() {
    let Some(frames) = crate::memory::alloc_frames::<4>() else {
        log::warn!("bench: syscall/sysret floor not measured (no free frame)");
        return;
    };
    let [l3, l2, l1, code] = frames.map(|m| m.maddr());
    let l4 = paging::idle_l4();
    let l4e = entry(l4, index(STUB_VA, 4));
    // SAFETY: the idle L4 is a live page-table page, direct-mapped; a plain
    // read of one entry.
    let slot_used = unsafe { l4e.read_volatile() } != 0;
    let mut samples = [0u64; SAMPLES];
    let mut ok = false;
    if slot_used {
        log::warn!("bench: syscall/sysret floor not measured (idle L4 slot 0 in use)");
    } else {
        for m in frames {
            crate::memory::clear_frame(m);
        }
        // SAFETY: both symbols delimit one read-only blob in .rodata.
        let stub = unsafe {
            let start = &raw const floor_stub_start;
            let end = &raw const floor_stub_end;
            core::slice::from_raw_parts(start, end as usize - start as usize)
        };
        // SAFETY: `code`, `l3`, `l2`, `l1` are frames we just allocated and
        // zeroed, direct-mapped and used by nothing else; the stub is far
        // smaller than a page; every index is < 512.
        unsafe {
            core::ptr::copy_nonoverlapping(
                stub.as_ptr(),
                phys_to_virt(code) as *mut u8,
                stub.len(),
            );
            entry(l1, index(STUB_VA, 1)).write_volatile(code | STUB_FLAGS);
            entry(l2, index(STUB_VA, 2)).write_volatile(l1 | TABLE_FLAGS);
            entry(l3, index(STUB_VA, 3)).write_volatile(l2 | TABLE_FLAGS);
            // Publish the subtree last: slot 0 of the idle L4 (checked empty
            // above) is in no guest's L4 and used by nothing else.
            l4e.write_volatile(l3 | TABLE_FLAGS);
        }
        instr::invlpg(STUB_VA);
        let flags = save_flags_cli();
        let lstar = instr::rdmsr(msr::LSTAR);
        // SAFETY: interrupts are off, this is the only CPU running, and no
        // guest exists yet: nothing but the stub's `syscall`s reaches LSTAR
        // until it is restored below.
        unsafe { instr::wrmsr(msr::LSTAR, floor_lstar as *const () as u64) };
        for s in samples.iter_mut() {
            // SAFETY: the stub is mapped user-executable at STUB_VA in the
            // live page tables, LSTAR points at floor_lstar and interrupts
            // are off (see the module docs for the ring-3 excursion).
            let cycles = unsafe { floor_run(STUB_VA, PAIRS_PER_SAMPLE) };
            *s = cycles / PAIRS_PER_SAMPLE;
        }
        // SAFETY: restoring the value cpu_init put there.
        unsafe { instr::wrmsr(msr::LSTAR, lstar) };
        restore_flags(flags);
        // SAFETY: as above; unhooking the subtree we added.
        unsafe { l4e.write_volatile(0) };
        // Drop every cached translation and paging-structure entry for it.
        // SAFETY: reloading the current CR3 (the idle L4, which maps xen-core).
        unsafe { instr::write_cr3(instr::read_cr3()) };
        ok = true;
    }
    crate::memory::free_frame_list(&frames);
    if ok {
        samples.sort_unstable();
        log::info!(
            "bench: syscall/sysret floor {} cycles (min {}; {} x {} pairs, ring 3 -> ring 0 -> ring 3)",
            samples[SAMPLES / 2],
            samples[0],
            SAMPLES,
            PAIRS_PER_SAMPLE
        );
    }
}

fn save_flags_cli() -> u64 {
    let f: u64;
    // SAFETY: reads RFLAGS and masks interrupts; no memory effects.
    unsafe { core::arch::asm!("pushfq", "pop {}", "cli", out(reg) f) };
    f
}

fn restore_flags(f: u64) {
    if f & (1 << 9) != 0 {
        // SAFETY: interrupts were on before `save_flags_cli`.
        unsafe { core::arch::asm!("sti", options(nomem, nostack)) };
    }
}
