//! The network services configuration: a tap device on this machine with a
//! link-local subnet of its own, and real servers on it that the rig
//! starts and stops itself:
//!
//! - dnsmasq (Debian's `dnsmasq-base`): DHCP for the guest and DNS for the
//!   `sanos.test` domain only (`--no-resolv`: nothing is forwarded), with
//!   `time.` and `logs.` naming this host, `web.` an address of its own,
//!   and every other name an NXDOMAIN;
//! - chronyd (Debian's `chrony`, unpacked under `build/`, see
//!   `images/setup.sh`): NTP from this machine's clock (`local stratum
//!   10`), without touching it (`-x`);
//! - a UDP listener on the syslog port that keeps every datagram.
//!
//! Nothing leaves the tap: the servers bind its address only.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The tap device (removed and made anew on each run).
pub const TAP: &str = "sanos-svc0";
/// This machine's address on the tap; the guest gets one by DHCP.
pub const HOST: &str = "169.254.99.1";
/// The address `web.sanos.test` has (nothing answers there).
pub const WEB: &str = "169.254.99.7";
/// The syslog listener's port.
pub const SYSLOG_PORT: u16 = 5514;
/// The command line the configuration boots with.
pub const CMDLINE: &str = "ntp=time.sanos.test syslog=logs.sanos.test:5514";

/// chronyd, unpacked by `images/setup.sh`.
pub fn chronyd(build_dir: &Path) -> PathBuf {
    build_dir.join("services/chrony/usr/sbin/chronyd")
}

/// The running servers; dropping it stops them and removes the tap.
pub struct Services {
    children: Vec<Child>,
    syslog: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    listener: Option<thread::JoinHandle<()>>,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

fn remove_tap() {
    let _ = Command::new("ip")
        .args(["link", "del", TAP])
        .stderr(Stdio::null())
        .status();
}

fn spawn(program: &Path, args: &[String], log: &Path) -> Result<Child, String> {
    let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("{}: {e}", log.display()))?;
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))
}

impl Services {
    /// Makes the tap and starts the servers, writing their configuration
    /// and logs into `dir`.
    pub fn start(dir: &Path, chronyd: &Path) -> Result<Services, String> {
        if !chronyd.exists() {
            return Err(format!(
                "{} missing (images/setup.sh unpacks Debian's chrony there)",
                chronyd.display()
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        // dnsmasq changes to / before it writes its files.
        let dir = &dir
            .canonicalize()
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        remove_tap();
        ip(&["tuntap", "add", "dev", TAP, "mode", "tap"])?;
        let mut services = Services {
            children: Vec::new(),
            syslog: Arc::new(Mutex::new(Vec::new())),
            stop: Arc::new(AtomicBool::new(false)),
            listener: None,
        };
        ip(&["addr", "add", &format!("{HOST}/24"), "dev", TAP])?;
        ip(&["link", "set", TAP, "up"])?;

        let path = |name: &str| dir.join(name).display().to_string();
        let dnsmasq: Vec<String> = [
            "--keep-in-foreground",
            "--log-facility=-",
            "--log-queries",
            "--conf-file=/dev/null",
            "--bind-interfaces",
            &format!("--interface={TAP}"),
            "--except-interface=lo",
            &format!("--listen-address={HOST}"),
            "--no-resolv",
            "--no-hosts",
            "--local=/sanos.test/",
            "--domain=sanos.test",
            &format!("--host-record=web.sanos.test,{WEB}"),
            &format!("--host-record=time.sanos.test,{HOST}"),
            &format!("--host-record=logs.sanos.test,{HOST}"),
            "--dhcp-range=169.254.99.50,169.254.99.59,255.255.255.0,1h",
            &format!("--dhcp-option=option:router,{HOST}"),
            &format!("--dhcp-leasefile={}", path("dnsmasq.leases")),
            &format!("--pid-file={}", path("dnsmasq.pid")),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        services.children.push(spawn(
            Path::new("dnsmasq"),
            &dnsmasq,
            &dir.join("dnsmasq.log"),
        )?);

        let conf = dir.join("chrony.conf");
        std::fs::write(
            &conf,
            format!(
                "local stratum 10\nallow 169.254.99.0/24\nbindaddress {HOST}\nport 123\n\
                 cmdport 0\nuser root\npidfile {}\ndriftfile {}\n",
                path("chronyd.pid"),
                path("chrony.drift")
            ),
        )
        .map_err(|e| format!("{}: {e}", conf.display()))?;
        let chrony_args = ["-d", "-x", "-f"]
            .iter()
            .map(|s| s.to_string())
            .chain([conf.display().to_string()])
            .collect::<Vec<_>>();
        services
            .children
            .push(spawn(chronyd, &chrony_args, &dir.join("chronyd.log"))?);

        let socket = UdpSocket::bind((HOST, SYSLOG_PORT))
            .map_err(|e| format!("syslog listener on {HOST}:{SYSLOG_PORT}: {e}"))?;
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(|e| format!("syslog listener: {e}"))?;
        let (kept, stop) = (services.syslog.clone(), services.stop.clone());
        services.listener = Some(thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stop.load(Ordering::Relaxed) {
                if let Ok(len) = socket.recv(&mut buf) {
                    let message = String::from_utf8_lossy(&buf[..len]).into_owned();
                    if let Ok(mut kept) = kept.lock() {
                        kept.push(message);
                    }
                }
            }
        }));
        // The servers bind within milliseconds; the guest asks after its
        // boot, seconds later.
        thread::sleep(Duration::from_millis(300));
        for child in &mut services.children {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "a server exited at once ({status}); see {}",
                    dir.display()
                ));
            }
        }
        Ok(services)
    }

    /// The syslog datagrams received so far.
    pub fn syslog(&self) -> Vec<String> {
        self.syslog
            .lock()
            .map(|kept| kept.clone())
            .unwrap_or_default()
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(listener) = self.listener.take() {
            let _ = listener.join();
        }
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        remove_tap();
    }
}

