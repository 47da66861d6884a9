//! `xl`'s command table (names, one-line descriptions, usage lines and
//! option help, as Xen 4.17's tools/xl/xl_cmdtable.c has them, for the
//! commands Oxen implements), command lookup (an exact name, or an
//! unambiguous prefix: `xl li` is `xl list`) and `xl help`'s output.

use core::fmt::{self, Write};

/// One command (`struct cmd_spec`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CmdSpec {
    /// Its name.
    pub name: &'static str,
    /// Accepts the global `-N` (dry run).
    pub can_dryrun: bool,
    /// Changes something (accepts the global `-f`).
    pub modifies: bool,
    /// One-line description.
    pub desc: &'static str,
    /// The usage line after the name.
    pub usage: &'static str,
    /// Option help, if any.
    pub options: Option<&'static str>,
}

const fn cmd(
    name: &'static str,
    can_dryrun: bool,
    modifies: bool,
    desc: &'static str,
    usage: &'static str,
    options: Option<&'static str>,
) -> CmdSpec {
    CmdSpec {
        name,
        can_dryrun,
        modifies,
        desc,
        usage,
        options,
    }
}

/// The commands, in xl_cmdtable.c's order.
pub const CMD_TABLE: &[CmdSpec] = &[
    cmd(
        "create",
        true,
        true,
        "Create a domain from config file <filename>",
        "<ConfigFile> [options] [vars]",
        Some(
            "-h                      Print this help.\n\
-p                      Leave the domain paused after it is created.\n\
-c                      Connect to the console after the domain is created.\n\
-f FILE, --defconfig=FILE\n                     Use the given configuration file.\n\
-q, --quiet             Quiet.\n\
-n, --dryrun            Dry run - prints the resulting configuration\n\
\x20                        (deprecated in favour of global -N option).\n\
-d                      Enable debug messages.\n\
-F                      Run in foreground until death of the domain.\n\
-e                      Do not wait in the background for the death of the domain.\n\
-V, --vncviewer         Connect to the VNC display after the domain is created.\n\
-A, --vncviewer-autopass\n\
\x20                       Pass VNC password to viewer via stdin.",
        ),
    ),
    cmd(
        "list",
        false,
        false,
        "List information about all/some domains",
        "[options] [Domain]\n",
        Some(
            "-l, --long              Output all VM details\n\
-v, --verbose           Prints out UUIDs and security context\n\
-Z, --context           Prints out security context\n\
-c, --cpupool           Prints the cpupool the domain is in\n\
-n, --numa              Prints out NUMA node affinity",
        ),
    ),
    cmd(
        "destroy",
        false,
        true,
        "Terminate a domain immediately",
        "[options] <Domain>\n",
        Some(
            "-f                      Permit destroying domain 0, which will only succeed\n\
\x20                       when run from disaggregated toolstack domain with a\n\
\x20                       hardware domain distinct from domain 0.",
        ),
    ),
    cmd(
        "shutdown",
        false,
        true,
        "Issue a shutdown signal to a domain",
        "[options] <-a|Domain>",
        Some(
            "-a, --all               Shutdown all guest domains.\n\
-h                      Print this help.\n\
-F                      Fallback to ACPI power event for HVM guests with\n\
\x20                       no PV drivers.\n\
-w, --wait              Wait for guest(s) to shutdown.\n",
        ),
    ),
    cmd(
        "reboot",
        false,
        true,
        "Issue a reboot signal to a domain",
        "[options] <-a|Domain>",
        Some(
            "-a, --all               Shutdown all guest domains.\n\
-h                      Print this help.\n\
-F                      Fallback to ACPI reset event for HVM guests with\n\
\x20                       no PV drivers.\n\
-w, --wait              Wait for guest(s) to reboot.\n",
        ),
    ),
    cmd(
        "pause",
        false,
        true,
        "Pause execution of a domain",
        "<Domain>",
        None,
    ),
    cmd(
        "unpause",
        false,
        true,
        "Unpause a paused domain",
        "<Domain>",
        None,
    ),
    cmd(
        "console",
        false,
        false,
        "Attach to domain's console",
        "[options] <Domain>\n\
-t <type>       console type, pv , serial or vuart\n\
-n <number>     console number",
        None,
    ),
    cmd(
        "mem-max",
        false,
        true,
        "Set the maximum amount reservation for a domain",
        "<Domain> <MemMB['b'[bytes]|'k'[KB]|'m'[MB]|'g'[GB]|'t'[TB]]>",
        None,
    ),
    cmd(
        "save",
        false,
        true,
        "Save a domain state to restore later",
        "[options] <Domain> <CheckpointFile> [<ConfigFile>]",
        Some(
            "-h  Print this help.\n\
-c  Leave domain running after creating the snapshot.\n\
-p  Leave domain paused after creating the snapshot.\n",
        ),
    ),
    cmd(
        "restore",
        false,
        true,
        "Restore a domain from a saved state",
        "[options] [<ConfigFile>] <CheckpointFile>",
        Some(
            "-h                       Print this help.\n\
-p                       Do not unpause domain after restoring it.\n\
-e                       Do not wait in the background for the death of the domain.\n\
-d                       Enable debug messages.\n",
        ),
    ),
    cmd(
        "migrate",
        false,
        true,
        "Migrate a domain to another host",
        "[options] <Domain> <host>",
        Some(
            "-h              Print this help.\n\
-C <config>     Send <config> instead of config file from creation.\n\
-p              Do not unpause domain after migrating it.\n\
<host>          The target's Dom0 address, ADDR[:PORT] (port 8002 by\n\
\x20               default), where `xl migrate-receive` waits.\n",
        ),
    ),
    cmd(
        "migrate-receive",
        false,
        true,
        "Receive a domain migrated from another host",
        "[options]",
        Some(
            "-h              Print this help.\n\
-p              Do not unpause the domain once received.\n",
        ),
    ),
    cmd(
        "mem-set",
        false,
        true,
        "Set the current memory usage for a domain",
        "<Domain> <MemMB['b'[bytes]|'k'[KB]|'m'[MB]|'g'[GB]|'t'[TB]]>",
        None,
    ),
    cmd(
        "vcpu-list",
        false,
        false,
        "List the VCPUs for all/some domains",
        "[Domain, ...]",
        None,
    ),
    cmd(
        "vcpu-pin",
        true,
        true,
        "Set which CPUs a VCPU can use",
        "[option] <Domain> <VCPU|all> <Hard affinity|-|all> <Soft affinity|-|all>",
        Some("-f, --force        undo an override pinning done by the kernel"),
    ),
    cmd(
        "vcpu-set",
        false,
        true,
        "Set the number of active VCPUs allowed for the domain",
        "[option] <Domain> <vCPUs>",
        Some("-i, --ignore-host  Don't limit the vCPU based on the host CPU count"),
    ),
    cmd(
        "info",
        false,
        false,
        "Get information about Xen host",
        "-n, --numa         List host NUMA topology information",
        None,
    ),
    cmd(
        "sched-credit",
        false,
        true,
        "Get/set credit scheduler parameters",
        "[-d <Domain> [-w[=WEIGHT]|-c[=CAP]]] [-s [-t TSLICE] [-r RATELIMIT] [-m DELAY]] [-p CPUPOOL]",
        Some(
            "-d DOMAIN, --domain=DOMAIN        Domain to modify\n\
-w WEIGHT, --weight=WEIGHT        Weight (int)\n\
-c CAP, --cap=CAP                 Cap (int)\n\
-s         --schedparam           Query / modify scheduler parameters\n\
-t TSLICE, --tslice_ms=TSLICE     Set the timeslice, in milliseconds\n\
-r RLIMIT, --ratelimit_us=RLIMIT  Set the scheduling rate limit, in microseconds\n\
-m DLY, --migration_delay_us=DLY  Set the migration delay, in microseconds\n\
-p CPUPOOL, --cpupool=CPUPOOL     Restrict output to CPUPOOL",
        ),
    ),
    cmd(
        "domid",
        false,
        false,
        "Convert a domain name to domain id",
        "<DomainName>",
        None,
    ),
    cmd(
        "domname",
        false,
        false,
        "Convert a domain id to domain name",
        "<DomainId>",
        None,
    ),
    cmd(
        "debug-keys",
        false,
        true,
        "Send debug keys to Xen",
        "<Keys>",
        None,
    ),
    cmd(
        "dmesg",
        false,
        false,
        "Read and/or clear dmesg buffer",
        "[-c]",
        Some("  -c                        Clear dmesg buffer as well as printing it"),
    ),
    cmd(
        "top",
        false,
        false,
        "Monitor a host and the domains in real time",
        "",
        None,
    ),
    cmd(
        "network-attach",
        true,
        true,
        "Create a new virtual network device",
        "<Domain> [type=<type>] [mac=<mac>] [bridge=<bridge>] \
         [ip=<ip>] [script=<script>] [backend=<BackDomain>] [vifname=<name>] \
         [rate=<rate>] [model=<model>] [accel=<accel>]",
        None,
    ),
    cmd(
        "network-list",
        false,
        false,
        "List virtual network interfaces for a domain",
        "<Domain(s)>",
        None,
    ),
    cmd(
        "network-detach",
        false,
        true,
        "Destroy a domain's virtual network device",
        "<Domain> <DevId|mac>",
        None,
    ),
    cmd(
        "block-attach",
        true,
        true,
        "Create a new virtual block device",
        "<Domain> <disk-spec-component(s)>...",
        None,
    ),
    cmd(
        "block-list",
        false,
        false,
        "List virtual block devices for a domain",
        "<Domain(s)>",
        None,
    ),
    cmd(
        "block-detach",
        false,
        true,
        "Destroy a domain's virtual block device",
        "[option] <Domain> <DevId>",
        Some("-f, --force        do not wait for the domain to release the device"),
    ),
    cmd(
        "uptime",
        false,
        false,
        "Print uptime for all/some domains",
        "[-s] [Domain]",
        None,
    ),
];

