#!/usr/bin/env python3
"""Numbered UDP datagrams for the capture benchmarks.

  numbered.py send PORT RATE SECONDS   send datagrams 0..RATE*SECONDS-1 at RATE/s
  numbered.py count TOTAL FILE...      report how many of 0..TOTAL-1 the pcaps hold
"""
import json
import socket
import sys
import time

import dpkt  # pcap parsing (PyPI), not hand-written

MARK = b"s3td-seq:"


def send(port, rate, seconds):
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", port))  # a listener, so no ICMP unreachable storm
    sink.setblocking(False)
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    total = rate * seconds
    start = time.perf_counter()
    for i in range(total):
        due = start + i / rate
        while True:
            now = time.perf_counter()
            if now >= due:
                break
            if due - now > 0.002:
                time.sleep(due - now - 0.001)
        out.sendto(b"%s%012d" % (MARK, i), ("127.0.0.1", port))
        if i % 1000 == 0:
            try:
                while sink.recv(64):
                    pass
            except BlockingIOError:
                pass
    elapsed = time.perf_counter() - start
    print(json.dumps({"sent": total, "seconds": round(elapsed, 2)}))


def count(total, files):
    seen = set()
    duplicates = 0
    for name in files:
        with open(name, "rb") as f:
            try:
                reader = dpkt.pcap.Reader(f)
            except ValueError:
                continue  # an empty object from a tcpdump that caught nothing
            for _, data in reader:
                at = data.find(MARK)
                if at < 0:
                    continue
                n = int(data[at + len(MARK): at + len(MARK) + 12])
                if n in seen:
                    duplicates += 1
                seen.add(n)
    got = len([n for n in seen if n < total])
    lost = total - got
    print(json.dumps({"sent": total, "captured": got, "lost": lost,
                      "loss_pct": round(100.0 * lost / total, 2),
                      "duplicates": duplicates, "files": len(files)}))


if __name__ == "__main__":
    if sys.argv[1] == "send":
        send(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    elif sys.argv[1] == "count":
        count(int(sys.argv[2]), sys.argv[3:])
    else:
        sys.exit(__doc__)
