//! The xl.cfg parser on a corpus of real-world-style configs
//! (`xlcfg-corpus/good`, each checked value by value), broken configs with
//! the exact error each must give (`xlcfg-corpus/broken/NAME.cfg` and
//! `NAME.err`), `xl create` overrides, and inputs that must never panic.

use std::fs;
use std::path::{Path, PathBuf};

use dom0_tools::xlcfg::{
    load, parse_config, Action, CpuSet, DiskFormat, DiskSpec, DomainConfig, DomainType, Error,
    VcpuAffinity, VifSpec, Warning,
};

fn corpus(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/xlcfg-corpus")
        .join(sub)
}

fn cfg_files(sub: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(corpus(sub))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cfg"))
        .collect();
    v.sort();
    v
}

fn good(name: &str) -> (DomainConfig, Vec<String>) {
    let text = fs::read_to_string(corpus("good").join(name)).unwrap();
    match load(name, &text, &[]) {
        Ok((d, w)) => (d, w.iter().map(Warning::to_string).collect()),
        Err(e) => panic!("{name}: {e}"),
    }
}

fn only(cpus: &[u32]) -> CpuSet {
    CpuSet::Only(cpus.iter().copied().collect())
}

/// Each disk as `target,format,vdev,access[,cdrom]` and its device number.
fn disks(d: &[DiskSpec]) -> Vec<(String, u32)> {
    d.iter()
        .map(|d| {
            let mut s = format!(
                "{},{},{},{}",
                d.target.as_deref().unwrap_or(""),
                d.format.as_str(),
                d.vdev,
                if d.readwrite { "rw" } else { "ro" }
            );
            if d.cdrom {
                s.push_str(",cdrom");
            }
            (s, d.devid)
        })
        .collect()
}

fn disk(spec: &str, devid: u32) -> (String, u32) {
    (spec.to_string(), devid)
}

fn vif(devid: u32, mac: Option<[u8; 6]>, bridge: Option<&str>) -> VifSpec {
    VifSpec {
        devid: Some(devid),
        mac,
        bridge: bridge.map(str::to_string),
        ..VifSpec::default()
    }
}

#[test]
fn every_good_config_loads() {
    let files = cfg_files("good");
    assert!(files.len() >= 15, "corpus too small: {}", files.len());
    for f in files {
        let name = f.file_name().unwrap().to_str().unwrap();
        good(name);
    }
}

#[test]
fn debian_xen_tools() {
    let (d, w) = good("debian-xen-tools.cfg");
    assert_eq!(d.name, "web01");
    assert_eq!(d.domain_type, DomainType::Pv);
    assert_eq!(d.kernel.as_deref(), Some("/boot/vmlinuz-6.1.0-13-amd64"));
    assert_eq!(
        d.ramdisk.as_deref(),
        Some("/boot/initrd.img-6.1.0-13-amd64")
    );
    assert_eq!(
        d.cmdline.as_deref(),
        Some("root=/dev/xvda2 ro elevator=noop")
    );
    assert_eq!((d.memory_mib, d.maxmem_mib), (1024, 1024));
    assert_eq!((d.vcpus, d.max_vcpus), (2, 2));
    assert_eq!(
        disks(&d.disk),
        [
            disk("/dev/vg0/web01-disk,raw,xvda2,rw", 51714),
            disk("/dev/vg0/web01-swap,raw,xvda1,rw", 51713)
        ]
    );
    // xl keeps the space before the comma.
    assert_eq!(
        d.vif,
        [VifSpec {
            ip: Some("192.168.1.10 ".into()),
            ..vif(
                0,
                Some([0x00, 0x16, 0x3e, 0x5a, 0x21, 0x07]),
                Some("xenbr0")
            )
        }]
    );
    assert_eq!(
        (d.on_poweroff, d.on_reboot, d.on_crash),
        (Action::Destroy, Action::Restart, Action::Restart)
    );
    assert!(w.is_empty(), "{w:?}");
}

