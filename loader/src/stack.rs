//! The initial process stack, laid out as Linux's `create_elf_tables`
//! (`fs/binfmt_elf.c`) lays it out on x86-64.
//!
//! From the top of the stack down:
//!
//! ```text
//! top     8 zero bytes          (bprm->p starts one pointer below the top)
//!         execfn string         AT_EXECFN points here
//!         envp strings          envp[envc - 1] highest
//!         argv strings          argv[0] lowest
//!         (align down to 16)    arch_align_stack, without randomisation
//!         platform string       AT_PLATFORM points here
//!         16 random bytes       AT_RANDOM points here
//!         (padding)             so that rsp ends up 16-byte aligned
//!         auxv pairs, AT_NULL last
//!         NULL, envp pointers
//!         NULL, argv pointers
//! rsp     argc
//! ```
//!
//! Every string is NUL-terminated. `rsp` is 16-byte aligned, as the x86-64
//! psABI requires at process entry.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

/// End of the auxiliary vector.
pub const AT_NULL: u64 = 0;
/// Address of the program headers.
pub const AT_PHDR: u64 = 3;
/// Size of one program header.
pub const AT_PHENT: u64 = 4;
/// Number of program headers.
pub const AT_PHNUM: u64 = 5;
/// Page size.
pub const AT_PAGESZ: u64 = 6;
/// Load address of the interpreter (0 without one).
pub const AT_BASE: u64 = 7;
/// Flags (`AT_FLAGS_PRESERVE_ARGV0`).
pub const AT_FLAGS: u64 = 8;
/// Entry point of the program.
pub const AT_ENTRY: u64 = 9;
/// Real user ID.
pub const AT_UID: u64 = 11;
/// Effective user ID.
pub const AT_EUID: u64 = 12;
/// Real group ID.
pub const AT_GID: u64 = 13;
/// Effective group ID.
pub const AT_EGID: u64 = 14;
/// Address of the platform string.
pub const AT_PLATFORM: u64 = 15;
/// CPU capabilities (CPUID leaf 1 EDX on x86).
pub const AT_HWCAP: u64 = 16;
/// Frequency of `times()`.
pub const AT_CLKTCK: u64 = 17;
/// Non-zero for a set-user-ID or otherwise secure execution.
pub const AT_SECURE: u64 = 23;
/// Address of 16 random bytes.
pub const AT_RANDOM: u64 = 25;
/// More CPU capabilities (`HWCAP2_*` on x86).
pub const AT_HWCAP2: u64 = 26;
/// Address of the file name the program was executed as.
pub const AT_EXECFN: u64 = 31;
/// Address of the vDSO's ELF header.
pub const AT_SYSINFO_EHDR: u64 = 33;
/// Minimal stack size a signal handler needs.
pub const AT_MINSIGSTKSZ: u64 = 51;

/// The values of the auxiliary vector that the caller decides. The
/// addresses of the strings and random bytes (`AT_EXECFN`, `AT_PLATFORM`,
/// `AT_RANDOM`) are filled in by [`build`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Auxv {
    /// `AT_PHDR`: address of the program headers, biased.
    pub phdr: u64,
    /// `AT_PHENT`: size of one program header (56).
    pub phent: u64,
    /// `AT_PHNUM`: number of program headers.
    pub phnum: u64,
    /// `AT_PAGESZ`: page size (4096).
    pub pagesz: u64,
    /// `AT_BASE`: interpreter load address; 0 for a static executable.
    pub base: u64,
    /// `AT_FLAGS`: normally 0.
    pub flags: u64,
    /// `AT_ENTRY`: the program's entry point, biased.
    pub entry: u64,
    /// `AT_UID`.
    pub uid: u64,
    /// `AT_EUID`.
    pub euid: u64,
    /// `AT_GID`.
    pub gid: u64,
    /// `AT_EGID`.
    pub egid: u64,
    /// `AT_SECURE`: whether the C library must distrust the environment.
    pub secure: bool,
    /// `AT_HWCAP`.
    pub hwcap: u64,
    /// `AT_HWCAP2`.
    pub hwcap2: u64,
    /// `AT_CLKTCK`: Linux always says 100.
    pub clktck: u64,
    /// `AT_MINSIGSTKSZ`: the signal frame size.
    pub minsigstksz: u64,
    /// `AT_SYSINFO_EHDR`: the vDSO, if the kernel maps one.
    pub sysinfo_ehdr: Option<u64>,
}

