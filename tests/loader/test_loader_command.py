"""``speechai load``: the configured batches, loaded and summarised."""

import io
import uuid
from pathlib import Path

from loader_data import COLLECTION, RUT_A, RUT_B

from speechai.config import Config
from speechai.domain.settings import CallSettings
from speechai.loader.command import load_configured
from speechai.loader.progress import TextProgress
from speechai.loader.spec import BatchSource
from speechai.store.db import connect
from speechai.store.models import Batch


async def test_load_configured_batches(mongo_uri: str, make_file, tmp_path: Path) -> None:
    good = make_file(COLLECTION, [[RUT_A, "Ana", 991975219, 1000, None], [RUT_B, "Luis", 981234567, 5, None]])
    bad = make_file(COLLECTION, [[RUT_A, "Ana", 991975219, "mucho", None]], kind="csv")
    dbname = f"t_{uuid.uuid4().hex[:10]}"
    config = Config(
        data_dir=tmp_path / "var", mongo={"uri": mongo_uri, "database": dbname},
        call_settings=CallSettings(max_attempts=2),
        batches=[BatchSource(file=good, account="acme", batch_id="good"),
                 BatchSource(file=bad, account="acme", batch_id="bad")],
    )
    out = io.StringIO()
    assert await load_configured(config, out=out) == 1
    text = out.getvalue()
    assert "batch good (collection): loaded" in text and "jobs created 2" in text
    assert "batch bad (collection): NOT loaded" in text and "row 2 [MONTO] 'mucho': bad_amount" in text
    assert "report: " in text
    client = await connect(mongo_uri, dbname)  # the command closed its own client
    good_batch = await Batch.get("good")
    assert good_batch.call_settings.max_attempts == 2  # config default applies when the batch sets none
    assert await Batch.get("bad") is None
    out = io.StringIO()
    assert await load_configured(config, only="good", out=out) == 0
    assert "jobs created 0, already in batch 2" in out.getvalue()
    await client.drop_database(dbname)
    await client.close()


def test_text_progress_bar() -> None:
    stream = io.StringIO()
    bar = TextProgress("loading b1", total=100, stream=stream, min_interval_s=0)
    bar(50)
    bar(100)
    bar.done()
    assert "[###############               ] 50/100 rows" in stream.getvalue()
    assert stream.getvalue().endswith("100/100 rows" + stream.getvalue().split("100/100 rows")[-1])
