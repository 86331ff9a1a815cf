"""A one-level supervisor: runs children in one task group, isolates their failures, restarts them.

A child is an ``async`` callable. Its exception is caught by the supervisor, so it never cancels a
sibling or the supervisor; the child is then restarted according to its policy after a backoff
delay. A child that needs more than ``max_restarts`` restarts within ``within`` seconds is given up.
Backoff and the restart window are real time: they protect the process, not business rules.

``on_exit(name, exc)`` is called exactly once, when a child ends for good: with the exception that
ended it (a crash not restarted; on give-up, the last one seen), or ``None`` (normal end, stopped,
or cancelled).

Leaving ``async with Supervisor(...)`` normally waits for the children (call ``shutdown`` first to
end permanent ones); leaving it by an exception cancels them, waits, and re-raises that exception.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType, TracebackType
from typing import Any, Protocol

import anyio
import structlog
from anyio.abc import TaskGroup

OnExit = Callable[[str, BaseException | None], None]


class Logger(Protocol):
    def info(self, event: str, **kw: Any) -> Any: ...
    def warning(self, event: str, **kw: Any) -> Any: ...
    def error(self, event: str, **kw: Any) -> Any: ...


class RestartPolicy(StrEnum):
    PERMANENT = "permanent"  # always restart
    TRANSIENT = "transient"  # restart only after an exception
    TEMPORARY = "temporary"  # never restart


@dataclass(frozen=True)
class Backoff:
    """Delay in real seconds before a restart: ``initial * factor**restarts``, capped at ``maximum``."""

    initial: float = 0.1
    factor: float = 2.0
    maximum: float = 30.0

    def delay(self, restarts: int) -> float:
        try:
            return min(self.maximum, self.initial * self.factor ** max(0, restarts))
        except OverflowError:
            return self.maximum


class ChildHandle:
    """Live view of one child. ``restarts`` counts all restarts; ``running`` is False once it ended."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.restarts = 0
        self.running = True
        self.last_error: BaseException | None = None
        self._scope = anyio.CancelScope()
        self._stopped = False
        self._finished = anyio.Event()

    def cancel(self) -> None:
        """Stop this child for good (no restart); it ends at its next checkpoint."""
        self._stopped = True
        self._scope.cancel()

    async def wait(self) -> None:
        """Wait until the child has ended for good."""
        await self._finished.wait()

    def __repr__(self) -> str:
        return f"ChildHandle({self.name!r}, restarts={self.restarts}, running={self.running})"


class Supervisor:
    def __init__(
        self,
        name: str,
        *,
        max_restarts: int = 10,
        within: float = 60.0,
        logger: Logger | None = None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_restarts < 0 or within <= 0:
            raise ValueError("max_restarts must be >= 0 and within > 0")
        self.name = name
        self.max_restarts = max_restarts
        self.within = within
        self._log: Logger = logger if logger is not None else structlog.get_logger("actors")
        # Injectable so tests can observe backoff delays and restart windows without waiting.
        self._sleep = sleep
        self._monotonic = monotonic
        self._children: dict[str, ChildHandle] = {}
        self._tg: TaskGroup | None = None
        self._closing = False

    async def __aenter__(self) -> Supervisor:
        if self._tg is not None:
            raise RuntimeError(f"supervisor {self.name!r} already entered")
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._tg is not None
        try:
            if isinstance(exc, Exception):
                # Cancel the children and wait for them, then let the body's own exception propagate
                # as raised instead of wrapped in an ExceptionGroup by the task group.
                self._closing = True
                self._tg.cancel_scope.cancel()
                await self._tg.__aexit__(None, None, None)
                return False
            # Normal exit waits for every child; cancellation and BaseExceptions take the usual path.
            return await self._tg.__aexit__(exc_type, exc, tb)
        finally:
            self._closing = True

    @property
    def children(self) -> Mapping[str, ChildHandle]:
        """Children that have not ended for good, by name."""
        return MappingProxyType(self._children)

    def start_child(
        self,
        name: str,
        target: Callable[[], Awaitable[None]],
        *,
        policy: RestartPolicy = RestartPolicy.PERMANENT,
        backoff: Backoff = Backoff(),
        on_exit: OnExit | None = None,
    ) -> ChildHandle:
        if self._tg is None or self._closing:
            raise RuntimeError(f"supervisor {self.name!r} is not running")
        if name in self._children:
            raise ValueError(f"child {name!r} already running under {self.name!r}")
        handle = ChildHandle(name)
        self._children[name] = handle
        self._tg.start_soon(self._run_child, handle, target, policy, backoff, on_exit, name=name)
        return handle

    def stop_child(self, name: str) -> None:
        """Cancel one child without restarting it; unknown names are ignored (it may just have ended)."""
        if (handle := self._children.get(name)) is not None:
            handle.cancel()

    async def shutdown(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 - bounded grace period
        """Cancel every child and wait for them to end (up to ``timeout`` real seconds).

        No child can be started afterwards. Children still ending after the timeout (e.g. finishing
        shielded cleanup) are logged; the supervisor's exit still waits for them.
        """
        self._closing = True
        handles = list(self._children.values())
        for handle in handles:
            handle.cancel()
        with anyio.move_on_after(timeout):
            for handle in handles:
                await handle.wait()
            return
        self._log.warning(
            "supervisor_shutdown_timeout",
            supervisor=self.name,
            pending=[h.name for h in handles if h.running],
        )

    async def _run_child(
        self,
        handle: ChildHandle,
        target: Callable[[], Awaitable[None]],
        policy: RestartPolicy,
        backoff: Backoff,
        on_exit: OnExit | None,
    ) -> None:
        final: BaseException | None = None
        try:
            with handle._scope:
                final = await self._supervise(handle, target, policy, backoff)
        finally:
            handle.running = False
            if self._children.get(handle.name) is handle:
                del self._children[handle.name]
            handle._finished.set()
            if on_exit is not None:
                try:
                    on_exit(handle.name, final)
                except Exception as exc:
                    self._log.error(
                        "child_on_exit_failed", supervisor=self.name, child=handle.name, error=repr(exc)
                    )

    async def _supervise(
        self,
        handle: ChildHandle,
        target: Callable[[], Awaitable[None]],
        policy: RestartPolicy,
        backoff: Backoff,
    ) -> BaseException | None:
        """Run ``target`` until it ends for good; return the exception that ended it, if any."""
        recent: deque[float] = deque()  # monotonic times of restarts inside the window
        while True:
            error: BaseException | None = None
            try:
                await target()
            except Exception as exc:
                error = exc
                handle.last_error = exc
            if handle._stopped:
                # The child swallowed the stop request's cancellation; honour the stop anyway.
                return None
            if error is not None:
                self._log.warning(
                    "child_crashed",
                    supervisor=self.name,
                    child=handle.name,
                    error=repr(error),
                    exc_info=error,
                )
            if policy is RestartPolicy.TEMPORARY or (policy is RestartPolicy.TRANSIENT and error is None):
                return error

            now = self._monotonic()
            while recent and now - recent[0] > self.within:
                recent.popleft()
            if len(recent) >= self.max_restarts:
                self._log.error(
                    "child_gave_up",
                    supervisor=self.name,
                    child=handle.name,
                    restarts=len(recent),
                    within=self.within,
                    error=repr(handle.last_error),
                )
                return handle.last_error
            delay = backoff.delay(len(recent))
            recent.append(now)
            handle.restarts += 1
            self._log.info(
                "child_restarting",
                supervisor=self.name,
                child=handle.name,
                restarts=handle.restarts,
                delay=delay,
            )
            await self._sleep(delay)
