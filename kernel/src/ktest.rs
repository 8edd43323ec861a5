//! In-kernel tests: the registry that `#[ktest]` fills, the runner behind
//! the `test` command-line option, and the assertion macros.
//!
//! A test is `fn() -> TestResult`; `kassert!`/`kassert_eq!` return a
//! [`TestFailure`] naming the file and line. A test that panics ends the
//! run through the panic path, which exits with the panic status. The run
//! closes with `N passed, N failed` and leaves QEMU through
//! `isa-debug-exit`: 0x10 when everything passed, 0x11 otherwise (QEMU exit
//! status 33 and 35; a panic gives 0x12, status 37).

use alloc::string::String;
use core::sync::atomic::{AtomicBool, Ordering};

pub use sanos_macros::ktest;

/// Exit codes for `isa-debug-exit`.
pub const EXIT_PASSED: u8 = 0x10;
pub const EXIT_FAILED: u8 = 0x11;
pub const EXIT_PANIC: u8 = 0x12;

/// A registered kernel test (see `sanos_macros::ktest`).
#[repr(C)]
pub struct KTest {
    pub name: &'static str,
    pub func: fn() -> TestResult,
}

/// Why a test failed, and where.
pub struct TestFailure {
    pub message: String,
    pub file: &'static str,
    pub line: u32,
}

pub type TestResult = Result<(), TestFailure>;

static TEST_MODE: AtomicBool = AtomicBool::new(false);

/// Whether the kernel runs in test mode (the panic path then exits QEMU
/// with the panic status instead of halting).
pub fn test_mode() -> bool {
    TEST_MODE.load(Ordering::Relaxed)
}

/// Enters test mode.
pub fn set_test_mode() {
    TEST_MODE.store(true, Ordering::Relaxed);
}

unsafe extern "C" {
    static __ktests_start: u8;
    static __ktests_end: u8;
}

/// Every registered test, in link order.
pub fn registered() -> &'static [KTest] {
    let start = (&raw const __ktests_start).cast::<KTest>();
    let end = (&raw const __ktests_end).cast::<KTest>();
    let count = (end as usize - start as usize) / core::mem::size_of::<KTest>();
    // SAFETY: the linker script brackets the .ktests section with these
    // symbols; the section holds only `KTest` statics emitted by #[ktest]
    // (KEEP, 8-byte aligned, so no padding between records), and it is
    // read-only for the kernel's life.
    unsafe { core::slice::from_raw_parts(start, count) }
}

/// Why the running test does not apply here, if it said so.
static NOT_APPLICABLE: spin::Mutex<Option<&'static str>> = spin::Mutex::new(None);

/// Ends the calling test as skipped, for a check that cannot apply on
/// this platform (say why: the reason is printed with the result).
pub fn not_applicable(reason: &'static str) -> TestResult {
    *NOT_APPLICABLE.lock() = Some(reason);
    Ok(())
}

/// Runs the tests whose name contains `filter` (all when it is empty),
/// except those whose name contains `skip` (reported as skipped), prints
/// each result and the closing line, and returns (passed, failed).
pub fn run(filter: &str, skip: Option<&str>) -> (usize, usize) {
    let tests = registered();
    let selected = tests.iter().filter(|test| test.name.contains(filter));
    let is_skipped = |test: &KTest| skip.is_some_and(|skip| test.name.contains(skip));
    crate::kprintln!(
        "ktest: running {} of {} kernel tests{}",
        selected.clone().count(),
        tests.len(),
        if filter.is_empty() {
            String::new()
        } else {
            alloc::format!(" matching '{filter}'")
        }
    );
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for test in selected {
        if is_skipped(test) {
            skipped += 1;
            crate::kprintln!(
                "test {} ... skipped (test.skip on the command line)",
                test.name
            );
            continue;
        }
        let start = crate::time::since_boot_ns();
        *NOT_APPLICABLE.lock() = None;
        let result = (test.func)();
        let us = (crate::time::since_boot_ns() - start) / 1000;
        let not_applicable = NOT_APPLICABLE.lock().take();
        match result {
            Ok(()) if not_applicable.is_some() => {
                skipped += 1;
                crate::kprintln!(
                    "test {} ... skipped ({})",
                    test.name,
                    not_applicable.unwrap_or_default()
                );
            }
            Ok(()) => {
                passed += 1;
                crate::kprintln!("test {} ... ok ({us} us)", test.name);
            }
            Err(failure) => {
                failed += 1;
                crate::kprintln!(
                    "test {} ... FAILED at {}:{}: {}",
                    test.name,
                    failure.file,
                    failure.line,
                    failure.message
                );
            }
        }
    }
    if skipped > 0 {
        crate::kprintln!("{passed} passed, {failed} failed, {skipped} skipped");
    } else {
        crate::kprintln!("{passed} passed, {failed} failed");
    }
    (passed, failed)
}

/// Fails the current test with a formatted message unless `cond` holds.
#[macro_export]
macro_rules! kassert {
    ($cond:expr) => {
        $crate::kassert!($cond, "assertion failed: {}", stringify!($cond))
    };
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err($crate::ktest::TestFailure {
                message: alloc::format!($($fmt)+),
                file: file!(),
                line: line!(),
            });
        }
    };
}

/// Fails the current test unless `left == right`, showing both.
#[macro_export]
macro_rules! kassert_eq {
    ($left:expr, $right:expr) => {{
        let (left, right) = (&$left, &$right);
        $crate::kassert!(
            *left == *right,
            "{} == {} failed: left {:?}, right {:?}",
            stringify!($left),
            stringify!($right),
            left,
            right
        );
    }};
}
