"""The benchmarked stack: a config on free loopback ports, the simulator (one process, or one per
venue) and the whole pipeline under a real supervisord (``tests/stack.py``), and CPU/RSS of every
supervisord child with psutil."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from common.config import load
from services.supervise import DEPLOY, _program, write
from tests.procs import BASES, Proc, free_port
from tests.stack import SUPERVISORD, SupervisedStack


@dataclass(frozen=True)
class VenueSpec:
    name: str
    quote: str
    ws_path: str


# Every venue flowbook can ingest and simulate, as the integration tests configure them.
VENUES: dict[str, VenueSpec] = {
    v.name: v
    for v in (
        VenueSpec("binance", "USDT", "/stream"),
        VenueSpec("binance-perp", "USDT", "/stream"),
        VenueSpec("bybit", "USDT", "/v5/public"),
        VenueSpec("coinbase", "USD", "/"),
        VenueSpec("kraken", "USD", "/v2"),
        VenueSpec("okx", "USDT", "/ws/v5/public"),
    )
}


def available_venues() -> list[str]:
    """Venues with both an ingest plugin and a simulator dialect in this tree."""
    root = Path(__file__).resolve().parents[2]
    out = []
    for name in VENUES:
        mod = name.replace("-", "_")
        if (root / "services/ingest/venues" / f"{mod}.py").exists() and (
            root / "services/simulator/dialects" / f"{mod}.py"
        ).exists():
            out.append(name)
    return out


class Ports:
    """Free loopback ports, never the same one twice in a run (``free_port`` alone can hand out
    a port twice when nothing binds it in between)."""

    def __init__(self) -> None:
        self.used: set[int] = set()

    def __call__(self) -> int:
        for _ in range(1000):
            port = free_port()
            if port not in self.used:
                self.used.add(port)
                return port
        raise RuntimeError("no free port")


PORTS = Ports()


def write_config(
    run_dir: Path,
    venues: list[str],
    bases: list[str] | None,
    *,
    rate: float,
    trade_ratio: float,
    seed: int = 11,
    sim_per_venue: bool = True,
    realtime_priority: int = 0,
    trace_hops: bool = True,
) -> Path:
    """A complete flowbook config on free ports. The gateway's per-client request limits are
    raised so that one measuring client may subscribe every instrument at once."""
    bases_s = ", ".join(f'"{b}"' for b in (bases or BASES))
    sections = ""
    for v in venues:
        spec, sim_port = VENUES[v], PORTS()
        sections += f"""
[venues.{v}]
enabled = true
pub = "tcp://127.0.0.1:{PORTS()}"
control = "tcp://127.0.0.1:{PORTS()}"
ws_url = "ws://127.0.0.1:{sim_port}{spec.ws_path}"
rest_url = "http://127.0.0.1:{sim_port}"
sim_port = {sim_port}
quote = "{spec.quote}"
bases = [{bases_s}]
"""
    text = f"""# written by tests/bench (flowbook benchmark)
[simulator]
enabled = {"false" if sim_per_venue else "true"}
host = "127.0.0.1"
control_port = {PORTS()}
rate = {rate}
trade_ratio = {trade_ratio}
seed = {seed}

[book]
pub = "tcp://127.0.0.1:{PORTS()}"
control = "tcp://127.0.0.1:{PORTS()}"
depth = 50
depth_interval_ms = 50
stale_after_s = 3.0
quote_groups = [["USD", "USDT", "USDC"]]
trace_hops = {str(trace_hops).lower()}

[gateway]
host = "127.0.0.1"
port = {PORTS()}
max_subscriptions = 1000
max_messages_per_s = 2000
trace_hops = {str(trace_hops).lower()}

