"""The book builder's venue statuses and heartbeat as a real process, with no ingest running:
every configured venue gets a ``status.<venue>`` at least once a second (spread over the
second), and a builder with no venue enabled still heartbeats."""

from __future__ import annotations

import time
from collections import defaultdict

import orjson
import pytest
import zmq

from common.config import load
from tests.procs import free_port, processes, venue_section, wait_until, write_config

pytestmark = pytest.mark.integration


def listen(pub: str, prefix: str, seconds: float, until=None) -> list[tuple[float, str, dict]]:
    """(arrival time, topic, message) of everything on ``prefix`` for ``seconds``, or until
    ``until(got)`` is true."""
    ctx = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.subscribe(prefix.encode())
    sub.connect(pub)
    got = []
    end = time.monotonic() + seconds
    try:
        while (left := end - time.monotonic()) > 0:
            if sub.poll(int(left * 1000) + 1):
                topic, body = sub.recv_multipart()
                got.append((time.monotonic(), topic.decode(), orjson.loads(body)))
                if until is not None and until(got):
                    break
    finally:
        sub.close()
    return got


def test_every_venue_gets_a_status_each_second_without_its_ingest(tmp_path):
    venues = "".join(
        venue_section(v, sim_port=free_port(), quote="USDT", bases=["BTC"])
        for v in ("binance", "bybit", "okx")
    )
    path = write_config(tmp_path, venues)
    cfg = load(path)
    with processes(tmp_path) as start:
        start("book", ["-m", "services.book", "--config", str(path)])
        wait_until(lambda: listen(cfg.book.pub, "hb.book", 1.5), 20, what="book builder up")

        def three_each(got) -> bool:
            counts = defaultdict(int)
            for _, topic, _ in got:
                counts[topic] += 1
            return len(counts) == 3 and min(counts.values()) >= 3

        got = listen(cfg.book.pub, "status.", 30.0, until=three_each)
    times = defaultdict(list)
    for at, topic, msg in got:
        times[topic].append(at)
        assert msg["state"] == "down", msg  # no ingest: down, said every second
    assert set(times) == {"status.binance", "status.bybit", "status.okx"}
    for topic, ats in times.items():
        assert len(ats) >= 3, (topic, len(ats))  # said again and again, not once


def test_a_book_builder_with_no_venue_still_heartbeats(tmp_path):
    path = write_config(tmp_path, "")
    cfg = load(path)
    assert not cfg.enabled_venues()
    with processes(tmp_path) as start:
        book = start("book", ["-m", "services.book", "--config", str(path)])
        beats = wait_until(
            lambda: [m for _, _, m in listen(cfg.book.pub, "hb.book", 2.5)][1:] or None,
            20,
            what="two heartbeats from a builder with no venue",
        )
        assert beats[0]["service"] == "book"
        assert book.alive()
        assert "no venue" in book.log_text()
