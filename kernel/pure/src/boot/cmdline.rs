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
//!
//! The network appliance's options:
//!
//! - `ip=<address>/<prefix>[,<gateway>[,<dns>]]`: a static IPv4
//!   configuration ([`StaticIp`]), dotted quads and a prefix length 0-32,
//!   e.g. `ip=10.0.2.15/24,10.0.2.2,10.0.2.3`. The gateway may be left
//!   empty when a DNS server follows (`ip=10.0.2.15/24,,10.0.2.3`). The
//!   address must be usable by a host: not the subnet's network or
//!   broadcast address (RFC 919/922; both are usable on a /31, RFC 3021),
//!   and not 0.0.0.0, loopback (127/8), multicast (224/4) or reserved
//!   (240/4, RFC 1112 and RFC 6890). The gateway must be another host
//!   address inside the subnet, so a /32 cannot have one. Without `ip=`,
//!   or after a bad one, the kernel asks DHCP; `ip=dhcp` says so
//!   explicitly. (Linux's `ip=` has a different, colon-separated syntax;
//!   Documentation/admin-guide/nfs/nfsroot.rst.)
//! - `syslog=<host>[:<port>]`: where to send log messages over UDP (RFC
//!   5426), the port defaulting to [`DEFAULT_SYSLOG_PORT`]. See
//!   [`parse_host_port`].
//! - `ntp=<host>`: the NTP server to set the clock from (RFC 5905).
//! - `heartbeat=<ms>`: print the monotonic clock every `<ms>` ms.
//!
//! A host is a dotted-quad IPv4 address or a DNS name (RFC 1123 2.1:
//! letters, digits and hyphens, labels of 1-63 characters not starting or
//! ending with a hyphen, 253 characters in all). A name whose last label
//! is all digits must be a valid IPv4 address, since no top-level domain
//! is numeric (RFC 3696 2): `10.0.0.256` is refused, not looked up.

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
    /// `ip=`: a static IPv4 configuration; `None` means DHCP.
    pub ip: Option<StaticIp>,
    /// `syslog=<host>[:<port>]`, validated, as written; split it with
    /// [`parse_host_port`].
    pub syslog: Option<&'a str>,
    /// `ntp=<host>`, validated, as written.
    pub ntp: Option<&'a str>,
    /// `init=<path>`: the program to run (absolute, in the boot module);
    /// its arguments are the words after `--` ([`Options::app_args`]).
    pub init: Option<&'a str>,
    /// `init.restart=yes|no`: start the program again when it exits,
    /// instead of powering off.
    pub init_restart: bool,
    /// `mount=<path>[,<path>...]`: more writable tmpfs mounts for the
    /// program (besides `/tmp`), each an absolute path.
    pub mounts: Option<&'a str>,
    /// `heartbeat=<ms>`: print `heartbeat <seconds>` (the monotonic clock,
    /// microseconds) on the console every `<ms>` milliseconds, 10-60000:
    /// a liveness and clock trace for tests of suspend, pause and
    /// migration.
    pub heartbeat_ms: Option<u32>,
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
        ip: None,
        syslog: None,
        ntp: None,
        init: None,
        init_restart: false,
        mounts: None,
        heartbeat_ms: None,
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

/// The syslog port when `syslog=` names none (RFC 5426 section 3.3).
pub const DEFAULT_SYSLOG_PORT: u16 = 514;

/// A static IPv4 configuration, from `ip=`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct StaticIp {
    pub address: [u8; 4],
    /// The prefix length, 0-32.
    pub prefix: u8,
    pub gateway: Option<[u8; 4]>,
    pub dns: Option<[u8; 4]>,
}

/// Why an `ip=` value was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum StaticIpError {
    /// Not `<address>/<prefix>[,<gateway>[,<dns>]]`: no `/`, a trailing
    /// comma, more than three fields.
    Syntax,
    /// The address is not a dotted quad.
    BadAddress,
    /// The prefix is not a number 0-32.
    BadPrefix,
    /// The address is the subnet's network or broadcast address, or not
    /// a unicast address at all.
    NotAHost,
    /// The gateway is not a dotted quad or not a unicast address.
    BadGateway,
    /// The gateway lies outside the subnet, or is the address itself.
    GatewayOutsideSubnet,
    /// The DNS server is not a dotted quad or not a unicast address.
    BadDns,
}

