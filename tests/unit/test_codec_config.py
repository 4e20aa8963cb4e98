"""Bus payload codec round-trips, and configuration errors that name the problem."""

from __future__ import annotations

import pytest

from common.codec import SCHEMA_VERSION, DecodeError, decode, encode, topic
from common.config import ConfigError, load


@pytest.mark.parametrize("price", [61837.63, 0.00001305, 29430.2, 1e-8, 65114.2, 0.1 + 0.2])
def test_prices_round_trip_exactly(price):
    msg = {"v": SCHEMA_VERSION, "bids": [[price, 0.00583]], "ts_recv": 1723161255342000000}
    back = decode(encode(msg))
    assert back == msg and back["bids"][0][0] == price


def test_decode_rejects_bad_frames_with_reasons():
    with pytest.raises(DecodeError, match="not JSON"):
        decode(b"{nope")
    with pytest.raises(DecodeError, match="not an object"):
        decode(b"[1]")
    with pytest.raises(DecodeError, match="schema version 99"):
        decode(b'{"v":99}')


def test_topic_names_put_kind_first():
    assert topic("book", "binance", "BTC-USDT") == "book.binance.BTC-USDT"
    assert topic("hb", "ingest-binance") == "hb.ingest-binance"


def test_demo_config_loads_and_env_overrides_apply():
    cfg = load(
        environ={"FLOWBOOK_GATEWAY__PORT": "8099", "FLOWBOOK_VENUES__BINANCE__ENABLED": "false"}
    )
    assert cfg.gateway.port == 8099
    assert not cfg.venues["binance"].enabled
    assert cfg.venues["binance"].bases[0] == "BTC"


def test_config_errors_name_the_file_and_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[book]\npub = "tcp://127.0.0.1:1"\ncontrol = "tcp://127.0.0.1:2"\n'
        '[venues.x]\npub = "127.0.0.1:5"\n'
    )
    with pytest.raises(ConfigError, match=r"\[venues.x\].*bases"):
        load(bad, environ={})
    bad.write_text("[book\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(bad, environ={})
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "missing.toml", environ={})
    bad.write_text(
        '[book]\npub = "tcp://127.0.0.1:1"\ncontrol = "tcp://127.0.0.1:2"\n'
        '[venues.x]\nbases = ["BTC"]\nquote = "USDT"\nws_url = "ws://x"\n'
        'pub = "tcp://127.0.0.1:1"\ncontrol = "tcp://127.0.0.1:3"\n'
    )
    with pytest.raises(ConfigError, match=r"already used by book\.pub"):
        load(bad, environ={})


BOOK = '[book]\npub = "tcp://127.0.0.1:1"\ncontrol = "tcp://127.0.0.1:2"\n'
VENUE = (
    '[venues.kraken]\nbases = ["BTC", "DOGE"]\nquote = "USD"\nws_url = "ws://x"\n'
    'pub = "tcp://127.0.0.1:3"\ncontrol = "tcp://127.0.0.1:4"\n'
)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (BOOK + "stale_after = 10\n" + VENUE, r"\[book\]: unknown key\(s\) stale_after"),
        (BOOK + "[gatway]\nport = 1\n" + VENUE, r"top level: unknown key\(s\) gatway"),
        (BOOK + 'quote_groups = ["USD", "USDT"]\n' + VENUE, "list of lists of quote codes"),
        (BOOK + "quote_groups = [[1]]\n" + VENUE, "list of lists of quote codes"),
        (BOOK + "stale_after_s = -1\n" + VENUE, "stale_after_s must be > 0"),
        (BOOK + VENUE + 'symbols_off = ["ETH"]\n', "symbols_off names 'ETH'"),
        ("gateway = 3\n" + BOOK + VENUE, r"\[gateway\] must be a table"),
        (BOOK + "stale_after_s = nan\n" + VENUE, "must be a finite number"),
        (BOOK.replace(':2"', '"') + VENUE, "'control' must name a host to connect to and a port"),
        (BOOK.replace("127.0.0.1:1", "*:1") + VENUE, "'pub' must name a host to connect to"),
        (BOOK.replace(":2", ":1") + VENUE, r"book\.control \(tcp://127.0.0.1:1\) .* book\.pub"),
        (BOOK + VENUE.replace("127.0.0.1:4", "localhost:3"), "already used by venues.kraken.pub"),
        ("[gateway]\nport = 3\n" + BOOK + VENUE, r"venues\.kraken\.pub .* gateway\.port"),
        (BOOK + VENUE.replace('"ws://x"', '"htp:/oops"'), "'ws_url' must be a ws:// or wss://"),
        (BOOK + VENUE + 'symbols_off = ["BTC-EUR"]\n', "this venue's quote is USD"),
        (BOOK + VENUE + 'symbols_off = ["BTC", "DOGE"]\n', "symbols_off leaves no base"),
    ],
)
def test_config_mistakes_are_errors_not_silent_defaults(tmp_path, text, error):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=error):
        load(path, environ={})