/// Finds a command by its name or an unambiguous prefix of it
/// (xl_cmdtable.c `cmdtable_lookup`); an exact name wins even if it
/// prefixes another.
pub fn lookup(s: &str) -> Option<&'static CmdSpec> {
    let mut found = None;
    let mut count = 0;
    for c in CMD_TABLE {
        if c.name.starts_with(s) {
            if c.name.len() == s.len() {
                return Some(c);
            }
            found = Some(c);
            count += 1;
        }
    }
    if count == 1 {
        found
    } else {
        None
    }
}

/// `xl help` (no command, or `help`): the full list; `xl help CMD`: its
/// usage (xl.c `help`).
pub fn help(out: &mut dyn Write, command: Option<&str>) -> fmt::Result {
    match command {
        None | Some("help") => {
            out.write_str("Usage xl [-vfNtT] <subcommand> [args]\n\n")?;
            out.write_str("xl full list of subcommands:\n\n")?;
            for c in CMD_TABLE {
                write!(out, " {:<19} ", c.name)?;
                if c.name.len() > 19 {
                    write!(out, "\n {:<19} ", "")?;
                }
                writeln!(out, "{}", c.desc)?;
            }
            Ok(())
        }
        Some(name) => match lookup(name) {
            Some(c) => {
                write!(
                    out,
                    "Usage: xl [-vtT{}{}] {} {}\n\n{}.\n\n",
                    if c.modifies { "f" } else { "" },
                    if c.can_dryrun { "N" } else { "" },
                    c.name,
                    c.usage,
                    c.desc
                )?;
                if let Some(o) = c.options {
                    write!(out, "Options:\n\n{o}\n")?;
                }
                Ok(())
            }
            None => writeln!(out, "command \"{name}\" not implemented"),
        },
    }
}
