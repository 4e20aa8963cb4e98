"""Latency histograms and process statistics carried in heartbeats.

Latencies are recorded in microseconds in HDR histograms (hdrhistogram), one per stage; a
heartbeat carries their percentiles and the gateway turns them into Prometheus metrics.
"""

from __future__ import annotations

import gc
import os
import time
from typing import Any

import psutil
from hdrh.histogram import HdrHistogram

PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)
MAX_US = 60_000_000


class LatencyHistogram:
    """HDR histogram of microseconds, 1 µs to 60 s, ``digits`` significant digits.

    Services record with 2 digits (values within 1%): hdrh reads percentiles by walking its
    buckets in Python, and with 3 digits (17k buckets) the book builder's heartbeat summaries
    stopped its event loop for ~4 ms. Histograms read rarely (the benchmark's probes, the
    gateway's /metrics) keep 3.

    The mean is kept as a running sum: hdrh's own mean walks every bucket in Python (~30 ms for
    a few thousand distinct values), too slow for a once-a-second heartbeat on a hot loop.
    """

    __slots__ = ("hist", "sum_us", "total")

    def __init__(self, digits: int = 2) -> None:
        self.hist = HdrHistogram(1, MAX_US, digits)
        self.total = 0
        self.sum_us = 0

    def record_ns(self, ns: int) -> None:
        us = ns // 1000
        us = 1 if us < 1 else min(us, MAX_US)
        self.hist.record_value(us)
        self.total += 1
        self.sum_us += us

    def add(self, other: LatencyHistogram) -> None:
        self.hist.add(other.hist)
        self.total += other.total
        self.sum_us += other.sum_us

    def summary(self) -> dict[str, float]:
        h = self.hist
        count = h.get_total_count()
        if count == 0:
            return {"count": 0, "total": self.total}
        values = h.get_percentile_to_value_dict(list(PERCENTILES))
        out = {f"p{p:g}": float(values[p]) for p in PERCENTILES}
        out["max"] = float(h.get_max_value())
        out["mean"] = round(self.sum_us / self.total, 1) if self.total else 0.0
        out["count"] = count
        out["total"] = self.total
        return out

    def reset(self) -> None:
        self.hist.reset()
        self.total = 0
        self.sum_us = 0


class GcPauses:
    """How long Python's cyclic garbage collector stopped this process, per generation.

    A collection runs inside whatever allocation triggered it, so its pause lands on the
    message being handled: older generations take milliseconds and show up in the p99.
    """

    def __init__(self) -> None:
        self.count = [0, 0, 0]
        self.total_us = [0.0, 0.0, 0.0]
        self.max_us = [0.0, 0.0, 0.0]
        self._t0 = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
            return
        gen = info.get("generation", 0)
        us = (time.perf_counter() - self._t0) * 1e6
        self.count[gen] += 1
        self.total_us[gen] += us
        if us > self.max_us[gen]:
            self.max_us[gen] = us

    def as_dict(self) -> dict[str, Any]:
        return {
            f"gen{g}": {
                "collections": self.count[g],
                "pause_us_total": round(self.total_us[g]),
                "pause_us_max": round(self.max_us[g]),
            }
            for g in range(3)
        }


_gc_pauses: GcPauses | None = None


def gc_pauses() -> GcPauses:
    """The process's one ``GcPauses`` (started on first use)."""
    global _gc_pauses
    if _gc_pauses is None:
        _gc_pauses = GcPauses()
    return _gc_pauses


class ProcessStats:
    """CPU%, RSS and garbage-collector pauses of this process, for heartbeats.

    CPU and RSS are read from /proc at most every ``every_s`` (CPU% is the average since the
    last read; the first one is redone after a second): every heartbeat's work is a stall of
    the event loop for the messages then in flight, so what need not be fresh is not re-read.
    """

    def __init__(self, every_s: float = 5.0) -> None:
        self.proc = psutil.Process(os.getpid())
        self.proc.cpu_percent(None)
        self.gc = gc_pauses()
        self.every_s = every_s
        self._primed_at = time.monotonic()
        self._read_at: float | None = None
        self._window = 0.0
        self._cpu_rss = (0.0, 0)

    def sample(self) -> dict[str, Any]:
        now = time.monotonic()
        last = self._read_at
        if (
            last is None
            or now - last >= self.every_s
            or (self._window < 1.0 and now - last >= 1.0)  # a first CPU% over a blink: redo
        ):
            self._window = now - (self._primed_at if last is None else last)
            self._read_at = now
            with self.proc.oneshot():
                self._cpu_rss = (self.proc.cpu_percent(None), self.proc.memory_info().rss)
        cpu, rss = self._cpu_rss
        return {
            "pid": self.proc.pid,
            "cpu_percent": cpu,
            "rss_bytes": rss,
            "gc": self.gc.as_dict(),
        }


class RateMeter:
    """Messages per second over the last heartbeat interval."""

    __slots__ = ("count", "last_count", "last_t")

    def __init__(self) -> None:
        self.count = 0
        self.last_count = 0
        self.last_t = 0.0

    def rate(self, now: float) -> float:
        if not self.last_t:
            self.last_t, self.last_count = now, self.count
            return 0.0
        dt = now - self.last_t
        r = (self.count - self.last_count) / dt if dt > 0 else 0.0
        self.last_t, self.last_count = now, self.count
        return round(r, 1)
