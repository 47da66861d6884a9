//! CPU feature levelling: `XEN_DOMCTL_{get,set}_cpu_policy` for the CPUID
//! half, as plain data.
//!
//! **Owns**: the serialised form of a domain's CPUID policy (the list of
//! `xen_cpuid_leaf` entries Xen's `x86_cpuid_copy_to_buffer` writes:
//! [`serialise`]), the audit of a policy the toolstack hands back
//! ([`audit`]: what Xen's `x86_cpuid_copy_from_buffer` and
//! `x86_cpu_policies_are_compatible` refuse, plus Oxen's levelling rule)
//! and the result, a [`Levelling`]: one AND mask per feature word, which
//! the PV and HVM policies apply to the host leaves they are computed
//! from ([`Levelling::mask_host_leaf`]) and to their own feature words
//! ([`Levelling::mask_leaf`]).
//!
//! **Trusts** nothing it is handed: leaf, subleaf and values come from the
//! toolstack; every index is checked, nothing panics.
//!
//! **Follows** Xen 4.17 (`xen/lib/x86/cpuid.c`, `xen/arch/x86/domctl.c`
//! `update_domain_cpu_policy`), with one rule of Oxen's own (DEVIATION,
//! listed in `docs/abi-deviations.md`): a domain's policy may only be
//! *levelled down* from its default. A feature word may lose bits, never
//! gain one the default lacks (`-EINVAL`, `err_leaf`/`err_subleaf` naming
//! the leaf); every other register must keep the value `get_cpu_policy`
//! gave (`-EINVAL` likewise). Xen instead accepts anything within its
//! "max" policy and silently trims the rest.

use crate::cpuid_policy::Leaf;
use hypercall_abi::errno::Errno;

/// `XEN_CPUID_NO_SUBLEAF`.
pub const NO_SUBLEAF: u32 = 0xffff_ffff;

/// Xen 4.17's `CPUID_MAX_SERIALISED_LEAVES`: basic 14, leaf 7 subleaves
/// 1..=2, leaf 4 subleaves 1..=5, leaf 0xb subleaf 1, leaf 0xd subleaves
/// 1..=62, 34 extended leaves, and the two hypervisor-limit leaves.
pub const MAX_SERIALISED_LEAVES: usize = 14 + 2 + 5 + 1 + 62 + 34 + 2;

const NR_BASIC: u32 = 0xd + 1;
const NR_CACHE: u32 = 5 + 1;
const NR_FEAT: u32 = 2 + 1;
const NR_TOPO: u32 = 1 + 1;
const NR_XSTATE: u32 = 62 + 1;
const NR_EXTD: u32 = 0x21 + 1;

/// Register indexes in a [`Leaf`].
pub const EAX: usize = 0;
/// EBX.
pub const EBX: usize = 1;
/// ECX.
pub const ECX: usize = 2;
/// EDX.
pub const EDX: usize = 3;

/// A serialised policy: at most [`MAX_SERIALISED_LEAVES`] entries, in a
/// fixed array (the library allocates nothing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entries {
    len: usize,
    items: [Entry; MAX_SERIALISED_LEAVES],
}

impl Entries {
    /// No entries.
    pub const fn new() -> Self {
        Self {
            len: 0,
            items: [Entry {
                leaf: 0,
                subleaf: 0,
                regs: [0; 4],
            }; MAX_SERIALISED_LEAVES],
        }
    }

    /// Appends `e`; `false` (and nothing changes) when full.
    pub fn push(&mut self, e: Entry) -> bool {
        match self.items.get_mut(self.len) {
            Some(slot) => {
                *slot = e;
                self.len += 1;
                true
            }
            None => false,
        }
    }

    /// The entries.
    pub fn as_slice(&self) -> &[Entry] {
        &self.items[..self.len]
    }
}

impl Default for Entries {
    fn default() -> Self {
        Self::new()
    }
}

/// One serialised entry: leaf, subleaf ([`NO_SUBLEAF`] when the leaf has
/// none) and the four registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The leaf (EAX input).
    pub leaf: u32,
    /// The subleaf (ECX input) or [`NO_SUBLEAF`].
    pub subleaf: u32,
    /// EAX, EBX, ECX, EDX.
    pub regs: Leaf,
}

