//! Tiny hand-made x86_64 ELF files for tests.
//!
//! * [`elf_without_xen_notes`]: a valid ELF64 executable with no Xen ELF
//!   notes, to check that xen-core refuses it as a Dom0 kernel.
//! * [`pvh_probe`]: a 30-odd-byte PVH kernel (a `XEN_ELFNOTE_PHYS32_ENTRY`
//!   note, 32-bit code) that QEMU's `-kernel` boots directly.  It prints a
//!   message on COM1 and stops the machine through `isa-debug-exit`.  It lets
//!   the harness test its own QEMU plumbing (serial capture, exit decoding,
//!   what QEMU's PVH loader passes in `hvm_start_info`) without xen-core;
//!   it also has a Multiboot2 header, for testing the GRUB ISO path.

/// `XEN_ELFNOTE_PHYS32_ENTRY`: the PVH entry point (Xen's `elfnote.h`).
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const EM_X86_64: u16 = 62;
const ET_EXEC: u16 = 2;

/// An ELF note.
#[derive(Debug, Clone)]
pub struct Note {
    pub name: &'static str,
    pub kind: u32,
    pub desc: Vec<u8>,
}

/// Builds an ELF64 executable whose single `PT_LOAD` maps the whole file at
/// physical and virtual address `load_addr`; `code` starts at the returned
/// entry point and `data` follows it (its address is passed to `code_fn`).
///
/// `code_fn(entry, data_addr)` returns the machine code, so that code can
/// refer to its own data.
/// `header` is placed right after the program headers and notes, 8-byte
/// aligned (for a Multiboot2 header, which must be in the first 32 KiB).
pub fn build(
    load_addr: u64,
    notes: &[Note],
    header: &[u8],
    data: &[u8],
    code_fn: impl Fn(u64, u64) -> Vec<u8>,
) -> Vec<u8> {
    let nphdr = if notes.is_empty() { 1 } else { 2 };
    let notes_off = EHDR_SIZE + nphdr * PHDR_SIZE;
    let mut note_bytes = Vec::new();
    for n in notes {
        let name = format!("{}\0", n.name);
        note_bytes.extend_from_slice(&(name.len() as u32).to_le_bytes());
        note_bytes.extend_from_slice(&(n.desc.len() as u32).to_le_bytes());
        note_bytes.extend_from_slice(&n.kind.to_le_bytes());
        note_bytes.extend_from_slice(name.as_bytes());
        note_bytes.resize(note_bytes.len().next_multiple_of(4), 0);
        note_bytes.extend_from_slice(&n.desc);
        note_bytes.resize(note_bytes.len().next_multiple_of(4), 0);
    }
    let header_off = (notes_off + note_bytes.len()).next_multiple_of(8);
    let code_off = (header_off + header.len()).next_multiple_of(16);
    let entry = load_addr + code_off as u64;
    // Code size does not depend on the addresses, so a first pass sizes it.
    let code_len = code_fn(0, 0).len();
    let data_off = (code_off + code_len).next_multiple_of(16);
    let data_addr = load_addr + data_off as u64;
    let code = code_fn(entry, data_addr);
    assert_eq!(
        code.len(),
        code_len,
        "code size must not depend on addresses"
    );
    let file_len = data_off + data.len();

    let mut f = Vec::with_capacity(file_len);
    // ELF header.
    f.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]); // ELF64, LE, v1, SysV
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&ET_EXEC.to_le_bytes());
    f.extend_from_slice(&EM_X86_64.to_le_bytes());
    f.extend_from_slice(&1u32.to_le_bytes()); // e_version
    f.extend_from_slice(&entry.to_le_bytes()); // e_entry
    f.extend_from_slice(&(EHDR_SIZE as u64).to_le_bytes()); // e_phoff
    f.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    f.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    f.extend_from_slice(&(EHDR_SIZE as u16).to_le_bytes());
    f.extend_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
    f.extend_from_slice(&(nphdr as u16).to_le_bytes());
    f.extend_from_slice(&64u16.to_le_bytes()); // e_shentsize
    f.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
    f.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
    assert_eq!(f.len(), EHDR_SIZE);
    // PT_LOAD: the whole file, RWX.
    phdr(&mut f, PT_LOAD, 7, 0, load_addr, file_len as u64, 0x1000);
    if !notes.is_empty() {
        phdr(
            &mut f,
            PT_NOTE,
            4,
            notes_off as u64,
            load_addr + notes_off as u64,
            note_bytes.len() as u64,
            4,
        );
    }
    f.extend_from_slice(&note_bytes);
    f.resize(header_off, 0);
    f.extend_from_slice(header);
    f.resize(code_off, 0);
    f.extend_from_slice(&code);
    f.resize(data_off, 0);
    f.extend_from_slice(data);
    f
}

