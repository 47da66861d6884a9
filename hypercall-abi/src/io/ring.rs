//! Generic shared-ring machinery (`public/io/ring.h`): free-running `RING_IDX`
//! indices, the 64-byte shared-ring header every `DEFINE_RING_TYPES` ring
//! starts with, and the ring-size computation.

/// `RING_IDX`: a free-running ring index (wraps at 2^32; mask with size-1).
pub type RingIdx = u32;

/// Size of the shared ring header (`req_prod` .. `__pad`): entries start here.
pub const SRING_HEADER_SIZE: usize = 64;
/// Size of the `pvt` union in the header.
pub const SRING_PVT_SIZE: usize = 4;
/// Size of the `__pad` array in the header.
pub const SRING_PAD_SIZE: usize = 44;

/// `__RD32`-style round down to a power of two (0 stays 0).
pub const fn round_down_pow2(x: usize) -> usize {
    if x == 0 {
        0
    } else {
        1 << (usize::BITS - 1 - x.leading_zeros())
    }
}

/// `__CONST_RING_SIZE` / `__RING_SIZE`: number of entries (a power of two) of
/// a ring whose entries (the request/response union) are `entry_size` bytes,
/// in a shared area of `area_size` bytes (usually one page).
pub const fn ring_size(area_size: usize, entry_size: usize) -> usize {
    if area_size <= SRING_HEADER_SIZE || entry_size == 0 {
        return 0;
    }
    round_down_pow2((area_size - SRING_HEADER_SIZE) / entry_size)
}

/// Ring size for a one-page ring (`__CONST_RING_SIZE(name, XEN_PAGE_SIZE)`).
pub const fn page_ring_size(entry_size: usize) -> usize {
    ring_size(crate::XEN_PAGE_SIZE, entry_size)
}

/// Reduce a free-running index to a slot number (`RING_IDX & (size - 1)`).
pub const fn ring_slot(idx: RingIdx, size: usize) -> usize {
    (idx as usize) & (size - 1)
}

/// `RING_NEED_NOTIFY`-style check: true if the peer asked to be notified for
/// an event index `event` that lies in `(old, new]` (`new - event < new - old`).
pub const fn need_notify(old: RingIdx, new: RingIdx, event: RingIdx) -> bool {
    new.wrapping_sub(event) < new.wrapping_sub(old)
}

abi_struct! {
    /// The 64-byte header at the start of every shared ring page
    /// (`struct name##_sring` up to `ring[]`). Frontend writes `req_prod` and
    /// `rsp_event`; backend writes `rsp_prod` and `req_event`.
    pub struct SringHeader {
        /// Request producer index (frontend).
        pub req_prod: RingIdx,
        /// Notify the backend when `req_prod` passes this (backend writes).
        pub req_event: RingIdx,
        /// Response producer index (backend).
        pub rsp_prod: RingIdx,
        /// Notify the frontend when `rsp_prod` passes this (frontend writes).
        pub rsp_event: RingIdx,
        /// Private union (`netif.smartpoll_active`, `tapif_user.msg`, `pvt_pad`).
        pub pvt: [u8; SRING_PVT_SIZE],
        /// Padding to 64 bytes.
        pub __pad: [u8; SRING_PAD_SIZE],
    }
}

zeroed_default!(SringHeader);
