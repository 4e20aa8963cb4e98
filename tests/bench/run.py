"""flowbook benchmark: stage latencies, throughput ceiling and a side-by-side with cryptofeed.

``python -m tests.bench.run [--steps 1000,2000,3000,4000,5000,6000,8000,10000,20000,40000] [--duration 10]
[--venues all|binance,...] [--bases BTC,ETH,...]`` (``make bench BENCH_ARGS="..."``).

1. Writes a config on free loopback ports and starts the simulator (one process per venue by
   default) and the whole pipeline (ingest per venue, book builder, gateway) under a real
   supervisord in a temporary directory (``tests/bench/stack.py``).
2. Starts two measuring processes: a WebSocket client of the gateway subscribed to the
   unconflated ``bbo`` channel of every instrument and consolidated group
   (``tests/bench/wsprobe.py``) and a ZeroMQ subscriber of the book builder's PUB
   (``tests/bench/busprobe.py``).
3. Phase ``flowbook``: for each step (exchange messages per second across all venues, book
   updates plus trades, set with ``/sim/rate``) waits for the backlog of the previous step to
   drain and for the host to be quiet (``--quiet-*``), ``--warmup`` s, then measures for
   ``--duration`` s: latency percentiles per stage, offered (simulator frames sent) and
   delivered (ingest frames read) msgs/s, losses (bus seq gaps, gateway drops, ingest gaps and
   resyncs, book builder subscriber gaps), CPU% and RSS of every supervisord child. A step is
   *held* when the load was applied, ingest kept up, p99 end to end < 5 ms and nothing was
   lost; the highest held step is the sustainable throughput. The load stops rising after
   ``--stop-after-fails`` saturated steps (load not applied, ingest behind, book builder
   backlog, loss). At the highest step the hottest flowbook processes are profiled (py-spy).
4. Phase ``compare`` (``--cryptofeed``, default when it is installed): only the venues
   cryptofeed also handles (Binance, Bybit, Coinbase) get load; flowbook is measured, then
   its pipeline is stopped and cryptofeed's L2 book handlers run on the same simulators and
   the same steps (``tests/bench/cfprobe.py``).
5. Phase ``floor`` (``--no-floor`` to skip): with everything above stopped, a bare two-hop
   pyzmq chain (decode, SortedDict update, encode; ``tests/bench/floor.py``) at the same steps
   and scheduling, and the ceiling of its middle process: what this host charges any
   multi-process Python pipeline, measured in the same run as flowbook.
6. The memory floor (with or without ``--floor``): the RSS of a fresh interpreter that has
   imported what each service imports, summed over the run's processes (``floor.py``).
7. Writes the JSON results, the plot and the table in docs/BENCHMARKS.md (``report.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil

from common.config import MAX_REALTIME_PRIORITY
from common.sched import policy_of, set_fifo
from tests.bench import floor
from tests.bench.probe import ProbeProcess
from tests.bench.stack import (
    VENUES,
    BenchStack,
    ProcMeter,
    autogroup_enabled,
    available_venues,
    is_sim,
    others_cpu,
    set_autogroup_nice,
    write_config,
)
from tests.procs import BASES, ROOT, wait_until

DEFAULT_STEPS = "1000,2000,3000,4000,5000,6000,8000,10000,20000,40000"
CF_VENUES = ("binance", "bybit", "coinbase")
E2E_P99_LIMIT_US = 5000.0
LOAD_APPLIED = 0.90  # the simulators must send at least this share of the target
BACKLOG_US = 1_000_000  # read->book p50 above this: a backlog is building up
KEPT_UP = 0.95  # ingest must read at least this share of what the simulators sent


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m tests.bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--steps",
        default=DEFAULT_STEPS,
        help="exchange msgs/s across all venues, one per step (default: %(default)s)",
    )
    ap.add_argument("--duration", type=float, default=10.0, help="seconds measured per step")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds before each measurement")
    ap.add_argument(
        "--venues",
        default="all",
        help=f"comma-separated, or 'all' (those in this tree of: {', '.join(VENUES)})",
    )
    ap.add_argument("--bases", default=",".join(BASES), help="instruments: base assets per venue")
    ap.add_argument("--trade-ratio", type=float, default=0.3, help="trades per book update")
    ap.add_argument(
        "--sim",
        choices=["per-venue", "one"],
        default="per-venue",
        help="one simulator process per venue (default) or one for all",
    )
    ap.add_argument(
        "--stop-after-fails",
        type=int,
        default=2,
        help="stop raising the load after this many steps in a row where the pipeline could"
        " not keep up (load not applied, ingest behind, or messages lost) (0: never)",
    )
    cf = ap.add_mutually_exclusive_group()
    cf.add_argument("--cryptofeed", dest="cryptofeed", action="store_true", default=None)
    cf.add_argument("--no-cryptofeed", dest="cryptofeed", action="store_false")
    ap.add_argument("--cf-steps", help="steps of the comparison phase (default: --steps)")
    pr = ap.add_mutually_exclusive_group()
    pr.add_argument("--profile", dest="profile", action="store_true", default=True)
    pr.add_argument("--no-profile", dest="profile", action="store_false")
    ap.add_argument("--profile-seconds", type=float, default=15.0)
    ap.add_argument(
        "--profile-procs", type=int, default=2, help="how many of the hottest processes"
    )
    ap.add_argument("--out", default="docs/bench/results.json", help="JSON results")
    ap.add_argument("--plot", default="docs/bench/latency.png", help="PNG ('' for none)")
    ap.add_argument(
        "--markdown", default="docs/BENCHMARKS.md", help="table written here ('' for none)"
    )
    ap.add_argument("--profile-out", default="docs/bench/profile.txt")
    ap.add_argument(
        "--quiet-threshold",
        type=float,
        default=30.0,
        help="before each step, wait until other processes on the host use less than this"
        " CPU (%% of one core; default %(default)s) ...",
    )
    ap.add_argument(
        "--quiet-wait",
        type=float,
        default=60.0,
        help="... for at most this many seconds (0: do not wait); the host's load during every"
        " step is recorded either way",
    )
    ap.add_argument(
        "--autogroup-nice",
        type=int,
        default=0,
        help="nice value of the scheduler autogroups of the benchmarked stack and of each"
        " measuring process (flowbook's and cryptofeed's alike), when the kernel groups"
        " scheduling by session (sched_autogroup); negative = more CPU share on a shared host;"
        " 0 = leave alone (default)",
    )
    ap.add_argument(
        "--sim-nice",
        type=int,
        default=3,
        help="nice of the simulator processes, so that on a small machine they yield the CPU"
        " to the pipeline they feed (default %(default)s; whether the load was still applied"
        " is checked every step)",
    )
    ap.add_argument(
        "--realtime-priority",
        type=int,
        default=10,
        help="[scheduling] realtime_priority of the flowbook services (SCHED_FIFO; 0 = normal"
        " scheduler); the measuring clients and cryptofeed get the same (default %(default)s;"
        " where the host does not allow it they run at normal priority, see the logs)",
    )
    ap.add_argument(
        "--no-trace-hops",
        dest="trace_hops",
        action="store_false",
        help="leave [book]/[gateway] trace_hops off: no split of each bus hop into transport,"
        " wait and work (the stamps cost the book builder and the gateway a clock read and two"
        " fields per message)",
    )
    fl = ap.add_mutually_exclusive_group()
    fl.add_argument(
        "--floor",
        dest="floor",
        action="store_true",
        default=True,
        help="after the stack is stopped, measure a bare two-hop pyzmq chain at the same steps"
        " and scheduling: the floor on this host, in this run (tests/bench/floor.py; default)",
    )
    fl.add_argument("--no-floor", dest="floor", action="store_false")
    ap.add_argument("--keep", action="store_true", help="keep the run directory (logs)")
    args = ap.parse_args(argv)
    if not 0 <= args.realtime_priority <= MAX_REALTIME_PRIORITY:
        ap.error(f"--realtime-priority must be 0 (off) or 1-{MAX_REALTIME_PRIORITY}")
    try:
        args.step_list = [int(float(s)) for s in args.steps.split(",") if s.strip()]
        args.cf_step_list = (
            [int(float(s)) for s in args.cf_steps.split(",") if s.strip()]
            if args.cf_steps
            else list(args.step_list)
        )
    except ValueError:
        ap.error("steps are numbers, comma-separated")
    if not args.step_list or min(args.step_list) <= 0:
        ap.error("--steps needs at least one positive rate")
    have = available_venues()
    if args.venues == "all":
        args.venue_list = have
    else:
        args.venue_list = [v.strip() for v in args.venues.split(",") if v.strip()]
        bad = [v for v in args.venue_list if v not in have]
        if bad:
            ap.error(f"unknown venues {bad}; available here: {have}")
    args.base_list = [b.strip().upper() for b in args.bases.split(",") if b.strip()]
    if args.cryptofeed is None:
        args.cryptofeed = importlib.util.find_spec("cryptofeed") is not None
    return args


# -- small helpers ------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    cpu = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {}
    for mod in ("zmq", "websockets", "orjson", "cryptofeed", "uvloop"):
        with contextlib.suppress(Exception):
            versions[mod] = __import__(mod).__version__
    return {
        "cpu": cpu,
        "cores": psutil.cpu_count(logical=True),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": versions,
    }


def commit() -> dict[str, Any]:
    def git(*a: str) -> str:
        out = subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, timeout=20)
        return out.stdout.strip()

    try:
        changed = [ln for ln in git("status", "--porcelain").splitlines() if ln.strip()]
        return {"commit": git("rev-parse", "--short=12", "HEAD"), "uncommitted_files": len(changed)}
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "uncommitted_files": None}


class Sims:
    """The simulators' control APIs (one per venue, or one for all)."""

    def __init__(self, ports: dict[str, int]) -> None:
        self.ports = ports
        self.http = httpx.Client(timeout=10)

    def _url(self, port: int, path: str) -> str:
        return f"http://127.0.0.1:{port}/sim/{path}"

    def healthy(self) -> bool:
        try:
            return all(
                self.http.get(self._url(p, "healthz")).status_code == 200
                for p in self.ports.values()
            )
        except httpx.HTTPError:
            return False

    def set_rate(self, per_venue: dict[str, float]) -> None:
        for venue, rate in per_venue.items():
            port = self.ports.get(venue, self.ports.get("*"))
            body: dict[str, Any] = {"rate": rate}
            if "*" in self.ports:
                body["venue"] = venue
            r = self.http.post(self._url(port, "rate"), json=body)
            r.raise_for_status()

    def sent(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for port in set(self.ports.values()):
            stats = self.http.get(self._url(port, "stats")).json()
            for venue, s in stats["venues"].items():
                out[venue] = int(s.get("messages_sent", 0))
        return out

    def close(self) -> None:
        self.http.close()


def rates_for(step: int, venues: list[str], trade_ratio: float) -> dict[str, float]:
    """Book updates/s per venue so that book updates plus trades add up to ``step`` msgs/s."""
    per = step / (len(venues) * (1.0 + trade_ratio))
    return {v: round(per, 3) for v in venues}


def diff(end: dict[str, Any] | None, start: dict[str, Any] | None, key: str) -> float:
    a = (end or {}).get(key)
    b = (start or {}).get(key)
    return float(a - b) if isinstance(a, int | float) and isinstance(b, int | float) else 0.0


def hb_rate(bus: dict[str, Any], service: str, key: str) -> float | None:
    """A counter's rate between the heartbeats seen at start and at end (their own uptime)."""
    s, e = bus["hb_start"].get(service), bus["hb_end"].get(service)
    if not s or not e:
        return None
    dt_s = diff(e, s, "uptime_s")
    return round(diff(e, s, key) / dt_s, 1) if dt_s > 0 else None


def wait_quiet(threshold: float, max_wait: float) -> dict[str, Any]:
    """Wait (at most ``max_wait`` s) until other processes on the host leave us the CPU."""
    t0 = time.monotonic()
    seen = others_cpu(1.0)
    while seen > threshold and time.monotonic() - t0 < max_wait:
        seen = others_cpu(2.0)
    waited = round(time.monotonic() - t0, 1)
    if seen > threshold:
        log(f"  host busy: other processes use {seen:.0f}% CPU (waited {waited:.0f}s)")
    elif waited > 3:
        log(f"  host quiet after {waited:.0f}s (others {seen:.0f}% CPU)")
    return {"others_cpu_percent_before": seen, "waited_s": waited}


def _published_rates(bus: dict[str, Any]) -> dict[str, float]:
    """Messages/s the book builder published per kind (bbo, depth, trade, status...)."""
    s, e = bus["hb_start"].get("book") or {}, bus["hb_end"].get("book") or {}
    dt_s = diff(e, s, "uptime_s")
    ps, pe = s.get("published") or {}, e.get("published") or {}
    return {k: round((pe[k] - ps.get(k, 0)) / dt_s, 1) for k in pe} if dt_s > 0 else {}


def measure_window(
    duration: float, meter: ProcMeter, probes: list[ProbeProcess], label: str, sims: Sims
) -> tuple[dict[str, Any], dict[str, Any], float, dict[str, dict[str, Any]]]:
    """Measure one window: (sent at start, sent at end, seconds between them, probe reports).

    The simulators' counters are read over HTTP, which takes a while on a loaded host: the
    seconds returned run from the middle of the first reading to the middle of the last."""
    probes = [p for p in probes if p.alive()]
    a0 = time.monotonic()
    sent0 = sims.sent()
    a1 = time.monotonic()
    meter.start()
    for p in probes:
        p.start(label)
    end = a1 + duration
    while time.monotonic() < end:
        time.sleep(min(1.0, max(0.0, end - time.monotonic())))
        meter.sample()
    reports: dict[str, Any] = {}
    for p in probes:
        try:
            reports[p.name] = p.stop()
        except (RuntimeError, OSError) as exc:  # e.g. the gateway closed a slow client
            log(f"  probe {p.name} gave no report: {exc}")
    procs = meter.stop()
    b0 = time.monotonic()
    sent1 = sims.sent()
    b1 = time.monotonic()
    reports["_procs"] = procs
    return sent0, sent1, (b0 + b1) / 2 - (a0 + a1) / 2, reports


# -- the benchmark ------------------------------------------------------------------------------
class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.run_dir = Path(tempfile.mkdtemp(prefix="flowbook-bench-"))
        self.stack: BenchStack | None = None
        self.sims: Sims | None = None
        self.probes: list[ProbeProcess] = []
        self.results: dict[str, Any] = {
            "schema": 1,
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine(),
            **commit(),
            "command": "python -m tests.bench.run " + " ".join(sys.argv[1:]),
            "quiet": {"threshold_cpu_percent": args.quiet_threshold, "max_wait_s": args.quiet_wait},
            "settings": {
                "steps": args.step_list,
                "duration_s": args.duration,
                "warmup_s": args.warmup,
                "venues": args.venue_list,
                "bases": args.base_list,
                "trade_ratio": args.trade_ratio,
                "simulators": args.sim,
                "e2e_p99_limit_us": E2E_P99_LIMIT_US,
                "sched_autogroup": autogroup_enabled(),
                "autogroup_nice": args.autogroup_nice,
                "sim_nice": args.sim_nice,
                "trace_hops": args.trace_hops,
                "realtime_priority": args.realtime_priority,
            },
            "steps": [],
            "compare": None,
            "profile": None,
        }

    # -- setup ----------------------------------------------------------------------------------
    def start_stack(self) -> None:
        a = self.args
        first = rates_for(a.step_list[0], a.venue_list, a.trade_ratio)
        cfg_path = write_config(
            self.run_dir,
            a.venue_list,
            a.base_list,
            rate=min(first.values()),
            trade_ratio=a.trade_ratio,
            sim_per_venue=a.sim == "per-venue",
            realtime_priority=a.realtime_priority,
            trace_hops=a.trace_hops,
        )
        log(f"run directory {self.run_dir}; venues {','.join(a.venue_list)}")
        self.stack = BenchStack(cfg_path, self.run_dir, a.sim == "per-venue")
        self.renice(self.stack.proc.popen.pid, "stack")
        self.stack.wait_running(90)
        self.sims = Sims(self.stack.sim_ports)
        wait_until(self.sims.healthy, 60, 0.2, what="simulators answering")
        if a.sim_nice:
            for name, pid in self.stack.pids().items():
                if is_sim(name):
                    with contextlib.suppress(psutil.Error):
                        psutil.Process(pid).nice(a.sim_nice)
        gw = f"http://127.0.0.1:{self.stack.cfg.gateway.port}"
        self.gateway_url = gw

        last: dict[str, Any] = {}

        def all_live() -> dict[str, Any] | None:
            h = httpx.get(f"{gw}/healthz", timeout=5).json()
            last.update(h)
            venues = h.get("venues") or {}
            ok = h.get("ok") and all(venues.get(v) == "live" for v in a.venue_list)
            return h if ok else None

        try:
            wait_until(all_live, 180, 0.5, what="every venue live at the gateway")
        except AssertionError as exc:
            raise RuntimeError(
                f"{exc}; last /healthz: {last}; logs in {self.run_dir}/log"
            ) from None
        log("pipeline up, every venue live")

    def renice(self, pid: int, what: str) -> None:
        n = self.args.autogroup_nice
        if n and autogroup_enabled() and not set_autogroup_nice(pid, n):
            log(f"could not set the autogroup nice of {what} (pid {pid}) to {n}")

    def record_policy(self, pids: dict[str, int]) -> None:
        """What the scheduler really applies to each process (the report quotes this, not the
        priority asked for: a host may refuse real-time scheduling)."""
        applied = self.results["settings"].setdefault("scheduling_applied", {})
        for name, pid in pids.items():
            try:
                policy, prio = policy_of(pid)
            except OSError:
                continue
            applied[name] = f"{policy} {prio}" if policy != "other" else "normal"

    def same_priority(self, pid: int, what: str) -> None:
        """A measuring process runs at flowbook's real-time priority: the client at the end of
        the measured path is part of it, and a normal process beside real-time ones would
        measure how long the scheduler makes it wait (cryptofeed gets the same, for fairness)."""
        prio = self.args.realtime_priority
        if prio:
            try:
                set_fifo(pid, prio)
            except OSError as exc:
                log(f"{what} (pid {pid}) stays at normal priority: {exc}")

    def subscriptions(self) -> list[dict[str, Any]]:
        inst = httpx.get(f"{self.gateway_url}/api/instruments", timeout=10).json()
        subs = []
        for venue in self.args.venue_list:
            symbols = (inst["venues"].get(venue) or {}).get("symbols") or {}
            for sym in sorted(symbols):
                subs.append({"op": "subscribe", "channel": "bbo", "venue": venue, "symbol": sym})
        for group in sorted(inst.get("groups") or {}):
            subs.append({"op": "subscribe", "channel": "bbo", "venue": "all", "symbol": group})
        return subs

    def start_probes(self) -> None:
        assert self.stack is not None
        subs = self.subscriptions()
        subs_path = self.run_dir / "subs.json"
        subs_path.write_bytes(orjson.dumps(subs))
        log_dir = self.run_dir / "log"
        bus = ProbeProcess(
            "bus",
            ["-m", "tests.bench.busprobe", "--config", str(self.stack.cfg.path)],
            log_dir,
            ROOT,
        )
        ws = ProbeProcess(
            "ws",
            [
                "-m",
                "tests.bench.wsprobe",
                "--url",
                f"ws://127.0.0.1:{self.stack.cfg.gateway.port}/ws",
                "--subs",
                str(subs_path),
            ],
            log_dir,
            ROOT,
        )
        self.probes = [bus, ws]
        for p in self.probes:
            self.renice(p.pid, p.name)
            self.same_priority(p.pid, p.name)
        self.record_policy({**self.stack.pids(), **{f"probe:{p.name}": p.pid for p in self.probes}})
        for p in self.probes:
            ready = p.wait_ready(60)
            if not ready.get("ready"):
                raise RuntimeError(f"probe {p.name} not ready: {ready}")
        n_all = sum(1 for s in subs if s["venue"] == "all")
        log(f"probes ready: {len(subs) - n_all} instruments, {n_all} consolidated groups")
        self.results["settings"]["subscriptions"] = {
            "instruments": len(subs) - n_all,
            "groups": n_all,
        }

    def ensure_probes(self) -> None:
        """A measuring client the gateway closed (slow client at an overload) is restarted."""
        if self.probes and not all(p.alive() for p in self.probes):
            dead = [p.name for p in self.probes if not p.alive()]
            log(f"  restarting the measuring clients ({', '.join(dead)} exited)")
            for p in self.probes:
                p.close()
            self.start_probes()

    def settle(self, max_wait: float = 180.0) -> dict[str, Any]:
        """Wait until the pipeline has no backlog left from the previous (heavier) step: the
        latest bbo on the bus was read by ingest less than 20 ms before it arrived here."""
        bus = next((p for p in self.probes if p.name == "bus"), None)
        if bus is None:
            return {}
        t0 = time.monotonic()
        lag = bus.lag()
        while time.monotonic() - t0 < max_wait and (
            lag.get("age_s") is None or lag["age_s"] > 2.0 or lag["lag_us"] > 20_000
        ):
            time.sleep(1.0)
            lag = bus.lag()
        lag.setdefault("lag_us", None)
        waited = round(time.monotonic() - t0, 1)
        if waited > 2:
            log(f"  backlog drained after {waited:.0f}s (lag {lag['lag_us'] / 1000:.0f} ms)")
        return {"settle_waited_s": waited, "lag_before_us": lag.get("lag_us")}

    def meter(self, include_probes: bool = True) -> ProcMeter:
        assert self.stack is not None
        pids = self.stack.pids()
        if include_probes:
            for p in self.probes:
                if p.alive():
                    pids[f"probe:{p.name}"] = p.pid
        return ProcMeter(pids)

    # -- phase flowbook ---------------------------------------------------------------------------
    def step_record(
        self,
        step: int,
        rates: dict[str, float],
        venues: list[str],
        window: tuple[dict[str, Any], dict[str, Any], float, dict[str, Any]],
    ) -> dict[str, Any]:
        sent0, sent1, wall, rep = window
        empty = {"latency_us": {}, "counts": {}, "hb_start": {}, "hb_end": {}}
        bus, ws, procs = rep.get("bus") or empty, rep.get("ws") or empty, dict(rep["_procs"])
        host = procs.pop("_host", {})
        offered = sum(sent1.get(v, 0) - sent0.get(v, 0) for v in venues) / wall
        delivered_by_venue = {v: hb_rate(bus, f"ingest-{v}", "frames") for v in venues}
        delivered = sum(x or 0.0 for x in delivered_by_venue.values())
        hs, he = bus["hb_start"], bus["hb_end"]
        ingest_gaps = sum(
            diff(he.get(f"ingest-{v}"), hs.get(f"ingest-{v}"), "gaps") for v in venues
        )
        ingest_resyncs = sum(
            diff(he.get(f"ingest-{v}"), hs.get(f"ingest-{v}"), "resyncs") for v in venues
        )
        parse_errors = sum(
            diff(he.get(f"ingest-{v}"), hs.get(f"ingest-{v}"), "parse_errors") for v in venues
        )
        reconnects = sum(
            diff(he.get(f"ingest-{v}"), hs.get(f"ingest-{v}"), "reconnects") for v in venues
        )
        sub_s = (hs.get("book") or {}).get("subscriber") or {}
        sub_e = (he.get("book") or {}).get("subscriber") or {}
        gws, gwe = ws.get("gateway_start") or {}, ws.get("gateway_end") or {}
        lost = {
            "bus_bbo_seq_gaps": bus["counts"].get("lost", 0),
            "gateway_dropped": diff(gwe, gws, "dropped"),
            "ingest_gaps": ingest_gaps,
            "ingest_resyncs": ingest_resyncs,
            "book_subscriber_gaps": diff(sub_e, sub_s, "gaps"),
            "book_lost_trades": diff(sub_e, sub_s, "lost_trades"),
            "book_bad_messages": diff(he.get("book"), hs.get("book"), "bad_messages"),
            "parse_errors": parse_errors,
            "reconnects": reconnects,
        }
        lat_ws, lat_bus = ws["latency_us"], bus["latency_us"]
        stages = {
            # the bus probe sees the same messages: its figures stand in when the WebSocket
            # client was closed by the gateway as a slow client
            "ingest": lat_ws.get("venue.ingest") or lat_bus.get("venue.ingest"),
            "book": lat_ws.get("venue.book") or lat_bus.get("venue.book"),
            "gateway": lat_ws.get("venue.gateway"),
            "ws": lat_ws.get("venue.ws"),
            "e2e": lat_ws.get("venue.e2e"),
            "recv_to_book": lat_bus.get("venue.recv_to_book"),
            "bus_to_subscriber": lat_bus.get("venue.bus"),
            **{
                k.removeprefix("venue."): v for k, v in lat_ws.items() if k.startswith("venue.hop.")
            },
            "consolidated_e2e": lat_ws.get("all.e2e"),
            "consolidated_recv_to_book": lat_bus.get("all.recv_to_book"),
        }
        by_venue = {
            v: lat_bus.get(f"venue.recv_to_book.{v}")
            for v in venues
            if f"venue.recv_to_book.{v}" in lat_bus
        }
        flow = {k: v for k, v in procs.items() if not is_sim(k) and not k.startswith("probe:")}
        step_rec: dict[str, Any] = {
            "target_msgs_s": step,
            "book_updates_s_per_venue": rates,
            "duration_s": round(wall, 2),
            "offered_msgs_s": round(offered, 1),
            "delivered_msgs_s": round(delivered, 1),
            "delivered_by_venue": delivered_by_venue,
            "book_in_msgs_s": hb_rate(bus, "book", "messages_in"),
            "book_out_msgs_s": hb_rate(bus, "book", "messages_out"),
            "book_published_s": _published_rates(bus),
            "bbo_msgs_s": {
                "bus_venue": round(bus["counts"].get("venue_messages", 0) / wall, 1),
                "bus_all": round(bus["counts"].get("all_messages", 0) / wall, 1),
                "ws_venue": round(ws["counts"].get("venue_messages", 0) / wall, 1),
                "ws_all": round(ws["counts"].get("all_messages", 0) / wall, 1),
            },
            "latency_us": stages,
            "recv_to_book_by_venue": by_venue,
            "lost": lost,
            "processes": procs,
            "host": host,
            "flowbook_cpu_percent": round(sum(p["cpu_percent"] for p in flow.values()), 1),
            "flowbook_rss_mb": round(sum(p["rss_mb"] for p in flow.values()), 1),
            "flowbook_rss_max_mb": round(sum(p["rss_max_mb"] for p in flow.values()), 1),
            "flowbook_pss_mb": round(sum(p.get("pss_mb") or 0.0 for p in flow.values()), 1),
            "gateway_stats": {"start": gws, "end": gwe},
            "probe_counts": {"ws": ws["counts"], "bus": bus["counts"]},
        }
        why = []
        if "ws" not in rep:
            why.append("the measuring WebSocket client was closed by the gateway (slow client)")
        if offered < LOAD_APPLIED * step:
            why.append(f"load not applied: simulators sent {offered:.0f}/s of {step}/s")
        if offered > 0 and delivered < KEPT_UP * offered:
            why.append(f"ingest fell behind: read {delivered:.0f}/s of {offered:.0f}/s sent")
        e2e = stages["e2e"] or {}
        if not e2e.get("count"):
            why.append("no end-to-end sample")
        elif e2e["p99"] >= E2E_P99_LIMIT_US:
            why.append(f"p99 end to end {e2e['p99']:.0f} us >= {E2E_P99_LIMIT_US:.0f} us")
        lost_n = sum(
            lost[k]
            for k in (
                "bus_bbo_seq_gaps",
                "gateway_dropped",
                "ingest_gaps",
                "book_subscriber_gaps",
                "book_lost_trades",
            )
        )
        if lost_n:
            why.append(f"{lost_n:.0f} message(s) lost or gaps")
        r2b = stages["recv_to_book"] or {}
        if r2b.get("count") and r2b["p50"] >= BACKLOG_US:
            why.append(f"book builder behind: read->book p50 {r2b['p50'] / 1e6:.1f} s")
        step_rec["held"] = not why
        step_rec["why_not_held"] = why
        step_rec["saturated"] = any(
            w.startswith(("load not applied", "ingest fell behind", "book builder behind"))
            for w in why
        ) or bool(lost_n)
        return step_rec

    def phase_flowbook(self) -> None:
        a = self.args
        assert self.sims is not None
        fails = 0
        for i, step in enumerate(a.step_list):
            rates = rates_for(step, a.venue_list, a.trade_ratio)
            self.sims.set_rate(rates_for(min(a.step_list), a.venue_list, a.trade_ratio))
            self.ensure_probes()
            settled = self.settle()
            quiet = wait_quiet(a.quiet_threshold, a.quiet_wait)
            quiet.update(settled)
            self.sims.set_rate(rates)
            log(f"step {step} msgs/s ({next(iter(rates.values()))} book updates/s per venue)")
            time.sleep(a.warmup)
            window = measure_window(a.duration, self.meter(), self.probes, f"fb-{step}", self.sims)
            rec = self.step_record(step, rates, a.venue_list, window)
            rec["host"].update(quiet)
            self.results["steps"].append(rec)
            e2e = rec["latency_us"]["e2e"] or {}
            log(
                f"  offered {rec['offered_msgs_s']:.0f}/s delivered {rec['delivered_msgs_s']:.0f}/s"
                f" e2e p50 {e2e.get('p50', 0):.0f} p99 {e2e.get('p99', 0):.0f} us;"
                f" cpu {rec['flowbook_cpu_percent']}% rss {rec['flowbook_rss_mb']} MB;"
                f" others on host {rec['host'].get('others_cpu_percent')}%;"
                f" {'held' if rec['held'] else 'NOT held: ' + '; '.join(rec['why_not_held'])}"
            )
            last = i == len(a.step_list) - 1
            fails = 0 if not rec["saturated"] else fails + 1
            stop = a.stop_after_fails and fails >= a.stop_after_fails
            if a.profile and (last or stop):
                self.profile(rec)
            if stop and not last:
                log(f"  {fails} steps in a row saturated: not raising the load further")
                break
        held = [s["target_msgs_s"] for s in self.results["steps"] if s["held"]]
        self.results["sustainable_msgs_s"] = max(held) if held else 0

    def profile(self, rec: dict[str, Any]) -> None:
        """py-spy on the hottest flowbook processes (``--profile-procs``), at the load of
        ``rec``; one text report with a section per process."""
        from tests.bench.profile import record_and_summarize

        procs = {
            k: v
            for k, v in rec["processes"].items()
            if not is_sim(k) and not k.startswith("probe:")
        }
        hottest = sorted(procs, key=lambda k: -procs[k]["cpu_percent"])[: self.args.profile_procs]
        secs = self.args.profile_seconds
        texts, done = [], []
        for name in hottest:
            pid = procs[name]["pid"]
            log(
                f"  profiling {name} (pid {pid}, {procs[name]['cpu_percent']}% CPU) for {secs:.0f}s"
            )
            try:
                summary = record_and_summarize(
                    pid,
                    secs,
                    self.run_dir / f"profile-{name.replace(':', '-')}.raw",
                    title=f"{name} at {rec['target_msgs_s']} msgs/s target"
                    f" (offered {rec['offered_msgs_s']:.0f}/s; {procs[name]['cpu_percent']}% CPU"
                    " in the step)",
                    nice=self.args.autogroup_nice,
                    realtime=self.args.realtime_priority,
                )
            except Exception as exc:  # py-spy missing or not permitted: the bench still reports
                log(f"  profile of {name} failed: {exc}")
                done.append({"process": name, "error": str(exc)})
                continue
            texts.append(summary["text"])
            done.append(
                {
                    "process": name,
                    "cpu_percent": procs[name]["cpu_percent"],
                    "step_msgs_s": rec["target_msgs_s"],
                    "samples": summary["samples"],
                    "top_self": summary["top_self"][:15],
                    "top_inclusive": summary["top_inclusive"][:25],
                }
            )
        self.results["profile"] = {"processes": done, "text": None}
        if texts and self.args.profile_out:
            out = ROOT / self.args.profile_out
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(("\n" + "=" * 100 + "\n\n").join(texts))
            self.results["profile"]["text"] = self.args.profile_out
            log(f"  profile summary written to {self.args.profile_out}")

    # -- phase compare ------------------------------------------------------------------------------
    def phase_compare(self) -> None:
        a = self.args
        assert self.stack is not None and self.sims is not None
        cf_venues = [v for v in CF_VENUES if v in a.venue_list]
        if not cf_venues:
            log("compare: none of binance/bybit/coinbase selected; skipped")
            return
        others = [v for v in a.venue_list if v not in cf_venues]
        log(f"compare: venues {','.join(cf_venues)}")
        if others:
            self.sims.set_rate({v: 0.0 for v in others})
            for v in others:
                self.stack.ctl("stop", f"ingest:{v}")
        comp: dict[str, Any] = {"venues": cf_venues, "flowbook": [], "cryptofeed": []}
        self.results["compare"] = comp
        for step in a.cf_step_list:
            rates = rates_for(step, cf_venues, a.trade_ratio)
            self.sims.set_rate(rates_for(min(a.cf_step_list), cf_venues, a.trade_ratio))
            self.ensure_probes()
            settled = self.settle()
            quiet = wait_quiet(a.quiet_threshold, a.quiet_wait)
            quiet.update(settled)
            self.sims.set_rate(rates)
            log(f"compare flowbook {step} msgs/s")
            time.sleep(a.warmup)
            window = measure_window(a.duration, self.meter(), self.probes, f"cmp-{step}", self.sims)
            rec = self.step_record(step, rates, cf_venues, window)
            rec["host"].update(quiet)
            comp["flowbook"].append(rec)
            r2b = rec["latency_us"]["recv_to_book"] or {}
            log(f"  flowbook recv->book p50 {r2b.get('p50', 0):.0f} p99 {r2b.get('p99', 0):.0f} us")
            if sum(1 for r in comp["flowbook"][-2:] if r["saturated"]) >= 2:
                break
        # flowbook off, cryptofeed on the same simulators
        self.sims.set_rate({v: 1.0 for v in cf_venues})
        for p in self.probes:
            p.close()
        self.probes = []
        for prog in [*(f"ingest:{v}" for v in cf_venues), "gateway", "book"]:
            self.stack.ctl("stop", prog)
        ports = {v: self.stack.cfg.venues[v].sim_port for v in cf_venues}
        args = ["-m", "tests.bench.cfprobe", "--bases", ",".join(a.base_list)]
        args += [f"--venue={v}={p}" for v, p in ports.items()]
        cf = ProbeProcess("cryptofeed", args, self.run_dir / "log", ROOT)
        self.renice(cf.pid, "cryptofeed")
        self.same_priority(cf.pid, "cryptofeed")
        self.record_policy({"cryptofeed": cf.pid})
        try:
            cf.wait_ready(120)
            time.sleep(3.0)  # connections, snapshots
            for step in a.cf_step_list:
                rates = rates_for(step, cf_venues, a.trade_ratio)
                quiet = wait_quiet(a.quiet_threshold, a.quiet_wait)
                self.sims.set_rate(rates)
                log(f"compare cryptofeed {step} msgs/s")
                time.sleep(a.warmup)
                pids = {k: v for k, v in self.stack.pids().items() if is_sim(k)}
                pids["cryptofeed"] = cf.pid
                sent0, sent1, wall, rep = measure_window(
                    a.duration, ProcMeter(pids), [cf], f"cf-{step}", self.sims
                )
                crec = self.cf_record(step, rates, cf_venues, sent0, sent1, wall, rep)
                crec["host"].update(quiet)
                comp["cryptofeed"].append(crec)
                bk = crec["latency_us"]["book"] or {}
                log(
                    f"  cryptofeed frame->book callback p50 {bk.get('p50', 0):.0f}"
                    f" p99 {bk.get('p99', 0):.0f} us; offered {crec['offered_msgs_s']:.0f}/s"
                    f" read {crec['delivered_msgs_s']:.0f}/s cpu {crec['cpu_percent']}%"
                    f" {'held' if crec['held'] else 'NOT held: ' + '; '.join(crec['why_not_held'])}"
                )
                if (
                    not crec["held"]
                    and sum(1 for r in comp["cryptofeed"][-2:] if not r["held"]) >= 2
                ):
                    break
        finally:
            cf.close()

    def cf_record(
        self,
        step: int,
        rates: dict[str, float],
        venues: list[str],
        sent0: dict[str, Any],
        sent1: dict[str, Any],
        wall: float,
        rep: dict[str, Any],
    ) -> dict[str, Any]:
        r = rep["cryptofeed"]
        procs = dict(rep["_procs"])
        host = procs.pop("_host", {})
        offered = sum(sent1.get(v, 0) - sent0.get(v, 0) for v in venues) / wall
        frames = {k.lower(): v for k, v in r["frames"].items()}
        delivered = sum(frames.values()) / wall
        lat = r["latency_us"]
        book = lat.get("book") or {}
        cpu = procs.get("cryptofeed", {}).get("cpu_percent", 0.0)
        cpu_s = procs.get("cryptofeed", {}).get("cpu_s", 0.0)
        why = []
        if offered < LOAD_APPLIED * step:
            why.append(f"load not applied: simulators sent {offered:.0f}/s of {step}/s")
        if offered > 0 and delivered < KEPT_UP * offered:
            why.append(f"fell behind: read {delivered:.0f}/s of {offered:.0f}/s sent")
        if book.get("count") and book["p99"] >= E2E_P99_LIMIT_US:
            why.append(f"p99 frame->callback {book['p99']:.0f} us >= {E2E_P99_LIMIT_US:.0f} us")
        return {
            "target_msgs_s": step,
            "book_updates_s_per_venue": rates,
            "duration_s": round(wall, 2),
            "offered_msgs_s": round(offered, 1),
            "delivered_msgs_s": round(delivered, 1),
            "frames_by_venue": frames,
            "latency_us": {
                "book": book or None,
                "nbbo": lat.get("nbbo"),
                **{k: v for k, v in lat.items() if k.startswith("book.")},
            },
            "callbacks": r["counts"],
            "cpu_percent": cpu,
            "cpu_us_per_msg": round(1e6 * cpu_s / (delivered * wall), 1) if delivered else None,
            "rss_mb": procs.get("cryptofeed", {}).get("rss_mb"),
            "processes": procs,
            "host": host,
            "held": not why,
            "why_not_held": why,
            "saturated": any(w.startswith(("load not applied", "fell behind")) for w in why),
        }

    # -- all ----------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Both phases; a phase that fails is logged and recorded (``errors``), and what was
        measured until then is still written."""
        errors = self.results.setdefault("errors", [])
        try:
            self.start_stack()
            self.start_probes()
            for phase in (self.phase_flowbook, self.phase_compare):
                if phase == self.phase_compare and not self.args.cryptofeed:
                    continue
                try:
                    phase()
                except (RuntimeError, OSError, httpx.HTTPError, AssertionError) as exc:
                    log(f"{phase.__name__} failed: {exc}")
                    errors.append(f"{phase.__name__}: {exc}")
        finally:
            self.shutdown()
        if self.args.floor:
            self.phase_floor()
        self.phase_memory_floor()
        if "sustainable_msgs_s" not in self.results:
            held = [s["target_msgs_s"] for s in self.results["steps"] if s["held"]]
            self.results["sustainable_msgs_s"] = max(held) if held else 0
        return self.results

    def phase_floor(self) -> None:
        """The bare chain, with the stack and the simulators stopped (``tests/bench/floor.py``)."""
        a = self.args
        log("floor: a bare two-hop pyzmq chain at the same steps")
        try:
            wait_quiet(a.quiet_threshold, a.quiet_wait)
            self.results["floor"] = floor.run_floor(
                a.step_list, a.warmup, a.duration, a.realtime_priority, log
            )
        except (RuntimeError, OSError, ValueError, KeyError) as exc:  # ValueError: bad JSON
            log(f"phase_floor failed: {exc!r}")
            self.results.setdefault("errors", []).append(f"phase_floor: {exc}")

    def phase_memory_floor(self) -> None:
        """What the services hold right after their imports (``floor.memory_floor``); cheap, so
        measured with or without ``--floor``."""
        try:
            mem = self.results["memory_floor"] = floor.memory_floor(len(self.args.venue_list))
        except RuntimeError as exc:
            log(f"phase_memory_floor failed: {exc}")
            self.results.setdefault("errors", []).append(f"phase_memory_floor: {exc}")
            return
        per = ", ".join(f"{k} {v:.1f}" for k, v in mem["imports_rss_mb"].items())
        log(f"memory floor (RSS after imports, MB): {per}; total {mem['total_rss_mb']:.0f} MB")

    def shutdown(self) -> None:
        for p in self.probes:
            with contextlib.suppress(Exception):
                p.close()
        if self.sims is not None:
            self.sims.close()
        if self.stack is not None:
            self.stack.stop()
        if self.args.keep:
            log(f"run directory kept: {self.run_dir}")
        else:
            shutil.rmtree(self.run_dir, ignore_errors=True)


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # unwinds through Bench.run's finally: supervisord is stopped


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.chdir(ROOT)
    signal.signal(signal.SIGTERM, _sigterm)
    bench = Bench(args)
    try:
        results = bench.run()
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    from tests.bench import report

    if results.get("compare"):
        results["compare"]["ratio"] = report.compare_ratio(results["compare"])
    if args.plot:
        try:
            report.plot(results, ROOT / args.plot)
            results["plot"] = args.plot
            log(f"plot written to {args.plot}")
        except ImportError:
            log("matplotlib is not installed (pip install -e '.[bench]'): no plot")
    out = ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(results) + b"\n")
    log(f"results written to {args.out}")
    if args.markdown:
        report.update_markdown(results, ROOT / args.markdown, args)
        log(f"table written to {args.markdown}")
    print(report.summary_text(results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
