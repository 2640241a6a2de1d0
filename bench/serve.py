"""Concurrent clients: N `ask` requests from C threads at once through one OpenAI-compatible
endpoint, against the in-process engine on the same machine. Throughput (questions a second)
and p50/p90 seconds a question.

    .venv/bin/python bench/serve.py --endpoint URL | --serve [--clients 1,4] [--questions 8]
        [--serve-args "--continuous-batching"] [--no-local]

`--serve` starts `transformers serve` with the shipped model (the adapter merged into the 270M
base) on a free loopback port, as the slow tests do (tests/served.py; needs the dev extras'
transformers[serving]). Both sides answer the same Chinook questions through
`pipeline.ask.ask`, the app's pipeline. The in-process engine decodes one answer at a time (a
second waits for its lock), so its clients queue; a server batches or queues as it does.
Candidates differ: the local engine has beam search, a server without `n` gives none. Prints
figures, asserts nothing; the load average is printed too (a shared CPU moves these figures).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ask import QUESTIONS, percentile  # noqa: E402
from model.llm.pipeline.ask import Answer, ask  # noqa: E402
from model.llm.protocol import TextEngine  # noqa: E402
from model.samples import CHINOOK  # noqa: E402
from model.sqlite.db import Database  # noqa: E402


def one_question(engine: TextEngine, question: str) -> tuple[float, Answer]:
    started = time.perf_counter()
    db = Database.open(CHINOOK)  # a connection a request, as separate users would have
    try:
        answer = ask(engine, db, question)
    finally:
        db.close()
    return time.perf_counter() - started, answer


def load(engine: TextEngine, questions: list[str], clients: int) -> dict[str, float]:
    """`questions` asked by `clients` threads at once: wall time, throughput, latencies."""
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        results = list(pool.map(lambda q: one_question(engine, q), questions))
    wall = time.perf_counter() - started
    seconds = [s for s, _ in results]
    return {"wall": wall, "per_s": len(questions) / wall, "p50": percentile(seconds, 0.5),
            "p90": percentile(seconds, 0.9), "mean": statistics.mean(seconds),
            "ok": sum(a.ok for _, a in results), "n": len(questions)}


def report(label: str, clients: int, f: dict[str, float]) -> None:
    print(f"{label:<34} {clients:>7d} {f['n']:>3.0f} {f['wall']:>7.1f} {f['per_s']:>7.3f} "
          f"{f['p50']:>6.1f} {f['p90']:>6.1f} {f['ok']:>3.0f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--endpoint", help="an OpenAI-compatible API root, e.g. http://h:8000/v1")
    where.add_argument("--serve", action="store_true", help="start transformers serve here")
    parser.add_argument("--serve-args", default="", help="more flags for transformers serve")
    parser.add_argument("--endpoint-model", default=None)
    parser.add_argument("--clients", default="1,4", help="comma-separated client counts")
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--no-local", action="store_true", help="skip the in-process engine")
    args = parser.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    questions = [QUESTIONS[i % len(QUESTIONS)] for i in range(args.questions)]
    print(f"{os.cpu_count()} CPUs; load average at start: "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")

    from contextlib import ExitStack

    from model.llm.server.endpoint import connect

    with ExitStack() as stack:
        url = args.endpoint
        if args.serve:
            import tempfile

            from model.llm.weights.registry import PACKAGED_ADAPTERS, ensure_merged_checkpoint
            from tests.served import transformers_serve

            weights = ensure_merged_checkpoint(PACKAGED_ADAPTERS / "gemma-3-270m-sql")
            log = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "server.log"
            url = stack.enter_context(transformers_serve(weights, log, extra=args.serve_args
                                                         .split()))
            print(f"transformers serve {args.serve_args} at {url} (log: {log})")
        remote = connect(url, args.endpoint_model)
        engines: list[tuple[str, TextEngine]] = [(f"endpoint {remote.name[:25]}", remote)]
        if not args.no_local:
            from model.llm.decoding.loading import load_engine

            local = load_engine()
            engines.append((f"in-process {local.name} ({local.device})", local))
        for _, engine in engines:  # warm-up, not counted: first requests load and compile
            one_question(engine, "How many artists are there?")
        print(f"\n{'engine':<34} {'clients':>7} {'n':>3} {'wall s':>7} {'q/s':>7} "
              f"{'p50 s':>6} {'p90 s':>6} {'ok':>3}")
        for label, engine in engines:
            for c in clients:
                report(label, c, load(engine, questions, c))
    print(f"load average at end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
