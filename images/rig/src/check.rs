//! Judging a finished boot: turning the raw serial log into lines, matching
//! line patterns, parsing the kernel's closing test summary, and mapping
//! QEMU's exit status to a reason a person can act on.
//!
//! Everything here is pure, so it is tested on the host without QEMU.

use std::fmt;
use std::time::Duration;

use crate::matrix::Expect;

/// A check on one line of the serial log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// The line contains this text.
    Contains(&'static str),
    /// The line contains every one of these texts, in any order.
    AllOf(&'static [&'static str]),
    /// The whole line matches; `*` stands for any run of characters
    /// (possibly empty) and `?` for exactly one.
    Glob(&'static str),
}

impl Pattern {
    pub fn matches(&self, line: &str) -> bool {
        match self {
            Pattern::Contains(needle) => line.contains(needle),
            Pattern::AllOf(needles) => needles.iter().all(|n| line.contains(n)),
            Pattern::Glob(glob) => glob_matches(glob, line),
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Contains(needle) => write!(f, "a line containing `{needle}`"),
            Pattern::AllOf(needles) => {
                write!(f, "a line containing all of")?;
                for needle in needles.iter() {
                    write!(f, " `{needle}`")?;
                }
                Ok(())
            }
            Pattern::Glob(glob) => write!(f, "a line matching `{glob}`"),
        }
    }
}

/// Whole-string wildcard match. Backtracks only to the latest `*`, which is
/// enough for `*`/`?` globs and keeps the cost linear in practice.
fn glob_matches(glob: &str, text: &str) -> bool {
    let pattern: Vec<char> = glob.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // Position of the last `*` seen and the text position it was tried at.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    // Let the `*` swallow one more character and retry.
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// Splits a raw serial log into the lines a person would see.
///
/// GRUB drives the serial port as a VT100, so its output carries escape
/// sequences and bare carriage returns; they are removed, and `\r` counts as
/// a line break so a kernel line is never glued behind firmware output.
/// Empty lines carry nothing to check and are dropped. Bytes that are not
/// UTF-8 become U+FFFD rather than hiding the rest of the log.
pub fn log_lines(raw: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(raw);
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' | '\r' => {
                if !line.is_empty() {
                    lines.push(std::mem::take(&mut line));
                }
            }
            '\x1b' => {
                // CSI: ESC [ parameters... final byte in @..~. Any other
                // escape is ESC plus one character.
                if chars.next_if_eq(&'[').is_some() {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\t' => line.push(c),
            c if c.is_control() => {}
            c => line.push(c),
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// The kernel's closing test summary: `N passed, M failed[, K skipped]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tally {
    pub passed: u64,
    pub failed: u64,
    pub skipped: u64,
}

/// Why a closing summary does not count as a clean test run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TallyProblem {
    Failures(u64),
    RanNoTest,
}

impl fmt::Display for TallyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TallyProblem::Failures(n) => write!(f, "kernel reported {n} failed test(s)"),
            TallyProblem::RanNoTest => write!(f, "kernel ran no test (0 passed, 0 failed)"),
        }
    }
}

impl Tally {
    /// A clean run: at least one test passed and none failed.
    pub fn judge(&self) -> Result<(), TallyProblem> {
        if self.failed > 0 {
            Err(TallyProblem::Failures(self.failed))
        } else if self.passed == 0 {
            Err(TallyProblem::RanNoTest)
        } else {
            Ok(())
        }
    }
}

/// Parses a line that is exactly `N passed, M failed` or
/// `N passed, M failed, K skipped`: no leading or trailing text, single
/// spaces, decimal digits only. Anything else is `None`, so a log line that
/// merely mentions "passed" is never taken for the summary.
pub fn parse_closing_line(line: &str) -> Option<Tally> {
    fn count(field: &str, word: &str) -> Option<u64> {
        let digits = field.strip_suffix(word)?.strip_suffix(' ')?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    }
    let mut fields = line.split(", ");
    let passed = count(fields.next()?, "passed")?;
    let failed = count(fields.next()?, "failed")?;
    let skipped = match fields.next() {
        Some(field) => count(field, "skipped")?,
        None => 0,
    };
    if fields.next().is_some() {
        return None;
    }
    Some(Tally {
        passed,
        failed,
        skipped,
    })
}

