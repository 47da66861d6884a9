//! Oxen's host-side test harness.
//!
//! It builds the bootable images ([`images::build_images`]), packs Dom0's
//! boot modules ([`cpio`] ramdisk, [`bundle`] for QEMU's PVH path, a GRUB ISO
//! for the Multiboot2 path: [`boot`]), boots them under QEMU ([`qemu`]),
//! or under Bochs with a VT-x CPU from a GRUB ISO ([`bochs`]),
//! reads the serial console, and judges the run by its console lines, its
//! `VERDICT:` line and its `isa-debug-exit` code ([`check`], [`exit`]).
//! `scripts/run --batch` is [`batch`]; `oxen-run` and `oxen-bench` (in
//! `src/bin`) are thin front ends; [`bench`] reads the PV microbenchmarks'
//! output.
//!
//! Environment knobs:
//! * `OXEN_QEMU` — QEMU binary (default `qemu-system-x86_64`).
//! * `OXEN_BOCHS`, `OXEN_BOCHS_CPU` — Bochs binary (default `bochs`) and CPU
//!   model (default `corei7_haswell_4770`).
//! * `OXEN_ECHO=1` — copy every console to stderr live (`stdout` for stdout).
//! * `OXEN_MAX_QEMUS` — QEMUs running at once per process (default 2).
//! * `OXEN_SKIP_BUILD=1` / `OXEN_IMAGES=DIR` — use existing images.
//! * `OXEN_ROOT` — the workspace root, if not where this crate was built.
//! * `OXEN_XEN=FILE` — a Xen binary for [`xen`] instead of Debian's
//!   `xen-hypervisor-4.17-amd64`, fetched into `target/xen-4.17/`.

pub mod batch;
pub mod bench;
pub mod bochs;
pub mod boot;
pub mod bundle;
pub mod check;
pub mod console;
pub mod cpio;
pub mod elf;
pub mod exit;
pub mod images;
pub mod net;
pub mod qemu;
pub mod robustness;
pub mod tools;
pub mod xen;

pub use boot::{dom0_ramdisk, dom0_ramdisk_with, make_iso, BootPath, OxenBoot, Payload};
pub use check::Verdict;
pub use exit::{Exit, ShutdownReason};
pub use images::{build_images, workspace_root, Images, TestKernel, TEST_KERNELS};
pub use qemu::{Echo, Machine, Qemu, RunResult};
