//! A reader for cpio "newc" archives, the format of Linux's initramfs and
//! of the site image the network appliance serves. Formats: `cpio(5)`
//! ("New ASCII Format" and "New CRC Format") and Linux's
//! Documentation/driver-api/early-userspace/buffer-format.rst.
//!
//! Each member is a 110-byte header of ASCII fields, then its name with a
//! terminating NUL, then its data:
//!
//! ```text
//! magic "070701" (or "070702": the same with a checksum)
//! 13 fields of 8 hex digits: ino mode uid gid nlink mtime filesize
//!     devmajor devminor rdevmajor rdevminor namesize check
//! name (namesize bytes, NUL included), padded to a multiple of 4
//! data (filesize bytes), padded to a multiple of 4
//! ```
//!
//! Padding is counted from the start of the archive, which is where Linux
//! counts it; an archive built by `cpio -H newc` starts every header on a
//! 4-byte boundary so that is the same thing. The member named
//! `TRAILER!!!` ends the archive and anything after it (`cpio` pads to a
//! block) is ignored. For the `070702` format the checksum, the 32-bit sum
//! of the data's bytes, is checked; `070701` members' `check` is ignored.
//!
//! The archive is hostile until parsed: every offset is checked, every
//! member advances the reader by at least a header so no input loops, and
//! a problem is a [`CpioError`] naming where it is. Names are refused if
//! they could leave the archive's tree: an absolute name or one with a `..`
//! component is an error, not something to strip (GNU cpio strips a
//! leading `/` by default; a site image built that way is a mistake worth
//! reporting). `./a//b/.` is normalised to `a/b`, and `.` alone to the
//! root, `""`.
//!
//! Hard links: `cpio -H newc` writes a multiply-linked file's data only
//! with its last link, the others having size 0 (as `cpio(5)` says);
//! [`Archive::parse`] gives every link the data.
//!
//! Data is borrowed from the archive, never copied; only the index of
//! normalised paths allocates.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// The magic of the "newc" format.
pub const MAGIC_NEWC: &[u8; 6] = b"070701";
/// The magic of the "crc" format: newc with a data checksum.
pub const MAGIC_CRC: &[u8; 6] = b"070702";
/// The length of a member header.
pub const HEADER_LEN: usize = 110;
/// The name of the member that ends an archive.
pub const TRAILER: &str = "TRAILER!!!";

/// File type bits of `mode` (`S_IFMT`) and the types the reader names.
const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFLNK: u32 = 0o120_000;

/// Why an archive was refused. `offset` is where the member's header
/// starts, from the start of the archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpioError {
    /// Fewer than [`HEADER_LEN`] bytes left for a header.
    TruncatedHeader { offset: usize },
    /// Neither `070701` nor `070702`.
    BadMagic { offset: usize },
    /// A header field holds something other than 8 hex digits.
    BadHex { offset: usize, field: &'static str },
    /// The name runs past the end of the archive.
    NamePastEnd { offset: usize },
    /// `namesize` is 0, or the name's last byte is not a NUL, or a NUL
    /// comes before it.
    NameNotTerminated { offset: usize },
    /// The name is not UTF-8.
    NameNotUtf8 { offset: usize },
    /// The name is empty, or normalises to the root for a member that is
    /// not a directory.
    EmptyName { offset: usize },
    /// The name starts with `/`.
    AbsoluteName { offset: usize },
    /// The name has a `..` component.
    DotDotInName { offset: usize },
    /// The data runs past the end of the archive.
    DataPastEnd { offset: usize },
    /// A `070702` member whose data does not sum to its `check` field.
    BadChecksum {
        offset: usize,
        expected: u32,
        actual: u32,
    },
    /// The archive ended without a `TRAILER!!!` member.
    MissingTrailer,
}

