//! `xl` end to end: every command run through `xl::run` against an
//! in-memory back end, asserting on the exact text and exit status.

mod xl_fake;

use dom0_tools::xl::XlError;
use xl_fake::*;

const LIST_HEADER: &str =
    "Name                                        ID   Mem VCPUs\tState\tTime(s)\n";

fn ok(line: &str) -> String {
    let (rc, out) = xl(line);
    assert_eq!(rc, 0, "{line}: {out}");
    out
}

fn err(line: &str, want_rc: i32, want: &str) {
    let (rc, out) = xl(line);
    assert_eq!((rc, out.as_str()), (want_rc, want), "{line}");
}

const NOT_EXIST: &str = "Error: Domain 'nosuch' does not exist.\n";

// ---- dispatch, help ----

#[test]
fn no_command_prints_full_help_and_fails() {
    let (rc, out) = xl("xl");
    assert_eq!(rc, 1);
    assert!(out
        .starts_with("Usage xl [-vfNtT] <subcommand> [args]\n\nxl full list of subcommands:\n\n"));
}

#[test]
fn help_lists_every_command_in_xl_format() {
    let out = ok("xl help");
    assert!(out.contains(" create              Create a domain from config file <filename>\n"));
    assert!(out.contains(" list                List information about all/some domains\n"));
    assert!(out.contains(" sched-credit        Get/set credit scheduler parameters\n"));
    for c in [
        "create",
        "list",
        "destroy",
        "shutdown",
        "reboot",
        "pause",
        "unpause",
        "console",
        "mem-max",
        "mem-set",
        "vcpu-list",
        "vcpu-pin",
        "vcpu-set",
        "info",
        "sched-credit",
        "dmesg",
        "top",
        "uptime",
    ] {
        assert!(out.contains(&format!("\n {c:<19} ")), "{c} missing");
    }
    assert_eq!(out, ok("help"), "a leading `xl` is optional");
}

#[test]
fn help_for_one_command() {
    assert_eq!(
        ok("xl help pause"),
        "Usage: xl [-vtTf] pause <Domain>\n\nPause execution of a domain.\n\n"
    );
    assert_eq!(
        ok("xl help vcpu-set"),
        "Usage: xl [-vtTf] vcpu-set [option] <Domain> <vCPUs>\n\n\
         Set the number of active VCPUs allowed for the domain.\n\n\
         Options:\n\n-i, --ignore-host  Don't limit the vCPU based on the host CPU count\n"
    );
    let create = ok("xl help create");
    assert!(create.starts_with(
        "Usage: xl [-vtTfN] create <ConfigFile> [options] [vars]\n\n\
         Create a domain from config file <filename>.\n\nOptions:\n\n\
         -h                      Print this help.\n\
         -p                      Leave the domain paused after it is created.\n\
         -c                      Connect to the console after the domain is created.\n"
    ));
    assert!(create.contains("-q, --quiet             Quiet.\n"));
    assert_eq!(ok("xl list -h"), ok("xl help list"));
    assert_eq!(ok("xl list --help"), ok("xl help list"));
    assert_eq!(ok("xl help nosuch"), "command \"nosuch\" not implemented\n");
}

#[test]
fn unknown_command_and_global_option() {
    err("xl bogus", 1, "command not implemented\n");
    err("xl -z list", 1, "unknown global option\n");
    err(
        "xl -N list",
        1,
        "command does not implement -N (dryrun) option\n",
    );
}

#[test]
fn unambiguous_prefixes_select_commands() {
    assert_eq!(ok("xl li"), ok("xl list"));
    assert_eq!(ok("xl vcpu-l"), ok("xl vcpu-list"));
    assert_eq!(ok("xl sched"), ok("xl sched-credit"));
    // `mem-` is both mem-max and mem-set; `un` only unpause but needs a domain.
    err("xl mem- guest 1", 1, "command not implemented\n");
    let (rc, out) = xl("xl un");
    assert_eq!(rc, 2);
    assert!(out.starts_with("'xl unpause' requires at least 1 argument.\n\n"));
}

#[test]
fn bad_option_and_missing_arguments_are_usage_errors() {
    err("xl pause -x guest", 2, "option `x' not supported.\n");
    err("xl list --bogus", 2, "option `--bogus' not supported.\n");
    err("xl console -t", 2, "option `t' not supported.\n");
    let (rc, out) = xl("xl pause");
    assert_eq!(rc, 2);
    assert_eq!(
        out,
        "'xl pause' requires at least 1 argument.\n\n\
         Usage: xl [-vtTf] pause <Domain>\n\nPause execution of a domain.\n\n"
    );
    let (rc, out) = xl("xl mem-set guest");
    assert_eq!(rc, 2);
    assert!(out.starts_with("'xl mem-set' requires at least 2 arguments.\n\n"));
    let (rc, out) = xl("xl vcpu-pin guest 0");
    assert_eq!(rc, 2);
    assert!(out.starts_with("'xl vcpu-pin' requires at least 3 arguments.\n\n"));
}

// ---- list ----

#[test]
fn list_prints_xl_columns_sorted_by_id() {
    assert_eq!(
        ok("xl list"),
        format!(
            "{LIST_HEADER}\
Domain-0                                     0   462     2     r-----      12.3\n\
guest                                        1   256     1     -b----       1.5\n\
web                                          3   128     2     --p---       0.0\n"
        )
    );
}

#[test]
fn list_one_domain_by_name_or_id() {
    let want = format!(
        "{LIST_HEADER}guest                                        1   256     1     -b----       1.5\n"
    );
    assert_eq!(ok("xl list guest"), want);
    assert_eq!(ok("xl list 1"), want);
    err("xl list nosuch", 1, NOT_EXIST);
    err("xl list 7", 1, "Error: Domain '7' does not exist.\n");
    let (rc, out) = xl("xl list guest web");
    assert_eq!(rc, 1);
    assert!(out.starts_with("Usage: xl [-vtT] list [options] [Domain]\n"));
}

#[test]
fn list_shows_shutdown_reason_and_dying() {
    let mut f = Fake::new();
    for d in f.domains.iter_mut() {
        if d.domid == 1 {
            d.blocked = false;
            d.shutdown = true;
            d.shutdown_reason = 3; // crash
            d.dying = true;
        }
    }
    let (_, out) = xl_on(&mut f, "xl list guest");
    assert!(out.ends_with("     ---scd       1.5\n"), "{out}");
}

#[test]
fn list_verbose_and_cpupool_columns() {
    let out = ok("xl list -v guest");
    assert_eq!(
        out,
        "Name                                        ID   Mem VCPUs\tState\tTime(s)   UUID                            Reason-Code\tSecurity Label\n\
guest                                        1   256     1     -b----       1.5 01010101-0101-0101-0101-010101010101        -                -\n"
    );
    assert_eq!(
        ok("xl list -c guest"),
        "Name                                        ID   Mem VCPUs\tState\tTime(s)         Cpupool\n\
guest                                        1   256     1     -b----       1.5          Pool-0\n"
    );
    // Options may follow the domain (GNU getopt permutes).
    assert_eq!(ok("xl list guest -c"), ok("xl list --cpupool guest"));
}

#[test]
fn list_long_prints_libxl_json() {
    let out = ok("xl list -l");
    assert!(out.starts_with(
        "[\n    {\n        \"domid\": 1,\n        \"config\": {\n            \"c_info\": {\n                \"type\": \"pv\",\n                \"name\": \"guest\",\n"
    ), "{out}");
    assert!(out.contains(
        "                \"avail_vcpus\": [\n                    0\n                ],\n"
    ));
    assert!(out.contains("\"cmdline\": \"console=hvc0 \\\"quoted\\\"\""));
    assert!(out.contains("\"mac\": \"00:16:3e:01:02:03\""));
    assert!(out.ends_with("            \"on_crash\": \"destroy\"\n        }\n    }\n]\n"));
    // Domains without a stored configuration are left out.
    assert!(!out.contains("Domain-0"));
    assert_eq!(ok("xl list -l web"), "[\n\n]\n");
}

