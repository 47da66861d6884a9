//! Dom0's shell, the parts that are not I/O: which command a line is, the
//! help text, and the verdict `poweroff` prints.

#![forbid(unsafe_code)]

use alloc::string::String;
use core::fmt;

use pv_guest_lib::Verdict;

/// The prompt (no newline follows it).
pub const PROMPT: &str = "dom0# ";

/// One parsed command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// A blank line: nothing to do.
    Empty,
    /// `help`: list the commands.
    Help,
    /// `info`: the start_info summary.
    Info,
    /// `ls [PATH]`: the ramdisk's files, or a directory of a FAT volume
    /// on Dom0's disks (`/mnt/vda/...`).
    Ls(&'a str),
    /// `cat FILE...` (the arguments, unsplit; empty = usage error).
    Cat(&'a str),
    /// `echo ...` (the arguments, unsplit).
    Echo(&'a str),
    /// `version`: everything `xen_version` says.
    Version,
    /// `true`: succeeds.
    True,
    /// `false`: fails.
    False,
    /// `crash`: deliberately page-faults.
    Crash,
    /// `poweroff`: prints the verdict and powers off.
    Poweroff,
    /// `xl ...`: the toolstack (the whole line, `xl` included).
    Xl(&'a str),
    /// `sleep SECONDS` (the argument, unparsed): wait, serving guests.
    Sleep(&'a str),
    /// `lsblk`: Dom0's disks, what uses them, their file systems.
    Lsblk,
    /// `disk-bench DISK` (the argument): Dom0's own throughput on a disk.
    DiskBench(&'a str),
    /// `ip ARGS` (unparsed; `ip addr` is all there is).
    Ip(&'a str),
    /// `ping HOST [COUNT]` (unparsed, see [`ping_args`]).
    Ping(&'a str),
    /// `tcp-recv PORT` (unparsed, see [`tcp_recv_args`]).
    TcpRecv(&'a str),
    /// `tcp-send HOST:PORT SIZE` (unparsed, see [`tcp_send_args`]).
    TcpSend(&'a str),
    /// Anything else: the command word.
    Unknown(&'a str),
}

/// Every command with a one-line description, for `help`.
pub const HELP: &[(&str, &str)] = &[
    ("help", "list these commands"),
    ("info", "what Dom0 was handed at boot (start_info)"),
    (
        "ls [/mnt/vda[/DIR]]",
        "list the ramdisk's files, or a FAT volume's directory",
    ),
    ("cat FILE...", "print ramdisk files"),
    ("echo [TEXT...]", "print TEXT"),
    ("version", "ask the hypervisor who it is (xen_version)"),
    ("true", "do nothing, successfully"),
    ("false", "do nothing, unsuccessfully"),
    (
        "crash",
        "page-fault on purpose (the hypervisor must crash Dom0)",
    ),
    (
        "xl SUBCOMMAND ...",
        "the Xen toolstack (`xl help` lists its commands)",
    ),
    ("sleep SECONDS", "wait (guests keep being served)"),
    (
        "lsblk",
        "list Dom0's disks (/dev/vda...), their users and file systems",
    ),
    (
        "disk-bench DISK",
        "time Dom0's own reads and writes on DISK (overwrites it!)",
    ),
    (
        "ip addr",
        "Dom0's address on xenbr0 (boot Dom0 with ip=ADDR/PREFIX or ip=dhcp)",
    ),
    (
        "ping HOST [COUNT]",
        "send COUNT (default 4) ICMP echo requests",
    ),
    (
        "tcp-recv PORT",
        "accept one TCP connection, read it to the end, print MB/s and CRC-32",
    ),
    (
        "tcp-send HOST:PORT SIZE",
        "send SIZE bytes (64M, 1G...) of a test pattern over TCP, print MB/s and CRC-32",
    ),
    ("poweroff", "print the verdict and power the machine off"),
];

impl<'a> Command<'a> {
    /// Parses a command line: the first word picks the command, the rest
    /// (trimmed) are its arguments.
    pub fn parse(line: &'a str) -> Command<'a> {
        let line = line.trim();
        let (word, rest) = match line.find(char::is_whitespace) {
            Some(i) => (&line[..i], line[i..].trim_start()),
            None => (line, ""),
        };
        match word {
            "" => Command::Empty,
            "help" | "?" => Command::Help,
            "info" => Command::Info,
            "ls" => Command::Ls(rest),
            "cat" => Command::Cat(rest),
            "echo" => Command::Echo(rest),
            "version" => Command::Version,
            "true" => Command::True,
            "false" => Command::False,
            "crash" => Command::Crash,
            "poweroff" | "halt" | "shutdown" => Command::Poweroff,
            "xl" => Command::Xl(line),
            "sleep" => Command::Sleep(rest),
            "lsblk" => Command::Lsblk,
            "disk-bench" => Command::DiskBench(rest),
            "ip" => Command::Ip(rest),
            "ping" => Command::Ping(rest),
            "tcp-recv" => Command::TcpRecv(rest),
            "tcp-send" => Command::TcpSend(rest),
            other => Command::Unknown(other),
        }
    }
}

/// Parses `sleep`'s argument: seconds, with an optional fraction (`1`,
/// `0.25`), at most an hour; in nanoseconds.
pub fn sleep_ns(arg: &str) -> Option<u64> {
    let (int, frac) = arg.split_once('.').unwrap_or((arg, ""));
    if (int.is_empty() && frac.is_empty()) || frac.len() > 9 {
        return None;
    }
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || !digits(frac) {
        return None;
    }
    let secs: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    if secs > 3600 {
        return None;
    }
    let mut ns = 0u64;
    for (i, b) in frac.bytes().enumerate() {
        ns += u64::from(b - b'0') * 10u64.pow(8 - i as u32);
    }
    Some(secs * 1_000_000_000 + ns)
}

/// `ping`'s arguments: `HOST [COUNT]` (COUNT 1..=1000, default 4).
pub fn ping_args(args: &str) -> Result<(&str, u32), String> {
    let mut w = args.split_whitespace();
    let host = w.next().ok_or("usage: ping HOST [COUNT]")?;
    let count = match w.next() {
        None => 4,
        Some(c) => c
            .parse()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| alloc::format!("bad number of packets to transmit: {c}"))?,
    };
    if w.next().is_some() {
        return Err("usage: ping HOST [COUNT]".into());
    }
    Ok((host, count))
}

/// `tcp-recv`'s argument: `PORT`.
pub fn tcp_recv_args(args: &str) -> Result<u16, String> {
    let mut w = args.split_whitespace();
    match (w.next(), w.next()) {
        (Some(p), None) => crate::ipconf::port(p),
        _ => Err("usage: tcp-recv PORT".into()),
    }
}

/// `tcp-send`'s arguments: `HOST:PORT SIZE`.
pub fn tcp_send_args(args: &str) -> Result<(&str, u16, u64), String> {
    let mut w = args.split_whitespace();
    let (Some(hp), Some(sz), None) = (w.next(), w.next(), w.next()) else {
        return Err("usage: tcp-send HOST:PORT SIZE".into());
    };
    let (h, p) = hp
        .rsplit_once(':')
        .ok_or_else(|| alloc::format!("{hp:?}: expected HOST:PORT"))?;
    crate::ipconf::host_port(hp)?;
    let size = crate::ipconf::size(sz)
        .ok_or_else(|| alloc::format!("{sz:?}: expected a size such as 4096, 64M or 1G"))?;
    Ok((h, crate::ipconf::port(p)?, size))
}

/// `echo`'s output: the words of `args` separated by single spaces.
pub struct EchoWords<'a>(pub &'a str);

impl fmt::Display for EchoWords<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, w) in self.0.split_whitespace().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(w)?;
        }
        Ok(())
    }
}

/// The verdict Dom0 prints at `poweroff`: success only if every startup
/// check passed and no command failed.
pub fn dom0_verdict(
    failed_checks: u32,
    first_failed_check: Option<&str>,
    failed_commands: u32,
) -> Verdict {
    let mut v = Verdict::new();
    let plural = |n: u32| if n == 1 { "" } else { "s" };
    match (failed_checks, failed_commands) {
        (0, 0) => {}
        (0, c) => v.fail(format_args!("{c} command{} failed", plural(c))),
        (k, 0) => v.fail(format_args!(
            "{k} startup check{} failed (first: {})",
            plural(k),
            first_failed_check.unwrap_or("?")
        )),
        (k, c) => v.fail(format_args!(
            "{k} startup check{} failed (first: {}), {c} command{} failed",
            plural(k),
            first_failed_check.unwrap_or("?"),
            plural(c)
        )),
    }
    v
}

/// A byte count for people: `512 MiB`, `640 KiB`, `12345 bytes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size(pub u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const KIB: u64 = 1 << 10;
        const MIB: u64 = 1 << 20;
        const GIB: u64 = 1 << 30;
        let b = self.0;
        if b != 0 && b.is_multiple_of(GIB) {
            write!(f, "{} GiB", b / GIB)
        } else if b != 0 && b.is_multiple_of(MIB) {
            write!(f, "{} MiB", b / MIB)
        } else if b != 0 && b.is_multiple_of(KIB) {
            write!(f, "{} KiB", b / KIB)
        } else {
            write!(f, "{b} bytes")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn parses_commands_and_arguments() {
        assert_eq!(Command::parse(""), Command::Empty);
        assert_eq!(Command::parse("   \t "), Command::Empty);
        assert_eq!(Command::parse("help"), Command::Help);
        assert_eq!(Command::parse("  ls  "), Command::Ls(""));
        assert_eq!(Command::parse("ls /mnt/vda"), Command::Ls("/mnt/vda"));
        assert_eq!(
            Command::parse("cat /etc/oxen-release"),
            Command::Cat("/etc/oxen-release")
        );
        assert_eq!(Command::parse("cat"), Command::Cat(""));
        assert_eq!(
            Command::parse("echo  hello   world "),
            Command::Echo("hello   world")
        );
        assert_eq!(Command::parse("echo"), Command::Echo(""));
        assert_eq!(Command::parse("version"), Command::Version);
        assert_eq!(Command::parse("true"), Command::True);
        assert_eq!(Command::parse("false"), Command::False);
        assert_eq!(Command::parse("crash"), Command::Crash);
        assert_eq!(Command::parse("poweroff"), Command::Poweroff);
        assert_eq!(Command::parse(" xl list "), Command::Xl("xl list"));
        assert_eq!(Command::parse("sleep 0.5"), Command::Sleep("0.5"));
        assert_eq!(Command::parse("LS"), Command::Unknown("LS"));
        assert_eq!(
            Command::parse("\u{e9}t\u{e9}"),
            Command::Unknown("\u{e9}t\u{e9}")
        );
    }

    #[test]
    fn sleep_takes_seconds_with_a_fraction() {
        assert_eq!(sleep_ns("1"), Some(1_000_000_000));
        assert_eq!(sleep_ns("0.25"), Some(250_000_000));
        assert_eq!(sleep_ns(".5"), Some(500_000_000));
        assert_eq!(sleep_ns("2."), Some(2_000_000_000));
        for bad in ["", ".", "-1", "1e3", "x", "3601", "0.1234567891", "1 2"] {
            assert_eq!(sleep_ns(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn network_commands_take_their_arguments() {
        assert_eq!(Command::parse("ip addr"), Command::Ip("addr"));
        assert_eq!(
            Command::parse("ping 10.0.3.2 3"),
            Command::Ping("10.0.3.2 3")
        );
        assert_eq!(Command::parse("tcp-recv 8002"), Command::TcpRecv("8002"));
        assert_eq!(ping_args("10.0.3.2"), Ok(("10.0.3.2", 4)));
        assert_eq!(ping_args("10.0.3.2 3"), Ok(("10.0.3.2", 3)));
        assert!(ping_args("").is_err());
        assert!(ping_args("10.0.3.2 0").is_err());
        assert!(ping_args("10.0.3.2 3 4").is_err());
        assert_eq!(tcp_recv_args("8002"), Ok(8002));
        assert!(tcp_recv_args("").is_err());
        assert!(tcp_recv_args("0").is_err());
        assert!(tcp_recv_args("80 81").is_err());
        assert_eq!(
            tcp_send_args("10.0.3.2:8002 64M"),
            Ok(("10.0.3.2", 8002, 64 << 20))
        );
        assert!(tcp_send_args("10.0.3.2:8002").is_err());
        assert!(tcp_send_args("10.0.3.2 64M").is_err());
        assert!(tcp_send_args("10.0.3.2:8002 lots").is_err());
        assert!(tcp_send_args("nowhere:8002 1").is_err());
    }

    #[test]
    fn echo_joins_words_with_single_spaces() {
        assert_eq!(EchoWords("hello   world").to_string(), "hello world");
        assert_eq!(EchoWords("").to_string(), "");
        assert_eq!(EchoWords(" a\tb ").to_string(), "a b");
    }

    #[test]
    fn help_covers_every_command() {
        for (usage, _) in HELP {
            let word = usage.split(' ').next().unwrap();
            assert!(
                !matches!(Command::parse(word), Command::Unknown(_)),
                "{word}"
            );
        }
    }

    #[test]
    fn verdicts() {
        assert_eq!(
            dom0_verdict(0, None, 0).line().to_string(),
            "VERDICT: SUCCESS"
        );
        assert_eq!(
            dom0_verdict(0, None, 1).line().to_string(),
            "VERDICT: FAILURE: 1 command failed"
        );
        assert_eq!(
            dom0_verdict(0, None, 3).line().to_string(),
            "VERDICT: FAILURE: 3 commands failed"
        );
        assert_eq!(
            dom0_verdict(2, Some("ramdisk"), 0).line().to_string(),
            "VERDICT: FAILURE: 2 startup checks failed (first: ramdisk)"
        );
        assert_eq!(
            dom0_verdict(1, Some("magic"), 1).line().to_string(),
            "VERDICT: FAILURE: 1 startup check failed (first: magic), 1 command failed"
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(Size(512 << 20).to_string(), "512 MiB");
        assert_eq!(Size(2 << 30).to_string(), "2 GiB");
        assert_eq!(Size(640 << 10).to_string(), "640 KiB");
        assert_eq!(Size(12345).to_string(), "12345 bytes");
        assert_eq!(Size(0).to_string(), "0 bytes");
    }
}
