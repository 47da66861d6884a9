//! Reading what a batch run's console shows: `xl info`'s free memory,
//! the counting guest's (`hvm-guests`' bare-count) lines, and the part of
//! a console between two commands.

/// `xl info`'s `free_memory` figures (MiB), in order.
pub fn free_memory(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| l.strip_prefix("free_memory"))
        .filter_map(|l| l.trim_start().strip_prefix(':'))
        .filter_map(|v| v.trim().parse().ok())
        .collect()
}

/// The part of `text` from its `n`th `from` up to the next `to` (or the
/// end); panics, showing `text`, if there is no such `from`.
pub fn section<'a>(text: &'a str, from: &str, n: usize, to: &str) -> &'a str {
    let start = text
        .match_indices(from)
        .nth(n)
        .map(|(i, _)| i)
        .unwrap_or_else(|| panic!("no {from:?} #{n} in:\n{text}"));
    let rest = &text[start..];
    let end = rest[from.len()..]
        .find(to)
        .map_or(rest.len(), |i| i + from.len());
    &rest[..end]
}

/// bare-count's count lines: `bare-count: count N pages ok K/P sum S`.
pub const COUNT_LINE: &str = "bare-count: count ";

/// The counts bare-count printed in `text`, in order.
pub fn counts(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| l.split(COUNT_LINE).nth(1))
        .filter_map(|r| r.split_whitespace().next()?.parse().ok())
        .collect()
}

/// A bare-count line that says a page failed its check (a line cut short
/// at the end of a console attach says nothing).
pub fn bad_count_line(l: &str) -> bool {
    if l.contains(COUNT_LINE) && l.contains(" FAILED ") {
        return true;
    }
    let Some(rest) = l.split(" pages ok ").nth(1) else {
        return false;
    };
    match rest.split_once('/') {
        Some((ok, all)) if all.len() >= 4 => ok != &all[..4],
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_lines_are_read_and_judged() {
        let t =
            "x\nbare-count: count 7 pages ok 2048/2048 sum 1\nbare-count: count 8 pages ok 20\n";
        assert_eq!(counts(t), vec![7, 8]);
        assert!(!t.lines().any(bad_count_line), "a cut line says nothing");
        assert!(bad_count_line(
            "bare-count: count 9 pages ok 2047/2048 sum 2"
        ));
        assert!(bad_count_line("bare-count: count 9 FAILED page 3 word 1"));
        assert_eq!(section("a b a c a", "a", 1, "a"), "a c ");
        assert_eq!(free_memory("free_memory            : 348\n"), vec![348]);
    }
}
