"""The process figures every heartbeat carries: CPU, RSS and the garbage collector's pauses."""

from __future__ import annotations

import gc

from common.metrics import ProcessStats


def test_heartbeat_process_stats_count_gc_pauses_per_generation():
    stats = ProcessStats()
    before = stats.sample()["gc"]
    cycles = []
    for _ in range(3):
        a: list = []
        a.append(a)  # a reference cycle only the collector can free
        cycles.append(a)
    del cycles, a
    gc.collect(2)
    gc.collect(0)
    after = ProcessStats().sample()
    assert after["rss_bytes"] > 0 and after["pid"] > 0
    gen0, gen2 = after["gc"]["gen0"], after["gc"]["gen2"]
    assert gen2["collections"] >= before["gen2"]["collections"] + 1
    assert gen0["collections"] >= before["gen0"]["collections"] + 1
    assert gen2["pause_us_max"] > 0 and gen2["pause_us_total"] >= gen2["pause_us_max"]
