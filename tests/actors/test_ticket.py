"""Ticket: a grant reaches only a waiting holder; recall and time-out send it back; no grant is lost."""

from __future__ import annotations

import anyio

from actors.ticket import Ticket, TicketState


async def test_a_grant_wakes_the_waiting_holder_with_its_value() -> None:
    waits: list[int] = []
    ticket: Ticket[str] = Ticket(on_wait=lambda: waits.append(1))
    got: list[bool] = []

    async def holder() -> None:
        got.append(await ticket.wait(5.0))

    async with anyio.create_task_group() as tg:
        tg.start_soon(holder)
        await anyio.sleep(0.01)
        assert ticket.waiting and waits == [1]
        assert ticket.grant("line-1")
    assert got == [True] and ticket.value == "line-1" and ticket.state == TicketState.GRANTED
    assert await ticket.wait(0.0)  # once granted it stays granted
    assert not ticket.grant("line-2") and ticket.value == "line-1"


async def test_no_grant_before_the_holder_waits() -> None:
    ticket: Ticket[int] = Ticket()
    assert not ticket.grant(1) and not ticket.recall()
    assert ticket.state == TicketState.NEW


async def test_recall_sends_the_holder_back_and_a_later_wait_can_be_granted() -> None:
    ticket: Ticket[int] = Ticket()
    results: list[bool] = []

    async def holder() -> None:
        results.append(await ticket.wait(5.0))
        results.append(await ticket.wait(5.0))

    async with anyio.create_task_group() as tg:
        tg.start_soon(holder)
        await anyio.sleep(0.01)
        assert ticket.recall()
        await anyio.sleep(0.01)
        assert ticket.waiting
        assert ticket.grant(7)
    assert results == [False, True] and ticket.value == 7


async def test_a_timed_out_holder_is_not_granted_afterwards() -> None:
    ticket: Ticket[int] = Ticket()
    assert not await ticket.wait(0.01)
    assert ticket.state == TicketState.RECALLED
    assert not ticket.grant(1) and ticket.value is None
