//! Boot: the Xen ELF notes, the hypercall page, `_start`, the boot stack,
//! and what the kernel can ask about its start afterwards.
//!
//! # Entry
//!
//! The domain builder jumps to `_start` (the `XEN_ELFNOTE_ENTRY` note) in
//! 64-bit guest-kernel mode (ring 3, `cs` = `FLAT_KERNEL_CS`) with `rsi` =
//! the virtual address of `start_info` and `rsp` = the top of a one-page
//! boot stack at the end of the bootstrap region. `_start`:
//!
//! 1. clears the direction flag, keeps `rsi` and `rsp`;
//! 2. zeroes `.bss` (`__bss_start..__bss_end`; the loader should have, but
//!    a kernel must not depend on it);
//! 3. switches to its own [`BOOT_STACK_SIZE`] stack in `.bss`;
//! 4. calls the Rust entry, which copies `start_info` into a [`StartInfo`],
//!    works out the [`BootstrapLayout`], gives the free pages to
//!    [`crate::page_alloc`] and calls the kernel's main, registered with
//!    [`entry!`](crate::entry).
//!
//! # Notes
//!
//! In a `.note.Xen` section (`SHT_NOTE`, 4-byte aligned, name "Xen"; the
//! linker script puts it in a `PT_NOTE` segment): `GUEST_OS` "Oxen-PV",
//! `GUEST_VERSION`, `XEN_VERSION` "xen-3.0", `LOADER` "generic",
//! `PAE_MODE` "yes", `FEATURES` "!writable_page_tables|pae_pgdir_above_4gb",
//! `SUPPORTED_FEATURES` (writable_page_tables | dom0, as Linux), and 8-byte
//! `VIRT_BASE`, `PADDR_OFFSET` (0), `ENTRY` (`_start`), `HYPERCALL_PAGE`
//! (`hypercall_page`) and `SUSPEND_CANCEL` (1).

use crate::layout::BootstrapLayout;
use crate::start_info::StartInfo;

/// Size of the stack `_start` switches to (in `.bss`, aligned to its size:
/// it is vCPU 0's [`crate::percpu`] stack).
pub const BOOT_STACK_SIZE: usize = crate::percpu::STACK_SIZE as usize;

/// Value of the `XEN_ELFNOTE_GUEST_OS` note.
pub const GUEST_OS: &str = "Oxen-PV";
/// Value of the `XEN_ELFNOTE_GUEST_VERSION` note.
pub const GUEST_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Value of the `XEN_ELFNOTE_XEN_VERSION` note.
pub const XEN_VERSION_NOTE: &str = "xen-3.0";
/// Value of the `XEN_ELFNOTE_LOADER` note.
pub const LOADER: &str = "generic";
/// Value of the `XEN_ELFNOTE_PAE_MODE` note.
pub const PAE_MODE: &str = "yes";
/// Value of the `XEN_ELFNOTE_FEATURES` note.
pub const FEATURES: &str = "!writable_page_tables|pae_pgdir_above_4gb";
/// Value of the `XEN_ELFNOTE_SUPPORTED_FEATURES` note.
pub const SUPPORTED_FEATURES: u32 = crate::abi::version::XenFeature::WritablePageTables
    .submap_bit()
    | crate::abi::version::XenFeature::Dom0.submap_bit();
/// Value of the `XEN_ELFNOTE_SUSPEND_CANCEL` note.
pub const SUSPEND_CANCEL: u64 = 1;

static START_INFO: spin::Once<StartInfo> = spin::Once::new();
static LAYOUT: spin::Once<BootstrapLayout> = spin::Once::new();

/// The `start_info` the kernel was started with (`None` before boot / on the host).
pub fn start_info() -> Option<&'static StartInfo> {
    START_INFO.get()
}

/// The bootstrap layout worked out at boot (`None` before boot / on the host).
pub fn layout() -> Option<&'static BootstrapLayout> {
    LAYOUT.get()
}