#[test]
fn xl_examples() {
    let (d, w) = good("xlexample-pvlinux.cfg");
    assert_eq!(d.name, "example.pvlinux");
    assert_eq!(d.cmdline.as_deref(), Some("root=/dev/xvda1"));
    assert_eq!(d.ramdisk, None);
    assert_eq!(d.uuid, None);
    assert_eq!((d.memory_mib, d.maxmem_mib, d.vcpus), (128, 128, 2));
    assert_eq!(
        d.vif,
        [vif(0, None, None)],
        "an empty vif spec: all defaults"
    );
    assert_eq!(
        disks(&d.disk),
        [disk("/dev/vg/guest-volume,raw,xvda,rw", 51712)]
    );
    assert!(w.is_empty());

    let (d, w) = good("xlexample-pvhlinux.cfg");
    assert_eq!(d.domain_type, DomainType::Pvh);
    assert_eq!(
        d.cmdline.as_deref(),
        Some("root=/dev/xvda1 console=hvc0 earlyprintk=xen")
    );
    assert_eq!(d.ramdisk.as_deref(), Some("/boot/initrd.gz"));
    assert_eq!((d.memory_mib, d.vcpus, d.max_vcpus), (512, 4, 4));
    assert!(w.is_empty());

    let (d, w) = good("xlexample-hvm.cfg");
    assert_eq!(d.domain_type, DomainType::Hvm);
    assert_eq!(d.kernel, None);
    assert_eq!((d.memory_mib, d.maxmem_mib), (128, 512));
    assert_eq!(
        disks(&d.disk),
        [
            disk("/dev/vg/guest-volume,raw,xvda,rw", 51712),
            disk("/root/install.iso,raw,xvdc,ro,cdrom", 51744)
        ]
    );
    assert_eq!(
        d.vif[0].nictype,
        Some(dom0_tools::xlcfg::vif::NicType::VifIoemu)
    );
    assert_eq!(
        w,
        ["Warning: ignoring \"sdl\" (xlexample-hvm.cfg:33): not supported by Oxen"]
    );
}

#[test]
fn legacy_builder() {
    let (d, w) = good("legacy-builder-hvm.cfg");
    assert_eq!(d.domain_type, DomainType::Hvm);
    assert_eq!(d.name, "win7");
    assert_eq!((d.memory_mib, d.vcpus), (2048, 2));
    assert_eq!(d.on_crash, Action::Preserve);
    assert_eq!(
        disks(&d.disk),
        [
            disk("/dev/vg_xen/win7,raw,hda,rw", 768),
            disk("/srv/iso/win7.iso,raw,hdc,ro,cdrom", 22 << 8)
        ]
    );
    assert_eq!(
        d.vif,
        [VifSpec {
            model: Some("e1000".into()),
            ..vif(
                0,
                Some([0x00, 0x16, 0x3e, 0x11, 0x22, 0x33]),
                Some("xenbr0")
            )
        }]
    );
    let keys: Vec<&str> = w.iter().map(|s| s.split('"').nth(1).unwrap()).collect();
    assert_eq!(
        keys,
        ["acpi", "apic", "boot", "vnc", "vnclisten", "usbdevice"]
    );
    assert_eq!(
        w[2],
        "Warning: ignoring \"boot\" (legacy-builder-hvm.cfg:9): not supported by Oxen"
    );
}

#[test]
fn alpine_and_netbsd() {
    let (d, _) = good("alpine-pv.cfg");
    assert_eq!(
        d.cmdline.as_deref(),
        Some("modules=loop,squashfs console=hvc0")
    );
    assert_eq!((d.vcpus, d.max_vcpus), (1, 2));
    assert_eq!(
        disks(&d.disk),
        [disk(
            "/srv/xen/alpine/alpine-virt-3.18.4-x86_64.iso,raw,xvda,ro",
            51712
        )]
    );

    let (d, _) = good("netbsd-pv.cfg");
    assert_eq!(d.cmdline.as_deref(), Some("root=xbd0a"));
    assert_eq!(d.on_reboot, Action::SoftReset);
    // A plain number is taken as the device number.
    assert_eq!(disks(&d.disk), [disk("/srv/xen/netbsd.img,raw,0x1,rw", 1)]);
    assert_eq!(
        d.vif,
        [vif(
            0,
            Some([0x00, 0x16, 0x3e, 0, 0, 0x11]),
            Some("bridge0")
        )]
    );
}

