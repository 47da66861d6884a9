//! A small guest (domU) kernel for Dom0's builder tests: says hello on
//! its PV console ring, checks what the builder handed it (not the initial
//! domain, a console ring and xenstore page in start_info, its command
//! line), prints its CPUID leaves 1 and 7 (for `cpuid=`) and powers its
//! domain off.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    use pv_guest_lib::start_info::ConsoleInfo;
    use pv_guest_lib::{println, xen, StartInfo, Verdict};

    pv_guest_lib::entry!(kmain);

    fn kmain(si: &'static StartInfo) -> ! {
        println!("hello from domU");
        println!(
            "domu-hello: {} pages ({} KiB), cmdline \"{}\", flags {}",
            si.nr_pages,
            si.nr_pages * 4,
            si.cmd_line(),
            si.flags
        );
        let mut v = Verdict::new();
        v.check(
            !si.flags.initdomain() && !si.flags.privileged(),
            format_args!(
                "flags {} (want neither privileged nor initdomain)",
                si.flags
            ),
        );
        match si.console {
            ConsoleInfo::DomU { mfn, evtchn } => {
                println!("domu-hello: console ring mfn {mfn:#x}, event channel {evtchn}");
                v.check(
                    pv_guest_lib::console_ring::active().is_some(),
                    format_args!("the console ring page is in the bootstrap region"),
                );
            }
            ConsoleInfo::Dom0 { .. } => v.fail(format_args!("a Dom0 console in start_info")),
        }
        println!(
            "domu-hello: xenstore mfn {:#x}, event channel {}",
            si.store_mfn, si.store_evtchn
        );
        v.check(si.store_mfn != 0, format_args!("xenstore mfn is 0"));
        match xen::version() {
            Ok(ver) => println!("domu-hello: running on Xen {ver}"),
            Err(e) => v.fail(format_args!("xen_version: {e}")),
        }
        // The domain's CPUID policy (through Xen's forced-emulation prefix,
        // as a PV kernel asks it), for the cpuid= levelling tests.
        let c1 = pv_guest_lib::arch::xen_cpuid(1, 0);
        let c7 = pv_guest_lib::arch::xen_cpuid(7, 0);
        println!(
            "domu-hello: cpuid 1: ecx={:#010x} edx={:#010x}; 7.0: ebx={:#010x} (sse4_2={} avx2={})",
            c1.ecx,
            c1.edx,
            c7.ebx,
            (c1.ecx >> 20) & 1,
            (c7.ebx >> 5) & 1
        );
        println!("domu-hello: goodbye");
        v.finish()
    }
}
