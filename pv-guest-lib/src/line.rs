//! A tiny line editor for a serial console: feed it bytes as they arrive,
//! it says what to echo and when a line is complete.
//!
//! - Enter is CR, LF or CR LF (the LF after a CR is swallowed, so a terminal
//!   sending CR LF gives one line, not an empty second one).
//! - Backspace (`^H`) and DEL (`0x7f`) erase the last character (a whole
//!   UTF-8 sequence), echoing `"\x08 \x08"`.
//! - `^U` erases the whole line; `^C` abandons it (echoes `^C` and ends an
//!   empty line).
//! - Tab becomes a space; other control characters are ignored.
//! - When the buffer is full, further characters are dropped (and not echoed).

#![forbid(unsafe_code)]

use crate::util::utf8_prefix;

/// What one byte did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feed {
    /// Keep reading.
    Pending,
    /// A line is complete: read it with [`LineEditor::line`], then feed on
    /// (the next byte starts a new line).
    Line,
}

/// Bytes echoed for an erased character.
pub const ERASE: &[u8] = b"\x08 \x08";

const BS: u8 = 0x08;
const DEL: u8 = 0x7f;
const CTRL_C: u8 = 0x03;
const CTRL_U: u8 = 0x15;
const TAB: u8 = b'\t';
const CR: u8 = b'\r';
const LF: u8 = b'\n';

/// A line editor with room for `N` bytes.
#[derive(Clone, Debug)]
pub struct LineEditor<const N: usize> {
    buf: [u8; N],
    len: usize,
    /// The previous byte was a CR (swallow one LF).
    after_cr: bool,
    /// The last [`Feed::Line`] has been returned; clear before the next byte.
    done: bool,
}

impl<const N: usize> Default for LineEditor<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> LineEditor<N> {
    /// An empty editor.
    pub const fn new() -> Self {
        LineEditor {
            buf: [0; N],
            len: 0,
            after_cr: false,
            done: false,
        }
    }

    /// The current line (complete after [`Feed::Line`]), without its line
    /// ending, cut at the first byte that is not UTF-8.
    pub fn line(&self) -> &str {
        utf8_prefix(&self.buf[..self.len])
    }

    /// The current line's raw bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Forgets the current line.
    pub fn clear(&mut self) {
        self.len = 0;
        self.done = false;
    }

    /// Feeds one input byte; `echo` receives what to print back.
    pub fn feed(&mut self, b: u8, echo: &mut dyn FnMut(&[u8])) -> Feed {
        if self.done {
            self.clear();
        }
        let after_cr = core::mem::replace(&mut self.after_cr, false);
        match b {
            LF if after_cr => Feed::Pending,
            CR | LF => {
                self.after_cr = b == CR;
                echo(b"\n");
                self.done = true;
                Feed::Line
            }
            BS | DEL => {
                if self.erase_char() {
                    echo(ERASE);
                }
                Feed::Pending
            }
            CTRL_U => {
                while self.erase_char() {
                    echo(ERASE);
                }
                Feed::Pending
            }
            CTRL_C => {
                echo(b"^C\n");
                self.len = 0;
                self.done = true;
                Feed::Line
            }
            TAB => self.insert(b' ', echo),
            c if c < 0x20 => Feed::Pending,
            c => self.insert(c, echo),
        }
    }

    fn insert(&mut self, c: u8, echo: &mut dyn FnMut(&[u8])) -> Feed {
        if self.len < N {
            self.buf[self.len] = c;
            self.len += 1;
            echo(&[c]);
        }
        Feed::Pending
    }

    /// Removes the last character (all bytes of a UTF-8 sequence).
    fn erase_char(&mut self) -> bool {
        if self.len == 0 {
            return false;
        }
        self.len -= 1;
        // Continuation bytes are 10xxxxxx: drop them with their lead byte.
        while self.len > 0 && self.buf[self.len] & 0xc0 == 0x80 {
            self.len -= 1;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::String;
    use std::vec::Vec;

    /// Feeds `input`; returns the completed lines and everything echoed.
    fn run<const N: usize>(ed: &mut LineEditor<N>, input: &[u8]) -> (Vec<String>, Vec<u8>) {
        let mut lines = Vec::new();
        let mut echoed = Vec::new();
        for &b in input {
            if ed.feed(b, &mut |e| echoed.extend_from_slice(e)) == Feed::Line {
                lines.push(String::from(ed.line()));
            }
        }
        (lines, echoed)
    }

    #[test]
    fn cr_lf_and_crlf_each_end_one_line() {
        let mut ed = LineEditor::<64>::new();
        let (lines, echo) = run(&mut ed, b"ls\rcat x\nhelp\r\ninfo\r\r\n");
        assert_eq!(lines, ["ls", "cat x", "help", "info", ""]);
        assert_eq!(echo, b"ls\ncat x\nhelp\ninfo\n\n");
    }

    #[test]
    fn backspace_and_del_erase_with_echo() {
        let mut ed = LineEditor::<64>::new();
        let (lines, echo) = run(&mut ed, b"lx\x08s\x7f\x7f\x7fls\n");
        assert_eq!(lines, ["ls"]);
        assert_eq!(echo, b"lx\x08 \x08s\x08 \x08\x08 \x08ls\n");
    }

    #[test]
    fn backspace_removes_whole_utf8_characters() {
        let mut ed = LineEditor::<64>::new();
        let mut input = Vec::from("ab\u{e9}\u{1f600}".as_bytes());
        input.extend_from_slice(b"\x7f\x7f\n");
        let (lines, _) = run(&mut ed, &input);
        assert_eq!(lines, ["ab"]);
    }

    #[test]
    fn ctrl_u_kills_the_line_and_ctrl_c_abandons_it() {
        let mut ed = LineEditor::<64>::new();
        let (lines, _) = run(&mut ed, b"rm -rf\x15echo hi\n");
        assert_eq!(lines, ["echo hi"]);
        let (lines, echo) = run(&mut ed, b"oops\x03");
        assert_eq!(lines, [""]);
        assert!(echo.ends_with(b"^C\n"));
    }

    #[test]
    fn full_buffer_drops_extra_input() {
        let mut ed = LineEditor::<4>::new();
        let (lines, echo) = run(&mut ed, b"abcdef\n");
        assert_eq!(lines, ["abcd"]);
        assert_eq!(echo, b"abcd\n");
    }

    #[test]
    fn control_chars_ignored_tab_is_space() {
        let mut ed = LineEditor::<16>::new();
        let (lines, _) = run(&mut ed, b"a\x01\x1b\tb\n");
        assert_eq!(lines, ["a b"]);
    }

    #[test]
    fn invalid_utf8_gives_the_valid_prefix() {
        let mut ed = LineEditor::<16>::new();
        let (lines, _) = run(&mut ed, b"ok\xff\xfe\n");
        assert_eq!(lines, ["ok"]);
        assert_eq!(ed.bytes(), b"ok\xff\xfe");
    }

    #[test]
    fn every_byte_sequence_is_safe() {
        let mut ed = LineEditor::<8>::new();
        let all: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
        let _ = run(&mut ed, &all);
    }
}
