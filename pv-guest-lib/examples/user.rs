//! A ring-3 program with its own page tables: it prints through a system
//! call and exits.
//!
//! ```text
//! cargo build --release --target x86_64-unknown-none -p pv-guest-lib --example user
//! scripts/run --batch --dom0 target/x86_64-unknown-none/release/examples/user </dev/null
//! ```

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    use core::arch::global_asm;

    use pv_guest_lib::frame::AddressSpace;
    use pv_guest_lib::trap::TrapFrame;
    use pv_guest_lib::user::{self, Syscall, UserExit};
    use pv_guest_lib::{println, runtime, StartInfo, Verdict};

    pv_guest_lib::entry!(kmain);

    // write(msg, len); exit(7). Position independent: it is copied.
    global_asm!(
        ".pushsection .rodata.example_user, \"a\", @progbits",
        "example_user_start:",
        "    lea rdi, [rip + 2f]",
        "    mov esi, 14",
        "    mov eax, 1",
        "    syscall",
        "    mov edi, 7",
        "    xor eax, eax",
        "    syscall",
        "2:  .ascii \"hi from user!\\n\"",
        "example_user_end:",
        ".popsection",
    );

    extern "C" {
        static example_user_start: u8;
        static example_user_end: u8;
    }

    fn syscall(f: &mut TrapFrame, space: &AddressSpace) -> Syscall {
        match f.rax {
            0 => Syscall::Exit(f.rdi),
            1 => {
                let mut buf = [0u8; 64];
                let n = (f.rsi as usize).min(buf.len());
                if space.read(f.rdi, &mut buf[..n]).is_ok() {
                    println!(
                        "user: {}",
                        pv_guest_lib::util::utf8_prefix(&buf[..n]).trim_end()
                    );
                }
                Syscall::Return(n as u64)
            }
            _ => Syscall::Return(u64::MAX),
        }
    }

    fn fault(_f: &mut TrapFrame, _space: &AddressSpace) -> bool {
        false
    }

    fn kmain(_si: &'static StartInfo) -> ! {
        let mut v = Verdict::new();
        if let Err(e) = runtime::init() {
            v.fail(format_args!("runtime::init: {e}"));
            v.finish();
        }
        let start = &raw const example_user_start;
        let len = &raw const example_user_end as usize - start as usize;
        // SAFETY: the two symbols delimit one blob in .rodata.
        let code = unsafe { core::slice::from_raw_parts(start, len) };
        let exit = AddressSpace::new().and_then(|space| {
            user::load(&space, 0x40_0000, code)?;
            let top = user::map_zeroed(&space, 0x7fff_0000, 1)?;
            Ok(user::run(&space, 0x40_0000, top, syscall, fault))
        });
        println!("user: the program ended: {exit:?}");
        v.check(exit == Ok(UserExit::Exit(7)), format_args!("{exit:?}"));
        v.finish()
    }
}
