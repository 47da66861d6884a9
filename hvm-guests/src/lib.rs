//! Test kernels written for bare metal: they know nothing of Oxen or Xen.
//!
//! Issue 6 runs them unmodified as HVM guests; before that, they must pass
//! on plain QEMU, which proves the kernels themselves. Each kernel boots
//! from QEMU's PVH entry (`-kernel`) or from Multiboot2 (GRUB, an HVM
//! builder), runs in long mode on 1:1 page tables, and reports each check
//! on COM1 as `bare: <check>: ok`, `FAILED <why>` or `skipped (<why>)`,
//! ending with `bare: all checks passed` or `bare: N checks FAILED`, then
//! powers the machine off through ACPI S5.
//!
//! The pure parts (ACPI tables, boot information, the PIT's arithmetic, the
//! verdict) build for the host and are tested there; `metal` is the glue
//! to the (virtual) hardware and exists only for `x86_64-unknown-none`.

#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
// `Why` carries its message inline (no allocator: 168 bytes), and only the
// cold failure paths return it.
#![allow(clippy::result_large_err)]

pub mod acpi;
pub mod bootinfo;
pub mod fuzz;
pub mod pattern;
pub mod pit;
pub mod report;
pub mod stats;

#[cfg(target_os = "none")]
pub mod metal;

pub use report::{Report, Why};
