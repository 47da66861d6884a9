//! # `xl` — the toolstack's command-line front end
//!
//! Xen's `xl`, with its command names, flags, usage text, output formats and
//! error lines (Xen 4.17's tools/xl), as pure `no_std` + `alloc` code: the
//! machine is reached only through [`XlBackend`], which Dom0 implements on
//! top of hypercalls and xenstore and the host tests fake in memory.
//!
//! [`run`] (or [`run_line`], which splits a shell line first) takes one
//! command line already split into words (`xl` itself may
//! lead or be left out), writes everything `xl` would print on stdout and
//! stderr to one [`core::fmt::Write`], and returns `xl`'s exit status: 0 on
//! success, 1 on failure, 2 for usage errors (bad option, missing
//! arguments), as `xl` does.
//!
//! Commands: `create` (`-c`, `-p`, `-q`, `-n`, `-f FILE`, `key=value`
//! overrides), `list` (`-l`, `-v`, `-Z`, `-c`, `-n`), `destroy`,
//! `shutdown`/`reboot` (`-a`, `-w`, `-F`), `pause`, `unpause`, `console`,
//! `mem-max`, `mem-set`, `vcpu-list`, `vcpu-pin`, `vcpu-set`, `info`,
//! `sched-credit`, `domid`, `domname`, `debug-keys`, `dmesg` (`-c`), `top`,
//! `uptime` (`-s`), the device hot-plug commands `block-attach` (disk spec
//! components as in xl.cfg's `disk`, [`crate::xlcfg::disk`]), `block-list`,
//! `block-detach` (`-f`; vdev name or number), `network-attach` (vif
//! settings as in xl.cfg's `vif`, [`crate::xlcfg::vif`]), `network-list`,
//! `network-detach` (devid or MAC), and `help`. A unique prefix of a name
//! works (`xl li`).
//!
//! A domain argument is an id if it is all digits, else a name; one that
//! does not exist gets `Error: Domain 'x' does not exist.` (the line
//! `xl list x` prints; for other commands `xl` itself says
//! `x is an invalid domain identifier (rc=-6)`, which we replace by the
//! clearer line everywhere).
//!
//! Modules: [`backend`] (the trait and its data), [`cmdtable`] (command
//! table, lookup, help), [`getopt`] (option parsing), [`parse`] (memory
//! sizes, numbers, domain qualifiers), [`cpumap`] (cpu lists), [`format`]
//! (every output format), and `commands` (the commands themselves).

pub mod backend;
pub mod cmdtable;
mod commands;
pub mod cpumap;
pub mod format;
pub mod getopt;
pub mod parse;

use core::fmt::Write;

pub use backend::{XlBackend, XlError, XlResult};

/// Runs a command line as Dom0's shell reads it: split into words as `sh`
/// would ([`parse::split_args`]: quotes group words), then [`run`]. An
/// unterminated quote is a usage error (status 2).
pub fn run_line(line: &str, backend: &mut dyn XlBackend, out: &mut dyn Write) -> i32 {
    match parse::split_args(line) {
        Ok(words) => {
            let args: alloc::vec::Vec<&str> = words.iter().map(|w| w.as_str()).collect();
            run(&args, backend, out)
        }
        Err(_) => {
            let _ = writeln!(out, "xl: unterminated quote");
            2
        }
    }
}

/// Runs one `xl` command line (`args`: the words, with or without a leading
/// `xl`), printing to `out`; returns the exit status.
pub fn run(args: &[&str], backend: &mut dyn XlBackend, out: &mut dyn Write) -> i32 {
    let args = match args.first() {
        Some(&"xl") => &args[1..],
        _ => args,
    };
    // Global options (xl.c main: getopt "+vfNtT").
    let mut dryrun = false;
    let mut i = 0;
    while i < args.len() {
        let a = args[i];
        if a == "--" {
            i += 1;
            break;
        }
        if a.len() < 2 || !a.starts_with('-') {
            break;
        }
        for c in a[1..].chars() {
            match c {
                'v' | 'f' | 't' | 'T' => {}
                'N' => dryrun = true,
                _ => {
                    let _ = writeln!(out, "unknown global option");
                    return 1;
                }
            }
        }
        i += 1;
    }
    let args = &args[i..];
    let Some(&cmd) = args.first() else {
        let _ = cmdtable::help(out, None);
        return 1;
    };
    let rest = &args[1..];
    match cmdtable::lookup(cmd) {
        Some(spec) => {
            if dryrun && !spec.can_dryrun {
                let _ = writeln!(out, "command does not implement -N (dryrun) option");
                return 1;
            }
            let mut ctx = commands::Ctx {
                be: backend,
                out,
                dryrun,
            };
            ctx.dispatch(spec.name, rest)
        }
        None if cmd == "help" => {
            let _ = cmdtable::help(out, rest.first().copied());
            0
        }
        None => {
            let _ = writeln!(out, "command not implemented");
            1
        }
    }
}