/// The last closing summary in the log: a kernel that printed a partial
/// summary and then carried on is judged by what it said last.
pub fn find_closing_line(lines: &[String]) -> Option<Tally> {
    lines.iter().rev().find_map(|l| parse_closing_line(l))
}

/// How QEMU ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    /// The rig killed QEMU after this long.
    Timeout(Duration),
}

/// What QEMU's exit status `code` means, and the raw facts behind it.
fn status_meaning(code: i32) -> (String, String) {
    let debug_exit = |value: i32| format!("isa-debug-exit {value:#04x}, status {code}");
    match code {
        0 => (
            "no exit through isa-debug-exit: triple fault or hang?".to_string(),
            "status 0".to_string(),
        ),
        1 => (
            "QEMU failed: bad arguments, missing file or accelerator error (see its \
             stderr), or the kernel wrote 0x00 to isa-debug-exit"
                .to_string(),
            "status 1".to_string(),
        ),
        33 => (
            "kernel reported all tests passed".to_string(),
            debug_exit(0x10),
        ),
        35 => (
            "kernel reported failing tests".to_string(),
            debug_exit(0x11),
        ),
        37 => ("kernel panicked".to_string(), debug_exit(0x12)),
        // isa-debug-exit statuses are (value << 1) | 1, truncated to a byte.
        code if code & 1 == 1 && (0..=255).contains(&code) => (
            "kernel wrote an unknown value to isa-debug-exit".to_string(),
            debug_exit(code >> 1),
        ),
        code => (
            "QEMU exited with an unexpected status".to_string(),
            format!("status {code}"),
        ),
    }
}

/// What an exit means, for `rig run`'s closing message.
pub fn describe_exit(exit: Exit) -> String {
    match exit {
        Exit::Timeout(after) => format!("timeout after {} s", after.as_secs()),
        Exit::Signal(sig) => format!("QEMU was killed by signal {sig}"),
        Exit::Code(code) => {
            let (meaning, detail) = status_meaning(code);
            format!("{meaning} ({detail})")
        }
    }
}

/// `None` when QEMU ended the way the configuration expects, else the
/// reason for the FAIL line.
pub fn exit_problem(expected: i32, exit: Exit) -> Option<String> {
    match exit {
        Exit::Code(code) if code == expected => None,
        Exit::Code(code) => {
            let (meaning, detail) = status_meaning(code);
            Some(format!("{meaning} ({detail}, expected {expected})"))
        }
        Exit::Signal(_) | Exit::Timeout(_) => Some(describe_exit(exit)),
    }
}

/// Every reason a boot failed, empty when it passed. The log is checked even
/// when the status is already wrong: "kernel panicked" together with the
/// panic line says far more than either alone.
pub fn judge(expect: &Expect, exit: Exit, lines: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(problem) = exit_problem(expect.status, exit) {
        problems.push(problem);
    }
    for pattern in expect.forbidden {
        if let Some(line) = lines.iter().find(|l| pattern.matches(l)) {
            problems.push(format!("forbidden {pattern}: \"{}\"", shorten(line)));
        }
    }
    if expect.closing_line {
        match find_closing_line(lines) {
            None => problems.push("no closing line `N passed, M failed`".to_string()),
            Some(tally) => {
                if let Err(problem) = tally.judge() {
                    problems.push(problem.to_string());
                }
            }
        }
    }
    for pattern in expect.lines {
        if !lines.iter().any(|l| pattern.matches(l)) {
            problems.push(format!("missing {pattern}"));
        }
    }
    problems
}

