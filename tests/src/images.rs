//! Building and locating the bootable images.
//!
//! One command builds everything:
//!
//! ```text
//! cargo build --release --target x86_64-unknown-none -p xen-core -p dom0-tools \
//!     -p hvm-guests -p pv-guest-lib --bins --examples \
//!     --target-dir <root>/target/images
//! ```
//!
//! (its own target dir, so it never waits on the host `cargo test` build lock)
//! and leaves in `target/images/x86_64-unknown-none/release/`: `xen-core`,
//! `dom0`, the test Dom0 kernels listed in [`TEST_KERNELS`] (the one
//! place that list lives), the benchmark kernel (`crate::bench::KERNEL`),
//! the bare-metal kernels of `hvm-guests` ([`BARE_METAL_KERNELS`]) and
//! pv-guest-lib's example kernels in `examples/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use crate::exit::Exit;

/// The bare-metal target.
pub const TARGET: &str = "x86_64-unknown-none";
/// The packages that produce images.
pub const IMAGE_PACKAGES: &[&str] = &["xen-core", "dom0-tools", "hvm-guests"];
/// Packages whose examples are bootable PV kernels (built with the images,
/// into `examples/`).
pub const EXAMPLE_PACKAGES: &[&str] = &["pv-guest-lib"];
/// The hypervisor ELF (PVH note + Multiboot2 header).
pub const HYPERVISOR: &str = "xen-core";
/// The default Dom0 kernel.
pub const DOM0: &str = "dom0";

/// A test Dom0 kernel and what a boot of it must show.
#[derive(Debug, Clone, Copy)]
pub struct TestKernel {
    /// Binary name in `dom0-tools` (and file name in the image dir).
    pub name: &'static str,
    /// What it does.
    pub purpose: &'static str,
    /// How the machine must stop.
    pub exit: Exit,
    /// Console lines (substrings) that must appear, in this order.
    pub lines: &'static [&'static str],
    /// Whether its last `VERDICT:` line must be SUCCESS.
    pub verdict_success: bool,
}

