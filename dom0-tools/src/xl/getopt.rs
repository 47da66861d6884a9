//! Option parsing as `xl` does it: GNU `getopt_long` (options may follow
//! arguments, `--` ends them, `-abc` clusters, `-wVALUE` / `-w VALUE`,
//! `--name=VALUE` / `--name VALUE`, unambiguous long-name prefixes) wrapped
//! the way xl_utils.c `def_getopt` wraps it: `-h`/`--help` prints the
//! command's help and succeeds, an unknown option or a missing value is
//! `option `x' not supported.` (exit 2), and too few arguments is
//! `'xl CMD' requires at least N argument(s).` plus the help (exit 2).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use super::cmdtable;

/// One long option: its name, whether it takes a value, and the short
/// option it stands for.
pub type LongOpt = (&'static str, bool, char);

/// What the command line held.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// Options in order: the short letter and its value.
    pub opts: Vec<(char, Option<&'a str>)>,
    /// The other arguments, in order.
    pub args: Vec<&'a str>,
}

impl<'a> Parsed<'a> {
    /// Was this option given?
    pub fn has(&self, c: char) -> bool {
        self.opts.iter().any(|(o, _)| *o == c)
    }

    /// The last value given for this option.
    pub fn value(&self, c: char) -> Option<&'a str> {
        self.opts
            .iter()
            .rev()
            .find(|(o, _)| *o == c)
            .and_then(|(_, v)| *v)
    }
}

/// How parsing ended when it did not yield options: the exit status to
/// return (its output is already written).
#[derive(Debug, PartialEq, Eq)]
pub struct Exit(pub i32);

/// Parses `argv` (the words after the command name) with short options
/// `shorts` (getopt syntax: a letter, `:` after it if it takes a value) and
/// `longs`, for command `cmd` needing at least `reqargs` arguments.
pub fn getopt<'a>(
    argv: &[&'a str],
    shorts: &str,
    longs: &[LongOpt],
    cmd: &str,
    reqargs: usize,
    out: &mut dyn Write,
) -> Result<Parsed<'a>, Exit> {
    let mut p = Parsed::default();
    let mut i = 0;
    let short_arg = |c: char| -> Option<bool> {
        if c == 'h' {
            return Some(false);
        }
        let mut it = shorts.chars().peekable();
        while let Some(x) = it.next() {
            let takes = it.peek() == Some(&':');
            if takes {
                it.next();
            }
            if x == c && x != ':' {
                return Some(takes);
            }
        }
        None
    };
    let unsupported = |out: &mut dyn Write, what: &str| {
        let _ = writeln!(out, "option `{what}' not supported.");
        Exit(2)
    };
    while i < argv.len() {
        let a = argv[i];
        i += 1;
        if a == "--" {
            p.args.extend_from_slice(&argv[i..]);
            break;
        }
        if let Some(body) = a.strip_prefix("--") {
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let all: Vec<LongOpt> = longs
                .iter()
                .copied()
                .chain(core::iter::once(("help", false, 'h')))
                .collect();
            let exact = all.iter().find(|l| l.0 == name);
            let pre: Vec<&LongOpt> = all.iter().filter(|l| l.0.starts_with(name)).collect();
            let chosen = match exact {
                Some(l) => Some(l),
                None if pre.len() == 1 => Some(pre[0]),
                // Several long names sharing a prefix but meaning the same
                // option are fine (getopt_long checks that too).
                None if !pre.is_empty() && pre.iter().all(|l| l.2 == pre[0].2) => Some(pre[0]),
                None => None,
            };
            let Some(&(_, takes, c)) = chosen else {
                return Err(unsupported(out, a));
            };
            let val = if takes {
                match inline {
                    Some(v) => Some(v),
                    None if i < argv.len() => {
                        i += 1;
                        Some(argv[i - 1])
                    }
                    None => return Err(unsupported(out, a)),
                }
            } else if inline.is_some() {
                return Err(unsupported(out, a));
            } else {
                None
            };
            if c == 'h' {
                let _ = cmdtable::help(out, Some(cmd));
                return Err(Exit(0));
            }
            p.opts.push((c, val));
            continue;
        }
        if a.len() > 1 && a.starts_with('-') {
            let body = &a[1..];
            for (k, c) in body.char_indices() {
                let Some(takes) = short_arg(c) else {
                    let mut s = String::new();
                    s.push(c);
                    return Err(unsupported(out, &s));
                };
                if c == 'h' {
                    let _ = cmdtable::help(out, Some(cmd));
                    return Err(Exit(0));
                }
                if takes {
                    let rest = &body[k + c.len_utf8()..];
                    let val = if !rest.is_empty() {
                        rest
                    } else if i < argv.len() {
                        i += 1;
                        argv[i - 1]
                    } else {
                        let mut s = String::new();
                        s.push(c);
                        return Err(unsupported(out, &s));
                    };
                    p.opts.push((c, Some(val)));
                    break;
                }
                p.opts.push((c, None));
            }
            continue;
        }
        p.args.push(a);
    }
    if p.args.len() < reqargs {
        let _ = write!(
            out,
            "'xl {cmd}' requires at least {reqargs} argument{}.\n\n",
            if reqargs > 1 { "s" } else { "" }
        );
        let _ = cmdtable::help(out, Some(cmd));
        return Err(Exit(2));
    }
    Ok(p)
}
