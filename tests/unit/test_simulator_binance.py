"""Binance Spot frames of the simulator parse into the documented fields (exchanges.md s.1)."""

from __future__ import annotations

import random
from types import SimpleNamespace

import orjson
import pytest

from services.simulator.assets import make_instrument
from services.simulator.book import BookUpdate, TradeEvent
from services.simulator.config import ConfigError, load_config
from services.simulator.dialects import get_dialect
from services.simulator.dialects.binance import BinanceDialect
from services.simulator.dialects.binance_wire import (
    render_depth,
    render_trades,
    symbol_info,
    wrap,
)
from services.simulator.faults import FaultError, FaultState, Stalls, parse_fault

BTC = make_instrument("binance", "BTCUSDT", "BTC", "USDT")


def update() -> BookUpdate:
    trades = [
        TradeEvent(3735683259, 6_183_763, 2000, True, 1723161255342),
        TradeEvent(3735683260, 6_183_764, 154_698, False, 1723161255342),
    ]
    return BookUpdate(
        BTC,
        50093239208,
        50093239211,
        [(6_183_763, 378_826), (6_182_099, 0)],
        [(6_183_764, 160_520), (6_183_804, 0)],
        trades,
        1723161255408,
    )


def test_depth_update_payload_is_binance_shaped():
    data = orjson.loads(render_depth(update()))
    assert list(data) == ["e", "E", "s", "U", "u", "b", "a"]
    assert data == {
        "e": "depthUpdate",
        "E": 1723161255408,
        "s": "BTCUSDT",
        "U": 50093239208,
        "u": 50093239211,
        "b": [["61837.63000000", "3.78826000"], ["61820.99000000", "0.00000000"]],
        "a": [["61837.64000000", "1.60520000"], ["61838.04000000", "0.00000000"]],
    }
    assert data["u"] == data["U"] + len(data["b"]) + len(data["a"]) - 1


def test_trade_payload_m_is_buyer_is_maker():
    sell, buy = (orjson.loads(t) for t in render_trades(update()))
    assert sell == {
        "e": "trade",
        "E": 1723161255342,
        "s": "BTCUSDT",
        "t": 3735683259,
        "p": "61837.63000000",
        "q": "0.02000000",
        "T": 1723161255342,
        "m": True,  # taker sold: the buyer was the maker
        "M": True,
    }
    assert buy["m"] is False and buy["q"] == "1.54698000" and buy["t"] == 3735683260


def test_combined_wrapper():
    frame = orjson.loads(wrap("btcusdt@depth@100ms", render_depth(update())))
    assert frame["stream"] == "btcusdt@depth@100ms" and frame["data"]["e"] == "depthUpdate"


def test_exchange_info_filters():
    info = symbol_info(make_instrument("binance", "DOGEUSDT", "DOGE", "USDT"))
    assert (info["symbol"], info["baseAsset"], info["quoteAsset"]) == ("DOGEUSDT", "DOGE", "USDT")
    filters = {f["filterType"]: f for f in info["filters"]}
    assert filters["PRICE_FILTER"]["tickSize"] == "0.00001000"
    assert filters["LOT_SIZE"]["stepSize"] == "1.00000000"
    btc = {f["filterType"]: f for f in symbol_info(BTC)["filters"]}
    assert (btc["PRICE_FILTER"]["tickSize"], btc["LOT_SIZE"]["stepSize"]) == (
        "0.01000000",
        "0.00001000",
    )


def fake_client():
    return SimpleNamespace(subs=set(), state={"combined": True}, peer="test")


def dialect() -> BinanceDialect:
    venue = SimpleNamespace(name="binance", instruments={"BTCUSDT": BTC}, clients=set())
    return get_dialect("binance")(venue)  # type: ignore[arg-type]


def test_live_subscribe_and_list():
    d, client = dialect(), fake_client()
    req = {"method": "SUBSCRIBE", "params": ["btcusdt@depth@100ms", "btcusdt@trade"], "id": 1}
    assert d._control(client, orjson.dumps(req)) == {"result": None, "id": 1}
    assert client.subs == {"btcusdt@depth@100ms", "btcusdt@trade"}
    listing = d._control(client, b'{"method":"LIST_SUBSCRIPTIONS","id":3}')
    assert listing == {"result": ["btcusdt@depth@100ms", "btcusdt@trade"], "id": 3}
    unsub = {"method": "UNSUBSCRIBE", "params": ["btcusdt@trade"], "id": 2}
    assert d._control(client, orjson.dumps(unsub)) == {"result": None, "id": 2}
    assert client.subs == {"btcusdt@depth@100ms"}


