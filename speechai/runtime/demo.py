"""The one-command demo: configured batches, embedded database, simulator, fast clock, live progress."""

from __future__ import annotations

import sys
import time

import anyio

from actors.clock import Clock
from speechai.config import Config
from speechai.loader.service import load_batch
from speechai.runtime.report import progress_line, summarize
from speechai.runtime.service import Instance, control_token, run_instance


async def run_demo(config: Config) -> int:
    batch_ids = [b.batch_id for b in config.batches]
    holder: dict[str, Instance | bool] = {}
    started = time.monotonic()

    async def prepare(clock: Clock) -> None:
        for source in config.batches:
            summary = await load_batch(source, now=clock.now(), report_dir=config.data_dir / "reports")
            print(f"loaded {source.batch_id}: {summary.people} people, {summary.jobs_created} jobs, "
                  f"{len(summary.rejected)} rejected rows", flush=True)

    async def progress() -> None:
        while "done" not in holder:
            await anyio.sleep(1.0)
            if "i" in holder and "done" not in holder:
                instance = holder["i"]
                assert isinstance(instance, Instance)
                clock = instance.rt.clock
                s = await summarize(batch_ids)
                line = progress_line(s, clock.now().astimezone(config.call_settings.tz).strftime("%a %d %b %H:%M"))
                print("\r" + line.ljust(110), end="", file=sys.stdout, flush=True)

    async def finish() -> None:
        holder["done"] = True  # no more progress queries: the database closes after this
        await print_summary(batch_ids, time.monotonic() - started)

    def ready(instance: Instance) -> None:
        holder["i"] = instance
        # Where to watch it: the dashboard asks for this key (the demo's own admin token).
        print(f"dashboard: http://{config.control.host}:{instance.api.port}/  "
              f"key: {control_token(config.data_dir)}", flush=True)

    async with anyio.create_task_group() as tg:
        tg.start_soon(progress)
        await run_instance(config, until_done=True, prepare=prepare, on_ready=ready, handle_signals=True,
                           on_stopped=finish)
        tg.cancel_scope.cancel()
    return 0


async def print_summary(batch_ids: list[str], elapsed: float) -> None:
    s = await summarize(batch_ids)
    print(f"\ncampaign finished in {elapsed:.0f} s real time\n{s.render()}\n"
          "full report: speechai report --format xlsx (or --format terminal)")
