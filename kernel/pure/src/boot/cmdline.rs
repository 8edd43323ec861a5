//! The kernel command line, parsed into typed [`Options`]. It arrives from
//! the Multiboot2 boot command line tag (Multiboot2 spec section 3.6.2),
//! PVH's `cmdline_paddr` (xen/include/public/hvm/start_info.h) or the Xen
//! PV start info's `cmd_line` (xen/include/public/xen.h).
//!
//! Syntax follows Linux's (Documentation/admin-guide/kernel-parameters.rst):
//! whitespace-separated `key` or `key=value` words, a value may be wrapped
//! in double quotes to hold spaces, and a lone `--` ends the kernel's
//! options; the rest of the line is the application's. Boot loaders that
//! prepend the kernel's file name leave a first word starting with `/`,
//! which is skipped.
//!
//! Parsing never fails: a bad command line must not stop the boot, so every
//! problem is reported through a callback and the setting keeps its value.
//! Values are slices of the line itself, because this runs before the heap.

use core::fmt;
use log::LevelFilter;
use vmops::BackendId;
pub use vmops::Mode as VmopsMode;

/// Which kernel self-tests to run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TestSelection<'a> {
    /// `test`: every test.
    All,
    /// `test=<substring>`: the tests whose name contains the substring.
    Matching(&'a str),
}

impl TestSelection<'_> {
    pub fn selects(&self, test_name: &str) -> bool {
        match self {
            TestSelection::All => true,
            TestSelection::Matching(part) => test_name.contains(part),
        }
    }
}

/// Everything the command line can set.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Options<'a> {
    pub loglevel: LevelFilter,
    pub test: Option<TestSelection<'a>>,
    /// `crash=<kind>`: fail on purpose once booted, to exercise the
    /// kernel's failure reports (like Linux's lkdtm).
    pub crash: Option<CrashKind>,
    /// `test.skip=<substring>`: leave out (and report as skipped) the
    /// kernel tests whose name contains it.
    pub test_skip: Option<&'a str>,
    /// `test.wait`: after the tests, keep running until the platform asks
    /// for a shutdown (`xl shutdown`), instead of exiting at once.
    pub test_wait: bool,
    /// `bench`: run the in-kernel micro-benchmarks and exit.
    pub bench: bool,
    /// `vmops=eager|lazy|off`: how call sites are patched.
    pub vmops_mode: VmopsMode,
    /// `vmops.backend=<name>`: force a backend (for testing); the kernel
    /// refuses one the platform cannot support.
    pub vmops_backend: Option<BackendId>,
    /// Everything after a lone `--`, trimmed; empty if there is none.
    pub app_args: &'a str,
}

impl Options<'_> {
    pub const DEFAULT: Options<'static> = Options {
        loglevel: LevelFilter::Info,
        test: None,
        crash: None,
        test_skip: None,
        test_wait: false,
        bench: false,
        vmops_mode: VmopsMode::Eager,
        vmops_backend: None,
        app_args: "",
    };
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options::DEFAULT
    }
}

/// A deliberate failure, chosen by `crash=`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CrashKind {
    /// `crash=panic`: a Rust panic.
    Panic,
    /// `crash=stack-overflow`: unbounded recursion into the guard page.
    StackOverflow,
    /// `crash=page-fault`: a write to an unmapped kernel address.
    PageFault,
}

const VMOPS_MODES: [VmopsMode; 3] = [VmopsMode::Eager, VmopsMode::Lazy, VmopsMode::Off];

const CRASH_KINDS: [(&str, CrashKind); 3] = [
    ("panic", CrashKind::Panic),
    ("stack-overflow", CrashKind::StackOverflow),
    ("page-fault", CrashKind::PageFault),
];

/// What a setting fell back to after a bad value.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kept {
    /// Nothing earlier on the line set the option.
    Default,
    /// An earlier occurrence of the option set it and still applies.
    Earlier,
}

impl fmt::Display for Kept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kept::Default => "the default is kept",
            Kept::Earlier => "the earlier value is kept",
        })
    }
}

/// A problem found while parsing; parsing carried on regardless.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CmdlineDiag<'a> {
    UnknownOption {
        name: &'a str,
    },
    /// `=value` with nothing before the `=`.
    MissingName {
        word: &'a str,
    },
    InvalidValue {
        option: &'static str,
        value: &'a str,
        expected: &'static str,
        kept: Kept,
    },
    MissingValue {
        option: &'static str,
        kept: Kept,
    },
    /// A value given to an option that takes none; the option is ignored.
    UnexpectedValue {
        option: &'static str,
        value: &'a str,
    },
    /// The option appeared again; the last valid occurrence wins.
    Duplicate {
        option: &'static str,
    },
    /// A word whose quote never closes. It is dropped and parsing resumes
    /// after the first space following the quote, so one typo costs one
    /// option rather than the rest of the line.
    UnterminatedQuote {
        word: &'a str,
    },
}

