//! Test Dom0: the hostile HVM guest of issue 8. Through the toolstack
//! ([`Toolstack`], what `xl` drives) it starts a canary (`hvm-guests`'
//! bare-count as an HVM guest with `busy=0`: it counts every 200 ms and
//! checks a memory pattern that never changes, so its checksum must
//! stay the same), then, one after the other, fuzzing guests (bare-fuzz,
//! HVM, one vCPU) with consecutive seeds. Each throws random port I/O,
//! MMIO, MSR accesses, CPUID leaves, malformed instruction streams aimed
//! at MMIO and raw hypercalls at the hypervisor and Dom0's device model,
//! then powers off; its `fuzz:` lines are relayed to this console. It
//! checks:
//!
//! - each fuzzer ran to its end and powered itself off (a crash, a reset
//!   or a hang is named), and its per-class counts add up to its total;
//! - the canary kept counting while each fuzzer ran, every one of its
//!   pages checked out and its memory checksum never changed;
//! - the hypervisor crashed no domain (its console says so if it did);
//! - once everything is destroyed the hypervisor's free memory is back
//!   exactly, and Dom0 is healthy: a fresh guest is created, comes up
//!   and is destroyed, and no domain is left but Dom0.
//!
//! Dom0's command line sets the run: `seed=S` (the first seed, default
//! 1), `runs=R` (fuzzers, seeds S, S+1, ...; default 3), `count=N`
//! (operations each; default `DEFAULT_COUNT`), `trace=N` (the fuzzers
//! say each operation from number N on, on the hypervisor's console; what
//! they said last on their own is printed when one does not finish; a
//! hung fuzzer ends the runs). For a long run with other seeds:
//!
//! ```text
//! scripts/run --batch --dom0 dom0-hvmfuzz \
//!     --add target/images/x86_64-unknown-none/release/bare-fuzz \
//!     --add target/images/x86_64-unknown-none/release/bare-count \
//!     --dom0-append "seed=1000 runs=5 count=2000000" --timeout 36000 </dev/null
//! ```

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    extern crate alloc;

    use alloc::format;
    use alloc::string::String;
    use alloc::vec::Vec;

    use dom0_tools::bench::has_line;
    use dom0_tools::pvtest::{Checks, ConsoleOut};
    use dom0_tools::ramdisk::Archive;
    use dom0_tools::toolstack::Toolstack;
    use dom0_tools::xc;
    use dom0_tools::xl::backend::CreateRequest;
    use dom0_tools::xl::XlBackend;
    use pv_guest_lib::{println, time, StartInfo};

    pv_guest_lib::entry!(main);

    /// Operations per fuzzer by default (the boot test's).
    pub const DEFAULT_COUNT: u64 = 20_000;
    const DEFAULT_RUNS: u64 = 3;
    const DEFAULT_SEED: u64 = 1;
    const HEAP_PAGES: u64 = 4096;
    const HELLO_CFG: &str = "/etc/xen/hello.cfg";
    const FUZZ_KERNEL: &str = "/boot/bare-fuzz";
    const CANARY_KERNEL: &str = "/boot/bare-count";
    /// How long a guest may take to say its first line.
    const UP_NS: u64 = 60_000_000_000;
    /// A fuzzer's time: this much, plus [`PER_OP_NS`] an operation.
    /// (About 0.4 ms an operation on an idle machine: several times that
    /// is a hang, which the check then names before the harness's
    /// timeout.)
    const RUN_BASE_NS: u64 = 20_000_000_000;
    const PER_OP_NS: u64 = 3_000_000;
    /// How often a line says a fuzzer is still running.
    const NOTE_NS: u64 = 10_000_000_000;
    /// How long the back ends run idle before free memory is compared.
    const SETTLE_NS: u64 = 300_000_000;
    /// The fuzzer's report lines (relayed as they are).
    const FUZZ_LINES: [&str; 3] = ["fuzz: seed ", "fuzz: class ", "fuzz: total "];
    /// `SHUTDOWN_poweroff`.
    const POWEROFF: u32 = 0;

    /// `key=N` from Dom0's command line.
    fn arg(cmdline: &str, key: &str) -> Option<u64> {
        cmdline
            .split_ascii_whitespace()
            .filter_map(|w| w.strip_prefix(key)?.strip_prefix('='))
            .filter_map(|v| v.parse().ok())
            .next_back()
    }

    /// The canary's count lines, read from its console backlog as they
    /// come: `bare-count: count N pages ok K/P sum S`.
    #[derive(Default)]
    struct Canary {
        seen: u64,
        partial: Vec<u8>,
        first_sum: Option<String>,
        first_count: Option<u64>,
        last_count: Option<u64>,
        lines: u64,
        bad: Option<String>,
    }

    impl Canary {
        fn update(&mut self, ts: &Toolstack, id: u16) {
            let Some(b) = ts.console_backlog(id) else {
                return;
            };
            let new = b.total().saturating_sub(self.seen);
            if new == 0 {
                return;
            }
            self.seen = b.total();
            let (x, y) = b.as_slices();
            let len = (x.len() + y.len()) as u64;
            let skip = len.saturating_sub(new) as usize;
            let bytes: Vec<u8> = x.iter().chain(y.iter()).skip(skip).copied().collect();
            for byte in bytes {
                if byte == b'\n' {
                    let line = String::from_utf8_lossy(&self.partial).into_owned();
                    self.partial.clear();
                    self.line(line.trim());
                } else if self.partial.len() < 512 {
                    self.partial.push(byte);
                }
            }
        }

        fn line(&mut self, line: &str) {
            let Some(rest) = line.split("bare-count: count ").nth(1) else {
                return;
            };
            if line.contains("FAILED") {
                self.bad.get_or_insert_with(|| String::from(line));
                return;
            }
            let w: Vec<&str> = rest.split_whitespace().collect();
            let (Some(n), Some(ok), Some(sum)) = (
                w.first().and_then(|n| n.parse::<u64>().ok()),
                w.get(3),
                w.get(5),
            ) else {
                return;
            };
            self.lines += 1;
            let full = ok
                .split_once('/')
                .is_some_and(|(k, p)| k == p && !k.is_empty());
            let same = *self.first_sum.get_or_insert_with(|| String::from(*sum)) == *sum;
            if !full || !same {
                self.bad.get_or_insert_with(|| String::from(line));
            }
            self.first_count.get_or_insert(n);
            self.last_count = Some(n);
        }
    }

    /// New text on the hypervisor's console since `index`.
    fn hv_console(index: &mut u32) -> String {
        let mut text = String::new();
        let mut buf = alloc::vec![0u8; 16384];
        for _ in 0..64 {
            match xc::read_console(index, &mut buf) {
                Ok(n) if n > 0 => text.push_str(&String::from_utf8_lossy(&buf[..n])),
                _ => break,
            }
        }
        text
    }

    fn domains() -> usize {
        let mut n = 0;
        let mut next = 0u16;
        let mut out = [xc::DomainInfo::default(); 8];
        while let Ok(got) = xc::domain_list(next, &mut out) {
            n += got;
            match out[..got].last() {
                Some(d) if got == out.len() => next = d.domid.saturating_add(1),
                _ => break,
            }
        }
        n
    }

    fn free_pages() -> u64 {
        xc::physinfo().map_or(0, |p| p.free_pages)
    }

    fn create(ts: &mut Toolstack, extra: &[String]) -> Result<u16, String> {
        let req = CreateRequest {
            config_file: Some(String::from(HELLO_CFG)),
            extra_config: extra.to_vec(),
            quiet: true,
            ..CreateRequest::default()
        };
        match ts.create(&req, &mut ConsoleOut) {
            Ok(Some(id)) => u16::try_from(id).map_err(|_| format!("domid {id}")),
            r => Err(format!("{r:?}")),
        }
    }

    fn hvm(name: &str, kernel: &str, extra: &str, preserve: bool) -> Vec<String> {
        let mut v = alloc::vec![
            format!("name=\"{name}\""),
            String::from("type=\"hvm\""),
            format!("kernel=\"{kernel}\""),
            String::from("memory=32"),
            String::from("vcpus=1"),
            format!("extra=\"{extra}\""),
        ];
        if preserve {
            v.push(String::from("on_poweroff=\"preserve\""));
            v.push(String::from("on_crash=\"preserve\""));
            v.push(String::from("on_reboot=\"preserve\""));
        }
        v
    }

    /// The lines of guest `id`'s console backlog.
    fn backlog_lines(ts: &Toolstack, id: u16) -> Vec<String> {
        let Some(b) = ts.console_backlog(id) else {
            return Vec::new();
        };
        let (x, y) = b.as_slices();
        let mut all = Vec::with_capacity(x.len() + y.len());
        all.extend_from_slice(x);
        all.extend_from_slice(y);
        // A line may start with what the fuzzer wrote to COM1 itself.
        String::from_utf8_lossy(&all)
            .lines()
            .map(|l| {
                let at = FUZZ_LINES.iter().filter_map(|p| l.find(p)).min();
                String::from(at.map_or(l, |i| &l[i..]).trim())
            })
            .collect()
    }

    /// What a `fuzz: class` / `fuzz: total` line says its count is.
    fn calls_in(line: &str, key: &str) -> Option<u64> {
        line.split(key)
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    fn main(si: &'static StartInfo) -> ! {
        let cmdline = si.cmd_line();
        let seed0 = arg(cmdline, "seed").unwrap_or(DEFAULT_SEED);
        let runs = arg(cmdline, "runs").unwrap_or(DEFAULT_RUNS);
        let count = arg(cmdline, "count").unwrap_or(DEFAULT_COUNT);
        let trace = arg(cmdline, "trace");
        println!(
            "dom0-hvmfuzz: {runs} hostile HVM guests (seeds {seed0}..{}), {count} operations each, beside a canary",
            seed0 + runs.saturating_sub(1)
        );
        let mut c = Checks::new("dom0-hvmfuzz");
        if c.ok("runtime::init", pv_guest_lib::runtime::init().map(|_| ()))
            .is_none()
            || c.ok("heap", pv_guest_lib::heap::init(HEAP_PAGES)).is_none()
        {
            c.finish()
        }
        let ramdisk = pv_guest_lib::ramdisk().map(Archive::new);
        let have = |p: &str| ramdisk.and_then(|a| a.find(p)).is_some();
        if !c.check(
            "the fuzzer and the canary are in the ramdisk",
            have(FUZZ_KERNEL) && have(CANARY_KERNEL),
            format_args!("{FUZZ_KERNEL}, {CANARY_KERNEL}"),
        ) {
            c.finish()
        }
        let mut ts = Toolstack::new(ramdisk);
        let mut hv_index = 0u32;
        let _ = hv_console(&mut hv_index);
        let free_before = free_pages();

        let canary = match create(&mut ts, &hvm("canary", CANARY_KERNEL, "busy=0", false)) {
            Ok(id) => id,
            Err(e) => {
                c.check("the canary starts", false, format_args!("{e}"));
                c.finish()
            }
        };
        let mut watch = Canary::default();
        let up = ts.serve_until(UP_NS, |ts| {
            watch.update(ts, canary);
            watch.lines > 0
        });
        c.check(
            "the canary (bare-count, HVM) counts",
            up,
            format_args!(
                "d{canary}, first count {:?}, sum {:?}",
                watch.first_count, watch.first_sum
            ),
        );

        let mut fuzz_ids = Vec::new();
        for run in 0..runs {
            let seed = seed0 + run;
            let name = format!("fuzz{seed}");
            let mut extra = format!("seed={seed} count={count}");
            if let Some(t) = trace {
                extra.push_str(&format!(" trace={t}"));
            }
            let id = match create(&mut ts, &hvm(&name, FUZZ_KERNEL, &extra, true)) {
                Ok(id) => id,
                Err(e) => {
                    c.check(
                        &format!("bare-fuzz seed {seed} starts"),
                        false,
                        format_args!("{e}"),
                    );
                    continue;
                }
            };
            fuzz_ids.push(id);
            let before = watch.last_count;
            let t0 = time::now_ns();
            let limit = RUN_BASE_NS.saturating_add(count.saturating_mul(PER_OP_NS));
            let mut info = None;
            let mut next_note = t0 + NOTE_NS;
            let ended = ts.serve_until(limit, |ts| {
                watch.update(ts, canary);
                info = xc::domain_info(id).ok().filter(|i| i.is_shutdown());
                if time::now_ns() > next_note {
                    next_note += NOTE_NS;
                    println!(
                        "dom0-hvmfuzz: d{id} still running after {} s; the canary is at count {:?}",
                        (time::now_ns() - t0) / 1_000_000_000,
                        watch.last_count
                    );
                }
                info.is_some()
            });
            let secs = (time::now_ns() - t0) / 1_000_000_000;
            let lines = backlog_lines(&ts, id);
            for l in lines
                .iter()
                .filter(|l| FUZZ_LINES.iter().any(|p| l.starts_with(p)))
            {
                println!("{l}");
            }
            let total = lines.iter().find_map(|l| calls_in(l, "fuzz: total "));
            if total.is_none() {
                // What it said last: with `trace=1` in `extra`, the
                // operation that stopped it.
                for l in lines.iter().rev().take(12).rev() {
                    println!("dom0-hvmfuzz: d{id} said: {l}");
                }
            }
            let how = match info {
                Some(i) => format!(
                    "shut down: {}",
                    xc::shutdown_reason_name(i.shutdown_reason())
                ),
                None if ended => String::from("gone"),
                None => format!("still running after {secs} s (hung)"),
            };
            c.check(
                &format!(
                    "bare-fuzz seed {seed} made its {count} operations and powered itself off"
                ),
                info.is_some_and(|i| i.shutdown_reason() == POWEROFF) && total == Some(count),
                format_args!("d{id} {how} after {secs} s, said total {total:?}"),
            );
            let classes: Vec<u64> = lines
                .iter()
                .filter(|l| l.starts_with("fuzz: class "))
                .filter_map(|l| {
                    l.split(": ")
                        .nth(2)?
                        .split_whitespace()
                        .next()?
                        .parse()
                        .ok()
                })
                .collect();
            c.check(
                &format!("bare-fuzz seed {seed}: six classes, their counts add up to its total"),
                classes.len() == 6 && Some(classes.iter().sum::<u64>()) == total,
                format_args!("{classes:?}, total {total:?}"),
            );
            if let Err(e) = ts.destroy(u32::from(id)) {
                c.check(&format!("xl destroy d{id}"), false, format_args!("{e}"));
            }
            watch.update(&ts, canary);
            c.check(
                &format!(
                    "the canary kept counting beside seed {seed}, its pages and checksum unchanged"
                ),
                watch.last_count > before && watch.bad.is_none(),
                format_args!(
                    "counts {before:?} -> {:?}, sum {:?}, {:?}",
                    watch.last_count, watch.first_sum, watch.bad
                ),
            );
            if info.is_none() {
                // The next ones would hang the same way: stop here, so
                // the checks below still run before the harness gives up.
                c.note(format_args!("no more fuzzers after a hung one"));
                break;
            }
        }

        let hv = hv_console(&mut hv_index);
        let crashes: Vec<&str> = hv
            .lines()
            .filter(|l| l.contains("domain crash") || l.contains("panic"))
            .take(4)
            .collect();
        c.check(
            "the hypervisor crashed no domain",
            crashes.is_empty(),
            format_args!("{crashes:?}"),
        );
        if let Err(e) = ts.destroy(u32::from(canary)) {
            c.check("xl destroy canary", false, format_args!("{e}"));
        }
        ts.serve_until(SETTLE_NS, |_| false);
        let free_after = free_pages();
        c.check(
            "every frame came back: the hypervisor's free memory is as before",
            free_after == free_before,
            format_args!("{free_before} pages before, {free_after} after"),
        );
        // Dom0 is healthy: a fresh guest comes up.
        let fresh = create(&mut ts, &[String::from("name=\"after\"")]);
        let fresh_up = match fresh {
            Ok(id) => {
                let up = ts.serve_until(UP_NS, |ts| {
                    ts.console_backlog(id)
                        .is_some_and(|b| has_line(b.as_slices()))
                });
                let gone = ts.destroy(u32::from(id)).is_ok();
                up && gone
            }
            Err(_) => false,
        };
        c.check(
            "Dom0 is healthy: a fresh guest is created, comes up and is destroyed",
            fresh_up,
            format_args!("{:?}", fresh.map(|id| format!("d{id}"))),
        );
        ts.serve_until(SETTLE_NS, |_| false);
        c.check(
            "no domain is left but Dom0, and free memory is as before",
            domains() == 1 && free_pages() == free_before,
            format_args!("{} domains, {} free pages", domains(), free_pages()),
        );
        c.finish()
    }
}
