//! `xl`'s pure pieces on their own: cpu lists, memory sizes, domain
//! qualifiers, option parsing, command lookup, JSON and time formats.

use dom0_tools::xl::backend::{DomainInfo, TopSample};
use dom0_tools::xl::cmdtable::{lookup, CMD_TABLE};
use dom0_tools::xl::cpumap::{parse_cpurange, parse_range, CpuMap, CpuRangeError};
use dom0_tools::xl::format::{self, ClockTime, Json, Uuid};
use dom0_tools::xl::getopt::{getopt, Exit};
use dom0_tools::xl::parse::{
    parse_int, parse_mem_size_kb, parse_u32, split_args, DomainQualifier, SplitError,
};

fn show(m: &CpuMap, nr: usize) -> String {
    m.display(nr).to_string()
}

#[test]
fn bitmap_prints_as_xl() {
    assert_eq!(show(&CpuMap::all(4), 4), "all");
    assert_eq!(show(&CpuMap::new(4), 4), "none");
    assert_eq!(show(&CpuMap::from_cpus(8, &[0, 1, 2, 5]), 8), "0-2,5");
    assert_eq!(show(&CpuMap::from_cpus(8, &[1, 2, 3]), 4), "1-3");
    assert_eq!(show(&CpuMap::from_cpus(8, &[3]), 8), "3");
    assert_eq!(
        show(&CpuMap::from_cpus(8, &[0, 2, 4, 6, 7]), 8),
        "0,2,4,6-7"
    );
    assert_eq!(show(&CpuMap::from_cpus(8, &[1, 6, 7]), 8), "1,6-7");
    assert_eq!(show(&CpuMap::from_cpus(2, &[0]), 2), "0");
    assert_eq!(show(&CpuMap::from_cpus(4, &[0, 1]), 2), "all");
    assert_eq!(show(&CpuMap::all(4), 0), "none");
}

#[test]
fn cpu_ranges() {
    assert_eq!(parse_range("3"), Some((3, 3)));
    assert_eq!(parse_range("0-7"), Some((0, 7)));
    for bad in ["", "-", "3-", "-3", "a", "3-1", "1-2-3", "+1", " 1"] {
        assert_eq!(parse_range(bad), None, "{bad:?}");
    }
}

fn cpus(s: &str) -> Result<Vec<u32>, String> {
    let mut nodes = |n: u32| (n == 0).then(|| CpuMap::all(8));
    parse_cpurange(s, 8, &mut nodes)
        .map(|m| m.cpus().collect())
        .map_err(|e| e.to_string())
}

#[test]
fn cpu_lists_parse_as_xl() {
    assert_eq!(cpus("all"), Ok((0..8).collect()));
    assert_eq!(cpus("0-3,^2"), Ok(vec![0, 1, 3]));
    assert_eq!(cpus("all,^0-6"), Ok(vec![7]));
    assert_eq!(cpus("5,1"), Ok(vec![1, 5]));
    assert_eq!(cpus("node:0,^nodes:0"), Ok(vec![]));
    assert_eq!(
        cpus("6-100000000000"),
        Ok(vec![6, 7]),
        "beyond the map is ignored"
    );
    assert_eq!(cpus("1,,2,"), Ok(vec![1, 2]));
    assert_eq!(cpus("^all"), Err("Can't combine \"^\" and \"all\".".into()));
    assert_eq!(cpus("1,x"), Err("Invalid pcpu range: x.".into()));
    assert_eq!(cpus("^3-2"), Err("Invalid pcpu range: ^3-2.".into()));
    assert!(matches!(
        parse_cpurange("node:1", 8, &mut |_| None),
        Err(CpuRangeError::Node(1))
    ));
}