// ---- info ----

#[test]
fn info_prints_every_field() {
    let out = ok("xl info");
    let names: Vec<&str> = out
        .lines()
        .map(|l| l.split(" :").next().unwrap().trim_end())
        .collect();
    assert_eq!(
        names,
        [
            "host",
            "release",
            "version",
            "machine",
            "nr_cpus",
            "max_cpu_id",
            "nr_nodes",
            "cores_per_socket",
            "threads_per_core",
            "cpu_mhz",
            "hw_caps",
            "virt_caps",
            "total_memory",
            "free_memory",
            "sharing_freed_memory",
            "sharing_used_memory",
            "outstanding_claims",
            "free_cpus",
            "xen_major",
            "xen_minor",
            "xen_extra",
            "xen_version",
            "xen_caps",
            "xen_scheduler",
            "xen_pagesize",
            "platform_params",
            "xen_changeset",
            "xen_commandline",
            "cc_compiler",
            "cc_compile_by",
            "cc_compile_domain",
            "cc_compile_date",
            "build_id",
            "xend_config_format",
        ]
    );
    for l in [
        "host                   : oxen\n",
        "nr_cpus                : 4\n",
        "cpu_mhz                : 2893.012\n",
        "hw_caps                : 178bfbff:f6d8320b:2c100800:00000123:0000000f:219c07ab:00000000:00000100\n",
        "virt_caps              : pv hvm hap shadow gnttab-v1\n",
        "total_memory           : 2048\n",
        "free_memory            : 1025\n",
        "xen_version            : 4.17.0\n",
        "xen_scheduler          : credit\n",
        "platform_params        : virt_start=0xffff800000000000\n",
        "xend_config_format     : 4\n",
    ] {
        assert!(out.contains(l), "{l}");
    }
}

#[test]
fn info_with_a_name_prints_just_that_value() {
    assert_eq!(ok("xl info free_memory"), "1025\n");
    assert_eq!(ok("xl info xen_version"), "4.17.0\n");
    assert_eq!(ok("xl info nosuchfield"), "");
}

// ---- create ----

#[test]
fn create_passes_file_flags_and_overrides() {
    let mut f = Fake::new();
    let (rc, out) = xl_on(&mut f, "xl create /etc/xen/g.cfg -p -c name=foo memory=64");
    assert_eq!(
        (rc, out.as_str()),
        (0, "Parsing config from /etc/xen/g.cfg\n")
    );
    assert!(f.log[0].contains("config_file: Some(\"/etc/xen/g.cfg\")"));
    assert!(f.log[0].contains("extra_config: [\"name=foo\", \"memory=64\"]"));
    assert!(f.log[0].contains("paused: true, console: true, quiet: false, dry_run: false"));
    assert_eq!(f.log[1], "console 4 Primary 0");
    let d = f.get(4).unwrap();
    assert_eq!((d.name.as_str(), d.paused), ("foo", true));
}

#[test]
fn create_quiet_dryrun_and_defconfig() {
    let mut f = Fake::new();
    let (rc, out) = xl_on(&mut f, "xl create -q -f /etc/xen/a.cfg");
    assert_eq!((rc, out.as_str()), (0, ""));
    assert!(f.log[0].contains("config_file: Some(\"/etc/xen/a.cfg\")"));
    let mut f = Fake::new();
    let (rc, out) = xl_on(&mut f, "xl create -n a.cfg");
    assert_eq!(
        (rc, out.as_str()),
        (
            0,
            "Parsing config from a.cfg\n{\"c_info\": {\"name\": \"a\"}}\n"
        )
    );
    assert!(f.get(4).is_none());
    let mut f = Fake::new();
    let (rc, _) = xl_on(&mut f, "xl -N create a.cfg --dryrun");
    assert_eq!(rc, 0);
    assert!(f.log[0].contains("dry_run: true"));
    let mut f = Fake::new();
    xl_on(&mut f, "xl create name=x a.cfg");
    assert!(
        f.log[0].contains("config_file: Some(\"a.cfg\")"),
        "{:?}",
        f.log
    );
}

#[test]
fn create_errors() {
    err(
        "xl create",
        1,
        "Config file not specified and none in save file\n",
    );
    err(
        "xl create missing.cfg",
        1,
        "Parsing config from missing.cfg\nFailed to read config file: missing.cfg: No such file or directory\n",
    );
    let (rc, out) = xl("xl create a.cfg b.cfg");
    assert_eq!(rc, 2);
    assert!(out.starts_with("Usage: xl [-vtTfN] create "));
    let mut f = Fake::new();
    f.fail.insert("create", XlError::Xen(-12));
    let (rc, out) = xl_on(&mut f, "xl create -q a.cfg");
    assert_eq!(
        (rc, out.as_str()),
        (1, "create failed (rc=-3): Xen error -12\n")
    );
}

// ---- destroy, shutdown, reboot, pause ----

#[test]
fn destroy() {
    let mut f = Fake::new();
    assert_eq!(xl_on(&mut f, "xl destroy guest"), (0, String::new()));
    assert!(f.get(1).is_none());
    err("xl destroy nosuch", 1, NOT_EXIST);
    err(
        "xl destroy Domain-0",
        1,
        "Not destroying domain 0; use -f to force.\nThis can only be done when using a disaggregated hardware domain and toolstack.\n\n",
    );
    let mut f = Fake::new();
    f.fail.insert("destroy", XlError::Failed);
    assert_eq!(
        xl_on(&mut f, "xl destroy 1"),
        (1, "destroy failed (rc=-3)\n".into())
    );
}

#[test]
fn shutdown_and_reboot_one_domain() {
    let mut f = Fake::new();
    assert_eq!(
        xl_on(&mut f, "xl shutdown guest"),
        (0, "Shutting down domain 1\n".into())
    );
    assert_eq!(
        xl_on(&mut f, "xl reboot 3"),
        (0, "Rebooting domain 3\n".into())
    );
    assert_eq!(f.log, ["shutdown 1", "reboot 3"]);
    err("xl shutdown", 1, "You must specify -a or a domain id.\n\n");
    err("xl reboot nosuch", 1, NOT_EXIST);
}

#[test]
fn shutdown_all_and_wait() {
    let mut f = Fake::new();
    let (rc, out) = xl_on(&mut f, "xl shutdown -a -w");
    assert_eq!(rc, 0);
    assert_eq!(
        out,
        "Shutting down domain 1\nShutting down domain 3\nWaiting for 2 domains\n\
         Domain 1 has been shut down, reason code 0\nDomain 3 has been destroyed\n"
    );
    assert_eq!(f.domains.len(), 1, "only Dom0 is left");
    let mut f = Fake::new();
    let (rc, out) = xl_on(&mut f, "xl reboot --wait guest");
    assert_eq!((rc, out.as_str()), (0, "Rebooting domain 1\nWaiting for 1 domains\nDomain 1 has been shut down, reason code 0\n"));
}

#[test]
fn shutdown_without_pv_control() {
    let mut f = Fake::new();
    f.no_pv.push(1);
    let (rc, out) = xl_on(&mut f, "xl shutdown guest");
    assert_eq!(rc, 1);
    assert_eq!(
        out,
        "Shutting down domain 1\n\
         PV control interface not available: external graceful shutdown not possible.\n\
         Use \"-F\" to fallback to ACPI power event.\nshutdown failed (rc=-10)\n"
    );
    let mut f = Fake::new();
    f.no_pv.push(1);
    let (rc, out) = xl_on(&mut f, "xl reboot -F guest");
    assert_eq!(rc, 0);
    assert_eq!(
        out,
        "Rebooting domain 1\nPV control interface not available: sending ACPI reset event.\n"
    );
    assert_eq!(f.log.last().unwrap(), "trigger 1 Reset");
}