impl Auxv {
    /// The vector in the order Linux writes it on x86-64 (`ARCH_DLINFO`
    /// first, then `create_elf_tables`' own entries), ending with `AT_NULL`.
    fn pairs(&self, execfn: u64, platform: u64, random: u64) -> Vec<(u64, u64)> {
        let mut pairs = Vec::with_capacity(22);
        if let Some(vdso) = self.sysinfo_ehdr {
            pairs.push((AT_SYSINFO_EHDR, vdso));
        }
        pairs.extend([
            (AT_MINSIGSTKSZ, self.minsigstksz),
            (AT_HWCAP, self.hwcap),
            (AT_PAGESZ, self.pagesz),
            (AT_CLKTCK, self.clktck),
            (AT_PHDR, self.phdr),
            (AT_PHENT, self.phent),
            (AT_PHNUM, self.phnum),
            (AT_BASE, self.base),
            (AT_FLAGS, self.flags),
            (AT_ENTRY, self.entry),
            (AT_UID, self.uid),
            (AT_EUID, self.euid),
            (AT_GID, self.gid),
            (AT_EGID, self.egid),
            (AT_SECURE, u64::from(self.secure)),
            (AT_RANDOM, random),
            (AT_HWCAP2, self.hwcap2),
            (AT_EXECFN, execfn),
            (AT_PLATFORM, platform),
            (AT_NULL, 0),
        ]);
        pairs
    }
}

/// What goes on the initial stack.
#[derive(Clone, Copy, Debug)]
pub struct StackSpec<'a> {
    /// The arguments, `argv[0]` first, without NULs.
    pub argv: &'a [&'a [u8]],
    /// The environment strings (`NAME=value`), without NULs.
    pub envp: &'a [&'a [u8]],
    /// The path the program was executed as (`AT_EXECFN`).
    pub execfn: &'a [u8],
    /// The platform string (`AT_PLATFORM`), normally `b"x86_64"`.
    pub platform: &'a [u8],
    /// The 16 bytes `AT_RANDOM` points at (the C library's stack-protector
    /// and pointer-guard seed).
    pub random: [u8; 16],
    /// The rest of the auxiliary vector.
    pub auxv: Auxv,
}

/// A built initial stack: the bytes of memory `[rsp, top)` and where things
/// are in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitialStack {
    /// The image of memory from `rsp` up to the top of the stack.
    pub bytes: Vec<u8>,
    /// The initial stack pointer (it points at `argc`); 16-byte aligned.
    pub rsp: u64,
    /// Address of each argument string, `argv[0]` first.
    pub argv: Vec<u64>,
    /// Address of each environment string.
    pub envp: Vec<u64>,
    /// Address of the execfn string.
    pub execfn: u64,
    /// Address of the platform string.
    pub platform: u64,
    /// Address of the 16 random bytes.
    pub random: u64,
    /// The auxiliary vector as written, ending with `(AT_NULL, 0)`.
    pub auxv: Vec<(u64, u64)>,
}

/// Why a stack could not be built or read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StackError {
    /// An argument contains a NUL byte.
    NulInArgument {
        /// Its index in `argv`.
        index: usize,
    },
    /// An environment string contains a NUL byte.
    NulInEnvironment {
        /// Its index in `envp`.
        index: usize,
    },
    /// The execfn path contains a NUL byte.
    NulInExecfn,
    /// The platform string contains a NUL byte.
    NulInPlatform,
    /// The stack would be larger than the limit given to [`build`].
    TooLarge {
        /// The limit.
        max_bytes: usize,
    },
    /// The stack would extend below address 0.
    NoRoom {
        /// The top of stack asked for.
        top: u64,
    },
    /// [`parse`]: the image holds no valid data at this address (out of
    /// range, a NULL missing, or a string without its NUL).
    Malformed {
        /// The address that could not be read.
        addr: u64,
    },
}

