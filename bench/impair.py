#!/usr/bin/env python3
"""A lossy, slow wire in userspace: forwards Ethernet frames between two
interfaces (both ways) through AF_PACKET sockets, dropping each with a
given probability and holding each for a given delay. For kernels without
sch_netem (this one). Run inside the namespace that holds both interfaces;
the harness starts it (bench/harness.py --loss/--delay) and ends it.

    impair.py IF1 IF2 --loss 0.02 --delay-ms 10 [--seed 1] [--max-seconds 3600]

Offloads must be off on the path (ethtool -K ... tso off gso off gro off
tx off): frames are forwarded as they are read, at most 65535 bytes, with
their checksums as the sender left them. Each direction has its own queue,
bounded at 20000 frames (beyond, frames are dropped, as a real queue
would). Standard library only.
"""

import argparse
import collections
import os
import random
import select
import signal
import socket
import sys
import time

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
QUEUE_MAX = 20000


def open_if(name):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((name, 0))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    s.setblocking(False)
    return s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("if1")
    ap.add_argument("if2")
    ap.add_argument("--loss", type=float, default=0.0, help="drop probability per frame, each way")
    ap.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay added, each way")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-seconds", type=float, default=3600, help="exit after this long")
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    delay = a.delay_ms / 1000.0
    s1, s2 = open_if(a.if1), open_if(a.if2)
    peer = {s1.fileno(): s2, s2.fileno(): s1}
    socks = {s1.fileno(): s1, s2.fileno(): s2}
    queues = {s1.fileno(): collections.deque(), s2.fileno(): collections.deque()}
    counts = {"in": 0, "lost": 0, "overflow": 0, "out": 0}
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    end = time.monotonic() + a.max_seconds
    poller = select.epoll()
    for fd in socks:
        poller.register(fd, select.EPOLLIN)
    while not stop and time.monotonic() < end:
        now = time.monotonic()
        due = min((q[0][0] for q in queues.values() if q), default=now + 0.1)
        for fd, _ in poller.poll(max(0.0, min(0.1, due - now))):
            s = socks[fd]
            for _ in range(256):
                try:
                    frame, addr = s.recvfrom(65535)
                except BlockingIOError:
                    break
                if addr[2] == PACKET_OUTGOING:
                    continue  # our own sends on this interface
                counts["in"] += 1
                if a.loss and rnd.random() < a.loss:
                    counts["lost"] += 1
                    continue
                q = queues[fd]
                if len(q) >= QUEUE_MAX:
                    counts["overflow"] += 1
                    continue
                q.append((time.monotonic() + delay, frame))
        now = time.monotonic()
        for fd, q in queues.items():
            out = peer[fd]
            while q and q[0][0] <= now:
                try:
                    out.send(q[0][1])
                except BlockingIOError:
                    break
                except OSError:
                    pass  # e.g. a frame above the MTU: lost
                q.popleft()
                counts["out"] += 1
    print("impair: %(in)d frames in, %(lost)d lost, %(overflow)d over the queue, %(out)d out" % counts,
          file=sys.stderr)


if __name__ == "__main__":
    main()
