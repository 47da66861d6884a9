//! # dom0-tools — Oxen's Domain 0
//!
//! The Dom0 PV kernel (`src/bin/dom0.rs`) and test kernels (`dom0-crash`,
//! `dom0-hostile`), all built on `pv-guest-lib` for `x86_64-unknown-none`:
//!
//! ```text
//! cargo build --release --target x86_64-unknown-none -p dom0-tools
//! ```
//!
//! This library holds their pure logic, which builds and is tested on the
//! host too (`cargo test -p dom0-tools`): the ramdisk's cpio parser
//! ([`ramdisk`]), the shell's command parsing and verdict ([`shell`]), the
//! PV test kernels' checks ([`pvtest`]) and the `pv-bench` kernel's
//! statistics and `BENCH` lines ([`bench`]), the `xl` toolstack's
//! command-line front end and output formats ([`xl`], driven through the
//! [`xl::XlBackend`] trait), the xl.cfg parser behind `xl create`
//! ([`xlcfg`]), and `xenstored` ([`xenstore`]): the store, the wire
//! protocol, domains' rings; the network back end ([`netback`]: Xen's
//! netif protocol with rx copy) and the learning [`bridge`] its vifs
//! ([`vif`]: MACs) hang off; PCI ([`pci`]: enumeration, BARs,
//! capabilities, MSI-X) and the drivers for the machine's virtio disk and
//! NIC ([`virtio`], over `virtio-drivers` with a PV Dom0 HAL); and the
//! FAT reader ([`fat`]) that lets blkback serve a disk image file stored
//! in a FAT file system on Dom0's disk, raw or qcow2 ([`qcow2`]); and the
//! hostile fuzzing guest's generators, PRNG and tally ([`hostile`]).

#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod bench;
pub mod blkback;
pub mod bridge;
pub mod builder;
pub mod consoled;
pub mod devmodel;
pub mod fat;
#[cfg(target_os = "none")]
pub mod fault;
pub mod hostile;
pub mod ipconf;
pub mod migration;
pub mod netback;
pub mod pci;
pub mod pvtest;
pub mod qcow2;
pub mod ramdisk;
pub mod shell;
#[cfg(test)]
mod testutil;
pub mod toolstack;
pub mod vif;
pub mod virtio;
pub mod xc;
pub mod xenstore;
pub mod xl;
pub mod xlcfg;