#[test]
fn devices_in_every_syntax() {
    let (d, w) = good("devices.cfg");
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(
        disks(&d.disk),
        [
            disk("/srv/images/root,v2.qcow2,qcow2,xvda,rw", 51712),
            disk("/srv/images/data.img,raw,xvdb,rw", 51728),
            disk("/srv/iso/install.iso,raw,xvdc,ro,cdrom", 51744),
            disk(",empty,xvdd,ro,cdrom", 51760),
            disk("/srv/images/scratch.img,raw,sda3,rw", 8 << 8 | 3),
            disk("/dev/vg0/big,raw,d20p1,ro", 1 << 28 | 20 << 8 | 1),
            disk("/dev/vg0/ext,raw,xvdq,rw", 1 << 28 | 16 << 8),
        ]
    );
    assert_eq!(d.disk[3].format, DiskFormat::Empty);
    assert!(d.disk[3].removable);
    assert_eq!(d.disk[4].discard, Some(true));
    assert_eq!(d.disk[5].backend.as_deref(), Some("storage"));
    assert_eq!(d.disk[5].discard, Some(false));
    assert_eq!(d.disk[6].script.as_deref(), Some("block-dmmd"));
    assert_eq!(d.vif.len(), 4);
    assert_eq!(
        d.vif[0],
        vif(0, Some([0x00, 0x16, 0x3e, 1, 2, 3]), Some("xenbr0"))
    );
    assert_eq!(d.vif[1].bridge.as_deref(), Some("xenbr1"));
    assert_eq!(d.vif[1].vifname.as_deref(), Some("devices-1"));
    let r = d.vif[1].rate.unwrap();
    assert_eq!((r.bytes_per_interval, r.interval_usecs), (25_000, 20_000));
    assert_eq!(d.vif[2].devid, Some(5));
    assert_eq!(d.vif[2].ip.as_deref(), Some("192.0.2.7"));
    assert_eq!(d.vif[2].gatewaydev.as_deref(), Some("eth0"));
    assert_eq!(d.vif[3], vif(3, None, None));
    // Generated MACs: Xen's prefix, repeatable from a seed, distinct.
    let mut g = dom0_tools::xlcfg::MacGenerator::new(0x5eed);
    let macs: Vec<[u8; 6]> = d.vif.iter().map(|v| v.mac_or_generate(&mut g)).collect();
    assert_eq!(macs[0], [0x00, 0x16, 0x3e, 1, 2, 3]);
    for m in &macs[1..] {
        assert_eq!(m[..3], [0x00, 0x16, 0x3e]);
    }
    assert!(macs[1] != macs[2] && macs[2] != macs[3] && macs[1] != macs[3]);
}

#[test]
fn device_errors_from_overrides_and_kinds() {
    let text = "name = 'g'\nkernel = '/k'\n";
    let e = load("g.cfg", text, &["disk=['/a,raw,xvda,w','/b,raw,hdz,w']"]).unwrap_err();
    let Error::Device(d) = &e else {
        panic!("{e:?}");
    };
    assert_eq!((d.key, d.index, d.line), ("disk", 1, 4));
    assert_eq!(
        e.to_string(),
        "g.cfg:4: Invalid or unsupported virtual disk identifier hdz"
    );
    let (d, _) = load("g.cfg", text, &["vif=['bridge=br9']"]).unwrap();
    assert_eq!(d.vif[0].bridge.as_deref(), Some("br9"));
}

#[test]
fn semicolons() {
    let (d, w) = good("semicolons.cfg");
    assert_eq!(d.name, "tight");
    assert_eq!((d.memory_mib, d.maxmem_mib, d.vcpus), (64, 96, 1));
    assert_eq!(
        (d.on_poweroff, d.on_reboot, d.on_crash),
        (Action::Destroy, Action::Destroy, Action::CoredumpDestroy)
    );
    assert!(w.is_empty());
}

#[test]
fn plus_equals() {
    let (d, _) = good("plus-equals.cfg");
    assert_eq!(
        d.cmdline.as_deref(),
        Some("console=hvc0 loglevel=7 init=/sbin/init")
    );
    assert_eq!(
        disks(&d.disk),
        [
            disk("/dev/vg0/layered-root,raw,xvda,rw", 51712),
            disk("/dev/vg0/layered-data,raw,xvdb,rw", 51728),
            disk("/srv/iso/tools.iso,raw,xvdc,ro,cdrom", 51744)
        ]
    );
    // += on an unset key just sets it.
    assert_eq!(d.vif, [vif(0, None, Some("xenbr0"))]);
}

#[test]
fn quoting() {
    let (d, _) = good("quoting.cfg");
    assert_eq!(d.name, "it's-quoted");
    assert_eq!(d.kernel.as_deref(), Some("/boot/vmlinuz \"with\" spaces"));
    assert_eq!(
        d.cmdline.as_deref(),
        Some("console=hvc0 tab\there backslash\\ end")
    );
    assert_eq!(
        d.vif,
        [
            vif(0, Some([0x00, 0x16, 0x3e, 0, 0, 2]), Some("xenbr0")),
            // The quotes are part of the value, as in xl.
            VifSpec {
                script: Some("\"vif-bridge\"".into()),
                ..vif(1, None, None)
            }
        ]
    );
}

