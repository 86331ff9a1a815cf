"""The real client against the simulator over loopback HTTP: calls, errors, idempotency, listing."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import aiohttp
import pytest
from retell.types import PhoneCallResponse
from retell.types.call_list_response import CallListResponse
from retell.types.concurrency_retrieve_response import ConcurrencyRetrieveResponse

from actors.clock import SimClock
from speechai.retell.client import RetellClient, stringify_value
from speechai.retell.errors import (
    BadRequest,
    MalformedResponse,
    NotFound,
    PaymentRequired,
    ProviderTimeout,
    RateLimited,
    ServerError,
    Unauthorized,
    UnknownAsset,
)
from speechai.retell.simulator import RetellSimulator

API_KEY = "test-key-not-real"  # the simulator fixture's key (conftest)
FROM = "+56221234567"
TO = "+56991975219"


async def create(client: RetellClient, key: str, to: str = TO, **kwargs: object) -> dict:
    return await client.create_phone_call(from_number=FROM, to_number=to, idempotency_key=key, **kwargs)


async def test_create_get_and_payload_shape(client: RetellClient, sim: RetellSimulator) -> None:
    call = await create(
        client, "att-1", metadata={"attempt_id": "att-1", "job_id": "j1"}, override_agent_id="agent_x"
    )
    assert call["call_status"] == "registered"
    assert call["metadata"] == {"attempt_id": "att-1", "job_id": "j1"}
    PhoneCallResponse.model_validate(call)
    fetched = await client.get_call(call["call_id"])
    assert fetched["call_id"] == call["call_id"]
    assert fetched["agent_id"] == "agent_x"
    assert [d.call_id for d in sim.dials] == [call["call_id"]]
    assert sim.dials[0].idempotency_key == "att-1"
    assert sim.dials[0].metadata["attempt_id"] == "att-1"


async def test_dynamic_variables_are_sent_as_strings(client: RetellClient, sim: RetellSimulator) -> None:
    variables = {
        "nombre": "Ana",
        "monto": 1500.0,
        "cuotas": 3,
        "saldo": Decimal("12500.50"),
        "vence": date(2025, 3, 31),
        "hora": datetime(2025, 3, 3, 9, 30),
        "vacio": None,
        "activo": True,
        "tasa": 0.15,
    }
    call = await create(client, "att-dv", dynamic_variables=variables)
    assert call["retell_llm_dynamic_variables"] == {
        "nombre": "Ana",
        "monto": "1500",
        "cuotas": "3",
        "saldo": "12500.5",
        "vence": "2025-03-31",
        "hora": "2025-03-03T09:30:00",
        "vacio": "",
        "activo": "true",
        "tasa": "0.15",
    }


def test_stringify_value_edge_cases() -> None:
    assert stringify_value(1e20) == "100000000000000000000"
    assert stringify_value(Decimal("1E+3")) == "1000"
    assert stringify_value(float("nan")) == "nan"
    assert stringify_value(-0.5) == "-0.5"


async def test_idempotency_key_required(client: RetellClient, sim: RetellSimulator) -> None:
    with pytest.raises(ValueError):
        await create(client, "")
    assert sim.dials == []


async def test_same_key_same_call_one_dial(client: RetellClient, sim: RetellSimulator) -> None:
    first = await create(client, "att-same")
    second = await create(client, "att-same")
    assert first["call_id"] == second["call_id"]
    assert len(sim.dials) == 1
    other = await create(client, "att-other")
    assert other["call_id"] != first["call_id"]
    assert len(sim.dials) == 2


async def test_key_expires_after_one_hour(client: RetellClient, sim: RetellSimulator, clock: SimClock) -> None:
    first = await create(client, "att-hour")
    clock.advance(3601)
    second = await create(client, "att-hour")
    assert second["call_id"] != first["call_id"]
    assert len(sim.dials) == 2


async def test_lost_response_then_repeat_adopts_the_same_call(client: RetellClient, sim: RetellSimulator) -> None:
    sim.fail_next("create-phone-call", 500, after_create=True)
    with pytest.raises(ServerError):
        await create(client, "att-lost", metadata={"attempt_id": "att-lost"})
    assert len(sim.dials) == 1  # the dial happened although the caller saw an error
    call = await create(client, "att-lost", metadata={"attempt_id": "att-lost"})
    assert call["call_id"] == sim.dials[0].call_id
    assert len(sim.dials) == 1


async def test_hung_create_times_out_and_repeat_is_the_same_call(sim: RetellSimulator) -> None:
    sim.fail_next("create-phone-call", 0, after_create=True)
    async with RetellClient(sim.base_url, API_KEY, timeout_s=0.3) as fast:
        with pytest.raises(ProviderTimeout):
            await create(fast, "att-hang")
        call = await create(fast, "att-hang")
    assert [d.call_id for d in sim.dials] == [call["call_id"]]


async def test_error_mapping(sim: RetellSimulator, client: RetellClient) -> None:
    async with RetellClient(sim.base_url, "wrong-key") as bad:
        with pytest.raises(Unauthorized) as unauthorized:
            await bad.get_concurrency()
    assert unauthorized.value.status == 401 and "Unauthorized" in unauthorized.value.message

    with pytest.raises(BadRequest):
        await create(client, "att-bad", to="991975219")
    with pytest.raises(BadRequest):
        await client.create_phone_call(from_number="", to_number=TO, idempotency_key="att-nofrom")
    with pytest.raises(NotFound):
        await client.get_call("call_does_not_exist")
    sim.payment_required = True
    with pytest.raises(PaymentRequired):
        await create(client, "att-402")
    sim.payment_required = False
    sim.known_agent_ids = {"agent_ok"}
    with pytest.raises(UnknownAsset):
        await create(client, "att-422", override_agent_id="agent_missing")
    assert (await create(client, "att-ok", override_agent_id="agent_ok"))["agent_id"] == "agent_ok"
    sim.fail_next("get-call", 503)
    with pytest.raises(ServerError) as server:
        await client.get_call("anything")
    assert server.value.status == 503
    sim.fail_next("list-calls", -1)
    with pytest.raises(MalformedResponse):
        await client.list_calls()
    sim.fail_next("get-concurrency", 429)
    with pytest.raises(RateLimited) as limited:
        await client.get_concurrency()
    assert limited.value.retry_after == 1.0
    # No fault left over: the next calls succeed.
    assert (await client.get_concurrency())["concurrency_limit"] == 20
    assert len(sim.dials) == 1


async def test_timeout_on_read_endpoints(sim: RetellSimulator) -> None:
    sim.fail_next("get-call", 0)
    async with RetellClient(sim.base_url, API_KEY, timeout_s=0.3) as fast:
        with pytest.raises(ProviderTimeout):
            await fast.get_call("call_x")


async def test_connection_refused_is_provider_timeout() -> None:
    async with aiohttp.ClientSession() as session:
        client = RetellClient("http://127.0.0.1:9", API_KEY, timeout_s=1.0, session=session)
        with pytest.raises(ProviderTimeout):
            await client.get_concurrency()
        await client.close()
        assert not session.closed  # a borrowed session is the caller's to close


async def test_concurrency_limit_gives_429_and_frees_after_calls_end(
    clock: SimClock, sim: RetellSimulator, client: RetellClient
) -> None:
    sim.concurrency_limit = 2
    sim.script(TO, "answered")
    await create(client, "att-c1")
    await create(client, "att-c2")
    with pytest.raises(RateLimited) as limited:
        await create(client, "att-c3")
    assert "concurrency_limit_reached" in limited.value.message
    # A repeat of a placed key is not a new call, so the limit does not apply to it.
    assert (await create(client, "att-c1"))["call_id"] == sim.dials[0].call_id
    conc = await client.get_concurrency()
    ConcurrencyRetrieveResponse.model_validate(conc)
    assert conc["current_concurrency"] == 2
    clock.advance(3 * 60)
    assert (await client.get_concurrency())["current_concurrency"] == 0
    await create(client, "att-c3")
    assert len(sim.dials) == 3


async def test_list_calls_metadata_filter_and_pagination(client: RetellClient, sim: RetellSimulator) -> None:
    sim.concurrency_limit = 1000
    for i in range(5):
        await create(client, f"att-p{i}", metadata={"batch_id": "b1", "attempt_id": f"att-p{i}"})
    await create(client, "att-q", metadata={"batch_id": "b2", "attempt_id": "att-q"})

    page = await client.list_calls(metadata={"batch_id": "b1"}, limit=2)
    assert len(page.items) == 2 and page.has_more and page.pagination_key
    CallListResponse.model_validate(
        {"items": page.items, "has_more": page.has_more, "pagination_key": page.pagination_key}
    )
    seen = [c["call_id"] for c in page.items]
    while page.has_more:
        page = await client.list_calls(metadata={"batch_id": "b1"}, limit=2, pagination_key=page.pagination_key)
        seen += [c["call_id"] for c in page.items]
    assert len(seen) == len(set(seen)) == 5

    found = await client.find_calls_by_metadata("attempt_id", "att-p3")
    assert [c["metadata"]["attempt_id"] for c in found] == ["att-p3"]
    assert await client.find_calls_by_metadata("attempt_id", "never-placed") == []
    # More than one page (limit 100 per request) is followed to the end.
    for i in range(101):
        await create(client, f"att-many{i}", metadata={"batch_id": "many"})
    assert len(await client.find_calls_by_metadata("batch_id", "many")) == 101


async def test_stop_call_ends_ongoing_call(clock: SimClock, sim: RetellSimulator, client: RetellClient) -> None:
    sim.script(TO, "long_call")
    call = await create(client, "att-stop")
    clock.advance(60)
    assert (await client.get_call(call["call_id"]))["call_status"] == "ongoing"
    await client.stop_call(call["call_id"])
    ended = await client.get_call(call["call_id"])
    assert ended["call_status"] == "ended"
    assert ended["disconnection_reason"] == "manual_stopped"
    assert ended["end_timestamp"] - ended["start_timestamp"] == ended["duration_ms"] > 0
    await client.stop_call(call["call_id"])  # stopping an ended call is harmless
    with pytest.raises(NotFound):
        await client.stop_call("call_unknown")


async def test_official_sdk_speaks_to_the_simulator(sim: RetellSimulator) -> None:
    from retell import AsyncRetell

    sdk = AsyncRetell(api_key=API_KEY, base_url=sim.base_url, max_retries=0)
    try:
        created = await sdk.call.create_phone_call(
            from_number=FROM, to_number=TO, idempotency_key="att-sdk", metadata={"attempt_id": "att-sdk"}
        )
        assert created.call_status == "registered"
        fetched = await sdk.call.retrieve(created.call_id)
        assert fetched.call_id == created.call_id
        listed = await sdk.call.list(filter_criteria={"metadata": [
            {"type": "string", "op": "eq", "key": "attempt_id", "value": "att-sdk"}
        ]})
        assert [c.call_id for c in listed.items] == [created.call_id]
        conc = await sdk.concurrency.retrieve()
        assert conc.current_concurrency == 1
    finally:
        await sdk.close()
