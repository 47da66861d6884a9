//! The xen-core image: boot sequence and the glue around the pure library.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("xen-core is a bare-metal image: build it with --target x86_64-unknown-none");
}

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod arch;
#[cfg(target_os = "none")]
mod console;
#[cfg(target_os = "none")]
mod dom0;
#[cfg(target_os = "none")]
mod domain;
#[cfg(target_os = "none")]
mod event;
#[cfg(target_os = "none")]
mod heap;
#[cfg(target_os = "none")]
mod hvm_glue;
#[cfg(target_os = "none")]
mod hvm_run;
#[cfg(target_os = "none")]
mod hwirq;
#[cfg(target_os = "none")]
mod hypercall;
#[cfg(target_os = "none")]
mod keyhandler;
#[cfg(target_os = "none")]
mod log_dirty;
#[cfg(target_os = "none")]
mod memory;
#[cfg(target_os = "none")]
mod pv;
#[cfg(target_os = "none")]
mod pv_emul;
#[cfg(target_os = "none")]
mod pv_mm;
#[cfg(target_os = "none")]
mod sched;
#[cfg(target_os = "none")]
mod scrub;
#[cfg(target_os = "none")]
mod setup;
#[cfg(target_os = "none")]
mod time;
#[cfg(target_os = "none")]
mod vtimer;

#[cfg(target_os = "none")]
pub use setup::boot_cmdline;

#[cfg(target_os = "none")]
#[no_mangle]
extern "C" fn xen_core_start(protocol: u32, info_paddr: u32) -> ! {
    setup::start(protocol, info_paddr)
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    arch::x86_64::instr::cli();
    println!("(XEN) ****************************************");
    println!(
        "(XEN) Panic on CPU {}:",
        arch::x86_64::percpu::this_cpu().cpu
    );
    println!("(XEN) {info}");
    println!("(XEN) ****************************************");
    arch::x86_64::power::halt_fatal();
}
