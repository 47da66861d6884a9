//! The 2-level event ABI's pending machinery (Xen's `common/event_2l.c`):
//! the `evtchn_pending` / `evtchn_mask` bitmaps of `shared_info`, each
//! vCPU's `evtchn_pending_sel` selector and `evtchn_upcall_pending` flag.
//!
//! The guest changes these bits concurrently with us (it clears pending and
//! selector bits, sets and clears mask bits), so this module never caches
//! them: it goes through [`EventWords`], which the glue implements with
//! atomic bit operations on the live shared_info page (and on registered
//! `vcpu_info` areas), and which host tests implement over a plain
//! [`hypercall_abi::xen::SharedInfo`]. The order of the bit operations is
//! Xen's and matters: each step is one atomic operation, and the guest's
//! handler relies on "pending, then selector, then upcall" being set in that
//! order (and on unmask re-checking pending after clearing the mask).
//!
//! Ports outside the 2-level range (`>= EVTCHN_2L_NR_CHANNELS`) are never
//! passed to [`EventWords`]: the helpers here treat them as "nothing to do",
//! so an [`EventWords`] implementation may index its bitmaps without further
//! range checks on the port. vCPU numbers are passed through as given (the
//! event channel table only produces vCPUs below its domain's vCPU count).

use hypercall_abi::event_channel::EVTCHN_2L_NR_CHANNELS;
use hypercall_abi::xen::BITS_PER_XEN_ULONG;

/// Atomic access to one domain's 2-level event words (shared_info's
/// `evtchn_pending`/`evtchn_mask` and each vCPU's `vcpu_info`).
///
/// Every method is one atomic operation on guest-shared memory; `port` is
/// always below `EVTCHN_2L_NR_CHANNELS` and `word` below
/// `EVTCHN_2L_WORDS` when called from this module.
pub trait EventWords {
    /// Atomically sets `port`'s bit in `evtchn_pending`; returns its old value.
    fn test_and_set_pending(&self, port: u32) -> bool;
    /// Reads `port`'s bit in `evtchn_pending`.
    fn test_pending(&self, port: u32) -> bool;
    /// Atomically clears `port`'s bit in `evtchn_pending`.
    fn clear_pending(&self, port: u32);
    /// Reads `port`'s bit in `evtchn_mask`.
    fn is_masked(&self, port: u32) -> bool;
    /// Atomically clears `port`'s bit in `evtchn_mask`; returns its old value.
    fn test_and_clear_mask(&self, port: u32) -> bool;
    /// Atomically sets bit `word` of `vcpu`'s `evtchn_pending_sel`; returns
    /// its old value.
    fn test_and_set_sel(&self, vcpu: u32, word: u32) -> bool;
    /// Atomically sets `vcpu`'s `evtchn_upcall_pending`; returns its old
    /// value.
    fn set_upcall_pending(&self, vcpu: u32) -> bool;
    /// Reads `vcpu`'s `evtchn_upcall_mask` (the guest's virtual interrupt
    /// flag). Not consulted when raising or unmasking events — Xen sets
    /// `evtchn_upcall_pending` whatever the mask — but the glue's
    /// return-to-guest path needs it to decide whether to deliver the upcall
    /// now.
    fn upcall_masked(&self, vcpu: u32) -> bool;
}

impl<W: EventWords + ?Sized> EventWords for &W {
    fn test_and_set_pending(&self, port: u32) -> bool {
        (**self).test_and_set_pending(port)
    }
    fn test_pending(&self, port: u32) -> bool {
        (**self).test_pending(port)
    }
    fn clear_pending(&self, port: u32) {
        (**self).clear_pending(port)
    }
    fn is_masked(&self, port: u32) -> bool {
        (**self).is_masked(port)
    }
    fn test_and_clear_mask(&self, port: u32) -> bool {
        (**self).test_and_clear_mask(port)
    }
    fn test_and_set_sel(&self, vcpu: u32, word: u32) -> bool {
        (**self).test_and_set_sel(vcpu, word)
    }
    fn set_upcall_pending(&self, vcpu: u32) -> bool {
        (**self).set_upcall_pending(vcpu)
    }
    fn upcall_masked(&self, vcpu: u32) -> bool {
        (**self).upcall_masked(vcpu)
    }
}

