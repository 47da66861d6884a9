//! Dom0's console back-end logic (xenconsoled's ring handling): read each
//! guest's `xencons_interface` output ring, keep a per-domain backlog for
//! a later `xl console` to replay, split the output into lines, and put
//! keyboard input into the guest's input ring.
//!
//! The ring page is shared with the guest, which may write anything into
//! it at any time: indexes are read once per pass, masked into the ring,
//! and a producer that claims more than a ring's worth of data is clamped
//! to the last ring's worth (as xenconsoled does), so a pass reads at most
//! [`XENCONS_OUT_SIZE`] bytes and nothing here can index out of bounds or
//! loop forever. Pure logic, host-tested; the glue hands it a [`RawRing`]
//! over the mapped page.

use hypercall_abi::io::console::{XENCONS_IN_SIZE, XENCONS_OUT_SIZE};

/// Bytes of output kept per domain.
pub const BACKLOG: usize = 16 * 1024;
/// Longest line handed out; longer output is cut into pieces this long.
pub const LINE_MAX: usize = 256;

/// Offsets in the ring page (`struct xencons_interface`).
const IN_OFF: usize = 0;
const OUT_OFF: usize = XENCONS_IN_SIZE;
const IN_CONS: usize = XENCONS_IN_SIZE + XENCONS_OUT_SIZE;
const IN_PROD: usize = IN_CONS + 4;
const OUT_CONS: usize = IN_CONS + 8;
const OUT_PROD: usize = IN_CONS + 12;

/// One console ring page, accessed with volatile loads and stores (the
/// other side writes it concurrently).
pub struct RawRing {
    page: *mut u8,
}

// SAFETY: the page is plain shared memory; every access is volatile and
// the ring protocol (fences around index updates) orders them.
unsafe impl Send for RawRing {}

impl RawRing {
    /// A ring over the 4 KiB page at `page`.
    ///
    /// # Safety
    ///
    /// `page` must point to 4096 readable and writable bytes that stay
    /// mapped for as long as the `RawRing` is used.
    pub unsafe fn new(page: *mut u8) -> RawRing {
        RawRing { page }
    }

    fn load_u32(&self, off: usize) -> u32 {
        // SAFETY: `off + 4 <= 4096` for every caller (constant offsets
        // within the struct), the page is valid (see `new`).
        unsafe { core::ptr::read_volatile(self.page.add(off) as *const u32) }
    }

    fn store_u32(&mut self, off: usize, v: u32) {
        // SAFETY: as `load_u32`.
        unsafe { core::ptr::write_volatile(self.page.add(off) as *mut u32, v) }
    }

    fn load(&self, off: usize) -> u8 {
        // SAFETY: callers pass offsets below 4096 (masked ring indexes
        // plus a ring's base).
        unsafe { core::ptr::read_volatile(self.page.add(off)) }
    }

    fn store(&mut self, off: usize, b: u8) {
        // SAFETY: as `load`.
        unsafe { core::ptr::write_volatile(self.page.add(off), b) }
    }

    /// Reads the guest's new output into `out` (at most a ring's worth),
    /// advances `out_cons`; returns the number of bytes.
    pub fn read_output(&mut self, out: &mut [u8; XENCONS_OUT_SIZE]) -> usize {
        let mut cons = self.load_u32(OUT_CONS);
        let prod = self.load_u32(OUT_PROD);
        core::sync::atomic::fence(core::sync::atomic::Ordering::Acquire);
        let mut avail = prod.wrapping_sub(cons) as usize;
        if avail > XENCONS_OUT_SIZE {
            // A hostile or confused producer: keep the last ring's worth.
            cons = prod.wrapping_sub(XENCONS_OUT_SIZE as u32);
            avail = XENCONS_OUT_SIZE;
        }
        for (i, b) in out.iter_mut().enumerate().take(avail) {
            let idx = (cons.wrapping_add(i as u32) as usize) & (XENCONS_OUT_SIZE - 1);
            *b = self.load(OUT_OFF + idx);
        }
        core::sync::atomic::fence(core::sync::atomic::Ordering::Release);
        self.store_u32(OUT_CONS, cons.wrapping_add(avail as u32));
        avail
    }