impl fmt::Display for StackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NulInArgument { index } => write!(f, "argument {index} contains a NUL byte"),
            Self::NulInEnvironment { index } => {
                write!(f, "environment string {index} contains a NUL byte")
            }
            Self::NulInExecfn => f.write_str("the executable's path contains a NUL byte"),
            Self::NulInPlatform => f.write_str("the platform string contains a NUL byte"),
            Self::TooLarge { max_bytes } => write!(
                f,
                "arguments and environment too long: the initial stack would exceed \
                 {max_bytes} bytes"
            ),
            Self::NoRoom { top } => {
                write!(f, "the initial stack does not fit below {top:#x}")
            }
            Self::Malformed { addr } => write!(f, "no valid stack data at {addr:#x}"),
        }
    }
}

impl core::error::Error for StackError {}

/// Hands out stack space downwards from `top`, refusing to go past the size
/// limit or below address 0.
struct Cursor {
    top: u64,
    sp: u64,
    max_bytes: usize,
}

impl Cursor {
    /// Moves down by `len` bytes and returns the new stack pointer.
    fn down(&mut self, len: u64) -> Result<u64, StackError> {
        self.move_to(self.sp.checked_sub(len))
    }

    /// Aligns the stack pointer down to 16 bytes and returns it.
    fn align(&mut self) -> Result<u64, StackError> {
        self.move_to(Some(self.sp & !15))
    }

    fn move_to(&mut self, sp: Option<u64>) -> Result<u64, StackError> {
        let sp = sp.ok_or(StackError::NoRoom { top: self.top })?;
        if self.top - sp > self.max_bytes as u64 {
            return Err(StackError::TooLarge {
                max_bytes: self.max_bytes,
            });
        }
        self.sp = sp;
        Ok(sp)
    }
}

/// Builds the initial stack for a program whose stack ends at `top` (the
/// first address above it), refusing to use more than `max_bytes`.
///
/// The result's `bytes` go at `rsp`; the kernel maps enough stack pages to
/// hold them, copies them in, and starts the program with `rsp`.
pub fn build(top: u64, spec: &StackSpec<'_>, max_bytes: usize) -> Result<InitialStack, StackError> {
    if let Some(index) = spec.argv.iter().position(|s| s.contains(&0)) {
        return Err(StackError::NulInArgument { index });
    }
    if let Some(index) = spec.envp.iter().position(|s| s.contains(&0)) {
        return Err(StackError::NulInEnvironment { index });
    }
    if spec.execfn.contains(&0) {
        return Err(StackError::NulInExecfn);
    }
    if spec.platform.contains(&0) {
        return Err(StackError::NulInPlatform);
    }
    let size = |s: &[u8]| s.len() as u64 + 1;

    let mut cursor = Cursor {
        top,
        sp: top,
        max_bytes,
    };
    cursor.down(8)?;
    let execfn = cursor.down(size(spec.execfn))?;
    // Linux copies the environment, then the arguments, each list from its
    // last string to its first, so argv[0] ends up lowest.
    let mut envp = vec![0; spec.envp.len()];
    for (addr, s) in envp.iter_mut().zip(spec.envp).rev() {
        *addr = cursor.down(size(s))?;
    }
    let mut argv = vec![0; spec.argv.len()];
    for (addr, s) in argv.iter_mut().zip(spec.argv).rev() {
        *addr = cursor.down(size(s))?;
    }
    cursor.align()?;
    let platform = cursor.down(size(spec.platform))?;
    let random = cursor.down(16)?;

    let auxv = spec.auxv.pairs(execfn, platform, random);
    let mut table = Vec::with_capacity(argv.len() + envp.len() + 3 + 2 * auxv.len());
    table.push(argv.len() as u64);
    table.extend(&argv);
    table.push(0);
    table.extend(&envp);
    table.push(0);
    table.extend(auxv.iter().flat_map(|&(key, value)| [key, value]));
    // STACK_ROUND: the table goes below the random bytes, moved down so that
    // argc, where rsp points, is 16-byte aligned.
    cursor.down((table.len() as u64).saturating_mul(8))?;
    let rsp = cursor.align()?;

    let mut bytes = vec![0; (top - rsp) as usize];
    let mut put = |addr: u64, data: &[u8]| {
        let at = (addr - rsp) as usize;
        bytes[at..at + data.len()].copy_from_slice(data);
    };
    // The strings' NULs and the top 8 bytes are already zero.
    put(execfn, spec.execfn);
    for (&addr, s) in envp.iter().zip(spec.envp).chain(argv.iter().zip(spec.argv)) {
        put(addr, s);
    }
    put(platform, spec.platform);
    put(random, &spec.random);
    for (i, word) in table.iter().enumerate() {
        put(rsp + 8 * i as u64, &word.to_le_bytes());
    }

    Ok(InitialStack {
        bytes,
        rsp,
        argv,
        envp,
        execfn,
        platform,
        random,
        auxv,
    })
}

