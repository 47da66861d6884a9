//! Xen's frame table: per machine frame, its owner, a general reference count
//! and a type (writable, L1..L4 page table, segment descriptors) with a type
//! count and the pinned/validated flags. Owns a caller-provided `[PageInfo]`
//! indexed by MFN; trusts no MFN, owner or count handed to it.
//!
//! The rules are Xen's (xen/arch/x86/mm.c, `get_page`/`get_page_type`):
//! - A frame is `Free` or allocated to one owner; allocation holds one general
//!   reference (Xen's `PGC_allocated`), released by [`FrameTable::release`].
//!   When the last general reference goes, the frame is free again.
//! - A frame has one type at a time. The type may change only while the type
//!   count is 0; each type reference needs a general reference to exist.
//! - Page-table and descriptor types must be validated by the caller before
//!   use ([`TypeGet::NeedsValidation`] → [`FrameTable::mark_validated`]); when
//!   the last type reference of a validated such frame goes, the caller must
//!   drop what its entries reference ([`TypePut::Devalidate`]).
//! - Pinning holds one general and one type reference on a validated page
//!   table, so it stays a page table with no mapping of it.
//! - Counts that would overflow are refused, never wrapped.

use core::fmt;

use bitflags::bitflags;

use super::Mfn;

/// A domain identifier (Xen's `domid_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DomId(pub u16);

impl DomId {
    /// The initial domain.
    pub const DOM0: DomId = DomId(0);
    /// First id reserved for special meanings (`DOMID_FIRST_RESERVED`).
    pub const FIRST_RESERVED: DomId = DomId(0x7ff0);
    /// `DOMID_SELF`.
    pub const SELF: DomId = DomId(0x7ff0);
    /// `DOMID_IO`: owner of I/O memory.
    pub const IO: DomId = DomId(0x7ff1);
    /// `DOMID_XEN`: owner of hypervisor memory shared with guests.
    pub const XEN: DomId = DomId(0x7ff2);
    /// `DOMID_INVALID`.
    pub const INVALID: DomId = DomId(0x7ff4);
    /// `DOMID_IDLE`.
    pub const IDLE: DomId = DomId(0x7fff);

    /// True for the ids real domains use (below `DOMID_FIRST_RESERVED`).
    pub const fn is_ordinary(self) -> bool {
        self.0 < Self::FIRST_RESERVED.0
    }
}

impl fmt::Display for DomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "d{}", self.0)
    }
}

/// Who a frame belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Owner {
    /// Not allocated.
    #[default]
    Free,
    /// The hypervisor itself (Xen's `dom_xen`).
    Xen,
    /// I/O memory (Xen's `dom_io`).
    Io,
    /// An ordinary domain.
    Domain(DomId),
}

impl Owner {
    /// The domain id if the owner is an ordinary domain.
    pub const fn domid(self) -> Option<DomId> {
        match self {
            Owner::Domain(d) => Some(d),
            _ => None,
        }
    }
}

/// A frame's type (Xen's `PGT_*_page_table` and friends).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PageType {
    /// No type yet.
    #[default]
    None,
    /// Mapped writable by its owner.
    Writable,
    /// Level-1 page table.
    L1,
    /// Level-2 page table.
    L2,
    /// Level-3 page table.
    L3,
    /// Level-4 page table.
    L4,
    /// GDT/LDT page (segment descriptors).
    SegDesc,
}

impl PageType {
    /// True for L1..L4.
    pub const fn is_page_table(self) -> bool {
        matches!(
            self,
            PageType::L1 | PageType::L2 | PageType::L3 | PageType::L4
        )
    }

    /// True for the types whose contents must be validated before use.
    pub const fn needs_validation(self) -> bool {
        self.is_page_table() || matches!(self, PageType::SegDesc)
    }

    /// The page-table type for a paging level 1..=4.
    pub const fn page_table(level: u8) -> Option<PageType> {
        match level {
            1 => Some(PageType::L1),
            2 => Some(PageType::L2),
            3 => Some(PageType::L3),
            4 => Some(PageType::L4),
            _ => None,
        }
    }
}

bitflags! {
    /// Per-frame flags (Xen's `PGC_allocated`, `PGT_pinned`, `PGT_validated`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
    pub struct PageFlags: u8 {
        /// The owner's allocation reference is held.
        const ALLOCATED = 1 << 0;
        /// Pinned as a page table (holds a type and a general reference).
        const PINNED = 1 << 1;
        /// The contents were checked for the current type.
        const VALIDATED = 1 << 2;
    }
}

/// Largest general reference count.
pub const MAX_COUNT: u32 = u32::MAX;
/// Largest type reference count.
pub const MAX_TYPE_COUNT: u32 = u32::MAX;

/// One frame-table entry (Xen's `struct page_info`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PageInfo {
    owner: Owner,
    ty: PageType,
    flags: PageFlags,
    count: u32,
    type_count: u32,
}

