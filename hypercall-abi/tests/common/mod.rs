//! Shared helpers for the table-driven ABI tests: TSV parsing and the
//! registration macros used by `layout.rs`.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::string::String;
use std::vec::Vec;

/// The layout table copied from Xen 4.17's headers (struct, field, offset, size).
pub const LAYOUTS_TSV: &str = include_str!("../data/xen-4.17-x86_64-layouts.tsv");
/// The constants table copied from Xen 4.17's headers (name, value).
pub const CONSTANTS_TSV: &str = include_str!("../data/xen-4.17-x86_64-constants.tsv");

/// One row of the layout table.
#[derive(Debug, Clone)]
pub struct LayoutRow {
    pub strukt: String,
    pub field: String,
    /// `None` for the `(size)` row.
    pub offset: Option<usize>,
    pub size: usize,
}

pub fn layout_rows() -> Vec<LayoutRow> {
    LAYOUTS_TSV
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            assert_eq!(cols.len(), 4, "bad layout row {l:?}");
            LayoutRow {
                strukt: cols[0].to_string(),
                field: cols[1].to_string(),
                offset: if cols[2] == "-" {
                    None
                } else {
                    Some(cols[2].parse().unwrap())
                },
                size: cols[3].parse().unwrap(),
            }
        })
        .collect()
}

pub fn layout_structs() -> BTreeSet<String> {
    layout_rows().into_iter().map(|r| r.strukt).collect()
}

pub fn constants() -> Vec<(String, i128)> {
    CONSTANTS_TSV
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (n, v) = l.split_once('\t').expect("bad constant row");
            (
                n.to_string(),
                v.trim().parse::<i128>().expect("bad constant value"),
            )
        })
        .collect()
}

/// One registered (TSV field path → our representation) pair.
#[derive(Debug, Clone)]
pub struct Check {
    pub path: &'static str,
    pub offset: usize,
    /// `None`: offset-only check (union member or narrow register view
    /// represented by a wider field).
    pub size: Option<usize>,
}

/// Size of the field a projection closure points at.
pub fn fsize<T, F>(_: impl for<'a> Fn(&'a T) -> &'a F) -> usize {
    core::mem::size_of::<F>()
}

/// Checks one struct: total size, every TSV field covered by a registered
/// check with equal offset (and size where checked), and every check naming a
/// real TSV field.
pub fn check_struct(c_name: &str, rust_name: &str, c_size: usize, checks: &[Check]) {
    let rows: Vec<LayoutRow> = layout_rows()
        .into_iter()
        .filter(|r| r.strukt == c_name)
        .collect();
    assert!(!rows.is_empty(), "{c_name}: not in the layout table");
    let mut errors = Vec::new();
    for r in &rows {
        match r.offset {
            None => {
                if r.size != c_size {
                    errors.push(format!(
                        "(size): table {} vs {rust_name} {}",
                        r.size, c_size
                    ));
                }
            }
            Some(off) => {
                let same_path: Vec<&Check> = checks.iter().filter(|c| c.path == r.field).collect();
                if same_path.is_empty() {
                    errors.push(format!("field {:?} (offset {off}) not checked", r.field));
                    continue;
                }
                let ok = same_path
                    .iter()
                    .any(|c| c.offset == off && c.size.is_none_or(|s| s == r.size));
                if !ok {
                    errors.push(format!(
                        "field {:?}: table offset {off} size {}, ours {:?}",
                        r.field,
                        r.size,
                        same_path
                            .iter()
                            .map(|c| (c.offset, c.size))
                            .collect::<Vec<_>>()
                    ));
                }
            }
        }
    }
    for c in checks {
        let hit = rows
            .iter()
            .any(|r| r.field == c.path && r.offset == Some(c.offset));
        if !hit {
            errors.push(format!(
                "registered {:?} at offset {} matches no table row",
                c.path, c.offset
            ));
        }
    }
    assert!(
        errors.is_empty(),
        "{c_name} / {rust_name}:\n  {}",
        errors.join("\n  ")
    );
}

/// Builds one [`Check`] for type `$t`:
/// * `"path" => a.b` — field `a.b`: offset and size;
/// * `"path" => at a.b` — offset of `a.b` only;
/// * `"path" => at a.b + N` — offset of `a.b` plus `N`, offset only;
/// * `"path" => view a.b as Inner : c.d` — union member viewed as `Inner`
///   stored at field `a.b`: offset `a.b + Inner.c.d`, size of `Inner.c.d`;
/// * `"path" => whole a.b as Inner` — union member `Inner` stored at `a.b`:
///   offset of `a.b`, size of `Inner`.
#[macro_export]
macro_rules! chk {
    ($t:ty; $p:literal => at $($f:ident).+ + $n:literal) => {
        $crate::common::Check { path: $p, offset: core::mem::offset_of!($t, $($f).+) + $n, size: None }
    };
    ($t:ty; $p:literal => at $($f:ident).+) => {
        $crate::common::Check { path: $p, offset: core::mem::offset_of!($t, $($f).+), size: None }
    };
    ($t:ty; $p:literal => view $($f:ident).+ as $inner:ty : $($g:ident).+) => {
        $crate::common::Check {
            path: $p,
            offset: core::mem::offset_of!($t, $($f).+) + core::mem::offset_of!($inner, $($g).+),
            size: Some($crate::common::fsize(|s: &$inner| &s.$($g).+)),
        }
    };
    ($t:ty; $p:literal => whole $($f:ident).+ as $inner:ty) => {
        $crate::common::Check {
            path: $p,
            offset: core::mem::offset_of!($t, $($f).+),
            size: Some(core::mem::size_of::<$inner>()),
        }
    };
    ($t:ty; $p:literal => $($f:ident).+) => {
        $crate::common::Check {
            path: $p,
            offset: core::mem::offset_of!($t, $($f).+),
            size: Some($crate::common::fsize(|s: &$t| &s.$($f).+)),
        }
    };
}