[scheduling]
realtime_priority = {realtime_priority}
{sections}
"""
    path = run_dir / "flowbook.toml"
    path.write_text(text)
    return path


class BenchStack(SupervisedStack):
    """``tests.stack.SupervisedStack`` plus, when ``sim_per_venue``, one simulator program per
    venue (``sim:<venue>``, each with its own control port) in the same supervisord."""

    def __init__(self, config_path: Path, run_dir: Path, sim_per_venue: bool) -> None:
        self.cfg = load(config_path)
        self.run_dir = run_dir
        path = write(self.cfg, run_dir)
        self.sim_ports: dict[str, int] = {}  # venue (or "*") -> control port
        log_dir = run_dir / "log"
        if sim_per_venue:
            extra = []
            for v in self.cfg.enabled_venues():
                port = PORTS()
                self.sim_ports[v.name] = port
                extra.append(
                    _program(
                        f"sim-{v.name}",
                        f"services.simulator --venues {v.name} --control-port {port}",
                        self.cfg,
                        log_dir,
                        priority="10",
                    )
                )
            names = ",".join(f"sim-{v.name}" for v in self.cfg.enabled_venues())
            extra.append(f"[group:sim]\nprograms={names}\npriority=10\n")
            path.write_text(path.read_text() + "\n" + "\n".join(extra))
        else:
            self.sim_ports["*"] = int(self.cfg.simulator["control_port"])
        text = (DEPLOY / "supervisord.conf").read_text().replace("%(here)s/../run", str(run_dir))
        self.conf = run_dir / "supervisord.conf"
        self.conf.write_text(text)
        self.proc = Proc("supervisord", ["-n", "-c", str(self.conf)], run_dir, exe=SUPERVISORD)

    def pids(self) -> dict[str, int]:
        """program name (``ingest:binance``, ``book``, ``sim:sim-binance``...) -> pid."""
        out = {}
        for line in self.ctl("status").splitlines():
            parts = line.split()
            if len(parts) >= 4 and parts[1] == "RUNNING" and parts[2] == "pid":
                out[parts[0]] = int(parts[3].rstrip(","))
        return out


def is_sim(program: str) -> bool:
    return program == "simulator" or program.startswith("sim:")


class ProcMeter:
    """CPU% (over a window) and RSS (sampled, max and last) of a set of processes."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.procs: dict[str, psutil.Process] = {}
        for name, pid in pids.items():
            with contextlib.suppress(psutil.NoSuchProcess):
                self.procs[name] = psutil.Process(pid)
        self.t0 = 0.0
        self.cpu0: dict[str, float] = {}
        self.rss_max: dict[str, int] = {}
        self.rss_samples: dict[str, list[int]] = {}

    def _cpu(self, p: psutil.Process) -> float:
        t = p.cpu_times()
        return t.user + t.system

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.host0 = psutil.cpu_times()
        self.cpu0 = {}
        for name, p in self.procs.items():
            with contextlib.suppress(psutil.Error):
                self.cpu0[name] = self._cpu(p)
        self.rss_max = {}
        self.rss_samples = {}
        self.sample()

    def sample(self) -> None:
        for name, p in self.procs.items():
            try:
                rss = p.memory_info().rss
            except psutil.Error:
                continue
            self.rss_samples.setdefault(name, []).append(rss)
            self.rss_max[name] = max(self.rss_max.get(name, 0), rss)

    def pss(self) -> dict[str, int]:
        """Proportional set size (shared pages split between the processes sharing them): the
        sum over processes is what they really take together; RSS counts shared pages (the
        Python interpreter, libzmq...) once per process."""
        out = {}
        for name, p in self.procs.items():
            with contextlib.suppress(psutil.Error, AttributeError):
                out[name] = p.memory_full_info().pss
        return out

    def stop(self) -> dict[str, Any]:
        self.sample()
        pss = self.pss()
        wall = time.monotonic() - self.t0
        out: dict[str, Any] = {"_host": self.host(wall)}
        for name, p in self.procs.items():
            try:
                cpu = self._cpu(p) - self.cpu0.get(name, 0.0)
            except psutil.Error:
                continue
            samples = self.rss_samples.get(name) or [0]
            out[name] = {
                "pid": p.pid,
                "cpu_percent": round(100.0 * cpu / wall, 1) if wall > 0 else 0.0,
                "cpu_s": round(cpu, 3),
                "rss_mb": round(samples[-1] / 2**20, 1),
                "rss_max_mb": round(self.rss_max.get(name, 0) / 2**20, 1),
                "pss_mb": round(pss[name] / 2**20, 1) if name in pss else None,
            }
        ours = sum(p["cpu_s"] for k, p in out.items() if not k.startswith("_"))
        host = out["_host"]
        host["others_cpu_percent"] = round(host["busy_cpu_percent"] - 100.0 * ours / wall, 1)
        return out

    def host(self, wall: float) -> dict[str, Any]:
        """The whole machine over the window: busy CPU (% of one core, all processes) and the
        load average, so that a run on a busy host can be told from a quiet one."""
        t1 = psutil.cpu_times()
        idle = (t1.idle + getattr(t1, "iowait", 0.0)) - (
            self.host0.idle + getattr(self.host0, "iowait", 0.0)
        )
        total = sum(t1) - sum(self.host0)
        cores = psutil.cpu_count() or 1
        busy = 100.0 * cores * (1.0 - idle / total) if total > 0 else 0.0
        return {
            "cores": cores,
            "busy_cpu_percent": round(busy, 1),
            "loadavg_1m": round(os.getloadavg()[0], 2),
        }


def others_cpu(window: float = 2.0) -> float:
    """CPU used by processes outside this benchmark's process tree over ``window`` seconds, in %
    of one core (other people's work on a shared machine)."""
    me = psutil.Process()

    def ours() -> float:
        total = 0.0
        for p in [me, *me.children(recursive=True)]:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    t0, h0, o0 = time.monotonic(), psutil.cpu_times(), ours()
    time.sleep(window)
    t1, h1, o1 = time.monotonic(), psutil.cpu_times(), ours()
    idle = (h1.idle + getattr(h1, "iowait", 0.0)) - (h0.idle + getattr(h0, "iowait", 0.0))
    busy_s = (sum(h1) - sum(h0)) - idle
    return round(100.0 * max(busy_s - (o1 - o0), 0.0) / (t1 - t0), 1)


def set_autogroup_nice(pid: int, nice: int) -> bool:
    """Set the scheduling weight of the autogroup (session) of ``pid``.

    With ``kernel.sched_autogroup_enabled = 1`` the scheduler shares the CPU fairly between
    *sessions*, not processes: the whole benchmarked stack (supervisord's session, a dozen
    processes) then gets as much CPU as any single process that another user started in its
    own session. A negative nice gives the session more weight. Needs root for nice < 0."""
    try:
        Path(f"/proc/{pid}/autogroup").write_text(str(nice))
        return True
    except OSError:
        return False


def autogroup_enabled() -> bool:
    try:
        return Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        return False
