//! Oxen's virtio-blk driver: the request protocol (virtio 1.x §5.2) on
//! `virtio-drivers`' split [`VirtQueue`], with scatter-gather requests.
//!
//! **Owns**: feature negotiation (read-only, flush, indirect descriptors,
//! event index, `seg_max`), the capacity, and each request's descriptor
//! chain: the 16-byte header, one descriptor per data segment, the status
//! byte. The crate's `VirtIOBlk` takes one contiguous buffer per request
//! and a 16-entry queue; blkback hands the device the frontend's granted
//! pages in place (one segment each, up to 64 per request), which needs
//! the chain, and a deep queue.
//!
//! **Trusts**: its callers for the buffers' lifetime (every `*_nb` call is
//! `unsafe`: the device owns the header, the data and the status until the
//! token comes back); the device for nothing past the status byte, which
//! is read as an error unless it is `OK`.

use alloc::vec::Vec;

use super::dev::Dom0Transport;
use super::hal::Dom0Hal;
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::{DeviceStatus, Transport};
use virtio_drivers::Error;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Descriptors in the request queue (QEMU's virtio-blk offers 256).
pub const QUEUE_SIZE: usize = 128;
/// The request queue.
const QUEUE: u16 = 0;
/// Bytes per sector.
pub const SECTOR_SIZE: usize = 512;

/// `VIRTIO_BLK_F_SEG_MAX`.
const F_SEG_MAX: u64 = 1 << 2;
/// `VIRTIO_BLK_F_RO`.
const F_RO: u64 = 1 << 5;
/// `VIRTIO_BLK_F_FLUSH`.
const F_FLUSH: u64 = 1 << 9;
/// `VIRTIO_F_INDIRECT_DESC`.
const F_INDIRECT_DESC: u64 = 1 << 28;
/// `VIRTIO_F_EVENT_IDX`.
const F_EVENT_IDX: u64 = 1 << 29;
/// `VIRTIO_F_VERSION_1`.
const F_VERSION_1: u64 = 1 << 32;

/// `virtio_blk_config.capacity` (two 32-bit halves).
const CFG_CAPACITY: usize = 0;
/// `virtio_blk_config.seg_max`.
const CFG_SEG_MAX: usize = 12;

/// `VIRTIO_BLK_T_IN`.
const T_IN: u32 = 0;
/// `VIRTIO_BLK_T_OUT`.
const T_OUT: u32 = 1;
/// `VIRTIO_BLK_T_FLUSH`.
const T_FLUSH: u32 = 4;
/// `VIRTIO_BLK_S_OK`.
const S_OK: u8 = 0;
/// `VIRTIO_BLK_S_UNSUPP`.
const S_UNSUPP: u8 = 2;

/// `struct virtio_blk_req`'s header.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, Immutable, IntoBytes, KnownLayout)]
pub struct ReqHeader {
    kind: u32,
    reserved: u32,
    sector: u64,
}

/// The status byte the device writes last.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, Immutable, IntoBytes, KnownLayout)]
pub struct Status {
    status: u8,
}

impl Default for Status {
    /// Not `OK`: a request the device never answered reads as failed.
    fn default() -> Self {
        Status { status: 0xff }
    }
}

impl Status {
    fn result(&self) -> Result<(), Error> {
        match self.status {
            S_OK => Ok(()),
            S_UNSUPP => Err(Error::Unsupported),
            _ => Err(Error::IoError),
        }
    }
}

/// One piece of a request's data: `len` bytes at `ptr` in Dom0's address
/// space (the HAL finds its machine address).
#[derive(Clone, Copy, Debug)]
pub struct Seg {
    /// Where.
    pub ptr: *mut u8,
    /// How many bytes.
    pub len: usize,
}

/// A virtio-blk device on Dom0's transport.
pub struct BlkDev {
    transport: Dom0Transport,
    queue: VirtQueue<Dom0Hal, QUEUE_SIZE>,
    capacity: u64,
    features: u64,
    seg_max: usize,
}

impl BlkDev {
    /// Negotiates features and sets up the request queue.
    pub fn new(mut transport: Dom0Transport) -> Result<BlkDev, Error> {
        transport.set_status(DeviceStatus::empty());
        transport.set_status(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER);
        let offered = transport.read_device_features();
        let features =
            offered & (F_SEG_MAX | F_RO | F_FLUSH | F_INDIRECT_DESC | F_EVENT_IDX | F_VERSION_1);
        transport.write_driver_features(features);
        transport.set_status(
            DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER | DeviceStatus::FEATURES_OK,
        );
        transport.set_guest_page_size(4096);
        let capacity = transport.read_consistent(|| {
            let lo: u32 = transport.read_config_space(CFG_CAPACITY)?;
            let hi: u32 = transport.read_config_space(CFG_CAPACITY + 4)?;
            Ok(u64::from(lo) | (u64::from(hi) << 32))
        })?;
        // Without SEG_MAX the device states no limit; the chain still has
        // to fit the queue when it is not indirect.
        let seg_max = if features & F_SEG_MAX != 0 {
            let s: u32 = transport.read_config_space(CFG_SEG_MAX)?;
            (s as usize).max(1)
        } else {
            QUEUE_SIZE - 2
        };
        let queue = VirtQueue::new(
            &mut transport,
            QUEUE,
            features & F_INDIRECT_DESC != 0,
            features & F_EVENT_IDX != 0,
        )?;
        transport.finish_init();
        Ok(BlkDev {
            transport,
            queue,
            capacity,
            features,
            seg_max,
        })
    }

    /// Size in 512-byte sectors.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Read-only disk.
    pub fn readonly(&self) -> bool {
        self.features & F_RO != 0
    }

    /// Data segments one request may have.
    pub fn max_segments(&self) -> usize {
        let fit = if self.features & F_INDIRECT_DESC != 0 {
            QUEUE_SIZE
        } else {
            QUEUE_SIZE - 2
        };
        self.seg_max.min(fit)
    }

    /// The token of the next completed request, if any.
    pub fn peek_used(&mut self) -> Option<u16> {
        self.queue.peek_used()
    }

    /// Puts a read (`write` false: the device fills `segs`) or a write of
    /// `segs` at `sector` on the queue; its token.
    ///
    /// # Safety
    ///
    /// `req`, `status` and the memory of every segment (valid for its
    /// length, and not moved) belong to the device from now until
    /// [`BlkDev::complete`] with this token succeeds: nobody else reads
    /// or writes them meanwhile.
    pub unsafe fn submit(
        &mut self,
        write: bool,
        sector: u64,
        req: &mut ReqHeader,
        segs: &[Seg],
        status: &mut Status,
    ) -> Result<u16, Error> {
        if segs.is_empty() || segs.len() > self.max_segments() {
            return Err(Error::InvalidParam);
        }
        *req = ReqHeader {
            kind: if write { T_OUT } else { T_IN },
            reserved: 0,
            sector,
        };
        *status = Status::default();
        // SAFETY: the caller hands the device these buffers until the
        // request completes (this function's contract).
        unsafe { self.add(write, req, segs, status) }
    }

    /// Builds the chain and notifies the device if it wants.
    ///
    /// # Safety
    ///
    /// As [`BlkDev::submit`].
    unsafe fn add(
        &mut self,
        write: bool,
        req: &ReqHeader,
        segs: &[Seg],
        status: &mut Status,
    ) -> Result<u16, Error> {
        let token = if write {
            let mut inputs: Vec<&[u8]> = Vec::with_capacity(segs.len() + 1);
            inputs.push(req.as_bytes());
            // SAFETY: each segment is valid for its length until
            // completion (the caller's contract); a write's data is only
            // read; the slices live only for this call (the queue keeps
            // addresses, not borrows).
            inputs.extend(
                segs.iter()
                    .map(|s| unsafe { core::slice::from_raw_parts(s.ptr.cast_const(), s.len) }),
            );
            let mut outputs = [status.as_mut_bytes()];
            // SAFETY: as above: every buffer stays put and untouched
            // until `complete`.
            unsafe { self.queue.add(&inputs, &mut outputs)? }
        } else {
            let inputs = [req.as_bytes()];
            let mut outputs: Vec<&mut [u8]> = Vec::with_capacity(segs.len() + 1);
            // SAFETY: as above; a read's segments are the device's alone
            // until completion, so a mutable slice over each aliases
            // nothing.
            outputs.extend(
                segs.iter()
                    .map(|s| unsafe { core::slice::from_raw_parts_mut(s.ptr, s.len) }),
            );
            outputs.push(status.as_mut_bytes());
            // SAFETY: as above.
            unsafe { self.queue.add(&inputs, &mut outputs)? }
        };
        if self.queue.should_notify() {
            self.transport.notify(QUEUE);
        }
        Ok(token)
    }

    /// Takes request `token` off the used ring (it must be the next one,
    /// [`BlkDev::peek_used`]) and returns the device's verdict.
    ///
    /// # Safety
    ///
    /// `write`, `req`, `segs` and `status` are exactly what `token` was
    /// submitted with.
    pub unsafe fn complete(
        &mut self,
        token: u16,
        write: bool,
        req: &ReqHeader,
        segs: &[Seg],
        status: &mut Status,
    ) -> Result<(), Error> {
        if write {
            let mut inputs: Vec<&[u8]> = Vec::with_capacity(segs.len() + 1);
            inputs.push(req.as_bytes());
            // SAFETY: the segments `add` was given, valid until this
            // returns (the caller's contract).
            inputs.extend(
                segs.iter()
                    .map(|s| unsafe { core::slice::from_raw_parts(s.ptr.cast_const(), s.len) }),
            );
            let mut outputs = [status.as_mut_bytes()];
            // SAFETY: the same buffers `token` was added with.
            unsafe { self.queue.pop_used(token, &inputs, &mut outputs)? };
        } else {
            let inputs = [req.as_bytes()];
            let mut outputs: Vec<&mut [u8]> = Vec::with_capacity(segs.len() + 1);
            // SAFETY: as above; the device handed the token back, so
            // nobody else touches the segments.
            outputs.extend(
                segs.iter()
                    .map(|s| unsafe { core::slice::from_raw_parts_mut(s.ptr, s.len) }),
            );
            outputs.push(status.as_mut_bytes());
            // SAFETY: as above.
            unsafe { self.queue.pop_used(token, &inputs, &mut outputs)? };
        }
        status.result()
    }

    /// Reads `buf.len()` bytes from `sector` into one buffer
    /// ([`BlkDev::submit`] with one segment).
    ///
    /// # Safety
    ///
    /// As [`BlkDev::submit`]: `req`, `buf` and `resp` are the device's
    /// until [`BlkDev::complete_read_blocks`] with the token.
    pub unsafe fn read_blocks_nb(
        &mut self,
        sector: usize,
        req: &mut ReqHeader,
        buf: &mut [u8],
        resp: &mut Status,
    ) -> Result<u16, Error> {
        let seg = [Seg {
            ptr: buf.as_mut_ptr(),
            len: buf.len(),
        }];
        // SAFETY: the caller's contract.
        unsafe { self.submit(false, sector as u64, req, &seg, resp) }
    }

    /// Completes a [`BlkDev::read_blocks_nb`].
    ///
    /// # Safety
    ///
    /// The buffers `token` was submitted with.
    pub unsafe fn complete_read_blocks(
        &mut self,
        token: u16,
        req: &ReqHeader,
        buf: &mut [u8],
        resp: &mut Status,
    ) -> Result<(), Error> {
        let seg = [Seg {
            ptr: buf.as_mut_ptr(),
            len: buf.len(),
        }];
        // SAFETY: the caller's contract.
        unsafe { self.complete(token, false, req, &seg, resp) }
    }

    /// Writes `buf` at `sector` ([`BlkDev::submit`] with one segment).
    ///
    /// # Safety
    ///
    /// As [`BlkDev::read_blocks_nb`] (the device only reads `buf`).
    pub unsafe fn write_blocks_nb(
        &mut self,
        sector: usize,
        req: &mut ReqHeader,
        buf: &[u8],
        resp: &mut Status,
    ) -> Result<u16, Error> {
        // The device only reads a write's data: the pointer is never
        // written through.
        let seg = [Seg {
            ptr: buf.as_ptr().cast_mut(),
            len: buf.len(),
        }];
        // SAFETY: the caller's contract.
        unsafe { self.submit(true, sector as u64, req, &seg, resp) }
    }

    /// Completes a [`BlkDev::write_blocks_nb`].
    ///
    /// # Safety
    ///
    /// The buffers `token` was submitted with.
    pub unsafe fn complete_write_blocks(
        &mut self,
        token: u16,
        req: &ReqHeader,
        buf: &[u8],
        resp: &mut Status,
    ) -> Result<(), Error> {
        let seg = [Seg {
            ptr: buf.as_ptr().cast_mut(),
            len: buf.len(),
        }];
        // SAFETY: the caller's contract.
        unsafe { self.complete(token, true, req, &seg, resp) }
    }

    /// Flushes the device's write cache, spinning until it answers (the
    /// queue must hold nothing else). Without `VIRTIO_BLK_F_FLUSH` the
    /// device has no volatile cache: nothing to do.
    pub fn flush(&mut self) -> Result<(), Error> {
        if self.features & F_FLUSH == 0 {
            return Ok(());
        }
        let req = ReqHeader {
            kind: T_FLUSH,
            reserved: 0,
            sector: 0,
        };
        let mut status = Status::default();
        self.queue.add_notify_wait_pop(
            &[req.as_bytes()],
            &mut [status.as_mut_bytes()],
            &mut self.transport,
        )?;
        status.result()
    }
}

impl Drop for BlkDev {
    fn drop(&mut self) {
        // The device must not touch the queue's memory once it is freed.
        self.transport.queue_unset(QUEUE);
    }
}
