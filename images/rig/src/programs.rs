//! Checks of the test programs that serve (`images/user/server.c`), run
//! from the host against the port QEMU forwards to the guest's 80: real
//! curl for HTTP, plain TCP clients for echo.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::qemu::Paths;

/// Fetches files (a small one, a large one through sendfile, a missing
/// one), runs concurrent echo clients, then asks the server to quit;
/// returns what was wrong.
pub fn check_server(port: u16, paths: &Paths) -> Vec<String> {
    let mut problems = Vec::new();
    let out = paths.rig_dir().join("program-body");
    let user = paths.build_dir.join("user");
    for path in ["/etc/motd", "/bin/hello-glibc"] {
        let want = std::fs::read(user.join(&path[1..])).unwrap_or_default();
        match crate::http::fetch(port, path, &out, &[]) {
            Ok((200, body)) if body == want => {}
            Ok((200, body)) => problems.push(format!(
                "GET {path}: {} bytes, not the {} of the file",
                body.len(),
                want.len()
            )),
            Ok((status, _)) => problems.push(format!("GET {path}: status {status}, not 200")),
            Err(error) => problems.push(error),
        }
    }
    match crate::http::fetch(port, "/no/such/file", &out, &[]) {
        Ok((404, _)) => {}
        Ok((status, _)) => problems.push(format!("GET /no/such/file: status {status}, not 404")),
        Err(error) => problems.push(error),
    }
    problems.extend(echo_clients(port, 8, 50));
    match crate::http::fetch(port, "/quit", &out, &[]) {
        Ok((200, body)) if body == b"bye\n" => {}
        Ok((status, body)) => problems.push(format!(
            "GET /quit: status {status}, body {:?}",
            String::from_utf8_lossy(&body)
        )),
        Err(error) => problems.push(error),
    }
    problems
}

/// `clients` connections at once, each sending `lines` lines and reading
/// each back.
fn echo_clients(port: u16, clients: usize, lines: usize) -> Vec<String> {
    let handles: Vec<_> = (0..clients)
        .map(|client| {
            std::thread::spawn(move || -> Result<(), String> {
                let mut stream = TcpStream::connect(("127.0.0.1", port))
                    .map_err(|e| format!("echo client {client}: connect: {e}"))?;
                stream
                    .set_read_timeout(Some(Duration::from_secs(20)))
                    .map_err(|e| e.to_string())?;
                for line in 0..lines {
                    let message = format!("client {client} line {line} {}\n", "x".repeat(line));
                    stream
                        .write_all(message.as_bytes())
                        .map_err(|e| format!("echo client {client}: write: {e}"))?;
                    let mut back = vec![0u8; message.len()];
                    stream
                        .read_exact(&mut back)
                        .map_err(|e| format!("echo client {client} line {line}: read: {e}"))?;
                    if back != message.as_bytes() {
                        return Err(format!(
                            "echo client {client} line {line}: got {:?}",
                            String::from_utf8_lossy(&back)
                        ));
                    }
                }
                Ok(())
            })
        })
        .collect();
    handles
        .into_iter()
        .filter_map(|h| match h.join() {
            Ok(Ok(())) => None,
            Ok(Err(problem)) => Some(problem),
            Err(_) => Some("an echo client panicked".to_string()),
        })
        .collect()
}
