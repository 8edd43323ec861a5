//! Reading and checking a static x86-64 ELF executable.
//!
//! [`parse`] looks only at what Linux's `load_elf_binary` looks at: the ELF
//! header and the program headers. Section headers, symbols and notes are
//! ignored, so a stripped or oddly linked executable loads as long as its
//! segments are sound.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use goblin::container::Endian;
use goblin::elf::header::{
    EI_CLASS, EI_DATA, ELFCLASS32, ELFCLASS64, ELFDATA2LSB, ELFDATA2MSB, ELFMAG, EM_X86_64,
    ET_CORE, ET_DYN, ET_EXEC, ET_REL, SIZEOF_IDENT,
};
use goblin::elf64::header::{Header, SIZEOF_EHDR};
use goblin::elf64::program_header::{
    ProgramHeader, PF_R, PF_W, PF_X, PT_GNU_STACK, PT_INTERP, PT_LOAD, PT_PHDR, PT_TLS, SIZEOF_PHDR,
};

use crate::{align_down, align_up, PAGE_SIZE, USER_END};

/// The most program headers [`parse`] accepts. Real static executables have
/// around ten; the cap bounds the work done for a hostile file.
pub const MAX_PHNUM: usize = 64;

/// The default load base of a static-PIE executable: Linux's
/// `ELF_ET_DYN_BASE` on x86-64 (two thirds of the 47-bit address space),
/// page-aligned. [`load_base`] raises it to the program's segment alignment.
pub const PIE_BASE: u64 = 0x5555_5555_4000;

/// How the executable is placed in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `ET_EXEC`: segments load at the addresses they name.
    Exec,
    /// `ET_DYN` without an interpreter (static PIE): segments load at their
    /// addresses plus a load base chosen by [`load_base`]. The program
    /// relocates itself before `main`.
    StaticPie,
}

/// Memory protection of a segment, from its `p_flags`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prot {
    /// `PF_R`: readable.
    pub read: bool,
    /// `PF_W`: writable.
    pub write: bool,
    /// `PF_X`: executable.
    pub execute: bool,
}

/// One `PT_LOAD` segment. Addresses are unbiased: add the [`load_base`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Virtual address of the first byte.
    pub vaddr: u64,
    /// Size in memory; bytes past `filesz` are zero (`.bss`).
    pub memsz: u64,
    /// Offset of the segment's bytes in the file.
    pub file_offset: u64,
    /// Number of bytes taken from the file.
    pub filesz: u64,
    /// Protection to map the segment with.
    pub prot: Prot,
}

impl Segment {
    /// The segment's bytes within the file [`parse`] read it from; in bounds
    /// for that file.
    pub fn file_range(&self) -> Range<usize> {
        // parse checked that offset + filesz <= the file's length, a usize.
        self.file_offset as usize..self.file_offset.saturating_add(self.filesz) as usize
    }

    /// The segment's memory range `[vaddr, vaddr + memsz)`, unbiased.
    pub fn vm_range(&self) -> Range<u64> {
        self.vaddr..self.vaddr.saturating_add(self.memsz)
    }
}

/// The thread-local storage template, from `PT_TLS`. Static executables set
/// up their own TLS from it (found through `AT_PHDR`); the kernel only needs
/// it for diagnostics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tls {
    /// Virtual address of the initialisation image, unbiased.
    pub vaddr: u64,
    /// Size of the initialisation image (`.tdata`).
    pub filesz: u64,
    /// Size of the whole block (`.tdata` plus `.tbss`).
    pub memsz: u64,
    /// Required alignment of the block.
    pub align: u64,
}

/// A checked executable: what the kernel needs to map and start it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    /// Fixed-address or position-independent.
    pub kind: Kind,
    /// The entry point, unbiased; inside an executable segment.
    pub entry: u64,
    /// The `PT_LOAD` segments in program-header order; never empty, and no
    /// two overlap.
    pub segments: Vec<Segment>,
    /// Virtual address of the program headers, unbiased, for `AT_PHDR`: from
    /// `PT_PHDR` if present, else from the `PT_LOAD` segment whose file bytes
    /// hold them; `None` if neither (the program cannot find its own TLS
    /// template then, but may not need it).
    pub phdr: Option<u64>,
    /// Number of program headers (`AT_PHNUM`).
    pub phnum: u16,
    /// Size of one program header (`AT_PHENT`); always 56.
    pub phentsize: u16,
    /// The TLS template, if the program has `PT_TLS`.
    pub tls: Option<Tls>,
    /// `PT_GNU_STACK`: `Some(true)` if it asks for an executable stack,
    /// `Some(false)` if it asks for a non-executable one, `None` if absent.
    /// See [`Program::stack_executable`].
    pub gnu_stack: Option<bool>,
    /// The largest `p_align` of the `PT_LOAD` segments (at least 1).
    pub max_align: u64,
}

impl Program {
    /// Whether the stack should be executable. Without `PT_GNU_STACK`, Linux
    /// on x86-64 with NX (since 5.8, "exec-none" in `arch/x86/include/asm/elf.h`)
    /// gives a 64-bit program a non-executable stack, so absence means `false`.
    /// (32-bit x86 and older kernels made everything executable instead.)
    pub fn stack_executable(&self) -> bool {
        self.gnu_stack.unwrap_or(false)
    }

