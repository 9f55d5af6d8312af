#!/usr/bin/env python3
"""etherws benchmark harness (run it through bench/run.sh, as root).

Two network namespaces joined by a veth pair (198.18.0.0/15 only, no route
out, removed afterwards, also on failure or Ctrl-C). For each system, in one
run: iperf3 TCP with 1 stream each way and 4 streams, ping RTT (median and p99 of 200 probes
10 ms apart), 64-byte UDP frames received per second, and the CPU seconds
the tunnel's processes spent per GB received. Systems: the raw veth, the
kernel's own L2 tunnel (vxlan, the reference every figure is compared to),
etherws over ws://, wss://, udp:// (also with --udp-offload) and quic://,
etherws with three pass
filters on both ends, and OpenVPN in tap mode over TCP when it is
installed. Prints a table with every figure also as a ratio to vxlan, and
writes the figures as JSON under bench/results/. With --rounds N each
figure is the median of N rounds.

With --loss/--delay the veth pair becomes two, joined in a third
namespace by bench/impair.py, which drops and delays frames in userspace
(the kernel here has no sch_netem); offloads are turned off on that path
(ethtool). --cc sets the congestion control of iperf3's TCP (inside the
tunnel), --outer-cc that of ws:// and wss://'s own TCP (etherws --tcp-cc),
--quic-cc QUIC's (default: the binary's own). The underlay is 1500 bytes
under a 1500-byte overlay, the path users have (--underlay-mtu).

Standard library only.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# ETHERWS_BIN: another build to measure (e.g. the commit before a change,
# for a before/after pair of runs).
BIN = os.environ.get("ETHERWS_BIN") or os.path.join(ROOT, "target", "release", "etherws")

# The library's pass filter (declares CAP_SUPER_FRAMES, like every filter
# that only reads headers).
PASS_WASM = os.path.join(ROOT, "filters", "library", "wasm", "pass.wasm")


def sh(*cmd, check=True, capture=True, timeout=120):
    r = subprocess.run(cmd, capture_output=capture, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError("`%s` failed: %s" % (" ".join(cmd), (r.stderr or "").strip()))
    return r.stdout if capture else ""


def progress(msg):
    print(msg, file=sys.stderr, flush=True)


class Netns:
    def __init__(self, name):
        self.name = name
        sh("ip", "netns", "add", name)
        self.ip("link", "set", "lo", "up")

    def ip(self, *args):
        return sh("ip", "-n", self.name, *args)

    def run(self, *cmd, **kw):
        return sh("ip", "netns", "exec", self.name, *cmd, **kw)

    def spawn(self, *cmd, log=None):
        out = open(log, "w") if log else subprocess.DEVNULL
        return subprocess.Popen(["ip", "netns", "exec", self.name, *cmd],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def delete(self):
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


def stop_procs(procs):
    """Ends processes we started: SIGTERM, then SIGKILL after 5 s."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()


def wait_port(ns, port):
    """Waits until something listens on TCP `port` in `ns`."""
    for _ in range(200):
        if (":%s " % port) in ns.run("ss", "-ltn"):
            return
        time.sleep(0.05)
    raise RuntimeError("nothing listens on port %s in %s" % (port, ns.name))


def cpu_ticks(pids):
    total = 0
    for p in pids:
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total


