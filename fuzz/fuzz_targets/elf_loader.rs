//! Kernel images: the PV ELF loader the hypervisor builds Dom0 with and
//! the toolstack builds PV guests with (xen-core
//! `domain_build::elf::PvKernel`, libelf's checks and Xen notes), the
//! physical-address ELF loader for PVH/HVM guests (dom0-tools
//! `builder::pvh::PhysElf`, also over an LZ4 frame), the bzImage header
//! parser and the Multiboot2 header search.
//!
//! Checks: parsing is deterministic; an accepted PV kernel's segments lie
//! inside the file with `filesz <= memsz`, its range misses the
//! hypervisor's and contains the entry point, and `load_into` a buffer of
//! its size succeeds with each segment's file bytes where they belong;
//! accepted PVH segments' ranges do not wrap.
#![no_main]

use dom0_tools::builder::bzimage::BzImage;
use dom0_tools::builder::multiboot2;
use dom0_tools::builder::pvh::PhysElf;
use libfuzzer_sys::fuzz_target;
use xen_core::domain_build::elf::{ElfPolicy, PvKernel};

/// Largest kernel the target loads into memory.
const LOAD_MAX: u64 = 16 << 20;

fn pv(data: &[u8]) {
    let policy = ElfPolicy::default();
    let k = match PvKernel::parse(data, &policy) {
        Ok(k) => k,
        Err(e) => {
            let again = PvKernel::parse(data, &policy).unwrap_err();
            assert_eq!(e, again);
            assert!(!e.to_string().contains('\n'));
            return;
        }
    };
    let range = k.kernel_range();
    assert!(range.start <= range.end);
    assert!(!range.overlaps(&policy.forbidden), "kernel in Xen's range");
    assert!(k.entry() >= range.start && k.entry() <= range.end);
    for s in k.segments() {
        assert!(s.filesz <= s.memsz);
        assert!(s.offset + s.filesz <= data.len() as u64);
        let at = k.load_vaddr(s);
        assert!(
            at >= range.start && at + s.memsz <= range.end,
            "segment outside the kernel"
        );
    }
    let size = range.end - range.start;
    if size <= LOAD_MAX {
        let mut dest = vec![0xa5u8; size as usize];
        k.load_into(&mut dest)
            .expect("load_into a buffer of the kernel's size");
        // Segments that no later one overlaps hold their file bytes.
        let segs = k.segments();
        for (i, s) in segs.iter().enumerate() {
            let (a, b) = (s.paddr, s.paddr + s.memsz);
            let overlapped = segs[i + 1..]
                .iter()
                .any(|t| t.paddr < b && a < t.paddr + t.memsz);
            if overlapped {
                continue;
            }
            let at = (s.paddr - k.pstart) as usize;
            let from = s.offset as usize;
            let n = s.filesz as usize;
            assert_eq!(
                &dest[at..at + n],
                &data[from..from + n],
                "segment {i} bytes"
            );
        }
        assert!(
            k.load_into(&mut dest[..(size as usize).saturating_sub(1)])
                .is_err()
                || size == 0,
            "load_into a short buffer"
        );
    }
}

fn pvh(data: &[u8]) {
    if let Ok(e) = PhysElf::parse(data) {
        for s in e.segments() {
            assert!(s.filesz <= s.memsz);
            let (a, b) = s.range();
            assert!(a <= b, "segment range wraps");
        }
        let (lo, hi) = e.extent();
        assert!(lo <= hi);
        let _ = e.entry_paddr(lo);
    }
    if data.len() <= 4096 {
        let _ = PhysElf::parse_lz4(data);
    }
}

fuzz_target!(|data: &[u8]| {
    pv(data);
    pvh(data);
    if let Ok(bz) = BzImage::parse(data) {
        let _ = bz.memory_needed();
        let _ = bz.initrd_limit();
        if let Some((_, payload)) = bz.payload() {
            assert!(payload.len() <= data.len());
        }
    }
    let _ = multiboot2::find_header(data);
});