impl PageInfo {
    /// A free frame: no owner, no references, no type.
    pub const FREE: PageInfo = PageInfo {
        owner: Owner::Free,
        ty: PageType::None,
        flags: PageFlags::empty(),
        count: 0,
        type_count: 0,
    };

    /// Owner.
    pub const fn owner(&self) -> Owner {
        self.owner
    }

    /// Current type (meaningful while `type_count() > 0` or validated).
    pub const fn page_type(&self) -> PageType {
        self.ty
    }

    /// Flags.
    pub const fn flags(&self) -> PageFlags {
        self.flags
    }

    /// General reference count.
    pub const fn count(&self) -> u32 {
        self.count
    }

    /// Type reference count.
    pub const fn type_count(&self) -> u32 {
        self.type_count
    }
}

/// What went wrong, for [`FrameTableError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameTableErrorKind {
    /// The MFN is beyond the frame table.
    OutOfRange,
    /// `assign` on a frame that is already allocated.
    NotFree,
    /// `assign` to [`Owner::Free`] or to a reserved domain id.
    BadOwner,
    /// The frame has no general reference (it is free).
    NotInUse,
    /// The frame belongs to someone else.
    WrongOwner {
        /// The real owner.
        owner: Owner,
    },
    /// `release` without the allocation reference.
    NotAllocated,
    /// The general count would overflow.
    CountOverflow,
    /// The general count would go below zero or below the type count.
    CountUnderflow,
    /// The frame has a different type with references outstanding.
    TypeConflict {
        /// The type the frame has.
        current: PageType,
    },
    /// [`PageType::None`] was asked for.
    BadType,
    /// The type count would overflow.
    TypeCountOverflow,
    /// `put_page_type` without a type reference.
    TypeCountUnderflow,
    /// The type is referenced but its validation has not completed.
    NotValidated,
    /// Pin of a frame that is not a validated page table.
    NotPageTable,
    /// Pin of a pinned frame.
    AlreadyPinned,
    /// Unpin of a frame that is not pinned.
    NotPinned,
    /// A plain `put_page_type` would drop the pin's own reference.
    PinnedRef,
}

/// A refused frame-table operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameTableError {
    /// The frame concerned.
    pub mfn: Mfn,
    /// Why.
    pub kind: FrameTableErrorKind,
}

impl fmt::Display for FrameTableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use FrameTableErrorKind as K;
        write!(f, "mfn {}: ", self.mfn)?;
        match self.kind {
            K::OutOfRange => write!(f, "beyond the frame table"),
            K::NotFree => write!(f, "already allocated"),
            K::BadOwner => write!(f, "invalid owner"),
            K::NotInUse => write!(f, "not in use"),
            K::WrongOwner { owner } => write!(f, "owned by {owner:?}"),
            K::NotAllocated => write!(f, "allocation reference not held"),
            K::CountOverflow => write!(f, "reference count overflow"),
            K::CountUnderflow => write!(f, "reference count underflow"),
            K::TypeConflict { current } => write!(f, "has type {current:?} in use"),
            K::BadType => write!(f, "invalid type"),
            K::TypeCountOverflow => write!(f, "type count overflow"),
            K::TypeCountUnderflow => write!(f, "type count underflow"),
            K::NotValidated => write!(f, "type not validated"),
            K::NotPageTable => write!(f, "not a validated page table"),
            K::AlreadyPinned => write!(f, "already pinned"),
            K::NotPinned => write!(f, "not pinned"),
            K::PinnedRef => write!(f, "would drop the pin's reference"),
        }
    }
}

/// Result of a successful [`FrameTable::get_page_type`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TypeGet {
    /// The frame is usable as the type now.
    Validated,
    /// First reference of a type that needs checking: validate the contents,
    /// then call [`FrameTable::mark_validated`], or drop the reference with
    /// [`FrameTable::put_page_type`] if validation fails.
    NeedsValidation,
}

/// Result of a successful [`FrameTable::put_page_type`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TypePut {
    /// Nothing more to do.
    Done,
    /// The last reference of a validated page table / descriptor page went:
    /// the caller must drop the references its entries hold (Xen's
    /// `free_page_type`). The frame is no longer validated.
    Devalidate,
}

/// Result of a successful [`FrameTable::put_page`] or [`FrameTable::release`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PagePut {
    /// References remain.
    InUse,
    /// That was the last reference: the frame is free again (give it back
    /// to the frame allocator).
    Freed,
}

/// Result of a successful [`FrameTable::unpin`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unpinned {
    /// What dropping the pin's type reference requires.
    pub type_put: TypePut,
    /// Whether dropping its general reference freed the frame.
    pub page_put: PagePut,
}

/// The frame table over caller-provided entries; entry `i` describes MFN `i`.
pub struct FrameTable<'a> {
    pages: &'a mut [PageInfo],
}

impl<'a> FrameTable<'a> {
    /// A frame table whose frames all start free (the storage is reset).
    pub fn new(pages: &'a mut [PageInfo]) -> Self {
        pages.fill(PageInfo::FREE);
        FrameTable { pages }
    }

