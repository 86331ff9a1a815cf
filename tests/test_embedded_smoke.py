from datetime import UTC, datetime

from speechai.store.models import Account, Job


async def test_beanie_roundtrip_on_embedded_server(db) -> None:
    await Account(id="acme").insert()
    now = datetime(2026, 3, 2, 12, tzinfo=UTC)
    job = Job(account_id="acme", batch_id="b1", dedup_key="acme:b1:1", person_key="1",
              next_try_at=now, created_at=now, updated_at=now)
    await job.insert()
    got = await Job.get(job.id)
    assert got is not None and got.next_try_at == now and got.account_id == "acme"
