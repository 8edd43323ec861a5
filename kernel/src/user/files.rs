//! File descriptors and the file system calls, over the namespace of
//! `crate::fs` (`pure::fs::vfs`).
//!
//! An open file ([`OpenFile`]) is a node, the path it was opened by, an
//! offset and status flags; descriptors point at open files (`dup` shares
//! one) and carry close-on-exec. Descriptors 0, 1 and 2 start as
//! `/dev/console`. Pipes are nodes too ([`pipe`]).

use super::uaccess::{self, copy_from_user, copy_to_user};
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};
use pure::fs::vfs::{FileType, Metadata, Node, Vfs};
use pure::user::linux::Errno;

type Result<T> = core::result::Result<T, Errno>;

/// The objects behind descriptors that are not files of the namespace.
#[derive(Clone)]
pub enum Special {
    None,
    Pipe(Arc<super::pipe::End>),
    Socket(Arc<super::net::Socket>),
    Epoll(Arc<super::poll::Epoll>),
    EventFd(Arc<super::poll::EventFd>),
}

/// An open file description.
pub struct OpenFile {
    pub node: Arc<dyn Node>,
    /// What the node is when it is not a file: reads and writes go there,
    /// honouring `O_NONBLOCK`.
    pub special: Special,
    /// The canonical path it was opened by (for `*at` calls and
    /// `fchdir`); empty for pipes.
    pub path: String,
    offset: spin::Mutex<u64>,
    /// `O_APPEND`, `O_NONBLOCK` and the access mode.
    flags: AtomicU32,
}

impl OpenFile {
    pub fn new(node: Arc<dyn Node>, path: String, flags: u32) -> Arc<OpenFile> {
        Arc::new(OpenFile {
            node,
            special: Special::None,
            path,
            offset: spin::Mutex::new(0),
            flags: AtomicU32::new(flags),
        })
    }

    /// An open socket, pipe end, epoll instance or eventfd.
    pub fn special(node: Arc<dyn Node>, special: Special, flags: u32) -> Arc<OpenFile> {
        Arc::new(OpenFile {
            node,
            special,
            path: String::new(),
            offset: spin::Mutex::new(0),
            flags: AtomicU32::new(flags),
        })
    }

    /// A socket's open file (read-write).
    pub fn new_socket(socket: Arc<super::net::Socket>, flags: u32) -> Arc<OpenFile> {
        OpenFile::special(socket.clone(), Special::Socket(socket), O_RDWR | flags)
    }

    /// The socket, if this is one.
    pub fn socket(&self) -> Option<Arc<super::net::Socket>> {
        match &self.special {
            Special::Socket(socket) => Some(socket.clone()),
            _ => None,
        }
    }

    fn flags(&self) -> u32 {
        self.flags.load(Ordering::Relaxed)
    }

    fn readable(&self) -> bool {
        self.flags() & O_ACCMODE != O_WRONLY && self.flags() & O_PATH == 0
    }

    fn writable(&self) -> bool {
        self.flags() & O_ACCMODE != O_RDONLY && self.flags() & O_PATH == 0
    }

    /// Whether the file can back a mapping: a regular file opened for
    /// reading (`EACCES` otherwise, `ENODEV` for what is no file). A
    /// writable shared mapping is refused (`ENODEV`): pages are private
    /// copies, and writes would not reach the file.
    pub fn mappable(&self, shared_write: bool) -> Result<()> {
        if !matches!(self.special, Special::None)
            || self.node.metadata().kind != FileType::Regular
            || !crate::fs::holds_data(&self.node)
        {
            return Err(Errno::ENODEV);
        }
        if !self.readable() {
            return Err(Errno::EACCES);
        }
        if shared_write {
            return Err(Errno::ENODEV);
        }
        Ok(())
    }

    pub fn nonblocking(&self) -> bool {
        self.flags() & O_NONBLOCK != 0
    }
}

struct Fd {
    file: Arc<OpenFile>,
    cloexec: bool,
}

/// Most descriptors a program may hold (`RLIMIT_NOFILE`).
pub const MAX_FDS: usize = 1024;

struct State {
    vfs: Option<Arc<Vfs>>,
    fds: Vec<Option<Fd>>,
    cwd: String,
}

static STATE: spin::Mutex<State> = spin::Mutex::new(State {
    vfs: None,
    fds: Vec::new(),
    cwd: String::new(),
});

fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    crate::arch::cpu::without_interrupts(|| f(&mut STATE.lock()))
}

/// Sets up a program's files: the namespace, `/` as the working
/// directory, descriptors 0-2 on the console.
pub fn start(vfs: Vfs) {
    let console = OpenFile::new(crate::fs::console(), String::from("/dev/console"), O_RDWR);
    with(|state| {
        state.vfs = Some(Arc::new(vfs));
        state.cwd = String::from("/");
        state.fds = (0..3)
            .map(|_| {
                Some(Fd {
                    file: console.clone(),
                    cloexec: false,
                })
            })
            .collect();
    });
}

/// Closes everything (the program ended).
pub fn finish() {
    let (fds, vfs) = with(|state| (core::mem::take(&mut state.fds), state.vfs.take()));
    drop(fds);
    drop(vfs);
}

fn vfs() -> Result<Arc<Vfs>> {
    with(|state| state.vfs.clone()).ok_or(Errno::ENOENT)
}

/// The open file behind `fd` (an `int`: the register's low half).
pub fn get(fd: u64) -> Result<Arc<OpenFile>> {
    let fd = fd as u32 as u64;
    with(|state| {
        state
            .fds
            .get(fd as usize)
            .and_then(|slot| slot.as_ref())
            .map(|fd| fd.file.clone())
            .ok_or(Errno::EBADF)
    })
}

/// Installs `file` at the lowest free descriptor at or above `from`.
pub fn install(file: Arc<OpenFile>, cloexec: bool, from: usize) -> Result<u64> {
    with(|state| {
        let free = (from..MAX_FDS).find(|&i| state.fds.get(i).is_none_or(|slot| slot.is_none()));
        let index = free.ok_or(Errno::EMFILE)?;
        if state.fds.len() <= index {
            state.fds.resize_with(index + 1, || None);
        }
        state.fds[index] = Some(Fd { file, cloexec });
        Ok(index as u64)
    })
}

fn close(fd: u64) -> Result<u64> {
    let fd = fd as u32 as u64;
    let old = with(|state| {
        state
            .fds
            .get_mut(fd as usize)
            .and_then(Option::take)
            .ok_or(Errno::EBADF)
    })?;
    drop(old);
    Ok(0)
}

const PATH_MAX: usize = 4096;
/// `AT_FDCWD` as the low 32 bits of the register: descriptors are `int`
/// in the ABI, and the upper half of the register is not the caller's.
pub const AT_FDCWD: u64 = (-100i32) as u32 as u64;
const AT_SYMLINK_NOFOLLOW: u64 = 0x100;
const AT_REMOVEDIR: u64 = 0x200;
const AT_EMPTY_PATH: u64 = 0x1000;

const O_ACCMODE: u32 = 3;
const O_RDONLY: u32 = 0;
const O_WRONLY: u32 = 1;
const O_RDWR: u32 = 2;
const O_CREAT: u32 = 0o100;
const O_EXCL: u32 = 0o200;
const O_TRUNC: u32 = 0o1000;
const O_APPEND: u32 = 0o2000;
pub const O_NONBLOCK: u32 = 0o4000;
const O_DIRECTORY: u32 = 0o200000;
const O_NOFOLLOW: u32 = 0o400000;
pub const O_CLOEXEC: u32 = 0o2000000;
const O_PATH: u32 = 0o10000000;
const O_TMPFILE: u32 = 0o20000000;

/// The directory a path is relative to: `dirfd`'s path, or the working
/// directory for `AT_FDCWD`.
fn base(dirfd: u64, path: &[u8]) -> Result<String> {
    let dirfd = dirfd as u32 as u64;
    if path.first() == Some(&b'/') || dirfd == AT_FDCWD {
        return Ok(with(|state| state.cwd.clone()));
    }
    let file = get(dirfd)?;
    if file.node.metadata().kind != FileType::Directory {
        return Err(Errno::ENOTDIR);
    }
    Ok(file.path.clone())
}

fn read_path(address: u64) -> Result<String> {
    let bytes = uaccess::read_c_string(address, PATH_MAX)?;
    String::from_utf8(bytes).map_err(|_| Errno::ENOENT)
}

