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
//! And what a small OS kernel needs on top (issue 3):
//!
//! - [`trap`]: entry stubs for every exception vector taking Xen's PV bounce
//!   frame, the event, failsafe and syscall callbacks, `iret` via the
//!   hypercall page; handlers get a [`trap::TrapFrame`] they can fix up;
//! - [`events`]: every `EVTCHNOP`, per-port handlers, the 2-level upcall
//!   dispatcher, the virtual interrupt flag ([`events::IrqGuard`]);
//! - [`time`]: the PV clock ([`time::now_ns`]), wallclock, timers,
//!   `VIRQ_TIMER`, blocking with a deadline;
//! - [`mm`] (pure page-table logic), [`mmu`] (`mmu_update`,
//!   `update_va_mapping`, `mmuext_op`), [`memory`] (`memory_op`),
//!   [`frame`] (P2M/M2P, a direct map, the frame allocator, address
//!   spaces), [`heap`] (feature `alloc`);
//! - [`smp`]: bringing up vCPUs; [`percpu`]: which vCPU am I;
//! - [`executor`]: `block_on`/`spawn`, futures for timers and events;
//! - [`user`]: ring-3 programs with their own page tables, system calls;
//! - [`shared`]: the shared info page through atomics; [`arch`]: the
//!   instructions a PV kernel issues itself;
//! - [`runtime::init`]: all of it in one call;
//! - [`xenbus`] (feature `alloc`): the xenstore client — wire format, ring,
//!   read/write/watch/transactions, the `control/shutdown` protocol.
//! - [`netfront`] (feature `alloc`): the netif frontend; with feature
//!   `smoltcp`, a TCP/IP stack device over it.
//! - [`domu`] (feature `alloc`): an ordinary domain towards the toolstack —
//!   connect to xenstore at boot, say who it is, obey `xl shutdown` and
//!   `xl reboot`;
//! - [`suspend`] (feature `alloc`): `xl save`'s suspend and the resume
//!   after it (cancelled, or restored into a new domain), and
//!   [`p2m_list`]: the p2m frame list list the toolstack reads.
//!
//! Kernels link with `pv-kernel.ld` (shipped beside this crate's
//! `Cargo.toml`); see the crate's README for a complete example.
//!
//! Unsafe code lives in [`boot`] (entry assembly, reading what the builder
//! left), [`hypercall`] (inline assembly), the hypercall wrappers that pass
//! buffers ([`xen`], [`mmu`], [`memory`], [`events`], [`time`], [`smp`]),
//! [`trap`] (entry stubs, iret, user-mode entry), [`arch`] (instructions),
//! [`percpu`], [`shared`], [`frame`] and [`page_alloc`] (raw memory),
//! [`heap`], [`user`] and [`xenbus`] (the shared store page); every block
//! carries a `// SAFETY:` comment. The
//! pure logic ([`mm`], [`layout`], [`start_info`], the event scan, the clock
//! arithmetic, ...) is tested on the host (`cargo test -p pv-guest-lib`,
//! where hypercalls go to a mock).

#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

#[cfg(test)]
extern crate std;

pub use hypercall_abi as abi;

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod arch;
pub mod balloon;
#[cfg(feature = "alloc")]
pub mod blkfront;
pub mod boot;
pub mod console;
pub mod console_ring;
#[cfg(feature = "alloc")]
pub mod domu;
pub mod error;
pub mod events;
pub mod executor;
pub mod frame;
pub mod grant;
#[cfg(feature = "alloc")]
pub mod heap;
pub mod hotplug;
pub mod hypercall;
pub mod layout;
pub mod line;
pub mod memory;
pub mod mm;
pub mod mmu;
#[cfg(feature = "alloc")]
pub mod netfront;
pub mod p2m_list;
pub mod page_alloc;
pub mod percpu;
pub mod runtime;
pub mod shared;
pub mod smp;
pub mod start_info;
#[cfg(feature = "alloc")]
pub mod suspend;
pub mod time;
pub mod trap;
pub mod user;
pub mod util;
pub mod verdict;
pub mod xen;
#[cfg(feature = "alloc")]
pub mod xenbus;

#[cfg(all(feature = "panic-handler", target_os = "none"))]
mod panic;

pub use boot::{layout, p2m, ramdisk, start_info};
pub use error::Errno;
pub use layout::BootstrapLayout;
pub use line::LineEditor;
pub use start_info::StartInfo;
pub use verdict::Verdict;
