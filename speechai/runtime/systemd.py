"""sd_notify over the documented datagram protocol; a no-op when not started by systemd."""

from __future__ import annotations

import os
import socket


def notify(state: str) -> bool:
    """Send e.g. ``READY=1``, ``WATCHDOG=1`` or ``STOPPING=1``; False when not under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace socket
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.connect(address)
        sock.sendall(state.encode())
    return True


def supervised() -> bool:
    """True when a service manager listens for our notifications (a ``Type=notify`` unit)."""
    return bool(os.environ.get("NOTIFY_SOCKET"))


def watchdog_interval_s() -> float | None:
    """Half the watchdog timeout systemd asked for, or None when there is no watchdog."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and int(pid) != os.getpid()):
        return None
    return int(usec) / 2_000_000


# While waiting, each STATUS also pushes systemd's start timeout (TimeoutStartSec=) past the next
# attempt, which may itself take this long beyond its back-off delay.
ATTEMPT_MARGIN_S = 60.0


def waiting_status(what: str, attempt: int, next_in_s: float) -> str:
    """``STATUS=waiting for <what> (attempt N, next in X s)`` plus the start-timeout extension that keeps
    a notify service in "activating" instead of being killed for not sending READY=1 in time."""
    extend_usec = int((next_in_s + ATTEMPT_MARGIN_S) * 1_000_000)
    return f"STATUS=waiting for {what} (attempt {attempt}, next in {next_in_s:g} s)\nEXTEND_TIMEOUT_USEC={extend_usec}"
