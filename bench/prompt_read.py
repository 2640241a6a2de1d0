"""How long the model takes to read a prompt and to decode, per compute dtype and thread count,
on this CPU: the figures behind the engine's dtype and thread choices (bench/README.md).

    .venv/bin/python bench/prompt_read.py [--dtype bf16 fp32] [--threads 2 1] [--repeats N]
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \\
        .venv/bin/python bench/prompt_read.py

The second line emulates a CPU without AVX-512 (torch's, oneDNN's and MKL's own switches).
Prompts: the first 500 tokens of Chinook's every-table prompt (the issue's plain read), the
focused prompt (the question's tables, ~520 tokens) and the every-table prompt (~950) for one
Chinook question. Every configuration (dtype x threads) is loaded in one process and they take
turns, read by read, so that a busy machine slows them alike; each read is a few tokens
shorter than the one before, as each question's prompt has a length of its own (oneDNN builds
its bf16 kernels per shape, and that is part of what a question costs). Medians of wall and
CPU seconds (all threads; another process on the same cores moves those less). Then greedy
decoding of `--decode` tokens after the focused prompt. Prints, asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# First: it sets OMP_WAIT_POLICY before anything loads torch (model.llm.decoding.attention does).
from model.llm.weights.cpu import set_threads  # noqa: E402, I001
from model.llm.decoding.attention import use_decode_attention  # noqa: E402
from model.llm.weights.registry import (  # noqa: E402
    DEFAULT_MODEL,
    MODELS,
    ensure_merged_checkpoint,
    load_tokenizer,
)
from model.llm.prompting.context import context_for, focused_context, rank_tables  # noqa: E402
from model.llm.decoding.engine import Engine  # noqa: E402
from model.llm.prompting.prompt import build_prompt  # noqa: E402
from model.llm.decoding.vocab import AnswerVocab  # noqa: E402
from model.samples import CHINOOK  # noqa: E402
from model.sqlite.db import Database  # noqa: E402

QUESTION = "Which genre has the most tracks?"


def prompts() -> dict[str, str]:
    db = Database.open(CHINOOK)
    schema = db.schema()
    ranking = rank_tables(schema, QUESTION)
    every = context_for(db.conn, schema, QUESTION, ranking=ranking)
    focus = focused_context(db.conn, schema, QUESTION, ranking=ranking)
    assert focus is not None
    return {"focused": build_prompt(QUESTION, focus.text),
            "every table": build_prompt(QUESTION, every.text)}


def load(name: str) -> Engine:
    import torch
    from transformers import AutoModelForCausalLM

    spec = MODELS[DEFAULT_MODEL]
    assert spec.adapter is not None
    path = ensure_merged_checkpoint(spec.adapter)
    tokenizer = load_tokenizer(path)
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}[name]
    llm = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
    use_decode_attention(llm)
    return Engine(DEFAULT_MODEL, llm, tokenizer, dtype=name,
                  answer_vocab=AnswerVocab.read(spec.adapter, tokenizer))


def timed(run: Any) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - t0, time.process_time() - c0


def loads() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", nargs="+", default=["bf16", "fp32"])
    parser.add_argument("--threads", nargs="+", type=int, default=[0],
                        help="thread counts to compare (0: the engine's own choice)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--decode", type=int, default=32, help="tokens to decode (0: none)")
    parser.add_argument("--reads", nargs="+", default=["500 tokens", "focused", "every table"])
    args = parser.parse_args()

    import torch

    set_threads()
    own = torch.get_num_threads()
    threads = [t or own for t in args.threads]
    print(f"load average {loads()}; torch {torch.__version__}, capability "
          f"{torch.backends.cpu.get_cpu_capability()}, ONEDNN_MAX_CPU_ISA="
          f"{os.environ.get('ONEDNN_MAX_CPU_ISA', '-')}, MKL_ENABLE_INSTRUCTIONS="
          f"{os.environ.get('MKL_ENABLE_INSTRUCTIONS', '-')}, OMP_WAIT_POLICY="
          f"{os.environ.get('OMP_WAIT_POLICY')}, threads {threads}")
    engines = {name: load(name) for name in args.dtype}
    texts = prompts()
    some = next(iter(engines.values()))
    every = some.encode(texts["every table"])
    reads = {"500 tokens": every[:500]} | {k: some.encode(v) for k, v in texts.items()}
    configs = [(name, n) for name in engines for n in threads]
    for engine in engines.values():
        engine._read(reads["focused"][:64], None)  # first-call allocations
    for kind in args.reads:
        ids = reads[kind]
        seen: dict[tuple[str, int], list[tuple[float, float]]] = {c: [] for c in configs}
        for r in range(args.repeats):
            for name, n in configs:
                torch.set_num_threads(n)
                shorter = ids[: len(ids) - 3 * r]  # a length of its own, as each question's
                seen[name, n].append(timed(lambda e=engines[name], s=shorter: e._read(s, None)))
        line = "; ".join(
            f"{name} {n}t {statistics.median(w for w, _ in v):.2f} s "
            f"({statistics.median(c for _, c in v):.2f} CPU-s)" for (name, n), v in seen.items())
        print(f"read {kind} ({len(ids)} tokens): {line}; load {loads()}", flush=True)
    if args.decode:
        rates = []
        for name, n in configs:
            torch.set_num_threads(n)
            engine = engines[name]
            stops, engine.stop_ids = engine.stop_ids, set()
            list(engine.stream(texts["focused"], max_new_tokens=args.decode))
            engine.stop_ids = stops
            rates.append(f"{name} {n}t {engine.last_stats.tokens_per_s:.1f} tok/s")
        print(f"decoding {args.decode} tokens (one-row steps: one thread, model.llm.weights.cpu): "
              f"{'; '.join(rates)}; load {loads()}")
    torch.set_num_threads(own)


if __name__ == "__main__":
    main()
