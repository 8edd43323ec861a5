//! The file namespace user programs see (`pure::fs::vfs` does the work):
//! the boot module's cpio archive read-only at `/`, a tmpfs at `/tmp`,
//! and the kernel's own nodes: `/dev` (null, zero, urandom, console),
//! a small `/proc` and `/sys/devices/system/cpu/online`.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use pure::fs::cpio::Archive;
use pure::fs::vfs::{
    self, generated, static_symlink, DirEntry, FileType, Metadata, Node, StaticDir, Vfs,
};
use pure::user::linux::Errno;

/// Device numbers of the file systems (`st_dev`).
const DEV_ROOT: u64 = 1;
const DEV_TMP: u64 = 2;
const DEV_PROC: u64 = 3;
const DEV_DEV: u64 = 4;
const DEV_SYS: u64 = 5;

/// Nanoseconds since the Unix epoch, for file times (0 without a clock).
fn now_ns() -> u64 {
    crate::time::wall_clock_ns().unwrap_or(0)
}

/// The root: the archive's root directory, with the mount points the
/// kernel needs added when the archive lacks them (a program's files need
/// not carry /tmp, /proc, /dev or /sys).
struct Root {
    archive: Arc<dyn Node>,
    extra: Vec<(String, Arc<dyn Node>)>,
}

impl Node for Root {
    fn metadata(&self) -> Metadata {
        self.archive.metadata()
    }

    fn lookup(&self, name: &str) -> vfs::Result<Arc<dyn Node>> {
        match self.archive.lookup(name) {
            Err(Errno::ENOENT) => self
                .extra
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, node)| node.clone())
                .ok_or(Errno::ENOENT),
            other => other,
        }
    }

    fn entries(&self) -> vfs::Result<Vec<DirEntry>> {
        let mut entries = self.archive.entries()?;
        for (name, node) in &self.extra {
            if !entries.iter().any(|e| &e.name == name) {
                let meta = node.metadata();
                entries.push(DirEntry {
                    name: name.clone(),
                    ino: meta.ino,
                    kind: meta.kind,
                });
            }
        }
        Ok(entries)
    }
}

/// A character device: `/dev/null`, `/dev/zero`, `/dev/urandom`,
/// `/dev/console`.
struct Device {
    ino: u64,
    rdev: u64,
    read: fn(&mut [u8]) -> vfs::Result<usize>,
    write: fn(&[u8]) -> vfs::Result<usize>,
}

impl Node for Device {
    fn metadata(&self) -> Metadata {
        Metadata {
            dev: DEV_DEV,
            ino: self.ino,
            kind: FileType::CharDevice,
            permissions: 0o666,
            nlink: 1,
            size: 0,
            mtime_ns: 0,
            rdev: self.rdev,
        }
    }

    fn read_at(&self, _offset: u64, buf: &mut [u8]) -> vfs::Result<usize> {
        (self.read)(buf)
    }

    fn write_at(&self, _offset: u64, buf: &[u8]) -> vfs::Result<usize> {
        (self.write)(buf)
    }

    fn truncate(&self, _len: u64) -> vfs::Result<()> {
        Ok(())
    }
}

/// Linux's `makedev` for major < 4096, minor < 256.
const fn rdev(major: u64, minor: u64) -> u64 {
    (major << 8) | minor
}

fn read_nothing(_: &mut [u8]) -> vfs::Result<usize> {
    Ok(0)
}

fn write_away(buf: &[u8]) -> vfs::Result<usize> {
    Ok(buf.len())
}

fn read_zeros(buf: &mut [u8]) -> vfs::Result<usize> {
    buf.fill(0);
    Ok(buf.len())
}

fn read_random(buf: &mut [u8]) -> vfs::Result<usize> {
    crate::arch::cpu::random_bytes(buf);
    Ok(buf.len())
}

