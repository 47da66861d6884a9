//! Serial input switching, as Xen's `serial_rx` does it: typing the switch
//! character (`CTRL-a`) three times in a row moves serial input between the
//! hardware domain and the hypervisor, whose keys are then debug keys.
//! Switch characters typed fewer than three times in a row are passed on to
//! whoever has the input, in order, before the next character.
//!
//! Owns only that state machine (pure, host-tested); `console.rs` feeds it
//! the UART's bytes and acts on the routes.

/// Xen's default `conswitch` character: `CTRL-a`.
pub const SWITCH_CHAR: u8 = 0x01;

/// Where one input byte goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// To the hardware domain's console input.
    Guest(u8),
    /// A debug key for the hypervisor.
    Xen(u8),
    /// Input now goes to the hypervisor (`true`) or to the domain.
    Switched(bool),
}

/// Who has the serial input, and how many switch characters are held back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InputSwitch {
    held: u8,
    to_xen: bool,
}

impl InputSwitch {
    /// Input to the domain, nothing held.
    pub const fn new() -> Self {
        InputSwitch {
            held: 0,
            to_xen: false,
        }
    }

    /// Whether the hypervisor has the input.
    pub const fn to_xen(&self) -> bool {
        self.to_xen
    }

    /// Routes byte `b`, calling `out` for each resulting route in order.
    pub fn feed(&mut self, b: u8, out: &mut dyn FnMut(Route)) {
        if b == SWITCH_CHAR {
            self.held += 1;
            if self.held == 3 {
                self.held = 0;
                self.to_xen = !self.to_xen;
                out(Route::Switched(self.to_xen));
            }
            return;
        }
        for _ in 0..core::mem::take(&mut self.held) {
            self.deliver(SWITCH_CHAR, out);
        }
        self.deliver(b, out);
    }

    fn deliver(&self, b: u8, out: &mut dyn FnMut(Route)) {
        out(if self.to_xen {
            Route::Xen(b)
        } else {
            Route::Guest(b)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn run(sw: &mut InputSwitch, input: &[u8]) -> Vec<Route> {
        let mut v = Vec::new();
        for &b in input {
            sw.feed(b, &mut |r| v.push(r));
        }
        v
    }

    #[test]
    fn three_switch_chars_toggle_and_keys_go_to_xen() {
        let mut sw = InputSwitch::new();
        let r = run(&mut sw, b"a\x01\x01\x01qh\x01\x01\x01b");
        assert_eq!(
            r,
            [
                Route::Guest(b'a'),
                Route::Switched(true),
                Route::Xen(b'q'),
                Route::Xen(b'h'),
                Route::Switched(false),
                Route::Guest(b'b'),
            ]
        );
        assert!(!sw.to_xen());
    }

    #[test]
    fn fewer_than_three_are_passed_on_before_the_next_byte() {
        let mut sw = InputSwitch::new();
        let r = run(&mut sw, b"\x01x\x01\x01y");
        assert_eq!(
            r,
            [
                Route::Guest(1),
                Route::Guest(b'x'),
                Route::Guest(1),
                Route::Guest(1),
                Route::Guest(b'y'),
            ]
        );
    }

    #[test]
    fn four_in_a_row_switch_once_and_hold_one() {
        let mut sw = InputSwitch::new();
        let r = run(&mut sw, b"\x01\x01\x01\x01z");
        assert_eq!(r, [Route::Switched(true), Route::Xen(1), Route::Xen(b'z')]);
    }
}
