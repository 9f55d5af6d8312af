#!/usr/bin/env bash
# Throughput benchmark: iperf3 TCP through an etherws tunnel between two
# network namespaces, and through the kernel's own L2 tunnel (vxlan) on the
# same veth underlay, in the same run. Prints both and their ratio.
#
#   sudo bench/run.sh                 # MTU 1500, 1 stream, 10 s
#   MTU=9000 SECS=20 sudo bench/run.sh
#
# Addresses: 198.18.0.0/15 only, inside namespaces this script creates and
# deletes (also on failure or Ctrl-C).
set -euo pipefail
cd "$(dirname "$0")/.."
MTU=${MTU:-1500}
SECS=${SECS:-10}
STREAMS=${STREAMS:-1}
[ "$(id -u)" = 0 ] || { echo "bench: run as root" >&2; exit 1; }
command -v iperf3 >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iperf3 >/dev/null; }
cargo build --release -q
BIN=$PWD/target/release/etherws

A=ewbench$$-a; B=ewbench$$-b; PIDS=()
cleanup() {
  # Everything still running in our namespaces is ours (iperf3 daemons,
  # etherws started in subshells).
  for ns in "$A" "$B"; do for p in $(ip netns pids "$ns" 2>/dev/null); do PIDS+=("$p"); done; done
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  ip netns del "$A" 2>/dev/null || true
  ip netns del "$B" 2>/dev/null || true
}
trap cleanup EXIT INT TERM

ip netns add "$A"; ip netns add "$B"
ip link add veth0 netns "$A" mtu $((MTU + 50)) type veth peer name veth0 netns "$B" mtu $((MTU + 50))
for ns in "$A" "$B"; do ip -n "$ns" link set lo up; ip -n "$ns" link set veth0 up; done
ip -n "$A" addr add 198.18.0.1/24 dev veth0
ip -n "$B" addr add 198.18.0.2/24 dev veth0

# Kernel VXLAN: 198.19.1.0/24.
ip -n "$A" link add vx0 mtu "$MTU" type vxlan id 42 local 198.18.0.1 remote 198.18.0.2 dstport 4789 dev veth0
ip -n "$B" link add vx0 mtu "$MTU" type vxlan id 42 local 198.18.0.2 remote 198.18.0.1 dstport 4789 dev veth0
ip -n "$A" addr add 198.19.1.1/24 dev vx0; ip -n "$A" link set vx0 up
ip -n "$B" addr add 198.19.1.2/24 dev vx0; ip -n "$B" link set vx0 up

# A trivial pass filter (verdict 0) for the filter-chain run.
FDIR=$(mktemp -d)
cat > "$FDIR/pass.wat" <<'WAT'
(module
  (memory (export "memory") 2)
  (func (export "etherws_abi_version") (result i32) i32.const 1)
  (func (export "etherws_frame_buffer") (result i32) i32.const 1024)
  (func (export "etherws_frame_capacity") (result i32) i32.const 65600)
  (func (export "etherws_filter") (param i32 i32 i32 i32) (result i32) i32.const 0))
WAT

wait_ping() {
  for _ in $(seq 1 60); do ip netns exec "$B" ping -c1 -W1 -q "$1" >/dev/null 2>&1 && return 0; done
  echo "bench: $1 unreachable" >&2; return 1
}
gbps() { # server_ip port -> Gbit/s received
  ip netns exec "$B" iperf3 -c "$1" -p "$2" -t "$SECS" -P "$STREAMS" -J \
    | python3 -c 'import json,sys; print("%.3f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))'
}
# etherws: 198.19.0.0/24; extra arguments go to both server and client.
etherws_gbps() {
  ip netns exec "$A" "$BIN" -q server --listen 198.18.0.1:8080 --tap ethws0 --mtu "$MTU" --address 198.19.0.1/24 "$@" >/dev/null & local s=$!
  ip netns exec "$B" "$BIN" -q client ws://198.18.0.1:8080/ --tap ethws0 --mtu "$MTU" --address 198.19.0.2/24 "$@" >/dev/null & local c=$!
  PIDS+=("$s" "$c")
  wait_ping 198.19.0.1 >&2
  gbps 198.19.0.1 5201
  kill "$s" "$c"; wait "$s" "$c" 2>/dev/null || true
}
ip netns exec "$A" iperf3 -s -p 5201 -D --logfile /dev/null
ip netns exec "$A" iperf3 -s -B 198.19.1.1 -p 5202 -D --logfile /dev/null
wait_ping 198.19.1.1

V=$(gbps 198.19.1.1 5202)
E=$(etherws_gbps)
F=$(etherws_gbps --filter "$FDIR/pass.wat" --filter "$FDIR/pass.wat" --filter "$FDIR/pass.wat")
rm -rf "$FDIR"
echo "MTU $MTU, $STREAMS stream(s), $SECS s, $(nproc) cores"
echo "kernel vxlan : $V Gbit/s"
echo "etherws ws://: $E Gbit/s"
echo "etherws + 3 pass filters (ingress, both ends): $F Gbit/s"
python3 -c "print('ratio etherws/vxlan: %.2f' % ($E/$V))"
python3 -c "print('ratio with 3 filters / without: %.2f' % ($F/$E))"
