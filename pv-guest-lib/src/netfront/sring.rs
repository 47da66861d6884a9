//! Xen's shared I/O rings (`public/io/ring.h`) over a [`SharedPage`], for
//! both ends of the netif rings: the header's four indexes, and typed
//! slots. Every access is a bounded copy through the page trait, so a peer
//! writing garbage concurrently can only produce garbage values, which the
//! protocol code validates; nothing here can read or write outside the page.

use zerocopy::{FromBytes, Immutable, IntoBytes};

use crate::abi::io::ring::{ring_slot, RingIdx, SRING_HEADER_SIZE};
use crate::xenbus::page::SharedPage;

/// Offset of `req_prod` (written by the frontend).
pub const REQ_PROD: usize = 0;
/// Offset of `req_event` (written by the backend).
pub const REQ_EVENT: usize = 4;
/// Offset of `rsp_prod` (written by the backend).
pub const RSP_PROD: usize = 8;
/// Offset of `rsp_event` (written by the frontend).
pub const RSP_EVENT: usize = 12;

/// Byte offset of slot `idx` of a ring of `size` entries of `entry` bytes.
pub const fn slot_offset(idx: RingIdx, size: usize, entry: usize) -> usize {
    SRING_HEADER_SIZE + ring_slot(idx, size) * entry
}

/// Reads a `T` from slot `idx` (each slot is `entry` bytes; `T` may be
/// smaller, as responses and extra-info overlays are).
pub fn read_slot<T: FromBytes + IntoBytes, P: SharedPage + ?Sized>(
    page: &P,
    idx: RingIdx,
    size: usize,
    entry: usize,
) -> T {
    let mut v = T::new_zeroed();
    page.read(slot_offset(idx, size, entry), v.as_mut_bytes());
    v
}

/// Writes `v` at the start of slot `idx`.
pub fn write_slot<T: IntoBytes + Immutable, P: SharedPage + ?Sized>(
    page: &P,
    idx: RingIdx,
    size: usize,
    entry: usize,
    v: &T,
) {
    page.write(slot_offset(idx, size, entry), v.as_bytes());
}

/// Initialises a shared ring page as `SHARED_RING_INIT` does: all indexes
/// zero, both events one.
pub fn init<P: SharedPage + ?Sized>(page: &P) {
    page.write(0, &[0u8; SRING_HEADER_SIZE]);
    page.store_u32(REQ_EVENT, 1);
    page.store_u32(RSP_EVENT, 1);
}
