//! PV console ring (`public/io/console.h`): one page shared by the guest
//! (frontend) and xenconsoled (backend), announced in `start_info.console.domU`
//! or `HVM_PARAM_CONSOLE_PFN`/`_EVTCHN`.

use super::ring::RingIdx;

/// Size of the input ring (backend → guest).
pub const XENCONS_IN_SIZE: usize = 1024;
/// Size of the output ring (guest → backend).
pub const XENCONS_OUT_SIZE: usize = 2048;

/// `MASK_XENCONS_IDX(idx, ring)`: reduce a free-running index to a ring offset.
/// `ring_size` must be a power of two.
pub const fn mask_xencons_idx(idx: RingIdx, ring_size: usize) -> usize {
    (idx as usize) & (ring_size - 1)
}

abi_struct! {
    /// The console ring page (`struct xencons_interface`). Indices are
    /// free-running `u32`s: the producer writes data then advances `*_prod`;
    /// the consumer reads then advances `*_cons`. The guest produces `out` and
    /// consumes `in`; the backend does the reverse.
    pub struct XenconsInterface {
        /// Input ring (backend writes, guest reads).
        pub r#in: [u8; XENCONS_IN_SIZE],
        /// Output ring (guest writes, backend reads).
        pub out: [u8; XENCONS_OUT_SIZE],
        /// Input consumer index (guest).
        pub in_cons: RingIdx,
        /// Input producer index (backend).
        pub in_prod: RingIdx,
        /// Output consumer index (backend).
        pub out_cons: RingIdx,
        /// Output producer index (guest).
        pub out_prod: RingIdx,
    }
}

zeroed_default!(XenconsInterface);
