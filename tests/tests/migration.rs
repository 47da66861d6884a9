//! Live migration between two Oxen hosts (issue 7): two QEMU machines on
//! one virtual Ethernet over UDP on loopback (`oxen-run --net
//! dgram:LOCAL:REMOTE`, ports picked free at run time), each Dom0 with an
//! address (`ip=` on its command line). Host B runs `xl migrate-receive`;
//! host A creates the counting HVM guest (`hvm-guests`' bare-count) and
//! `xl migrate`s it to B. The guest counts on at B from where it was at A,
//! every page of its memory intact; A has nothing left. If B dies while
//! the guest is on its way, the guest runs on at A.
//!
//! The two machines run at once, one thread each; this file holds one
//! test so that its two QEMUs are the only ones of this process.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use oxen_tests::console::{bad_count_line, counts, free_memory, section};
use oxen_tests::images::build_images;

const COUNT_PATH: &str = "/boot/bare-count";
const COUNT_ALL_OK: &str = " pages ok 2048/2048 ";
const COUNT_BANNER: &str = "bare: bare-count: counts and checks its memory";
const SUCCESS: &str = "Migration successful.";
const RESUMED: &str = "migration sender: Target reported an error; domain resumed.";
const A_IP: &str = "10.0.3.1";
/// Both hosts' CPU (SVM with nested paging), and host B's without SSE4.2
/// for the CPUID levelling check.
const HOST_CPU: &str = "max,-smap";
const HOST_CPU_NO_SSE42: &str = "max,-smap,-sse4.2";
const LACKS_SSE42: &str = "the guest was given a feature this host lacks: CPUID feature \"sse4_2\"";
const B_IP: &str = "10.0.3.2";
/// One machine's whole run (the transfer is slow under TCG: two emulated
/// machines share the host's cores).
const RUN_TIMEOUT: Duration = Duration::from_secs(420);

