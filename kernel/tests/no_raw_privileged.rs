//! docs/design.md, "vmops": outside `hv/` and `vmops/`, the kernel issues no raw
//! `cli`, `sti`, `hlt`, `popf` or CR3 write: every such site goes through
//! the vmops table so the patcher can rewrite it. This test reads the
//! sources of the kernel, drivers and loader and fails on a stray.
//!
//! The one exception is the entry code (`kernel/src/boot/entry.rs`), which
//! runs before the vmops table exists.

use std::fs;
use std::path::{Path, PathBuf};

/// Instructions forbidden in asm strings.
const RAW_INSTRUCTIONS: &[&str] = &["cli", "sti", "hlt", "popf", "popfq", "popfd"];
/// Calls into the `x86_64` crate that issue the same instructions.
const RAW_CALLS: &[&str] = &[
    "interrupts::enable",
    "interrupts::disable",
    "interrupts::enable_and_hlt",
    "interrupts::without_interrupts",
    "instructions::hlt",
    "Cr3::write",
];
const ALLOWED: &[&str] = &["kernel/src/boot/entry.rs"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The double-quoted string literals on a line.
fn strings(line: &str) -> Vec<&str> {
    line.split('"').skip(1).step_by(2).collect()
}

fn strays(source: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (number, line) in source.lines().enumerate() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let in_asm = strings(code).into_iter().any(|s| {
            s.split(|c: char| !c.is_ascii_alphanumeric())
                .any(|word| RAW_INSTRUCTIONS.contains(&word))
                || s.contains("mov cr3")
        });
        let raw_call = RAW_CALLS.iter().any(|call| code.contains(call));
        if in_asm || raw_call {
            found.push((number + 1, line.trim().to_string()));
        }
    }
    found
}

#[test]
fn the_scanner_finds_what_it_should() {
    assert_eq!(strays("unsafe { asm!(\"cli\") }").len(), 1);
    assert_eq!(strays("asm!(\"push rdi\", \"popfq\")").len(), 1);
    assert_eq!(strays("asm!(\"mov cr3, {}\", in(reg) x)").len(), 1);
    assert_eq!(
        strays("x86_64::instructions::interrupts::enable();").len(),
        1
    );
    assert_eq!(strays("unsafe { Cr3::write(frame, flags) }").len(), 1);
    assert!(strays("// `cli` in a comment").is_empty());
    assert!(strays("let client = \"clicks\";").is_empty());
    assert!(strays("ops::irq_disable();").is_empty());
}

#[test]
fn no_raw_privileged_instructions_outside_hv_and_vmops() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("kernel/ has a parent");
    let mut files = Vec::new();
    for dir in ["kernel/src", "drivers/src", "loader/src"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(
        files.len() > 10,
        "found only {} source files under {}",
        files.len(),
        root.display()
    );
    let mut report = String::new();
    for file in files {
        let relative = file
            .strip_prefix(root)
            .unwrap_or(&file)
            .to_string_lossy()
            .replace('\\', "/");
        if ALLOWED.contains(&relative.as_str()) {
            continue;
        }
        let source = fs::read_to_string(&file).expect("readable source");
        for (line, text) in strays(&source) {
            report.push_str(&format!("{relative}:{line}: {text}\n"));
        }
    }
    assert!(
        report.is_empty(),
        "raw privileged instructions outside hv/ and vmops/:\n{report}"
    );
}
