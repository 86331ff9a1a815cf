"""Supervisor: failure isolation, restart policies, backoff, give-up, stop and shutdown."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest

from actors import Backoff, RestartPolicy, Supervisor

FAST = Backoff(initial=0.001, factor=2.0, maximum=0.01)


class RecordingLogger:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def _record(self, level: str, event: str, **kw: Any) -> None:
        self.events.append((level, event, kw))

    def info(self, event: str, **kw: Any) -> None:
        self._record("info", event, **kw)

    def warning(self, event: str, **kw: Any) -> None:
        self._record("warning", event, **kw)

    def error(self, event: str, **kw: Any) -> None:
        self._record("error", event, **kw)

    def names(self, level: str) -> list[str]:
        return [e for lvl, e, _ in self.events if lvl == level]


class Exits:
    """Collects on_exit calls and lets a test wait for one."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, BaseException | None]] = []
        self._changed = anyio.Event()

    def __call__(self, name: str, exc: BaseException | None) -> None:
        self.calls.append((name, exc))
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, count: int) -> None:
        while len(self.calls) < count:
            await self._changed.wait()


def crashing(
    counter: list[int], *, times: int | None = None, settled: anyio.Event | None = None
) -> Callable[[], Any]:
    """A target that raises on each run (the first ``times`` runs), then blocks forever."""

    async def run() -> None:
        counter.append(1)
        if times is None or len(counter) <= times:
            raise RuntimeError(f"crash {len(counter)}")
        if settled is not None:
            settled.set()
        await anyio.sleep_forever()

    return run


async def test_crash_does_not_cancel_sibling() -> None:
    exits = Exits()
    sibling_done = anyio.Event()
    release = anyio.Event()

    async def sibling() -> None:
        await release.wait()
        sibling_done.set()

    with anyio.fail_after(1):
        async with Supervisor("root", logger=RecordingLogger()) as sup:
            sup.start_child("steady", sibling, policy=RestartPolicy.TRANSIENT, on_exit=exits)
            sup.start_child("flaky", crashing([]), policy=RestartPolicy.TEMPORARY, on_exit=exits)
            await exits.wait_for(1)
            assert exits.calls[0][0] == "flaky"
            assert sup.children["steady"].running
            release.set()
    assert sibling_done.is_set()
    assert exits.calls[1] == ("steady", None)
    assert sup.children == {}


async def test_permanent_restarts_after_normal_return() -> None:
    runs: list[int] = []
    third_run = anyio.Event()

    async def target() -> None:
        runs.append(1)
        if len(runs) >= 3:
            third_run.set()
            await anyio.sleep_forever()

    with anyio.fail_after(1):
        async with Supervisor("root", logger=RecordingLogger()) as sup:
            handle = sup.start_child("p", target, backoff=FAST)
            await third_run.wait()
            assert handle.restarts == 2 and handle.running
            assert handle.last_error is None
            await sup.shutdown()
    assert len(runs) == 3 and not handle.running


async def test_transient_restarts_on_crash_only() -> None:
    exits = Exits()
    runs: list[int] = []

    async def target() -> None:
        runs.append(1)
        if len(runs) <= 2:
            raise RuntimeError("boom")

    with anyio.fail_after(1):
        async with Supervisor("root", logger=RecordingLogger()) as sup:
            handle = sup.start_child("t", target, policy=RestartPolicy.TRANSIENT, backoff=FAST, on_exit=exits)
    assert len(runs) == 3  # two crashes restarted, then a normal end is final
    assert handle.restarts == 2
    assert isinstance(handle.last_error, RuntimeError)
    assert exits.calls == [("t", None)]


async def test_temporary_never_restarts() -> None:
    exits = Exits()
    runs: list[int] = []
    logger = RecordingLogger()
    with anyio.fail_after(1):
        async with Supervisor("root", logger=logger) as sup:
            handle = sup.start_child(
                "tmp", crashing(runs), policy=RestartPolicy.TEMPORARY, backoff=FAST, on_exit=exits
            )
    assert runs == [1] and handle.restarts == 0
    [(name, exc)] = exits.calls
    assert name == "tmp" and isinstance(exc, RuntimeError)
    assert logger.names("warning") == ["child_crashed"]


async def test_backoff_grows_then_gives_up() -> None:
    delays: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        delays.append(seconds)
        await anyio.lowlevel.checkpoint()

    exits = Exits()
    runs: list[int] = []
    logger = RecordingLogger()
    with anyio.fail_after(1):
        async with Supervisor("root", max_restarts=4, within=60, logger=logger, sleep=fake_sleep) as sup:
            handle = sup.start_child("c", crashing(runs), backoff=Backoff(0.1, 2.0, 0.5), on_exit=exits)
    assert delays == [0.1, 0.2, 0.4, 0.5]
    assert len(runs) == 5 and handle.restarts == 4 and not handle.running
    [(name, exc)] = exits.calls
    assert name == "c" and str(exc) == "crash 5"
    assert logger.names("error") == ["child_gave_up"]


async def test_give_up_with_real_sleep() -> None:
    exits = Exits()
    runs: list[int] = []
    with anyio.fail_after(1):
        async with Supervisor("root", max_restarts=3, logger=RecordingLogger()) as sup:
            sup.start_child("c", crashing(runs), backoff=FAST, on_exit=exits)
    assert len(runs) == 4
    assert isinstance(exits.calls[0][1], RuntimeError)


