//! Oxen's hypervisor core, `xen-core`.
//!
//! Everything that is plain logic (memory-map parsing, the frame allocator and
//! frame table, the Dom0 builder's ELF/layout/page-table planning, the command
//! line) lives in modules that build for the host too, so `cargo test` covers
//! them. The hardware glue (`arch`, the boot path, hypercall entry) only builds
//! for `x86_64-unknown-none` and is covered by boot tests.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(test)]
extern crate std;

pub mod acpi_s5;
pub mod boot_info;
pub mod cmdline;
pub mod console_switch;
pub mod cpuid_level;
pub mod cpuid_policy;
pub mod credit;
pub mod desc;
pub mod domain_build;
pub mod evtchn;
pub mod grant_table;
pub mod guest_walk;
pub mod hvm;
pub mod hvm_dom;
pub mod ioports;
pub mod irq;
pub mod mm;
pub mod runstate;
pub mod svm;
pub mod sysret;
pub mod timer_op;
pub mod vmx;
pub mod wallclock;
pub mod x86_emul;