#[test]
fn memory_sizes() {
    assert_eq!(parse_mem_size_kb("128"), Some(128 * 1024));
    assert_eq!(parse_mem_size_kb("128M"), Some(128 * 1024));
    assert_eq!(parse_mem_size_kb("2g"), Some(2 << 20));
    assert_eq!(parse_mem_size_kb("2T"), Some(2 << 30));
    assert_eq!(parse_mem_size_kb("100k"), Some(100));
    assert_eq!(parse_mem_size_kb("2047b"), Some(1));
    assert_eq!(parse_mem_size_kb("0"), Some(0));
    for bad in [
        "",
        "m",
        "-1",
        "1.5g",
        "1gb",
        "1 g",
        "x1",
        "18446744073709551616",
        "17179869184t",
    ] {
        assert_eq!(parse_mem_size_kb(bad), None, "{bad:?}");
    }
}

#[test]
fn numbers_and_domain_qualifiers() {
    assert_eq!(parse_int("-3"), Some(-3));
    assert_eq!(parse_int("3x"), None);
    assert_eq!(parse_int("-"), None);
    assert_eq!(parse_u32("4294967295"), Some(u32::MAX));
    assert_eq!(parse_u32("4294967296"), None);
    assert_eq!(parse_u32("+1"), None);
    assert_eq!(DomainQualifier::parse("7"), DomainQualifier::Id(7));
    assert_eq!(DomainQualifier::parse("007"), DomainQualifier::Id(7));
    assert_eq!(
        DomainQualifier::parse("web1"),
        DomainQualifier::Name("web1")
    );
    assert_eq!(DomainQualifier::parse(""), DomainQualifier::Name(""));
    assert_eq!(
        DomainQualifier::parse("99999999999"),
        DomainQualifier::Name("99999999999")
    );
}

