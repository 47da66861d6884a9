//! blkif request decoding and execution in blkback (dom0-tools
//! `blkback::request`): ring slots a hostile frontend wrote, its granted
//! pages (indirect segment descriptors included), against an in-memory
//! disk through a fake grant table.
//!
//! Input: a flags byte (read-only device, flush, discard, indirect
//! segments, persistent grants, batch or one by one), 256 bytes that fill
//! the granted pages (repeated), then 112-byte ring slots. Checks: one
//! response per request, with its `id` and `operation`, status OK, ERROR
//! or EOPNOTSUPP, counted in the stats; a request answered with an error
//! changed neither the disk nor any granted page; a read-only device's
//! disk never changes.
#![no_main]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use dom0_tools::blkback::request::{handle, handle_batch, PMap};
use dom0_tools::blkback::{CopySeg, GrantFault, GrantMapper, Limits, MemDisk, Stats};
use hypercall_abi::io::blkif::{BlkifRsp, BlkifSringEntry};
use libfuzzer_sys::fuzz_target;
use pv_guest_lib::grant::GrantRef;
use pv_guest_lib::xenbus::page::{MemPage, SharedPage, PAGE_SIZE};
use zerocopy::FromBytes;

const FRONT: u16 = 1;
/// Grants 0..6 are writable, 6..8 read-only; others do not exist.
const GRANTS: GrantRef = 8;
const READONLY_FROM: GrantRef = 6;
const DISK_SECTORS: u64 = 64;

struct Grants {
    pages: Rc<RefCell<BTreeMap<GrantRef, MemPage>>>,
}

impl Grants {
    fn page(&self, domid: u16, g: GrantRef, write: bool) -> Result<MemPage, GrantFault> {
        if domid != FRONT || (write && g >= READONLY_FROM) {
            return Err(GrantFault);
        }
        self.pages.borrow().get(&g).cloned().ok_or(GrantFault)
    }
}

impl GrantMapper for Grants {
    type Page = MemPage;
    fn map(&mut self, domid: u16, g: GrantRef, readonly: bool) -> Result<MemPage, GrantFault> {
        self.page(domid, g, !readonly)
    }
    fn unmap(&mut self, _page: MemPage) {}
    fn copy_in(&mut self, domid: u16, segs: &[CopySeg], buf: &mut [u8]) -> Result<(), GrantFault> {
        let mut pos = 0;
        for s in segs {
            let p = self.page(domid, s.gref, false)?;
            let len = usize::from(s.len);
            assert!(
                usize::from(s.offset) + len <= PAGE_SIZE,
                "copy past the page: {s:?}"
            );
            let dst = buf.get_mut(pos..pos + len).ok_or(GrantFault)?;
            p.read(usize::from(s.offset), dst);
            pos += len;
        }
        Ok(())
    }
    fn copy_out(&mut self, domid: u16, segs: &[CopySeg], buf: &[u8]) -> Result<(), GrantFault> {
        for s in segs {
            self.page(domid, s.gref, true)?;
            assert!(
                usize::from(s.offset) + usize::from(s.len) <= PAGE_SIZE,
                "copy past the page"
            );
        }
        let mut pos = 0;
        for s in segs {
            let p = self.page(domid, s.gref, true)?;
            let len = usize::from(s.len);
            let src = buf.get(pos..pos + len).ok_or(GrantFault)?;
            p.write(usize::from(s.offset), src);
            pos += len;
        }
        Ok(())
    }
}

fn snapshot(pages: &BTreeMap<GrantRef, MemPage>) -> Vec<Vec<u8>> {
    pages
        .values()
        .map(|p| {
            let mut v = vec![0u8; PAGE_SIZE];
            p.read(0, &mut v);
            v
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (fill, slots) = rest.split_at(rest.len().min(256));
    let pages: BTreeMap<GrantRef, MemPage> = (0..GRANTS)
        .map(|g| {
            let p = MemPage::new();
            if !fill.is_empty() {
                let mut b = vec![0u8; PAGE_SIZE];
                for (i, x) in b.iter_mut().enumerate() {
                    *x = fill[i % fill.len()] ^ (g as u8);
                }
                p.write(0, &b);
            }
            (g, p)
        })
        .collect();
    let pages = Rc::new(RefCell::new(pages));
    let mut grants = Grants {
        pages: pages.clone(),
    };
    let lim = Limits {
        domid: FRONT,
        readonly: flags & 1 != 0,
        flush: flags & 2 != 0,
        discard: flags & 4 != 0,
        max_indirect: if flags & 8 != 0 { 32 } else { 0 },
        sectors: DISK_SECTORS,
        sector_size: 512,
    };
    let persistent = flags & 16 != 0;
    let batch = flags & 32 != 0;
    let mut disk = MemDisk::new(DISK_SECTORS);
    disk.discard = true;
    for (i, b) in disk.data.iter_mut().enumerate() {
        *b = (i / 512) as u8;
    }
    let disk0 = disk.data.clone();

    let entry_len = core::mem::size_of::<BlkifSringEntry>();
    let reqs: Vec<BlkifSringEntry> = slots
        .chunks_exact(entry_len)
        .take(32)
        .map(|c| BlkifSringEntry::read_from_bytes(c).unwrap())
        .collect();
    let mut pmap: PMap<MemPage> = PMap::new();
    let mut buf = None;
    let mut stats = Stats::default();

    let responses = if batch {
        let pm = persistent.then_some(&mut pmap);
        handle_batch(
            &lim,
            &mut grants,
            &mut disk,
            pm,
            &mut buf,
            &mut stats,
            &reqs,
        )
    } else {
        let mut out = Vec::new();
        for e in &reqs {
            let disk_before = disk.data.clone();
            let pages_before = snapshot(&pages.borrow());
            let pm = if persistent { Some(&mut pmap) } else { None };
            let r = handle(&lim, &mut grants, &mut disk, pm, &mut buf, &mut stats, e);
            if r.status != BlkifRsp::Okay as i16 {
                assert!(
                    disk.data == disk_before,
                    "a failed request {:?} wrote the disk",
                    e.req
                );
                assert!(
                    snapshot(&pages.borrow()) == pages_before,
                    "a failed request {:?} wrote the frontend's pages",
                    e.req
                );
            }
            out.push(r);
        }
        out
    };

    assert_eq!(responses.len(), reqs.len(), "one response per request");
    let mut failed = 0;
    for (r, e) in responses.iter().zip(&reqs) {
        assert_eq!(r.id, e.req.id, "response for another request");
        assert_eq!(r.operation, e.req.operation);
        assert!(
            [BlkifRsp::Okay, BlkifRsp::Error, BlkifRsp::Eopnotsupp]
                .iter()
                .any(|s| *s as i16 == r.status),
            "status {}",
            r.status
        );
        if r.status != BlkifRsp::Okay as i16 {
            failed += 1;
        }
    }
    assert_eq!(
        stats.errors + stats.unsupported,
        failed,
        "stats disagree with responses"
    );
    if lim.readonly {
        assert!(disk.data == disk0, "a read-only device's disk changed");
    }
});
