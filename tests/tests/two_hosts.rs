//! Two Oxen machines on one virtual Ethernet: Dom0-to-Dom0 IP and TCP,
//! what `xl migrate` streams a guest over.
//!
//! Each machine is a QEMU whose virtio NIC (the uplink of Dom0's bridge
//! `xenbr0`) sends its frames as UDP datagrams to the other over loopback
//! (`-netdev dgram`, [`NetSpec::Dgram`], on ports picked free at run
//! time); each Dom0 gets its address from `ip=` on its command line and
//! is driven through its shell. Nothing relies on timing alone: host A
//! only pings and connects once host B printed that it listens.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use oxen_tests::images::{build_images, work_dir, Images};
use oxen_tests::net::{free_udp_ports, NetSpec};
use oxen_tests::qemu::Machine;
use oxen_tests::{dom0_ramdisk, Exit, OxenBoot, Payload, RunResult};

/// Dom0's prompt.
const PROMPT: &str = "dom0# ";
/// Booting to the prompt (two TCG machines at once on a busy host).
const BOOT: Duration = Duration::from_secs(90);
/// One quick command.
const COMMAND: Duration = Duration::from_secs(30);
/// The 64 MiB transfer (it takes about 15 s here).
const TRANSFER: Duration = Duration::from_secs(180);
/// The CRC-32 of the first 64 MiB of `tcp-send`'s pattern
/// (`dom0_tools::ipconf::pattern`): both ends must print it.
const CRC_64M: &str = "crc32 b208f5cf";

/// Tests that boot two machines take both of the process's QEMU slots;
/// one pair at a time gets them (no two pairs each holding one).
static PAIRS: Mutex<()> = Mutex::new(());

fn images() -> &'static Images {
    match build_images() {
        Ok(i) => i,
        Err(e) => panic!("cannot run boot tests: {e}"),
    }
}

/// A machine driven line by line through Dom0's shell.
struct Host {
    m: Machine,
}

impl Host {
    /// Boots Oxen with `dom0_cmdline` and `net` as its NIC (none if None).
    fn boot(name: &str, dom0_cmdline: &str, net: Option<&NetSpec>) -> Host {
        Host::boot_with(name, dom0_cmdline, net, &[])
    }

