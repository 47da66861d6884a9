//! Raw hypercalls: `call` into the hypercall page, or `syscall` directly.
//!
//! # Calling convention (x86_64 PV)
//!
//! The kernel's `XEN_ELFNOTE_HYPERCALL_PAGE` note names the page-aligned
//! 4 KiB symbol `hypercall_page` (in `.text`, filled with `int3` in the
//! image). The domain builder overwrites it with 128 32-byte stubs; stub `N`
//! is `push %rcx; push %r11; mov $N,%eax; syscall; pop %r11; pop %rcx; ret`.
//! [`hypercall0`]..[`hypercall5`] `call hypercall_page + N * 32` with the
//! arguments in `rdi, rsi, rdx, r10, r8`; the result comes back in `rax`.
//! Every argument register (and `r9`, `rcx`, `r11`) is treated as clobbered:
//! Xen's debug builds poison unused argument registers and continuations
//! rewrite them. Memory is clobbered too (the hypervisor reads and writes
//! guest buffers).
//!
//! [`hypercall_raw`] takes any number: below 128 it uses the page, otherwise
//! (the page has no slot for it) it executes `syscall` itself, which is what
//! the stub would do. It exists for test kernels that probe the hypervisor
//! with nonsense.
//!
//! # Safety
//!
//! A hypercall can change the caller's memory, page tables, trap handlers
//! and stacks, so all of these are `unsafe fn`: the caller promises that
//! whatever the hypervisor does with the arguments cannot break Rust's
//! guarantees (buffers valid for the access, handlers that exist, ...).
//! [`crate::xen`] wraps the common calls safely.
//!
//! On the host (`cargo test`) there is no hypervisor: calls go to a mock
//! that tests can install, and otherwise return `-ENOSYS`.

use crate::abi::errno::Errno as AbiErrno;
use crate::abi::hypercall::{Hypercall, HYPERCALL_PAGE_SLOTS, HYPERCALL_SLOT_SIZE};

/// Calls hypercall `nr` with no arguments.
///
/// # Safety
/// See the [module docs](self#safety).
#[inline]
pub unsafe fn hypercall0(nr: Hypercall) -> i64 {
    // SAFETY: the caller upholds this function's contract.
    unsafe { imp::page_call(nr as u64, [0; 5]) }
}

/// Calls hypercall `nr` with one argument.
///
/// # Safety
/// See the [module docs](self#safety).
#[inline]
pub unsafe fn hypercall1(nr: Hypercall, a1: u64) -> i64 {
    // SAFETY: the caller upholds this function's contract.
    unsafe { imp::page_call(nr as u64, [a1, 0, 0, 0, 0]) }
}

/// Calls hypercall `nr` with two arguments.
///
/// # Safety
/// See the [module docs](self#safety).
#[inline]
pub unsafe fn hypercall2(nr: Hypercall, a1: u64, a2: u64) -> i64 {
    // SAFETY: the caller upholds this function's contract.
    unsafe { imp::page_call(nr as u64, [a1, a2, 0, 0, 0]) }
}

/// Calls hypercall `nr` with three arguments.
///
/// # Safety
/// See the [module docs](self#safety).
#[inline]
pub unsafe fn hypercall3(nr: Hypercall, a1: u64, a2: u64, a3: u64) -> i64 {
    // SAFETY: the caller upholds this function's contract.
    unsafe { imp::page_call(nr as u64, [a1, a2, a3, 0, 0]) }
}

/// Calls hypercall `nr` with four arguments.
///
/// # Safety
/// See the [module docs](self#safety).
#[inline]
pub unsafe fn hypercall4(nr: Hypercall, a1: u64, a2: u64, a3: u64, a4: u64) -> i64 {
    // SAFETY: the caller upholds this function's contract.
    unsafe { imp::page_call(nr as u64, [a1, a2, a3, a4, 0]) }
}

