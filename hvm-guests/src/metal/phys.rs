//! Physical memory as byte slices, through the boot code's 1:1 map of the
//! low 4 GiB. Used only for what firmware and boot loaders left there
//! (ACPI tables, boot information), which nothing in this kernel writes.

use crate::report::Why;
use crate::why;

/// The end of the 1:1 map the boot code builds.
pub const IDENTITY_LIMIT: u64 = 1 << 32;

/// `len` bytes at physical address `pa`, if they lie in the 1:1 map.
pub fn bytes(pa: u64, len: usize) -> Result<&'static [u8], Why> {
    let end = pa.checked_add(len as u64);
    if pa == 0 || len == 0 || end.is_none_or(|e| e > IDENTITY_LIMIT) {
        return Err(why!("{len} bytes at {pa:#x} are outside the low 4 GiB"));
    }
    // SAFETY: the range is non-null and inside the 1:1 map (every byte is
    // mapped, so reading cannot fault); the memory is firmware's or the
    // boot loader's, which nothing writes while the slice is alive.
    Ok(unsafe { core::slice::from_raw_parts(pa as *const u8, len) })
}