    /// The page-aligned range the segments cover, unbiased: the lowest
    /// segment start rounded down and the highest segment end rounded up.
    pub fn span(&self) -> (u64, u64) {
        let low = self.segments.iter().map(|s| s.vaddr).min().unwrap_or(0);
        let high = self
            .segments
            .iter()
            .map(|s| s.vm_range().end)
            .max()
            .unwrap_or(0);
        // parse checked that every end fits below USER_END, a page boundary.
        (
            align_down(low, PAGE_SIZE),
            align_up(high, PAGE_SIZE).unwrap_or(USER_END),
        )
    }
}

/// Why an executable was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// The file ends inside the 64-byte ELF header.
    TruncatedHeader {
        /// The file's length.
        len: usize,
    },
    /// The file does not start with `\x7fELF`.
    NotElf,
    /// `EI_CLASS` is not `ELFCLASS64`.
    NotElf64 {
        /// The class byte (1 is 32-bit).
        class: u8,
    },
    /// `EI_DATA` is not `ELFDATA2LSB`.
    NotLittleEndian {
        /// The data byte (2 is big-endian).
        data: u8,
    },
    /// `e_machine` is not `EM_X86_64`.
    WrongMachine {
        /// The machine number.
        machine: u16,
    },
    /// `e_type` is neither `ET_EXEC` nor `ET_DYN`.
    WrongType {
        /// The type number.
        e_type: u16,
    },
    /// `e_phentsize` is not the size of an ELF64 program header.
    BadPhentsize {
        /// The size the header gives.
        phentsize: u16,
    },
    /// More than [`MAX_PHNUM`] program headers.
    TooManyProgramHeaders {
        /// `e_phnum`.
        phnum: u16,
    },
    /// The program header table runs past the end of the file.
    TruncatedProgramHeaders {
        /// `e_phoff`.
        phoff: u64,
        /// `e_phnum`.
        phnum: u16,
        /// The file's length.
        len: usize,
    },
    /// The program asks for a dynamic linker (`PT_INTERP`).
    Dynamic {
        /// The interpreter path, as far as the file holds it.
        interpreter: String,
    },
    /// No `PT_LOAD` segment.
    NoLoadSegment,
    /// A segment takes more bytes from the file than it has in memory.
    FileSizeExceedsMemSize {
        /// Index of the program header.
        index: usize,
        /// `p_filesz`.
        filesz: u64,
        /// `p_memsz`.
        memsz: u64,
    },
    /// A segment's file bytes run past the end of the file.
    SegmentOutsideFile {
        /// Index of the program header.
        index: usize,
        /// `p_offset`.
        offset: u64,
        /// `p_filesz`.
        filesz: u64,
        /// The file's length.
        len: usize,
    },
    /// A segment's `p_align` is not a power of two (0 and 1 mean none).
    BadAlignment {
        /// Index of the program header.
        index: usize,
        /// `p_align`.
        align: u64,
    },
    /// A segment's address and file offset differ modulo its alignment (or
    /// the page size, whichever is larger), so it cannot be mapped.
    Incongruent {
        /// Index of the program header.
        index: usize,
        /// `p_vaddr`.
        vaddr: u64,
        /// `p_offset`.
        offset: u64,
        /// The modulus they must agree in.
        modulus: u64,
    },
    /// A segment wraps around or ends above [`USER_END`].
    OutsideUserSpace {
        /// Index of the program header.
        index: usize,
        /// `p_vaddr`, unbiased.
        vaddr: u64,
        /// `p_memsz`.
        memsz: u64,
        /// The load base it was checked at (0 for `ET_EXEC`).
        base: u64,
    },
    /// Two segments' memory ranges overlap.
    Overlap {
        /// Index of the first program header.
        first: usize,
        /// Index of the second program header.
        second: usize,
    },
    /// The entry point is not inside an executable segment.
    EntryNotExecutable {
        /// `e_entry`.
        entry: u64,
    },
}