#[test]
fn odd_whitespace() {
    let (d, w) = good("odd-whitespace.cfg");
    assert_eq!(d.name, "ws");
    assert_eq!((d.memory_mib, d.vcpus, d.max_vcpus), (512, 4, 8));
    assert_eq!(
        disks(&d.disk),
        [
            disk("/dev/vg0/ws-root,raw,xvda,rw", 51712),
            disk("/dev/vg0/ws-swap,raw,xvdb,rw", 51728)
        ]
    );
    assert!(d.vif.is_empty());
    assert!(w.is_empty());
    let text = fs::read_to_string(corpus("good/odd-whitespace.cfg")).unwrap();
    let cfg = parse_config("odd-whitespace.cfg", &text).unwrap();
    assert_eq!(cfg.line_of("name"), Some(5));
    assert_eq!(cfg.line_of("maxvcpus"), Some(8));
    assert_eq!(cfg.line_of("disk"), Some(9));
    assert_eq!(cfg.line_of("vif"), Some(17));
}

#[test]
fn numbers_as_strtol() {
    let (d, _) = good("numbers.cfg");
    assert_eq!((d.memory_mib, d.maxmem_mib, d.vcpus), (512, 512, 2));
    assert_eq!((d.cpu_weight, d.cap), (Some(512), Some(0)));
}

#[test]
fn cpu_affinity() {
    let (d, _) = good("cpus-affinity.cfg");
    let all_but_1 = match &d.cpus {
        Some(VcpuAffinity::PerVcpu(v)) => {
            assert_eq!(v.len(), 3, "truncated to maxvcpus");
            assert_eq!(v[0], only(&[0]));
            assert_eq!(v[1], only(&[2, 3]));
            v[2].clone()
        }
        other => panic!("{other:?}"),
    };
    assert!(all_but_1.contains(0) && !all_but_1.contains(1) && all_but_1.contains(63));

    let (d, _) = good("cpus-string.cfg");
    assert_eq!(d.cpus, Some(VcpuAffinity::All(only(&[0, 1, 2, 3, 6, 7]))));
    assert_eq!((d.cpu_weight, d.cap), (Some(256), Some(200)));
}

#[test]
fn cmdline_wins() {
    let (d, w) = good("cmdline-wins.cfg");
    assert_eq!(
        d.cmdline.as_deref(),
        Some("root=/dev/xvdb1 ro console=hvc0")
    );
    assert_eq!(
        w,
        ["Warning: ignoring root= and extra= in favour of cmdline= (cmdline-wins.cfg:5)"]
    );
}

#[test]
fn typos_are_warned_about() {
    let (d, w) = good("typo-keys.cfg");
    assert_eq!((d.memory_mib, d.vcpus), (32, 1), "typos change nothing");
    assert_eq!(
        w,
        [
            "Warning: ignoring unknown key \"memroy\" (typo-keys.cfg:3)",
            "Warning: ignoring unknown key \"vcpu\" (typo-keys.cfg:4)",
            "Warning: ignoring \"on_watchdog\" (typo-keys.cfg:5): not supported by Oxen",
            "Warning: ignoring \"vfb\" (typo-keys.cfg:6): not supported by Oxen",
        ]
    );
}

#[test]
fn unikernel() {
    let (d, w) = good("unikernel.cfg");
    assert_eq!(d.domain_type, DomainType::Pvh);
    assert_eq!((d.memory_mib, d.maxmem_mib), (32, 32));
    assert_eq!(
        (d.on_poweroff, d.on_reboot, d.on_crash),
        (Action::Preserve, Action::RenameRestart, Action::Preserve)
    );
    assert_eq!(
        d.uuid,
        Some([
            0x4b, 0x6e, 0x2b, 0x5a, 0x3f, 0x1c, 0x4a, 0x44, 0x9d, 0x3e, 0x0c, 0x5a, 0x8f, 0x2e,
            0x1b, 0x77
        ])
    );
    assert!(w.is_empty());
}

#[test]
fn nested_lists() {
    let (d, w) = good("nested-lists.cfg");
    assert!(d.disk.is_empty());
    assert_eq!(
        w,
        ["Warning: ignoring \"channel\" (nested-lists.cfg:4): not supported by Oxen"]
    );
}

