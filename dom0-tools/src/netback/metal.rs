//! The [`GrantCopier`] on the metal: `GNTTABOP_copy` between a guest's
//! grant and a bounce frame of Dom0's, then a plain copy to or from the
//! caller's buffer (which may span pages, or not be page-backed at all).
//! The Dom0 glue embeds it in its [`super::NetbackHost`], next to the
//! ring mappings (`GNTTABOP_map_grant_ref` at an address of its foreign
//! window) and `EVTCHNOP_bind_interdomain`.

use pv_guest_lib::frame::{self, Frame};
use pv_guest_lib::grant::{self, CopyPtr, GrantError};
use pv_guest_lib::xenbus::page::{RawPage, SharedPage};

use super::{GrantCopier, GrantRef};
use crate::xenstore::DomId;

/// `GNTST_general_error`, `GNTST_bad_copy_arg`.
const GENERAL_ERROR: i16 = -1;
const BAD_COPY_ARG: i16 = -10;

/// Grant copies through one bounce frame.
pub struct MetalCopier {
    bounce: Frame,
    raw: RawPage,
}

fn status(e: GrantError) -> i16 {
    match e {
        GrantError::Status(s) => s,
        _ => GENERAL_ERROR,
    }
}

impl MetalCopier {
    /// Allocates the bounce frame.
    pub fn new() -> Option<MetalCopier> {
        let bounce = frame::alloc_frame().ok()?;
        // SAFETY: the frame is ours for as long as the copier lives (it is
        // never freed), zeroed and mapped writable at `va`, page aligned;
        // only this RawPage and the hypervisor's copies touch it.
        let raw = unsafe { RawPage::new(bounce.va as *mut u8) };
        Some(MetalCopier { bounce, raw })
    }
}

impl GrantCopier for MetalCopier {
    fn copy_from_guest(
        &mut self,
        domid: DomId,
        gref: GrantRef,
        offset: u16,
        dst: &mut [u8],
    ) -> Result<(), i16> {
        if usize::from(offset) + dst.len() > 4096 {
            return Err(BAD_COPY_ARG);
        }
        if dst.is_empty() {
            return Ok(());
        }
        grant::copy(
            CopyPtr::Grant {
                dom: domid,
                gref,
                offset,
            },
            CopyPtr::Frame {
                mfn: self.bounce.mfn,
                offset: 0,
            },
            dst.len() as u16,
        )
        .map_err(status)?;
        self.raw.read(0, dst);
        Ok(())
    }

    fn copy_to_guest(
        &mut self,
        domid: DomId,
        gref: GrantRef,
        offset: u16,
        src: &[u8],
    ) -> Result<(), i16> {
        if usize::from(offset) + src.len() > 4096 {
            return Err(BAD_COPY_ARG);
        }
        if src.is_empty() {
            return Ok(());
        }
        self.raw.write(0, src);
        grant::copy(
            CopyPtr::Frame {
                mfn: self.bounce.mfn,
                offset: 0,
            },
            CopyPtr::Grant {
                dom: domid,
                gref,
                offset,
            },
            src.len() as u16,
        )
        .map_err(status)
    }
}