def test_a_file_that_is_not_utf8_text_or_not_a_file_is_a_config_error(tmp_path):
    path = tmp_path / "c.toml"
    path.write_bytes((BOOK + "# caf\xe9\n" + VENUE).encode("latin-1"))
    with pytest.raises(ConfigError, match=r"c\.toml: not UTF-8 text"):
        load(path, environ={})
    with pytest.raises(ConfigError, match="cannot be read"):
        load(tmp_path, environ={})


def test_ports_of_a_simulator_that_does_not_run_are_free(tmp_path):
    """No [simulator] table (a live config), or enabled = false: its default control port
    9100 and the venues' sim_ports are not taken."""
    path = tmp_path / "c.toml"
    path.write_text("[gateway]\nport = 9100\n" + BOOK + VENUE + "sim_port = 3\n")
    assert load(path, environ={}).gateway.port == 9100  # sim_port 3 is venue pub's 3 too
    path.write_text("[simulator]\nenabled = true\n[gateway]\nport = 9100\n" + BOOK + VENUE)
    with pytest.raises(ConfigError, match=r"simulator\.control_port .* gateway\.port"):
        load(path, environ={})


def test_an_error_from_an_environment_override_names_the_variable(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(BOOK + VENUE)
    with pytest.raises(ConfigError, match="with the environment's FLOWBOOK_BOOK__DEPTH"):
        load(path, environ={"FLOWBOOK_BOOK__DEPTH": "deep"})


def test_symbols_off_takes_bases_or_symbols_in_any_case(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(BOOK + VENUE + 'symbols_off = ["doge-usd"]\n')
    assert load(path, environ={}).venues["kraken"].bases == ("BTC",)
    path.write_text(BOOK + VENUE + 'symbols_off = ["doge"]\n')
    assert load(path, environ={}).venues["kraken"].bases == ("BTC",)


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ("enable = false\n", r"unknown key\(s\) enable \(the kraken plugin's own keys: depth\)"),
        ("depth = 30\n", r"depth must be one of"),
        ('depth = "x"\n', r"depth must be int"),
        ("watchdog_s = 0\n", r"watchdog_s must be float > 0"),
        ("sync_timeout_s = true\n", r"sync_timeout_s must be float > 0"),
    ],
)
def test_plugin_keys_are_checked_when_the_plugin_loads(tmp_path, extra, error):
    from services.ingest.runner import load_plugin

    path = tmp_path / "c.toml"
    path.write_text(BOOK + VENUE + extra)
    cfg = load(path, environ={})
    with pytest.raises(ConfigError, match=error):
        load_plugin(cfg.venues["kraken"])


def test_keep_levels_needs_a_margin_past_the_published_depth(tmp_path):
    """keep_levels == depth would resnapshot a trimmed book at every delete among its top."""
    from services.book.app import settings_from

    path = tmp_path / "c.toml"
    path.write_text(BOOK + "depth = 50\nkeep_levels = 50\n" + VENUE)
    with pytest.raises(ConfigError, match=r"keep_levels must be an integer >= 2 x depth \(100\)"):
        settings_from(load(path, environ={}))
    path.write_text(BOOK + "depth = 50\nkeep_levels = 100\n" + VENUE)
    assert settings_from(load(path, environ={})).keep == 100
