//! A line editor for a serial console, with history: feed it bytes as they
//! arrive, it says what to echo and when a line is complete.
//!
//! - Enter is CR, LF or CR LF (the LF after a CR is swallowed, so a terminal
//!   sending CR LF gives one line, not an empty second one).
//! - Backspace (`^H`) and DEL (`0x7f`) erase the character before the
//!   cursor (a whole UTF-8 sequence); `^D` and the Delete key the one under
//!   it.
//! - The cursor moves with the arrow keys, `^B`/`^F` (a character), `^A`/
//!   Home and `^E`/End (start and end of the line); typing inserts at the
//!   cursor.
//! - `^U` erases the whole line, `^K` from the cursor to the end, `^W` the
//!   word before the cursor; `^C` abandons the line (echoes `^C` and ends an
//!   empty line).
//! - Up/Down (or `^P`/`^N`) walk the history of the last [`HISTORY`] lines
//!   entered (blank lines and repeats of the previous line are not kept);
//!   going down past the newest brings back what was being typed.
//! - Tab becomes a space; other control characters and unknown escape
//!   sequences are ignored.
//! - When the buffer is full, further characters are dropped (and not echoed).
//!
//! Echo assumes a terminal where each character is one column and `^H`
//! moves the cursor one column left (VT100 and everything since).

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

/// Bytes echoed for an erased character at the end of the line.
pub const ERASE: &[u8] = b"\x08 \x08";
/// Lines the history keeps.
pub const HISTORY: usize = 16;

const BS: u8 = 0x08;
const DEL: u8 = 0x7f;
const ESC: u8 = 0x1b;
const CTRL_A: u8 = 0x01;
const CTRL_B: u8 = 0x02;
const CTRL_C: u8 = 0x03;
const CTRL_D: u8 = 0x04;
const CTRL_E: u8 = 0x05;
const CTRL_F: u8 = 0x06;
const CTRL_K: u8 = 0x0b;
const CTRL_N: u8 = 0x0e;
const CTRL_P: u8 = 0x10;
const CTRL_U: u8 = 0x15;
const CTRL_W: u8 = 0x17;
const TAB: u8 = b'\t';
const CR: u8 = b'\r';
const LF: u8 = b'\n';

/// Where an escape sequence is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Esc {
    /// Not in one.
    None,
    /// After ESC.
    Start,
    /// After `ESC [` or `ESC O`, with the numeric parameter so far.
    Csi(u8),
}

/// A line editor with room for `N` bytes and a history of [`HISTORY`] lines.
#[derive(Clone, Debug)]
pub struct LineEditor<const N: usize> {
    buf: [u8; N],
    len: usize,
    /// Cursor, as a byte offset on a character boundary.
    cur: usize,
    /// The previous byte was a CR (swallow one LF).
    after_cr: bool,
    /// The last [`Feed::Line`] has been returned; clear before the next byte.
    done: bool,
    esc: Esc,
    hist: [[u8; N]; HISTORY],
    hist_len: [usize; HISTORY],
    /// Lines in the history.
    hist_count: usize,
    /// Slot the next line goes to.
    hist_next: usize,
    /// While walking the history: how far back (1 = newest).
    browse: usize,
    /// The line being typed when the walk began.
    draft: [u8; N],
    draft_len: usize,
}

impl<const N: usize> Default for LineEditor<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// Is `b` a UTF-8 continuation byte?
const fn is_cont(b: u8) -> bool {
    b & 0xc0 == 0x80
}

