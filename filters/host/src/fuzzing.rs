//! The loader's property, driven by arbitrary module bytes.
//!
//! One implementation, run two ways: by the fuzz target in `fuzz/`
//! (nightly, `cargo fuzz`) and by this crate's stable tests (proptest,
//! bounded, in `./test.sh`). Panics when the property fails.

use etherws_core::{Direction, FilterContext, Frame, PortId, PortKind, Verdict};

use crate::Host;

/// Loads `data` (binary wasm, or wat text when it is UTF-8): loading never
/// panics, and a module that loads runs three frames without panicking,
/// each getting a verdict, a fault staying a fault.
pub fn loader(host: &Host, data: &[u8]) {
    let Ok(filter) = host.load_bytes("fuzz", data, "", 1522) else {
        return;
    };
    let ctx = FilterContext {
        direction: Direction::Ingress,
        port: PortId(1),
        port_kind: PortKind::Link,
    };
    for _ in 0..3 {
        let mut frame = Frame::new(vec![0xffu8; 60]);
        let v = filter.filter(&ctx, &mut frame);
        if v == Verdict::Pass {
            assert!(frame.len() <= 1522 + 4);
        }
    }
}

#[cfg(test)]
mod props {
    use std::sync::OnceLock;

    use proptest::collection::vec;
    use proptest::prelude::*;

    use crate::Host;

    fn host() -> &'static Host {
        static HOST: OnceLock<Host> = OnceLock::new();
        HOST.get_or_init(|| Host::new().expect("filter host"))
    }

    /// The library's pass filter, to mutate.
    const PASS: &[u8] = include_bytes!("../../library/wasm/pass.wasm");

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn arbitrary_bytes_never_panic_the_loader(data in vec(any::<u8>(), 0..200)) {
            super::loader(host(), &data);
        }

        #[test]
        fn mutated_modules_never_panic_the_loader(flips in vec((any::<usize>(), any::<u8>()), 1..4)) {
            let mut m = PASS.to_vec();
            for (at, b) in flips {
                let i = at % m.len();
                m[i] ^= b;
            }
            super::loader(host(), &m);
        }
    }
}