/// True if `[va, va + len)` is inside the bootstrap elements and not in the
/// kernel image: memory the builder put there and nothing of ours aliases.
fn in_bootstrap_elements(l: &BootstrapLayout, va: u64, len: u64) -> bool {
    match va.checked_add(len) {
        Some(end) => va >= l.image_end && end <= l.elements_end,
        None => false,
    }
}

/// The ramdisk (`mod_start`, `mod_len`) as bytes, if there is one and it
/// lies inside the bootstrap region, outside the kernel image.
pub fn ramdisk() -> Option<&'static [u8]> {
    let si = start_info()?;
    let l = layout()?;
    let (va, len) = si.ramdisk()?;
    if !in_bootstrap_elements(l, va, len) {
        return None;
    }
    let len = usize::try_from(len).ok()?;
    // SAFETY: the range is inside the bootstrap region, which the builder
    // mapped (readable) for the kernel; it is not part of our image and the
    // page allocator only hands out pages after `elements_end`, so nothing
    // in this kernel writes it.
    Some(unsafe { core::slice::from_raw_parts(va as *const u8, len) })
}

/// The p2m list (`mfn_list`): machine frame of each pseudo-physical frame,
/// if it lies inside the bootstrap region. Atomic: the balloon driver
/// changes entries while others read them.
pub fn p2m() -> Option<&'static [core::sync::atomic::AtomicU64]> {
    let si = start_info()?;
    let l = layout()?;
    let n = si.nr_pages;
    let bytes = n.checked_mul(8)?;
    if si.mfn_list % 8 != 0 || !in_bootstrap_elements(l, si.mfn_list, bytes) {
        return None;
    }
    let n = usize::try_from(n).ok()?;
    // SAFETY: aligned, inside the mapped bootstrap region, outside our image
    // and below the allocator's pages (see `ramdisk`); AtomicU64 has u64's
    // size and alignment, and every access to the list goes through this
    // view.
    Some(unsafe {
        core::slice::from_raw_parts(si.mfn_list as *const core::sync::atomic::AtomicU64, n)
    })
}

/// Registers the kernel's main function: `fn main(si: &StartInfo) -> !`.
///
/// ```ignore
/// pv_guest_lib::entry!(kmain);
/// fn kmain(si: &pv_guest_lib::StartInfo) -> ! { ... }
/// ```
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[allow(unsafe_code)]
        #[unsafe(export_name = "__pv_guest_main")]
        fn __pv_guest_main(si: &'static $crate::StartInfo) -> ! {
            let main: fn(&'static $crate::StartInfo) -> ! = $main;
            main(si)
        }
    };
}

#[cfg(target_os = "none")]
mod metal {
    use core::arch::global_asm;

    use super::*;
    use crate::abi::elfnote::ElfNote;
    use crate::abi::hypercall::{HYPERCALL_PAGE_SIZE, OPCODE_INT3};
    use crate::abi::xen::StartInfo as RawStartInfo;
    use crate::layout::{PADDR_OFFSET, VIRT_BASE};

    /// A string-valued Xen note.
    macro_rules! xen_note_str {
        ($ty:expr, $s:expr) => {
            global_asm!(
                ".pushsection .note.Xen, \"a\", @note",
                ".balign 4",
                ".long 4",
                ".long 2f - 1f",
                ".long {ty}",
                ".asciz \"Xen\"",
                concat!("1: .asciz \"", $s, "\""),
                "2: .balign 4",
                ".popsection",
                ty = const $ty as u32,
                options(att_syntax)
            );
        };
    }

    /// An 8-byte Xen note; `$value` is assembly (a number or a symbol).
    macro_rules! xen_note_quad {
        ($ty:expr, $value:expr) => {
            global_asm!(
                ".pushsection .note.Xen, \"a\", @note",
                ".balign 4",
                ".long 4",
                ".long 8",
                ".long {ty}",
                ".asciz \"Xen\"",
                concat!(".quad ", $value),
                ".balign 4",
                ".popsection",
                ty = const $ty as u32,
                options(att_syntax)
            );
        };
    }

