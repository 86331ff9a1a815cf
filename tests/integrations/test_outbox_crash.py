"""kill -9 between a checkpoint that records events and their relay, and at other moments; restart; every
event reaches the subscriber (deduplicated by webhook-id: exactly once per subscription) and the outbox
holds exactly the events of what the jobs record — real processes, real database, simulator over HTTP."""

from __future__ import annotations

import json
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from tests.crash.procs import DB_NAME, Campaign, standard_people

pytestmark = pytest.mark.slow
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Hooks:
    def __init__(self) -> None:
        self.got: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["content-length"])).decode()
                Webhook(SECRET).verify(raw, {k.lower(): v for k, v in self.headers.items()})  # raises if forged
                with hooks.lock:
                    hooks.got.append((self.headers["webhook-id"], json.loads(raw)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()


def test_events_survive_kill_9_and_arrive_once_per_subscription(tmp_path: Path) -> None:
    hooks = Hooks()
    c = Campaign(tmp_path / "c", standard_people("5694"))
    c.root.mkdir()
    c.start()
    try:
        with c.client() as client:
            client[DB_NAME].webhook_subscriptions.insert_many([
                {"_id": sub, "account_id": "acme", "url": hooks.url, "events": ["*"], "secret": SECRET,
                 "description": "", "active": True, "disabled_reason": None, "created_ms": 0,
                 "last_success_ms": 0, "failures_in_row": 0} for sub in ("sub_a", "sub_b")])
        config = c.write_config("a")
        config.write_text(config.read_text() + "\n[integrations]\nallow_private_targets = true\n")
        killed = []
        for plan in ["outbox_written:1", "outbox_written:3", "result_written:2", "outbox_written:2",
                     "call_created:2", "outbox_written:4"]:
            rc = c.run(config, crash=plan)
            if rc == 0:
                break
            assert rc == -signal.SIGKILL, f"run with {plan} exited {rc}"
            killed.append(plan)
        assert sum(p.startswith("outbox_written") for p in killed) >= 3, killed
        c.finish(config)
        c.assert_exactly_once()
        # a last run without --until-done relays what the kills left and delivers everything
        proc = c.spawn(config, until_done=False)
        with c.client() as client:
            db = client[DB_NAME]

            def settled() -> bool:
                return db.outbox.count_documents({}) > 0 and db.webhook_deliveries.count_documents(
                    {"next_ms": {"$gt": 0}}) == 0 and len({i for i, _ in hooks.got}) == db.outbox.count_documents({})

            try:
                c.wait_for(settled, 60, "every event delivered")
            except AssertionError:
                states = sorted((d["state"], d["next_ms"] > 0, (d.get("attempts") or [{}])[-1].get("error"))
                                for d in db.webhook_deliveries.find({}))
                got = {i for i, _ in hooks.got}
                missing = [(e["_id"], list(db.webhook_deliveries.find({"event_id": e["_id"]})))
                           for e in db.outbox.find({}) if e["_id"] not in got]
                raise AssertionError(f"missing {missing[:6]} outbox {db.outbox.count_documents({})}, received "
                                     f"{len({i for i, _ in hooks.got})}, deliveries {states[:10]}") from None
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
            events = {e["_id"]: e for e in db.outbox.find({})}
            jobs = list(db.jobs.find({}))
            deliveries = list(db.webhook_deliveries.find({}))
        # no cause without its event
        causes = set()
        for job in jobs:
            for a in job["attempts"]:
                if a.get("call_id") and a.get("outcome"):
                    causes |= {f"{a['attempt_id']}:call.created", f"{a['attempt_id']}:call.finished"}
            assert any(e["type"] == f"job.{job['state']}" and e["data"]["job_id"] == str(job["_id"])
                       for e in events.values()), f"no job.{job['state']} event for {job['_id']}"
        assert causes <= set(events)
        # no event without its cause: every call event names an attempt the jobs record as placed
        placed = {a["attempt_id"] for job in jobs for a in job["attempts"] if a.get("call_id")}
        assert {e["data"]["attempt"]["attempt_id"] for e in events.values() if e["type"].startswith("call.")} <= placed
        # exactly one delivery per event and subscription, all delivered
        assert sorted(d["_id"] for d in deliveries) == sorted(f"{e}>{s}" for e in events for s in ("sub_a", "sub_b"))
        assert {d["state"] for d in deliveries} == {"delivered"}
        # the receiver, deduplicating by webhook-id, saw each event exactly once per subscription (each
        # subscription got the same id; two subscriptions → each id at least twice)
        ids = [i for i, _ in hooks.got]
        assert set(ids) == set(events)
        assert all(ids.count(i) >= 2 for i in events)
    finally:
        hooks.close()
        c.close()