/// Every test Dom0 kernel: add one here and the boot tests pick it up.
pub const TEST_KERNELS: &[TestKernel] = &[
    TestKernel {
        name: "dom0-crash",
        purpose: "page-faults with no handler: xen-core must crash the domain, not hang or panic",
        exit: Exit::CRASH,
        lines: &["domain crash: d0v0"],
        verdict_success: false,
    },
    TestKernel {
        name: "pv-sched",
        purpose: "4 vCPUs on 2 CPUs: all progress, fair CPU shares, monotonic clocks across CPU moves, runstate figures, sleep/wake, yield, down/up",
        exit: Exit::POWEROFF,
        lines: &[
            "pv-sched: every vCPU is up: ok",
            "pv-sched: every vCPU ran and made progress: ok",
            "pv-sched: CPU time shared fairly (least/most running time): ok",
            "pv-sched: runstate times add up (running + runnable = the time spun): ok",
            "pv-sched: each vCPU's clock is monotonic, across CPU moves too: ok",
            "pv-sched: every vCPU slept and woke up (SCHEDOP_poll with a timeout): ok",
            "pv-sched: brought up again, each vCPU carried on after its VCPUOP_down (and went down again): ok",
        ],
        verdict_success: true,
    },
    TestKernel {
        name: "dom0-hostile",
        purpose: "throws bad hypercalls at xen-core and checks Xen's error codes",
        exit: Exit::POWEROFF,
        lines: &[],
        verdict_success: true,
    },
    TestKernel {
        name: "examples/hello",
        purpose: "pv-guest-lib's hello example: the smallest PV kernel, as a newcomer copies it",
        exit: Exit::POWEROFF,
        lines: &[
            "hello from a PV kernel: ",
            "running on Xen 4.17",
            "Hello from Oxen! I am the initial domain (Dom0).",
        ],
        verdict_success: true,
    },
    TestKernel {
        name: "pv-traps",
        purpose: "trap table, int3/#PF/#GP/#UD bounced with Xen's frame, a page fault fixed by mapping, iret back",
        exit: Exit::POWEROFF,
        lines: &[
            "pv-traps: int3 bounced once: ok",
            "pv-traps: the access was retried after the handler mapped a page: ok",
            "pv-traps: #GP from a non-canonical load bounced: ok",
            "pv-traps: #UD from ud2 bounced, rip at the instruction: ok",
        ],
        verdict_success: true,
    },
    TestKernel {
        name: "pv-mm",
        purpose: "mmu_update/update_va_mapping/mmuext_op/memory_op, positives and Xen's errors for the negatives",
        exit: Exit::POWEROFF,
        lines: &[
            "pv-mm: mmu_update: map a page (creating L3/L2/L1 tables): ok",
            "pv-mm: L2 entry with PSE (a superpage): ok (-EINVAL)",
            "pv-mm: the LDT descriptor is visible (present data, DPL 3): ok",
            "pv-mm: the LDT page cannot be made writable while loaded: ok (-EBUSY)",
            "pv-mm: update_va_mapping of a hypervisor frame, read-only: ok (-EBUSY)",
            "pv-mm: a writable mapping of the unpinned but loaded L4: ok (-EBUSY)",
            "pv-mm: pin it twice: ok (-EINVAL)",
            "pv-mm: update_va_mapping: writable mapping of the pinned L1: ok (-EBUSY)",
            "pv-mm: unpin a table that is not pinned: ok (-EINVAL)",
            "pv-mm: L4 entry in hypervisor slot 256: ok (-EINVAL)",
            "pv-mm: update_va_mapping of a frame the domain gave back: ok (-EBUSY)",
            "pv-mm: and use it: ok",
        ],
        verdict_success: true,
    },
    TestKernel {
        name: "dom0-xsa",
        purpose: "named regression checks for Xen security advisories whose class applies to Oxen (docs/xsa.md): XSA-148 and XSA-182 page-table fast paths, XSA-212 guest arrays in Xen's memory, XSA-224 host-only unmap of a device+host grant mapping, XSA-221 poll of every port, XSA-338 ports stay valid across EVTCHNOP_reset",
        exit: Exit::POWEROFF,
        lines: &[
            "dom0-xsa: XSA-148 L2 entry gains PSE on the fast path (same L1): ok (-EINVAL)",
            "dom0-xsa: XSA-148 L2 entry gains PSE and loses RW: ok (-EINVAL)",
            "dom0-xsa: XSA-148 the L1 is still a page table: no writable mapping of it: ok (-EBUSY)",
            "dom0-xsa: XSA-148 mapping unchanged after the refusals: ok",
            "dom0-xsa: XSA-182 same frame, only RW added (mmu_update): ok (-EBUSY)",
            "dom0-xsa: XSA-182 same frame, only RW added (update_va_mapping): ok (-EBUSY)",
            "dom0-xsa: XSA-182 the alias stayed read-only and reads the L1: ok",
            "dom0-xsa: XSA-182 read-only L4 self-map (linear page table) refused: ok (-EINVAL)",
            "dom0-xsa: XSA-212 exchange with its in-array in Xen's memory: ok (-EFAULT)",
            "dom0-xsa: XSA-212 nothing exchanged: ok",
            "dom0-xsa: XSA-212 exchange with its out-array in Xen's memory: ok (-EFAULT)",
            "dom0-xsa: XSA-212 the domain kept its frame and its memory: ok",
            "dom0-xsa: XSA-224 unmap the host part only: ok",
            "dom0-xsa: XSA-224 the device part keeps the grant busy: ok",
            "dom0-xsa: XSA-224 the device-mapped frame cannot become a page table: ok (-EINVAL)",
            "dom0-xsa: XSA-224 the grant is free again: ok",
            "dom0-xsa: XSA-224 now it may be pinned: ok",
            "dom0-xsa: XSA-224 frame contents intact: ok",
            "dom0-xsa: XSA-221 SCHEDOP_poll of every port: -EINVAL exactly for invalid ports: ok",
            "dom0-xsa: XSA-338 EVTCHNOP_reset of ourselves: ok",
            "dom0-xsa: XSA-338 a port of the second bucket is still valid, and closed: ok",
            "dom0-xsa: XSA-338 sending on it: closed, not a fault: ok (-EINVAL)",
            "dom0-xsa: XSA-338 allocation works after the reset: ok",
            "dom0-xsa: the domain carries on: test page intact: ok",
            "dom0-xsa: 42 checks, 0 failed",
        ],
        verdict_success: true,
    },
    TestKernel {
        name: "pv-grant",
        purpose: "grant tables v1 with self-grants and a grant from a domain Dom0 creates: setup, map (host, read-only, device), unmap, copy, revocation while mapped, a granted frame given back while mapped, hostile arguments with Xen's GNTST_/errno answers; last, an implicit unmap of a grant PTE must crash the domain",
        exit: Exit::CRASH,
        lines: &[
            "pv-grant: setup and map a 4-frame table: ok",
            "pv-grant: map grant A writable at TEST_VA: ok",
            "pv-grant: GTF_reading and GTF_writing are set while mapped: ok",
            "pv-grant: revocation while mapped: end_access refused: ok",
            "pv-grant: give frame A back while it is mapped (Xen: accepted, freed later): ok",
            "pv-grant: the mapped frame stays alive: ok",
            "pv-grant: map the grant of the given-back frame: ok (GNTST_bad_page)",
            "pv-grant: a read-only grant mapped writable: ok (GNTST_general_error)",
            "pv-grant: copy a whole page from grant C into frame D: ok",
            "pv-grant: statuses: okay, bad_gntref, okay: ok",
            "pv-grant: setup_table for the other domain (privileged): ok",
            "pv-grant: map its grant for Dom0: ok",
            "pv-grant: its entry shows GTF_reading|GTF_writing: ok",
            "pv-grant: copy from its grant into our frame: ok",
            " checks, 0 failed",
            "domain crash: d0v0: attempt to implicitly unmap a granted PTE",
        ],
        verdict_success: false,
    },
    TestKernel {
        name: "pv-events",
        purpose: "event channel ops and errors, send to self until upcall, VIRQ_TIMER within tolerance",
        exit: Exit::POWEROFF,
        lines: &[
            "pv-events: the upcall ran the other end's handler: ok",
            "pv-events: unmask re-raised the pending event: ok",
            "pv-events: IPI delivered: ok",
            "pv-events: VIRQ_TIMER from set_timer_op fired within tolerance: ok",
        ],
        verdict_success: true,
    },
    TestKernel {
        name: "pv-smp",
        purpose: "all vCPUs up with VCPUOP_initialise/up, IPIs through event channels, each vCPU reports",
        exit: Exit::POWEROFF,
        lines: &[
            "pv-smp: more than one vCPU: ok",
            "pv-smp: vCPU came up: ok",
            // vCPU 1's own report may come before or after the ping.
            "pv-smp: IPI ping answered: ok",
        ],
        verdict_success: true,
    },
    TestKernel {
        name: "examples/timers",
        purpose: "pv-guest-lib's timers example: sleeping tasks on the executor",
        exit: Exit::POWEROFF,
        lines: &["timers: slept "],
        verdict_success: true,
    },
    TestKernel {
        name: "examples/smp",
        purpose: "pv-guest-lib's SMP example: every vCPU up and reporting",
        exit: Exit::POWEROFF,
        lines: &["smp: "],
        verdict_success: true,
    },
    TestKernel {
        name: "examples/user",
        purpose: "pv-guest-lib's user example: a ring-3 program run to its end",
        exit: Exit::POWEROFF,
        lines: &["user: the program ended: "],
        verdict_success: true,
    },
    TestKernel {
        name: "pv-user",
        purpose: "a ring-3 program with its own page tables: syscalls, a page fault the kernel handles, exit",
        exit: Exit::POWEROFF,
        lines: &[
            "pv-user: the program says: hello from ring 3",
            "pv-user: the program exited with its code: ok",
            "pv-user: the page fault reached the kernel once: ok",
            "pv-user: reading the kernel faults and ends the program: ok",
        ],
        verdict_success: true,
    },
    TestKernel {
        name: "pv-domctl",
        purpose: "domain control from Dom0 with Xen 4.17's domctl/sysctl: create, size, populate, foreign-map, CPUID policy levelled down before the first unpause, pause, resumedomain of a suspended domain, destroy with exact free memory, and the refusals",
        exit: Exit::POWEROFF,
        lines: &[
            "pv-domctl: the scheduler is credit (5): ok",
            "pv-domctl: the console history has xen-core's boot lines: ok",
            "pv-domctl: domctl with an old interface version: ok (-EACCES)",
            "pv-domctl: createdomain with a taken id: ok (-EEXIST)",
            "pv-domctl: paused, no vCPU up, 2 vCPUs, no memory, our handle: ok",
            "pv-domctl: stops at the limit: ok (256)",
            "pv-domctl: mapping it without foreigndom: ok (-EBUSY)",
            "pv-domctl: Dom0 wrote and read it: ok",
            "pv-domctl: two new frames, the domain's size and free memory unchanged: ok",
            "pv-domctl: XENMEM_exchange of a frame Dom0 maps: ok (-EINVAL)",
            "pv-domctl: it says 120 leaves (CPUID_MAX_SERIALISED_LEAVES), 0 MSRs: ok",
            "pv-domctl: get_cpu_policy into a 1-leaf buffer: ok (-ENOBUFS)",
            "pv-domctl: set_cpu_policy with the policy unchanged: ok",
            "pv-domctl: setting a feature the default lacks: -EINVAL, err_leaf 1: ok",
            "pv-domctl: changing leaf 1's model: -EINVAL, err_leaf 1: ok",
            "pv-domctl: a leaf Xen has no slot for: -ERANGE naming it: ok",
            "pv-domctl: 121 leaves: ok (-E2BIG)",
            "pv-domctl: set_cpu_policy on Dom0 itself: ok (-EINVAL)",
            "pv-domctl: SSE4.2 is gone, nothing else in leaf 1 ECX changed: ok",
            "pv-domctl: set_cpu_policy once the domain has been unpaused: ok (-EEXIST)",
            "pv-domctl: resumedomain of oneself: ok (-EINVAL)",
            "pv-domctl: resumedomain of a domain that does not exist: ok (-ESRCH)",
            "pv-domctl: still paused, not shut down: ok",
            "pv-domctl: shut down with reason suspend (2): ok",
            "pv-domctl: no longer shut down, still paused: ok",
            "pv-domctl: all but the mapped frame are free again: ok",
            "pv-domctl: the mapped frame still holds what Dom0 wrote: ok",
            "pv-domctl: free memory is exactly as before: ok",
        ],
        verdict_success: true,
    },
    TestKernel {
        name: "pv-hvm",
        purpose: "HVM domains with nested paging from Dom0 (no vCPU runs): create with CDF_hvm|CDF_hap, populate the p2m by gfn (2 MiB and 4 KiB, up to max_pages), map gfns into Dom0, decrease_reservation, unpause refused without a vCPU context, destroy with exact free memory",
        exit: Exit::POWEROFF,
        lines: &[
            "pv-hvm: createdomain CDF_hvm without CDF_hap (no shadow paging): ok (-EINVAL)",
            "pv-hvm: getdomaininfo shows an HVM (HAP) guest, paused, no memory: ok",
            "pv-hvm: all four 2 MiB extents: ok (4)",
            "pv-hvm: tot_pages is 8 MiB: ok (2048)",
            "pv-hvm: three frames: ok (3)",
            "pv-hvm: is not done (0 extents): ok (0)",
            "pv-hvm: populate a gfn above the p2m's limit: ok (-EINVAL)",
            "pv-hvm: stops at the limit: ok (5)",
            "pv-hvm: fresh frames are zeroed: ok",
            "pv-hvm: a second mapping of the same gfns reads the patterns back: ok",
            "pv-hvm: mapping an unpopulated gfn: ok (-EINVAL)",
            "pv-hvm: unpause an HVM domain whose vCPU 0 has no context: ok (-EINVAL)",
            "pv-hvm: still paused, no vCPU up: ok",
            "pv-hvm: its frame is free again: ok",
            "pv-hvm: gfn 0x1003 no longer maps: ok (-EINVAL)",
            "pv-hvm: gfn 5 was in a 2 MiB page: its frame freed, a level-1 table taken: ok",
            "pv-hvm: its neighbours 4 and 6 still map (the 2 MiB page was split): ok",
            "pv-hvm: all but the mapped frame are free again: ok",
            "pv-hvm: free memory is exactly as before: ok",
        ],
        verdict_success: true,
    },
    TestKernel {
        name: "pv-hvmrun",
        purpose: "HVM vCPUs run under SVM with nested paging: 32-bit guests set up with XEN_DOMCTL_sethvmcontext print through port 0xe9, read Xen's CPUID leaf and the CMOS, power off through ACPI PM1a; a guest sweeping every port, one programming its LAPIC through emulated MMIO and sleeping through 10 timer interrupts, one writing garbage to 24576 MSRs and poking unmapped MMIO beside a well-behaved one, one making Xen hypercalls through the hypercall page (VMMCALL) down to SCHEDOP_shutdown, a triple-faulting one (crashes only itself) and one spinning with interrupts off (destroyed); log-dirty mode (XEN_DOMCTL_shadow_op) on a guest writing 16 frames: exactly those come back dirty, round after round; gethvmcontext; exact free memory",
        exit: Exit::POWEROFF,
        lines: &[
            "(d1) hvm guest: hello from protected mode",
            "(d1) hvm guest: cpuid leaf 0x40000000 says XenVMMXenVMM",
            "(d1) hvm guest: CMOS status B says 24-hour mode",
            "pv-hvmrun: the hello guest powers itself off: ok",
            "pv-hvmrun: the saved vCPU stopped in the guest's code, still in protected mode: ok",
            "(d2) hvm guest: every port read and written",
            "pv-hvmrun: the port-sweeping guest gets through every port and powers off: ok",
            "(d3) hvm guest: 10 LAPIC timer interrupts through MMIO registers",
            "pv-hvmrun: the timer guest takes 10 LAPIC timer interrupts and powers off: ok",
            "pv-hvmrun: its LAPIC version register reads an integrated APIC: ok",
            "(d4) hvm guest: unmapped MMIO reads all ones, writes vanish",
            "(d4) hvm guest: garbage MSR writes: refused ones raised #GP, and I am still here",
            "pv-hvmrun: the hostile guest writes garbage to 24576 MSRs, pokes unmapped MMIO and powers off: ok",
            "pv-hvmrun: every MSR write was made, and the refused ones raised #GP in the guest: ok",
            "pv-hvmrun: the guest beside it ran to its end: ok",
            "(d6) hvm guest: xen_version through the hypercall page says 4.17",
            "(d6) hvm guest: EVTCHNOP_alloc_unbound gave a port",
            "pv-hvmrun: the guest's SCHEDOP_shutdown(poweroff) hypercall shuts it down: ok",
            "(XEN) domain crash: d7v0: triple fault",
            "pv-hvmrun: a triple fault crashes that domain: ok",
            "pv-hvmrun: Dom0 keeps running beside a guest that never exits: ok",
            "pv-hvmrun: its LAPIC_REGS record holds the periodic timer it programmed: ok",
            "pv-hvmrun: its context has vCPU 0's CPU and MTRRs, both LAPICs (two records each), the PIC pair, the IOAPIC, the PIT, the RTC and the PM timer: ok",
            "pv-hvmrun: the guest's LAPIC timer keeps ticking after its context went out and back: ok",
            "pv-hvmrun: CLEAN: exactly the frames the guest writes are dirty, the writes counted as faults: ok",
            "pv-hvmrun: PEEK of a paused guest after CLEAN: nothing dirty: ok",
            "pv-hvmrun: a frame Dom0 wrote through a foreign mapping is dirty once it is unmapped: ok",
            "pv-hvmrun: PEEK with a 100-frame bitmap reports 100 frames: ok",
            "pv-hvmrun: the guest keeps running (and writing) after log-dirty mode: ok",
            "pv-hvmrun: 200 rounds of ENABLE, CLEAN, OFF while the guest writes: it keeps running: ok",
            "pv-hvmrun: every frame comes back after the domains are destroyed: ok",
        ],
        verdict_success: true,
    },
    TestKernel {
        name: "pv-privop",
        purpose: "privileged instructions as Xen 4.17 emulates them for PV: forced-emulation cpuid, MSRs, CRs, port I/O under IOPL and the I/O bitmap, int $N through the trap table, and the #GP/#UD bounces",
        exit: Exit::POWEROFF,
        lines: &[
            "pv-privop: leaf 0x40000000 says XenVMMXenVMM: ok",
            "pv-privop: leaf 0x40000001 is version 4.17: ok",
            "pv-privop: forced-emulation prefix before rdtsc bounces #UD at the ud2: ok",
            "pv-privop: rdmsr FS_BASE is emulated and shows the base: ok",
            "pv-privop: wrmsr EFER changing a bit bounces #GP(0): ok",
            "pv-privop: mov to %cr0 sets TS, clts clears it: ok",
            "pv-privop: mov to %cr3 of a frame that is not ours bounces #GP: ok",
            "pv-privop: with IOPL 0 and no I/O bitmap, in from 0x80 bounces #GP(0): ok",
            "pv-privop: in from a port Xen keeps (PIT 0x40) reads all ones, no #GP: ok",
            "pv-privop: in from a denied port (PIT 0x40) bounces #GP: ok",
            "pv-privop: hlt bounces #GP (not emulated): ok",
            "pv-privop: #GP from a non-canonical load is bounced as is: ok",
            "pv-privop: int $0x80 reaches the DPL-3 trap-table entry, rip after the int: ok",
            "pv-privop: int $0x81 through a DPL-0 entry bounces #GP with the IDT error code: ok",
        ],
        verdict_success: true,
    },
    TestKernel {
        name: "pv-hw",
        purpose: "Dom0 owns the hardware (issue 5): PCI config through 0xcf8/0xcfc and ECAM mapped with mmu_update/DOMID_IO, RAM/IO-APIC/LAPIC refused, the RTC's GSI 8, an e1000e's MSI-X entry and its level-triggered INTx GSI as PIRQs bound to event channels, received and EOI'd (the level pin masked until the EOI), Xen's errors for bad PIRQ operations",
        exit: Exit::POWEROFF,
        lines: &[
            "pv-hw: 00:00.0 through CONFIG_ADDRESS/CONFIG_DATA is the q35 host bridge: ok",
            "pv-hw: mmu_update DOMID_IO: map the ECAM page of 00:00.0 uncached: ok",
            "pv-hw: ECAM reads 00:00.0's vendor and device: ok",
            "pv-hw: 00:1f.0 reads the same through ECAM and CF8/CFC: ok",
            "pv-hw: mmu_update DOMID_IO of a RAM frame: ok",
            "pv-hw: mmu_update DOMID_IO of the IO-APIC (the hypervisor's): ok",
            "pv-hw: map_pirq GSI 8 (RTC) as PIRQ 8: ok",
            "pv-hw: EVTCHNOP_bind_pirq: ok",
            "pv-hw: the RTC's periodic interrupt arrived on the event channel, EOI'd each time: ok",
            "pv-hw: PHYSDEVOP_unmap_pirq: ok",
            "pv-hw: map_pirq MSI-X entry 0 of 00:05.0: ok",
            "pv-hw: Xen wrote the MSI-X entry (address 0xfee....., a vector), masked: ok",
            "pv-hw: binding unmasks the entry: ok",
            "pv-hw: the NIC's MSI-X interrupt arrived on the event channel: ok",
            "pv-hw: closing masks the entry: ok",
            "pv-hw: the NIC's INTx arrived on one of the GSI PIRQs: ok",
            "pv-hw: no second event before PHYSDEVOP_eoi (the pin is masked): ok",
            "pv-hw: after the EOI the next INTx arrives again: ok",
        ],
        verdict_success: true,
    },
    TestKernel {
        name: "pv-virtio",
        purpose: "Dom0 drives the machine's virtio-blk and virtio-net (issue 5): PCI enumeration (0xcf8/0xcfc and ECAM), virtio-drivers with a PV HAL (DMA at machine addresses, BARs through DOMID_IO), MSI-X interrupts as event channels; a pattern written to the disk reads back and the marker is in the image file after power-off; an ARP request to the user-net gateway is answered",
        exit: Exit::POWEROFF,
        lines: &[
            "pv-virtio: PCI enumeration finds a virtio-blk and a virtio-net function: ok",
            "pv-virtio: every function's header reads the same through ECAM and 0xcf8/0xcfc: ok",
            "pv-virtio: virtio-blk initialises: ok",
            "pv-virtio: its request queue took MSI-X vector 0: ok",
            "pv-virtio: a fresh image reads as zeros: ok",
            "pv-virtio: an earlier pattern is still there after later writes: ok",
            "pv-virtio: the disk's requests completed by interrupt (none late): ok",
            "pv-virtio: as blkback's BlockStore: a Slice from sector 8 reads the pattern, nothing past its end: ok",
            "pv-virtio: 64 writes then 64 reads of 4 KiB in one batch each (many in flight) match: ok",
            "pv-virtio: polled, sector 0 reads back the marker: ok",
            "pv-virtio: virtio-net initialises: ok",
            "pv-virtio: the gateway's ARP reply arrived: ok",
            "pv-virtio: the reply came by interrupt: ok",
            "pv-virtio: dropping the NIC closes its event channel (and unmaps the PIRQ): ok",
        ],
        verdict_success: true,
    },
    TestKernel {
        name: "pv-logdirty",
        purpose: "log-dirty mode (XEN_DOMCTL_shadow_op) on a PV guest writing 16 pages: its writable mappings are write-protected with Oxen's marker, its write faults fixed and retried; CLEAN rounds report those pages, a paused guest none; Dom0's foreign writes and the guest's update_va_mapping mark frames; OFF restores R/W; 200 ENABLE/CLEAN/OFF rounds while it runs; destroyed in log-dirty mode, every frame comes back",
        exit: Exit::POWEROFF,
        lines: &[
            "pv-logdirty: log-dirty mode on Dom0 itself: ok",
            "pv-logdirty: CLEAN before log-dirty mode is on: ok",
            "pv-logdirty: ENABLE_LOGDIRTY: ok",
            "pv-logdirty: ENABLE_LOGDIRTY twice: ok",
            "pv-logdirty: CLEAN: the 16 frames the guest writes are dirty (and little else), the writes counted as faults: ok",
            "pv-logdirty: the guest keeps counting in log-dirty mode (its write faults are retried, not bounced): ok",
            "pv-logdirty: PEEK of a paused guest after CLEAN: none of its pages dirty: ok",
            "pv-logdirty: after CLEAN the guest's writable mappings are read-only with the log-dirty marker: ok",
            "pv-logdirty: a frame Dom0 wrote through a foreign mapping is dirty once it is unmapped: ok",
            "pv-logdirty: CLEAN into an unmapped bitmap: ok",
            "pv-logdirty: a failed CLEAN clears nothing: ok",
            "pv-logdirty: a writable mapping made with update_va_mapping marks its frame dirty: ok",
            "pv-logdirty: log-dirty OFF: ok",
            "pv-logdirty: the guest keeps running after log-dirty mode: ok",
            "pv-logdirty: OFF gives every mapping its R/W back, no marker left: ok",
            "pv-logdirty: CLEAN after OFF: ok",
            "pv-logdirty: 200 rounds of ENABLE, CLEAN, OFF while the guest writes: it keeps running: ok",
            "pv-logdirty: a guest destroyed in log-dirty mode gives back every frame: ok",
            "pv-logdirty: CLEAN on a new guest (no log left over): ok",
            "pv-logdirty: free memory is back exactly: ok",
        ],
        verdict_success: true,
    },
    TestKernel {
        name: "pv-domains",
        purpose: "Dom0 builds PV guests (ELF notes, p2m, start_info, page tables, console ring): domu-hello and the example guest /boot/hello; prints their console, destroys them with every page given back; credit weights 256:512 give CPU time 1:2 within 10% (issue 3)",
        exit: Exit::POWEROFF,
        lines: &[
            "pv-domains: build a PV guest: ok",
            "[d1] hello from domU",
            "pv-domains: the guest's console line reached Dom0: ok",
            "pv-domains: the guest shut down with SHUTDOWN_poweroff: ok",
            "pv-domains: free memory is back exactly: ok",
            "[d2] hello from a PV kernel: 4096 pages, cmdline \"hello from xl\"",
            "pv-domains: the example guest (/boot/hello) said hello on its console ring: ok",
            "pv-domains: domu-eperm: every privileged operation was refused to the guest: ok",
            "pv-domains: weights 256:512 on CPU ",
            "pv-domains: credit weights 256:512 give CPU time 1:2 within 10%: ok",
            "pv-domains: free memory is back exactly after the weights test: ok",
        ],
        verdict_success: true,
    },
    TestKernel {
        name: "dom0-soak",
        purpose: "soak (issue 8): 1000 guests created and destroyed through the toolstack, 4 at a time, every 25th with a vif netback connects; hypervisor free memory, Dom0's frames and heap, Dom0's maptrack and xenstore's nodes come back exactly, no domain left",
        exit: Exit::POWEROFF,
        lines: &[
            "dom0-soak: 100/1000 guests, 0 failures",
            "dom0-soak: 1000/1000 guests, 0 failures",
            "dom0-soak: every guest was created, came up and was destroyed: ok",
            "dom0-soak: the hypervisor's free memory is back exactly: ok",
            "dom0-soak: Dom0's free frames are back exactly (after the first 100 guests): ok",
            "dom0-soak: Dom0's heap in use is back exactly (after the first 100 guests): ok",
            "dom0-soak: Dom0 maps no grant any more (maptrack in use as before): ok",
            "dom0-soak: xenstore holds exactly the nodes it held after the first 100 guests: ok",
            "dom0-soak: no domain is left but Dom0: ok",
        ],
        verdict_success: true,
    },
    TestKernel {
        name: "dom0-hvmfuzz",
        purpose: "hostile HVM guests (issue 8): bare-fuzz, one seed after another, throws random port I/O, MMIO, MSRs, CPUID, malformed instruction streams at MMIO and raw hypercalls at the hypervisor and Dom0's device model beside a bare-count canary; each fuzzer runs to its end and powers off, the canary keeps counting with its memory checksum unchanged, no domain crashes, every frame comes back and a fresh guest still starts",
        exit: Exit::POWEROFF,
        lines: &[
            "dom0-hvmfuzz: the canary (bare-count, HVM) counts: ok",
            "fuzz: seed 1",
            "fuzz: total 20000 calls in ",
            "dom0-hvmfuzz: bare-fuzz seed 1 made its 20000 operations and powered itself off: ok",
            "dom0-hvmfuzz: bare-fuzz seed 1: six classes, their counts add up to its total: ok",
            "dom0-hvmfuzz: the canary kept counting beside seed 1, its pages and checksum unchanged: ok",
            "fuzz: seed 2",
            "dom0-hvmfuzz: bare-fuzz seed 2 made its 20000 operations and powered itself off: ok",
            "dom0-hvmfuzz: the canary kept counting beside seed 2, its pages and checksum unchanged: ok",
            "fuzz: seed 3",
            "dom0-hvmfuzz: bare-fuzz seed 3 made its 20000 operations and powered itself off: ok",
            "dom0-hvmfuzz: the canary kept counting beside seed 3, its pages and checksum unchanged: ok",
            "dom0-hvmfuzz: the hypervisor crashed no domain: ok",
            "dom0-hvmfuzz: every frame came back: the hypervisor's free memory is as before: ok",
            "dom0-hvmfuzz: Dom0 is healthy: a fresh guest is created, comes up and is destroyed: ok",
            "dom0-hvmfuzz: no domain is left but Dom0, and free memory is as before: ok",
        ],
        verdict_success: true,
    },
    TestKernel {
        name: "dom0-fuzz",
        purpose: "hostile (issue 8): a fuzzing PV guest (2 vCPUs) throws 200000 random and crafted hypercalls (random numbers and arguments, page-table updates, grant misuse with a revocation race, event-channel abuse) beside a canary guest; the canary keeps beating with its memory unchanged, every frame comes back, Dom0 stays healthy, no crash",
        exit: Exit::POWEROFF,
        lines: &[
            "dom0-fuzz: the canary is up: ok",
            "fuzz: seed 1",
            "fuzz: class random: 80000 calls;",
            "fuzz: class mmu: 40000 calls;",
            "fuzz: class grant: 40000 calls;",
            "fuzz: class evtchn: ",
            "fuzz: total ",
            "dom0-fuzz: the fuzzer ran to its end and reported: ok",
            "dom0-fuzz: the fuzzer made all its calls: ok",
            "dom0-fuzz: the fuzzer reported every class: ok",
            "dom0-fuzz: the canary's heartbeat advanced while the fuzzer ran: ok",
            "dom0-fuzz: the canary's checksum is unchanged: ok",
            "dom0-fuzz: destroying the fuzzer returned every frame: ok",
            "dom0-fuzz: Dom0 is healthy (a new guest was created, came up and was destroyed): ok",
            "dom0-fuzz: the canary's heartbeat still advances after the fuzzer: ok",
            "dom0-fuzz: the hypervisor's free memory is back exactly: ok",
            "dom0-fuzz: the hypervisor printed no crash: ok",
            "dom0-fuzz: no domain is left but Dom0: ok",
        ],
        verdict_success: true,
    },
];