impl StaticIpError {
    /// What was expected instead, for the diagnostic.
    pub const fn expected(self) -> &'static str {
        match self {
            StaticIpError::Syntax => "<address>/<prefix>[,<gateway>[,<dns>]] or dhcp",
            StaticIpError::BadAddress => "a dotted-quad IPv4 address before the '/'",
            StaticIpError::BadPrefix => "a prefix length 0-32 after the '/'",
            StaticIpError::NotAHost => {
                "a host address: not the subnet's network or broadcast address, 0.0.0.0, loopback or multicast"
            }
            StaticIpError::BadGateway => "a dotted-quad unicast IPv4 gateway",
            StaticIpError::GatewayOutsideSubnet => {
                "a gateway inside the subnet, other than the address itself"
            }
            StaticIpError::BadDns => "a dotted-quad unicast IPv4 DNS server",
        }
    }
}

impl fmt::Display for StaticIpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "expected {}", self.expected())
    }
}

impl StaticIp {
    /// Parses `<address>/<prefix>[,<gateway>[,<dns>]]` (see the module
    /// docs for what is refused).
    pub fn parse(value: &str) -> Result<StaticIp, StaticIpError> {
        let (address, rest) = value.split_once('/').ok_or(StaticIpError::Syntax)?;
        let mut fields = rest.split(',');
        let prefix = fields.next().unwrap_or_default();
        let gateway = fields.next();
        let dns = fields.next();
        if fields.next().is_some() {
            return Err(StaticIpError::Syntax);
        }
        let address = parse_ipv4(address).ok_or(StaticIpError::BadAddress)?;
        let prefix = match prefix.as_bytes() {
            [b'0'..=b'9'] | [b'1'..=b'9', b'0'..=b'9'] => prefix.parse::<u8>().ok(),
            _ => None,
        }
        .filter(|&prefix| prefix <= 32)
        .ok_or(StaticIpError::BadPrefix)?;
        let ip = StaticIp {
            address,
            prefix,
            gateway: None,
            dns: None,
        };
        if !ip.is_host(address) {
            return Err(StaticIpError::NotAHost);
        }
        let gateway = match (gateway, dns) {
            (None, _) => None,
            // An empty gateway is only a placeholder before a DNS server.
            (Some(""), Some(dns)) if !dns.is_empty() => None,
            (Some(""), _) => return Err(StaticIpError::Syntax),
            (Some(gateway), _) => {
                let gateway = parse_ipv4(gateway)
                    .filter(|&gateway| is_unicast(gateway))
                    .ok_or(StaticIpError::BadGateway)?;
                if gateway == address || !ip.contains(gateway) || !ip.is_host(gateway) {
                    return Err(StaticIpError::GatewayOutsideSubnet);
                }
                Some(gateway)
            }
        };
        let dns = match dns {
            None => None,
            Some("") => return Err(StaticIpError::Syntax),
            Some(dns) => Some(
                parse_ipv4(dns)
                    .filter(|&dns| is_unicast(dns))
                    .ok_or(StaticIpError::BadDns)?,
            ),
        };
        Ok(StaticIp { gateway, dns, ..ip })
    }

    fn mask(&self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0)
    }

    /// The subnet mask, e.g. 255.255.255.0 for a /24.
    pub fn netmask(&self) -> [u8; 4] {
        self.mask().to_be_bytes()
    }

    /// The subnet's first address.
    pub fn network(&self) -> [u8; 4] {
        (u32::from_be_bytes(self.address) & self.mask()).to_be_bytes()
    }

    /// The subnet's last address, its directed broadcast (none on a /31
    /// or /32, where this is just the last address).
    pub fn broadcast(&self) -> [u8; 4] {
        (u32::from_be_bytes(self.address) | !self.mask()).to_be_bytes()
    }

    /// Whether `other` is inside the subnet.
    pub fn contains(&self, other: [u8; 4]) -> bool {
        (u32::from_be_bytes(self.address) ^ u32::from_be_bytes(other)) & self.mask() == 0
    }

    /// A unicast address that, on this subnet, is not the network or
    /// broadcast address (both exist only up to /30).
    fn is_host(&self, address: [u8; 4]) -> bool {
        let host_bits = u32::from_be_bytes(address) & !self.mask();
        is_unicast(address) && (self.prefix > 30 || (host_bits != 0 && host_bits != !self.mask()))
    }
}

