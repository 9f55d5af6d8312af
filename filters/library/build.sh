#!/bin/sh
# Builds every filter of the library for wasm32-unknown-unknown and copies
# each one to wasm/<name>.wasm (committed, so the host's tests and users need
# no wasm toolchain).
#
# Reproducible: the same rustc and Cargo.lock give byte-identical modules
# whatever the checkout's path. Cargo's crate hashes (-C metadata) depend on
# the absolute path of path dependencies and change the generated code, so
# the sources (filters/abi, filters/sdk, filters/library) are copied to a
# fixed staging directory and built there, with that directory and the cargo
# home remapped (--remap-path-prefix) out of the output. The copies get fresh
# modification times (tar -m), so cargo always rebuilds them and never takes
# outputs left in the shared target directory by another checkout.
#
# Everything runs under `flock` on one lock file (one cargo build at a time
# on this machine; ETHERWS_CARGO_LOCK selects another lock file).
#
# Usage: filters/library/build.sh   (from any directory)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cargo_home=${CARGO_HOME:-$HOME/.cargo}
target_dir=${CARGO_TARGET_DIR:-$repo/target}
lock=${ETHERWS_CARGO_LOCK:-/tmp/etherws-cargo.lock}
stage=/tmp/etherws-filter-library-build
# Where the modules go (the reproducibility test builds into a scratch dir).
out=${ETHERWS_WASM_OUT:-$here/wasm}

if command -v flock >/dev/null 2>&1; then
    exec 9>"$lock"
    flock 9
fi

rm -rf "$stage"
mkdir -p "$stage/filters"
(cd "$repo/filters" && tar cf - --exclude=library/wasm --exclude=target abi sdk library) |
    (cd "$stage/filters" && tar xmf -)

RUSTFLAGS="--remap-path-prefix=$stage=/src --remap-path-prefix=$cargo_home=/cargo"
export RUSTFLAGS
export CARGO_TARGET_DIR="$target_dir"
(cd "$stage/filters/library" && cargo build --locked --release --target wasm32-unknown-unknown)

mkdir -p "$out"
for manifest in "$stage"/filters/library/*/Cargo.toml; do
    name=$(basename "$(dirname "$manifest")")
    cp "$target_dir/wasm32-unknown-unknown/release/$name.wasm" "$out/$name.wasm"
    echo "$out/$name.wasm $(wc -c <"$out/$name.wasm") bytes"
done
rm -rf "$stage"