impl<const N: usize> LineEditor<N> {
    /// An empty editor with an empty history.
    pub const fn new() -> Self {
        LineEditor {
            buf: [0; N],
            len: 0,
            cur: 0,
            after_cr: false,
            done: false,
            esc: Esc::None,
            hist: [[0; N]; HISTORY],
            hist_len: [0; HISTORY],
            hist_count: 0,
            hist_next: 0,
            browse: 0,
            draft: [0; N],
            draft_len: 0,
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

    /// Forgets the current line (the history stays).
    pub fn clear(&mut self) {
        self.len = 0;
        self.cur = 0;
        self.done = false;
        self.browse = 0;
        self.esc = Esc::None;
    }

    /// Feeds one input byte; `echo` receives what to print back.
    pub fn feed(&mut self, b: u8, echo: &mut dyn FnMut(&[u8])) -> Feed {
        if self.done {
            self.clear();
        }
        let after_cr = core::mem::replace(&mut self.after_cr, false);
        match self.esc {
            Esc::Start => {
                self.esc = match b {
                    b'[' | b'O' => Esc::Csi(0),
                    _ => Esc::None,
                };
                return Feed::Pending;
            }
            Esc::Csi(param) => {
                self.esc = Esc::None;
                match b {
                    b'0'..=b'9' => {
                        self.esc = Esc::Csi(param.saturating_mul(10).saturating_add(b - b'0'))
                    }
                    b';' => self.esc = Esc::Csi(param),
                    b'A' => self.history_step(true, echo),
                    b'B' => self.history_step(false, echo),
                    b'C' => self.right(echo),
                    b'D' => self.left(echo),
                    b'H' => self.home(echo),
                    b'F' => self.end(echo),
                    b'~' => match param {
                        1 | 7 => self.home(echo),
                        4 | 8 => self.end(echo),
                        3 => self.delete_at_cursor(echo),
                        _ => {}
                    },
                    _ => {}
                }
                return Feed::Pending;
            }
            Esc::None => {}
        }
        match b {
            LF if after_cr => {}
            CR | LF => {
                self.after_cr = b == CR;
                echo(b"\n");
                self.remember();
                self.done = true;
                return Feed::Line;
            }
            BS | DEL => self.backspace(echo),
            CTRL_D => self.delete_at_cursor(echo),
            CTRL_A => self.home(echo),
            CTRL_E => self.end(echo),
            CTRL_B => self.left(echo),
            CTRL_F => self.right(echo),
            CTRL_P => self.history_step(true, echo),
            CTRL_N => self.history_step(false, echo),
            CTRL_K => {
                let gone = self.chars(self.cur, self.len);
                self.len = self.cur;
                blank(gone, echo);
            }
            CTRL_U => {
                self.home(echo);
                let gone = self.chars(0, self.len);
                self.len = 0;
                blank(gone, echo);
            }
            CTRL_W => {
                let mut start = self.cur;
                while start > 0 && self.buf[start - 1] == b' ' {
                    start -= 1;
                }
                while start > 0 && self.buf[start - 1] != b' ' {
                    start -= 1;
                }
                self.remove(start, self.cur, echo);
            }
            CTRL_C => {
                self.end(echo);
                echo(b"^C\n");
                self.len = 0;
                self.cur = 0;
                self.done = true;
                return Feed::Line;
            }
            ESC => self.esc = Esc::Start,
            TAB => self.insert(b" ", echo),
            c if c < 0x20 => {}
            c => self.insert(&[c], echo),
        }
        Feed::Pending
    }

    /// Characters (not bytes) in `buf[from..to]`.
    fn chars(&self, from: usize, to: usize) -> usize {
        self.buf[from..to].iter().filter(|&&b| !is_cont(b)).count()
    }

    /// Inserts `bytes` at the cursor and redraws the rest of the line.
    fn insert(&mut self, bytes: &[u8], echo: &mut dyn FnMut(&[u8])) {
        let n = bytes.len();
        if self.len + n > N {
            return;
        }
        self.buf.copy_within(self.cur..self.len, self.cur + n);
        self.buf[self.cur..self.cur + n].copy_from_slice(bytes);
        self.len += n;
        echo(&self.buf[self.cur..self.len]);
        let back = self.chars(self.cur + n, self.len);
        self.cur += n;
        backs(back, echo);
    }

    /// Removes `buf[from..to]` (`to` is the cursor or after it, `from` at
    /// or before it; both character boundaries), leaving the cursor at
    /// `from`, and redraws.
    fn remove(&mut self, from: usize, to: usize, echo: &mut dyn FnMut(&[u8])) {
        if from >= to {
            return;
        }
        backs(self.chars(from, self.cur), echo);
        let gone = self.chars(from, to);
        self.buf.copy_within(to..self.len, from);
        self.len -= to - from;
        self.cur = from;
        echo(&self.buf[from..self.len]);
        blank(gone, echo);
        backs(self.chars(from, self.len), echo);
    }

    fn prev_boundary(&self, mut i: usize) -> usize {
        while i > 0 {
            i -= 1;
            if !is_cont(self.buf[i]) {
                break;
            }
        }
        i
    }

    fn next_boundary(&self, mut i: usize) -> usize {
        if i < self.len {
            i += 1;
            while i < self.len && is_cont(self.buf[i]) {
                i += 1;
            }
        }
        i
    }

    fn backspace(&mut self, echo: &mut dyn FnMut(&[u8])) {
        let from = self.prev_boundary(self.cur);
        self.remove(from, self.cur, echo);
    }

    fn delete_at_cursor(&mut self, echo: &mut dyn FnMut(&[u8])) {
        let to = self.next_boundary(self.cur);
        self.remove(self.cur, to, echo);
    }

    fn left(&mut self, echo: &mut dyn FnMut(&[u8])) {
        if self.cur > 0 {
            self.cur = self.prev_boundary(self.cur);
            echo(&[BS]);
        }
    }

    fn right(&mut self, echo: &mut dyn FnMut(&[u8])) {
        if self.cur < self.len {
            let to = self.next_boundary(self.cur);
            echo(&self.buf[self.cur..to]);
            self.cur = to;
        }
    }

    fn home(&mut self, echo: &mut dyn FnMut(&[u8])) {
        backs(self.chars(0, self.cur), echo);
        self.cur = 0;
    }

    fn end(&mut self, echo: &mut dyn FnMut(&[u8])) {
        echo(&self.buf[self.cur..self.len]);
        self.cur = self.len;
    }

    /// Replaces the whole line with `new` (cursor at its end) and redraws.
    fn replace_line(&mut self, new: &[u8], echo: &mut dyn FnMut(&[u8])) {
        self.home(echo);
        let old = self.chars(0, self.len);
        let n = new.len().min(N);
        self.buf[..n].copy_from_slice(&new[..n]);
        self.len = n;
        self.cur = n;
        echo(&self.buf[..n]);
        let now = self.chars(0, n);
        if old > now {
            blank(old - now, echo);
        }
    }

    /// One step back (`older`) or forward in the history.
    fn history_step(&mut self, older: bool, echo: &mut dyn FnMut(&[u8])) {
        let target = if older {
            if self.browse >= self.hist_count {
                return;
            }
            self.browse + 1
        } else {
            if self.browse == 0 {
                return;
            }
            self.browse - 1
        };
        if self.browse == 0 {
            self.draft[..self.len].copy_from_slice(&self.buf[..self.len]);
            self.draft_len = self.len;
        }
        self.browse = target;
        if target == 0 {
            let draft = self.draft;
            self.replace_line(&draft[..self.draft_len], echo);
        } else {
            let slot = (self.hist_next + HISTORY - target) % HISTORY;
            let entry = self.hist[slot];
            self.replace_line(&entry[..self.hist_len[slot]], echo);
        }
    }

    /// Keeps the finished line in the history.
    fn remember(&mut self) {
        self.browse = 0;
        let line = &self.buf[..self.len];
        if line.iter().all(|&b| b == b' ') {
            return;
        }
        if self.hist_count > 0 {
            let last = (self.hist_next + HISTORY - 1) % HISTORY;
            if &self.hist[last][..self.hist_len[last]] == line {
                return;
            }
        }
        let slot = self.hist_next;
        self.hist[slot][..self.len].copy_from_slice(line);
        self.hist_len[slot] = self.len;
        self.hist_next = (slot + 1) % HISTORY;
        self.hist_count = (self.hist_count + 1).min(HISTORY);
    }
}

/// Moves the terminal cursor `n` columns left.
fn backs(n: usize, echo: &mut dyn FnMut(&[u8])) {
    for _ in 0..n {
        echo(&[BS]);
    }
}

/// Overwrites `n` columns with spaces and moves back over them.
fn blank(n: usize, echo: &mut dyn FnMut(&[u8])) {
    for _ in 0..n {
        echo(b" ");
    }
    backs(n, echo);
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
        let (lines, _) = run(&mut ed, b"a\x12\x1bx\tb\n");
        assert_eq!(lines, ["a b"]);
    }

    /// A one-line terminal: what the user sees after the echo (one cell a
    /// character: UTF-8 continuation bytes join the cell before them).
    struct Screen {
        cells: Vec<Vec<u8>>,
        col: usize,
    }

    impl Screen {
        fn new() -> Self {
            Screen {
                cells: Vec::new(),
                col: 0,
            }
        }

        fn apply(&mut self, bytes: &[u8]) {
            for &b in bytes {
                match b {
                    0x08 => self.col = self.col.saturating_sub(1),
                    b'\n' => {
                        self.cells.clear();
                        self.col = 0;
                    }
                    c if is_cont(c) => {
                        if let Some(cell) =
                            self.col.checked_sub(1).and_then(|i| self.cells.get_mut(i))
                        {
                            cell.push(c);
                        }
                    }
                    c => {
                        if self.col == self.cells.len() {
                            self.cells.push(std::vec![c]);
                        } else {
                            self.cells[self.col] = std::vec![c];
                        }
                        self.col += 1;
                    }
                }
            }
        }

        fn text(&self) -> Vec<u8> {
            let end = self
                .cells
                .iter()
                .rposition(|c| c.as_slice() != b" ")
                .map_or(0, |i| i + 1);
            self.cells[..end].concat()
        }
    }

    /// Feeds `input` byte by byte, checking after each that the screen
    /// shows exactly the line and the terminal cursor sits at the editor's.
    fn on_screen<const N: usize>(ed: &mut LineEditor<N>, input: &[u8]) -> Vec<String> {
        let mut scr = Screen::new();
        let mut lines = Vec::new();
        for &b in input {
            let mut out = Vec::new();
            let fed = ed.feed(b, &mut |e| out.extend_from_slice(e));
            if fed == Feed::Line {
                lines.push(String::from(ed.line()));
                scr.apply(&out);
                continue;
            }
            scr.apply(&out);
            let trimmed = {
                let l = ed.bytes();
                let end = l.iter().rposition(|&c| c != b' ').map_or(0, |i| i + 1);
                &l[..end]
            };
            assert_eq!(scr.text(), trimmed, "after byte {b:#x}");
            assert_eq!(scr.col, ed.chars(0, ed.cur), "cursor after byte {b:#x}");
        }
        lines
    }

    #[test]
    fn cursor_keys_insert_in_the_middle() {
        let mut ed = LineEditor::<64>::new();
        // "ct x", left x3 (arrow keys), insert "a", End, insert "!".
        let lines = on_screen(&mut ed, b"ct x\x1b[D\x1b[D\x1b[Da\x05!\n");
        assert_eq!(lines, ["cat x!"]);
        // Home (both encodings), ^F, Delete key, ^B, ^D.
        let lines = on_screen(&mut ed, b"xecho\x1b[H\x1b[3~\x1bOF\x02\x04\x01\x06\n");
        assert_eq!(lines, ["ech"]);
    }

    #[test]
    fn kill_keys() {
        let mut ed = LineEditor::<64>::new();
        let lines = on_screen(&mut ed, b"xl list  -l\x17\x17ok\n");
        assert_eq!(lines, ["xl ok"]);
        let lines = on_screen(&mut ed, b"cat /etc/xen\x01\x06\x06\x06\x0b\n");
        assert_eq!(lines, ["cat"]);
        let lines = on_screen(&mut ed, b"abc\x02\x15z\n");
        assert_eq!(lines, ["z"]);
    }

    #[test]
    fn history_walks_back_and_forward_keeping_the_draft() {
        let mut ed = LineEditor::<64>::new();
        on_screen(&mut ed, b"xl list\nxl info\n\nxl info\nhelp\n");
        // Up, up: "xl info" (blank and repeat not kept); down: "help";
        // down again: the draft "dr".
        let lines = on_screen(&mut ed, b"dr\x1b[A\x1b[A\n");
        assert_eq!(lines, ["xl info"]);
        let lines = on_screen(&mut ed, b"dr\x10\x10\x10\x10\x0e\x0e\x0e\x0e!\n");
        assert_eq!(lines, ["dr!"]);
        let lines = on_screen(&mut ed, b"\x1b[A\x1b[A\x1b[A\x1b[A\x1b[A\n");
        assert_eq!(lines, ["xl list"]);
    }

    #[test]
    fn history_keeps_the_newest_lines() {
        let mut ed = LineEditor::<8>::new();
        for i in 0..40u8 {
            on_screen(&mut ed, &[b'a' + i % 26, b'0' + i / 26, b'\n']);
        }
        let mut up = Vec::new();
        for _ in 0..HISTORY + 3 {
            up.extend_from_slice(b"\x1b[A");
        }
        up.push(b'\n');
        let lines = on_screen(&mut ed, &up);
        let oldest = 40 - HISTORY as u8;
        assert_eq!(
            lines,
            [String::from_utf8(std::vec![b'a' + oldest % 26, b'0' + oldest / 26]).unwrap()]
        );
    }

    #[test]
    fn random_editing_keeps_the_screen_right() {
        let keys: &[&[u8]] = &[
            b"a",
            b"b",
            b" ",
            b"\xc3\xa9",
            b"\x7f",
            b"\x08",
            b"\x01",
            b"\x02",
            b"\x04",
            b"\x05",
            b"\x06",
            b"\x0b",
            b"\x0e",
            b"\x10",
            b"\x15",
            b"\x17",
            b"\x1b[A",
            b"\x1b[B",
            b"\x1b[C",
            b"\x1b[D",
            b"\x1b[3~",
            b"\x1b[H",
            b"\x1bOF",
            b"\r",
        ];
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut ed = LineEditor::<12>::new();
        let mut input = Vec::new();
        for _ in 0..4000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            input.extend_from_slice(keys[(seed % keys.len() as u64) as usize]);
        }
        on_screen(&mut ed, &input);
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