/// Resolves a user path against `dirfd`.
fn resolve(dirfd: u64, path: &str, follow: bool) -> Result<(String, Arc<dyn Node>)> {
    let base = base(dirfd, path.as_bytes())?;
    vfs()?.resolve(&base, path, follow)
}

pub fn openat(dirfd: u64, path: u64, flags: u64, mode: u64) -> Result<u64> {
    let path = read_path(path)?;
    let flags = flags as u32;
    if flags & O_TMPFILE == O_TMPFILE {
        return Err(Errno::EOPNOTSUPP);
    }
    let vfs = vfs()?;
    let base = base(dirfd, path.as_bytes())?;
    let follow = flags & O_NOFOLLOW == 0;
    let (canonical, node) = match vfs.resolve(&base, &path, follow) {
        Ok(_) if flags & O_CREAT != 0 && flags & O_EXCL != 0 => return Err(Errno::EEXIST),
        Ok(found) => found,
        Err(Errno::ENOENT) if flags & O_CREAT != 0 => {
            let parent = vfs.resolve_parent(&base, &path)?;
            if parent.trailing_slash {
                return Err(Errno::EISDIR);
            }
            let node = parent
                .node
                .create(&parent.name, FileType::Regular, mode as u32 & 0o7777)?;
            let joined = if parent.path == "/" {
                alloc::format!("/{}", parent.name)
            } else {
                alloc::format!("{}/{}", parent.path, parent.name)
            };
            (joined, node)
        }
        Err(error) => return Err(error),
    };
    let meta = node.metadata();
    if meta.kind == FileType::Symlink && flags & O_PATH == 0 {
        return Err(Errno::ELOOP);
    }
    if flags & O_DIRECTORY != 0 && meta.kind != FileType::Directory {
        return Err(Errno::ENOTDIR);
    }
    let access = flags & O_ACCMODE;
    if meta.kind == FileType::Directory && (access != O_RDONLY || flags & O_CREAT != 0) {
        return Err(Errno::EISDIR);
    }
    if access != O_RDONLY && meta.kind == FileType::Regular {
        // A read-only file system says so at open, as Linux does: an empty
        // write asks the node without changing it.
        node.write_at(0, &[])?;
        if flags & O_TRUNC != 0 {
            node.truncate(0)?;
        }
    }
    let keep = O_ACCMODE | O_APPEND | O_NONBLOCK | O_PATH | O_DIRECTORY;
    let file = OpenFile::new(node, canonical, flags & keep);
    install(file, flags & O_CLOEXEC != 0, 0)
}

/// Reads from `file` into a kernel buffer: at `position` for files, the
/// stream's next bytes for pipes, sockets and eventfds.
fn read_some(file: &OpenFile, position: u64, buf: &mut [u8]) -> Result<usize> {
    match &file.special {
        Special::Pipe(pipe) => pipe.read(buf, file.nonblocking()),
        Special::Socket(socket) => socket.receive(file, buf),
        Special::EventFd(counter) => counter.read(buf, file.nonblocking()),
        Special::Epoll(_) => Err(Errno::EINVAL),
        Special::None => file.node.read_at(position, buf),
    }
}

/// Writes a kernel buffer to `file` (see [`read_some`]).
fn write_some(file: &OpenFile, position: u64, buf: &[u8]) -> Result<usize> {
    match &file.special {
        Special::Pipe(pipe) => pipe.write(buf, file.nonblocking()),
        Special::Socket(socket) => socket.send(file, buf),
        Special::EventFd(counter) => counter.write(buf, file.nonblocking()),
        Special::Epoll(_) => Err(Errno::EINVAL),
        Special::None => file.node.write_at(position, buf),
    }
}

/// Reads into user memory at `buffer` through the node, from `offset`
/// (`None`: the file's own offset, advanced).
fn read_file(file: &OpenFile, buffer: u64, count: u64, offset: Option<u64>) -> Result<u64> {
    if !file.readable() {
        return Err(Errno::EBADF);
    }
    let kind = file.node.metadata().kind;
    if kind == FileType::Directory {
        return Err(Errno::EISDIR);
    }
    // A short read (end of file, a pipe's or the console's available
    // bytes) ends the call; so does any read of a stream or device: more
    // may only come after the caller answers.
    let stream = !matches!(file.special, Special::None) || kind == FileType::CharDevice;
    let count = count.min(MAX_IO) as usize;
    uaccess::check(buffer, count, true)?;
    let mut chunk = vec![0u8; count.min(64 << 10)];
    let mut done = 0usize;
    let mut position = offset.unwrap_or_else(|| *file.offset.lock());
    while done < count {
        let want = (count - done).min(chunk.len());
        let n = match read_some(file, position, &mut chunk[..want]) {
            Ok(n) => n,
            Err(error) if done == 0 => return Err(error),
            Err(_) => break,
        };
        copy_to_user(buffer + done as u64, &chunk[..n])?;
        done += n;
        position += n as u64;
        if n < want || stream {
            break;
        }
    }
    if offset.is_none() {
        *file.offset.lock() = position;
    }
    Ok(done as u64)
}

