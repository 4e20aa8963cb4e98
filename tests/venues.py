"""Build venue plugins and sync machines for tests, without any I/O."""

from __future__ import annotations

from common.config import VenueConfig
from common.model import Instrument
from services.ingest.runner import load_plugin
from services.ingest.sync import InstrumentSync, Publish, Resync
from services.ingest.venue import VenuePlugin


def plugin_for(
    name: str,
    plugin: str | None = None,
    *,
    quote: str = "USDT",
    bases: tuple[str, ...] = ("BTC", "ETH"),
    **options,
) -> VenuePlugin:
    cfg = VenueConfig(
        name=name,
        plugin=plugin or name,
        pub="tcp://127.0.0.1:1",
        control="tcp://127.0.0.1:2",
        ws_url="ws://127.0.0.1:1/ws",
        rest_url="http://127.0.0.1:1",
        bases=bases,
        quote=quote,
        options=options,
    )
    return load_plugin(cfg)


def sync_for(
    plugin: VenuePlugin, native: str, base: str, quote: str, kind: str = "spot", **inst_kw
) -> InstrumentSync:
    inst = Instrument(plugin.venue, native, base, quote, kind, **inst_kw)
    return InstrumentSync(inst, plugin)


class SyncLog:
    """Feeds updates into a sync machine and keeps what happened, for assertions."""

    def __init__(self, sync: InstrumentSync) -> None:
        self.sync = sync
        self.published: list[Publish] = []
        self.resyncs: list[Resync] = []

    def feed(self, upd) -> Publish | Resync | None:
        out = self.sync.on_update(upd)
        if isinstance(out, Publish):
            self.published.append(out)
        elif isinstance(out, Resync):
            self.resyncs.append(out)
        return out
