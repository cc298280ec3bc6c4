#!/usr/bin/env python3
"""Numbered UDP datagrams for the capture benchmarks.

  numbered.py send PORT RATE SECONDS [SIZES]
      send datagrams 0..RATE*SECONDS-1 at RATE/s to 127.0.0.1:PORT; SIZES
      is a comma-separated list of UDP payload sizes used in turn (default:
      the smallest that holds the number, 21 bytes), e.g. 64,512,1400
  numbered.py count TOTAL FILE...
      report how many of 0..TOTAL-1 the pcaps hold, and how many twice
"""
import json
import socket
import sys
import time

import dpkt  # pcap parsing (PyPI), not hand-written

MARK = b"s3td-seq:"
DIGITS = 12
# Pacing granularity: the datagrams due in each slice go back to back, then
# the sender sleeps. Pacing each datagram alone would busy-wait a whole core
# at 50,000/s, a core the captures under test need on a small machine.
SLICE = 0.001


def payloads(sizes):
    smallest = len(MARK) + DIGITS
    return [b"\0" * max(0, size - smallest) for size in sizes]


def send(port, rate, seconds, sizes):
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", port))  # a listener, so no ICMP unreachable storm
    sink.setblocking(False)
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    out.connect(("127.0.0.1", port))
    pads = payloads(sizes)
    total = rate * seconds
    sent = errors = 0
    start = time.perf_counter()
    while sent + errors < total:
        now = time.perf_counter()
        due = min(total, int((now - start) * rate) + 1)
        for i in range(sent + errors, due):
            try:
                out.send(b"%s%012d%s" % (MARK, i, pads[i % len(pads)]))
                sent += 1
            except OSError:
                errors += 1
        try:
            while sink.recv(2048):
                pass
        except BlockingIOError:
            pass
        pause = start + due / rate - time.perf_counter()
        if pause > 0:
            time.sleep(max(pause, SLICE))
    elapsed = time.perf_counter() - start
    print(json.dumps({"sent": sent, "send_errors": errors, "seconds": round(elapsed, 2),
                      "rate": round(sent / elapsed) if elapsed else 0}))


def count(total, files):
    seen = set()
    duplicates = 0
    for name in files:
        with open(name, "rb") as f:
            try:
                reader = dpkt.pcap.Reader(f)
            except (ValueError, dpkt.Error):
                continue  # no file header: the callers count it as damaged
            for _, data in reader:
                at = data.find(MARK)
                if at < 0:
                    continue
                n = int(data[at + len(MARK): at + len(MARK) + DIGITS])
                if n in seen:
                    duplicates += 1
                seen.add(n)
    got = len([n for n in seen if n < total])
    lost = total - got
    print(json.dumps({"sent": total, "captured": got, "lost": lost,
                      "loss_pct": round(100.0 * lost / total, 2) if total else 0.0,
                      "duplicates": duplicates, "files": len(files)}))


if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[1] == "send":
        sizes = [int(s) for s in sys.argv[5].split(",")] if len(sys.argv) > 5 else [0]
        send(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sizes)
    elif len(sys.argv) >= 3 and sys.argv[1] == "count":
        count(int(sys.argv[2]), sys.argv[3:])
    else:
        sys.exit(__doc__)
