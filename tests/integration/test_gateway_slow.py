"""A client that never reads while the book builder floods: the gateway's memory stays bounded,
another client keeps receiving promptly, and the stuck client is closed (4000) after
``slow_client_timeout_s``."""

from __future__ import annotations

import time

import orjson
import psutil
import pytest

from tests.gateway_support import (
    GatewayEnv,
    RawWs,
    bbo_msg,
    clients,
    consolidated_msg,
    depth_msg,
    trade_msg,
)
from tests.procs import processes, wait_until

pytestmark = pytest.mark.integration

SLOW_TIMEOUT_S = 12.0
ROUNDS = 8000  # x ~14 kB for the stuck client: ~110 MB if the gateway queued it all
BATCH = 100
RSS_GROWTH_LIMIT = 60 * 2**20


def test_stuck_client_costs_bounded_memory_and_is_closed(tmp_path):
    extra = f"slow_client_timeout_s = {SLOW_TIMEOUT_S}\nclose_timeout_s = 30\n"
    with processes(tmp_path) as start:
        env = GatewayEnv(tmp_path, start, extra)
        book = env.start_book()
        book.set_status("binance")
        try:
            env.start_gateway()
            for topic, msg in (
                ("depth.binance.BTC-USDT", depth_msg("binance", "BTC-USDT")),
                ("depth.binance.ETH-USDT", depth_msg("binance", "ETH-USDT")),
                ("depth.all.BTC-USD", consolidated_msg("BTC-USD")),
                ("bbo.binance.BTC-USDT", bbo_msg("binance", "BTC-USDT", 1.0, 2.0)),
            ):
                book.publish(topic, msg)
            gw = psutil.Process(env.proc.popen.pid)

            stuck = RawWs(env.port, rcvbuf=4096)
            for req in (
                {"channel": "depth", "venue": "binance", "symbol": "BTC-USDT", "depth": 50},
                {"channel": "depth", "venue": "binance", "symbol": "ETH-USDT", "depth": 50},
                {"channel": "depth", "venue": "all", "symbol": "BTC-USD", "depth": 50},
                {"channel": "bbo", "venue": "binance", "symbol": "BTC-USDT"},
                {"channel": "trades", "venue": "all"},
            ):
                stuck.send_text(orjson.dumps({"op": "subscribe", "interval_ms": 0, **req}).decode())
            with clients(env) as (good,):
                good.request({"op": "subscribe", "channel": "bbo", "venue": "binance", "symbol": "BTC-USDT"})  # fmt: skip
                good.expect(lambda m: m["type"] == "snapshot")
                wait_until(
                    lambda: env.metric("flowbook_gateway_subscriptions") == 6, 15, what="subs"
                )
                base_rss = gw.memory_info().rss
                peak_rss = base_rss
                lags: list[float] = []
                t0 = time.monotonic()
                for batch in range(ROUNDS // BATCH):
                    items = []
                    for i in range(BATCH):
                        n = batch * BATCH + i
                        items += [
                            ("depth.binance.BTC-USDT", depth_msg("binance", "BTC-USDT", 100 + n % 7)),
                            ("depth.binance.ETH-USDT", depth_msg("binance", "ETH-USDT", 10 + n % 5)),
                            ("depth.all.BTC-USD", consolidated_msg("BTC-USD", 100 + n % 3)),
                            ("trade.binance.BTC-USDT", trade_msg("binance", "BTC-USDT", n * 10, 10)),
                            ("bbo.binance.BTC-USDT", bbo_msg("binance", "BTC-USDT", 100 + n, 101 + n)),
                        ]  # fmt: skip
                    sent = book.publish_many(items)[-1]
                    marker = sent["bid"][0]
                    got = good.expect(
                        lambda m, marker=marker: m["type"] == "update" and m["bid"][0] == marker,
                        30,
                        what=f"bbo {marker}",
                    )
                    lags.append((got["_rx"] - sent["ts_pub"]) / 1e9)
                    good.received.clear()
                    peak_rss = max(peak_rss, gw.memory_info().rss)
                flood_s = time.monotonic() - t0
                slow_closed = env.metric("flowbook_gateway_slow_clients_closed_total")
                print(
                    f"flood {ROUNDS * 5} msgs in {flood_s:.1f}s; good client lag max "
                    f"{max(lags) * 1e3:.1f} ms, median {sorted(lags)[len(lags) // 2] * 1e3:.1f} ms;"
                    f" gateway RSS {base_rss / 2**20:.1f} -> peak {peak_rss / 2**20:.1f} MiB"
                )
                assert peak_rss - base_rss < RSS_GROWTH_LIMIT
                if flood_s < SLOW_TIMEOUT_S - 1:
                    assert slow_closed == 0, "closed before slow_client_timeout_s"
                dropped = env.metric("flowbook_gateway_messages_dropped_total") or 0
                trades_dropped = env.metric("flowbook_gateway_trades_dropped_total") or 0
                assert dropped > 0 and trades_dropped > 0

                # the stuck client is closed once its send has been blocked for the timeout
                wait_until(
                    lambda: env.metric("flowbook_gateway_slow_clients_closed_total") == 1,
                    SLOW_TIMEOUT_S + 30,
                    what="the stuck client closed",
                )
                code, reason, frames = stuck.read_until_close(60)
                assert code == 4000, (code, reason)
                assert "slow client" in reason
                assert frames > 0
                stuck.close()
                wait_until(lambda: env.metric("flowbook_gateway_clients") == 1, 30)
                # the good client is unaffected
                assert good.ping_ok()
                sent = book.publish(
                    "bbo.binance.BTC-USDT", bbo_msg("binance", "BTC-USDT", 7.0, 8.0)
                )
                good.expect(lambda m: m["type"] == "update" and m["bid"][0] == 7.0)
            assert env.proc.alive()
        finally:
            env.close()
