"""Configuration: ``deploy/*.toml`` read with tomllib, ``FLOWBOOK_*`` env overrides, validated.

An override names a key path with double underscores: ``FLOWBOOK_GATEWAY__PORT=8081`` sets
``[gateway] port``, ``FLOWBOOK_VENUES__BINANCE__ENABLED=false`` switches a venue off. The value
is read as a TOML value when it parses as one (numbers, booleans, arrays), else as a string.
Every problem is reported as a ``ConfigError`` naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "FLOWBOOK_"
TABLES = ("book", "gateway", "scheduling", "simulator", "venues")
BOOK_KEYS = frozenset(
    {"pub", "control", "depth", "depth_interval_ms", "stale_after_s", "quote_groups"}
    | {"keep_levels", "reference", "trace_hops"}  # read by the book builder (services/book/app.py)
)
VENUE_KEYS = frozenset(
    {"enabled", "plugin", "pub", "control", "ws_url", "rest_url", "bases", "quote"}
    | {"record_dir", "symbols_off"}
    | {"sim_port", "sim_levels"}  # read by the simulator (services/simulator/config.py)
)
SIMULATOR_KEYS = frozenset(
    {"enabled", "host", "control_port", "rate", "trade_ratio", "seed", "faults"}
)  # the rest of [simulator] is checked by the simulator (services/simulator/config.py)
# a venue names supervisord programs, log files and bus topics (``kind.venue.symbol``)
VENUE_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
RESERVED_VENUE_NAMES = frozenset({"all", "book", "gateway", "simulator", "supervisord"})
REALTIME_SERVICES = ("ingest", "book", "gateway")
MAX_REALTIME_PRIORITY = 49  # 50 and up would preempt the kernel's threaded interrupt handlers
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "deploy" / "demo.toml"


class ConfigError(ValueError):
    """A configuration file or override that cannot be used, with the reason."""


@dataclass(frozen=True)
class VenueConfig:
    name: str
    plugin: str
    pub: str
    control: str
    ws_url: str
    rest_url: str
    bases: tuple[str, ...]
    quote: str
    enabled: bool = True
    sim_port: int | None = None
    record_dir: str | None = None
    #: the plugin's own keys (checked against ``VenuePlugin.options`` when the plugin loads)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BookConfig:
    pub: str
    control: str
    depth: int = 50
    depth_interval_ms: int = 50
    stale_after_s: float = 3.0
    quote_groups: tuple[tuple[str, ...], ...] = (("USD", "USDT", "USDC"),)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GatewayConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Config:
    path: Path
    book: BookConfig
    gateway: GatewayConfig
    venues: dict[str, VenueConfig]
    simulator: dict[str, Any]
    raw: dict[str, Any]
    realtime_priority: int = 0  # [scheduling]: SCHED_FIFO priority, 0 = off
    realtime_services: tuple[str, ...] = REALTIME_SERVICES
    overrides: tuple[str, ...] = ()  # the FLOWBOOK_* variables applied over the file

    def realtime_priority_for(self, service: str) -> int:
        """The SCHED_FIFO priority ``service`` (ingest, book, gateway) should run at, 0 = none."""
        return self.realtime_priority if service in self.realtime_services else 0

    def enabled_venues(self) -> list[VenueConfig]:
        return [v for v in self.venues.values() if v.enabled]

    def venue(self, name: str) -> VenueConfig:
        try:
            return self.venues[name]
        except KeyError:
            known = ", ".join(sorted(self.venues)) or "none"
            raise ConfigError(f"{self.path}: no venue {name!r} (configured: {known})") from None


def _parse_env_value(text: str) -> Any:
    try:
        return tomllib.loads(f"x = {text}")["x"]
    except tomllib.TOMLDecodeError:
        return text


def apply_env_overrides(data: dict[str, Any], environ: dict[str, str]) -> list[str]:
    """Apply the ``FLOWBOOK_A__B`` variables of ``environ``; returns their names."""
    applied = []
    for name, text in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{name}: {part!r} is not a table")
        node[path[-1]] = _parse_env_value(text)
        applied.append(name)
    return applied


def take_key(
    table: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any = ...
) -> Any:
    if key not in table:
        if default is ...:
            raise ConfigError(f"{where}: missing required key {key!r}")
        return default
    value = table[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float)):
        want = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ConfigError(f"{where}: {key!r} must be {want}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: {key!r} must be a finite number, got {value!r}")
    return value


LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "0.0.0.0", "::1", "[::1]"})


def _endpoint(table: dict[str, Any], key: str, where: str) -> str:
    """A ZeroMQ endpoint that a service binds and others connect to, so a tcp:// one needs a
    host to connect to (not ``*``) and a port."""
    value = take_key(table, key, str, where)
    example = "like tcp://127.0.0.1:5551"
    if not value.startswith(("tcp://", "ipc://", "inproc://")):
        raise ConfigError(f"{where}: {key!r} must be a ZeroMQ endpoint {example}, got {value!r}")
    if value.startswith("tcp://"):
        host, port = _tcp_host_port(value)
        if not host or host == "*" or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ConfigError(
                f"{where}: {key!r} must name a host to connect to and a port 1-65535, "
                f"{example}, got {value!r}"
            )
    return value


def _tcp_host_port(endpoint: str) -> tuple[str, str]:
    """``tcp://host:port`` -> (host, port text); IPv6 hosts keep their brackets."""
    host, _, port = endpoint[len("tcp://") :].rpartition(":")
    return host, port


