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