/// Seconds since the epoch of an RFC 3339 UTC time as sanos writes it
/// (`2026-11-29T23:15:31.471291Z`); `None` for anything else.
pub fn parse_rfc3339(text: &str) -> Option<f64> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || !text.ends_with('Z') {
        return None;
    }
    let number = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute) = (number(11..13)?, number(14..16)?);
    let second: f64 = text.get(17..text.len() - 1)?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    Some((days * 86_400 + hour * 3600 + minute * 60) as f64 + second)
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// How far a time the guest reported may be from this machine's clock when
/// the rig looks: the guest said it up to a boot's length earlier.
const CLOCK_SLACK_S: f64 = 90.0;

/// Checks the syslog datagrams: RFC 5424 with facility kern, from the
/// guest's DHCP address, timestamped by the clock NTP set (this machine's),
/// and among them the boot's DHCP line (kept until the host was known) and
/// NTP's.
pub fn check_syslog(messages: &[String]) -> Vec<String> {
    check_syslog_at(messages, now())
}

fn check_syslog_at(messages: &[String], now: f64) -> Vec<String> {
    let mut problems = Vec::new();
    if messages.is_empty() {
        return vec![format!("no syslog message reached {HOST}:{SYSLOG_PORT}")];
    }
    let mut texts = Vec::new();
    for message in messages {
        let fields: Vec<&str> = message.splitn(8, ' ').collect();
        let header_ok = fields.len() == 8
            && fields[0].starts_with('<')
            && fields[0].ends_with(">1")
            && fields[0][1..fields[0].len() - 2]
                .parse::<u8>()
                .is_ok_and(|pri| pri < 8)
            && fields[2].starts_with("169.254.99.5")
            && fields[3..7] == ["sanos", "-", "-", "-"];
        if !header_ok {
            problems.push(format!(
                "syslog message not RFC 5424 from sanos: {message:?}"
            ));
            continue;
        }
        match parse_rfc3339(fields[1]) {
            Some(time) if (now - time).abs() <= CLOCK_SLACK_S => {}
            Some(_) | None => problems.push(format!(
                "syslog timestamp {} is not this machine's time",
                fields[1]
            )),
        }
        texts.push(fields[7]);
    }
    for wanted in [
        "net: DHCP lease 169.254.99.",
        "ntp: clock set from time.sanos.test",
    ] {
        if !texts.iter().any(|text| text.starts_with(wanted)) {
            problems.push(format!("no syslog message {wanted:?}"));
        }
    }
    problems
}

