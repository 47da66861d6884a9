//! `memory_op` for PV domains: reservation sizes, giving pages back and
//! asking for more (within the domain's limit), the pseudo-physical memory
//! map, and where the machine-to-phys table lives.
//!
//! PV domains are not auto-translated: the "gmfn" a guest passes is a
//! machine frame number, checked against the frame table's owner. For an
//! HVM domain (translated) the lists name guest frames, which
//! `hvm_glue` maps into and out of its p2m.

use super::Call;
use crate::domain::{copy_from_guest, copy_to_guest, read_guest, write_guest};
use crate::memory::{self, FRAMES, FRAME_TABLE};
use hypercall_abi::errno::Errno;
use hypercall_abi::memory::{
    memop_cmd, MemoryOp, XenMachphysMfnList, XenMemoryExchange, XenMemoryMap, XenMemoryReservation,
};
use hypercall_abi::xen::DOMID_SELF;
use xen_core::mm::frame_table::{DomId as FtDomId, Owner, PageFlags, PagePut};
use xen_core::mm::ptval::{self, PtMemory};
use xen_core::mm::Mfn;

/// E820 "usable RAM".
const E820_RAM: u32 = 1;
/// Frames per M2P extent reported by machphys_mfn_list (2 MiB).
const M2P_EXTENT_FRAMES: u64 = 512;
/// Largest extent order a PV guest may ask for here (Xen allows more for
/// privileged domains; Oxen hands out single pages).
const MAX_ORDER: u32 = 0;

