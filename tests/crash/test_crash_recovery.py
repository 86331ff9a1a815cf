"""Real-process crash tests: ``speechai run`` killed at every crash point and at random moments,
two instances on one database, a database outage and a graceful stop, all against the simulator.

The simulator's dial log (one line per call it really placed) and the database are the witnesses.
"""

from __future__ import annotations

import itertools
import json
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from speechai.store.embedded import EmbeddedMongo
from tests.crash.procs import DB_NAME, Campaign, many_people, standard_people

pytestmark = pytest.mark.slow


@pytest.fixture
def campaign_factory(tmp_path: Path) -> Iterator:
    made: list[Campaign] = []

    def make(people, **kw) -> Campaign:
        c = Campaign(tmp_path / f"c{len(made)}", people, **kw)
        c.root.mkdir()
        made.append(c)
        return c.start()

    yield make
    for c in made:
        c.close()


def _log_events(config: Path, event: str) -> list[dict]:
    path = config.parent / "runtime.log"
    out = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("event") == event:
            out.append(rec)
    return out


def test_killed_at_every_crash_point_then_restarted(campaign_factory) -> None:
    c = campaign_factory(standard_people())
    config = c.write_config("a")
    plans = ["attempt_written:2", "call_created:3", "tracking:2", "result_written:2",
             "call_created:1", "attempt_written:4", "result_written:3", "tracking:5", "call_created:2"]
    killed = []
    for plan in plans:
        rc = c.run(config, crash=plan)
        if rc == 0:
            break  # the campaign finished before this point was reached that often
        assert rc == -signal.SIGKILL, f"run with {plan} exited {rc}"
        killed.append(plan)
    assert len(killed) >= 6, f"too few crashes happened: {killed}"
    c.finish(config)
    c.assert_exactly_once()


def test_kill_9_at_random_moments_then_restarted(campaign_factory) -> None:
    c = campaign_factory(standard_people("5693"))
    config = c.write_config("a")
    rng = random.Random(20260302)
    kills = 0
    for _ in range(5):
        proc = c.spawn(config)
        time.sleep(rng.uniform(1.5, 4.0))
        if proc.poll() is not None:
            assert proc.returncode == 0
            break
        proc.kill()
        proc.wait()
        kills += 1
    assert kills >= 3
    c.finish(config)
    c.assert_exactly_once()


def _no_overlapping_calls(c: Campaign) -> None:
    """Per job, each dial starts after the previous call of that job ended (provider clock on both)."""
    dial_at = {d["idempotency_key"]: datetime.fromisoformat(d["at"]) for d in c.dials()}
    for job in c.jobs():
        placed = [a for a in job["attempts"] if a["placed"]]
        for prev, nxt in itertools.pairwise(placed):
            assert prev["ended_at"] is not None
            assert dial_at[nxt["attempt_id"]] >= prev["ended_at"], f"job {job['_id']} dialed during a live call"


def test_two_instances_share_jobs_and_the_concurrency_limit(campaign_factory) -> None:
    # The provider allows exactly the runtime's global limit: one call too many would be refused with 429.
    c = campaign_factory(many_people(12), sim_concurrency=3)
    a, b = c.write_config("a", concurrency=3, instance_id="inst-a"), c.write_config("b", concurrency=3,
                                                                                    instance_id="inst-b")
    pa, pb = c.spawn(a), c.spawn(b)
    assert pa.wait(120) == 0 and pb.wait(120) == 0
    c.assert_exactly_once()
    assert c.throttled() == [], "the simulator refused calls: more than 3 were live at once"
    _no_overlapping_calls(c)
    owners = {e["instance"] for cfg in (a, b) for e in _log_events(cfg, "call_placed")}
    assert owners == {"inst-a", "inst-b"}, f"both instances should have dialed, got {owners}"


def test_survivor_takes_over_a_killed_instance_after_lease_expiry(campaign_factory) -> None:
    c = campaign_factory(many_people(10, "5694"), sim_concurrency=20)
    a, b = c.write_config("a", concurrency=3, instance_id="inst-a"), c.write_config("b", concurrency=3,
                                                                                    instance_id="inst-b")
    pa = c.spawn(a)
    held: list[dict] = []

    def a_holds_a_live_call() -> bool:
        held[:] = [j for j in c.jobs() if j["state"] == "in_flight" and (j.get("lease") or {}).get("owner") ==
                   "inst-a" and j["attempts"] and j["attempts"][-1]["call_id"]]
        return bool(held)

    c.wait_for(a_holds_a_live_call, 30, "instance a to hold a live call")
    pb = c.spawn(b, until_done=True)
    pa.kill()
    pa.wait()
    killed_at = time.monotonic()
    assert pb.wait(120) == 0
    taken = {e["job_id"] for e in _log_events(b, "lease_taken_over")}
    assert {str(j["_id"]) for j in held} <= taken, "b did not take over a's jobs"
    assert time.monotonic() - killed_at >= 2.0  # never before the lease (2 s) expired
    c.assert_exactly_once()
    _no_overlapping_calls(c)


def test_database_outage_mid_campaign(campaign_factory) -> None:
    c = campaign_factory(standard_people("5695"))
    config = c.write_config("a")
    proc = c.spawn(config)
    c.wait_for(lambda: len(c.dials()) >= 4, 30, "the first dials")
    port, data_dir = c.mongo.port, c.mongo.data_dir
    c.mongo.stop()
    time.sleep(4)
    assert proc.poll() is None, "the runtime died while the database was away"
    c.mongo = EmbeddedMongo(data_dir, port=port)
    c.mongo.start()
    assert proc.wait(120) == 0
    c.assert_exactly_once()


def test_sigterm_releases_leases_and_a_restart_finishes(campaign_factory) -> None:
    c = campaign_factory(standard_people("5696"))
    config = c.write_config("a", instance_id="inst-a", lease_ttl_s=30)
    proc = c.spawn(config)

    def live_calls() -> list[dict]:
        return [j for j in c.jobs() if j["state"] == "in_flight" and j["attempts"] and j["attempts"][-1]["call_id"]]

    c.wait_for(lambda: len(live_calls()) >= 2, 30, "calls in progress")
    proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    try:
        assert proc.wait(15) == 0
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert time.monotonic() - started < 15
    in_flight = [j for j in c.jobs() if j["state"] == "in_flight"]
    assert in_flight, "no call was in progress at shutdown"
    for job in in_flight:
        assert job["lease"]["until_ms"] == 0, "lease not released"
    # calls in progress keep their call ids, so the next start re-adopts them instead of redialing
    assert any(j["attempts"][-1]["call_id"] for j in in_flight)
    with c.client() as client:
        assert client[DB_NAME].quotas.count_documents({"grants.owner": "inst-a"}) == 0, "concurrency not freed"
    restart = time.monotonic()
    c.finish(config)
    assert time.monotonic() - restart < 60  # released leases are adopted at once, not after 30 s
    c.assert_exactly_once()
