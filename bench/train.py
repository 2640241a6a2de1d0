"""Training throughput: our loop (finetune/train.py) against TRL's SFTTrainer.

    .venv/bin/python bench/train.py                 # the real Gemma 3 270M base, 4 steps each
    .venv/bin/python bench/train.py --tiny --steps 6  # a tiny random Gemma (seconds)
    .venv/bin/python bench/train.py --loops --steps 12 --batch-size 2 --grad-accum 2 --threads 1
                                                    # today's loop (with and without LoRA
                                                    # dropout) against the one before

Same model, same LoRA (all linear projections), same Spider examples (contexts rendered by
`finetune prepare-spider`), batch 4, same max length, same machine, one after the other.
TRL runs with its defaults (prompt-completion data, so completion-only loss; gradient
checkpointing on, bf16) and once more with gradient checkpointing off, as our CPU recipe
runs. tokens/s counts non-padding tokens and leaves out each run's first step (warm-up).

Both see the same batches in the same order, so their step-0 losses must agree (LoRA's B
starts at zero: step 0 is the base model's loss on the first batch). Two settings make TRL
do so, and neither changes its speed: its sampler is sequential over the examples laid out
in our loop's batch order (its default RandomSampler would draw other batches), and its
`eos_token` is `<end_of_turn>`, which our answers already end with (by default it appends
`<eos>` to every completion, one more answer token that our format does not train).
Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SPIDER_TRAIN = ROOT / "runs" / "spider" / "train.jsonl"
# Spider itself sits in shared/ beside the checkout (as for the tests); not part of the repo.
SPIDER = ROOT.parent / "shared" / "data"


def pick_examples(tokenizer: Any, n: int, max_length: int, seed: int) -> list[Any]:
    from finetune.data import load_examples, prepare_spider, tokenize

    if not SPIDER_TRAIN.exists():
        prepare_spider(SPIDER / "train" / "spider_train.jsonl", SPIDER / "spider_train_databases",
                       train_out=SPIDER_TRAIN, eval_out=Path(tempfile.mkdtemp()) / "eval.jsonl")
    examples, _ = load_examples(SPIDER_TRAIN)
    random.Random(seed).shuffle(examples)
    return [e for e in examples[: n * 3] if len(tokenize(tokenizer, e)) <= max_length][:n]


def load(tiny: bool) -> tuple[Any, Any]:
    if tiny:
        sys.path.insert(0, str(ROOT / "tests" / "finetune"))
        from tiny import tiny_gemma, tiny_tokenizer

        tok = tiny_tokenizer()
        return tiny_gemma(tok), tok
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from model.llm.weights.registry import ensure_base_checkpoint

    path = ensure_base_checkpoint(lambda m: print(m, file=sys.stderr))
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16), \
        AutoTokenizer.from_pretrained(path)


def batch_order(tokenizer: Any, examples: list[Any], args: argparse.Namespace) -> list[Any]:
    """The examples in the order our loop's first epoch takes them (its length batches)."""
    from finetune.data import length_batches, tokenize

    lengths = [len(tokenize(tokenizer, e)) for e in examples]
    return [examples[i] for b in length_batches(lengths, args.batch_size, args.seed, 0) for i in b]


def bench_run(train: Any, model: Any, tok: Any, examples: list[Any], args: argparse.Namespace,
              **fields: Any) -> dict[str, Any]:
    """`train` over `examples` with the bench's settings (and `fields`) in a temporary folder;
    its metrics."""
    from finetune.config import TrainConfig

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.jsonl"
        data.write_text("".join(json.dumps(
            {"question": e.question, "context": e.context, "sql": e.sql}) + "\n"
            for e in examples))
        cfg = TrainConfig(
            base="bench", quant="none", data=str(data), output=str(Path(tmp) / "out"),
            batch_size=args.batch_size, max_length=args.max_length, max_steps=args.steps,
            lora_r=args.lora_r, lora_alpha=2 * args.lora_r, lr=2e-4,
            warmup_steps=1, save_every=0, seed=args.seed, **{"lora_dropout": 0.05, **fields},
        )
        return train(cfg, model, tok, say=lambda _: None)  # type: ignore[no-any-return]


def ours(args: argparse.Namespace, examples: list[Any], checkpointing: bool) -> dict[str, Any]:
    from finetune.train import train

    model, tok = load(args.tiny)
    metrics = bench_run(train, model, tok, examples, args, gradient_checkpointing=checkpointing)
    h = metrics["history"]
    tokens = sum(x["tokens"] for x in h[1:])
    seconds = h[-1]["elapsed"] - h[0]["elapsed"]
    cpu = h[-1]["cpu_seconds"] - h[0]["cpu_seconds"]
    return {"tokens_per_second": tokens / seconds, "step0_loss": h[0]["loss"],
            "seconds_per_step": seconds / (len(h) - 1), "tokens_per_cpu_second": tokens / cpu}


