//! The transport conformance kit (etherws-core, feature `conformance`)
//! against quic://, with a throwaway PKI.

use std::sync::Arc;

use etherws_core::conformance::{self, Setup, SlowReader};
use etherws_quic::{Quic, QuicConfig};
use etherws_tls::testing::{write, Ca, KeyKind};
use etherws_tls::{ClientTlsFiles, ServerTlsFiles};

#[test]
fn quic_conforms() {
    let _ = env_logger::builder().is_test(true).try_init();
    let d = std::env::temp_dir().join(format!("etherws-quic-kit-{}", std::process::id()));
    let ca = Ca::new("quic kit CA");
    let issued = ca.server(&["127.0.0.1"], KeyKind::EcdsaP256);
    let quic = Quic::new(QuicConfig {
        server: Some(ServerTlsFiles {
            cert: write(&d, "cert.pem", &issued.chain_pem),
            key: write(&d, "key.pem", &issued.key_pem),
            client_ca: None,
        }),
        client: ClientTlsFiles {
            ca: Some(write(&d, "ca.pem", &ca.cert_pem())),
            ..ClientTlsFiles::default()
        },
        ..QuicConfig::default()
    });
    let mut s = Setup::new(
        Arc::new(quic),
        "quic://127.0.0.1:0",
        |addr| format!("quic://{addr}").parse().unwrap(),
        // Nobody answers on port 9: the handshake times out (QUIC does not
        // give up on an ICMP port unreachable).
        "quic://127.0.0.1:9",
    );
    // Frames up to 64 KiB cross in up to 64 pieces.
    s.jumbo = true;
    // Datagrams: a stalled reader loses frames past quinn's 2 MiB buffers.
    s.slow_reader = SlowReader::Drops;
    s.buffer_bound = 8 << 20;
    smol::block_on(conformance::run(&s));
    let _ = std::fs::remove_dir_all(d);
}
