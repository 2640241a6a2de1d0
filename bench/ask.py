"""Question-to-SQL speed of the local model on this machine: time to first token, decoding
rate, seconds per question (p50), model load time and peak memory.

    .venv/bin/python bench/ask.py [--model M] [--adapter DIR] [--device D] [--questions N]
                                  [--dtype auto|bf16|fp32|fp16] [--budget SECONDS]
                                  [--draft-tokens N] [--no-check-runs]

Prints figures, asserts nothing. Runs through `pipeline.ask.ask`, the pipeline the app uses, on
the bundled Chinook sample. The machine's load average is printed too: on a shared 2-core
CPU it moves these figures more than anything in the code does.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model.llm.decoding.loading import load_engine  # noqa: E402
from model.llm.pipeline.ask import ask  # noqa: E402
from model.llm.pipeline.settings import DEFAULT_BUDGET_S, Settings  # noqa: E402
from model.llm.weights.registry import DEFAULT_MODEL, cache_root, ensure_base_checkpoint  # noqa: E402
from model.samples import CHINOOK  # noqa: E402
from model.sqlite.db import Database  # noqa: E402

QUESTIONS = [
    "How many albums are there?",
    "How many customers are from Brazil?",
    "List the titles of all albums by the artist AC/DC.",
    "Which genre has the most tracks?",
    "What are the top 5 customers by total invoice amount?",
    "How many tracks are longer than 5 minutes?",
    "Which employees report to Andrew Adams?",
    "What is the total revenue per billing country?",
    "Which playlist has the most tracks?",
    "What is the average unit price of tracks for each media type?",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--adapter", default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--questions", type=int, default=len(QUESTIONS))
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--answer-tokens", type=int, default=24)
    parser.add_argument("--dtype", default=None, help="default: the machine's (auto)")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S,
                        help="seconds a question (0: no limit)")
    parser.add_argument("--draft-tokens", type=int, default=None,
                        help="guesses a greedy step checks (0: none; default: the engine's)")
    parser.add_argument("--no-check-runs", dest="check_runs", action="store_false",
                        help="draw no more answers and run none (the answer before the vote)")
    args = parser.parse_args()

    print(f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if args.model == DEFAULT_MODEL:
        t0 = time.perf_counter()
        path = ensure_base_checkpoint(lambda m: print("  " + m))
        print(f"base checkpoint ({cache_root()}): {time.perf_counter() - t0:.1f} s  {path}")
    t0 = time.perf_counter()
    engine = load_engine(args.model, adapter=args.adapter, device=args.device, dtype=args.dtype)
    load_s = time.perf_counter() - t0
    if args.draft_tokens is not None:
        engine.draft_tokens = args.draft_tokens
    adapters = ", ".join(str(a) for a in engine.adapters) or "none"
    print(f"load {engine.name} on {engine.device} in {engine.dtype}: {load_s:.1f} s "
          f"(adapters: {adapters})")
    import torch

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}, budget {args.budget:g} s"
    )

    db = Database.open(CHINOOK)
    # Warm-up, not counted: the first question also reads the database's part of the prompt,
    # which a context-first model keeps for the next ones (the app reads it before the first).
    first = ask(engine, db, "How many artists are there?",
                Settings(max_new_tokens=8, budget=args.budget)).stats[0]
    print(f"prompt layout {engine.prompt_layout}; first question on the database: "
          f"time to first token {first.first_token_s:.2f} s ({first.prompt_tokens} tokens read)")

    # The first prompt the pipeline sends for each question (the question's tables, when the
    # schema has more), replayed below to time one answered attempt.
    first_prompts: list[tuple[str, str]] = []
    stream = engine.stream

    def recording_stream(prompt: str, **kwargs: Any) -> Any:
        first_prompts.append((prompt, kwargs.get("shared", "")))
        return stream(prompt, **kwargs)

    rows = []
    read_back: list[tuple[str, list[str]]] = []  # each question, its two best answers' SQL
    print(f"\n{'s':>6} {'ttft':>6} {'tok/s':>6} {'tok':>4} {'read':>4} {'all':>3} {'try':>3}"
          f" {'ok':>3} {'alt':>3}  question -> sql")
    for question in QUESTIONS[: args.questions]:
        engine.stream = recording_stream  # type: ignore[method-assign]
        n = len(first_prompts)
        answer = ask(engine, db, question, Settings(max_new_tokens=args.max_new_tokens,
                                                    budget=args.budget,
                                                    check_runs=args.check_runs))
        engine.stream = stream  # type: ignore[method-assign]
        del first_prompts[n + 1 :]
        best = [a.sql for a in answer.alternatives[:2]] or [answer.sql]
        read_back.append((question, (best * 2)[:2]))
        first, last = answer.stats[0], answer.stats[-1]
        tokens = sum(s.tokens for s in answer.stats)
        read = first.prompt_tokens - first.cached_tokens
        rows.append((answer.seconds, first.first_token_s, last.tokens_per_s, first.prompt_tokens,
                     read, tokens, sum(s.passes for s in answer.stats)))
        sql = " ".join(answer.sql.split()) or f"(no SQL: {answer.raw[:40]!r}…)"
        print(
            f"{answer.seconds:6.2f} {first.first_token_s:6.2f} {last.tokens_per_s:6.1f} "
            f"{tokens:4d} {read:4d} {'no' if answer.pruned else 'yes':>3} "
            f"{answer.attempts:3d} {'yes' if answer.ok else 'no':>3} "
            f"{len(answer.alternatives):3d}  "
            f"{question} -> {sql[:80]}{' (out of time)' if answer.out_of_time else ''}"
        )

    # The base model without its adapter never answers, so the figures above time its
    # (abandoned) echo, twice. What one answered attempt costs: the same prompts, decoding
    # exactly `--answer-tokens` tokens (Chinook's gold SQL is 6-67 tokens, median 15).
    stops, engine.stop_ids = engine.stop_ids, set()
    one_attempt = []
    for prompt, shared in first_prompts:
        t0 = time.perf_counter()
        for _ in engine.stream(prompt, max_new_tokens=args.answer_tokens, shared=shared):
            pass
        one_attempt.append(time.perf_counter() - t0)
    engine.stop_ids = stops
    db.close()
    # The vote's last step, timed on its own: the question read back from two answers (a vote
    # reads back only when two results ran; here every question, its answer twice if alone).
    reviews = []
    for question, sqls in read_back:
        t0 = time.perf_counter()
        engine.review(question, sqls)
        reviews.append(time.perf_counter() - t0)

    seconds = [r[0] for r in rows]
    ttft = [r[1] for r in rows]
    rates = [r[2] for r in rows if r[2] > 0]
    prompts = [r[3] for r in rows]
    read = [r[4] for r in rows]
    print()
    print(
        f"prompt tokens          median {statistics.median(prompts):.0f} "
        f"(min {min(prompts)}, max {max(prompts)}); read: median {statistics.median(read):.0f}"
    )
    print(f"time to first token    p50 {percentile(ttft, 0.5):.2f} s")
    print(f"decoding               median {statistics.median(rates) if rates else 0:.1f} tok/s, "
          f"{sum(r[5] for r in rows) / max(1, sum(r[6] for r in rows)):.2f} tokens a pass "
          f"(drafts: {'on' if engine.answer_drafts and engine.draft_tokens else 'off'})")
    print(
        f"question to SQL        p50 {percentile(seconds, 0.5):.2f} s, "
        f"p90 {percentile(seconds, 0.9):.2f} s"
    )
    print(
        f"one attempt, {args.answer_tokens}-token answer  p50 "
        f"{percentile(one_attempt, 0.5):.2f} s, p90 {percentile(one_attempt, 0.9):.2f} s"
    )
    print(f"read back, two answers p50 {percentile(reviews, 0.5):.2f} s, "
          f"p90 {percentile(reviews, 0.9):.2f} s")
    print(f"peak RSS               {peak_rss_mib():.0f} MiB")
    if engine.device.startswith("cuda"):
        print(f"peak GPU memory        {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
    print(f"load average at end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
