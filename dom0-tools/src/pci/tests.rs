//! Host tests over a fake bus.

use super::*;
use alloc::collections::BTreeMap;
use alloc::vec;

/// One fake function: 4 KiB of config space, and per BAR dword the bits
/// that are writable (the rest read back as they are).
#[derive(Clone)]
struct FakeFn {
    cfg: Vec<u8>,
    writable: BTreeMap<u16, u32>,
}

impl FakeFn {
    fn new(vendor: u16, device: u16, class: u32, header: u8) -> FakeFn {
        let mut f = FakeFn {
            cfg: vec![0; 4096],
            writable: BTreeMap::new(),
        };
        f.set32(0, u32::from(vendor) | u32::from(device) << 16);
        f.set32(8, class);
        f.cfg[0x0e] = header;
        f
    }
    fn set32(&mut self, off: u16, v: u32) {
        self.cfg[usize::from(off)..usize::from(off) + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn get32(&self, off: u16) -> u32 {
        u32::from_le_bytes(
            self.cfg[usize::from(off)..usize::from(off) + 4]
                .try_into()
                .unwrap(),
        )
    }
    /// A memory BAR of `size` at `addr` (32-bit, or 64-bit taking two slots).
    fn mem_bar(&mut self, idx: u16, addr: u64, size: u64, is64: bool) {
        let off = 0x10 + 4 * idx;
        let mask = !(size - 1);
        let flags = if is64 { 4 } else { 0 };
        self.set32(off, (addr as u32 & !0xf) | flags);
        self.writable.insert(off, mask as u32 & !0xf);
        if is64 {
            self.set32(off + 4, (addr >> 32) as u32);
            self.writable.insert(off + 4, (mask >> 32) as u32);
        }
    }
    fn io_bar(&mut self, idx: u16, port: u32, size: u32) {
        let off = 0x10 + 4 * idx;
        self.set32(off, port | 1);
        self.writable.insert(off, !(size - 1) & 0xffff & !3);
    }
    /// Appends capability `id` with `body` (dwords after the header dword's
    /// upper 16 bits) at `at`, linking it after the last one.
    fn add_cap(&mut self, at: u8, id: u8, hdr_hi: u16, body: &[u32]) {
        self.cfg[6] |= 0x10; // status: cap list
        let mut link = 0x34u16;
        let mut pos = self.cfg[0x34];
        while pos != 0 {
            link = u16::from(pos) + 1;
            pos = self.cfg[usize::from(pos) + 1];
        }
        self.cfg[usize::from(link)] = at;
        self.set32(u16::from(at), u32::from(id) | u32::from(hdr_hi) << 16);
        for (i, d) in body.iter().enumerate() {
            self.set32(u16::from(at) + 4 + 4 * i as u16, *d);
        }
    }
}

#[derive(Clone, Default)]
struct FakeBus {
    fns: BTreeMap<Bdf, FakeFn>,
    writes: usize,
}

impl ConfigSpace for FakeBus {
    fn read32(&self, bdf: Bdf, off: u16) -> u32 {
        assert_eq!(off % 4, 0);
        self.fns.get(&bdf).map_or(0xffff_ffff, |f| f.get32(off))
    }
    fn write32(&mut self, bdf: Bdf, off: u16, v: u32) {
        assert_eq!(off % 4, 0);
        self.writes += 1;
        let Some(f) = self.fns.get_mut(&bdf) else {
            return;
        };
        if let Some(&w) = f.writable.get(&off) {
            let old = f.get32(off);
            f.set32(off, (old & !w) | (v & w));
        } else if off == 4 {
            // Command is writable, status is not (RW1C ignored).
            let old = f.get32(off);
            f.set32(off, (old & 0xffff_0000) | (v & 0xffff));
        } else if off >= 0x40 {
            f.set32(off, v);
        }
    }
}

fn q35ish() -> FakeBus {
    let mut b = FakeBus::default();
    b.fns.insert(
        Bdf::new(0, 0, 0),
        FakeFn::new(0x8086, 0x29c0, 0x0600_0000, 0),
    );
    // virtio-blk at 00:02.0 with a 64-bit BAR 4, virtio caps and MSI-X.
    let mut blk = FakeFn::new(0x1af4, 0x1042, 0x0100_0001, 0);
    blk.io_bar(0, 0xc040, 0x40);
    blk.mem_bar(1, 0xfebd_1000, 0x1000, false);
    blk.mem_bar(4, 0xfe00_0000, 0x4000, true);
    blk.add_cap(0x40, cap::VENDOR, 0x0110, &[4, 0, 0x1000]);
    blk.add_cap(0x50, cap::VENDOR, 0x0214, &[4, 0x3000, 0x1000, 4]);
    blk.add_cap(0x64, cap::VENDOR, 0x0310, &[4, 0x1000, 0x1000]);
    blk.add_cap(0x74, cap::VENDOR, 0x0410, &[4, 0x2000, 0x1000]);
    blk.add_cap(0x84, cap::VENDOR, 0x0514, &[4, 0x3000, 0x1000, 0]);
    blk.add_cap(0x98, cap::MSIX, 0x0001, &[0x0000_0001, 0x0000_0801]);
    b.fns.insert(Bdf::new(0, 2, 0), blk);
    // A multi-function device at 00:1f.{0,2,3}.
    b.fns.insert(
        Bdf::new(0, 31, 0),
        FakeFn::new(0x8086, 0x2918, 0x0601_0002, 0x80),
    );
    b.fns.insert(
        Bdf::new(0, 31, 2),
        FakeFn::new(0x8086, 0x2922, 0x0106_0102, 0),
    );
    b.fns.insert(
        Bdf::new(0, 31, 3),
        FakeFn::new(0x8086, 0x2930, 0x0c05_0002, 0),
    );
    // A single-function device whose functions 1..7 would alias (must not
    // be probed).
    b.fns.insert(
        Bdf::new(0, 3, 0),
        FakeFn::new(0x1af4, 0x1041, 0x0200_0001, 0),
    );
    b.fns.insert(
        Bdf::new(0, 3, 1),
        FakeFn::new(0x1af4, 0x1041, 0x0200_0001, 0),
    );
    b
}

#[test]
fn probe_decodes_the_header() {
    let b = q35ish();
    let f = probe(&b, Bdf::new(0, 2, 0)).unwrap();
    assert_eq!((f.vendor, f.device), (0x1af4, 0x1042));
    assert_eq!((f.class, f.subclass, f.prog_if, f.revision), (1, 0, 0, 1));
    assert_eq!(f.class_name(), "SCSI storage controller");
    assert!(!f.multifunction && !f.is_bridge());
    assert!(probe(&b, Bdf::new(0, 9, 0)).is_none());
    assert_eq!(
        format!("{f}"),
        "00:02.0 SCSI storage controller [0100]: 1af4:1042 (rev 01)"
    );
    assert_eq!(Bdf::new(0, 31, 3).devfn(), 0xfb);
    assert_eq!(format!("{}", Bdf::new(1, 0x1f, 7)), "01:1f.7");
}

extern crate std;
use std::format;

#[test]
fn enumerate_follows_multifunction_bits() {
    let b = q35ish();
    let got: Vec<Bdf> = enumerate(&b).iter().map(|f| f.bdf).collect();
    assert_eq!(
        got,
        vec![
            Bdf::new(0, 0, 0),
            Bdf::new(0, 2, 0),
            Bdf::new(0, 3, 0),
            Bdf::new(0, 31, 0),
            Bdf::new(0, 31, 2),
            Bdf::new(0, 31, 3),
        ]
    );
}

#[test]
fn enumerate_crosses_bridges_once() {
    let mut b = q35ish();
    // Bridge 00:1c.0 -> bus 1, and a bridge on bus 1 that claims bus 1
    // again (a loop) and bus 0 (never re-walked).
    let mut br = FakeFn::new(0x1b36, 0x000c, 0x0604_0000, 1);
    br.set32(0x18, 0x0001_0100);
    b.fns.insert(Bdf::new(0, 0x1c, 0), br);
    let mut lp = FakeFn::new(0x1b36, 0x000c, 0x0604_0000, 1);
    lp.set32(0x18, 0x0001_0101);
    b.fns.insert(Bdf::new(1, 0, 0), lp);
    b.fns.insert(
        Bdf::new(1, 5, 0),
        FakeFn::new(0x1af4, 0x1041, 0x0200_0000, 0),
    );
    let all = enumerate(&b);
    assert!(all.iter().any(|f| f.bdf == Bdf::new(1, 5, 0)));
    assert_eq!(all.iter().filter(|f| f.bdf.bus == 1).count(), 2);
    assert_eq!(all.len(), 9);
}

#[test]
fn bars_are_sized_and_restored() {
    let mut b = q35ish();
    let bdf = Bdf::new(0, 2, 0);
    b.fns.get_mut(&bdf).unwrap().set32(4, 0x0010_0007);
    let f = probe(&b, bdf).unwrap();
    let before = b.fns[&bdf].cfg.clone();
    let bars = bars(&mut b, &f);
    assert_eq!(
        bars[0],
        Some(Bar::Io {
            port: 0xc040,
            size: 0x40
        })
    );
    assert_eq!(
        bars[1],
        Some(Bar::Memory {
            addr: 0xfebd_1000,
            size: 0x1000,
            is64: false,
            prefetchable: false
        })
    );
    assert_eq!(bars[2], None);
    assert_eq!(bars[3], None);
    assert_eq!(
        bars[4],
        Some(Bar::Memory {
            addr: 0xfe00_0000,
            size: 0x4000,
            is64: true,
            prefetchable: false
        })
    );
    assert_eq!(bars[5], None, "the upper half of BAR 4");
    assert_eq!(b.fns[&bdf].cfg, before, "every register restored");
    assert_eq!(bar_address(&b, bdf, 4), Some(0xfe00_0000));
    assert_eq!(bar_address(&b, bdf, 0), None, "an I/O BAR");
    assert_eq!(bar_address(&b, bdf, 6), None);
}

#[test]
fn decode_bar_edge_cases() {
    assert_eq!(decode_bar(0, 0, 0, 0), None, "unimplemented");
    assert_eq!(decode_bar(1, 0, 1, 0), None, "I/O, no address bits");
    // A 64-bit BAR above 4 GiB, 8 GiB in size.
    assert_eq!(
        decode_bar(0x0000_000c, 0x8, 0x0000_000c, 0xffff_fffe),
        Some(Bar::Memory {
            addr: 0x8_0000_0000,
            size: 0x2_0000_0000,
            is64: true,
            prefetchable: true
        })
    );
    // Hostile: everything writable in a 64-bit BAR: size would be 0.
    assert_eq!(decode_bar(4, 0, 0, 0), None);
    assert_eq!(
        decode_bar(4, 0, 0xffff_fff4, 0xffff_ffff).unwrap().memory(),
        Some((0, 16))
    );
}

#[test]
fn capability_list_is_walked_in_order_and_bounded() {
    let mut b = q35ish();
    let bdf = Bdf::new(0, 2, 0);
    let ids: Vec<u8> = capabilities(&b, bdf).iter().map(|c| c.id).collect();
    assert_eq!(ids, vec![9, 9, 9, 9, 9, cap::MSIX]);
    assert_eq!(find_capability(&b, bdf, cap::MSIX), Some(0x98));
    assert_eq!(find_capability(&b, bdf, cap::MSI), None);
    // A loop: the last capability points back at the first.
    b.fns.get_mut(&bdf).unwrap().cfg[0x99] = 0x40;
    assert_eq!(capabilities(&b, bdf).len(), MAX_CAPS);
    // A pointer into the header ends the walk.
    b.fns.get_mut(&bdf).unwrap().cfg[0x99] = 0x10;
    assert_eq!(capabilities(&b, bdf).len(), 6);
    // No capability list bit: nothing.
    b.fns.get_mut(&bdf).unwrap().cfg[6] = 0;
    assert!(capabilities(&b, bdf).is_empty());
    assert!(capabilities(&b, Bdf::new(0, 9, 0)).is_empty(), "absent");
}

#[test]
fn msix_and_virtio_caps_decode() {
    let mut b = q35ish();
    let bdf = Bdf::new(0, 2, 0);
    let m = msix(&b, bdf).unwrap();
    assert_eq!(m.cap, 0x98);
    assert_eq!(m.table_size, 2);
    assert_eq!(m.table, (1, 0));
    assert_eq!(m.pba, (1, 0x800));
    assert!(!m.enabled && !m.masked);
    let v = virtio_caps(&b, bdf);
    let types: Vec<u8> = v.iter().map(|c| c.cfg_type).collect();
    assert_eq!(types, vec![1, 2, 3, 4, 5]);
    assert_eq!(
        v[0],
        VirtioCap {
            cfg_type: 1,
            bar: 4,
            offset: 0,
            length: 0x1000
        }
    );
    // A bad BAR indicator is refused.
    b.fns.get_mut(&bdf).unwrap().set32(0x9c, 7);
    assert_eq!(msix(&b, bdf), None);
}

#[test]
fn enable_only_sets_bits() {
    let mut b = q35ish();
    let bdf = Bdf::new(0, 2, 0);
    enable(&mut b, bdf, true, false, true);
    assert_eq!(b.read16(bdf, reg::COMMAND), 0x6);
    let n = b.writes;
    enable(&mut b, bdf, true, false, false);
    assert_eq!(b.writes, n, "nothing to change, nothing written");
    b.write16(bdf, reg::COMMAND + 2, 0xffff);
    assert_eq!(
        b.read16(bdf, reg::COMMAND),
        0x6,
        "status write left command alone"
    );
}

#[test]
fn virtio_cam_reads_through() {
    use virtio_drivers::transport::pci::bus::ConfigurationAccess;
    let b = q35ish();
    let cam = VirtioCam(b);
    let df = device_function(Bdf::new(0, 2, 0));
    assert_eq!(cam.read_word(df, 0), 0x1042_1af4);
    assert_eq!(cam.read_word(df, 1), 0x1042_1af4, "offset aligned down");
}