/// Guest kernels (domUs) the image build produces for test Dom0s to build.
pub const GUEST_IMAGES: &[&str] = &[
    "domu-hello",
    "domu-spin",
    "domu-eperm",
    "domu-xsbench",
    "domu-blk",
    "domu-disk",
    "domu-net",
    "domu-nethostile",
    "domu-life",
    "domu-dirty",
    "domu-fuzz",
    "domu-canary",
];

/// Kernels written for bare metal (`hvm-guests`): they know nothing of
/// Oxen or Xen, boot on plain QEMU (`tests/tests/bare_metal.rs`) and are
/// what issue 6 runs unmodified as HVM guests.
pub const BARE_METAL_KERNELS: &[&str] = &["bare-hello", "bare-bench", "bare-count", "bare-fuzz"];

/// Dom0 kernels for `scripts/bench` that are not in [`TEST_KERNELS`] (too
/// slow for every test run; each has its own boot test): pv-bench
/// (`crate::bench::KERNEL`) and xl-bench (`crate::bench::toolstack`).
pub const BENCH_KERNELS: &[&str] = &[crate::bench::KERNEL, crate::bench::toolstack::KERNEL];

/// Files a test kernel's Dom0 ramdisk carries besides the standard ones
/// (`crate::boot::standard_files`): `(path in the ramdisk, image name)`.
pub const KERNEL_FILES: &[(&str, &[(&str, &str)])] = &[
    (
        "pv-domains",
        &[
            ("/boot/domu-hello", "domu-hello"),
            ("/boot/domu-spin", "domu-spin"),
            ("/boot/domu-eperm", "domu-eperm"),
        ],
    ),
    ("pv-logdirty", &[("/boot/domu-dirty", "domu-dirty")]),
    // The toolstack benchmarks' xenstore guest (the example guest is in
    // every ramdisk).
    ("xl-bench", &[("/boot/domu-xsbench", "domu-xsbench")]),
    // The soak test's networked guest (the example guest is in every
    // ramdisk).
    ("dom0-soak", &[("/boot/domu-net", "domu-net")]),
    // The hostile HVM guest and its canary.
    (
        "dom0-hvmfuzz",
        &[
            ("/boot/bare-fuzz", "bare-fuzz"),
            ("/boot/bare-count", "bare-count"),
        ],
    ),
    // The hostile fuzzing guest and its canary (issue 8).
    (
        "dom0-fuzz",
        &[
            ("/boot/domu-fuzz", "domu-fuzz"),
            ("/boot/domu-canary", "domu-canary"),
        ],
    ),
];