    // The string notes: the values must be literals for concat!, so they
    // are spelled here and checked against the constants above by
    // `notes_match_constants`.
    xen_note_str!(ElfNote::GuestOs, "Oxen-PV");
    xen_note_str!(ElfNote::GuestVersion, env!("CARGO_PKG_VERSION"));
    xen_note_str!(ElfNote::XenVersion, "xen-3.0");
    xen_note_str!(ElfNote::Loader, "generic");
    xen_note_str!(ElfNote::PaeMode, "yes");
    xen_note_str!(
        ElfNote::Features,
        "!writable_page_tables|pae_pgdir_above_4gb"
    );
    xen_note_quad!(ElfNote::Entry, "_start");
    xen_note_quad!(ElfNote::HypercallPage, "hypercall_page");

    global_asm!(
        // XEN_ELFNOTE_VIRT_BASE, PADDR_OFFSET, SUSPEND_CANCEL: numbers.
        ".pushsection .note.Xen, \"a\", @note",
        ".balign 4",
        ".long 4, 8, {virt_base_ty}",
        ".asciz \"Xen\"",
        ".quad {virt_base}",
        ".balign 4",
        ".long 4, 8, {paddr_offset_ty}",
        ".asciz \"Xen\"",
        ".quad {paddr_offset}",
        ".balign 4",
        ".long 4, 8, {suspend_cancel_ty}",
        ".asciz \"Xen\"",
        ".quad {suspend_cancel}",
        ".balign 4",
        ".long 4, 4, {supported_ty}",
        ".asciz \"Xen\"",
        ".long {supported}",
        ".balign 4",
        ".popsection",
        virt_base_ty = const ElfNote::VirtBase as u32,
        virt_base = const VIRT_BASE,
        paddr_offset_ty = const ElfNote::PaddrOffset as u32,
        paddr_offset = const PADDR_OFFSET,
        suspend_cancel_ty = const ElfNote::SuspendCancel as u32,
        suspend_cancel = const SUSPEND_CANCEL,
        supported_ty = const ElfNote::SupportedFeatures as u32,
        supported = const SUPPORTED_FEATURES,
        options(att_syntax)
    );

    // The hypercall page (filled by the builder; int3 until then), the boot
    // stack, and `_start`.
    global_asm!(
        ".pushsection .text.hypercall_page, \"ax\", @progbits",
        ".balign {page}",
        ".globl hypercall_page",
        ".type hypercall_page, @function",
        "hypercall_page:",
        ".fill {page}, 1, {int3}",
        ".size hypercall_page, {page}",
        ".popsection",

        ".pushsection .bss.pv_boot_stack, \"aw\", @nobits",
        ".balign {stack_size}",
        // A guard page right below the (size-aligned) stack: rust_start
        // unmaps it, so an overflow faults instead of overwriting .bss.
        ".skip {stack_size} - {page}",
        "__pv_boot_stack_guard:",
        ".skip {page}",
        "__pv_boot_stack_bottom:",
        ".skip {stack_size}",
        "__pv_boot_stack_top:",
        ".popsection",

        ".pushsection .text.pv_boot, \"ax\", @progbits",
        ".globl _start",
        ".type _start, @function",
        "_start:",
        "    cld",
        "    mov %rsi, %r12",              // start_info
        "    mov %rsp, %r13",              // the builder's stack pointer
        "    lea __bss_start(%rip), %rdi",
        "    lea __bss_end(%rip), %rcx",
        "    sub %rdi, %rcx",
        "    xor %eax, %eax",
        "    rep stosb",
        "    lea __pv_boot_stack_top(%rip), %rsp",
        "    xor %ebp, %ebp",
        "    mov %r12, %rdi",
        "    mov %r13, %rsi",
        "    call {rust_start}",
        "    ud2",
        ".size _start, . - _start",
        ".popsection",
        page = const HYPERCALL_PAGE_SIZE,
        int3 = const OPCODE_INT3,
        stack_size = const BOOT_STACK_SIZE,
        rust_start = sym rust_start,
        options(att_syntax)
    );