    /// The same with `adds` in Dom0's ramdisk (as `oxen-run --add`).
    fn boot_with(name: &str, dom0_cmdline: &str, net: Option<&NetSpec>, adds: &[PathBuf]) -> Host {
        let i = images();
        let mut boot = OxenBoot::new(
            i.hypervisor().unwrap_or_else(|e| panic!("{e}")),
            i.dom0().unwrap_or_else(|e| panic!("{e}")),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        boot.dom0_cmdline = dom0_cmdline.into();
        boot.ramdisk = Some(Payload::Bytes(
            dom0_ramdisk(adds).unwrap_or_else(|e| panic!("{e}")),
        ));
        let work = work_dir(name).unwrap();
        let mut q = boot
            .qemu(name, &work)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        if let Some(n) = net {
            for a in n.qemu_args() {
                q = q.arg(a);
            }
        }
        let m = q.spawn().unwrap_or_else(|e| panic!("{name}: {e}"));
        Host { m }
    }

    /// Waits for `pattern`; on failure shows this console and `other`'s.
    fn wait(&mut self, pattern: &str, timeout: Duration, other: Option<&Host>) -> String {
        match self.m.wait_for(pattern, timeout) {
            Ok(f) => f.line,
            Err(e) => {
                let theirs = other.map_or(String::new(), |o| {
                    format!("\n---- {} console ----\n{}", o.m.name, o.m.log())
                });
                panic!(
                    "{}: {e}\n---- {} console ----\n{}{theirs}",
                    self.m.name,
                    self.m.name,
                    self.m.log()
                )
            }
        }
    }

    fn prompt(&mut self, timeout: Duration, other: Option<&Host>) {
        self.wait(PROMPT, timeout, other);
    }

    /// Types `cmd` (at a prompt) and waits for the next prompt.
    fn run(&mut self, cmd: &str, timeout: Duration, other: Option<&Host>) {
        self.type_line(cmd);
        self.prompt(timeout, other);
    }

    fn type_line(&mut self, cmd: &str) {
        self.m
            .send_line(cmd)
            .unwrap_or_else(|e| panic!("{}: typing {cmd:?}: {e}", self.m.name));
    }

    /// `poweroff` (at a prompt): the finished run.
    fn poweroff(mut self) -> RunResult {
        self.type_line("poweroff");
        let r = self.m.wait_exit(COMMAND);
        r.assert_exit(Exit::POWEROFF);
        r
    }
}

/// The figure after `what` in the line holding it: `... (5.43 MB/s)`.
fn mb_s(line: &str) -> &str {
    line.rsplit_once('(')
        .and_then(|(_, r)| r.split_once(')'))
        .map_or("?", |(v, _)| v)
}

#[test]
fn two_dom0s_ping_each_other_and_stream_64_mib_over_tcp() {
    let (pa, pb) = free_udp_ports();
    let (mut a, mut b) = {
        let _pair = PAIRS.lock().unwrap_or_else(|e| e.into_inner());
        let b = Host::boot(
            "two-hosts-b",
            "ip=10.0.3.2/24",
            Some(&NetSpec::Dgram {
                local: pb,
                remote: pa,
            }),
        );
        let a = Host::boot(
            "two-hosts-a",
            "ip=10.0.3.1/24",
            Some(&NetSpec::Dgram {
                local: pa,
                remote: pb,
            }),
        );
        (a, b)
    };
    b.prompt(BOOT, Some(&a));
    a.prompt(BOOT, Some(&b));
    b.run("ip addr", COMMAND, Some(&a));
    b.type_line("tcp-recv 8002");
    b.wait("tcp-recv: listening on port 8002", COMMAND, Some(&a));
    a.run("ip addr", COMMAND, Some(&b));
    a.run("ping 10.0.3.2 3", COMMAND, Some(&b));
    let t = std::time::Instant::now();
    a.run("tcp-send 10.0.3.2:8002 64M", TRANSFER, Some(&b));
    // Timed here too: a TCG guest's clock (its TSC calibration) can be
    // off on a loaded host.
    let host_secs = t.elapsed().as_secs_f64();
    b.prompt(COMMAND, Some(&a));
    let ra = a.poweroff();
    let rb = b.poweroff();
    for (r, addr, mac) in [
        (
            &ra,
            "10.0.3.1",
            NetSpec::Dgram {
                local: pa,
                remote: pb,
            }
            .mac(),
        ),
        (
            &rb,
            "10.0.3.2",
            NetSpec::Dgram {
                local: pb,
                remote: pa,
            }
            .mac(),
        ),
    ] {
        r.assert_line(&format!("Dom0: xenbr0: {addr}/24, MAC {mac}"));
        r.assert_line(&format!(
            "inet {addr}/24 brd 10.0.3.255 scope global xenbr0"
        ));
        r.assert_line(&format!("link/ether {mac} brd ff:ff:ff:ff:ff:ff"));
        r.assert_verdict_success();
    }
    ra.assert_lines_in_order(&[
        "PING 10.0.3.2 (10.0.3.2) 56(84) bytes of data.",
        "64 bytes from 10.0.3.2: icmp_seq=1 time=",
        "64 bytes from 10.0.3.2: icmp_seq=2 time=",
        "64 bytes from 10.0.3.2: icmp_seq=3 time=",
        "--- 10.0.3.2 ping statistics ---",
        "3 packets transmitted, 3 received, 0% packet loss",
        "rtt min/avg/max/mdev = ",
        "tcp-send: connected to 10.0.3.2:8002",
    ]);
    let sent = ra.assert_line("tcp-send: sent 67108864 bytes in ");
    rb.assert_line("tcp-recv: connection from 10.0.3.1:");
    let got = rb.assert_line("tcp-recv: received 67108864 bytes in ");
    for line in [sent, got] {
        assert!(
            line.ends_with(CRC_64M),
            "{line:?} should end with {CRC_64M:?}:\n{}\n{}",
            ra.log,
            rb.log
        );
    }
    println!(
        "Dom0-to-Dom0 TCP, 64 MiB: {:.2} MB/s by the host's clock ({host_secs:.1} s for \
         tcp-send, connect and close included); by the Dom0s' clocks: sender {}, receiver {}",
        f64::from(64u32 << 20) / host_secs / 1e6,
        mb_s(sent),
        mb_s(got),
    );
}

#[test]
fn tcp_to_a_closed_port_is_refused_and_to_a_missing_host_times_out() {
    let (pa, pb) = free_udp_ports();
    let (mut a, mut b) = {
        let _pair = PAIRS.lock().unwrap_or_else(|e| e.into_inner());
        let b = Host::boot(
            "two-hosts-neg-b",
            "ip=10.0.3.2/24",
            Some(&NetSpec::Dgram {
                local: pb,
                remote: pa,
            }),
        );
        let a = Host::boot(
            "two-hosts-neg-a",
            "ip=10.0.3.1/24",
            Some(&NetSpec::Dgram {
                local: pa,
                remote: pb,
            }),
        );
        (a, b)
    };
    b.prompt(BOOT, Some(&a));
    a.prompt(BOOT, Some(&b));
    // B is up (its prompt): its stack answers for 10.0.3.2 from now on.
    a.run("tcp-send 10.0.3.2:8003 1M", COMMAND, Some(&b));
    let t = std::time::Instant::now();
    // Nobody has 10.0.3.99: ARP goes unanswered, the handshake never
    // starts; tcp-send gives up after its 10 s connect timeout.
    a.run("tcp-send 10.0.3.99:8002 1M", TRANSFER, Some(&b));
    let waited = t.elapsed();
    a.run("ping 10.0.3.99 1", COMMAND, Some(&b));
    // The stack still works after all that.
    a.run("ping 10.0.3.2 1", COMMAND, Some(&b));
    let ra = a.poweroff();
    let rb = b.poweroff();
    ra.assert_lines_in_order(&[
        "tcp-send: 10.0.3.2:8003: connection refused",
        "tcp-send: 10.0.3.99:8002: connection timed out",
        "1 packets transmitted, 0 received, 100% packet loss",
        "1 packets transmitted, 1 received, 0% packet loss",
        "VERDICT: FAILURE: 3 commands failed",
    ]);
    ra.assert_no_line("tcp-send: connected");
    assert!(
        // (10 s by Dom0's clock, which under TCG on a loaded host can run
        // well behind the host's.)
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(90),
        "the connect to a missing host should give up after about 10 s, took {waited:?}:\n{}",
        ra.log
    );
    rb.assert_verdict_success();
}

#[test]
fn a_malformed_ip_option_is_reported_and_dom0_keeps_running() {
    let mut h = Host::boot(
        "two-hosts-bad-ip",
        "ip=10.0.3.1/33",
        Some(&NetSpec::User(String::new())),
    );
    h.prompt(BOOT, None);
    h.run("ip addr", COMMAND, None);
    h.run("tcp-send 10.0.3.2:8002 1M", COMMAND, None);
    h.run("echo still here", COMMAND, None);
    let r = h.poweroff();
    r.assert_lines_in_order(&[
        "Dom0: ip=10.0.3.1/33: prefix \"33\" is not a number from 1 to 32: Dom0 has no IP address",
        "ip: Dom0 has no IP address (boot it with ip=ADDR/PREFIX)",
        "tcp-send: Dom0 has no IP address (boot it with ip=ADDR/PREFIX)",
        "still here",
        "VERDICT: FAILURE: 2 commands failed",
    ]);
}

#[test]
fn dom0_leases_an_address_by_dhcp_and_reaches_a_guest_on_xenbr0_and_the_gateway() {
    let guest = images().get("domu-net").unwrap_or_else(|e| panic!("{e}"));
    let dir = work_dir("two-hosts-dhcp-files").unwrap();
    let cfg = dir.join("web.cfg");
    std::fs::write(
        &cfg,
        "name = \"web\"\nkernel = \"/boot/domu-net\"\nmemory = 32\n\
         vif = [ \"bridge=xenbr0\" ]\nextra = \"ip=10.0.2.20/24 gw=10.0.2.2 http=80\"\n",
    )
    .unwrap();
    let mut h = Host::boot_with(
        "two-hosts-dhcp",
        "ip=dhcp",
        Some(&NetSpec::User(String::new())),
        &[guest, cfg],
    );
    h.prompt(BOOT, None);
    h.run("xl create web.cfg", COMMAND, None);
    // The guest says on its console when it serves: from then on it
    // answers pings. Look (attach, detach with Ctrl-]) until it has.
    let mut up = false;
    for _ in 0..60 {
        h.type_line("xl console web");
        std::thread::sleep(Duration::from_millis(300));
        h.m.send_raw(b"\x1d").unwrap();
        h.prompt(COMMAND, None);
        if h.m.log().contains("domu-net: serving http on port 80") {
            up = true;
            break;
        }
        h.run("sleep 1", COMMAND, None);
    }
    assert!(up, "the guest never served:\n{}", h.m.log());
    h.run("ip addr", COMMAND, None);
    h.run("ping 10.0.2.20 3", COMMAND, None);
    h.run("ping 10.0.2.2 2", COMMAND, None);
    h.run("xl destroy web", COMMAND, None);
    let r = h.poweroff();
    r.assert_lines_in_order(&[
        "Dom0: xenbr0: dhcp, MAC 52:54:00:12:34:56",
        "Dom0: xenbr0: DHCP: 10.0.2.15/24 via 10.0.2.2",
        "inet 10.0.2.15/24 brd 10.0.2.255 scope global dynamic xenbr0",
        "3 packets transmitted, 3 received, 0% packet loss",
        "2 packets transmitted, 2 received, 0% packet loss",
    ]);
    r.assert_no_line("lease lost");
    r.assert_verdict_success();
}