/// The feature words (Xen's featureset words that a levelling can mask):
/// leaf, subleaf and register.
pub const FEATURE_WORDS: [(u32, u32, usize); 14] = [
    (0x1, NO_SUBLEAF, EDX),
    (0x1, NO_SUBLEAF, ECX),
    (0x6, NO_SUBLEAF, EAX),
    (0x7, 0, EBX),
    (0x7, 0, ECX),
    (0x7, 0, EDX),
    (0x7, 1, EAX),
    (0x7, 1, EDX),
    (0x7, 2, EDX),
    (0xd, 1, EAX),
    (0x8000_0001, NO_SUBLEAF, EDX),
    (0x8000_0001, NO_SUBLEAF, ECX),
    (0x8000_0007, NO_SUBLEAF, EDX),
    (0x8000_0008, NO_SUBLEAF, EBX),
];

/// The index into [`FEATURE_WORDS`] of a leaf's register, if it is a
/// feature word.
pub fn feature_word(leaf: u32, subleaf: u32, reg: usize) -> Option<usize> {
    FEATURE_WORDS
        .iter()
        .position(|&(l, s, r)| l == leaf && s == subleaf && r == reg)
}

/// Whether leaf `leaf` is indexed by subleaf in the serialised form.
fn has_subleaves(leaf: u32) -> bool {
    matches!(leaf, 0x4 | 0x7 | 0xb | 0xd)
}

/// A levelling: one AND mask per [`FEATURE_WORDS`] entry (all ones: the
/// default policy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Levelling {
    /// The masks, in [`FEATURE_WORDS`] order.
    pub masks: [u32; FEATURE_WORDS.len()],
}

impl Default for Levelling {
    fn default() -> Self {
        Self {
            masks: [u32::MAX; FEATURE_WORDS.len()],
        }
    }
}

impl Levelling {
    /// Whether it masks nothing.
    pub fn is_identity(&self) -> bool {
        self.masks.iter().all(|&m| m == u32::MAX)
    }

    /// `l` (the value of `cpuid(leaf, subleaf)`, with `subleaf` as the
    /// instruction takes it) with every feature word masked. Leaves without
    /// subleaves match whatever `subleaf` is.
    pub fn mask_leaf(&self, leaf: u32, subleaf: u32, mut l: Leaf) -> Leaf {
        let sub = if has_subleaves(leaf) {
            subleaf
        } else {
            NO_SUBLEAF
        };
        for (i, &(wl, ws, r)) in FEATURE_WORDS.iter().enumerate() {
            if wl == leaf && ws == sub {
                l[r] &= self.masks[i];
            }
        }
        l
    }

    /// The same for a host leaf a policy is computed from (so that the
    /// policy's own dependency rules see the levelled features).
    pub fn mask_host_leaf(&self, leaf: u32, subleaf: u32, l: Leaf) -> Leaf {
        self.mask_leaf(leaf, subleaf, l)
    }
}

/// A feature named by its word ([`FEATURE_WORDS`] index) and bit.
type Feat = (usize, u32);
const W1D: usize = 0;
const W1C: usize = 1;
const W7B0: usize = 3;
const W7C0: usize = 4;
const W7D0: usize = 5;
const W7A1: usize = 6;
const W7D2: usize = 8;
const WDA1: usize = 9;
const WE1D: usize = 10;
const WE1C: usize = 11;

/// The deep dependencies levelling applies (a subset of Xen's generated
/// `deep_deps` table, for the features a guest can be offered): clearing
/// the first clears everything in the list.
const DEPS: &[(Feat, &[Feat])] = &[
    // FXSR → SSE → SSE2 → SSE3 → SSSE3 → SSE4.1 → SSE4.2; FFXSR.
    ((W1D, 24), &[(W1D, 25), (WE1D, 25)]),
    ((W1D, 25), &[(W1D, 26)]),
    ((W1D, 26), &[(W1C, 0)]),
    ((W1C, 0), &[(W1C, 9)]),
    ((W1C, 9), &[(W1C, 19)]),
    ((W1C, 19), &[(W1C, 20)]),
    // XSAVE → AVX, XSAVEOPT/XSAVEC/XGETBV1/XSAVES.
    (
        (W1C, 26),
        &[(W1C, 28), (WDA1, 0), (WDA1, 1), (WDA1, 2), (WDA1, 3)],
    ),
    // AVX → FMA, F16C, AVX2, XOP, FMA4, VAES, VPCLMULQDQ, AVX-VNNI,
    // AVX512F.
    (
        (W1C, 28),
        &[
            (W1C, 12),
            (W1C, 29),
            (W7B0, 5),
            (WE1C, 11),
            (WE1C, 16),
            (W7C0, 9),
            (W7C0, 10),
            (W7A1, 4),
            (W7B0, 16),
        ],
    ),
    // AVX512F → every AVX-512 extension.
    (
        (W7B0, 16),
        &[
            (W7B0, 17),
            (W7B0, 21),
            (W7B0, 26),
            (W7B0, 27),
            (W7B0, 28),
            (W7B0, 30),
            (W7B0, 31),
            (W7C0, 1),
            (W7C0, 6),
            (W7C0, 11),
            (W7C0, 12),
            (W7C0, 14),
            (W7D0, 2),
            (W7D0, 3),
            (W7D0, 8),
            (W7D0, 23),
            (W7A1, 5),
        ],
    ),
    // IBRSB → STIBP, SSBD, Intel PSFD.
    ((W7D0, 26), &[(W7D0, 27), (W7D0, 31), (W7D2, 0)]),
];

