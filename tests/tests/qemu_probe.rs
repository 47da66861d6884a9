//! The harness's own QEMU plumbing, tested against real QEMU with a tiny
//! probe kernel the harness writes itself (no xen-core needed): serial
//! capture, isa-debug-exit decoding, timeouts, the PVH module hand-off and
//! the GRUB ISO path.  If these fail, the boot tests' verdicts mean nothing.

use std::time::Duration;

use oxen_tests::boot::{BootPath, OxenBoot, Payload};
use oxen_tests::elf::{pvh_probe, ProbeExit};
use oxen_tests::images::work_dir;
use oxen_tests::qemu::{Qemu, QemuError};
use oxen_tests::{Exit, ShutdownReason};

const TIMEOUT: Duration = Duration::from_secs(60);
const HELLO: &str = "oxen-tests probe: hello from the guest";

fn probe_file(name: &str, exit: ProbeExit) -> std::path::PathBuf {
    let dir = work_dir(name).unwrap();
    let p = dir.join("probe.elf");
    std::fs::write(&p, pvh_probe(&format!("{HELLO}\n"), exit)).unwrap();
    p
}

#[test]
fn probe_prints_and_powers_off() {
    let k = probe_file("probe-poweroff", ProbeExit::Code(0));
    let r = Qemu::new("probe-poweroff")
        .kernel(k)
        .spawn()
        .unwrap()
        .wait_exit(TIMEOUT);
    r.assert_line(HELLO);
    r.assert_exit(Exit::POWEROFF);
    assert_eq!(r.exit.qemu_status(), Some(1));
}

#[test]
fn every_exit_code_is_decoded() {
    let cases = [
        (3u8, Exit::CRASH),
        (0x10, Exit::HypervisorFatal),
        (5, Exit::Dom0(ShutdownReason::SoftReset)),
        (0x22, Exit::UnknownCode(0x22)),
    ];
    for (code, want) in cases {
        let name = format!("probe-code-{code}");
        let k = probe_file(&name, ProbeExit::Code(code));
        let r = Qemu::new(name)
            .kernel(k)
            .spawn()
            .unwrap()
            .wait_exit(TIMEOUT);
        r.assert_line(HELLO);
        r.assert_exit(want);
    }
}

#[test]
fn a_hang_is_killed_and_reported_as_a_timeout() {
    let k = probe_file("probe-hang", ProbeExit::Hang);
    let mut m = Qemu::new("probe-hang").kernel(k).spawn().unwrap();
    m.wait_for(HELLO, TIMEOUT).unwrap();
    let r = m.wait_exit(Duration::from_secs(2));
    assert!(r.timed_out);
    assert_eq!(r.exit, Exit::TimedOut);
    let why = std::panic::catch_unwind(|| r.assert_exit(Exit::POWEROFF)).unwrap_err();
    let why = why.downcast_ref::<String>().unwrap();
    assert!(why.contains("killed after timeout"), "{why}");
    assert!(why.contains(HELLO), "the report shows the console: {why}");
}

#[test]
fn pvh_path_hands_over_exactly_one_module_the_bundle() {
    // QEMU's PVH loader gives the guest one module per -initrd file: hence
    // the Oxen module bundle.  The probe exits with hvm_start_info.nr_modules.
    let k = probe_file("probe-nrmod", ProbeExit::NrModules);
    let work = work_dir("probe-nrmod-boot").unwrap();
    let boot = OxenBoot {
        path: BootPath::Pvh,
        hypervisor: k.clone(),
        append: "loglvl=info".into(),
        dom0: Some(Payload::Bytes(b"kernel".to_vec())),
        dom0_cmdline: String::new(),
        ramdisk: Some(Payload::Bytes(b"ramdisk".to_vec())),
    };
    let r = boot
        .qemu("probe-nrmod", &work)
        .unwrap()
        .spawn()
        .unwrap()
        .wait_exit(TIMEOUT);
    r.assert_line(HELLO);
    assert_eq!(
        r.exit.qemu_status(),
        Some((1 << 1) | 1),
        "{}",
        r.report("expected nr_modules == 1")
    );

    let none = OxenBoot { dom0: None, ..boot };
    let r = none
        .qemu("probe-nomod", &work)
        .unwrap()
        .spawn()
        .unwrap()
        .wait_exit(TIMEOUT);
    r.assert_line(HELLO);
    assert_eq!(
        r.exit.qemu_status(),
        Some(1),
        "{}",
        r.report("expected nr_modules == 0")
    );
}

#[test]
fn qemu_72_reads_initrd_a_comma_b_as_one_file_name() {
    // Why the bundle exists: `-initrd a,b` is not two modules on the PVH path.
    let k = probe_file("probe-comma", ProbeExit::NrModules);
    let dir = k.parent().unwrap();
    std::fs::write(dir.join("a"), "a").unwrap();
    std::fs::write(dir.join("b"), "b").unwrap();
    let r = Qemu::new("probe-comma")
        .kernel(&k)
        .arg("-initrd")
        .arg(format!("{0}/a,{0}/b", dir.display()))
        .spawn()
        .unwrap()
        .wait_exit(TIMEOUT);
    match r.exit {
        Exit::QemuFailed(_) => assert!(r.stderr.contains("a,"), "{}", r.stderr),
        // A QEMU that does split the list would report two modules.
        _ => r.assert_exit(Exit::Dom0(ShutdownReason::Suspend)),
    }
}

#[test]
fn grub_iso_path_boots_a_multiboot2_kernel() {
    let k = probe_file("probe-grub", ProbeExit::Code(0));
    let work = work_dir("probe-grub-boot").unwrap();
    let boot = OxenBoot {
        path: BootPath::Grub,
        hypervisor: k,
        append: "loglvl=info".into(),
        dom0: Some(Payload::Bytes(b"kernel".to_vec())),
        dom0_cmdline: "console=hvc0".into(),
        ramdisk: Some(Payload::Bytes(b"ramdisk".to_vec())),
    };
    let r = boot
        .qemu("probe-grub", &work)
        .unwrap()
        .spawn()
        .unwrap()
        .wait_exit(TIMEOUT);
    r.assert_line(HELLO);
    r.assert_exit(Exit::POWEROFF);
}

#[test]
fn missing_qemu_and_missing_files_are_clear_errors() {
    let k = probe_file("probe-missing", ProbeExit::Code(0));
    let mut q = Qemu::new("no-qemu").kernel(&k);
    q.binary = "/nonexistent/qemu-system-x86_64".into();
    let e = q.spawn().err().expect("spawn must fail");
    assert!(matches!(e, QemuError::NotInstalled(_)));
    assert!(e.to_string().contains("is not installed"), "{e}");
    let e = Qemu::new("no-kernel")
        .kernel("/nonexistent/xen-core")
        .spawn()
        .err()
        .unwrap();
    assert_eq!(e.to_string(), "/nonexistent/xen-core does not exist");
}

#[test]
fn bad_qemu_arguments_are_not_mistaken_for_poweroff() {
    // QEMU exits 1 on its own errors, like a debug-exit code of 0.
    let k = probe_file("probe-badarg", ProbeExit::Code(0));
    let r = Qemu::new("probe-badarg")
        .kernel(k)
        .cpu("no-such-cpu-model")
        .spawn()
        .unwrap()
        .wait_exit(TIMEOUT);
    assert!(
        matches!(r.exit, Exit::QemuFailed(_)),
        "{}",
        r.report("expected QemuFailed")
    );
}
