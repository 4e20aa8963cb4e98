"""Ingest whose venue lists none of the configured markets: it stays up, reports why and keeps
asking (exiting would have supervisord restart it in a loop, downloading metadata each time)."""

from __future__ import annotations

import http.server
import threading

import orjson
import pytest

from common.bus import Upstream
from common.config import load
from tests.busbook import BusMirror
from tests.procs import free_port, processes, venue_section, wait_until, write_config

pytestmark = pytest.mark.integration

EXCHANGE_INFO = {  # a Binance exchangeInfo without any of the configured bases
    "symbols": [
        {
            "symbol": "FOOUSDT",
            "status": "TRADING",
            "baseAsset": "FOO",
            "quoteAsset": "USDT",
            "filters": [
                {"filterType": "PRICE_FILTER", "tickSize": "0.01"},
                {"filterType": "LOT_SIZE", "stepSize": "0.001"},
            ],
        }
    ]
}


class _Info(http.server.BaseHTTPRequestHandler):
    calls = 0

    def do_GET(self) -> None:
        type(self).calls += 1
        body = orjson.dumps(EXCHANGE_INFO)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_no_matching_instrument_keeps_the_process_up_and_says_why(tmp_path):
    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Info)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    path = write_config(
        tmp_path, venue_section("binance", sim_port=port, bases=["BTC", "ETH"]), rate=10
    )
    text = path.read_text().replace("[simulator]\nenabled = true", "[simulator]\nenabled = false")
    path.write_text(text)
    cfg = load(path)
    v = cfg.venues["binance"]
    with processes(tmp_path) as start:
        proc = start("ingest", ["-m", "services.ingest", "binance", "--config", str(path)])
        mirror = BusMirror([Upstream(v.pub, v.control, "ingest-binance")], ["book."])
        try:
            wait_until(lambda: _Info.calls >= 2, 30, what="metadata asked for again")

            def error() -> str:
                return str((mirror.stats("ingest-binance") or {}).get("error"))

            wait_until(lambda: "none of" in error(), 20, what="the reason in its heartbeat")
            assert "none of ['BTC', 'ETH'] trades against USDT" in error()
            assert mirror.stats("ingest-binance")["venue_state"] == "down"
            assert proc.alive(), proc.log_text()
        finally:
            mirror.close()
            server.shutdown()
