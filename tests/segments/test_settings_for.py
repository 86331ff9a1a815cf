"""The job's settings and variables at dial time: the segment's overrides onto the batch's (the preset
still narrowing them), the segment's variables onto the person's; unfit overrides fall back to the batch's."""

from __future__ import annotations

from datetime import time

from speechai.domain.segments import check_rules
from speechai.domain.settings import CallSettings
from speechai.runtime.segment_settings import settings_for, variables_for
from speechai.store.models import Batch, Job, Phone
from tests.segments.data import NOW

RULES = check_rules([{"name": "early", "match": {"days_late": {"max": 30}}, "variables": {"discount": "10%",
                                                                                         "name": "override"},
                      "overrides": {"allowed_hours": [{"start": "08:00", "end": "21:00"}], "max_attempts": 2}},
                     {"name": "default"}])


def _job(segment: str | None) -> Job:
    return Job(account_id="acme", batch_id="b1", dedup_key="k", person_key="p", phones=[Phone(number="+56975000001")],
               variables={"name": "Ana", "days_late": "3"}, segment=segment, next_try_at=NOW, created_at=NOW,
               updated_at=NOW)


async def test_overrides_and_variables_apply_to_the_segment_only(db) -> None:
    batch = Batch(id="b1", account_id="acme", created_at=NOW, segments=RULES,
                  call_settings=CallSettings(max_attempts=5, preset="chile"))
    early = settings_for(batch, _job("early"))
    assert early.max_attempts == 2
    # the Chile preset still narrows the segment's 08:00-21:00 (to end at 20:00)
    assert [(h.start, h.end) for h in early.allowed_hours] == [(time(8), time(20))]
    assert settings_for(batch, _job("default")).max_attempts == 5
    assert settings_for(batch, _job(None)) == batch.call_settings.effective()
    assert settings_for(batch, _job("removed-since")).max_attempts == 5
    assert variables_for(batch, _job("early")) == {"name": "override", "days_late": "3", "discount": "10%"}
    assert variables_for(batch, _job("default")) == {"name": "Ana", "days_late": "3"}


async def test_overrides_unfit_after_a_settings_change_fall_back_to_the_batch(db) -> None:
    rules = check_rules([{"name": "d", "overrides": {"waves": ["09:30"]}}])
    batch = Batch(id="b1", account_id="acme", created_at=NOW, segments=rules,
                  call_settings=CallSettings(allowed_hours=[{"start": "14:00", "end": "18:00"}]))
    assert settings_for(batch, _job("d")) == batch.call_settings.effective()
