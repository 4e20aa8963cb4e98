"""``common.tap``: seq tracking, one-line bodies, and the CLI against a real Publisher."""

from __future__ import annotations

import queue
import subprocess
import threading

import pytest

from common.tap import SeqTracker, level_text, summarize
from tests.buspub import ThreadPublisher
from tests.procs import PY, ROOT, wait_until


def test_seq_tracker_counts_gaps_lost_messages_and_epochs() -> None:
    tr = SeqTracker()
    assert tr.observe("t", "e1", 5, 0.0) == ""  # joining mid-stream is not a gap
    assert tr.observe("t", "e1", 6, 0.0) == ""
    assert "3 lost" in tr.observe("t", "e1", 10, 0.0)
    assert "1 lost" in tr.observe("t", "e1", 12, 0.0)
    assert "epoch e2" in tr.observe("t", "e2", 1, 0.0)  # a restart is not a gap
    assert tr.observe("t", "e2", 2, 0.0) == ""
    assert "back" in tr.observe("t", "e2", 2, 0.0)
    st = tr.topics["t"]
    assert (st.messages, st.gaps, st.lost, len(st.epochs)) == (7, 2, 4, 2)
    assert tr.observe("u", None, None, 0.0) == " !no-seq"


def test_summaries_are_one_compact_line() -> None:
    assert level_text([65000.5, 1.25]) == "65000.5x1.25"
    assert level_text([65000.5, 1.5, {"binance": 1.0, "kraken": 0.5}]) == (
        "65000.5x1.5{binance:1.0,kraken:0.5}"
    )
    assert level_text([65000.5, 1.5, "binance"]) == "65000.5x1.5 binance"
    assert level_text(None) == "-"
    book = {
        "v": 1,
        "epoch": "e",
        "seq": 3,
        "type": "snapshot",
        "venue": "binance",
        "symbol": "BTC-USDT",
        "state": "live",
        "bids": [[100.0, 1.0], [99.0, 2.0], [98.0, 3.0], [97.0, 4.0]],
        "asks": [],
        "ts_recv": 1,
    }
    line = summarize(book)
    assert line == "snapshot state=live bids[4]=100.0x1.0 99.0x2.0 98.0x3.0 +1 asks[0]="
    trades = {"type": "trades", "trades": [{"price": 1.5, "size": 2.0, "side": "buy"}]}
    assert summarize(trades) == "trades trades[1]=buy 2.0@1.5"
    assert "\n" not in summarize({"type": "status", "instruments": {"a": {"b": 1}}})


class TapProc:
    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen(
            [PY, "-m", "common.tap", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.out: list[str] = []
        assert self.proc.stdout is not None
        stdout = self.proc.stdout
        threading.Thread(target=lambda: [self.lines.put(x) for x in stdout], daemon=True).start()

    def find(self, *texts: str) -> str | None:
        """The latest output line containing every one of ``texts``."""
        while not self.lines.empty():
            self.out.append(self.lines.get())
        return next((x for x in reversed(self.out) if all(t in x for t in texts)), None)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def pub():
    p = ThreadPublisher(heartbeat_s=0.1)
    yield p
    p.close()


def test_tap_prints_resynced_state_then_live_messages_and_flags_gaps(pub: ThreadPublisher):
    pub.call(pub.new_book, "book.binance.BTC-USDT", 3)
    pub.call(pub.message, "bbo.all.BTC-USD", {"type": "bbo", "bid": [1.0, 2.0, "kraken"]})
    tap = TapProc(["--endpoint", pub.pub_ep, "--control", pub.control_ep, "book.", "bbo."])
    try:
        # current state first, by resync (both were published before the tap started)
        wait_until(lambda: tap.find("# pub: resync ok"), 20, what="resync answered")
        wait_until(lambda: tap.find("book.binance.BTC-USDT #2", "snapshot", "bids[3]="), 20)
        wait_until(lambda: tap.find("bbo.all.BTC-USD #2", "bid=1.0x2.0 kraken"), 20)
        pub.call(pub.delta, "book.binance.BTC-USDT")
        wait_until(lambda: tap.find("book.binance.BTC-USDT #3 delta"), 20, what="live delta")
        pub.call(pub.skip, "bbo.all.BTC-USD", 4)
        pub.call(pub.message, "bbo.all.BTC-USD", {"type": "bbo", "bid": None})
        line = wait_until(lambda: tap.find("bbo.all.BTC-USD #7"), 20, what="bbo after a gap")
        assert "!gap 4 lost (#3..#6)" in line
        assert "bid=-" in line and "ms" in line  # a body and the publish-to-receive latency
        assert not tap.find("hb."), "heartbeats are not shown unless asked for"
    finally:
        tap.stop()


def test_tap_stats_counts_rates_gaps_and_epochs(pub: ThreadPublisher):
    topic = "trade.binance.BTC-USDT"
    body = {"type": "trades", "trades": [{"price": 1.0, "size": 1.0, "side": "buy"}]}
    tap = TapProc(["--endpoint", pub.pub_ep, "--stats", "--no-resync", "trade.", "hb."])
    try:
        wait_until(lambda: tap.find("hb.test"), 20, what="a stats table")
        pub.call(lambda: [pub.message(topic, body, False) for _ in range(5)])
        pub.call(pub.skip, topic, 3)
        pub.call(pub.message, topic, body, False)
        # columns: topic msg/s total gaps lost epochs age
        wait_until(lambda: (row := tap.find(topic)) and row.split()[2:6] == ["6", "1", "3", "1"])
        pub.restart()  # a message right after it could be lost before the SUB reconnects
        wait_until(lambda: (row := tap.find("hb.test")) and row.split()[5] == "2", 20)
        pub.call(pub.message, topic, body, False)
        wait_until(
            lambda: (row := tap.find(topic)) and row.split()[2:6] == ["7", "1", "3", "2"],
            20,
            what="a second epoch counted, not a gap",
        )
        assert tap.find("--- ", "gaps 1", "lost 3")
    finally:
        tap.stop()


def test_tap_follows_the_config_endpoints(tmp_path, pub: ThreadPublisher):
    cfg = tmp_path / "flowbook.toml"
    cfg.write_text(
        f'[book]\npub = "{pub.pub_ep}"\ncontrol = "{pub.control_ep}"\n'
        '[venues.binance]\npub = "tcp://127.0.0.1:1"\ncontrol = "tcp://127.0.0.1:2"\n'
        'ws_url = "ws://x"\nquote = "USDT"\nbases = ["BTC"]\n'
    )
    pub.call(pub.message, "depth.all.BTC-USD", {"type": "depth", "bids": [], "asks": []})
    out = subprocess.run(
        [PY, "-m", "common.tap", "--config", str(cfg), "--ingest", "--count", "1", "depth."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "book:depth.all.BTC-USD #2 depth bids[0]= asks[0]=" in out.stdout
