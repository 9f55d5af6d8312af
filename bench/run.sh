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
iperf() { # server_ip port -> "Gbit/s bytes" received
  ip netns exec "$B" iperf3 -c "$1" -p "$2" -t "$SECS" -P "$STREAMS" -J \
    | python3 -c 'import json,sys; r=json.load(sys.stdin)["end"]["sum_received"]; print("%.3f %d" % (r["bits_per_second"]/1e9, r["bytes"]))'
}
gbps() { iperf "$@" | cut -d' ' -f1; }
cpu_ticks() { # pids -> utime+stime in clock ticks, summed
  local t=0 p
  for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
  echo "$t"
}
# A CA and a server certificate for the wss:// run.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj /CN=bench-ca -keyout "$FDIR/ca.key" -out "$FDIR/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=198.18.0.1 \
  -keyout "$FDIR/key.pem" -out "$FDIR/req.csr" 2>/dev/null
printf 'subjectAltName=IP:198.18.0.1\nbasicConstraints=CA:FALSE\n' > "$FDIR/ext"
openssl x509 -req -in "$FDIR/req.csr" -CA "$FDIR/ca.pem" -CAkey "$FDIR/ca.key" -CAcreateserial \
  -days 1 -extfile "$FDIR/ext" -out "$FDIR/cert.pem" 2>/dev/null
# etherws over SCHEME (ws or wss): 198.19.0.0/24; extra arguments go to
# both server and client. Prints "Gbit/s cpu_seconds_per_GB" (CPU of both
# etherws processes during the iperf3 run, per GB received).
etherws_run() {
  local scheme=$1; shift
  local sargs=() cargs=()
  if [ "$scheme" = wss ]; then
    sargs=(--tls-cert "$FDIR/cert.pem" --tls-key "$FDIR/key.pem"); cargs=(--ca "$FDIR/ca.pem")
  fi
  ip netns exec "$A" "$BIN" -q server --listen 198.18.0.1:8080 --tap ethws0 --mtu "$MTU" --address 198.19.0.1/24 "${sargs[@]}" "$@" >/dev/null & local s=$!
  for _ in $(seq 1 200); do ip netns exec "$A" ss -ltn | grep -q '198.18.0.1:8080' && break; sleep 0.05; done
  ip netns exec "$B" "$BIN" -q client "$scheme://198.18.0.1:8080/" --tap ethws0 --mtu "$MTU" --address 198.19.0.2/24 "${cargs[@]}" "$@" >/dev/null & local c=$!
  PIDS+=("$s" "$c")
  wait_ping 198.19.0.1 >&2
  local before; before=$(cpu_ticks "$s" "$c")
  local out; out=$(iperf 198.19.0.1 5201)
  local after; after=$(cpu_ticks "$s" "$c")
  kill "$s" "$c"; wait "$s" "$c" 2>/dev/null || true
  python3 -c "import sys; g,b=sys.argv[1].split(); t=(int(sys.argv[2])-int(sys.argv[3]))/$(getconf CLK_TCK); print('%s %.2f' % (g, t/(int(b)/1e9)))" "$out" "$after" "$before"
}
ip netns exec "$A" iperf3 -s -p 5201 -D --logfile /dev/null
ip netns exec "$A" iperf3 -s -B 198.19.1.1 -p 5202 -D --logfile /dev/null
wait_ping 198.19.1.1

V=$(gbps 198.19.1.1 5202)
read -r E ECPU < <(etherws_run ws)
read -r T TCPU < <(etherws_run wss)
read -r F FCPU < <(etherws_run ws --filter "$FDIR/pass.wat" --filter "$FDIR/pass.wat" --filter "$FDIR/pass.wat")
rm -rf "$FDIR"
echo "MTU $MTU, $STREAMS stream(s), $SECS s, $(nproc) cores"
echo "kernel vxlan : $V Gbit/s"
echo "etherws ws://: $E Gbit/s, $ECPU CPU s/GB (both ends)"
echo "etherws wss://: $T Gbit/s, $TCPU CPU s/GB (both ends)"
echo "etherws + 3 pass filters (ingress, both ends): $F Gbit/s, $FCPU CPU s/GB"
python3 -c "print('ratio etherws/vxlan: %.2f' % ($E/$V))"
python3 -c "print('ratio wss/ws: %.2f, CPU per GB wss/ws: %.2f' % ($T/$E, $TCPU/$ECPU))"
python3 -c "print('ratio with 3 filters / without: %.2f' % ($F/$E))"