def _port_key(host: str, port: int) -> tuple[str, int]:
    """Ports on this machine clash whatever name the host has."""
    return ("local" if host in LOCAL_HOSTS else host, port)


def _check_ports(path: Path, taken: list[tuple[str, str | tuple[str, int]]]) -> None:
    """Every endpoint or port (``(what, value)``) used once only."""
    seen: dict[object, str] = {}
    for what, value in taken:
        if isinstance(value, str) and value.startswith("tcp://"):
            host, port = _tcp_host_port(value)
            key: object = _port_key(host, int(port))
        elif isinstance(value, tuple):
            key = _port_key(*value)
        else:
            key = value
        if key in seen:
            raise ConfigError(f"{path}: {what} ({value}) is already used by {seen[key]}")
        seen[key] = what


def _venue(name: str, table: dict[str, Any], path: Path) -> VenueConfig:
    where = f"{path} [venues.{name}]"
    if not VENUE_NAME_RE.fullmatch(name) or name in RESERVED_VENUE_NAMES:
        raise ConfigError(
            f"{where}: a venue name is 1-32 lower-case letters, digits, '-' or '_', starting with"
            f" a letter or digit (it names bus topics, programs and logs), and not one of"
            f" {', '.join(sorted(RESERVED_VENUE_NAMES))}"
        )
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table")
    bases = take_key(table, "bases", list, where)
    if not bases or not all(isinstance(b, str) and b for b in bases):
        raise ConfigError(f"{where}: 'bases' must be a non-empty list of asset codes")
    quote = take_key(table, "quote", str, where).upper()
    bases = [b.upper() for b in bases]
    off = take_key(table, "symbols_off", list, where, [])
    if not all(isinstance(o, str) for o in off):
        raise ConfigError(f"{where}: 'symbols_off' must be a list of strings")
    off_bases = set()
    for entry in off:
        base, _, rest = entry.upper().partition("-")  # "DOGE" or "DOGE-USD"
        if base not in bases:
            raise ConfigError(
                f"{where}: symbols_off names {entry!r}, which is not among bases {bases}"
            )
        if rest and rest.split("-")[0] != quote:
            raise ConfigError(
                f"{where}: symbols_off names {entry!r}, but this venue's quote is {quote}"
            )
        off_bases.add(base)
    if off_bases >= set(bases):
        raise ConfigError(f"{where}: symbols_off leaves no base (bases {bases})")
    return VenueConfig(
        name=name,
        plugin=take_key(table, "plugin", str, where, name),
        pub=_endpoint(table, "pub", where),
        control=_endpoint(table, "control", where),
        ws_url=_url(table, "ws_url", ("ws://", "wss://"), where),
        rest_url=_url(table, "rest_url", ("http://", "https://"), where, ""),
        bases=tuple(b for b in bases if b not in off_bases),
        quote=quote,
        enabled=take_key(table, "enabled", bool, where, True),
        sim_port=take_key(table, "sim_port", int, where, None),
        record_dir=take_key(table, "record_dir", str, where, None),
        options={k: v for k, v in table.items() if k not in VENUE_KEYS},
    )


def _url(
    table: dict[str, Any], key: str, schemes: tuple[str, ...], where: str, default: Any = ...
) -> str:
    value = take_key(table, key, str, where, default)
    if value and (not value.startswith(schemes) or not value.partition("://")[2]):
        raise ConfigError(f"{where}: {key!r} must be a {' or '.join(schemes)} URL, got {value!r}")
    return value


def _quote_groups(value: list[Any], where: str) -> tuple[tuple[str, ...], ...]:
    if not all(isinstance(g, list) and g and all(isinstance(q, str) for q in g) for g in value):
        raise ConfigError(
            f"{where}: 'quote_groups' must be a list of lists of quote codes, "
            f'like [["USD", "USDT", "USDC"]], got {value!r}'
        )
    return tuple(tuple(q.upper() for q in g) for g in value)


def reject_unknown_keys(
    table: dict[str, Any], known: frozenset[str] | tuple[str, ...], where: str
) -> None:
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )


def load(
    path: str | os.PathLike[str] | None = None, environ: dict[str, str] | None = None
) -> Config:
    """Load and validate a config file (default: ``$FLOWBOOK_CONFIG`` or deploy/demo.toml)."""
    environ = dict(os.environ if environ is None else environ)
    path = Path(path or environ.get("FLOWBOOK_CONFIG") or DEFAULT_CONFIG)
    data = read_toml(path)
    overrides = apply_env_overrides(data, environ)
    try:
        return dataclasses.replace(_validate(path, data), overrides=tuple(overrides))
    except ConfigError as exc:
        raise with_overrides(exc, overrides) from None


_OVERRIDES_NAMED = " (with the environment's "


def with_overrides(exc: ConfigError, overrides: list[str] | tuple[str, ...]) -> ConfigError:
    """``exc`` naming the environment overrides in force: the file alone may not show the
    value it complains about. One that names them already is returned as is."""
    if not overrides or _OVERRIDES_NAMED in str(exc):
        return exc
    return ConfigError(f"{exc}{_OVERRIDES_NAMED}{', '.join(overrides)})")


def read_toml(path: Path) -> dict[str, Any]:
    """The TOML document at ``path``; a ConfigError for a file that cannot be read as one."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}): {exc.reason}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _validate(path: Path, data: dict[str, Any]) -> Config:
    reject_unknown_keys(data, TABLES, f"{path}: top level")
    for name in TABLES:
        if not isinstance(data.get(name, {}), dict):
            raise ConfigError(f"{path}: [{name}] must be a table")
    book_t = data.get("book", {})
    where = f"{path} [book]"
    reject_unknown_keys(book_t, BOOK_KEYS, where)
    groups = take_key(book_t, "quote_groups", list, where, [["USD", "USDT", "USDC"]])
    book = BookConfig(
        pub=_endpoint(book_t, "pub", where),
        control=_endpoint(book_t, "control", where),
        depth=take_key(book_t, "depth", int, where, 50),
        depth_interval_ms=take_key(book_t, "depth_interval_ms", int, where, 50),
        stale_after_s=take_key(book_t, "stale_after_s", float, where, 3.0),
        quote_groups=_quote_groups(groups, where),
        options=book_t,
    )
    if book.depth < 1 or book.depth_interval_ms < 0:
        raise ConfigError(f"{where}: depth must be >= 1 and depth_interval_ms >= 0")
    if book.stale_after_s <= 0:
        raise ConfigError(f"{where}: stale_after_s must be > 0, got {book.stale_after_s}")
    gw_t = data.get("gateway", {})
    gateway = GatewayConfig(
        host=take_key(gw_t, "host", str, f"{path} [gateway]", "127.0.0.1"),
        port=take_key(gw_t, "port", int, f"{path} [gateway]", 8080),
        options=gw_t,
    )
    venues_t = data.get("venues", {})
    venues = {name: _venue(name, t, path) for name, t in venues_t.items()}
    taken: list[tuple[str, Any]] = [("book.pub", book.pub), ("book.control", book.control)]
    taken.append(("gateway.port", (gateway.host, gateway.port)))
    for v in venues.values():
        if v.enabled:
            taken += [(f"venues.{v.name}.pub", v.pub), (f"venues.{v.name}.control", v.control)]
    sim = data.get("simulator", {})
    # the simulator checks the rest when it is enabled; a typo is an error even when it is not
    reject_unknown_keys(sim, SIMULATOR_KEYS, f"{path} [simulator]")
    if take_key(sim, "enabled", bool, f"{path} [simulator]", False):  # no table, no simulator
        sim_host = sim.get("host", "127.0.0.1")
        control_port = sim.get("control_port", 9100)
        if type(control_port) is int and control_port > 0 and isinstance(sim_host, str):
            taken.append(("simulator.control_port", (sim_host, control_port)))
        for v in venues.values():
            if v.enabled and v.sim_port and isinstance(sim_host, str):
                taken.append((f"venues.{v.name}.sim_port", (sim_host, v.sim_port)))
    _check_ports(path, taken)
    prio, services = _realtime(data, path)
    return Config(path, book, gateway, venues, data.get("simulator", {}), data, prio, services)


def _realtime(data: dict[str, Any], path: Path) -> tuple[int, tuple[str, ...]]:
    table = data.get("scheduling", {})
    where = f"{path} [scheduling]"
    reject_unknown_keys(table, ("realtime_priority", "realtime_services"), where)
    prio = take_key(table, "realtime_priority", int, where, 0)
    if not 0 <= prio <= MAX_REALTIME_PRIORITY:
        raise ConfigError(
            f"{where}: realtime_priority must be 0 (off) or 1-{MAX_REALTIME_PRIORITY}, got {prio}"
        )
    services = take_key(table, "realtime_services", list, where, list(REALTIME_SERVICES))
    bad = [s for s in services if s not in REALTIME_SERVICES]
    if bad:
        raise ConfigError(
            f"{where}: realtime_services may name {', '.join(REALTIME_SERVICES)}, not {bad}"
        )
    return prio, tuple(services)