#[test]
fn pause_and_unpause() {
    let mut f = Fake::new();
    assert_eq!(xl_on(&mut f, "xl pause guest"), (0, String::new()));
    assert!(f.get(1).unwrap().paused);
    assert_eq!(xl_on(&mut f, "xl unpause 1"), (0, String::new()));
    assert!(!f.get(1).unwrap().paused);
    err("xl pause nosuch", 1, NOT_EXIST);
    err("xl unpause 42", 1, "Error: Domain '42' does not exist.\n");
    let mut f = Fake::new();
    f.fail.insert("pause", XlError::Xen(-16));
    assert_eq!(
        xl_on(&mut f, "xl pause guest"),
        (
            1,
            "libxl_domain_pause failed (rc=-3): Xen error -16\n".into()
        )
    );
}

// ---- console, dmesg, debug-keys ----

#[test]
fn console_attaches_with_type_and_number() {
    let mut f = Fake::new();
    assert_eq!(xl_on(&mut f, "xl console guest"), (0, String::new()));
    assert_eq!(
        xl_on(&mut f, "xl console -t serial -n 1 guest"),
        (0, String::new())
    );
    assert_eq!(f.log, ["console 1 Primary 0", "console 1 Serial 1"]);
    err(
        "xl console -t vga guest",
        1,
        "console type supported are: pv, serial, vuart\n",
    );
    err("xl console nosuch", 1, NOT_EXIST);
    let mut f = Fake::new();
    f.fail.insert("console", XlError::NotImplemented);
    assert_eq!(
        xl_on(&mut f, "xl console guest"),
        (
            1,
            "Unable to attach console: not implemented by Oxen\n".into()
        )
    );
}

#[test]
fn dmesg_reads_and_clears() {
    let mut f = Fake::new();
    let (rc, out) = xl_on(&mut f, "xl dmesg");
    assert_eq!(
        (rc, out.as_str()),
        (0, "(XEN) Xen version 4.17.0\n(XEN) Oxen\n")
    );
    let (_, out) = xl_on(&mut f, "xl dmesg -c");
    assert_eq!(out, "(XEN) Xen version 4.17.0\n(XEN) Oxen\n");
    assert_eq!(xl_on(&mut f, "xl dmesg"), (0, String::new()));
    assert_eq!(
        f.log,
        ["dmesg clear=false", "dmesg clear=true", "dmesg clear=false"]
    );
    assert_eq!(xl_on(&mut f, "xl dmesg --clear").0, 0);
}

#[test]
fn debug_keys() {
    let mut f = Fake::new();
    assert_eq!(xl_on(&mut f, "xl debug-keys q"), (0, String::new()));
    f.fail.insert("debug_keys", XlError::Failed);
    assert_eq!(
        xl_on(&mut f, "xl debug-keys h"),
        (1, "cannot send debug keys: h\n".into())
    );
}

#[test]
fn domid_and_domname() {
    assert_eq!(ok("xl domid web"), "3\n");
    assert_eq!(ok("xl domname 0"), "Domain-0\n");
    err(
        "xl domid nosuch",
        1,
        "Can't get domid of domain name 'nosuch', maybe this domain does not exist.\n",
    );
    err(
        "xl domname 9",
        1,
        "Can't get domain name of domain id '9', maybe this domain does not exist.\n",
    );
    err("xl domname abc", 1, "Invalid domain id.\n\n");
}

// ---- memory ----

#[test]
fn mem_set_and_max_parse_xl_sizes() {
    let mut f = Fake::new();
    for (arg, kb) in [
        ("256m", 262144),
        ("256", 262144),
        ("1G", 1048576),
        ("512k", 512),
        ("1048576b", 1024),
        ("1t", 1 << 30),
    ] {
        assert_eq!(
            xl_on(&mut f, &format!("xl mem-set guest {arg}")),
            (0, String::new())
        );
        assert_eq!(f.log.last().unwrap(), &format!("mem-set 1 {kb}"));
    }
    assert_eq!(xl_on(&mut f, "xl mem-max 3 1g"), (0, String::new()));
    assert_eq!(f.log.last().unwrap(), "mem-max 3 1048576");
}

#[test]
fn mem_errors() {
    for bad in [
        "256q",
        "abc",
        "",
        "12mb",
        "99999999999999999999",
        "9999999999999t",
    ] {
        let line = ["xl", "mem-set", "guest", bad];
        let (rc, out) = xl_args(&mut Fake::new(), &line);
        assert_eq!(
            (rc, out),
            (1, format!("invalid memory size: {bad}\n")),
            "{bad:?}"
        );
    }
    err("xl mem-max nosuch 1g", 1, NOT_EXIST);
    // As with getopt, "-5" is an option; after "--" it is a bad size.
    err("xl mem-set guest -5", 2, "option `5' not supported.\n");
    err("xl mem-set guest -- -5", 1, "invalid memory size: -5\n");
    let mut f = Fake::new();
    f.fail.insert("mem_set", XlError::Xen(-22));
    assert_eq!(
        xl_on(&mut f, "xl mem-set guest 64"),
        (
            1,
            "cannot set domid 1 dynamic max memory to : 64: Xen error -22\n".into()
        )
    );
    f.fail.insert("mem_max", XlError::Failed);
    assert_eq!(
        xl_on(&mut f, "xl mem-max guest 64"),
        (1, "cannot set domid 1 static max memory to : 64\n".into())
    );
}

// ---- vcpus ----

#[test]
fn vcpu_list_prints_xl_columns() {
    assert_eq!(
        ok("xl vcpu-list"),
        "Name                                ID  VCPU   CPU State   Time(s) Affinity (Hard / Soft)\n\
Domain-0                             0     0    0   r--       8.2  all / all\n\
Domain-0                             0     1    1   -b-       4.1  all / all\n\
guest                                1     0    2   -b-       1.5  all / all\n\
web                                  3     0    3   -b-       0.0  all / all\n\
web                                  3     1    -   --p       0.0  all / all\n"
    );
    let two = ok("xl vcpu-list web guest");
    assert_eq!(two.lines().count(), 4);
    assert!(two.lines().nth(1).unwrap().starts_with("web "));
    err("xl vcpu-list guest nosuch", 1, NOT_EXIST);
}

#[test]
fn vcpu_list_shows_pinning() {
    let mut f = Fake::new();
    let v = &mut f.vcpus.get_mut(&1).unwrap()[0];
    v.hard = dom0_tools::xl::cpumap::CpuMap::from_cpus(4, &[0, 1, 3]);
    v.soft = dom0_tools::xl::cpumap::CpuMap::new(4);
    let (_, out) = xl_on(&mut f, "xl vcpu-list guest");
    assert!(out.ends_with("       1.5  0-1,3 / none\n"), "{out}");
}

#[test]
fn vcpu_pin_parses_cpu_lists() {
    let mut f = Fake::new();
    assert_eq!(
        xl_on(&mut f, "xl vcpu-pin guest 0 0-3,^2"),
        (0, String::new())
    );
    assert_eq!(
        xl_on(&mut f, "xl vcpu-pin guest all 1 -"),
        (0, String::new())
    );
    assert_eq!(
        xl_on(&mut f, "xl vcpu-pin guest 0 - all"),
        (0, String::new())
    );
    assert_eq!(
        xl_on(&mut f, "xl vcpu-pin -f web 1 node:0 2"),
        (0, String::new())
    );
    assert_eq!(
        xl_on(&mut f, "xl vcpu-pin guest 0 0-1000"),
        (0, String::new())
    );
    assert_eq!(
        f.log,
        [
            "vcpu-pin 1 Some(0) [0, 1, 3] - force=false",
            "vcpu-pin 1 None [1] - force=false",
            "vcpu-pin 1 Some(0) - [0, 1, 2, 3] force=false",
            "vcpu-pin 3 Some(1) [0, 1, 2, 3] [2] force=true",
            "vcpu-pin 1 Some(0) [0, 1, 2, 3] - force=false",
        ]
    );
}

