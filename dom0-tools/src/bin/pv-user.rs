//! Test Dom0: a ring-3 user program with its own page tables.
//!
//! The kernel builds a user address space (a second, pinned L4 installed
//! with `MMUEXT_NEW_USER_BASEPTR`), copies a small position-independent
//! program into it, and enters user mode with the `iret` hypercall. The
//! program makes system calls (`syscall`, bounced to the registered
//! syscall callback; the kernel returns with `VGCF_in_syscall`), writes to
//! an unmapped page (the page fault reaches the kernel, which maps a page
//! and resumes it) and exits. A second program reads a kernel address,
//! which its page tables do not map: the fault ends it.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    use core::arch::global_asm;
    use core::sync::atomic::{AtomicU64, Ordering};

    use dom0_tools::pvtest::Checks;
    use pv_guest_lib::frame::AddressSpace;
    use pv_guest_lib::layout::VIRT_BASE;
    use pv_guest_lib::trap::{self, TrapFrame};
    use pv_guest_lib::user::{self, Syscall, UserExit};
    use pv_guest_lib::{println, runtime, StartInfo};

    pv_guest_lib::entry!(main);

    const CODE_VA: u64 = 0x40_0000;
    const STACK_VA: u64 = 0x7fff_0000;
    const DEMAND_VA: u64 = 0x1000_0000;
    const SYS_EXIT: u64 = 0;
    const SYS_WRITE: u64 = 1;
    const SYS_MAGIC: u64 = 2;
    const MAGIC: u64 = 42;
    const MSG: &str = "hello from ring 3\n";
    const ENOSYS: u64 = (-38i64) as u64;

    // The user programs: position independent, copied to CODE_VA.
    global_asm!(
        ".pushsection .rodata.user_progs, \"a\", @progbits",
        ".globl user_prog_start",
        "user_prog_start:",
        "    lea rdi, [rip + 9f]",
        "    mov esi, 18",
        "    mov eax, 1",
        "    syscall",
        "    mov r12, rax",
        "    mov eax, 2",
        "    syscall",
        "    mov r13, rax",
        "    mov eax, 99",
        "    syscall",
        "    mov r15, rax",
        "    movabs rbx, 0x10000000",
        "    mov qword ptr [rbx], 0x77",
        "    mov r14, [rbx]",
        "    lea rdi, [r12 + r13]",
        "    add rdi, r14",
        "    cmp r15, -38",
        "    je 8f",
        "    add rdi, 1000",
        "8:",
        "    xor eax, eax",
        "    syscall",
        "    ud2",
        "9:",
        "    .ascii \"hello from ring 3\\n\"",
        ".globl user_prog_end",
        "user_prog_end:",
        ".globl user_bad_start",
        "user_bad_start:",
        "    movabs rbx, 0xffffffff80000000",
        "    mov rax, [rbx]",
        "    xor eax, eax",
        "    xor edi, edi",
        "    syscall",
        ".globl user_bad_end",
        "user_bad_end:",
        ".popsection",
    );

    extern "C" {
        static user_prog_start: u8;
        static user_prog_end: u8;
        static user_bad_start: u8;
        static user_bad_end: u8;
    }

    fn bytes(start: *const u8, end: *const u8) -> &'static [u8] {
        // SAFETY: both symbols delimit one read-only blob in .rodata.
        unsafe { core::slice::from_raw_parts(start, end as usize - start as usize) }
    }

    static SYSCALLS: AtomicU64 = AtomicU64::new(0);
    static SYSCALL_CS: AtomicU64 = AtomicU64::new(0);
    static SYSCALL_IF: AtomicU64 = AtomicU64::new(0);
    static WROTE_OK: AtomicU64 = AtomicU64::new(0);
    static FAULTS: AtomicU64 = AtomicU64::new(0);
    static FAULT_CR2: AtomicU64 = AtomicU64::new(0);
    static FAULT_EC: AtomicU64 = AtomicU64::new(0);
    static FAULT_CS: AtomicU64 = AtomicU64::new(0);

    fn syscall(f: &mut TrapFrame, space: &AddressSpace) -> Syscall {
        SYSCALLS.fetch_add(1, Ordering::SeqCst);
        SYSCALL_CS.store(f.cs, Ordering::SeqCst);
        SYSCALL_IF.store(f.rflags & 0x200, Ordering::SeqCst);
        match f.rax {
            SYS_EXIT => Syscall::Exit(f.rdi),
            SYS_WRITE => {
                let mut buf = [0u8; 64];
                let n = (f.rsi as usize).min(buf.len());
                match space.read(f.rdi, &mut buf[..n]) {
                    Ok(()) => {
                        let s = pv_guest_lib::util::utf8_prefix(&buf[..n]);
                        WROTE_OK.store(u64::from(s == MSG), Ordering::SeqCst);
                        println!("pv-user: the program says: {}", s.trim_end());
                        Syscall::Return(n as u64)
                    }
                    Err(_) => Syscall::Return((-14i64) as u64),
                }
            }
            SYS_MAGIC => Syscall::Return(MAGIC),
            _ => Syscall::Return(ENOSYS),
        }
    }

    fn fault(f: &mut TrapFrame, space: &AddressSpace) -> bool {
        FAULTS.fetch_add(1, Ordering::SeqCst);
        let cr2 = f.cr2();
        FAULT_CR2.store(cr2, Ordering::SeqCst);
        FAULT_EC.store(f.error_code, Ordering::SeqCst);
        FAULT_CS.store(f.cs, Ordering::SeqCst);
        if f.vector() == u64::from(trap::PAGE_FAULT) && cr2 & !0xfff == DEMAND_VA {
            return user::map_zeroed(space, DEMAND_VA, 1).is_ok();
        }
        false
    }

    fn main(_si: &'static StartInfo) -> ! {
        println!("pv-user: Oxen PV user-mode test (Xen 4.17 semantics)");
        let mut c = Checks::new("pv-user");
        if c.ok(
            "runtime (shared_info, traps, memory, heap, timer)",
            runtime::init(),
        )
        .is_none()
        {
            c.finish()
        }
        let Some(space) = c.ok("a user address space (new L4, pinned)", AddressSpace::new()) else {
            c.finish()
        };
        let prog = bytes(&raw const user_prog_start, &raw const user_prog_end);
        c.ok(
            "load the program (user, read-only)",
            user::load(&space, CODE_VA, prog),
        );
        let Some(top) = c.ok("map its stack", user::map_zeroed(&space, STACK_VA, 2)) else {
            c.finish()
        };
        let exit = user::run(&space, CODE_VA, top, syscall, fault);
        let want = MSG.len() as u64 + MAGIC + 0x77;
        c.check(
            "the program exited with its code",
            exit == UserExit::Exit(want),
            format_args!("{exit:?}, want Exit({want})"),
        );
        c.check(
            "four system calls reached the kernel",
            SYSCALLS.load(Ordering::SeqCst) == 4,
            format_args!("{}", SYSCALLS.load(Ordering::SeqCst)),
        );
        let cs = SYSCALL_CS.load(Ordering::SeqCst);
        c.check(
            "syscall frame: user cs (0xe033), IF set",
            cs as u16 == 0xe033 && SYSCALL_IF.load(Ordering::SeqCst) != 0,
            format_args!("cs {cs:#x}"),
        );
        c.check(
            "the kernel read the program's buffer",
            WROTE_OK.load(Ordering::SeqCst) == 1,
            format_args!("{}", WROTE_OK.load(Ordering::SeqCst)),
        );
        c.check(
            "the page fault reached the kernel once",
            FAULTS.load(Ordering::SeqCst) == 1 && FAULT_CR2.load(Ordering::SeqCst) == DEMAND_VA,
            format_args!(
                "{} faults, cr2 {:#x}",
                FAULTS.load(Ordering::SeqCst),
                FAULT_CR2.load(Ordering::SeqCst)
            ),
        );
        let ec = FAULT_EC.load(Ordering::SeqCst);
        c.check(
            "user write fault: error code has USER|WRITE, frame cs is user",
            ec & (trap::pf::USER | trap::pf::WRITE) == trap::pf::USER | trap::pf::WRITE
                && FAULT_CS.load(Ordering::SeqCst) as u16 == 0xe033,
            format_args!("ec {ec:#x}, cs {:#x}", FAULT_CS.load(Ordering::SeqCst)),
        );

        // Isolation: the kernel is not mapped in the user's page tables.
        let Some(space2) = c.ok("a second address space", AddressSpace::new()) else {
            c.finish()
        };
        let bad = bytes(&raw const user_bad_start, &raw const user_bad_end);
        c.ok(
            "load a program that reads kernel memory",
            user::load(&space2, CODE_VA, bad),
        );
        let top2 = user::map_zeroed(&space2, STACK_VA, 1).unwrap_or(STACK_VA);
        let exit = user::run(&space2, CODE_VA, top2, syscall, fault);
        c.check(
            "reading the kernel faults and ends the program",
            matches!(
                exit,
                UserExit::Fault {
                    vector: 14,
                    cr2: VIRT_BASE,
                    ..
                }
            ),
            format_args!("{exit:?}"),
        );
        c.check(
            "the kernel carries on",
            pv_guest_lib::time::now_ns() > 0,
            format_args!("{} ms", pv_guest_lib::time::now_ns() / 1_000_000),
        );
        c.finish()
    }
}
