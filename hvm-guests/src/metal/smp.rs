//! Starting the second CPU the way firmware-less bare metal does: INIT,
//! then two STARTUP IPIs (Intel SDM vol. 3A §9.4.4.1; MP spec B.4) whose
//! vector points at a real-mode trampoline copied below 1 MiB. The
//! trampoline loads the kernel's GDT, enters protected mode and jumps to
//! the kernel's 32-bit AP entry (`boot`), which enables long mode on the
//! BSP's page tables and calls `bare_ap_rust` on the AP's own stack.
//!
//! Owns the page at [`TRAMPOLINE`] (RAM below 1 MiB that PC firmware and
//! HVM builders leave free) while an AP starts.

use super::cpu::halt_forever;
use super::{idt, lapic, pit};
use crate::report::Why;
use crate::why;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// The trampoline's physical address: page 8, so the SIPI vector is 0x08.
pub const TRAMPOLINE: u64 = 0x8000;
const SIPI_VECTOR: u32 = (TRAMPOLINE >> 12) as u32;
/// The AP's stack.
const AP_STACK_SIZE: usize = 16 << 10;
/// The waits the SDM's universal start-up algorithm asks for.
const INIT_TO_SIPI_US: u64 = 10_000;
const SIPI_TO_SIPI_US: u64 = 200;
/// How long the AP may take to report in.
const AP_TIMEOUT_MS: u64 = 2_000;
/// How long after it reported a second start would have shown.
const SETTLE_MS: u64 = 20;

#[repr(C, align(16))]
struct Stack(UnsafeCell<[u8; AP_STACK_SIZE]>);

// SAFETY: only the AP uses the stack, through its stack pointer; the BSP
// only takes its address.
unsafe impl Sync for Stack {}

static AP_STACK: Stack = Stack(UnsafeCell::new([0; AP_STACK_SIZE]));

/// The stack pointer the AP's 64-bit entry loads (read by `boot`'s asm).
#[unsafe(no_mangle)]
static bare_ap_stack_top: AtomicU64 = AtomicU64::new(0);

/// APs that reached Rust, and the APIC ID the last one read.
pub static AP_STARTED: AtomicU32 = AtomicU32::new(0);
static AP_APIC_ID: AtomicU32 = AtomicU32::new(u32::MAX);

unsafe extern "C" {
    /// The real-mode trampoline's first and past-the-last bytes (`boot`).
    static bare_ap_trampoline: u8;
    static bare_ap_trampoline_end: u8;
}

/// Copies the trampoline to [`TRAMPOLINE`].
fn install_trampoline() -> Result<(), Why> {
    let start = &raw const bare_ap_trampoline;
    let end = &raw const bare_ap_trampoline_end;
    let len = end as usize - start as usize;
    if len == 0 || len > 4096 {
        return Err(why!("the trampoline is {len} bytes"));
    }
    // SAFETY: the source is the kernel's own text; the destination is the
    // page at 0x8000, in the 1:1 map and used by nothing else (the kernel
    // is loaded at 1 MiB, the firmware's data is elsewhere below 1 MiB).
    unsafe { core::ptr::copy_nonoverlapping(start, TRAMPOLINE as *mut u8, len) };
    Ok(())
}

/// Starts the CPU with APIC ID `apic_id` and waits for it to report.
/// Returns the APIC ID it read from its own APIC.
pub fn start_ap(apic_id: u32) -> Result<u32, Why> {
    install_trampoline()?;
    let top = AP_STACK.0.get() as u64 + AP_STACK_SIZE as u64;
    bare_ap_stack_top.store(top, Ordering::SeqCst);
    let before = AP_STARTED.load(Ordering::SeqCst);

    lapic::send_ipi(apic_id, lapic::ICR_INIT | lapic::ICR_LEVEL_ASSERT)?;
    pit::delay_us(INIT_TO_SIPI_US);
    for _ in 0..2 {
        lapic::send_ipi(apic_id, lapic::ICR_STARTUP | SIPI_VECTOR)?;
        pit::delay_us(SIPI_TO_SIPI_US);
    }
    let (up, us) = pit::wait_until(AP_TIMEOUT_MS, || {
        AP_STARTED.load(Ordering::SeqCst) != before
    });
    if !up {
        return Err(why!(
            "APIC ID {apic_id} did not come up within {AP_TIMEOUT_MS} ms of INIT/SIPI/SIPI"
        ));
    }
    pit::delay_us(SETTLE_MS * 1000);
    let started = AP_STARTED.load(Ordering::SeqCst) - before;
    if started != 1 {
        return Err(why!(
            "the AP started {started} times (the second SIPI must be ignored)"
        ));
    }
    crate::println!("bare: smp: the AP reported in {us} us after the SIPIs");
    Ok(AP_APIC_ID.load(Ordering::SeqCst))
}

/// The AP's first Rust code, on its own stack in long mode.
#[unsafe(no_mangle)]
extern "C" fn bare_ap_rust() -> ! {
    idt::load();
    let id = lapic::id();
    let n = AP_STARTED.load(Ordering::SeqCst) + 1;
    crate::println!("bare: cpu{n} up (apic id {id})");
    AP_APIC_ID.store(id, Ordering::SeqCst);
    AP_STARTED.fetch_add(1, Ordering::SeqCst);
    halt_forever()
}