fn write_file(file: &OpenFile, buffer: u64, count: u64, offset: Option<u64>) -> Result<u64> {
    if !file.writable() {
        return Err(Errno::EBADF);
    }
    let count = count.min(MAX_IO) as usize;
    uaccess::check(buffer, count, false)?;
    let mut chunk = vec![0u8; count.min(64 << 10)];
    let mut done = 0usize;
    let append = file.flags() & O_APPEND != 0 && offset.is_none();
    let mut position = match offset {
        Some(offset) => offset,
        None if append => file.node.metadata().size,
        None => *file.offset.lock(),
    };
    while done < count {
        let want = (count - done).min(chunk.len());
        copy_from_user(&mut chunk[..want], buffer + done as u64)?;
        let n = match write_some(file, position, &chunk[..want]) {
            Ok(n) => n,
            Err(error) if done == 0 => return Err(error),
            Err(_) => break,
        };
        done += n;
        position += n as u64;
        if n < want {
            break;
        }
    }
    if offset.is_none() {
        *file.offset.lock() = position;
    }
    Ok(done as u64)
}

/// Largest transfer taken in one call (Linux caps at 0x7ffff000).
const MAX_IO: u64 = 0x7fff_f000;

pub fn read(fd: u64, buffer: u64, count: u64) -> Result<u64> {
    let file = get(fd)?;
    read_file(&file, buffer, count, None)
}

pub fn write(fd: u64, buffer: u64, count: u64) -> Result<u64> {
    let file = get(fd)?;
    write_file(&file, buffer, count, None)
}

fn positional(offset: u64) -> Result<u64> {
    if (offset as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    Ok(offset)
}

pub fn pread(fd: u64, buffer: u64, count: u64, offset: u64) -> Result<u64> {
    let file = get(fd)?;
    seekable(&file)?;
    read_file(&file, buffer, count, Some(positional(offset)?))
}

pub fn pwrite(fd: u64, buffer: u64, count: u64, offset: u64) -> Result<u64> {
    let file = get(fd)?;
    seekable(&file)?;
    write_file(&file, buffer, count, Some(positional(offset)?))
}

fn seekable(file: &OpenFile) -> Result<()> {
    match file.node.metadata().kind {
        FileType::Fifo | FileType::Socket => Err(Errno::ESPIPE),
        _ => Ok(()),
    }
}

/// `struct iovec`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct IoVec {
    base: u64,
    len: u64,
}

const IOV_MAX: u64 = 1024;

fn vectored(
    fd: u64,
    iov: u64,
    count: u64,
    each: fn(&OpenFile, u64, u64, Option<u64>) -> Result<u64>,
) -> Result<u64> {
    if count > IOV_MAX {
        return Err(Errno::EINVAL);
    }
    let file = get(fd)?;
    let mut total = 0u64;
    for i in 0..count {
        let v: IoVec = uaccess::read(iov + i * 16)?;
        if v.len == 0 {
            continue;
        }
        match each(&file, v.base, v.len, None) {
            Ok(n) => {
                total += n;
                if n < v.len {
                    break;
                }
            }
            Err(error) if total == 0 => return Err(error),
            Err(_) => break,
        }
    }
    Ok(total)
}

pub fn readv(fd: u64, iov: u64, count: u64) -> Result<u64> {
    vectored(fd, iov, count, read_file)
}

pub fn writev(fd: u64, iov: u64, count: u64) -> Result<u64> {
    vectored(fd, iov, count, write_file)
}

const SEEK_SET: u64 = 0;
const SEEK_CUR: u64 = 1;
const SEEK_END: u64 = 2;