    /// Number of frames described.
    pub fn len(&self) -> usize {
        self.pages.len()
    }

    /// True if the table describes no frame.
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }

    /// A copy of the frame's entry.
    pub fn info(&self, mfn: Mfn) -> Result<PageInfo, FrameTableError> {
        self.page(mfn).copied()
    }

    /// The frame's owner.
    pub fn owner(&self, mfn: Mfn) -> Result<Owner, FrameTableError> {
        Ok(self.page(mfn)?.owner)
    }

    /// The frame's type.
    pub fn page_type(&self, mfn: Mfn) -> Result<PageType, FrameTableError> {
        Ok(self.page(mfn)?.ty)
    }

    /// True if the frame is pinned.
    pub fn is_pinned(&self, mfn: Mfn) -> Result<bool, FrameTableError> {
        Ok(self.page(mfn)?.flags.contains(PageFlags::PINNED))
    }

    /// True if the frame's current type is validated.
    pub fn is_validated(&self, mfn: Mfn) -> Result<bool, FrameTableError> {
        Ok(self.page(mfn)?.flags.contains(PageFlags::VALIDATED))
    }

    /// Give a free frame to `owner`, holding the allocation reference (Xen's
    /// `assign_pages`: count 1, `PGC_allocated`, no type).
    pub fn assign(&mut self, mfn: Mfn, owner: Owner) -> Result<(), FrameTableError> {
        let valid_owner = match owner {
            Owner::Free => false,
            Owner::Domain(d) => d.is_ordinary(),
            Owner::Xen | Owner::Io => true,
        };
        let page = self.page_mut(mfn)?;
        if page.owner != Owner::Free {
            return Err(err(mfn, FrameTableErrorKind::NotFree));
        }
        if !valid_owner {
            return Err(err(mfn, FrameTableErrorKind::BadOwner));
        }
        *page = PageInfo {
            owner,
            flags: PageFlags::ALLOCATED,
            count: 1,
            ..PageInfo::FREE
        };
        Ok(())
    }

    /// Drop the allocation reference (the owner relinquishes the frame); the
    /// frame is freed once other references go too.
    pub fn release(&mut self, mfn: Mfn) -> Result<PagePut, FrameTableError> {
        let page = self.page_mut(mfn)?;
        if !page.flags.contains(PageFlags::ALLOCATED) {
            return Err(err(mfn, FrameTableErrorKind::NotAllocated));
        }
        self.put_page(mfn)?;
        // put_page succeeded, so the frame either is free now or still ours.
        let page = self.page_mut(mfn)?;
        if page.owner == Owner::Free {
            return Ok(PagePut::Freed);
        }
        page.flags.remove(PageFlags::ALLOCATED);
        Ok(PagePut::InUse)
    }

    /// Take a general reference on a frame `owner` owns (Xen's `get_page`).
    pub fn get_page(&mut self, mfn: Mfn, owner: Owner) -> Result<(), FrameTableError> {
        let page = self.page_mut(mfn)?;
        if page.count == 0 {
            return Err(err(mfn, FrameTableErrorKind::NotInUse));
        }
        if page.owner != owner {
            let kind = FrameTableErrorKind::WrongOwner { owner: page.owner };
            return Err(err(mfn, kind));
        }
        if page.count == MAX_COUNT {
            return Err(err(mfn, FrameTableErrorKind::CountOverflow));
        }
        page.count += 1;
        Ok(())
    }

    /// Drop a general reference (Xen's `put_page`); the last one frees the frame.
    pub fn put_page(&mut self, mfn: Mfn) -> Result<PagePut, FrameTableError> {
        let page = self.page_mut(mfn)?;
        // Every type reference is backed by a general reference.
        if page.count == 0 || page.count <= page.type_count {
            return Err(err(mfn, FrameTableErrorKind::CountUnderflow));
        }
        page.count -= 1;
        if page.count > 0 {
            return Ok(PagePut::InUse);
        }
        *page = PageInfo::FREE;
        Ok(PagePut::Freed)
    }

    /// Take a type reference as `ty` (Xen's `get_page_type`). The frame must be
    /// in use; the caller holds a general reference for the type reference.
    pub fn get_page_type(&mut self, mfn: Mfn, ty: PageType) -> Result<TypeGet, FrameTableError> {
        let page = self.page_mut(mfn)?;
        if ty == PageType::None {
            return Err(err(mfn, FrameTableErrorKind::BadType));
        }
        if page.count == 0 {
            return Err(err(mfn, FrameTableErrorKind::NotInUse));
        }
        if page.type_count > 0 {
            return page.add_type_ref(mfn, ty);
        }
        if page.ty != ty {
            page.ty = ty;
            page.flags.remove(PageFlags::VALIDATED);
        }
        if !ty.needs_validation() {
            page.flags.insert(PageFlags::VALIDATED);
        }
        page.type_count = 1;
        Ok(if page.flags.contains(PageFlags::VALIDATED) {
            TypeGet::Validated
        } else {
            TypeGet::NeedsValidation
        })
    }

    /// Record that the contents of a frame with a type reference were checked.
    pub fn mark_validated(&mut self, mfn: Mfn) -> Result<(), FrameTableError> {
        let page = self.page_mut(mfn)?;
        if page.type_count == 0 {
            return Err(err(mfn, FrameTableErrorKind::TypeCountUnderflow));
        }
        page.flags.insert(PageFlags::VALIDATED);
        Ok(())
    }

    /// Drop a type reference (Xen's `put_page_type`).
    pub fn put_page_type(&mut self, mfn: Mfn) -> Result<TypePut, FrameTableError> {
        let page = self.page_mut(mfn)?;
        if page.type_count == 0 {
            return Err(err(mfn, FrameTableErrorKind::TypeCountUnderflow));
        }
        if page.type_count == 1 && page.flags.contains(PageFlags::PINNED) {
            return Err(err(mfn, FrameTableErrorKind::PinnedRef));
        }
        page.type_count -= 1;
        if page.type_count > 0 || !page.ty.needs_validation() {
            return Ok(TypePut::Done);
        }
        if page.flags.contains(PageFlags::VALIDATED) {
            page.flags.remove(PageFlags::VALIDATED);
            return Ok(TypePut::Devalidate);
        }
        Ok(TypePut::Done)
    }

    /// `get_page` then `get_page_type`, undoing the first if the second fails
    /// (Xen's `get_page_and_type`).
    pub fn get_page_and_type(
        &mut self,
        mfn: Mfn,
        owner: Owner,
        ty: PageType,
    ) -> Result<TypeGet, FrameTableError> {
        self.get_page(mfn, owner)?;
        match self.get_page_type(mfn, ty) {
            Ok(got) => Ok(got),
            Err(e) => {
                // Cannot fail: we just took this reference and hold no type ref.
                let _ = self.put_page(mfn);
                Err(e)
            }
        }
    }

    /// `put_page_type` then `put_page` (Xen's `put_page_and_type`).
    pub fn put_page_and_type(&mut self, mfn: Mfn) -> Result<(TypePut, PagePut), FrameTableError> {
        let type_put = self.put_page_type(mfn)?;
        let page_put = self.put_page(mfn)?;
        Ok((type_put, page_put))
    }

    /// Pin a validated page table of `owner`: takes a general and a type
    /// reference that only [`FrameTable::unpin`] drops.
    pub fn pin(&mut self, mfn: Mfn, owner: Owner) -> Result<(), FrameTableError> {
        let page = *self.page(mfn)?;
        if page.count == 0 {
            return Err(err(mfn, FrameTableErrorKind::NotInUse));
        }
        if page.owner != owner {
            let kind = FrameTableErrorKind::WrongOwner { owner: page.owner };
            return Err(err(mfn, kind));
        }
        if page.flags.contains(PageFlags::PINNED) {
            return Err(err(mfn, FrameTableErrorKind::AlreadyPinned));
        }
        let validated_pt = page.type_count > 0
            && page.ty.is_page_table()
            && page.flags.contains(PageFlags::VALIDATED);
        if !validated_pt {
            return Err(err(mfn, FrameTableErrorKind::NotPageTable));
        }
        self.get_page_and_type(mfn, owner, page.ty)?;
        self.page_mut(mfn)?.flags.insert(PageFlags::PINNED);
        Ok(())
    }

    /// Make a reference the caller already holds on a validated page table
    /// (one general and one type reference, e.g. from
    /// [`FrameTable::get_page_and_type`]) the pin: Xen's
    /// `test_and_set_bit(_PGT_pinned)` in `MMUEXT_PIN_Lx_TABLE`. Unlike
    /// [`FrameTable::pin`] it takes no new reference. On error nothing changes
    /// and the caller still owns its reference.
    pub fn set_pinned(&mut self, mfn: Mfn) -> Result<(), FrameTableError> {
        let page = self.page_mut(mfn)?;
        if page.flags.contains(PageFlags::PINNED) {
            return Err(err(mfn, FrameTableErrorKind::AlreadyPinned));
        }
        let validated_pt = page.type_count > 0
            && page.ty.is_page_table()
            && page.flags.contains(PageFlags::VALIDATED);
        if !validated_pt {
            return Err(err(mfn, FrameTableErrorKind::NotPageTable));
        }
        page.flags.insert(PageFlags::PINNED);
        Ok(())
    }

    /// Clear the pin and hand its general and type reference to the caller,
    /// which must drop them: [`FrameTable::put_page_type`] (devalidating the
    /// contents on [`TypePut::Devalidate`]) and then [`FrameTable::put_page`],
    /// Xen's `MMUEXT_UNPIN_TABLE` order.
    pub fn clear_pinned(&mut self, mfn: Mfn) -> Result<(), FrameTableError> {
        let page = self.page_mut(mfn)?;
        if !page.flags.contains(PageFlags::PINNED) {
            return Err(err(mfn, FrameTableErrorKind::NotPinned));
        }
        page.flags.remove(PageFlags::PINNED);
        Ok(())
    }

    /// Drop a pin and the references it held.
    pub fn unpin(&mut self, mfn: Mfn) -> Result<Unpinned, FrameTableError> {
        let page = self.page_mut(mfn)?;
        if !page.flags.contains(PageFlags::PINNED) {
            return Err(err(mfn, FrameTableErrorKind::NotPinned));
        }
        page.flags.remove(PageFlags::PINNED);
        let (type_put, page_put) = self.put_page_and_type(mfn)?;
        Ok(Unpinned { type_put, page_put })
    }

    fn page(&self, mfn: Mfn) -> Result<&PageInfo, FrameTableError> {
        usize::try_from(mfn.0)
            .ok()
            .and_then(|i| self.pages.get(i))
            .ok_or(err(mfn, FrameTableErrorKind::OutOfRange))
    }

    fn page_mut(&mut self, mfn: Mfn) -> Result<&mut PageInfo, FrameTableError> {
        usize::try_from(mfn.0)
            .ok()
            .and_then(|i| self.pages.get_mut(i))
            .ok_or(err(mfn, FrameTableErrorKind::OutOfRange))
    }
}