impl Levelling {
    /// Closes the masks under [`DEPS`]: a feature of `default` (its
    /// feature words, in [`FEATURE_WORDS`] order) masked off masks off its
    /// dependents, repeated until nothing changes. Features the default
    /// lacks trigger nothing: levelling one feature never takes away more
    /// than it and what needs it.
    pub fn with_dependencies(mut self, default: &[u32; FEATURE_WORDS.len()]) -> Self {
        loop {
            let before = self.masks;
            for &((w, b), deps) in DEPS {
                if default[w] & (1 << b) != 0 && self.masks[w] & (1 << b) == 0 {
                    for &(dw, db) in deps {
                        self.masks[dw] &= !(1 << db);
                    }
                }
            }
            if self.masks == before {
                return self;
            }
        }
    }
}

/// Serialises a policy as Xen's `x86_cpuid_copy_to_buffer` orders it:
/// basic leaves `0..=max` (leaf 4 per cache level, 7 per subleaf up to its
/// max subleaf, 0xb its two topology subleaves, 0xd per XSAVE component),
/// then the extended leaves `0x80000000..=max`. `lookup(leaf, subleaf)`
/// is the policy's static value. (Xen's hypervisor-limit leaves
/// `0x40000000`/`0x40000100` are left out: Oxen's are fixed.)
pub fn serialise(lookup: impl Fn(u32, u32) -> Leaf) -> Entries {
    let mut out = Entries::new();
    // At most 14 + 5 + 2 + 1 + 62 + 34 entries: always fits.
    let mut push = |leaf: u32, subleaf: u32, regs: Leaf| {
        out.push(Entry {
            leaf,
            subleaf,
            regs,
        });
    };
    let max_basic = lookup(0, 0)[EAX].min(NR_BASIC - 1);
    for leaf in 0..=max_basic {
        match leaf {
            0x4 => {
                for sub in 0..NR_CACHE {
                    let l = lookup(leaf, sub);
                    if l[EAX] & 0x1f == 0 {
                        break;
                    }
                    push(leaf, sub, l);
                }
            }
            0x7 => {
                let max_sub = lookup(7, 0)[EAX].min(NR_FEAT - 1);
                for sub in 0..=max_sub {
                    push(leaf, sub, lookup(leaf, sub));
                }
            }
            0xb => {
                for sub in 0..NR_TOPO {
                    push(leaf, sub, lookup(leaf, sub));
                }
            }
            0xd => {
                let d0 = lookup(0xd, 0);
                let xcr0 = u64::from(d0[EAX]) | (u64::from(d0[EDX]) << 32);
                let fls = 64 - xcr0.leading_zeros();
                for sub in 0..fls.clamp(2, NR_XSTATE) {
                    push(leaf, sub, lookup(leaf, sub));
                }
            }
            _ => push(leaf, NO_SUBLEAF, lookup(leaf, 0)),
        }
    }
    let emax = lookup(0x8000_0000, 0)[EAX];
    if emax & 0xffff_0000 == 0x8000_0000 {
        for idx in 0..=(emax & 0xffff).min(NR_EXTD - 1) {
            let leaf = 0x8000_0000 | idx;
            push(leaf, NO_SUBLEAF, lookup(leaf, 0));
        }
    }
    out
}

/// Why a submitted policy was refused: the errno and Xen's `err_leaf` /
/// `err_subleaf` (`u32::MAX` when no leaf is to blame).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The error the domctl returns (`-E2BIG`, `-ERANGE`, `-EINVAL`).
    pub errno: Errno,
    /// The offending leaf.
    pub leaf: u32,
    /// The offending subleaf.
    pub subleaf: u32,
}