    /// Puts as much of `bytes` into the guest's input ring as fits;
    /// returns how many.
    pub fn write_input(&mut self, bytes: &[u8]) -> usize {
        let cons = self.load_u32(IN_CONS);
        let prod = self.load_u32(IN_PROD);
        core::sync::atomic::fence(core::sync::atomic::Ordering::Acquire);
        let used = prod.wrapping_sub(cons) as usize;
        let space = XENCONS_IN_SIZE.saturating_sub(used);
        let n = bytes.len().min(space);
        for (i, &b) in bytes[..n].iter().enumerate() {
            let idx = (prod.wrapping_add(i as u32) as usize) & (XENCONS_IN_SIZE - 1);
            self.store(IN_OFF + idx, b);
        }
        core::sync::atomic::fence(core::sync::atomic::Ordering::Release);
        self.store_u32(IN_PROD, prod.wrapping_add(n as u32));
        n
    }
}

/// The last [`BACKLOG`] bytes a domain wrote.
pub struct Backlog {
    buf: [u8; BACKLOG],
    /// Bytes ever written (the newest is at `(total - 1) % BACKLOG`).
    total: u64,
}

impl Default for Backlog {
    fn default() -> Self {
        Self::new()
    }
}

impl Backlog {
    /// Empty.
    pub const fn new() -> Backlog {
        Backlog {
            buf: [0; BACKLOG],
            total: 0,
        }
    }

    /// Appends, dropping the oldest bytes past [`BACKLOG`].
    pub fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.buf[(self.total % BACKLOG as u64) as usize] = b;
            self.total += 1;
        }
    }

    /// Bytes ever written.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.total.min(BACKLOG as u64) as usize
    }

    /// Nothing held?
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The held bytes, oldest first, as (up to) two slices.
    pub fn as_slices(&self) -> (&[u8], &[u8]) {
        if self.total <= BACKLOG as u64 {
            (&self.buf[..self.total as usize], &[])
        } else {
            let head = (self.total % BACKLOG as u64) as usize;
            (&self.buf[head..], &self.buf[..head])
        }
    }
}

/// One guest's console as the back-end sees it: backlog plus a partial
/// line.
pub struct DomConsole {
    /// The domain.
    pub domid: u16,
    backlog: Backlog,
    line: heapless::Vec<u8, LINE_MAX>,
}

impl DomConsole {
    /// A console for `domid`, with nothing read yet.
    pub fn new(domid: u16) -> DomConsole {
        DomConsole {
            domid,
            backlog: Backlog::new(),
            line: heapless::Vec::new(),
        }
    }

    /// Its backlog.
    pub fn backlog(&self) -> &Backlog {
        &self.backlog
    }

    /// One pass over the ring: new output goes to the backlog, and each
    /// completed line (without `\r`/`\n`; control characters other than
    /// tab shown as `?`) to `on_line`. Returns the bytes read.
    pub fn poll(&mut self, ring: &mut RawRing, on_line: impl FnMut(&[u8])) -> usize {
        let mut buf = [0u8; XENCONS_OUT_SIZE];
        let n = ring.read_output(&mut buf);
        self.feed(&buf[..n], on_line);
        n
    }

    /// Takes output bytes (from the ring or anywhere else).
    pub fn feed(&mut self, bytes: &[u8], mut on_line: impl FnMut(&[u8])) {
        self.backlog.push(bytes);
        for &b in bytes {
            match b {
                b'\n' => {
                    on_line(&self.line);
                    self.line.clear();
                }
                b'\r' => {}
                _ => {
                    let b = if b == b'\t' || (0x20..0x7f).contains(&b) {
                        b
                    } else {
                        b'?'
                    };
                    if self.line.push(b).is_err() {
                        on_line(&self.line);
                        self.line.clear();
                        let _ = self.line.push(b);
                    }
                }
            }
        }
    }

