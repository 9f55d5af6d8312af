//! The transport conformance kit (etherws-core, feature `conformance`)
//! against ws:// and wss://.

use std::sync::Arc;

use etherws_core::conformance::{self, Setup};
use etherws_core::futures::FutureExt;
use etherws_tls::testing::{write, Ca, KeyKind};
use etherws_ws::tls::{ClientTlsFiles, ServerTlsFiles, TlsClient, TlsServer};
use etherws_ws::{ClientConfig, ProxyChoice, ServerConfig, Ws, WsConfig};

fn setup(ws: Ws, scheme: &'static str) -> Setup {
    let mut s = Setup::new(
        Arc::new(ws),
        &format!("{scheme}://127.0.0.1:0/"),
        move |addr| format!("{scheme}://{addr}/").parse().unwrap(),
        // Nobody listens on port 9 (discard): the connect is refused.
        &format!("{scheme}://127.0.0.1:9/"),
    );
    s.jumbo = true;
    // A TCP connection that never sends its handshake.
    s.silent = Some(Box::new(|addr: &str| {
        let addr = addr.to_string();
        async move {
            let tcp = std::net::TcpStream::connect(addr).expect("silent connection");
            Box::new(tcp) as Box<dyn std::any::Any + Send>
        }
        .boxed()
    }));
    s
}

fn direct() -> ClientConfig {
    ClientConfig {
        proxy: ProxyChoice::Direct,
        ..ClientConfig::default()
    }
}

#[test]
fn ws_conforms() {
    let _ = env_logger::builder().is_test(true).try_init();
    let ws = Ws::new(WsConfig {
        client: direct(),
        ..WsConfig::default()
    });
    smol::block_on(conformance::run(&setup(ws, "ws")));
}

#[test]
fn wss_conforms() {
    let _ = env_logger::builder().is_test(true).try_init();
    let d = std::env::temp_dir().join(format!("etherws-conformance-{}", std::process::id()));
    let ca = Ca::new("conformance CA");
    let issued = ca.server(&["127.0.0.1"], KeyKind::EcdsaP256);
    let server = TlsServer::new(ServerTlsFiles {
        cert: write(&d, "cert.pem", &issued.chain_pem),
        key: write(&d, "key.pem", &issued.key_pem),
        client_ca: None,
    })
    .unwrap();
    let client = TlsClient::new(ClientTlsFiles {
        ca: Some(write(&d, "ca.pem", &ca.cert_pem())),
        ..ClientTlsFiles::default()
    })
    .unwrap();
    let ws = Ws::new(WsConfig {
        client: ClientConfig {
            tls: Some(Arc::new(client)),
            ..direct()
        },
        server: ServerConfig {
            tls: Some(Arc::new(server)),
            ..ServerConfig::default()
        },
        ..WsConfig::default()
    });
    smol::block_on(conformance::run(&setup(ws, "wss")));
    let _ = std::fs::remove_dir_all(d);
}
