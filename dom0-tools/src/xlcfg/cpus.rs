//! Xen's physical-CPU list syntax, as `xl` reads `cpus=` (vCPU hard
//! affinity): comma-separated items, each `N`, `N-M` or `all`, optionally
//! prefixed by `^` to remove rather than add: `"0-3,^2"`, `"all,^0"`.
//! Empty items are skipped (`"1,,2"`), as `strtok` skips them.
//!
//! What it owns: [`CpuSet`] and [`parse_cpu_list`]. NUMA node items
//! (`node:N`, `nodes:N-M`) are refused with a clear message: Oxen has no
//! NUMA topology to map them onto. CPU numbers must be below [`MAX_CPUS`].

use alloc::collections::BTreeSet;
use alloc::format;
use alloc::string::String;

/// CPU numbers must be below this (Xen's largest `NR_CPUS`).
pub const MAX_CPUS: u32 = 4096;

/// A set of physical CPUs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CpuSet {
    /// Exactly these CPUs.
    Only(BTreeSet<u32>),
    /// Every CPU but these (`all`, `all,^0`).
    AllExcept(BTreeSet<u32>),
}

impl CpuSet {
    /// Whether `cpu` is in the set.
    pub fn contains(&self, cpu: u32) -> bool {
        match self {
            CpuSet::Only(s) => s.contains(&cpu),
            CpuSet::AllExcept(s) => !s.contains(&cpu),
        }
    }

    /// Every CPU.
    pub fn all() -> Self {
        CpuSet::AllExcept(BTreeSet::new())
    }

    fn add(&mut self, cpu: u32) {
        match self {
            CpuSet::Only(s) => {
                s.insert(cpu);
            }
            CpuSet::AllExcept(s) => {
                s.remove(&cpu);
            }
        }
    }

    fn remove(&mut self, cpu: u32) {
        match self {
            CpuSet::Only(s) => {
                s.remove(&cpu);
            }
            CpuSet::AllExcept(s) => {
                s.insert(cpu);
            }
        }
    }
}

/// C's `strtoul(s, &end, 10)` for a CPU number: digits only here (no
/// sign or blanks); returns the number and the rest.
fn number(s: &str) -> Option<(u64, &str)> {
    let n = s.bytes().take_while(u8::is_ascii_digit).count();
    if n == 0 {
        return None;
    }
    let v = s[..n].parse::<u64>().unwrap_or(u64::MAX);
    Some((v, &s[n..]))
}

/// `xl`'s `parse_range`: `N` or `N-M` with `N <= M`, nothing after.
fn range(s: &str) -> Option<(u64, u64)> {
    let (a, rest) = number(s)?;
    let (b, rest) = match rest.strip_prefix('-') {
        Some(r) => {
            let (b, rest) = number(r)?;
            if b < a {
                return None;
            }
            (b, rest)
        }
        None => (a, rest),
    };
    rest.is_empty().then_some((a, b))
}

/// Parses a CPU list (`"0-3,^2"`). The error is xl's message for the
/// offending item.
pub fn parse_cpu_list(list: &str) -> Result<CpuSet, String> {
    let mut set = CpuSet::Only(BTreeSet::new());
    for item in list.split(',').filter(|i| !i.is_empty()) {
        let (not, rest) = match item.strip_prefix('^') {
            Some(r) => (true, r),
            None => (false, item),
        };
        if rest.starts_with("node:") || rest.starts_with("nodes:") {
            return Err(format!(
                "NUMA node affinity (\"{item}\") is not supported by Oxen."
            ));
        }
        if rest == "all" {
            if not {
                return Err(String::from("Can't combine \"^\" and \"all\"."));
            }
            set = CpuSet::all();
            continue;
        }
        let Some((a, b)) = range(rest) else {
            return Err(format!("Invalid pcpu range: {rest}."));
        };
        if b >= u64::from(MAX_CPUS) {
            return Err(format!(
                "pcpu {b} is out of range (CPUs are numbered below {MAX_CPUS})."
            ));
        }
        for cpu in a as u32..=b as u32 {
            if not {
                set.remove(cpu);
            } else {
                set.add(cpu);
            }
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(cpus: &[u32]) -> CpuSet {
        CpuSet::Only(cpus.iter().copied().collect())
    }

    #[test]
    fn lists() {
        assert_eq!(parse_cpu_list("3"), Ok(only(&[3])));
        assert_eq!(parse_cpu_list("0-3,^2"), Ok(only(&[0, 1, 3])));
        assert_eq!(parse_cpu_list("1,,5-6,"), Ok(only(&[1, 5, 6])));
        assert_eq!(parse_cpu_list(""), Ok(only(&[])));
        let s = parse_cpu_list("all,^0-1").unwrap();
        assert!(!s.contains(0) && !s.contains(1) && s.contains(2) && s.contains(4000));
        assert_eq!(parse_cpu_list("all"), Ok(CpuSet::all()));
        // A later item adds back.
        assert_eq!(parse_cpu_list("^1,1"), Ok(only(&[1])));
    }

    #[test]
    fn errors() {
        assert_eq!(
            parse_cpu_list("5-3"),
            Err(String::from("Invalid pcpu range: 5-3."))
        );
        assert_eq!(
            parse_cpu_list("0,x"),
            Err(String::from("Invalid pcpu range: x."))
        );
        assert_eq!(
            parse_cpu_list("2-"),
            Err(String::from("Invalid pcpu range: 2-."))
        );
        assert_eq!(
            parse_cpu_list("^all"),
            Err(String::from("Can't combine \"^\" and \"all\"."))
        );
        assert_eq!(
            parse_cpu_list("nodes:0-1"),
            Err(String::from(
                "NUMA node affinity (\"nodes:0-1\") is not supported by Oxen."
            ))
        );
        assert!(parse_cpu_list("0-99999999999999999999999")
            .unwrap_err()
            .contains("out of range"));
    }
}