/// `-EINVAL`.
pub const EINVAL: Errno = Errno::EINVAL;
/// `-ERANGE`.
pub const ERANGE: Errno = Errno::ERANGE;
/// `-E2BIG`.
pub const E2BIG: Errno = Errno::E2BIG;

/// Whether `(leaf, subleaf)` has a slot in Xen's policy arrays (Xen's
/// `x86_cpuid_copy_from_buffer` refuses the rest with `-ERANGE`).
fn in_range(leaf: u32, subleaf: u32) -> bool {
    match leaf {
        0..=0xd => match leaf {
            0x4 => subleaf < NR_CACHE,
            0x7 => subleaf < NR_FEAT,
            0xb => subleaf < NR_TOPO,
            0xd => subleaf < NR_XSTATE,
            _ => subleaf == NO_SUBLEAF,
        },
        0x4000_0000 | 0x4000_0100 => subleaf == NO_SUBLEAF,
        0x8000_0000..=0x8000_0021 => subleaf == NO_SUBLEAF,
        _ => false,
    }
}

/// Audits the entries a toolstack submits against the domain's `default`
/// serialisation (what the host and the domain type allow) and its
/// `current` one (what `get_cpu_policy` returns now), and returns the
/// levelling they ask for.
///
/// - more than [`MAX_SERIALISED_LEAVES`] entries: `-E2BIG`;
/// - a leaf or subleaf with no slot in Xen's arrays: `-ERANGE`;
/// - a feature word with a bit the default lacks: `-EINVAL`;
/// - any other register not as `default` or `current` has it (leaves the
///   default does not have must be all zeros): `-EINVAL`.
///
/// Entries may come in any order; leaves not submitted keep their
/// default; the hypervisor-limit leaves are accepted and ignored.
pub fn audit(
    default: &[Entry],
    current: &[Entry],
    submitted: &[Entry],
) -> Result<Levelling, Refusal> {
    if submitted.len() > MAX_SERIALISED_LEAVES {
        return Err(Refusal {
            errno: E2BIG,
            leaf: u32::MAX,
            subleaf: u32::MAX,
        });
    }
    let find = |set: &[Entry], e: &Entry| {
        set.iter()
            .find(|d| d.leaf == e.leaf && d.subleaf == e.subleaf)
            .map(|d| d.regs)
    };
    let mut lv = Levelling::default();
    for e in submitted {
        let refuse = |errno| Refusal {
            errno,
            leaf: e.leaf,
            subleaf: e.subleaf,
        };
        if !in_range(e.leaf, e.subleaf) {
            return Err(refuse(ERANGE));
        }
        if matches!(e.leaf, 0x4000_0000 | 0x4000_0100) {
            continue;
        }
        let def = find(default, e).unwrap_or([0; 4]);
        let cur = find(current, e).unwrap_or(def);
        for r in 0..4 {
            let v = e.regs[r];
            match feature_word(e.leaf, e.subleaf, r) {
                Some(w) => {
                    if v & !def[r] != 0 {
                        return Err(refuse(EINVAL));
                    }
                    lv.masks[w] = v;
                }
                None => {
                    if v != def[r] && v != cur[r] {
                        return Err(refuse(EINVAL));
                    }
                }
            }
        }
    }
    let mut def_words = [0u32; FEATURE_WORDS.len()];
    for (i, &(l, sl, r)) in FEATURE_WORDS.iter().enumerate() {
        if let Some(d) = default.iter().find(|d| d.leaf == l && d.subleaf == sl) {
            def_words[i] = d.regs[r];
        }
    }
    Ok(lv.with_dependencies(&def_words))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    /// A small policy: max basic leaf 0xd, leaf 7 with one subleaf, XSAVE
    /// with x87/SSE/AVX, extended leaves up to 0x80000008.
    fn lookup(leaf: u32, sub: u32) -> Leaf {
        match (leaf, sub) {
            (0, _) => [0xd, 1, 2, 3],
            (1, _) => [0x806f8, 0x800, 0x9ed8_3203, 0x078b_fbff],
            (4, 0) => [0x121, 0, 0, 0],
            (4, 1) => [0x122, 0, 0, 0],
            (7, 0) => [1, 0x0201_9fab, 0x0040_4000, 0x8400_0010],
            (7, 1) => [0x10, 0, 0, 0],
            (0xd, 0) => [0x7, 0, 0x340, 0],
            (0xd, 1) => [0x7, 0, 0, 0],
            (0xd, 2) => [0x100, 0x240, 0, 0],
            (0x8000_0000, _) => [0x8000_0008, 0, 0, 0],
            (0x8000_0001, _) => [0, 0, 0x0000_0121, 0x2c10_0800],
            (0x8000_0008, _) => [0x3030, 0x1000, 0, 0],
            _ => [0; 4],
        }
    }

    #[test]
    fn serialisation_follows_xen_order() {
        let s = serialise(lookup).as_slice().to_vec();
        let keys: Vec<(u32, u32)> = s.iter().map(|e| (e.leaf, e.subleaf)).collect();
        // 0..=3, 4.0, 4.1, 5, 6, 7.0, 7.1, 8, 9, 0xa, 0xb.0, 0xb.1, 0xc,
        // 0xd.0..=0xd.2, then 9 extended leaves.
        assert_eq!(keys[0], (0, NO_SUBLEAF));
        assert_eq!(keys[4], (4, 0));
        assert_eq!(keys[5], (4, 1));
        assert_eq!(keys[6], (5, NO_SUBLEAF));
        assert_eq!(keys[8], (7, 0));
        assert_eq!(keys[9], (7, 1));
        assert_eq!(keys[13], (0xb, 0));
        assert_eq!(keys[14], (0xb, 1));
        assert_eq!(keys[16], (0xd, 0));
        assert_eq!(keys[18], (0xd, 2));
        assert_eq!(keys[19], (0x8000_0000, NO_SUBLEAF));
        assert_eq!(keys.len(), 19 + 9);
        assert!(s.len() <= MAX_SERIALISED_LEAVES);
        // An empty policy (all zeros) still has leaf 0 and no extended leaves.
        let z = serialise(|_, _| [0; 4]);
        let z = z.as_slice();
        assert_eq!(z.len(), 1);
    }

    #[test]
    fn round_trip_is_the_identity() {
        let s = serialise(lookup).as_slice().to_vec();
        let lv = audit(&s, &s, &s).unwrap();
        // Masks equal the default words: applying them changes nothing.
        for e in &s {
            assert_eq!(lv.mask_leaf(e.leaf, e.subleaf.min(63), e.regs), e.regs);
        }
        assert_eq!(audit(&s, &s, &[]).unwrap(), Levelling::default());
    }

    #[test]
    fn clearing_a_feature_is_levelling() {
        let s = serialise(lookup).as_slice().to_vec();
        let mut sub = s.to_vec();
        let l1 = sub.iter_mut().find(|e| e.leaf == 1).unwrap();
        l1.regs[ECX] &= !(1 << 20); // sse4_2
        let lv = audit(&s, &s, &sub).unwrap();
        let got = lv.mask_leaf(1, 0, lookup(1, 0));
        assert_eq!(got[ECX], lookup(1, 0)[ECX] & !(1 << 20));
        assert_eq!(got[EDX], lookup(1, 0)[EDX]);
        // Leaf 7 subleaf 0 only: subleaf 1 is another word.
        let mut sub = s.to_vec();
        let l7 = sub
            .iter_mut()
            .find(|e| e.leaf == 7 && e.subleaf == 0)
            .unwrap();
        l7.regs[EBX] = 0;
        let lv = audit(&s, &s, &sub).unwrap();
        assert_eq!(lv.mask_leaf(7, 0, lookup(7, 0))[EBX], 0);
        assert_eq!(lv.mask_leaf(7, 1, lookup(7, 1)), lookup(7, 1));
        assert!(!lv.is_identity());
    }

    #[test]
    fn a_feature_the_default_lacks_is_einval_naming_the_leaf() {
        let s = serialise(lookup).as_slice().to_vec();
        let mut sub = s.to_vec();
        let e1 = sub.iter_mut().find(|e| e.leaf == 0x8000_0001).unwrap();
        e1.regs[ECX] |= 1 << 2; // svm
        assert_eq!(
            audit(&s, &s, &sub),
            Err(Refusal {
                errno: EINVAL,
                leaf: 0x8000_0001,
                subleaf: NO_SUBLEAF
            })
        );
        let mut sub = s.to_vec();
        let l7 = sub
            .iter_mut()
            .find(|e| e.leaf == 7 && e.subleaf == 0)
            .unwrap();
        l7.regs[ECX] |= 1 << 31;
        assert_eq!(
            audit(&s, &s, &sub).map_err(|r| (r.leaf, r.subleaf)),
            Err((7, 0))
        );
    }

    #[test]
    fn other_registers_must_not_change() {
        let s = serialise(lookup).as_slice().to_vec();
        let mut sub = s.to_vec();
        sub[1].regs[EAX] = 0x906ea; // leaf 1 family/model
        assert_eq!(audit(&s, &s, &sub).unwrap_err().leaf, 1);
        // A leaf the default lacks must be all zeros.
        let extra = Entry {
            leaf: 0x8000_0010,
            subleaf: NO_SUBLEAF,
            regs: [0, 0, 0, 0],
        };
        assert!(audit(&s, &s, &[extra]).is_ok());
        let bad = Entry {
            regs: [1, 0, 0, 0],
            ..extra
        };
        assert_eq!(audit(&s, &s, &[bad]).unwrap_err().errno, EINVAL);
        // A register as `current` has it (after an earlier levelling) is fine.
        let mut cur = s.to_vec();
        cur[16].regs[EAX] = 0x3; // xcr0 without YMM
        let mut sub = s.to_vec();
        sub[16].regs[EAX] = 0x3;
        assert!(audit(&s, &cur, &sub).is_ok());
    }

    #[test]
    fn out_of_range_and_too_many() {
        let s = serialise(lookup).as_slice().to_vec();
        for (leaf, subleaf) in [
            (1, 0),
            (7, 3),
            (4, 6),
            (0xd, 63),
            (0xe, NO_SUBLEAF),
            (0x8000_0022, NO_SUBLEAF),
            (0x4000_0001, NO_SUBLEAF),
            (0xc000_0000, NO_SUBLEAF),
        ] {
            let e = Entry {
                leaf,
                subleaf,
                regs: [0; 4],
            };
            assert_eq!(
                audit(&s, &s, &[e]),
                Err(Refusal {
                    errno: ERANGE,
                    leaf,
                    subleaf
                }),
                "{leaf:#x}/{subleaf:#x}"
            );
        }
        let hv = Entry {
            leaf: 0x4000_0000,
            subleaf: NO_SUBLEAF,
            regs: [0x4000_0005, 0, 0, 0],
        };
        assert!(audit(&s, &s, &[hv]).is_ok());
        let many = vec![s[0]; MAX_SERIALISED_LEAVES + 1];
        assert_eq!(audit(&s, &s, &many).unwrap_err().errno, E2BIG);
    }

    #[test]
    fn mask_leaf_ignores_the_subleaf_of_plain_leaves() {
        let mut lv = Levelling::default();
        lv.masks[feature_word(1, NO_SUBLEAF, ECX).unwrap()] = !(1 << 28);
        assert_eq!(lv.mask_leaf(1, 5, [0, 0, u32::MAX, 0])[ECX], !(1 << 28));
        assert_eq!(lv.mask_leaf(2, 0, [u32::MAX; 4]), [u32::MAX; 4]);
    }

    #[test]
    fn dependencies_follow_a_cleared_feature() {
        let all = [u32::MAX; FEATURE_WORDS.len()];
        let mut lv = Levelling::default();
        lv.masks[W1C] &= !(1 << 9); // ssse3
        let lv = lv.with_dependencies(&all);
        assert_eq!(
            lv.masks[W1C] & ((1 << 19) | (1 << 20)),
            0,
            "sse4.1/4.2 follow"
        );
        assert_ne!(lv.masks[W1C] & 1, 0, "sse3 stays");
        let mut lv = Levelling::default();
        lv.masks[W1C] &= !(1 << 26); // xsave
        let lv = lv.with_dependencies(&all);
        assert_eq!(lv.masks[W7B0] & ((1 << 5) | (1 << 16) | (1 << 31)), 0);
        assert_eq!(lv.masks[WDA1] & 0xf, 0);
        assert_eq!(
            Levelling::default().with_dependencies(&all),
            Levelling::default()
        );
        // A feature the default lacks takes nothing with it: a default
        // with FMA but no AVX keeps FMA when SSE4.2 is levelled away.
        let mut def = all;
        def[W1C] &= !(1 << 28);
        let mut lv = Levelling::default();
        lv.masks[W1C] = def[W1C] & !(1 << 20);
        let lv = lv.with_dependencies(&def);
        assert_ne!(lv.masks[W1C] & (1 << 12), 0, "FMA kept");
        assert_ne!(lv.masks[W7B0] & (1 << 5), 0, "AVX2 kept");
    }
}