    extern "C" {
        /// End of the kernel image (page aligned), from `pv-kernel.ld`.
        static __pv_image_end: u8;
        /// The page below the boot stack (see the assembly above).
        static __pv_boot_stack_guard: u8;
    }

    extern "Rust" {
        /// The kernel's main, defined by [`crate::entry!`].
        fn __pv_guest_main(si: &'static StartInfo) -> !;
    }

    /// Called by `_start` on the boot stack.
    extern "C" fn rust_start(raw: *const RawStartInfo, entry_sp: u64) -> ! {
        if raw.is_null() || !raw.is_aligned() {
            crate::console::write_bytes(b"pv-guest-lib: no usable start_info pointer in rsi\n");
            crate::xen::crash();
        }
        // SAFETY: the builder passes the start_info page's virtual address
        // in rsi; the page is mapped (read-write) in the bootstrap region and
        // we only read it, once, here.
        let raw_ref = unsafe { &*raw };
        let si = START_INFO.call_once(|| StartInfo::from_raw(raw_ref, raw as u64));
        let image_end = (&raw const __pv_image_end) as u64;
        let layout = *LAYOUT.call_once(|| BootstrapLayout::compute(si, image_end, entry_sp));
        // SAFETY: `free_start..free_end` is the bootstrap region's padding
        // after its last element: mapped writable and unused (public/xen.h's
        // start_info rules; see crate::layout).
        unsafe { crate::page_alloc::init(layout.free_start, layout.free_end) };
        // SAFETY: the boot stack is a BOOT_STACK_SIZE-aligned .bss region
        // (see the assembly above) of exactly percpu::STACK_SIZE bytes, and
        // we run on it well above its lowest 16 bytes.
        unsafe { crate::percpu::init_stack(crate::percpu::stack_base(crate::arch::rsp()), 0) };
        // The guard page: nothing lives there; unmapping it turns a stack
        // overflow into a page fault. (If the hypervisor refuses, the
        // stack simply has no guard.)
        let guard = (&raw const __pv_boot_stack_guard) as u64;
        let _ = crate::mmu::update_va_mapping(guard, 0, crate::mmu::Flush::InvlpgLocal);
        // SAFETY: `entry!` defines this symbol with exactly this signature;
        // without it the kernel does not link.
        unsafe { __pv_guest_main(si) }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn notes_match_constants() {
        // The string notes in `metal` spell these values out (concat! needs
        // literals); keep both in sync.
        let src: std::string::String = include_str!("boot.rs")
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        for (ty, value) in [
            ("GuestOs", GUEST_OS),
            ("XenVersion", XEN_VERSION_NOTE),
            ("Loader", LOADER),
            ("PaeMode", PAE_MODE),
            ("Features", FEATURES),
        ] {
            let line = std::format!("xen_note_str!(ElfNote::{ty},\"{value}\");");
            assert!(src.contains(&line), "boot.rs lacks {line}");
        }
        assert_eq!(SUPPORTED_FEATURES, (1 << 0) | (1 << 11));
    }

    #[test]
    fn nothing_before_boot() {
        assert!(start_info().is_none());
        assert!(layout().is_none());
        assert!(ramdisk().is_none());
        assert!(p2m().is_none());
    }

    #[test]
    fn bootstrap_element_bounds() {
        let l = BootstrapLayout {
            virt_base: 0x1000,
            image_end: 0x3000,
            elements_end: 0x8000,
            mapped_end: 0x10000,
            free_start: 0x8000,
            free_end: 0x10000,
        };
        assert!(in_bootstrap_elements(&l, 0x3000, 0x5000));
        assert!(!in_bootstrap_elements(&l, 0x2fff, 1));
        assert!(!in_bootstrap_elements(&l, 0x7000, 0x1001));
        assert!(!in_bootstrap_elements(&l, u64::MAX, 2));
    }
}
