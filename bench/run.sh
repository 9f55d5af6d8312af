#!/usr/bin/env bash
# The benchmark harness: etherws against the raw veth, the kernel's own L2
# tunnel (vxlan), and OpenVPN, in two network namespaces this script creates
# and removes (198.18.0.0/15 only). Prints a table with ratios to vxlan and
# writes JSON under bench/results/. Run as root:
#
#   bench/run.sh                          # MTU 1500, 10 s per run, 1 round
#   bench/run.sh --mtu 9000 --seconds 5 --rounds 3
#   bench/run.sh --systems vxlan,ws       # a subset
#   bench/run.sh --systems ws,udp,quic --loss 2 --delay 20 --cc cubic   # a lossy path
#   bench/run.sh --hub --idle 1000        # hub scale (bench/hub.py)
#
# See bench/harness.py --help for every option.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench: run as root" >&2; exit 1; }
need=()
command -v iperf3 >/dev/null || need+=(iperf3)
command -v python3 >/dev/null || need+=(python3)
command -v openssl >/dev/null || need+=(openssl)
command -v openvpn >/dev/null || need+=(openvpn)
command -v ping >/dev/null || need+=(iputils-ping)
command -v ethtool >/dev/null || need+=(ethtool)   # --loss/--delay: offloads off on the lossy path
/usr/bin/python3 -c 'import websockets' 2>/dev/null || need+=(python3-websockets)  # bench/hub.py
if ((${#need[@]})); then
  blocker=/usr/sbin/policy-rc.d   # no service starts (openvpn) on install
  if [ ! -e "$blocker" ]; then printf '#!/bin/sh\nexit 101\n' > "$blocker"; chmod +x "$blocker"; trap 'rm -f "$blocker"' EXIT; fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  rm -f "$blocker"; trap - EXIT
fi
cargo build --release -q
if [ "${1:-}" = --hub ]; then shift; exec python3 bench/hub.py "$@"; fi
exec python3 bench/harness.py "$@"
