//! Making a configuration bootable before QEMU starts: checking that the
//! host can run it (else SKIP), that the kernel exists, building the GRUB
//! ISO through images/mkiso.sh when it is missing or stale, and writing the
//! initrd fixture.

use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::matrix::{Boot, Config, Fixture, Requirement, VmiRom};
use crate::process;
use crate::qemu::Paths;

/// `Err(reason)` when the host cannot run a configuration at all; the
/// reason is printed with SKIP so a skipped configuration is never silent.
pub fn check_requirement(requirement: Requirement) -> Result<(), String> {
    match requirement {
        Requirement::Kvm => OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .map(drop)
            .map_err(|e| format!("KVM unavailable: cannot open /dev/kvm read-write: {e}")),
        Requirement::Tap => {
            let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
            let root = status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .and_then(|uids| uids.split_whitespace().nth(1))
                == Some("0");
            if !root {
                Err("needs root to make a tap device".to_string())
            } else if !Path::new("/dev/net/tun").exists() {
                Err("no /dev/net/tun: this machine cannot make tap devices".to_string())
            } else {
                Ok(())
            }
        }
    }
}

fn modified(path: &Path) -> io::Result<SystemTime> {
    fs::metadata(path)?.modified()
}

/// The kernel must exist before anything is built from it or booted.
pub fn check_kernel(kernel: &Path) -> Result<(), String> {
    match fs::metadata(kernel) {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(_) => Err(format!("kernel {} is not a file", kernel.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(format!(
            "kernel {} not found (build the kernel first)",
            kernel.display()
        )),
        Err(e) => Err(format!("kernel {}: {e}", kernel.display())),
    }
}

/// Whether an output must be rebuilt: it is missing, or one of its inputs
/// changed after it was made.
pub fn is_stale(output: Option<SystemTime>, inputs: &[SystemTime]) -> bool {
    match output {
        None => true,
        Some(made) => inputs.iter().any(|&input| input > made),
    }
}

/// images/mkiso.sh: beside the working directory's images/ when the rig is
/// run from the repository root, as `make` and CI do, else the copy next to
/// the rig's own sources.
pub fn mkiso_script() -> PathBuf {
    let here = Path::new("images").join("mkiso.sh");
    if here.is_file() {
        here
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../mkiso.sh")
    }
}

/// Builds `iso` from `kernel` with `cmdline` baked in.
pub fn build_iso(kernel: &Path, iso: &Path, cmdline: &str) -> Result<(), String> {
    let script = mkiso_script();
    let mut args: Vec<OsString> = vec![script.into(), kernel.into(), iso.into()];
    args.extend(cmdline.split_whitespace().map(OsString::from));
    // Through bash rather than the script's own mode bits, which a copy or
    // checkout may not have kept.
    process::run_helper("bash".as_ref(), &args)
        .map_err(|e| format!("cannot build {}: {e}", iso.display()))
}

/// Builds `iso` unless it is newer than both the kernel and the script that
/// makes it. The command line is not compared: each ISO file name belongs to
/// one command line (see `matrix::Boot::Iso`).
pub fn ensure_iso(kernel: &Path, iso: &Path, cmdline: &str) -> Result<(), String> {
    let mut inputs =
        vec![modified(kernel).map_err(|e| format!("kernel {}: {e}", kernel.display()))?];
    // A script that cannot be read makes build_iso fail with the reason.
    if let Ok(script) = modified(&mkiso_script()) {
        inputs.push(script);
    }
    if is_stale(modified(iso).ok(), &inputs) {
        build_iso(kernel, iso, cmdline)
    } else {
        Ok(())
    }
}

/// The initrd's contents: byte `i` is `i % 251`. A prime period never lines
/// up with sector or page sizes, so a kernel that reads the wrong page or
/// loses an offset sees the wrong bytes, and it can check any byte alone.
pub fn initrd_pattern(size: usize) -> Vec<u8> {
    // i % 251 < 251 always fits in a byte.
    (0..size).map(|i| (i % 251) as u8).collect()
}

/// The site the HTTP configurations serve: a page, a stylesheet, a folder
/// with its own index, and a file larger than 1 MiB of a deterministic
/// pattern (prime period, so a misplaced chunk shows).
pub fn test_site(dir: &Path) -> Result<(), String> {
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))
    };
    write(
        "index.html",
        b"<!doctype html>\n<html><head><title>sanos</title><link rel=stylesheet href=style.css></head>\n<body><h1>sanos serves</h1></body></html>\n",
    )?;
    write("style.css", b"body { font-family: sans-serif; }\n")?;
    write("docs/index.html", b"<p>docs</p>\n")?;
    write("big.bin", &initrd_pattern(1536 * 1024 + 7))?;
    Ok(())
}