pub fn lseek(fd: u64, offset: u64, whence: u64) -> Result<u64> {
    let file = get(fd)?;
    seekable(&file)?;
    if file.node.metadata().kind == FileType::CharDevice {
        return Ok(0);
    }
    let mut position = file.offset.lock();
    let origin = match whence {
        SEEK_SET => 0,
        SEEK_CUR => *position as i64,
        SEEK_END => file.node.metadata().size as i64,
        _ => return Err(Errno::EINVAL),
    };
    let new = origin.checked_add(offset as i64).ok_or(Errno::EOVERFLOW)?;
    if new < 0 {
        return Err(Errno::EINVAL);
    }
    *position = new as u64;
    Ok(new as u64)
}

/// `struct stat` of x86-64 (144 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Stat {
    dev: u64,
    ino: u64,
    nlink: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    pad0: u32,
    rdev: u64,
    size: i64,
    blksize: i64,
    blocks: i64,
    atime: [i64; 2],
    mtime: [i64; 2],
    ctime: [i64; 2],
    unused: [i64; 3],
}

fn stat_of(meta: &Metadata) -> Stat {
    let time = [
        (meta.mtime_ns / 1_000_000_000) as i64,
        (meta.mtime_ns % 1_000_000_000) as i64,
    ];
    Stat {
        dev: meta.dev,
        ino: meta.ino,
        nlink: u64::from(meta.nlink),
        mode: meta.kind.mode_bits() | meta.permissions,
        rdev: meta.rdev,
        size: meta.size as i64,
        blksize: 4096,
        blocks: meta.size.div_ceil(512) as i64,
        atime: time,
        mtime: time,
        ctime: time,
        ..Stat::default()
    }
}

/// The node `fstatat`-style calls name: `path` from `dirfd`, or `dirfd`
/// itself with `AT_EMPTY_PATH` and an empty path.
fn node_at(dirfd: u64, path: u64, flags: u64) -> Result<Arc<dyn Node>> {
    let path = read_path(path)?;
    if path.is_empty() {
        if flags & AT_EMPTY_PATH == 0 {
            return Err(Errno::ENOENT);
        }
        if dirfd as u32 as u64 == AT_FDCWD {
            return resolve(AT_FDCWD, ".", true).map(|(_, node)| node);
        }
        return Ok(get(dirfd)?.node.clone());
    }
    resolve(dirfd, &path, flags & AT_SYMLINK_NOFOLLOW == 0).map(|(_, node)| node)
}

pub fn fstat(fd: u64, out: u64) -> Result<u64> {
    let meta = get(fd)?.node.metadata();
    uaccess::write(out, &stat_of(&meta))?;
    Ok(0)
}

pub fn fstatat(dirfd: u64, path: u64, out: u64, flags: u64) -> Result<u64> {
    if flags & !(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH | 0x800) != 0 {
        return Err(Errno::EINVAL);
    }
    let meta = node_at(dirfd, path, flags)?.metadata();
    uaccess::write(out, &stat_of(&meta))?;
    Ok(0)
}

pub fn statx(dirfd: u64, path: u64, flags: u64, _mask: u64, out: u64) -> Result<u64> {
    let meta = node_at(dirfd, path, flags)?.metadata();
    let mut buf = [0u8; 256];
    let put = |buf: &mut [u8; 256], at: usize, bytes: &[u8]| {
        buf[at..at + bytes.len()].copy_from_slice(bytes);
    };
    // STATX_BASIC_STATS.
    put(&mut buf, 0, &0x7ffu32.to_le_bytes());
    put(&mut buf, 4, &4096u32.to_le_bytes());
    put(&mut buf, 16, &meta.nlink.to_le_bytes());
    put(
        &mut buf,
        28,
        &((meta.kind.mode_bits() | meta.permissions) as u16).to_le_bytes(),
    );
    put(&mut buf, 32, &meta.ino.to_le_bytes());
    put(&mut buf, 40, &meta.size.to_le_bytes());
    put(&mut buf, 48, &meta.size.div_ceil(512).to_le_bytes());
    let seconds = (meta.mtime_ns / 1_000_000_000) as i64;
    let nanos = (meta.mtime_ns % 1_000_000_000) as u32;
    for at in [64, 96, 112] {
        put(&mut buf, at, &seconds.to_le_bytes());
        put(&mut buf, at + 8, &nanos.to_le_bytes());
    }
    put(&mut buf, 128, &((meta.rdev >> 8) as u32).to_le_bytes());
    put(&mut buf, 132, &((meta.rdev & 0xff) as u32).to_le_bytes());
    put(&mut buf, 140, &(meta.dev as u32).to_le_bytes());
    copy_to_user(out, &buf)?;
    Ok(0)
}

