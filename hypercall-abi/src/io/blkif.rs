//! Block device protocol (`public/io/blkif.h`): requests and responses on the
//! shared ring between blkfront (guest) and blkback (driver domain).

use super::ring::{page_ring_size, SringHeader};
use crate::GrantRef;
use zerocopy::{FromBytes, IntoBytes};

abi_enum! {
    /// Block request operations (`BLKIF_OP_*`), in `operation`.
    pub enum BlkifOp: u8, raw u64 {
        /// Read sectors.
        Read = 0 => "BLKIF_OP_READ",
        /// Write sectors.
        Write = 1 => "BLKIF_OP_WRITE",
        /// Write with a barrier (`feature-barrier`).
        WriteBarrier = 2 => "BLKIF_OP_WRITE_BARRIER",
        /// Flush the disk cache (`feature-flush-cache`).
        FlushDiskcache = 3 => "BLKIF_OP_FLUSH_DISKCACHE",
        /// Reserved (was `BLKIF_OP_RESERVED_1`, used by blktap).
        Reserved1 = 4 => "BLKIF_OP_RESERVED_1",
        /// Discard sectors ([`BlkifRequestDiscard`], `feature-discard`).
        Discard = 5 => "BLKIF_OP_DISCARD",
        /// Indirect request ([`BlkifRequestIndirect`], `feature-max-indirect-segments`).
        Indirect = 6 => "BLKIF_OP_INDIRECT",
    }
}

abi_enum! {
    /// Response status (`BLKIF_RSP_*`), in [`BlkifResponse::status`].
    pub enum BlkifRsp: i16, raw i64 {
        /// Operation not supported.
        Eopnotsupp = -2 => "BLKIF_RSP_EOPNOTSUPP",
        /// I/O error.
        Error = -1 => "BLKIF_RSP_ERROR",
        /// Success.
        Okay = 0 => "BLKIF_RSP_OKAY",
    }
}

/// Maximum segments in a direct request.
pub const BLKIF_MAX_SEGMENTS_PER_REQUEST: usize = 11;
/// Maximum indirect pages in an indirect request.
pub const BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST: usize = 8;
/// `blkif_request_discard.flag`: secure discard.
pub const BLKIF_DISCARD_SECURE: u8 = 1 << 0;
/// Size of a blkif sector (fixed, independent of the disk's sector size).
pub const BLKIF_SECTOR_SIZE: usize = 512;

/// `blkif_vdev_t`: virtual device handle.
pub type BlkifVdev = u16;
/// `blkif_sector_t`: sector number (512-byte units).
pub type BlkifSector = u64;

abi_struct! {
    /// One data segment (`struct blkif_request_segment`): a granted page and the
    /// inclusive 512-byte sector range within it.
    pub struct BlkifRequestSegment {
        /// Grant of the data page.
        pub gref: GrantRef,
        /// First sector in the page (0..=7).
        pub first_sect: u8,
        /// Last sector in the page (inclusive).
        pub last_sect: u8,
        /// Implicit C padding; zero.
        pub _pad6: u16,
    }
}

/// Segments that fit in one indirect page.
pub const BLKIF_SEGS_PER_INDIRECT_FRAME: usize =
    crate::XEN_PAGE_SIZE / core::mem::size_of::<BlkifRequestSegment>();

abi_struct! {
    /// A read/write request (`struct blkif_request`), written by the frontend.
    pub struct BlkifRequest {
        /// A [`BlkifOp`].
        pub operation: u8,
        /// Number of segments used.
        pub nr_segments: u8,
        /// Virtual device handle.
        pub handle: BlkifVdev,
        /// Implicit C padding; zero.
        pub _pad4: u32,
        /// Frontend cookie echoed in the response.
        pub id: u64,
        /// Start sector.
        pub sector_number: BlkifSector,
        /// Data segments.
        pub seg: [BlkifRequestSegment; BLKIF_MAX_SEGMENTS_PER_REQUEST],
    }
}

abi_struct! {
    /// A discard request (`struct blkif_request_discard`).
    pub struct BlkifRequestDiscard {
        /// [`BlkifOp::Discard`].
        pub operation: u8,
        /// `BLKIF_DISCARD_*`.
        pub flag: u8,
        /// Virtual device handle.
        pub handle: BlkifVdev,
        /// Implicit C padding; zero.
        pub _pad4: u32,
        /// Frontend cookie.
        pub id: u64,
        /// Start sector.
        pub sector_number: BlkifSector,
        /// Number of sectors.
        pub nr_sectors: u64,
    }
}

