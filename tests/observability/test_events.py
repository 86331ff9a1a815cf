"""The structlog tap: subscribers hear logged events (also from loggers bound before it was installed),
the live feed masks personal data, and a broken subscriber never breaks logging."""

from __future__ import annotations

import gc

import structlog

from speechai.observability import events


class Collect:
    def __init__(self) -> None:
        self.seen: list[dict] = []

    def on_event(self, event: dict) -> None:
        self.seen.append(event)


class Broken:
    def on_event(self, event: dict) -> None:
        raise RuntimeError("subscriber bug")


def test_bound_before_install_still_feeds_the_tap(capsys) -> None:
    bound = structlog.get_logger("speechai").bind(instance="i-1")  # like rt.log, bound at start-up
    bound.info("warm_up")
    sink, broken = Collect(), Broken()
    events.subscribe(broken)
    events.subscribe(sink)
    bound.info("call_finished", outcome="conversation", phone="+56987654321", name="María José")
    assert [e["event"] for e in sink.seen] == ["call_finished"]
    event = sink.seen[0]
    assert event["instance"] == "i-1" and event["outcome"] == "conversation" and event["level"] == "info"
    shown = events.public_event(event)
    assert shown["phone"] == "+56*****4321" and shown["name"] == "M*** J***"
    assert "call_finished" in capsys.readouterr().out  # the log line itself was still written
    events.install()  # idempotent
    assert sum(p is events.tap for p in structlog.get_config()["processors"]) == 1
    events.unsubscribe(sink)
    bound.info("after")
    assert len(sink.seen) == 1


def test_subscribers_are_held_weakly() -> None:
    sink = Collect()
    events.subscribe(sink)
    del sink
    gc.collect()
    assert not any(isinstance(s, Collect) for s in list(events._subscribers))
