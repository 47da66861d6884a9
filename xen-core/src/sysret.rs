//! When the way back to a PV guest may be `sysretq` instead of `iretq`
//! (Xen's `restore_all_guest`, which takes `sysretq` for frames built by
//! its `syscall` entry). `iretq` reloads CS and SS from the GDT and checks
//! them, which makes it the slow half of every hypercall; `sysretq` takes
//! RIP from RCX and RFLAGS from R11 and fixed flat selectors from STAR.
//!
//! The rule here is that `sysretq` must leave exactly the state `iretq`
//! would: so RCX must already equal RIP and R11 RFLAGS (as they do on the
//! way back from a hypercall, which is a `syscall`), RFLAGS must survive
//! `sysretq`'s mask, the selectors must be the flat 64-bit ring-3 ones
//! STAR names, and RIP must be canonical: `sysretq` to a non-canonical
//! RCX faults in ring 0 on the guest's stack on Intel CPUs (CVE-2012-0217,
//! Xen's XSA-7).

/// The guest's flat 64-bit ring-3 code selector (Xen's `FLAT_RING3_CS64`),
/// what `sysretq` loads into CS given xen-core's STAR.
pub const RING3_CS64: u64 = 0xe033;
/// The guest's flat ring-3 stack selector (`FLAT_RING3_SS64`).
pub const RING3_SS: u64 = 0xe02b;
/// The RFLAGS bits `sysretq` keeps from R11 (RF, VM and the reserved bits
/// are cleared; bit 1 is always set).
const SYSRET_RFLAGS_KEEP: u64 = 0x3c_7fd7;
const RFLAGS_FIXED: u64 = 1 << 1;

/// Whether returning with `sysretq` to this state (the frame's RIP, CS,
/// RFLAGS, SS, RCX and R11) is the same as returning with `iretq`.
pub fn may_sysret(rip: u64, cs: u64, rflags: u64, ss: u64, rcx: u64, r11: u64) -> bool {
    let canonical = {
        let top = (rip as i64) >> 47;
        top == 0 || top == -1
    };
    cs == RING3_CS64
        && ss == RING3_SS
        && canonical
        && rcx == rip
        && r11 == rflags
        && (rflags & SYSRET_RFLAGS_KEEP) | RFLAGS_FIXED == rflags
}

#[cfg(test)]
mod tests {
    use super::*;

    const IF: u64 = 1 << 9;
    const RIP: u64 = 0xffff_ffff_8000_1234;

    #[test]
    fn a_plain_hypercall_return_may_sysret() {
        assert!(may_sysret(RIP, RING3_CS64, IF | 2, RING3_SS, RIP, IF | 2));
        assert!(may_sysret(0x40_1000, RING3_CS64, 2, RING3_SS, 0x40_1000, 2));
    }

    #[test]
    fn anything_sysret_would_change_needs_iret() {
        let ok = |rip, cs, fl, ss, rcx, r11| may_sysret(rip, cs, fl, ss, rcx, r11);
        // A bounce frame or an iret hypercall moved RIP away from RCX.
        assert!(!ok(RIP + 8, RING3_CS64, IF | 2, RING3_SS, RIP, IF | 2));
        // R11 no longer RFLAGS.
        assert!(!ok(RIP, RING3_CS64, IF | 2, RING3_SS, RIP, 2));
        // 32-bit code, or other selectors.
        assert!(!ok(RIP, 0xe023, IF | 2, RING3_SS, RIP, IF | 2));
        assert!(!ok(RIP, RING3_CS64, IF | 2, 0, RIP, IF | 2));
        // RF and VM are cleared by sysretq.
        for bit in [1 << 16, 1 << 17] {
            assert!(!ok(
                RIP,
                RING3_CS64,
                IF | 2 | bit,
                RING3_SS,
                RIP,
                IF | 2 | bit
            ));
        }
    }

    /// XSA-7 / CVE-2012-0217: never `sysretq` to a non-canonical address.
    #[test]
    fn xsa_7_a_non_canonical_rip_never_sysrets() {
        for rip in [1u64 << 47, 0x8000_0000_0000_0000, 0xffff_7fff_ffff_ffff] {
            assert!(!may_sysret(rip, RING3_CS64, IF | 2, RING3_SS, rip, IF | 2));
        }
        assert!(may_sysret(
            (1 << 47) - 8,
            RING3_CS64,
            2,
            RING3_SS,
            (1 << 47) - 8,
            2
        ));
    }
}
