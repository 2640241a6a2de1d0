"""How long the model takes to read a prompt and to decode, per compute dtype, on this CPU:
the figures behind the engine's dtype and thread choices (bench/README.md, "Dtype").

    .venv/bin/python bench/prompt_read.py [--dtype bf16 fp32] [--threads N] [--repeats N]
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python bench/prompt_read.py

The second line emulates a CPU without AVX-512 (torch's and oneDNN's own switches). Prompts:
the first 500 tokens of Chinook's every-table prompt (the issue's plain read), the focused
prompt (the question's tables, ~450 tokens) and the every-table prompt (~1,000) for one
Chinook question; each read `--repeats` times, the median printed. Then greedy decoding of
`--decode` tokens after the focused prompt (stop tokens ignored). Prints, asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model.llm.attention import use_decode_attention  # noqa: E402
from model.llm.checkpoints import (  # noqa: E402
    DEFAULT_MODEL,
    MODELS,
    ensure_merged_checkpoint,
    load_tokenizer,
)
from model.llm.context import context_for, focused_context, rank_tables  # noqa: E402
from model.llm.cpu import set_threads  # noqa: E402
from model.llm.engine import Engine  # noqa: E402
from model.llm.prompt import build_prompt  # noqa: E402
from model.llm.vocab import AnswerVocab  # noqa: E402
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


def timed_read(engine: Engine, ids: list[int], repeats: int) -> str:
    """Median wall seconds of `repeats` reads, and CPU seconds (all threads), which another
    process on the same cores moves less."""
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        engine._read(ids, None)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return f"{statistics.median(wall):.2f} s ({statistics.median(cpu):.2f} CPU-s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", nargs="+", default=["bf16", "fp32"])
    parser.add_argument("--threads", type=int, default=0, help="0: the engine's own choice")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--decode", type=int, default=32, help="tokens to decode (0: none)")
    parser.add_argument("--reads", nargs="+", default=["500 tokens", "focused", "every table"])
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM

    set_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; torch "
          f"{torch.__version__}, capability {torch.backends.cpu.get_cpu_capability()}, "
          f"ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', '-')}, "
          f"MKL_ENABLE_INSTRUCTIONS={os.environ.get('MKL_ENABLE_INSTRUCTIONS', '-')}, "
          f"{torch.get_num_threads()} threads")
    spec = MODELS[DEFAULT_MODEL]
    assert spec.adapter is not None
    path = ensure_merged_checkpoint(spec.adapter)
    tokenizer = load_tokenizer(path)
    texts = prompts()
    for name in args.dtype:
        dtype = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}[name]
        llm = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
        use_decode_attention(llm)
        engine = Engine(DEFAULT_MODEL, llm, tokenizer,
                        answer_vocab=AnswerVocab.read(spec.adapter, tokenizer))
        every = engine.encode(texts["every table"])
        reads = {"500 tokens": every[:500]} | {k: engine.encode(v) for k, v in texts.items()}
        engine._read(reads["focused"][:64], None)  # warm-up: first-call allocations
        figures = [f"{k} ({len(reads[k])}) {timed_read(engine, reads[k], args.repeats)}"
                   for k in args.reads]
        rate = 0.0
        if args.decode:
            stops, engine.stop_ids = engine.stop_ids, set()
            list(engine.stream(texts["focused"], max_new_tokens=args.decode))
            engine.stop_ids = stops
            rate = engine.last_stats.tokens_per_s
        print(f"{name}: read {'; '.join(figures)}; decoding {rate:.1f} tok/s; "
              f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
