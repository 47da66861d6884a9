//! The pure rules of HVM domains that the hypercall glue applies before
//! their vCPUs can run: which `createdomain` flags make one (Xen 4.17's
//! `sanitise_domain_config`), which extents `populate_physmap` may map
//! into its p2m, and how a Dom0 L1 entry naming one of its guest frames
//! becomes one naming the machine frame behind it (Xen's translated
//! `mod_l1_entry`).
//!
//! Owns no state; trusts nothing it is given. The glue
//! (`hvm_glue`, `hypercall::{domctl,memory,mmu}`) turns the errors into
//! Xen's codes.

use crate::hvm::p2m;
use hypercall_abi::domctl::{
    XEN_DOMCTL_CDF_HAP, XEN_DOMCTL_CDF_HVM, XEN_DOMCTL_CDF_IOMMU, XEN_DOMCTL_CDF_XS_DOMAIN,
};
use hypercall_abi::errno::Errno;

/// `createdomain` flags Oxen accepts.
pub const KNOWN_CDF: u32 =
    XEN_DOMCTL_CDF_XS_DOMAIN | XEN_DOMCTL_CDF_IOMMU | XEN_DOMCTL_CDF_HVM | XEN_DOMCTL_CDF_HAP;

/// Whether `createdomain` with `flags` makes an HVM domain (`Ok(true)`), a
/// PV one (`Ok(false)`), or nothing (-EINVAL): unknown flags; `CDF_hap`
/// without `CDF_hvm` ("HAP requested for non-HVM guest"); `CDF_hvm` when
/// the boot found no SVM with nested paging (`hap_available` false, Xen's
/// `!hvm_enabled`); `CDF_hvm` without `CDF_hap` (Oxen has no shadow
/// paging, as a Xen built without `CONFIG_SHADOW_PAGING`).
pub fn check_create_flags(flags: u32, hap_available: bool) -> Result<bool, Errno> {
    if flags & !KNOWN_CDF != 0 {
        return Err(Errno::EINVAL);
    }
    let hvm = flags & XEN_DOMCTL_CDF_HVM != 0;
    let hap = flags & XEN_DOMCTL_CDF_HAP != 0;
    if hap && !hvm {
        return Err(Errno::EINVAL);
    }
    if hvm && (!hap_available || !hap) {
        return Err(Errno::EINVAL);
    }
    Ok(hvm)
}

/// Largest extent order for an HVM domain's populate/decrease (one 2 MiB
/// page).
pub const MAX_ORDER: u32 = p2m::ORDER_2M;

/// Why an extent is refused before anything is allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtentError {
    /// Order above [`MAX_ORDER`].
    Order,
    /// The first guest frame is not aligned to the extent's size.
    Misaligned,
    /// The extent reaches [`p2m::GFN_LIMIT`] or beyond.
    TooHigh,
}

/// The guest frames `[gfn, gfn + (1 << order))` of an extent, if it may be
/// mapped into a p2m.
pub fn extent_range(gfn: u64, order: u32) -> Result<core::ops::Range<u64>, ExtentError> {
    if order > MAX_ORDER {
        return Err(ExtentError::Order);
    }
    let n = 1u64 << order;
    if gfn & (n - 1) != 0 {
        return Err(ExtentError::Misaligned);
    }
    match gfn.checked_add(n) {
        Some(end) if end <= p2m::GFN_LIMIT => Ok(gfn..end),
        _ => Err(ExtentError::TooHigh),
    }
}

