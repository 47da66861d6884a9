//! # pv-guest-lib — write your own Xen PV kernel in Rust
//!
//! Everything a 64-bit paravirtualised kernel needs to come up on Xen (or
//! Oxen) and talk to the hypervisor:
//!
//! - [`boot`]: the Xen ELF notes, `_start`, the hypercall page, a 64 KiB boot
//!   stack; [`entry!`] registers your `fn main(&StartInfo) -> !`;
//! - [`StartInfo`]: the `start_info` page, parsed; [`mod@layout`]: what is mapped
//!   where at boot; [`page_alloc`]: the free pages of the bootstrap region;
//! - [`hypercall`]: raw hypercalls (`hypercall0`..`hypercall5`, and an escape
//!   hatch for any number); [`xen`]: typed, checked wrappers returning
//!   `Result<_, Errno>`;
//! - [`console`]: [`print!`]/[`println!`], a `log` backend, line input;
//! - [`verdict`]: XTF-style `VERDICT:` lines for test kernels;
//! - a panic handler (feature `panic-handler`) that reports and crashes the
//!   domain.
//!
//! Kernels link with `pv-kernel.ld` (shipped beside this crate's
//! `Cargo.toml`); see the crate's README for a complete example.
//!
//! Unsafe code lives only in [`boot`] (entry assembly, reading what the
//! builder left), [`hypercall`] (inline assembly), [`xen`] (passing buffers
//! to the hypervisor) and [`page_alloc`] (handing out raw pages); the other
//! modules forbid it and are tested on the host (`cargo test -p pv-guest-lib`,
//! where hypercalls go to a mock).

#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

#[cfg(test)]
extern crate std;

pub use hypercall_abi as abi;

pub mod boot;
pub mod console;
pub mod error;
pub mod hypercall;
pub mod layout;
pub mod line;
pub mod page_alloc;
pub mod start_info;
pub mod util;
pub mod verdict;
pub mod xen;

#[cfg(all(feature = "panic-handler", target_os = "none"))]
mod panic;

pub use boot::{layout, p2m, ramdisk, start_info};
pub use error::Errno;
pub use layout::BootstrapLayout;
pub use line::LineEditor;
pub use start_info::StartInfo;
pub use verdict::Verdict;
