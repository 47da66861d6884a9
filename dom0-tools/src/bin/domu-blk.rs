//! A guest (domU) using a virtual disk through Xen's blkif protocol:
//! connects to xenstore, brings up blkfront on `xvda` (device 51712) with
//! Dom0's blkback, reads the image's first sector, writes a pattern over
//! 64 KiB, reads it back, flushes, and reports its checks and a VERDICT on
//! its console before powering off.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    extern crate alloc;
    use alloc::vec;
    use dom0_tools::pvtest::Checks;
    use pv_guest_lib::blkfront::{metal::MetalHost, Blkfront, Config};
    use pv_guest_lib::grant::GrantTable;
    use pv_guest_lib::{domu, runtime, StartInfo};

    pv_guest_lib::entry!(main);

    /// Where the grant table is mapped.
    const GT_VA: u64 = 0xffff_c000_0020_0000;
    /// `xvda`.
    const XVDA: u32 = 51712;
    /// Bytes written and read back.
    const SPAN: usize = 64 * 1024;

    fn dbg(e: impl core::fmt::Debug) -> alloc::string::String {
        alloc::format!("{e:?}")
    }

    fn main(si: &'static StartInfo) -> ! {
        let mut c = Checks::new("domu-blk");
        if runtime::init().is_err() {
            c.error(format_args!("runtime init"));
            c.finish();
        }
        let mut xs = match domu::connect(si) {
            Ok(xs) => xs,
            Err(e) => {
                c.error(format_args!("connect to xenstore: {e:?}"));
                c.finish();
            }
        };
        let Some(mut gt) = c.ok("set up the grant table", GrantTable::setup(4, GT_VA)) else {
            c.finish();
        };
        let mut host = MetalHost::new(&mut gt);
        host.patience(30_000_000_000);
        let mut disk = Blkfront::new(XVDA, None, Config::default());
        let Some(info) = c.ok(
            "blkfront connects to blkback (xvda)",
            disk.connect_blocking(&mut xs, &mut host).map_err(dbg),
        ) else {
            c.finish();
        };
        c.check(
            "the disk has the image's size",
            info.bytes() >= SPAN as u64 + 512,
            format_args!("{} bytes", info.bytes()),
        );
        let mut s0 = [0u8; 512];
        if c.ok(
            "read sector 0",
            disk.read(&mut host, 0, &mut s0).map_err(dbg),
        )
        .is_some()
        {
            c.check(
                "sector 0 holds the image's label",
                s0.starts_with(b"OXEN-DISK"),
                format_args!("{:?}", core::str::from_utf8(&s0[..9]).unwrap_or("?")),
            );
        }
        let pattern: alloc::vec::Vec<u8> = (0..SPAN).map(|i| (i * 7 + i / 512) as u8).collect();
        c.ok(
            "write 64 KiB at sector 1",
            disk.write(&mut host, 1, &pattern).map_err(dbg),
        );
        c.ok("flush", disk.flush(&mut host).map_err(dbg));
        let mut back = vec![0u8; SPAN];
        if c.ok(
            "read them back",
            disk.read(&mut host, 1, &mut back).map_err(dbg),
        )
        .is_some()
        {
            c.check(
                "what was written is what is read",
                back == pattern,
                format_args!("{} bytes", SPAN),
            );
        }
        c.check(
            "a read past the end fails",
            disk.read(&mut host, info.bytes() / 512, &mut s0).is_err(),
            format_args!("sector {}", info.bytes() / 512),
        );
        c.finish()
    }
}
