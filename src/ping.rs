//! A minimal ICMP echo client, so the demo needs no `ping` binary.
//! Raw socket: needs root (or CAP_NET_RAW).

use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use socket2::{Domain, Protocol, Socket, Type};

use crate::cli::PingArgs;

use etherws_core::offload::internet_checksum as checksum;

fn echo_request(id: u16, seq: u16) -> [u8; 64] {
    let mut p = [0u8; 64];
    p[0] = 8; // echo request
    p[4..6].copy_from_slice(&id.to_be_bytes());
    p[6..8].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in p[8..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let c = checksum(&p);
    p[2..4].copy_from_slice(&c.to_be_bytes());
    p
}

/// Sends one echo request and waits up to `timeout` for its reply.
fn echo(
    sock: &Socket,
    to: Ipv4Addr,
    id: u16,
    seq: u16,
    timeout: Duration,
) -> Result<Option<Duration>> {
    let req = echo_request(id, seq);
    let start = Instant::now();
    sock.send_to(&req, &SocketAddrV4::new(to, 0).into())
        .with_context(|| format!("sending ICMP echo to {to}"))?;
    let mut buf = [MaybeUninit::<u8>::uninit(); 2048];
    loop {
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Ok(None);
        }
        sock.set_read_timeout(Some(left))?;
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e).context("receiving ICMP"),
        };
        // SAFETY: recv initialised the first n bytes.
        let pkt: Vec<u8> = buf[..n]
            .iter()
            .map(|b| unsafe { b.assume_init() })
            .collect();
        // A raw IPv4 socket hands us the IP header too.
        let ihl = usize::from(pkt.first().map_or(0, |b| b & 0x0f)) * 4;
        if pkt.len() < ihl + 8 || pkt[12..16] != to.octets() {
            continue;
        }
        let icmp = &pkt[ihl..];
        if icmp[0] == 0 && icmp[4..6] == id.to_be_bytes() && icmp[6..8] == seq.to_be_bytes() {
            return Ok(Some(start.elapsed()));
        }
    }
}

pub fn run(args: PingArgs) -> Result<()> {
    let sock = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))
        .context("opening a raw ICMP socket (needs root or CAP_NET_RAW)")?;
    let id = (std::process::id() & 0xffff) as u16;
    let deadline = Instant::now() + Duration::from_secs(args.wait);
    let mut seq = 0u16;
    // Wait for the path to come up (ARP, link establishment).
    loop {
        seq += 1;
        // Until the path is up, errors (no route yet: the TAP is still being
        // created) count as "no reply".
        match echo(&sock, args.target, id, seq, Duration::from_millis(500)) {
            Ok(Some(_)) => break,
            Ok(None) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
        if Instant::now() >= deadline {
            bail!("no reply from {} within {} s", args.target, args.wait);
        }
    }
    let mut rtts = Vec::new();
    for _ in 0..args.count {
        seq += 1;
        match echo(&sock, args.target, id, seq, Duration::from_secs(2))? {
            Some(rtt) => {
                println!(
                    "reply from {}: seq={seq} time={:.3} ms",
                    args.target,
                    rtt.as_secs_f64() * 1e3
                );
                rtts.push(rtt);
            }
            None => println!("no reply from {}: seq={seq}", args.target),
        }
    }
    if rtts.is_empty() {
        bail!("no replies from {}", args.target);
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let min = rtts.iter().min().copied().unwrap_or_default();
    let max = rtts.iter().max().copied().unwrap_or_default();
    let avg = rtts.iter().sum::<Duration>() / rtts.len() as u32;
    println!(
        "{}/{} replies, rtt min/avg/max = {:.3}/{:.3}/{:.3} ms",
        rtts.len(),
        args.count,
        ms(min),
        ms(avg),
        ms(max)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_a_request_verifies() {
        let p = echo_request(0x1234, 7);
        assert_eq!(checksum(&p), 0);
    }
}
