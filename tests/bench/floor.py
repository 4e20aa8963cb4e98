"""The floor on this host, measured in the same run: a bare two-hop pyzmq chain in Python.

Issue 7 sets its targets against "a bare two-hop pyzmq chain (decode, SortedDict update,
encode)": a source process publishes book deltas, a middle process decodes each one, applies it to
a SortedDict book, encodes the new best bid/ask and publishes that, and a sink process decodes it
and records source-send -> sink-receive. No asyncio, no WebSocket, no integrity checks, no
consolidation: blocking ``recv`` in three processes under the same scheduling as flowbook. What
this chain costs is what any multi-process Python design pays on this host before doing its job,
so flowbook's figures are read against it (``docs/BENCHMARKS.md``).

Per step the source paces ``rate`` msgs/s in 1 ms ticks (as the simulators send in ticks); after
the warm-up it sends a mark, then an end; the sink reports latency percentiles between them and
the middle its CPU time per message. The ceiling step sends as fast as the source can and reports
how many messages per second the middle process decoded, applied and re-encoded.

The memory floor (``memory_floor``): the RSS of a fresh interpreter that has only imported what
each flowbook service imports, summed over the processes the benchmark runs.

``python -m tests.bench.floor [--steps 1000,2000] [--duration 10]`` runs it alone.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson
import zmq
from sortedcontainers import SortedDict

from common.aio import loop_name
from common.metrics import LatencyHistogram
from common.sched import set_fifo
from tests.procs import ROOT, free_port

SYMBOLS = 72  # as many books as the default benchmark subscribes to
TICK_S = 0.001
CTL = b"ctl"


def _realtime(priority: int) -> str:
    """SCHED_FIFO for every thread of this process (ZeroMQ's too); returns what applied."""
    if priority <= 0:
        return "normal"
    try:
        set_fifo("self", priority)
    except OSError as exc:  # the middle reports it; the harness records it
        return f"normal ({exc.strerror})"
    return f"fifo {priority}"


def source(port: int, rate: float, warmup: float, duration: float, priority: int) -> None:
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, 100_000)
    pub.bind(f"tcp://127.0.0.1:{port}")
    _realtime(priority)
    time.sleep(1.0)  # the middle's subscription reaches us
    seq = 0

    def send_one() -> None:
        nonlocal seq
        seq += 1
        px = 65_000.0 + (seq * 7919 % 200) * 0.1
        body = {
            "s": seq % SYMBOLS,
            "b": [[round(px - 0.1, 1), 0.5 + seq % 7]],
            "a": [[round(px + 0.1, 1), 0.25 + seq % 5], [round(px + 0.3, 1), 0.0]],
            "n": seq,
            "ts": time.time_ns(),
        }
        pub.send(b"book", zmq.SNDMORE)
        pub.send(orjson.dumps(body))

    def ctl(op: str) -> None:
        pub.send(CTL, zmq.SNDMORE)
        pub.send(orjson.dumps({"op": op}))

    if rate <= 0:  # ceiling: as fast as we can for ``duration`` seconds
        ctl("mark")
        end = time.monotonic() + duration
        while time.monotonic() < end:
            for _ in range(100):
                send_one()
    else:
        t0 = time.monotonic()
        marked = False
        while True:
            now = time.monotonic()
            if not marked and now - t0 >= warmup:
                ctl("mark")
                marked = True
            if now - t0 >= warmup + duration:
                break
            for _ in range(int((now - t0) * rate) - seq):
                send_one()
            time.sleep(TICK_S)
    for _ in range(20):  # PUB drops at its HWM: repeat the end until the chain has seen it
        ctl("end")
        time.sleep(0.5)
    ctx.destroy(0)


def _subscriber(ctx: zmq.Context, port: int) -> zmq.Socket:
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 100_000)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(f"tcp://127.0.0.1:{port}")
    return sub


