//! The file-system layer user programs' system calls sit on: a [`Node`]
//! trait every file system implements, three of them ([`tmpfs`], a
//! read-only view of a cpio archive ([`cpio_root`]), and the fixed
//! directories and generated files of [`StaticDir`], [`generated`] and
//! [`static_symlink`] that `/proc` and `/dev` are made of), and the
//! namespace, [`Vfs`], that resolves paths through symlinks and mounts.
//!
//! The namespace works on canonical absolute paths: a mount is recorded
//! under the canonical path of the directory it covers, and a walk keeps
//! the canonical path of where it is, so a mount point is found however a
//! walk reaches it (directly, through a symlink, or by `..`). `..` is
//! physical: it goes to the parent of the directory the walk is in, which
//! for the root of a mount is the parent of the mount point. A process's
//! working directory is a canonical path too; a directory renamed or
//! removed under it stops resolving (where Linux would keep the inode).
//!
//! Errors are Linux's, as [`Errno`]s. Nodes' default methods give what
//! Linux gives for a node that cannot do the operation, so a read-only
//! file system implements only what it reads.
//!
//! Locking: a tmpfs node holds one spin lock over its state. A directory
//! may lock a child while holding its own lock (to see whether it is
//! empty), never the other way round; since a directory is never inside
//! its own subtree ([`Vfs::rename`] refuses to put it there), that order
//! cannot deadlock. Nodes are for thread context, not interrupts.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use spin::Mutex;

use super::cpio::{Archive, Entry, Kind};
use crate::user::linux::Errno;

/// What every file-system operation returns.
pub type Result<T> = core::result::Result<T, Errno>;

/// The longest path, in bytes, a system call takes (`PATH_MAX`, which
/// counts the terminating NUL: a 4096-byte path is too long).
pub const PATH_MAX: usize = 4096;
/// The longest name of a directory entry, in bytes (`NAME_MAX`).
pub const NAME_MAX: usize = 255;
/// How many symlinks one resolution follows before `ELOOP`
/// (`MAXSYMLINKS`).
pub const SYMLINK_MAX: usize = 40;
/// The largest file a tmpfs holds: writes beyond it are `EFBIG`.
pub const TMPFS_FILE_MAX: u64 = 1 << 30;

/// The type of a node, as the `S_IFMT` bits of `st_mode` and `d_type` of
/// `getdents64` tell it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileType {
    Regular,
    Directory,
    Symlink,
    CharDevice,
    Fifo,
    Socket,
}

impl FileType {
    /// The `S_IFMT` bits of `st_mode`.
    pub fn mode_bits(self) -> u32 {
        match self {
            FileType::Regular => 0o100_000,
            FileType::Directory => 0o040_000,
            FileType::Symlink => 0o120_000,
            FileType::CharDevice => 0o020_000,
            FileType::Fifo => 0o010_000,
            FileType::Socket => 0o140_000,
        }
    }

    /// The `d_type` of a `getdents64` record.
    pub fn dirent_type(self) -> u8 {
        match self {
            FileType::Regular => 8,
            FileType::Directory => 4,
            FileType::Symlink => 10,
            FileType::CharDevice => 2,
            FileType::Fifo => 1,
            FileType::Socket => 12,
        }
    }

    /// The type whose `S_IFMT` bits `mode` has (permission bits ignored);
    /// `None` for a block device or bits naming no type.
    pub fn from_mode(mode: u32) -> Option<FileType> {
        [
            FileType::Regular,
            FileType::Directory,
            FileType::Symlink,
            FileType::CharDevice,
            FileType::Fifo,
            FileType::Socket,
        ]
        .into_iter()
        .find(|kind| kind.mode_bits() == mode & 0o170_000)
    }
}

/// What `stat` reports of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metadata {
    /// The file system's device number: nodes of one file system share it.
    pub dev: u64,
    pub ino: u64,
    pub kind: FileType,
    /// The `0o7777` bits of `st_mode`.
    pub permissions: u32,
    pub nlink: u32,
    pub size: u64,
    /// Last modification, nanoseconds since the Unix epoch.
    pub mtime_ns: u64,
    /// The device a device node stands for.
    pub rdev: u64,
}

impl Metadata {
    /// `st_mode`: type and permission bits.
    pub fn mode(&self) -> u32 {
        self.kind.mode_bits() | self.permissions
    }
}

/// A directory entry as `getdents64` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub ino: u64,
    pub kind: FileType,
}

/// A node of some file system. Default methods give the errors Linux gives
/// for a node that cannot do the operation: a directory of a read-only
/// file system changes no names (`EROFS`, or `EEXIST` for a name that is
/// there), a non-directory has none (`ENOTDIR`), a directory is not read
/// or written as bytes (`EISDIR`).
pub trait Node: Send + Sync {
    /// What `stat` reports.
    fn metadata(&self) -> Metadata;

    /// Reads from `offset` into `buf`; 0 at or past the end.
    fn read_at(&self, _offset: u64, _buf: &mut [u8]) -> Result<usize> {
        Err(dir_or(self, Errno::EINVAL))
    }

    /// Writes `buf` at `offset`, returning how much was written.
    fn write_at(&self, _offset: u64, _buf: &[u8]) -> Result<usize> {
        Err(dir_or(self, Errno::EINVAL))
    }

    /// Sets a regular file's size, cutting it or extending it with zeros.
    fn truncate(&self, _len: u64) -> Result<()> {
        Err(dir_or(self, Errno::EINVAL))
    }

    /// The child of a directory called `name` (not `.` or `..`, which
    /// [`Vfs`] handles).
    fn lookup(&self, _name: &str) -> Result<Arc<dyn Node>> {
        Err(Errno::ENOTDIR)
    }

    /// A directory's children, without `.` and `..` (the caller adds
    /// them).
    fn entries(&self) -> Result<Vec<DirEntry>> {
        Err(Errno::ENOTDIR)
    }

    /// Makes a child: `EEXIST` if `name` is taken. A writable file system
    /// supports at least [`FileType::Regular`] and
    /// [`FileType::Directory`]; symlinks come from [`Node::symlink`].
    fn create(&self, name: &str, _kind: FileType, _permissions: u32) -> Result<Arc<dyn Node>> {
        Err(unchanging(self, Some(name)))
    }

    /// Makes a symlink `name` pointing at `target`.
    fn symlink(&self, name: &str, _target: &str) -> Result<()> {
        Err(unchanging(self, Some(name)))
    }

    /// Removes the child `name`: `rmdir` when `directory` (`ENOTDIR` if it
    /// is not a directory, `ENOTEMPTY` if it is not empty), else `unlink`
    /// (`EISDIR` for a directory); `ENOENT` if there is no such child.
    fn unlink(&self, _name: &str, _directory: bool) -> Result<()> {
        Err(unchanging(self, None))
    }

    /// A symlink's target; `EINVAL` for anything else.
    fn readlink(&self) -> Result<String> {
        Err(Errno::EINVAL)
    }

    /// For rename within one file system: removes the child `name` from
    /// this directory and returns it.
    fn detach(&self, _name: &str) -> Result<Arc<dyn Node>> {
        Err(unchanging(self, None))
    }

    /// For rename within one file system: puts `node` in this directory as
    /// `name`, replacing a non-directory with a non-directory or an empty
    /// directory with a directory (`EISDIR`, `ENOTDIR`, `ENOTEMPTY`
    /// otherwise, as Linux's rename gives).
    fn attach(&self, _name: &str, _node: Arc<dyn Node>) -> Result<()> {
        Err(unchanging(self, None))
    }
}

fn is_dir<N: Node + ?Sized>(node: &N) -> bool {
    node.metadata().kind == FileType::Directory
}

/// `EISDIR` for a directory, else `other`.
fn dir_or<N: Node + ?Sized>(node: &N, other: Errno) -> Errno {
    if is_dir(node) {
        Errno::EISDIR
    } else {
        other
    }
}

/// What changing a name under a node that changes none gives: `ENOTDIR`
/// for a non-directory, `EEXIST` when the name to make is there, `EROFS`
/// otherwise.
fn unchanging<N: Node + ?Sized>(node: &N, making: Option<&str>) -> Errno {
    if !is_dir(node) {
        Errno::ENOTDIR
    } else if making.is_some_and(|name| node.lookup(name).is_ok()) {
        Errno::EEXIST
    } else {
        Errno::EROFS
    }
}

/// Copies what `data` holds from `offset` into `buf`.
fn read_slice(data: &[u8], offset: u64, buf: &mut [u8]) -> usize {
    let rest = usize::try_from(offset)
        .ok()
        .and_then(|offset| data.get(offset..))
        .unwrap_or_default();
    let count = rest.len().min(buf.len());
    buf[..count].copy_from_slice(&rest[..count]);
    count
}

