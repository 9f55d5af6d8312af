#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests and the end-to-end
# tests that drive the real binary in network namespaces.
#
# Run as root (the end-to-end tests create namespaces and TAP devices).
# Installs the tools the tests use when they are missing (Debian/apt).
set -euo pipefail
cd "$(dirname "$0")"

need=()
command -v ping >/dev/null 2>&1 || need+=(iputils-ping)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)
command -v tcpdump >/dev/null 2>&1 || need+=(tcpdump)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v nginx >/dev/null 2>&1 || need+=(nginx)
command -v tinyproxy >/dev/null 2>&1 || need+=(tinyproxy-bin)
command -v squid >/dev/null 2>&1 || need+=(squid)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v man >/dev/null 2>&1 || need+=(man-db)
command -v dpkg-deb >/dev/null 2>&1 || need+=(dpkg)
command -v python3 >/dev/null 2>&1 || need+=(python3)
/usr/bin/python3 -c 'import websockets' >/dev/null 2>&1 || need+=(python3-websockets)
if ((${#need[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing ${need[*]}"
    # Install without starting services (nginx): the tests start their own,
    # inside their namespaces.
    blocker=/usr/sbin/policy-rc.d
    if [ ! -e "$blocker" ]; then
      printf '#!/bin/sh\nexit 101\n' > "$blocker" && chmod +x "$blocker"
      trap 'rm -f "$blocker"' EXIT
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    rm -f "$blocker"; trap - EXIT
  else
    echo "test.sh: missing ${need[*]}; install them (or run as root on Debian)" >&2
    exit 1
  fi
fi

# The package test builds the .deb with cargo-deb (pinned: its next major
# version refuses the dev profile the tests' binary is built with).
if ! command -v cargo-deb >/dev/null 2>&1; then
  echo "test.sh: installing cargo-deb"
  cargo install cargo-deb --version 3.8.0 --locked --quiet
fi

# The tests that rebuild the filter library and the example filters from
# their Rust sources need the wasm32 target; everything else runs without.
if [ ! -d "$(rustc --print sysroot)/lib/rustlib/wasm32-unknown-unknown" ]; then
  if command -v rustup >/dev/null 2>&1 && rustup target add wasm32-unknown-unknown; then
    :
  else
    echo "test.sh: WARNING: could not install the wasm32-unknown-unknown target;" >&2
    echo "test.sh: the tests that build wasm from Rust will be SKIPPED" >&2
    export ETHERWS_NO_WASM32=1
  fi
fi

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace "$@"
if [ "${ETHERWS_NO_WASM32:-}" = 1 ]; then
  # Last lines of the run: a green run says what it did not test.
  echo "test.sh: WARNING: the wasm32-unknown-unknown target was missing: the tests that" >&2
  echo "test.sh: build the filters from their Rust sources were SKIPPED (the rest passed)" >&2
fi
