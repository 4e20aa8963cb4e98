"""HTTP control API of the simulator (JSON in and out), served on ``control_port``.

| method | path | body / query | answer |
|---|---|---|---|
| POST | /sim/fault | `{"venue","kind","symbol"?,"duration_s"?,"count"?}` | `{"ok":true,"venue","kind","symbol","connections"}` |
| POST | /sim/pause, /sim/resume | - | `{"ok":true,"paused":bool}` |
| POST | /sim/rate | `{"rate":N,"venue"?}` | `{"ok":true,"rates":{venue:N}}` |
| GET | /sim/book | `venue, symbol, depth=50` | `{"venue","symbol","last_update_id","bids","asks"}` |
| GET | /sim/stats | - | `{"venues":{name:{...,"faults":{kind:n}}},"paused","rate"}` |
| GET | /sim/healthz | - | `{"ok":true}` |

Errors are JSON `{"error": "..."}` with 400 (bad input), 404 (no such route) or 405.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from .assets import fmt8
from .faults import FaultError
from .minihttp import Handler

if TYPE_CHECKING:
    from .engine import Simulator

GET_ROUTES = ("/sim/book", "/sim/stats", "/sim/healthz")
POST_ROUTES = ("/sim/fault", "/sim/pause", "/sim/resume", "/sim/rate")


def make_handler(sim: Simulator) -> Handler:
    async def handle(
        method: str, path: str, query: dict[str, str], body: bytes
    ) -> tuple[int, object]:
        if path not in GET_ROUTES + POST_ROUTES:
            return 404, {"error": f"no route {path}"}
        wanted = "GET" if path in GET_ROUTES else "POST"
        if method != wanted:
            return 405, {"error": f"{path} takes {wanted}"}
        try:
            if wanted == "GET":
                return 200, _get(sim, path, query)
            obj = orjson.loads(body) if body.strip() else {}
            return 200, _post(sim, path, obj)
        except orjson.JSONDecodeError as exc:
            return 400, {"error": f"body is not JSON: {exc}"}
        except (FaultError, ValueError, KeyError, TypeError) as exc:
            return 400, {"error": str(exc)}

    return handle


def _get(sim: Simulator, path: str, query: dict[str, str]) -> dict:
    if path == "/sim/healthz":
        return {"ok": True}
    if path == "/sim/stats":
        return {
            "venues": {name: v.stats_json() for name, v in sim.venues.items()},
            "paused": sim.paused,
            "rate": {name: v.rate for name, v in sim.venues.items()},
        }
    venue = sim.venues.get(query.get("venue", ""))
    if venue is None:
        raise ValueError(f"unknown venue {query.get('venue')!r}; served: {sorted(sim.venues)}")
    symbol = query.get("symbol", "")
    if symbol not in venue.books:
        raise ValueError(f"unknown symbol {symbol!r} for venue {venue.name!r}")
    depth = int(query.get("depth", "50"))
    if depth < 1:
        raise ValueError("depth must be >= 1")
    book = venue.books[symbol]
    inst = book.inst
    bids, asks = book.top(depth)
    te, se = inst.tick_e8, inst.step_e8
    return {
        "venue": venue.name,
        "symbol": symbol,
        "last_update_id": book.last_id,
        "bids": [[float(fmt8(p * te)), float(fmt8(q * se))] for p, q in bids],
        "asks": [[float(fmt8(p * te)), float(fmt8(q * se))] for p, q in asks],
    }


def _post(sim: Simulator, path: str, obj: object) -> dict:
    if not isinstance(obj, dict):
        raise ValueError("body must be a JSON object")
    if path == "/sim/fault":
        return sim.inject(obj)
    if path == "/sim/pause":
        sim.pause()
        return {"ok": True, "paused": True}
    if path == "/sim/resume":
        sim.resume()
        return {"ok": True, "paused": False}
    rate = obj.get("rate")
    if isinstance(rate, bool) or not isinstance(rate, int | float) or rate < 0:
        raise ValueError("rate must be a number >= 0")
    venue = obj.get("venue")
    if venue is not None and venue not in sim.venues:
        raise ValueError(f"unknown venue {venue!r}; served: {sorted(sim.venues)}")
    sim.set_rate(float(rate), venue)
    return {"ok": True, "rates": {name: v.rate for name, v in sim.venues.items()}}