#[test]
fn every_broken_config_gives_its_exact_error() {
    let files = cfg_files("broken");
    assert!(files.len() >= 15, "too few broken configs: {}", files.len());
    let mut failures = Vec::new();
    for f in files {
        let name = f.file_name().unwrap().to_str().unwrap().to_owned();
        let text = fs::read_to_string(&f).unwrap();
        let want = fs::read_to_string(f.with_extension("err"))
            .unwrap_or_else(|_| panic!("{name} has no .err file"));
        let want = want.strip_suffix('\n').unwrap_or(&want);
        match load(&name, &text, &[]) {
            Ok(_) => failures.push(format!("{name}: loaded, expected:\n{want}")),
            Err(e) => {
                let got = e.to_string();
                if got != want {
                    failures.push(format!("{name}:\n got: {got}\nwant: {want}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn dos_line_endings_are_lexical_errors() {
    let e = load("dos.cfg", "name = \"dos\"\r\nkernel = \"/k\"\r\n", &[]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "dos.cfg:1: config parsing error near `\r': lexical error\n\
         dos.cfg:2: config parsing error near `\r': lexical error"
    );
}

#[test]
fn parse_errors_carry_their_parts() {
    let Err(Error::Parse(e)) = load("x.cfg", "name = 'a'\nmemory 1\n", &[]) else {
        panic!("expected a parse error");
    };
    assert_eq!(e.errors.len(), 1);
    let p = &e.errors[0];
    assert_eq!(p.file, "x.cfg");
    assert_eq!(p.line, 2);
    assert_eq!(p.near.as_deref(), Some("1"));
    assert!(!p.newline);
    assert_eq!(
        p.message,
        "syntax error, unexpected NUMBER, expecting += or '='"
    );
}

#[test]
fn command_line_overrides() {
    let text = fs::read_to_string(corpus("good/xlexample-pvlinux.cfg")).unwrap();
    let (d, _) = load(
        "pv.cfg",
        &text,
        &[
            "memory=512",
            "name=\"renamed\"",
            "extra += ' quiet'",
            "vif=[]",
        ],
    )
    .unwrap();
    assert_eq!(d.memory_mib, 512);
    assert_eq!(d.name, "renamed");
    assert_eq!(d.cmdline.as_deref(), Some("root=/dev/xvda1 quiet"));
    assert!(d.vif.is_empty());
    // Errors in overrides are numbered as xl numbers them: after the file's
    // 44 lines and the blank line xl puts between file and overrides.
    let e = load("pv.cfg", &text, &["vcpus=2", "memory=1G"]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "pv.cfg:47: config parsing error near `G': lexical error"
    );
    let e = load("pv.cfg", &text, &["on_crash=explode"]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "pv.cfg:46: config parsing error near `explode': syntax error, unexpected IDENT, expecting STRING or NUMBER or '['"
    );
    let e = load("pv.cfg", &text, &["on_crash='explode'"]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "pv.cfg:46: Unknown on_crash action \"explode\" specified"
    );
}

/// xorshift64*, for repeatable pseudo-random inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn must_not_panic(text: &str) {
    let _ = load("fuzz.cfg", text, &[]);
    let _ = load("fuzz.cfg", "name='a'\nkernel='k'\n", &[text]);
}

#[test]
fn never_panics_on_truncations_and_mutations() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut files = cfg_files("good");
    files.extend(cfg_files("broken"));
    let alphabet = b"=+[],;'\"#\\\n\r\t x0123456789abcdefxyzM_.()-:^@\x00";
    for f in files {
        let bytes = fs::read(&f).unwrap();
        for cut in 0..=bytes.len() {
            must_not_panic(&String::from_utf8_lossy(&bytes[..cut]));
        }
        for _ in 0..200 {
            let mut b = bytes.clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(b.len() + 1);
                match rng.below(3) {
                    0 if at < b.len() => b[at] = alphabet[rng.below(alphabet.len())],
                    1 if at < b.len() => {
                        b.remove(at);
                    }
                    _ => b.insert(at, alphabet[rng.below(alphabet.len())]),
                }
            }
            must_not_panic(&String::from_utf8_lossy(&b));
        }
    }
}

#[test]
fn never_panics_on_random_bytes() {
    let mut rng = Rng(42);
    let alphabet = b"=+[],;'\"#\\\n\r\t x0123456789abcdefxyzM_.()-:^@";
    for i in 0..3000 {
        let len = rng.below(64);
        let b: Vec<u8> = if i % 2 == 0 {
            (0..len).map(|_| rng.next() as u8).collect()
        } else {
            (0..len)
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect()
        };
        must_not_panic(&String::from_utf8_lossy(&b));
    }
    // Deep nesting and long inputs.
    must_not_panic(&format!("x = {}1{}\n", "[".repeat(5000), "]".repeat(5000)));
    must_not_panic(&"x = [1,\n".repeat(2000));
    must_not_panic(&format!("name = '{}'\n", "a".repeat(100_000)));
    must_not_panic("cpus = '0-4294967295'\nname='a'\nkernel='k'\n");
    must_not_panic("memory = 9223372036854775807\nname='a'\nkernel='k'\n");
}