impl fmt::Display for CpioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CpioError::TruncatedHeader { offset } => {
                write!(f, "cpio: header at {offset:#x} is cut short")
            }
            CpioError::BadMagic { offset } => {
                write!(f, "cpio: no newc magic at {offset:#x}")
            }
            CpioError::BadHex { offset, field } => write!(
                f,
                "cpio: field '{field}' of the header at {offset:#x} is not 8 hex digits"
            ),
            CpioError::NamePastEnd { offset } => write!(
                f,
                "cpio: the name of the member at {offset:#x} runs past the end"
            ),
            CpioError::NameNotTerminated { offset } => write!(
                f,
                "cpio: the name of the member at {offset:#x} is not NUL-terminated"
            ),
            CpioError::NameNotUtf8 { offset } => write!(
                f,
                "cpio: the name of the member at {offset:#x} is not UTF-8"
            ),
            CpioError::EmptyName { offset } => {
                write!(f, "cpio: the member at {offset:#x} has no name")
            }
            CpioError::AbsoluteName { offset } => {
                write!(f, "cpio: the member at {offset:#x} has an absolute name")
            }
            CpioError::DotDotInName { offset } => write!(
                f,
                "cpio: the name of the member at {offset:#x} climbs out with '..'"
            ),
            CpioError::DataPastEnd { offset } => write!(
                f,
                "cpio: the data of the member at {offset:#x} runs past the end"
            ),
            CpioError::BadChecksum {
                offset,
                expected,
                actual,
            } => write!(
                f,
                "cpio: the data of the member at {offset:#x} sums to {actual:#x}, not {expected:#x}"
            ),
            CpioError::MissingTrailer => write!(f, "cpio: no TRAILER!!! member"),
        }
    }
}

/// What a member is, from the type bits of its mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Directory,
    /// The data is the link's target.
    Symlink,
    /// A device, FIFO or socket: the type bits.
    Other(u32),
}

/// One member of an archive, as its header describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The name as stored (before normalisation), without its NUL.
    pub name: &'a str,
    /// Type and permission bits, as `st_mode`.
    pub mode: u32,
    pub ino: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    /// Modification time, seconds since the Unix epoch (for the HTTP
    /// server's `Last-Modified`).
    pub mtime: u32,
    pub dev_major: u32,
    pub dev_minor: u32,
    /// The contents (a symlink's target), borrowed from the archive. Its
    /// length is the header's `filesize`, except for a hard link whose
    /// data [`Archive::parse`] found with another link.
    pub data: &'a [u8],
}

impl Entry<'_> {
    pub fn kind(&self) -> Kind {
        match self.mode & S_IFMT {
            S_IFREG => Kind::File,
            S_IFDIR => Kind::Directory,
            S_IFLNK => Kind::Symlink,
            other => Kind::Other(other),
        }
    }

    pub fn is_file(&self) -> bool {
        self.kind() == Kind::File
    }

    pub fn is_dir(&self) -> bool {
        self.kind() == Kind::Directory
    }

    /// The size of [`Entry::data`].
    pub fn size(&self) -> u64 {
        self.data.len() as u64
    }

    /// The permission bits (`mode & 0o7777`).
    pub fn permissions(&self) -> u32 {
        self.mode & 0o7777
    }
}

/// Rounds `offset` up to a multiple of 4, `None` on overflow.
fn align4(offset: usize) -> Option<usize> {
    offset.checked_add(3).map(|o| o & !3)
}

const FIELDS: [&str; 13] = [
    "ino",
    "mode",
    "uid",
    "gid",
    "nlink",
    "mtime",
    "filesize",
    "devmajor",
    "devminor",
    "rdevmajor",
    "rdevminor",
    "namesize",
    "check",
];

/// The 13 fields of the header at `offset`, `bytes` being its 110 bytes.
fn header_fields(bytes: &[u8], offset: usize) -> Result<[u32; 13], CpioError> {
    let mut fields = [0u32; 13];
    for (index, (field, digits)) in fields
        .iter_mut()
        .zip(bytes[6..].chunks_exact(8))
        .enumerate()
    {
        *field = digits.iter().try_fold(0u32, |value, &digit| {
            let nibble = char::from(digit).to_digit(16).ok_or(CpioError::BadHex {
                offset,
                field: FIELDS[index],
            })?;
            Ok(value << 4 | nibble)
        })?;
    }
    Ok(fields)
}

/// Walks an archive's members in order, up to (not including) the
/// trailer. After an error it yields nothing more. Names come as stored:
/// only UTF-8 is checked here, [`normalise`] (which [`Archive::parse`]
/// applies) refuses the dangerous ones.
pub struct Reader<'a> {
    archive: &'a [u8],
    offset: usize,
    done: bool,
}

impl<'a> Reader<'a> {
    pub fn new(archive: &'a [u8]) -> Self {
        Reader {
            archive,
            offset: 0,
            done: false,
        }
    }

    /// Where the next member's header starts.
    pub fn offset(&self) -> usize {
        self.offset
    }

