//! The MC146818 RTC's CMOS through index port 0x70 and data port 0x71:
//! the seconds register, in whichever of BCD or binary status B says.

use super::cpu::{inb, outb};
use crate::report::Why;
use crate::why;

const INDEX: u16 = 0x70;
const DATA: u16 = 0x71;
const REG_SECONDS: u8 = 0x00;
const REG_STATUS_A: u8 = 0x0a;
const REG_STATUS_B: u8 = 0x0b;
/// Status A: update in progress.
const A_UIP: u8 = 0x80;
/// Status B: binary (not BCD) mode.
const B_BINARY: u8 = 0x04;
/// Polls of UIP before giving up (an update lasts under 2 ms).
const UIP_POLLS: u32 = 1_000_000;

pub fn read(reg: u8) -> u8 {
    outb(INDEX, reg);
    inb(DATA)
}

/// The RTC's seconds (0–59), read outside an update cycle.
pub fn seconds() -> Result<u8, Why> {
    let mut polls = 0;
    while read(REG_STATUS_A) & A_UIP != 0 {
        polls += 1;
        if polls > UIP_POLLS {
            return Err(why!("status A stays update-in-progress"));
        }
        core::hint::spin_loop();
    }
    let raw = read(REG_SECONDS);
    let binary = read(REG_STATUS_B) & B_BINARY != 0;
    let s = if binary {
        raw
    } else {
        if raw & 0x0f > 9 || raw >> 4 > 5 {
            return Err(why!("seconds register {raw:#04x} is not BCD"));
        }
        (raw >> 4) * 10 + (raw & 0x0f)
    };
    if s > 59 {
        return Err(why!("seconds register reads {s}"));
    }
    Ok(s)
}
