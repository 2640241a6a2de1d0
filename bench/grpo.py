"""GRPO step time: our loop's step (finetune/grpo.py: draw, score, loss, update) against TRL's
GRPOTrainer, on a tiny random Gemma with LoRA.

    .venv/bin/python bench/grpo.py --steps 6 --group 4

Same model and LoRA, the same prompt each step, `group` answers of at most `tokens` tokens,
the same reward function (the share of distinct characters in an answer: varied, so every
group learns), beta 0.04, one update a draw. TRL runs on the CPU with its defaults otherwise (its
reference: the base with the adapter disabled). Leaves out each run's first step (warm-up);
prints CPU seconds a step (the process's, all threads); asserts nothing about time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "finetune"))

from tiny import tiny_gemma, tiny_tokenizer  # noqa: E402

from finetune.config import TrainConfig  # noqa: E402
from finetune.grpo import draw, grpo_loss, reference_of  # noqa: E402
from finetune.lora import add_lora  # noqa: E402
from model.llm.prompting.prompt import build_prompt  # noqa: E402

PROMPT = build_prompt("How many singers are there?",
                      'CREATE TABLE "singer" ("id" int, "name" text);')


def variety(text: str) -> float:
    return len(set(text)) / max(len(text), 1)


def policy(tok: Any) -> torch.nn.Module:
    return add_lora(tiny_gemma(tok).float(), TrainConfig(
        quant="none", lora_r=4, lora_alpha=8, lora_dropout=0.0, gradient_checkpointing=False))


def ours(tok: Any, steps: int, group: int, tokens: int) -> list[float]:
    model = policy(tok).eval()
    ref = reference_of(model)
    lora = [p for n, p in model.named_parameters() if "lora_" in n]
    opt = torch.optim.AdamW(lora, lr=1e-5)
    prompt = tok(PROMPT)["input_ids"]
    stops = [tok.eos_token_id, tok.convert_tokens_to_ids("<end_of_turn>")]
    times = []
    for _ in range(steps):
        t0 = time.process_time()
        answers = draw(model, prompt, group, 1.0, tokens, stops)
        rewards = [variety(t) for t in tok.batch_decode(answers, skip_special_tokens=True)]
        loss, _ = grpo_loss(model, ref, prompt, answers, rewards, 0.04, tok.pad_token_id)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.process_time() - t0)
    return times


def trl(tok: Any, steps: int, group: int, tokens: int) -> list[float]:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, *a: Any, **k: Any) -> None:
            self.t0 = time.process_time()

        def on_step_end(self, *a: Any, **k: Any) -> None:
            times.append(time.process_time() - self.t0)

    def reward(completions: list[str], **_: Any) -> list[float]:
        return [variety(c) for c in completions]

    with tempfile.TemporaryDirectory() as out:
        args = GRPOConfig(output_dir=out, per_device_train_batch_size=group,
                          num_generations=group, max_completion_length=tokens, beta=0.04,
                          learning_rate=1e-5, max_steps=steps, use_cpu=True, bf16=False,
                          report_to=[], save_strategy="no", logging_steps=steps,
                          temperature=1.0, gradient_checkpointing=False)
        trainer = GRPOTrainer(model=policy(tok), reward_funcs=[reward], args=args,
                              train_dataset=Dataset.from_list([{"prompt": PROMPT}] * steps),
                              processing_class=tok, callbacks=[Clock()])
        trainer.train()
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=24)
    a = parser.parse_args()
    torch.set_num_threads(2)
    tok = tiny_tokenizer()
    # CPU seconds, not wall: the two runs come one after the other on a machine whose load
    # may change between them; each twice, alternating
    for name, run in (("ours", ours), ("trl GRPOTrainer", trl)) * 2:
        torch.manual_seed(0)
        times = run(tok, a.steps, a.group, a.tokens)[1:]
        print(f"{name:16s} {sum(times) / len(times):.3f} CPU s a step "
              f"({len(times)} steps after the first)")


if __name__ == "__main__":
    main()
