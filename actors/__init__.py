"""A small domain-free actor runtime on anyio: bounded mailboxes, supervision, clock-driven timers."""

from actors.actor import Actor
from actors.clock import Clock, RealClock, SimClock, utc
from actors.mailbox import ActorRef, Mailbox, MailboxClosed, Reply
from actors.supervisor import Backoff, ChildHandle, RestartPolicy, Supervisor
from actors.timers import Ticker, send_after

__all__ = [
    "Actor",
    "ActorRef",
    "Backoff",
    "ChildHandle",
    "Clock",
    "Mailbox",
    "MailboxClosed",
    "RealClock",
    "Reply",
    "RestartPolicy",
    "SimClock",
    "Supervisor",
    "Ticker",
    "send_after",
    "utc",
]