abi_struct! {
    /// An indirect request (`struct blkif_request_indirect`): segments live in
    /// granted pages listed in `indirect_grefs`.
    pub struct BlkifRequestIndirect {
        /// [`BlkifOp::Indirect`].
        pub operation: u8,
        /// The real operation (read/write).
        pub indirect_op: u8,
        /// Number of segments.
        pub nr_segments: u16,
        /// Implicit C padding; zero.
        pub _pad4: u32,
        /// Frontend cookie.
        pub id: u64,
        /// Start sector.
        pub sector_number: BlkifSector,
        /// Virtual device handle.
        pub handle: BlkifVdev,
        /// Implicit C padding; zero.
        pub _pad26: u16,
        /// Grants of the pages holding [`BlkifRequestSegment`]s.
        pub indirect_grefs: [GrantRef; BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST],
        /// Implicit C padding; zero.
        pub _pad60: u32,
    }
}

abi_struct! {
    /// A response (`struct blkif_response`), written by the backend.
    pub struct BlkifResponse {
        /// Copied from the request.
        pub id: u64,
        /// Copied from the request.
        pub operation: u8,
        /// Implicit C padding; zero.
        pub _pad9: u8,
        /// A [`BlkifRsp`].
        pub status: i16,
        /// Implicit C padding; zero.
        pub _pad12: u32,
    }
}

abi_struct! {
    /// One ring slot (`union blkif_sring_entry`): holds a request (frontend) and
    /// is overwritten by the response (backend). Stored as its largest member.
    pub struct BlkifSringEntry {
        /// The request form.
        pub req: BlkifRequest,
    }
}

impl BlkifSringEntry {
    /// Reads the slot as a response.
    pub fn rsp(&self) -> BlkifResponse {
        let mut r = BlkifResponse::default();
        r.as_mut_bytes()
            .copy_from_slice(&self.req.as_bytes()[..core::mem::size_of::<BlkifResponse>()]);
        r
    }
    /// Writes a response into the slot.
    pub fn set_rsp(&mut self, rsp: &BlkifResponse) {
        self.req.as_mut_bytes()[..core::mem::size_of::<BlkifResponse>()]
            .copy_from_slice(rsp.as_bytes());
    }
    /// Reads the slot as a discard request.
    pub fn discard(&self) -> BlkifRequestDiscard {
        BlkifRequestDiscard::read_from_prefix(self.req.as_bytes())
            .map(|(v, _)| v)
            .unwrap_or_default()
    }
    /// Reads the slot as an indirect request.
    pub fn indirect(&self) -> BlkifRequestIndirect {
        BlkifRequestIndirect::read_from_prefix(self.req.as_bytes())
            .map(|(v, _)| v)
            .unwrap_or_default()
    }
}

/// Entries in a one-page blkif ring (32).
pub const BLK_RING_SIZE: usize = page_ring_size(core::mem::size_of::<BlkifSringEntry>());

/// Entries in a blkif ring spread over `nr_pages` contiguous pages
/// (`__CONST_RING_SIZE(blkif, XEN_PAGE_SIZE * nr_pages)`, the multi-page
/// rings of `ring-page-order`): 32, 64, 128, 256, 512 for 1, 2, 4, 8, 16.
pub const fn blk_ring_size(nr_pages: usize) -> usize {
    super::ring::ring_size(
        crate::XEN_PAGE_SIZE * nr_pages,
        core::mem::size_of::<BlkifSringEntry>(),
    )
}

/// `info` bit: the device is a CD-ROM (`VDISK_CDROM`).
pub const VDISK_CDROM: u32 = 0x1;
/// `info` bit: removable medium (`VDISK_REMOVABLE`).
pub const VDISK_REMOVABLE: u32 = 0x2;
/// `info` bit: read-only device (`VDISK_READONLY`).
pub const VDISK_READONLY: u32 = 0x4;

abi_struct! {
    /// The blkif shared ring page (`struct blkif_sring`), full-page sized.
    pub struct BlkifSring {
        /// Producer/consumer indices and padding.
        pub hdr: SringHeader,
        /// Slots.
        pub ring: [BlkifSringEntry; BLK_RING_SIZE],
    }
}

zeroed_default!(
    BlkifRequestSegment,
    BlkifRequest,
    BlkifRequestDiscard,
    BlkifRequestIndirect,
    BlkifResponse,
    BlkifSringEntry,
    BlkifSring,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_page_ring_sizes() {
        assert_eq!(blk_ring_size(1), BLK_RING_SIZE);
        assert_eq!(blk_ring_size(1), 32);
        assert_eq!(blk_ring_size(2), 64);
        assert_eq!(blk_ring_size(4), 128);
        assert_eq!(blk_ring_size(8), 256);
        assert_eq!(blk_ring_size(16), 512);
        assert_eq!(BLKIF_SEGS_PER_INDIRECT_FRAME, 512);
    }
}
