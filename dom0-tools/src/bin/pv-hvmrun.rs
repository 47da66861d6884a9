//! Test Dom0: HVM vCPUs run. Small 32-bit guests (protected mode, paging
//! off, no BIOS) are loaded into HVM domains, given their first vCPU's
//! state with `XEN_DOMCTL_sethvmcontext`, and unpaused:
//!
//! - `hello`: prints through Xen's debug port 0xe9 (the hypervisor shows
//!   it as `(dN) ...`), checks CPUID's Xen leaf, reads the CMOS, and
//!   powers off through the ACPI PM1a control port;
//! - `ports`: reads and writes every I/O port (the platform's and, without
//!   a device model, the null handler's), then powers off;
//! - `triple`: triple-faults (crashes only itself);
//! - `spin`: loops forever with interrupts off (the host's timer still
//!   takes the CPU back; `xl destroy` ends it).
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
        DomctlCmd, XenDomctl, XenDomctlHvmcontext, XEN_DOMCTL_CDF_HAP, XEN_DOMCTL_CDF_HVM,
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
        /* Mode byte at 0x2000: 0 hello, 1 ports, 2 triple, 3 spin. */
        movzbl 0x2000, %eax
        cmp $1, %eax
        je ports
        cmp $2, %eax
        je triple
        cmp $3, %eax
        je spin
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
    hello_msg: .asciz "hvm guest: hello from protected mode\n"
    cpuid_msg: .asciz "hvm guest: cpuid leaf 0x40000000 says XenVMMXenVMM\n"
    cmos_msg: .asciz "hvm guest: CMOS status B says 24-hour mode\n"
    ports_msg: .asciz "hvm guest: every port read and written\n"
    bye_msg: .asciz "hvm guest: powering off\n"
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
        let p = CreateParams {
            max_vcpus: 1,
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
                let mut buf = [0u8; 2048];
                if let Some(m) = c.ok("gethvmcontext", get_hvm_context(d, &mut buf[..n.min(2048)]))
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

        let free1 = xc::physinfo().map(|p| p.free_pages).unwrap_or(0);
        c.check(
            "every frame comes back after the domains are destroyed",
            free1 == free0,
            format_args!("{free0} before, {free1} after"),
        );
        c.finish()
    }
}
