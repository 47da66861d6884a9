//! Building `GNTTABOP_copy` batches for [`GrantMapper`](super::GrantMapper)
//! implementations: each [`CopySeg`] of a frontend's page against a range
//! of Dom0's buffer, split wherever the buffer crosses one of Dom0's pages
//! (a grant copy may not cross a page on either side).

use alloc::vec::Vec;

use hypercall_abi::grant_table::GnttabCopy;
use pv_guest_lib::grant::{copy_op, CopyPtr};

use super::CopySeg;

const PAGE: u64 = 4096;

/// The copies moving `segs` of `domid`'s pages to (`to_guest`) or from the
/// buffer at virtual address `buf_va` (the pieces back to back, as
/// [`GrantMapper::copy_in`](super::GrantMapper::copy_in) lays them out);
/// `mfn_of(va)` gives the machine frame of Dom0's page holding `va`.
/// `None` if a segment leaves its page or a frame is unknown.
pub fn copy_ops(
    domid: u16,
    segs: &[CopySeg],
    buf_va: u64,
    to_guest: bool,
    mfn_of: impl Fn(u64) -> Option<u64>,
) -> Option<Vec<GnttabCopy>> {
    let mut ops = Vec::with_capacity(segs.len() * 2);
    let mut va = buf_va;
    for s in segs {
        if u64::from(s.offset) + u64::from(s.len) > PAGE {
            return None;
        }
        let mut done: u64 = 0;
        while done < u64::from(s.len) {
            let local_off = va % PAGE;
            let n = (PAGE - local_off).min(u64::from(s.len) - done);
            let local = CopyPtr::Frame {
                mfn: mfn_of(va - local_off)?,
                offset: local_off as u16,
            };
            let guest = CopyPtr::Grant {
                dom: domid,
                gref: s.gref,
                offset: s.offset + done as u16,
            };
            ops.push(if to_guest {
                copy_op(local, guest, n as u16)
            } else {
                copy_op(guest, local, n as u16)
            });
            done += n;
            va += n;
        }
    }
    Some(ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hypercall_abi::grant_table::{GNTCOPY_DEST_GREF, GNTCOPY_SOURCE_GREF};

    #[test]
    fn splits_at_dom0_page_boundaries() {
        let segs = [
            CopySeg {
                gref: 10,
                offset: 512,
                len: 3584,
            },
            CopySeg {
                gref: 11,
                offset: 0,
                len: 4096,
            },
        ];
        // The buffer starts 1 KiB into a page.
        let ops = copy_ops(5, &segs, 0x10_0400, false, |va| Some(va >> 12)).unwrap();
        let v: Vec<(u32, u16, u64, u16, u16)> = ops
            .iter()
            .map(|o| {
                (
                    o.source.gref(),
                    o.source.offset,
                    o.dest.gmfn(),
                    o.dest.offset,
                    o.len,
                )
            })
            .collect();
        assert_eq!(
            v,
            [
                (10, 512, 0x100, 1024, 3072),
                (10, 3584, 0x101, 0, 512),
                (11, 0, 0x101, 512, 3584),
                (11, 3584, 0x102, 0, 512),
            ]
        );
        assert!(ops
            .iter()
            .all(|o| o.flags == GNTCOPY_SOURCE_GREF && o.source.domid == 5));
        let out = copy_ops(5, &segs[..1], 0x20_0000, true, |va| Some(va >> 12)).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].flags, GNTCOPY_DEST_GREF);
        assert_eq!(
            (out[0].dest.gref(), out[0].dest.offset, out[0].len),
            (10, 512, 3584)
        );
        assert!(copy_ops(
            5,
            &[CopySeg {
                gref: 1,
                offset: 4000,
                len: 512
            }],
            0,
            true,
            |_| Some(1)
        )
        .is_none());
        assert!(copy_ops(5, &segs, 0, true, |_| None).is_none());
    }
}
