"""``services.supervise`` checks everything each program will check at its start, before it
writes the supervisord programs: one clear error, not a program restarted 100 times."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from services import supervise
from tests.procs import venue_section, write_config


def config(tmp_path: Path, venues: str, **kw: str) -> Path:
    return write_config(tmp_path, venues, **kw)


def binance(extra: str = "") -> str:
    return venue_section("binance", sim_port=19101, bases=["BTC"], extra=extra)


def write(tmp_path: Path, path: Path) -> int:
    return supervise.main(["write", "--config", str(path), "--run-dir", str(tmp_path / "run")])


def test_a_good_config_is_written(tmp_path, capsys):
    assert write(tmp_path, config(tmp_path, binance())) == 0
    assert "[program:binance]" in (tmp_path / "run" / "programs.conf").read_text()


@pytest.mark.parametrize(
    ("venues", "options", "error"),
    [
        ("", {}, "no venue is enabled"),
        (binance().replace("enabled = true", "enabled = false"), {}, "no venue is enabled"),
        (binance('plugin = "okex"'), {}, r"\[venues.binance\]: no venue plugin 'okex' \(plugins: "),
        (binance("depth = 7"), {}, "depth"),
        (binance(), {"extra": "max_clent = 5"}, r"\[gateway\]: unknown key\(s\) max_clent"),
        (binance(), {"book_extra": "keep_levels = 10"}, "keep_levels must be"),
        (
            binance(),
            {"book_extra": "trace_hops = 1"},
            r"\[book\]: 'trace_hops' must be true or false",
        ),
    ],
)
def test_a_mistake_any_program_would_find_is_found_before_starting(
    tmp_path, capsys, venues, options, error
):
    assert write(tmp_path, config(tmp_path, venues, **options)) == 2
    err = capsys.readouterr().err
    assert err.startswith("flowbook: ") and len(err.splitlines()) == 1
    assert re.search(error, err), err
    assert not (tmp_path / "run" / "programs.conf").exists()


def test_a_bad_simulator_table_is_found_before_starting(tmp_path, capsys):
    path = config(tmp_path, binance())
    path.write_text(path.read_text().replace("seed = 11", "seed = 7.9"))
    assert write(tmp_path, path) == 2
    assert "[simulator]: 'seed' must be int" in capsys.readouterr().err


def test_another_run_dir_gets_a_supervisord_conf_that_points_there(tmp_path):
    """supervisord.conf includes run/programs.conf: with --run-dir X, supervisord must read
    X/programs.conf (and put its socket and logs in X), not a stale or missing run/ one."""
    assert supervise.supervisord_conf(supervise.ROOT / "run") == supervise.DEPLOY / (
        "supervisord.conf"
    )
    conf = supervise.supervisord_conf(tmp_path)
    text = conf.read_text()
    assert conf.parent == tmp_path and "%(here)s/../run" not in text
    assert f"files = {tmp_path.resolve()}/programs.conf" in text
    assert f"file={tmp_path.resolve()}/supervisor.sock" in text


@pytest.mark.parametrize(
    ("edit", "error"),
    [
        # a typo in [simulator] is found even though it leaves the simulator off
        (("enabled = true", "enabeld = true"), r"\[simulator\]: unknown key\(s\) enabeld"),
        # a fault schedule the simulator would refuse at every start
        (
            (
                "seed = 11",
                'seed = 11\n[[simulator.faults]]\nat_s = 5\nvenue = "binance"\nkind = "nope"',
            ),
            r"\[simulator\] faults\[0\]: unknown fault kind 'nope'",
        ),
        (
            (
                "seed = 11",
                'seed = 11\n[[simulator.faults]]\nat = 5\nvenue = "binance"\nkind = "gap"',
            ),
            r"\[simulator\] faults\[0\]: unknown key\(s\) at",
        ),
        (
            (
                "seed = 11",
                'seed = 11\n[[simulator.faults]]\nvenue = "binance"\nkind = "gap"\nsymbol = ["BTCUSDT"]',
            ),
            r"\[simulator\] faults\[0\]: 'symbol' must be a string",
        ),
        # a sim_port asks for a simulated venue: the simulator must have its dialect
        (
            ("[venues.binance]", '[venues.mybin]\nplugin = "binance"'),
            r"\[venues.mybin\]: has a sim_port, but",
        ),
        # every plugin reads its instruments over REST
        (
            ('rest_url = "http://127.0.0.1:19101"\n', ""),
            r"\[venues.binance\]: missing required key 'rest_url'",
        ),
        # a venue name becomes topics, programs and log files
        (
            ("[venues.binance]", "[venues.Binance]"),
            r"\[venues.Binance\]: a venue name is 1-32 lower-case",
        ),
        (
            ("[venues.binance]", "[venues.gateway]"),
            r"not one of all, book, gateway, simulator, supervisord",
        ),
    ],
)
def test_config_mistakes_found_before_any_program_starts(tmp_path, capsys, edit, error):
    path = config(tmp_path, binance())
    text = path.read_text()
    assert edit[0] in text, edit
    path.write_text(text.replace(edit[0], edit[1], 1))
    assert write(tmp_path, path) == 2
    err = capsys.readouterr().err
    assert re.search(error, err), err


def test_an_error_caused_by_an_environment_override_names_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FLOWBOOK_GATEWAY__MAX_CLIENTS", "0")
    assert write(tmp_path, config(tmp_path, binance())) == 2
    err = capsys.readouterr().err
    assert "'max_clients' must be a positive integer" in err
    assert "(with the environment's FLOWBOOK_GATEWAY__MAX_CLIENTS)" in err


def test_a_reference_book_the_venue_does_not_carry_is_an_error(tmp_path, capsys):
    kraken = venue_section("kraken", sim_port=19104, quote="USD", bases=["BTC"])
    path = config(tmp_path, binance() + kraken, book_extra='reference = {USDT = "kraken:USDT-USD"}')
    assert write(tmp_path, path) == 2
    err = capsys.readouterr().err
    assert "kraken does not carry USDT-USD" in err and "add 'USDT' to [venues.kraken] bases" in err
    kraken = venue_section("kraken", sim_port=19104, quote="USD", bases=["BTC", "USDT"])
    path = config(tmp_path, binance() + kraken, book_extra='reference = {USDT = "kraken:USDT-USD"}')
    # the simulator has no USDT-USD market: make demo says so, naming the venue
    assert write(tmp_path, path) == 2
    err = capsys.readouterr().err
    assert "[venues.kraken]: the simulator cannot serve it" in err and "'USDT'" in err
    path.write_text(path.read_text().replace("enabled = true", "enabled = false", 1))  # live
    assert write(tmp_path, path) == 0


def test_a_fault_on_a_symbol_spelled_the_flowbook_way_says_how_the_venue_spells_it(
    tmp_path, capsys
):
    path = config(tmp_path, binance())
    fault = '\n[[simulator.faults]]\nat_s = 5\nvenue = "binance"\nkind = "gap"\nsymbol = "BTC-USDT"'
    path.write_text(path.read_text().replace("seed = 11", "seed = 11" + fault, 1))
    assert write(tmp_path, path) == 2
    err = capsys.readouterr().err
    assert "[simulator] faults[0]: unknown symbol 'BTC-USDT' for venue 'binance'" in err
    assert "(as the venue writes them: BTCUSDT)" in err


def test_the_simulator_reads_environment_overrides_like_every_program(tmp_path, monkeypatch):
    from services.simulator.config import load_config

    path = config(tmp_path, binance())
    monkeypatch.setenv("FLOWBOOK_SIMULATOR__RATE", "500")
    monkeypatch.setenv("FLOWBOOK_VENUES__BINANCE__SIM_PORT", "19555")
    cfg = load_config(path)
    assert cfg.rate == 500.0 and [v.port for v in cfg.venues] == [19555]
    monkeypatch.setenv("FLOWBOOK_SIMULATOR__RATE", "fast")
    with pytest.raises(supervise.ConfigError, match="FLOWBOOK_SIMULATOR__RATE"):
        load_config(path)
