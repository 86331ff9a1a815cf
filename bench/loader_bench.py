"""Loader benchmark: a generated wide collection export (45 columns, ~100,000 instalment rows).

Measures, each run in its own process so peak memory (max RSS) is not shared, the median of ``--runs``:
  parse           the loader's read (its default reader, calamine) + validation + grouping, no database;
  pandas          ``pandas.read_excel`` of the same file (reading only: no validation, no grouping);
  parse-openpyxl  (``--openpyxl``) the loader with the streaming openpyxl reader;
  load            (``--load``) the full ``load_batch`` into the embedded nx-27017 server (a separate process,
                  not counted).

    .venv/bin/python bench/loader_bench.py [--rows 100000] [--runs 3] [--dir /tmp/loader-bench]

Needs the ``bench`` extra (pandas) for the comparison. Prints one JSON line per run, then a table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

_LABELS = {"parse": "loader: read + validate + group (`parse_file`, calamine)",
           "parse-openpyxl": "loader with the openpyxl reader",
           "pandas": "`pandas.read_excel` (read only; no validation, no grouping)",
           "load": "loader: full `load_batch` into the embedded server"}


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def generate(path: Path, rows: int) -> int:
    from speechai.loader.synthetic import WIDE_HEADERS, wide_collection_rows, write_xlsx

    people = rows // 2  # 1-3 instalments each, 2 on average
    count = 0

    def counted():
        nonlocal count
        for row in wide_collection_rows(people):
            count += 1
            yield row

    write_xlsx(path, WIDE_HEADERS, counted())
    return count


def measure(kind: str, path: Path) -> dict[str, object]:
    from speechai.loader.spec import BatchSource

    base = _rss_mib()
    source = BatchSource(file=path, account="bench", batch_id="bench-1")
    t0 = time.perf_counter()
    out: dict[str, object] = {}
    if kind.startswith("parse"):
        from speechai.loader.reader import DEFAULT_READER
        from speechai.loader.service import parse_file

        result = parse_file(source, reader=kind.partition("-")[2] or DEFAULT_READER)
        out = {"rows": result.rows, "people": len(result.people), "rejected": len(result.errors)}
    elif kind == "pandas":
        import pandas as pd

        frame = pd.read_excel(path, engine="openpyxl")
        out = {"rows": len(frame)}
    elif kind == "load":
        import anyio

        from speechai.loader.service import load_batch
        from speechai.store.db import connect
        from speechai.store.embedded import EmbeddedMongo

        with tempfile.TemporaryDirectory() as tmp, EmbeddedMongo(Path(tmp)) as server:
            async def run() -> dict[str, object]:
                client = await connect(server.uri, "bench")
                t = time.perf_counter()
                summary = await load_batch(source, now=datetime(2026, 3, 2, 12, tzinfo=UTC),
                                           report_dir=Path(tmp) / "reports")
                await client.close()
                return {"rows": summary.rows, "people": summary.people, "jobs": summary.jobs_created,
                        "load_s": time.perf_counter() - t}

            out = anyio.run(run)
            t0 = time.perf_counter() - float(out.pop("load_s"))  # exclude the server's start-up
    seconds = time.perf_counter() - t0
    out.update(kind=kind, seconds=round(seconds, 2), rows_per_s=round(int(out["rows"]) / seconds),
               peak_rss_mib=round(_rss_mib(), 1), baseline_rss_mib=round(base, 1))
    return out


def _run(kind: str, path: Path) -> dict[str, object] | None:
    proc = subprocess.run([sys.executable, __file__, "--measure", kind, "--file", str(path)],
                          capture_output=True, text=True, check=False)
    if proc.returncode:
        print(f"{kind}: failed\n{proc.stderr[-2000:]}", flush=True)
        return None
    print(proc.stdout.strip(), flush=True)
    return json.loads(proc.stdout)


def _table(results: dict[str, list[dict[str, object]]]) -> None:
    medians = {kind: {key: statistics.median(float(r[key]) for r in runs)
                      for key in ("seconds", "rows_per_s", "peak_rss_mib")}
               for kind, runs in results.items() if runs}
    print("\n| step | time | rows/s | peak RSS |\n| --- | --- | --- | --- |")
    for kind, m in medians.items():
        print(f"| {_LABELS[kind]} | {m['seconds']:.1f} s | {m['rows_per_s']:,.0f} | {m['peak_rss_mib']:.0f} MiB |")
    if "parse" in medians and "pandas" in medians:
        loader, pandas = medians["parse"], medians["pandas"]
        print(f"\nloader vs pandas: {loader['rows_per_s'] / pandas['rows_per_s']:.1f}x the rows/s, "
              f"{loader['peak_rss_mib'] / pandas['peak_rss_mib']:.2f}x the peak RSS")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3, help="runs of each step; the table shows the median")
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "loader-bench")
    ap.add_argument("--openpyxl", action="store_true", help="also the loader with the openpyxl reader")
    ap.add_argument("--load", action="store_true", help="also the full load into the embedded server")
    ap.add_argument("--measure", choices=sorted(_LABELS))
    ap.add_argument("--file", type=Path)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.file)))
        return
    from importlib.metadata import version
    print(f"python {sys.version.split()[0]}, python-calamine {version('python-calamine')}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    args.dir.mkdir(parents=True, exist_ok=True)
    path = args.dir / f"wide-{args.rows}-sst.xlsx"  # shared strings, as Excel writes (older files: inline)
    if not path.exists():
        t = time.perf_counter()
        n = generate(path, args.rows)
        print(f"generated {path} ({n} rows, {path.stat().st_size / 2**20:.1f} MiB) "
              f"in {time.perf_counter() - t:.1f}s", flush=True)
    kinds = ["parse", "pandas"] + ["parse-openpyxl"] * args.openpyxl + ["load"] * args.load
    results: dict[str, list[dict[str, object]]] = {kind: [] for kind in kinds}
    for _ in range(args.runs):  # interleaved, so a busy spell of the machine hits every step alike
        for kind in kinds:
            if (out := _run(kind, path)) is not None:
                results[kind].append(out)
    _table(results)


if __name__ == "__main__":
    main()
