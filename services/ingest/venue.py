"""What a venue plugin is: declarative transport facts plus pure parsing.

A plugin never touches a socket, HTTP, a clock or a sleep: frames and their receive time go in,
normalized events (``common.model``) come out. The runner does all I/O and never names a venue.
Subclass ``VenuePlugin`` in ``services/ingest/venues/<name>.py`` and set ``PLUGIN = YourClass``.
"""

from __future__ import annotations

import enum
from typing import Any, Literal

from common.book import OrderBook
from common.config import ConfigError, VenueConfig
from common.model import BookUpdate, ConnectionSpec, Event, HttpRequest, Instrument

COMMON_OPTIONS = frozenset({"watchdog_s", "sync_timeout_s"})  # venue keys every plugin reads


class ParseError(ValueError):
    """A frame the plugin cannot read; the runner logs it with the venue, counts it, skips it."""


class VenueError(ParseError):
    """A well-formed frame in which the exchange reports an error (a refused subscription, a
    rate limit): the runner logs it as an error, counts it in ``venue_errors`` and shows the
    latest in the venue's stats (``last_venue_error``), apart from malformed frames."""


def ms_to_ns(ms: Any) -> int:
    """An exchange's integer milliseconds as nanoseconds; anything else is a ParseError (a
    string times 10**6 would be a 13 MB string, not an error)."""
    if type(ms) is not int:
        raise ParseError(f"timestamp {ms!r} is not integer milliseconds")
    return ms * 1_000_000


class Verdict(enum.Enum):
    APPLY = "apply"
    SKIP = "skip"  # older than the book: drop silently (Binance u <= lastUpdateId)
    GAP = "gap"  # continuity broken: resync this instrument


class FrameParser:
    """Turns frames of one connection into events. Stateless plugins use themselves; a venue
    whose sequence spans a connection (Coinbase ``sequence_num``) returns a fresh stateful
    parser per connection from ``VenuePlugin.new_parser``."""

    def parse(self, frame: str | bytes, ts_recv: int) -> list[Event]:
        raise NotImplementedError


class VenuePlugin(FrameParser):
    #: where a book's initial state comes from: a REST call stitched to the stream, or the stream
    snapshot_source: Literal["rest", "stream"] = "stream"
    #: REST snapshots: levels a side they hold at most (0: the whole book). A cut snapshot is
    #: refreshed when the price has moved to the end of what it covered (sync.py)
    snapshot_levels: int = 0
    #: keep the exchange's price/size strings in the book (for checksums over original strings)
    keep_raw_levels: bool = False
    #: app-level keepalive: text to send every ``ping_interval_s`` seconds
    ping_interval_s: float | None = None
    ping_message: str | None = None
    #: no frame of any kind for this long: the connection is dead, reconnect
    watchdog_s: float = 30.0
    #: a book still not live this long after its resync began: ask again (a refused or lost
    #: resubscribe, a snapshot that never came); then again after twice as long, up to 10 min
    sync_timeout_s: float = 30.0
    #: subscribe/unsubscribe requests the venue allows a connection per hour (OKX: 480): near
    #: it, a book is resynced by reconnecting (a fresh budget) rather than resubscribing
    subscribe_ops_per_hour: int | None = None
    #: planned reconnect before the venue closes the connection itself (Binance: 24 h)
    max_connection_age_s: float | None = None
    #: its checksum is computed with instrument metadata (Kraken prints numbers with the pair's
    #: precision): a failed checksum makes the runner read the metadata again
    checksum_uses_metadata: bool = False
    #: subscribed depth to truncate to after each update (Kraken sends no out-of-scope deletes)
    book_depth: int | None = None
    #: largest frame accepted (Coinbase full-book snapshots are several MB)
    max_frame_bytes: int = 16 * 1024 * 1024
    #: token-bucket budget of REST weight per minute
    rest_weight_per_minute: int = 1200
    #: the keys of its ``[venues.<name>]`` table the plugin reads, besides the common ones
    options: frozenset[str] = frozenset()

    def __init__(self, cfg: VenueConfig) -> None:
        self.cfg = cfg
        self.venue = cfg.name
        unknown = sorted(set(cfg.options) - self.options - COMMON_OPTIONS)
        if unknown:
            known = ", ".join(sorted(self.options)) or "none"
            raise ConfigError(
                f"[venues.{cfg.name}]: unknown key(s) {', '.join(unknown)} "
                f"(the {cfg.plugin} plugin's own keys: {known})"
            )
        self.watchdog_s = self.option("watchdog_s", float, self.watchdog_s)
        self.sync_timeout_s = self.option("sync_timeout_s", float, self.sync_timeout_s)

    def option(self, key: str, kind: type, default: Any, minimum: float | None = 0) -> Any:
        """``cfg.options[key]`` as ``kind`` (default if absent), or a ConfigError naming it."""
        if key not in self.cfg.options:
            return default
        value = self.cfg.options[key]
        ok = isinstance(value, kind) and not isinstance(value, bool)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if ok and minimum is not None and kind in (int, float) and value <= minimum:
            ok = False
        if not ok:
            bound = f" > {minimum}" if minimum is not None and kind in (int, float) else ""
            raise ConfigError(
                f"[venues.{self.venue}] {key} must be {kind.__name__}{bound}, got {value!r}"
            )
        return value

    # -- metadata ---------------------------------------------------------------------------
    def metadata_requests(self) -> list[HttpRequest]:
        raise NotImplementedError

    def parse_metadata(self, bodies: list[bytes]) -> list[Instrument]:
        """The configured instruments (``cfg.bases`` against ``cfg.quote``) from the venue's
        own metadata; never by slicing symbol strings. ``bodies`` holds every page fetched,
        in order (see ``metadata_next``)."""
        raise NotImplementedError

    def metadata_next(self, req: HttpRequest, body: bytes) -> HttpRequest | None:
        """The request for the next page of a paginated metadata answer (a cursor in
        ``body``), or None when ``req`` was the last page."""
        return None

    # -- transport --------------------------------------------------------------------------
    def connections(self, instruments: list[Instrument]) -> list[ConnectionSpec]:
        raise NotImplementedError

    def new_parser(self, conn: ConnectionSpec) -> FrameParser:
        return self

    def resubscribe(self, inst: Instrument) -> list[str] | None:
        """Messages that make the venue send a fresh snapshot of one instrument on the open
        connection; None means the runner must reconnect instead."""
        return None

    # -- snapshots (snapshot_source == "rest") ----------------------------------------------
    def snapshot_request(self, inst: Instrument) -> HttpRequest:
        raise NotImplementedError

    def parse_snapshot(self, inst: Instrument, body: bytes, ts_recv: int) -> BookUpdate:
        raise NotImplementedError

    # -- integrity --------------------------------------------------------------------------
    def check_delta(self, last_id: int | None, update: BookUpdate, first: bool) -> Verdict:
        """The venue's continuity rule for a delta, given the id the book is at. ``first`` is
        True for the first delta applied after a REST snapshot."""
        return Verdict.APPLY

    def next_id(self, last_id: int | None, update: BookUpdate) -> int | None:
        """The id the book is at after applying ``update``."""
        return update.last_id if update.last_id is not None else last_id

    def verify(self, inst: Instrument, book: OrderBook, update: BookUpdate) -> str | None:
        """Check the book after applying ``update`` (a checksum); a string says what failed."""
        return None
