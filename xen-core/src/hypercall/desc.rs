//! Descriptor tables: `set_gdt` and `update_descriptor`.
//!
//! GDT frames are typed as descriptor pages in the frame table (all their
//! descriptors checked by `xen_core::desc`), so the guest can never map them
//! writable; it changes them only through update_descriptor.

use super::Call;
use crate::arch::x86_64::gdt::FIRST_RESERVED_GDT_ENTRY;
use crate::arch::x86_64::paging::phys_to_virt;
use crate::domain::copy_from_guest;
use crate::memory::FRAME_TABLE;
use hypercall_abi::errno::Errno;
use xen_core::desc::{check_descriptor, check_descriptor_page};
use xen_core::mm::frame_table::{DomId, Owner, PageType, TypeGet};
use xen_core::mm::Mfn;

/// Descriptors per page.
const PER_PAGE: u64 = 512;

/// Types `mfn` as a descriptor page of `domid`, validating its contents the
/// first time. Takes a general and a type reference.
pub fn get_desc_page(domid: u16, mfn: Mfn) -> Result<(), Errno> {
    let mut ft = FRAME_TABLE.lock();
    let ft = ft.as_mut().ok_or(Errno::EINVAL)?;
    match ft.get_page_and_type(mfn, Owner::Domain(DomId(domid)), PageType::SegDesc) {
        Ok(TypeGet::Validated) => Ok(()),
        Ok(TypeGet::NeedsValidation) => {
            // SAFETY: the frame belongs to the domain and now has the
            // descriptor type, so the guest cannot write it meanwhile; the
            // direct map covers it.
            let page = unsafe { &mut *(phys_to_virt(mfn.maddr()) as *mut [u64; 512]) };
            if check_descriptor_page(page) {
                let _ = ft.mark_validated(mfn);
                Ok(())
            } else {
                let _ = ft.put_page_and_type(mfn);
                Err(Errno::EINVAL)
            }
        }
        Err(_) => Err(Errno::EINVAL),
    }
}

/// Drops a reference taken by [`get_desc_page`].
pub fn put_desc_page(mfn: Mfn) {
    if let Some(ft) = FRAME_TABLE.lock().as_mut() {
        let _ = ft.put_page_and_type(mfn);
    }
}

/// `set_gdt(frame_list, entries)`.
#[inline(never)]
pub fn set_gdt(c: &mut Call) -> Result<i64, Errno> {
    let [list, entries, ..] = c.args();
    // Xen's `entries` is an `unsigned int`; the reserved entries are ours.
    let entries = u64::from(entries as u32);
    if entries > FIRST_RESERVED_GDT_ENTRY as u64 {
        return Err(Errno::EINVAL);
    }
    let nr = entries.div_ceil(PER_PAGE) as usize;
    let mut frames = heapless::Vec::<u64, 14>::new();
    let mut raw = [0u8; 14 * 8];
    copy_from_guest(c.cr3, list, &mut raw[..nr * 8])?;
    for chunk in raw[..nr * 8].chunks_exact(8) {
        let mfn = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        if let Err(e) = get_desc_page(c.dom.domid, Mfn(mfn)) {
            frames.iter().for_each(|&f| put_desc_page(Mfn(f)));
            return Err(e);
        }
        let _ = frames.push(mfn);
    }
    let v = c.vcpu();
    crate::pv::unmap_gdt(v);
    for &old in v.gdt_frames.iter() {
        put_desc_page(Mfn(old));
    }
    v.gdt_frames = frames;
    v.gdt_ents = entries;
    crate::pv::map_gdt(v);
    Ok(0)
}

/// `update_descriptor(ma, desc)`: write one checked descriptor to a frame
/// the domain owns that is a descriptor page or could be typed writable.
#[inline(never)]
pub fn update_descriptor(c: &mut Call) -> Result<i64, Errno> {
    let [ma, desc, ..] = c.args();
    if ma % 8 != 0 {
        return Err(Errno::EINVAL);
    }
    let d = check_descriptor(desc).ok_or(Errno::EINVAL)?;
    let mfn = Mfn(ma >> 12);
    let owner = Owner::Domain(DomId(c.dom.domid));
    let mut ft = FRAME_TABLE.lock();
    let ft = ft.as_mut().ok_or(Errno::EINVAL)?;
    let info = ft.info(mfn).map_err(|_| Errno::EINVAL)?;
    if info.owner() != owner {
        return Err(Errno::EINVAL);
    }
    let ty = if info.page_type() == PageType::SegDesc && info.type_count() > 0 {
        PageType::SegDesc
    } else {
        PageType::Writable
    };
    ft.get_page_and_type(mfn, owner, ty)
        .map_err(|_| Errno::EINVAL)?;
    // SAFETY: the domain owns the frame and we hold a type reference that
    // keeps it a descriptor or writable page; 8-byte aligned, direct-mapped.
    unsafe { (phys_to_virt(ma) as *mut u64).write_volatile(d) };
    crate::log_dirty::mark_pv_frames(ft, &[mfn]);
    let _ = ft.put_page_and_type(mfn);
    Ok(0)
}