def trl(args: argparse.Namespace, examples: list[Any], checkpointing: bool) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from model.llm.prompting.prompt import END_OF_TURN, training_text

    model, tok = load(args.tiny)
    pairs = [training_text(e.question, e.context, e.sql) for e in batch_order(tok, examples, args)]
    data = Dataset.from_list([{"prompt": p, "completion": c} for p, c in pairs])
    ends: list[float] = []
    cpu: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, *a: Any, **k: Any) -> None:
            ends.append(time.perf_counter())
            cpu.append(time.process_time())

    with tempfile.TemporaryDirectory() as tmp:
        config = SFTConfig(
            output_dir=tmp, per_device_train_batch_size=args.batch_size,
            max_length=args.max_length, max_steps=args.steps, logging_steps=1,
            save_strategy="no", report_to=[], seed=args.seed, disable_tqdm=True,
            use_cpu=not torch.cuda.is_available(), gradient_checkpointing=checkpointing,
            bf16=not args.tiny or torch.cuda.is_available(),
            # the same batches as ours, and no extra <eos> after our <end_of_turn>
            train_sampling_strategy="sequential", eos_token=END_OF_TURN,
        )
        lora = LoraConfig(r=args.lora_r, lora_alpha=2 * args.lora_r, lora_dropout=0.05,
                          target_modules="all-linear", task_type="CAUSAL_LM")
        trainer = SFTTrainer(model=model, args=config, train_dataset=data,
                             processing_class=tok, peft_config=lora, callbacks=[Clock()])
        trainer.train()
    logs = [x for x in trainer.state.log_history if "loss" in x and "num_tokens" in x]
    tokens = logs[-1]["num_tokens"] - logs[0]["num_tokens"]
    seconds = ends[-1] - ends[0]
    return {"tokens_per_second": tokens / seconds, "step0_loss": logs[0]["loss"],
            "seconds_per_step": seconds / (len(ends) - 1),
            "tokens_per_cpu_second": tokens / (cpu[-1] - cpu[0])}


# --- today's loop against the one before issue 33 (same questions, same CPU) ---------------

# The loop before issue 33 (full-vocabulary softmax, the whole schema's context, any width,
# bf16 always), today's defaults, and today's without LoRA dropout (its random masks are ~a
# fifth of a step; the second round of docs/experiments.md trained so); the recipe's LoRA and
# batch otherwise.
LOOPS: dict[str, dict[str, Any]] = {
    "before": dict(answer_vocab=False, pad_to=1, dtype="bf16"),
    "today": dict(answer_vocab=True, pad_to=32, dtype="auto"),
    "today-dropout-0": dict(answer_vocab=True, pad_to=32, dtype="auto", lora_dropout=0.0),
}


def loop_examples(kind: str, n: int, seed: int) -> list[Any]:
    """`n` Spider training questions (the same for both loops), each with the context its loop
    trains on: before, `context_for` alone; today, what `ask` sends (`training_context`)."""
    from finetune.data import HELDOUT_FILE, Example, spider_db_path, training_context
    from model.llm.prompting.context import context_for
    from model.sqlite.db import Database

    held = {json.loads(line)["db_id"] for line in HELDOUT_FILE.read_text().splitlines()}
    rows = [json.loads(line) for line in
            (SPIDER / "train" / "spider_train.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["db_id"] not in held and r.get("gold_executes") is not False
            and spider_db_path(SPIDER / "spider_train_databases", r["db_id"]).exists()]
    random.Random(seed).shuffle(rows)
    out = []
    for r in rows[:n]:
        db = Database.open(spider_db_path(SPIDER / "spider_train_databases", r["db_id"]))
        try:
            ctx = (training_context(db, r["question"], r["sql"]) if kind != "before" else
                   context_for(db.conn, db.schema(), r["question"]))
        finally:
            db.close()
        out.append(Example(r["question"], ctx.text, r["sql"], r["db_id"]))
    return out


def one_loop(args: argparse.Namespace) -> dict[str, Any]:
    """One loop's run in this process: throughput and the process's memory after each step."""
    import resource

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import finetune.train as train_mod
    from finetune.lora import train_dtype
    from model.llm.weights.dtype import torch_dtype
    from model.llm.weights.registry import ensure_base_checkpoint

    settings = LOOPS[args.loop]
    path = ensure_base_checkpoint(None)
    dtype = train_dtype(str(settings["dtype"]), torch.device("cpu"))
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype(dtype))
    tok = AutoTokenizer.from_pretrained(path)
    examples = loop_examples(args.loop, args.steps * args.batch_size * args.grad_accum,
                             args.seed)
    rss: list[float] = []
    recorded = train_mod.record

    def record(*a: Any) -> None:  # the resident set after every step
        recorded(*a)
        rss.append(int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 1e9)

    train_mod.record = record
    metrics = bench_run(train_mod.train, model, tok, examples, args, grad_accum=args.grad_accum,
                        gradient_checkpointing=False, threads=args.threads, **settings)
    h = metrics["history"]
    tokens = sum(x["tokens"] for x in h[1:])
    seconds = h[-1]["elapsed"] - h[0]["elapsed"]
    cpu = h[-1]["cpu_seconds"] - h[0]["cpu_seconds"]
    examples_done = (len(h) - 1) * args.batch_size * args.grad_accum
    return {"loop": args.loop, "dtype": dtype, "tokens_per_second": tokens / seconds,
            "tokens_per_cpu_second": tokens / cpu, "examples_per_second": examples_done / seconds,
            "examples_per_cpu_second": examples_done / cpu,
            "tokens_per_example": tokens / examples_done, "rss_gb": [round(x, 2) for x in rss],
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}


