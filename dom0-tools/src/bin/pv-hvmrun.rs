//! Test Dom0: HVM vCPUs run. Small 32-bit guests (protected mode, paging
//! off, no BIOS) are loaded into HVM domains, given their first vCPU's
//! state with `XEN_DOMCTL_sethvmcontext`, and unpaused:
//!
//! - `hello`: prints through Xen's debug port 0xe9 (the hypervisor shows
//!   it as `(dN) ...`), checks CPUID's Xen leaf, reads the CMOS, and
//!   powers off through the ACPI PM1a control port;
//! - `ports`: reads and writes every I/O port (the platform's and, without
//!   a device model, the null handler's), then powers off;
//! - `timer`: programs its local APIC through MMIO (nested page faults
//!   the hypervisor emulates) and sleeps in HLT through ten periodic timer
//!   interrupts;
//! - `hostile`: garbage into 24576 MSRs (the refused ones #GP in the
//!   guest) and reads/writes of unmapped MMIO, beside a well-behaved guest;
//! - `hypercalls`: installs the hypercall page through the MSR Xen's
//!   CPUID leaf names, calls `xen_version`, `EVTCHNOP_alloc_unbound` and
//!   `SCHEDOP_shutdown` through it (VMMCALL);
//! - `triple`: triple-faults (crashes only itself);
//! - `spin`: loops forever with interrupts off (the host's timer still
//!   takes the CPU back; `xl destroy` ends it);
//! - `ticking`: the timer guest's LAPIC timer, ticking forever, while Dom0
//!   pauses it, reads its context (the LAPIC records) and loads it back:
//!   it keeps ticking;
//! - `dirty`: writes a counter to guest frames 0x10..0x1f (and its count
//!   to frame 2) in a loop, while Dom0 puts it in log-dirty mode
//!   (`XEN_DOMCTL_shadow_op`) and checks that exactly those frames come
//!   back dirty, round after round.
//!
//! Each ends as it should, `gethvmcontext` reads the state back, and after
//! every domain is destroyed free memory is exactly what it was.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    use core::arch::global_asm;
    use dom0_tools::pvtest::Checks;
    use dom0_tools::xc::{self, foreign::ForeignMap, CreateParams};
    use hypercall_abi::domctl::{
        DomctlCmd, ShadowOp, XenDomctl, XenDomctlHvmcontext, XenDomctlShadowOp,
        XenDomctlShadowOpStats, XEN_DOMCTL_CDF_HAP, XEN_DOMCTL_CDF_HVM,
    };
    use hypercall_abi::errno::Errno as AbiErrno;
    use hypercall_abi::hvm_save::{self, code, HvmHwCpu, HvmSaveHeader};
    use hypercall_abi::hypercall::Hypercall;
    use hypercall_abi::sched::ShutdownReason;
    use pv_guest_lib::hypercall::hypercall1;
    use pv_guest_lib::{frame, println, time, Errno, StartInfo};
    use zerocopy::{FromBytes, IntoBytes};

    pv_guest_lib::entry!(main);

    global_asm!(
        r#"
        .pushsection .rodata.hvm_guest, "a", @progbits
        .globl hvm_guest_start
    hvm_guest_start:
        .code32
        /* Mode byte at 0x2000: 0 hello, 1 ports, 2 triple, 3 spin, 4 timer,
           5 hostile, 6 hypercalls, 7 dirty, 8 ticking (the timer setup, then
           ticks forever). */
        movzbl 0x2000, %eax
        cmp $1, %eax
        je ports
        cmp $2, %eax
        je triple
        cmp $3, %eax
        je spin
        cmp $4, %eax
        je timer
        cmp $5, %eax
        je hostile
        cmp $6, %eax
        je pvcalls
        cmp $7, %eax
        je dirty
        cmp $8, %eax
        je timer
        mov $(hello_msg - hvm_guest_start + 0x1000), %esi
        call print
        /* CPUID 0x40000000: "XenVMMXenVMM". */
        mov $0x40000000, %eax
        cpuid
        cmp $0x566e6558, %ebx
        jne 1f
        mov $(cpuid_msg - hvm_guest_start + 0x1000), %esi
        call print
    1:  /* CMOS register 0x0b (status B) through 0x70/0x71. */
        mov $0x0b, %al
        out %al, $0x70
        in $0x71, %al
        test $0x02, %al
        jz 2f
        mov $(cmos_msg - hvm_guest_start + 0x1000), %esi
        call print
    2:  jmp poweroff
    ports:
        xor %ecx, %ecx
    3:  mov %cx, %dx
        /* Skip the reset ports (0x92, 0xcf9 would reboot us) and 0xe9. */
        cmp $0x92, %dx
        je 4f
        cmp $0xcf9, %dx
        je 4f
        cmp $0xe9, %dx
        je 4f
        in %dx, %al
        xor %al, %al
        out %al, %dx
    4:  inc %ecx
        cmp $0x10000, %ecx
        jne 3b
        mov $(ports_msg - hvm_guest_start + 0x1000), %esi
        call print
        jmp poweroff
    triple:
        lidt (zero_idtr - hvm_guest_start + 0x1000)
        int3
        hlt
    spin:
        cli
    5:  jmp 5b
    dirty:
        /* Frame 0x10 + (n & 15) gets n, forever; the count at 0x2400. */
        xor %ecx, %ecx
    16: mov %ecx, %ebx
        and $15, %ebx
        shl $12, %ebx
        mov %ecx, 0x10000(%ebx)
        mov %ecx, 0x2400
        inc %ecx
        jmp 16b
    timer:
        /* A GDT (interrupts load CS from it) and an IDT with vector 0x40. */
        lgdt (timer_gdtr - hvm_guest_start + 0x1000)
        mov $(tick - hvm_guest_start + 0x1000), %eax
        mov $(0x3000 + 0x40 * 8), %edi
        mov %ax, (%edi)
        movw $0x08, 2(%edi)
        movw $0x8e00, 4(%edi)
        shr $16, %eax
        mov %ax, 6(%edi)
        lidt (timer_idtr - hvm_guest_start + 0x1000)
        movl $0, 0x2100
        /* The local APIC, through MMIO: version, enable, periodic timer. */
        mov 0xfee00030, %eax
        mov %eax, 0x2104
        movl $0x1ff, 0xfee000f0
        movl $0xb, 0xfee003e0
        movl $0x20040, 0xfee00320
        movl $1000000, 0xfee00380
        sti
        cmpb $8, 0x2000
        jne 8f
    17: hlt
        jmp 17b
    8:  hlt
        cmpl $10, 0x2100
        jb 8b
        cli
        movl $0x10000, 0xfee00320
        mov $(timer_msg - hvm_guest_start + 0x1000), %esi
        call print
        jmp poweroff
    hostile:
        /* #GP (vector 13) counted and skipped: rdmsr/wrmsr are 2 bytes. */
        lgdt (timer_gdtr - hvm_guest_start + 0x1000)
        mov $(gp_handler - hvm_guest_start + 0x1000), %eax
        mov $(0x3000 + 13 * 8), %edi
        mov %ax, (%edi)
        movw $0x08, 2(%edi)
        movw $0x8e00, 4(%edi)
        shr $16, %eax
        mov %ax, 6(%edi)
        lidt (timer_idtr - hvm_guest_start + 0x1000)
        movl $0, 0x2200
        movl $0, 0x2204
        /* Garbage into every MSR of three ranges, each read first. */
        xor %ecx, %ecx
    9:  rdmsr
        mov $0xdeadbeef, %eax
        xor %ecx, %eax
        mov $0x5a5a5a5a, %edx
        wrmsr
        incl 0x2204
        inc %ecx
        cmp $0x2000, %ecx
        jne 10f
        mov $0xc0000000, %ecx
    10: cmp $0xc0002000, %ecx
        jne 11f
        mov $0xc0010000, %ecx
    11: cmp $0xc0012000, %ecx
        jne 9b
        /* Unmapped MMIO: 16 pages read and written (all ones back). */
        mov $0xd0000000, %edi
        mov $0xffffffff, %ebx
    12: mov (%edi), %eax
        and %eax, %ebx
        movl $0x12345678, (%edi)
        add $0x1000, %edi
        cmp $0xd0010000, %edi
        jne 12b
        cmp $0xffffffff, %ebx
        jne 13f
        mov $(mmio_msg - hvm_guest_start + 0x1000), %esi
        call print
    13: cmpl $1000, 0x2200
        jb 14f
        mov $(msr_msg - hvm_guest_start + 0x1000), %esi
        call print
    14: jmp poweroff
    pvcalls:
        /* Xen's CPUID leaf 0x40000002: the hypercall MSR (EBX); the page
           written to guest frame 5. */
        mov $0x40000002, %eax
        cpuid
        mov %ebx, %ecx
        mov $0x5000, %eax
        xor %edx, %edx
        wrmsr
        /* xen_version(XENVER_version, NULL) through the page. */
        xor %ebx, %ebx
        xor %ecx, %ecx
        mov $(0x5000 + 17 * 32), %eax
        call *%eax
        cmp $0x40011, %eax
        jne 15f
        mov $(xenver_msg - hvm_guest_start + 0x1000), %esi
        call print
        /* EVTCHNOP_alloc_unbound (DOMID_SELF, DOMID_SELF) at 0x2300. */
        movw $0x7ff0, 0x2300
        movw $0x7ff0, 0x2302
        movl $0, 0x2304
        mov $6, %ebx
        mov $0x2300, %ecx
        mov $(0x5000 + 32 * 32), %eax
        call *%eax
        test %eax, %eax
        jnz 15f
        cmpl $0, 0x2304
        je 15f
        mov $(evtchn_msg - hvm_guest_start + 0x1000), %esi
        call print
        /* SCHEDOP_shutdown (SHUTDOWN_poweroff): does not return. */
        movl $0, 0x2310
        mov $2, %ebx
        mov $0x2310, %ecx
        mov $(0x5000 + 29 * 32), %eax
        call *%eax
    15: mov $(hcfail_msg - hvm_guest_start + 0x1000), %esi
        call print
        cli
        hlt
    gp_handler:
        incl 0x2200
        addl $2, 4(%esp)
        add $4, %esp
        iret
    tick:
        incl 0x2100
        movl $0, 0xfee000b0
        iret
    poweroff:
        mov $(bye_msg - hvm_guest_start + 0x1000), %esi
        call print
        /* PM1a_CNT (0xb004): SLP_TYP 0 (S5, Xen's v1 tables), SLP_EN. */
        mov $0xb004, %dx
        mov $0x2000, %ax
        out %ax, %dx
        cli
        hlt
    print:
        mov $0xe9, %dx
    6:  lodsb
        test %al, %al
        jz 7f
        out %al, %dx
        jmp 6b
    7:  ret
        .balign 8
    zero_idtr:
        .word 0
        .long 0
        .balign 8
    timer_gdt:
        .quad 0
        .quad 0x00cf9a000000ffff
        .quad 0x00cf92000000ffff
    timer_gdtr:
        .word 23
        .long timer_gdt - hvm_guest_start + 0x1000
    timer_idtr:
        .word 0x7ff
        .long 0x3000
    hello_msg: .asciz "hvm guest: hello from protected mode\n"
    cpuid_msg: .asciz "hvm guest: cpuid leaf 0x40000000 says XenVMMXenVMM\n"
    cmos_msg: .asciz "hvm guest: CMOS status B says 24-hour mode\n"
    ports_msg: .asciz "hvm guest: every port read and written\n"
    bye_msg: .asciz "hvm guest: powering off\n"
    xenver_msg: .asciz "hvm guest: xen_version through the hypercall page says 4.17\n"
    evtchn_msg: .asciz "hvm guest: EVTCHNOP_alloc_unbound gave a port\n"
    hcfail_msg: .asciz "hvm guest: a hypercall FAILED\n"
    mmio_msg: .asciz "hvm guest: unmapped MMIO reads all ones, writes vanish\n"
    msr_msg: .asciz "hvm guest: garbage MSR writes: refused ones raised #GP, and I am still here\n"
    timer_msg: .asciz "hvm guest: 10 LAPIC timer interrupts through MMIO registers\n"
        .code64
        .globl hvm_guest_end
    hvm_guest_end:
        .popsection
        "#,
        options(att_syntax)
    );

    extern "C" {
        static hvm_guest_start: u8;
        static hvm_guest_end: u8;
    }

    fn blob() -> &'static [u8] {
        // SAFETY: the two symbols delimit one blob in .rodata.
        unsafe {
            let s = &raw const hvm_guest_start;
            let e = &raw const hvm_guest_end;
            core::slice::from_raw_parts(s, e as usize - s as usize)
        }
    }

    fn domctl(d: &mut XenDomctl) -> Result<u64, Errno> {
        // SAFETY: the hypervisor reads and writes back one `xen_domctl`;
        // buffers it points to are live for the call (the callers').
        pv_guest_lib::error::check(unsafe {
            hypercall1(Hypercall::Domctl, d as *mut XenDomctl as u64)
        })
    }

    fn set_hvm_context(domid: u16, buf: &[u8]) -> Result<(), Errno> {
        let mut d = XenDomctl::new(DomctlCmd::Sethvmcontext, domid);
        d.set_payload(&XenDomctlHvmcontext {
            size: buf.len() as u32,
            _pad4: 0,
            buffer: buf.as_ptr() as u64,
        });
        domctl(&mut d).map(|_| ())
    }

    fn get_hvm_context(domid: u16, buf: &mut [u8]) -> Result<usize, Errno> {
        let mut d = XenDomctl::new(DomctlCmd::Gethvmcontext, domid);
        d.set_payload(&XenDomctlHvmcontext {
            size: buf.len() as u32,
            _pad4: 0,
            buffer: if buf.is_empty() {
                0
            } else {
                buf.as_mut_ptr() as u64
            },
        });
        domctl(&mut d)?;
        Ok(d.payload::<XenDomctlHvmcontext>().size as usize)
    }

    /// `XEN_DOMCTL_shadow_op` `op` on `domid` with a bitmap of `bitmap`
    /// (its address and the frames it covers): the pages reported and
    /// the stats.
    fn shadow(
        domid: u16,
        op: ShadowOp,
        bitmap: Option<(u64, u64)>,
    ) -> Result<(u64, XenDomctlShadowOpStats), Errno> {
        let mut d = XenDomctl::new(DomctlCmd::ShadowOp, domid);
        let (addr, pages) = bitmap.unwrap_or((0, 0));
        d.set_payload(&XenDomctlShadowOp {
            op: op.raw(),
            dirty_bitmap: addr,
            pages,
            ..Default::default()
        });
        domctl(&mut d)?;
        let r: XenDomctlShadowOp = d.payload();
        Ok((r.pages, r.stats))
    }

    /// The dirty frames a bitmap says.
    fn dirty_frames(bits: &[u8]) -> heapless::Vec<u16, 64> {
        let mut v = heapless::Vec::new();
        for (i, b) in bits.iter().enumerate() {
            for k in 0..8 {
                if b & (1 << k) != 0 {
                    let _ = v.push((i * 8 + k) as u16);
                }
            }
        }
        v
    }

    /// The u32 a guest keeps at `0x2000 + off` (its data page, frame 2),
    /// read through a foreign mapping; 0 if it cannot be mapped.
    fn data_u32(d: u16, off: usize) -> u32 {
        let mut b = [0u8; 4];
        if let Ok(mut m) = ForeignMap::new(d, &[2]) {
            if let Some(p) = m.page(0) {
                b.copy_from_slice(&p[off..off + 4]);
            }
        }
        u32::from_le_bytes(b)
    }

    /// The dirty guest's count (at 0x2400).
    fn dirty_count(d: u16) -> u32 {
        data_u32(d, 0x400)
    }

    /// The dirty guest's count, then again once it has moved (or 3 s
    /// have passed).
    fn count_moves(d: u16) -> (u32, u32) {
        let n0 = dirty_count(d);
        let mut n1 = n0;
        for _ in 0..30 {
            time::sleep_ns(100_000_000);
            n1 = dirty_count(d);
            if n1 != n0 {
                break;
            }
        }
        (n0, n1)
    }

    /// The ticking guest's tick count (at 0x2100).
    fn ticks(d: u16) -> u32 {
        data_u32(d, 0x100)
    }

    /// Its LAPIC through `gethvmcontext` and back with `sethvmcontext`.
    fn lapic_context(c: &mut Checks, d: u16) {
        time::sleep_ns(100_000_000);
        let _ = xc::pause(d);
        // Two vCPUs' records and the devices': about 4 KiB.
        let mut buf = [0u8; 8192];
        let Some(n) = c.ok(
            "gethvmcontext of the ticking guest",
            get_hvm_context(d, &mut buf),
        ) else {
            return;
        };
        let regs = hvm_save::records(&buf[..n])
            .ok()
            .and_then(|mut r| r.find(|x| x.desc.typecode == code::LAPIC_REGS))
            .map(|r| r.data);
        let reg = |off: usize| {
            regs.and_then(|p| p.get(off..off + 4))
                .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        c.check(
            "its LAPIC_REGS record holds the periodic timer it programmed",
            reg(0x320) == 0x2_0040 && reg(0x380) == 1_000_000 && reg(0xf0) & 0x100 != 0,
            format_args!(
                "LVT timer {:#x}, TMICT {}, SVR {:#x}",
                reg(0x320),
                reg(0x380),
                reg(0xf0)
            ),
        );
        let count = |t: u16| {
            hvm_save::records(&buf[..n]).map_or(0, |r| r.filter(|x| x.desc.typecode == t).count())
        };
        c.check(
            "its context has vCPU 0's CPU and MTRRs, both LAPICs (two records each), the PIC pair, the IOAPIC, the PIT, the RTC and the PM timer",
            [
                code::CPU,
                code::LAPIC,
                code::LAPIC_REGS,
                code::PIC,
                code::IOAPIC,
                code::PIT,
                code::RTC,
                code::MTRR,
                code::PMTIMER,
            ]
            .map(count)
                == [1, 2, 2, 2, 1, 1, 1, 1, 1],
            format_args!(
                "CPU {}, LAPIC {}/{}, PIC {}, IOAPIC {}, PIT {}, RTC {}, MTRR {}, PMTIMER {}",
                count(code::CPU),
                count(code::LAPIC),
                count(code::LAPIC_REGS),
                count(code::PIC),
                count(code::IOAPIC),
                count(code::PIT),
                count(code::RTC),
                count(code::MTRR),
                count(code::PMTIMER)
            ),
        );
        // Its LAPIC record with the registers left out: refused.
        let mut lone = [0u8; 8192];
        let mut pos = 0;
        if let Ok(recs) = hvm_save::records(&buf[..n]) {
            for r in recs.filter(|r| r.desc.typecode != code::LAPIC_REGS) {
                pos +=
                    hvm_save::put_record(&mut lone, pos, r.desc.typecode, r.desc.instance, r.data)
                        .unwrap_or(0);
            }
        }
        pos += hvm_save::put_record(&mut lone, pos, code::END, 0, &[]).unwrap_or(0);
        c.err(
            "sethvmcontext with a LAPIC record but not its registers",
            set_hvm_context(d, &lone[..pos]),
            AbiErrno::EINVAL,
        );
        c.ok(
            "sethvmcontext of what gethvmcontext gave",
            set_hvm_context(d, &buf[..n]),
        );
        let before = ticks(d);
        let _ = xc::unpause(d);
        time::sleep_ns(100_000_000);
        let after = ticks(d);
        c.check(
            "the guest's LAPIC timer keeps ticking after its context went out and back",
            after > before,
            format_args!("{before} ticks, then {after}"),
        );
    }

    /// Log-dirty mode on the `dirty` guest.
    fn log_dirty(c: &mut Checks, d: u16) {
        // Its 16 frames, and frame 2 where it keeps its count.
        let want: heapless::Vec<u16, 64> = core::iter::once(2).chain(0x10..0x20).collect();
        let mut bits = [0u8; 64];
        let bm = Some((bits.as_mut_ptr() as u64, 512));
        c.err(
            "CLEAN before log-dirty mode is on",
            shadow(d, ShadowOp::Clean, bm),
            AbiErrno::EINVAL,
        );
        c.err(
            "log-dirty mode on Dom0 itself",
            shadow(0, ShadowOp::EnableLogdirty, None),
            AbiErrno::EINVAL,
        );
        if c.ok("ENABLE_LOGDIRTY", shadow(d, ShadowOp::EnableLogdirty, None))
            .is_none()
        {
            return;
        }
        c.err(
            "ENABLE_LOGDIRTY twice",
            shadow(d, ShadowOp::EnableLogdirty, None),
            AbiErrno::EINVAL,
        );
        for round in 0..3 {
            time::sleep_ns(100_000_000);
            bits = [0; 64];
            let bm = Some((bits.as_mut_ptr() as u64, 512));
            let r = shadow(d, ShadowOp::Clean, bm);
            let got = dirty_frames(&bits);
            c.check(
                "CLEAN: exactly the frames the guest writes are dirty, the writes counted as faults",
                r.is_ok_and(|(p, s)| p == 512 && s.dirty_count == 17 && s.fault_count >= 17)
                    && got == want,
                format_args!("round {round}: {r:?}, dirty {got:?}"),
            );
        }
        // Paused, cleaned: nothing is written, nothing is dirty.
        let _ = xc::pause(d);
        let _ = shadow(d, ShadowOp::Clean, Some((bits.as_mut_ptr() as u64, 512)));
        bits = [0xff; 64];
        let r = shadow(d, ShadowOp::Peek, Some((bits.as_mut_ptr() as u64, 512)));
        c.check(
            "PEEK of a paused guest after CLEAN: nothing dirty",
            r.is_ok() && bits.iter().all(|&b| b == 0),
            format_args!("{r:?}, {:?}", dirty_frames(&bits)),
        );
        // Dom0 writes a frame the guest never touches through a foreign
        // mapping: once the mapping is gone, that frame is dirty.
        if let Ok(mut m) = ForeignMap::new(d, &[0x30]) {
            if let Some(p) = m.page(0) {
                p[0] = 0x5a;
            }
        }
        bits = [0; 64];
        let r = shadow(d, ShadowOp::Peek, Some((bits.as_mut_ptr() as u64, 512)));
        let got = dirty_frames(&bits);
        c.check(
            "a frame Dom0 wrote through a foreign mapping is dirty once it is unmapped",
            r.is_ok() && got[..] == [0x30],
            format_args!("{r:?}, {got:?}"),
        );
        // A bitmap the hypervisor cannot write, and one too short: the
        // pages reported say how far it went.
        c.err(
            "CLEAN into an unmapped bitmap",
            shadow(d, ShadowOp::Clean, Some((0xdead_0000_0000, 512))),
            AbiErrno::EFAULT,
        );
        let r = shadow(d, ShadowOp::Peek, Some((bits.as_mut_ptr() as u64, 100)));
        c.check(
            "PEEK with a 100-frame bitmap reports 100 frames",
            r.is_ok_and(|(p, _)| p == 100),
            format_args!("{r:?}"),
        );
        let _ = xc::unpause(d);
        c.ok("log-dirty OFF", shadow(d, ShadowOp::Off, None));
        let (n0, n1) = count_moves(d);
        c.check(
            "the guest keeps running (and writing) after log-dirty mode",
            n1 != n0,
            format_args!("count {n0} then {n1}"),
        );
        c.err(
            "CLEAN after OFF",
            shadow(d, ShadowOp::Clean, Some((bits.as_mut_ptr() as u64, 512))),
            AbiErrno::EINVAL,
        );
        // Log-dirty mode switched on, cleaned and off again and again
        // while the guest writes on its other CPU: a write fault taken
        // just before OFF (or CLEAN) finds the frame writable by the time
        // it is handled, and must be retried, not crash the guest.
        let mut refused = 0u32;
        for _ in 0..200 {
            refused += u32::from(shadow(d, ShadowOp::EnableLogdirty, None).is_err());
            let _ = shadow(d, ShadowOp::Clean, Some((bits.as_mut_ptr() as u64, 512)));
            refused += u32::from(shadow(d, ShadowOp::Off, None).is_err());
        }
        let (n0, n1) = count_moves(d);
        c.check(
            "200 rounds of ENABLE, CLEAN, OFF while the guest writes: it keeps running",
            refused == 0 && n1 != n0,
            format_args!("{refused} refused, count {n0} then {n1}"),
        );
    }

    /// vCPU 0 in 32-bit protected mode, paging off, at `rip`.
    fn protected32(rip: u64) -> HvmHwCpu {
        HvmHwCpu {
            cs_sel: 0x8,
            cs_limit: 0xffff_ffff,
            cs_arbytes: 0xc9b,
            ds_sel: 0x10,
            ds_limit: 0xffff_ffff,
            ds_arbytes: 0xc93,
            es_sel: 0x10,
            es_limit: 0xffff_ffff,
            es_arbytes: 0xc93,
            ss_sel: 0x10,
            ss_limit: 0xffff_ffff,
            ss_arbytes: 0xc93,
            fs_arbytes: 0x93,
            fs_limit: 0xffff,
            gs_arbytes: 0x93,
            gs_limit: 0xffff,
            tr_arbytes: 0x8b,
            tr_limit: 0x67,
            ldtr_arbytes: 0x82,
            ldtr_limit: 0xffff,
            gdtr_limit: 0xffff,
            idtr_limit: 0xffff,
            cr0: 0x11,
            rflags: 2,
            rip,
            rsp: 0x1_f000,
            ..Default::default()
        }
    }

    fn context_buffer(cpu: &HvmHwCpu) -> [u8; 2048] {
        let mut b = [0u8; 2048];
        let h = HvmSaveHeader {
            magic: hvm_save::HVM_FILE_MAGIC,
            version: hvm_save::HVM_FILE_VERSION,
            ..Default::default()
        };
        let mut pos = hvm_save::put_record(&mut b, 0, code::HEADER, 0, h.as_bytes()).unwrap_or(0);
        pos += hvm_save::put_record(&mut b, pos, code::CPU, 0, cpu.as_bytes()).unwrap_or(0);
        let _ = hvm_save::put_record(&mut b, pos, code::END, 0, &[]);
        b
    }

    /// A 2 MiB HVM guest running the blob in `mode`, unpaused.
    fn start(c: &mut Checks, name: &str, mode: u8) -> Option<u16> {
        start_with(c, name, mode, 1)
    }

    /// [`start`] with `vcpus` vCPUs (the others than 0 never started).
    fn start_with(c: &mut Checks, name: &str, mode: u8, vcpus: u32) -> Option<u16> {
        let p = CreateParams {
            max_vcpus: vcpus,
            handle: [0x52; 16],
            ..CreateParams::default()
        };
        let d = c.ok(
            "createdomain CDF_hvm | CDF_hap",
            xc::create_domain_with_flags(&p, XEN_DOMCTL_CDF_HVM | XEN_DOMCTL_CDF_HAP),
        )?;
        c.ok("max_mem 2 MiB", xc::set_max_mem(d, 2048))?;
        let mut ext = [0u64];
        c.ok("populate 2 MiB", xc::populate_physmap_order(d, 9, &mut ext))?;
        match ForeignMap::new(d, &[1, 2]) {
            Ok(mut m) => {
                if let Some(page) = m.page(0) {
                    page[..blob().len()].copy_from_slice(blob());
                }
                if let Some(page) = m.page(1) {
                    page[0] = mode;
                }
            }
            Err(e) => {
                c.check("load the guest", false, format_args!("{e}"));
                return None;
            }
        }
        c.err(
            "a context buffer without its end record",
            set_hvm_context(d, &context_buffer(&protected32(0x1000))[..8 + 24 + 8 + 100]),
            AbiErrno::EINVAL,
        );
        let buf = context_buffer(&protected32(0x1000));
        c.ok("sethvmcontext: vCPU 0 at 0x1000", set_hvm_context(d, &buf))?;
        c.ok("unpause", xc::unpause(d))?;
        println!("pv-hvmrun: {name}: d{d} running");
        Some(d)
    }

    /// Waits up to `ms` for `d` to shut down; its reason.
    fn wait_shutdown(d: u16, ms: u64) -> Option<u32> {
        let end = time::now_ns() + ms * 1_000_000;
        while time::now_ns() < end {
            if let Ok(i) = xc::domain_info(d) {
                if i.is_shutdown() {
                    return Some(i.shutdown_reason());
                }
            }
            time::sleep_ns(5_000_000);
        }
        None
    }

    fn destroy(c: &mut Checks, d: u16) {
        for _ in 0..500 {
            match xc::destroy(d) {
                Ok(()) => return,
                Err(e) if e == Errno::from_abi(AbiErrno::EAGAIN) => time::sleep_ns(2_000_000),
                Err(e) => {
                    c.check("destroy", false, format_args!("d{d}: {e}"));
                    return;
                }
            }
        }
        c.check("destroy", false, format_args!("d{d}: still busy"));
    }

    fn main(_si: &'static StartInfo) -> ! {
        println!("pv-hvmrun: Oxen runs HVM vCPUs");
        let mut c = Checks::new("pv-hvmrun");
        if let Err(e) = pv_guest_lib::runtime::init() {
            c.error(format_args!("runtime init: {e}"));
            c.finish();
        }
        if c.ok("frame allocator and kernel L4", frame::init())
            .is_none()
        {
            c.finish()
        }
        let free0 = xc::physinfo().map(|p| p.free_pages).unwrap_or(0);

        // hello: output, CPUID, CMOS, ACPI power-off.
        if let Some(d) = start(&mut c, "hello", 0) {
            let r = wait_shutdown(d, 20_000);
            c.check(
                "the hello guest powers itself off",
                r == Some(ShutdownReason::Poweroff.raw()),
                format_args!("{r:?}"),
            );
            let n = get_hvm_context(d, &mut []);
            if let Some(n) = c.ok("gethvmcontext size", n) {
                // A CPU record and the LAPIC's two: about 2 KiB.
                let mut buf = [0u8; 4096];
                if let Some(m) = c.ok("gethvmcontext", get_hvm_context(d, &mut buf[..n.min(4096)]))
                {
                    let cpu = hvm_save::records(&buf[..m])
                        .ok()
                        .and_then(|mut r| r.find(|x| x.desc.typecode == code::CPU))
                        .and_then(|r| HvmHwCpu::read_from_bytes(r.data).ok());
                    c.check(
                        "the saved vCPU stopped in the guest's code, still in protected mode",
                        cpu.is_some_and(|x| (0x1000..0x2000).contains(&x.rip) && x.cr0 & 1 != 0),
                        format_args!("{:x?}", cpu.map(|x| (x.rip, x.cr0))),
                    );
                }
            }
            destroy(&mut c, d);
        }

        // ports: every port, with no device model attached.
        if let Some(d) = start(&mut c, "ports", 1) {
            let r = wait_shutdown(d, 60_000);
            c.check(
                "the port-sweeping guest gets through every port and powers off",
                r == Some(ShutdownReason::Poweroff.raw()),
                format_args!("{r:?}"),
            );
            destroy(&mut c, d);
        }

        // timer: LAPIC MMIO (nested page faults emulated), a periodic
        // timer interrupt injected ten times, HLT sleeping between them.
        if let Some(d) = start(&mut c, "timer", 4) {
            let r = wait_shutdown(d, 20_000);
            c.check(
                "the timer guest takes 10 LAPIC timer interrupts and powers off",
                r == Some(ShutdownReason::Poweroff.raw()),
                format_args!("{r:?}"),
            );
            let v = data_u32(d, 0x104);
            c.check(
                "its LAPIC version register reads an integrated APIC",
                (0x10..=0x15).contains(&(v & 0xff)),
                format_args!("{v:#x}"),
            );
            destroy(&mut c, d);
        }

        // hostile MSRs and MMIO, with a well-behaved guest beside it.
        if let Some(h) = start(&mut c, "hostile", 5) {
            let other = start(&mut c, "hello beside it", 0);
            let r = wait_shutdown(h, 60_000);
            c.check(
                "the hostile guest writes garbage to 24576 MSRs, pokes unmapped MMIO and powers off",
                r == Some(ShutdownReason::Poweroff.raw()),
                format_args!("{r:?}"),
            );
            let (gp, writes) = (data_u32(h, 0x200), data_u32(h, 0x204));
            c.check(
                "every MSR write was made, and the refused ones raised #GP in the guest",
                writes == 3 * 0x2000 && gp >= 1000,
                format_args!("{writes} writes, {gp} #GP"),
            );
            if let Some(o) = other {
                let r = wait_shutdown(o, 20_000);
                c.check(
                    "the guest beside it ran to its end",
                    r == Some(ShutdownReason::Poweroff.raw()),
                    format_args!("{r:?}"),
                );
                destroy(&mut c, o);
            }
            destroy(&mut c, h);
        }

        // hypercalls: the hypercall page from the MSR CPUID names, then
        // Xen's calls through it, down to SCHEDOP_shutdown.
        if let Some(d) = start(&mut c, "hypercalls", 6) {
            let r = wait_shutdown(d, 20_000);
            c.check(
                "the guest's SCHEDOP_shutdown(poweroff) hypercall shuts it down",
                r == Some(ShutdownReason::Poweroff.raw()),
                format_args!("{r:?}"),
            );
            destroy(&mut c, d);
        }

        // triple: crashes itself only.
        if let Some(d) = start(&mut c, "triple", 2) {
            let r = wait_shutdown(d, 20_000);
            c.check(
                "a triple fault crashes that domain",
                r == Some(ShutdownReason::Crash.raw()),
                format_args!("{r:?}"),
            );
            destroy(&mut c, d);
        }

        // spin: never exits by itself; Dom0 keeps running beside it.
        if let Some(d) = start(&mut c, "spin", 3) {
            let t0 = time::now_ns();
            time::sleep_ns(300_000_000);
            let slept = (time::now_ns() - t0) / 1_000_000;
            c.check(
                "Dom0 keeps running beside a guest that never exits",
                (300..5_000).contains(&slept),
                format_args!("{slept} ms"),
            );
            let alive = xc::domain_info(d).is_ok_and(|i| !i.is_shutdown());
            c.check(
                "the spinning guest is still up",
                alive,
                format_args!("d{d}"),
            );
            destroy(&mut c, d);
        }

        // ticking: the LAPIC's state through gethvmcontext and back.
        // Two vCPUs: the second's LAPIC (APIC ID 2) goes out and back too.
        if let Some(d) = start_with(&mut c, "ticking", 8, 2) {
            lapic_context(&mut c, d);
            destroy(&mut c, d);
        }

        // dirty: log-dirty mode, round after round.
        if let Some(d) = start(&mut c, "dirty", 7) {
            log_dirty(&mut c, d);
            destroy(&mut c, d);
        }

        let free1 = xc::physinfo().map(|p| p.free_pages).unwrap_or(0);
        c.check(
            "every frame comes back after the domains are destroyed",
            free1 == free0,
            format_args!("{free0} before, {free1} after"),
        );
        c.finish()
    }
}