/// Present bit of a page-table entry.
const PTE_PRESENT: u64 = 1;
/// Frame address bits of a page-table entry (12..=51).
const PTE_ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// A new L1 entry whose frame field is a guest frame of a translated
/// domain, with that frame replaced by the machine frame `lookup` gives
/// (flags and other bits unchanged). A non-present entry is returned as is
/// (nothing is mapped). `None` if the guest frame is not populated (Xen:
/// -EINVAL when `get_page_from_gfn` finds no page).
pub fn translate_l1e(val: u64, lookup: impl FnOnce(u64) -> Option<u64>) -> Option<u64> {
    if val & PTE_PRESENT == 0 {
        return Some(val);
    }
    let gfn = (val & PTE_ADDR_MASK) >> 12;
    let mfn = lookup(gfn)?;
    Some((val & !PTE_ADDR_MASK) | ((mfn << 12) & PTE_ADDR_MASK))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hypercall_abi::domctl::XEN_DOMCTL_CDF_NESTED_VIRT;

    #[test]
    fn create_flags_follow_xen() {
        let hvm_hap = XEN_DOMCTL_CDF_HVM | XEN_DOMCTL_CDF_HAP;
        assert_eq!(check_create_flags(0, false), Ok(false));
        assert_eq!(check_create_flags(0, true), Ok(false));
        assert_eq!(
            check_create_flags(XEN_DOMCTL_CDF_XS_DOMAIN, true),
            Ok(false)
        );
        assert_eq!(check_create_flags(hvm_hap, true), Ok(true));
        assert_eq!(
            check_create_flags(hvm_hap | XEN_DOMCTL_CDF_IOMMU, true),
            Ok(true)
        );
        // Without the hardware, as Xen without hvm_enabled.
        assert_eq!(check_create_flags(hvm_hap, false), Err(Errno::EINVAL));
        // No shadow paging.
        assert_eq!(
            check_create_flags(XEN_DOMCTL_CDF_HVM, true),
            Err(Errno::EINVAL)
        );
        // HAP for a PV guest.
        assert_eq!(
            check_create_flags(XEN_DOMCTL_CDF_HAP, true),
            Err(Errno::EINVAL)
        );
        // Flags Oxen does not offer.
        assert_eq!(
            check_create_flags(hvm_hap | XEN_DOMCTL_CDF_NESTED_VIRT, true),
            Err(Errno::EINVAL)
        );
        assert_eq!(check_create_flags(1 << 31, true), Err(Errno::EINVAL));
    }

    #[test]
    fn extents_are_checked() {
        assert_eq!(extent_range(0, 0), Ok(0..1));
        assert_eq!(extent_range(0x1001, 0), Ok(0x1001..0x1002));
        assert_eq!(extent_range(1024, 9), Ok(1024..1536));
        assert_eq!(extent_range(4, 2), Ok(4..8));
        assert_eq!(extent_range(513, 9), Err(ExtentError::Misaligned));
        assert_eq!(extent_range(0, 10), Err(ExtentError::Order));
        assert_eq!(extent_range(0, 64), Err(ExtentError::Order));
        assert_eq!(
            extent_range(p2m::GFN_LIMIT - 1, 0),
            Ok(p2m::GFN_LIMIT - 1..p2m::GFN_LIMIT)
        );
        assert_eq!(extent_range(p2m::GFN_LIMIT, 0), Err(ExtentError::TooHigh));
        assert_eq!(
            extent_range(p2m::GFN_LIMIT - 512, 9),
            Ok(p2m::GFN_LIMIT - 512..p2m::GFN_LIMIT)
        );
        assert_eq!(extent_range(!511u64, 9), Err(ExtentError::TooHigh));
    }

    #[test]
    fn l1_entries_are_translated_keeping_flags() {
        let nx = 1u64 << 63;
        let val = nx | (0x1001 << 12) | 0x67;
        let out = translate_l1e(val, |g| (g == 0x1001).then_some(0xabcde));
        assert_eq!(out, Some(nx | (0xabcde << 12) | 0x67));
        // Unpopulated.
        assert_eq!(translate_l1e(val, |_| None), None);
        // Not present: nothing to translate, the lookup is not asked.
        assert_eq!(
            translate_l1e(0x1001 << 12, |_| panic!("looked up")),
            Some(0x1001 << 12)
        );
        assert_eq!(translate_l1e(0, |_| panic!("looked up")), Some(0));
        // Software bits 52..=62 stay.
        let sw = 0x7ffu64 << 52;
        assert_eq!(
            translate_l1e(sw | (7 << 12) | 1, |_| Some(9)),
            Some(sw | (9 << 12) | 1)
        );
        // A lookup answer too large for the field cannot spill into flags.
        assert_eq!(
            translate_l1e((1 << 12) | 1, |_| Some(u64::MAX)),
            Some(PTE_ADDR_MASK | 1)
        );
    }
}