impl PageInfo {
    /// One more type reference on a frame whose type is already referenced.
    fn add_type_ref(&mut self, mfn: Mfn, ty: PageType) -> Result<TypeGet, FrameTableError> {
        if self.ty != ty {
            let kind = FrameTableErrorKind::TypeConflict { current: self.ty };
            return Err(err(mfn, kind));
        }
        if !self.flags.contains(PageFlags::VALIDATED) {
            return Err(err(mfn, FrameTableErrorKind::NotValidated));
        }
        if self.type_count == MAX_TYPE_COUNT {
            return Err(err(mfn, FrameTableErrorKind::TypeCountOverflow));
        }
        self.type_count += 1;
        Ok(TypeGet::Validated)
    }
}

const fn err(mfn: Mfn, kind: FrameTableErrorKind) -> FrameTableError {
    FrameTableError { mfn, kind }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;
    use std::vec;
    use FrameTableErrorKind as K;

    const D0: Owner = Owner::Domain(DomId::DOM0);
    const D1: Owner = Owner::Domain(DomId(1));
    const M: Mfn = Mfn(3);

    fn table(n: usize, f: impl FnOnce(&mut FrameTable)) {
        // Garbage the constructor must reset.
        let garbage = PageInfo {
            owner: D1,
            ty: PageType::L2,
            flags: PageFlags::all(),
            count: 7,
            type_count: 3,
        };
        let mut pages = vec![garbage; n];
        let mut ft = FrameTable::new(&mut pages);
        f(&mut ft);
    }

    fn kind<T: core::fmt::Debug>(r: Result<T, FrameTableError>) -> K {
        r.unwrap_err().kind
    }

    #[test]
    fn new_table_is_all_free() {
        table(8, |ft| {
            assert_eq!(ft.len(), 8);
            assert!(!ft.is_empty());
            for i in 0..8 {
                assert_eq!(ft.info(Mfn(i)).unwrap(), PageInfo::FREE);
            }
            assert_eq!(kind(ft.info(Mfn(8))), K::OutOfRange);
            assert_eq!(kind(ft.owner(Mfn(u64::MAX))), K::OutOfRange);
        });
    }

    #[test]
    fn assign_rules() {
        table(8, |ft| {
            ft.assign(M, D0).unwrap();
            let info = ft.info(M).unwrap();
            assert_eq!(info.owner(), D0);
            assert_eq!(info.count(), 1);
            assert_eq!(info.flags(), PageFlags::ALLOCATED);
            assert_eq!(info.page_type(), PageType::None);
            assert_eq!(kind(ft.assign(M, D1)), K::NotFree);
            assert_eq!(kind(ft.assign(Mfn(1), Owner::Free)), K::BadOwner);
            assert_eq!(
                kind(ft.assign(Mfn(1), Owner::Domain(DomId::SELF))),
                K::BadOwner
            );
            assert_eq!(
                kind(ft.assign(Mfn(1), Owner::Domain(DomId::XEN))),
                K::BadOwner
            );
            assert_eq!(kind(ft.assign(Mfn(9), D0)), K::OutOfRange);
            ft.assign(Mfn(1), Owner::Xen).unwrap();
            ft.assign(Mfn(2), Owner::Io).unwrap();
            ft.assign(Mfn(4), Owner::Domain(DomId(0x7fef))).unwrap();
            assert_eq!(ft.owner(Mfn(1)).unwrap().domid(), None);
            assert_eq!(ft.owner(M).unwrap().domid(), Some(DomId::DOM0));
        });
    }

    #[test]
    fn general_refs_and_owner_checks() {
        table(8, |ft| {
            assert_eq!(kind(ft.get_page(M, D0)), K::NotInUse);
            ft.assign(M, D0).unwrap();
            assert_eq!(kind(ft.get_page(M, D1)), K::WrongOwner { owner: D0 });
            assert_eq!(
                kind(ft.get_page(M, Owner::Xen)),
                K::WrongOwner { owner: D0 }
            );
            ft.get_page(M, D0).unwrap();
            ft.get_page(M, D0).unwrap();
            assert_eq!(ft.info(M).unwrap().count(), 3);
            assert_eq!(ft.put_page(M), Ok(PagePut::InUse));
            assert_eq!(ft.put_page(M), Ok(PagePut::InUse));
            // The last reference is the allocation: releasing frees.
            assert_eq!(ft.release(M), Ok(PagePut::Freed));
            assert_eq!(ft.info(M).unwrap(), PageInfo::FREE);
            assert_eq!(kind(ft.put_page(M)), K::CountUnderflow);
            assert_eq!(kind(ft.release(M)), K::NotAllocated);
        });
    }

    #[test]
    fn release_with_outstanding_refs_defers_free() {
        table(8, |ft| {
            ft.assign(M, D0).unwrap();
            ft.get_page(M, D0).unwrap();
            assert_eq!(ft.release(M), Ok(PagePut::InUse));
            assert_eq!(kind(ft.release(M)), K::NotAllocated);
            assert_eq!(ft.owner(M), Ok(D0));
            assert_eq!(ft.put_page(M), Ok(PagePut::Freed));
            assert_eq!(ft.owner(M), Ok(Owner::Free));
            // Freed frames can be reassigned.
            ft.assign(M, D1).unwrap();
        });
    }

    #[test]
    fn general_count_saturates() {
        table(8, |ft| {
            ft.assign(M, D0).unwrap();
            ft.pages[3].count = MAX_COUNT - 1;
            ft.get_page(M, D0).unwrap();
            assert_eq!(kind(ft.get_page(M, D0)), K::CountOverflow);
            assert_eq!(ft.info(M).unwrap().count(), MAX_COUNT);
        });
    }

    #[test]
    fn writable_type_needs_no_validation() {
        table(8, |ft| {
            ft.assign(M, D0).unwrap();
            assert_eq!(
                ft.get_page_type(M, PageType::Writable),
                Ok(TypeGet::Validated)
            );
            assert_eq!(
                ft.get_page_type(M, PageType::Writable),
                Ok(TypeGet::Validated)
            );
            assert_eq!(ft.info(M).unwrap().type_count(), 2);
            assert_eq!(
                kind(ft.get_page_type(M, PageType::L1)),
                K::TypeConflict {
                    current: PageType::Writable
                }
            );
            assert_eq!(ft.put_page_type(M), Ok(TypePut::Done));
            assert_eq!(ft.put_page_type(M), Ok(TypePut::Done));
            assert_eq!(kind(ft.put_page_type(M)), K::TypeCountUnderflow);
            // Type is sticky while unreferenced, and still validated.
            assert_eq!(ft.page_type(M), Ok(PageType::Writable));
            assert_eq!(ft.is_validated(M), Ok(true));
        });
    }

    #[test]
    fn type_changes_only_at_zero_type_count() {
        table(8, |ft| {
            ft.assign(M, D0).unwrap();
            ft.get_page_type(M, PageType::Writable).unwrap();
            for ty in [
                PageType::L1,
                PageType::L2,
                PageType::L3,
                PageType::L4,
                PageType::SegDesc,
            ] {
                assert_eq!(
                    kind(ft.get_page_type(M, ty)),
                    K::TypeConflict {
                        current: PageType::Writable
                    }
                );
            }
            ft.put_page_type(M).unwrap();
            assert_eq!(
                ft.get_page_type(M, PageType::L1),
                Ok(TypeGet::NeedsValidation)
            );
            assert_eq!(ft.is_validated(M), Ok(false));
            assert_eq!(
                kind(ft.get_page_type(M, PageType::Writable)),
                K::TypeConflict {
                    current: PageType::L1
                }
            );
        });
    }

    #[test]
    fn page_table_validation_cycle() {
        table(8, |ft| {
            ft.assign(M, D0).unwrap();
            assert_eq!(
                ft.get_page_type(M, PageType::L2),
                Ok(TypeGet::NeedsValidation)
            );
            // A second user while validation is pending is refused.
            assert_eq!(kind(ft.get_page_type(M, PageType::L2)), K::NotValidated);
            ft.mark_validated(M).unwrap();
            assert_eq!(ft.get_page_type(M, PageType::L2), Ok(TypeGet::Validated));
            assert_eq!(ft.put_page_type(M), Ok(TypePut::Done));
            // Last reference of a validated table: devalidate.
            assert_eq!(ft.put_page_type(M), Ok(TypePut::Devalidate));
            assert_eq!(ft.is_validated(M), Ok(false));
            assert_eq!(ft.page_type(M), Ok(PageType::L2));
            // Same type again needs validation again.
            assert_eq!(
                ft.get_page_type(M, PageType::L2),
                Ok(TypeGet::NeedsValidation)
            );
            // Failed validation: drop the ref, nothing to devalidate.
            assert_eq!(ft.put_page_type(M), Ok(TypePut::Done));
            assert_eq!(ft.info(M).unwrap().type_count(), 0);
        });
    }

    #[test]
    fn segdesc_needs_validation_too() {
        table(8, |ft| {
            ft.assign(M, D0).unwrap();
            assert_eq!(
                ft.get_page_type(M, PageType::SegDesc),
                Ok(TypeGet::NeedsValidation)
            );
            ft.mark_validated(M).unwrap();
            assert_eq!(ft.put_page_type(M), Ok(TypePut::Devalidate));
        });
    }

    #[test]
    fn type_refs_need_a_live_frame() {
        table(8, |ft| {
            assert_eq!(kind(ft.get_page_type(M, PageType::Writable)), K::NotInUse);
            ft.assign(M, D0).unwrap();
            assert_eq!(kind(ft.get_page_type(M, PageType::None)), K::BadType);
            assert_eq!(kind(ft.mark_validated(M)), K::TypeCountUnderflow);
            ft.get_page_type(M, PageType::Writable).unwrap();
            // The only general ref backs the type ref: it cannot go first.
            assert_eq!(kind(ft.put_page(M)), K::CountUnderflow);
            assert_eq!(kind(ft.release(M)), K::CountUnderflow);
            ft.put_page_type(M).unwrap();
            assert_eq!(ft.release(M), Ok(PagePut::Freed));
        });
    }

    #[test]
    fn type_count_saturates() {
        table(8, |ft| {
            ft.assign(M, D0).unwrap();
            ft.get_page_type(M, PageType::Writable).unwrap();
            ft.pages[3].type_count = MAX_TYPE_COUNT;
            assert_eq!(
                kind(ft.get_page_type(M, PageType::Writable)),
                K::TypeCountOverflow
            );
        });
    }

    #[test]
    fn get_and_put_page_and_type() {
        table(8, |ft| {
            ft.assign(M, D0).unwrap();
            assert_eq!(
                ft.get_page_and_type(M, D0, PageType::L4),
                Ok(TypeGet::NeedsValidation)
            );
            ft.mark_validated(M).unwrap();
            let info = ft.info(M).unwrap();
            assert_eq!((info.count(), info.type_count()), (2, 1));
            // Failure of the type part undoes the general ref.
            assert_eq!(
                kind(ft.get_page_and_type(M, D0, PageType::L1)),
                K::TypeConflict {
                    current: PageType::L4
                }
            );
            assert_eq!(ft.info(M).unwrap().count(), 2);
            assert_eq!(
                kind(ft.get_page_and_type(M, D1, PageType::L4)),
                K::WrongOwner { owner: D0 }
            );
            assert_eq!(
                ft.put_page_and_type(M),
                Ok((TypePut::Devalidate, PagePut::InUse))
            );
            assert_eq!(ft.release(M), Ok(PagePut::Freed));
        });
    }

    #[test]
    fn pin_and_unpin() {
        table(8, |ft| {
            ft.assign(M, D0).unwrap();
            assert_eq!(kind(ft.pin(M, D0)), K::NotPageTable);
            ft.get_page_and_type(M, D0, PageType::L4).unwrap();
            assert_eq!(kind(ft.pin(M, D0)), K::NotPageTable); // not validated yet
            ft.mark_validated(M).unwrap();
            assert_eq!(kind(ft.pin(M, D1)), K::WrongOwner { owner: D0 });
            ft.pin(M, D0).unwrap();
            assert_eq!(ft.is_pinned(M), Ok(true));
            assert_eq!(kind(ft.pin(M, D0)), K::AlreadyPinned);
            let info = ft.info(M).unwrap();
            assert_eq!((info.count(), info.type_count()), (3, 2));
            // The builder drops its own reference; the pin keeps the table alive.
            assert_eq!(ft.put_page_and_type(M), Ok((TypePut::Done, PagePut::InUse)));
            // A plain put cannot steal the pin's type reference.
            assert_eq!(kind(ft.put_page_type(M)), K::PinnedRef);
            assert_eq!(ft.is_validated(M), Ok(true));
            assert_eq!(
                ft.unpin(M),
                Ok(Unpinned {
                    type_put: TypePut::Devalidate,
                    page_put: PagePut::InUse
                })
            );
            assert_eq!(kind(ft.unpin(M)), K::NotPinned);
            assert_eq!(ft.release(M), Ok(PagePut::Freed));
        });
    }

    #[test]
    fn set_and_clear_pinned_transfer_references() {
        table(8, |ft| {
            ft.assign(M, D0).unwrap();
            assert_eq!(kind(ft.set_pinned(M)), K::NotPageTable);
            ft.get_page_and_type(M, D0, PageType::L2).unwrap();
            // Validation pending: not pinnable yet.
            assert_eq!(kind(ft.set_pinned(M)), K::NotPageTable);
            ft.mark_validated(M).unwrap();
            ft.set_pinned(M).unwrap();
            // No new reference: the caller's became the pin's.
            let info = ft.info(M).unwrap();
            assert_eq!((info.count(), info.type_count()), (2, 1));
            assert!(info.flags().contains(PageFlags::PINNED));
            assert_eq!(kind(ft.set_pinned(M)), K::AlreadyPinned);
            assert_eq!(kind(ft.put_page_type(M)), K::PinnedRef);
            ft.clear_pinned(M).unwrap();
            assert_eq!(kind(ft.clear_pinned(M)), K::NotPinned);
            assert_eq!(ft.put_page_type(M), Ok(TypePut::Devalidate));
            assert_eq!(ft.put_page(M), Ok(PagePut::InUse));
            assert_eq!(ft.release(M), Ok(PagePut::Freed));
            assert_eq!(kind(ft.set_pinned(Mfn(99))), K::OutOfRange);
            assert_eq!(kind(ft.clear_pinned(Mfn(99))), K::OutOfRange);
        });
    }

    #[test]
    fn pin_of_writable_or_free_frames_is_refused() {
        table(8, |ft| {
            assert_eq!(kind(ft.pin(M, D0)), K::NotInUse);
            ft.assign(M, D0).unwrap();
            ft.get_page_type(M, PageType::Writable).unwrap();
            assert_eq!(kind(ft.pin(M, D0)), K::NotPageTable);
            assert_eq!(kind(ft.pin(Mfn(100), D0)), K::OutOfRange);
        });
    }

    #[test]
    fn unpin_can_free_a_released_table() {
        table(8, |ft| {
            ft.assign(M, D0).unwrap();
            ft.get_page_and_type(M, D0, PageType::L1).unwrap();
            ft.mark_validated(M).unwrap();
            ft.pin(M, D0).unwrap();
            ft.put_page_and_type(M).unwrap();
            assert_eq!(ft.release(M), Ok(PagePut::InUse));
            assert_eq!(
                ft.unpin(M),
                Ok(Unpinned {
                    type_put: TypePut::Devalidate,
                    page_put: PagePut::Freed
                })
            );
            assert_eq!(ft.info(M).unwrap(), PageInfo::FREE);
        });
    }

    const ALL_TYPES: [PageType; 6] = [
        PageType::Writable,
        PageType::L1,
        PageType::L2,
        PageType::L3,
        PageType::L4,
        PageType::SegDesc,
    ];

    /// Every (current type, referenced or not, validated or not) x (wanted
    /// type) combination against Xen's rules.
    #[test]
    fn type_transition_matrix() {
        for from in ALL_TYPES {
            for to in ALL_TYPES {
                for referenced in [false, true] {
                    table(8, |ft| {
                        ft.assign(M, D0).unwrap();
                        ft.get_page_type(M, from).unwrap();
                        ft.mark_validated(M).unwrap();
                        if !referenced {
                            ft.put_page_type(M).unwrap();
                        }
                        let got = ft.get_page_type(M, to);
                        let info = ft.info(M).unwrap();
                        match (referenced, from == to) {
                            (true, false) => {
                                assert_eq!(
                                    got.unwrap_err().kind,
                                    K::TypeConflict { current: from },
                                    "{from:?}->{to:?}"
                                );
                                assert_eq!((info.page_type(), info.type_count()), (from, 1));
                            }
                            (true, true) => {
                                assert_eq!(got, Ok(TypeGet::Validated));
                                assert_eq!(info.type_count(), 2);
                            }
                            (false, _) => {
                                // Free to retype; checked types (re)validate.
                                let want = if to.needs_validation() {
                                    TypeGet::NeedsValidation
                                } else {
                                    TypeGet::Validated
                                };
                                assert_eq!(got, Ok(want), "{from:?}->{to:?}");
                                assert_eq!((info.page_type(), info.type_count()), (to, 1));
                            }
                        }
                    });
                }
            }
        }
    }

    #[test]
    fn helpers_and_display() {
        assert_eq!(PageType::page_table(3), Some(PageType::L3));
        assert_eq!(PageType::page_table(0), None);
        assert_eq!(PageType::page_table(5), None);
        assert!(PageType::L4.is_page_table());
        assert!(!PageType::SegDesc.is_page_table());
        assert!(!PageType::Writable.needs_validation());
        assert!(DomId(5).is_ordinary());
        assert!(!DomId::IDLE.is_ordinary());
        assert_eq!(format!("{}", DomId(3)), "d3");
        let e = FrameTableError {
            mfn: Mfn(0x10),
            kind: K::TypeConflict {
                current: PageType::L1,
            },
        };
        assert_eq!(format!("{e}"), "mfn 0x10: has type L1 in use");
    }

    #[test]
    fn empty_table() {
        let mut pages: [PageInfo; 0] = [];
        let mut ft = FrameTable::new(&mut pages);
        assert!(ft.is_empty());
        assert_eq!(kind(ft.assign(Mfn(0), D0)), K::OutOfRange);
    }
}
