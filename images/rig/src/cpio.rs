//! A writer of cpio "newc" archives (`cpio(5)`; Linux's
//! `Documentation/driver-api/early-userspace/buffer-format.rst`), for the
//! site image sanos serves: `rig cpio DIR OUT` packs a folder, and the
//! HTTP configurations of the matrix pack the test site they generate.

use std::fs;
use std::path::Path;

/// One archive member.
pub struct Member {
    /// Relative path, `/`-separated, no leading `./`.
    pub path: String,
    pub data: Vec<u8>,
    pub is_dir: bool,
    pub mtime: u32,
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn header(out: &mut Vec<u8>, ino: u32, mode: u32, size: u32, mtime: u32, name: &str) {
    let fields = [
        ino,
        mode,
        0, // uid
        0, // gid
        1, // nlink
        mtime,
        size,
        0, // devmajor
        0, // devminor
        0, // rdevmajor
        0, // rdevminor
        name.len() as u32 + 1,
        0, // check
    ];
    out.extend_from_slice(b"070701");
    for field in fields {
        out.extend_from_slice(format!("{field:08X}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
}

/// The archive of `members`, in order, with the trailer.
pub fn write(members: &[Member]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, member) in members.iter().enumerate() {
        let mode = if member.is_dir { 0o040755 } else { 0o100644 };
        let size = if member.is_dir {
            0
        } else {
            member.data.len() as u32
        };
        header(
            &mut out,
            i as u32 + 1,
            mode,
            size,
            member.mtime,
            &member.path,
        );
        if !member.is_dir {
            out.extend_from_slice(&member.data);
            pad4(&mut out);
        }
    }
    header(&mut out, 0, 0, 0, 0, "TRAILER!!!");
    out
}

/// Every file and folder under `dir`, sorted, as members (mtimes from the
/// file system).
pub fn members_of(dir: &Path) -> Result<Vec<Member>, String> {
    let mut members = Vec::new();
    collect(dir, dir, &mut members)?;
    members.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(members)
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<Member>) -> Result<(), String> {
    let entries = fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = entry.path();
        let meta = fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let relative = path
            .strip_prefix(root)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .to_string_lossy()
            .replace('\\', "/");
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs() as u32);
        if meta.is_dir() {
            out.push(Member {
                path: relative,
                data: Vec::new(),
                is_dir: true,
                mtime,
            });
            collect(root, &path, out)?;
        } else if meta.is_file() {
            let data = fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            out.push(Member {
                path: relative,
                data,
                is_dir: false,
                mtime,
            });
        }
    }
    Ok(())
}

/// Packs `dir` into the newc archive `out`.
pub fn pack(dir: &Path, out: &Path) -> Result<(), String> {
    let archive = write(&members_of(dir)?);
    fs::write(out, archive).map_err(|e| format!("{}: {e}", out.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_layout_is_aligned_and_terminated() {
        let archive = write(&[Member {
            path: "a.txt".into(),
            data: b"hello".to_vec(),
            is_dir: false,
            mtime: 0x5f5e_1000,
        }]);
        assert!(archive.starts_with(b"070701"));
        // Header 110 bytes + "a.txt\0" = 116, aligned; data 5 -> 8.
        assert_eq!(&archive[110..116], b"a.txt\0");
        assert_eq!(&archive[116..121], b"hello");
        assert_eq!(&archive[121..124], &[0, 0, 0]);
        // File size and mtime fields, in hex.
        assert_eq!(&archive[6 + 8 * 6..6 + 8 * 7], b"00000005");
        assert_eq!(&archive[6 + 8 * 5..6 + 8 * 6], b"5F5E1000");
        let trailer = &archive[124..];
        assert!(trailer.starts_with(b"070701"));
        assert_eq!(&trailer[110..121], b"TRAILER!!!\0");
        assert_eq!(archive.len() % 4, 0);
    }
}