class Harness:
    def __init__(self, args):
        self.args = args
        self.mtu = args.mtu
        self.tmp = tempfile.mkdtemp(prefix="etherws-bench-")
        tag = "ewb%d" % os.getpid()
        self.procs = []
        self.iperf = None
        self.a = Netns(tag + "-a")
        self.m = None
        try:
            self.b = Netns(tag + "-b")
            if args.loss or args.delay:
                self.m = Netns(tag + "-m")
        except Exception:
            self.a.delete()
            if getattr(self, "b", None):
                self.b.delete()
            raise
        try:
            self.underlay()
        except Exception:
            self.close()
            raise

    def underlay(self):
        # The path users have: a 1500-byte underlay under a 1500-byte
        # overlay, unless told otherwise (--underlay-mtu).
        mtu = str(self.args.underlay_mtu)
        if self.m is None:
            sh("ip", "link", "add", "veth0", "netns", self.a.name, "mtu", mtu,
               "type", "veth", "peer", "name", "veth0", "netns", self.b.name, "mtu", mtu)
        else:
            for ns, side in ((self.a, "va"), (self.b, "vb")):
                sh("ip", "link", "add", "veth0", "netns", ns.name, "mtu", mtu,
                   "type", "veth", "peer", "name", side, "netns", self.m.name, "mtu", mtu)
                self.m.ip("link", "set", side, "up")
                self.m.run("ethtool", "-K", side, "tso", "off", "gso", "off", "gro", "off", "tx", "off")
        for ns, addr in ((self.a, "198.18.0.1/24"), (self.b, "198.18.0.2/24")):
            ns.ip("addr", "add", addr, "dev", "veth0")
            ns.ip("link", "set", "veth0", "up")
            if self.m is not None:
                ns.run("ethtool", "-K", "veth0", "tso", "off", "gso", "off", "gro", "off", "tx", "off")
        if self.m is not None:
            self.impair = self.m.spawn(
                sys.executable, os.path.join(HERE, "impair.py"), "va", "vb",
                "--loss", str(self.args.loss / 100.0), "--delay-ms", str(self.args.delay),
                log=os.path.join(self.tmp, "impair.log"))
            self.procs.append(self.impair)
        self.restart_iperf()

    def restart_iperf(self):
        """A fresh iperf3 server: one that still runs a test a client gave
        up on (it happens on a lossy path) refuses the next."""
        if self.iperf:
            stop_procs([self.iperf])
        self.iperf = self.a.spawn("iperf3", "-s", "-p", "5201")
        wait_port(self.a, "5201")

    def close(self):
        stop_procs(self.procs + ([self.iperf] if self.iperf else []))
        if self.m is not None:
            try:
                with open(os.path.join(self.tmp, "impair.log")) as f:
                    progress(f.read().strip())
            except OSError:
                pass
            self.m.delete()
        self.a.delete()
        self.b.delete()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def wait_ping(self, addr):
        for _ in range(60):
            r = subprocess.run(["ip", "netns", "exec", self.b.name, "ping", "-c1", "-W1", "-q", addr],
                               capture_output=True)
            if r.returncode == 0:
                return
        raise RuntimeError("%s unreachable" % addr)

    def stop(self, procs):
        stop_procs(procs)
        for p in procs:
            self.procs.remove(p)

    # --- systems: each sets up, returns (target address, tunnel pids, teardown) ---

    def sys_veth(self):
        return "198.18.0.1", [], lambda: None

    def sys_vxlan(self):
        for ns, local, remote, addr in ((self.a, "198.18.0.1", "198.18.0.2", "198.19.1.1/24"),
                                        (self.b, "198.18.0.2", "198.18.0.1", "198.19.1.2/24")):
            ns.ip("link", "add", "vx0", "mtu", str(self.mtu), "type", "vxlan", "id", "42",
                  "local", local, "remote", remote, "dstport", "4789", "dev", "veth0")
            ns.ip("addr", "add", addr, "dev", "vx0")
            ns.ip("link", "set", "vx0", "up")

        def down():
            self.a.ip("link", "del", "vx0")
            self.b.ip("link", "del", "vx0")
        return "198.19.1.1", [], down

    def etherws(self, scheme="ws", extra=()):
        sargs, cargs = [], []
        if scheme in ("wss", "quic"):
            self.make_cert()
            sargs = ["--tls-cert", os.path.join(self.tmp, "cert.pem"),
                     "--tls-key", os.path.join(self.tmp, "key.pem")]
            cargs = ["--ca", os.path.join(self.tmp, "ca.pem")]
        if scheme == "quic":
            if self.args.quic_cc:
                sargs += ["--quic-cc", self.args.quic_cc]
                cargs += ["--quic-cc", self.args.quic_cc]
        if scheme in ("ws", "wss") and self.args.outer_cc:
            sargs += ["--tcp-cc", self.args.outer_cc]
            cargs += ["--tcp-cc", self.args.outer_cc]
        common = ["--tap", "ethws0", "--mtu", str(self.mtu)] + list(extra)
        listen = {"udp": "udp://198.18.0.1:8080", "quic": "quic://198.18.0.1:8080"}.get(scheme, "198.18.0.1:8080")
        # --udp-offload goes to both ends (extra does), like --filter.
        s = self.a.spawn(BIN, "-q", "server", "--listen", listen, "--address",
                         "198.19.0.1/24", *common, *sargs, log=os.path.join(self.tmp, "server.log"))
        self.procs.append(s)
        if scheme in ("ws", "wss"):
            wait_port(self.a, "8080")
        # udp and quic: the client says hello until the server answers.
        c = self.b.spawn(BIN, "-q", "client", "%s://198.18.0.1:8080/" % scheme, "--address",
                         "198.19.0.2/24", *common, *cargs, log=os.path.join(self.tmp, "client.log"))
        self.procs.append(c)
        return "198.19.0.1", [s.pid, c.pid], lambda: self.stop([s, c])

    def sys_ws(self):
        return self.etherws("ws")

    def sys_wss(self):
        return self.etherws("wss")

    def sys_udp(self):
        return self.etherws("udp")

    def sys_udp_offload(self):
        return self.etherws("udp", ["--udp-offload"])

    def sys_quic(self):
        return self.etherws("quic")

    def sys_ws_filters(self):
        return self.etherws("ws", ["--filter", PASS_WASM] * 3)

    def sys_openvpn(self):
        key = os.path.join(self.tmp, "ovpn.key")
        if not os.path.exists(key):
            sh("openvpn", "--genkey", "secret", key)
        common = ["--dev", "ovtap", "--dev-type", "tap", "--secret", key, "--cipher", "AES-256-CBC",
                  "--auth", "SHA256", "--tun-mtu", str(self.mtu), "--verb", "1", "--tcp-nodelay"]
        s = self.a.spawn("openvpn", "--proto", "tcp-server", "--local", "198.18.0.1", "--lport", "1194",
                         "--ifconfig", "198.19.2.1", "255.255.255.0", *common,
                         log=os.path.join(self.tmp, "ovpn-s.log"))
        self.procs.append(s)
        wait_port(self.a, "1194")
        c = self.b.spawn("openvpn", "--proto", "tcp-client", "--remote", "198.18.0.1", "1194",
                         "--ifconfig", "198.19.2.2", "255.255.255.0", *common,
                         log=os.path.join(self.tmp, "ovpn-c.log"))
        self.procs.append(c)
        return "198.19.2.1", [s.pid, c.pid], lambda: self.stop([s, c])

    def make_cert(self):
        if os.path.exists(os.path.join(self.tmp, "cert.pem")):
            return
        t = self.tmp
        q = dict(check=True)
        sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
           "-days", "1", "-subj", "/CN=bench-ca", "-keyout", t + "/ca.key", "-out", t + "/ca.pem", **q)
        sh("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
           "-subj", "/CN=198.18.0.1", "-keyout", t + "/key.pem", "-out", t + "/req.csr", **q)
        with open(t + "/ext", "w") as f:
            f.write("subjectAltName=IP:198.18.0.1\nbasicConstraints=CA:FALSE\n")
        sh("openssl", "x509", "-req", "-in", t + "/req.csr", "-CA", t + "/ca.pem", "-CAkey", t + "/ca.key",
           "-CAcreateserial", "-days", "1", "-extfile", t + "/ext", "-out", t + "/cert.pem", **q)

    # --- measurements ---

    def retry(self, what, f):
        """iperf3's server refuses a test that comes right after another
        one now and then: try again, a few times."""
        for attempt in range(3):
            try:
                return f()
            except RuntimeError as e:
                if attempt == 2:
                    raise
                progress("bench: %s: %s; again" % (what, e))
                time.sleep(1)
                self.restart_iperf()

    def iperf_tcp(self, target, streams):
        return self.retry("iperf3 TCP", lambda: self._iperf_tcp(target, streams))

    def udp64(self, target):
        return self.retry("iperf3 UDP", lambda: self._udp64(target))

    def iperf_tcp_reverse(self, target):
        return self.retry("iperf3 TCP -R", lambda: self._iperf_tcp(target, 1, reverse=True))

    def _iperf_tcp(self, target, streams, reverse=False):
        cc = ["-C", self.args.cc] if self.args.cc else []
        rev = ["-R"] if reverse else []
        out = self.b.run("iperf3", "-c", target, "-p", "5201", "-t", str(self.args.seconds),
                         "-P", str(streams), "-J", *cc, *rev, timeout=self.args.seconds + 60, check=False)
        j = json.loads(out)
        if "error" in j:
            raise RuntimeError("iperf3 to %s: %s" % (target, j["error"]))
        r = j["end"]["sum_received"]
        return r["bits_per_second"] / 1e9, r["bytes"]

    def rtt(self, target):
        out = self.b.run("ping", "-c", "200", "-i", "0.01", "-W", "1", "-n", target, check=False, timeout=60)
        times = sorted(float(m) for m in re.findall(r"time=([0-9.]+) ms", out))
        if len(times) < 100:
            return None, None
        p99 = times[min(len(times) - 1, int(round(0.99 * len(times))) - 1)]
        return statistics.median(times) * 1000, p99 * 1000

    def _udp64(self, target):
        # 18 bytes of payload: 14 (Ethernet) + 20 (IPv4) + 8 (UDP) + 18 =
        # 60 bytes, 64 with the FCS the wire would add.
        out = self.b.run("iperf3", "-c", target, "-p", "5201", "-u", "-l", "18", "-b", "0",
                         "-t", str(self.args.seconds), "-J", timeout=self.args.seconds + 60, check=False)
        j = json.loads(out)
        if "error" in j:
            raise RuntimeError("iperf3 UDP to %s: %s" % (target, j["error"]))
        s = j["end"]["sum"]
        received = s["packets"] - s["lost_packets"]
        return received / s["seconds"]

    def measure(self, name):
        target, pids, teardown = getattr(self, "sys_" + name)()
        try:
            self.wait_ping(target)
            before = cpu_ticks(pids)
            gbps1, nbytes = self.iperf_tcp(target, 1)
            after = cpu_ticks(pids)
            cpu = None
            if pids and nbytes:
                cpu = (after - before) / os.sysconf("SC_CLK_TCK") / (nbytes / 1e9)
            gbps4, _ = self.iperf_tcp(target, 4)
            # The other direction: the server's side sends (iperf3 -R).
            gbps1_rev, _ = self.iperf_tcp_reverse(target)
            rtt_med, rtt_p99 = self.rtt(target)
            udp = self.udp64(target)
        finally:
            teardown()
        return {"tcp1_gbps": gbps1, "tcp1_rev_gbps": gbps1_rev, "tcp4_gbps": gbps4, "rtt_median_us": rtt_med,
                "rtt_p99_us": rtt_p99, "udp64_pps": udp, "cpu_s_per_gb": cpu}


