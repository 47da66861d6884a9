//! A domain's I/O-port permissions (Xen's `d->arch.ioport_caps` rangeset)
//! and the set Xen 4.17 hands the hardware domain.
//!
//! **Owns**: the permitted port ranges of one domain, as a sorted list of
//! disjoint, non-adjacent inclusive ranges with a fixed capacity (no
//! allocation: the hardware domain needs a dozen ranges, other domains
//! none until a toolstack grants some), and the hardware domain's initial
//! set ([`IoPorts::hardware_domain`]).
//!
//! **Trusts**: nothing: every range comes checked (`first <= last`), and a
//! change that would need more than [`MAX_RANGES`] ranges is refused and
//! leaves the set unchanged, so a failure can never widen access.
//!
//! **Follows** Xen 4.17: `xen/common/rangeset.c` (`rangeset_add_range`,
//! `rangeset_remove_range`, `rangeset_contains_range`) and
//! `dom0_setup_permissions` in `xen/arch/x86/dom0_build.c` plus
//! `ns16550_endboot` (the console UART's eight ports).
//!
//! Written by hand: a dozen fixed-capacity ranges; no crate fits a
//! no-allocation ring-0 context better than this.

/// Most ranges one domain's set holds.
pub const MAX_RANGES: usize = 32;

/// The set refused a change (it would need more than [`MAX_RANGES`]
/// ranges, or `first > last`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RangeError;

/// Permitted I/O ports: sorted, disjoint, non-adjacent inclusive ranges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoPorts {
    ranges: [(u16, u16); MAX_RANGES],
    len: usize,
}

impl Default for IoPorts {
    fn default() -> Self {
        Self::none()
    }
}

/// The ports Xen 4.17's `dom0_setup_permissions` takes away from the
/// hardware domain whatever the machine (inclusive ranges).
pub const HWDOM_DENIED: &[(u16, u16)] = &[
    (0x20, 0x21),   // master PIC
    (0xa0, 0xa1),   // slave PIC
    (0x40, 0x43),   // PIT
    (0x61, 0x61),   // PIT channel 2 gate / speaker
    (0x92, 0x92),   // INIT# and alternate A20M#
    (0xf0, 0xf0),   // IGNNE#
    (0xcfc, 0xcff), // PCI CONFIG_DATA (0xcf8 is special-cased by the emulator)
];

impl IoPorts {
    /// No ports.
    pub const fn none() -> Self {
        Self {
            ranges: [(0, 0); MAX_RANGES],
            len: 0,
        }
    }

    /// Every port.
    pub const fn all() -> Self {
        let mut s = Self::none();
        s.ranges[0] = (0, 0xffff);
        s.len = 1;
        s
    }

    /// The hardware domain's set (Xen's `dom0_setup_permissions`): every
    /// port but [`HWDOM_DENIED`], the ACPI PM timer's four ports
    /// (`pm_timer`), the hypervisor's console UART's eight (`console_uart`,
    /// as `ns16550_endboot`) and any `extra` ranges the hypervisor keeps.
    pub fn hardware_domain(
        pm_timer: Option<u16>,
        console_uart: Option<u16>,
        extra: &[(u16, u16)],
    ) -> Result<Self, RangeError> {
        let mut s = Self::all();
        for &(first, last) in HWDOM_DENIED.iter().chain(extra) {
            s.deny(first, last)?;
        }
        if let Some(p) = pm_timer {
            s.deny(p, p.saturating_add(3))?;
        }
        if let Some(p) = console_uart {
            s.deny(p, p.saturating_add(7))?;
        }
        Ok(s)
    }

    /// The ranges, in order.
    pub fn ranges(&self) -> &[(u16, u16)] {
        &self.ranges[..self.len]
    }

    /// Whether every port of `first..=last` is permitted
    /// (`ioports_access_permitted`). False for an empty range.
    pub fn permitted(&self, first: u16, last: u16) -> bool {
        first <= last && self.ranges().iter().any(|&(a, b)| a <= first && last <= b)
    }

    /// Permits `first..=last` (`ioports_permit_access`).
    pub fn permit(&mut self, first: u16, last: u16) -> Result<(), RangeError> {
        if first > last {
            return Err(RangeError);
        }
        let (mut lo, mut hi) = (u32::from(first), u32::from(last));
        let mut out = [(0u16, 0u16); MAX_RANGES];
        let mut n = 0;
        let mut placed = false;
        for &(a, b) in self.ranges() {
            let (a32, b32) = (u32::from(a), u32::from(b));
            if b32 + 1 < lo {
                out[n] = (a, b);
                n += 1;
            } else if a32 > hi + 1 {
                if !placed {
                    *out.get_mut(n).ok_or(RangeError)? = (lo as u16, hi as u16);
                    n += 1;
                    placed = true;
                }
                *out.get_mut(n).ok_or(RangeError)? = (a, b);
                n += 1;
            } else {
                // Overlapping or adjacent: merge into the new range.
                lo = lo.min(a32);
                hi = hi.max(b32);
            }
        }
        if !placed {
            *out.get_mut(n).ok_or(RangeError)? = (lo as u16, hi as u16);
            n += 1;
        }
        self.ranges = out;
        self.len = n;
        Ok(())
    }

