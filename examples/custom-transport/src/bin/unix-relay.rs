//! `unix-relay PATH`: joins stdin/stdout to the Unix socket at PATH, byte
//! for byte. The conformance test dials `exec:unix-relay PATH` to reach a
//! `unix:` listener, so the exec transport meets a real peer.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

fn main() {
    let path = std::env::args().nth(1).expect("usage: unix-relay PATH");
    let sock = UnixStream::connect(&path).unwrap_or_else(|e| {
        eprintln!("unix-relay: {path}: {e}");
        std::process::exit(1)
    });
    let mut up = sock.try_clone().expect("socket clone");
    // stdin -> socket on a thread; socket -> stdout here.
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        let mut stdin = std::io::stdin().lock();
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 || up.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = up.shutdown(std::net::Shutdown::Write);
    });
    let mut down = sock;
    let mut buf = vec![0u8; 65536];
    let mut stdout = std::io::stdout().lock();
    while let Ok(n) = down.read(&mut buf) {
        if n == 0
            || stdout
                .write_all(&buf[..n])
                .and_then(|_| stdout.flush())
                .is_err()
        {
            break;
        }
    }
}
