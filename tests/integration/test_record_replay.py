"""Record a live Binance ingest run, replay the recording, and get exactly the same books.

Run 1: simulator (binance dialect) + ingest with ``record_dir``; a gap fault makes the ingest
resync one book with a second REST snapshot; after a few hundred updates the market is paused, the bus books converge to ``/sim/book`` and are noted; SIGTERM closes the
recorder. Run 2: the simulator replays that recording as fast as possible to a fresh ingest;
once the replay is done, every bus book equals run 1's final book, level for level.
"""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from common.bus import Upstream
from common.config import load
from services.ingest.recorder import read_recording
from tests.busbook import BusMirror
from tests.procs import free_port, processes, venue_section, wait_until, write_config
from tests.simctl import SimControl

pytestmark = pytest.mark.integration

BASES = ["BTC", "ETH", "SOL"]
SYMBOLS = {f"book.binance.{b}-USDT": f"{b}USDT" for b in BASES}
DEPTH = 1000  # more than a simulated book holds: compare whole books


def full_books(mirror: BusMirror) -> dict[str, tuple[list, list]] | None:
    books = {t: mirror.top(t, DEPTH) for t in SYMBOLS}
    return None if any(b is None for b in books.values()) else books  # type: ignore[return-value]


def gaps(mirror: BusMirror) -> dict[str, tuple[int, int]] | None:
    """(gaps, resyncs) per instrument, from the ingest's heartbeat."""
    stats = mirror.stats("ingest-binance")
    if not stats or set(stats["instruments"]) != {t.split(".")[2] for t in SYMBOLS}:
        return None
    return {s: (i["gaps"], i["resyncs"]) for s, i in stats["instruments"].items()}


def replay_stats(port: int) -> dict:
    return httpx.get(f"http://127.0.0.1:{port}/sim/stats", timeout=5).json()["replay"]


def test_recorded_run_replays_to_identical_books(tmp_path: Path) -> None:
    rec_dir = tmp_path / "rec"
    live_dir = tmp_path / "live"
    live_dir.mkdir()
    section = venue_section(
        "binance", sim_port=free_port(), bases=BASES, extra=f'record_dir = "{rec_dir}"'
    )
    live_cfg_path = write_config(live_dir, section, rate=150)
    cfg = load(live_cfg_path)
    v = cfg.venues["binance"]
    upstream = [Upstream(v.pub, v.control, "ingest-binance")]

    # -- run 1: live, recorded ----------------------------------------------------------------
    with processes(live_dir) as start:
        start("simulator", ["-m", "services.simulator", "--config", str(live_cfg_path)])
        sim = SimControl(cfg.simulator["control_port"])
        wait_until(sim.healthy, 20, what="simulator up")
        ingest = start(
            "ingest", ["-m", "services.ingest", "binance", "--config", str(live_cfg_path)]
        )
        mirror = BusMirror(upstream, ["book."])
        try:
            wait_until(
                lambda: sum(mirror.count(t) for t in SYMBOLS) > 200, 60, what="200 book messages"
            )
            # a lost update: the ingest resyncs BTC with a second REST snapshot, mid-recording
            sim.fault("binance", "gap", symbol="BTCUSDT")
            wait_until(
                lambda: (gaps(mirror) or {}).get("BTC-USDT") == (1, 1), 30, what="gap repaired"
            )
            wait_until(
                lambda: sum(mirror.count(t) for t in SYMBOLS) > 400, 60, what="400 book messages"
            )
            sim.pause()

            def converged() -> dict | None:
                books = full_books(mirror)
                if books is None:
                    return None
                for topic, native in SYMBOLS.items():
                    if books[topic] != sim.book("binance", native, DEPTH):
                        return None
                return books

            final = wait_until(converged, 30, what="bus books == simulator books")
            assert all(bids and asks for bids, asks in final.values())
            live_gaps = wait_until(lambda: gaps(mirror), 10, what="ingest heartbeat")
            ingest.stop(signal.SIGTERM)
            assert ingest.popen.returncode == 0, "SIGTERM must stop the ingest cleanly"
        finally:
            mirror.close()
            sim.close()

    files = sorted(rec_dir.glob("binance-*.frames.zst"))
    assert files, "no recording written"
    records = [r for f in files for r in read_recording(f)]
    kinds = {(r.kind, r.label) for r in records if r.kind != "ws"}
    assert ("rest", "meta") in kinds and ("rest", "snapshot") in kinds
    snapshots = sum(1 for r in records if r.kind == "rest" and r.label == "snapshot")
    assert snapshots == len(SYMBOLS) + 1  # one per instrument, and BTC's resync
    frames = sum(1 for r in records if r.kind == "ws")
    assert frames > 400

    # -- run 2: replay ------------------------------------------------------------------------
    replay_dir = tmp_path / "replay"
    replay_dir.mkdir()
    replay_cfg_path = write_config(
        replay_dir, venue_section("binance", sim_port=free_port(), bases=BASES)
    )
    rcfg = load(replay_cfg_path)
    rv = rcfg.venues["binance"]
    control_port = rcfg.simulator["control_port"]
    with processes(replay_dir) as start:
        start(
            "replay",
            [
                "-m",
                "services.simulator",
                "--config",
                str(replay_cfg_path),
                "--replay",
                *map(str, files),
                "--speed",
                "0",
            ],
        )
        sim = SimControl(control_port)
        wait_until(sim.healthy, 30, what="replay simulator up")
        assert replay_stats(control_port)["frames_total"] == frames
        start("ingest", ["-m", "services.ingest", "binance", "--config", str(replay_cfg_path)])
        mirror = BusMirror([Upstream(rv.pub, rv.control, "ingest-binance")], ["book."])
        try:
            done = wait_until(
                lambda: (s := replay_stats(control_port))["done"] and s, 60, what="replay done"
            )
            assert done["frames_sent"] == frames
            assert done["snapshots_served"] == snapshots
            wait_until(lambda: full_books(mirror) == final, 30, what="replayed books == recorded")
            replayed = full_books(mirror)
            assert replayed == final  # exactly: every level of every instrument
            # and the replayed ingest went through the same integrity events as the live one
            wait_until(lambda: gaps(mirror) == live_gaps, 10, what="same gaps and resyncs")
        finally:
            mirror.close()
            sim.close()
