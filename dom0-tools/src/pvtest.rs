//! What the PV test kernels (`pv-traps`, `pv-mm`, `pv-user`, `pv-events`,
//! `pv-smp`, `pv-privop`) share: one console line per check and the
//! verdict, plus the expected values that are pure facts (Xen 4.17's error
//! codes for each negative case, with the Xen source that returns them).
//!
//! A check line is `<kernel>: <what>: ok (<detail>)` or
//! `<kernel>: <what>: FAILED: <detail>`; the verdict is
//! `VERDICT: SUCCESS` only if every check passed.

#![forbid(unsafe_code)]

use core::fmt::{self, Debug};

use hypercall_abi::errno::Errno as AbiErrno;
use pv_guest_lib::error::Errno;
use pv_guest_lib::{println, Verdict};

/// Where `domu-spin` counts its loop iterations: the last 8 bytes of its
/// shared_info page, beyond `struct shared_info` (3136 bytes on x86_64).
pub const SPIN_COUNTER_OFFSET: u64 = 4096 - 8;

/// The words `domu-dirty` (the PV log-dirty test's guest) and Dom0 share
/// in the guest's shared_info page, past `struct shared_info`: word `i`
/// is at [`OFFSET`](dirty::OFFSET)` + 8 * i`.
pub mod dirty {
    /// Byte offset of word 0 in the shared_info page.
    pub const OFFSET: u64 = 4096 - 256;
    /// Pages it writes round after round (consecutive pfns).
    pub const PAGES: u64 = 16;
    /// [`MAGIC_VALUE`] once the other words are set.
    pub const MAGIC: usize = 0;
    /// The value of [`MAGIC`].
    pub const MAGIC_VALUE: u64 = 0x6469_7274_7921;
    /// Its round counter.
    pub const COUNTER: usize = 1;
    /// Pfn of the first page it writes.
    pub const FIRST_PFN: usize = 2;
    /// Pfn of the page after them, which it never writes.
    pub const SPARE_PFN: usize = 3;
    /// Mfn of that page.
    pub const SPARE_MFN: usize = 4;
    /// Mfn of the L1 table mapping the first page.
    pub const L1_MFN: usize = 5;
    /// Index of the first page's entry in that table.
    pub const L1_INDEX: usize = 6;
    /// Dom0's command.
    pub const CMD: usize = 7;
    /// The guest's answer: the command done, or `u64::MAX` if it failed.
    pub const ACK: usize = 8;
    /// [`CMD`]: rewrite the spare page's mapping, writable
    /// (`update_va_mapping`).
    pub const CMD_REMAP: u64 = 1;
}

/// Xen 4.17's answers to the negative cases the test kernels try.
pub mod want {
    use hypercall_abi::errno::Errno;

    /// Mapping a frame the domain does not own (a frame it gave back with
    /// decrease_reservation): `get_page_from_l1e` → `could_not_pin` → -EBUSY
    /// (arch/x86/mm.c).
    pub const MAP_FOREIGN_FRAME: Errno = Errno::EBUSY;
    /// A writable mapping of a page-table frame (a pinned L1): the
    /// `PGT_writable_page` type cannot be taken → `could_not_pin` → -EBUSY.
    pub const WRITABLE_MAP_OF_PAGE_TABLE: Errno = Errno::EBUSY;
    /// An L4 entry in the hypervisor's slots (256..272): `mod_l4_entry`
    /// "L4 update in Xen-private area" → -EINVAL.
    pub const L4_HYPERVISOR_SLOT: Errno = Errno::EINVAL;
    /// Unpinning a table that is not pinned: `MMUEXT_UNPIN_TABLE` "not
    /// pinned" → -EINVAL.
    pub const UNPIN_NOT_PINNED: Errno = Errno::EINVAL;
    /// Pinning a table twice: "already pinned" → -EINVAL.
    pub const PIN_TWICE: Errno = Errno::EINVAL;
    /// Pinning a frame that has a writable mapping: the page-table type
    /// cannot be taken (`_get_page_type` "Bad type") → -EINVAL.
    pub const PIN_WRITABLE_FRAME: Errno = Errno::EINVAL;
    /// MMUEXT_SET_LDT over a page the guest can still write. Xen loads
    /// LDT pages lazily and would fault the guest on first use instead;
    /// Oxen checks them at once (docs/abi-deviations.md): -EINVAL.
    pub const LDT_WRITABLE: Errno = Errno::EINVAL;
    /// MMUEXT_SET_LDT with a bad base or size: -EINVAL.
    pub const LDT_BAD: Errno = Errno::EINVAL;
    /// An L1 entry mapping a frame the domain does not own: -EBUSY.
    pub const MAP_NOT_OWNED: Errno = Errno::EBUSY;
    /// A page-table reference to a frame the domain does not own: -EINVAL.
    pub const TABLE_NOT_OWNED: Errno = Errno::EINVAL;
    /// An L2 entry with PSE: "Bad L2 flags" → -EINVAL.
    pub const L2_RESERVED_BITS: Errno = Errno::EINVAL;