/// A readable name for an `e_machine` value, for error messages.
fn machine_name(machine: u16) -> Option<&'static str> {
    Some(match machine {
        0 => "no machine",
        2 => "sparc",
        3 => "i386",
        8 => "mips",
        20 => "powerpc",
        21 => "powerpc64",
        22 => "s390",
        40 => "arm",
        43 => "sparc64",
        50 => "ia64",
        183 => "aarch64",
        243 => "riscv",
        258 => "loongarch",
        _ => return None,
    })
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TruncatedHeader { len } => write!(
                f,
                "truncated ELF header: the file has {len} bytes, the header needs {SIZEOF_EHDR}"
            ),
            Self::NotElf => f.write_str("not an ELF file (bad magic)"),
            Self::NotElf64 { class: ELFCLASS32 } => {
                f.write_str("a 32-bit ELF file: sanos runs 64-bit executables only")
            }
            Self::NotElf64 { class } => write!(f, "not a 64-bit ELF file (class {class})"),
            Self::NotLittleEndian { data: ELFDATA2MSB } => {
                f.write_str("a big-endian ELF file: x86-64 executables are little-endian")
            }
            Self::NotLittleEndian { data } => write!(f, "unknown ELF byte order {data}"),
            Self::WrongMachine { machine } => match machine_name(*machine) {
                Some(name) => write!(f, "built for {name} (e_machine {machine}), not x86-64"),
                None => write!(f, "built for machine {machine}, not x86-64 (62)"),
            },
            Self::WrongType { e_type } => match *e_type {
                ET_REL => f.write_str("a relocatable object file (ET_REL), not an executable"),
                ET_CORE => f.write_str("a core dump (ET_CORE), not an executable"),
                other => write!(f, "ELF type {other} is not an executable"),
            },
            Self::BadPhentsize { phentsize } => write!(
                f,
                "program header size is {phentsize} bytes, ELF64 needs {SIZEOF_PHDR}"
            ),
            Self::TooManyProgramHeaders { phnum } => {
                write!(
                    f,
                    "{phnum} program headers, at most {MAX_PHNUM} are accepted"
                )
            }
            Self::TruncatedProgramHeaders { phoff, phnum, len } => write!(
                f,
                "truncated program headers: {phnum} headers at offset {phoff:#x} run past \
                 the end of the {len}-byte file"
            ),
            Self::Dynamic { interpreter } => write!(
                f,
                "dynamically linked (interpreter {interpreter}): sanos runs static \
                 executables; dynamic linking is not supported yet"
            ),
            Self::NoLoadSegment => f.write_str("no loadable (PT_LOAD) segment"),
            Self::FileSizeExceedsMemSize {
                index,
                filesz,
                memsz,
            } => write!(
                f,
                "program header {index}: file size {filesz:#x} exceeds memory size {memsz:#x}"
            ),
            Self::SegmentOutsideFile {
                index,
                offset,
                filesz,
                len,
            } => write!(
                f,
                "program header {index}: {filesz:#x} bytes at offset {offset:#x} run past \
                 the end of the {len}-byte file"
            ),
            Self::BadAlignment { index, align } => write!(
                f,
                "program header {index}: alignment {align:#x} is not a power of two"
            ),
            Self::Incongruent {
                index,
                vaddr,
                offset,
                modulus,
            } => write!(
                f,
                "program header {index}: address {vaddr:#x} and file offset {offset:#x} \
                 differ modulo {modulus:#x}, so the segment cannot be mapped"
            ),
            Self::OutsideUserSpace {
                index,
                vaddr,
                memsz,
                base,
            } => {
                write!(f, "program header {index}: {memsz:#x} bytes at {vaddr:#x}")?;
                if *base != 0 {
                    write!(f, " (load base {base:#x})")?;
                }
                write!(f, " do not fit below the end of user space ({USER_END:#x})")
            }
            Self::Overlap { first, second } => write!(
                f,
                "program headers {first} and {second}: the segments overlap in memory"
            ),
            Self::EntryNotExecutable { entry } => write!(
                f,
                "entry point {entry:#x} is not inside an executable segment"
            ),
        }
    }
}

impl core::error::Error for LoadError {}

/// Checks the identification bytes and reads the ELF header.
fn header(bytes: &[u8]) -> Result<Header, LoadError> {
    let magic_len = bytes.len().min(ELFMAG.len());
    if bytes.is_empty() || bytes[..magic_len] != ELFMAG[..magic_len] {
        return Err(LoadError::NotElf);
    }
    let truncated = LoadError::TruncatedHeader { len: bytes.len() };
    if bytes.len() < SIZEOF_IDENT {
        return Err(truncated);
    }
    match bytes[EI_CLASS] {
        ELFCLASS64 => {}
        class => return Err(LoadError::NotElf64 { class }),
    }
    match bytes[EI_DATA] {
        ELFDATA2LSB => {}
        data => return Err(LoadError::NotLittleEndian { data }),
    }
    if bytes.len() < SIZEOF_EHDR {
        return Err(truncated);
    }
    Header::parse(bytes).map_err(|_| truncated)
}

