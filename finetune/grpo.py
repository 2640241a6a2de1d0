"""Reinforcement with an execution reward (GRPO): `gemma-sql finetune grpo`.

Each step takes the next `questions` training questions (a seeded order: the same after
`--resume`), asks each as `ask` asks first (`finetune.sample.asked_context`), draws `group`
answers from the current policy, runs them read-only on the question's database and scores them
(`finetune.reward`: 1 for the gold's result, partial credit, 0 for an error or a write). The
advantage of an answer is its reward against its group's, (r - mean) / (std + eps); a group
whose answers all score the same teaches nothing and is skipped (no forward, no backward). The
loss of an answer is the mean over its tokens of

    -(A * exp(logp - logp.detach()) - beta * KL),   KL = exp(ref - logp) - (ref - logp) - 1

(DeepSeekMath's GRPO, one update a draw, so the ratio is 1 and only its gradient counts; KL the
k3 estimate against the reference, the supervised adapter the run started from, merged and
frozen). Both are over the tokens the decoder chooses among for the prompt (the starting
adapter's answer vocabulary, `model.llm.decoding.vocab`), and the answers are drawn from that
softmax too: what is rewarded is what `ask` would write. Only the LoRA weights train.
OUT/checkpoint (adapter safetensors, optimizer state read back with
torch.load(weights_only=True), step, history) is written every `save_every` steps, at the end
and on Ctrl+C/SIGTERM; the final adapter sits in OUT beside the starting adapter's answer
vocabulary, drafts and prompt layout, so `--adapter OUT` loads it in the app.

TRL's GRPOTrainer does the same sum; on the tiny model its steps took 2-3x the CPU time of
these (bench/grpo.py), and it would not draw with `ask`'s prompts.
"""

from __future__ import annotations

import copy
import json
import math
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from finetune.data import spider_db_path
from finetune.eval import GoldError
from finetune.loss import softcapped
from finetune.reward import Gold, reward
from finetune.sample import Question, asked_context
from model.llm.decoding import drafts, vocab
from model.llm.decoding.vocab import AnswerVocab
from model.llm.prompting.prompt import LAYOUT_FILE, build_prompt
from model.llm.sql.extract import extract_sql
from model.llm.weights.registry import causal_lm
from model.sqlite.db import Database

CHECKPOINT = "checkpoint"
# what load_engine reads next to an adapter besides its weights (decoding.vocab, drafts, layout)
COMPANIONS = (vocab.FILE, drafts.FILE, LAYOUT_FILE)


@dataclass
class GrpoConfig:
    output: str = "runs/grpo"
    group: int = 8  # answers drawn a question
    questions: int = 1  # questions a step
    steps: int = 100
    lr: float = 1e-5
    beta: float = 0.04  # weight of the KL term to the reference
    temperature: float = 1.0
    max_new_tokens: int = 128
    grad_clip: float = 1.0
    save_every: int = 10
    max_minutes: float = 0.0
    seed: int = 0
    resume: bool = False


@dataclass
class GrpoState:
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    status: str = "running"


# --- one step ------------------------------------------------------------------------------


