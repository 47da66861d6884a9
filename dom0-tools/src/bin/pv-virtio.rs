//! Test Dom0: the machine's own disk and NIC, driven by Dom0 (issue 5).
//!
//! The harness boots it on a q35 with `virtio-blk-pci` (a raw image of
//! zeros the test made) and `virtio-net-pci` on QEMU user networking:
//!
//! - PCI enumeration through CONFIG_ADDRESS/CONFIG_DATA finds both, and
//!   ECAM (mapped with `DOMID_IO`) reads the same headers.
//! - Each device opens through `virtio-drivers`' PCI transport with our
//!   PV HAL (DMA at Dom0's machine addresses, BARs mapped through
//!   `DOMID_IO`), its MSI-X entry 0 a PIRQ bound to an event channel.
//! - Disk: the capacity is the image's, sectors read as zeros at first, a
//!   pattern written at the start, middle and end (one sector, a page, a
//!   64 KiB run from the heap, a stack buffer) reads back, out-of-range
//!   requests are refused; every request completed by its interrupt.
//!   Sector 0 is left holding `MARKER` for the harness to find in the
//!   image file after power-off.
//! - NIC: an ARP request for the user-net gateway 10.0.2.2 gets its reply,
//!   by interrupt.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    extern crate alloc;
    use alloc::vec;

    use dom0_tools::blkback::store::{BlockStore, Slice};
    use dom0_tools::pci::metal::{q35_ecam_base, Ecam, PortConfig};
    use dom0_tools::pci::{self, ConfigSpace};
    use dom0_tools::pvtest::Checks;
    use dom0_tools::virtio::dev::{self, Disk, Io, Nic};
    use dom0_tools::virtio::{ether, hal};
    use hypercall_abi::event_channel::EvtchnStat;
    use pv_guest_lib::{events, println, time, StartInfo};
    use virtio_drivers::transport::DeviceType;

    pv_guest_lib::entry!(main);

    /// What sector 0 holds at the end (the harness checks the image file).
    const MARKER: &[u8] = b"OXEN-VIRTIO-BLK sector 0 written by Dom0";
    /// Our address on QEMU's user network, and the gateway's.
    const MY_IP: [u8; 4] = [10, 0, 2, 15];
    const GATEWAY: [u8; 4] = [10, 0, 2, 2];

    fn pattern(sector: u64, buf: &mut [u8]) {
        for (i, b) in buf.iter_mut().enumerate() {
            let s = sector + (i / 512) as u64;
            *b = (s as u8) ^ ((i % 512) as u8).wrapping_mul(7) ^ 0xa5;
        }
    }

    fn main(si: &'static StartInfo) -> ! {
        println!("pv-virtio: Dom0 drives the machine's virtio disk and NIC");
        let mut c = Checks::new("pv-virtio");
        c.check(
            "start_info says initial domain",
            si.is_dom0(),
            format_args!("flags {}", si.flags),
        );
        if c.ok(
            "runtime (shared_info, traps, frames, heap, timer)",
            pv_guest_lib::runtime::init().map(|_| ()),
        )
        .is_none()
        {
            c.finish();
        }
        let Some(ports) = c.ok("PHYSDEVOP_set_iopl(1) for 0xcf8/0xcfc", PortConfig::new()) else {
            c.finish();
        };

        // ---- Enumeration ----
        let fns = pci::enumerate(&ports);
        for f in &fns {
            println!("pv-virtio:   {f}");
        }
        let virtio = dev::find(&fns);
        let blk_fn = virtio.iter().find(|v| v.kind == DeviceType::Block);
        let net_fn = virtio.iter().find(|v| v.kind == DeviceType::Network);
        c.check(
            "PCI enumeration finds a virtio-blk and a virtio-net function",
            blk_fn.is_some() && net_fn.is_some(),
            format_args!("{} functions, {} virtio", fns.len(), virtio.len()),
        );
        let (Some(blk_fn), Some(net_fn)) = (blk_fn.copied(), net_fn.copied()) else {
            c.finish();
        };

        // ---- ECAM ----
        let Some(base) = q35_ecam_base(&ports) else {
            c.error(format_args!("no ECAM window on this host bridge"));
            c.finish();
        };
        let Some(ecam) = c.ok("map bus 0's ECAM through DOMID_IO", Ecam::new(base, 0, 1)) else {
            c.finish();
        };
        let same = fns.iter().filter(|f| f.bdf.bus == 0).all(|f| {
            (0..0x40)
                .step_by(4)
                .all(|o| ecam.read32(f.bdf, o) == ports.read32(f.bdf, o))
        });
        c.check(
            "every function's header reads the same through ECAM and 0xcf8/0xcfc",
            same,
            format_args!("ECAM at {base:#x}"),
        );
        let caps = pci::capabilities(&ecam, blk_fn.function.bdf);
        c.check(
            "the virtio-blk function lists virtio vendor capabilities and MSI-X",
            caps.iter().filter(|c| c.id == pci::cap::VENDOR).count() >= 4
                && caps.iter().any(|c| c.id == pci::cap::MSIX),
            format_args!("{caps:?}"),
        );
        let mut cs = ecam;
        let bars = pci::bars(&mut cs, &blk_fn.function);
        c.check(
            "its BARs size (a memory BAR holds the virtio structures)",
            bars.iter()
                .flatten()
                .any(|b| b.memory().is_some_and(|(a, s)| a != 0 && s >= 0x4000)),
            format_args!("{bars:?}"),
        );

        disk(&mut c, &mut cs, &blk_fn.function);
        reopen(&mut c, &mut cs, &blk_fn.function);
        // The NIC through the legacy mechanism (the disk went through ECAM).
        let mut ports = ports;
        nic(&mut c, &mut ports, &net_fn.function);
        c.check(
            "no bounce buffer left in flight",
            hal::bounces_in_flight() == 0,
            format_args!("{}", hal::bounces_in_flight()),
        );
        c.finish();
    }

    fn disk(c: &mut Checks, cs: &mut Ecam, f: &pci::Function) {
        let Some((t, irq, irq_err)) = c.ok("open the virtio-blk function", dev::open(cs, f, true))
        else {
            return;
        };
        c.check(
            "its MSI-X entry 0 is a PIRQ bound to an event channel",
            irq.is_some(),
            format_args!("{irq:?} {irq_err:?}"),
        );
        let Some(mut d) = c.ok("virtio-blk initialises", Disk::new(t, irq, f.bdf)) else {
            return;
        };
        let vec_before = dev::vectors_set();
        c.check(
            "its request queue took MSI-X vector 0",
            vec_before >= 1,
            format_args!("{vec_before} queues"),
        );
        let n = d.sectors();
        c.check(
            "capacity is the image's (8 MiB)",
            n == 16384,
            format_args!("{n} sectors, read-only {}", d.readonly()),
        );
        let mut zero = vec![0xffu8; 4096];
        c.ok("read 8 sectors from the middle", d.read(n / 2, &mut zero));
        c.check(
            "a fresh image reads as zeros",
            zero.iter().all(|&b| b == 0),
            format_args!("first bytes {:?}", &zero[..8]),
        );
        // One sector, a page, 64 KiB from the heap, a stack buffer.
        let mut all_ok = true;
        for (sector, len) in [
            (1u64, 512usize),
            (8, 4096),
            (n / 2, 65536),
            (n - 128, 65536),
        ] {
            let mut w = vec![0u8; len];
            pattern(sector, &mut w);
            let wr = d.write(sector, &w);
            let mut r = vec![0u8; len];
            let rd = d.read(sector, &mut r);
            let ok = wr.is_ok() && rd.is_ok() && r == w;
            all_ok &= ok;
            c.check(
                "write a pattern and read it back",
                ok,
                format_args!("{len} bytes at sector {sector}: {wr:?} {rd:?}"),
            );
        }
        let mut stack = [0u8; 1024];
        pattern(100, &mut stack);
        let wr = d.write(100, &stack);
        let mut back = [0u8; 1024];
        let rd = d.read(100, &mut back);
        c.check(
            "a stack buffer goes to the disk and back",
            wr.is_ok() && rd.is_ok() && back == stack,
            format_args!("{wr:?} {rd:?}"),
        );
        c.check(
            "an earlier pattern is still there after later writes",
            {
                let mut r = vec![0u8; 4096];
                let mut w = vec![0u8; 4096];
                pattern(8, &mut w);
                all_ok && d.read(8, &mut r).is_ok() && r == w
            },
            format_args!("sector 8"),
        );
        let mut one = [0u8; 512];
        c.check(
            "a read past the end is refused",
            d.read(n, &mut one).is_err() && d.read(n - 1, &mut [0u8; 1024]).is_err(),
            format_args!("sector {n}"),
        );
        c.check(
            "a partial sector is refused",
            d.write(0, &[1u8; 100]).is_err(),
            format_args!("100 bytes"),
        );
        let mut s0 = [0u8; 512];
        s0[..MARKER.len()].copy_from_slice(MARKER);
        c.ok("write the marker to sector 0", d.write(0, &s0));
        c.ok("flush", d.flush());
        let irqs = d.irq().map_or(0, |i| i.count());
        c.check(
            "the disk's requests completed by interrupt (none late)",
            irqs >= 10 && d.late == 0,
            format_args!("{irqs} interrupts, {} late", d.late),
        );

        // blkback's view of it: a BlockStore, here an 8-sector Slice.
        let mut want = vec![0u8; 4096];
        pattern(8, &mut want);
        let Some(mut sl) = Slice::new(d, 8, 8) else {
            c.error(format_args!("Slice::new(disk, 8, 8) refused"));
            return;
        };
        let mut got = vec![0u8; 4096];
        let rd = sl.read(0, &mut got);
        let past = sl.read(8, &mut got[..512]);
        c.check(
            "as blkback's BlockStore: a Slice from sector 8 reads the pattern, nothing past its end",
            rd.is_ok() && got == want && past.is_err(),
            format_args!("{rd:?} {past:?}"),
        );
        let mut d = sl.into_inner();

        // Sequential read throughput (a figure, not a check).
        let mut buf = vec![0u8; 65536];
        let t0 = time::now_ns();
        let mut bytes = 0u64;
        let mut sector = 0;
        while sector + 128 <= n.min(8192) {
            if d.read(sector, &mut buf).is_err() {
                break;
            }
            bytes += 65536;
            sector += 128;
        }
        let ns = time::now_ns().saturating_sub(t0).max(1);
        c.note(format_args!(
            "sequential read: {} KiB in 64 KiB requests in {} us ({} MB/s)",
            bytes / 1024,
            ns / 1000,
            bytes * 1000 / ns
        ));

        // Many requests in flight: 64 writes of 4 KiB, then the reads.
        let mut wbufs = vec![vec![0u8; 4096]; 64];
        for (i, b) in wbufs.iter_mut().enumerate() {
            pattern(1024 + 8 * i as u64, b);
        }
        let mut ios: alloc::vec::Vec<Io<'_>> = wbufs
            .iter()
            .enumerate()
            .map(|(i, b)| Io::Write(1024 + 8 * i as u64, b.as_slice()))
            .collect();
        let t0 = time::now_ns();
        let wr = d.batch(&mut ios);
        let mut rbufs = vec![vec![0u8; 4096]; 64];
        let mut ios: alloc::vec::Vec<Io<'_>> = rbufs
            .iter_mut()
            .enumerate()
            .map(|(i, b)| Io::Read(1024 + 8 * i as u64, b.as_mut_slice()))
            .collect();
        let rd = d.batch(&mut ios);
        let ns = time::now_ns().saturating_sub(t0).max(1);
        c.check(
            "64 writes then 64 reads of 4 KiB in one batch each (many in flight) match",
            wr.iter().all(|r| r.is_ok()) && rd.iter().all(|r| r.is_ok()) && rbufs == wbufs,
            format_args!("{} us, {} IOPS", ns / 1000, 128 * 1_000_000_000 / ns),
        );
        let mut bad = [0u8; 512];
        let mut ios = [Io::Read(n, &mut bad)];
        c.check(
            "a batch refuses its out-of-range request alone",
            d.batch(&mut ios)[0].is_err(),
            format_args!("sector {n}"),
        );
    }

    /// The disk again, reset and re-initialised, polled this time.
    fn reopen(c: &mut Checks, cs: &mut Ecam, f: &pci::Function) {
        let Some((t, irq, _)) = c.ok(
            "reopen the disk without interrupts",
            dev::open(cs, f, false),
        ) else {
            return;
        };
        let Some(mut d) = c.ok("virtio-blk initialises again", Disk::new(t, irq, f.bdf)) else {
            return;
        };
        let mut s0 = [0u8; 512];
        let r = d.read(0, &mut s0);
        c.check(
            "polled, sector 0 reads back the marker",
            r.is_ok() && d.irq().is_none() && s0.starts_with(MARKER),
            format_args!("{r:?}"),
        );
    }

    fn nic(c: &mut Checks, cs: &mut PortConfig, f: &pci::Function) {
        let Some((t, irq, irq_err)) = c.ok("open the virtio-net function", dev::open(cs, f, true))
        else {
            return;
        };
        c.check(
            "its MSI-X entry 0 is a PIRQ bound to an event channel",
            irq.is_some(),
            format_args!("{irq:?} {irq_err:?}"),
        );
        let Some(mut nic) = c.ok("virtio-net initialises", Nic::new(t, irq, f.bdf)) else {
            return;
        };
        let mac = nic.mac();
        c.check(
            "the MAC is QEMU's default 52:54:00:12:34:56",
            mac == [0x52, 0x54, 0, 0x12, 0x34, 0x56],
            format_args!("{mac:02x?}"),
        );
        let req = ether::arp_request(mac, MY_IP, GATEWAY);
        let mut reply = None;
        for _ in 0..3 {
            if c.ok("send an ARP request for 10.0.2.2", nic.send(&req))
                .is_none()
            {
                return;
            }
            let deadline = time::now_ns() + 2_000_000_000;
            reply = nic.recv_until(deadline, |fr| ether::arp_reply_from(fr, mac, GATEWAY));
            if reply.is_some() {
                break;
            }
        }
        c.check(
            "the gateway's ARP reply arrived",
            reply.is_some(),
            format_args!("{reply:02x?}"),
        );
        let irqs = nic.irq().map_or(0, |i| i.count());
        c.check(
            "the reply came by interrupt",
            irqs >= 1,
            format_args!("{irqs} interrupts"),
        );
        let port = nic.irq().map_or(0, |i| i.port);
        drop(nic);
        let st = events::status(port);
        c.check(
            "dropping the NIC closes its event channel (and unmaps the PIRQ)",
            st.as_ref()
                .is_ok_and(|s| events::stat(s) == Some(EvtchnStat::Closed)),
            format_args!("port {port}: {st:?}"),
        );
    }
}
