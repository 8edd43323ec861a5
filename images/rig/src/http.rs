//! The HTTP checks of the matrix's appliance configurations: curl (the
//! real client) fetches every file of the test site through QEMU's port
//! forwarding, and the bytes must be the site's; then a few requests the
//! server must refuse properly.

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

/// A port on 127.0.0.1 nobody listens on now.
pub fn free_port() -> Result<u16, String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port on 127.0.0.1: {e}"))?;
    listener
        .local_addr()
        .map(|address| address.port())
        .map_err(|e| format!("no free port on 127.0.0.1: {e}"))
}

/// `curl` for `path`: (status, body), or why curl failed.
pub fn fetch(port: u16, path: &str, out: &Path, extra: &[&str]) -> Result<(u16, Vec<u8>), String> {
    let url = format!("http://127.0.0.1:{port}{path}");
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-o"])
        .arg(out)
        .args(["-w", "%{http_code}"])
        .args(extra)
        .arg(&url)
        .output()
        .map_err(|e| format!("cannot run curl: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "curl {url}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let status = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .map_err(|_| format!("curl {url}: no status"))?;
    let body = std::fs::read(out).unwrap_or_default();
    Ok((status, body))
}

/// Fetches the site's files and a few refusals; returns what was wrong.
pub fn check_site(site: &Path, port: u16, scratch: &Path) -> Vec<String> {
    let out = scratch.join("http-body");
    let mut problems = Vec::new();
    let expect_file = |problems: &mut Vec<String>, path: &str, file: &str| {
        let want = std::fs::read(site.join(file)).unwrap_or_default();
        match fetch(port, path, &out, &[]) {
            Ok((200, body)) if body == want => {}
            Ok((200, body)) => problems.push(format!(
                "GET {path}: {} bytes differ from the site's {} bytes",
                body.len(),
                want.len()
            )),
            Ok((status, _)) => problems.push(format!("GET {path}: status {status}, not 200")),
            Err(reason) => problems.push(reason),
        }
    };
    expect_file(&mut problems, "/", "index.html");
    expect_file(&mut problems, "/index.html", "index.html");
    expect_file(&mut problems, "/style.css", "style.css");
    expect_file(&mut problems, "/docs/", "docs/index.html");
    expect_file(&mut problems, "/big.bin", "big.bin");
    match fetch(port, "/no-such-file", &out, &[]) {
        Ok((404, _)) => {}
        Ok((status, _)) => problems.push(format!("GET /no-such-file: status {status}, not 404")),
        Err(reason) => problems.push(reason),
    }
    match fetch(port, "/index.html", &out, &["-X", "DELETE"]) {
        Ok((405, _)) => {}
        Ok((status, _)) => problems.push(format!("DELETE /index.html: status {status}, not 405")),
        Err(reason) => problems.push(reason),
    }
    problems
}

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

fn connect(port: u16) -> Result<TcpStream, String> {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .map_err(|e| format!("connect 127.0.0.1:{port}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    Ok(stream)
}

/// Sends `request` (in pieces of `chunk` bytes) and reads until the
/// server closes or `Content-Length` says the response is complete;
/// returns the status code of the first response.
fn exchange(port: u16, request: &[u8], chunk: usize) -> Result<u16, String> {
    let mut stream = connect(port)?;
    for piece in request.chunks(chunk.max(1)) {
        stream.write_all(piece).map_err(|e| format!("send: {e}"))?;
        if chunk < request.len() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                response.extend_from_slice(&buf[..n]);
                if complete(&response) {
                    break;
                }
            }
            Err(e) if response.is_empty() => return Err(format!("receive: {e}")),
            Err(_) => break,
        }
    }
    status_of(&response).ok_or_else(|| {
        format!(
            "no status line in {:?}",
            String::from_utf8_lossy(&response[..response.len().min(80)])
        )
    })
}

fn status_of(response: &[u8]) -> Option<u16> {
    let line = response.split(|&b| b == b'\n').next()?;
    let text = std::str::from_utf8(line).ok()?;
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// Whether `response` holds a whole response (head and its body).
fn complete(response: &[u8]) -> bool {
    let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&response[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    response.len() >= end + 4 + length
}

/// The heap bytes the kernel has in use, from `/status`.
fn heap_in_use(port: u16) -> Result<u64, String> {
    let mut stream = connect(port)?;
    stream
        .write_all(b"GET /status HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut body = String::new();
    stream
        .read_to_string(&mut body)
        .map_err(|e| e.to_string())?;
    let at = body
        .find("\"heap_in_use\":")
        .ok_or("no heap_in_use in /status")?;
    body[at + 14..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .map_err(|_| "bad heap_in_use".to_string())
}

/// Malformed and hostile requests, each answered with its status or a
/// close; then the server must still answer, and its heap be back.
pub fn hostile(port: u16) -> Vec<String> {
    // 200 connections at once first: what the stack keeps for good (the
    // socket table's slots) is in place before the heap is measured.
    let phase = Instant::now();
    let mut problems = burst(port, 200);
    println!(
        "rig: 200 connections at once in {:.1} s",
        phase.elapsed().as_secs_f32()
    );
    std::thread::sleep(Duration::from_secs(2));
    let before = match heap_in_use(port) {
        Ok(bytes) => bytes,
        Err(reason) => return vec![format!("/status: {reason}")],
    };
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9000));
    let many_headers = format!(
        "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..100)
            .map(|i| format!("X-{i}: y\r\n"))
            .collect::<String>()
    );
    let big_header = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n",
        "b".repeat(20000)
    );
    let cases: &[(&str, &[u8], u16)] = &[
        ("a request line over 8 KiB", long_target.as_bytes(), 414),
        ("100 header fields", many_headers.as_bytes(), 431),
        ("a 20 KB header", big_header.as_bytes(), 431),
        (
            "an unknown method",
            b"BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n",
            501,
        ),
        (
            "a malformed method",
            b"G@T / HTTP/1.1\r\nHost: x\r\n\r\n",
            400,
        ),
        ("HTTP/2.0", b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        ("no Host", b"GET / HTTP/1.1\r\n\r\n", 400),
        (
            "conflicting lengths",
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            400,
        ),
        (
            "a bad length",
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            400,
        ),
        (
            "a body too large",
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n",
            413,
        ),
        (
            "a path above the root",
            b"GET /../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
            400,
        ),
        (
            "POST",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            405,
        ),
    ];
    for (what, request, want) in cases {
        match exchange(port, request, usize::MAX) {
            Ok(status) if status == *want => {}
            Ok(status) => problems.push(format!("{what}: status {status}, not {want}")),
            Err(reason) => problems.push(format!("{what}: {reason}")),
        }
    }
    // Split byte by byte, then pipelined: still served.
    let request = b"GET /style.css HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    match exchange(port, request, 1) {
        Ok(200) => {}
        other => problems.push(format!("a request sent byte by byte: {other:?}")),
    }
    // Early close: half a request, then gone.
    if let Ok(mut stream) = connect(port) {
        let _ = stream.write_all(b"GET /index.ht");
        let _ = stream.shutdown(Shutdown::Both);
    }
    // A slow client: half a request and silence; the server gives up.
    let slow = Instant::now();
    match connect(port).and_then(|mut stream| {
        stream
            .write_all(b"GET / HTTP/1.1\r\nHo")
            .map_err(|e| e.to_string())?;
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        status_of(&response).ok_or_else(|| "closed without a status".to_string())
    }) {
        Ok(408) => {}
        other => problems.push(format!(
            "a slow client: {other:?} after {:.1} s, not 408",
            slow.elapsed().as_secs_f32()
        )),
    }
    // 200 connections at once, again: memory reused, not grown.
    println!(
        "rig: hostile requests done at {:.1} s",
        phase.elapsed().as_secs_f32()
    );
    problems.extend(burst(port, 200));
    println!(
        "rig: second burst done at {:.1} s",
        phase.elapsed().as_secs_f32()
    );
    // Normal service, and the memory back (sockets reaped meanwhile).
    std::thread::sleep(Duration::from_secs(2));
    match exchange(
        port,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        usize::MAX,
    ) {
        Ok(200) => {}
        other => problems.push(format!("after the hostile batch: {other:?}")),
    }
    match heap_in_use(port) {
        // Slack for what the first use of a path allocates for good.
        Ok(after) if after <= before + 64 * 1024 => {}
        Ok(after) => problems.push(format!(
            "heap in use grew from {before} to {after} bytes over the hostile batch"
        )),
        Err(reason) => problems.push(format!("/status: {reason}")),
    }
    problems
}

/// `count` requests in a row, each on its own connection.
pub fn churn(port: u16, count: usize) -> Vec<String> {
    let started = Instant::now();
    for i in 0..count {
        match exchange(
            port,
            b"GET /style.css HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            usize::MAX,
        ) {
            Ok(200) => {}
            other => {
                return vec![format!("churn: request {i} of {count}: {other:?}")];
            }
        }
    }
    println!(
        "rig: {count} connections in a row in {:.1} s",
        started.elapsed().as_secs_f32()
    );
    Vec::new()
}

/// `count` connections open at once, then a request on each, then every
/// answer read: all must be 200. The connections are opened 10 ms apart:
/// QEMU's user network accepts forwarded connections with a listen
/// backlog of 1, so a faster burst waits in the host's SYN-ACK
/// retransmissions (seconds), whatever the guest does.
fn burst(port: u16, count: usize) -> Vec<String> {
    let mut problems = Vec::new();
    let mut streams = Vec::new();
    for _ in 0..count {
        match connect(port) {
            Ok(stream) => streams.push(stream),
            Err(reason) => {
                problems.push(format!("{count} at once: {reason}"));
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    for stream in &mut streams {
        let _ =
            stream.write_all(b"GET /index.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    }
    let mut answered = 0;
    for mut stream in streams {
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        if status_of(&response) == Some(200) {
            answered += 1;
        }
    }
    if answered != count {
        problems.push(format!(
            "{count} connections at once: {answered} answered 200"
        ));
    }
    problems
}
