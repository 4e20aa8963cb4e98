"""Depth conflation (services/book/conflate.py): rate-limited, and the final state always out."""

from __future__ import annotations

import asyncio
import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from services.book.conflate import Conflator


def run_schedule(interval: float, steps: list[tuple[float, str]]) -> tuple[list, dict[str, int]]:
    """Touch keys after the given delays; return the emits (time, key, value) and final values."""

    async def main() -> tuple[list, dict[str, int]]:
        loop = asyncio.get_running_loop()
        state: dict[str, int] = {}
        emitted: list[tuple[float, str, int]] = []
        c = Conflator(loop, interval, lambda k: emitted.append((loop.time(), k, state[k])))
        for delay, key in steps:
            if delay:
                await asyncio.sleep(delay)
            state[key] = state.get(key, 0) + 1
            c.touch(key)
        deadline = loop.time() + 10.0
        while c.pending() and loop.time() < deadline:
            await asyncio.sleep(interval / 2)
        assert c.pending() == 0, "a trailing emit never came"
        return emitted, state

    return asyncio.run(main())


@settings(max_examples=25, deadline=None)
@given(
    st.sampled_from([0.002, 0.005, 0.01]),
    st.lists(
        st.tuples(st.sampled_from([0.0, 0.0, 0.001, 0.003, 0.012]), st.sampled_from("ab")),
        min_size=1,
        max_size=30,
    ),
)
def test_conflation_never_loses_the_final_state(interval: float, steps) -> None:
    emitted, final = run_schedule(interval, steps)
    for key, value in final.items():
        mine = [e for e in emitted if e[1] == key]
        assert mine, f"{key} never emitted"
        assert mine[-1][2] == value, f"{key}: last emit {mine[-1][2]}, final state {value}"
        # at most one emit per interval (call_at may run a hair early: clock resolution)
        for (t0, _, v0), (t1, _, v1) in itertools.pairwise(mine):
            assert t1 - t0 >= interval - 1e-3
            assert v1 > v0  # an emit goes out only after a touch


def test_burst_is_one_emit_then_one_trailing() -> None:
    emitted, _ = run_schedule(0.05, [(0.0, "a")] * 100)
    assert [e[2] for e in emitted] == [100]
    emitted, _ = run_schedule(0.05, [(0.0, "a"), (0.001, "a"), (0.0, "a"), (0.0, "a")])
    assert [e[2] for e in emitted] == [1, 4]
    assert emitted[1][0] - emitted[0][0] >= 0.05 - 1e-3