/// The auxiliary vector as `/proc/self/auxv` shows it: the pairs as
/// little-endian 64-bit words, `AT_NULL` included.
pub fn auxv_bytes(stack: &InitialStack) -> Vec<u8> {
    stack
        .auxv
        .iter()
        .flat_map(|&(key, value)| [key, value])
        .flat_map(u64::to_le_bytes)
        .collect()
}

/// An initial stack read back the way a C runtime reads it at `_start`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackView<'a> {
    image: &'a [u8],
    rsp: u64,
    /// The arguments, without their NULs.
    pub argv: Vec<&'a [u8]>,
    /// The environment strings, without their NULs.
    pub envp: Vec<&'a [u8]>,
    /// The auxiliary vector, up to and including `AT_NULL`.
    pub auxv: Vec<(u64, u64)>,
}

impl<'a> StackView<'a> {
    /// The value of the first auxiliary vector entry of type `key`.
    pub fn aux(&self, key: u64) -> Option<u64> {
        self.auxv.iter().find(|&&(k, _)| k == key).map(|&(_, v)| v)
    }

    /// The `len` bytes at address `addr`, if the image holds them.
    pub fn bytes_at(&self, addr: u64, len: usize) -> Option<&'a [u8]> {
        let at = usize::try_from(addr.checked_sub(self.rsp)?).ok()?;
        self.image.get(at..at.checked_add(len)?)
    }

    /// The NUL-terminated string at address `addr`, without its NUL.
    pub fn c_str(&self, addr: u64) -> Option<&'a [u8]> {
        let at = usize::try_from(addr.checked_sub(self.rsp)?).ok()?;
        let rest = self.image.get(at..)?;
        rest.iter().position(|&b| b == 0).map(|end| &rest[..end])
    }

    fn word(&self, addr: u64) -> Result<u64, StackError> {
        self.bytes_at(addr, 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
            .ok_or(StackError::Malformed { addr })
    }

    fn string(&self, addr: u64) -> Result<&'a [u8], StackError> {
        self.c_str(addr).ok_or(StackError::Malformed { addr })
    }
}