/// The extra files kernel `name`'s ramdisk carries (see [`KERNEL_FILES`]).
pub fn kernel_files_of(name: &str) -> &'static [(&'static str, &'static str)] {
    KERNEL_FILES
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(&[], |(_, f)| f)
}

/// Extra hypervisor command-line options a test kernel boots with (after
/// the harness's defaults), by kernel name. Kept apart from [`TestKernel`]
/// so that adding one does not touch every entry.
pub const KERNEL_OPTIONS: &[(&str, &str)] = &[
    // Four vCPUs on the harness's two CPUs: the scheduler overcommitted.
    ("pv-sched", "dom0_max_vcpus=4"),
    // Four vCPUs exchanging IPIs through event channels (issue 3).
    ("pv-smp", "dom0_max_vcpus=4"),
    // Room for the guests pv-domains builds.
    ("pv-domains", "dom0_mem=256M"),
    ("pv-logdirty", "dom0_mem=256M"),
];

/// Test kernels that find an open bug some of the time, with the bug:
/// `test_kernels` leaves them out (unless `OXEN_TEST_KERNELS` names them),
/// and each has an ignored boot test of its own (`cargo test -p oxen-tests
/// --test boot -- --ignored`) until the bug is fixed.
pub const OPEN_BUGS: &[(&str, &str)] = &[];

