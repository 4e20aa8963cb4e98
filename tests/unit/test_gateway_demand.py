"""DepthDemand: the gateway follows a depth topic while clients want it, plus a linger."""

from __future__ import annotations

import asyncio

from services.gateway.demand import DepthDemand
from tests.procs import until


def recorded(linger_s: float) -> tuple[DepthDemand, list[tuple[str, str]]]:
    """A DepthDemand whose follow/unfollow calls are recorded, in order."""
    calls: list[tuple[str, str]] = []
    demand = DepthDemand(
        lambda t: calls.append(("follow", t)),
        lambda t: calls.append(("unfollow", t)),
        linger_s=linger_s,
    )
    return demand, calls


def test_followed_while_wanted_then_dropped_after_the_linger():
    async def main() -> None:
        demand, calls = recorded(linger_s=0.05)
        topic = "depth.binance.BTC-USDT"
        demand.want(topic)
        demand.want(topic)  # a second client: no second subscription
        assert calls == [("follow", topic)]
        demand.release(topic)
        await asyncio.sleep(0.15)
        assert topic in demand.followed, "one client still wants it"
        demand.release(topic)
        await until(lambda: topic not in demand.followed)
        assert calls == [("follow", topic), ("unfollow", topic)]

    asyncio.run(main())


def test_wanted_again_within_the_linger_keeps_the_subscription():
    async def main() -> None:
        demand, calls = recorded(linger_s=0.2)
        topic = "depth.all.BTC-USD"
        demand.want(topic)
        demand.release(topic)
        demand.touch(topic)  # an HTTP request during the linger: restarts it
        demand.want(topic)  # and a client comes back
        await asyncio.sleep(0.4)
        assert calls == [("follow", topic)] and topic in demand.followed
        demand.release(topic)
        await until(lambda: topic not in demand.followed)
        assert calls[-1] == ("unfollow", topic)
        demand.close()

    asyncio.run(main())