    /// EVTCHNOP_send / close / status on a port that is not valid or not
    /// allocated (common/event_channel.c: `port_is_valid` / ECS_FREE,
    /// ECS_RESERVED) → -EINVAL.
    pub const EVTCHN_BAD_PORT: Errno = Errno::EINVAL;
    /// EVTCHNOP_bind_virq with virq >= NR_VIRQS → -EINVAL.
    pub const EVTCHN_BAD_VIRQ: Errno = Errno::EINVAL;
    /// EVTCHNOP_bind_virq of a VIRQ already bound on that vCPU → -EEXIST.
    pub const EVTCHN_VIRQ_TWICE: Errno = Errno::EEXIST;
    /// EVTCHNOP_bind_ipi / bind_virq / bind_vcpu to a vCPU the domain does
    /// not have → -ENOENT.
    pub const EVTCHN_BAD_VCPU: Errno = Errno::ENOENT;
    /// EVTCHNOP_alloc_unbound in a domain that does not exist → -ESRCH.
    pub const EVTCHN_NO_DOMAIN: Errno = Errno::ESRCH;
    /// EVTCHNOP_bind_interdomain to a port that is not unbound → -EINVAL.
    pub const EVTCHN_BIND_NOT_UNBOUND: Errno = Errno::EINVAL;
    /// EVTCHNOP_bind_vcpu of an IPI (or per-vCPU VIRQ) port, which stays
    /// on its vCPU → -EINVAL.
    pub const EVTCHN_BIND_VCPU_FIXED: Errno = Errno::EINVAL;

    /// VCPUOP_initialise of a vCPU that is already initialised → -EEXIST.
    pub const VCPU_INIT_TWICE: Errno = Errno::EEXIST;
    /// VCPUOP_up / is_up of a vCPU id the domain does not have → -ENOENT.
    pub const VCPU_ABSENT: Errno = Errno::ENOENT;
}

/// `fmt::Write` onto the console (for `xl`'s messages in test kernels
/// that drive the toolstack directly).
pub struct ConsoleOut;

impl core::fmt::Write for ConsoleOut {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        pv_guest_lib::print!("{s}");
        Ok(())
    }
}

/// A test kernel's running tally.
pub struct Checks {
    name: &'static str,
    v: Verdict,
    n: u32,
    failed: u32,
}

impl Checks {
    /// A fresh tally; lines are prefixed with `name`.
    pub fn new(name: &'static str) -> Checks {
        Checks {
            name,
            v: Verdict::new(),
            n: 0,
            failed: 0,
        }
    }

    /// Records `ok` for `what`, with `detail` on the line.
    pub fn check(&mut self, what: &str, ok: bool, detail: fmt::Arguments<'_>) -> bool {
        self.n += 1;
        if ok {
            println!("{}: {what}: ok ({detail})", self.name);
        } else {
            self.failed += 1;
            println!("{}: {what}: FAILED: {detail}", self.name);
            self.v.fail(format_args!("{what}: {detail}"));
        }
        ok
    }

    /// Expects `Ok`; returns the value.
    pub fn ok<T: Debug, E: fmt::Display>(&mut self, what: &str, r: Result<T, E>) -> Option<T> {
        match r {
            Ok(v) => {
                self.check(what, true, format_args!("{v:?}"));
                Some(v)
            }
            Err(e) => {
                self.check(what, false, format_args!("got {e}, want success"));
                None
            }
        }
    }

    /// Expects `Err(want)`.
    pub fn err<T: Debug>(&mut self, what: &str, r: Result<T, Errno>, want: AbiErrno) -> bool {
        let w = Errno::from_abi(want);
        match r {
            Err(e) if e == w => self.check(what, true, format_args!("{e}")),
            Err(e) => self.check(what, false, format_args!("got {e}, want {w}")),
            Ok(v) => self.check(what, false, format_args!("got success ({v:?}), want {w}")),
        }
    }

    /// Notes something that is not a check.
    pub fn note(&self, what: fmt::Arguments<'_>) {
        println!("{}: {what}", self.name);
    }

    /// Records a failure of the test itself (bad setup).
    pub fn error(&mut self, what: fmt::Arguments<'_>) {
        self.failed += 1;
        println!("{}: ERROR: {what}", self.name);
        self.v.error(what);
    }

    /// `(checks, failed)`.
    pub fn counts(&self) -> (u32, u32) {
        (self.n, self.failed)
    }

    /// The verdict so far.
    pub fn verdict(&self) -> &Verdict {
        &self.v
    }

    /// Prints the tally and the verdict, powers off.
    pub fn finish(self) -> ! {
        println!("{}: {} checks, {} failed", self.name, self.n, self.failed);
        self.v.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pv_guest_lib::verdict::Outcome;

    #[test]
    fn tally_and_verdict() {
        let mut c = Checks::new("t");
        assert!(c.check("a", true, format_args!("x")));
        assert_eq!(c.ok::<u32, Errno>("b", Ok(3)), Some(3));
        assert!(c.err::<()>("c", Err(Errno::EINVAL), AbiErrno::EINVAL));
        assert_eq!(c.counts(), (3, 0));
        assert!(c.verdict().is_success());
        assert!(!c.err::<u32>("d", Ok(1), AbiErrno::EBUSY));
        assert!(!c.err::<()>("e", Err(Errno::EINVAL), AbiErrno::EBUSY));
        assert_eq!(c.ok::<u32, Errno>("f", Err(Errno::ENOSYS)), None);
        assert_eq!(c.counts(), (6, 3));
        assert_eq!(c.verdict().outcome(), Outcome::Failure);
        assert!(c
            .verdict()
            .reason()
            .starts_with("d: got success (1), want -EBUSY"));
    }

    #[test]
    fn xen_error_numbers() {
        assert_eq!(want::MAP_FOREIGN_FRAME.to_ret(), -16);
        assert_eq!(want::L4_HYPERVISOR_SLOT.to_ret(), -22);
        assert_eq!(want::EVTCHN_VIRQ_TWICE.to_ret(), -17);
        assert_eq!(want::EVTCHN_BAD_VCPU.to_ret(), -2);
        assert_eq!(want::EVTCHN_NO_DOMAIN.to_ret(), -3);
    }
}
