"""The gateway's own counters and ``/metrics``: a prometheus_client Collector that turns the
latest ``status.<venue>`` and ``hb.<service>`` stats of the book builder into metric families at
scrape time, plus the gateway's clients, messages and bus -> client send latency.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from common.metrics import PERCENTILES, LatencyHistogram, ProcessStats
from services.gateway.state import VENUE_STATES, MarketState, table

# Counters in a venue's status stats -> metric name (without _total) and help.
VENUE_COUNTERS = {
    "frames": ("flowbook_venue_frames", "Frames read from the exchange."),
    "bytes": ("flowbook_venue_bytes", "Bytes read from the exchange."),
    "trades": ("flowbook_venue_trades", "Trades received from the exchange."),
    "gaps": ("flowbook_venue_gaps", "Sequence gaps detected (books resynced)."),
    "resyncs": ("flowbook_venue_resyncs", "Book resyncs."),
    "reconnects": ("flowbook_venue_reconnects", "WebSocket reconnects to the exchange."),
    "parse_errors": ("flowbook_venue_parse_errors", "Malformed frames skipped."),
    "checksum_failures": ("flowbook_venue_checksum_failures", "Book checksum mismatches."),
    "budget_reconnects": (
        "flowbook_venue_budget_reconnects",
        "Resyncs done by reconnecting: the venue's subscribe limit was near.",
    ),
    "metadata_reloads": (
        "flowbook_venue_metadata_reloads",
        "Instrument metadata read again after a checksum failure (Kraken).",
    ),
    "rest_calls": ("flowbook_venue_rest_calls", "REST calls to the exchange."),
    "rest_rate_limited": ("flowbook_venue_rest_rate_limited", "REST answers 429/418."),
}
LATENCY_SAMPLES_PER_S = 20_000
# Send latency histogram buckets (seconds).
LATENCY_BUCKETS_S = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


@dataclass
class GatewayStats:
    """Counters of the gateway itself (the bus side and every client write here)."""

    connections: int = 0  # accepted WebSocket connections, total
    rejected: int = 0  # refused: max_clients
    requests: int = 0  # inbound client messages
    messages_sent: int = 0
    bytes_sent: int = 0
    conflated: int = 0  # updates replaced by a newer one before being sent (interval_ms > 0)
    dropped: int = 0  # updates dropped because the client was behind (interval_ms = 0)
    trades_dropped: int = 0  # trades dropped from slow clients' backlogs
    slow_closed: int = 0  # clients closed because they stopped reading
    http_requests: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # error code -> count
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)  # ts_pub -> ws send
    # Recording costs ~1.5 us; above LATENCY_SAMPLES_PER_S sends/s one send in latency_every is
    # recorded (uniform sampling keeps the distribution). Set by the hub once a second.
    latency_every: int = 1
    latency_tick: int = 0
    started: float = field(default_factory=time.time)


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return None


def _gc_pauses(sources: list[tuple[str, dict[str, Any]]]) -> Iterator[Metric]:
    """The garbage collector's pauses from each process's heartbeat ``process.gc``."""
    labels = ["service", "generation"]
    runs = CounterMetricFamily(
        "flowbook_process_gc_collections", "Garbage collections, by generation.", labels=labels
    )
    pause = CounterMetricFamily(
        "flowbook_process_gc_pause_seconds", "Time stood still in collections.", labels=labels
    )
    longest = GaugeMetricFamily(
        "flowbook_process_gc_pause_max_seconds", "Longest collection pause.", labels=labels
    )
    for service, stats in sources:
        proc = stats.get("process")
        gcs = proc.get("gc") if isinstance(proc, dict) else None
        for gen, g in sorted(gcs.items() if isinstance(gcs, dict) else ()):
            if not isinstance(g, dict) or _num(g.get("collections")) is None:
                continue
            at = [service, str(gen).removeprefix("gen")]
            runs.add_metric(at, _num(g.get("collections")))
            pause.add_metric(at, (_num(g.get("pause_us_total")) or 0.0) / 1e6)
            longest.add_metric(at, (_num(g.get("pause_us_max")) or 0.0) / 1e6)
    yield from (runs, pause, longest)


def _add_summary(metric: Metric, summary: Any, labels: dict[str, str]) -> bool:
    """Samples of one latency summary (``{"p50",...,"mean","count"}`` in µs), in seconds."""
    if not isinstance(summary, dict) or not summary.get("count"):
        return False
    name = metric.name
    for p in PERCENTILES:
        v = _num(summary.get(f"p{p:g}"))
        if v is not None:
            metric.add_sample(name, {**labels, "quantile": f"{p / 100:g}"}, v / 1e6)
    count = _num(summary.get("count")) or 0.0
    mean = _num(summary.get("mean")) or 0.0
    metric.add_sample(name + "_count", labels, count)
    metric.add_sample(name + "_sum", labels, mean * count / 1e6)
    return True


def latency_buckets(hist: LatencyHistogram) -> tuple[list[tuple[str, float]], float, int]:
    """Cumulative Prometheus buckets (seconds) from the HDR histogram, its sum and count."""
    h = hist.hist
    total = h.get_total_count()
    counts = [0] * len(LATENCY_BUCKETS_S)
    if total:
        for step in h.get_recorded_iterator():
            value_s = h.get_highest_equivalent_value(step.value_iterated_to) / 1e6
            for i, bound in enumerate(LATENCY_BUCKETS_S):
                if value_s <= bound:
                    counts[i] += step.count_added_in_this_iter_step
                    break
    buckets: list[tuple[str, float]] = []
    running = 0
    for bound, n in zip(LATENCY_BUCKETS_S, counts, strict=True):
        running += n
        buckets.append((f"{bound:g}", float(running)))
    buckets.append(("+Inf", float(total)))
    total_s = hist.sum_us / 1e6  # exact and O(1); hdrh's mean walks every bucket
    return buckets, total_s, total


class GatewayCollector:
    """Builds every family at scrape time from ``MarketState`` and ``GatewayStats``."""

    def __init__(
        self,
        state: MarketState,
        stats: GatewayStats,
        gauges: Callable[[], dict[str, float]],
        proc: ProcessStats | None = None,
        bus_stats: Callable[[], dict[str, int]] | None = None,
    ) -> None:
        self.state = state
        self.stats = stats
        self.gauges = gauges  # clients, subscriptions: live values from the hub
        self.proc = proc or ProcessStats()
        self.bus_stats = bus_stats  # the gateway's own Subscriber of the book builder

    def collect(self) -> Iterator[Metric]:
        yield from self._venues()
        yield from self._processes_and_latency()
        yield from self._gateway()

    # -- venues (status.<venue>) ------------------------------------------------------------------
    def _venues(self) -> Iterator[Metric]:
        state = self.state
        now = time.monotonic()
        venue_state = GaugeMetricFamily(
            "flowbook_venue_state",
            "Venue state as the gateway sees it (1 for the current state).",
            labels=["venue", "state"],
        )
        inst_state = GaugeMetricFamily(
            "flowbook_instrument_state",
            "Instrument sync state (1 for the current state).",
            labels=["venue", "symbol", "state"],
        )
        age = GaugeMetricFamily(
            "flowbook_venue_last_message_age_seconds",
            "Seconds since the venue's last exchange message (from its status).",
            labels=["venue"],
        )
        rate = GaugeMetricFamily(
            "flowbook_venue_messages_per_second",
            "Exchange messages per second (last interval).",
            labels=["venue"],
        )
        counters = {
            key: CounterMetricFamily(name, help_, labels=["venue"])
            for key, (name, help_) in VENUE_COUNTERS.items()
        }
        for venue in state.venues():
            current = state.venue_state(venue, now)
            for s in VENUE_STATES:
                venue_state.add_metric([venue, s], 1.0 if s == current else 0.0)
            for symbol, s in state.instrument_states(venue).items():
                inst_state.add_metric([venue, symbol, s], 1.0)
            msg = state.status.get(venue)
            if not msg:
                continue
            a = _num(msg.get("last_msg_age_s"))
            if a is not None:
                age.add_metric([venue], a)
            stats = table(msg, "stats")
            r = _num(stats.get("msg_rate"))
            if r is not None:
                rate.add_metric([venue], r)
            for key, family in counters.items():
                v = _num(stats.get(key))
                if v is not None:
                    family.add_metric([venue], v)
        yield venue_state
        yield inst_state
        yield age
        yield rate
        yield from counters.values()

    # -- per-process stats and stage latencies (status stats and heartbeats) ----------------------
    def _sources(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """(service, stats dict): every venue's ingest stats, then every heartbeat's."""
        for venue, msg in sorted(self.state.status.items()):
            stats = msg.get("stats")
            if isinstance(stats, dict):
                yield f"ingest-{venue}", stats
        for service, msg in sorted(self.state.heartbeats.items()):
            stats = msg.get("stats")
            if isinstance(stats, dict):
                yield service, stats

    def _processes_and_latency(self) -> Iterator[Metric]:
        cpu = GaugeMetricFamily(
            "flowbook_process_cpu_percent", "CPU use of each process (%).", labels=["service"]
        )
        rss = GaugeMetricFamily(
            "flowbook_process_rss_bytes", "Resident memory of each process.", labels=["service"]
        )
        lat = Metric(
            "flowbook_stage_latency_seconds",
            "Per-stage latency percentiles reported by each process (since its start).",
            "summary",
        )
        lat_venue = Metric(
            "flowbook_stage_latency_by_venue_seconds",
            "Per-stage latency percentiles per venue reported by each process (since its start).",
            "summary",
        )
        lat_max = GaugeMetricFamily(
            "flowbook_stage_latency_max_seconds",
            "Per-stage maximum latency reported by each process.",
            labels=["service", "stage"],
        )
        book_up = GaugeMetricFamily(
            "flowbook_book_up", "1 if the book builder is publishing, else 0."
        )
        book_up.add_metric([], 1.0 if self.state.book_alive else 0.0)
        sources = list(self._sources())
        gw = self.proc.sample()
        sources.append(("gateway", {"process": gw, "latency_us": {}}))
        for service, stats in sources:
            proc = stats.get("process")
            if isinstance(proc, dict):
                c, m = _num(proc.get("cpu_percent")), _num(proc.get("rss_bytes"))
                if c is not None:
                    cpu.add_metric([service], c)
                if m is not None:
                    rss.add_metric([service], m)
            latencies = stats.get("latency_us")
            if isinstance(latencies, dict):
                for stage, summary in sorted(latencies.items()):
                    labels = {"service": service, "stage": str(stage)}
                    if _add_summary(lat, summary, labels):
                        mx = _num(summary.get("max"))
                        if mx is not None:
                            lat_max.add_metric([service, str(stage)], mx / 1e6)
            by_venue = stats.get("latency_us_by_venue")  # the book builder's, per venue
            if isinstance(by_venue, dict):
                for venue, stages in sorted(by_venue.items()):
                    if not isinstance(stages, dict):
                        continue
                    for stage, summary in sorted(stages.items()):
                        labels = {"service": service, "venue": str(venue), "stage": str(stage)}
                        _add_summary(lat_venue, summary, labels)
        yield book_up
        yield cpu
        yield rss
        yield from _gc_pauses(sources)
        yield lat
        yield lat_venue
        yield lat_max

    # -- the gateway itself -----------------------------------------------------------------------
    def _gateway(self) -> Iterator[Metric]:
        s = self.stats
        for name, value in self.gauges().items():
            g = GaugeMetricFamily(f"flowbook_gateway_{name}", f"Gateway {name} now.")
            g.add_metric([], value)
            yield g
        counters = (
            ("connections", "WebSocket connections accepted.", s.connections),
            ("connections_rejected", "WebSocket connections refused (max_clients).", s.rejected),
            ("requests", "Messages received from clients.", s.requests),
            ("messages_sent", "Messages sent to clients.", s.messages_sent),
            ("bytes_sent", "Bytes sent to clients (payload).", s.bytes_sent),
            ("messages_conflated", "Updates replaced by newer ones (interval_ms).", s.conflated),
            ("messages_dropped", "Updates dropped for clients that fell behind.", s.dropped),
            ("trades_dropped", "Trades dropped from slow clients' backlogs.", s.trades_dropped),
            ("slow_clients_closed", "Clients closed because they stopped reading.", s.slow_closed),
            ("http_requests", "Plain HTTP requests served.", s.http_requests),
        )
        for name, help_, value in counters:
            c = CounterMetricFamily(f"flowbook_gateway_{name}", help_)
            c.add_metric([], float(value))
            yield c
        errors = CounterMetricFamily(
            "flowbook_gateway_client_errors", "Error messages sent to clients.", labels=["code"]
        )
        for code, n in sorted(s.errors.items()):
            errors.add_metric([code], float(n))
        yield errors
        bus = CounterMetricFamily(
            "flowbook_gateway_bus_messages", "Messages from the book builder.", labels=["kind"]
        )
        for kind, n in sorted(self.state.bus_messages.items()):
            bus.add_metric([kind], float(n))
        yield bus
        sub = self.bus_stats() if self.bus_stats is not None else {}
        for key, help_ in (
            ("gaps", "Seq gaps in what the gateway received from the book builder (its SUB high-"
             "water mark, a restart); depth/bbo are complete, so a gap is a missed step."),
            ("resyncs", "Resyncs the gateway asked the book builder for."),
            ("lost_trades", "Trade messages the gateway missed (seq gaps on trade topics)."),
            ("decode_errors", "Bus frames the gateway could not decode."),
        ):  # fmt: skip
            c = CounterMetricFamily(f"flowbook_gateway_bus_{key}", help_)
            c.add_metric([], float(sub.get(key, 0)))
            yield c
        buckets, total_s, _ = latency_buckets(s.latency)
        hist = HistogramMetricFamily(
            "flowbook_gateway_send_latency_seconds",
            "Book builder publish (ts_pub) -> gateway WebSocket send, per message and client.",
        )
        hist.add_metric([], buckets, sum_value=total_s)
        yield hist


def make_registry(collector: GatewayCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
