"""Follow flowbook's consolidated BTC book with nothing but pyzmq and orjson (the bus contract,
DESIGN.md section 3): ``python examples/follow_btc.py [--endpoint tcp://127.0.0.1:5560]
[--control tcp://127.0.0.1:5660] [--symbol BTC-USD] [--duration S]``.

Frames are ``[topic, payload]``; each payload carries the publisher's ``epoch`` and a per-topic
``seq`` (+1 per message). ``bbo.*`` and ``depth.*`` messages are complete, so a skipped seq or a
new epoch only means we may hold a stale value: ask the control socket for a resync, carry on.
The book builder sends a heartbeat every second: silent for 3 s, it is down and the last values
shown are not live any more.
"""

import argparse
import time

import orjson
import zmq

ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
ap.add_argument("--endpoint", default="tcp://127.0.0.1:5560", help="book builder PUB")
ap.add_argument("--control", default="tcp://127.0.0.1:5660", help="book builder control")
ap.add_argument("--symbol", default="BTC-USD", help="consolidated group")
ap.add_argument("--duration", type=float, default=0, help="stop after S seconds (0: never)")
ap.add_argument("--silent-after", type=float, default=3.0, help="seconds without a message: down")
args = ap.parse_args()

topics = [f"bbo.all.{args.symbol}", f"depth.all.{args.symbol}"]
sub = zmq.Context.instance().socket(zmq.SUB)
for prefix in [*topics, "hb."]:  # heartbeats: proof that our subscription is live
    sub.setsockopt_string(zmq.SUBSCRIBE, prefix)
sub.connect(args.endpoint)
control = zmq.Context.instance().socket(zmq.DEALER)
control.connect(args.control)
last: dict[str, tuple[str, int]] = {}  # topic -> (epoch, seq) of its last message
levels = "no depth yet"
end = time.monotonic() + args.duration if args.duration else float("inf")
last_rx = time.monotonic()
silent = False
first_reply = True


def resync(why: str) -> None:
    print(f"# resync: {why}", flush=True)
    control.send(orjson.dumps({"op": "resync", "topics": topics}))


while time.monotonic() < end:
    while control.poll(0):
        reply = orjson.loads(control.recv())  # "ok": the snapshots follow on the PUB socket
        if reply.get("matched") == 0 and first_reply:  # later, a restarted publisher has none yet
            print(
                f"# nothing published as {topics[0]} yet: misspelt? (a group is BASE-UNIT, "
                "e.g. BTC-USD)"
            )
        first_reply = False
    if not sub.poll(200):
        if not silent and time.monotonic() - last_rx > args.silent_after:
            silent = True
            print(
                f"# book builder silent for {args.silent_after:g}s: down, values above are not live"
            )
        continue
    topic_b, payload = sub.recv_multipart()
    last_rx = time.monotonic()
    if silent:
        silent = False
        resync("book builder heard again")  # what it holds now may differ from what we showed
    topic = topic_b.decode()
    if topic not in topics and not topic.startswith("hb."):
        continue  # a longer name under the same prefix: bbo.all.BTC-USD-PERP for BTC-USD
    msg = orjson.loads(payload)
    epoch, seq = msg["epoch"], msg["seq"]
    if not last:
        resync("start")
    key = "hb" if topic.startswith("hb.") else topic
    prev, last[key] = last.get(key), (epoch, seq)
    if prev and prev[0] != epoch:
        resync(f"{topic}: publisher restarted (epoch {epoch})")
    elif prev and key != "hb" and seq != prev[1] + 1:
        resync(f"{topic}: {seq - prev[1] - 1} message(s) missed")
    if topic.startswith("depth."):
        levels = f"depth {len(msg['bids'])}x{len(msg['asks'])} from {','.join(msg['venues'])}"
    elif topic.startswith("bbo.") and not (msg["bid"] and msg["ask"]):
        print(f"{args.symbol}: no book ({msg['state']}, excluded {msg['excluded']})", flush=True)
    elif topic.startswith("bbo."):
        (bid, bid_size, _), (ask, ask_size, _) = msg["bid"], msg["ask"]
        bv = " ".join(f"{v}:{s}" for v, s in msg["bid_venues"].items())
        av = " ".join(f"{v}:{s}" for v, s in msg["ask_venues"].items())
        print(
            f"{time.strftime('%H:%M:%S')} {args.symbol} #{seq} bid {bid} x {bid_size} [{bv}]"
            f"  ask {ask} x {ask_size} [{av}]  spread {round(ask - bid, 10)} ({msg['spread_bps']} bps)"
            f"{'  CROSSED' if msg['crossed'] else ''}  | {levels}",
            flush=True,
        )