impl fmt::Display for CmdlineDiag<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmdlineDiag::UnknownOption { name } => {
                write!(f, "cmdline: unknown option '{name}' ignored")
            }
            CmdlineDiag::MissingName { word } => {
                write!(f, "cmdline: '{word}' has no option name, ignored")
            }
            CmdlineDiag::InvalidValue {
                option,
                value,
                expected,
                kept,
            } => write!(
                f,
                "cmdline: bad value '{value}' for option '{option}' (expected {expected}); {kept}"
            ),
            CmdlineDiag::MissingValue { option, kept } => {
                write!(f, "cmdline: option '{option}' needs a value; {kept}")
            }
            CmdlineDiag::UnexpectedValue { option, value } => write!(
                f,
                "cmdline: option '{option}' takes no value, '{option}={value}' ignored"
            ),
            CmdlineDiag::Duplicate { option } => write!(
                f,
                "cmdline: option '{option}' given more than once, the last one wins"
            ),
            CmdlineDiag::UnterminatedQuote { word } => {
                write!(f, "cmdline: unterminated quote in '{word}', ignored")
            }
        }
    }
}

/// Why a handler rejected the value it was given.
enum ValueError {
    Missing,
    Unexpected,
    Invalid { expected: &'static str },
}

/// Applies one option's value (`None` for a bare `key`) to the options.
type Apply = for<'a> fn(&mut Options<'a>, Option<&'a str>) -> Result<(), ValueError>;

struct OptionSpec {
    name: &'static str,
    apply: Apply,
}

/// Every option the kernel knows: adding one is one entry and a handler.
const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        name: "loglevel",
        apply: apply_loglevel,
    },
    OptionSpec {
        name: "quiet",
        apply: apply_quiet,
    },
    OptionSpec {
        name: "test",
        apply: apply_test,
    },
    OptionSpec {
        name: "crash",
        apply: apply_crash,
    },
    OptionSpec {
        name: "vmops",
        apply: apply_vmops,
    },
    OptionSpec {
        name: "bench",
        apply: apply_bench,
    },
    OptionSpec {
        name: "test.skip",
        apply: apply_test_skip,
    },
    OptionSpec {
        name: "test.wait",
        apply: apply_test_wait,
    },
    OptionSpec {
        name: "vmops.backend",
        apply: apply_vmops_backend,
    },
];

// Which options have been seen is tracked in a u64, one bit per entry.
const _: () = assert!(OPTIONS.len() <= u64::BITS as usize);

/// Index is the numeric spelling, as Linux's `loglevel=` takes numbers too.
const LEVELS: [(&str, LevelFilter); 6] = [
    ("off", LevelFilter::Off),
    ("error", LevelFilter::Error),
    ("warn", LevelFilter::Warn),
    ("info", LevelFilter::Info),
    ("debug", LevelFilter::Debug),
    ("trace", LevelFilter::Trace),
];

fn apply_loglevel<'a>(options: &mut Options<'a>, value: Option<&'a str>) -> Result<(), ValueError> {
    let value = required(value)?;
    let level = LEVELS
        .iter()
        .enumerate()
        .find(|(number, (name, _))| {
            value.eq_ignore_ascii_case(name) || value.as_bytes() == [b'0' + *number as u8]
        })
        .map(|(_, &(_, level))| level)
        .ok_or(ValueError::Invalid {
            expected: "off|error|warn|info|debug|trace or 0-5",
        })?;
    options.loglevel = level;
    Ok(())
}

fn apply_quiet<'a>(options: &mut Options<'a>, value: Option<&'a str>) -> Result<(), ValueError> {
    flag(value)?;
    options.loglevel = LevelFilter::Warn;
    Ok(())
}

fn apply_test<'a>(options: &mut Options<'a>, value: Option<&'a str>) -> Result<(), ValueError> {
    options.test = Some(match value {
        None => TestSelection::All,
        Some(part) => TestSelection::Matching(required(Some(part))?),
    });
    Ok(())
}

