"""The gateway's limits and options, read from ``[gateway]`` (``GatewayConfig.options``).

Every key has a default; a wrong type or range, or an unknown key (a typo), is a ``ConfigError``
naming the key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from common.config import Config, ConfigError

ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_WEB_DIR = Path(__file__).resolve().parent / "web" / "dist"


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    # clients
    max_clients: int = 1000
    max_subscriptions: int = 100  # per client
    max_message_bytes: int = 4096  # inbound request size; larger -> error message_too_large
    max_frame_bytes: int = 65536  # hard cap: a larger frame is not read, the socket closes 1009
    max_messages_per_s: float = 50.0  # inbound requests per client (token bucket, burst = rate)
    cors_origins: tuple[str, ...] = ("*",)  # Access-Control-Allow-Origin for GETs on /api
    # slow clients
    slow_client_timeout_s: float = 10.0  # a send blocked this long closes the client (4000)
    send_buffer_bytes: int = 65536  # per-client socket write buffer (high-water mark)
    queue_per_topic: int = 16  # unconflated (interval 0) updates kept per topic when behind
    trades_backlog: int = 1000  # pending trades per subscription before the oldest are dropped
    max_control_queue: int = 1000  # replies/snapshots queued for a client that does not read
    close_timeout_s: float = 5.0  # closing handshake wait before the socket is dropped
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    compression: bool = False  # permessage-deflate (costs CPU and memory per client)
    trace_hops: bool = False  # bus messages stamped ts_gw_wake/ts_gw_rx on arrival
    # data
    trades_ring: int = 100  # recent trades per instrument, sent as the trades snapshot
    default_depth: int = 20
    max_depth: int = 50  # from [book] depth
    stale_after_s: float = 3.0  # from [book] stale_after_s: a venue status older is "stale"
    stats_interval_s: float = 1.0
    snapshot_wait_s: float = 2.0  # a depth topic not followed yet: its snapshot waits this long
    catalog_wait_s: float = 3.0  # at start: listen once every venue's status came, or after this
    web_dir: Path = DEFAULT_WEB_DIR
    quote_groups: tuple[tuple[str, ...], ...] = (("USD", "USDT", "USDC"),)


_POSITIVE_INT = {
    "max_clients",
    "max_subscriptions",
    "max_message_bytes",
    "max_frame_bytes",
    "send_buffer_bytes",
    "queue_per_topic",
    "trades_backlog",
    "max_control_queue",
    "trades_ring",
    "default_depth",
}
_POSITIVE_FLOAT = {
    "max_messages_per_s",
    "slow_client_timeout_s",
    "close_timeout_s",
    "ping_interval_s",
    "ping_timeout_s",
    "stats_interval_s",
    "snapshot_wait_s",
    "catalog_wait_s",
}
_BOOL = {"compression", "trace_hops"}


def from_config(cfg: Config) -> Settings:
    where = f"{cfg.path} [gateway]"
    raw: dict[str, Any] = dict(cfg.gateway.options)
    known = {f.name for f in fields(Settings)} - {"max_depth", "stale_after_s", "quote_groups"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
    values: dict[str, Any] = {"host": cfg.gateway.host, "port": cfg.gateway.port}
    for key in _POSITIVE_INT:
        if key in raw:
            value = raw[key]
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{where}: {key!r} must be a positive integer, got {value!r}")
            values[key] = value
    for key in _POSITIVE_FLOAT:
        if key in raw:
            value = raw[key]
            if (
                not isinstance(value, int | float)
                or isinstance(value, bool)
                or not 0 < value < math.inf
            ):
                raise ConfigError(f"{where}: {key!r} must be a positive number, got {value!r}")
            values[key] = float(value)
    for key in _BOOL:
        if key in raw:
            if not isinstance(raw[key], bool):
                raise ConfigError(f"{where}: {key!r} must be true or false, got {raw[key]!r}")
            values[key] = raw[key]
    if "cors_origins" in raw:
        origins = raw["cors_origins"]
        if isinstance(origins, str):
            origins = [origins]
        if not isinstance(origins, list) or not all(isinstance(o, str) and o for o in origins):
            raise ConfigError(f"{where}: 'cors_origins' must be a list of origins or [\"*\"]")
        values["cors_origins"] = tuple(origins)
    if "web_dir" in raw:
        if not isinstance(raw["web_dir"], str) or not raw["web_dir"]:
            raise ConfigError(f"{where}: 'web_dir' must be a directory path")
        path = Path(raw["web_dir"])
        values["web_dir"] = path if path.is_absolute() else ROOT / path
    if not 0 < values["port"] < 65536:
        raise ConfigError(f"{where}: 'port' must be 1..65535, got {values['port']!r}")
    values["max_depth"] = max(1, cfg.book.depth)
    values["stale_after_s"] = cfg.book.stale_after_s
    values["quote_groups"] = cfg.book.quote_groups
    settings = Settings(**values)
    if settings.default_depth > settings.max_depth:
        settings = Settings(**{**values, "default_depth": settings.max_depth})
    if settings.max_message_bytes > settings.max_frame_bytes:
        raise ConfigError(f"{where}: 'max_message_bytes' must not exceed 'max_frame_bytes'")
    return settings