/// QEMU accelerators for test kernels that need other than the default,
/// by kernel name.
pub const KERNEL_ACCEL: &[(&str, &str)] = &[
    // Both run HVM guests under AMD-V on one CPU while the other CPU
    // switches vCPUs (x87 state restored each time): multi-threaded TCG
    // then resets the machine now and then (see `qemu::SINGLE_THREAD_TCG`;
    // dom0-hvmfuzz hit it in about half its runs).
    ("dom0-hvmfuzz", crate::qemu::SINGLE_THREAD_TCG),
    ("pv-hvmrun", crate::qemu::SINGLE_THREAD_TCG),
];

/// Test kernels that measure how CPU time is shared (the credit weights
/// test): they boot with no other QEMU of the harness running beside them,
/// since a host thread descheduled for long makes guest time jump.
pub const RUN_ALONE: &[&str] = &["pv-domains"];

/// QEMU CPU counts for test kernels that need other than the harness's
/// default, by kernel name.
pub const KERNEL_SMP: &[(&str, u32)] = &[
    // Issue 3's weights test wants its two spinning vCPUs on one host CPU
    // with nothing else to run on: Xen's credit accounting hands out one
    // period's credit per host CPU, so on a two-CPU host two vCPUs pinned
    // to one CPU both stay UNDER and share it 1:1, in Xen as in Oxen.
    ("pv-domains", 1),
];

