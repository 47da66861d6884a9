//! Wall-clock time from the CMOS real-time clock's fields: BCD decoding and
//! the conversion to seconds since the Unix epoch. Pure; the glue reads the
//! RTC registers.

/// The RTC's date and time fields, as read (possibly BCD).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtcFields {
    /// Seconds register.
    pub sec: u8,
    /// Minutes register.
    pub min: u8,
    /// Hours register (bit 7: PM in 12-hour mode).
    pub hour: u8,
    /// Day of month register.
    pub day: u8,
    /// Month register.
    pub month: u8,
    /// Year register (two digits).
    pub year: u8,
    /// Century register, if the platform has one (0 = none).
    pub century: u8,
    /// Status register B (bit 1: 24-hour mode, bit 2: binary mode).
    pub status_b: u8,
}

const STATUS_B_24H: u8 = 1 << 1;
const STATUS_B_BINARY: u8 = 1 << 2;
const HOUR_PM: u8 = 0x80;

fn bcd(v: u8) -> u8 {
    (v >> 4) * 10 + (v & 0xf)
}

/// Days from 1970-01-01 to the given civil date (Howard Hinnant's
/// `days_from_civil`).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Seconds since the epoch for the RTC's reading, or None if the fields are
/// out of range (a broken or absent RTC).
pub fn to_unix(f: RtcFields) -> Option<u64> {
    let binary = f.status_b & STATUS_B_BINARY != 0;
    let conv = |v: u8| if binary { v } else { bcd(v) };
    let pm = f.hour & HOUR_PM != 0;
    let mut hour = conv(f.hour & !HOUR_PM);
    if f.status_b & STATUS_B_24H == 0 {
        hour %= 12;
        if pm {
            hour += 12;
        }
    }
    let (sec, min, day, month) = (conv(f.sec), conv(f.min), conv(f.day), conv(f.month));
    let century = if f.century != 0 {
        u32::from(conv(f.century))
    } else {
        20
    };
    let year = century * 100 + u32::from(conv(f.year));
    if sec > 59 || min > 59 || hour > 23 || !(1..=31).contains(&day) || !(1..=12).contains(&month) {
        return None;
    }
    let days = days_from_civil(i64::from(year), u32::from(month), u32::from(day));
    let secs = days * 86_400 + i64::from(hour) * 3600 + i64::from(min) * 60 + i64::from(sec);
    u64::try_from(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_and_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        let f = RtcFields {
            sec: 0x30,
            min: 0x45,
            hour: 0x12,
            day: 0x22,
            month: 0x11,
            year: 0x26,
            century: 0x20,
            status_b: STATUS_B_24H,
        };
        // 2026-11-22 12:45:30 UTC
        assert_eq!(to_unix(f), Some(1_795_351_530));
    }

    #[test]
    fn binary_and_12_hour_modes() {
        let f = RtcFields {
            sec: 0,
            min: 0,
            hour: 0x80 | 1,
            day: 1,
            month: 1,
            year: 0,
            century: 0,
            status_b: STATUS_B_BINARY,
        };
        // 2000-01-01 13:00:00
        assert_eq!(to_unix(f), Some(946_731_600));
    }

    #[test]
    fn garbage_is_refused() {
        let f = RtcFields {
            sec: 0x99,
            min: 0,
            hour: 0,
            day: 1,
            month: 1,
            year: 0,
            century: 0,
            status_b: STATUS_B_24H,
        };
        assert_eq!(to_unix(f), None);
        let f = RtcFields {
            sec: 0,
            min: 0,
            hour: 0,
            day: 0,
            month: 13,
            year: 0,
            century: 0,
            status_b: STATUS_B_24H | STATUS_B_BINARY,
        };
        assert_eq!(to_unix(f), None);
    }
}
