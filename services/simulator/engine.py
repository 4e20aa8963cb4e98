"""The simulator process: market, venue servers, the pacing loop, control API and fault schedule."""

from __future__ import annotations

import asyncio
import logging

from .config import SimConfig
from .control import make_handler
from .dialects import get_dialect
from .faults import FaultRequest, parse_fault
from .market import Market
from .minihttp import serve_json
from .venue import VenueServer

log = logging.getLogger("simulator")

TICK_S = 0.004  # pacing loop period: updates due are generated in one batch per tick
MID_STEP_S = 0.1  # one random-walk step of every mid per this many seconds


class Simulator:
    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.market = Market(cfg.seed)
        self.venues: dict[str, VenueServer] = {}
        for spec in cfg.venues:
            try:
                get_dialect(spec.name)
            except LookupError as exc:
                if cfg.explicit_venues:
                    raise
                log.warning("%s: not simulated: %s", spec.name, exc)
                continue
            self.venues[spec.name] = VenueServer(
                spec.name,
                cfg.host,
                spec.port,
                spec.quote,
                list(spec.bases),
                self.market,
                cfg.seed,
                cfg.rate,
                spec.levels,
            )
        self.paused = False
        self.trade_ratio = cfg.trade_ratio
        self.control_port = cfg.control_port
        self._schedule = [parse_fault(f, self._symbols()) for f in cfg.faults]
        self._at = [float(f.get("at_s", 0)) for f in cfg.faults]
        for req in self._schedule:
            self.venues[req.venue].check(req)
        self._stopping = False
        self._control: asyncio.Server | None = None
        self._mid_t0 = 0.0
        self._mids_done = 0

    def _symbols(self) -> dict[str, list[str]]:
        return {name: v.symbols for name, v in self.venues.items()}

    async def start(self) -> None:
        for venue in self.venues.values():
            await venue.start()
        self._control = await serve_json(make_handler(self), self.cfg.host, self.cfg.control_port)
        self.control_port = self._control.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        for at, req in zip(self._at, self._schedule, strict=True):
            loop.call_later(at, self._scheduled, req)

    def _scheduled(self, req: FaultRequest) -> None:
        if not self._stopping:
            log.info("scheduled fault: %s", req)
            self.venues[req.venue].inject(req)

    async def run(self) -> None:
        """The pacing loop: every tick, step the mids and pump every venue, until stop()."""
        loop = asyncio.get_running_loop()
        self._mid_t0 = loop.time()
        while not self._stopping:
            now = loop.time()
            if not self.paused:
                due = int((now - self._mid_t0) / MID_STEP_S) - self._mids_done
                if due > 0:
                    self.market.step_mids(min(due, 10))
                    self._mids_done += due
                for venue in self.venues.values():
                    venue.pump(now, self.trade_ratio)
            await asyncio.sleep(TICK_S)

    def stop(self) -> None:
        self._stopping = True

    async def close(self) -> None:
        if self._control is not None:
            self._control.close()
        for venue in self.venues.values():
            await venue.stop()

    # ---- control API ----------------------------------------------------------------------

    def pause(self) -> None:
        if not self.paused:
            log.info("market paused")
        self.paused = True

    def resume(self) -> None:
        if self.paused:
            log.info("market resumed")
            self.paused = False
            self._mid_t0 = asyncio.get_running_loop().time()
            self._mids_done = 0
            for venue in self.venues.values():
                venue.rebase()

    def set_rate(self, rate: float, venue: str | None = None) -> None:
        for name, v in self.venues.items():
            if venue in (None, name):
                v.set_rate(rate)
                log.info("%s: rate set to %g updates/s", name, rate)

    def inject(self, obj: object) -> dict:
        req = parse_fault(obj, self._symbols())
        return self.venues[req.venue].inject(req)
