//! CPU sets: [`CpuMap`], `xl`'s cpu-list syntax (`all`, `0-3,^2`,
//! `node:0`, as `vcpu-pin` takes it, xl_parse.c `parse_cpurange`) and its
//! printed form (`all`, `0-3,5`, `none`: xl_utils.c `print_bitmap`).

use alloc::vec::Vec;
use core::fmt;

/// The most NUMA nodes a cpu list may name in one range.
const MAX_NODES: u64 = 64;

/// The largest CPU map `xl` builds: Xen supports at most 4096 CPUs (x86
/// `NR_CPUS`); a back end claiming more is clamped rather than trusted
/// with an allocation.
pub const MAX_CPUS: usize = 4096;

/// A set of CPU numbers below a fixed size (`libxl_bitmap`). Setting a bit
/// at or beyond the size does nothing, as in libxl.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuMap {
    bits: Vec<bool>,
}

impl CpuMap {
    /// An empty map for CPUs `0..size` (`size` at most [`MAX_CPUS`]).
    pub fn new(size: usize) -> CpuMap {
        CpuMap {
            bits: alloc::vec![false; size.min(MAX_CPUS)],
        }
    }

    /// Every CPU of `0..size` (`size` at most [`MAX_CPUS`]).
    pub fn all(size: usize) -> CpuMap {
        CpuMap {
            bits: alloc::vec![true; size.min(MAX_CPUS)],
        }
    }

    /// A map of `size` CPUs holding `cpus` (ones out of range are dropped).
    pub fn from_cpus(size: usize, cpus: &[u32]) -> CpuMap {
        let mut m = CpuMap::new(size);
        for &c in cpus {
            m.set(c as usize);
        }
        m
    }

    /// How many CPUs it can hold.
    pub fn size(&self) -> usize {
        self.bits.len()
    }

    /// Adds a CPU.
    pub fn set(&mut self, cpu: usize) {
        if let Some(b) = self.bits.get_mut(cpu) {
            *b = true;
        }
    }

    /// Removes a CPU.
    pub fn reset(&mut self, cpu: usize) {
        if let Some(b) = self.bits.get_mut(cpu) {
            *b = false;
        }
    }

    /// Adds every CPU.
    pub fn set_all(&mut self) {
        self.bits.iter_mut().for_each(|b| *b = true);
    }

    /// Is this CPU in the set?
    pub fn test(&self, cpu: usize) -> bool {
        self.bits.get(cpu).copied().unwrap_or(false)
    }

    /// The CPUs in the set, ascending.
    pub fn cpus(&self) -> impl Iterator<Item = u32> + '_ {
        self.bits
            .iter()
            .enumerate()
            .filter(|(_, b)| **b)
            .map(|(i, _)| i as u32)
    }

    /// Is the set empty?
    pub fn is_empty(&self) -> bool {
        !self.bits.iter().any(|b| *b)
    }

    /// The set as `xl` prints it, looking at the first `nr` CPUs.
    pub fn display(&self, nr: usize) -> BitmapDisplay<'_> {
        BitmapDisplay { map: self, nr }
    }
}

/// [`CpuMap::display`]: `all`, `none` or ranges like `0-3,5`.
pub struct BitmapDisplay<'a> {
    map: &'a CpuMap,
    nr: usize,
}

impl fmt::Display for BitmapDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // xl_utils.c print_bitmap: a little state machine over the bits.
        let mut state = 0;
        let mut firstset = 0usize;
        let n = self.nr;
        for i in 0..n {
            let set = self.map.test(i);
            match state {
                0 | 2 => {
                    if set {
                        firstset = i;
                        state += 1;
                    }
                }
                _ => {
                    if !set {
                        if state > 1 {
                            f.write_str(",")?;
                        }
                        write!(f, "{firstset}")?;
                        if i > firstset + 1 {
                            write!(f, "-{}", i - 1)?;
                        }
                        state = 2;
                    }
                }
            }
        }
        match state {
            0 => f.write_str("none"),
            1 if firstset == 0 => f.write_str("all"),
            1 | 3 => {
                if state > 1 {
                    f.write_str(",")?;
                }
                write!(f, "{firstset}")?;
                if n > firstset + 1 {
                    write!(f, "-{}", n - 1)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// Why a cpu list did not parse; `Display` gives `xl`'s message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CpuRangeError<'a> {
    /// `Invalid pcpu range: X.`
    Range(&'a str),
    /// `Can't combine "^" and "all".`
    NotAll,
    /// A NUMA node the host does not have.
    Node(u32),
}

impl fmt::Display for CpuRangeError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CpuRangeError::Range(s) => write!(f, "Invalid pcpu range: {s}."),
            CpuRangeError::NotAll => f.write_str("Can't combine \"^\" and \"all\"."),
            CpuRangeError::Node(n) => write!(f, "libxl_node_to_cpumap failed (node {n})."),
        }
    }
}

/// xl_parse.c `parse_range`: `N` or `N-M` (M ≥ N), decimal, nothing after.
pub fn parse_range(s: &str) -> Option<(u64, u64)> {
    fn num(s: &str) -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    }
    match s.split_once('-') {
        None => num(s).map(|a| (a, a)),
        Some((a, b)) => {
            let (a, b) = (num(a)?, num(b)?);
            (b >= a).then_some((a, b))
        }
    }
}

/// Parses a cpu list into a map of `size` CPUs (xl_parse.c
/// `parse_cpurange`): comma-separated items, each `all`, `N`, `N-M`,
/// `node:N`/`nodes:N-M` (every CPU of those NUMA nodes, from `node_cpus`),
/// optionally prefixed by `^` to remove rather than add. CPUs beyond
/// `size` are ignored, as libxl does.
pub fn parse_cpurange<'a>(
    s: &'a str,
    size: usize,
    node_cpus: &mut dyn FnMut(u32) -> Option<CpuMap>,
) -> Result<CpuMap, CpuRangeError<'a>> {
    let mut map = CpuMap::new(size);
    for item in s.split(',').filter(|i| !i.is_empty()) {
        let (not, rest) = match item.strip_prefix('^') {
            Some(r) => (true, r),
            None => (false, item),
        };
        let (nodes, rest) = if let Some(r) = rest.strip_prefix("node:") {
            (true, r)
        } else if let Some(r) = rest.strip_prefix("nodes:") {
            (true, r)
        } else {
            (false, rest)
        };
        if rest == "all" {
            if not {
                return Err(CpuRangeError::NotAll);
            }
            map.set_all();
            continue;
        }
        let (a, b) = parse_range(rest).ok_or(CpuRangeError::Range(item))?;
        if nodes {
            // NUMA nodes are few (Xen allows at most 64): a longer range
            // is cut short rather than walked for ever.
            for node in a..=b.min(a.saturating_add(MAX_NODES)).min(u64::from(u32::MAX)) {
                let node = node as u32;
                let cpus = node_cpus(node).ok_or(CpuRangeError::Node(node))?;
                for c in cpus.cpus() {
                    if not {
                        map.reset(c as usize);
                    } else {
                        map.set(c as usize);
                    }
                }
            }
        } else {
            // Bits beyond the map are dropped: clamp so that a huge range
            // costs nothing.
            let last = b.min(map.size() as u64);
            let mut c = a;
            while c <= last {
                if not {
                    map.reset(c as usize);
                } else {
                    map.set(c as usize);
                }
                c += 1;
            }
        }
    }
    Ok(map)
}