fn phdr(f: &mut Vec<u8>, kind: u32, flags: u32, off: u64, addr: u64, size: u64, align: u64) {
    f.extend_from_slice(&kind.to_le_bytes());
    f.extend_from_slice(&flags.to_le_bytes());
    f.extend_from_slice(&off.to_le_bytes());
    f.extend_from_slice(&addr.to_le_bytes()); // p_vaddr
    f.extend_from_slice(&addr.to_le_bytes()); // p_paddr
    f.extend_from_slice(&size.to_le_bytes()); // p_filesz
    f.extend_from_slice(&size.to_le_bytes()); // p_memsz
    f.extend_from_slice(&align.to_le_bytes());
}

/// A valid x86_64 ELF executable (`hlt; jmp .-1` at 4 MiB) with no Xen
/// notes at all: neither a PV kernel nor a PVH one.
pub fn elf_without_xen_notes() -> Vec<u8> {
    build(0x40_0000, &[], &[], &[], |_, _| vec![0xf4, 0xeb, 0xfd])
}

/// A PV kernel with valid Xen notes whose one segment is linked inside the
/// range Xen reserves for itself in every guest (0xFFFF800000000000..
/// 0xFFFF880000000000): the Dom0 builder must refuse it.
pub fn pv_kernel_in_hypervisor_range() -> Vec<u8> {
    const HYPERVISOR_VIRT_START: u64 = 0xFFFF_8000_0000_0000;
    const LOAD: u64 = HYPERVISOR_VIRT_START + 0x10_0000;
    let num = |kind, v: u64| Note {
        name: "Xen",
        kind,
        desc: v.to_le_bytes().to_vec(),
    };
    let text = |kind, v: &str| Note {
        name: "Xen",
        kind,
        desc: format!("{v}\0").into_bytes(),
    };
    // VIRT_BASE 3, PADDR_OFFSET 4, XEN_VERSION 5, GUEST_OS 6, LOADER 8; the
    // entry is the ELF header's.
    let notes = [
        num(3, HYPERVISOR_VIRT_START),
        num(4, HYPERVISOR_VIRT_START),
        text(5, "xen-3.0"),
        text(6, "oxen-test"),
        text(8, "generic"),
    ];
    build(LOAD, &notes, &[], &[], |_, _| vec![0xf4, 0xeb, 0xfd])
}

/// How the PVH probe stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeExit {
    /// Write this code to isa-debug-exit (QEMU exits `(code << 1) | 1`).
    Code(u8),
    /// Write `hvm_start_info.nr_modules` to isa-debug-exit.
    NrModules,
    /// Spin in `hlt` forever (for timeout tests).
    Hang,
}

/// A PVH (and Multiboot2) kernel that prints `message` on COM1 (port
/// 0x3f8) and then stops as `exit` says.  Loaded at 1 MiB; entered in
/// 32-bit protected mode by QEMU's PVH option ROM (`%ebx` pointing at
/// `hvm_start_info`) or by GRUB (`%ebx` pointing at the Multiboot2 info:
/// [`ProbeExit::NrModules`] is meaningless there).
pub fn pvh_probe(message: &str, exit: ProbeExit) -> Vec<u8> {
    let mut msg = message.as_bytes().to_vec();
    msg.push(0);
    let entry_note = |entry: u64| Note {
        name: "Xen",
        kind: XEN_ELFNOTE_PHYS32_ENTRY,
        desc: entry.to_le_bytes().to_vec(),
    };
    // The note's value is the entry point, which depends on the layout; the
    // layout does not depend on the value, so build twice.
    let code = move |_entry: u64, data: u64| {
        let mut c = Vec::new();
        c.push(0xbe); // mov esi, imm32
        c.extend_from_slice(&(data as u32).to_le_bytes());
        c.extend_from_slice(&[0x66, 0xba, 0xf8, 0x03]); // mov dx, 0x3f8
        c.push(0xac); // 1: lodsb
        c.extend_from_slice(&[0x84, 0xc0]); // test al, al
        c.extend_from_slice(&[0x74, 0x03]); // jz 2f
        c.push(0xee); // out dx, al
        c.extend_from_slice(&[0xeb, 0xf8]); // jmp 1b
        match exit {
            // 2: mov al, code ; out 0xf4, al
            ProbeExit::Code(code) => c.extend_from_slice(&[0xb0, code, 0xe6, 0xf4]),
            // 2: mov eax, [ebx + 12] (nr_modules) ; out 0xf4, al
            ProbeExit::NrModules => c.extend_from_slice(&[0x8b, 0x43, 0x0c, 0xe6, 0xf4]),
            ProbeExit::Hang => {}
        }
        c.extend_from_slice(&[0xf4, 0xeb, 0xfd]); // 3: hlt ; jmp 3b
        c
    };
    let mb2 = multiboot2_header();
    let first = build(0x10_0000, &[entry_note(0)], &mb2, &msg, code);
    let entry = u64::from_le_bytes(first[24..32].try_into().unwrap());
    build(0x10_0000, &[entry_note(entry)], &mb2, &msg, code)
}