    fn member(&mut self) -> Result<Option<Entry<'a>>, CpioError> {
        let offset = self.offset;
        let archive = self.archive;
        let end_of_header = offset
            .checked_add(HEADER_LEN)
            .filter(|&end| end <= archive.len())
            .ok_or(CpioError::TruncatedHeader { offset })?;
        let header = &archive[offset..end_of_header];
        let crc = match &header[..6] {
            magic if magic == MAGIC_NEWC => false,
            magic if magic == MAGIC_CRC => true,
            _ => return Err(CpioError::BadMagic { offset }),
        };
        let [ino, mode, uid, gid, nlink, mtime, filesize, dev_major, dev_minor, _, _, namesize, check] =
            header_fields(header, offset)?;

        let name_end = end_of_header
            .checked_add(namesize as usize)
            .filter(|&end| end <= archive.len())
            .ok_or(CpioError::NamePastEnd { offset })?;
        let name = match &archive[end_of_header..name_end] {
            [name @ .., 0] if !name.contains(&0) => name,
            _ => return Err(CpioError::NameNotTerminated { offset }),
        };
        let name = core::str::from_utf8(name).map_err(|_| CpioError::NameNotUtf8 { offset })?;

        let data_start = align4(name_end).ok_or(CpioError::NamePastEnd { offset })?;
        let data_end = data_start
            .checked_add(filesize as usize)
            .ok_or(CpioError::DataPastEnd { offset })?;
        // No data needs no bytes, not even the name's padding: a trailer
        // cut right after its name is still a trailer.
        let data = match filesize {
            0 => &[][..],
            _ => archive
                .get(data_start..data_end)
                .ok_or(CpioError::DataPastEnd { offset })?,
        };
        if crc {
            let actual = data
                .iter()
                .fold(0u32, |sum, &byte| sum.wrapping_add(u32::from(byte)));
            if actual != check {
                return Err(CpioError::BadChecksum {
                    offset,
                    expected: check,
                    actual,
                });
            }
        }
        if name == TRAILER {
            return Ok(None);
        }
        // Padding may be cut short at the very end; the next header read
        // then reports the truncation. At least HEADER_LEN was consumed.
        self.offset = align4(data_end).unwrap_or(usize::MAX);
        Ok(Some(Entry {
            name,
            mode,
            ino,
            uid,
            gid,
            nlink,
            mtime,
            dev_major,
            dev_minor,
            data,
        }))
    }
}

impl<'a> Iterator for Reader<'a> {
    type Item = Result<Entry<'a>, CpioError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let offset = self.offset;
        let result = match self.member() {
            Ok(Some(entry)) => Ok(entry),
            Ok(None) => {
                self.done = true;
                return None;
            }
            // Running out of bytes exactly between members means the
            // trailer is missing, not that a header is damaged.
            Err(CpioError::TruncatedHeader { .. }) if offset >= self.archive.len() => {
                Err(CpioError::MissingTrailer)
            }
            Err(error) => Err(error),
        };
        self.done = result.is_err();
        Some(result)
    }
}

/// Why a name could not be normalised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameError {
    Empty,
    Absolute,
    DotDot,
}

/// A member's name as an index path: no leading `./`, no empty or `.`
/// components, no trailing `/`; `.` (and `./`) is the root, `""`.
/// Absolute names and `..` components are refused.
pub fn normalise(name: &str) -> Result<String, NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.starts_with('/') {
        return Err(NameError::Absolute);
    }
    let mut path = String::with_capacity(name.len());
    for component in name.split('/') {
        match component {
            "" | "." => {}
            ".." => return Err(NameError::DotDot),
            component => {
                if !path.is_empty() {
                    path.push('/');
                }
                path.push_str(component);
            }
        }
    }
    Ok(path)
}

/// A lookup key: the path without leading or trailing slashes, so `/a/b`,
/// `a/b/` and `a/b` all name the same member.
fn key(path: &str) -> &str {
    path.trim_matches('/')
}

/// A parsed archive: every member up to the trailer, indexed by
/// normalised path.
#[derive(Clone, Debug)]
pub struct Archive<'a> {
    /// Sorted by path (byte order), one entry per path.
    index: Vec<(String, Entry<'a>)>,
}