/// Writes the inputs a configuration's fixture asks for.
pub fn write_fixture(fixture: Fixture, paths: &Paths) -> Result<(), String> {
    match fixture {
        Fixture::Initrd { size } => {
            let path = paths.initrd();
            fs::write(&path, initrd_pattern(size))
                .map_err(|e| format!("cannot write {}: {e}", path.display()))
        }
        // Typed while the machine runs (runner), nothing to write first.
        Fixture::SerialInput { .. } | Fixture::Services { .. } | Fixture::NetTest { .. } => Ok(()),
        Fixture::Programs | Fixture::ProgramServer { .. } => {
            let path = paths.user_image();
            if path.exists() {
                Ok(())
            } else {
                Err(format!("{} is missing: run make", path.display()))
            }
        }
        Fixture::VmiRom { rom } => match rom {
            VmiRom::Good => {
                let path = paths.good_vmi_rom();
                if path.exists() {
                    Ok(())
                } else {
                    Err(format!("{} is missing: run make", path.display()))
                }
            }
            VmiRom::Corrupt(corruption) => {
                let good = paths.good_vmi_rom();
                let good = fs::read(&good)
                    .map_err(|e| format!("cannot read {}: {e} (run make)", good.display()))?;
                let bad = crate::vmi_rom::corrupt(&good, corruption)?;
                let path = paths.vmi_rom(rom);
                fs::write(&path, bad).map_err(|e| format!("cannot write {}: {e}", path.display()))
            }
        },
        Fixture::Http { .. } => {
            let site = paths.rig_dir().join("site");
            test_site(&site)?;
            crate::cpio::pack(&site, &paths.site_image())
        }
    }
}

/// Everything a configuration needs on disk before QEMU starts. Errors here
/// are FAILs: the host can run the configuration, the inputs are broken.
pub fn prepare(config: &Config, paths: &Paths) -> Result<(), String> {
    check_kernel(&paths.kernel)?;
    let rig_dir = paths.rig_dir();
    fs::create_dir_all(&rig_dir)
        .map_err(|e| format!("cannot create {}: {e}", rig_dir.display()))?;
    if let Boot::Iso { file_name } = config.boot {
        ensure_iso(&paths.kernel, &paths.iso(file_name), config.cmdline)?;
    }
    if let Some(fixture) = config.fixture {
        write_fixture(fixture, paths)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn staleness() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let t1 = t0 + Duration::from_secs(1);
        assert!(is_stale(None, &[t0]));
        assert!(is_stale(Some(t0), &[t1]), "kernel newer than the ISO");
        assert!(!is_stale(Some(t1), &[t0]));
        assert!(!is_stale(Some(t0), &[t0]), "same second: keep the ISO");
        assert!(is_stale(Some(t1), &[t0, t1 + Duration::from_secs(1)]));
    }

    #[test]
    fn initrd_pattern_is_deterministic_with_prime_period() {
        let data = initrd_pattern(12345);
        assert_eq!(data.len(), 12345);
        assert_eq!(&data[..3], &[0, 1, 2]);
        assert_eq!(data[250], 250);
        assert_eq!(data[251], 0);
        assert_eq!(data[12344], (12344 % 251) as u8);
        assert_eq!(data, initrd_pattern(12345));
    }

    #[test]
    fn missing_kernel_says_so() {
        let err = check_kernel(Path::new("/nonexistent/sanos.elf"));
        assert!(matches!(&err, Err(e) if e.contains("not found")), "{err:?}");
        let dir = check_kernel(Path::new("/"));
        assert!(
            matches!(&dir, Err(e) if e.contains("not a file")),
            "{dir:?}"
        );
    }

    #[test]
    fn the_mkiso_script_is_found() {
        assert!(mkiso_script().is_file());
    }
}