/// Not 0.0.0.0, loopback (127/8), multicast (224/4) or reserved and
/// broadcast (240/4).
fn is_unicast(address: [u8; 4]) -> bool {
    address != [0; 4] && address[0] != 127 && address[0] < 224
}

/// A dotted-quad IPv4 address: four decimal numbers 0-255, without
/// leading zeros (`010` would be octal to `inet_aton`) or signs.
pub fn parse_ipv4(text: &str) -> Option<[u8; 4]> {
    let mut address = [0u8; 4];
    let mut parts = text.split('.');
    for octet in &mut address {
        let part = parts.next()?;
        let canonical = match part.as_bytes() {
            [b'0'..=b'9'] => true,
            [b'1'..=b'9', rest @ ..] => rest.len() <= 2 && rest.iter().all(u8::is_ascii_digit),
            _ => false,
        };
        if !canonical {
            return None;
        }
        *octet = part.parse().ok()?;
    }
    parts.next().is_none().then_some(address)
}

/// A DNS host name (RFC 1123 2.1) or, if its last label is numeric, a
/// dotted-quad IPv4 address.
pub fn is_host(text: &str) -> bool {
    let last = text.rsplit('.').next().unwrap_or_default();
    if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
        return parse_ipv4(text).is_some();
    }
    !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Splits `<host>[:<port>]`, checking the host with [`is_host`] and the
/// port to be a decimal 1-65535; `None` if either is wrong.
pub fn parse_host_port(value: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = match value.split_once(':') {
        Some((host, port)) => {
            let canonical = port.bytes().all(|b| b.is_ascii_digit()) && !port.starts_with('0');
            let port = port.parse::<u16>().ok().filter(|_| canonical)?;
            (host, Some(port))
        }
        None => (value, None),
    };
    is_host(host).then_some((host, port))
}

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
    OptionSpec {
        name: "ip",
        apply: apply_ip,
    },
    OptionSpec {
        name: "syslog",
        apply: apply_syslog,
    },
    OptionSpec {
        name: "ntp",
        apply: apply_ntp,
    },
    OptionSpec {
        name: "init",
        apply: apply_init,
    },
    OptionSpec {
        name: "init.restart",
        apply: apply_init_restart,
    },
    OptionSpec {
        name: "mount",
        apply: apply_mount,
    },
    OptionSpec {
        name: "heartbeat",
        apply: apply_heartbeat,
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
        expected: "native|kvm|xen-pvh|xen-pv|vmi",
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

fn apply_ip<'a>(options: &mut Options<'a>, value: Option<&'a str>) -> Result<(), ValueError> {
    let value = required(value)?;
    options.ip = if value == "dhcp" {
        None
    } else {
        Some(StaticIp::parse(value).map_err(|error| ValueError::Invalid {
            expected: error.expected(),
        })?)
    };
    Ok(())
}

fn apply_syslog<'a>(options: &mut Options<'a>, value: Option<&'a str>) -> Result<(), ValueError> {
    let value = required(value)?;
    parse_host_port(value).ok_or(ValueError::Invalid {
        expected: "<host>[:<port>], the host an IPv4 address or DNS name, the port 1-65535",
    })?;
    options.syslog = Some(value);
    Ok(())
}

fn apply_ntp<'a>(options: &mut Options<'a>, value: Option<&'a str>) -> Result<(), ValueError> {
    let value = required(value)?;
    if !is_host(value) {
        return Err(ValueError::Invalid {
            expected: "an IPv4 address or DNS name",
        });
    }
    options.ntp = Some(value);
    Ok(())
}

fn apply_init<'a>(options: &mut Options<'a>, value: Option<&'a str>) -> Result<(), ValueError> {
    let value = required(value)?;
    if !value.starts_with('/') || value.contains('\0') {
        return Err(ValueError::Invalid {
            expected: "an absolute path, such as /bin/server",
        });
    }
    options.init = Some(value);
    Ok(())
}

fn apply_mount<'a>(options: &mut Options<'a>, value: Option<&'a str>) -> Result<(), ValueError> {
    let value = required(value)?;
    if value
        .split(',')
        .any(|path| !path.starts_with('/') || path == "/" || path.contains(".."))
    {
        return Err(ValueError::Invalid {
            expected: "absolute paths other than /, separated by commas",
        });
    }
    options.mounts = Some(value);
    Ok(())
}