fn apply_test_skip<'a>(
    options: &mut Options<'a>,
    value: Option<&'a str>,
) -> Result<(), ValueError> {
    options.test_skip = Some(required(value)?);
    Ok(())
}

fn apply_test_wait<'a>(
    options: &mut Options<'a>,
    value: Option<&'a str>,
) -> Result<(), ValueError> {
    flag(value)?;
    options.test_wait = true;
    Ok(())
}

fn apply_bench<'a>(options: &mut Options<'a>, value: Option<&'a str>) -> Result<(), ValueError> {
    flag(value)?;
    options.bench = true;
    Ok(())
}

fn apply_vmops<'a>(options: &mut Options<'a>, value: Option<&'a str>) -> Result<(), ValueError> {
    let value = required(value)?;
    options.vmops_mode = VMOPS_MODES
        .into_iter()
        .find(|mode| mode.name() == value)
        .ok_or(ValueError::Invalid {
            expected: "eager|lazy|off",
        })?;
    Ok(())
}

fn apply_vmops_backend<'a>(
    options: &mut Options<'a>,
    value: Option<&'a str>,
) -> Result<(), ValueError> {
    let value = required(value)?;
    options.vmops_backend = Some(BackendId::from_name(value).ok_or(ValueError::Invalid {
        expected: "native|kvm|xen-pvh|xen-pv",
    })?);
    Ok(())
}

fn apply_crash<'a>(options: &mut Options<'a>, value: Option<&'a str>) -> Result<(), ValueError> {
    let value = required(value)?;
    let kind = CRASH_KINDS
        .iter()
        .find(|(name, _)| *name == value)
        .map(|&(_, kind)| kind)
        .ok_or(ValueError::Invalid {
            expected: "panic|stack-overflow|page-fault",
        })?;
    options.crash = Some(kind);
    Ok(())
}

/// An empty value (`key=` or `key=""`) counts as missing.
fn required(value: Option<&str>) -> Result<&str, ValueError> {
    value
        .filter(|value| !value.is_empty())
        .ok_or(ValueError::Missing)
}

fn flag(value: Option<&str>) -> Result<(), ValueError> {
    match value {
        None => Ok(()),
        Some(_) => Err(ValueError::Unexpected),
    }
}

/// Parses `line`, reporting each problem through `report` and carrying on.
pub fn parse<'a>(line: &'a str, mut report: impl FnMut(CmdlineDiag<'a>)) -> Options<'a> {
    let mut options = Options::DEFAULT;
    let mut seen: u64 = 0;
    let mut applied: u64 = 0;
    let mut words = Words { line, position: 0 };
    let mut first = true;
    while let Some(word) = words.next() {
        let is_first = core::mem::replace(&mut first, false);
        let text = match word {
            Word::Text(text) => text,
            Word::Unterminated(text) => {
                report(CmdlineDiag::UnterminatedQuote { word: text });
                continue;
            }
        };
        if text == "--" {
            options.app_args = line[words.position..].trim_matches(is_space);
            break;
        }
        if is_first && text.starts_with('/') {
            continue;
        }

        let (name, value) = match text.split_once('=') {
            Some((name, value)) => (name, Some(unquote(value))),
            None => (text, None),
        };
        if name.is_empty() {
            report(CmdlineDiag::MissingName { word: text });
            continue;
        }
        let Some((index, spec)) = OPTIONS.iter().enumerate().find(|(_, s)| s.name == name) else {
            report(CmdlineDiag::UnknownOption { name });
            continue;
        };
        let bit = 1u64 << index;
        if seen & bit != 0 {
            report(CmdlineDiag::Duplicate { option: spec.name });
        }
        seen |= bit;

        let kept = if applied & bit != 0 {
            Kept::Earlier
        } else {
            Kept::Default
        };
        let option = spec.name;
        match (spec.apply)(&mut options, value) {
            Ok(()) => applied |= bit,
            Err(ValueError::Missing) => report(CmdlineDiag::MissingValue { option, kept }),
            Err(ValueError::Unexpected) => report(CmdlineDiag::UnexpectedValue {
                option,
                // Only a `key=value` word reaches here with a value.
                value: value.unwrap_or_default(),
            }),
            Err(ValueError::Invalid { expected }) => report(CmdlineDiag::InvalidValue {
                option,
                value: value.unwrap_or_default(),
                expected,
                kept,
            }),
        }
    }
    options
}

/// Boot loaders pass ASCII; Unicode spaces inside a value are content.
fn is_space(c: char) -> bool {
    c.is_ascii_whitespace()
}

/// Strips one pair of quotes wrapping the whole value. Quotes anywhere
/// else only group words and stay in the text: taking them out would mean
/// copying, and nothing here has anywhere to copy to.
fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|inner| inner.strip_suffix('"'))
        .unwrap_or(value)
}