#[inline(never)]
pub fn memory_op(c: &mut Call) -> Result<i64, Errno> {
    let [cmd, arg, ..] = c.args();
    let (op, start_extent) = memop_cmd(cmd);
    match op.ok_or(Errno::ENOSYS)? {
        MemoryOp::MaximumRamPage => Ok(memory::max_mfn() as i64),
        MemoryOp::CurrentReservation | MemoryOp::MaximumReservation => {
            let mut raw = [0u8; 2];
            copy_from_guest(c.cr3, arg, &mut raw)?;
            let d = target(c, u16::from_le_bytes(raw))?;
            Ok(if op == Some(MemoryOp::CurrentReservation) {
                d.tot_pages
            } else {
                d.max_pages
            } as i64)
        }
        MemoryOp::DecreaseReservation => {
            let r: XenMemoryReservation = read_guest(c.cr3, arg)?;
            let cr3 = c.cr3;
            if target(c, r.domid)?.is_hvm() {
                return hvm_decrease(c, &r, start_extent);
            }
            check_reservation(&r)?;
            let d = target(c, r.domid)?;
            let mut done = start_extent;
            while done < r.nr_extents {
                let mut raw = [0u8; 8];
                copy_from_guest(cr3, r.extent_start.wrapping_add(done * 8), &mut raw)?;
                if !release_frame(d, Mfn(u64::from_le_bytes(raw))) {
                    break;
                }
                done += 1;
            }
            Ok(done as i64)
        }
        MemoryOp::IncreaseReservation | MemoryOp::PopulatePhysmap => {
            let r: XenMemoryReservation = read_guest(c.cr3, arg)?;
            let cr3 = c.cr3;
            let populate = op == Some(MemoryOp::PopulatePhysmap);
            if target(c, r.domid)?.is_hvm() {
                return hvm_increase(c, &r, start_extent, populate);
            }
            check_reservation(&r)?;
            let d = target(c, r.domid)?;
            let mut done = start_extent;
            while done < r.nr_extents && d.tot_pages < d.max_pages {
                let slot = r.extent_start.wrapping_add(done * 8);
                // populate_physmap: the list names the guest frame each
                // new frame backs (a PV guest's M2P entry), and gets the
                // machine frame back in its place.
                let gpfn = if populate {
                    let mut raw = [0u8; 8];
                    if let Err(e) = copy_from_guest(cr3, slot, &mut raw) {
                        return if done == start_extent {
                            Err(e)
                        } else {
                            Ok(done as i64)
                        };
                    }
                    Some(u64::from_le_bytes(raw))
                } else {
                    None
                };
                let Some(mfn) = FRAMES.lock().as_mut().and_then(|fa| fa.alloc().ok()) else {
                    break;
                };
                memory::clear_frame(mfn);
                if r.extent_start != 0 {
                    if let Err(e) = copy_to_guest(cr3, slot, &mfn.0.to_le_bytes()) {
                        let _ = FRAMES.lock().as_mut().map(|fa| fa.free(mfn));
                        return if done == start_extent {
                            Err(e)
                        } else {
                            Ok(done as i64)
                        };
                    }
                }
                if let Some(ft) = FRAME_TABLE.lock().as_mut() {
                    let _ = ft.assign(mfn, Owner::Domain(FtDomId(d.domid)));
                }
                if let Some(g) = gpfn {
                    memory::set_m2p(mfn, g);
                    crate::log_dirty::mark_pv_pfn(d.domid, g);
                }
                d.tot_pages += 1;
                done += 1;
            }
            Ok(done as i64)
        }
        MemoryOp::Exchange => exchange(c, arg),
        MemoryOp::MemoryMap => {
            // The pseudo-physical map of a PV domain: its pages from 0.
            let mut m: XenMemoryMap = read_guest(c.cr3, arg)?;
            // Xen keeps no such map for its PV hardware domain (which reads
            // the machine's, XENMEM_machine_memory_map): -ENOSYS, its
            // "backwards compatibility" answer, after the argument copy.
            if c.dom.is_privileged && !c.dom.is_hvm() {
                return Err(Errno::ENOSYS);
            }
            if m.nr_entries < 1 {
                return Err(Errno::EINVAL);
            }
            let mut e = [0u8; 20];
            e[8..16].copy_from_slice(&(c.dom.tot_pages * 4096).to_le_bytes());
            e[16..20].copy_from_slice(&E820_RAM.to_le_bytes());
            copy_to_guest(c.cr3, m.buffer, &e)?;
            m.nr_entries = 1;
            write_guest(c.cr3, arg, &m)?;
            Ok(0)
        }
        MemoryOp::MachphysMfnList => {
            let mut l: XenMachphysMfnList = read_guest(c.cr3, arg)?;
            let (base, frames) = memory::m2p_frames();
            let extents = frames.div_ceil(M2P_EXTENT_FRAMES);
            let n = extents.min(u64::from(l.max_extents));
            for i in 0..n {
                let mfn = base.0 + i * M2P_EXTENT_FRAMES;
                copy_to_guest(
                    c.cr3,
                    l.extent_start.wrapping_add(i * 8),
                    &mfn.to_le_bytes(),
                )?;
            }
            l.nr_extents = n as u32;
            write_guest(c.cr3, arg, &l)?;
            Ok(0)
        }
        MemoryOp::AddToPhysmap => super::grant_table::add_to_physmap(c),
        MemoryOp::MaximumGpfn => {
            // Xen's domain_get_maximum_gpfn: an HVM domain's highest mapped
            // guest frame; a PV domain's pseudo-physical frames run from 0
            // (Oxen has no shared_info max_pfn of its own for it: the
            // frames it holds bound it).
            let mut raw = [0u8; 2];
            copy_from_guest(c.cr3, arg, &mut raw)?;
            let d = target(c, u16::from_le_bytes(raw))?;
            let max = match d.hvm.as_mut() {
                Some(h) => crate::hvm_glue::with_p2m(&mut h.p2m, |p2m, mem| p2m.highest_gfn(mem))
                    .unwrap_or(0),
                None => d.tot_pages.saturating_sub(1),
            };
            Ok(max as i64)
        }
        _ => Err(Errno::ENOSYS),
    }
}

/// The domain a memory op names: the caller (`DOMID_SELF` or its own id),
/// or, for a privileged caller, another domain (Xen's XSM_TARGET: `-EPERM`
/// otherwise; `-ESRCH` if there is none).
fn target<'c>(c: &'c mut Call, domid: u16) -> Result<&'c mut crate::domain::Domain, Errno> {
    if domid == DOMID_SELF || domid == c.dom.domid {
        return Ok(c.dom);
    }
    let privileged = c.dom.is_privileged;
    let d = c.others.get(domid).ok_or(Errno::ESRCH)?;
    if !privileged {
        return Err(Errno::EPERM);
    }
    Ok(d)
}

fn check_reservation(r: &XenMemoryReservation) -> Result<(), Errno> {
    if r.extent_order > MAX_ORDER {
        return Err(Errno::EPERM);
    }
    Ok(())
}