/// Test kernels that need longer than the boot tests' default timeout,
/// in seconds, by kernel name.
pub const KERNEL_TIMEOUTS: &[(&str, u64)] = &[
    // A thousand guests (about 70 s alone, more on a loaded host).
    ("dom0-soak", 300),
    // Three fuzzing HVM guests one after the other (about 45 s alone).
    ("dom0-hvmfuzz", 240),
    // 200000 hypercalls beside a canary (10 to 40 s, with the load).
    ("dom0-fuzz", 240),
];

/// Extra QEMU arguments (devices) a test kernel boots with, by kernel
/// name.
pub const KERNEL_QEMU_ARGS: &[(&str, &[&str])] = &[
    // Issue 5: the machine's NIC, driven by Dom0's virtio-net driver, on
    // QEMU user networking (the gateway 10.0.2.2 answers ARP).
    (
        "pv-virtio",
        &[
            "-netdev",
            "user,id=n0",
            "-device",
            "virtio-net-pci,netdev=n0",
        ],
    ),
    // An e1000e NIC at 00:05.0: a PCI function with MSI-X whose interrupt
    // the test can raise itself (the ICS register), for issue 5's MSI-X
    // PIRQ check.
    (
        "pv-hw",
        &[
            "-netdev",
            "user,id=hwnet",
            "-device",
            "e1000e,netdev=hwnet,addr=05.0",
        ],
    ),
];

