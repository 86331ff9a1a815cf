"""Retell webhook intake: verify the signature on the raw body, deduplicate, route to the call actor."""

from __future__ import annotations

import json
from typing import Any

from pymongo.errors import DuplicateKeyError

from speechai.retell.signature import verify
from speechai.runtime.call_actor import CallEvent
from speechai.runtime.context import Runtime
from speechai.store.jobs import save_call_payload
from speechai.store.models import CallRecord, WebhookEvent


class WebhookReceiver:
    def __init__(self, rt: Runtime, api_key: str) -> None:
        self.rt = rt
        self.api_key = api_key

    async def receive(self, body: bytes, signature: str | None) -> tuple[int, dict[str, Any]]:
        if not verify(body, self.api_key, signature, self.rt.now_ms()):
            return 401, {"error": "bad or stale x-retell-signature"}
        try:
            payload = json.loads(body)
            event, call = str(payload["event"]), dict(payload["call"])
            call_id = str(call["call_id"])
        except (ValueError, KeyError, TypeError):
            return 400, {"error": "body must be JSON {event, call: {call_id, ...}}"}
        try:
            await WebhookEvent(key=f"{event}:{call_id}", event=event, call_id=call_id, payload=payload,
                               received_at=self.rt.clock.now()).insert()
        except DuplicateKeyError:
            return 200, {"status": "duplicate"}
        metadata = call.get("metadata") or {}
        job_id = str(metadata.get("job_id", ""))
        actor = self.rt.actors.get(job_id)
        if actor is not None:
            actor.tell_nowait(CallEvent(event=event, call=call))
        elif job_id and metadata.get("attempt_id") and (
                event == "call_analyzed" or await CallRecord.find_one({"call_id": call_id}) is None):
            # Nobody holds the job right now: keep the payload (the next actor re-reads the call anyway),
            # but a late call_started/call_ended never replaces a fuller stored one.
            await save_call_payload(CallRecord(
                call_id=call_id, job_id=job_id, attempt_id=str(metadata["attempt_id"]),
                batch_id=str(metadata.get("batch_id", "")), account_id=str(metadata.get("account_id", "")),
                call_status=call.get("call_status"), payload=call, updated_at=self.rt.clock.now()))
        self.rt.log.info("webhook", webhook_event=event, call_id=call_id, routed=actor is not None)
        return 200, {"status": "ok"}
