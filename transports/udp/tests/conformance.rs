//! The transport conformance kit (etherws-core, feature `conformance`)
//! against udp://, plain and with a pre-shared key.

use std::sync::Arc;

use etherws_core::conformance::{self, Setup, SlowReader};
use etherws_udp::{Key, Udp, UdpConfig};

fn setup(psk: Option<Key>) -> Setup {
    setup_with(UdpConfig {
        psk,
        ..UdpConfig::default()
    })
}

fn setup_with(cfg: UdpConfig) -> Setup {
    let udp = Udp::new(cfg);
    let mut s = Setup::new(
        Arc::new(udp),
        "udp://127.0.0.1:0",
        |addr| format!("udp://{addr}").parse().unwrap(),
        // A port nobody listens on: HELLO draws an ICMP port unreachable.
        "udp://127.0.0.1:9",
    );
    // Datagrams: a reader that does not keep up loses frames (its socket
    // buffer and the link's queue of 1024 frames bound what waits).
    s.slow_reader = SlowReader::Drops;
    s.buffer_bound = 8 << 20;
    s
}

#[test]
fn udp_conforms() {
    let _ = env_logger::builder().is_test(true).try_init();
    smol::block_on(conformance::run(&setup(None)));
}

#[test]
fn udp_with_a_key_conforms() {
    let _ = env_logger::builder().is_test(true).try_init();
    let key = Key::new(b"conformance-test-key").unwrap();
    smol::block_on(conformance::run(&setup(Some(key))));
}

#[test]
fn udp_with_offload_conforms() {
    let _ = env_logger::builder().is_test(true).try_init();
    // Every frame then carries a virtio-net header; the kit's frames are
    // plain ones (an all-zero header), and up to 64 KiB cross whole.
    let mut s = setup_with(UdpConfig {
        offload: true,
        ..UdpConfig::default()
    });
    s.jumbo = false;
    smol::block_on(conformance::run(&s));
}
