"""Train the 270M adapter on a GPU for as many epochs (at most 3) as fit before a deadline.

    python3 bench/gpu/train.py DEADLINE   (seconds since the epoch; run by work.sh)

A 14-step probe measures the step time first, so the cosine schedule ends on time instead of
being cut by --max-minutes.
"""

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

deadline = float(sys.argv[1])
cli = [sys.executable, "-m", "tui.cli", "finetune"]
common = ["--base", "gemma-3-270m-sql", "--quant", "none", "--no-gradient-checkpointing",
          "--data", "/tmp/w/train.jsonl", "--max-length", "1152", "--batch-size", "16",
          "--lora-r", "32", "--lora-alpha", "64", "--lora-dropout", "0.05", "--lr", "2e-4",
          "--warmup-steps", "20", "--seed", "0", "--device", "cuda"]
started = time.time()
subprocess.run([*cli, *common, "--max-steps", "14", "--save-every", "0", "--output", "/tmp/probe"])
history = json.loads(Path("/tmp/probe/metrics.json").read_text())["history"]
step_s = statistics.median(h["tokens"] / h["tokens_per_second"] for h in history[4:])
stepping = sum(h["tokens"] / h["tokens_per_second"] for h in history)
overhead = max(10.0, time.time() - started - stepping)  # loading, tokenizing, saving
budget = deadline - time.time() - overhead - 25
steps_per_epoch = 5926 / 16
epochs = min(3.0, int(10 * budget / (step_s * steps_per_epoch)) / 10)
print(f"probe: {step_s:.3f} s/step, overhead {overhead:.0f} s, budget {budget:.0f} s "
      f"-> {epochs} epochs", flush=True)
if epochs >= 0.3:
    subprocess.run([*cli, *common, "--epochs", str(epochs), "--max-minutes",
                    f"{max(budget, 30) / 60:.2f}", "--save-every", "200", "--output", "/tmp/ft"])