impl<'a> Archive<'a> {
    /// Reads the whole archive. A member named twice keeps its last
    /// occurrence, as extracting the archive would.
    pub fn parse(bytes: &'a [u8]) -> Result<Archive<'a>, CpioError> {
        let mut reader = Reader::new(bytes);
        let mut index = Vec::new();
        loop {
            let offset = reader.offset();
            let Some(entry) = reader.next() else {
                break;
            };
            let entry = entry?;
            let path = normalise(entry.name).map_err(|error| match error {
                NameError::Empty => CpioError::EmptyName { offset },
                NameError::Absolute => CpioError::AbsoluteName { offset },
                NameError::DotDot => CpioError::DotDotInName { offset },
            })?;
            if path.is_empty() && !entry.is_dir() {
                return Err(CpioError::EmptyName { offset });
            }
            index.push((path, entry));
        }
        // Later members first, so that after a stable sort by path the
        // first of each run of equal paths is the last in the archive.
        index.reverse();
        index.sort_by(|a, b| a.0.cmp(&b.0));
        index.dedup_by(|later, earlier| later.0 == earlier.0);
        share_hard_link_data(&mut index);
        Ok(Archive { index })
    }

    /// The regular file at `path` (leading and trailing `/` ignored).
    pub fn get(&self, path: &str) -> Option<&Entry<'a>> {
        self.lookup(path).filter(|entry| entry.is_file())
    }