pub fn getdents64(fd: u64, buffer: u64, count: u64) -> Result<u64> {
    let file = get(fd)?;
    let meta = file.node.metadata();
    if meta.kind != FileType::Directory {
        return Err(Errno::ENOTDIR);
    }
    let mut entries = vec![
        pure::fs::vfs::DirEntry {
            name: String::from("."),
            ino: meta.ino,
            kind: FileType::Directory,
        },
        pure::fs::vfs::DirEntry {
            name: String::from(".."),
            ino: meta.ino,
            kind: FileType::Directory,
        },
    ];
    entries.extend(file.node.entries()?);
    let mut position = file.offset.lock();
    let mut out = Vec::new();
    let mut index = *position as usize;
    while let Some(entry) = entries.get(index) {
        let reclen = (19 + entry.name.len() + 1).next_multiple_of(8);
        if out.len() + reclen > count as usize {
            break;
        }
        let start = out.len();
        out.extend_from_slice(&entry.ino.to_le_bytes());
        out.extend_from_slice(&((index + 1) as i64).to_le_bytes());
        out.extend_from_slice(&(reclen as u16).to_le_bytes());
        out.push(entry.kind.dirent_type());
        out.extend_from_slice(entry.name.as_bytes());
        out.resize(start + reclen, 0);
        index += 1;
    }
    if out.is_empty() && index < entries.len() {
        return Err(Errno::EINVAL);
    }
    copy_to_user(buffer, &out)?;
    *position = index as u64;
    Ok(out.len() as u64)
}

pub fn readlinkat(dirfd: u64, path: u64, buffer: u64, size: u64) -> Result<u64> {
    if size == 0 || size > i32::MAX as u64 {
        return Err(Errno::EINVAL);
    }
    let path = read_path(path)?;
    let (_, node) = resolve(dirfd, &path, false)?;
    let target = node.readlink()?;
    let n = target.len().min(size as usize);
    copy_to_user(buffer, &target.as_bytes()[..n])?;
    Ok(n as u64)
}

pub fn faccessat(dirfd: u64, path: u64, mode: u64, flags: u64) -> Result<u64> {
    if mode & !7 != 0 {
        return Err(Errno::EINVAL);
    }
    let node = node_at(dirfd, path, flags)?;
    let meta = node.metadata();
    // The program runs as root: only execute needs a bit somewhere, and
    // writing needs a writable file system, which the call cannot tell
    // beforehand except for the read-only root's device.
    if mode & 1 != 0 && meta.kind != FileType::Directory && meta.permissions & 0o111 == 0 {
        return Err(Errno::EACCES);
    }
    Ok(0)
}

pub fn getcwd(buffer: u64, size: u64) -> Result<u64> {
    let cwd = with(|state| state.cwd.clone());
    let bytes = cwd.len() as u64 + 1;
    if size < bytes {
        return Err(Errno::ERANGE);
    }
    let mut out = cwd.into_bytes();
    out.push(0);
    copy_to_user(buffer, &out)?;
    Ok(bytes)
}

fn set_cwd(path: String, node: &Arc<dyn Node>) -> Result<u64> {
    if node.metadata().kind != FileType::Directory {
        return Err(Errno::ENOTDIR);
    }
    with(|state| state.cwd = path);
    Ok(0)
}

pub fn chdir(path: u64) -> Result<u64> {
    let path = read_path(path)?;
    let (canonical, node) = resolve(AT_FDCWD, &path, true)?;
    set_cwd(canonical, &node)
}

pub fn fchdir(fd: u64) -> Result<u64> {
    let file = get(fd)?;
    set_cwd(file.path.clone(), &file.node)
}

pub fn mkdirat(dirfd: u64, path: u64, mode: u64) -> Result<u64> {
    let path = read_path(path)?;
    let base = base(dirfd, path.as_bytes())?;
    let parent = vfs()?.resolve_parent(&base, &path)?;
    if parent.node.lookup(&parent.name).is_ok() {
        return Err(Errno::EEXIST);
    }
    parent
        .node
        .create(&parent.name, FileType::Directory, mode as u32 & 0o7777)?;
    Ok(0)
}

