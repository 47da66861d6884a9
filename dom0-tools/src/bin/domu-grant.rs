//! Test guests (domUs) sharing a page through grant tables, the way split
//! drivers do, with Dom0 arranging who talks to whom through the command
//! line (`xl create ... 'extra="granter peer=2"'`):
//!
//! - `granter peer=N` grants one of its frames to domain N (writable; the
//!   first free reference is 8, right after Xen's reserved ones), writes a
//!   greeting in it, waits for the peer's answer, then checks that ending
//!   access while the peer still maps the page fails (`Busy`: Xen shows
//!   `GTF_reading|GTF_writing`), and that it succeeds once the peer has
//!   unmapped it and copied a last message in with `GNTTABOP_copy`.
//! - `mapper peer=N` maps domain N's grant 8, reads the greeting, writes
//!   its answer, waits for the granter's go-ahead, unmaps, and copies a
//!   message into the granter's page with a grant copy.
//!
//! The two talk only through the shared page (offsets 0, 64 and 128).
//! Each prints its checks and a VERDICT line on its console and powers off.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    use dom0_tools::pvtest::Checks;
    use hypercall_abi::grant_table::GNTMAP_HOST_MAP;
    use pv_guest_lib::grant::{self, CopyPtr, GrantError, GrantTable};
    use pv_guest_lib::mm::PteFlags;
    use pv_guest_lib::{frame, println, runtime, time, StartInfo};

    pv_guest_lib::entry!(main);

    /// Where the grant table is mapped.
    const GT_VA: u64 = 0xffff_c000_0020_0000;
    /// Where the mapper maps the peer's page.
    const MAP_VA: u64 = 0xffff_c000_0010_0000;
    /// The reference the granter's first grant gets.
    const GREF: u32 = 8;
    /// How long either side waits for the other.
    const PATIENCE_NS: u64 = 10_000_000_000;

    const GREETING: &[u8] = b"G1: hello from the granter";
    const ANSWER: &[u8] = b"M1: the mapper was here";
    const GO: &[u8] = b"G2: revoking refused while mapped";
    const COPIED: &[u8] = b"M2: copied in by GNTTABOP_copy";

    fn put(va: u64, off: usize, msg: &[u8]) {
        for (i, &b) in msg.iter().enumerate() {
            // SAFETY: `va` maps a whole page we may write; off + len < 4096.
            unsafe { ((va as *mut u8).add(off + i)).write_volatile(b) };
        }
    }

    fn has(va: u64, off: usize, msg: &[u8]) -> bool {
        msg.iter().enumerate().all(|(i, &b)| {
            // SAFETY: as in `put`, reading.
            unsafe { ((va as *const u8).add(off + i)).read_volatile() == b }
        })
    }

    fn wait_for(va: u64, off: usize, msg: &[u8]) -> bool {
        let end = time::now_ns() + PATIENCE_NS;
        while time::now_ns() < end {
            if has(va, off, msg) {
                return true;
            }
            time::sleep_ns(10_000_000);
        }
        false
    }

    fn peer(si: &StartInfo) -> Option<u16> {
        si.cmd_line()
            .split_whitespace()
            .find_map(|w| w.strip_prefix("peer="))
            .and_then(|p| p.parse().ok())
    }

    fn main(si: &'static StartInfo) -> ! {
        let role = si.cmd_line().split_whitespace().next().unwrap_or("");
        let name = if role == "granter" {
            "granter"
        } else {
            "mapper"
        };
        let mut c = Checks::new(name);
        if runtime::init().is_err() {
            c.error(format_args!("runtime init"));
            c.finish();
        }
        let Some(peer) = peer(si) else {
            c.error(format_args!(
                "no peer=N on the command line {:?}",
                si.cmd_line()
            ));
            c.finish();
        };
        match role {
            "granter" => granter(&mut c, peer),
            "mapper" => mapper(&mut c, peer),
            other => c.error(format_args!("unknown role {other:?}")),
        }
        c.finish()
    }

    fn granter(c: &mut Checks, peer: u16) {
        let Some(mut gt) = c.ok("set up the grant table", GrantTable::setup(1, GT_VA)) else {
            return;
        };
        let Some(page) = c.ok("a frame to share", frame::alloc_frame()) else {
            return;
        };
        let va = page.va;
        put(va, 0, GREETING);
        let Some(r) = c.ok(
            "grant it (writable) to the peer",
            gt.grant_access(peer, page.mfn, false),
        ) else {
            return;
        };
        c.check("the reference is 8", r == GREF, format_args!("{r}"));
        println!("granter: granted ref {r} to d{peer}");
        c.check(
            "the peer mapped the page and wrote its answer",
            wait_for(va, 0, ANSWER),
            format_args!("waited up to {} s", PATIENCE_NS / 1_000_000_000),
        );
        c.check(
            "ending access while the peer maps it fails (busy)",
            gt.end_access(r) == Err(GrantError::Busy),
            format_args!("flags {:#x}", gt.flags(r)),
        );
        put(va, 64, GO);
        c.check(
            "the peer's grant copy arrived",
            wait_for(va, 128, COPIED),
            format_args!("waited up to {} s", PATIENCE_NS / 1_000_000_000),
        );
        // The peer unmaps before it copies: access can be ended now.
        let end = time::now_ns() + PATIENCE_NS;
        let mut r_end = gt.end_access(r);
        while r_end == Err(GrantError::Busy) && time::now_ns() < end {
            time::sleep_ns(10_000_000);
            r_end = gt.end_access(r);
        }
        c.ok("ending access once unmapped", r_end);
    }

    fn mapper(c: &mut Checks, peer: u16) {
        // An L1 for MAP_VA: map one of our frames there and take it away.
        let Some(scratch) = c.ok("a scratch frame", frame::alloc_frame()) else {
            return;
        };
        c.ok(
            "an L1 for the mapping",
            frame::map_kernel(MAP_VA, scratch.mfn, PteFlags::KERNEL_RW)
                .and_then(|_| frame::unmap_kernel(MAP_VA)),
        );
        // The granter may not have granted yet: retry for a while.
        let end = time::now_ns() + PATIENCE_NS;
        let mut m = grant::map(peer, GREF, MAP_VA, GNTMAP_HOST_MAP);
        while m.is_err() && time::now_ns() < end {
            time::sleep_ns(20_000_000);
            m = grant::map(peer, GREF, MAP_VA, GNTMAP_HOST_MAP);
        }
        let Some(mapping) = c.ok("map the peer's grant 8", m) else {
            return;
        };
        c.check(
            "read the granter's greeting through the mapping",
            has(MAP_VA, 0, GREETING),
            format_args!("{}", core::str::from_utf8(GREETING).unwrap_or("")),
        );
        put(MAP_VA, 0, ANSWER);
        c.check(
            "the granter's go-ahead (its revoke was refused)",
            wait_for(MAP_VA, 64, GO),
            format_args!("waited up to {} s", PATIENCE_NS / 1_000_000_000),
        );
        c.ok("unmap it", grant::unmap(mapping.handle, MAP_VA, 0));
        put(scratch.va, 0, COPIED);
        c.ok(
            "grant copy into the peer's page",
            grant::copy(
                CopyPtr::Frame {
                    mfn: scratch.mfn,
                    offset: 0,
                },
                CopyPtr::Grant {
                    dom: peer,
                    gref: GREF,
                    offset: 128,
                },
                COPIED.len() as u16,
            ),
        );
    }
}