/// Calls hypercall `nr` with five arguments.
///
/// # Safety
/// See the [module docs](self#safety).
#[inline]
pub unsafe fn hypercall5(nr: Hypercall, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> i64 {
    // SAFETY: the caller upholds this function's contract.
    unsafe { imp::page_call(nr as u64, [a1, a2, a3, a4, a5]) }
}

/// The escape hatch: hypercall number `nr` (any value) with five arbitrary
/// arguments. Numbers with a hypercall-page slot (`< 128`) go through the
/// page; others are issued with a direct `syscall`.
///
/// # Safety
/// See the [module docs](self#safety). Arbitrary numbers reach hypercalls
/// that remap memory or replace handlers: only pass what cannot hurt.
#[inline]
pub unsafe fn hypercall_raw(nr: u64, args: [u64; 5]) -> i64 {
    if nr < HYPERCALL_PAGE_SLOTS as u64 {
        // SAFETY: the caller upholds this function's contract; nr has a slot.
        unsafe { imp::page_call(nr, args) }
    } else {
        // SAFETY: the caller upholds this function's contract.
        unsafe { imp::direct_syscall(nr, args) }
    }
}

/// Like [`hypercall_raw`] but always with a direct `syscall` (bypassing the
/// hypercall page), for checking the hypervisor's entry path itself.
///
/// # Safety
/// As [`hypercall_raw`].
#[inline]
pub unsafe fn syscall_raw(nr: u64, args: [u64; 5]) -> i64 {
    // SAFETY: the caller upholds this function's contract.
    unsafe { imp::direct_syscall(nr, args) }
}

/// Virtual address of the hypercall page (0 on the host).
pub fn hypercall_page_address() -> u64 {
    imp::page_addr()
}

/// Checks that the builder filled the hypercall page: every slot must hold
/// exactly the stub Xen writes ([`crate::abi::hypercall::hypercall_slot`]).
/// Returns the first slot that differs. Calling an unfilled slot would hit
/// `int3` and crash the domain, so a kernel can check this first.
pub fn verify_hypercall_page() -> Result<(), usize> {
    let page = imp::page_bytes();
    verify_page_bytes(&page)
}

/// Compares a copy of the page against Xen's encoding.
pub fn verify_page_bytes(
    page: &[u8; HYPERCALL_PAGE_SLOTS * HYPERCALL_SLOT_SIZE],
) -> Result<(), usize> {
    for (nr, slot) in page.chunks_exact(HYPERCALL_SLOT_SIZE).enumerate() {
        // nr < 128: the cast is lossless.
        let want = crate::abi::hypercall::hypercall_slot(nr as u32);
        // Only the code bytes matter; the padding may be anything.
        let code = if nr == Hypercall::Iret as usize {
            11
        } else {
            14
        };
        if slot[..code] != want[..code] {
            return Err(nr);
        }
    }
    Ok(())
}

/// The `-ENOSYS` the host fallback returns.
#[allow(dead_code)]
const HOST_ENOSYS: i64 = AbiErrno::ENOSYS.to_ret();

#[cfg(target_os = "none")]
mod imp {
    use core::arch::asm;

    use super::HYPERCALL_SLOT_SIZE;
    use crate::abi::hypercall::HYPERCALL_PAGE_SIZE;

    extern "C" {
        /// Defined in `boot.rs`'s `global_asm!`, filled by the domain builder.
        static hypercall_page: [u8; HYPERCALL_PAGE_SIZE];
    }

    pub fn page_addr() -> u64 {
        (&raw const hypercall_page) as u64
    }

    pub fn page_bytes() -> [u8; HYPERCALL_PAGE_SIZE] {
        // SAFETY: the page is a 4 KiB static in our own image, always mapped
        // and readable; the builder writes it before we run, so a volatile
        // read sees its current bytes.
        unsafe { core::ptr::read_volatile(&raw const hypercall_page) }
    }

    /// `call hypercall_page + nr * 32`.
    ///
    /// # Safety
    /// `nr` < 128, the page is filled, and the caller upholds the module's contract.
    #[inline(always)]
    pub unsafe fn page_call(nr: u64, a: [u64; 5]) -> i64 {
        let entry = page_addr() + nr * HYPERCALL_SLOT_SIZE as u64;
        let ret: i64;
        // SAFETY: `entry` is a hypercall stub (which preserves everything but
        // rax and, in the hypervisor, the argument registers, declared
        // clobbered here along with rcx/r11/r9 and memory); the stub pushes
        // onto our stack, which is allowed because `nostack` is not given.
        unsafe {
            asm!(
                "call {entry}",
                entry = in(reg) entry,
                lateout("rax") ret,
                inlateout("rdi") a[0] => _,
                inlateout("rsi") a[1] => _,
                inlateout("rdx") a[2] => _,
                inlateout("r10") a[3] => _,
                inlateout("r8") a[4] => _,
                lateout("r9") _,
                lateout("rcx") _,
                lateout("r11") _,
            );
        }
        ret
    }

    /// `syscall` with `rax = nr`, exactly what a stub does.
    ///
    /// # Safety
    /// The caller upholds the module's contract.
    #[inline(always)]
    pub unsafe fn direct_syscall(nr: u64, a: [u64; 5]) -> i64 {
        let ret: i64;
        // SAFETY: a PV kernel's `syscall` enters the hypervisor, which
        // returns to the next instruction with the result in rax; rcx and
        // r11 are overwritten by syscall/sysret, the argument registers
        // may be clobbered by the hypervisor.
        unsafe {
            asm!(
                "syscall",
                inlateout("rax") nr as i64 => ret,
                inlateout("rdi") a[0] => _,
                inlateout("rsi") a[1] => _,
                inlateout("rdx") a[2] => _,
                inlateout("r10") a[3] => _,
                inlateout("r8") a[4] => _,
                lateout("r9") _,
                lateout("rcx") _,
                lateout("r11") _,
            );
        }
        ret
    }
}

#[cfg(not(target_os = "none"))]
mod imp {
    use crate::abi::hypercall::HYPERCALL_PAGE_SIZE;

    pub fn page_addr() -> u64 {
        0
    }

    pub fn page_bytes() -> [u8; HYPERCALL_PAGE_SIZE] {
        let mut p = [0u8; HYPERCALL_PAGE_SIZE];
        crate::abi::hypercall::fill_hypercall_page(&mut p);
        p
    }

    /// # Safety
    /// None needed on the host: nothing is executed.
    pub unsafe fn page_call(nr: u64, a: [u64; 5]) -> i64 {
        host_call(nr, a)
    }

    /// # Safety
    /// None needed on the host: nothing is executed.
    pub unsafe fn direct_syscall(nr: u64, a: [u64; 5]) -> i64 {
        host_call(nr, a)
    }

    fn host_call(nr: u64, a: [u64; 5]) -> i64 {
        #[cfg(test)]
        if let Some(r) = super::mock::call(nr, a) {
            return r;
        }
        let _ = (nr, a);
        super::HOST_ENOSYS
    }
}

/// Host-side stand-in for the hypervisor, for unit tests of the wrappers.
#[cfg(test)]
pub(crate) mod mock {
    extern crate std;
    use std::boxed::Box;
    use std::cell::RefCell;

    type Handler = Box<dyn FnMut(u64, [u64; 5]) -> i64>;

    std::thread_local! {
        static HANDLER: RefCell<Option<Handler>> = const { RefCell::new(None) };
    }

    /// Routes this thread's hypercalls to `f` until the guard drops.
    pub fn install(f: impl FnMut(u64, [u64; 5]) -> i64 + 'static) -> Guard {
        HANDLER.with(|h| *h.borrow_mut() = Some(Box::new(f)));
        Guard
    }

    pub struct Guard;

    impl Drop for Guard {
        fn drop(&mut self) {
            HANDLER.with(|h| *h.borrow_mut() = None);
        }
    }

    pub fn call(nr: u64, a: [u64; 5]) -> Option<i64> {
        HANDLER.with(|h| h.borrow_mut().as_mut().map(|f| f(nr, a)))
    }

    /// Copies `len` bytes the code under test passed at `addr`.
    pub fn read(addr: u64, len: u64) -> std::vec::Vec<u8> {
        // SAFETY: in host tests, hypercall buffers are live Rust buffers of
        // the length passed with them.
        unsafe { std::slice::from_raw_parts(addr as *const u8, len as usize) }.to_vec()
    }

    /// Writes `bytes` into the buffer the code under test passed at `addr`.
    pub fn write(addr: u64, bytes: &[u8]) {
        // SAFETY: as in `read`; the caller passes no more than the buffer's length.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), addr as *mut u8, bytes.len()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_fallback_is_enosys() {
        // SAFETY: nothing runs on the host.
        let r = unsafe { hypercall_raw(1000, [0; 5]) };
        assert_eq!(r, AbiErrno::ENOSYS.to_ret());
        // SAFETY: nothing runs on the host.
        let r = unsafe { hypercall0(Hypercall::ConsoleIo) };
        assert_eq!(r, AbiErrno::ENOSYS.to_ret());
    }

    #[test]
    fn mock_sees_numbers_and_arguments() {
        let _g = mock::install(|nr, a| (nr as i64) * 1000 + a.iter().sum::<u64>() as i64);
        // SAFETY: nothing runs on the host.
        let r = unsafe { hypercall5(Hypercall::XenVersion, 1, 2, 3, 4, 5) };
        assert_eq!(r, 17_015);
        // SAFETY: nothing runs on the host.
        let r = unsafe { syscall_raw(u64::MAX, [0; 5]) };
        assert_eq!(r, (u64::MAX as i64) * 1000);
    }

    #[test]
    fn page_verification() {
        let mut page = imp::page_bytes();
        assert_eq!(verify_page_bytes(&page), Ok(()));
        page[HYPERCALL_SLOT_SIZE * 18 + 4] ^= 1;
        assert_eq!(verify_page_bytes(&page), Err(18));
        let unfilled = [0xccu8; 4096];
        assert_eq!(verify_page_bytes(&unfilled), Err(0));
    }
}