pub fn unlinkat(dirfd: u64, path: u64, flags: u64) -> Result<u64> {
    if flags & !AT_REMOVEDIR != 0 {
        return Err(Errno::EINVAL);
    }
    let path = read_path(path)?;
    let base = base(dirfd, path.as_bytes())?;
    let parent = vfs()?.resolve_parent(&base, &path)?;
    let directory = flags & AT_REMOVEDIR != 0;
    if parent.trailing_slash && !directory {
        return Err(Errno::EISDIR);
    }
    parent.node.unlink(&parent.name, directory)?;
    Ok(0)
}

pub fn renameat(old_dirfd: u64, old: u64, new_dirfd: u64, new: u64, flags: u64) -> Result<u64> {
    if flags != 0 {
        return Err(Errno::EINVAL);
    }
    let (old, new) = (read_path(old)?, read_path(new)?);
    let (old_base, new_base) = (
        base(old_dirfd, old.as_bytes())?,
        base(new_dirfd, new.as_bytes())?,
    );
    let vfs = vfs()?;
    // Both relative to one directory for Vfs::rename: make them absolute.
    let absolute = |base: &str, path: &str| {
        if path.starts_with('/') {
            String::from(path)
        } else {
            alloc::format!("{}/{}", base.trim_end_matches('/'), path)
        }
    };
    vfs.rename("/", &absolute(&old_base, &old), &absolute(&new_base, &new))?;
    Ok(0)
}

pub fn symlinkat(target: u64, dirfd: u64, path: u64) -> Result<u64> {
    let target = read_path(target)?;
    let path = read_path(path)?;
    let base = base(dirfd, path.as_bytes())?;
    let parent = vfs()?.resolve_parent(&base, &path)?;
    parent.node.symlink(&parent.name, &target)?;
    Ok(0)
}

pub fn truncate(path: u64, len: u64) -> Result<u64> {
    let path = read_path(path)?;
    let (_, node) = resolve(AT_FDCWD, &path, true)?;
    match node.metadata().kind {
        FileType::Directory => return Err(Errno::EISDIR),
        FileType::Regular => {}
        _ => return Err(Errno::EINVAL),
    }
    node.truncate(positional(len)?)?;
    Ok(0)
}

pub fn ftruncate(fd: u64, len: u64) -> Result<u64> {
    let file = get(fd)?;
    if !file.writable() {
        return Err(Errno::EINVAL);
    }
    file.node.truncate(positional(len)?)?;
    Ok(0)
}

pub fn dup(fd: u64) -> Result<u64> {
    install(get(fd)?, false, 0)
}

pub fn dup3(old: u64, new: u64, flags: u64) -> Result<u64> {
    if flags & !u64::from(O_CLOEXEC) != 0 || old == new {
        return Err(Errno::EINVAL);
    }
    dup_to(old, new, flags & u64::from(O_CLOEXEC) != 0)
}

pub fn dup2(old: u64, new: u64) -> Result<u64> {
    if old == new {
        get(old)?;
        return Ok(new);
    }
    dup_to(old, new, false)
}

fn dup_to(old: u64, new: u64, cloexec: bool) -> Result<u64> {
    let file = get(old)?;
    if new as usize >= MAX_FDS {
        return Err(Errno::EBADF);
    }
    let replaced = with(|state| {
        let index = new as usize;
        if state.fds.len() <= index {
            state.fds.resize_with(index + 1, || None);
        }
        state.fds[index].replace(Fd { file, cloexec })
    });
    drop(replaced);
    Ok(new)
}

const F_DUPFD: u64 = 0;
const F_GETFD: u64 = 1;
const F_SETFD: u64 = 2;
const F_GETFL: u64 = 3;
const F_SETFL: u64 = 4;
const F_GETLK: u64 = 5;
const F_SETLK: u64 = 6;
const F_SETLKW: u64 = 7;
const F_DUPFD_CLOEXEC: u64 = 1030;
const FD_CLOEXEC: u64 = 1;