/// Keeps a quoted log line from swamping the FAIL line.
fn shorten(line: &str) -> String {
    const MAX: usize = 100;
    match line.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        log_lines(text.as_bytes())
    }

    #[test]
    fn closing_line_accepts_clean_runs() {
        assert_eq!(
            parse_closing_line("3 passed, 0 failed"),
            Some(Tally {
                passed: 3,
                failed: 0,
                skipped: 0
            })
        );
        let with_skips = parse_closing_line("3 passed, 0 failed, 1 skipped");
        assert_eq!(
            with_skips,
            Some(Tally {
                passed: 3,
                failed: 0,
                skipped: 1
            })
        );
        assert_eq!(with_skips.map(|t| t.judge()), Some(Ok(())));
    }

    #[test]
    fn closing_line_with_failures_is_a_failure() {
        let tally = parse_closing_line("3 passed, 1 failed");
        assert_eq!(
            tally.map(|t| t.judge()),
            Some(Err(TallyProblem::Failures(1)))
        );
    }

    #[test]
    fn closing_line_with_no_test_ran_no_test() {
        let tally = parse_closing_line("0 passed, 0 failed");
        assert_eq!(tally.map(|t| t.judge()), Some(Err(TallyProblem::RanNoTest)));
        let skipped_only = parse_closing_line("0 passed, 0 failed, 4 skipped");
        assert_eq!(
            skipped_only.map(|t| t.judge()),
            Some(Err(TallyProblem::RanNoTest))
        );
    }

    #[test]
    fn closing_line_rejects_garbage() {
        for line in [
            "",
            "passed",
            "3 passed",
            "3 passed 0 failed",
            "3 passed,0 failed",
            "3 passed,  0 failed",
            "3  passed, 0 failed",
            " 3 passed, 0 failed",
            "3 passed, 0 failed ",
            "tests: 3 passed, 0 failed",
            "3 passed, 0 failed, 1 skipped, 2 ignored",
            "3 passed, 0 failed, skipped",
            "3 passed, 0 failed,",
            "-3 passed, 0 failed",
            "+3 passed, 0 failed",
            "3 passed, -0 failed",
            "x passed, 0 failed",
            "3 failed, 0 passed",
            "99999999999999999999999 passed, 0 failed",
        ] {
            assert_eq!(parse_closing_line(line), None, "{line:?}");
        }
    }

    #[test]
    fn last_closing_line_wins() {
        let log = lines("1 passed, 0 failed\nmore tests\n1 passed, 2 failed\nbye\n");
        assert_eq!(
            find_closing_line(&log).map(|t| t.failed),
            Some(2),
            "a later failing summary must not be hidden by an earlier clean one"
        );
        assert_eq!(find_closing_line(&lines("no summary\n")), None);
    }

    #[test]
    fn exit_statuses_map_to_reasons() {
        assert_eq!(exit_problem(33, Exit::Code(33)), None);
        assert_eq!(exit_problem(0, Exit::Code(0)), None);
        let triple = exit_problem(33, Exit::Code(0)).unwrap_or_default();
        assert!(triple.contains("no exit through isa-debug-exit: triple fault or hang?"));
        assert!(triple.ends_with("(status 0, expected 33)"), "{triple}");
        let failed = exit_problem(33, Exit::Code(35)).unwrap_or_default();
        assert!(failed.contains("failing tests"), "{failed}");
        let panicked = exit_problem(33, Exit::Code(37));
        assert_eq!(
            panicked.as_deref(),
            Some("kernel panicked (isa-debug-exit 0x12, status 37, expected 33)")
        );
        assert_eq!(
            describe_exit(Exit::Code(33)),
            "kernel reported all tests passed (isa-debug-exit 0x10, status 33)"
        );
        assert!(exit_problem(33, Exit::Code(1))
            .unwrap_or_default()
            .contains("QEMU failed"));
        assert!(exit_problem(33, Exit::Code(39))
            .unwrap_or_default()
            .contains("0x13"));
        assert!(exit_problem(33, Exit::Code(2))
            .unwrap_or_default()
            .contains("unexpected status (status 2"));
        assert!(exit_problem(33, Exit::Signal(9))
            .unwrap_or_default()
            .contains("signal 9"));
    }

    #[test]
    fn timeout_is_reported_in_seconds() {
        assert_eq!(
            exit_problem(33, Exit::Timeout(Duration::from_millis(60_040))),
            Some("timeout after 60 s".to_string())
        );
    }

    #[test]
    fn contains_and_all_of_patterns() {
        let p = Pattern::Contains("unknown option 'bogus'");
        assert!(p.matches("cmdline: unknown option 'bogus' ignored"));
        assert!(!p.matches("cmdline: unknown option \"bogus\""));
        let p = Pattern::AllOf(&["loglevel", "loud"]);
        assert!(p.matches("cmdline: loglevel: bad value 'loud'"));
        assert!(p.matches("bad value 'loud' for loglevel"));
        assert!(!p.matches("loglevel set to info"));
    }

    #[test]
    fn glob_pattern_matches_whole_lines() {
        let banner = Pattern::Glob("sanos * MiB, boot * us*");
        assert!(banner.matches("sanos 0.1.0: 127 MiB, boot 5321 us"));
        assert!(banner.matches("sanos 0.1.0 (127 MiB, boot 12 us)"));
        assert!(!banner.matches("[log] sanos 0.1.0: 127 MiB, boot 5321 us"));
        assert!(!banner.matches("sanos 0.1.0: 127 MiB, boot 5321 ms"));
        assert!(!banner.matches("sanos 0.1.0: 127 MB, boot 5321 us"));
        assert!(glob_matches("", ""));
        assert!(glob_matches("*", ""));
        assert!(glob_matches("a?c", "abc"));
        assert!(!glob_matches("a?c", "ac"));
        assert!(glob_matches("*a*b*", "xxaxxbxx"));
        assert!(!glob_matches("*a*b", "xxaxxbxxc"));
        assert!(glob_matches("é*ü", "éaü"));
    }

    #[test]
    fn log_lines_strip_terminal_noise() {
        let raw = b"\x1b[2J\x1b[HGRUB loading.\r\n\x1b[0mBooting `sanos'\r\r\n\nsanos 1: 2 MiB, boot 3 us\r\n\x07tail";
        assert_eq!(
            log_lines(raw),
            [
                "GRUB loading.",
                "Booting `sanos'",
                "sanos 1: 2 MiB, boot 3 us",
                "tail"
            ]
        );
        // A kernel line overwriting firmware output after a bare CR.
        assert_eq!(lines("junk\r1 passed, 0 failed\n")[1], "1 passed, 0 failed");
        assert_eq!(log_lines(b"a\xffb\n"), ["a\u{fffd}b"]);
    }

    const EXPECT: Expect = Expect {
        status: 33,
        closing_line: true,
        lines: &[Pattern::Glob("sanos * MiB, boot * us*")],
        forbidden: &[Pattern::Contains("panic")],
    };

    #[test]
    fn judge_passes_a_clean_boot() {
        let log = lines("sanos 0.1.0: 127 MiB, boot 10 us\n5 passed, 0 failed\n");
        assert_eq!(judge(&EXPECT, Exit::Code(33), &log), Vec::<String>::new());
    }

    #[test]
    fn judge_checks_the_log_even_when_the_status_is_wrong() {
        let log = lines("sanos 0.1.0: 127 MiB, boot 10 us\npanicked at src/mm.rs:3:4\n");
        let problems = judge(&EXPECT, Exit::Code(37), &log);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("kernel panicked"));
        assert!(problems[1].contains("panicked at src/mm.rs"));
        assert!(problems[2].contains("no closing line"));
    }

    #[test]
    fn judge_reports_missing_lines_and_bad_tallies() {
        let log = lines("0 passed, 0 failed\n");
        let problems = judge(&EXPECT, Exit::Code(33), &log);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("ran no test"));
        assert!(problems[1].contains("missing a line matching `sanos * MiB"));
    }

    #[test]
    fn long_lines_are_shortened() {
        let long = "x".repeat(300);
        assert_eq!(shorten(&long).len(), 103);
        assert_eq!(shorten("short"), "short");
    }
}