    /// Any member at `path`, of whatever kind.
    pub fn lookup(&self, path: &str) -> Option<&Entry<'a>> {
        let path = key(path);
        self.index
            .binary_search_by(|(p, _)| p.as_str().cmp(path))
            .ok()
            .map(|i| &self.index[i].1)
    }

    /// Whether `path` is a directory: the root, a directory member, or a
    /// prefix of another member's path (archives need not list every
    /// directory).
    pub fn is_dir(&self, path: &str) -> bool {
        let path = key(path);
        if path.is_empty() {
            return true;
        }
        if let Some(entry) = self.lookup(path) {
            if entry.is_dir() {
                return true;
            }
        }
        // Everything under `path/` sorts together, from `path/` on.
        let under = |p: &str| p.bytes().lt(path.bytes().chain([b'/']));
        let first = self.index.partition_point(|(p, _)| under(p));
        self.index.get(first).is_some_and(|(p, _)| {
            p.len() > path.len() && p.starts_with(path) && p.as_bytes()[path.len()] == b'/'
        })
    }

    /// Every member, sorted by normalised path.
    pub fn entries(&self) -> impl ExactSizeIterator<Item = (&str, &Entry<'a>)> + '_ {
        self.index
            .iter()
            .map(|(path, entry)| (path.as_str(), entry))
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

/// Gives each empty link of a multiply-linked regular file the data found
/// with another link of the same (device, inode). Sorting keeps this
/// O(n log n) however many links an archive claims.
fn share_hard_link_data(index: &mut [(String, Entry<'_>)]) {
    let identity = |entry: &Entry<'_>| (entry.dev_major, entry.dev_minor, entry.ino);
    let mut with_data: Vec<_> = index
        .iter()
        .map(|(_, entry)| entry)
        .filter(|entry| entry.is_file() && entry.nlink > 1 && !entry.data.is_empty())
        .map(|entry| (identity(entry), entry.data))
        .collect();
    if with_data.is_empty() {
        return;
    }
    with_data.sort_by_key(|&(id, _)| id);
    for (_, entry) in index.iter_mut() {
        if entry.is_file() && entry.nlink > 1 && entry.data.is_empty() {
            if let Ok(found) = with_data.binary_search_by_key(&identity(entry), |&(id, _)| id) {
                entry.data = with_data[found].1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;
    use std::string::ToString;
    use std::vec;

    /// One member in newc (or crc) format, padded, starting at `at` bytes
    /// into the archive (which must be a multiple of 4).
    struct Member<'a> {
        name: &'a str,
        mode: u32,
        data: &'a [u8],
        mtime: u32,
        nlink: u32,
        ino: u32,
        magic: &'a [u8; 6],
        check: Option<u32>,
    }

    fn file<'a>(name: &'a str, data: &'a [u8]) -> Member<'a> {
        Member {
            name,
            mode: S_IFREG | 0o644,
            data,
            mtime: 1_700_000_000,
            nlink: 1,
            ino: 1,
            magic: MAGIC_NEWC,
            check: None,
        }
    }

    fn dir(name: &str) -> Member<'_> {
        Member {
            mode: S_IFDIR | 0o755,
            nlink: 2,
            ..file(name, b"")
        }
    }

    fn push(archive: &mut Vec<u8>, member: &Member<'_>) {
        assert!(archive.len().is_multiple_of(4));
        let check = member.check.unwrap_or_else(|| {
            if member.magic == MAGIC_CRC {
                member.data.iter().map(|&b| u32::from(b)).sum()
            } else {
                0
            }
        });
        let fields = [
            member.ino,
            member.mode,
            0,
            0,
            member.nlink,
            member.mtime,
            member.data.len() as u32,
            8,
            1,
            0,
            0,
            member.name.len() as u32 + 1,
            check,
        ];
        archive.extend_from_slice(member.magic);
        for field in fields {
            archive.extend_from_slice(format!("{field:08X}").as_bytes());
        }
        archive.extend_from_slice(member.name.as_bytes());
        archive.push(0);
        while !archive.len().is_multiple_of(4) {
            archive.push(0);
        }
        archive.extend_from_slice(member.data);
        while !archive.len().is_multiple_of(4) {
            archive.push(0);
        }
    }

    fn build(members: &[Member<'_>]) -> Vec<u8> {
        let mut archive = Vec::new();
        for member in members {
            push(&mut archive, member);
        }
        push(&mut archive, &file(TRAILER, b""));
        archive
    }

    fn site() -> Vec<u8> {
        build(&[
            dir("."),
            file("./index.html", b"<h1>hi</h1>"),
            dir("./css"),
            file("./css/site.css", b"body{}"),
            file("./img/logo.png", b"\x89PNG"),
            file("./empty", b""),
            Member {
                mode: S_IFLNK | 0o777,
                ..file("./home.html", b"index.html")
            },
        ])
    }

    #[test]
    fn reads_members_in_order() {
        let archive = site();
        let names: Vec<_> = Reader::new(&archive)
            .map(|entry| entry.unwrap().name)
            .collect();
        assert_eq!(
            names,
            [
                ".",
                "./index.html",
                "./css",
                "./css/site.css",
                "./img/logo.png",
                "./empty",
                "./home.html"
            ]
        );
        let index = Reader::new(&archive).nth(1).unwrap().unwrap();
        assert_eq!(index.data, b"<h1>hi</h1>");
        assert_eq!(index.size(), 11);
        assert_eq!(index.mtime, 1_700_000_000);
        assert_eq!(index.nlink, 1);
        assert_eq!(index.permissions(), 0o644);
        assert_eq!(index.kind(), Kind::File);
        assert_eq!((index.dev_major, index.dev_minor), (8, 1));
    }

    #[test]
    fn index_lookups() {
        let bytes = site();
        let archive = Archive::parse(&bytes).unwrap();
        assert_eq!(archive.len(), 7);
        let paths: Vec<_> = archive.entries().map(|(path, _)| path).collect();
        assert_eq!(
            paths,
            [
                "",
                "css",
                "css/site.css",
                "empty",
                "home.html",
                "img/logo.png",
                "index.html"
            ]
        );
        assert_eq!(archive.get("index.html").unwrap().data, b"<h1>hi</h1>");
        assert_eq!(archive.get("/index.html").unwrap().data, b"<h1>hi</h1>");
        assert_eq!(archive.get("css/site.css").unwrap().data, b"body{}");
        assert_eq!(archive.get("empty").unwrap().data, b"");
        // Directories and symlinks are not files.
        assert!(archive.get("css").is_none());
        assert!(archive.get("").is_none());
        assert!(archive.get("home.html").is_none());
        assert_eq!(archive.lookup("home.html").unwrap().kind(), Kind::Symlink);
        assert_eq!(archive.lookup("home.html").unwrap().data, b"index.html");
        assert!(archive.get("missing").is_none());
        assert!(archive.get("index.htm").is_none());
        assert!(archive.get("./index.html").is_none());
    }

    #[test]
    fn directories_listed_or_implied() {
        let bytes = site();
        let archive = Archive::parse(&bytes).unwrap();
        assert!(archive.is_dir(""));
        assert!(archive.is_dir("/"));
        assert!(archive.is_dir("css"));
        assert!(archive.is_dir("/css/"));
        // Not listed, but a file is under it.
        assert!(archive.is_dir("img"));
        assert!(!archive.is_dir("im"));
        assert!(!archive.is_dir("img/logo.png"));
        assert!(!archive.is_dir("index.html"));
        assert!(!archive.is_dir("nothing"));
        assert!(!archive.is_dir("css/site"));
    }

    #[test]
    fn implied_directory_among_neighbours_that_sort_between() {
        // "a-b" and "a.c" sort between "a" and "a/x" (both '-' and '.'
        // are below '/'), and "a0" after.
        let bytes = build(&[
            file("a-b", b"1"),
            file("a.c", b"2"),
            file("a0", b"3"),
            file("a/x", b"4"),
            file("b", b"5"),
        ]);
        let archive = Archive::parse(&bytes).unwrap();
        assert!(archive.is_dir("a"));
        assert!(!archive.is_dir("a-b"));
        assert!(!archive.is_dir("a0"));
        assert!(!archive.is_dir("b"));
        let bytes = build(&[file("a-b", b"1"), file("a0/x", b"2")]);
        let archive = Archive::parse(&bytes).unwrap();
        assert!(!archive.is_dir("a"));
        assert!(archive.is_dir("a0"));
    }

    #[test]
    fn names_are_normalised() {
        assert_eq!(normalise("./a/b").unwrap(), "a/b");
        assert_eq!(normalise("a//b/./c/").unwrap(), "a/b/c");
        assert_eq!(normalise(".").unwrap(), "");
        assert_eq!(normalise("./").unwrap(), "");
        assert_eq!(normalise("a..b/..c").unwrap(), "a..b/..c");
        assert_eq!(normalise(""), Err(NameError::Empty));
        assert_eq!(normalise("/etc/passwd"), Err(NameError::Absolute));
        assert_eq!(normalise("../x"), Err(NameError::DotDot));
        assert_eq!(normalise("a/../../x"), Err(NameError::DotDot));
        assert_eq!(normalise("a/.."), Err(NameError::DotDot));
    }

    #[test]
    fn hostile_names_refuse_the_archive() {
        let bytes = build(&[file("ok", b""), file("../../etc/passwd", b"x")]);
        let first = 116; // 110 + "ok\0", padded to 4
        assert_eq!(
            Archive::parse(&bytes).unwrap_err(),
            CpioError::DotDotInName { offset: first }
        );
        let bytes = build(&[file("/etc/passwd", b"x")]);
        assert_eq!(
            Archive::parse(&bytes).unwrap_err(),
            CpioError::AbsoluteName { offset: 0 }
        );
        // A file cannot be the root.
        let bytes = build(&[file(".", b"x")]);
        assert_eq!(
            Archive::parse(&bytes).unwrap_err(),
            CpioError::EmptyName { offset: 0 }
        );
        let bytes = build(&[file("", b"x")]);
        assert_eq!(
            Archive::parse(&bytes).unwrap_err(),
            CpioError::EmptyName { offset: 0 }
        );
    }

    #[test]
    fn empty_archive_is_just_a_trailer() {
        let bytes = build(&[]);
        let archive = Archive::parse(&bytes).unwrap();
        assert!(archive.is_empty());
        assert!(archive.is_dir(""));
        assert!(archive.get("x").is_none());
    }

    #[test]
    fn missing_or_truncated_trailer() {
        assert_eq!(Archive::parse(&[]).unwrap_err(), CpioError::MissingTrailer);
        let mut bytes = Vec::new();
        push(&mut bytes, &file("a", b"abc"));
        assert_eq!(
            Archive::parse(&bytes).unwrap_err(),
            CpioError::MissingTrailer
        );
        // Every cut inside a header, name or data is an error, never a
        // panic, and never success.
        let full = site();
        let trailer_end = full.len();
        for cut in 0..trailer_end - 4 {
            assert!(Archive::parse(&full[..cut]).is_err(), "cut at {cut}");
        }
        // The trailer's own padding may be missing.
        let trailer_name_end = full.len() - 4 + 1;
        assert!(Archive::parse(&full[..trailer_name_end]).is_ok());
    }

    #[test]
    fn truncation_errors_name_the_part() {
        let full = build(&[file("a", b"0123456789")]);
        assert_eq!(
            Archive::parse(&full[..50]).unwrap_err(),
            CpioError::TruncatedHeader { offset: 0 }
        );
        assert_eq!(
            Archive::parse(&full[..HEADER_LEN + 1]).unwrap_err(),
            CpioError::NamePastEnd { offset: 0 }
        );
        assert_eq!(
            Archive::parse(&full[..HEADER_LEN + 2 + 2 + 5]).unwrap_err(),
            CpioError::DataPastEnd { offset: 0 }
        );
    }

    #[test]
    fn trailing_bytes_after_trailer_are_ignored() {
        let mut bytes = site();
        bytes.extend_from_slice(&[0u8; 512]);
        bytes.extend_from_slice(b"garbage");
        assert_eq!(Archive::parse(&bytes).unwrap().len(), 7);
    }

    #[test]
    fn bad_magic_and_hex() {
        let mut bytes = site();
        bytes[5] = b'7';
        assert_eq!(
            Archive::parse(&bytes).unwrap_err(),
            CpioError::BadMagic { offset: 0 }
        );
        // The old binary and "odc" formats are not newc.
        let mut bytes = site();
        bytes[..6].copy_from_slice(b"070707");
        assert_eq!(
            Archive::parse(&bytes).unwrap_err(),
            CpioError::BadMagic { offset: 0 }
        );
        for (position, field) in [
            (6, "ino"),
            (14, "mode"),
            (6 + 8 * 6 + 7, "filesize"),
            (6 + 8 * 11, "namesize"),
            (HEADER_LEN - 1, "check"),
        ] {
            for bad in [b'g', b' ', b'-', b'+', 0, 0xff] {
                let mut bytes = site();
                bytes[position] = bad;
                assert_eq!(
                    Archive::parse(&bytes).unwrap_err(),
                    CpioError::BadHex { offset: 0, field },
                    "{field} {bad:#x}"
                );
            }
        }
        // Lower-case hex is hex.
        let mut bytes = build(&[file("a", &[0u8; 0xab])]);
        let size = 6 + 8 * 6;
        assert_eq!(&bytes[size..size + 8], b"000000AB");
        bytes[size..size + 8].copy_from_slice(b"000000ab");
        assert_eq!(
            Archive::parse(&bytes).unwrap().get("a").unwrap().size(),
            0xab
        );
    }

    #[test]
    fn names_must_be_nul_terminated_utf8() {
        let mut bytes = build(&[file("abc", b"")]);
        // "abc\0" -> "abcd": no NUL where namesize says.
        bytes[HEADER_LEN + 3] = b'd';
        assert_eq!(
            Archive::parse(&bytes).unwrap_err(),
            CpioError::NameNotTerminated { offset: 0 }
        );
        // A NUL inside the name.
        let mut bytes = build(&[file("abc", b"")]);
        bytes[HEADER_LEN + 1] = 0;
        assert_eq!(
            Archive::parse(&bytes).unwrap_err(),
            CpioError::NameNotTerminated { offset: 0 }
        );
        // namesize 0.
        let mut bytes = build(&[file("abc", b"")]);
        bytes[6 + 8 * 11..6 + 8 * 12].copy_from_slice(b"00000000");
        assert_eq!(
            Archive::parse(&bytes).unwrap_err(),
            CpioError::NameNotTerminated { offset: 0 }
        );
        let mut bytes = build(&[file("ab", b"")]);
        bytes[HEADER_LEN] = 0xc3;
        assert_eq!(
            Archive::parse(&bytes).unwrap_err(),
            CpioError::NameNotUtf8 { offset: 0 }
        );
        let bytes = build(&[file("ünïcödé/✓.txt", b"ok")]);
        let archive = Archive::parse(&bytes).unwrap();
        assert_eq!(archive.get("ünïcödé/✓.txt").unwrap().data, b"ok");
        assert!(archive.is_dir("ünïcödé"));
    }

    #[test]
    fn huge_sizes_do_not_overflow() {
        for (field, value) in [(6, b"FFFFFFFF"), (11, b"FFFFFFFF"), (6, b"7FFFFFFF")] {
            let mut bytes = build(&[file("a", b"x")]);
            let at = 6 + 8 * field;
            bytes[at..at + 8].copy_from_slice(value);
            let error = Archive::parse(&bytes).unwrap_err();
            assert!(
                matches!(
                    error,
                    CpioError::DataPastEnd { offset: 0 } | CpioError::NamePastEnd { offset: 0 }
                ),
                "{error:?}"
            );
        }
    }

    #[test]
    fn alignment_for_every_name_and_data_length() {
        for name_len in 1..9 {
            for data_len in 0..9 {
                let name = "n".repeat(name_len);
                let data = vec![b'd'; data_len];
                let bytes = build(&[file(&name, &data), file("z", b"last")]);
                let archive = Archive::parse(&bytes).unwrap();
                assert_eq!(archive.get(&name).unwrap().data, &data[..]);
                assert_eq!(archive.get("z").unwrap().data, b"last");
            }
        }
    }

    #[test]
    fn crc_format_is_checked() {
        let good = Member {
            magic: MAGIC_CRC,
            ..file("a", b"\xff\xff\x01")
        };
        let bytes = build(&[good]);
        assert_eq!(
            Archive::parse(&bytes).unwrap().get("a").unwrap().data,
            b"\xff\xff\x01"
        );
        let bad = Member {
            magic: MAGIC_CRC,
            check: Some(0x1234),
            ..file("a", b"\xff\xff\x01")
        };
        assert_eq!(
            Archive::parse(&build(&[bad])).unwrap_err(),
            CpioError::BadChecksum {
                offset: 0,
                expected: 0x1234,
                actual: 0x1ff,
            }
        );
        // newc's check field is ignored.
        let ignored = Member {
            check: Some(0x1234),
            ..file("a", b"x")
        };
        assert!(Archive::parse(&build(&[ignored])).is_ok());
    }

    #[test]
    fn later_duplicate_wins() {
        let bytes = build(&[
            file("a", b"first"),
            file("./b", b"b"),
            file("./a", b"second"),
        ]);
        let archive = Archive::parse(&bytes).unwrap();
        assert_eq!(archive.len(), 2);
        assert_eq!(archive.get("a").unwrap().data, b"second");
    }

    #[test]
    fn hard_links_share_data() {
        let link = |name, data, ino| Member {
            nlink: 2,
            ino,
            ..file(name, data)
        };
        let bytes = build(&[
            link("x/first", b"", 7),
            link("other", b"", 9),
            link("x/second", b"shared", 7),
        ]);
        let archive = Archive::parse(&bytes).unwrap();
        assert_eq!(archive.get("x/first").unwrap().data, b"shared");
        assert_eq!(archive.get("x/second").unwrap().data, b"shared");
        // No other link carries data: stays empty.
        assert_eq!(archive.get("other").unwrap().data, b"");
        // nlink 1 files with equal inode numbers are not links.
        let bytes = build(&[file("p", b""), file("q", b"data")]);
        assert_eq!(Archive::parse(&bytes).unwrap().get("p").unwrap().data, b"");
    }

    #[test]
    fn reader_stops_after_an_error() {
        let mut bytes = site();
        // Damage the third member's magic.
        let mut reader = Reader::new(&bytes);
        reader.next();
        reader.next();
        let third = reader.offset();
        bytes[third] = b'X';
        let results: Vec<_> = Reader::new(&bytes).collect();
        assert_eq!(results.len(), 3);
        assert_eq!(results[2], Err(CpioError::BadMagic { offset: third }));
    }

    #[test]
    fn kinds() {
        let entry = |mode| Entry {
            name: "x",
            mode,
            ino: 0,
            uid: 0,
            gid: 0,
            nlink: 1,
            mtime: 0,
            dev_major: 0,
            dev_minor: 0,
            data: b"",
        };
        assert_eq!(entry(0o100_644).kind(), Kind::File);
        assert_eq!(entry(0o040_755).kind(), Kind::Directory);
        assert_eq!(entry(0o120_777).kind(), Kind::Symlink);
        assert_eq!(entry(0o020_600).kind(), Kind::Other(0o020_000));
        assert_eq!(entry(0o010_600).kind(), Kind::Other(0o010_000));
    }

    #[test]
    fn messages() {
        assert_eq!(
            CpioError::BadHex {
                offset: 0x70,
                field: "mode"
            }
            .to_string(),
            "cpio: field 'mode' of the header at 0x70 is not 8 hex digits"
        );
        assert_eq!(
            CpioError::MissingTrailer.to_string(),
            "cpio: no TRAILER!!! member"
        );
        assert_eq!(
            CpioError::DotDotInName { offset: 0 }.to_string(),
            "cpio: the name of the member at 0x0 climbs out with '..'"
        );
    }

    #[test]
    fn fuzz_like_corruption_never_panics() {
        let base = site();
        // Flip every byte of the archive to a few values: parse must
        // return, with an error or a (possibly different) archive.
        for position in 0..base.len() {
            for value in [0u8, b'0', b'F', b'/', b'.', 0xff] {
                let mut bytes = base.clone();
                bytes[position] = value;
                let _ = Archive::parse(&bytes);
                let _ = Reader::new(&bytes).count();
            }
        }
    }
}
