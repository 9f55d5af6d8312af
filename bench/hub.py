#!/usr/bin/env python3
"""Hub scale: two etherws clients talk through a server (--no-tap) while N
other WebSocket clients sit idle on the same server. Measures iperf3 TCP
(1 stream) and ping RTT between the two, first with no idle clients, then
with N, and prints the ratio. Three network namespaces on veths,
198.18.0.0/15 only, removed afterwards. Run as root (bench/run.sh builds
the binary; this script does not):

    python3 bench/hub.py [--idle 1000] [--seconds 10]
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BIN, ROOT, Netns, git_rev, progress, sh, stop_procs, wait_port  # noqa: E402

# Opens N WebSocket connections (batches of 50: the server admits 64
# pending handshakes per address) and holds them open, answering pings,
# until stdin closes. Prints "ready N" once all are open.
IDLE = r"""
import asyncio, sys, websockets
async def main(url, n):
    conns = []
    for i in range(0, n, 50):
        conns += await asyncio.gather(*[websockets.connect(url, max_size=None, open_timeout=30)
                                        for _ in range(min(50, n - i))])
    print("ready", len(conns), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--idle", type=int, default=1000, help="idle clients (default 1000)")
    ap.add_argument("--seconds", type=int, default=10, help="seconds per iperf3 run (default 10)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = ap.parse_args()
    tag = "ewh%d" % os.getpid()
    spaces, procs = [], []
    try:
        for n in ("s", "c1", "c2"):  # each one kept as made: torn down on failure
            spaces.append(Netns("%s-%s" % (tag, n)))
        s, c1, c2 = spaces
        for i, c in ((1, c1), (2, c2)):
            sh("ip", "link", "add", "hv%d" % i, "netns", s.name, "type", "veth",
               "peer", "name", "hv0", "netns", c.name)
            s.ip("addr", "add", "198.18.%d.1/24" % i, "dev", "hv%d" % i)
            s.ip("link", "set", "hv%d" % i, "up")
            c.ip("addr", "add", "198.18.%d.2/24" % i, "dev", "hv0")
            c.ip("link", "set", "hv0", "up")
        procs.append(s.spawn(BIN, "-q", "server", "--no-tap", "--listen", "0.0.0.0:8080"))
        wait_port(s, "8080")
        for i, c in ((1, c1), (2, c2)):
            procs.append(c.spawn(BIN, "-q", "client", "ws://198.18.%d.1:8080/" % i, "--tap", "ethws0",
                                 "--address", "198.19.0.%d/24" % (i + 1)))
        iperf = c2.spawn("iperf3", "-s", "-p", "5201")
        procs.append(iperf)
        for _ in range(60):
            if subprocess.run(["ip", "netns", "exec", c1.name, "ping", "-c1", "-W1", "-q", "198.19.0.3"],
                              capture_output=True).returncode == 0:
                break
        else:
            raise RuntimeError("the two clients cannot reach each other")

        def measure():
            tcp = None
            for _ in range(3):
                out = c1.run("iperf3", "-c", "198.19.0.3", "-p", "5201", "-t", str(args.seconds), "-J",
                             timeout=args.seconds + 60, check=False)
                j = json.loads(out)
                if "error" not in j:
                    tcp = j["end"]["sum_received"]["bits_per_second"] / 1e9
                    break
                time.sleep(1)
            out = c1.run("ping", "-c", "200", "-i", "0.01", "-W", "1", "-n", "198.19.0.3", check=False, timeout=60)
            times = [float(m) * 1000 for m in re.findall(r"time=([0-9.]+) ms", out)]
            return {"tcp1_gbps": tcp, "rtt_median_us": statistics.median(times) if times else None}

        progress("hub: 2 clients, no idle ones ...")
        base = measure()
        progress("hub: opening %d idle clients ..." % args.idle)
        idle = subprocess.Popen(["ip", "netns", "exec", c1.name, "/usr/bin/python3", "-c", IDLE,
                                 "ws://198.18.1.1:8080/", str(args.idle)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs.append(idle)
        line = idle.stdout.readline().strip()
        if line != "ready %d" % args.idle:
            raise RuntimeError("idle clients: %r" % line)
        progress("hub: 2 clients beside %d idle ones ..." % args.idle)
        loaded = measure()
        idle.stdin.close()
        res = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "kernel": os.uname().release,
               "cpus": os.cpu_count(), "git": git_rev(), "seconds": args.seconds, "idle_clients": args.idle,
               "without_idle": base, "with_idle": loaded}
        print("%-28s %14s %14s" % ("", "TCP 1 (Gbit/s)", "RTT median (us)"))
        for name, r in (("2 clients", base), ("2 clients + %d idle" % args.idle, loaded)):
            print("%-28s %14.2f %14.0f" % (name, r["tcp1_gbps"] or 0, r["rtt_median_us"] or 0))
        if base["tcp1_gbps"] and loaded["tcp1_gbps"]:
            print("ratio with/without idle clients: %.2f" % (loaded["tcp1_gbps"] / base["tcp1_gbps"]))
        os.makedirs(args.out, exist_ok=True)
        path = os.path.join(args.out, "%s-%s-hub%d.json" % (time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
                                                            res["git"], args.idle))
        with open(path, "w") as f:
            json.dump(res, f, indent=2)
        print("written: %s" % os.path.relpath(path, ROOT))
    finally:
        stop_procs(procs)
        for ns in spaces:
            ns.delete()


if __name__ == "__main__":
    main()