/// `populate_physmap` / `increase_reservation` for an HVM domain (Xen's
/// translated guests). Populate maps each extent's fresh frames at the
/// guest frame its list entry names (which stays as it is: a translated
/// guest is never told machine frames); increase only gives the domain
/// frames, unmapped and unreported, as Xen's `increase_reservation` does
/// for a translated domain. Returns the extents done; the first extent
/// that cannot be done ends the call (already populated, over
/// `max_pages`, out of memory), and one whose guest frames are at or above
/// the p2m's limit (or misaligned, or too large an order) is -EINVAL when
/// it is the first of the call.
fn hvm_increase(
    c: &mut Call,
    r: &XenMemoryReservation,
    start_extent: u64,
    populate: bool,
) -> Result<i64, Errno> {
    use crate::hvm_glue::{self, PopulateError};
    if r.extent_order > hvm_glue::MAX_ORDER {
        return Err(Errno::EPERM);
    }
    let cr3 = c.cr3;
    let d = target(c, r.domid)?;
    let n = 1u64 << r.extent_order;
    let mut done = start_extent;
    while done < r.nr_extents {
        if !populate {
            if d.tot_pages.saturating_add(n) > d.max_pages {
                break;
            }
            let mut frames = alloc::vec::Vec::new();
            for _ in 0..n {
                match FRAMES.lock().as_mut().and_then(|fa| fa.alloc().ok()) {
                    Some(m) => frames.push(m),
                    None => break,
                }
            }
            if frames.len() as u64 != n {
                memory::free_frame_list(&frames);
                break;
            }
            if let Some(ft) = FRAME_TABLE.lock().as_mut() {
                for &m in &frames {
                    memory::clear_frame(m);
                    let _ = ft.assign(m, Owner::Domain(FtDomId(d.domid)));
                }
            }
            d.tot_pages += n;
            done += 1;
            continue;
        }
        let mut raw = [0u8; 8];
        if let Err(e) = copy_from_guest(cr3, r.extent_start.wrapping_add(done * 8), &mut raw) {
            return if done == start_extent {
                Err(e)
            } else {
                Ok(done as i64)
            };
        }
        let gfn = u64::from_le_bytes(raw);
        match hvm_glue::populate_extent(d, gfn, r.extent_order) {
            Ok(()) => done += 1,
            Err(PopulateError::BadGfn) if done == start_extent => return Err(Errno::EINVAL),
            Err(e) => {
                log::debug!(
                    "d{}: populate_physmap of gfn {gfn:#x} order {}: {e:?}",
                    d.domid,
                    r.extent_order
                );
                break;
            }
        }
    }
    Ok(done as i64)
}

/// `decrease_reservation` for an HVM domain: each extent names guest
/// frames, which are unmapped from its p2m and given back (a frame Dom0
/// still maps lives until that mapping goes). Returns the extents done;
/// the first with a frame that is not populated ends the call.
fn hvm_decrease(c: &mut Call, r: &XenMemoryReservation, start_extent: u64) -> Result<i64, Errno> {
    use crate::hvm_glue;
    if r.extent_order > hvm_glue::MAX_ORDER {
        return Err(Errno::EPERM);
    }
    let cr3 = c.cr3;
    let d = target(c, r.domid)?;
    let n = 1u64 << r.extent_order;
    let mut done = start_extent;
    'extents: while done < r.nr_extents {
        let mut raw = [0u8; 8];
        copy_from_guest(cr3, r.extent_start.wrapping_add(done * 8), &mut raw)?;
        let gfn = u64::from_le_bytes(raw);
        if gfn & (n - 1) != 0 {
            break;
        }
        for g in gfn..gfn.saturating_add(n) {
            if !hvm_glue::remove_gfn(d, g) {
                break 'extents;
            }
        }
        done += 1;
    }
    Ok(done as i64)
}