def middle(in_port: int, out_port: int, priority: int) -> None:
    ctx = zmq.Context()
    sub = _subscriber(ctx, in_port)
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, 100_000)
    pub.bind(f"tcp://127.0.0.1:{out_port}")
    scheduling = _realtime(priority)
    books = [(SortedDict(), SortedDict()) for _ in range(SYMBOLS)]
    n = n0 = 0
    cpu0 = wall0 = last = 0.0
    marked = False
    while True:
        topic, data = sub.recv_multipart()
        msg = orjson.loads(data)
        if topic == CTL:
            if msg["op"] == "mark":
                n0, cpu0, wall0, marked = n, time.process_time(), time.monotonic(), True
            else:
                msg["marked"] = marked
                msg["msgs"] = n - n0
                msg["cpu_s"] = time.process_time() - cpu0
                msg["wall_s"] = time.monotonic() - wall0
                msg["busy_s"] = last - wall0  # mark -> last book message
                msg["scheduling"] = scheduling
            for _ in range(20 if msg["op"] == "end" else 1):
                pub.send(CTL, zmq.SNDMORE)
                pub.send(orjson.dumps(msg))
            if msg["op"] == "end":
                time.sleep(0.5)
                break
            continue
        n += 1
        last = time.monotonic()
        bids, asks = books[msg["s"]]
        for side, levels in ((bids, msg["b"]), (asks, msg["a"])):
            for price, size in levels:
                if size:
                    side[price] = size
                else:
                    side.pop(price, None)
        out = {
            "s": msg["s"],
            "bid": bids.peekitem(-1) if bids else None,
            "ask": asks.peekitem(0) if asks else None,
            "n": msg["n"],
            "ts": msg["ts"],
        }
        pub.send(b"bbo", zmq.SNDMORE)
        pub.send(orjson.dumps(out))
    ctx.destroy(0)


def sink(port: int, priority: int, record: bool) -> None:
    ctx = zmq.Context()
    sub = _subscriber(ctx, port)
    _realtime(priority)
    print("ready", flush=True)
    hist = LatencyHistogram(3)
    received = 0
    measuring = False
    while True:
        topic, data = sub.recv_multipart()
        now = time.time_ns()
        msg = orjson.loads(data)
        if topic == CTL:
            if msg["op"] == "mark":
                hist, received, measuring = LatencyHistogram(3), 0, True
                continue
            report = {
                "received": received,
                "middle": {
                    k: msg[k] for k in ("msgs", "cpu_s", "wall_s", "busy_s", "scheduling", "marked")
                },
                "latency_us": hist.summary() if record and received else None,
            }
            print(orjson.dumps(report).decode(), flush=True)
            break
        if measuring:
            received += 1
            if record:
                hist.record_ns(now - msg["ts"])
    ctx.destroy(0)


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.bench.floor", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def run_chain(rate: float, warmup: float, duration: float, priority: int) -> dict[str, Any]:
    """One step (``rate`` <= 0: the ceiling); raises RuntimeError if the chain did not report."""
    a, b = free_port(), free_port()
    prio = str(priority)
    procs = [_spawn("sink", str(b), prio, "1" if rate > 0 else "0")]
    try:
        assert procs[0].stdout is not None
        procs[0].stdout.readline()  # "ready"
        procs.append(_spawn("middle", str(a), str(b), prio))
        procs.append(_spawn("source", str(a), str(rate), str(warmup), str(duration), prio))
        try:
            out, _ = procs[0].communicate(timeout=warmup + duration + 30)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"bare chain at {rate:g} msgs/s did not finish") from exc
        lines = [line for line in out.splitlines() if line.startswith("{")]
        if not lines:
            raise RuntimeError(f"bare chain at {rate:g} msgs/s reported nothing")
        rep = orjson.loads(lines[-1])
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            p.wait()
    mid = rep["middle"]
    if not mid["marked"] or (rate > 0 and not rep["received"]):
        raise RuntimeError(f"bare chain at {rate:g} msgs/s: the measuring window was missed")
    wall = max(mid["wall_s"], 1e-9)
    return {
        "target_msgs_s": int(rate) if rate > 0 else None,
        "scheduling": mid["scheduling"],
        "middle_msgs_s": round(mid["msgs"] / (wall if rate > 0 else max(mid["busy_s"], 1e-9)), 1),
        "received_msgs_s": round(rep["received"] / wall, 1),
        "lost": mid["msgs"] - rep["received"] if rate > 0 else None,
        "middle_cpu_percent": round(100 * mid["cpu_s"] / wall, 1),
        "middle_cpu_us_per_msg": round(1e6 * mid["cpu_s"] / mid["msgs"], 1)
        if mid["msgs"]
        else None,
        "latency_us": rep["latency_us"],
    }