/// What the caller of [`set_pending`] / [`unmask`] must do next.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notify {
    /// Nothing: the port was already pending, is out of range or not bound,
    /// or (for unmask) nothing became deliverable.
    Nothing,
    /// The port newly became pending but no new upcall was raised (it is
    /// masked, its selector bit was already set, or the vCPU's
    /// `evtchn_upcall_pending` already was): wake any vCPU of the domain
    /// blocked in `SCHEDOP_poll` on it (Xen's `evtchn_check_pollers`).
    Pending,
    /// `evtchn_upcall_pending` was newly set for the vCPU: kick it (wake it
    /// if blocked, interrupt it if running elsewhere — Xen's
    /// `vcpu_mark_events_pending` → `vcpu_kick`), and wake pollers.
    Upcall,
}

impl Notify {
    /// Whether the target vCPU must be kicked (upcall newly raised).
    pub const fn kick(self) -> bool {
        matches!(self, Notify::Upcall)
    }

    /// Whether vCPUs polling the port must be re-checked. (Xen checks
    /// pollers only in set_pending; waking a poller spuriously after an
    /// unmask is harmless, it re-checks its ports.)
    pub const fn wake_pollers(self) -> bool {
        !matches!(self, Notify::Nothing)
    }
}

/// The `evtchn_pending_sel` bit (word of `evtchn_pending`) covering `port`.
pub const fn sel_word(port: u32) -> u32 {
    port / BITS_PER_XEN_ULONG as u32
}

/// Whether `port` is addressable in the 2-level bitmaps.
pub const fn in_2l_range(port: u32) -> bool {
    port < EVTCHN_2L_NR_CHANNELS
}

/// Xen's `evtchn_2l_set_pending`: marks `port` pending for `vcpu`.
///
/// Sets the pending bit; if it was clear and the port is not masked, sets
/// the selector bit of its word in `vcpu`'s `vcpu_info`; if that was clear,
/// sets `evtchn_upcall_pending` (regardless of `evtchn_upcall_mask`). The
/// result says whether the vCPU must be kicked ([`Notify::Upcall`]) or only
/// pollers checked ([`Notify::Pending`]).
pub fn set_pending<W: EventWords + ?Sized>(words: &W, port: u32, vcpu: u32) -> Notify {
    if !in_2l_range(port) || words.test_and_set_pending(port) {
        return Notify::Nothing;
    }
    if !words.is_masked(port)
        && !words.test_and_set_sel(vcpu, sel_word(port))
        && !words.set_upcall_pending(vcpu)
    {
        return Notify::Upcall;
    }
    Notify::Pending
}

/// Xen's `evtchn_2l_unmask`: clears `port`'s mask bit and, if it was set
/// and the port is pending, re-raises it on `vcpu` (selector bit, then
/// `evtchn_upcall_pending`). Returns [`Notify::Upcall`] when the vCPU must
/// be kicked, [`Notify::Nothing`] otherwise.
pub fn unmask<W: EventWords + ?Sized>(words: &W, port: u32, vcpu: u32) -> Notify {
    if in_2l_range(port)
        && words.test_and_clear_mask(port)
        && words.test_pending(port)
        && !words.test_and_set_sel(vcpu, sel_word(port))
        && !words.set_upcall_pending(vcpu)
    {
        return Notify::Upcall;
    }
    Notify::Nothing
}

/// Xen's `evtchn_2l_clear_pending` (used when a port is freed).
pub fn clear_pending<W: EventWords + ?Sized>(words: &W, port: u32) {
    if in_2l_range(port) {
        words.clear_pending(port);
    }
}

/// Xen's `evtchn_2l_is_pending`: false for ports outside the 2-level range.
pub fn is_pending<W: EventWords + ?Sized>(words: &W, port: u32) -> bool {
    in_2l_range(port) && words.test_pending(port)
}

/// Xen's `evtchn_2l_is_masked`: true for ports outside the 2-level range.
pub fn is_masked<W: EventWords + ?Sized>(words: &W, port: u32) -> bool {
    !in_2l_range(port) || words.is_masked(port)
}