    /// The partial line not yet ended.
    pub fn pending(&self) -> &[u8] {
        &self.line
    }
}

/// `xl console`'s detach key, Ctrl-] (as Xen's `xenconsole`).
pub const DETACH_KEY: u8 = 0x1d;

/// What to do with keyboard input while attached to a guest's console:
/// the bytes before a Ctrl-] go to the guest; `true` if Ctrl-] was typed
/// (detach, dropping what follows it in this chunk).
pub fn scan_input(bytes: &[u8]) -> (&[u8], bool) {
    match bytes.iter().position(|&b| b == DETACH_KEY) {
        Some(i) => (&bytes[..i], true),
        None => (bytes, false),
    }
}

/// The consoles of every running guest, by domid (at most `N`).
pub struct Consoles<const N: usize> {
    doms: heapless::Vec<DomConsole, N>,
}

impl<const N: usize> Default for Consoles<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Consoles<N> {
    /// None yet.
    pub const fn new() -> Self {
        Consoles {
            doms: heapless::Vec::new(),
        }
    }

    /// Starts tracking `domid` (again, with an empty backlog, if it was);
    /// `false` if there is no room.
    pub fn add(&mut self, domid: u16) -> bool {
        self.remove(domid);
        self.doms.push(DomConsole::new(domid)).is_ok()
    }

    /// Stops tracking `domid` (its backlog goes with it).
    pub fn remove(&mut self, domid: u16) {
        self.doms.retain(|d| d.domid != domid);
    }

    /// The console of `domid`.
    pub fn get(&mut self, domid: u16) -> Option<&mut DomConsole> {
        self.doms.iter_mut().find(|d| d.domid == domid)
    }

