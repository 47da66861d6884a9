//! # hypercall-abi — the Xen 4.17 x86_64 guest/hypervisor ABI for Oxen
//!
//! This crate is the single source of truth for every number and memory layout
//! that crosses the boundary between the Oxen hypervisor (`xen-core`), paravirtualised
//! guests (`pv-guest-lib`) and the control-domain tools (`dom0-tools`). It mirrors
//! Xen 4.17's public headers (`xen/include/public/`) for x86_64:
//!
//! * hypercall numbers ([`hypercall::Hypercall`]) and the hypercall page layout,
//! * error codes ([`errno::Errno`]),
//! * sub-operation numbers of every hypercall family as typed enums with `from_raw`,
//! * flag and bit constants,
//! * `#[repr(C)]` argument and shared-memory structures that derive zerocopy's
//!   `FromBytes`/`IntoBytes`/`Immutable`/`KnownLayout`, so they can be read from
//!   and written to guest memory without `unsafe`.
//!
//! Modules are split the way Xen splits its headers; each module's docs name the
//! header it mirrors. Field docs say who writes each field (guest, Xen, backend,
//! frontend, tools). The layouts are checked by `tests/layout.rs` against
//! `tests/data/xen-4.17-x86_64-layouts.tsv` and the constants by
//! `tests/constants.rs` against `tests/data/xen-4.17-x86_64-constants.tsv`.
//!
//! Conventions:
//! * `XEN_GUEST_HANDLE(T)` is a guest virtual address ([`GuestHandle`], 8 bytes).
//! * `xen_ulong_t`/`unsigned long` are `u64`; `xen_pfn_t` is [`XenPfn`].
//! * Padding the C compiler inserts implicitly is spelled out as `_padNN` fields
//!   (NN = byte offset); writers must leave them zero.
//! * Hypercall return values are `i64` in `rax`: `>= 0` on success, a negated
//!   [`errno::Errno`] on failure.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[macro_use]
mod macros;

pub mod arch_x86;
pub mod callback;
pub mod domctl;
pub mod elfnote;
pub mod errno;
pub mod event_channel;
pub mod grant_table;
pub mod hvm;
pub mod hvm_save;
pub mod hypercall;
pub mod io;
pub mod memory;
pub mod physdev;
pub mod sched;
pub mod sysctl;
pub mod vcpu;
pub mod version;
pub mod xen;

pub use zerocopy;

/// A guest handle (`XEN_GUEST_HANDLE(T)` / `XEN_GUEST_HANDLE_64(T)`): the guest
/// virtual address (PV) or guest physical address (HVM/PVH with paging off) of
/// a buffer in the caller's address space. Always 8 bytes on x86_64.
pub type GuestHandle = u64;

/// Xen's `xen_pfn_t`: a page frame number (machine frame for PV, guest frame for
/// auto-translated guests).
pub type XenPfn = u64;

/// Xen's `xen_ulong_t`: a machine word, 64 bits on x86_64.
pub type XenUlong = u64;

/// Xen's `domid_t`: a domain identifier (see [`xen::DOMID_SELF`] and friends).
pub type DomId = u16;

/// Xen's `evtchn_port_t`: an event-channel port number.
pub type EvtchnPort = u32;

/// Xen's `grant_ref_t`: an index into a domain's grant table.
pub type GrantRef = u32;

/// Xen's `grant_handle_t`: a handle for a grant mapping, returned by map and
/// consumed by unmap.
pub type GrantHandle = u32;

/// log2 of the size of a Xen page (`XEN_PAGE_SHIFT`).
pub const XEN_PAGE_SHIFT: u32 = 12;

/// Size of a Xen page in bytes (`XEN_PAGE_SIZE`): 4 KiB on x86.
pub const XEN_PAGE_SIZE: usize = 1 << XEN_PAGE_SHIFT;

/// Reads a `T` from the start of a union's raw storage (the remaining bytes
/// are ignored). Returns an all-zero `T` if the storage is too small, which
/// cannot happen for the unions in this crate (their storage is the largest
/// member).
pub fn union_read<T: zerocopy::FromBytes>(storage: &[u8]) -> T {
    match T::read_from_prefix(storage) {
        Ok((v, _)) => v,
        Err(_) => T::new_zeroed(),
    }
}

/// Writes `v` at the start of a union's raw storage, zeroing the rest (so no
/// stale bytes of another member leak). Does nothing if `v` does not fit.
pub fn union_write<T: zerocopy::IntoBytes + zerocopy::Immutable>(storage: &mut [u8], v: &T) {
    let src = v.as_bytes();
    if src.len() <= storage.len() {
        let (head, tail) = storage.split_at_mut(src.len());
        head.copy_from_slice(src);
        tail.fill(0);
    }
}