fn apply_init_restart<'a>(
    options: &mut Options<'a>,
    value: Option<&'a str>,
) -> Result<(), ValueError> {
    options.init_restart = match value {
        None | Some("yes") => true,
        Some("no") => false,
        Some(_) => return Err(ValueError::Invalid { expected: "yes|no" }),
    };
    Ok(())
}

fn apply_heartbeat<'a>(
    options: &mut Options<'a>,
    value: Option<&'a str>,
) -> Result<(), ValueError> {
    let value = required(value)?;
    let ms = value
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| value.parse::<u32>().ok())
        .flatten()
        .filter(|ms| (10..=60_000).contains(ms))
        .ok_or(ValueError::Invalid {
            expected: "milliseconds, 10-60000",
        })?;
    options.heartbeat_ms = Some(ms);
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
    fn init_and_its_restart() {
        let options = clean("init=/bin/server init.restart=yes -- -p 80");
        assert_eq!(options.init, Some("/bin/server"));
        assert!(options.init_restart);
        assert_eq!(options.app_args, "-p 80");
        assert!(!clean("init=/x init.restart=no").init_restart);
        assert!(clean("init=/x init.restart").init_restart);
        assert_eq!(
            clean("mount=/var,/srv/cache").mounts,
            Some("/var,/srv/cache")
        );
        for bad in ["mount=var", "mount=/", "mount=/a/../b"] {
            let (options, diags) = parse_all(bad);
            assert_eq!(options.mounts, None, "{bad}");
            assert_eq!(diags.len(), 1, "{bad}");
        }
        let mut diags = Vec::new();
        let options = parse("init=bin/server init.restart=maybe", |d| {
            diags.push(d.to_string())
        });
        assert_eq!(options.init, None);
        assert!(!options.init_restart);
        assert_eq!(diags.len(), 2, "{diags:?}");
        assert!(diags[0].contains("absolute path"), "{diags:?}");
        assert!(diags[1].contains("yes|no"), "{diags:?}");
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
    fn ip(value: &str) -> Result<StaticIp, StaticIpError> {
        StaticIp::parse(value)
    }

    #[test]
    fn static_ip_forms() {
        assert_eq!(
            clean("ip=10.0.2.15/24,10.0.2.2,10.0.2.3").ip,
            Some(StaticIp {
                address: [10, 0, 2, 15],
                prefix: 24,
                gateway: Some([10, 0, 2, 2]),
                dns: Some([10, 0, 2, 3]),
            })
        );
        assert_eq!(
            clean("ip=192.168.1.20/16").ip,
            Some(StaticIp {
                address: [192, 168, 1, 20],
                prefix: 16,
                gateway: None,
                dns: None,
            })
        );
        let gateway_only = clean("ip=192.168.1.20/24,192.168.1.1").ip.unwrap();
        assert_eq!(gateway_only.gateway, Some([192, 168, 1, 1]));
        assert_eq!(gateway_only.dns, None);
        // No gateway, but a DNS server, which may be off the subnet.
        let dns_only = clean("ip=192.168.1.20/24,,8.8.8.8").ip.unwrap();
        assert_eq!(dns_only.gateway, None);
        assert_eq!(dns_only.dns, Some([8, 8, 8, 8]));
        // Quoted values work as for every option.
        assert!(clean("ip=\"10.0.0.2/8\"").ip.is_some());
        assert_eq!(clean("").ip, None);
    }

    #[test]
    fn static_ip_subnet_arithmetic() {
        let subnet = ip("172.16.5.77/20,172.16.0.1").unwrap();
        assert_eq!(subnet.netmask(), [255, 255, 240, 0]);
        assert_eq!(subnet.network(), [172, 16, 0, 0]);
        assert_eq!(subnet.broadcast(), [172, 16, 15, 255]);
        assert!(subnet.contains([172, 16, 15, 1]));
        assert!(!subnet.contains([172, 16, 16, 1]));
        let whole = ip("10.1.2.3/0").unwrap();
        assert_eq!(whole.netmask(), [0, 0, 0, 0]);
        assert!(whole.contains([200, 1, 1, 1]));
        let single = ip("10.1.2.3/32").unwrap();
        assert_eq!(single.netmask(), [255; 4]);
        assert_eq!(single.network(), [10, 1, 2, 3]);
        assert_eq!(single.broadcast(), [10, 1, 2, 3]);
    }

    #[test]
    fn static_ip_host_rules() {
        // Network and broadcast addresses up to /30.
        assert_eq!(ip("10.0.2.0/24"), Err(StaticIpError::NotAHost));
        assert_eq!(ip("10.0.2.255/24"), Err(StaticIpError::NotAHost));
        assert_eq!(ip("10.0.0.0/8"), Err(StaticIpError::NotAHost));
        assert_eq!(ip("10.0.2.4/30"), Err(StaticIpError::NotAHost));
        assert_eq!(ip("10.0.2.7/30"), Err(StaticIpError::NotAHost));
        assert!(ip("10.0.2.5/30").is_ok());
        assert!(ip("10.0.3.0/23").is_ok());
        assert!(ip("10.0.2.255/23").is_ok());
        assert_eq!(ip("10.0.2.0/23"), Err(StaticIpError::NotAHost));
        // A /31 has no network or broadcast address (RFC 3021).
        assert!(ip("10.0.2.4/31,10.0.2.5").is_ok());
        assert!(ip("10.0.2.5/31,10.0.2.4").is_ok());
        assert!(ip("10.0.2.0/32").is_ok());
        for bad in [
            "0.0.0.0/24",
            "0.0.0.0/32",
            "255.255.255.255/32",
            "127.0.0.1/8",
            "127.0.0.1/32",
            "224.0.0.5/24",
            "239.1.1.1/32",
            "240.0.0.1/4",
        ] {
            assert_eq!(ip(bad), Err(StaticIpError::NotAHost), "{bad}");
        }
    }

    #[test]
    fn static_ip_gateway_rules() {
        assert!(ip("10.0.2.15/24,10.0.2.254").is_ok());
        assert!(ip("10.0.2.15/16,10.0.200.1").is_ok());
        assert_eq!(
            ip("10.0.2.15/24,10.0.3.1"),
            Err(StaticIpError::GatewayOutsideSubnet)
        );
        assert_eq!(
            ip("10.0.2.15/24,10.0.2.15"),
            Err(StaticIpError::GatewayOutsideSubnet)
        );
        assert_eq!(
            ip("10.0.2.15/24,10.0.2.0"),
            Err(StaticIpError::GatewayOutsideSubnet)
        );
        assert_eq!(
            ip("10.0.2.15/24,10.0.2.255"),
            Err(StaticIpError::GatewayOutsideSubnet)
        );
        // A /32 has nothing else inside it.
        assert_eq!(
            ip("10.0.2.15/32,10.0.2.1"),
            Err(StaticIpError::GatewayOutsideSubnet)
        );
        assert_eq!(ip("10.0.2.15/24,10.0.2"), Err(StaticIpError::BadGateway));
        assert_eq!(ip("10.0.2.15/24,gateway"), Err(StaticIpError::BadGateway));
        assert_eq!(ip("10.0.2.15/0,127.0.0.1"), Err(StaticIpError::BadGateway));
        assert_eq!(
            ip("10.0.2.15/24,10.0.2.1,0.0.0.0"),
            Err(StaticIpError::BadDns)
        );
        assert_eq!(
            ip("10.0.2.15/24,10.0.2.1,224.0.0.1"),
            Err(StaticIpError::BadDns)
        );
        assert_eq!(ip("10.0.2.15/24,10.0.2.1,dns"), Err(StaticIpError::BadDns));
    }

    #[test]
    fn static_ip_syntax() {
        for (value, error) in [
            ("10.0.2.15", StaticIpError::Syntax),
            ("10.0.2.15/24,", StaticIpError::Syntax),
            ("10.0.2.15/24,10.0.2.1,", StaticIpError::Syntax),
            ("10.0.2.15/24,,", StaticIpError::Syntax),
            ("10.0.2.15/24,10.0.2.1,10.0.2.3,", StaticIpError::Syntax),
            (
                "10.0.2.15/24,10.0.2.1,10.0.2.3,10.0.2.4",
                StaticIpError::Syntax,
            ),
            ("10.0.2.256/24", StaticIpError::BadAddress),
            ("10.0.2/24", StaticIpError::BadAddress),
            ("10.0.2.15.1/24", StaticIpError::BadAddress),
            ("10.0.02.15/24", StaticIpError::BadAddress),
            ("10.0.2.+15/24", StaticIpError::BadAddress),
            ("10.0..15/24", StaticIpError::BadAddress),
            (" 10.0.2.15/24", StaticIpError::BadAddress),
            ("10.0.2.1000/24", StaticIpError::BadAddress),
            ("/24", StaticIpError::BadAddress),
            ("10.0.2.15/33", StaticIpError::BadPrefix),
            ("10.0.2.15/", StaticIpError::BadPrefix),
            ("10.0.2.15/024", StaticIpError::BadPrefix),
            ("10.0.2.15/-1", StaticIpError::BadPrefix),
            ("10.0.2.15/255.255.255.0", StaticIpError::BadPrefix),
            ("10.0.2.15/24/8", StaticIpError::BadPrefix),
            ("10.0.2.15/1000", StaticIpError::BadPrefix),
        ] {
            assert_eq!(ip(value), Err(error), "{value}");
        }
        assert!(ip("10.0.2.15/0").is_ok());
        assert!(ip("10.0.2.15/9").is_ok());
    }

    #[test]
    fn parses_dotted_quads() {
        assert_eq!(parse_ipv4("0.0.0.0"), Some([0, 0, 0, 0]));
        assert_eq!(parse_ipv4("255.255.255.255"), Some([255; 4]));
        assert_eq!(parse_ipv4("1.20.100.200"), Some([1, 20, 100, 200]));
        for bad in [
            "",
            "1.2.3",
            "1.2.3.4.",
            ".1.2.3",
            "1.2.3.256",
            "1.2.3.04",
            "1.2.3.-4",
            "1.2.3.4 ",
            "1.2.3.a",
            "1..2.3",
            "1.2.3.4.5",
            "٣.1.2.3",
        ] {
            assert_eq!(parse_ipv4(bad), None, "{bad}");
        }
    }

    #[test]
    fn bad_ip_reports_and_falls_back_to_dhcp() {
        let (options, diags) = parse_all("ip=10.0.2.15/33 quiet");
        assert_eq!(options.ip, None);
        assert_eq!(options.loglevel, LevelFilter::Warn);
        assert_eq!(
            diags,
            [CmdlineDiag::InvalidValue {
                option: "ip",
                value: "10.0.2.15/33",
                expected: "a prefix length 0-32 after the '/'",
                kept: Kept::Default,
            }]
        );
        assert_eq!(
            diags[0].to_string(),
            "cmdline: bad value '10.0.2.15/33' for option 'ip' (expected a prefix length 0-32 after the '/'); the default is kept"
        );
        assert_eq!(
            messages("ip=10.0.2.15/24,10.0.3.1"),
            ["cmdline: bad value '10.0.2.15/24,10.0.3.1' for option 'ip' (expected a gateway inside the subnet, other than the address itself); the default is kept"]
        );
        assert_eq!(
            messages("ip=10.0.2.0/24"),
            ["cmdline: bad value '10.0.2.0/24' for option 'ip' (expected a host address: not the subnet's network or broadcast address, 0.0.0.0, loopback or multicast); the default is kept"]
        );
        assert_eq!(
            parse_all("ip").1,
            [CmdlineDiag::MissingValue {
                option: "ip",
                kept: Kept::Default
            }]
        );
        // As for every option, a bad later value keeps a good earlier one,
        // and `ip=dhcp` clears it.
        let (options, _) = parse_all("ip=10.0.0.2/8 ip=10.0.0.2/99");
        assert_eq!(options.ip.unwrap().address, [10, 0, 0, 2]);
        let (options, diags) = parse_all("ip=10.0.0.2/8 ip=dhcp");
        assert_eq!(options.ip, None);
        assert_eq!(diags, [CmdlineDiag::Duplicate { option: "ip" }]);
        assert_eq!(clean("ip=dhcp").ip, None);
        assert_eq!(
            StaticIpError::BadDns.to_string(),
            "expected a dotted-quad unicast IPv4 DNS server"
        );
    }

    #[test]
    fn hosts() {
        for good in [
            "localhost",
            "log.example.com",
            "a",
            "a-b.c-d",
            "xn--bcher-kva.ch",
            "10.0.2.2",
            "1.example",
            "123abc.example",
            "example.c0m",
        ] {
            assert!(is_host(good), "{good}");
        }
        let long_label = "a".repeat(64);
        let long_name = ["abcdefghi"; 26].join("."); // 259 characters
        for bad in [
            "",
            ".",
            "a.",
            ".a",
            "a..b",
            "-a.example",
            "a-.example",
            "a_b.example",
            "a b",
            "10.0.2.256",
            "10.0.2",
            "1.2.3.4.5",
            "example.123",
            "::1",
            "[::1]",
            "ünï.example",
            long_label.as_str(),
            long_name.as_str(),
        ] {
            assert!(!is_host(bad), "{bad}");
        }
        assert!(is_host(&"a".repeat(63)));
    }

    #[test]
    fn host_and_port() {
        assert_eq!(parse_host_port("log.example"), Some(("log.example", None)));
        assert_eq!(
            parse_host_port("10.0.2.2:514"),
            Some(("10.0.2.2", Some(514)))
        );
        assert_eq!(parse_host_port("h:1"), Some(("h", Some(1))));
        assert_eq!(parse_host_port("h:65535"), Some(("h", Some(65535))));
        for bad in [
            "h:", "h:0", "h:65536", "h:0514", "h:+1", "h:1:2", ":514", "h:port", "h: 1", "::1",
        ] {
            assert_eq!(parse_host_port(bad), None, "{bad}");
        }
    }

    #[test]
    fn heartbeat_option() {
        assert_eq!(clean("heartbeat=100").heartbeat_ms, Some(100));
        assert_eq!(clean("heartbeat=60000").heartbeat_ms, Some(60_000));
        assert_eq!(clean("").heartbeat_ms, None);
        for bad in [
            "heartbeat=9",
            "heartbeat=60001",
            "heartbeat=+50",
            "heartbeat=1e3",
            "heartbeat",
        ] {
            let (options, diags) = parse_all(bad);
            assert_eq!(options.heartbeat_ms, None, "{bad}");
            assert_eq!(diags.len(), 1, "{bad}");
        }
    }

    #[test]
    fn syslog_and_ntp_options() {
        let options = clean("syslog=10.0.2.2:5140 ntp=pool.ntp.org");
        assert_eq!(options.syslog, Some("10.0.2.2:5140"));
        assert_eq!(options.ntp, Some("pool.ntp.org"));
        assert_eq!(clean("syslog=logs").syslog, Some("logs"));
        assert_eq!(
            parse_host_port(clean("syslog=logs").syslog.unwrap())
                .map(|(host, port)| (host, port.unwrap_or(DEFAULT_SYSLOG_PORT))),
            Some(("logs", 514))
        );
        let (options, diags) = parse_all("syslog=logs:0 ntp=10.0.0.300");
        assert_eq!((options.syslog, options.ntp), (None, None));
        assert_eq!(
            diags[0].to_string(),
            "cmdline: bad value 'logs:0' for option 'syslog' (expected <host>[:<port>], the host an IPv4 address or DNS name, the port 1-65535); the default is kept"
        );
        assert_eq!(
            diags[1].to_string(),
            "cmdline: bad value '10.0.0.300' for option 'ntp' (expected an IPv4 address or DNS name); the default is kept"
        );
        let (options, diags) = parse_all("ntp=a.example ntp=bad_host");
        assert_eq!(options.ntp, Some("a.example"));
        assert_eq!(diags.len(), 2);
        assert_eq!(
            parse_all("syslog ntp=").1,
            [
                CmdlineDiag::MissingValue {
                    option: "syslog",
                    kept: Kept::Default
                },
                CmdlineDiag::MissingValue {
                    option: "ntp",
                    kept: Kept::Default
                },
            ]
        );
    }

    #[test]
    fn appliance_line() {
        let options =
            clean("/boot/sanos ip=10.0.2.15/24,10.0.2.2,10.0.2.3 syslog=10.0.2.2 ntp=10.0.2.2 loglevel=debug -- --port 80");
        assert_eq!(options.ip.unwrap().gateway, Some([10, 0, 2, 2]));
        assert_eq!(options.syslog, Some("10.0.2.2"));
        assert_eq!(options.ntp, Some("10.0.2.2"));
        assert_eq!(options.loglevel, LevelFilter::Debug);
        assert_eq!(options.app_args, "--port 80");
    }
}