    /// Takes `first..=last` away (`ioports_deny_access`).
    pub fn deny(&mut self, first: u16, last: u16) -> Result<(), RangeError> {
        if first > last {
            return Err(RangeError);
        }
        let mut out = [(0u16, 0u16); MAX_RANGES];
        let mut n = 0;
        for &(a, b) in self.ranges() {
            if b < first || a > last {
                *out.get_mut(n).ok_or(RangeError)? = (a, b);
                n += 1;
                continue;
            }
            if a < first {
                *out.get_mut(n).ok_or(RangeError)? = (a, first - 1);
                n += 1;
            }
            if b > last {
                *out.get_mut(n).ok_or(RangeError)? = (last + 1, b);
                n += 1;
            }
        }
        self.ranges = out;
        self.len = n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_and_all() {
        assert!(!IoPorts::none().permitted(0x80, 0x80));
        assert!(IoPorts::all().permitted(0, 0xffff));
        assert!(!IoPorts::all().permitted(5, 4));
    }

    #[test]
    fn hardware_domain_matches_xen() {
        let s = IoPorts::hardware_domain(Some(0x608), Some(0x3f8), &[(0xf4, 0xf4)]).unwrap();
        for p in [
            0x20, 0x21, 0xa0, 0xa1, 0x40, 0x41, 0x42, 0x43, 0x61, 0x92, 0xf0,
        ] {
            assert!(!s.permitted(p, p), "{p:#x}");
        }
        for p in 0xcfc..=0xcff {
            assert!(!s.permitted(p, p));
        }
        for p in 0x608..=0x60b {
            assert!(!s.permitted(p, p));
        }
        for p in 0x3f8..=0x3ff {
            assert!(!s.permitted(p, p));
        }
        assert!(!s.permitted(0xf4, 0xf4));
        for p in [
            0x0, 0x22, 0x60, 0x64, 0x70, 0x71, 0x80, 0xcf8, 0x2f8, 0x3f7, 0x400, 0xffff,
        ] {
            assert!(s.permitted(p, p), "{p:#x}");
        }
        // A multi-byte access straddling a denied port is refused.
        assert!(!s.permitted(0x3f6, 0x3f9));
        assert!(!s.permitted(0xcf8, 0xcfb + 1));
        assert!(s.permitted(0xcf8, 0xcfb));
        // Sorted and disjoint.
        let r = s.ranges();
        assert!(r
            .windows(2)
            .all(|w| u32::from(w[0].1) + 1 < u32::from(w[1].0)));
    }

    #[test]
    fn permit_merges_and_deny_splits() {
        let mut s = IoPorts::none();
        s.permit(10, 20).unwrap();
        s.permit(30, 40).unwrap();
        s.permit(21, 29).unwrap();
        assert_eq!(s.ranges(), &[(10, 40)]);
        s.deny(15, 15).unwrap();
        assert_eq!(s.ranges(), &[(10, 14), (16, 40)]);
        s.permit(0, 0xffff).unwrap();
        assert_eq!(s.ranges(), &[(0, 0xffff)]);
        s.deny(0, 0xffff).unwrap();
        assert_eq!(s.ranges(), &[]);
        s.permit(0xffff, 0xffff).unwrap();
        s.permit(0, 0).unwrap();
        assert_eq!(s.ranges(), &[(0, 0), (0xffff, 0xffff)]);
        assert_eq!(s.permit(3, 2), Err(RangeError));
        assert_eq!(s.deny(3, 2), Err(RangeError));
    }

    #[test]
    fn overflow_is_refused_and_changes_nothing() {
        let mut s = IoPorts::all();
        let mut refused = false;
        for i in 0..100u16 {
            let before = s;
            if s.deny(i * 4, i * 4).is_err() {
                assert_eq!(s, before);
                refused = true;
                break;
            }
        }
        assert!(refused);
        let mut s = IoPorts::none();
        for i in 0..MAX_RANGES as u16 {
            s.permit(i * 4, i * 4).unwrap();
        }
        let before = s;
        assert_eq!(s.permit(1000, 1000), Err(RangeError));
        assert_eq!(s, before);
        // Merging needs no new slot.
        s.permit(1, 1).unwrap();
        assert_eq!(s.ranges()[0], (0, 1));
    }
}
