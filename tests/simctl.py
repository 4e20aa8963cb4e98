"""Client of the simulator's HTTP control API, for tests and the benchmark."""

from __future__ import annotations

from typing import Any

import httpx


class SimControl:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}/sim"
        self.http = httpx.Client(timeout=10)

    def healthy(self) -> bool:
        try:
            return self.http.get(f"{self.base}/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    def fault(self, venue: str, kind: str, **kw: Any) -> dict[str, Any]:
        r = self.http.post(f"{self.base}/fault", json={"venue": venue, "kind": kind, **kw})
        if r.status_code != 200:
            raise AssertionError(
                f"simulator refused fault {kind} on {venue}: {r.status_code} {r.text}"
            )
        return r.json()

    def pause(self) -> None:
        self.http.post(f"{self.base}/pause").raise_for_status()

    def resume(self) -> None:
        self.http.post(f"{self.base}/resume").raise_for_status()

    def book(self, venue: str, symbol: str, depth: int = 50) -> tuple[list, list]:
        r = self.http.get(
            f"{self.base}/book", params={"venue": venue, "symbol": symbol, "depth": depth}
        )
        r.raise_for_status()
        body = r.json()
        return [tuple(x) for x in body["bids"]], [tuple(x) for x in body["asks"]]

    def stats(self, venue: str) -> dict[str, Any]:
        return self.http.get(f"{self.base}/stats").json()["venues"][venue]

    def close(self) -> None:
        self.http.close()