/// Console input: blocks until at least one byte was typed, then takes
/// what is there.
fn read_console(buf: &mut [u8]) -> vfs::Result<usize> {
    if buf.is_empty() {
        return Ok(0);
    }
    loop {
        let mut n = 0;
        while n < buf.len() {
            match crate::console::read_byte() {
                Some(byte) => {
                    buf[n] = if byte == b'\r' { b'\n' } else { byte };
                    n += 1;
                }
                None => break,
            }
        }
        if n > 0 {
            return Ok(n);
        }
        if crate::user::exiting() {
            return Err(Errno::EINTR);
        }
        crate::console::wait_input(20_000_000);
    }
}

fn write_console(buf: &[u8]) -> vfs::Result<usize> {
    crate::console::write_bytes(buf);
    Ok(buf.len())
}

/// `/dev/console`, which file descriptors 0, 1 and 2 start as.
pub fn console() -> Arc<dyn Node> {
    Arc::new(Device {
        ino: 5,
        rdev: rdev(5, 1),
        read: read_console,
        write: write_console,
    })
}

fn dev() -> Arc<dyn Node> {
    let device = |ino, rdev, read, write| -> Arc<dyn Node> {
        Arc::new(Device {
            ino,
            rdev,
            read,
            write,
        })
    };
    StaticDir::new(
        DEV_DEV,
        1,
        vec![
            (
                String::from("null"),
                device(2, rdev(1, 3), read_nothing, write_away),
            ),
            (
                String::from("zero"),
                device(3, rdev(1, 5), read_zeros, write_away),
            ),
            (
                String::from("urandom"),
                device(4, rdev(1, 9), read_random, write_away),
            ),
            (
                String::from("random"),
                device(6, rdev(1, 8), read_random, write_away),
            ),
            (String::from("console"), console()),
            (String::from("tty"), console()),
        ],
    )
}

fn meminfo() -> Vec<u8> {
    let (free, total) = crate::mm::frames::counts();
    let kib = |frames: usize| frames as u64 * 4;
    format!(
        "MemTotal:       {:8} kB\nMemFree:        {:8} kB\nMemAvailable:   {:8} kB\nBuffers:               0 kB\nCached:                0 kB\nSwapTotal:             0 kB\nSwapFree:              0 kB\n",
        kib(total),
        kib(free),
        kib(free)
    )
    .into_bytes()
}

fn cpuinfo() -> Vec<u8> {
    let cpu = crate::arch::cpu::features();
    let vendor = cpu
        .get_vendor_info()
        .map(|v| String::from(v.as_str()))
        .unwrap_or_default();
    let brand = cpu
        .get_processor_brand_string()
        .map(|b| String::from(b.as_str().trim()))
        .unwrap_or_default();
    let (family, model, stepping) = cpu
        .get_feature_info()
        .map(|f| (f.family_id(), f.model_id(), f.stepping_id()))
        .unwrap_or_default();
    let mhz = crate::time::tsc_hz() / 1_000_000;
    format!(
        "processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model}\nmodel name\t: {brand}\nstepping\t: {stepping}\ncpu MHz\t\t: {mhz}.000\ncpu cores\t: 1\nsiblings\t: 1\n\n"
    )
    .into_bytes()
}

fn uptime() -> Vec<u8> {
    let ns = crate::time::since_boot_ns();
    let idle = crate::sched::idle_ns();
    format!(
        "{}.{:02} {}.{:02}\n",
        ns / 1_000_000_000,
        ns / 10_000_000 % 100,
        idle / 1_000_000_000,
        idle / 10_000_000 % 100
    )
    .into_bytes()
}