enum Word<'a> {
    Text(&'a str),
    Unterminated(&'a str),
}

/// Splits the line at unquoted ASCII whitespace. The delimiters are ASCII,
/// so byte offsets found here always fall on UTF-8 character boundaries.
struct Words<'a> {
    line: &'a str,
    /// Byte offset where the next word search starts.
    position: usize,
}

impl<'a> Iterator for Words<'a> {
    type Item = Word<'a>;

    fn next(&mut self) -> Option<Word<'a>> {
        let bytes = self.line.as_bytes();
        let start = self.position
            + bytes[self.position..]
                .iter()
                .position(|b| !b.is_ascii_whitespace())?;
        let mut open_quote = None;
        let mut end = start;
        while let Some(&byte) = bytes.get(end) {
            match byte {
                b'"' if open_quote.is_some() => open_quote = None,
                b'"' => open_quote = Some(end),
                byte if byte.is_ascii_whitespace() && open_quote.is_none() => break,
                _ => {}
            }
            end += 1;
        }
        if let Some(quote) = open_quote {
            let resume = bytes[quote..]
                .iter()
                .position(|b| b.is_ascii_whitespace())
                .map_or(bytes.len(), |offset| quote + offset);
            self.position = resume;
            return Some(Word::Unterminated(&self.line[start..resume]));
        }
        self.position = end;
        Some(Word::Text(&self.line[start..end]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::{String, ToString};
    use std::vec::Vec;

    fn parse_all(line: &str) -> (Options<'_>, Vec<CmdlineDiag<'_>>) {
        let mut diags = Vec::new();
        let options = parse(line, |diag| diags.push(diag));
        (options, diags)
    }

    fn messages(line: &str) -> Vec<String> {
        parse_all(line).1.iter().map(|d| d.to_string()).collect()
    }

    fn clean(line: &str) -> Options<'_> {
        let (options, diags) = parse_all(line);
        assert_eq!(diags, [], "unexpected diagnostics for {line:?}");
        options
    }

    #[test]
    fn empty_and_blank_lines_give_defaults() {
        assert_eq!(clean(""), Options::DEFAULT);
        assert_eq!(clean(" \t\r\n  "), Options::DEFAULT);
        assert_eq!(Options::default().loglevel, LevelFilter::Info);
    }

    #[test]
    fn loglevel_names_and_numbers() {
        for (value, level) in [
            ("off", LevelFilter::Off),
            ("ERROR", LevelFilter::Error),
            ("Warn", LevelFilter::Warn),
            ("info", LevelFilter::Info),
            ("debug", LevelFilter::Debug),
            ("TRACE", LevelFilter::Trace),
            ("0", LevelFilter::Off),
            ("1", LevelFilter::Error),
            ("2", LevelFilter::Warn),
            ("3", LevelFilter::Info),
            ("4", LevelFilter::Debug),
            ("5", LevelFilter::Trace),
            ("\"debug\"", LevelFilter::Debug),
        ] {
            let line = std::format!("loglevel={value}");
            assert_eq!(clean(&line).loglevel, level, "{line}");
        }
    }

    #[test]
    fn vmops_mode_and_backend() {
        assert_eq!(clean("").vmops_mode, VmopsMode::Eager);
        assert_eq!(clean("vmops=lazy").vmops_mode, VmopsMode::Lazy);
        assert_eq!(clean("vmops=off").vmops_mode, VmopsMode::Off);
        assert_eq!(clean("vmops=eager").vmops_mode, VmopsMode::Eager);
        assert_eq!(
            clean("vmops.backend=kvm").vmops_backend,
            Some(BackendId::Kvm)
        );
        assert_eq!(
            clean("vmops.backend=native").vmops_backend,
            Some(BackendId::Native)
        );
        let (options, diags) = parse_all("vmops=fast vmops.backend=vmware");
        assert_eq!(options.vmops_mode, VmopsMode::Eager);
        assert_eq!(options.vmops_backend, None);
        assert_eq!(
            messages("vmops=fast"),
            ["cmdline: bad value 'fast' for option 'vmops' (expected eager|lazy|off); the default is kept"]
        );
        assert_eq!(diags.len(), 2);
    }

    #[test]
    fn test_skip_needs_a_value() {
        assert_eq!(clean("test test.skip=fpu").test_skip, Some("fpu"));
        assert!(clean("test test.wait").test_wait);
        let (options, diags) = parse_all("test.skip");
        assert_eq!(options.test_skip, None);
        assert_eq!(diags.len(), 1);
    }

    #[test]
    fn bench_is_a_flag() {
        assert!(clean("bench").bench);
        assert!(!clean("").bench);
        let (options, diags) = parse_all("bench=1");
        assert!(!options.bench);
        assert_eq!(diags.len(), 1);
    }

    #[test]
    fn crash_kinds() {
        assert_eq!(clean("crash=panic").crash, Some(CrashKind::Panic));
        assert_eq!(
            clean("crash=stack-overflow").crash,
            Some(CrashKind::StackOverflow)
        );
        assert_eq!(clean("crash=page-fault").crash, Some(CrashKind::PageFault));
        let (options, diags) = parse_all("crash=reboot");
        assert_eq!(options.crash, None);
        assert_eq!(
            diags,
            [CmdlineDiag::InvalidValue {
                option: "crash",
                value: "reboot",
                expected: "panic|stack-overflow|page-fault",
                kept: Kept::Default,
            }]
        );
        assert_eq!(parse_all("crash").0.crash, None);
    }

    #[test]
    fn bad_loglevel_keeps_default() {
        let (options, diags) = parse_all("loglevel=6 loglevel=loud loglevel=");
        assert_eq!(options.loglevel, LevelFilter::Info);
        assert_eq!(
            diags[0],
            CmdlineDiag::InvalidValue {
                option: "loglevel",
                value: "6",
                expected: "off|error|warn|info|debug|trace or 0-5",
                kept: Kept::Default,
            }
        );
        assert_eq!(
            messages("loglevel=loud"),
            ["cmdline: bad value 'loud' for option 'loglevel' (expected off|error|warn|info|debug|trace or 0-5); the default is kept"]
        );
        assert_eq!(
            messages("loglevel"),
            ["cmdline: option 'loglevel' needs a value; the default is kept"]
        );
        assert_eq!(
            parse_all("loglevel=\"\"").1,
            [CmdlineDiag::MissingValue {
                option: "loglevel",
                kept: Kept::Default
            }]
        );
    }

    #[test]
    fn quiet_is_warn_and_takes_no_value() {
        assert_eq!(clean("quiet").loglevel, LevelFilter::Warn);
        assert_eq!(clean("quiet loglevel=debug").loglevel, LevelFilter::Debug);
        let (options, diags) = parse_all("quiet=0");
        assert_eq!(options.loglevel, LevelFilter::Info);
        assert_eq!(
            diags,
            [CmdlineDiag::UnexpectedValue {
                option: "quiet",
                value: "0"
            }]
        );
        assert_eq!(
            diags[0].to_string(),
            "cmdline: option 'quiet' takes no value, 'quiet=0' ignored"
        );
    }

    #[test]
    fn test_selection() {
        assert_eq!(clean("").test, None);
        let all = clean("test").test.unwrap();
        assert_eq!(all, TestSelection::All);
        assert!(all.selects("frames::alloc"));
        let some = clean("test=frames").test.unwrap();
        assert_eq!(some, TestSelection::Matching("frames"));
        assert!(some.selects("kernel::frames::alloc"));
        assert!(!some.selects("memmap::reserve"));
        let (options, diags) = parse_all("test=");
        assert_eq!(options.test, None);
        assert_eq!(
            diags,
            [CmdlineDiag::MissingValue {
                option: "test",
                kept: Kept::Default
            }]
        );
    }

    #[test]
    fn unknown_and_nameless_words_are_reported() {
        let (options, diags) = parse_all("bogus loglevel=debug xen.evtchn=fifo =x");
        assert_eq!(options.loglevel, LevelFilter::Debug);
        assert_eq!(
            diags,
            [
                CmdlineDiag::UnknownOption { name: "bogus" },
                CmdlineDiag::UnknownOption { name: "xen.evtchn" },
                CmdlineDiag::MissingName { word: "=x" },
            ]
        );
        assert_eq!(
            diags[0].to_string(),
            "cmdline: unknown option 'bogus' ignored"
        );
        assert_eq!(
            diags[2].to_string(),
            "cmdline: '=x' has no option name, ignored"
        );
        // Option names are case-sensitive, as in Linux.
        assert_eq!(
            parse_all("Quiet").1,
            [CmdlineDiag::UnknownOption { name: "Quiet" }]
        );
    }

    #[test]
    fn duplicates_last_valid_wins() {
        let (options, diags) = parse_all("loglevel=debug loglevel=error");
        assert_eq!(options.loglevel, LevelFilter::Error);
        assert_eq!(diags, [CmdlineDiag::Duplicate { option: "loglevel" }]);
        assert_eq!(
            diags[0].to_string(),
            "cmdline: option 'loglevel' given more than once, the last one wins"
        );

        let (options, diags) = parse_all("loglevel=debug loglevel=bad");
        assert_eq!(options.loglevel, LevelFilter::Debug);
        assert_eq!(
            diags[1],
            CmdlineDiag::InvalidValue {
                option: "loglevel",
                value: "bad",
                expected: "off|error|warn|info|debug|trace or 0-5",
                kept: Kept::Earlier,
            }
        );
        assert!(diags[1].to_string().ends_with("the earlier value is kept"));
    }

    #[test]
    fn app_args_after_double_dash() {
        let options = clean("loglevel=warn -- /bin/app  -v --  x=1 ");
        assert_eq!(options.loglevel, LevelFilter::Warn);
        assert_eq!(options.app_args, "/bin/app  -v --  x=1");
        // Words after `--` are not the kernel's, even if they look like it.
        assert_eq!(clean("-- quiet bogus").loglevel, LevelFilter::Info);
        assert_eq!(clean("--").app_args, "");
        assert_eq!(clean("quiet --").app_args, "");
        // Only a lone `--` counts.
        assert_eq!(
            parse_all("--x").1,
            [CmdlineDiag::UnknownOption { name: "--x" }]
        );
        assert_eq!(
            parse_all("\"--\" quiet").1,
            [CmdlineDiag::UnknownOption { name: "\"--\"" }]
        );
    }

    #[test]
    fn quoted_values_hold_spaces() {
        let options = clean("test=\"page fault\" quiet");
        assert_eq!(options.test, Some(TestSelection::Matching("page fault")));
        assert_eq!(options.loglevel, LevelFilter::Warn);
        // Quotes that do not wrap the whole value stay in it.
        assert_eq!(
            clean("test=a\"b c\"").test,
            Some(TestSelection::Matching("a\"b c\""))
        );
        assert_eq!(
            clean("test=\"a\"\"b\"").test,
            Some(TestSelection::Matching("a\"\"b"))
        );
    }

    #[test]
    fn unterminated_quote_costs_one_word() {
        let (options, diags) = parse_all("test=\"page fault loglevel=debug");
        assert_eq!(options.test, None);
        assert_eq!(options.loglevel, LevelFilter::Debug);
        assert_eq!(
            diags,
            [
                CmdlineDiag::UnterminatedQuote {
                    word: "test=\"page"
                },
                CmdlineDiag::UnknownOption { name: "fault" },
            ]
        );
        assert_eq!(
            diags[0].to_string(),
            "cmdline: unterminated quote in 'test=\"page', ignored"
        );
        assert_eq!(
            parse_all("quiet test=\"").1,
            [CmdlineDiag::UnterminatedQuote { word: "test=\"" }]
        );
    }

    #[test]
    fn leading_path_is_skipped() {
        assert_eq!(clean("/boot/sanos quiet").loglevel, LevelFilter::Warn);
        assert_eq!(clean("  /boot/sanos").loglevel, LevelFilter::Info);
        // Only the first word can be the kernel's file name.
        assert_eq!(
            parse_all("quiet /boot/sanos").1,
            [CmdlineDiag::UnknownOption {
                name: "/boot/sanos"
            }]
        );
    }

    #[test]
    fn unicode_in_values() {
        let options = clean("test=\"défaut de page\" -- ünïcödé ✓");
        assert_eq!(
            options.test,
            Some(TestSelection::Matching("défaut de page"))
        );
        assert_eq!(options.app_args, "ünïcödé ✓");
        // A non-breaking space is content, not a separator.
        assert_eq!(
            clean("test=a\u{a0}b").test,
            Some(TestSelection::Matching("a\u{a0}b"))
        );
        assert_eq!(
            parse_all("loglevel=dé").1[0].to_string(),
            "cmdline: bad value 'dé' for option 'loglevel' (expected off|error|warn|info|debug|trace or 0-5); the default is kept"
        );
        assert_eq!(
            parse_all("ñ=\"ü").1,
            [CmdlineDiag::UnterminatedQuote { word: "ñ=\"ü" }]
        );
    }
}
