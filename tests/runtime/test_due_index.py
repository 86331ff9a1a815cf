"""The scheduler's in-memory due index: earliest first per batch, updates supersede, discards stick."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from speechai.runtime.due_index import DueIndex

WAITING = {"pending", "retry_scheduled", "suspended"}


def test_pops_the_earliest_due_job_of_a_batch_and_only_when_due() -> None:
    idx = DueIndex()
    idx.put("b", "j2", 200)
    idx.put("b", "j1", 100)
    idx.put("other", "j3", 50)
    assert idx.pop_due("b", 99) is None
    assert idx.pop_due("b", 150) == "j1"
    assert idx.pop_due("b", 150) is None
    assert idx.earliest("b") == 200 and idx.earliest("other") == 50


def test_a_later_put_moves_a_job_and_a_row_in_another_state_drops_it() -> None:
    idx = DueIndex()
    idx.put("b", "j1", 100)
    idx.put("b", "j1", 500)  # rescheduled
    assert idx.pop_due("b", 200) is None and idx.earliest("b") == 500
    idx.apply({"_id": "j1", "batch_id": "b", "state": "in_flight", "next_try_ms": 500}, WAITING)
    assert idx.earliest("b") is None and len(idx) == 0
    idx.apply({"_id": "j1", "batch_id": "b", "state": "retry_scheduled", "next_try_ms": 700}, WAITING)
    assert idx.pop_due("b", 700) == "j1"


def test_drop_batch_forgets_only_that_batch() -> None:
    idx = DueIndex()
    idx.put("a", "j1", 1)
    idx.put("b", "j2", 1)
    idx.drop_batch("a")
    assert idx.earliest("a") is None and idx.pop_due("b", 1) == "j2"


@given(st.lists(st.tuples(st.sampled_from(["b1", "b2"]), st.integers(0, 20), st.integers(0, 1000),
                          st.booleans()), max_size=80), st.integers(0, 1000))
def test_matches_a_plain_dict_model(ops: list[tuple[str, int, int, bool]], now: int) -> None:
    """Whatever the order of puts and discards, the index pops exactly the jobs a dict says are due,
    each once, earliest first."""
    idx, model = DueIndex(), {}
    for batch, job, at, keep in ops:
        key = f"j{job}"
        if keep:
            idx.put(batch, key, at)
            model[key] = (batch, at)
        else:
            idx.discard(key)
            model.pop(key, None)
    for batch in ("b1", "b2"):
        popped = []
        while (got := idx.pop_due(batch, now)) is not None:
            popped.append(got)
        due = sorted((at, k) for k, (b, at) in model.items() if b == batch and at <= now)
        assert [model[k][1] for k in popped] == [at for at, _ in due]
        assert sorted(popped) == sorted(k for _, k in due)
