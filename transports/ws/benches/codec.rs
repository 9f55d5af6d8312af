//! One WebSocket message each way: encoding a binary message (masked, as
//! a client sends it, and unmasked, as a server does) and decoding it, at
//! 64 bytes, 1514 bytes and a 64 KiB super-frame.
//!
//!     cargo bench -p etherws-ws --bench codec

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use etherws_ws::codec::{self, Decoder, Event, Role};

const BINARY: u8 = 2;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("ws_message");
    for size in [64usize, 1514, 65_546] {
        let payload = vec![0x5au8; size];
        g.throughput(Throughput::Bytes(size as u64));
        let mut out = Vec::with_capacity(size + 14);
        g.bench_with_input(BenchmarkId::new("encode_masked", size), &payload, |b, p| {
            b.iter(|| {
                out.clear();
                codec::encode(&mut out, BINARY, p, Some([1, 2, 3, 4]));
                out.len()
            })
        });
        g.bench_with_input(BenchmarkId::new("encode", size), &payload, |b, p| {
            b.iter(|| {
                out.clear();
                codec::encode(&mut out, BINARY, p, None);
                out.len()
            })
        });
        // A server decodes what a client sent: masked.
        let mut wire = Vec::new();
        codec::encode(&mut wire, BINARY, &payload, Some([1, 2, 3, 4]));
        let mut dec = Decoder::new(Role::Server, 70_000, 70_000);
        g.bench_with_input(BenchmarkId::new("decode_masked", size), &wire, |b, w| {
            b.iter(|| match dec.decode(w).unwrap() {
                (_, Some(Event::Binary(m))) => m.len(),
                other => panic!("{other:?}"),
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