def run_floor(
    steps: list[int],
    warmup: float,
    duration: float,
    priority: int,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The paced steps, then the ceiling of the middle process."""
    out: dict[str, Any] = {"priority": priority, "symbols": SYMBOLS, "steps": []}
    for step in steps:
        rec = run_chain(step, warmup, duration, priority)
        out["steps"].append(rec)
        lat = rec["latency_us"] or {}
        log(
            f"  bare chain {step:>6,} msgs/s: p50 {lat.get('p50', 0):.0f} p99"
            f" {lat.get('p99', 0):.0f} us, middle {rec['middle_cpu_us_per_msg']} us CPU/msg,"
            f" lost {rec['lost']}"
        )
    # at normal priority: three flat-out FIFO processes on a 2-core host would starve the rest
    ceiling = run_chain(0, 0.0, min(duration, 5.0), 0)
    out["ceiling_msgs_s"] = ceiling["middle_msgs_s"]
    out["ceiling"] = ceiling
    log(f"  bare chain ceiling: middle process {ceiling['middle_msgs_s']:,.0f} msgs/s")
    return out


def service_imports() -> dict[str, tuple[str, ...]]:
    """What each flowbook process imports before it does anything: its entry module, an ingest
    process its venue plugin too (they are alike), and uvloop, which ``common.aio.run`` imports
    as it starts the loop."""
    loop = ("uvloop",) if loop_name() == "uvloop" else ()
    return {
        "python": (),
        "ingest": ("services.ingest.__main__", "services.ingest.venues.binance", *loop),
        "book": ("services.book.__main__", *loop),
        "gateway": ("services.gateway.__main__", *loop),
    }


_RSS_SCRIPT = """
import importlib, os, sys
for m in sys.argv[1:]:
    importlib.import_module(m)
with open("/proc/self/statm") as f:
    print("\\nRSS", int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))
"""


def imports_rss_mb(modules: tuple[str, ...]) -> float:
    """RSS of a fresh interpreter once it has imported ``modules``: no data, no sockets.
    Raises RuntimeError if that interpreter fails."""
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _RSS_SCRIPT, *modules],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"importing {', '.join(modules)} took over 60 s") from exc
    rss = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("RSS ")]
    if proc.returncode != 0 or not rss:
        raise RuntimeError(
            f"importing {', '.join(modules) or 'nothing'} failed (exit {proc.returncode}):"
            f" {(proc.stderr.strip().splitlines() or [''])[-1]}"
        )
    return round(int(rss[-1]) / 2**20, 1)


def memory_floor(ingest_processes: int) -> dict[str, Any]:
    """The memory floor: what flowbook's processes hold right after their imports, before
    any book or connection, summed as the benchmark sums their RSS (shared library pages count
    in every process, as in RSS)."""
    per = {name: imports_rss_mb(mods) for name, mods in service_imports().items()}
    total = per["ingest"] * ingest_processes + per["book"] + per["gateway"]
    return {
        "imports_rss_mb": per,
        "ingest_processes": ingest_processes,
        "total_rss_mb": round(total, 1),
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    roles: dict[str, Callable[[list[str]], None]] = {
        "source": lambda a: source(int(a[0]), float(a[1]), float(a[2]), float(a[3]), int(a[4])),
        "middle": lambda a: middle(int(a[0]), int(a[1]), int(a[2])),
        "sink": lambda a: sink(int(a[0]), int(a[1]), a[2] == "1"),
    }
    if argv and argv[0] in roles:
        roles[argv[0]](argv[1:])
        return 0
    ap = argparse.ArgumentParser(prog="python -m tests.bench.floor", description=__doc__)
    ap.add_argument("--steps", default="1000,2000,5000,10000,20000")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--realtime-priority", type=int, default=10)
    ap.add_argument(
        "--ingest-processes", type=int, default=6, help="for the memory floor's sum (venues)"
    )
    args = ap.parse_args(argv)
    steps = [int(float(s)) for s in args.steps.split(",") if s.strip()]
    res = run_floor(steps, args.warmup, args.duration, args.realtime_priority)
    try:
        res["memory_floor"] = memory_floor(args.ingest_processes)
    except RuntimeError as exc:
        res["memory_floor_error"] = str(exc)
    print(orjson.dumps(res, option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