#[test]
fn vcpu_pin_dry_run_prints_the_maps() {
    assert_eq!(ok("xl -N vcpu-pin guest all 1,3 2"), "cpumap: 1,3 2\n");
    assert_eq!(ok("xl -N vcpu-pin guest 0 - 0-3"), "cpumap: - all\n");
}

#[test]
fn vcpu_pin_errors() {
    err(
        "xl vcpu-pin guest x 1",
        1,
        "Error: Invalid argument x as VCPU.\n",
    );
    err(
        "xl vcpu-pin guest 99999999999 1",
        1,
        "Error: Invalid argument 99999999999 as VCPU.\n",
    );
    err(
        "xl vcpu-pin -f guest all 1",
        1,
        "Error: --force and 'all' as VCPU not allowed.\n",
    );
    err(
        "xl vcpu-pin guest 0 ^all",
        1,
        "Can't combine \"^\" and \"all\".\n",
    );
    err("xl vcpu-pin guest 0 5-x", 1, "Invalid pcpu range: 5-x.\n");
    err("xl vcpu-pin guest 0 3-1", 1, "Invalid pcpu range: 3-1.\n");
    err("xl vcpu-pin guest 0 1 ,,a", 1, "Invalid pcpu range: a.\n");
    err(
        "xl vcpu-pin guest 0 node:5",
        1,
        "libxl_node_to_cpumap failed (node 5).\n",
    );
    err("xl vcpu-pin nosuch 0 1", 1, NOT_EXIST);
    let mut f = Fake::new();
    f.fail.insert("vcpu_pin", XlError::Invalid);
    assert_eq!(
        xl_on(&mut f, "xl vcpu-pin guest 0 1"),
        (1, "Could not set affinity for vcpu `0'.\n".into())
    );
    assert_eq!(
        xl_on(&mut f, "xl vcpu-pin guest all 1"),
        (1, "Could not set affinity.\n".into())
    );
}

#[test]
fn vcpu_set() {
    let mut f = Fake::new();
    assert_eq!(xl_on(&mut f, "xl vcpu-set guest 2"), (0, String::new()));
    assert_eq!(f.get(1).unwrap().vcpu_online, 2);
    assert_eq!(xl_on(&mut f, "xl vcpu-set -i guest 9"), (0, String::new()));
    err(
        "xl vcpu-set guest 9",
        1,
        "You are overcommmitting! You have 4 physical CPUs and want 9 vCPUs! Aborting, use --ignore-host to continue\n",
    );
    err("xl vcpu-set guest two", 1, "Error: Invalid argument.\n");
    err("xl vcpu-set nosuch 1", 1, NOT_EXIST);
    let mut f = Fake::new();
    f.fail.insert("vcpu_set", XlError::Failed);
    assert_eq!(
        xl_on(&mut f, "xl vcpu-set guest 1"),
        (
            1,
            "libxl_set_vcpuonline failed domid=1 max_vcpus=1, rc: -3\n".into()
        )
    );
}

// ---- sched-credit ----

const SCHED_HEADER: &str = "Name                                ID Weight  Cap\n";

#[test]
fn sched_credit_lists_pool_and_domains() {
    assert_eq!(
        ok("xl sched-credit"),
        format!(
            "Cpupool Pool-0: tslice=30ms ratelimit=1000us migration-delay=0us\n{SCHED_HEADER}\
Domain-0                             0    256    0\n\
guest                                1    256    0\n\
web                                  3    256    0\n"
        )
    );
    assert_eq!(
        ok("xl sched-credit -d guest"),
        format!("{SCHED_HEADER}guest                                1    256    0\n")
    );
    assert_eq!(
        ok("xl sched-credit -s"),
        "Cpupool Pool-0: tslice=30ms ratelimit=1000us migration-delay=0us\n"
    );
    assert_eq!(ok("xl sched-credit -p Pool-0"), ok("xl sched-credit"));
}

#[test]
fn sched_credit_sets_domain_and_pool_parameters() {
    let mut f = Fake::new();
    assert_eq!(
        xl_on(&mut f, "xl sched-credit -d guest -w 512 -c 50"),
        (0, String::new())
    );
    assert_eq!(
        xl_on(&mut f, "xl sched-credit --domain=web --weight=128"),
        (0, String::new())
    );
    let (_, out) = xl_on(&mut f, "xl sched-credit");
    assert!(out.contains("guest                                1    512   50\n"));
    assert!(out.contains("web                                  3    128    0\n"));
    assert_eq!(
        xl_on(&mut f, "xl sched-credit -s -t 10 -r 500 -m 100"),
        (0, String::new())
    );
    let (_, out) = xl_on(&mut f, "xl sched-credit -s");
    assert_eq!(
        out,
        "Cpupool Pool-0: tslice=10ms ratelimit=500us migration-delay=100us\n"
    );
    assert_eq!(
        xl_on(&mut f, "xl sched-credit -s --tslice_ms=5"),
        (0, String::new())
    );
    assert_eq!(f.pool.tslice_ms, 5);
    assert_eq!(f.pool.ratelimit_us, 500);
}

#[test]
fn sched_credit_errors() {
    err(
        "xl sched-credit -s -d guest",
        1,
        "Specifying a cpupool or schedparam is not allowed with domain options.\n",
    );
    err("xl sched-credit -w 5", 1, "Must specify a domain.\n");
    err(
        "xl sched-credit -t 5",
        1,
        "Must specify schedparam to set schedule parameter values.\n",
    );
    err("xl sched-credit -p nosuch", 1, "unknown cpupool 'nosuch'\n");
    err("xl sched-credit -d nosuch", 1, NOT_EXIST);
    err(
        "xl sched-credit -d guest -w heavy",
        1,
        "Invalid value for -w: 'heavy'.\n",
    );
    let mut f = Fake::new();
    f.fail.insert("sched_set", XlError::Invalid);
    assert_eq!(
        xl_on(&mut f, "xl sched-credit -d guest -w 0"),
        (1, "libxl_domain_sched_params_set failed.\n".into())
    );
}

// ---- uptime ----

#[test]
fn uptime_long_and_short() {
    assert_eq!(
        ok("xl uptime"),
        "Name                                ID Uptime\n\
Domain-0                             0  1:02:03\n\
guest                                1 1 day,  1:01:01\n\
web                                  3 2 days,  0:00:59\n"
    );
    assert_eq!(
        ok("xl uptime -s web"),
        " 13:05:09 up 2 days,  0:00, web (3)\n"
    );
    assert_eq!(ok("xl uptime -s 0"), " 13:05:09 up  1:02, Domain-0 (0)\n");
    err("xl uptime nosuch", 1, NOT_EXIST);
}

// ---- top ----

fn sample(now_ns: u64, guest_cpu_ns: u64) -> dom0_tools::xl::backend::TopSample {
    let f = Fake::new();
    let mut domains = f.domains.clone();
    domains.sort_by_key(|d| d.domid);
    domains[1].cpu_time_ns = guest_cpu_ns;
    dom0_tools::xl::backend::TopSample {
        now_ns,
        wallclock_secs: 13 * 3600 + 5 * 60 + 9,
        xen_version: "4.17.0".into(),
        tot_mem: 2 << 30,
        free_mem: 1 << 30,
        num_cpus: 4,
        cpu_hz: 2_893_012_000,
        domains,
    }
}