fn proc() -> Arc<dyn Node> {
    let file = |ino, content: fn() -> Vec<u8>| generated(DEV_PROC, ino, 0o444, content);
    let self_dir = StaticDir::new(
        DEV_PROC,
        10,
        vec![
            (
                String::from("exe"),
                static_symlink(DEV_PROC, 11, || {
                    crate::user::running()
                        .map(|r| r.path.clone())
                        .unwrap_or_default()
                }),
            ),
            (
                String::from("maps"),
                file(12, || crate::user::with_vm(|vm| vm.maps())),
            ),
            (
                String::from("auxv"),
                file(13, || {
                    crate::user::running()
                        .map(|r| r.auxv.clone())
                        .unwrap_or_default()
                }),
            ),
        ],
    );
    let core = StaticDir::new(
        DEV_PROC,
        20,
        vec![(
            String::from("somaxconn"),
            file(21, || format!("{}\n", crate::user::SOMAXCONN).into_bytes()),
        )],
    );
    let net = StaticDir::new(
        DEV_PROC,
        22,
        vec![(String::from("core"), core as Arc<dyn Node>)],
    );
    let sys = StaticDir::new(
        DEV_PROC,
        23,
        vec![(String::from("net"), net as Arc<dyn Node>)],
    );
    StaticDir::new(
        DEV_PROC,
        1,
        vec![
            (String::from("self"), self_dir as Arc<dyn Node>),
            (String::from("meminfo"), file(2, meminfo)),
            (String::from("cpuinfo"), file(3, cpuinfo)),
            (String::from("uptime"), file(4, uptime)),
            (String::from("sys"), sys as Arc<dyn Node>),
        ],
    )
}

fn sys() -> Arc<dyn Node> {
    let online = generated(DEV_SYS, 5, 0o444, || b"0\n".to_vec());
    let cpu = StaticDir::new(
        DEV_SYS,
        4,
        vec![
            (String::from("online"), online),
            (
                String::from("possible"),
                generated(DEV_SYS, 6, 0o444, || b"0\n".to_vec()),
            ),
        ],
    );
    let system = StaticDir::new(
        DEV_SYS,
        3,
        vec![(String::from("cpu"), cpu as Arc<dyn Node>)],
    );
    let devices = StaticDir::new(
        DEV_SYS,
        2,
        vec![(String::from("system"), system as Arc<dyn Node>)],
    );
    StaticDir::new(
        DEV_SYS,
        1,
        vec![(String::from("devices"), devices as Arc<dyn Node>)],
    )
}

/// Whether `node` is a file whose bytes are stored (the boot module, a
/// tmpfs), which a mapping may be filled from; the kernel's generated
/// files (`/proc`, `/sys`) and devices are not.
pub fn holds_data(node: &Arc<dyn Node>) -> bool {
    !matches!(node.metadata().dev, DEV_PROC | DEV_DEV | DEV_SYS)
}

/// The namespace for a program: `archive` at `/`, tmpfs at `/tmp` and at
/// each of `extra_tmpfs` (`mount=` on the command line), `/dev`, `/proc`,
/// `/sys`.
pub fn namespace(archive: &'static Archive<'static>, extra_tmpfs: &[&str]) -> Vfs {
    let placeholder = |ino| StaticDir::new(DEV_ROOT, ino, Vec::new()) as Arc<dyn Node>;
    let root = Arc::new(Root {
        archive: vfs::cpio_root(archive, DEV_ROOT),
        extra: ["tmp", "proc", "dev", "sys"]
            .iter()
            .enumerate()
            .map(|(i, name)| (String::from(*name), placeholder(u64::MAX - i as u64)))
            .collect(),
    });
    let mut vfs = Vfs::new(root);
    let mounts: [(&str, Arc<dyn Node>); 4] = [
        ("/tmp", vfs::tmpfs(DEV_TMP, now_ns)),
        ("/proc", proc()),
        ("/dev", dev()),
        ("/sys", sys()),
    ];
    for (path, node) in mounts {
        if let Err(error) = vfs.mount(path, node) {
            log::error!("fs: cannot mount {path}: {error}");
        }
    }
    for (i, path) in extra_tmpfs.iter().enumerate() {
        match vfs.mount(path, vfs::tmpfs(DEV_SYS + 1 + i as u64, now_ns)) {
            Ok(()) => log::info!("fs: tmpfs at {path}"),
            Err(error) => log::error!("fs: mount={path}: {error}"),
        }
    }
    vfs
}
