"""`speechai status`, `db indexes`, `jobs reset` and `jobs clean` as real subprocesses on a data directory
holding a finished campaign (embedded database), checked against the database afterwards."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from beanie import init_beanie

from speechai.admin.jobs import clean_jobs
from speechai.store.api_models import AuditEntry
from speechai.store.db import connect
from speechai.store.embedded import EmbeddedMongo
from speechai.store.models import DOCUMENT_MODELS, CallRecord, Job, JobState, WebhookEvent, epoch_ms
from tests.reports.campaign import campaign_data_dir

ROOT = Path(__file__).resolve().parents[2]


def speechai(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPEECHAI_", "RETELL_"))}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "speechai.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


@dataclass
class Snapshot:
    jobs: dict[str, Job]  # the finished campaign's jobs, by id
    dry_clean: Any  # clean_jobs(apply=False) on it


@pytest.fixture(scope="module")
async def finished_campaign(tmp_path_factory):
    root = tmp_path_factory.mktemp("admin")

    async def look() -> Snapshot:
        jobs = {str(j.id): j async for j in Job.find({})}
        dry = await clean_jobs(older_than=timedelta(days=30), now=datetime.now(UTC), apply=False)
        assert len([j async for j in Job.find({})]) == len(jobs)  # the dry run deleted nothing
        return Snapshot(jobs, dry)

    snapshot = await campaign_data_dir(root / "var", paused_person=True, then=look)
    return root / "var", snapshot


@pytest.fixture
def workdir(finished_campaign, tmp_path) -> Path:
    """A private copy of the campaign's data directory and a config pointing at it."""
    shutil.copytree(finished_campaign[0], tmp_path / "var")
    (tmp_path / "config.toml").write_text('data_dir = "var"\n')
    return tmp_path


@asynccontextmanager
async def opened(data_dir: Path):
    """The copy's database, opened in this process (the CLI has stopped its server by then)."""
    server = EmbeddedMongo(data_dir)
    uri = server.start()
    client = await connect(uri, "speechai")
    try:
        yield client["speechai"]
    finally:
        await client.close()
        server.stop()


async def test_status_and_indexes(workdir) -> None:
    out = speechai("status", "--json", cwd=workdir)
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    [instance] = status["instances"]
    assert instance["generation"] == 1
    # the heartbeat's record: the campaign's instance stopped cleanly, after beating and passing
    assert instance["state"] == "stopped" and instance["lease_ttl_ms"] == 30_000
    assert isinstance(instance["pid"], int) and instance["host"]
    assert instance["started_ms"] <= instance["heartbeat_ms"] <= instance["stopped_ms"] <= status["now_ms"]
    assert isinstance(instance["last_pass_ms"], int) and instance["last_pass_ms"] >= instance["started_ms"]
    assert status["calls_in_flight"] == 0 and status["leases"] == {}
    assert {b["id"]: b["status"] for b in status["batches"]} == {"b1": "active", "held": "paused"}
    assert "paused" in next(b for b in status["batches"] if b["id"] == "held")["waiting_reason"]
    assert status["last_job_change_ms"] > 0
    assert all(not g["live"] or g["slots"] >= 0 for g in status["grants"])

    text = speechai("status", cwd=workdir)
    assert text.returncode == 0 and "generation 1  STOPPED  (pid " in text.stdout, text.stdout
    assert "last scheduler pass 20" in text.stdout

    out = speechai("db", "indexes", cwd=workdir)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[-1].endswith(" 0 created, 0 missing")
    assert any(line.startswith("jobs") and " ok " in line and "unique dedup_key asc" in line for line in lines)
    assert any(line.startswith("calls") and "unique call_id asc" in line for line in lines)