/// A disk a test kernel boots with: a raw image of zeros the harness
/// makes in the boot's work dir, attached as a `virtio-blk-pci` device
/// on the q35 (`-drive file=IMG,if=none,id=dN,format=raw -device
/// virtio-blk-pci,drive=dN`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestDisk {
    /// Its size in MiB.
    pub mib: u64,
    /// Bytes the image must begin with after the machine stopped (what
    /// the kernel wrote to sector 0), if any.
    pub marker: Option<&'static [u8]>,
}

/// Disks test kernels boot with, by kernel name (in order: `d0`, `d1`..).
pub const KERNEL_DISKS: &[(&str, &[TestDisk])] = &[
    // Issue 5: Dom0's virtio-blk driver writes and reads it back, and
    // leaves its marker in sector 0 for the harness to find in the file.
    (
        "pv-virtio",
        &[TestDisk {
            mib: 8,
            marker: Some(b"OXEN-VIRTIO-BLK sector 0 written by Dom0"),
        }],
    ),
];

impl TestDisk {
    /// Creates its image (zeros) at `path`.
    pub fn create(&self, path: &Path) -> Result<(), String> {
        let f = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
        f.set_len(self.mib << 20)
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The QEMU arguments attaching image `path` as drive number `n`.
    pub fn qemu_args(path: &Path, n: usize) -> Vec<String> {
        vec![
            "-drive".into(),
            format!("file={},if=none,id=d{n},format=raw", path.display()),
            "-device".into(),
            format!("virtio-blk-pci,drive=d{n}"),
        ]
    }

    /// Checks the image after the run: its size is unchanged and it
    /// begins with the marker.
    pub fn check(&self, path: &Path) -> Result<(), String> {
        let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if data.len() as u64 != self.mib << 20 {
            return Err(format!(
                "{}: {} bytes, want {}",
                path.display(),
                data.len(),
                self.mib << 20
            ));
        }
        if let Some(m) = self.marker {
            if !data.starts_with(m) {
                return Err(format!(
                    "{}: does not begin with {:?} (begins {:?})",
                    path.display(),
                    String::from_utf8_lossy(m),
                    String::from_utf8_lossy(&data[..m.len().min(data.len())])
                ));
            }
        }
        Ok(())
    }
}

impl TestKernel {
    /// Its disks (see [`KERNEL_DISKS`]).
    pub fn disks(&self) -> &'static [TestDisk] {
        KERNEL_DISKS
            .iter()
            .find(|(n, _)| *n == self.name)
            .map_or(&[], |(_, d)| d)
    }

    /// Its extra QEMU arguments (see [`KERNEL_QEMU_ARGS`]).
    pub fn qemu_args(&self) -> &'static [&'static str] {
        KERNEL_QEMU_ARGS
            .iter()
            .find(|(n, _)| *n == self.name)
            .map_or(&[], |(_, a)| a)
    }

    /// Its timeout in seconds, if not the boot tests' default (see
    /// [`KERNEL_TIMEOUTS`]).
    pub fn timeout_secs(&self) -> Option<u64> {
        KERNEL_TIMEOUTS
            .iter()
            .find(|(n, _)| *n == self.name)
            .map(|&(_, t)| t)
    }

    /// The QEMU CPU count it boots with, if not the default (see [`KERNEL_SMP`]).
    pub fn smp(&self) -> Option<u32> {
        KERNEL_SMP
            .iter()
            .find(|(n, _)| *n == self.name)
            .map(|&(_, n)| n)
    }

    /// The QEMU accelerator it boots with, if not the default (see
    /// [`KERNEL_ACCEL`]).
    pub fn accel(&self) -> Option<&'static str> {
        KERNEL_ACCEL
            .iter()
            .find(|(n, _)| *n == self.name)
            .map(|&(_, a)| a)
    }

    /// `q` with this kernel's own CPU count and accelerator, where it has
    /// them ([`KERNEL_SMP`], [`KERNEL_ACCEL`]).
    pub fn machine(&self, mut q: crate::qemu::Qemu) -> crate::qemu::Qemu {
        if let Some(n) = self.smp() {
            q = q.smp(n);
        }
        if let Some(a) = self.accel() {
            q = q.accel(a);
        }
        q
    }

    /// The extra files its ramdisk carries (see [`KERNEL_FILES`]).
    pub fn ramdisk_files(&self) -> &'static [(&'static str, &'static str)] {
        kernel_files_of(self.name)
    }

    /// Its extra hypervisor command-line options (see [`KERNEL_OPTIONS`]).
    pub fn hypervisor_options(&self) -> &'static str {
        KERNEL_OPTIONS
            .iter()
            .find(|(n, _)| *n == self.name)
            .map_or("", |(_, o)| o)
    }
}

/// Looks a test kernel up by name.
pub fn test_kernel(name: &str) -> Option<&'static TestKernel> {
    TEST_KERNELS.iter().find(|k| k.name == name)
}

/// The workspace root: `$OXEN_ROOT`, else the parent of this crate's
/// manifest dir (recorded at compile time), else the nearest ancestor of the
/// current directory that holds `xen-core/` and `Cargo.toml`.
pub fn workspace_root() -> PathBuf {
    if let Ok(r) = std::env::var("OXEN_ROOT") {
        return PathBuf::from(r);
    }
    let compiled = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf);
    if let Some(c) = compiled.filter(|c| is_root(c)) {
        return c;
    }
    if let Ok(cwd) = std::env::current_dir() {
        if let Some(r) = cwd.ancestors().find(|a| is_root(a)) {
            return r.to_path_buf();
        }
    }
    PathBuf::from(".")
}

fn is_root(p: &Path) -> bool {
    p.join("Cargo.toml").is_file() && p.join("xen-core").is_dir()
}

/// `<root>/target/images`: the image build's target dir and the harness's scratch space.
pub fn images_target_dir() -> PathBuf {
    workspace_root().join("target").join("images")
}