    /// The domids tracked.
    pub fn domids(&self) -> impl Iterator<Item = u16> + '_ {
        self.doms.iter().map(|d| d.domid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::boxed::Box;
    use std::string::String;
    use std::vec::Vec;

    struct Page(Box<[u8; 4096]>);

    impl Page {
        fn new() -> Page {
            Page(Box::new([0; 4096]))
        }
        fn ring(&mut self) -> RawRing {
            // SAFETY: the box is 4096 bytes and outlives the ring in each test.
            unsafe { RawRing::new(self.0.as_mut_ptr()) }
        }
        fn set(&mut self, off: usize, v: u32) {
            self.0[off..off + 4].copy_from_slice(&v.to_le_bytes());
        }
        fn get(&self, off: usize) -> u32 {
            u32::from_le_bytes(self.0[off..off + 4].try_into().unwrap())
        }
        /// The guest writes `s` to its output ring.
        fn guest_write(&mut self, s: &[u8]) {
            let prod = self.get(OUT_PROD);
            for (i, &b) in s.iter().enumerate() {
                let idx = (prod as usize + i) & (XENCONS_OUT_SIZE - 1);
                self.0[OUT_OFF + idx] = b;
            }
            self.set(OUT_PROD, prod.wrapping_add(s.len() as u32));
        }
    }

    fn lines(c: &mut DomConsole, ring: &mut RawRing) -> Vec<String> {
        let mut v = Vec::new();
        c.poll(ring, |l| v.push(String::from_utf8(l.to_vec()).unwrap()));
        v
    }

    #[test]
    fn reads_lines_and_keeps_the_partial_one() {
        let mut p = Page::new();
        p.guest_write(b"hello from domU\r\nsecond");
        let mut c = DomConsole::new(1);
        let mut r = p.ring();
        assert_eq!(lines(&mut c, &mut r), ["hello from domU"]);
        assert_eq!(c.pending(), b"second");
        assert_eq!(p.get(OUT_CONS), 23);
        p.guest_write(b" line\n");
        let mut r = p.ring();
        assert_eq!(lines(&mut c, &mut r), ["second line"]);
        assert_eq!(c.backlog().total(), 29);
    }

    #[test]
    fn indexes_wrap_around_u32() {
        let mut p = Page::new();
        p.set(OUT_CONS, u32::MAX - 2);
        p.set(OUT_PROD, u32::MAX - 2);
        p.guest_write(b"wrap\n");
        let mut c = DomConsole::new(2);
        let mut r = p.ring();
        assert_eq!(lines(&mut c, &mut r), ["wrap"]);
        assert_eq!(p.get(OUT_CONS), 2);
    }

    #[test]
    fn hostile_indexes_are_clamped() {
        let mut p = Page::new();
        // The producer claims 3 GiB of output.
        p.set(OUT_CONS, 0);
        p.set(OUT_PROD, 0xc000_0000);
        let mut c = DomConsole::new(3);
        let mut r = p.ring();
        let mut n = 0;
        let read = c.poll(&mut r, |_| n += 1);
        assert_eq!(read, XENCONS_OUT_SIZE);
        assert_eq!(p.get(OUT_CONS), 0xc000_0000);
        // Zero bytes are shown as '?', lines are cut at LINE_MAX.
        assert_eq!(n, XENCONS_OUT_SIZE / LINE_MAX - 1);
        // Consumer ahead of producer: the same.
        p.set(OUT_CONS, 100);
        p.set(OUT_PROD, 50);
        let mut r = p.ring();
        assert_eq!(c.poll(&mut r, |_| ()), XENCONS_OUT_SIZE);
        // Nothing new: nothing read.
        let mut r = p.ring();
        assert_eq!(c.poll(&mut r, |_| ()), 0);
    }

    #[test]
    fn input_goes_to_the_in_ring_bounded_by_space() {
        let mut p = Page::new();
        let mut r = p.ring();
        assert_eq!(r.write_input(b"ls\n"), 3);
        assert_eq!(&p.0[..3], b"ls\n");
        assert_eq!(p.get(IN_PROD), 3);
        // The guest never consumes: the ring fills and stops.
        let mut r = p.ring();
        let big = [b'x'; 2000];
        assert_eq!(r.write_input(&big), XENCONS_IN_SIZE - 3);
        let mut r = p.ring();
        assert_eq!(r.write_input(b"y"), 0);
        // A hostile in_cons (far ahead) leaves no space, not a huge one.
        p.set(IN_CONS, 0x8000_0000);
        let mut r = p.ring();
        assert_eq!(r.write_input(b"z"), 0);
    }

    #[test]
    fn ctrl_close_bracket_detaches() {
        assert_eq!(scan_input(b"ls\n"), (&b"ls\n"[..], false));
        assert_eq!(scan_input(b"ab\x1dcd"), (&b"ab"[..], true));
        assert_eq!(scan_input(b"\x1d"), (&b""[..], true));
    }

    #[test]
    fn consoles_by_domid() {
        let mut c = Consoles::<2>::new();
        assert!(c.add(1));
        assert!(c.add(2));
        assert!(!c.add(3));
        c.get(1).unwrap().feed(b"one\n", |_| ());
        assert_eq!(c.get(1).unwrap().backlog().total(), 4);
        // Re-adding starts afresh; removing frees room.
        assert!(c.add(1));
        assert_eq!(c.get(1).unwrap().backlog().total(), 0);
        c.remove(2);
        assert!(c.get(2).is_none());
        assert!(c.add(3));
        let mut ids: Vec<u16> = c.domids().collect();
        ids.sort();
        assert_eq!(ids, [1, 3]);
    }

    #[test]
    fn backlog_keeps_the_last_16k() {
        let mut b = Backlog::new();
        assert!(b.is_empty());
        b.push(b"abc");
        assert_eq!(b.as_slices(), (&b"abc"[..], &b""[..]));
        let big: Vec<u8> = (0..BACKLOG + 100).map(|i| (i % 251) as u8).collect();
        b.push(&big);
        assert_eq!(b.len(), BACKLOG);
        let (x, y) = b.as_slices();
        let joined: Vec<u8> = x.iter().chain(y).copied().collect();
        let all: Vec<u8> = b"abc".iter().chain(&big).copied().collect();
        assert_eq!(joined, all[all.len() - BACKLOG..]);
    }
}
