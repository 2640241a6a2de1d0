"""Write docs/screenshot.svg: the app on the bundled Chinook, a question answered and run.

    .venv/bin/python bench/screenshot.py [--out docs/screenshot.svg]
    .venv/bin/python bench/screenshot.py --chart --out docs/chart.svg  # a total per group, charted
    .venv/bin/python bench/screenshot.py --question "How many customers are from Brazil?"

Drives the real app in Textual's pilot with the real default model (loading it takes ~30-60 s
on a 2-core CPU, from the cached checkpoint), as a user would: types the question, waits for
the SQL, presses ctrl+j, waits for the rows. History goes to a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

# The repository first: bench/tui.py would otherwise shadow the tui package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

QUESTION = "Which genre has the most tracks?"
CHART_QUESTION = "How many tracks does each genre have? Give the genre name and the count."
SIZE = (120, 36)


async def shoot(out: Path, question: str = QUESTION, chart: bool = False) -> None:
    from model.samples import CHINOOK
    from model.sqlite.db import Database
    from tui.app import GemmaSqlApp
    from tui.widgets.editor import SqlEditor

    database = Database.open(CHINOOK)
    app = GemmaSqlApp(database)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await app.workers.wait_for_complete()  # the model loads in a worker
            await pilot.pause()
            if app.engine is None:
                raise SystemExit(f"screenshot: {app.status.model_text}")
            await pilot.press("f3", *question, "enter")
            await app.workers.wait_for_complete()
            await pilot.pause()
            if not app.query_one(SqlEditor).text.strip():
                raise SystemExit("screenshot: the model wrote no SQL")
            await pilot.press("ctrl+j")
            await app.workers.wait_for_complete()
            await pilot.pause()
            if app.query_one("#results").row_count == 0:
                raise SystemExit("screenshot: the query returned no rows")
            if chart:
                await pilot.press("f4")
                await pilot.pause()
                if app.query_one("#results-area").current != "chart":
                    raise SystemExit(f"screenshot: {app.status.message}")
            out.parent.mkdir(parents=True, exist_ok=True)
            app.save_screenshot(out.name, str(out.parent))
    finally:
        database.close()
    print(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/screenshot.svg"))
    parser.add_argument("--chart", action="store_true",
                        help="show the rows as a chart (F4); the question defaults to a total "
                             "per group")
    parser.add_argument("--question", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        os.environ["GEMMA_SQL_DATA_DIR"] = data_dir  # keep the user's history untouched
        question = args.question or (CHART_QUESTION if args.chart else QUESTION)
        asyncio.run(shoot(args.out, question, chart=args.chart))


if __name__ == "__main__":
    sys.exit(main())