#[test]
fn top_batch_frames() {
    let mut f = Fake::new();
    f.samples = vec![
        sample(0, 1_000_000_000),
        sample(3_000_000_000, 2_500_000_000),
    ];
    f.top_frames_left = 5;
    let (rc, out) = xl_on(&mut f, "xl top -b -i 2 -d 3");
    assert_eq!(rc, 0);
    let frames: Vec<&str> = out.split("xentop - ").skip(1).collect();
    assert_eq!(frames.len(), 2);
    let second = frames[1];
    let lines: Vec<&str> = second.lines().collect();
    assert_eq!(lines[0], "13:05:09   Xen 4.17.0");
    assert_eq!(
        lines[1],
        "3 domains: 1 running, 1 blocked, 1 paused, 0 crashed, 0 dying, 0 shutdown "
    );
    assert_eq!(
        lines[2],
        "Mem: 2097152k total, 1048576k used, 1048576k free    CPUs: 4 @ 2893MHz"
    );
    assert_eq!(
        lines[3],
        "      NAME  STATE   CPU(sec) CPU(%)     MEM(k) MEM(%)  MAXMEM(k) MAXMEM(%) VCPUS NETS NETTX(k) NETRX(k) VBDS   VBD_OO   VBD_RD   VBD_WR  VBD_RSECT  VBD_WSECT SSID"
    );
    assert_eq!(
        lines[4],
        "  Domain-0 -----r         12    0.0     473088   22.6   no limit       n/a     2    0        0        0    0        0        0        0          0          0    0"
    );
    assert_eq!(
        lines[5],
        "     guest --b---          2   50.0     262144   12.5     262144      12.5     1    0        0        0    0        0        0        0          0          0    0"
    );
    assert!(lines[6].starts_with(
        "       web ----p-          0    0.0     131072    6.2     131072       6.2     2 "
    ));
    // The first frame has no previous sample: CPU(%) is 0.
    assert!(frames[0].contains("     guest --b---          1    0.0 "));
    assert_eq!(f.log, ["top-wait 3"]);
}

#[test]
fn top_interactive_frame_clears_and_stops_when_told() {
    let mut f = Fake::new();
    f.samples = vec![sample(0, 0), sample(1, 0)];
    f.top_frames_left = 1;
    let (rc, out) = xl_on(&mut f, "xl top");
    assert_eq!(rc, 0);
    assert_eq!(out.matches("\x1b[H\x1b[2J").count(), 2);
    assert!(out.ends_with("  Delay  Networks  vBds  VCPUs  Repeat header  Sort order  Quit\n"));
    assert_eq!(f.log, ["top-wait 3", "top-wait 3"]);
    err("xl top -d x", 1, "Invalid value for -d: 'x'.\n");
}

// ---- robustness ----

#[test]
fn no_input_panics() {
    let words = [
        "",
        "-",
        "--",
        "-a",
        "--all",
        "-w",
        "=",
        "a=b",
        "0",
        "-1",
        "4294967296",
        "all",
        "^all",
        "node:",
        "nodes:0-99999999999",
        "0-",
        "-0",
        "guest",
        "Domain-0",
        "nosuch",
        "\u{e9}",
        "-\u{e9}",
        "--=x",
        "--weight",
        "-wfoo",
        "256m",
        "1b",
        "t",
        ",",
        "^",
        "0-4294967295",
        "xvda",
        "xvd",
        "00:16:3e:00:00:01",
        "00:",
        "/d,raw,xvdb,w",
        "target=",
        "mac=zz",
        "rate=1@",
        ",,hdc:cdrom",
    ];
    let cmds = [
        "create",
        "list",
        "destroy",
        "shutdown",
        "reboot",
        "pause",
        "unpause",
        "console",
        "mem-max",
        "mem-set",
        "vcpu-list",
        "vcpu-pin",
        "vcpu-set",
        "info",
        "sched-credit",
        "domid",
        "domname",
        "debug-keys",
        "dmesg",
        "top",
        "uptime",
        "block-attach",
        "block-list",
        "block-detach",
        "network-attach",
        "network-list",
        "network-detach",
        "help",
        "x",
        "-N",
        "-v",
    ];
    for c in cmds {
        for a in words {
            for b in ["", "0", "-", "all", "guest"] {
                for d in ["", "1", "-f", "0-1"] {
                    let args: Vec<&str> = ["xl", c, a, b, d]
                        .into_iter()
                        .filter(|s| !s.is_empty())
                        .collect();
                    let _ = xl_args(&mut Fake::new(), &args);
                }
            }
        }
    }
}

#[test]
fn info_numa_prints_topology() {
    let out = ok("xl info -n");
    let want = "free_cpus              : 0
cpu_topology           :
cpu:    core    socket     node
  0:       0        0        0
  1:       1        0        0
  2:       2        0        0
  3:       3        0        0
device topology        :
device           node
No device topology data available
numa_info              :
node:    memsize    memfree    distances
   0:      2048       1025      10
xen_major              : 4
";
    assert!(out.contains(want), "{out}");
}