/// A scratch directory for one run (emptied first).
pub fn work_dir(name: &str) -> std::io::Result<PathBuf> {
    let d = images_target_dir().join("work").join(name);
    if d.exists() {
        std::fs::remove_dir_all(&d)?;
    }
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

/// Removes a run's scratch directory once the run is over, unless
/// `OXEN_KEEP_WORK` is set (then it stays, to boot the same machine again
/// by hand: its ramdisk, its QEMU command line in the run's log).
pub fn done_with_work_dir(dir: &std::path::Path) {
    if std::env::var_os("OXEN_KEEP_WORK").is_none() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Where the built images are.
#[derive(Debug, Clone)]
pub struct Images {
    pub dir: PathBuf,
}

impl Images {
    /// The image dir without building: `$OXEN_IMAGES` or the default.
    pub fn locate() -> Images {
        match std::env::var("OXEN_IMAGES") {
            Ok(d) => Images {
                dir: PathBuf::from(d),
            },
            Err(_) => Images {
                dir: images_target_dir().join(TARGET).join("release"),
            },
        }
    }

    /// Path of the image `name`, or an error that says how it should have been made.
    pub fn get(&self, name: &str) -> Result<PathBuf, String> {
        let p = self.dir.join(name);
        if p.is_file() {
            Ok(p)
        } else {
            Err(format!(
                "image {name:?} is missing: {} does not exist (the image build should produce it: {})",
                p.display(),
                build_command_line()
            ))
        }
    }

    pub fn hypervisor(&self) -> Result<PathBuf, String> {
        self.get(HYPERVISOR)
    }

    pub fn dom0(&self) -> Result<PathBuf, String> {
        self.get(DOM0)
    }

    /// Every image the build must produce.
    pub fn expected_names() -> Vec<&'static str> {
        let mut v = vec![HYPERVISOR, DOM0];
        v.extend(TEST_KERNELS.iter().map(|k| k.name));
        v.extend(GUEST_IMAGES);
        v.extend(BENCH_KERNELS);
        v.extend(BARE_METAL_KERNELS);
        v
    }

    /// The expected images that are missing.
    pub fn missing(&self) -> Vec<&'static str> {
        Self::expected_names()
            .into_iter()
            .filter(|n| !self.dir.join(n).is_file())
            .collect()
    }
}

fn build_args() -> Vec<String> {
    let mut a: Vec<String> = vec![
        "build".into(),
        "--release".into(),
        "--target".into(),
        TARGET.into(),
    ];
    for p in IMAGE_PACKAGES.iter().chain(EXAMPLE_PACKAGES) {
        a.push("-p".into());
        a.push(p.to_string());
    }
    // Every bin of the image packages and the guest library's examples.
    a.push("--bins".into());
    a.push("--examples".into());
    a.push("--target-dir".into());
    a.push(images_target_dir().display().to_string());
    a
}

/// The image build command, for messages.
pub fn build_command_line() -> String {
    format!("cargo {}", build_args().join(" "))
}

/// Builds the images, once per process, and returns where they are.
///
/// `OXEN_SKIP_BUILD=1` (or `OXEN_IMAGES=<dir>`) uses what is there instead.
/// Progress goes to stderr.
pub fn build_images() -> Result<&'static Images, String> {
    static BUILT: OnceLock<Result<Images, String>> = OnceLock::new();
    BUILT
        .get_or_init(build_images_now)
        .as_ref()
        .map_err(Clone::clone)
}

fn build_images_now() -> Result<Images, String> {
    let images = Images::locate();
    let skip = std::env::var("OXEN_SKIP_BUILD").is_ok_and(|v| !v.is_empty() && v != "0");
    if skip || std::env::var_os("OXEN_IMAGES").is_some() {
        eprintln!(
            "oxen-tests: using the images in {} (not rebuilding)",
            images.dir.display()
        );
        return Ok(images);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = workspace_root();
    eprintln!("oxen-tests: building the images: {}", build_command_line());
    let t = Instant::now();
    let status = Command::new(&cargo)
        .args(build_args())
        .current_dir(&root)
        // Settings cargo gives a test or build script must not leak into the
        // nested build.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .map_err(|e| format!("cannot run {cargo}: {e}"))?;
    if !status.success() {
        return Err(format!(
            "the image build failed ({status}): {} (run from {}); its errors are above",
            build_command_line(),
            root.display()
        ));
    }
    eprintln!(
        "oxen-tests: images built in {:.1?} into {}",
        t.elapsed(),
        images.dir.display()
    );
    let missing = images.missing();
    if !missing.is_empty() {
        eprintln!(
            "oxen-tests: warning: the build did not produce {} (expected in {})",
            missing.join(", "),
            images.dir.display()
        );
    }
    Ok(images)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_the_workspace() {
        let r = workspace_root();
        assert!(r.join("Cargo.toml").is_file(), "{}", r.display());
        assert!(r.join("tests").join("Cargo.toml").is_file());
    }

    #[test]
    fn build_command_is_the_contract() {
        let c = build_command_line();
        assert!(
            c.starts_with("cargo build --release --target x86_64-unknown-none -p xen-core -p dom0-tools -p hvm-guests -p pv-guest-lib --bins --examples --target-dir "),
            "{c}"
        );
        assert!(c.ends_with("target/images"), "{c}");
    }

    #[test]
    fn test_kernel_table_is_sane() {
        let names = Images::expected_names();
        assert_eq!(&names[..2], &["xen-core", "dom0"]);
        for k in TEST_KERNELS {
            assert!(
                ["dom0-", "pv-", "examples/"]
                    .iter()
                    .any(|p| k.name.starts_with(p)),
                "{}",
                k.name
            );
            assert_eq!(names.iter().filter(|n| **n == k.name).count(), 1);
        }
        for (name, _) in KERNEL_QEMU_ARGS {
            assert!(
                TEST_KERNELS.iter().any(|k| k.name == *name),
                "QEMU arguments for an unknown kernel {name}"
            );
        }
        for (name, disks) in KERNEL_DISKS {
            assert!(
                TEST_KERNELS.iter().any(|k| k.name == *name),
                "disks for an unknown kernel {name}"
            );
            assert!(disks.iter().all(|d| d.mib > 0));
        }
        for (name, _) in KERNEL_OPTIONS {
            assert!(
                TEST_KERNELS.iter().any(|k| k.name == *name),
                "options for an unknown kernel {name}"
            );
        }
        for (name, files) in KERNEL_FILES {
            assert!(
                TEST_KERNELS.iter().any(|k| k.name == *name) || BENCH_KERNELS.contains(name),
                "ramdisk files for an unknown kernel {name}"
            );
            for (path, image) in *files {
                assert!(path.starts_with('/'), "{path}");
                assert!(names.contains(image), "{image} is not built");
            }
        }
        assert_eq!(
            test_kernel("pv-sched").unwrap().hypervisor_options(),
            "dom0_max_vcpus=4"
        );
        assert_eq!(test_kernel("dom0-crash").unwrap().hypervisor_options(), "");
        assert_eq!(test_kernel("dom0-crash").unwrap().exit, Exit::CRASH);
        assert!(test_kernel("nope").is_none());
    }
}