#[test]
fn shell_words() {
    assert_eq!(
        split_args(r#"xl create  g.cfg 'name="my guest"' memory=64"#),
        Ok(vec![
            "xl".into(),
            "create".into(),
            "g.cfg".into(),
            "name=\"my guest\"".into(),
            "memory=64".into()
        ])
    );
    assert_eq!(
        split_args(r#"a "b \" c" d\ e"#),
        Ok(vec!["a".into(), "b \" c".into(), "d e".into()])
    );
    assert_eq!(split_args("''"), Ok(vec![String::new()]));
    assert_eq!(split_args("   "), Ok(vec![]));
    assert_eq!(split_args("'open"), Err(SplitError::UnterminatedQuote));
    assert_eq!(split_args("\"open\\"), Err(SplitError::UnterminatedQuote));
}

#[test]
fn getopt_like_gnu() {
    let mut out = String::new();
    let p = getopt(
        &[
            "-ab", "x", "-wVAL", "--long=1", "-w", "2", "--lo", "3", "--", "-z",
        ],
        "abw:",
        &[("long", true, 'l')],
        "t",
        0,
        &mut out,
    )
    .unwrap();
    assert_eq!(
        p.opts,
        vec![
            ('a', None),
            ('b', None),
            ('w', Some("VAL")),
            ('l', Some("1")),
            ('w', Some("2")),
            ('l', Some("3"))
        ]
    );
    assert_eq!(p.args, vec!["x", "-z"]);
    assert_eq!(p.value('w'), Some("2"));
    assert!(p.has('b') && !p.has('z'));
    assert_eq!(out, "");
    let mut out = String::new();
    assert_eq!(
        getopt(&["-aq"], "a", &[], "list", 0, &mut out),
        Err(Exit(2))
    );
    assert_eq!(out, "option `q' not supported.\n");
    let mut out = String::new();
    assert_eq!(
        getopt(
            &["--all=1"],
            "a",
            &[("all", false, 'a')],
            "list",
            0,
            &mut out
        ),
        Err(Exit(2))
    );
    let mut out = String::new();
    assert_eq!(
        getopt(&["-h", "-q"], "", &[], "list", 0, &mut out),
        Err(Exit(0))
    );
    assert!(out.starts_with("Usage: xl [-vtT] list "));
    // Ambiguous long prefix.
    let mut out = String::new();
    assert_eq!(
        getopt(
            &["--w"],
            "",
            &[("weight", true, 'w'), ("wait", false, 'x')],
            "t",
            0,
            &mut out
        ),
        Err(Exit(2))
    );
}

#[test]
fn command_lookup() {
    assert_eq!(lookup("list").unwrap().name, "list");
    assert_eq!(lookup("l").unwrap().name, "list");
    assert_eq!(lookup("vcpu-p").unwrap().name, "vcpu-pin");
    assert!(lookup("vcpu-").is_none());
    assert!(lookup("").is_none());
    assert!(lookup("lists").is_none());
    let mut names: Vec<&str> = CMD_TABLE.iter().map(|c| c.name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), CMD_TABLE.len());
}

#[test]
fn json_is_yajl_beautified() {
    let j = Json::Object(vec![
        ("a", Json::Int(-1)),
        (
            "b",
            Json::Array(vec![Json::Null, Json::Str("x\"\\\n\u{1}".into())]),
        ),
        ("c", Json::Object(vec![])),
    ]);
    let mut s = String::new();
    j.write(&mut s, 0).unwrap();
    assert_eq!(
        s,
        "{\n    \"a\": -1,\n    \"b\": [\n        null,\n        \"x\\\"\\\\\\n\\u0001\"\n    ],\n    \"c\": {\n\n}\n}"
    );
}

#[test]
fn times_and_uuids() {
    assert_eq!(format::uptime_string(0, false), " 0:00:00");
    assert_eq!(format::uptime_string(59, true), " 0:00");
    assert_eq!(format::uptime_string(86399, false), "23:59:59");
    assert_eq!(format::uptime_string(86400, false), "1 day,  0:00:00");
    assert_eq!(
        format::uptime_string(3 * 86400 + 3600 * 11 + 60, true),
        "3 days, 11:01"
    );
    assert_eq!(ClockTime(86400 * 5 + 7).to_string(), "00:00:07");
    let u = [
        0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 1, 2, 3, 4, 5, 6, 7, 8,
    ];
    assert_eq!(Uuid(&u).to_string(), "12345678-9abc-def0-0102-030405060708");
}

#[test]
fn top_cpu_percent_from_two_samples() {
    let d = |cpu| DomainInfo {
        domid: 5,
        cpu_time_ns: cpu,
        ..DomainInfo::default()
    };
    let s = |now, cpu| TopSample {
        now_ns: now,
        domains: vec![d(cpu)],
        ..TopSample::default()
    };
    let (a, b) = (s(1_000, 0), s(2_000_001_000, 500_000_000));
    assert_eq!(format::cpu_pct(None, &b, &b.domains[0]), 0.0);
    assert_eq!(format::cpu_pct(Some(&a), &b, &b.domains[0]), 25.0);
    // Same instant, clock going backwards, or a new domain: 0, never a panic.
    assert_eq!(format::cpu_pct(Some(&b), &a, &a.domains[0]), 0.0);
    let other = TopSample {
        domains: vec![],
        ..TopSample::default()
    };
    assert_eq!(format::cpu_pct(Some(&other), &b, &b.domains[0]), 0.0);
}

#[test]
fn top_frame_with_no_domains_and_zero_memory() {
    let mut s = String::new();
    format::top_frame(
        &mut s,
        None,
        &TopSample::default(),
        &format::TopOpts { batch: true },
    )
    .unwrap();
    assert_eq!(s.lines().count(), 4);
    assert!(s.contains("0 domains: 0 running"));
}

#[test]
fn huge_maps_and_ranges_are_clamped() {
    use dom0_tools::xl::cpumap::MAX_CPUS;
    assert_eq!(CpuMap::all(usize::MAX).size(), MAX_CPUS);
    let m = parse_cpurange("0-18446744073709551615", u32::MAX as usize + 1, &mut |_| {
        None
    })
    .unwrap();
    assert_eq!(m.cpus().count(), MAX_CPUS);
    let mut calls = 0;
    let r = parse_cpurange("nodes:0-4294967295", 8, &mut |_| {
        calls += 1;
        Some(CpuMap::all(8))
    });
    assert_eq!(r.unwrap().cpus().count(), 8);
    assert!(calls <= 65, "{calls}");
}