/// Reads and checks the ELF header and program headers of `bytes`, a whole
/// executable file, and describes how to load it.
///
/// Accepts little-endian ELF64 x86-64 files of type `ET_EXEC`, or `ET_DYN`
/// without `PT_INTERP` (static PIE). Everything else, and every segment the
/// kernel could not map safely, is refused with the [`LoadError`] naming it.
pub fn parse(bytes: &[u8]) -> Result<Program, LoadError> {
    let header = header(bytes)?;
    if header.e_machine != EM_X86_64 {
        return Err(LoadError::WrongMachine {
            machine: header.e_machine,
        });
    }
    let kind = match header.e_type {
        ET_EXEC => Kind::Exec,
        ET_DYN => Kind::StaticPie,
        e_type => return Err(LoadError::WrongType { e_type }),
    };
    if usize::from(header.e_phentsize) != SIZEOF_PHDR {
        return Err(LoadError::BadPhentsize {
            phentsize: header.e_phentsize,
        });
    }
    let phnum = usize::from(header.e_phnum);
    if phnum > MAX_PHNUM {
        return Err(LoadError::TooManyProgramHeaders {
            phnum: header.e_phnum,
        });
    }
    let table_size = (phnum * SIZEOF_PHDR) as u64;
    let truncated = LoadError::TruncatedProgramHeaders {
        phoff: header.e_phoff,
        phnum: header.e_phnum,
        len: bytes.len(),
    };
    match header.e_phoff.checked_add(table_size) {
        Some(end) if end <= bytes.len() as u64 => {}
        _ => return Err(truncated),
    }
    let phdrs = ProgramHeader::parse(bytes, header.e_phoff as usize, phnum, Endian::Little)
        .map_err(|_| truncated)?;

    if let Some(interp) = phdrs.iter().find(|ph| ph.p_type == PT_INTERP) {
        return Err(LoadError::Dynamic {
            interpreter: interpreter(bytes, interp),
        });
    }

    let mut segments = Vec::new();
    let mut indices = Vec::new();
    let mut max_align = 1;
    for (index, ph) in phdrs
        .iter()
        .enumerate()
        .filter(|(_, ph)| ph.p_type == PT_LOAD)
    {
        check_segment(index, ph, bytes.len())?;
        max_align = max_align.max(ph.p_align);
        indices.push(index);
        segments.push(Segment {
            vaddr: ph.p_vaddr,
            memsz: ph.p_memsz,
            file_offset: ph.p_offset,
            filesz: ph.p_filesz,
            prot: Prot {
                read: ph.p_flags & PF_R != 0,
                write: ph.p_flags & PF_W != 0,
                execute: ph.p_flags & PF_X != 0,
            },
        });
    }
    if segments.is_empty() {
        return Err(LoadError::NoLoadSegment);
    }

    // The image must fit below USER_END where it will be loaded: at its own
    // addresses, or at the default PIE base raised to its alignment (where
    // load_base falls back to, so any program parse accepts has a base).
    let base = match kind {
        Kind::Exec => 0,
        Kind::StaticPie => align_up(PIE_BASE, max_align.max(PAGE_SIZE)).unwrap_or(u64::MAX),
    };
    for (segment, &index) in segments.iter().zip(&indices) {
        let end = base
            .checked_add(segment.vaddr)
            .and_then(|a| a.checked_add(segment.memsz));
        if end.is_none_or(|end| end > USER_END) {
            let Segment { vaddr, memsz, .. } = *segment;
            return Err(LoadError::OutsideUserSpace {
                index,
                vaddr,
                memsz,
                base,
            });
        }
    }

    // Exact ranges: two segments may share a page (text ending mid-page and
    // data starting there), but no byte may belong to both.
    for (i, a) in segments.iter().enumerate() {
        for (j, b) in segments.iter().enumerate().skip(i + 1) {
            if a.vaddr.max(b.vaddr) < (a.vaddr + a.memsz).min(b.vaddr + b.memsz) {
                return Err(LoadError::Overlap {
                    first: indices[i],
                    second: indices[j],
                });
            }
        }
    }

    let entry = header.e_entry;
    if !segments
        .iter()
        .any(|s| s.prot.execute && s.vm_range().contains(&entry))
    {
        return Err(LoadError::EntryNotExecutable { entry });
    }

    let phdr = phdrs
        .iter()
        .find(|ph| ph.p_type == PT_PHDR)
        .map(|ph| ph.p_vaddr)
        .or_else(|| {
            let (start, end) = (header.e_phoff, header.e_phoff + table_size);
            segments
                .iter()
                .find(|s| s.file_offset <= start && end <= s.file_offset + s.filesz)
                .map(|s| s.vaddr + (start - s.file_offset))
        });
    let tls = phdrs.iter().find(|ph| ph.p_type == PT_TLS).map(|ph| Tls {
        vaddr: ph.p_vaddr,
        filesz: ph.p_filesz,
        memsz: ph.p_memsz,
        align: ph.p_align,
    });
    let gnu_stack = phdrs
        .iter()
        .find(|ph| ph.p_type == PT_GNU_STACK)
        .map(|ph| ph.p_flags & PF_X != 0);

    Ok(Program {
        kind,
        entry,
        segments,
        phdr,
        phnum: header.e_phnum,
        phentsize: header.e_phentsize,
        tls,
        gnu_stack,
        max_align,
    })
}

/// The checks on one `PT_LOAD` header that need nothing but the header and
/// the file's length.
fn check_segment(index: usize, ph: &ProgramHeader, len: usize) -> Result<(), LoadError> {
    if ph.p_filesz > ph.p_memsz {
        return Err(LoadError::FileSizeExceedsMemSize {
            index,
            filesz: ph.p_filesz,
            memsz: ph.p_memsz,
        });
    }
    if ph
        .p_offset
        .checked_add(ph.p_filesz)
        .is_none_or(|end| end > len as u64)
    {
        return Err(LoadError::SegmentOutsideFile {
            index,
            offset: ph.p_offset,
            filesz: ph.p_filesz,
            len,
        });
    }
    if ph.p_align > 1 && !ph.p_align.is_power_of_two() {
        return Err(LoadError::BadAlignment {
            index,
            align: ph.p_align,
        });
    }
    // The gABI asks for p_vaddr ≡ p_offset (mod p_align); mapping the file
    // page by page needs it modulo the page size whatever p_align says.
    let modulus = ph.p_align.max(PAGE_SIZE);
    if (ph.p_vaddr ^ ph.p_offset) & (modulus - 1) != 0 {
        return Err(LoadError::Incongruent {
            index,
            vaddr: ph.p_vaddr,
            offset: ph.p_offset,
            modulus,
        });
    }
    Ok(())
}