pub fn fcntl(fd: u64, command: u64, argument: u64) -> Result<u64> {
    let file = get(fd)?;
    let fd = fd as u32 as u64;
    match command {
        F_DUPFD | F_DUPFD_CLOEXEC => {
            if argument as usize >= MAX_FDS {
                return Err(Errno::EINVAL);
            }
            install(file, command == F_DUPFD_CLOEXEC, argument as usize)
        }
        F_GETFD => with(|state| {
            let cloexec = state.fds[fd as usize].as_ref().is_some_and(|f| f.cloexec);
            Ok(if cloexec { FD_CLOEXEC } else { 0 })
        }),
        F_SETFD => with(|state| {
            if let Some(slot) = state.fds[fd as usize].as_mut() {
                slot.cloexec = argument & FD_CLOEXEC != 0;
            }
            Ok(0)
        }),
        F_GETFL => Ok(u64::from(file.flags())),
        F_SETFL => {
            let changeable = O_APPEND | O_NONBLOCK;
            let old = file.flags();
            file.flags.store(
                old & !changeable | argument as u32 & changeable,
                Ordering::Relaxed,
            );
            Ok(0)
        }
        // One program, nobody to conflict with: every lock is granted.
        F_GETLK => {
            // struct flock: l_type first; F_UNLCK = 2.
            uaccess::write(argument, &2u16)?;
            Ok(0)
        }
        F_SETLK | F_SETLKW => Ok(0),
        _ => Err(Errno::EINVAL),
    }
}

pub fn close_fd(fd: u64) -> Result<u64> {
    close(fd)
}

/// `sendfile(out, in, offset, count)`: through a kernel buffer.
pub fn sendfile(out_fd: u64, in_fd: u64, offset: u64, count: u64) -> Result<u64> {
    let (output, input) = (get(out_fd)?, get(in_fd)?);
    if !input.readable() || !output.writable() {
        return Err(Errno::EBADF);
    }
    let mut position = match offset {
        0 => *input.offset.lock(),
        at => uaccess::read::<u64>(at)?,
    };
    let count = count.min(MAX_IO) as usize;
    let mut chunk = vec![0u8; count.min(64 << 10)];
    let mut done = 0usize;
    // Progress made is kept: an error after some bytes went out ends the
    // call with their count, and the offsets say where it stopped.
    let mut failed = None;
    'copy: while done < count {
        let want = (count - done).min(chunk.len());
        let n = match read_some(&input, position, &mut chunk[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(error) => {
                failed = Some(error);
                break;
            }
        };
        let mut written = 0;
        while written < n {
            let out_position = if output.flags() & O_APPEND != 0 {
                output.node.metadata().size
            } else {
                *output.offset.lock()
            };
            match write_some(&output, out_position, &chunk[written..n]) {
                Ok(w) => {
                    *output.offset.lock() = out_position + w as u64;
                    written += w;
                }
                Err(error) => {
                    failed = Some(error);
                    done += written;
                    position += written as u64;
                    break 'copy;
                }
            }
        }
        done += n;
        position += n as u64;
    }
    if let (0, Some(error)) = (done, failed) {
        return Err(error);
    }
    match offset {
        0 => *input.offset.lock() = position,
        at => uaccess::write(at, &position)?,
    }
    Ok(done as u64)
}

pub fn pipe2(fds: u64, flags: u64) -> Result<u64> {
    let flags = flags as u32;
    if flags & !(O_CLOEXEC | O_NONBLOCK) != 0 {
        return Err(Errno::EINVAL);
    }
    let (reader, writer) = super::pipe::pipe();
    let nonblock = flags & O_NONBLOCK;
    let cloexec = flags & O_CLOEXEC != 0;
    let end = |pipe: Arc<super::pipe::End>, access: u32| {
        OpenFile::special(pipe.clone(), Special::Pipe(pipe), access | nonblock)
    };
    let read_end = install(end(reader, O_RDONLY), cloexec, 0)?;
    let write_end = match install(end(writer, O_WRONLY), cloexec, 0) {
        Ok(fd) => fd,
        Err(error) => {
            let _ = close(read_end);
            return Err(error);
        }
    };
    if let Err(error) = uaccess::write(fds, &[read_end as i32, write_end as i32]) {
        let _ = close(read_end);
        let _ = close(write_end);
        return Err(error);
    }
    Ok(0)
}

/// Whether `fd` is the console (for terminal ioctls).
pub fn is_terminal(fd: u64) -> Result<bool> {
    Ok(get(fd)?.node.metadata().kind == FileType::CharDevice)
}
