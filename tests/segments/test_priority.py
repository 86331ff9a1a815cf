"""Within a batch, due jobs of a higher-priority segment are popped first (earliest first within one);
a job not yet due waits whatever its priority, and a release row without the priority keeps the last known."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from speechai.runtime.due_index import DueIndex

WAITING = {"pending", "retry_scheduled"}


def test_higher_priority_due_jobs_first() -> None:
    idx = DueIndex()
    idx.put("b", "low-early", 100, 0)
    idx.put("b", "high-late", 300, 90)
    idx.put("b", "mid", 200, 50)
    idx.put("b", "high-future", 900, 99)
    assert idx.earliest("b") == 100
    assert [idx.pop_due("b", 500) for _ in range(4)] == ["high-late", "mid", "low-early", None]
    assert idx.earliest("b") == 900 and idx.pop_due("b", 900) == "high-future"


def test_a_release_row_without_priority_keeps_the_known_one_and_a_new_one_replaces_it() -> None:
    idx = DueIndex()
    idx.apply({"_id": "a", "batch_id": "b", "state": "pending", "next_try_ms": 10, "priority": 80}, WAITING)
    idx.apply({"_id": "z", "batch_id": "b", "state": "pending", "next_try_ms": 5, "priority": 10}, WAITING)
    assert idx.pop_due("b", 10) == "a"  # claimed
    idx.apply({"_id": "a", "batch_id": "b", "state": "retry_scheduled", "next_try_ms": 20}, WAITING)  # released
    assert idx.pop_due("b", 20) == "a"
    idx.apply({"_id": "a", "batch_id": "b", "state": "pending", "next_try_ms": 20, "priority": 0}, WAITING)
    assert idx.pop_due("b", 20) == "z"  # re-segmented to a lower priority


def test_reprioritising_a_due_job_moves_it() -> None:
    idx = DueIndex()
    idx.put("b", "x", 10, 1)
    idx.put("b", "y", 10, 2)
    assert idx.pop_due("b", 5) is None
    idx.put("b", "x", 10, 3)
    assert idx.pop_due("b", 10) == "x" and idx.pop_due("b", 10) == "y" and len(idx) == 0


@given(st.lists(st.tuples(st.integers(0, 15), st.integers(0, 100), st.integers(0, 3), st.booleans()), max_size=60),
       st.integers(0, 100))
def test_matches_a_sorted_model(ops: list[tuple[int, int, int, bool]], now: int) -> None:
    idx, model = DueIndex(), {}
    for job, at, prio, keep in ops:
        key = f"j{job}"
        if keep:
            idx.put("b", key, at, prio)
            model[key] = (at, prio)
        else:
            idx.discard(key)
            model.pop(key, None)
    popped = []
    while (got := idx.pop_due("b", now)) is not None:
        popped.append(got)
    due = sorted((k for k, (at, _) in model.items() if at <= now), key=lambda k: (-model[k][1], model[k][0], k))
    assert popped == due
    rest = [at for at, _ in (model[k] for k in model if k not in due)]
    assert idx.earliest("b") == (min(rest) if rest else None)
