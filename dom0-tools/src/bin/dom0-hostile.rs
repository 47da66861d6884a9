//! A test Dom0 that throws bad input at the hypervisor and checks that every
//! call fails the way Xen 4.17 fails it, with Xen's exact error code.
//!
//! One line per check (`hostile: <what>: ok (<ret>)` or
//! `hostile: <what>: FAILED: got <ret>, want <ret>`), then the XTF-style
//! verdict and a poweroff. Expected values are Xen 4.17's
//! (xen/arch/x86/pv/callback.c, pv/misc-hypercalls.c, common/domain.c,
//! drivers/char/console.c, common/kernel.c, common/event_channel.c,
//! hypercall-defs.c); the places where Oxen differs on purpose are marked.

#![cfg_attr(target_os = "none", no_std, no_main)]

/// The host build has nothing to run.
#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    use core::fmt;

    use hypercall_abi::arch_x86::{
        TrapInfo, FLAT_KERNEL_CS, FLAT_KERNEL_SS, HYPERVISOR_VIRT_END, HYPERVISOR_VIRT_START,
        SELECTOR_RPL_MASK,
    };
    use hypercall_abi::callback::{CallbackOp, CallbackRegister, CallbackType, CallbackUnregister};
    use hypercall_abi::errno::Errno;
    use hypercall_abi::event_channel::{
        EvtchnAllocUnbound, EvtchnBindInterdomain, EvtchnBindIpi, EvtchnBindPirq, EvtchnBindVcpu,
        EvtchnBindVirq, EvtchnClose, EvtchnExpandArray, EvtchnInitControl, EvtchnOp,
        EvtchnOpCompat, EvtchnReset, EvtchnSend, EvtchnSetPriority, EvtchnStatus, EvtchnUnmask,
    };
    use hypercall_abi::hypercall::{Hypercall, NR_HYPERCALLS};
    use hypercall_abi::sched::{SchedOp, SchedShutdown};
    use hypercall_abi::vcpu::VcpuOp;
    use hypercall_abi::version::{XenFeature, XenVersionOp, XEN_PAGESIZE, XEN_VERSION};
    use hypercall_abi::xen::{ConsoleIoOp, Virq, DOMID_INVALID, DOMID_SELF};
    use hypercall_abi::zerocopy::{FromZeros, IntoBytes};
    use pv_guest_lib::error::Ret;
    use pv_guest_lib::hypercall::hypercall_raw;
    use pv_guest_lib::layout::{PAGE_SIZE, VIRT_BASE};
    use pv_guest_lib::util::c_str;
    use pv_guest_lib::{println, xen, StartInfo, Verdict};

    pv_guest_lib::entry!(hostile_main);

    // -- Hostile addresses ------------------------------------------------

    /// The NULL pointer.
    const NULL: u64 = 0;
    /// First byte of the hypervisor's reserved range (the read-only M2P on Xen).
    const HYPERVISOR_FIRST: u64 = HYPERVISOR_VIRT_START;
    /// Last page of the hypervisor's reserved range.
    const HYPERVISOR_LAST_PAGE: u64 = HYPERVISOR_VIRT_END - PAGE_SIZE;
    /// First non-canonical address above the low half.
    const NON_CANONICAL_LOW: u64 = 1 << 47;
    /// A non-canonical address with only the top bit set.
    const NON_CANONICAL_HIGH: u64 = 1 << 63;
    /// Guest user space, where nothing is mapped at boot.
    const UNMAPPED_LOW: u64 = dom0_tools::fault::UNMAPPED_LOW;
    /// Kernel half, 1 GiB below the image: never mapped by a builder.
    const UNMAPPED_KERNEL: u64 = VIRT_BASE - (1 << 30);

    /// Addresses no hypercall may read or write.
    const BAD_POINTERS: &[(u64, &str)] = &[
        (NULL, "NULL"),
        (HYPERVISOR_FIRST, "hypervisor range start"),
        (HYPERVISOR_LAST_PAGE, "hypervisor range last page"),
        (NON_CANONICAL_LOW, "non-canonical 1<<47"),
        (NON_CANONICAL_HIGH, "non-canonical 1<<63"),
        (UNMAPPED_LOW, "unmapped user address"),
        (UNMAPPED_KERNEL, "unmapped kernel address"),
    ];

    // -- Hostile numbers --------------------------------------------------

    /// Hypercall numbers nobody implements: the hole at 11, the undefined
    /// numbers above the arch range, the first and a far number past
    /// NR_hypercalls (these two have no hypercall-page slot when >= 128:
    /// they are issued with a direct `syscall`), and all ones.
    const UNKNOWN_HYPERCALLS: &[u64] = &[11, 56, 60, 63, NR_HYPERCALLS as u64, 1000, u64::MAX];
    /// Sub-op numbers past each family's last one.
    const CONSOLE_IO_BAD_CMDS: &[u64] = &[ConsoleIoOp::Read as u64 + 1, 99];
    const XEN_VERSION_BAD_CMDS: &[u64] = &[XenVersionOp::BuildId as u64 + 1, 1000];
    const BAD_SCHED_OP: u64 = 99;
    const BAD_VCPU_OP: u64 = 99;
    const BAD_CALLBACK_OP: u64 = 99;
    /// A callback type Xen does not know.
    const BAD_CALLBACK_TYPE: u16 = 99;
    /// A shutdown reason past SHUTDOWN_MAX.
    const BAD_SHUTDOWN_REASON: u32 = 99;
    /// A vCPU id no domain has.
    const ABSENT_VCPU: u64 = 1000;
    /// 2^32: Xen takes vcpu_op's vcpuid as `unsigned int`, so this is vCPU 0.
    const VCPUID_2_POW_32: u64 = 1 << 32;
    /// A xen_version command with garbage above bit 31 (Xen's `int cmd`).
    const XENVER_VERSION_HIGH_BITS: u64 = (1 << 32) | XenVersionOp::Version as u64;
    /// A console_io count of 2^32: `unsigned int count` makes it 0.
    const COUNT_2_POW_32: u64 = 1 << 32;
    /// console_io read counts that look negative as an `int`.
    const NEGATIVE_READ_COUNTS: &[u64] = &[0x8000_0000, u32::MAX as u64];
    /// Junk in argument registers that do not matter.
    const JUNK: u64 = 0xdead_beef_dead_beef;
    /// What XENVER_capabilities must start with for a 64-bit PV guest.
    const CAPABILITIES_PREFIX: &str = "xen-3.0-x86_64";
    /// The vector of the page-fault handler in the bad trap table.
    const PAGE_FAULT_VECTOR: u8 = 14;

    // -- Xen 4.17's answers where a stricter hypervisor might differ -------
    //
    // Each is what Xen 4.17 returns (source in the comment). Oxen follows
    // Xen unless docs/abi-deviations.md says otherwise; a deliberate
    // deviation changes the constant here and gets a line in that file.

    /// callback_op register with an unknown type: `-ENOSYS`
    /// (pv/callback.c, register_guest_callback's default case).
    const WANT_BAD_CALLBACK_TYPE: Errno = Errno::ENOSYS;
    /// A non-canonical callback or trap handler address: `-EINVAL`
    /// (pv/callback.c, do_set_trap_table: `is_canonical_address`).
    const WANT_NON_CANONICAL_HANDLER: Errno = Errno::EINVAL;
    /// stack_switch with an RPL 0 `ss`: 0, after forcing the RPL to 3
    /// (pv/misc-hypercalls.c: fixup_guest_stack_selector).
    const WANT_STACK_SWITCH_RPL0: i64 = 0;
    /// sched_op shutdown with reason 99. Oxen deviation: Xen 4.17 records any
    /// reason and, for Dom0, restarts the machine; Oxen refuses it.
    const WANT_BAD_SHUTDOWN_REASON: Errno = Errno::EINVAL;

    /// EVTCHNOP_bind_pirq. Oxen deviation: no domain has PIRQs yet, so
    /// every bind is refused as for a PIRQ the domain may not use (Xen
    /// 4.17, common/event_channel.c: evtchn_bind_pirq's permission check);
    /// Xen's Dom0 could bind a real one.
    const WANT_BIND_PIRQ: Errno = Errno::EPERM;
    /// EVTCHNOP_init_control. Oxen deviation: no FIFO event channel ABI
    /// (Xen 4.17 sets it up); the guest stays on the 2-level ABI, as Linux
    /// does when this fails.
    const WANT_INIT_CONTROL: Errno = Errno::ENOSYS;
    /// An EVTCHNOP command past the last (Xen: do_event_channel_op's default).
    const BAD_EVTCHN_OPS: &[u64] = &[15, 99, u32::MAX as u64];
    /// A domain id nobody has.
    const ABSENT_DOMID: u16 = 0x1234;

    const GOOD_LINE: &[u8] = b"hostile: console_io write of a good buffer\n";

    /// Calls any hypercall number with five arguments.
    ///
    /// # Safety
    /// Every pointer argument is either one of this file's hostile
    /// addresses, where no Rust data lives, or a live buffer of ours that
    /// the call may read or write in full.
    unsafe fn hc(nr: u64, args: [u64; 5]) -> i64 {
        // SAFETY: forwarded to the caller.
        unsafe { hypercall_raw(nr, args) }
    }

    fn addr<T: ?Sized>(r: &T) -> u64 {
        r as *const T as *const u8 as u64
    }

    struct Checks {
        v: Verdict,
        n: u32,
        failed: u32,
    }

    impl Checks {
        fn expect(&mut self, what: fmt::Arguments<'_>, got: i64, want: i64) {
            self.expect_that(what, got == want, got, format_args!("{}", Ret(want)));
        }

        fn expect_err(&mut self, what: fmt::Arguments<'_>, got: i64, want: Errno) {
            self.expect(what, got, want.to_ret());
        }

        fn expect_that(
            &mut self,
            what: fmt::Arguments<'_>,
            ok: bool,
            got: i64,
            want: fmt::Arguments<'_>,
        ) {
            self.n += 1;
            if ok {
                println!("hostile: {what}: ok ({})", Ret(got));
            } else {
                self.failed += 1;
                println!("hostile: {what}: FAILED: got {}, want {want}", Ret(got));
                self.v
                    .fail(format_args!("{what}: got {}, want {want}", Ret(got)));
            }
        }
    }

    fn hostile_main(si: &'static StartInfo) -> ! {
        println!("hostile: Oxen hostile Dom0: bad hypercalls, Xen 4.17's answers expected");
        let mut c = Checks {
            v: Verdict::new(),
            n: 0,
            failed: 0,
        };
        unknown_numbers(&mut c);
        console_io(&mut c);
        xen_version(&mut c, si);
        sched_op(&mut c);
        vcpu_op(&mut c);
        callbacks(&mut c);
        traps_and_stacks(&mut c);
        event_channels(&mut c);
        println!("hostile: {} checks, {} failed", c.n, c.failed);
        c.v.finish()
    }

    fn unknown_numbers(c: &mut Checks) {
        for &nr in UNKNOWN_HYPERCALLS {
            // SAFETY: no hypercall has this number; only junk is passed.
            let r = unsafe { hc(nr, [JUNK; 5]) };
            c.expect_err(format_args!("unknown hypercall {nr}"), r, Errno::ENOSYS);
        }
        let families: [(Hypercall, &[u64], u64); 3] = [
            (Hypercall::ConsoleIo, CONSOLE_IO_BAD_CMDS, 0),
            (Hypercall::XenVersion, XEN_VERSION_BAD_CMDS, 0),
            (Hypercall::SchedOp, &[BAD_SCHED_OP], 0),
        ];
        for (hcall, cmds, arg) in families {
            for &cmd in cmds {
                // SAFETY: unknown sub-op; the only pointer passed is NULL.
                let r = unsafe { hc(hcall as u64, [cmd, arg, NULL, 0, 0]) };
                c.expect_err(
                    format_args!("{} unknown cmd {cmd}", hcall.name()),
                    r,
                    Errno::ENOSYS,
                );
            }
        }
        // SAFETY: unknown sub-op on vCPU 0; the buffer is NULL.
        let r = unsafe { hc(Hypercall::VcpuOp as u64, [BAD_VCPU_OP, 0, NULL, 0, 0]) };
        c.expect_err(
            format_args!("vcpu_op unknown cmd {BAD_VCPU_OP} on vcpu 0"),
            r,
            Errno::ENOSYS,
        );
        // SAFETY: unknown sub-op; the argument is NULL.
        let r = unsafe {
            hc(
                Hypercall::CallbackOp as u64,
                [BAD_CALLBACK_OP, NULL, 0, 0, 0],
            )
        };
        c.expect_err(
            format_args!("callback_op unknown cmd {BAD_CALLBACK_OP}"),
            r,
            Errno::ENOSYS,
        );
    }

    fn console_io(c: &mut Checks) {
        const CIO: u64 = Hypercall::ConsoleIo as u64;
        const WRITE: u64 = ConsoleIoOp::Write as u64;
        const READ: u64 = ConsoleIoOp::Read as u64;
        for &(p, name) in BAD_POINTERS {
            // SAFETY: the hypervisor may only read from `p`, where nothing of ours lives.
            let r = unsafe { hc(CIO, [WRITE, 16, p, 0, 0]) };
            c.expect_err(
                format_args!("console_io write from {name} {p:#x}"),
                r,
                Errno::EFAULT,
            );
        }
        // SAFETY: a zero-length write reads nothing.
        let r = unsafe { hc(CIO, [WRITE, 0, NULL, 0, 0]) };
        c.expect(format_args!("console_io write of 0 bytes from NULL"), r, 0);
        // SAFETY: count 2^32 is 0 as Xen's `unsigned int`; nothing is read.
        let r = unsafe { hc(CIO, [WRITE, COUNT_2_POW_32, NULL, 0, 0]) };
        c.expect(
            format_args!("console_io write of 2^32 (= 0) bytes from NULL"),
            r,
            0,
        );
        // SAFETY: a zero-length write of a live buffer.
        let r = unsafe { hc(CIO, [WRITE, 0, addr(GOOD_LINE), 0, 0]) };
        c.expect(format_args!("console_io write of 0 bytes"), r, 0);
        // SAFETY: the hypervisor reads GOOD_LINE, which is live and that long.
        let r = unsafe { hc(CIO, [WRITE, GOOD_LINE.len() as u64, addr(GOOD_LINE), 0, 0]) };
        c.expect(format_args!("console_io write of a good buffer"), r, 0);

        let Some(page) = pv_guest_lib::page_alloc::alloc_page() else {
            c.v.error(format_args!("no free page for the console_io read checks"));
            return;
        };
        let buf = addr(&page[..]);
        for &count in NEGATIVE_READ_COUNTS {
            // SAFETY: `buf` is a live 4 KiB page of ours; a correct
            // hypervisor refuses the count, a buggy one copies only the
            // pending input (a few bytes) into it.
            let r = unsafe { hc(CIO, [READ, count, buf, 0, 0]) };
            c.expect_err(
                format_args!("console_io read of {count:#x} bytes"),
                r,
                Errno::E2BIG,
            );
        }
        // SAFETY: a zero-length read writes nothing.
        let r = unsafe { hc(CIO, [READ, 0, buf, 0, 0]) };
        c.expect(format_args!("console_io read of 0 bytes"), r, 0);
    }

    fn xen_version(c: &mut Checks, si: &StartInfo) {
        const XV: u64 = Hypercall::XenVersion as u64;
        const EXTRAVERSION: u64 = XenVersionOp::Extraversion as u64;
        for &(p, name) in BAD_POINTERS {
            // SAFETY: the hypervisor may only write to `p`, where nothing of ours lives.
            let r = unsafe { hc(XV, [EXTRAVERSION, p, 0, 0, 0]) };
            c.expect_err(
                format_args!("xen_version extraversion into {name} {p:#x}"),
                r,
                Errno::EFAULT,
            );
        }
        // The bootstrap page tables are the one part of the bootstrap region
        // mapped read-only (public/xen.h): kernel text and rodata are mapped
        // writable in a PV domain, so they are no test of this.
        let pt = si.pt_base;
        match pv_guest_lib::layout() {
            Some(l) if si.nr_pt_frames > 0 && l.contains(pt, PAGE_SIZE) => {
                // SAFETY: `pt` is our L4 page table, mapped read-only: the
                // write must fault. (Were the hypervisor to write anyway,
                // it would hit L4 slots 0-1, unused by this kernel.)
                let r = unsafe { hc(XV, [EXTRAVERSION, pt, 0, 0, 0]) };
                c.expect_err(
                    format_args!("xen_version extraversion into the read-only page table {pt:#x}"),
                    r,
                    Errno::EFAULT,
                );
            }
            _ => c.v.error(format_args!(
                "start_info.pt_base {pt:#x} is not in the bootstrap region"
            )),
        }

        // Positives.
        // SAFETY: XENVER_version takes no buffer.
        let r = unsafe { hc(XV, [XenVersionOp::Version as u64, NULL, 0, 0, 0]) };
        c.expect(
            format_args!("xen_version version"),
            r,
            i64::from(XEN_VERSION),
        );
        // SAFETY: as above; the high bits are dropped by Xen's `int cmd`.
        let r = unsafe { hc(XV, [XENVER_VERSION_HIGH_BITS, NULL, 0, 0, 0]) };
        c.expect(
            format_args!("xen_version cmd {XENVER_VERSION_HIGH_BITS:#x} (int cmd = version)"),
            r,
            i64::from(XEN_VERSION),
        );
        // SAFETY: XENVER_pagesize takes no buffer.
        let r = unsafe { hc(XV, [XenVersionOp::Pagesize as u64, NULL, 0, 0, 0]) };
        c.expect(format_args!("xen_version pagesize"), r, XEN_PAGESIZE as i64);
        match xen::capabilities() {
            Ok(caps) => {
                let s = c_str(&caps.bytes);
                c.expect_that(
                    format_args!("xen_version capabilities \"{s}\""),
                    s.starts_with(CAPABILITIES_PREFIX),
                    0,
                    format_args!("a string starting with {CAPABILITIES_PREFIX}"),
                );
            }
            Err(e) => c.expect_that(
                format_args!("xen_version capabilities"),
                false,
                e.ret(),
                format_args!("0"),
            ),
        }
        match xen::get_features(0) {
            Ok(bits) => c.expect_that(
                format_args!("xen_version get_features submap 0 = {bits:#x} has XENFEAT_dom0"),
                bits & XenFeature::Dom0.submap_bit() != 0,
                0,
                format_args!("bit {} set", XenFeature::Dom0 as u32),
            ),
            Err(e) => c.expect_that(
                format_args!("xen_version get_features"),
                false,
                e.ret(),
                format_args!("0"),
            ),
        }
    }

    fn sched_op(c: &mut Checks) {
        const SO: u64 = Hypercall::SchedOp as u64;
        for &(p, name) in BAD_POINTERS {
            // SAFETY: the hypervisor may only read `p`, where nothing of ours lives.
            let r = unsafe { hc(SO, [SchedOp::Shutdown as u64, p, 0, 0, 0]) };
            c.expect_err(
                format_args!("sched_op shutdown with {name} {p:#x}"),
                r,
                Errno::EFAULT,
            );
        }
        // See WANT_BAD_SHUTDOWN_REASON.
        let bad = SchedShutdown {
            reason: BAD_SHUTDOWN_REASON,
        };
        // SAFETY: the hypervisor reads `bad`, a live sched_shutdown.
        let r = unsafe { hc(SO, [SchedOp::Shutdown as u64, addr(&bad), 0, 0, 0]) };
        c.expect_err(
            format_args!("sched_op shutdown reason {BAD_SHUTDOWN_REASON} (Oxen refuses it)"),
            r,
            WANT_BAD_SHUTDOWN_REASON,
        );
        // SAFETY: SCHEDOP_yield takes no argument.
        let r = unsafe { hc(SO, [SchedOp::Yield as u64, NULL, 0, 0, 0]) };
        c.expect(format_args!("sched_op yield"), r, 0);
    }

    fn vcpu_op(c: &mut Checks) {
        const VO: u64 = Hypercall::VcpuOp as u64;
        const IS_UP: u64 = VcpuOp::IsUp as u64;
        // SAFETY: VCPUOP_is_up takes no buffer.
        let up0 = unsafe { hc(VO, [IS_UP, 0, NULL, 0, 0]) };
        c.expect(format_args!("vcpu_op is_up vcpu 0"), up0, 1);
        // SAFETY: as above.
        let r = unsafe { hc(VO, [IS_UP, ABSENT_VCPU, NULL, 0, 0]) };
        c.expect_err(
            format_args!("vcpu_op is_up vcpu {ABSENT_VCPU}"),
            r,
            Errno::ENOENT,
        );
        // Xen's vcpu_op takes `unsigned int vcpuid` (hypercall-defs.c): 2^32 is vCPU 0.
        // SAFETY: as above.
        let r = unsafe { hc(VO, [IS_UP, VCPUID_2_POW_32, NULL, 0, 0]) };
        c.expect(
            format_args!("vcpu_op is_up vcpuid 2^32 (unsigned int = vcpu 0)"),
            r,
            up0,
        );
    }

    fn callbacks(c: &mut Checks) {
        const CO: u64 = Hypercall::CallbackOp as u64;
        const REGISTER: u64 = CallbackOp::Register as u64;
        const UNREGISTER: u64 = CallbackOp::Unregister as u64;
        let main_fn: fn(&'static StartInfo) -> ! = hostile_main;
        let handler = main_fn as usize as u64;
        let mut reg = CallbackRegister::new_zeroed();
        reg.r#type = BAD_CALLBACK_TYPE;
        reg.address = handler;
        // SAFETY: the hypervisor reads `reg`; the type is unknown, so nothing is installed.
        let r = unsafe { hc(CO, [REGISTER, addr(&reg), 0, 0, 0]) };
        c.expect_err(
            format_args!("callback_op register type {BAD_CALLBACK_TYPE}"),
            r,
            WANT_BAD_CALLBACK_TYPE,
        );

        let mut reg = CallbackRegister::new_zeroed();
        reg.r#type = CallbackType::Event as u16;
        reg.address = NON_CANONICAL_LOW;
        // SAFETY: the hypervisor reads `reg`; Xen refuses non-canonical
        // addresses (and this kernel never unmasks events).
        let r = unsafe { hc(CO, [REGISTER, addr(&reg), 0, 0, 0]) };
        c.expect_err(
            format_args!("callback_op register event at non-canonical {NON_CANONICAL_LOW:#x}"),
            r,
            WANT_NON_CANONICAL_HANDLER,
        );
        for &(p, name) in BAD_POINTERS {
            // SAFETY: the hypervisor may only read `p`, where nothing of ours lives.
            let r = unsafe { hc(CO, [REGISTER, p, 0, 0, 0]) };
            c.expect_err(
                format_args!("callback_op register from {name} {p:#x}"),
                r,
                Errno::EFAULT,
            );
        }
        let unreg = CallbackUnregister {
            r#type: CallbackType::Event as u16,
            _unused: 0,
        };
        // SAFETY: the hypervisor reads `unreg`; Xen refuses to drop the event callback.
        let r = unsafe { hc(CO, [UNREGISTER, addr(&unreg), 0, 0, 0]) };
        c.expect_err(
            format_args!("callback_op unregister event"),
            r,
            Errno::EINVAL,
        );
    }

    fn traps_and_stacks(c: &mut Checks) {
        const STT: u64 = Hypercall::SetTrapTable as u64;
        for &(p, name) in BAD_POINTERS {
            if p == NULL {
                continue; // NULL means "clear the table", checked below.
            }
            // SAFETY: the hypervisor may only read `p`, where nothing of ours lives.
            let r = unsafe { hc(STT, [p, 0, 0, 0, 0]) };
            c.expect_err(
                format_args!("set_trap_table from {name} {p:#x}"),
                r,
                Errno::EFAULT,
            );
        }
        let mut table = [TrapInfo::new_zeroed(); 2];
        table[0].vector = PAGE_FAULT_VECTOR;
        table[0].cs = FLAT_KERNEL_CS;
        table[0].address = NON_CANONICAL_LOW;
        // SAFETY: the hypervisor reads `table` up to its zero terminator;
        // Xen refuses the non-canonical handler, and the table is cleared
        // right after in case it did not.
        let r = unsafe { hc(STT, [addr(&table[..]), 0, 0, 0, 0]) };
        c.expect_err(
            format_args!("set_trap_table with a non-canonical handler"),
            r,
            WANT_NON_CANONICAL_HANDLER,
        );
        // SAFETY: NULL clears the virtual IDT.
        let r = unsafe { hc(STT, [NULL, 0, 0, 0, 0]) };
        c.expect(format_args!("set_trap_table NULL (clear)"), r, 0);

        // Xen fixes a guest stack selector's RPL up to 3 and succeeds
        // (pv/misc-hypercalls.c: fixup_guest_stack_selector).
        let here = 0u64;
        let sp = addr(&here) & !0xf;
        let ss_rpl0 = u64::from(FLAT_KERNEL_SS & !SELECTOR_RPL_MASK);
        // SAFETY: the kernel stack is only used on entry from guest user
        // mode, which this kernel never runs; it is reset right after.
        let r = unsafe { hc(Hypercall::StackSwitch as u64, [ss_rpl0, sp, 0, 0, 0]) };
        c.expect(
            format_args!("stack_switch with ss {ss_rpl0:#x} (RPL 0, Xen fixes it up)"),
            r,
            WANT_STACK_SWITCH_RPL0,
        );
        // SAFETY: as above.
        let r = unsafe {
            hc(
                Hypercall::StackSwitch as u64,
                [u64::from(FLAT_KERNEL_SS), sp, 0, 0, 0],
            )
        };
        c.expect(
            format_args!("stack_switch with ss {FLAT_KERNEL_SS:#x}"),
            r,
            0,
        );
    }

    /// `event_channel_op(cmd, arg)` with `arg` a live struct of ours.
    fn evtchn<T: IntoBytes>(cmd: u64, arg: &mut T) -> i64 {
        // SAFETY: the hypervisor reads and writes at most `T`, the command's
        // own argument struct, which is live and ours.
        unsafe {
            hc(
                Hypercall::EventChannelOp as u64,
                [cmd, arg as *mut T as u64, 0, 0, 0],
            )
        }
    }

    fn event_channels(c: &mut Checks) {
        const EO: u64 = Hypercall::EventChannelOp as u64;
        const EOC: u64 = Hypercall::EventChannelOpCompat as u64;
        // Every command copies its struct in first (common/event_channel.c).
        for cmd in 0..=EvtchnOp::SetPriority as u64 {
            for &(p, name) in BAD_POINTERS {
                // SAFETY: the hypervisor may only read `p`, where nothing of ours lives.
                let r = unsafe { hc(EO, [cmd, p, 0, 0, 0]) };
                c.expect_err(
                    format_args!("event_channel_op {cmd} with {name} {p:#x}"),
                    r,
                    Errno::EFAULT,
                );
            }
        }
        for &(p, name) in BAD_POINTERS {
            // SAFETY: as above.
            let r = unsafe { hc(EOC, [p, 0, 0, 0, 0]) };
            c.expect_err(
                format_args!("event_channel_op_compat with {name} {p:#x}"),
                r,
                Errno::EFAULT,
            );
        }
        for &cmd in BAD_EVTCHN_OPS {
            let mut junk = [0u64; 4];
            c.expect_err(
                format_args!("event_channel_op cmd {cmd}"),
                evtchn(cmd, &mut junk),
                Errno::ENOSYS,
            );
        }
        // The compat call knows only the pre-FIFO commands.
        for cmd in [
            EvtchnOp::InitControl as u32,
            EvtchnOp::ExpandArray as u32,
            EvtchnOp::SetPriority as u32,
            99,
        ] {
            let mut o = EvtchnOpCompat::new_zeroed();
            o.cmd = cmd;
            // SAFETY: the hypervisor reads `o`, a live evtchn_op.
            let r = unsafe { hc(EOC, [addr(&o), 0, 0, 0, 0]) };
            c.expect_err(
                format_args!("event_channel_op_compat cmd {cmd}"),
                r,
                Errno::ENOSYS,
            );
        }

        // Hostile ports, vCPUs, VIRQs and domains: Xen's errors.
        const BIG: u32 = u32::MAX;
        let mut a = EvtchnClose { port: BIG };
        c.expect_err(
            format_args!("close port {BIG:#x}"),
            evtchn(EvtchnOp::Close as u64, &mut a),
            Errno::EINVAL,
        );
        let mut a = EvtchnSend { port: BIG };
        c.expect_err(
            format_args!("send port {BIG:#x}"),
            evtchn(EvtchnOp::Send as u64, &mut a),
            Errno::EINVAL,
        );
        let mut a = EvtchnUnmask { port: BIG };
        c.expect_err(
            format_args!("unmask port {BIG:#x}"),
            evtchn(EvtchnOp::Unmask as u64, &mut a),
            Errno::EINVAL,
        );
        let mut a = EvtchnStatus {
            dom: DOMID_SELF,
            port: BIG,
            ..FromZeros::new_zeroed()
        };
        c.expect_err(
            format_args!("status port {BIG:#x}"),
            evtchn(EvtchnOp::Status as u64, &mut a),
            Errno::EINVAL,
        );
        let mut a = EvtchnStatus {
            dom: ABSENT_DOMID,
            port: 1,
            ..FromZeros::new_zeroed()
        };
        c.expect_err(
            format_args!("status in domain {ABSENT_DOMID:#x}"),
            evtchn(EvtchnOp::Status as u64, &mut a),
            Errno::ESRCH,
        );
        let mut a = EvtchnBindVirq {
            virq: BIG,
            vcpu: 0,
            port: 0,
        };
        c.expect_err(
            format_args!("bind_virq {BIG:#x}"),
            evtchn(EvtchnOp::BindVirq as u64, &mut a),
            Errno::EINVAL,
        );
        let mut a = EvtchnBindVirq {
            virq: Virq::Timer as u32,
            vcpu: BIG,
            port: 0,
        };
        c.expect_err(
            format_args!("bind_virq TIMER on vCPU {BIG:#x}"),
            evtchn(EvtchnOp::BindVirq as u64, &mut a),
            Errno::ENOENT,
        );
        let mut a = EvtchnBindIpi { vcpu: BIG, port: 0 };
        c.expect_err(
            format_args!("bind_ipi on vCPU {BIG:#x}"),
            evtchn(EvtchnOp::BindIpi as u64, &mut a),
            Errno::ENOENT,
        );
        let mut a = EvtchnBindVcpu { port: 1, vcpu: BIG };
        c.expect_err(
            format_args!("bind_vcpu to vCPU {BIG:#x}"),
            evtchn(EvtchnOp::BindVcpu as u64, &mut a),
            Errno::ENOENT,
        );
        let mut a = EvtchnBindVcpu { port: BIG, vcpu: 0 };
        c.expect_err(
            format_args!("bind_vcpu of port {BIG:#x}"),
            evtchn(EvtchnOp::BindVcpu as u64, &mut a),
            Errno::EINVAL,
        );
        let mut a = EvtchnBindInterdomain {
            remote_dom: DOMID_SELF,
            _pad2: 0,
            remote_port: BIG,
            local_port: 0,
        };
        c.expect_err(
            format_args!("bind_interdomain to own port {BIG:#x}"),
            evtchn(EvtchnOp::BindInterdomain as u64, &mut a),
            Errno::EINVAL,
        );
        let mut a = EvtchnBindInterdomain {
            remote_dom: DOMID_INVALID,
            _pad2: 0,
            remote_port: 1,
            local_port: 0,
        };
        c.expect_err(
            format_args!("bind_interdomain to DOMID_INVALID"),
            evtchn(EvtchnOp::BindInterdomain as u64, &mut a),
            Errno::ESRCH,
        );
        let mut a = EvtchnAllocUnbound {
            dom: DOMID_INVALID,
            remote_dom: DOMID_SELF,
            port: 0,
        };
        c.expect_err(
            format_args!("alloc_unbound in DOMID_INVALID"),
            evtchn(EvtchnOp::AllocUnbound as u64, &mut a),
            Errno::ESRCH,
        );
        let mut a = EvtchnReset { dom: ABSENT_DOMID };
        c.expect_err(
            format_args!("reset domain {ABSENT_DOMID:#x}"),
            evtchn(EvtchnOp::Reset as u64, &mut a),
            Errno::ESRCH,
        );
        let mut a = EvtchnBindPirq {
            pirq: 1,
            flags: 0,
            port: 0,
        };
        c.expect_err(
            format_args!("bind_pirq 1 (no PIRQs in Oxen yet)"),
            evtchn(EvtchnOp::BindPirq as u64, &mut a),
            WANT_BIND_PIRQ,
        );
        // The FIFO ABI: what Xen answers a domain on the 2-level ABI.
        let mut a = EvtchnInitControl::new_zeroed();
        c.expect_err(
            format_args!("init_control (FIFO ABI: Oxen has none)"),
            evtchn(EvtchnOp::InitControl as u64, &mut a),
            WANT_INIT_CONTROL,
        );
        let mut a = EvtchnExpandArray::new_zeroed();
        c.expect_err(
            format_args!("expand_array without FIFO"),
            evtchn(EvtchnOp::ExpandArray as u64, &mut a),
            Errno::EOPNOTSUPP,
        );
        let mut a = EvtchnSetPriority {
            port: BIG,
            priority: 0,
        };
        c.expect_err(
            format_args!("set_priority of port {BIG:#x}"),
            evtchn(EvtchnOp::SetPriority as u64, &mut a),
            Errno::EINVAL,
        );
        let mut a = EvtchnSetPriority {
            port: 0,
            priority: 0,
        };
        c.expect_err(
            format_args!("set_priority without FIFO"),
            evtchn(EvtchnOp::SetPriority as u64, &mut a),
            Errno::ENOSYS,
        );

        // Xen's `cmd` is an `int`: bits above 31 are ignored.
        let mut a = EvtchnStatus {
            dom: DOMID_SELF,
            port: 0,
            ..FromZeros::new_zeroed()
        };
        c.expect(
            format_args!("status of port 0 with junk above bit 31 of cmd"),
            evtchn((1 << 32) | EvtchnOp::Status as u64, &mut a),
            0,
        );
        // The compat call works like the new one for the old commands.
        let mut o = EvtchnOpCompat::new_zeroed();
        o.cmd = EvtchnOp::Close as u32;
        o.u[..4].copy_from_slice(&BIG.to_le_bytes());
        // SAFETY: the hypervisor reads `o`, a live evtchn_op.
        let r = unsafe { hc(EOC, [addr(&o), 0, 0, 0, 0]) };
        c.expect_err(
            format_args!("event_channel_op_compat close port {BIG:#x}"),
            r,
            Errno::EINVAL,
        );
        let mut o = EvtchnOpCompat::new_zeroed();
        o.cmd = EvtchnOp::BindIpi as u32;
        // SAFETY: the hypervisor reads `o` and writes the port into its union.
        let r = unsafe { hc(EOC, [(&raw mut o) as u64, 0, 0, 0, 0]) };
        let port = u32::from_le_bytes([o.u[4], o.u[5], o.u[6], o.u[7]]);
        c.expect_that(
            format_args!("event_channel_op_compat bind_ipi (port {port})"),
            r == 0 && port != 0,
            r,
            format_args!("0 and a port"),
        );
        let mut a = EvtchnClose { port };
        c.expect(
            format_args!("close it"),
            evtchn(EvtchnOp::Close as u64, &mut a),
            0,
        );
    }
}