METRICS = [("tcp1_gbps", "TCP 1 stream", "Gbit/s", "%.3g"),
           ("tcp1_rev_gbps", "TCP 1 stream back", "Gbit/s", "%.3g"),
           ("tcp4_gbps", "TCP 4 streams", "Gbit/s", "%.3g"),
           ("rtt_median_us", "ping RTT median", "us", "%.0f"), ("rtt_p99_us", "ping RTT p99", "us", "%.0f"),
           ("udp64_pps", "64 B UDP received", "frames/s", "%.0f"), ("cpu_s_per_gb", "CPU", "s/GB", "%.2f")]


def git_rev():
    try:
        return sh("git", "-C", ROOT, "rev-parse", "--short", "HEAD").strip() + \
            ("-dirty" if sh("git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no").strip() else "")
    except Exception:
        return "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mtu", type=int, default=1500, help="overlay MTU (default 1500)")
    ap.add_argument("--seconds", type=int, default=10, help="seconds per iperf3 run (default 10)")
    ap.add_argument("--rounds", type=int, default=1, help="rounds; each figure is the median (default 1)")
    ap.add_argument("--systems", default="veth,vxlan,ws,ws_filters,wss,udp,udp_offload,quic,openvpn",
                    help="comma-separated subset of veth,vxlan,ws,ws_filters,wss,udp,udp_offload,quic,openvpn")
    ap.add_argument("--loss", type=float, default=0.0, help="percent of frames lost on the underlay, each way")
    ap.add_argument("--delay", type=float, default=0.0, help="ms of delay added on the underlay, each way")
    ap.add_argument("--cc", default=None, help="iperf3's TCP congestion control (cubic, bbr...; default: the system's)")
    ap.add_argument("--outer-cc", default=None, help="ws/wss links' TCP congestion control (etherws --tcp-cc)")
    ap.add_argument("--quic-cc", default=None,
                    help="QUIC congestion control: cubic, bbr, newreno (default: what the binary ships)")
    ap.add_argument("--underlay-mtu", type=int, default=1500,
                    help="MTU of the veth underlay (default 1500: the internet's)")
    ap.add_argument("--out", default=os.path.join(HERE, "results"), help="directory for the JSON")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: run as root (namespaces and TAP devices)")
    systems = [s for s in args.systems.split(",") if s]
    if "openvpn" in systems and not shutil.which("openvpn"):
        progress("bench: openvpn not installed: skipping it")
        systems.remove("openvpn")
    def on_term(*_):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    h = Harness(args)
    runs = {s: [] for s in systems}
    try:
        for r in range(args.rounds):
            for s in systems:
                progress("bench: round %d/%d: %s ..." % (r + 1, args.rounds, s))
                runs[s].append(h.measure(s))
    finally:
        h.close()

    def med(vals):
        vals = [v for v in vals if v is not None]
        return statistics.median(vals) if vals else None
    figures = {s: {m: med([run[m] for run in runs[s]]) for m, *_ in METRICS} for s in systems}
    ref = figures.get("vxlan")
    outer_cc = args.outer_cc or open("/proc/sys/net/ipv4/tcp_congestion_control").read().strip()
    tcp_cc = args.cc or outer_cc
    print("\nMTU %d over a %d-byte underlay, %d s per run, %d round(s), %d cores, %s; loss %g%%, "
          "delay %g ms each way; inner TCP %s, outer TCP (ws, wss) %s, QUIC %s" % (
              args.mtu, args.underlay_mtu, args.seconds, args.rounds, os.cpu_count(), platform.release(),
              args.loss, args.delay, tcp_cc, outer_cc, args.quic_cc or "the binary's default"))
    head = "%-11s" % "system" + "".join("%30s" % ("%s (%s)" % (label, unit)) for _, label, unit, _ in METRICS)
    print(head)
    for s in systems:
        row = "%-11s" % s
        for m, _, _, fmt in METRICS:
            v = figures[s][m]
            cell = "–" if v is None else fmt % v
            if v is not None and ref and ref.get(m) and s != "vxlan":
                cell += " (%.2fx)" % (v / ref[m])
            row += "%30s" % cell
        print(row)
    os.makedirs(args.out, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    rev = git_rev()
    result = {"date": now.isoformat(timespec="seconds"), "kernel": platform.release(),
              "cpus": os.cpu_count(), "git": rev, "mtu": args.mtu, "underlay_mtu": args.underlay_mtu,
              "seconds": args.seconds,
              "rounds": args.rounds, "loss_percent": args.loss, "delay_ms_each_way": args.delay,
              "tcp_cc": tcp_cc, "outer_tcp_cc": outer_cc, "quic_cc": args.quic_cc or "default", "figures": figures,
              "ratio_to_vxlan": {s: {m: (figures[s][m] / ref[m] if ref and ref.get(m) and figures[s][m] is not None else None)
                                     for m, *_ in METRICS} for s in systems}}
    impaired = "-loss%g-delay%g-%s-%s" % (args.loss, args.delay, tcp_cc, outer_cc) if (args.loss or args.delay) else ""
    path = os.path.join(args.out, "%s-%s-mtu%d-u%d%s.json" % (
        now.strftime("%Y%m%dT%H%M%SZ"), rev, args.mtu, args.underlay_mtu, impaired))
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    print("\nwritten: %s" % os.path.relpath(path, ROOT))


if __name__ == "__main__":
    main()
