"""Reserving checks of one subaccount queue in the process (app/core/gates.py): one at a time
per key, others free, a bounded wait, nothing kept once idle."""

from __future__ import annotations

import asyncio

import pytest

from app.core import gates as gates_module
from app.core.errors import Unavailable
from app.core.gates import Gates


def in_(seconds: float) -> float:
    return asyncio.get_running_loop().time() + seconds


async def test_one_key_is_held_by_one_at_a_time_and_other_keys_are_free() -> None:
    gates, order = Gates(), []

    async def hold(key: str, name: str, seconds: float) -> None:
        async with gates.one_at_a_time(key, deadline=in_(5)):
            order.append(f"{name} in")
            await asyncio.sleep(seconds)
            order.append(f"{name} out")

    await asyncio.gather(
        hold("sub-a", "first", 0.05), hold("sub-a", "second", 0), hold("sub-b", "other", 0)
    )
    # The other key does not wait for the first; the second waits until the first is out.
    assert order.index("other out") < order.index("first out")
    assert order.index("first out") < order.index("second in")
    assert len(gates) == 0  # nothing kept once idle


async def test_a_wait_past_its_deadline_is_refused_and_forgotten() -> None:
    gates = Gates()
    entered = asyncio.Event()

    async def hold() -> None:
        async with gates.one_at_a_time("sub-a", deadline=in_(5)):
            entered.set()
            await asyncio.sleep(0.2)

    holder = asyncio.create_task(hold())
    await entered.wait()
    with pytest.raises(Unavailable) as refused:
        async with gates.one_at_a_time("sub-a", deadline=in_(0.02)):
            pytest.fail("entered a gate that was held")
    assert (refused.value.status, refused.value.code) == (503, "UNAVAILABLE")
    await holder
    assert len(gates) == 0


async def test_a_key_stays_contended_for_a_while_after_a_conflict(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(gates_module, "CONTENDED_S", 0.05)
    gates = Gates()
    assert not gates.contended("sub-1")
    gates.note_contention("sub-1")
    assert gates.contended("sub-1") and not gates.contended("sub-2")
    await asyncio.sleep(0.06)
    assert not gates.contended("sub-1")