/// Gives one frame back (Xen's guest_remove_page): unpins it if pinned and
/// drops the domain's allocation reference. The frame goes back to the
/// allocator when its last reference (a mapping, a page-table entry, a base
/// pointer) goes. The shared_info page cannot be given back.
fn release_frame(d: &mut crate::domain::Domain, mfn: Mfn) -> bool {
    if mfn.maddr() == d.shared_info_maddr {
        return false;
    }
    let ok = crate::pv_mm::with_pt(d.domid, |ctx, ft, mem| {
        let Ok(info) = ft.info(mfn) else { return false };
        if info.owner() != ctx.owner() || !info.flags().contains(PageFlags::ALLOCATED) {
            return false;
        }
        if info.flags().contains(PageFlags::PINNED) && ptval::unpin(ctx, ft, mem, mfn).is_err() {
            return false;
        }
        match ft.release(mfn) {
            Ok(PagePut::Freed) => {
                mem.frame_freed(mfn);
                true
            }
            Ok(PagePut::InUse) => true,
            Err(_) => false,
        }
    });
    if ok {
        d.tot_pages -= 1;
    }
    ok
}

/// XENMEM_exchange (Xen's `memory_exchange`) for single pages: each frame
/// of `in` (which must be the domain's, with no reference but its
/// allocation) is given back and replaced by a fresh one, which backs the
/// guest frame number the `out` list held and whose machine frame number
/// is written there. `nr_exchanged` says how far it got, also on error.
fn exchange(c: &mut Call, arg: u64) -> Result<i64, Errno> {
    let mut x: XenMemoryExchange = read_guest(c.cr3, arg)?;
    if x.r#in.nr_extents << x.r#in.extent_order != x.out.nr_extents << x.out.extent_order
        || x.r#in.nr_extents > (1 << 32)
    {
        return Err(Errno::EINVAL);
    }
    if x.r#in.extent_order > MAX_ORDER || x.out.extent_order > MAX_ORDER {
        return Err(Errno::EPERM);
    }
    if x.nr_exchanged > x.r#in.nr_extents {
        return Err(Errno::EINVAL);
    }
    let cr3 = c.cr3;
    let d = target(c, x.r#in.domid)?;
    if d.is_hvm() {
        // Its lists would name guest frames: not done for translated
        // domains yet (a machine frame taken here would stay in its p2m).
        return Err(Errno::EOPNOTSUPP);
    }
    let owner = Owner::Domain(FtDomId(d.domid));
    let mut rc = Ok(0);
    while x.nr_exchanged < x.r#in.nr_extents {
        let i = x.nr_exchanged;
        let mut raw = [0u8; 8];
        if let Err(e) = copy_from_guest(cr3, x.r#in.extent_start.wrapping_add(i * 8), &mut raw) {
            rc = Err(e);
            break;
        }
        let old = Mfn(u64::from_le_bytes(raw));
        if let Err(e) = copy_from_guest(cr3, x.out.extent_start.wrapping_add(i * 8), &mut raw) {
            rc = Err(e);
            break;
        }
        let gpfn = u64::from_le_bytes(raw);
        // Xen's steal_page: only a frame nothing but its allocation holds.
        let stolen = old.maddr() != d.shared_info_maddr
            && crate::pv_mm::with_pt(d.domid, |_, ft, mem| {
                let ok = ft.info(old).is_ok_and(|p| {
                    p.owner() == owner
                        && p.flags().contains(PageFlags::ALLOCATED)
                        && p.count() == 1
                        && p.type_count() == 0
                });
                if ok {
                    if let Ok(PagePut::Freed) = ft.release(old) {
                        mem.frame_freed(old);
                    }
                }
                ok
            });
        if !stolen {
            rc = Err(Errno::EINVAL);
            break;
        }
        let Some(new) = FRAMES.lock().as_mut().and_then(|fa| fa.alloc().ok()) else {
            // The old frame is gone: the domain is a page short, as in Xen
            // when the allocation fails after the steal.
            d.tot_pages -= 1;
            rc = Err(Errno::ENOMEM);
            break;
        };
        memory::clear_frame(new);
        if let Some(ft) = FRAME_TABLE.lock().as_mut() {
            let _ = ft.assign(new, owner);
        }
        memory::set_m2p(new, gpfn);
        crate::log_dirty::mark_pv_pfn(d.domid, gpfn);
        x.nr_exchanged += 1;
        if let Err(e) = copy_to_guest(
            cr3,
            x.out.extent_start.wrapping_add(i * 8),
            &new.0.to_le_bytes(),
        ) {
            rc = Err(e);
            break;
        }
    }
    write_guest(cr3, arg, &x)?;
    rc
}
