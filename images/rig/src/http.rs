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
fn fetch(port: u16, path: &str, out: &Path, extra: &[&str]) -> Result<(u16, Vec<u8>), String> {
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