async def test_restarts_spread_beyond_window_never_give_up() -> None:
    ticks = iter(range(0, 10_000, 100))  # each restart is 100 s after the previous one

    async def no_sleep(_: float) -> None:
        await anyio.lowlevel.checkpoint()

    runs: list[int] = []
    settled = anyio.Event()
    with anyio.fail_after(1):
        async with Supervisor(
            "root",
            max_restarts=1,
            within=60,
            logger=RecordingLogger(),
            sleep=no_sleep,
            monotonic=lambda: float(next(ticks)),
        ) as sup:
            handle = sup.start_child("c", crashing(runs, times=6, settled=settled))
            await settled.wait()
            assert handle.running and handle.restarts == 6
            await sup.shutdown()


def test_backoff_delay() -> None:
    b = Backoff(initial=0.5, factor=3.0, maximum=10.0)
    assert [b.delay(n) for n in range(5)] == [0.5, 1.5, 4.5, 10.0, 10.0]
    assert b.delay(10_000) == 10.0


async def test_stop_child_is_final_and_frees_name() -> None:
    exits = Exits()
    cleaned = anyio.Event()

    async def worker() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            cleaned.set()

    with anyio.fail_after(1):
        async with Supervisor("root", logger=RecordingLogger()) as sup:
            sup.start_child("w", worker, on_exit=exits)
            with pytest.raises(ValueError):
                sup.start_child("w", worker)
            await anyio.wait_all_tasks_blocked()
            sup.stop_child("w")
            await exits.wait_for(1)
            assert cleaned.is_set()
            assert "w" not in sup.children
            again = sup.start_child("w", worker)
            again.cancel()
            await again.wait()
            sup.stop_child("unknown")  # ignored
    assert exits.calls == [("w", None)]


async def test_stop_during_backoff() -> None:
    exits = Exits()
    runs: list[int] = []
    backing_off = anyio.Event()

    async def real_sleep(seconds: float) -> None:
        backing_off.set()
        await anyio.sleep(seconds)

    with anyio.fail_after(1):
        async with Supervisor("root", logger=RecordingLogger(), sleep=real_sleep) as sup:
            handle = sup.start_child("c", crashing(runs), backoff=Backoff(initial=30), on_exit=exits)
            await backing_off.wait()
            assert handle.restarts == 1 and handle.running
            handle.cancel()
            await handle.wait()
    assert runs == [1]
    assert exits.calls == [("c", None)]


async def test_shutdown_cancels_all_and_refuses_new_children() -> None:
    exits = Exits()
    with anyio.fail_after(1):
        async with Supervisor("root", logger=RecordingLogger()) as sup:
            for name in ("a", "b", "c"):
                sup.start_child(name, anyio.sleep_forever, on_exit=exits)
            await anyio.wait_all_tasks_blocked()
            await sup.shutdown(timeout=0.5)
            assert sup.children == {}
            assert sorted(exits.calls, key=lambda c: c[0]) == [("a", None), ("b", None), ("c", None)]
            with pytest.raises(RuntimeError):
                sup.start_child("d", anyio.sleep_forever)


async def test_shutdown_timeout_logs_stragglers() -> None:
    logger = RecordingLogger()

    async def slow_cleanup() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0.2)

    with anyio.fail_after(1):
        async with Supervisor("root", logger=logger) as sup:
            handle = sup.start_child("slow", slow_cleanup)
            await anyio.wait_all_tasks_blocked()
            await sup.shutdown(timeout=0.02)
            assert handle.running  # shutdown returned while the child was still cleaning up
        assert not handle.running  # the supervisor's exit still waited for it
    [(level, _, kw)] = [e for e in logger.events if e[1] == "supervisor_shutdown_timeout"]
    assert level == "warning" and kw["pending"] == ["slow"]


async def test_body_exception_cancels_children_and_propagates_unwrapped() -> None:
    exits = Exits()
    with anyio.fail_after(1), pytest.raises(KeyError):
        async with Supervisor("root", logger=RecordingLogger()) as sup:
            sup.start_child("a", anyio.sleep_forever, on_exit=exits)
            await anyio.wait_all_tasks_blocked()
            raise KeyError("stop")
    assert exits.calls == [("a", None)]


async def test_outer_cancellation_reaches_children() -> None:
    exits = Exits()
    with anyio.fail_after(1):
        with anyio.move_on_after(0.05) as scope:
            async with Supervisor("root", logger=RecordingLogger()) as sup:
                sup.start_child("a", anyio.sleep_forever, on_exit=exits)
    assert scope.cancelled_caught
    assert exits.calls == [("a", None)]


async def test_failing_on_exit_is_logged_not_raised() -> None:
    logger = RecordingLogger()

    def bad_on_exit(name: str, exc: BaseException | None) -> None:
        raise RuntimeError("observer broke")

    async def done() -> None:
        return None

    with anyio.fail_after(1):
        async with Supervisor("root", logger=logger) as sup:
            sup.start_child("x", done, policy=RestartPolicy.TRANSIENT, on_exit=bad_on_exit)
    assert "child_on_exit_failed" in logger.names("error")


async def test_start_child_requires_running_supervisor() -> None:
    sup = Supervisor("idle", logger=RecordingLogger())
    with pytest.raises(RuntimeError):
        sup.start_child("x", anyio.sleep_forever)
    async with sup:
        pass
    with pytest.raises(RuntimeError):
        sup.start_child("x", anyio.sleep_forever)


async def test_default_logger_is_used_without_configuration() -> None:
    # The project's structlog logger must accept the supervisor's events as emitted.
    async def boom() -> None:
        raise RuntimeError("x")

    with anyio.fail_after(1):
        async with Supervisor("root") as sup:
            sup.start_child("x", boom, policy=RestartPolicy.TEMPORARY)
