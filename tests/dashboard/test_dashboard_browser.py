"""The dashboard in a real browser (Playwright driving Debian's chromium) during a running campaign:
sign in, watch the counts move by Server-Sent Events, pause a batch from the page, find a job."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import aiohttp
import pytest

from actors.clock import SimClock
from speechai.retell.simulator import RetellSimulator
from speechai.store.models import Account, Batch, BatchStatus, Job
from tests.reports.campaign import MONDAY_0850, SETTINGS
from tests.runtime.harness import API_KEY, Person, make_config, script, seed_batch
from tests.runtime.test_policy_e2e import TOKEN, drive

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
ROOT = Path(__file__).resolve().parents[2]
DOCS_SHOT = ROOT / "docs" / "dashboard.png"
ARTIFACTS = ROOT / "test-artifacts"  # gitignored: where CI picks up the screenshot
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="chromium is not installed (.ci/run installs it)")
OUTCOMES = (["success"], ["no_answer", "success"], ["answered", "answered"], ["voicemail", "success"])


def people(prefix: str, n: int) -> list[Person]:
    return [Person([f"+569{prefix}{i:06d}"], {f"+569{prefix}{i:06d}": list(OUTCOMES[i % len(OUTCOMES)])},
                   name=f"Persona {prefix}{i}") for i in range(n)]


def keep_screenshot(shot: Path) -> None:
    """The screenshot stays with the test's files and in ``test-artifacts/`` (a stable place to collect
    it from); SPEECHAI_UPDATE_SCREENSHOT=1 also refreshes the README's picture (a test run never changes
    the tracked source tree otherwise)."""
    assert shot.stat().st_size > 10_000
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copyfile(shot, ARTIFACTS / "dashboard.png")
    if os.environ.get("SPEECHAI_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(shot, DOCS_SHOT)


async def test_dashboard_live(db, mongo_uri, tmp_path, monkeypatch) -> None:
    playwright = pytest.importorskip("playwright.async_api")
    monkeypatch.setenv("SPEECHAI_CONTROL_TOKEN", TOKEN)
    clock = SimClock(MONDAY_0850, speed=40)
    await Account(id="acme", max_concurrent_calls=2).insert()  # two at a time: the campaign takes a while
    first, second = people("10", 10), people("20", 10)
    [job, *_] = await seed_batch("b1", first, SETTINGS, MONDAY_0850)
    await seed_batch("b2", second, SETTINGS, MONDAY_0850)

    async def body(instance, http: aiohttp.ClientSession, base: str) -> None:
        async with playwright.async_playwright() as p:
            browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 900})
                await page.goto(f"{base}/")
                # wrong key first: refused on the page, nothing stored
                await page.get_by_label("API key").fill("not-the-key")
                await page.get_by_label("API key").press("Enter")
                await page.get_by_text("Wrong key.").wait_for()
                # keyboard only: the field has focus after loading, Enter submits
                await page.get_by_label("API key").fill(TOKEN)
                await page.keyboard.press("Enter")
                row1 = page.locator('tr[data-batch="b1"]')
                await row1.wait_for()
                assert await page.evaluate("sessionStorage.getItem('speechai-token')") == TOKEN
                done_now = int((await row1.locator('[data-role="progress"]').inner_text()).split(" / ")[0])
                # counts move without a reload, fed by the event stream
                await page.wait_for_function(
                    """n => { const el = document.querySelector('tr[data-batch="b1"] [data-role="progress"]');
                              return el && parseInt(el.textContent) > n; }""", arg=done_now, timeout=20000)
                await page.locator("#feed li", has_text="call_finished").first.wait_for(timeout=10000)
                assert await page.locator("#conn").inner_text() == "live"

                await page.get_by_role("button", name="Pause batch b2").click()
                await page.locator('tr[data-batch="b2"] [data-role="status"]', has_text="paused").wait_for()
                stored = await Batch.get("b2")
                assert stored.status == BatchStatus.PAUSED and stored.status_reason.startswith("paused by operator")
                assert await page.get_by_role("button", name="Resume batch b2").is_visible()
                await page.get_by_role("button", name="Resume batch b2").click()
                await page.locator('tr[data-batch="b2"] [data-role="status"]', has_text="active").wait_for()
                assert (await Batch.get("b2")).status == BatchStatus.ACTIVE
                # cancel asks first: dismissed, nothing changes; accepted, the batch is cancelled for good
                page.once("dialog", lambda d: asyncio.ensure_future(d.dismiss()))
                await page.get_by_role("button", name="Cancel batch b2").click()
                await page.get_by_role("button", name="Pause batch b2").wait_for()
                assert (await Batch.get("b2")).status == BatchStatus.ACTIVE
                page.once("dialog", lambda d: asyncio.ensure_future(d.accept()))
                await page.get_by_role("button", name="Cancel batch b2").click()
                await page.locator('tr[data-batch="b2"] [data-role="status"]', has_text="cancelled").wait_for()
                assert (await Batch.get("b2")).status == BatchStatus.CANCELLED
                assert await page.get_by_role("button", name="Resume batch b2").count() == 0

                await page.get_by_label("Job id").fill(str(job.id))
                await page.get_by_label("Job id").press("Enter")
                state = await page.locator('[data-role="job-state"]').inner_text()
                assert state in {"pending", "in_flight", "retry_scheduled", "done", "failed"}
                await page.wait_for_function("Number(document.getElementById('calls').textContent) > 0",
                                             timeout=15000)
                # the headline figures are live: they match the stored attempts as the page shows them
                await page.wait_for_function(
                    "document.getElementById('cost').textContent.startsWith('$') && "
                    "document.getElementById('cost').textContent !== '$0.00' && "
                    "document.getElementById('outcomes').textContent.includes('conversation')", timeout=20000)
                shown = await page.evaluate("""async () => {
                    const r = await fetch('/dashboard/summary', {headers: {Authorization: 'Bearer ' +
                        sessionStorage.getItem('speechai-token')}});
                    return await r.json(); }""")
                stored = [a async for j in Job.find({}) for a in j.attempts if a.placed]
                finished = [a for a in stored if a.outcome is not None]
                assert shown["totals"]["calls"] <= len(stored) and shown["totals"]["finished"] <= len(finished)
                # figures read no later than the stored ones: none may be ahead of the database
                assert shown["totals"]["finished"] >= 1 and shown["outcomes"].get("conversation", 0) >= 1
                cost_text = await page.locator("#cost").inner_text()
                assert float(cost_text.lstrip("$")) > 0
                shot = tmp_path / "dashboard.png"
                await page.screenshot(path=str(shot), full_page=True)
                keep_screenshot(shot)
            finally:
                await browser.close()

    async with RetellSimulator(api_key=API_KEY, clock=clock, seed=5, ring_s=5,
                               talk_s={"success": 90, "answered": 60, "voicemail": 20}) as sim:
        script(sim, first + second)
        await drive(db, make_config(db, mongo_uri, tmp_path), clock, sim, body, within=60)
