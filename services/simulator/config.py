"""The simulator's part of a flowbook TOML file: ``[simulator]`` and ``[venues.<name>]``.

The simulator serves partial files too (tests write only these tables), so it reads them itself,
with the same rules as ``common.config``: errors name the file and the key, unknown keys in
``[simulator]`` are errors, numbers are checked for type and range.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.config import (
    SIMULATOR_KEYS,
    ConfigError,
    apply_env_overrides,
    read_toml,
    reject_unknown_keys,
    take_key,
    with_overrides,
)

__all__ = ["ConfigError", "SimConfig", "VenueSpec", "load_config"]

FAULT_KEYS = frozenset({"at_s", "venue", "kind", "symbol", "duration_s", "count"})


@dataclass(frozen=True)
class VenueSpec:
    name: str  # venue name == dialect name
    port: int
    quote: str
    bases: tuple[str, ...]
    levels: int | None = None  # ``sim_levels``: levels a side of each book (default ~150)


@dataclass
class SimConfig:
    host: str = "127.0.0.1"
    control_port: int = 9100
    rate: float = 50.0
    trade_ratio: float = 0.3
    seed: int = 7
    venues: list[VenueSpec] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)  # [[simulator.faults]] schedule
    explicit_venues: bool = False  # venues were named on the command line


def _port(table: dict[str, Any], key: str, where: str, default: Any = ...) -> int:
    """A port to listen on; 0 lets the system choose (tests)."""
    port = take_key(table, key, int, where, default)
    if not 0 <= port <= 65535:
        raise ConfigError(f"{where}: {key!r} must be a port 0-65535, got {port}")
    return port


def _simulator(doc: dict[str, Any], where: str) -> SimConfig:
    sim = doc.get("simulator", {})
    if not isinstance(sim, dict):
        raise ConfigError(f"{where}: [simulator] must be a table")
    where = f"{where} [simulator]"
    reject_unknown_keys(sim, SIMULATOR_KEYS, where)
    take_key(sim, "enabled", bool, where, True)
    faults = take_key(sim, "faults", list, where, [])
    if not all(isinstance(f, dict) for f in faults):
        raise ConfigError(f"{where}: 'faults' must be tables ([[simulator.faults]])")
    for i, fault in enumerate(faults):
        at = f"{where} faults[{i}]"
        reject_unknown_keys(fault, FAULT_KEYS, at)
        if take_key(fault, "at_s", float, at, 0.0) < 0:
            raise ConfigError(f"{at}: 'at_s' must be >= 0")
    cfg = SimConfig(
        host=take_key(sim, "host", str, where, "127.0.0.1"),
        control_port=_port(sim, "control_port", where, 9100),
        rate=take_key(sim, "rate", float, where, 50.0),
        trade_ratio=take_key(sim, "trade_ratio", float, where, 0.3),
        seed=take_key(sim, "seed", int, where, 7),
        faults=[dict(f) for f in faults],
    )
    if cfg.rate < 0 or cfg.trade_ratio < 0:
        raise ConfigError(f"{where}: rate and trade_ratio must be >= 0")
    return cfg


def _servable(doc: dict[str, Any], path: Path) -> dict[str, VenueSpec]:
    """The enabled venues with a ``sim_port``."""
    venues = doc.get("venues", {})
    if not isinstance(venues, dict):
        raise ConfigError(f"{path}: [venues] must be a table")
    servable: dict[str, VenueSpec] = {}
    ports: dict[int, str] = {}
    for name, section in venues.items():
        where = f"{path} [venues.{name}]"
        if not isinstance(section, dict):
            raise ConfigError(f"{where}: must be a table")
        if not take_key(section, "enabled", bool, where, True) or "sim_port" not in section:
            continue
        bases = take_key(section, "bases", list, where)
        if not bases or not all(isinstance(b, str) and b for b in bases):
            raise ConfigError(f"{where}: 'bases' must be a non-empty list of asset codes")
        levels = take_key(section, "sim_levels", int, where, None)
        if levels is not None and not 10 <= levels <= 200_000:
            raise ConfigError(f"{where}: sim_levels must be an integer in [10, 200000]")
        port = _port(section, "sim_port", where)
        if port and port in ports:
            raise ConfigError(f"{where}: sim_port {port} is already used by {ports[port]}")
        ports[port] = f"venues.{name}"
        quote = take_key(section, "quote", str, where)
        servable[name] = VenueSpec(name, port, quote, tuple(bases), levels)
    return servable


def load_config(
    path: str | Path,
    venues: list[str] | None = None,
    control_port: int | None = None,
    rate: float | None = None,
) -> SimConfig:
    """Read the file; ``venues`` (if given) selects among the enabled venues with a sim_port."""
    path = Path(path)
    doc = read_toml(path)
    overrides = apply_env_overrides(doc, dict(os.environ))  # as every other program does
    try:
        cfg = _simulator(doc, str(path))
        servable = _servable(doc, path)
        if venues:
            unknown = [v for v in venues if v not in servable]
            if unknown:
                raise ConfigError(
                    f"venues {unknown} are not enabled with a sim_port in {path} "
                    f"(servable: {sorted(servable)})"
                )
    except ConfigError as exc:
        raise with_overrides(exc, overrides) from None
    if venues:
        cfg.venues = [servable[v] for v in venues]
        cfg.explicit_venues = True
    else:
        cfg.venues = list(servable.values())
    if control_port is not None:
        cfg.control_port = control_port
    if rate is not None:
        if rate < 0:
            raise ConfigError("--rate must be >= 0")
        cfg.rate = rate
    return cfg