/// The Multiboot2 header magic.
pub const MULTIBOOT2_MAGIC: u32 = 0xe852_50d6;

/// A minimal Multiboot2 header (i386 architecture, no tags but the end tag):
/// GRUB then loads the ELF's segments and jumps to `e_entry` in 32-bit
/// protected mode, as QEMU's PVH option ROM does.
pub fn multiboot2_header() -> Vec<u8> {
    let len = 24u32;
    let mut h = Vec::new();
    h.extend_from_slice(&MULTIBOOT2_MAGIC.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes()); // architecture: i386 protected mode
    h.extend_from_slice(&len.to_le_bytes());
    h.extend_from_slice(
        &0u32
            .wrapping_sub(MULTIBOOT2_MAGIC)
            .wrapping_sub(len)
            .to_le_bytes(),
    );
    h.extend_from_slice(&[0, 0, 0, 0, 8, 0, 0, 0]); // end tag: type 0, flags 0, size 8
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u16_at(b: &[u8], o: usize) -> u16 {
        u16::from_le_bytes(b[o..o + 2].try_into().unwrap())
    }
    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
    }
    fn u64_at(b: &[u8], o: usize) -> u64 {
        u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
    }

    #[test]
    fn no_notes_elf_is_well_formed() {
        let e = elf_without_xen_notes();
        assert_eq!(&e[..4], b"\x7fELF");
        assert_eq!(e[4], 2);
        assert_eq!(u16_at(&e, 16), ET_EXEC);
        assert_eq!(u16_at(&e, 18), EM_X86_64);
        assert_eq!(u16_at(&e, 56), 1, "one program header");
        assert_eq!(u32_at(&e, 64), PT_LOAD);
        assert_eq!(
            u64_at(&e, 64 + 32),
            e.len() as u64,
            "PT_LOAD covers the file"
        );
        let entry = u64_at(&e, 24);
        let off = (entry - 0x40_0000) as usize;
        assert_eq!(&e[off..off + 3], &[0xf4, 0xeb, 0xfd]);
        assert!(!e.windows(4).any(|w| w == b"Xen\0"));
    }

    #[test]
    fn multiboot2_header_is_valid_and_early() {
        let h = multiboot2_header();
        let sum = (0..4).fold(0u32, |a, i| a.wrapping_add(u32_at(&h, i * 4)));
        assert_eq!(sum, 0, "magic + arch + length + checksum == 0");
        let e = pvh_probe("x", ProbeExit::Hang);
        let at = e
            .windows(4)
            .position(|w| w == MULTIBOOT2_MAGIC.to_le_bytes())
            .unwrap();
        assert!(at % 8 == 0 && at + 24 <= 32768, "{at}");
        assert_eq!(&e[at..at + 24], &h[..]);
    }

    #[test]
    fn pvh_probe_note_points_at_the_code() {
        let e = pvh_probe("hi\n", ProbeExit::Code(0));
        assert_eq!(u16_at(&e, 56), 2);
        let note_phdr = 64 + 56;
        assert_eq!(u32_at(&e, note_phdr), PT_NOTE);
        let noff = u64_at(&e, note_phdr + 8) as usize;
        assert_eq!(u32_at(&e, noff), 4, "namesz");
        assert_eq!(u32_at(&e, noff + 4), 8, "descsz");
        assert_eq!(u32_at(&e, noff + 8), XEN_ELFNOTE_PHYS32_ENTRY);
        assert_eq!(&e[noff + 12..noff + 16], b"Xen\0");
        let entry = u64_at(&e, noff + 16);
        assert_eq!(entry, u64_at(&e, 24), "note and e_entry agree");
        let code = (entry - 0x10_0000) as usize;
        assert_eq!(e[code], 0xbe);
        let msg = u32_at(&e, code + 1) as usize - 0x10_0000;
        assert_eq!(&e[msg..msg + 4], b"hi\n\0");
    }
}