/// Reads `bytes`, the image of memory `[rsp, top)`, as a C runtime reads its
/// initial stack: `argc`, the `argv` pointers and their NULL, the `envp`
/// pointers up to their NULL, then auxiliary vector pairs up to `AT_NULL`.
/// Every pointer must point into the image.
pub fn parse(bytes: &[u8], rsp: u64, top: u64) -> Result<StackView<'_>, StackError> {
    if top.checked_sub(rsp) != Some(bytes.len() as u64) {
        return Err(StackError::Malformed { addr: rsp });
    }
    let mut view = StackView {
        image: bytes,
        rsp,
        argv: Vec::new(),
        envp: Vec::new(),
        auxv: Vec::new(),
    };
    let argc = view.word(rsp)?;
    // Each successful read is inside the image, so `at` stays <= top.
    let mut at = rsp + 8;
    for _ in 0..argc {
        let arg = view.string(view.word(at)?)?;
        view.argv.push(arg);
        at += 8;
    }
    if view.word(at)? != 0 {
        return Err(StackError::Malformed { addr: at });
    }
    at += 8;
    loop {
        let pointer = view.word(at)?;
        at += 8;
        if pointer == 0 {
            break;
        }
        let env = view.string(pointer)?;
        view.envp.push(env);
    }
    loop {
        let pair = (view.word(at)?, view.word(at + 8)?);
        at += 16;
        view.auxv.push(pair);
        if pair.0 == AT_NULL {
            return Ok(view);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    const TOP: u64 = 0x7fff_ffff_f000;
    const MAX: usize = 1 << 20;
    const RANDOM: [u8; 16] = *b"0123456789abcdef";

    fn auxv() -> Auxv {
        Auxv {
            phdr: 0x40_0040,
            phent: 56,
            phnum: 6,
            pagesz: 4096,
            base: 0,
            flags: 0,
            entry: 0x40_1000,
            uid: 1000,
            euid: 1001,
            gid: 100,
            egid: 101,
            secure: false,
            hwcap: 0x178b_fbff,
            hwcap2: 2,
            clktck: 100,
            minsigstksz: 3632,
            sysinfo_ehdr: None,
        }
    }

    fn spec<'a>(argv: &'a [&'a [u8]], envp: &'a [&'a [u8]]) -> StackSpec<'a> {
        StackSpec {
            argv,
            envp,
            execfn: b"/bin/prog",
            platform: b"x86_64",
            random: RANDOM,
            auxv: auxv(),
        }
    }

    fn built(top: u64, spec: &StackSpec<'_>) -> InitialStack {
        build(top, spec, MAX).expect("fits")
    }

    #[test]
    fn a_c_runtime_reads_back_what_was_written() {
        let argv: &[&[u8]] = &[b"prog", b"-x", b"hello world"];
        let envp: &[&[u8]] = &[b"A=1", b"PATH=/bin"];
        let spec = spec(argv, envp);
        let stack = built(TOP, &spec);
        assert_eq!(stack.bytes.len() as u64, TOP - stack.rsp);
        let view = parse(&stack.bytes, stack.rsp, TOP).expect("readable");
        assert_eq!(view.argv, argv);
        assert_eq!(view.envp, envp);
        assert_eq!(view.auxv, stack.auxv);
        assert_eq!(view.aux(AT_ENTRY), Some(0x40_1000));
        assert_eq!(view.aux(AT_PHDR), Some(0x40_0040));
        assert_eq!(view.aux(AT_UID), Some(1000));
        assert_eq!(view.aux(AT_SECURE), Some(0));
        assert_eq!(view.aux(AT_SYSINFO_EHDR), None);

        let random = view.aux(AT_RANDOM).expect("AT_RANDOM");
        assert_eq!(random, stack.random);
        assert_eq!(view.bytes_at(random, 16), Some(&RANDOM[..]));
        let execfn = view.aux(AT_EXECFN).expect("AT_EXECFN");
        assert_eq!(
            (execfn, view.c_str(execfn)),
            (stack.execfn, Some(&b"/bin/prog"[..]))
        );
        let platform = view.aux(AT_PLATFORM).expect("AT_PLATFORM");
        assert_eq!(
            (platform, view.c_str(platform)),
            (stack.platform, Some(&b"x86_64"[..]))
        );
    }

    #[test]
    fn strings_are_laid_out_as_linux_lays_them_out() {
        let argv: &[&[u8]] = &[b"prog", b"", b"abc"];
        let envp: &[&[u8]] = &[b"HOME=/", b"X="];
        let stack = built(TOP, &spec(argv, envp));
        let at = |addr: u64| (addr - stack.rsp) as usize;
        // Increasing addresses: argv strings, envp strings, execfn, 8 zero
        // bytes, top; each string NUL-terminated and right after the last.
        let mut next = stack.argv[0];
        for (&addr, s) in stack
            .argv
            .iter()
            .chain(&stack.envp)
            .zip(argv.iter().chain(envp))
        {
            assert_eq!(addr, next);
            assert_eq!(&stack.bytes[at(addr)..at(addr) + s.len()], *s);
            assert_eq!(stack.bytes[at(addr) + s.len()], 0);
            next = addr + s.len() as u64 + 1;
        }
        assert_eq!(stack.execfn, next);
        assert_eq!(stack.execfn + b"/bin/prog\0".len() as u64, TOP - 8);
        assert_eq!(stack.bytes[at(TOP - 9)..], [0; 9]);
        // Below the strings, aligned down to 16: platform, then the random
        // bytes right under it.
        assert_eq!(stack.platform + 7, stack.argv[0] & !15);
        assert_eq!(stack.bytes[at(stack.platform) + 6], 0);
        assert_eq!(stack.random + 16, stack.platform);
    }

    #[test]
    fn auxv_follows_linux_order() {
        let mut spec = spec(&[], &[]);
        let keys = |spec: &StackSpec<'_>| -> Vec<u64> {
            built(TOP, spec).auxv.iter().map(|&(key, _)| key).collect()
        };
        let linux = [
            AT_MINSIGSTKSZ,
            AT_HWCAP,
            AT_PAGESZ,
            AT_CLKTCK,
            AT_PHDR,
            AT_PHENT,
            AT_PHNUM,
            AT_BASE,
            AT_FLAGS,
            AT_ENTRY,
            AT_UID,
            AT_EUID,
            AT_GID,
            AT_EGID,
            AT_SECURE,
            AT_RANDOM,
            AT_HWCAP2,
            AT_EXECFN,
            AT_PLATFORM,
            AT_NULL,
        ];
        assert_eq!(keys(&spec), linux);
        spec.auxv.sysinfo_ehdr = Some(0x7fff_f7ff_d000);
        spec.auxv.secure = true;
        assert_eq!(keys(&spec)[0], AT_SYSINFO_EHDR);
        assert_eq!(keys(&spec)[1..], linux);
        let stack = built(TOP, &spec);
        assert_eq!(stack.auxv[0], (AT_SYSINFO_EHDR, 0x7fff_f7ff_d000));
        let view = parse(&stack.bytes, stack.rsp, TOP).expect("readable");
        assert_eq!(view.aux(AT_SECURE), Some(1));
        assert_eq!(stack.auxv.last(), Some(&(AT_NULL, 0)));
    }

    #[test]
    fn rsp_is_16_byte_aligned_for_any_counts_and_lengths() {
        let words: [&[u8]; 6] = [b"a", b"bb", b"ccc", b"dddddddd", b"", b"eeeeeeeeeeeeeeeee"];
        for top in [TOP, TOP - 1, TOP - 8, TOP - 13] {
            for argc in 0..=5 {
                for envc in 0..=5 {
                    for vdso in [None, Some(0x7fff_f7ff_d000)] {
                        let argv = &words[..argc];
                        let envp = &words[words.len() - envc..];
                        let mut spec = spec(argv, envp);
                        spec.auxv.sysinfo_ehdr = vdso;
                        let stack = built(top, &spec);
                        assert_eq!(stack.rsp % 16, 0, "argc {argc} envc {envc} top {top:#x}");
                        // STACK_ROUND: the table sits as high as alignment allows.
                        let table = 8 * (argc + envc + 3 + 2 * stack.auxv.len()) as u64;
                        assert_eq!(stack.rsp, (stack.random - table) & !15);
                        let view = parse(&stack.bytes, stack.rsp, top).expect("readable");
                        assert_eq!((view.argv.as_slice(), view.envp.as_slice()), (argv, envp));
                    }
                }
            }
        }
    }

    #[test]
    fn oversized_stacks_are_refused() {
        let big = [b'x'; 5000];
        let argv: &[&[u8]] = &[b"prog", &big];
        let spec = spec(argv, &[]);
        let needed = built(TOP, &spec).bytes.len();
        assert!(build(TOP, &spec, needed).is_ok());
        let error = build(TOP, &spec, needed - 1).expect_err("too large");
        assert_eq!(
            error,
            StackError::TooLarge {
                max_bytes: needed - 1
            }
        );
        assert!(error.to_string().contains("too long"), "{error}");
        assert_eq!(
            build(TOP, &spec, 4096),
            Err(StackError::TooLarge { max_bytes: 4096 })
        );
        assert_eq!(
            build(0x100, &spec, MAX),
            Err(StackError::NoRoom { top: 0x100 })
        );
    }

    #[test]
    fn nul_bytes_inside_strings_are_refused() {
        let bad: &[&[u8]] = &[b"ok", b"b\0d"];
        assert_eq!(
            build(TOP, &spec(bad, &[]), MAX),
            Err(StackError::NulInArgument { index: 1 })
        );
        assert_eq!(
            build(TOP, &spec(&[], bad), MAX),
            Err(StackError::NulInEnvironment { index: 1 })
        );
        let mut s = spec(&[], &[]);
        s.execfn = b"/bin\0x";
        assert_eq!(build(TOP, &s, MAX), Err(StackError::NulInExecfn));
        let mut s = spec(&[], &[]);
        s.platform = b"x86\0";
        assert_eq!(build(TOP, &s, MAX), Err(StackError::NulInPlatform));
    }

    #[test]
    fn auxv_bytes_are_the_pairs_as_little_endian_words() {
        let stack = built(TOP, &spec(&[b"prog"], &[]));
        let bytes = auxv_bytes(&stack);
        assert_eq!(bytes.len(), 16 * stack.auxv.len());
        assert_eq!(
            bytes[..16],
            [&51u64.to_le_bytes()[..], &3632u64.to_le_bytes()].concat()
        );
        assert_eq!(bytes[bytes.len() - 16..], [0; 16]);
        // The same words are on the stack after argc, argv[0] and two NULLs.
        let at = 8 * 4;
        assert_eq!(stack.bytes[at..at + bytes.len()], bytes);
    }

    #[test]
    fn the_reader_refuses_bad_images() {
        let stack = built(TOP, &spec(&[b"prog"], &[b"A=1"]));
        let (rsp, bytes) = (stack.rsp, &stack.bytes);
        assert_eq!(
            parse(&bytes[8..], rsp, TOP),
            Err(StackError::Malformed { addr: rsp })
        );
        assert_eq!(
            parse(bytes, rsp, TOP - 8),
            Err(StackError::Malformed { addr: rsp })
        );
        // argv[0] pointing below the image.
        let mut bad = bytes.clone();
        bad[8..16].copy_from_slice(&(rsp - 8).to_le_bytes());
        assert_eq!(
            parse(&bad, rsp, TOP),
            Err(StackError::Malformed { addr: rsp - 8 })
        );
        // argc larger than the pointers there are: argv's NULL is read as an
        // argument pointer, envp[0] where the NULL should be.
        let mut bad = bytes.clone();
        bad[..8].copy_from_slice(&2u64.to_le_bytes());
        assert_eq!(
            parse(&bad, rsp, TOP),
            Err(StackError::Malformed { addr: 0 })
        );
        // No AT_NULL: the reader runs off the top.
        let words = [0u64, 0, 0, AT_PAGESZ, 4096];
        let image: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        assert_eq!(
            parse(&image, 0x1000, 0x1028),
            Err(StackError::Malformed { addr: 0x1028 })
        );
    }
}