def test_bad_control_messages_get_error_codes():
    d, client = dialect(), fake_client()
    assert d._control(client, b"{not json")["code"] == 3
    bad = d._control(client, b'{"method":"SUBSCRIBE","params":["BTCUSDT@depth"],"id":7}')
    assert bad["code"] == 2 and bad["id"] == 7 and not client.subs
    prop = d._control(client, b'{"method":"SET_PROPERTY","params":["combined",false],"id":4}')
    assert prop == {"result": None, "id": 4} and client.state["combined"] is False


def test_fault_requests_are_validated():
    symbols = {"binance": ["BTCUSDT", "ETHUSDT"]}
    req = parse_fault({"venue": "binance", "kind": "gap", "symbol": "ETHUSDT"}, symbols)
    assert (req.kind, req.symbol, req.count) == ("gap", "ETHUSDT", 1)
    for bad in (
        {"venue": "kraken", "kind": "gap"},
        {"venue": "binance", "kind": "explode"},
        {"venue": "binance", "kind": "gap", "symbol": "XRPUSDT"},
        {"venue": "binance", "kind": "stall", "duration_s": -1},
        ["not", "an", "object"],
    ):
        with pytest.raises(FaultError):
            parse_fault(bad, symbols)


def test_fault_state_counts_down():
    state, rng = FaultState(), random.Random(1)
    parse = lambda obj: parse_fault(obj, {"binance": ["BTCUSDT", "ETHUSDT"]})  # noqa: E731
    state.arm(parse({"venue": "binance", "kind": "rest429", "count": 2}), ["BTCUSDT"], rng)
    assert state.take_rest("ETHUSDT").kind == "rest429"
    assert state.take_rest("BTCUSDT").kind == "rest429"
    assert state.take_rest("BTCUSDT") is None
    target = state.arm(parse({"venue": "binance", "kind": "gap"}), ["ETHUSDT"], rng)
    assert target == "ETHUSDT" and state.take_gap("ETHUSDT") and not state.take_gap("ETHUSDT")
    state.arm(parse({"venue": "binance", "kind": "stall", "duration_s": 2}), [], rng)
    stalls = Stalls()
    stalls.add("BTCUSDT", 12.0)
    assert stalls.active("BTCUSDT", 11.0) and not stalls.active("ETHUSDT", 11.0)
    assert not stalls.active("BTCUSDT", 12.5) and not stalls.until
    stalls.add(None, 20.0)
    assert stalls.active("ETHUSDT", 19.0) and stalls.active(None, 19.0)
    state.arm(parse({"venue": "binance", "kind": "checksum", "count": 1}), [], rng)
    assert state.take("checksum", "BTCUSDT") and not state.take("checksum", "BTCUSDT")
    assert state.counts == {"rest429": 1, "gap": 1, "stall": 1, "checksum": 1}


def test_registry_and_config(tmp_path):
    with pytest.raises(LookupError):
        get_dialect("no-such-venue")
    path = tmp_path / "sim.toml"
    path.write_text(
        """
[simulator]
control_port = 0
rate = 10
[[simulator.faults]]
at_s = 30
venue = "binance"
kind = "gap"
[venues.binance]
enabled = true
sim_port = 0
quote = "USDT"
bases = ["BTC", "ETH"]
[venues.kraken]
enabled = false
sim_port = 0
quote = "USD"
bases = ["BTC"]
"""
    )
    cfg = load_config(path, rate=99)
    assert [v.name for v in cfg.venues] == ["binance"] and cfg.rate == 99
    assert cfg.venues[0].bases == ("BTC", "ETH") and cfg.faults[0]["at_s"] == 30
    with pytest.raises(ConfigError):
        load_config(path, venues=["kraken"])


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("[simulator]\nrat = 10\n", r"sim.toml \[simulator\]: unknown key\(s\) rat"),
        ("[simulator]\ncontrol_port = 'x'\n", r"\[simulator\]: 'control_port' must be int"),
        ("[simulator]\ncontrol_port = -5\n", "'control_port' must be a port 0-65535"),
        ("[simulator]\ntrade_ratio = true\n", "'trade_ratio' must be float"),
        ("[simulator]\nseed = 7.9\n", "'seed' must be int"),
        ("[simulator]\nenabled = 'no'\n", "'enabled' must be bool"),
        ("simulator = 5\n", r"\[simulator\] must be a table"),
        ("[venues]\nbinance = 5\n", r"\[venues.binance\]: must be a table"),
        (
            "[venues.binance]\nsim_port = 9101\nquote = 'USDT'\nbases = ['BTC']\n"
            "[venues.okx]\nsim_port = 9101\nquote = 'USDT'\nbases = ['BTC']\n",
            r"\[venues.okx\]: sim_port 9101 is already used by venues.binance",
        ),
        ("[venues.binance]\nsim_port = 99999\nquote = 'USDT'\nbases = ['BTC']\n", "0-65535"),
    ],
)
def test_simulator_config_mistakes_name_the_file_and_key(tmp_path, text, error):
    path = tmp_path / "sim.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=error):
        load_config(path)