def answer_logprobs(model: nn.Module, prompt: list[int], answers: list[list[int]],
                    pad_id: int, rows: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities of each answer's tokens after `prompt` (G, T) and their mask (G, T):
    one batched forward, the output layer applied at the answer positions only (its 262k rows
    at every prompt position would be most of the memory), and only its `rows` (sorted ids,
    every answer token among them) when given: the softmax the decoder draws from."""
    width = max(len(a) for a in answers)
    device = next(model.parameters()).device
    ids = torch.full((len(answers), len(prompt) + width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, a in enumerate(answers):
        ids[row, : len(prompt) + len(a)] = torch.tensor(prompt + a)
        mask[row, : len(prompt) + len(a)] = 1
    ids, mask = ids.to(device), mask.to(device)
    lm = causal_lm(model)
    hidden = lm.get_decoder()(
        input_ids=ids, attention_mask=mask, use_cache=False
    ).last_hidden_state[:, len(prompt) - 1 : -1]
    target = ids[:, len(prompt):].contiguous()
    weight = lm.get_output_embeddings().weight
    if rows is not None:
        rows = rows.to(device)
        weight = weight.index_select(0, rows)
        # padding's ids need not be rows: any in-range index, masked out below
        target = torch.searchsorted(rows, target).clamp(max=len(rows) - 1)
    logits = softcapped(lm, torch.nn.functional.linear(hidden, weight).float())
    logp = logits.gather(-1, target[..., None]).squeeze(-1) - logits.logsumexp(-1)
    return logp, mask[:, len(prompt):].float()


def advantages(rewards: list[float]) -> torch.Tensor:
    r = torch.tensor(rewards, dtype=torch.float32)
    return (r - r.mean()) / (r.std() + 1e-4)


def grpo_loss(policy: nn.Module, ref: nn.Module, prompt: list[int], answers: list[list[int]],
              rewards: list[float], beta: float, pad_id: int,
              rows: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
    """The group's loss (see the module's docstring) and its mean KL to the reference, over
    the softmax of `rows` (all the vocabulary when None)."""
    logp, mask = answer_logprobs(policy, prompt, answers, pad_id, rows)
    with torch.no_grad():
        ref_logp, _ = answer_logprobs(ref, prompt, answers, pad_id, rows)
    a = advantages(rewards).to(logp.device)[:, None]
    delta = ref_logp - logp
    kl = torch.exp(delta) - delta - 1
    per_token = -(torch.exp(logp - logp.detach()) * a - beta * kl)
    per_answer = (per_token * mask).sum(1) / mask.sum(1).clamp(min=1)
    mean_kl = float(((kl.detach() * mask).sum(1) / mask.sum(1).clamp(min=1)).mean())
    return per_answer.mean(), mean_kl


class OnlyRows:
    """A `generate` logits processor: every token outside `rows` impossible."""

    def __init__(self, rows: torch.Tensor) -> None:
        self.rows = rows
        self.outside: torch.Tensor | None = None  # built at the first step, reused after

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.outside is None:
            self.outside = torch.ones(scores.shape[-1], dtype=torch.bool, device=scores.device)
            self.outside[self.rows.to(scores.device)] = False
        return scores.masked_fill(self.outside, float("-inf"))


def draw(policy: nn.Module, tokenizer: Any, prompt: list[int], n: int, temperature: float,
         max_new_tokens: int, stop_ids: list[int],
         rows: torch.Tensor | None = None) -> list[list[int]]:
    """`n` answers' token ids from the current policy (the stop token left off), each token
    among `rows` when given."""
    from transformers import LogitsProcessorList

    device = next(policy.parameters()).device
    only = LogitsProcessorList([OnlyRows(rows)] if rows is not None else [])
    with torch.no_grad():
        out = policy.generate(
            input_ids=torch.tensor([prompt], device=device), do_sample=True,
            temperature=temperature, top_k=0, top_p=1.0, num_return_sequences=n,
            max_new_tokens=max_new_tokens, eos_token_id=stop_ids,
            pad_token_id=tokenizer.pad_token_id, use_cache=True, logits_processor=only)
    answers = []
    for row in out[:, len(prompt):].tolist():
        ends = [i for i, t in enumerate(row) if t in stop_ids]
        answers.append(row[: ends[0]] if ends else row)
    return [a or [stop_ids[0]] for a in answers]  # an empty answer still scores (0)


# --- the run -------------------------------------------------------------------------------


def reference_of(policy: nn.Module) -> nn.Module:
    """The starting policy, frozen: a copy with its adapter merged (the supervised model)."""
    ref = copy.deepcopy(policy).merge_and_unload()
    ref.eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def save_checkpoint(out: Path, policy: nn.Module, opt: torch.optim.Optimizer, state: GrpoState,
                    cfg: GrpoConfig) -> None:
    """OUT/checkpoint, written beside and swapped in (a kill mid-write keeps the last one)."""
    tmp, final = out / (CHECKPOINT + ".tmp"), out / CHECKPOINT
    shutil.rmtree(tmp, ignore_errors=True)
    policy.save_pretrained(tmp)
    torch.save(opt.state_dict(), tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps(
        {"step": state.step, "history": state.history, "config": asdict(cfg)}))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)


def load_checkpoint(out: Path, policy: nn.Module, opt: torch.optim.Optimizer) -> GrpoState:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    ckpt = out / CHECKPOINT
    set_peft_model_state_dict(policy, load_file(str(ckpt / "adapter_model.safetensors")))
    opt.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True))
    s = json.loads((ckpt / "state.json").read_text())
    return GrpoState(s["step"], s["history"])


def grpo(cfg: GrpoConfig, policy: nn.Module, tokenizer: Any, questions: list[Question],
         db_root: Path, layout: str, start_adapter: Path | None = None,
         say: Callable[[str], None] = print,
         answer_vocab: AnswerVocab | None = None) -> dict[str, Any]:
    """Train `policy` (a PEFT model: its LoRA weights only) by GRPO on `questions`; returns the
    metrics written to OUT/metrics.json. Answers are drawn and scored over `answer_vocab`
    (default: the starting adapter's; the whole vocabulary when it has none)."""
    from model.llm.decoding.engine import stop_ids_for

    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    ref = reference_of(policy)
    params = [p for n, p in policy.named_parameters() if "lora_" in n]
    for n, p in policy.named_parameters():
        p.requires_grad_("lora_" in n)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    state = GrpoState()
    if cfg.resume and (out / CHECKPOINT).exists():
        state = load_checkpoint(out, policy, opt)
        say(f"resumed from {out / CHECKPOINT} at step {state.step}")
    order = list(range(len(questions)))
    random.Random(cfg.seed).shuffle(order)
    stop_ids = sorted(stop_ids_for(policy, tokenizer))
    if answer_vocab is None and start_adapter is not None:
        answer_vocab = AnswerVocab.read(start_adapter, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    dbs: dict[str, Database] = {}
    policy.eval()  # no dropout: the answers are scored under the policy that drew them
    started = time.perf_counter()
    from tqdm import tqdm

    from finetune.train import sigterm_as_ctrl_c

    bar = tqdm(total=cfg.steps, initial=state.step, unit="step", desc="grpo", dynamic_ncols=True)
    with sigterm_as_ctrl_c():  # a kill (a background job's end) saves like Ctrl+C
        try:
            while state.step < cfg.steps:
                t0 = time.perf_counter()
                rewards_seen: list[float] = []
                kls: list[float] = []
                opt.zero_grad(set_to_none=True)
                for j in range(cfg.questions):
                    q = questions[order[(state.step * cfg.questions + j) % len(order)]]
                    if q.db_id not in dbs:
                        dbs[q.db_id] = Database.open(spider_db_path(db_root, q.db_id))
                    db = dbs[q.db_id]
                    try:
                        gold = Gold.of(db, q.sql)
                    except GoldError:
                        continue
                    context = asked_context(db, q.question, layout).text
                    prompt_text = build_prompt(q.question, context, layout)
                    prompt = tokenizer(prompt_text, add_special_tokens=True)["input_ids"]
                    rows = None if answer_vocab is None else torch.tensor(
                        answer_vocab.for_prompt(prompt_text, prompt, also=stop_ids))
                    torch.manual_seed(cfg.seed * 1_000_003 + state.step * 1_009 + j)
                    answers = draw(policy, tokenizer, prompt, cfg.group, cfg.temperature,
                                   cfg.max_new_tokens, stop_ids, rows)
                    texts = tokenizer.batch_decode(answers, skip_special_tokens=True)
                    rewards = [reward(db, gold, extract_sql(t)) for t in texts]
                    rewards_seen += rewards
                    if max(rewards) == min(rewards):
                        continue  # no advantage anywhere: nothing to learn from this group
                    loss, kl = grpo_loss(policy, ref, prompt, answers, rewards, cfg.beta, pad_id,
                                         rows)
                    (loss / cfg.questions).backward()
                    kls.append(kl)
                if any(p.grad is not None for p in params):
                    if cfg.grad_clip:
                        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                    opt.step()
                state.step += 1
                mean_reward = sum(rewards_seen) / max(len(rewards_seen), 1)
                state.history.append({"step": state.step, "reward": round(mean_reward, 4),
                                      "kl": round(sum(kls) / len(kls), 5) if kls else 0.0,
                                      "learned_from": len(kls),
                                      "seconds": round(time.perf_counter() - t0, 2)})
                bar.update(1)
                bar.set_postfix(reward=f"{mean_reward:.2f}")
                if cfg.save_every and state.step % cfg.save_every == 0:
                    save_checkpoint(out, policy, opt, state, cfg)
                if cfg.max_minutes and time.perf_counter() - started > cfg.max_minutes * 60:
                    state.status = "stopped at the time limit"
                    break
            else:
                state.status = "finished"
        except KeyboardInterrupt:
            state.status = "interrupted"
            say(f"\ninterrupted at step {state.step}; saving (rerun with --resume)")
        finally:
            bar.close()
            for db in dbs.values():
                db.close()
    save_checkpoint(out, policy, opt, state, cfg)
    policy.save_pretrained(out)
    for name in COMPANIONS if start_adapter is not None else ():
        if (start_adapter / name).is_file():
            shutil.copy(start_adapter / name, out / name)
    recent = state.history[-20:]
    metrics = {"status": state.status, "steps": state.step,
               "mean_reward_last_20": (sum(h["reward"] for h in recent) / len(recent)
                                       if recent else math.nan),
               "history": state.history, "config": asdict(cfg),
               "start_adapter": str(start_adapter or "")}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    say(f"{state.status}: {state.step} steps; adapter in {out}")
    return metrics


def load_policy(adapter: Path, device: str, say: Callable[[str], None] | None = None
                ) -> tuple[nn.Module, Any]:
    """The base the adapter names, in the machine's dtype (bf16 where the hardware has it,
    fp32 otherwise; never fp16, too narrow to train in), with the adapter trainable on top."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from finetune.lora import resolve_base
    from model.llm.weights.dtype import resolve_dtype, torch_dtype
    from model.llm.weights.progress import no_loading_bars
    from model.llm.weights.registry import adapter_base, load_tokenizer

    dtype = resolve_dtype(None, device)
    path = resolve_base(adapter_base(adapter), say)
    with no_loading_bars():
        base = AutoModelForCausalLM.from_pretrained(
            path, dtype=torch_dtype("fp32" if dtype == "fp16" else dtype))
    policy = PeftModel.from_pretrained(base, str(adapter), is_trainable=True)
    return policy.to(device), load_tokenizer(Path(path))