def compare_loops(args: argparse.Namespace) -> None:
    """Each loop in a process of its own (its own peak memory), one after the other."""
    import subprocess

    results = []
    for loop in LOOPS:
        cmd = [sys.executable, __file__, "--loop", loop, "--steps", str(args.steps),
               "--batch-size", str(args.batch_size), "--grad-accum", str(args.grad_accum),
               "--max-length", str(args.max_length), "--lora-r", str(args.lora_r),
               "--seed", str(args.seed), "--threads", str(args.threads)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        results.append(r := json.loads(out.strip().splitlines()[-1]))
        print(f"{loop:15s} ({r['dtype']}) {r['tokens_per_second']:6.0f} tokens/s "
              f"{r['tokens_per_cpu_second']:6.0f} tokens/CPU-s "
              f"{r['examples_per_cpu_second']:6.3f} examples/CPU-s "
              f"{r['tokens_per_example']:5.0f} tokens/example, peak RSS {r['peak_rss_gb']:.2f} GB,"
              f" RSS by step {r['rss_gb'][:: max(1, len(r['rss_gb']) // 8)]}", flush=True)
    before = results[0]
    for r in results[1:]:
        for key in ("tokens_per_second", "tokens_per_cpu_second", "examples_per_second",
                    "examples_per_cpu_second"):
            print(f"{r['loop']} / before, {key}: {r[key] / before[key]:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="a tiny random Gemma 3")
    parser.add_argument("--steps", type=int, default=4, help="steps a run (first is warm-up)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0: default). On a shared machine, 1 thread "
                             "and tokens per CPU-second give a ratio that contention barely moves")
    parser.add_argument("--skip-matched", action="store_true",
                        help="skip the extra gradient-checkpointing-matched runs")
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--loops", action="store_true",
                        help="today's loop against the one before issue 33 (the real 270M)")
    parser.add_argument("--loop", choices=list(LOOPS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loops:
        return compare_loops(args)
    if args.loop:
        return print(json.dumps(one_loop(args)))
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    _, tok = load(args.tiny) if args.tiny else (None, _tokenizer())
    examples = pick_examples(tok, args.steps * args.batch_size, args.max_length, args.seed)
    if len(examples) < args.steps * args.batch_size:
        raise SystemExit(f"too few examples fit in {args.max_length} tokens; raise --max-length")
    runs = [("ours (no checkpointing, the CPU recipe)", ours, False),
            ("TRL SFTTrainer defaults (checkpointing)", trl, True)]
    if not args.skip_matched:
        runs += [("ours with checkpointing", ours, True),
                 ("TRL without checkpointing", trl, False)]
    device = "cuda" if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"
    print(f"model: {'tiny random Gemma 3' if args.tiny else 'Gemma 3 270M'}; device {device}; "
          f"{len(examples)} examples, batch {args.batch_size}, max length {args.max_length}, "
          f"{args.steps} steps a run")
    results: dict[str, dict[str, Any]] = {}
    for name, fn, checkpointing in runs:
        results[name] = r = fn(args, examples, checkpointing)
        print(f"{name:42s} {r['tokens_per_second']:7.0f} tokens/s "
              f"{r['tokens_per_cpu_second']:7.0f} tokens/CPU-s "
              f"{r['seconds_per_step']:6.1f} s/step  step-0 loss {r['step0_loss']:.3f}",
              flush=True)
    for key in ("tokens_per_second", "tokens_per_cpu_second"):
        v = [r[key] for r in results.values()]
        line = f"ratio ({key}), our recipe / TRL defaults: {v[0] / v[1]:.1f}x"
        if not args.skip_matched:
            line += (f"; both with checkpointing: {v[2] / v[1]:.1f}x;"
                     f" both without: {v[0] / v[3]:.1f}x")
        print(line)
    losses = [r["step0_loss"] for r in results.values()]
    spread = max(losses) - min(losses)
    print(f"step-0 loss, same first batch: {' / '.join(f'{x:.4f}' for x in losses)} "
          f"({'agree' if spread <= 0.01 * max(losses) else 'DIFFER'}: spread {spread:.4f})")


def _tokenizer() -> Any:
    from transformers import AutoTokenizer

    from model.llm.weights.registry import ensure_base_checkpoint

    return AutoTokenizer.from_pretrained(ensure_base_checkpoint(None))


if __name__ == "__main__":
    main()