#[test]
fn run_line_splits_like_a_shell() {
    let mut f = Fake::new();
    let mut out = String::new();
    let rc = dom0_tools::xl::run_line(
        r#"xl create -q g.cfg 'name="my guest"' "extra=a b""#,
        &mut f,
        &mut out,
    );
    assert_eq!((rc, out.as_str()), (0, ""));
    assert!(
        f.log[0].contains(r#"extra_config: ["name=\"my guest\"", "extra=a b"]"#),
        "{:?}",
        f.log
    );
    assert_eq!(f.get(4).unwrap().name, "my guest");
    let mut out = String::new();
    assert_eq!(
        dom0_tools::xl::run_line("xl list 'oops", &mut f, &mut out),
        2
    );
    assert_eq!(out, "xl: unterminated quote\n");
}

// ---- block-attach / block-list / block-detach ----

const BLOCK_HEADER: &str =
    "Vdev  BE  handle state evt-ch ring-ref BE-path                       \n";

const NET_HEADER: &str =
    "Idx BE Mac Addr.         handle state evt-ch   tx-/rx-ring-ref BE-path                       \n";

#[test]
fn device_commands_are_in_the_table_with_xls_help() {
    let out = ok("xl help");
    for c in [
        "network-attach",
        "network-list",
        "network-detach",
        "block-attach",
        "block-list",
        "block-detach",
    ] {
        assert!(out.contains(&format!("\n {c:<19} ")), "{c} missing");
    }
    assert!(out.contains(" block-attach        Create a new virtual block device\n"));
    assert_eq!(
        ok("xl help block-detach"),
        "Usage: xl [-vtTf] block-detach [option] <Domain> <DevId>\n\n\
         Destroy a domain's virtual block device.\n\n\
         Options:\n\n-f, --force        do not wait for the domain to release the device\n"
    );
    assert_eq!(
        ok("xl help network-attach"),
        "Usage: xl [-vtTfN] network-attach <Domain> [type=<type>] [mac=<mac>] [bridge=<bridge>] \
         [ip=<ip>] [script=<script>] [backend=<BackDomain>] [vifname=<name>] [rate=<rate>] \
         [model=<model>] [accel=<accel>]\n\nCreate a new virtual network device.\n\n"
    );
    assert_eq!(
        ok("xl help block-list"),
        "Usage: xl [-vtT] block-list <Domain(s)>\n\nList virtual block devices for a domain.\n\n"
    );
    assert_eq!(BLOCK_HEADER.len(), 70);
    // -N only where xl allows it.
    err(
        "xl -N block-list guest",
        1,
        "command does not implement -N (dryrun) option\n",
    );
    let (rc, out) = xl("xl block-attach guest");
    assert_eq!(rc, 2);
    assert!(out.starts_with("'xl block-attach' requires at least 2 arguments.\n\n"));
    let (rc, out) = xl("xl network-detach guest");
    assert_eq!(rc, 2);
    assert!(out.starts_with("'xl network-detach' requires at least 2 arguments.\n\n"));
}

#[test]
fn block_list_prints_xl_columns() {
    assert_eq!(
        ok("xl block-list guest"),
        format!("{BLOCK_HEADER}51712 0   1      4     10     8        /local/domain/0/backend/vbd/1/51712\n")
    );
    // Several domains; one without disks; a bad one is reported and skipped.
    let (rc, out) = xl("xl block-list web nosuch 1");
    assert_eq!(rc, 0);
    assert_eq!(
        out,
        format!(
            "{BLOCK_HEADER}{NOT_EXIST}51712 0   1      4     10     8        /local/domain/0/backend/vbd/1/51712\n"
        )
    );
}

#[test]
fn block_attach_hotplugs_and_block_list_shows_it() {
    let mut f = Fake::new();
    let (rc, out) = xl_on(&mut f, "xl block-attach web /srv/web-data.img,raw,xvdb,w");
    assert_eq!((rc, out.as_str()), (0, ""));
    assert_eq!(
        f.log,
        ["block-attach 3 xvdb 51728 Some(\"/srv/web-data.img\") raw w"]
    );
    // Several spec components, key=value, a CD-ROM, an extended number.
    let (rc, _) = xl_on(
        &mut f,
        "xl block-attach 3 vdev=xvdc devtype=cdrom target=/iso/x.iso",
    );
    assert_eq!(rc, 0);
    let (rc, _) = xl_on(&mut f, "xl block-attach web phy:/dev/vg0/big xvdaa ro");
    assert_eq!(rc, 0);
    assert_eq!(
        f.log[1..],
        [
            "block-attach 3 xvdc 51744 Some(\"/iso/x.iso\") raw r",
            "block-attach 3 xvdaa 268442112 Some(\"/dev/vg0/big\") raw r",
        ]
    );
    let (_, out) = xl_on(&mut f, "xl block-list web");
    assert_eq!(
        out,
        format!(
            "{BLOCK_HEADER}\
             51728 0   3      1     -1     -1       /local/domain/0/backend/vbd/3/51728\n\
             51744 0   3      1     -1     -1       /local/domain/0/backend/vbd/3/51744\n\
             268442112 0   3      1     -1     -1       /local/domain/0/backend/vbd/3/268442112\n"
        )
    );
}

#[test]
fn block_attach_dry_run_prints_the_disk() {
    let mut f = Fake::new();
    let (rc, out) = xl_on(&mut f, "xl -N block-attach guest /srv/d.img,raw,xvdb,w");
    assert_eq!(rc, 0);
    assert_eq!(
        out,
        "disk: {\n    \"pdev_path\": \"/srv/d.img\",\n    \"vdev\": \"xvdb\",\n    \
         \"format\": \"raw\",\n    \"readwrite\": 1\n}\n\n"
    );
    let (_, out) = xl_on(&mut f, "xl -N block-attach guest ,,hdc:cdrom,r");
    assert_eq!(
        out,
        "disk: {\n    \"pdev_path\": \"\",\n    \"vdev\": \"hdc\",\n    \"format\": \"empty\",\n    \
         \"removable\": 1,\n    \"is_cdrom\": 1\n}\n\n"
    );
    assert!(f.log.is_empty(), "a dry run attaches nothing: {:?}", f.log);
}

#[test]
fn block_attach_errors() {
    err(
        "xl block-attach guest /srv/d.img,xvdb,w",
        1,
        "command line: config parsing error in disk specification: unknown value for format: \
         near `xvdb' in `/srv/d.img,xvdb,w'\n",
    );
    err(
        "xl block-attach guest /srv/d.img",
        1,
        "command line: config parsing error in disk specification: no vdev specified in `/srv/d.img'\n",
    );
    err(
        "xl block-attach guest /srv/d.img,raw,xvd,w",
        1,
        "Invalid or unsupported virtual disk identifier xvd\nlibxl_device_disk_add failed.\n",
    );
    err("xl block-attach nosuch /d,raw,xvdb", 1, NOT_EXIST);
    // xvda is already there.
    err(
        "xl block-attach guest /d,raw,xvda",
        1,
        "libxl_device_disk_add failed.\n",
    );
    let mut f = Fake::new();
    f.fail.insert("block_attach", XlError::NotImplemented);
    let (rc, out) = xl_on(&mut f, "xl block-attach guest /d,raw,xvdb");
    assert_eq!(
        (rc, out.as_str()),
        (
            1,
            "libxl_device_disk_add failed.: not implemented by Oxen\n"
        )
    );
}

#[test]
fn block_detach_by_name_or_number() {
    let mut f = Fake::new();
    let (rc, out) = xl_on(&mut f, "xl block-detach guest xvda");
    assert_eq!((rc, out.as_str()), (0, ""));
    assert_eq!(f.log, ["block-detach 1 51712 force=false"]);
    assert!(f.disks[&1].is_empty());
    let mut f = Fake::new();
    let (rc, _) = xl_on(&mut f, "xl block-detach -f 1 51712");
    assert_eq!(rc, 0);
    let (rc, _) = xl_on(&mut f, "xl block-attach 1 /d,raw,d0p1");
    assert_eq!(rc, 0);
    let (rc, _) = xl_on(&mut f, "xl block-detach --force guest xvda1");
    assert_eq!(rc, 0);
    assert_eq!(
        f.log,
        [
            "block-detach 1 51712 force=true",
            "block-attach 1 d0p1 51713 Some(\"/d\") raw w",
            "block-detach 1 51713 force=true",
        ]
    );
}

#[test]
fn block_detach_errors() {
    err(
        "xl block-detach guest xvdb",
        1,
        "Error: Device xvdb not connected.\n",
    );
    err(
        "xl block-detach guest floppy",
        1,
        "Error: Device floppy not connected.\n",
    );
    err("xl block-detach nosuch xvda", 1, NOT_EXIST);
    let mut f = Fake::new();
    f.fail.insert("block_detach", XlError::Failed);
    let (rc, out) = xl_on(&mut f, "xl block-detach guest xvda");
    assert_eq!(
        (rc, out.as_str()),
        (1, "libxl_device_disk_safe_remove failed.\n")
    );
    let (rc, out) = xl_on(&mut f, "xl block-detach -f guest xvda");
    assert_eq!(
        (rc, out.as_str()),
        (1, "libxl_device_disk_destroy failed.\n")
    );
    // A back end that cannot list disks still gets asked to detach.
    let mut f = Fake::new();
    f.fail.insert("block_list", XlError::NotImplemented);
    f.fail.insert("block_detach", XlError::NotImplemented);
    let (rc, out) = xl_on(&mut f, "xl block-detach guest xvda");
    assert_eq!(
        (rc, out.as_str()),
        (
            1,
            "libxl_device_disk_safe_remove failed.: not implemented by Oxen\n"
        )
    );
    // ... and block-list shows nothing for it, as xl does.
    let (rc, out) = xl_on(&mut f, "xl block-list guest");
    assert_eq!((rc, out.as_str()), (0, BLOCK_HEADER));
}

// ---- network-attach / network-list / network-detach ----

#[test]
fn network_list_prints_xl_columns() {
    assert_eq!(
        ok("xl network-list guest"),
        format!(
            "{NET_HEADER}0   0  00:16:3e:01:02:03     0     4     11   768/769         /local/domain/0/backend/vif/1/0\n"
        )
    );
    assert_eq!(ok("xl network-list web"), NET_HEADER);
    // xl gives up at a bad domain.
    err(
        "xl network-list nosuch guest",
        1,
        &format!("{NET_HEADER}{NOT_EXIST}"),
    );
}

#[test]
fn network_attach_with_settings_and_generated_mac() {
    let mut f = Fake::new();
    let (rc, out) = xl_on(
        &mut f,
        "xl network-attach guest bridge=xenbr1 mac=00:16:3e:aa:bb:cc rate=10Mb/s",
    );
    assert_eq!((rc, out.as_str()), (0, ""));
    let (rc, _) = xl_on(&mut f, "xl network-attach web");
    assert_eq!(rc, 0);
    assert_eq!(
        f.log,
        [
            "network-attach 1 devid=None mac=Some([0, 22, 62, 170, 187, 204]) bridge=xenbr1",
            "network-attach 3 devid=None mac=None bridge=xenbr0",
        ]
    );
    let want = dom0_tools::xlcfg::MacGenerator::new(0x0123_4567).next_mac();
    assert_eq!(want[..3], [0x00, 0x16, 0x3e]);
    assert_eq!(f.nics[&3][0].mac, want);
    assert_eq!(f.nics[&1][1].devid, 1, "the next free devid");
    let (_, out) = xl_on(&mut f, "xl network-list guest");
    assert!(out.ends_with(
        "1   0  00:16:3e:aa:bb:cc     1     1     -1    -1/-1          /local/domain/0/backend/vif/1/1\n"
    ));
}

#[test]
fn network_attach_dry_run_and_errors() {
    assert_eq!(
        ok("xl -N network-attach guest bridge=xenbr1 mac=00:16:3e:aa:bb:cc type=vif devid=4"),
        "vif: {\n    \"devid\": 4,\n    \"mac\": \"00:16:3e:aa:bb:cc\",\n    \
         \"bridge\": \"xenbr1\",\n    \"nictype\": \"vif\"\n}\n\n"
    );
    err(
        "xl network-attach guest colour=red",
        1,
        "unrecognized argument `colour=red'\n",
    );
    err(
        "xl network-attach guest mac=00:16",
        1,
        "Invalid parameter `mac'.\n",
    );
    err(
        "xl network-attach guest rate=fast",
        1,
        "command line: config parsing error in vif: invalid rate in `fast'\n",
    );
    err("xl network-attach nosuch", 1, NOT_EXIST);
    err(
        "xl network-attach guest devid=0",
        1,
        "libxl_device_nic_add failed.\n",
    );
}

#[test]
fn network_detach_by_devid_or_mac() {
    let mut f = Fake::new();
    let (rc, out) = xl_on(&mut f, "xl network-detach guest 0");
    assert_eq!((rc, out.as_str()), (0, ""));
    let (rc, _) = xl_on(&mut f, "xl network-attach guest mac=00:16:3e:0a:0b:0c");
    assert_eq!(rc, 0);
    let (rc, _) = xl_on(&mut f, "xl network-detach 1 00:16:3E:0A:0B:0C");
    assert_eq!(rc, 0);
    assert_eq!(
        f.log,
        [
            "network-detach 1 0",
            "network-attach 1 devid=None mac=Some([0, 22, 62, 10, 11, 12]) bridge=xenbr0",
            "network-detach 1 0",
        ]
    );
    err("xl network-detach guest 5", 1, "Unknown device 5.\n");
    err(
        "xl network-detach guest 00:16:3e:99:99:99",
        1,
        "Unknown device 00:16:3e:99:99:99.\n",
    );
    err("xl network-detach guest 0:1", 1, "Unknown device 0:1.\n");
    // As with xl's getopt, `-1` is an option unless after `--`.
    err(
        "xl network-detach guest -1",
        2,
        "option `1' not supported.\n",
    );
    err("xl network-detach guest -- -1", 1, "Unknown device -1.\n");
    err("xl network-detach nosuch 0", 1, NOT_EXIST);
    let mut f = Fake::new();
    f.fail.insert("network_detach", XlError::Failed);
    let (rc, out) = xl_on(&mut f, "xl network-detach guest 0");
    assert_eq!((rc, out.as_str()), (1, "libxl_device_nic_del failed.\n"));
}

// ---- Xen's own parser checks (tools/xl/check-xl-disk-parse and
// check-xl-vif-parse): `xl -N block-attach 0 ...` / `network-attach 0 ...`,
// stdout and status compared. ----

fn disk_json(fields: &[&str]) -> String {
    format!("disk: {{\n    {}\n}}\n\n", fields.join(",\n    "))
}

fn vif_json(fields: &[&str]) -> String {
    format!("vif: {{\n    {}\n}}\n\n", fields.join(",\n    "))
}

fn dry(cmd: &str, args: &[&str]) -> (i32, String) {
    let mut all = vec!["xl", "-N", cmd, "0"];
    all.extend_from_slice(args);
    xl_args(&mut Fake::new(), &all)
}

#[test]
fn xens_check_xl_disk_parse() {
    let (rc, _) = dry("block-attach", &["foo"]);
    assert_eq!(rc, 1);
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["/dev/vg/guest-volume,,hda"],
            &[
                r#""pdev_path": "/dev/vg/guest-volume""#,
                r#""vdev": "hda""#,
                r#""format": "raw""#,
                r#""readwrite": 1"#,
            ],
        ),
        (&["/dev/vg/guest-volume,raw,hda,rw"], &[]),
        (
            &["format=raw, vdev=hda, access=rw, target=/dev/vg/guest-volume"],
            &[],
        ),
        (
            &[
                "format=raw",
                "vdev=hda",
                "access=rw",
                "target=/dev/vg/guest-volume",
            ],
            &[],
        ),
        (&["raw:/dev/vg/guest-volume,hda,w"], &[]),
        (
            &["/root/image.iso,,hdc,cdrom"],
            &[
                r#""pdev_path": "/root/image.iso""#,
                r#""vdev": "hdc""#,
                r#""format": "raw""#,
                r#""removable": 1"#,
                r#""is_cdrom": 1"#,
            ],
        ),
        (&["/root/image.iso,,hdc,,cdrom"], &[]),
        (&["/root/image.iso,raw,hdc,devtype=cdrom"], &[]),
        (
            &["format=raw, vdev=hdc, access=ro, devtype=cdrom, target=/root/image.iso"],
            &[],
        ),
        (
            &[
                "format=raw",
                "vdev=hdc",
                "access=ro",
                "devtype=cdrom",
                "target=/root/image.iso",
            ],
            &[],
        ),
        (&["raw:/root/image.iso,hdc:cdrom,ro"], &[]),
        (
            &["backendtype=phy,vdev=xvdb,access=w,target=/dev/vg/guest-volume"],
            &[
                r#""pdev_path": "/dev/vg/guest-volume""#,
                r#""vdev": "xvdb""#,
                r#""backend": "phy""#,
                r#""format": "raw""#,
                r#""readwrite": 1"#,
            ],
        ),
        (
            &["devtype=cdrom,,,hdc"],
            &[
                r#""pdev_path": """#,
                r#""vdev": "hdc""#,
                r#""format": "empty""#,
                r#""removable": 1"#,
                r#""is_cdrom": 1"#,
            ],
        ),
        (&[",,hdc:cdrom,r"], &[]),
        (&[",hdc:cdrom,r"], &[]),
        (&["vdev=hdc,access=r,devtype=cdrom,target="], &[]),
        (&[",empty,hdc:cdrom,r"], &[]),
        (
            &["vdev=hdc,access=r,devtype=cdrom,format=empty"],
            &[
                r#""vdev": "hdc""#,
                r#""format": "empty""#,
                r#""removable": 1"#,
                r#""is_cdrom": 1"#,
            ],
        ),
        (&["vdev=hdc,access=r,devtype=cdrom"], &[]),
        (
            &["iscsi:iqn.2001-05.com.equallogic:0-8a0906-23fe93404-c82797962054a96d-examplehost,xvda,w"],
            &[
                r#""pdev_path": "iqn.2001-05.com.equallogic:0-8a0906-23fe93404-c82797962054a96d-examplehost""#,
                r#""vdev": "xvda""#,
                r#""format": "raw""#,
                r#""script": "block-iscsi""#,
                r#""readwrite": 1"#,
            ],
        ),
        (
            &["vdev=xvda,access=w,script=block-iscsi,target=iqn.2001-05.com.equallogic:0-8a0906-23fe93404-c82797962054a96d-examplehost"],
            &[],
        ),
        (
            &["drbd:app01,hda,w"],
            &[
                r#""pdev_path": "app01""#,
                r#""vdev": "hda""#,
                r#""format": "raw""#,
                r#""script": "block-drbd""#,
                r#""readwrite": 1"#,
            ],
        ),
        (
            &["discard", "vdev=hda", "target=/some/disk/image.raw"],
            &[
                r#""pdev_path": "/some/disk/image.raw""#,
                r#""vdev": "hda""#,
                r#""format": "raw""#,
                r#""readwrite": 1"#,
                r#""discard_enable": "True""#,
            ],
        ),
        (
            &["cdrom", "no-discard", "vdev=hda", "target=/some/disk/image.iso"],
            &[
                r#""pdev_path": "/some/disk/image.iso""#,
                r#""vdev": "hda""#,
                r#""format": "raw""#,
                r#""removable": 1"#,
                r#""is_cdrom": 1"#,
                r#""discard_enable": "False""#,
            ],
        ),
        (
            &["trusted", "vdev=hda", "target=/some/disk/image.raw"],
            &[
                r#""pdev_path": "/some/disk/image.raw""#,
                r#""vdev": "hda""#,
                r#""format": "raw""#,
                r#""readwrite": 1"#,
                r#""trusted": "True""#,
            ],
        ),
        (
            &["untrusted", "vdev=hda", "target=/some/disk/image.raw"],
            &[
                r#""pdev_path": "/some/disk/image.raw""#,
                r#""vdev": "hda""#,
                r#""format": "raw""#,
                r#""readwrite": 1"#,
                r#""trusted": "False""#,
            ],
        ),
    ];
    // An empty field list means "as the case before".
    let mut want = String::new();
    for (args, fields) in cases {
        if !fields.is_empty() {
            want = disk_json(fields);
        }
        assert_eq!(dry("block-attach", args), (0, want.clone()), "{args:?}");
    }
}