/// Whether `name` can be a new directory entry: `EINVAL` for an empty
/// name, `.`, `..` or one with a `/` or NUL, `ENAMETOOLONG` past
/// [`NAME_MAX`].
fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        Err(Errno::EINVAL)
    } else if name.len() > NAME_MAX {
        Err(Errno::ENAMETOOLONG)
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------------
// tmpfs

/// What the nodes of one tmpfs share.
struct Tmpfs {
    dev: u64,
    clock: fn() -> u64,
    next_ino: AtomicU64,
}

/// A child as its directory keeps it: its type and number too, so that
/// listing a directory or counting its subdirectories locks no child.
#[derive(Clone)]
struct Child {
    node: Arc<dyn Node>,
    ino: u64,
    kind: FileType,
}

enum Data {
    File(Vec<u8>),
    Dir(BTreeMap<String, Child>),
    Link(String),
}

struct State {
    permissions: u32,
    mtime_ns: u64,
    data: Data,
}

struct TmpNode {
    fs: Arc<Tmpfs>,
    ino: u64,
    kind: FileType,
    state: Mutex<State>,
}

/// A new, empty tmpfs: its root directory (inode 1, permissions `0o1777`).
/// Inode numbers count up from 2; `clock` gives the time in nanoseconds
/// since the epoch for modification times. Files grow up to
/// [`TMPFS_FILE_MAX`]; memory running out is `ENOSPC`.
pub fn tmpfs(dev: u64, clock: fn() -> u64) -> Arc<dyn Node> {
    let fs = Arc::new(Tmpfs {
        dev,
        clock,
        next_ino: AtomicU64::new(2),
    });
    Arc::new(TmpNode::new(fs, 1, 0o1777, Data::Dir(BTreeMap::new())))
}

impl TmpNode {
    fn new(fs: Arc<Tmpfs>, ino: u64, permissions: u32, data: Data) -> TmpNode {
        let kind = match data {
            Data::File(_) => FileType::Regular,
            Data::Dir(_) => FileType::Directory,
            Data::Link(_) => FileType::Symlink,
        };
        let mtime_ns = (fs.clock)();
        TmpNode {
            fs,
            ino,
            kind,
            state: Mutex::new(State {
                permissions: permissions & 0o7777,
                mtime_ns,
                data,
            }),
        }
    }

    /// Inserts a new node as `name`: `EEXIST` if the name is taken.
    fn add(&self, name: &str, permissions: u32, data: Data) -> Result<Arc<dyn Node>> {
        check_name(name)?;
        self.dir(true, |children| {
            if children.contains_key(name) {
                return Err(Errno::EEXIST);
            }
            let ino = self.fs.next_ino.fetch_add(1, Ordering::Relaxed);
            let node: Arc<dyn Node> =
                Arc::new(TmpNode::new(Arc::clone(&self.fs), ino, permissions, data));
            let kind = node.metadata().kind;
            let child = Child {
                node: Arc::clone(&node),
                ino,
                kind,
            };
            children.insert(String::from(name), child);
            Ok(node)
        })
    }

    /// Runs `f` on a directory's children under the lock (`ENOTDIR` for a
    /// non-directory); `touch` updates the modification time if `f`
    /// succeeds.
    fn dir<T>(
        &self,
        touch: bool,
        f: impl FnOnce(&mut BTreeMap<String, Child>) -> Result<T>,
    ) -> Result<T> {
        let mut state = self.state.lock();
        let Data::Dir(children) = &mut state.data else {
            return Err(Errno::ENOTDIR);
        };
        let result = f(children)?;
        if touch {
            state.mtime_ns = (self.fs.clock)();
        }
        Ok(result)
    }

    /// Runs `f` on a regular file's bytes under the lock and updates its
    /// modification time if `f` succeeds.
    fn file<T>(&self, f: impl FnOnce(&mut Vec<u8>) -> Result<T>) -> Result<T> {
        let mut state = self.state.lock();
        let Data::File(bytes) = &mut state.data else {
            // Not `dir_or`: that would take the lock again.
            return Err(match self.kind {
                FileType::Directory => Errno::EISDIR,
                _ => Errno::EINVAL,
            });
        };
        let result = f(bytes)?;
        state.mtime_ns = (self.fs.clock)();
        Ok(result)
    }
}

/// Resizes `bytes` to `len`, zero-filling; `ENOSPC` if memory runs out.
fn resize(bytes: &mut Vec<u8>, len: usize) -> Result<()> {
    if len > bytes.len() {
        bytes
            .try_reserve(len - bytes.len())
            .map_err(|_| Errno::ENOSPC)?;
    }
    bytes.resize(len, 0);
    Ok(())
}

/// Whether `existing` may be replaced by a node of type `kind`, by Linux's
/// rules for rename.
fn replaceable(existing: &Child, kind: FileType) -> Result<()> {
    match (
        kind == FileType::Directory,
        existing.kind == FileType::Directory,
    ) {
        (true, false) => Err(Errno::ENOTDIR),
        (false, true) => Err(Errno::EISDIR),
        (true, true) if !existing.node.entries()?.is_empty() => Err(Errno::ENOTEMPTY),
        _ => Ok(()),
    }
}

impl Node for TmpNode {
    fn metadata(&self) -> Metadata {
        let state = self.state.lock();
        let (size, nlink) = match &state.data {
            Data::File(bytes) => (bytes.len() as u64, 1),
            Data::Link(target) => (target.len() as u64, 1),
            // Linux's tmpfs counts 20 bytes an entry, `.` and `..` included.
            Data::Dir(children) => {
                let subdirectories = children
                    .values()
                    .filter(|child| child.kind == FileType::Directory)
                    .count();
                (
                    20 * (children.len() as u64 + 2),
                    2 + u32::try_from(subdirectories).unwrap_or(u32::MAX - 2),
                )
            }
        };
        Metadata {
            dev: self.fs.dev,
            ino: self.ino,
            kind: self.kind,
            permissions: state.permissions,
            nlink,
            size,
            mtime_ns: state.mtime_ns,
            rdev: 0,
        }
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        match &self.state.lock().data {
            Data::File(bytes) => Ok(read_slice(bytes, offset, buf)),
            Data::Dir(_) => Err(Errno::EISDIR),
            Data::Link(_) => Err(Errno::EINVAL),
        }
    }

    /// Writing past the end zero-fills the gap. A write reaching past
    /// [`TMPFS_FILE_MAX`] is cut short there; one starting there is
    /// `EFBIG`.
    fn write_at(&self, offset: u64, buf: &[u8]) -> Result<usize> {
        if self.kind != FileType::Regular {
            return Err(dir_or(self, Errno::EINVAL));
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let room = TMPFS_FILE_MAX.checked_sub(offset).filter(|&room| room > 0);
        let room = room.ok_or(Errno::EFBIG)?;
        let count = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let start = usize::try_from(offset).map_err(|_| Errno::EFBIG)?;
        let end = start + count;
        self.file(|bytes| {
            if end > bytes.len() {
                resize(bytes, end)?;
            }
            bytes[start..end].copy_from_slice(&buf[..count]);
            Ok(count)
        })
    }

    fn truncate(&self, len: u64) -> Result<()> {
        if self.kind != FileType::Regular {
            return Err(dir_or(self, Errno::EINVAL));
        }
        if len > TMPFS_FILE_MAX {
            return Err(Errno::EFBIG);
        }
        let len = usize::try_from(len).map_err(|_| Errno::EFBIG)?;
        self.file(|bytes| resize(bytes, len))
    }

    fn lookup(&self, name: &str) -> Result<Arc<dyn Node>> {
        self.dir(false, |children| {
            let child = children.get(name).ok_or(Errno::ENOENT)?;
            Ok(Arc::clone(&child.node))
        })
    }

    fn entries(&self) -> Result<Vec<DirEntry>> {
        self.dir(false, |children| {
            Ok(children
                .iter()
                .map(|(name, child)| DirEntry {
                    name: name.clone(),
                    ino: child.ino,
                    kind: child.kind,
                })
                .collect())
        })
    }

    /// Makes an empty regular file or directory; `EINVAL` for other types.
    fn create(&self, name: &str, kind: FileType, permissions: u32) -> Result<Arc<dyn Node>> {
        let data = match kind {
            FileType::Regular => Data::File(Vec::new()),
            FileType::Directory => Data::Dir(BTreeMap::new()),
            _ if self.lookup(name).is_ok() => return Err(Errno::EEXIST),
            _ => return Err(Errno::EINVAL),
        };
        self.add(name, permissions, data)
    }

    /// `ENOENT` for an empty target, `ENAMETOOLONG` for one of
    /// [`PATH_MAX`] bytes or more.
    fn symlink(&self, name: &str, target: &str) -> Result<()> {
        if target.is_empty() {
            return Err(Errno::ENOENT);
        }
        if target.len() >= PATH_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        self.add(name, 0o777, Data::Link(String::from(target)))
            .map(drop)
    }

    fn unlink(&self, name: &str, directory: bool) -> Result<()> {
        self.dir(true, |children| {
            let child = children.get(name).ok_or(Errno::ENOENT)?;
            match (directory, child.kind == FileType::Directory) {
                (true, false) => return Err(Errno::ENOTDIR),
                (false, true) => return Err(Errno::EISDIR),
                (true, true) if !child.node.entries()?.is_empty() => return Err(Errno::ENOTEMPTY),
                _ => {}
            }
            children.remove(name);
            Ok(())
        })
    }

    fn readlink(&self) -> Result<String> {
        match &self.state.lock().data {
            Data::Link(target) => Ok(target.clone()),
            _ => Err(Errno::EINVAL),
        }
    }

    fn detach(&self, name: &str) -> Result<Arc<dyn Node>> {
        self.dir(true, |children| {
            let child = children.remove(name).ok_or(Errno::ENOENT)?;
            Ok(child.node)
        })
    }

    /// `EXDEV` for a node of another file system (another `dev`).
    fn attach(&self, name: &str, node: Arc<dyn Node>) -> Result<()> {
        check_name(name)?;
        // Before locking: `node` might, wrongly, be this directory.
        let metadata = node.metadata();
        if metadata.dev != self.fs.dev {
            return Err(Errno::EXDEV);
        }
        self.dir(true, |children| {
            if let Some(existing) = children.get(name) {
                replaceable(existing, metadata.kind)?;
            }
            let child = Child {
                node,
                ino: metadata.ino,
                kind: metadata.kind,
            };
            children.insert(String::from(name), child);
            Ok(())
        })
    }
}

// ---------------------------------------------------------------------
// cpio

/// A member of a cpio archive, or a directory its paths imply.
struct CpioNode {
    archive: &'static Archive<'static>,
    dev: u64,
    /// The normalised path: no leading or trailing `/`; `""` is the root.
    path: String,
    /// `None` for a directory the archive implies without listing it.
    entry: Option<&'static Entry<'static>>,
}

/// A read-only view of `archive` as a file system: its root directory.
/// Directories are the archive's directory members, the root, and those
/// its paths imply; each lists its direct children once. Inode numbers are
/// the members' if not zero, else a hash of the path with the top bit set;
/// implied directories have permissions `0o755`. Anything that writes is
/// `EROFS`. Device nodes have `rdev` 0 (the reader keeps no `rdev`), and
/// block devices show as character devices.
pub fn cpio_root(archive: &'static Archive<'static>, dev: u64) -> Arc<dyn Node> {
    Arc::new(CpioNode {
        archive,
        dev,
        path: String::new(),
        entry: archive.lookup(""),
    })
}

/// FNV-1a of `path`, with the top bit set to keep clear of archives'
/// inode numbers.
fn path_ino(path: &str) -> u64 {
    let hash = path.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    hash | 1 << 63
}

fn cpio_ino(path: &str, entry: Option<&Entry<'_>>) -> u64 {
    match entry {
        Some(entry) if entry.ino != 0 => u64::from(entry.ino),
        _ => path_ino(path),
    }
}

fn cpio_kind(entry: Option<&Entry<'_>>) -> FileType {
    match entry.map(Entry::kind) {
        None | Some(Kind::Directory) => FileType::Directory,
        Some(Kind::File) => FileType::Regular,
        Some(Kind::Symlink) => FileType::Symlink,
        Some(Kind::Other(bits)) => FileType::from_mode(bits).unwrap_or(FileType::CharDevice),
    }
}

impl Node for CpioNode {
    fn metadata(&self) -> Metadata {
        let entry = self.entry;
        Metadata {
            dev: self.dev,
            ino: cpio_ino(&self.path, entry),
            kind: cpio_kind(entry),
            permissions: entry.map_or(0o755, Entry::permissions),
            nlink: entry.map_or(2, |entry| entry.nlink.max(1)),
            size: entry.map_or(0, Entry::size),
            mtime_ns: entry.map_or(0, |entry| u64::from(entry.mtime) * 1_000_000_000),
            rdev: 0,
        }
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        match (cpio_kind(self.entry), self.entry) {
            (FileType::Regular, Some(entry)) => Ok(read_slice(entry.data, offset, buf)),
            (FileType::Directory, _) => Err(Errno::EISDIR),
            _ => Err(Errno::EINVAL),
        }
    }

    fn write_at(&self, _offset: u64, _buf: &[u8]) -> Result<usize> {
        Err(dir_or(self, Errno::EROFS))
    }

    fn truncate(&self, _len: u64) -> Result<()> {
        Err(dir_or(self, Errno::EROFS))
    }

    fn lookup(&self, name: &str) -> Result<Arc<dyn Node>> {
        if cpio_kind(self.entry) != FileType::Directory {
            return Err(Errno::ENOTDIR);
        }
        if check_name(name).is_err() {
            return Err(Errno::ENOENT);
        }
        let path = match self.path.as_str() {
            "" => String::from(name),
            parent => format!("{parent}/{name}"),
        };
        let entry = self.archive.lookup(&path);
        if entry.is_none() && !self.archive.is_dir(&path) {
            return Err(Errno::ENOENT);
        }
        Ok(Arc::new(CpioNode {
            archive: self.archive,
            dev: self.dev,
            path,
            entry,
        }))
    }

    fn entries(&self) -> Result<Vec<DirEntry>> {
        if cpio_kind(self.entry) != FileType::Directory {
            return Err(Errno::ENOTDIR);
        }
        let prefix = match self.path.as_str() {
            "" => String::new(),
            path => format!("{path}/"),
        };
        // A member named like a directory a longer path implies is what
        // lookup finds, so it wins.
        let mut children: BTreeMap<&str, DirEntry> = BTreeMap::new();
        for (path, entry) in self.archive.entries() {
            let Some(rest) = path.strip_prefix(prefix.as_str()) else {
                continue;
            };
            let (name, entry) = match rest.split_once('/') {
                _ if rest.is_empty() => continue,
                None => (rest, Some(entry)),
                Some((name, _)) if children.contains_key(name) => continue,
                Some((name, _)) => (name, None),
            };
            let child_path = &path[..prefix.len() + name.len()];
            let child = DirEntry {
                name: String::from(name),
                ino: cpio_ino(child_path, entry),
                kind: cpio_kind(entry),
            };
            children.insert(name, child);
        }
        Ok(children.into_values().collect())
    }

    fn readlink(&self) -> Result<String> {
        match self.entry {
            Some(entry) if entry.kind() == Kind::Symlink => {
                Ok(String::from_utf8_lossy(entry.data).into_owned())
            }
            _ => Err(Errno::EINVAL),
        }
    }
}

// ---------------------------------------------------------------------
// Fixed directories and generated files

/// A read-only directory with a fixed set of children (permissions
/// `0o555`), for `/proc` and `/dev`. The children's types and inode
/// numbers are read once, when it is made.
pub struct StaticDir {
    dev: u64,
    ino: u64,
    children: Vec<(DirEntry, Arc<dyn Node>)>,
}

impl StaticDir {
    /// A directory listing `children` in the order given. Names should be
    /// distinct; the first of a name is the one found.
    pub fn new(dev: u64, ino: u64, children: Vec<(String, Arc<dyn Node>)>) -> Arc<StaticDir> {
        let children = children
            .into_iter()
            .map(|(name, node)| {
                let metadata = node.metadata();
                let entry = DirEntry {
                    name,
                    ino: metadata.ino,
                    kind: metadata.kind,
                };
                (entry, node)
            })
            .collect();
        Arc::new(StaticDir { dev, ino, children })
    }
}

impl Node for StaticDir {
    fn metadata(&self) -> Metadata {
        let subdirectories = self
            .children
            .iter()
            .filter(|(entry, _)| entry.kind == FileType::Directory)
            .count();
        Metadata {
            dev: self.dev,
            ino: self.ino,
            kind: FileType::Directory,
            permissions: 0o555,
            nlink: 2 + u32::try_from(subdirectories).unwrap_or(u32::MAX - 2),
            size: 0,
            mtime_ns: 0,
            rdev: 0,
        }
    }

    fn lookup(&self, name: &str) -> Result<Arc<dyn Node>> {
        self.children
            .iter()
            .find(|(entry, _)| entry.name == name)
            .map(|(_, node)| Arc::clone(node))
            .ok_or(Errno::ENOENT)
    }

    fn entries(&self) -> Result<Vec<DirEntry>> {
        Ok(self
            .children
            .iter()
            .map(|(entry, _)| entry.clone())
            .collect())
    }
}

type Generator = Box<dyn Fn() -> Vec<u8> + Send + Sync>;
type TargetFn = Box<dyn Fn() -> String + Send + Sync>;

/// A read-only regular file whose bytes `content` makes afresh for every
/// read and `stat`.
struct Generated {
    dev: u64,
    ino: u64,
    permissions: u32,
    content: Generator,
}

/// A read-only regular file whose contents `content` produces on each
/// read; its size is the current content's length. Writes are `EINVAL`
/// (the caller checks `permissions` first and gives `EACCES`).
pub fn generated(
    dev: u64,
    ino: u64,
    permissions: u32,
    content: impl Fn() -> Vec<u8> + Send + Sync + 'static,
) -> Arc<dyn Node> {
    Arc::new(Generated {
        dev,
        ino,
        permissions: permissions & 0o7777,
        content: Box::new(content),
    })
}

impl Node for Generated {
    fn metadata(&self) -> Metadata {
        Metadata {
            dev: self.dev,
            ino: self.ino,
            kind: FileType::Regular,
            permissions: self.permissions,
            nlink: 1,
            size: (self.content)().len() as u64,
            mtime_ns: 0,
            rdev: 0,
        }
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        Ok(read_slice(&(self.content)(), offset, buf))
    }
}

/// A symlink whose target `target` gives when read.
struct StaticSymlink {
    dev: u64,
    ino: u64,
    target: TargetFn,
}

/// A symlink whose target is computed on each read (for `/proc/self/exe`).
pub fn static_symlink(
    dev: u64,
    ino: u64,
    target: impl Fn() -> String + Send + Sync + 'static,
) -> Arc<dyn Node> {
    Arc::new(StaticSymlink {
        dev,
        ino,
        target: Box::new(target),
    })
}

impl Node for StaticSymlink {
    fn metadata(&self) -> Metadata {
        Metadata {
            dev: self.dev,
            ino: self.ino,
            kind: FileType::Symlink,
            permissions: 0o777,
            nlink: 1,
            size: (self.target)().len() as u64,
            mtime_ns: 0,
            rdev: 0,
        }
    }

    fn readlink(&self) -> Result<String> {
        Ok((self.target)())
    }
}

// ---------------------------------------------------------------------
// The namespace

/// The namespace: a root file system and the file systems mounted on it,
/// each recorded under the canonical path of the directory it covers.
pub struct Vfs {
    root: Arc<dyn Node>,
    mounts: BTreeMap<String, Arc<dyn Node>>,
}

/// The directory a name is to be made in or removed from, as
/// [`Vfs::resolve_parent`] finds it.
pub struct Parent {
    /// The directory's canonical absolute path.
    pub path: String,
    pub node: Arc<dyn Node>,
    /// The last component: not empty, `.` or `..`, at most [`NAME_MAX`]
    /// bytes.
    pub name: String,
    /// Whether the path ended in `/` (allowed only for directories).
    pub trailing_slash: bool,
}

impl Parent {
    /// The canonical path of the name in the directory.
    pub fn child_path(&self) -> String {
        join(&self.path, &self.name)
    }
}

/// `dir/name`, for a canonical `dir`.
fn join(dir: &str, name: &str) -> String {
    match dir {
        "/" => format!("/{name}"),
        dir => format!("{dir}/{name}"),
    }
}

/// Whether canonical `path` is strictly inside canonical `ancestor`.
fn is_under(path: &str, ancestor: &str) -> bool {
    (ancestor == "/" && path != "/")
        || path
            .strip_prefix(ancestor)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Pushes `path`'s components on `pending` so that they pop in order. A
/// trailing `/` becomes a final `.`, which asks for a directory (and
/// makes a symlink before it followed), as Linux treats it.
fn push_components(pending: &mut Vec<String>, path: &str) {
    if path.ends_with('/') {
        pending.push(String::from("."));
    }
    let components = path.split('/').rev().filter(|c| !c.is_empty());
    pending.extend(components.map(String::from));
}

fn require_dir(node: &Arc<dyn Node>) -> Result<()> {
    match is_dir(&**node) {
        true => Ok(()),
        false => Err(Errno::ENOTDIR),
    }
}

impl Vfs {
    /// A namespace with `root` at `/` and nothing mounted.
    pub fn new(root: Arc<dyn Node>) -> Vfs {
        Vfs {
            root,
            mounts: BTreeMap::new(),
        }
    }

    /// The root directory.
    pub fn root(&self) -> Arc<dyn Node> {
        Arc::clone(&self.root)
    }

    /// Whether canonical `path` is `/` or has a file system mounted on it
    /// (`rmdir` and `rename` of it are `EBUSY`).
    pub fn is_mount_point(&self, path: &str) -> bool {
        path == "/" || self.mounts.contains_key(path)
    }

    /// Mounts `node` over the directory at absolute `path` (which must
    /// resolve to a directory in the current namespace; ENOTDIR/ENOENT
    /// otherwise, `EINVAL` for a relative path, `ENOTDIR` if `node` is not
    /// a directory). Mounting over "/" replaces the root. What the mount
    /// covers is hidden, mounts inside it included, for good (there is no
    /// unmounting).
    pub fn mount(&mut self, path: &str, node: Arc<dyn Node>) -> Result<()> {
        if !path.starts_with('/') {
            return Err(Errno::EINVAL);
        }
        let (path, dir) = self.resolve("/", path, true)?;
        require_dir(&dir)?;
        require_dir(&node)?;
        self.mounts.retain(|mounted, _| !is_under(mounted, &path));
        if path == "/" {
            self.root = node;
        } else {
            self.mounts.insert(path, node);
        }
        Ok(())
    }

    /// Resolves `path` relative to `cwd` (an absolute canonical path; used
    /// when `path` is relative) following symlinks in every component, and
    /// in the last one when `follow` is true (a trailing `/` makes the last
    /// one followed too). `.` and `..` are handled (`..` of "/" is "/";
    /// `..` crossing out of a mount goes to the mount point's parent).
    /// Returns the canonical absolute path (symlinks resolved, no `.`/`..`,
    /// no trailing slash except "/") and the node. Errors: ENOENT (missing
    /// component or empty path), ENOTDIR (a non-directory used as a
    /// directory, including a trailing '/' after a file), ELOOP (more than
    /// [`SYMLINK_MAX`] symlinks followed in total), ENAMETOOLONG (a
    /// component > [`NAME_MAX`] bytes or the path ≥ [`PATH_MAX`] bytes).
    pub fn resolve(&self, cwd: &str, path: &str, follow: bool) -> Result<(String, Arc<dyn Node>)> {
        if path.is_empty() {
            return Err(Errno::ENOENT);
        }
        if path.len() >= PATH_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        let mut pending = Vec::new();
        push_components(&mut pending, path);
        if !path.starts_with('/') {
            push_components(&mut pending, cwd);
        }
        // The canonical path walked so far, the node there, and the
        // directories above it with the length of the path at each.
        let mut canonical = String::new();
        let mut node = self.root();
        let mut ancestors: Vec<(usize, Arc<dyn Node>)> = Vec::new();
        let mut links = 0;
        while let Some(component) = pending.pop() {
            match component.as_str() {
                "." => require_dir(&node)?,
                ".." => {
                    require_dir(&node)?;
                    if let Some((len, parent)) = ancestors.pop() {
                        canonical.truncate(len);
                        node = parent;
                    }
                }
                name => {
                    if name.len() > NAME_MAX {
                        return Err(Errno::ENAMETOOLONG);
                    }
                    let child = node.lookup(name)?;
                    let len = canonical.len();
                    canonical.push('/');
                    canonical.push_str(name);
                    if let Some(mounted) = self.mounts.get(&canonical) {
                        ancestors.push((len, core::mem::replace(&mut node, Arc::clone(mounted))));
                        continue;
                    }
                    let last = pending.is_empty();
                    if child.metadata().kind == FileType::Symlink && (follow || !last) {
                        canonical.truncate(len);
                        links += 1;
                        if links > SYMLINK_MAX {
                            return Err(Errno::ELOOP);
                        }
                        let target = child.readlink()?;
                        if target.is_empty() {
                            return Err(Errno::ENOENT);
                        }
                        if target.starts_with('/') {
                            canonical.clear();
                            node = self.root();
                            ancestors.clear();
                        }
                        push_components(&mut pending, &target);
                        continue;
                    }
                    ancestors.push((len, core::mem::replace(&mut node, child)));
                }
            }
        }
        if canonical.is_empty() {
            canonical.push('/');
        }
        Ok((canonical, node))
    }

    /// Resolves all but the last component (following symlinks) for
    /// operations that create or remove a name: returns the parent's
    /// canonical path, the parent node, and the last component. The last
    /// component must not be empty, "." or ".." (`EINVAL`, for "/" too),
    /// nor longer than [`NAME_MAX`] (`ENAMETOOLONG`). A path ending in '/'
    /// is allowed, for directory operations: the trailing slashes are
    /// stripped and `trailing_slash` is true.
    pub fn resolve_parent(&self, cwd: &str, path: &str) -> Result<Parent> {
        if path.is_empty() {
            return Err(Errno::ENOENT);
        }
        if path.len() >= PATH_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        let trimmed = path.trim_end_matches('/');
        let trailing_slash = trimmed.len() != path.len();
        let (dir, name) = match trimmed.rfind('/') {
            Some(slash) => (&trimmed[..=slash], &trimmed[slash + 1..]),
            None => (".", trimmed),
        };
        // `dir` ends in '/' or is ".": resolving it asks for a directory.
        let (dir_path, node) = self.resolve(cwd, dir, true)?;
        if name.is_empty() || name == "." || name == ".." {
            return Err(Errno::EINVAL);
        }
        if name.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        Ok(Parent {
            path: dir_path,
            node,
            name: String::from(name),
            trailing_slash,
        })
    }

    /// Renames within one file system (EXDEV across file systems,
    /// determined by metadata().dev), Linux semantics: renaming a directory
    /// into its own subtree is EINVAL; replacing a non-empty directory
    /// ENOTEMPTY; a dir over a file ENOTDIR; a file over a dir EISDIR; same
    /// node (same `dev` and `ino`) → no-op success. A trailing '/' on
    /// either path needs a directory (ENOTDIR). A mount point, or a
    /// directory with a mount inside, is EBUSY to move or replace. The
    /// last components are as [`Vfs::resolve_parent`] requires (EINVAL for
    /// "." and "..", where Linux gives EBUSY).
    ///
    /// The move is a detach from the old directory and an attach to the
    /// new one; if the attach fails the node is put back.
    pub fn rename(&self, cwd: &str, from: &str, to: &str) -> Result<()> {
        let source = self.resolve_parent(cwd, from)?;
        let target = self.resolve_parent(cwd, to)?;
        if source.node.metadata().dev != target.node.metadata().dev {
            return Err(Errno::EXDEV);
        }
        let node = source.node.lookup(&source.name)?;
        let metadata = node.metadata();
        let directory = metadata.kind == FileType::Directory;
        if (source.trailing_slash || target.trailing_slash) && !directory {
            return Err(Errno::ENOTDIR);
        }
        let from_path = source.child_path();
        let to_path = target.child_path();
        if from_path == to_path {
            return Ok(());
        }
        let mounted_inside = |path: &str| {
            self.mounts
                .keys()
                .any(|mount| mount == path || is_under(mount, path))
        };
        if mounted_inside(&from_path) || self.mounts.contains_key(&to_path) {
            return Err(Errno::EBUSY);
        }
        if is_under(&to_path, &from_path) {
            return Err(Errno::EINVAL);
        }
        match target.node.lookup(&target.name) {
            Ok(existing) => {
                let existing_metadata = existing.metadata();
                if (existing_metadata.dev, existing_metadata.ino) == (metadata.dev, metadata.ino) {
                    return Ok(());
                }
                if is_under(&from_path, &to_path) {
                    return Err(Errno::ENOTEMPTY);
                }
                let existing = Child {
                    node: existing,
                    ino: existing_metadata.ino,
                    kind: existing_metadata.kind,
                };
                replaceable(&existing, metadata.kind)?;
            }
            Err(Errno::ENOENT) => {}
            Err(error) => return Err(error),
        }
        let node = source.node.detach(&source.name)?;
        if let Err(error) = target.node.attach(&target.name, Arc::clone(&node)) {
            // Best effort: the name was just freed.
            let _ = source.node.attach(&source.name, node);
            return Err(error);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;
    use std::vec;

    static NOW: AtomicU64 = AtomicU64::new(1_000);

    /// A clock that ticks on every reading.
    fn clock() -> u64 {
        NOW.fetch_add(1, Ordering::Relaxed)
    }

    const DIR: u32 = 0o040_755;
    const FILE: u32 = 0o100_644;
    const LINK: u32 = 0o120_777;
    const MTIME: u32 = 1_700_000_000;

    /// Appends one newc member, padded.
    fn member(out: &mut Vec<u8>, name: &str, mode: u32, ino: u32, data: &[u8]) {
        let fields = [
            ino,
            mode,
            0,
            0,
            1,
            MTIME,
            data.len() as u32,
            0,
            0,
            0,
            0,
            name.len() as u32 + 1,
            0,
        ];
        out.extend_from_slice(b"070701");
        for field in fields {
            out.extend_from_slice(format!("{field:08X}").as_bytes());
        }
        for part in [name.as_bytes(), b"\0"] {
            out.extend_from_slice(part);
        }
        out.resize(out.len().next_multiple_of(4), 0);
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(4), 0);
    }

    fn archive() -> &'static Archive<'static> {
        let mut bytes = Vec::new();
        for (name, mode, ino, data) in [
            (".", DIR, 1, &b""[..]),
            ("bin", DIR, 10, b""),
            ("bin/hello", 0o100_755, 11, b"hello, world\n"),
            ("bin/sh", LINK, 12, b"hello"),
            ("bin/etc", LINK, 13, b"../etc/"),
            ("etc", DIR, 20, b""),
            ("etc/motd", FILE, 21, b"Welcome to sanos\n"),
            ("lib", LINK, 30, b"/usr/lib"),
            ("usr", DIR, 31, b""),
            ("usr/lib", DIR, 32, b""),
            ("usr/lib/x", FILE, 33, b"x marks the spot"),
            ("loop", LINK, 40, b"/loop"),
            ("srv/www/index.html", FILE, 0, b"<h1>hi</h1>"),
            ("tmp", 0o041_777, 50, b""),
            ("proc", 0o040_555, 51, b""),
            ("TRAILER!!!", 0, 0, b""),
        ] {
            member(&mut bytes, name, mode, ino, data);
        }
        let bytes = Box::leak(bytes.into_boxed_slice());
        Box::leak(Box::new(Archive::parse(bytes).unwrap()))
    }

    /// The cpio on `/` (dev 1) and a tmpfs on `/tmp` (dev 2).
    fn namespace() -> Vfs {
        let mut vfs = Vfs::new(cpio_root(archive(), 1));
        vfs.mount("/tmp", tmpfs(2, clock)).unwrap();
        vfs
    }

    fn err<T>(result: Result<T>) -> Errno {
        match result {
            Ok(_) => panic!("succeeded"),
            Err(error) => error,
        }
    }

    /// The canonical path `path` resolves to.
    fn canon(vfs: &Vfs, cwd: &str, path: &str) -> Result<String> {
        vfs.resolve(cwd, path, true).map(|(path, _)| path)
    }

    fn node(vfs: &Vfs, path: &str) -> Arc<dyn Node> {
        vfs.resolve("/", path, true).unwrap().1
    }

    fn contents(node: &Arc<dyn Node>) -> Vec<u8> {
        let mut buf = vec![0; 256];
        let count = node.read_at(0, &mut buf).unwrap();
        buf.truncate(count);
        buf
    }

    fn names(node: &Arc<dyn Node>) -> Vec<String> {
        node.entries()
            .unwrap()
            .into_iter()
            .map(|entry| entry.name)
            .collect()
    }

    #[test]
    fn vfs_file_types() {
        use FileType::*;
        let bits = [Regular, Directory, Symlink, CharDevice, Fifo, Socket]
            .map(|kind| (kind.mode_bits(), kind.dirent_type()));
        assert_eq!(
            bits,
            [
                (0o100_000, 8),
                (0o040_000, 4),
                (0o120_000, 10),
                (0o020_000, 2),
                (0o010_000, 1),
                (0o140_000, 12)
            ]
        );
        assert_eq!(FileType::from_mode(0o100_644), Some(Regular));
        assert_eq!(FileType::from_mode(0o140_755), Some(Socket));
        assert_eq!(FileType::from_mode(0o060_600), None);
        let metadata = node(&namespace(), "/bin/hello").metadata();
        assert_eq!(metadata.mode(), 0o100_755);
    }

    #[test]
    fn vfs_resolves_absolute_and_relative_paths() {
        let vfs = namespace();
        assert_eq!(canon(&vfs, "/", "/").unwrap(), "/");
        assert_eq!(canon(&vfs, "/", "/bin/hello").unwrap(), "/bin/hello");
        assert_eq!(canon(&vfs, "/", "bin/hello").unwrap(), "/bin/hello");
        assert_eq!(canon(&vfs, "/bin", "hello").unwrap(), "/bin/hello");
        assert_eq!(canon(&vfs, "/bin", "../etc/motd").unwrap(), "/etc/motd");
        assert_eq!(canon(&vfs, "/usr/lib", ".").unwrap(), "/usr/lib");
        assert_eq!(canon(&vfs, "/usr/lib", "..").unwrap(), "/usr");
        assert_eq!(canon(&vfs, "/usr/lib", "../../..").unwrap(), "/");
        assert_eq!(canon(&vfs, "/", "/..").unwrap(), "/");
        assert_eq!(
            canon(&vfs, "/", "//./bin/../etc//motd").unwrap(),
            "/etc/motd"
        );
        assert_eq!(canon(&vfs, "/", "/bin/").unwrap(), "/bin");
        assert_eq!(canon(&vfs, "/", "/bin/.//").unwrap(), "/bin");
        assert_eq!(canon(&vfs, "/etc", "/srv/www/").unwrap(), "/srv/www");
        assert_eq!(contents(&node(&vfs, "/bin/hello")), b"hello, world\n");
    }

    #[test]
    fn vfs_follows_symlinks() {
        let vfs = namespace();
        // At the end, relative target.
        let (path, sh) = vfs.resolve("/", "/bin/sh", true).unwrap();
        assert_eq!(path, "/bin/hello");
        assert_eq!(contents(&sh), b"hello, world\n");
        // Not at the end, for lstat.
        let (path, link) = vfs.resolve("/", "/bin/sh", false).unwrap();
        assert_eq!(path, "/bin/sh");
        assert_eq!(link.metadata().kind, FileType::Symlink);
        assert_eq!(link.metadata().size, 5);
        assert_eq!(link.readlink().unwrap(), "hello");
        // In the middle, absolute target.
        assert_eq!(canon(&vfs, "/", "/lib/x").unwrap(), "/usr/lib/x");
        assert_eq!(canon(&vfs, "/usr", "../lib/./x").unwrap(), "/usr/lib/x");
        assert_eq!(canon(&vfs, "/", "/lib").unwrap(), "/usr/lib");
        assert_eq!(vfs.resolve("/", "/lib", false).unwrap().0, "/lib");
        // A trailing slash follows the link even for lstat.
        assert_eq!(vfs.resolve("/", "/lib/", false).unwrap().0, "/usr/lib");
        // `..` after a link is the parent of where the link led.
        assert_eq!(canon(&vfs, "/", "/lib/..").unwrap(), "/usr");
        // A relative target with `..` and a trailing slash.
        assert_eq!(canon(&vfs, "/", "/bin/etc/motd").unwrap(), "/etc/motd");
        assert_eq!(canon(&vfs, "/", "/bin/etc").unwrap(), "/etc");
        let error = err(vfs.resolve("/", "/bin/sh/", false));
        assert_eq!(error, Errno::ENOTDIR);
        // Readlink of a non-link.
        assert_eq!(err(node(&vfs, "/bin/hello").readlink()), Errno::EINVAL);
    }

    #[test]
    fn vfs_resolution_errors() {
        let vfs = namespace();
        assert_eq!(err(canon(&vfs, "/", "/loop")), Errno::ELOOP);
        assert_eq!(err(canon(&vfs, "/", "/loop/x")), Errno::ELOOP);
        assert_eq!(err(canon(&vfs, "/", "/loop/")), Errno::ELOOP);
        assert_eq!(vfs.resolve("/", "/loop", false).unwrap().0, "/loop");
        for path in [
            "/bin/hello/x",
            "/bin/hello/",
            "/bin/hello/.",
            "/bin/hello/..",
        ] {
            assert_eq!(err(canon(&vfs, "/", path)), Errno::ENOTDIR, "{path}");
        }
        assert_eq!(err(canon(&vfs, "/bin", "sh/x")), Errno::ENOTDIR);
        for path in ["", "/nope", "/nope/x", "/bin/nope", "nope", "/srv/ww"] {
            assert_eq!(err(canon(&vfs, "/", path)), Errno::ENOENT, "{path}");
        }
        let long = "n".repeat(NAME_MAX + 1);
        assert_eq!(err(canon(&vfs, "/", &long)), Errno::ENAMETOOLONG);
        assert_eq!(err(canon(&vfs, "/", &"n".repeat(NAME_MAX))), Errno::ENOENT);
        // A missing directory before a long name is found first.
        let after = format!("/nope/{long}");
        assert_eq!(err(canon(&vfs, "/", &after)), Errno::ENOENT);
        let path = "/".repeat(PATH_MAX - 1);
        assert_eq!(canon(&vfs, "/", &path).unwrap(), "/");
        let path = "/".repeat(PATH_MAX);
        assert_eq!(err(canon(&vfs, "/", &path)), Errno::ENAMETOOLONG);
    }

    #[test]
    fn vfs_symlink_limit() {
        let vfs = namespace();
        let tmp = node(&vfs, "/tmp");
        tmp.symlink("l0", "/etc/motd").unwrap();
        for n in 1..=SYMLINK_MAX {
            tmp.symlink(&format!("l{n}"), &format!("l{}", n - 1))
                .unwrap();
        }
        let top = format!("/tmp/l{}", SYMLINK_MAX - 1);
        assert_eq!(canon(&vfs, "/", &top).unwrap(), "/etc/motd");
        let top = format!("/tmp/l{SYMLINK_MAX}");
        assert_eq!(err(canon(&vfs, "/", &top)), Errno::ELOOP);
    }

    #[test]
    fn vfs_cpio_directories() {
        let vfs = namespace();
        let root = node(&vfs, "/");
        assert_eq!(
            names(&root),
            ["bin", "etc", "lib", "loop", "proc", "srv", "tmp", "usr"]
        );
        let entries = root.entries().unwrap();
        let srv = entries.iter().find(|entry| entry.name == "srv").unwrap();
        assert_eq!(srv.kind, FileType::Directory);
        assert_eq!(srv.ino, node(&vfs, "/srv").metadata().ino);
        let lib = entries.iter().find(|entry| entry.name == "lib").unwrap();
        assert_eq!((lib.kind, lib.ino), (FileType::Symlink, 30));
        assert_eq!(names(&node(&vfs, "/srv")), ["www"]);
        assert_eq!(names(&node(&vfs, "/srv/www")), ["index.html"]);
        assert_eq!(names(&node(&vfs, "/bin")), ["etc", "hello", "sh"]);
        assert_eq!(err(node(&vfs, "/etc/motd").entries()), Errno::ENOTDIR);
        assert_eq!(err(node(&vfs, "/etc/motd").lookup("x")), Errno::ENOTDIR);
        // Implied directories: 0o755, a stable hashed inode number.
        let www = node(&vfs, "/srv/www").metadata();
        assert_eq!(
            (www.kind, www.permissions, www.nlink),
            (FileType::Directory, 0o755, 2)
        );
        assert_ne!(www.ino & 1 << 63, 0);
        assert_eq!(www.ino, node(&vfs, "/srv/www/").metadata().ino);
        assert_ne!(www.ino, node(&vfs, "/srv").metadata().ino);
        let index = node(&vfs, "/srv/www/index.html").metadata();
        assert_ne!(index.ino & 1 << 63, 0);
        assert_eq!(node(&vfs, "/").metadata().ino, 1);
        assert_eq!(node(&vfs, "/proc").metadata().permissions, 0o555);
        assert_eq!(node(&vfs, "/tmp/..").metadata().ino, 1);
    }

    #[test]
    fn vfs_cpio_reads() {
        let vfs = namespace();
        let motd = node(&vfs, "/etc/motd");
        let metadata = motd.metadata();
        assert_eq!(metadata.kind, FileType::Regular);
        assert_eq!(metadata.size, 17);
        assert_eq!(metadata.ino, 21);
        assert_eq!(metadata.dev, 1);
        assert_eq!(metadata.permissions, 0o644);
        assert_eq!(metadata.mtime_ns, u64::from(MTIME) * 1_000_000_000);
        let mut buf = [0u8; 5];
        assert_eq!(motd.read_at(11, &mut buf).unwrap(), 5);
        assert_eq!(&buf, b"sanos");
        assert_eq!(motd.read_at(14, &mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], b"os\n");
        assert_eq!(motd.read_at(17, &mut buf).unwrap(), 0);
        assert_eq!(motd.read_at(u64::MAX, &mut buf).unwrap(), 0);
        assert_eq!(err(node(&vfs, "/etc").read_at(0, &mut buf)), Errno::EISDIR);
        let link = vfs.resolve("/", "/lib", false).unwrap().1;
        assert_eq!(err(link.read_at(0, &mut buf)), Errno::EINVAL);
    }

    #[test]
    fn vfs_cpio_is_read_only() {
        let vfs = namespace();
        let motd = node(&vfs, "/etc/motd");
        let etc = node(&vfs, "/etc");
        assert_eq!(err(motd.write_at(0, b"x")), Errno::EROFS);
        assert_eq!(err(motd.truncate(0)), Errno::EROFS);
        assert_eq!(err(etc.write_at(0, b"x")), Errno::EISDIR);
        assert_eq!(
            err(etc.create("new", FileType::Regular, 0o644)),
            Errno::EROFS
        );
        assert_eq!(
            err(etc.create("motd", FileType::Regular, 0o644)),
            Errno::EEXIST
        );
        assert_eq!(err(etc.symlink("l", "motd")), Errno::EROFS);
        assert_eq!(err(etc.unlink("motd", false)), Errno::EROFS);
        assert_eq!(err(etc.detach("motd")), Errno::EROFS);
        assert_eq!(
            err(motd.create("x", FileType::Regular, 0o644)),
            Errno::ENOTDIR
        );
        assert_eq!(err(motd.unlink("x", false)), Errno::ENOTDIR);
        assert_eq!(err(vfs.rename("/", "/etc/motd", "/etc/m")), Errno::EROFS);
        assert_eq!(names(&etc), ["motd"]);
    }

    #[test]
    fn vfs_tmpfs_files() {
        let vfs = namespace();
        let tmp = node(&vfs, "/tmp");
        let root = tmp.metadata();
        assert_eq!((root.ino, root.dev, root.permissions), (1, 2, 0o1777));
        let file = tmp.create("f", FileType::Regular, 0o100_640).unwrap();
        let created = file.metadata();
        assert_eq!((created.ino, created.size, created.nlink), (2, 0, 1));
        assert_eq!(created.permissions, 0o640);
        assert!(tmp.metadata().mtime_ns >= created.mtime_ns);
        assert_eq!(file.write_at(0, b"hello").unwrap(), 5);
        assert_eq!(file.write_at(8, b"world").unwrap(), 5);
        assert_eq!(file.write_at(1, b"E").unwrap(), 1);
        assert_eq!(file.write_at(3, b"").unwrap(), 0);
        assert_eq!(contents(&node(&vfs, "/tmp/f")), b"hEllo\0\0\0world");
        let written = file.metadata();
        assert_eq!(written.size, 13);
        assert!(written.mtime_ns > created.mtime_ns);
        let mut buf = [0u8; 4];
        assert_eq!(file.read_at(9, &mut buf).unwrap(), 4);
        assert_eq!(&buf, b"orld");
        file.truncate(2).unwrap();
        assert_eq!(contents(&file), b"hE");
        file.truncate(4).unwrap();
        assert_eq!(contents(&file), b"hE\0\0");
        assert!(file.metadata().mtime_ns > written.mtime_ns);
        assert_eq!(err(file.write_at(TMPFS_FILE_MAX, b"x")), Errno::EFBIG);
        assert_eq!(err(file.truncate(TMPFS_FILE_MAX + 1)), Errno::EFBIG);
        assert_eq!(
            err(tmp.create("f", FileType::Regular, 0o644)),
            Errno::EEXIST
        );
        assert_eq!(err(tmp.create("p", FileType::Fifo, 0o644)), Errno::EINVAL);
        assert_eq!(
            err(tmp.create("..", FileType::Regular, 0o644)),
            Errno::EINVAL
        );
        let long = "n".repeat(NAME_MAX + 1);
        assert_eq!(
            err(tmp.create(&long, FileType::Regular, 0o644)),
            Errno::ENAMETOOLONG
        );
        assert_eq!(
            err(file.create("x", FileType::Regular, 0o644)),
            Errno::ENOTDIR
        );
        assert_eq!(err(tmp.read_at(0, &mut buf)), Errno::EISDIR);
        assert_eq!(err(tmp.write_at(0, b"x")), Errno::EISDIR);
        assert_eq!(err(tmp.truncate(0)), Errno::EISDIR);
        assert_eq!(err(file.readlink()), Errno::EINVAL);
        // Unlink.
        let before = tmp.metadata().mtime_ns;
        assert_eq!(err(tmp.unlink("f", true)), Errno::ENOTDIR);
        tmp.unlink("f", false).unwrap();
        assert!(tmp.metadata().mtime_ns > before);
        assert_eq!(err(tmp.unlink("f", false)), Errno::ENOENT);
        assert_eq!(err(canon(&vfs, "/", "/tmp/f")), Errno::ENOENT);
        // The unlinked file lives on while held.
        assert_eq!(contents(&file), b"hE\0\0");
    }

    #[test]
    fn vfs_tmpfs_directories() {
        let vfs = namespace();
        let tmp = node(&vfs, "/tmp");
        assert_eq!((tmp.metadata().nlink, tmp.metadata().size), (2, 40));
        let d = tmp.create("d", FileType::Directory, 0o755).unwrap();
        tmp.create("e", FileType::Directory, 0o700).unwrap();
        tmp.create("f", FileType::Regular, 0o644).unwrap();
        d.create("inner", FileType::Regular, 0o644).unwrap();
        assert_eq!((tmp.metadata().nlink, tmp.metadata().size), (4, 100));
        assert_eq!(d.metadata().nlink, 2);
        let entries = tmp.entries().unwrap();
        let kinds: Vec<_> = entries
            .iter()
            .map(|entry| (entry.name.as_str(), entry.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                ("d", FileType::Directory),
                ("e", FileType::Directory),
                ("f", FileType::Regular)
            ]
        );
        assert_eq!(entries[0].ino, d.metadata().ino);
        assert_eq!(canon(&vfs, "/tmp", "d/inner").unwrap(), "/tmp/d/inner");
        assert_eq!(err(tmp.unlink("d", true)), Errno::ENOTEMPTY);
        assert_eq!(err(tmp.unlink("d", false)), Errno::EISDIR);
        assert_eq!(err(tmp.unlink("nope", true)), Errno::ENOENT);
        d.unlink("inner", false).unwrap();
        tmp.unlink("d", true).unwrap();
        assert_eq!(tmp.metadata().nlink, 3);
        assert_eq!(names(&tmp), ["e", "f"]);
        // `..` from the tmpfs goes back to the cpio root.
        let (path, up) = vfs.resolve("/tmp", "..", true).unwrap();
        assert_eq!((path.as_str(), up.metadata().dev), ("/", 1));
        assert_eq!(
            canon(&vfs, "/tmp/e", "../../etc/motd").unwrap(),
            "/etc/motd"
        );
        assert_eq!(canon(&vfs, "/", "/tmp/e/../../bin").unwrap(), "/bin");
        assert_ne!(
            node(&vfs, "/tmp/e").metadata().dev,
            node(&vfs, "/etc").metadata().dev
        );
    }

    #[test]
    fn vfs_tmpfs_symlinks() {
        let vfs = namespace();
        let tmp = node(&vfs, "/tmp");
        tmp.symlink("motd", "/etc/motd").unwrap();
        tmp.symlink("up", "../bin").unwrap();
        tmp.symlink("self", ".").unwrap();
        assert_eq!(err(tmp.symlink("motd", "x")), Errno::EEXIST);
        assert_eq!(err(tmp.symlink("empty", "")), Errno::ENOENT);
        let (path, motd) = vfs.resolve("/", "/tmp/motd", true).unwrap();
        assert_eq!(path, "/etc/motd");
        assert_eq!(contents(&motd), b"Welcome to sanos\n");
        let link = vfs.resolve("/", "/tmp/motd", false).unwrap().1;
        let metadata = link.metadata();
        assert_eq!(
            (metadata.kind, metadata.size, metadata.permissions),
            (FileType::Symlink, 9, 0o777)
        );
        assert_eq!(link.readlink().unwrap(), "/etc/motd");
        assert_eq!(canon(&vfs, "/", "/tmp/up/hello").unwrap(), "/bin/hello");
        assert_eq!(
            canon(&vfs, "/tmp", "self/self/up/sh").unwrap(),
            "/bin/hello"
        );
        // A link elsewhere leading into the mount finds the tmpfs.
        tmp.create("file", FileType::Regular, 0o644).unwrap();
        let mut vfs = vfs;
        let other = tmpfs(3, clock);
        other.symlink("to_tmp", "/tmp/self/file").unwrap();
        vfs.mount("/srv", other).unwrap();
        let (path, file) = vfs.resolve("/", "/srv/to_tmp", true).unwrap();
        assert_eq!(path, "/tmp/file");
        assert_eq!(file.metadata().dev, 2);
    }

    #[test]
    fn vfs_resolve_parent() {
        let vfs = namespace();
        let parent = vfs.resolve_parent("/", "/tmp/new").unwrap();
        assert_eq!(
            (parent.path.as_str(), parent.name.as_str()),
            ("/tmp", "new")
        );
        assert!(!parent.trailing_slash);
        assert_eq!(parent.node.metadata().dev, 2);
        assert_eq!(parent.child_path(), "/tmp/new");
        let parent = vfs.resolve_parent("/tmp", "new").unwrap();
        assert_eq!(
            (parent.path.as_str(), parent.name.as_str()),
            ("/tmp", "new")
        );
        let parent = vfs.resolve_parent("/", "/tmp/dir//").unwrap();
        assert_eq!(
            (parent.path.as_str(), parent.name.as_str()),
            ("/tmp", "dir")
        );
        assert!(parent.trailing_slash);
        let parent = vfs.resolve_parent("/", "/top").unwrap();
        assert_eq!(
            (parent.path.as_str(), parent.child_path().as_str()),
            ("/", "/top")
        );
        // The parent through a symlink; the last component is not followed.
        let parent = vfs.resolve_parent("/bin", "../lib/z").unwrap();
        assert_eq!(
            (parent.path.as_str(), parent.name.as_str()),
            ("/usr/lib", "z")
        );
        let parent = vfs.resolve_parent("/", "/lib").unwrap();
        assert_eq!((parent.path.as_str(), parent.name.as_str()), ("/", "lib"));
        for path in ["/", "///", "/tmp/.", "/tmp/..", ".", "..", "/tmp/./"] {
            assert_eq!(
                err(vfs.resolve_parent("/tmp", path)),
                Errno::EINVAL,
                "{path}"
            );
        }
        assert_eq!(err(vfs.resolve_parent("/", "")), Errno::ENOENT);
        assert_eq!(err(vfs.resolve_parent("/", "/nope/x")), Errno::ENOENT);
        assert_eq!(err(vfs.resolve_parent("/", "/bin/hello/x")), Errno::ENOTDIR);
        assert_eq!(err(vfs.resolve_parent("/", "/loop/x")), Errno::ELOOP);
        let long = format!("/tmp/{}", "n".repeat(NAME_MAX + 1));
        assert_eq!(err(vfs.resolve_parent("/", &long)), Errno::ENAMETOOLONG);
    }

    #[test]
    fn vfs_rename() {
        let vfs = namespace();
        let tmp = node(&vfs, "/tmp");
        let a = tmp.create("a", FileType::Regular, 0o644).unwrap();
        a.write_at(0, b"A").unwrap();
        let b = tmp.create("b", FileType::Regular, 0o644).unwrap();
        b.write_at(0, b"B").unwrap();
        let d = tmp.create("d", FileType::Directory, 0o755).unwrap();
        let e = tmp.create("e", FileType::Directory, 0o755).unwrap();
        e.create("inside", FileType::Regular, 0o644).unwrap();
        // A file to a new name, then over an existing file.
        vfs.rename("/", "/tmp/a", "/tmp/c").unwrap();
        assert_eq!(names(&tmp), ["b", "c", "d", "e"]);
        vfs.rename("/tmp", "c", "b").unwrap();
        assert_eq!(names(&tmp), ["b", "d", "e"]);
        assert_eq!(contents(&node(&vfs, "/tmp/b")), b"A");
        // Into a directory and back.
        vfs.rename("/", "/tmp/b", "/tmp/d/b").unwrap();
        assert_eq!(contents(&node(&vfs, "/tmp/d/b")), b"A");
        // A directory, with what is in it; parents' link counts follow.
        vfs.rename("/", "/tmp/e", "/tmp/d/e2/").unwrap();
        assert_eq!(names(&node(&vfs, "/tmp/d/e2")), ["inside"]);
        assert_eq!((tmp.metadata().nlink, d.metadata().nlink), (3, 3));
        // Same node, or same name: nothing happens.
        vfs.rename("/", "/tmp/d/b", "/tmp/d/./b").unwrap();
        tmp.symlink("dl", "d").unwrap();
        vfs.rename("/", "/tmp/d/b", "/tmp/dl/b").unwrap();
        assert_eq!(names(&d), ["b", "e2"]);
        let f = tmp.create("f", FileType::Regular, 0o644).unwrap();
        assert_eq!(err(vfs.rename("/", "/tmp/f", "/tmp/d/")), Errno::ENOTDIR);
        assert_eq!(err(vfs.rename("/", "/tmp/f/", "/tmp/g")), Errno::ENOTDIR);
        // A directory into its own subtree.
        assert_eq!(err(vfs.rename("/", "/tmp/d", "/tmp/d/e2/d")), Errno::EINVAL);
        assert_eq!(err(vfs.rename("/", "/tmp/d", "/tmp/dl/x")), Errno::EINVAL);
        // Over an ancestor, a non-empty directory, a file, a directory.
        assert_eq!(
            err(vfs.rename("/", "/tmp/d/e2/inside", "/tmp/d")),
            Errno::ENOTEMPTY
        );
        tmp.create("g", FileType::Directory, 0o755).unwrap();
        assert_eq!(err(vfs.rename("/", "/tmp/g", "/tmp/d")), Errno::ENOTEMPTY);
        assert_eq!(err(vfs.rename("/", "/tmp/g", "/tmp/f")), Errno::ENOTDIR);
        assert_eq!(err(vfs.rename("/", "/tmp/f", "/tmp/g")), Errno::EISDIR);
        // An empty directory may be replaced.
        vfs.rename("/", "/tmp/d/e2", "/tmp/g").unwrap();
        assert_eq!(names(&node(&vfs, "/tmp/g")), ["inside"]);
        // Across file systems.
        assert_eq!(err(vfs.rename("/", "/tmp/f", "/etc/f")), Errno::EXDEV);
        assert_eq!(err(vfs.rename("/", "/etc/motd", "/tmp/motd")), Errno::EXDEV);
        // Missing, ".", mount points.
        assert_eq!(err(vfs.rename("/", "/tmp/nope", "/tmp/x")), Errno::ENOENT);
        assert_eq!(err(vfs.rename("/", "/tmp/.", "/tmp/x")), Errno::EINVAL);
        assert_eq!(err(vfs.rename("/", "/tmp", "/tmp2")), Errno::EBUSY);
        assert_eq!(err(vfs.rename("/", "/proc", "/tmp")), Errno::EBUSY);
        assert_eq!(err(vfs.rename("/", "/usr", "/usr2")), Errno::EROFS);
        assert!(vfs.is_mount_point("/tmp") && vfs.is_mount_point("/"));
        assert!(!vfs.is_mount_point("/tmp/g"));
        assert_eq!(contents(&f), b"");
    }

    #[test]
    fn vfs_rename_across_tmpfs_mounts() {
        let mut vfs = namespace();
        let tmp = node(&vfs, "/tmp");
        let sub = tmp.create("sub", FileType::Directory, 0o755).unwrap();
        sub.create("f", FileType::Regular, 0o644).unwrap();
        vfs.mount("/tmp/sub", tmpfs(4, clock)).unwrap();
        assert_eq!(names(&node(&vfs, "/tmp/sub")), Vec::<String>::new());
        assert_eq!(node(&vfs, "/tmp/sub").metadata().dev, 4);
        assert_eq!(err(canon(&vfs, "/", "/tmp/sub/f")), Errno::ENOENT);
        tmp.create("g", FileType::Regular, 0o644).unwrap();
        assert_eq!(err(vfs.rename("/", "/tmp/g", "/tmp/sub/g")), Errno::EXDEV);
        // A directory with a mount inside does not move.
        assert_eq!(err(vfs.rename("/", "/tmp/sub", "/tmp/x")), Errno::EBUSY);
        // Attaching a node of another file system directly.
        let alien = node(&vfs, "/etc/motd");
        assert_eq!(err(tmp.attach("alien", alien)), Errno::EXDEV);
    }

    #[test]
    fn vfs_mounts() {
        let mut vfs = namespace();
        assert_eq!(err(vfs.mount("/etc/motd", tmpfs(5, clock))), Errno::ENOTDIR);
        assert_eq!(err(vfs.mount("/nope", tmpfs(5, clock))), Errno::ENOENT);
        assert_eq!(err(vfs.mount("tmp", tmpfs(5, clock))), Errno::EINVAL);
        let file = generated(9, 9, 0o444, Vec::new);
        assert_eq!(err(vfs.mount("/usr", file)), Errno::ENOTDIR);
        // Through a symlink: the mount is on /usr/lib.
        let lib = tmpfs(6, clock);
        lib.create("y", FileType::Regular, 0o644).unwrap();
        vfs.mount("/lib", lib).unwrap();
        assert!(vfs.is_mount_point("/usr/lib"));
        assert_eq!(canon(&vfs, "/", "/lib/y").unwrap(), "/usr/lib/y");
        assert_eq!(node(&vfs, "/usr/lib/y").metadata().dev, 6);
        assert_eq!(err(canon(&vfs, "/", "/usr/lib/x")), Errno::ENOENT);
        assert_eq!(canon(&vfs, "/usr/lib", "..").unwrap(), "/usr");
        // Over the root: everything before is hidden.
        let root = tmpfs(7, clock);
        root.create("tmp", FileType::Directory, 0o755).unwrap();
        vfs.mount("/", root).unwrap();
        assert_eq!(names(&vfs.root()), ["tmp"]);
        assert_eq!(node(&vfs, "/tmp").metadata().dev, 7);
        assert_eq!(err(canon(&vfs, "/", "/etc")), Errno::ENOENT);
        assert!(!vfs.is_mount_point("/tmp"));
    }

    #[test]
    fn vfs_static_nodes() {
        use core::sync::atomic::AtomicUsize;
        let reads = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&reads);
        let version = generated(8, 2, 0o444, move || {
            let n = counter.fetch_add(1, Ordering::Relaxed);
            format!("sanos {n}\n").into_bytes()
        });
        let exe = static_symlink(8, 4, || String::from("/bin/sh"));
        let this = StaticDir::new(8, 3, vec![("exe".to_string(), exe)]);
        let proc = StaticDir::new(
            8,
            1,
            vec![("version".to_string(), version), ("self".to_string(), this)],
        );
        let mut vfs = namespace();
        vfs.mount("/proc", proc).unwrap();
        let dir = node(&vfs, "/proc");
        let metadata = dir.metadata();
        assert_eq!((metadata.dev, metadata.ino, metadata.nlink), (8, 1, 3));
        assert_eq!(metadata.permissions, 0o555);
        let entries = dir.entries().unwrap();
        assert_eq!(
            entries,
            [
                DirEntry {
                    name: "version".to_string(),
                    ino: 2,
                    kind: FileType::Regular
                },
                DirEntry {
                    name: "self".to_string(),
                    ino: 3,
                    kind: FileType::Directory
                }
            ]
        );
        // Made afresh on every read (and stat).
        let version = node(&vfs, "/proc/version");
        let start = reads.load(Ordering::Relaxed);
        assert_eq!(contents(&version), format!("sanos {start}\n").as_bytes());
        let mut buf = [0u8; 3];
        assert_eq!(version.read_at(6, &mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], format!("{}\n", start + 1).as_bytes());
        assert_eq!(version.metadata().size, 8);
        assert_eq!(version.metadata().permissions, 0o444);
        assert_eq!(err(version.write_at(0, b"x")), Errno::EINVAL);
        assert_eq!(err(version.truncate(0)), Errno::EINVAL);
        assert_eq!(err(version.lookup("x")), Errno::ENOTDIR);
        // The symlink, followed and not.
        assert_eq!(canon(&vfs, "/", "/proc/self/exe").unwrap(), "/bin/hello");
        let (path, exe) = vfs.resolve("/", "/proc/self/exe", false).unwrap();
        assert_eq!(path, "/proc/self/exe");
        assert_eq!(exe.readlink().unwrap(), "/bin/sh");
        assert_eq!(exe.metadata().size, 7);
        assert_eq!(exe.metadata().mode(), 0o120_777);
        assert_eq!(canon(&vfs, "/proc/self", "../../etc").unwrap(), "/etc");
        // Read-only.
        assert_eq!(err(dir.create("x", FileType::Regular, 0o644)), Errno::EROFS);
        assert_eq!(
            err(dir.create("self", FileType::Directory, 0o755)),
            Errno::EEXIST
        );
        assert_eq!(err(dir.unlink("version", false)), Errno::EROFS);
        assert_eq!(err(dir.lookup("nope")), Errno::ENOENT);
        assert_eq!(err(dir.read_at(0, &mut buf)), Errno::EISDIR);
        assert_eq!(
            err(vfs.rename("/", "/proc/version", "/proc/v")),
            Errno::EROFS
        );
    }
}
