//! Tests of creating, resizing and removing files.

use super::*;

#[test]
fn fat_dos_time() {
    let t = DosTime::from_unix(0);
    assert_eq!((t.date, t.time), ((1 << 5) | 1, 0));
}