async def test_reset_then_clean(workdir, finished_campaign) -> None:
    snapshot: Snapshot = finished_campaign[1]
    failed = {i: j for i, j in snapshot.jobs.items() if j.state == JobState.FAILED}
    assert len(failed) == 2
    # what a clean would take from the finished campaign (counted by the dry run, nothing deleted)
    assert (snapshot.dry_clean.jobs, snapshot.dry_clean.by_state) == (6, {"done": 3, "excluded": 1, "failed": 2})

    out = speechai("jobs", "reset", "--state", "failed", "--older-than", "7d", "--progress", cwd=workdir)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("would reset ") == 2 and "failed -> pending" in out.stdout
    assert all(job_id in out.stdout for job_id in failed)
    assert "dry run: 2 failed jobs of all batches, last changed more than 7d ago" in out.stdout
    assert "[" + "#" * 30 + "] 2/2 jobs" in out.stderr  # the progress bar ran to the end

    started_ms = int(time.time() * 1000)
    out = speechai("jobs", "reset", "--state", "failed", "--batch", "b1", "--apply", cwd=workdir)
    assert out.returncode == 0, out.stderr
    assert "reset 2 failed jobs of batch b1 to pending" in out.stdout

    finished = [j for j in snapshot.jobs.values() if j.state in (JobState.DONE, JobState.EXCLUDED)]
    calls_of_finished = sum(1 for j in finished for a in j.attempts if a.call_id)
    out = speechai("jobs", "clean", "--older-than-days", "30", "--archive", "old.jsonl.gz", "--apply", cwd=workdir)
    assert out.returncode == 0, out.stderr
    assert f"deleted 4 finished jobs (done 3, excluded 1), {calls_of_finished} call payloads" in out.stdout
    with gzip.open(workdir / "old.jsonl.gz", "rt") as f:
        archived = [json.loads(line) for line in f]
    assert sorted(a["job"]["_id"]["$oid"] for a in archived) == sorted(str(j.id) for j in finished)
    assert sum(len(a["calls"]) for a in archived) == calls_of_finished

    async with opened(workdir / "var") as db:
        await init_beanie(database=db, document_models=DOCUMENT_MODELS)
        for job_id, old in failed.items():
            raw = await Job.get_pymongo_collection().find_one({"_id": old.id})
            job = Job.model_validate(raw)
            # version + 1: the dry run wrote nothing, the reset wrote once
            assert job.state == JobState.PENDING and job.version == old.version + 1, job_id
            last = job.history[-1]
            assert (last.from_state, last.to_state) == (JobState.FAILED, JobState.PENDING), job_id
            assert last.reason == "reset by operator (was failed)" and job.lease is None
            assert job.attempts_counted == 0 and len(job.attempts) == len(old.attempts)  # the calls are kept
            # a real date, not $set text, mirrored as integers for the due index
            assert raw["next_try_ms"] == epoch_ms(job.next_try_at) and raw["sync_ms"] >= started_ms
            assert abs(raw["next_try_ms"] - raw["sync_ms"]) < 60_000
        due = await Job.get_pymongo_collection().find(
            {"state": "pending", "next_try_ms": {"$lte": int(time.time() * 1000)}}, {"_id": 1}).to_list()
        assert {str(d["_id"]) for d in due} >= set(failed)
        left = [j async for j in Job.find({})]
        # the reset (now pending) jobs and the paused batch's pending job are live: never cleaned
        assert sorted(j.state.value for j in left) == ["pending", "pending", "pending"]
        kept_calls = {a.call_id for j in left for a in j.attempts if a.call_id}
        assert {c.call_id async for c in CallRecord.find({})} == kept_calls
        hooks = {w.call_id async for w in WebhookEvent.find({})}
        # records of cleaned calls are gone (events routed to a live actor leave none in the first place)
        assert hooks <= kept_calls
        # both applied commands are in the audit log, with who ran them; the dry runs are not
        audit = [e async for e in AuditEntry.find({}).sort("seq")]
        assert [(e.action, e.method) for e in audit] == [("jobs.reset", "CLI"), ("jobs.clean", "CLI")]
        assert audit[0].key_id.startswith("cli:") and audit[0].detail["reset"] == 2
        assert audit[1].detail["jobs"] == 4

    out = speechai("jobs", "reset", "--state", "failed", "--older-than", "a week", cwd=workdir)
    assert out.returncode == 2 and "--older-than must be a number and a unit" in out.stderr