/// Checks the `date` the shell printed (`  2026-...Z (set by NTP)`)
/// against this machine's clock.
pub fn check_date(lines: &[String]) -> Vec<String> {
    check_date_at(lines, now())
}

fn check_date_at(lines: &[String], now: f64) -> Vec<String> {
    let Some(line) = lines.iter().find(|line| line.ends_with(" (set by NTP)")) else {
        return vec!["the shell's date does not say it was set by NTP".to_string()];
    };
    let stamp = line.trim().split(' ').next().unwrap_or_default();
    match parse_rfc3339(stamp) {
        Some(time) if (now - time).abs() <= CLOCK_SLACK_S => Vec::new(),
        _ => vec![format!(
            "the guest's date {stamp} is not this machine's time"
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: f64 = 1_795_993_900.0;

    #[test]
    fn rfc3339_times_parse_to_epoch_seconds() {
        assert_eq!(
            parse_rfc3339("2026-11-29T23:15:31.471291Z"),
            Some(1_795_994_131.471291)
        );
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00.000000Z"), Some(0.0));
        assert_eq!(parse_rfc3339("2000-03-01T00:00:00.5Z"), Some(951_868_800.5));
        for bad in [
            "-",
            "2026-11-29 23:15:31Z",
            "2026-13-01T00:00:00Z",
            "2026-11-29T23:15:31",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    fn message(stamp: &str, text: &str) -> String {
        format!("<6>1 {stamp} 169.254.99.58 sanos - - - {text}")
    }

    #[test]
    fn good_syslog_passes_and_each_fault_is_named() {
        let stamp = "2026-11-29T23:11:35.000000Z";
        let good = vec![
            message(stamp, "net: DHCP lease 169.254.99.58/24 via 169.254.99.1"),
            message(stamp, "ntp: clock set from time.sanos.test (169.254.99.1)"),
        ];
        assert_eq!(check_syslog_at(&good, NOW), Vec::<String>::new());
        assert_eq!(check_syslog_at(&[], NOW).len(), 1);
        // The CMOS clock's 2001 instead of NTP's time.
        let mut old = good.clone();
        old[0] = message(
            "2001-01-01T00:00:03.000000Z",
            "net: DHCP lease 169.254.99.58/24",
        );
        assert!(check_syslog_at(&old, NOW)[0].contains("not this machine's time"));
        // No timestamp at all.
        let mut dash = good.clone();
        dash[1] = message("-", "ntp: clock set from time.sanos.test");
        assert_eq!(check_syslog_at(&dash, NOW).len(), 1);
        // Another facility, a missing line.
        let mut user = good.clone();
        user[0] = user[0].replacen("<6>", "<14>", 1);
        let problems = check_syslog_at(&user, NOW);
        assert!(problems.iter().any(|p| p.contains("not RFC 5424")));
        assert!(problems.iter().any(|p| p.contains("DHCP lease")));
    }

    #[test]
    fn the_shell_date_must_be_ntp_time() {
        let good = vec!["  2026-11-29T23:11:40.284380Z (set by NTP)".to_string()];
        assert!(check_date_at(&good, NOW).is_empty());
        let cmos = vec!["  2001-01-01T00:00:40.284380Z (the platform's clock)".to_string()];
        assert_eq!(check_date_at(&cmos, NOW).len(), 1);
        let wrong = vec!["  2001-01-01T00:00:40.284380Z (set by NTP)".to_string()];
        assert_eq!(check_date_at(&wrong, NOW).len(), 1);
    }
}
