"""The simulator's part of a flowbook TOML file: ``[simulator]`` and ``[venues.<name>]``."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """The configuration cannot be served."""


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


def load_config(
    path: str | Path,
    venues: list[str] | None = None,
    control_port: int | None = None,
    rate: float | None = None,
) -> SimConfig:
    """Read the file; ``venues`` (if given) selects among the enabled venues with a sim_port."""
    with open(path, "rb") as fh:
        doc = tomllib.load(fh)
    sim = doc.get("simulator", {})
    try:
        cfg = SimConfig(
            host=str(sim.get("host", "127.0.0.1")),
            control_port=int(sim.get("control_port", 9100)),
            rate=float(sim.get("rate", 50)),
            trade_ratio=float(sim.get("trade_ratio", 0.3)),
            seed=int(sim.get("seed", 7)),
            faults=[dict(f) for f in sim.get("faults", [])],
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[simulator]: {exc}") from None
    servable: dict[str, VenueSpec] = {}
    for name, section in doc.get("venues", {}).items():
        if not section.get("enabled", False) or "sim_port" not in section:
            continue
        bases = section.get("bases", [])
        if not isinstance(bases, list) or not bases or "quote" not in section:
            raise ConfigError(f"[venues.{name}] needs quote and a non-empty bases list")
        levels = section.get("sim_levels")
        if levels is not None and (not isinstance(levels, int) or not 10 <= levels <= 200_000):
            raise ConfigError(f"[venues.{name}] sim_levels must be an integer in [10, 200000]")
        servable[name] = VenueSpec(
            name, int(section["sim_port"]), str(section["quote"]), tuple(map(str, bases)), levels
        )
    if venues:
        unknown = [v for v in venues if v not in servable]
        if unknown:
            raise ConfigError(
                f"venues {unknown} are not enabled with a sim_port in {path} "
                f"(servable: {sorted(servable)})"
            )
        cfg.venues = [servable[v] for v in venues]
        cfg.explicit_venues = True
    else:
        cfg.venues = list(servable.values())
    if control_port is not None:
        cfg.control_port = control_port
    if rate is not None:
        cfg.rate = rate
    if cfg.rate < 0 or cfg.trade_ratio < 0:
        raise ConfigError("rate and trade_ratio must be >= 0")
    return cfg