/// Two free UDP ports on loopback.
fn free_ports() -> (u16, u16) {
    let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

/// One host: `oxen-run --batch` on the wire `local`→`remote` with Dom0 at
/// `ip`, the counting guest and its config in the ramdisk, `stdin` as its
/// commands: (exit code, console).
fn host(
    local: u16,
    remote: u16,
    ip: &str,
    files: &[std::path::PathBuf],
    stdin: String,
    timeout: Duration,
    cpu: &str,
) -> (Option<i32>, String) {
    let images = build_images().unwrap_or_else(|e| panic!("cannot build the images: {e}"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_oxen-run"));
    cmd.args([
        "--batch",
        "--no-build",
        "--timeout",
        &timeout.as_secs().to_string(),
    ])
    .args(["--cpu", cpu])
    .args(["--net", &format!("dgram:{local}:{remote}")])
    .args(["--dom0-append", &format!("ip={ip}/24")]);
    for f in files {
        if f.extension().is_some_and(|e| e == "img") {
            // The guests' disk: storage both hosts reach.
            cmd.arg("--shared-disk").arg(f);
        } else {
            cmd.arg("--add").arg(f);
        }
    }
    let mut child = cmd
        .env("OXEN_IMAGES", &images.dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run oxen-run");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "---- oxen-run stdout (console) ----\n{}\n---- oxen-run stderr ----\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

fn files() -> Vec<std::path::PathBuf> {
    let images = build_images().unwrap_or_else(|e| panic!("cannot build the images: {e}"));
    let kernel = images
        .get("bare-count")
        .unwrap_or_else(|e| panic!("the hvm-guests crate's bare-count kernel: {e}"));
    let dir = std::env::temp_dir().join(format!("oxen-migrate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("count.cfg");
    std::fs::write(
        &cfg,
        format!(
            "name = \"count\"\ntype = \"hvm\"\nkernel = \"{COUNT_PATH}\"\nmemory = 32\nvcpus = 1\n"
        ),
    )
    .unwrap();
    let life = images
        .get("domu-life")
        .unwrap_or_else(|e| panic!("the PV test guest domu-life: {e}"));
    let life_cfg = dir.join("life.cfg");
    std::fs::write(
        &life_cfg,
        "name = \"life\"\nkernel = \"/boot/domu-life\"\nmemory = 32\nvcpus = 2\n\
         extra = \"mode=suspend disk=1\"\ndisk = [ \"phy:/dev/vda,xvda,w\" ]\n",
    )
    .unwrap();
    // The PV guest's disk: one image file both QEMUs open (`--shared-disk`,
    // QEMU's lock off), /dev/vda on either host, as a SAN LUN would be.
    let shared = dir.join("shared.img");
    std::fs::write(&shared, vec![0u8; 1 << 20]).unwrap();
    vec![kernel, cfg, life, life_cfg, shared]
}

/// Runs host A (`a_cmds`) and host B (`b_cmds`, `b_timeout`) at once.
fn two_hosts(
    a_cmds: &str,
    b_cmds: &str,
    b_timeout: Duration,
    b_cpu: &str,
) -> ((Option<i32>, String), (Option<i32>, String)) {
    let files = files();
    let (pa, pb) = free_ports();
    let fb = files.clone();
    let b_cmds = b_cmds.to_string();
    let b_cpu = b_cpu.to_string();
    let b = std::thread::spawn(move || host(pb, pa, B_IP, &fb, b_cmds, b_timeout, &b_cpu));
    let a = host(
        pa,
        pb,
        A_IP,
        &files,
        a_cmds.to_string(),
        RUN_TIMEOUT,
        HOST_CPU,
    );
    (a, b.join().unwrap())
}

#[test]
fn xl_migrate_moves_a_running_hvm_guest_to_another_host_where_it_counts_on() {
    // ---- The guest moves and counts on. ----
    let ((code_a, a), (code_b, b)) = two_hosts(
        &format!(
            "xl info\nxl create count.cfg\nxl create life.cfg\nsleep 3\nxl console count\r\x1d\n\
             xl console life\r\x1d\nxl migrate count {B_IP}\nxl migrate life {B_IP}\nxl list\nxl info\n"
        ),
        "xl info\nxl migrate-receive\nxl migrate-receive\nsleep 3\nxl console count\r\x1d\n\
         xl console life\r\x1d\nxl list\nxl destroy count\nxl destroy life\nxl info\n",
        RUN_TIMEOUT,
        HOST_CPU,
    );
    let both = format!("==== host A ====\n{a}\n==== host B ====\n{b}");
    assert_eq!(
        code_a,
        Some(0),
        "host A's commands should all succeed:\n{both}"
    );
    assert_eq!(
        code_b,
        Some(0),
        "host B's commands should all succeed:\n{both}"
    );
    assert!(a.contains(SUCCESS), "missing {SUCCESS:?}:\n{both}");
    let stats = a
        .lines()
        .find(|l| l.contains("; downtime "))
        .unwrap_or_else(|| panic!("no downtime line:\n{both}"));
    eprintln!("migration: {stats}");
    let before = counts(section(&a, "xl console count", 0, "xl console life"));
    let after = counts(section(&b, "xl console count", 0, "xl console life"));
    assert!(!before.is_empty(), "the guest counts at A:\n{both}");
    assert!(after.len() >= 2, "the guest counts at B:\n{both}");
    let last = *before.last().unwrap();
    assert!(
        after[0] > last,
        "at B the guest goes on from where it was (after {last}), not from 1: {after:?}\n{both}"
    );
    assert!(
        after.windows(2).all(|w| w[1] == w[0] + 1),
        "one by one at B: {after:?}"
    );
    // The PV guest (suspended for the transfer) counts on at B too.
    let life_counts = |t: &str| -> Vec<u64> {
        t.lines()
            .filter_map(|l| l.split("life: count ").nth(1))
            .filter_map(|r| r.split_whitespace().next()?.parse().ok())
            .collect()
    };
    let pv_before = life_counts(section(&a, "xl console life", 0, "xl migrate"));
    let pv_after = life_counts(section(&b, "xl console life", 0, "xl list"));
    assert!(
        !pv_before.is_empty() && pv_after.len() >= 2,
        "the PV guest counts at A and at B:\n{both}"
    );
    assert!(
        pv_after[0] > *pv_before.last().unwrap() && pv_after.windows(2).all(|w| w[1] == w[0] + 1),
        "the PV guest goes on from where it was: {pv_before:?} then {pv_after:?}\n{both}"
    );
    assert!(
        b.lines()
            .filter(|l| l.contains("life: count "))
            .all(|l| l.contains(" pages ok 256/256") || !l.contains(" pages ok ")),
        "every page of the PV guest checks at B:\n{both}"
    );
    assert!(
        a.contains(" frames suspended, "),
        "the PV guest moved live (rounds, then suspended for the last):\n{both}"
    );
    // Its disk, on storage both hosts reach: written at A, reconnected to
    // B's blkback after the move, read back intact there.
    let life_b = section(&b, "xl console life", 0, "xl list");
    assert!(
        a.contains("life: disk xvda connected, pattern written")
            && life_b.contains("life: disk xvda reconnected")
            && life_b.contains(": pattern ok")
            && !b.contains("PATTERN BAD"),
        "the PV guest's disk comes along:\n{both}"
    );
    assert!(
        section(&b, "xl console life", 0, "xl list").contains("life: vcpus working [0, 1]"),
        "both vCPUs of the PV guest work at B:\n{both}"
    );
    assert_eq!(
        a.matches("Migration successful.").count(),
        2,
        "both moved:\n{both}"
    );
    assert!(
        !b.contains(COUNT_BANNER),
        "the guest did not boot again at B:\n{both}"
    );
    for (host, text) in [("A", &a), ("B", &b)] {
        assert!(
            !text.lines().any(bad_count_line) && text.contains(COUNT_ALL_OK),
            "every page checks at {host}:\n{both}"
        );
    }
    let listed = section(&a, "xl list", 0, "xl info");
    assert!(
        !listed
            .lines()
            .any(|l| l.starts_with("count ") || l.starts_with("life ")),
        "A has nothing left of either guest:\n{listed}"
    );
    for (host, text) in [("A", &a), ("B", &b)] {
        let free = free_memory(text);
        assert_eq!(free.len(), 2, "two `xl info`s at {host}:\n{both}");
        assert_eq!(free[0], free[1], "{host} gets every frame back:\n{both}");
    }

    // ---- The target dies on the way: the guest runs on at A. ----
    let files = files();
    let (pa, pb) = free_ports();
    let fb = files.clone();
    let b = std::thread::spawn(move || target_that_dies(pb, pa, &fb));
    let (code_a, a) = host(
        pa,
        pb,
        A_IP,
        &files,
        format!(
            "xl create count.cfg\nsleep 3\nxl migrate count {B_IP}\nxl list\nsleep 2\n\
             xl console count\r\x1d\nxl destroy count\n"
        ),
        RUN_TIMEOUT,
        HOST_CPU,
    );
    let b = b.join().unwrap();
    let both = format!("==== host A ====\n{a}\n==== host B ====\n{b}");
    assert_ne!(code_a, Some(0), "the migration fails at A:\n{both}");
    assert!(
        a.contains("VERDICT: FAILURE: 1 command failed"),
        "only the migration fails at A:\n{both}"
    );
    assert!(a.contains(RESUMED), "missing {RESUMED:?}:\n{both}");
    let listed = section(&a, "xl list", 0, "sleep 2");
    assert!(
        listed.lines().any(|l| l.starts_with("count ")),
        "the guest is still at A:\n{listed}"
    );
    let shown = counts(section(&a, "xl console count", 0, "xl destroy"));
    assert!(
        shown.windows(2).all(|w| w[1] == w[0] + 1) && shown.len() >= 3,
        "the guest counted on at A through the failed migration: {shown:?}\n{both}"
    );

    // ---- CPU levelling: a host without SSE4.2 refuses a guest that was
    // given it, and takes one levelled down with cpuid=. ----
    let ((code_a, a), (code_b, b)) = two_hosts(
        &format!(
            "xl create count.cfg\nsleep 2\nxl migrate count {B_IP}\n\
             xl create count.cfg 'name=\"lev\"' 'cpuid=\"host,sse4_2=0\"'\nsleep 2\n\
             xl migrate lev {B_IP}\nxl list\nxl destroy count\n"
        ),
        "xl migrate-receive\nxl migrate-receive\nsleep 2\nxl console lev\r\x1d\nxl destroy lev\n",
        RUN_TIMEOUT,
        HOST_CPU_NO_SSE42,
    );
    let both = format!("==== host A ====\n{a}\n==== host B ====\n{b}");
    assert!(
        b.contains(LACKS_SSE42),
        "B names the feature it lacks:\n{both}"
    );
    assert_eq!(
        b.matches(LACKS_SSE42).count(),
        1,
        "one line, for the first guest only:\n{both}"
    );
    assert!(
        a.contains("VERDICT: FAILURE: 1 command failed")
            && b.contains("VERDICT: FAILURE: 1 command failed"),
        "only the unlevelled guest's migration fails, at both ends:\n{both}"
    );
    assert_ne!((code_a, code_b), (Some(0), Some(0)));
    assert!(
        a.contains(RESUMED),
        "the unlevelled guest runs on at A:\n{both}"
    );
    let listed = section(&a, "xl list", 0, "xl destroy");
    assert!(
        listed.lines().any(|l| l.starts_with("count "))
            && !listed.lines().any(|l| l.starts_with("lev ")),
        "count stays at A, lev moved:\n{listed}"
    );
    assert!(
        counts(section(&b, "xl console lev", 0, "xl destroy")).len() >= 2,
        "the levelled guest counts at B:\n{both}"
    );
}

/// Host B, which receives half of the guest and dies (its QEMU killed
/// once 16 MiB have arrived): its console.
fn target_that_dies(local: u16, remote: u16, files: &[std::path::PathBuf]) -> String {
    use oxen_tests::qemu::Echo;
    let images = build_images().unwrap_or_else(|e| panic!("cannot build the images: {e}"));
    let work = oxen_tests::images::work_dir("migrate-target-dies").unwrap();
    let mut boot =
        oxen_tests::OxenBoot::new(images.hypervisor().unwrap(), images.dom0().unwrap()).unwrap();
    boot.dom0_cmdline = format!("ip={B_IP}/24");
    boot.ramdisk = Some(oxen_tests::Payload::Bytes(
        oxen_tests::dom0_ramdisk(files).unwrap(),
    ));
    let mut q = boot.qemu("migrate-b", &work).unwrap().cpu("max,-smap");
    for a in (oxen_tests::net::NetSpec::Dgram { local, remote }).qemu_args() {
        q = q.arg(a);
    }
    let mut m = q.echo(Echo::Quiet).spawn().expect("start host B's QEMU");
    let step = |m: &mut oxen_tests::Machine, want: &str| {
        m.wait_for(want, Duration::from_secs(180))
            .unwrap_or_else(|e| panic!("host B never showed {want:?} ({e:?}):\n{}", m.log()))
    };
    step(&mut m, "dom0# ");
    m.send_line("xl migrate-receive").unwrap();
    step(&mut m, "xc: Frames restored: 4096");
    m.kill().log
}
