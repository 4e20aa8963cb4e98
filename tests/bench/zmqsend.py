"""What one ZeroMQ PUB send costs, in a burst and paced like a live stream:
``python -m tests.bench.zmqsend [--n 20000]``.

A subscriber runs in another process; the publisher times ``send_multipart`` of a bbo-sized
message over tcp:// and ipc://, back to back and then one every 200 µs (busy-wait). A lone
message costs more than one in a burst: libzmq hands it to its I/O thread, which must be woken
each time, where a burst is picked up in one go.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time

import orjson
import zmq

from tests.procs import free_port

SUBSCRIBER = """
import sys, zmq
s = zmq.Context().socket(zmq.SUB)
s.setsockopt(zmq.SUBSCRIBE, b"")
s.setsockopt(zmq.RCVHWM, 0)
s.connect(sys.argv[1])
while True:
    s.recv_multipart()
"""


def send_cost_us(endpoint: str, n: int, pace_s: float) -> float:
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, 0)
    pub.bind(endpoint)
    sub = subprocess.Popen([sys.executable, "-c", SUBSCRIBER, endpoint])
    try:
        time.sleep(1.0)  # the subscription reaches the publisher
        body = orjson.dumps(
            {"type": "bbo", "venue": "binance", "symbol": "BTC-USDT", "bid": [65000.1, 0.5],
             "ask": [65000.2, 1.2], "ts_recv": time.time_ns(), "seq": 1}
        )  # fmt: skip
        spent = 0.0
        for _ in range(n):
            t = time.perf_counter()
            pub.send_multipart((b"bbo.binance.BTC-USDT", body), zmq.NOBLOCK)
            spent += time.perf_counter() - t
            if pace_s:
                end = time.perf_counter() + pace_s
                while time.perf_counter() < end:
                    pass
        return 1e6 * spent / n
    finally:
        sub.kill()
        sub.wait()
        ctx.destroy(0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.bench.zmqsend", description=__doc__)
    ap.add_argument("--n", type=int, default=20000)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        for ep in (f"tcp://127.0.0.1:{free_port()}", f"ipc://{tmp}/bench.ipc"):
            burst = send_cost_us(ep, args.n, 0.0)
            paced = send_cost_us(ep, max(args.n // 5, 1000), 0.0002)
            print(f"{ep.split(':')[0]:4}  send_multipart: {burst:6.1f} µs in a burst,"
                  f" {paced:6.1f} µs one every 200 µs")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