#[test]
fn xens_check_xl_vif_parse() {
    for bad in [
        "foo",
        "rate=foo",
        "rate=10MB",
        "rate=10MB/m",
        "rate=10ZB",
        "rate=10ZB/s",
        "rate=10ZB/m",
        "rate=4294967296b/s",
        "rate=4294967296Kb/s",
        "rate=4294967296Mb/s",
        "rate=4294967296Gb/s",
        "rate=0B/s",
        "rate=10Mb/s@foo",
        "rate=10Mb/s@10h",
        "rate=10MB/s@foo",
        "rate=10MB/s@10h",
        "rate=1B/s@4294967296us",
        "rate=1B/s@4294968ms",
        "rate=1B/s@4295s",
        "rate=1B/s@0us",
        "rate=4294967295GB/s@5us",
        "rate=4296MB/s@4294s",
        "rate=@",
    ] {
        let (rc, out) = dry("network-attach", &[bad]);
        assert_eq!(rc, 1, "{bad}: {out}");
        assert!(!out.starts_with("vif:"), "{bad}: {out}");
    }
    let rate = |bytes: u64, usecs: u32| {
        vif_json(&[
            &format!(r#""rate_bytes_per_interval": {bytes}"#),
            &format!(r#""rate_interval_usecs": {usecs}"#),
        ])
    };
    for (args, want) in [
        (&["rate=16000000b/s"][..], rate(100_000, 50_000)),
        (&["rate=16000000b/s@50ms"], rate(100_000, 50_000)),
        (&["rate=2000000B/s"], rate(100_000, 50_000)),
        (&["rate=2000000B/s@50ms"], rate(100_000, 50_000)),
        (&["rate=16Kb/s"], rate(100, 50_000)),
        (&["rate=16Kb/s@50ms"], rate(100, 50_000)),
        (&["rate=2KB/s"], rate(100, 50_000)),
        (&["rate=2KB/s@50ms"], rate(100, 50_000)),
        (&["rate=16Mb/s"], rate(100_000, 50_000)),
        (&["rate=16Mb/s@50ms"], rate(100_000, 50_000)),
        (&["rate=2MB/s"], rate(100_000, 50_000)),
        (&["rate=2MB/s@50ms"], rate(100_000, 50_000)),
        (&["rate=8Gb/s"], rate(50_000_000, 50_000)),
        (&["rate=8Gb/s@50ms"], rate(50_000_000, 50_000)),
        (&["rate=1GB/s"], rate(50_000_000, 50_000)),
        (&["rate=1GB/s@50ms"], rate(50_000_000, 50_000)),
        (&["rate=80Mb/s@1s"], rate(10_000_000, 1_000_000)),
        (&["rate=10MB/s@1s"], rate(10_000_000, 1_000_000)),
        (&["trusted"], vif_json(&[r#""trusted": "True""#])),
        (&["untrusted"], vif_json(&[r#""trusted": "False""#])),
    ] {
        assert_eq!(dry("network-attach", args), (0, want), "{args:?}");
    }
}

// ---- save, restore ----

#[test]
fn save_passes_what_becomes_of_the_domain_and_restore_its_file_and_config() {
    let mut f = Fake::new();
    let (rc, out) = xl_on(&mut f, "xl save guest /mnt/vda/g.save");
    assert_eq!(
        (rc, out.as_str()),
        (
            0,
            "Saving to /mnt/vda/g.save new xl format (info 0x2/0x0/1)\n"
        )
    );
    let (rc, _) = xl_on(&mut f, "xl save -c 3 /mnt/vda/h.save /etc/xen/h.cfg");
    assert_eq!(rc, 0);
    let (rc, _) = xl_on(&mut f, "xl save -p web /mnt/vda/h.save");
    assert_eq!(rc, 0);
    let (rc, _) = xl_on(&mut f, "xl restore /mnt/vda/g.save");
    assert_eq!(rc, 0);
    let (rc, _) = xl_on(&mut f, "xl restore -p other.cfg /mnt/vda/g.save");
    assert_eq!(rc, 0);
    let saves: Vec<&String> = f
        .log
        .iter()
        .filter(|l| l.starts_with("save") || l.starts_with("restore"))
        .collect();
    assert_eq!(
        saves,
        [
            "save 1 /mnt/vda/g.save None Destroy",
            "save 3 /mnt/vda/h.save Some(\"/etc/xen/h.cfg\") Run",
            "save 3 /mnt/vda/h.save None Pause",
            "restore /mnt/vda/g.save None paused=false",
            "restore /mnt/vda/g.save Some(\"other.cfg\") paused=true",
        ]
    );
}

#[test]
fn save_and_restore_refuse_bad_arguments_and_report_failures() {
    let (rc, out) = xl("xl save guest");
    assert_eq!(rc, 2, "{out}");
    assert!(
        out.starts_with("'xl save' requires at least 2 arguments."),
        "{out}"
    );
    let (rc, out) = xl("xl restore");
    assert_eq!(rc, 2, "{out}");
    let (rc, _) = xl("xl restore a b c");
    assert_eq!(rc, 2);
    err("xl save nosuch /mnt/vda/x.save", 1, NOT_EXIST);
    let mut f = Fake::new();
    f.fail.insert(
        "restore",
        XlError::Message("/mnt/vda/x.save: not an xl save file (no xl header)".into()),
    );
    let (rc, out) = xl_on(&mut f, "xl restore /mnt/vda/x.save");
    assert_eq!(
        (rc, out.as_str()),
        (1, "/mnt/vda/x.save: not an xl save file (no xl header)\n")
    );
}

#[test]
fn migrate_passes_its_target_and_options_and_migrate_receive_waits() {
    let mut f = Fake::new();
    assert_eq!(xl_on(&mut f, "xl migrate guest 10.0.3.2").0, 0);
    assert_eq!(xl_on(&mut f, "xl migrate -p -C /etc/xen/w.cfg web 10.0.3.2:9000").0, 0);
    assert_eq!(xl_on(&mut f, "xl migrate-receive").0, 0);
    assert_eq!(xl_on(&mut f, "xl migrate-receive -p").0, 0);
    let calls: Vec<&String> = f.log.iter().filter(|l| l.starts_with("migrate")).collect();
    assert_eq!(
        calls,
        [
            "migrate 1 10.0.3.2 None paused=false",
            "migrate 3 10.0.3.2:9000 Some(\"/etc/xen/w.cfg\") paused=true",
            "migrate-receive paused=false",
            "migrate-receive paused=true",
        ]
    );
    assert_eq!(xl("xl migrate guest").0, 2);
    assert_eq!(xl("xl migrate-receive extra").0, 2);
    let (rc, out) = xl("xl migrate -s ssh guest host");
    assert_eq!(rc, 1);
    assert!(out.contains("Oxen has no ssh"), "{out}");
}