/// The interpreter path `PT_INTERP` names, without its NUL, clipped to the
/// file and decoded lossily (it only goes into an error message).
fn interpreter(bytes: &[u8], ph: &ProgramHeader) -> String {
    let start = usize::try_from(ph.p_offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    let len = usize::try_from(ph.p_filesz).unwrap_or(usize::MAX);
    let path = &bytes[start..start.saturating_add(len).min(bytes.len())];
    let path = path.split(|&b| b == 0).next().unwrap_or_default();
    String::from_utf8_lossy(path).into_owned()
}

/// The load base for `program`: 0 for `ET_EXEC`; for a static PIE,
/// `preferred` rounded up to the program's alignment (at least a page).
///
/// Segment `s` then lives at `base + s.vaddr`. If the image would not fit
/// below [`USER_END`] at that base, the default base [`PIE_BASE`] (rounded up
/// the same way) is returned instead; [`parse`] has checked that the image
/// fits there.
pub fn load_base(program: &Program, preferred: u64) -> u64 {
    let fitted = |base: u64| {
        let base = align_up(base, program.max_align.max(PAGE_SIZE))?;
        let end = base.checked_add(program.span().1)?;
        (end <= USER_END).then_some(base)
    };
    match program.kind {
        Kind::Exec => 0,
        Kind::StaticPie => fitted(preferred)
            .or_else(|| fitted(PIE_BASE))
            .unwrap_or(PIE_BASE),
    }
}

/// Where the heap starts for `program` loaded at `base`: the page-aligned end
/// of its highest segment. (Linux may randomise this further; sanos does
/// not.)
pub fn brk_start(program: &Program, base: u64) -> u64 {
    base.saturating_add(program.span().1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    const PT_NULL: u32 = 0;
    const R: u32 = PF_R;
    const RW: u32 = PF_R | PF_W;
    const RX: u32 = PF_R | PF_X;

    /// A program header as the test writer emits it.
    #[derive(Clone, Copy)]
    struct Ph {
        kind: u32,
        flags: u32,
        offset: u64,
        vaddr: u64,
        filesz: u64,
        memsz: u64,
        align: u64,
    }

    fn load(flags: u32, offset: u64, vaddr: u64, filesz: u64, memsz: u64) -> Ph {
        Ph {
            kind: PT_LOAD,
            flags,
            offset,
            vaddr,
            filesz,
            memsz,
            align: 0x1000,
        }
    }

    fn other(kind: u32, flags: u32, offset: u64, vaddr: u64, size: u64) -> Ph {
        Ph {
            kind,
            flags,
            offset,
            vaddr,
            filesz: size,
            memsz: size,
            align: 8,
        }
    }

    fn put(bytes: &mut [u8], at: usize, value: impl Into<u64>, width: usize) {
        bytes[at..at + width].copy_from_slice(&value.into().to_le_bytes()[..width]);
    }

    /// A little-endian ELF64 x86-64 file of `len` bytes (or just enough for
    /// the headers): the ELF header, the program headers at offset 64, and
    /// zeros.
    fn elf(e_type: u16, entry: u64, phdrs: &[Ph], len: usize) -> Vec<u8> {
        let mut b = vec![0; len.max(64 + 56 * phdrs.len())];
        b[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
        for (at, value, width) in [
            (16, u64::from(e_type), 2),
            (18, 62, 2),
            (20, 1, 4),
            (24, entry, 8),
            (32, 64, 8),
            (52, 64, 2),
            (54, 56, 2),
            (56, phdrs.len() as u64, 2),
            (58, 64, 2),
        ] {
            put(&mut b, at, value, width);
        }
        for (i, ph) in phdrs.iter().enumerate() {
            let at = 64 + 56 * i;
            put(&mut b, at, ph.kind, 4);
            put(&mut b, at + 4, ph.flags, 4);
            for (field, value) in [ph.offset, ph.vaddr, ph.vaddr, ph.filesz, ph.memsz, ph.align]
                .into_iter()
                .enumerate()
            {
                put(&mut b, at + 8 + 8 * field, value, 8);
            }
        }
        b
    }

    /// A typical static executable: headers, text, data with .bss and TLS.
    fn exec_phdrs() -> Vec<Ph> {
        vec![
            other(PT_PHDR, R, 64, 0x40_0040, 56 * 6),
            load(R, 0, 0x40_0000, 0x200, 0x200),
            load(RX, 0x1000, 0x40_1000, 0x100, 0x100),
            load(RW, 0x1100, 0x40_2100, 0x20, 0x1000),
            other(PT_TLS, R, 0x1100, 0x40_2100, 8),
            Ph {
                memsz: 0x10,
                ..other(PT_GNU_STACK, RW, 0, 0, 0)
            },
        ]
    }

    fn exec_with(phdrs: &[Ph]) -> Vec<u8> {
        elf(ET_EXEC, 0x40_1000, phdrs, 0x1120)
    }

    fn refused(bytes: &[u8]) -> LoadError {
        match parse(bytes) {
            Ok(program) => panic!("accepted: {program:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn a_static_executable_is_described() {
        let program = parse(&exec_with(&exec_phdrs())).expect("valid");
        assert_eq!(program.kind, Kind::Exec);
        assert_eq!(program.entry, 0x40_1000);
        assert_eq!(program.segments.len(), 3);
        assert_eq!(
            program.segments[2],
            Segment {
                vaddr: 0x40_2100,
                memsz: 0x1000,
                file_offset: 0x1100,
                filesz: 0x20,
                prot: Prot {
                    read: true,
                    write: true,
                    execute: false
                },
            }
        );
        assert_eq!(
            program.segments[1].prot,
            Prot {
                read: true,
                write: false,
                execute: true
            }
        );
        assert_eq!(program.segments[2].file_range(), 0x1100..0x1120);
        assert_eq!(program.phdr, Some(0x40_0040));
        assert_eq!((program.phnum, program.phentsize), (6, 56));
        assert_eq!(
            program.tls,
            Some(Tls {
                vaddr: 0x40_2100,
                filesz: 8,
                memsz: 8,
                align: 8
            })
        );
        assert_eq!(program.gnu_stack, Some(false));
        assert!(!program.stack_executable());
        assert_eq!(program.max_align, 0x1000);
        assert_eq!(program.span(), (0x40_0000, 0x40_4000));
        assert_eq!(load_base(&program, PIE_BASE), 0);
        assert_eq!(brk_start(&program, 0), 0x40_4000);
    }

    #[test]
    fn phdr_address_comes_from_the_segment_holding_the_table_without_pt_phdr() {
        let mut phdrs = exec_phdrs();
        phdrs[0].kind = PT_NULL;
        assert_eq!(
            parse(&exec_with(&phdrs)).expect("valid").phdr,
            Some(0x40_0040)
        );
        // The first segment no longer holds the table: no address at all.
        phdrs[1].filesz = 0x40;
        assert_eq!(parse(&exec_with(&phdrs)).expect("valid").phdr, None);
    }

    #[test]
    fn gnu_stack_absent_or_executable() {
        let mut phdrs = exec_phdrs();
        phdrs[5].flags = RW | PF_X;
        let program = parse(&exec_with(&phdrs)).expect("valid");
        assert_eq!(program.gnu_stack, Some(true));
        assert!(program.stack_executable());
        phdrs[5].kind = PT_NULL;
        let program = parse(&exec_with(&phdrs)).expect("valid");
        assert_eq!(program.gnu_stack, None);
        assert!(!program.stack_executable());
    }

    #[test]
    fn segments_may_share_a_page_and_empty_ones_overlap_nothing() {
        let phdrs = [
            load(RX, 0, 0x40_0000, 0x1100, 0x1100),
            load(RW, 0x1100, 0x40_1100, 0x10, 0x10),
            load(R, 0x800, 0x40_0800, 0, 0),
        ];
        let program = parse(&elf(ET_EXEC, 0x40_0100, &phdrs, 0x1110)).expect("valid");
        assert_eq!(program.span(), (0x40_0000, 0x40_2000));
    }

    #[test]
    fn a_segment_may_end_exactly_at_the_end_of_user_space() {
        let phdrs = [load(RX, 0, USER_END - 0x1000, 0x100, 0x1000)];
        let program = parse(&elf(ET_EXEC, USER_END - 0x1000, &phdrs, 0x100)).expect("valid");
        assert_eq!(brk_start(&program, 0), USER_END);
    }

    fn pie_phdrs() -> Vec<Ph> {
        let align = |ph: Ph| Ph {
            align: 0x20_0000,
            ..ph
        };
        vec![
            align(load(R, 0, 0, 0x200, 0x200)),
            align(load(RX, 0x1000, 0x20_1000, 0x100, 0x100)),
            align(load(RW, 0x1100, 0x40_1100, 0x20, 0x2000)),
        ]
    }

    #[test]
    fn a_static_pie_is_described_and_placed() {
        let program = parse(&elf(ET_DYN, 0x20_1000, &pie_phdrs(), 0x1120)).expect("valid");
        assert_eq!(program.kind, Kind::StaticPie);
        assert_eq!(program.entry, 0x20_1000);
        assert_eq!(program.max_align, 0x20_0000);
        assert_eq!(program.phdr, Some(64));
        assert_eq!(program.gnu_stack, None);
        assert_eq!(program.span(), (0, 0x40_4000));
        // PIE_BASE raised to the 2 MiB alignment.
        let base = load_base(&program, PIE_BASE);
        assert_eq!(base, 0x5555_5560_0000);
        assert_eq!(brk_start(&program, base), 0x5555_5560_0000 + 0x40_4000);
        assert_eq!(load_base(&program, 0x1000_0000), 0x1000_0000);
        assert_eq!(load_base(&program, 0x1234), 0x20_0000);
        // No room at the preferred base: the default one.
        assert_eq!(load_base(&program, USER_END - 0x1000), base);
        assert_eq!(load_base(&program, u64::MAX), base);
    }

    #[test]
    fn a_small_aligned_pie_loads_at_pie_base() {
        let phdrs = [load(RX, 0, 0, 0x100, 0x100)];
        let program = parse(&elf(ET_DYN, 0x80, &phdrs, 0x100)).expect("valid");
        assert_eq!(load_base(&program, PIE_BASE), PIE_BASE);
    }

    #[test]
    fn truncated_headers_are_refused_and_say_which() {
        let file = exec_with(&exec_phdrs());
        for len in [1, 3, 4, 10, 16, 40, 63] {
            assert_eq!(refused(&file[..len]), LoadError::TruncatedHeader { len });
        }
        let message = refused(&file[..40]).to_string();
        assert!(message.contains("truncated ELF header"), "{message}");
        for len in [64, 100, 64 + 56 * 6 - 1] {
            let error = refused(&file[..len]);
            assert_eq!(
                error,
                LoadError::TruncatedProgramHeaders {
                    phoff: 64,
                    phnum: 6,
                    len
                }
            );
            assert!(
                error.to_string().contains("truncated program headers"),
                "{error}"
            );
        }
        let mut far = file.clone();
        put(&mut far, 32, u64::MAX - 8, 8);
        assert!(matches!(
            refused(&far),
            LoadError::TruncatedProgramHeaders { .. }
        ));
    }

    #[test]
    fn wrong_identification_is_refused() {
        let file = exec_with(&exec_phdrs());
        assert_eq!(refused(&[]), LoadError::NotElf);
        assert_eq!(refused(b"#!/bin/sh\n"), LoadError::NotElf);
        assert_eq!(refused(b"\x7fELL"), LoadError::NotElf);

        let mut elf32 = file[..52].to_vec();
        elf32[4] = 1;
        let error = refused(&elf32);
        assert_eq!(error, LoadError::NotElf64 { class: 1 });
        assert!(error.to_string().contains("32-bit"), "{error}");

        let mut big = file.clone();
        big[5] = 2;
        let error = refused(&big);
        assert_eq!(error, LoadError::NotLittleEndian { data: 2 });
        assert!(error.to_string().contains("big-endian"), "{error}");
    }

    #[test]
    fn wrong_machine_is_refused_by_name() {
        for (machine, name) in [(3u16, "i386"), (183, "aarch64"), (9999, "machine 9999")] {
            let mut file = exec_with(&exec_phdrs());
            put(&mut file, 18, machine, 2);
            let error = refused(&file);
            assert_eq!(error, LoadError::WrongMachine { machine });
            assert!(error.to_string().contains(name), "{error}");
        }
    }

    #[test]
    fn objects_and_core_dumps_are_refused() {
        for (e_type, word) in [
            (ET_REL, "relocatable"),
            (ET_CORE, "core dump"),
            (0, "type 0"),
        ] {
            let error = refused(&elf(e_type, 0x40_1000, &exec_phdrs(), 0x1120));
            assert_eq!(error, LoadError::WrongType { e_type });
            assert!(error.to_string().contains(word), "{error}");
        }
    }

    #[test]
    fn program_header_table_shape_is_checked() {
        let mut file = exec_with(&exec_phdrs());
        put(&mut file, 54, 32u16, 2);
        assert_eq!(refused(&file), LoadError::BadPhentsize { phentsize: 32 });

        let mut phdrs = exec_phdrs();
        phdrs.resize(MAX_PHNUM, other(PT_NULL, 0, 0, 0, 0));
        assert!(parse(&elf(ET_EXEC, 0x40_1000, &phdrs, 0x1120)).is_ok());
        phdrs.push(other(PT_NULL, 0, 0, 0, 0));
        let error = refused(&elf(ET_EXEC, 0x40_1000, &phdrs, 0x1120));
        assert_eq!(error, LoadError::TooManyProgramHeaders { phnum: 65 });
        assert!(error.to_string().contains("65 program headers"), "{error}");
    }

    #[test]
    fn dynamically_linked_programs_name_their_interpreter() {
        let path = b"/lib/ld-musl-x86_64.so.1\0";
        for e_type in [ET_EXEC, ET_DYN] {
            let mut phdrs = exec_phdrs();
            phdrs.insert(1, other(PT_INTERP, R, 0x200, 0x40_0200, path.len() as u64));
            let mut file = elf(e_type, 0x40_1000, &phdrs, 0x1120);
            file[0x200..0x200 + path.len()].copy_from_slice(path);
            let error = refused(&file);
            assert_eq!(
                error,
                LoadError::Dynamic {
                    interpreter: "/lib/ld-musl-x86_64.so.1".to_string()
                }
            );
            assert_eq!(
                error.to_string(),
                "dynamically linked (interpreter /lib/ld-musl-x86_64.so.1): sanos runs static \
                 executables; dynamic linking is not supported yet"
            );
        }
        // An interpreter path outside the file is still reported as such.
        let mut phdrs = exec_phdrs();
        phdrs.push(other(PT_INTERP, R, u64::MAX, 0, 10));
        assert_eq!(
            refused(&exec_with(&phdrs)),
            LoadError::Dynamic {
                interpreter: String::new()
            }
        );
    }

    #[test]
    fn no_loadable_segment_is_refused() {
        let phdrs = [other(PT_GNU_STACK, RW, 0, 0, 0)];
        assert_eq!(
            refused(&elf(ET_EXEC, 0, &phdrs, 0x100)),
            LoadError::NoLoadSegment
        );
        assert_eq!(
            refused(&elf(ET_EXEC, 0, &[], 0x100)),
            LoadError::NoLoadSegment
        );
    }

    #[test]
    fn file_size_larger_than_memory_size_is_refused() {
        let mut phdrs = exec_phdrs();
        phdrs[3].memsz = 0x10;
        let error = refused(&exec_with(&phdrs));
        assert_eq!(
            error,
            LoadError::FileSizeExceedsMemSize {
                index: 3,
                filesz: 0x20,
                memsz: 0x10
            }
        );
        assert!(
            error.to_string().starts_with("program header 3:"),
            "{error}"
        );
    }

    #[test]
    fn segment_bytes_past_the_end_of_the_file_are_refused() {
        let mut phdrs = exec_phdrs();
        phdrs[3].filesz = 0x21;
        assert_eq!(
            refused(&exec_with(&phdrs)),
            LoadError::SegmentOutsideFile {
                index: 3,
                offset: 0x1100,
                filesz: 0x21,
                len: 0x1120
            }
        );
        phdrs[3] = load(RW, u64::MAX - 0xfff, 0x40_2000, 0x10, 0x10);
        assert!(matches!(
            refused(&exec_with(&phdrs)),
            LoadError::SegmentOutsideFile { index: 3, .. }
        ));
    }

    #[test]
    fn alignment_and_congruence_are_checked() {
        let mut phdrs = exec_phdrs();
        phdrs[2].align = 0x3000;
        assert_eq!(
            refused(&exec_with(&phdrs)),
            LoadError::BadAlignment {
                index: 2,
                align: 0x3000
            }
        );

        // Off by 0x10 within the page, whatever p_align says.
        for align in [0, 1, 0x10, 0x1000] {
            let mut phdrs = exec_phdrs();
            phdrs[2].align = align;
            phdrs[2].vaddr = 0x40_1010;
            let error = refused(&exec_with(&phdrs));
            assert_eq!(
                error,
                LoadError::Incongruent {
                    index: 2,
                    vaddr: 0x40_1010,
                    offset: 0x1000,
                    modulus: 0x1000
                }
            );
            assert!(
                error.to_string().contains("differ modulo 0x1000"),
                "{error}"
            );
        }
        // Page-congruent but not modulo a 2 MiB p_align.
        let mut phdrs = exec_phdrs();
        phdrs[2].align = 0x20_0000;
        phdrs[2].vaddr = 0x50_1000;
        assert_eq!(
            refused(&exec_with(&phdrs)),
            LoadError::Incongruent {
                index: 2,
                vaddr: 0x50_1000,
                offset: 0x1000,
                modulus: 0x20_0000
            }
        );
    }

    #[test]
    fn segments_outside_user_space_are_refused() {
        let mut phdrs = exec_phdrs();
        phdrs[3].vaddr = USER_END - 0x1000 + 0x100;
        let error = refused(&exec_with(&phdrs));
        assert!(matches!(
            error,
            LoadError::OutsideUserSpace {
                index: 3,
                base: 0,
                ..
            }
        ));
        assert!(
            error
                .to_string()
                .contains("end of user space (0x7ffffffff000)"),
            "{error}"
        );

        phdrs[3].vaddr = u64::MAX - 0xeff;
        assert!(matches!(
            refused(&exec_with(&phdrs)),
            LoadError::OutsideUserSpace { index: 3, .. }
        ));

        // A static PIE must fit above its default base.
        let mut phdrs = pie_phdrs();
        phdrs[2].memsz = 0x3000_0000_0000;
        let error = refused(&elf(ET_DYN, 0x20_1000, &phdrs, 0x1120));
        assert_eq!(
            error,
            LoadError::OutsideUserSpace {
                index: 2,
                vaddr: 0x40_1100,
                memsz: 0x3000_0000_0000,
                base: 0x5555_5560_0000,
            }
        );
        assert!(
            error.to_string().contains("(load base 0x555555600000)"),
            "{error}"
        );
    }

    #[test]
    fn overlapping_segments_are_refused() {
        let mut phdrs = exec_phdrs();
        phdrs[3].vaddr = 0x40_10f0;
        phdrs[3].offset = 0x10f0;
        let error = refused(&elf(ET_EXEC, 0x40_1000, &phdrs, 0x1200));
        assert_eq!(
            error,
            LoadError::Overlap {
                first: 2,
                second: 3
            }
        );
        assert_eq!(
            error.to_string(),
            "program headers 2 and 3: the segments overlap in memory"
        );
    }

    #[test]
    fn the_entry_point_must_be_in_an_executable_segment() {
        for entry in [0, 0x40_0000, 0x40_1100, 0x40_2100] {
            let error = refused(&elf(ET_EXEC, entry, &exec_phdrs(), 0x1120));
            assert_eq!(error, LoadError::EntryNotExecutable { entry });
        }
        assert!(parse(&elf(ET_EXEC, 0x40_10ff, &exec_phdrs(), 0x1120)).is_ok());
    }
}
